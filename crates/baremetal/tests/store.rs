//! One suite run against every `NodeStore`: the in-memory one and the SQLite one. Then what
//! only a shared file can show: two connections in two threads, and two processes, updating
//! the same node at once without losing a write.

use std::sync::Arc;

use baremetal::node::derived_uuid;
#[cfg(feature = "sqlite")]
use baremetal::store::SqliteStore;
use baremetal::store::{modify, MemoryStore, NodeStore};
use baremetal::{Error, Event, MacAddress, Node, Port, Secret, State, Value};

fn node(name: &str, macs: &[&str]) -> Node {
    let mut n = Node::new(derived_uuid(name), "ipmi");
    n.name = Some(name.to_owned());
    n.driver_info
        .insert("ipmi_address".into(), Value::Text("192.0.2.1".into()));
    n.driver_info.insert(
        "ipmi_password".into(),
        Value::Secret(Secret::new("hunter2")),
    );
    for m in macs {
        n.ports.push(Port::new(MacAddress::parse(m).unwrap()));
    }
    n
}

fn create_and_get(store: &dyn NodeStore) {
    let n = node("ctl-0", &["52:54:00:00:00:01"]);
    let created = store.create(&n).unwrap();
    assert_eq!(created.version, 1);
    let by_name = store.get("ctl-0").unwrap();
    let by_uuid = store.get(&n.uuid.to_string()).unwrap();
    let by_upper = store.get(&n.uuid.to_string().to_uppercase()).unwrap();
    assert_eq!(by_name, created);
    assert_eq!(by_uuid, created);
    assert_eq!(by_upper, created);
    let secret = by_name.node.driver_info["ipmi_password"]
        .as_secret()
        .unwrap()
        .expose()
        .to_owned();
    assert_eq!(secret, "hunter2");
    match store.get("nope") {
        Err(e @ Error::NotFound { .. }) => {
            assert_eq!(e.to_string(), "node \"nope\" could not be found")
        }
        other => panic!("{other:?}"),
    }
}

fn list_is_sorted_by_uuid(store: &dyn NodeStore) {
    for name in ["c", "a", "b", "d"] {
        store.create(&node(name, &[])).unwrap();
    }
    let uuids: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|v| v.node.uuid.to_string())
        .collect();
    let mut sorted = uuids.clone();
    sorted.sort();
    assert_eq!(uuids, sorted);
    assert_eq!(uuids.len(), 4);
}

