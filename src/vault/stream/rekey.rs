//! The streaming writer of `rekey`: a new random data key, every value and
//! stored version re-encrypted under it, every kept key slot re-wrapped
//! (docs/rotation.md), without building the tree.
//!
//! [`new_keys`] makes the new keys and header from the old header alone,
//! and a [`Resealer`] re-encrypts one value at a time (both in
//! `keys::rotation`); both serve the two writers:
//!
//! - the tree writer ([`UnlockedVault::rekey`]), for a file that is not in
//!   the canonical layout, for `--keep` (which prunes the history against
//!   the tree) and when plaintext views need the opened vault;
//! - the streaming writer here ([`rekey`]), which never builds the tree: a
//!   first pass checks the old file's MAC (the streaming reader's), a
//!   second walks the same lines again and writes the new file as it goes,
//!   every key as the tree writer writes it, every value opened with the
//!   old key and sealed with the new one at the same path, version and
//!   time, the new MAC fed item by item. The history section (read whole,
//!   as every streaming pass does) is re-encrypted the same way and
//!   written by the tree writer's code.
//!
//! The streaming writer hands back the slot it opened when it cannot do the
//! work, so the tree writer does it without a second KDF run.
//! `tests/properties/stream_reader.rs` checks that both write the same vault.
//!
//! [`UnlockedVault::rekey`]: crate::vault::UnlockedVault::rekey

use std::borrow::Cow;

use crate::vault::canonical::{self, Lines, StreamVisitor};
use crate::vault::crypto::{MacWriter, Subkeys};
use crate::vault::dir::ReadOnlyDir;
use crate::vault::error::VaultError;
use crate::vault::format::{self, EncodedPath, Header, SECRETS_KEY, TreeMac};
use crate::vault::keys::rotation::{RekeyPlan, RekeyReport, Resealer, new_keys};
use crate::vault::path::{KeyPath, Segment};
use crate::vault::stream::select::verify_body;
use crate::vault::stream::{OpenedBy, file_mac, open_then_any, walk_secrets};

/// The file a streaming rekey wrote, and what it did.
pub struct Rekeyed {
    /// The new `vault.yml`.
    pub bytes: Vec<u8>,
    /// Slots kept and dropped, values re-encrypted.
    pub report: RekeyReport,
    /// The vault's id (whose high-water mark the commit checks and raises).
    pub vault_id: [u8; 16],
    /// The generation before and after.
    pub generations: (u64, u64),
}

/// What the tree writer needs when the streaming writer hands the work
/// over: the header it read and the slot it opened, if it got that far.
pub(crate) type Fallback = Option<(Header, OpenedBy)>;

/// Rekeys the vault in `dir` in one streaming pass (see the module doc);
/// `Err` hands the work to the tree writer. `plan.unlocked_by` is ignored:
/// the credential that opens the file here is the one reused. Call it
/// under the writers' lock; nothing is written here.
pub fn rekey(
    dir: &ReadOnlyDir,
    plan: &RekeyPlan<'_>,
) -> Result<Result<Rekeyed, Fallback>, VaultError> {
    let vault_path = dir.vault_path();
    open_then_any(dir, plan.credentials, |lines, header, opened, salt| {
        let old = Subkeys::derive(&opened.slot.data_key);
        let Some(counts) = verify_body(lines.clone(), header, &old) else {
            return Ok(None);
        };
        let plan = RekeyPlan {
            unlocked_by: Some(opened.credential),
            ..*plan
        };
        let keys = new_keys(
            header,
            (opened.slot.kek.as_ref()).map(|kek| (opened.slot.slot_id, kek)),
            &old.enc,
            &vault_path,
            salt,
            &plan,
        )?;
        plan.progress.begin(counts.values + counts.stored);
        let resealer = Resealer {
            old: &old.enc,
            new: &keys.subkeys.enc,
            vault_id: &header.vault_id,
            vault_path: &vault_path,
            progress: plan.progress,
            count: 0,
        };
        let written = write_body(lines, keys.header, &keys.subkeys, resealer)?;
        Ok(written.map(|(bytes, next, reencrypted)| Rekeyed {
            bytes,
            report: RekeyReport {
                kept: keys.kept,
                dropped: keys.dropped,
                reencrypted,
            },
            vault_id: header.vault_id,
            generations: (header.generation, next.generation),
        }))
    })
}

