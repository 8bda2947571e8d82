//! The device types os-net-config 18.1.0 accepts, as data: for each type its fields, what
//! kind of value each takes, which are required, and which types it takes as members.

/// What a field's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Any scalar, kept as text.
    Text,
    /// `true`/`false`, or one of os-net-config's boolean words.
    Bool,
    /// A non-negative integer.
    Int,
    /// A VLAN id, 1–4094.
    VlanId,
    /// `[{ip_netmask: CIDR}, …]`.
    Addresses,
    /// `[{next_hop|nexthop, ip_netmask|destination|default, route_options, table, metric}, …]`.
    Routes,
    /// `[{rule, comment}, …]`.
    Rules,
    /// A list of IP addresses.
    DnsServers,
    /// A domain name or a list of them.
    Domain,
    /// Text or a non-empty list of text.
    TextOrList,
    /// A list of text.
    TextList,
    /// `standalone` or `secure`.
    FailMode,
    /// `vxlan` or `gre`.
    TunnelType,
    /// An integer, or text read as base 10 then base 16.
    Pkey,
    /// A MAC address.
    Mac,
    /// Member devices of the types listed.
    Members(&'static [&'static str]),
    /// Free-form (dcb's dscp2prio and the like): any value.
    Any,
}

/// One device type.
#[derive(Debug, Clone, Copy)]
pub struct DeviceType {
    pub name: &'static str,
    /// Fields with their kinds, besides `type` and the common fields.
    pub fields: &'static [(&'static str, FieldKind)],
    pub required: &'static [&'static str],
    /// Whether the common fields include `onboot` and `domain`.
    pub onboot_and_domain: bool,
    /// Whether the 14 common fields apply at all (not for route_table, dcb and the like).
    pub common: bool,
}

/// A list of fields with their kinds.
type Fields = &'static [(&'static str, FieldKind)];

/// Fields every device takes (os-net-config's `_BaseOpts`).
pub const COMMON_FIELDS: &[(&str, FieldKind)] = &[
    ("use_dhcp", FieldKind::Bool),
    ("use_dhcpv6", FieldKind::Bool),
    ("addresses", FieldKind::Addresses),
    ("routes", FieldKind::Routes),
    ("rules", FieldKind::Rules),
    ("mtu", FieldKind::Int),
    ("defroute", FieldKind::Bool),
    ("dhclient_args", FieldKind::Text),
    ("dns_servers", FieldKind::DnsServers),
    ("nm_controlled", FieldKind::Bool),
];

/// Common fields that `linux_tap` and the contrail types lack.
pub const ONBOOT_AND_DOMAIN: &[(&str, FieldKind)] =
    &[("onboot", FieldKind::Bool), ("domain", FieldKind::Domain)];

/// Every member may say it is its parent's primary.
pub const MEMBER_FIELDS: &[(&str, FieldKind)] = &[("primary", FieldKind::Bool)];

use FieldKind::*;

const LINUX_BRIDGE_MEMBERS: &[&str] = &["interface", "vlan", "linux_bond"];
const LINUX_BOND_MEMBERS: &[&str] = &["interface", "vlan", "sriov_vf", "sriov_pf"];
const TEAM_MEMBERS: &[&str] = &["interface", "vlan"];
const OVS_BRIDGE_MEMBERS: &[&str] = &[
    "interface",
    "vlan",
    "linux_bond",
    "team",
    "ovs_bond",
    "ovs_tunnel",
    "ovs_patch_port",
    "sriov_vf",
    "sriov_pf",
];
const OVS_USER_BRIDGE_MEMBERS: &[&str] = &[
    "interface",
    "vlan",
    "ovs_bond",
    "ovs_patch_port",
    "ovs_tunnel",
    "ovs_dpdk_bond",
    "ovs_dpdk_port",
];
const OVS_BOND_MEMBERS: &[&str] = &["interface", "vlan", "sriov_vf", "sriov_pf"];
const DPDK_PORT_MEMBERS: &[&str] = &["interface", "sriov_vf"];
const DPDK_BOND_MEMBERS: &[&str] = &["ovs_dpdk_port"];
const IVS_MEMBERS: &[&str] = &["interface", "ivs_interface"];
const NFVSWITCH_MEMBERS: &[&str] = &["interface", "vlan", "nfvswitch_internal"];
const VPP_BOND_MEMBERS: &[&str] = &["vpp_interface"];
const CONTRAIL_MEMBERS: &[&str] = &["interface", "vlan", "linux_bond"];
const ANY_MEMBER: &[&str] = &[
    "interface",
    "vlan",
    "linux_bond",
    "team",
    "sriov_vf",
    "sriov_pf",
];

