//! The key slots of an opened vault (`key add`, `key passwd`, `key
//! remove`) and its rotation under a new data key (`rekey`, the tree
//! writer; see [`crate::vault::keys::rotation`]).

use crate::vault::error::VaultError;
use crate::vault::format::{EncryptedVault, RecipientSlot, SlotKind};
use crate::vault::keys::rotation::{self, RekeyPlan, RekeyReport};
use crate::vault::keys::slots::{self, Credential};
use crate::vault::salt::Salt;
use crate::vault::unlocked::UnlockedVault;

impl UnlockedVault {
    /// Adds a slot for `credential`; returns its id. Refused (before the
    /// KDF runs) if the file would be over the per-file slot bounds.
    pub fn add_slot(&mut self, credential: &Credential, salt: &Salt) -> Result<u32, VaultError> {
        let kind = match credential {
            Credential::Passphrase(_, params) => SlotKind::Passphrase(*params),
            Credential::KeyFile(_) | Credential::Identity(_) => SlotKind::KeyFile,
        };
        let kinds = self.vault.header.slots.iter().map(|s| &s.kind);
        slots::check_file_budget(kinds.chain([&kind])).map_err(over_budget)?;
        let id = self.next_slot_id();
        let slot = slots::make_slot(
            id,
            credential,
            &self.data_key,
            salt,
            &self.vault.header.vault_id,
        );
        self.push_slot(slot);
        Ok(id)
    }

    /// Adds a recipient slot for `recipient` (canonical text, see
    /// `identity::canonical_recipient`) with an optional label; returns
    /// `Ok(id)` of the new slot, or `Err(id)` of the slot this recipient
    /// already has (nothing changes: `key add recipient` is idempotent).
    pub fn add_recipient_slot(
        &mut self,
        recipient: &str,
        label: Option<&str>,
    ) -> Result<Result<u32, u32>, VaultError> {
        if let Some(existing) =
            self.vault.header.slots.iter().find(
                |slot| matches!(&slot.kind, SlotKind::Recipient(r) if r.recipient == recipient),
            )
        {
            return Ok(Err(existing.id));
        }
        if let Some(label) = label
            && !crate::vault::format::is_label_text(label)
        {
            return Err(VaultError::Usage(format!(
                "--label must be 1 to {} bytes of text without control characters",
                crate::vault::format::MAX_LABEL_LEN
            )));
        }
        let recipient = RecipientSlot {
            recipient: recipient.to_owned(),
            label: label.map(str::to_owned),
        };
        let kind = SlotKind::Recipient(recipient.clone());
        let kinds = self.vault.header.slots.iter().map(|s| &s.kind);
        slots::check_file_budget(kinds.chain([&kind])).map_err(over_budget)?;
        let id = self.next_slot_id();
        let slot = slots::recipient_slot(id, recipient, slots::now_rfc3339(), &self.data_key)?;
        self.push_slot(slot);
        Ok(Ok(id))
    }

    /// The id of the next slot: never one given before, even one whose
    /// slot was removed.
    fn next_slot_id(&self) -> u32 {
        self.vault.header.highest_slot_id() + 1
    }

    /// Appends `slot` (its id from [`Self::next_slot_id`]), keeping the
    /// header's record of the highest id given.
    fn push_slot(&mut self, slot: crate::vault::format::Slot) {
        let highest = self.vault.header.highest_slot_id();
        let mut slots = std::mem::take(&mut self.vault.header.slots);
        slots.push(slot);
        self.vault.header.replace_slots(slots, highest);
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
        let highest = self.vault.header.highest_slot_id();
        let mut slots = std::mem::take(&mut self.vault.header.slots);
        slots.remove(index);
        self.vault.header.replace_slots(slots, highest);
        Ok(())
    }

    fn slot_index(&self, id: u32) -> Result<usize, VaultError> {
        self.vault
            .header
            .slots
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| VaultError::NoSuchSlot {
                id,
                dir: self.dir(),
            })
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
            self.unlocked_with
                .as_ref()
                .and_then(|(id, kek)| Some((*id, kek.as_ref()?))),
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
