//! Data-driven inventory cases: every folder under tests/fixtures/inventory/ holds one input
//! (named as a user would name it; the format is detected from the name, as `inventory::load`
//! does) or `args.txt` (one `setup-baremetal` argument per line), and either `expected.txt`
//! (the nodes and warnings in the text form below) or `expected.error` (the error message).
//!
//! Fixture passwords all start with `pw-`: no message of any case may contain that, and every
//! secret of a parsed node must (so the convention holds). `BAREMETAL_BLESS=1` rewrites the
//! expected files from the current output.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use baremetal::inventory::{self, parse_seed_args, Inventory};
use baremetal::{Node, Value};

const SECRET_MARK: &str = "pw-";

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn input_of(dir: &Path) -> PathBuf {
    let inputs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with("expected.")
        })
        .collect();
    assert_eq!(inputs.len(), 1, "{}: want exactly one input", dir.display());
    inputs.into_iter().next().unwrap()
}

/// A value with secrets shown as `secret "…"`, so that the mapping of passwords is checked.
fn show(v: &Value, secrets: &mut Vec<String>) -> String {
    match v {
        Value::Secret(s) => {
            secrets.push(s.expose().to_owned());
            format!("secret {:?}", s.expose())
        }
        Value::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| show(i, secrets))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k:?}: {}", show(v, secrets)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn render_node(n: &Node, secrets: &mut Vec<String>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "node {}", n.name.as_deref().unwrap_or("-"));
    let _ = writeln!(s, "  uuid: {}", n.uuid);
    let _ = writeln!(s, "  driver: {}", n.driver);
    for (k, v) in [
        ("resource_class", &n.resource_class),
        ("conductor_group", &n.conductor_group),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "  {k}: {v}");
        }
    }
    for (k, v) in &n.interfaces {
        let _ = writeln!(s, "  interfaces.{k}: {v}");
    }
    for (k, v) in &n.driver_info {
        let _ = writeln!(s, "  driver_info.{k}: {}", show(v, secrets));
    }
    let p = &n.properties;
    if let Some(v) = p.cpus {
        let _ = writeln!(s, "  properties.cpus: {v}");
    }
    if let Some(v) = p.memory_mb {
        let _ = writeln!(s, "  properties.memory_mb: {v}");
    }
    if let Some(v) = p.local_gb {
        let _ = writeln!(s, "  properties.local_gb: {v}");
    }
    if let Some(v) = &p.cpu_arch {
        let _ = writeln!(s, "  properties.cpu_arch: {v}");
    }
    if !p.capabilities.is_empty() {
        let _ = writeln!(s, "  properties.capabilities: {}", p.capabilities_string());
    }
    if let Some(rd) = &p.root_device {
        let _ = writeln!(
            s,
            "  properties.root_device: {}",
            show(&Value::Map(rd.clone()), secrets)
        );
    }
    for (k, v) in &p.other {
        let _ = writeln!(s, "  properties.{k}: {}", show(v, secrets));
    }
    for port in &n.ports {
        let _ = write!(s, "  port {}", port.address);
        if !port.pxe_enabled {
            let _ = write!(s, " pxe_enabled=false");
        }
        if let Some(net) = &port.physical_network {
            let _ = write!(s, " physical_network={net}");
        }
        if !port.local_link_connection.is_empty() {
            let llc = Value::Map(port.local_link_connection.clone());
            let _ = write!(s, " local_link_connection={}", show(&llc, secrets));
        }
        if !port.extra.is_empty() {
            let _ = write!(
                s,
                " extra={}",
                show(&Value::Map(port.extra.clone()), secrets)
            );
        }
        s.push('\n');
    }
    for (k, v) in &n.instance_info {
        let _ = writeln!(s, "  instance_info.{k}: {}", show(v, secrets));
    }
    for (k, v) in &n.extra {
        let _ = writeln!(s, "  extra.{k}: {}", show(v, secrets));
    }
    assert_eq!(n.provision_state, baremetal::State::Enroll);
    s
}

