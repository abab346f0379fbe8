//! The writer of the vault directory ([`VaultDir`]), the only code that
//! changes `vault.yml`, `vault.salt`, the audit log and the high-water
//! mark: writers take the lock, verify the vault, change it (through a
//! streaming pass of `stream` when it can, else in the tree of an opened
//! vault) and commit it with one atomic rename inside one frame
//! ([`VaultDir::marked`]: mark checked, audit line, rename, mark raised).
//! Readers use the read-only directory it wraps (`dir`), which takes no
//! lock and writes nothing.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::failpoint;
use crate::core::fs::{self, FsError, Limit, WriteMode};
use crate::core::lock::WriteLock;
use crate::core::progress::{NoProgress, Progress};
use crate::vault::audit::{self, AuditRecord};
use crate::vault::crypto::KdfOverride;
use crate::vault::dir::{ReadOnlyDir, Warn};
use crate::vault::error::VaultError;
use crate::vault::format::{self, EncryptedVault, FormatError, Header, VaultFile};
use crate::vault::keys::rotation::{RekeyPlan, RekeyReport};
use crate::vault::keys::slots::{self, Credential, Opened};
use crate::vault::path::KeyPath;
use crate::vault::plaintext::plain_tree;
use crate::vault::salt::Salt;
use crate::vault::stream::rekey;
use crate::vault::stream::splice::{self, SetEdit};
use crate::vault::unlocked::{UnlockedVault, now};
use crate::vault::value::Plain;

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

/// A vault directory, for writers: the read-only directory
/// ([`ReadOnlyDir`], whose methods it has through `Deref`) with the
/// writers' lock, the commit protocol and the after-commit hook. The only
/// type in the crate that writes the vault.
#[derive(Clone)]
pub struct VaultDir {
    read: ReadOnlyDir,
    lock_wait: Duration,
    after_commit: Option<AfterCommit>,
}

impl std::fmt::Debug for VaultDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultDir")
            .field("read", &self.read)
            .field("lock_wait", &self.lock_wait)
            .field("after_commit", &self.after_commit)
            .finish_non_exhaustive()
    }
}

/// A writer can do everything a reader can: `&VaultDir` is taken where a
/// `&ReadOnlyDir` is asked for.
impl std::ops::Deref for VaultDir {
    type Target = ReadOnlyDir;

