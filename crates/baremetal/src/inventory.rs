//! Node inventories → [`Node`]s (spec §2): TripleO's `instackenv.json`/`nodes.json` (with the
//! legacy `mac` lists), bifrost's JSON/YAML, bifrost's legacy CSV, and the positional shape of
//! tripleo-incubator's seed (`CPUS MEMORY_MB DISK_GB ARCH MAC NAME BMC_ADDR BMC_USER
//! BMC_PASSWORD`).
//!
//! Parsing is pure: text in, nodes and warnings out. Every problem of a file is collected, not
//! only the first, and each names the file and the line or field
//! (`nodes.json: nodes[2].pm_addr: missing`, `inventory.csv:4: bad MAC "zz"`). A password of
//! the input never appears in a problem: values quoted in messages are hidden when they hold
//! one, and any that slipped through is masked as `***`.

mod bifrost;
mod csv;
mod instackenv;
mod seed;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use uuid::Uuid;

use crate::node::{derived_uuid, is_secret_key, parse_capabilities, MacAddress, Node, Value};
use crate::secret::Secret;
use crate::Error;

pub use seed::parse_seed_args;

/// The inventory formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TripleO's `instackenv.json` / `nodes.json`: `{"nodes": [...]}`.
    Instackenv,
    /// Bifrost's map from node name to node, in YAML or JSON.
    Bifrost,
    /// Bifrost's legacy CSV, one node per row.
    Csv,
    /// The seed's positional records, one node per line.
    Seed,
}

impl Format {
    /// Guesses the format from the file name and, for `.json`, the content: `.csv` is CSV,
    /// `.yaml`/`.yml` bifrost, `.json` bifrost when it is an object of objects without a
    /// `nodes` key (else instackenv); anything else is CSV when its first record has commas,
    /// else seed records.
    pub fn detect(file_name: &str, text: &str) -> Format {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Format::Csv
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Bifrost
        } else if lower.ends_with(".json") {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map))
                    if !map.is_empty()
                        && !map.contains_key("nodes")
                        && map.values().all(serde_json::Value::is_object) =>
                {
                    Format::Bifrost
                }
                _ => Format::Instackenv,
            }
        } else {
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or("");
            if first.contains(',') {
                Format::Csv
            } else {
                Format::Seed
            }
        }
    }
}

/// Where in a file a problem is: a line (and column), a field path, or both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based; only with a line.
    pub column: Option<usize>,
    /// `nodes[2].pm_addr`, `node-0.driver_info.ipmi_address`, `MACS (argument 5)`.
    pub field: Option<String>,
}

impl Location {
    pub(crate) fn field(path: impl Into<String>) -> Location {
        Location {
            field: Some(path.into()),
            ..Location::default()
        }
    }

    pub(crate) fn line(line: usize) -> Location {
        Location {
            line: Some(line),
            ..Location::default()
        }
    }
}

/// One error or warning about an inventory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub location: Location,
    pub message: String,
}

/// `file[:line[:column]]: [field: ]message`.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.location.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.location.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(field) = &self.location.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A parsed inventory: the nodes in file order and what deserves a warning (legacy spellings
/// converted, fields dropped).
#[derive(Debug, Clone)]
pub struct Inventory {
    pub nodes: Vec<Node>,
    pub warnings: Vec<Problem>,
}

/// Parses `text` as `format`; `file` is the name used in messages.
pub fn parse(format: Format, file: &str, text: &str) -> Result<Inventory, Error> {
    let mut ctx = Ctx::new(file);
    let entries = match format {
        Format::Instackenv => instackenv::parse(&mut ctx, text),
        Format::Bifrost => bifrost::parse(&mut ctx, text),
        Format::Csv => csv::parse(&mut ctx, text),
        Format::Seed => seed::parse(&mut ctx, text),
    };
    ctx.finish(entries)
}

/// Reads and parses an inventory file, guessing its format with [`Format::detect`]. Messages
/// name the file by its final component.
pub fn load(path: &Path) -> Result<Inventory, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        action: "read",
        source,
    })?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    parse(Format::detect(&name, &text), &name, &text)
}

