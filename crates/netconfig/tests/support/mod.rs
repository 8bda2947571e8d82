//! Shared by the netconfig test crates.

use netconfig::nics::{FixedNics, Nic};

/// Active NICs named `names`, with MACs 52:54:00:00:00:01, :02, … in that order.
pub(crate) fn nics(names: &[&str]) -> FixedNics {
    FixedNics(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| Nic {
                name: (*n).to_owned(),
                mac: format!("52:54:00:00:00:{:02x}", i + 1),
                active: true,
            })
            .collect(),
    )
}
