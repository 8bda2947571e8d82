//! `baremetal`: enroll, power and boot machines with Ironic's nouns and verbs
//! (`baremetal node import|list|show|power|boot-device|manage|provide|…`), on the `baremetal`
//! crate: nodes live in an SQLite file under `--state-dir`, BMCs are driven through Redfish,
//! ipmitool, QEMU or the fake driver.
//!
//! Errors are one line on stderr and a non-zero exit; passwords are shown as `******`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use baremetal::conductor::Conductor;
use baremetal::inventory;
use baremetal::node::{Node, Value};
use baremetal::power::{run_bounded, BootDevice, Controller, DriverOptions, Policy, PowerAction};
use baremetal::store::{NodeStore, SqliteStore};
use baremetal::Event;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::Level;

/// Enroll, power and boot bare-metal machines.
#[derive(Debug, Parser)]
#[command(name = "baremetal", version, args_override_self = true)]
struct Cli {
    /// Where the node database (and QEMU machines) live [default: $XDG_DATA_HOME/tripleo-rs/baremetal].
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// Seconds a power change may take to show on the BMC.
    #[arg(long, global = true, default_value_t = 60.0)]
    power_timeout: f64,
    /// Seconds a BMC command is retried on busy or lost answers.
    #[arg(long, global = true, default_value_t = 60.0)]
    command_timeout: f64,
    /// Least seconds between two commands to one BMC [default: the protocol's; IPMI 5].
    #[arg(long, global = true)]
    bmc_min_interval: Option<f64>,
    /// Nodes worked on at once.
    #[arg(long, global = true, default_value_t = 20)]
    concurrency: usize,
    /// The ipmitool program.
    #[arg(long, global = true)]
    ipmitool: Option<PathBuf>,
    /// More log lines on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bare-metal nodes.
    #[command(subcommand)]
    Node(NodeCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct OutputFormat {
    /// Output format.
    #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum InventoryFormat {
    Instackenv,
    Bifrost,
    Csv,
    Seed,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Enroll the nodes of an inventory (instackenv/nodes.json, bifrost JSON/YAML, CSV, seed
    /// records); nodes already known (same uuid, MAC or BMC) are updated.
    Import {
        file: PathBuf,
        /// The inventory format [default: guessed from the name and content].
        #[arg(long, value_enum)]
        format: Option<InventoryFormat>,
    },
    /// List nodes.
    List(OutputFormat),
    /// Show one node.
    Show {
        node: String,
        #[command(flatten)]
        output: OutputFormat,
    },
    /// Set node fields.
    Set {
        node: String,
        /// KEY=VALUE of instance_info (e.g. image_source=http://…/image.qcow2); repeatable.
        #[arg(long = "instance-info", value_name = "KEY=VALUE")]
        instance_info: Vec<String>,
        /// KEY=VALUE of properties (cpus, memory_mb, local_gb, cpu_arch, capabilities, …).
        #[arg(long = "property", value_name = "KEY=VALUE")]
        property: Vec<String>,
    },
    /// Remove a node (only in enroll, manageable or adopt failed).
    Delete { node: String },
    /// Power on, off, reboot, or read the power state, of one or more nodes at once.
    Power {
        #[arg(value_enum)]
        action: PowerVerb,
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Ask the operating system (soft power off / soft reboot).
        #[arg(long)]
        soft: bool,
    },
    /// Boot device.
    #[command(subcommand, name = "boot-device")]
    BootDevice(BootDeviceCommand),
    /// enroll → manageable (checks the BMC answers); available → manageable.
    Manage {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// manageable → available.
    Provide {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// manageable → inspecting → manageable (out-of-band: the BMC answers).
    Inspect {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// available → deploying → wait call-back: PXE next boot, power on or reboot.
    Deploy {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// active / deploy failed / wait call-back → available: power off.
    Undeploy {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Stop a waiting operation (wait call-back → deploy failed, …).
    Abort {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PowerVerb {
    On,
    Off,
    Reboot,
    Status,
}

#[derive(Debug, Subcommand)]
enum BootDeviceCommand {
    /// Set the boot device (next boot only unless --persistent).
    Set {
        node: String,
        #[arg(value_enum)]
        device: Device,
        #[arg(long)]
        persistent: bool,
    },
    /// Show the boot device the BMC reports.
    Show {
        node: String,
        #[command(flatten)]
        output: OutputFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Device {
    Pxe,
    Disk,
    Cdrom,
    Bios,
    Safe,
}

impl From<Device> for BootDevice {
    fn from(d: Device) -> Self {
        match d {
            Device::Pxe => BootDevice::Pxe,
            Device::Disk => BootDevice::Disk,
            Device::Cdrom => BootDevice::Cdrom,
            Device::Bios => BootDevice::Bios,
            Device::Safe => BootDevice::Safe,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => Level::WARN,
        1 => Level::INFO,
        _ => Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "baremetal: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("tripleo-rs/baremetal"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither --state-dir, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/tripleo-rs/baremetal"))
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("{flag}: {value} is not a number of seconds"))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let state_dir = match &cli.state_dir {
        Some(d) => d.clone(),
        None => default_state_dir()?,
    };
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("{}: cannot create the state directory", state_dir.display()))?;
    let store: Arc<dyn NodeStore> = Arc::new(SqliteStore::open(&state_dir.join("nodes.sqlite"))?);
    let policy = Policy {
        power_timeout: seconds(cli.power_timeout, "--power-timeout")?,
        command_retry_timeout: seconds(cli.command_timeout, "--command-timeout")?,
        min_interval: cli
            .bmc_min_interval
            .map(|s| seconds(s, "--bmc-min-interval"))
            .transpose()?,
        ..Policy::default()
    };
    let options = DriverOptions {
        ipmitool: cli.ipmitool.clone(),
        qemu: None,
        qemu_state_dir: Some(state_dir.join("qemu")),
        // No HTTP request outlives the command it belongs to.
        http_timeout: Some(policy.command_retry_timeout.min(Duration::from_secs(30))),
    };
    let conductor = Conductor::new(Arc::clone(&store), Controller::new(policy), options);
    let Command::Node(command) = cli.command;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // A BMC request abandoned at its deadline may still sit in a blocking thread (an HTTP
    // read): the answer is printed by then, so do not wait for it on the way out.
    let runtime = ShutdownPromptly(Some(runtime));
    let runtime = runtime.0.as_ref().expect("runtime present until drop");
    let concurrency = cli.concurrency;
    match command {
        NodeCommand::Import { file, format } => import(&conductor, &file, format),
        NodeCommand::List(output) => {
            let nodes: Vec<Node> = store.list()?.into_iter().map(|v| v.node).collect();
            match output.format {
                Format::Json => print_json(&serde_json::Value::Array(
                    nodes.iter().map(list_entry).collect(),
                )),
                Format::Table => {
                    let rows: Vec<Vec<String>> = nodes
                        .iter()
                        .map(|n| {
                            vec![
                                n.uuid.to_string(),
                                n.name.clone().unwrap_or_default(),
                                n.power_state.map_or("None".to_owned(), |p| p.to_string()),
                                n.provision_state.to_string(),
                                if n.maintenance { "True" } else { "False" }.to_owned(),
                            ]
                        })
                        .collect();
                    print_table(
                        &[
                            "UUID",
                            "Name",
                            "Power State",
                            "Provisioning State",
                            "Maintenance",
                        ],
                        &rows,
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Show { node, output } => {
            let node = store.get(&node)?.node;
            let mut json = node.to_redacted_json();
            if output.format == Format::Table {
                // The history is long; `-f json` has it.
                if let Some(fields) = json.as_object_mut() {
                    fields.remove("history");
                }
            }
            show(&json, output.format);
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Set {
            node,
            instance_info,
            property,
        } => {
            let instance_info = pairs(&instance_info, "--instance-info")?;
            let property = pairs(&property, "--property")?;
            conductor.edit(&node, |n| {
                for (k, v) in &instance_info {
                    // Credentials (`*_password`, tokens) are kept as secrets, shown as ******.
                    let value = if baremetal::node::is_secret_key(k) {
                        Value::Secret(v.as_str().into())
                    } else {
                        Value::Text(v.clone())
                    };
                    n.instance_info.insert(k.clone(), value);
                }
                for (k, v) in &property {
                    set_property(n, k, v)?;
                }
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Delete { node } => {
            let deleted = conductor.delete(&node)?;
            say(&format!("Deleted node {}", deleted.ident()));
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Power {
            action,
            nodes,
            soft,
        } => runtime.block_on(power(&conductor, action, &nodes, soft, concurrency)),
        NodeCommand::BootDevice(BootDeviceCommand::Set {
            node,
            device,
            persistent,
        }) => {
            let readback =
                runtime.block_on(conductor.set_boot_device(&node, device.into(), persistent))?;
            tracing::info!(
                "{node}: the BMC reports boot device {}",
                readback
                    .device
                    .map_or("unknown".to_owned(), |d| d.to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::BootDevice(BootDeviceCommand::Show { node, output }) => {
            let readback = runtime.block_on(conductor.boot_device(&node))?;
            show(
                &serde_json::json!({
                    "boot_device": readback
                        .device
                        .map(|d| d.as_str().to_owned())
                        .or(readback.reported),
                    "persistent": readback.persistent,
                }),
                output.format,
            );
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Manage { nodes } => {
            runtime.block_on(verb(&conductor, Event::Manage, &nodes, concurrency))
        }
        NodeCommand::Provide { nodes } => {
            runtime.block_on(verb(&conductor, Event::Provide, &nodes, concurrency))
        }
        NodeCommand::Inspect { nodes } => {
            runtime.block_on(verb(&conductor, Event::Inspect, &nodes, concurrency))
        }
        NodeCommand::Deploy { nodes } => {
            runtime.block_on(verb(&conductor, Event::Deploy, &nodes, concurrency))
        }
        NodeCommand::Undeploy { nodes } => {
            runtime.block_on(verb(&conductor, Event::Delete, &nodes, concurrency))
        }
        NodeCommand::Abort { nodes } => {
            runtime.block_on(verb(&conductor, Event::Abort, &nodes, concurrency))
        }
    }
}

/// Drops the runtime without waiting for blocking threads still running abandoned requests.
struct ShutdownPromptly(Option<tokio::runtime::Runtime>);

impl Drop for ShutdownPromptly {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_timeout(Duration::from_millis(100));
        }
    }
}

fn say(line: &str) {
    tripleo_rs::logging::print_line(line.as_bytes());
}

fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    say(&text);
}

fn show(value: &serde_json::Value, format: Format) {
    match format {
        Format::Json => print_json(value),
        Format::Table => {
            let rows: Vec<Vec<String>> = value
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "None".to_owned(),
                        other => other.to_string(),
                    };
                    vec![k.clone(), text]
                })
                .collect();
            print_table(&["Field", "Value"], &rows);
        }
    }
}

/// `openstack`-style boxed table.
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule: String = widths.iter().fold("+".to_owned(), |mut s, w| {
        s.push_str(&"-".repeat(w + 2));
        s.push('+');
        s
    });
    let line = |cells: Vec<&str>| {
        let mut s = "|".to_owned();
        for (cell, w) in cells.iter().zip(&widths) {
            s.push_str(&format!(" {cell:<w$} |"));
        }
        s
    };
    say(&rule);
    say(&line(headers.to_vec()));
    say(&rule);
    for row in rows {
        say(&line(row.iter().map(String::as_str).collect()));
    }
    say(&rule);
}

fn list_entry(n: &Node) -> serde_json::Value {
    serde_json::json!({
        "UUID": n.uuid.to_string(),
        "Name": n.name,
        "Instance UUID": n.instance_info.get("instance_uuid").and_then(Value::as_str),
        "Power State": n.power_state.map(|p| p.as_str()),
        "Provisioning State": n.provision_state.as_str(),
        "Maintenance": n.maintenance,
    })
}

fn pairs(items: &[String], flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("{flag} {item:?}: expected KEY=VALUE"),
        })
        .collect()
}

fn set_property(node: &mut Node, key: &str, value: &str) -> Result<(), baremetal::Error> {
    let ident = node.ident();
    let bad = |message: String| baremetal::Error::InvalidNode {
        node: ident.clone(),
        field: "properties",
        message,
    };
    let p = &mut node.properties;
    match key {
        "cpus" => {
            p.cpus = Some(
                value
                    .parse()
                    .map_err(|_| bad(format!("cpus {value:?} is not a number")))?,
            )
        }
        "memory_mb" => {
            p.memory_mb = Some(
                value
                    .parse()
                    .map_err(|_| bad(format!("memory_mb {value:?} is not a number")))?,
            )
        }
        "local_gb" => {
            p.local_gb = Some(
                value
                    .parse()
                    .map_err(|_| bad(format!("local_gb {value:?} is not a number")))?,
            )
        }
        "cpu_arch" => p.cpu_arch = Some(value.to_owned()),
        "capabilities" => {
            p.capabilities = baremetal::node::parse_capabilities(value)
                .map_err(|item| bad(format!("capabilities: {item:?} is not key:value")))?
        }
        other => {
            p.other
                .insert(other.to_owned(), Value::Text(value.to_owned()));
        }
    }
    Ok(())
}

fn import(
    conductor: &Conductor,
    file: &Path,
    format: Option<InventoryFormat>,
) -> anyhow::Result<ExitCode> {
    let parsed = match format {
        None => inventory::load(file)?,
        Some(f) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("{}: cannot read", file.display()))?;
            let name = file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let format = match f {
                InventoryFormat::Instackenv => inventory::Format::Instackenv,
                InventoryFormat::Bifrost => inventory::Format::Bifrost,
                InventoryFormat::Csv => inventory::Format::Csv,
                InventoryFormat::Seed => inventory::Format::Seed,
            };
            inventory::parse(format, &name, &text)?
        }
    };
    for warning in &parsed.warnings {
        tracing::warn!("{warning}");
    }
    let store = conductor.store();
    let existing: Vec<Node> = store.list()?.into_iter().map(|v| v.node).collect();
    let mut outcome = BTreeMap::new();
    for node in &parsed.nodes {
        match inventory::match_existing(&existing, node)? {
            None => {
                store.create(node)?;
                outcome.insert(node.ident(), "enrolled");
            }
            Some(old) => {
                let id = old.uuid.to_string();
                conductor.edit(&id, |stored| {
                    // The inventory owns the hardware description; state and history stay.
                    stored.name = node.name.clone().or_else(|| stored.name.clone());
                    stored.driver = node.driver.clone();
                    stored.driver_info = node.driver_info.clone();
                    stored.properties = node.properties.clone();
                    stored.ports = node.ports.clone();
                    if node.resource_class.is_some() {
                        stored.resource_class = node.resource_class.clone();
                    }
                    Ok(())
                })?;
                outcome.insert(node.ident(), "updated");
            }
        }
    }
    for (name, what) in &outcome {
        say(&format!("{name}: {what}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal for work on several nodes.
fn progress(count: usize, what: &str) -> Option<indicatif::ProgressBar> {
    if count < 2 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    Some(bar)
}

async fn power(
    conductor: &Conductor,
    verb: PowerVerb,
    nodes: &[String],
    soft: bool,
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    let action = match (verb, soft) {
        (PowerVerb::On | PowerVerb::Status, true) => {
            bail!("--soft goes with off and reboot only")
        }
        (PowerVerb::Status, false) => None,
        (PowerVerb::On, false) => Some(PowerAction::On),
        (PowerVerb::Off, false) => Some(PowerAction::Off),
        (PowerVerb::Off, true) => Some(PowerAction::SoftOff),
        (PowerVerb::Reboot, false) => Some(PowerAction::Reboot),
        (PowerVerb::Reboot, true) => Some(PowerAction::SoftReboot),
    };
    let Some(action) = action else {
        let mut failed = false;
        for id in nodes {
            match conductor.power_status(id).await {
                Ok(node) => say(&format!(
                    "{}: {}",
                    node.ident(),
                    node.power_state
                        .map_or("None".to_owned(), |p| p.to_string())
                )),
                Err(e) => {
                    failed = true;
                    let _ = writeln!(std::io::stderr(), "baremetal: error: {e}");
                }
            }
        }
        return Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    };
    let bar = progress(nodes.len(), action.as_str());
    let tick = bar.clone();
    let results = conductor
        .power_many(nodes, action, concurrency, move |_, _| {
            if let Some(bar) = &tick {
                bar.inc(1);
            }
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut failed = 0;
    for (id, result) in nodes.iter().zip(&results) {
        match result {
            Ok((node, outcome)) => tracing::info!(
                "{}: {} ({} polls, {:.1} s)",
                node.ident(),
                outcome.after,
                outcome.polls,
                outcome.elapsed.as_secs_f64()
            ),
            Err(e) => {
                failed += 1;
                let _ = writeln!(std::io::stderr(), "baremetal: error: {e}");
                tracing::debug!("{id} failed");
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn verb(
    conductor: &Conductor,
    event: Event,
    nodes: &[String],
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    let bar = progress(nodes.len(), event.as_str());
    let results = run_bounded(nodes.to_vec(), concurrency, |id| {
        let (conductor, bar) = (conductor.clone(), bar.clone());
        async move {
            let result = conductor.provision(&id, event).await;
            if let Some(bar) = bar {
                bar.inc(1);
            }
            result
        }
    })
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut failed = false;
    for result in results {
        match result {
            Ok(node) => tracing::info!("{}: {}", node.ident(), node.provision_state),
            Err(e) => {
                failed = true;
                let _ = writeln!(std::io::stderr(), "baremetal: error: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
