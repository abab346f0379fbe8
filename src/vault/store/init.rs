//! `init`: a new vault, or a hand-made plaintext `vault.yml` adopted in
//! place (its values encrypted, the old file wiped when no other link
//! holds it), refused where the directory shows an encrypted vault was.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::core::fs::{self, FsError, Limit, WriteMode};
use crate::core::progress::NoProgress;
use crate::vault::audit::AuditRecord;
use crate::vault::error::VaultError;
use crate::vault::format::{self, FormatError, VaultFile};
use crate::vault::keys::slots::Credential;
use crate::vault::plaintext::plain_tree;
use crate::vault::salt::Salt;
use crate::vault::store::{Commit, VaultDir};
use crate::vault::unlocked::UnlockedVault;

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

impl VaultDir {
    /// Creates the vault, or adopts a plaintext `vault.yml` in place.
    /// `credentials` is asked for only once it is known a vault will be made.
    /// A plaintext `vault.yml` in a directory that shows an encrypted vault
    /// was there ([`crate::vault::ReadOnlyDir::prior_vault_evidence`]) is refused, before
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
        // A hand-made file open to others had no chosen mode: the encrypted
        // one is 0600. One closed to others keeps at most group read (a
        // group of job runners the admin chose).
        let closed_to_others = std::fs::symlink_metadata(&vault_path)
            .is_ok_and(|meta| std::os::unix::fs::MetadataExt::mode(&meta) & 0o007 == 0);
        let mode = WriteMode {
            new_file_mode: 0o600,
            keep_mode_mask: if closed_to_others { 0o640 } else { 0o600 },
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
