//! Block-device configuration (diskimage-builder's YAML) to a node graph and a disk plan.
//!
//! The configuration is what `DIB_BLOCK_DEVICE_CONFIG` or an element's
//! `block-device-*.yaml` holds: a YAML list of single-key dicts, each key a plugin
//! (`local_loop`, `partitioning`, `lvm`, `mkfs`, `mount`, `fstab`), written as a tree
//! (plugins nested in their parents) or as a flat graph (each entry naming its `base`). This
//! module takes it through the steps `dib-block-device init` does and then plans the disk:
//!
//! 1. [`Config::parse`]: the YAML, with upstream's entry checks (`Config entry not a dict: …`).
//! 2. [`Config::flatten`]: tree form to graph form, with upstream's naming rules (a missing
//!    `base` is the parent's name, a missing `name` is `<plugin>_<base>`, partitions hang off
//!    their disk, plugins inside a partition hang off the partition's name). Children come
//!    before their parents in the result.
//! 3. [`Config::apply_params`]: `root-fs-type`, `root-fs-opts` and `root-label` fill the
//!    node named `mkfs_root` (an empty label becomes `img-rootfs` for xfs, else
//!    `cloudimg-rootfs`); `DIB_BLOCK_SIZE` overrides every `block_size`.
//! 4. [`Graph::build`]: typed nodes ([`Node`]) with each plugin's keys, defaults and checks
//!    (upstream's texts: `Label must be 'mbr' or 'gpt'`, `File system label [x] used more
//!    than once`, …), the edges, `Duplicate node name: …`, `Edge not defined: a->b`, and the
//!    order: Kahn's algorithm taking ready nodes in bytewise name order, with cycles reported
//!    by name (upstream's networkx order is not stable).
//! 5. Queries as `dib-block-device getval` and `writefstab` answer them:
//!    [`Graph::root_label`], [`Graph::root_fstype`], [`Graph::boot_label`],
//!    [`Graph::mount_points`], [`Graph::fstab`].
//! 6. [`Graph::plan`]: for rootless assembly, the image size, the partition table (placed by
//!    [`crate::mbr`] or [`crate::gpt`]) and per filesystem its type, label, identifier, mkfs
//!    options, byte range in the image, mount point and the subtree of the built root it
//!    gets. Identifiers come from an [`IdSource`]: a [`Seed`] for reproducible builds, or
//!    [`RandomIds`].
//!
//! [`layouts`] holds the fallback configuration and the `block-device-mbr`, `-gpt` and `-efi`
//! layouts.
//!
//! What it is not: it does no I/O at all (no files, no processes, no environment). Reading
//! the configuration, running `mke2fs`, writing the tables and the swap header belong to the
//! caller, and so does the privileged path: LVM is parsed and checked in full, but
//! [`Graph::plan`] refuses it.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::BuildHasher;

use marked_yaml::{LoaderOptions, Node as Yaml};

use crate::error::Error;
use crate::gpt::{self, GptLayout, GptPartitionSpec};
use crate::mbr::{Layout, PartitionSpec, SECTOR};
use crate::reproducible::{uuid_text, Purpose, Seed};
use crate::size::{self, Size};

const MIB: u64 = 1 << 20;
/// LVM sizes are passed to `lvcreate -L` floored to a multiple of this (the extent size).
const LVM_EXTENT: u64 = 4 * MIB;

fn fail(message: impl Into<String>) -> Error {
    Error::BlockDevice(message.into())
}

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

/// A plugin: the key of a configuration entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plugin {
    LocalLoop,
    Partitioning,
    Lvm,
    Mkfs,
    Mount,
    Fstab,
}

impl Plugin {
    /// Every plugin, in the order the table of the reference lists them.
    pub const ALL: [Plugin; 6] = [
        Plugin::LocalLoop,
        Plugin::Partitioning,
        Plugin::Lvm,
        Plugin::Mkfs,
        Plugin::Mount,
        Plugin::Fstab,
    ];

    /// The key as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Plugin::LocalLoop => "local_loop",
            Plugin::Partitioning => "partitioning",
            Plugin::Lvm => "lvm",
            Plugin::Mkfs => "mkfs",
            Plugin::Mount => "mount",
            Plugin::Fstab => "fstab",
        }
    }

    /// The plugin a key names, if any.
    pub fn from_key(key: &str) -> Option<Plugin> {
        Plugin::ALL.into_iter().find(|p| p.as_str() == key)
    }
}

impl fmt::Display for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A YAML value of the configuration, with the (1-based) line it starts on.
#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar as written; `quoted` scalars are always strings, plain ones resolve as
    /// YAML 1.1 (PyYAML) would for messages that print them.
    Scalar {
        text: String,
        quoted: bool,
        line: usize,
    },
    List {
        items: Vec<Value>,
        line: usize,
    },
    /// A mapping, in document order.
    Map {
        entries: Vec<(String, Value)>,
        line: usize,
    },
}

/// A plain scalar as PyYAML resolves it (enough of YAML 1.1 for messages).
enum PyScalar<'a> {
    Str(&'a str),
    Int(i128),
    Float(f64),
    Bool(bool),
    None,
}

fn resolve(text: &str, quoted: bool) -> PyScalar<'_> {
    if quoted {
        return PyScalar::Str(text);
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return PyScalar::None,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return PyScalar::Bool(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return PyScalar::Bool(false)
        }
        _ => {}
    }
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let digits_only = digits.replace('_', "");
    let int = if let Some(hex) = digits_only.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()
    } else if let Some(bin) = digits_only.strip_prefix("0b") {
        i128::from_str_radix(bin, 2).ok()
    } else if digits_only.len() > 1 && digits_only.starts_with('0') {
        i128::from_str_radix(&digits_only[1..], 8).ok()
    } else if !digits_only.is_empty() && digits_only.bytes().all(|b| b.is_ascii_digit()) {
        digits_only.parse().ok()
    } else {
        None
    };
    if let Some(int) = int {
        return PyScalar::Int(if negative { -int } else { int });
    }
    let float_like = digits.contains('.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+' | b'_'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if float_like {
        if let Ok(value) = digits.replace('_', "").parse::<f64>() {
            return PyScalar::Float(if negative { -value } else { value });
        }
    }
    PyScalar::Str(text)
}

