//! diskimage-builder's element-dependency cases (`tests/fixtures/elementdeps/cases`) over
//! the fixture trees `elements/` and `element-override/`: expected order, set, `--env`
//! output or error text for each.

use std::path::Path;

use dib_core::{env_output, expand, ElementSet};

#[test]
fn element_dependency_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/elementdeps");
    let cases = std::fs::read_to_string(dir.join("cases")).expect("cases");
    let elements_dir = std::fs::canonicalize(dir.join("elements")).expect("elements");
    let override_dir = std::fs::canonicalize(dir.join("element-override")).expect("override");
    let mut failures = Vec::new();
    let mut count = 0;
    for line in cases
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        // Fields are separated by `|`; the expectation keeps trailing blanks (an upstream
        // message ends with one).
        let fields: Vec<&str> = line.splitn(4, '|').collect();
        let [name, requested, path, expected] = fields[..] else {
            panic!("bad case line {line:?}");
        };
        let (name, requested) = (name.trim(), requested.trim());
        let expected = expected.strip_prefix(' ').unwrap_or(expected);
        count += 1;
        let path = match path.trim() {
            "" => format!("{}:{}", override_dir.display(), elements_dir.display()),
            "-" => String::new(),
            custom => custom
                .replace("element-override", &override_dir.display().to_string())
                .replacen("elements", &elements_dir.display().to_string(), 1),
        };
        let requested: Vec<&str> = requested.split_whitespace().collect();
        let got = ElementSet::load(&path).and_then(|set| {
            let elements = expand(&set, &requested)?;
            Ok(if let Some(set_of) = expected.strip_prefix("set: ") {
                let mut names: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
                names.sort_unstable();
                let mut want: Vec<&str> = set_of.split_whitespace().collect();
                want.sort_unstable();
                if names == want {
                    expected.to_owned()
                } else {
                    format!("set: {}", names.join(" "))
                }
            } else if let Some(prefix) = expected.strip_prefix("env: ") {
                let env = env_output(&elements);
                if env.starts_with(prefix) {
                    expected.to_owned()
                } else {
                    format!("env: {env}")
                }
            } else {
                elements
                    .iter()
                    .map(|e| {
                        let origin = if e.path.starts_with(&override_dir) {
                            "O"
                        } else {
                            "E"
                        };
                        format!("{origin}/{}", e.name)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        });
        let got = got.unwrap_or_else(|e| format!("error: {e}"));
        if got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert_eq!(count, 18);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn overrides_are_reported_and_symlinks_keep_their_name() {
    let root = tempfile::tempdir().expect("temp dir");
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    for dir in [&a, &b] {
        std::fs::create_dir_all(dir.join("os")).expect("mkdir");
        std::fs::write(dir.join("os/element-provides"), "operating-system\n").expect("write");
    }
    std::os::unix::fs::symlink(b.join("os"), b.join("alias")).expect("symlink");
    let set = ElementSet::load(&format!("{}:{}", a.display(), b.display())).expect("loads");
    assert_eq!(set.overrides.len(), 1);
    assert_eq!(
        set.overrides[0].winner,
        std::fs::canonicalize(a.join("os")).expect("path")
    );
    let alias = &set.elements["alias"];
    assert_eq!(
        alias.path,
        std::fs::canonicalize(b.join("os")).expect("path")
    );
}
