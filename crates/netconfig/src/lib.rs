//! Describe host networking declaratively and render it, as os-net-config does, with
//! systemd-networkd and NetworkManager outputs besides ifcfg and ENI.
//!
//! The pipeline is pure: [`validate::parse`] reads the document (YAML 1.2, JSON included)
//! keeping a position on every node; [`validate()`] reports every problem at once with line,
//! column and field path, and warns where upstream's YAML 1.1 reading would differ;
//! [`nics`] numbers NICs and applies the mapping file over a [`nics::HostFacts`] source
//! (sysfs under a chosen root, or a fixed list); [`network_config`] builds the typed device
//! tree; a [`Renderer`] ([`Ifcfg`], [`Eni`], [`Networkd`], [`NmKeyfile`]) turns it into
//! files as data, and [`noop_output`] prints what would change as upstream's `--noop` does.
//!
//! Only the `apply` feature touches the host: [`apply`](crate::apply) writes the changed
//! files, reconfigures the affected devices, verifies and rolls back on failure.

#[cfg(feature = "apply")]
pub mod apply;
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
pub use model::{network_config, network_config_persistent, Device, Kind, NetworkConfig};
pub use networkd::Networkd;
pub use nm_keyfile::NmKeyfile;
pub use render::{changed, noop_output, Compare, RenderError, RenderedFile, Renderer};
pub use validate::{parse, validate, Diagnostic, Severity};
