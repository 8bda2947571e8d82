//! Validation of a configuration document against the schema, in one pass: every problem is
//! reported with its line, column and field path (`network_config[2].members[0].name`).

use std::fmt;
use std::net::IpAddr;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::{Node, Span};

use crate::schema::{self, DeviceType, FieldKind};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The document means something else to upstream (YAML 1.1) than to us; still valid.
    Warning,
    Error,
}

/// One finding, located in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
    /// The field path, `network_config[0].addresses[1].ip_netmask`; empty for the document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `<line>:<col>: <path>: <message>`: the caller prefixes the file name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Parses `text` (YAML 1.2, JSON included) into a tree whose nodes know their position.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    marked_yaml::parse_yaml_with_options(
        0,
        text,
        marked_yaml::LoaderOptions::default()
            .error_on_duplicate_keys(true)
            .toplevel_mapping(),
    )
    .map_err(|e| {
        use marked_yaml::LoadError;
        let (marker, message) = match &e {
            LoadError::TopLevelMustBeMapping(m) => (
                Some(*m),
                "the document must be a mapping with network_config".to_owned(),
            ),
            LoadError::TopLevelMustBeSequence(m) => {
                (Some(*m), "the document must be a sequence".to_owned())
            }
            LoadError::UnexpectedAnchor(m) => {
                (Some(*m), "anchors and aliases are not supported".to_owned())
            }
            LoadError::MappingKeyMustBeScalar(m) => {
                (Some(*m), "mapping keys must be plain text".to_owned())
            }
            LoadError::UnexpectedTag(m) => (Some(*m), "explicit tags are not supported".to_owned()),
            LoadError::ScanError(m, scan) => (Some(*m), format!("invalid YAML: {}", scan.info())),
            LoadError::DuplicateKey(inner) => (
                inner.key.span().start().copied(),
                format!("duplicate key \"{}\"", inner.key.as_str()),
            ),
        };
        Diagnostic {
            severity: Severity::Error,
            line: marker.map_or(0, |m| m.line()),
            column: marker.map_or(0, |m| m.column()),
            path: String::new(),
            message,
        }
    })
}

/// Validates a parsed document; findings come in document order.
pub fn validate(root: &Node) -> Vec<Diagnostic> {
    let mut v = Validator::default();
    let Some(top) = root.as_mapping() else {
        v.error(
            root.span(),
            "",
            "the document must be a mapping with network_config",
        );
        return v.found;
    };
    for (key, value) in top.iter() {
        let section = key.as_str();
        match section {
            "network_config" | "minimum_config" | "fallback_config" => {
                let Some(items) = value.as_sequence() else {
                    v.error(value.span(), section, "must be a list of devices");
                    continue;
                };
                if section == "network_config" && items.is_empty() {
                    v.error(value.span(), section, "must list at least one device");
                }
                if section == "fallback_config" && items.len() > 2 {
                    v.error(value.span(), section, "takes at most 2 devices");
                }
                // Each section is a configuration of its own: names may repeat across them.
                v.names.clear();
                for (index, item) in items.iter().enumerate() {
                    v.device(item, &format!("{section}[{index}]"), None);
                }
            }
            "remove_config" => {
                let Some(items) = value.as_sequence() else {
                    v.error(value.span(), section, "must be a list");
                    continue;
                };
                for (index, item) in items.iter().enumerate() {
                    v.removal(item, &format!("{section}[{index}]"));
                }
            }
            other => v.error(
                key.span(),
                other,
                &format!(
                    "unknown section (known: network_config, remove_config, minimum_config, fallback_config){}",
                    suggestion(other, ["network_config", "remove_config", "minimum_config", "fallback_config"])
                ),
            ),
        }
    }
    if top.get_node("network_config").is_none() {
        v.error(top.span(), "", "network_config is required");
    }
    v.found.sort_by_key(|d| (d.line, d.column));
    v.found
}

#[derive(Default)]
struct Validator {
    found: Vec<Diagnostic>,
    /// Device names seen, with the path of the device that took each.
    names: Vec<(String, String)>,
}

