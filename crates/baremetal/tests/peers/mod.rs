//! Reference BMCs on 127.0.0.1 for the power tests (and the `baremetal` tool's tests, which
//! include this file): sushy-tools' fake Redfish emulator with Basic auth, optionally over
//! TLS, and pyghmi's IPMI BMC (`scripts/peers/fakebmc.py`). Each peer is killed when its
//! handle drops. The venvs come from `scripts/test.sh` (`SUSHY_VENV`, `PYGHMI_VENV`; else
//! `target/peers`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const PASSWORD: &str = "s3cret-Pa55";
pub(crate) fn repo() -> PathBuf {
    // This file is also compiled into the workspace root's tests.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("scripts/peers").is_dir() {
        here.to_owned()
    } else {
        here.join("../..")
    }
}

pub(crate) fn venv(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/peers").join(name));
    assert!(
        path.join("bin/python").exists(),
        "{var}: no venv at {} (scripts/test.sh creates it)",
        path.display()
    );
    path
}

/// Kills the peer when the test ends, however it ends.
pub(crate) struct Peer {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    pub(crate) fn spawn(mut command: Command) -> Peer {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start peer");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Peer { child, output }
    }

    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

pub(crate) fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Sushy {
    pub(crate) peer: Peer,
    pub(crate) origin: String,
    _dir: tempfile::TempDir,
}

/// Starts the emulator with Basic auth (admin / PASSWORD), over HTTPS when `tls` names a
/// certificate and key.
pub(crate) fn start_sushy(tls: Option<(&Path, &Path)>) -> Sushy {
    let venv = venv("SUSHY_VENV", "sushy-tools");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let status = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import bcrypt,sys;print('admin:'+bcrypt.hashpw(sys.argv[1].encode(),bcrypt.gensalt(4)).decode())",
            PASSWORD,
        ])
        .stdout(std::fs::File::create(&htpasswd).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let port = free_tcp_port();
    let mut command = Command::new(venv.join("bin/sushy-emulator"));
    command
        .arg("--config")
        .arg(repo().join("scripts/peers/sushy-emulator.conf"))
        .env("SUSHY_PORT", port.to_string())
        .env("SUSHY_STATE_DIR", dir.path())
        .env("SUSHY_AUTH_FILE", &htpasswd);
    let scheme = if let Some((cert, key)) = tls {
        command
            .arg("--ssl-certificate")
            .arg(cert)
            .arg("--ssl-key")
            .arg(key);
        "https"
    } else {
        "http"
    };
    let peer = Peer::spawn(command);
    // Up once the port accepts connections.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sushy-emulator did not start:\n{}",
            peer.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Sushy {
        peer,
        origin: format!("{scheme}://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// The peer's own view of a system, by a plain HTTP/1.0 GET (not through our driver).
pub(crate) fn sushy_system(origin: &str, system: &str) -> serde_json::Value {
    let port: u16 = origin.rsplit(':').next().unwrap().parse().unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = {
        // A second, independent base64 (the test must not trust the driver's).
        let out = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = out;
        out.stdin
            .take()
            .unwrap()
            .write_all(format!("admin:{PASSWORD}").as_bytes())
            .unwrap();
        String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap()
    };
    write!(
        stream,
        "GET /redfish/v1/Systems/{system} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

pub(crate) const NODE0: &str = "27946b59-9e44-4fa7-8e91-f3527a1ef094";
pub(crate) const NODE1: &str = "5f0ab0c2-4c46-4a2b-9d6c-0e9c6b6b0b02";
pub(crate) const NODE2: &str = "9a1c7e52-3b0d-4c55-8f2e-6d1b2c3d4e03";

pub(crate) struct FakeBmc {
    pub(crate) peer: Peer,
    pub(crate) port: u16,
}

pub(crate) fn start_fakebmc() -> FakeBmc {
    let venv = venv("PYGHMI_VENV", "pyghmi");
    let port = free_udp_port();
    let mut command = Command::new(venv.join("bin/python"));
    command
        .arg("-u")
        .arg(repo().join("scripts/peers/fakebmc.py"))
        .args(["--port", &port.to_string(), "--password", PASSWORD]);
    let peer = Peer::spawn(command);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !peer.output().contains("listening") {
        assert!(
            Instant::now() < deadline,
            "fakebmc did not start:\n{}",
            peer.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    FakeBmc { peer, port }
}

/// The BMC's power as the real ipmitool sees it (independent of our driver).
pub(crate) fn ipmitool_power(port: u16) -> String {
    let out = Command::new("ipmitool")
        .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "admin", "-E", "power", "status"])
        .env("IPMI_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A port on 127.0.0.1 that accepts connections and never says a word (a BMC that hangs).
pub(crate) fn silent_tcp_bmc() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}
