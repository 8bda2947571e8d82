//! Elements: finding them on `ELEMENTS_PATH` and expanding a request into the full,
//! ordered list through `element-deps` and `element-provides`.
//!
//! [`ElementSet::load`] scans the path (earlier entries override later ones; each override
//! is reported). [`expand`] is pure: diskimage-builder's algorithm with its error texts, but
//! a documented, deterministic order: breadth-first from the requested elements in command
//! line order, each element's new dependencies enqueued sorted by name.

pub use crate::error::Error;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::{Path, PathBuf};

/// The virtual element every build needs one provider of.
pub const OPERATING_SYSTEM: &str = "operating-system";

/// One element: a directory on the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The directory's entry name (a symlink keeps its own name).
    pub name: String,
    /// The resolved directory.
    pub path: PathBuf,
    /// `element-deps`, one name per line.
    pub depends: BTreeSet<String>,
    /// `element-provides`: virtual names this element stands for.
    pub provides: BTreeSet<String>,
}

/// An element overriding one of the same name further down the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub name: String,
    pub winner: PathBuf,
    pub loser: PathBuf,
}

/// Every element the path offers, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementSet {
    pub elements: BTreeMap<String, Element>,
    /// Overrides, in the order they were found.
    pub overrides: Vec<Override>,
}

/// Reads a one-name-per-line file: stripped, blank lines dropped, no comments. Missing: empty.
fn read_names(path: &Path) -> Result<BTreeSet<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(Error::Read {
            path: path.to_owned(),
            message: e.to_string(),
        }),
    }
}

impl ElementSet {
    /// Scans `elements_path` (colon-separated; earlier entries win). Every entry must be a
    /// directory; the last bad one is reported, before any element is read.
    pub fn load(elements_path: &str) -> Result<ElementSet, Error> {
        if elements_path.is_empty() {
            return Err(Error::PathNotSet);
        }
        let entries: Vec<&str> = elements_path.split(':').collect();
        if let Some(bad) = entries.iter().rev().find(|e| !Path::new(e).is_dir()) {
            return Err(Error::InvalidElementDir((*bad).to_owned()));
        }
        let mut set = ElementSet::default();
        for entry in entries.iter().rev() {
            let read_error = |e: std::io::Error| Error::Read {
                path: PathBuf::from(entry),
                message: e.to_string(),
            };
            let mut names: Vec<(String, PathBuf)> = Vec::new();
            for item in std::fs::read_dir(entry).map_err(read_error)? {
                let item = item.map_err(read_error)?;
                let path = item.path();
                if path.is_dir() {
                    names.push((item.file_name().to_string_lossy().into_owned(), path));
                }
            }
            names.sort();
            for (name, path) in names {
                let resolved = std::fs::canonicalize(&path).unwrap_or(path);
                let element = Element {
                    depends: read_names(&resolved.join("element-deps"))?,
                    provides: read_names(&resolved.join("element-provides"))?,
                    name: name.clone(),
                    path: resolved,
                };
                if let Some(old) = set.elements.insert(name.clone(), element) {
                    set.overrides.push(Override {
                        winner: set.elements[&name].path.clone(),
                        loser: old.path,
                        name,
                    });
                }
            }
        }
        Ok(set)
    }

    /// An in-memory set (for tests and tools that describe elements themselves).
    pub fn from_elements(elements: impl IntoIterator<Item = Element>) -> ElementSet {
        ElementSet {
            elements: elements.into_iter().map(|e| (e.name.clone(), e)).collect(),
            overrides: Vec::new(),
        }
    }
}

/// Expands `requested` into every element the build needs, in dib-core's order (module
/// documentation); virtual names are resolved to their providers and left out.
pub fn expand<'s>(set: &'s ElementSet, requested: &[&str]) -> Result<Vec<&'s Element>, Error> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<(String, Option<String>)> = VecDeque::new();
    for name in requested {
        if seen.insert((*name).to_owned()) {
            queue.push_back(((*name).to_owned(), None));
        }
    }
    let mut provided: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut processed: Vec<&Element> = Vec::new();
    while let Some((name, via)) = queue.pop_front() {
        if provided.contains_key(&name) {
            continue;
        }
        let element = set.elements.get(&name).ok_or_else(|| Error::Missing {
            name: name.clone(),
            via,
        })?;
        for virtual_name in &element.provides {
            if let Some(by) = provided.get(virtual_name) {
                return Err(Error::AlreadyProvided {
                    name: virtual_name.clone(),
                    by: by.clone(),
                });
            }
        }
        for virtual_name in &element.provides {
            provided.insert(virtual_name.clone(), vec![name.clone()]);
        }
        // BTreeSet: new dependencies come sorted by name.
        for dep in &element.depends {
            if !seen.contains(dep) && !provided.contains_key(dep) {
                queue.push_back((dep.clone(), Some(name.clone())));
            }
            seen.insert(dep.clone());
        }
        processed.push(element);
    }
    let conflicts: Vec<(String, Vec<String>)> = requested
        .iter()
        .filter_map(|r| provided.get(*r).map(|by| ((*r).to_owned(), by.clone())))
        .collect();
    if !conflicts.is_empty() {
        return Err(Error::RequestedButProvided { conflicts });
    }
    if !provided.contains_key(OPERATING_SYSTEM) {
        return Err(Error::MissingOs);
    }
    Ok(processed
        .into_iter()
        .filter(|e| !provided.contains_key(&e.name))
        .collect())
}

