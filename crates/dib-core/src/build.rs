//! A whole build, as `disk-image-create` runs it: resolve the elements, assemble their hooks,
//! run the phases (host and chroot), size and assemble the disk without loop devices or
//! mounts, and write the outputs.
//!
//! Every temporary folder belongs to a guard removed on every exit path (success, error, panic,
//! and a signal, which the runner turns into an error); the chroot phases make their mounts in
//! namespaces that die with their processes (see [`crate::sandbox`]). Nothing here prints:
//! progress goes to the caller's event callback and the result is a [`BuildReport`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use refresh_config::{HookRunner, NameFilter, ProcessRunner, RunPartsOptions};

use crate::elements::{element_yaml, expand, Element, ElementSet};
use crate::phases::{self, assemble_hooks, ChrootRunner, HookAssembly, Phase, Side};
use crate::sandbox::{Privilege, Sandbox};
use crate::{image, Error};

/// An output format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputType {
    Raw,
    Qcow2,
    Tar,
    Tgz,
    /// The tree as an initramfs (`NAME.initramfs`, gzip'd cpio newc).
    Ramdisk,
    /// The tree's newest kernel and initrd copied out (`NAME.vmlinuz`, `NAME.initrd`).
    Kernel,
    /// Another format `qemu-img convert` writes (vmdk, vdi, vhdx, …).
    QemuImg(String),
}

impl OutputType {
    pub fn parse(name: &str) -> Result<Self, Error> {
        Ok(match name.trim() {
            "raw" => OutputType::Raw,
            "qcow2" => OutputType::Qcow2,
            "tar" => OutputType::Tar,
            "tgz" => OutputType::Tgz,
            "ramdisk" | "initramfs" => OutputType::Ramdisk,
            "kernel" => OutputType::Kernel,
            "vmdk" | "vdi" | "vhdx" | "qed" => OutputType::QemuImg(name.trim().to_owned()),
            other => {
                return Err(Error::Build(format!(
                    "output type {other:?} is not supported (raw, qcow2, tar, tgz, ramdisk, kernel, vmdk, vdi, vhdx, qed)"
                )));
            }
        })
    }

    pub fn extension(&self) -> &str {
        match self {
            OutputType::Raw => "raw",
            OutputType::Qcow2 => "qcow2",
            OutputType::Tar => "tar",
            OutputType::Tgz => "tgz",
            OutputType::Ramdisk => "initramfs",
            OutputType::Kernel => "vmlinuz",
            OutputType::QemuImg(format) => format,
        }
    }

    /// Whether this output needs the disk image (not just the tree).
    pub fn needs_disk(&self) -> bool {
        !matches!(
            self,
            OutputType::Tar | OutputType::Tgz | OutputType::Ramdisk | OutputType::Kernel
        )
    }
}

/// Everything a build is asked to do.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Requested elements in command-line order.
    pub elements: Vec<String>,
    /// `-o`: the output path without extension (`image`).
    pub image_name: PathBuf,
    pub types: Vec<OutputType>,
    pub arch: Option<String>,
    /// `-x` count.
    pub trace: u32,
    /// `-u`: qcow2 clusters stored uncompressed.
    pub uncompressed: bool,
    /// `-n`: do not add `base`.
    pub no_base: bool,
    /// `-p`: packages installed after install.d.
    pub packages: Vec<String>,
    /// md5 and sha256 files next to every output.
    pub checksum: bool,
    /// `--image-size` in bytes.
    pub image_size: Option<u64>,
    /// `--image-extra-size` in bytes.
    pub image_extra_size: Option<u64>,
    pub journal_size_mib: u64,
    pub mkfs_options: Option<String>,
    pub root_label: Option<String>,
    pub fs_type: String,
    pub image_cache: PathBuf,
    pub offline: bool,
    pub elements_path: String,
    /// Where the build and image folders go (`TMP_DIR`).
    pub tmp_dir: PathBuf,
    /// The caller's environment: `DIB_*` settings and proxies are passed to hooks from here.
    pub env: BTreeMap<String, String>,
    pub source_date_epoch: Option<String>,
    /// `break=` points.
    pub breaks: Vec<String>,
    pub break_cmd: Option<String>,
    /// `DIB_BLOCK_DEVICE_CONFIG`: `file://PATH` or the YAML itself.
    pub block_device_config: Option<String>,
    /// Replace existing outputs instead of renaming them aside.
    pub overwrite: bool,
}

impl BuildOptions {
    /// Options with upstream's defaults for the given elements.
    pub fn new(elements: Vec<String>, elements_path: String) -> Self {
        BuildOptions {
            elements,
            image_name: PathBuf::from("image"),
            types: vec![OutputType::Qcow2],
            arch: None,
            trace: 0,
            uncompressed: false,
            no_base: false,
            packages: Vec::new(),
            checksum: false,
            image_size: None,
            image_extra_size: None,
            journal_size_mib: 64,
            mkfs_options: None,
            root_label: None,
            fs_type: "ext4".to_owned(),
            image_cache: PathBuf::from("/root/.cache/image-create"),
            offline: false,
            elements_path,
            tmp_dir: std::env::temp_dir(),
            env: BTreeMap::new(),
            source_date_epoch: None,
            breaks: Vec::new(),
            break_cmd: None,
            block_device_config: None,
            overwrite: false,
        }
    }

