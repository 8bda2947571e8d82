//! TripleO's `instackenv.json` / `nodes.json` (spec §2.1): `{"nodes": [ … ]}`, read as
//! Python's `json` reads it. Locations are field paths (`nodes[2].pm_addr`).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{fallback_uuid, resolve_driver, Ctx, Doc, DocKind, Entry, Fields, Location};
use crate::node::{driver_prefix, is_secret_key, Node, Port, Value, INTERFACE_FIELDS};
use crate::secret::Secret;

/// The `physical_network` of a port that does not say.
const DEFAULT_PHYSICAL_NETWORK: &str = "ctlplane";
const DEFAULT_RESOURCE_CLASS: &str = "baremetal";
/// Top-level keys of old instack environments, accepted and ignored.
const OLD_TOP_LEVEL: &[&str] = &[
    "arch",
    "host-ip",
    "power_manager",
    "seed-ip",
    "ssh-key",
    "ssh-user",
];

pub(super) fn parse(ctx: &mut Ctx, text: &str) -> Vec<Entry> {
    let json: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let full = e.to_string();
            let message = full
                .rsplit_once(" at line ")
                .map_or(full.as_str(), |(m, _)| m);
            ctx.error(
                Location {
                    line: Some(e.line()),
                    column: Some(e.column()),
                    field: None,
                },
                format!("invalid JSON: {message}"),
            );
            return Vec::new();
        }
    };
    let doc = Doc::from_json(&json);
    doc.collect_secrets(ctx);
    let Some(top) = doc.as_map() else {
        ctx.error(
            Location::default(),
            "must be a JSON object with a \"nodes\" list",
        );
        return Vec::new();
    };
    for (key, _) in top {
        if key != "nodes" && !OLD_TOP_LEVEL.contains(&key.as_str()) {
            ctx.warn(
                Location::field(key.clone()),
                "unknown top-level field, ignored",
            );
        }
    }
    let Some(nodes) = doc.get("nodes") else {
        ctx.error(Location::field("nodes"), "missing");
        return Vec::new();
    };
    let Some(items) = nodes.as_list() else {
        ctx.error(Location::field("nodes"), "must be a list");
        return Vec::new();
    };
    let mut fields = Fields {
        ctx,
        file_has_lines: false,
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, d)| parse_node(&mut fields, i, d))
        .collect()
}