/// `element-info --env` output: `IMAGE_ELEMENT`, `IMAGE_ELEMENT_YAML` (as PyYAML's
/// `safe_dump` writes a name → path mapping: keys sorted) and the `get_image_element_array`
/// function, exactly as diskimage-builder prints them.
pub fn env_output(elements: &[&Element]) -> String {
    let names: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
    let yaml = element_yaml(elements);
    let array: String = elements
        .iter()
        .map(|e| format!("[{}]={} ", e.name, e.path.display()))
        .collect();
    format!(
        "export IMAGE_ELEMENT='{}'\nexport IMAGE_ELEMENT_YAML='{yaml}'\nfunction get_image_element_array {{\n  echo \"{array}\"\n}};\nexport -f get_image_element_array;\n",
        names.join(" ")
    )
}

/// `IMAGE_ELEMENT_YAML`: the name → path mapping as PyYAML's `safe_dump` writes it.
pub fn element_yaml(elements: &[&Element]) -> String {
    let mut sorted: Vec<&&Element> = elements.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if sorted.is_empty() {
        return "{}\n".to_owned();
    }
    sorted
        .iter()
        .map(|e| {
            format!(
                "{}: {}\n",
                yaml_scalar(&e.name),
                yaml_scalar(&e.path.to_string_lossy())
            )
        })
        .collect()
}

/// A string as PyYAML's `safe_dump` writes it: plain when it reads back as the same string,
/// else single-quoted.
fn yaml_scalar(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let resolves_otherwise = matches!(
        lower.as_str(),
        "" | "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    ) || text.parse::<f64>().is_ok()
        || text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'_' || b == b':')
            && text.bytes().any(|b| b.is_ascii_digit());
    let first = text.chars().next().unwrap_or(' ');
    let special_start = "-?:,[]{}#&*!|>'\"%@` ".contains(first)
        && !(first == '-' && text.len() > 1 && !text[1..].starts_with(' '));
    let special = text.contains(": ")
        || text.contains(" #")
        || text.ends_with(' ')
        || text.ends_with(':')
        || text.chars().any(|c| c.is_control());
    if resolves_otherwise || special_start || special {
        format!("'{}'", text.replace('\'', "''"))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(name: &str, deps: &[&str], provides: &[&str]) -> Element {
        Element {
            name: name.to_owned(),
            path: PathBuf::from(format!("/e/{name}")),
            depends: deps.iter().map(|d| (*d).to_owned()).collect(),
            provides: provides.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn breadth_first_with_sorted_dependencies() {
        let set = ElementSet::from_elements([
            element("vm", &["zeta", "alpha"], &[]),
            element("ubuntu", &["dpkg"], &[OPERATING_SYSTEM]),
            element("alpha", &["dpkg"], &[]),
            element("zeta", &[], &[]),
            element("dpkg", &[], &[]),
        ]);
        let names: Vec<&str> = expand(&set, &["vm", "ubuntu"])
            .expect("expands")
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["vm", "ubuntu", "alpha", "zeta", "dpkg"]);
    }

    #[test]
    fn yaml_scalars_are_quoted_like_pyyaml() {
        assert_eq!(
            yaml_scalar("/usr/share/elements/vm"),
            "/usr/share/elements/vm"
        );
        assert_eq!(yaml_scalar("block-device-mbr"), "block-device-mbr");
        assert_eq!(yaml_scalar("yes"), "'yes'");
        assert_eq!(yaml_scalar("1"), "'1'");
        assert_eq!(yaml_scalar("it's: here"), "'it''s: here'");
    }
}
