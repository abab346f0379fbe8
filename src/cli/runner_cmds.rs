//! One handler per `runvault runner ...` command: validate the options into
//! `runner` types, run the operation, print what happened.
//!
//! tokio is used only here and in `doctor`, through `context::block_on`,
//! in a current-thread runtime built per command, so the vault commands
//! never start one.
//!
//! A handler file: it uses the definitions, `input`, `output`, `table` and
//! `context` below it, and no other handler (see `context` for the order).

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use crate::cli::args::GlobalArgs;
use crate::cli::context::{block_on, remember, runner_command, runner_layout_update, wiring};
use crate::cli::input;
use crate::cli::output::{self, note as say, write_stdout};
use crate::cli::runner_args::{
    ConfigureArgs, ConfigureOpts, InstallArgs, JobsArgs, JobsChoice, LogsArgs, RegisterArgs,
    RegisterOpts, RunnerArgs, RunnerCommand, StartArgs, StatusArgs, StopArgs,
};
use crate::cli::table::{Cell, Table, Tone};
use crate::core::exit::CommandError;
use crate::core::fs::{Limit, read_private};
use crate::core::host_file::HostFile;
use crate::core::secret::SecretBytes;
use crate::runner::config::{self, Settings};
use crate::runner::container::{self, Spec};
use crate::runner::engine::Engine;
use crate::runner::install::{self, Install};
use crate::runner::register::{self, Request, Token};
use crate::runner::status;
use crate::runner::{Error, Target, mount_source};
use crate::vault::VaultDir;

/// Runs `runvault runner ...`.
pub fn runner(global: &GlobalArgs, args: RunnerArgs) -> Result<(), CommandError> {
    let target = args.common.target()?;
    let hints = |removing: bool| {
        let target = &target;
        move |err: Error| pasteable(global, target, removing, err)
    };
    match args.command {
        RunnerCommand::Configure(args) => configure(global, &target, &args),
        RunnerCommand::Register(args) => block_on(register(&target, args)),
        RunnerCommand::Start(args) => {
            block_on(async { start(&target, args).await.map_err(hints(false)) })
        }
        RunnerCommand::Stop(args) => {
            block_on(async { stop(&target, args).await.map_err(hints(false)) })
        }
        RunnerCommand::Restart(args) => {
            block_on(async { restart(&target, args).await.map_err(hints(false)) })
        }
        RunnerCommand::Remove => block_on(async { remove(&target).await.map_err(hints(true)) }),
        RunnerCommand::Logs(args) => {
            block_on(async { logs(&target, args).await.map_err(hints(false)) })?
        }
        RunnerCommand::Status(args) => {
            write_stdout(block_on(status(global, &target, args))?.as_bytes())
        }
        RunnerCommand::Install(args) => block_on(install(global, &target, args)),
    }
}

/// Puts into a runner error's hint the command line that can be pasted
/// ([`runner_command`]); removing a container that is not there needs no
/// command (starting one would undo what was asked).
fn pasteable(global: &GlobalArgs, target: &Target, removing: bool, err: Error) -> Error {
    match err {
        Error::NoContainer { name, .. } if removing => Error::NoContainer {
            name,
            hint: "nothing to remove".into(),
        },
        Error::NoContainer { name, .. } => Error::NoContainer {
            hint: format!(
                "create it with `{}`",
                runner_command(global, target, "start", None)
            ),
            name,
        },
        Error::NoConfig { path, .. } => Error::NoConfig {
            hint: format!(
                "register the runner first with `{}`",
                runner_command(global, target, "register", None)
            ),
            path,
        },
        Error::NoRunners { path, .. } => Error::NoRunners {
            hint: format!(
                "register a runner first with `{}`",
                runner_command(global, target, "register", None)
            ),
            path,
        },
        other => other,
    }
}

async fn connect(target: &Target) -> Result<Engine, Error> {
    Engine::connect(target.docker_host.as_deref()).await
}

/// The registration token: `--token-file`, else `REGISTRATION_TOKEN`, else a
/// hidden prompt. Never from the command line.
fn read_token(file: Option<&Path>) -> Result<Token, Error> {
    let bytes = if let Some(file) = file {
        let contents = SecretBytes::new(read_private(file, Limit::TOKEN_FILE)?);
        SecretBytes::new(contents.expose().trim_ascii().to_vec())
    } else if let Some(value) = std::env::var_os("REGISTRATION_TOKEN") {
        use std::os::unix::ffi::OsStringExt;
        SecretBytes::new(value.into_vec())
    } else if input::has_terminal() {
        let answer = rpassword::prompt_password("Registration token: ").map_err(|err| {
            Error::Usage(format!("cannot read the token from the terminal: {err}"))
        })?;
        let answer = SecretBytes::from(answer);
        SecretBytes::new(answer.expose().trim_ascii().to_vec())
    } else {
        return Err(Error::Usage(
            "no registration token: pass --token-file FILE (mode 0600), set \
             REGISTRATION_TOKEN, or run on a terminal to be asked"
                .into(),
        ));
    };
    Token::new(bytes)
}

