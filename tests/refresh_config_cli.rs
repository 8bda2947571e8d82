//! Data-driven conformance of `os-refresh-config` and `dib-run-parts` (the examples) against
//! the cases in `tests/fixtures/refresh-config/`, and, for the cases marked `same`, a live
//! differential run against upstream os-refresh-config 14.1.0.
//!
//! Each case folder holds `setup.sh` (builds hook trees in a fresh `$ROOT`), `cmd` (a bash
//! snippet run with `$ORC` and `$RUN_PARTS` naming the tools under test), the expected `stdout`
//! and `exit`, optional `env`, `stderr-contains`, `stderr-empty`, `min-seconds`, `max-seconds`,
//! and `upstream` (`same`, or `differs: why`). `scripts/regen-refresh-config-fixtures.sh`
//! regenerates the expectations of the `same` cases from upstream.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the harness reports each case and any skip on the test output"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/refresh-config")
}

fn examples_dir() -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples")
}

/// The two tools a case runs, and the PATH they run with.
struct Tools {
    label: &'static str,
    orc: PathBuf,
    run_parts: PathBuf,
    path: String,
}

impl Tools {
    fn ours() -> Self {
        let dir = examples_dir();
        Tools {
            label: "ours",
            orc: dir.join("os-refresh-config"),
            run_parts: dir.join("dib-run-parts"),
            path: PATH.to_owned(),
        }
    }

    fn upstream() -> Option<Self> {
        let venv = PathBuf::from(std::env::var_os("ORC_UPSTREAM_VENV")?);
        let bin = venv.join("bin");
        Some(Tools {
            label: "upstream",
            orc: bin.join("os-refresh-config"),
            run_parts: bin.join("dib-run-parts"),
            path: format!("{}:{PATH}", bin.display()),
        })
    }
}

struct Run {
    stdout: String,
    stderr: String,
    exit: i32,
    elapsed: Duration,
    /// Entries the run left in its TMPDIR.
    left_in_tmpdir: usize,
}

fn read(case: &Path, file: &str) -> Option<String> {
    fs::read_to_string(case.join(file)).ok()
}

