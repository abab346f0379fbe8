//! Key slots, as LUKS has them: the data key wrapped under a key derived
//! from one secret (a passphrase through Argon2id, or a machine key file
//! through HKDF), so people and machines open the same vault with different
//! secrets and changing one secret never re-encrypts a value.

use std::path::Path;

use crate::core::fs::{Limit, read_private};
use crate::core::hex::{hex, unhex};
use crate::core::layout::DEFAULT_KEY_FILE;
use crate::core::secret::{Key32, SecretBytes};
use crate::vault::crypto::{self, KdfParams};
use crate::vault::error::VaultError;
use crate::vault::format::{Header, RecipientSlot, Slot, SlotKind};
use crate::vault::keys::identity::{self, Identity};
use crate::vault::keys::secret_file::write_new_secret_file;
use crate::vault::salt::Salt;

/// A secret that opens (or creates) a slot.
///
/// No `Debug` and no `Display`: it holds a passphrase or a key. The first
/// example compiles; the next two are the same code with `{:?}`, then `{}`,
/// and must not compile, for want of the trait (E0277).
///
/// ```
/// use runvault::core::secret::Key32;
/// use runvault::vault::Credential;
/// let credential = Credential::KeyFile(Key32::from_bytes([7; 32]));
/// let _ = format!("{:p}", &credential); // its address, not its bytes
/// ```
///
/// ```compile_fail,E0277
/// use runvault::core::secret::Key32;
/// use runvault::vault::Credential;
/// let credential = Credential::KeyFile(Key32::from_bytes([7; 32]));
/// let _ = format!("{:?}", &credential);
/// ```
///
/// ```compile_fail,E0277
/// use runvault::core::secret::Key32;
/// use runvault::vault::Credential;
/// let credential = Credential::KeyFile(Key32::from_bytes([7; 32]));
/// let _ = format!("{}", &credential);
/// ```
pub enum Credential {
    /// A passphrase, with the Argon2id parameters used when creating a slot.
    Passphrase(SecretBytes, KdfParams),
    /// A machine key read from a key file.
    KeyFile(Key32),
    /// A host's private key (age X25519 or ssh-ed25519), which opens the
    /// recipient slot of its public key.
    Identity(Identity),
}

impl Credential {
    /// What the secret is called in messages.
    pub fn what(&self) -> &'static str {
        match self {
            Credential::Passphrase(..) => "passphrase",
            Credential::KeyFile(_) => "key file",
            Credential::Identity(_) => "identity",
        }
    }

    /// The slot kind this credential opens.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Credential::Passphrase(..) => "passphrase",
            Credential::KeyFile(_) => "keyfile",
            Credential::Identity(_) => "recipient",
        }
    }
}

/// Reads a machine key file: refuses one others can read, and checks its form.
pub fn read_key_file(path: &Path) -> Result<Key32, VaultError> {
    let bytes = SecretBytes::new(read_private(path, Limit::KEY_FILE)?);
    let text = std::str::from_utf8(bytes.expose())
        .map_err(|_| bad_key(path))?
        .trim();
    let decoded = SecretBytes::new(unhex(text).ok_or_else(|| bad_key(path))?);
    let key: [u8; 32] = decoded.expose().try_into().map_err(|_| bad_key(path))?;
    Ok(Key32::from_bytes(key))
}

fn bad_key(path: &Path) -> VaultError {
    VaultError::BadKeyFile {
        path: path.to_path_buf(),
    }
}

/// The bytes of a new key file: 32 random bytes as 64 hex characters.
pub(crate) fn new_key_file_contents() -> SecretBytes {
    let key = Key32::random();
    let mut text = hex(key.expose());
    text.push('\n');
    SecretBytes::from(text)
}

/// Writes a new machine key file at `path` (mode 0400, `O_EXCL`; missing
/// parent directories are created 0700). Refuses to overwrite a key, and
/// to put one inside the vault directory `vault_dir`, which is mounted
/// into jobs.
pub fn create_key_file(path: &Path, vault_dir: &Path) -> Result<(), VaultError> {
    let contents = new_key_file_contents();
    write_new_secret_file(path, vault_dir, "the key file", DEFAULT_KEY_FILE, &contents)
}

