//! The [`Renderer`] seam: how one template becomes a file body. [`MustacheRenderer`] renders
//! mustache templates; [`ExecutableRenderer`] runs executable templates with the metadata as
//! JSON on stdin.

use std::fmt;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::json::{self, Value};
use crate::mustache::{PartialSource, RenderOptions, Template};

/// A failed lookup in a template, for `--missing-key error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    pub template: PathBuf,
    pub line: usize,
    pub key: String,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: missing key '{}'",
            self.template.display(),
            self.line,
            self.key
        )
    }
}

/// One template to render: where it is, and how to name it in messages.
#[derive(Debug, Clone, Copy)]
pub struct TemplateRef<'a> {
    pub path: &'a Path,
    /// Relative to the template root, for messages.
    pub name: &'a Path,
}

/// A rendered body and the lookups that missed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: Vec<u8>,
    pub misses: Vec<Miss>,
}

/// Turns a template and the metadata into a file body.
pub trait Renderer {
    fn render(&self, template: TemplateRef<'_>, context: &Value) -> Result<Rendered>;
}

/// Mustache templates, with partials from `<template root>/<name>.mustache`.
#[derive(Debug, Clone)]
pub struct MustacheRenderer {
    partials: DirPartials,
}

impl MustacheRenderer {
    pub fn new(template_root: impl Into<PathBuf>) -> Self {
        MustacheRenderer {
            partials: DirPartials {
                root: template_root.into(),
            },
        }
    }
}

impl Renderer for MustacheRenderer {
    fn render(&self, template: TemplateRef<'_>, context: &Value) -> Result<Rendered> {
        let bytes = std::fs::read(template.path).map_err(|source| Error::Read {
            path: template.path.to_owned(),
            source,
        })?;
        self.render_bytes(template, bytes, context)
    }
}

impl MustacheRenderer {
    /// Renders a template whose bytes the caller already read from `template.path`.
    pub fn render_bytes(
        &self,
        template: TemplateRef<'_>,
        bytes: Vec<u8>,
        context: &Value,
    ) -> Result<Rendered> {
        let text = String::from_utf8(bytes).map_err(|_| Error::TemplateEncoding {
            path: template.path.to_owned(),
        })?;
        // Upstream reads templates in text mode: `\r\n` and lone `\r` arrive as `\n`
        // (partials are read as bytes and keep theirs).
        let text = if text.contains('\r') {
            text.replace("\r\n", "\n").replace('\r', "\n")
        } else {
            text
        };
        let parsed = Template::parse(text).map_err(|e| Error::Template {
            path: template.path.to_owned(),
            line: e.line,
            message: format!("{} (column {})", e.message, e.column),
        })?;
        let (body, missed) = parsed.render(context, &self.partials, RenderOptions::default());
        let misses = missed
            .into_iter()
            .map(|m| Miss {
                template: template.name.to_owned(),
                line: m.line,
                key: m.key,
            })
            .collect();
        Ok(Rendered {
            body: body.into_bytes(),
            misses,
        })
    }
}

/// Partials as files `<root>/<name>.mustache`; names that are absolute or climb out with
/// `..` are refused.
#[derive(Debug, Clone)]
pub struct DirPartials {
    root: PathBuf,
}

impl PartialSource for DirPartials {
    fn load(&self, name: &str) -> Option<String> {
        let relative = Path::new(name);
        if name.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return None;
        }
        std::fs::read_to_string(self.root.join(format!("{name}.mustache"))).ok()
    }
}

/// Executable templates: run with no arguments, the metadata as JSON on stdin; stdout is
/// the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecutableRenderer;

impl Renderer for ExecutableRenderer {
    fn render(&self, template: TemplateRef<'_>, context: &Value) -> Result<Rendered> {
        let path = template.path;
        let mut child = Command::new(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Write {
                path: path.to_owned(),
                action: "execute",
                source,
            })?;
        let input = json::dumps(context);
        let stdin = child.stdin.take();
        // Write from a thread: a script that prints before reading all of stdin must not
        // deadlock against us.
        let writer = std::thread::spawn(move || {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(input.as_bytes());
            }
        });
        let output = child.wait_with_output().map_err(|source| Error::Write {
            path: path.to_owned(),
            action: "execute",
            source,
        })?;
        let _ = writer.join();
        if !output.status.success() {
            use std::os::unix::process::ExitStatusExt;
            let status = output
                .status
                .code()
                .unwrap_or_else(|| 128 + output.status.signal().unwrap_or(0));
            return Err(Error::Script {
                path: path.to_owned(),
                status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        if std::str::from_utf8(&output.stdout).is_err() {
            return Err(Error::ScriptOutput {
                path: path.to_owned(),
                message: "executable template wrote output that is not valid UTF-8".to_owned(),
            });
        }
        Ok(Rendered {
            body: output.stdout,
            misses: Vec::new(),
        })
    }
}
