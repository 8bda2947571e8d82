//! The node model: what Ironic keeps about a machine (spec §1.1), with credentials held as
//! [`Secret`]s so that `Debug` never shows a password.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::secret::Secret;
use crate::states::{self, Event, State};
use crate::Error;

/// An Ethernet MAC address, shown lower-case with colons (`52:54:00:aa:bb:01`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl fmt::Debug for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddress({self})")
    }
}

impl MacAddress {
    /// Parses `52:54:00:AA:BB:01`, `52-54-00-aa-bb-01` or `525400aabb01`.
    pub fn parse(text: &str) -> Option<MacAddress> {
        let t = text.trim();
        let digits: Vec<u8> = if t.len() == 12 {
            t.bytes().collect()
        } else if t.len() == 17 {
            let sep = t.as_bytes()[2];
            if sep != b':' && sep != b'-' {
                return None;
            }
            let mut out = Vec::with_capacity(12);
            for (i, b) in t.bytes().enumerate() {
                if i % 3 == 2 {
                    if b != sep {
                        return None;
                    }
                } else {
                    out.push(b);
                }
            }
            out
        } else {
            return None;
        };
        let mut bytes = [0u8; 6];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            bytes[i] = (hi * 16 + lo) as u8;
        }
        Some(MacAddress(bytes))
    }

    /// `52-54-00-aa-bb-01`, iPXE's `${mac:hexhyp}` and the tail of PXELINUX's file names.
    pub fn hyphenated(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddress {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        MacAddress::parse(s).ok_or_else(|| Error::BadMac {
            value: s.to_owned(),
        })
    }
}

/// A JSON-like value of the free-form node fields (`driver_info`, `instance_info`, `extra`,
/// unknown `properties`), where credentials are [`Value::Secret`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Secret(Secret),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The text of a `Text` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The secret of a `Secret` value.
    pub fn as_secret(&self) -> Option<&Secret> {
        match self {
            Value::Secret(s) => Some(s),
            _ => None,
        }
    }

    /// An integer, also from text of digits (Ironic accepts both for ports and sizes).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Compact JSON-like text; secrets print as `***`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Secret(s) => write!(f, "{s}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                f.write_str("{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k:?}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Whether a field of that name holds a credential (`ipmi_password`, `pm_password`,
/// `ipmi_hex_kg_key`, `redfish_auth_token`, …). Such values are kept as [`Secret`]s.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "key_contents",
        "private",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("_key")
        || k.ends_with("-key")
        || k.ends_with("_pass")
        || k == "key"
        || k == "pass"
}

/// One NIC of a node (an Ironic port).
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub address: MacAddress,
    /// Whether the node network-boots from this NIC (per-MAC boot files, DHCP reservations).
    pub pxe_enabled: bool,
    pub physical_network: Option<String>,
    pub local_link_connection: BTreeMap<String, Value>,
    pub extra: BTreeMap<String, Value>,
}

impl Port {
    /// A PXE-enabled port with nothing else set.
    pub fn new(address: MacAddress) -> Port {
        Port {
            address,
            pxe_enabled: true,
            physical_network: None,
            local_link_connection: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// The hardware description Ironic schedules on (`properties`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Properties {
    pub cpus: Option<u32>,
    pub memory_mb: Option<u64>,
    pub local_gb: Option<u64>,
    pub cpu_arch: Option<String>,
    /// `k:v,k:v` parsed; shown sorted by key.
    pub capabilities: BTreeMap<String, String>,
    /// Root device hints (spec §4.4), as given.
    pub root_device: Option<BTreeMap<String, Value>>,
    /// Every other property, passed through.
    pub other: BTreeMap<String, Value>,
}

impl Properties {
    /// Capabilities in Ironic's `k:v,k:v` form.
    pub fn capabilities_string(&self) -> String {
        self.capabilities
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Parses Ironic's `k:v,k:v` capabilities; `Err` names the item that is not `k:v`.
pub fn parse_capabilities(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => return Err(item.to_owned()),
        }
    }
    Ok(out)
}

/// `power_state` / `target_power_state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PowerState {
    On,
    Off,
    Rebooting,
    SoftRebooting,
    SoftPowerOff,
}

impl PowerState {
    pub const ALL: [PowerState; 5] = [
        PowerState::On,
        PowerState::Off,
        PowerState::Rebooting,
        PowerState::SoftRebooting,
        PowerState::SoftPowerOff,
    ];

    /// Ironic's spelling: `power on`, `power off`, `rebooting`, `soft rebooting`,
    /// `soft power off`.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "power on",
            PowerState::Off => "power off",
            PowerState::Rebooting => "rebooting",
            PowerState::SoftRebooting => "soft rebooting",
            PowerState::SoftPowerOff => "soft power off",
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PowerState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        PowerState::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Error::UnknownName {
                kind: "power state",
                value: s.to_owned(),
            })
    }
}

