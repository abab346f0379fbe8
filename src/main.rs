//! The `runvault` binary: parse nothing itself, run the library, exit with
//! the code it returns.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(runvault::run(std::env::args_os()))
}
