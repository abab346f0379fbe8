//! An opened vault: the encrypted tree, its stored old versions and the
//! data key's subkeys.
//!
//! Values stay encrypted in memory; `get` decrypts one on demand and `set`
//! encrypts at once, so the only thing that can be saved is ciphertext
//! ([`UnlockedVault::seal`] returns an [`EncryptedVault`]).
//!
//! Versions work as in HashiCorp Vault's KV v2: every change of a path adds
//! one to its version; replaced and removed values move to the history
//! (oldest first, at most `keep` versions per path counting the current
//! one); a rollback restores an old version as a new one.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::secret::{Key32, constant_time_eq};
use crate::vault::audit::AuditChange;
use crate::vault::crypto::{KeyedMac, Subkeys, random_bytes};
use crate::vault::error::VaultError;
use crate::vault::format::{EncryptedVault, Header, History, Sealed, compute_mac};
use crate::vault::keys::seal::{
    open_audit_key, open_sealed, seal_at, seal_audit_key, value_hmac, value_hmac_bytes,
};
use crate::vault::keys::slots::{self, Credential};
use crate::vault::path::KeyPath;
use crate::vault::salt::Salt;
use crate::vault::tree::Tree;
use crate::vault::value::Plain;

mod change;
mod keys;
mod pending;

pub use pending::{ALTERNATE_FIELDS, PolicyAge, alternate_paths, policy_ages};

/// A vault whose data key is known. No `Debug`: it holds keys.
pub struct UnlockedVault {
    vault: EncryptedVault,
    data_key: Key32,
    subkeys: Subkeys,
    /// The slot that opened the vault and its key-encryption key (none
    /// for a recipient slot).
    unlocked_with: Option<(u32, Option<Key32>)>,
    vault_path: PathBuf,
}

/// One version of a path, as `history` lists it (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version number.
    pub version: u32,
    /// Unix time it was set (or removed).
    pub time: u64,
    /// Whether this version is a removal.
    pub deleted: bool,
    /// Whether this is the path's current value.
    pub current: bool,
    /// Whether this is a pending value (`rotate`), not yet current.
    pub pending: bool,
}

impl UnlockedVault {
    /// A new, empty vault with one slot per credential.
    pub fn create(
        credentials: &[Credential],
        salt: &Salt,
        keep: u32,
        vault_path: &Path,
    ) -> UnlockedVault {
        let data_key = Key32::random();
        let vault_id = random_bytes::<16>();
        let subkeys = Subkeys::derive(&data_key);
        let slots = credentials
            .iter()
            .zip(1..)
            .map(|(credential, id)| slots::make_slot(id, credential, &data_key, salt, &vault_id))
            .collect();
        let audit_key = seal_audit_key(&subkeys, &vault_id, &Key32::random());
        let header = Header {
            vault_id,
            salt_id: salt.id(),
            generation: 0,
            keep,
            audit_key,
            slots,
            rotation: Box::default(),
            last_slot_id: None,
            mac: [0; 32],
        };
        UnlockedVault {
            vault: EncryptedVault {
                header,
                secrets: Tree::empty_map(),
                history: History::new(),
            },
            subkeys,
            data_key,
            unlocked_with: None,
            vault_path: vault_path.to_path_buf(),
        }
    }

    /// Opens a vault: finds the data key through a slot, then checks the MAC.
    pub fn unlock(
        vault: EncryptedVault,
        salt: &Salt,
        credential: &Credential,
        vault_path: &Path,
    ) -> Result<UnlockedVault, VaultError> {
        let opened = slots::unlock(&vault.header, credential, salt, vault_path)?;
        UnlockedVault::from_opened(vault, opened, vault_path)
    }

