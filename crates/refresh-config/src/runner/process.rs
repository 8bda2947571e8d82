//! [`ProcessRunner`]: hooks as real processes.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use super::relay::Relay;
use super::supervise::{supervise, Capture};
use super::{
    Environment, EnvironmentLoad, EnvironmentRequest, HookCommand, HookOutcome, HookRunner,
};
use crate::error::{Error, Result};
use crate::interrupt::SignalPipe;

/// Runs hooks as real processes: each one directly with `execve`, in its own process group,
/// with inherited stdio, terminated (SIGTERM, then SIGKILL after the grace period) when its
/// limit expires. On a terminal, each hook gets the terminal's foreground while it runs, so
/// that it can prompt and Ctrl-C reaches it.
pub struct ProcessRunner {
    kill_grace: Duration,
    shell: PathBuf,
    env_program: PathBuf,
    trace_environment: bool,
    relay: Option<Relay>,
    interrupts: Option<SignalPipe>,
    base_environment: Option<Vec<(OsString, OsString)>>,
    before_exec: Option<BeforeExec>,
}

/// Work done in every child between fork and exec (entering a namespace or a chroot).
pub type BeforeExec = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

impl std::fmt::Debug for ProcessRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The base environment may hold secrets: names only.
        f.debug_struct("ProcessRunner")
            .field("kill_grace", &self.kill_grace)
            .field("shell", &self.shell)
            .field("env_program", &self.env_program)
            .field("trace_environment", &self.trace_environment)
            .field("relay", &self.relay.is_some())
            .field("interrupts", &self.interrupts.is_some())
            .field(
                "base_environment",
                &self
                    .base_environment
                    .as_ref()
                    .map(|vars| vars.iter().map(|(k, _)| k).collect::<Vec<_>>()),
            )
            .field("before_exec", &self.before_exec.is_some())
            .finish()
    }
}

