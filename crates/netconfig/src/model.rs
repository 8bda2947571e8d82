//! The typed device tree the renderers work on, built from a document that passed
//! [`validate`](crate::validate::validate): names derived (`vlan<ID>`, IB child names) and
//! NIC aliases resolved.

use marked_yaml::types::MarkedMappingNode;
use marked_yaml::Node;

use crate::nics::Aliases;

/// Settings every device has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub use_dhcp: bool,
    pub use_dhcpv6: bool,
    /// `address/prefix`, as written.
    pub addresses: Vec<String>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
    pub mtu: Option<u64>,
    pub defroute: bool,
    pub dhclient_args: Option<String>,
    pub dns_servers: Vec<String>,
    pub domain: Vec<String>,
    /// `domain` was written as a list (ifcfg quotes a list even of one).
    pub domain_is_list: bool,
    pub nm_controlled: bool,
    pub onboot: bool,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            use_dhcp: false,
            use_dhcpv6: false,
            addresses: Vec::new(),
            routes: Vec::new(),
            rules: Vec::new(),
            mtu: None,
            defroute: true,
            dhclient_args: None,
            dns_servers: Vec::new(),
            domain: Vec::new(),
            domain_is_list: false,
            nm_controlled: false,
            onboot: true,
        }
    }
}

impl Common {
    pub fn v4_addresses(&self) -> impl Iterator<Item = &str> {
        self.addresses
            .iter()
            .map(String::as_str)
            .filter(|a| !a.contains(':'))
    }

    pub fn v6_addresses(&self) -> impl Iterator<Item = &str> {
        self.addresses
            .iter()
            .map(String::as_str)
            .filter(|a| a.contains(':'))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub next_hop: String,
    /// `None` for a default route.
    pub destination: Option<String>,
    pub default: bool,
    pub route_options: Option<String>,
    pub table: Option<String>,
    pub metric: Option<u64>,
}

impl Route {
    /// As upstream decides: IPv6 when the next hop has a colon.
    pub fn is_v6(&self) -> bool {
        self.next_hop.contains(':')
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub rule: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    Standalone,
    Secure,
}

/// What a device is, with its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Interface {
        ethtool_opts: Option<String>,
        hotplug: bool,
        linkdelay: Option<u64>,
        ovs_extra: Vec<String>,
    },
    Vlan {
        vlan_id: u64,
        device: Option<String>,
        ovs_options: Option<String>,
        ovs_extra: Vec<String>,
    },
    LinuxBridge,
    LinuxBond {
        bonding_options: Option<String>,
        ethtool_opts: Option<String>,
    },
    Team {
        bonding_options: Option<String>,
    },
    OvsBridge {
        user: bool,
        ovs_options: Option<String>,
        /// With `{name}` filled in and the fail mode entries appended.
        ovs_extra: Vec<String>,
        fail_mode: FailMode,
        ovs_internal: bool,
    },
    OvsBond {
        ovs_options: Option<String>,
        ovs_extra: Vec<String>,
    },
    OvsPatchPort {
        bridge_name: String,
        peer: String,
        ovs_options: Vec<String>,
        ovs_extra: Vec<String>,
    },
    OvsTunnel {
        tunnel_type: String,
        ovs_options: Vec<String>,
        ovs_extra: Vec<String>,
    },
    IbInterface {
        ethtool_opts: Option<String>,
    },
    IbChild {
        parent: String,
        /// With the full-membership bit set: `0x8000 | pkey`.
        pkey: u16,
    },
    LinuxTap,
    /// The one IVS switch (named `ivs`): its members become IVS ports; it has no file.
    IvsBridge,
    /// An IVS internal port `<name><vlan_id>`.
    IvsInterface {
        vlan_id: u64,
    },
    /// The one NFVSwitch (named `nfvswitch`), with its daemon options.
    NfvswitchBridge {
        options: Option<String>,
    },
    /// An NFVSwitch internal port `<name><vlan_id>`.
    NfvswitchInternal {
        vlan_id: u64,
    },
    /// A Contrail vRouter host interface bound to its members.
    ContrailVrouter,
    /// A type the renderers do not handle yet (hardware-bound or rare).
    Other {
        type_name: String,
    },
}

