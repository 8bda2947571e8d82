//! Shared plumbing of the tripleo-rs command-line tools in `examples/`: log formats that match
//! the upstream tools' stderr, and the run-parts event log used by both `os-refresh-config` and
//! `dib-run-parts`.
//!
//! The libraries under `crates/` never print; everything a user sees on stderr is formatted
//! here, so this is the one place that decides what the log looks like.

pub mod ini;
pub mod logging;
pub mod report;