/// A string as Python's `repr` prints it.
fn py_quote(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

impl Value {
    fn from_yaml(node: &Yaml) -> Value {
        let line = node.span().start().map_or(0, |m| m.line());
        match node {
            Yaml::Scalar(s) => Value::Scalar {
                text: s.as_str().to_owned(),
                quoted: !s.may_coerce(),
                line,
            },
            Yaml::Sequence(items) => Value::List {
                items: items.iter().map(Value::from_yaml).collect(),
                line,
            },
            Yaml::Mapping(map) => Value::Map {
                entries: map
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), Value::from_yaml(v)))
                    .collect(),
                line,
            },
        }
    }

    fn string(text: &str, line: usize) -> Value {
        Value::Scalar {
            text: text.to_owned(),
            quoted: true,
            line,
        }
    }

    /// The line the value starts on (1-based; 0 when unknown).
    pub fn line(&self) -> usize {
        match self {
            Value::Scalar { line, .. } | Value::List { line, .. } | Value::Map { line, .. } => {
                *line
            }
        }
    }

    /// Whether this is a YAML null (an empty value, `~`, `null`).
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Scalar { text, quoted, .. } if matches!(resolve(text, *quoted), PyScalar::None))
    }

    /// The text of a non-null scalar.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// The value as Python's `repr` prints what PyYAML loads (`{'name': 'root'}`, `[1, 2]`).
    pub fn py_repr(&self) -> String {
        match self {
            Value::Scalar { text, quoted, .. } => match resolve(text, *quoted) {
                PyScalar::Str(s) => py_quote(s),
                PyScalar::Int(i) => i.to_string(),
                PyScalar::Float(f) => format!("{f:?}"),
                PyScalar::Bool(true) => "True".to_owned(),
                PyScalar::Bool(false) => "False".to_owned(),
                PyScalar::None => "None".to_owned(),
            },
            Value::List { items, .. } => {
                let items: Vec<String> = items.iter().map(Value::py_repr).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Map { entries, .. } => py_map(entries.iter().map(|(k, v)| (k, v))),
        }
    }

    /// The value as Python's `%s` prints it: strings bare, anything else as [`Value::py_repr`].
    pub fn py_str(&self) -> String {
        match self {
            Value::Scalar { text, quoted, .. } => match resolve(text, *quoted) {
                PyScalar::Str(s) => s.to_owned(),
                _ => self.py_repr(),
            },
            _ => self.py_repr(),
        }
    }

    /// Like [`Value::py_repr`], with mapping keys sorted (for comparing configurations).
    fn canonical(&self) -> String {
        match self {
            Value::List { items, .. } => {
                let items: Vec<String> = items.iter().map(Value::canonical).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Map { entries, .. } => canonical_map(entries),
            scalar => scalar.py_repr(),
        }
    }
}

fn py_map<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>) -> String {
    let items: Vec<String> = entries
        .map(|(k, v)| format!("{}: {}", py_quote(k), v.py_repr()))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn canonical_map(entries: &[(String, Value)]) -> String {
    let mut sorted: Vec<&(String, Value)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let items: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}: {}", py_quote(k), v.canonical()))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn lookup<'a>(entries: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A non-null setting, which must be a scalar.
fn scalar(entries: &[(String, Value)], key: &str) -> Result<Option<String>, Error> {
    match lookup(entries, key) {
        None => Ok(None),
        Some(value) if value.is_null() => Ok(None),
        Some(value) => match value.as_text() {
            Some(text) => Ok(Some(text.to_owned())),
            None => Err(fail(format!(
                "line {}: '{key}' must be a single value, not {}",
                value.line(),
                value.py_repr()
            ))),
        },
    }
}

/// A setting that is a list of scalars (a single scalar counts as a list of one).
fn scalars(entries: &[(String, Value)], key: &str) -> Result<Vec<String>, Error> {
    let Some(value) = lookup(entries, key) else {
        return Ok(Vec::new());
    };
    let bad = |v: &Value| {
        fail(format!(
            "line {}: '{key}' must be a list of values, not {}",
            v.line(),
            v.py_repr()
        ))
    };
    match value {
        v if v.is_null() => Ok(Vec::new()),
        Value::Scalar { text, .. } => Ok(vec![text.clone()]),
        Value::List { items, .. } => items
            .iter()
            .map(|item| item.as_text().map(str::to_owned).ok_or_else(|| bad(item)))
            .collect(),
        other => Err(bad(other)),
    }
}

fn absolute_size(spec: &str) -> Result<u64, Error> {
    match size::parse(spec, false)? {
        Size::Bytes(bytes) => Ok(bytes),
        Size::Percent(_) => Err(Error::Size(format!("Invalid size unit spec [{spec}]"))),
    }
}

fn size_text(size: Size) -> String {
    match size {
        Size::Bytes(bytes) => bytes.to_string(),
        Size::Percent(percent) => format!("{percent}%"),
    }
}

// ---------------------------------------------------------------------------------------
// Configuration: parse, flatten, params
// ---------------------------------------------------------------------------------------

/// One configuration entry: a plugin and its settings (in tree form, nested plugins and
/// `partitions` included).
#[derive(Debug, Clone)]
pub struct Entry {
    pub plugin: Plugin,
    pub settings: Vec<(String, Value)>,
    /// The line of the entry in the YAML (1-based).
    pub line: usize,
}

impl Entry {
    /// A setting.
    pub fn get(&self, key: &str) -> Option<&Value> {
        lookup(&self.settings, key)
    }

    /// The `name` setting, if it is a scalar.
    pub fn name(&self) -> Option<&str> {
        self.get("name").and_then(Value::as_text)
    }

    /// The `base` setting, if it is a scalar.
    pub fn base(&self) -> Option<&str> {
        self.get("base").and_then(Value::as_text)
    }

    fn set(&mut self, key: &str, value: Value) {
        match self.settings.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.settings.push((key.to_owned(), value)),
        }
    }

    fn absent(&self, key: &str) -> bool {
        self.get(key).is_none_or(Value::is_null)
    }
}

/// Settings of the build that the configuration depends on (`dib-block-device`'s params).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `root-fs-type` (`FS_TYPE`; `ext4` by default).
    pub root_fs_type: String,
    /// `root-fs-opts` (`--mkfs-options`, plus what the image sizing adds).
    pub root_fs_opts: Option<String>,
    /// `root-label` (`--root-label`); absent or empty picks `img-rootfs` (xfs) or
    /// `cloudimg-rootfs`.
    pub root_label: Option<String>,
    /// `DIB_BLOCK_SIZE`, which wins over every `local_loop`'s `block_size`.
    pub block_size: Option<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            root_fs_type: "ext4".to_owned(),
            root_fs_opts: None,
            root_label: None,
            block_size: None,
        }
    }
}

/// A block-device configuration: entries in order.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub entries: Vec<Entry>,
}

fn plugin_body(plugin: Plugin, value: &Value) -> Result<Vec<(String, Value)>, Error> {
    match value {
        Value::Map { entries, .. } => Ok(entries.clone()),
        v if v.is_null() => Ok(Vec::new()),
        other => Err(fail(format!(
            "line {}: {plugin} config must be a dict, not {}",
            other.line(),
            other.py_repr()
        ))),
    }
}

impl Config {
    /// Parses the YAML (tree or graph form) and checks that each entry is a dict with one
    /// key naming a plugin. Empty text is an empty configuration.
    pub fn parse(yaml: &str) -> Result<Config, Error> {
        let options = LoaderOptions::default()
            .toplevel_sequence()
            .prevent_coercion(true);
        let not_a_list = |line: usize| {
            fail(format!(
                "line {line}: a block-device config must be a list of single-key dicts"
            ))
        };
        let root = match marked_yaml::parse_yaml_with_options(0, yaml, options) {
            Ok(root) => root,
            Err(
                marked_yaml::LoadError::TopLevelMustBeMapping(m)
                | marked_yaml::LoadError::TopLevelMustBeSequence(m),
            ) => return Err(not_a_list(m.line())),
            Err(e) => return Err(fail(format!("block-device config is not YAML: {e}"))),
        };
        let items = match &root {
            Yaml::Sequence(items) => items,
            Yaml::Mapping(map) if map.is_empty() => return Ok(Config::default()),
            other => return Err(not_a_list(other.span().start().map_or(0, |m| m.line()))),
        };
        let mut entries = Vec::new();
        for item in items.iter() {
            let value = Value::from_yaml(item);
            let Value::Map {
                entries: keys,
                line,
            } = &value
            else {
                return Err(fail(format!("Config entry not a dict: {}", value.py_str())));
            };
            if keys.len() != 1 {
                return Err(fail(format!(
                    "Config entry top-level should be a single dict: {}",
                    value.py_str()
                )));
            }
            let (key, body) = &keys[0];
            let Some(plugin) = Plugin::from_key(key) else {
                return Err(fail(format!(
                    "Config entry is not a plugin value: {}",
                    value.py_str()
                )));
            };
            entries.push(Entry {
                plugin,
                settings: plugin_body(plugin, body)?,
                line: *line,
            });
        }
        Ok(Config { entries })
    }

    /// Tree form to graph form. A graph-form configuration flattens to itself (up to
    /// order); children come before their parents.
    pub fn flatten(&self) -> Result<Config, Error> {
        let mut out = Vec::new();
        for entry in &self.entries {
            flatten_into(entry.plugin, &entry.settings, entry.line, None, &mut out)?;
        }
        Ok(Config { entries: out })
    }

    /// Fills the absent `type`, `opts` and `label` of the node named `mkfs_root` from the
    /// root params (an empty label becomes `img-rootfs` for xfs, else `cloudimg-rootfs`), and
    /// sets every `local_loop`'s `block_size` when `DIB_BLOCK_SIZE` is given.
    pub fn apply_params(&mut self, params: &Params) {
        for entry in &mut self.entries {
            match entry.plugin {
                Plugin::Mkfs if entry.name() == Some("mkfs_root") => {
                    let line = entry.line;
                    if entry.absent("type") {
                        entry.set("type", Value::string(&params.root_fs_type, line));
                    }
                    if entry.absent("opts") {
                        if let Some(opts) = &params.root_fs_opts {
                            entry.set("opts", Value::string(opts, line));
                        }
                    }
                    if entry.absent("label") {
                        let label = params.root_label.as_deref().unwrap_or("");
                        entry.set("label", Value::string(label, line));
                    }
                    if entry
                        .get("label")
                        .and_then(Value::as_text)
                        .unwrap_or("")
                        .is_empty()
                    {
                        let label = if entry.get("type").and_then(Value::as_text) == Some("xfs") {
                            "img-rootfs"
                        } else {
                            "cloudimg-rootfs"
                        };
                        entry.set("label", Value::string(label, line));
                    }
                }
                Plugin::LocalLoop => {
                    if let Some(block_size) = params.block_size {
                        let line = entry.line;
                        entry.set("block_size", Value::string(&block_size.to_string(), line));
                    }
                }
                _ => {}
            }
        }
    }

    /// One line per entry, `plugin: {settings}` with keys sorted and values as Python
    /// prints them: a canonical text for comparing configurations.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            out.push_str(entry.plugin.as_str());
            out.push_str(": ");
            out.push_str(&canonical_map(&entry.settings));
            out.push('\n');
        }
        out
    }
}

/// A nested plugin entry met while flattening: its plugin, settings, line and parent name.
type Child = (Plugin, Settings, usize, String);

/// A mapping's entries, in document order.
type Settings = Vec<(String, Value)>;

