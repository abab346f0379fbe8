//! The clap definitions of `runvault runner ...` (raw input only; the
//! handlers in `runner_cmds` validate it into `runner::Target` and friends).
//!
//! Below `args` (whose `Command::Runner` and `doctor` hold these) and above
//! `kdf_args`; it uses nothing else of the command line.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::kdf_args::KdfArgs;
use crate::cli::option_scope;

// `runvault runner`.
#[derive(Debug, Args)]
pub struct RunnerArgs {
    /// Options every runner command takes.
    #[command(flatten)]
    pub common: RunnerCommon,
    /// The runner command.
    #[command(subcommand)]
    pub command: RunnerCommand,
}

// Options accepted by every `runner` subcommand, before or after it.
#[derive(Debug, Args)]
pub struct RunnerCommon {
    /// The agent name: container name, runner description and default tag.
    #[arg(long, global = true, env = "AGENT_NAME", value_name = "NAME")]
    pub name: Option<String>,
    /// The runner's config directory [default: /srv/dataops-runner-NAME/config].
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// The runner image.
    #[arg(
        long,
        global = true,
        default_value = crate::runner::DEFAULT_IMAGE,
        value_name = "IMAGE"
    )]
    pub image: String,
    /// The Docker engine [default: DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long, global = true, env = "DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,
}

impl RunnerCommon {
    /// The validated [`Target`](crate::runner::Target) these options name.
    pub fn target(&self) -> Result<crate::runner::Target, crate::runner::Error> {
        crate::runner::Target::new(
            self.name.as_deref(),
            self.config_dir.as_deref(),
            &self.image,
            self.docker_host.as_deref(),
        )
    }
}

// The runner commands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum RunnerCommand {
    /// Register the runner: run the runner image's `register` once.
    Register(RegisterArgs),
    /// Edit config.toml: concurrency, and the read-only mounts and environment jobs need.
    Configure(ConfigureArgs),
    /// Create (if absent) and start the runner container.
    Start(StartArgs),
    /// Stop the runner container.
    Stop(StopArgs),
    /// Restart the runner container.
    Restart(StopArgs),
    /// Remove the runner container (config.toml is kept).
    Remove,
    /// Print the runner container's log.
    Logs(LogsArgs),
    /// Show the container's state and whether config.toml mounts /secrets read-only.
    Status(StatusArgs),
    /// The whole procedure: key, vault, key slot, binary, register, configure, start.
    Install(InstallArgs),
}

// How `register` registers.
#[derive(Debug, Args)]
pub struct RegisterOpts {
    /// The DataOps URL.
    #[arg(
        long,
        env = "DATAOPS_URL",
        default_value = "https://app.dataops.live",
        value_name = "URL"
    )]
    pub url: String,
    /// Tags of the runner, comma-separated [default: NAME].
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
    /// The image jobs run in.
    #[arg(
        long,
        default_value = "dataopslive/dataops-utils-runner",
        value_name = "IMAGE"
    )]
    pub job_image: String,
    /// Read the registration token from FILE (mode 0600) instead of
    /// REGISTRATION_TOKEN or a prompt.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

// `runvault runner register`: no vault option applies.
#[derive(Debug, Args)]
#[command(mut_args = register_options)]
pub struct RegisterArgs {
    /// How to register.
    #[command(flatten)]
    pub opts: RegisterOpts,
    /// Register again even if config.toml already has a runner named NAME.
    #[arg(long)]
    pub force: bool,
}

/// The options every runner command takes ([`RunnerCommon`]), by id:
/// built once, only by `register`, whose help shows them.
static COMMON_IDS: std::sync::LazyLock<Vec<clap::Id>> = std::sync::LazyLock::new(|| {
    RunnerCommon::augment_args(clap::Command::new("runner"))
        .get_arguments()
        .map(|arg| arg.get_id().clone())
        .collect()
});

/// `register` reads the layout file (a runner's config directory by its
/// name) but not the vault: the vault's global options are hidden.
fn register_options(arg: clap::Arg) -> clap::Arg {
    if COMMON_IDS.iter().any(|id| id == arg.get_id()) {
        return arg;
    }
    option_scope::hide_globals_unless(arg, &["config"])
}

// What `configure` sets.
#[derive(Debug, Args)]
pub struct ConfigureOpts {
    /// Global `concurrent`: jobs run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i64).range(1..), value_name = "N")]
    pub concurrent: i64,
    /// Global `check_interval` in seconds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..), value_name = "SECS")]
    pub check_interval: i64,
    /// Only this runner (by name) instead of every [[runners]].
    #[arg(long, value_name = "NAME")]
    pub runner: Option<String>,
    /// Do not add `/app:/local_config:rw`.
    #[arg(long)]
    pub no_local_config: bool,
    /// Do not add `/agent_cache:/agent_cache:rw`.
    #[arg(long)]
    pub no_agent_cache: bool,
    /// The directory holding the static runvault binary jobs run, mounted
    /// read-only at the same path (`install` puts the binary there).
    #[arg(long, default_value = crate::core::layout::DEFAULT_BIN_DIR, value_name = "DIR")]
    pub bin_dir: PathBuf,
    /// What jobs read.
    #[command(flatten)]
    pub jobs: JobsArgs,
}

// What jobs read.
#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    /// `encrypted`: the vault, the key and the binary (jobs run `runvault
    /// exec`); `plaintext-view`: a plaintext view in RAM at `/secrets` (for
    /// job images that read vault.yml as plaintext; no key, no binary).
    #[arg(long, value_enum, default_value_t = JobsChoice::Encrypted)]
    pub jobs: JobsChoice,
    /// The plaintext view directory (with `--jobs plaintext-view`).
    #[arg(long, value_name = "DIR", required_if_eq("jobs", "plaintext-view"))]
    pub view: Option<PathBuf>,
}

/// The values of `--jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobsChoice {
    /// The encrypted vault plus key and binary.
    Encrypted,
    /// A plaintext view in RAM.
    PlaintextView,
}

// `runvault runner configure`.
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// What to set.
    #[command(flatten)]
    pub opts: ConfigureOpts,
    /// Print the diff and exit 1 if a change is needed; write nothing.
    #[arg(long)]
    pub check: bool,
}

// `runvault runner start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Create the container with DEBUG=true.
    #[arg(long)]
    pub debug: bool,
    /// Replace a same-named container that differs or is not runvault's.
    #[arg(long)]
    pub recreate: bool,
}

// `runvault runner stop` / `restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait for the runner to stop before killing it.
    #[arg(long, value_name = "S")]
    pub timeout: Option<i32>,
}

// `runvault runner logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

// `runvault runner status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

// `runvault runner install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// How to register (when not registered yet).
    #[command(flatten)]
    pub register: RegisterOpts,
    /// What to configure.
    #[command(flatten)]
    pub configure: ConfigureOpts,
    /// Create the container with DEBUG=true.
    #[arg(long)]
    pub debug: bool,
    /// Argon2id parameters of the vault's first passphrase slot (when created).
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// The runvault binary to put into --bin-dir for jobs [default: this
    /// runvault]. Job images may lack a libc: give a static build.
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Versions kept per path in the vault (when created).
    #[arg(long, default_value_t = crate::vault::DEFAULT_KEEP, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keep: u32,
}
