//! `export`: the decrypted values of a vault, or of the part under one
//! prefix, in the formats admins and jobs read: YAML in the hand-made
//! vault's shape, JSON, or an env file.
//!
//! One walker (`Exporter`) takes a tree's nodes in order, keeps those at,
//! under or on the way to the prefix, decrypts only the values under it,
//! and hands them to the format's renderer. Two sources feed it:
//!
//! - [`export`]: a streaming pass over a canonical file. The first pass
//!   checks the file MAC (the streaming reader of `get`), the second walks
//!   the same lines again and decrypts each value as it comes, so an
//!   export of a large vault never builds its tree. A file the streaming
//!   reader does not vouch for goes to the tree, with the slot it opened.
//! - [`render_vault`]: an opened vault's tree (plaintext views, and the
//!   fallback above); [`render_tree_yaml`] a decrypted tree.
//!
//! The output is built in a buffer that is wiped when dropped and that
//! never reallocates behind the renderer's back (each write reserves room
//! first, growing by a wiped copy), so no copy of the plaintext is left in
//! freed memory. Nothing is returned unless every value under the prefix
//! decrypted and could be rendered: the first value that does not decrypt
//! is the error, else the first that the format cannot hold.
//!
//! A prefix through a list (`HOSTS[1].NAME`) exports that item as the only
//! item of its list: the order of items is kept, their index is not.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use crate::core::secret::SecretBytes;
use crate::vault::canonical::quote_json_string;
use crate::vault::canonical::{self, StreamVisitor};
use crate::vault::crypto::{Subkeys, ValueCipher};
use crate::vault::dir::ReadOnlyDir;
use crate::vault::error::VaultError;
use crate::vault::keys::seal::open_sealed_text;
use crate::vault::keys::slots::Credential;
use crate::vault::path::{KeyPath, Segment};
use crate::vault::stream::select::verify_body;
use crate::vault::stream::{open_then, walk_secrets};
use crate::vault::tree::Tree;
use crate::vault::unlocked::UnlockedVault;
use crate::vault::value::{Plain, ScalarKind};

/// The formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Nested block YAML, strings double-quoted, typed scalars.
    Yaml,
    /// Nested JSON on one line.
    Json,
    /// `NAME='value'` lines (see [`KeyPath::env_name`]).
    Env,
}

/// Decrypts what is at or under `prefix` in the vault in `dir` (one KDF
/// run) and renders it in `format`; see the module doc. No lock, no write.
pub fn export(
    dir: &ReadOnlyDir,
    credential: &Credential,
    prefix: &KeyPath,
    format: Format,
) -> Result<SecretBytes, VaultError> {
    let vault_path = dir.vault_path();
    let streamed = open_then(dir, credential, |lines, header, opened| {
        let subkeys = Subkeys::derive(&opened.data_key);
        // Pass 1: the whole file is authenticated before anything is
        // decrypted.
        if verify_body(lines.clone(), header, &subkeys).is_none() {
            return Ok(None);
        }
        // Pass 2: the same lines, each value decrypted as it comes.
        let capacity = lines.len() / 2 + 4096;
        let mut visitor = StreamedValues {
            exporter: Exporter::new(prefix, format, capacity),
            cipher: &subkeys.enc,
            vault_id: &header.vault_id,
            vault_path: &vault_path,
            failure: None,
        };
        let mut lines = lines;
        if !walk_secrets(&mut lines, &mut visitor, |v| v.failure.take())? {
            return Ok(None);
        }
        visitor.exporter.finish().map(Some)
    })?;
    match streamed {
        Ok(rendered) => {
            tracing::debug!("exported with the streaming reader");
            Ok(rendered)
        }
        Err(opened) => {
            tracing::debug!("the streaming reader fell back to the general reader");
            let (vault, _) = dir.open_reusing(credential, opened)?;
            render_vault(&vault, prefix, format)
        }
    }
}

/// Renders what is at or under `prefix` in an opened vault.
pub fn render_vault(
    vault: &UnlockedVault,
    prefix: &KeyPath,
    format: Format,
) -> Result<SecretBytes, VaultError> {
    let mut exporter = Exporter::new(prefix, format, vault.secrets().leaf_count() * 64 + 64);
    walk(vault.secrets(), &mut exporter, &mut |path, sealed| {
        vault.open_value(path, sealed).map(Cow::Owned)
    })?;
    exporter.finish()
}

