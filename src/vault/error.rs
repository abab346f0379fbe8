//! The vault's errors, each with its documented exit code. Messages name
//! paths and files, never values, passphrases or keys.

use std::path::PathBuf;

use crate::core::exit::{self, ExitStatus};
use crate::core::fs::FsError;
use crate::core::lock::LockError;
use crate::core::shell;
use crate::vault::format::FormatError;
use crate::vault::path::PathError;
use crate::vault::tree::PlaceError;
use crate::vault::value::PlainError;

/// Everything a vault operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// File access failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The writers' lock was not acquired.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A path argument is malformed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A value cannot be placed at a path.
    #[error(transparent)]
    Place(#[from] PlaceError),
    /// No vault in the directory.
    #[error(
        "no vault in `{dir}`: `vault.yml` does not exist; create one with `runvault init --dir {dir}`"
    )]
    NoVault {
        /// The vault directory.
        dir: PathBuf,
    },
    /// `vault.yml` is still the hand-made plaintext file.
    #[error(
        "`{}` is a plaintext vault, not encrypted; adopt it with `runvault init --dir {}`",
        .path.display(),
        shell::path(vault_dir_of(.path))
    )]
    Plaintext {
        /// The file.
        path: PathBuf,
    },
    /// A plaintext `vault.yml` where the directory shows that an encrypted
    /// vault was (exit 5): it may have been planted.
    #[error(
        "`{path}` is a plaintext vault, but `{dir}` held an encrypted vault ({evidence}): \
         the vault may have been replaced; find out who wrote it and restore the encrypted \
         vault.yml from a backup (`runvault init --force --dir {dir}` adopts the plaintext anyway)"
    )]
    Replaced {
        /// The plaintext file.
        path: PathBuf,
        /// The vault directory.
        dir: PathBuf,
        /// What shows that an encrypted vault was there.
        evidence: String,
    },
    /// An authentic vault older than the generation this host committed
    /// (exit 5): a whole older file was put back.
    #[error(
        "`{}` was rolled back: it is at generation {generation}, but this host committed \
         generation {mark} (high-water mark `{}`); restore the newest vault.yml, or if this older \
         copy was restored on purpose, accept it with \
         `runvault verify --accept-rollback --dir {} --state-dir {}`",
        .path.display(),
        .mark_path.display(),
        shell::path(vault_dir_of(.path)),
        shell::path(vault_dir_of(.mark_path))
    )]
    RolledBack {
        /// The vault file.
        path: PathBuf,
        /// The file's generation.
        generation: u64,
        /// The highest generation committed on this host.
        mark: u64,
        /// The mark file.
        mark_path: PathBuf,
    },
    /// A high-water mark file that is not one.
    #[error(
        "high-water mark `{}` is not a runvault mark (edited or corrupt); check who changed it, \
         then record the vault's generation with \
         `runvault verify --accept-rollback --dir {} --state-dir {}`",
        .path.display(),
        shell::path(.dir),
        shell::path(vault_dir_of(.path))
    )]
    BadMark {
        /// The mark file.
        path: PathBuf,
        /// The vault directory whose mark it is.
        dir: PathBuf,
    },
    /// A managed-host record that cannot be read as one.
    #[error(
        "managed-host record `{}` is not a runvault record (edited or corrupt); check who changed \
         it, then remove it or run `runvault receive` again",
        .path.display()
    )]
    BadManaged {
        /// The record file.
        path: PathBuf,
    },
    /// `receive`: the shipped vault is not newer than what this host has
    /// (exit 9): a replay of an old file, or a stale copy.
    #[error(
        "refusing to install generation {incoming} from `{}`: {what} is at generation {current}; \
         an older or equal generation is a replay (ship the current source vault)",
        .staged.display()
    )]
    Replay {
        /// The shipped `vault.yml`.
        staged: PathBuf,
        /// Its generation.
        incoming: u64,
        /// What it was compared with ("the installed vault `…`" or "this
        /// host's high-water mark `…`").
        what: String,
        /// That one's generation.
        current: u64,
    },
    /// `receive`: the shipped vault is another vault (exit 5).
    #[error(
        "refusing to install `{}`: it is vault {incoming}, but `{}` holds vault {installed}; \
         pass --replace-vault if this host moves to the other vault",
        .staged.display(),
        .installed_path.display()
    )]
    OtherVault {
        /// The shipped `vault.yml`.
        staged: PathBuf,
        /// Its vault id (hex).
        incoming: String,
        /// The installed `vault.yml`.
        installed_path: PathBuf,
        /// Its vault id (hex).
        installed: String,
    },
    /// `receive`: the same generation with other bytes (exit 5).
    #[error(
        "refusing to install `{}`: it is generation {generation}, as `{}` is, but the files \
         differ; two vaults with one generation mean one was not made by the source",
        .staged.display(),
        .installed_path.display()
    )]
    GenerationDiffers {
        /// The shipped `vault.yml`.
        staged: PathBuf,
        /// The installed `vault.yml`.
        installed_path: PathBuf,
        /// The generation both claim.
        generation: u64,
    },
    /// The vault file is corrupt or not a runvault vault (exit 5).
    #[error("`{path}` is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
    /// A vault written by a newer runvault (exit 1: nothing is wrong with it).
    #[error("`{path}`: {source}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The version problem.
        #[source]
        source: FormatError,
    },
    /// `vault.salt` is missing while `vault.yml` exists.
    #[error("`{path}` is missing; the vault cannot be opened without the salt it was created with")]
    SaltMissing {
        /// The salt file.
        path: PathBuf,
    },
    /// `vault.salt` is not the one the vault was made with.
    #[error(
        "`{path}` does not belong to this vault (salt id mismatch): restore the vault.salt \
         that was created with this vault.yml"
    )]
    SaltMismatch {
        /// The salt file.
        path: PathBuf,
    },
    /// No slot opens with the given secret.
    #[error("wrong {what}: no key slot of `{path}` opens with it")]
    WrongSecret {
        /// "passphrase" or "key file".
        what: &'static str,
        /// The vault file.
        path: PathBuf,
    },
    /// The vault has no slot of the kind the given secret needs.
    #[error(
        "`{}` has no {kind} slot; unlock with another secret, then add one with `runvault key add \
         {} --dir {}`",
        .path.display(),
        add_slot_words(.kind),
        shell::path(vault_dir_of(.path))
    )]
    NoSlotOfKind {
        /// "passphrase" or "keyfile".
        kind: &'static str,
        /// The vault file.
        path: PathBuf,
    },
    /// A slot's stored KDF parameters are out of bounds.
    #[error(
        "key slot {id} of `{path}` asks for unsafe Argon2id parameters ({reason}); refusing to run them"
    )]
    HostileKdf {
        /// The slot id.
        id: u32,
        /// The vault file.
        path: PathBuf,
        /// Which bound was exceeded.
        reason: String,
    },
    /// The file's slots together are over the per-file KDF bounds.
    #[error("`{path}` asks for too much key derivation work ({reason}); refusing to run it")]
    HostileBudget {
        /// The vault file.
        path: PathBuf,
        /// Which bound was exceeded.
        reason: String,
    },
    /// `vault.salt` is too short for Argon2id: runvault never writes one.
    #[error(
        "`{path}` is {len} bytes, shorter than the 8 bytes a salt must have; it is not a salt \
         runvault made: restore the vault.salt that was created with this vault.yml"
    )]
    ShortSalt {
        /// The salt file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The file MAC does not match: entries or header fields were changed.
    #[error(
        "`{path}` failed authentication: the file was modified outside runvault \
         (entries added, removed, moved or edited) or is corrupt; restore it from a backup"
    )]
    MacMismatch {
        /// The vault file.
        path: PathBuf,
    },
    /// One value does not decrypt under its path.
    #[error(
        "value at `{key}` in `{path}` failed to decrypt: it was tampered with or moved from another path"
    )]
    ValueTampered {
        /// The key path.
        key: String,
        /// The vault file.
        path: PathBuf,
    },
    /// The path does not exist.
    #[error("path `{key}` not found in the vault")]
    NotFound {
        /// The key path.
        key: String,
    },
    /// The path is a mapping or list, not a value.
    #[error(
        "`{key}` is a {kind}, not a value; use `runvault list {} --dir {}` or \
         `runvault export {} --dir {}`",
        shell::word(.key),
        shell::path(.dir),
        shell::word(.key),
        shell::path(.dir)
    )]
    NotAValue {
        /// The key path.
        key: String,
        /// "mapping" or "list".
        kind: &'static str,
        /// The vault directory (for the hint).
        dir: PathBuf,
    },
    /// Plaintext YAML that cannot be stored.
    #[error("`{file}`: {source}")]
    Plain {
        /// The file being imported or adopted.
        file: PathBuf,
        /// What is wrong.
        #[source]
        source: PlainError,
    },
    /// A plaintext YAML file that does not parse.
    #[error("`{file}` is not valid YAML: {message}")]
    BadYaml {
        /// The file.
        file: PathBuf,
        /// What is wrong, where (from `yaml_error::describe`:
        /// line, column and path, never a value).
        message: String,
    },
    /// A key file that is not a runvault key.
    #[error(
        "`{path}` is not a runvault key file (expected 64 hex characters, as `runvault keygen` writes)"
    )]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
    },
    /// An identity file that is not an age identity or an unencrypted
    /// OpenSSH ed25519 key (the message never quotes the file).
    #[error(
        "`{}` is not an identity runvault can use: {reason}; create one with \
         `runvault keygen --identity FILE`",
        .path.display()
    )]
    BadIdentity {
        /// The identity file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A recipient (public key) that cannot be used.
    #[error("`{recipient}` is not a recipient: {reason}")]
    BadRecipient {
        /// The text given (public; cut to 100 characters).
        recipient: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A slot id that does not exist.
    #[error("no key slot with id {id}; see `runvault key list --dir {}`", shell::path(.dir))]
    NoSuchSlot {
        /// The id asked for.
        id: u32,
        /// The vault directory (for the hint).
        dir: PathBuf,
    },
    /// Refusing to remove the only slot.
    #[error(
        "refusing to remove slot {id}: it is the last key slot, and the vault could never be opened again"
    )]
    LastSlot {
        /// The id asked for.
        id: u32,
    },
    /// An operation that needs a passphrase slot was pointed at another kind.
    #[error("slot {id} is a {kind} slot; `key passwd` changes passphrase slots only")]
    NotPassphraseSlot {
        /// The slot id.
        id: u32,
        /// Its kind.
        kind: &'static str,
    },
    /// A check-and-set write found another version (exit 8).
    #[error(
        "`{key}` is at version {current}, not {expected}; nothing was changed (re-read it and retry)"
    )]
    VersionConflict {
        /// The key path.
        key: String,
        /// The version the caller expected.
        expected: u32,
        /// The version it has.
        current: u32,
    },
    /// A stored version that does not exist (pruned or never set).
    #[error(
        "`{key}` has no stored version {version}; see `runvault history {} --dir {}`",
        shell::word(.key),
        shell::path(.dir)
    )]
    NoSuchVersion {
        /// The key path.
        key: String,
        /// The version asked for.
        version: u32,
        /// The vault directory (for the hint).
        dir: PathBuf,
    },
    /// `rekey` was not given the secret of every slot.
    #[error(
        "rekey needs the secret of every key slot it keeps; no given secret opens slot(s) {}: pass them with \
         --also-passphrase-file / --also-key-file, or remove those slots with --drop-others",
        ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )]
    SlotsNotOpened {
        /// The slots no secret opened.
        ids: Vec<u32>,
    },
    /// A rotation is already pending at the path (exit 8).
    #[error(
        "`{key}` has a pending rotation (version {version}); finish it with \
         `runvault rotate {key} --resume` or drop it with `runvault rotate {key} --abort`"
    )]
    Pending {
        /// The key path.
        key: String,
        /// The version the pending value would take.
        version: u32,
    },
    /// No rotation is pending at the path (exit 3).
    #[error("`{key}` has no pending rotation; see `runvault history {key}`")]
    NoPending {
        /// The key path.
        key: String,
    },
    /// Bad input given by the user (exit 2).
    #[error("{0}")]
    Usage(String),
    /// An export that the chosen format cannot represent.
    #[error("{0}")]
    Unrepresentable(String),
}

