use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in this crate. Messages are one line and name the file,
/// line or key they are about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("Could not open {} for reading. {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error("Could not parse metadata file: {} ({source})", path.display())]
    Metadata {
        path: PathBuf,
        source: crate::json::ParseError,
    },

    #[error("{}: {message}", path.display())]
    ConfigFilesList { path: PathBuf, message: String },

    #[error("key '{key}' does not correspond to a hash in the metadata file")]
    Subhash { key: String },

    #[error("{}:{line}: {message}", path.display())]
    Template {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{}: not valid UTF-8", path.display())]
    TemplateEncoding { path: PathBuf },

    #[error("{}", .misses.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n"))]
    MissingKeys { misses: Vec<crate::render::Miss> },

    #[error("{}: {message}", path.display())]
    Control { path: PathBuf, message: String },

    #[error("{}: executable template failed with exit status {status}", path.display())]
    Script {
        path: PathBuf,
        status: i32,
        stderr: String,
    },

    #[error("{}: {message}", path.display())]
    ScriptOutput { path: PathBuf, message: String },

    #[error("{}: {action} failed: {source}", path.display())]
    Write {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },

    #[error("{}: refusing to write outside the output root {}", path.display(), root.display())]
    Escape { path: PathBuf, root: PathBuf },

    #[error("key {key} does not exist in {files}")]
    KeyMissing { key: String, files: String },

    #[error("cannot interpret value '{value}' as type {kind}")]
    KeyType { value: String, kind: String },

    #[error("unknown type {kind}; known types: {known}")]
    UnknownType { kind: String, known: String },

    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
