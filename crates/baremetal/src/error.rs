use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use crate::inventory::Problem;
use crate::states::{Event, State};

/// Everything that can go wrong in this crate. Messages are one line, lower-case, and name the
/// file, line, field or node they are about; none of them ever contains a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name that is not one of a fixed set (a state, an event, a power state).
    #[error("unknown {kind} \"{value}\"")]
    UnknownName { kind: &'static str, value: String },

    #[error("invalid MAC address \"{value}\"")]
    BadMac { value: String },

    /// Ironic's wording, lower-cased.
    #[error("{}", invalid_transition(node.as_deref(), *event, *state))]
    InvalidTransition {
        node: Option<String>,
        event: Event,
        state: State,
    },

    /// An inventory with problems: every one of them, each naming the file and the line or
    /// field, joined with `; `.
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Inventory {
        file: String,
        problems: Vec<Problem>,
    },

    /// An imported node that matches several stored ones (by uuid, MAC or BMC).
    #[error("several candidates found for node {node}: {}", candidates.join(", "))]
    Ambiguous {
        node: String,
        candidates: Vec<String>,
    },

    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },

    #[error("node \"{node}\" could not be found")]
    NotFound { node: String },

    #[error("a node named \"{name}\" already exists")]
    DuplicateName { name: String },

    #[error("a node with uuid {uuid} already exists")]
    DuplicateUuid { uuid: String },

    /// Ironic's wording for a port whose MAC another node already has.
    #[error("a port with MAC address {mac} already exists (node {owner})")]
    DuplicateMac { mac: String, owner: String },

    #[error("node {node}: {field}: {message}")]
    InvalidNode {
        node: String,
        field: &'static str,
        message: String,
    },

    /// Optimistic concurrency: someone else updated the node since it was read.
    #[error("node {node} was changed concurrently (expected version {expected}, found {found})")]
    VersionConflict {
        node: String,
        expected: u64,
        found: u64,
    },

    #[error("node {node} cannot be deleted while it is in state \"{state}\"")]
    DeleteNotAllowed { node: String, state: State },

    /// A stored node that cannot be read back.
    #[error("node {node}: stored record is unreadable: {message}")]
    Corrupt { node: String, message: String },

    #[error("boot config: {field}: {message}")]
    Boot { field: String, message: String },

    #[error("dnsmasq config: {field}: {message}")]
    Dnsmasq { field: String, message: String },

    /// A BMC operation on a node that failed (after the retries its kind allows).
    #[cfg(feature = "power")]
    #[error("node {node}: {source}")]
    Power {
        node: String,
        source: crate::power::BmcError,
    },

    /// A provision verb this conductor does not carry out (adopt, rescue, service, …).
    #[error("node {node}: \"{action}\" is not supported here")]
    NotSupported { node: String, action: String },

    /// Another process (or task) is working on the node: Ironic's wording.
    #[error(
        "node {node} is locked by {holder}, please retry after the current operation is completed"
    )]
    NodeLocked { node: String, holder: String },

    /// A provision operation that failed on the way; the node is left in `state` with
    /// `message` as its `last_error`.
    #[error("node {node}: {message} (now \"{state}\")")]
    Failed {
        node: String,
        state: State,
        message: String,
    },

    #[cfg(feature = "sqlite")]
    #[error("{}: {action}: {source}", path.display())]
    Database {
        path: PathBuf,
        action: &'static str,
        source: rusqlite::Error,
    },

    #[cfg(feature = "sqlite")]
    #[error("{}: {message}", path.display())]
    Schema { path: PathBuf, message: String },
}

fn invalid_transition(node: Option<&str>, event: Event, state: State) -> String {
    let mut s = format!("the requested action \"{event}\" can not be performed");
    if let Some(node) = node {
        let _ = write!(s, " on node \"{node}\"");
    }
    let _ = write!(s, " while it is in state \"{state}\"");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ironic_wording() {
        let e = Error::InvalidTransition {
            node: Some("1be26c0b-03f2-4d2e-ae87-c02d7f33c123".into()),
            event: Event::Inspect,
            state: State::Available,
        };
        assert_eq!(
            e.to_string(),
            "the requested action \"inspect\" can not be performed on node \
             \"1be26c0b-03f2-4d2e-ae87-c02d7f33c123\" while it is in state \"available\""
        );
    }
}