fn flatten_into(
    plugin: Plugin,
    settings: &[(String, Value)],
    line: usize,
    parent: Option<&str>,
    out: &mut Vec<Entry>,
) -> Result<(), Error> {
    let base = match scalar(settings, "base")? {
        Some(base) => Some(base),
        None => parent.map(str::to_owned),
    };
    let name = match (scalar(settings, "name")?, &base) {
        (Some(name), _) => name,
        (None, Some(base)) => format!("{plugin}_{base}"),
        (None, None) => {
            return Err(fail(match plugin {
                Plugin::Partitioning => "Partitioning config needs 'base'".to_owned(),
                Plugin::Lvm => "Lvm config requires 'name'".to_owned(),
                _ => format!("line {line}: {plugin} config needs 'name' or 'base'"),
            }))
        }
    };
    let mut flat = Vec::new();
    // (plugin, settings, line, parent name)
    let mut children: Vec<Child> = Vec::new();
    for (key, value) in settings {
        if let Some(child) = Plugin::from_key(key) {
            children.push((
                child,
                plugin_body(child, value)?,
                value.line(),
                name.clone(),
            ));
        } else if key == "partitions" && plugin == Plugin::Partitioning && !value.is_null() {
            let Value::List { items, line: at } = value else {
                return Err(fail(format!(
                    "line {}: 'partitions' must be a list",
                    value.line()
                )));
            };
            let mut partitions = Vec::new();
            for partition in items {
                let Value::Map { entries, line: at } = partition else {
                    return Err(fail(format!(
                        "line {}: a partition must be a dict, not {}",
                        partition.line(),
                        partition.py_repr()
                    )));
                };
                let partition_name = scalar(entries, "name")?
                    .ok_or_else(|| fail(format!("line {at}: partition has no 'name'")))?;
                let mut kept = Vec::new();
                for (key, value) in entries {
                    if let Some(child) = Plugin::from_key(key) {
                        children.push((
                            child,
                            plugin_body(child, value)?,
                            value.line(),
                            partition_name.clone(),
                        ));
                    } else if key != "base" {
                        kept.push((key.clone(), value.clone()));
                    }
                }
                if let Some(base) = &base {
                    kept.push(("base".to_owned(), Value::string(base, *at)));
                }
                partitions.push(Value::Map {
                    entries: kept,
                    line: *at,
                });
            }
            flat.push((
                key.clone(),
                Value::List {
                    items: partitions,
                    line: *at,
                },
            ));
        } else {
            flat.push((key.clone(), value.clone()));
        }
    }
    if lookup(settings, "base").is_none_or(Value::is_null) {
        if let Some(base) = &base {
            flat.push(("base".to_owned(), Value::string(base, line)));
        }
    }
    if lookup(settings, "name").is_none_or(Value::is_null) {
        flat.push(("name".to_owned(), Value::string(&name, line)));
    }
    for (child, body, at, parent) in children {
        flatten_into(child, &body, at, Some(&parent), out)?;
    }
    out.push(Entry {
        plugin,
        settings: flat,
        line,
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Typed nodes
// ---------------------------------------------------------------------------------------

/// `local_loop`: the image file (upstream: a loop device on a sparse file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLoop {
    pub name: String,
    /// `size`; the `image-size` param when absent.
    pub size: Option<u64>,
    /// `directory`; the `image-dir` param when absent.
    pub directory: Option<String>,
    /// `block_size` (512 unless the config or `DIB_BLOCK_SIZE` says otherwise).
    pub block_size: u64,
}

/// The kind of partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Mbr,
    Gpt,
}

impl TableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Mbr => "mbr",
            TableKind::Gpt => "gpt",
        }
    }
}

/// A partition's type: an MBR type byte or an sgdisk type code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionType {
    Mbr(u8),
    Gpt(String),
}

impl fmt::Display for PartitionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionType::Mbr(byte) => write!(f, "{byte:#04x}"),
            PartitionType::Gpt(code) => f.write_str(code),
        }
    }
}

/// `partitioning`: a partition table on `base`. It is not a node itself; its partitions are.
#[derive(Debug, Clone, PartialEq)]
pub struct Partitioning {
    pub name: String,
    pub base: String,
    pub label: TableKind,
    /// `align` (1 MiB).
    pub align: u64,
    pub partitions: Vec<Partition>,
}

/// A partition (a node).
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub name: String,
    /// The disk (the partitioning's base).
    pub base: String,
    /// The partitioning entry it belongs to.
    pub table: String,
    pub label: TableKind,
    pub size: Size,
    pub bootable: bool,
    /// MBR only: without the `primary` flag a partition is logical.
    pub primary: bool,
    pub kind: PartitionType,
}

/// `lvm`: the node that creates every PV, VG and LV of its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lvm {
    pub name: String,
    pub pvs: Vec<Pv>,
    pub vgs: Vec<Vg>,
    pub lvs: Vec<Lv>,
}

/// An LVM physical volume (a node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pv {
    pub name: String,
    pub base: String,
    pub options: Vec<String>,
}

/// An LVM volume group (a node); `base` lists its PVs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vg {
    pub name: String,
    pub base: Vec<String>,
    pub options: Vec<String>,
}

/// The `type` of an LV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LvType {
    Thin,
    ThinPool,
}

impl LvType {
    pub fn as_str(self) -> &'static str {
        match self {
            LvType::Thin => "thin",
            LvType::ThinPool => "thin-pool",
        }
    }
}

/// An LVM logical volume (a node); `base` is its VG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lv {
    pub name: String,
    pub base: String,
    /// `size` in bytes, floored to 4 MiB: `lvcreate -L <bytes>B` (`-V` for thin LVs).
    pub size: Option<u64>,
    /// `extents`: `lvcreate -l <extents>`.
    pub extents: Option<String>,
    pub options: Vec<String>,
    pub lv_type: Option<LvType>,
    pub thin_pool: Option<String>,
}

/// `mkfs`: a filesystem on `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mkfs {
    pub name: String,
    pub base: String,
    pub fs_type: String,
    /// `label` (the node name by default; uppercased for vfat).
    pub label: String,
    /// `opts`, split on spaces.
    pub opts: Vec<String>,
    /// `uuid` (derived or random when absent).
    pub uuid: Option<String>,
}

/// `mount`: where the filesystem `base` goes (`none` for swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub name: String,
    pub base: String,
    pub mount_point: String,
}

/// `fstab`: the fstab entry of the mount `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fstab {
    pub name: String,
    pub base: String,
    /// `options` (`defaults`).
    pub options: String,
    /// `dump-freq` (`0`).
    pub dump_freq: String,
    /// `fsck-passno` (`2`).
    pub fsck_passno: String,
}

/// A node of the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    LocalLoop(LocalLoop),
    Partition(Partition),
    Lvm(Lvm),
    Pv(Pv),
    Vg(Vg),
    Lv(Lv),
    Mkfs(Mkfs),
    Mount(Mount),
    Fstab(Fstab),
}

impl Node {
    /// The node's name (unique in a graph).
    pub fn name(&self) -> &str {
        match self {
            Node::LocalLoop(n) => &n.name,
            Node::Partition(n) => &n.name,
            Node::Lvm(n) => &n.name,
            Node::Pv(n) => &n.name,
            Node::Vg(n) => &n.name,
            Node::Lv(n) => &n.name,
            Node::Mkfs(n) => &n.name,
            Node::Mount(n) => &n.name,
            Node::Fstab(n) => &n.name,
        }
    }

    /// What kind of node it is: a plugin name, or `partition`, `pv`, `vg`, `lv`.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::LocalLoop(_) => "local_loop",
            Node::Partition(_) => "partition",
            Node::Lvm(_) => "lvm",
            Node::Pv(_) => "pv",
            Node::Vg(_) => "vg",
            Node::Lv(_) => "lv",
            Node::Mkfs(_) => "mkfs",
            Node::Mount(_) => "mount",
            Node::Fstab(_) => "fstab",
        }
    }

    /// Whether a filesystem or partition table can sit on it.
    fn is_block_device(&self) -> bool {
        matches!(self, Node::LocalLoop(_) | Node::Partition(_) | Node::Lv(_))
    }
}

fn need_name(entry: &Entry) -> Result<String, Error> {
    scalar(&entry.settings, "name")?.ok_or_else(|| {
        fail(format!(
            "line {}: {} config has no 'name'",
            entry.line, entry.plugin
        ))
    })
}

fn need_base(entry: &Entry, name: &str) -> Result<String, Error> {
    scalar(&entry.settings, "base")?
        .ok_or_else(|| fail(format!("{} {name} has no 'base'", entry.plugin)))
}

fn parse_local_loop(entry: &Entry) -> Result<LocalLoop, Error> {
    let name = need_name(entry)?;
    let size = scalar(&entry.settings, "size")?
        .map(|s| absolute_size(&s))
        .transpose()?;
    let block_size = scalar(&entry.settings, "block_size")?
        .map(|s| absolute_size(&s))
        .transpose()?
        .unwrap_or(512);
    Ok(LocalLoop {
        name,
        size,
        directory: scalar(&entry.settings, "directory")?,
        block_size,
    })
}

