//! The streaming writer for a change of one path (`set`, `set
//! --if-version`): the new `vault.yml` is spliced from the old one instead
//! of being rebuilt from a tree.
//!
//! One pass over the canonical file, sharing the grammar with both readers
//! ([`canonical::node`] with another [`Visitor`]): every tree item is fed to
//! the old file's MAC and, unchanged, to the new file's MAC; the line of the
//! changed path (or the end of the deepest mapping on its way, for a new
//! path) is where the new sealed value goes. The bytes of every other line
//! are copied as they are; the header and the history section (small, and
//! both changed) are emitted by the same code as the tree writer's
//! ([`format::emit_header`], [`format::emit_history`]). The history section
//! is read first, since the new version depends on it. The old MAC must
//! match before anything is returned, so a tampered file is never the base
//! of a commit.
//!
//! The pass copies bytes only where they are exactly what the tree writer
//! would write for the same tree: keys plain or quoted as
//! [`canonical::emit_key`] writes them, sealed values plain. Anything else
//! (a quoted or escaped form the reader accepts but the writer never
//! writes, a path through an empty mapping or a list end, a value where the
//! path goes on, a MAC that does not match) makes it answer `None`, and the
//! caller falls back to the tree writer with the slot already opened, which
//! then gives the exact verdict or error.
//! `the_streaming_writer_writes_what_the_tree_writer_writes` in
//! `tests/properties/stream_reader.rs` checks that both writers produce the same file.

use std::borrow::Cow;
use std::path::Path;

use crate::vault::audit::AuditChange;
use crate::vault::canonical::{self, Lines, StreamVisitor};
use crate::vault::crypto::{KeyedMac, MacWriter, Subkeys};
use crate::vault::dir::ReadOnlyDir;
use crate::vault::error::VaultError;
use crate::vault::format::{self, EncodedPath, Header, History, SECRETS_KEY, Sealed, TreeMac};
use crate::vault::keys::seal::{open_audit_key, open_sealed_text, seal_at, value_hmac_bytes};
use crate::vault::keys::slots::{Credential, Opened};
use crate::vault::keys::versions::{last_version, prune};
use crate::vault::path::{KeyPath, Segment, encode_key};
use crate::vault::stream::{file_mac, open_then};
use crate::vault::tree::Tree;
use crate::vault::value::Plain;

/// A new value for one path.
pub struct SetEdit<'e> {
    /// The path.
    pub path: &'e KeyPath,
    /// The value.
    pub value: &'e Plain,
    /// Set only if the path's current version is this (0: no value).
    pub if_version: Option<u32>,
    /// The Unix time the value is stamped with.
    pub time: u64,
}

/// The new file and what its audit line says. No `Debug` needed: it holds
/// only ciphertext, but nothing prints it.
pub struct Spliced {
    /// The new `vault.yml`.
    pub bytes: Vec<u8>,
    /// The new version of the path.
    pub version: u32,
    /// The vault's id (whose high-water mark the commit checks and raises).
    pub vault_id: [u8; 16],
    /// The generation before and after.
    pub generations: (u64, u64),
    /// The audit entry of the change.
    pub change: AuditChange,
    /// The path already holds this very value: nothing is to be written
    /// (`bytes` is empty, `version` the current one, no new version).
    pub unchanged: bool,
}

/// Opens the vault in `dir` (one KDF run) and splices `edit` into it; `Err`
/// carries the opened slot when the tree writer must do it instead (see the
/// module doc). Call it under the writers' lock.
pub fn set(
    dir: &ReadOnlyDir,
    credential: &Credential,
    edit: &SetEdit<'_>,
) -> Result<Result<Spliced, Option<(Header, Opened)>>, VaultError> {
    let vault_path = dir.vault_path();
    open_then(dir, credential, |lines, header, opened| {
        let subkeys = Subkeys::derive(&opened.data_key);
        splice_set(lines, header, &subkeys, edit, &vault_path)
    })
}

