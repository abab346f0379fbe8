//! The vault directory on disk: `vault.yml`, `vault.salt` and the writers'
//! lock. Readers take no lock and write nothing; writers lock, verify the
//! vault, change it in memory and commit it with one atomic rename.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::fs::{self, FsError, WriteMode};
use crate::core::lock::WriteLock;
use crate::vault::error::VaultError;
use crate::vault::format::{self, EncryptedVault, FormatError, VaultFile};
use crate::vault::salt::Salt;
use crate::vault::slots::Credential;
use crate::vault::tree::Tree;
use crate::vault::unlocked::UnlockedVault;
use crate::vault::value::{self, Plain};

/// File name of the vault.
pub const VAULT_FILE: &str = "vault.yml";
/// File name of the salt.
pub const SALT_FILE: &str = "vault.salt";

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
    },
    /// The vault was already encrypted; nothing changed.
    AlreadyEncrypted,
}

/// A vault directory.
#[derive(Debug, Clone)]
pub struct VaultDir {
    dir: PathBuf,
    lock_wait: Duration,
}

impl VaultDir {
    /// The vault in `dir`; writers wait up to `lock_wait` for the lock.
    pub fn new(dir: &Path, lock_wait: Duration) -> VaultDir {
        VaultDir {
            dir: dir.to_path_buf(),
            lock_wait,
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

    /// Reads a consistent (`vault.yml`, `vault.salt`) pair without locking or
    /// writing anything. A pair whose salt id does not match is re-read, since
    /// a writer may be between its two renames.
    pub fn load(&self) -> Result<(EncryptedVault, Salt), VaultError> {
        let (vault_path, salt_path) = (self.vault_path(), self.salt_path());
        for attempt in 0..CONSISTENT_READ_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(CONSISTENT_READ_PAUSE);
            }
            let Some(bytes) = fs::read_optional(&vault_path)? else {
                return Err(VaultError::NoVault {
                    dir: self.dir.clone(),
                });
            };
            let vault = parse_vault(&bytes, &vault_path)?;
            let Some(salt) = fs::read_optional(&salt_path)?.map(Salt::from_file_bytes) else {
                continue;
            };
            if salt.id() == vault.header.salt_id {
                return Ok((vault, salt));
            }
        }
        match fs::read_optional(&salt_path)? {
            None => Err(VaultError::SaltMissing { path: salt_path }),
            Some(_) => Err(VaultError::SaltMismatch { path: salt_path }),
        }
    }

    /// Opens the vault with a credential (no lock, no write).
    pub fn open(&self, credential: &Credential) -> Result<(UnlockedVault, Salt), VaultError> {
        let (vault, salt) = self.load()?;
        let unlocked = UnlockedVault::unlock(vault, &salt, credential, &self.vault_path())?;
        Ok((unlocked, salt))
    }

    /// A read-modify-write under the writers' lock: opens and verifies the
    /// vault, runs `change`, and commits the result atomically. If `change`
    /// fails nothing is written.
    pub fn modify<T>(
        &self,
        credential: &Credential,
        change: impl FnOnce(&mut UnlockedVault, &Salt) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        if !self.vault_path().exists() && !self.dir.join(SALT_FILE).exists() {
            return Err(VaultError::NoVault {
                dir: self.dir.clone(),
            });
        }
        let _lock = self.lock()?;
        let (mut unlocked, salt) = self.open(credential)?;
        let result = change(&mut unlocked, &salt)?;
        self.commit(&unlocked.seal(), WriteMode::PRIVATE)?;
        Ok(result)
    }

    fn lock(&self) -> Result<WriteLock, VaultError> {
        let lock = WriteLock::acquire(&self.dir, self.lock_wait)?;
        fs::remove_stray_temps(&self.vault_path())?;
        fs::remove_stray_temps(&self.salt_path())?;
        Ok(lock)
    }

    fn commit(&self, vault: &EncryptedVault, mode: WriteMode) -> Result<(), VaultError> {
        fs::write_atomic(&self.vault_path(), &vault.to_canonical(), mode)?;
        Ok(())
    }

    /// Whether `vault.yml` is already an encrypted vault (no lock taken).
    pub fn is_encrypted(&self) -> Result<bool, VaultError> {
        Ok(match fs::read_optional(&self.vault_path())? {
            Some(bytes) => matches!(format::classify(&bytes), Ok(VaultFile::Encrypted(_))),
            None => false,
        })
    }

    /// Creates the vault, or adopts a plaintext `vault.yml` in place.
    /// `credentials` is asked for only once it is known a vault will be made.
    pub fn init(
        &self,
        credentials: impl FnOnce() -> Result<Vec<Credential>, VaultError>,
    ) -> Result<InitOutcome, VaultError> {
        if self.is_encrypted()? {
            return Ok(InitOutcome::AlreadyEncrypted);
        }
        let credentials = credentials()?;
        fs::create_dir_with_mode(&self.dir, 0o700)?;
        let _lock = self.lock()?;
        let vault_path = self.vault_path();
        // Re-read under the lock: another init may have finished meanwhile.
        let plaintext = match fs::read_optional(&vault_path)? {
            None => None,
            Some(bytes) => match format::classify(&bytes) {
                Ok(VaultFile::Encrypted(_)) => return Ok(InitOutcome::AlreadyEncrypted),
                Ok(VaultFile::Plaintext(doc)) => Some(plain_tree(&doc, &vault_path)?),
                Err(FormatError::Yaml(message)) => {
                    return Err(VaultError::BadYaml {
                        file: vault_path,
                        message,
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
        let (salt, new_salt) =
            match fs::read_optional(&self.salt_path())?.map(Salt::from_file_bytes) {
                Some(salt) if !salt.is_weak() => (salt, false),
                _ => (Salt::generate(), true),
            };
        let mut unlocked = UnlockedVault::create(&credentials, &salt, &vault_path);
        let values = match &plaintext {
            Some(tree) => unlocked.merge(tree)?,
            None => 0,
        };
        let sealed = unlocked.seal();
        // A hand-made file may be world-readable; the encrypted one keeps at most group read.
        let mode = WriteMode {
            new_file_mode: 0o600,
            refuse_open_target: false,
            keep_mode_mask: 0o640,
        };
        if new_salt {
            fs::write_atomic(&self.salt_path(), salt.as_bytes(), mode)?;
        }
        self.commit(&sealed, mode)?;
        match (plaintext, old_plaintext) {
            (Some(_), Some(old)) => {
                let plaintext_linked_elsewhere = wipe_unlinked(old, &vault_path)?;
                Ok(InitOutcome::Adopted {
                    values,
                    new_salt,
                    plaintext_linked_elsewhere,
                })
            }
            _ => Ok(InitOutcome::Created { new_salt }),
        }
    }
}

/// Parses `vault.yml` bytes into an encrypted vault, with the error a user
/// needs: plaintext (adopt it), newer format (upgrade) or corrupt (exit 5).
pub fn parse_vault(bytes: &[u8], vault_path: &Path) -> Result<EncryptedVault, VaultError> {
    match EncryptedVault::parse(bytes) {
        Ok((vault, _reader)) => Ok(vault),
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
pub fn plain_tree(doc: &serde_yaml::Value, file: &Path) -> Result<Tree<Plain>, VaultError> {
    if format::contains_sealed_value(doc) {
        return Err(VaultError::Usage(format!(
            "`{}` holds encrypted runvault values; import plaintext YAML \
             (`runvault export` of the other vault), not a vault file",
            file.display()
        )));
    }
    value::tree_from_yaml(doc).map_err(|source| VaultError::Plain {
        file: file.to_path_buf(),
        source,
    })
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
