//! A process-local store: a map behind a mutex. For tests, dry runs and one-process setups.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;

use super::{check_deletable, lookup, validate, Lookup, NodeStore, Versioned};
use crate::node::Node;
use crate::Error;

/// Nodes in memory, gone with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    nodes: Mutex<BTreeMap<Uuid, Versioned>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Uuid, Versioned>> {
        // A panic elsewhere cannot leave the map half-written: every change is one insert.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn find<'a>(nodes: &'a BTreeMap<Uuid, Versioned>, id: &str) -> Option<&'a Versioned> {
    match lookup(id) {
        Lookup::Uuid(u) => nodes.get(&u),
        Lookup::Name(n) => nodes
            .values()
            .find(|v| v.node.name.as_deref() == Some(n.as_str())),
    }
}

/// Name and MAC uniqueness against every other node.
fn check_unique(nodes: &BTreeMap<Uuid, Versioned>, node: &Node) -> Result<(), Error> {
    for other in nodes.values().filter(|v| v.node.uuid != node.uuid) {
        if node.name.is_some() && other.node.name == node.name {
            return Err(Error::DuplicateName {
                name: node.name.clone().unwrap_or_default(),
            });
        }
        for p in &node.ports {
            if other.node.ports.iter().any(|q| q.address == p.address) {
                return Err(Error::DuplicateMac {
                    mac: p.address.to_string(),
                    owner: other.node.uuid.to_string(),
                });
            }
        }
    }
    Ok(())
}

impl NodeStore for MemoryStore {
    fn create(&self, node: &Node) -> Result<Versioned, Error> {
        validate(node)?;
        let mut nodes = self.lock();
        if nodes.contains_key(&node.uuid) {
            return Err(Error::DuplicateUuid {
                uuid: node.uuid.to_string(),
            });
        }
        check_unique(&nodes, node)?;
        let v = Versioned {
            node: node.clone(),
            version: 1,
        };
        nodes.insert(node.uuid, v.clone());
        Ok(v)
    }

    fn get(&self, id: &str) -> Result<Versioned, Error> {
        find(&self.lock(), id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                node: id.to_owned(),
            })
    }

    fn list(&self) -> Result<Vec<Versioned>, Error> {
        Ok(self.lock().values().cloned().collect())
    }

    fn update(&self, node: &Node, expected_version: u64) -> Result<Versioned, Error> {
        validate(node)?;
        let mut nodes = self.lock();
        let found = nodes
            .get(&node.uuid)
            .ok_or_else(|| Error::NotFound {
                node: node.uuid.to_string(),
            })?
            .version;
        if found != expected_version {
            return Err(Error::VersionConflict {
                node: node.uuid.to_string(),
                expected: expected_version,
                found,
            });
        }
        check_unique(&nodes, node)?;
        let v = Versioned {
            node: node.clone(),
            version: found + 1,
        };
        nodes.insert(node.uuid, v.clone());
        Ok(v)
    }

    fn delete(&self, id: &str, expected_version: u64) -> Result<(), Error> {
        let mut nodes = self.lock();
        let current = find(&nodes, id).ok_or_else(|| Error::NotFound {
            node: id.to_owned(),
        })?;
        if current.version != expected_version {
            return Err(Error::VersionConflict {
                node: current.node.uuid.to_string(),
                expected: expected_version,
                found: current.version,
            });
        }
        check_deletable(&current.node)?;
        let uuid = current.node.uuid;
        nodes.remove(&uuid);
        Ok(())
    }
}
