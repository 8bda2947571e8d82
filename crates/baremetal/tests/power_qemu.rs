//! The `qemu` driver against real QEMU processes (no mocks): each test works in its own
//! temporary directory, and a [`Machine`] guard kills the QEMU a test started even when the
//! test fails. Results are confirmed from outside the driver where possible: the process's
//! command line in `/proc`, its pid, its socket.

#![cfg(feature = "qemu")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use baremetal::node::{derived_uuid, Node, Port, Value};
use baremetal::power::qemu::QemuDriver;
use baremetal::power::{
    driver_for, BootDevice, BootMode, BootSetting, Controller, DriverOptions, ErrorKind, Policy,
    PowerAction, PowerDriver,
};
use baremetal::{Error, MacAddress, PowerState};

const MAC: &str = "52:54:00:aa:bb:01";

fn controller() -> Controller {
    Controller::new(Policy {
        power_timeout: Duration::from_secs(20),
        command_retry_timeout: Duration::from_secs(20),
        request_timeout: Duration::from_secs(15),
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        min_interval: None,
    })
}

/// A small `qemu` node whose files live in `state_dir`.
fn node(name: &str, state_dir: &Path, disk: Option<&Path>) -> Node {
    let mut node = Node::new(derived_uuid(name), "qemu");
    node.name = Some(name.to_owned());
    node.driver_info.insert(
        "qemu_state_dir".into(),
        Value::Text(state_dir.display().to_string()),
    );
    if let Some(disk) = disk {
        node.driver_info
            .insert("qemu_disk".into(), Value::Text(disk.display().to_string()));
    }
    node.properties.memory_mb = Some(128);
    node.properties.cpus = Some(1);
    node.ports.push(Port::new(MacAddress::parse(MAC).unwrap()));
    node
}

/// Kills the QEMU of a state directory when dropped, whatever the test did.
struct Machine {
    state_dir: PathBuf,
}

impl Machine {
    fn new(state_dir: &Path) -> Machine {
        Machine {
            state_dir: state_dir.to_owned(),
        }
    }

    /// The pid in `qemu.pid` if that process is alive (not a zombie).
    fn pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(self.state_dir.join("qemu.pid")).ok()?;
        let pid: u32 = pid.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // Only the QEMU of this directory, not a process that got the pid since.
            if cmdline(pid)
                .iter()
                .any(|a| a.contains(&*self.state_dir.to_string_lossy()))
            {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// Whether a process exists and has not exited (QEMU's parent after `-daemonize` may be an
/// init that never reaps it).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
    })
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The value after `option` on a command line.
fn option<'a>(args: &'a [String], option: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == option)
        .map(|w| w[1].as_str())
        .collect()
}

