//! `pkg-map`: an element's generic package names translated to the distribution's, from its
//! `pkg-map` file (`default` < `family` < `distro` < `release`, later sections winning), as
//! diskimage-builder's `pkg-map` does.

use std::collections::BTreeMap;

use marked_yaml::Node;

use crate::elements::Error;

/// The family `pkg-map` groups a distribution into.
pub fn os_family(distro: &str) -> Option<&'static str> {
    match distro {
        "almalinux" | "fedora" | "rhel" | "centos" | "openeuler" | "rocky" => Some("redhat"),
        "debian" | "ubuntu" => Some("debian"),
        "opensuse" => Some("suse"),
        "gentoo" => Some("gentoo"),
        _ => None,
    }
}

/// The release key used in `release` sections (`8-stream` maps as `8`).
pub fn major_release(release: &str) -> &str {
    if release == "8-stream" {
        "8"
    } else {
        release
    }
}

/// A parsed pkg-map file: section → key → (name → mapped name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PkgMap {
    default: BTreeMap<String, String>,
    family: BTreeMap<String, BTreeMap<String, String>>,
    distro: BTreeMap<String, BTreeMap<String, String>>,
    release: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

fn names(node: Option<&Node>) -> BTreeMap<String, String> {
    node.and_then(Node::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    v.as_scalar()
                        .map(|s| (k.as_str().to_owned(), s.as_str().to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn keyed<T>(node: Option<&Node>, inner: impl Fn(Option<&Node>) -> T) -> BTreeMap<String, T> {
    node.and_then(Node::as_mapping)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().to_owned(), inner(Some(v))))
                .collect()
        })
        .unwrap_or_default()
}

impl PkgMap {
    /// Parses a pkg-map file (JSON).
    pub fn parse(source: &str) -> Result<PkgMap, Error> {
        let root = marked_yaml::parse_yaml(0, source)
            .map_err(|e| Error::PkgMap(format!("pkg-map: not JSON: {e:?}")))?;
        let top = root.as_mapping();
        let get = |key: &str| top.and_then(|m| m.get_node(key));
        Ok(PkgMap {
            default: names(get("default")),
            family: keyed(get("family"), names),
            distro: keyed(get("distro"), names),
            release: keyed(get("release"), |n| keyed(n, names)),
        })
    }

    /// The mapping in force for `distro` and `release`.
    fn merged(&self, distro: &str, release: Option<&str>) -> BTreeMap<String, String> {
        let mut merged = self.default.clone();
        if let Some(family) = os_family(distro).and_then(|f| self.family.get(f)) {
            merged.extend(family.clone());
        }
        if let Some(specific) = self.distro.get(distro) {
            merged.extend(specific.clone());
        }
        if let Some(by_release) =
            release.and_then(|r| self.release.get(distro)?.get(major_release(r)))
        {
            merged.extend(by_release.clone());
        }
        merged
    }

    /// Maps `packages`: a mapped name, nothing for a name mapped to `""`, the name itself
    /// when unmapped and `missing_ok`, else an error naming it.
    pub fn map(
        &self,
        element: &str,
        distro: &str,
        release: Option<&str>,
        packages: &[&str],
        missing_ok: bool,
    ) -> Result<Vec<String>, Error> {
        let merged = self.merged(distro, release);
        let mut out = Vec::new();
        for package in packages {
            match merged.get(*package) {
                Some(name) if !name.is_empty() => out.push(name.clone()),
                Some(_) => {}
                None if missing_ok => out.push((*package).to_owned()),
                None => {
                    return Err(Error::PkgMap(format!(
                        "{element} has no valid mapping for package {package}"
                    )))
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"{"release": {"fedora": {"23": {"nova_package": "foo"}}},
 "distro": {"fedora": {"nova_package": "openstack-compute"}},
 "family": {"redhat": {"nova_package": "openstack-nova"}, "suse": {"nova_package": ""}},
 "default": {"nova_package": "nova"}}"#;

    #[test]
    fn sections_merge_in_order() {
        let map = PkgMap::parse(MAP).expect("parses");
        let one = |distro: &str, release: Option<&str>| {
            map.map("nova", distro, release, &["nova_package"], false)
                .expect("maps")
        };
        assert_eq!(one("ubuntu", None), ["nova"]);
        assert_eq!(one("centos", Some("8-stream")), ["openstack-nova"]);
        assert_eq!(one("fedora", Some("22")), ["openstack-compute"]);
        assert_eq!(one("fedora", Some("23")), ["foo"]);
        assert!(
            one("opensuse", None).is_empty(),
            "an empty name skips the package"
        );
        assert_eq!(
            map.map("nova", "ubuntu", None, &["other"], false)
                .unwrap_err()
                .to_string(),
            "nova has no valid mapping for package other"
        );
        assert_eq!(
            map.map("nova", "ubuntu", None, &["other"], true)
                .expect("passes"),
            ["other"]
        );
    }
}
