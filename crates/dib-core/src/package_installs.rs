//! `package-installs`: each element's `package-installs.{json,yaml}` squashed into one plan
//! of packages to install and uninstall per phase, as diskimage-builder's
//! `package-installs-squash` does, with its filters (installtype, arch, not-arch,
//! dib_python_version, when) and its rule that a plain install cancels a pending
//! uninstall. Differences, on purpose: filters apply before the install/uninstall rules, a
//! `false` build-only/uninstall is off, arch lists are trimmed, first-seen order is kept
//! without duplicates, and an empty file means no packages.

use std::path::Path;

use marked_yaml::Node;

use crate::elements::{Element, Error};

/// One way of installing a package (`package: {phase: …, arch: …}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Param {
    pub phase: Option<String>,
    pub uninstall: bool,
    pub build_only: bool,
    pub installtype: Option<String>,
    pub arch: Option<String>,
    pub not_arch: Option<String>,
    pub dib_python_version: Option<String>,
    /// AND-ed `VAR = value` / `VAR != value` conditions.
    pub when: Vec<String>,
}

/// A package file: packages in file order, each with its params.
pub type PackageList = Vec<(String, Vec<Param>)>;

/// The squashed plan: per phase (first-use order), packages to install and to uninstall,
/// each with the element that asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Squashed {
    pub phases: Vec<(String, PhasePlan)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhasePlan {
    pub install: Vec<(String, String)>,
    pub uninstall: Vec<(String, String)>,
}

fn is_null(node: &Node) -> bool {
    node.as_scalar().is_some_and(|s| {
        s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
    })
}

/// A YAML 1.2 boolean `false` (or an empty value) is off; anything else present is on.
fn is_on(node: &Node) -> bool {
    match node.as_scalar() {
        Some(s) if s.may_coerce() => {
            !matches!(s.as_str(), "false" | "False" | "FALSE" | "" | "~" | "null")
        }
        _ => true,
    }
}

fn text(node: &Node) -> Option<String> {
    node.as_scalar()
        .filter(|_| !is_null(node))
        .map(|s| s.as_str().to_owned())
}

/// Parses a package-installs file (JSON or YAML); `path` names it in errors.
pub fn parse(path: &Path, source: &str) -> Result<PackageList, Error> {
    let bad = |message: String| Error::PackageInstalls {
        path: path.to_owned(),
        message,
    };
    if source.trim().is_empty() {
        return Ok(Vec::new());
    }
    let root =
        marked_yaml::parse_yaml(0, source).map_err(|e| bad(format!("not YAML or JSON: {e:?}")))?;
    let map = root
        .as_mapping()
        .ok_or_else(|| bad("must map package names to their parameters".to_owned()))?;
    let mut packages = Vec::new();
    for (name, value) in map.iter() {
        let one = |node: &Node| -> Result<Param, Error> {
            if is_null(node) {
                return Ok(Param::default());
            }
            let params = node
                .as_mapping()
                .ok_or_else(|| bad(format!("{}: parameters must be a mapping", name.as_str())))?;
            let mut param = Param::default();
            for (key, value) in params.iter() {
                match key.as_str() {
                    "phase" => param.phase = text(value),
                    "uninstall" => param.uninstall = is_on(value),
                    "build-only" => param.build_only = is_on(value),
                    "installtype" => param.installtype = text(value),
                    "arch" => param.arch = text(value),
                    "not-arch" => param.not_arch = text(value),
                    "dib_python_version" => param.dib_python_version = text(value),
                    "when" => {
                        param.when = match value {
                            Node::Sequence(items) => items.iter().filter_map(text).collect(),
                            other => text(other).into_iter().collect(),
                        }
                    }
                    other => {
                        return Err(bad(format!(
                            "{}: unknown parameter {other:?}",
                            name.as_str()
                        )))
                    }
                }
            }
            if param.arch.is_some() && param.not_arch.is_some() {
                return Err(bad(format!(
                    "package-installs configuration error: arch and not_arch given for package [{}]",
                    name.as_str()
                )));
            }
            Ok(param)
        };
        let params = match value {
            Node::Sequence(items) => items.iter().map(one).collect::<Result<Vec<_>, _>>()?,
            other => vec![one(other)?],
        };
        packages.push((name.as_str().to_owned(), params));
    }
    Ok(packages)
}

