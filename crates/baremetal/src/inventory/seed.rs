//! The TripleO seed's positional shape (tripleo-incubator `setup-baremetal`, spec §1.5):
//! `CPUS MEMORY_MB DISK_GB ARCH MAC NAME [BMC_ADDR BMC_USER BMC_PASSWORD]`.
//!
//! As a file, one record per line (blank lines and `#` comments skipped), one node per record.
//! As arguments ([`parse_seed_args`]), MAC and BMC fields may be space-separated lists,
//! index-aligned, one node per MAC, as `setup-baremetal` took them. `NAME` is nova-baremetal's
//! service host (`seed`, `undercloud`), kept in `extra.service_host`; the nodes have no name.
//! With BMC fields the driver is `ipmi` (nova-baremetal's IPMI power manager), without them
//! `manual-management`.

use uuid::Uuid;

use super::{fallback_uuid, Ctx, Entry, Inventory, Location};
use crate::node::{MacAddress, Node, Port, Value};
use crate::secret::Secret;
use crate::Error;

const FIELDS: [&str; 9] = [
    "CPUS",
    "MEMORY_MB",
    "DISK_GB",
    "ARCH",
    "MAC",
    "NAME",
    "BMC_ADDR",
    "BMC_USER",
    "BMC_PASSWORD",
];
const ARGS: [&str; 9] = [
    "CPUS",
    "MEMORY_MB",
    "DISK_GB",
    "ARCH",
    "MACS",
    "NAME",
    "PM_IPS",
    "PM_USERS",
    "PM_PASSWORDS",
];

/// The name used for argument lists in messages, after the tool that took them.
pub(crate) const ARGS_LABEL: &str = "setup-baremetal";

pub(super) fn parse(ctx: &mut Ctx, text: &str) -> Vec<Entry> {
    let records: Vec<(usize, Vec<&str>)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split_whitespace().collect::<Vec<_>>()))
        .filter(|(_, f)| !f.is_empty() && !f[0].starts_with('#'))
        .collect();
    for (_, f) in &records {
        if f.len() == 9 {
            ctx.secret(f[8]);
        }
    }
    let mut out = Vec::new();
    for (number, f) in records {
        if f.len() != 6 && f.len() != 9 {
            ctx.error(
                Location::line(number),
                format!(
                    "expected 6 or 9 fields ({}), got {}",
                    FIELDS.join(" "),
                    f.len()
                ),
            );
            continue;
        }
        let bmc = (f.len() == 9).then(|| (f[6], f[7], f[8]));
        let at = |_: usize| Location::line(number);
        let label = format!("line {number}");
        if let Some(e) = record(
            ctx,
            &at,
            &FIELDS,
            [f[0], f[1], f[2], f[3]],
            f[4],
            f[5],
            bmc,
            &label,
        ) {
            out.push(e);
        }
    }
    out
}

/// Parses `setup-baremetal`'s arguments: `CPUS MEMORY_MB DISK_GB ARCH MACS NAME [PM_IPS
/// PM_USERS PM_PASSWORDS]`, the lists space-separated and index-aligned. Messages name the
/// argument (`setup-baremetal: argument 5 (MACS): bad MAC "zz"`).
pub fn parse_seed_args<S: AsRef<str>>(args: &[S]) -> Result<Inventory, Error> {
    let mut ctx = Ctx::new(ARGS_LABEL);
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    if args.len() == 9 {
        for p in args[8].split_whitespace() {
            ctx.secret(p);
        }
    }
    let mut entries = Vec::new();
    if args.len() != 6 && args.len() != 9 {
        ctx.error(
            Location::default(),
            format!(
                "expected 6 or 9 arguments ({}), got {}",
                ARGS.join(" "),
                args.len()
            ),
        );
        return ctx.finish(entries);
    }
    let at = |i: usize| Location::field(format!("argument {} ({})", i + 1, ARGS[i]));
    let macs: Vec<&str> = args[4].split_whitespace().collect();
    if macs.is_empty() {
        ctx.error(at(4), "missing");
    }
    let lists: Option<[Vec<&str>; 3]> = (args.len() == 9)
        .then(|| [6, 7, 8].map(|i| args[i].split_whitespace().collect::<Vec<_>>()));
    if let Some(lists) = &lists {
        for (k, list) in lists.iter().enumerate() {
            if list.len() != macs.len() {
                ctx.error(
                    at(6 + k),
                    format!(
                        "{} entries for {} MACs (lists are index-aligned)",
                        list.len(),
                        macs.len()
                    ),
                );
            }
        }
    }
    for (j, mac) in macs.iter().enumerate() {
        let bmc = lists
            .as_ref()
            .and_then(|l| Some((*l[0].get(j)?, *l[1].get(j)?, *l[2].get(j)?)));
        let label = format!("MAC {}", j + 1);
        let fixed = [args[0], args[1], args[2], args[3]];
        if let Some(e) = record(&mut ctx, &at, &ARGS, fixed, mac, args[5], bmc, &label) {
            entries.push(e);
        }
    }
    ctx.finish(entries)
}

#[allow(clippy::too_many_arguments)]
fn record(
    ctx: &mut Ctx,
    at: &dyn Fn(usize) -> Location,
    names: &[&str; 9],
    [cpus, memory, disk, arch]: [&str; 4],
    mac: &str,
    service_host: &str,
    bmc: Option<(&str, &str, &str)>,
    label: &str,
) -> Option<Entry> {
    let number = |ctx: &mut Ctx, i: usize, text: &str, max: u64| -> Option<u64> {
        match text.parse::<u64>() {
            Ok(v) if v <= max => Some(v),
            _ => {
                let shown = ctx.quote(text);
                let message = if at(i).field.is_some() {
                    format!("must be a non-negative integer, got {shown}")
                } else {
                    format!("{}: must be a non-negative integer, got {shown}", names[i])
                };
                ctx.error(at(i), message);
                None
            }
        }
    };
    let mut node = Node::new(
        Uuid::nil(),
        if bmc.is_some() {
            "ipmi"
        } else {
            "manual-management"
        },
    );
    node.properties.cpus = number(ctx, 0, cpus, u32::MAX.into()).map(|v| v as u32);
    node.properties.memory_mb = number(ctx, 1, memory, u64::MAX);
    node.properties.local_gb = number(ctx, 2, disk, u64::MAX);
    node.properties.cpu_arch = Some(arch.to_owned());
    match MacAddress::parse(mac) {
        Some(m) => node.ports.push(Port::new(m)),
        None => {
            let shown = ctx.quote(mac);
            ctx.error(at(4), format!("bad MAC {shown}"));
        }
    }
    node.extra.insert(
        "service_host".to_owned(),
        Value::Text(service_host.to_owned()),
    );
    if let Some((address, user, password)) = bmc {
        let info = &mut node.driver_info;
        info.insert("ipmi_address".to_owned(), Value::Text(address.to_owned()));
        info.insert("ipmi_username".to_owned(), Value::Text(user.to_owned()));
        info.insert(
            "ipmi_password".to_owned(),
            Value::Secret(Secret::new(password)),
        );
    }
    node.uuid = fallback_uuid(&node, label);
    Some(Entry {
        node,
        label: label.to_owned(),
        location: at(4),
        driver_id: None,
    })
}