fn register_request(target: &Target, opts: &RegisterOpts) -> Request {
    let tags = if opts.tags.is_empty() {
        vec![target.name.clone()]
    } else {
        opts.tags.clone()
    };
    Request {
        name: target.name.clone(),
        image: target.image.clone(),
        config_dir: target.config_dir.clone(),
        url: opts.url.clone(),
        tags,
        job_image: opts.job_image.clone(),
    }
}

fn settings(global: &GlobalArgs, opts: &ConfigureOpts) -> Result<Settings, Error> {
    Ok(Settings {
        concurrent: opts.concurrent,
        check_interval: opts.check_interval,
        wiring: wiring(global, &opts.bin_dir, &opts.jobs)?,
        local_config: !opts.no_local_config,
        agent_cache: !opts.no_agent_cache,
        runner: opts.runner.clone(),
        earlier_bin_dirs: global.layout.bin_dir.iter().cloned().collect(),
    })
}

/// What `configure` (given options only) and `install` (`all`) record in
/// the host's layout file.
fn layout_of(global: &GlobalArgs, target: &Target, opts: &ConfigureOpts, all: bool) -> HostFile {
    runner_layout_update(
        global,
        all,
        &opts.bin_dir,
        &opts.jobs,
        (&target.name, &target.config_dir, &target.image),
    )
}

fn spec(target: &Target, debug: bool) -> Spec {
    Spec {
        name: target.name.clone(),
        image: target.image.clone(),
        config_dir: target.config_dir.clone(),
        debug,
    }
}

/// Prints a container log (token already masked) to standard error.
fn show_log(log: &str) {
    for line in log.lines() {
        say(format_args!("  | {line}"));
    }
}

async fn register(target: &Target, args: RegisterArgs) -> Result<(), Error> {
    let request = register_request(target, &args.opts);
    let config_path = request.config_path();
    if !args.force && register::is_registered(&config_path, &target.name)? {
        say(format_args!(
            "runner `{}` is already registered in `{}`; unchanged (--force registers again)",
            target.name,
            config_path.display()
        ));
        return Ok(());
    }
    let token = read_token(args.opts.token_file.as_deref())?;
    let engine = connect(target).await?;
    let registered = register::register(&engine, &request, &token).await?;
    show_log(&registered.log);
    say(format_args!(
        "registered runner `{}` in `{}`",
        target.name,
        config_path.display()
    ));
    Ok(())
}

fn configure(
    global: &GlobalArgs,
    target: &Target,
    args: &ConfigureArgs,
) -> Result<(), CommandError> {
    let settings = settings(global, &args.opts)?;
    let path = target.config_path();
    let report = config::apply(&path, &settings, args.check)
        .map_err(|err| pasteable(global, target, false, err))?;
    if !args.check {
        remember(global, &layout_of(global, target, &args.opts, false));
    }
    if report.changes.is_empty() {
        say(format_args!("`{}`: unchanged", path.display()));
        return Ok(());
    }
    if args.check {
        write_stdout(report.diff.as_bytes())?;
    }
    for change in &report.changes {
        say(format_args!("{change}"));
    }
    if args.check {
        let opts = &args.opts;
        let mut command = runner_command(
            global,
            target,
            "configure",
            Some((&opts.bin_dir, &opts.jobs)),
        );
        // What to set, where it is not the default.
        for (name, value, default) in [
            ("--concurrent", opts.concurrent, 8),
            ("--check-interval", opts.check_interval, 1),
        ] {
            if value != default {
                let _ = write!(command, " {name} {value}");
            }
        }
        for (flag, given) in [
            ("--no-local-config", opts.no_local_config),
            ("--no-agent-cache", opts.no_agent_cache),
        ] {
            if given {
                command.push(' ');
                command.push_str(flag);
            }
        }
        if let Some(runner) = &opts.runner {
            let _ = write!(command, " --runner {runner}");
        }
        return Err(Error::CheckFailed { path, command }.into());
    }
    say(format_args!("updated `{}`", path.display()));
    Ok(())
}

async fn start(target: &Target, args: StartArgs) -> Result<(), Error> {
    let engine = connect(target).await?;
    let spinner = output::spinner(format!(
        "starting container `{}`, waiting for it to run",
        target.name
    ));
    let outcome = container::start(&engine, &spec(target, args.debug), args.recreate).await;
    spinner.finish_and_clear();
    let outcome = outcome?;
    say(format_args!(
        "container `{}`: {}",
        target.name,
        install::start_message(outcome)
    ));
    Ok(())
}

