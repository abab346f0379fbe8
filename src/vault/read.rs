//! Read-only access for commands that need a few values, not the whole
//! vault (`get`, `exec`, `render`): the vault is opened once (one KDF run),
//! the whole file is authenticated, and only the requested values are
//! decrypted, each once. Nothing is locked and nothing is written, so it
//! works on a read-only `/secrets` mount.

use std::collections::HashMap;

use crate::vault::error::VaultError;
use crate::vault::path::KeyPath;
use crate::vault::slots::Credential;
use crate::vault::store::VaultDir;
use crate::vault::tree::Tree;
use crate::vault::value::Plain;

/// What the caller wants: single values and whole subtrees.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Paths of single values.
    pub values: Vec<KeyPath>,
    /// Prefixes whose every value is wanted (a prefix may be a value itself).
    pub subtrees: Vec<KeyPath>,
}

/// What a wanted path turned out to be. No `Debug`: it holds plaintext.
pub enum Lookup {
    /// A value, decrypted.
    Value(Plain),
    /// Nothing at this path.
    Missing,
    /// A mapping or list, not a value (its kind name).
    Container(&'static str),
}

/// The decrypted selection. No `Debug`: it holds plaintext.
#[derive(Default)]
pub struct Selected {
    /// One entry per distinct wanted value path.
    pub values: HashMap<KeyPath, Lookup>,
    /// One entry per distinct wanted prefix: its values with their full
    /// paths in file order, or `None` if nothing is at the prefix.
    pub subtrees: HashMap<KeyPath, Option<Vec<(KeyPath, Plain)>>>,
}

impl Selected {
    /// The lookup for a wanted value path (`Missing` if it was not wanted).
    pub fn value(&self, path: &KeyPath) -> &Lookup {
        self.values.get(path).unwrap_or(&Lookup::Missing)
    }
}

/// Opens the vault in `dir` once and decrypts what `wanted` names.
pub fn read_selected(
    dir: &VaultDir,
    credential: &Credential,
    wanted: &Wanted,
) -> Result<Selected, VaultError> {
    let (vault, _) = dir.open(credential)?;
    let mut selected = Selected::default();
    for path in &wanted.values {
        if selected.values.contains_key(path) {
            continue;
        }
        let lookup = match vault.get(path) {
            Ok(plain) => Lookup::Value(plain),
            Err(VaultError::NotFound { .. }) => Lookup::Missing,
            Err(VaultError::NotAValue { kind, .. }) => Lookup::Container(kind),
            Err(other) => return Err(other),
        };
        selected.values.insert(path.clone(), lookup);
    }
    for prefix in &wanted.subtrees {
        if selected.subtrees.contains_key(prefix) {
            continue;
        }
        let leaves = match vault.decrypt_under(prefix) {
            Ok(tree) => Some(leaves_under(tree, prefix)),
            Err(VaultError::NotFound { .. }) => None,
            Err(other) => return Err(other),
        };
        selected.subtrees.insert(prefix.clone(), leaves);
    }
    Ok(selected)
}

fn leaves_under(tree: Tree<Plain>, prefix: &KeyPath) -> Vec<(KeyPath, Plain)> {
    let mut leaves = Vec::new();
    tree.for_each_leaf(&mut |path, plain| {
        if path.starts_with(prefix) {
            leaves.push((path.clone(), plain.clone()));
        }
    });
    leaves
}
