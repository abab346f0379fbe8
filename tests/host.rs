//! The integration tests that need no Docker engine: the vault commands,
//! files and permissions, jobs (`exec`, `render`), views, `doctor`'s host
//! checks, the terminal and every command in the docs (`cargo test --test
//! host`). A few of them also talk to an engine when one answers, and skip
//! that part otherwise. The tests that need an engine are `tests/engine.rs`,
//! the property tests `tests/properties.rs`.
//!
//! One binary, one module per area in `tests/host/`: the crate is linked
//! once and all tests share one process on parallel threads (see
//! [`support`] for what that asks of a test).

// `pub` because `tests/engine.rs` includes the same harness and each binary
// uses only part of it, which would warn as dead code. An item neither
// uses is deleted, not allowed: with `mod support;` in both roots, an item
// that warns in both builds is unused.
pub mod support;

mod host {
    mod docs;
    mod doctor;
    mod fleet;
    mod harden;
    mod help;
    mod jobs_exec;
    mod jobs_readonly;
    mod jobs_render;
    mod kdf_runs;
    mod rotate;
    mod rotate_pg;
    mod rotation;
    mod runner_configure;
    mod terminal;
    mod vault_cli;
    mod vault_tamper;
    mod verbosity;
    mod views;
}