/// One device and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The schema's type name.
    pub type_name: String,
    /// The device name after derivation and alias resolution.
    pub name: String,
    pub kind: Kind,
    pub common: Common,
    pub primary: bool,
    /// With `--persist-mapping`: the MAC of the NIC an alias stands for; the device keeps
    /// the alias as its name and the NIC is renamed to it.
    pub hwaddr: Option<String>,
    pub members: Vec<Device>,
}

/// A `route_table` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub name: String,
    pub table_id: u64,
}

/// The `network_config` section, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    pub devices: Vec<Device>,
    pub route_tables: Vec<RouteTable>,
}

impl NetworkConfig {
    /// `route_table` names and their ids.
    pub fn table_ids(&self) -> std::collections::BTreeMap<String, u64> {
        self.route_tables
            .iter()
            .map(|t| (t.name.clone(), t.table_id))
            .collect()
    }
}

/// Fills `{name}` into a device's `ovs_extra` templates and, for a bridge, appends its fail
/// mode entries, as upstream's objects do: renderers take the list as it is.
fn format_ovs_extra(kind: &mut Kind, name: &str) {
    let extra = match kind {
        Kind::Interface { ovs_extra, .. }
        | Kind::Vlan { ovs_extra, .. }
        | Kind::OvsBridge { ovs_extra, .. }
        | Kind::OvsBond { ovs_extra, .. }
        | Kind::OvsPatchPort { ovs_extra, .. }
        | Kind::OvsTunnel { ovs_extra, .. } => ovs_extra,
        _ => return,
    };
    for entry in extra.iter_mut() {
        *entry = entry.replace("{name}", name);
    }
    if let Kind::OvsBridge {
        fail_mode,
        ovs_extra,
        ..
    } = kind
    {
        match fail_mode {
            FailMode::Standalone => {
                ovs_extra.push(format!("set bridge {name} fail_mode=standalone"));
                ovs_extra.push(format!("del-controller {name}"));
            }
            FailMode::Secure => ovs_extra.push(format!("set bridge {name} fail_mode=secure")),
        }
    }
}

/// A dotted netmask for an IPv4 prefix length.
pub fn netmask(prefix: u8) -> std::net::Ipv4Addr {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    std::net::Ipv4Addr::from(bits)
}

/// `<base>.<vid>`: a VLAN sub-interface by name, with its base and id.
pub fn dotted_vlan(name: &str) -> Option<(&str, u64)> {
    let (base, vid) = name.rsplit_once('.')?;
    (!base.is_empty()).then_some(())?;
    vid.parse().ok().map(|id| (base, id))
}

fn text(map: &MarkedMappingNode, key: &str) -> Option<String> {
    map.get_scalar(key).map(|s| s.as_str().to_owned())
}

fn flag(map: &MarkedMappingNode, key: &str, default: bool) -> bool {
    map.get_scalar(key)
        .map(|s| {
            matches!(
                s.as_str().to_ascii_lowercase().as_str(),
                "t" | "true" | "on" | "y" | "yes" | "1"
            )
        })
        .unwrap_or(default)
}

fn int(map: &MarkedMappingNode, key: &str) -> Option<u64> {
    let text = map.get_scalar(key)?.as_str();
    let text = text.strip_prefix('+').unwrap_or(text);
    if let Some(hex) = text.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else if let Some(octal) = text.strip_prefix("0o") {
        u64::from_str_radix(octal, 8).ok()
    } else {
        text.parse().ok()
    }
}

/// Text or a list of text, as a list.
fn texts(map: &MarkedMappingNode, key: &str) -> Vec<String> {
    match map.get_node(key) {
        Some(Node::Scalar(s)) => vec![s.as_str().to_owned()],
        Some(Node::Sequence(items)) => items
            .iter()
            .filter_map(|i| i.as_scalar().map(|s| s.as_str().to_owned()))
            .collect(),
        _ => Vec::new(),
    }
}

