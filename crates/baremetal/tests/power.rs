//! The power controller against in-memory BMCs: polling until late changes show, spacing and
//! serialising commands per BMC, classified retries, deadlines, boot-device read-back, and
//! many nodes at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use baremetal::power::fake::{FakeBmc, FakeConfig};
use baremetal::power::{
    BmcError, BootDevice, BootReadback, BootSetting, Controller, ErrorKind, Policy, PowerAction,
    PowerDriver,
};
use baremetal::{PowerState, Secret};

fn quick() -> Policy {
    Policy {
        power_timeout: Duration::from_secs(5),
        command_retry_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        min_interval: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn power_on_waits_until_a_late_bmc_reports_it() {
    runtime().block_on(async {
        let bmc = FakeBmc::new(
            "n0",
            PowerState::Off,
            FakeConfig {
                latency: Duration::from_millis(5),
                apply_delay: Duration::from_millis(300),
                ..FakeConfig::default()
            },
        );
        let driver = bmc.driver(None);
        let controller = Controller::new(quick());
        let outcome = controller
            .set_power(&driver, PowerAction::On)
            .await
            .unwrap();
        assert_eq!(outcome.before, PowerState::Off);
        assert_eq!(outcome.after, PowerState::On);
        assert!(outcome.requested);
        assert!(outcome.polls >= 2, "polled {} times", outcome.polls);
        assert_eq!(bmc.power(), PowerState::On);

        // Already on: nothing is sent.
        let again = controller
            .set_power(&driver, PowerAction::On)
            .await
            .unwrap();
        assert!(!again.requested);
        // A reboot always goes out, and ends on.
        let reboot = controller
            .set_power(&driver, PowerAction::Reboot)
            .await
            .unwrap();
        assert!(reboot.requested);
        assert_eq!(bmc.requests(), ["power on", "reboot"]);
        assert_eq!(bmc.power(), PowerState::On);
    });
}

#[test]
fn a_state_that_never_comes_is_a_timeout_naming_what_was_seen() {
    runtime().block_on(async {
        let bmc = FakeBmc::new(
            "slow",
            PowerState::On,
            FakeConfig {
                apply_delay: Duration::from_secs(3600),
                ..FakeConfig::default()
            },
        );
        let controller = Controller::new(Policy {
            power_timeout: Duration::from_millis(400),
            ..quick()
        });
        let err = controller
            .set_power(&bmc.driver(None), PowerAction::Off)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert_eq!(
            err.message,
            "fake:slow: power off was requested but it still reports power on after 0.4 s"
        );
    });
}

#[test]
fn an_unreachable_bmc_times_out_after_retries() {
    runtime().block_on(async {
        let bmc = FakeBmc::new(
            "gone",
            PowerState::Off,
            FakeConfig {
                unreachable: true,
                ..FakeConfig::default()
            },
        );
        let controller = Controller::new(Policy {
            request_timeout: Duration::from_millis(100),
            command_retry_timeout: Duration::from_millis(600),
            ..quick()
        });
        let started = Instant::now();
        let err = controller
            .set_power(&bmc.driver(None), PowerAction::On)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
        assert!(
            err.message.starts_with("power status failed after ")
                && err
                    .message
                    .contains("attempts: fake:gone: no answer to power status within 0."),
            "{}",
            err.message
        );
        // Bounded by the deadline, not hanging (generous: this is a bound, not a benchmark).
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(bmc.requests().is_empty());
    });
}

#[test]
fn a_wrong_password_fails_at_once_and_is_never_shown() {
    runtime().block_on(async {
        let bmc = FakeBmc::new(
            "locked",
            PowerState::Off,
            FakeConfig {
                password: Some(Secret::new("right-one")),
                ..FakeConfig::default()
            },
        );
        let driver = bmc.driver(Some(Secret::new("hunter2-wrong")));
        let err = Controller::new(quick())
            .set_power(&driver, PowerAction::On)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth);
        let shown = format!("{err} {err:?} {driver:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("right-one"),
            "{shown}"
        );
        assert!(bmc.requests().is_empty());
    });
}

/// A driver that fails its first answers with a retryable error, then works.
#[derive(Debug)]
struct Flaky {
    inner: baremetal::power::fake::FakeDriver,
    failures_left: std::sync::Mutex<u32>,
}

#[async_trait]
impl PowerDriver for Flaky {
    fn bmc_key(&self) -> String {
        self.inner.bmc_key()
    }
    async fn power_state(&self) -> Result<PowerState, BmcError> {
        {
            let mut left = self.failures_left.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(BmcError::retryable("insufficient resources for session"));
            }
        }
        self.inner.power_state().await
    }
    async fn request_power(&self, action: PowerAction) -> Result<(), BmcError> {
        self.inner.request_power(action).await
    }
    async fn set_boot_device(&self, setting: BootSetting) -> Result<(), BmcError> {
        self.inner.set_boot_device(setting).await
    }
    async fn boot_device(&self) -> Result<BootReadback, BmcError> {
        // A BMC that ignores overrides (pain point: "PXE override ignored").
        Ok(BootReadback {
            device: Some(BootDevice::Disk),
            persistent: None,
            reported: None,
        })
    }
}