fn parse_node(f: &mut Fields<'_>, i: usize, doc: &Doc) -> Option<Entry> {
    let base = format!("nodes[{i}]");
    let Some(map) = doc.as_map() else {
        let shown = doc.shown(f.ctx);
        f.error(&base, Some(doc), format!("must be an object, got {shown}"));
        return None;
    };

    let driver = match doc.get("pm_type") {
        None => {
            f.error(
                &format!("{base}.pm_type"),
                None,
                "pm_type (ironic driver to use) is required",
            );
            None
        }
        Some(d) => {
            let path = format!("{base}.pm_type");
            f.string(&path, d)
                .and_then(|name| match resolve_driver(f.ctx, &name, "pm_type") {
                    Ok((driver, warning)) => {
                        if let Some(w) = warning {
                            f.warn(&path, Some(d), w);
                        }
                        Some(driver)
                    }
                    Err(message) => {
                        f.error(&path, Some(d), message);
                        None
                    }
                })
        }
    };
    let prefix = driver.as_deref().and_then(driver_prefix);
    let mut node = Node::new(Uuid::nil(), driver.clone().unwrap_or_default());
    let mut uuid = None;
    let mut capabilities = None;
    let mut profile = None;
    let mut platform = None;
    let mut pm: BTreeMap<&str, &Doc> = BTreeMap::new();
    let mut has_ports = false;
    let mut legacy_macs = None;

    for (key, v) in map {
        let path = format!("{base}.{key}");
        match key.as_str() {
            "pm_type" | "_comment" => {}
            "pm_addr" | "pm_user" | "pm_password" | "pm_port" | "pm_system_id" => {
                pm.insert(key, v);
            }
            k if k.starts_with("pm_") => f.warn(&path, Some(v), "unknown field, dropped"),
            "ports" => {
                has_ports = true;
                node.ports.extend(ports(f, &path, v));
            }
            "mac" => legacy_macs = Some((path, v)),
            "cpu" => {
                node.properties.cpus = f.unsigned(&path, v, u32::MAX.into()).map(|x| x as u32);
            }
            "memory" => node.properties.memory_mb = f.unsigned(&path, v, u64::MAX),
            "disk" => node.properties.local_gb = f.unsigned(&path, v, u64::MAX),
            "arch" => node.properties.cpu_arch = f.string(&path, v),
            "capabilities" => capabilities = f.capabilities(&path, v),
            "profile" => profile = f.string(&path, v),
            "root_device" => node.properties.root_device = f.value_map(&path, v),
            "name" => node.name = f.name(&path, v),
            "uuid" => uuid = f.uuid(&path, v),
            "resource_class" => node.resource_class = f.string(&path, v),
            "conductor_group" => node.conductor_group = f.string(&path, v),
            k if INTERFACE_FIELDS.contains(&k) => {
                if let Some(s) = f.string(&path, v) {
                    node.interfaces.insert(k.to_owned(), s);
                }
            }
            "kernel_id" | "ramdisk_id" => {
                if let Some(s) = f.string(&path, v) {
                    let what = key.trim_end_matches("_id");
                    for purpose in ["deploy", "rescue"] {
                        node.driver_info
                            .insert(format!("{purpose}_{what}"), Value::Text(s.clone()));
                    }
                }
            }
            "platform" => platform = Some((path.clone(), f.string(&path, v))),
            k if prefix.is_some_and(|p| k.strip_prefix(p).is_some_and(|r| r.starts_with('_'))) => {
                node.driver_info
                    .insert(k.to_owned(), v.to_value(is_secret_key(k)));
            }
            _ => f.error(&path, Some(v), "unknown field"),
        }
    }

    if let Some((path, v)) = legacy_macs {
        if has_ports {
            f.error(&path, Some(v), "use either \"ports\" or \"mac\", not both");
        } else {
            f.warn(
                &path,
                Some(v),
                "\"mac\" is deprecated: converted to ports (use \"ports\" with \"address\")",
            );
            match v.as_list() {
                Some(items) => {
                    for (j, m) in items.iter().enumerate() {
                        if let Some(mac) = f.mac(&format!("{path}[{j}]"), m) {
                            node.ports.push(Port::new(mac));
                        }
                    }
                }
                None => {
                    let shown = v.shown(f.ctx);
                    f.error(&path, Some(v), format!("must be a list, got {shown}"));
                }
            }
        }
    }
    for port in &mut node.ports {
        if port.physical_network.is_none() {
            port.physical_network = Some(DEFAULT_PHYSICAL_NETWORK.to_owned());
        }
    }

    let driver_id = match (&driver, prefix) {
        (Some(driver), Some(prefix)) => bmc_fields(f, &base, driver, prefix, &pm, &mut node),
        (Some(driver), None) => {
            for (k, v) in &pm {
                f.warn(
                    &format!("{base}.{k}"),
                    Some(v),
                    format!("ignored: driver {driver:?} has no BMC"),
                );
            }
            None
        }
        (None, _) => None,
    };

    if let Some((path, value)) = platform {
        if node.properties.cpu_arch.is_none() {
            f.error(&path, None, "platform needs arch");
        }
        if let Some(p) = value {
            node.extra
                .insert("tripleo_platform".to_owned(), Value::Text(p));
        }
    }
    let mut caps = capabilities.unwrap_or_default();
    if let Some(p) = profile {
        caps.insert("profile".to_owned(), p);
    }
    node.properties.capabilities = caps;
    if node.resource_class.is_none() {
        node.resource_class = Some(DEFAULT_RESOURCE_CLASS.to_owned());
    }
    node.uuid = uuid.unwrap_or_else(|| fallback_uuid(&node, &base));
    Some(Entry {
        node,
        label: base.clone(),
        location: Location::field(base),
        driver_id,
    })
}