fn run_case(case: &Path, tools: &Tools) -> Result<(Run, String), String> {
    let root = tempfile::Builder::new()
        .prefix("orc-case-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let root_str = root.path().to_str().expect("utf-8 temp path").to_owned();
    // Outside $ROOT, so that what a tool leaves in TMPDIR shows (upstream leaks profiledir.*).
    let scratch = tempfile::Builder::new()
        .prefix("orc-tmpdir-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let base = |cmd: &mut Command| {
        cmd.env_clear()
            .env("PATH", &tools.path)
            .env("ROOT", &root_str)
            .env("OS_REFRESH_CONFIG_BASE_DIR", root.path().join("base"))
            .env("ORC", &tools.orc)
            .env("RUN_PARTS", &tools.run_parts)
            .env("TMPDIR", scratch.path())
            .current_dir(root.path());
    };
    let setup = format!(
        "set -e; source {:?}; {}",
        fixtures().join("lib.sh"),
        if case.join("setup.sh").exists() {
            format!("source {:?}", case.join("setup.sh"))
        } else {
            String::new()
        }
    );
    let mut command = Command::new("bash");
    command.arg("-c").arg(&setup);
    base(&mut command);
    let out = command.output().map_err(|e| format!("setup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "setup.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    let cmd = read(case, "cmd").ok_or("no cmd file")?;
    let mut command = Command::new("bash");
    command.arg("-c").arg(&cmd);
    base(&mut command);
    for line in read(case, "env").unwrap_or_default().lines() {
        if let Some((k, v)) = line.split_once('=') {
            command.env(k, v);
        }
    }
    let started = Instant::now();
    let out = command.output().map_err(|e| format!("cmd: {e}"))?;
    let run = Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        exit: out.status.code().unwrap_or(-1),
        elapsed: started.elapsed(),
        left_in_tmpdir: fs::read_dir(scratch.path())
            .map(|entries| entries.count())
            .unwrap_or(0),
    };
    Ok((run, root_str))
}

/// Checks one case against its expectations; returns the problems found.
fn check_expectations(case: &Path, run: &Run, root: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let expand = |s: String| s.replace("$ROOT", root);
    if let Some(expected) = read(case, "stdout").map(expand) {
        if run.stdout != expected {
            problems.push(format!(
                "stdout:\n--- expected\n{expected}--- got\n{}",
                run.stdout
            ));
        }
    }
    let expected_exit: i32 = read(case, "exit")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if run.exit != expected_exit {
        problems.push(format!("exit {} (expected {expected_exit})", run.exit));
    }
    for line in read(case, "stderr-contains")
        .map(expand)
        .unwrap_or_default()
        .lines()
    {
        if !line.is_empty() && !run.stderr.contains(line) {
            problems.push(format!("stderr lacks {line:?}"));
        }
    }
    if case.join("stderr-empty").exists() && !run.stderr.is_empty() {
        problems.push(format!("stderr not empty: {:?}", run.stderr));
    }
    let bound = |file| read(case, file).and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(min) = bound("min-seconds") {
        if run.elapsed < Duration::from_secs(min) {
            problems.push(format!(
                "finished in {:?}, expected at least {min}s",
                run.elapsed
            ));
        }
    }
    if let Some(max) = bound("max-seconds") {
        if run.elapsed >= Duration::from_secs(max) {
            problems.push(format!("took {:?}, expected under {max}s", run.elapsed));
        }
    }
    if run.left_in_tmpdir > 0 {
        problems.push(format!("left {} entries in TMPDIR", run.left_in_tmpdir));
    }
    if !problems.is_empty() {
        problems.push(format!("stderr was:\n{}", run.stderr));
    }
    problems
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(fixtures())
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("cmd").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fixtures found");
    cases
}

fn is_same_as_upstream(case: &Path) -> bool {
    read(case, "upstream").is_some_and(|s| s.trim() == "same")
}

/// Runs `check` on every case, four at a time (several cases sleep), and fails listing every
/// case that did not pass.
fn for_each_case(cases: &[PathBuf], check: impl Fn(&Path) -> Vec<String> + Sync) {
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(cases.iter());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let Some(case) = next.lock().expect("case queue").next() else {
                    break;
                };
                let name = case
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let problems = check(case);
                if problems.is_empty() {
                    println!("ok   {name}");
                } else {
                    println!("FAIL {name}");
                    failures
                        .lock()
                        .expect("failures")
                        .push(format!("{name}:\n  {}", problems.join("\n  ")));
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn conformance_cases() {
    let tools = Tools::ours();
    assert!(tools.orc.exists(), "{} not built", tools.orc.display());
    for_each_case(&cases(), |case| match run_case(case, &tools) {
        Ok((run, root)) => check_expectations(case, &run, &root),
        Err(e) => vec![e],
    });
}

#[test]
fn differential_against_upstream() {
    let Some(upstream) = Tools::upstream() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ORC_UPSTREAM_VENV is not set: scripts/test.sh installs upstream os-refresh-config and sets it"
        );
        eprintln!("SKIPPED differential_against_upstream: ORC_UPSTREAM_VENV is not set (scripts/test.sh sets it)");
        return;
    };
    let ours = Tools::ours();
    let same: Vec<PathBuf> = cases()
        .into_iter()
        .filter(|c| is_same_as_upstream(c))
        .collect();
    for_each_case(&same, |case| {
        let (theirs, ours) = match (run_case(case, &upstream), run_case(case, &ours)) {
            (Ok((t, t_root)), Ok((o, o_root))) => (
                (t.stdout.replace(&t_root, "$ROOT"), t.exit),
                (o.stdout.replace(&o_root, "$ROOT"), o.exit),
            ),
            (Err(e), _) => return vec![format!("{}: {e}", upstream.label)],
            (_, Err(e)) => return vec![format!("{}: {e}", ours.label)],
        };
        if theirs == ours {
            Vec::new()
        } else {
            vec![format!(
                "upstream exit {} stdout:\n{}\nours exit {} stdout:\n{}",
                theirs.1, theirs.0, ours.1, ours.0
            )]
        }
    });
}

#[test]
fn sigterm_is_forwarded_and_stops_the_run() {
    signal_is_forwarded_and_stops_the_run(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sighup_is_forwarded_and_stops_the_run() {
    signal_is_forwarded_and_stops_the_run(nix::sys::signal::Signal::SIGHUP);
}

/// A signal to os-refresh-config reaches the running hook's process group; the run stops
/// without error handlers, exits 1 and leaves the lock file empty.
fn signal_is_forwarded_and_stops_the_run(signal: nix::sys::signal::Signal) {
    let tools = Tools::ours();
    let root = tempfile::tempdir().expect("temp dir");
    let base = root.path().join("base");
    let marker = root.path().join("hook-got-term");
    let started = root.path().join("started");
    let write_hook = |path: PathBuf, body: String| {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write hook");
        let mut perms = fs::metadata(&path).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(&path, perms).expect("chmod");
    };
    write_hook(
        base.join("configure.d/10-wait"),
        format!(
            "trap 'touch {}; exit 143' {}\ntouch {}\nwhile :; do sleep 0.05; done",
            marker.display(),
            &signal.as_str()[3..],
            started.display()
        ),
    );
    write_hook(
        base.join("post-configure.d/10-never"),
        format!("touch {}/post-ran", root.path().display()),
    );
    write_hook(
        base.join("error.d/10-err"),
        format!("touch {}/error-ran", root.path().display()),
    );
    let lock = root.path().join("orc.lock");
    let child = Command::new(&tools.orc)
        .arg("--lockfile")
        .arg(&lock)
        .env("OS_REFRESH_CONFIG_BASE_DIR", &base)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn orc");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(Instant::now() < deadline, "hook never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let content = fs::read_to_string(&lock).expect("lock file");
    assert!(
        content.starts_with(&format!("Locked by pid=={} at ", child.id())),
        "{content:?}"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).expect("kill");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(marker.exists(), "the hook did not receive {signal}");
    assert!(!root.path().join("post-ran").exists());
    assert!(
        !root.path().join("error-ran").exists(),
        "error.d ran after a signal"
    );
    assert!(
        stderr.contains(&format!("Interrupted by signal {}", signal as i32)),
        "{stderr}"
    );
    assert_eq!(fs::read_to_string(&lock).expect("lock file"), "");
}
