//! Redfish, as sushy drives it: `GET` the system for `PowerState` and `Boot`, `POST` the
//! `#ComputerSystem.Reset` action, `PATCH` the boot override.
//!
//! Node fields are Ironic's: `redfish_address` (a URL; `https://` when no scheme is given),
//! `redfish_system_id` (a path such as `/redfish/v1/Systems/1`; when absent the BMC must have
//! exactly one system), `redfish_username`, `redfish_password`, and `redfish_verify_ca`: `true`
//! (default: the Mozilla roots), a path to a CA bundle (PEM) to trust instead, or `false` to
//! skip certificate verification for that node only. Verification is never turned off
//! otherwise.
//!
//! Authentication is HTTP Basic on every request. Redirects are followed here, not by the HTTP
//! client, so that credentials go only to the origin the node names. Requests are blocking
//! (ureq) and run on tokio's blocking pool.
//!
//! Not here: session (`X-Auth-Token`) login, `@Redfish.Settings` objects, ETags, virtual media.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value as Json};
use ureq::tls::{PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use super::{
    optional_info, required_info, BmcError, BootDevice, BootMode, BootReadback, BootSetting,
    ErrorKind, Hardware, PowerAction, PowerDriver,
};
use crate::node::{MacAddress, Node, PowerState, Value};
use crate::{Error, Secret};

/// A Redfish BMC and the system on it.
#[derive(Debug)]
pub struct RedfishDriver {
    http: Arc<Http>,
    system_id: Option<String>,
}

/// The BMC's HTTP side; shared with the blocking pool's tasks.
struct Http {
    /// `scheme://host[:port]`, no trailing slash.
    origin: String,
    username: Option<String>,
    password: Option<Secret>,
    agent: Agent,
    verify: Verify,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verify {
    Default,
    CaBundle(String),
    Off,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("origin", &self.origin)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

/// One HTTP answer.
struct Answer {
    status: u16,
    body: String,
    etag: Option<String>,
}

impl RedfishDriver {
    /// Reads the node's `redfish_*` fields; a CA bundle is loaded now, so a bad path fails
    /// before any request. One request may take at most `timeout` (default 30 s).
    pub fn from_node(node: &Node, timeout: Option<Duration>) -> Result<Self, Error> {
        let timeout = timeout.unwrap_or(Duration::from_secs(30));
        let invalid = |message: String| Error::InvalidNode {
            node: node.ident(),
            field: "driver_info",
            message,
        };
        let address = required_info(node, "redfish_address")?;
        let origin = origin_of(address).map_err(invalid)?;
        let verify = match node.driver_info.get("redfish_verify_ca") {
            None | Some(Value::Bool(true)) | Some(Value::Null) => Verify::Default,
            Some(Value::Bool(false)) => Verify::Off,
            Some(Value::Text(t)) => match t.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Verify::Default,
                "false" | "no" | "0" | "off" => Verify::Off,
                _ => Verify::CaBundle(t.clone()),
            },
            Some(other) => {
                return Err(invalid(format!(
                    "redfish_verify_ca must be true, false or a CA bundle path, not {other}"
                )))
            }
        };
        let tls = match &verify {
            Verify::Default => TlsConfig::builder().build(),
            Verify::Off => TlsConfig::builder().disable_verification(true).build(),
            Verify::CaBundle(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    invalid(format!(
                        "redfish_verify_ca: cannot read CA bundle {path}: {e}"
                    ))
                })?;
                let mut certs = Vec::new();
                for item in ureq::tls::parse_pem(&pem) {
                    match item {
                        Ok(PemItem::Certificate(c)) => certs.push(c),
                        Ok(_) => {}
                        Err(e) => {
                            return Err(invalid(format!(
                                "redfish_verify_ca: {path} is not a PEM CA bundle: {e}"
                            )))
                        }
                    }
                }
                if certs.is_empty() {
                    return Err(invalid(format!(
                        "redfish_verify_ca: {path} holds no certificate"
                    )));
                }
                TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(certs)))
                    .build()
            }
        };
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            .timeout_global(Some(timeout))
            .user_agent("tripleo-rs-baremetal")
            .tls_config(tls)
            .build()
            .into();
        Ok(RedfishDriver {
            http: Arc::new(Http {
                origin,
                username: optional_info(node, "redfish_username").map(str::to_owned),
                password: node
                    .driver_info
                    .get("redfish_password")
                    .and_then(Value::as_secret)
                    .cloned(),
                agent,
                verify,
            }),
            system_id: optional_info(node, "redfish_system_id").map(str::to_owned),
        })
    }
}

