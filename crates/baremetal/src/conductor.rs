//! The conductor: what happens to a stored node when someone asks for a power action, a boot
//! device or a provision verb. It reads the node from a [`NodeStore`], drives its BMC through
//! the [`Controller`], and writes every step back (target state first, then the outcome), so
//! another process reading the store sees an operation in flight and, after a failure, a node
//! that says what went wrong (`last_error`, a failed provision state, an error in its history).
//!
//! Verbs follow Ironic's state machine:
//! - `manage` from `enroll` goes through `verifying`: the BMC must answer a power-status
//!   request; if it does not, the node returns to `enroll` with the reason in `last_error`.
//! - `provide` goes through `cleaning` to `available`. Automated cleaning needs the deploy
//!   agent (a later piece): it is skipped, and the history says so.
//! - `inspect` goes through `inspecting`: out-of-band, the BMC must answer, and what it reports
//!   (CPUs, memory, architecture, NICs; Redfish and QEMU report, IPMI cannot) fills the node's
//!   properties, with a port for every NIC not known yet; failure leaves `inspect failed`.
//! - `deploy` needs `instance_info.image_source`; it sets PXE for the next boot, powers the
//!   machine on (or reboots it) and leaves it in `wait call-back` for the deploy agent.
//! - `undeploy` powers the machine off and goes through `deleting` and `cleaning` to
//!   `available`; a BMC failure leaves `error`.
//! - `abort` stops a waiting operation (`wait call-back` → `deploy failed`, …).
//!
//! Every action that changes a node (power, boot device, provision verbs) first takes the
//! node's `reservation`, as Ironic's conductors do: one action per node at a time across
//! processes, the second refused with Ironic's "locked" error. A reservation names its holder
//! (`host:pid:start time`), so one left by a process that died (on this host) is taken over
//! rather than locking the node forever.
//!
//! Not here: the deploy agent and its call-back, cleaning steps, in-band inspection.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::node::{HistoryEntry, Node, Port, PowerState, Severity};
use crate::power::{
    boot_mode, driver_for, run_bounded, BmcError, BootDevice, BootReadback, BootSetting,
    Controller, DriverOptions, ErrorKind, PowerAction, PowerDriver, PowerOutcome,
};
use crate::states::{Event, State};
use crate::store::{modify, NodeStore};
use crate::Error;

/// Seconds since the epoch, for history entries.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This process as a reservation holder: `host:pid:start`, the start time (in clock ticks
/// since boot) telling this process from a later one that got the same pid.
fn holder() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(|| {
        let pid = std::process::id();
        let start = start_time(pid).map_or(String::new(), |t| t.to_string());
        format!("{}:{pid}:{start}", hostname())
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Field 22 of `/proc/PID/stat`: when the process started.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Whether a reservation's holder may still be working. A holder on another host, or one
/// that cannot be parsed, is assumed alive: only the local process table can prove it gone.
fn holder_alive(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return true;
    };
    if host != hostname() {
        return true;
    }
    match (pid.parse::<u32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => start_time(pid) == Some(start),
        // A holder that could not read its own start time: its pid is all there is.
        (Ok(pid), Err(_)) if start.is_empty() => {
            std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => true,
    }
}

/// A held reservation; dropping it releases the node.
struct Reservation<'c> {
    conductor: &'c Conductor,
    uuid: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // Best effort: a release that fails leaves a reservation the next process takes over
        // once this one has exited.
        let _ = modify(self.conductor.store.as_ref(), &self.uuid, ATTEMPTS, |n| {
            if n.reservation.as_deref() == Some(holder()) {
                n.reservation = None;
            }
            Ok(())
        });
    }
}

/// How many times a store update is retried when another process wrote in between.
const ATTEMPTS: u32 = 10;

/// Drives stored nodes. Cheap to clone; clones share the controller's per-BMC state.
#[derive(Clone)]
pub struct Conductor {
    store: Arc<dyn NodeStore>,
    controller: Controller,
    options: DriverOptions,
}

