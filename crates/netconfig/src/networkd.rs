//! The systemd-networkd renderer: `/etc/systemd/network/10-netconfig-<dev>.{netdev,network}`.
//!
//! Covered: interfaces, VLANs (by type or `<dev>.<vid>` name), Linux bonds with their
//! options mapped to `[Bond]` keys, Linux bridges, InfiniBand interfaces; static addresses,
//! DHCP, DNS, search domains, MTU, routes (tables by id or `route_table` name, metrics,
//! `self` as on-link) and rules (parsed from `ip rule` text). What networkd cannot do or
//! this renderer does not map (OVS and the other switch types, teams, ethtool options,
//! dhclient arguments, unknown bond or route options) is a [`RenderError`], never dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{dotted_vlan, Device, Kind, NetworkConfig, Route, Rule};
use crate::nics::HostFacts;
use crate::render::{RenderError, RenderedFile, Renderer};

const DIR: &str = "/etc/systemd/network";

/// systemd-networkd `.netdev` and `.network` files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Networkd;

/// What a member is to its parent.
#[derive(Debug, Clone, Default)]
struct Membership {
    bond: Option<String>,
    bridge: Option<String>,
    primary_of_bond: bool,
}

/// Named routing tables: the `route_table` entries and iproute2's reserved names.
fn table_id(
    tables: &BTreeMap<String, u64>,
    device: &Device,
    table: &str,
) -> Result<u64, RenderError> {
    if let Ok(id) = table.parse() {
        return Ok(id);
    }
    match table {
        "main" => Ok(254),
        "local" => Ok(255),
        "default" => Ok(253),
        name => tables.get(name).copied().ok_or_else(|| {
            RenderError::unsupported(
                device,
                format!("route table {name:?} (not declared with route_table)"),
            )
        }),
    }
}

impl Renderer for Networkd {
    fn render(
        &self,
        config: &NetworkConfig,
        _facts: &dyn HostFacts,
    ) -> Result<Vec<RenderedFile>, RenderError> {
        let tables = config.table_ids();
        // VLANs are declared on their parent's network.
        let mut vlans: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut flat: Vec<(&Device, Membership)> = Vec::new();
        for device in &config.devices {
            flatten(device, Membership::default(), &mut flat)?;
        }
        for (device, membership) in &flat {
            if let Some(parent) = vlan_parent(device, membership) {
                vlans.entry(parent).or_default().push(device.name.clone());
            }
        }
        let mut files = Vec::new();
        let mut rendered_networks = Vec::new();
        for (device, membership) in &flat {
            // The persisted alias: udev renames the NIC with this MAC.
            if let Some(mac) = &device.hwaddr {
                files.push(RenderedFile::exact(
                    format!("{DIR}/10-netconfig-{}.link", device.name),
                    format!(
                        "[Match]\nPermanentMACAddress={mac}\n\n[Link]\nName={}\n",
                        device.name
                    ),
                ));
            }
            if let Some(netdev) = netdev(device)? {
                files.push(RenderedFile::exact(
                    format!("{DIR}/10-netconfig-{}.netdev", device.name),
                    netdev,
                ));
            }
            let network = network(device, membership, vlans.get(&device.name), &tables)?;
            files.push(RenderedFile::exact(
                format!("{DIR}/10-netconfig-{}.network", device.name),
                network,
            ));
            rendered_networks.push(device.name.clone());
        }
        // Parents configured nowhere else still need a network carrying their VLANs.
        for (parent, children) in &vlans {
            if rendered_networks.contains(parent) {
                continue;
            }
            let mut text = format!("[Match]\nName={parent}\n\n[Network]\nLinkLocalAddressing=no\n");
            for child in children {
                let _ = writeln!(text, "VLAN={child}");
            }
            files.push(RenderedFile::exact(
                format!("{DIR}/10-netconfig-{parent}.network"),
                text,
            ));
        }
        Ok(files)
    }
}

fn flatten<'a>(
    device: &'a Device,
    membership: Membership,
    out: &mut Vec<(&'a Device, Membership)>,
) -> Result<(), RenderError> {
    match &device.kind {
        Kind::Interface { .. }
        | Kind::Vlan { .. }
        | Kind::LinuxBond { .. }
        | Kind::LinuxBridge
        | Kind::IbInterface { .. } => {}
        _ => {
            return Err(RenderError::unsupported(
                device,
                format!("{} with the networkd renderer", device.type_name),
            ))
        }
    }
    let primary_name = match &device.kind {
        Kind::LinuxBond {
            bonding_options, ..
        } => bonding_options
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .find_map(|o| o.strip_prefix("primary="))
            .map(str::to_owned)
            .or_else(|| {
                device
                    .members
                    .iter()
                    .find(|m| m.primary)
                    .map(|m| m.name.clone())
            }),
        _ => None,
    };
    out.push((device, membership));
    for member in &device.members {
        let inner = match &device.kind {
            Kind::LinuxBond { .. } => Membership {
                bond: Some(device.name.clone()),
                bridge: None,
                primary_of_bond: primary_name.as_deref() == Some(member.name.as_str()),
            },
            Kind::LinuxBridge => Membership {
                bridge: Some(device.name.clone()),
                ..Membership::default()
            },
            _ => Membership::default(),
        };
        flatten(member, inner, out)?;
    }
    Ok(())
}

