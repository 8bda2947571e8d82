//! The run-parts engine: select, source `environment.d`, run each hook, stop at the first failure.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::runner::{
    seconds, EnvironmentLoad, EnvironmentRequest, HookCommand, HookOutcome, HookRunner, LimitKind,
    TimeLimit, TIMEOUT_STATUS,
};
use crate::select::{
    read_listing, select_environment_files, select_hooks, NameFilter, Selection, Skipped,
};

/// Where environment files come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EnvironmentSource {
    /// `DIR/../environment.d`, as dib-run-parts and os-refresh-config do.
    #[default]
    Sibling,
    Directory(PathBuf),
    /// Hooks inherit the caller's environment.
    None,
}

/// A point in time after which no hook may run, and the limit it came from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub limit: Duration,
}

impl Deadline {
    pub fn after(limit: Duration) -> Self {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }
}

/// How to run one directory of hooks.
#[derive(Debug, Clone, Default)]
pub struct RunPartsOptions {
    pub filter: NameFilter,
    pub environment: EnvironmentSource,
    /// Limit for each hook (and for sourcing the environment files).
    pub hook_timeout: Option<Duration>,
    /// Limit for the whole directory.
    pub deadline: Option<Deadline>,
}

/// What happened to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRecord {
    pub name: OsString,
    pub path: PathBuf,
    pub duration: Duration,
    pub outcome: HookOutcome,
}

/// Why a directory run stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseFailure {
    /// The last hook in [`PhaseReport::hooks`] failed.
    Hook,
    /// Sourcing `environment.d` failed, in `file` if known; no hook ran.
    Environment {
        outcome: HookOutcome,
        file: Option<PathBuf>,
    },
    /// The deadline passed before this hook could start.
    DeadlinePassed { next: OsString, limit: Duration },
    /// A signal arrived before this hook could start.
    Interrupted { signal: i32, next: OsString },
}

/// The record of one directory run, in execution order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseReport {
    pub dir: PathBuf,
    pub skipped: Vec<Skipped>,
    pub environment_files: Vec<PathBuf>,
    pub hooks: Vec<HookRecord>,
    pub failure: Option<PhaseFailure>,
}

impl PhaseReport {
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }

    /// The outcome of what failed, when a hook or the environment shell ran and failed.
    fn failed_outcome(&self) -> Option<&HookOutcome> {
        match self.failure.as_ref()? {
            PhaseFailure::Hook => self.hooks.last().map(|h| &h.outcome),
            PhaseFailure::Environment { outcome, .. } => Some(outcome),
            PhaseFailure::DeadlinePassed { .. } | PhaseFailure::Interrupted { .. } => None,
        }
    }

    /// 0 on success, else the status of what failed (as dib-run-parts exits).
    pub fn status(&self) -> i32 {
        match &self.failure {
            None => 0,
            Some(PhaseFailure::DeadlinePassed { .. }) => TIMEOUT_STATUS,
            Some(PhaseFailure::Interrupted { signal, .. }) => 128 + signal,
            Some(_) => self.failed_outcome().map_or(1, HookOutcome::status),
        }
    }

    /// The signal that interrupted the run, if one did.
    pub fn interrupted(&self) -> Option<i32> {
        match (&self.failure, self.failed_outcome()) {
            (Some(PhaseFailure::Interrupted { signal, .. }), _) => Some(*signal),
            (_, Some(HookOutcome::Interrupted(signal))) => Some(*signal),
            _ => None,
        }
    }

    /// Whether the run's deadline (not a hook's own limit) stopped it.
    pub fn hit_deadline(&self) -> bool {
        matches!(self.failure, Some(PhaseFailure::DeadlinePassed { .. }))
            || matches!(
                self.failed_outcome(),
                Some(HookOutcome::TimedOut(TimeLimit {
                    kind: LimitKind::Run,
                    ..
                }))
            )
    }

    /// One line saying what failed, e.g. `20-b exited with status 42`.
    pub fn failure_summary(&self) -> Option<String> {
        Some(match self.failure.as_ref()? {
            PhaseFailure::Hook => {
                let hook = self.hooks.last()?;
                format!("{} {}", hook.name.to_string_lossy(), hook.outcome)
            }
            PhaseFailure::Environment {
                outcome,
                file: Some(file),
            } => {
                format!("environment file {} {outcome}", file.display())
            }
            PhaseFailure::Environment {
                outcome,
                file: None,
            } => {
                format!("reporting the environment of environment.d {outcome}")
            }
            PhaseFailure::Interrupted { signal, next } => format!(
                "interrupted by signal {signal} ({}) before {} could start",
                crate::runner::signal_name(*signal),
                next.to_string_lossy()
            ),
            PhaseFailure::DeadlinePassed { next, limit } => format!(
                "timeout of {} reached before {} could start",
                seconds(*limit),
                next.to_string_lossy()
            ),
        })
    }
}

/// Progress of a directory run, for logging.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    Skipped {
        dir: &'a Path,
        skipped: &'a Skipped,
        filter: &'a NameFilter,
    },
    SourcingEnvironment {
        path: &'a Path,
    },
    HookStarting {
        path: &'a Path,
    },
    HookFinished {
        hook: &'a HookRecord,
    },
    /// The run is over (successfully or not); the report is final.
    Finished {
        report: &'a PhaseReport,
    },
}