/// How bad a history entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Error => "error",
        }
    }
}

/// One entry of a node's event history (Ironic's `/v1/nodes/{id}/history`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Seconds since the Unix epoch, as the caller's clock gave them.
    pub at: u64,
    pub severity: Severity,
    /// `provisioning`, `power`, …
    pub event_type: String,
    pub message: String,
}

/// A bare-metal machine as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub uuid: Uuid,
    /// Unique among nodes, usable in place of the uuid; never itself a UUID.
    pub name: Option<String>,
    /// Hardware type: `ipmi`, `redfish`, `manual-management`, `fake-hardware`, …
    pub driver: String,
    /// BMC address and credentials (credentials as [`Value::Secret`]), deploy/rescue images.
    pub driver_info: BTreeMap<String, Value>,
    /// `boot_interface`, `deploy_interface`, … when set explicitly.
    pub interfaces: BTreeMap<String, String>,
    pub resource_class: Option<String>,
    pub conductor_group: Option<String>,
    pub properties: Properties,
    pub ports: Vec<Port>,
    pub provision_state: State,
    pub target_provision_state: Option<State>,
    pub power_state: Option<PowerState>,
    pub target_power_state: Option<PowerState>,
    pub last_error: Option<String>,
    pub maintenance: bool,
    pub maintenance_reason: Option<String>,
    /// Who is working on the node right now (`host:pid:start`, see
    /// [`conductor`](crate::conductor)); `None` when nobody is. Ironic's field of that name.
    pub reservation: Option<String>,
    pub instance_info: BTreeMap<String, Value>,
    pub extra: BTreeMap<String, Value>,
    pub history: Vec<HistoryEntry>,
}

impl Node {
    /// A node in `enroll` with nothing but its identity and driver.
    pub fn new(uuid: Uuid, driver: impl Into<String>) -> Node {
        Node {
            uuid,
            name: None,
            driver: driver.into(),
            driver_info: BTreeMap::new(),
            interfaces: BTreeMap::new(),
            resource_class: None,
            conductor_group: None,
            properties: Properties::default(),
            ports: Vec::new(),
            provision_state: State::Enroll,
            target_provision_state: None,
            power_state: None,
            target_power_state: None,
            last_error: None,
            maintenance: false,
            maintenance_reason: None,
            reservation: None,
            instance_info: BTreeMap::new(),
            extra: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    /// The name if there is one, else the uuid: how messages refer to the node.
    pub fn ident(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.uuid.to_string())
    }

    /// MACs of the ports that network-boot, in port order.
    pub fn pxe_macs(&self) -> Vec<MacAddress> {
        self.ports
            .iter()
            .filter(|p| p.pxe_enabled)
            .map(|p| p.address)
            .collect()
    }

    /// The BMC fields of the node's driver, if its driver has a BMC.
    pub fn bmc(&self) -> Option<Bmc<'_>> {
        let prefix = driver_prefix(&self.driver)?;
        let get = |field: &str| self.driver_info.get(&format!("{prefix}_{field}"));
        let address = get("address")?.as_str()?;
        Some(Bmc {
            address,
            username: get("username").and_then(Value::as_str),
            password: get("password").and_then(Value::as_secret),
            port: get("port")
                .and_then(Value::as_int)
                .and_then(|p| u16::try_from(p).ok()),
        })
    }