/// The link a VLAN sits on: its `device`, the bond it is a member of, or the base of a
/// `<dev>.<vid>` name.
fn vlan_parent(device: &Device, membership: &Membership) -> Option<String> {
    match &device.kind {
        Kind::Vlan {
            device: physdev, ..
        } => physdev.clone().or_else(|| membership.bond.clone()),
        Kind::Interface { .. } => dotted_vlan(&device.name).map(|(base, _)| base.to_owned()),
        _ => None,
    }
}

fn netdev(device: &Device) -> Result<Option<String>, RenderError> {
    let mut text = format!("[NetDev]\nName={}\n", device.name);
    if let Some(mtu) = device.common.mtu {
        let _ = writeln!(text, "MTUBytes={mtu}");
    }
    match &device.kind {
        Kind::Vlan { vlan_id, .. } => {
            let _ = write!(text, "Kind=vlan\n\n[VLAN]\nId={vlan_id}\n");
        }
        Kind::Interface { .. } => match dotted_vlan(&device.name) {
            Some((_, id)) => {
                let _ = write!(text, "Kind=vlan\n\n[VLAN]\nId={id}\n");
            }
            None => return Ok(None),
        },
        Kind::LinuxBridge => text.push_str("Kind=bridge\n"),
        Kind::LinuxBond {
            bonding_options, ..
        } => {
            text.push_str("Kind=bond\n\n[Bond]\n");
            text.push_str(&bond_section(
                device,
                bonding_options.as_deref().unwrap_or(""),
            )?);
        }
        _ => return Ok(None),
    }
    Ok(Some(text))
}

