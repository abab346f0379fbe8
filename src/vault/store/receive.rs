//! `receive` (issue 21, docs/fleet.md): installs a vault an admin shipped
//! unchanged (`vault.yml` + `vault.salt` in a staging directory) once it
//! opens with this host's secret and verifies entirely; refuses another
//! vault, a replay (a generation not above the installed one or this
//! host's high-water mark: exit 9) and a rolled-back secrets directory;
//! commits through the same frame as every writer (the mark, the audit
//! line, the atomic rename or the two-file salt protocol); then records
//! the host as managed and refreshes the views.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::core::fs::{self, Limit, WriteMode};
use crate::core::hex::hex;
use crate::vault::audit::AuditRecord;
use crate::vault::dir::{SALT_FILE, VAULT_FILE, parse_vault};
use crate::vault::error::VaultError;
use crate::vault::keys::slots::{Credential, now_rfc3339};
use crate::vault::mark::Managed;
use crate::vault::salt::{MIN_SALT_BYTES, Salt};
use crate::vault::store::{Commit, VaultDir};
use crate::vault::stream::leading_header;
use crate::vault::unlocked::UnlockedVault;

/// What `receive` is asked to do beside opening the shipped vault.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiveOptions<'a> {
    /// Install a vault with another `vault_id` than the installed one.
    pub replace_vault: bool,
    /// Where the vault is managed, recorded for the managed-host refusal.
    pub source: Option<&'a str>,
}

/// What `receive` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The shipped vault is installed.
    Installed {
        /// Its generation.
        generation: u64,
        /// The generation it replaced (same vault), if any.
        previous: Option<u64>,
    },
    /// The shipped vault is the installed one, byte for byte.
    Unchanged {
        /// Its generation.
        generation: u64,
    },
}

/// The shipped vault, verified: its exact bytes, its salt, the opened vault.
struct Shipped {
    bytes: Vec<u8>,
    salt: Salt,
    vault: UnlockedVault,
    sha256: String,
}

impl VaultDir {
    /// Installs the vault shipped to `staging` (see the module doc).
    /// Nothing in the secrets directory changes unless the shipped vault
    /// opens with `credential` (exit 4), verifies entirely (exit 5), is
    /// this host's vault (exit 5, unless `replace_vault` or there is none)
    /// and is newer than what the host has (exit 9).
    pub fn receive(
        &self,
        staging: &Path,
        credential: &Credential,
        options: ReceiveOptions<'_>,
    ) -> Result<Received, VaultError> {
        let staged_path = staging.join(VAULT_FILE);
        let shipped = open_shipped(staging, credential)?;
        let header = shipped.vault.header();
        let (vault_id, generation) = (header.vault_id, header.generation);

        let new_dir_parent = fs::create_dir_unsynced(self.dir(), 0o700)?;
        if let Some(parent) = &new_dir_parent {
            fs::sync_dir(parent)?;
        }
        let _lock = self.lock()?;
        let installed_path = self.vault_path();
        // The installed file's header and bytes: what the checks below
        // compare (the tree is not needed, so a canonical file is not
        // parsed past its header; any other goes through the full reader,
        // which says what is wrong with it).
        let installed = self.load_with(|bytes| {
            let header = match leading_header(&bytes) {
                Some(header) => header,
                None => parse_vault(&bytes, &installed_path)?.header,
            };
            let salt_id = header.salt_id;
            Ok(Some(((header, bytes), salt_id)))
        });
        let installed = match installed {
            Ok(loaded) => loaded,
            Err(VaultError::NoVault { .. }) => None,
            // Another vault or a damaged one is what --replace-vault replaces.
            Err(_) if options.replace_vault => None,
            Err(err) => return Err(err),
        };
        let mut previous = None;
        let mut same_salt = false;
        if let Some(((current, installed_bytes), salt)) = &installed {
            if current.vault_id != vault_id && !options.replace_vault {
                return Err(VaultError::OtherVault {
                    staged: staged_path,
                    incoming: hex(&vault_id),
                    installed_path,
                    installed: hex(&current.vault_id),
                });
            }
            same_salt = salt.as_bytes() == shipped.salt.as_bytes();
            if current.vault_id == vault_id {
                // A rolled-back directory is refused whatever is shipped:
                // someone who can write it put an old vault back.
                self.check_mark(&vault_id, current.generation, "this receive is not checked")?;
                if same_salt && installed_bytes[..] == shipped.bytes[..] {
                    self.record_managed(&shipped, options, true);
                    return Ok(Received::Unchanged { generation });
                }
                if current.generation == generation {
                    return Err(VaultError::GenerationDiffers {
                        staged: staged_path,
                        installed_path,
                        generation,
                    });
                }
                if generation < current.generation {
                    return Err(VaultError::Replay {
                        staged: staged_path,
                        incoming: generation,
                        what: format!("the installed vault `{}`", installed_path.display()),
                        current: current.generation,
                    });
                }
                previous = Some(current.generation);
            }
        }
        // The mark remembers generations this directory had even when the
        // vault in it was replaced or removed since.
        let mark = match self.marks().read(&vault_id, self.dir()) {
            Ok(mark) => mark.map(|mark| mark.generation),
            Err(VaultError::Fs(err)) => {
                self.warn(&format!(
                    "the rollback high-water mark cannot be read: {err}; this receive is not \
                     checked against a replay (give a readable --state-dir)"
                ));
                None
            }
            Err(err) => return Err(err),
        };
        if let Some(mark) = mark
            && generation <= mark
        {
            return Err(VaultError::Replay {
                staged: staged_path,
                incoming: generation,
                what: format!(
                    "this host's high-water mark `{}`",
                    self.marks().path(&vault_id, self.dir()).display()
                ),
                current: mark,
            });
        }
        let before = previous.or(mark).unwrap_or(0);
        let record = AuditRecord {
            changes: Vec::new(),
            detail: Some(format!(
                "received generation {generation} of vault {}; sha256 {}{}",
                hex(&vault_id),
                shipped.sha256,
                options
                    .source
                    .map(|source| format!("; source {source}"))
                    .unwrap_or_default()
            )),
        };
        let commit = Commit {
            command: "receive",
            vault_id,
            generations: (before, generation),
            record: &record,
        };
        if same_salt {
            self.audited_write(&commit, &shipped.bytes, WriteMode::PRIVATE, None)?;
        } else {
            self.audited_commit(&commit, |store| {
                store.commit_with_new_salt(&shipped.bytes, generation, &shipped.salt)
            })?;
        }
        self.record_managed(&shipped, options, false);
        // Still under the lock, so views are refreshed in commit order.
        if self.after_commit_wanted() {
            self.after_commit(&shipped.vault, &shipped.salt, generation);
        }
        Ok(Received::Installed {
            generation,
            previous,
        })
    }

