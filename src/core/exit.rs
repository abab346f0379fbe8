//! The documented process exit codes, one place for all of them.
//!
//! Every error type in the crate maps itself to one of these through
//! [`ExitStatus`]; `main` only turns the final value into the process status.

/// Success.
pub const OK: u8 = 0;
/// Any failure without a more specific code (I/O, permissions, bad input file).
pub const OTHER: u8 = 1;
/// Usage error: bad flags or arguments, or a required secret not given.
pub const USAGE: u8 = 2;
/// The requested path does not exist in the vault.
pub const NOT_FOUND: u8 = 3;
/// No key slot opens with the given passphrase or key file.
pub const WRONG_SECRET: u8 = 4;
/// The vault is tampered with or corrupt (authentication failed).
pub const INTEGRITY: u8 = 5;
/// Another writer holds the vault lock and it was not released in time.
pub const BUSY: u8 = 6;
/// The Docker engine cannot be reached.
pub const ENGINE_UNREACHABLE: u8 = 7;
/// A check-and-set write found that the path has moved on.
pub const CONFLICT: u8 = 8;
/// `receive`: the shipped vault is not newer than the installed one or
/// this host's high-water mark (a replay).
pub const REPLAY: u8 = 9;
/// `rotate`: a hook (`--apply`, `--test`, `--revert`) failed or timed out.
pub const HOOK_FAILED: u8 = 10;
/// `exec`: the command exists but could not be run (as `env(1)` does).
pub const COMMAND_NOT_EXECUTABLE: u8 = 126;
/// `exec`: the command was not found (as `env(1)` and shells do).
pub const COMMAND_NOT_FOUND: u8 = 127;

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
