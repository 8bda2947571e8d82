//! The HTTP collectors against a real HTTP server on 127.0.0.1 serving an EC2-style metadata
//! tree and a request document; the cache protocol through a full cycle.

#![cfg(feature = "http")]

#[path = "support/http_server.rs"]
mod http_server;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http_server::{ec2_routes, ok, Reply, Server};

use metadata_applier::collect::{
    collect_and_store, Cache, CollectContext, Collector, Ec2, Ec2Options, Request, SourceError,
};
use metadata_applier::json::{self, Value};

fn ec2(server: &Server, timeout: Duration) -> Ec2 {
    Ec2::new(Ec2Options {
        metadata_url: format!("{}/latest/meta-data", server.base),
        timeout,
        config_drive_path: None,
        config_drive: false,
    })
}

fn context(dir: &std::path::Path) -> CollectContext {
    CollectContext {
        cache_dir: dir.to_owned(),
    }
}

#[test]
fn ec2_walks_the_metadata_tree() {
    let server = Server::start(ec2_routes(), false);
    let cache = tempfile::tempdir().expect("temp dir");
    let entries = ec2(&server, Duration::from_secs(5))
        .collect(&context(cache.path()))
        .expect("collect");
    assert_eq!(entries.len(), 1);
    let tree = &entries[0].1;
    assert_eq!(entries[0].0, "ec2");
    assert_eq!(
        tree.get("local-ipv4"),
        Some(&Value::String("192.0.2.1".to_owned()))
    );
    assert_eq!(
        json::dumps(tree.get("placement").expect("placement")),
        r#"{"availability-zone": "foo-az"}"#
    );
    assert_eq!(
        json::dumps(tree.get("mpi").expect("mpi")),
        r#"{"foo-keypair": "192.0.2.1 slots=1"}"#
    );
    assert_eq!(
        json::dumps(tree.get("block-device-mapping").expect("bdm")),
        r#"{"ami": "vda", "root": "/dev/vda", "ephemeral0": "/dev/vdb"}"#
    );
    assert_eq!(
        json::dumps(tree.get("public-keys").expect("keys")),
        r#"{"0": {"openssh-key": "ssh-rsa AAAAAAAAABBBBBBBBCCCCCCCC"}}"#
    );
}

