//! The vault directory on disk: `vault.yml`, `vault.salt` and the writers'
//! lock. Readers take no lock and write nothing; writers lock, verify the
//! vault, change it in memory and commit it with one atomic rename.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::fs::{self, FsError, Limit, WriteMode};
use crate::core::lock::WriteLock;
use crate::core::progress::{NoProgress, Progress};
use crate::vault::audit::{self, AuditRecord};
use crate::vault::crypto::KdfOverride;
use crate::vault::error::VaultError;
use crate::vault::format::Header;
use crate::vault::format::{self, EncryptedVault, FormatError, VaultFile};
use crate::vault::mark::Marks;
use crate::vault::path::KeyPath;
use crate::vault::rekey;
use crate::vault::salt::{MIN_SALT_BYTES, Salt};
use crate::vault::slots::{self, Credential, Opened};
use crate::vault::splice::{self, SetEdit};
use crate::vault::tree::Tree;
use crate::vault::unlocked::{RekeyPlan, RekeyReport, UnlockedVault, now};
use crate::vault::value::{self, Plain};

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

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new, empty vault.
    Created {
        /// Whether a weak or missing salt was (re)generated.
        new_salt: bool,
    },
    /// A plaintext vault.yml was encrypted in place.
    Adopted {
        /// Number of values encrypted.
        values: usize,
        /// Whether the hand-made weak salt was replaced.
        new_salt: bool,
        /// Whether the old plaintext still has another hard link.
        plaintext_linked_elsewhere: bool,
        /// With `--force`: what showed that an encrypted vault was here
        /// (the adoption went ahead anyway).
        forced_over: Option<String>,
    },
    /// The vault was already encrypted; nothing changed.
    AlreadyEncrypted,
}

/// What `rekey` is asked to do (the secrets are passed separately).
#[derive(Debug, Clone, Copy, Default)]
pub struct RekeyOptions {
    /// Replace `vault.salt` too.
    pub new_salt: bool,
    /// New Argon2id parameters for the passphrase slots.
    pub kdf: KdfOverride,
    /// Remove slots no given secret opens.
    pub drop_others: bool,
    /// New number of versions kept per path.
    pub keep: Option<u32>,
}

/// Test-only crash points (debug builds only): `RUNVAULT_FAILPOINT=NAME`
/// makes the process abort at that step, as a power cut would.
fn failpoint(name: &str) {
    if cfg!(debug_assertions)
        && std::env::var("RUNVAULT_FAILPOINT").is_ok_and(|wanted| wanted == name)
    {
        std::process::abort();
    }
}

/// Called after every committed change with the changed vault (still
/// unlocked), its salt and the committed generation: how plaintext views
/// are refreshed with the data key the command already holds.
#[derive(Clone)]
pub struct AfterCommit {
    /// Whether the hook has work; asked only by writers, once per change,
    /// before sealing (so readers never pay for the hook).
    pub wanted: std::rc::Rc<dyn Fn() -> bool>,
    /// The work.
    pub run: std::rc::Rc<CommitHook>,
}

/// The signature of an [`AfterCommit`] hook.
pub type CommitHook = dyn Fn(&UnlockedVault, &Salt, u64);

impl std::fmt::Debug for AfterCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterCommit(..)")
    }
}

/// Where a writer reports what does not stop its commit but must not go
/// unnoticed (the high-water mark not read or not recorded).
pub type Warn = dyn Fn(&str);

/// A vault directory.
#[derive(Clone)]
pub struct VaultDir {
    dir: PathBuf,
    lock_wait: Duration,
    audit_log: PathBuf,
    after_commit: Option<AfterCommit>,
    marks: Marks,
    warn: Option<std::rc::Rc<Warn>>,
}

impl std::fmt::Debug for VaultDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultDir")
            .field("dir", &self.dir)
            .field("lock_wait", &self.lock_wait)
            .field("audit_log", &self.audit_log)
            .field("after_commit", &self.after_commit)
            .field("marks", &self.marks)
            .finish_non_exhaustive()
    }
}