fn parse_partitioning(entry: &Entry) -> Result<Partitioning, Error> {
    let name = need_name(entry)?;
    let base =
        scalar(&entry.settings, "base")?.ok_or_else(|| fail("Partitioning config needs 'base'"))?;
    let partitions = entry
        .get("partitions")
        .filter(|v| !v.is_null())
        .ok_or_else(|| fail("Partitioning config needs 'partitions'"))?;
    let label = match scalar(&entry.settings, "label")?.as_deref() {
        None => return Err(fail("Partitioning config needs 'label'")),
        Some("mbr") => TableKind::Mbr,
        Some("gpt") => TableKind::Gpt,
        Some(_) => return Err(fail("Label must be 'mbr' or 'gpt'")),
    };
    let align = scalar(&entry.settings, "align")?
        .map(|s| absolute_size(&s))
        .transpose()?
        .unwrap_or(MIB);
    let Value::List { items, .. } = partitions else {
        return Err(fail(format!(
            "line {}: 'partitions' must be a list",
            partitions.line()
        )));
    };
    let mut parsed = Vec::new();
    for item in items {
        let Value::Map { entries, line } = item else {
            return Err(fail(format!(
                "line {}: a partition must be a dict, not {}",
                item.line(),
                item.py_repr()
            )));
        };
        let part_name = scalar(entries, "name")?
            .ok_or_else(|| fail(format!("line {line}: partition has no 'name'")))?;
        let mut bootable = false;
        let mut primary = false;
        for flag in scalars(entries, "flags")? {
            match flag.as_str() {
                "boot" => bootable = true,
                "primary" if label == TableKind::Gpt => {
                    return Err(fail("Primary flag not supported for GPT partitions"))
                }
                "primary" => primary = true,
                other => return Err(fail(format!("Unknown flag: {other}"))),
            }
        }
        let size = match scalar(entries, "size")? {
            Some(spec) => size::parse(&spec, true)?,
            None => return Err(fail(format!("No size in partition {part_name}"))),
        };
        let kind = match (label, scalar(entries, "type")?) {
            (TableKind::Mbr, None) => PartitionType::Mbr(0x83),
            (TableKind::Mbr, Some(text)) => {
                let hex = text
                    .strip_prefix("0x")
                    .or_else(|| text.strip_prefix("0X"))
                    .unwrap_or(&text);
                let byte = u8::from_str_radix(hex, 16).map_err(|_| {
                    fail(format!(
                        "partition {part_name}: type {text} is not an MBR type (a hex byte such as 0x83)"
                    ))
                })?;
                PartitionType::Mbr(byte)
            }
            (TableKind::Gpt, None) => PartitionType::Gpt("8300".to_owned()),
            (TableKind::Gpt, Some(code)) => PartitionType::Gpt(code),
        };
        parsed.push(Partition {
            name: part_name,
            base: base.clone(),
            table: name.clone(),
            label,
            size,
            bootable,
            primary,
            kind,
        });
    }
    Ok(Partitioning {
        name,
        base,
        label,
        align,
        partitions: parsed,
    })
}

fn list_of_maps<'a>(entry: &'a Entry, key: &str) -> Result<Vec<(&'a Settings, usize)>, Error> {
    let value = entry
        .get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| fail(format!("Lvm config requires '{key}'")))?;
    let Value::List { items, .. } = value else {
        return Err(fail(format!(
            "line {}: '{key}' must be a list",
            value.line()
        )));
    };
    items
        .iter()
        .map(|item| match item {
            Value::Map { entries, line } => Ok((entries, *line)),
            other => Err(fail(format!(
                "line {}: each of '{key}' must be a dict, not {}",
                other.line(),
                other.py_repr()
            ))),
        })
        .collect()
}

fn parse_lvm(entry: &Entry) -> Result<Lvm, Error> {
    let name =
        scalar(&entry.settings, "name")?.ok_or_else(|| fail("Lvm config requires 'name'"))?;
    let default_base = scalar(&entry.settings, "base")?;
    let mut pvs = Vec::new();
    for (settings, line) in list_of_maps(entry, "pvs")? {
        let pv_name = scalar(settings, "name")?
            .ok_or_else(|| fail(format!("line {line}: pvs entry has no 'name'")))?;
        let base = scalar(settings, "base")?
            .or_else(|| default_base.clone())
            .ok_or_else(|| fail(format!("pvs entry {pv_name} has no 'base'")))?;
        pvs.push(Pv {
            name: pv_name,
            base,
            options: scalars(settings, "options")?,
        });
    }
    let mut vgs = Vec::new();
    for (settings, line) in list_of_maps(entry, "vgs")? {
        let vg_name = scalar(settings, "name")?
            .ok_or_else(|| fail(format!("line {line}: vgs entry has no 'name'")))?;
        let base = scalars(settings, "base")?;
        if base.is_empty() {
            return Err(fail(format!("vgs entry {vg_name} has no 'base'")));
        }
        for pv in &base {
            if !pvs.iter().any(|p| &p.name == pv) {
                return Err(fail(format!("base:{pv} in vgs does not match a valid pvs")));
            }
        }
        vgs.push(Vg {
            name: vg_name,
            base,
            options: scalars(settings, "options")?,
        });
    }
    let mut lvs = Vec::new();
    for (settings, line) in list_of_maps(entry, "lvs")? {
        let lv_name = scalar(settings, "name")?
            .ok_or_else(|| fail(format!("line {line}: lvs entry has no 'name'")))?;
        let base_value = lookup(settings, "base");
        let base = match base_value.and_then(Value::as_text) {
            Some(vg) if vgs.iter().any(|v| v.name == vg) => vg.to_owned(),
            _ => {
                let shown = base_value.map_or("None".to_owned(), Value::py_str);
                return Err(fail(format!(
                    "base:{shown} in lvs does not match a valid vg"
                )));
            }
        };
        let size = scalar(settings, "size")?
            .map(|s| absolute_size(&s).map(|bytes| bytes / LVM_EXTENT * LVM_EXTENT))
            .transpose()?;
        let extents = scalar(settings, "extents")?;
        if size.is_none() && extents.is_none() {
            return Err(fail("Missing 'size' or 'extents' in lvs config"));
        }
        let lv_type = match scalar(settings, "type")?.as_deref() {
            None => None,
            Some("thin") => Some(LvType::Thin),
            Some("thin-pool") => Some(LvType::ThinPool),
            Some(other) => {
                return Err(fail(format!(
                    "Unsupported type:{other}, supported types: thin, thin-pool"
                )))
            }
        };
        let thin_pool = scalar(settings, "thin-pool")?;
        if lv_type == Some(LvType::Thin) && thin_pool.is_none() {
            return Err(fail(format!(
                "lvs entry {lv_name}: type thin needs 'thin-pool'"
            )));
        }
        lvs.push(Lv {
            name: lv_name,
            base,
            size,
            extents,
            options: scalars(settings, "options")?,
            lv_type,
            thin_pool,
        });
    }
    Ok(Lvm {
        name,
        pvs,
        vgs,
        lvs,
    })
}

/// The longest label each filesystem type takes.
fn label_limit(fs_type: &str) -> Option<usize> {
    match fs_type {
        "ext2" | "ext3" | "ext4" | "swap" => Some(16),
        "xfs" => Some(12),
        "vfat" => Some(11),
        _ => None,
    }
}

fn parse_mkfs(entry: &Entry, labels: &mut BTreeSet<String>) -> Result<Mkfs, Error> {
    let name = need_name(entry)?;
    let base = need_base(entry, &name)?;
    let fs_type = scalar(&entry.settings, "type")?
        .ok_or_else(|| fail(format!("mkfs {name} has no 'type'")))?;
    let mut label = scalar(&entry.settings, "label")?.unwrap_or_else(|| name.clone());
    if fs_type == "vfat" {
        label = label.to_uppercase();
    }
    if !labels.insert(label.clone()) {
        return Err(fail(format!(
            "File system label [{label}] used more than once"
        )));
    }
    let length = label.chars().count();
    if let Some(max) = label_limit(&fs_type).filter(|max| length > *max) {
        return Err(fail(format!(
            "Label [{label}] too long for filesystem [{fs_type}]: {length} > {max}"
        )));
    }
    let opts = match entry.get("opts") {
        Some(Value::Scalar { text, .. }) => text.split_whitespace().map(str::to_owned).collect(),
        _ => scalars(&entry.settings, "opts")?,
    };
    Ok(Mkfs {
        name,
        base,
        fs_type,
        label,
        opts,
        uuid: scalar(&entry.settings, "uuid")?,
    })
}

fn parse_mount(entry: &Entry, mount_points: &mut BTreeMap<String, String>) -> Result<Mount, Error> {
    let name = need_name(entry)?;
    let base = need_base(entry, &name)?;
    let mount_point = scalar(&entry.settings, "mount_point")?
        .ok_or_else(|| fail(format!("mount {name} has no 'mount_point'")))?;
    if mount_points
        .insert(mount_point.clone(), name.clone())
        .is_some()
    {
        return Err(fail(format!(
            "Mount point [{mount_point}] specified more than once"
        )));
    }
    Ok(Mount {
        name,
        base,
        mount_point,
    })
}

