//! Where runvault's files live on a runner host by default, and where jobs
//! find them: one place for the paths that the vault commands, `runner
//! configure`/`install` and `doctor` must agree on.

use std::path::PathBuf;

/// The machine key file when `--key-file` is not given. Its directory is
/// mounted read-only into jobs at the same path.
pub const DEFAULT_KEY_FILE: &str = "/etc/runvault/vault.key";

/// The host's age identity when `keygen --identity` is given no file
/// (and the layout names none); opens the vault's recipient slot.
pub const DEFAULT_IDENTITY_FILE: &str = "/etc/runvault/host.key";

/// The environment variable naming the identity file (`--identity`).
pub const IDENTITY_ENV: &str = "RUNVAULT_IDENTITY";

/// The directory holding the static runvault binary jobs run, mounted
/// read-only into jobs at the same path (`--bin-dir`).
pub const DEFAULT_BIN_DIR: &str = "/opt/runvault/bin";

/// The binary's file name inside the bin directory.
pub const BINARY_NAME: &str = "runvault";

/// Where jobs see the secrets directory (`DATAOPS_SECRETS_DIR` defaults to
/// it); the host's secrets directory is mounted there read-only.
pub const SECRETS_TARGET: &str = "/secrets";

/// The variable naming the vault directory (the global `--dir`).
pub const DIR_ENV: &str = "RUNVAULT_DIR";

/// The variable naming the machine key file (the global `--key-file`).
pub const KEY_FILE_ENV: &str = "RUNVAULT_KEY_FILE";

/// Where root keeps the rollback high-water marks when `--state-dir` is not
/// given: outside the secrets directory, which is mounted into jobs and
/// writable by whoever could put an older vault back.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/runvault";

/// The state directory when `--state-dir` (or `RUNVAULT_STATE_DIR`) is not
/// given: [`DEFAULT_STATE_DIR`] for root; for anyone else their own XDG
/// state directory (`$XDG_STATE_HOME/runvault`, else
/// `$HOME/.local/state/runvault`), which they can write and the users they
/// share a host with cannot. Without a home, [`DEFAULT_STATE_DIR`].
pub fn default_state_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from(DEFAULT_STATE_DIR);
    }
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    if let Some(state_home) = absolute("XDG_STATE_HOME") {
        return state_home.join("runvault");
    }
    match absolute("HOME") {
        Some(home) => home.join(".local/state/runvault"),
        None => PathBuf::from(DEFAULT_STATE_DIR),
    }
}
