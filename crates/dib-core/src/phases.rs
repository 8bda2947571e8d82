//! The build's hook phases: their order and side (host or chroot), assembling every element's
//! hooks into one folder, and running a phase through refresh-config's run-parts engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use refresh_config::{
    EnvironmentLoad, EnvironmentRequest, HookCommand, HookOutcome, HookRunner, ProcessRunner,
};

use crate::elements::Element;
use crate::Error;

/// Where a phase's hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Host,
    /// Inside the new OS, hooks folder at `/tmp/in_target.d`.
    Chroot,
}

/// One hook phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// The folder name without `.d`, as `break=before-<name>` spells it.
    pub name: &'static str,
    pub side: Side,
    /// Whether `TARGET_ROOT` is exported (root.d and cleanup.d).
    pub target_root: bool,
}

const fn phase(name: &'static str, side: Side, target_root: bool) -> Phase {
    Phase {
        name,
        side,
        target_root,
    }
}

pub const ROOT: Phase = phase("root", Side::Host, true);
pub const EXTRA_DATA: Phase = phase("extra-data", Side::Host, false);
pub const PRE_INSTALL: Phase = phase("pre-install", Side::Chroot, false);
pub const INSTALL: Phase = phase("install", Side::Chroot, false);
pub const POST_INSTALL: Phase = phase("post-install", Side::Chroot, false);
pub const POST_ROOT: Phase = phase("post-root", Side::Host, false);
pub const BLOCK_DEVICE: Phase = phase("block-device", Side::Host, false);
pub const PRE_FINALISE: Phase = phase("pre-finalise", Side::Host, false);
pub const FINALISE: Phase = phase("finalise", Side::Chroot, false);
pub const CLEANUP: Phase = phase("cleanup", Side::Host, true);

/// Every phase in the order a build runs them (packages from `-p` go after install).
pub const ALL: [Phase; 10] = [
    ROOT,
    EXTRA_DATA,
    PRE_INSTALL,
    INSTALL,
    POST_INSTALL,
    POST_ROOT,
    BLOCK_DEVICE,
    PRE_FINALISE,
    FINALISE,
    CLEANUP,
];

impl Phase {
    /// `install.d`.
    pub fn dir_name(&self) -> String {
        format!("{}.d", self.name)
    }
}

/// Folders of an element that are not hook phases or data to merge.
const NOT_MERGED: [&str; 2] = ["tests", "__pycache__"];

/// The merged hooks folder: which element each merged file came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookAssembly {
    /// `install.d/10-foo` → `my-element`.
    pub owners: BTreeMap<PathBuf, String>,
}

impl HookAssembly {
    /// The element that shipped `<dir>/<file>`.
    pub fn owner(&self, dir: &str, file: &std::ffi::OsStr) -> Option<&str> {
        self.owners
            .get(&Path::new(dir).join(file))
            .map(String::as_str)
    }
}

/// Copies every element's folders (phases, `environment.d`, `bin`, data) into `hooks`, in
/// element order. A file that two elements ship in the same folder is an error naming both;
/// top-level files (README, element-deps, …) are overwritten silently, as upstream does.
pub fn assemble_hooks(elements: &[Element], hooks: &Path) -> Result<HookAssembly, Error> {
    let mut assembly = HookAssembly::default();
    std::fs::create_dir_all(hooks).map_err(|e| Error::io(hooks, &e))?;
    for element in elements {
        let entries = read_dir_sorted(&element.path)?;
        for (name, path) in entries {
            let name_str = name.to_string_lossy();
            let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, &e))?;
            if meta.is_dir() {
                if NOT_MERGED.contains(&name_str.as_ref()) {
                    continue;
                }
                merge_dir(
                    &path,
                    &hooks.join(&name),
                    Path::new(&name),
                    element,
                    &mut assembly,
                )?;
            } else if !name_str.ends_with(".pyc") {
                copy_entry(&path, &hooks.join(&name))?;
            }
        }
    }
    Ok(assembly)
}

fn merge_dir(
    from: &Path,
    to: &Path,
    relative: &Path,
    element: &Element,
    assembly: &mut HookAssembly,
) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, &e))?;
    for (name, path) in read_dir_sorted(from)? {
        let rel = relative.join(&name);
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, &e))?;
        if meta.is_dir() {
            merge_dir(&path, &to.join(&name), &rel, element, assembly)?;
            continue;
        }
        if let Some(first) = assembly.owners.get(&rel) {
            return Err(duplicate_hook(&rel, first, &element.name));
        }
        copy_entry(&path, &to.join(&name))?;
        assembly.owners.insert(rel, element.name.clone());
    }
    Ok(())
}

