//! Emulated machines: each node is a `qemu-system-x86_64` process, powered and booted over
//! QMP (the QEMU Machine Protocol: JSON lines over a unix socket).
//!
//! "Power on" starts the process, "power off" ends it (`quit`), "reboot" is a hard reset of the
//! running process (`system_reset`) and "soft power off" presses the ACPI power button
//! (`system_powerdown`), which a guest without an operating system ignores (the
//! [`Controller`](super::Controller)'s polling then times out and says so). "Soft reboot" is
//! unsupported: QEMU has no way to ask the guest to restart.
//!
//! Node fields: `driver_info.qemu_state_dir` (else the [`DriverOptions::qemu_state_dir`] joined
//! with the node's uuid; one of them is required), `driver_info.qemu_disk` (an optional disk
//! image, attached as virtio), `properties.memory_mb` (default 512) and `properties.cpus`
//! (default 1), and one NIC per port, with the port's MAC, on QEMU's user-mode network with
//! `restrict=on`: the guest reaches neither the host's network nor the outside, and nothing on
//! the host is configured.
//!
//! The disk's format is passed explicitly, `qcow2` when the file starts with qcow2's magic
//! (`QFI\xfb`) and `raw` otherwise, decided at each start: QEMU's own probing would also accept
//! formats that name other host files (vmdk extents) and warns against it. A raw image into
//! which a guest wrote qcow2's magic would still be opened as qcow2 at the next start (and
//! could name a backing file), so give untrusted guests qcow2 disks.
//!
//! The state directory holds `qmp.sock`, `qemu.pid`, `qemu.log` (QEMU's messages while it
//! starts) and `boot-device` (the device set with `set_boot_device`, and whether it is for the
//! next start only). A boot device is given to QEMU on its command line (`-boot order=X`, or
//! `-boot once=X` for the next start only; a one-time device is then forgotten), so a device
//! set while the machine runs applies at the next power on or reboot: a reboot with a stored
//! device ends the process and starts it again (a QMP reset would keep the order the process
//! started with), a reboot without one is a QMP `system_reset`.
//!
//! QEMU runs with `-daemonize`: the process we start returns once the machine is up (QMP
//! listening, pid file written) or has failed (then with QEMU's last message from `qemu.log`),
//! and the machine itself runs in its own session, reparented away from the caller, so it
//! outlives the driver and the program that started it, as a machine outlives its BMC client.
//! Nothing stops it when the driver is dropped; power it off, or kill the pid in `qemu.pid`.
//!
//! What this is not: no UEFI (SeaBIOS only; a UEFI boot mode is unsupported), no `bios`/`safe`
//! boot devices, no virtual media (`cdrom` is accepted as a boot device, but no CD-ROM is
//! attached), no host networking (bridges, taps), no serial console, one disk at most, and
//! no mock: it runs a real QEMU (KVM when `/dev/kvm` is usable, else TCG).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;

use super::{
    optional_info, BmcError, BootDevice, BootMode, BootReadback, BootSetting, DriverOptions,
    ErrorKind, Hardware, PowerAction, PowerDriver,
};
use crate::node::{MacAddress, Node, PowerState};
use crate::Error;

const SOCKET: &str = "qmp.sock";
const PID_FILE: &str = "qemu.pid";
const LOG_FILE: &str = "qemu.log";
const BOOT_FILE: &str = "boot-device";

/// Bound on one QMP exchange, so that a QEMU that accepts connections but never answers (hung,
/// stopped, or serving another client) cannot block a caller that sets no deadline itself.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// `sun_path` holds 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

const DEFAULT_MEMORY_MB: u64 = 512;
const DEFAULT_CPUS: u32 = 1;

/// One node's emulated machine.
#[derive(Debug, Clone)]
pub struct QemuDriver {
    node: String,
    program: PathBuf,
    state_dir: PathBuf,
    disk: Option<PathBuf>,
    memory_mb: u64,
    cpus: u32,
    macs: Vec<MacAddress>,
}

/// Why a QMP exchange did not give an answer.
#[derive(Debug)]
enum QmpFailure {
    /// Nothing listens on the socket (no socket file, or connection refused).
    NotListening,
    /// The connection failed or broke off before the answer (reset, closed, timed out).
    Lost(String),
    /// QEMU answered with an error, or something that is not QMP.
    Answer(BmcError),
}

