//! The run lock: BSD `flock` on a file, shared with upstream os-refresh-config.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// An exclusive, non-blocking lock held for the whole run. While held the file says who holds
/// it (`Locked by pid==N at <time>`); it is emptied, never deleted, when the lock is dropped.
#[derive(Debug)]
pub struct RunLock {
    file: Flock<File>,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock or fails at once: [`Error::LockContended`] (naming the holder's pid when
    /// the file shows it) if another run holds it, [`Error::Lock`] for anything else.
    pub fn acquire(path: &Path) -> Result<Self> {
        let lock_error = |source| Error::Lock {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .append(true)
            .read(true)
            .create(true)
            .open(path)
            .map_err(lock_error)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut content = String::new();
                let _ = file.read_to_string(&mut content);
                return Err(Error::LockContended {
                    path: path.to_owned(),
                    holder: holder_pid(&content),
                });
            }
            Err((_, errno)) => return Err(lock_error(errno.into())),
        };
        let note = format!(
            "Locked by pid=={} at {}\n",
            std::process::id(),
            iso8601_utc(SystemTime::now())
        );
        // Opened for append: after truncation the note lands at the start.
        file.set_len(0)
            .and_then(|()| file.write_all(note.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(lock_error)?;
        Ok(RunLock {
            file,
            path: path.to_owned(),
        })
    }

    /// Like [`RunLock::acquire`], but while another run holds the lock, retries for up to
    /// `wait` before giving up with [`Error::LockContended`].
    pub fn acquire_waiting(path: &Path, wait: Duration) -> Result<Self> {
        let deadline = Instant::now() + wait;
        loop {
            match Self::acquire(path) {
                Err(Error::LockContended { .. }) if Instant::now() < deadline => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::sleep(left.min(Duration::from_millis(100)));
                }
                result => return result,
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Emptied while still locked, so that nobody reads a stale pid.
        let _ = self.file.set_len(0);
    }
}

/// The pid in a `Locked by pid==N at …` note.
pub fn holder_pid(content: &str) -> Option<u32> {
    let rest = content.split_once("pid==")?.1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a time after the epoch.
fn iso8601_utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(iso8601_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(iso8601_utc(leap_day), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn reads_the_holder_pid() {
        assert_eq!(
            holder_pid("Locked by pid==4242 at 2024-01-01T00:00:00Z\n"),
            Some(4242)
        );
        assert_eq!(holder_pid(""), None);
    }

    #[test]
    fn second_lock_is_refused_and_file_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orc.lock");
        let first = RunLock::acquire(&path).unwrap();
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(content.starts_with(&format!("Locked by pid=={} at ", std::process::id())));
        match RunLock::acquire(&path) {
            Err(Error::LockContended { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id()))
            }
            other => panic!("expected contention, got {other:?}"),
        }
        let waited = std::thread::scope(|scope| {
            let waiter = scope.spawn(|| RunLock::acquire_waiting(&path, Duration::from_secs(10)));
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
            waiter.join().unwrap()
        });
        drop(waited.unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        drop(RunLock::acquire(&path).unwrap());
    }
}