    fn deref(&self) -> &ReadOnlyDir {
        &self.read
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
            read: ReadOnlyDir::new(dir),
            lock_wait,
            after_commit: None,
        }
    }

    /// The same vault with its high-water marks kept in `state_dir`
    /// instead of `/var/lib/runvault`.
    pub fn with_state_dir(mut self, state_dir: &Path) -> VaultDir {
        self.read = self.read.with_state_dir(state_dir);
        self
    }

    /// The same vault, reporting through `warn` what a writer cannot do
    /// but commits anyway (without it, only a diagnostic is logged).
    pub fn with_warnings(mut self, warn: std::rc::Rc<Warn>) -> VaultDir {
        self.read = self.read.with_warnings(warn);
        self
    }

    /// The same vault with the audit log at `path` instead of `DIR/audit.log`.
    pub fn with_audit_log(mut self, path: &Path) -> VaultDir {
        self.read = self.read.with_audit_log(path);
        self
    }

    /// Raises the high-water mark to a generation whose commit is durable.
    /// A mark that cannot be written leaves the commit as it is (it is
    /// safe) and is reported: rollback goes unnoticed until it is written.
    fn raise_mark(&self, vault_id: &[u8; 16], generation: u64) {
        if let Err(err) = self.marks().record(vault_id, self.dir(), generation) {
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
        let previous =
            self.marks()
                .read(&header.vault_id, self.dir())
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
            self.audit_log(),
            "verify --accept-rollback",
            "accept-rollback",
            (before, generation),
            &record,
        )?;
        self.marks()
            .record(&header.vault_id, self.dir(), generation)?;
        Ok((unlocked, count, previous.map(|m| m.generation)))
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
    /// one pass (`stream::splice`) when the file is canonical and no view needs
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
                dir: self.dir().to_path_buf(),
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

    /// The frame of every commit: checks the high-water mark, runs
    /// `write` (which writes the audit line and the files), and once the
    /// change is durable raises the mark.
    fn marked(
        &self,
        commit: &Commit<'_>,
        write: impl FnOnce() -> Result<(), VaultError>,
    ) -> Result<(), VaultError> {
        self.check_mark(
            &commit.vault_id,
            commit.generations.0,
            "this change is not checked",
        )?;
        write()?;
        failpoint::abort_at("commit-before-mark");
        self.raise_mark(&commit.vault_id, commit.generations.1);
        Ok(())
    }

    /// Within [`VaultDir::marked`]: appends the audit line, then runs
    /// `write`; if it fails, a second line records that the change was
    /// aborted.
    fn audited_commit(
        &self,
        commit: &Commit<'_>,
        write: impl FnOnce(&VaultDir) -> Result<(), VaultError>,
    ) -> Result<(), VaultError> {
        let (command, generations) = (commit.command, commit.generations);
        self.marked(commit, || {
            audit::append(
                self.audit_log(),
                command,
                "commit",
                generations,
                commit.record,
            )?;
            write(self).inspect_err(|_| self.audit_aborted(command, generations))
        })
    }

    /// Appends the `aborted` line of a commit that failed after its line
    /// was written (best effort: the commit's error is what is reported).
    fn audit_aborted(&self, command: &str, generations: (u64, u64)) {
        let _ = audit::append(
            self.audit_log(),
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
    /// All within [`VaultDir::marked`].
    fn audited_write(
        &self,
        commit: &Commit<'_>,
        bytes: &[u8],
        mode: WriteMode,
        first: Option<&(dyn Fn() -> Result<(), FsError> + Sync)>,
    ) -> Result<(), VaultError> {
        let (command, generations, record) = (commit.command, commit.generations, commit.record);
        let vault_path = self.vault_path();
        self.marked(commit, || std::thread::scope(|scope| {
            let log = self.audit_log();
            let line = move || audit::append(log, command, "commit", generations, record);
            let mut audit = Some(scope.spawn(line));
            let mut first = first.map(|first| scope.spawn(first));
            let mut audit_failed = false;
            let written = fs::write_atomic_unless_changed(&vault_path, bytes, mode, || {
                if let Some(handle) = first.take() {
                    handle.join().expect("the first write does not panic")?;
                }
                let handle = audit.take().expect("asked once, before the rename");
                line_written(handle)
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
                    line_written(handle)?;
                    err
                }
                (Err(err), None) => err,
            };
            self.audit_aborted(command, generations);
            Err(failure.into())
        }))
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
        failpoint::abort_at("rekey-after-salt-next");
        self.commit(bytes, generation, WriteMode::PRIVATE)?;
        failpoint::abort_at("rekey-after-vault");
        self.promote_next_salt()
    }

    fn promote_next_salt(&self) -> Result<(), VaultError> {
        let (next, salt) = (self.salt_next_path(), self.salt_path());
        std::fs::rename(&next, &salt).map_err(FsError::io("rename over", &salt))?;
        fs::sync_dir(self.dir())?;
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
                fs::sync_dir(self.dir())?;
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
        let lock = WriteLock::acquire(self.dir(), self.lock_wait)?;
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

    /// Creates the vault, or adopts a plaintext `vault.yml` in place.
    /// `credentials` is asked for only once it is known a vault will be made.
    /// A plaintext `vault.yml` in a directory that shows an encrypted vault
    /// was there ([`ReadOnlyDir::prior_vault_evidence`]) is refused, before
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
                        dir: self.dir().to_path_buf(),
                        evidence,
                    });
                }
                forced_over = Some(evidence);
            }
        }
        let credentials = credentials()?;
        // The new directory's entry is synced beside the other writes below.
        let new_dir_parent = fs::create_dir_unsynced(self.dir(), 0o700)?;
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

/// The audit line's result, once the thread appending it is done.
fn line_written<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .expect("appending the audit line does not panic")
}

