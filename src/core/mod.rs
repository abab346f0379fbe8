//! What the vault and the runner share: exit codes, the atomic file
//! writers, the writers' lock, permission checks, secret types, progress
//! reporting, process hardening and the default host layout.
//!
//! Nothing here knows the vault format or Docker; both build on it.

pub mod exit;
pub mod failpoint;
pub mod fs;
pub mod harden;
pub mod hex;
pub mod host_file;
pub mod layout;
pub mod lock;
pub mod progress;
#[cfg(test)]
pub(crate) mod proptest_seeds;
pub mod secret;
pub mod shell;
