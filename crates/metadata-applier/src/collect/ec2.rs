//! `ec2`: the EC2-style metadata tree, from the cache, a config drive, or the metadata
//! service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CollectContext, Collector, SourceError};
use crate::json::{self, Map, Value};

/// Deeper listings than this are refused (a server that lists itself forever).
const MAX_DEPTH: usize = 32;

/// Where the ec2 collector looks.
#[derive(Debug, Clone)]
pub struct Ec2Options {
    /// Base of the tree; `/` is appended.
    pub metadata_url: String,
    /// Connect timeout and total deadline of each request.
    pub timeout: Duration,
    /// A mounted config drive: reads `DIR/ec2/latest/meta-data.json`, no device probing.
    pub config_drive_path: Option<PathBuf>,
    /// Probe block devices for a `config-2` config drive (blkid, mount) when no path is given.
    pub config_drive: bool,
}

impl Default for Ec2Options {
    fn default() -> Self {
        Ec2Options {
            metadata_url: "http://169.254.169.254/latest/meta-data".to_owned(),
            timeout: Duration::from_secs(10),
            config_drive_path: None,
            config_drive: true,
        }
    }
}

/// The ec2 collector: the first of cache, config drive and metadata service that has data.
#[derive(Debug)]
pub struct Ec2 {
    options: Ec2Options,
    agent: ureq::Agent,
}

impl Ec2 {
    pub fn new(options: Ec2Options) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(options.timeout))
            .timeout_global(Some(options.timeout))
            .http_status_as_error(true)
            .build()
            .into();
        Ec2 { options, agent }
    }

    fn get(&self, url: &str) -> Result<String, SourceError> {
        let mut response =
            self.agent.get(url).call().map_err(|e| {
                SourceError::NotAvailable(format!("{url}: {}", super::http_error(&e)))
            })?;
        response
            .body_mut()
            .read_to_string()
            .map_err(|e| SourceError::NotAvailable(format!("{url}: {e}")))
    }

    /// Walks a listing: `name/` lines are sub-trees, `n=name` lines are the sub-tree `n/`,
    /// other lines are leaves whose body is the value (text, never parsed).
    fn walk(&self, url: &str, depth: usize) -> Result<Map, SourceError> {
        if depth > MAX_DEPTH {
            return Err(SourceError::NotAvailable(format!(
                "{url}: metadata tree too deep"
            )));
        }
        let listing = self.get(url)?;
        let mut tree = Map::default();
        // Empty lines (a listing ending in a newline) name nothing.
        for line in listing.split('\n').filter(|l| !l.is_empty()) {
            let line = match line.split_once('=') {
                Some((index, _)) => format!("{index}/"),
                None => line.to_owned(),
            };
            let child = format!("{url}{line}");
            match line.strip_suffix('/') {
                Some(key) => {
                    let subtree = self.walk(&child, depth + 1)?;
                    tree.insert(key.to_owned(), Value::Object(subtree));
                }
                None => {
                    let body = self.get(&child)?;
                    tree.insert(line, Value::String(body));
                }
            }
        }
        Ok(tree)
    }

    fn config_drive(&self) -> Option<Value> {
        if let Some(dir) = &self.options.config_drive_path {
            return read_meta_data(dir);
        }
        if !self.options.config_drive {
            return None;
        }
        let device = probe_config_drive()?;
        with_mounted(&device, read_meta_data)
    }
}

impl Collector for Ec2 {
    fn name(&self) -> &str {
        "ec2"
    }

    fn collect(&mut self, context: &CollectContext) -> Result<Vec<(String, Value)>, SourceError> {
        // Instance metadata is immutable: once cached, it is not fetched again.
        let cached = std::fs::read_to_string(context.cache_dir.join("ec2.json"));
        if let Ok(text) = cached {
            match json::parse(&text) {
                Ok(value) if value.is_truthy() => return Ok(vec![("ec2".to_owned(), value)]),
                Ok(_) => {}
                Err(e) => tracing::warn!("Ignoring a bad ec2 cache ({e})"),
            }
        }
        if let Some(value) = self.config_drive().filter(Value::is_truthy) {
            return Ok(vec![("ec2".to_owned(), value)]);
        }
        let base = format!("{}/", self.options.metadata_url.trim_end_matches('/'));
        let tree = self.walk(&base, 0)?;
        Ok(vec![("ec2".to_owned(), Value::Object(tree))])
    }
}

