//! What resolving references can fail with. Messages name variables,
//! templates and vault paths, never a value.

use crate::core::exit::{self, ExitStatus};
use crate::core::fs::FsError;
use crate::jobs::reference::ReferenceError;
use crate::vault::VaultError;

/// Everything `exec` and `render` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// A `DATAOPS_VAULT(` that is not a well-formed reference (exit 2).
    #[error("malformed reference in {place}: {source}; write it as `DATAOPS_VAULT(PATH.TO.VALUE)`")]
    Malformed {
        /// Where: "variable `NAME`" or "`FILE` line N".
        place: String,
        /// What is wrong.
        #[source]
        source: ReferenceError,
    },
    /// A referenced path that is not in the vault (exit 3).
    #[error(
        "{place} references `{key}`, which is not in the vault; check the path with `runvault list`"
    )]
    Missing {
        /// Where the reference is.
        place: String,
        /// The vault path.
        key: String,
    },
    /// A reference to a mapping or list (exit 2).
    #[error(
        "{place} references `{key}`, which is a {kind}, not a value; reference a value under it, \
         or use `runvault exec --export {key}`"
    )]
    NotAValue {
        /// Where the reference is.
        place: String,
        /// The vault path.
        key: String,
        /// "mapping" or "list".
        kind: &'static str,
    },
    /// An `--export` prefix that is not in the vault (exit 3).
    #[error("--export `{prefix}`: path not found in the vault; check it with `runvault list`")]
    ExportMissing {
        /// The prefix.
        prefix: String,
    },
    /// Two exported values that map to one variable name (exit 2).
    #[error(
        "--export: `{first}` and `{second}` both become the variable `{name}`; \
         export a narrower prefix or rename one of the keys"
    )]
    ExportCollision {
        /// The variable name.
        name: String,
        /// The first path.
        first: String,
        /// The second path.
        second: String,
    },
    /// A value an environment variable cannot hold (exit 1).
    #[error(
        "{place}: the value at `{key}` contains a NUL byte, which an environment variable cannot hold; \
         use `runvault render` or `runvault get` for it"
    )]
    NulInValue {
        /// Where the reference (or export) is.
        place: String,
        /// The vault path.
        key: String,
    },
    /// `--only` naming a variable the CI system sets (exit 2).
    #[error(
        "--only `{name}`: variables matching `{rule}` are set by the CI system and are never \
         resolved; give your variable a name outside that list (see docs/jobs.md)"
    )]
    OnlyCiSet {
        /// The variable name.
        name: String,
        /// The table entry it matches (`CI_*`).
        rule: String,
    },
    /// `--only` naming a variable that is not in the environment (exit 2).
    #[error("--only `{name}`: no such variable in the environment; check its name in the job")]
    OnlyUnset {
        /// The variable name.
        name: String,
    },
    /// The command could not be started (exit 127 if not found, else 126).
    #[error("cannot run `{program}`: {source}; check the command name and PATH")]
    Exec {
        /// The program as given.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Reading a template or writing the output failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl ExitStatus for JobsError {
    fn exit_code(&self) -> u8 {
        match self {
            JobsError::Malformed { .. }
            | JobsError::NotAValue { .. }
            | JobsError::ExportCollision { .. }
            | JobsError::OnlyCiSet { .. }
            | JobsError::OnlyUnset { .. } => exit::USAGE,
            JobsError::Missing { .. } | JobsError::ExportMissing { .. } => exit::NOT_FOUND,
            JobsError::NulInValue { .. } => exit::OTHER,
            JobsError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                exit::COMMAND_NOT_FOUND
            }
            JobsError::Exec { .. } => exit::COMMAND_NOT_EXECUTABLE,
            JobsError::Vault(err) => err.exit_code(),
            JobsError::Fs(err) => err.exit_code(),
        }
    }
}