#[tokio::test]
async fn power_cycle_with_a_one_time_pxe_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node-1");
    let machine = Machine::new(&dir);
    let node = node("qemu-node-1", &dir, None);
    let driver = driver_for(&node, &DriverOptions::default()).unwrap();
    let driver = driver.as_ref();
    let ctl = controller();
    assert_eq!(driver.bmc_key(), format!("qemu:{}", dir.display()));

    assert_eq!(ctl.power_state(driver).await.unwrap(), PowerState::Off);
    assert_eq!(
        ctl.boot_device(driver).await.unwrap().device,
        None,
        "nothing stored yet"
    );

    let readback = ctl
        .set_boot_device(
            driver,
            BootSetting {
                device: BootDevice::Pxe,
                persistent: false,
                mode: Some(BootMode::Bios),
            },
        )
        .await
        .unwrap();
    assert_eq!(readback.device, Some(BootDevice::Pxe));
    assert_eq!(readback.persistent, Some(false));

    let on = ctl.set_power(driver, PowerAction::On).await.unwrap();
    assert_eq!(
        (on.before, on.after, on.requested),
        (PowerState::Off, PowerState::On, true)
    );
    let pid = machine.pid().expect("qemu.pid names a live process");
    let args = cmdline(pid);
    assert_eq!(option(&args, "-boot"), ["once=n"], "{args:?}");
    assert!(
        option(&args, "-nic")
            .iter()
            .any(|nic| nic.contains(&format!("mac={MAC}")) && nic.contains("restrict=on")),
        "{args:?}"
    );
    assert_eq!(option(&args, "-m"), ["128"]);
    assert_eq!(driver.power_state().await.unwrap(), PowerState::On);
    // The one-time device was used by this start.
    assert_eq!(driver.boot_device().await.unwrap().device, None);

    // Powering on a machine that is on sends nothing and starts no second QEMU.
    let again = ctl.set_power(driver, PowerAction::On).await.unwrap();
    assert!(!again.requested);
    driver.request_power(PowerAction::On).await.unwrap();
    assert_eq!(machine.pid(), Some(pid));

    // A reset is done by the running process.
    let reboot = ctl.set_power(driver, PowerAction::Reboot).await.unwrap();
    assert_eq!((reboot.requested, reboot.after), (true, PowerState::On));
    assert_eq!(machine.pid(), Some(pid));

    // A boot device set while the machine runs applies at the next reboot (the deploy flow:
    // PXE next boot, then reboot): the machine is restarted with it.
    ctl.set_boot_device(
        driver,
        BootSetting {
            device: BootDevice::Pxe,
            persistent: false,
            mode: None,
        },
    )
    .await
    .unwrap();
    let reboot = ctl.set_power(driver, PowerAction::Reboot).await.unwrap();
    assert_eq!(reboot.after, PowerState::On);
    let old_pid = pid;
    let pid = machine.pid().expect("restarted");
    assert_ne!(pid, old_pid);
    assert!(!alive(old_pid));
    assert_eq!(option(&cmdline(pid), "-boot"), ["once=n"]);
    assert_eq!(driver.boot_device().await.unwrap().device, None);

    // The ACPI button is accepted; SeaBIOS without an OS ignores it, so the machine stays on.
    driver.request_power(PowerAction::SoftOff).await.unwrap();
    assert_eq!(driver.power_state().await.unwrap(), PowerState::On);

    let off = ctl.set_power(driver, PowerAction::Off).await.unwrap();
    assert_eq!(off.after, PowerState::Off);
    assert!(!alive(pid), "qemu {pid} still runs after power off");
    let socket = dir.join("qmp.sock");
    if socket.exists() {
        let err = std::os::unix::net::UnixStream::connect(&socket).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    assert_eq!(driver.power_state().await.unwrap(), PowerState::Off);
    // Off again is accepted; a reset of a machine that is off is not.
    driver.request_power(PowerAction::Off).await.unwrap();
    let err = driver.request_power(PowerAction::Reboot).await.unwrap_err();
    assert!(err.message.contains("off"), "{err}");
}

#[tokio::test]
async fn persistent_disk_boot_and_image_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let qcow2 = tmp.path().join("disk.qcow2");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&qcow2)
        .arg("16M")
        .status()
        .unwrap();
    assert!(status.success());
    let raw = tmp.path().join("disk.img");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();

    let ctl = controller();
    let mut machines = Vec::new();
    for (name, disk, format) in [("q", &qcow2, "qcow2"), ("r", &raw, "raw")] {
        let dir = tmp.path().join(name);
        let machine = Machine::new(&dir);
        let node = node(&format!("qemu-disk-{name}"), &dir, Some(disk));
        let driver = QemuDriver::from_node(&node, &DriverOptions::default()).unwrap();
        assert_eq!(driver.state_dir(), dir);
        let setting = BootSetting {
            device: BootDevice::Disk,
            persistent: true,
            mode: None,
        };
        ctl.set_boot_device(&driver, setting).await.unwrap();
        ctl.set_power(&driver, PowerAction::On).await.unwrap();
        let pid = driver.pid().expect("running");
        assert_eq!(machine.pid(), Some(pid));
        let args = cmdline(pid);
        assert_eq!(
            option(&args, "-drive"),
            [format!("file={},format={format},if=virtio", disk.display())],
            "{args:?}"
        );
        assert_eq!(option(&args, "-boot"), ["order=c"]);
        // A persistent device stays after the start.
        let readback = driver.boot_device().await.unwrap();
        assert_eq!(
            (readback.device, readback.persistent),
            (Some(BootDevice::Disk), Some(true))
        );
        machines.push((machine, driver));
    }
    for (_machine, driver) in &machines {
        ctl.set_power(driver, PowerAction::Off).await.unwrap();
        assert_eq!(driver.pid(), None);
    }
}

