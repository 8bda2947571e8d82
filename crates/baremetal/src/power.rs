//! Driving BMCs: the async [`PowerDriver`] seam, its implementations, and the [`Controller`]
//! that turns one-shot BMC commands into reliable operations.
//!
//! A driver speaks one protocol to one machine's BMC and does exactly one request per call:
//! read the power state, ask for a power change, set or read the boot device. It does not
//! retry, wait or poll; the [`Controller`] does, the same way for every protocol:
//! - **one command in flight per BMC, and a minimum interval between commands** to the same
//!   BMC address, shared by every node behind it (IPMI BMCs crash or answer "insufficient
//!   resources for session" when hammered);
//! - **classified retries**: [`ErrorKind::Retryable`] errors (busy, timeouts, lost
//!   connections) are retried with jittered exponential backoff until the command deadline;
//!   authentication, unsupported and fatal errors fail at once;
//! - **power polling**: BMCs apply power changes late (emulators 1–11 s), so after a request
//!   the state is polled until it is the target or the deadline passes;
//! - **read-back** of the boot device after setting it, when the BMC can report it.
//!
//! Drivers: [`fake`] (in memory, with latency and late application, for tests and benchmarks),
//! [`redfish`] (feature `redfish`), [`ipmitool`] (feature `ipmi`) and [`qemu`] (feature `qemu`,
//! an emulated machine controlled over QMP). [`driver_for`] picks one from a node's `driver`
//! and `driver_info`.
//!
//! Messages never contain a credential: drivers hold passwords as [`Secret`](crate::Secret)s
//! and build their errors from the BMC's answers, which never echo them.

pub mod fake;
#[cfg(feature = "ipmi")]
pub mod ipmitool;
#[cfg(feature = "qemu")]
pub mod qemu;
#[cfg(feature = "redfish")]
pub mod redfish;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{OwnedMutexGuard, Semaphore};

use crate::node::{Node, PowerState};
use crate::Error;

/// What a power request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerAction {
    On,
    Off,
    /// A hard reset (Redfish `ForceRestart`, IPMI `power reset`).
    Reboot,
    /// Ask the operating system to shut down (Redfish `GracefulShutdown`, IPMI `power soft`).
    SoftOff,
    /// Ask the operating system to restart (Redfish `GracefulRestart`).
    SoftReboot,
}

impl PowerAction {
    /// The state the machine is in once the action is done.
    pub fn target(self) -> PowerState {
        match self {
            PowerAction::On | PowerAction::Reboot | PowerAction::SoftReboot => PowerState::On,
            PowerAction::Off | PowerAction::SoftOff => PowerState::Off,
        }
    }

    /// The transitional state a node shows while the action runs (Ironic's `target_power_state`).
    pub fn transitional(self) -> PowerState {
        match self {
            PowerAction::On => PowerState::On,
            PowerAction::Off => PowerState::Off,
            PowerAction::Reboot => PowerState::Rebooting,
            PowerAction::SoftOff => PowerState::SoftPowerOff,
            PowerAction::SoftReboot => PowerState::SoftRebooting,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::On => "power on",
            PowerAction::Off => "power off",
            PowerAction::Reboot => "reboot",
            PowerAction::SoftOff => "soft power off",
            PowerAction::SoftReboot => "soft reboot",
        }
    }

    fn is_reboot(self) -> bool {
        matches!(self, PowerAction::Reboot | PowerAction::SoftReboot)
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A boot device, by Ironic's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootDevice {
    Pxe,
    Disk,
    Cdrom,
    Bios,
    Safe,
}

impl BootDevice {
    pub const ALL: [BootDevice; 5] = [
        BootDevice::Pxe,
        BootDevice::Disk,
        BootDevice::Cdrom,
        BootDevice::Bios,
        BootDevice::Safe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
            BootDevice::Cdrom => "cdrom",
            BootDevice::Bios => "bios",
            BootDevice::Safe => "safe",
        }
    }
}