fn common(map: &MarkedMappingNode) -> Common {
    let defaults = Common::default();
    let list = |key: &str| {
        map.get_sequence(key)
            .map(|s| s.iter().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    Common {
        use_dhcp: flag(map, "use_dhcp", false),
        use_dhcpv6: flag(map, "use_dhcpv6", false),
        addresses: list("addresses")
            .into_iter()
            .filter_map(|a| a.as_mapping().and_then(|m| text(m, "ip_netmask")))
            .collect(),
        routes: list("routes")
            .into_iter()
            .filter_map(Node::as_mapping)
            .map(|r| Route {
                next_hop: text(r, "next_hop")
                    .or_else(|| text(r, "nexthop"))
                    .unwrap_or_default(),
                destination: text(r, "ip_netmask").or_else(|| text(r, "destination")),
                default: flag(r, "default", false),
                route_options: text(r, "route_options"),
                table: text(r, "table"),
                metric: int(r, "metric"),
            })
            .collect(),
        rules: list("rules")
            .into_iter()
            .filter_map(Node::as_mapping)
            .map(|r| Rule {
                rule: text(r, "rule").unwrap_or_default(),
                comment: text(r, "comment"),
            })
            .collect(),
        mtu: int(map, "mtu"),
        defroute: flag(map, "defroute", defaults.defroute),
        dhclient_args: text(map, "dhclient_args"),
        dns_servers: list("dns_servers")
            .into_iter()
            .filter_map(|s| s.as_scalar().map(|s| s.as_str().to_owned()))
            .collect(),
        domain: texts(map, "domain"),
        domain_is_list: matches!(map.get_node("domain"), Some(Node::Sequence(_))),
        nm_controlled: flag(map, "nm_controlled", defaults.nm_controlled),
        onboot: flag(map, "onboot", defaults.onboot),
    }
}

/// Builds the typed tree of `network_config` from a validated document.
pub fn network_config(root: &Node, aliases: &Aliases) -> NetworkConfig {
    build(
        root,
        &Naming {
            aliases,
            persist: None,
        },
    )
}

/// As [`network_config`], with `--persist-mapping`: aliased devices keep the alias as their
/// name and carry the MAC of the NIC it stands for (`facts` supplies the MACs).
pub fn network_config_persistent(
    root: &Node,
    aliases: &Aliases,
    facts: &dyn crate::nics::HostFacts,
) -> NetworkConfig {
    let macs = facts.nics().into_iter().map(|n| (n.name, n.mac)).collect();
    build(
        root,
        &Naming {
            aliases,
            persist: Some(macs),
        },
    )
}

/// How names are resolved.
struct Naming<'a> {
    aliases: &'a Aliases,
    /// NIC name → MAC, when aliases persist.
    persist: Option<std::collections::HashMap<String, String>>,
}

impl Naming<'_> {
    /// The device name for `name`, and its NIC's MAC when the alias persists.
    fn name(&self, name: &str) -> (String, Option<String>) {
        let resolved = self.aliases.resolve(name).into_owned();
        match &self.persist {
            Some(macs) if resolved != name => (name.to_owned(), macs.get(&resolved).cloned()),
            _ => (resolved, None),
        }
    }

    fn resolve(&self, name: &str) -> String {
        self.aliases.resolve(name).into_owned()
    }
}

fn build(root: &Node, naming: &Naming<'_>) -> NetworkConfig {
    let mut config = NetworkConfig::default();
    let items = root
        .as_mapping()
        .and_then(|m| m.get_sequence("network_config"))
        .map(|s| s.iter().collect::<Vec<_>>())
        .unwrap_or_default();
    for item in items {
        let Some(map) = item.as_mapping() else {
            continue;
        };
        if text(map, "type").as_deref() == Some("route_table") {
            config.route_tables.push(RouteTable {
                name: text(map, "name").unwrap_or_default(),
                table_id: int(map, "table_id").unwrap_or_default(),
            });
            continue;
        }
        config.devices.push(device(map, naming));
    }
    config
}

