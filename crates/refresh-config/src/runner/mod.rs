//! Running one hook: the [`HookRunner`] seam, the real [`ProcessRunner`] and the
//! [`RecordingRunner`] test double.

mod process;
mod recording;
mod relay;
mod supervise;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::Result;

pub use process::{BeforeExec, ProcessRunner};
pub use recording::{RecordedHook, RecordingRunner};
pub use supervise::{supervise, Capture};

/// Exit status of a hook stopped by a time limit, as `timeout(1)` reports it.
pub const TIMEOUT_STATUS: i32 = 124;

/// Which limit bounds a hook: its own (`--hook-timeout`) or the whole run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Hook,
    Run,
}

/// How long a hook may run before it is terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimit {
    /// Time the hook gets from its start: its own limit, or what is left of the run's.
    pub after: Duration,
    pub kind: LimitKind,
    /// The limit as configured, for messages (`--timeout 2` is 2 s even for the last hook).
    pub configured: Duration,
}

impl TimeLimit {
    /// A hook's own limit.
    pub fn hook(limit: Duration) -> Self {
        TimeLimit {
            after: limit,
            kind: LimitKind::Hook,
            configured: limit,
        }
    }
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

    /// What a failed `execve` of `path` means, as a shell would report it: 127 when the file
    /// (or its `#!` interpreter) does not exist, else 126.
    pub fn from_spawn_error(path: &Path, error: &std::io::Error) -> Self {
        process::not_executed(path, error)
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
            HookOutcome::TimedOut(TimeLimit {
                kind: LimitKind::Hook,
                configured,
                ..
            }) => {
                write!(f, "timed out after {}", seconds(*configured))
            }
            HookOutcome::TimedOut(TimeLimit {
                kind: LimitKind::Run,
                configured,
                ..
            }) => {
                write!(
                    f,
                    "was stopped when the run's timeout of {} expired",
                    seconds(*configured)
                )
            }
            HookOutcome::Interrupted(sig) => {
                write!(f, "was interrupted by signal {sig} ({})", signal_name(*sig))
            }
            HookOutcome::NotExecuted { status, reason } => {
                write!(f, "could not be executed: {reason}, status {status}")
            }
        }
    }
}

pub(crate) fn signal_name(sig: i32) -> &'static str {
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

    /// Parses `cwd NUL umask NUL (NAME=VALUE NUL)*`, as the environment shell reports it.
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

impl HookCommand<'_> {
    /// The command that runs this hook as [`ProcessRunner`] does: `argv[0]` as given, the
    /// captured environment, working directory and umask, in a process group of its own. A
    /// runner that wraps hooks (a chroot) starts from this and supervises with [`supervise`].
    pub fn to_command(&self) -> std::process::Command {
        process::hook_command(self, None)
    }
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
    /// The shell sourcing the files failed (a failing command, an unset variable, …) while
    /// sourcing `file` (`None`: after the last one, reporting the environment).
    Failed {
        outcome: HookOutcome,
        file: Option<PathBuf>,
    },
}

/// How hooks are executed: the seam a caller wraps to run hooks elsewhere (in a chroot, a
/// container, over ssh) or to record them in tests.
pub trait HookRunner {
    fn run_hook(&mut self, hook: &HookCommand<'_>) -> Result<HookOutcome>;

    /// Sources the files in order, calling `on_sourcing` as each one starts.
    fn load_environment(
        &mut self,
        request: &EnvironmentRequest<'_>,
        on_sourcing: &mut dyn FnMut(&Path),
    ) -> Result<EnvironmentLoad>;

    /// A signal that arrived since the last hook and should end the run before the next one.
    fn pending_interrupt(&mut self) -> Option<i32> {
        None
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
    fn statuses_and_messages_follow_the_shell() {
        assert_eq!(HookOutcome::Exited(42).status(), 42);
        assert_eq!(HookOutcome::Signalled(9).status(), 137);
        let own = TimeLimit::hook(Duration::from_secs(1));
        assert_eq!(HookOutcome::TimedOut(own).status(), 124);
        assert_eq!(HookOutcome::TimedOut(own).to_string(), "timed out after 1s");
        let run = TimeLimit {
            after: Duration::from_millis(300),
            kind: LimitKind::Run,
            configured: Duration::from_secs(2),
        };
        assert_eq!(
            HookOutcome::TimedOut(run).to_string(),
            "was stopped when the run's timeout of 2s expired"
        );
        assert_eq!(
            HookOutcome::Signalled(9).to_string(),
            "was killed by signal 9 (SIGKILL), status 137"
        );
    }
}