fn position(span: &Span) -> (usize, usize) {
    span.start().map_or((0, 0), |m| (m.line(), m.column()))
}

/// Where a node starts as a reader sees it: a block mapping at its first key (the parser
/// marks it further on).
fn start(node: &Node) -> &Span {
    match node {
        Node::Mapping(map) => map.iter().next().map_or(node.span(), |(key, _)| key.span()),
        _ => node.span(),
    }
}

/// ` (did you mean "x"?)` for the closest candidate within a small edit distance.
fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| format!(" (did you mean \"{c}\"?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

/// The device name a type derives from its fields (`vlan<ID>`, `<parent>.<pkey>`), as written
/// (before alias resolution); `None` for entries that are not devices.
fn derived_name(type_name: &str, map: &MarkedMappingNode) -> Option<String> {
    let field = |key: &str| map.get_scalar(key).map(|s| s.as_str().to_owned());
    match type_name {
        "route_table" | "dcb" | "ivs_bridge" => None,
        "vlan" => field("vlan_id").map(|id| format!("vlan{id}")),
        "ivs_interface" | "nfvswitch_internal" => {
            let base = field("name")
                .unwrap_or_else(|| type_name.split('_').next().unwrap_or("").to_owned());
            field("vlan_id").map(|id| format!("{base}{id}"))
        }
        "ib_child_interface" => {
            let pkey = field("pkey_id")?;
            let value = pkey
                .parse::<u16>()
                .ok()
                .or_else(|| u16::from_str_radix(pkey.trim_start_matches("0x"), 16).ok())?;
            field("parent").map(|p| format!("{p}.{:04x}", 0x8000 | value))
        }
        "sriov_vf" => field("device")
            .zip(field("vfid"))
            .map(|(d, v)| format!("{d}:{v}")),
        _ => field("name"),
    }
}

/// YAML 1.1 words upstream (PyYAML) reads as booleans where YAML 1.2 reads text.
const YAML11_BOOLS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// The words os-net-config's `bool_from_string` knows.
fn bool_word(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "t" | "true" | "on" | "y" | "yes" | "1" => Some(true),
        "f" | "false" | "off" | "n" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn is_null(scalar: &MarkedScalarNode) -> bool {
    scalar.may_coerce() && matches!(scalar.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// An integer as YAML 1.2 reads a plain scalar (decimal, `0o` octal, `0x` hex).
fn yaml_int(scalar: &MarkedScalarNode) -> Option<u64> {
    let text = scalar.as_str();
    if !scalar.may_coerce() {
        return None;
    }
    let digits = text.strip_prefix('+').unwrap_or(text);
    if let Some(hex) = digits.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok();
    }
    if let Some(octal) = digits.strip_prefix("0o") {
        return u64::from_str_radix(octal, 8).ok();
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A CIDR `address/prefix`, checked as upstream's schema does (octets ≤ 255, prefix in range).
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((address, prefix))
}

/// The network address of `address/prefix` when host bits are set.
fn network_of(address: IpAddr, prefix: u8) -> Option<IpAddr> {
    let network = match address {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & mask).into())
        }
    };
    (network != address).then_some(network)
}

fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    text.len() == 17
        && parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Validator {
    fn push(&mut self, severity: Severity, span: &Span, path: &str, message: &str) {
        let (line, column) = position(span);
        self.found.push(Diagnostic {
            severity,
            line,
            column,
            path: path.to_owned(),
            message: message.to_owned(),
        });
    }

    fn error(&mut self, span: &Span, path: &str, message: &str) {
        self.push(Severity::Error, span, path, message);
    }

    fn warning(&mut self, span: &Span, path: &str, message: &str) {
        self.push(Severity::Warning, span, path, message);
    }

    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &str,
    ) -> Option<&'n MarkedMappingNode> {
        let mapping = node.as_mapping();
        if mapping.is_none() {
            self.error(node.span(), path, &format!("must be {what}"));
        }
        mapping
    }

    fn sequence<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &str,
    ) -> Option<&'n MarkedSequenceNode> {
        let sequence = node.as_sequence();
        if sequence.is_none() {
            self.error(node.span(), path, &format!("must be a list of {what}"));
        }
        sequence
    }

    fn scalar<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &str,
    ) -> Option<&'n MarkedScalarNode> {
        match node.as_scalar() {
            Some(s) if !is_null(s) => Some(s),
            _ => {
                self.error(node.span(), path, &format!("must be {what}"));
                None
            }
        }
    }

    /// One entry of `remove_config`.
    fn removal(&mut self, node: &Node, path: &str) {
        let Some(map) = self.mapping(node, path, "a mapping with remove_name and remove_type")
        else {
            return;
        };
        for (key, value) in map.iter() {
            let field = format!("{path}.{}", key.as_str());
            match key.as_str() {
                "remove_name" | "remove_type" => {
                    self.scalar(value, &field, "text");
                }
                "type" => {
                    if value.as_scalar().map(|s| s.as_str()) != Some("remove_net_device") {
                        self.error(value.span(), &field, "must be remove_net_device");
                    }
                }
                other => self.error(
                    key.span(),
                    &field,
                    &format!(
                        "unknown field \"{other}\"{}",
                        suggestion(other, ["remove_name", "remove_type"])
                    ),
                ),
            }
        }
        for required in ["remove_name", "remove_type"] {
            if map.get_node(required).is_none() {
                self.error(
                    start(node),
                    path,
                    &format!("missing required field \"{required}\""),
                );
            }
        }
    }

    /// One device; `allowed` limits its type when it is a member.
    fn device(&mut self, node: &Node, path: &str, allowed: Option<&[&str]>) {
        let Some(map) = self.mapping(node, path, "a device (a mapping with a type)") else {
            return;
        };
        let Some(type_node) = map.get_node("type") else {
            self.error(start(node), path, "missing required field \"type\"");
            return;
        };
        let type_path = format!("{path}.type");
        let Some(type_name) = self.scalar(type_node, &type_path, "a device type") else {
            return;
        };
        let type_name = type_name.as_str();
        let Some(device) = schema::device_type(type_name) else {
            let hint = if matches!(
                type_name,
                "route_rule" | "ovs_interface" | "remove_net_device"
            ) {
                " (not a device type of the schema)".to_owned()
            } else {
                suggestion(type_name, schema::DEVICE_TYPES.iter().map(|t| t.name))
            };
            self.error(
                type_node.span(),
                &type_path,
                &format!("unknown type \"{type_name}\"{hint}"),
            );
            return;
        };
        if let Some(allowed) = allowed {
            if !allowed.contains(&device.name) {
                self.error(
                    type_node.span(),
                    &type_path,
                    &format!(
                        "a {type_name} cannot be a member here (allowed: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
        let member = allowed.is_some();
        for (key, value) in map.iter() {
            let name = key.as_str();
            if name == "type" {
                continue;
            }
            let field = format!("{path}.{name}");
            match schema::field_kind(device, name, member) {
                Some(kind) => self.value(device, kind, value, &field),
                None => self.error(
                    key.span(),
                    &field,
                    &format!(
                        "unknown field \"{name}\" for {type_name}{}",
                        suggestion(name, schema::field_names(device))
                    ),
                ),
            }
        }
        for required in device.required {
            if map.get_node(required).is_none() {
                self.error(
                    start(node),
                    path,
                    &format!("missing required field \"{required}\" for {type_name}"),
                );
            }
        }
        if let Some(members) = map.get_sequence("members") {
            self.one_primary(members, path, device);
            if device.name == "linux_bond" {
                self.vlans_on_bond(members, path, map);
            }
        }
        if device.name == "route_table" {
            self.reserved_table(map, path);
        }
        if let Some(name) = derived_name(device.name, map) {
            match self.names.iter().find(|(n, _)| *n == name) {
                Some((_, first)) => {
                    let message = format!("device name {name} is already used by {first}");
                    self.error(start(node), path, &message);
                }
                None => self.names.push((name, path.to_owned())),
            }
        }
    }

    /// iproute2's reserved tables may not be redefined.
    fn reserved_table(&mut self, map: &MarkedMappingNode, path: &str) {
        const RESERVED: [(u64, &str); 4] = [
            (0, "unspec"),
            (253, "default"),
            (254, "main"),
            (255, "local"),
        ];
        let name = map.get_scalar("name");
        let id = map.get_scalar("table_id");
        for (reserved_id, reserved_name) in RESERVED {
            let clash = name
                .filter(|n| n.as_str() == reserved_name)
                .map(|n| (n.span(), "name", n.as_str().to_owned()))
                .or_else(|| {
                    id.filter(|i| yaml_int(i) == Some(reserved_id))
                        .map(|i| (i.span(), "table_id", i.as_str().to_owned()))
                });
            if let Some((span, field, value)) = clash {
                self.error(span, &format!("{path}.{field}"), &format!("route table {value:?} conflicts with reserved table \"{reserved_id} {reserved_name}\""));
            }
        }
    }

    /// A VLAN member of a Linux bond sits on the bond: another `device` is a mistake.
    fn vlans_on_bond(
        &mut self,
        members: &MarkedSequenceNode,
        path: &str,
        bond: &MarkedMappingNode,
    ) {
        let bond_name = bond.get_scalar("name").map_or("", |n| n.as_str());
        for (index, member) in members.iter().enumerate() {
            let Some(member) = member.as_mapping() else {
                continue;
            };
            if member.get_scalar("type").map(|t| t.as_str()) != Some("vlan") {
                continue;
            }
            if let Some(device) = member
                .get_scalar("device")
                .filter(|d| d.as_str() != bond_name)
            {
                let vlan = member.get_scalar("vlan_id").map_or("", |v| v.as_str());
                self.error(
                    device.span(),
                    &format!("{path}.members[{index}].device"),
                    &format!(
                        "Invalid base_iface {} set for vlan member: vlan{vlan}, {bond_name} should be set instead",
                        device.as_str()
                    ),
                );
            }
        }
    }

    fn one_primary(&mut self, members: &MarkedSequenceNode, path: &str, device: &DeviceType) {
        let primaries: Vec<&Node> = members
            .iter()
            .filter(|m| {
                m.as_mapping()
                    .and_then(|m| m.get_scalar("primary"))
                    .is_some_and(|p| bool_word(p.as_str()) == Some(true))
            })
            .collect();
        if primaries.len() > 1 {
            let what = match device.name {
                "linux_bond" | "ovs_bond" => "bond",
                "team" => "team",
                "ovs_dpdk_bond" => "bond (dpdk)",
                _ => "bridge",
            };
            self.error(
                start(primaries[1]),
                &format!("{path}.members"),
                &format!("only one primary interface allowed per {what}"),
            );
        }
    }

    fn value(&mut self, device: &DeviceType, kind: FieldKind, node: &Node, path: &str) {
        match kind {
            FieldKind::Any => {}
            FieldKind::Text => {
                if let Some(s) = self.scalar(node, path, "text") {
                    if s.may_coerce() && (YAML11_BOOLS.contains(&s.as_str())) {
                        self.warning(
                            node.span(),
                            path,
                            &format!(
                                "YAML 1.1 (upstream) reads {} as a boolean; quote it",
                                s.as_str()
                            ),
                        );
                    }
                }
            }
            FieldKind::Bool => {
                if let Some(s) = self.scalar(node, path, "a boolean") {
                    if bool_word(s.as_str()).is_none() {
                        self.error(
                            node.span(),
                            path,
                            &format!("'{}' is not a boolean (true or false)", s.as_str()),
                        );
                    }
                }
            }
            FieldKind::Int => {
                self.int(node, path);
            }
            FieldKind::VlanId => {
                if let Some(id) = self.int(node, path) {
                    if !(1..=4094).contains(&id) {
                        self.error(
                            node.span(),
                            path,
                            &format!("VLAN id {id} is outside 1-4094"),
                        );
                    }
                }
            }
            FieldKind::Addresses => {
                let Some(items) = self.sequence(node, path, "{ip_netmask: CIDR} entries") else {
                    return;
                };
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{index}]");
                    let Some(map) = self.mapping(item, &item_path, "a mapping with ip_netmask")
                    else {
                        continue;
                    };
                    for (key, value) in map.iter() {
                        let field = format!("{item_path}.{}", key.as_str());
                        if key.as_str() == "ip_netmask" {
                            self.cidr(value, &field, false);
                        } else {
                            self.error(
                                key.span(),
                                &field,
                                &format!(
                                    "unknown field \"{}\" (an address takes only ip_netmask)",
                                    key.as_str()
                                ),
                            );
                        }
                    }
                    if map.get_node("ip_netmask").is_none() {
                        self.error(
                            start(item),
                            &item_path,
                            "missing required field \"ip_netmask\"",
                        );
                    }
                }
            }
            FieldKind::Routes => self.routes(node, path),
            FieldKind::Rules => {
                let Some(items) = self.sequence(node, path, "{rule, comment} entries") else {
                    return;
                };
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{index}]");
                    let Some(map) = self.mapping(item, &item_path, "a mapping with rule") else {
                        continue;
                    };
                    for (key, value) in map.iter() {
                        let field = format!("{item_path}.{}", key.as_str());
                        match key.as_str() {
                            "rule" | "comment" => {
                                self.scalar(value, &field, "text");
                            }
                            other => self.error(
                                key.span(),
                                &field,
                                &format!(
                                    "unknown field \"{other}\"{}",
                                    suggestion(other, ["rule", "comment"])
                                ),
                            ),
                        }
                    }
                    if map.get_node("rule").is_none() {
                        self.error(start(item), &item_path, "missing required field \"rule\"");
                    }
                }
            }
            FieldKind::DnsServers => {
                let Some(items) = self.sequence(node, path, "IP addresses") else {
                    return;
                };
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{index}]");
                    if let Some(s) = self.scalar(item, &item_path, "an IP address") {
                        if s.as_str().parse::<IpAddr>().is_err() {
                            self.error(
                                start(item),
                                &item_path,
                                &format!("'{}' is not an IP address", s.as_str()),
                            );
                        }
                    }
                }
            }
            FieldKind::Domain => match node {
                Node::Sequence(items) => {
                    for (index, item) in items.iter().enumerate() {
                        self.domain(item, &format!("{path}[{index}]"));
                    }
                }
                _ => self.domain(node, path),
            },
            FieldKind::TextOrList => match node {
                Node::Sequence(items) => {
                    if items.is_empty() {
                        self.error(node.span(), path, "must not be an empty list");
                    }
                    for (index, item) in items.iter().enumerate() {
                        self.scalar(item, &format!("{path}[{index}]"), "text");
                    }
                }
                _ => {
                    self.scalar(node, path, "text or a list of text");
                }
            },
            FieldKind::TextList => {
                if let Some(items) = self.sequence(node, path, "text") {
                    for (index, item) in items.iter().enumerate() {
                        self.scalar(item, &format!("{path}[{index}]"), "text");
                    }
                }
            }
            FieldKind::FailMode => self.word(node, path, &["standalone", "secure"]),
            FieldKind::TunnelType => self.word(node, path, &["vxlan", "gre"]),
            FieldKind::Pkey => {
                let Some(s) = self.scalar(node, path, "a partition key") else {
                    return;
                };
                let text = s.as_str();
                let value = text
                    .parse::<u64>()
                    .ok()
                    .or_else(|| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok());
                match value {
                    None => self.error(
                        node.span(),
                        path,
                        "pkey only supports base 10 or base 16 int numbers",
                    ),
                    Some(pkey) if !(0x0001..0x7fff).contains(&pkey) => self.error(
                        node.span(),
                        path,
                        &format!("invalid pkey value 0x{pkey:X} (must be 0x0001-0x7ffe)"),
                    ),
                    Some(_) => {}
                }
            }
            FieldKind::Mac => {
                if let Some(s) = self.scalar(node, path, "a MAC address") {
                    if !is_mac(s.as_str()) {
                        self.error(
                            node.span(),
                            path,
                            &format!("'{}' is not a MAC address", s.as_str()),
                        );
                    }
                }
            }
            FieldKind::Members(allowed) => {
                let Some(items) = self.sequence(node, path, "member devices") else {
                    return;
                };
                for (index, item) in items.iter().enumerate() {
                    self.device(item, &format!("{path}[{index}]"), Some(allowed));
                }
                if device.name == "ovs_dpdk_port" && items.len() != 1 {
                    self.error(
                        node.span(),
                        path,
                        "OVS DPDK Port should have only one member",
                    );
                }
            }
        }
    }

    fn int(&mut self, node: &Node, path: &str) -> Option<u64> {
        let s = self.scalar(node, path, "an integer")?;
        match yaml_int(s) {
            Some(value) => {
                let text = s.as_str();
                if text.len() > 1
                    && text.starts_with('0')
                    && text.bytes().all(|b| b.is_ascii_digit())
                {
                    self.warning(node.span(), path, &format!("YAML 1.1 (upstream) reads {text} as an octal number; write it without the leading 0"));
                }
                Some(value)
            }
            None => {
                self.error(
                    node.span(),
                    path,
                    &format!("'{}' is not an integer", s.as_str()),
                );
                None
            }
        }
    }

    fn word(&mut self, node: &Node, path: &str, words: &[&str]) {
        if let Some(s) = self.scalar(node, path, &format!("one of {}", words.join(", "))) {
            if !words.contains(&s.as_str()) {
                self.error(
                    node.span(),
                    path,
                    &format!("'{}' is not one of {}", s.as_str(), words.join(", ")),
                );
            }
        }
    }

    fn domain(&mut self, node: &Node, path: &str) {
        let Some(s) = self.scalar(node, path, "a domain name") else {
            return;
        };
        let text = s.as_str();
        let bad_label = text.split('.').any(|label| label.len() > 63);
        if text.len() > 255 || text.contains("..") || bad_label {
            self.error(
                node.span(),
                path,
                &format!("'{text}' is not a valid domain name"),
            );
        }
    }

    fn cidr(&mut self, node: &Node, path: &str, network: bool) {
        let Some(s) = self.scalar(node, path, "an IP address with prefix length") else {
            return;
        };
        match parse_cidr(s.as_str()) {
            None => self.error(
                node.span(),
                path,
                &format!("'{}' is not an IP address with prefix length", s.as_str()),
            ),
            Some((address, prefix)) if network => {
                if let Some(net) = network_of(address, prefix) {
                    self.error(
                        node.span(),
                        path,
                        &format!(
                            "'{}' has host bits set; the network is {net}/{prefix}",
                            s.as_str()
                        ),
                    );
                }
            }
            Some(_) => {}
        }
    }

    fn routes(&mut self, node: &Node, path: &str) {
        let Some(items) = self.sequence(node, path, "routes") else {
            return;
        };
        const FIELDS: [&str; 8] = [
            "next_hop",
            "nexthop",
            "ip_netmask",
            "destination",
            "default",
            "route_options",
            "table",
            "metric",
        ];
        for (index, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            let Some(map) = self.mapping(item, &item_path, "a route mapping") else {
                continue;
            };
            for (key, value) in map.iter() {
                let field = format!("{item_path}.{}", key.as_str());
                match key.as_str() {
                    "next_hop" | "nexthop" => {
                        if let Some(s) = self.scalar(value, &field, "an IP address or self") {
                            if s.as_str() != "self" && s.as_str().parse::<IpAddr>().is_err() {
                                self.error(
                                    value.span(),
                                    &field,
                                    &format!("'{}' is not an IP address", s.as_str()),
                                );
                            }
                        }
                    }
                    "ip_netmask" | "destination" => self.cidr(value, &field, true),
                    "default" => {
                        if let Some(s) = self.scalar(value, &field, "a boolean") {
                            if bool_word(s.as_str()).is_none() {
                                self.error(
                                    value.span(),
                                    &field,
                                    &format!("'{}' is not a boolean (true or false)", s.as_str()),
                                );
                            }
                        }
                    }
                    "route_options" | "table" => {
                        self.scalar(value, &field, "text");
                    }
                    "metric" => {
                        self.int(value, &field);
                    }
                    other => self.error(
                        key.span(),
                        &field,
                        &format!(
                            "unknown field \"{other}\" for a route{}",
                            suggestion(other, FIELDS)
                        ),
                    ),
                }
            }
            let has = |k: &str| map.get_node(k).is_some();
            if has("next_hop") && has("nexthop") {
                self.error(
                    start(item),
                    &item_path,
                    "both next_hop and nexthop configured; use one",
                );
            } else if !has("next_hop") && !has("nexthop") {
                self.error(
                    start(item),
                    &item_path,
                    "a route requires next_hop (or nexthop)",
                );
            }
            if has("ip_netmask") && has("destination") {
                self.error(
                    start(item),
                    &item_path,
                    "both ip_netmask and destination configured; use one",
                );
            }
            let is_default = map
                .get_scalar("default")
                .is_some_and(|d| bool_word(d.as_str()) == Some(true));
            if !is_default && !has("ip_netmask") && !has("destination") {
                self.error(start(item), &item_path, "a route requires a destination (ip_netmask or destination) unless it is default: true");
            }
        }
    }
}