impl QemuDriver {
    /// The driver of a `qemu` node. Touches no file: the state directory is created when the
    /// machine is first powered on or given a boot device.
    pub fn from_node(node: &Node, options: &DriverOptions) -> Result<Self, Error> {
        let invalid = |field: &'static str, message: String| Error::InvalidNode {
            node: node.ident(),
            field,
            message,
        };
        let state_dir = match optional_info(node, "qemu_state_dir") {
            Some(dir) => PathBuf::from(dir),
            None => match &options.qemu_state_dir {
                Some(base) => base.join(node.uuid.to_string()),
                None => {
                    return Err(invalid(
                        "driver_info",
                        "qemu_state_dir is missing and no QEMU state directory is configured"
                            .to_owned(),
                    ))
                }
            },
        };
        // QEMU changes to `/` when it daemonizes, and error messages should say where.
        let state_dir = std::path::absolute(&state_dir)
            .map_err(|e| invalid("driver_info", format!("qemu_state_dir: {e}")))?;
        let disk = optional_info(node, "qemu_disk")
            .map(|d| std::path::absolute(Path::new(d)))
            .transpose()
            .map_err(|e| invalid("driver_info", format!("qemu_disk: {e}")))?;
        // Paths go into QEMU's `key=value,…` options, where a comma would start a new option.
        for (name, path) in [
            ("qemu_state_dir", Some(&state_dir)),
            ("qemu_disk", disk.as_ref()),
        ] {
            if let Some(path) = path {
                if path.to_string_lossy().contains(',') {
                    return Err(invalid(
                        "driver_info",
                        format!("{name} {} contains a comma", path.display()),
                    ));
                }
            }
        }
        let socket = state_dir.join(SOCKET);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(invalid(
                "driver_info",
                format!(
                    "qemu_state_dir {} is too long for a unix socket path ({} bytes at most)",
                    state_dir.display(),
                    MAX_SOCKET_PATH - SOCKET.len() - 1
                ),
            ));
        }
        let memory_mb = node.properties.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        if memory_mb == 0 {
            return Err(invalid("properties", "memory_mb is 0".to_owned()));
        }
        let cpus = node.properties.cpus.unwrap_or(DEFAULT_CPUS);
        if cpus == 0 {
            return Err(invalid("properties", "cpus is 0".to_owned()));
        }
        Ok(QemuDriver {
            node: node.ident(),
            program: options
                .qemu
                .clone()
                .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64")),
            state_dir,
            disk,
            memory_mb,
            cpus,
            macs: node.ports.iter().map(|p| p.address).collect(),
        })
    }

    /// Where the machine's socket, pid file, log and boot device live.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The pid of this node's running QEMU, from `qemu.pid`, if that process is alive and is
    /// the QEMU of this state directory (not an exited one, nor another process that got the
    /// pid since).
    pub fn pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.path(PID_FILE)).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        // An exited QEMU stays a zombie until its parent reaps it, and after `-daemonize` its
        // parent is init, which in some containers never does.
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        if state == "Z" || state == "X" {
            return None;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let pid_file = self.path(PID_FILE);
        cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == pid_file.as_os_str().as_encoded_bytes())
            .then_some(pid)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.state_dir.join(name)
    }

    fn key(&self) -> String {
        format!("qemu:{}", self.state_dir.display())
    }

    fn io_error(&self, action: &str, path: &Path, e: &io::Error) -> BmcError {
        BmcError::fatal(format!(
            "{}: cannot {action} {}: {e}",
            self.key(),
            path.display()
        ))
    }

    /// The stored boot device and whether it is persistent.
    fn stored_boot(&self) -> Result<Option<(BootDevice, bool)>, BmcError> {
        let path = self.path(BOOT_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_error("read", &path, &e)),
        };
        let mut words = text.split_whitespace();
        let device = words.next().and_then(|w| w.parse::<BootDevice>().ok());
        let persistent = match words.next() {
            Some("persistent") => Some(true),
            Some("once") => Some(false),
            _ => None,
        };
        match (device, persistent) {
            (Some(device), Some(persistent)) => Ok(Some((device, persistent))),
            _ => Err(BmcError::fatal(format!(
                "{}: {} is not \"<device> once|persistent\": {:?}",
                self.key(),
                path.display(),
                text.trim()
            ))),
        }
    }

    fn create_state_dir(&self) -> Result<(), BmcError> {
        fs::create_dir_all(&self.state_dir)
            .map_err(|e| self.io_error("create", &self.state_dir, &e))
    }

    /// QEMU's command line for the next start.
    fn args(&self, boot: Option<(BootDevice, bool)>) -> Result<Vec<OsString>, BmcError> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &[&str]| args.extend(a.iter().map(OsString::from));
        push(&["-name", &format!("guest={}", self.node.replace(',', ",,"))]);
        // KVM when the host offers it, else QEMU falls back to TCG (slow but works anywhere).
        // QEMU's default CPU model: `-cpu max` trips an assertion under nested KVM.
        push(&["-machine", "q35", "-accel", "kvm", "-accel", "tcg"]);
        push(&["-m", &self.memory_mb.to_string()]);
        push(&["-smp", &self.cpus.to_string()]);
        // No window, no default devices (VGA, serial, floppy, CD-ROM), no host config files:
        // the machine is exactly what this command line says.
        push(&["-display", "none", "-nodefaults", "-no-user-config"]);
        let socket = self.path(SOCKET);
        push(&[
            "-qmp",
            &format!("unix:{},server=on,wait=off", socket.display()),
        ]);
        push(&["-daemonize"]);
        if let Some((device, persistent)) = boot {
            let letter = boot_letter(device).ok_or_else(|| self.unsupported_device(device))?;
            let key = if persistent { "order" } else { "once" };
            push(&["-boot", &format!("{key}={letter}")]);
        }
        if let Some(disk) = &self.disk {
            let format = disk_format(disk).map_err(|e| self.io_error("read", disk, &e))?;
            push(&[
                "-drive",
                &format!("file={},format={format},if=virtio", disk.display()),
            ]);
        }
        for mac in &self.macs {
            push(&[
                "-nic",
                &format!("user,model=virtio-net-pci,mac={mac},restrict=on"),
            ]);
        }
        // Not through `push`: the path may not be UTF-8.
        args.push("-pidfile".into());
        args.push(self.path(PID_FILE).into());
        Ok(args)
    }

    fn unsupported_device(&self, device: BootDevice) -> BmcError {
        BmcError::new(
            ErrorKind::Unsupported,
            format!(
                "{}: boot device {device} is not supported (pxe, disk or cdrom)",
                self.key()
            ),
        )
    }

    /// Starts QEMU unless this node's QEMU already runs.
    async fn start(&self) -> Result<(), BmcError> {
        let boot = self.stored_boot()?;
        let args = self.args(boot)?;
        self.create_state_dir()?;
        if self.pid().is_some() {
            // A BMC accepts "power on" for a machine that is on; a second QEMU would take over
            // the socket (QEMU removes an existing socket file before listening).
            return Ok(());
        }
        let log_path = self.path(LOG_FILE);
        let log =
            fs::File::create(&log_path).map_err(|e| self.io_error("create", &log_path, &e))?;
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group while it starts, so that a Ctrl-C meant for the caller
            // does not reach it; `-daemonize` then gives the machine its own session.
            .process_group(0);
        let status = command.status().await.map_err(|e| {
            BmcError::fatal(format!(
                "{}: cannot run {}: {e}",
                self.key(),
                self.program.display()
            ))
        })?;
        if !status.success() {
            let last = last_line(&log_path).unwrap_or_else(|| "no message".to_owned());
            return Err(BmcError::fatal(format!(
                "{}: {} did not start ({status}): {last} (see {})",
                self.key(),
                self.program.display(),
                log_path.display()
            )));
        }
        if let Some((_, false)) = boot {
            // A one-time boot device is used up by this start.
            let path = self.path(BOOT_FILE);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(self.io_error("remove", &path, &e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs one QMP command on the running machine: `Ok(None)` when the machine is off.
    async fn command(&self, command: &'static str) -> Result<Option<serde_json::Value>, BmcError> {
        let failure = match tokio::time::timeout(QMP_TIMEOUT, self.qmp(command)).await {
            Ok(Ok(answer)) => return Ok(Some(answer)),
            Ok(Err(failure)) => failure,
            Err(_) => QmpFailure::Lost(format!(
                "no answer to {command} within {} s",
                QMP_TIMEOUT.as_secs()
            )),
        };
        match (failure, self.pid()) {
            (QmpFailure::Answer(e), _) => Err(e),
            // Nobody listening, or the connection dropped as QEMU exited: the machine is off.
            (QmpFailure::NotListening | QmpFailure::Lost(_), None) => Ok(None),
            (QmpFailure::NotListening, Some(pid)) => Err(BmcError::retryable(format!(
                "{}: qemu (pid {pid}) runs but does not accept connections on {}",
                self.key(),
                self.path(SOCKET).display()
            ))),
            (QmpFailure::Lost(why), Some(_)) => {
                Err(BmcError::retryable(format!("{}: {why}", self.key())))
            }
        }
    }

    /// A reboot that applies the stored boot device: QEMU takes its boot order only from its
    /// command line, so the process is ended and started again.
    async fn restart(&self) -> Result<(), BmcError> {
        self.command("quit").await?;
        let deadline = tokio::time::Instant::now() + QMP_TIMEOUT;
        while self.pid().is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(BmcError::retryable(format!(
                    "{}: reboot: the machine did not stop after quit",
                    self.key()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.start().await
    }

    /// One QMP exchange on a fresh connection: greeting, capabilities negotiation, command.
    async fn qmp(&self, command: &str) -> Result<serde_json::Value, QmpFailure> {
        let socket = self.path(SOCKET);
        let lost = |e: io::Error| QmpFailure::Lost(format!("QMP {}: {e}", socket.display()));
        let stream = match UnixStream::connect(&socket).await {
            Ok(stream) => stream,
            // A socket file left by a killed QEMU refuses at once.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(QmpFailure::NotListening)
            }
            Err(e) => return Err(lost(e)),
        };
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = next_message(&mut lines, &socket, &self.key()).await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpFailure::Answer(BmcError::fatal(format!(
                "{}: {} sent no QMP greeting",
                self.key(),
                socket.display()
            ))));
        }
        let mut answer = serde_json::Value::Null;
        for execute in ["qmp_capabilities", command] {
            let request = serde_json::json!({ "execute": execute }).to_string() + "\n";
            write.write_all(request.as_bytes()).await.map_err(lost)?;
            answer = loop {
                let message = next_message(&mut lines, &socket, &self.key()).await?;
                if let Some(value) = message.get("return") {
                    break value.clone();
                }
                if let Some(error) = message.get("error") {
                    let desc = error
                        .get("desc")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("no description");
                    let class = error
                        .get("class")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("error");
                    return Err(QmpFailure::Answer(BmcError::fatal(format!(
                        "{}: {execute}: {class}: {}",
                        self.key(),
                        desc.replace('\n', " ")
                    ))));
                }
                // Anything else is an event (`SHUTDOWN` may even come before `quit`'s
                // answer): not ours to act on.
            };
        }
        Ok(answer)
    }
}

#[async_trait]
impl PowerDriver for QemuDriver {
    fn bmc_key(&self) -> String {
        self.key()
    }

    /// On while the QEMU process runs, whatever its CPUs do: a `paused` or `prelaunch`
    /// machine still exists (as a powered machine whose CPUs are halted does), and reporting
    /// it off would have "power on" start a second QEMU. Only `shutdown` (a guest that powered
    /// itself off under `-no-shutdown`, which this driver does not pass) is off.
    async fn power_state(&self) -> Result<PowerState, BmcError> {
        match self.command("query-status").await? {
            None => Ok(PowerState::Off),
            Some(status) => match status.get("status").and_then(serde_json::Value::as_str) {
                Some("shutdown") => Ok(PowerState::Off),
                Some(_) => Ok(PowerState::On),
                None => Err(BmcError::fatal(format!(
                    "{}: query-status answered without a status: {status}",
                    self.key()
                ))),
            },
        }
    }

    async fn request_power(&self, action: PowerAction) -> Result<(), BmcError> {
        let command = match action {
            PowerAction::On => return self.start().await,
            PowerAction::SoftReboot => {
                return Err(BmcError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{}: soft reboot is not supported (QEMU cannot ask the guest to restart)",
                        self.key()
                    ),
                ))
            }
            PowerAction::Off => "quit",
            PowerAction::SoftOff => "system_powerdown",
            PowerAction::Reboot if self.stored_boot()?.is_some() && self.pid().is_some() => {
                return self.restart().await
            }
            PowerAction::Reboot => "system_reset",
        };
        match self.command(command).await? {
            Some(_) => Ok(()),
            None if action == PowerAction::Reboot => Err(BmcError::fatal(format!(
                "{}: cannot reboot: the machine is off",
                self.key()
            ))),
            None => Ok(()),
        }
    }

    /// Stored for the next start; see the module documentation.
    async fn set_boot_device(&self, setting: BootSetting) -> Result<(), BmcError> {
        if boot_letter(setting.device).is_none() {
            return Err(self.unsupported_device(setting.device));
        }
        if setting.mode == Some(BootMode::Uefi) {
            return Err(BmcError::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: UEFI boot is not supported (the machine has SeaBIOS)",
                    self.key()
                ),
            ));
        }
        self.create_state_dir()?;
        let path = self.path(BOOT_FILE);
        // Written aside and renamed, so a reader never sees half a file.
        let temp = self.path(&format!("{BOOT_FILE}.{}.tmp", std::process::id()));
        let text = format!(
            "{} {}\n",
            setting.device,
            if setting.persistent {
                "persistent"
            } else {
                "once"
            }
        );
        let written = fs::File::create(&temp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| fs::rename(&temp, &path));
        written.map_err(|e| {
            let _ = fs::remove_file(&temp);
            self.io_error("write", &path, &e)
        })
    }

    /// The stored device, which the machine boots from at its next start; nothing once a
    /// one-time device has been used.
    async fn boot_device(&self) -> Result<BootReadback, BmcError> {
        let stored = self.stored_boot()?;
        Ok(BootReadback {
            device: stored.map(|(device, _)| device),
            persistent: stored.map(|(_, persistent)| persistent),
            reported: None,
        })
    }

    /// The machine as this driver builds it: its CPUs, memory and NICs.
    async fn inspect(&self) -> Result<Hardware, BmcError> {
        Ok(Hardware {
            cpus: Some(self.cpus),
            memory_mb: Some(self.memory_mb),
            cpu_arch: Some("x86_64".to_owned()),
            macs: self.macs.clone(),
        })
    }
}

