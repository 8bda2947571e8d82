//! The networkd renderer's files read by the real consumer: systemd-networkd started in a
//! private network and mount namespace (its own tmpfs /run, so nothing of the host's is
//! touched) with the rendered files in /run/systemd/network. Any complaint about our files
//! (unknown key or section, unparsable value) fails the test. Skipped without root or
//! without systemd-networkd.

use std::path::Path;
use std::process::Command;

mod support;

use netconfig::nics::{aliases, FixedNics};
use netconfig::{Networkd, Renderer, Severity};

const NETWORKD: &str = "/lib/systemd/systemd-networkd";

const CONFIGS: &[&str] = &[
    // Bond with options and a primary, addresses, DNS, a VLAN on it with DHCP.
    "network_config:
  - type: linux_bond
    name: bond1
    bonding_options: 'mode=802.3ad miimon=100 lacp_rate=fast xmit_hash_policy=layer3+4 updelay=200'
    mtu: 9000
    addresses: [{ip_netmask: 192.0.2.10/24}, {ip_netmask: '2001:db8::10/64'}]
    routes: [{default: true, next_hop: 192.0.2.1, metric: 10}, {default: true, next_hop: '2001:db8::1'}]
    dns_servers: [192.0.2.53, '2001:db8::53']
    domain: [example.com, example.org]
    members:
      - {type: interface, name: em1, primary: true}
      - {type: interface, name: em2}
  - {type: vlan, vlan_id: 20, device: bond1, use_dhcp: true, use_dhcpv6: true}
",
    // Bridge, a dotted VLAN name, route tables by id and by name, rules, on-link routes.
    "network_config:
  - {type: route_table, name: custom, table_id: 200}
  - type: linux_bridge
    name: br-ctlplane
    use_dhcp: true
    defroute: false
    members: [{type: interface, name: em3}]
  - type: interface
    name: em4
    onboot: false
    addresses: [{ip_netmask: 198.51.100.5/24}]
    routes:
      - {ip_netmask: 10.0.0.0/8, next_hop: 198.51.100.1, table: custom, route_options: 'onlink src 198.51.100.5'}
      - {ip_netmask: 10.9.0.0/16, next_hop: self}
      - {ip_netmask: 172.16.0.0/12, next_hop: 198.51.100.1, table: 201, route_options: 'metric 5'}
    rules:
      - {rule: 'iif em4 table custom', comment: replies}
      - {rule: 'add blackhole from 172.19.40.0/24 table 200'}
      - {rule: 'from 198.51.100.0/24 to 10.0.0.0/8 priority 100 lookup 201'}
  - {type: interface, name: em4.30, use_dhcp: true}
",
];

fn facts() -> FixedNics {
    support::nics(&["em1", "em2", "em3", "em4"])
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

#[test]
fn systemd_networkd_accepts_every_rendered_file() {
    if !is_root() || !Path::new(NETWORKD).exists() {
        eprintln!("skipped: needs root and {NETWORKD}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = facts();
    let aliases = aliases(&facts, &[]).expect("aliases");
    let mut count = 0;
    for (index, text) in CONFIGS.iter().enumerate() {
        let root = netconfig::parse(text).expect("parses");
        let found = netconfig::validate(&root);
        assert!(
            !found.iter().any(|d| d.severity == Severity::Error),
            "config {index}: {found:?}"
        );
        let config = netconfig::network_config(&root, &aliases);
        for file in Networkd.render(&config, &facts).expect("renders") {
            let name = Path::new(&file.path).file_name().expect("name").to_owned();
            let target = dir
                .path()
                .join(format!("{index}-{}", name.to_string_lossy()));
            std::fs::write(target, &file.content).expect("write");
            count += 1;
        }
    }
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/network && \
         cp {dir}/* /run/systemd/network/ && \
         SYSTEMD_LOG_LEVEL=info SYSTEMD_LOG_TARGET=console timeout 2 {NETWORKD}; true",
        dir = dir.path().display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--fork", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log.contains("Enumeration completed"),
        "networkd did not start:\n{log}"
    );
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/run/systemd/network/"))
        .collect();
    assert!(
        complaints.is_empty(),
        "networkd complained about {count} files:\n{}",
        complaints.join("\n")
    );
    eprintln!("systemd-networkd read {count} rendered files without a complaint");
}
