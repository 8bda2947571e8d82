//! End to end: `os-collect-config` collects the EC2 tree from a real HTTP server on
//! 127.0.0.1, runs `os-apply-config` as its command, and the templates land on disk with the
//! metadata; a second poll with nothing changed runs nothing; a failing command commits
//! nothing and returns its status.

#[path = "../crates/metadata-applier/tests/support/http_server.rs"]
mod http_server;

mod common;

use std::fs;
use std::process::Command;

use http_server::{ec2_routes, Server};

struct Setup {
    dir: tempfile::TempDir,
    server: Server,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let templates = dir.path().join("templates/etc/demo");
        fs::create_dir_all(&templates).expect("mkdir");
        fs::write(
            templates.join("demo.conf"),
            "address = {{local-ipv4}}\nzone = {{placement.availability-zone}}\nkey = {{public-keys.0.openssh-key}}\n",
        )
        .expect("template");
        Setup {
            dir,
            server: Server::start(ec2_routes(), false),
        }
    }

    fn collect(&self, command: &str) -> std::process::Output {
        let d = self.dir.path();
        Command::new(common::example("os-collect-config"))
            .args([
                "--config-file",
                "/dev/null",
                "--one-time",
                "--ec2-noconfig-drive",
            ])
            .arg("--cachedir")
            .arg(d.join("cache"))
            .arg("--backup-cachedir")
            .arg(d.join("backup"))
            .arg("--ec2-metadata-url")
            .arg(format!("{}/latest/meta-data", self.server.base))
            .arg("ec2")
            .arg("-c")
            .arg(command)
            .env("OAC", common::example("os-apply-config"))
            .env("ROOT", d)
            .output()
            .expect("run os-collect-config")
    }
}

const APPLY: &str = r#""$OAC" --log-file none --fallback-metadata -t "$ROOT/templates" -o "$ROOT/out" && echo applied >> "$ROOT/runs""#;

#[test]
fn collect_then_apply_writes_the_files() {
    let setup = Setup::new();
    let out = setup.collect(APPLY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written =
        fs::read_to_string(setup.dir.path().join("out/etc/demo/demo.conf")).expect("rendered file");
    assert_eq!(
        written,
        "address = 192.0.2.1\nzone = foo-az\nkey = ssh-rsa AAAAAAAAABBBBBBBBCCCCCCCC\n"
    );
    let cache = setup.dir.path().join("cache");
    assert!(
        cache.join("ec2.json.last").exists(),
        "committed after success"
    );
    assert!(setup
        .dir
        .path()
        .join("backup/os_config_files.json")
        .exists());

    // Nothing changed: the command does not run again.
    let again = setup.collect(APPLY);
    assert!(again.status.success());
    assert_eq!(
        fs::read_to_string(setup.dir.path().join("runs")).expect("runs"),
        "applied\n"
    );
}

#[test]
fn a_failing_command_commits_nothing_and_returns_its_status() {
    let setup = Setup::new();
    let out = setup.collect("exit 7");
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!setup.dir.path().join("cache/ec2.json.last").exists());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Command failed, will not cache new data.")
    );
    // The change is retried next time, and committed once the command succeeds.
    assert!(setup.collect(APPLY).status.success());
    assert!(setup.dir.path().join("cache/ec2.json.last").exists());
}

/// SIGHUP in continuous mode re-executes the daemon at its next sleep (upstream ignores it
/// after the first command run); the fresh process finds nothing changed.
#[test]
fn sighup_reexecutes_the_daemon() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("hl.json");
    fs::write(&data, r#"{"h": 1}"#).expect("metadata");
    let runs = dir.path().join("runs");
    let mut child = Command::new(common::example("os-collect-config"))
        .args([
            "--config-file",
            "/dev/null",
            "--min-polling-interval",
            "60",
            "-i",
            "60",
        ])
        .arg("--cachedir")
        .arg(dir.path().join("cache"))
        .arg("--backup-cachedir")
        .arg(dir.path().join("backup"))
        .arg("--heat_local-path")
        .arg(&data)
        .arg("heat_local")
        .arg("-c")
        .arg(format!("echo ran >> {}", runs.display()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn os-collect-config");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !runs.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Let it reach its sleep, then hang up.
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    std::thread::sleep(std::time::Duration::from_millis(700));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let _ = child.wait();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(stderr.contains("Signal received. Re-executing"), "{stderr}");
    assert_eq!(
        stderr.matches("Sleeping 60.00 seconds.").count(),
        2,
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(&runs).expect("runs"),
        "ran\n",
        "the re-executed daemon ran the command again"
    );
}
