//! Describe host networking declaratively and render it, as os-net-config does, with
//! systemd-networkd and NetworkManager outputs besides ifcfg.
//!
//! This crate will validate a network model, number NICs from a listing, and render files as
//! pure data. Only its `apply` feature will touch the host (write files, control interfaces).
//!
//! Not implemented yet: this crate is a placeholder that fixes the workspace shape.