impl Http {
    fn authorization(&self) -> Option<String> {
        let user = self.username.as_deref()?;
        let password = self.password.as_ref().map_or("", Secret::expose);
        Some(format!(
            "Basic {}",
            base64(format!("{user}:{password}").as_bytes())
        ))
    }

    /// One request, following same-origin redirects (sushy redirects systems named by name).
    fn request_blocking(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
        if_match: Option<&str>,
    ) -> Result<Answer, BmcError> {
        // One request at a time per BMC, including requests whose caller gave up waiting
        // (their thread runs until the HTTP timeout): a new one waits for them to finish.
        let lane = in_flight(&self.origin);
        let _lane = lane.lock().unwrap_or_else(|e| e.into_inner());
        let mut url = join(&self.origin, path);
        for _ in 0..5 {
            // Links come from the BMC's answers; credentials go to its own origin only.
            if origin_of(&url).ok().as_deref() != Some(self.origin.as_str()) {
                return Err(BmcError::fatal(format!(
                    "{}: the BMC links to {url}, another origin; not sending credentials there",
                    self.origin
                )));
            }
            let mut request = ureq::http::Request::builder()
                .method(method)
                .uri(&url)
                .header("Accept", "application/json")
                .header("OData-Version", "4.0");
            if let Some(auth) = self.authorization() {
                request = request.header("Authorization", auth);
            }
            if let Some(tag) = if_match {
                request = request.header("If-Match", tag);
            }
            let response = match body {
                Some(b) => {
                    let request = request
                        .header("Content-Type", "application/json")
                        .body(b.to_string())
                        .map_err(|e| BmcError::fatal(format!("{url}: {e}")))?;
                    self.agent.run(request)
                }
                None => {
                    let request = request
                        .body(())
                        .map_err(|e| BmcError::fatal(format!("{url}: {e}")))?;
                    self.agent.run(request)
                }
            };
            let mut response = response.map_err(|e| self.transport_error(&url, e))?;
            let status = response.status().as_u16();
            if (300..400).contains(&status) {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| {
                        BmcError::fatal(format!("{url}: HTTP {status} without a Location"))
                    })?;
                let next = if location.starts_with('/') {
                    join(&self.origin, location)
                } else {
                    location.to_owned()
                };
                if origin_of(&next).ok().as_deref() != Some(self.origin.as_str()) {
                    return Err(BmcError::fatal(format!(
                        "{url}: redirected to another host ({next}); not following with credentials"
                    )));
                }
                url = next;
                continue;
            }
            let etag = response
                .headers()
                .get("etag")
                .and_then(|t| t.to_str().ok())
                .map(str::to_owned);
            let body = response
                .body_mut()
                .with_config()
                .limit(4 << 20)
                .read_to_string()
                .map_err(|e| BmcError::retryable(format!("{url}: reading the answer: {e}")))?;
            return Ok(Answer { status, body, etag });
        }
        Err(BmcError::fatal(format!("{url}: too many redirects")))
    }

    fn transport_error(&self, url: &str, e: ureq::Error) -> BmcError {
        let text = e.to_string();
        let tls = matches!(e, ureq::Error::Rustls(_))
            || text.contains("certificate")
            || text.contains("Certificate");
        if tls {
            let hint = match self.verify {
                Verify::Default => {
                    " (set redfish_verify_ca to the BMC's CA bundle, or to false to skip verification)"
                }
                _ => "",
            };
            BmcError::fatal(format!("{url}: TLS: {text}{hint}"))
        } else {
            // Refused, reset, timed out: the BMC may be rebooting or busy.
            BmcError::retryable(format!("{url}: {text}"))
        }
    }
}

