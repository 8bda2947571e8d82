//! The NetworkManager keyfile renderer:
//! `/etc/NetworkManager/system-connections/<id>.nmconnection`, mode 0600 (NetworkManager
//! ignores profiles others can read), in the shape nmstate's `gen_conf` writes: keys sorted
//! within each section, `;`-separated lists, a name-based (v5) UUID per profile so that an
//! unchanged configuration renders identical bytes.
//!
//! Covered: interfaces, InfiniBand interfaces and children, VLANs, Linux bonds, bridges and
//! teams with their ports; DHCP and static addresses for both families, DNS, search domains,
//! MTU, routes with tables, rules. OVS and the other switch types are render errors.

use std::collections::BTreeMap;

use crate::model::{dotted_vlan, Device, Kind, NetworkConfig, Route};
use crate::nics::HostFacts;
use crate::render::{RenderError, RenderedFile, Renderer};

const DIR: &str = "/etc/NetworkManager/system-connections";

/// Namespace of the profile UUIDs (a v5 UUID of the name `netconfig` in the URL namespace).
fn namespace() -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"netconfig")
}

/// NetworkManager keyfiles.
#[derive(Debug, Clone, Copy, Default)]
pub struct NmKeyfile;

/// A keyfile being built: sections in first-use order, keys sorted on output.
#[derive(Debug, Default)]
struct Keyfile(Vec<(&'static str, BTreeMap<String, String>)>);

impl Keyfile {
    fn set(&mut self, section: &'static str, key: impl Into<String>, value: impl Into<String>) {
        let index = match self.0.iter().position(|(s, _)| *s == section) {
            Some(index) => index,
            None => {
                self.0.push((section, BTreeMap::new()));
                self.0.len() - 1
            }
        };
        self.0[index].1.insert(key.into(), value.into());
    }

    fn text(&self) -> String {
        let sections: Vec<String> = self
            .0
            .iter()
            .map(|(name, keys)| {
                let body: String = keys.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                format!("[{name}]\n{body}")
            })
            .collect();
        sections.join("\n")
    }
}

/// What a member is to its controller.
#[derive(Debug, Clone, Default)]
struct Port {
    controller: Option<(String, &'static str)>,
    team_primary: bool,
}

impl Renderer for NmKeyfile {
    fn render(
        &self,
        config: &NetworkConfig,
        facts: &dyn HostFacts,
    ) -> Result<Vec<RenderedFile>, RenderError> {
        let tables = config.table_ids();
        let mut files = Vec::new();
        for device in &config.devices {
            add(device, &Port::default(), facts, &tables, &mut files)?;
        }
        Ok(files)
    }
}

fn add(
    device: &Device,
    port: &Port,
    facts: &dyn HostFacts,
    tables: &BTreeMap<String, u64>,
    out: &mut Vec<RenderedFile>,
) -> Result<(), RenderError> {
    let keyfile = profile(device, port, facts, tables)?;
    let path = format!("{DIR}/{}.nmconnection", device.name);
    let file = RenderedFile::exact(path, keyfile.text()).with_mode(0o600);
    match out.iter_mut().find(|f| f.path == file.path) {
        Some(existing) => *existing = file,
        None => out.push(file),
    }
    let kind = match device.kind {
        Kind::LinuxBond { .. } => Some("bond"),
        Kind::LinuxBridge => Some("bridge"),
        Kind::Team { .. } => Some("team"),
        _ => None,
    };
    for member in &device.members {
        let inner = Port {
            controller: kind.map(|k| (device.name.clone(), k)),
            team_primary: kind == Some("team") && member.primary,
        };
        add(member, &inner, facts, tables, out)?;
    }
    Ok(())
}

fn profile(
    device: &Device,
    port: &Port,
    facts: &dyn HostFacts,
    tables: &BTreeMap<String, u64>,
) -> Result<Keyfile, RenderError> {
    let common = &device.common;
    let name = device.name.as_str();
    if device.hwaddr.is_some() {
        // NetworkManager does not rename links; a .link file (networkd's udev) would.
        return Err(RenderError::unsupported(
            device,
            "persist_mapping with the nm-keyfile renderer",
        ));
    }
    let mut k = Keyfile::default();
    let primary_mac = || -> Result<Option<String>, RenderError> {
        let Some(primary) = device.members.iter().find(|m| m.primary) else {
            return Ok(None);
        };
        facts
            .nics()
            .into_iter()
            .find(|n| n.name == primary.name)
            .map(|n| Some(n.mac))
            .ok_or_else(|| RenderError::NoMac {
                device: primary.name.clone(),
            })
    };
    k.set("connection", "id", name);
    k.set(
        "connection",
        "uuid",
        uuid::Uuid::new_v5(&namespace(), name.as_bytes()).to_string(),
    );
    k.set("connection", "interface-name", name);
    k.set(
        "connection",
        "autoconnect",
        if common.onboot { "true" } else { "false" },
    );
    let type_name = match &device.kind {
        Kind::Interface {
            ethtool_opts,
            linkdelay,
            ..
        } => {
            if ethtool_opts.is_some() {
                return Err(RenderError::unsupported(
                    device,
                    "ethtool_opts with the nm-keyfile renderer",
                ));
            }
            if linkdelay.is_some() {
                return Err(RenderError::unsupported(
                    device,
                    "linkdelay with the nm-keyfile renderer",
                ));
            }
            if let Some((base, vid)) = dotted_vlan(name) {
                k.set("vlan", "flags", "1");
                k.set("vlan", "id", vid.to_string());
                k.set("vlan", "parent", base);
                "vlan"
            } else {
                if let Some(mtu) = common.mtu {
                    k.set("ethernet", "mtu", mtu.to_string());
                }
                "ethernet"
            }
        }
        Kind::Vlan {
            vlan_id,
            device: parent,
            ovs_options,
            ..
        } => {
            if ovs_options.is_some() {
                return Err(RenderError::unsupported(
                    device,
                    "ovs_options with the nm-keyfile renderer",
                ));
            }
            let parent = parent
                .clone()
                .or_else(|| port.controller.as_ref().map(|(c, _)| c.clone()))
                .ok_or_else(|| RenderError::unsupported(device, "a vlan without device"))?;
            k.set("vlan", "flags", "1");
            k.set("vlan", "id", vlan_id.to_string());
            k.set("vlan", "parent", parent);
            "vlan"
        }
        Kind::LinuxBond {
            bonding_options,
            ethtool_opts,
        } => {
            if ethtool_opts.is_some() {
                return Err(RenderError::unsupported(
                    device,
                    "ethtool_opts with the nm-keyfile renderer",
                ));
            }
            for option in bonding_options.as_deref().unwrap_or("").split_whitespace() {
                let (key, value) = option.split_once('=').ok_or_else(|| {
                    RenderError::unsupported(device, format!("bonding option {option:?}"))
                })?;
                k.set("bond", key, value);
            }
            if let Some(primary) = device.members.iter().find(|m| m.primary) {
                k.set("bond", "primary", primary.name.as_str());
            }
            k.set("connection", "autoconnect-slaves", "1");
            if let Some(mac) = primary_mac()? {
                k.set("ethernet", "cloned-mac-address", mac);
            }
            if let Some(mtu) = common.mtu {
                k.set("ethernet", "mtu", mtu.to_string());
            }
            "bond"
        }
        Kind::LinuxBridge => {
            // initscripts bridges run without STP; NetworkManager's default is on.
            k.set("bridge", "stp", "false");
            k.set("connection", "autoconnect-slaves", "1");
            if let Some(mac) = primary_mac()? {
                k.set("bridge", "mac-address", mac);
            }
            if let Some(mtu) = common.mtu {
                k.set("ethernet", "mtu", mtu.to_string());
            }
            "bridge"
        }
        Kind::Team { bonding_options } => {
            if let Some(config) = bonding_options {
                k.set("team", "config", config.as_str());
            }
            k.set("connection", "autoconnect-slaves", "1");
            if let Some(mac) = primary_mac()? {
                k.set("ethernet", "cloned-mac-address", mac);
            }
            "team"
        }
        Kind::IbInterface { ethtool_opts } => {
            if ethtool_opts.is_some() {
                return Err(RenderError::unsupported(
                    device,
                    "ethtool_opts with the nm-keyfile renderer",
                ));
            }
            k.set("infiniband", "transport-mode", "datagram");
            if let Some(mtu) = common.mtu {
                k.set("infiniband", "mtu", mtu.to_string());
            }
            "infiniband"
        }
        Kind::IbChild { parent, pkey } => {
            k.set("infiniband", "transport-mode", "datagram");
            k.set("infiniband", "p-key", format!("0x{pkey:04x}"));
            k.set("infiniband", "parent", parent.as_str());
            "infiniband"
        }
        _ => {
            return Err(RenderError::unsupported(
                device,
                format!("{} with the nm-keyfile renderer", device.type_name),
            ))
        }
    };
    k.set("connection", "type", type_name);
    if let Some((controller, kind)) = &port.controller {
        k.set("connection", "master", controller.as_str());
        k.set("connection", "slave-type", *kind);
        if port.team_primary {
            k.set("team-port", "config", "{\"prio\": 100}");
        }
        // A port has no addressing of its own.
        return Ok(k);
    }
    if common.dhclient_args.is_some() {
        return Err(RenderError::unsupported(
            device,
            "dhclient_args with the nm-keyfile renderer",
        ));
    }
    let v4: Vec<&str> = common.v4_addresses().collect();
    let v6: Vec<&str> = common.v6_addresses().collect();
    let v4_method = if common.use_dhcp {
        "auto"
    } else if !v4.is_empty() {
        "manual"
    } else {
        "disabled"
    };
    let v6_method = if common.use_dhcpv6 {
        "dhcp"
    } else if !v6.is_empty() {
        "manual"
    } else {
        "disabled"
    };
    family(&mut k, "ipv4", v4_method, &v4, device, false, tables)?;
    family(&mut k, "ipv6", v6_method, &v6, device, true, tables)?;
    Ok(k)
}

fn family(
    k: &mut Keyfile,
    section: &'static str,
    method: &str,
    addresses: &[&str],
    device: &Device,
    v6: bool,
    tables: &BTreeMap<String, u64>,
) -> Result<(), RenderError> {
    let common = &device.common;
    k.set(section, "method", method);
    if method == "disabled" {
        return Ok(());
    }
    for (index, address) in addresses.iter().enumerate() {
        k.set(section, format!("address{index}"), *address);
    }
    if method != "manual" {
        k.set(section, "dhcp-timeout", "2147483647");
    }
    let servers: Vec<&str> = common
        .dns_servers
        .iter()
        .map(String::as_str)
        .filter(|s| s.contains(':') == v6)
        .collect();
    if !servers.is_empty() {
        k.set(section, "dns", servers.join(";"));
    }
    if !common.domain.is_empty() {
        k.set(section, "dns-search", common.domain.join(";"));
    }
    if !servers.is_empty() || !common.domain.is_empty() {
        k.set(section, "dns-priority", "40");
    }
    if !common.defroute {
        k.set(section, "never-default", "true");
    }
    let routes: Vec<&Route> = common.routes.iter().filter(|r| r.is_v6() == v6).collect();
    for (index, route) in routes.iter().enumerate() {
        let destination = match (&route.destination, route.default) {
            (Some(d), false) => d.clone(),
            _ if v6 => "::/0".to_owned(),
            _ => "0.0.0.0/0".to_owned(),
        };
        let mut metric = route.metric;
        let mut table = route.table.clone();
        let mut words = route
            .route_options
            .as_deref()
            .unwrap_or("")
            .split_whitespace();
        let mut options: Vec<String> = Vec::new();
        while let Some(word) = words.next() {
            let mut value = || {
                words.next().map(str::to_owned).ok_or_else(|| {
                    RenderError::unsupported(
                        device,
                        format!("route option {word:?} without a value"),
                    )
                })
            };
            match word {
                "metric" => metric = value()?.parse().ok(),
                "table" => table = Some(value()?),
                "onlink" => options.push("onlink=true".to_owned()),
                "src" => options.push(format!("src={}", value()?)),
                other => {
                    return Err(RenderError::unsupported(
                        device,
                        format!("route option {other:?} with the nm-keyfile renderer"),
                    ))
                }
            }
        }
        let table_id = match table.as_deref() {
            None | Some("main") => 254,
            Some(t) => t
                .parse()
                .ok()
                .or_else(|| tables.get(t).copied())
                .ok_or_else(|| {
                    RenderError::unsupported(
                        device,
                        format!("route table {t:?} (not declared with route_table)"),
                    )
                })?,
        };
        let gateway = if route.next_hop == "self" {
            ""
        } else {
            route.next_hop.as_str()
        };
        let value = match (gateway, metric) {
            ("", None) => destination,
            (gw, None) => format!("{destination},{gw}"),
            (gw, Some(m)) => format!("{destination},{gw},{m}"),
        };
        k.set(section, format!("route{index}"), value);
        options.insert(0, format!("table={table_id}"));
        k.set(section, format!("route{index}_options"), options.join(","));
    }
    if !v6 {
        // NetworkManager wants a priority on every rule; the kernel would give rules added
        // without one descending priorities below 32766, as here.
        for (index, rule) in common.rules.iter().enumerate() {
            let mut text = rule.rule.trim_start_matches("add ").to_owned();
            if !["priority ", "pref ", "preference "]
                .iter()
                .any(|p| text.contains(p))
            {
                text = format!("priority {} {text}", 32765 - index);
            }
            for (name, id) in tables {
                text = text.replace(&format!("table {name}"), &format!("table {id}"));
            }
            k.set(section, format!("routing-rule{index}"), text);
        }
    }
    Ok(())
}