    /// Opens a vault with a slot already opened for this same header (the
    /// streaming reader hands it over when it falls back), then checks the
    /// MAC: no KDF runs here.
    pub fn from_opened(
        vault: EncryptedVault,
        opened: slots::Opened,
        vault_path: &Path,
    ) -> Result<UnlockedVault, VaultError> {
        let data_key = opened.data_key;
        let subkeys = Subkeys::derive(&data_key);
        let expected = compute_mac(&subkeys.mac, &vault.header, &vault.secrets, &vault.history);
        if !constant_time_eq(&expected, &vault.header.mac) {
            return Err(VaultError::MacMismatch {
                path: vault_path.to_path_buf(),
            });
        }
        Ok(UnlockedVault {
            vault,
            data_key,
            subkeys,
            unlocked_with: Some((opened.slot_id, opened.kek)),
            vault_path: vault_path.to_path_buf(),
        })
    }

    /// The header (slots, generation).
    pub fn header(&self) -> &Header {
        &self.vault.header
    }

    /// The id of the slot that opened the vault.
    pub fn unlocked_with(&self) -> Option<u32> {
        self.unlocked_with.as_ref().map(|(id, _)| *id)
    }

    /// The encrypted tree (paths are visible; values are not).
    pub fn secrets(&self) -> &Tree<Sealed> {
        &self.vault.secrets
    }

    /// Decrypts the value at `path`.
    pub fn get(&self, path: &KeyPath) -> Result<Plain, VaultError> {
        match self.vault.secrets.get(path) {
            Some(Tree::Leaf(sealed)) => self.open_value(path, sealed),
            Some(node) => Err(VaultError::NotAValue {
                key: path.to_string(),
                kind: node.kind_name(),
                dir: self.dir(),
            }),
            None => Err(VaultError::NotFound {
                key: path.to_string(),
            }),
        }
    }

    /// Decrypts every value under `prefix` (the whole vault for the root),
    /// keeping the full nesting from the root.
    pub fn decrypt_under(&self, prefix: &KeyPath) -> Result<Tree<Plain>, VaultError> {
        let subtree = self
            .vault
            .secrets
            .get(prefix)
            .ok_or_else(|| VaultError::NotFound {
                key: prefix.to_string(),
            })?;
        if prefix.is_root() {
            // The walk's paths are the full paths: no copy of each.
            return subtree.try_map(&mut |path, sealed| self.open_value(path, sealed));
        }
        let mut full_path = prefix.clone();
        let base_len = prefix.segments().len();
        let decrypted = subtree.try_map(&mut |relative, sealed| {
            full_path.truncate(base_len);
            full_path.append(relative);
            self.open_value(&full_path, sealed)
        })?;
        let mut root = Tree::empty_map();
        root.place(prefix, decrypted)?;
        Ok(root)
    }

    /// Decrypts every value and every stored version, failing on the first
    /// that does not open. Returns the number of current values.
    pub fn verify_all(&self) -> Result<usize, VaultError> {
        let mut count = 0;
        let mut result = Ok(());
        self.vault.secrets.for_each_leaf(&mut |path, sealed| {
            if result.is_ok() {
                result = self.open_value(path, sealed).map(|_| count += 1);
            }
        });
        result?;
        for (path_text, versions) in &self.vault.history {
            let path = KeyPath::parse(path_text)?;
            for sealed in versions.iter().filter(|s| !s.is_tombstone()) {
                self.open_value(&path, sealed)?;
            }
        }
        for (path_text, sealed) in &self.vault.header.rotation.pending {
            self.open_value(&KeyPath::parse(path_text)?, sealed)?;
        }
        self.audit_key()?;
        Ok(count)
    }

    /// The current version of `path` (0 if it has no value now).
    pub fn current_version(&self, path: &KeyPath) -> u32 {
        match self.vault.secrets.get(path) {
            Some(Tree::Leaf(sealed)) => sealed.version_and_time().map_or(0, |(version, _)| version),
            _ => 0,
        }
    }

