//! Where nodes live between commands: the [`NodeStore`] seam, with [`MemoryStore`] and (feature
//! `sqlite`, on by default) [`SqliteStore`], one file shared safely by several processes.
//! A later Ironic REST backend implements the same trait.
//!
//! Updates are optimistic: every stored node has a version, [`NodeStore::update`] and
//! [`NodeStore::delete`] take the version that was read and fail with
//! [`Error::VersionConflict`] when someone else wrote in between; [`modify`] is the read,
//! change, write loop that retries on conflict. Every store enforces the same rules: unique
//! uuids, names and MACs (Ironic's "A port with MAC address … already exists."), valid names,
//! and deletion only in the states that allow it.

#[cfg(feature = "sqlite")]
mod codec;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::HashSet;

use uuid::Uuid;

use crate::node::{check_name, Node};
use crate::Error;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// A node with the version it was stored at (1 after `create`, +1 per `update`).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub node: Node,
    pub version: u64,
}

/// A node store. Lookups take a uuid or a name (names are never UUIDs, so the two cannot be
/// confused); listings are sorted by uuid.
pub trait NodeStore: Send + Sync {
    /// Adds a node, at version 1.
    fn create(&self, node: &Node) -> Result<Versioned, Error>;

    /// The node with this uuid or name; [`Error::NotFound`] if none.
    fn get(&self, id: &str) -> Result<Versioned, Error>;

    /// Every node, sorted by uuid.
    fn list(&self) -> Result<Vec<Versioned>, Error>;

    /// Replaces the node with `node.uuid` if it is still at `expected_version`; returns it at
    /// its new version.
    fn update(&self, node: &Node, expected_version: u64) -> Result<Versioned, Error>;

    /// Removes the node if it is still at `expected_version` and its state allows deletion
    /// (enroll, manageable, adopt failed).
    fn delete(&self, id: &str, expected_version: u64) -> Result<(), Error>;
}

/// Reads the node, applies `change`, and writes it back, retrying from the read when another
/// writer got there first, at most `attempts` times. An error from `change` is returned as is.
pub fn modify(
    store: &dyn NodeStore,
    id: &str,
    attempts: u32,
    mut change: impl FnMut(&mut Node) -> Result<(), Error>,
) -> Result<Versioned, Error> {
    let mut last = None;
    for _ in 0..attempts.max(1) {
        let Versioned { mut node, version } = store.get(id)?;
        change(&mut node)?;
        match store.update(&node, version) {
            Err(e @ Error::VersionConflict { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("at least one attempt was made"))
}

/// The key a lookup goes by.
pub(crate) enum Lookup {
    Uuid(Uuid),
    Name(String),
}

pub(crate) fn lookup(id: &str) -> Lookup {
    match Uuid::try_parse(id) {
        Ok(u) => Lookup::Uuid(u),
        Err(_) => Lookup::Name(id.to_owned()),
    }
}

/// Checks what a node must satisfy on its own before any store takes it.
pub(crate) fn validate(node: &Node) -> Result<(), Error> {
    let invalid = |field, message: String| Error::InvalidNode {
        node: node.uuid.to_string(),
        field,
        message,
    };
    if let Some(name) = &node.name {
        check_name(name).map_err(|why| invalid("name", format!("{name:?} {why}")))?;
    }
    if node.driver.is_empty() {
        return Err(invalid("driver", "missing".to_owned()));
    }
    let mut seen = HashSet::new();
    for p in &node.ports {
        if !seen.insert(p.address) {
            return Err(invalid("ports", format!("MAC {} listed twice", p.address)));
        }
    }
    Ok(())
}

pub(crate) fn check_deletable(node: &Node) -> Result<(), Error> {
    if node.provision_state.deletion_allowed() {
        Ok(())
    } else {
        Err(Error::DeleteNotAllowed {
            node: node.uuid.to_string(),
            state: node.provision_state,
        })
    }
}