fn parse_fstab(entry: &Entry) -> Result<Fstab, Error> {
    let name = need_name(entry)?;
    let base = need_base(entry, &name)?;
    let get = |key: &str, default: &str| -> Result<String, Error> {
        Ok(scalar(&entry.settings, key)?.unwrap_or_else(|| default.to_owned()))
    };
    Ok(Fstab {
        options: get("options", "defaults")?,
        dump_freq: get("dump-freq", "0")?,
        fsck_passno: get("fsck-passno", "2")?,
        name,
        base,
    })
}

// ---------------------------------------------------------------------------------------
// Graph
// ---------------------------------------------------------------------------------------

/// The checked, ordered block-device graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Nodes in execution order.
    nodes: Vec<Node>,
    /// The partitioning entries (their partitions are nodes).
    tables: Vec<Partitioning>,
    /// `(from, to)`: `from` runs before `to`.
    edges: BTreeSet<(String, String)>,
}

fn expect_kind(
    graph: &BTreeMap<&str, &Node>,
    node: &Node,
    base: &str,
    ok: fn(&Node) -> bool,
    wanted: &str,
) -> Result<(), Error> {
    match graph.get(base) {
        Some(target) if !ok(target) => Err(fail(format!(
            "{} {}: base {base} is a {} node, not {wanted}",
            node.kind(),
            node.name(),
            target.kind()
        ))),
        _ => Ok(()),
    }
}

impl Graph {
    /// Parses, flattens, applies `params` and builds: what `dib-block-device init` does.
    pub fn load(yaml: &str, params: &Params) -> Result<Graph, Error> {
        let mut config = Config::parse(yaml)?.flatten()?;
        config.apply_params(params);
        Graph::build(&config)
    }

    /// Builds the graph of a flattened configuration: typed nodes (plugin checks in entry
    /// order), duplicate names, edges, order, and that each base is of a fitting kind.
    pub fn build(config: &Config) -> Result<Graph, Error> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut tables = Vec::new();
        let mut labels = BTreeSet::new();
        let mut mount_points: BTreeMap<String, String> = BTreeMap::new();
        let mut add = |nodes: &mut Vec<Node>, node: Node| -> Result<(), Error> {
            if !names.insert(node.name().to_owned()) {
                return Err(fail(format!("Duplicate node name: {}", node.name())));
            }
            nodes.push(node);
            Ok(())
        };
        for entry in &config.entries {
            match entry.plugin {
                Plugin::LocalLoop => add(&mut nodes, Node::LocalLoop(parse_local_loop(entry)?))?,
                Plugin::Partitioning => {
                    let table = parse_partitioning(entry)?;
                    for partition in &table.partitions {
                        add(&mut nodes, Node::Partition(partition.clone()))?;
                    }
                    tables.push(table);
                }
                Plugin::Lvm => {
                    let lvm = parse_lvm(entry)?;
                    let (pvs, vgs, lvs) = (lvm.pvs.clone(), lvm.vgs.clone(), lvm.lvs.clone());
                    add(&mut nodes, Node::Lvm(lvm))?;
                    for pv in pvs {
                        add(&mut nodes, Node::Pv(pv))?;
                    }
                    for vg in vgs {
                        add(&mut nodes, Node::Vg(vg))?;
                    }
                    for lv in lvs {
                        add(&mut nodes, Node::Lv(lv))?;
                    }
                }
                Plugin::Mkfs => add(&mut nodes, Node::Mkfs(parse_mkfs(entry, &mut labels)?))?,
                Plugin::Mount => add(
                    &mut nodes,
                    Node::Mount(parse_mount(entry, &mut mount_points)?),
                )?,
                Plugin::Fstab => add(&mut nodes, Node::Fstab(parse_fstab(entry)?))?,
            }
        }

        // Each mount waits for the mount point before it in string order.
        let mut previous_mount: BTreeMap<&str, &str> = BTreeMap::new();
        let chain: Vec<&String> = mount_points.values().collect();
        for pair in chain.windows(2) {
            previous_mount.insert(pair[1], pair[0]);
        }
        let mut previous_partition: BTreeMap<&str, &str> = BTreeMap::new();
        for table in &tables {
            for pair in table.partitions.windows(2) {
                previous_partition.insert(&pair[1].name, &pair[0].name);
            }
        }

        let known: BTreeSet<&str> = nodes.iter().map(Node::name).collect();
        let mut edges = BTreeSet::new();
        for node in &nodes {
            let name = node.name();
            let (from, to): (Vec<&str>, Vec<&str>) = match node {
                Node::LocalLoop(_) | Node::Pv(_) => (vec![], vec![]),
                Node::Partition(p) => {
                    let mut from = vec![p.base.as_str()];
                    from.extend(previous_partition.get(name).copied());
                    (from, vec![])
                }
                Node::Lvm(lvm) => {
                    let mut from: Vec<&str> = Vec::new();
                    for pv in &lvm.pvs {
                        if !from.contains(&pv.base.as_str()) {
                            from.push(&pv.base);
                        }
                    }
                    (from, lvm.pvs.iter().map(|pv| pv.name.as_str()).collect())
                }
                Node::Vg(vg) => (vg.base.iter().map(String::as_str).collect(), vec![]),
                Node::Lv(lv) => (vec![lv.base.as_str()], vec![]),
                Node::Mkfs(m) => (vec![m.base.as_str()], vec![]),
                Node::Mount(m) => {
                    let mut from = vec![m.base.as_str()];
                    from.extend(previous_mount.get(name).copied());
                    (from, vec![])
                }
                Node::Fstab(f) => (vec![f.base.as_str()], vec![]),
            };
            for before in from {
                if !known.contains(before) {
                    return Err(fail(format!("Edge not defined: {before}->{name}")));
                }
                edges.insert((before.to_owned(), name.to_owned()));
            }
            for after in to {
                if !known.contains(after) {
                    return Err(fail(format!("Edge not defined: {name}->{after}")));
                }
                edges.insert((name.to_owned(), after.to_owned()));
            }
        }

        let nodes = order(nodes, &edges)?;

