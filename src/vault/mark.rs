//! The rollback high-water mark: the highest `generation` of a vault this
//! host committed, kept outside the secrets directory (default
//! `/var/lib/runvault/`, `--state-dir`), one small file per vault id and
//! secrets directory (a copy of the vault elsewhere, such as a backup being
//! checked, is another history and has its own mark).
//!
//! A complete older `vault.yml` put back in the secrets directory is
//! authentic (it passes the MAC); only something the writer of the
//! directory cannot reach remembers that a newer generation was committed.
//! Writers refuse to build on a vault older than its mark and raise the
//! mark once their commit is durable (never before: a crash in between then
//! leaves the mark below the file, which is harmless; the other order would
//! leave it above, a false alarm). `verify` and `doctor` compare; readers
//! (`get`, `exec`, ...) never look at it. The mark also names the secrets
//! directory it was committed from, so that a plaintext `vault.yml` planted
//! where an encrypted vault was is recognised (docs/format.md §13.5).
//!
//! Beside the marks, the same state directory keeps the managed-host
//! record of a secrets directory that receives its vault from an admin
//! (`runvault receive`, docs/fleet.md).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::core::fs::{self, FsError, Limit, WriteMode};
use crate::core::hex::hex;
use crate::vault::error::VaultError;

/// A mark is one short JSON line; anything larger is not a runvault mark.
const MARK_FILE: Limit = Limit::of("high-water mark", 4 * 1024);

/// The ending of a mark file's name: `<vault id>-<directory hash>.mark`.
const MARK_SUFFIX: &str = ".mark";

/// The state directory holding one mark per vault id.
#[derive(Debug, Clone)]
pub struct Marks {
    dir: PathBuf,
}

/// What a mark file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The highest generation this host committed.
    pub generation: u64,
    /// The secrets directory of that commit (canonical, as text).
    pub secrets_dir: String,
}

/// The mark file's contents (one JSON line).
#[derive(serde::Serialize, serde::Deserialize)]
struct MarkFile {
    vault_id: String,
    generation: u64,
    dir: String,
}

impl Marks {
    /// The marks kept in `dir`.
    pub fn new(dir: &Path) -> Marks {
        Marks {
            dir: dir.to_path_buf(),
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The mark file of the vault with id `vault_id` in `secrets_dir`:
    /// `<vault id>-<first 8 bytes of SHA-256 of the directory>.mark`, in hex.
    pub fn path(&self, vault_id: &[u8; 16], secrets_dir: &Path) -> PathBuf {
        let dir_hash = Sha256::digest(canonical_text(secrets_dir).as_bytes());
        self.dir.join(format!(
            "{}-{}{MARK_SUFFIX}",
            hex(vault_id),
            hex(&dir_hash[..8])
        ))
    }

    /// The mark of `vault_id` in `secrets_dir`, or `None` if this host
    /// never recorded one. A mark file that is not one (edited, truncated,
    /// copied from another vault's) is an error: it cannot be trusted to
    /// say the vault is current.
    pub fn read(
        &self,
        vault_id: &[u8; 16],
        secrets_dir: &Path,
    ) -> Result<Option<Mark>, VaultError> {
        let path = self.path(vault_id, secrets_dir);
        let Some(bytes) = fs::read_optional(&path, MARK_FILE)? else {
            return Ok(None);
        };
        let dir = canonical_text(secrets_dir);
        parse(&bytes)
            .filter(|file| file.vault_id == hex(vault_id) && file.dir == dir)
            .map(|file| {
                Some(Mark {
                    generation: file.generation,
                    secrets_dir: file.dir,
                })
            })
            .ok_or_else(|| VaultError::BadMark {
                path,
                dir: secrets_dir.to_path_buf(),
            })
    }

    /// Records that generation `generation` of `vault_id` was committed in
    /// `secrets_dir`: creates the state directory (0700) if needed, then
    /// replaces the mark file atomically and durably (0600). Only the
    /// writer (`store`) records: visible inside the vault only, so a
    /// holder of a [`ReadOnlyDir`] outside it cannot.
    ///
    /// [`ReadOnlyDir`]: crate::vault::ReadOnlyDir
    pub(super) fn record(
        &self,
        vault_id: &[u8; 16],
        secrets_dir: &Path,
        generation: u64,
    ) -> Result<(), FsError> {
        fs::create_dir_with_mode(&self.dir, 0o700)?;
        let file = MarkFile {
            vault_id: hex(vault_id),
            generation,
            dir: canonical_text(secrets_dir),
        };
        let mut line = serde_json::to_string(&file).expect("a mark serializes");
        line.push('\n');
        let path = self.path(vault_id, secrets_dir);
        fs::write_atomic(&path, line.as_bytes(), WriteMode::PRIVATE)?;
        tracing::debug!(mark = %path.display(), generation, "raised the high-water mark");
        Ok(())
    }

    /// The mark files that name `secrets_dir` as where their vault was
    /// committed (readable ones only; a missing state directory has none).
    pub fn naming(&self, secrets_dir: &Path) -> Vec<PathBuf> {
        let wanted = canonical_text(secrets_dir);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(MARK_SUFFIX))
            .map(|entry| entry.path())
            .filter(|path| {
                // Marks are a few dozen bytes: anything larger is not one.
                std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.size() < 4096)
                    && fs::read_optional(path, MARK_FILE)
                        .ok()
                        .flatten()
                        .and_then(|bytes| parse(&bytes))
                        .is_some_and(|file| file.dir == wanted)
            })
            .collect();
        found.sort();
        found
    }
}

