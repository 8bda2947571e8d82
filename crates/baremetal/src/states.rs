//! Ironic's provision state machine as data (spec §1.2–1.4): the states and their classes,
//! the events, and [`TRANSITIONS`], the 93 transitions of `ironic/common/state_machine.py`.
//! [`next`] is a lookup in that table and nothing else.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A provision state. `deploy complete` (a target only) and `deleted` (transitory) are not
/// states a node rests in and are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    // Stable.
    Enroll,
    Manageable,
    Available,
    Active,
    Error,
    Rescue,
    // Transient.
    Verifying,
    Inspecting,
    InspectWait,
    Deploying,
    WaitCallBack,
    Cleaning,
    CleanWait,
    Deleting,
    Adopting,
    Rescuing,
    RescueWait,
    Unrescuing,
    Servicing,
    ServiceWait,
    // Hold: waiting for an operator to unhold.
    DeployHold,
    CleanHold,
    ServiceHold,
    // Failed: waiting for an operator.
    InspectFailed,
    DeployFailed,
    CleanFailed,
    AdoptFailed,
    RescueFailed,
    UnrescueFailed,
    ServiceFailed,
}

/// How the spec classifies a state (§1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Where a node rests: enroll, manageable, available, active, error, rescue.
    Stable,
    /// Work in progress (the conductor or the agent acts).
    Transient,
    /// Deliberately paused; `unhold` or `abort` moves on.
    Hold,
    /// Something failed; an operator decides.
    Failed,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 30] = [
        State::Enroll,
        State::Manageable,
        State::Available,
        State::Active,
        State::Error,
        State::Rescue,
        State::Verifying,
        State::Inspecting,
        State::InspectWait,
        State::Deploying,
        State::WaitCallBack,
        State::Cleaning,
        State::CleanWait,
        State::Deleting,
        State::Adopting,
        State::Rescuing,
        State::RescueWait,
        State::Unrescuing,
        State::Servicing,
        State::ServiceWait,
        State::DeployHold,
        State::CleanHold,
        State::ServiceHold,
        State::InspectFailed,
        State::DeployFailed,
        State::CleanFailed,
        State::AdoptFailed,
        State::RescueFailed,
        State::UnrescueFailed,
        State::ServiceFailed,
    ];

    /// Ironic's spelling (`wait call-back`, `inspect failed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Enroll => "enroll",
            State::Manageable => "manageable",
            State::Available => "available",
            State::Active => "active",
            State::Error => "error",
            State::Rescue => "rescue",
            State::Verifying => "verifying",
            State::Inspecting => "inspecting",
            State::InspectWait => "inspect wait",
            State::Deploying => "deploying",
            State::WaitCallBack => "wait call-back",
            State::Cleaning => "cleaning",
            State::CleanWait => "clean wait",
            State::Deleting => "deleting",
            State::Adopting => "adopting",
            State::Rescuing => "rescuing",
            State::RescueWait => "rescue wait",
            State::Unrescuing => "unrescuing",
            State::Servicing => "servicing",
            State::ServiceWait => "service wait",
            State::DeployHold => "deploy hold",
            State::CleanHold => "clean hold",
            State::ServiceHold => "service hold",
            State::InspectFailed => "inspect failed",
            State::DeployFailed => "deploy failed",
            State::CleanFailed => "clean failed",
            State::AdoptFailed => "adopt failed",
            State::RescueFailed => "rescue failed",
            State::UnrescueFailed => "unrescue failed",
            State::ServiceFailed => "service failed",
        }
    }

    pub fn class(self) -> Class {
        use State::*;
        match self {
            Enroll | Manageable | Available | Active | Error | Rescue => Class::Stable,
            DeployHold | CleanHold | ServiceHold => Class::Hold,
            InspectFailed | DeployFailed | CleanFailed | AdoptFailed | RescueFailed
            | UnrescueFailed | ServiceFailed => Class::Failed,
            _ => Class::Transient,
        }
    }

    pub fn is_stable(self) -> bool {
        self.class() == Class::Stable
    }

    /// Hold and failed states: the node waits for an operator.
    pub fn waits_for_operator(self) -> bool {
        matches!(self.class(), Class::Hold | Class::Failed)
    }

    /// A failed state (`deploy failed`, …).
    pub fn is_failed(self) -> bool {
        self.class() == Class::Failed
    }

    /// `error` or a failed state.
    pub fn is_error(self) -> bool {
        self == State::Error || self.is_failed()
    }

    /// `cleaning`, `clean wait`, `clean hold`, `clean failed`.
    pub fn is_clean_state(self) -> bool {
        matches!(
            self,
            State::Cleaning | State::CleanWait | State::CleanHold | State::CleanFailed
        )
    }

    /// `target_provision_state` while in this state (§1.2); `None` for stable states.
    /// Manual cleaning, whose target is manageable, is handled by `Node::apply`.
    pub fn target(self) -> Option<State> {
        use State::*;
        match self {
            Verifying | Inspecting | InspectWait | InspectFailed => Some(Manageable),
            Deploying | WaitCallBack | DeployHold | DeployFailed | Adopting | AdoptFailed
            | Unrescuing | UnrescueFailed | Servicing | ServiceWait | ServiceHold
            | ServiceFailed => Some(Active),
            Deleting | Cleaning | CleanWait | CleanHold | CleanFailed => Some(Available),
            Rescuing | RescueWait | RescueFailed => Some(Rescue),
            Enroll | Manageable | Available | Active | Error | Rescue => None,
        }
    }

    /// Whether a node in this state may be deleted: enroll, manageable, adopt failed.
    pub fn deletion_allowed(self) -> bool {
        matches!(self, State::Enroll | State::Manageable | State::AdoptFailed)
    }

    /// States a node cannot stay in when its conductor dies: it is moved to the failed state.
    pub fn fails_if_conductor_dies(self) -> bool {
        use State::*;
        matches!(
            self,
            Deploying
                | Cleaning
                | Verifying
                | Inspecting
                | Adopting
                | Rescuing
                | Unrescuing
                | Deleting
                | Servicing
        )
    }

    /// States in which the deploy agent may look the node up and heartbeat.
    pub fn agent_lookup_allowed(self) -> bool {
        use State::*;
        matches!(
            self,
            Deploying
                | WaitCallBack
                | Cleaning
                | CleanWait
                | Inspecting
                | InspectWait
                | Rescuing
                | RescueWait
                | ServiceWait
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::UnknownName {
                kind: "provision state",
                value: s.to_owned(),
            })
    }
}

