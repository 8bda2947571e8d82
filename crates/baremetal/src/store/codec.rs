//! A node as the JSON text the SQLite store keeps. This is the one place where credentials are
//! written out in clear (as Ironic's database keeps them): the database file is created
//! readable by its owner only.
//!
//! Values keep their kind: a secret is `{"$secret": "…"}`, and a mapping whose only key starts
//! with `$` is wrapped as `{"$map": {…}}` so that it cannot be mistaken for one.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};
use uuid::Uuid;

use crate::node::{HistoryEntry, MacAddress, Node, Port, PowerState, Properties, Severity, Value};
use crate::secret::Secret;
use crate::states::State;

pub(crate) fn encode(node: &Node) -> String {
    let ports: Vec<Json> = node
        .ports
        .iter()
        .map(|p| {
            json!({
                "address": p.address.to_string(),
                "pxe_enabled": p.pxe_enabled,
                "physical_network": p.physical_network,
                "local_link_connection": map(&p.local_link_connection),
                "extra": map(&p.extra),
            })
        })
        .collect();
    let history: Vec<Json> = node
        .history
        .iter()
        .map(|h| {
            json!({
                "at": h.at,
                "severity": h.severity.as_str(),
                "event_type": h.event_type,
                "message": h.message,
            })
        })
        .collect();
    let p = &node.properties;
    let body = json!({
        "uuid": node.uuid.to_string(),
        "name": node.name,
        "driver": node.driver,
        "driver_info": map(&node.driver_info),
        "interfaces": node.interfaces,
        "resource_class": node.resource_class,
        "conductor_group": node.conductor_group,
        "properties": {
            "cpus": p.cpus,
            "memory_mb": p.memory_mb,
            "local_gb": p.local_gb,
            "cpu_arch": p.cpu_arch,
            "capabilities": p.capabilities,
            "root_device": p.root_device.as_ref().map(map),
            "other": map(&p.other),
        },
        "ports": ports,
        "provision_state": node.provision_state.as_str(),
        "target_provision_state": node.target_provision_state.map(State::as_str),
        "power_state": node.power_state.map(PowerState::as_str),
        "target_power_state": node.target_power_state.map(PowerState::as_str),
        "last_error": node.last_error,
        "maintenance": node.maintenance,
        "maintenance_reason": node.maintenance_reason,
        "reservation": node.reservation,
        "instance_info": map(&node.instance_info),
        "extra": map(&node.extra),
        "history": history,
    });
    body.to_string()
}

fn map(m: &BTreeMap<String, Value>) -> Json {
    Json::Object(m.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

fn value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::Float(x) => json!(x),
        Value::Text(s) => Json::String(s.clone()),
        Value::Secret(s) => json!({ "$secret": s.expose() }),
        Value::List(items) => Json::Array(items.iter().map(value).collect()),
        Value::Map(m) => {
            let inner = map(m);
            if m.len() == 1 && m.keys().all(|k| k.starts_with('$')) {
                json!({ "$map": inner })
            } else {
                inner
            }
        }
    }
}

