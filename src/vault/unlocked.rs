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

    /// Merges a plaintext tree: every leaf is set, empty containers are
    /// created where absent. Returns the number of values written.
    pub fn merge(&mut self, plain: &Tree<Plain>) -> Result<usize, VaultError> {
        let mut written = 0;
        let mut result = Ok(());
        plain.for_each_leaf(&mut |path, value| {
            if result.is_ok() {
                result = self.set(path, value).map(|_| written += 1);
            }
        });
        result?;
        self.merge_empty_containers(plain, &mut KeyPath::root())?;
        Ok(written)
    }

    fn merge_empty_containers(
        &mut self,
        node: &Tree<Plain>,
        at: &mut KeyPath,
    ) -> Result<(), VaultError> {
        let children: Vec<(Segment, &Tree<Plain>)> = match node {
            Tree::Map(map) if map.is_empty() && !at.is_root() => {
                return self.place_if_absent(at, Tree::empty_map());
            }
            Tree::List(list) if list.is_empty() => {
                return self.place_if_absent(at, Tree::List(Vec::new()));
            }
            Tree::Map(map) => map
                .iter()
                .map(|(k, v)| (Segment::Key(k.clone()), v))
                .collect(),
            Tree::List(list) => list
                .iter()
                .enumerate()
                .map(|(i, v)| (Segment::Index(i), v))
                .collect(),
            Tree::Leaf(_) => return Ok(()),
        };
        for (segment, child) in children {
            at.push(segment);
            self.merge_empty_containers(child, at)?;
            at.pop();
        }
        Ok(())
    }

    fn place_if_absent(&mut self, at: &KeyPath, node: Tree<Sealed>) -> Result<(), VaultError> {
        if self.vault.secrets.get(at).is_none() {
            self.vault.secrets.place(at, node)?;
        }
        Ok(())
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
