//! An opened vault: the encrypted tree plus the data key's subkeys.
//!
//! Values stay encrypted in memory; `get` decrypts one on demand and `set`
//! encrypts at once, so the only thing that can be saved is ciphertext
//! ([`UnlockedVault::seal`] returns an [`EncryptedVault`]).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::secret::{Key32, constant_time_eq};
use crate::vault::crypto::{self, Subkeys, random_bytes};
use crate::vault::error::VaultError;
use crate::vault::format::{EncryptedVault, Header, Sealed, Slot, SlotKind, compute_mac};
use crate::vault::path::{KeyPath, Segment};
use crate::vault::salt::Salt;
use crate::vault::slots::{self, Credential};
use crate::vault::tree::Tree;
use crate::vault::value::Plain;

/// A vault whose data key is known. No `Debug`: it holds keys.
pub struct UnlockedVault {
    vault: EncryptedVault,
    data_key: Key32,
    subkeys: Subkeys,
    unlocked_with: Option<u32>,
    vault_path: PathBuf,
}

impl UnlockedVault {
    /// A new, empty vault with one slot per credential.
    pub fn create(credentials: &[Credential], salt: &Salt, vault_path: &Path) -> UnlockedVault {
        let data_key = Key32::random();
        let vault_id = random_bytes::<16>();
        let slots = credentials
            .iter()
            .zip(1..)
            .map(|(credential, id)| slots::make_slot(id, credential, &data_key, salt, &vault_id))
            .collect();
        let header = Header {
            vault_id,
            salt_id: salt.id(),
            generation: 0,
            slots,
            mac: [0; 32],
        };
        UnlockedVault {
            vault: EncryptedVault {
                header,
                secrets: Tree::empty_map(),
            },
            subkeys: Subkeys::derive(&data_key),
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
        let (data_key, slot_id) = slots::unlock(&vault.header, credential, salt, vault_path)?;
        let subkeys = Subkeys::derive(&data_key);
        let expected = compute_mac(&subkeys.mac, &vault.header, &vault.secrets);
        if !constant_time_eq(&expected, &vault.header.mac) {
            return Err(VaultError::MacMismatch {
                path: vault_path.to_path_buf(),
            });
        }
        Ok(UnlockedVault {
            vault,
            data_key,
            subkeys,
            unlocked_with: Some(slot_id),
            vault_path: vault_path.to_path_buf(),
        })
    }

    /// The header (slots, generation).
    pub fn header(&self) -> &Header {
        &self.vault.header
    }

    /// The id of the slot that opened the vault.
    pub fn unlocked_with(&self) -> Option<u32> {
        self.unlocked_with
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
        let mut full_path = prefix.clone();
        let base_len = prefix.segments().len();
        let decrypted = subtree.try_map(&mut |relative, sealed| {
            full_path.truncate(base_len);
            relative
                .segments()
                .iter()
                .for_each(|s| full_path.push(s.clone()));
            self.open_value(&full_path, sealed)
        })?;
        let mut root = Tree::empty_map();
        if prefix.is_root() {
            return Ok(decrypted);
        }
        root.place(prefix, decrypted)?;
        Ok(root)
    }

    /// Decrypts every value, failing on the first that does not open.
    /// Returns the number of values.
    pub fn verify_all(&self) -> Result<usize, VaultError> {
        let mut count = 0;
        let mut result = Ok(());
        self.vault.secrets.for_each_leaf(&mut |path, sealed| {
            if result.is_ok() {
                result = self.open_value(path, sealed).map(|_| count += 1);
            }
        });
        result.map(|()| count)
    }

    /// Creates or replaces the value at `path`; returns its new version.
    pub fn set(&mut self, path: &KeyPath, value: &Plain) -> Result<u32, VaultError> {
        if path.is_root() {
            return Err(VaultError::Usage("the path is empty".into()));
        }
        let version = match self.vault.secrets.get(path) {
            Some(Tree::Leaf(sealed)) => sealed.parts().map_or(1, |p| p.version.saturating_add(1)),
            Some(node) => {
                return Err(VaultError::NotAValue {
                    key: path.to_string(),
                    kind: node.kind_name(),
                });
            }
            None => 1,
        };
        let sealed = self.seal_value(path, value, version);
        self.vault.secrets.place(path, Tree::Leaf(sealed))?;
        Ok(version)
    }

    /// Merges a plaintext tree: mappings merge key by key, values replace
    /// values, and a list replaces the list at its path whole (lists have no
    /// keys to merge by). Returns the number of values written.
    pub fn merge(&mut self, plain: &Tree<Plain>) -> Result<usize, VaultError> {
        let mut written = 0;
        self.merge_node(plain, &mut KeyPath::root(), &mut written)?;
        Ok(written)
    }

    fn merge_node(
        &mut self,
        node: &Tree<Plain>,
        at: &mut KeyPath,
        written: &mut usize,
    ) -> Result<(), VaultError> {
        match node {
            Tree::Leaf(value) => {
                self.set(at, value)?;
                *written += 1;
            }
            Tree::Map(map) => {
                match self.vault.secrets.get(at) {
                    Some(Tree::Map(_)) => {}
                    None => {
                        self.vault.secrets.place(at, Tree::empty_map())?;
                    }
                    Some(other) => {
                        return Err(self.kind_conflict(at, "mapping", other.kind_name()));
                    }
                }
                for (key, child) in map {
                    at.push(Segment::Key(key.clone()));
                    self.merge_node(child, at, written)?;
                    at.pop();
                }
            }
            Tree::List(items) => {
                match self.vault.secrets.get(at) {
                    Some(Tree::List(_)) | None => {}
                    Some(other) => return Err(self.kind_conflict(at, "list", other.kind_name())),
                }
                self.vault.secrets.place(at, Tree::List(Vec::new()))?;
                for (index, item) in items.iter().enumerate() {
                    at.push(Segment::Index(index));
                    self.merge_node(item, at, written)?;
                    at.pop();
                }
            }
        }
        Ok(())
    }

    fn kind_conflict(
        &self,
        at: &KeyPath,
        expected: &'static str,
        found: &'static str,
    ) -> VaultError {
        VaultError::Place(crate::vault::tree::PlaceError::KindMismatch {
            at: at.to_string(),
            path: at.to_string(),
            expected,
            found,
        })
    }

    /// Removes the value or subtree at `path`, then mappings left empty by it.
    pub fn remove(&mut self, path: &KeyPath) -> Result<usize, VaultError> {
        let removed = self
            .vault
            .secrets
            .remove(path)
            .ok_or_else(|| VaultError::NotFound {
                key: path.to_string(),
            })?;
        let mut parent = path.clone();
        parent.pop();
        while !parent.is_root()
            && matches!(self.vault.secrets.get(&parent), Some(Tree::Map(map)) if map.is_empty())
        {
            self.vault.secrets.remove(&parent);
            parent.pop();
        }
        Ok(removed.leaf_count())
    }

    /// Adds a slot for `credential`; returns its id.
    pub fn add_slot(&mut self, credential: &Credential, salt: &Salt) -> u32 {
        let id = self
            .vault
            .header
            .slots
            .iter()
            .map(|s| s.id)
            .max()
            .unwrap_or(0)
            + 1;
        let slot = slots::make_slot(
            id,
            credential,
            &self.data_key,
            salt,
            &self.vault.header.vault_id,
        );
        self.vault.header.slots.push(slot);
        id
    }

    /// Re-wraps passphrase slot `id` under a new passphrase (no value changes).
    pub fn change_passphrase(
        &mut self,
        id: u32,
        credential: &Credential,
        salt: &Salt,
    ) -> Result<(), VaultError> {
        let index = self.slot_index(id)?;
        let slot = &self.vault.header.slots[index];
        if !matches!(slot.kind, SlotKind::Passphrase(_)) {
            return Err(VaultError::NotPassphraseSlot {
                id,
                kind: slot.kind.name(),
            });
        }
        let created = slot.created.clone();
        let mut replacement: Slot = slots::make_slot(
            id,
            credential,
            &self.data_key,
            salt,
            &self.vault.header.vault_id,
        );
        replacement.created = created;
        self.vault.header.slots[index] = replacement;
        Ok(())
    }

    /// Removes slot `id`, refusing to remove the last one.
    pub fn remove_slot(&mut self, id: u32) -> Result<(), VaultError> {
        let index = self.slot_index(id)?;
        if self.vault.header.slots.len() == 1 {
            return Err(VaultError::LastSlot { id });
        }
        self.vault.header.slots.remove(index);
        Ok(())
    }

    fn slot_index(&self, id: u32) -> Result<usize, VaultError> {
        self.vault
            .header
            .slots
            .iter()
            .position(|s| s.id == id)
            .ok_or(VaultError::NoSuchSlot { id })
    }

    /// The vault to write: generation advanced by one and a fresh MAC.
    pub fn seal(&self) -> EncryptedVault {
        let mut vault = self.vault.clone();
        vault.header.generation += 1;
        vault.header.mac = compute_mac(&self.subkeys.mac, &vault.header, &vault.secrets);
        vault
    }

    fn value_aad(&self, path: &KeyPath, version: u32, time: u64) -> Vec<u8> {
        let mut aad = b"runvault/v1/value".to_vec();
        aad.extend_from_slice(&self.vault.header.vault_id);
        aad.extend_from_slice(&version.to_be_bytes());
        aad.extend_from_slice(&time.to_be_bytes());
        path.encode(&mut aad);
        aad
    }

    fn seal_value(&self, path: &KeyPath, value: &Plain, version: u32) -> Sealed {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let blob = crypto::seal(
            &self.subkeys.enc,
            &self.value_aad(path, version, time),
            value.to_tagged().expose(),
        );
        Sealed::new(version, time, &blob)
    }

    fn open_value(&self, path: &KeyPath, sealed: &Sealed) -> Result<Plain, VaultError> {
        let tampered = || VaultError::ValueTampered {
            key: path.to_string(),
            path: self.vault_path.clone(),
        };
        let parts = sealed.parts().ok_or_else(tampered)?;
        let tagged = crypto::open(
            &self.subkeys.enc,
            &self.value_aad(path, parts.version, parts.time),
            &parts.blob,
        )
        .ok_or_else(tampered)?;
        Plain::from_tagged(&tagged).ok_or_else(tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::secret::SecretBytes;
    use crate::vault::canonical;
    use crate::vault::crypto::KdfParams;
    use crate::vault::format::{Reader, raw_from_general};
    use crate::vault::value::ScalarKind;
    use proptest::prelude::*;

    fn passphrase() -> Credential {
        let cheap = KdfParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        };
        Credential::Passphrase(SecretBytes::new(b"pw".to_vec()), cheap)
    }

    fn text(value: &str) -> Plain {
        Plain {
            kind: ScalarKind::Str,
            bytes: SecretBytes::new(value.as_bytes().to_vec()),
        }
    }

    #[test]
    fn a_value_moved_to_another_path_fails_even_with_a_valid_mac() {
        let salt = Salt::generate();
        let path = Path::new("vault.yml");
        let mut vault = UnlockedVault::create(&[passphrase()], &salt, path);
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
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Both readers agree on every canonical file, the fast path takes it,
        /// and every value decrypts to what was stored.
        #[test]
        fn canonical_files_round_trip_through_both_readers(texts in text_tree()) {
            let tree = texts.try_map(&mut |_, s| Ok::<_, ()>(text(s))).unwrap();
            let salt = Salt::generate();
            let path = Path::new("vault.yml");
            let mut vault = UnlockedVault::create(&[passphrase()], &salt, path);
            vault.merge(&tree).unwrap();
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
