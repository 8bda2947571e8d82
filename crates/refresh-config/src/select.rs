//! Which entries of a hook directory run, and which are skipped and why.
//!
//! [`select_hooks`] and [`select_environment_files`] are pure functions over a [`Listing`];
//! [`read_listing`] is the only part that touches the file system.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::order::order_names;

/// The name filter of upstream dib-run-parts, used when `RUN_PARTS_REGEX` is not set.
pub const DEFAULT_NAME_PATTERN: &str = "^[0-9A-Za-z_-]+$";

/// The environment variable that replaces the name filter.
pub const RUN_PARTS_REGEX_VAR: &str = "RUN_PARTS_REGEX";

/// What kind of thing a directory entry is, following symbolic links (`find -xtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file, or a symlink that resolves to one.
    File {
        executable: bool,
    },
    Directory,
    /// A symlink whose target does not exist.
    DanglingLink,
    /// Sockets, fifos, devices.
    Special,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub kind: EntryKind,
}

/// The entries of one directory, in no particular order.
pub type Listing = Vec<Entry>;

/// Reads `dir` (not recursively), classifying each entry as `find -maxdepth 1 -xtype` would
/// and testing executability with `access(X_OK)` like `find -executable`.
pub fn read_listing(dir: &Path) -> Result<Listing> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut listing = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let kind = match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => EntryKind::File {
                executable: nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_ok(),
            },
            Ok(meta) if meta.is_dir() => EntryKind::Directory,
            Ok(_) => EntryKind::Special,
            Err(_) => EntryKind::DanglingLink,
        };
        listing.push(Entry {
            name: entry.file_name(),
            kind,
        });
    }
    Ok(listing)
}

/// Which hook names run: the default dib-run-parts pattern, or a user's extended regex that,
/// like `grep -E`, matches anywhere in the name unless it anchors itself.
#[derive(Debug, Clone, Default)]
pub enum NameFilter {
    #[default]
    Default,
    Regex(regex::bytes::Regex),
}

impl NameFilter {
    /// A filter from `RUN_PARTS_REGEX`'s value.
    pub fn from_pattern(pattern: &str) -> Result<Self> {
        if pattern == DEFAULT_NAME_PATTERN {
            return Ok(NameFilter::Default);
        }
        regex::bytes::Regex::new(pattern)
            .map(NameFilter::Regex)
            .map_err(|e| Error::InvalidRegex {
                pattern: pattern.to_owned(),
                message: e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            })
    }

    /// The filter `RUN_PARTS_REGEX` selects (unset or empty: the default, as upstream).
    pub fn from_env() -> Result<Self> {
        match std::env::var_os(RUN_PARTS_REGEX_VAR) {
            None => Ok(NameFilter::Default),
            Some(value) if value.is_empty() => Ok(NameFilter::Default),
            Some(value) => match value.to_str() {
                Some(pattern) => Self::from_pattern(pattern),
                None => Err(Error::InvalidRegex {
                    pattern: value.to_string_lossy().into_owned(),
                    message: "not valid UTF-8".to_owned(),
                }),
            },
        }
    }

    pub fn matches(&self, name: &OsStr) -> bool {
        match self {
            NameFilter::Default => {
                let name = name.as_bytes();
                !name.is_empty()
                    && name
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
            }
            NameFilter::Regex(re) => re.is_match(name.as_bytes()),
        }
    }

    pub fn pattern(&self) -> &str {
        match self {
            NameFilter::Default => DEFAULT_NAME_PATTERN,
            NameFilter::Regex(re) => re.as_str(),
        }
    }
}

/// Why an entry of a hook directory does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NotRegularFile,
    NotExecutable,
    NameMismatch,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::NotRegularFile => "not a regular file",
            SkipReason::NotExecutable => "not executable",
            SkipReason::NameMismatch => "name does not match",
        })
    }
}

/// An entry that does not run, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: OsString,
    pub reason: SkipReason,
}

