//! `os-collect-config`: collect metadata from the configured sources, cache it, and run a
//! command (usually os-refresh-config) whenever it changes. Flag- and configuration-file-
//! compatible with upstream os-collect-config for the heat_local, local, ec2 and request
//! collectors; cfn, heat and zaqar are accepted and reported as not configured.

use std::io::Write as _;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use metadata_applier::collect::{
    collect_and_store, collect_only, Backoff, Cache, Collector, Ec2, Ec2Options, HeatLocal, Local,
    Request, Unsupported, DEFAULT_COLLECTORS,
};
use metadata_applier::json;
use refresh_config::SignalPipe;
use tracing::{debug, error, info, warn, Level};
use tripleo_rs::ini::Ini;
use tripleo_rs::logging;

/// Collects metadata and runs a command when it changes. Collectors run, and merge, in the
/// order given (default: heat_local ec2 cfn heat request local zaqar).
#[derive(Debug, Parser)]
#[command(name = "os-collect-config", version)]
struct Args {
    /// Collectors to run, in order.
    collectors: Vec<String>,
    /// Command to run (by /bin/sh -c) when metadata changed; without one, print and exit.
    #[arg(short, long)]
    command: Option<String>,
    /// Cache directory [default: /var/lib/os-collect-config].
    #[arg(long)]
    cachedir: Option<PathBuf>,
    /// Copy of the cache refreshed before each command run [default: /var/run/os-collect-config].
    #[arg(long)]
    backup_cachedir: Option<PathBuf>,
    /// Collect once, run the command at most once, exit with its status.
    #[arg(long)]
    one_time: bool,
    /// Run the command even if nothing changed (implies --one-time).
    #[arg(long)]
    force: bool,
    /// Print the collected metadata as JSON and exit; run nothing, store nothing.
    #[arg(long)]
    print: bool,
    /// Print the cache directory and exit.
    #[arg(long)]
    print_cachedir: bool,
    /// Shortest sleep between polls, in seconds [default: 1].
    #[arg(long)]
    min_polling_interval: Option<f64>,
    /// Longest sleep between polls, in seconds [default: 30].
    #[arg(short = 'i', long)]
    polling_interval: Option<f64>,
    /// Sleep a random time up to this many seconds before the first poll [default: 0].
    #[arg(long)]
    splay: Option<f64>,
    /// Keys holding deployment lists to explode [default: deployments].
    #[arg(long = "deployment-key")]
    deployment_key: Vec<String>,
    /// Configuration files (INI) [default: ~/os-collect-config.conf, else /etc/os-collect-config.conf].
    #[arg(long = "config-file")]
    config_file: Vec<PathBuf>,
    /// Log debug messages too.
    #[arg(long)]
    debug: bool,
    /// Also append the log to this file.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// oslo.log options this tool accepts and ignores (it logs to stderr and --log-file).
    #[arg(long, hide = true)]
    use_syslog: bool,
    #[arg(long, hide = true)]
    use_journal: bool,
    #[arg(long, hide = true)]
    verbose: bool,
    /// heat_local: metadata files, merged in order.
    #[arg(long = "heat_local-path")]
    heat_local_path: Vec<PathBuf>,
    /// local: directories of JSON files.
    #[arg(long = "local-path")]
    local_path: Vec<PathBuf>,
    /// ec2: base URL of the metadata tree.
    #[arg(long = "ec2-metadata-url")]
    ec2_metadata_url: Option<String>,
    /// ec2: seconds each request may take.
    #[arg(long = "ec2-timeout")]
    ec2_timeout: Option<f64>,
    /// ec2: a mounted config drive to read instead of probing devices.
    #[arg(long = "ec2-config-drive-path")]
    ec2_config_drive_path: Option<PathBuf>,
    /// ec2: do not look for a config drive.
    #[arg(long = "ec2-noconfig-drive")]
    ec2_noconfig_drive: bool,
    /// request: URL of the JSON document.
    #[arg(long = "request-metadata-url")]
    request_metadata_url: Option<String>,
    /// request: seconds each request may take.
    #[arg(long = "request-timeout")]
    request_timeout: Option<f64>,
}