        let by_name: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.name(), n)).collect();
        for node in &nodes {
            match node {
                Node::Mkfs(m) => expect_kind(
                    &by_name,
                    node,
                    &m.base,
                    Node::is_block_device,
                    "a local_loop, partition or lv",
                )?,
                Node::Mount(m) => expect_kind(
                    &by_name,
                    node,
                    &m.base,
                    |n| matches!(n, Node::Mkfs(_)),
                    "a mkfs",
                )?,
                Node::Fstab(f) => expect_kind(
                    &by_name,
                    node,
                    &f.base,
                    |n| matches!(n, Node::Mount(_)),
                    "a mount",
                )?,
                Node::Partition(p) => expect_kind(
                    &by_name,
                    node,
                    &p.base,
                    |n| matches!(n, Node::LocalLoop(_) | Node::Lv(_)),
                    "a local_loop or lv",
                )?,
                Node::Pv(pv) => expect_kind(
                    &by_name,
                    node,
                    &pv.base,
                    |n| matches!(n, Node::LocalLoop(_) | Node::Partition(_)),
                    "a local_loop or partition",
                )?,
                _ => {}
            }
        }
        Ok(Graph {
            nodes,
            tables,
            edges,
        })
    }

    /// The nodes in execution order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node names in execution order.
    pub fn order(&self) -> Vec<&str> {
        self.nodes.iter().map(Node::name).collect()
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    /// The partitioning entries.
    pub fn tables(&self) -> &[Partitioning] {
        &self.tables
    }

    /// The edges `(from, to)`, sorted: `from` runs before `to`.
    pub fn edges(&self) -> impl Iterator<Item = (&str, &str)> {
        self.edges.iter().map(|(a, b)| (a.as_str(), b.as_str()))
    }

    /// The nodes with an edge to `name`, sorted.
    pub fn predecessors(&self, name: &str) -> Vec<&str> {
        self.edges()
            .filter(|(_, to)| *to == name)
            .map(|(from, _)| from)
            .collect()
    }

    fn mkfs(&self, name: &str) -> Option<&Mkfs> {
        self.nodes.iter().find_map(|n| match n {
            Node::Mkfs(m) if m.name == name => Some(m),
            _ => None,
        })
    }

    fn mounts(&self) -> impl Iterator<Item = &Mount> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Mount(m) => Some(m),
            _ => None,
        })
    }

    /// The filesystem mounted at `mount_point`.
    pub fn filesystem_at(&self, mount_point: &str) -> Option<&Mkfs> {
        self.mounts()
            .find(|m| m.mount_point == mount_point)
            .and_then(|m| self.mkfs(&m.base))
    }

    fn root_fs(&self) -> Option<&Mkfs> {
        self.filesystem_at("/").or_else(|| self.mkfs("mkfs_root"))
    }

    /// `getval root-label`: the label of the filesystem mounted at `/` (else of `mkfs_root`).
    pub fn root_label(&self) -> Option<&str> {
        self.root_fs().map(|m| m.label.as_str())
    }

    /// `getval root-fstype`: the type of the filesystem mounted at `/` (else of `mkfs_root`).
    pub fn root_fstype(&self) -> Option<&str> {
        self.root_fs().map(|m| m.fs_type.as_str())
    }

    /// `getval boot-label`: the label of the filesystem mounted at `/boot`, else empty.
    pub fn boot_label(&self) -> &str {
        self.filesystem_at("/boot").map_or("", |m| m.label.as_str())
    }

    /// `getval mount-points` and the mount order: every mount point in string order (a
    /// mount point before the ones inside it, `none` last).
    pub fn mount_points(&self) -> Vec<&str> {
        self.mounts().map(|m| m.mount_point.as_str()).collect()
    }

    /// The fstab as `writefstab` writes it: per mount in mount order with an fstab entry,
    /// `LABEL=<label> <mount point> <type> <options> <dump> <passno>`; swap gets `sw 0 0`.
    pub fn fstab(&self) -> String {
        let mut out = String::new();
        for mount in self.mounts() {
            let Some(fs) = self.mkfs(&mount.base) else {
                continue;
            };
            for node in &self.nodes {
                let Node::Fstab(entry) = node else {
                    continue;
                };
                if entry.base != mount.name {
                    continue;
                }
                let (options, dump, passno) = if fs.fs_type == "swap" {
                    ("sw", "0", "0")
                } else {
                    (
                        entry.options.as_str(),
                        entry.dump_freq.as_str(),
                        entry.fsck_passno.as_str(),
                    )
                };
                out.push_str(&format!(
                    "LABEL={} {} {} {options} {dump} {passno}\n",
                    fs.label, mount.mount_point, fs.fs_type
                ));
            }
        }
        out
    }

    /// One line per node in order: `<name> <kind> key=value … after=<predecessors>`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let mut fields: Vec<(&str, String)> = Vec::new();
            match node {
                Node::LocalLoop(n) => {
                    if let Some(size) = n.size {
                        fields.push(("size", size.to_string()));
                    }
                    if let Some(dir) = &n.directory {
                        fields.push(("directory", dir.clone()));
                    }
                    fields.push(("block_size", n.block_size.to_string()));
                }
                Node::Partition(p) => {
                    fields.push(("table", p.table.clone()));
                    fields.push(("label", p.label.as_str().to_owned()));
                    fields.push(("base", p.base.clone()));
                    fields.push(("size", size_text(p.size)));
                    let mut flags = Vec::new();
                    if p.bootable {
                        flags.push("boot");
                    }
                    if p.primary {
                        flags.push("primary");
                    }
                    if !flags.is_empty() {
                        fields.push(("flags", flags.join(",")));
                    }
                    fields.push(("type", p.kind.to_string()));
                }
                Node::Lvm(l) => {
                    let names = |n: Vec<&str>| n.join(",");
                    fields.push((
                        "pvs",
                        names(l.pvs.iter().map(|p| p.name.as_str()).collect()),
                    ));
                    fields.push((
                        "vgs",
                        names(l.vgs.iter().map(|v| v.name.as_str()).collect()),
                    ));
                    fields.push((
                        "lvs",
                        names(l.lvs.iter().map(|v| v.name.as_str()).collect()),
                    ));
                }
                Node::Pv(pv) => {
                    fields.push(("base", pv.base.clone()));
                    if !pv.options.is_empty() {
                        fields.push(("options", pv.options.join(" ")));
                    }
                }
                Node::Vg(vg) => {
                    fields.push(("pvs", vg.base.join(",")));
                    if !vg.options.is_empty() {
                        fields.push(("options", vg.options.join(" ")));
                    }
                }
                Node::Lv(lv) => {
                    fields.push(("vg", lv.base.clone()));
                    if let Some(size) = lv.size {
                        fields.push(("size", format!("{size}B")));
                    }
                    if let Some(extents) = &lv.extents {
                        fields.push(("extents", extents.clone()));
                    }
                    if let Some(kind) = lv.lv_type {
                        fields.push(("type", kind.as_str().to_owned()));
                    }
                    if let Some(pool) = &lv.thin_pool {
                        fields.push(("thin-pool", pool.clone()));
                    }
                    if !lv.options.is_empty() {
                        fields.push(("options", lv.options.join(" ")));
                    }
                }
                Node::Mkfs(m) => {
                    fields.push(("base", m.base.clone()));
                    fields.push(("type", m.fs_type.clone()));
                    fields.push(("label", m.label.clone()));
                    if !m.opts.is_empty() {
                        fields.push(("opts", m.opts.join(" ")));
                    }
                    if let Some(uuid) = &m.uuid {
                        fields.push(("uuid", uuid.clone()));
                    }
                }
                Node::Mount(m) => {
                    fields.push(("base", m.base.clone()));
                    fields.push(("mount_point", m.mount_point.clone()));
                }
                Node::Fstab(f) => {
                    fields.push(("base", f.base.clone()));
                    fields.push(("options", f.options.clone()));
                    fields.push(("dump-freq", f.dump_freq.clone()));
                    fields.push(("fsck-passno", f.fsck_passno.clone()));
                }
            }
            let after = self.predecessors(node.name());
            if !after.is_empty() {
                fields.push(("after", after.join(",")));
            }
            out.push_str(&quote(node.name()));
            out.push(' ');
            out.push_str(node.kind());
            for (key, value) in fields {
                out.push(' ');
                out.push_str(key);
                out.push('=');
                out.push_str(&quote(&value));
            }
            out.push('\n');
        }
        out
    }
}

/// A value for a one-line description: quoted when empty or holding spaces or quotes.
fn quote(value: &str) -> String {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"') {
        format!("{value:?}")
    } else {
        value.to_owned()
    }
}

/// Kahn's algorithm, ready nodes taken in bytewise name order; a cycle is an error naming
/// its nodes.
fn order(nodes: Vec<Node>, edges: &BTreeSet<(String, String)>) -> Result<Vec<Node>, Error> {
    let mut indegree: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.name(), 0)).collect();
    let mut successors: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges {
        *indegree.entry(to).or_default() += 1;
        successors.entry(from).or_default().push(to);
    }
    let mut ready: BTreeSet<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut sorted: Vec<&str> = Vec::with_capacity(nodes.len());
    while let Some(name) = ready.pop_first() {
        sorted.push(name);
        for next in successors.get(name).into_iter().flatten() {
            let degree = indegree.get_mut(next).expect("edges join known nodes");
            *degree -= 1;
            if *degree == 0 {
                ready.insert(next);
            }
        }
    }
    if sorted.len() < nodes.len() {
        let left: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(n, _)| *n)
            .collect();
        // Every node left has a predecessor left: walk back until a node repeats.
        let predecessor = |name: &str| -> &str {
            edges
                .iter()
                .filter(|(from, to)| to == name && left.contains(from.as_str()))
                .map(|(from, _)| from.as_str())
                .next()
                .expect("a node left by Kahn's algorithm has a predecessor left")
        };
        let mut walk: Vec<&str> = vec![left.first().expect("nodes are left")];
        loop {
            let back = predecessor(walk[walk.len() - 1]);
            if let Some(at) = walk.iter().position(|n| *n == back) {
                let mut cycle: Vec<&str> = walk[at..].iter().rev().copied().collect();
                let start = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| **n)
                    .map_or(0, |(i, _)| i);
                cycle.rotate_left(start);
                cycle.push(cycle[0]);
                return Err(fail(format!(
                    "block-device graph has a cycle: {}",
                    cycle.join(" -> ")
                )));
            }
            walk.push(back);
        }
    }
    let position: BTreeMap<String, usize> = sorted
        .iter()
        .enumerate()
        .map(|(i, n)| ((*n).to_owned(), i))
        .collect();
    let mut nodes = nodes;
    nodes.sort_by_key(|n| position[n.name()]);
    Ok(nodes)
}

// ---------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------

/// Where the plan's identifiers come from (disk ids, partition GUIDs, filesystem UUIDs).
pub trait IdSource {
    /// A UUID for `node`, in its 16 bytes as written in text order (big-endian).
    fn uuid(&self, purpose: Purpose, node: &str) -> [u8; 16];

    /// A non-zero 32-bit id: the first 4 bytes of [`IdSource::uuid`], little-endian.
    fn id32(&self, purpose: Purpose, node: &str) -> u32 {
        let uuid = self.uuid(purpose, node);
        match u32::from_le_bytes([uuid[0], uuid[1], uuid[2], uuid[3]]) {
            0 => 1,
            id => id,
        }
    }
}

/// Reproducible identifiers (`SOURCE_DATE_EPOCH` set).
impl IdSource for Seed {
    fn uuid(&self, purpose: Purpose, node: &str) -> [u8; 16] {
        Seed::uuid(self, purpose, node)
    }

