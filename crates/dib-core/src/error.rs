//! The one error type of dib-core.

use std::path::PathBuf;

/// What can go wrong in dib-core. Where diskimage-builder has a message for the same
/// condition, ours starts with its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("$ELEMENTS_PATH must be set.")]
    PathNotSet,
    #[error("ELEMENTS_PATH entry '{0}' is not a directory ")]
    InvalidElementDir(String),
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("Element '{name}' not found{}", via.as_ref().map_or(String::new(), |v| format!(" (required by {v})")))]
    Missing { name: String, via: Option<String> },
    #[error("{name}: already provided by {}", py_list(by))]
    AlreadyProvided { name: String, by: Vec<String> },
    #[error("The following elements are already provided by another element: {}", conflicts.iter().map(|(n, by)| format!("{n} : already provided by {}", py_list(by))).collect::<Vec<_>>().join("; "))]
    RequestedButProvided {
        conflicts: Vec<(String, Vec<String>)>,
    },
    #[error("Please include an operating system element")]
    MissingOs,
    #[error("{path}: {message}")]
    PackageInstalls { path: PathBuf, message: String },
    /// A size spec that does not parse (upstream's text).
    #[error("{0}")]
    Size(String),
    /// A partition layout that cannot be placed.
    #[error("{0}")]
    Layout(String),
    /// A pkg-map file that does not parse, or a package it cannot map (upstream's text).
    #[error("{0}")]
    PkgMap(String),
    /// A block-device configuration that cannot be used (upstream's text where it has one).
    #[error("{0}")]
    BlockDevice(String),
    /// A file or directory the build could not read or write.
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    /// An image that could not be written or converted.
    #[error("{path}: {message}")]
    Image { path: PathBuf, message: String },
    /// A build step that failed, with what it was doing.
    #[error("{0}")]
    Build(String),
}

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, error: &std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            message: error.to_string(),
        }
    }
}

/// A list as Python prints it: `['a', 'b']`.
pub(crate) fn py_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", quoted.join(", "))
}
