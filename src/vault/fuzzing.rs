//! The two vault file readers, each on its own, for the fuzz targets under
//! `tests/fuzz/` (see docs/fuzzing.md). Not part of the supported API:
//! [`EncryptedVault::parse`] is what callers use; it tries the fast reader
//! and falls back to the general one, so on its own it cannot show that the
//! two agree.

use crate::vault::format::{self, EncryptedVault, FormatError, VaultFile};

/// The fast canonical reader alone: `None` for anything it does not take.
pub fn read_fast(bytes: &[u8]) -> Option<EncryptedVault> {
    format::read_canonical(bytes)
}

/// The general (serde_yaml) reader alone, with its verdict.
pub fn read_general(bytes: &[u8]) -> Result<VaultFile, FormatError> {
    format::classify_general(bytes)
}
