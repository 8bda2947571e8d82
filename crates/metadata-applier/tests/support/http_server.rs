//! A minimal HTTP/1.1 server on 127.0.0.1 for collector tests, with the EC2 tree of the
//! upstream tests. Shared with the workspace's end-to-end test through `#[path]`.

#![allow(dead_code, reason = "each test crate uses a part")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server answers for one path.
#[derive(Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

pub(crate) fn ok(body: &str) -> Reply {
    Reply {
        status: 200,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

/// A minimal HTTP/1.1 server: one thread, one request per connection, replies from a table,
/// every request counted as `METHOD path`.
pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub(crate) fn start(routes: HashMap<String, Reply>, silent: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let routes = Arc::new(Mutex::new(routes));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (table, log) = (Arc::clone(&routes), Arc::clone(&hits));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if silent {
                    // Accept and never answer: the client's deadline must end it.
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(30));
                        drop(stream);
                    });
                    continue;
                }
                let _ = answer(stream, &table, &log);
            }
        });
        Server { base, routes, hits }
    }

    pub(crate) fn hits(&self) -> Vec<String> {
        self.hits.lock().expect("hits").clone()
    }
}

fn answer(
    mut stream: TcpStream,
    routes: &Mutex<HashMap<String, Reply>>,
    hits: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    hits.lock().expect("hits").push(format!("{method} {path}"));
    let reply = routes
        .lock()
        .expect("routes")
        .get(path)
        .cloned()
        .unwrap_or(Reply {
            status: 404,
            headers: Vec::new(),
            body: "not found".to_owned(),
        });
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(reply.body.as_bytes())?;
    }
    stream.flush()
}

/// The EC2 tree of the upstream tests (spec §6.5), under /latest/meta-data/.
pub(crate) fn ec2_routes() -> HashMap<String, Reply> {
    let base = "/latest/meta-data/";
    let mut routes = HashMap::new();
    let mut add = |path: &str, body: &str| {
        routes.insert(format!("{base}{path}"), ok(body));
    };
    add("", "local-ipv4\nreservation-id\nlocal-hostname\nami-launch-index\npublic-hostname\nhostname\nami-id\ninstance-action\npublic-ipv4\ninstance-type\nplacement/\nmpi/\nblock-device-mapping/\npublic-keys/\ninstance-id");
    add("local-ipv4", "192.0.2.1");
    add("public-ipv4", "192.0.2.1");
    add("reservation-id", "r-1234");
    add("ami-id", "ami-5678");
    add("instance-id", "i-9abc");
    add("local-hostname", "foo");
    add("public-hostname", "foo");
    add("hostname", "foo");
    add("ami-launch-index", "0");
    add("instance-action", "none");
    add("instance-type", "flavor.small");
    add("placement/", "availability-zone");
    add("placement/availability-zone", "foo-az");
    add("mpi/", "foo-keypair");
    add("mpi/foo-keypair", "192.0.2.1 slots=1");
    add("block-device-mapping/", "ami\nroot\nephemeral0");
    add("block-device-mapping/ami", "vda");
    add("block-device-mapping/root", "/dev/vda");
    add("block-device-mapping/ephemeral0", "/dev/vdb");
    add("public-keys/", "0=foo-keypair");
    add("public-keys/0/", "openssh-key");
    add(
        "public-keys/0/openssh-key",
        "ssh-rsa AAAAAAAAABBBBBBBBCCCCCCCC",
    );
    routes
}
