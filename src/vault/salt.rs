//! `vault.salt`: the per-host salt every key slot is derived with.
//!
//! runvault writes 32 bytes from the OS RNG as 64 hex characters (text, like
//! the hand-made file, so tools that read it as text keep working). The salt
//! material is the file's exact bytes; its id (a hash) is stored in the vault
//! header so a mismatched salt is detected instead of misread.

use sha2::{Digest, Sha256};

use crate::core::hex::hex;
use crate::vault::crypto::random_bytes;

/// Fewer bytes of entropy than this make a salt weak (the hand-made
/// `echo $RANDOM | md5sum | head -c 20` salt has 20 hex characters, 10 bytes).
pub(super) const MIN_STRENGTH_BYTES: usize = 16;

/// The shortest salt Argon2id takes (RFC 9106); a vault whose salt is
/// shorter is refused before any key is derived (runvault never writes
/// one: a weak salt is replaced by `init`).
pub(super) const MIN_SALT_BYTES: usize = 8;

/// The salt's bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Salt(Vec<u8>);

impl Salt {
    /// A new salt: 32 random bytes, hex-encoded.
    pub fn generate() -> Salt {
        Salt(hex(&random_bytes::<32>()).into_bytes())
    }

    /// The salt from the file's bytes.
    pub fn from_file_bytes(bytes: Vec<u8>) -> Salt {
        Salt(bytes)
    }

    /// The bytes written to `vault.salt` and fed to the KDFs.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id stored in the header: the first 16 bytes of
    /// SHA-256("runvault/v1/salt-id" || salt).
    pub fn id(&self) -> [u8; 16] {
        let digest = Sha256::new()
            .chain_update(b"runvault/v1/salt-id")
            .chain_update(&self.0)
            .finalize();
        digest[..16].try_into().expect("SHA-256 is 32 bytes")
    }

    /// Estimated bytes of entropy: hex text counts half its length.
    pub fn strength_bytes(&self) -> usize {
        let trimmed = self.0.trim_ascii();
        if !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_hexdigit) {
            trimmed.len() / 2
        } else {
            trimmed.len()
        }
    }

    /// Whether the salt is too weak to keep (under `MIN_STRENGTH_BYTES` bytes of strength).
    pub fn is_weak(&self) -> bool {
        self.strength_bytes() < MIN_STRENGTH_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_salt_is_weak_generated_is_strong() {
        assert!(Salt::from_file_bytes(b"3f1c9a0b7d2e4c6a8b1f".to_vec()).is_weak());
        let salt = Salt::generate();
        assert_eq!(salt.as_bytes().len(), 64);
        assert_eq!(salt.strength_bytes(), 32);
        assert!(!salt.is_weak());
        assert_ne!(salt.id(), Salt::generate().id());
    }
}