    /// `IMAGE_NAME`: the basename, with a single type's suffix stripped.
    pub fn image_basename(&self) -> String {
        let name = self
            .image_name
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".to_owned());
        match self.types.as_slice() {
            [only] => name
                .strip_suffix(&format!(".{}", only.extension()))
                .map(str::to_owned)
                .unwrap_or(name),
            _ => name,
        }
    }

    fn output_base(&self) -> PathBuf {
        self.image_name.with_file_name(self.image_basename())
    }

    /// `ARCH` as upstream derives it: `-a`, else the host's machine name mapped to Debian's.
    pub fn arch(&self) -> String {
        if let Some(arch) = &self.arch {
            return arch.clone();
        }
        match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "arm" => "armhf",
            "powerpc64" => "ppc64el",
            other => other,
        }
        .to_owned()
    }
}

/// What a build reports as it goes.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildEvent<'a> {
    /// A step outside the hook phases (`assembling the disk`, `writing qcow2`).
    Step(&'a str),
    Warning(&'a str),
    PhaseStarting {
        phase: &'a str,
        hooks: usize,
    },
    HookStarting {
        phase: &'a str,
        hook: &'a str,
        element: &'a str,
    },
    HookFinished {
        timing: &'a Timing,
    },
    Output {
        path: &'a Path,
    },
}

/// The time one hook (or one step outside hooks) took.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub phase: String,
    /// The element that shipped the hook; empty for dib-core's own steps.
    pub element: String,
    pub hook: String,
    pub seconds: f64,
    pub status: i32,
}

impl Timing {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "phase": self.phase,
            "element": self.element,
            "hook": self.hook,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "status": self.status,
        })
    }
}

/// What a finished build produced.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub outputs: Vec<PathBuf>,
    pub timings: Vec<Timing>,
    pub elements: Vec<String>,
    pub total: Duration,
}

impl BuildReport {
    /// The timing table: per phase total, then each hook, as the build prints it at the end.
    pub fn timing_table(&self) -> String {
        let mut out = format!(
            "{:<14} {:<24} {:<28} {:>9} {:>4}\n",
            "phase", "element", "hook", "seconds", "rc"
        );
        for t in &self.timings {
            out.push_str(&format!(
                "{:<14} {:<24} {:<28} {:>9.3} {:>4}\n",
                t.phase, t.element, t.hook, t.seconds, t.status
            ));
        }
        out.push_str(&format!(
            "{:<14} {:<24} {:<28} {:>9.3}\n",
            "total",
            "",
            "",
            self.total.as_secs_f64()
        ));
        out
    }

    /// The timing table as JSON (saved next to the outputs).
    pub fn timing_json(&self) -> String {
        let value = serde_json::json!({
            "elements": self.elements,
            "total_seconds": (self.total.as_secs_f64() * 1000.0).round() / 1000.0,
            "steps": self.timings.iter().map(Timing::to_json).collect::<Vec<_>>(),
        });
        format!("{value:#}\n")
    }
}

/// The elements a request resolves to: `base` first unless `-n`, and `block-device-mbr` added
/// to `vm` when no `block-device-*` element was asked for, as upstream does.
pub fn resolve(options: &BuildOptions) -> Result<(ElementSet, Vec<Element>), Error> {
    if options.elements.is_empty() {
        return Err(Error::Build(
            "At least one distribution root element must be specified".to_owned(),
        ));
    }
    let set = ElementSet::load(&options.elements_path)?;
    let mut requested: Vec<&str> = Vec::new();
    if !options.no_base {
        requested.push("base");
    }
    requested.extend(options.elements.iter().map(String::as_str));
    let wants_vm = requested.contains(&"vm");
    if wants_vm && !requested.iter().any(|e| e.starts_with("block-device-")) {
        requested.push(if options.arch() == "arm64" {
            "block-device-efi"
        } else {
            "block-device-mbr"
        });
    }
    let elements = expand(&set, &requested)?
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    Ok((set, elements))
}

/// What `--dry-run` prints: the resolved elements, each phase's hooks in run order with the
/// element that ships them, and the block-device node order. Reads the elements, writes nothing.
#[derive(Debug, Clone, Default)]
pub struct DryRun {
    pub elements: Vec<(String, PathBuf)>,
    pub phases: Vec<(String, Vec<(String, String)>)>,
    pub block_device_order: Vec<String>,
}

impl DryRun {
    pub fn render(&self) -> String {
        let mut out = String::from("elements:\n");
        for (name, path) in &self.elements {
            out.push_str(&format!("  {name} {}\n", path.display()));
        }
        out.push_str("phases:\n");
        for (phase, hooks) in &self.phases {
            out.push_str(&format!("  {phase}:\n"));
            for (hook, element) in hooks {
                out.push_str(&format!("    {hook} ({element})\n"));
            }
        }
        out.push_str("block-device:\n");
        for node in &self.block_device_order {
            out.push_str(&format!("  {node}\n"));
        }
        out
    }
}

