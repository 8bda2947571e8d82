//! Fault test: `os-apply-config` is killed with SIGKILL at random moments while it rewrites a
//! tree, hundreds of times; after every kill each target must hold the complete old or the
//! complete new content, never a mix, a truncation or nothing.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FILES: usize = 24;
const KILLS: usize = 200;

fn body(version: char, index: usize) -> String {
    // Large enough that a write takes several system calls.
    format!(
        "{version}{index}\n{}\n",
        version.to_string().repeat(200_000)
    )
}

/// A small deterministic generator, seeded per run and printed, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn write_metadata(path: &Path, version: char) {
    let mut json = String::from("{");
    for i in 0..FILES {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "\"f{i}\": \"{}\"",
            body(version, i).replace('\n', "\\n")
        ));
    }
    json.push('}');
    fs::write(path, json).expect("metadata");
}

/// The example binary, next to this test's target directory.
fn os_apply_config() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target")
        .join("examples/os-apply-config")
}

#[test]
fn killed_writer_never_leaves_a_partial_file() {
    let oac = os_apply_config();
    assert!(oac.exists(), "{} not built", oac.display());
    let dir = tempfile::tempdir().expect("temp dir");
    let templates = dir.path().join("templates");
    fs::create_dir_all(templates.join("etc")).expect("mkdir");
    for i in 0..FILES {
        fs::write(
            templates.join(format!("etc/f{i}.conf")),
            format!("{{{{f{i}}}}}"),
        )
        .expect("template");
    }
    let (meta_a, meta_b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    write_metadata(&meta_a, 'A');
    write_metadata(&meta_b, 'B');
    let out = dir.path().join("out");
    let run = |meta: &Path| {
        let mut command = Command::new(&oac);
        command
            .args(["--log-file", "none", "--fallback-metadata", "-t"])
            .arg(&templates)
            .arg("-o")
            .arg(&out)
            .arg("-m")
            .arg(meta)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    assert!(run(&meta_a).status().expect("first run").success());

    // How long a full rewrite takes, to spread the kills over it.
    let started = Instant::now();
    assert!(run(&meta_b).status().expect("timing run").success());
    let full = started.elapsed().max(Duration::from_millis(1));

    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let mut random = Lcg(seed);
    let expected: Vec<[String; 2]> = (0..FILES).map(|i| [body('A', i), body('B', i)]).collect();
    let mut completed = 0;
    for round in 0..KILLS {
        let meta = if round % 2 == 0 { &meta_a } else { &meta_b };
        let mut child = run(meta).spawn().expect("spawn");
        let delay = Duration::from_micros(random.next() % (full.as_micros() as u64 + 1));
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("wait");
        completed += usize::from(status.success());
        for (i, [a, b]) in expected.iter().enumerate() {
            let path = out.join(format!("etc/f{i}.conf"));
            let content = fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "round {round} (seed {seed}): {} unreadable: {e}",
                    path.display()
                )
            });
            assert!(
                content == *a || content == *b,
                "round {round} (seed {seed}): {} holds {} bytes starting {:?}",
                path.display(),
                content.len(),
                &content[..content.len().min(12)]
            );
        }
    }
    eprintln!(
        "{KILLS} kills (seed {seed}, full run {full:?}), {completed} runs finished before the kill"
    );
}

/// A tree larger than the open-file limit is written whole: staged files are not all held
/// open at once.
#[test]
fn more_files_than_descriptors() {
    let oac = os_apply_config();
    let dir = tempfile::tempdir().expect("temp dir");
    let templates = dir.path().join("templates");
    fs::create_dir_all(&templates).expect("mkdir");
    for i in 0..400 {
        fs::write(templates.join(format!("f{i}")), "{{x}}\n").expect("template");
    }
    fs::write(dir.path().join("m.json"), r#"{"x": "y"}"#).expect("metadata");
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -n 128 && exec "$0" --log-file none --fallback-metadata -t "$1" -o "$2" -m "$3""#)
        .arg(&oac)
        .arg(&templates)
        .arg(dir.path().join("out"))
        .arg(dir.path().join("m.json"))
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert!(status.success());
    assert_eq!(
        fs::read_dir(dir.path().join("out")).expect("out").count(),
        400
    );
}
