//! Bifrost inventories (spec §2.2): a map from node name to node, in YAML or in JSON (read as
//! YAML, as bifrost does). Locations are `line:column: node.field`.

use std::collections::BTreeMap;

use marked_yaml::LoadError;
use uuid::Uuid;

use super::{fallback_uuid, resolve_driver, Ctx, Doc, DocKind, Entry, Fields, Location};
use crate::node::{check_name, is_secret_key, Node, Port, Value, INTERFACE_FIELDS};

/// Sub-maps of `driver_info` in old bifrost inventories, merged into it.
const NESTED_DRIVER_INFO: &[&str] = &["power", "deploy", "management", "console"];
const DEFAULT_SUBNET_MASK: &str = "255.255.255.0";

pub(super) fn parse(ctx: &mut Ctx, text: &str) -> Vec<Entry> {
    // Quoted scalars stay text; plain ones are typed by the YAML 1.2 core schema.
    let options = marked_yaml::LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let root = match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(root) => root,
        Err(e) => {
            let (marker, message) = match &e {
                LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => (
                    Some(*m),
                    "must be a mapping from node name to node".to_owned(),
                ),
                LoadError::UnexpectedAnchor(m) => {
                    (Some(*m), "anchors and aliases are not supported".to_owned())
                }
                LoadError::MappingKeyMustBeScalar(m) => {
                    (Some(*m), "mapping keys must be plain text".to_owned())
                }
                LoadError::UnexpectedTag(m) => {
                    (Some(*m), "explicit tags are not supported".to_owned())
                }
                LoadError::ScanError(m, scan) => {
                    (Some(*m), format!("invalid YAML: {}", scan.info()))
                }
                LoadError::DuplicateKey(inner) => (
                    inner.key.span().start().copied(),
                    format!("duplicate key {:?}", inner.key.as_str()),
                ),
            };
            ctx.error(
                Location {
                    line: marker.map(|m| m.line()),
                    column: marker.map(|m| m.column()),
                    field: None,
                },
                message,
            );
            return Vec::new();
        }
    };
    let doc = Doc::from_yaml(&root);
    doc.collect_secrets(ctx);
    let Some(top) = doc.as_map() else {
        let pos = doc.pos;
        ctx.error(
            Location {
                line: pos.map(|p| p.0),
                column: pos.map(|p| p.1),
                field: None,
            },
            "must be a mapping from node name to node",
        );
        return Vec::new();
    };
    let mut fields = Fields {
        ctx,
        file_has_lines: true,
    };
    top.iter()
        .filter_map(|(key, d)| parse_node(&mut fields, key, d))
        .collect()
}

