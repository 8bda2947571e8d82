//! Collect instance metadata and render configuration files from it, as os-collect-config and
//! os-apply-config do.
//!
//! This crate will merge metadata from collectors (local files, EC2-style HTTP, config drive),
//! render mustache templates into a target root, and write each file atomically.
//!
//! Not implemented yet: this crate is a placeholder that fixes the workspace shape. It will not
//! run hook phases after rendering (that is `refresh-config`), and it will refuse template paths
//! that escape the target root.