/// One change being committed: what its audit line says and which vault's
/// high-water mark it checks and raises.
struct Commit<'c> {
    command: &'c str,
    vault_id: [u8; 16],
    generations: (u64, u64),
    record: &'c AuditRecord,
}

impl VaultDir {
    /// The vault in `dir`; writers wait up to `lock_wait` for the lock.
    pub fn new(dir: &Path, lock_wait: Duration) -> VaultDir {
        VaultDir {
            dir: dir.to_path_buf(),
            lock_wait,
            audit_log: dir.join(AUDIT_FILE),
            after_commit: None,
            marks: Marks::new(Path::new(crate::core::layout::DEFAULT_STATE_DIR)),
            warn: None,
        }
    }

    /// The same vault with its high-water marks kept in `state_dir`
    /// instead of `/var/lib/runvault`.
    pub fn with_state_dir(mut self, state_dir: &Path) -> VaultDir {
        self.marks = Marks::new(state_dir);
        self
    }

    /// The same vault, reporting through `warn` what a writer cannot do
    /// but commits anyway (without it, only a diagnostic is logged).
    pub fn with_warnings(mut self, warn: std::rc::Rc<Warn>) -> VaultDir {
        self.warn = Some(warn);
        self
    }

    /// The high-water marks of this host.
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// The audit log's path.
    pub fn audit_log(&self) -> &Path {
        &self.audit_log
    }

    fn warn(&self, message: &str) {
        tracing::warn!("{message}");
        if let Some(warn) = &self.warn {
            warn(message);
        }
    }