impl RedfishDriver {
    async fn request(
        &self,
        method: &'static str,
        path: String,
        body: Option<Json>,
    ) -> Result<Json, BmcError> {
        self.request_tagged(method, path, body, None)
            .await
            .map(|(json, _)| json)
    }

    /// A request with an optional `If-Match`; returns the answer and its `ETag`.
    async fn request_tagged(
        &self,
        method: &'static str,
        path: String,
        body: Option<Json>,
        if_match: Option<String>,
    ) -> Result<(Json, Option<String>), BmcError> {
        let http = Arc::clone(&self.http);
        let answer = tokio::task::spawn_blocking(move || {
            http.request_blocking(method, &path, body.as_ref(), if_match.as_deref())
                .map(|a| (a, path))
        })
        .await
        .map_err(|e| BmcError::fatal(format!("redfish request task failed: {e}")))??;
        let (Answer { status, body, etag }, path) = answer;
        let url = join(&self.http.origin, &path);
        if (200..300).contains(&status) {
            if body.trim().is_empty() {
                return Ok((Json::Null, etag));
            }
            return serde_json::from_str(&body)
                .map(|json| (json, etag))
                .map_err(|e| BmcError::fatal(format!("{url}: answer is not JSON: {e}")));
        }
        let message = redfish_message(&body)
            .unwrap_or_else(|| body.lines().next().unwrap_or("").trim().to_owned());
        let kind = match status {
            401 | 403 => ErrorKind::Auth,
            // The resource changed since its ETag was read: read it again.
            412 => ErrorKind::Retryable,
            400 | 405 | 501 => ErrorKind::Unsupported,
            408 | 429 | 500 | 502 | 503 | 504 => ErrorKind::Retryable,
            _ => ErrorKind::Fatal,
        };
        let what = match status {
            401 => " (authentication failed)",
            403 => " (not allowed)",
            428 => " (the BMC wants If-Match but gave no ETag)",
            _ => "",
        };
        Err(BmcError::new(
            kind,
            format!("{method} {url}: HTTP {status}{what}: {message}"),
        ))
    }

    /// The system's path: the configured one, or the only member of `/redfish/v1/Systems`.
    async fn system_path(&self) -> Result<String, BmcError> {
        if let Some(id) = &self.system_id {
            return Ok(if id.starts_with('/') {
                id.clone()
            } else {
                format!("/redfish/v1/Systems/{id}")
            });
        }
        let systems = self
            .request("GET", "/redfish/v1/Systems".to_owned(), None)
            .await?;
        let members: Vec<&str> = systems["Members"]
            .as_array()
            .map(|m| m.iter().filter_map(|s| s["@odata.id"].as_str()).collect())
            .unwrap_or_default();
        match members.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(BmcError::fatal(format!(
                "{}: the BMC lists no system",
                self.http.origin
            ))),
            many => Err(BmcError::fatal(format!(
                "{}: the BMC has {} systems ({}); set redfish_system_id",
                self.http.origin,
                many.len(),
                many.join(", ")
            ))),
        }
    }
}

#[async_trait]
impl PowerDriver for RedfishDriver {
    fn bmc_key(&self) -> String {
        format!(
            "redfish:{}{}",
            self.http.origin,
            self.system_id.as_deref().unwrap_or("")
        )
    }

    async fn power_state(&self) -> Result<PowerState, BmcError> {
        let path = self.system_path().await?;
        let system = self.request("GET", path.clone(), None).await?;
        match system["PowerState"].as_str() {
            Some("On" | "PoweringOn") => Ok(PowerState::On),
            Some("Off" | "PoweringOff") => Ok(PowerState::Off),
            other => Err(BmcError::fatal(format!(
                "{}{path}: unknown PowerState {}",
                self.http.origin,
                other.map_or("(none)".to_owned(), |s| format!("\"{s}\""))
            ))),
        }
    }

