//! Snapshot cases of the boot renderers: every folder under tests/fixtures/boot/ holds
//! `case.txt` (`key = value` lines, `#` comments; `host` may repeat) and `expected.txt` (what
//! was rendered) or `expected.error`. `BAREMETAL_BLESS=1` rewrites the expected files.
//!
//! `render` chooses what is rendered: `node` (every entry of one node's boot root, files in
//! full), `boot.ipxe`, `grub-master`, `dnsmasq` (the configuration file) or `dnsmasq-args`.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use baremetal::boot::dnsmasq::{hosts_for, BootFlow, DhcpHost, DhcpRange, DnsmasqConfig, Lease};
use baremetal::boot::{
    boot_ipxe, grub_master, node_entries, BootSettings, BootTarget, Entry, Instance, Loader,
    NodeBoot,
};
use baremetal::{Error, MacAddress};

struct Case {
    dir: PathBuf,
    pairs: Vec<(String, String)>,
}

impl Case {
    fn load(dir: &Path) -> Case {
        let text = fs::read_to_string(dir.join("case.txt")).unwrap();
        let pairs = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{}: bad line {l:?}", dir.display()));
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Case {
            dir: dir.to_owned(),
            pairs,
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn settings(&self) -> BootSettings {
        let mut s = BootSettings::default();
        if let Some(v) = self.get("tftp_root") {
            s.tftp_root = v.to_owned();
        }
        if let Some(v) = self.get("append") {
            s.append = v.to_owned();
        }
        s.http_url = self.get("http_url").map(str::to_owned);
        s.tftp_server = self.get("tftp_server").map(str::to_owned);
        s.ipa_api_url = self.get("ipa_api_url").map(str::to_owned);
        s.request_id = self.get("request_id").map(str::to_owned);
        s.grub_efi_commands = self.get("grub_efi_commands") == Some("true");
        s.ipxe_timeout_ms = self.get("ipxe_timeout_ms").map(|v| v.parse().unwrap());
        s
    }

    fn node(&self) -> (Loader, NodeBoot) {
        let loader = match self.get("loader").unwrap() {
            "pxelinux" => Loader::Pxelinux,
            "ipxe" => Loader::Ipxe,
            "grub" => Loader::Grub,
            other => panic!("loader {other}"),
        };
        let instance = self.get("instance").map(|v| {
            let mut words = v.splitn(3, ' ');
            match words.next().unwrap() {
                "whole-disk" => Instance::WholeDisk {
                    disk_id: words.next().map(str::to_owned),
                },
                "partition" => Instance::Partition {
                    root: words.next().unwrap().to_owned(),
                    append: words.next().unwrap_or("").to_owned(),
                },
                other => panic!("instance {other}"),
            }
        });
        let boot = NodeBoot {
            uuid: self.get("uuid").unwrap().parse().unwrap(),
            macs: self
                .get("macs")
                .unwrap_or("")
                .split_whitespace()
                .map(|m| MacAddress::parse(m).unwrap())
                .collect(),
            instance,
            target: match self.get("target") {
                Some("instance") => BootTarget::Instance,
                _ => BootTarget::Deploy,
            },
        };
        (loader, boot)
    }

    fn dnsmasq(&self) -> DnsmasqConfig {
        let lease = |v: &str| match v {
            "infinite" => Lease::Infinite,
            s => Lease::Seconds(s.parse().unwrap()),
        };
        let r: Vec<&str> = self.get("range").unwrap().split_whitespace().collect();
        let range = DhcpRange {
            start: r[0].parse().unwrap(),
            end: r[1].parse().unwrap(),
            netmask: (r.len() == 4).then(|| r[2].parse().unwrap()),
            lease: lease(r[r.len() - 1]),
        };
        let flow = match self.get("flow").unwrap().split_once(' ') {
            Some(("ipxe", url)) => BootFlow::ipxe(url),
            None if self.get("flow") == Some("pxe") => BootFlow::pxe(),
            other => panic!("flow {other:?}"),
        };
        let mut hosts = Vec::new();
        if let Some(inv) = self.get("hosts_from") {
            let parsed = baremetal::inventory::load(&self.dir.join(inv)).unwrap();
            hosts.extend(hosts_for(&parsed.nodes, self.get("host_lease").map(lease)));
        }
        for h in self.all("host") {
            let words: Vec<&str> = h.split_whitespace().collect();
            let mut host = DhcpHost {
                mac: MacAddress::parse(words[0]).unwrap(),
                ip: None,
                name: None,
                lease: None,
                ignore: false,
            };
            for w in &words[1..] {
                if *w == "ignore" {
                    host.ignore = true;
                } else if let Ok(ip) = w.parse::<Ipv4Addr>() {
                    host.ip = Some(ip);
                } else if let Some(l) = w.strip_prefix("lease:") {
                    host.lease = Some(lease(l));
                } else {
                    host.name = Some((*w).to_owned());
                }
            }
            hosts.push(host);
        }
        DnsmasqConfig {
            interface: self.get("interface").unwrap().to_owned(),
            range,
            server: self.get("server").unwrap().parse().unwrap(),
            flow,
            tftp_root: self.get("tftp_root").map(str::to_owned),
            hosts,
            known_only: self.get("known_only") == Some("true"),
            hostsdir: self.get("hostsdir").map(str::to_owned),
            leasefile: self.get("leasefile").map(str::to_owned),
            log_dhcp: self.get("log_dhcp") == Some("true"),
        }
    }

    fn render(&self) -> Result<String, Error> {
        match self.get("render").unwrap() {
            "node" => {
                let (loader, boot) = self.node();
                let mut out = String::new();
                for e in node_entries(loader, &self.settings(), &boot)? {
                    match e {
                        Entry::File { path, contents } => {
                            let _ = write!(out, "== file {path}\n{contents}");
                        }
                        Entry::Link { path, target } => {
                            let _ = writeln!(out, "== link {path} -> {target}");
                        }
                        Entry::Image { path, role } => {
                            let _ = writeln!(out, "== image {path} ({role:?})");
                        }
                    }
                }
                Ok(out)
            }
            "boot.ipxe" => boot_ipxe(&self.settings()),
            "grub-master" => Ok(grub_master(&self.settings())),
            "dnsmasq" => self.dnsmasq().render(),
            "dnsmasq-args" => Ok(self.dnsmasq().args()?.join("\n") + "\n"),
            other => panic!("render {other}"),
        }
    }
}

#[test]
fn boot_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/boot");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "fixtures missing");
    let bless = std::env::var_os("BAREMETAL_BLESS").is_some();
    let mut failures = Vec::new();
    for dir in dirs {
        let case = Case::load(&dir);
        let (got, file, other) = match case.render() {
            Ok(text) => (text, "expected.txt", "expected.error"),
            Err(e) => (format!("{e}\n"), "expected.error", "expected.txt"),
        };
        if bless {
            let _ = fs::remove_file(dir.join(other));
            fs::write(dir.join(file), &got).unwrap();
            continue;
        }
        match fs::read_to_string(dir.join(file)) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{}: {file} differs\n--- want\n{want}--- got\n{got}",
                dir.display()
            )),
            Err(_) => failures.push(format!("{}: no {file}; got:\n{got}", dir.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
