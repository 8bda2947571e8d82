//! `os-refresh-config`: run the configuration hook phases of this machine, flag-compatible
//! with upstream os-refresh-config, plus `--hook-timeout`, `--error-timeout` and `--kill-grace`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use refresh_config::{
    plan, refresh, resolve_base_dir, Error, NameFilter, ProcessRunner, RefreshEvent,
    RefreshOptions, RefreshReport, RunLock, SignalPipe, BASE_DIR_VAR, DEFAULT_BASE_DIR,
    FORWARDED_SIGNALS, LEGACY_BASE_DIR, PHASES,
};
use tracing::{debug, error, info, warn, Level};
use tripleo_rs::{logging, report};

/// Exit status when another run holds the lock (upstream returns flock's EAGAIN).
const EXIT_LOCKED: u8 = 11;

/// Runs through all of the phases (pre-configure, configure, post-configure, migration) to
/// ensure configuration is applied and enabled on this machine; exits non-zero if any phase
/// has a problem, after running error.d. The base directory is $OS_REFRESH_CONFIG_BASE_DIR,
/// else /usr/libexec/os-refresh-config.
#[derive(Debug, Parser)]
#[command(name = "os-refresh-config", version)]
struct Args {
    /// Print the base directory and exit.
    #[arg(long)]
    print_base: bool,
    /// Print upstream's phases (tab separated) and exit. An optional `check` phase also runs,
    /// between configure and post-configure, when `check.d` exists.
    #[arg(long)]
    print_phases: bool,
    /// Threshold of the log on stderr.
    #[arg(long, value_enum, default_value = "INFO")]
    log_level: LogLevel,
    /// Lock file that keeps a second run from starting (it exits 11).
    #[arg(long, default_value = "/var/run/os-refresh-config.lock")]
    lockfile: PathBuf,
    /// Seconds the phases may take in all; then the running hook is terminated, error.d runs
    /// and the exit status is 1. 0 means no limit.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Seconds each hook may take (status 124 when exceeded), in every phase and error.d.
    #[arg(long, value_name = "SECONDS")]
    hook_timeout: Option<u64>,
    /// Seconds error.d may take in all [default: the --timeout value].
    #[arg(long, value_name = "SECONDS")]
    error_timeout: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL when a hook is terminated.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    kill_grace: u64,
    /// Seconds to wait for the lock when another run holds it, before exiting 11 [default: 0,
    /// do not wait].
    #[arg(long, value_name = "SECONDS")]
    lock_wait: Option<u64>,
    /// Print, for every phase and error.d, the hooks in run order, the skipped entries with
    /// reasons and the environment files; run nothing and take no lock.
    #[arg(long)]
    dry_run: bool,
    /// Prefix every line hooks write to stdout or stderr with `<phase>/<name>: `, so that
    /// interleaved logs (journald) say which hook wrote what.
    #[arg(long)]
    prefix_output: bool,
    /// Write the run as JSON (per phase and hook: outcome, status, seconds; skips) to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogLevel {
    #[value(name = "ERROR")]
    Error,
    #[value(name = "WARN")]
    Warn,
    #[value(name = "CRITICAL")]
    Critical,
    #[value(name = "INFO")]
    Info,
    #[value(name = "DEBUG")]
    Debug,
}

impl From<LogLevel> for Level {
    fn from(level: LogLevel) -> Level {
        match level {
            LogLevel::Error | LogLevel::Critical => Level::ERROR,
            LogLevel::Warn => Level::WARN,
            LogLevel::Info => Level::INFO,
            LogLevel::Debug => Level::DEBUG,
        }
    }
}

fn seconds(value: Option<u64>) -> Option<Duration> {
    value.filter(|s| *s > 0).map(Duration::from_secs)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let base = resolve_base_dir(std::env::var_os(BASE_DIR_VAR), Path::is_dir);
    if args.print_base {
        logging::print_line(base.path.as_os_str().as_encoded_bytes());
        return ExitCode::SUCCESS;
    }
    if args.print_phases {
        logging::print_line(PHASES.join("\t").as_bytes());
        return ExitCode::SUCCESS;
    }
    logging::init("os-refresh-config", args.log_level.into());
    if base.deprecated {
        warn!("Base directory {LEGACY_BASE_DIR} is deprecated. The recommended base directory is {DEFAULT_BASE_DIR}");
    }
    if !base.path.is_dir() {
        // Not an error (upstream exits 0 and agents call orc before hooks are installed), but
        // a mistyped OS_REFRESH_CONFIG_BASE_DIR should not pass unnoticed.
        warn!(
            "Base directory {} does not exist: no phase to run",
            base.path.display()
        );
    }
    if args.dry_run {
        return match dry_run(&args, &base.path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{}", capitalize(&e.to_string()));
                ExitCode::FAILURE
            }
        };
    }
    let (code, json) = match run(&args, &base.path) {
        Ok(report) => {
            let code = report.exit_code() as u8;
            (code, report::refresh_report(&base.path, &report))
        }
        Err(e) => {
            let code = match e {
                Error::LockContended { .. } => EXIT_LOCKED,
                _ => 1,
            };
            let message = capitalize(&e.to_string());
            error!("{message}");
            (code, report::failed_start(&base.path, code, &message))
        }
    };
    if let Some(path) = &args.report {
        if let Err(e) = report::write_atomically(path, format!("{json:#}\n").as_bytes()) {
            error!("Could not write report {}: {e}", path.display());
            return ExitCode::from(code.max(1));
        }
    }
    ExitCode::from(code)
}

