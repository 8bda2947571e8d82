//! Writing rendered files: the [`FileWriter`] seam, the [`AtomicWriter`] that touches the disk
//! and the [`DryRunWriter`] that only says what would change.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::control::Control;
use crate::error::{Error, Result};
use crate::tree::Rendered;

/// What happened to one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Written,
    Deleted,
    /// Content, mode and owner already as desired: left untouched.
    Unchanged,
    /// Empty with `allow_empty: false`, and absent: nothing to do.
    NotCreated,
}

impl Action {
    /// The change report's word (`not creating empty` counts as unchanged).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Written => "written",
            Action::Deleted => "deleted",
            Action::Unchanged | Action::NotCreated => "unchanged",
        }
    }
}

/// One entry of the change report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The output root as given, joined with the template's relative path.
    pub path: PathBuf,
    pub action: Action,
}

impl Change {
    /// The target as an absolute path, as the change report names it.
    pub fn absolute_path(&self) -> PathBuf {
        absolute(&self.path)
    }
}

/// One file to bring into its desired state.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub path: &'a Path,
    pub body: &'a [u8],
    pub control: &'a Control,
}

impl Target<'_> {
    /// An empty body under `allow_empty: false` removes the file instead.
    fn removes(&self) -> bool {
        self.body.is_empty() && !self.control.allow_empty
    }
}

