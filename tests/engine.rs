//! The integration tests that need a Docker engine: the runner's lifecycle,
//! `doctor --name`, jobs in containers (the static binary, rotation and
//! views seen by a running job), the Debian package and the Ansible role
//! of `docs/fleet/` over host containers (`cargo test --test engine`).
//! Without an engine they print that they are skipped, except under
//! `CI=true`, where they fail.
//!
//! One binary, one module per area in `tests/engine/`, sharing the harness
//! of `tests/host.rs` ([`support`]).

// `pub` because `tests/host.rs` includes the same harness and each binary
// uses only part of it, which would warn as dead code. An item neither
// uses is deleted, not allowed: with `mod support;` in both roots, an item
// that warns in both builds is unused.
pub mod support;

mod engine {
    mod doctor_runner;
    mod e2e_rotation;
    mod fleet;
    mod fleet_engine;
    mod jobs_static;
    mod package;
    mod runner_engine;
    mod view_e2e;
}
