//! `.oac` control files: `allow_empty`, `mode`, `owner` and `group` for one template.
//!
//! The files are YAML mappings of one key per line. Rather than a YAML 1.2 parser (which reads
//! `0755` as decimal and `no` as a string, unlike upstream's YAML 1.1), this reads the flat
//! mapping itself and classifies each raw scalar.

use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};

use crate::error::{Error, Result};

/// What a control file says; the default when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub allow_empty: bool,
    /// Permission bits (`0` honoured: a file nobody may read).
    pub mode: Option<u32>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            allow_empty: true,
            mode: None,
            owner: None,
            group: None,
        }
    }
}

/// A scalar as written: plain, or quoted (quotes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scalar {
    Plain(String),
    Quoted(String),
}

impl Scalar {
    fn raw(&self) -> &str {
        match self {
            Scalar::Plain(s) | Scalar::Quoted(s) => s,
        }
    }
}

/// Reads the control file at `path`.
pub fn read(path: &Path) -> Result<Control> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|message| Error::Control {
        path: path.to_owned(),
        message,
    })
}

/// Parses control-file text; the error is the message without the file name.
pub fn parse(text: &str) -> Result<Control, String> {
    let mut control = Control::default();
    for (key, value) in mapping(text)? {
        match key.as_str() {
            "allow_empty" => control.allow_empty = boolean(&value)?,
            "mode" => control.mode = Some(mode(&value)?),
            "owner" => control.owner = Some(owner(&value)?),
            "group" => control.group = Some(group(&value)?),
            other => return Err(format!("unrecognised file control key '{other}'")),
        }
    }
    Ok(control)
}

/// The `key: value` lines of a flat YAML mapping; an empty document is an empty mapping.
fn mapping(text: &str) -> Result<Vec<(String, Scalar)>, String> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = strip_comment(line);
        let trimmed = line.trim_end();
        if trimmed.trim().is_empty() || trimmed == "---" || trimmed == "..." {
            continue;
        }
        if trimmed.starts_with([' ', '\t']) {
            return Err("nested values are not supported; write one key per line".to_owned());
        }
        let Some((key, value)) = split_key(trimmed) else {
            return Err("header is not a dict".to_owned());
        };
        let key = match scalar(key)? {
            Scalar::Plain(k) | Scalar::Quoted(k) => k,
        };
        entries.push((key, scalar(value.trim())?));
    }
    Ok(entries)
}

/// `key: value` split at the first `: ` (or a final `:`) outside quotes.
fn split_key(line: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') if i == 0 => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ':') => {
                let rest = &line[i + 1..];
                if rest.is_empty() || rest.starts_with([' ', '\t']) {
                    return Some((line[..i].trim(), rest));
                }
            }
            _ => {}
        }
    }
    None
}

fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous == ' ' || previous == '\t' => return &line[..i],
            _ => {}
        }
        previous = c;
    }
    line
}

fn scalar(text: &str) -> Result<Scalar, String> {
    for quote in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(quote) {
            return inner
                .strip_suffix(quote)
                .map(|s| Scalar::Quoted(s.to_owned()))
                .ok_or_else(|| format!("unterminated quoted value {text}"));
        }
    }
    if text.starts_with(['-', '[', '{', '&', '*', '!', '|', '>']) && !is_integer(text) {
        return Err(format!("unsupported YAML value {text}"));
    }
    Ok(Scalar::Plain(text.to_owned()))
}

fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// YAML 1.1 booleans, as upstream reads them (`y`/`n` are not).
fn boolean(value: &Scalar) -> Result<bool, String> {
    match value {
        Scalar::Plain(s) => match s.as_str() {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(true),
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Ok(false),
            _ => Err(format!("allow_empty requires Boolean, got: '{s}'")),
        },
        Scalar::Quoted(s) => Err(format!("allow_empty requires Boolean, got: '{s}'")),
    }
}

/// Octal only: `0755`, `0o755`, `0`, or a quoted string of octal digits (`"0644"`, `"644"`).
fn mode(value: &Scalar) -> Result<u32, String> {
    let raw = value.raw();
    let digits = match value {
        Scalar::Plain(s) if s == "0" => Some("0"),
        Scalar::Plain(s) => s.strip_prefix("0o").or_else(|| s.strip_prefix('0')),
        Scalar::Quoted(s) => Some(s.strip_prefix("0o").unwrap_or(s)),
    };
    let octal = digits
        .filter(|d| !d.is_empty() && d.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .and_then(|d| u32::from_str_radix(d, 8).ok());
    match octal {
        Some(mode) if mode <= 0o777 => Ok(mode),
        Some(mode) => Err(format!("mode '0o{mode:o}' out of range")),
        None if matches!(value, Scalar::Plain(s) if s.starts_with('-') && is_integer(s)) => {
            Err(format!("mode '{raw}' out of range"))
        }
        None => {
            Err(format!("mode {raw} is not octal; write 0{raw} or \"0{raw}\"").replace("0-", "-"))
        }
    }
}

fn owner(value: &Scalar) -> Result<u32, String> {
    id(
        value,
        "owner",
        "passwd",
        |uid| User::from_uid(Uid::from_raw(uid)).ok().flatten().is_some(),
        |name| User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()),
    )
}