fn capitalize(message: &str) -> String {
    let mut chars = message.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn options(args: &Args, base_dir: &Path) -> Result<RefreshOptions, Error> {
    let timeout = seconds(args.timeout);
    Ok(RefreshOptions {
        filter: NameFilter::from_env()?,
        timeout,
        hook_timeout: seconds(args.hook_timeout),
        error_timeout: match args.error_timeout {
            Some(limit) => seconds(Some(limit)),
            None => timeout,
        },
        ..RefreshOptions::new(base_dir)
    })
}

fn run(args: &Args, base_dir: &Path) -> Result<RefreshReport, Error> {
    let options = options(args, base_dir)?;
    // Before the lock: a signal in between must not leave a stale pid in the lock file.
    let signals = SignalPipe::install(&FORWARDED_SIGNALS)?;
    let _lock = match seconds(args.lock_wait) {
        Some(wait) => RunLock::acquire_waiting(&args.lockfile, wait)?,
        None => RunLock::acquire(&args.lockfile)?,
    };
    let mut runner = ProcessRunner::new().kill_grace(Duration::from_secs(args.kill_grace));
    if args.prefix_output {
        runner = runner.relay_output(Box::new(io::stdout()), Box::new(io::stderr()));
    }
    let mut runner = runner.forward_signals(signals);
    Ok(refresh(&options, &mut runner, &mut log_event))
}

fn dry_run(args: &Args, base_dir: &Path) -> Result<(), Error> {
    let mut out = String::new();
    for phase in plan(&options(args, base_dir)?)? {
        let Some(selection) = phase.selection else {
            out.push_str(&format!(
                "{}: {} (missing, skipped)\n",
                phase.phase,
                phase.dir.display()
            ));
            continue;
        };
        let note = if phase.phase == "error" {
            " (runs only after a failure)"
        } else {
            ""
        };
        out.push_str(&format!("{}: {}{note}\n", phase.phase, phase.dir.display()));
        for file in &phase.environment_files {
            out.push_str(&format!("  source {}\n", file.display()));
        }
        for hook in &selection.hooks {
            out.push_str(&format!("  run    {}\n", hook.to_string_lossy()));
        }
        for skipped in &selection.skipped {
            out.push_str(&format!(
                "  skip   {} ({})\n",
                skipped.name.to_string_lossy(),
                skipped.reason
            ));
        }
    }
    logging::print_line(out.trim_end().as_bytes());
    Ok(())
}

fn log_event(event: &RefreshEvent<'_>) {
    match event {
        RefreshEvent::Checking { dir } => debug!("Checking {}", dir.display()),
        RefreshEvent::PhaseMissing { phase } => debug!("No dir for phase {phase}"),
        RefreshEvent::PhaseStarting { phase, dir } => {
            info!("Starting phase {phase}");
            debug!("Running hooks in {}", dir.display());
        }
        RefreshEvent::PhaseCompleted { phase } => info!("Completed phase {phase}"),
        RefreshEvent::PhaseFailed { phase, reason } => error!("during {phase} phase. [{reason}]"),
        RefreshEvent::TimeoutReached { timeout } => error!(
            "Timeout reached: {}s. The running hook's process group was terminated and no \
             further hook started",
            timeout.as_secs()
        ),
        RefreshEvent::CallingErrorHandlers { .. } => info!("Calling error handlers."),
        RefreshEvent::Aborting => error!("Aborting..."),
        RefreshEvent::Interrupted { signal } => error!(
            "Interrupted by signal {signal}: stopped the running hook, not calling error handlers"
        ),
        RefreshEvent::RunParts(event) => logging::log_run_parts_event(event),
        _ => {}
    }
}