/// Upstream's message for a file two elements ship in the same folder, naming both elements.
pub(crate) fn duplicate_hook(relative: &Path, first: &str, second: &str) -> Error {
    Error::Build(format!(
        "There is a duplicated hook in your elements: /{} (in elements {first} and {second})",
        relative.display()
    ))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(std::ffi::OsString, PathBuf)>, Error> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, &e))? {
        let entry = entry.map_err(|e| Error::io(dir, &e))?;
        entries.push((entry.file_name(), entry.path()));
    }
    entries.sort();
    Ok(entries)
}

/// Copies a file keeping its mode; a symlink stays a symlink (hooks may be file symlinks).
fn copy_entry(from: &Path, to: &Path) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| Error::io(from, &e))?;
    let _ = std::fs::remove_file(to);
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| Error::io(from, &e))?;
        // A relative link would point elsewhere once copied: resolve it against its element.
        let target = if target.is_relative() {
            from.parent().unwrap_or(Path::new("/")).join(target)
        } else {
            target
        };
        std::os::unix::fs::symlink(target, to).map_err(|e| Error::io(to, &e))?;
    } else {
        std::fs::copy(from, to).map_err(|e| Error::io(to, &e))?;
    }
    Ok(())
}

/// Where the hooks folder appears inside the new root.
pub const IN_TARGET: &str = "/tmp/in_target.d";

/// Runs hooks inside a chroot: the engine lists `<hooks>/<phase>.d` on the host, and each hook
/// (and the shell sourcing `environment.d`) is started by `inner`, whose before-exec work
/// enters the sandbox, at its path under `/tmp/in_target.d`.
#[derive(Debug)]
pub struct ChrootRunner<'a> {
    pub inner: &'a mut ProcessRunner,
    /// The hooks folder on the host.
    pub hooks: PathBuf,
}

impl ChrootRunner<'_> {
    fn inside(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.hooks) {
            Ok(rest) => Path::new(IN_TARGET).join(rest),
            Err(_) => path.to_owned(),
        }
    }
}

impl HookRunner for ChrootRunner<'_> {
    fn run_hook(&mut self, hook: &HookCommand<'_>) -> refresh_config::Result<HookOutcome> {
        let inside = self.inside(hook.path);
        self.inner.run_hook(&HookCommand {
            path: &inside,
            environment: hook.environment,
            limit: hook.limit,
        })
    }

    fn load_environment(
        &mut self,
        request: &EnvironmentRequest<'_>,
        on_sourcing: &mut dyn FnMut(&Path),
    ) -> refresh_config::Result<EnvironmentLoad> {
        let files: Vec<PathBuf> = request.files.iter().map(|f| self.inside(f)).collect();
        self.inner.load_environment(
            &EnvironmentRequest {
                files: &files,
                limit: request.limit,
            },
            on_sourcing,
        )
    }

    fn pending_interrupt(&mut self) -> Option<i32> {
        self.inner.pending_interrupt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(dir: &Path, name: &str, files: &[&str]) -> Element {
        let path = dir.join(name);
        for file in files {
            let file = path.join(file);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, name).unwrap();
        }
        Element {
            name: name.to_owned(),
            path,
            depends: Default::default(),
            provides: Default::default(),
        }
    }

    #[test]
    fn duplicate_hooks_name_both_elements() {
        let dir = tempfile::tempdir().unwrap();
        let a = element(dir.path(), "a", &["install.d/10-x", "README"]);
        let b = element(dir.path(), "b", &["install.d/10-x", "README"]);
        let err = assemble_hooks(&[a, b], &dir.path().join("hooks")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "There is a duplicated hook in your elements: /install.d/10-x (in elements a and b)"
        );
    }

    #[test]
    fn merges_phases_and_overwrites_top_level_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = element(dir.path(), "a", &["install.d/10-x", "README", "tests/t"]);
        let b = element(dir.path(), "b", &["install.d/20-y", "README", "bin/tool"]);
        let hooks = dir.path().join("hooks");
        let assembly = assemble_hooks(&[a, b], &hooks).unwrap();
        assert_eq!(std::fs::read_to_string(hooks.join("README")).unwrap(), "b");
        assert!(!hooks.join("tests").exists());
        assert_eq!(assembly.owner("install.d", "20-y".as_ref()), Some("b"));
        assert_eq!(assembly.owner("bin", "tool".as_ref()), Some("b"));
    }
}