/// Options of the collectors this build does not implement, accepted so that existing
/// command lines keep working (`--cfn-…`, `--heat-…`, `--zaqar-…`, `--keystone-…`).
const IGNORED_GROUPS: [&str; 4] = ["--cfn-", "--heat-", "--zaqar-", "--keystone-"];
const IGNORED_FLAGS: [&str; 3] = [
    "--zaqar-use-websockets",
    "--zaqar-nouse-websockets",
    "--zaqar-ssl-certificate-validation",
];

/// Removes the ignored groups' options (and their values) from the command line.
fn strip_unsupported(args: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (mut kept, mut ignored) = (Vec::new(), Vec::new());
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        if IGNORED_GROUPS.iter().any(|g| arg.starts_with(g)) {
            if !arg.contains('=') && !IGNORED_FLAGS.contains(&arg.as_str()) {
                iter.next();
            }
            ignored.push(arg);
        } else {
            kept.push(arg);
        }
    }
    (kept, ignored)
}

/// The effective settings: command line over configuration file over defaults.
struct Settings {
    collectors: Vec<String>,
    command: Option<String>,
    cachedir: PathBuf,
    backup_cachedir: PathBuf,
    one_time: bool,
    force: bool,
    min_interval: f64,
    max_interval: f64,
    splay: f64,
    config_files: Vec<PathBuf>,
}

fn config_files(args: &Args) -> Vec<PathBuf> {
    if !args.config_file.is_empty() {
        return args.config_file.clone();
    }
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join("os-collect-config.conf"));
    home.into_iter()
        .chain([PathBuf::from("/etc/os-collect-config.conf")])
        .find(|p| p.is_file())
        .into_iter()
        .collect()
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

