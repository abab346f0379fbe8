//! The one place where an option's value is decided: a flag beats the
//! environment, which beats the host's layout file
//! ([`host_file`](crate::core::host_file)), which beats the built-in
//! default. clap applies the flag, the environment and the default; this
//! module then asks clap where each value came from and puts the layout
//! file's value in place of a built-in default.
//!
//! `get`, `exec` and `render` are what jobs run, many times a minute: they
//! read the layout file only when the vault directory is not given (jobs
//! get `RUNVAULT_DIR` from `runner configure`), so a job reads no file it
//! did not read before. `completions` and `man` never read it.
//!
//! Below `args` (it fills in the parsed values), above every handler; it
//! uses nothing else of the command line.

use std::path::PathBuf;

use clap::ArgMatches;
use clap::parser::ValueSource;

use crate::cli::args::{Cli, Command, DoctorArgs, Layout, MAN_DIR};
use crate::cli::runner_args::{JobsArgs, JobsChoice, RunnerCommand, RunnerCommon};
use crate::core::fs::FsError;
use crate::core::host_file::{self, HostFile, HostFileError};

/// The options (clap ids) the layout file can give a default to.
const IDS: [&str; 10] = [
    "dir",
    "key_file",
    "views_file",
    "state_dir",
    "bin_dir",
    "jobs",
    "view",
    "config_dir",
    "image",
    "file",
];

/// In [`Layout::given`] when `--identity` was given on the command line
/// (not only through `RUNVAULT_IDENTITY`).
pub const IDENTITY_FLAG: &str = "identity flag";

/// The options of [`IDS`] given by flag or environment in `matches` (at
/// any level of subcommands), `command` being the command tree that
/// parsed them (clap answers only for the options a level defines).
pub fn given(command: &clap::Command, matches: &ArgMatches) -> Vec<&'static str> {
    let mut given = Vec::new();
    let mut level = Some((command, matches));
    while let Some((command, matches)) = level {
        for id in IDS {
            let defined = command.get_arguments().any(|arg| arg.get_id() == id);
            if defined
                && matches!(
                    matches.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
                && !given.contains(&id)
            {
                given.push(id);
            }
        }
        // `keygen --identity` means "write an identity": the flag, not
        // the environment variable that names one to open with.
        if command
            .get_arguments()
            .any(|arg| arg.get_id() == "identity")
            && matches.value_source("identity") == Some(ValueSource::CommandLine)
            && !given.contains(&IDENTITY_FLAG)
        {
            given.push(IDENTITY_FLAG);
        }
        level = matches
            .subcommand()
            .and_then(|(name, sub)| Some((command.find_subcommand(name)?, sub)));
    }
    given
}

/// `man --dir DIR`: the directory given after `man` (the option
/// [`MAN_DIR`], never the vault's `--dir` or `RUNVAULT_DIR`).
pub fn man_dir(matches: &ArgMatches) -> Option<PathBuf> {
    matches
        .subcommand_matches("man")?
        .get_one::<PathBuf>(MAN_DIR)
        .cloned()
}

/// Puts the layout file's values in place of the built-in defaults of
/// the options not in `given`.
pub fn resolve(cli: &mut Cli, given: Vec<&'static str>) -> Result<(), HostFileError> {
    let layout = Layout {
        file: host_file::config_path(cli.global.config.as_deref()),
        named: cli.global.config.is_some(),
        read: None,
        key_file: None,
        identity_file: None,
        bin_dir: None,
        views_file: None,
        given,
    };
    let needed = match &cli.command {
        Command::Completions(_) | Command::Man(_) => false,
        Command::Get(_) | Command::Exec(_) | Command::Render(_) => !layout.given("dir"),
        _ => true,
    };
    if !needed {
        cli.global.layout = layout;
        return Ok(());
    }
    let host = match host_file::load(&layout.file) {
        // The system's file (or its directory, 0700 in the package) is
        // root's: a user who may not read it, and named no other, gets the
        // built-in defaults, as before the file existed (the quick start
        // runs as any user).
        Err(HostFileError::Fs(FsError::Io { source, .. }))
            if !layout.named && source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            tracing::debug!(file = %layout.file.display(), "the layout file cannot be read: built-in defaults");
            None
        }
        other => other?,
    };
    let mut layout = Layout {
        read: Some(host.is_some()),
        ..layout
    };
    let Some(host) = host else {
        cli.global.layout = layout;
        return Ok(());
    };
    layout.key_file.clone_from(&host.key_file);
    layout.identity_file.clone_from(&host.identity_file);
    layout.bin_dir.clone_from(&host.bin_dir);
    layout.views_file.clone_from(&host.views_file);
    let global = &mut cli.global;
    let take = |id: &str, slot: &mut PathBuf, value: &Option<PathBuf>| {
        if let (false, Some(value)) = (layout.given(id), value) {
            slot.clone_from(value);
        }
    };
    take("dir", &mut global.dir, &host.secrets_dir);
    take("views_file", &mut global.views_file, &host.views_file);
    if !layout.given("state_dir") && host.state_dir.is_some() {
        global.state_dir.clone_from(&host.state_dir);
    }
    match &mut cli.command {
        Command::Keygen(args) => take("file", &mut args.file, &host.key_file),
        Command::Doctor(args) => doctor(args, &host, &layout),
        Command::Runner(args) => {
            runner(&mut args.common, &host, &layout);
            match &mut args.command {
                RunnerCommand::Configure(configure) => {
                    take("bin_dir", &mut configure.opts.bin_dir, &host.bin_dir);
                    jobs(&mut configure.opts.jobs, &host, &layout);
                }
                RunnerCommand::Install(install) => {
                    take("bin_dir", &mut install.configure.bin_dir, &host.bin_dir);
                    jobs(&mut install.configure.jobs, &host, &layout);
                }
                _ => {}
            }
        }
        _ => {}
    }
    cli.global.layout = layout;
    Ok(())
}

fn doctor(args: &mut DoctorArgs, host: &HostFile, layout: &Layout) {
    runner(&mut args.runner, host, layout);
    if let (false, Some(dir)) = (layout.given("bin_dir"), &host.bin_dir) {
        args.bin_dir.clone_from(dir);
    }
    jobs(&mut args.jobs, host, layout);
}

/// The runner's config directory and image, by its name.
fn runner(common: &mut RunnerCommon, host: &HostFile, layout: &Layout) {
    let Some(entry) = common.name.as_ref().and_then(|name| host.runners.get(name)) else {
        return;
    };
    if !layout.given("config_dir") && entry.config_dir.is_some() {
        common.config_dir.clone_from(&entry.config_dir);
    }
    if let (false, Some(image)) = (layout.given("image"), &entry.image) {
        common.image.clone_from(image);
    }
}

/// What jobs read: only when neither `--jobs` nor `--view` is given.
fn jobs(args: &mut JobsArgs, host: &HostFile, layout: &Layout) {
    if layout.given("jobs") || layout.given("view") {
        return;
    }
    match host.jobs.as_deref() {
        Some("plaintext-view") => args.jobs = JobsChoice::PlaintextView,
        Some(_) => args.jobs = JobsChoice::Encrypted,
        None => {}
    }
    if host.view.is_some() {
        args.view.clone_from(&host.view);
    }
}
