//! The engine through its public interface: pure selection and the phase logic with the
//! recording runner, then the real process runner on hooks written to a temp dir.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use refresh_config::{
    refresh, run_parts, Deadline, EnvironmentLoad, Event, HookOutcome, HookRunner, LimitKind,
    PhaseFailure, ProcessRunner, RecordingRunner, RefreshEvent, RefreshOptions, RunPartsOptions,
};

fn write(path: &Path, body: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn hook(path: &Path, body: &str) {
    write(path, &format!("#!/bin/sh\n{body}\n"), 0o755);
}

fn names(report: &refresh_config::PhaseReport) -> Vec<String> {
    report
        .hooks
        .iter()
        .map(|h| h.name.to_string_lossy().into_owned())
        .collect()
}

fn quiet(_: &Event<'_>) {}

#[test]
fn recording_runner_sees_hooks_in_order_and_stops_at_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("configure.d");
    for name in ["10-b", "10-a", "5-x", "100-z", "foo.sh"] {
        hook(&dir.join(name), "true");
    }
    write(&dir.join("20-noexec"), "", 0o644);
    let mut runner = RecordingRunner::new().with_outcome("10-b", HookOutcome::Exited(42));
    let mut skipped = Vec::new();
    let report = run_parts(&dir, &RunPartsOptions::default(), &mut runner, &mut |e| {
        if let Event::Skipped { skipped: s, .. } = e {
            skipped.push((s.name.clone(), s.reason.to_string()));
        }
    })
    .unwrap();
    assert_eq!(runner.names(), ["5-x", "10-a", "10-b"]);
    assert_eq!(names(&report), ["5-x", "10-a", "10-b"]);
    assert_eq!(report.failure, Some(PhaseFailure::Hook));
    assert_eq!(report.status(), 42);
    assert_eq!(
        skipped,
        [
            (OsString::from("20-noexec"), "not executable".to_owned()),
            (OsString::from("foo.sh"), "name does not match".to_owned()),
        ]
    );
    assert!(runner.hooks.iter().all(|h| h.environment.is_none()));
}

#[test]
fn environment_files_are_requested_once_per_run_in_byte_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("configure.d");
    hook(&dir.join("10-a"), "true");
    hook(&dir.join("20-b"), "true");
    for name in ["9-env", "10-env", "a.env", ".dot", "bad name"] {
        write(&tmp.path().join("environment.d").join(name), "", 0o644);
    }
    let mut runner = RecordingRunner::new();
    run_parts(&dir, &RunPartsOptions::default(), &mut runner, &mut quiet).unwrap();
    let requested: Vec<String> = runner.environment_requests[0]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runner.environment_requests.len(), 1);
    assert_eq!(requested, [".dot", "10-env", "9-env", "a.env"]);
    assert!(runner.hooks.iter().all(|h| h.environment.is_some()));
}

#[test]
fn failing_environment_runs_no_hook() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("configure.d");
    hook(&dir.join("10-a"), "true");
    write(&tmp.path().join("environment.d/10-env"), "false", 0o644);
    let file = tmp.path().join("environment.d/10-env");
    let mut runner = RecordingRunner::new().with_environment(EnvironmentLoad::Failed {
        outcome: HookOutcome::Exited(1),
        file: Some(file.clone()),
    });
    let report = run_parts(&dir, &RunPartsOptions::default(), &mut runner, &mut quiet).unwrap();
    assert!(runner.hooks.is_empty());
    assert_eq!(
        report.failure,
        Some(PhaseFailure::Environment {
            outcome: HookOutcome::Exited(1),
            file: Some(file)
        })
    );
}

#[test]
fn an_expired_deadline_starts_no_hook() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("configure.d");
    hook(&dir.join("10-a"), "true");
    let options = RunPartsOptions {
        deadline: Some(Deadline {
            at: Instant::now(),
            limit: Duration::from_secs(2),
        }),
        ..RunPartsOptions::default()
    };
    let mut runner = RecordingRunner::new();
    let report = run_parts(&dir, &options, &mut runner, &mut quiet).unwrap();
    assert!(runner.hooks.is_empty());
    assert!(report.hit_deadline());
    assert_eq!(report.status(), 124);
}

fn base_with_phases(tmp: &Path) -> PathBuf {
    let base = tmp.join("base");
    hook(&base.join("pre-configure.d/10-pre"), "true");
    hook(&base.join("configure.d/10-fail"), "true");
    hook(&base.join("post-configure.d/10-post"), "true");
    hook(&base.join("migration.d/10-migrate"), "true");
    hook(&base.join("error.d/10-err"), "true");
    base
}

