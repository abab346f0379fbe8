//! runvault keeps a DataOps runner host's credentials encrypted in
//! `/secrets/vault.yml`, wires the read-only `/secrets` mount into the
//! runner, and resolves `DATAOPS_VAULT(PATH)` references for jobs.
//!
//! - [`core`]: what every part shares: exit codes, the one atomic file
//!   writer, the writers' lock, secret types.
//! - [`vault`]: the vault file format, its crypto and its operations.
//! - [`jobs`]: the job side: `DATAOPS_VAULT(PATH)` references resolved by
//!   `exec` and `render`, read-only.
//! - [`doctor`]: checks that a runner host is set up safely.
//! - [`runner`]: the runner's `config.toml`, its container, the Docker engine.
//! - [`view`]: plaintext views in RAM for job images that read plaintext.
//! - [`cli`]: the command line; one handler per command.
//!
//! The binary is a thin wrapper around [`run`], plus its global allocator
//! (`src/large_pages.rs`, huge pages for large buffers): the library
//! forbids `unsafe` code, so the allocator, which needs it, lives there.

// No exception: the one reviewed piece of `unsafe` code, the global
// allocator, lives in the binary crate (`src/large_pages.rs`).
#![forbid(unsafe_code)]

pub mod cli;
pub mod core;
pub mod doctor;
pub mod jobs;
pub mod runner;
pub mod vault;
pub mod view;

pub use cli::run;
