//! `dib-run-parts [--list] DIR`: run the hooks of one directory, flag-compatible with upstream.
//!
//! Arguments are parsed by hand rather than with clap because upstream's grammar is positional
//! and lenient: `--list` counts only as the first argument, extra arguments are ignored, and a
//! missing directory exits 1 (not clap's 2) after the usage text.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use refresh_config::{
    hook_path, list_hooks, run_parts, Error, NameFilter, ProcessRunner, RunPartsOptions,
    SignalPipe, FORWARDED_SIGNALS,
};
use tracing::{error, Level};
use tripleo_rs::logging::{self, RUN_PARTS};

const USAGE: &str = "\
Usage: dib-run-parts [--list] DIR
Run the executable files of DIR whose names match RUN_PARTS_REGEX (default ^[0-9A-Za-z_-]+$),
ordered by numeric prefix, after sourcing DIR/../environment.d; stop at the first failure.
  --list   print the files that would run, one per line, and exit";

fn main() -> ExitCode {
    logging::init(RUN_PARTS, Level::INFO);
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_none() {
        return usage();
    }
    let list = args.next_if(|a| a == "--list").is_some();
    let dir = PathBuf::from(args.next().unwrap_or_default());
    if !dir.is_dir() {
        error!(target: RUN_PARTS, "Scripts directory [{}] must exist and be a directory", dir.display());
        return usage();
    }
    match run(dir, list) {
        Ok(status) => ExitCode::from(status.clamp(0, 255) as u8),
        Err(e) => {
            error!(target: RUN_PARTS, "{e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln_usage();
    ExitCode::FAILURE
}

fn eprintln_usage() {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{USAGE}");
}

fn run(dir: PathBuf, list: bool) -> Result<i32, Error> {
    let filter = NameFilter::from_env()?;
    if list {
        for name in list_hooks(&dir, &filter)?.hooks {
            if !logging::print_line(hook_path(&dir, &name).as_os_str().as_bytes()) {
                break;
            }
        }
        return Ok(0);
    }
    let signals = SignalPipe::install(&FORWARDED_SIGNALS)?;
    let mut runner = ProcessRunner::new().forward_signals(signals);
    let options = RunPartsOptions {
        filter,
        ..RunPartsOptions::default()
    };
    let report = run_parts(
        &dir,
        &options,
        &mut runner,
        &mut logging::log_run_parts_event,
    )?;
    Ok(report.status())
}
