//! The command line: clap definitions, turned into validated values, then
//! handed to one handler per command. No crypto and no file I/O of its own.

mod args;
mod doctor_cmds;
mod input;
mod jobs_cmds;
mod output;
mod rotation_cmds;
mod runner_args;
mod runner_cmds;
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
        let _ = writeln!(
            std::io::stderr(),
            "runvault: error: cannot disable core dumps: {err}"
        );
        return exit::OTHER;
    }
    let cli = match parse(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    output::init(&cli.global);
    let code = match dispatch(cli) {
        Ok(()) => exit::OK,
        Err(err) => {
            output::always(format_args!("runvault: error: {err}"));
            err.code()
        }
    };
    report_kdf_runs();
    code
}

/// Parses the arguments. clap's command tree (every subcommand and
/// option) is built for the parse and then left to the process's exit
/// instead of being taken apart: its teardown cost as much as the parse,
/// on every job's `get` and `exec`.
fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let mut command = std::mem::ManuallyDrop::new(Cli::command());
    let matches = command.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches(&matches).map_err(|err| err.format(&mut command))
}

/// Writes generated help (completions, man page) to stdout.
fn help_output(
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), CommandError> {
    let mut out = std::io::stdout().lock();
    write(&mut out).and_then(|()| out.flush()).map_err(|err| {
        CommandError::with_code(
            exit::OTHER,
            format!("cannot write to standard output: {err}"),
        )
    })
}

fn dispatch(cli: Cli) -> Result<(), CommandError> {
    let global = cli.global;
    match cli.command {
        Command::Init(args) => vault_cmds::init(&global, &args),
        Command::Set(args) => vault_cmds::set(&global, &args),
        Command::Get(args) => vault_cmds::get(&global, &args),
        Command::List(args) => vault_cmds::list(&global, &args),
        Command::Rm(args) => vault_cmds::rm(&global, &args),
        Command::Verify(args) => vault_cmds::verify(&global, &args),
        Command::Import(args) => vault_cmds::import(&global, &args),
        Command::Export(args) => vault_cmds::export(&global, &args),
        Command::Keygen(args) => vault_cmds::keygen(&global, &args),
        Command::Key(args) => vault_cmds::key(&global, args),
        Command::Exec(args) => jobs_cmds::exec(&global, args),
        Command::Render(args) => jobs_cmds::render(&global, &args),
        Command::History(args) => rotation_cmds::history(&global, &args),
        Command::Rollback(args) => rotation_cmds::rollback(&global, &args),
        Command::Rekey(args) => rotation_cmds::rekey(&global, &args),
        Command::AuditHmac(args) => rotation_cmds::audit_hmac(&global, &args),
        Command::Doctor(args) => doctor_cmds::doctor(&global, &args),
        Command::View(args) => view_cmds::view(&global, args),
        Command::Completions { shell } => help_output(|out| {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "runvault",
                out,
            );
            Ok(())
        }),
        Command::Man => help_output(|out| {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(out)
        }),
        Command::Runner(args) => runner_cmds::runner(&global, *args),
    }
}

/// Debug builds only, with `RUNVAULT_DEBUG_KDF_RUNS` set: prints how many
/// KDF runs the command made (tests/kdf_runs.rs proves it is one). Called at
/// the end of every command, and by `exec` before the process is replaced.
pub(crate) fn report_kdf_runs() {
    if cfg!(debug_assertions) && std::env::var_os("RUNVAULT_DEBUG_KDF_RUNS").is_some() {
        let runs = crate::vault::kdf_runs();
        let _ = writeln!(std::io::stderr(), "runvault: debug: kdf runs: {runs}");
    }
}