impl Default for ProcessRunner {
    fn default() -> Self {
        ProcessRunner {
            kill_grace: Duration::from_secs(5),
            shell: PathBuf::from("bash"),
            // Resolved now: environment files may change PATH before the dump runs.
            env_program: find_in_path("env").unwrap_or_else(|| PathBuf::from("/usr/bin/env")),
            trace_environment: true,
            relay: None,
            interrupts: None,
            base_environment: None,
            before_exec: None,
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

    /// Relay each line a hook writes to stdout or stderr to `stdout` or `stderr` with a
    /// `<phase>/<name>: ` prefix (`configure/10-a: …`) instead of letting the hook inherit the
    /// runner's, so that interleaved logs (journald) say which hook wrote what.
    pub fn relay_output(
        mut self,
        stdout: Box<dyn Write + Send>,
        stderr: Box<dyn Write + Send>,
    ) -> Self {
        self.relay = Some(Relay::new(stdout, stderr));
        self
    }

    /// Forward signals caught by `pipe` to the running hook's process group, and end the run.
    pub fn forward_signals(mut self, pipe: SignalPipe) -> Self {
        self.interrupts = Some(pipe);
        self
    }

    /// The environment hooks and the environment shell start from, instead of ours (hooks of
    /// a phase with `environment.d` get what those files leave, which starts from this too).
    pub fn base_environment(mut self, vars: Vec<(OsString, OsString)>) -> Self {
        self.base_environment = Some(vars);
        self
    }

    /// Runs `work` in every child this runner starts, after fork and before exec: to enter a
    /// mount namespace and a chroot, say. It must only make async-signal-safe calls.
    pub fn before_exec(mut self, work: BeforeExec) -> Self {
        self.before_exec = Some(work);
        self
    }

    /// Changes the base environment between runs (`None`: ours).
    pub fn set_base_environment(&mut self, vars: Option<Vec<(OsString, OsString)>>) {
        self.base_environment = vars;
    }

    /// Changes the before-exec work between runs (`None`: none).
    pub fn set_before_exec(&mut self, work: Option<BeforeExec>) {
        self.before_exec = work;
    }

    /// Applies the base environment and the before-exec work to a command.
    fn prepare(&self, command: &mut Command, inherits: bool) {
        if let (Some(vars), true) = (&self.base_environment, inherits) {
            command.env_clear().envs(vars.iter().map(|(k, v)| (k, v)));
        }
        if let Some(work) = &self.before_exec {
            let work = Arc::clone(work);
            // SAFETY: the caller of `before_exec` promised async-signal-safe work.
            unsafe { command.pre_exec(move || work()) };
        }
    }

    fn interrupt_fd(&self) -> Option<BorrowedFd<'_>> {
        self.interrupts.as_ref().map(|p| p.as_fd())
    }

    fn spawn(&self, hook: &HookCommand<'_>, terminal: bool) -> io::Result<Child> {
        let spawn = |via_shell: Option<&Path>| {
            let mut command = hook_command(hook, via_shell);
            self.prepare(&mut command, hook.environment.is_none());
            if self.relay.is_some() {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            if terminal {
                // SAFETY: sigprocmask and tcsetpgrp are async-signal-safe.
                unsafe { command.pre_exec(take_terminal) };
            }
            command.spawn()
        };
        match spawn(None) {
            // A script without `#!`: bash, which ran hooks upstream, runs it as a shell script.
            Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => spawn(Some(&self.shell)),
            spawned => spawned,
        }
    }
}

impl HookRunner for ProcessRunner {
    fn run_hook(&mut self, hook: &HookCommand<'_>) -> Result<HookOutcome> {
        let terminal = foreground_terminal();
        let mut child = match self.spawn(hook, terminal.is_some()) {
            Ok(child) => child,
            Err(e) => return Ok(not_executed(hook.path, &e)),
        };
        if let Some(tty) = &terminal {
            // The child does this too; whichever runs first wins the race harmlessly.
            give_terminal(tty.as_fd(), Pid::from_raw(child.id() as i32));
        }
        let relaying = match (&self.relay, child.stdout.take(), child.stderr.take()) {
            (Some(relay), Some(stdout), Some(stderr)) => {
                Some(relay.start(hook.path, stdout, stderr))
            }
            _ => None,
        };
        let outcome = supervise(
            child,
            hook.limit,
            self.kill_grace,
            self.interrupt_fd(),
            &mut [],
        );
        if let Some(tty) = &terminal {
            give_terminal(tty.as_fd(), nix::unistd::getpgrp());
        }
        if let Some(relaying) = relaying {
            relaying?.settle();
        }
        Ok(match outcome? {
            // With the terminal, Ctrl-C and Ctrl-\ reach the hook, not us: a hook that dies of
            // them is the user interrupting the run, as a shell sees it.
            HookOutcome::Signalled(sig)
                if terminal.is_some() && (sig == libc::SIGINT || sig == libc::SIGQUIT) =>
            {
                HookOutcome::Interrupted(sig)
            }
            outcome => outcome,
        })
    }

    fn load_environment(
        &mut self,
        request: &EnvironmentRequest<'_>,
        on_sourcing: &mut dyn FnMut(&Path),
    ) -> Result<EnvironmentLoad> {
        let (read_end, write_end) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::os("pipe", e))?;
        let mut command = Command::new(&self.shell);
        command
            .arg("-c")
            .arg(ENVIRONMENT_SCRIPT)
            .arg("environment.d")
            .arg(&self.env_program)
            .arg(if self.trace_environment { "1" } else { "" })
            .args(request.files)
            .process_group(0);
        self.prepare(&mut command, true);
        let report_fd = write_end.as_raw_fd();
        // SAFETY: between fork and exec this calls only dup2 and fcntl, which are
        // async-signal-safe, on a descriptor that stays open until spawn returns.
        unsafe {
            command.pre_exec(move || move_to_fd3(report_fd));
        }
        let child = command.spawn().map_err(|source| Error::Spawn {
            program: self.shell.clone(),
            source,
        })?;
        drop(write_end);
        let mut report = EnvironmentReport::default();
        let mut sink = |chunk: &[u8]| report.feed(chunk, on_sourcing);
        let outcome = supervise(
            child,
            request.limit,
            self.kill_grace,
            self.interrupt_fd(),
            &mut [Capture::new(read_end, &mut sink)],
        )?;
        if !outcome.succeeded() {
            return Ok(EnvironmentLoad::Failed {
                outcome,
                file: report.sourcing,
            });
        }
        let dir = request
            .files
            .first()
            .and_then(|f| f.parent())
            .unwrap_or(Path::new(""));
        report
            .environment()
            .map(EnvironmentLoad::Loaded)
            .ok_or_else(|| Error::EnvironmentIncomplete {
                dir: dir.to_owned(),
            })
    }

    fn pending_interrupt(&mut self) -> Option<i32> {
        self.interrupts
            .as_ref()
            .and_then(SignalPipe::pending)
            .map(|s| s as i32)
    }
}

/// Sources each file under `set -ue -o pipefail` as dib-run-parts does, announcing each on
/// fd 3 (`source NUL path NUL`), then reports the resulting working directory, umask and
/// exported environment there (`environment NUL cwd NUL umask NUL env -0`). The files are
/// sourced with fd 3 closed so that daemons they start cannot hold the report open.
const ENVIRONMENT_SCRIPT: &str = r#"set -ue -o pipefail
__env=$1; __trace=$2; shift 2
__files=("$@"); set --
for __file in "${__files[@]}"; do
    printf 'source\0%s\0' "$__file" >&3
    if [ -n "$__trace" ]; then set -o xtrace; fi
    source "$__file" 3>&-
    { set +o xtrace; } 2>/dev/null
done
exec 1>&3 3>&-
printf 'environment\0%s\0' "$PWD"
umask
printf '\0'
exec "$__env" -0
"#;

/// Reads the environment shell's fd 3 as it arrives.
#[derive(Default)]
struct EnvironmentReport {
    data: Vec<u8>,
    parsed: usize,
    /// The file being sourced; `None` once all are done.
    sourcing: Option<PathBuf>,
    environment_at: Option<usize>,
}

impl EnvironmentReport {
    fn feed(&mut self, chunk: &[u8], on_sourcing: &mut dyn FnMut(&Path)) {
        self.data.extend_from_slice(chunk);
        while self.environment_at.is_none() {
            let mut fields = self.data[self.parsed..].splitn(3, |b| *b == 0);
            let (Some(tag), Some(value), Some(_)) = (fields.next(), fields.next(), fields.next())
            else {
                return; // wait for the rest of the record
            };
            match tag {
                b"source" => {
                    let path = PathBuf::from(OsStr::from_bytes(value));
                    self.parsed += tag.len() + value.len() + 2;
                    on_sourcing(&path);
                    self.sourcing = Some(path);
                }
                b"environment" => {
                    self.sourcing = None;
                    self.environment_at = Some(self.parsed + tag.len() + 1);
                }
                _ => return,
            }
        }
    }