/// The plaintext YAML of a decrypted tree, in the shape of the hand-made
/// vault: nested block mappings, typed scalars, strings double-quoted.
pub fn render_tree_yaml(tree: &Tree<Plain>) -> SecretBytes {
    let root = KeyPath::root();
    let mut exporter = Exporter::new(&root, Format::Yaml, tree.leaf_count() * 64 + 64);
    walk(tree, &mut exporter, &mut |_, plain| {
        Ok(Cow::Borrowed(plain))
    })
    .and_then(|()| exporter.finish())
    .expect("YAML holds every value, and plain values need no decryption")
}

/// How a tree walk gets the value of a leaf at a path.
type OpenLeaf<'o, 'l, L> = dyn FnMut(&KeyPath, &'l L) -> Result<Cow<'l, Plain>, VaultError> + 'o;

/// Feeds a tree to `exporter`, with `open` giving each leaf's value.
fn walk<'l, L>(
    tree: &'l Tree<L>,
    exporter: &mut Exporter<'_>,
    open: &mut OpenLeaf<'_, 'l, L>,
) -> Result<(), VaultError> {
    match tree {
        Tree::Leaf(leaf) => exporter.leaf(|path| open(path, leaf)),
        Tree::Map(map) if map.is_empty() => {
            exporter.empty_map();
            Ok(())
        }
        Tree::List(list) if list.is_empty() => {
            exporter.empty_list();
            Ok(())
        }
        Tree::Map(map) => {
            exporter.begin_map();
            for (key, child) in map {
                if exporter.enter_key(key) {
                    walk(child, exporter, open)?;
                }
                exporter.leave();
            }
            exporter.end_map();
            Ok(())
        }
        Tree::List(list) => {
            exporter.begin_list();
            for (index, child) in list.iter().enumerate() {
                if exporter.enter_item(index) {
                    walk(child, exporter, open)?;
                }
                exporter.leave();
            }
            exporter.end_list();
            Ok(())
        }
    }
}

/// The second streaming pass: the canonical reader's walk of `secrets:`,
/// each sealed value opened under the path the walk is at.
struct StreamedValues<'e, 'k> {
    exporter: Exporter<'e>,
    cipher: &'k ValueCipher,
    vault_id: &'k [u8; 16],
    vault_path: &'k Path,
    /// A value that did not decrypt: the walk stops with it.
    failure: Option<VaultError>,
}

impl<'t> StreamVisitor<'t> for StreamedValues<'_, '_> {
    const SEALED_ONLY: bool = true;

    fn begin_map(&mut self) -> Result<(), &'static str> {
        self.exporter.begin_map();
        Ok(())
    }

    fn begin_list(&mut self) -> Result<(), &'static str> {
        self.exporter.begin_list();
        Ok(())
    }

    fn enter_key(&mut self, key: &Cow<'t, str>) -> Result<(), &'static str> {
        self.exporter.enter_key(key);
        Ok(())
    }

    fn enter_item(&mut self, index: usize) -> Result<(), &'static str> {
        self.exporter.enter_item(index);
        Ok(())
    }

    fn leave(&mut self) {
        self.exporter.leave();
    }

    fn scalar(&mut self, text: Cow<'t, str>) -> Result<(), &'static str> {
        let (cipher, vault_id, vault_path) = (self.cipher, self.vault_id, self.vault_path);
        let opened = self.exporter.leaf(|path| {
            open_sealed_text(cipher, vault_id, path, &text, vault_path).map(Cow::Owned)
        });
        opened.map_err(|err| {
            self.failure = Some(err);
            "a value that does not decrypt"
        })
    }

    fn empty_map(&mut self) -> Result<(), &'static str> {
        self.exporter.empty_map();
        Ok(())
    }

    fn empty_list(&mut self) -> Result<(), &'static str> {
        self.exporter.empty_list();
        Ok(())
    }

    fn end_map(&mut self) {
        self.exporter.end_map();
    }

    fn end_list(&mut self) {
        self.exporter.end_list();
    }
}