/// Kernel bonding options as `[Bond]` keys.
fn bond_section(device: &Device, options: &str) -> Result<String, RenderError> {
    let mut out = String::new();
    for option in options.split_whitespace() {
        let (key, value) = option.split_once('=').ok_or_else(|| {
            RenderError::unsupported(device, format!("bonding option {option:?}"))
        })?;
        let line = match key {
            "mode" => {
                let mode = match value {
                    "0" => "balance-rr",
                    "1" => "active-backup",
                    "2" => "balance-xor",
                    "3" => "broadcast",
                    "4" => "802.3ad",
                    "5" => "balance-tlb",
                    "6" => "balance-alb",
                    named => named,
                };
                format!("Mode={mode}")
            }
            "miimon" => format!("MIIMonitorSec={value}ms"),
            "updelay" => format!("UpDelaySec={value}ms"),
            "downdelay" => format!("DownDelaySec={value}ms"),
            "lacp_rate" => format!(
                "LACPTransmitRate={}",
                if value == "1" {
                    "fast"
                } else if value == "0" {
                    "slow"
                } else {
                    value
                }
            ),
            "xmit_hash_policy" => format!("TransmitHashPolicy={value}"),
            "ad_select" => format!("AdSelect={value}"),
            "fail_over_mac" => format!(
                "FailOverMACPolicy={}",
                match value {
                    "0" => "none",
                    "1" => "active",
                    "2" => "follow",
                    named => named,
                }
            ),
            "min_links" => format!("MinLinks={value}"),
            // Set on the member's network instead.
            "primary" => continue,
            other => {
                return Err(RenderError::unsupported(
                    device,
                    format!("bonding option {other}"),
                ))
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

fn network(
    device: &Device,
    membership: &Membership,
    vlans: Option<&Vec<String>>,
    tables: &BTreeMap<String, u64>,
) -> Result<String, RenderError> {
    let common = &device.common;
    match &device.kind {
        Kind::Interface {
            ethtool_opts: Some(_),
            ..
        }
        | Kind::LinuxBond {
            ethtool_opts: Some(_),
            ..
        }
        | Kind::IbInterface {
            ethtool_opts: Some(_),
        } => {
            return Err(RenderError::unsupported(
                device,
                "ethtool_opts with the networkd renderer",
            ));
        }
        _ => {}
    }
    if common.dhclient_args.is_some() {
        return Err(RenderError::unsupported(
            device,
            "dhclient_args with the networkd renderer",
        ));
    }
    if common.nm_controlled {
        return Err(RenderError::unsupported(
            device,
            "nm_controlled: true with the networkd renderer",
        ));
    }
    let mut text = format!("[Match]\nName={}\n", device.name);
    let mut link = String::new();
    if let Some(mtu) = common.mtu {
        let _ = writeln!(link, "MTUBytes={mtu}");
    }
    if !common.onboot {
        link.push_str("ActivationPolicy=manual\n");
    }
    if !link.is_empty() {
        let _ = write!(text, "\n[Link]\n{link}");
    }
    text.push_str("\n[Network]\n");
    let is_port = membership.bond.is_some() || membership.bridge.is_some();
    let addressed = common.use_dhcp || common.use_dhcpv6 || !common.addresses.is_empty();
    text.push_str(if is_port || !addressed {
        "LinkLocalAddressing=no\n"
    } else {
        "LinkLocalAddressing=ipv6\n"
    });
    match (common.use_dhcp, common.use_dhcpv6) {
        (true, true) => text.push_str("DHCP=yes\n"),
        (true, false) => text.push_str("DHCP=ipv4\n"),
        (false, true) => text.push_str("DHCP=ipv6\n"),
        (false, false) => {}
    }
    for address in &common.addresses {
        let _ = writeln!(text, "Address={address}");
    }
    for server in &common.dns_servers {
        let _ = writeln!(text, "DNS={server}");
    }
    if !common.domain.is_empty() {
        let _ = writeln!(text, "Domains={}", common.domain.join(" "));
    }
    if matches!(device.kind, Kind::LinuxBond { .. } | Kind::LinuxBridge) {
        text.push_str("ConfigureWithoutCarrier=yes\n");
    }
    if let Some(bond) = &membership.bond {
        let _ = writeln!(text, "Bond={bond}");
        if membership.primary_of_bond {
            text.push_str("PrimarySlave=true\n");
        }
    }
    if let Some(bridge) = &membership.bridge {
        let _ = writeln!(text, "Bridge={bridge}");
    }
    for vlan in vlans.into_iter().flatten() {
        let _ = writeln!(text, "VLAN={vlan}");
    }
    if !common.defroute && common.use_dhcp {
        text.push_str("\n[DHCPv4]\nUseGateway=no\n");
    }
    for route in &common.routes {
        if !common.defroute && route.default {
            continue;
        }
        text.push_str(&route_section(device, route, tables)?);
    }
    for rule in &common.rules {
        text.push_str(&rule_section(device, rule, tables)?);
    }
    Ok(text)
}

fn route_section(
    device: &Device,
    route: &Route,
    tables: &BTreeMap<String, u64>,
) -> Result<String, RenderError> {
    let mut text = String::from("\n[Route]\n");
    let destination = match (&route.destination, route.default) {
        (Some(d), false) => d.clone(),
        _ if route.is_v6() => "::/0".to_owned(),
        _ => "0.0.0.0/0".to_owned(),
    };
    let _ = writeln!(text, "Destination={destination}");
    if route.next_hop == "self" {
        text.push_str("Scope=link\n");
    } else {
        let _ = writeln!(text, "Gateway={}", route.next_hop);
    }
    let mut metric = route.metric;
    let mut table = route.table.clone();
    let mut extra = String::new();
    let options = route.route_options.as_deref().unwrap_or("");
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let mut value = || {
            words.next().map(str::to_owned).ok_or_else(|| {
                RenderError::unsupported(device, format!("route option {word:?} without a value"))
            })
        };
        match word {
            "metric" => {
                metric =
                    Some(value()?.parse().map_err(|_| {
                        RenderError::unsupported(device, "a non-numeric route metric")
                    })?)
            }
            "table" => table = Some(value()?),
            "onlink" => extra.push_str("GatewayOnLink=yes\n"),
            "src" => {
                let _ = writeln!(extra, "PreferredSource={}", value()?);
            }
            "scope" => {
                let _ = writeln!(extra, "Scope={}", value()?);
            }
            "proto" => {
                let _ = writeln!(extra, "Protocol={}", value()?);
            }
            other => {
                return Err(RenderError::unsupported(
                    device,
                    format!("route option {other:?} with the networkd renderer"),
                ))
            }
        }
    }
    if let Some(metric) = metric {
        let _ = writeln!(text, "Metric={metric}");
    }
    if let Some(table) = table {
        let _ = writeln!(text, "Table={}", table_id(tables, device, &table)?);
    }
    text.push_str(&extra);
    Ok(text)
}

/// An `ip rule` line as a `[RoutingPolicyRule]` section.
fn rule_section(
    device: &Device,
    rule: &Rule,
    tables: &BTreeMap<String, u64>,
) -> Result<String, RenderError> {
    let mut text = String::from("\n[RoutingPolicyRule]\n");
    let mut words = rule.rule.split_whitespace().peekable();
    if words.peek() == Some(&"add") {
        words.next();
    }
    while let Some(word) = words.next() {
        let mut value = || {
            words.next().map(str::to_owned).ok_or_else(|| {
                RenderError::unsupported(
                    device,
                    format!("rule {:?}: {word} without a value", rule.rule),
                )
            })
        };
        let line = match word {
            "from" => format!("From={}", value()?),
            "to" => format!("To={}", value()?),
            "iif" => format!("IncomingInterface={}", value()?),
            "oif" => format!("OutgoingInterface={}", value()?),
            "table" | "lookup" => format!("Table={}", table_id(tables, device, &value()?)?),
            "priority" | "pref" | "preference" => format!("Priority={}", value()?),
            "fwmark" => format!("FirewallMark={}", value()?),
            "tos" | "dsfield" => format!("TypeOfService={}", value()?),
            "not" => "Invert=yes".to_owned(),
            "blackhole" | "unreachable" | "prohibit" => format!("Type={word}"),
            other => {
                return Err(RenderError::unsupported(
                    device,
                    format!("rule {:?}: {other:?} with the networkd renderer", rule.rule),
                ))
            }
        };
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}
