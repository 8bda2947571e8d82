//! `os-net-config`: render a declarative host network configuration into the files of a
//! network provider, flag-compatible with upstream os-net-config 18.1.0. `--noop` prints the
//! files that would change as upstream does (`File: <path>` blocks); `--no-activate` writes
//! them; otherwise the affected devices are reconfigured through iproute2, verified, and
//! everything is rolled back if any step fails. Beyond upstream: every validation
//! error at once with its line, column and field path; `--diff`; the `networkd` and
//! `nm-keyfile` providers; `--sysfs-root` to number NICs from another tree.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use metadata_applier::replace_file;
use netconfig::nics::{aliases, HostFacts, Sysfs};
use netconfig::{
    changed, noop_output, Diagnostic, Eni, Ifcfg, Networkd, NmKeyfile, Renderer, Severity,
};
use tracing::{error, info, warn, Level};
use tripleo_rs::logging;

/// Exit status bits (upstream's `exit_codes.py`).
const EXIT_ERROR: u8 = 1;
const EXIT_FILES_CHANGED: u8 = 2;
const EXIT_NETWORK_CONFIG_FAILED: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Provider {
    Ifcfg,
    Eni,
    /// systemd-networkd .netdev/.network files (beyond upstream; never autodetected).
    Networkd,
    /// NetworkManager keyfiles (beyond upstream; never autodetected).
    NmKeyfile,
}

