use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in this crate, apart from hooks that fail: a failing hook is
/// an outcome ([`crate::HookOutcome`]), not an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("scripts directory [{}] must exist and be a directory", path.display())]
    NotADirectory { path: PathBuf },

    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error("invalid RUN_PARTS_REGEX {pattern:?}: {message}")]
    InvalidRegex { pattern: String, message: String },

    #[error("cannot start {}: {source}", program.display())]
    Spawn { program: PathBuf, source: io::Error },

    #[error("environment files in {} exited before reporting the environment", dir.display())]
    EnvironmentIncomplete { dir: PathBuf },

    #[error("could not lock {}{}", path.display(), match holder { Some(pid) => format!(": held by pid {pid}"), None => String::new() })]
    LockContended { path: PathBuf, holder: Option<u32> },

    #[error("could not lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },

    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn os(what: &'static str, errno: nix::errno::Errno) -> Self {
        Error::Os {
            what,
            source: errno.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