/// The second pass: the new file after `header` (the new one, its
/// generation advanced here and its MAC computed), from the old file's
/// lines after its header; with the new header and the number of values
/// re-encrypted. `None` if the lines are not what the first pass read.
fn write_body(
    mut lines: Lines<'_>,
    mut header: Header,
    subkeys: &Subkeys,
    resealer: Resealer<'_>,
) -> Result<Option<(Vec<u8>, Header, usize)>, VaultError> {
    header.generation += 1;
    let mut mac = file_mac(&subkeys.mac, lines.len());
    format::mac_header(&mut mac, &header);
    let mut rewriter = SecretsRewriter {
        resealer,
        path: KeyPath::root(),
        spare: String::new(),
        encoded: EncodedPath::new(),
        mac,
        items: TreeMac::default(),
        body: Vec::with_capacity(lines.len() + 4096),
        failure: None,
    };
    rewriter.body.extend_from_slice(SECRETS_KEY.as_bytes());
    rewriter.body.push(b':');
    if !walk_secrets(&mut lines, &mut rewriter, |r| r.failure.take())? {
        return Ok(None);
    }
    let SecretsRewriter {
        mut resealer,
        mut mac,
        items,
        body,
        ..
    } = rewriter;
    items.finish(&mut mac);
    let Some(history) = format::read_history(&mut lines) else {
        return Ok(None);
    };
    let history = resealer.history(&history)?;
    format::mac_history(&mut mac, &history);
    header.mac = mac.finish();
    let mut bytes = Vec::with_capacity(body.len() + 8192);
    format::emit_header(&header, &mut bytes);
    bytes.extend_from_slice(&body);
    drop(body);
    format::emit_history(&history, &mut bytes);
    Ok(Some((bytes, header, resealer.count)))
}

/// Writes the `secrets:` section of the new file while the canonical
/// reader walks the old one: the layout of [`canonical::emit_tree`], one
/// node at a time, the new MAC fed as [`format::compute_mac`] feeds it.
struct SecretsRewriter<'r> {
    resealer: Resealer<'r>,
    /// The current path (for the values' associated data).
    path: KeyPath,
    /// The key string a `leave` popped last, reused by the next key.
    spare: String,
    /// The current path, encoded for the MAC items.
    encoded: EncodedPath,
    mac: MacWriter,
    items: TreeMac,
    /// The section written so far.
    body: Vec<u8>,
    /// A value that did not open: the walk stops with it.
    failure: Option<VaultError>,
}

impl SecretsRewriter<'_> {
    /// The level of the current node in the file (`secrets:` is level 1).
    fn level(&self) -> usize {
        self.encoded.depth() + 1
    }

    fn empty_here(&mut self, flow: &[u8], marker: u8) {
        canonical::emit_empty(self.level(), flow, &mut self.body);
        self.items
            .item_at(&mut self.mac, marker, &self.encoded, None);
    }
}

impl<'t> StreamVisitor<'t> for SecretsRewriter<'_> {
    const SEALED_ONLY: bool = true;

    fn begin_map(&mut self) -> Result<(), &'static str> {
        canonical::emit_open(self.level(), &mut self.body);
        Ok(())
    }

    fn begin_list(&mut self) -> Result<(), &'static str> {
        canonical::emit_open(self.level(), &mut self.body);
        Ok(())
    }

    fn enter_key(&mut self, key: &Cow<'t, str>) -> Result<(), &'static str> {
        canonical::emit_entry_key(self.level(), key, &mut self.body);
        self.encoded.push_key(key);
        let mut buffer = std::mem::take(&mut self.spare);
        buffer.clear();
        buffer.push_str(key);
        self.path.push(Segment::Key(buffer));
        Ok(())
    }

    fn enter_item(&mut self, index: usize) -> Result<(), &'static str> {
        canonical::emit_entry_item(self.level(), &mut self.body);
        self.encoded.push_index(index);
        self.path.push(Segment::Index(index));
        Ok(())
    }

    fn leave(&mut self) {
        self.encoded.pop();
        if let Some(Segment::Key(key)) = self.path.pop() {
            self.spare = key;
        }
    }

    fn scalar(&mut self, text: Cow<'t, str>) -> Result<(), &'static str> {
        let sealed = self.resealer.value(&self.path, &text).map_err(|err| {
            self.failure = Some(err);
            "a value that does not open"
        })?;
        self.body.push(b' ');
        self.body.extend_from_slice(sealed.0.as_bytes());
        self.body.push(b'\n');
        self.items
            .item_at(&mut self.mac, b'V', &self.encoded, Some(&sealed.0));
        Ok(())
    }

    fn empty_map(&mut self) -> Result<(), &'static str> {
        self.empty_here(b"{}", b'M');
        Ok(())
    }

    fn empty_list(&mut self) -> Result<(), &'static str> {
        self.empty_here(b"[]", b'L');
        Ok(())
    }
}
