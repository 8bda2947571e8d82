//! The template tree: which files are templates, and rendering all of them before anything is
//! written.

use std::path::{Path, PathBuf};

use crate::control::{self, Control};
use crate::error::{Error, Result};
use crate::json::Value;
use crate::render::{ExecutableRenderer, MustacheRenderer, Renderer, TemplateRef};

/// The suffix of control files.
pub const CONTROL_SUFFIX: &str = ".oac";

/// One template of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFile {
    /// Relative to the template root; also the output path relative to the output root.
    pub relative: PathBuf,
    pub path: PathBuf,
    pub executable: bool,
    /// `<template>.oac`, if present.
    pub control: Option<PathBuf>,
}

/// Lists the templates under `root` in bytewise order of their relative paths: every file
/// not ending in `.oac` (dotfiles and symlinks to files included); directory symlinks are not
/// followed. A missing root has no templates.
pub fn list_templates(root: &Path) -> Result<Vec<TemplateFile>> {
    let listed = list_unchecked(root)?;
    // One access(2) per template: on all cores for large trees.
    Ok(crate::parallel::map(&listed, 64, |(template, is_file)| {
        TemplateFile {
            executable: *is_file
                && nix::unistd::access(&template.path, nix::unistd::AccessFlags::X_OK).is_ok(),
            ..template.clone()
        }
    }))
}

/// The templates in order, each with whether it is a regular file, `executable` not yet set.
fn list_unchecked(root: &Path) -> Result<Vec<(TemplateFile, bool)>> {
    let mut listed = Vec::new();
    if root.is_dir() {
        walk(root, Path::new(""), &mut listed)?;
    }
    listed.sort_by(|(a, _), (b, _)| a.relative.as_os_str().cmp(b.relative.as_os_str()));
    Ok(listed)
}

/// Lists templates depth-first, each with whether it is a regular file (or a symlink to
/// one), its `executable` flag not yet set.
fn walk(root: &Path, relative: &Path, out: &mut Vec<(TemplateFile, bool)>) -> Result<()> {
    let dir = root.join(relative);
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Read { path, source }
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(read_error(&dir))? {
        let entry = entry.map_err(read_error(&dir))?;
        let file_type = entry.file_type().map_err(read_error(&entry.path()))?;
        entries.push((entry.file_name(), file_type));
    }
    // Control files are found in the listing itself, not with one stat per template.
    let names: std::collections::HashSet<&std::ffi::OsStr> =
        entries.iter().map(|(name, _)| name.as_os_str()).collect();
    for (name, file_type) in &entries {
        let relative = relative.join(name);
        let path = dir.join(name);
        if file_type.is_dir() {
            walk(root, &relative, out)?;
            continue;
        }
        // A symlink to a directory is not walked (and is no template).
        let is_file = if file_type.is_symlink() {
            if path.is_dir() {
                continue;
            }
            path.is_file()
        } else {
            file_type.is_file()
        };
        if name.as_encoded_bytes().ends_with(CONTROL_SUFFIX.as_bytes()) {
            continue;
        }
        let mut control_name = name.clone();
        control_name.push(CONTROL_SUFFIX);
        let control = names
            .contains(control_name.as_os_str())
            .then(|| dir.join(&control_name));
        out.push((
            TemplateFile {
                relative,
                path,
                executable: false,
                control,
            },
            is_file,
        ));
    }
    Ok(())
}

/// What to do about missing keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingKey {
    /// Render them empty (upstream).
    #[default]
    Ignore,
    /// Fail, listing every miss of every template.
    Error,
}

/// A rendered template, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub template: TemplateFile,
    pub body: Vec<u8>,
    pub control: Control,
}

/// Renders every template (mustache or executable) and reads every control file; the first
/// error, or under [`MissingKey::Error`] the list of every miss, aborts before any write.
pub fn render_all(root: &Path, context: &Value, missing: MissingKey) -> Result<Vec<Rendered>> {
    let templates = list_unchecked(root)?;
    let mustache = MustacheRenderer::new(root);
    // Rendering is independent per template: spread it over the cores, keeping tree order.
    let results = crate::parallel::map(&templates, 16, |(t, is_file)| {
        render_one(t, *is_file, &mustache, context)
    });
    let mut rendered = Vec::with_capacity(templates.len());
    let mut misses = Vec::new();
    for result in results {
        let (file, missed) = result?;
        rendered.push(file);
        misses.extend(missed);
    }
    if missing == MissingKey::Error && !misses.is_empty() {
        return Err(Error::MissingKeys { misses });
    }
    Ok(rendered)
}

/// A rendered template and the lookups that missed in it.
type RenderedWithMisses = (Rendered, Vec<crate::render::Miss>);

/// Opens the template once: its mode (from the open file, no extra lookup) tells whether it
/// is executable, as `access(X_OK)` confirms; otherwise its bytes are read from the same
/// descriptor and rendered as mustache.
fn render_one(
    template: &TemplateFile,
    is_file: bool,
    mustache: &MustacheRenderer,
    context: &Value,
) -> Result<RenderedWithMisses> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let read_error = |source| Error::Read {
        path: template.path.clone(),
        source,
    };
    let reference = TemplateRef {
        path: &template.path,
        name: &template.relative,
    };
    let mut file = std::fs::File::open(&template.path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    let executable = is_file
        && meta.permissions().mode() & 0o111 != 0
        && nix::unistd::access(&template.path, nix::unistd::AccessFlags::X_OK).is_ok();
    let output = if executable {
        drop(file);
        ExecutableRenderer.render(reference, context)?
    } else {
        // The size just seen: one read, no probe for the end (a template that changes while
        // it is rendered may be read short or long, as with any reader).
        let mut bytes = vec![0; meta.len() as usize];
        let mut filled = 0;
        while filled < bytes.len() {
            match file.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        bytes.truncate(filled);
        mustache.render_bytes(reference, bytes, context)?
    };
    let template = &TemplateFile {
        executable,
        ..template.clone()
    };
    let control = match &template.control {
        Some(path) => control::read(path)?,
        None => Control::default(),
    };
    Ok((
        Rendered {
            template: template.clone(),
            body: output.body,
            control,
        },
        output.misses,
    ))
}
