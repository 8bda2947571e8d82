//! Enroll, power and boot bare-metal machines, as nova-baremetal and Ironic do.
//!
//! This crate will parse node inventories, keep nodes in a store, drive them through a
//! provisioning state machine, talk to their BMCs (IPMI, Redfish, QEMU) through power drivers,
//! and render PXE/iPXE boot configuration for deploying images built by `dib-core`.
//!
//! Not implemented yet: this crate is a placeholder that fixes the workspace shape. It will not
//! build images, and it will never bind servers to addresses other than the configured ones.
