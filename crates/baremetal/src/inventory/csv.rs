//! Bifrost's legacy CSV (spec §2.3): one node with one NIC per row. Columns, 0-based: MAC,
//! BMC user, BMC password, BMC address, CPUs, memory MB, disk GB, two unused, UUID, name, IPv4,
//! the four IPMI bridging fields, driver (default `ipmi`), provisioning IPv4 (default: the
//! IPv4). Short rows are accepted; `cpu_arch` is always x86_64. Locations are line numbers.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{fallback_uuid, resolve_driver, Ctx, Entry, Location};
use crate::node::{check_name, driver_prefix, MacAddress, Node, Port, Value};
use crate::secret::Secret;

const COLUMNS: usize = 18;

fn column_name(i: usize) -> &'static str {
    match i {
        0 => "MAC",
        1 => "BMC user",
        2 => "BMC password",
        3 => "BMC address",
        4 => "CPUs",
        5 => "memory MB",
        6 => "disk GB",
        9 => "UUID",
        10 => "name",
        11 => "IPv4 address",
        12 => "ipmi_target_channel",
        13 => "ipmi_target_address",
        14 => "ipmi_transit_channel",
        15 => "ipmi_transit_address",
        16 => "driver",
        17 => "provisioning IPv4 address",
        _ => "unused",
    }
}

pub(super) fn parse(ctx: &mut Ctx, text: &str) -> Vec<Entry> {
    let rows: Vec<(usize, Result<Vec<String>, String>)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, split(line)))
        .collect();
    // Every password is known before any message is written.
    for (_, fields) in &rows {
        if let Some(p) = fields.as_ref().ok().and_then(|f| f.get(2)) {
            ctx.secret(p);
        }
    }
    let mut entries = Vec::new();
    for (number, fields) in rows {
        match fields {
            Ok(fields) => entries.extend(row(ctx, number, &fields)),
            Err(message) => ctx.error(Location::line(number), message),
        }
    }
    entries
}

/// Splits one CSV record: commas, fields optionally in double quotes with `""` for a quote.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".to_owned()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => {
                    return Err(format!(
                        "column {} ({}): text after a closing quote",
                        fields.len(),
                        column_name(fields.len())
                    ))
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_owned());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim().to_owned());
        }
    }
}

