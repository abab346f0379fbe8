//! Value encryption: how one value is sealed at its path, version and
//! time under the value key and opened again (AES-256-GCM with the path,
//! version, time and vault id as associated data), the vault's sealed
//! audit key, and the audit HMAC of a value. Every reader and writer, tree
//! or streaming, seals and opens values here.

use std::path::Path;

use crate::core::hex::hex;
use crate::core::secret::{Key32, SecretBytes};
use crate::vault::crypto::{KeyedMac, Subkeys, ValueCipher};
use crate::vault::error::VaultError;
use crate::vault::format::{Header, Sealed, SealedParts};
use crate::vault::path::KeyPath;
use crate::vault::value::Plain;

/// Associated data of a value: binds it to the vault, its version, its
/// time and its path.
fn value_aad(vault_id: &[u8; 16], path: &KeyPath, version: u32, time: u64) -> Vec<u8> {
    const DOMAIN: &[u8] = b"runvault/v1/value";
    let mut aad = Vec::with_capacity(DOMAIN.len() + 16 + 4 + 8 + path.encoded_len());
    aad.extend_from_slice(DOMAIN);
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(&time.to_be_bytes());
    path.encode(&mut aad);
    aad
}

/// Seals `value` as version `version` of `path`, set at `time`, in the
/// vault `vault_id` under the value key `enc` (a fresh random nonce).
pub(crate) fn seal_at(
    enc: &ValueCipher,
    vault_id: &[u8; 16],
    path: &KeyPath,
    value: &Plain,
    version: u32,
    time: u64,
) -> Sealed {
    let blob = enc.seal_parts(
        &value_aad(vault_id, path, version, time),
        &value.tagged_parts(),
    );
    Sealed::new(version, time, &blob)
}

/// The audit HMAC of `value` at `path` under the audit key (see
/// [`UnlockedVault::audit_hmac`]), in hex.
pub(crate) fn value_hmac(audit_key: &KeyedMac, path: &KeyPath, value: &Plain) -> String {
    hex(&value_hmac_bytes(audit_key, path, value))
}

/// [`value_hmac`] as bytes (how audit entries keep it until written).
pub(crate) fn value_hmac_bytes(audit_key: &KeyedMac, path: &KeyPath, value: &Plain) -> [u8; 32] {
    let mut mac = audit_key.start();
    let mut encoded = Vec::new();
    path.encode(&mut encoded);
    mac.bytes(b"runvault/v1/audit-value");
    mac.bytes(&encoded);
    // The tagged plaintext as one length-prefixed field.
    let parts = value.tagged_parts();
    mac.u64(parts.iter().map(|part| part.len() as u64).sum());
    parts.iter().for_each(|part| mac.raw(part));
    mac.finish()
}

/// Opens the sealed audit key of the vault `header` under the value key
/// `enc`; a failure is reported as tampering in `vault_path`.
pub(crate) fn open_audit_key(
    enc: &ValueCipher,
    header: &Header,
    vault_path: &Path,
) -> Result<Key32, VaultError> {
    let corrupt = || VaultError::ValueTampered {
        key: "runvault.audit_key".into(),
        path: vault_path.to_path_buf(),
    };
    let parts = header.audit_key.parts().ok_or_else(corrupt)?;
    let bytes = enc
        .open(&audit_key_aad(&header.vault_id), &parts.blob)
        .ok_or_else(corrupt)?;
    let key: [u8; 32] = bytes.expose().try_into().map_err(|_| corrupt())?;
    Ok(Key32::from_bytes(key))
}

/// Decrypts the value sealed at `path` in the vault `vault_id` under the
/// value key `enc`; any mismatch (key, path, version, bytes) is reported as
/// tampering with the value at `path` in `vault_path`.
pub(crate) fn open_sealed(
    enc: &ValueCipher,
    vault_id: &[u8; 16],
    path: &KeyPath,
    sealed: &Sealed,
    vault_path: &Path,
) -> Result<Plain, VaultError> {
    open_sealed_text(enc, vault_id, path, &sealed.0, vault_path)
}

/// [`open_sealed`] on the text of a sealed value as the file has it.
pub(crate) fn open_sealed_text(
    enc: &ValueCipher,
    vault_id: &[u8; 16],
    path: &KeyPath,
    text: &str,
    vault_path: &Path,
) -> Result<Plain, VaultError> {
    open_sealed_versioned(enc, vault_id, path, text, vault_path).map(|(plain, _, _)| plain)
}

/// [`open_sealed_text`], with the value's version and time.
pub(crate) fn open_sealed_versioned(
    enc: &ValueCipher,
    vault_id: &[u8; 16],
    path: &KeyPath,
    text: &str,
    vault_path: &Path,
) -> Result<(Plain, u32, u64), VaultError> {
    let tampered = || VaultError::ValueTampered {
        key: path.to_string(),
        path: vault_path.to_path_buf(),
    };
    let parts = SealedParts::parse(text).ok_or_else(tampered)?;
    let aad = value_aad(vault_id, path, parts.version, parts.time);
    let tagged = enc.open_owned(&aad, parts.blob).ok_or_else(tampered)?;
    let plain = Plain::from_tagged(tagged).ok_or_else(tampered)?;
    Ok((plain, parts.version, parts.time))
}

fn audit_key_aad(vault_id: &[u8; 16]) -> Vec<u8> {
    let mut aad = b"runvault/v1/audit-key".to_vec();
    aad.extend_from_slice(vault_id);
    aad
}

pub(crate) fn seal_audit_key(subkeys: &Subkeys, vault_id: &[u8; 16], audit_key: &Key32) -> Sealed {
    let bytes = SecretBytes::new(audit_key.expose().to_vec());
    Sealed::new(
        0,
        0,
        &subkeys.enc.seal(&audit_key_aad(vault_id), bytes.expose()),
    )
}
