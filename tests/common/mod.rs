//! The data-driven CLI fixture harness shared by the tools' tests.
//!
//! Each case folder of `tests/fixtures/<tool>/` holds `setup.sh` (builds trees in a fresh
//! `$ROOT`, after sourcing the folder's `lib.sh`), `cmd` (a bash snippet run with variables
//! naming the tools under test), the expected `stdout` and `exit`, optional `env`,
//! `stderr-contains`, `stderr-empty`, `min-seconds`, `max-seconds`, and `upstream` (`same`, or
//! `differs: why`). Cases marked `same` also run against the upstream tool in the differential
//! tests. Every case gets its own TMPDIR and fails if it leaves anything there.

#![allow(
    dead_code,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "shared by several test crates, each using a part; it reports each case"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `tests/fixtures/<tool>`.
pub(crate) fn fixtures(tool: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(tool)
}

/// The path of example `name` of this build.
pub(crate) fn example(name: &str) -> PathBuf {
    examples_dir().join(name)
}

pub(crate) fn examples_dir() -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples")
}

/// The tools a case runs (environment variables naming them, e.g. `ORC`) and the PATH they
/// run with.
pub(crate) struct Tools {
    pub(crate) label: &'static str,
    pub(crate) vars: Vec<(&'static str, PathBuf)>,
    pub(crate) path: String,
}

impl Tools {
    /// Our examples, named by the variables in `vars` (variable, example name).
    pub(crate) fn ours(vars: &[(&'static str, &str)]) -> Self {
        let dir = examples_dir();
        Tools {
            label: "ours",
            vars: vars
                .iter()
                .map(|(var, name)| (*var, dir.join(name)))
                .collect(),
            path: PATH.to_owned(),
        }
    }

    /// Upstream's tools in the venv named by `venv_var`, or `None` when it is not set.
    pub(crate) fn upstream(venv_var: &str, vars: &[(&'static str, &str)]) -> Option<Self> {
        let bin = PathBuf::from(std::env::var_os(venv_var)?).join("bin");
        Some(Tools {
            label: "upstream",
            vars: vars
                .iter()
                .map(|(var, name)| (*var, bin.join(name)))
                .collect(),
            path: format!("{}:{PATH}", bin.display()),
        })
    }

    /// Adds a variable naming a fixed file (a wrapper script, say).
    pub(crate) fn with(mut self, var: &'static str, path: PathBuf) -> Self {
        self.vars.push((var, path));
        self
    }
}

pub(crate) struct Run {
    stdout: String,
    stderr: String,
    exit: i32,
    elapsed: Duration,
    /// Entries the run left in its TMPDIR.
    left_in_tmpdir: usize,
}

pub(crate) fn read(case: &Path, file: &str) -> Option<String> {
    fs::read_to_string(case.join(file)).ok()
}

pub(crate) fn run_case(case: &Path, tools: &Tools) -> Result<(Run, String), String> {
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
            .env("TMPDIR", scratch.path())
            .current_dir(root.path());
        for (var, path) in &tools.vars {
            cmd.env(var, path);
        }
    };
    let setup = format!(
        "set -e; source {:?}; {}",
        case.parent().unwrap_or(case).join("lib.sh"),
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

    if !case.join("cmd").is_file() {
        return Err("no cmd file".to_owned());
    }
    // The cmd snippet may use the helpers of lib.sh too.
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(r#"source "$1"; source "$2""#)
        .arg("cmd")
        .arg(case.parent().unwrap_or(case).join("lib.sh"))
        .arg(case.join("cmd"));
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
pub(crate) fn check_expectations(case: &Path, run: &Run, root: &str) -> Vec<String> {
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

pub(crate) fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("cmd").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fixtures found");
    cases
}

pub(crate) fn is_same_as_upstream(case: &Path) -> bool {
    read(case, "upstream").is_some_and(|s| s.trim() == "same")
}

/// Runs `check` on every case, four at a time (several cases sleep), and fails listing every
/// case that did not pass.
pub(crate) fn for_each_case(cases: &[PathBuf], check: impl Fn(&Path) -> Vec<String> + Sync) {
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
                // Cases that switch to another user (setpriv) can only run as root.
                if case.join("needs-root").exists() && !is_root() {
                    println!("SKIPPED {name}: needs root to run as another user");
                    continue;
                }
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

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs every case of `dir` with our tools and checks its expectations.
pub(crate) fn conformance(dir: &Path, ours: &Tools) {
    for (_, path) in &ours.vars {
        assert!(path.exists(), "{} not built", path.display());
    }
    for_each_case(&cases(dir), |case| match run_case(case, ours) {
        Ok((run, root)) => check_expectations(case, &run, &root),
        Err(e) => vec![e],
    });
}

/// Runs every `same` case of `dir` with upstream's tools and ours: stdout and exit status
/// must be identical. Without upstream (its venv variable unset) this fails under CI and
/// says why it skips elsewhere.
pub(crate) fn differential(dir: &Path, venv_var: &str, upstream: Option<Tools>, ours: &Tools) {
    let Some(upstream) = upstream else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{venv_var} is not set: scripts/test.sh installs the upstream tool and sets it"
        );
        eprintln!("SKIPPED differential test: {venv_var} is not set (scripts/test.sh sets it)");
        return;
    };
    let same: Vec<PathBuf> = cases(dir)
        .into_iter()
        .filter(|c| is_same_as_upstream(c))
        .collect();
    for_each_case(&same, |case| {
        let (theirs, ours) = match (run_case(case, &upstream), run_case(case, ours)) {
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