/// `DIR/name` with DIR exactly as given (`td/` gives `td//name`, as upstream prints it).
pub fn hook_path(dir: &Path, name: &OsStr) -> PathBuf {
    let mut path = dir.as_os_str().to_owned();
    path.push("/");
    path.push(name);
    path.into()
}

/// Selects and orders the hooks of `dir` without running anything (`dib-run-parts --list`).
pub fn list_hooks(dir: &Path, filter: &NameFilter) -> Result<Selection> {
    if !dir.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_owned(),
        });
    }
    Ok(select_hooks(&read_listing(dir)?, filter))
}

/// The environment files that a run of `dir` sources, in order.
pub fn environment_files(dir: &Path, source: &EnvironmentSource) -> Result<Vec<PathBuf>> {
    let env_dir = match source {
        EnvironmentSource::Sibling => hook_path(dir, OsStr::new("../environment.d")),
        EnvironmentSource::Directory(path) => path.clone(),
        EnvironmentSource::None => return Ok(Vec::new()),
    };
    if !env_dir.is_dir() {
        return Ok(Vec::new());
    }
    let listing = read_listing(&env_dir)?;
    Ok(select_environment_files(&listing)
        .iter()
        .map(|name| hook_path(&env_dir, name))
        .collect())
}

/// Runs the hooks of `dir` in order through `runner`, stopping at the first failure.
///
/// Errors are reserved for the run itself (a missing directory, an unreadable listing); a hook
/// or environment file that fails is recorded in the returned report.
pub fn run_parts(
    dir: &Path,
    options: &RunPartsOptions,
    runner: &mut dyn HookRunner,
    on_event: &mut dyn FnMut(&Event<'_>),
) -> Result<PhaseReport> {
    let selection = list_hooks(dir, &options.filter)?;
    let mut report = PhaseReport {
        dir: dir.to_owned(),
        environment_files: environment_files(dir, &options.environment)?,
        ..PhaseReport::default()
    };
    for skipped in &selection.skipped {
        on_event(&Event::Skipped {
            dir,
            skipped,
            filter: &options.filter,
        });
    }
    report.skipped = selection.skipped;

    let limit = || -> Option<TimeLimit> {
        let own = options.hook_timeout.map(TimeLimit::hook);
        let run = options.deadline.map(|d| TimeLimit {
            after: d.at.saturating_duration_since(Instant::now()),
            kind: LimitKind::Run,
            configured: d.limit,
        });
        match (own, run) {
            (Some(own), Some(run)) if run.after < own.after => Some(run),
            (Some(own), _) => Some(own),
            (None, run) => run,
        }
    };

    let mut environment = None;
    // Sourced even when no hook runs, as upstream: a failing file fails the run all the same.
    if !report.environment_files.is_empty() {
        let request = EnvironmentRequest {
            files: &report.environment_files,
            limit: limit(),
        };
        let mut announce = |path: &Path| on_event(&Event::SourcingEnvironment { path });
        match runner.load_environment(&request, &mut announce)? {
            EnvironmentLoad::Loaded(env) => environment = Some(env),
            EnvironmentLoad::Failed { outcome, file } => {
                report.failure = Some(PhaseFailure::Environment { outcome, file });
                on_event(&Event::Finished { report: &report });
                return Ok(report);
            }
        }
    }

    for name in selection.hooks {
        let path = hook_path(dir, &name);
        if let Some(signal) = runner.pending_interrupt() {
            report.failure = Some(PhaseFailure::Interrupted { signal, next: name });
            break;
        }
        if let Some(deadline) = options.deadline.filter(|d| d.at <= Instant::now()) {
            report.failure = Some(PhaseFailure::DeadlinePassed {
                next: name,
                limit: deadline.limit,
            });
            break;
        }
        let limit = limit();
        on_event(&Event::HookStarting { path: &path });
        let started = Instant::now();
        let outcome = runner.run_hook(&HookCommand {
            path: &path,
            environment: environment.as_ref(),
            limit,
        })?;
        let record = HookRecord {
            name,
            path,
            duration: started.elapsed(),
            outcome,
        };
        on_event(&Event::HookFinished { hook: &record });
        let failed = !record.outcome.succeeded();
        report.hooks.push(record);
        if failed {
            report.failure = Some(PhaseFailure::Hook);
            break;
        }
    }
    on_event(&Event::Finished { report: &report });
    Ok(report)
}

/// The profiling block dib-run-parts prints after a run, one line per element (blank lines
/// are empty strings): rows in execution order, a failed row marked.
pub fn profile_lines(report: &PhaseReport) -> Vec<String> {
    let target = report
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut lines = vec![
        "----------------------- PROFILING -----------------------".to_owned(),
        String::new(),
        format!("Target: {target}"),
        String::new(),
        format!("{:<40} {:>9}", "Script", "Seconds"),
        format!("{:<40} {:>9}", "-".repeat(39), "-".repeat(10)),
        String::new(),
    ];
    for hook in &report.hooks {
        let mut row = format!(
            "{:<40} {:>10.3}",
            hook.name.to_string_lossy(),
            hook.duration.as_secs_f64()
        );
        match &hook.outcome {
            HookOutcome::Exited(0) => {}
            HookOutcome::TimedOut(_) => row.push_str(" TIMEOUT"),
            outcome => {
                let _ = write!(row, " FAILED ({})", outcome.status());
            }
        }
        lines.push(row);
    }
    lines.push(String::new());
    lines.push("--------------------- END PROFILING ---------------------".to_owned());
    lines
}