impl fmt::Display for BootDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BootDevice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        BootDevice::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| Error::UnknownName {
                kind: "boot device",
                value: s.to_owned(),
            })
    }
}

/// Firmware boot mode, from the node's `boot_mode` capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootMode {
    Bios,
    Uefi,
}

/// A boot device request: the device, for the next boot only or for every boot, and the
/// firmware mode when the node says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSetting {
    pub device: BootDevice,
    pub persistent: bool,
    pub mode: Option<BootMode>,
}

/// What a BMC reports about its boot device; `persistent` is `None` when it cannot say (pyghmi
/// never reports persistence, sushy's fake driver ignores `Once`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootReadback {
    /// The device, when it is one of ours.
    pub device: Option<BootDevice>,
    pub persistent: Option<bool>,
    /// The BMC's own words when `device` is `None` but the BMC did report something: no
    /// override (`None`, `No override`) or a device outside [`BootDevice`] (`UefiHttp`).
    /// `None` when the BMC cannot report at all.
    pub reported: Option<String>,
}

/// How a BMC error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Busy, out of sessions, timed out, connection lost: worth trying again later.
    Retryable,
    /// Wrong user name or password, or no right to do this.
    Auth,
    /// The BMC or driver cannot do this (a boot device or reset type it does not offer).
    Unsupported,
    /// A deadline passed: the BMC never answered, or never reached the requested state.
    Timeout,
    /// Anything else: a malformed answer, a missing system, a bad node configuration.
    Fatal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Auth => "authentication",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Fatal => "fatal",
        }
    }
}

/// One failed BMC command or operation. The message is one line, says which BMC, and never
/// contains a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BmcError {
    pub kind: ErrorKind,
    pub message: String,
}

impl BmcError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BmcError {
            kind,
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        BmcError::new(ErrorKind::Retryable, message)
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        BmcError::new(ErrorKind::Fatal, message)
    }
}

/// One machine's BMC, spoken to in one protocol. Every method is a single request: retries,
/// spacing and polling are the [`Controller`]'s job.
#[async_trait]
pub trait PowerDriver: Send + Sync + fmt::Debug {
    /// Identifies the BMC for spacing and serialising commands (`ipmi:10.0.0.5:623`): nodes
    /// behind the same BMC give the same key.
    fn bmc_key(&self) -> String;

    /// The least time between two commands to this BMC that the protocol needs.
    fn min_interval(&self) -> Duration {
        Duration::ZERO
    }

    /// The current power state: [`PowerState::On`] or [`PowerState::Off`].
    async fn power_state(&self) -> Result<PowerState, BmcError>;

    /// Asks for a power change; returns once the BMC accepted the request, which may be long
    /// before the machine reaches the state.
    async fn request_power(&self, action: PowerAction) -> Result<(), BmcError>;

    async fn set_boot_device(&self, setting: BootSetting) -> Result<(), BmcError>;

    async fn boot_device(&self) -> Result<BootReadback, BmcError>;

    /// What the BMC knows of the machine's hardware (out-of-band inspection). Protocols that
    /// cannot tell (IPMI) answer [`ErrorKind::Unsupported`].
    async fn inspect(&self) -> Result<Hardware, BmcError> {
        Err(BmcError::new(
            ErrorKind::Unsupported,
            format!(
                "{}: out-of-band inspection is not supported",
                self.bmc_key()
            ),
        ))
    }
}

/// Hardware facts from out-of-band inspection; `None` where the BMC does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hardware {
    pub cpus: Option<u32>,
    pub memory_mb: Option<u64>,
    pub cpu_arch: Option<String>,
    /// The network interfaces' MACs, in the BMC's order.
    pub macs: Vec<crate::node::MacAddress>,
}