/// QEMU's `-boot` drive letter for a device.
fn boot_letter(device: BootDevice) -> Option<char> {
    match device {
        BootDevice::Pxe => Some('n'),
        BootDevice::Disk => Some('c'),
        BootDevice::Cdrom => Some('d'),
        BootDevice::Bios | BootDevice::Safe => None,
    }
}

/// `qcow2` for a file that starts with qcow2's magic, else `raw`.
fn disk_format(path: &Path) -> io::Result<&'static str> {
    let mut magic = Vec::with_capacity(4);
    fs::File::open(path)?.take(4).read_to_end(&mut magic)?;
    Ok(if magic == b"QFI\xfb" { "qcow2" } else { "raw" })
}

/// The last non-empty line of a file.
fn last_line(path: &Path) -> Option<String> {
    let text = String::from_utf8_lossy(&fs::read(path).ok()?).into_owned();
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_owned)
}

/// The next QMP message (one JSON object per line).
async fn next_message(
    lines: &mut Lines<BufReader<OwnedReadHalf>>,
    socket: &Path,
    key: &str,
) -> Result<serde_json::Value, QmpFailure> {
    let line = match lines.next_line().await {
        Ok(Some(line)) => line,
        Ok(None) => {
            return Err(QmpFailure::Lost(format!(
                "QMP {}: connection closed",
                socket.display()
            )))
        }
        Err(e) => return Err(QmpFailure::Lost(format!("QMP {}: {e}", socket.display()))),
    };
    serde_json::from_str(line.trim()).map_err(|e| {
        QmpFailure::Answer(BmcError::fatal(format!(
            "{key}: not QMP on {}: {e}",
            socket.display()
        )))
    })
}
