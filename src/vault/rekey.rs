//! `rekey`: a new random data key, every value and stored version
//! re-encrypted under it, every kept key slot re-wrapped (docs/rotation.md).
//!
//! [`new_keys`] makes the new keys and header from the old header alone,
//! and a [`Resealer`] re-encrypts one value at a time; both serve the two
//! writers:
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
//! `tests/stream_reader.rs` checks that both write the same vault.
//!
//! [`UnlockedVault::rekey`]: crate::vault::UnlockedVault::rekey

use std::borrow::Cow;
use std::path::Path;

use crate::core::progress::Progress;
use crate::core::secret::Key32;
use crate::vault::canonical::{self, Lines, TreeBuilder, Visitor};
use crate::vault::crypto::{MacWriter, Subkeys, ValueCipher};
use crate::vault::error::VaultError;
use crate::vault::format::{
    self, HISTORY_KEY, Header, History, SECRETS_KEY, Sealed, SlotKind, TreeMac,
};
use crate::vault::path::{KeyPath, Segment, encode_index, encode_key};
use crate::vault::salt::Salt;
use crate::vault::slots;
use crate::vault::store::VaultDir;
use crate::vault::stream::{OpenedBy, file_mac, open_then_any, verify_body, walk_secrets};
use crate::vault::unlocked::{
    RekeyPlan, RekeyReport, open_audit_key, open_sealed_versioned, seal_at, seal_audit_key,
};

/// The keys and header of the rekeyed vault. No `Debug`: it holds keys.
pub struct NewKeys {
    /// The new header: new slots and audit-key seal, the same generation
    /// (the commit advances it), no MAC yet.
    pub header: Header,
    /// The new data key.
    pub data_key: Key32,
    /// Its subkeys.
    pub subkeys: Subkeys,
    /// Slots re-wrapped.
    pub kept: Vec<u32>,
    /// Slots no given secret opened.
    pub dropped: Vec<u32>,
}

/// Makes the new data key and re-wraps every slot of `header` that one of
/// `plan.credentials` opens (re-derived with the new salt and parameters
/// where asked). `unlocked_with` is the slot that opened the vault and its
/// key-encryption key, reused so its KDF does not run again; `old_enc`
/// opens the sealed audit key, which is sealed again under the new key.
pub fn new_keys(
    header: &Header,
    unlocked_with: Option<(u32, &Key32)>,
    old_enc: &ValueCipher,
    vault_path: &Path,
    old_salt: &Salt,
    plan: &RekeyPlan<'_>,
) -> Result<NewKeys, VaultError> {
    let vault_id = header.vault_id;
    let salt = plan.new_salt.unwrap_or(old_salt);
    let data_key = Key32::random();
    let subkeys = Subkeys::derive(&data_key);
    let mut new_slots = Vec::new();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for slot in &header.slots {
        // The slot that opened the vault needs no second KDF run.
        let reused = unlocked_with
            .filter(|(id, _)| *id == slot.id)
            .and_then(|(_, kek)| {
                let credential = plan.credentials.get(plan.unlocked_by?)?;
                Some((credential, Key32::from_bytes(*kek.expose())))
            });
        let opener = reused.or_else(|| {
            plan.credentials.iter().find_map(|credential| {
                if let SlotKind::Passphrase(params) = &slot.kind {
                    params.check().ok()?;
                }
                let kek = slots::kek_for(credential, &slot.kind, old_salt, &vault_id)?;
                slots::opens(slot, &kek, &vault_id).then_some((credential, kek))
            })
        });
        let Some((credential, old_kek)) = opener else {
            dropped.push(slot.id);
            continue;
        };
        let kind = match &slot.kind {
            SlotKind::Passphrase(current) if !plan.kdf.is_empty() => {
                let params = plan.kdf.apply(*current).map_err(|reason| {
                    VaultError::Usage(format!(
                        "invalid Argon2id parameters for slot {}: {reason}",
                        slot.id
                    ))
                })?;
                SlotKind::Passphrase(params)
            }
            kind => kind.clone(),
        };
        let kek = if kind == slot.kind && plan.new_salt.is_none() {
            old_kek
        } else {
            slots::kek_for(credential, &kind, salt, &vault_id)
                .expect("same kind as the slot it opened")
        };
        new_slots.push(slots::wrap(
            slot.id,
            kind,
            slot.created.clone(),
            &kek,
            &data_key,
            &vault_id,
        ));
        kept.push(slot.id);
    }
    if !dropped.is_empty() && !plan.drop_others {
        return Err(VaultError::SlotsNotOpened { ids: dropped });
    }
    slots::check_file_budget(new_slots.iter().map(|slot| &slot.kind)).map_err(|reason| {
        VaultError::Usage(format!(
            "refusing a rekey that would leave the vault with {reason}; use smaller --kdf-* values"
        ))
    })?;
    if new_slots.is_empty() {
        return Err(VaultError::Usage(
            "rekey would leave no key slot; give the secret of at least one slot".into(),
        ));
    }
    let audit_key = open_audit_key(old_enc, header, vault_path)?;
    let mut header = header.clone();
    header.salt_id = salt.id();
    header.slots = new_slots;
    header.audit_key = seal_audit_key(&subkeys, &vault_id, &audit_key);
    header.mac = [0; 32];
    if let Some(keep) = plan.keep {
        header.keep = keep;
    }
    Ok(NewKeys {
        header,
        data_key,
        subkeys,
        kept,
        dropped: if plan.drop_others {
            dropped
        } else {
            Vec::new()
        },
    })
}

