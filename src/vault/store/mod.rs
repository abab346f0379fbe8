//! The writer of the vault directory ([`VaultDir`]), the only code that
//! changes `vault.yml`, `vault.salt`, the audit log and the high-water
//! mark: writers take the lock, verify the vault, change it (through a
//! streaming pass of `stream` when it can, else in the tree of an opened
//! vault) and commit it with one atomic rename inside one frame
//! ([`VaultDir::marked`]: mark checked, audit line, rename, mark raised).
//! Readers use the read-only directory it wraps (`dir`), which takes no
//! lock and writes nothing.

use std::path::Path;
use std::time::Duration;

use crate::core::fs::WriteMode;
use crate::core::lock::WriteLock;
use crate::core::progress::Progress;
use crate::vault::audit::{self, AuditRecord};
use crate::vault::crypto::KdfOverride;
use crate::vault::dir::{ReadOnlyDir, Warn};
use crate::vault::error::VaultError;
use crate::vault::format::Header;
use crate::vault::keys::rotation::{RekeyPlan, RekeyReport};
use crate::vault::keys::slots::{self, Credential, Opened};
use crate::vault::path::KeyPath;
use crate::vault::salt::Salt;
use crate::vault::stream::rekey;
use crate::vault::stream::splice::{self, SetEdit};
use crate::vault::unlocked::{UnlockedVault, now};
use crate::vault::value::Plain;

mod commit;
mod init;
mod receive;

pub use init::InitOutcome;
pub use receive::{ReceiveOptions, Received};

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

/// What [`VaultDir::set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOutcome {
    /// The path's version now.
    pub version: u32,
    /// `false`: the path already held this very value; nothing was
    /// written and no version was added.
    pub changed: bool,
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
    /// `if_version`, when given; that check comes first) and returns its
    /// version: a [`VaultDir::modify`] that splices the new file from the
    /// old one in one pass (`stream::splice`) when the file is canonical
    /// and no view needs the opened vault, and otherwise changes the tree,
    /// with the slot the first attempt opened (one KDF run either way). A
    /// path that already holds this very value is left alone: no new
    /// version, nothing written, [`SetOutcome::changed`] false.
    pub fn set(
        &self,
        credential: &Credential,
        path: &KeyPath,
        value: &Plain,
        if_version: Option<u32>,
    ) -> Result<SetOutcome, VaultError> {
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
                Ok(spliced) if spliced.unchanged => {
                    return Ok(SetOutcome {
                        version: spliced.version,
                        changed: false,
                    });
                }
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
                    return Ok(SetOutcome {
                        version: spliced.version,
                        changed: true,
                    });
                }
                Err(slot) => {
                    tracing::debug!("the file cannot be spliced: set goes through the tree writer");
                    opened = slot;
                }
            }
        }
        let (unlocked, salt) = self.open_reusing(credential, opened)?;
        unlocked.refuse_pending_under(path)?;
        let current = unlocked.current_version(path);
        if let Some(expected) = if_version
            && expected != current
        {
            return Err(VaultError::VersionConflict {
                key: path.to_string(),
                expected,
                current,
            });
        }
        if current > 0 && unlocked.get(path).is_ok_and(|stored| stored == *value) {
            return Ok(SetOutcome {
                version: current,
                changed: false,
            });
        }
        let version = self.change_opened(unlocked, &salt, "set", |vault, _, record| {
            let version = vault.set(path, value)?;
            record.changes.push(vault.audit_change(path, "set")?);
            Ok(version)
        })?;
        Ok(SetOutcome {
            version,
            changed: true,
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
        let (unlocked, salt) = self.open_reusing(credential, opened)?;
        self.change_opened(unlocked, &salt, command, change)
    }

    /// The rest of [`VaultDir::modify_locked`], once the vault is opened.
    fn change_opened<T>(
        &self,
        mut unlocked: UnlockedVault,
        salt: &Salt,
        command: &str,
        change: impl FnOnce(&mut UnlockedVault, &Salt, &mut AuditRecord) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let mut record = AuditRecord::default();
        let result = change(&mut unlocked, salt, &mut record)?;
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
            self.after_commit(unlocked, salt, sealed.header.generation);
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

    /// Takes the writers' lock (finishing an interrupted rekey first), for
    /// work that must not interleave with a commit, such as writing views.
    pub fn lock_writers(&self) -> Result<WriteLock, VaultError> {
        self.lock()
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