/// How rendered bodies reach their targets.
pub trait FileWriter {
    /// Brings every target into its desired state, reporting each change as it takes effect;
    /// on error, the changes reported so far are the ones made.
    fn write_batch(
        &mut self,
        targets: &[Target<'_>],
        on_change: &mut dyn FnMut(&Change),
    ) -> Result<()>;
}

/// Writes every rendered file under `output_root`, refusing targets whose existing
/// directories lead outside the root.
pub fn write_all(
    rendered: &[Rendered],
    output_root: &Path,
    writer: &mut dyn FileWriter,
    on_change: &mut dyn FnMut(&Change),
) -> Result<()> {
    let root = absolute(output_root);
    let real_root = canonical(&root);
    let mut checked_dirs = std::collections::HashSet::new();
    let mut paths = Vec::with_capacity(rendered.len());
    for file in rendered {
        let target = root.join(&file.template.relative);
        // Many files share a directory: resolve each directory once.
        if checked_dirs.insert(target.parent().map(Path::to_owned)) {
            check_inside(&root, &real_root, &target)?;
        }
        // Named as the caller named the root (upstream logs `out/etc/x`), checked absolute.
        paths.push(output_root.join(&file.template.relative));
    }
    let targets: Vec<Target<'_>> = rendered
        .iter()
        .zip(&paths)
        .map(|(file, path)| Target {
            path,
            body: &file.body,
            control: &file.control,
        })
        .collect();
    writer.write_batch(&targets, on_change)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Refuses a target whose path climbs out of the root, or whose existing parent directories
/// resolve (through symlinks) outside it.
fn check_inside(root: &Path, real_root: &Path, target: &Path) -> Result<()> {
    let escape = || Error::Escape {
        path: target.to_owned(),
        root: root.to_owned(),
    };
    let relative = target.strip_prefix(root).map_err(|_| escape())?;
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(escape());
    }
    let mut existing = target.parent();
    while let Some(dir) = existing.filter(|d| d.starts_with(root) && *d != root) {
        if let Ok(real) = fs::canonicalize(dir) {
            return if real.starts_with(real_root) {
                Ok(())
            } else {
                Err(escape())
            };
        }
        existing = dir.parent();
    }
    Ok(())
}

/// The real path of `path`: its longest existing prefix resolved, the rest appended.
fn canonical(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut current = path;
    loop {
        if let Ok(real) = fs::canonicalize(current) {
            return rest.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (current.parent(), current.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                current = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

/// What the target should end up as: body, permission bits, owner, group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Desired {
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// Control values, else the existing file's (following symlinks, as upstream), else 0644 and
/// the process's own ids.
fn desired(target: &Path, control: &Control) -> Desired {
    let existing = fs::metadata(target).ok().filter(|m| m.is_file());
    Desired {
        mode: control
            .mode
            .or(existing.as_ref().map(|m| m.mode() & 0o7777))
            .unwrap_or(0o644),
        uid: control.owner.or(existing.as_ref().map(|m| m.uid())),
        gid: control.group.or(existing.as_ref().map(|m| m.gid())),
    }
}

/// Whether `target` is a regular file (not a symlink) that already is what is desired.
fn is_unchanged(target: &Path, body: &[u8], control: &Control) -> bool {
    let Ok(meta) = fs::symlink_metadata(target) else {
        return false;
    };
    meta.is_file()
        && meta.len() == body.len() as u64
        && control.mode.is_none_or(|mode| meta.mode() & 0o7777 == mode)
        && control.owner.is_none_or(|uid| meta.uid() == uid)
        && control.group.is_none_or(|gid| meta.gid() == gid)
        && fs::read(target).is_ok_and(|current| current == body)
}

/// Writes for real, in three steps so that no target is ever half-written:
/// 1. every changed body goes to a temporary file in its target's directory (written,
///    chowned, chmodded); a failure here removes every temporary file and changes nothing;
/// 2. they are made durable: each with `fsync` (and the directories created for them) when
///    there are few, else with one `syncfs` per file system, which costs far less than
///    hundreds of fsyncs;
/// 3. each temporary file is renamed over its target, or an empty `allow_empty: false` target
///    removed, in order; then the directories (or file systems) are synced again.
///
/// Targets whose content, mode and owner are already right are left untouched.
#[derive(Debug, Default)]
pub struct AtomicWriter {
    /// Directories created while staging, whose parents need syncing.
    created_dirs: Vec<PathBuf>,
}

/// Above this many staged files one `syncfs` replaces the per-file fsyncs.
const PER_FILE_SYNC_LIMIT: usize = 16;

/// A body waiting in its temporary file.
struct Staged {
    temp: PathBuf,
}

impl AtomicWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `target`'s body to a new temporary file, synced at once when `sync` is set.
    /// The open file is returned so that the caller can keep one per file system for
    /// `syncfs`; holding every one open would run out of descriptors on large trees.
    fn stage(&mut self, target: &Target<'_>, sync: bool) -> Result<(Staged, File)> {
        let desired = desired(target.path, target.control);
        let dir = target.path.parent().unwrap_or(Path::new("."));
        create_parents(dir, &mut self.created_dirs)?;
        let failed = |action: &'static str| {
            move |source: io::Error| Error::Write {
                path: target.path.to_owned(),
                action,
                source,
            }
        };
        let (temp, mut file) = create_temp(target.path).map_err(failed("create temporary file"))?;
        let result = (|| {
            file.write_all(target.body).map_err(failed("write"))?;
            if desired.uid.is_some() || desired.gid.is_some() {
                std::os::unix::fs::fchown(&file, desired.uid, desired.gid)
                    .map_err(failed("chown"))?;
            }
            // After chown, which clears set-id bits.
            file.set_permissions(fs::Permissions::from_mode(desired.mode))
                .map_err(failed("chmod"))?;
            if sync {
                file.sync_all().map_err(failed("fsync"))?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok((Staged { temp }, file)),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        }
    }
}

impl FileWriter for AtomicWriter {
    fn write_batch(
        &mut self,
        targets: &[Target<'_>],
        on_change: &mut dyn FnMut(&Change),
    ) -> Result<()> {
        let mut staged: Vec<Option<Staged>> = Vec::with_capacity(targets.len());
        let discard = |staged: &mut Vec<Option<Staged>>| {
            for entry in staged.iter_mut().filter_map(Option::take) {
                let _ = fs::remove_file(&entry.temp);
            }
        };
        let unchanged = unchanged_targets(targets);
        let writes = targets
            .iter()
            .zip(&unchanged)
            .filter(|(t, u)| !t.removes() && !**u)
            .count();
        let per_file = writes <= PER_FILE_SYNC_LIMIT;
        // One open file per file system, for syncfs.
        let mut device_files: Vec<(u64, File)> = Vec::new();
        for (target, unchanged) in targets.iter().zip(unchanged) {
            let entry = if target.removes() || unchanged {
                None
            } else {
                match self.stage(target, per_file) {
                    Ok((entry, file)) => {
                        let device = file.metadata().map(|m| m.dev()).unwrap_or(0);
                        if !per_file && !device_files.iter().any(|(d, _)| *d == device) {
                            device_files.push((device, file));
                        }
                        Some(entry)
                    }
                    Err(e) => {
                        discard(&mut staged);
                        return Err(e);
                    }
                }
            };
            staged.push(entry);
        }
        let synced = if per_file {
            let created_parents = self.created_dirs.iter().filter_map(|d| match d.parent() {
                Some(parent) if parent.as_os_str().is_empty() => Some(Path::new(".")),
                parent => parent,
            });
            created_parents
                .map(|d| d.to_owned())
                .try_for_each(|d| sync_dir(&d))
        } else {
            sync_filesystems(device_files.iter().map(|(_, file)| file))
        };
        self.created_dirs.clear();
        if let Err(e) = synced {
            discard(&mut staged);
            return Err(Error::Io {
                what: "syncing the written files".to_owned(),
                source: e,
            });
        }
        let mut synced_dirs = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            let action = match staged[index].take() {
                Some(entry) => match fs::rename(&entry.temp, target.path) {
                    Ok(()) => Action::Written,
                    Err(source) => {
                        let _ = fs::remove_file(&entry.temp);
                        discard(&mut staged);
                        return Err(Error::Write {
                            path: target.path.to_owned(),
                            action: "rename",
                            source,
                        });
                    }
                },
                None if target.removes() => match fs::remove_file(target.path) {
                    Ok(()) => Action::Deleted,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Action::NotCreated,
                    Err(source) => {
                        discard(&mut staged);
                        return Err(Error::Write {
                            path: target.path.to_owned(),
                            action: "delete",
                            source,
                        });
                    }
                },
                None => Action::Unchanged,
            };
            if matches!(action, Action::Written | Action::Deleted) {
                synced_dirs.push(target.path.parent().unwrap_or(Path::new(".")).to_owned());
            }
            on_change(&Change {
                path: target.path.to_owned(),
                action,
            });
        }
        // The renames and removals, durable: one flush per file system again.
        synced_dirs.sort();
        synced_dirs.dedup();
        let dirs: Vec<File> = synced_dirs
            .iter()
            .filter_map(|d| File::open(d).ok())
            .collect();
        sync_filesystems(dirs.iter()).map_err(|source| Error::Io {
            what: "syncing the output directories".to_owned(),
            source,
        })
    }
}

/// Which targets already hold their body, checked on all cores: comparing a large tree is
/// mostly reading it back.
fn unchanged_targets(targets: &[Target<'_>]) -> Vec<bool> {
    let check = |t: &Target<'_>| !t.removes() && is_unchanged(t.path, t.body, t.control);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads == 1 || targets.len() < 32 {
        return targets.iter().map(check).collect();
    }
    let chunk = targets.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = targets
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(check).collect::<Vec<bool>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// `syncfs` once for each file system holding one of `files`.
fn sync_filesystems<'a>(files: impl Iterator<Item = &'a File>) -> io::Result<()> {
    let mut devices = Vec::new();
    for file in files {
        let device = file.metadata()?.dev();
        if !devices.contains(&device) {
            devices.push(device);
            nix::unistd::syncfs(file).map_err(io::Error::from)?;
        }
    }
    Ok(())
}

/// Creates missing parents (0777 & ~umask), recording each one created.
fn create_parents(dir: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current.filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        missing.push(path);
        current = path.parent();
    }
    for path in missing.into_iter().rev() {
        match fs::create_dir(path) {
            Ok(()) => created.push(path.to_owned()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(source) => {
                return Err(Error::Write {
                    path: path.to_owned(),
                    action: "create directory",
                    source,
                })
            }
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Touches nothing; answers what [`AtomicWriter`] would do (`--validate` with a change report).
#[derive(Debug, Default, Clone, Copy)]
pub struct DryRunWriter;

impl FileWriter for DryRunWriter {
    fn write_batch(
        &mut self,
        targets: &[Target<'_>],
        on_change: &mut dyn FnMut(&Change),
    ) -> Result<()> {
        for target in targets {
            let action = if target.removes() {
                if fs::symlink_metadata(target.path).is_ok() {
                    Action::Deleted
                } else {
                    Action::NotCreated
                }
            } else if is_unchanged(target.path, target.body, target.control) {
                Action::Unchanged
            } else {
                Action::Written
            };
            on_change(&Change {
                path: target.path.to_owned(),
                action,
            });
        }
        Ok(())
    }
}

/// Creates a new temporary file (mode 0600) beside `target`, named `.<prefix>.<random>.tmp`
/// with only a prefix of the target's name, so that it fits wherever the target's does.
fn create_temp(target: &Path) -> io::Result<(PathBuf, File)> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix: String = target
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .chars()
        .take(32)
        .collect();
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u32(std::process::id());
        let temp = target.with_file_name(format!(".{prefix}.{:016x}.tmp", hasher.finish()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Replaces `path` with `bytes` (mode `mode`) through a temporary file in the same
/// directory: write, fsync, rename, fsync the directory; the temporary file is removed on
/// every error path. For small files written one at a time (caches, reports).
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (temp, mut file) = create_temp(path)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
