//! NIC numbering (`nic1`, `nic2`, …) and the mapping file, with os-net-config's rules: which
//! links count as NICs, their order, and how explicit mappings and numbered aliases combine.
//!
//! Host facts come through [`HostFacts`]: [`Sysfs`] reads `<root>/sys/class/net`, [`FixedNics`]
//! is a list given by the caller (tests, other tools that already know the hardware).

use std::cmp::Ordering;
use std::path::PathBuf;

/// A network interface as numbering sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    /// As sysfs shows it (lowercase, colon-separated).
    pub mac: String,
    /// `operstate` is `up` (case-insensitive).
    pub active: bool,
}

/// Where the NICs come from.
pub trait HostFacts {
    /// Every real NIC, in any order: links with a `device/` directory and a non-empty address,
    /// except `lo` and SR-IOV virtual functions.
    fn nics(&self) -> Vec<Nic>;
}

/// `<root>/sys/class/net`; the root is a parameter so that tests can fake it.
#[derive(Debug, Clone)]
pub struct Sysfs {
    pub root: PathBuf,
}

impl HostFacts for Sysfs {
    fn nics(&self) -> Vec<Nic> {
        let class = self.root.join("sys/class/net");
        let Ok(entries) = std::fs::read_dir(&class) else {
            return Vec::new();
        };
        let mut nics = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = class.join(&name);
            if name == "lo" || !dir.join("device").is_dir() || dir.join("device/physfn").exists() {
                continue;
            }
            let read = |file: &str| {
                std::fs::read_to_string(dir.join(file))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default()
            };
            let mac = read("address");
            if mac.is_empty() {
                continue;
            }
            let active = read("operstate").eq_ignore_ascii_case("up");
            nics.push(Nic { name, mac, active });
        }
        nics
    }
}

/// NICs given by the caller.
#[derive(Debug, Clone, Default)]
pub struct FixedNics(pub Vec<Nic>);

impl HostFacts for FixedNics {
    fn nics(&self) -> Vec<Nic> {
        self.0.clone()
    }
}

/// Upstream's NIC order: names starting with `em`, `eth` or `eno` first, then the rest, each
/// group in natural order (digit runs compared as numbers).
pub fn compare_nic_names(a: &str, b: &str) -> Ordering {
    let embedded = |n: &str| !(n.starts_with("em") || n.starts_with("eth") || n.starts_with("eno"));
    embedded(a)
        .cmp(&embedded(b))
        .then_with(|| natural(a).cmp(&natural(b)))
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Part<'a> {
    // Python compares int with str only within equal-shaped lists; names here always start
    // with text, so text and numbers alternate in step.
    Text(&'a str),
    Number(u128, &'a str),
}

fn natural(name: &str) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            let (run, tail) = rest.split_at(digits);
            parts.push(Part::Number(run.parse().unwrap_or(u128::MAX), run));
            rest = tail;
        } else {
            let text = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
            let (run, tail) = rest.split_at(text);
            parts.push(Part::Text(run));
            rest = tail;
        }
    }
    parts
}

/// The active NICs in numbering order.
pub fn ordered_active(facts: &dyn HostFacts) -> Vec<Nic> {
    let mut active: Vec<Nic> = facts.nics().into_iter().filter(|n| n.active).collect();
    active.sort_by(|a, b| compare_nic_names(&a.name, &b.name));
    active
}

/// One `interface_mapping` entry: alias → device name or MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingEntry {
    pub alias: String,
    pub target: String,
}

/// What numbering says about an entry or a NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The entry names no available NIC (by name or MAC): skipped.
    NotFound { alias: String, target: String },
    /// The alias is an inactive NIC's name: allowed, but confusing.
    AliasIsInactiveNic { alias: String },
    /// `nic<i>` was taken by an explicit entry, so this NIC gets no alias.
    NoAlias {
        nic: String,
        alias: String,
        taken_by: String,
    },
}

