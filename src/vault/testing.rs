//! Internals for the integration tests, the property tests, the benchmark
//! and the fuzz targets (`tests/fuzz/`, docs/fuzzing.md): the one way
//! from outside the crate to the pieces behind the public surface of
//! [`crate::vault`], each under the name of the module it lives in. Only
//! what those callers use is here, so `unreachable_pub` still finds what
//! nothing outside the vault needs. Not part of the supported API:
//! nothing in `src/` outside `vault/` uses it, and it may change with any
//! commit.

/// The audit log.
pub mod audit {
    pub use crate::vault::audit::AuditChange;
}

/// The canonical layout's reader.
pub mod canonical {
    pub use crate::vault::canonical::parse;
}

/// AES-256-GCM, Argon2id, HKDF, HMAC.
pub mod crypto {
    pub use crate::vault::crypto::{KdfOverride, KdfParams, Subkeys, argon2id};
}

/// `export` and the renderers.
pub mod export {
    pub use crate::vault::export::{Format, export, render_tree_yaml, render_vault};
}

/// The vault file model, its readers, writer and MAC.
pub mod format {
    pub use crate::vault::format::{
        DEFAULT_KEEP, EncryptedVault, Reader, Sealed, SlotKind, VaultFile, compute_mac,
        raw_from_general,
    };
}

/// Key paths.
pub mod path {
    pub use crate::vault::path::Segment;
}

/// The linear block-style reader of plaintext YAML.
pub mod plain_block {
    pub use crate::vault::plaintext::block::read;
}

/// The plaintext YAML readers of `import`.
pub mod plaintext {
    pub use crate::vault::plaintext::read_general;
}

/// The read dispatcher (streaming reader first, tree reader as fallback).
pub mod read {
    pub use crate::vault::read::{Lookup, Selected, Wanted, read_selected, read_selected_tree};
}

/// The streaming writer of `rekey` alone.
pub mod rekey {
    pub use crate::vault::stream::rekey::rekey;
}

/// `vault.salt`.
pub mod salt {
    pub use crate::vault::salt::Salt;
}

/// The key slots.
pub mod slots {
    pub use crate::vault::keys::slots::unlock;
}

/// The streaming writer of `set` alone.
pub mod splice {
    pub use crate::vault::stream::splice::{SetEdit, set};
}

/// The tree shape.
pub mod tree {
    pub use crate::vault::tree::Tree;
}

/// Plaintext values.
pub mod value {
    pub use crate::vault::value::{Plain, parse_plain_yaml, tree_from_yaml};
}

/// The streaming reader alone.
pub mod stream {
    pub use crate::vault::stream::leading_header;
    pub use crate::vault::stream::select::{Outcome, read};
}

/// Each vault file reader on its own. [`EncryptedVault::parse`] tries the
/// fast reader and falls back to the general one, so on its own it cannot
/// show that the two agree.
///
/// [`EncryptedVault::parse`]: crate::vault::format::EncryptedVault::parse
pub mod fuzzing {
    use crate::vault::format::{self, EncryptedVault, FormatError, VaultFile};

    /// The fast canonical reader alone: `None` for anything it does not take.
    pub fn read_fast(bytes: &[u8]) -> Option<EncryptedVault> {
        format::read_canonical(bytes)
    }

    /// The general (serde_yaml) reader alone, with its verdict.
    pub fn read_general(bytes: &[u8]) -> Result<VaultFile, FormatError> {
        format::classify_general(bytes)
    }
}
