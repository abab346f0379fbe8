//! The `runvault` binary: parse nothing itself, run the library, exit with
//! the code it returns.

/// Large buffers (a whole `vault.yml`) in huge pages; see the module.
#[global_allocator]
static ALLOCATOR: runvault::core::large_pages::LargePages = runvault::core::large_pages::LargePages;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(runvault::run(std::env::args_os()))
}
