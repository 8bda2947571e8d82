//! `local`: JSON files dropped into directories owned by us.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{CollectContext, Collector, SourceError};
use crate::json::{self, Value};

/// Every file of every directory is a key named after the file; the directories must be ours
/// and neither they nor the files world-writable.
#[derive(Debug, Clone)]
pub struct Local {
    pub paths: Vec<PathBuf>,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            paths: vec![PathBuf::from("/var/lib/os-collect-config/local-data")],
        }
    }
}

const WORLD_WRITABLE: u32 = 0o002;

impl Collector for Local {
    fn name(&self) -> &str {
        "local"
    }

    fn collect(&mut self, _: &CollectContext) -> Result<Vec<(String, Value)>, SourceError> {
        if self.paths.is_empty() {
            return Err(SourceError::NotAvailable(
                "no local-data directories".to_owned(),
            ));
        }
        let unsafe_source = |message: String| {
            tracing::error!("{message}");
            SourceError::NotAvailable(message)
        };
        let uid = nix::unistd::getuid().as_raw();
        let mut files = Vec::new();
        for dir in &self.paths {
            let Ok(meta) = std::fs::metadata(dir) else {
                tracing::warn!("{} not found. Skipping", dir.display());
                continue;
            };
            if meta.uid() != uid {
                return Err(unsafe_source(format!(
                    "{} is owned by another user. This is a security risk.",
                    dir.display()
                )));
            }
            if meta.mode() & WORLD_WRITABLE != 0 {
                return Err(unsafe_source(format!(
                    "{} is world writable. This is a security risk.",
                    dir.display()
                )));
            }
            let entries = std::fs::read_dir(dir)
                .map_err(|e| unsafe_source(format!("{}: {e}", dir.display())))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if name.starts_with('.') || path.is_dir() {
                    continue;
                }
                files.push((name, path));
            }
        }
        // Bytewise, whatever the locale; a stable sort keeps directory order among equal names.
        files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if files.is_empty() {
            let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
            tracing::info!("No local metadata found ({})", paths.join(", "));
        }
        let mut entries = Vec::with_capacity(files.len());
        for (name, path) in files {
            let meta = std::fs::metadata(&path)
                .map_err(|e| unsafe_source(format!("{}: {e}", path.display())))?;
            if meta.mode() & WORLD_WRITABLE != 0 {
                return Err(unsafe_source(format!(
                    "{} is world writable. This is a security risk.",
                    path.display()
                )));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| unsafe_source(format!("{}: {e}", path.display())))?;
            let value = json::parse(&text).map_err(|e| {
                unsafe_source(format!("{} is not valid JSON ({e})", path.display()))
            })?;
            entries.push((name, value));
        }
        Ok(entries)
    }
}