/// [`set`] on the lines after the header of an opened vault.
fn splice_set(
    mut lines: Lines<'_>,
    header: &Header,
    subkeys: &Subkeys,
    edit: &SetEdit<'_>,
    vault_path: &Path,
) -> Result<Option<Spliced>, VaultError> {
    let text = lines.text();
    let base = text.as_ptr() as usize;
    let offset = |part: &str| part.as_ptr() as usize - base;
    let key = edit.path.to_string();
    // A vault with a pending rotation is changed through the tree, which
    // refuses a `set` that its promotion would undo.
    if !header.rotation.pending.is_empty() {
        return Ok(None);
    }
    // The history first: the new version depends on it.
    let Some(history_at) = memchr::memmem::find(text.as_bytes(), b"\nhistory:").map(|at| at + 1)
    else {
        return Ok(None);
    };
    let tail = Lines::new(&text.as_bytes()[history_at..]).ok();
    let Some(mut history) = tail.and_then(|mut lines| format::read_history(&mut lines)) else {
        return Ok(None);
    };
    let Some(secrets_line) = lines.peek().ok().flatten() else {
        return Ok(None);
    };
    let secrets_at = offset(secrets_line.body);
    let Ok(inline) = format::section(&mut lines, SECRETS_KEY) else {
        return Ok(None);
    };
    let mut old_mac = file_mac(&subkeys.mac, text.len());
    let mut new_mac = file_mac(&subkeys.mac, text.len());
    format::mac_header(&mut old_mac, header);
    let mut next_header = header.clone();
    next_header.generation += 1;
    format::mac_header(&mut new_mac, &next_header);
    let new_value = NewValue {
        edit,
        key: &key,
        history: &history,
        enc: subkeys,
        vault_id: &header.vault_id,
    };
    let mut splicer = Splicer::new(text, edit.path.segments(), [old_mac, new_mac], &new_value);
    let walked = canonical::node(&mut lines, 0, secrets_line.number, inline, &mut splicer);
    // The secrets section must end where the history section was read.
    let ends_at_history = matches!(lines.peek(), Ok(Some(line)) if offset(line.body) == history_at);
    let Splicer {
        macs: [mut old_mac, mut new_mac],
        items: [old_items, new_items],
        change,
        refused,
        ..
    } = splicer;
    let Some(change) = change.filter(|_| walked.is_ok() && ends_at_history && !refused) else {
        return Ok(None);
    };
    old_items.finish(&mut old_mac);
    new_items.finish(&mut new_mac);
    format::mac_history(&mut old_mac, &history);
    if !old_mac.verify(&header.mac) {
        return Ok(None);
    }
    // From here on the old file is authenticated.
    if let Some(expected) = edit.if_version
        && expected != change.current
    {
        return Err(VaultError::VersionConflict {
            key,
            expected,
            current: change.current,
        });
    }
    // The value it already holds (one value decrypted, no other work):
    // no new version, no write.
    if let Some(previous) = change.previous
        && open_sealed_text(
            &subkeys.enc,
            &header.vault_id,
            edit.path,
            previous,
            vault_path,
        )? == *edit.value
    {
        return Ok(Some(Spliced {
            bytes: Vec::new(),
            version: change.current,
            vault_id: header.vault_id,
            generations: (header.generation, header.generation),
            change: AuditChange {
                path: key,
                version: Some(change.current),
                hmac: None,
                action: "set",
            },
            unchanged: true,
        }));
    }
    let audit_key = open_audit_key(&subkeys.enc, header, vault_path)?;
    if let Some(previous) = change.previous {
        history
            .entry(key.clone())
            .or_default()
            .push(Sealed(previous.to_string()));
    }
    prune(&mut history, &key, header.keep, true);
    format::mac_history(&mut new_mac, &history);
    next_header.mac = new_mac.finish();
    let mut bytes = Vec::with_capacity(text.len() + change.bytes.len() + 1024);
    format::emit_header(&next_header, &mut bytes);
    bytes.extend_from_slice(&text.as_bytes()[secrets_at..change.start]);
    bytes.extend_from_slice(&change.bytes);
    bytes.extend_from_slice(&text.as_bytes()[change.end..history_at]);
    format::emit_history(&history, &mut bytes);
    Ok(Some(Spliced {
        bytes,
        version: change.version,
        vault_id: header.vault_id,
        generations: (header.generation, next_header.generation),
        change: AuditChange {
            path: key,
            version: Some(change.version),
            hmac: Some(value_hmac_bytes(
                &KeyedMac::new(&audit_key),
                edit.path,
                edit.value,
            )),
            action: "set",
        },
        unchanged: false,
    }))
}