    fn id32(&self, purpose: Purpose, node: &str) -> u32 {
        Seed::id32(self, purpose, node)
    }
}

/// Any `Fn(purpose, node) -> uuid`, e.g. fixed identifiers in tests.
impl<F> IdSource for F
where
    F: Fn(Purpose, &str) -> [u8; 16],
{
    fn uuid(&self, purpose: Purpose, node: &str) -> [u8; 16] {
        self(purpose, node)
    }
}

/// Identifiers that differ from build to build (version-4 UUIDs from the standard library's
/// randomly keyed hasher); stable within one value, so a plan is self-consistent.
#[derive(Debug, Clone, Default)]
pub struct RandomIds {
    keys: RandomState,
}

impl RandomIds {
    pub fn new() -> RandomIds {
        RandomIds::default()
    }
}

impl IdSource for RandomIds {
    fn uuid(&self, purpose: Purpose, node: &str) -> [u8; 16] {
        let high = self.keys.hash_one((purpose.as_str(), node, 0u8));
        let low = self.keys.hash_one((purpose.as_str(), node, 1u8));
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&high.to_be_bytes());
        uuid[8..].copy_from_slice(&low.to_be_bytes());
        uuid[6] = (uuid[6] & 0x0F) | 0x40;
        uuid[8] = (uuid[8] & 0x3F) | 0x80;
        uuid
    }
}

// ---------------------------------------------------------------------------------------
// Disk plan
// ---------------------------------------------------------------------------------------

/// A filesystem's identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsId {
    /// A UUID in text form (ext*, xfs, swap, …): `-U`, `-m uuid=`, the swap header.
    Uuid(String),
    /// A FAT volume id (`mkfs.fat -i`).
    VolumeId(u32),
}

impl fmt::Display for FsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsId::Uuid(text) => f.write_str(text),
            FsId::VolumeId(id) => write!(f, "{:04X}-{:04X}", id >> 16, id & 0xFFFF),
        }
    }
}

/// The partition table of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionTable {
    Mbr { layout: Layout, disk_id: u32 },
    Gpt(GptLayout),
}

/// A planned partition, by the node it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPartition {
    pub name: String,
    /// The partition number (MBR logicals from 5; the extended entry is not listed).
    pub number: u32,
    pub first_sector: u64,
    pub last_sector: u64,
    /// Byte offset in the image.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    pub kind: PartitionType,
    pub bootable: bool,
    /// GPT: the partition's unique GUID in text form.
    pub guid: Option<String>,
}

/// A filesystem to make inside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsPlan {
    /// The mkfs node.
    pub name: String,
    /// The node it sits on (a partition, or the disk itself).
    pub device: String,
    pub fs_type: String,
    pub label: String,
    /// The config's `uuid`, else derived: purpose `fs-uuid`, `swap-uuid` (swap) or
    /// `vfat-volume-id` (vfat), node = the mkfs node.
    pub id: FsId,
    /// ext2/3/4: `-E hash_seed=` (purpose `ext4-hash-seed`).
    pub hash_seed: Option<String>,
    /// mkfs options from the config (and `root-fs-opts` for `mkfs_root`).
    pub opts: Vec<String>,
    /// Byte offset in the image.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Where it is mounted (`None` for swap and unmounted filesystems).
    pub mount_point: Option<String>,
    /// The mount points nested directly inside `mount_point`: their subtrees belong to other
    /// filesystems, so the filesystem gets `built/<mount_point>` minus these (each kept as an
    /// empty directory to mount on).
    pub exclude: Vec<String>,
}

/// What the rootless image stage makes: data only, the caller writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    /// The `local_loop` node.
    pub disk: String,
    /// The image file size in bytes.
    pub image_size: u64,
    /// `None` when the filesystem fills the bare image.
    pub table: Option<PartitionTable>,
    pub partitions: Vec<PlannedPartition>,
    /// In graph order.
    pub filesystems: Vec<FsPlan>,
    /// `etc/fstab` for the built tree.
    pub fstab: String,
}

fn vfat_volume_id(text: &str) -> Option<u32> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(&hex, 16).ok()
}

/// The mount points directly inside `mount_point` (none of the others in between).
fn nested(mount_point: &str, all: &[&str]) -> Vec<String> {
    let inside = |outer: &str, inner: &str| -> bool {
        inner != outer
            && inner.starts_with('/')
            && (outer == "/" || inner.starts_with(&format!("{outer}/")))
    };
    let below: Vec<&str> = all
        .iter()
        .copied()
        .filter(|p| inside(mount_point, p))
        .collect();
    below
        .iter()
        .filter(|p| !below.iter().any(|q| inside(q, p)))
        .map(|p| (*p).to_owned())
        .collect()
}

impl Graph {
    /// Plans the image for rootless assembly: `image_size` bytes (the `image-size` param;
    /// the `local_loop`'s `size` wins), one disk, its partition table and filesystems.
    /// Errors for LVM, more or fewer than one `local_loop`, sectors other than 512 bytes, an
    /// `align` other than 1 MiB, and layouts that do not fit.
    pub fn plan(&self, image_size: u64, ids: &dyn IdSource) -> Result<DiskPlan, Error> {
        if self
            .nodes
            .iter()
            .any(|n| matches!(n, Node::Lvm(_) | Node::Pv(_) | Node::Vg(_) | Node::Lv(_)))
        {
            return Err(fail(
                "lvm needs the privileged path, which dib-core does not implement yet",
            ));
        }
        let disks: Vec<&LocalLoop> = self
            .nodes
            .iter()
            .filter_map(|n| match n {
                Node::LocalLoop(l) => Some(l),
                _ => None,
            })
            .collect();
        let disk = match disks.as_slice() {
            [disk] => *disk,
            [] => return Err(fail("no local_loop node: there is no image to plan")),
            more => {
                let names: Vec<&str> = more.iter().map(|d| d.name.as_str()).collect();
                return Err(fail(format!(
                    "the rootless plan makes one image, the config has {} local_loop nodes: {}",
                    more.len(),
                    names.join(", ")
                )));
            }
        };
        if disk.block_size != SECTOR {
            return Err(fail(format!(
                "local_loop {}: block_size {} is not supported, the rootless plan writes 512-byte sectors",
                disk.name, disk.block_size
            )));
        }
        let image_size = disk.size.unwrap_or(image_size);

        let (table, partitions) = match self.tables.as_slice() {
            [] => (None, Vec::new()),
            [table] => {
                if table.base != disk.name {
                    return Err(fail(format!(
                        "partitioning {}: base {} is not the image's local_loop {}",
                        table.name, table.base, disk.name
                    )));
                }
                if table.align != MIB {
                    return Err(fail(format!(
                        "partitioning {}: align {} is not supported (1 MiB only)",
                        table.name, table.align
                    )));
                }
                let (table, partitions) = plan_table(table, &disk.name, image_size, ids)?;
                (Some(table), partitions)
            }
            more => {
                let names: Vec<&str> = more.iter().map(|t| t.name.as_str()).collect();
                return Err(fail(format!(
                    "the rootless plan takes one partition table, the config has {}: {}",
                    more.len(),
                    names.join(", ")
                )));
            }
        };

        let all_mounts: Vec<&str> = self.mount_points();
        let mut filesystems = Vec::new();
        let mut used_devices: BTreeMap<&str, &str> = BTreeMap::new();
        for node in &self.nodes {
            let Node::Mkfs(fs) = node else {
                continue;
            };
            if let Some(other) = used_devices.insert(&fs.base, &fs.name) {
                return Err(fail(format!(
                    "mkfs {}: {} already holds the filesystem {other}",
                    fs.name, fs.base
                )));
            }
            let (offset, size) = if fs.base == disk.name {
                if table.is_some() {
                    return Err(fail(format!(
                        "mkfs {}: {} has a partition table, a filesystem cannot fill it",
                        fs.name, disk.name
                    )));
                }
                (0, image_size)
            } else if let Some(p) = partitions.iter().find(|p| p.name == fs.base) {
                (p.offset, p.size)
            } else {
                return Err(fail(format!(
                    "mkfs {}: base {} is not a partition of the image",
                    fs.name, fs.base
                )));
            };
            let id = match (fs.fs_type.as_str(), &fs.uuid) {
                ("vfat", Some(text)) => FsId::VolumeId(vfat_volume_id(text).ok_or_else(|| {
                    fail(format!(
                        "mkfs {}: uuid {text} is not a FAT volume id (8 hex digits)",
                        fs.name
                    ))
                })?),
                ("vfat", None) => FsId::VolumeId(ids.id32(Purpose::VfatVolumeId, &fs.name)),
                (_, Some(text)) => FsId::Uuid(text.clone()),
                ("swap", None) => FsId::Uuid(uuid_text(&ids.uuid(Purpose::SwapUuid, &fs.name))),
                (_, None) => FsId::Uuid(uuid_text(&ids.uuid(Purpose::FsUuid, &fs.name))),
            };
            let hash_seed = matches!(fs.fs_type.as_str(), "ext2" | "ext3" | "ext4")
                .then(|| uuid_text(&ids.uuid(Purpose::Ext4HashSeed, &fs.name)));
            let mount_point = self
                .mounts()
                .find(|m| m.base == fs.name)
                .map(|m| m.mount_point.clone())
                .filter(|mp| mp != "none");
            let exclude = mount_point
                .as_deref()
                .map_or_else(Vec::new, |mp| nested(mp, &all_mounts));
            filesystems.push(FsPlan {
                name: fs.name.clone(),
                device: fs.base.clone(),
                fs_type: fs.fs_type.clone(),
                label: fs.label.clone(),
                id,
                hash_seed,
                opts: fs.opts.clone(),
                offset,
                size,
                mount_point,
                exclude,
            });
        }
        Ok(DiskPlan {
            disk: disk.name.clone(),
            image_size,
            table,
            partitions,
            filesystems,
            fstab: self.fstab(),
        })
    }
}

