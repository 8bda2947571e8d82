//! Applying a configuration to the running system (feature `apply`): the only part of the
//! crate that touches the host.
//!
//! [`apply`] writes the files that changed (temp + fsync + rename, old bytes kept), brings
//! the affected devices to their configured state through a [`LinkControl`] (iproute2 by
//! default), verifies the result by reading the state back, and on any failure restores the
//! old files and the old live state of those devices, then verifies that too. Devices whose
//! files did not change are not touched. Parents come before their members; VLANs after
//! their parents.
//!
//! Live state is applied directly (links, masters, MTU, static addresses, routes, rules), so
//! activation does not depend on the distribution's ifup scripts. DHCP devices are only
//! brought up: leases are the DHCP client's business. OVS and the other switch types are
//! refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::{Device, Kind, NetworkConfig};
use crate::render::{changed, RenderedFile};

/// How commands reach the kernel.
pub trait LinkControl {
    /// Runs `ip ARGS`; its standard output, or the error it printed.
    fn ip(&mut self, args: &[String]) -> Result<String, String>;
}

/// iproute2's `ip`, in the caller's network namespace.
#[derive(Debug, Default)]
pub struct IpCommand {
    /// Every command run, in order (for `--verbose` and tests).
    pub log: Vec<String>,
}

impl LinkControl for IpCommand {
    fn ip(&mut self, args: &[String]) -> Result<String, String> {
        let rendered = format!("ip {}", args.join(" "));
        if args.first().is_none_or(|a| a != "-j") {
            self.log.push(rendered.clone());
        }
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("{rendered}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{rendered}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// Records commands and answers state queries from a fixed snapshot: a dry run.
#[derive(Debug, Default)]
pub struct Recorder {
    pub commands: Vec<String>,
    /// What `ip -j ... addr show` returns.
    pub links_json: String,
    /// What `ip -j route show table all` returns.
    pub routes_json: String,
}

impl LinkControl for Recorder {
    fn ip(&mut self, args: &[String]) -> Result<String, String> {
        match args.first().map(String::as_str) {
            Some("-j") if args.iter().any(|a| a == "route") => Ok(self.routes_json.clone()),
            Some("-j") => Ok(self.links_json.clone()),
            _ => {
                self.commands.push(format!("ip {}", args.join(" ")));
                Ok(String::new())
            }
        }
    }
}

/// Why an apply failed, and what the rollback achieved.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{what} is not supported by apply yet")]
    Unsupported { what: String },
    #[error("applying failed: {cause}; rolled back{}", rollback.as_ref().map_or(String::new(), |e| format!(", but the rollback failed too: {e}")))]
    RolledBack {
        cause: String,
        rollback: Option<String>,
    },
}

/// What an apply did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Files written or removed (paths under the root).
    pub files: Vec<String>,
    /// Devices reconfigured, in the order they were.
    pub devices: Vec<String>,
}

/// One link's live state, as far as apply manages it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct LinkState {
    up: bool,
    mtu: u64,
    master: Option<String>,
    /// Global static addresses, `address/prefix`.
    addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteState {
    dst: String,
    gateway: Option<String>,
    dev: String,
    table: String,
    metric: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct Snapshot {
    links: BTreeMap<String, LinkState>,
    routes: Vec<RouteState>,
}

fn snapshot(ctl: &mut dyn LinkControl) -> Result<Snapshot, String> {
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let links: serde_json::Value = serde_json::from_str(&ctl.ip(&args(&["-j", "addr", "show"]))?)
        .map_err(|e| format!("ip -j addr show: {e}"))?;
    let routes: serde_json::Value =
        serde_json::from_str(&ctl.ip(&args(&["-j", "route", "show", "table", "all"]))?)
            .map_err(|e| format!("ip -j route show: {e}"))?;
    let mut snap = Snapshot::default();
    for link in links.as_array().into_iter().flatten() {
        let Some(name) = link["ifname"].as_str() else {
            continue;
        };
        let flags: Vec<&str> = link["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .collect();
        let addresses = link["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["scope"] == "global" && a["dynamic"] != true)
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    a["local"].as_str()?,
                    a["prefixlen"].as_u64()?
                ))
            })
            .collect();
        snap.links.insert(
            name.to_owned(),
            LinkState {
                up: flags.contains(&"UP"),
                mtu: link["mtu"].as_u64().unwrap_or(0),
                master: link["master"].as_str().map(str::to_owned),
                addresses,
            },
        );
    }
    for route in routes.as_array().into_iter().flatten() {
        let kernel = route["protocol"] == "kernel"
            || route["protocol"] == "ra"
            || route["protocol"] == "dhcp";
        let special = route["type"].as_str().is_some_and(|t| t != "unicast");
        if kernel || special || route["table"] == "local" {
            continue;
        }
        let (Some(dst), Some(dev)) = (route["dst"].as_str(), route["dev"].as_str()) else {
            continue;
        };
        snap.routes.push(RouteState {
            dst: dst.to_owned(),
            gateway: route["gateway"].as_str().map(str::to_owned),
            dev: dev.to_owned(),
            table: route["table"].as_str().unwrap_or("main").to_owned(),
            metric: route["metric"].as_u64(),
        });
    }
    Ok(snap)
}