/// A mapping that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("interface {target} already mapped, check mapping file for duplicates")]
    Duplicate { target: String },
    #[error("cannot map {target} to alias {alias}, alias overlaps with active NIC.")]
    AliasIsActiveNic { alias: String, target: String },
}

/// Aliases → device names, in the order they were assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    pub entries: Vec<(String, String)>,
    pub notices: Vec<Notice>,
}

impl Aliases {
    /// The device an alias stands for.
    pub fn device(&self, alias: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(a, _)| a == alias)
            .map(|(_, d)| d.as_str())
    }

    /// `name` resolved: an alias, or `<alias>.<vid>` with its base resolved; else itself.
    pub fn resolve<'a>(&'a self, name: &'a str) -> std::borrow::Cow<'a, str> {
        if let Some(device) = self.device(name) {
            return device.into();
        }
        if let Some((base, vid)) = name.rsplit_once('.') {
            if !vid.is_empty() && vid.bytes().all(|b| b.is_ascii_digit()) {
                if let Some(device) = self.device(base) {
                    return format!("{device}.{vid}").into();
                }
            }
        }
        name.into()
    }
}

/// MACs compare normalised (case, `-` or `:`), unlike upstream's exact string match (D12).
fn same_mac(a: &str, b: &str) -> bool {
    let norm = |m: &str| m.to_ascii_lowercase().replace('-', ":");
    norm(a) == norm(b)
}