    fn environment(&self) -> Option<Environment> {
        Environment::parse_dump(&self.data[self.environment_at?..])
    }
}

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

/// Our stdin when it is a terminal whose foreground group is ours.
fn foreground_terminal() -> Option<BorrowedFd<'static>> {
    let stdin = io::stdin();
    // SAFETY: fd 0 stays open for the life of the process.
    let tty = unsafe { BorrowedFd::borrow_raw(stdin.as_raw_fd()) };
    let ours = nix::unistd::isatty(tty).unwrap_or(false)
        && nix::unistd::tcgetpgrp(tty) == Ok(nix::unistd::getpgrp());
    ours.then_some(tty)
}

/// Makes `group` the terminal's foreground group. SIGTTOU is blocked meanwhile: a background
/// process (us, once the hook has the terminal) may only take it back that way.
fn give_terminal(tty: BorrowedFd<'_>, group: Pid) {
    let mut block = SigSet::empty();
    block.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    if nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old))
        .is_ok()
    {
        let _ = nix::unistd::tcsetpgrp(tty, group);
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}

/// In the child, after it has its own process group: take the terminal's foreground.
fn take_terminal() -> io::Result<()> {
    // SAFETY: fd 0 is the terminal checked by the parent; the calls are async-signal-safe.
    let tty = unsafe { BorrowedFd::borrow_raw(0) };
    give_terminal(tty, nix::unistd::getpgrp());
    Ok(())
}

pub(super) fn hook_command(hook: &HookCommand<'_>, via_shell: Option<&Path>) -> Command {
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

pub(super) fn not_executed(path: &Path, error: &io::Error) -> HookOutcome {
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

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_report_names_each_file_as_it_starts() {
        let mut report = EnvironmentReport::default();
        let mut seen = Vec::new();
        let mut on_sourcing = |p: &Path| seen.push(p.to_owned());
        report.feed(b"source\0/e/10-a\0sou", &mut on_sourcing);
        report.feed(b"rce\0/e/20-b\0", &mut on_sourcing);
        assert_eq!(report.sourcing.as_deref(), Some(Path::new("/e/20-b")));
        report.feed(b"environment\0/\0", &mut on_sourcing);
        report.feed(b"0022\n\0A=1\0", &mut on_sourcing);
        assert_eq!(seen, [PathBuf::from("/e/10-a"), PathBuf::from("/e/20-b")]);
        assert_eq!(report.sourcing, None);
        let env = report.environment().unwrap();
        assert_eq!((env.cwd.as_path(), env.umask), (Path::new("/"), 0o022));
        assert_eq!(env.get("A"), Some(OsStr::new("1")));
    }
}
