//! The renderer seam: a typed device tree in, files out as data. Renderers never touch the
//! host; deciding what changed and writing is the caller's (see [`changed`]).

use crate::model::NetworkConfig;
use crate::nics::HostFacts;

/// How a file is compared with what is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Byte for byte (route, rule and interfaces files).
    Exact,
    /// As `KEY=value` pairs: comments, order, value case and quoting do not count.
    Ifcfg,
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute, as on the target system (`/etc/sysconfig/network-scripts/ifcfg-em1`).
    pub path: String,
    pub content: String,
    pub compare: Compare,
    /// Permission bits the file must have.
    pub mode: u32,
}

impl RenderedFile {
    /// The same file with other permission bits.
    pub fn with_mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    pub fn exact(path: String, content: String) -> Self {
        RenderedFile {
            path,
            content,
            compare: Compare::Exact,
            mode: 0o644,
        }
    }

    pub fn ifcfg(path: String, content: String) -> Self {
        RenderedFile {
            path,
            content,
            compare: Compare::Ifcfg,
            mode: 0o644,
        }
    }
}

/// A configuration the renderer cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{device}: {what} is not supported by this renderer")]
    Unsupported { device: String, what: String },
    #[error("{device}: no MAC address known for the primary interface")]
    NoMac { device: String },
}

impl RenderError {
    /// `device` uses `what`, which the renderer cannot express.
    pub fn unsupported(device: &crate::model::Device, what: impl Into<String>) -> Self {
        RenderError::Unsupported {
            device: device.name.clone(),
            what: what.into(),
        }
    }
}

/// Turns a network configuration into files.
pub trait Renderer {
    fn render(
        &self,
        config: &NetworkConfig,
        facts: &dyn HostFacts,
    ) -> Result<Vec<RenderedFile>, RenderError>;
}

/// `KEY=value` pairs of an ifcfg file, values unquoted and lowercased, sorted.
fn ifcfg_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let value = v.trim().trim_matches(|c| c == '"' || c == '\'');
            // Word order does not matter in these lists.
            let value = if matches!(k, "BOND_IFACES" | "OVS_EXTRA") {
                let mut words: Vec<&str> = value.split_whitespace().collect();
                words.sort_unstable();
                words.join(" ")
            } else {
                value.to_owned()
            };
            (k.trim().to_owned(), value.to_lowercase())
        })
        .collect();
    pairs.sort();
    pairs
}

/// Whether `file` differs from `existing` (`None`: no file), the way upstream decides: an
/// empty route or rule file for a device that has none is no change.
pub fn changed(file: &RenderedFile, existing: Option<&str>) -> bool {
    let existing = existing.unwrap_or("");
    match file.compare {
        Compare::Exact => file.content != existing,
        Compare::Ifcfg => ifcfg_pairs(&file.content) != ifcfg_pairs(existing),
    }
}

/// `--noop` output, as upstream prints it: for each file that would change, `File: <path>`,
/// a blank line, the content, a blank line and `----`. `existing` reads a path's current
/// content (`None`: no file); `root_dir` prefixes every path.
pub fn noop_output(
    files: &[RenderedFile],
    root_dir: &str,
    existing: impl Fn(&str) -> Option<String>,
) -> (String, usize) {
    let mut out = String::new();
    let mut count = 0;
    for file in files {
        let path = format!("{}{}", root_dir.trim_end_matches('/'), file.path);
        if changed(file, existing(&path).as_deref()) {
            count += 1;
            out.push_str(&format!("File: {path}\n\n{}\n----\n", file.content));
        }
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifcfg_comparison_ignores_comments_order_case_and_quotes() {
        let file = RenderedFile::ifcfg(
            "/x".into(),
            "# header\nDEVICE=em1\nBOND_IFACES=\"a b\"\n".into(),
        );
        assert!(!changed(
            &file,
            Some(
                "BOND_IFACES=b a\ndevice=EM1\n"
                    .replace("device", "DEVICE")
                    .as_str()
            )
        ));
        assert!(changed(&file, None));
        let route = RenderedFile::exact("/r".into(), String::new());
        assert!(!changed(&route, None));
    }
}
