//! The clap definition of the Argon2id options (raw input only; `input`
//! validates them), shared by every command that makes a passphrase slot:
//! `init`, `key add`, `key passwd`, `rekey` and `runner install`; and of
//! `--allow-short-passphrase`, for those that take a new passphrase.
//!
//! Its own file so that the command definitions read downward:
//! `kdf_args` ← `runner_args` ← `args` (the top-level `Command` holds the
//! runner commands, and both take these options).

use clap::Args;

// Argon2id parameters for new passphrase slots. (A `//` comment: see the
// note on `defer` at `args::Command`.)
#[derive(Debug, Clone, Args)]
pub struct KdfArgs {
    /// Argon2id memory in KiB (default 65536, i.e. 64 MiB).
    #[arg(long, value_name = "KIB")]
    pub kdf_memory: Option<u32>,
    /// Argon2id passes (default 3).
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
    /// Argon2id lanes (default 4).
    #[arg(long, value_name = "N")]
    pub kdf_parallelism: Option<u32>,
}

// Whether a new passphrase may be short (`init`, `key add passphrase`,
// `key passwd`). (A `//` comment: see the note on `defer` at
// `args::Command`.)
#[derive(Debug, Clone, Args)]
pub struct ShortPassphraseArgs {
    /// Accept a new passphrase shorter than 12 characters (a throwaway or test vault).
    #[arg(long)]
    pub allow_short_passphrase: bool,
}
