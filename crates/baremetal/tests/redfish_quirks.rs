//! Redfish BMC behaviour sushy-tools' emulator does not have, from a small HTTP server on
//! 127.0.0.1 that behaves like such BMCs: a PATCH without `If-Match: <ETag>` is refused
//! (428), a stale ETag too (412), and a system addressed by name redirects to its id.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baremetal::node::{Node, Value};
use baremetal::power::{driver_for, BootDevice, BootSetting, Controller, DriverOptions, Policy};
use baremetal::{PowerState, Secret};

#[derive(Default)]
struct Bmc {
    etag: u32,
    target: String,
    requests: Vec<String>,
}

/// Serves one system at /redfish/v1/Systems/1 (and a redirect from /redfish/v1/Systems/web1).
fn serve(bmc: Arc<Mutex<Bmc>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let Some(request_line) = head.first().cloned() else {
                continue;
            };
            let header = |name: &str| {
                head.iter().find_map(|h| {
                    h.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_owned())
                })
            };
            let length: usize = header("content-length").map_or(0, |l| l.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut b = bmc.lock().unwrap();
            b.requests.push(format!(
                "{request_line} if-match={}",
                header("if-match").unwrap_or_default()
            ));
            let etag = format!("W/\"{}\"", b.etag);
            let (status, extra, reply) =
                if request_line.starts_with("GET /redfish/v1/Systems/web1 ") {
                    (
                        307,
                        "Location: /redfish/v1/Systems/1\r\n".to_owned(),
                        String::new(),
                    )
                } else if request_line.starts_with("GET /redfish/v1/Systems/1 ") {
                    let system = serde_json::json!({
                        "PowerState": "Off",
                        "Boot": {"BootSourceOverrideTarget": b.target,
                                 "BootSourceOverrideEnabled": "Once"},
                    });
                    (200, format!("ETag: {etag}\r\n"), system.to_string())
                } else if request_line.starts_with("PATCH /redfish/v1/Systems/1 ") {
                    match header("if-match") {
                        None => (
                            428,
                            String::new(),
                            r#"{"error":{"message":"If-Match required"}}"#.to_owned(),
                        ),
                        Some(tag) if tag != etag => (
                            412,
                            String::new(),
                            r#"{"error":{"message":"stale ETag"}}"#.to_owned(),
                        ),
                        Some(_) => {
                            let patch: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            b.target = patch["Boot"]["BootSourceOverrideTarget"]
                                .as_str()
                                .unwrap()
                                .to_owned();
                            b.etag += 1;
                            (204, String::new(), String::new())
                        }
                    }
                } else {
                    (404, String::new(), String::new())
                };
            drop(b);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{reply}",
                reply.len()
            );
        }
    });
    port
}

fn node(port: u16, system: &str) -> Node {
    let mut node = Node::new(baremetal::node::derived_uuid(system), "redfish");
    node.name = Some("quirky".to_owned());
    for (k, v) in [
        (
            "redfish_address",
            Value::Text(format!("http://127.0.0.1:{port}")),
        ),
        (
            "redfish_system_id",
            Value::Text(format!("/redfish/v1/Systems/{system}")),
        ),
        ("redfish_username", Value::Text("admin".to_owned())),
        ("redfish_password", Value::Secret(Secret::new("pw"))),
    ] {
        node.driver_info.insert(k.to_owned(), v);
    }
    node
}

#[test]
fn patch_carries_the_etag_and_redirects_keep_credentials_on_the_same_origin() {
    let bmc = Arc::new(Mutex::new(Bmc {
        etag: 7,
        target: "Hdd".to_owned(),
        ..Bmc::default()
    }));
    let port = serve(Arc::clone(&bmc));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let controller = Controller::new(Policy {
        first_backoff: Duration::from_millis(20),
        ..Policy::default()
    });
    let driver = driver_for(&node(port, "1"), &DriverOptions::default()).unwrap();
    let readback = rt
        .block_on(controller.set_boot_device(
            driver.as_ref(),
            BootSetting {
                device: BootDevice::Pxe,
                persistent: false,
                mode: None,
            },
        ))
        .unwrap();
    assert_eq!(readback.device, Some(BootDevice::Pxe));
    let requests = bmc.lock().unwrap().requests.clone();
    assert!(
        requests.contains(&"PATCH /redfish/v1/Systems/1 HTTP/1.1 if-match=W/\"7\"".to_owned()),
        "{requests:?}"
    );

    // Addressed by name: the redirect is followed with the credentials (same origin).
    let by_name = driver_for(&node(port, "web1"), &DriverOptions::default()).unwrap();
    assert_eq!(
        rt.block_on(controller.power_state(by_name.as_ref()))
            .unwrap(),
        PowerState::Off
    );
}
