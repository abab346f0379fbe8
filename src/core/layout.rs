//! Where runvault's files live on a runner host by default, and where jobs
//! find them: one place for the paths that the vault commands, `runner
//! configure`/`install` and `doctor` must agree on.

/// The machine key file when `--key-file` is not given. Its directory is
/// mounted read-only into jobs at the same path.
pub const DEFAULT_KEY_FILE: &str = "/etc/runvault/vault.key";

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

/// Where the rollback high-water marks live when `--state-dir` is not
/// given: outside the secrets directory, which is mounted into jobs and
/// writable by whoever could put an older vault back.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/runvault";
