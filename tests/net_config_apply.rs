//! `os-net-config` applying for real, inside a network namespace the test creates (and the
//! kernel deletes with its last process): veth pairs stand in for the NICs (this kernel has no
//! dummy links), a fake sysfs names them as NICs. Checks the live state after an apply, that
//! an unchanged second apply touches nothing, and that a failing apply (a route through an
//! unreachable gateway) rolls back both the files and the live state. Skipped without root.

mod common;

use std::fs;
use std::process::Command;

const GOOD: &str = "network_config:
  - type: interface
    name: em1
    mtu: 1400
    addresses: [{ip_netmask: 192.0.2.5/24}]
    routes: [{ip_netmask: 10.0.0.0/8, next_hop: 192.0.2.1}]
  - type: linux_bridge
    name: br0
    addresses: [{ip_netmask: 198.51.100.5/24}]
    members: [{type: interface, name: em2}]
";

const BAD: &str = "network_config:
  - type: interface
    name: em1
    mtu: 1500
    addresses: [{ip_netmask: 192.0.2.6/24}]
    routes: [{ip_netmask: 10.9.0.0/16, next_hop: 203.0.113.1}]
  - type: linux_bridge
    name: br0
    addresses: [{ip_netmask: 198.51.100.5/24}]
    members: [{type: interface, name: em2}]
";

#[test]
fn apply_verifies_and_rolls_back_in_a_namespace() {
    if !common::is_root() {
        eprintln!("skipped: needs root for a network namespace");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    for (i, name) in ["em1", "em2"].iter().enumerate() {
        let nic = d.join("sys/class/net").join(name);
        fs::create_dir_all(nic.join("device")).expect("mkdir");
        fs::write(nic.join("address"), format!("52:54:00:00:00:0{}\n", i + 1)).expect("mac");
        fs::write(nic.join("operstate"), "up\n").expect("state");
    }
    fs::create_dir_all(d.join("root/etc/sysconfig/network-scripts")).expect("mkdir");
    fs::write(d.join("good.yaml"), GOOD).expect("good");
    fs::write(d.join("bad.yaml"), BAD).expect("bad");
    let onc = common::example("os-net-config");
    // One shell in a fresh network namespace runs every step and prints the state between.
    let script = format!(
        r#"set -u
ip link add em1 type veth peer name em1p && ip link add em2 type veth peer name em2p || exit 99
run() {{ {onc} --sysfs-root {d} -c {d}/$1 -p ifcfg -r {d}/root --detailed-exit-codes >/dev/null 2>{d}/$1.err; echo "rc=$?"; }}
state() {{ echo "== $1"; ip -o -4 addr show | awk '{{print $2, $4}}' | sort; ip -o link show | grep -o '^[0-9]*: [a-z0-9]*\|mtu [0-9]*\|master [a-z0-9]*' | paste -sd' ' ; ip route show | grep via | sort; }}
run good.yaml; state good
run good.yaml; state again
run bad.yaml; state bad
"#,
        onc = onc.display(),
        d = d.display()
    );
    let out = Command::new("unshare")
        .args(["--net", "--fork", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_ne!(
        out.status.code(),
        Some(99),
        "cannot create veth links:\n{stdout}"
    );
    let section = |name: &str| {
        stdout
            .split("== ")
            .find(|s| s.starts_with(name))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("rc="))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let rcs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rc=")).collect();
    let errors = |f: &str| fs::read_to_string(d.join(f)).unwrap_or_default();
    assert_eq!(
        rcs,
        ["rc=2", "rc=0", "rc=4"],
        "{stdout}\n{}{}",
        errors("good.yaml.err"),
        errors("bad.yaml.err")
    );
    let good = section("good");
    for expected in [
        "em1 192.0.2.5/24",
        "br0 198.51.100.5/24",
        "10.0.0.0/8 via 192.0.2.1 dev em1",
    ] {
        assert!(good.contains(expected), "missing {expected:?} in\n{good}");
    }
    assert!(
        good.contains("em1: mtu 1400")
            || good.contains("em1 mtu 1400")
            || good.contains("mtu 1400"),
        "{good}"
    );
    assert!(good.contains("master br0"), "em2 not enslaved:\n{good}");
    // Unchanged: same state, nothing reconfigured.
    assert_eq!(
        section("again").replace("again", ""),
        good.replace("good", "")
    );
    // The failed apply left the state and the files as they were.
    assert_eq!(
        section("bad").replace("bad", ""),
        good.replace("good", ""),
        "{}",
        errors("bad.yaml.err")
    );
    let ifcfg =
        fs::read_to_string(d.join("root/etc/sysconfig/network-scripts/ifcfg-em1")).expect("ifcfg");
    assert!(
        ifcfg.contains("IPADDR=192.0.2.5\n") && ifcfg.contains("MTU=1400\n"),
        "{ifcfg}"
    );
    assert!(
        !d.join("root/etc/sysconfig/network-scripts/route-em1")
            .exists()
            || fs::read_to_string(d.join("root/etc/sysconfig/network-scripts/route-em1"))
                .expect("route")
                .contains("10.0.0.0/8")
    );
    assert!(
        errors("bad.yaml.err").contains("rolled back"),
        "{}",
        errors("bad.yaml.err")
    );
}