fn build(args: &Args, ini: &Ini) -> Result<(Settings, Vec<Box<dyn Collector>>), String> {
    // Seconds: finite, and positive except where zero means "none" (splay).
    let float = |cli: Option<f64>, group: &str, key: &str, default: f64| -> Result<f64, String> {
        let value = match cli {
            Some(v) => v,
            None => ini.get(group, key).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| format!("[{group}] {key} = {v} is not a number"))
            })?,
        };
        let zero_allowed = key == "splay";
        if !(0.0..=1e9).contains(&value) || (value == 0.0 && !zero_allowed) {
            return Err(format!(
                "{key} = {value}: expected seconds, more than 0 and at most 1e9"
            ));
        }
        Ok(value)
    };
    let flag = |cli: bool, key: &str| cli || ini.get("DEFAULT", key).is_some_and(is_true);
    let multi = |cli: &[String], group: &str, key: &str| -> Vec<String> {
        if cli.is_empty() {
            ini.get_all(group, key)
        } else {
            cli.to_vec()
        }
    };
    let paths = |cli: &[PathBuf], group: &str, key: &str, default: &[PathBuf]| -> Vec<PathBuf> {
        if !cli.is_empty() {
            return cli.to_vec();
        }
        let from_file: Vec<PathBuf> = ini
            .get_all(group, key)
            .into_iter()
            .map(PathBuf::from)
            .collect();
        if from_file.is_empty() {
            default.to_vec()
        } else {
            from_file
        }
    };
    let mut collectors = multi(&args.collectors, "DEFAULT", "collectors");
    if collectors.is_empty() {
        collectors = DEFAULT_COLLECTORS.iter().map(|c| (*c).to_owned()).collect();
    }
    let unknown: Vec<&String> = collectors
        .iter()
        .filter(|c| !DEFAULT_COLLECTORS.contains(&c.as_str()))
        .collect();
    if !unknown.is_empty() {
        // Python list reprs, as upstream prints them.
        let python_list = |names: Vec<&str>| {
            let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
            format!("[{}]", quoted.join(", "))
        };
        return Err(format!(
            "Unknown collectors {}. Valid collectors are: {}",
            python_list(unknown.iter().map(|s| s.as_str()).collect()),
            python_list(DEFAULT_COLLECTORS.to_vec())
        ));
    }
    let mut deployment_keys = multi(&args.deployment_key, "DEFAULT", "deployment_key");
    if deployment_keys.is_empty() {
        deployment_keys.push("deployments".to_owned());
    }
    let text = |cli: &Option<String>, group: &str, key: &str| {
        cli.clone()
            .or_else(|| ini.get(group, key).map(str::to_owned))
    };
    let ec2 = Ec2Options {
        metadata_url: text(&args.ec2_metadata_url, "ec2", "metadata_url")
            .unwrap_or_else(|| Ec2Options::default().metadata_url),
        timeout: seconds(float(args.ec2_timeout, "ec2", "timeout", 10.0)?),
        config_drive_path: args
            .ec2_config_drive_path
            .clone()
            .or_else(|| ini.get("ec2", "config_drive_path").map(PathBuf::from)),
        config_drive: !args.ec2_noconfig_drive
            && ini.get("ec2", "config_drive").is_none_or(is_true),
    };
    let request_timeout = seconds(float(args.request_timeout, "request", "timeout", 10.0)?);
    let request_url = text(&args.request_metadata_url, "request", "metadata_url");
    let built: Vec<Box<dyn Collector>> = collectors
        .iter()
        .map(|name| -> Box<dyn Collector> {
            match name.as_str() {
                "heat_local" => Box::new(HeatLocal {
                    paths: paths(
                        &args.heat_local_path,
                        "heat_local",
                        "path",
                        &HeatLocal::default().paths,
                    ),
                }),
                "local" => Box::new(Local {
                    paths: paths(&args.local_path, "local", "path", &Local::default().paths),
                }),
                "ec2" => Box::new(Ec2::new(ec2.clone())),
                "request" => Box::new(Request::new(
                    request_url.clone(),
                    request_timeout,
                    deployment_keys.clone(),
                )),
                other => Box::new(Unsupported(other.to_owned())),
            }
        })
        .collect();
    let force = flag(args.force, "force");
    let settings = Settings {
        collectors,
        command: text(&args.command, "DEFAULT", "command"),
        cachedir: args
            .cachedir
            .clone()
            .or_else(|| ini.get("DEFAULT", "cachedir").map(PathBuf::from))
            .unwrap_or_else(|| "/var/lib/os-collect-config".into()),
        backup_cachedir: args
            .backup_cachedir
            .clone()
            .or_else(|| ini.get("DEFAULT", "backup_cachedir").map(PathBuf::from))
            .unwrap_or_else(|| "/var/run/os-collect-config".into()),
        one_time: flag(args.one_time, "one_time") || force,
        force,
        min_interval: float(
            args.min_polling_interval,
            "DEFAULT",
            "min_polling_interval",
            1.0,
        )?,
        max_interval: float(args.polling_interval, "DEFAULT", "polling_interval", 30.0)?,
        splay: float(args.splay, "DEFAULT", "splay", 0.0)?,
        config_files: config_files(args),
    };
    Ok((settings, built))
}

