//! The command line: clap definitions, turned into validated values, then
//! handed to one handler per command. No crypto and no file I/O of its own.
//!
//! Files use only those listed before them: the clap definitions
//! (`option_scope`, `kdf_args`, `runner_args`, `args`); `defaults`, which puts the host's
//! layout file in place of the built-in defaults; what is printed and read
//! (`output`, with the one stdout writer; `table`; `input`; `suggest`,
//! the closest existing paths); what every
//! handler takes from the global options (`context`); the handlers, one
//! file per group of commands (`fleet_cmds`: identities and `receive`;
//! `rotate_cmds`: staged rotation; `man`: the man pages), none using
//! another; this module, which
//! parses and dispatches.

mod args;
mod context;
mod defaults;
mod doctor_cmds;
mod fleet_cmds;
mod input;
mod jobs_cmds;
mod kdf_args;
mod man;
mod option_scope;
mod output;
mod rotate_cmds;
mod rotation_cmds;
mod runner_args;
mod runner_cmds;
mod suggest;
mod table;
mod vault_cmds;
mod view_cmds;

use std::ffi::OsString;
use std::io::Write;

pub use args::{Cli, Command, GlobalArgs};

use crate::core::exit::{self, CommandError};

/// Runs runvault with the given arguments (program name first) and returns
/// the process exit code. Never calls `process::exit`.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // Before anything can hold a secret: no core dumps, not dumpable.
    if let Err(err) = crate::core::harden::forbid_core_dumps() {
        output::always(format_args!(
            "runvault: error: cannot disable core dumps: {err}"
        ));
        return exit::OTHER;
    }
    let (mut cli, given) = match parse(args) {
        Ok(parsed) => parsed,
        Err(err) if err.use_stderr() => {
            // On stderr, where a failure could not be reported.
            let _unreportable = err.print();
            return exit::USAGE;
        }
        // `--help` and `--version`: data, on stdout.
        Err(err) => return finish(output::with_stdout(|out| write_clap(out, &err))),
    };
    output::init(&cli.global);
    if let Err(err) = defaults::resolve(&mut cli, given) {
        return finish(Err(err.into()));
    }
    let code = finish(dispatch(cli));
    context::report_kdf_runs();
    code
}

/// The exit code of a command's result, after printing its error. A
/// closed stdout ends a command with success and no message.
fn finish(result: Result<(), CommandError>) -> u8 {
    match result {
        Ok(()) => exit::OK,
        Err(err) if output::is_stdout_closed(&err) => exit::OK,
        Err(err) => {
            output::always(format_args!("runvault: error: {err}"));
            err.code()
        }
    }
}

/// Parses the arguments. clap's command tree (every subcommand and
/// option) is built for the parse and then left to the process's exit
/// instead of being taken apart: its teardown cost as much as the parse,
/// on every job's `get` and `exec`. Also returns the options given by
/// flag or environment ([`defaults::given`]).
fn parse<I, T>(args: I) -> Result<(Cli, Vec<&'static str>), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let mut command = std::mem::ManuallyDrop::new(Cli::command());
    let matches = command.try_get_matches_from_mut(args)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|err| err.format(&mut command))?;
    if let Command::Man(man) = &mut cli.command {
        man.dir = defaults::man_dir(&matches);
    }
    Ok((cli, defaults::given(&command, &matches)))
}

/// Writes clap's `--help` or `--version` text, styled as clap styles it
/// on a terminal without `NO_COLOR`.
fn write_clap(out: &mut dyn Write, err: &clap::Error) -> std::io::Result<()> {
    let text = err.render();
    if output::stdout_color() {
        write!(out, "{}", text.ansi())
    } else {
        write!(out, "{text}")
    }
}

/// Whether `command` changes the vault on this host, which a managed host
/// (one that receives its vault, docs/fleet.md) refuses without `--local`.
fn is_local_change(command: &Command) -> bool {
    use args::KeyCommand;
    match command {
        Command::Set(_)
        | Command::Rm(_)
        | Command::Import(_)
        | Command::Rollback(_)
        | Command::Rotate(_)
        | Command::Rekey(_) => true,
        Command::Key(key) => !matches!(key.command, KeyCommand::List { .. }),
        _ => false,
    }
}

fn dispatch(cli: Cli) -> Result<(), CommandError> {
    let global = cli.global;
    if is_local_change(&cli.command) {
        fleet_cmds::refuse_on_managed_host(&global)?;
    }
    match cli.command {
        Command::Init(args) => vault_cmds::init(&global, &args),
        Command::Set(args) => vault_cmds::set(&global, &args),
        Command::Get(args) => vault_cmds::get(&global, &args),
        Command::List(args) => vault_cmds::list(&global, &args),
        Command::Rm(args) => vault_cmds::rm(&global, &args),
        Command::Verify(args) => vault_cmds::verify(&global, &args),
        Command::Import(args) => vault_cmds::import(&global, &args),
        Command::Export(args) => vault_cmds::export(&global, &args),
        Command::Keygen(args) if fleet_cmds::is_identity_keygen(&global, &args) => {
            fleet_cmds::keygen(&global, &args)
        }
        Command::Keygen(args) => vault_cmds::keygen(&global, &args),
        Command::Receive(args) => fleet_cmds::receive(&global, &args),
        Command::Key(args) => vault_cmds::key(&global, args),
        Command::Exec(args) => jobs_cmds::exec(&global, args),
        Command::Render(args) => jobs_cmds::render(&global, &args),
        Command::History(args) => rotation_cmds::history(&global, &args),
        Command::Rollback(args) => rotation_cmds::rollback(&global, &args),
        Command::Rotate(args) => rotate_cmds::rotate(&global, &args),
        Command::Rekey(args) => rotation_cmds::rekey(&global, &args),
        Command::AuditHmac(args) => rotation_cmds::audit_hmac(&global, &args),
        Command::Doctor(args) => doctor_cmds::doctor(&global, &args),
        Command::View(args) => view_cmds::view(&global, args),
        Command::Completions(args) => {
            // Generated in memory: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(
                args.shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "runvault",
                &mut script,
            );
            output::write_stdout(&script)
        }
        Command::Man(args) => man::man(args.dir.as_deref()),
        Command::Runner(args) => runner_cmds::runner(&global, *args),
    }
}
