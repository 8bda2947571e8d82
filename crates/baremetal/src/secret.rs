//! A credential that never shows itself by accident.

use std::fmt;

/// A password, key or token. `Debug` and `Display` print `***`; the value is reached only
/// through [`Secret::expose`], so every place that needs the clear text says so.
///
/// There is deliberately no `serde` support: the one place that writes secrets out (the SQLite
/// store) converts them explicitly.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a clear-text value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear text. Call it only where the value leaves the process on purpose (a BMC login,
    /// a password file for a child process, the node store).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (IPMI allows an empty password).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
