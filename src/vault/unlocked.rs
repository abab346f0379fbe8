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
use crate::core::secret::{Key32, constant_time_eq};
use crate::vault::audit::AuditChange;
use crate::vault::crypto::{KeyedMac, Subkeys, ValueCipher, random_bytes};
use crate::vault::error::VaultError;
use crate::vault::format::{EncryptedVault, Header, History, Sealed, SlotKind, compute_mac};
use crate::vault::keys::rotation::{self, RekeyPlan, RekeyReport};
use crate::vault::keys::seal::{
    open_audit_key, open_sealed, seal_at, seal_audit_key, value_hmac, value_hmac_bytes,
};
use crate::vault::keys::slots::{self, Credential};
use crate::vault::keys::versions::{keep_replaced, next_version, prune, retire_value};
use crate::vault::path::{KeyPath, Segment};
use crate::vault::salt::Salt;
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
            removed_leaves.push((target.join(relative), sealed.clone()));
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
                old_path.append(relative);
                let mut new_segments = old_path.clone();
                new_segments.truncate(depth);
                new_segments.push(Segment::Index(offset - 1));
                new_segments.append(relative);
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
        let keys = rotation::new_keys(
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
        let mut resealer = rotation::Resealer {
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
                path.append(relative);
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
    use crate::vault::format::DEFAULT_KEEP;
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