const fn device(
    name: &'static str,
    fields: &'static [(&'static str, FieldKind)],
    required: &'static [&'static str],
) -> DeviceType {
    DeviceType {
        name,
        fields,
        required,
        onboot_and_domain: true,
        common: true,
    }
}

const fn without_onboot(mut t: DeviceType) -> DeviceType {
    t.onboot_and_domain = false;
    t
}

const fn bare(mut t: DeviceType) -> DeviceType {
    t.onboot_and_domain = false;
    t.common = false;
    t
}

/// The device types of 18.1.0's schema, in its order.
pub const DEVICE_TYPES: &[DeviceType] = &[
    device(
        "interface",
        &[
            ("name", Text),
            ("ethtool_opts", Text),
            ("hotplug", Bool),
            ("linkdelay", Int),
            ("dcb", Any),
            ("ovs_extra", TextOrList),
        ],
        &["name"],
    ),
    device(
        "vlan",
        &[
            ("vlan_id", VlanId),
            ("device", Text),
            ("ovs_options", Text),
            ("ovs_extra", TextOrList),
        ],
        &["vlan_id"],
    ),
    device(
        "linux_bridge",
        &[("name", Text), ("members", Members(LINUX_BRIDGE_MEMBERS))],
        &["name", "members"],
    ),
    device(
        "linux_bond",
        &[
            ("name", Text),
            ("members", Members(LINUX_BOND_MEMBERS)),
            ("bonding_options", Text),
            ("ethtool_opts", Text),
        ],
        &["name", "members"],
    ),
    device(
        "team",
        &[
            ("name", Text),
            ("members", Members(TEAM_MEMBERS)),
            ("bonding_options", Text),
        ],
        &["name", "members"],
    ),
    device(
        "ovs_bridge",
        &[
            ("name", Text),
            ("members", Members(OVS_BRIDGE_MEMBERS)),
            ("ovs_options", Text),
            ("ovs_extra", TextOrList),
            ("ovs_fail_mode", FailMode),
        ],
        &["name"],
    ),
    device(
        "ovs_user_bridge",
        &[
            ("name", Text),
            ("members", Members(OVS_USER_BRIDGE_MEMBERS)),
            ("ovs_options", Text),
            ("ovs_extra", TextOrList),
            ("ovs_fail_mode", FailMode),
            ("ovs_internal", Bool),
        ],
        &["name", "members"],
    ),
    device(
        "ovs_bond",
        &[
            ("name", Text),
            ("members", Members(OVS_BOND_MEMBERS)),
            ("ovs_options", Text),
            ("ovs_extra", TextOrList),
        ],
        &["name", "members"],
    ),
    device(
        "ovs_patch_port",
        &[
            ("name", Text),
            ("bridge_name", Text),
            ("peer", Text),
            ("ovs_options", TextList),
            ("ovs_extra", TextOrList),
        ],
        &["name", "bridge_name", "peer"],
    ),
    device(
        "ovs_tunnel",
        &[
            ("name", Text),
            ("tunnel_type", TunnelType),
            ("ovs_options", TextList),
            ("ovs_extra", TextOrList),
        ],
        &["name", "tunnel_type"],
    ),
    device(
        "ovs_dpdk_port",
        &[
            ("name", Text),
            ("members", Members(DPDK_PORT_MEMBERS)),
            ("driver", Text),
            ("ovs_options", Text),
            ("ovs_extra", TextOrList),
            ("rx_queue", Int),
            ("rx_queue_size", Int),
            ("tx_queue_size", Int),
        ],
        &["name", "members"],
    ),
    device(
        "ovs_dpdk_bond",
        &[
            ("name", Text),
            ("members", Members(DPDK_BOND_MEMBERS)),
            ("ovs_options", Text),
            ("ovs_extra", TextOrList),
            ("rx_queue", Int),
            ("rx_queue_size", Int),
            ("tx_queue_size", Int),
            ("dcb", Any),
        ],
        &["name", "members"],
    ),
    device(
        "sriov_pf",
        &[
            ("name", Text),
            ("numvfs", Int),
            ("drivers_autoprobe", Bool),
            ("promisc", Bool),
            ("hotplug", Bool),
            ("ethtool_opts", Text),
            ("link_mode", Text),
            ("vdpa", Bool),
            ("vdpa_queues", Int),
            ("steering_mode", Text),
            ("dcb", Any),
        ],
        &["name", "numvfs"],
    ),
    device(
        "sriov_vf",
        &[
            ("device", Text),
            ("vfid", Int),
            ("vlan_id", VlanId),
            ("qos", Int),
            ("min_tx_rate", Int),
            ("max_tx_rate", Int),
            ("hotplug", Bool),
            ("spoofcheck", Bool),
            ("trust", Bool),
            ("promisc", Bool),
            ("macaddr", Mac),
            ("state", Text),
            ("ethtool_opts", Text),
            ("ovs_extra", TextOrList),
        ],
        &["device", "vfid"],
    ),
    device(
        "ib_interface",
        &[("name", Text), ("ethtool_opts", Text)],
        &["name"],
    ),
    device(
        "ib_child_interface",
        &[("parent", Text), ("pkey_id", Pkey)],
        &["parent", "pkey_id"],
    ),
    device(
        "ivs_bridge",
        &[("members", Members(IVS_MEMBERS))],
        &["members"],
    ),
    device(
        "ivs_interface",
        &[("vlan_id", VlanId), ("name", Text)],
        &["vlan_id"],
    ),
    device(
        "nfvswitch_bridge",
        &[("options", Text), ("members", Members(NFVSWITCH_MEMBERS))],
        &["options", "members"],
    ),
    device(
        "nfvswitch_internal",
        &[("vlan_id", VlanId), ("name", Text)],
        &["vlan_id"],
    ),
    device(
        "vpp_interface",
        &[("name", Text), ("uio_driver", Text), ("options", Text)],
        &["name"],
    ),
    device(
        "vpp_bond",
        &[
            ("name", Text),
            ("uio_driver", Text),
            ("options", Text),
            ("members", Members(VPP_BOND_MEMBERS)),
            ("bonding_options", Text),
        ],
        &["name"],
    ),
    without_onboot(device(
        "contrail_vrouter",
        &[("name", Text), ("members", Members(CONTRAIL_MEMBERS))],
        &["name", "members"],
    )),
    without_onboot(device(
        "contrail_vrouter_dpdk",
        &[
            ("name", Text),
            ("members", Members(ANY_MEMBER)),
            ("bond_mode", Text),
            ("bond_policy", Text),
            ("driver", Text),
            ("cpu_list", Text),
            ("vlan_id", VlanId),
        ],
        &["name", "members"],
    )),
    without_onboot(device("linux_tap", &[("name", Text)], &["name"])),
    bare(device(
        "route_table",
        &[("name", Text), ("table_id", Int)],
        &["name", "table_id"],
    )),
    bare(device(
        "dcb",
        &[("device", Text), ("dscp2prio", Any)],
        &["device", "dscp2prio"],
    )),
];

