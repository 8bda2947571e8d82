//! `disk-image-create`: build an OS image from diskimage-builder elements, with upstream's
//! flags. Elements come from `ELEMENTS_PATH`; work folders from `TMP_DIR`. Builds need no
//! loop device or mount; without root the chroot phases run in a user namespace.
//!
//! Beyond upstream: `--dry-run` (resolved elements, hook order, block-device order),
//! `--image-extra-size` and `--mkfs-journal-size` that work, reproducible outputs under
//! `SOURCE_DATE_EPOCH`, a per-phase timing table (also saved as `NAME.timing.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use dib_core::build::{self, BuildEvent, BuildOptions, OutputType};
use indicatif::{ProgressBar, ProgressStyle};
use refresh_config::{ProcessRunner, SignalPipe, FORWARDED_SIGNALS};
use tracing::{error, info, warn, Level};
use tripleo_rs::logging;

/// Create a bootable image from elements.
#[derive(Debug, Parser)]
#[command(name = "disk-image-create", version)]
struct Args {
    /// Elements to build with (at least an operating-system one).
    elements: Vec<String>,
    /// Architecture of the image (default: the host's).
    #[arg(short = 'a')]
    arch: Option<String>,
    /// Output name without extension.
    #[arg(short = 'o', default_value = "image")]
    output: PathBuf,
    /// Output types, comma separated: qcow2, raw, tar, tgz, ramdisk (NAME.initramfs), kernel
    /// (NAME.vmlinuz + NAME.initrd from the tree's /boot), vmdk, vdi, vhdx, qed.
    #[arg(short = 't', default_value = "qcow2")]
    types: String,
    /// Trace: more of -x, more output (sets DIB_DEBUG_TRACE).
    #[arg(short = 'x', action = clap::ArgAction::Count)]
    trace: u8,
    /// Do not compress qcow2 clusters.
    #[arg(short = 'u')]
    uncompressed: bool,
    /// Clear the environment first (the hooks' environment is always built from scratch).
    #[arg(short = 'c')]
    clear: bool,
    /// Do not add the `base` element.
    #[arg(short = 'n')]
    no_base: bool,
    /// Extra packages to install after install.d (repeatable, comma separated).
    #[arg(short = 'p')]
    packages: Vec<String>,
    /// Write NAME.EXT.md5 and NAME.EXT.sha256 next to every output.
    #[arg(long)]
    checksum: bool,
    /// Image size in GiB (or a size spec: 2GiB, 500MiB).
    #[arg(long = "image-size")]
    image_size: Option<String>,
    /// Free space to add to the tree's size, in MiB (or a size spec).
    #[arg(long = "image-extra-size")]
    image_extra_size: Option<String>,
    /// ext4 journal size in MiB (default 64).
    #[arg(long = "mkfs-journal-size")]
    journal_size: Option<u64>,
    /// Cache folder for elements (DIB_IMAGE_CACHE).
    #[arg(long = "image-cache")]
    image_cache: Option<PathBuf>,
    /// Minimum RAM in GiB to use tmpfs (accepted; dib-core never mounts tmpfs).
    #[arg(long = "min-tmpfs")]
    min_tmpfs: Option<u64>,
    /// Do not use tmpfs (accepted; dib-core never mounts tmpfs).
    #[arg(long = "no-tmpfs")]
    no_tmpfs: bool,
    /// Options for the root filesystem's mkfs.
    #[arg(long = "mkfs-options")]
    mkfs_options: Option<String>,
    /// ext4 online resize limit (mke2fs -E resize=N).
    #[arg(long = "max-online-resize")]
    max_online_resize: Option<u64>,
    /// Options for qemu-img convert -o (formats qemu-img writes).
    #[arg(long = "qemu-img-options")]
    qemu_img_options: Option<String>,
    /// Label of the root filesystem (default cloudimg-rootfs).
    #[arg(long = "root-label")]
    root_label: Option<String>,
    /// Default install type for elements (DIB_DEFAULT_INSTALLTYPE).
    #[arg(long = "install-type")]
    install_type: Option<String>,
    /// Ramdisk element (accepted for compatibility; used by ramdisk-image-create).
    #[arg(long = "ramdisk-element")]
    ramdisk_element: Option<String>,
    /// Docker target (docker output is not supported).
    #[arg(long = "docker-target")]
    docker_target: Option<String>,
    /// Do not use the network (DIB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// Write the log here too, and print only errors on the terminal.
    #[arg(long)]
    logfile: Option<PathBuf>,
    /// Print the resolved elements, each phase's hooks in order and the block-device order,
    /// then stop.
    #[arg(long = "dry-run")]
    dry_run: bool,
}

/// A size argument: a bare number in `unit`, else a size spec.
fn parse_size(text: &str, unit: u64, what: &str) -> anyhow::Result<u64> {
    if let Ok(number) = text.parse::<f64>() {
        return Ok((number * unit as f64) as u64);
    }
    match dib_core::size::parse(text, false) {
        Ok(dib_core::size::Size::Bytes(bytes)) => Ok(bytes),
        _ => bail!("{what}: invalid size {text:?}"),
    }
}

