//! Describe host networking declaratively and render it, as os-net-config does, with
//! systemd-networkd and NetworkManager outputs besides ifcfg.
//!
//! What exists so far is the pure front end: [`schema`] (os-net-config 18.1.0's device types
//! as data), [`validate`] (the document parsed as YAML 1.2 with positions, every problem
//! reported at once with line, column and field path, YAML 1.1 readings warned about) and
//! [`nics`] (NIC numbering and the mapping file over a [`nics::HostFacts`] source: sysfs
//! under a chosen root, or a fixed list). Renderers (ifcfg, ENI, networkd, NetworkManager
//! keyfiles) come next; they produce files as data. Only a future `apply` feature will touch
//! the host.

pub mod eni;
pub mod ifcfg;
pub mod model;
pub mod networkd;
pub mod nics;
pub mod nm_keyfile;
pub mod render;
pub mod schema;
pub mod validate;

pub use eni::Eni;
pub use ifcfg::Ifcfg;
pub use model::{network_config, Device, Kind, NetworkConfig};
pub use networkd::Networkd;
pub use nm_keyfile::NmKeyfile;
pub use render::{changed, noop_output, Compare, RenderError, RenderedFile, Renderer};
pub use validate::{parse, validate, Diagnostic, Severity};
