//! `--prefix-output`: relaying a hook's stdout and stderr line by line with a label.

use std::ffi::OsStr;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A line longer than this is cut into pieces, each labelled, so memory stays bounded.
const MAX_LINE: usize = 64 * 1024;

/// How long to wait, once a hook has exited, for the rest of its output. Normally the pipes
/// end at once; a daemon the hook started may keep them open, and its output is then relayed
/// in the background while the run goes on.
const SETTLE: Duration = Duration::from_millis(200);

type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// Where labelled output goes.
#[derive(Clone)]
pub(crate) struct Relay {
    stdout: SharedWriter,
    stderr: SharedWriter,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Relay")
    }
}

impl Relay {
    pub(crate) fn new(stdout: Box<dyn Write + Send>, stderr: Box<dyn Write + Send>) -> Self {
        Relay {
            stdout: Arc::new(Mutex::new(stdout)),
            stderr: Arc::new(Mutex::new(stderr)),
        }
    }

    /// Relays both pipes on threads of their own until they end.
    pub(crate) fn start(
        &self,
        hook: &Path,
        stdout: impl Read + Send + 'static,
        stderr: impl Read + Send + 'static,
    ) -> Result<Relaying> {
        let label = output_label(hook);
        let (done, finished) = mpsc::channel();
        for (pipe, writer) in [
            (Box::new(stdout) as Box<dyn Read + Send>, &self.stdout),
            (Box::new(stderr), &self.stderr),
        ] {
            let mut prefixer = LinePrefixer::new(&label, Arc::clone(writer));
            let done = done.clone();
            std::thread::Builder::new()
                .name("hook-output".to_owned())
                .spawn(move || {
                    prefixer.copy_from(pipe);
                    let _ = done.send(());
                })
                .map_err(|source| Error::Os {
                    what: "spawn output relay",
                    source,
                })?;
        }
        Ok(Relaying {
            finished,
            streams: 2,
        })
    }
}

/// The relay threads of one hook.
pub(crate) struct Relaying {
    finished: mpsc::Receiver<()>,
    streams: usize,
}

impl Relaying {
    /// Waits a little for both pipes to end, so that a hook's last lines come before the
    /// next hook's first.
    pub(crate) fn settle(self) {
        let deadline = Instant::now() + SETTLE;
        for _ in 0..self.streams {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.finished.recv_timeout(left).is_err() {
                break;
            }
        }
    }
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

/// Writes whole lines with a prefix; a last line without newline gets one at the end.
struct LinePrefixer<W> {
    prefix: Vec<u8>,
    partial: Vec<u8>,
    out: W,
}

impl<W> LinePrefixer<W>
where
    W: LockedWrite,
{
    fn new(prefix: &[u8], out: W) -> Self {
        LinePrefixer {
            prefix: prefix.to_vec(),
            partial: Vec::new(),
            out,
        }
    }

    fn copy_from(&mut self, mut pipe: impl Read) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.feed(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.finish();
    }

    fn feed(&mut self, mut data: &[u8]) {
        let mut lines = Vec::new();
        while let Some(newline) = data.iter().position(|b| *b == b'\n') {
            lines.extend_from_slice(&self.prefix);
            lines.append(&mut self.partial);
            lines.extend_from_slice(&data[..=newline]);
            data = &data[newline + 1..];
        }
        self.partial.extend_from_slice(data);
        if self.partial.len() >= MAX_LINE {
            lines.extend_from_slice(&self.prefix);
            lines.append(&mut self.partial);
            lines.push(b'\n');
        }
        if !lines.is_empty() {
            self.out.write_locked(&lines);
        }
    }

    fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.feed(b"\n");
        }
    }
}

/// A writer shared by threads, written a batch of whole lines at a time.
trait LockedWrite {
    fn write_locked(&mut self, bytes: &[u8]);
}

impl LockedWrite for SharedWriter {
    fn write_locked(&mut self, bytes: &[u8]) {
        if let Ok(mut out) = self.lock() {
            // The reader of our output going away must not stop the hook.
            let _ = out.write_all(bytes).and_then(|()| out.flush());
        }
    }
}

impl LockedWrite for Vec<u8> {
    fn write_locked(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_get_the_hook_label() {
        let label = output_label(Path::new("/base/configure.d/10-a"));
        assert_eq!(label, b"configure/10-a: ");
        let mut prefixer = LinePrefixer::new(&label, Vec::new());
        prefixer.feed(b"one\ntw");
        prefixer.feed(b"o\nthree");
        prefixer.finish();
        assert_eq!(
            String::from_utf8(prefixer.out).unwrap(),
            "configure/10-a: one\nconfigure/10-a: two\nconfigure/10-a: three\n"
        );
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut prefixer = LinePrefixer::new(b"x: ", Vec::new());
        prefixer.feed(&vec![b'a'; MAX_LINE + 10]);
        assert!(prefixer.partial.is_empty());
        assert_eq!(prefixer.out.len(), 3 + MAX_LINE + 10 + 1);
    }
}
