//! dnsmasq as the provisioning network's DHCP and TFTP server (spec §3.3–3.4), rendered as a
//! configuration file ([`DnsmasqConfig::render`]) or as command-line options
//! ([`DnsmasqConfig::args`]).
//!
//! Clients are told apart as the spec's observations show dnsmasq doing it: `efi` for
//! client-arch 7 and 9 (x64 UEFI; firmware disagree on which), `ipxe` for option 175 or user
//! class `iPXE`. The first matching `dhcp-boot` line wins, so iPXE's own request gets the
//! script URL, UEFI firmware gets the UEFI binary, and everything else the BIOS one.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;

use crate::node::{MacAddress, Node, Value};
use crate::Error;

/// A DHCP lease time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Seconds(u32),
    Infinite,
}

/// dnsmasq's minimum lease.
const MIN_LEASE: u32 = 120;

impl fmt::Display for Lease {
    /// `12h`, `30m`, `150`, `infinite`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Lease::Infinite => f.write_str("infinite"),
            Lease::Seconds(s) if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            Lease::Seconds(s) if s % 60 == 0 => write!(f, "{}m", s / 60),
            Lease::Seconds(s) => write!(f, "{s}"),
        }
    }
}

/// The dynamic pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    /// Always written in dotted form: a bare number in that field is a lease time to dnsmasq.
    pub netmask: Option<Ipv4Addr>,
    pub lease: Lease,
}

/// Which boot files the firmware and iPXE are handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFlow {
    /// PXELINUX for BIOS, a GRUB/shim binary for UEFI, both by TFTP.
    Pxe { bios: String, uefi: String },
    /// iPXE binaries by TFTP, then iPXE fetches `script_url` (`…/boot.ipxe`) by HTTP.
    Ipxe {
        bios: String,
        uefi: String,
        script_url: String,
    },
}

impl BootFlow {
    /// `pxelinux.0` and `bootx64.efi`, Ironic's defaults.
    pub fn pxe() -> BootFlow {
        BootFlow::Pxe {
            bios: "pxelinux.0".to_owned(),
            uefi: "bootx64.efi".to_owned(),
        }
    }

    /// `undionly.kpxe` and `snponly.efi` (which uses the firmware's NIC driver, where
    /// `ipxe.efi` finds no network on some NICs), then `script_url`.
    pub fn ipxe(script_url: impl Into<String>) -> BootFlow {
        BootFlow::Ipxe {
            bios: "undionly.kpxe".to_owned(),
            uefi: "snponly.efi".to_owned(),
            script_url: script_url.into(),
        }
    }
}

/// A reservation (`dhcp-host=MAC,IP,NAME,LEASE`) or a refusal (`dhcp-host=MAC,ignore`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    pub mac: MacAddress,
    pub ip: Option<Ipv4Addr>,
    pub name: Option<String>,
    pub lease: Option<Lease>,
    /// Never answer this MAC (a node being torn down).
    pub ignore: bool,
}

impl DhcpHost {
    /// The `dhcp-host` value.
    pub fn value(&self) -> String {
        if self.ignore {
            return format!("{},ignore", self.mac);
        }
        let mut parts = vec![self.mac.to_string()];
        parts.extend(self.ip.map(|ip| ip.to_string()));
        parts.extend(self.name.clone());
        parts.extend(self.lease.map(|l| l.to_string()));
        parts.join(",")
    }
}

impl DhcpHost {
    /// The file for a `dhcp-hostsdir` folder, which dnsmasq re-reads on change without a
    /// signal: (`52-54-00-aa-bb-01.conf`, the `dhcp-host` value and a newline). Writing the
    /// `ignore` form over it on teardown stops answering that MAC.
    pub fn hostsdir_file(&self) -> (String, String) {
        (
            format!("{}.conf", self.mac.hyphenated()),
            format!("{}\n", self.value()),
        )
    }
}

