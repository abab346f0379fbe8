//! Read-only access for commands that need a few values, not the whole
//! vault (`get`, `exec`, `render`): the vault is opened once (one KDF run),
//! the whole file is authenticated, and only the requested values are
//! decrypted, each once. Nothing is locked and nothing is written, so it
//! works on a read-only `/secrets` mount.

use crate::vault::dir::ReadOnlyDir;
use crate::vault::error::VaultError;
use crate::vault::format::Header;
use crate::vault::keys::slots::{Credential, Opened};
use crate::vault::path::KeyPath;
use crate::vault::stream::select::{self, Outcome};
use crate::vault::value::Plain;

pub use crate::vault::stream::select::{Lookup, Selected, Wanted};

/// Opens the vault in `dir` once and decrypts what `wanted` names: with
/// the streaming reader (`stream::select`) when the file is in the canonical
/// layout runvault writes, else (or when the streaming reader
/// does not vouch for the file) with the tree reader, reusing the slot the
/// streaming reader opened so the KDF runs once.
pub fn read_selected(
    dir: &ReadOnlyDir,
    credential: &Credential,
    wanted: &Wanted,
) -> Result<Selected, VaultError> {
    match select::read(dir, credential, wanted)? {
        Outcome::Read(selected) => {
            tracing::debug!("read with the fast streaming reader");
            Ok(selected)
        }
        Outcome::Fallback(opened) => {
            tracing::debug!("the streaming reader fell back to the general reader");
            read_selected_tree(dir, credential, wanted, opened)
        }
    }
}

/// [`read_selected`] with the tree reader only (the reference the
/// streaming reader is tested against). `opened` is a slot already opened
/// for a header; it is used if the file still has that header.
pub fn read_selected_tree(
    dir: &ReadOnlyDir,
    credential: &Credential,
    wanted: &Wanted,
    opened: Option<(Header, Opened)>,
) -> Result<Selected, VaultError> {
    let (vault, _) = dir.open_reusing(credential, opened)?;
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
        let leaves = match vault.secrets().get(prefix) {
            None => None,
            Some(subtree) => Some(
                subtree
                    .leaf_paths()
                    .into_iter()
                    .map(|relative| {
                        let path = prefix.join(&relative);
                        vault.get(&path).map(|plain| (path, plain))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        selected.subtrees.insert(prefix.clone(), leaves);
    }
    Ok(selected)
}

/// The value at `path` (`get`), with the errors [`UnlockedVault::get`]
/// gives: not found (exit 3), or a mapping or list (exit 2).
///
/// [`UnlockedVault::get`]: crate::vault::UnlockedVault::get
pub fn read_one(
    dir: &ReadOnlyDir,
    credential: &Credential,
    path: &KeyPath,
) -> Result<Plain, VaultError> {
    let wanted = Wanted {
        values: vec![path.clone()],
        subtrees: Vec::new(),
    };
    match read_selected(dir, credential, &wanted)?.values.remove(path) {
        Some(Lookup::Value(plain)) => Ok(plain),
        Some(Lookup::Container(kind)) => Err(VaultError::NotAValue {
            key: path.to_string(),
            kind,
            dir: dir.dir().to_path_buf(),
        }),
        Some(Lookup::Missing) | None => Err(VaultError::NotFound {
            key: path.to_string(),
        }),
    }
}