/// An event of the state machine: the clients' verbs and the conductor's outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    // Caused by clients.
    Manage,
    Provide,
    Inspect,
    Clean,
    Adopt,
    Deploy,
    Rebuild,
    Delete,
    Rescue,
    Unrescue,
    Service,
    Abort,
    Unhold,
    // Emitted by the conductor (and `clean`, when it leaves `deleting`).
    Done,
    Fail,
    Wait,
    Resume,
    Hold,
}

impl Event {
    pub const ALL: [Event; 18] = [
        Event::Manage,
        Event::Provide,
        Event::Inspect,
        Event::Clean,
        Event::Adopt,
        Event::Deploy,
        Event::Rebuild,
        Event::Delete,
        Event::Rescue,
        Event::Unrescue,
        Event::Service,
        Event::Abort,
        Event::Unhold,
        Event::Done,
        Event::Fail,
        Event::Wait,
        Event::Resume,
        Event::Hold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Manage => "manage",
            Event::Provide => "provide",
            Event::Inspect => "inspect",
            Event::Clean => "clean",
            Event::Adopt => "adopt",
            Event::Deploy => "deploy",
            Event::Rebuild => "rebuild",
            Event::Delete => "delete",
            Event::Rescue => "rescue",
            Event::Unrescue => "unrescue",
            Event::Service => "service",
            Event::Abort => "abort",
            Event::Unhold => "unhold",
            Event::Done => "done",
            Event::Fail => "fail",
            Event::Wait => "wait",
            Event::Resume => "resume",
            Event::Hold => "hold",
        }
    }

    /// Whether clients may send this event (as a provision verb).
    pub fn is_client_event(self) -> bool {
        !matches!(
            self,
            Event::Done | Event::Fail | Event::Wait | Event::Resume | Event::Hold
        )
    }

    /// The event of a provision verb (`PUT …/states/provision {"target": verb}`, §1.4):
    /// `active`/`deploy` -> deploy, `deleted`/`undeploy` -> delete, the other client events
    /// by their own name.
    pub fn from_verb(verb: &str) -> Option<Event> {
        match verb {
            "active" | "deploy" => Some(Event::Deploy),
            "deleted" | "undeploy" => Some(Event::Delete),
            _ => Event::ALL
                .into_iter()
                .find(|e| e.is_client_event() && e.as_str() == verb),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Event {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Event::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| Error::UnknownName {
                kind: "event",
                value: s.to_owned(),
            })
    }
}

