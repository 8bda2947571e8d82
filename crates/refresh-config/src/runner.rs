//! Running one hook: the [`HookRunner`] seam, the real [`ProcessRunner`] and the
//! [`RecordingRunner`] test double.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::interrupt::SignalPipe;

/// Exit status of a hook stopped by a time limit, as `timeout(1)` reports it.
pub const TIMEOUT_STATUS: i32 = 124;

/// Which limit bounds a hook: its own (`--hook-timeout`) or what is left of the whole run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Hook,
    Run,
}

/// How long a hook may run before it is terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimit {
    pub after: Duration,
    pub kind: LimitKind,
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    Exited(i32),
    /// Killed by this signal (not by the runner).
    Signalled(i32),
    /// Terminated by the runner when the limit expired.
    TimedOut(TimeLimit),
    /// The runner received this signal and forwarded it to the hook's process group.
    Interrupted(i32),
    /// The hook could not be executed at all (status 126, or 127 when it does not exist).
    NotExecuted {
        status: i32,
        reason: String,
    },
}

impl HookOutcome {
    /// The shell-style status: the exit code, 128+N for a signal, 124 for a timeout.
    pub fn status(&self) -> i32 {
        match self {
            HookOutcome::Exited(code) => *code,
            HookOutcome::Signalled(sig) | HookOutcome::Interrupted(sig) => 128 + sig,
            HookOutcome::TimedOut(_) => TIMEOUT_STATUS,
            HookOutcome::NotExecuted { status, .. } => *status,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(self, HookOutcome::Exited(0))
    }

    fn from_exit_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => HookOutcome::Exited(code),
            (None, Some(sig)) => HookOutcome::Signalled(sig),
            (None, None) => HookOutcome::Exited(1),
        }
    }
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookOutcome::Exited(0) => f.write_str("succeeded"),
            HookOutcome::Exited(code) => write!(f, "returned non-zero exit status {code}"),
            HookOutcome::Signalled(sig) => write!(
                f,
                "was killed by signal {sig} ({}), status {}",
                signal_name(*sig),
                self.status()
            ),
            HookOutcome::TimedOut(limit) => write!(f, "timed out after {}", seconds(limit.after)),
            HookOutcome::Interrupted(sig) => {
                write!(f, "was interrupted by signal {sig} ({})", signal_name(*sig))
            }
            HookOutcome::NotExecuted { status, reason } => {
                write!(f, "could not be executed: {reason}, status {status}")
            }
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    Signal::try_from(sig)
        .map(Signal::as_str)
        .unwrap_or("unknown")
}

/// Formats a duration as whole seconds when it is one, else with millisecond precision.
pub(crate) fn seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{:.3}s", duration.as_secs_f64())
    }
}

/// The environment, working directory and umask that `environment.d` files left behind, given
/// to every hook of the phase.
#[derive(Clone, PartialEq, Eq)]
pub struct Environment {
    pub vars: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub umask: u32,
}

impl fmt::Debug for Environment {
    // Environment files routinely export passwords and tokens: show names, never values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field(
                "vars",
                &self.vars.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("cwd", &self.cwd)
            .field("umask", &format_args!("{:04o}", self.umask))
            .finish()
    }
}

impl Environment {
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// Parses what the environment shell writes: `cwd NUL umask NUL (NAME=VALUE NUL)*`.
    fn parse_dump(dump: &[u8]) -> Option<Self> {
        let mut fields = dump.split(|b| *b == 0);
        let cwd = PathBuf::from(OsStr::from_bytes(fields.next()?));
        let umask = std::str::from_utf8(fields.next()?).ok()?.trim();
        let umask = u32::from_str_radix(umask, 8).ok()?;
        let vars = fields
            .filter(|entry| !entry.is_empty())
            .filter_map(|entry| {
                let eq = entry.iter().position(|b| *b == b'=')?;
                let (name, value) = (&entry[..eq], &entry[eq + 1..]);
                // `env` itself set `_`; the runner sets it per hook, as bash would.
                (name != b"_").then(|| {
                    (
                        OsStr::from_bytes(name).to_owned(),
                        OsStr::from_bytes(value).to_owned(),
                    )
                })
            })
            .collect();
        (!cwd.as_os_str().is_empty()).then_some(Environment { vars, cwd, umask })
    }
}