#[test]
fn refresh_runs_error_handlers_once_and_skips_later_phases() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_with_phases(tmp.path());
    let mut runner = RecordingRunner::new()
        .with_outcome("10-fail", HookOutcome::Exited(3))
        .with_outcome("10-err", HookOutcome::Exited(9));
    let mut events = Vec::new();
    let report = refresh(&RefreshOptions::new(&base), &mut runner, &mut |e| match e {
        RefreshEvent::PhaseStarting { phase, .. } => events.push(format!("start {phase}")),
        RefreshEvent::PhaseFailed { phase, reason } => {
            events.push(format!("failed {phase}: {reason}"))
        }
        RefreshEvent::CallingErrorHandlers { .. } => events.push("error handlers".into()),
        RefreshEvent::Aborting => events.push("abort".into()),
        _ => {}
    });
    assert_eq!(runner.names(), ["10-pre", "10-fail", "10-err"]);
    assert_eq!(
        events,
        [
            "start pre-configure",
            "start configure",
            "failed configure: 10-fail returned non-zero exit status 3",
            "error handlers",
            "abort"
        ]
    );
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn refresh_success_runs_every_phase_in_order_and_no_error_handler() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_with_phases(tmp.path());
    let mut runner = RecordingRunner::new();
    let report = refresh(&RefreshOptions::new(&base), &mut runner, &mut |_| {});
    assert_eq!(
        runner.names(),
        ["10-pre", "10-fail", "10-post", "10-migrate"]
    );
    assert_eq!(report.exit_code(), 0);
    assert!(report.error_handlers.is_none());
}

#[test]
fn refresh_interrupted_runs_no_error_handler() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_with_phases(tmp.path());
    let mut runner = RecordingRunner::new().with_outcome("10-fail", HookOutcome::Interrupted(15));
    let report = refresh(&RefreshOptions::new(&base), &mut runner, &mut |_| {});
    assert_eq!(runner.names(), ["10-pre", "10-fail"]);
    assert_eq!(report.interrupted, Some(15));
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn refresh_hands_each_hook_the_smaller_of_its_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_with_phases(tmp.path());
    let mut runner = RecordingRunner::new();
    let options = RefreshOptions {
        timeout: Some(Duration::from_secs(3600)),
        hook_timeout: Some(Duration::from_secs(5)),
        ..RefreshOptions::new(&base)
    };
    refresh(&options, &mut runner, &mut |_| {});
    for recorded in &runner.hooks {
        let limit = recorded.limit.unwrap();
        assert_eq!(
            (limit.kind, limit.after),
            (LimitKind::Hook, Duration::from_secs(5))
        );
    }
}

// The real process runner.

fn run_real(dir: &Path, options: &RunPartsOptions) -> refresh_config::PhaseReport {
    let mut runner = ProcessRunner::new()
        .kill_grace(Duration::from_millis(500))
        .trace_environment(false);
    run_parts(dir, options, &mut runner, &mut quiet).unwrap()
}

#[test]
fn hook_timeout_terminates_the_whole_process_group() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    let pid_file = tmp.path().join("child.pid");
    hook(
        &dir.join("10-slow"),
        &format!("sleep 30 &\necho $! > {}\nwait", pid_file.display()),
    );
    hook(&dir.join("20-never"), "exit 0");
    let options = RunPartsOptions {
        hook_timeout: Some(Duration::from_millis(300)),
        ..RunPartsOptions::default()
    };
    let started = Instant::now();
    let report = run_real(&dir, &options);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(names(&report), ["10-slow"]);
    assert!(matches!(report.hooks[0].outcome, HookOutcome::TimedOut(_)));
    assert_eq!(report.status(), 124);
    let child: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !is_running(child),
        "background child {child} of the timed-out hook survived"
    );
}

/// Whether `pid` still runs: gone, or a zombie waiting for init to reap it, counts as dead.
fn is_running(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let state = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.chars().next()))
            .flatten();
        if !matches!(state, Some(c) if c != 'Z' && c != 'X') {
            return false;
        }
        if Instant::now() > deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_hook_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    hook(
        &dir.join("10-stubborn"),
        "trap '' TERM\nwhile :; do sleep 0.1; done",
    );
    let options = RunPartsOptions {
        hook_timeout: Some(Duration::from_millis(200)),
        ..RunPartsOptions::default()
    };
    let report = run_real(&dir, &options);
    assert!(matches!(report.hooks[0].outcome, HookOutcome::TimedOut(_)));
}

