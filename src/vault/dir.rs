//! The vault directory, read-only: where `vault.yml`, `vault.salt` and the
//! audit log are, and how a consistent (vault, salt) pair is loaded and
//! opened. No lock and no write: jobs, views and the doctor hold this type,
//! so the compiler keeps them read-only; the writer ([`VaultDir`]) builds
//! on it and can do everything it does.
//!
//! [`VaultDir`]: crate::vault::VaultDir

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::fs::{self, Limit};
use crate::vault::audit;
use crate::vault::error::VaultError;
use crate::vault::format::{self, EncryptedVault, FormatError, Header, VaultFile};
use crate::vault::keys::slots::{Credential, Opened};
use crate::vault::mark::Marks;
use crate::vault::salt::{MIN_SALT_BYTES, Salt};
use crate::vault::unlocked::UnlockedVault;

/// File name of the vault.
pub const VAULT_FILE: &str = "vault.yml";
/// File name of the salt.
pub const SALT_FILE: &str = "vault.salt";
/// The next salt, staged by `rekey --new-salt` (see docs/format.md).
pub const SALT_NEXT_FILE: &str = "vault.salt.next";
/// File name of the audit log (in the vault directory unless configured).
pub const AUDIT_FILE: &str = "audit.log";

/// How often a reader re-reads when `vault.salt` and `vault.yml` do not
/// match (a writer may be replacing both), and how long it waits between.
const CONSISTENT_READ_ATTEMPTS: u32 = 20;
const CONSISTENT_READ_PAUSE: Duration = Duration::from_millis(10);

/// Where a reader or writer reports what does not stop it but must not go
/// unnoticed (the high-water mark not read or not recorded).
pub type Warn = dyn Fn(&str);

/// A vault directory, read-only: the type `jobs`, `doctor` and the
/// streaming passes hold. A writer's method is not there, so this does not
/// compile:
///
/// ```compile_fail
/// use runvault::vault::{Credential, KeyPath, Plain, ReadOnlyDir};
///
/// fn change(dir: &ReadOnlyDir, who: &Credential, at: &KeyPath, value: &Plain) {
///     let _ = dir.set(who, at, value, None);
/// }
/// ```
///
/// while the same function on the writer does:
///
/// ```
/// use runvault::vault::{Credential, KeyPath, Plain, VaultDir};
///
/// fn change(dir: &VaultDir, who: &Credential, at: &KeyPath, value: &Plain) {
///     let _ = dir.set(who, at, value, None);
/// }
/// ```
#[derive(Clone)]
pub struct ReadOnlyDir {
    dir: PathBuf,
    audit_log: PathBuf,
    marks: Marks,
    warn: Option<std::rc::Rc<Warn>>,
}

