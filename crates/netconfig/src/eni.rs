//! The ENI renderer: one `/etc/network/interfaces` as os-net-config 18.1.0 writes it for
//! `interface`, `vlan` and `ovs_bridge` (with interface and vlan ports), minus its defects:
//! IPv6 routes in `ip -6` syntax (D1), route metrics kept, `onboot: false` honoured, DNS
//! servers, search domains and rules rendered (D18); what ENI cannot express (route tables,
//! `defroute: false`, a VLAN port's own OVS options) is refused rather than dropped.

use crate::model::{netmask, Device, Kind, NetworkConfig, Route};
use crate::nics::HostFacts;
use crate::render::{RenderError, RenderedFile, Renderer};

const PATH: &str = "/etc/network/interfaces";

/// Debian's ifupdown `interfaces(5)` with the openvswitch-switch ifupdown scripts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Eni;

/// The bridge a port belongs to.
#[derive(Debug, Clone, Copy, Default)]
struct Port<'a> {
    bridge: Option<&'a str>,
}

impl Renderer for Eni {
    fn render(
        &self,
        config: &NetworkConfig,
        facts: &dyn HostFacts,
    ) -> Result<Vec<RenderedFile>, RenderError> {
        if let Some(table) = config.route_tables.first() {
            return Err(RenderError::Unsupported {
                device: table.name.clone(),
                what: "route_table".to_owned(),
            });
        }
        // Bridges first so that `ifup -a` brings them up before their ports; a repeated name
        // replaces the earlier stanza in its place.
        let mut bridges: Vec<(String, String)> = Vec::new();
        let mut interfaces: Vec<(String, String)> = Vec::new();
        for device in &config.devices {
            add(
                device,
                Port::default(),
                facts,
                &mut bridges,
                &mut interfaces,
            )?;
        }
        let content: String = bridges
            .into_iter()
            .chain(interfaces)
            .map(|(_, text)| text)
            .collect();
        Ok(vec![RenderedFile::exact(PATH.to_owned(), content)])
    }
}

fn put(list: &mut Vec<(String, String)>, name: &str, text: String) {
    match list.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = text,
        None => list.push((name.to_owned(), text)),
    }
}

fn add(
    device: &Device,
    port: Port<'_>,
    facts: &dyn HostFacts,
    bridges: &mut Vec<(String, String)>,
    interfaces: &mut Vec<(String, String)>,
) -> Result<(), RenderError> {
    let mut text = stanzas(device, port, facts)?;
    text.push_str(&routes(device)?);
    match device.kind {
        Kind::OvsBridge { user: false, .. } => {
            put(bridges, &device.name, text);
            for member in &device.members {
                match member.kind {
                    Kind::Interface { .. } | Kind::Vlan { .. } => {}
                    _ => {
                        return Err(RenderError::unsupported(
                            member,
                            format!("{} as an OVS port", member.type_name),
                        ))
                    }
                }
                add(
                    member,
                    Port {
                        bridge: Some(&device.name),
                    },
                    facts,
                    bridges,
                    interfaces,
                )?;
            }
        }
        Kind::Interface { .. } | Kind::Vlan { .. } => put(interfaces, &device.name, text),
        _ => return Err(RenderError::unsupported(device, device.type_name.clone())),
    }
    Ok(())
}

/// One stanza per address (v4 first), or one without an address.
fn stanzas(device: &Device, port: Port<'_>, facts: &dyn HostFacts) -> Result<String, RenderError> {
    let common = &device.common;
    if device.hwaddr.is_some() {
        return Err(RenderError::unsupported(
            device,
            "persist_mapping (a hardware address)",
        ));
    }
    if !common.defroute {
        return Err(RenderError::unsupported(device, "defroute: false"));
    }
    let addresses: Vec<(&str, bool)> = common
        .v4_addresses()
        .map(|a| (a, false))
        .chain(common.v6_addresses().map(|a| (a, true)))
        .collect();
    if addresses.is_empty() {
        return stanza(device, port, None, true, facts);
    }
    addresses
        .into_iter()
        .enumerate()
        .map(|(index, address)| stanza(device, port, Some(address), index == 0, facts))
        .collect()
}