fn read_meta_data(mount: &Path) -> Option<Value> {
    let path = mount.join("ec2/latest/meta-data.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => json::parse(&text).ok(),
        Err(_) => {
            tracing::warn!("No expected file at path: {}", path.display());
            None
        }
    }
}

/// One block device as `blkid -o export` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDevice {
    pub devname: String,
    pub fs_type: Option<String>,
    pub label: Option<String>,
}

impl BlockDevice {
    /// A config drive: labelled exactly `config-2`, on vfat or iso9660.
    pub fn is_config_drive(&self) -> bool {
        self.label.as_deref() == Some("config-2")
            && matches!(self.fs_type.as_deref(), Some("vfat" | "iso9660"))
    }
}

/// Parses `blkid -o export`: blocks of `KEY=value` lines separated by blank lines; `\ ` is a
/// space.
pub fn parse_blkid(output: &str) -> Vec<BlockDevice> {
    let mut devices = Vec::new();
    for block in output.split("\n\n") {
        let mut device = BlockDevice::default();
        for line in block.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.replace("\\ ", " ");
            match key {
                "DEVNAME" => device.devname = value,
                "TYPE" => device.fs_type = Some(value),
                "LABEL" => device.label = Some(value),
                _ => {}
            }
        }
        if !device.devname.is_empty() {
            devices.push(device);
        }
    }
    devices
}

fn probe_config_drive() -> Option<String> {
    let output = std::process::Command::new("blkid")
        .args(["-o", "export"])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            parse_blkid(&String::from_utf8_lossy(&output.stdout))
                .into_iter()
                .find(BlockDevice::is_config_drive)
                .map(|d| d.devname)
        }
        Ok(output) => {
            tracing::debug!("blkid found nothing ({})", output.status);
            None
        }
        Err(e) => {
            tracing::error!("Could not run blkid: {e}");
            None
        }
    }
}

/// The mount point of `device` in /proc/mounts (octal escapes such as `\040` decoded).
fn mount_point(mounts: &str, device: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (source, target) = (fields.next()?, fields.next()?);
        (source == device).then(|| PathBuf::from(unescape_mount(target)))
    })
}

fn unescape_mount(field: &str) -> String {
    let mut out = Vec::new();
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code =
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("0"), 8)
                    .unwrap_or(b'?');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `read` on the device's mount point: an existing mount, or a read-only one made for
/// the occasion and removed afterwards whatever happens.
fn with_mounted(device: &str, read: impl Fn(&Path) -> Option<Value>) -> Option<Value> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if let Some(existing) = mount_point(&mounts, device) {
        return read(&existing);
    }
    let dir = std::env::temp_dir().join(format!("config-2-{}", std::process::id()));
    std::fs::create_dir(&dir).ok()?;
    // mount's complaints go to the log, not to whatever stderr the embedding program has.
    let mounted = match std::process::Command::new("mount")
        .arg(device)
        .arg(&dir)
        .args(["-o", "ro,noexec,nosuid,nodev"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            tracing::warn!("Could not mount config drive {device}: {}", stderr.trim());
            false
        }
        Err(e) => {
            tracing::warn!("Could not run mount for config drive {device}: {e}");
            false
        }
    };
    let value = if mounted { read(&dir) } else { None };
    if mounted {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .output();
    }
    let _ = std::fs::remove_dir(&dir);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLKID: &str = "DEVNAME=/dev/sr0\nUUID=2016-09-12-02-14-09-00\nLABEL=config-2\nTYPE=iso9660\n\nDEVNAME=/dev/block/253:1\nUUID=f13d84b4-c756-4d89-9d5e-6b534397aa14\nTYPE=xfs\n";

    #[test]
    fn blkid_output_finds_the_config_drive() {
        let devices = parse_blkid(BLKID);
        assert_eq!(devices.len(), 2);
        assert!(devices[0].is_config_drive());
        assert!(!devices[1].is_config_drive());
        assert_eq!(devices[1].label, None);
        let spaced = parse_blkid("DEVNAME=/dev/x\nLABEL=a\\ b\nTYPE=vfat\n");
        assert_eq!(spaced[0].label.as_deref(), Some("a b"));
    }

    #[test]
    fn mount_points_are_unescaped() {
        let mounts = "/dev/sda1 / ext4 rw 0 0\n/dev/sr0 /mnt/config\\0402 iso9660 ro 0 0\n";
        assert_eq!(
            mount_point(mounts, "/dev/sr0"),
            Some(PathBuf::from("/mnt/config 2"))
        );
        assert_eq!(mount_point(mounts, "/dev/sr1"), None);
    }
}