/// Numbers the NICs and applies the mapping file's entries, as os-net-config does.
pub fn aliases(facts: &dyn HostFacts, mapping: &[MappingEntry]) -> Result<Aliases, MappingError> {
    let available = facts.nics();
    let mut active: Vec<&Nic> = available.iter().filter(|n| n.active).collect();
    active.sort_by(|a, b| compare_nic_names(&a.name, &b.name));
    let mut result = Aliases::default();
    for entry in mapping {
        let nic = available
            .iter()
            .find(|n| n.name == entry.target || same_mac(&n.mac, &entry.target));
        let Some(nic) = nic else {
            result.notices.push(Notice::NotFound {
                alias: entry.alias.clone(),
                target: entry.target.clone(),
            });
            continue;
        };
        if result.entries.iter().any(|(_, d)| *d == nic.name) {
            return Err(MappingError::Duplicate {
                target: entry.target.clone(),
            });
        }
        if let Some(same) = available.iter().find(|n| n.name == entry.alias) {
            if same.active {
                return Err(MappingError::AliasIsActiveNic {
                    alias: entry.alias.clone(),
                    target: entry.target.clone(),
                });
            }
            result.notices.push(Notice::AliasIsInactiveNic {
                alias: entry.alias.clone(),
            });
        }
        result.entries.push((entry.alias.clone(), nic.name.clone()));
    }
    for (index, nic) in active.iter().enumerate() {
        if result.entries.iter().any(|(_, d)| *d == nic.name) {
            continue;
        }
        let alias = format!("nic{}", index + 1);
        match result.entries.iter().find(|(a, _)| *a == alias) {
            Some((_, taken_by)) => result.notices.push(Notice::NoAlias {
                nic: nic.name.clone(),
                alias,
                taken_by: taken_by.clone(),
            }),
            None => result.entries.push((alias, nic.name.clone())),
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(name: &str, mac: &str, active: bool) -> Nic {
        Nic {
            name: name.to_owned(),
            mac: mac.to_owned(),
            active,
        }
    }

    fn names(nics: &[&str]) -> FixedNics {
        FixedNics(
            nics.iter()
                .enumerate()
                .map(|(i, n)| nic(n, &format!("52:54:00:00:00:{i:02x}"), true))
                .collect(),
        )
    }

    #[test]
    fn embedded_names_first_then_natural_order() {
        let mut facts = names(&["enp10s0", "enp2s0", "eno1", "eth0", "ens3", "em10", "em2"]);
        facts.0.push(nic("p1p1", "52:54:00:00:01:00", false));
        let order: Vec<String> = ordered_active(&facts).into_iter().map(|n| n.name).collect();
        assert_eq!(
            order,
            ["em2", "em10", "eno1", "eth0", "enp2s0", "enp10s0", "ens3"]
        );
        let mut upstream = [
            "z1", "enp10s0", "a1", "em2", "enp8s0", "eth2", "em1", "enp1s0f0",
        ];
        upstream.sort_by(|a, b| compare_nic_names(a, b));
        assert_eq!(
            upstream,
            ["em1", "em2", "eth2", "a1", "enp1s0f0", "enp8s0", "enp10s0", "z1"]
        );
    }

    #[test]
    fn explicit_entries_take_their_aliases_and_numbering_skips_taken_ones() {
        let facts = names(&["em1", "em2", "em3", "em4"]);
        let mapping = [
            MappingEntry {
                alias: "nic1".into(),
                target: "em1".into(),
            },
            MappingEntry {
                alias: "nic2".into(),
                target: "em3".into(),
            },
        ];
        let aliases = aliases(&facts, &mapping).expect("maps");
        assert_eq!(
            aliases.entries,
            [
                ("nic1".into(), "em1".into()),
                ("nic2".into(), "em3".into()),
                ("nic4".into(), "em4".into())
            ]
        );
        assert_eq!(
            aliases.notices,
            [Notice::NoAlias {
                nic: "em2".into(),
                alias: "nic2".into(),
                taken_by: "em3".into()
            }]
        );
        assert_eq!(aliases.resolve("nic2.7"), "em3.7");
        assert_eq!(aliases.resolve("nic3"), "nic3");
    }

    #[test]
    fn macs_match_whatever_their_case_and_duplicates_are_refused() {
        let facts = names(&["em1", "em2"]);
        let by_mac = [MappingEntry {
            alias: "prov".into(),
            target: "52-54-00-00-00-01".into(),
        }];
        assert_eq!(
            aliases(&facts, &by_mac).expect("maps").device("prov"),
            Some("em2")
        );
        let twice = [
            MappingEntry {
                alias: "a".into(),
                target: "em1".into(),
            },
            MappingEntry {
                alias: "b".into(),
                target: "em1".into(),
            },
        ];
        assert_eq!(
            aliases(&facts, &twice).unwrap_err().to_string(),
            "interface em1 already mapped, check mapping file for duplicates"
        );
        let onto_active = [MappingEntry {
            alias: "em2".into(),
            target: "em1".into(),
        }];
        assert!(matches!(
            aliases(&facts, &onto_active),
            Err(MappingError::AliasIsActiveNic { .. })
        ));
    }

    #[test]
    fn sysfs_counts_real_nics_only() {
        let root = tempfile::tempdir().expect("temp dir");
        let class = root.path().join("sys/class/net");
        for (name, mac, state, device, vf) in [
            ("em1", "52:54:00:00:00:01", "up", true, false),
            ("em2", "52:54:00:00:00:02", "DOWN", true, false),
            ("lo", "00:00:00:00:00:00", "unknown", true, false),
            ("br0", "52:54:00:00:00:09", "up", false, false),
            ("em1v0", "52:54:00:00:00:0a", "up", true, true),
        ] {
            let dir = class.join(name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            if device {
                std::fs::create_dir_all(dir.join("device")).expect("mkdir");
            }
            if vf {
                std::fs::create_dir_all(dir.join("device/physfn")).expect("mkdir");
            }
            std::fs::write(dir.join("address"), format!("{mac}\n")).expect("write");
            std::fs::write(dir.join("operstate"), format!("{state}\n")).expect("write");
        }
        let mut found = Sysfs {
            root: root.path().to_owned(),
        }
        .nics();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            found,
            [
                nic("em1", "52:54:00:00:00:01", true),
                nic("em2", "52:54:00:00:00:02", false)
            ]
        );
    }
}