    /// The BMC identity tripleo-common keeps unique and matches re-imports by: the address (and
    /// `:port` when set), or for redfish the address without its scheme, `/`, and the system id.
    pub fn bmc_identity(&self) -> Option<String> {
        let bmc = self.bmc()?;
        if bmc.address.is_empty() {
            return None;
        }
        if self.driver == "redfish" {
            let host = bmc
                .address
                .split_once("://")
                .map_or(bmc.address, |(_, rest)| rest)
                .trim_end_matches('/');
            let system = self
                .driver_info
                .get("redfish_system_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some(format!("{host}/{}", system.trim_start_matches('/')))
        } else {
            Some(match bmc.port {
                Some(p) => format!("{}:{p}", bmc.address),
                None => bmc.address.to_owned(),
            })
        }
    }

    /// Applies a provisioning event: moves `provision_state` through the state machine, sets
    /// `target_provision_state` and records the move in the history. On a `fail` event,
    /// `message` becomes `last_error`; a successful move to a stable state clears it.
    pub fn apply(&mut self, event: Event, at: u64, message: Option<&str>) -> Result<State, Error> {
        let from = self.provision_state;
        let to = states::next(from, event).map_err(|_| Error::InvalidTransition {
            node: Some(self.uuid.to_string()),
            event,
            state: from,
        })?;
        // Manual cleaning (`clean` from manageable) comes back to manageable, not available.
        let manual_clean = (from == State::Manageable && event == Event::Clean)
            || (from.is_clean_state()
                && to.is_clean_state()
                && self.target_provision_state == Some(State::Manageable));
        self.target_provision_state = if manual_clean {
            Some(State::Manageable)
        } else {
            to.target()
        };
        self.provision_state = to;
        let failed = event == Event::Fail;
        if failed {
            self.last_error = message.map(str::to_owned);
        } else if to.is_stable() && to != State::Error {
            self.last_error = None;
        }
        let mut text = format!("{event}: {from} -> {to}");
        if let Some(m) = message {
            text.push_str(": ");
            text.push_str(m);
        }
        self.history.push(HistoryEntry {
            at,
            severity: if failed || to.is_failed() {
                Severity::Error
            } else {
                Severity::Info
            },
            event_type: "provisioning".to_owned(),
            message: text,
        });
        Ok(to)
    }

    /// The node as Ironic's API shows it (`GET /v1/nodes/{id}` fields, plus `ports` and
    /// `history`), with every credential replaced by `******` as Ironic masks them.
    pub fn to_redacted_json(&self) -> serde_json::Value {
        use serde_json::json;
        fn value(v: &Value) -> serde_json::Value {
            match v {
                Value::Null => serde_json::Value::Null,
                Value::Bool(b) => json!(b),
                Value::Int(i) => json!(i),
                Value::Float(x) => json!(x),
                Value::Text(s) => json!(s),
                Value::Secret(_) => json!("******"),
                Value::List(items) => items.iter().map(value).collect(),
                Value::Map(m) => map(m),
            }
        }
        fn map(m: &BTreeMap<String, Value>) -> serde_json::Value {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), value(v))).collect())
        }
        let p = &self.properties;
        let mut properties = match map(&p.other) {
            serde_json::Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        for (key, v) in [
            ("cpus", json!(p.cpus)),
            ("memory_mb", json!(p.memory_mb)),
            ("local_gb", json!(p.local_gb)),
            ("cpu_arch", json!(p.cpu_arch)),
        ] {
            if !v.is_null() {
                properties.insert(key.to_owned(), v);
            }
        }
        if !p.capabilities.is_empty() {
            properties.insert("capabilities".to_owned(), json!(p.capabilities_string()));
        }
        if let Some(root) = &p.root_device {
            properties.insert("root_device".to_owned(), map(root));
        }
        json!({
            "uuid": self.uuid.to_string(),
            "name": self.name,
            "driver": self.driver,
            "driver_info": map(&self.driver_info),
            "resource_class": self.resource_class,
            "conductor_group": self.conductor_group.clone().unwrap_or_default(),
            "properties": properties,
            "provision_state": self.provision_state.as_str(),
            "target_provision_state": self.target_provision_state.map(State::as_str),
            "power_state": self.power_state.map(PowerState::as_str),
            "target_power_state": self.target_power_state.map(PowerState::as_str),
            "last_error": self.last_error,
            "maintenance": self.maintenance,
            "maintenance_reason": self.maintenance_reason,
            "reservation": self.reservation,
            "instance_info": map(&self.instance_info),
            "extra": map(&self.extra),
            "ports": self.ports.iter().map(|port| json!({
                "address": port.address.to_string(),
                "pxe_enabled": port.pxe_enabled,
                "physical_network": port.physical_network,
                "local_link_connection": map(&port.local_link_connection),
            })).collect::<Vec<_>>(),
            "history": self.history.iter().map(|h| json!({
                "at": h.at,
                "severity": h.severity.as_str(),
                "event_type": h.event_type,
                "message": h.message,
            })).collect::<Vec<_>>(),
        })
    }

    /// Records a power state read or reached; a change is written to the history.
    pub fn set_power_state(&mut self, power: PowerState, at: u64) {
        if self.power_state != Some(power) {
            let from = self
                .power_state
                .map_or("None".to_owned(), |p| p.to_string());
            self.history.push(HistoryEntry {
                at,
                severity: Severity::Info,
                event_type: "power".to_owned(),
                message: format!("power state {from} -> {power}"),
            });
        }
        self.power_state = Some(power);
        if self.target_power_state == Some(power) {
            self.target_power_state = None;
        }
    }
}

/// A view of a node's BMC fields (`<prefix>_address`, `_username`, `_password`, `_port`).
#[derive(Debug, Clone, Copy)]
pub struct Bmc<'a> {
    pub address: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a Secret>,
    pub port: Option<u16>,
}

