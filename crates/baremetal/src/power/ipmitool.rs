//! IPMI through `ipmitool -I lanplus`, the way Ironic's `ipmitool` driver runs it.
//!
//! Node fields are Ironic's: `ipmi_address`, `ipmi_port`, `ipmi_username`, `ipmi_password`,
//! `ipmi_priv_level` (default `ADMINISTRATOR`), `ipmi_cipher_suite` (default: ipmitool picks the
//! best; on a cipher-suite mismatch the driver falls back to 17, then 3, and keeps the one that
//! worked), `ipmi_protocol_version` (`2.0`; `1.5` runs `-I lan`), `ipmi_hex_kg_key` (given
//! to ipmitool through its environment, `-K`), and
//! `ipmi_disable_boot_timeout` (default true: before setting a boot device, tell the BMC not to
//! clear it after 60 s).
//!
//! The password never appears on a command line: each command gets it in a fresh private
//! temporary file (`-f`), deleted when the command ends. ipmitool's own retries are turned down
//! to one (`-R 1 -N 1`) because the [`Controller`](super::Controller) retries with backoff and
//! spaces commands per BMC (5 s by default, as Ironic does: BMCs crash when hammered).
//! Errors are classified from ipmitool's verbose output: a bad password ("RAKP 2 HMAC is
//! invalid") is an authentication error; an unknown user (no answer to RAKP 1, which
//! pyghmi and some BMCs never send) looks like a busy BMC, so it is retried like lost packets
//! and the final message says which it most likely is.

use std::io::Write as _;
use std::os::unix::ffi::OsStringExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    optional_info, required_info, BmcError, BootDevice, BootMode, BootReadback, BootSetting,
    ErrorKind, PowerAction, PowerDriver,
};
use crate::node::{Node, PowerState, Value};
use crate::{Error, Secret};

/// Cipher suites tried, in order, when the BMC refuses the one asked for.
const FALLBACK_SUITES: [u8; 2] = [17, 3];

/// ipmitool's messages that mean "try again later" (Ironic's list, plus lost packets).
const RETRYABLE: [&str; 9] = [
    "insufficient resources for session",
    "Node busy",
    "Timeout",
    "Out of space",
    "BMC initialization in progress",
    "Get Auth Capabilities error",
    "Error issuing Get Channel Authentication Capabilities",
    "No response",
    "Unable to send command",
];

/// ipmitool's messages that mean the suite asked for is not available.
const CIPHER_MISMATCH: [&str; 3] = [
    "Unsupported cipher suite ID",
    "no matching cipher suite",
    "is not what we requested",
];

/// One BMC spoken to through ipmitool.
#[derive(Debug)]
pub struct IpmiDriver {
    program: PathBuf,
    address: String,
    port: Option<u16>,
    username: Option<String>,
    password: Option<Secret>,
    kg_key: Option<Secret>,
    privilege: String,
    interface: &'static str,
    /// The suite that works (configured, or found by fallback); `None`: let ipmitool choose.
    suite: Mutex<Option<u8>>,
    suite_configured: bool,
    disable_boot_timeout: bool,
}

/// ipmitool's output of one command.
struct Output {
    stdout: String,
    stderr: String,
    success: bool,
}

