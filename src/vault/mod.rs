//! The vault: `vault.yml` with readable keys and encrypted values, unlocked
//! through key slots and authenticated as a whole.
//!
//! The modules are private; the names below are what the rest of the
//! crate may use. Anything else may change without a look outside
//! `vault/`. `docs/architecture.md` draws the layers, says which module
//! owns what and names the invariants that tie the streaming paths to the
//! tree paths; in short, each layer uses only the ones above it:
//!
//! 1. primitives: `path`, `tree`, `canonical` (the YAML layout), `value`,
//!    `yaml_error`, `crypto`, `salt`;
//! 2. the file: `format` (model, `read`, `write`, `mac`), then `error`;
//! 3. keys and history: `keys` (`slots`, `seal`, `versions`, `rotation`),
//!    `audit`, `mark`; the plaintext readers of `import` (`plaintext`,
//!    with its block reader);
//! 4. the opened vault: `unlocked`;
//! 5. the directory, read-only: `dir` ([`ReadOnlyDir`]);
//! 6. the streaming passes: `stream` (`select`, `splice`, `rekey`);
//! 7. the dispatchers: `read`, `export` (stream first, tree as fallback);
//! 8. the writer: `store` ([`VaultDir`]: lock, commit protocol, `receive`).
//!
//! `testing` (hidden) opens the internals to the integration tests, the
//! benchmark and the fuzz targets, and to nothing in `src/`.

#![warn(unreachable_pub)]

mod audit;
mod canonical;
mod crypto;
mod dir;
mod error;
mod export;
mod format;
mod keys;
mod mark;
mod path;
mod plaintext;
mod read;
mod salt;
mod store;
mod stream;
#[doc(hidden)]
pub mod testing;
mod tree;
mod unlocked;
mod value;
mod yaml_error;

// The directory: read-only for readers, with the lock and commits for writers.
pub use dir::{AUDIT_FILE, ReadOnlyDir, SALT_FILE, SALT_NEXT_FILE, VAULT_FILE, Warn};
pub use mark::Managed;
pub use store::{
    AfterCommit, CommitHook, InitOutcome, ReceiveOptions, Received, RekeyOptions, SetOutcome,
    VaultDir,
};
// An opened vault and rotation.
pub use keys::rotation::{RekeyPlan, RekeyReport};
pub use unlocked::{
    ALTERNATE_FIELDS, PolicyAge, UnlockedVault, VersionInfo, alternate_paths, policy_ages,
};
// Secrets, paths and values.
pub use crypto::{KdfOverride, KdfParams};
pub use keys::identity::{Identity, canonical_recipient, create_identity_file, read_identity_file};
pub use keys::slots::{Credential, create_key_file, kdf_runs, read_key_file};
pub use path::KeyPath;
pub use salt::Salt;
pub use value::{Plain, ScalarKind, typed_from_input};
// The file, for the doctor and `key list`.
pub use format::{
    DEFAULT_KEEP, EncryptedVault, Header, RecipientSlot, SlotKind, VaultFile, classify,
};
// Read-only commands: a few values, a whole prefix, an import file.
pub use export::{Format as RenderFormat, export, render_vault};
pub use plaintext::read_plain_yaml;
pub use read::{Lookup, Selected, Wanted, read_one, read_selected};
// Errors.
pub use error::VaultError;