    /// Records this directory as managed by the vault just installed (or
    /// found installed: `only_if_missing`, then an existing record stays).
    /// A record that cannot be written is reported; the install stands.
    fn record_managed(
        &self,
        shipped: &Shipped,
        options: ReceiveOptions<'_>,
        only_if_missing: bool,
    ) {
        let existing = self.marks().managed(self.dir()).ok().flatten();
        if only_if_missing && existing.is_some() {
            return;
        }
        let header = shipped.vault.header();
        let record = Managed {
            dir: String::new(),
            source: (options.source.map(str::to_owned)).or(existing.and_then(|r| r.source)),
            vault_id: hex(&header.vault_id),
            generation: header.generation,
            sha256: shipped.sha256.clone(),
            received: now_rfc3339(),
        };
        if let Err(err) = self.marks().record_managed(self.dir(), &record) {
            self.warn(&format!(
                "the vault is installed, but this host was not recorded as managed: {err}; \
                 local changes are not refused until a receive records it (give a writable \
                 --state-dir)"
            ));
        }
    }
}

/// Reads the shipped pair once and verifies it entirely: the salt it
/// names, a slot this credential opens, the MAC, every value.
fn open_shipped(staging: &Path, credential: &Credential) -> Result<Shipped, VaultError> {
    let (vault_path, salt_path) = (staging.join(VAULT_FILE), staging.join(SALT_FILE));
    let bytes = fs::read_nofollow(&vault_path, Limit::VAULT_FILE)?;
    let salt = match fs::read_optional(&salt_path, Limit::SALT_FILE)? {
        Some(salt) => Salt::from_file_bytes(salt),
        None => return Err(VaultError::SaltMissing { path: salt_path }),
    };
    let vault = parse_vault(&bytes, &vault_path)?;
    if salt.id() != vault.header.salt_id {
        return Err(VaultError::SaltMismatch { path: salt_path });
    }
    if salt.as_bytes().len() < MIN_SALT_BYTES {
        return Err(VaultError::ShortSalt {
            path: salt_path,
            len: salt.as_bytes().len(),
        });
    }
    let vault = UnlockedVault::unlock(vault, &salt, credential, &vault_path)?;
    vault.verify_all()?;
    let sha256 = hex(&Sha256::digest(&bytes));
    Ok(Shipped {
        bytes,
        salt,
        vault,
        sha256,
    })
}