impl IpmiDriver {
    /// Reads the node's `ipmi_*` fields. `program` overrides `ipmitool` on `PATH`.
    pub fn from_node(node: &Node, program: Option<PathBuf>) -> Result<Self, Error> {
        let invalid = |message: String| Error::InvalidNode {
            node: node.ident(),
            field: "driver_info",
            message,
        };
        let bmc = node.bmc();
        let address = required_info(node, "ipmi_address")?.to_owned();
        if address.starts_with('-') || address.contains(char::is_whitespace) {
            return Err(invalid(format!("ipmi_address {address:?} is not a host")));
        }
        let port = match node.driver_info.get("ipmi_port") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_int()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| invalid(format!("ipmi_port {v} is not a port number")))?,
            ),
        };
        let suite = match optional_info(node, "ipmi_cipher_suite")
            .map(str::to_owned)
            .or_else(|| {
                node.driver_info
                    .get("ipmi_cipher_suite")
                    .and_then(Value::as_int)
                    .map(|i| i.to_string())
            }) {
            None => None,
            Some(text) => Some(text.trim().parse::<u8>().map_err(|_| {
                invalid(format!(
                    "ipmi_cipher_suite {text:?} is not a cipher suite number"
                ))
            })?),
        };
        if let Some(kg) = node
            .driver_info
            .get("ipmi_hex_kg_key")
            .and_then(Value::as_secret)
        {
            match decode_hex(kg.expose()) {
                Some(raw) if raw.contains(&0) => {
                    return Err(invalid(
                        "ipmi_hex_kg_key: a key with a zero byte cannot be passed to ipmitool \
                         without its command line"
                            .to_owned(),
                    ))
                }
                Some(raw) if raw.len() <= 20 => {}
                _ => {
                    return Err(invalid(
                        "ipmi_hex_kg_key: expected up to 40 hexadecimal digits".to_owned(),
                    ))
                }
            }
        }
        let privilege = optional_info(node, "ipmi_priv_level")
            .unwrap_or("ADMINISTRATOR")
            .to_ascii_uppercase();
        if !["CALLBACK", "USER", "OPERATOR", "ADMINISTRATOR"].contains(&privilege.as_str()) {
            return Err(invalid(format!(
                "ipmi_priv_level {privilege:?} must be CALLBACK, USER, OPERATOR or ADMINISTRATOR"
            )));
        }
        let interface = match optional_info(node, "ipmi_protocol_version").unwrap_or("2.0") {
            "2.0" => "lanplus",
            "1.5" => "lan",
            other => {
                return Err(invalid(format!(
                    "ipmi_protocol_version {other:?} must be 1.5 or 2.0"
                )))
            }
        };
        let disable_boot_timeout = !matches!(
            node.driver_info.get("ipmi_disable_boot_timeout"),
            Some(Value::Bool(false))
        ) && !matches!(
            optional_info(node, "ipmi_disable_boot_timeout")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("false" | "no" | "0" | "off")
        );
        Ok(IpmiDriver {
            program: program.unwrap_or_else(|| PathBuf::from("ipmitool")),
            address,
            port,
            username: bmc.and_then(|b| b.username).map(str::to_owned),
            password: bmc.and_then(|b| b.password).cloned(),
            kg_key: node
                .driver_info
                .get("ipmi_hex_kg_key")
                .and_then(Value::as_secret)
                .cloned(),
            privilege,
            interface,
            suite: Mutex::new(suite),
            suite_configured: suite.is_some(),
            disable_boot_timeout,
        })
    }

    fn target(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.address),
            None => self.address.clone(),
        }
    }

    fn current_suite(&self) -> Option<u8> {
        *self.suite.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one ipmitool command with the given suite.
    async fn run_once(&self, args: &[&str], suite: Option<u8>) -> Result<Output, BmcError> {
        // A fresh 0600 file per command, removed when `password_file` drops. An empty password
        // is written as one NUL byte, as Ironic does (ipmitool reads an empty file as none).
        let mut password_file = tempfile::Builder::new()
            .prefix("ipmi-")
            .tempfile()
            .map_err(|e| BmcError::fatal(format!("cannot create a password file: {e}")))?;
        let password = self.password.as_ref().map_or("", Secret::expose);
        let written = if password.is_empty() {
            password_file.write_all(b"\0")
        } else {
            password_file.write_all(password.as_bytes())
        };
        written
            .and_then(|()| password_file.flush())
            .map_err(|e| BmcError::fatal(format!("cannot write the password file: {e}")))?;

        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg("-v")
            .args([
                "-I",
                self.interface,
                "-H",
                &self.address,
                "-L",
                &self.privilege,
            ])
            .args(["-R", "1", "-N", "1"]);
        if let Some(port) = self.port {
            command.args(["-p", &port.to_string()]);
        }
        if let Some(user) = &self.username {
            command.args(["-U", user]);
        }
        if let Some(suite) = suite {
            command.args(["-C", &suite.to_string()]);
        }
        if let Some(kg) = &self.kg_key {
            // Through the environment (`-K`), never the command line (`-y` would show it to
            // every local user in `ps`); ipmitool takes the raw key there, not hex.
            let raw = decode_hex(kg.expose()).unwrap_or_default();
            command
                .arg("-K")
                .env("IPMI_KGKEY", std::ffi::OsString::from_vec(raw));
        }
        command
            .arg("-f")
            .arg(password_file.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The controller's request timeout drops this future: the child goes with it.
            .kill_on_drop(true);
        let output = command
            .output()
            .await
            .map_err(|e| BmcError::fatal(format!("cannot run {}: {e}", self.program.display())))?;
        drop(password_file);
        Ok(Output {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            success: output.status.success(),
        })
    }

    /// Runs one command, falling back through cipher suites when the BMC refuses the one used.
    async fn run(&self, args: &[&str]) -> Result<String, BmcError> {
        let mut suite = self.current_suite();
        let mut tried = Vec::new();
        loop {
            let output = self.run_once(args, suite).await?;
            if output.success {
                if suite != self.current_suite() {
                    *self.suite.lock().unwrap_or_else(|e| e.into_inner()) = suite;
                }
                return Ok(output.stdout);
            }
            let text = format!("{}\n{}", output.stderr, output.stdout);
            tried.push(suite);
            if !self.suite_configured && CIPHER_MISMATCH.iter().any(|m| text.contains(m)) {
                if let Some(next) = FALLBACK_SUITES
                    .iter()
                    .copied()
                    .find(|s| !tried.contains(&Some(*s)))
                {
                    suite = Some(next);
                    continue;
                }
            }
            return Err(self.classify(args, &text));
        }
    }

    fn classify(&self, args: &[&str], text: &str) -> BmcError {
        let target = self.target();
        let command = args.join(" ");
        let detail = summary(text);
        let (kind, what) = if text.contains("RAKP 2 HMAC is invalid")
            || text.contains("RAKP 2 message indicates an error")
        {
            (ErrorKind::Auth, "authentication failed (wrong password?)")
        } else if text.contains("no response from RAKP 1") {
            // pyghmi (and some BMCs) ignore unknown users; a busy BMC drops packets too, so
            // this is retried, and the message says what it most likely is.
            (
                ErrorKind::Retryable,
                "no answer for this user name (unknown user, or a busy BMC)",
            )
        } else if text.contains("Insufficient privilege level") || text.contains("privilege level")
        {
            (ErrorKind::Auth, "not allowed at this privilege level")
        } else if CIPHER_MISMATCH.iter().any(|m| text.contains(m)) {
            (ErrorKind::Unsupported, "cipher suite not supported")
        } else if RETRYABLE.iter().any(|m| text.contains(m)) {
            (ErrorKind::Retryable, "no usable answer")
        } else if text.contains("Invalid command") || text.contains("Invalid data field") {
            (ErrorKind::Unsupported, "command refused")
        } else if text.contains("Unable to establish IPMI") {
            (ErrorKind::Retryable, "no session")
        } else {
            (ErrorKind::Fatal, "failed")
        };
        BmcError::new(kind, format!("ipmi {target}: {command}: {what}: {detail}"))
    }
}

/// Bytes of a hex string (an optional `0x` prefix allowed); `None` if it is not hex.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.len() % 2 != 0 {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The useful lines of ipmitool's output, on one line.
fn summary(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_start_matches('>').trim())
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Loading IANA")
                && !l.starts_with("Using best available cipher suite")
                && !l.starts_with("Running Get")
        })
        .collect();
    let mut unique: Vec<&str> = Vec::new();
    for l in lines {
        if !unique.contains(&l) {
            unique.push(l);
        }
    }
    if unique.is_empty() {
        "no output".to_owned()
    } else {
        unique.join("; ")
    }
}