fn is_true(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    )
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE in-process; a daemon writing to a closed pipe must die so that its
    // supervisor restarts it (LP#1795030).
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let argv: Vec<String> = std::env::args().collect();
    let (kept, ignored) = strip_unsupported(argv.clone());
    let args = Args::parse_from(kept);
    let log_file = args.log_file.as_ref().and_then(|path| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .ok()
    });
    let level = if args.debug {
        Level::DEBUG
    } else {
        Level::INFO
    };
    logging::init_with_file("os-collect-config", level, log_file);
    for (set, option) in [
        (args.use_syslog, "--use-syslog"),
        (args.use_journal, "--use-journal"),
        (args.verbose, "--verbose"),
    ] {
        if set {
            warn!("{option} is accepted for compatibility and ignored: logs go to stderr and --log-file");
        }
    }
    for option in ignored {
        warn!("{option}: this collector is not supported by this build; option ignored");
    }
    let ini = match Ini::read_all(&config_files(&args)) {
        Ok(ini) => ini,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (settings, mut collectors) = match build(&args, &ini) {
        Ok(built) => built,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let cache = Cache::new(&settings.cachedir);
    if args.print_cachedir {
        logging::print_line(cache.dir().as_os_str().as_encoded_bytes());
        return ExitCode::SUCCESS;
    }
    debug!("Collectors: {:?}", settings.collectors);
    match run(&args, &settings, &mut collectors, &cache, &argv) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    args: &Args,
    settings: &Settings,
    collectors: &mut [Box<dyn Collector>],
    cache: &Cache,
    argv: &[String],
) -> Result<u8, String> {
    let store = settings.command.is_some() && !args.print;
    let one_time = settings.one_time || !store;
    let hangup =
        SignalPipe::install(&[nix::sys::signal::Signal::SIGHUP]).map_err(|e| e.to_string())?;
    if settings.splay > 0.0 && !one_time {
        let delay = settings.splay * random_fraction();
        info!("Sleeping {delay:.2} seconds before the first poll (splay).");
        std::thread::sleep(seconds(delay));
    }
    let config_contents = read_configs(&settings.config_files);
    let mut backoff = Backoff::new(settings.min_interval, settings.max_interval);
    loop {
        if !store {
            let content = collect_only(collectors, cache.dir());
            logging::print_line(json::dumps_indent1(&content).as_bytes());
            return Ok(0);
        }
        let stored = collect_and_store(collectors, cache).map_err(|e| e.to_string())?;
        let mut status = 0u8;
        let mut handled = false;
        if !stored.changed.is_empty() || settings.force {
            cache
                .backup_to(&settings.backup_cachedir)
                .map_err(|e| e.to_string())?;
            let files = std::env::join_paths(&stored.paths).map_err(|e| e.to_string())?;
            let command = settings.command.as_deref().unwrap_or_default();
            info!(
                "Executing {command} with OS_CONFIG_FILES={}",
                files.to_string_lossy()
            );
            let outcome = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(command)
                .env("OS_CONFIG_FILES", &files)
                .status();
            match outcome {
                Ok(exit) if exit.success() => {
                    for key in &stored.changed {
                        cache.commit(key).map_err(|e| e.to_string())?;
                    }
                    handled = true;
                }
                Ok(exit) => {
                    status = exit
                        .code()
                        .unwrap_or_else(|| 128 + exit.signal().unwrap_or(0))
                        as u8;
                    error!("Command failed, will not cache new data. {command} exited with status {status}");
                }
                Err(e) => {
                    status = 127;
                    error!("Command failed, will not cache new data. Could not run /bin/sh: {e}");
                }
            }
            if !one_time && read_configs(&settings.config_files) != config_contents {
                reexec(argv, "Configuration changed.");
            }
        } else {
            debug!("No changes detected.");
        }
        if one_time {
            return Ok(status);
        }
        let sleep = backoff.after_cycle(handled);
        info!("Sleeping {sleep:.2} seconds.");
        if wait_for_hangup(&hangup, seconds(sleep)) {
            reexec(argv, "Signal received.");
        }
    }
}

fn read_configs(files: &[PathBuf]) -> Vec<u8> {
    files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .flatten()
        .collect()
}

/// Sleeps up to `duration`; true as soon as SIGHUP arrives.
fn wait_for_hangup(hangup: &SignalPipe, duration: Duration) -> bool {
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + duration;
    loop {
        if hangup.pending().is_some() {
            return true;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [nix::poll::PollFd::new(
            hangup.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        let timeout = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
        // EINTR (the handler ran) loops to read the pipe.
        let _ = nix::poll::poll(&mut fds, timeout);
    }
}

fn reexec(argv: &[String], why: &str) -> ! {
    info!("{why} Re-executing {argv:?}");
    let _ = std::io::stderr().flush();
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(&argv[0]));
    let error = std::process::Command::new(program)
        .arg0(&argv[0])
        .args(&argv[1..])
        .exec();
    error!("Could not re-execute: {error}");
    std::process::exit(1);
}

/// A uniform number in [0, 1) from the kernel's random source.
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        return 0.0;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
