//! Test-only stop and crash points (debug builds only): with
//! `RUNVAULT_STOP_AT=NAME` the process stops itself with `SIGSTOP` at the
//! step called NAME, so a test can `kill -9` it at exactly that moment and
//! look at what is left on disk; with `RUNVAULT_FAILPOINT=NAME` it aborts
//! there, as a power cut would. Release builds compile the checks away; in
//! a debug build the variables can only stop the caller's own process.

/// Stops this process (`SIGSTOP`) if `RUNVAULT_STOP_AT` names `name`.
pub fn stop_at(name: &str) {
    if cfg!(debug_assertions)
        && std::env::var("RUNVAULT_STOP_AT").is_ok_and(|wanted| wanted == name)
    {
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::STOP);
    }
}

/// Aborts this process if `RUNVAULT_FAILPOINT` names `name`.
pub fn abort_at(name: &str) {
    if cfg!(debug_assertions)
        && std::env::var("RUNVAULT_FAILPOINT").is_ok_and(|wanted| wanted == name)
    {
        std::process::abort();
    }
}