/// Reservations for nodes, as bifrost makes them: the first PXE MAC of each node gets its
/// `provisioning_ipv4_address` (from `extra`) and its name when that is a valid host name;
/// further PXE MACs are made known without an address.
pub fn hosts_for(nodes: &[Node], lease: Option<Lease>) -> Vec<DhcpHost> {
    let mut out = Vec::new();
    for node in nodes {
        for (i, mac) in node.pxe_macs().into_iter().enumerate() {
            let first = i == 0;
            let ip = node
                .extra
                .get("provisioning_ipv4_address")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .filter(|_| first);
            let name = node.name.clone().filter(|n| first && is_host_name(n));
            out.push(DhcpHost {
                mac,
                ip,
                name,
                lease,
                ignore: false,
            });
        }
    }
    out
}

/// A DNS label: letters, digits and inner hyphens, at most 63 characters.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqConfig {
    /// Bound alone (`bind-interfaces`), never the wildcard.
    pub interface: String,
    pub range: DhcpRange,
    /// This server's address on the interface: BOOTP `siaddr` and server name of boot files.
    pub server: Ipv4Addr,
    pub flow: BootFlow,
    /// Serve TFTP from this folder (`enable-tftp`), or leave TFTP to another server.
    pub tftp_root: Option<String>,
    pub hosts: Vec<DhcpHost>,
    /// Answer only hosts with a `dhcp-host` (`dhcp-ignore=tag:!known`).
    pub known_only: bool,
    /// Folder of more `dhcp-host` lines, re-read on change (`dhcp-hostsdir`).
    pub hostsdir: Option<String>,
    pub leasefile: Option<String>,
    /// Log every request with its tags (`log-dhcp`): which arch asked, which file it got.
    pub log_dhcp: bool,
}

impl DnsmasqConfig {
    /// The options, one per line, without leading dashes.
    pub fn lines(&self) -> Result<Vec<String>, Error> {
        self.check()?;
        let r = &self.range;
        let server = self.server;
        let mut l = vec![
            "port=0".to_owned(),
            format!("interface={}", self.interface),
            "bind-interfaces".to_owned(),
        ];
        let mut range = format!("dhcp-range={},{}", r.start, r.end);
        if let Some(mask) = r.netmask {
            range.push_str(&format!(",{mask}"));
        }
        range.push_str(&format!(",{}", r.lease));
        l.push(range);
        if let Some(f) = &self.leasefile {
            l.push(format!("dhcp-leasefile={f}"));
        }
        if self.log_dhcp {
            l.push("log-dhcp".to_owned());
        }
        l.push("dhcp-match=set:efi,option:client-arch,7".to_owned());
        l.push("dhcp-match=set:efi,option:client-arch,9".to_owned());
        match &self.flow {
            BootFlow::Pxe { bios, uefi } => {
                l.push(format!("dhcp-boot=tag:efi,{uefi},{server},{server}"));
                l.push(format!("dhcp-boot={bios},{server},{server}"));
            }
            BootFlow::Ipxe {
                bios,
                uefi,
                script_url,
            } => {
                l.push("dhcp-match=set:ipxe,175".to_owned());
                l.push("dhcp-userclass=set:ipxe,iPXE".to_owned());
                l.push(format!("dhcp-boot=tag:ipxe,{script_url}"));
                l.push(format!(
                    "dhcp-boot=tag:efi,tag:!ipxe,{uefi},{server},{server}"
                ));
                l.push(format!("dhcp-boot={bios},{server},{server}"));
            }
        }
        if let Some(root) = &self.tftp_root {
            l.push("enable-tftp".to_owned());
            l.push(format!("tftp-root={root}"));
        }
        if let Some(dir) = &self.hostsdir {
            l.push(format!("dhcp-hostsdir={dir}"));
        }
        for h in &self.hosts {
            l.push(format!("dhcp-host={}", h.value()));
        }
        if self.known_only {
            l.push("dhcp-ignore=tag:!known".to_owned());
        }
        Ok(l)
    }