/// What a device should be, with what it takes to create it.
#[derive(Debug, Clone)]
struct Desired {
    name: String,
    create: Option<Vec<String>>,
    state: LinkState,
    routes: Vec<RouteState>,
    rules: Vec<String>,
    dhcp: bool,
}

fn table_name(config: &NetworkConfig, table: Option<&str>) -> String {
    match table {
        None | Some("main") | Some("254") => "main".to_owned(),
        Some(t) => config
            .route_tables
            .iter()
            .find(|rt| rt.name == t)
            .map_or(t.to_owned(), |rt| rt.table_id.to_string()),
    }
}

/// Flattens `device` and its members, parents first.
fn desired(
    config: &NetworkConfig,
    device: &Device,
    master: Option<&str>,
    out: &mut Vec<Desired>,
) -> Result<(), ApplyError> {
    let v = |s: &str| s.to_owned();
    let create = match &device.kind {
        Kind::Interface { .. } | Kind::IbInterface { .. } => {
            crate::model::dotted_vlan(&device.name)
                .map(|(base, id)| vlan_link(base, &device.name, id))
        }
        Kind::LinuxBridge => Some(vec![
            v("link"),
            v("add"),
            device.name.clone(),
            v("type"),
            v("bridge"),
        ]),
        Kind::LinuxBond {
            bonding_options, ..
        } => {
            let mut args = vec![
                v("link"),
                v("add"),
                device.name.clone(),
                v("type"),
                v("bond"),
            ];
            for option in bonding_options.as_deref().unwrap_or("").split_whitespace() {
                if let Some((k, value)) = option.split_once('=') {
                    args.push(k.to_owned());
                    args.push(value.to_owned());
                }
            }
            Some(args)
        }
        Kind::Vlan {
            vlan_id,
            device: parent,
            ..
        } => {
            let parent = parent
                .clone()
                .or_else(|| master.map(str::to_owned))
                .ok_or_else(|| ApplyError::Unsupported {
                    what: format!("{}: a vlan without device", device.name),
                })?;
            Some(vlan_link(&parent, &device.name, *vlan_id))
        }
        _ => {
            return Err(ApplyError::Unsupported {
                what: format!("{} ({})", device.type_name, device.name),
            })
        }
    };
    let common = &device.common;
    let dhcp = common.use_dhcp || common.use_dhcpv6;
    let mtu = common.mtu.unwrap_or(0);
    let master_of_members = matches!(device.kind, Kind::LinuxBridge | Kind::LinuxBond { .. });
    // A vlan member of a bond sits on it, it is not enslaved.
    let enslaved = master.filter(|_| !matches!(device.kind, Kind::Vlan { .. }));
    out.push(Desired {
        name: device.name.clone(),
        create,
        state: LinkState {
            up: common.onboot,
            mtu,
            master: enslaved.map(str::to_owned),
            addresses: if common.use_dhcpv6 {
                Vec::new()
            } else {
                common.addresses.clone()
            },
        },
        routes: common
            .routes
            .iter()
            .map(|r| RouteState {
                dst: match (&r.destination, r.default) {
                    (Some(d), false) => d.clone(),
                    _ => "default".to_owned(),
                },
                gateway: (r.next_hop != "self").then(|| r.next_hop.clone()),
                dev: device.name.clone(),
                table: table_name(config, r.table.as_deref()),
                metric: r.metric,
            })
            .collect(),
        rules: common
            .rules
            .iter()
            .map(|r| r.rule.trim_start_matches("add ").to_owned())
            .collect(),
        dhcp,
    });
    for member in &device.members {
        desired(
            config,
            member,
            master_of_members.then_some(device.name.as_str()),
            out,
        )?;
    }
    Ok(())
}