async fn stop(target: &Target, args: StopArgs) -> Result<(), Error> {
    let engine = connect(target).await?;
    if container::stop(&engine, &target.name, args.timeout).await? {
        say(format_args!("container `{}`: stopped", target.name));
    } else {
        say(format_args!(
            "container `{}`: not running; unchanged",
            target.name
        ));
    }
    Ok(())
}

async fn restart(target: &Target, args: StopArgs) -> Result<(), Error> {
    let engine = connect(target).await?;
    container::restart(&engine, &target.name, args.timeout).await?;
    say(format_args!("container `{}`: restarted", target.name));
    Ok(())
}

async fn remove(target: &Target) -> Result<(), Error> {
    let engine = connect(target).await?;
    container::remove(&engine, &target.name).await?;
    say(format_args!(
        "container `{}`: removed (`{}` is kept)",
        target.name,
        target.config_dir.display()
    ));
    Ok(())
}

/// Streams the log: the container's stderr to ours, the rest to stdout.
/// The outer error is the engine's; the inner one a failed write to
/// stdout, which ends the stream (a closed pipe: with success).
async fn logs(target: &Target, args: LogsArgs) -> Result<Result<(), CommandError>, Error> {
    use bollard::container::LogOutput;
    let engine = connect(target).await?;
    let mut written = Ok(());
    container::logs(&engine, &target.name, args.follow, args.tail, |chunk| {
        written = match chunk {
            LogOutput::StdErr { message } => {
                output::write_stderr(&message);
                Ok(())
            }
            other => write_stdout(&other.into_bytes()),
        };
        if written.is_ok() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })
    .await?;
    Ok(written)
}

/// The status report, as a table or JSON.
async fn status(global: &GlobalArgs, target: &Target, args: StatusArgs) -> Result<String, Error> {
    let engine = connect(target).await?;
    let secrets_dir = mount_source(&global.dir, "--dir")?;
    let report = status::status(&engine, &target.name, &target.config_path(), &secrets_dir).await?;
    let text = if args.json {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        let mut table = Table::new(&[15]);
        let jobs = JobsArgs {
            jobs: JobsChoice::Encrypted,
            view: None,
        };
        let bin_dir = Path::new(crate::core::layout::DEFAULT_BIN_DIR);
        let configure = runner_command(global, target, "configure", Some((bin_dir, &jobs)));
        let register = runner_command(global, target, "register", None);
        for line in report.lines(&configure, &register) {
            let tone = match line.healthy {
                None => Tone::Plain,
                Some(true) => Tone::Good,
                Some(false) => Tone::Bad,
            };
            table.row([line.label.into(), Cell::toned(line.value, tone)]);
        }
        table.render(output::stdout_color())
    };
    Ok(text)
}

async fn install(global: &GlobalArgs, target: &Target, args: InstallArgs) -> Result<(), Error> {
    input::kdf_params(&args.kdf, crate::vault::KdfParams::DEFAULT)?;
    let settings = settings(global, &args.configure)?;
    let request = register_request(target, &args.register);
    let spec = spec(target, args.debug);
    let vault = VaultDir::new(
        &settings.wiring.secrets_dir,
        Duration::from_secs(global.wait),
    )
    .with_state_dir(&global.state_dir_or_default())
    .with_warnings(crate::cli::context::warnings());
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().map_err(|err| {
            Error::Usage(format!(
                "cannot find this runvault's own binary ({err}); pass --binary FILE"
            ))
        })?,
    };
    // Checked before any step changes anything.
    if let Err(err) = std::fs::File::open(&binary) {
        return Err(Error::Usage(format!(
            "--binary `{}` cannot be read: {err}",
            binary.display()
        )));
    }
    let engine = connect(target).await?;
    let plan = Install {
        vault: &vault,
        keep: args.keep,
        register: &request,
        settings: &settings,
        spec: &spec,
        binary: &binary,
        views_file: &global.views_file,
    };
    // The vault's first slots include the machine key; the admin's own
    // secret (passphrase file or prompt) is what adds the key to a vault
    // it does not open yet.
    let with_key = GlobalArgs {
        key_file: Some(settings.wiring.key_file.clone()),
        ..global.clone()
    };
    let without_key = GlobalArgs {
        key_file: None,
        ..global.clone()
    };
    let secrets = install::Secrets {
        init: || input::init_credentials(&with_key, &args.kdf, false),
        admin: || input::unlock_credential(&without_key),
        token: || read_token(args.register.token_file.as_deref()),
    };
    let changed = install::install(&engine, plan, secrets, &mut |step| {
        say(format_args!("{step}"));
        if let install::Step::Register(Some(log)) = step {
            show_log(log);
        }
    })
    .await?;
    remember(global, &layout_of(global, target, &args.configure, true));
    if changed {
        say(format_args!(
            "runner `{}` is installed and running",
            target.name
        ));
    } else {
        say(format_args!("runner `{}`: nothing changed", target.name));
    }
    Ok(())
}