fn parse_node(f: &mut Fields<'_>, key: &str, doc: &Doc) -> Option<Entry> {
    let base = key.to_owned();
    let Some(map) = doc.as_map() else {
        let shown = doc.shown(f.ctx);
        f.error(&base, Some(doc), format!("must be a mapping, got {shown}"));
        return None;
    };
    let driver = match doc.get("driver") {
        None => {
            f.error(&format!("{base}.driver"), Some(doc), "missing");
            None
        }
        Some(d) => {
            let path = format!("{base}.driver");
            f.string(&path, d)
                .and_then(|name| match resolve_driver(f.ctx, &name, "driver") {
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
    let mut node = Node::new(Uuid::nil(), driver.clone().unwrap_or_default());
    node.name = match doc.get("name") {
        Some(n) => f.name(&format!("{base}.name"), n),
        None => match check_name(key) {
            Ok(()) => Some(key.to_owned()),
            Err(why) => {
                let shown = f.ctx.quote(key);
                f.error(&base, Some(doc), format!("node name {shown} {why}"));
                None
            }
        },
    };
    let mut uuid = None;
    let mut ipa_images = Vec::new();
    for (k, v) in map {
        let path = format!("{base}.{k}");
        match k.as_str() {
            "driver" | "name" => {}
            "uuid" => uuid = f.uuid(&path, v),
            "driver_info" => driver_info(f, &path, v, &mut node),
            "nics" => nics(f, &path, v, &mut node),
            "properties" => properties(f, &path, v, &mut node),
            "instance_info" => node.instance_info = f.value_map(&path, v).unwrap_or_default(),
            "ipv4_address" | "ipv4_gateway" | "ipv4_subnet_mask" | "provisioning_ipv4_address" => {
                if let Some(ip) = f.ipv4(&path, v) {
                    node.extra.insert(k.clone(), Value::Text(ip));
                }
            }
            "ipv4_nameserver" => {
                let list = match v.as_list() {
                    Some(items) => items
                        .iter()
                        .enumerate()
                        .filter_map(|(j, d)| f.ipv4(&format!("{path}[{j}]"), d))
                        .map(Value::Text)
                        .collect(),
                    None => f.ipv4(&path, v).map(Value::Text).into_iter().collect(),
                };
                node.extra.insert(k.clone(), Value::List(list));
            }
            "ipv4_interface_mac" => {
                if let Some(mac) = f.mac(&path, v) {
                    node.extra.insert(k.clone(), Value::Text(mac.to_string()));
                }
            }
            "network_mtu" => {
                if let Some(mtu) = f.unsigned(&path, v, 65535) {
                    node.extra.insert(k.clone(), Value::Int(mtu as i64));
                }
            }
            "node_network_data" => {
                if let Some(m) = f.value_map(&path, v) {
                    node.extra.insert(k.clone(), Value::Map(m));
                }
            }
            "host_groups" => {
                let groups = match v.as_list() {
                    Some(items) => items
                        .iter()
                        .enumerate()
                        .filter_map(|(j, d)| f.string(&format!("{path}[{j}]"), d))
                        .map(Value::Text)
                        .collect(),
                    None => f.string(&path, v).map(Value::Text).into_iter().collect(),
                };
                node.extra.insert(k.clone(), Value::List(groups));
            }
            "ipa_kernel_url" | "ipa_ramdisk_url" => {
                if let Some(url) = f.string(&path, v) {
                    let target = if k == "ipa_kernel_url" {
                        "deploy_kernel"
                    } else {
                        "deploy_ramdisk"
                    };
                    ipa_images.push((target, url));
                }
            }
            "resource_class" => node.resource_class = f.string(&path, v),
            "conductor_group" => node.conductor_group = f.string(&path, v),
            "extra" => {
                if let Some(m) = f.value_map(&path, v) {
                    node.extra.extend(m);
                }
            }
            i if INTERFACE_FIELDS.contains(&i) => {
                if let Some(s) = f.string(&path, v) {
                    node.interfaces.insert(k.clone(), s);
                }
            }
            _ => {
                f.warn(&path, Some(v), "unknown field, kept in extra");
                node.extra.insert(k.clone(), v.to_value(is_secret_key(k)));
            }
        }
    }

    // Addressing defaults, as bifrost's inventory does.
    if let Some(ip) = node.extra.get("ipv4_address").cloned() {
        node.extra
            .entry("provisioning_ipv4_address".to_owned())
            .or_insert(ip);
        node.extra
            .entry("ipv4_subnet_mask".to_owned())
            .or_insert_with(|| Value::Text(DEFAULT_SUBNET_MASK.to_owned()));
    } else if !node.extra.contains_key("node_network_data") {
        node.extra
            .insert("addressing_mode".to_owned(), Value::Text("dhcp".to_owned()));
    }
    for (target, url) in ipa_images {
        node.driver_info
            .entry(target.to_owned())
            .or_insert(Value::Text(url));
    }
    let required = match driver.as_deref() {
        Some("ipmi") => Some("ipmi_address"),
        Some("redfish") => Some("redfish_address"),
        _ => None,
    };
    if let Some(r) = required {
        if !node.driver_info.contains_key(r) {
            let info = doc.get("driver_info");
            f.error(
                &format!("{base}.driver_info.{r}"),
                Some(info.unwrap_or(doc)),
                "missing",
            );
        }
    }
    node.uuid = uuid.unwrap_or_else(|| fallback_uuid(&node, &base));
    Some(Entry {
        node,
        label: base.clone(),
        location: f.loc(&base, Some(doc)),
        driver_id: None,
    })
}

/// Flat Ironic keys; the old `power`/`deploy`/`management`/`console` sub-maps are merged in.
fn driver_info(f: &mut Fields<'_>, path: &str, v: &Doc, node: &mut Node) {
    let Some(map) = v.as_map() else {
        let shown = v.shown(f.ctx);
        f.error(path, Some(v), format!("must be a mapping, got {shown}"));
        return;
    };
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |f: &mut Fields<'_>, key: &str, here: String, d: &Doc| {
        if let Some(first) = origin.get(key) {
            f.error(&here, Some(d), format!("set twice (also {first})"));
            return;
        }
        origin.insert(key.to_owned(), here);
        node.driver_info
            .insert(key.to_owned(), d.to_value(is_secret_key(key)));
    };
    for (k, d) in map {
        match (NESTED_DRIVER_INFO.contains(&k.as_str()), d.as_map()) {
            (true, Some(sub)) => {
                f.warn(
                    &format!("{path}.{k}"),
                    Some(d),
                    "nested driver_info is an old form: merged",
                );
                for (k2, d2) in sub {
                    put(f, k2, format!("{path}.{k}.{k2}"), d2);
                }
            }
            _ => put(f, k, format!("{path}.{k}"), d),
        }
    }
}

/// `nics[]`: `{mac, extra?}` (and Ironic's port fields).
fn nics(f: &mut Fields<'_>, path: &str, v: &Doc, node: &mut Node) {
    let Some(items) = v.as_list() else {
        let shown = v.shown(f.ctx);
        f.error(path, Some(v), format!("must be a list, got {shown}"));
        return;
    };
    for (j, item) in items.iter().enumerate() {
        let here = format!("{path}[{j}]");
        let Some(map) = item.as_map() else {
            let shown = item.shown(f.ctx);
            f.error(&here, Some(item), format!("must be a mapping, got {shown}"));
            continue;
        };
        let Some(mac_doc) = item.get("mac") else {
            f.error(&format!("{here}.mac"), Some(item), "missing");
            continue;
        };
        let Some(mac) = f.mac(&format!("{here}.mac"), mac_doc) else {
            continue;
        };
        let mut port = Port::new(mac);
        for (k, d) in map {
            let field = format!("{here}.{k}");
            match k.as_str() {
                "mac" => {}
                "extra" => port.extra = f.value_map(&field, d).unwrap_or_default(),
                "physical_network" => port.physical_network = f.string(&field, d),
                "local_link_connection" => {
                    port.local_link_connection = f.value_map(&field, d).unwrap_or_default();
                }
                "pxe_enabled" => match d.kind {
                    DocKind::Bool(b) => port.pxe_enabled = b,
                    _ => {
                        let shown = d.shown(f.ctx);
                        f.error(
                            &field,
                            Some(d),
                            format!("must be true or false, got {shown}"),
                        );
                    }
                },
                _ => f.error(&field, Some(d), "unknown field"),
            }
        }
        node.ports.push(port);
    }
}

/// `properties`: passed through, with the typed ones read and the old names `ram` and
/// `disk_size` mapped to `memory_mb` and `local_gb`.
fn properties(f: &mut Fields<'_>, path: &str, v: &Doc, node: &mut Node) {
    let Some(map) = v.as_map() else {
        let shown = v.shown(f.ctx);
        f.error(path, Some(v), format!("must be a mapping, got {shown}"));
        return;
    };
    for (old, new) in [("ram", "memory_mb"), ("disk_size", "local_gb")] {
        if let (Some(_), Some(d)) = (v.get(new), v.get(old)) {
            f.error(
                &format!("{path}.{old}"),
                Some(d),
                format!("set twice (as {old} and {new})"),
            );
        }
    }
    let p = &mut node.properties;
    for (k, d) in map {
        let here = format!("{path}.{k}");
        match k.as_str() {
            "cpus" => p.cpus = f.unsigned(&here, d, u32::MAX.into()).map(|x| x as u32),
            "memory_mb" | "ram" => p.memory_mb = f.unsigned(&here, d, u64::MAX),
            "local_gb" | "disk_size" => p.local_gb = f.unsigned(&here, d, u64::MAX),
            "cpu_arch" => p.cpu_arch = f.string(&here, d),
            "capabilities" => p.capabilities = f.capabilities(&here, d).unwrap_or_default(),
            "root_device" => p.root_device = f.value_map(&here, d),
            _ => {
                p.other.insert(k.clone(), d.to_value(is_secret_key(k)));
            }
        }
    }
}