    /// The versions of `path`, oldest first, with the current one last.
    pub fn history(&self, path: &KeyPath) -> Result<Vec<VersionInfo>, VaultError> {
        let mut out: Vec<VersionInfo> = self
            .vault
            .history
            .get(&path.to_string())
            .into_iter()
            .flatten()
            .filter_map(|sealed| {
                let (version, time) = sealed.version_and_time()?;
                Some(VersionInfo {
                    version,
                    time,
                    deleted: sealed.is_tombstone(),
                    current: false,
                    pending: false,
                })
            })
            .collect();
        match self.vault.secrets.get(path) {
            Some(Tree::Leaf(sealed)) => {
                if let Some((version, time)) = sealed.version_and_time() {
                    out.push(VersionInfo {
                        version,
                        time,
                        deleted: false,
                        current: true,
                        pending: false,
                    });
                }
            }
            Some(node) => {
                return Err(VaultError::NotAValue {
                    key: path.to_string(),
                    kind: node.kind_name(),
                    dir: self.dir(),
                });
            }
            None if out.is_empty() => {
                return Err(VaultError::NotFound {
                    key: path.to_string(),
                });
            }
            None => {}
        }
        if let Some((version, time)) = self.pending(path) {
            out.push(VersionInfo {
                version,
                time,
                deleted: false,
                current: false,
                pending: true,
            });
        }
        Ok(out)
    }

    /// The audit HMAC of a value at a path: HMAC-SHA256 under the vault's
    /// audit key over the encoded path and the tagged plaintext. It proves
    /// which value was set without revealing it.
    pub fn audit_hmac(&self, path: &KeyPath, value: &Plain) -> Result<String, VaultError> {
        Ok(value_hmac(&KeyedMac::new(&self.audit_key()?), path, value))
    }

    /// The audit entry for `path` after a change: its current version and
    /// value HMAC, or just the path when it has no value now.
    pub fn audit_change(
        &self,
        path: &KeyPath,
        action: &'static str,
    ) -> Result<AuditChange, VaultError> {
        let (version, hmac) = match self.vault.secrets.get(path) {
            Some(Tree::Leaf(_)) => {
                let value = self.get(path)?;
                (
                    Some(self.current_version(path)),
                    Some(value_hmac_bytes(
                        &KeyedMac::new(&self.audit_key()?),
                        path,
                        &value,
                    )),
                )
            }
            _ => (None, None),
        };
        Ok(AuditChange {
            path: path.to_string(),
            version,
            hmac,
            action,
        })
    }

    fn audit_key(&self) -> Result<Key32, VaultError> {
        open_audit_key(&self.subkeys.enc, &self.vault.header, &self.vault_path)
    }

    /// The vault to write: generation advanced by one and a fresh MAC.
    pub fn seal(&self) -> EncryptedVault {
        seal_with(&self.subkeys, self.vault.clone())
    }

    /// [`UnlockedVault::seal`] without copying the tree, for a writer that
    /// is done with the opened vault (its keys are wiped here).
    pub fn into_sealed(self) -> EncryptedVault {
        let UnlockedVault { vault, subkeys, .. } = self;
        seal_with(&subkeys, vault)
    }

    fn seal_value(&self, path: &KeyPath, value: &Plain, version: u32, time: u64) -> Sealed {
        seal_at(
            &self.subkeys.enc,
            &self.vault.header.vault_id,
            path,
            value,
            version,
            time,
        )
    }

    /// The vault directory, for the hints of errors.
    pub(crate) fn dir(&self) -> std::path::PathBuf {
        crate::vault::error::vault_dir_of(&self.vault_path).to_path_buf()
    }

    /// Decrypts `sealed` as the value at `path` of this vault.
    pub(crate) fn open_value(&self, path: &KeyPath, sealed: &Sealed) -> Result<Plain, VaultError> {
        open_sealed(
            &self.subkeys.enc,
            &self.vault.header.vault_id,
            path,
            sealed,
            &self.vault_path,
        )
    }
}

