//! The commit protocol of the writer: the writers' lock (and the recovery
//! of a rekey interrupted between its renames), the frame every commit
//! runs in ([`VaultDir::marked`]: the high-water mark checked, the audit
//! line, the atomic rename, the mark raised once durable), and the
//! two-file commit of a rekey with a new salt (docs/format.md §13-14).

use std::path::PathBuf;

use crate::core::failpoint;
use crate::core::fs::{self, FsError, Limit, WriteMode};
use crate::core::lock::WriteLock;
use crate::vault::audit::{self, AuditRecord};
use crate::vault::error::VaultError;
use crate::vault::format::EncryptedVault;
use crate::vault::salt::Salt;
use crate::vault::store::{Commit, VaultDir};

impl VaultDir {
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
    pub(super) fn audited_commit(
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
    pub(super) fn audited_write(
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
    pub(super) fn commit_with_new_salt(
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

    pub(super) fn lock(&self) -> Result<WriteLock, VaultError> {
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
}

/// The audit line's result, once the thread appending it is done.
fn line_written<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .expect("appending the audit line does not panic")
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::core::progress::NoProgress;
    use crate::vault::format::DEFAULT_KEEP;
    use crate::vault::keys::slots::test_passphrase as passphrase;
    use crate::vault::path::KeyPath;
    use crate::vault::store::{InitOutcome, RekeyOptions};
    use crate::vault::value::Plain;

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
        store
            .set(&passphrase(), &KeyPath::parse(path).unwrap(), &value, None)
            .map(|outcome| outcome.version)
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