#[test]
fn captured_environment_reaches_hooks_but_not_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    let out = tmp.path().join("out");
    write(
        &tmp.path().join("environment.d/10-env"),
        "cd /; umask 077; export FOO='a b'; BAR=x; greet() { echo hi; }; export -f greet\n",
        0o644,
    );
    // bash, for the exported function.
    write(
        &dir.join("10-show"),
        &format!(
            "#!/bin/bash\necho \"$(pwd) $(umask) $FOO ${{BAR:-unset}} $(greet)\" > {}\n",
            out.display()
        ),
        0o755,
    );
    let cwd = std::env::current_dir().unwrap();
    let report = run_real(&dir, &RunPartsOptions::default());
    assert!(report.succeeded(), "{:?}", report.failure_summary());
    assert_eq!(fs::read_to_string(&out).unwrap(), "/ 0077 a b unset hi\n");
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    assert!(std::env::var_os("FOO").is_none());
}

#[test]
fn set_plus_e_in_an_environment_file_cannot_hide_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    write(&tmp.path().join("environment.d/10-env"), "set +e\n", 0o644);
    hook(&dir.join("10-a"), "exit 5");
    hook(&dir.join("20-b"), "exit 0");
    let report = run_real(&dir, &RunPartsOptions::default());
    assert_eq!(names(&report), ["10-a"]);
    assert_eq!(report.status(), 5);
}

#[test]
fn unexecutable_hooks_fail_with_shell_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    write(&dir.join("10-bad"), "#!/nonexistent/interpreter\n", 0o755);
    let report = run_real(&dir, &RunPartsOptions::default());
    assert!(matches!(
        report.hooks[0].outcome,
        HookOutcome::NotExecuted { status: 127, .. }
    ));
}

#[test]
fn scripts_without_a_shebang_run_in_the_shell_as_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    let out = tmp.path().join("out");
    write(
        &dir.join("10-plain"),
        &format!("echo ran > {}\n", out.display()),
        0o755,
    );
    let report = run_real(&dir, &RunPartsOptions::default());
    assert!(report.succeeded(), "{:?}", report.failure_summary());
    assert_eq!(fs::read_to_string(&out).unwrap(), "ran\n");
}

#[test]
fn signals_are_reported_as_128_plus_n() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    hook(&dir.join("10-die"), "kill -9 $$");
    let report = run_real(&dir, &RunPartsOptions::default());
    assert_eq!(report.hooks[0].outcome, HookOutcome::Signalled(9));
    assert_eq!(report.status(), 137);
}

/// A runner that wraps another, as an image builder wraps hooks in a chroot.
struct Wrapping<R> {
    inner: R,
    seen: Vec<PathBuf>,
}

impl<R: HookRunner> HookRunner for Wrapping<R> {
    fn run_hook(
        &mut self,
        hook: &refresh_config::HookCommand<'_>,
    ) -> refresh_config::Result<HookOutcome> {
        self.seen.push(hook.path.to_owned());
        self.inner.run_hook(hook)
    }

    fn load_environment(
        &mut self,
        request: &refresh_config::EnvironmentRequest<'_>,
        on_sourcing: &mut dyn FnMut(&Path),
    ) -> refresh_config::Result<EnvironmentLoad> {
        self.inner.load_environment(request, on_sourcing)
    }
}

#[test]
fn runners_compose() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    hook(&dir.join("10-a"), "true");
    let mut runner = Wrapping {
        inner: ProcessRunner::new(),
        seen: Vec::new(),
    };
    let report = run_parts(&dir, &RunPartsOptions::default(), &mut runner, &mut quiet).unwrap();
    assert!(report.succeeded());
    assert_eq!(runner.seen, [dir.join("10-a")]);
}

#[test]
fn a_failing_check_phase_stops_before_services_are_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_with_phases(tmp.path());
    hook(&base.join("check.d/10-validate"), "false");
    let mut runner = RecordingRunner::new().with_outcome("10-validate", HookOutcome::Exited(1));
    let report = refresh(&RefreshOptions::new(&base), &mut runner, &mut |_| {});
    assert_eq!(
        runner.names(),
        ["10-pre", "10-fail", "10-validate", "10-err"]
    );
    assert_eq!(report.phases.last().unwrap().phase, "check");
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn plan_lists_every_phase_and_error_handlers_without_running() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_with_phases(tmp.path());
    write(&base.join("configure.d/README.md"), "", 0o644);
    write(&base.join("environment.d/10-env"), "", 0o644);
    let plan = refresh_config::plan(&RefreshOptions::new(&base)).unwrap();
    let phases: Vec<&str> = plan.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(
        phases,
        [
            "pre-configure",
            "configure",
            "check",
            "post-configure",
            "migration",
            "error"
        ]
    );
    let configure = plan[1].selection.as_ref().unwrap();
    assert_eq!(configure.hooks, ["10-fail"]);
    assert_eq!(configure.skipped[0].name, "README.md");
    assert!(plan[2].selection.is_none());
    assert_eq!(plan[1].environment_files.len(), 1);
}

