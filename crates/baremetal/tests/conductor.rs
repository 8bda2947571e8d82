//! The conductor over a store: provision verbs walk Ironic's states with fake-hardware nodes,
//! invalid verbs change nothing, and reservations keep two workers off one node while a
//! reservation left by a dead process is taken over.

use std::sync::Arc;

use baremetal::conductor::Conductor;
use baremetal::node::{Node, Value};
use baremetal::power::{Controller, DriverOptions, PowerAction};
use baremetal::store::{MemoryStore, NodeStore, Versioned};
use baremetal::{Error, Event, PowerState, State};

fn conductor_with(node: Node) -> (Conductor, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    store.create(&node).unwrap();
    let conductor = Conductor::new(
        Arc::clone(&store) as Arc<dyn NodeStore>,
        Controller::default(),
        DriverOptions::default(),
    );
    (conductor, store)
}

fn fake_node(name: &str) -> Node {
    let mut node = Node::new(baremetal::node::derived_uuid(name), "fake-hardware");
    node.name = Some(name.to_owned());
    node
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn verbs_walk_the_state_machine() {
    let (conductor, store) = conductor_with(fake_node("n0"));
    let rt = runtime();
    let state = |id| store.get(id).unwrap().node.provision_state;
    rt.block_on(conductor.provision("n0", Event::Manage))
        .unwrap();
    assert_eq!(state("n0"), State::Manageable);
    rt.block_on(conductor.provision("n0", Event::Inspect))
        .unwrap();
    assert_eq!(state("n0"), State::Manageable);
    rt.block_on(conductor.provision("n0", Event::Provide))
        .unwrap();
    assert_eq!(state("n0"), State::Available);

    // deploy needs an image; refused before any change.
    let err = rt
        .block_on(conductor.provision("n0", Event::Deploy))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node n0: instance_info: cannot deploy: image_source is missing"
    );
    assert_eq!(state("n0"), State::Available);
    let Versioned { mut node, version } = store.get("n0").unwrap();
    node.instance_info.insert(
        "image_source".to_owned(),
        Value::Text("http://127.0.0.1/i.qcow2".to_owned()),
    );
    store.update(&node, version).unwrap();
    rt.block_on(conductor.provision("n0", Event::Deploy))
        .unwrap();
    let node = store.get("n0").unwrap().node;
    assert_eq!(node.provision_state, State::WaitCallBack);
    assert_eq!(node.target_provision_state, Some(State::Active));
    assert_eq!(node.power_state, Some(PowerState::On));
    assert_eq!(node.reservation, None, "released after the verb");

    // Not allowed now: Ironic's words, nothing changed.
    let err = rt
        .block_on(conductor.provision("n0", Event::Provide))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTransition { .. }), "{err}");
    assert_eq!(state("n0"), State::WaitCallBack);

    rt.block_on(conductor.provision("n0", Event::Abort))
        .unwrap();
    assert_eq!(state("n0"), State::DeployFailed);
    rt.block_on(conductor.provision("n0", Event::Delete))
        .unwrap();
    let node = store.get("n0").unwrap().node;
    assert_eq!(node.provision_state, State::Available);
    assert_eq!(node.power_state, Some(PowerState::Off));
    assert!(
        node.instance_info.is_empty(),
        "the next deploy names its image again"
    );
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_live_reservation_locks_the_node() {
    let mut node = fake_node("busy");
    // Held on another host: nothing here can prove it gone.
    node.reservation = Some("conductor-2.example.com:4242:987654".to_owned());
    let (conductor, store) = conductor_with(node);
    let rt = runtime();
    let err = rt
        .block_on(conductor.power("busy", PowerAction::On))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node busy is locked by conductor-2.example.com:4242:987654, please retry after the \
         current operation is completed"
    );
    let err = rt
        .block_on(conductor.provision("busy", Event::Manage))
        .unwrap_err();
    assert!(matches!(err, Error::NodeLocked { .. }));
    let node = store.get("busy").unwrap().node;
    assert_eq!(node.provision_state, State::Enroll);
    assert_eq!(node.power_state, None);
}

#[test]
fn a_live_process_of_this_host_keeps_its_reservation() {
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    let holder = format!("{}:{pid}:{start}", hostname());
    let mut node = fake_node("held");
    node.reservation = Some(holder.clone());
    let (conductor, store) = conductor_with(node);
    let err = runtime()
        .block_on(conductor.power("held", PowerAction::On))
        .unwrap_err();
    assert!(
        matches!(&err, Error::NodeLocked { holder: h, .. } if *h == holder),
        "{err}"
    );
    let _ = child.kill();
    let _ = child.wait();
    // Gone now: the next action takes over.
    runtime()
        .block_on(conductor.power("held", PowerAction::On))
        .unwrap();
    assert_eq!(store.get("held").unwrap().node.reservation, None);
}

#[test]
fn a_node_left_mid_operation_by_a_dead_process_fails_when_taken_over() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let mut node = fake_node("stuck");
    node.provision_state = State::Deploying;
    node.target_provision_state = Some(State::Active);
    node.target_power_state = Some(PowerState::Rebooting);
    node.reservation = Some(format!("{}:{pid}:1", hostname()));
    let (conductor, store) = conductor_with(node);
    runtime()
        .block_on(conductor.power("stuck", PowerAction::Off))
        .unwrap();
    let node = store.get("stuck").unwrap().node;
    assert_eq!(node.provision_state, State::DeployFailed);
    assert!(
        node.history.iter().any(|h| h
            .message
            .starts_with("fail: deploying -> deploy failed: the process")
            && h.message.ends_with("exited while it was deploying")),
        "{:?}",
        node.history
    );
    assert_eq!(node.target_power_state, None);
}

#[test]
fn verbs_this_conductor_does_not_carry_out_are_refused_before_any_change() {
    let (conductor, store) = conductor_with(fake_node("plain"));
    let rt = runtime();
    for event in [Event::Adopt, Event::Rescue, Event::Done, Event::Fail] {
        let err = rt
            .block_on(conductor.provision("plain", event))
            .unwrap_err();
        assert!(matches!(err, Error::NotSupported { .. }), "{err}");
    }
    rt.block_on(conductor.provision("plain", Event::Manage))
        .unwrap();
    // Manual cleaning comes back to manageable.
    rt.block_on(conductor.provision("plain", Event::Clean))
        .unwrap();
    assert_eq!(
        store.get("plain").unwrap().node.provision_state,
        State::Manageable
    );
}

#[test]
fn a_reservation_left_by_a_dead_process_is_taken_over() {
    // A process of this host that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let stale = format!("{}:{pid}:1", hostname());
    let mut node = fake_node("orphan");
    node.reservation = Some(stale.clone());
    let (conductor, store) = conductor_with(node);
    let (node, outcome) = runtime()
        .block_on(conductor.power("orphan", PowerAction::On))
        .unwrap();
    assert_eq!(outcome.after, PowerState::On);
    assert_eq!(node.power_state, Some(PowerState::On));
    let node = store.get("orphan").unwrap().node;
    assert_eq!(node.reservation, None);
    assert!(node
        .history
        .iter()
        .any(|h| h.message == format!("took over the reservation of {stale}, which has exited")));
}