fn render(inv: &Inventory, secrets: &mut Vec<String>) -> String {
    let mut s = String::new();
    for n in &inv.nodes {
        s.push_str(&render_node(n, secrets));
    }
    for w in &inv.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

fn run(dir: &Path) -> (String, bool, Vec<String>) {
    let input = input_of(dir);
    let name = input.file_name().unwrap().to_string_lossy().into_owned();
    let result = if name == "args.txt" {
        let text = fs::read_to_string(&input).unwrap();
        let args: Vec<&str> = text.lines().collect();
        parse_seed_args(&args)
    } else {
        inventory::load(&input)
    };
    let mut secrets = Vec::new();
    match result {
        Ok(inv) => {
            let mut messages: Vec<String> = inv.warnings.iter().map(|w| w.to_string()).collect();
            let text = render(&inv, &mut secrets);
            // Debug of the nodes must not show secrets either.
            messages.push(format!("{:?}", inv.nodes));
            for s in &secrets {
                assert!(
                    s.is_empty() || s.starts_with(SECRET_MARK),
                    "{}: fixture secret {s:?} does not start with {SECRET_MARK:?}",
                    dir.display()
                );
            }
            (text, true, messages)
        }
        Err(e) => {
            let text = format!("{e}\n");
            (text.clone(), false, vec![text, format!("{e:?}")])
        }
    }
}

#[test]
fn inventory_cases() {
    let bless = std::env::var_os("BAREMETAL_BLESS").is_some();
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 20, "fixtures missing");
    for dir in all {
        let (got, ok, messages) = run(&dir);
        for m in &messages {
            assert!(
                !m.contains(SECRET_MARK),
                "{}: a password leaked into a message: {m}",
                dir.display()
            );
        }
        let (want_file, other) = if ok {
            ("expected.txt", "expected.error")
        } else {
            ("expected.error", "expected.txt")
        };
        if bless {
            let _ = fs::remove_file(dir.join(other));
            fs::write(dir.join(want_file), &got).unwrap();
            continue;
        }
        match fs::read_to_string(dir.join(want_file)) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{}: {want_file} differs\n--- want\n{want}--- got\n{got}",
                dir.display()
            )),
            Err(_) => failures.push(format!("{}: no {want_file}; got:\n{got}", dir.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn detect_by_name_and_content() {
    use inventory::Format;
    assert_eq!(Format::detect("a.csv", ""), Format::Csv);
    assert_eq!(Format::detect("a.YAML", ""), Format::Bifrost);
    assert_eq!(
        Format::detect("a.json", "{\"nodes\": []}"),
        Format::Instackenv
    );
    assert_eq!(
        Format::detect("a.json", "{\"node-0\": {}}"),
        Format::Bifrost
    );
    assert_eq!(Format::detect("a.json", "{broken"), Format::Instackenv);
    assert_eq!(
        Format::detect("nodes", "# c\n1 2 3 x 52:54:00:00:00:01 seed"),
        Format::Seed
    );
    assert_eq!(
        Format::detect("nodes", "52:54:00:00:00:01,root"),
        Format::Csv
    );
}

#[test]
fn every_problem_is_kept_and_located() {
    let text = r#"{"nodes": [
        {"pm_type": "ipmi", "pm_addr": "192.0.2.1", "ports": [{"address": "52:54:00:00:00:01"}]},
        {"pm_type": "ipmi", "pm_addr": "192.0.2.2", "ports": [{"address": "52:54:00:00:00:02"}]},
        {"pm_type": "ipmi", "ports": [{"address": "zz"}]}
    ]}"#;
    let err = inventory::parse(inventory::Format::Instackenv, "nodes.json", text).unwrap_err();
    let baremetal::Error::Inventory { problems, .. } = &err else {
        panic!("{err:?}")
    };
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "nodes.json: nodes[2].ports[0].address: bad MAC \"zz\"",
            "nodes.json: nodes[2].pm_addr: missing",
        ]
    );
}

#[test]
fn a_password_never_reaches_a_message() {
    // The password lands where a MAC belongs (a shifted column), in a name, and as a BMC
    // address shared by two rows; every message still hides it.
    let text = "\
pw-hunter22,root,pw-hunter22,192.0.2.1,1,8192,512,,,,a
52:54:00:00:00:01,root,pw-other,pw-hunter22,1,8192,512,,,,pw-hunter22
";
    let err = inventory::parse(inventory::Format::Csv, "inventory.csv", text).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter22"), "{shown}");
    assert!(
        shown.contains("inventory.csv:1: bad MAC (value hidden"),
        "{shown}"
    );
}

#[test]
fn re_import_matches_by_uuid_mac_or_bmc() {
    let stored = inventory::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inventory/instackenv-mapping/nodes.json"),
    )
    .unwrap()
    .nodes;
    let text = |body: &str| format!("{{\"nodes\": [{body}]}}");
    let parse = |body: &str| {
        inventory::parse(inventory::Format::Instackenv, "again.json", &text(body))
            .unwrap()
            .nodes
            .remove(0)
    };
    // Same MAC, nothing else alike.
    let by_mac =
        parse(r#"{"pm_type": "manual-management", "ports": [{"address": "52:54:00:aa:bb:04"}]}"#);
    assert_eq!(
        inventory::match_existing(&stored, &by_mac)
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("ctl-1")
    );
    // Same redfish system through another scheme.
    let by_bmc = parse(
        r#"{"pm_type": "redfish", "pm_addr": "192.0.2.10:8000/", "pm_system_id":
            "redfish/v1/Systems/27946b59-9e44-4fa7-8e91-f3527a1ef094"}"#,
    );
    assert_eq!(
        inventory::match_existing(&stored, &by_bmc)
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("compute-0")
    );
    let new = parse(r#"{"pm_type": "ipmi", "pm_addr": "192.0.2.99"}"#);
    assert!(inventory::match_existing(&stored, &new).unwrap().is_none());
    // The MAC of one stored node and the BMC of another.
    let both = parse(
        r#"{"name": "both", "pm_type": "ipmi", "pm_addr": "192.0.2.11",
            "ports": [{"address": "52:54:00:aa:bb:05"}]}"#,
    );
    let err = inventory::match_existing(&stored, &both).unwrap_err();
    assert_eq!(
        err.to_string(),
        "several candidates found for node both: ctl-1, 2815ebff-c237-5d0b-988a-a9b04c19f7a4"
    );
}