#[test]
fn retryable_errors_are_retried_and_ignored_overrides_are_caught() {
    runtime().block_on(async {
        let bmc = FakeBmc::new("flaky", PowerState::Off, FakeConfig::default());
        let driver = Flaky {
            inner: bmc.driver(None),
            failures_left: std::sync::Mutex::new(3),
        };
        let controller = Controller::new(quick());
        assert_eq!(
            controller.power_state(&driver).await.unwrap(),
            PowerState::Off
        );
        let err = controller
            .set_boot_device(
                &driver,
                BootSetting {
                    device: BootDevice::Pxe,
                    persistent: false,
                    mode: None,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "fake:flaky: boot device pxe was set but the BMC reports disk"
        );
    });
}

#[test]
fn boot_device_is_read_back() {
    runtime().block_on(async {
        let bmc = FakeBmc::new(
            "b",
            PowerState::Off,
            FakeConfig {
                reports_persistence: true,
                ..FakeConfig::default()
            },
        );
        let readback = Controller::new(quick())
            .set_boot_device(
                &bmc.driver(None),
                BootSetting {
                    device: BootDevice::Pxe,
                    persistent: true,
                    mode: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(readback.device, Some(BootDevice::Pxe));
        assert_eq!(readback.persistent, Some(true));
        assert_eq!(bmc.requests(), ["boot pxe persistent"]);
    });
}

/// Nodes behind one BMC share its turns: their commands never overlap and keep the minimum
/// interval between them.
#[test]
fn commands_to_one_bmc_are_serialised_and_spaced() {
    runtime().block_on(async {
        let gap = Duration::from_millis(60);
        let shared = FakeBmc::new(
            "chassis",
            PowerState::Off,
            FakeConfig {
                latency: Duration::from_millis(10),
                ..FakeConfig::default()
            },
        );
        let controller = Controller::new(Policy {
            min_interval: Some(gap),
            ..quick()
        });
        let drivers: Vec<Arc<dyn PowerDriver>> = (0..4)
            .map(|_| Arc::new(shared.driver(None)) as Arc<dyn PowerDriver>)
            .collect();
        let results = controller
            .for_each(
                drivers,
                8,
                |c, d| async move { c.power_state(d.as_ref()).await },
            )
            .await;
        assert!(results.iter().all(Result::is_ok));
        // The BMC saw four exchanges, one after the other, each at least `gap` after the
        // previous one ended.
        let mut spans = shared.spans();
        spans.sort();
        assert_eq!(spans.len(), 4);
        for pair in spans.windows(2) {
            let (_, previous_end) = pair[0];
            let (next_start, _) = pair[1];
            assert!(next_start >= previous_end + gap, "{spans:?}");
        }
    });
}

#[test]
fn many_nodes_at_once_each_get_their_own_result() {
    runtime().block_on(async {
        let bmcs: Vec<FakeBmc> = (0..50)
            .map(|i| {
                FakeBmc::new(
                    format!("n{i}"),
                    PowerState::Off,
                    FakeConfig {
                        latency: Duration::from_millis(5),
                        apply_delay: Duration::from_millis(50),
                        // Every tenth BMC refuses us.
                        password: (i % 10 == 9).then(|| Secret::new("other")),
                        ..FakeConfig::default()
                    },
                )
            })
            .collect();
        let drivers: Vec<Arc<dyn PowerDriver>> = bmcs
            .iter()
            .map(|b| Arc::new(b.driver(None)) as Arc<dyn PowerDriver>)
            .collect();
        let results = Controller::new(quick())
            .for_each(drivers, 16, |c, d| async move {
                c.set_power(d.as_ref(), PowerAction::On).await
            })
            .await;
        for (i, (result, bmc)) in results.iter().zip(&bmcs).enumerate() {
            if i % 10 == 9 {
                assert_eq!(result.as_ref().unwrap_err().kind, ErrorKind::Auth);
                assert_eq!(bmc.power(), PowerState::Off);
            } else {
                assert_eq!(result.as_ref().unwrap().after, PowerState::On);
                assert_eq!(bmc.power(), PowerState::On);
            }
        }
    });
}