fn device(map: &MarkedMappingNode, naming: &Naming<'_>) -> Device {
    let type_name = text(map, "type").unwrap_or_default();
    let (name, hwaddr) = match text(map, "name") {
        Some(n) => {
            let (name, hwaddr) = naming.name(&n);
            (Some(name), hwaddr)
        }
        None => (None, None),
    };
    let ovs_extra = texts(map, "ovs_extra");
    let kind = match type_name.as_str() {
        "interface" => Kind::Interface {
            ethtool_opts: text(map, "ethtool_opts"),
            hotplug: flag(map, "hotplug", false),
            linkdelay: int(map, "linkdelay"),
            ovs_extra,
        },
        "vlan" => Kind::Vlan {
            vlan_id: int(map, "vlan_id").unwrap_or_default(),
            device: text(map, "device").map(|d| naming.resolve(&d)),
            ovs_options: text(map, "ovs_options"),
            ovs_extra,
        },
        "linux_bridge" => Kind::LinuxBridge,
        "linux_bond" => Kind::LinuxBond {
            bonding_options: text(map, "bonding_options"),
            ethtool_opts: text(map, "ethtool_opts"),
        },
        "team" => Kind::Team {
            bonding_options: text(map, "bonding_options"),
        },
        "ovs_bridge" | "ovs_user_bridge" => Kind::OvsBridge {
            user: type_name == "ovs_user_bridge",
            ovs_options: text(map, "ovs_options"),
            ovs_extra,
            fail_mode: if text(map, "ovs_fail_mode").as_deref() == Some("secure") {
                FailMode::Secure
            } else {
                FailMode::Standalone
            },
            ovs_internal: flag(map, "ovs_internal", true),
        },
        "ovs_bond" => Kind::OvsBond {
            ovs_options: text(map, "ovs_options"),
            ovs_extra,
        },
        "ovs_patch_port" => Kind::OvsPatchPort {
            bridge_name: text(map, "bridge_name").unwrap_or_default(),
            peer: text(map, "peer").unwrap_or_default(),
            ovs_options: texts(map, "ovs_options"),
            ovs_extra,
        },
        "ovs_tunnel" => Kind::OvsTunnel {
            tunnel_type: text(map, "tunnel_type").unwrap_or_default(),
            // Tunnel options are interface options in OVS's database.
            ovs_options: texts(map, "ovs_options")
                .into_iter()
                .map(|o| format!("options:{o}"))
                .collect(),
            ovs_extra,
        },
        "ib_interface" => Kind::IbInterface {
            ethtool_opts: text(map, "ethtool_opts"),
        },
        "ib_child_interface" => {
            let pkey = text(map, "pkey_id")
                .and_then(|p| {
                    p.parse::<u16>()
                        .ok()
                        .or_else(|| u16::from_str_radix(p.trim_start_matches("0x"), 16).ok())
                })
                .unwrap_or_default();
            Kind::IbChild {
                parent: text(map, "parent")
                    .map(|p| naming.resolve(&p))
                    .unwrap_or_default(),
                pkey: 0x8000 | pkey,
            }
        }
        "linux_tap" => Kind::LinuxTap,
        "ivs_bridge" => Kind::IvsBridge,
        "ivs_interface" => Kind::IvsInterface {
            vlan_id: int(map, "vlan_id").unwrap_or_default(),
        },
        "nfvswitch_bridge" => Kind::NfvswitchBridge {
            options: text(map, "options"),
        },
        "nfvswitch_internal" => Kind::NfvswitchInternal {
            vlan_id: int(map, "vlan_id").unwrap_or_default(),
        },
        "contrail_vrouter" => Kind::ContrailVrouter,
        other => Kind::Other {
            type_name: other.to_owned(),
        },
    };
    let name = match &kind {
        Kind::Vlan { vlan_id, .. } => format!("vlan{vlan_id}"),
        Kind::IbChild { parent, pkey } => format!("{parent}.{pkey:04x}"),
        Kind::IvsBridge => "ivs".to_owned(),
        Kind::NfvswitchBridge { .. } => "nfvswitch".to_owned(),
        Kind::IvsInterface { vlan_id } => format!("{}{vlan_id}", name.as_deref().unwrap_or("ivs")),
        Kind::NfvswitchInternal { vlan_id } => {
            format!("{}{vlan_id}", name.as_deref().unwrap_or("nfvswitch"))
        }
        _ => name.unwrap_or_default(),
    };
    let mut kind = kind;
    format_ovs_extra(&mut kind, &name);
    let mut common = common(map);
    if matches!(kind, Kind::IbChild { .. }) {
        common.nm_controlled = true;
    }
    let members = map
        .get_sequence("members")
        .map(|s| {
            s.iter()
                .filter_map(Node::as_mapping)
                .map(|m| device(m, naming))
                .collect()
        })
        .unwrap_or_default();
    Device {
        type_name,
        name,
        kind,
        common,
        primary: flag(map, "primary", false),
        hwaddr,
        members,
    }
}