/// Reads an element's `package-installs.json` then `.yaml` (only from its own directory).
pub fn read_element(element: &Element) -> Result<Vec<PackageList>, Error> {
    let mut lists = Vec::new();
    for file in ["package-installs.json", "package-installs.yaml"] {
        let path = element.path.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => lists.push(parse(&path, &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::PackageInstalls {
                    path,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(lists)
}

/// Whether `when` holds: every `VAR = value` / `VAR != value` against `env`.
fn when_holds(conditions: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
    for condition in conditions {
        let var_len = condition
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let (var, rest) = condition.split_at(var_len);
        let rest = rest.trim_start();
        let (negated, value) = if let Some(v) = rest.strip_prefix("!=") {
            (true, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (false, v)
        } else {
            return Err(format!("Malformed when line: <{condition}>"));
        };
        if var.is_empty() {
            return Err(format!("Malformed when line: <{condition}>"));
        }
        let actual = env(var).ok_or_else(|| format!("The variable <{var}> is not set"))?;
        if (actual == value.trim_start()) == negated {
            return Ok(false);
        }
    }
    Ok(true)
}

fn arch_listed(list: &str, arch: &str) -> bool {
    list.split(',').any(|a| a.trim() == arch)
}

impl Squashed {
    fn phase(&mut self, phase: &str) -> &mut PhasePlan {
        let index = match self.phases.iter().position(|(p, _)| p == phase) {
            Some(index) => index,
            None => {
                self.phases.push((phase.to_owned(), PhasePlan::default()));
                self.phases.len() - 1
            }
        };
        &mut self.phases[index].1
    }

    /// The JSON `package-installs-v2` reads (indent 1, as upstream writes it).
    pub fn to_json(&self) -> String {
        let pairs = |list: &[(String, String)]| -> String {
            if list.is_empty() {
                return "[]".to_owned();
            }
            let items: Vec<String> = list
                .iter()
                .map(|(p, e)| {
                    format!(
                        "   [\n    {},\n    {}\n   ]",
                        json_string(p),
                        json_string(e)
                    )
                })
                .collect();
            format!("[\n{}\n  ]", items.join(",\n"))
        };
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(phase, plan)| {
                format!(
                    " {}: {{\n  \"install\": {},\n  \"uninstall\": {}\n }}",
                    json_string(phase),
                    pairs(&plan.install),
                    pairs(&plan.uninstall)
                )
            })
            .collect();
        if phases.is_empty() {
            "{}".to_owned()
        } else {
            format!("{{\n{}\n}}", phases.join(",\n"))
        }
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Squashes the package lists of `elements` (in element order, each element's lists in
/// file order) with the build's environment.
pub fn squash(
    elements: &[(String, Vec<PackageList>)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Squashed, Error> {
    let fail = |element: &str, message: String| Error::PackageInstalls {
        path: element.into(),
        message,
    };
    let arch = env("ARCH").unwrap_or_default();
    let python = env("DIB_PYTHON_VERSION").unwrap_or_default();
    let mut squashed = Squashed::default();
    for (element, lists) in elements {
        let installtype = env(&format!("DIB_INSTALLTYPE_{}", element.replace('-', "_")))
            .or_else(|| env("DIB_DEFAULT_INSTALLTYPE"))
            .unwrap_or_else(|| "source".to_owned());
        for (package, params) in lists.iter().flatten() {
            for param in params {
                let wanted = param.installtype.as_ref().is_none_or(|t| *t == installtype)
                    && param.arch.as_ref().is_none_or(|l| arch_listed(l, &arch))
                    && param
                        .not_arch
                        .as_ref()
                        .is_none_or(|l| !arch_listed(l, &arch))
                    && param
                        .dib_python_version
                        .as_ref()
                        .is_none_or(|v| v.is_empty() || *v == python)
                    && when_holds(&param.when, env)
                        .map_err(|m| fail(element, format!("{package}: {m}")))?;
                if !wanted {
                    continue;
                }
                let plan = squashed.phase(param.phase.as_deref().unwrap_or("install.d"));
                let entry = (package.clone(), element.clone());
                let push = |list: &mut Vec<(String, String)>| {
                    if !list.contains(&entry) {
                        list.push(entry.clone());
                    }
                };
                if param.uninstall || param.build_only {
                    let installed = plan.install.iter().any(|(p, _)| p == package);
                    let uninstalled = plan.uninstall.iter().any(|(p, _)| p == package);
                    if installed && !uninstalled {
                        // Installed for good elsewhere: build-only adds its install, an
                        // uninstall has nothing left to do.
                        if param.build_only {
                            push(&mut plan.install);
                        }
                    } else {
                        if param.build_only {
                            push(&mut plan.install);
                        }
                        push(&mut plan.uninstall);
                    }
                } else {
                    plan.uninstall.retain(|(p, _)| p != package);
                    push(&mut plan.install);
                }
            }
        }
    }
    Ok(squashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_conditions() {
        let env = |var: &str| (var == "A").then(|| "1".to_owned());
        assert_eq!(when_holds(&["A = 1".into()], &env), Ok(true));
        assert_eq!(when_holds(&["A!=1".into()], &env), Ok(false));
        assert_eq!(when_holds(&["A=1".into(), "A != 2".into()], &env), Ok(true));
        assert_eq!(
            when_holds(&["B=1".into()], &env),
            Err("The variable <B> is not set".into())
        );
        assert!(when_holds(&["=1".into()], &env).is_err());
    }
}