/// The walker: follows a tree's nodes in order (every `enter_*` matched by
/// a `leave`), keeps the part at, under or on the way to the prefix, and
/// renders it.
struct Exporter<'p> {
    prefix: &'p KeyPath,
    /// The path of the node the walk is at (while not skipping).
    path: KeyPath,
    /// The key string a `leave` popped last, reused by the next key.
    spare: String,
    /// How many levels deep the walk is in a subtree off the prefix's way.
    skipping: usize,
    /// Whether a node stood at the prefix.
    found: bool,
    out: Output,
    /// For JSON: whether each open container has had an entry yet.
    first: Vec<bool>,
    /// For env: every name given so far, with its path.
    env_names: HashMap<String, String>,
    /// The first value the format cannot hold; reported once every value
    /// was decrypted (a value that does not decrypt comes first).
    unrepresentable: Option<VaultError>,
}

impl<'p> Exporter<'p> {
    fn new(prefix: &'p KeyPath, format: Format, capacity: usize) -> Exporter<'p> {
        Exporter {
            prefix,
            path: KeyPath::root(),
            spare: String::new(),
            skipping: 0,
            found: prefix.is_root(),
            out: Output::new(format, capacity),
            first: Vec::new(),
            env_names: HashMap::new(),
            unrepresentable: None,
        }
    }

    fn depth(&self) -> usize {
        self.path.segments().len()
    }

    /// Whether the child `segment` of the current node is at, under or on
    /// the way to the prefix.
    fn wants(&self, segment: &dyn Fn(&Segment) -> bool) -> bool {
        self.prefix.segments().get(self.depth()).is_none_or(segment)
    }

    /// The node at the current path is a container or a value.
    fn node_here(&mut self) {
        if self.depth() == self.prefix.segments().len() {
            self.found = true;
        }
    }

    /// Enters the entry `key` of the current mapping; `false` if it is off
    /// the prefix's way (its content is then skipped until `leave`).
    fn enter_key(&mut self, key: &str) -> bool {
        if self.skipping > 0 || !self.wants(&|s| matches!(s, Segment::Key(k) if k == key)) {
            self.skipping += 1;
            return false;
        }
        let depth = self.depth();
        match self.out.format {
            Format::Yaml => {
                self.out.reserve(2 * depth + 6 * key.len() + 4);
                canonical::emit_entry_key(depth, key, &mut self.out.bytes);
            }
            Format::Json => {
                self.out.reserve(6 * key.len() + 4);
                self.json_separator();
                quote_json_string(key, &mut self.out.bytes);
                self.out.bytes.push(b':');
            }
            Format::Env => {}
        }
        let mut buffer = std::mem::take(&mut self.spare);
        buffer.clear();
        buffer.push_str(key);
        self.path.push(Segment::Key(buffer));
        true
    }

    /// Enters item `index` of the current list; `false` if it is off the
    /// prefix's way.
    fn enter_item(&mut self, index: usize) -> bool {
        if self.skipping > 0 || !self.wants(&|s| *s == Segment::Index(index)) {
            self.skipping += 1;
            return false;
        }
        let depth = self.depth();
        match self.out.format {
            Format::Yaml => {
                self.out.reserve(2 * depth + 2);
                canonical::emit_entry_item(depth, &mut self.out.bytes);
            }
            Format::Json => {
                self.out.reserve(2);
                self.json_separator();
            }
            Format::Env => {}
        }
        self.path.push(Segment::Index(index));
        true
    }

    fn leave(&mut self) {
        if self.skipping > 0 {
            self.skipping -= 1;
            return;
        }
        if let Some(Segment::Key(key)) = self.path.pop() {
            self.spare = key;
        }
    }

    fn json_separator(&mut self) {
        if let Some(first) = self.first.last_mut()
            && !std::mem::replace(first, false)
        {
            self.out.bytes.push(b',');
        }
    }

    fn begin_map(&mut self) {
        self.open_container(b'{');
    }

    fn begin_list(&mut self) {
        self.open_container(b'[');
    }

    fn open_container(&mut self, bracket: u8) {
        if self.skipping > 0 {
            return;
        }
        self.node_here();
        self.out.reserve(2);
        match self.out.format {
            Format::Yaml => canonical::emit_open(self.depth(), &mut self.out.bytes),
            Format::Json => {
                self.out.bytes.push(bracket);
                self.first.push(true);
            }
            Format::Env => {}
        }
    }

    fn end_map(&mut self) {
        self.close_container(b'}');
    }

    fn end_list(&mut self) {
        self.close_container(b']');
    }

    fn close_container(&mut self, bracket: u8) {
        if self.skipping > 0 {
            return;
        }
        if self.out.format == Format::Json {
            self.out.reserve(1);
            self.out.bytes.push(bracket);
            self.first.pop();
        }
    }

    fn empty_map(&mut self) {
        self.empty(b"{}");
    }

    fn empty_list(&mut self) {
        self.empty(b"[]");
    }

    fn empty(&mut self, text: &[u8]) {
        if self.skipping > 0 {
            return;
        }
        self.node_here();
        self.out.reserve(4);
        match self.out.format {
            Format::Yaml => canonical::emit_empty(self.depth(), text, &mut self.out.bytes),
            Format::Json => self.out.bytes.extend_from_slice(text),
            Format::Env => {}
        }
    }

    /// A value at the current path; `open` decrypts it, and is called only
    /// for a value at or under the prefix.
    fn leaf<'v>(
        &mut self,
        open: impl FnOnce(&KeyPath) -> Result<Cow<'v, Plain>, VaultError>,
    ) -> Result<(), VaultError> {
        if self.skipping > 0 {
            return Ok(());
        }
        self.node_here();
        if self.depth() < self.prefix.segments().len() {
            // The prefix goes on below a value: it is not in the vault.
            return Ok(());
        }
        let plain = open(&self.path)?;
        if self.unrepresentable.is_none() {
            self.render_value(&plain);
        }
        Ok(())
    }