/// The type named `name`.
pub fn device_type(name: &str) -> Option<&'static DeviceType> {
    DEVICE_TYPES.iter().find(|t| t.name == name)
}

/// The kind of `field` on `device` (as a member when `member` is set), if it takes it.
pub fn field_kind(device: &DeviceType, field: &str, member: bool) -> Option<FieldKind> {
    let own = device.fields.iter();
    let (common, onboot) = common_fields(device);
    let primary = if member || has_primary(device) {
        MEMBER_FIELDS
    } else {
        &[]
    };
    own.chain(common)
        .chain(onboot)
        .chain(primary)
        .find(|(name, _)| *name == field)
        .map(|(_, kind)| *kind)
}

/// Every field name `device` takes, for suggestions.
pub fn field_names(device: &DeviceType) -> impl Iterator<Item = &'static str> {
    let (common, onboot) = common_fields(device);
    device
        .fields
        .iter()
        .chain(common)
        .chain(onboot)
        .chain(MEMBER_FIELDS)
        .map(|(name, _)| *name)
}

/// The common fields `device` takes: the 14 of every device, and `onboot`/`domain`.
fn common_fields(device: &DeviceType) -> (Fields, Fields) {
    let common = if device.common { COMMON_FIELDS } else { &[] };
    let onboot = if device.onboot_and_domain {
        ONBOOT_AND_DOMAIN
    } else {
        &[]
    };
    (common, onboot)
}

/// Types whose schema lists `primary` even at the top level.
fn has_primary(device: &DeviceType) -> bool {
    matches!(
        device.name,
        "interface"
            | "vlan"
            | "ovs_patch_port"
            | "ovs_tunnel"
            | "ovs_dpdk_port"
            | "sriov_pf"
            | "sriov_vf"
            | "ib_interface"
            | "ib_child_interface"
            | "ivs_interface"
            | "nfvswitch_internal"
    )
}
