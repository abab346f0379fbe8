//! The `runvault` binary: parse nothing itself, run the library, exit with
//! the code it returns. It also holds the global allocator
//! (`large_pages`), the one reviewed piece of `unsafe` code, so that the
//! library can forbid `unsafe` outright.

mod large_pages;

/// Large buffers (a whole `vault.yml`) in huge pages; see the module.
#[global_allocator]
static ALLOCATOR: large_pages::LargePages = large_pages::LargePages;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(runvault::run(std::env::args_os()))
}
