//! Waiting for a hook under a time limit, with signal forwarding and pipe capture.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::{HookOutcome, TimeLimit};
use crate::error::{Error, Result};
use crate::interrupt::SignalPipe;

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

/// The child and how to signal it: its whole process group when it leads one.
struct Supervised {
    child: Child,
    pid: Pid,
    leads_group: bool,
    pidfd: Option<OwnedFd>,
    reaped: bool,
}

impl Supervised {
    fn signal(&self, signal: Option<Signal>) -> nix::Result<()> {
        if self.leads_group {
            killpg(self.pid, signal)
        } else if self.reaped {
            Err(Errno::ESRCH)
        } else {
            kill(self.pid, signal)
        }
    }

    /// Whether any member of the child's group is still running. Exited members linger as
    /// zombies until init reaps them, and they still receive signals, so those do not count.
    fn group_alive(&self) -> bool {
        if self.signal(None) == Err(Errno::ESRCH) {
            return false;
        }
        if !self.leads_group {
            return !self.reaped;
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return true;
        };
        entries.filter_map(|e| e.ok()).any(|entry| {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                return false;
            };
            // Fields after the parenthesised command name: state, ppid, pgrp, …
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(self.pid.as_raw()) && state != "Z" && state != "X"
        })
    }

    fn try_reap(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let status = self.child.try_wait().map_err(|source| Error::Os {
            what: "wait",
            source,
        })?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    /// Waits up to `timeout` for the leader to exit, without reaping it.
    fn wait_exit(&self, timeout: Duration) {
        match &self.pidfd {
            Some(fd) if !self.reaped => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = nix::poll::poll(&mut fds, poll_timeout(Some(timeout)));
            }
            _ => std::thread::sleep(timeout.min(Duration::from_millis(10))),
        }
    }

    /// Sends `first` to the group and gives every member, not just the leader, `grace` to
    /// exit; then SIGKILLs whatever is left and reaps the leader.
    fn terminate(&mut self, first: Signal, grace: Duration) -> Result<std::process::ExitStatus> {
        let _ = self.signal(Some(first));
        let deadline = Instant::now() + grace;
        loop {
            let status = self.try_reap()?;
            // Once the leader is reaped, an empty group answers ESRCH: nothing left to kill.
            // While members remain, the group id stays theirs, so the SIGKILL below cannot hit
            // an unrelated group.
            if let Some(status) = status.filter(|_| !self.group_alive()) {
                return Ok(status);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            self.wait_exit(remaining.min(Duration::from_millis(50)));
        }
        let _ = self.signal(Some(Signal::SIGKILL));
        self.child.wait().map_err(|source| Error::Os {
            what: "wait",
            source,
        })
    }
}

/// Waits for `child` while enforcing `limit`, forwarding signals that arrive on `interrupts`,
/// and reading `captures`.
///
/// When `child` leads its own process group (`Command::process_group(0)`), expiry and
/// forwarded signals reach the whole group: the signal (SIGTERM on expiry), then SIGKILL after
/// `grace`. The child is always reaped, on error paths too. Public so that a [`HookRunner`]
/// that builds its own command (a chroot, a container) supervises the same way.
///
/// [`HookRunner`]: super::HookRunner
pub fn supervise(
    child: Child,
    limit: Option<TimeLimit>,
    grace: Duration,
    interrupts: Option<BorrowedFd<'_>>,
    captures: &mut [Capture<'_>],
) -> Result<HookOutcome> {
    let pid = Pid::from_raw(child.id() as i32);
    let leads_group = nix::unistd::getpgid(Some(pid)) == Ok(pid);
    let mut supervised = Supervised {
        child,
        pid,
        leads_group,
        pidfd: pidfd_open(pid),
        reaped: false,
    };
    let result = wait(&mut supervised, limit, grace, interrupts, captures);
    if result.is_err() && !supervised.reaped {
        let _ = supervised.terminate(Signal::SIGKILL, Duration::ZERO);
    }
    for capture in captures.iter_mut() {
        capture.drain();
    }
    result
}

fn wait(
    supervised: &mut Supervised,
    limit: Option<TimeLimit>,
    grace: Duration,
    interrupts: Option<BorrowedFd<'_>>,
    captures: &mut [Capture<'_>],
) -> Result<HookOutcome> {
    let deadline = limit.map(|l| (Instant::now() + l.after, l));
    let mut backoff = Duration::from_micros(50);
    loop {
        let remaining = deadline.map(|(at, _)| at.saturating_duration_since(Instant::now()));
        if let Some((_, limit)) = deadline.filter(|_| remaining == Some(Duration::ZERO)) {
            supervised.terminate(Signal::SIGTERM, grace)?;
            return Ok(HookOutcome::TimedOut(limit));
        }
        // Without a pidfd (kernels before 5.3) poll the child with a growing interval.
        let wait = match &supervised.pidfd {
            Some(_) => remaining,
            None => Some(remaining.map_or(backoff, |r| r.min(backoff))),
        };
        backoff = (backoff * 2).min(Duration::from_millis(20));

        let mut fds = Vec::with_capacity(2 + captures.len());
        let pidfd_slot = supervised.pidfd.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
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
                supervised.terminate(signal, grace)?;
                return Ok(HookOutcome::Interrupted(signal as i32));
            }
        }
        if pidfd_slot.is_none() || is_ready(pidfd_slot) {
            if let Some(status) = supervised.try_reap()? {
                return Ok(HookOutcome::from_exit_status(status));
            }
        }
    }
}

impl HookOutcome {
    fn from_exit_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => HookOutcome::Exited(code),
            (None, Some(sig)) => HookOutcome::Signalled(sig),
            (None, None) => HookOutcome::Exited(1),
        }
    }
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

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    // SAFETY: a non-negative return is a fresh descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