/// Finds the stored node an imported node re-imports, as tripleo-common matches them: by uuid,
/// by any shared MAC, or by BMC identity ([`Node::bmc_identity`]). `None` for a new node;
/// [`Error::Ambiguous`] when several stored nodes match.
pub fn match_existing<'a>(existing: &'a [Node], node: &Node) -> Result<Option<&'a Node>, Error> {
    let identity = node.bmc_identity();
    let candidates: Vec<&Node> = existing
        .iter()
        .filter(|e| {
            e.uuid == node.uuid
                || e.ports
                    .iter()
                    .any(|p| node.ports.iter().any(|q| q.address == p.address))
                || (identity.is_some() && e.bmc_identity() == identity)
        })
        .collect();
    match candidates.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(Error::Ambiguous {
            node: node.ident(),
            candidates: many.iter().map(|n| n.ident()).collect(),
        }),
    }
}

/// A node as a parser produced it, with where it came from for cross-node checks.
pub(crate) struct Entry {
    pub(crate) node: Node,
    /// How messages refer to it: `nodes[1]`, `line 4`, `node-0`.
    pub(crate) label: String,
    pub(crate) location: Location,
    /// The BMC identity (`127.0.0.1:6230`) when the format checks it for uniqueness.
    pub(crate) driver_id: Option<String>,
}

/// Collected problems and what is needed to keep secrets out of them.
pub(crate) struct Ctx {
    pub(crate) file: String,
    secrets: Vec<String>,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Ctx {
    fn new(file: &str) -> Ctx {
        Ctx {
            file: file.to_owned(),
            secrets: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Remembers a credential of the input, to keep it out of every message.
    pub(crate) fn secret(&mut self, value: &str) {
        if !value.is_empty() && !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_owned());
        }
    }

    /// Records a problem; the same problem twice (one bad argument shared by several nodes) is
    /// kept once.
    pub(crate) fn error(&mut self, location: Location, message: impl Into<String>) {
        let p = Problem {
            file: self.file.clone(),
            location,
            message: message.into(),
        };
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    pub(crate) fn warn(&mut self, location: Location, message: impl Into<String>) {
        self.warnings.push(Problem {
            file: self.file.clone(),
            location,
            message: message.into(),
        });
    }

    /// `"value"` for a message, or a note that it is hidden because it holds a credential.
    pub(crate) fn quote(&self, value: &str) -> String {
        if self.secrets.iter().any(|s| value.contains(s.as_str())) {
            "(value hidden: it contains a password)".to_owned()
        } else {
            format!("{value:?}")
        }
    }

    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if s.len() >= 4 {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }

    /// Cross-node checks, then the result: every problem, or the nodes.
    fn finish(mut self, entries: Vec<Entry>) -> Result<Inventory, Error> {
        self.check_unique(&entries);
        let scrub = |ctx: &Ctx, list: &mut Vec<Problem>| {
            for p in list.iter_mut() {
                p.message = ctx.scrub(&p.message);
                if let Some(field) = &p.location.field {
                    p.location.field = Some(ctx.scrub(field));
                }
            }
        };
        let mut problems = std::mem::take(&mut self.problems);
        let mut warnings = std::mem::take(&mut self.warnings);
        scrub(&self, &mut problems);
        scrub(&self, &mut warnings);
        if problems.is_empty() {
            Ok(Inventory {
                nodes: entries.into_iter().map(|e| e.node).collect(),
                warnings,
            })
        } else {
            Err(Error::Inventory {
                file: self.file,
                problems,
            })
        }
    }

    fn check_unique(&mut self, entries: &[Entry]) {
        let mut names: HashMap<&str, &str> = HashMap::new();
        let mut uuids: HashMap<Uuid, &str> = HashMap::new();
        let mut macs: HashMap<MacAddress, &str> = HashMap::new();
        let mut ids: HashMap<&str, &str> = HashMap::new();
        for e in entries {
            let here = e.location.clone();
            if let Some(name) = &e.node.name {
                if let Some(first) = names.insert(name, &e.label) {
                    self.error(
                        here.clone(),
                        format!("name {name:?} is already used by {first}"),
                    );
                }
            }
            if let Some(first) = uuids.insert(e.node.uuid, &e.label) {
                self.error(
                    here.clone(),
                    format!("uuid {} is already used by {first}", e.node.uuid),
                );
            }
            for port in &e.node.ports {
                if let Some(first) = macs.insert(port.address, &e.label) {
                    if first != e.label {
                        self.error(
                            here.clone(),
                            format!("MAC {} is already used by {first}", port.address),
                        );
                    } else {
                        self.error(
                            here.clone(),
                            format!("MAC {} is listed twice", port.address),
                        );
                    }
                }
            }
            if let Some(id) = &e.driver_id {
                if let Some(first) = ids.insert(id, &e.label) {
                    let id = self.quote(id);
                    self.error(
                        here,
                        format!("node identified by {id} is already present ({first})"),
                    );
                }
            }
        }
    }
}

/// A parsed document (JSON or YAML), with positions when the parser gives them.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    /// (line, column), 1-based.
    pub(crate) pos: Option<(usize, usize)>,
    pub(crate) kind: DocKind,
}

#[derive(Debug, Clone)]
pub(crate) enum DocKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Doc>),
    /// Keys in document order.
    Map(Vec<(String, Doc)>),
}