/// Deadlines and pacing of the [`Controller`]. The defaults are Ironic's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// How long a power change may take to show (`power_state_change_timeout`, 60 s).
    pub power_timeout: Duration,
    /// How long one command is retried on retryable errors (`command_retry_timeout`, 60 s).
    pub command_retry_timeout: Duration,
    /// One BMC request may take this long (and never longer than what is left of
    /// `command_retry_timeout`) before it counts as a (retryable) timeout.
    pub request_timeout: Duration,
    /// First wait between two power-state polls or two retries; doubles up to `max_backoff`,
    /// each wait jittered by ±25 %.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Overrides every driver's [`PowerDriver::min_interval`] (IPMI's 5 s by default).
    pub min_interval: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            power_timeout: Duration::from_secs(60),
            command_retry_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            min_interval: None,
        }
    }
}

/// Per-BMC turn-taking: one command at a time per key, and a minimum gap between the end of one
/// and the start of the next.
#[derive(Debug, Default)]
struct BmcSlots {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
}

/// The right to send one command to a BMC; dropping it records when the command ended.
struct BmcTurn {
    last_end: OwnedMutexGuard<Option<Instant>>,
}

impl Drop for BmcTurn {
    fn drop(&mut self) {
        *self.last_end = Some(Instant::now());
    }
}

impl BmcSlots {
    async fn turn(&self, key: String, gap: Duration) -> BmcTurn {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(slots.entry(key).or_default())
        };
        let last_end = slot.lock_owned().await;
        if let Some(end) = *last_end {
            tokio::time::sleep_until((end + gap).into()).await;
        }
        BmcTurn { last_end }
    }
}

/// The least time worth giving a request: less is reported as the deadline passing.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// Exponential backoff with ±25 % jitter, so that many nodes retrying at once spread out.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
    state: u64,
}