/// Re-encrypts values from the old value key to the new one, each at its
/// own path, version and time, counting them and telling `progress`.
pub struct Resealer<'a> {
    /// The old value key.
    pub old: &'a ValueCipher,
    /// The new value key.
    pub new: &'a ValueCipher,
    /// The vault's id (it does not change).
    pub vault_id: &'a [u8; 16],
    /// The vault file, for errors.
    pub vault_path: &'a Path,
    /// Told of each value.
    pub progress: &'a dyn Progress,
    /// Values and stored versions re-encrypted so far.
    pub count: usize,
}

impl Resealer<'_> {
    /// The value sealed as `text` at `path`, sealed under the new key.
    pub fn value(&mut self, path: &KeyPath, text: &str) -> Result<Sealed, VaultError> {
        let (value, version, time) =
            open_sealed_versioned(self.old, self.vault_id, path, text, self.vault_path)?;
        self.count += 1;
        self.progress.advance();
        Ok(seal_at(
            self.new,
            self.vault_id,
            path,
            &value,
            version,
            time,
        ))
    }

    /// Every stored version of `history` under the new key (removal
    /// markers are kept as they are).
    pub fn history(&mut self, history: &History) -> Result<History, VaultError> {
        let mut resealed = History::with_capacity(history.len());
        for (path_text, versions) in history {
            let path = KeyPath::parse(path_text)?;
            let versions = versions
                .iter()
                .map(|sealed| match sealed.is_tombstone() {
                    true => Ok(sealed.clone()),
                    false => self.value(&path, &sealed.0),
                })
                .collect::<Result<Vec<_>, _>>()?;
            resealed.insert(path_text.clone(), versions);
        }
        Ok(resealed)
    }
}

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
pub type Fallback = Option<(Header, OpenedBy)>;

/// Rekeys the vault in `dir` in one streaming pass (see the module doc);
/// `Err` hands the work to the tree writer. `plan.unlocked_by` is ignored:
/// the credential that opens the file here is the one reused. Call it
/// under the writers' lock; nothing is written here.
pub fn rekey(
    dir: &VaultDir,
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
            Some((opened.slot.slot_id, &opened.slot.kek)),
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
        encoded: Vec::with_capacity(256),
        marks: Vec::new(),
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
    let Some(number) = lines.peek().ok().flatten().map(|line| line.number) else {
        return Ok(None);
    };
    let Ok(inline) = format::section(&mut lines, HISTORY_KEY) else {
        return Ok(None);
    };
    let Ok(raw) = canonical::node(&mut lines, 0, number, inline, &mut TreeBuilder::raw()) else {
        return Ok(None);
    };
    let Ok(history) = format::interpret_history(raw) else {
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
    /// The current path's encoded segments, and where each segment starts.
    encoded: Vec<u8>,
    marks: Vec<usize>,
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
        self.marks.len() + 1
    }

    fn empty_here(&mut self, flow: &[u8], marker: u8) {
        canonical::emit_empty(self.level(), flow, &mut self.body);
        let depth = self.marks.len();
        self.items
            .item(&mut self.mac, marker, depth, &self.encoded, None);
    }
}

impl<'t> Visitor<'t> for SecretsRewriter<'_> {
    type Node = ();
    type Map = ();
    type List = ();
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
        self.marks.push(self.encoded.len());
        encode_key(key, &mut self.encoded);
        let mut buffer = std::mem::take(&mut self.spare);
        buffer.clear();
        buffer.push_str(key);
        self.path.push(Segment::Key(buffer));
        Ok(())
    }

    fn enter_item(&mut self, index: usize) -> Result<(), &'static str> {
        canonical::emit_entry_item(self.level(), &mut self.body);
        self.marks.push(self.encoded.len());
        encode_index(index, &mut self.encoded);
        self.path.push(Segment::Index(index));
        Ok(())
    }

    fn leave(&mut self) {
        let mark = self.marks.pop().expect("leave after enter");
        self.encoded.truncate(mark);
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
        let depth = self.marks.len();
        self.items
            .item(&mut self.mac, b'V', depth, &self.encoded, Some(&sealed.0));
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

    fn map_entry(&mut self, (): &mut (), _: Cow<'t, str>, (): ()) -> Result<(), &'static str> {
        Ok(())
    }

    fn end_map(&mut self, (): ()) {}

    fn list_item(&mut self, (): &mut (), (): ()) {}

    fn end_list(&mut self, (): ()) {}
}
