//! Process hardening applied before any secret is read: no core dumps
//! (`RLIMIT_CORE` 0) and not dumpable (`PR_SET_DUMPABLE` 0), so a crash or a
//! same-user debugger cannot copy keys, passphrases or values out of memory.
//! Uses rustix's safe wrappers: the library forbids `unsafe` code (the
//! only `unsafe` in runvault is the binary's allocator, `src/large_pages.rs`).

use std::sync::OnceLock;

use rustix::process::{
    DumpableBehavior, Resource, Rlimit, getrlimit, set_dumpable_behavior, setrlimit,
};

/// The core-size limit the process started with, for the command `exec` runs.
static STARTING_CORE_LIMIT: OnceLock<Rlimit> = OnceLock::new();

/// Forbids core dumps and ptrace-style access by other processes of the
/// same user. Errors are returned, not ignored, so the caller can decide.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    let _ = STARTING_CORE_LIMIT.set(getrlimit(Resource::Core));
    // Only the soft limit is lowered: the hard limit stays, so the command
    // `exec` replaces us with can get its own core dumps back.
    let hard = getrlimit(Resource::Core).maximum;
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: hard,
        },
    )?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Gives back the starting core-size limit, for the command `exec` runs
/// (the kernel makes an exec'd program dumpable again by itself).
pub fn restore_core_limit_for_child() -> std::io::Result<()> {
    match STARTING_CORE_LIMIT.get() {
        Some(limit) => Ok(setrlimit(Resource::Core, *limit)?),
        None => Ok(()),
    }
}

/// The real user id of this process (safe even when not dumpable, unlike
/// the owner of `/proc/self`, which then reads as root).
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}