#[test]
fn a_signal_between_hooks_stops_the_run_before_the_next_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_with_phases(tmp.path());
    let mut runner = RecordingRunner::new().with_interrupt_after(1, 15);
    let mut started = Vec::new();
    let report = refresh(&RefreshOptions::new(&base), &mut runner, &mut |e| {
        if let RefreshEvent::RunParts(Event::HookStarting { path }) = e {
            started.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    });
    assert_eq!(started, ["10-pre"]);
    assert_eq!(report.interrupted, Some(15));
    assert!(report.error_handlers.is_none());
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn kill_grace_covers_every_member_of_the_group() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    let done = tmp.path().join("cleanup-done");
    // The leader dies at once on SIGTERM; its child needs 0.5 s to clean up.
    hook(
        &dir.join("10-slow-cleanup"),
        &format!(
            "(trap 'sleep 0.5; touch {}; exit 0' TERM; while :; do sleep 0.05; done) &\nwait",
            done.display()
        ),
    );
    let mut runner = ProcessRunner::new().kill_grace(Duration::from_secs(5));
    let options = RunPartsOptions {
        hook_timeout: Some(Duration::from_millis(300)),
        ..RunPartsOptions::default()
    };
    let started = Instant::now();
    let report = run_parts(&dir, &options, &mut runner, &mut quiet).unwrap();
    assert!(matches!(report.hooks[0].outcome, HookOutcome::TimedOut(_)));
    assert!(
        done.exists(),
        "the child was killed before its grace period ended"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited the whole grace period"
    );
}

#[test]
fn a_failing_environment_file_is_named_and_later_ones_are_not_sourced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    hook(&dir.join("10-a"), "true");
    let env = tmp.path().join("environment.d");
    write(&env.join("10-ok"), "export A=1\n", 0o644);
    write(&env.join("20-bad"), "false\n", 0o644);
    write(&env.join("30-never"), "export C=3\n", 0o644);
    let mut runner = ProcessRunner::new().trace_environment(false);
    let mut sourced = Vec::new();
    let report = run_parts(&dir, &RunPartsOptions::default(), &mut runner, &mut |e| {
        if let Event::SourcingEnvironment { path } = e {
            sourced.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    })
    .unwrap();
    assert_eq!(sourced, ["10-ok", "20-bad"]);
    match &report.failure {
        Some(PhaseFailure::Environment {
            outcome,
            file: Some(file),
        }) => {
            assert_eq!(outcome, &HookOutcome::Exited(1));
            assert!(file.ends_with("20-bad"), "{}", file.display());
        }
        other => panic!("unexpected failure {other:?}"),
    }
    assert!(report.hooks.is_empty());
    assert!(report
        .failure_summary()
        .unwrap()
        .contains("20-bad returned non-zero exit status 1"));
}

#[test]
fn environment_files_may_change_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hooks");
    let out = tmp.path().join("out");
    write(
        &tmp.path().join("environment.d/10-path"),
        "export PATH=/nonexistent\n",
        0o644,
    );
    hook(
        &dir.join("10-a"),
        &format!("echo \"$PATH\" > {}", out.display()),
    );
    let report = run_real(&dir, &RunPartsOptions::default());
    assert!(report.succeeded(), "{:?}", report.failure_summary());
    assert_eq!(fs::read_to_string(&out).unwrap(), "/nonexistent\n");
}

#[test]
fn supervise_bounds_a_child_outside_its_own_group() {
    let child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let started = Instant::now();
    let outcome = refresh_config::supervise(
        child,
        Some(refresh_config::TimeLimit::hook(Duration::from_millis(200))),
        Duration::from_millis(200),
        None,
        &mut [],
    )
    .unwrap();
    assert!(matches!(outcome, HookOutcome::TimedOut(_)));
    assert!(started.elapsed() < Duration::from_secs(5));
}
