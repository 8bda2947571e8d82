//! The state machine against the spec's transition table (tests/fixtures/states/transitions.md,
//! the rows of baremetal.md §1.3 as written there): every listed transition is taken by
//! `next`, every (state, event) pair not listed is rejected, and nodes follow the same rules.

use std::collections::BTreeMap;
use std::path::Path;

use baremetal::node::derived_uuid;
use baremetal::states::{self, next, Class, TRANSITIONS};
use baremetal::{Error, Event, Node, State};

/// (from, event) -> to, as the spec's table reads.
fn spec_table() -> BTreeMap<(State, Event), State> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/states/transitions.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut table = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 2, "{line}");
        let froms: Vec<State> = cells[0]
            .split(',')
            .map(|s| s.trim().parse().unwrap_or_else(|e| panic!("{line}: {e}")))
            .collect();
        for item in cells[1].split(';') {
            let item = match item.find('(') {
                Some(i) => &item[..i],
                None => item,
            };
            let (events, to) = item.split_once("->").unwrap_or_else(|| panic!("{line}"));
            let to: State = to.trim().parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            for event in events.split(',') {
                let event: Event = event
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
                for from in &froms {
                    let old = table.insert((*from, event), to);
                    assert!(old.is_none(), "{from} {event} listed twice");
                }
            }
        }
    }
    table
}

#[test]
fn the_spec_lists_93_transitions() {
    assert_eq!(spec_table().len(), 93);
    assert_eq!(TRANSITIONS.len(), 93);
}

#[test]
fn every_transition_of_the_spec_is_taken() {
    for ((from, event), to) in spec_table() {
        assert_eq!(next(from, event).ok(), Some(to), "{from} --{event}-->");
    }
}

#[test]
fn the_crate_table_has_nothing_the_spec_lacks() {
    let spec = spec_table();
    for t in TRANSITIONS {
        assert_eq!(spec.get(&(t.from, t.event)), Some(&t.to), "{t:?}");
    }
}

#[test]
fn every_other_pair_is_rejected_with_ironic_wording() {
    let spec = spec_table();
    let mut rejected = 0;
    for from in State::ALL {
        for event in Event::ALL {
            if spec.contains_key(&(from, event)) {
                continue;
            }
            rejected += 1;
            match next(from, event) {
                Err(e @ Error::InvalidTransition { .. }) => assert_eq!(
                    e.to_string(),
                    format!(
                        "the requested action \"{event}\" can not be performed while it is in \
                         state \"{from}\""
                    )
                ),
                other => panic!("{from} --{event}--> gave {other:?}"),
            }
        }
    }
    assert_eq!(rejected, State::ALL.len() * Event::ALL.len() - 93);
}

#[test]
fn classes_and_targets_as_the_spec_says() {
    let stable = [
        "enroll",
        "manageable",
        "available",
        "active",
        "error",
        "rescue",
    ];
    let hold = ["deploy hold", "clean hold", "service hold"];
    let failed = [
        "inspect failed",
        "deploy failed",
        "clean failed",
        "adopt failed",
        "rescue failed",
        "unrescue failed",
        "service failed",
    ];
    for s in State::ALL {
        let want = if stable.contains(&s.as_str()) {
            Class::Stable
        } else if hold.contains(&s.as_str()) {
            Class::Hold
        } else if failed.contains(&s.as_str()) {
            Class::Failed
        } else {
            Class::Transient
        };
        assert_eq!(s.class(), want, "{s}");
    }
    let target = |s: &str| s.parse::<State>().unwrap().target().map(State::as_str);
    for s in ["verifying", "inspecting", "inspect wait", "inspect failed"] {
        assert_eq!(target(s), Some("manageable"), "{s}");
    }
    for s in [
        "deploying",
        "wait call-back",
        "deploy hold",
        "deploy failed",
        "adopting",
        "adopt failed",
        "unrescuing",
        "unrescue failed",
        "servicing",
        "service wait",
        "service hold",
        "service failed",
    ] {
        assert_eq!(target(s), Some("active"), "{s}");
    }
    for s in [
        "deleting",
        "cleaning",
        "clean wait",
        "clean hold",
        "clean failed",
    ] {
        assert_eq!(target(s), Some("available"), "{s}");
    }
    for s in ["rescuing", "rescue wait", "rescue failed"] {
        assert_eq!(target(s), Some("rescue"), "{s}");
    }
    let deletable: Vec<&str> = State::ALL
        .iter()
        .filter(|s| s.deletion_allowed())
        .map(|s| s.as_str())
        .collect();
    assert_eq!(deletable, ["enroll", "manageable", "adopt failed"]);
    assert_eq!(
        State::ALL
            .iter()
            .filter(|s| s.fails_if_conductor_dies())
            .count(),
        9
    );
    assert_eq!(
        State::ALL
            .iter()
            .filter(|s| s.agent_lookup_allowed())
            .count(),
        9
    );
}

#[test]
fn a_node_walks_enroll_to_active_and_back() {
    let mut n = Node::new(derived_uuid("walk"), "fake-hardware");
    let steps = [
        (Event::Manage, "verifying", Some("manageable")),
        (Event::Done, "manageable", None),
        (Event::Provide, "cleaning", Some("available")),
        (Event::Wait, "clean wait", Some("available")),
        (Event::Resume, "cleaning", Some("available")),
        (Event::Done, "available", None),
        (Event::Deploy, "deploying", Some("active")),
        (Event::Wait, "wait call-back", Some("active")),
        (Event::Resume, "deploying", Some("active")),
        (Event::Done, "active", None),
        (Event::Delete, "deleting", Some("available")),
        (Event::Clean, "cleaning", Some("available")),
        (Event::Done, "available", None),
    ];
    for (i, (event, state, target)) in steps.into_iter().enumerate() {
        n.apply(event, i as u64, None).unwrap();
        assert_eq!(n.provision_state.as_str(), state);
        assert_eq!(
            n.target_provision_state.map(State::as_str),
            target,
            "{event}"
        );
    }
    assert_eq!(n.history.len(), 13);
    assert_eq!(n.history[0].message, "manage: enroll -> verifying");
    let e = n.apply(Event::Inspect, 99, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "the requested action \"inspect\" can not be performed on node \"{}\" while it is \
             in state \"available\"",
            n.uuid
        )
    );
    assert_eq!(n.history.len(), 13, "a refused event leaves no history");
}

#[test]
fn failure_sets_last_error_and_manual_clean_targets_manageable() {
    let mut n = Node::new(derived_uuid("fail"), "fake-hardware");
    n.provision_state = State::Manageable;
    n.apply(Event::Clean, 1, None).unwrap();
    assert_eq!(n.target_provision_state, Some(State::Manageable));
    n.apply(Event::Wait, 2, None).unwrap();
    assert_eq!(n.target_provision_state, Some(State::Manageable));
    n.apply(Event::Fail, 3, Some("disk erase failed")).unwrap();
    assert_eq!(n.provision_state, State::CleanFailed);
    assert_eq!(n.last_error.as_deref(), Some("disk erase failed"));
    assert_eq!(
        n.history.last().unwrap().severity,
        baremetal::node::Severity::Error
    );
    n.apply(Event::Manage, 4, None).unwrap();
    assert_eq!(n.provision_state, State::Manageable);
    assert_eq!(n.last_error, None);
    assert_eq!(n.target_provision_state, None);
    assert_eq!(states::transitions_from(State::Manageable).count(), 4);
}
