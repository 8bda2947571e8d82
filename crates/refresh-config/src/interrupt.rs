//! Turning SIGINT/SIGTERM into something the runner can wait on next to a child.

use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::error::{Error, Result};

/// The signals a command-line runner forwards to the running hook: interrupt, termination,
/// hang-up (the terminal or ssh session went away) and quit.
pub const FORWARDED_SIGNALS: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Write end of the one signal pipe of the process; -1 until [`SignalPipe::install`].
static PIPE_WRITE_END: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = PIPE_WRITE_END.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; errno is saved and restored around it so the
        // interrupted code sees its own.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, (&byte as *const u8).cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// A self-pipe that receives the number of each caught signal, so that a runner polling a
/// child can forward the signal to the child's process group.
///
/// Signal dispositions are process-wide: install it once, in the program's `main`, never from
/// a library that others embed.
/// Dropping it restores the previous dispositions of its signals.
#[derive(Debug)]
pub struct SignalPipe {
    read_end: OwnedFd,
    previous: Vec<(Signal, SigAction)>,
}

impl SignalPipe {
    /// Catches `signals` from now on. Fails if a pipe is already installed.
    pub fn install(signals: &[Signal]) -> Result<Self> {
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| Error::os("pipe", e))?;
        let write_fd = write_end.into_raw_fd();
        if PIPE_WRITE_END
            .compare_exchange(-1, write_fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // SAFETY: write_fd came from into_raw_fd above and is owned by nobody else.
            unsafe { libc::close(write_fd) };
            return Err(Error::os("install signal pipe", nix::errno::Errno::EBUSY));
        }
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        let mut pipe = SignalPipe {
            read_end,
            previous: Vec::new(),
        };
        for &signal in signals {
            // SAFETY: the handler only performs async-signal-safe calls.
            let previous =
                unsafe { sigaction(signal, &action) }.map_err(|e| Error::os("sigaction", e))?;
            pipe.previous.push((signal, previous));
        }
        Ok(pipe)
    }

    /// The last signal waiting in the pipe behind `fd`, if any.
    pub(crate) fn take_from(fd: BorrowedFd<'_>) -> Option<Signal> {
        let mut buffer = [0u8; 64];
        let mut last = None;
        while let Ok(n @ 1..) = nix::unistd::read(fd, &mut buffer) {
            last = Some(buffer[n - 1]);
        }
        last.and_then(|b| Signal::try_from(i32::from(b)).ok())
    }

    /// The latest signal caught since the last call, without waiting.
    pub fn pending(&self) -> Option<Signal> {
        Self::take_from(self.read_end.as_fd())
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        for (signal, previous) in self.previous.drain(..).rev() {
            // SAFETY: restores a disposition that was in force before install().
            let _ = unsafe { sigaction(signal, &previous) };
        }
        let write_fd = PIPE_WRITE_END.swap(-1, Ordering::SeqCst);
        if write_fd >= 0 {
            // SAFETY: the descriptor was leaked to the static by install() and nothing else
            // closes it; the handlers that wrote to it are gone.
            unsafe { libc::close(write_fd) };
        }
    }
}

impl AsFd for SignalPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read_end.as_fd()
    }
}