/// The outcome of hook selection: hooks in run order, skipped entries in byte order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub hooks: Vec<OsString>,
    pub skipped: Vec<Skipped>,
}

/// Selects the hooks of a listing exactly as dib-run-parts does (executable regular files, or
/// links to them, whose name passes `filter`) and orders them (see [`crate::compare_names`]).
pub fn select_hooks(listing: &[Entry], filter: &NameFilter) -> Selection {
    let mut selection = Selection::default();
    for entry in listing {
        let reason = match entry.kind {
            EntryKind::File { executable: true } if filter.matches(&entry.name) => None,
            EntryKind::File { executable: true } => Some(SkipReason::NameMismatch),
            EntryKind::File { executable: false } => Some(SkipReason::NotExecutable),
            EntryKind::Directory | EntryKind::DanglingLink | EntryKind::Special => {
                Some(SkipReason::NotRegularFile)
            }
        };
        match reason {
            None => selection.hooks.push(entry.name.clone()),
            Some(reason) => selection.skipped.push(Skipped {
                name: entry.name.clone(),
                reason,
            }),
        }
    }
    order_names(&mut selection.hooks);
    selection
        .skipped
        .sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    selection
}

/// Selects the files of an `environment.d` listing that get sourced, in sourcing order:
/// regular files or links to them (no exec bit needed) named only with `[0-9A-Za-z_.-]`,
/// dotfiles included, sorted bytewise by name.
pub fn select_environment_files(listing: &[Entry]) -> Vec<OsString> {
    let mut files: Vec<OsString> = listing
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .filter(|e| {
            let name = e.name.as_bytes();
            !name.is_empty()
                && name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        })
        .map(|e| e.name.clone())
        .collect();
    files.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: EntryKind) -> Entry {
        Entry {
            name: name.into(),
            kind,
        }
    }
    const EXEC: EntryKind = EntryKind::File { executable: true };
    const PLAIN: EntryKind = EntryKind::File { executable: false };

    #[test]
    fn selection_skips_with_reasons() {
        let listing = vec![
            entry("10-b", EXEC),
            entry("foo.sh", EXEC),
            entry("20-noexec", PLAIN),
            entry("40-dir", EntryKind::Directory),
            entry("50-dangling", EntryKind::DanglingLink),
            entry("5-a", EXEC),
            entry(".hidden", EXEC),
        ];
        let selection = select_hooks(&listing, &NameFilter::Default);
        assert_eq!(selection.hooks, ["5-a", "10-b"]);
        let skipped: Vec<(String, SkipReason)> = selection
            .skipped
            .iter()
            .map(|s| (s.name.to_string_lossy().into_owned(), s.reason))
            .collect();
        assert_eq!(
            skipped,
            [
                (".hidden".to_owned(), SkipReason::NameMismatch),
                ("20-noexec".to_owned(), SkipReason::NotExecutable),
                ("40-dir".to_owned(), SkipReason::NotRegularFile),
                ("50-dangling".to_owned(), SkipReason::NotRegularFile),
                ("foo.sh".to_owned(), SkipReason::NameMismatch),
            ]
        );
    }

    #[test]
    fn custom_regex_is_unanchored_like_grep() {
        let filter = NameFilter::from_pattern("sh").unwrap();
        assert!(filter.matches(OsStr::new("10-x.sh")));
        assert!(!filter.matches(OsStr::new("10-x")));
        assert!(NameFilter::from_pattern("(").is_err());
    }

    #[test]
    fn environment_files_sort_bytewise_and_include_dotfiles() {
        let listing = vec![
            entry("9-env", PLAIN),
            entry("10-env", EXEC),
            entry("a.env", PLAIN),
            entry(".dot", PLAIN),
            entry("sub", EntryKind::Directory),
            entry("with space", PLAIN),
        ];
        assert_eq!(
            select_environment_files(&listing),
            [".dot", "10-env", "9-env", "a.env"]
        );
    }
}