impl Backoff {
    fn new(first: Duration, max: Duration, seed: &str) -> Self {
        // FNV-1a of the seed and the clock: different per node and per run, no RNG crate.
        let mut state = 0xcbf2_9ce4_8422_2325_u64;
        for b in seed.bytes() {
            state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        state ^= u64::from(nanos);
        Backoff {
            next: first,
            max: max.max(first),
            state: state | 1,
        }
    }

    fn next_wait(&mut self) -> Duration {
        // xorshift64
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let factor = 0.75 + (self.state % 1000) as f64 / 2000.0;
        let wait = self.next.mul_f64(factor);
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

/// What a power operation found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerOutcome {
    /// The state read before acting.
    pub before: PowerState,
    /// The state reached (always the action's target).
    pub after: PowerState,
    /// Whether a request was sent (`false` when the machine already was in the target state).
    pub requested: bool,
    /// How many times the state was read after the request.
    pub polls: u32,
    pub elapsed: Duration,
}

/// Runs BMC operations reliably: spacing and serialisation per BMC, retries, polling. Cheap to
/// clone; clones share the per-BMC state, so one controller should serve a whole process.
#[derive(Debug, Clone, Default)]
pub struct Controller {
    policy: Policy,
    slots: Arc<BmcSlots>,
}

impl Controller {
    pub fn new(policy: Policy) -> Self {
        Controller {
            policy,
            slots: Arc::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// One command: waits for the BMC's turn, sends it, and retries retryable errors with
    /// backoff, all before `deadline`. A request that got no answer in time is retried only
    /// when `idempotent`: a reset the BMC may have acted on is not sent twice.
    async fn command<'a, T, F, Fut>(
        &self,
        driver: &'a dyn PowerDriver,
        what: &str,
        idempotent: bool,
        deadline: Instant,
        mut call: F,
    ) -> Result<T, BmcError>
    where
        F: FnMut(&'a dyn PowerDriver) -> Fut,
        Fut: Future<Output = Result<T, BmcError>> + 'a,
    {
        let key = driver.bmc_key();
        let gap = self
            .policy
            .min_interval
            .unwrap_or_else(|| driver.min_interval());
        let mut backoff = Backoff::new(self.policy.first_backoff, self.policy.max_backoff, &key);
        let mut attempts = 0u32;
        let mut last: Option<BmcError> = None;
        let give_up = |attempts: u32, last: Option<BmcError>, why: String| {
            let message = match last {
                Some(e) => format!(
                    "{what} failed after {attempts} attempt{}: {}",
                    if attempts == 1 { "" } else { "s" },
                    e.message
                ),
                None => why,
            };
            BmcError::new(ErrorKind::Timeout, message)
        };
        loop {
            // Waiting for the BMC (other commands to it, its minimum interval) counts against
            // the deadline too.
            let turn =
                tokio::time::timeout_at(deadline.into(), self.slots.turn(key.clone(), gap)).await;
            let Ok(turn) = turn else {
                return Err(give_up(
                    attempts,
                    last,
                    format!(
                        "{key}: {what}: the BMC was busy with other commands until the deadline"
                    ),
                ));
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Too little time left for a real attempt: report what the last one said.
            if remaining < MIN_ATTEMPT && attempts > 0 {
                return Err(give_up(attempts, last, String::new()));
            }
            attempts += 1;
            let limit = self.policy.request_timeout.min(remaining.max(MIN_ATTEMPT));
            let mut timed_out = false;
            let result = match tokio::time::timeout(limit, call(driver)).await {
                Ok(result) => result,
                Err(_) if !idempotent => {
                    return Err(BmcError::new(
                        ErrorKind::Timeout,
                        format!(
                            "{key}: no answer to {what} within {} s; not sent again, as the \
                             BMC may have acted on it",
                            limit.as_secs_f64()
                        ),
                    ))
                }
                Err(_) => {
                    timed_out = true;
                    Err(BmcError::retryable(format!(
                        "{key}: no answer to {what} within {} s",
                        limit.as_secs_f64()
                    )))
                }
            };
            drop(turn);
            match result {
                Ok(value) => return Ok(value),
                Err(e) if e.kind == ErrorKind::Retryable => {
                    // What the BMC (or its tool) said says more than our own "no answer"
                    // for an attempt cut short by the deadline.
                    if !timed_out || last.is_none() {
                        last = Some(e);
                    }
                    let wait = backoff.next_wait();
                    if Instant::now() + wait >= deadline {
                        return Err(give_up(attempts, last, String::new()));
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn command_deadline(&self) -> Instant {
        Instant::now() + self.policy.command_retry_timeout
    }

    /// Reads the power state (with retries).
    pub async fn power_state(&self, driver: &dyn PowerDriver) -> Result<PowerState, BmcError> {
        self.command(driver, "power status", true, self.command_deadline(), |d| {
            d.power_state()
        })
        .await
    }

    /// Performs a power action and waits until the machine reports the target state. `On` and
    /// `Off` send nothing when the machine already is there; reboots always go out. Polling
    /// ends at `power_timeout` after the request, whatever the BMC answers meanwhile.
    pub async fn set_power(
        &self,
        driver: &dyn PowerDriver,
        action: PowerAction,
    ) -> Result<PowerOutcome, BmcError> {
        let start = Instant::now();
        let target = action.target();
        let before = self.power_state(driver).await?;
        if before == target && !action.is_reboot() {
            return Ok(PowerOutcome {
                before,
                after: before,
                requested: false,
                polls: 0,
                elapsed: start.elapsed(),
            });
        }
        // A reboot of a machine that is off is a power on (Ironic does the same).
        let sent = if action.is_reboot() && before == PowerState::Off {
            PowerAction::On
        } else {
            action
        };
        // On and off may be sent again after a lost answer; a reset may not.
        let idempotent = !sent.is_reboot();
        self.command(
            driver,
            sent.as_str(),
            idempotent,
            self.command_deadline(),
            |d| d.request_power(sent),
        )
        .await?;

        let deadline = Instant::now() + self.policy.power_timeout;
        let mut backoff = Backoff::new(
            self.policy.first_backoff,
            self.policy.max_backoff,
            &driver.bmc_key(),
        );
        let mut polls = 0;
        let mut last_seen: Option<PowerState> = None;
        let mut last_error: Option<BmcError> = None;
        loop {
            let wait = backoff.next_wait();
            if Instant::now() + wait >= deadline {
                let seen = match (last_seen, &last_error) {
                    (Some(state), _) => format!("it still reports {state}"),
                    (None, Some(e)) => format!("no power state could be read ({})", e.message),
                    (None, None) => "no power state could be read".to_owned(),
                };
                return Err(BmcError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{}: {action} was requested but {seen} after {} s",
                        driver.bmc_key(),
                        self.policy.power_timeout.as_secs_f64()
                    ),
                ));
            }
            tokio::time::sleep(wait).await;
            polls += 1;
            // A failed read while the BMC applies the change is not the end: keep polling,
            // within the power deadline.
            let read = self
                .command(driver, "power status", true, deadline, |d| d.power_state())
                .await;
            match read {
                Ok(state) if state == target => {
                    return Ok(PowerOutcome {
                        before,
                        after: state,
                        requested: true,
                        polls,
                        elapsed: start.elapsed(),
                    });
                }
                Ok(state) => last_seen = Some(state),
                Err(e) if matches!(e.kind, ErrorKind::Auth | ErrorKind::Unsupported) => {
                    return Err(e)
                }
                Err(e) => last_error = Some(e),
            }
        }
    }

    /// Sets the boot device and reads it back. A BMC that reports no override or another
    /// device afterwards is an error (vendors are known to ignore overrides); one that cannot
    /// report is trusted. Persistence is not compared: pyghmi and sushy report it wrongly.
    pub async fn set_boot_device(
        &self,
        driver: &dyn PowerDriver,
        setting: BootSetting,
    ) -> Result<BootReadback, BmcError> {
        self.command(
            driver,
            "boot device set",
            true,
            self.command_deadline(),
            |d| d.set_boot_device(setting),
        )
        .await?;
        let readback = self.boot_device(driver).await?;
        let reported = match (readback.device, &readback.reported) {
            (Some(device), _) if device != setting.device => Some(device.to_string()),
            (None, Some(raw)) => Some(format!("\"{raw}\"")),
            _ => None,
        };
        match reported {
            Some(other) => Err(BmcError::fatal(format!(
                "{}: boot device {} was set but the BMC reports {other}",
                driver.bmc_key(),
                setting.device
            ))),
            None => Ok(readback),
        }
    }

    /// Out-of-band inspection (with retries).
    pub async fn inspect(&self, driver: &dyn PowerDriver) -> Result<Hardware, BmcError> {
        self.command(driver, "inspection", true, self.command_deadline(), |d| {
            d.inspect()
        })
        .await
    }

    /// Reads the boot device (with retries).
    pub async fn boot_device(&self, driver: &dyn PowerDriver) -> Result<BootReadback, BmcError> {
        self.command(
            driver,
            "boot device get",
            true,
            self.command_deadline(),
            |d| d.boot_device(),
        )
        .await
    }

    /// Runs `operation` for every driver, at most `concurrency` at once (commands to one BMC
    /// still take turns). Results come back in input order.
    pub async fn for_each<T, F, Fut>(
        &self,
        drivers: Vec<Arc<dyn PowerDriver>>,
        concurrency: usize,
        operation: F,
    ) -> Vec<Result<T, BmcError>>
    where
        T: Send + 'static,
        F: Fn(Controller, Arc<dyn PowerDriver>) -> Fut,
        Fut: Future<Output = Result<T, BmcError>> + Send + 'static,
    {
        run_bounded(drivers, concurrency, |driver| {
            operation(self.clone(), driver)
        })
        .await
    }
}

/// Runs `work` for every item as tokio tasks, at most `concurrency` at once; the outputs come
/// back in input order. A panic in a task is resumed here.
pub async fn run_bounded<I, T, F, Fut>(items: Vec<I>, concurrency: usize, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let count = items.len();
    for (index, item) in items.into_iter().enumerate() {
        let job = work(item);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, job.await)
        });
    }
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, output)) => results[index] = Some(output),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every task reported"))
        .collect()
}

/// Protocol options that do not live on a node.
#[derive(Debug, Clone, Default)]
pub struct DriverOptions {
    /// The `ipmitool` program (default: `ipmitool` on `PATH`).
    pub ipmitool: Option<std::path::PathBuf>,
    /// The `qemu-system-*` program for QEMU nodes (default: `qemu-system-x86_64`).
    pub qemu: Option<std::path::PathBuf>,
    /// Where QEMU nodes keep their disks, sockets and pid files.
    pub qemu_state_dir: Option<std::path::PathBuf>,
    /// Longest one HTTP request (Redfish) may take, connecting included (default 30 s).
    pub http_timeout: Option<Duration>,
}

/// The driver for a node, from its `driver` and `driver_info`: `redfish`, `ipmi`, `qemu`, or
/// `fake-hardware` (a [`fake::FakeDriver`] that starts from the node's recorded power state).
pub fn driver_for(node: &Node, options: &DriverOptions) -> Result<Arc<dyn PowerDriver>, Error> {
    let _ = options;
    match node.driver.as_str() {
        "fake-hardware" => Ok(Arc::new(fake::FakeDriver::detached(
            &node.ident(),
            node.power_state.unwrap_or(PowerState::Off),
        ))),
        #[cfg(feature = "redfish")]
        "redfish" => Ok(Arc::new(redfish::RedfishDriver::from_node(
            node,
            options.http_timeout,
        )?)),
        #[cfg(feature = "ipmi")]
        "ipmi" => Ok(Arc::new(ipmitool::IpmiDriver::from_node(
            node,
            options.ipmitool.clone(),
        )?)),
        #[cfg(feature = "qemu")]
        "qemu" => Ok(Arc::new(qemu::QemuDriver::from_node(node, options)?)),
        other => Err(Error::InvalidNode {
            node: node.ident(),
            field: "driver",
            message: format!("hardware type \"{other}\" has no power driver here"),
        }),
    }
}

/// A required string from `driver_info`, or an error naming the field.
pub(crate) fn required_info<'n>(node: &'n Node, field: &'static str) -> Result<&'n str, Error> {
    node.driver_info
        .get(field)
        .and_then(crate::node::Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::InvalidNode {
            node: node.ident(),
            field: "driver_info",
            message: format!("{field} is missing"),
        })
}

/// An optional string from `driver_info`.
pub(crate) fn optional_info<'n>(node: &'n Node, field: &str) -> Option<&'n str> {
    node.driver_info
        .get(field)
        .and_then(crate::node::Value::as_str)
        .filter(|v| !v.is_empty())
}

/// The node's boot mode from its `boot_mode` capability.
pub fn boot_mode(node: &Node) -> Option<BootMode> {
    match node
        .properties
        .capabilities
        .get("boot_mode")
        .map(String::as_str)
    {
        Some("uefi") => Some(BootMode::Uefi),
        Some("bios") => Some(BootMode::Bios),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800), "k");
        let waits: Vec<_> = (0..6).map(|_| b.next_wait()).collect();
        let nominal = [100, 200, 400, 800, 800, 800];
        for (w, n) in waits.iter().zip(nominal) {
            let n = Duration::from_millis(n);
            assert!(
                *w >= n.mul_f64(0.75) && *w <= n.mul_f64(1.25),
                "{w:?} vs {n:?}"
            );
        }
    }

    #[test]
    fn action_targets() {
        assert_eq!(PowerAction::Reboot.target(), PowerState::On);
        assert_eq!(PowerAction::SoftOff.target(), PowerState::Off);
        assert_eq!(PowerAction::Reboot.transitional(), PowerState::Rebooting);
        assert_eq!("pxe".parse::<BootDevice>().unwrap(), BootDevice::Pxe);
        assert!("net".parse::<BootDevice>().is_err());
    }
}
