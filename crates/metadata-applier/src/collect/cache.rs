//! The cache protocol: `<key>.json` (0600), `.json.orig` on first sight, `.json.last` only
//! after the command succeeded, and `os_config_files.json` listing this cycle's files.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::json::{self, Value};
use crate::write::replace_file;

/// The list of this cycle's metadata files, read by os-apply-config.
pub const CONFIG_FILES_LIST: &str = "os_config_files.json";

/// Whether `key` can name a cache file: not empty, `.` or `..`, no `/` or NUL, and not the
/// list file's own name.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key != "."
        && key != ".."
        && !key.contains(['/', '\0'])
        && key != "os_config_files"
        // `<key>.json.orig` must fit in a file name.
        && key.len() <= 200
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache at `dir`, made absolute (paths in the list file must not depend on the
    /// command's working directory).
    pub fn new(dir: &Path) -> Self {
        Cache {
            dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    fn io(&self, what: &str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            what: format!("{what} {}", path.display()),
            source,
        }
    }

    fn ensure_dir(&self) -> Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.io("creating cache directory", &self.dir, e))
    }

    /// Stores `value` under `key`; returns whether it changed since the last commit, and the
    /// file's path.
    pub fn store(&self, key: &str, value: &Value) -> Result<(bool, PathBuf)> {
        self.ensure_dir()?;
        let path = self.path(key);
        let text = json::dumps_indent1(value);
        if fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
            replace_file(&path, text.as_bytes(), 0o600)
                .map_err(|e| self.io("writing", &path, e))?;
        }
        let orig = with_suffix(&path, ".orig");
        if !orig.exists() {
            replace_file(&orig, text.as_bytes(), 0o600)
                .map_err(|e| self.io("writing", &orig, e))?;
            return Ok((true, path));
        }
        // Type-strict: 1, 1.0 and true render differently, so they are different values.
        let last = fs::read_to_string(with_suffix(&path, ".last"))
            .ok()
            .and_then(|text| json::parse(&text).ok());
        Ok((
            !last.as_ref().is_some_and(|last| same_value(last, value)),
            path,
        ))
    }

    /// Marks `key`'s current value as handled: copies `<key>.json` to `<key>.json.last`.
    pub fn commit(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match fs::read(&path) {
            Ok(bytes) => {
                let last = with_suffix(&path, ".last");
                replace_file(&last, &bytes, 0o600).map_err(|e| self.io("writing", &last, e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("reading", &path, e)),
        }
    }

    /// The cached value of `key`, if it parses.
    pub fn read(&self, key: &str) -> Option<Value> {
        json::parse(&fs::read_to_string(self.path(key)).ok()?).ok()
    }

    /// Writes `os_config_files.json`: the JSON list of `paths`.
    pub fn write_list(&self, paths: &[PathBuf]) -> Result<PathBuf> {
        self.ensure_dir()?;
        let list = Value::Array(
            paths
                .iter()
                .map(|p| Value::String(p.to_string_lossy().into_owned()))
                .collect(),
        );
        let path = self.dir.join(CONFIG_FILES_LIST);
        replace_file(&path, json::dumps(&list).as_bytes(), 0o600)
            .map_err(|e| self.io("writing", &path, e))?;
        Ok(path)
    }

    /// Replaces `backup` with a copy of the cache, built beside it and swapped in with one
    /// atomic exchange, so that the backup is never absent.
    pub fn backup_to(&self, backup: &Path) -> Result<()> {
        let backup = std::path::absolute(backup).unwrap_or_else(|_| backup.to_owned());
        let parent = backup.parent().unwrap_or(Path::new("/"));
        let name = backup
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        fs::create_dir_all(parent).map_err(|e| self.io("creating", parent, e))?;
        let staging = parent.join(format!(".{name}.{}.new", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let result = (|| {
            fs::DirBuilder::new().mode(0o700).create(&staging)?;
            for entry in fs::read_dir(&self.dir)? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    let bytes = fs::read(entry.path())?;
                    replace_file(&staging.join(entry.file_name()), &bytes, 0o600)?;
                }
            }
            if backup.exists() {
                nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &staging,
                    nix::fcntl::AT_FDCWD,
                    &backup,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )?;
                // The old backup now sits at the staging name.
                fs::remove_dir_all(&staging)
            } else {
                fs::rename(&staging, &backup)
            }
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result.map_err(|e| self.io("refreshing the backup cache", &backup, e))
    }
}

/// Equality for change detection: key order does not matter, types do (1, 1.0 and true
/// differ), and a NaN equals itself, so that it does not look changed on every cycle.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits() || x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        (x, y) => x == y,
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn value(text: &str) -> Value {
        json::parse(text).unwrap()
    }

    #[test]
    fn store_and_commit_follow_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(&dir.path().join("cache"));
        let (changed, path) = cache.store("foo", &value(r#"{"a":1}"#)).unwrap();
        assert!(changed && path.exists() && with_suffix(&path, ".orig").exists());
        assert!(!with_suffix(&path, ".last").exists());
        assert!(cache.store("foo", &value(r#"{"a":2}"#)).unwrap().0);
        assert_ne!(
            fs::read(&path).unwrap(),
            fs::read(with_suffix(&path, ".orig")).unwrap()
        );
        cache.commit("foo").unwrap();
        assert!(!cache.store("foo", &value(r#"{"a":2}"#)).unwrap().0);
        cache.commit("foo").unwrap();
        assert!(cache.store("foo", &value(r#"{"a":3}"#)).unwrap().0);
        cache.commit("neversaved").unwrap();
        assert!(!cache.path("neversaved").exists());
        for file in ["foo.json", "foo.json.orig", "foo.json.last"] {
            let mode = fs::metadata(cache.dir().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn equality_ignores_key_order_but_not_types() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        cache
            .store("k", &value(r#"{"a":"value-a","b":"value-b"}"#))
            .unwrap();
        cache.commit("k").unwrap();
        assert!(
            !cache
                .store("k", &value(r#"{"b":"value-b","a":"value-a"}"#))
                .unwrap()
                .0
        );
        cache.store("nan", &value(r#"{"a":NaN}"#)).unwrap();
        cache.commit("nan").unwrap();
        assert!(!cache.store("nan", &value(r#"{"a":NaN}"#)).unwrap().0);
        cache.store("n", &value(r#"{"a":1}"#)).unwrap();
        cache.commit("n").unwrap();
        assert!(cache.store("n", &value(r#"{"a":true}"#)).unwrap().0);
        assert!(cache.store("n", &value(r#"{"a":1.0}"#)).unwrap().0);
    }

    #[test]
    fn backup_is_swapped_in_whole() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(&dir.path().join("cache"));
        cache.store("a", &value("{}")).unwrap();
        let backup = dir.path().join("backup");
        cache.backup_to(&backup).unwrap();
        cache.store("b", &value("{}")).unwrap();
        cache.backup_to(&backup).unwrap();
        assert!(backup.join("a.json").exists() && backup.join("b.json").exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn keys_that_are_not_file_names_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "os_config_files"] {
            assert!(!valid_key(bad), "{bad:?}");
        }
        assert!(valid_key("10-foo.json"));
    }
}
