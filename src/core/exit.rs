//! The documented process exit codes, one place for all of them.
//!
//! Every error type in the crate maps itself to one of these through
//! [`ExitStatus`]; `main` only turns the final value into the process status.

/// Defines each exit code's constant and its row of [`TABLE`] from one
/// line: `/// doc` `NAME = code, "meaning";`.
macro_rules! exit_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $meaning:literal;)*) => {
        $($(#[$doc])* pub const $name: u8 = $code;)*

        /// Every exit code with its meaning, in order: the one table that
        /// `--help`, the man pages, README's "Exit codes" and
        /// docs/troubleshooting.md list (tests/host/docs.rs compares them).
        pub const TABLE: &[(u8, &str)] = &[$(($code, $meaning)),*];
    };
}

exit_codes! {
    /// Success.
    OK = 0, "success";
    /// Any failure without a more specific code (I/O, permissions, bad input file).
    OTHER = 1, "other error (I/O, permissions, bad input file)";
    /// Usage error: bad flags or arguments, or a required secret not given.
    USAGE = 2, "usage error (bad arguments, no passphrase or key given)";
    /// The requested path does not exist in the vault.
    NOT_FOUND = 3, "path not found in the vault";
    /// No key slot opens with the given passphrase or key file.
    WRONG_SECRET = 4, "wrong passphrase or key (no key slot opens)";
    /// The vault is tampered with or corrupt (authentication failed).
    INTEGRITY = 5, "integrity failure (the vault is tampered with, corrupt, rolled back or replaced)";
    /// Another writer holds the vault lock and it was not released in time.
    BUSY = 6, "vault busy (the writers' lock was not acquired within `--wait`)";
    /// The Docker engine cannot be reached.
    ENGINE_UNREACHABLE = 7, "Docker engine unreachable";
    /// A check-and-set write found that the path has moved on.
    CONFLICT = 8, "check-and-set conflict (`set --if-version`), or a rotation is pending at the path";
    /// `receive`: the shipped vault is not newer than the installed one or
    /// this host's high-water mark (a replay).
    REPLAY = 9, "replay: `receive` refused a vault not newer than this host's installed generation";
    /// `rotate`: a hook (`--apply`, `--test`, `--revert`) failed or timed out.
    HOOK_FAILED = 10, "`rotate`: a hook (`--apply`, `--test`, `--revert`) failed or timed out";
    /// `exec`: the command exists but could not be run (as `env(1)` does).
    COMMAND_NOT_EXECUTABLE = 126, "`exec`: the command could not be run";
    /// `exec`: the command was not found (as `env(1)` and shells do).
    COMMAND_NOT_FOUND = 127, "`exec`: the command was not found";
}

/// The exit codes as `--help` ends and the man pages list them.
pub fn help_text() -> String {
    use std::fmt::Write as _;
    TABLE
        .iter()
        .fold(String::from("Exit codes:"), |mut text, (code, meaning)| {
            // Writing to a String cannot fail.
            let _infallible = write!(text, "\n  {code:>3}  {meaning}");
            text
        })
}

/// Implemented by every error type that can end a command.
pub trait ExitStatus {
    /// The process exit code this error ends the command with.
    fn exit_code(&self) -> u8;
}

/// The error a command ends with: any module's error, with its exit code.
///
/// Handlers return `Result<_, CommandError>` and use `?` on the typed errors
/// of `vault`, `runner` and `core`; `main` prints it and exits with [`code`].
///
/// [`code`]: CommandError::code
pub struct CommandError {
    code: u8,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl CommandError {
    /// The exit code.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// A usage error (exit 2) with the given message.
    pub fn usage(message: impl Into<String>) -> CommandError {
        CommandError {
            code: USAGE,
            error: message.into().into(),
        }
    }

    /// An error with an explicit exit code.
    pub fn with_code(code: u8, message: impl Into<String>) -> CommandError {
        CommandError {
            code,
            error: message.into().into(),
        }
    }
}

impl<E: std::error::Error + ExitStatus + Send + Sync + 'static> From<E> for CommandError {
    fn from(error: E) -> Self {
        CommandError {
            code: error.exit_code(),
            error: Box::new(error),
        }
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        let mut source = self.error.source();
        while let Some(cause) = source {
            // thiserror messages already end with their cause where it helps;
            // only add causes whose text is not already shown.
            let text = cause.to_string();
            if !self.error.to_string().contains(&text) {
                write!(f, ": {text}")?;
            }
            source = cause.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommandError(exit {}): {}", self.code, self)
    }
}