fn row(ctx: &mut Ctx, number: usize, fields: &[String]) -> Option<Entry> {
    let here = Location::line(number);
    let col = |i: usize| fields.get(i).map(String::as_str).unwrap_or("");
    if fields.len() > COLUMNS {
        ctx.warn(
            here.clone(),
            format!(
                "{} columns: those after column {} are ignored",
                fields.len(),
                COLUMNS - 1
            ),
        );
    }
    let number_in = |ctx: &mut Ctx, i: usize, max: u64| -> Option<u64> {
        let text = col(i);
        if text.is_empty() {
            return None;
        }
        match text.parse::<u64>() {
            Ok(v) if v <= max => Some(v),
            _ => {
                let shown = ctx.quote(text);
                ctx.error(
                    Location::line(number),
                    format!(
                        "column {i} ({}): must be a non-negative integer, got {shown}",
                        column_name(i)
                    ),
                );
                None
            }
        }
    };
    let ipv4_in = |ctx: &mut Ctx, i: usize| -> Option<String> {
        let text = col(i);
        if text.is_empty() {
            return None;
        }
        if text.parse::<Ipv4Addr>().is_ok() {
            Some(text.to_owned())
        } else {
            let shown = ctx.quote(text);
            ctx.error(
                Location::line(number),
                format!("column {i} ({}): bad IPv4 address {shown}", column_name(i)),
            );
            None
        }
    };

    let mac = if col(0).is_empty() {
        ctx.error(here.clone(), "column 0 (MAC): missing");
        None
    } else {
        let m = MacAddress::parse(col(0));
        if m.is_none() {
            let shown = ctx.quote(col(0));
            ctx.error(here.clone(), format!("bad MAC {shown}"));
        }
        m
    };
    let driver_name = if col(16).is_empty() { "ipmi" } else { col(16) };
    let driver = match resolve_driver(ctx, driver_name, "driver") {
        Ok((driver, warning)) => {
            if let Some(w) = warning {
                ctx.warn(here.clone(), format!("column 16 (driver): {w}"));
            }
            Some(driver)
        }
        Err(message) => {
            ctx.error(here.clone(), format!("column 16 (driver): {message}"));
            None
        }
    };
    let mut node = Node::new(Uuid::nil(), driver.clone().unwrap_or_default());
    node.properties.cpus = number_in(ctx, 4, u32::MAX.into()).map(|v| v as u32);
    node.properties.memory_mb = number_in(ctx, 5, u64::MAX);
    node.properties.local_gb = number_in(ctx, 6, u64::MAX);
    node.properties.cpu_arch = Some("x86_64".to_owned());
    if let Some(mac) = mac {
        node.ports.push(Port::new(mac));
    }
    if !col(10).is_empty() {
        match check_name(col(10)) {
            Ok(()) => node.name = Some(col(10).to_owned()),
            Err(why) => {
                let shown = ctx.quote(col(10));
                ctx.error(
                    here.clone(),
                    format!("column 10 (name): node name {shown} {why}"),
                );
            }
        }
    }
    let uuid = if col(9).is_empty() {
        None
    } else {
        match Uuid::try_parse(col(9)) {
            Ok(u) => Some(u),
            Err(_) => {
                let shown = ctx.quote(col(9));
                ctx.error(here.clone(), format!("column 9 (UUID): bad UUID {shown}"));
                None
            }
        }
    };

    if let Some(driver) = &driver {
        match driver_prefix(driver) {
            Some(prefix) => {
                if col(3).is_empty() {
                    ctx.error(here.clone(), "column 3 (BMC address): missing");
                } else {
                    node.driver_info
                        .insert(format!("{prefix}_address"), Value::Text(col(3).to_owned()));
                }
                if !col(1).is_empty() {
                    node.driver_info
                        .insert(format!("{prefix}_username"), Value::Text(col(1).to_owned()));
                }
                if !col(2).is_empty() {
                    node.driver_info.insert(
                        format!("{prefix}_password"),
                        Value::Secret(Secret::new(col(2))),
                    );
                }
            }
            None => {
                if !(col(1).is_empty() && col(2).is_empty() && col(3).is_empty()) {
                    ctx.warn(
                        here.clone(),
                        format!("columns 1-3 (BMC) ignored: driver {driver:?} has no BMC"),
                    );
                }
            }
        }
        let bridging = [12, 13, 14, 15].map(|i| !col(i).is_empty());
        if bridging.iter().any(|b| *b) {
            if driver != "ipmi" {
                ctx.warn(
                    here.clone(),
                    format!("columns 12-15 (IPMI bridging) ignored: driver {driver:?} is not ipmi"),
                );
            } else {
                let mut put = |i: usize| {
                    if !col(i).is_empty() {
                        node.driver_info
                            .insert(column_name(i).to_owned(), Value::Text(col(i).to_owned()));
                    }
                };
                for i in 12..=15 {
                    put(i);
                }
                let kind = if bridging[2] || bridging[3] {
                    "dual"
                } else {
                    "single"
                };
                node.driver_info
                    .insert("ipmi_bridging".to_owned(), Value::Text(kind.to_owned()));
            }
        }
    }
    let ipv4 = ipv4_in(ctx, 11);
    let provisioning = ipv4_in(ctx, 17).or_else(|| ipv4.clone());
    if let Some(ip) = ipv4 {
        node.extra
            .insert("ipv4_address".to_owned(), Value::Text(ip));
    }
    if let Some(ip) = provisioning {
        node.extra
            .insert("provisioning_ipv4_address".to_owned(), Value::Text(ip));
    }
    let label = format!("line {number}");
    node.uuid = uuid.unwrap_or_else(|| fallback_uuid(&node, &label));
    Some(Entry {
        node,
        label,
        location: here,
        driver_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn quoting() {
        assert_eq!(split("a,\"b,c\",d").unwrap(), ["a", "b,c", "d"]);
        assert_eq!(split("\"say \"\"hi\"\"\"").unwrap(), ["say \"hi\""]);
        assert_eq!(split("a,,").unwrap(), ["a", "", ""]);
        assert!(split("\"open").is_err());
    }
}
