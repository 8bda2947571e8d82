//! Loading and merging metadata files, as os-apply-config does.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::json::{self, Value};

/// Fallback files, always read first (lowest precedence).
pub const DEFAULT_FALLBACK_FILES: [&str; 3] = [
    "/var/cache/heat-cfntools/last_metadata",
    "/var/lib/heat-cfntools/cfn-init-data",
    "/var/lib/cloud/data/cfn-init-data",
];

/// The list of metadata files os-collect-config writes.
pub const DEFAULT_CONFIG_FILES_LIST: &str = "/var/lib/os-collect-config/os_config_files.json";

/// The older location, read when the default list is empty.
pub const LEGACY_CONFIG_FILES_LIST: &str = "/var/run/os-collect-config/os_config_files.json";

/// Deep-merges `documents` left to right from `{}`: objects merge per key, every other pair
/// is replaced by the right value; a top-level document that is falsy or not an object is
/// skipped. A merged or replaced key keeps the left position; new keys are appended.
pub fn merge<'a>(documents: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut merged = Value::Object(json::Map::default());
    for document in documents {
        if matches!(document, Value::Object(map) if !map.is_empty()) {
            merge_into(&mut merged, document);
        }
    }
    merged
}

fn merge_into(left: &mut Value, right: &Value) {
    match (left, right) {
        (Value::Object(left), Value::Object(right)) => {
            for (key, value) in right {
                match left.get_mut(key) {
                    Some(existing @ Value::Object(_)) if matches!(value, Value::Object(_)) => {
                        merge_into(existing, value);
                    }
                    Some(existing) => *existing = value.clone(),
                    None => {
                        left.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (left, right) => *left = right.clone(),
    }
}

/// Reads one metadata file; `None` for an empty path or a file that does not exist.
pub fn read_file(path: &Path) -> Result<Option<Value>> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let text = String::from_utf8(text).map_err(|_| Error::Metadata {
        path: path.to_owned(),
        source: json::ParseError {
            line: 1,
            column: 1,
            message: "not valid UTF-8",
        },
    })?;
    json::parse(&text)
        .map(Some)
        .map_err(|source| Error::Metadata {
            path: path.to_owned(),
            source,
        })
}

/// Reads `fallback` then `files` and merges them (later files win).
pub fn load(fallback: &[PathBuf], files: &[PathBuf]) -> Result<Value> {
    let mut documents = Vec::new();
    for path in fallback.iter().chain(files) {
        if let Some(value) = read_file(path)? {
            documents.push(value);
        }
    }
    Ok(merge(&documents))
}

/// Reads an `os_config_files.json` list: a missing file is an empty list; anything but a JSON
/// list of strings is an error naming the file.
pub fn read_config_files_list(path: &Path) -> Result<Vec<PathBuf>> {
    let bad = |message: &str| Error::ConfigFilesList {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    match json::parse(&text) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(PathBuf::from(s)),
                _ => Err(bad("not a list of file names")),
            })
            .collect(),
        Ok(_) => Err(bad("not a JSON list")),
        Err(e) => Err(bad(&format!("invalid JSON ({e})"))),
    }
}

/// The sub-object at `key` (`a.b`): every part must name an object.
pub fn subhash<'a>(metadata: &'a Value, key: &str) -> Result<&'a Value> {
    key.split('.')
        .try_fold(metadata, |current, part| match current.get(part) {
            Some(value @ Value::Object(_)) => Ok(value),
            _ => Err(Error::Subhash {
                key: key.to_owned(),
            }),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(documents: &[&str]) -> String {
        let values: Vec<Value> = documents.iter().map(|d| json::parse(d).unwrap()).collect();
        json::dumps(&merge(&values))
    }

    #[test]
    fn merge_follows_upstream() {
        assert_eq!(
            merged(&[
                r#"{"local-ipv4":"192.0.2.99","instance-id":"feeddead"}"#,
                r#"{"foo":{"bar":"foo-bar"},"local-ipv4":"198.51.100.50"}"#
            ]),
            r#"{"local-ipv4": "198.51.100.50", "instance-id": "feeddead", "foo": {"bar": "foo-bar"}}"#
        );
        assert_eq!(
            merged(&[
                r#"{"a":"1"}"#,
                r#"{"b":{"x":"foo-bar","y":"tribbles"}}"#,
                r#"{"b":{"x":"shazam"}}"#
            ]),
            r#"{"a": "1", "b": {"x": "shazam", "y": "tribbles"}}"#
        );
        assert_eq!(
            merged(&[r#"{"a":1}"#, r#"{"a":[7,8,9]}"#]),
            r#"{"a": [7, 8, 9]}"#
        );
        assert_eq!(
            merged(&[r#"{"a":{"foo":"bar"}}"#, r#"{"a":"shazam"}"#]),
            r#"{"a": "shazam"}"#
        );
        assert_eq!(
            merged(&[
                "[]",
                r#"{"a":"1"}"#,
                r#""""#,
                "null",
                r#""tacocat""#,
                r#"{"b":"2"}"#,
                "{}",
                r#""baseball""#
            ]),
            r#"{"a": "1", "b": "2"}"#
        );
        assert_eq!(
            merged(&[r#"{"a":1,"b":{"x":1}}"#, r#"{"c":2,"b":{"y":2},"a":3}"#]),
            r#"{"a": 3, "b": {"x": 1, "y": 2}, "c": 2}"#
        );
    }

    #[test]
    fn subhash_needs_objects() {
        let value = json::parse(r#"{"a":{"b":{"x":"y"}},"c":[1,2,3]}"#).unwrap();
        assert_eq!(
            json::dumps(subhash(&value, "a.b").unwrap()),
            r#"{"x": "y"}"#
        );
        assert!(subhash(&value, "a.nonexistent").is_err());
        assert!(subhash(&value, "c").is_err());
    }
}
