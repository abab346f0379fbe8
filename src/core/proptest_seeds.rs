//! Where the property tests in `src/` keep the failures they found.
//!
//! proptest's default puts a unit test's saved seeds in a
//! `proptest-regressions/` folder at the top level of the crate, which the
//! design card keeps to `Cargo.toml`, `src`, `tests`, `fixtures` and `docs`.
//! Every `proptest!` block in `src/` takes its configuration from here, so a
//! failure is saved beside the file that holds the test
//! (`src/vault/unlocked/mod.rs` → `src/vault/unlocked/mod.proptest-regressions`), as
//! the integration tests' seeds already are beside theirs in `tests/`, and
//! replayed before any new case. `.ci/run` fails if anything else appears
//! at the top level.

use proptest::test_runner::{Config, FileFailurePersistence};

/// The suffix of a source file's saved seeds.
const SEEDS_SUFFIX: &str = "proptest-regressions";

/// proptest's defaults, with failures saved beside the test's source file.
pub(crate) fn config() -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(SEEDS_SUFFIX))),
        ..Config::default()
    }
}

/// [`config`] with `cases` cases per run instead of the default 256.
pub(crate) fn with_cases(cases: u32) -> Config {
    Config { cases, ..config() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed saved for `vault/unlocked/mod.rs` is where [`config`] looks, so
    /// that property test replays it before any new case.
    #[test]
    fn unlocked_seed_is_found_beside_its_source() {
        let persistence = config().failure_persistence.expect("persistence is set");
        let seeds = persistence.load_persisted_failures2(Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/vault/unlocked/mod.rs"
        )));
        assert_eq!(
            seeds.len(),
            1,
            "the saved seed of unlocked/mod.rs is read back"
        );
    }
}
