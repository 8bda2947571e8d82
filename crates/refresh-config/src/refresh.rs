//! os-refresh-config: the phases, error handlers and run-wide limits over the run-parts engine.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::run_parts::{
    environment_files, list_hooks, run_parts, Deadline, EnvironmentSource, Event, PhaseReport,
    RunPartsOptions,
};
use crate::runner::HookRunner;
use crate::select::{NameFilter, Selection};

/// The phases in run order, as upstream lists them (`--print-phases`). `migration` runs after
/// `post-configure`: migrations are online.
pub const PHASES: [&str; 4] = ["pre-configure", "configure", "post-configure", "migration"];

/// The phases [`refresh`] runs by default: [`PHASES`] plus `check` between `configure` and
/// `post-configure`, where hooks can validate the rendered configuration before services are
/// touched. Like every phase it runs only if its directory exists.
pub const RUN_PHASES: [&str; 5] = [
    "pre-configure",
    "configure",
    "check",
    "post-configure",
    "migration",
];

/// Where hook phases live unless `OS_REFRESH_CONFIG_BASE_DIR` says otherwise.
pub const DEFAULT_BASE_DIR: &str = "/usr/libexec/os-refresh-config";

/// The old base directory, still used when it exists and the default does not.
pub const LEGACY_BASE_DIR: &str = "/opt/stack/os-config-refresh";

/// The environment variable that names the base directory.
pub const BASE_DIR_VAR: &str = "OS_REFRESH_CONFIG_BASE_DIR";

/// The resolved base directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseDir {
    pub path: PathBuf,
    /// The legacy directory was chosen; callers should warn.
    pub deprecated: bool,
}

/// Resolves the base directory from the variable's value and a directory test, as upstream.
pub fn resolve_base_dir(from_env: Option<OsString>, is_dir: impl Fn(&Path) -> bool) -> BaseDir {
    if let Some(path) = from_env {
        return BaseDir {
            path: path.into(),
            deprecated: false,
        };
    }
    let legacy = Path::new(LEGACY_BASE_DIR);
    let deprecated = is_dir(legacy) && !is_dir(Path::new(DEFAULT_BASE_DIR));
    let path = if deprecated {
        legacy
    } else {
        Path::new(DEFAULT_BASE_DIR)
    };
    BaseDir {
        path: path.to_owned(),
        deprecated,
    }
}

/// How to run the phases.
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    pub base_dir: PathBuf,
    pub phases: Vec<String>,
    pub filter: NameFilter,
    /// Limit for all phases together (error.d excluded).
    pub timeout: Option<Duration>,
    /// Limit for each hook, in every phase and in error.d.
    pub hook_timeout: Option<Duration>,
    /// Limit for error.d.
    pub error_timeout: Option<Duration>,
}

impl RefreshOptions {
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        RefreshOptions {
            base_dir: base_dir.into(),
            phases: RUN_PHASES.iter().map(|p| (*p).to_owned()).collect(),
            filter: NameFilter::Default,
            timeout: None,
            hook_timeout: None,
            error_timeout: None,
        }
    }

    fn phase_dir(&self, phase: &str) -> PathBuf {
        self.base_dir.join(format!("{phase}.d"))
    }
}

/// Progress of a refresh, for logging.
#[derive(Debug)]
#[non_exhaustive]
pub enum RefreshEvent<'a> {
    Checking {
        dir: &'a Path,
    },
    PhaseMissing {
        phase: &'a str,
    },
    PhaseStarting {
        phase: &'a str,
        dir: &'a Path,
    },
    PhaseCompleted {
        phase: &'a str,
    },
    /// `reason` names the failing hook and its status, or the error.
    PhaseFailed {
        phase: &'a str,
        reason: &'a str,
    },
    /// The run's `--timeout` stopped a phase.
    TimeoutReached {
        timeout: Duration,
    },
    CallingErrorHandlers {
        dir: &'a Path,
    },
    Aborting,
    /// A signal stopped the run; error.d is not run.
    Interrupted {
        signal: i32,
    },
    RunParts(&'a Event<'a>),
}

/// How a phase ended.
#[derive(Debug)]
pub struct PhaseRun {
    pub phase: String,
    /// The report, or the error that stopped the phase before or while it ran.
    pub result: Result<PhaseReport, crate::Error>,
}

impl PhaseRun {
    fn succeeded(&self) -> bool {
        self.result.as_ref().is_ok_and(PhaseReport::succeeded)
    }
}

/// The record of a whole refresh.
#[derive(Debug, Default)]
pub struct RefreshReport {
    /// Phases that ran, in order; the last one failed if [`RefreshReport::failed`].
    pub phases: Vec<PhaseRun>,
    pub error_handlers: Option<PhaseRun>,
    pub interrupted: Option<i32>,
}

impl RefreshReport {
    pub fn failed(&self) -> bool {
        self.interrupted.is_some() || self.phases.last().is_some_and(|p| !p.succeeded())
    }

    /// os-refresh-config's exit status: 0, or 1 whatever failed.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.failed())
    }
}