/// One hook to run.
#[derive(Debug, Clone, Copy)]
pub struct HookCommand<'a> {
    /// `DIR/name`, with DIR exactly as the caller gave it; also the hook's `argv[0]`.
    pub path: &'a Path,
    /// `None`: the hook inherits the runner's environment, working directory and umask.
    pub environment: Option<&'a Environment>,
    pub limit: Option<TimeLimit>,
}

/// The `environment.d` files of one phase, to be sourced in this order.
#[derive(Debug, Clone, Copy)]
pub struct EnvironmentRequest<'a> {
    pub files: &'a [PathBuf],
    pub limit: Option<TimeLimit>,
}

/// The result of sourcing `environment.d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentLoad {
    Loaded(Environment),
    /// The shell sourcing the files failed (a failing command, an unset variable, …).
    Failed(HookOutcome),
}

/// How hooks are executed: the seam a caller wraps to run hooks elsewhere (in a chroot, a
/// container, over ssh) or to record them in tests.
pub trait HookRunner {
    fn run_hook(&mut self, hook: &HookCommand<'_>) -> Result<HookOutcome>;

    fn load_environment(&mut self, request: &EnvironmentRequest<'_>) -> Result<EnvironmentLoad>;
}

/// Runs hooks as real processes: each one directly with `execve`, in its own process group,
/// with inherited stdio, terminated (SIGTERM, then SIGKILL after the grace period) when its
/// limit expires.
#[derive(Debug)]
pub struct ProcessRunner {
    kill_grace: Duration,
    shell: PathBuf,
    trace_environment: bool,
    label_output: bool,
    interrupts: Option<SignalPipe>,
}

impl Default for ProcessRunner {
    fn default() -> Self {
        ProcessRunner {
            kill_grace: Duration::from_secs(5),
            shell: PathBuf::from("bash"),
            trace_environment: true,
            label_output: false,
            interrupts: None,
        }
    }
}

impl ProcessRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Time between SIGTERM and SIGKILL when a hook is terminated.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The shell that sources `environment.d` (default `bash`, as upstream).
    pub fn shell(mut self, shell: impl Into<PathBuf>) -> Self {
        self.shell = shell.into();
        self
    }

    /// Whether environment files are sourced under `set -o xtrace` (default: yes, as upstream).
    pub fn trace_environment(mut self, trace: bool) -> Self {
        self.trace_environment = trace;
        self
    }

    /// Relay each line a hook writes to stdout or stderr with a `<phase>/<name>: ` prefix
    /// (`configure/10-a: …`) instead of letting the hook inherit them, so that interleaved
    /// logs (journald) say which hook wrote what. Off by default, as upstream.
    pub fn prefix_output(mut self, prefix: bool) -> Self {
        self.label_output = prefix;
        self
    }

    /// Forward signals caught by `pipe` to the running hook's process group, and end the run.
    pub fn forward_signals(mut self, pipe: SignalPipe) -> Self {
        self.interrupts = Some(pipe);
        self
    }

    fn supervise(
        &self,
        child: Child,
        limit: Option<TimeLimit>,
        captures: &mut [Capture<'_>],
    ) -> Result<HookOutcome> {
        let interrupts = self.interrupts.as_ref().map(|p| p.as_fd());
        supervise(child, limit, self.kill_grace, interrupts, captures)
    }
}

impl HookRunner for ProcessRunner {
    fn run_hook(&mut self, hook: &HookCommand<'_>) -> Result<HookOutcome> {
        // A signal caught between two hooks ends the run before the next one starts.
        if let Some(signal) = self.interrupts.as_ref().and_then(SignalPipe::pending) {
            return Ok(HookOutcome::Interrupted(signal as i32));
        }
        let spawn = |via_shell: Option<&Path>| {
            let mut command = hook_command(hook, via_shell);
            if self.label_output {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            command.spawn()
        };
        let spawned = match spawn(None) {
            // A script without `#!`: bash, which ran hooks upstream, runs it as a shell script.
            Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => spawn(Some(&self.shell)),
            spawned => spawned,
        };
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return Ok(not_executed(hook.path, &e)),
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return self.supervise(child, hook.limit, &mut []);
        };
        let label = output_label(hook.path);
        let mut to_stdout = LinePrefixer::new(&label, io::stdout());
        let mut to_stderr = LinePrefixer::new(&label, io::stderr());
        let mut out_sink = |chunk: &[u8]| to_stdout.feed(chunk);
        let mut err_sink = |chunk: &[u8]| to_stderr.feed(chunk);
        let outcome = self.supervise(
            child,
            hook.limit,
            &mut [
                Capture::new(stdout.into(), &mut out_sink),
                Capture::new(stderr.into(), &mut err_sink),
            ],
        );
        to_stdout.finish();
        to_stderr.finish();
        outcome
    }

    fn load_environment(&mut self, request: &EnvironmentRequest<'_>) -> Result<EnvironmentLoad> {
        let (read_end, write_end) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::os("pipe", e))?;
        let mut command = Command::new(&self.shell);
        command
            .arg("-c")
            .arg(ENVIRONMENT_SCRIPT)
            .arg("environment.d")
            .arg(if self.trace_environment { "1" } else { "" })
            .args(request.files)
            .process_group(0);
        let dump_fd = write_end.as_raw_fd();
        // SAFETY: between fork and exec this calls only dup2 and fcntl, which are
        // async-signal-safe, on a descriptor that stays open until spawn returns.
        unsafe {
            command.pre_exec(move || move_to_fd3(dump_fd));
        }
        let child = command.spawn().map_err(|source| Error::Spawn {
            program: self.shell.clone(),
            source,
        })?;
        drop(write_end);
        let mut dump = Vec::new();
        let mut collect = |chunk: &[u8]| dump.extend_from_slice(chunk);
        let interrupts = self.interrupts.as_ref().map(|p| p.as_fd());
        let outcome = supervise(
            child,
            request.limit,
            self.kill_grace,
            interrupts,
            &mut [Capture::new(read_end, &mut collect)],
        )?;
        if !outcome.succeeded() {
            return Ok(EnvironmentLoad::Failed(outcome));
        }
        let dir = request
            .files
            .first()
            .and_then(|f| f.parent())
            .unwrap_or(Path::new(""))
            .to_owned();
        Environment::parse_dump(&dump)
            .map(EnvironmentLoad::Loaded)
            .ok_or(Error::EnvironmentIncomplete { dir })
    }
}

/// Sources each file under `set -ue -o pipefail` as dib-run-parts does, then reports the
/// resulting working directory, umask and exported environment on fd 3. The files are sourced
/// with fd 3 closed so that daemons they start cannot hold the report open.
const ENVIRONMENT_SCRIPT: &str = r#"set -ue -o pipefail
__trace=$1; shift
__files=("$@"); set --
for __file in "${__files[@]}"; do
    if [ -n "$__trace" ]; then set -o xtrace; fi
    source "$__file" 3>&-
    { set +o xtrace; } 2>/dev/null
done
exec 1>&3 3>&-
printf '%s\0' "$PWD"
umask
printf '\0'
exec env -0
"#;

fn move_to_fd3(fd: i32) -> io::Result<()> {
    // SAFETY: plain syscalls on integer descriptors; no memory is touched.
    let rc = unsafe {
        if fd == 3 {
            libc::fcntl(3, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, 3)
        }
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn hook_command(hook: &HookCommand<'_>, via_shell: Option<&Path>) -> Command {
    // Environment files may have changed directory: resolve a relative hook path against
    // ours, and keep argv[0] as the caller wrote it.
    let program = match hook.environment {
        Some(_) if hook.path.is_relative() => std::env::current_dir()
            .map(|cwd| cwd.join(hook.path))
            .unwrap_or_else(|_| hook.path.to_owned()),
        _ => hook.path.to_owned(),
    };
    let mut command = match via_shell {
        Some(shell) => {
            let mut command = Command::new(shell);
            command.arg(program);
            command
        }
        None => {
            let mut command = Command::new(program);
            command.arg0(hook.path);
            command
        }
    };
    command.process_group(0);
    if let Some(env) = hook.environment {
        command
            .env_clear()
            .envs(env.vars.iter().map(|(k, v)| (k, v)))
            .env("_", hook.path)
            .current_dir(&env.cwd);
        let umask = env.umask as libc::mode_t;
        // SAFETY: umask(2) is async-signal-safe and cannot fail.
        unsafe {
            command.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
    }
    command
}

fn not_executed(path: &Path, error: &io::Error) -> HookOutcome {
    let status = if error.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    // ENOENT for a file that exists means its `#!` interpreter is missing: say which.
    let reason = match interpreter(path) {
        Some(interpreter) if error.kind() == io::ErrorKind::NotFound && path.exists() => {
            format!("interpreter {interpreter} not found")
        }
        _ => {
            let message =
                io::Error::from_raw_os_error(error.raw_os_error().unwrap_or(0)).to_string();
            message
                .split(" (os error")
                .next()
                .unwrap_or_default()
                .to_lowercase()
        }
    };
    HookOutcome::NotExecuted { status, reason }
}

/// The interpreter named by a script's `#!` line.
fn interpreter(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n]
        .strip_prefix(b"#!")?
        .split(|b| *b == b'\n')
        .next()?;
    let line = String::from_utf8_lossy(line);
    line.split_whitespace().next().map(str::to_owned)
}

/// `<phase>/<name>: ` for `<base>/<phase>.d/<name>`.
fn output_label(path: &Path) -> Vec<u8> {
    let phase = path
        .parent()
        .and_then(Path::file_name)
        .map(|dir| dir.as_bytes().strip_suffix(b".d").unwrap_or(dir.as_bytes()))
        .unwrap_or_default();
    let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
    [phase, b"/", name, b": "].concat()
}

/// Writes whole lines with a prefix; a last line without newline gets one at [`finish`].
///
/// [`finish`]: LinePrefixer::finish
struct LinePrefixer<W: io::Write> {
    prefix: Vec<u8>,
    partial: Vec<u8>,
    out: W,
}

impl<W: io::Write> LinePrefixer<W> {
    fn new(prefix: &[u8], out: W) -> Self {
        LinePrefixer {
            prefix: prefix.to_vec(),
            partial: Vec::new(),
            out,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while let Some(newline) = data.iter().position(|b| *b == b'\n') {
            let mut line = self.prefix.clone();
            line.append(&mut self.partial);
            line.extend_from_slice(&data[..=newline]);
            // The reader of our stdout going away must not stop the hook's supervision.
            let _ = self.out.write_all(&line);
            data = &data[newline + 1..];
        }
        self.partial.extend_from_slice(data);
    }

    fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.feed(b"\n");
        }
        let _ = self.out.flush();
    }
}

/// A pipe read while a child runs, each chunk handed to `sink` as it arrives.
pub struct Capture<'a> {
    fd: OwnedFd,
    sink: &'a mut dyn FnMut(&[u8]),
    open: bool,
}

impl fmt::Debug for Capture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("fd", &self.fd)
            .field("open", &self.open)
            .finish()
    }
}

