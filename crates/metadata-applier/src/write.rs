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

/// What a target needs, decided from one `lstat` (and a `stat` through a symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Empty under `allow_empty: false`.
    Remove,
    /// Content, mode and owner already right.
    Keep,
    Write(Desired),
}

fn plan(target: &Target<'_>) -> Result<Plan> {
    if target.removes() {
        return Ok(Plan::Remove);
    }
    let control = target.control;
    let link = fs::symlink_metadata(target.path).ok();
    // Upstream keeps the mode and owner of what the path points to; a symlink is replaced by
    // a file, never written through.
    let existing = match &link {
        Some(meta) if meta.is_symlink() => fs::metadata(target.path).ok().filter(|m| m.is_file()),
        Some(meta) if meta.is_file() => {
            if is_same(target, meta) {
                return Ok(Plan::Keep);
            }
            link
        }
        // Found before anything is written, rather than when the rename fails.
        Some(meta) if meta.is_dir() => {
            return Err(Error::Write {
                path: target.path.to_owned(),
                action: "replace",
                source: io::Error::new(io::ErrorKind::IsADirectory, "target is a directory"),
            })
        }
        _ => None,
    };
    Ok(Plan::Write(Desired {
        mode: control
            .mode
            .or(existing.as_ref().map(|m| m.mode() & 0o7777))
            .unwrap_or(0o644),
        uid: control.owner.or(existing.as_ref().map(|m| m.uid())),
        gid: control.group.or(existing.as_ref().map(|m| m.gid())),
    }))
}

/// Whether the regular file `meta` describes already holds `target`'s body, mode and owner.
fn is_same(target: &Target<'_>, meta: &fs::Metadata) -> bool {
    let control = target.control;
    meta.len() == target.body.len() as u64
        && control.mode.is_none_or(|mode| meta.mode() & 0o7777 == mode)
        && control.owner.is_none_or(|uid| meta.uid() == uid)
        && control.group.is_none_or(|gid| meta.gid() == gid)
        && holds(target.path, target.body)
}

/// Whether the file at `path`, whose size was just seen to be `body.len()`, holds `body`:
/// read in chunks of exactly the expected length (no size probe, no read to find the end).
fn holds(path: &Path, body: &[u8]) -> bool {
    use std::io::Read;
    let Ok(mut file) = fs::File::open(path) else {
        return false;
    };
    let mut chunk = [0u8; 16 << 10];
    body.chunks(chunk.len()).all(|expected| {
        let got = &mut chunk[..expected.len()];
        file.read_exact(got).is_ok() && got == expected
    })
}

/// Whether `target` is a regular file (not a symlink) that already is what is desired.
fn is_unchanged(target: &Target<'_>) -> bool {
    fs::symlink_metadata(target.path).is_ok_and(|meta| meta.is_file() && is_same(target, &meta))
}

/// Writes for real, in three steps so that no target is ever half-written:
/// 1. every changed body goes to a temporary file in its target's directory (written,
///    chowned, chmodded); a failure here removes every temporary file and changes nothing;
/// 2. they are made durable: each with `fsync` (and the directories created for them) when
///    there are few, else with one `syncfs` per file system, which costs far less than
///    hundreds of fsyncs;
/// 3. each temporary file is renamed over its target, or an empty `allow_empty: false` target
///    removed; then the directories (or file systems) are synced again.
///
/// Targets whose content, mode and owner are already right are left untouched. Comparing,
/// staging and renaming run on all cores: on large trees they are most of the work.
#[derive(Debug, Default)]
pub struct AtomicWriter {}

/// Above this many staged files one `syncfs` replaces the per-file fsyncs.
const PER_FILE_SYNC_LIMIT: usize = 16;

/// Per-file work is spread over threads in chunks of at least this many files.
const PARALLEL_CHUNK: usize = 32;