impl ExitStatus for VaultError {
    fn exit_code(&self) -> u8 {
        match self {
            VaultError::Fs(err) => err.exit_code(),
            VaultError::Lock(err) => err.exit_code(),
            VaultError::Path(_)
            | VaultError::Usage(_)
            | VaultError::NotAValue { .. }
            | VaultError::BadRecipient { .. }
            | VaultError::SlotsNotOpened { .. } => exit::USAGE,
            VaultError::NotFound { .. }
            | VaultError::NoSuchVersion { .. }
            | VaultError::NoPending { .. } => exit::NOT_FOUND,
            VaultError::VersionConflict { .. } | VaultError::Pending { .. } => exit::CONFLICT,
            VaultError::WrongSecret { .. } | VaultError::NoSlotOfKind { .. } => exit::WRONG_SECRET,
            VaultError::Corrupt { .. }
            | VaultError::SaltMissing { .. }
            | VaultError::SaltMismatch { .. }
            | VaultError::HostileKdf { .. }
            | VaultError::HostileBudget { .. }
            | VaultError::ShortSalt { .. }
            | VaultError::MacMismatch { .. }
            | VaultError::ValueTampered { .. }
            | VaultError::Replaced { .. }
            | VaultError::RolledBack { .. }
            | VaultError::OtherVault { .. }
            | VaultError::GenerationDiffers { .. } => exit::INTEGRITY,
            VaultError::Replay { .. } => exit::REPLAY,
            VaultError::Place(_)
            | VaultError::NoVault { .. }
            | VaultError::Plaintext { .. }
            | VaultError::Unsupported { .. }
            | VaultError::Plain { .. }
            | VaultError::BadYaml { .. }
            | VaultError::BadKeyFile { .. }
            | VaultError::BadIdentity { .. }
            | VaultError::BadMark { .. }
            | VaultError::BadManaged { .. }
            | VaultError::NoSuchSlot { .. }
            | VaultError::LastSlot { .. }
            | VaultError::NotPassphraseSlot { .. }
            | VaultError::Unrepresentable(_) => exit::OTHER,
        }
    }
}

/// The directory of a file (the vault directory of a `vault.yml`, the
/// state directory of a mark), for hints that name it.
/// The `key add` words that add a slot of `kind` (a slot kind's name).
fn add_slot_words(kind: &str) -> &'static str {
    match kind {
        "passphrase" => "passphrase",
        "keyfile" => "keyfile FILE",
        _ => "recipient RECIPIENT",
    }
}

pub(crate) fn vault_dir_of(vault_file: &std::path::Path) -> &std::path::Path {
    match vault_file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    }
}
