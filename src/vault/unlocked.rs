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

use crate::core::progress::Progress;
use crate::core::secret::{Key32, SecretBytes, constant_time_eq};
use crate::vault::audit::AuditChange;
use crate::vault::crypto::{KdfOverride, KeyedMac, Subkeys, ValueCipher, random_bytes};
use crate::vault::error::VaultError;
use crate::vault::format::{
    DEFAULT_KEEP, EncryptedVault, Header, History, Sealed, SealedParts, SlotKind, compute_mac,
};
use crate::vault::path::{KeyPath, Segment};
use crate::vault::rekey;
use crate::vault::salt::Salt;
use crate::vault::slots::{self, Credential};
use crate::vault::tree::Tree;
use crate::vault::value::Plain;

/// A vault whose data key is known. No `Debug`: it holds keys.
pub struct UnlockedVault {
    vault: EncryptedVault,
    data_key: Key32,
    subkeys: Subkeys,
    unlocked_with: Option<(u32, Key32)>,
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
}

/// What `rekey` is asked to do.
pub struct RekeyPlan<'a> {
    /// Every secret the admin gave; each slot must be opened by one of them.
    pub credentials: &'a [Credential],
    /// A new salt (`--new-salt`): every kept slot is re-derived with it.
    pub new_salt: Option<&'a Salt>,
    /// New Argon2id parameters for the passphrase slots (unset ones stay
    /// as each slot has them).
    pub kdf: KdfOverride,
    /// Remove the slots no given secret opens instead of refusing.
    pub drop_others: bool,
    /// A new number of versions to keep.
    pub keep: Option<u32>,
    /// Which of `credentials` opened the vault (its slot's key is reused).
    pub unlocked_by: Option<usize>,
    /// Told of each value and stored version re-encrypted.
    pub progress: &'a dyn Progress,
}

