//! The INI files of oslo.config, as os-collect-config reads them: `[DEFAULT]` and one section
//! per group, `key = value` lines, a repeated key giving several values, `#`/`;` comments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Values by section and key, in file order; later files add to earlier ones.
#[derive(Debug, Clone, Default)]
pub struct Ini {
    sections: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// A file that could not be read or parsed, with the line at fault.
#[derive(Debug, thiserror::Error)]
pub enum IniError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: &'static str,
    },
}

impl Ini {
    pub fn read_all(paths: &[PathBuf]) -> Result<Ini, IniError> {
        let mut ini = Ini::default();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|source| IniError::Read {
                path: path.clone(),
                source,
            })?;
            ini.parse(path, &text)?;
        }
        Ok(ini)
    }

    fn parse(&mut self, path: &Path, text: &str) -> Result<(), IniError> {
        let mut section = "DEFAULT".to_owned();
        for (number, line) in text.lines().enumerate() {
            let syntax = |message| IniError::Syntax {
                path: path.to_owned(),
                line: number + 1,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                section = name
                    .strip_suffix(']')
                    .ok_or_else(|| syntax("unterminated section header"))?
                    .trim()
                    .to_owned();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .or_else(|| line.split_once(':'))
                .ok_or_else(|| syntax("expected key = value"))?;
            self.sections
                .entry(section.clone())
                .or_default()
                .entry(key.trim().replace('-', "_"))
                .or_default()
                .push(value.trim().to_owned());
        }
        Ok(())
    }

    /// The last value of `key` in `section`.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .get(section)?
            .get(key)?
            .last()
            .map(String::as_str)
    }

    /// Every value of `key` in `section`, in order.
    pub fn get_all(&self, section: &str, key: &str) -> Vec<String> {
        self.sections
            .get(section)
            .and_then(|s| s.get(key))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_keys_and_groups() {
        let mut ini = Ini::default();
        ini.parse(
            Path::new("x.conf"),
            "[DEFAULT]\ncommand = os-refresh-config\ncollectors = heat_local\ncollectors = ec2\n# c\n[ec2]\nmetadata_url = http://127.0.0.1/latest/meta-data\n",
        )
        .unwrap();
        assert_eq!(ini.get("DEFAULT", "command"), Some("os-refresh-config"));
        assert_eq!(ini.get_all("DEFAULT", "collectors"), ["heat_local", "ec2"]);
        assert_eq!(
            ini.get("ec2", "metadata_url"),
            Some("http://127.0.0.1/latest/meta-data")
        );
        assert!(Ini::default()
            .parse(Path::new("y.conf"), "[oops\n")
            .is_err());
    }
}