#[test]
fn ec2_serves_its_cache_without_asking() {
    let server = Server::start(HashMap::new(), false);
    let cache = tempfile::tempdir().expect("temp dir");
    std::fs::write(cache.path().join("ec2.json"), r#"{"cached": "yes"}"#).expect("cache");
    let entries = ec2(&server, Duration::from_secs(5))
        .collect(&context(cache.path()))
        .expect("collect");
    assert_eq!(json::dumps(&entries[0].1), r#"{"cached": "yes"}"#);
    assert!(server.hits().is_empty(), "{:?}", server.hits());
    // An empty cache is fetched again (and here the service fails).
    std::fs::write(cache.path().join("ec2.json"), "{}").expect("cache");
    assert!(ec2(&server, Duration::from_secs(5))
        .collect(&context(cache.path()))
        .is_err());
}

#[test]
fn ec2_failures_make_the_source_unavailable() {
    let mut routes = HashMap::new();
    routes.insert(
        "/latest/meta-data/".to_owned(),
        Reply {
            status: 403,
            headers: Vec::new(),
            body: String::new(),
        },
    );
    let server = Server::start(routes, false);
    let cache = tempfile::tempdir().expect("temp dir");
    match ec2(&server, Duration::from_secs(5)).collect(&context(cache.path())) {
        Err(SourceError::NotAvailable(reason)) => {
            assert!(reason.contains("403 Forbidden"), "{reason}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[test]
fn ec2_listing_with_a_trailing_newline_is_fine() {
    let mut routes = HashMap::new();
    routes.insert(
        "/latest/meta-data/".to_owned(),
        ok("hostname\nplacement/\n"),
    );
    routes.insert("/latest/meta-data/hostname".to_owned(), ok("foo"));
    routes.insert(
        "/latest/meta-data/placement/".to_owned(),
        ok("availability-zone\n"),
    );
    routes.insert(
        "/latest/meta-data/placement/availability-zone".to_owned(),
        ok("az"),
    );
    let server = Server::start(routes, false);
    let cache = tempfile::tempdir().expect("temp dir");
    let entries = ec2(&server, Duration::from_secs(5))
        .collect(&context(cache.path()))
        .expect("collect");
    assert_eq!(
        json::dumps(&entries[0].1),
        r#"{"hostname": "foo", "placement": {"availability-zone": "az"}}"#
    );
}

#[test]
fn a_server_that_never_answers_is_bounded_by_the_timeout() {
    let server = Server::start(HashMap::new(), true);
    let cache = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let result = ec2(&server, Duration::from_secs(1)).collect(&context(cache.path()));
    assert!(
        matches!(result, Err(SourceError::NotAvailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn ec2_reads_a_config_drive_path_first() {
    let drive = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(drive.path().join("ec2/latest")).expect("mkdir");
    std::fs::write(
        drive.path().join("ec2/latest/meta-data.json"),
        r#"{"from": "drive"}"#,
    )
    .expect("write");
    let cache = tempfile::tempdir().expect("temp dir");
    let mut collector = Ec2::new(Ec2Options {
        metadata_url: "http://127.0.0.1:9/nothing".to_owned(),
        timeout: Duration::from_secs(1),
        config_drive_path: Some(drive.path().to_owned()),
        config_drive: true,
    });
    let entries = collector.collect(&context(cache.path())).expect("collect");
    assert_eq!(json::dumps(&entries[0].1), r#"{"from": "drive"}"#);
}

const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

fn request_routes(body: &str, last_modified: Option<&str>) -> HashMap<String, Reply> {
    let headers = last_modified
        .map(|v| vec![("Last-Modified".to_owned(), v.to_owned())])
        .unwrap_or_default();
    [(
        "/doc".to_owned(),
        Reply {
            status: 200,
            headers,
            body: body.to_owned(),
        },
    )]
    .into()
}

#[test]
fn request_fetches_only_when_last_modified_advances() {
    let server = Server::start(
        request_routes(
            r#"{"int1":1,"strfoo":"foo","map_ab":{"a":"apple","b":"banana"}}"#,
            Some(LAST_MODIFIED),
        ),
        false,
    );
    let cache = tempfile::tempdir().expect("temp dir");
    let mut request = Request::new(
        Some(format!("{}/doc", server.base)),
        Duration::from_secs(5),
        vec!["deployments".to_owned()],
    );
    for _ in 0..3 {
        let entries = request.collect(&context(cache.path())).expect("collect");
        assert_eq!(entries[0].0, "request");
        assert_eq!(
            json::dumps(&entries[0].1),
            r#"{"int1": 1, "strfoo": "foo", "map_ab": {"a": "apple", "b": "banana"}}"#
        );
    }
    let hits = server.hits();
    assert_eq!(
        hits.iter().filter(|h| h.starts_with("HEAD")).count(),
        3,
        "{hits:?}"
    );
    assert_eq!(
        hits.iter().filter(|h| h.starts_with("GET")).count(),
        1,
        "{hits:?}"
    );
    // A newer Last-Modified is fetched; an unparsable one is treated as absent and fetched.
    server.routes.lock().expect("routes").extend(request_routes(
        r#"{"v":2}"#,
        Some("Mon, 07 Nov 1994 08:49:37 GMT"),
    ));
    assert_eq!(
        json::dumps(&request.collect(&context(cache.path())).expect("collect")[0].1),
        r#"{"v": 2}"#
    );
    server.routes.lock().expect("routes").extend(request_routes(
        r#"{"v":3}"#,
        Some("Wed, 21 Oct 2015 07:28:00 +0000"),
    ));
    assert_eq!(
        json::dumps(&request.collect(&context(cache.path())).expect("collect")[0].1),
        r#"{"v": 3}"#
    );
}

#[test]
fn request_without_url_is_not_configured_and_bad_bodies_are_unavailable() {
    let cache = tempfile::tempdir().expect("temp dir");
    let mut unset = Request::new(None, Duration::from_secs(1), Vec::new());
    assert_eq!(
        unset.collect(&context(cache.path())),
        Err(SourceError::NotConfigured)
    );
    for body in ["[1, 2]", "{"] {
        let server = Server::start(request_routes(body, None), false);
        let mut request = Request::new(
            Some(format!("{}/doc", server.base)),
            Duration::from_secs(5),
            Vec::new(),
        );
        assert!(
            matches!(
                request.collect(&context(cache.path())),
                Err(SourceError::NotAvailable(_))
            ),
            "{body}"
        );
    }
}

#[test]
fn a_cycle_stores_changes_and_commits_nothing_by_itself() {
    let server = Server::start(ec2_routes(), false);
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = Cache::new(&dir.path().join("cache"));
    let mut collectors: Vec<Box<dyn Collector>> =
        vec![Box::new(ec2(&server, Duration::from_secs(5)))];
    let first = collect_and_store(&mut collectors, &cache).expect("cycle");
    assert_eq!(first.changed, ["ec2"]);
    assert_eq!(first.paths, [cache.path("ec2")]);
    let list = std::fs::read_to_string(cache.dir().join("os_config_files.json")).expect("list");
    assert_eq!(list, format!("[\"{}\"]", cache.path("ec2").display()));
    // Not committed: still a change next cycle (served from the ec2 cache this time).
    assert_eq!(
        collect_and_store(&mut collectors, &cache)
            .expect("cycle")
            .changed,
        ["ec2"]
    );
    cache.commit("ec2").expect("commit");
    assert!(collect_and_store(&mut collectors, &cache)
        .expect("cycle")
        .changed
        .is_empty());
}

/// A loop device over a vfat image labelled `config-2`, detached on drop.
struct ConfigDriveDevice {
    device: String,
    _image: tempfile::TempDir,
}

impl ConfigDriveDevice {
    /// `None` when this machine cannot make one (not root, no loop devices or tools).
    fn create(meta_data: &str) -> Option<ConfigDriveDevice> {
        use std::process::Command;
        if !is_root() {
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let image = dir.path().join("drive.img");
        let json = dir.path().join("meta-data.json");
        std::fs::write(&json, meta_data).ok()?;
        let run = |program: &str, args: &[&std::ffi::OsStr]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
        };
        let image_arg = image.as_os_str();
        run("truncate", &["-s".as_ref(), "4M".as_ref(), image_arg])?;
        run(
            "mkfs.vfat",
            &["-n".as_ref(), "config-2".as_ref(), image_arg],
        )?;
        run(
            "mmd",
            &[
                "-i".as_ref(),
                image_arg,
                "::ec2".as_ref(),
                "::ec2/latest".as_ref(),
            ],
        )?;
        run(
            "mcopy",
            &[
                "-i".as_ref(),
                image_arg,
                json.as_os_str(),
                "::ec2/latest/meta-data.json".as_ref(),
            ],
        )?;
        let attached = run(
            "losetup",
            &["--find".as_ref(), "--show".as_ref(), image_arg],
        )?;
        let device = String::from_utf8_lossy(&attached.stdout).trim().to_owned();
        Some(ConfigDriveDevice {
            device,
            _image: dir,
        })
    }
}

impl Drop for ConfigDriveDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.device])
            .status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

/// Device probing with the real blkid: a loop device labelled `config-2` is found; where the
/// kernel mounts vfat its metadata wins over the service, else the collector falls back to the
/// service. Either way no mount and no mount point are left behind.
#[test]
fn ec2_probes_a_config_2_device() {
    let Some(drive) = ConfigDriveDevice::create(r#"{"from": "device"}"#) else {
        eprintln!("skipped: needs root, loop devices, dosfstools and mtools");
        return;
    };
    let blkid = std::process::Command::new("blkid")
        .args(["-o", "export"])
        .output()
        .expect("blkid");
    let found = metadata_applier::collect::parse_blkid(&String::from_utf8_lossy(&blkid.stdout))
        .into_iter()
        .find(|d| d.devname == drive.device)
        .expect("blkid lists the loop device");
    assert!(found.is_config_drive(), "{found:?}");

    let server = Server::start(ec2_routes(), false);
    let cache = tempfile::tempdir().expect("temp dir");
    let mut collector = Ec2::new(Ec2Options {
        metadata_url: format!("{}/latest/meta-data", server.base),
        timeout: Duration::from_secs(5),
        config_drive_path: None,
        config_drive: true,
    });
    let entries = collector.collect(&context(cache.path())).expect("collect");
    let vfat = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|f| f.lines().any(|l| l.trim_end().ends_with("vfat")));
    let from_device = json::dumps(&entries[0].1) == r#"{"from": "device"}"#;
    assert_eq!(from_device, vfat, "{}", json::dumps(&entries[0].1));
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    assert!(!mounts.contains(&drive.device), "{mounts}");
    let leftover = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy() == format!("config-2-{}", std::process::id()));
    assert!(!leftover, "mount point left behind");
}