/// One edge of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub event: Event,
    pub to: State,
}

const fn t(from: State, event: Event, to: State) -> Transition {
    Transition { from, event, to }
}

use Event as E;
use State as S;

/// Every transition (spec §1.3), grouped by source state in the spec's order.
pub const TRANSITIONS: &[Transition] = &[
    t(S::Enroll, E::Manage, S::Verifying),
    t(S::Verifying, E::Done, S::Manageable),
    t(S::Verifying, E::Fail, S::Enroll),
    t(S::Manageable, E::Provide, S::Cleaning),
    t(S::Manageable, E::Clean, S::Cleaning),
    t(S::Manageable, E::Inspect, S::Inspecting),
    t(S::Manageable, E::Adopt, S::Adopting),
    t(S::Available, E::Deploy, S::Deploying),
    t(S::Available, E::Manage, S::Manageable),
    t(S::Inspecting, E::Done, S::Manageable),
    t(S::Inspecting, E::Fail, S::InspectFailed),
    t(S::Inspecting, E::Wait, S::InspectWait),
    t(S::InspectWait, E::Done, S::Manageable),
    t(S::InspectWait, E::Fail, S::InspectFailed),
    t(S::InspectWait, E::Abort, S::InspectFailed),
    t(S::InspectWait, E::Resume, S::Inspecting),
    t(S::InspectFailed, E::Inspect, S::Inspecting),
    t(S::InspectFailed, E::Manage, S::Manageable),
    t(S::Deploying, E::Done, S::Active),
    t(S::Deploying, E::Fail, S::DeployFailed),
    t(S::Deploying, E::Wait, S::WaitCallBack),
    t(S::Deploying, E::Hold, S::DeployHold),
    t(S::WaitCallBack, E::Resume, S::Deploying),
    t(S::WaitCallBack, E::Fail, S::DeployFailed),
    t(S::WaitCallBack, E::Abort, S::DeployFailed),
    t(S::WaitCallBack, E::Hold, S::DeployHold),
    t(S::WaitCallBack, E::Delete, S::Deleting),
    t(S::DeployHold, E::Unhold, S::WaitCallBack),
    t(S::DeployHold, E::Abort, S::DeployFailed),
    t(S::DeployFailed, E::Deploy, S::Deploying),
    t(S::DeployFailed, E::Rebuild, S::Deploying),
    t(S::DeployFailed, E::Delete, S::Deleting),
    t(S::Active, E::Rebuild, S::Deploying),
    t(S::Active, E::Delete, S::Deleting),
    t(S::Active, E::Rescue, S::Rescuing),
    t(S::Active, E::Service, S::Servicing),
    t(S::Error, E::Rebuild, S::Deploying),
    t(S::Error, E::Delete, S::Deleting),
    t(S::Deleting, E::Clean, S::Cleaning),
    t(S::Deleting, E::Fail, S::Error),
    t(S::Cleaning, E::Done, S::Available),
    t(S::Cleaning, E::Manage, S::Manageable),
    t(S::Cleaning, E::Fail, S::CleanFailed),
    t(S::Cleaning, E::Wait, S::CleanWait),
    t(S::Cleaning, E::Hold, S::CleanHold),
    t(S::CleanWait, E::Resume, S::Cleaning),
    t(S::CleanWait, E::Fail, S::CleanFailed),
    t(S::CleanWait, E::Abort, S::CleanFailed),
    t(S::CleanWait, E::Hold, S::CleanHold),
    t(S::CleanHold, E::Unhold, S::CleanWait),
    t(S::CleanHold, E::Abort, S::CleanFailed),
    t(S::CleanFailed, E::Manage, S::Manageable),
    t(S::Adopting, E::Done, S::Active),
    t(S::Adopting, E::Fail, S::AdoptFailed),
    t(S::AdoptFailed, E::Adopt, S::Adopting),
    t(S::AdoptFailed, E::Manage, S::Manageable),
    t(S::Rescuing, E::Done, S::Rescue),
    t(S::Rescuing, E::Fail, S::RescueFailed),
    t(S::Rescuing, E::Wait, S::RescueWait),
    t(S::RescueWait, E::Resume, S::Rescuing),
    t(S::RescueWait, E::Fail, S::RescueFailed),
    t(S::RescueWait, E::Abort, S::RescueFailed),
    t(S::RescueWait, E::Delete, S::Deleting),
    t(S::Rescue, E::Rescue, S::Rescuing),
    t(S::Rescue, E::Unrescue, S::Unrescuing),
    t(S::Rescue, E::Delete, S::Deleting),
    t(S::RescueFailed, E::Rescue, S::Rescuing),
    t(S::RescueFailed, E::Unrescue, S::Unrescuing),
    t(S::RescueFailed, E::Delete, S::Deleting),
    t(S::UnrescueFailed, E::Rescue, S::Rescuing),
    t(S::UnrescueFailed, E::Unrescue, S::Unrescuing),
    t(S::UnrescueFailed, E::Delete, S::Deleting),
    t(S::Unrescuing, E::Done, S::Active),
    t(S::Unrescuing, E::Fail, S::UnrescueFailed),
    t(S::Servicing, E::Done, S::Active),
    t(S::Servicing, E::Fail, S::ServiceFailed),
    t(S::Servicing, E::Wait, S::ServiceWait),
    t(S::Servicing, E::Hold, S::ServiceHold),
    t(S::ServiceWait, E::Resume, S::Servicing),
    t(S::ServiceWait, E::Fail, S::ServiceFailed),
    t(S::ServiceWait, E::Abort, S::ServiceFailed),
    t(S::ServiceWait, E::Hold, S::ServiceHold),
    t(S::ServiceWait, E::Delete, S::Deleting),
    t(S::ServiceHold, E::Service, S::Servicing),
    t(S::ServiceHold, E::Unhold, S::ServiceWait),
    t(S::ServiceHold, E::Fail, S::ServiceFailed),
    t(S::ServiceHold, E::Abort, S::ServiceFailed),
    t(S::ServiceFailed, E::Service, S::Servicing),
    t(S::ServiceFailed, E::Rescue, S::Rescuing),
    t(S::ServiceFailed, E::Wait, S::ServiceWait),
    t(S::ServiceFailed, E::Hold, S::ServiceHold),
    t(S::ServiceFailed, E::Delete, S::Deleting),
    t(S::ServiceFailed, E::Abort, S::Active),
];