    fn render_value(&mut self, plain: &Plain) {
        // Room for the worst case (a `\uXXXX` escape for every byte), so
        // the buffer does not reallocate while it holds the value.
        let len = plain.bytes.len();
        match self.out.format {
            Format::Yaml => {
                self.out.reserve(6 * len + 16);
                self.out.bytes.push(b' ');
                plain.render_yaml(&mut self.out.bytes);
                self.out.bytes.push(b'\n');
            }
            Format::Json => {
                self.out.reserve(6 * len + 16);
                if plain.render_json(&mut self.out.bytes).is_none() {
                    self.unrepresentable = Some(VaultError::Unrepresentable(format!(
                        "value at `{}` is not UTF-8 text, which JSON cannot hold; use --format yaml (it writes !binary)",
                        self.path
                    )));
                }
            }
            Format::Env => self.render_env(plain),
        }
    }

    fn render_env(&mut self, plain: &Plain) {
        let name = self.path.env_name();
        if let Some(previous) = self.env_names.insert(name.clone(), self.path.to_string()) {
            self.unrepresentable = Some(VaultError::Unrepresentable(format!(
                "`{previous}` and `{}` both become the variable `{name}`; export them separately with a prefix",
                self.path
            )));
            return;
        }
        if plain.kind == ScalarKind::Bytes {
            self.unrepresentable = Some(VaultError::Unrepresentable(format!(
                "value at `{}` is not UTF-8 text, which an env file cannot hold; use --format yaml",
                self.path
            )));
            return;
        }
        let value = plain.bytes.expose();
        self.out.reserve(name.len() + 4 * value.len() + 4);
        let out = &mut self.out.bytes;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"='");
        for &byte in value {
            if byte == b'\'' {
                out.extend_from_slice(b"'\\''");
            } else {
                out.push(byte);
            }
        }
        out.extend_from_slice(b"'\n");
    }

    /// The rendered bytes, or why there are none.
    fn finish(mut self) -> Result<SecretBytes, VaultError> {
        if !self.found {
            return Err(VaultError::NotFound {
                key: self.prefix.to_string(),
            });
        }
        if let Some(err) = self.unrepresentable {
            return Err(err);
        }
        if self.out.format == Format::Json {
            self.out.reserve(1);
            self.out.bytes.push(b'\n');
        }
        Ok(SecretBytes::new(std::mem::take(&mut self.out.bytes)))
    }
}

/// The output buffer: grows only through [`Output::reserve`], which moves
/// the bytes to a larger buffer and wipes the old one, and is wiped when
/// dropped.
struct Output {
    format: Format,
    bytes: Vec<u8>,
}

impl Output {
    fn new(format: Format, capacity: usize) -> Output {
        Output {
            format,
            bytes: Vec::with_capacity(capacity),
        }
    }

