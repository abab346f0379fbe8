//! Progress of long vault work (rekey, import), reported to whoever draws
//! it. The vault only counts; the command line decides whether and how to
//! show it (an indicatif bar on a terminal, nothing otherwise).

/// Receives the progress of one long operation.
pub trait Progress {
    /// The work has `total` steps (values and stored versions).
    fn begin(&self, total: u64);
    /// One more step is done.
    fn advance(&self);
}

/// No progress shown: what library callers and tests pass.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _total: u64) {}

    fn advance(&self) {}
}