    /// A configuration file for `--conf-file=`.
    pub fn render(&self) -> Result<String, Error> {
        let mut s =
            "# dnsmasq for network boot: DHCP on one interface, no DNS (rendered by tripleo-rs)\n"
                .to_owned();
        for line in self.lines()? {
            s.push_str(&line);
            s.push('\n');
        }
        Ok(s)
    }

    /// Command-line options for running dnsmasq in the foreground with no configuration file.
    pub fn args(&self) -> Result<Vec<String>, Error> {
        let mut a = vec!["--conf-file=".to_owned(), "--keep-in-foreground".to_owned()];
        a.extend(self.lines()?.into_iter().map(|l| format!("--{l}")));
        Ok(a)
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |field: &str, message: String| Error::Dnsmasq {
            field: field.to_owned(),
            message,
        };
        let r = &self.range;
        if r.start > r.end {
            return Err(bad(
                "range",
                format!("start {} is after end {}", r.start, r.end),
            ));
        }
        if let Some(mask) = r.netmask {
            let m = u32::from(mask);
            if m.leading_ones() + m.trailing_zeros() != 32 {
                return Err(bad("range", format!("{mask} is not a netmask")));
            }
            if u32::from(r.start) & m != u32::from(r.end) & m {
                return Err(bad(
                    "range",
                    format!("{} and {} are not in one {mask} subnet", r.start, r.end),
                ));
            }
        }
        let short = |l: Lease| matches!(l, Lease::Seconds(s) if s < MIN_LEASE);
        if short(r.lease) {
            return Err(bad(
                "range",
                format!("lease {} is shorter than dnsmasq's minimum of 2m", r.lease),
            ));
        }
        if self.interface.is_empty() || self.interface.contains([',', ' ', '\n']) {
            return Err(bad(
                "interface",
                format!("bad interface name {:?}", self.interface),
            ));
        }
        let mut macs = HashSet::new();
        let mut names = HashSet::new();
        let mut ips = HashSet::new();
        for h in &self.hosts {
            let field = format!("hosts[{}]", h.mac);
            if !macs.insert(h.mac) {
                return Err(bad(&field, "MAC listed twice".to_owned()));
            }
            if let Some(name) = &h.name {
                if !is_host_name(name) {
                    return Err(bad(&field, format!("{name:?} is not a valid host name")));
                }
                if !names.insert(name.clone()) {
                    return Err(bad(&field, format!("host name {name:?} listed twice")));
                }
            }
            if let Some(ip) = h.ip {
                if !ips.insert(ip) {
                    return Err(bad(&field, format!("address {ip} reserved twice")));
                }
                if let Some(mask) = r.netmask {
                    let m = u32::from(mask);
                    if u32::from(ip) & m != u32::from(r.start) & m {
                        return Err(bad(
                            &field,
                            format!("address {ip} is outside the range's {mask} subnet"),
                        ));
                    }
                }
            }
            if h.lease.is_some_and(short) {
                return Err(bad(
                    &field,
                    "lease is shorter than dnsmasq's minimum of 2m".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostsdir_file() {
        let mut h = DhcpHost {
            mac: MacAddress::parse("52:54:00:aa:bb:01").unwrap(),
            ip: Some(Ipv4Addr::new(192, 0, 2, 10)),
            name: Some("ctl-0".into()),
            lease: Some(Lease::Seconds(43200)),
            ignore: false,
        };
        assert_eq!(
            h.hostsdir_file(),
            (
                "52-54-00-aa-bb-01.conf".to_owned(),
                "52:54:00:aa:bb:01,192.0.2.10,ctl-0,12h\n".to_owned()
            )
        );
        h.ignore = true;
        assert_eq!(h.hostsdir_file().1, "52:54:00:aa:bb:01,ignore\n");
        assert_eq!(Lease::Seconds(150).to_string(), "150");
        assert_eq!(Lease::Seconds(1800).to_string(), "30m");
    }
}