/// Configures host networking from a YAML or JSON description.
#[derive(Debug, Parser)]
#[command(name = "os-net-config", version)]
struct Args {
    /// The network configuration (YAML 1.2 or JSON).
    #[arg(
        short = 'c',
        long = "config-file",
        default_value = "/etc/os-net-config/config.yaml"
    )]
    config_file: PathBuf,
    /// Interface aliases: `interface_mapping: {nic1: em3, prov: "52:54:00:00:00:05"}`.
    #[arg(
        short = 'm',
        long = "mapping-file",
        default_value = "/etc/os-net-config/mapping.yaml"
    )]
    mapping_file: PathBuf,
    /// The files to write [default: ifcfg when <root>/etc/sysconfig/network-scripts exists,
    /// else eni when <root>/etc/network exists].
    #[arg(short = 'p', long, value_enum)]
    provider: Option<Provider>,
    /// Prefix for every file path read and written.
    #[arg(short = 'r', long = "root-dir", default_value = "")]
    root_dir: String,
    /// Print the files that would change; write nothing.
    #[arg(long)]
    noop: bool,
    /// Print a unified diff of each file that would change against what is under the root
    /// (new files against /dev/null); write nothing. Exit codes as with --noop.
    #[arg(long, conflicts_with = "noop")]
    diff: bool,
    /// Exit 2 when files changed (and upstream's other bits), 0 when nothing did.
    #[arg(long)]
    detailed_exit_codes: bool,
    /// Accepted for compatibility: validation errors are always fatal here.
    #[arg(long)]
    exit_on_validation_errors: bool,
    /// Also remove the provider's interface files under the root that this configuration
    /// does not produce (ifcfg: `ifcfg-*` except `ifcfg-lo`, with their route and rule files).
    #[arg(long)]
    cleanup: bool,
    /// Write the files but do not restart interfaces.
    #[arg(long)]
    no_activate: bool,
    /// Name devices by their alias (nic1, or a mapping file name) and pin each to its NIC's
    /// MAC, which is renamed to the alias.
    #[arg(long)]
    persist_mapping: bool,
    /// Print the alias mapping of these interfaces (all when none) as JSON and exit.
    #[arg(short = 'i', long, num_args = 0.., value_name = "INTERFACE")]
    interfaces: Option<Vec<String>>,
    /// Where to find sys/class/net for NIC numbering [default: /].
    #[arg(long, value_name = "DIR", default_value = "/")]
    sysfs_root: PathBuf,
    /// Print debugging output.
    #[arg(short, long)]
    debug: bool,
    /// Print verbose output.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = if args.debug {
        Level::DEBUG
    } else if args.verbose {
        Level::INFO
    } else {
        Level::WARN
    };
    logging::init("os-net-config", level);
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            error!("{message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Prints diagnostics as `<file>:<line>:<col>: <path>: <message>`; true if any is an error.
fn report(file: &Path, diagnostics: &[Diagnostic]) -> bool {
    for d in diagnostics {
        let line = format!("{}:{d}", file.display());
        match d.severity {
            Severity::Warning => warn!("{line}"),
            Severity::Error => error!("{line}"),
        }
    }
    diagnostics.iter().any(|d| d.severity == Severity::Error)
}

fn run(args: &Args) -> Result<u8, String> {
    let facts = Sysfs {
        root: args.sysfs_root.clone(),
    };
    let mapping = if args.mapping_file.exists() {
        let text = read(&args.mapping_file)?;
        let root =
            netconfig::parse(&text).map_err(|d| format!("{}:{d}", args.mapping_file.display()))?;
        netconfig::validate::mapping_entries(&root).map_err(|found| {
            report(&args.mapping_file, &found);
            format!("{}: invalid mapping file", args.mapping_file.display())
        })?
    } else {
        Vec::new()
    };
    let aliases =
        aliases(&facts, &mapping).map_err(|e| format!("{}: {e}", args.mapping_file.display()))?;
    if let Some(interfaces) = &args.interfaces {
        return Ok(print_interfaces(interfaces, &aliases, &facts));
    }

    let text = read(&args.config_file)?;
    let root =
        netconfig::parse(&text).map_err(|d| format!("{}:{d}", args.config_file.display()))?;
    let mut found = netconfig::validate(&root);
    found.extend(netconfig::validate::unresolved_aliases(&root, &aliases));
    found.sort_by_key(|d| (d.line, d.column));
    if report(&args.config_file, &found) {
        return Err(format!(
            "{}: {} error(s); nothing written",
            args.config_file.display(),
            found
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count()
        ));
    }
    let config = if args.persist_mapping {
        netconfig::network_config_persistent(&root, &aliases, &facts)
    } else {
        netconfig::network_config(&root, &aliases)
    };
    let root_dir = args.root_dir.trim_end_matches('/');
    let provider = match args.provider {
        Some(p) => p,
        None if Path::new(&format!("{root_dir}/etc/sysconfig/network-scripts")).is_dir() => {
            Provider::Ifcfg
        }
        None if Path::new(&format!("{root_dir}/etc/network")).is_dir() => Provider::Eni,
        None => return Err("Unable to set provider for this operating system.".to_owned()),
    };
    let renderer: &dyn Renderer = match provider {
        Provider::Ifcfg => &Ifcfg,
        Provider::Eni => &Eni,
        Provider::Networkd => &Networkd,
        Provider::NmKeyfile => &NmKeyfile,
    };
    let files = match renderer.render(&config, &facts) {
        Ok(files) => files,
        Err(e) => {
            error!("{e}");
            return Ok(network_config_failed(args));
        }
    };
    let existing = |path: &str| std::fs::read_to_string(path).ok();
    let changed_count = if args.diff {
        let mut out = std::io::stdout().lock();
        let mut count = 0;
        for file in &files {
            let path = format!("{root_dir}{}", file.path);
            let current = existing(&path);
            if !changed(file, current.as_deref()) {
                continue;
            }
            count += 1;
            let old_name = if current.is_some() {
                path.as_str()
            } else {
                "/dev/null"
            };
            let text = similar::udiff::unified_diff(
                similar::Algorithm::Myers,
                current.as_deref().unwrap_or(""),
                &file.content,
                3,
                Some((old_name, &path)),
            );
            out.write_all(text.as_bytes())
                .map_err(|e| format!("stdout: {e}"))?;
        }
        count
    } else if args.noop {
        let (text, count) = noop_output(&files, root_dir, existing);
        std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| format!("stdout: {e}"))?;
        count
    } else if args.no_activate {
        let mut count = 0;
        for file in &files {
            let path = format!("{root_dir}{}", file.path);
            if !changed(file, existing(&path).as_deref()) {
                continue;
            }
            count += 1;
            if let Some(dir) = Path::new(&path).parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            replace_file(Path::new(&path), file.content.as_bytes(), file.mode)
                .map_err(|e| format!("{path}: {e}"))?;
        }
        count
    } else {
        let mut ip = netconfig::apply::IpCommand::default();
        let result = netconfig::apply::apply(&config, &files, root_dir, &mut ip);
        for command in &ip.log {
            info!("{command}");
        }
        match result {
            Ok(outcome) => {
                for device in &outcome.devices {
                    info!("{device}: configured");
                }
                outcome.files.len()
            }
            Err(e) => {
                error!("{e}");
                return Ok(network_config_failed(args));
            }
        }
    };
    let removed = if args.cleanup {
        cleanup(provider, root_dir, &files, args)?
    } else {
        0
    };
    let changed_count = changed_count + removed;
    Ok(if args.detailed_exit_codes && changed_count > 0 {
        EXIT_FILES_CHANGED
    } else {
        0
    })
}