impl Doc {
    pub(crate) fn from_json(v: &serde_json::Value) -> Doc {
        let kind = match v {
            serde_json::Value::Null => DocKind::Null,
            serde_json::Value::Bool(b) => DocKind::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => DocKind::Int(i),
                None => DocKind::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => DocKind::Str(s.clone()),
            serde_json::Value::Array(items) => {
                DocKind::List(items.iter().map(Doc::from_json).collect())
            }
            serde_json::Value::Object(map) => {
                // Sorted whatever serde_json's map type is (a feature elsewhere in a build
                // could switch it to insertion order): messages come in a stable order.
                let mut entries: Vec<(String, Doc)> = map
                    .iter()
                    .map(|(k, v)| (k.clone(), Doc::from_json(v)))
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                DocKind::Map(entries)
            }
        };
        Doc { pos: None, kind }
    }

    pub(crate) fn from_yaml(node: &marked_yaml::Node) -> Doc {
        let marker = match node {
            // A block mapping starts where its first key does.
            marked_yaml::Node::Mapping(map) => map
                .keys()
                .next()
                .and_then(|k| k.span().start())
                .or_else(|| node.span().start()),
            _ => node.span().start(),
        };
        let pos = marker.map(|m| (m.line(), m.column()));
        let kind = match node {
            marked_yaml::Node::Scalar(s) => {
                if s.may_coerce() {
                    plain_scalar(s.as_str())
                } else {
                    DocKind::Str(s.as_str().to_owned())
                }
            }
            marked_yaml::Node::Sequence(items) => {
                DocKind::List(items.iter().map(Doc::from_yaml).collect())
            }
            marked_yaml::Node::Mapping(map) => DocKind::Map(
                map.iter()
                    .map(|(k, v)| (k.as_str().to_owned(), Doc::from_yaml(v)))
                    .collect(),
            ),
        };
        Doc { pos, kind }
    }