/// Names written `nic<N>` (or `nic<N>.<VID>`) that no NIC answers to: upstream would use them
/// as literal device names (D17).
pub fn unresolved_aliases(root: &Node, aliases: &crate::nics::Aliases) -> Vec<Diagnostic> {
    fn is_alias(name: &str) -> bool {
        let base = name.split_once('.').map_or(name, |(b, _)| b);
        base.strip_prefix("nic")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }
    fn walk(node: &Node, path: &str, aliases: &crate::nics::Aliases, out: &mut Vec<Diagnostic>) {
        match node {
            Node::Mapping(map) => {
                for (key, value) in map.iter() {
                    let field = format!("{path}.{}", key.as_str());
                    match (key.as_str(), value.as_scalar()) {
                        ("name" | "device" | "parent", Some(s)) => {
                            let name = s.as_str();
                            if is_alias(name) && aliases.resolve(name) == name {
                                let (line, column) = position(value.span());
                                out.push(Diagnostic {
                                    severity: Severity::Error,
                                    line,
                                    column,
                                    path: field,
                                    message: format!("{name} does not map to any active NIC"),
                                });
                            }
                        }
                        _ => walk(value, &field, aliases, out),
                    }
                }
            }
            Node::Sequence(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{index}]"), aliases, out);
                }
            }
            Node::Scalar(_) => {}
        }
    }
    let mut found = Vec::new();
    if let Some(config) = root.as_mapping().and_then(|m| m.get_node("network_config")) {
        walk(config, "network_config", aliases, &mut found);
    }
    found
}