/// The `driver_info` prefix of a hardware type's BMC fields: `ipmi` for `ipmi`, `drac` for
/// `idrac`, …; `None` for drivers without a BMC (`manual-management`, `fake-hardware`).
pub fn driver_prefix(driver: &str) -> Option<&'static str> {
    Some(match driver {
        "ipmi" => "ipmi",
        "redfish" => "redfish",
        "idrac" => "drac",
        "ilo" | "ilo5" => "ilo",
        "irmc" => "irmc",
        "xclarity" => "xclarity",
        "ibmc" => "ibmc",
        "staging-ovirt" => "ovirt",
        "snmp" => "snmp",
        _ => return None,
    })
}

/// Hardware types this crate knows by name.
pub const KNOWN_DRIVERS: &[&str] = &[
    "fake-hardware",
    "ibmc",
    "idrac",
    "ilo",
    "ilo5",
    "ipmi",
    "irmc",
    "manual-management",
    "redfish",
    "snmp",
    "staging-ovirt",
    "xclarity",
];

/// Rewrites a legacy (pre-hardware-type) driver name as tripleo-common did: `pxe_ipmitool` and
/// `*_ipmitool` -> `ipmi`, `fake_pxe`/`fake_agent` -> `manual-management`, `*_drac` -> `idrac`,
/// `*_ilo` -> `ilo`, `*_irmc` -> `irmc`. `None` when the name is not a legacy one.
pub fn legacy_driver(name: &str) -> Option<&'static str> {
    if name == "fake_pxe" || name == "fake_agent" {
        Some("manual-management")
    } else if name.ends_with("_ipmitool") {
        Some("ipmi")
    } else if name.ends_with("_drac") {
        Some("idrac")
    } else if name.ends_with("_ilo") {
        Some("ilo")
    } else if name.ends_with("_irmc") {
        Some("irmc")
    } else {
        None
    }
}

/// Ironic's interface fields that a node may set (`boot_interface`, …).
pub const INTERFACE_FIELDS: &[&str] = &[
    "bios_interface",
    "boot_interface",
    "console_interface",
    "deploy_interface",
    "firmware_interface",
    "inspect_interface",
    "management_interface",
    "network_interface",
    "power_interface",
    "raid_interface",
    "rescue_interface",
    "storage_interface",
    "vendor_interface",
];

/// Checks a node name: Ironic's unreserved URL characters (letters, digits, `-._~`), and not
/// itself a UUID (names and uuids share the lookup path). `Err` says what is wrong.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err("may hold only letters, digits, \"-\", \".\", \"_\" and \"~\"");
    }
    if Uuid::try_parse(name).is_ok() {
        return Err("must not be a UUID");
    }
    Ok(())
}

/// A stable uuid for a node that came without one: a name-based (v5) UUID of `key` (the node's
/// name, else its first MAC), so that importing the same inventory twice gives the same nodes.
pub fn derived_uuid(key: &str) -> Uuid {
    let namespace = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://tripleo-rs/baremetal/node");
    Uuid::new_v5(&namespace, key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        let want = "52:54:00:aa:bb:01";
        for t in [
            "52:54:00:aa:bb:01",
            "52:54:00:AA:BB:01",
            "52-54-00-aa-bb-01",
            "525400AABB01",
            " 52:54:00:aa:bb:01 ",
        ] {
            assert_eq!(MacAddress::parse(t).unwrap().to_string(), want, "{t}");
        }
        for t in [
            "zz",
            "52:54:00:aa:bb",
            "52:54-00:aa:bb:01",
            "52:54:00:aa:bb:0g",
            "",
        ] {
            assert!(MacAddress::parse(t).is_none(), "{t}");
        }
        assert_eq!(
            MacAddress::parse(want).unwrap().hyphenated(),
            "52-54-00-aa-bb-01"
        );
    }

    #[test]
    fn debug_hides_passwords() {
        let mut n = Node::new(derived_uuid("n"), "ipmi");
        n.driver_info.insert(
            "ipmi_password".into(),
            Value::Secret(Secret::new("hunter2")),
        );
        let shown = format!("{n:?} {n:#?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("***"));
    }

    #[test]
    fn secret_keys() {
        for k in [
            "pm_password",
            "ipmi_password",
            "ipmi_hex_kg_key",
            "redfish_auth_token",
            "admin_pass",
            "ssh-key",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "ipmi_address",
            "deploy_kernel",
            "redfish_verify_ca",
            "keyboard",
            "passes",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("ctl-0").is_ok());
        assert!(check_name("a b").is_err());
        assert!(check_name("1be26c0b-03f2-4d2e-ae87-c02d7f33c123").is_err());
    }

    #[test]
    fn capabilities() {
        let c = parse_capabilities("profile:control, boot_mode:uefi").unwrap();
        assert_eq!(c["boot_mode"], "uefi");
        assert_eq!(parse_capabilities("abc").unwrap_err(), "abc");
    }
}