#[tokio::test]
async fn a_failed_start_reports_qemu_last_message() {
    let tmp = tempfile::tempdir().unwrap();
    // qcow2's magic and nothing else: QEMU refuses it.
    let disk = tmp.path().join("broken.qcow2");
    std::fs::write(&disk, b"QFI\xfb\0\0\0\x03").unwrap();
    let dir = tmp.path().join("node");
    let _machine = Machine::new(&dir);
    let node = node("qemu-broken", &dir, Some(&disk));
    let driver = driver_for(&node, &DriverOptions::default()).unwrap();
    let err = driver.request_power(PowerAction::On).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(!err.message.contains('\n'), "{err}");
    assert!(err.message.contains(&dir.display().to_string()), "{err}");
    let log = std::fs::read_to_string(dir.join("qemu.log")).unwrap();
    let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap().trim();
    assert!(err.message.contains(last), "{err} / {log}");
    assert!(last.contains("broken.qcow2"), "{log}");
    assert_eq!(driver.power_state().await.unwrap(), PowerState::Off);

    // A program that is not there.
    let options = DriverOptions {
        qemu: Some(tmp.path().join("no-such-qemu")),
        ..DriverOptions::default()
    };
    let node = self::node("qemu-missing", &tmp.path().join("other"), None);
    let driver = driver_for(&node, &options).unwrap();
    let err = driver.request_power(PowerAction::On).await.unwrap_err();
    assert!(err.message.contains("no-such-qemu"), "{err}");
}

#[tokio::test]
async fn unsupported_requests_and_bad_configuration() {
    let tmp = tempfile::tempdir().unwrap();

    // No state directory anywhere.
    let mut bare = node("qemu-bare", tmp.path(), None);
    bare.driver_info.clear();
    let err = driver_for(&bare, &DriverOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidNode { field: "driver_info", message, .. }
            if message.contains("qemu_state_dir")),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("node qemu-bare: driver_info: "),
        "{err}"
    );

    // The configured base directory, per node uuid.
    let options = DriverOptions {
        qemu_state_dir: Some(tmp.path().join("nodes")),
        ..DriverOptions::default()
    };
    let driver = QemuDriver::from_node(&bare, &options).unwrap();
    assert_eq!(
        driver.state_dir(),
        tmp.path().join("nodes").join(bare.uuid.to_string())
    );

    // Commas would split QEMU's options.
    let comma = node("qemu-comma", &tmp.path().join("a,b"), None);
    let err = QemuDriver::from_node(&comma, &options).unwrap_err();
    assert!(err.to_string().contains("comma"), "{err}");

    let driver = driver_for(
        &node("qemu-unsupported", &tmp.path().join("u"), None),
        &options,
    )
    .unwrap();
    let err = driver
        .request_power(PowerAction::SoftReboot)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
    for (device, mode) in [
        (BootDevice::Bios, None),
        (BootDevice::Safe, None),
        (BootDevice::Pxe, Some(BootMode::Uefi)),
    ] {
        let setting = BootSetting {
            device,
            persistent: true,
            mode,
        };
        let err = controller()
            .set_boot_device(driver.as_ref(), setting)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
    }
    // Nothing was stored, nothing was started.
    assert_eq!(driver.boot_device().await.unwrap().device, None);
    assert_eq!(driver.power_state().await.unwrap(), PowerState::Off);
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_hung_or_killed_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let machine = Machine::new(&dir);
    let node = node("qemu-killed", &dir, None);
    let driver = driver_for(&node, &DriverOptions::default()).unwrap();
    let driver = driver.as_ref();
    let ctl = controller();
    ctl.set_power(driver, PowerAction::On).await.unwrap();
    let pid = machine.pid().unwrap();

    // A stopped QEMU accepts connections but never answers: the caller's deadline ends it,
    // as a retryable error that turns into a timeout.
    signal(pid, "-STOP");
    let impatient = Controller::new(Policy {
        request_timeout: Duration::from_millis(300),
        command_retry_timeout: Duration::from_millis(800),
        ..*ctl.policy()
    });
    let started = std::time::Instant::now();
    let err = impatient.power_state(driver).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Killed: its socket file and pid file stay behind, and it reads as off at once.
    signal(pid, "-KILL");
    let started = std::time::Instant::now();
    while alive(pid) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "qemu {pid} survives SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dir.join("qmp.sock").exists());
    let started = std::time::Instant::now();
    assert_eq!(driver.power_state().await.unwrap(), PowerState::Off);
    // A bound, not a benchmark: generous for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(5));

    // And it starts again over the stale files.
    let on = ctl.set_power(driver, PowerAction::On).await.unwrap();
    assert_eq!(on.before, PowerState::Off);
    let again = machine.pid().unwrap();
    assert_ne!(again, pid);
    ctl.set_power(driver, PowerAction::Off).await.unwrap();
    assert!(!alive(again));
}