/// The exit status when the configuration cannot be rendered or applied.
fn network_config_failed(args: &Args) -> u8 {
    if args.detailed_exit_codes {
        EXIT_NETWORK_CONFIG_FAILED
    } else {
        EXIT_ERROR
    }
}

/// `--cleanup`: the ifcfg provider's files under the root for devices the configuration no
/// longer has (never `lo`): removed with --no-activate, shown as deletions with --diff,
/// listed on stderr with --noop. Returns how many there are.
fn cleanup(
    provider: Provider,
    root_dir: &str,
    files: &[netconfig::RenderedFile],
    args: &Args,
) -> Result<usize, String> {
    if provider != Provider::Ifcfg {
        return Ok(0);
    }
    let dir = format!("{root_dir}/etc/sysconfig/network-scripts");
    let generated: Vec<String> = files
        .iter()
        .map(|f| format!("{root_dir}{}", f.path))
        .collect();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut stale: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            ["ifcfg-", "route-", "route6-", "rule-"]
                .iter()
                .any(|prefix| {
                    name.strip_prefix(prefix)
                        .is_some_and(|dev| dev != "lo" && !dev.is_empty())
                })
        })
        .map(|name| format!("{dir}/{name}"))
        .filter(|path| !generated.contains(path))
        .collect();
    stale.sort();
    for path in &stale {
        if args.diff {
            let old = std::fs::read_to_string(path).unwrap_or_default();
            let text = similar::udiff::unified_diff(
                similar::Algorithm::Myers,
                &old,
                "",
                3,
                Some((path, "/dev/null")),
            );
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .map_err(|e| format!("stdout: {e}"))?;
        } else if args.noop {
            warn!("cleanup would remove {path}");
        } else if args.no_activate {
            std::fs::remove_file(path).map_err(|e| format!("{path}: {e}"))?;
            warn!("cleanup removed {path}");
        }
    }
    Ok(stale.len())
}

/// `-i`: each name's device as JSON, sorted; exit 1 if one maps to nothing.
fn print_interfaces(
    names: &[String],
    aliases: &netconfig::nics::Aliases,
    facts: &dyn HostFacts,
) -> u8 {
    let nics = facts.nics();
    let mut mapped = BTreeMap::new();
    let mut missing = false;
    let names: Vec<String> = if names.is_empty() {
        aliases.entries.iter().map(|(a, _)| a.clone()).collect()
    } else {
        names.to_vec()
    };
    for name in &names {
        match aliases.device(name) {
            Some(device) => {
                mapped.insert(name.clone(), device.to_owned());
            }
            None if nics.iter().any(|n| &n.name == name) => {
                mapped.insert(name.clone(), name.clone());
            }
            None => missing = true,
        }
    }
    let body: Vec<String> = mapped
        .iter()
        .map(|(k, v)| format!("\"{}\": \"{}\"", json_escape(k), json_escape(v)))
        .collect();
    logging::print_line(format!("{{{}}}", body.join(", ")).as_bytes());
    u8::from(missing)
}

fn json_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
