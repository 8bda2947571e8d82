//! Enroll, power and boot bare-metal machines, as nova-baremetal and Ironic do.
//!
//! What is here (the pure core, and the node store):
//! - [`node`]: the node model (identity, driver and `driver_info`, properties, ports with
//!   normalised MACs, provision and power state, `last_error`, maintenance, `instance_info`,
//!   event history). Credentials are [`Secret`]s, so `Debug` never shows a password.
//! - [`states`]: Ironic's provision state machine as a data table (the 93 transitions), with
//!   the states' classes and targets and the provision verbs.
//! - [`inventory`]: TripleO `instackenv.json`/`nodes.json` (with the legacy `mac` lists),
//!   bifrost JSON/YAML, bifrost's legacy CSV and the seed's positional records → nodes; every
//!   problem names its file and line or field, and none shows a password.
//! - [`boot`]: per-node PXELINUX, iPXE and GRUB files (deploy ramdisk; whole-disk or netbooted
//!   partition instance) with their per-MAC names, `boot.ipxe`, the GRUB master config, and
//!   [`boot::dnsmasq`]'s DHCP/TFTP configuration. Pure: it returns files, it writes none.
//! - [`store`]: the [`store::NodeStore`] seam, in memory and (feature `sqlite`, default) in an
//!   SQLite file several processes share, with optimistic versions.
//!
//! What is not here yet: the power drivers (Redfish, IPMI, QEMU; async), the DHCP/TFTP/HTTP
//! servers and the deploy agent, the Ironic REST store, and the example command-line tool.
//! This crate never prints and never parses a command line; it builds no images (`dib-core`
//! does).

pub mod boot;
pub mod error;
pub mod inventory;
pub mod node;
#[cfg(feature = "power")]
pub mod power;
pub mod secret;
pub mod states;
pub mod store;

pub use error::Error;
pub use node::{MacAddress, Node, Port, PowerState, Value};
pub use secret::Secret;
pub use states::{Event, State};
