//! The writers' lock: an exclusive `flock` on a lock file in the vault
//! directory (never on `vault.yml`, which writers replace by rename).
//!
//! Readers take no lock: they rely on atomic renames and need no write
//! access, so a read-only `/secrets` mount works for jobs.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::core::exit::{self, ExitStatus};
use crate::core::fs::FsError;

/// Name of the lock file inside the vault directory.
pub const LOCK_FILE_NAME: &str = ".runvault.lock";

/// How often a waiting writer retries.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another writer held the lock for the whole wait.
    #[error(
        "the vault is busy: another runvault command holds `{path}` (waited {waited_secs} s); \
         try again, or raise --wait"
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// How long we waited, in seconds.
        waited_secs: u64,
    },
    /// The lock file could not be opened or locked.
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl ExitStatus for LockError {
    fn exit_code(&self) -> u8 {
        match self {
            LockError::Busy { .. } => exit::BUSY,
            LockError::Fs(err) => err.exit_code(),
        }
    }
}

/// An exclusive lock held until dropped.
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
    /// How long acquiring the lock waited for another writer.
    pub waited: Duration,
}

impl WriteLock {
    /// Takes the exclusive lock on `dir/.runvault.lock`, waiting up to `wait`.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<WriteLock, LockError> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(FsError::io("open the lock file", &path))?;
        let start = Instant::now();
        let mut announced = false;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    tracing::debug!(
                        path = %path.display(),
                        waited_ms = start.elapsed().as_millis(),
                        "took the writers' lock"
                    );
                    return Ok(WriteLock {
                        _file: file,
                        waited: start.elapsed(),
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !announced {
                        announced = true;
                        tracing::info!(
                            path = %path.display(),
                            wait_secs = wait.as_secs(),
                            "another writer holds the lock; waiting"
                        );
                    }
                    if start.elapsed() >= wait {
                        return Err(LockError::Busy {
                            path,
                            waited_secs: wait.as_secs(),
                        });
                    }
                    std::thread::sleep(POLL_INTERVAL);
                }
                Err(std::fs::TryLockError::Error(err)) => {
                    return Err(FsError::io("lock", &path)(err).into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_times_out_with_busy() {
        let dir = tempfile::tempdir().unwrap();
        let _held = WriteLock::acquire(dir.path(), Duration::ZERO).unwrap();
        let err = WriteLock::acquire(dir.path(), Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.exit_code(), exit::BUSY);
    }

    #[test]
    fn lock_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        drop(WriteLock::acquire(dir.path(), Duration::ZERO).unwrap());
        WriteLock::acquire(dir.path(), Duration::ZERO).unwrap();
    }
}