    async fn request_power(&self, action: PowerAction) -> Result<(), BmcError> {
        let path = self.system_path().await?;
        let system = self.request("GET", path.clone(), None).await?;
        let reset = &system["Actions"]["#ComputerSystem.Reset"];
        let target = reset["target"].as_str().map_or_else(
            || format!("{path}/Actions/ComputerSystem.Reset"),
            str::to_owned,
        );
        let reset_type = match action {
            PowerAction::On => "On",
            PowerAction::Off => "ForceOff",
            PowerAction::Reboot => "ForceRestart",
            PowerAction::SoftOff => "GracefulShutdown",
            PowerAction::SoftReboot => "GracefulRestart",
        };
        if let Some(allowed) = reset["ResetType@Redfish.AllowableValues"].as_array() {
            if !allowed.iter().any(|v| v.as_str() == Some(reset_type)) {
                return Err(BmcError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{}{path}: the BMC does not offer ResetType {reset_type} for {action}",
                        self.http.origin
                    ),
                ));
            }
        }
        self.request("POST", target, Some(json!({ "ResetType": reset_type })))
            .await?;
        Ok(())
    }

    async fn set_boot_device(&self, setting: BootSetting) -> Result<(), BmcError> {
        let path = self.system_path().await?;
        let target = match setting.device {
            BootDevice::Pxe => "Pxe",
            BootDevice::Disk => "Hdd",
            BootDevice::Cdrom => "Cd",
            BootDevice::Bios => "BiosSetup",
            BootDevice::Safe => {
                return Err(BmcError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{}{path}: Redfish has no \"safe\" boot device",
                        self.http.origin
                    ),
                ))
            }
        };
        // Refuse what the BMC says it does not offer, before changing anything. Its ETag
        // goes back as If-Match: some BMCs refuse a PATCH without one (412/428).
        let (system, etag) = self.request_tagged("GET", path.clone(), None, None).await?;
        if let Some(allowed) =
            system["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"].as_array()
        {
            if !allowed.iter().any(|v| v.as_str() == Some(target)) {
                return Err(BmcError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{}{path}: the BMC does not offer boot device {} (BootSourceOverrideTarget {target})",
                        self.http.origin, setting.device
                    ),
                ));
            }
        }
        let mut boot = json!({
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": if setting.persistent { "Continuous" } else { "Once" },
        });
        if let Some(mode) = setting.mode {
            boot["BootSourceOverrideMode"] = json!(match mode {
                BootMode::Uefi => "UEFI",
                BootMode::Bios => "Legacy",
            });
        }
        self.request_tagged("PATCH", path, Some(json!({ "Boot": boot })), etag)
            .await?;
        Ok(())
    }

    async fn boot_device(&self) -> Result<BootReadback, BmcError> {
        let path = self.system_path().await?;
        let system = self.request("GET", path, None).await?;
        let boot = &system["Boot"];
        let target = boot["BootSourceOverrideTarget"].as_str();
        let enabled = boot["BootSourceOverrideEnabled"].as_str();
        let device = match (enabled, target) {
            (Some("Disabled"), _) => None,
            (_, Some("Pxe")) => Some(BootDevice::Pxe),
            (_, Some("Hdd")) => Some(BootDevice::Disk),
            (_, Some("Cd" | "UsbCd")) => Some(BootDevice::Cdrom),
            (_, Some("BiosSetup")) => Some(BootDevice::Bios),
            _ => None,
        };
        // What the BMC said when it is no device of ours: no override, or another target.
        let reported = match (device, enabled, target) {
            (Some(_), _, _) => None,
            (None, Some("Disabled"), _) => Some("override disabled".to_owned()),
            (None, _, Some(t)) => Some(t.to_owned()),
            (None, _, None) => None,
        };
        // sushy's emulator (and some BMCs) always answer Continuous: persistence is not
        // something a read can confirm, so it is reported only when the override is off.
        let persistent = match boot["BootSourceOverrideEnabled"].as_str() {
            Some("Disabled") => Some(false),
            _ => None,
        };
        Ok(BootReadback {
            device,
            persistent,
            reported,
        })
    }

    /// `ProcessorSummary.Count`, `MemorySummary.TotalSystemMemoryGiB`, the first processor's
    /// `InstructionSet`, and the MACs of `EthernetInterfaces`.
    async fn inspect(&self) -> Result<Hardware, BmcError> {
        let path = self.system_path().await?;
        let system = self.request("GET", path.clone(), None).await?;
        let mut hardware = Hardware {
            cpus: system["ProcessorSummary"]["Count"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .filter(|c| *c > 0),
            memory_mb: system["MemorySummary"]["TotalSystemMemoryGiB"]
                .as_f64()
                .filter(|g| *g > 0.0)
                .map(|g| (g * 1024.0).round() as u64),
            ..Hardware::default()
        };
        if let Some(processors) = system["Processors"]["@odata.id"].as_str() {
            let collection = self.request("GET", processors.to_owned(), None).await?;
            if let Some(first) = collection["Members"][0]["@odata.id"].as_str() {
                let cpu = self.request("GET", first.to_owned(), None).await?;
                hardware.cpu_arch = match cpu["InstructionSet"].as_str() {
                    Some("x86-64") => Some("x86_64".to_owned()),
                    Some("ARM-A64") => Some("aarch64".to_owned()),
                    Some("PowerISA") => Some("ppc64le".to_owned()),
                    _ => None,
                };
            }
        }
        if let Some(nics) = system["EthernetInterfaces"]["@odata.id"].as_str() {
            let collection = self.request("GET", nics.to_owned(), None).await?;
            let members: Vec<String> = collection["Members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|n| n["@odata.id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            for member in members {
                let nic = self.request("GET", member, None).await?;
                let mac = nic["MACAddress"]
                    .as_str()
                    .or_else(|| nic["PermanentMACAddress"].as_str());
                if let Some(mac) = mac.and_then(MacAddress::parse) {
                    if !hardware.macs.contains(&mac) {
                        hardware.macs.push(mac);
                    }
                }
            }
        }
        Ok(hardware)
    }
}

/// The lock that serialises requests to one origin across drivers and threads.
fn in_flight(origin: &str) -> Arc<std::sync::Mutex<()>> {
    static LANES: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, Arc<std::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let lanes = LANES.get_or_init(Default::default);
    let mut lanes = lanes.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(lanes.entry(origin.to_owned()).or_default())
}

/// `scheme://host[:port]` of an address (`https://` when it has no scheme).
fn origin_of(address: &str) -> Result<String, String> {
    let with_scheme = if address.contains("://") {
        address.to_owned()
    } else {
        format!("https://{address}")
    };
    let (scheme, rest) = with_scheme.split_once("://").unwrap_or(("https", ""));
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "redfish_address {address}: scheme must be http or https"
        ));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "redfish_address {address}: expected scheme://host[:port] (credentials go in redfish_username/redfish_password)"
        ));
    }
    Ok(format!("{scheme}://{authority}"))
}