/// The ending of a managed-host record's name: `<directory hash>.managed`.
const MANAGED_SUFFIX: &str = ".managed";

/// A managed-host record is one short JSON line.
const MANAGED_FILE: Limit = Limit::of("managed-host record", 4 * 1024);

/// That a secrets directory receives its vault from elsewhere (`runvault
/// receive`): written beside the marks, outside the secrets directory,
/// after each install. Local changes there are refused without `--local`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Managed {
    /// The secrets directory (canonical, as text).
    pub dir: String,
    /// Where the vault is managed (`receive --source`), if said.
    pub source: Option<String>,
    /// The vault received last (hex).
    pub vault_id: String,
    /// Its generation.
    pub generation: u64,
    /// SHA-256 of its `vault.yml` (hex).
    pub sha256: String,
    /// When it was installed (RFC 3339, UTC).
    pub received: String,
}

impl Marks {
    /// The managed-host record of `secrets_dir`:
    /// `<first 8 bytes of SHA-256 of the directory>.managed`, in hex.
    pub fn managed_path(&self, secrets_dir: &Path) -> PathBuf {
        let dir_hash = Sha256::digest(canonical_text(secrets_dir).as_bytes());
        self.dir
            .join(format!("{}{MANAGED_SUFFIX}", hex(&dir_hash[..8])))
    }

    /// The record of `secrets_dir`, or `None` if it is not managed. A file
    /// that is not a record naming that directory is an error (exit 1).
    pub fn managed(&self, secrets_dir: &Path) -> Result<Option<Managed>, VaultError> {
        let path = self.managed_path(secrets_dir);
        let Some(bytes) = fs::read_optional(&path, MANAGED_FILE)? else {
            return Ok(None);
        };
        let dir = canonical_text(secrets_dir);
        serde_json::from_slice::<Managed>(&bytes)
            .ok()
            .filter(|record| record.dir == dir)
            .map(Some)
            .ok_or(VaultError::BadManaged { path })
    }

    /// Records that `secrets_dir` is managed (after a `receive`), as the
    /// marks are written: the state directory 0700, the file replaced
    /// atomically and durably, 0600.
    pub(super) fn record_managed(
        &self,
        secrets_dir: &Path,
        record: &Managed,
    ) -> Result<(), FsError> {
        fs::create_dir_with_mode(&self.dir, 0o700)?;
        let record = Managed {
            dir: canonical_text(secrets_dir),
            ..record.clone()
        };
        let mut line = serde_json::to_string(&record).expect("a record serializes");
        line.push('\n');
        fs::write_atomic(
            &self.managed_path(secrets_dir),
            line.as_bytes(),
            WriteMode::PRIVATE,
        )
    }
}

fn parse(bytes: &[u8]) -> Option<MarkFile> {
    serde_json::from_slice(bytes).ok()
}

/// `dir` as a mark records it: canonical when it exists, so that `./secrets`
/// and `/root/secrets` name the same directory.
fn canonical_text(dir: &Path) -> String {
    dir.canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_mark_reads_back_and_names_its_directory() {
        let temp = tempfile::tempdir().unwrap();
        let marks = Marks::new(&temp.path().join("state"));
        let secrets = temp.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        let id = [7u8; 16];
        assert_eq!(marks.read(&id, &secrets).unwrap(), None);
        assert!(marks.naming(&secrets).is_empty());
        marks.record(&id, &secrets, 12).unwrap();
        let mark = marks.read(&id, &secrets).unwrap().unwrap();
        assert_eq!(mark.generation, 12);
        assert_eq!(mark.secrets_dir, secrets.to_string_lossy());
        assert_eq!(marks.naming(&secrets), [marks.path(&id, &secrets)]);
        assert!(marks.naming(temp.path()).is_empty());
        // A copy of the vault in another directory has a history of its own.
        assert_eq!(marks.read(&id, temp.path()).unwrap(), None);
        // The same directory named another way is the same directory.
        let relative = secrets.join("..").join("secrets");
        assert_eq!(marks.read(&id, &relative).unwrap(), Some(mark));
        let mode = std::fs::metadata(marks.path(&id, &secrets)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(marks.dir()).unwrap().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn an_edited_mark_is_refused_not_ignored() {
        let temp = tempfile::tempdir().unwrap();
        let marks = Marks::new(temp.path());
        let (id, dir) = ([1u8; 16], temp.path());
        std::fs::write(marks.path(&id, dir), b"{\"generation\": 3}").unwrap();
        assert!(matches!(
            marks.read(&id, dir),
            Err(VaultError::BadMark { .. })
        ));
        // A mark copied from another vault's file names the other id.
        marks.record(&[2u8; 16], dir, 3).unwrap();
        std::fs::copy(marks.path(&[2u8; 16], dir), marks.path(&id, dir)).unwrap();
        assert!(matches!(
            marks.read(&id, dir),
            Err(VaultError::BadMark { .. })
        ));
    }
}
