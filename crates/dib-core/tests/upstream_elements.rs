//! Differential: element expansion against upstream diskimage-builder 3.43.0 (the pinned
//! peer in `$DIB_UPSTREAM_VENV`, installed by the test script) over all of its bundled
//! elements, each requested together with an OS element: the same set of elements, or both
//! fail. Skipped when the peer is not installed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use dib_core::{expand, ElementSet};

const OS_ELEMENT: &str = "debian-minimal";

#[test]
fn bundled_elements_expand_as_upstream() {
    let Some(venv) = std::env::var_os("DIB_UPSTREAM_VENV").map(PathBuf::from) else {
        eprintln!("skipped: DIB_UPSTREAM_VENV not set");
        return;
    };
    let python = venv.join("bin/python");
    let site = Command::new(&python)
        .args([
            "-c",
            "import diskimage_builder, os; print(os.path.dirname(diskimage_builder.__file__))",
        ])
        .output()
        .expect("peer python");
    let elements = PathBuf::from(String::from_utf8_lossy(&site.stdout).trim()).join("elements");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/upstream_expand.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(OS_ELEMENT)
        .env("ELEMENTS_PATH", &elements)
        .output()
        .expect("upstream expansion");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let upstream: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let set = ElementSet::load(&elements.to_string_lossy()).expect("loads");
    assert_eq!(upstream.len(), set.elements.len(), "element counts differ");
    let mut failures = Vec::new();
    let mut both_failed = 0;
    for (name, theirs) in &upstream {
        let requested: Vec<&str> = if name == OS_ELEMENT {
            vec![name]
        } else {
            vec![name, OS_ELEMENT]
        };
        let ours = match expand(&set, &requested) {
            Ok(found) => {
                let mut names: Vec<&str> = found.iter().map(|e| e.name.as_str()).collect();
                names.sort_unstable();
                names.join(" ")
            }
            Err(e) => format!("!{e}"),
        };
        match (ours.starts_with('!'), theirs.starts_with('!')) {
            (true, true) => both_failed += 1,
            (false, false) if ours == *theirs => {}
            _ => failures.push(format!("{name}:\n  ours:     {ours}\n  upstream: {theirs}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        upstream.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} elements expanded as upstream ({both_failed} fail on both sides)",
        upstream.len()
    );
}