    pub(crate) fn as_map(&self) -> Option<&[(String, Doc)]> {
        match &self.kind {
            DocKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn as_list(&self) -> Option<&[Doc]> {
        match &self.kind {
            DocKind::List(l) => Some(l),
            _ => None,
        }
    }

    /// A string, or a number or boolean written as text (Ironic stores them as given).
    pub(crate) fn as_text(&self) -> Option<String> {
        match &self.kind {
            DocKind::Str(s) => Some(s.clone()),
            DocKind::Int(i) => Some(i.to_string()),
            DocKind::Float(x) => Some(x.to_string()),
            DocKind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The value for a message: short, and hidden when it holds a credential.
    pub(crate) fn shown(&self, ctx: &Ctx) -> String {
        match &self.kind {
            DocKind::Null => "null".to_owned(),
            DocKind::List(_) => "a list".to_owned(),
            DocKind::Map(_) => "a mapping".to_owned(),
            _ => ctx.quote(&self.as_text().unwrap_or_default()),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Doc> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Every credential below this node (values of secret-named keys), for [`Ctx::secret`].
    pub(crate) fn collect_secrets(&self, ctx: &mut Ctx) {
        match &self.kind {
            DocKind::Map(map) => {
                for (k, v) in map {
                    if is_secret_key(k) {
                        v.collect_all_text(ctx);
                    } else {
                        v.collect_secrets(ctx);
                    }
                }
            }
            DocKind::List(items) => items.iter().for_each(|d| d.collect_secrets(ctx)),
            _ => {}
        }
    }

    fn collect_all_text(&self, ctx: &mut Ctx) {
        match &self.kind {
            DocKind::Map(map) => map.iter().for_each(|(_, v)| v.collect_all_text(ctx)),
            DocKind::List(items) => items.iter().for_each(|d| d.collect_all_text(ctx)),
            _ => {
                if let Some(t) = self.as_text() {
                    ctx.secret(&t);
                }
            }
        }
    }

    /// Converts to a node [`Value`]; values of secret-named keys (and `secret` itself) become
    /// [`Value::Secret`].
    pub(crate) fn to_value(&self, secret: bool) -> Value {
        if secret {
            return match &self.kind {
                DocKind::Null => Value::Null,
                DocKind::List(_) | DocKind::Map(_) => {
                    Value::Secret(Secret::new(self.to_value(false).to_string()))
                }
                _ => Value::Secret(Secret::new(self.as_text().unwrap_or_default())),
            };
        }
        match &self.kind {
            DocKind::Null => Value::Null,
            DocKind::Bool(b) => Value::Bool(*b),
            DocKind::Int(i) => Value::Int(*i),
            DocKind::Float(x) => Value::Float(*x),
            DocKind::Str(s) => Value::Text(s.clone()),
            DocKind::List(items) => Value::List(items.iter().map(|d| d.to_value(false)).collect()),
            DocKind::Map(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), v.to_value(is_secret_key(k))))
                    .collect(),
            ),
        }
    }
}

/// YAML 1.2 core schema for a plain (unquoted) scalar.
fn plain_scalar(s: &str) -> DocKind {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return DocKind::Null,
        "true" | "True" | "TRUE" => return DocKind::Bool(true),
        "false" | "False" | "FALSE" => return DocKind::Bool(false),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return DocKind::Int(i);
        }
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return DocKind::Int(i);
        }
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return DocKind::Int(i);
        }
    }
    let looks_float = s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_float {
        if let Ok(x) = s.parse::<f64>() {
            return DocKind::Float(x);
        }
    }
    DocKind::Str(s.to_owned())
}

/// Shared field readers: each reports a problem at `path` and returns `None` when the value is
/// not what the field needs.
pub(crate) struct Fields<'a> {
    pub(crate) ctx: &'a mut Ctx,
    /// Whether locations carry line and column (YAML); JSON ones are field paths only.
    pub(crate) file_has_lines: bool,
}

