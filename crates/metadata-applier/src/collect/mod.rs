//! The collectors of os-collect-config: where metadata comes from, the cache protocol that
//! decides what changed, and one collection cycle over all collectors.

mod cache;
mod deployments;
#[cfg(feature = "http")]
mod ec2;
mod heat_local;
mod local;
#[cfg(feature = "http")]
mod request;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::json::{Map, Value};

pub use cache::{valid_key, Cache, CONFIG_FILES_LIST};
pub use deployments::explode;
#[cfg(feature = "http")]
pub use ec2::{parse_blkid, Ec2, Ec2Options};
pub use heat_local::HeatLocal;
pub use local::Local;
#[cfg(feature = "http")]
pub use request::{parse_http_date, Request};

/// An HTTP failure as one line, naming the status like Python's requests (`403 Forbidden`).
#[cfg(feature = "http")]
fn http_error(error: &ureq::Error) -> String {
    match error {
        ureq::Error::StatusCode(code) => {
            let reason = ureq::http::StatusCode::from_u16(*code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            format!("{code} {reason}")
        }
        other => other.to_string(),
    }
}

/// The collectors os-collect-config knows, in its default order.
pub const DEFAULT_COLLECTORS: [&str; 7] = [
    "heat_local",
    "ec2",
    "cfn",
    "heat",
    "request",
    "local",
    "zaqar",
];

/// Why a collector has nothing this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// Not set up (no URL, no credentials): skipped quietly.
    NotConfigured,
    /// Set up but failing: skipped with a warning.
    NotAvailable(String),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::NotConfigured => f.write_str("not configured"),
            SourceError::NotAvailable(reason) => write!(f, "unavailable: {reason}"),
        }
    }
}

/// What a collector sees of the run.
#[derive(Debug, Clone)]
pub struct CollectContext {
    pub cache_dir: PathBuf,
}

/// One metadata source: returns keys (each cached as `<key>.json`) with their values, in
/// order. Instances live for the whole process, so state survives between polls.
pub trait Collector {
    fn name(&self) -> &str;
    fn collect(&mut self, context: &CollectContext) -> Result<Vec<(String, Value)>, SourceError>;
}

/// A collector whose name is accepted for compatibility but which this build does not
/// implement (cfn, heat, zaqar): always not configured.
#[derive(Debug, Clone)]
pub struct Unsupported(pub String);

impl Collector for Unsupported {
    fn name(&self) -> &str {
        &self.0
    }

    fn collect(&mut self, _: &CollectContext) -> Result<Vec<(String, Value)>, SourceError> {
        Err(SourceError::NotConfigured)
    }
}

/// The sleep between polls: the minimum first, doubling up to the maximum, and back to the
/// minimum after a change was handled (more changes often follow one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    min: f64,
    max: f64,
    next: f64,
}

impl Backoff {
    pub fn new(min: f64, max: f64) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// Seconds to sleep after a cycle; `handled` says a change was handled by a successful
    /// command in it.
    pub fn after_cycle(&mut self, handled: bool) -> f64 {
        if handled {
            self.next = self.min;
        }
        let sleep = self.next;
        self.next = (sleep * 2.0).min(self.max);
        sleep
    }
}

/// The outcome of one cycle that stores into the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Keys whose value changed since the last commit, in order.
    pub changed: Vec<String>,
    /// Every cache path of this cycle, in collector order (the command's OS_CONFIG_FILES).
    pub paths: Vec<PathBuf>,
}

/// Runs every collector once and stores each key in the cache; when anything changed, also
/// rewrites `os_config_files.json`.
pub fn collect_and_store(
    collectors: &mut [Box<dyn Collector>],
    cache: &Cache,
) -> crate::Result<Stored> {
    let context = CollectContext {
        cache_dir: cache.dir().to_owned(),
    };
    // A key seen twice in a cycle (two local directories, a deployment named like a key)
    // is stored once: last value, first position. Storing both would make it change on
    // every cycle.
    let mut entries = Map::default();
    for collector in collectors.iter_mut() {
        for (key, value) in run_collector(collector.as_mut(), &context) {
            entries.insert(key, value);
        }
    }
    let mut stored = Stored::default();
    for (key, value) in entries {
        match cache.store(&key, &value) {
            Ok((changed, path)) => {
                if changed {
                    stored.changed.push(key);
                }
                stored.paths.push(path);
            }
            // One bad key must not stop the daemon: skip it this cycle.
            Err(e) => tracing::warn!("Skipping key {key:?}: {e}"),
        }
    }
    if !stored.changed.is_empty() {
        cache.write_list(&stored.paths)?;
    }
    Ok(stored)
}

/// Runs every collector once without storing: an object of key → value (a repeated key
/// replaces the earlier value in place), as `--print` shows it.
pub fn collect_only(collectors: &mut [Box<dyn Collector>], cache_dir: &Path) -> Value {
    let context = CollectContext {
        cache_dir: cache_dir.to_owned(),
    };
    let mut content = Map::default();
    for collector in collectors.iter_mut() {
        for (key, value) in run_collector(collector.as_mut(), &context) {
            content.insert(key, value);
        }
    }
    Value::Object(content)
}

fn run_collector(collector: &mut dyn Collector, context: &CollectContext) -> Vec<(String, Value)> {
    match collector.collect(context) {
        Ok(entries) => entries
            .into_iter()
            .filter(|(key, _)| {
                let ok = valid_key(key);
                if !ok {
                    tracing::warn!(
                        "Skipping key {key:?} of {}: not usable as a cache file name",
                        collector.name()
                    );
                }
                ok
            })
            .collect(),
        Err(SourceError::NotConfigured) => {
            tracing::debug!("Source [{}] Not configured.", collector.name());
            Vec::new()
        }
        Err(SourceError::NotAvailable(reason)) => {
            tracing::warn!("Source [{}] Unavailable. ({reason})", collector.name());
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeps(min: f64, max: f64, handled: &[bool]) -> Vec<f64> {
        let mut backoff = Backoff::new(min, max);
        handled.iter().map(|h| backoff.after_cycle(*h)).collect()
    }

    #[test]
    fn backoff_doubles_to_the_maximum() {
        assert_eq!(
            sleeps(1.0, 10.0, &[false; 6]),
            [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
        );
        assert_eq!(sleeps(20.0, 10.0, &[false; 3]), [20.0, 10.0, 10.0]);
    }

    #[test]
    fn a_handled_change_resets_the_backoff() {
        let handled = [false, false, false, true, false, false, false, false];
        assert_eq!(
            sleeps(1.0, 10.0, &handled),
            [1.0, 2.0, 4.0, 1.0, 2.0, 4.0, 8.0, 10.0]
        );
    }
}