/// Advances the generation by one and MACs the vault under `subkeys`.
fn seal_with(subkeys: &Subkeys, mut vault: EncryptedVault) -> EncryptedVault {
    vault.header.generation += 1;
    vault.header.mac = compute_mac(&subkeys.mac, &vault.header, &vault.secrets, &vault.history);
    vault
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::progress::NoProgress;
    use crate::vault::canonical;
    use crate::vault::format::DEFAULT_KEEP;
    use crate::vault::format::{Reader, raw_from_general};
    use crate::vault::keys::slots::test_passphrase as passphrase;
    use proptest::prelude::*;

    fn text(value: &str) -> Plain {
        Plain::text(value.as_bytes().to_vec())
    }

    #[test]
    fn a_value_moved_to_another_path_fails_even_with_a_valid_mac() {
        let salt = Salt::generate();
        let path = Path::new("vault.yml");
        let mut vault = UnlockedVault::create(&[passphrase()], &salt, DEFAULT_KEEP, path);
        let (a, b) = (KeyPath::parse("A").unwrap(), KeyPath::parse("B").unwrap());
        vault.set(&a, &text("alpha")).unwrap();
        vault.set(&b, &text("beta")).unwrap();
        // Someone holding the MAC key (not the attacker model, but the
        // strongest case) swaps two values and re-MACs the file.
        let Tree::Map(map) = &mut vault.vault.secrets else {
            panic!()
        };
        let first = map["A"].clone();
        map["A"] = map["B"].clone();
        map["B"] = first;
        let reopened = UnlockedVault::unlock(vault.seal(), &salt, &passphrase(), path).unwrap();
        let err = reopened.get(&a).err().unwrap();
        assert_eq!(
            err.to_string(),
            "value at `A` in `vault.yml` failed to decrypt: it was tampered with or moved from another path"
        );
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Z_][A-Z0-9_]{0,8}",
            "[^.\\[\\]\\p{Cc}]{1,6}",
            Just("on".to_string()),
            Just("01".to_string())
        ]
    }

    /// Random trees of text values (as `String`: `Plain` has no `Debug`).
    fn text_tree() -> impl Strategy<Value = Tree<String>> {
        let leaf = any::<String>().prop_map(Tree::Leaf);
        let node = leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec((key(), inner.clone()), 0..5)
                    .prop_map(|entries| Tree::Map(entries.into_iter().collect())),
                proptest::collection::vec(inner, 0..4).prop_map(Tree::List),
            ]
        });
        proptest::collection::vec((key(), node), 0..6)
            .prop_map(|entries| Tree::Map(entries.into_iter().collect()))
    }

    proptest! {
        #![proptest_config(crate::core::proptest_seeds::with_cases(64))]

        /// Both readers agree on every canonical file, the fast path takes it,
        /// and every value decrypts to what was stored.
        #[test]
        fn canonical_files_round_trip_through_both_readers(texts in text_tree()) {
            let tree = texts.try_map(&mut |_, s| Ok::<_, ()>(text(s))).unwrap();
            let salt = Salt::generate();
            let path = Path::new("vault.yml");
            let mut vault = UnlockedVault::create(&[passphrase()], &salt, DEFAULT_KEEP, path);
            vault.merge(tree.clone(), "import", &NoProgress).unwrap();
            let bytes = vault.seal().to_canonical();
            let fast = canonical::parse(&bytes).expect("the fast reader takes canonical files");
            let doc: serde_yaml::Value = serde_yaml::from_slice(&bytes).expect("any YAML tool reads it");
            prop_assert_eq!(&fast, &raw_from_general(&doc, 0).unwrap());
            let (parsed, reader) = EncryptedVault::parse(&bytes).unwrap();
            prop_assert_eq!(reader, Reader::Fast);
            let reopened = UnlockedVault::unlock(parsed, &salt, &passphrase(), path).unwrap();
            let decrypted = reopened.decrypt_under(&KeyPath::root()).unwrap();
            prop_assert!(decrypted == tree, "decrypted tree differs");
        }
    }
}