fn stanza(
    device: &Device,
    port: Port<'_>,
    address: Option<(&str, bool)>,
    first: bool,
    facts: &dyn HostFacts,
) -> Result<String, RenderError> {
    let common = &device.common;
    let name = &device.name;
    let family = if address.is_some_and(|(_, v6)| v6) {
        "inet6"
    } else {
        "inet"
    };
    let method = if common.use_dhcp {
        "dhcp"
    } else if !common.addresses.is_empty() {
        "static"
    } else {
        "manual"
    };
    let iface = format!("iface {name} {family} {method}\n");
    let mut address_lines = String::new();
    if let Some((address, v6)) = address {
        let (ip, prefix) = address.split_once('/').unwrap_or((address, "32"));
        address_lines.push_str(&format!("    address {ip}\n"));
        if v6 {
            address_lines.push_str(&format!("    netmask {prefix}\n"));
        } else {
            address_lines.push_str(&format!(
                "    netmask {}\n",
                netmask(prefix.parse().unwrap_or(32))
            ));
        }
    }
    // `onboot: false` leaves the device out of `ifup -a` (upstream writes `auto` anyway).
    let auto = |out: &mut String| {
        if common.onboot {
            out.push_str(&format!("auto {name}\n"));
        }
    };
    let mut out = String::new();
    let mut ovs_extra: Vec<String> = Vec::new();
    match (&device.kind, port.bridge) {
        (
            Kind::OvsBridge {
                ovs_extra: extra, ..
            },
            _,
        ) => {
            auto(&mut out);
            out.push_str(&format!("allow-ovs {name}\n"));
            out.push_str(&iface);
            out.push_str(&address_lines);
            out.push_str("    ovs_type OVSBridge\n");
            if !device.members.is_empty() {
                let ports: Vec<&str> = device.members.iter().map(|m| m.name.as_str()).collect();
                out.push_str(&format!("    ovs_ports {}\n", ports.join(" ")));
                for member in &device.members {
                    if matches!(member.kind, Kind::Interface { .. }) {
                        out.push_str(&format!("    pre-up ip addr flush dev {}\n", member.name));
                    }
                }
                if let Some(primary) = device.members.iter().find(|m| m.primary) {
                    let mac = facts
                        .nics()
                        .into_iter()
                        .find(|n| n.name == primary.name)
                        .map(|n| n.mac)
                        .ok_or_else(|| RenderError::NoMac {
                            device: primary.name.clone(),
                        })?;
                    ovs_extra.push(format!("set bridge {name} other-config:hwaddr={mac}"));
                }
            }
            ovs_extra.extend(extra.iter().cloned());
        }
        (
            Kind::Vlan {
                vlan_id,
                ovs_options,
                ..
            },
            Some(bridge),
        ) => {
            if ovs_options.is_some() {
                return Err(RenderError::unsupported(
                    device,
                    "ovs_options on a VLAN port",
                ));
            }
            auto(&mut out);
            out.push_str(&format!("allow-{bridge} {name}\n"));
            out.push_str(&iface);
            out.push_str(&address_lines);
            out.push_str(&format!("    ovs_bridge {bridge}\n"));
            out.push_str("    ovs_type OVSIntPort\n");
            out.push_str(&format!("    ovs_options tag={vlan_id}\n"));
        }
        (_, Some(bridge)) => {
            auto(&mut out);
            out.push_str(&format!("allow-{bridge} {name}\n"));
            out.push_str(&iface);
            out.push_str(&address_lines);
            out.push_str(&format!("    ovs_bridge {bridge}\n"));
            out.push_str("    ovs_type OVSPort\n");
        }
        (
            Kind::Vlan {
                device: physdev, ..
            },
            None,
        ) => {
            auto(&mut out);
            out.push_str(&iface);
            out.push_str(&address_lines);
            let physdev = physdev
                .as_deref()
                .ok_or_else(|| RenderError::unsupported(device, "a vlan without device"))?;
            out.push_str(&format!("    vlan-raw-device {physdev}\n"));
        }
        (kind, None) => {
            if matches!(kind, Kind::Interface { hotplug: true, .. }) {
                out.push_str(&format!("allow-hotplug {name}\n"));
            } else {
                auto(&mut out);
            }
            out.push_str(&iface);
            out.push_str(&address_lines);
        }
    }
    if let Some(mtu) = common.mtu {
        out.push_str(&format!("    mtu {mtu}\n"));
    }
    if !ovs_extra.is_empty() {
        out.push_str(&format!("    ovs_extra {}\n", ovs_extra.join(" -- ")));
    }
    // Resolver settings and rules belong to the device, not to each address: once.
    if !first {
        return Ok(out);
    }
    if !common.dns_servers.is_empty() {
        out.push_str(&format!(
            "    dns-nameservers {}\n",
            common.dns_servers.join(" ")
        ));
    }
    if !common.domain.is_empty() {
        out.push_str(&format!("    dns-search {}\n", common.domain.join(" ")));
    }
    for rule in &common.rules {
        out.push_str(&format!(
            "    up ip rule add {}\n",
            rule.rule.trim_start_matches("add ")
        ));
        out.push_str(&format!(
            "    down ip rule del {}\n",
            rule.rule.trim_start_matches("add ")
        ));
    }
    Ok(out)
}