/// Runs every existing phase directory in order; on the first failure runs `error.d` (its own
/// status ignored) and stops. A signal forwarded by the runner stops everything at once.
pub fn refresh(
    options: &RefreshOptions,
    runner: &mut dyn HookRunner,
    on_event: &mut dyn FnMut(&RefreshEvent<'_>),
) -> RefreshReport {
    let mut report = RefreshReport::default();
    let deadline = options.timeout.map(Deadline::after);
    let phase_options = RunPartsOptions {
        filter: options.filter.clone(),
        environment: EnvironmentSource::Sibling,
        hook_timeout: options.hook_timeout,
        deadline,
    };
    for phase in &options.phases {
        let dir = options.phase_dir(phase);
        on_event(&RefreshEvent::Checking { dir: &dir });
        if !dir.exists() {
            on_event(&RefreshEvent::PhaseMissing { phase });
            continue;
        }
        on_event(&RefreshEvent::PhaseStarting { phase, dir: &dir });
        let result = run_parts(&dir, &phase_options, runner, &mut |e| {
            on_event(&RefreshEvent::RunParts(e));
        });
        let run = PhaseRun {
            phase: phase.clone(),
            result,
        };
        if run.succeeded() {
            on_event(&RefreshEvent::PhaseCompleted { phase });
            report.phases.push(run);
            continue;
        }
        let reason = match &run.result {
            Ok(phase_report) => phase_report.failure_summary().unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        let phase_report = run.result.as_ref().ok();
        if let Some(signal) = phase_report.and_then(PhaseReport::interrupted) {
            on_event(&RefreshEvent::Interrupted { signal });
            report.interrupted = Some(signal);
            report.phases.push(run);
            return report;
        }
        if let (Some(timeout), true) = (
            options.timeout,
            phase_report.is_some_and(PhaseReport::hit_deadline),
        ) {
            on_event(&RefreshEvent::TimeoutReached { timeout });
        }
        on_event(&RefreshEvent::PhaseFailed {
            phase,
            reason: &reason,
        });
        report.phases.push(run);
        report.error_handlers = run_error_handlers(options, &phase_options, runner, on_event);
        if let Some(signal) = report
            .error_handlers
            .as_ref()
            .and_then(|run| run.result.as_ref().ok())
            .and_then(PhaseReport::interrupted)
        {
            on_event(&RefreshEvent::Interrupted { signal });
            report.interrupted = Some(signal);
            return report;
        }
        on_event(&RefreshEvent::Aborting);
        return report;
    }
    report
}

/// What a refresh would do in one phase, without running anything.
#[derive(Debug, Clone)]
pub struct PhasePlan {
    pub phase: String,
    pub dir: PathBuf,
    /// `None` when the phase directory does not exist (the phase is skipped).
    pub selection: Option<Selection>,
    pub environment_files: Vec<PathBuf>,
}

/// The hooks, skips and environment files of every phase and of `error.d` (last, named
/// `error`), in run order: `--dry-run`.
pub fn plan(options: &RefreshOptions) -> Result<Vec<PhasePlan>, crate::Error> {
    let phases = options
        .phases
        .iter()
        .map(|p| (p.clone(), options.phase_dir(p)));
    let error = std::iter::once(("error".to_owned(), options.base_dir.join("error.d")));
    phases
        .chain(error)
        .map(|(phase, dir)| {
            let (selection, environment_files) = if dir.exists() {
                (
                    Some(list_hooks(&dir, &options.filter)?),
                    environment_files(&dir, &EnvironmentSource::Sibling)?,
                )
            } else {
                (None, Vec::new())
            };
            Ok(PhasePlan {
                phase,
                dir,
                selection,
                environment_files,
            })
        })
        .collect()
}

fn run_error_handlers(
    options: &RefreshOptions,
    phase_options: &RunPartsOptions,
    runner: &mut dyn HookRunner,
    on_event: &mut dyn FnMut(&RefreshEvent<'_>),
) -> Option<PhaseRun> {
    let dir = options.base_dir.join("error.d");
    if !dir.exists() {
        return None;
    }
    on_event(&RefreshEvent::CallingErrorHandlers { dir: &dir });
    let error_options = RunPartsOptions {
        deadline: options.error_timeout.map(Deadline::after),
        ..phase_options.clone()
    };
    let result = run_parts(&dir, &error_options, runner, &mut |e| {
        on_event(&RefreshEvent::RunParts(e));
    });
    Some(PhaseRun {
        phase: "error".to_owned(),
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_dir_resolution() {
        let only =
            |dirs: &'static [&'static str]| move |p: &Path| dirs.iter().any(|d| Path::new(d) == p);
        assert_eq!(
            resolve_base_dir(None, only(&[DEFAULT_BASE_DIR])).path,
            Path::new(DEFAULT_BASE_DIR)
        );
        let legacy = resolve_base_dir(None, only(&[LEGACY_BASE_DIR]));
        assert_eq!(
            (legacy.path.as_path(), legacy.deprecated),
            (Path::new(LEGACY_BASE_DIR), true)
        );
        assert_eq!(
            resolve_base_dir(None, only(&[DEFAULT_BASE_DIR, LEGACY_BASE_DIR])).path,
            Path::new(DEFAULT_BASE_DIR)
        );
        assert_eq!(
            resolve_base_dir(None, only(&[])).path,
            Path::new(DEFAULT_BASE_DIR)
        );
        assert_eq!(
            resolve_base_dir(Some("/x".into()), only(&[LEGACY_BASE_DIR])).path,
            Path::new("/x")
        );
    }
}