/// A rekeyed vault to commit.
struct RekeyCommit<'c> {
    vault_id: [u8; 16],
    bytes: &'c [u8],
    generations: (u64, u64),
    report: &'c RekeyReport,
    new_salt: Option<&'c Salt>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::format::DEFAULT_KEEP;
    use crate::vault::keys::slots::test_passphrase as passphrase;

    /// A new vault in `TMP/secrets`, its high-water marks in `TMP/state`.
    fn new_vault() -> (tempfile::TempDir, VaultDir) {
        let tmp = tempfile::tempdir().unwrap();
        let store = VaultDir::new(&tmp.path().join("secrets"), Duration::from_secs(5))
            .with_state_dir(&tmp.path().join("state"));
        let outcome = store.init(DEFAULT_KEEP, false, || Ok(vec![passphrase()]));
        assert_eq!(outcome.unwrap(), InitOutcome::Created { new_salt: true });
        (tmp, store)
    }

    fn set(store: &VaultDir, path: &str, value: &str) -> Result<u32, VaultError> {
        let value = Plain::text(value.as_bytes().to_vec());
        store.set(&passphrase(), &KeyPath::parse(path).unwrap(), &value, None)
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    fn mark(store: &VaultDir) -> Option<u64> {
        let (vault, _) = store.load().unwrap();
        let mark = store.marks().read(&vault.header.vault_id, store.dir());
        mark.unwrap().map(|mark| mark.generation)
    }

    #[test]
    fn a_commit_appends_one_commit_line_and_raises_the_mark() {
        let (_tmp, store) = new_vault();
        assert_eq!(mark(&store), Some(1));
        assert_eq!(audit::committed_changes(store.audit_log()), 1);
        assert_eq!(set(&store, "A.B", "one").unwrap(), 1);
        assert_eq!(set(&store, "A.B", "two").unwrap(), 2);
        let (vault, _) = store.load().unwrap();
        assert_eq!(vault.header.generation, 3);
        assert_eq!(mark(&store), Some(3));
        assert_eq!(audit::committed_changes(store.audit_log()), 3);
    }

    #[test]
    fn a_commit_on_a_vault_older_than_its_mark_is_refused_and_writes_nothing() {
        let (_tmp, store) = new_vault();
        let old = read(&store.vault_path());
        set(&store, "A", "one").unwrap();
        std::fs::write(store.vault_path(), &old).unwrap();
        let log = read(store.audit_log());
        let err = set(&store, "A", "two").unwrap_err();
        assert!(
            matches!(
                err,
                VaultError::RolledBack {
                    generation: 1,
                    mark: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(read(&store.vault_path()), old);
        assert_eq!(read(store.audit_log()), log);
        assert_eq!(mark(&store), Some(2));
    }

    #[test]
    fn an_audit_line_that_cannot_be_written_leaves_the_vault_and_the_mark() {
        let (tmp, store) = new_vault();
        let before = read(&store.vault_path());
        let store = store.with_audit_log(&tmp.path().join("missing").join("audit.log"));
        assert!(matches!(set(&store, "A", "one"), Err(VaultError::Fs(_))));
        assert_eq!(read(&store.vault_path()), before);
        assert_eq!(mark(&store), Some(1));
    }

    #[test]
    fn a_rekey_interrupted_after_the_vault_is_finished_by_the_next_writer() {
        let (_tmp, store) = new_vault();
        set(&store, "A", "one").unwrap();
        let old_salt = read(&store.salt_path());
        let options = RekeyOptions {
            new_salt: true,
            ..RekeyOptions::default()
        };
        store.rekey(&[passphrase()], options, &NoProgress).unwrap();
        let new_salt = read(&store.salt_path());
        assert_ne!(new_salt, old_salt);
        // As if stopped between renames 2 and 3 of `commit_with_new_salt`.
        std::fs::write(store.salt_next_path(), &new_salt).unwrap();
        std::fs::write(store.salt_path(), &old_salt).unwrap();
        // A reader matches the vault with the staged salt meanwhile.
        assert_eq!(store.load().unwrap().1.as_bytes(), new_salt.as_slice());
        drop(store.lock_writers().unwrap());
        assert_eq!(read(&store.salt_path()), new_salt);
        assert!(!store.salt_next_path().exists());
    }

    #[test]
    fn a_rekey_interrupted_before_the_vault_is_undone_by_the_next_writer() {
        let (_tmp, store) = new_vault();
        let salt = read(&store.salt_path());
        std::fs::write(store.salt_next_path(), Salt::generate().as_bytes()).unwrap();
        drop(store.lock_writers().unwrap());
        assert!(!store.salt_next_path().exists());
        assert_eq!(read(&store.salt_path()), salt);
    }

    #[test]
    fn a_staged_salt_beside_an_unreadable_vault_is_left_alone() {
        let (_tmp, store) = new_vault();
        let staged = Salt::generate();
        std::fs::write(store.salt_next_path(), staged.as_bytes()).unwrap();
        std::fs::write(store.vault_path(), b"not: [a vault\n").unwrap();
        drop(store.lock_writers().unwrap());
        assert_eq!(read(&store.salt_next_path()), staged.as_bytes());
    }

    #[test]
    fn taking_the_lock_removes_the_temp_files_of_a_killed_writer() {
        let (_tmp, store) = new_vault();
        let stray = store.dir().join(".vault.yml.x1234.rvtmp");
        std::fs::write(&stray, b"half a vault").unwrap();
        drop(store.lock_writers().unwrap());
        assert!(!stray.exists());
    }
}