fn parse_power(stdout: &str) -> Option<PowerState> {
    stdout.lines().find_map(|l| match l.trim() {
        "Chassis Power is on" => Some(PowerState::On),
        "Chassis Power is off" => Some(PowerState::Off),
        _ => None,
    })
}

fn parse_bootparam(stdout: &str) -> BootReadback {
    let mut readback = BootReadback {
        device: None,
        persistent: None,
        reported: None,
    };
    for line in stdout.lines() {
        let line = line.trim().trim_start_matches("- ").trim();
        if let Some(selector) = line.strip_prefix("Boot Device Selector :") {
            let selector = selector.trim();
            readback.device = if selector.contains("PXE") {
                Some(BootDevice::Pxe)
            } else if selector.contains("Safe") || selector.contains("Safe-Mode") {
                Some(BootDevice::Safe)
            } else if selector.contains("Hard-Drive") {
                Some(BootDevice::Disk)
            } else if selector.contains("CD/DVD") {
                Some(BootDevice::Cdrom)
            } else if selector.contains("BIOS Setup") {
                Some(BootDevice::Bios)
            } else {
                // "No override", or a device we do not name.
                readback.reported = Some(selector.to_owned());
                None
            };
        } else if line.contains("Options apply to all future boots") {
            readback.persistent = Some(true);
        } else if line.contains("Options apply to only next boot") {
            readback.persistent = Some(false);
        }
    }
    readback
}

