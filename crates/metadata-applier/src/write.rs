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

/// How a body reaches its target.
pub trait FileWriter {
    /// Makes `target` hold `body` with the desired metadata.
    fn write(&mut self, target: &Path, body: &[u8], control: &Control) -> Result<Action>;
    /// Removes `target` (an empty body with `allow_empty: false`).
    fn remove(&mut self, target: &Path) -> Result<Action>;
}

/// Writes every rendered file under `output_root`, in order, refusing targets whose existing
/// directories lead outside the root. `on_change` sees each change as it happens, so that a
/// failure still leaves the report of what was done.
pub fn write_all(
    rendered: &[Rendered],
    output_root: &Path,
    writer: &mut dyn FileWriter,
    on_change: &mut dyn FnMut(&Change),
) -> Result<()> {
    let root = absolute(output_root);
    for file in rendered {
        // Named as the caller named the root (upstream logs `out/etc/x`), checked absolute.
        let target = output_root.join(&file.template.relative);
        check_inside(&root, &root.join(&file.template.relative))?;
        let action = if file.body.is_empty() && !file.control.allow_empty {
            writer.remove(&target)?
        } else {
            writer.write(&target, &file.body, &file.control)?
        };
        on_change(&Change {
            path: target,
            action,
        });
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Refuses a target whose path climbs out of the root, or whose existing parent directories
/// resolve (through symlinks) outside it.
fn check_inside(root: &Path, target: &Path) -> Result<()> {
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
    let real_root = canonical(root);
    let mut existing = target.parent();
    while let Some(dir) = existing.filter(|d| d.starts_with(root) && *d != root) {
        if let Ok(real) = fs::canonicalize(dir) {
            return if real.starts_with(&real_root) {
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

/// Writes for real: unchanged targets are left alone; others get a temporary file in the
/// target's directory (written, fsynced, chowned, chmodded) renamed over them, then the
/// directory is fsynced. Every error path removes the temporary file.
#[derive(Debug, Default)]
pub struct AtomicWriter {
    counter: u64,
}

impl AtomicWriter {
    pub fn new() -> Self {
        Self::default()
    }

    fn temp_name(&mut self, target: &Path) -> PathBuf {
        use std::hash::{BuildHasher, Hasher};
        self.counter += 1;
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(self.counter);
        hasher.write_u32(std::process::id());
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        target.with_file_name(format!(".{name}.{:016x}.tmp", hasher.finish()))
    }
}

impl FileWriter for AtomicWriter {
    fn write(&mut self, target: &Path, body: &[u8], control: &Control) -> Result<Action> {
        if is_unchanged(target, body, control) {
            return Ok(Action::Unchanged);
        }
        let desired = desired(target, control);
        let dir = target.parent().unwrap_or(Path::new("."));
        create_parents(dir)?;
        let failed = |action: &'static str| {
            move |source: io::Error| Error::Write {
                path: target.to_owned(),
                action,
                source,
            }
        };
        let (temp, mut file) = loop {
            let temp = self.temp_name(target);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
            {
                Ok(file) => break (temp, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(failed("create temporary file")(e)),
            }
        };
        let result = (|| {
            file.write_all(body).map_err(failed("write"))?;
            file.sync_all().map_err(failed("fsync"))?;
            if desired.uid.is_some() || desired.gid.is_some() {
                std::os::unix::fs::fchown(&file, desired.uid, desired.gid)
                    .map_err(failed("chown"))?;
            }
            // After chown, which clears set-id bits.
            file.set_permissions(fs::Permissions::from_mode(desired.mode))
                .map_err(failed("chmod"))?;
            fs::rename(&temp, target).map_err(failed("rename"))?;
            sync_dir(dir).map_err(failed("fsync directory"))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map(|()| Action::Written)
    }

    fn remove(&mut self, target: &Path) -> Result<Action> {
        match fs::remove_file(target) {
            Ok(()) => {
                let dir = target.parent().unwrap_or(Path::new("."));
                sync_dir(dir).map_err(|source| Error::Write {
                    path: target.to_owned(),
                    action: "fsync directory",
                    source,
                })?;
                Ok(Action::Deleted)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Action::NotCreated),
            Err(source) => Err(Error::Write {
                path: target.to_owned(),
                action: "delete",
                source,
            }),
        }
    }
}

/// Creates missing parents (0777 & ~umask) and fsyncs the parent of each one created.
fn create_parents(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        missing.push(path);
        current = path.parent();
    }
    for path in missing.iter().rev() {
        let failed = |source| Error::Write {
            path: path.to_path_buf(),
            action: "create directory",
            source,
        };
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(failed(e)),
        }
        sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(failed)?;
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
    fn write(&mut self, target: &Path, body: &[u8], control: &Control) -> Result<Action> {
        Ok(if is_unchanged(target, body, control) {
            Action::Unchanged
        } else {
            Action::Written
        })
    }

    fn remove(&mut self, target: &Path) -> Result<Action> {
        Ok(if fs::symlink_metadata(target).is_ok() {
            Action::Deleted
        } else {
            Action::NotCreated
        })
    }
}