impl Fields<'_> {
    /// Location for a field: the field path, and the line and column when known.
    pub(crate) fn loc(&self, path: &str, doc: Option<&Doc>) -> Location {
        let pos = if self.file_has_lines {
            doc.and_then(|d| d.pos)
        } else {
            None
        };
        Location {
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            field: Some(path.to_owned()),
        }
    }

    pub(crate) fn error(&mut self, path: &str, doc: Option<&Doc>, message: impl Into<String>) {
        let loc = self.loc(path, doc);
        self.ctx.error(loc, message);
    }

    pub(crate) fn warn(&mut self, path: &str, doc: Option<&Doc>, message: impl Into<String>) {
        let loc = self.loc(path, doc);
        self.ctx.warn(loc, message);
    }

    pub(crate) fn string(&mut self, path: &str, doc: &Doc) -> Option<String> {
        match &doc.kind {
            DocKind::Str(s) => Some(s.clone()),
            DocKind::Int(_) | DocKind::Float(_) | DocKind::Bool(_) => doc.as_text(),
            _ => {
                let shown = doc.shown(self.ctx);
                self.error(path, Some(doc), format!("must be a string, got {shown}"));
                None
            }
        }
    }

    /// A non-negative integer, also written as a string of digits.
    pub(crate) fn unsigned(&mut self, path: &str, doc: &Doc, max: u64) -> Option<u64> {
        let v = match &doc.kind {
            DocKind::Int(i) => u64::try_from(*i).ok(),
            DocKind::Str(s) => s.trim().parse::<u64>().ok(),
            DocKind::Float(x) if x.fract() == 0.0 && *x >= 0.0 => Some(*x as u64),
            _ => None,
        };
        match v {
            Some(v) if v <= max => Some(v),
            _ => {
                let shown = doc.shown(self.ctx);
                let want = if max >= u32::MAX.into() {
                    "a non-negative integer".to_owned()
                } else {
                    format!("an integer from 0 to {max}")
                };
                self.error(path, Some(doc), format!("must be {want}, got {shown}"));
                None
            }
        }
    }

    pub(crate) fn mac(&mut self, path: &str, doc: &Doc) -> Option<MacAddress> {
        let text = self.string(path, doc)?;
        match MacAddress::parse(&text) {
            Some(m) => Some(m),
            None => {
                let shown = self.ctx.quote(&text);
                self.error(path, Some(doc), format!("bad MAC {shown}"));
                None
            }
        }
    }

    pub(crate) fn uuid(&mut self, path: &str, doc: &Doc) -> Option<Uuid> {
        let text = self.string(path, doc)?;
        match Uuid::try_parse(text.trim()) {
            Ok(u) => Some(u),
            Err(_) => {
                let shown = self.ctx.quote(&text);
                self.error(path, Some(doc), format!("bad UUID {shown}"));
                None
            }
        }
    }

    pub(crate) fn name(&mut self, path: &str, doc: &Doc) -> Option<String> {
        let text = self.string(path, doc)?;
        match crate::node::check_name(&text) {
            Ok(()) => Some(text),
            Err(why) => {
                let shown = self.ctx.quote(&text);
                self.error(path, Some(doc), format!("node name {shown} {why}"));
                None
            }
        }
    }

    /// A map of values (secret-named keys become secrets).
    pub(crate) fn value_map(&mut self, path: &str, doc: &Doc) -> Option<BTreeMap<String, Value>> {
        match doc.as_map() {
            Some(map) => Some(
                map.iter()
                    .map(|(k, v)| (k.clone(), v.to_value(is_secret_key(k))))
                    .collect(),
            ),
            None => {
                let shown = doc.shown(self.ctx);
                self.error(path, Some(doc), format!("must be a mapping, got {shown}"));
                None
            }
        }
    }

    /// Capabilities as `k:v,k:v` text or as a mapping.
    pub(crate) fn capabilities(
        &mut self,
        path: &str,
        doc: &Doc,
    ) -> Option<BTreeMap<String, String>> {
        match &doc.kind {
            DocKind::Str(s) => match parse_capabilities(s) {
                Ok(c) => Some(c),
                Err(item) => {
                    let shown = self.ctx.quote(&item);
                    self.error(
                        path,
                        Some(doc),
                        format!("cannot parse {shown}: capabilities are \"key:value,key:value\""),
                    );
                    None
                }
            },
            DocKind::Map(map) => {
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    let sub = format!("{path}.{k}");
                    if let Some(text) = self.string(&sub, v) {
                        out.insert(k.clone(), text);
                    }
                }
                Some(out)
            }
            _ => {
                let shown = doc.shown(self.ctx);
                self.error(
                    path,
                    Some(doc),
                    format!("must be a string or a mapping, got {shown}"),
                );
                None
            }
        }
    }

    /// An IPv4 address, as text.
    pub(crate) fn ipv4(&mut self, path: &str, doc: &Doc) -> Option<String> {
        let text = self.string(path, doc)?;
        if text.parse::<std::net::Ipv4Addr>().is_ok() {
            Some(text)
        } else {
            let shown = self.ctx.quote(&text);
            self.error(path, Some(doc), format!("bad IPv4 address {shown}"));
            None
        }
    }
}

/// The uuid for a node that came without one (see [`derived_uuid`]).
pub(crate) fn fallback_uuid(node: &Node, label: &str) -> Uuid {
    if let Some(name) = &node.name {
        derived_uuid(name)
    } else if let Some(port) = node.ports.first() {
        derived_uuid(&port.address.to_string())
    } else {
        derived_uuid(label)
    }
}

/// Resolves a driver name: a known hardware type as is, a legacy name rewritten (with a
/// warning); `Err` is the message for anything else. `what` names the field (`pm_type`,
/// `driver`).
pub(crate) fn resolve_driver(
    ctx: &Ctx,
    name: &str,
    what: &str,
) -> Result<(String, Option<String>), String> {
    if crate::node::KNOWN_DRIVERS.contains(&name) {
        return Ok((name.to_owned(), None));
    }
    let shown = ctx.quote(name);
    if let Some(new) = crate::node::legacy_driver(name) {
        return Ok((
            new.to_owned(),
            Some(format!("legacy driver {shown} rewritten to {new:?}")),
        ));
    }
    if name.ends_with("_ssh") {
        return Err(format!(
            "unknown {what} {shown}: the SSH virtual power driver was removed upstream \
             (use ipmi or redfish against a BMC emulator)"
        ));
    }
    Err(format!("unknown {what} {shown}"))
}
