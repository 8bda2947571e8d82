//! An in-memory BMC that behaves like a slow real one: every request takes `latency`, power
//! changes show up `apply_delay` after they were accepted, a wrong password is refused, and an
//! unreachable BMC never answers. Tests and benchmarks drive the [`Controller`](super::Controller)
//! against it; `fake-hardware` nodes use a detached one that answers at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{BmcError, BootReadback, BootSetting, ErrorKind, Hardware, PowerAction, PowerDriver};
use crate::node::PowerState;
use crate::Secret;

/// How a [`FakeBmc`] behaves.
#[derive(Debug, Clone, Default)]
pub struct FakeConfig {
    /// Time every request takes.
    pub latency: Duration,
    /// Time between accepting a power request and reporting the new state.
    pub apply_delay: Duration,
    /// The password the BMC accepts; `None` accepts any.
    pub password: Option<Secret>,
    /// Never answer (a BMC that is down or filtered).
    pub unreachable: bool,
    /// Report whether the boot device is persistent (pyghmi's and sushy's BMCs cannot).
    pub reports_persistence: bool,
    /// What out-of-band inspection finds; `None`: inspection is unsupported.
    pub hardware: Option<Hardware>,
}

#[derive(Debug)]
struct FakeState {
    power: PowerState,
    pending: Option<(PowerState, Instant)>,
    boot: Option<BootSetting>,
    requests: Vec<String>,
    /// When each exchange began and ended.
    spans: Vec<(Instant, Instant)>,
}

impl FakeState {
    fn settle(&mut self) {
        if let Some((state, at)) = self.pending {
            if Instant::now() >= at {
                self.power = state;
                self.pending = None;
            }
        }
    }
}

/// The BMC itself: clone the handle to inspect it while drivers talk to it.
#[derive(Debug, Clone)]
pub struct FakeBmc {
    name: String,
    config: FakeConfig,
    state: Arc<Mutex<FakeState>>,
}

impl FakeBmc {
    pub fn new(name: impl Into<String>, initial: PowerState, config: FakeConfig) -> Self {
        FakeBmc {
            name: name.into(),
            config,
            state: Arc::new(Mutex::new(FakeState {
                power: initial,
                pending: None,
                boot: None,
                requests: Vec::new(),
                spans: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power state the machine is really in now (pending changes applied when due).
    pub fn power(&self) -> PowerState {
        let mut s = self.lock();
        s.settle();
        s.power
    }

    pub fn boot(&self) -> Option<BootSetting> {
        self.lock().boot
    }

    /// When each exchange (answered or refused) began and ended, in the order they ended.
    pub fn spans(&self) -> Vec<(Instant, Instant)> {
        self.lock().spans.clone()
    }

    /// Every request the BMC accepted, in order (`power on`, `boot pxe once`, …).
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// A driver that logs in with `password`.
    pub fn driver(&self, password: Option<Secret>) -> FakeDriver {
        FakeDriver {
            bmc: self.clone(),
            password,
        }
    }
}

/// A [`PowerDriver`] for a [`FakeBmc`].
#[derive(Debug, Clone)]
pub struct FakeDriver {
    bmc: FakeBmc,
    password: Option<Secret>,
}

impl FakeDriver {
    /// A BMC of its own that answers at once and applies changes at once.
    pub fn detached(name: &str, initial: PowerState) -> Self {
        FakeBmc::new(name, initial, FakeConfig::default()).driver(None)
    }

    pub fn bmc(&self) -> &FakeBmc {
        &self.bmc
    }

    async fn exchange(&self) -> Result<(), BmcError> {
        let config = &self.bmc.config;
        if config.unreachable {
            std::future::pending::<()>().await;
        }
        let began = Instant::now();
        if !config.latency.is_zero() {
            tokio::time::sleep(config.latency).await;
        }
        self.bmc.lock().spans.push((began, Instant::now()));
        if let Some(expected) = &config.password {
            if self.password.as_ref() != Some(expected) {
                return Err(BmcError::new(
                    ErrorKind::Auth,
                    format!("{}: incorrect username or password", self.bmc_key()),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl PowerDriver for FakeDriver {
    fn bmc_key(&self) -> String {
        format!("fake:{}", self.bmc.name)
    }

    async fn power_state(&self) -> Result<PowerState, BmcError> {
        self.exchange().await?;
        Ok(self.bmc.power())
    }

    async fn request_power(&self, action: PowerAction) -> Result<(), BmcError> {
        self.exchange().await?;
        let mut s = self.bmc.lock();
        s.settle();
        s.requests.push(action.as_str().to_owned());
        let target = action.target();
        if matches!(action, PowerAction::Reboot | PowerAction::SoftReboot) {
            // Off at once, on again later, as emulated machines show it.
            s.power = PowerState::Off;
        }
        let delay = self.bmc.config.apply_delay;
        if delay.is_zero() {
            s.power = target;
            s.pending = None;
        } else {
            s.pending = Some((target, Instant::now() + delay));
        }
        Ok(())
    }

    async fn set_boot_device(&self, setting: BootSetting) -> Result<(), BmcError> {
        self.exchange().await?;
        let mut s = self.bmc.lock();
        s.requests.push(format!(
            "boot {} {}",
            setting.device,
            if setting.persistent {
                "persistent"
            } else {
                "once"
            }
        ));
        s.boot = Some(setting);
        Ok(())
    }

    async fn boot_device(&self) -> Result<BootReadback, BmcError> {
        self.exchange().await?;
        let s = self.bmc.lock();
        Ok(BootReadback {
            device: s.boot.map(|b| b.device),
            persistent: if self.bmc.config.reports_persistence {
                s.boot.map(|b| b.persistent)
            } else {
                None
            },
            reported: None,
        })
    }

    async fn inspect(&self) -> Result<Hardware, BmcError> {
        self.exchange().await?;
        self.bmc.config.hardware.clone().ok_or_else(|| {
            BmcError::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: out-of-band inspection is not supported",
                    self.bmc_key()
                ),
            )
        })
    }
}
