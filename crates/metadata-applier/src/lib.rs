//! Configure a machine from its metadata: the rendering side of os-apply-config (merge metadata
//! files, render a tree of mustache or executable templates into an output root, write each
//! file safely) and the collecting side of os-collect-config ([`collect`]: collectors, the
//! cache protocol, one collection cycle). The polling loop and the command run belong to the
//! program (`examples/os-collect-config.rs`).
//!
//! Output is byte-identical to upstream os-apply-config 14.1.0 for the same templates and
//! metadata: [`json`] reads and writes JSON as Python does, [`mustache`] renders as pystache
//! does. Writes are safer than upstream's: rendered in full before anything is written, then
//! each file through a temporary file, fsync and rename ([`AtomicWriter`]), unchanged files
//! left untouched, nothing written outside the output root.
//!
//! Rendering and lookups are pure ([`merge`](metadata::merge), [`Template`], [`key`]); the
//! I/O seams are [`Renderer`] (mustache files, executable templates), [`FileWriter`] (atomic
//! writer, dry run) and [`collect::Collector`] (heat_local, local, ec2, request; the HTTP
//! ones behind the `http` feature). This crate never prints and never opens log files; the
//! collectors report through the `tracing` facade.

pub mod collect;
mod control;
mod error;
pub mod json;
pub mod key;
pub mod metadata;
pub mod mustache;
mod parallel;
mod render;
mod tree;
mod write;

pub use control::{parse as parse_control, read as read_control, Control};
pub use error::{Error, Result};
pub use json::Value;
pub use mustache::Template;
pub use render::{
    DirPartials, ExecutableRenderer, Miss, MustacheRenderer, Rendered as RenderedBody, Renderer,
    TemplateRef,
};
pub use tree::{list_templates, render_all, MissingKey, Rendered, TemplateFile, CONTROL_SUFFIX};
pub use write::{
    replace_file, write_all, Action, AtomicWriter, Change, DryRunWriter, FileWriter, Target,
};