/// `up`/`down` lines for each route: IPv4 in net-tools syntax as upstream, IPv6 with `ip -6`.
fn routes(device: &Device) -> Result<String, RenderError> {
    let mut out = String::new();
    for route in &device.common.routes {
        if route.table.is_some() {
            return Err(RenderError::unsupported(
                device,
                "route tables in ENI routes",
            ));
        }
        let mut options = String::new();
        if let Some(metric) = route.metric {
            if !route
                .route_options
                .as_deref()
                .unwrap_or("")
                .contains("metric ")
            {
                options.push_str(&format!(" metric {metric}"));
            }
        }
        if let Some(extra) = &route.route_options {
            options.push(' ');
            options.push_str(extra);
        }
        // `self` means on-link: no gateway (D3), which net-tools' route cannot say.
        if route.next_hop == "self" {
            let destination = route
                .destination
                .clone()
                .unwrap_or_else(|| "default".to_owned());
            let family = if destination.contains(':') { " -6" } else { "" };
            for (verb, action) in [("up", "add"), ("down", "del")] {
                out.push_str(&format!(
                    "{verb} ip{family} route {action} {destination} dev {}{options}\n",
                    device.name
                ));
            }
            continue;
        }
        if route.is_v6() {
            let destination = v6_destination(route);
            out.push_str(&format!(
                "up ip -6 route add {destination} via {} dev {}{options}\n",
                route.next_hop, device.name
            ));
            out.push_str(&format!(
                "down ip -6 route del {destination} via {} dev {}{options}\n",
                route.next_hop, device.name
            ));
            continue;
        }
        let (network, prefix) = match (&route.destination, route.default) {
            (Some(destination), false) => {
                let (ip, prefix) = destination.split_once('/').unwrap_or((destination, "32"));
                (ip.to_owned(), prefix.parse().unwrap_or(32))
            }
            _ => ("0.0.0.0".to_owned(), 0),
        };
        let mask = netmask(prefix);
        for verb in ["up route add", "down route del"] {
            out.push_str(&format!(
                "{verb} -net {network} netmask {mask} gw {}{options}\n",
                route.next_hop
            ));
        }
    }
    Ok(out)
}

fn v6_destination(route: &Route) -> String {
    match (&route.destination, route.default) {
        (Some(destination), false) => destination.clone(),
        _ => "default".to_owned(),
    }
}