impl std::fmt::Debug for Conductor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conductor")
            .field("controller", &self.controller)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Conductor {
    pub fn new(store: Arc<dyn NodeStore>, controller: Controller, options: DriverOptions) -> Self {
        Conductor {
            store,
            controller,
            options,
        }
    }

    pub fn store(&self) -> &dyn NodeStore {
        self.store.as_ref()
    }

    fn update(&self, id: &str, change: impl FnMut(&mut Node)) -> Result<Node, Error> {
        let mut change = change;
        modify(self.store.as_ref(), id, ATTEMPTS, |n| {
            change(n);
            Ok(())
        })
        .map(|v| v.node)
    }

    /// Takes the node's reservation, or says who holds it.
    fn reserve(&self, id: &str) -> Result<Reservation<'_>, Error> {
        let me = holder();
        let node = modify(self.store.as_ref(), id, ATTEMPTS, |n| {
            match n.reservation.clone() {
                Some(other) if holder_alive(&other) => {
                    return Err(Error::NodeLocked {
                        node: n.ident(),
                        holder: other,
                    })
                }
                Some(stale) => {
                    n.history.push(HistoryEntry {
                        at: now(),
                        severity: Severity::Info,
                        event_type: "reservation".to_owned(),
                        message: format!("took over the reservation of {stale}, which has exited"),
                    });
                    // Whatever it was doing will not finish: as when Ironic's conductor dies,
                    // a node left mid-operation fails, and a power change in flight is over.
                    n.target_power_state = None;
                    if n.provision_state.fails_if_conductor_dies() {
                        let state = n.provision_state;
                        let message = format!(
                            "the process working on the node ({stale}) exited while it was {state}"
                        );
                        let _ = n.apply(Event::Fail, now(), Some(&message));
                    }
                }
                None => {}
            }
            n.reservation = Some(me.to_owned());
            Ok(())
        })?;
        Ok(Reservation {
            conductor: self,
            uuid: node.node.uuid.to_string(),
        })
    }

    fn driver(&self, node: &Node) -> Result<Arc<dyn PowerDriver>, Error> {
        driver_for(node, &self.options)
    }

    fn wrap(node: &Node, source: BmcError) -> Error {
        Error::Power {
            node: node.ident(),
            source,
        }
    }

    /// Changes a node's fields (not its states) under its reservation.
    pub fn edit(
        &self,
        id: &str,
        change: impl FnMut(&mut Node) -> Result<(), Error>,
    ) -> Result<Node, Error> {
        let _reservation = self.reserve(id)?;
        modify(self.store.as_ref(), id, ATTEMPTS, change).map(|v| v.node)
    }

    /// Removes a node that nobody is working on, in a state that allows it.
    pub fn delete(&self, id: &str) -> Result<Node, Error> {
        let _reservation = self.reserve(id)?;
        let stored = self.store.get(id)?;
        self.store
            .delete(&stored.node.uuid.to_string(), stored.version)?;
        Ok(stored.node)
    }

    /// Reads the power state from the BMC and records it.
    pub async fn power_status(&self, id: &str) -> Result<Node, Error> {
        let node = self.store.get(id)?.node;
        let driver = self.driver(&node)?;
        match self.controller.power_state(driver.as_ref()).await {
            Ok(state) => self.update(id, |n| n.set_power_state(state, now())),
            Err(e) => {
                // Only what was read failed: an operation in flight (another process's) keeps
                // its target and the last state seen.
                let message = format!("power status failed: {}", e.message);
                self.update(id, |n| {
                    n.last_error = Some(message.clone());
                    n.history.push(error_entry("power", &message));
                })?;
                Err(Self::wrap(&node, e))
            }
        }
    }

    /// Performs a power action and waits for the machine to reach the state. While it runs
    /// the stored node shows `target_power_state`; afterwards either the new `power_state`,
    /// or `last_error`, an unknown power state and an error in the history.
    pub async fn power(
        &self,
        id: &str,
        action: PowerAction,
    ) -> Result<(Node, PowerOutcome), Error> {
        let _reservation = self.reserve(id)?;
        let node = self.store.get(id)?.node;
        let driver = self.driver(&node)?;
        self.update(id, |n| n.target_power_state = Some(action.transitional()))?;
        match self.controller.set_power(driver.as_ref(), action).await {
            Ok(outcome) => {
                let node = self.update(id, |n| {
                    n.target_power_state = None;
                    n.last_error = None;
                    n.set_power_state(outcome.after, now());
                })?;
                Ok((node, outcome))
            }
            Err(e) => {
                let message = format!("{action} failed: {}", e.message);
                self.update(id, |n| record_power_failure(n, &message))?;
                Err(Self::wrap(&node, e))
            }
        }
    }

    /// Sets the boot device and returns what the BMC reports afterwards.
    pub async fn set_boot_device(
        &self,
        id: &str,
        device: BootDevice,
        persistent: bool,
    ) -> Result<BootReadback, Error> {
        let _reservation = self.reserve(id)?;
        let node = self.store.get(id)?.node;
        let driver = self.driver(&node)?;
        let setting = BootSetting {
            device,
            persistent,
            mode: boot_mode(&node),
        };
        match self
            .controller
            .set_boot_device(driver.as_ref(), setting)
            .await
        {
            Ok(readback) => {
                self.update(id, |n| {
                    n.history.push(HistoryEntry {
                        at: now(),
                        severity: Severity::Info,
                        event_type: "management".to_owned(),
                        message: format!(
                            "boot device set to {device}{}",
                            if persistent { " (persistent)" } else { "" }
                        ),
                    });
                })?;
                Ok(readback)
            }
            Err(e) => {
                let message = format!("setting boot device {device} failed: {}", e.message);
                self.update(id, |n| {
                    n.last_error = Some(message.clone());
                    n.history.push(error_entry("management", &message));
                })?;
                Err(Self::wrap(&node, e))
            }
        }
    }

    /// The boot device as the BMC reports it.
    pub async fn boot_device(&self, id: &str) -> Result<BootReadback, Error> {
        let node = self.store.get(id)?.node;
        let driver = self.driver(&node)?;
        self.controller
            .boot_device(driver.as_ref())
            .await
            .map_err(|e| Self::wrap(&node, e))
    }

    /// Applies a client event and whatever work it starts; returns the node as stored at the
    /// end. An event the state machine does not allow is refused with Ironic's wording and
    /// changes nothing.
    pub async fn provision(&self, id: &str, event: Event) -> Result<Node, Error> {
        let _reservation = self.reserve(id)?;
        let node = self.store.get(id)?.node;
        // Check before touching anything.
        if !matches!(
            event,
            Event::Manage
                | Event::Provide
                | Event::Inspect
                | Event::Clean
                | Event::Deploy
                | Event::Rebuild
                | Event::Delete
                | Event::Abort
        ) {
            return Err(Error::NotSupported {
                node: node.ident(),
                action: event.to_string(),
            });
        }
        crate::states::next(node.provision_state, event).map_err(|_| Error::InvalidTransition {
            node: Some(node.uuid.to_string()),
            event,
            state: node.provision_state,
        })?;
        if matches!(event, Event::Deploy | Event::Rebuild) {
            let has_image = node
                .instance_info
                .get("image_source")
                .and_then(crate::node::Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !has_image {
                return Err(Error::InvalidNode {
                    node: node.ident(),
                    field: "instance_info",
                    message: "cannot deploy: image_source is missing".to_owned(),
                });
            }
        }
        let node = self.apply(id, event, None)?;
        match (event, node.provision_state) {
            (Event::Manage, State::Verifying) => match self.check_bmc(&node).await {
                Ok(power) => self.finish(id, Event::Done, Some(power)),
                Err(message) => self.fail(id, &message),
            },
            (Event::Provide, State::Cleaning) => {
                self.note(id, "automated cleaning skipped: no deploy agent yet")?;
                self.finish(id, Event::Done, None)
            }
            (Event::Clean, State::Cleaning) => {
                // Manual cleaning returns to manageable (Ironic's conductor sends `manage`).
                self.note(id, "cleaning steps skipped: no deploy agent yet")?;
                self.finish(id, Event::Manage, None)
            }
            (Event::Inspect, State::Inspecting) => match self.inspect_hardware(id, &node).await {
                Ok((power, summary)) => {
                    self.note(id, &summary)?;
                    self.finish(id, Event::Done, Some(power))
                }
                Err(message) => self.fail(id, &message),
            },
            (Event::Deploy | Event::Rebuild, State::Deploying) => {
                match self.boot_for_deploy(&node).await {
                    Ok(power) => self.finish(id, Event::Wait, Some(power)),
                    Err(message) => self.fail(id, &message),
                }
            }
            (Event::Delete, State::Deleting) => match self.power_off(&node).await {
                Ok(power) => {
                    self.finish(id, Event::Clean, Some(power))?;
                    // The instance is gone: the next deploy names its image again.
                    self.update(id, |n| n.instance_info.clear())?;
                    self.note(id, "automated cleaning skipped: no deploy agent yet")?;
                    self.finish(id, Event::Done, None)
                }
                Err(message) => self.fail(id, &message),
            },
            _ => Ok(node),
        }
    }

    fn apply(&self, id: &str, event: Event, message: Option<&str>) -> Result<Node, Error> {
        let mut result = Ok(());
        let node = modify(self.store.as_ref(), id, ATTEMPTS, |n| {
            result = n.apply(event, now(), message).map(drop);
            Ok(())
        })?
        .node;
        result.map(|()| node)
    }

    fn finish(&self, id: &str, event: Event, power: Option<PowerState>) -> Result<Node, Error> {
        let node = self.apply(id, event, None)?;
        match power {
            Some(p) => self.update(id, |n| n.set_power_state(p, now())),
            None => Ok(node),
        }
    }

    /// Moves the node along `fail` with the message as `last_error`, then reports it.
    fn fail(&self, id: &str, message: &str) -> Result<Node, Error> {
        let node = self.apply(id, Event::Fail, Some(message))?;
        Err(Error::Failed {
            node: node.ident(),
            state: node.provision_state,
            message: message.to_owned(),
        })
    }

    fn note(&self, id: &str, message: &str) -> Result<Node, Error> {
        self.update(id, |n| {
            n.history.push(HistoryEntry {
                at: now(),
                severity: Severity::Info,
                event_type: "provisioning".to_owned(),
                message: message.to_owned(),
            });
        })
    }

    /// The BMC answers with a power state, or the reason it does not.
    async fn check_bmc(&self, node: &Node) -> Result<PowerState, String> {
        let driver = self.driver(node).map_err(|e| e.to_string())?;
        self.controller
            .power_state(driver.as_ref())
            .await
            .map_err(|e| format!("the BMC does not answer: {}", e.message))
    }

    /// Out-of-band inspection: the BMC must answer; what it reports of the hardware fills the
    /// node's properties, and NICs not known yet become ports. Returns the power state and a
    /// summary for the history.
    async fn inspect_hardware(
        &self,
        id: &str,
        node: &Node,
    ) -> Result<(PowerState, String), String> {
        let power = self.check_bmc(node).await?;
        let driver = self.driver(node).map_err(|e| e.to_string())?;
        let hardware = match self.controller.inspect(driver.as_ref()).await {
            Ok(hardware) => hardware,
            Err(e) if e.kind == ErrorKind::Unsupported => {
                return Ok((
                    power,
                    format!("inspection: the BMC answers ({power}); {}", e.message),
                ))
            }
            Err(e) => return Err(format!("inspection failed: {}", e.message)),
        };
        let mut added = 0;
        self.update(id, |n| {
            let p = &mut n.properties;
            p.cpus = hardware.cpus.or(p.cpus);
            p.memory_mb = hardware.memory_mb.or(p.memory_mb);
            if hardware.cpu_arch.is_some() {
                p.cpu_arch.clone_from(&hardware.cpu_arch);
            }
            added = 0;
            for mac in &hardware.macs {
                if !n.ports.iter().any(|port| port.address == *mac) {
                    n.ports.push(Port::new(*mac));
                    added += 1;
                }
            }
        })
        .map_err(|e| format!("inspection: cannot record the hardware: {e}"))?;
        let show = |v: Option<String>| v.unwrap_or_else(|| "unknown".to_owned());
        Ok((
            power,
            format!(
                "inspection: {} CPUs, {} MiB, arch {}, {} NICs ({added} new ports)",
                show(hardware.cpus.map(|c| c.to_string())),
                show(hardware.memory_mb.map(|m| m.to_string())),
                show(hardware.cpu_arch.clone()),
                hardware.macs.len()
            ),
        ))
    }

    async fn boot_for_deploy(&self, node: &Node) -> Result<PowerState, String> {
        let driver = self.driver(node).map_err(|e| e.to_string())?;
        let setting = BootSetting {
            device: BootDevice::Pxe,
            persistent: false,
            mode: boot_mode(node),
        };
        self.controller
            .set_boot_device(driver.as_ref(), setting)
            .await
            .map_err(|e| format!("setting boot device pxe failed: {}", e.message))?;
        // A running machine is rebooted so that it boots from the network now.
        self.controller
            .set_power(driver.as_ref(), PowerAction::Reboot)
            .await
            .map(|o| o.after)
            .map_err(|e| format!("reboot failed: {}", e.message))
    }

    async fn power_off(&self, node: &Node) -> Result<PowerState, String> {
        let driver = self.driver(node).map_err(|e| e.to_string())?;
        self.controller
            .set_power(driver.as_ref(), PowerAction::Off)
            .await
            .map(|o| o.after)
            .map_err(|e| format!("power off failed: {}", e.message))
    }

    /// Runs `action` on several nodes at once (at most `concurrency`), reporting each result
    /// to `done` as it comes; returns the results in input order.
    pub async fn power_many(
        &self,
        ids: &[String],
        action: PowerAction,
        concurrency: usize,
        done: impl Fn(&str, &Result<(Node, PowerOutcome), Error>) + Send + Sync + 'static,
    ) -> Vec<Result<(Node, PowerOutcome), Error>> {
        let done = Arc::new(done);
        run_bounded(ids.to_vec(), concurrency, |id| {
            let (this, done) = (self.clone(), Arc::clone(&done));
            async move {
                let result = this.power(&id, action).await;
                done(&id, &result);
                result
            }
        })
        .await
    }
}

fn error_entry(event_type: &str, message: &str) -> HistoryEntry {
    HistoryEntry {
        at: now(),
        severity: Severity::Error,
        event_type: event_type.to_owned(),
        message: message.to_owned(),
    }
}

/// After a failed power operation the machine's state is not known: Ironic records `None`.
fn record_power_failure(node: &mut Node, message: &str) {
    node.target_power_state = None;
    node.power_state = None;
    node.last_error = Some(message.to_owned());
    node.history.push(error_entry("power", message));
}
