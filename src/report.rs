//! `os-refresh-config --report FILE`: the run as JSON, for monitoring, written atomically.

use std::io::{self, Write as _};
use std::path::Path;

use refresh_config::{HookOutcome, PhaseFailure, PhaseRun, RefreshReport};
use serde_json::{json, Value};

/// The whole run: overall status, then per phase (and error.d) every hook with its outcome,
/// status and duration, the skipped entries with reasons and the environment files.
pub fn refresh_report(base_dir: &Path, report: &RefreshReport) -> Value {
    json!({
        "base_dir": base_dir.to_string_lossy(),
        "status": report.exit_code(),
        "interrupted_by_signal": report.interrupted,
        "phases": report.phases.iter().map(phase).collect::<Vec<_>>(),
        "error_handlers": report.error_handlers.as_ref().map(phase),
    })
}

fn phase(run: &PhaseRun) -> Value {
    let report = match &run.result {
        Ok(report) => report,
        Err(e) => return json!({ "phase": run.phase, "status": 1, "error": e.to_string() }),
    };
    let failure = report.failure.as_ref().map(|f| match f {
        PhaseFailure::Hook => "hook",
        PhaseFailure::Environment { .. } => "environment",
        PhaseFailure::DeadlinePassed { .. } => "timeout",
        PhaseFailure::Interrupted { .. } => "interrupted",
    });
    json!({
        "phase": run.phase,
        "dir": report.dir.to_string_lossy(),
        "status": report.status(),
        "failure": failure,
        "summary": report.failure_summary(),
        "environment_files": report
            .environment_files
            .iter()
            .map(|f| f.to_string_lossy())
            .collect::<Vec<_>>(),
        "skipped": report
            .skipped
            .iter()
            .map(|s| json!({ "name": s.name.to_string_lossy(), "reason": s.reason.to_string() }))
            .collect::<Vec<_>>(),
        "hooks": report
            .hooks
            .iter()
            .map(|h| json!({
                "name": h.name.to_string_lossy(),
                "outcome": outcome_kind(&h.outcome),
                "status": h.outcome.status(),
                "seconds": h.duration.as_secs_f64(),
            }))
            .collect::<Vec<_>>(),
    })
}

fn outcome_kind(outcome: &HookOutcome) -> &'static str {
    match outcome {
        HookOutcome::Exited(0) => "succeeded",
        HookOutcome::Exited(_) => "failed",
        HookOutcome::Signalled(_) => "killed",
        HookOutcome::TimedOut(_) => "timed-out",
        HookOutcome::Interrupted(_) => "interrupted",
        HookOutcome::NotExecuted { .. } => "not-executed",
    }
}

/// A run that ended before any phase: lock contention, bad options.
pub fn failed_start(base_dir: &Path, status: u8, error: &str) -> Value {
    json!({
        "base_dir": base_dir.to_string_lossy(),
        "status": status,
        "error": error,
        "phases": [],
        "error_handlers": null,
    })
}

/// Writes `bytes` to `path` (mode 0644) so that readers see the old file or the new one,
/// never a part: a temporary file in the same directory, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    // Monitoring may run as another user: not the 0600 of a fresh temporary file.
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