fn group(value: &Scalar) -> Result<u32, String> {
    id(
        value,
        "group",
        "group",
        |gid| Group::from_gid(Gid::from_raw(gid)).ok().flatten().is_some(),
        |name| {
            Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        },
    )
}

/// A user or group as an id (plain integer) or a name (any other string), resolved now so
/// that `--validate` checks it.
fn id(
    value: &Scalar,
    key: &str,
    database: &str,
    id_exists: impl Fn(u32) -> bool,
    by_name: impl Fn(&str) -> Option<u32>,
) -> Result<u32, String> {
    let not_found = |raw: &str| format!("{key} '{raw}' not found in {database} database");
    match value {
        Scalar::Plain(s) if is_integer(s) => match s.parse::<u32>() {
            Ok(id) if id_exists(id) => Ok(id),
            _ => Err(not_found(s)),
        },
        Scalar::Plain(s)
            if s.is_empty()
                || s == "~"
                || s == "null"
                || s.parse::<f64>().is_ok()
                || boolean(value).is_ok() =>
        {
            Err(format!("{key} '{s}' must be a string or int"))
        }
        Scalar::Plain(s) | Scalar::Quoted(s) => by_name(s).ok_or_else(|| not_found(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(text: &str) -> Result<Option<u32>, String> {
        parse(text).map(|c| c.mode)
    }

    #[test]
    fn modes_are_octal_only() {
        assert_eq!(mode_of("mode: 0755"), Ok(Some(0o755)));
        assert_eq!(mode_of("mode: 0o600"), Ok(Some(0o600)));
        assert_eq!(mode_of("mode: \"0644\""), Ok(Some(0o644)));
        assert_eq!(mode_of("mode: '644'"), Ok(Some(0o644)));
        assert_eq!(mode_of("mode: 0"), Ok(Some(0)));
        assert_eq!(mode_of("mode: 0777"), Ok(Some(0o777)));
        assert_eq!(
            mode_of("mode: 755"),
            Err("mode 755 is not octal; write 0755 or \"0755\"".to_owned())
        );
        assert!(mode_of("mode: 0x1ff").unwrap_err().contains("is not octal"));
        assert!(mode_of("mode: true").unwrap_err().contains("is not octal"));
        assert_eq!(
            mode_of("mode: 01000"),
            Err("mode '0o1000' out of range".to_owned())
        );
        assert_eq!(
            mode_of("mode: -1"),
            Err("mode '-1' out of range".to_owned())
        );
    }

    #[test]
    fn booleans_are_yaml_1_1() {
        assert_eq!(parse("allow_empty: no").map(|c| c.allow_empty), Ok(false));
        assert_eq!(parse("allow_empty: On").map(|c| c.allow_empty), Ok(true));
        assert_eq!(
            parse("allow_empty: \"no\""),
            Err("allow_empty requires Boolean, got: 'no'".to_owned())
        );
        assert!(parse("allow_empty: n").is_err());
    }

    #[test]
    fn shapes_and_keys() {
        assert_eq!(parse("# comment\n"), Ok(Control::default()));
        assert_eq!(parse(""), Ok(Control::default()));
        assert_eq!(parse("- a"), Err("header is not a dict".to_owned()));
        assert_eq!(
            parse("body: x"),
            Err("unrecognised file control key 'body'".to_owned())
        );
        assert_eq!(
            parse("foo: 1"),
            Err("unrecognised file control key 'foo'".to_owned())
        );
    }

    #[test]
    fn owners_resolve_now() {
        assert_eq!(parse("owner: 0").map(|c| c.owner), Ok(Some(0)));
        assert_eq!(parse("owner: root").map(|c| c.owner), Ok(Some(0)));
        assert_eq!(parse("group: root").map(|c| c.group), Ok(Some(0)));
        assert_eq!(
            parse("owner: -1"),
            Err("owner '-1' not found in passwd database".to_owned())
        );
        assert_eq!(
            parse("owner: za"),
            Err("owner 'za' not found in passwd database".to_owned())
        );
        assert_eq!(
            parse("group: za"),
            Err("group 'za' not found in group database".to_owned())
        );
        assert_eq!(
            parse("owner: 1.5"),
            Err("owner '1.5' must be a string or int".to_owned())
        );
    }
}