/// Plans a build without running anything.
pub fn dry_run(options: &BuildOptions) -> Result<DryRun, Error> {
    let (_, elements) = resolve(options)?;
    let filter = NameFilter::default();
    let mut report = DryRun {
        elements: elements
            .iter()
            .map(|e| (e.name.clone(), e.path.clone()))
            .collect(),
        ..DryRun::default()
    };
    for phase in phases::ALL {
        let mut hooks: BTreeMap<OsString, String> = BTreeMap::new();
        for element in &elements {
            let dir = element.path.join(phase.dir_name());
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !filter.matches(&name) || !entry.path().is_file() {
                    continue;
                }
                if let Some(first) = hooks.get(&name) {
                    return Err(phases::duplicate_hook(
                        &Path::new(&phase.dir_name()).join(&name),
                        first,
                        &element.name,
                    ));
                }
                hooks.insert(name, element.name.clone());
            }
        }
        if hooks.is_empty() {
            continue;
        }
        let mut names: Vec<OsString> = hooks.keys().cloned().collect();
        refresh_config::order_names(&mut names);
        report.phases.push((
            phase.dir_name(),
            names
                .iter()
                .map(|n| (n.to_string_lossy().into_owned(), hooks[n].clone()))
                .collect(),
        ));
    }
    let refs: Vec<&Element> = elements.iter().collect();
    let config = image::block_device_config(options, &refs)?;
    report.block_device_order = config
        .graph
        .order()
        .into_iter()
        .map(str::to_owned)
        .collect();
    Ok(report)
}

/// A temporary folder removed on drop, even when the build left read-only folders in it.
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create(parent: &Path, prefix: &str) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, &e))?;
        Ok(WorkDir { path: dir.keep() })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

/// Removes a tree; folders the build made read-only are made writable first.
pub(crate) fn remove_tree(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    fn unlock(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    unlock(&entry.path());
                }
            }
        }
    }
    unlock(path);
    let _ = std::fs::remove_dir_all(path);
}

/// Fails with a clear message when `dir` has less than `need` bytes free.
pub fn check_space(dir: &Path, need: u64, purpose: &str) -> Result<(), Error> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| Error::Io {
        path: dir.to_owned(),
        message: e.desc().to_owned(),
    })?;
    let have = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    if have < need {
        return Err(Error::Build(format!(
            "not enough space in {}: need {} MiB, have {} MiB ({purpose})",
            dir.display(),
            need.div_ceil(1 << 20),
            have >> 20
        )));
    }
    Ok(())
}

/// The chroot's fixed `PATH` (upstream's starts with the host's `$PATH`, which leaks host
/// folders into the new OS).
pub const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Settings of the caller's environment that hooks see: diskimage-builder's own and proxies.
fn passed_through(name: &str) -> bool {
    name.starts_with("DIB_")
        || matches!(
            name.to_ascii_lowercase().as_str(),
            "http_proxy" | "https_proxy" | "no_proxy" | "ftp_proxy" | "term" | "source_date_epoch"
        )
}

/// A running build.
pub struct Builder<'a> {
    options: &'a BuildOptions,
    runner: ProcessRunner,
    on_event: &'a mut dyn FnMut(&BuildEvent<'_>),
    privilege: Privilege,
    elements: Vec<Element>,
    timings: Vec<Timing>,
    /// Variables exported to every hook (beyond the passed-through ones).
    exports: BTreeMap<String, String>,
    build_dir: Option<WorkDir>,
    image_dir: Option<WorkDir>,
    hooks: PathBuf,
    root: PathBuf,
    assembly: HookAssembly,
    /// Packages per chroot phase from the elements' package-installs files, when dib-core
    /// installs them itself (no `package-installs` element in the build).
    packages: Option<crate::package_installs::Squashed>,
    /// `DISTRO_NAME` and `DIB_RELEASE` as the elements' environment.d sets them.
    distro: Option<(String, Option<String>)>,
}

impl std::fmt::Debug for Builder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("root", &self.root)
            .field("privilege", &self.privilege)
            .finish()
    }
}

/// Runs a whole build. `runner` starts every hook (give it the signal pipe of the program so
/// that SIGINT/SIGTERM end the build cleanly).
pub fn build(
    options: &BuildOptions,
    runner: ProcessRunner,
    on_event: &mut dyn FnMut(&BuildEvent<'_>),
) -> Result<BuildReport, Error> {
    let started = Instant::now();
    let mut builder = Builder {
        options,
        runner,
        on_event,
        privilege: Privilege::current(),
        elements: Vec::new(),
        timings: Vec::new(),
        exports: BTreeMap::new(),
        build_dir: None,
        image_dir: None,
        hooks: PathBuf::new(),
        root: PathBuf::new(),
        assembly: HookAssembly::default(),
        packages: None,
        distro: None,
    };
    let result = builder.run();
    let outputs = match result {
        Ok(outputs) => outputs,
        Err(error) => {
            if options.breaks.iter().any(|b| b == "after-error") {
                builder.open_break_shell(Side::Host);
            }
            return Err(error);
        }
    };
    let mut report = BuildReport {
        outputs,
        timings: std::mem::take(&mut builder.timings),
        elements: builder.elements.iter().map(|e| e.name.clone()).collect(),
        total: started.elapsed(),
    };
    let timing_path = options.output_base().with_extension("timing.json");
    write_atomically(&timing_path, report.timing_json().as_bytes())?;
    report.outputs.push(timing_path);
    Ok(report)
}

/// Writes `path` through a temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, &e))?;
    use_default_mode(file.as_file(), path)?;
    file.write_all(data).map_err(|e| Error::io(path, &e))?;
    file.as_file().sync_all().map_err(|e| Error::io(path, &e))?;
    file.persist(path).map_err(|e| Error::io(path, &e.error))?;
    Ok(())
}