/// What the new sealed value is made from.
struct NewValue<'e> {
    edit: &'e SetEdit<'e>,
    key: &'e str,
    history: &'e History,
    enc: &'e Subkeys,
    vault_id: &'e [u8; 16],
}

impl NewValue<'_> {
    /// The new value sealed with the next version after `current` and the
    /// stored ones, and that version.
    fn seal(&self, current: u32) -> (Sealed, u32) {
        let version = last_version(self.history, self.key, current).saturating_add(1);
        let sealed = seal_at(
            &self.enc.enc,
            self.vault_id,
            self.edit.path,
            self.edit.value,
            version,
            self.edit.time,
        );
        (sealed, version)
    }
}

/// The one place the file changes.
struct Change<'t> {
    /// Byte range of the old file that is replaced (empty for an insertion).
    start: usize,
    end: usize,
    /// What goes there.
    bytes: Vec<u8>,
    /// The sealed text that was replaced, if any.
    previous: Option<&'t str>,
    /// The path's version before (0: no value) and after.
    current: u32,
    version: u32,
}

/// Feeds the secrets section to both MACs and finds where the change goes.
struct Splicer<'t, 'e> {
    text: &'t str,
    target: &'e [Segment],
    new_value: &'e NewValue<'e>,
    /// The old file's MAC and the new file's.
    macs: [MacWriter; 2],
    items: [TreeMac; 2],
    /// The current path, encoded for the MAC items.
    path: EncodedPath,
    /// For each depth, whether the current path is a prefix of the target.
    on_target: Vec<bool>,
    /// For each depth on the target, whether the target's next segment was
    /// found under it.
    entered: Vec<bool>,
    /// The offset after the last line read, when known.
    last_line_end: Option<usize>,
    change: Option<Change<'t>>,
    /// Set when the file holds something the pass cannot splice.
    refused: bool,
}

impl<'t, 'e> Splicer<'t, 'e> {
    fn new(
        text: &'t str,
        target: &'e [Segment],
        macs: [MacWriter; 2],
        new_value: &'e NewValue<'e>,
    ) -> Splicer<'t, 'e> {
        Splicer {
            text,
            target,
            new_value,
            macs,
            items: [TreeMac::default(), TreeMac::default()],
            path: EncodedPath::new(),
            on_target: vec![true],
            entered: vec![false; target.len() + 1],
            last_line_end: None,
            change: None,
            refused: false,
        }
    }

    fn depth(&self) -> usize {
        self.path.depth()
    }

    /// Whether the current path is the target (`Some(true)`) or a proper
    /// prefix of it (`Some(false)`).
    fn on_target(&self) -> Option<bool> {
        let depth = self.depth();
        self.on_target[depth].then_some(depth == self.target.len())
    }

    /// The offset of a part of the text (a slice of it).
    fn offset(&self, part: &str) -> usize {
        part.as_ptr() as usize - self.text.as_ptr() as usize
    }

    /// Whether the text just before `part` is a double quote.
    fn quoted(&self, part: &str) -> bool {
        let at = self.offset(part);
        at > 0 && self.text.as_bytes()[at - 1] == b'"'
    }

    /// One item, the same in both MACs.
    fn item(&mut self, marker: u8, text: Option<&str>) {
        for (mac, items) in self.macs.iter_mut().zip(&mut self.items) {
            items.item_at(mac, marker, &self.path, text);
        }
    }

    /// Goes one step down (the caller then pushes the segment on the
    /// path); `is_next` tells whether the step is the target's next
    /// segment.
    fn descend(&mut self, is_next: impl FnOnce(Option<&Segment>) -> bool) {
        let depth = self.depth();
        let on = self.on_target[depth] && is_next(self.target.get(depth));
        if on {
            self.entered[depth] = true;
        }
        self.on_target.push(on);
    }

