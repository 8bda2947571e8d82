//! The deployment explosion: each deployment meant for os-apply-config becomes a key of its
//! own, after the collector's full content.

use crate::json::Value;

/// `[(collector, content), (deployment name, its config)…]` for every `deployment_keys` list
/// at the root of `content`: deployments whose group is absent, `os-apply-config` or
/// `Heat::Ungrouped`, that have a name and a config.
pub fn explode(
    collector: &str,
    content: Value,
    deployment_keys: &[String],
) -> Vec<(String, Value)> {
    let mut entries = Vec::new();
    for key in deployment_keys {
        match content.get(key) {
            None => {}
            Some(Value::Array(deployments)) => {
                for deployment in deployments {
                    if let Some(entry) = deployment_entry(key, deployment) {
                        entries.push(entry);
                    }
                }
            }
            Some(_) => {
                tracing::warn!("Deployment-key {key} was found but does not contain a list.");
            }
        }
    }
    entries.insert(0, (collector.to_owned(), content));
    entries
}

fn deployment_entry(key: &str, deployment: &Value) -> Option<(String, Value)> {
    let Value::Object(deployment) = deployment else {
        tracing::warn!("A deployment under {key} is not an object; skipped.");
        return None;
    };
    let Some(Value::String(name)) = deployment.get("name") else {
        tracing::warn!("No name found for a deployment under {key}.");
        return None;
    };
    match deployment.get("group") {
        None => {}
        Some(Value::String(group)) if group == "os-apply-config" || group == "Heat::Ungrouped" => {}
        Some(_) => return None,
    }
    let Some(config) = deployment.get("config") else {
        tracing::warn!("Deployment {name} under {key} has no config; skipped.");
        return None;
    };
    Some((name.clone(), config.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn explodes_as_upstream() {
        let content = json::parse(
            r#"{"old-style":"value","deployments":[
            {"inputs":[],"group":"Heat::Ungrouped","name":"dep-name1","outputs":null,"options":null,"config":{"config1":"value1"}},
            {"inputs":[],"group":"os-apply-config","name":"dep-name2","outputs":null,"options":null,"config":{"config2":"value2"}},
            {"inputs":[],"name":"dep-name3","outputs":null,"options":null,"config":{"config3":"value3"}},
            {"inputs":[],"group":"ignore_me","name":"ignore_me_name","outputs":null,"options":null,"config":"ignore_me_config"},
            {"inputs":[]}]}"#,
        )
        .unwrap();
        let entries = explode("collectme", content.clone(), &["deployments".to_owned()]);
        let names: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["collectme", "dep-name1", "dep-name2", "dep-name3"]);
        assert_eq!(entries[0].1, content);
        assert_eq!(json::dumps(&entries[1].1), r#"{"config1": "value1"}"#);
    }

    #[test]
    fn malformed_deployments_are_skipped() {
        let content = json::parse(r#"{"deployments":"x"}"#).unwrap();
        assert_eq!(explode("c", content, &["deployments".to_owned()]).len(), 1);
        let content = json::parse(r#"{"deployments":["s", {"name":"n"}]}"#).unwrap();
        assert_eq!(explode("c", content, &["deployments".to_owned()]).len(), 1);
    }
}
