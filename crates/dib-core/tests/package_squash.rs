//! diskimage-builder's package-installs squash cases (`test_package_squash.py`, 10; the two
//! two-element cases are also checked after their first element), as fixtures in
//! `tests/fixtures/package-squash/<case>/`: `elements/<el>/package-installs.yaml`,
//! `elements-order`, `env` (`KEY=VALUE` lines), and `expected.json` (the full squashed plan,
//! in upstream's JSON layout) or `error` (the message).

use std::collections::HashMap;
use std::path::Path;

use dib_core::package_installs::{read_element, squash};
use dib_core::Element;

#[test]
fn squash_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/package-squash");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let order = std::fs::read_to_string(case.join("elements-order")).expect("order");
        let env: HashMap<String, String> = std::fs::read_to_string(case.join("env"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut lists = Vec::new();
        for element in order.split_whitespace() {
            let element = Element {
                name: element.to_owned(),
                path: case.join("elements").join(element),
                depends: Default::default(),
                provides: Default::default(),
            };
            lists.push((element.name.clone(), read_element(&element).expect("reads")));
        }
        let got = squash(&lists, &|var| env.get(var).cloned());
        match (
            got,
            std::fs::read_to_string(case.join("expected.json")),
            std::fs::read_to_string(case.join("error")),
        ) {
            (Ok(plan), Ok(expected), _) if plan.to_json() == expected => {}
            (Err(e), _, Ok(expected)) if e.to_string().contains(expected.trim()) => {}
            (got, _, _) => failures.push(format!("{name}: got {:?}", got.map(|p| p.to_json()))),
        }
    }
    assert_eq!(cases.len(), 12);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