impl<'a> Capture<'a> {
    /// `fd` is the read end; the caller must have closed its copy of the write end.
    pub fn new(fd: OwnedFd, sink: &'a mut dyn FnMut(&[u8])) -> Self {
        Capture {
            fd,
            sink,
            open: true,
        }
    }

    /// Reads once; closes the capture at end of file or on error.
    fn read_once(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        match nix::unistd::read(self.fd.as_fd(), &mut chunk) {
            Ok(0) => self.open = false,
            Ok(n) => (self.sink)(&chunk[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => self.open = false,
        }
    }

    /// Once the child is gone, takes what is left in the pipe without waiting for end of file:
    /// a daemon the child started may hold the write end open for ever.
    fn drain(&mut self) {
        let _ = nix::fcntl::fcntl(
            self.fd.as_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        );
        let mut chunk = [0u8; 16 * 1024];
        while self.open {
            match nix::unistd::read(self.fd.as_fd(), &mut chunk) {
                Ok(n @ 1..) => (self.sink)(&chunk[..n]),
                Err(Errno::EINTR) => {}
                _ => self.open = false,
            }
        }
    }
}

/// Waits for `child`, the leader of its own process group, while enforcing `limit`, forwarding
/// signals that arrive on `interrupts`, and reading `captures`.
///
/// On expiry the whole group gets SIGTERM, then SIGKILL after `grace`. Public so that a
/// [`HookRunner`] that builds its own [`Command`] (a chroot, a container) supervises the same way.
pub fn supervise(
    mut child: Child,
    limit: Option<TimeLimit>,
    grace: Duration,
    interrupts: Option<BorrowedFd<'_>>,
    captures: &mut [Capture<'_>],
) -> Result<HookOutcome> {
    let group = Pid::from_raw(child.id() as i32);
    let pidfd = pidfd_open(child.id());
    let deadline = limit.map(|l| Instant::now() + l.after);
    let mut backoff = Duration::from_micros(50);
    let outcome = loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            terminate(&mut child, group, pidfd.as_ref(), grace, Signal::SIGTERM)?;
            break HookOutcome::TimedOut(limit.unwrap_or(TimeLimit {
                after: Duration::ZERO,
                kind: LimitKind::Hook,
            }));
        }
        // Without a pidfd (kernels before 5.3) poll the child with a growing interval.
        let wait = match &pidfd {
            Some(_) => remaining,
            None => Some(remaining.map_or(backoff, |r| r.min(backoff))),
        };
        backoff = (backoff * 2).min(Duration::from_millis(20));

        // Slot 0: the pidfd (or the interrupt pipe), then the interrupt pipe, then captures.
        let mut fds = Vec::with_capacity(2 + captures.len());
        fds.extend(
            pidfd
                .as_ref()
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
        );
        let interrupt_slot = interrupts.map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        let capture_slots: Vec<Option<usize>> = captures
            .iter()
            .map(|c| {
                c.open.then(|| {
                    fds.push(PollFd::new(c.fd.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                })
            })
            .collect();
        match nix::poll::poll(&mut fds, poll_timeout(wait)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::os("poll", e)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let is_ready = |slot: Option<usize>| slot.is_some_and(|i| ready[i]);

        for (capture, slot) in captures.iter_mut().zip(capture_slots) {
            if is_ready(slot) {
                capture.read_once();
            }
        }
        if is_ready(interrupt_slot) {
            if let Some(signal) = interrupts.and_then(SignalPipe::take_from) {
                terminate(&mut child, group, pidfd.as_ref(), grace, signal)?;
                break HookOutcome::Interrupted(signal as i32);
            }
        }
        if pidfd.is_none() || ready[0] {
            let status = child.try_wait().map_err(|e| Error::Os {
                what: "wait",
                source: e,
            })?;
            if let Some(status) = status {
                break HookOutcome::from_exit_status(status);
            }
        }
    };
    for capture in captures.iter_mut() {
        capture.drain();
    }
    Ok(outcome)
}

/// Sends `first` to the group, waits up to `grace` for the leader, then SIGKILLs whatever is
/// left of the group and reaps the leader.
fn terminate(
    child: &mut Child,
    group: Pid,
    pidfd: Option<&OwnedFd>,
    grace: Duration,
    first: Signal,
) -> Result<()> {
    let wait_error = |e| Error::Os {
        what: "wait",
        source: e,
    };
    let _ = killpg(group, first);
    let deadline = Instant::now() + grace;
    while child.try_wait().map_err(wait_error)?.is_none() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        match pidfd {
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = nix::poll::poll(&mut fds, poll_timeout(Some(remaining)));
            }
            None => std::thread::sleep(remaining.min(Duration::from_millis(10))),
        }
    }
    // Stragglers that ignored the first signal, or children the leader left behind.
    let _ = killpg(group, Signal::SIGKILL);
    child.wait().map_err(wait_error)?;
    Ok(())
}

fn poll_timeout(wait: Option<Duration>) -> PollTimeout {
    match wait {
        None => PollTimeout::NONE,
        Some(d) => {
            // Round up so that an almost-expired limit does not spin at 0 ms.
            let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative return is a fresh descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// What [`RecordingRunner`] saw of one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedHook {
    pub path: PathBuf,
    pub environment: Option<Environment>,
    pub limit: Option<TimeLimit>,
}

/// A runner that executes nothing: it records each hook and answers with a scripted outcome
/// (success unless told otherwise). For testing code built on the engine.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    pub hooks: Vec<RecordedHook>,
    pub environment_requests: Vec<Vec<PathBuf>>,
    outcomes: HashMap<OsString, HookOutcome>,
    environment: Option<EnvironmentLoad>,
}

impl RecordingRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hooks named `name` (in any directory) end with `outcome`.
    pub fn with_outcome(mut self, name: impl Into<OsString>, outcome: HookOutcome) -> Self {
        self.outcomes.insert(name.into(), outcome);
        self
    }

    /// What sourcing environment files yields (default: the runner's own environment).
    pub fn with_environment(mut self, load: EnvironmentLoad) -> Self {
        self.environment = Some(load);
        self
    }

    /// Names of the hooks run so far, in order.
    pub fn names(&self) -> Vec<String> {
        self.hooks
            .iter()
            .map(|h| {
                h.path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

impl HookRunner for RecordingRunner {
    fn run_hook(&mut self, hook: &HookCommand<'_>) -> Result<HookOutcome> {
        self.hooks.push(RecordedHook {
            path: hook.path.to_owned(),
            environment: hook.environment.cloned(),
            limit: hook.limit,
        });
        let name = hook.path.file_name().unwrap_or_default();
        Ok(self
            .outcomes
            .get(name)
            .cloned()
            .unwrap_or(HookOutcome::Exited(0)))
    }

    fn load_environment(&mut self, request: &EnvironmentRequest<'_>) -> Result<EnvironmentLoad> {
        self.environment_requests.push(request.files.to_vec());
        Ok(self.environment.clone().unwrap_or_else(|| {
            EnvironmentLoad::Loaded(Environment {
                vars: std::env::vars_os().collect(),
                cwd: std::env::current_dir().unwrap_or_default(),
                umask: 0o022,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_environment_dump() {
        let env = Environment::parse_dump(b"/\x000077\n\x00FOO=bar\x00_=/usr/bin/env\x00X=a=b\x00")
            .unwrap();
        assert_eq!(env.cwd, Path::new("/"));
        assert_eq!(env.umask, 0o077);
        assert_eq!(env.get("FOO"), Some(OsStr::new("bar")));
        assert_eq!(env.get("X"), Some(OsStr::new("a=b")));
        assert_eq!(env.get("_"), None);
        assert!(!format!("{env:?}").contains("bar"));
    }

    #[test]
    fn output_lines_get_the_hook_label() {
        let label = output_label(Path::new("/base/configure.d/10-a"));
        assert_eq!(label, b"configure/10-a: ");
        let mut out = Vec::new();
        let mut prefixer = LinePrefixer::new(&label, &mut out);
        prefixer.feed(b"one\ntw");
        prefixer.feed(b"o\nthree");
        prefixer.finish();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "configure/10-a: one\nconfigure/10-a: two\nconfigure/10-a: three\n"
        );
    }

    #[test]
    fn statuses_follow_the_shell() {
        assert_eq!(HookOutcome::Exited(42).status(), 42);
        assert_eq!(HookOutcome::Signalled(9).status(), 137);
        let limit = TimeLimit {
            after: Duration::from_secs(1),
            kind: LimitKind::Hook,
        };
        assert_eq!(HookOutcome::TimedOut(limit).status(), 124);
        assert_eq!(
            HookOutcome::Signalled(9).to_string(),
            "was killed by signal 9 (SIGKILL), status 137"
        );
    }
}
