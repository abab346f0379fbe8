//! The file MAC (docs/format.md): HMAC-SHA256 over the header, the
//! secrets tree item by item in file order, and the history. The tree
//! writer walks the tree ([`compute_mac`]); the streaming passes feed the
//! same items as they read lines, with the same [`EncodedPath`] and
//! [`TreeMac`], so both MAC the same bytes.

use crate::core::secret::Key32;
use crate::vault::crypto::MacWriter;
use crate::vault::format::{FORMAT_VERSION, Header, History, Sealed, SlotKind};
use crate::vault::path::{KeyPath, encode_index, encode_key};
use crate::vault::tree::Tree;

/// The file MAC: HMAC-SHA256 under the MAC subkey over the header fields
/// (all but `mac`) and a pre-order walk of the secrets tree, every field
/// length-prefixed (see docs/format.md).
pub fn compute_mac(
    mac_key: &Key32,
    header: &Header,
    secrets: &Tree<Sealed>,
    history: &History,
) -> [u8; 32] {
    let mut mac = MacWriter::new(mac_key);
    mac_header(&mut mac, header);
    mac_tree(&mut mac, secrets);
    mac_history(&mut mac, history);
    mac.finish()
}

/// The header part of the MAC: every header field but `mac`, in a fixed
/// order, after the domain string.
pub(crate) fn mac_header(mac: &mut MacWriter, header: &Header) {
    mac.bytes(b"runvault/v1/file-mac");
    mac.u64(FORMAT_VERSION);
    mac.bytes(&header.vault_id);
    mac.bytes(&header.salt_id);
    mac.u64(header.generation);
    mac.u64(u64::from(header.keep));
    mac.bytes(header.audit_key.0.as_bytes());
    mac.u64(header.slots.len() as u64);
    for slot in &header.slots {
        mac.u64(u64::from(slot.id));
        mac.bytes(slot.kind.name().as_bytes());
        mac.bytes(slot.created.as_bytes());
        let params = match &slot.kind {
            SlotKind::Passphrase(p) => [p.memory_kib, p.iterations, p.parallelism],
            SlotKind::KeyFile | SlotKind::Recipient(_) => [0, 0, 0],
        };
        params.iter().for_each(|&p| mac.u64(u64::from(p)));
        mac.bytes(&slot.wrapped);
        // A recipient slot's public fields follow its wrapped key; a
        // missing label is the empty string (an empty one is refused).
        if let SlotKind::Recipient(recipient) = &slot.kind {
            mac.bytes(recipient.recipient.as_bytes());
            mac.bytes(recipient.label.as_deref().unwrap_or("").as_bytes());
        }
    }
    // Only when present, so older files MAC as before; `P` and `A` are
    // bytes no tree item starts with, so the message stays unambiguous.
    let mut encoded = Vec::new();
    let mut path_item = |mac: &mut MacWriter, path: &str| {
        encoded.clear();
        KeyPath::parse(path)
            .unwrap_or_default()
            .encode(&mut encoded);
        mac.bytes(&encoded);
    };
    if !header.rotation.pending.is_empty() {
        mac.raw(b"P");
        mac.u64(header.rotation.pending.len() as u64);
        for (path, sealed) in &header.rotation.pending {
            path_item(mac, path);
            mac.bytes(sealed.0.as_bytes());
        }
    }
    if !header.rotation.max_age.is_empty() {
        mac.raw(b"A");
        mac.u64(header.rotation.max_age.len() as u64);
        for (path, seconds) in &header.rotation.max_age {
            path_item(mac, path);
            mac.u64(*seconds);
        }
    }
    // Only when written, so files without it keep their MAC; its
    // length-prefixed name cannot be read as the tree's first item.
    if let Some(id) = header.last_slot_id {
        mac.bytes(b"last_slot_id");
        mac.u64(u64::from(id));
    }
}

/// The history part of the MAC, in file order: per path `H`, the encoded
/// path and the number of versions, then each version's text; then `E`.
pub(crate) fn mac_history(mac: &mut MacWriter, history: &History) {
    let mut encoded = Vec::new();
    for (path, versions) in history {
        encoded.clear();
        // Paths were validated when read or written; an unparsable one
        // cannot occur here, and would MAC as the empty path.
        KeyPath::parse(path)
            .unwrap_or_default()
            .encode(&mut encoded);
        mac.raw(b"H");
        mac.bytes(&encoded);
        mac.u64(versions.len() as u64);
        versions
            .iter()
            .for_each(|version| mac.bytes(version.0.as_bytes()));
    }
    mac.raw(b"E");
}