/// The `interface_mapping` entries of a mapping file, in file order.
pub fn mapping_entries(root: &Node) -> Result<Vec<crate::nics::MappingEntry>, Vec<Diagnostic>> {
    let mut v = Validator::default();
    let mut entries = Vec::new();
    let Some(top) = root.as_mapping() else {
        v.error(
            root.span(),
            "",
            "the mapping file must be a mapping with interface_mapping",
        );
        return Err(v.found);
    };
    for (key, value) in top.iter() {
        if key.as_str() != "interface_mapping" {
            v.error(
                key.span(),
                key.as_str(),
                "unknown section (expected interface_mapping)",
            );
            continue;
        }
        let Some(map) = v.mapping(
            value,
            "interface_mapping",
            "a mapping of alias: device or MAC",
        ) else {
            continue;
        };
        for (alias, target) in map.iter() {
            let path = format!("interface_mapping.{}", alias.as_str());
            if let Some(s) = v.scalar(target, &path, "a device name or MAC address") {
                if s.may_coerce()
                    && s.as_str().split(':').count() == 6
                    && s.as_str().bytes().all(|b| b.is_ascii_digit() || b == b':')
                {
                    v.warning(
                        target.span(),
                        &path,
                        "YAML 1.1 (upstream) reads this unquoted MAC as a base-60 number; quote it",
                    );
                }
                entries.push(crate::nics::MappingEntry {
                    alias: alias.as_str().to_owned(),
                    target: s.as_str().to_owned(),
                });
            }
        }
    }
    if v.found.iter().any(|d| d.severity == Severity::Error) {
        Err(v.found)
    } else {
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Vec<String> {
        let root = parse(text).expect("parses");
        validate(&root).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_document_has_no_findings() {
        let found = check(
            "network_config:\n  - type: interface\n    name: nic1\n    use_dhcp: false\n    addresses:\n      - ip_netmask: 192.0.2.10/24\n    routes:\n      - default: true\n        next_hop: 192.0.2.1\n",
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn unknown_fields_and_types_are_named_with_a_suggestion() {
        let found = check(
            "network_config:\n  - type: linux_bridge\n    name: br0\n    members:\n      - type: interface\n        nmae: em1\n  - type: interfac\n    name: em2\n",
        );
        assert_eq!(
            found,
            [
                "5:9: network_config[0].members[0]: missing required field \"name\" for interface",
                "6:9: network_config[0].members[0].nmae: unknown field \"nmae\" for interface (did you mean \"name\"?)",
                "7:11: network_config[1].type: unknown type \"interfac\" (did you mean \"interface\"?)",
            ]
        );
    }

    #[test]
    fn bad_values_are_all_reported() {
        let found = check(
            "network_config:\n  - type: interface\n    name: em1\n    addresses:\n      - ip_netmask: 192.0.2.300/24\n    routes:\n      - ip_netmask: 192.0.2.1/24\n        next_hop: 192.0.2.254\n      - default: false\n        next_hop: 192.0.2.1\n  - type: vlan\n    vlan_id: 5000\n    device: em1\n",
        );
        assert_eq!(
            found,
            [
                "5:21: network_config[0].addresses[0].ip_netmask: '192.0.2.300/24' is not an IP address with prefix length",
                "7:21: network_config[0].routes[0].ip_netmask: '192.0.2.1/24' has host bits set; the network is 192.0.2.0/24",
                "9:9: network_config[0].routes[1]: a route requires a destination (ip_netmask or destination) unless it is default: true",
                "12:14: network_config[1].vlan_id: VLAN id 5000 is outside 1-4094",
            ]
        );
    }

    #[test]
    fn yaml_1_1_readings_are_warned_about() {
        let found = check("network_config:\n  - type: interface\n    name: em1\n    mtu: 01500\n");
        assert_eq!(
            found,
            ["4:10: warning: network_config[0].mtu: YAML 1.1 (upstream) reads 01500 as an octal number; write it without the leading 0"]
        );
    }

    #[test]
    fn duplicate_device_names_are_refused() {
        let found = check(
            "network_config:\n  - type: vlan\n    vlan_id: 10\n    device: em1\n  - type: vlan\n    vlan_id: 10\n    device: em2\n",
        );
        assert_eq!(
            found,
            ["5:5: network_config[1]: device name vlan10 is already used by network_config[0]"]
        );
    }

    #[test]
    fn two_primaries_are_refused() {
        let found = check(
            "network_config:\n  - type: linux_bond\n    name: bond0\n    members:\n      - type: interface\n        name: em1\n        primary: true\n      - type: interface\n        name: em2\n        primary: true\n",
        );
        assert_eq!(
            found,
            ["8:9: network_config[0].members: only one primary interface allowed per bond"]
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let error = parse("network_config:\n  - type: [interface\n").unwrap_err();
        assert!(error.line >= 2, "{error}");
    }
}