/// Gives a file made by `tempfile` (0600) the mode a new file gets: 0666 minus the umask.
pub(crate) fn use_default_mode(file: &std::fs::File, path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    // Read, not set: umask(2) would change it for every thread meanwhile.
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    file.set_permissions(std::fs::Permissions::from_mode(0o666 & !umask))
        .map_err(|e| Error::io(path, &e))
}

impl Builder<'_> {
    fn event(&mut self, event: BuildEvent<'_>) {
        (self.on_event)(&event);
    }

    fn step<T>(
        &mut self,
        name: &str,
        work: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.check_interrupt()?;
        self.event(BuildEvent::Step(name));
        let started = Instant::now();
        let result = work(self);
        self.timings.push(Timing {
            phase: "dib-core".to_owned(),
            element: String::new(),
            hook: name.to_owned(),
            seconds: started.elapsed().as_secs_f64(),
            status: i32::from(result.is_err()),
        });
        result
    }

    fn check_interrupt(&mut self) -> Result<(), Error> {
        match self.runner.pending_interrupt() {
            Some(signal) => Err(Error::Build(format!(
                "interrupted by signal {signal}; the build was stopped and its temporary files removed"
            ))),
            None => Ok(()),
        }
    }

    fn run(&mut self) -> Result<Vec<PathBuf>, Error> {
        let options = self.options;
        let (set, elements) = resolve(options)?;
        for o in &set.overrides {
            let message = format!(
                "Element <{}> overrides <{}>",
                o.winner.display(),
                o.loser.display()
            );
            self.event(BuildEvent::Warning(&message));
        }
        self.elements = elements;
        let out_dir = options
            .output_base()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, &e))?;
        std::fs::create_dir_all(&options.tmp_dir).map_err(|e| Error::io(&options.tmp_dir, &e))?;
        let minimum = options.image_size.unwrap_or(0).max(64 << 20);
        check_space(&options.tmp_dir, minimum, "build folder")?;

        let build_dir = WorkDir::create(&options.tmp_dir, "dib_build.")?;
        let image_dir = WorkDir::create(&options.tmp_dir, "dib_image.")?;
        self.hooks = build_dir.path().join("hooks");
        self.root = build_dir.path().join("mnt");
        std::fs::create_dir(&self.root).map_err(|e| Error::io(&self.root, &e))?;
        self.build_dir = Some(build_dir);
        self.image_dir = Some(image_dir);

        let elements = self.elements.clone();
        self.assembly = self.step("assembling hooks", |b| {
            let assembly = assemble_hooks(&elements, &b.hooks)?;
            let env_d = b.hooks.join("environment.d");
            std::fs::create_dir_all(&env_d).map_err(|e| Error::io(&env_d, &e))?;
            let install_type = env_d.join("11-dib-install-type.bash");
            std::fs::write(
                &install_type,
                "export DIB_DEFAULT_INSTALLTYPE=${DIB_DEFAULT_INSTALLTYPE:-\"source\"}\n",
            )
            .map_err(|e| Error::io(&install_type, &e))?;
            Ok(assembly)
        })?;

        let refs: Vec<&Element> = elements.iter().collect();
        let disk_config = image::block_device_config(options, &refs)?;
        self.set_exports(&refs, &disk_config);

        self.run_phase(phases::ROOT)?;
        self.check_root_deployed()?;
        let resolv = self.step("preparing the chroot", |b| b.swap_resolv_conf())?;
        self.step("squashing package-installs", |b| b.squash_packages())?;
        for phase in [phases::EXTRA_DATA, phases::PRE_INSTALL, phases::INSTALL] {
            self.run_phase(phase)?;
        }
        if !options.packages.is_empty() {
            self.install_packages()?;
        }
        for phase in [phases::POST_INSTALL, phases::POST_ROOT] {
            self.run_phase(phase)?;
        }
        self.step("sizing the image", |b| {
            let _ = std::fs::remove_dir(b.root.join("lost+found"));
            let size = image::image_size(options, &b.root, &refs)?;
            b.exports
                .insert("DIB_IMAGE_SIZE".to_owned(), (size / 1024).to_string());
            Ok(())
        })?;
        self.run_phase(phases::BLOCK_DEVICE)?;
        let needs_disk = options.types.iter().any(OutputType::needs_disk);
        if needs_disk {
            self.step("writing fstab", |b| {
                let fstab = disk_config.graph.fstab();
                let etc = b.root.join("etc");
                std::fs::create_dir_all(&etc).map_err(|e| Error::io(&etc, &e))?;
                write_atomically(&etc.join("fstab"), fstab.as_bytes())
            })?;
        }
        for phase in [phases::PRE_FINALISE, phases::FINALISE, phases::CLEANUP] {
            self.run_phase(phase)?;
        }
        self.step("finishing the tree", |b| {
            restore_resolv_conf(&b.root, resolv)?;
            finish_tree(&b.root)?;
            if let Some(epoch) = &options.source_date_epoch {
                image::clamp_mtimes(&b.root, epoch_seconds(epoch)?)?;
            }
            Ok(())
        })?;
        self.write_outputs(&disk_config)
    }

    fn set_exports(&mut self, elements: &[&Element], disk: &image::DiskConfig) {
        let options = self.options;
        let names: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
        let build_dir = self
            .build_dir
            .as_ref()
            .map(|d| d.path().to_owned())
            .unwrap_or_default();
        let image_dir = self
            .image_dir
            .as_ref()
            .map(|d| d.path().to_owned())
            .unwrap_or_default();
        let mut set = |k: &str, v: String| {
            self.exports.insert(k.to_owned(), v);
        };
        set("ARCH", options.arch());
        set("IMAGE_NAME", options.image_basename());
        set("IMAGE_ELEMENT", names.join(" "));
        set("IMAGE_ELEMENT_YAML", element_yaml(elements));
        set("ELEMENTS_PATH", options.elements_path.clone());
        set("TMP_BUILD_DIR", build_dir.display().to_string());
        set("TMP_IMAGE_DIR", image_dir.display().to_string());
        set("TMP_HOOKS_PATH", self.hooks.display().to_string());
        set("TMP_MOUNT_PATH", self.root.display().to_string());
        set("DIB_ROOT_LABEL", disk.root_label());
        set("DIB_ROOT_FSTYPE", disk.root_fstype());
        set("DIB_BOOT_LABEL", disk.boot_label());
        set("DIB_MOUNTPOINTS", disk.mount_points().join("|"));
        set("DIB_DEBUG_TRACE", options.trace.to_string());
        set("FS_TYPE", options.fs_type.clone());
        set("DIB_PYTHON_EXEC", "python3".to_owned());
        set("DIB_IMAGE_CACHE", options.image_cache.display().to_string());
        set("DIB_INIT_SYSTEM", "systemd".to_owned());
        if options.offline {
            set("DIB_OFFLINE", "1".to_owned());
        }
        if let Some(epoch) = &options.source_date_epoch {
            set("SOURCE_DATE_EPOCH", epoch.clone());
        }
        if !options.breaks.is_empty() {
            set("break", options.breaks.join(","));
        }
    }

    /// The environment a phase's hooks start from.
    fn hook_environment(&self, phase: Phase) -> Vec<(OsString, OsString)> {
        let mut vars: BTreeMap<String, String> = self
            .options
            .env
            .iter()
            .filter(|(k, _)| passed_through(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.extend(self.exports.clone());
        vars.insert("LC_ALL".to_owned(), "C".to_owned());
        match phase.side {
            Side::Host => {
                let path = self.options.env.get("PATH").cloned().unwrap_or_else(|| {
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()
                });
                vars.insert(
                    "PATH".to_owned(),
                    format!("{path}:{}", self.hooks.join("bin").display()),
                );
                let home = self
                    .options
                    .env
                    .get("HOME")
                    .cloned()
                    .unwrap_or("/root".into());
                vars.insert("HOME".to_owned(), home);
                if phase.target_root {
                    vars.insert("TARGET_ROOT".to_owned(), self.root.display().to_string());
                }
            }
            Side::Chroot => {
                vars.insert("PATH".to_owned(), CHROOT_PATH.to_owned());
                vars.insert("HOME".to_owned(), "/root".to_owned());
            }
        }
        vars.into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    fn sandbox(&self) -> Result<Sandbox, Error> {
        Sandbox::chroot(self.privilege, &self.root, Some(&self.hooks))
            .map_err(|e| Error::io(&self.root, &e))
    }

    fn break_point(&mut self, point: &str, side: Side) {
        if self.options.breaks.iter().any(|b| b == point) {
            let message = format!("break point {point}: starting a shell; exit it to continue");
            self.event(BuildEvent::Warning(&message));
            self.open_break_shell(side);
        }
    }

    fn open_break_shell(&mut self, side: Side) {
        let mut command = match (&self.options.break_cmd, side) {
            (Some(cmd), Side::Host) => {
                let mut c = std::process::Command::new("sh");
                c.arg("-c").arg(cmd);
                c
            }
            _ => std::process::Command::new("bash"),
        };
        // A shell at a break point sees what a hook of that side sees.
        let env = self.hook_environment(match side {
            Side::Host => phases::ROOT,
            Side::Chroot => phases::INSTALL,
        });
        command.env_clear().envs(env);
        if side == Side::Chroot {
            if let Ok(sandbox) = self.sandbox() {
                Arc::new(sandbox).apply(&mut command);
            }
        }
        let _ = command.status();
    }

    fn run_phase(&mut self, phase: Phase) -> Result<(), Error> {
        self.check_interrupt()?;
        let name = phase.name;
        self.break_point(&format!("before-{name}"), phase.side);
        let packages_phase = matches!(phase.name, "pre-install" | "install" | "post-install");
        if packages_phase {
            self.phase_packages(phase, PackageAction::Install)?;
        }
        let dir = self.hooks.join(phase.dir_name());
        if dir.is_dir() {
            let env = self.hook_environment(phase);
            self.runner.set_base_environment(Some(env));
            let before = match phase.side {
                Side::Host => None,
                Side::Chroot => Some(self.sandbox()?.into_before_exec()),
            };
            self.runner.set_before_exec(before);
            let options = RunPartsOptions::default();
            let hooks_total = refresh_config::list_hooks(&dir, &options.filter)
                .map(|s| s.hooks.len())
                .unwrap_or(0);
            self.event(BuildEvent::PhaseStarting {
                phase: name,
                hooks: hooks_total,
            });
            let assembly = std::mem::take(&mut self.assembly);
            let dir_name = phase.dir_name();
            let mut finished: Vec<Timing> = Vec::new();
            let on_event = &mut *self.on_event;
            let mut record = |event: &refresh_config::Event<'_>| match event {
                refresh_config::Event::HookStarting { path } => {
                    let hook = path.file_name().unwrap_or_default();
                    let element = assembly.owner(&dir_name, hook).unwrap_or("");
                    on_event(&BuildEvent::HookStarting {
                        phase: name,
                        hook: &hook.to_string_lossy(),
                        element,
                    });
                }
                refresh_config::Event::HookFinished { hook } => {
                    let timing = Timing {
                        phase: name.to_owned(),
                        element: assembly
                            .owner(&dir_name, &hook.name)
                            .unwrap_or("")
                            .to_owned(),
                        hook: hook.name.to_string_lossy().into_owned(),
                        seconds: hook.duration.as_secs_f64(),
                        status: hook.outcome.status(),
                    };
                    on_event(&BuildEvent::HookFinished { timing: &timing });
                    finished.push(timing);
                }
                _ => {}
            };
            let report = match phase.side {
                Side::Host => {
                    refresh_config::run_parts(&dir, &options, &mut self.runner, &mut record)
                }
                Side::Chroot => {
                    let mut chroot = ChrootRunner {
                        inner: &mut self.runner,
                        hooks: self.hooks.clone(),
                    };
                    let runner: &mut dyn HookRunner = &mut chroot;
                    refresh_config::run_parts(&dir, &options, runner, &mut record)
                }
            };
            self.runner.set_before_exec(None);
            self.runner.set_base_environment(None);
            self.assembly = assembly;
            self.timings.extend(finished);
            let report = report.map_err(|e| Error::Build(format!("{name}.d: {e}")))?;
            if let Some(summary) = report.failure_summary() {
                let element = report
                    .hooks
                    .last()
                    .and_then(|h| self.assembly.owner(&phase.dir_name(), &h.name))
                    .map(|e| format!(" (element {e})"))
                    .unwrap_or_default();
                let side = match phase.side {
                    Side::Host => "on the host",
                    Side::Chroot => "in the chroot",
                };
                return Err(Error::Build(format!(
                    "phase {name}.d {side} failed: {summary}{element}"
                )));
            }
        }
        if packages_phase {
            self.phase_packages(phase, PackageAction::Uninstall)?;
        }
        self.break_point(&format!("after-{name}"), phase.side);
        Ok(())
    }

    fn check_root_deployed(&self) -> Result<(), Error> {
        let entries: Vec<String> = std::fs::read_dir(&self.root)
            .map_err(|e| Error::io(&self.root, &e))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lost+found" && n != "tmp")
            .collect();
        if entries.is_empty() {
            return Err(Error::Build(
                "Failed to deploy the root element. (root.d left an empty tree: no element provides operating-system content)".to_owned(),
            ));
        }
        Ok(())
    }

    /// Moves the tree's resolv.conf aside and puts the host's in, so hooks can resolve names.
    fn swap_resolv_conf(&mut self) -> Result<ResolvState, Error> {
        let etc = self.root.join("etc");
        if !etc.is_dir() {
            return Ok(ResolvState::Untouched);
        }
        let conf = etc.join("resolv.conf");
        let orig = etc.join("resolv.conf.ORIG");
        let had = std::fs::symlink_metadata(&conf).is_ok();
        if had {
            std::fs::rename(&conf, &orig).map_err(|e| Error::io(&conf, &e))?;
        }
        let host =
            std::fs::read("/etc/resolv.conf").unwrap_or_else(|_| b"nameserver 8.8.8.8\n".to_vec());
        std::fs::write(&conf, host).map_err(|e| Error::io(&conf, &e))?;
        Ok(if had {
            ResolvState::Saved
        } else {
            ResolvState::Added
        })
    }

    fn install_packages(&mut self) -> Result<(), Error> {
        let packages = self.options.packages.clone();
        self.step("installing -p packages", |b| {
            b.package_manager(PackageAction::Install, &packages)
        })
    }

    /// Squashes the elements' package-installs files with the environment the elements'
    /// environment.d files give, and saves the plan as `$TMP_HOOKS_PATH/package-installs.json`
    /// (what upstream's package-installs element would read). With a `package-installs`
    /// element in the build, that element does the installing and dib-core only plans.
    fn squash_packages(&mut self) -> Result<(), Error> {
        let mut lists = Vec::new();
        for element in &self.elements {
            let files = crate::package_installs::read_element(element)?;
            if !files.is_empty() {
                lists.push((element.name.clone(), files));
            }
        }
        let env = self.element_environment()?;
        self.distro = env
            .get("DISTRO_NAME")
            .map(|d| (d.clone(), env.get("DIB_RELEASE").cloned()));
        if lists.is_empty() {
            return Ok(());
        }
        let squashed = crate::package_installs::squash(&lists, &|k| env.get(k).cloned())?;
        write_atomically(
            &self.hooks.join("package-installs.json"),
            squashed.to_json().as_bytes(),
        )?;
        if !self.elements.iter().any(|e| e.name == "package-installs") {
            self.packages = Some(squashed);
        }
        Ok(())
    }

    /// The variables hooks see once the elements' environment.d files are sourced.
    fn element_environment(&mut self) -> Result<BTreeMap<String, String>, Error> {
        let base = self.hook_environment(phases::INSTALL);
        let mut env: BTreeMap<String, String> = base
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        let env_dir = self.hooks.join("environment.d");
        let files = refresh_config::environment_files(
            &env_dir,
            &refresh_config::EnvironmentSource::Directory(env_dir.clone()),
        )
        .map_err(|e| Error::Build(format!("environment.d: {e}")))?;
        if files.is_empty() {
            return Ok(env);
        }
        self.runner.set_base_environment(Some(base));
        let loaded = self.runner.load_environment(
            &refresh_config::EnvironmentRequest {
                files: &files,
                limit: None,
            },
            &mut |_| {},
        );
        self.runner.set_base_environment(None);
        match loaded.map_err(|e| Error::Build(format!("environment.d: {e}")))? {
            refresh_config::EnvironmentLoad::Loaded(loaded) => {
                env.extend(loaded.vars.iter().map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                }));
                Ok(env)
            }
            refresh_config::EnvironmentLoad::Failed { outcome, file } => {
                Err(Error::Build(format!(
                    "sourcing environment.d{} {outcome}",
                    file.map(|f| format!(" file {}", f.display()))
                        .unwrap_or_default()
                )))
            }
        }
    }

    /// Installs (before the phase's hooks) or removes (after them) the packages the elements
    /// ask for in `phase`, names mapped by each element's pkg-map, where upstream's hooks do.
    fn phase_packages(&mut self, phase: Phase, action: PackageAction) -> Result<(), Error> {
        let Some(plan) = self
            .packages
            .as_ref()
            .and_then(|s| s.phases.iter().find(|(p, _)| *p == phase.dir_name()))
            .map(|(_, plan)| plan.clone())
        else {
            return Ok(());
        };
        let (wanted, verb) = match action {
            PackageAction::Install => (&plan.install, "installing"),
            PackageAction::Uninstall => (&plan.uninstall, "removing"),
        };
        let packages = self.map_packages(wanted)?;
        if packages.is_empty() {
            return Ok(());
        }
        self.step(&format!("{verb} {}.d packages", phase.name), |b| {
            b.package_manager(action, &packages)
        })
    }

    fn map_packages(&self, wanted: &[(String, String)]) -> Result<Vec<String>, Error> {
        let (distro, release) = self.distro.clone().unwrap_or_else(|| (String::new(), None));
        let mut out = Vec::new();
        for (package, element) in wanted {
            let map_file = self
                .elements
                .iter()
                .find(|e| e.name == *element)
                .map(|e| e.path.join("pkg-map"))
                .filter(|p| p.is_file());
            match map_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, &e))?;
                    let map = crate::pkg_map::PkgMap::parse(&text)?;
                    out.extend(map.map(element, &distro, release.as_deref(), &[package], true)?);
                }
                None => out.push(package.clone()),
            }
        }
        Ok(out)
    }

    /// Runs the image's package manager in the chroot: upstream's `install-packages` when the
    /// image has it, else apt-get or dnf.
    fn package_manager(&mut self, action: PackageAction, packages: &[String]) -> Result<(), Error> {
        let list = packages.join(" ");
        // Bootstrappers leave no package lists behind: fetch them before the first install.
        let (install_flag, apt, dnf, update) = match action {
            PackageAction::Install => ("", "install --no-install-recommends", "install", "yes"),
            PackageAction::Uninstall => ("-e ", "purge", "remove", "no"),
        };
        let script = format!(
            "set -eu\nif command -v install-packages >/dev/null; then install-packages {install_flag}{list}\n\
             elif command -v apt-get >/dev/null; then export DEBIAN_FRONTEND=noninteractive\n\
             if [ {update} = yes ] && ! ls /var/lib/apt/lists/ 2>/dev/null | grep -q _Packages; then apt-get -y update; fi\n\
             apt-get -y {apt} {list}\n\
             elif command -v dnf >/dev/null; then dnf -y {dnf} {list}\n\
             else echo 'no package manager (install-packages, apt-get, dnf) in the image' >&2; exit 1; fi\n"
        );
        let env = self.hook_environment(phases::INSTALL);
        let sandbox = Arc::new(self.sandbox()?);
        let mut command = std::process::Command::new("sh");
        command.arg("-c").arg(&script).env_clear().envs(env);
        sandbox.apply(&mut command);
        let status = command
            .status()
            .map_err(|e| Error::Build(format!("running the package manager: {e}")))?;
        if !status.success() {
            let verb = match action {
                PackageAction::Install => "installing",
                PackageAction::Uninstall => "removing",
            };
            return Err(Error::Build(format!(
                "{verb} packages {list} in the chroot failed: {status}"
            )));
        }
        Ok(())
    }

    fn write_outputs(&mut self, disk: &image::DiskConfig) -> Result<Vec<PathBuf>, Error> {
        let options = self.options;
        let base = options.output_base();
        let mut outputs = Vec::new();
        let epoch = match &options.source_date_epoch {
            Some(e) => Some(epoch_seconds(e)?),
            None => None,
        };
        let owner = match self.privilege {
            Privilege::Root => None,
            Privilege::UserNamespace { uid, gid } => Some((uid, gid)),
        };
        for kind in options.types.iter().filter(|t| !t.needs_disk()) {
            let path = base.with_extension(kind.extension());
            let root = self.root.clone();
            let written = self.step(&format!("writing {}", kind.extension()), |b| {
                b.set_aside(&path)?;
                match kind {
                    OutputType::Ramdisk => image::write_initramfs(&root, &path, epoch, owner)?,
                    OutputType::Kernel => return image::extract_kernel(&root, &base),
                    _ => image::write_tar(&root, &path, *kind == OutputType::Tgz, epoch, owner)?,
                }
                Ok(vec![path.clone()])
            })?;
            outputs.extend(written);
        }
        if options.types.iter().any(OutputType::needs_disk) {
            let image_dir = self
                .image_dir
                .as_ref()
                .map(|d| d.path().to_owned())
                .unwrap_or_default();
            let raw = image_dir.join("image.raw");
            let size = self
                .exports
                .get("DIB_IMAGE_SIZE")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024;
            let tree_bytes = image::tree_bytes(&self.root)?;
            check_space(&image_dir, tree_bytes + (16 << 20), "disk image")?;
            let privilege = self.privilege;
            let root = self.root.clone();
            self.step("assembling the disk", |_| {
                image::assemble_disk(&image::DiskRequest {
                    config: disk,
                    options,
                    tree: &root,
                    raw: &raw,
                    size,
                    privilege,
                })
            })?;
            // raw goes last: it is moved, not copied.
            let mut kinds: Vec<&OutputType> =
                options.types.iter().filter(|t| t.needs_disk()).collect();
            kinds.sort_by_key(|k| **k == OutputType::Raw);
            for kind in kinds {
                let path = base.with_extension(kind.extension());
                self.step(&format!("writing {}", kind.extension()), |b| {
                    b.set_aside(&path)?;
                    image::convert(&raw, &path, kind, options)
                })?;
                outputs.push(path);
            }
        }
        if options.checksum {
            let mut sums = Vec::new();
            for output in &outputs {
                let output = output.clone();
                sums.extend(self.step("checksums", |_| image::write_checksums(&output))?);
            }
            outputs.extend(sums);
        }
        for output in &outputs {
            self.event(BuildEvent::Output { path: output });
        }
        Ok(outputs)
    }

    /// An existing output is renamed `NAME-YYYY.mm.dd-HH.MM.SS.EXT` unless overwriting, as
    /// upstream does; reproducible builds always overwrite.
    fn set_aside(&mut self, path: &Path) -> Result<(), Error> {
        if !path.exists() || self.options.overwrite || self.options.source_date_epoch.is_some() {
            return Ok(());
        }
        let stamp = image::timestamp_now();
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let ext = path.extension().unwrap_or_default().to_string_lossy();
        let aside = path.with_file_name(format!("{name}-{stamp}.{ext}"));
        std::fs::rename(path, &aside).map_err(|e| Error::io(path, &e))?;
        let message = format!(
            "kept the previous {} as {}",
            path.display(),
            aside.display()
        );
        self.event(BuildEvent::Warning(&message));
        Ok(())
    }
}