/// `ip link add` arguments for VLAN `id` named `name` on `parent`.
fn vlan_link(parent: &str, name: &str, id: u64) -> Vec<String> {
    let id = id.to_string();
    to_args(&[
        "link", "add", "link", parent, "name", name, "type", "vlan", "id", &id,
    ])
}

fn to_args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn route_args(verb: &str, route: &RouteState) -> Vec<String> {
    let mut args = to_args(&["route", verb, &route.dst]);
    if let Some(gw) = &route.gateway {
        args.extend(to_args(&["via", gw]));
    }
    args.extend(to_args(&["dev", &route.dev]));
    if route.table != "main" {
        args.extend(to_args(&["table", &route.table]));
    }
    if let Some(metric) = route.metric {
        args.extend(["metric".to_owned(), metric.to_string()]);
    }
    args
}

fn same_route(a: &RouteState, b: &RouteState) -> bool {
    a.dst == b.dst
        && a.gateway == b.gateway
        && a.dev == b.dev
        && a.table == b.table
        && (a.metric.is_none() || b.metric.is_none() || a.metric == b.metric)
}

/// Brings one device from `current` to `want`.
fn converge(ctl: &mut dyn LinkControl, want: &Desired, current: &Snapshot) -> Result<(), String> {
    let name = want.name.as_str();
    let now = match current.links.get(name) {
        Some(state) => state.clone(),
        None => {
            let create = want
                .create
                .as_ref()
                .ok_or_else(|| format!("{name}: no such network interface"))?;
            ctl.ip(create)?;
            LinkState::default()
        }
    };
    if now.master != want.state.master {
        match &want.state.master {
            Some(master) => {
                ctl.ip(&to_args(&["link", "set", name, "down"]))?;
                ctl.ip(&to_args(&["link", "set", name, "master", master]))?;
            }
            None => {
                ctl.ip(&to_args(&["link", "set", name, "nomaster"]))?;
            }
        }
    }
    if want.state.mtu != 0 && now.mtu != want.state.mtu {
        ctl.ip(&[
            "link".into(),
            "set".into(),
            name.into(),
            "mtu".into(),
            want.state.mtu.to_string(),
        ])?;
    }
    for address in now
        .addresses
        .iter()
        .filter(|a| !want.state.addresses.contains(a))
    {
        ctl.ip(&to_args(&["addr", "del", address, "dev", name]))?;
    }
    for address in want
        .state
        .addresses
        .iter()
        .filter(|a| !now.addresses.contains(a))
    {
        ctl.ip(&to_args(&["addr", "add", address, "dev", name]))?;
    }
    ctl.ip(&to_args(&[
        "link",
        "set",
        name,
        if want.state.up { "up" } else { "down" },
    ]))?;
    for route in current.routes.iter().filter(|r| r.dev == name) {
        if !want.routes.iter().any(|w| same_route(w, route)) {
            // Removing an address takes the routes through it along: already gone is fine.
            if let Err(e) = ctl.ip(&route_args("del", route)) {
                if !e.contains("No such process") {
                    return Err(e);
                }
            }
        }
    }
    for route in &want.routes {
        ctl.ip(&route_args("replace", route))?;
    }
    for rule in &want.rules {
        let mut args = to_args(&["rule", "add"]);
        args.extend(rule.split_whitespace().map(str::to_owned));
        // An identical rule already there is no failure.
        if let Err(e) = ctl.ip(&args) {
            if !e.contains("File exists") {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// What differs between `want` and the live state, if anything.
fn verify(want: &[Desired], snap: &Snapshot) -> Result<(), String> {
    for device in want {
        let name = &device.name;
        let state = snap
            .links
            .get(name)
            .ok_or_else(|| format!("{name}: does not exist"))?;
        if state.up != device.state.up {
            return Err(format!(
                "{name}: link is {} instead of {}",
                updown(state.up),
                updown(device.state.up)
            ));
        }
        if device.state.mtu != 0 && state.mtu != device.state.mtu {
            return Err(format!(
                "{name}: MTU {} instead of {}",
                state.mtu, device.state.mtu
            ));
        }
        if state.master != device.state.master {
            return Err(format!(
                "{name}: master {:?} instead of {:?}",
                state.master, device.state.master
            ));
        }
        if !device.dhcp {
            for address in &device.state.addresses {
                if !state.addresses.contains(address) {
                    return Err(format!("{name}: address {address} missing"));
                }
            }
        }
        for route in &device.routes {
            if !snap.routes.iter().any(|r| same_route(route, r)) {
                return Err(format!("{name}: route {} missing", route.dst));
            }
        }
    }
    Ok(())
}

fn updown(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

/// A changed file's previous content, to put back on rollback (`None`: it did not exist).
struct Backup {
    /// Index of the rendered file.
    file: usize,
    path: PathBuf,
    old: Option<(Vec<u8>, u32)>,
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".{}.netconfig-tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Applies `config` (rendered as `files`) under `root_dir`: see the module documentation.
pub fn apply(
    config: &NetworkConfig,
    files: &[RenderedFile],
    root_dir: &str,
    ctl: &mut dyn LinkControl,
) -> Result<Outcome, ApplyError> {
    use std::os::unix::fs::MetadataExt;
    let root = root_dir.trim_end_matches('/');
    let mut want = Vec::new();
    for device in &config.devices {
        desired(config, device, None, &mut want)?;
    }
    // Which devices changed: those whose files changed (a file names its device).
    let mut backups = Vec::new();
    let mut affected: Vec<String> = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let path = PathBuf::from(format!("{root}{}", file.path));
        let old = std::fs::read(&path).ok();
        if !changed(
            file,
            old.as_deref()
                .map(|b| String::from_utf8_lossy(b))
                .as_deref(),
        ) {
            continue;
        }
        let mode = std::fs::metadata(&path).map_or(0o644, |m| m.mode() & 0o7777);
        backups.push(Backup {
            file: index,
            path,
            old: old.map(|b| (b, mode)),
        });
        for device in &want {
            if file_names_device(&file.path, &device.name) && !affected.contains(&device.name) {
                affected.push(device.name.clone());
            }
        }
    }
    let plan: Vec<Desired> = want
        .iter()
        .filter(|d| affected.contains(&d.name))
        .cloned()
        .collect();
    let before = snapshot(ctl).map_err(|e| ApplyError::RolledBack {
        cause: e,
        rollback: None,
    })?;
    let outcome = Outcome {
        files: backups
            .iter()
            .map(|b| b.path.display().to_string())
            .collect(),
        devices: plan.iter().map(|d| d.name.clone()).collect(),
    };
    let result = (|| -> Result<(), String> {
        for backup in &backups {
            let file = &files[backup.file];
            write_file(&backup.path, file.content.as_bytes(), file.mode)
                .map_err(|e| format!("{}: {e}", backup.path.display()))?;
        }
        for device in &plan {
            let now = snapshot(ctl)?;
            converge(ctl, device, &now)?;
        }
        let after = snapshot(ctl)?;
        verify(&plan, &after)
    })();
    match result {
        Ok(()) => Ok(outcome),
        Err(cause) => {
            let rollback = rollback(ctl, &backups, &plan, &before).err();
            Err(ApplyError::RolledBack { cause, rollback })
        }
    }
}

/// Whether a rendered file belongs to `device` (`ifcfg-em1`, `10-netconfig-em1.network`,
/// `em1.nmconnection`); the single ENI file belongs to every device.
fn file_names_device(path: &str, device: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == "interfaces"
        || ["ifcfg-", "route-", "route6-", "rule-"]
            .iter()
            .any(|p| name.strip_prefix(p) == Some(device))
        || name
            .strip_prefix("10-netconfig-")
            .and_then(|n| n.rsplit_once('.'))
            .is_some_and(|(d, _)| d == device)
        || name.strip_suffix(".nmconnection") == Some(device)
}

/// Puts back the files and the live state of the planned devices as `before` had them.
fn rollback(
    ctl: &mut dyn LinkControl,
    backups: &[Backup],
    plan: &[Desired],
    before: &Snapshot,
) -> Result<(), String> {
    let mut errors = Vec::new();
    for backup in backups {
        let result = match &backup.old {
            Some((bytes, mode)) => write_file(&backup.path, bytes, *mode),
            None => std::fs::remove_file(&backup.path).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }),
        };
        if let Err(e) = result {
            errors.push(format!("{}: {e}", backup.path.display()));
        }
    }
    let mut restored = Vec::new();
    for device in plan.iter().rev() {
        let now = match snapshot(ctl) {
            Ok(now) => now,
            Err(e) => {
                errors.push(e);
                break;
            }
        };
        match before.links.get(&device.name) {
            None => {
                if now.links.contains_key(&device.name) {
                    if let Err(e) = ctl.ip(&to_args(&["link", "del", &device.name])) {
                        errors.push(e);
                    }
                }
            }
            Some(state) => {
                let old = Desired {
                    name: device.name.clone(),
                    create: None,
                    state: state.clone(),
                    routes: before
                        .routes
                        .iter()
                        .filter(|r| r.dev == device.name)
                        .cloned()
                        .collect(),
                    rules: Vec::new(),
                    dhcp: false,
                };
                if let Err(e) = converge(ctl, &old, &now) {
                    errors.push(e);
                }
                restored.push(old);
            }
        }
    }
    if errors.is_empty() {
        let after = snapshot(ctl)?;
        verify(&restored, &after)
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_devices_are_reconfigured_with_exact_commands() {
        let root = tempfile::tempdir().expect("temp dir");
        let text = "network_config:\n  - {type: interface, name: em1, mtu: 9000, addresses: [{ip_netmask: 192.0.2.7/24}]}\n  - {type: interface, name: em2, use_dhcp: true}\n";
        let doc = crate::parse(text).expect("parses");
        let facts = crate::nics::FixedNics(Vec::new());
        let aliases = crate::nics::aliases(&facts, &[]).expect("aliases");
        let config = crate::network_config(&doc, &aliases);
        let files = crate::Renderer::render(&crate::Ifcfg, &config, &facts).expect("renders");
        // em2's file is already what it should be: em2 must not be touched.
        let em2 = files
            .iter()
            .find(|f| f.path.ends_with("ifcfg-em2"))
            .expect("em2");
        let path = format!("{}{}", root.path().display(), em2.path);
        std::fs::create_dir_all(Path::new(&path).parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, &em2.content).expect("write");
        let mut recorder = Recorder {
            links_json: r#"[{"ifname":"em1","flags":["UP"],"mtu":1500,"addr_info":[{"local":"192.0.2.5","prefixlen":24,"scope":"global"}]},{"ifname":"em2","flags":["UP"],"mtu":1500,"addr_info":[]}]"#.to_owned(),
            routes_json: "[]".to_owned(),
            ..Recorder::default()
        };
        let root_dir = root.path().display().to_string();
        // The recorder's state never changes, so verification fails and everything is
        // rolled back: both command lists are checked.
        let error =
            apply(&config, &files, &root_dir, &mut recorder).expect_err("verification fails");
        assert!(
            error.to_string().contains("em1: MTU 1500 instead of 9000"),
            "{error}"
        );
        assert_eq!(
            recorder.commands,
            [
                "ip link set em1 mtu 9000",
                "ip addr del 192.0.2.5/24 dev em1",
                "ip addr add 192.0.2.7/24 dev em1",
                "ip link set em1 up",
                // Rollback: the recorded state is already the old one.
                "ip link set em1 up",
            ]
        );
        // Files put back: em1's did not exist before.
        assert!(!Path::new(&format!(
            "{root_dir}/etc/sysconfig/network-scripts/ifcfg-em1"
        ))
        .exists());
    }

    #[test]
    fn files_name_their_devices() {
        assert!(file_names_device(
            "/etc/sysconfig/network-scripts/route-em1",
            "em1"
        ));
        assert!(!file_names_device(
            "/etc/sysconfig/network-scripts/route-em10",
            "em1"
        ));
        assert!(file_names_device(
            "/etc/systemd/network/10-netconfig-em1.network",
            "em1"
        ));
        assert!(file_names_device(
            "/etc/NetworkManager/system-connections/em1.nmconnection",
            "em1"
        ));
        assert!(file_names_device("/etc/network/interfaces", "em9"));
    }
}