fn join(origin: &str, path: &str) -> String {
    if path.starts_with("http://") || path.starts_with("https://") {
        path.to_owned()
    } else if path.starts_with('/') {
        format!("{origin}{path}")
    } else {
        format!("{origin}/{path}")
    }
}

/// The message of a Redfish error body (`error.message`, or the first extended message).
fn redfish_message(body: &str) -> Option<String> {
    let json: Json = serde_json::from_str(body).ok()?;
    let error = &json["error"];
    let extended = error["@Message.ExtendedInfo"]
        .as_array()
        .and_then(|infos| infos.first())
        .and_then(|info| info["Message"].as_str());
    extended
        .or_else(|| error["message"].as_str())
        .map(|m| m.lines().next().unwrap_or("").trim().to_owned())
}

/// Standard base64 with padding (only the Basic auth header needs it).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("admin:password", "YWRtaW46cGFzc3dvcmQ="),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("10.0.0.5").unwrap(), "https://10.0.0.5");
        assert_eq!(
            origin_of("http://127.0.0.1:8000/redfish/v1").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert!(origin_of("ftp://x").is_err());
        assert!(origin_of("https://admin:pw@host").is_err());
    }

    #[test]
    fn error_bodies() {
        let body = r#"{"error": {"code": "Base.1.0.GeneralError", "message": "Fake system nope was not found", "@Message.ExtendedInfo": [{"MessageId": "Base.1.0.GeneralError"}]}}"#;
        assert_eq!(
            redfish_message(body).unwrap(),
            "Fake system nope was not found"
        );
    }
}
