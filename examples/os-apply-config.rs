//! `os-apply-config`: render a tree of templates with this machine's metadata into the file
//! system, flag-compatible with upstream os-apply-config, plus `--missing-key`/`--strict`,
//! `--change-report` and `--log-file`.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgAction, Parser, ValueEnum};
use metadata_applier::metadata::{
    self, DEFAULT_CONFIG_FILES_LIST, DEFAULT_FALLBACK_FILES, LEGACY_CONFIG_FILES_LIST,
};
use metadata_applier::{
    json, key, render_all, write_all, Action, AtomicWriter, Change, DryRunWriter, Error,
    FileWriter, MissingKey, Value,
};
use tracing::{error, info, warn, Level};
use tripleo_rs::logging;
use tripleo_rs::report::write_atomically;

const DEFAULT_TEMPLATES: &str = "/usr/libexec/os-apply-config/templates";
const LEGACY_TEMPLATES: [&str; 2] = [
    "/opt/stack/os-apply-config/templates",
    "/opt/stack/os-config-applier/templates",
];
const ROOT_LOG_FILE: &str = "/var/log/os-apply-config.log";

/// Writes files from templates and this machine's metadata (merged from the metadata files in
/// order, later files winning), or prints one metadata value (--key).
#[derive(Debug, Parser)]
#[command(name = "os-apply-config", version)]
struct Args {
    /// Template root [default: $OS_CONFIG_APPLIER_TEMPLATES, else /usr/libexec/os-apply-config/templates].
    #[arg(short, long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Output root: each file goes to DIR + its path under the template root.
    #[arg(short, long, value_name = "DIR", default_value = "/")]
    output: PathBuf,
    /// Metadata files, merged in order; repeat the flag or list several after it.
    #[arg(short, long, value_name = "FILE", num_args = 0.., action = ArgAction::Append)]
    metadata: Vec<PathBuf>,
    /// Files read before all others (lowest precedence).
    #[arg(long, value_name = "FILE", num_args = 0.., default_values = DEFAULT_FALLBACK_FILES)]
    fallback_metadata: Vec<PathBuf>,
    /// JSON list of metadata files written by os-collect-config [default:
    /// $OS_CONFIG_FILES_PATH, else /var/lib/os-collect-config/os_config_files.json].
    #[arg(long, value_name = "FILE")]
    os_config_files: Option<PathBuf>,
    /// Render everything and check control files; write nothing.
    #[arg(short, long)]
    validate: bool,
    /// Print the template root and exit.
    #[arg(long)]
    print_templates: bool,
    /// Templates see only this sub-object of the metadata (a.b).
    #[arg(short, long, value_name = "KEY")]
    subhash: Option<String>,
    /// Print this metadata value (a.b.0) and exit.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Type the --key value must have.
    #[arg(long = "type", value_name = "TYPE", default_value = "default")]
    value_type: String,
    /// Printed, unvalidated, when --key does not exist.
    #[arg(long, value_name = "VALUE")]
    key_default: Option<String>,
    /// Exit 0 if this key is true, 1 if false, 255 otherwise.
    #[arg(long, value_name = "KEY")]
    boolean_key: Option<String>,
    /// What a template tag naming a missing key does: render empty, or fail listing every miss.
    #[arg(long, value_enum, default_value = "ignore")]
    missing_key: MissingKeyArg,
    /// Same as --missing-key error.
    #[arg(long)]
    strict: bool,
    /// Write a JSON list of {path, action} (written, deleted, unchanged) to FILE, or - for stdout.
    #[arg(long, value_name = "FILE")]
    change_report: Option<PathBuf>,
    /// Also append the log to PATH, or `none` [default: /var/log/os-apply-config.log when root].
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MissingKeyArg {
    Ignore,
    Error,
}

/// Exit status of `--boolean-key` for a key that is missing or not a boolean.
const EXIT_NOT_BOOLEAN: u8 = 255;

/// A run over a large tree allocates a few MiB in small pieces on each worker thread; glibc
/// grows a thread's heap one small `mprotect` at a time (about 250 calls for 500 templates,
/// each taking the address-space lock the other thread's page faults wait on). Growing by
/// 64 MiB of address space at a time (pages are still only touched as used) turns them into a
/// handful.
fn grow_heap_in_large_steps() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it runs before any other thread.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

fn main() -> ExitCode {
    grow_heap_in_large_steps();
    let args = Args::parse();
    let (templates, deprecated) = match &args.templates {
        Some(dir) => (dir.clone(), false),
        None => default_templates(),
    };
    if args.print_templates {
        logging::print_line(templates.as_os_str().as_encoded_bytes());
        return ExitCode::SUCCESS;
    }
    if args.key.as_deref() == Some("") || args.boolean_key.as_deref() == Some("") {
        let _ = writeln!(
            io::stderr(),
            "os-apply-config: error: --key and --boolean-key need a key name"
        );
        return ExitCode::from(2);
    }
    let _log = logging::init_apply_config(Level::INFO, log_file(&args));
    if deprecated {
        warn!(
            "Template directory {} is deprecated. The recommended location for template files is {DEFAULT_TEMPLATES}",
            templates.display()
        );
    }
    match run(&args, &templates) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            error!("{e}");
            if let Error::Script { stderr, .. } = &e {
                for line in stderr.lines() {
                    error!("{line}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// The template root when `-t` is not given, and whether it is a deprecated location.
fn default_templates() -> (PathBuf, bool) {
    if let Some(dir) = std::env::var_os("OS_CONFIG_APPLIER_TEMPLATES") {
        return (dir.into(), false);
    }
    let legacy = LEGACY_TEMPLATES
        .iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .unwrap_or(Path::new(LEGACY_TEMPLATES[0]));
    if legacy.is_dir() && !Path::new(DEFAULT_TEMPLATES).is_dir() {
        return (legacy.to_owned(), true);
    }
    (PathBuf::from(DEFAULT_TEMPLATES), false)
}

fn log_file(args: &Args) -> Option<std::fs::File> {
    let path = match &args.log_file {
        Some(path) if path == Path::new("none") => return None,
        Some(path) => path.clone(),
        None if nix::unistd::geteuid().is_root() => PathBuf::from(ROOT_LOG_FILE),
        None => return None,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .ok()
}

/// The metadata files in merge order (after the fallback files), as upstream chooses them.
fn metadata_files(args: &Args) -> Result<Vec<PathBuf>, Error> {
    if !args.metadata.is_empty() {
        return Ok(args.metadata.clone());
    }
    if let Some(list) = std::env::var_os("OS_CONFIG_FILES") {
        return Ok(std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect());
    }
    let default_list = std::env::var_os("OS_CONFIG_FILES_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILES_LIST));
    let list = args
        .os_config_files
        .clone()
        .unwrap_or_else(|| default_list.clone());
    let files = metadata::read_config_files_list(&list)?;
    if files.is_empty() && list == default_list {
        warn!("DEPRECATED: falling back to {LEGACY_CONFIG_FILES_LIST}");
        return metadata::read_config_files_list(Path::new(LEGACY_CONFIG_FILES_LIST));
    }
    Ok(files)
}

fn run(args: &Args, templates: &Path) -> Result<u8, Error> {
    let files = metadata_files(args)?;
    let metadata = metadata::load(&args.fallback_metadata, &files)?;
    if args.key.is_some() && args.boolean_key.is_some() {
        warn!("--key is not compatible with --boolean-key. --boolean-key ignored.");
    }
    if let Some(key) = &args.key {
        let value = key::key_value(
            &metadata,
            key,
            &args.value_type,
            args.key_default.as_deref(),
            &files,
        )?;
        logging::print_line(value.as_bytes());
        return Ok(0);
    }
    if let Some(key) = &args.boolean_key {
        return Ok(match key::boolean_key_status(&metadata, key) {
            255 => EXIT_NOT_BOOLEAN,
            status => status,
        });
    }
    if !templates.is_dir() {
        warn!(
            "Template root {} does not exist: nothing to render",
            templates.display()
        );
    }
    let context: &Value = match &args.subhash {
        Some(key) => metadata::subhash(&metadata, key)?,
        None => &metadata,
    };
    let missing = if args.strict || matches!(args.missing_key, MissingKeyArg::Error) {
        MissingKey::Error
    } else {
        MissingKey::Ignore
    };
    let rendered = render_all(templates, context, missing)?;
    let mut changes = Vec::new();
    let mut writer: Box<dyn FileWriter> = if args.validate {
        Box::new(DryRunWriter)
    } else {
        Box::new(AtomicWriter::new())
    };
    let validate = args.validate;
    let result = write_all(
        &rendered,
        &args.output,
        writer.as_mut(),
        &mut |change: &Change| {
            if !validate {
                log_change(change);
            }
            changes.push(change.clone());
        },
    );
    if let Some(path) = &args.change_report {
        write_change_report(path, &changes)?;
    }
    result?;
    info!("success");
    Ok(0)
}

fn log_change(change: &Change) {
    let path = change.path.display();
    match change.action {
        Action::Written => info!("writing {path}"),
        Action::Deleted => info!("deleting {path}"),
        Action::Unchanged => info!("unchanged {path}"),
        Action::NotCreated => info!("not creating empty {path}"),
    }
}

fn write_change_report(path: &Path, changes: &[Change]) -> Result<(), Error> {
    let mut text = String::from("[");
    for (i, change) in changes.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str("{\"path\": ");
        json::write_string(&mut text, &change.absolute_path().to_string_lossy());
        text.push_str(", \"action\": ");
        json::write_string(&mut text, change.action.as_str());
        text.push('}');
    }
    text.push_str("]\n");
    if path == Path::new("-") {
        let _ = io::stdout().lock().write_all(text.as_bytes());
        return Ok(());
    }
    write_atomically(path, text.as_bytes()).map_err(|source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}