fn update_is_optimistic(store: &dyn NodeStore) {
    let v1 = store.create(&node("n", &["52:54:00:00:00:01"])).unwrap();
    let mut n = v1.node.clone();
    n.apply(Event::Manage, 1, None).unwrap();
    n.ports
        .push(Port::new(MacAddress::parse("52:54:00:00:00:02").unwrap()));
    let v2 = store.update(&n, 1).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(store.get("n").unwrap(), v2);
    // A writer still holding version 1 loses.
    let mut stale = v1.node.clone();
    stale.maintenance = true;
    match store.update(&stale, 1) {
        Err(e @ Error::VersionConflict { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "node {} was changed concurrently (expected version 1, found 2)",
                n.uuid
            )
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.get("n").unwrap().node.provision_state,
        State::Verifying
    );
    // Renaming works and frees the old name.
    n.name = Some("renamed".into());
    store.update(&n, 2).unwrap();
    assert!(matches!(store.get("n"), Err(Error::NotFound { .. })));
    assert_eq!(store.get("renamed").unwrap().version, 3);
    // Updating a node that is not there.
    let ghost = node("ghost", &[]);
    assert!(matches!(
        store.update(&ghost, 1),
        Err(Error::NotFound { .. })
    ));
}

fn uniqueness(store: &dyn NodeStore) {
    let a = node("a", &["52:54:00:00:00:01"]);
    store.create(&a).unwrap();
    let mut same_uuid = node("other", &[]);
    same_uuid.uuid = a.uuid;
    assert!(matches!(
        store.create(&same_uuid),
        Err(Error::DuplicateUuid { .. })
    ));
    let mut same_name = node("a", &[]);
    same_name.uuid = derived_uuid("a2");
    assert!(matches!(
        store.create(&same_name),
        Err(Error::DuplicateName { .. })
    ));
    let same_mac = node("b", &["52:54:00:00:00:01"]);
    match store.create(&same_mac) {
        Err(e @ Error::DuplicateMac { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "a port with MAC address 52:54:00:00:00:01 already exists (node {})",
                a.uuid
            )
        ),
        other => panic!("{other:?}"),
    }
    // Nothing of the refused nodes was kept.
    assert_eq!(store.list().unwrap().len(), 1);
    // An update cannot take another node's MAC or name either.
    let b = store.create(&node("b", &["52:54:00:00:00:02"])).unwrap();
    let mut grab = b.node.clone();
    grab.ports
        .push(Port::new(MacAddress::parse("52:54:00:00:00:01").unwrap()));
    assert!(matches!(
        store.update(&grab, 1),
        Err(Error::DuplicateMac { .. })
    ));
    let mut rename = b.node.clone();
    rename.name = Some("a".into());
    assert!(matches!(
        store.update(&rename, 1),
        Err(Error::DuplicateName { .. })
    ));
    assert_eq!(store.get("b").unwrap().version, 1);
    // A node may keep its own MACs across updates.
    assert_eq!(store.update(&b.node, 1).unwrap().version, 2);
}

fn invalid_nodes_are_refused(store: &dyn NodeStore) {
    let bad_name = node("has space", &[]);
    match store.create(&bad_name) {
        Err(e @ Error::InvalidNode { .. }) => assert!(e.to_string().contains("name"), "{e}"),
        other => panic!("{other:?}"),
    }
    let uuid_name = {
        let mut n = node("x", &[]);
        n.name = Some(derived_uuid("y").to_string());
        n
    };
    assert!(matches!(
        store.create(&uuid_name),
        Err(Error::InvalidNode { .. })
    ));
    let twice = node("twice", &["52:54:00:00:00:09", "52:54:00:00:00:09"]);
    assert!(matches!(
        store.create(&twice),
        Err(Error::InvalidNode { .. })
    ));
    assert!(store.list().unwrap().is_empty());
}

fn delete_rules(store: &dyn NodeStore) {
    let v = store.create(&node("gone", &["52:54:00:00:00:01"])).unwrap();
    assert!(matches!(
        store.delete("gone", 7),
        Err(Error::VersionConflict { .. })
    ));
    let mut active = v.node.clone();
    active.provision_state = State::Active;
    store.update(&active, 1).unwrap();
    match store.delete("gone", 2) {
        Err(e @ Error::DeleteNotAllowed { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "node {} cannot be deleted while it is in state \"active\"",
                v.node.uuid
            )
        ),
        other => panic!("{other:?}"),
    }
    let mut manageable = active.clone();
    manageable.provision_state = State::Manageable;
    store.update(&manageable, 2).unwrap();
    store.delete("gone", 3).unwrap();
    assert!(matches!(store.get("gone"), Err(Error::NotFound { .. })));
    assert!(matches!(
        store.delete("gone", 3),
        Err(Error::NotFound { .. })
    ));
    // Its MAC is free again.
    store
        .create(&node("again", &["52:54:00:00:00:01"]))
        .unwrap();
}

fn modify_retries_and_passes_errors(store: &dyn NodeStore) {
    store.create(&node("m", &[])).unwrap();
    let v = modify(store, "m", 3, |n| {
        n.apply(Event::Manage, 5, None).map(|_| ())
    })
    .unwrap();
    assert_eq!(v.version, 2);
    assert_eq!(v.node.provision_state, State::Verifying);
    // The closure's own error comes back untouched, and nothing is written.
    let err = modify(store, "m", 3, |n| {
        n.apply(Event::Deploy, 6, None).map(|_| ())
    })
    .unwrap_err();
    assert!(matches!(err, Error::InvalidTransition { .. }), "{err:?}");
    assert_eq!(store.get("m").unwrap().version, 2);
}

/// Two threads, each through its own handle, add 1 to a counter `per_thread` times.
fn concurrent_increments(handles: [Arc<dyn NodeStore>; 2], per_thread: u64) {
    handles[0].create(&node("shared", &[])).unwrap();
    let threads: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(t, store)| {
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    modify(store.as_ref(), "shared", 10_000, |n| {
                        let c = n.extra.get("counter").and_then(Value::as_int).unwrap_or(0);
                        n.extra.insert("counter".into(), Value::Int(c + 1));
                        n.extra.insert(format!("t{t}"), Value::Int(i as i64));
                        Ok(())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn check_counter(store: &dyn NodeStore, want: u64) {
    let v = store.get("shared").unwrap();
    assert_eq!(v.node.extra["counter"].as_int(), Some(want as i64));
    assert_eq!(v.version, want + 1);
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[test]
            fn $case() {
                super::$case(&baremetal::store::MemoryStore::new());
            })*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(#[test]
            fn $case() {
                let dir = tempfile::tempdir().unwrap();
                let store = baremetal::store::SqliteStore::open(&dir.path().join("nodes.db")).unwrap();
                super::$case(&store);
            })*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite_in_memory {
            $(#[test]
            fn $case() {
                super::$case(&baremetal::store::SqliteStore::open_in_memory().unwrap());
            })*
        }
    };
}

suite!(
    create_and_get,
    list_is_sorted_by_uuid,
    update_is_optimistic,
    uniqueness,
    invalid_nodes_are_refused,
    delete_rules,
    modify_retries_and_passes_errors,
);

#[test]
fn memory_two_threads_lose_no_update() {
    let store: Arc<dyn NodeStore> = Arc::new(MemoryStore::new());
    concurrent_increments([store.clone(), store.clone()], 200);
    check_counter(store.as_ref(), 400);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_two_connections_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodes.db");
    let a: Arc<dyn NodeStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Arc<dyn NodeStore> = Arc::new(SqliteStore::open(&path).unwrap());
    concurrent_increments([a.clone(), b], 100);
    check_counter(a.as_ref(), 200);
    assert!(
        dir.path().join("nodes.db-wal").exists(),
        "write-ahead log in use"
    );
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_file_is_private_and_persists() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodes.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let mut n = node("kept", &["52:54:00:00:00:01"]);
        n.apply(Event::Manage, 1, None).unwrap();
        n.set_power_state(baremetal::PowerState::Off, 2);
        store.create(&n).unwrap();
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let store = SqliteStore::open(&path).unwrap();
    let got = store.get("kept").unwrap();
    let mut want = node("kept", &["52:54:00:00:00:01"]);
    want.apply(Event::Manage, 1, None).unwrap();
    want.set_power_state(baremetal::PowerState::Off, 2);
    assert_eq!(got.node, want);
    // The password is in the file (as in Ironic's database), never in Debug output.
    assert!(!format!("{got:?}").contains("hunter2"));
}

/// Run as a child process by `sqlite_two_processes_lose_no_update`: increments the counter of
/// the database named in the environment. A no-op in a normal test run.
#[cfg(feature = "sqlite")]
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os("BAREMETAL_STORE_CHILD_DB") else {
        return;
    };
    let store = SqliteStore::open(std::path::Path::new(&path)).unwrap();
    for _ in 0..100 {
        modify(&store, "shared", 10_000, |n| {
            let c = n.extra.get("counter").and_then(Value::as_int).unwrap_or(0);
            n.extra.insert("counter".into(), Value::Int(c + 1));
            Ok(())
        })
        .unwrap();
    }
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_two_processes_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodes.db");
    SqliteStore::open(&path)
        .unwrap()
        .create(&node("shared", &[]))
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_writer", "--test-threads=1", "--quiet"])
                .env("BAREMETAL_STORE_CHILD_DB", &path)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    check_counter(&SqliteStore::open(&path).unwrap(), 200);
}