impl std::fmt::Debug for ReadOnlyDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyDir")
            .field("dir", &self.dir)
            .field("audit_log", &self.audit_log)
            .field("marks", &self.marks)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyDir {
    /// The vault in `dir`.
    pub fn new(dir: &Path) -> ReadOnlyDir {
        ReadOnlyDir {
            dir: dir.to_path_buf(),
            audit_log: dir.join(AUDIT_FILE),
            marks: Marks::new(Path::new(crate::core::layout::DEFAULT_STATE_DIR)),
            warn: None,
        }
    }

    /// The same vault with its high-water marks kept in `state_dir`
    /// instead of `/var/lib/runvault`.
    pub fn with_state_dir(mut self, state_dir: &Path) -> ReadOnlyDir {
        self.marks = Marks::new(state_dir);
        self
    }

    /// The same vault, reporting through `warn` what does not stop a
    /// reader or writer but must be seen (a high-water mark that cannot be
    /// read or recorded); without it, only a diagnostic is logged.
    pub fn with_warnings(mut self, warn: std::rc::Rc<Warn>) -> ReadOnlyDir {
        self.warn = Some(warn);
        self
    }

    /// The same vault with the audit log at `path` instead of `DIR/audit.log`.
    pub fn with_audit_log(mut self, path: &Path) -> ReadOnlyDir {
        self.audit_log = path.to_path_buf();
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/vault.yml`.
    pub fn vault_path(&self) -> PathBuf {
        self.dir.join(VAULT_FILE)
    }

    /// `DIR/vault.salt`.
    pub fn salt_path(&self) -> PathBuf {
        self.dir.join(SALT_FILE)
    }

    /// `DIR/vault.salt.next`.
    pub fn salt_next_path(&self) -> PathBuf {
        self.dir.join(SALT_NEXT_FILE)
    }

    /// The high-water marks of this host.
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// The audit log's path.
    pub fn audit_log(&self) -> &Path {
        &self.audit_log
    }

    /// Reports `message` (see [`ReadOnlyDir::with_warnings`]).
    pub(crate) fn warn(&self, message: &str) {
        tracing::warn!("{message}");
        if let Some(warn) = &self.warn {
            warn(message);
        }
    }

    /// `verify`'s rollback check of an opened vault: `Err` if it is older
    /// than its mark; otherwise the mark (if this host recorded one).
    /// A mark that cannot be read (a state directory the caller may not
    /// read) is reported as a warning, as writers do, and not checked.
    pub fn check_rollback(&self, header: &Header) -> Result<Option<u64>, VaultError> {
        self.check_mark(
            &header.vault_id,
            header.generation,
            "the vault was not checked",
        )
    }

    /// The rollback check writers and `verify` share: `Err` if the vault
    /// `vault_id` at `generation` is older than the generation this host
    /// committed last (a whole older file put back); otherwise the mark,
    /// if any. A mark that cannot be read is reported (`unchecked` says
    /// what goes on unchecked) and not checked; a mark that is not one is
    /// an error.
    pub(crate) fn check_mark(
        &self,
        vault_id: &[u8; 16],
        generation: u64,
        unchecked: &str,
    ) -> Result<Option<u64>, VaultError> {
        match self.marks.read(vault_id, &self.dir) {
            Ok(Some(mark)) if mark.generation > generation => Err(VaultError::RolledBack {
                path: self.vault_path(),
                generation,
                mark: mark.generation,
                mark_path: self.marks.path(vault_id, &self.dir),
            }),
            Ok(mark) => Ok(mark.map(|m| m.generation)),
            Err(VaultError::Fs(err)) => {
                self.warn(&format!(
                    "the rollback high-water mark cannot be read: {err}; {unchecked} against a \
                     rollback (give a readable --state-dir)"
                ));
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Reads a consistent (`vault.yml`, `vault.salt`) pair without locking or
    /// writing anything. A pair whose salt id does not match is re-read, since
    /// a writer may be between its two renames.
    pub fn load(&self) -> Result<(EncryptedVault, Salt), VaultError> {
        let vault_path = self.vault_path();
        let loaded = self.load_with(|bytes| {
            let vault = parse_vault(&bytes, &vault_path)?;
            let salt_id = vault.header.salt_id;
            Ok(Some((vault, salt_id)))
        })?;
        Ok(loaded.expect("the parser above always understands"))
    }

    /// [`ReadOnlyDir::load`] with another parser: `parse` turns the bytes of
    /// `vault.yml` into a `T` and the salt id its header names, or `None` if
    /// it does not understand them (then `Ok(None)` is returned at once).
    pub fn load_with<T>(
        &self,
        parse: impl Fn(Vec<u8>) -> Result<Option<(T, [u8; 16])>, VaultError>,
    ) -> Result<Option<(T, Salt)>, VaultError> {
        let (vault_path, salt_path) = (self.vault_path(), self.salt_path());
        for attempt in 0..CONSISTENT_READ_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(CONSISTENT_READ_PAUSE);
            }
            let Some(bytes) = fs::read_optional(&vault_path, Limit::VAULT_FILE)? else {
                return Err(VaultError::NoVault {
                    dir: self.dir.clone(),
                });
            };
            let parsed = match parse(bytes) {
                Err(VaultError::Plaintext { path }) => return Err(self.plaintext_error(path)),
                parsed => parsed?,
            };
            let Some((parsed, salt_id)) = parsed else {
                return Ok(None);
            };
            // A rekey with a new salt may be between its renames: the
            // staged next salt is the one that matches then.
            for candidate in [&salt_path, &self.salt_next_path()] {
                if let Some(salt) =
                    fs::read_optional(candidate, Limit::SALT_FILE)?.map(Salt::from_file_bytes)
                    && salt.id() == salt_id
                {
                    // Argon2id needs 8 bytes: a shorter salt that matches
                    // the header was planted with a header to match it.
                    if salt.as_bytes().len() < MIN_SALT_BYTES {
                        return Err(VaultError::ShortSalt {
                            path: candidate.clone(),
                            len: salt.as_bytes().len(),
                        });
                    }
                    return Ok(Some((parsed, salt)));
                }
            }
        }
        match fs::read_optional(&salt_path, Limit::SALT_FILE)? {
            None => Err(VaultError::SaltMissing { path: salt_path }),
            Some(_) => Err(VaultError::SaltMismatch { path: salt_path }),
        }
    }

    /// The error for a plaintext `vault.yml`: adopt it, unless the directory
    /// shows that an encrypted vault was here (then it may be planted).
    /// Only on this error path does a reader look at more than the vault
    /// and the salt.
    fn plaintext_error(&self, path: PathBuf) -> VaultError {
        let evidence = self.prior_vault_evidence();
        if evidence.is_empty() {
            VaultError::Plaintext { path }
        } else {
            VaultError::Replaced {
                path,
                dir: self.dir.clone(),
                evidence: evidence.join(", "),
            }
        }
    }

    /// What shows that an encrypted vault existed in this directory, for a
    /// plaintext `vault.yml` found there: a strong `vault.salt` (only
    /// runvault writes one; the hand-made salt is weak), committed changes
    /// in the audit log, a high-water mark naming this directory. Empty
    /// for a hand-made vault that was never adopted.
    pub fn prior_vault_evidence(&self) -> Vec<String> {
        let mut evidence = Vec::new();
        if let Ok(Some(bytes)) = fs::read_optional(&self.salt_path(), Limit::SALT_FILE)
            && !Salt::from_file_bytes(bytes).is_weak()
        {
            evidence.push(format!("a strong salt in `{}`", self.salt_path().display()));
        }
        let committed = audit::committed_changes(&self.audit_log);
        if committed > 0 {
            evidence.push(format!(
                "{committed} committed change(s) in `{}`",
                self.audit_log.display()
            ));
        }
        for mark in self.marks.naming(&self.dir) {
            evidence.push(format!("the high-water mark `{}`", mark.display()));
        }
        evidence
    }

    /// Opens the vault with a credential (no lock, no write).
    pub fn open(&self, credential: &Credential) -> Result<(UnlockedVault, Salt), VaultError> {
        self.open_reusing(credential, None)
    }

    /// [`ReadOnlyDir::open`], reusing a slot already opened for `header` if the
    /// file still has exactly that header (no second KDF run).
    pub fn open_reusing(
        &self,
        credential: &Credential,
        opened: Option<(Header, Opened)>,
    ) -> Result<(UnlockedVault, Salt), VaultError> {
        let (vault, salt) = self.load()?;
        let unlocked = match opened {
            Some((header, opened)) if header == vault.header => {
                UnlockedVault::from_opened(vault, opened, &self.vault_path())?
            }
            _ => UnlockedVault::unlock(vault, &salt, credential, &self.vault_path())?,
        };
        Ok((unlocked, salt))
    }

    /// Whether `vault.yml` is already an encrypted vault (no lock taken).
    pub fn is_encrypted(&self) -> Result<bool, VaultError> {
        Ok(
            match fs::read_optional(&self.vault_path(), Limit::VAULT_FILE)? {
                Some(bytes) => matches!(format::classify(&bytes), Ok(VaultFile::Encrypted(_))),
                None => false,
            },
        )
    }
}

/// Parses `vault.yml` bytes into an encrypted vault, with the error a user
/// needs: plaintext (adopt it), newer format (upgrade) or corrupt (exit 5).
pub(crate) fn parse_vault(bytes: &[u8], vault_path: &Path) -> Result<EncryptedVault, VaultError> {
    match EncryptedVault::parse(bytes) {
        Ok((vault, reader)) => {
            tracing::debug!(path = %vault_path.display(), ?reader, generation = vault.header.generation, "parsed the vault");
            Ok(vault)
        }
        Err(FormatError::NotAVault) => Err(VaultError::Plaintext {
            path: vault_path.to_path_buf(),
        }),
        Err(source @ FormatError::UnsupportedVersion { .. }) => Err(VaultError::Unsupported {
            path: vault_path.to_path_buf(),
            source,
        }),
        Err(source) => Err(VaultError::Corrupt {
            path: vault_path.to_path_buf(),
            source,
        }),
    }
}
