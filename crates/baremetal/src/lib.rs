//! Enroll, power and boot bare-metal machines, as nova-baremetal and Ironic do.
//!
//! What is here:
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
//! - [`power`] (feature `power`, on by default with its drivers): the async
//!   [`power::PowerDriver`] seam with Redfish, ipmitool, QEMU (QMP) and fake drivers, and the
//!   [`power::Controller`] that serialises and spaces commands per BMC, retries what is worth
//!   retrying with jittered backoff, polls until a power change shows, and reads boot devices
//!   back.
//! - [`conductor`]: provision verbs, power and boot-device actions on stored nodes, every step
//!   written back to the store (failures as `last_error`, a failed state and history).
//!
//! What is not here yet: the DHCP/TFTP/HTTP servers and the deploy agent (so `deploy` stops in
//! `wait call-back`, and cleaning is skipped), and the Ironic REST store.
//!
//! This crate never prints and never parses a command line; it builds no images (`dib-core`
//! does).

pub mod boot;
#[cfg(feature = "power")]
pub mod conductor;
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