/// What `rekey` did to the slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyReport {
    /// Slots re-wrapped under the new data key.
    pub kept: Vec<u32>,
    /// Slots removed because no given secret opened them.
    pub dropped: Vec<u32>,
    /// Values and stored versions re-encrypted.
    pub reencrypted: usize,
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
            relative
                .segments()
                .iter()
                .for_each(|s| full_path.push(s.clone()));
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

    /// Creates or replaces the value at `path`; the replaced value becomes a
    /// stored version. Returns the new version.
    pub fn set(&mut self, path: &KeyPath, value: &Plain) -> Result<u32, VaultError> {
        self.set_at(path, value, now())
    }

    /// [`UnlockedVault::set`] with the time the value is stamped with.
    pub fn set_at(&mut self, path: &KeyPath, value: &Plain, time: u64) -> Result<u32, VaultError> {
        if path.is_root() {
            return Err(VaultError::Usage("the path is empty".into()));
        }
        let previous = match self.vault.secrets.get(path) {
            Some(Tree::Leaf(sealed)) => Some(sealed.clone()),
            Some(node) => {
                return Err(VaultError::NotAValue {
                    key: path.to_string(),
                    kind: node.kind_name(),
                });
            }
            None => None,
        };
        let (version, key) = next_version(&self.vault.history, path, previous.as_ref());
        let sealed = self.seal_value(path, value, version, time);
        self.vault.secrets.place(path, Tree::Leaf(sealed))?;
        keep_replaced(
            &mut self.vault.history,
            self.vault.header.keep,
            key.as_deref(),
            previous,
        );
        Ok(version)
    }

    /// `set` only if the path's current version is `expected` (0: absent).
    pub fn set_if_version(
        &mut self,
        path: &KeyPath,
        value: &Plain,
        expected: u32,
    ) -> Result<u32, VaultError> {
        let current = self.current_version(path);
        if current != expected {
            return Err(VaultError::VersionConflict {
                key: path.to_string(),
                expected,
                current,
            });
        }
        self.set(path, value)
    }

    /// Drops the oldest stored versions of one path beyond `keep` (the
    /// current value, when there is one, counts towards it).
    fn prune(&mut self, key: &str) {
        let has_current = KeyPath::parse(key)
            .is_ok_and(|path| matches!(self.vault.secrets.get(&path), Some(Tree::Leaf(_))));
        prune(
            &mut self.vault.history,
            key,
            self.vault.header.keep,
            has_current,
        );
    }

    /// Destroys the stored versions of `path` and every path under it;
    /// returns how many paths had some.
    fn purge_history_under(&mut self, path: &KeyPath) -> usize {
        let before = self.vault.history.len();
        self.vault
            .history
            .retain(|key, _| !KeyPath::parse(key).is_ok_and(|stored| stored.starts_with(path)));
        before - self.vault.history.len()
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
                    });
                }
            }
            Some(node) => {
                return Err(VaultError::NotAValue {
                    key: path.to_string(),
                    kind: node.kind_name(),
                });
            }
            None if out.is_empty() => {
                return Err(VaultError::NotFound {
                    key: path.to_string(),
                });
            }
            None => {}
        }
        Ok(out)
    }

    /// Restores version `version` of `path` (default: the newest stored
    /// value older than the current one) as a new version; returns it.
    pub fn rollback(
        &mut self,
        path: &KeyPath,
        version: Option<u32>,
    ) -> Result<(u32, u32), VaultError> {
        let current = self.current_version(path);
        let versions = self.vault.history.get(&path.to_string());
        let candidate = versions.into_iter().flatten().rev().find(|sealed| {
            !sealed.is_tombstone()
                && sealed
                    .version_and_time()
                    .is_some_and(|(v, _)| match version {
                        Some(wanted) => v == wanted,
                        None => v != current,
                    })
        });
        let Some(sealed) = candidate.cloned() else {
            return Err(match version {
                Some(wanted) if wanted == current && current != 0 => VaultError::Usage(format!(
                    "version {wanted} of `{path}` is already the current value"
                )),
                Some(wanted) => VaultError::NoSuchVersion {
                    key: path.to_string(),
                    version: wanted,
                },
                None => VaultError::NoSuchVersion {
                    key: path.to_string(),
                    version: current.saturating_sub(1),
                },
            });
        };
        let restored_from = sealed.version_and_time().map_or(0, |(v, _)| v);
        let value = self.open_value(path, &sealed)?;
        let new_version = self.set(path, &value)?;
        Ok((restored_from, new_version))
    }

    /// Merges a plaintext tree: mappings merge key by key, values replace
    /// values, and a list replaces the list at its path whole (lists have no
    /// keys to merge by; the old items become stored versions followed by a
    /// removal marker, as with `rm`, and the list keeps its place). Returns
    /// the audit entry of every value written (`action`), in order, and
    /// tells `progress` of each. The plaintext is consumed: each value is
    /// freed (and wiped) once sealed.
    pub fn merge(
        &mut self,
        plain: Tree<Plain>,
        action: &'static str,
        progress: &dyn Progress,
    ) -> Result<Vec<AuditChange>, VaultError> {
        let Tree::Map(plain) = plain else {
            unreachable!("a plaintext tree's root is a mapping")
        };
        let count = plain.values().map(Tree::leaf_count).sum::<usize>();
        progress.begin(count as u64);
        let audit_key = KeyedMac::new(&self.audit_key()?);
        let UnlockedVault { vault, subkeys, .. } = self;
        let EncryptedVault {
            header,
            secrets,
            history,
        } = vault;
        let Tree::Map(target) = secrets else {
            unreachable!("the secrets root is a mapping")
        };
        let mut merger = Merger {
            enc: &subkeys.enc,
            vault_id: &header.vault_id,
            keep: header.keep,
            history,
            audit_key,
            action,
            time: now(),
            progress,
            changes: Vec::with_capacity(count),
        };
        merger.map(target, plain, &mut KeyPath::root())?;
        Ok(merger.changes)
    }

    /// Removes the value or subtree at `path`, and the mappings left empty
    /// by it. Each removed value becomes a stored version followed by a
    /// removal marker, so `rollback` can restore it; with `purge` every
    /// stored version of the removed paths is destroyed too. Returns the
    /// number of values removed.
    pub fn remove(&mut self, path: &KeyPath, purge: bool) -> Result<usize, VaultError> {
        if self.vault.secrets.get(path).is_none() {
            // An already removed path: `--purge` still destroys its versions.
            if purge && self.purge_history_under(path) > 0 {
                return Ok(0);
            }
            return Err(VaultError::NotFound {
                key: path.to_string(),
            });
        }
        // The mappings left empty go too: the removal starts at the highest,
        // so that one of them that is a list item shifts its list as any
        // removed item does.
        let target = self.removal_root(path);
        let node = self
            .vault
            .secrets
            .get(&target)
            .expect("an ancestor of a node");
        let mut removed_leaves = Vec::new();
        node.for_each_leaf(&mut |relative, sealed| {
            let mut full = target.clone();
            relative
                .segments()
                .iter()
                .for_each(|s| full.push(s.clone()));
            removed_leaves.push((full, sealed.clone()));
        });
        // Later items of a list shift down by one: their values are bound to
        // their index, so they are re-sealed under the new paths.
        let shifted = self.list_tail_after(&target)?;
        self.vault.secrets.remove(&target);
        let time = now();
        for (leaf_path, sealed) in &removed_leaves {
            let key = leaf_path.to_string();
            if purge {
                self.vault.history.shift_remove(&key);
                continue;
            }
            // A later list item may have shifted into this index already.
            let current = self.current_version(leaf_path);
            let keep = self.vault.header.keep;
            retire_value(&mut self.vault.history, keep, &key, sealed, current, time);
        }
        for leaf in shifted {
            let sealed = self.seal_value(&leaf.new_path, &leaf.value, leaf.version, leaf.time);
            self.vault
                .secrets
                .place(&leaf.new_path, Tree::Leaf(sealed))?;
        }
        Ok(removed_leaves.len())
    }

    /// What removing `path` removes: `path`, or its highest ancestor below
    /// the root that holds nothing else (a chain of one-entry mappings).
    fn removal_root(&self, path: &KeyPath) -> KeyPath {
        let mut target = path.clone();
        loop {
            let mut parent = target.clone();
            parent.pop();
            match self.vault.secrets.get(&parent) {
                Some(Tree::Map(map)) if !parent.is_root() && map.len() == 1 => target = parent,
                _ => return target,
            }
        }
    }

    /// For a path that is a list item, the decrypted leaves of the items
    /// after it, with their paths once the item is gone.
    fn list_tail_after(&self, path: &KeyPath) -> Result<Vec<ShiftedLeaf>, VaultError> {
        let Some(Segment::Index(index)) = path.segments().last() else {
            return Ok(Vec::new());
        };
        let mut parent = path.clone();
        parent.pop();
        let Some(Tree::List(items)) = self.vault.secrets.get(&parent) else {
            return Ok(Vec::new());
        };
        let depth = parent.segments().len();
        let mut out = Vec::new();
        for (offset, item) in items.iter().enumerate().skip(index + 1) {
            let mut failure = None;
            item.for_each_leaf(&mut |relative, sealed| {
                if failure.is_some() {
                    return;
                }
                let mut old_path = parent.child(Segment::Index(offset));
                relative
                    .segments()
                    .iter()
                    .for_each(|s| old_path.push(s.clone()));
                let mut new_segments = old_path.clone();
                new_segments.truncate(depth);
                new_segments.push(Segment::Index(offset - 1));
                relative
                    .segments()
                    .iter()
                    .for_each(|s| new_segments.push(s.clone()));
                let (version, time) = sealed.version_and_time().unwrap_or((1, 0));
                match self.open_value(&old_path, sealed) {
                    Ok(value) => out.push(ShiftedLeaf {
                        new_path: new_segments,
                        value,
                        version,
                        time,
                    }),
                    Err(err) => failure = Some(err),
                }
            });
            if let Some(err) = failure {
                return Err(err);
            }
        }
        Ok(out)
    }

    /// Adds a slot for `credential`; returns its id. Refused (before the
    /// KDF runs) if the file would be over the per-file slot bounds.
    pub fn add_slot(&mut self, credential: &Credential, salt: &Salt) -> Result<u32, VaultError> {
        let kind = match credential {
            Credential::Passphrase(_, params) => SlotKind::Passphrase(*params),
            Credential::KeyFile(_) => SlotKind::KeyFile,
        };
        let kinds = self.vault.header.slots.iter().map(|s| &s.kind);
        slots::check_file_budget(kinds.chain([&kind])).map_err(over_budget)?;
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
        Ok(id)
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
        if let Credential::Passphrase(_, params) = credential {
            let kind = SlotKind::Passphrase(*params);
            let kinds = (self.vault.header.slots.iter().enumerate())
                .map(|(i, s)| if i == index { &kind } else { &s.kind });
            slots::check_file_budget(kinds).map_err(over_budget)?;
        }
        let slot = &self.vault.header.slots[index];
        let created = slot.created.clone();
        let mut replacement = slots::make_slot(
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

    /// A copy of this vault under a new random data key: every value and
    /// stored version re-encrypted, every kept slot re-wrapped (re-derived
    /// with the new salt and parameters where asked). Each slot must be
    /// opened by one of the given secrets, or be dropped with `drop_others`:
    /// re-wrapping a slot needs its key-encryption key.
    pub fn rekey(
        &self,
        old_salt: &Salt,
        plan: &RekeyPlan<'_>,
    ) -> Result<(UnlockedVault, RekeyReport), VaultError> {
        let keys = rekey::new_keys(
            &self.vault.header,
            self.unlocked_with.as_ref().map(|(id, kek)| (*id, kek)),
            &self.subkeys.enc,
            &self.vault_path,
            old_salt,
            plan,
        )?;
        let stored: usize = (self.vault.history.values())
            .map(|versions| versions.iter().filter(|v| !v.is_tombstone()).count())
            .sum();
        plan.progress
            .begin((self.vault.secrets.leaf_count() + stored) as u64);
        let mut resealer = rekey::Resealer {
            old: &self.subkeys.enc,
            new: &keys.subkeys.enc,
            vault_id: &self.vault.header.vault_id,
            vault_path: &self.vault_path,
            progress: plan.progress,
            count: 0,
        };
        let secrets = self
            .vault
            .secrets
            .try_map(&mut |path, sealed| resealer.value(path, &sealed.0))?;
        let history = resealer.history(&self.vault.history)?;
        let reencrypted = resealer.count;
        let mut next = UnlockedVault {
            vault: EncryptedVault {
                header: keys.header,
                secrets,
                history,
            },
            data_key: keys.data_key,
            subkeys: keys.subkeys,
            unlocked_with: None,
            vault_path: self.vault_path.clone(),
        };
        if plan.keep.is_some() {
            next.prune_all();
        }
        Ok((
            next,
            RekeyReport {
                kept: keys.kept,
                dropped: keys.dropped,
                reencrypted,
            },
        ))
    }

    fn prune_all(&mut self) {
        let paths: Vec<String> = self.vault.history.keys().cloned().collect();
        for key in paths {
            self.prune(&key);
        }
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

/// Associated data of a value: binds it to the vault, its version, its
/// time and its path.
fn value_aad(vault_id: &[u8; 16], path: &KeyPath, version: u32, time: u64) -> Vec<u8> {
    const DOMAIN: &[u8] = b"runvault/v1/value";
    let mut aad = Vec::with_capacity(DOMAIN.len() + 16 + 4 + 8 + path.encoded_len());
    aad.extend_from_slice(DOMAIN);
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(&time.to_be_bytes());
    path.encode(&mut aad);
    aad
}

/// Seals `value` as version `version` of `path`, set at `time`, in the
/// vault `vault_id` under the value key `enc` (a fresh random nonce).
pub fn seal_at(
    enc: &ValueCipher,
    vault_id: &[u8; 16],
    path: &KeyPath,
    value: &Plain,
    version: u32,
    time: u64,
) -> Sealed {
    let blob = enc.seal_parts(
        &value_aad(vault_id, path, version, time),
        &value.tagged_parts(),
    );
    Sealed::new(version, time, &blob)
}

/// The highest version the path `key` ever had: the larger of its current
/// version `current` (0 without a value) and its newest stored one.
pub fn last_version(history: &History, key: &str, current: u32) -> u32 {
    let stored = history
        .get(key)
        .and_then(|versions| versions.last())
        .and_then(Sealed::version_and_time)
        .map_or(0, |(version, _)| version);
    stored.max(current)
}

/// Drops the oldest stored versions of the path `key` beyond `keep`, the
/// current value counting towards it when `has_current`; a path left with
/// no stored version leaves the history.
pub fn prune(history: &mut History, key: &str, keep: u32, has_current: bool) {
    let room = keep.max(1) as usize - usize::from(has_current);
    if let Some(versions) = history.get_mut(key) {
        let excess = versions.len().saturating_sub(room);
        versions.drain(..excess);
        if versions.is_empty() {
            history.shift_remove(key);
        }
    }
}

/// The version a new value at `path` gets, whose current value is
/// `previous`, and the path's text when the history is involved: a path
/// with no value before, in a vault with no history (an import into a new
/// vault), needs neither the text nor a look-up.
fn next_version(
    history: &History,
    path: &KeyPath,
    previous: Option<&Sealed>,
) -> (u32, Option<String>) {
    let current = previous
        .and_then(Sealed::version_and_time)
        .map_or(0, |(version, _)| version);
    let key = (previous.is_some() || !history.is_empty()).then(|| path.to_string());
    let version = key
        .as_deref()
        .map_or(current, |key| last_version(history, key, current))
        .saturating_add(1);
    (version, key)
}

/// Once a new value is in place at the path `key`: the value it replaced
/// becomes a stored version, and the path keeps at most `keep` versions,
/// the new one counting (a path set again after `rm` may already hold
/// `keep`).
fn keep_replaced(history: &mut History, keep: u32, key: Option<&str>, previous: Option<Sealed>) {
    let Some(key) = key else { return };
    if let Some(previous) = previous {
        history.entry(key.to_string()).or_default().push(previous);
    }
    prune(history, key, keep, true);
}

/// The value `sealed` at the path `key` is removed: it becomes a stored
/// version followed by a removal marker, one version after the newest the
/// path had (`current` is its version now: a list item may have shifted
/// into the index), and the path keeps at most `keep` versions.
fn retire_value(
    history: &mut History,
    keep: u32,
    key: &str,
    sealed: &Sealed,
    current: u32,
    time: u64,
) {
    let has_current = current > 0;
    history
        .entry(key.to_string())
        .or_default()
        .push(sealed.clone());
    prune(history, key, keep, has_current);
    let version = last_version(history, key, current).saturating_add(1);
    history
        .entry(key.to_string())
        .or_default()
        .push(Sealed::tombstone(version, time));
    prune(history, key, keep, has_current);
}

/// The audit HMAC of `value` at `path` under the audit key (see
/// [`UnlockedVault::audit_hmac`]), in hex.
pub fn value_hmac(audit_key: &KeyedMac, path: &KeyPath, value: &Plain) -> String {
    crate::vault::format::hex(&value_hmac_bytes(audit_key, path, value))
}

/// [`value_hmac`] as bytes (how audit entries keep it until written).
pub fn value_hmac_bytes(audit_key: &KeyedMac, path: &KeyPath, value: &Plain) -> [u8; 32] {
    let mut mac = audit_key.start();
    let mut encoded = Vec::new();
    path.encode(&mut encoded);
    mac.bytes(b"runvault/v1/audit-value");
    mac.bytes(&encoded);
    // The tagged plaintext as one length-prefixed field.
    let parts = value.tagged_parts();
    mac.u64(parts.iter().map(|part| part.len() as u64).sum());
    parts.iter().for_each(|part| mac.raw(part));
    mac.finish()
}

/// Opens the sealed audit key of the vault `header` under the value key
/// `enc`; a failure is reported as tampering in `vault_path`.
pub fn open_audit_key(
    enc: &ValueCipher,
    header: &Header,
    vault_path: &Path,
) -> Result<Key32, VaultError> {
    let corrupt = || VaultError::ValueTampered {
        key: "runvault.audit_key".into(),
        path: vault_path.to_path_buf(),
    };
    let parts = header.audit_key.parts().ok_or_else(corrupt)?;
    let bytes = enc
        .open(&audit_key_aad(&header.vault_id), &parts.blob)
        .ok_or_else(corrupt)?;
    let key: [u8; 32] = bytes.expose().try_into().map_err(|_| corrupt())?;
    Ok(Key32::from_bytes(key))
}

/// Decrypts the value sealed at `path` in the vault `vault_id` under the
/// value key `enc`; any mismatch (key, path, version, bytes) is reported as
/// tampering with the value at `path` in `vault_path`.
pub fn open_sealed(
    enc: &ValueCipher,
    vault_id: &[u8; 16],
    path: &KeyPath,
    sealed: &Sealed,
    vault_path: &Path,
) -> Result<Plain, VaultError> {
    open_sealed_text(enc, vault_id, path, &sealed.0, vault_path)
}

/// [`open_sealed`] on the text of a sealed value as the file has it.
pub fn open_sealed_text(
    enc: &ValueCipher,
    vault_id: &[u8; 16],
    path: &KeyPath,
    text: &str,
    vault_path: &Path,
) -> Result<Plain, VaultError> {
    open_sealed_versioned(enc, vault_id, path, text, vault_path).map(|(plain, _, _)| plain)
}

/// [`open_sealed_text`], with the value's version and time.
pub fn open_sealed_versioned(
    enc: &ValueCipher,
    vault_id: &[u8; 16],
    path: &KeyPath,
    text: &str,
    vault_path: &Path,
) -> Result<(Plain, u32, u64), VaultError> {
    let tampered = || VaultError::ValueTampered {
        key: path.to_string(),
        path: vault_path.to_path_buf(),
    };
    let parts = SealedParts::parse(text).ok_or_else(tampered)?;
    let aad = value_aad(vault_id, path, parts.version, parts.time);
    let tagged = enc.open_owned(&aad, parts.blob).ok_or_else(tampered)?;
    let plain = Plain::from_tagged(tagged).ok_or_else(tampered)?;
    Ok((plain, parts.version, parts.time))
}

/// A merge of plaintext into the secrets tree ([`UnlockedVault::merge`]):
/// walks both trees together, so each value costs one look-up in its
/// mapping, not a walk from the root.
struct Merger<'m> {
    enc: &'m ValueCipher,
    vault_id: &'m [u8; 16],
    keep: u32,
    history: &'m mut History,
    audit_key: KeyedMac,
    action: &'static str,
    /// When the values are set.
    time: u64,
    progress: &'m dyn Progress,
    changes: Vec<AuditChange>,
}

impl Merger<'_> {
    /// Merges the entries of `plain` into the mapping `target` at `at`,
    /// freeing each plaintext value once it is sealed.
    fn map(
        &mut self,
        target: &mut indexmap::IndexMap<String, Tree<Sealed>>,
        plain: indexmap::IndexMap<String, Tree<Plain>>,
        at: &mut KeyPath,
    ) -> Result<(), VaultError> {
        for (key, child) in plain {
            at.push(Segment::Key(key.clone()));
            match child {
                Tree::Leaf(value) => {
                    let previous = match target.get(&key) {
                        Some(Tree::Leaf(sealed)) => Some(sealed),
                        Some(node) => {
                            return Err(VaultError::NotAValue {
                                key: at.to_string(),
                                kind: node.kind_name(),
                            });
                        }
                        None => None,
                    };
                    let sealed = self.value(at, previous, &value);
                    // An existing key keeps its place.
                    target.insert(key, Tree::Leaf(sealed));
                }
                Tree::Map(entries) => match target.entry(key).or_insert_with(Tree::empty_map) {
                    Tree::Map(inner) => self.map(inner, entries, at)?,
                    other => return Err(kind_conflict(at, "mapping", other.kind_name())),
                },
                Tree::List(items) => {
                    match target.entry(key).or_insert_with(|| Tree::List(Vec::new())) {
                        Tree::List(old) => {
                            self.retire(at, old);
                            old.clear();
                            self.list(old, items, at)?;
                        }
                        other => return Err(kind_conflict(at, "list", other.kind_name())),
                    }
                }
            }
            at.pop();
        }
        Ok(())
    }

    /// Fills the empty list `target` at `at` with the items of `plain`.
    fn list(
        &mut self,
        target: &mut Vec<Tree<Sealed>>,
        plain: Vec<Tree<Plain>>,
        at: &mut KeyPath,
    ) -> Result<(), VaultError> {
        for (index, item) in plain.into_iter().enumerate() {
            at.push(Segment::Index(index));
            target.push(match item {
                Tree::Leaf(value) => Tree::Leaf(self.value(at, None, &value)),
                Tree::Map(entries) => {
                    let mut inner = indexmap::IndexMap::with_capacity(entries.len());
                    self.map(&mut inner, entries, at)?;
                    Tree::Map(inner)
                }
                Tree::List(items) => {
                    let mut inner = Vec::with_capacity(items.len());
                    self.list(&mut inner, items, at)?;
                    Tree::List(inner)
                }
            });
            at.pop();
        }
        Ok(())
    }

    /// The sealed new version of the value at `at` (whose current value
    /// is `previous`, which becomes a stored version), with its audit entry:
    /// [`UnlockedVault::set_at`] without the walk to the path.
    fn value(&mut self, at: &KeyPath, previous: Option<&Sealed>, value: &Plain) -> Sealed {
        let (version, key) = next_version(self.history, at, previous);
        let sealed = seal_at(self.enc, self.vault_id, at, value, version, self.time);
        keep_replaced(self.history, self.keep, key.as_deref(), previous.cloned());
        self.changes.push(AuditChange {
            path: key.unwrap_or_else(|| at.to_string()),
            version: Some(version),
            hmac: Some(value_hmac_bytes(&self.audit_key, at, value)),
            action: self.action,
        });
        self.progress.advance();
        sealed
    }

    /// Moves every value of the list `old` at `at` to the history, each
    /// followed by a removal marker, as [`UnlockedVault::remove`] does.
    fn retire(&mut self, at: &KeyPath, old: &[Tree<Sealed>]) {
        for (index, item) in old.iter().enumerate() {
            item.for_each_leaf(&mut |relative, sealed| {
                let mut path = at.clone();
                path.push(Segment::Index(index));
                relative
                    .segments()
                    .iter()
                    .for_each(|segment| path.push(segment.clone()));
                let key = path.to_string();
                retire_value(self.history, self.keep, &key, sealed, 0, self.time);
            });
        }
    }
}

/// A list item's value that moves down one index when an earlier item is
/// removed, decrypted so it can be sealed under its new path.
struct ShiftedLeaf {
    new_path: KeyPath,
    value: Plain,
    version: u32,
    time: u64,
}

fn audit_key_aad(vault_id: &[u8; 16]) -> Vec<u8> {
    let mut aad = b"runvault/v1/audit-key".to_vec();
    aad.extend_from_slice(vault_id);
    aad
}

pub(crate) fn seal_audit_key(subkeys: &Subkeys, vault_id: &[u8; 16], audit_key: &Key32) -> Sealed {
    let bytes = SecretBytes::new(audit_key.expose().to_vec());
    Sealed::new(
        0,
        0,
        &subkeys.enc.seal(&audit_key_aad(vault_id), bytes.expose()),
    )
}

fn kind_conflict(at: &KeyPath, expected: &'static str, found: &'static str) -> VaultError {
    VaultError::Place(crate::vault::tree::PlaceError::KindMismatch {
        at: at.to_string(),
        path: at.to_string(),
        expected,
        found,
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The default number of versions kept, for callers that create vaults.
pub const fn default_keep() -> u32 {
    DEFAULT_KEEP
}

/// The usage error for a change that would put the file over the per-file
/// slot bounds ([`slots::check_file_budget`]).
#[allow(clippy::needless_pass_by_value)] // used as `.map_err(over_budget)`
fn over_budget(reason: String) -> VaultError {
    VaultError::Usage(format!(
        "refusing a change that would leave the vault with {reason}; remove a key slot \
         (`runvault key remove`) or use the default Argon2id parameters"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::progress::NoProgress;
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
