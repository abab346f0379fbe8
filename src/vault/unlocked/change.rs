//! Changes to the values of an opened vault: `set`, `rollback`, `merge`
//! (`import`, `init` adopting a plaintext file) and `rm`, each applying the
//! version policy of [`crate::vault::keys::versions`] to the history.

use crate::core::progress::Progress;
use crate::vault::audit::AuditChange;
use crate::vault::crypto::{KeyedMac, ValueCipher};
use crate::vault::error::VaultError;
use crate::vault::format::{EncryptedVault, History, Sealed};
use crate::vault::keys::seal::{seal_at, value_hmac_bytes};
use crate::vault::keys::versions::{keep_replaced, next_version, prune, retire_value};
use crate::vault::path::{KeyPath, Segment};
use crate::vault::tree::Tree;
use crate::vault::unlocked::{UnlockedVault, now};
use crate::vault::value::Plain;

impl UnlockedVault {
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
                    dir: self.dir(),
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
    pub(super) fn prune(&mut self, key: &str) {
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
                    dir: self.dir(),
                },
                None => VaultError::NoSuchVersion {
                    key: path.to_string(),
                    version: current.saturating_sub(1),
                    dir: self.dir(),
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
        let dir = self.dir();
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
            dir,
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
    /// The vault directory, for the hints of errors.
    dir: std::path::PathBuf,
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
                                dir: self.dir.clone(),
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