fn options(args: &Args) -> anyhow::Result<BuildOptions> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let elements_path = env.get("ELEMENTS_PATH").cloned().unwrap_or_default();
    let mut options = BuildOptions::new(args.elements.clone(), elements_path);
    options.image_name = args.output.clone();
    options.types = args
        .types
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(OutputType::parse)
        .collect::<Result<_, _>>()?;
    options.arch = args.arch.clone();
    options.trace = u32::from(args.trace);
    options.uncompressed = args.uncompressed;
    options.no_base = args.no_base;
    options.packages = args
        .packages
        .iter()
        .flat_map(|p| p.split(','))
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    options.checksum = args.checksum || env.get("DIB_CHECKSUM").is_some_and(|v| v != "0");
    let image_size = args
        .image_size
        .clone()
        .or_else(|| env.get("DIB_IMAGE_SIZE").cloned());
    options.image_size = image_size
        .map(|s| parse_size(&s, 1 << 30, "--image-size"))
        .transpose()?;
    let extra = args
        .image_extra_size
        .clone()
        .or_else(|| env.get("DIB_IMAGE_EXTRA_SIZE").cloned());
    options.image_extra_size = extra
        .map(|s| parse_size(&s, 1 << 20, "--image-extra-size"))
        .transpose()?;
    if let Some(journal) = args
        .journal_size
        .or_else(|| env.get("DIB_JOURNAL_SIZE").and_then(|v| v.parse().ok()))
    {
        options.journal_size_mib = journal;
    }
    let mut mkfs = args.mkfs_options.clone().unwrap_or_default();
    if let Some(resize) = args.max_online_resize {
        mkfs = format!("-E resize={resize} {mkfs}").trim().to_owned();
    }
    options.mkfs_options = (!mkfs.is_empty()).then_some(mkfs);
    options.root_label = args.root_label.clone();
    if let Some(fs) = env.get("FS_TYPE") {
        options.fs_type = fs.clone();
    }
    options.image_cache = args
        .image_cache
        .clone()
        .or_else(|| env.get("DIB_IMAGE_CACHE").map(PathBuf::from))
        .unwrap_or_else(|| {
            PathBuf::from(env.get("HOME").cloned().unwrap_or("/root".into()))
                .join(".cache/image-create")
        });
    options.offline = args.offline || env.get("DIB_OFFLINE").is_some_and(|v| !v.is_empty());
    options.tmp_dir = env
        .get("TMP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    options.source_date_epoch = env.get("SOURCE_DATE_EPOCH").cloned();
    options.breaks = env
        .get("break")
        .map(|b| b.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    options.break_cmd = env.get("break_cmd").cloned();
    options.block_device_config = env.get("DIB_BLOCK_DEVICE_CONFIG").cloned();
    options.overwrite = env
        .get("OVERWRITE_OLD_IMAGE")
        .is_some_and(|v| !v.is_empty());
    let mut env = env;
    if let Some(opts) = &args.qemu_img_options {
        env.insert("DIB_QEMU_IMG_OPTIONS".into(), opts.clone());
    }
    if let Some(kind) = &args.install_type {
        env.insert("DIB_DEFAULT_INSTALLTYPE".into(), kind.clone());
    }
    options.env = env;
    Ok(options)
}

fn progress(quiet: bool) -> ProgressBar {
    use std::io::IsTerminal as _;
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn run(args: &Args) -> anyhow::Result<()> {
    let options = options(args)?;
    if args.docker_target.is_some() {
        bail!("--docker-target: the docker output type is not supported by dib-core");
    }
    if args.min_tmpfs.is_some() || args.no_tmpfs || args.ramdisk_element.is_some() || args.clear {
        info!(
            "--min-tmpfs, --no-tmpfs, --ramdisk-element and -c are accepted and have no effect: dib-core mounts no tmpfs and always builds the hooks' environment from scratch"
        );
    }
    if args.dry_run {
        let plan = build::dry_run(&options)?;
        use std::io::Write as _;
        std::io::stdout().write_all(plan.render().as_bytes())?;
        return Ok(());
    }
    let signals = SignalPipe::install(&FORWARDED_SIGNALS).context("installing signal handlers")?;
    // environment.d files are sourced under xtrace only with -x: the trace repeats for every
    // phase and buries the build's own lines.
    let mut runner = ProcessRunner::new()
        .forward_signals(signals)
        .trace_environment(args.trace > 0);
    if let Some(path) = &args.logfile {
        // Hooks' output goes to the log too, each line labelled with its phase and hook.
        let open = || {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .with_context(|| format!("--logfile {}", path.display()))
        };
        runner = runner.relay_output(Box::new(open()?), Box::new(open()?));
    }
    let bar = progress(args.logfile.is_some());
    let mut on_event = |event: &BuildEvent<'_>| match event {
        BuildEvent::Step(step) => {
            bar.set_message(step.to_string());
            info!("{step}");
        }
        BuildEvent::Warning(message) => bar.suspend(|| warn!("{message}")),
        BuildEvent::PhaseStarting { phase, hooks } => {
            bar.set_message(format!("{phase}.d ({hooks} hooks)"));
            info!("running {phase}.d: {hooks} hooks");
        }
        BuildEvent::HookStarting {
            phase,
            hook,
            element,
        } => {
            bar.set_message(format!("{phase}.d/{hook} ({element})"));
            info!("{phase}.d/{hook} ({element})");
        }
        BuildEvent::Output { path } => info!("wrote {}", path.display()),
        _ => {}
    };
    let report = build::build(&options, runner, &mut on_event);
    bar.finish_and_clear();
    let report = report?;
    match &args.logfile {
        Some(path) => {
            use std::io::Write as _;
            let mut log = std::fs::OpenOptions::new().append(true).open(path)?;
            log.write_all(report.timing_table().as_bytes())?;
        }
        None => {
            use std::io::Write as _;
            std::io::stderr().write_all(report.timing_table().as_bytes())?;
        }
    }
    info!("Build completed successfully");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log_file = match &args.logfile {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => Some(file),
            Err(e) => {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "disk-image-create: --logfile {}: {e}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    match log_file {
        Some(file) => logging::init_quiet_with_file("disk-image-create", Level::INFO, file),
        None => logging::init("disk-image-create", Level::INFO),
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
