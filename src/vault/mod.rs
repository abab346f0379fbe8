//! The vault: `vault.yml` with readable keys and encrypted values, unlocked
//! through key slots and authenticated as a whole.
//!
//! - [`path`]: dotted key paths and their binary encoding.
//! - [`tree`]: the ordered tree shape every view of the vault shares.
//! - [`value`]: plaintext scalars with their YAML type.
//! - [`crypto`]: AES-256-GCM, Argon2id, HKDF, HMAC.
//! - [`salt`], [`slots`]: `vault.salt` and the key slots.
//! - [`canonical`], [`format`](mod@format): the file layout, its fast reader and the MAC.
//! - [`unlocked`]: operations on an opened vault.
//! - [`export`]: every value under a prefix, decrypted and rendered.
//! - [`plaintext`], [`plain_block`]: plaintext YAML read straight into
//!   values (`import`): the linear block-style reader, else serde_yaml.
//! - [`yaml_error`]: serde_yaml's errors as messages without a value.
//! - [`read`]: read-only selection of a few values (`get`, `exec`, `render`).
//! - [`stream`]: the streaming reader behind it (one pass, no tree).
//! - [`splice`]: the streaming writer of a one-path change (`set`).
//! - [`rekey`]: a new data key, every value re-encrypted (tree or stream).
//! - [`store`]: the directory on disk, locking and atomic commits.
//! - [`audit`]: the append-only audit log of changes.
//! - [`mark`]: the rollback high-water mark, outside the directory.
//! - `fuzzing` (hidden): each file reader on its own, for the fuzz targets.

pub mod audit;
pub mod canonical;
pub mod crypto;
pub mod error;
pub mod export;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod mark;
pub mod path;
pub mod plain_block;
pub mod plaintext;
pub mod read;
pub mod rekey;
pub mod salt;
pub mod slots;
pub mod splice;
pub mod store;
pub mod stream;
pub mod tree;
pub mod unlocked;
pub mod value;
pub mod yaml_error;

pub use error::VaultError;
pub use path::KeyPath;
pub use slots::Credential;
pub use store::{InitOutcome, VaultDir};
pub use unlocked::{RekeyPlan, RekeyReport, UnlockedVault, VersionInfo};
pub use value::Plain;
