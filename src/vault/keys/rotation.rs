//! Rotation (`rekey`, docs/rotation.md): a new random data key, every kept
//! key slot re-wrapped, every value, pending and stored version re-encrypted.
//!
//! [`new_keys`] makes the new keys and header from the old header alone,
//! and a [`Resealer`] re-encrypts one value at a time; both serve the two
//! writers: the tree writer ([`UnlockedVault::rekey`]) and the streaming
//! writer (`stream::rekey`).
//!
//! [`UnlockedVault::rekey`]: crate::vault::UnlockedVault::rekey

use std::path::Path;

use crate::core::progress::Progress;
use crate::core::secret::Key32;
use crate::vault::crypto::{KdfOverride, Subkeys, ValueCipher};
use crate::vault::error::VaultError;
use crate::vault::format::{Header, History, Sealed, SlotKind};
use crate::vault::keys::seal::{open_audit_key, open_sealed_versioned, seal_at, seal_audit_key};
use crate::vault::keys::slots::{self, Credential};
use crate::vault::path::KeyPath;
use crate::vault::salt::Salt;

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

/// The keys and header of the rekeyed vault. No `Debug`: it holds keys.
pub(crate) struct NewKeys {
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
pub(crate) fn new_keys(
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
        // A recipient slot needs no secret: the new key is sealed to its
        // public key (a removed host's identity opens none of them).
        if let SlotKind::Recipient(recipient) = &slot.kind {
            let wrapped =
                slots::recipient_slot(slot.id, recipient.clone(), slot.created.clone(), &data_key)
                    .map_err(|_| VaultError::Corrupt {
                        path: vault_path.to_path_buf(),
                        source: crate::vault::format::FormatError::Header {
                            field: format!("slot {} recipient", slot.id),
                            problem: "not an age or ssh-ed25519 recipient",
                        },
                    })?;
            new_slots.push(wrapped);
            kept.push(slot.id);
            continue;
        }
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
    let highest = header.highest_slot_id();
    let mut header = header.clone();
    header.salt_id = salt.id();
    header.replace_slots(new_slots, highest);
    header.audit_key = seal_audit_key(&subkeys, &vault_id, &audit_key);
    // Pending versions sit in the header: both writers get them re-sealed here.
    for (path_text, sealed) in &mut header.rotation.pending {
        let path = KeyPath::parse(path_text)?;
        let (value, version, time) =
            open_sealed_versioned(old_enc, &vault_id, &path, &sealed.0, vault_path)?;
        *sealed = seal_at(&subkeys.enc, &vault_id, &path, &value, version, time);
    }
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
pub(crate) struct Resealer<'a> {
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
    pub(crate) fn value(&mut self, path: &KeyPath, text: &str) -> Result<Sealed, VaultError> {
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
    pub(crate) fn history(&mut self, history: &History) -> Result<History, VaultError> {
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
