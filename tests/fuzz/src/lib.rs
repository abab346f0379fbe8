//! What the fuzz targets share: the round-trip check of the vault writer,
//! and the committed fixture vault (`fixtures/vault-v1`) with its machine
//! key and salt, so that the streaming reader can be driven past the slot.

use runvault::core::secret::Key32;
use runvault::vault::Credential;
use runvault::core::hex::unhex;
use runvault::vault::testing::format::EncryptedVault;
use runvault::vault::testing::fuzzing::read_fast;

#[path = "../../properties/selection.rs"]
pub mod selection;

/// The fixture's `vault.salt`.
pub const FIXTURE_SALT: &[u8] = include_bytes!("../../../fixtures/vault-v1/vault.salt");
/// The fixture's machine key file (hex, then a newline).
const FIXTURE_KEY: &[u8] = include_bytes!("../../../fixtures/vault-v1/test-only.key");

/// The fixture's machine key as a credential.
pub fn fixture_credential() -> Credential {
    let hex = std::str::from_utf8(FIXTURE_KEY).expect("the key file is hex text");
    let bytes = unhex(hex.trim()).expect("the key file is hex");
    Credential::KeyFile(Key32::from_bytes(
        bytes.try_into().expect("the key file holds 32 bytes"),
    ))
}

/// Whatever a reader took, the writer writes in the canonical layout, and
/// the fast reader reads that back as the same vault.
pub fn assert_writes_back(vault: &EncryptedVault) {
    let written = vault.to_canonical();
    match read_fast(&written) {
        Some(again) => assert_eq!(&again, vault, "the written vault reads back differently"),
        None => panic!(
            "the fast reader refuses what the writer wrote:\n{}",
            String::from_utf8_lossy(&written)
        ),
    }
}
