//! Data-driven conformance of `os-refresh-config` and `dib-run-parts` (the examples) against
//! the cases in `tests/fixtures/refresh-config/` (`$ORC`, `$RUN_PARTS` in `cmd`), a live
//! differential run of the cases marked `same` against upstream os-refresh-config 14.1.0
//! (`scripts/regen-refresh-config-fixtures.sh` regenerates their expectations), and signal
//! handling.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Tools;

const TOOLS: [(&str, &str); 2] = [("ORC", "os-refresh-config"), ("RUN_PARTS", "dib-run-parts")];

#[test]
fn conformance_cases() {
    common::conformance(&common::fixtures("refresh-config"), &Tools::ours(&TOOLS));
}

#[test]
fn differential_against_upstream() {
    common::differential(
        &common::fixtures("refresh-config"),
        "ORC_UPSTREAM_VENV",
        Tools::upstream("ORC_UPSTREAM_VENV", &TOOLS),
        &Tools::ours(&TOOLS),
    );
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
    let orc = common::examples_dir().join("os-refresh-config");
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
    let child = Command::new(&orc)
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
