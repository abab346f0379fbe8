//! Property tests (proptest) of the vault's internals: the streaming and
//! tree readers and writers agree (`cargo test --test properties`). The
//! seeds of past failures are in `tests/properties/*.proptest-regressions`,
//! next to their source file, and are replayed first.

mod properties {
    mod selection;
    mod stream_reader;
}