impl AtomicWriter {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Step 1 for one target.
#[derive(Debug)]
enum Prepared {
    Remove,
    Keep,
    /// In this temporary file.
    Staged(PathBuf),
}

/// Directories known to exist, and those created, shared by the staging threads: many files
/// share a directory, which is then checked once.
#[derive(Default)]
struct Directories {
    known: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    created: std::sync::Mutex<Vec<PathBuf>>,
}

impl Directories {
    fn ensure(&self, dir: &Path) -> Result<()> {
        use crate::parallel::lock;
        if lock(&self.known).contains(dir) {
            return Ok(());
        }
        let mut created = Vec::new();
        let result = create_parents(dir, &mut created);
        lock(&self.created).extend(created);
        result?;
        lock(&self.known).insert(dir.to_owned());
        Ok(())
    }
}

fn prepare(target: &Target<'_>, sync: bool, dirs: &Directories) -> Result<Prepared> {
    Ok(match plan(target)? {
        Plan::Remove => Prepared::Remove,
        Plan::Keep => Prepared::Keep,
        Plan::Write(desired) => {
            dirs.ensure(parent_of(target.path))?;
            Prepared::Staged(stage(target, desired, sync)?)
        }
    })
}

/// Writes `target`'s body to a new temporary file beside it, synced at once when `sync` is
/// set, and returns the temporary file's path; on error nothing is left behind.
fn stage(target: &Target<'_>, desired: Desired, sync: bool) -> Result<PathBuf> {
    let failed = |action: &'static str| {
        move |source: io::Error| Error::Write {
            path: target.path.to_owned(),
            action,
            source,
        }
    };
    let chown = desired.uid.is_some() || desired.gid.is_some();
    // A plain mode the umask leaves intact is given at creation: no chmod afterwards.
    let born_right = !chown && desired.mode & 0o7000 == 0 && desired.mode & umask() == 0;
    let initial_mode = if born_right { desired.mode } else { 0o600 };
    let (temp, mut file) =
        create_temp(target.path, initial_mode).map_err(failed("create temporary file"))?;
    let result = (|| {
        file.write_all(target.body).map_err(failed("write"))?;
        if chown {
            std::os::unix::fs::fchown(&file, desired.uid, desired.gid).map_err(failed("chown"))?;
        }
        if !born_right {
            // After chown, which clears set-id bits.
            file.set_permissions(fs::Permissions::from_mode(desired.mode))
                .map_err(failed("chmod"))?;
        }
        if sync {
            file.sync_all().map_err(failed("fsync"))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Step 3 for one target: its temporary file renamed over it, or it removed.
fn commit(target: &Target<'_>, prepared: &Prepared) -> Result<Action> {
    match prepared {
        Prepared::Staged(temp) => match fs::rename(temp, target.path) {
            Ok(()) => Ok(Action::Written),
            Err(source) => {
                let _ = fs::remove_file(temp);
                Err(Error::Write {
                    path: target.path.to_owned(),
                    action: "rename",
                    source,
                })
            }
        },
        Prepared::Remove => match fs::remove_file(target.path) {
            Ok(()) => Ok(Action::Deleted),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Action::NotCreated),
            Err(source) => Err(Error::Write {
                path: target.path.to_owned(),
                action: "delete",
                source,
            }),
        },
        Prepared::Keep => Ok(Action::Unchanged),
    }
}

/// The directory holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Each distinct directory of `paths`, in first-seen order.
fn distinct_parents<'p>(paths: impl Iterator<Item = &'p Path>) -> Vec<&'p Path> {
    let mut seen = std::collections::HashSet::new();
    paths
        .map(parent_of)
        .filter(|dir| seen.insert(*dir))
        .collect()
}

/// Removes every staged temporary file.
fn discard(prepared: &[Prepared]) {
    for prepared in prepared {
        if let Prepared::Staged(temp) = prepared {
            let _ = fs::remove_file(temp);
        }
    }
}

impl FileWriter for AtomicWriter {
    fn write_batch(
        &mut self,
        targets: &[Target<'_>],
        on_change: &mut dyn FnMut(&Change),
    ) -> Result<()> {
        // Step 1. Small batches fsync each file as it is staged, while it is open.
        let sync_while_staging = targets.len() <= PER_FILE_SYNC_LIMIT;
        let dirs = Directories::default();
        let prepared = crate::parallel::map(targets, PARALLEL_CHUNK, |t| {
            prepare(t, sync_while_staging, &dirs)
        });
        let mut failure = None;
        let prepared: Vec<Prepared> = prepared
            .into_iter()
            .filter_map(|p| p.map_err(|e| failure.get_or_insert(e)).ok())
            .collect();
        if let Some(error) = failure {
            discard(&prepared);
            return Err(error);
        }
        let staged: Vec<(&Path, &Path)> = targets
            .iter()
            .zip(&prepared)
            .filter_map(|(target, p)| match p {
                Prepared::Staged(temp) => Some((target.path, temp.as_path())),
                _ => None,
            })
            .collect();

        // Step 2.
        let created_dirs = dirs.created.into_inner().unwrap_or_else(|e| e.into_inner());
        let synced = if staged.len() <= PER_FILE_SYNC_LIMIT {
            let files = if sync_while_staging {
                Ok(())
            } else {
                staged
                    .iter()
                    .try_for_each(|(_, temp)| File::open(temp)?.sync_all())
            };
            files.and_then(|()| {
                created_dirs
                    .iter()
                    .map(|dir| parent_of(dir))
                    .try_for_each(sync_dir)
            })
        } else {
            sync_filesystems(&distinct_parents(staged.iter().map(|(path, _)| *path)))
        };
        if let Err(e) = synced {
            discard(&prepared);
            return Err(Error::Io {
                what: "syncing the written files".to_owned(),
                source: e,
            });
        }

        // Step 3. Reported in order once all are done, so that what is reported is what was
        // made even when one fails.
        let indices: Vec<usize> = (0..targets.len()).collect();
        let committed = crate::parallel::map(&indices, PARALLEL_CHUNK, |&index| {
            commit(&targets[index], &prepared[index])
        });
        let mut first_error = None;
        let mut changed: Vec<&Path> = Vec::new();
        for (target, result) in targets.iter().zip(committed) {
            match result {
                Ok(action) => {
                    if matches!(action, Action::Written | Action::Deleted) {
                        changed.push(target.path);
                    }
                    on_change(&Change {
                        path: target.path.to_owned(),
                        action,
                    });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // The renames and removals, durable.
        let changed_dirs = distinct_parents(changed.into_iter());
        let synced = if changed_dirs.len() <= PER_FILE_SYNC_LIMIT {
            changed_dirs.into_iter().try_for_each(sync_dir)
        } else {
            sync_filesystems(&changed_dirs)
        };
        if let Some(e) = first_error {
            return Err(e);
        }
        synced.map_err(|source| Error::Io {
            what: "syncing the output directories".to_owned(),
            source,
        })
    }
}

/// `syncfs` once for each file system holding one of `dirs`.
fn sync_filesystems(dirs: &[&Path]) -> io::Result<()> {
    let mut devices = Vec::new();
    for dir in dirs {
        let dir = File::open(dir)?;
        let device = dir.metadata()?.dev();
        if !devices.contains(&device) {
            devices.push(device);
            nix::unistd::syncfs(&dir).map_err(io::Error::from)?;
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
        let actions = crate::parallel::map(targets, PARALLEL_CHUNK, |target| {
            if target.removes() {
                if fs::symlink_metadata(target.path).is_ok() {
                    Action::Deleted
                } else {
                    Action::NotCreated
                }
            } else if is_unchanged(target) {
                Action::Unchanged
            } else {
                Action::Written
            }
        });
        for (target, action) in targets.iter().zip(actions) {
            on_change(&Change {
                path: target.path.to_owned(),
                action,
            });
        }
        Ok(())
    }
}

/// The process's umask, read once (umask(2) could only read it by changing it for every
/// thread meanwhile).
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            // Unknown: assume everything may be masked, so that chmod always runs.
            .unwrap_or(0o777)
    })
}

/// Creates a new temporary file (with `mode`, less the umask) beside `target`, named
/// `.<prefix>.<random>.tmp` with only a prefix of the target's name, so that it fits wherever
/// the target's does.
fn create_temp(target: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
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
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(std::process::id);
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u32(pid);
        let temp = target.with_file_name(format!(".{prefix}.{:016x}.tmp", hasher.finish()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
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
    let (temp, mut file) = create_temp(path, 0o600)?;
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