/// Where `event` takes a node in state `from`; an event the table does not list for that
/// state is rejected with Ironic's wording.
pub fn next(from: State, event: Event) -> Result<State, Error> {
    TRANSITIONS
        .iter()
        .find(|tr| tr.from == from && tr.event == event)
        .map(|tr| tr.to)
        .ok_or(Error::InvalidTransition {
            node: None,
            event,
            state: from,
        })
}

/// The events accepted in `state`, with where they lead, in table order.
pub fn transitions_from(state: State) -> impl Iterator<Item = (Event, State)> {
    TRANSITIONS
        .iter()
        .filter(move |tr| tr.from == state)
        .map(|tr| (tr.event, tr.to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>().unwrap(), s);
        }
        for e in Event::ALL {
            assert_eq!(e.as_str().parse::<Event>().unwrap(), e);
        }
        assert_eq!(State::ALL.iter().collect::<HashSet<_>>().len(), 30);
    }

    #[test]
    fn table_is_a_function() {
        let mut seen = HashSet::new();
        for tr in TRANSITIONS {
            assert!(seen.insert((tr.from, tr.event)), "{tr:?} listed twice");
        }
        assert_eq!(TRANSITIONS.len(), 93);
    }

    #[test]
    fn targets_only_for_non_stable_states() {
        for s in State::ALL {
            assert_eq!(s.target().is_none(), s.is_stable(), "{s}");
            if let Some(t) = s.target() {
                assert!(t.is_stable(), "{s} -> {t}");
            }
        }
    }

    #[test]
    fn verbs() {
        assert_eq!(Event::from_verb("active"), Some(Event::Deploy));
        assert_eq!(Event::from_verb("deleted"), Some(Event::Delete));
        assert_eq!(Event::from_verb("undeploy"), Some(Event::Delete));
        assert_eq!(Event::from_verb("rebuild"), Some(Event::Rebuild));
        assert_eq!(Event::from_verb("done"), None);
        assert_eq!(Event::from_verb("bogus"), None);
    }

    #[test]
    fn every_state_reachable_from_enroll() {
        let mut seen = HashSet::from([State::Enroll]);
        let mut todo = vec![State::Enroll];
        while let Some(s) = todo.pop() {
            for (_, to) in transitions_from(s) {
                if seen.insert(to) {
                    todo.push(to);
                }
            }
        }
        assert_eq!(seen.len(), State::ALL.len());
    }
}
