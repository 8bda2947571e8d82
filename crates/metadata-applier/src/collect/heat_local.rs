//! `heat_local`: metadata files left by heat-cfntools.

use std::path::PathBuf;

use super::{CollectContext, Collector, SourceError};
use crate::json::{self, Map, Value};

/// Reads each path in order and merges their top-level keys (later wins).
#[derive(Debug, Clone)]
pub struct HeatLocal {
    pub paths: Vec<PathBuf>,
}

impl Default for HeatLocal {
    fn default() -> Self {
        HeatLocal {
            paths: vec![PathBuf::from("/var/lib/heat-cfntools/cfn-init-data")],
        }
    }
}

impl Collector for HeatLocal {
    fn name(&self) -> &str {
        "heat_local"
    }

    fn collect(&mut self, _: &CollectContext) -> Result<Vec<(String, Value)>, SourceError> {
        let mut merged = Map::default();
        for path in &self.paths {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            match json::parse(&text) {
                Ok(Value::Object(map)) => merged.extend(map),
                Ok(_) => tracing::warn!("{} is not a JSON object; skipped", path.display()),
                Err(e) => tracing::info!("{} is not valid JSON ({e})", path.display()),
            }
        }
        if merged.is_empty() {
            let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
            tracing::info!("Local metadata not found ({})", paths.join(", "));
            return Err(SourceError::NotAvailable(
                "local metadata not found".to_owned(),
            ));
        }
        Ok(vec![("heat_local".to_owned(), Value::Object(merged))])
    }
}