#[async_trait]
impl PowerDriver for IpmiDriver {
    fn bmc_key(&self) -> String {
        format!("ipmi:{}", self.target())
    }

    fn min_interval(&self) -> Duration {
        Duration::from_secs(5)
    }

    async fn power_state(&self) -> Result<PowerState, BmcError> {
        let stdout = self.run(&["power", "status"]).await?;
        parse_power(&stdout).ok_or_else(|| {
            BmcError::fatal(format!(
                "ipmi {}: power status: unexpected answer: {}",
                self.target(),
                summary(&stdout)
            ))
        })
    }

    async fn request_power(&self, action: PowerAction) -> Result<(), BmcError> {
        let verb = match action {
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::Reboot => "reset",
            PowerAction::SoftOff => "soft",
            PowerAction::SoftReboot => {
                return Err(BmcError::new(
                    ErrorKind::Unsupported,
                    format!("ipmi {}: IPMI has no soft reboot", self.target()),
                ))
            }
        };
        self.run(&["power", verb]).await.map(drop)
    }

    async fn set_boot_device(&self, setting: BootSetting) -> Result<(), BmcError> {
        if self.disable_boot_timeout {
            self.run(&["raw", "0x00", "0x08", "0x03", "0x08"]).await?;
        }
        if setting.mode == Some(BootMode::Uefi) {
            // `chassis bootdev` cannot say EFI: parameter 5 is set raw, valid + EFI (+ persistent).
            let flags = if setting.persistent { "0xe0" } else { "0xa0" };
            let device = match setting.device {
                BootDevice::Pxe => "0x04",
                BootDevice::Disk => "0x08",
                BootDevice::Safe => "0x0c",
                BootDevice::Cdrom => "0x14",
                BootDevice::Bios => "0x18",
            };
            self.run(&[
                "raw", "0x00", "0x08", "0x05", flags, device, "0x00", "0x00", "0x00",
            ])
            .await
            .map(drop)
        } else {
            let mut args = vec!["chassis", "bootdev", setting.device.as_str()];
            if setting.persistent {
                args.push("options=persistent");
            }
            self.run(&args).await.map(drop)
        }
    }

    async fn boot_device(&self) -> Result<BootReadback, BmcError> {
        let stdout = self.run(&["chassis", "bootparam", "get", "5"]).await?;
        Ok(parse_bootparam(&stdout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_status_must_be_exact() {
        assert_eq!(parse_power("Chassis Power is on\n"), Some(PowerState::On));
        assert_eq!(parse_power("Chassis Power is off\n"), Some(PowerState::Off));
        assert_eq!(parse_power("Chassis Power is unknown\n"), None);
    }

    #[test]
    fn bootparam() {
        let out = "Boot parameter version: 1\n Boot Flags :\n   - Boot Flag Valid\n   - Options apply to only next boot\n   - BIOS PC Compatible (legacy) boot \n   - Boot Device Selector : Force PXE\n";
        assert_eq!(
            parse_bootparam(out),
            BootReadback {
                device: Some(BootDevice::Pxe),
                persistent: Some(false),
                reported: None,
            }
        );
        let out = "   - Options apply to all future boots\n   - Boot Device Selector : Force Boot from default Hard-Drive\n";
        assert_eq!(
            parse_bootparam(out),
            BootReadback {
                device: Some(BootDevice::Disk),
                persistent: Some(true),
                reported: None,
            }
        );
        let out = "   - Boot Device Selector : No override\n";
        assert_eq!(parse_bootparam(out).device, None);
        assert_eq!(
            parse_bootparam(out).reported.as_deref(),
            Some("No override")
        );
    }

    #[test]
    fn summary_drops_noise() {
        let text = "Loading IANA PEN Registry...\nUsing best available cipher suite 3\n\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n";
        assert_eq!(
            summary(text),
            "RAKP 2 HMAC is invalid; Error: Unable to establish IPMI v2 / RMCP+ session"
        );
    }
}