/// What the package manager is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PackageAction {
    Install,
    Uninstall,
}

/// What was done to the tree's resolv.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResolvState {
    Untouched,
    Saved,
    Added,
}

fn restore_resolv_conf(root: &Path, state: ResolvState) -> Result<(), Error> {
    let conf = root.join("etc/resolv.conf");
    let orig = root.join("etc/resolv.conf.ORIG");
    match state {
        ResolvState::Untouched => {}
        ResolvState::Added => {
            // An element that replaced it with a symlink keeps its choice.
            if !std::fs::symlink_metadata(&conf).is_ok_and(|m| m.file_type().is_symlink()) {
                let _ = std::fs::remove_file(&conf);
            }
        }
        ResolvState::Saved => {
            if std::fs::symlink_metadata(&conf).is_ok_and(|m| m.file_type().is_symlink()) {
                let _ = std::fs::remove_file(&orig);
            } else if std::fs::symlink_metadata(&orig).is_ok() {
                std::fs::rename(&orig, &conf).map_err(|e| Error::io(&conf, &e))?;
            }
        }
    }
    Ok(())
}

/// Upstream's last touches: an empty `/tmp`, truncated logs, no `/root/**/*.log`. Missing
/// folders are fine (upstream fails without `/var/log`).
fn finish_tree(root: &Path) -> Result<(), Error> {
    let tmp = root.join("tmp");
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if let Ok(meta) = std::fs::symlink_metadata(&path) {
                    if meta.is_dir() {
                        walk(&path, visit);
                    } else {
                        visit(&path, &meta);
                    }
                }
            }
        }
    }
    walk(&root.join("var/log"), &mut |path, meta| {
        if meta.is_file() && meta.len() > 0 {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path);
        }
    });
    walk(&root.join("root"), &mut |path, meta| {
        if meta.is_file() && path.extension().is_some_and(|e| e == "log") {
            let _ = std::fs::remove_file(path);
        }
    });
    Ok(())
}

/// `SOURCE_DATE_EPOCH` as seconds.
pub fn epoch_seconds(epoch: &str) -> Result<i64, Error> {
    epoch.trim().parse().map_err(|_| {
        Error::Build(format!(
            "SOURCE_DATE_EPOCH must be a number of seconds, not {epoch:?}"
        ))
    })
}