    /// `{}` (`M`) or `[]` (`L`) at the current path: one item in both MACs.
    /// Its line's end is not known (the visitor sees no text for it), and a
    /// new path through it would change its line: both refuse a splice.
    fn empty_here(&mut self, marker: u8) -> Result<(), &'static str> {
        if self.on_target().is_some() {
            return Err("an empty mapping or list on the path");
        }
        self.last_line_end = None;
        self.item(marker, None);
        Ok(())
    }

    /// The target is a new path whose deepest existing mapping ends here:
    /// its lines go after that mapping's last line.
    fn insert_here(&mut self) {
        let depth = self.depth();
        let rest = &self.target[depth..];
        let keys: Option<Vec<&str>> = rest
            .iter()
            .map(|segment| match segment {
                Segment::Key(key) => Some(key.as_str()),
                Segment::Index(_) => None,
            })
            .collect();
        // A list to create, or a position the pass does not know.
        let (Some(keys), Some(at)) = (keys, self.last_line_end) else {
            return;
        };
        let (sealed, version) = self.new_value.seal(0);
        let mut encoded = self.path.encoded().to_vec();
        keys.iter().for_each(|key| encode_key(key, &mut encoded));
        self.items[1].item(
            &mut self.macs[1],
            b'V',
            self.target.len(),
            &encoded,
            Some(&sealed.0),
        );
        let (first, inner) = keys.split_first().expect("a new path below a mapping");
        let leaf = inner.iter().rev().fold(Tree::Leaf(sealed), |node, key| {
            Tree::Map([(key.to_string(), node)].into_iter().collect())
        });
        let indent = 2 * (depth + 1);
        let mut bytes = vec![b' '; indent];
        canonical::emit_key(first, &mut bytes);
        bytes.push(b':');
        canonical::emit_tree(&leaf, indent + 2, &mut bytes, &mut |sealed, out| {
            out.extend_from_slice(sealed.0.as_bytes());
        });
        self.change = Some(Change {
            start: at,
            end: at,
            bytes,
            previous: None,
            current: 0,
            version,
        });
    }
}

impl<'t> StreamVisitor<'t> for Splicer<'t, '_> {
    fn begin_map(&mut self) -> Result<(), &'static str> {
        match self.on_target() {
            Some(true) => Err("the path is a mapping"),
            _ => Ok(()),
        }
    }

    fn begin_list(&mut self) -> Result<(), &'static str> {
        match self.on_target() {
            Some(true) => Err("the path is a list"),
            _ => Ok(()),
        }
    }

    fn enter_key(&mut self, key: &Cow<'t, str>) -> Result<(), &'static str> {
        // Copied bytes must be what the tree writer writes for the key.
        let Cow::Borrowed(text) = key else {
            return Err("a key with escapes");
        };
        if self.quoted(text) == canonical::is_plain_key(text) {
            return Err("a key quoted otherwise than runvault writes it");
        }
        self.descend(|next| matches!(next, Some(Segment::Key(want)) if want == text));
        self.path.push_key(text);
        Ok(())
    }

    fn enter_item(&mut self, index: usize) -> Result<(), &'static str> {
        self.descend(|next| next == Some(&Segment::Index(index)));
        self.path.push_index(index);
        Ok(())
    }

    fn leave(&mut self) {
        self.path.pop();
        self.on_target.pop();
    }

    fn scalar(&mut self, text: Cow<'t, str>) -> Result<(), &'static str> {
        let Cow::Borrowed(text) = text else {
            return Err("a value with escapes");
        };
        if !text.starts_with("rv1:") || self.quoted(text) {
            return Err("a value that is not a plain sealed value");
        }
        let start = self.offset(text);
        let end = start + text.len();
        self.last_line_end = Some(end + 1);
        match self.on_target() {
            None => self.item(b'V', Some(text)),
            Some(false) => return Err("a value where the path goes on"),
            Some(true) => {
                let current = Sealed(text.to_string())
                    .version_and_time()
                    .map_or(0, |(version, _)| version);
                let (sealed, version) = self.new_value.seal(current);
                let [old_mac, new_mac] = &mut self.macs;
                let [old_items, new_items] = &mut self.items;
                old_items.item_at(old_mac, b'V', &self.path, Some(text));
                new_items.item_at(new_mac, b'V', &self.path, Some(&sealed.0));
                self.change = Some(Change {
                    start,
                    end,
                    bytes: sealed.0.into_bytes(),
                    previous: Some(text),
                    current,
                    version,
                });
            }
        }
        Ok(())
    }

    fn empty_map(&mut self) -> Result<(), &'static str> {
        self.empty_here(b'M')
    }

    fn empty_list(&mut self) -> Result<(), &'static str> {
        self.empty_here(b'L')
    }

    fn end_map(&mut self) {
        let depth = self.depth();
        if self.on_target() == Some(false) && !self.entered[depth] {
            self.insert_here();
            if self.change.is_none() {
                self.refused = true;
            }
        }
    }
}
