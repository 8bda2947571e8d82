//! `--key` and `--boolean-key`: one value out of the metadata, validated by type.

use std::path::PathBuf;

use regex::Regex;

use crate::error::{Error, Result};
use crate::json::{self, Value};

/// The `--type` names and their patterns, anchored at the true end of the string (upstream's
/// Python `$` also matched before a final newline).
pub const TYPES: [(&str, &str); 8] = [
    ("int", r"^[0-9]+$"),
    ("default", r"^[A-Za-z0-9_]*$"),
    ("netaddress", r"^[A-Za-z0-9/.:-]*$"),
    ("netdevice", r"^[A-Za-z0-9/.:-]*$"),
    (
        "dsn",
        r"^[a-zA-Z0-9]+://([a-zA-Z0-9+_-]+(:[^@]+)?)?(@?[a-zA-Z0-9/_.-]+)?(/[a-zA-Z0-9_-]+)?(\?[a-zA-Z0-9=_-]+)?$",
    ),
    (
        "swiftdevices",
        r"^(r\d+z\d+-[A-Za-z0-9.-_]+:%PORT%/[^,]+,?)+$",
    ),
    ("username", r"^[A-Za-z0-9_-]+$"),
    ("raw", r""),
];

/// Looks `key` up: each `.`-separated part descends into an object key or a list index
/// (Python `int()` syntax, negative from the end) holding a non-null value.
pub fn lookup<'a>(metadata: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.')
        .try_fold(metadata, |current, part| match current {
            Value::Object(map) => map.get(part).filter(|v| !matches!(v, Value::Null)),
            Value::Array(items) => {
                let index = python_int(part)?;
                let len = items.len() as i128;
                let index = if index < 0 { len + index } else { index };
                usize::try_from(index)
                    .ok()
                    .and_then(|i| items.get(i))
                    .filter(|v| !matches!(v, Value::Null))
            }
            _ => None,
        })
}

/// Python's `int(text)` for plain decimal text: surrounding whitespace, a sign, and single
/// underscores between digits.
fn python_int(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let value: i128 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -value } else { value })
}

/// How `--key` prints a value: strings raw, integers as digits, doubles as Python `str()`,
/// everything else as JSON.
pub fn print_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Int(digits) => digits.clone(),
        Value::Float(f) => json::float_str(*f),
        other => json::dumps(other),
    }
}

/// Checks `text` against `--type kind`.
pub fn validate(text: &str, kind: &str) -> Result<()> {
    let Some((_, pattern)) = TYPES.iter().find(|(name, _)| *name == kind) else {
        let known: Vec<&str> = TYPES.iter().map(|(name, _)| *name).collect();
        return Err(Error::UnknownType {
            kind: kind.to_owned(),
            known: known.join(", "),
        });
    };
    let matches = Regex::new(pattern)
        .map(|re| re.is_match(text))
        .unwrap_or(false);
    if matches {
        Ok(())
    } else {
        Err(Error::KeyType {
            value: text.to_owned(),
            kind: kind.to_owned(),
        })
    }
}

/// `--key`: the printed value (or the default), validated unless it is the default.
pub fn key_value(
    metadata: &Value,
    key: &str,
    kind: &str,
    default: Option<&str>,
    files: &[PathBuf],
) -> Result<String> {
    match lookup(metadata, key) {
        Some(value) => {
            let text = print_value(value);
            validate(&text, kind)?;
            Ok(text)
        }
        None => default.map(str::to_owned).ok_or_else(|| Error::KeyMissing {
            key: key.to_owned(),
            files: python_list_repr(files),
        }),
    }
}

/// `--boolean-key`: 0 for `true`, 1 for `false`, 255 for anything else or nothing.
pub fn boolean_key_status(metadata: &Value, key: &str) -> u8 {
    match lookup(metadata, key) {
        Some(Value::Bool(true)) => 0,
        Some(Value::Bool(false)) => 1,
        _ => 255,
    }
}

/// `['a.json', 'b.json']`, as upstream names the metadata files in its error.
fn python_list_repr(files: &[PathBuf]) -> String {
    let items: Vec<String> = files
        .iter()
        .map(|f| {
            let s = f.to_string_lossy();
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(data: &str, key: &str) -> Option<String> {
        lookup(&json::parse(data).unwrap(), key).map(print_value)
    }

    #[test]
    fn lookups_follow_upstream() {
        let data = r#"{"l":[10,20,30],"d":{"0":"zero"},"n":null,"s":"str"}"#;
        let cases = [
            ("l.-1", Some("30")),
            ("l.01", Some("20")),
            ("l. 1", Some("20")),
            ("l.+1", Some("20")),
            ("l.1_0", None),
            ("l.x", None),
            ("d.0", Some("zero")),
            ("n.x", None),
            ("s.0", None),
            ("l.0.x", None),
            ("n", None),
        ];
        for (key, expected) in cases {
            assert_eq!(get(data, key).as_deref(), expected, "{key}");
        }
        let data = r#"{"f":1.5,"n":3,"d":{"k":[1,"é"]},"s":"x y","t":true,"e":""}"#;
        assert_eq!(get(data, "d").as_deref(), Some(r#"{"k": [1, "\u00e9"]}"#));
        assert_eq!(get(data, "f").as_deref(), Some("1.5"));
        assert_eq!(get(data, "t").as_deref(), Some("true"));
    }

    #[test]
    fn validators_anchor_at_the_true_end() {
        let ok = |text: &str, kind: &str| validate(text, kind).is_ok();
        assert!(ok("123", "int") && !ok("foo", "int") && !ok("", "int") && !ok("12\n", "int"));
        assert!(ok("x86_64", "default") && ok("", "default") && !ok("foo\n", "default"));
        assert!(ok("2001:db8::2:1", "netaddress") && !ok("192.0.2.1;DROP TABLE foo", "netaddress"));
        assert!(ok("br-ctlplane", "netdevice") && !ok("br-tun; DROP TABLE bar", "netdevice"));
        for dsn in [
            "mysql://user@host/db",
            "mysql://user:pass@host/db",
            "mysql://user:pass@host/db?charset=utf8",
            "sqlite://",
            "sqlite:///var/db/foo.db",
        ] {
            assert!(ok(dsn, "dsn"), "{dsn}");
        }
        for dsn in [
            "mysql:/user:pass@host/db?charset=utf8",
            "mysql://user:pass@host/db?charset=utf8;DROP TABLE foo",
            "mysql://u:p@host:3306/db",
            "postgresql+psycopg2://u@h/db",
            "mysql://u@h/db?a=b&c=d",
        ] {
            assert!(!ok(dsn, "dsn"), "{dsn}");
        }
        assert!(ok(
            "r1z1-127.0.0.1:%PORT%/d1,r1z1-127.0.0.1:%PORT%/d1",
            "swiftdevices"
        ));
        assert!(!ok("", "swiftdevices") && !ok("rz1-127.0.0.1:%PORT%/d1", "swiftdevices"));
        assert!(
            ok("guest_13-42", "username")
                && !ok("guest`ls`", "username")
                && !ok("guest 2", "username")
        );
        assert!(ok("", "raw"));
        assert!(matches!(
            validate("x", "badtype"),
            Err(Error::UnknownType { .. })
        ));
    }

    #[test]
    fn boolean_keys() {
        let data = json::parse(r#"{"t":true,"f":false,"x":"foo"}"#).unwrap();
        assert_eq!(
            [
                boolean_key_status(&data, "t"),
                boolean_key_status(&data, "f"),
                boolean_key_status(&data, "x")
            ],
            [0, 1, 255]
        );
    }
}
