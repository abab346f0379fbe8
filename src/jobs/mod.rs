//! The job side: turning `DATAOPS_VAULT(PATH)` references into values inside
//! a job, without plaintext on disk and without writing anything to the
//! (read-only) vault directory.
//!
//! - [`reference`](mod@reference): the reference syntax and its scanner.
//! - [`resolve`]: reads every referenced value with one vault open.
//! - [`exec`]: `runvault exec`, which resolves the environment and replaces
//!   itself with the job's command.
//! - [`ci`]: the variables the CI system sets, which `exec` never resolves.
//! - [`render`]: `runvault render`, which resolves a text template.
//! - [`hook`]: the hooks of `runvault rotate`, run with values on stdin only.
//! - [`error`]: what these can fail with, and the exit codes.
//!
//! See docs/jobs.md for how jobs use them.

pub mod ci;
pub mod error;
pub mod exec;
pub mod hook;
pub mod reference;
pub mod render;
pub mod resolve;

pub use error::JobsError;