    /// Makes room for `additional` more bytes without a reallocation that
    /// would leave the old bytes behind.
    fn reserve(&mut self, additional: usize) {
        if self.bytes.capacity() - self.bytes.len() >= additional {
            return;
        }
        let capacity = (2 * self.bytes.capacity()).max(self.bytes.len() + additional);
        let mut larger = Vec::with_capacity(capacity);
        larger.extend_from_slice(&self.bytes);
        let old = std::mem::replace(&mut self.bytes, larger);
        drop(SecretBytes::new(old));
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        drop(SecretBytes::new(std::mem::take(&mut self.bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Plain {
        Plain::text(value.as_bytes().to_vec())
    }

    fn sample() -> Tree<Plain> {
        let mut tree = Tree::empty_map();
        for (path, value) in [
            ("A.B", "1"),
            ("A.C", "it's"),
            ("L[0].X", "x0"),
            ("L[1].X", "x1"),
            ("Z", "z"),
        ] {
            tree.place(&KeyPath::parse(path).unwrap(), Tree::Leaf(text(value)))
                .unwrap();
        }
        tree.place(&KeyPath::parse("E").unwrap(), Tree::empty_map())
            .unwrap();
        tree
    }

    fn render(prefix: &str, format: Format) -> Result<String, String> {
        let prefix = if prefix.is_empty() {
            KeyPath::root()
        } else {
            KeyPath::parse(prefix).unwrap()
        };
        let tree = sample();
        let mut exporter = Exporter::new(&prefix, format, 0);
        walk(&tree, &mut exporter, &mut |_, plain| {
            Ok(Cow::Borrowed(plain))
        })
        .and_then(|()| exporter.finish())
        .map(|bytes| String::from_utf8(bytes.expose().to_vec()).unwrap())
        .map_err(|err| err.to_string())
    }

    #[test]
    fn every_format_renders_the_whole_tree() {
        assert_eq!(
            render("", Format::Yaml).unwrap(),
            "A:\n  B: \"1\"\n  C: \"it's\"\nL:\n  -\n    X: \"x0\"\n  -\n    X: \"x1\"\nZ: \"z\"\nE: {}\n"
        );
        assert_eq!(
            render("", Format::Json).unwrap(),
            "{\"A\":{\"B\":\"1\",\"C\":\"it's\"},\"L\":[{\"X\":\"x0\"},{\"X\":\"x1\"}],\"Z\":\"z\",\"E\":{}}\n"
        );
        assert_eq!(
            render("", Format::Env).unwrap(),
            "A_B='1'\nA_C='it'\\''s'\nL_0_X='x0'\nL_1_X='x1'\nZ='z'\n"
        );
    }

    #[test]
    fn a_prefix_keeps_its_path_from_the_root() {
        assert_eq!(render("A.C", Format::Yaml).unwrap(), "A:\n  C: \"it's\"\n");
        assert_eq!(
            render("A", Format::Json).unwrap(),
            "{\"A\":{\"B\":\"1\",\"C\":\"it's\"}}\n"
        );
        assert_eq!(render("E", Format::Yaml).unwrap(), "E: {}\n");
        // A list item is the only item of its list (its index is in env names).
        assert_eq!(
            render("L[1]", Format::Yaml).unwrap(),
            "L:\n  -\n    X: \"x1\"\n"
        );
        assert_eq!(render("L[1].X", Format::Env).unwrap(), "L_1_X='x1'\n");
        assert_eq!(
            render("L[1]", Format::Json).unwrap(),
            "{\"L\":[{\"X\":\"x1\"}]}\n"
        );
    }

    #[test]
    fn a_missing_prefix_is_not_found() {
        for prefix in ["Q", "A.Q", "A.B.C", "L[2]", "L.X", "E.X"] {
            assert_eq!(
                render(prefix, Format::Yaml).unwrap_err(),
                format!("path `{prefix}` not found in the vault"),
                "{prefix}"
            );
        }
    }

    #[test]
    fn the_output_grows_without_losing_bytes() {
        let mut out = Output::new(Format::Yaml, 1);
        for round in 0..100u8 {
            out.reserve(3);
            out.bytes.extend_from_slice(&[round; 3]);
        }
        assert_eq!(out.bytes.len(), 300);
        assert!(
            out.bytes
                .chunks(3)
                .enumerate()
                .all(|(i, c)| c == [i as u8; 3])
        );
    }
}