/// Reads a record back; `Err` says what is wrong with it.
pub(crate) fn decode(text: &str) -> Result<Node, String> {
    let body: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let o = body.as_object().ok_or("not an object")?;
    let uuid = Uuid::try_parse(&req_str(o, "uuid")?).map_err(|e| format!("uuid: {e}"))?;
    let mut node = Node::new(uuid, req_str(o, "driver")?);
    node.name = opt_str(o, "name")?;
    node.driver_info = value_map(o, "driver_info")?;
    node.interfaces = match o.get("interfaces") {
        Some(Json::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_owned()))
                    .ok_or(format!("interfaces.{k}: not a string"))
            })
            .collect::<Result<_, _>>()?,
        _ => BTreeMap::new(),
    };
    node.resource_class = opt_str(o, "resource_class")?;
    node.conductor_group = opt_str(o, "conductor_group")?;
    if let Some(Json::Object(p)) = o.get("properties") {
        node.properties = Properties {
            cpus: opt_u64(p, "cpus")?
                .map(u32::try_from)
                .transpose()
                .map_err(|_| "properties.cpus: too large")?,
            memory_mb: opt_u64(p, "memory_mb")?,
            local_gb: opt_u64(p, "local_gb")?,
            cpu_arch: opt_str(p, "cpu_arch")?,
            capabilities: match p.get("capabilities") {
                Some(Json::Object(m)) => m
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect(),
                _ => BTreeMap::new(),
            },
            root_device: match p.get("root_device") {
                Some(Json::Object(_)) => Some(value_map(p, "root_device")?),
                _ => None,
            },
            other: value_map(p, "other")?,
        };
    }
    if let Some(Json::Array(ports)) = o.get("ports") {
        for port in ports {
            let p = port.as_object().ok_or("ports: not an object")?;
            let address = req_str(p, "address")?;
            let mac = MacAddress::parse(&address).ok_or(format!("bad MAC {address:?}"))?;
            node.ports.push(Port {
                address: mac,
                pxe_enabled: p.get("pxe_enabled").and_then(Json::as_bool).unwrap_or(true),
                physical_network: opt_str(p, "physical_network")?,
                local_link_connection: value_map(p, "local_link_connection")?,
                extra: value_map(p, "extra")?,
            });
        }
    }
    node.provision_state = req_str(o, "provision_state")?
        .parse()
        .map_err(|e: crate::Error| e.to_string())?;
    node.target_provision_state = opt_str(o, "target_provision_state")?
        .map(|s| s.parse::<State>())
        .transpose()
        .map_err(|e| e.to_string())?;
    node.power_state = opt_str(o, "power_state")?
        .map(|s| s.parse::<PowerState>())
        .transpose()
        .map_err(|e| e.to_string())?;
    node.target_power_state = opt_str(o, "target_power_state")?
        .map(|s| s.parse::<PowerState>())
        .transpose()
        .map_err(|e| e.to_string())?;
    node.last_error = opt_str(o, "last_error")?;
    node.maintenance = o
        .get("maintenance")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    node.maintenance_reason = opt_str(o, "maintenance_reason")?;
    node.reservation = opt_str(o, "reservation")?;
    node.instance_info = value_map(o, "instance_info")?;
    node.extra = value_map(o, "extra")?;
    if let Some(Json::Array(history)) = o.get("history") {
        for h in history {
            let h = h.as_object().ok_or("history: not an object")?;
            node.history.push(HistoryEntry {
                at: opt_u64(h, "at")?.unwrap_or(0),
                severity: match opt_str(h, "severity")?.as_deref() {
                    Some("error") => Severity::Error,
                    _ => Severity::Info,
                },
                event_type: opt_str(h, "event_type")?.unwrap_or_default(),
                message: opt_str(h, "message")?.unwrap_or_default(),
            });
        }
    }
    Ok(node)
}

fn req_str(o: &Map<String, Json>, key: &str) -> Result<String, String> {
    opt_str(o, key)?.ok_or(format!("{key}: missing"))
}

fn opt_str(o: &Map<String, Json>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key}: not a string")),
    }
}

fn opt_u64(o: &Map<String, Json>, key: &str) -> Result<Option<u64>, String> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(format!("{key}: not a number")),
    }
}

fn value_map(o: &Map<String, Json>, key: &str) -> Result<BTreeMap<String, Value>, String> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(BTreeMap::new()),
        Some(Json::Object(m)) => Ok(m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
        Some(_) => Err(format!("{key}: not an object")),
    }
}

fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(to_value).collect()),
        Json::Object(m) => {
            if m.len() == 1 {
                if let Some(Json::String(s)) = m.get("$secret") {
                    return Value::Secret(Secret::new(s.clone()));
                }
                if let Some(Json::Object(inner)) = m.get("$map") {
                    return Value::Map(
                        inner
                            .iter()
                            .map(|(k, v)| (k.clone(), to_value(v)))
                            .collect(),
                    );
                }
            }
            Value::Map(m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::derived_uuid;

    #[test]
    fn round_trip_keeps_kinds() {
        let mut n = Node::new(derived_uuid("x"), "ipmi");
        n.name = Some("x".into());
        n.driver_info
            .insert("ipmi_password".into(), Value::Secret(Secret::new("pw")));
        n.driver_info.insert("ipmi_port".into(), Value::Int(623));
        n.extra.insert("f".into(), Value::Float(1.0));
        n.extra.insert("t".into(), Value::Text("623".into()));
        let tricky: BTreeMap<String, Value> =
            [("$secret".to_owned(), Value::Text("not one".into()))].into();
        n.extra.insert("m".into(), Value::Map(tricky));
        n.properties.root_device = Some([("size".to_owned(), Value::Text(">= 30".into()))].into());
        n.ports
            .push(Port::new(MacAddress::parse("52:54:00:aa:bb:01").unwrap()));
        n.apply(crate::Event::Manage, 7, None).unwrap();
        n.set_power_state(PowerState::Off, 8);
        assert_eq!(decode(&encode(&n)).unwrap(), n);
    }
}