/// `ports[]`: `{address, physical_network?, local_link_connection?, pxe_enabled?}`.
fn ports(f: &mut Fields<'_>, path: &str, v: &Doc) -> Vec<Port> {
    let Some(items) = v.as_list() else {
        let shown = v.shown(f.ctx);
        f.error(path, Some(v), format!("must be a list, got {shown}"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (j, item) in items.iter().enumerate() {
        let here = format!("{path}[{j}]");
        let Some(map) = item.as_map() else {
            let shown = item.shown(f.ctx);
            f.error(&here, Some(item), format!("must be an object, got {shown}"));
            continue;
        };
        let Some(address) = item.get("address") else {
            f.error(&format!("{here}.address"), None, "missing");
            continue;
        };
        let Some(mac) = f.mac(&format!("{here}.address"), address) else {
            continue;
        };
        let mut port = Port::new(mac);
        for (k, v) in map {
            let field = format!("{here}.{k}");
            match k.as_str() {
                "address" => {}
                "physical_network" => port.physical_network = f.string(&field, v),
                "local_link_connection" => {
                    port.local_link_connection = f.value_map(&field, v).unwrap_or_default();
                }
                "pxe_enabled" => match v.kind {
                    DocKind::Bool(b) => port.pxe_enabled = b,
                    _ => {
                        let shown = v.shown(f.ctx);
                        f.error(
                            &field,
                            Some(v),
                            format!("must be true or false, got {shown}"),
                        );
                    }
                },
                _ => f.error(&field, Some(v), "unknown field"),
            }
        }
        out.push(port);
    }
    out
}

/// Maps `pm_addr`/`pm_user`/`pm_password`/`pm_port`/`pm_system_id` onto `<prefix>_*`, checks
/// the driver's required fields, and returns the node's BMC identity
/// ([`Node::bmc_identity`]).
fn bmc_fields(
    f: &mut Fields<'_>,
    base: &str,
    driver: &str,
    prefix: &str,
    pm: &BTreeMap<&str, &Doc>,
    node: &mut Node,
) -> Option<String> {
    let required: &[&str] = match driver {
        "ipmi" => &["pm_addr"],
        "redfish" => &["pm_addr", "pm_system_id"],
        _ => &["pm_addr", "pm_user", "pm_password"],
    };
    for r in required {
        let absent = match pm.get(r) {
            None => true,
            Some(d) => {
                matches!(d.kind, DocKind::Null)
                    || (*r != "pm_password" && d.as_text().is_some_and(|t| t.is_empty()))
            }
        };
        if absent {
            f.error(&format!("{base}.{r}"), None, "missing");
        }
    }
    for (k, v) in pm {
        let path = format!("{base}.{k}");
        match *k {
            "pm_addr" => {
                if let Some(a) = f.string(&path, v) {
                    node.driver_info
                        .insert(format!("{prefix}_address"), Value::Text(a));
                }
            }
            "pm_user" => {
                if let Some(u) = f.string(&path, v) {
                    node.driver_info
                        .insert(format!("{prefix}_username"), Value::Text(u));
                }
            }
            "pm_password" => {
                let text = v.as_text().unwrap_or_default();
                node.driver_info.insert(
                    format!("{prefix}_password"),
                    Value::Secret(Secret::new(text)),
                );
            }
            "pm_port" if driver == "redfish" => {
                f.warn(&path, Some(v), "dropped: redfish takes the port in pm_addr")
            }
            "pm_port" => {
                if let Some(p) = f.unsigned(&path, v, u16::MAX.into()) {
                    node.driver_info
                        .insert(format!("{prefix}_port"), Value::Int(p as i64));
                }
            }
            "pm_system_id" if driver == "redfish" => {
                if let Some(s) = f.string(&path, v) {
                    node.driver_info
                        .insert("redfish_system_id".to_owned(), Value::Text(s));
                }
            }
            _ => f.warn(
                &path,
                Some(v),
                format!("dropped: driver {driver:?} does not use it"),
            ),
        }
    }
    node.bmc_identity()
}