    /// Refuses to build on a vault older than the generation this host
    /// committed last (a whole older file put back). A mark that cannot be
    /// read (a state directory the caller may not read) is reported and
    /// the change goes on unchecked; a mark that is not one is an error.
    fn check_mark(&self, vault_id: &[u8; 16], generation: u64) -> Result<(), VaultError> {
        match self.marks.read(vault_id, &self.dir) {
            Ok(Some(mark)) if mark.generation > generation => Err(VaultError::RolledBack {
                path: self.vault_path(),
                generation,
                mark: mark.generation,
                mark_path: self.marks.path(vault_id, &self.dir),
            }),
            Ok(_) => Ok(()),
            Err(VaultError::Fs(err)) => {
                self.warn(&format!(
                    "the rollback high-water mark cannot be read: {err}; this change is not checked \
                     against a rollback (give a readable --state-dir)"
                ));
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Raises the high-water mark to a generation whose commit is durable.
    /// A mark that cannot be written leaves the commit as it is (it is
    /// safe) and is reported: rollback goes unnoticed until it is written.
    fn raise_mark(&self, vault_id: &[u8; 16], generation: u64) {
        if let Err(err) = self.marks.record(vault_id, &self.dir, generation) {
            self.warn(&format!(
                "the change is committed, but the rollback high-water mark was not recorded: {err}; \
                 a rollback of this vault is not detected until a change records it \
                 (give a writable --state-dir)"
            ));
        }
    }

    /// `verify --accept-rollback`: under the writers' lock, verifies the
    /// vault completely and sets its high-water mark to the vault's own
    /// generation (lowering it after a deliberate restore), with an audit
    /// line. Returns the vault (for the report) and the mark it replaced.
    pub fn accept_rollback(
        &self,
        credential: &Credential,
    ) -> Result<(UnlockedVault, usize, Option<u64>), VaultError> {
        self.require_vault()?;
        let _lock = self.lock()?;
        let (unlocked, _) = self.open(credential)?;
        let count = unlocked.verify_all()?;
        let header = unlocked.header();
        let previous = self
            .marks
            .read(&header.vault_id, &self.dir)
            .or_else(|err| match err {
                // An unreadable mark is exactly what this command replaces.
                VaultError::BadMark { .. } => Ok(None),
                err => Err(err),
            })?;
        let generation = header.generation;
        let record = AuditRecord {
            changes: Vec::new(),
            detail: Some(format!(
                "high-water mark set to generation {generation} (was {})",
                previous
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), |m| m.generation.to_string())
            )),
        };
        let before = previous.as_ref().map_or(generation, |m| m.generation);
        audit::append(
            &self.audit_log,
            "verify --accept-rollback",
            "accept-rollback",
            (before, generation),
            &record,
        )?;
        self.marks.record(&header.vault_id, &self.dir, generation)?;
        Ok((unlocked, count, previous.map(|m| m.generation)))
    }

    /// `verify`'s rollback check of an opened vault: `Err` if it is older
    /// than its mark; otherwise the mark (if this host recorded one).
    /// A mark that cannot be read (a state directory the caller may not
    /// read) is reported as a warning, as writers do, and not checked.
    pub fn check_rollback(&self, header: &Header) -> Result<Option<u64>, VaultError> {
        match self.marks.read(&header.vault_id, &self.dir) {
            Ok(Some(mark)) if mark.generation > header.generation => Err(VaultError::RolledBack {
                path: self.vault_path(),
                generation: header.generation,
                mark: mark.generation,
                mark_path: self.marks.path(&header.vault_id, &self.dir),
            }),
            Ok(mark) => Ok(mark.map(|m| m.generation)),
            Err(VaultError::Fs(err)) => {
                self.warn(&format!(
                    "the rollback high-water mark cannot be read: {err}; the vault was not checked \
                     against a rollback (give a readable --state-dir)"
                ));
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// The same vault with the audit log at `path` instead of `DIR/audit.log`.
    pub fn with_audit_log(mut self, path: &Path) -> VaultDir {
        self.audit_log = path.to_path_buf();
        self
    }

    /// The same vault, calling `hook` after every committed change.
    pub fn with_after_commit(mut self, hook: AfterCommit) -> VaultDir {
        self.after_commit = Some(hook);
        self
    }

    fn after_commit_wanted(&self) -> bool {
        self.after_commit
            .as_ref()
            .is_some_and(|hook| (hook.wanted)())
    }

    fn after_commit(&self, vault: &UnlockedVault, salt: &Salt, generation: u64) {
        if let Some(hook) = &self.after_commit {
            (hook.run)(vault, salt, generation);
        }
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

    /// [`VaultDir::load`] with another parser: `parse` turns the bytes of
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

    /// [`VaultDir::open`], reusing a slot already opened for `header` if the
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

    /// A read-modify-write under the writers' lock: opens and verifies the
    /// vault, runs `change` (which describes itself in the audit record),
    /// appends the audit line, and commits the result atomically. If
    /// `change` or the audit line fails, nothing is written.
    pub fn modify<T>(
        &self,
        credential: &Credential,
        command: &str,
        change: impl FnOnce(&mut UnlockedVault, &Salt, &mut AuditRecord) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        self.require_vault()?;
        let _lock = self.lock()?;
        self.modify_locked(credential, None, command, change)
    }

    /// Sets the value at `path` (only if its current version is
    /// `if_version`, when given) and returns its new version: a
    /// [`VaultDir::modify`] that splices the new file from the old one in
    /// one pass ([`splice`]) when the file is canonical and no view needs
    /// the opened vault, and otherwise changes the tree, with the slot the
    /// first attempt opened (one KDF run either way).
    pub fn set(
        &self,
        credential: &Credential,
        path: &KeyPath,
        value: &Plain,
        if_version: Option<u32>,
    ) -> Result<u32, VaultError> {
        self.require_vault()?;
        let _lock = self.lock()?;
        let mut opened = None;
        if !self.after_commit_wanted() {
            let edit = SetEdit {
                path,
                value,
                if_version,
                time: now(),
            };
            match splice::set(self, credential, &edit)? {
                Ok(spliced) => {
                    tracing::debug!("spliced the new file from the old one in one pass");
                    let record = AuditRecord {
                        changes: vec![spliced.change],
                        detail: None,
                    };
                    let commit = Commit {
                        command: "set",
                        vault_id: spliced.vault_id,
                        generations: spliced.generations,
                        record: &record,
                    };
                    self.audited_write(&commit, &spliced.bytes, WriteMode::PRIVATE, None)?;
                    return Ok(spliced.version);
                }
                Err(slot) => {
                    tracing::debug!("the file cannot be spliced: set goes through the tree writer");
                    opened = slot;
                }
            }
        }
        self.modify_locked(credential, opened, "set", |vault, _, record| {
            let version = match if_version {
                Some(expected) => vault.set_if_version(path, value, expected)?,
                None => vault.set(path, value)?,
            };
            record.changes.push(vault.audit_change(path, "set")?);
            Ok(version)
        })
    }

    fn require_vault(&self) -> Result<(), VaultError> {
        if !self.vault_path().exists() && !self.salt_path().exists() {
            return Err(VaultError::NoVault {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// [`VaultDir::modify`] once the lock is held, reusing `opened` (a slot
    /// opened for a header) if the file still has that header.
    fn modify_locked<T>(
        &self,
        credential: &Credential,
        opened: Option<(Header, Opened)>,
        command: &str,
        change: impl FnOnce(&mut UnlockedVault, &Salt, &mut AuditRecord) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let (mut unlocked, salt) = self.open_reusing(credential, opened)?;
        let mut record = AuditRecord::default();
        let result = change(&mut unlocked, &salt, &mut record)?;
        let before = unlocked.header().generation;
        // Without an after-commit hook the opened vault is sealed in place;
        // with one it is kept for the hook (views), at the cost of a copy.
        let (sealed, kept) = if self.after_commit_wanted() {
            (unlocked.seal(), Some(unlocked))
        } else {
            (unlocked.into_sealed(), None)
        };
        let commit = Commit {
            command,
            vault_id: sealed.header.vault_id,
            generations: (before, sealed.header.generation),
            record: &record,
        };
        self.audited_write(&commit, &sealed.to_canonical(), WriteMode::PRIVATE, None)?;
        // Still under the lock, so views are refreshed in commit order.
        if let Some(unlocked) = &kept {
            self.after_commit(unlocked, &salt, sealed.header.generation);
        }
        Ok(result)
    }

    /// Rotates the data key (and with `new_salt` the salt) under the lock;
    /// see [`UnlockedVault::rekey`]. The first credential that opens the
    /// vault unlocks it; all of them are used to re-wrap slots. `progress`
    /// is told of each value re-encrypted.
    pub fn rekey(
        &self,
        credentials: &[Credential],
        plan: RekeyOptions,
        progress: &dyn Progress,
    ) -> Result<RekeyReport, VaultError> {
        let _lock = self.lock()?;
        let new_salt = plan.new_salt.then(Salt::generate);
        let rekey_plan = RekeyPlan {
            credentials,
            new_salt: new_salt.as_ref(),
            kdf: plan.kdf,
            drop_others: plan.drop_others,
            keep: plan.keep,
            unlocked_by: None,
            progress,
        };
        // `--keep` prunes the history against the tree, and views need the
        // opened vault: both go through the tree writer.
        let mut reuse = None;
        if plan.keep.is_none() && !self.after_commit_wanted() {
            match rekey::rekey(self, &rekey_plan)? {
                Ok(rekeyed) => {
                    tracing::debug!("rekeyed in one streaming pass");
                    let commit = RekeyCommit {
                        vault_id: rekeyed.vault_id,
                        bytes: &rekeyed.bytes,
                        generations: rekeyed.generations,
                        report: &rekeyed.report,
                        new_salt: new_salt.as_ref(),
                    };
                    self.commit_rekey(&commit)?;
                    return Ok(rekeyed.report);
                }
                Err(fallback) => {
                    tracing::debug!(
                        "the file cannot be streamed: rekey goes through the tree writer"
                    );
                    reuse = fallback;
                }
            }
        }
        let (vault, salt) = self.load()?;
        let vault_path = self.vault_path();
        let (slot, unlocked_by) = match reuse {
            Some((header, opened)) if header == vault.header => (opened.slot, opened.credential),
            _ => slots::unlock_any(&vault.header, credentials, &salt, &vault_path)?,
        };
        let unlocked = UnlockedVault::from_opened(vault, slot, &vault_path)?;
        let rekey_plan = RekeyPlan {
            unlocked_by: Some(unlocked_by),
            ..rekey_plan
        };
        let (next, report) = unlocked.rekey(&salt, &rekey_plan)?;
        let before = unlocked.header().generation;
        // The old tree is no longer needed: free it before sealing the new one.
        drop(unlocked);
        let (sealed, kept) = if self.after_commit_wanted() {
            (next.seal(), Some(next))
        } else {
            (next.into_sealed(), None)
        };
        let commit = RekeyCommit {
            vault_id: sealed.header.vault_id,
            bytes: &sealed.to_canonical(),
            generations: (before, sealed.header.generation),
            report: &report,
            new_salt: new_salt.as_ref(),
        };
        self.commit_rekey(&commit)?;
        if let Some(next) = &kept {
            self.after_commit(
                next,
                new_salt.as_ref().unwrap_or(&salt),
                sealed.header.generation,
            );
        }
        Ok(report)
    }

    /// Commits a rekeyed vault with its audit line (and, with a new salt,
    /// the two-file protocol).
    fn commit_rekey(&self, commit: &RekeyCommit<'_>) -> Result<(), VaultError> {
        let report = commit.report;
        let record = AuditRecord {
            changes: Vec::new(),
            detail: Some(format!(
                "new data key; {} value(s) and version(s) re-encrypted; slots kept {:?}, dropped {:?}{}",
                report.reencrypted,
                report.kept,
                report.dropped,
                if commit.new_salt.is_some() {
                    "; new salt"
                } else {
                    ""
                }
            )),
        };
        let change = Commit {
            command: "rekey",
            vault_id: commit.vault_id,
            generations: commit.generations,
            record: &record,
        };
        match commit.new_salt {
            Some(salt) => self.audited_commit(&change, |store| {
                store.commit_with_new_salt(commit.bytes, commit.generations.1, salt)
            }),
            // The audit line is synced beside the new file, as for `set`.
            None => self.audited_write(&change, commit.bytes, WriteMode::PRIVATE, None),
        }
    }

    /// Checks the high-water mark, appends the audit line, then runs
    /// `write`; if it fails, a second line records that the change was
    /// aborted; once it succeeded (durably), raises the mark.
    fn audited_commit(
        &self,
        commit: &Commit<'_>,
        write: impl FnOnce(&VaultDir) -> Result<(), VaultError>,
    ) -> Result<(), VaultError> {
        let (command, generations) = (commit.command, commit.generations);
        self.check_mark(&commit.vault_id, generations.0)?;
        audit::append(
            &self.audit_log,
            command,
            "commit",
            generations,
            commit.record,
        )?;
        write(self).inspect_err(|_| self.audit_aborted(command, generations))?;
        failpoint("commit-before-mark");
        self.raise_mark(&commit.vault_id, generations.1);
        Ok(())
    }

    /// Appends the `aborted` line of a commit that failed after its line
    /// was written (best effort: the commit's error is what is reported).
    fn audit_aborted(&self, command: &str, generations: (u64, u64)) {
        let _ = audit::append(
            &self.audit_log,
            command,
            "aborted",
            generations,
            &AuditRecord::default(),
        );
    }

    /// Replaces `vault.yml` with `bytes` and appends the audit line, the
    /// line being written on a second thread while the temp file is
    /// written and synced: both are durable before the rename, as with
    /// [`VaultDir::audited_commit`], in the time of the slower. `first`, if
    /// given, runs on a third thread and must succeed before the rename too
    /// (init's new salt, which the new vault needs, and its new directory's
    /// entry). If the audit line or `first` fails, nothing is renamed; if
    /// anything fails after the line was written, an `aborted` line follows.
    /// Before anything, the vault is checked against its high-water mark;
    /// after the durable rename, the mark is raised.
    fn audited_write(
        &self,
        commit: &Commit<'_>,
        bytes: &[u8],
        mode: WriteMode,
        first: Option<&(dyn Fn() -> Result<(), FsError> + Sync)>,
    ) -> Result<(), VaultError> {
        self.check_mark(&commit.vault_id, commit.generations.0)?;
        self.write_with_audit_line(commit, bytes, mode, first)?;
        failpoint("commit-before-mark");
        self.raise_mark(&commit.vault_id, commit.generations.1);
        Ok(())
    }

    fn write_with_audit_line(
        &self,
        commit: &Commit<'_>,
        bytes: &[u8],
        mode: WriteMode,
        first: Option<&(dyn Fn() -> Result<(), FsError> + Sync)>,
    ) -> Result<(), VaultError> {
        let (command, generations, record) = (commit.command, commit.generations, commit.record);
        let vault_path = self.vault_path();
        std::thread::scope(|scope| {
            let log = &self.audit_log;
            let line = move || audit::append(log, command, "commit", generations, record);
            let mut audit = Some(scope.spawn(line));
            let mut first = first.map(|first| scope.spawn(first));
            let mut audit_failed = false;
            let written = fs::write_atomic_unless_changed(&vault_path, bytes, mode, || {
                if let Some(handle) = first.take() {
                    handle.join().expect("the first write does not panic")?;
                }
                let handle = audit.take().expect("asked once, before the rename");
                handle
                    .join()
                    .expect("appending the audit line does not panic")
                    .inspect_err(|_| audit_failed = true)
                    .map(|()| true)
            });
            let failure = match (written, audit) {
                (Ok(_), _) => {
                    tracing::info!(path = %vault_path.display(), generation = generations.1, "committed");
                    return Ok(());
                }
                (Err(err), _) if audit_failed => return Err(err.into()),
                // The file failed before the line was awaited: a failed line
                // is the error to report, as if it had been written first.
                (Err(err), Some(handle)) => {
                    handle
                        .join()
                        .expect("appending the audit line does not panic")?;
                    err
                }
                (Err(err), None) => err,
            };
            self.audit_aborted(command, generations);
            Err(failure.into())
        })
    }

    /// The two-file commit of a rekey with a new salt. At every instant the
    /// files open with the old or the new secrets:
    /// 1. `vault.salt.next` := new salt (old pair still consistent);
    /// 2. `vault.yml` := new vault (readers match it with `vault.salt.next`);
    /// 3. rename `vault.salt.next` over `vault.salt` (new pair consistent).
    ///
    /// An interruption is finished or undone by the next writer
    /// ([`VaultDir::finish_interrupted_rekey`]).
    fn commit_with_new_salt(
        &self,
        bytes: &[u8],
        generation: u64,
        salt: &Salt,
    ) -> Result<(), VaultError> {
        fs::write_atomic(&self.salt_next_path(), salt.as_bytes(), WriteMode::PRIVATE)?;
        failpoint("rekey-after-salt-next");
        self.commit(bytes, generation, WriteMode::PRIVATE)?;
        failpoint("rekey-after-vault");
        self.promote_next_salt()
    }

    fn promote_next_salt(&self) -> Result<(), VaultError> {
        let (next, salt) = (self.salt_next_path(), self.salt_path());
        std::fs::rename(&next, &salt).map_err(FsError::io("rename over", &salt))?;
        fs::sync_dir(&self.dir)?;
        Ok(())
    }

    /// Completes or rolls back a rekey that stopped between its renames:
    /// if `vault.yml` already names the staged salt, promote it; otherwise
    /// the vault still uses the old salt and the staged one is removed.
    fn finish_interrupted_rekey(&self) -> Result<(), VaultError> {
        let Some(next) =
            fs::read_optional(&self.salt_next_path(), Limit::SALT_FILE)?.map(Salt::from_file_bytes)
        else {
            return Ok(());
        };
        let vault_salt_id = fs::read_optional(&self.vault_path(), Limit::VAULT_FILE)?
            .and_then(|bytes| EncryptedVault::parse(&bytes).ok())
            .map(|(vault, _)| vault.header.salt_id);
        let current_salt_id = fs::read_optional(&self.salt_path(), Limit::SALT_FILE)?
            .map(|bytes| Salt::from_file_bytes(bytes).id());
        match vault_salt_id {
            Some(id) if id == next.id() => self.promote_next_salt(),
            // The old pair is intact: the rekey never reached vault.yml.
            Some(id) if Some(id) == current_salt_id => {
                let path = self.salt_next_path();
                std::fs::remove_file(&path).map_err(FsError::io("remove", &path))?;
                fs::sync_dir(&self.dir)?;
                Ok(())
            }
            // vault.yml unreadable or matching neither salt: touch nothing,
            // so no salt is ever lost; opening the vault reports the problem.
            _ => Ok(()),
        }
    }

    /// Takes the writers' lock (finishing an interrupted rekey first), for
    /// work that must not interleave with a commit, such as writing views.
    pub fn lock_writers(&self) -> Result<WriteLock, VaultError> {
        self.lock()
    }

    fn lock(&self) -> Result<WriteLock, VaultError> {
        let lock = WriteLock::acquire(&self.dir, self.lock_wait)?;
        let targets = [self.vault_path(), self.salt_path(), self.salt_next_path()];
        fs::remove_stray_temps(&targets.each_ref().map(PathBuf::as_path))?;
        self.finish_interrupted_rekey()?;
        Ok(lock)
    }

    fn commit(&self, bytes: &[u8], generation: u64, mode: WriteMode) -> Result<(), VaultError> {
        fs::write_atomic(&self.vault_path(), bytes, mode)?;
        tracing::info!(path = %self.vault_path().display(), generation, "committed");
        Ok(())
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

    /// Creates the vault, or adopts a plaintext `vault.yml` in place.
    /// `credentials` is asked for only once it is known a vault will be made.
    /// A plaintext `vault.yml` in a directory that shows an encrypted vault
    /// was there ([`VaultDir::prior_vault_evidence`]) is refused, before
    /// anything is asked or written, unless `force`.
    pub fn init(
        &self,
        keep: u32,
        force: bool,
        credentials: impl FnOnce() -> Result<Vec<Credential>, VaultError>,
    ) -> Result<InitOutcome, VaultError> {
        if self.is_encrypted()? {
            return Ok(InitOutcome::AlreadyEncrypted);
        }
        let mut forced_over = None;
        if fs::read_optional(&self.vault_path(), Limit::VAULT_FILE)?.is_some() {
            let evidence = self.prior_vault_evidence();
            if !evidence.is_empty() {
                let evidence = evidence.join(", ");
                if !force {
                    return Err(VaultError::Replaced {
                        path: self.vault_path(),
                        dir: self.dir.clone(),
                        evidence,
                    });
                }
                forced_over = Some(evidence);
            }
        }
        let credentials = credentials()?;
        // The new directory's entry is synced beside the other writes below.
        let new_dir_parent = fs::create_dir_unsynced(&self.dir, 0o700)?;
        let _lock = self.lock()?;
        let vault_path = self.vault_path();
        // Re-read under the lock: another init may have finished meanwhile.
        let plaintext = match fs::read_optional(&vault_path, Limit::VAULT_FILE)? {
            None => None,
            Some(bytes) => match format::classify(&bytes) {
                Ok(VaultFile::Encrypted(_)) => return Ok(InitOutcome::AlreadyEncrypted),
                Ok(VaultFile::Plaintext(doc)) => Some(plain_tree(doc, &vault_path)?),
                Err(FormatError::Yaml(message)) => {
                    return Err(VaultError::BadYaml {
                        file: vault_path,
                        message,
                    });
                }
                Err(source @ FormatError::UnsupportedVersion { .. }) => {
                    return Err(VaultError::Unsupported {
                        path: vault_path,
                        source,
                    });
                }
                Err(source) => {
                    return Err(VaultError::Corrupt {
                        path: vault_path,
                        source,
                    });
                }
            },
        };
        let old_plaintext = match &plaintext {
            Some(_) => Some(open_for_wipe(&vault_path)?),
            None => None,
        };
        let (salt, new_salt) = match fs::read_optional(&self.salt_path(), Limit::SALT_FILE)?
            .map(Salt::from_file_bytes)
        {
            Some(salt) if !salt.is_weak() => (salt, false),
            _ => (Salt::generate(), true),
        };
        let mut unlocked = UnlockedVault::create(&credentials, &salt, keep, &vault_path);
        let mut record = AuditRecord::default();
        let values = match plaintext {
            Some(tree) => {
                record.changes = unlocked.merge(tree, "adopt", &NoProgress)?;
                record.changes.len()
            }
            None => 0,
        };
        let sealed = unlocked.into_sealed();
        // A hand-made file may be world-readable; the encrypted one keeps at most group read.
        let mode = WriteMode {
            new_file_mode: 0o600,
            refuse_open_target: false,
            keep_mode_mask: 0o640,
        };
        let old_salt = fs::read_optional(&self.salt_path(), Limit::SALT_FILE)?;
        // The salt, the audit line and the vault's temp file are written
        // side by side; the salt is in place and durable before the vault
        // that needs it is renamed.
        let salt_path = self.salt_path();
        let first_writes = || {
            std::thread::scope(|scope| {
                let parent = new_dir_parent
                    .as_deref()
                    .map(|parent| scope.spawn(move || fs::sync_dir(parent)));
                if new_salt {
                    fs::write_atomic(&salt_path, salt.as_bytes(), mode)?;
                }
                match parent {
                    Some(synced) => synced.join().expect("a directory sync does not panic"),
                    None => Ok(()),
                }
            })
        };
        let commit = Commit {
            command: "init",
            vault_id: sealed.header.vault_id,
            generations: (0, sealed.header.generation),
            record: &record,
        };
        let canonical = sealed.to_canonical();
        let first = (new_salt || new_dir_parent.is_some())
            .then_some(&first_writes as &(dyn Fn() -> Result<(), FsError> + Sync));
        self.audited_write(&commit, &canonical, mode, first)
            .inspect_err(|_| {
                // Put the old salt back, so a failed init changes nothing.
                if new_salt {
                    let _ = match &old_salt {
                        Some(bytes) => {
                            fs::write_atomic(&self.salt_path(), bytes, WriteMode::PRIVATE)
                        }
                        None => std::fs::remove_file(self.salt_path())
                            .map_err(FsError::io("remove", &self.salt_path())),
                    };
                }
            })?;
        // The old file was opened for wiping exactly when there was plaintext.
        match old_plaintext {
            Some(old) => {
                let plaintext_linked_elsewhere = wipe_unlinked(old, &vault_path)?;
                Ok(InitOutcome::Adopted {
                    values,
                    new_salt,
                    plaintext_linked_elsewhere,
                    forced_over,
                })
            }
            None => Ok(InitOutcome::Created { new_salt }),
        }
    }
}

/// A rekeyed vault to commit.
struct RekeyCommit<'c> {
    vault_id: [u8; 16],
    bytes: &'c [u8],
    generations: (u64, u64),
    report: &'c RekeyReport,
    new_salt: Option<&'c Salt>,
}

/// Parses `vault.yml` bytes into an encrypted vault, with the error a user
/// needs: plaintext (adopt it), newer format (upgrade) or corrupt (exit 5).
pub fn parse_vault(bytes: &[u8], vault_path: &Path) -> Result<EncryptedVault, VaultError> {
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

/// Converts plaintext YAML to values, refusing what looks like encrypted
/// runvault values (storing ciphertext as a value would hide the mistake).
pub fn plain_tree(doc: serde_yaml::Value, file: &Path) -> Result<Tree<Plain>, VaultError> {
    if format::contains_sealed_value(&doc) {
        return Err(crate::vault::plaintext::sealed_values(file));
    }
    let plain = |source| VaultError::Plain {
        file: file.to_path_buf(),
        source,
    };
    let tree = value::tree_from_yaml(doc).map_err(plain)?;
    value::check_value_sizes(&tree).map_err(plain)?;
    Ok(tree)
}

/// Opens the plaintext file so it can be overwritten once it is unlinked.
fn open_for_wipe(path: &Path) -> Result<std::fs::File, VaultError> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(FsError::io("open", path))?)
}

/// Overwrites the replaced plaintext file with zeros if no other name links
/// to it; returns whether another hard link still holds it.
fn wipe_unlinked(mut old: std::fs::File, path: &Path) -> Result<bool, VaultError> {
    let meta = old.metadata().map_err(FsError::io("inspect", path))?;
    if meta.nlink() > 0 {
        return Ok(true);
    }
    let zeros = vec![0u8; meta.len() as usize];
    old.write_all(&zeros)
        .and_then(|()| old.sync_all())
        .map_err(FsError::io("wipe the old plaintext of", path))?;
    Ok(false)
}
