//! The `baremetal` tool end to end: import an inventory, drive real reference BMCs on
//! 127.0.0.1 (sushy-tools' Redfish emulator, pyghmi's IPMI BMC through ipmitool), walk nodes
//! through Ironic's states, and fail cleanly: malformed inventories, wrong passwords (never
//! shown anywhere), BMCs that never answer (the node ends in a clear error state).

mod common;
#[path = "../crates/baremetal/tests/peers/mod.rs"]
mod peers;

use std::path::Path;
use std::process::Command;

use peers::{ipmitool_power, start_fakebmc, start_sushy, sushy_system, NODE0, NODE2, PASSWORD};
use serde_json::Value;

const WRONG: &str = "not-the-Pa55word-4471";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn baremetal(state: &Path, args: &[&str]) -> Run {
    let out = Command::new(common::example("baremetal"))
        .arg("--state-dir")
        .arg(state)
        // Short waits for the emulators (sushy applies resets 1-11 s late).
        .args(["--power-timeout", "40", "--command-timeout", "5"])
        .args(["--bmc-min-interval", "0.05"])
        .args(args)
        .output()
        .expect("run baremetal");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(state: &Path, args: &[&str]) -> String {
    let run = baremetal(state, args);
    assert_eq!(
        run.code, 0,
        "baremetal {args:?}\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// Writes `{"nodes": NODES}` (an instackenv/nodes.json inventory) as `dir/name`.
fn write_inventory(dir: &Path, name: &str, nodes: Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::json!({ "nodes": nodes }).to_string()).unwrap();
    path
}

fn show(state: &Path, node: &str) -> Value {
    serde_json::from_str(&ok(state, &["node", "show", node, "-f", "json"])).unwrap()
}

#[test]
fn enroll_power_boot_and_deploy_against_real_bmcs() {
    let sushy = start_sushy(None);
    let bmc = start_fakebmc();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let inventory = write_inventory(
        dir.path(),
        "instackenv.json",
        serde_json::json!([
            {"name": "rf-0", "pm_type": "redfish", "pm_addr": sushy.origin,
             "pm_system_id": format!("/redfish/v1/Systems/{NODE0}"),
             "pm_user": "admin", "pm_password": PASSWORD,
             "ports": [{"address": "52:54:00:aa:bb:01"}],
             "cpu": 2, "memory": 2048, "disk": 20, "arch": "x86_64"},
            {"name": "ipmi-0", "pm_type": "ipmi", "pm_addr": "127.0.0.1", "pm_port": bmc.port,
             "pm_user": "admin", "pm_password": PASSWORD,
             "mac": ["52:54:00:aa:cc:01"]},
            {"name": "rf-2", "pm_type": "redfish", "pm_addr": sushy.origin,
             "pm_system_id": format!("/redfish/v1/Systems/{NODE2}"),
             "pm_user": "admin", "pm_password": PASSWORD},
        ]),
    );
    let imported = ok(&state, &["node", "import", inventory.to_str().unwrap()]);
    assert_eq!(
        imported,
        "ipmi-0: enrolled\nrf-0: enrolled\nrf-2: enrolled\n"
    );
    // Importing again updates, never duplicates.
    let again = ok(&state, &["node", "import", inventory.to_str().unwrap()]);
    assert_eq!(again, "ipmi-0: updated\nrf-0: updated\nrf-2: updated\n");

    let list: Value = serde_json::from_str(&ok(&state, &["node", "list", "-f", "json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"rf-0") && names.contains(&"ipmi-0") && names.contains(&"rf-2"));
    let rf = show(&state, "rf-0");
    assert_eq!(rf["driver_info"]["redfish_password"], "******");
    assert_eq!(rf["provision_state"], "enroll");

    // Both BMCs at once.
    ok(&state, &["node", "manage", "rf-0", "ipmi-0", "rf-2"]);

    // Out-of-band inspection: Redfish reports node-2's NICs, which become its ports; IPMI
    // cannot inspect, so only its answer is checked.
    ok(&state, &["node", "inspect", "rf-2", "ipmi-0"]);
    let rf2 = show(&state, "rf-2");
    assert_eq!(rf2["provision_state"], "manageable");
    let ports: Vec<&str> = rf2["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["address"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["52:54:00:aa:bb:03", "52:54:00:aa:bc:03"]);
    let ipmi = show(&state, "ipmi-0");
    assert_eq!(ipmi["provision_state"], "manageable");
    assert!(ipmi["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["message"]
            .as_str()
            .unwrap()
            .ends_with("out-of-band inspection is not supported")));
    ok(&state, &["node", "power", "on", "rf-0", "ipmi-0"]);
    assert_eq!(sushy_system(&sushy.origin, NODE0)["PowerState"], "On");
    assert_eq!(ipmitool_power(bmc.port), "Chassis Power is on");
    assert_eq!(show(&state, "ipmi-0")["power_state"], "power on");
    assert_eq!(
        ok(&state, &["node", "power", "status", "rf-0"]),
        "rf-0: power on\n"
    );
    ok(&state, &["node", "power", "off", "ipmi-0"]);
    assert_eq!(ipmitool_power(bmc.port), "Chassis Power is off");

    ok(
        &state,
        &[
            "node",
            "boot-device",
            "set",
            "ipmi-0",
            "pxe",
            "--persistent",
        ],
    );
    assert!(bmc.peer.output().contains("EVENT set_boot_device network"));
    let boot: Value = serde_json::from_str(&ok(
        &state,
        &["node", "boot-device", "show", "ipmi-0", "-f", "json"],
    ))
    .unwrap();
    assert_eq!(boot["boot_device"], "pxe");

    // manageable → available → (deploy) wait call-back: PXE next boot, machine rebooted.
    ok(&state, &["node", "provide", "rf-0"]);
    assert_eq!(show(&state, "rf-0")["provision_state"], "available");
    let refused = baremetal(&state, &["node", "deploy", "rf-0"]);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr,
        "baremetal: error: node rf-0: instance_info: cannot deploy: image_source is missing\n"
    );
    ok(
        &state,
        &[
            "node",
            "set",
            "rf-0",
            "--instance-info",
            "image_source=http://127.0.0.1/image.qcow2",
        ],
    );
    ok(&state, &["node", "deploy", "rf-0"]);
    let rf = show(&state, "rf-0");
    assert_eq!(rf["provision_state"], "wait call-back");
    assert_eq!(rf["target_provision_state"], "active");
    let system = sushy_system(&sushy.origin, NODE0);
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(system["PowerState"], "On");

    // An invalid verb is refused with Ironic's wording and changes nothing.
    let refused = baremetal(&state, &["node", "provide", "rf-0"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.starts_with(
            "baremetal: error: the requested action \"provide\" can not be performed on node \""
        ) && refused
            .stderr
            .ends_with("\" while it is in state \"wait call-back\"\n"),
        "{}",
        refused.stderr
    );
    ok(&state, &["node", "abort", "rf-0"]);
    assert_eq!(show(&state, "rf-0")["provision_state"], "deploy failed");
    ok(&state, &["node", "undeploy", "rf-0"]);
    let rf = show(&state, "rf-0");
    assert_eq!(rf["provision_state"], "available");
    assert_eq!(rf["power_state"], "power off");
    assert_eq!(sushy_system(&sushy.origin, NODE0)["PowerState"], "Off");
}

#[test]
fn wrong_password_is_a_clear_error_and_never_shown() {
    let sushy = start_sushy(None);
    let bmc = start_fakebmc();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let inventory = write_inventory(
        dir.path(),
        "nodes.json",
        serde_json::json!([
            {"name": "rf-bad", "pm_type": "redfish", "pm_addr": sushy.origin,
             "pm_system_id": format!("/redfish/v1/Systems/{NODE2}"),
             "pm_user": "admin", "pm_password": WRONG},
            {"name": "ipmi-bad", "pm_type": "ipmi", "pm_addr": "127.0.0.1", "pm_port": bmc.port,
             "pm_user": "admin", "pm_password": WRONG},
        ]),
    );
    let mut seen = ok(
        &state,
        &["-vv", "node", "import", inventory.to_str().unwrap()],
    );
    for node in ["rf-bad", "ipmi-bad"] {
        let run = baremetal(&state, &["-vv", "node", "manage", node]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let last = run.stderr.lines().last().unwrap();
        assert!(last.starts_with(&format!(
            "baremetal: error: node {node}: the BMC does not answer: "
        )));
        assert!(last.contains("authentication failed"), "{last}");
        assert!(last.ends_with("(now \"enroll\")"), "{last}");
        let shown = show(&state, node);
        assert_eq!(shown["provision_state"], "enroll");
        assert!(shown["last_error"]
            .as_str()
            .unwrap()
            .contains("authentication failed"));
        let power = baremetal(&state, &["-vv", "node", "power", "on", node]);
        assert_eq!(power.code, 1);
        seen += &run.stdout;
        seen += &run.stderr;
        seen += &power.stdout;
        seen += &power.stderr;
        seen += &shown.to_string();
        seen += &ok(&state, &["node", "show", node]);
    }
    seen += &ok(&state, &["node", "list", "-f", "json"]);
    seen += &sushy.peer.output();
    seen += &bmc.peer.output();
    assert!(!seen.contains(WRONG), "the password leaked:\n{seen}");
    assert!(!seen.contains(PASSWORD));
    // The BMCs were never changed.
    assert_eq!(sushy_system(&sushy.origin, NODE2)["PowerState"], "Off");
    assert_eq!(ipmitool_power(bmc.port), "Chassis Power is off");
}

#[test]
fn a_bmc_that_never_answers_leaves_a_clear_error_state() {
    // A UDP port nobody listens on, and a TCP port that accepts and never answers.
    let silent_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = silent_udp.local_addr().unwrap().port();
    let tcp_port = peers::silent_tcp_bmc();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let inventory = write_inventory(
        dir.path(),
        "nodes.json",
        serde_json::json!([
            {"name": "dead-ipmi", "pm_type": "ipmi", "pm_addr": "127.0.0.1", "pm_port": udp_port,
             "pm_user": "admin", "pm_password": PASSWORD},
            {"name": "dead-redfish", "pm_type": "redfish",
             "pm_addr": format!("http://127.0.0.1:{tcp_port}"),
             "pm_system_id": "/redfish/v1/Systems/1",
             "pm_user": "admin", "pm_password": PASSWORD},
        ]),
    );
    ok(&state, &["node", "import", inventory.to_str().unwrap()]);
    let run = baremetal(
        &state,
        &[
            "--command-timeout",
            "2",
            "node",
            "power",
            "on",
            "dead-ipmi",
            "dead-redfish",
        ],
    );
    assert_eq!(run.code, 1);
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{}", run.stderr);
    for (line, node) in errors.iter().zip(["dead-ipmi", "dead-redfish"]) {
        assert!(
            line.starts_with(&format!(
                "baremetal: error: node {node}: power status failed after "
            )),
            "{line}"
        );
    }
    for node in ["dead-ipmi", "dead-redfish"] {
        let shown = show(&state, node);
        assert_eq!(shown["power_state"], Value::Null);
        assert_eq!(shown["target_power_state"], Value::Null);
        assert!(shown["last_error"]
            .as_str()
            .unwrap()
            .starts_with("power on failed: power status failed after "));
        let history = shown["history"].as_array().unwrap();
        assert_eq!(history.last().unwrap()["severity"], "error");
    }
    // manage: verifying fails back to enroll, saying why.
    let run = baremetal(
        &state,
        &["--command-timeout", "1", "node", "manage", "dead-ipmi"],
    );
    assert_eq!(run.code, 1);
    let shown = show(&state, "dead-ipmi");
    assert_eq!(shown["provision_state"], "enroll");
    assert!(shown["last_error"]
        .as_str()
        .unwrap()
        .starts_with("the BMC does not answer: "));
    drop(silent_udp);
}

#[test]
fn malformed_inventories_name_the_line_or_field() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (file, text, expected) in [
        (
            "nodes.json",
            "{\"nodes\": [{\"pm_type\": \"ipmi\", \"pm_user\": \"admin\", \"pm_password\": \"hunter2\"}]}",
            "baremetal: error: nodes.json: nodes[0].pm_addr: missing",
        ),
        (
            "broken.json",
            "{\"nodes\": [\n  {\"pm_type\": \"ipmi\",,}\n]}",
            "baremetal: error: broken.json:2:",
        ),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let run = baremetal(&state, &["node", "import", path.to_str().unwrap()]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(run.stderr.starts_with(expected), "{}", run.stderr);
        assert!(!run.stderr.contains("hunter2"));
        // Nothing was enrolled.
        assert_eq!(ok(&state, &["node", "list", "-f", "json"]).trim(), "[]");
    }
}

#[test]
fn a_second_process_is_refused_while_the_first_works_on_a_node() {
    // A BMC that accepts connections and never answers keeps the first process busy.
    let port = peers::silent_tcp_bmc();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let inventory = write_inventory(
        dir.path(),
        "nodes.json",
        serde_json::json!([
            {"name": "slow", "pm_type": "redfish", "pm_addr": format!("http://127.0.0.1:{port}"),
             "pm_system_id": "/redfish/v1/Systems/1", "pm_user": "admin", "pm_password": PASSWORD},
        ]),
    );
    ok(&state, &["node", "import", inventory.to_str().unwrap()]);
    let first = Command::new(common::example("baremetal"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--command-timeout", "8", "node", "power", "on", "slow"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first process holds the node.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let holder = loop {
        if let Some(holder) = show(&state, "slow")["reservation"].as_str() {
            break holder.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "never reserved");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(holder.contains(&format!(":{}:", first.id())), "{holder}");
    let second = baremetal(&state, &["node", "power", "off", "slow"]);
    assert_eq!(second.code, 1);
    assert_eq!(
        second.stderr,
        format!(
            "baremetal: error: node slow is locked by {holder}, please retry after the current \
             operation is completed\n"
        )
    );
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(1));
    // Released when the first one gave up.
    let node = show(&state, "slow");
    assert_eq!(node["reservation"], Value::Null);
    assert!(node["last_error"]
        .as_str()
        .unwrap()
        .starts_with("power on failed: "));
}
