//! The run-parts engine: pure selection and ordering of a large listing, and one real run of
//! 50 trivial hooks next to a plain `sh` loop over the same hooks (the floor the engine is
//! measured against; `scripts/bench-refresh-config.sh` prints the ratio and upstream's).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion};
use refresh_config::{
    run_parts, select_hooks, Entry, EntryKind, NameFilter, ProcessRunner, RunPartsOptions,
};

fn listing(n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            name: OsString::from(match i % 4 {
                0 => format!("{i}-hook"),
                1 => format!("{:05}-padded", i),
                2 => format!("name-{i}"),
                _ => format!("{i}-dotted.sh"),
            }),
            kind: EntryKind::File {
                executable: i % 7 != 0,
            },
        })
        .collect()
}

fn selection(c: &mut Criterion) {
    let entries = listing(1000);
    c.bench_function("select_hooks/1000 entries", |b| {
        b.iter(|| select_hooks(&entries, &NameFilter::Default))
    });
}

fn execution(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let hooks = dir.path().join("configure.d");
    fs::create_dir(&hooks).expect("mkdir");
    for i in 0..50 {
        let path = hooks.join(format!("{i:02}-hook"));
        fs::write(&path, "#!/bin/sh\nexit 0\n").expect("write hook");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut group = c.benchmark_group("50 trivial hooks");
    group.sample_size(20);
    group.bench_function("plain sh loop", |b| {
        b.iter(|| {
            let status = Command::new("sh")
                .arg("-c")
                .arg(r#"for hook in "$0"/*; do "$hook" || exit; done"#)
                .arg(&hooks)
                .status()
                .expect("sh");
            assert!(status.success());
        })
    });
    group.bench_function("run_parts", |b| {
        let mut runner = ProcessRunner::new();
        let options = RunPartsOptions::default();
        b.iter(|| {
            let report = run_parts(&hooks, &options, &mut runner, &mut |_| {}).expect("run");
            assert!(report.succeeded());
        })
    });
    group.finish();
}

criterion_group!(benches, selection, execution);
criterion_main!(benches);