/// The tree part of the MAC, streamable in file order: one item per leaf
/// (`V`, its encoded path, its sealed text) and per empty mapping or list
/// (`M` / `L` and its encoded path), then `E` and the item count. The
/// sequence determines the tree, its order included, so a reader can check
/// the MAC line by line without building the tree.
fn mac_tree(mac: &mut MacWriter, root: &Tree<Sealed>) {
    fn walk(
        mac: &mut MacWriter,
        node: &Tree<Sealed>,
        depth: usize,
        encoded: &mut Vec<u8>,
        items: &mut TreeMac,
    ) {
        match node {
            Tree::Leaf(sealed) => items.item(mac, b'V', depth, encoded, Some(&sealed.0)),
            Tree::Map(map) if map.is_empty() => items.item(mac, b'M', depth, encoded, None),
            Tree::List(list) if list.is_empty() => items.item(mac, b'L', depth, encoded, None),
            Tree::Map(map) => {
                for (key, child) in map {
                    let mark = encoded.len();
                    encode_key(key, encoded);
                    walk(mac, child, depth + 1, encoded, items);
                    encoded.truncate(mark);
                }
            }
            Tree::List(list) => {
                for (index, child) in list.iter().enumerate() {
                    let mark = encoded.len();
                    encode_index(index, encoded);
                    walk(mac, child, depth + 1, encoded, items);
                    encoded.truncate(mark);
                }
            }
        }
    }
    let mut items = TreeMac::default();
    walk(mac, root, 0, &mut Vec::new(), &mut items);
    items.finish(mac);
}

/// The current path of a walk in file order, encoded as the MAC items
/// carry it (the segments as [`KeyPath::encode`] writes them): a segment
/// pushed on entering a key or list item, popped on leaving it. The one
/// copy of this bookkeeping every streaming pass (the reader, `set`'s
/// splice, `rekey`) uses with [`TreeMac::item_at`].
#[derive(Debug)]
pub(crate) struct EncodedPath {
    encoded: Vec<u8>,
    /// Where each segment starts in `encoded`.
    marks: Vec<usize>,
}

impl EncodedPath {
    /// The root.
    pub(crate) fn new() -> EncodedPath {
        EncodedPath {
            encoded: Vec::with_capacity(256),
            marks: Vec::new(),
        }
    }

    /// The number of segments.
    #[inline]
    pub(crate) fn depth(&self) -> usize {
        self.marks.len()
    }

    /// The encoded segments.
    #[inline]
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// One step down, to the key `key`.
    #[inline]
    pub(crate) fn push_key(&mut self, key: &str) {
        self.marks.push(self.encoded.len());
        encode_key(key, &mut self.encoded);
    }

    /// One step down, to the list item `index`.
    #[inline]
    pub(crate) fn push_index(&mut self, index: usize) {
        self.marks.push(self.encoded.len());
        encode_index(index, &mut self.encoded);
    }

    /// One step up.
    #[inline]
    pub(crate) fn pop(&mut self) {
        let mark = self.marks.pop().expect("leave after enter");
        self.encoded.truncate(mark);
    }
}

impl Default for EncodedPath {
    fn default() -> EncodedPath {
        EncodedPath::new()
    }
}

/// The items of the tree part of the MAC ([`compute_mac`]), fed one at a
/// time in file order; the tree walk and the streaming reader
/// (`vault::stream`) both use it, so they MAC the same bytes.
#[derive(Debug, Default)]
pub(crate) struct TreeMac {
    items: u64,
}

impl TreeMac {
    /// One item: `marker` (`V` value, `M` empty mapping, `L` empty list),
    /// the path as its segment count and its encoded segments (as
    /// [`KeyPath::encode`] writes them), and for a value its sealed text.
    pub(crate) fn item(
        &mut self,
        mac: &mut MacWriter,
        marker: u8,
        segments: usize,
        encoded_segments: &[u8],
        text: Option<&str>,
    ) {
        mac.raw(&[marker]);
        // The same bytes as `mac.bytes(&path.encode())`, without the copy.
        mac.u64(4 + encoded_segments.len() as u64);
        mac.raw(&(segments as u32).to_be_bytes());
        mac.raw(encoded_segments);
        if let Some(text) = text {
            mac.bytes(text.as_bytes());
        }
        self.items += 1;
    }

    /// [`TreeMac::item`] at the current path of a streaming pass.
    #[inline]
    pub(crate) fn item_at(
        &mut self,
        mac: &mut MacWriter,
        marker: u8,
        path: &EncodedPath,
        text: Option<&str>,
    ) {
        self.item(mac, marker, path.depth(), path.encoded(), text);
    }

    /// Ends the tree part: `E` and the number of items.
    pub(crate) fn finish(self, mac: &mut MacWriter) {
        mac.raw(b"E");
        mac.u64(self.items);
    }
}
