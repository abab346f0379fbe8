//! What the command line prints: data on stdout through the one writer,
//! status notes, `-v` diagnostics (`tracing`), colour and progress, each
//! decided once per run from `-v`/`-q`, `NO_COLOR` and whether the stream
//! is a terminal.
//!
//! - Data (`get`, `list`, reports, help) goes to stdout through
//!   [`write_stdout`] or [`with_stdout`] and is never silenced. A reader
//!   that closed the pipe early (`runvault man | head -1`) ends the
//!   command with success and no message, as ripgrep does: it has what it
//!   wanted. Any other write error (a full disk) is an error, exit 1.
//! - Notes ("set `X` (version 2)", warnings such as an open directory) go
//!   to stderr; `-q` silences them.
//! - Problems that `-q` must not hide (a committed change whose view was
//!   not refreshed) and errors always print.
//! - Diagnostics go to stderr through `tracing`: none by default, `-v`
//!   info, `-vv` debug, `-vvv` trace. Only runvault's own events are shown,
//!   and no event carries a secret (see `tests/host/verbosity.rs`).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::level_filters::LevelFilter;

use crate::cli::args::GlobalArgs;
use crate::core::exit::{self, CommandError};

/// Whether `-q` was given (notes and progress are silenced).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets up this run's output from the global options and installs the
/// diagnostics subscriber for the whole process: the writers append the
/// audit line, hash big files and talk to Docker on other threads, whose
/// events a thread-local subscriber would lose. A second call (only in
/// tests that run several commands in one process) keeps the first.
/// Without `-v` nothing is installed.
pub fn init(global: &GlobalArgs) {
    use tracing_subscriber::layer::SubscriberExt;
    QUIET.store(global.quiet, Ordering::Relaxed);
    let level = level(global.quiet, global.verbose);
    if level == LevelFilter::OFF {
        // No subscriber at all: every event is then a no-op, and the jobs'
        // `get`/`exec` do not pay for building one they would not use.
        return;
    }
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(color(&std::io::stderr()))
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_max_level(level)
        .finish()
        // Other crates' events (the HTTP stack under bollard) are not ours
        // to vouch for: they could carry request bodies.
        .with(tracing_subscriber::filter::Targets::new().with_target("runvault", level));
    let _already_set = tracing::subscriber::set_global_default(subscriber);
}

/// The diagnostics level of `-q` / `-v` counts.
fn level(quiet: bool, verbose: u8) -> LevelFilter {
    match (quiet, verbose) {
        (true, _) | (false, 0) => LevelFilter::OFF,
        (false, 1) => LevelFilter::INFO,
        (false, 2) => LevelFilter::DEBUG,
        (false, _) => LevelFilter::TRACE,
    }
}

/// Whether `-q` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

/// Whether output to `stream` may be coloured: it is a terminal and
/// `NO_COLOR` is not set.
pub fn color(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && !no_color()
}

/// Prints a note to stderr unless `-q` was given.
pub fn note(message: std::fmt::Arguments<'_>) {
    if !quiet() {
        always(message);
    }
}

/// Prints a warning to stderr, even with `-q`: `runvault: warning: `
/// then the message. The one prefix and the one way every warning is
/// printed (something the admin should act on, though the command did
/// what it was asked).
pub fn warn(message: std::fmt::Arguments<'_>) {
    always(format_args!("runvault: warning: {message}"));
}

/// Prints a problem to stderr even with `-q`, as one write: stderr is
/// unbuffered, and a line written piece by piece (one system call per
/// argument) can interleave with another process's line.
pub fn always(message: std::fmt::Arguments<'_>) {
    write_stderr(format!("{message}\n").as_bytes());
}

/// Writes bytes to stderr as one write. A failure is not reported: stderr
/// is where it would be reported.
pub fn write_stderr(bytes: &[u8]) {
    let _unreportable = std::io::stderr().write_all(bytes);
}

/// Writes data to stdout (see the module doc for what a failed write
/// does).
pub fn write_stdout(bytes: &[u8]) -> Result<(), CommandError> {
    with_stdout(|out| out.write_all(bytes))
}

/// Lets `write` write data to stdout (locked, then flushed): the one place
/// the command line writes its stdout. A closed pipe returns the error
/// that [`is_stdout_closed`] recognises, so the command stops there and
/// exits 0 without a message (Rust ignores `SIGPIPE`, so the closed pipe
/// arrives as `EPIPE`); any other failure is "cannot write to standard
/// output", exit 1.
pub fn with_stdout(
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), CommandError> {
    let mut out = std::io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(CommandError::with_code(
            exit::OK,
            "standard output was closed",
        )),
        Err(err) => Err(CommandError::with_code(
            exit::OTHER,
            format!("cannot write to standard output: {err}"),
        )),
    }
}

/// Whether `err` ends a command whose reader closed stdout: the only error
/// with exit code 0, which is reported by nothing (see [`with_stdout`]).
pub fn is_stdout_closed(err: &CommandError) -> bool {
    err.code() == exit::OK
}

/// Whether data on stdout may be coloured (see [`color`]).
pub fn stdout_color() -> bool {
    color(&std::io::stdout())
}

/// Whether progress may be drawn: stderr is a terminal and no `-q`.
/// `NO_COLOR` keeps the bar but drops its colour.
fn progress_wanted() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

/// A spinner on stderr while `message` is going on, hidden when progress
/// is not wanted.
pub fn spinner(message: String) -> indicatif::ProgressBar {
    if !progress_wanted() {
        return indicatif::ProgressBar::hidden();
    }
    let spinner = indicatif::ProgressBar::new_spinner().with_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    spinner
}

/// The vault's progress callbacks, drawn as an indicatif bar on stderr
/// from `begin` on (when progress is wanted), cleared when dropped.
pub struct Bar {
    bar: indicatif::ProgressBar,
    shown: bool,
}

impl Bar {
    /// A bar labelled `message`; its length is set by `begin`.
    pub fn new(message: &'static str) -> Bar {
        let bar = indicatif::ProgressBar::hidden();
        let template = if no_color() {
            "{msg} [{bar:30}] {pos}/{len} ({eta})"
        } else {
            "{msg} [{bar:30.cyan/blue}] {pos}/{len} ({eta})"
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(message);
        Bar {
            bar,
            shown: progress_wanted(),
        }
    }
}

impl crate::core::progress::Progress for Bar {
    fn begin(&self, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(0);
        if self.shown {
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }

    fn advance(&self) {
        self.bar.inc(1);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_levels() {
        assert_eq!(level(false, 0), LevelFilter::OFF);
        assert_eq!(level(false, 1), LevelFilter::INFO);
        assert_eq!(level(false, 2), LevelFilter::DEBUG);
        assert_eq!(level(false, 3), LevelFilter::TRACE);
        assert_eq!(level(false, 9), LevelFilter::TRACE);
        assert_eq!(level(true, 0), LevelFilter::OFF);
    }
}