/// How many times this process ran a credential's KDF (Argon2id for a
/// passphrase, HKDF for a key file). Counted in debug builds only, for the
/// test that proves one run per command (`RUNVAULT_DEBUG_KDF_RUNS`, see
/// [`kdf_runs`]).
static KDF_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The number of KDF runs so far in this process (always 0 in release
/// builds, which do not count).
pub fn kdf_runs() -> usize {
    KDF_RUNS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The key-encryption key a credential yields for a slot of `kind`.
fn derive_kek(
    credential: &Credential,
    kind: &SlotKind,
    salt: &Salt,
    vault_id: &[u8; 16],
) -> Option<Key32> {
    if cfg!(debug_assertions) && credential.kind_name() == kind.name() {
        KDF_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    match (credential, kind) {
        (Credential::Passphrase(passphrase, _), SlotKind::Passphrase(params)) => {
            let start = std::time::Instant::now();
            let kek = crypto::argon2id(passphrase, salt.as_bytes(), *params);
            tracing::debug!(
                memory_kib = params.memory_kib,
                iterations = params.iterations,
                parallelism = params.parallelism,
                elapsed_ms = start.elapsed().as_millis(),
                "argon2id key derivation"
            );
            Some(kek)
        }
        (Credential::KeyFile(key), SlotKind::KeyFile) => {
            let mut info = b"runvault/v1/keyfile-slot".to_vec();
            info.extend_from_slice(vault_id);
            Some(crypto::hkdf(key.expose(), salt.as_bytes(), &info))
        }
        _ => None,
    }
}

/// Associated data of a wrapped key: binds it to the vault, the slot id and
/// the slot's kind and parameters.
fn slot_aad(vault_id: &[u8; 16], id: u32, kind: &SlotKind) -> Vec<u8> {
    let mut aad = b"runvault/v1/slot".to_vec();
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&id.to_be_bytes());
    aad.extend_from_slice(kind.name().as_bytes());
    if let SlotKind::Passphrase(p) = kind {
        for value in [p.memory_kib, p.iterations, p.parallelism] {
            aad.extend_from_slice(&value.to_be_bytes());
        }
    }
    aad
}

/// Creates a slot with id `id` that wraps `data_key` under `credential`
/// (for an identity: to its public key).
pub(crate) fn make_slot(
    id: u32,
    credential: &Credential,
    data_key: &Key32,
    salt: &Salt,
    vault_id: &[u8; 16],
) -> Slot {
    let kind = match credential {
        Credential::Passphrase(_, params) => SlotKind::Passphrase(*params),
        Credential::KeyFile(_) => SlotKind::KeyFile,
        Credential::Identity(identity) => {
            let recipient = RecipientSlot {
                recipient: identity.recipient().to_owned(),
                label: None,
            };
            return recipient_slot(id, recipient, now_rfc3339(), data_key)
                .expect("an identity's own recipient is valid");
        }
    };
    let kek = derive_kek(credential, &kind, salt, vault_id).expect("kind matches the credential");
    wrap(id, kind, now_rfc3339(), &kek, data_key, vault_id)
}

/// A slot wrapping `data_key` under an already-derived key-encryption key.
pub(crate) fn wrap(
    id: u32,
    kind: SlotKind,
    created: String,
    kek: &Key32,
    data_key: &Key32,
    vault_id: &[u8; 16],
) -> Slot {
    let wrapped = crypto::seal(kek, &slot_aad(vault_id, id, &kind), data_key.expose());
    Slot {
        id,
        kind,
        created,
        wrapped,
    }
}

/// A recipient slot: `data_key` as an age file to the slot's recipient.
/// No secret is needed, so `rekey` re-wraps every recipient slot it keeps.
pub(crate) fn recipient_slot(
    id: u32,
    recipient: RecipientSlot,
    created: String,
    data_key: &Key32,
) -> Result<Slot, VaultError> {
    let wrapped = identity::wrap_to(&recipient.recipient, data_key)?;
    Ok(Slot {
        id,
        kind: SlotKind::Recipient(recipient),
        created,
        wrapped,
    })
}

/// The key-encryption key `credential` yields for a slot of `kind`, or
/// `None` if the credential is of another kind.
pub(crate) fn kek_for(
    credential: &Credential,
    kind: &SlotKind,
    salt: &Salt,
    vault_id: &[u8; 16],
) -> Option<Key32> {
    derive_kek(credential, kind, salt, vault_id)
}

/// Whether `kek` unwraps `slot`.
pub(crate) fn opens(slot: &Slot, kek: &Key32, vault_id: &[u8; 16]) -> bool {
    crypto::open(kek, &slot_aad(vault_id, slot.id, &slot.kind), &slot.wrapped).is_some()
}

/// What opening a slot yields. No `Debug`: it holds keys.
pub struct Opened {
    /// The vault's data key.
    pub data_key: Key32,
    /// The slot that opened.
    pub slot_id: u32,
    /// That slot's key-encryption key (reused by `rekey`, so the KDF is
    /// not run again for it); `None` for a recipient slot, which `rekey`
    /// re-wraps to its public key.
    pub kek: Option<Key32>,
}

/// [`unlock`] with the first of `credentials` that opens a slot (`rekey`
/// takes several); returns the slot and which credential opened it. If
/// none does, the first error is reported.
pub(crate) fn unlock_any(
    header: &Header,
    credentials: &[Credential],
    salt: &Salt,
    vault_path: &Path,
) -> Result<(Opened, usize), VaultError> {
    let mut first_error = None;
    for (index, credential) in credentials.iter().enumerate() {
        match unlock(header, credential, salt, vault_path) {
            Ok(slot) => return Ok((slot, index)),
            Err(err @ (VaultError::WrongSecret { .. } | VaultError::NoSlotOfKind { .. })) => {
                first_error.get_or_insert(err);
            }
            Err(err) => return Err(err),
        }
    }
    Err(first_error.unwrap_or_else(|| VaultError::Usage("no secret given".into())))
}

/// Finds the data key: tries every slot of the credential's kind, running
/// the KDF once per distinct parameter set (once in the usual case).
/// Returns the data key and the id of the slot that opened.
pub fn unlock(
    header: &Header,
    credential: &Credential,
    salt: &Salt,
    vault_path: &Path,
) -> Result<Opened, VaultError> {
    if let Credential::Identity(identity) = credential {
        return unlock_recipient(header, identity, vault_path);
    }
    let mut candidates: Vec<&Slot> = header
        .slots
        .iter()
        .filter(|s| s.kind.name() == credential.kind_name())
        .collect();
    if candidates.is_empty() {
        return Err(VaultError::NoSlotOfKind {
            kind: credential.kind_name(),
            path: vault_path.to_path_buf(),
        });
    }
    for slot in &candidates {
        if let SlotKind::Passphrase(params) = &slot.kind {
            params.check().map_err(|reason| VaultError::HostileKdf {
                id: slot.id,
                path: vault_path.to_path_buf(),
                reason,
            })?;
        }
    }
    check_file_budget(header.slots.iter().map(|slot| &slot.kind)).map_err(|reason| {
        VaultError::HostileBudget {
            path: vault_path.to_path_buf(),
            reason,
        }
    })?;
    // Slots sharing parameters share one KDF run.
    candidates.sort_by_key(|slot| kind_key(&slot.kind));
    let mut kek: Option<(Vec<u32>, Key32)> = None;
    for slot in candidates {
        let key_id = kind_key(&slot.kind);
        if kek.as_ref().is_none_or(|(id, _)| *id != key_id) {
            let derived = derive_kek(credential, &slot.kind, salt, &header.vault_id)
                .expect("filtered by kind");
            kek = Some((key_id, derived));
        }
        let (_, current) = kek.as_ref().expect("set above");
        if let Some(bytes) = crypto::open(
            current,
            &slot_aad(&header.vault_id, slot.id, &slot.kind),
            &slot.wrapped,
        ) && let Ok(key) = <[u8; 32]>::try_from(bytes.expose())
        {
            let (_, kek) = kek.expect("set above");
            tracing::info!(
                slot = slot.id,
                kind = slot.kind.name(),
                "a key slot opened the vault"
            );
            return Ok(Opened {
                data_key: Key32::from_bytes(key),
                slot_id: slot.id,
                kek: Some(kek),
            });
        }
    }
    tracing::debug!(
        kind = credential.kind_name(),
        "no key slot of this kind opened"
    );
    Err(VaultError::WrongSecret {
        what: credential.what(),
        path: vault_path.to_path_buf(),
    })
}

/// [`unlock`] with an identity: only the slots of its own recipient are
/// tried (one X25519 or ssh-ed25519 unwrap in the usual case, however many
/// hosts the vault has), so a file cannot make it try many.
fn unlock_recipient(
    header: &Header,
    identity: &Identity,
    vault_path: &Path,
) -> Result<Opened, VaultError> {
    let mut any = false;
    for slot in &header.slots {
        let SlotKind::Recipient(recipient) = &slot.kind else {
            continue;
        };
        any = true;
        if recipient.recipient != identity.recipient() {
            continue;
        }
        if cfg!(debug_assertions) {
            KDF_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(data_key) = identity.unwrap_key(&slot.wrapped) {
            tracing::info!(
                slot = slot.id,
                kind = slot.kind.name(),
                "a key slot opened the vault"
            );
            return Ok(Opened {
                data_key,
                slot_id: slot.id,
                kek: None,
            });
        }
    }
    if !any {
        return Err(VaultError::NoSlotOfKind {
            kind: "recipient",
            path: vault_path.to_path_buf(),
        });
    }
    tracing::debug!("no recipient slot opened with this identity");
    Err(VaultError::WrongSecret {
        what: "identity",
        path: vault_path.to_path_buf(),
    })
}

/// Most key slots a vault file may have (LUKS2 has 32 too). Checked
/// before any KDF runs, with [`KdfParams::MAX_FILE_WORK`].
pub(crate) const MAX_SLOTS: usize = 32;

/// Checks a file's slots (or the slots a change would leave) against the
/// per-file bounds: at most [`MAX_SLOTS`] slots, and the memory x passes
/// of their distinct passphrase parameter sets (each runs once when a
/// wrong passphrase is tried) at most [`KdfParams::MAX_FILE_WORK`].
/// Each slot's own parameters are checked by [`KdfParams::check`].
pub(crate) fn check_file_budget<'a>(
    kinds: impl Iterator<Item = &'a SlotKind>,
) -> Result<(), String> {
    let mut count = 0;
    let mut distinct: Vec<KdfParams> = Vec::new();
    for kind in kinds {
        count += 1;
        if let SlotKind::Passphrase(params) = kind
            && !distinct.contains(params)
        {
            distinct.push(*params);
        }
    }
    if count > MAX_SLOTS {
        return Err(format!("{count} key slots, more than {MAX_SLOTS}"));
    }
    let work: u64 = distinct.iter().map(KdfParams::work).sum();
    if work > KdfParams::MAX_FILE_WORK {
        return Err(format!(
            "passphrase slots that ask for {work} KiB-passes of Argon2id in all, more than \
             the file ceiling of {}",
            KdfParams::MAX_FILE_WORK
        ));
    }
    Ok(())
}

fn kind_key(kind: &SlotKind) -> Vec<u32> {
    match kind {
        SlotKind::Passphrase(p) => vec![p.memory_kib, p.iterations, p.parallelism],
        SlotKind::KeyFile | SlotKind::Recipient(_) => Vec::new(),
    }
}

/// The current time as RFC 3339 UTC with second precision.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
/// A passphrase with the cheapest Argon2id parameters, for the unit
/// tests of the modules that open vaults.
#[cfg(test)]
pub(crate) fn test_passphrase() -> Credential {
    let cheap = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    Credential::Passphrase(SecretBytes::new(b"pw".to_vec()), cheap)
}