fn plan_table(
    table: &Partitioning,
    disk: &str,
    image_size: u64,
    ids: &dyn IdSource,
) -> Result<(PartitionTable, Vec<PlannedPartition>), Error> {
    let mut planned = Vec::new();
    match table.label {
        TableKind::Mbr => {
            let specs: Vec<PartitionSpec> = table
                .partitions
                .iter()
                .map(|p| PartitionSpec {
                    name: p.name.clone(),
                    size: p.size,
                    primary: p.primary,
                    bootable: p.bootable,
                    kind: match p.kind {
                        PartitionType::Mbr(byte) => byte,
                        PartitionType::Gpt(_) => 0x83,
                    },
                })
                .collect();
            let layout = Layout::plan(image_size, &specs)?;
            // The extended entry comes right before the first logical partition.
            let mut entries = layout.entries.iter();
            let mut extended_seen = false;
            for p in &table.partitions {
                if !p.primary && !extended_seen {
                    extended_seen = true;
                    entries.next();
                }
                let entry = entries
                    .next()
                    .ok_or_else(|| fail(format!("partition {} was not placed", p.name)))?;
                planned.push(PlannedPartition {
                    name: p.name.clone(),
                    number: entry.number,
                    first_sector: entry.start,
                    last_sector: entry.end,
                    offset: entry.start * SECTOR,
                    size: (entry.end - entry.start + 1) * SECTOR,
                    kind: p.kind.clone(),
                    bootable: p.bootable,
                    guid: None,
                });
            }
            let disk_id = ids.id32(Purpose::MbrDiskId, disk);
            Ok((PartitionTable::Mbr { layout, disk_id }, planned))
        }
        TableKind::Gpt => {
            let on_disk = |uuid: [u8; 16]| {
                gpt::guid_bytes(&uuid_text(&uuid)).expect("a UUID's text is a GUID")
            };
            let mut guids = Vec::new();
            let specs: Vec<GptPartitionSpec> = table
                .partitions
                .iter()
                .map(|p| {
                    let guid = ids.uuid(Purpose::GptPartGuid, &p.name);
                    guids.push(uuid_text(&guid));
                    GptPartitionSpec {
                        name: p.name.clone(),
                        size: p.size,
                        type_code: p.kind.to_string(),
                        guid: on_disk(guid),
                    }
                })
                .collect();
            let layout = GptLayout::plan(
                image_size,
                on_disk(ids.uuid(Purpose::GptDiskGuid, disk)),
                &specs,
            )?;
            for ((p, entry), guid) in table.partitions.iter().zip(&layout.entries).zip(guids) {
                planned.push(PlannedPartition {
                    name: p.name.clone(),
                    number: entry.number,
                    first_sector: entry.first,
                    last_sector: entry.last,
                    offset: entry.first * SECTOR,
                    size: (entry.last - entry.first + 1) * SECTOR,
                    kind: p.kind.clone(),
                    bootable: p.bootable,
                    guid: Some(guid),
                });
            }
            Ok((PartitionTable::Gpt(layout), planned))
        }
    }
}

/// A GPT GUID from its on-disk bytes to text.
fn guid_text(on_disk: &[u8; 16]) -> String {
    let mut raw = *on_disk;
    raw[0..4].reverse();
    raw[4..6].reverse();
    raw[6..8].reverse();
    uuid_text(&raw)
}

impl DiskPlan {
    /// A line-per-item description: the image, the table, each partition, each filesystem.
    pub fn describe(&self) -> String {
        let mut out = format!("image {} size={}\n", quote(&self.disk), self.image_size);
        let listed: BTreeSet<u32> = self.partitions.iter().map(|p| p.number).collect();
        match &self.table {
            None => {}
            Some(PartitionTable::Mbr { layout, disk_id }) => {
                out.push_str(&format!("table mbr disk-id={disk_id:#010x}\n"));
                for entry in layout
                    .entries
                    .iter()
                    .filter(|e| !listed.contains(&e.number))
                {
                    out.push_str(&format!(
                        "extended {} sectors={}-{} type={:#04x}\n",
                        entry.number, entry.start, entry.end, entry.kind
                    ));
                }
            }
            Some(PartitionTable::Gpt(layout)) => {
                out.push_str(&format!(
                    "table gpt disk-guid={}\n",
                    guid_text(&layout.disk_guid)
                ));
            }
        }
        for p in &self.partitions {
            out.push_str(&format!(
                "partition {} {} sectors={}-{} offset={} size={} type={}",
                p.number,
                quote(&p.name),
                p.first_sector,
                p.last_sector,
                p.offset,
                p.size,
                p.kind
            ));
            if p.bootable {
                out.push_str(" boot");
            }
            if let Some(guid) = &p.guid {
                out.push_str(&format!(" guid={guid}"));
            }
            out.push('\n');
        }
        for fs in &self.filesystems {
            out.push_str(&format!(
                "fs {} on {} type={} offset={} size={} label={} id={}",
                quote(&fs.name),
                quote(&fs.device),
                fs.fs_type,
                fs.offset,
                fs.size,
                quote(&fs.label),
                fs.id
            ));
            if let Some(seed) = &fs.hash_seed {
                out.push_str(&format!(" hash-seed={seed}"));
            }
            if !fs.opts.is_empty() {
                out.push_str(&format!(" opts={}", quote(&fs.opts.join(" "))));
            }
            if let Some(mp) = &fs.mount_point {
                out.push_str(&format!(" mount={}", quote(mp)));
            }
            if !fs.exclude.is_empty() {
                out.push_str(&format!(" exclude={}", fs.exclude.join(",")));
            }
            out.push('\n');
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Default layouts
// ---------------------------------------------------------------------------------------

/// The configurations used when no element or variable gives one.
pub mod layouts {
    /// The fallback when no element ships a `block-device-*.yaml` and
    /// `DIB_BLOCK_DEVICE_CONFIG` is unset: one filesystem filling the bare image.
    pub const FALLBACK: &str = "\
- local_loop:
    name: image0
    mkfs:
      name: mkfs_root
      mount:
        mount_point: /
        fstab:
          options: defaults
          fsck-passno: 1
";

    /// `block-device-mbr`: one bootable primary partition `root` filling an MBR disk.
    pub const MBR: &str = "\
- local_loop:
    name: image0
    partitioning:
      label: mbr
      partitions:
        - name: root
          flags: [boot, primary]
          size: 100%
          mkfs:
            mount:
              mount_point: /
              fstab:
                options: defaults
                fsck-passno: 1
";

    /// `block-device-gpt`: a BIOS boot partition `BSP` (EF02, 8 MiB) and `root` (8300) on GPT.
    pub const GPT: &str = "\
- local_loop:
    name: image0
    partitioning:
      label: gpt
      partitions:
        - name: BSP
          type: EF02
          size: 8MiB
        - name: root
          type: '8300'
          size: 100%
          mkfs:
            mount:
              mount_point: /
              fstab:
                options: defaults
                fsck-passno: 1
";

    /// `block-device-efi`: an EFI system partition `ESP` (EF00, 550 MiB, vfat on
    /// `/boot/efi`), `BSP` (EF02, 8 MiB) and `root` (8300) on GPT.
    pub const EFI: &str = "\
- local_loop:
    name: image0
    partitioning:
      label: gpt
      partitions:
        - name: ESP
          type: EF00
          size: 550MiB
          mkfs:
            type: vfat
            mount:
              mount_point: /boot/efi
              fstab:
                options: defaults
                fsck-passno: 2
        - name: BSP
          type: EF02
          size: 8MiB
        - name: root
          type: '8300'
          size: 100%
          mkfs:
            mount:
              mount_point: /
              fstab:
                options: defaults
                fsck-passno: 1
";

    /// The layout a `block-device-*` element provides (`block-device-mbr`, `-gpt`, `-efi`).
    pub fn for_element(element: &str) -> Option<&'static str> {
        match element {
            "block-device-mbr" => Some(MBR),
            "block-device-gpt" => Some(GPT),
            "block-device-efi" => Some(EFI),
            _ => None,
        }
    }
}
