//! The clap definitions of every command and option (raw input only; the
//! handlers validate it before any I/O).
//!
//! The top of the definitions: `Cli`, the global options and the
//! `Command` enum use `runner_args` (the `runner` commands) and
//! `kdf_args`, which use nothing here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cli::kdf_args::{KdfArgs, ShortPassphraseArgs};
use crate::cli::option_scope;
use crate::cli::runner_args::{JobsArgs, RunnerArgs, RunnerCommon};

/// `--version`: the release and the vault format it reads and writes.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (vault format 1: reads and writes format 1)"
);

/// runvault: encrypted credentials for DataOps runner hosts.
#[derive(Debug, Parser)]
// The exit codes end `--help` (one short string built per run).
#[command(name = "runvault", version = VERSION, about, after_help = crate::core::exit::help_text())]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The vault directory holding vault.yml and vault.salt.
    #[arg(
        long,
        global = true,
        env = "RUNVAULT_DIR",
        default_value = "/secrets",
        value_name = "DIR"
    )]
    pub dir: PathBuf,
    /// File whose first line is the passphrase (must be mode 0600 or stricter).
    #[arg(
        long,
        global = true,
        env = "RUNVAULT_PASSPHRASE_FILE",
        value_name = "FILE"
    )]
    pub passphrase_file: Option<PathBuf>,
    /// Machine key file (from `runvault keygen`) used instead of a passphrase.
    #[arg(long, global = true, env = "RUNVAULT_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The host's identity (age identity file, or an unencrypted OpenSSH
    /// ed25519 private key): opens the vault through its recipient slot.
    /// With `keygen`: write a new identity there (FILE optional).
    #[arg(
        long,
        global = true,
        env = "RUNVAULT_IDENTITY",
        value_name = "FILE",
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub identity: Option<PathBuf>,
    /// Allow a local change (set, rm, rekey, key ..., import, rollback) on
    /// a host whose vault is managed elsewhere (see `runvault receive`).
    #[arg(long, global = true)]
    pub local: bool,
    /// Where this host keeps each vault's rollback high-water mark (outside
    /// DIR) [default: /var/lib/runvault for root, else
    /// $XDG_STATE_HOME/runvault or ~/.local/state/runvault].
    #[arg(long, global = true, env = "RUNVAULT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where changes are logged (default DIR/audit.log).
    #[arg(long, global = true, env = "RUNVAULT_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// The host's list of plaintext views, refreshed after every change.
    #[arg(
        long,
        global = true,
        env = "RUNVAULT_VIEWS_FILE",
        default_value = "/etc/runvault/views",
        value_name = "FILE"
    )]
    pub views_file: PathBuf,
    /// The host's layout file, which gives every option above its default
    /// [default: /etc/runvault/runvault.toml].
    #[arg(long, global = true, env = "RUNVAULT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Seconds a writer waits for another writer's lock before exiting 6.
    #[arg(long, global = true, default_value_t = 10, value_name = "SECS")]
    pub wait: u64,
    /// More diagnostics on stderr: -v info, -vv debug, -vvv trace (never secrets).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print only errors and warnings: no notes or progress (data on stdout still prints).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What the layout file gave and which options were given (filled
    /// after parsing, by `cli::defaults`).
    #[arg(skip)]
    pub layout: Layout,
}

/// The host's layout file as the command line resolved it.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The layout file (`--config`, `RUNVAULT_CONFIG`, else the default).
    pub file: PathBuf,
    /// Whether `--config` or `RUNVAULT_CONFIG` named it.
    pub named: bool,
    /// Whether it was read: `None` when the command did not need it,
    /// `Some(false)` when it does not exist.
    pub read: Option<bool>,
    /// Its `key_file`: the key file's place when `--key-file` is not given.
    pub key_file: Option<PathBuf>,
    /// Its `identity_file`: the host's identity when `--identity` names none.
    pub identity_file: Option<PathBuf>,
    /// Its `bin_dir`, even where `--bin-dir` overrides it: `configure`
    /// replaces a mount of that earlier binary directory.
    pub bin_dir: Option<PathBuf>,
    /// Its `views_file`.
    pub views_file: Option<PathBuf>,
    /// The options given by flag or environment (clap ids), which the
    /// file does not override and which commands record in it.
    pub given: Vec<&'static str>,
}

impl Layout {
    /// Whether the option with clap id `id` was given (flag or environment).
    pub fn given(&self, id: &str) -> bool {
        self.given.contains(&id)
    }

    /// Whether the admin named the views file (flag, environment or this
    /// file) rather than leaving the built-in default.
    pub fn views_file_named(&self) -> bool {
        self.given("views_file") || self.views_file.is_some()
    }
}

impl GlobalArgs {
    /// The machine key file: `--key-file`, else the layout file's, else
    /// the default path.
    pub fn key_file_or_default(&self) -> PathBuf {
        self.key_file
            .clone()
            .or_else(|| self.layout.key_file.clone())
            .unwrap_or_else(|| PathBuf::from(crate::core::layout::DEFAULT_KEY_FILE))
    }

    /// The rollback marks' directory: `--state-dir`, else the default for
    /// the user running runvault (`layout::default_state_dir`).
    pub fn state_dir_or_default(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(crate::core::layout::default_state_dir)
    }
}

/// The commands.
///
/// `defer`: a subcommand's options are built only when it is the one
/// invoked (every job's `get` and `exec` pays for the tree). With it, a
/// doc comment on a subcommand's payload (an `Args` struct, a nested
/// `Subcommand` enum, a flattened struct) would replace the about line the
/// variant gives, so those carry plain `//` comments; tests/host/help.rs checks
/// every command's help against its parent's list.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create the vault in DIR, or adopt a hand-made plaintext vault.yml.
    Init(InitArgs),
    /// Create or replace the value at PATH (never read from the command line).
    Set(SetArgs),
    /// Print the value at PATH.
    Get(GetArgs),
    /// List the paths in the vault (never values).
    List(ListArgs),
    /// Remove the value (or subtree) at PATH.
    Rm(RmArgs),
    /// Check the key, the whole-file authentication, that every value decrypts and that the vault was not rolled back.
    Verify(VerifyArgs),
    /// Merge a plaintext YAML file into the vault.
    Import(ImportArgs),
    /// Print the plaintext, or write it to a new private file.
    Export(ExportArgs),
    /// Write a new random machine key file (0400), refusing to overwrite.
    Keygen(KeygenArgs),
    /// Install a vault shipped to STAGING_DIR (vault.yml + vault.salt) once it verifies.
    Receive(ReceiveArgs),
    /// Manage key slots: list, add, passwd, remove.
    Key(KeyArgs),
    /// Run a command with DATAOPS_VAULT(PATH) references in its environment resolved.
    Exec(ExecArgs),
    /// Resolve DATAOPS_VAULT(PATH) references in a text file.
    Render(RenderArgs),
    /// List the versions of PATH with their times (never values).
    History(HistoryArgs),
    /// Restore an old version of PATH as a new version.
    Rollback(RollbackArgs),
    /// Rotate a credential at its source: stage a new value, apply and test it with hooks, promote it.
    Rotate(RotateArgs),
    /// Rotate the data key (and with --new-salt the salt): re-encrypt everything.
    Rekey(RekeyArgs),
    /// Print the audit HMAC of PATH's value (or of a value on stdin) to match audit.log.
    AuditHmac(AuditHmacArgs),
    /// The DataOps runner: register, configure, start/stop, status, install.
    Runner(Box<RunnerArgs>),
    /// Check that this host is set up safely (exit 1 if any check fails).
    Doctor(DoctorArgs),
    /// Plaintext views in RAM for job images that read /secrets/vault.yml as plaintext.
    View(ViewArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page (roff) to standard output, or write every command's page into a directory.
    Man(ManArgs),
}

// `runvault completions`: touches neither the vault nor the layout file.
#[derive(Debug, Args)]
#[command(mut_args = completions_options)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

// `runvault man`: its `--dir` is where the pages go (`man_options`).
#[derive(Debug, Args)]
#[command(mut_args = man_options)]
pub struct ManArgs {
    /// Where to write one page per command: `man --dir` (filled after
    /// parsing from the option [`MAN_DIR`], which clap cannot derive: it
    /// is the global `--dir` made `man`'s own).
    #[arg(skip)]
    pub dir: Option<PathBuf>,
}

/// The clap id of `man --dir`.
pub const MAN_DIR: &str = "man_dir";

/// `completions` uses neither the vault nor the layout file: only `-v`
/// and `-q` of the global options show.
fn completions_options(arg: clap::Arg) -> clap::Arg {
    option_scope::hide_globals_unless(arg, &[])
}

/// `man`: as [`completions_options`], and the copy of the global `--dir`
/// (a vault directory elsewhere) made `man`'s own option, with its own id
/// so that no `--dir` given before `man`, no `RUNVAULT_DIR` and no
/// default reaches it.
fn man_options(arg: clap::Arg) -> clap::Arg {
    if arg.get_id() == "dir" {
        return arg
            .id(MAN_DIR)
            .global(false)
            .help("Write one page per command (runvault.1, runvault-key-add.1, ...) into DIR")
            .default_value(None)
            .env(None);
    }
    completions_options(arg)
}

// `runvault view`.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// The view operation.
    #[command(subcommand)]
    pub command: ViewCommand,
}

// View operations.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ViewCommand {
    /// Write the plaintext view into a directory (or every configured one).
    Refresh {
        /// The view directory (on tmpfs or ramfs).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        out: Option<PathBuf>,
        /// Refresh every view in the views file.
        #[arg(long)]
        all: bool,
        /// Allow a directory on a disk filesystem (plaintext on disk).
        #[arg(long)]
        allow_disk: bool,
    },
    /// List the configured views and whether each is current.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a view to the views file and write it now.
    Add {
        /// The view directory (on tmpfs or ramfs).
        #[arg(value_name = "VIEW_DIR")]
        view_dir: PathBuf,
        /// Allow a directory on a disk filesystem.
        #[arg(long)]
        allow_disk: bool,
    },
    /// Remove a view from the views file and delete its plaintext files.
    Remove {
        /// The view directory.
        #[arg(value_name = "VIEW_DIR")]
        view_dir: PathBuf,
        /// Leave the view's files in place.
        #[arg(long)]
        keep_files: bool,
    },
    /// Write a systemd unit that refreshes the views at boot, before docker.service.
    InstallUnit {
        /// Where to write `runvault-views.service`.
        #[arg(long, default_value = "/etc/systemd/system", value_name = "DIR")]
        unit_dir: PathBuf,
        /// The runvault binary the unit runs (default: this one).
        #[arg(long, value_name = "FILE")]
        binary: Option<PathBuf>,
    },
}

// `runvault exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Resolve references only in variable NAME (repeatable); default: every variable
    /// except those the CI system sets (CI_*, GITLAB_*, ...; see docs/jobs.md).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<std::ffi::OsString>,
    /// Also export every value under PREFIX as an upper-case variable
    /// (SNOWFLAKE.TRANSFORM.PASSWORD becomes SNOWFLAKE_TRANSFORM_PASSWORD); repeatable.
    #[arg(long = "export", value_name = "PREFIX")]
    pub exports: Vec<String>,
    /// Start from an empty environment plus the resolved and exported variables.
    #[arg(long)]
    pub pristine: bool,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<std::ffi::OsString>,
}

// `runvault render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The text file with DATAOPS_VAULT(PATH) references.
    pub template: PathBuf,
    /// Write to FILE (created 0600, atomically) instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

// `runvault doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Which runner to check (`--name`; without it config.toml and the
    /// container are not checked), as the `runner` commands take it.
    #[command(flatten)]
    pub runner: RunnerCommon,
    /// The directory of the runvault binary jobs run.
    #[arg(long, default_value = crate::core::layout::DEFAULT_BIN_DIR, value_name = "DIR")]
    pub bin_dir: PathBuf,
    /// What jobs read (as `runner configure` was told).
    #[command(flatten)]
    pub jobs: JobsArgs,
}

// `runvault history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Dotted path of a value.
    pub path: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

// `runvault rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Dotted path of a value.
    pub path: String,
    /// The version to restore (default: the one before the current).
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
}

// `runvault rekey`.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// Also replace vault.salt (every kept slot is re-derived).
    #[arg(long)]
    pub new_salt: bool,
    /// Remove the slots that no given secret opens, instead of refusing.
    #[arg(long)]
    pub drop_others: bool,
    /// Secrets of further passphrase slots to keep (repeatable).
    #[arg(long, value_name = "FILE")]
    pub also_passphrase_file: Vec<PathBuf>,
    /// Further key files whose slots to keep (repeatable).
    #[arg(long, value_name = "FILE")]
    pub also_key_file: Vec<PathBuf>,
    /// New Argon2id parameters for the passphrase slots.
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// New number of versions kept per path.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keep: Option<u32>,
}

// `runvault audit-hmac`.
#[derive(Debug, Args)]
pub struct AuditHmacArgs {
    /// Dotted path of a value.
    pub path: String,
    /// Hash the value read from standard input instead of the stored one.
    #[arg(long)]
    pub stdin: bool,
}

// `runvault init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Argon2id parameters of the first passphrase slot.
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Whether its passphrase may be short.
    #[command(flatten)]
    pub short: ShortPassphraseArgs,
    /// Versions kept per path, the current one included.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keep: u32,
    /// Adopt a plaintext vault.yml even where an encrypted vault was (it may have been replaced).
    #[arg(long)]
    pub force: bool,
}

// `runvault verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Accept an older vault restored on purpose: set this host's high-water mark to its generation.
    #[arg(long)]
    pub accept_rollback: bool,
}

/// The type a value set from input is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValueType {
    /// Text (the default).
    String,
    /// A 64-bit integer.
    Int,
    /// A floating-point number.
    Float,
    /// `true` or `false`.
    Bool,
}

// `runvault set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// Dotted path, e.g. SNOWFLAKE.TRANSFORM.PASSWORD (list items as `NAME[0]`).
    pub path: String,
    /// Read the value from standard input (one trailing newline is dropped).
    #[arg(long, group = "source")]
    pub stdin: bool,
    /// Read the value from a file, byte for byte.
    #[arg(long, group = "source", value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Generate a random password of LEN characters (default 32).
    #[arg(long, group = "source", value_name = "LEN", num_args = 0..=1, default_missing_value = "32")]
    pub generate: Option<usize>,
    /// Only write if the path is at version N now (0: only if absent); else exit 8.
    #[arg(long, value_name = "N")]
    pub if_version: Option<u32>,
    /// Store the value as this YAML type.
    #[arg(long = "type", value_enum, default_value_t = ValueType::String)]
    pub value_type: ValueType,
    /// Rotation policy: the value is due once older than this (e.g. 90d); see `list --due`.
    #[arg(long, value_name = "DUR")]
    pub max_age: Option<String>,
}

// `runvault get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Dotted path of a value.
    pub path: String,
    /// Print the pending value of a rotation instead of the current one.
    #[arg(long)]
    pub pending: bool,
}

// `runvault list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array of paths.
    #[arg(long)]
    pub json: bool,
    /// Only paths with a --max-age policy whose value is older than it (with --json: their ages).
    #[arg(long)]
    pub due: bool,
    /// Only paths at or under this prefix.
    pub prefix: Option<String>,
}

// `runvault rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Dotted path of a value or subtree.
    pub path: String,
    /// Also destroy the stored versions (otherwise `rollback` can restore them).
    #[arg(long)]
    pub purge: bool,
}

// `runvault import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Plaintext YAML file to merge (values in it replace existing ones); `-` reads stdin.
    pub file: PathBuf,
}

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Nested YAML, as the hand-made vault.yml.
    Yaml,
    /// Nested JSON.
    Json,
    /// `KEY=value` lines, keys upper-cased with `_` for `.`.
    Env,
}

// `runvault export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Yaml)]
    pub format: ExportFormat,
    /// Only values at or under this path.
    pub prefix: Option<String>,
    /// Write to FILE (created 0600, atomically) instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

// `runvault keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key.
    #[arg(default_value = crate::core::layout::DEFAULT_KEY_FILE)]
    pub file: PathBuf,
    /// Print the recipient (public key) of this identity file instead.
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    pub recipient: Option<PathBuf>,
}

// `runvault receive`.
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The directory holding the shipped vault.yml and vault.salt.
    pub staging_dir: PathBuf,
    /// Install a vault with another vault_id than the installed one.
    #[arg(long)]
    pub replace_vault: bool,
    /// Where the vault is managed (e.g. ansible:prod@controller), named when a local change is refused.
    #[arg(long, value_name = "TEXT")]
    pub source: Option<String>,
}

// `runvault key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The slot operation.
    #[command(subcommand)]
    pub command: KeyCommand,
}

// Key-slot operations; each unlocks the vault with the global options first.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum KeyCommand {
    /// List slots: id, kind, creation time (never secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a slot.
    Add {
        /// What kind of slot.
        #[command(subcommand)]
        kind: KeyAddKind,
    },
    /// Change the passphrase of a passphrase slot (no value is re-encrypted).
    Passwd {
        /// Slot id (see `key list`).
        slot: u32,
        /// Read the new passphrase from this file instead of a prompt.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// Argon2id parameters for the changed slot.
        #[command(flatten)]
        kdf: KdfArgs,
        /// Whether the new passphrase may be short.
        #[command(flatten)]
        short: ShortPassphraseArgs,
    },
    /// Remove a slot (the last one cannot be removed).
    Remove {
        /// Slot id (see `key list`).
        slot: u32,
        /// Print JSON (for a recipient slot: the paths to rotate).
        #[arg(long)]
        json: bool,
    },
}

// The kinds of slot `key add` creates.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum KeyAddKind {
    /// A passphrase slot (Argon2id).
    Passphrase {
        /// Read the new passphrase from this file instead of a prompt.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// Argon2id parameters for the new slot.
        #[command(flatten)]
        kdf: KdfArgs,
        /// Whether the new passphrase may be short.
        #[command(flatten)]
        short: ShortPassphraseArgs,
    },
    /// A machine key-file slot.
    Keyfile {
        /// The key file (from `runvault keygen`).
        file: PathBuf,
    },
    /// A slot sealed to a host's public key (age1... or ssh-ed25519 AAAA...).
    Recipient {
        /// The recipient, as `runvault keygen --recipient` prints it.
        recipient: String,
        /// A note naming the host, shown by `key list`.
        #[arg(long, value_name = "TEXT")]
        label: Option<String>,
    },
}

// `runvault rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Dotted path of the value (with --alternate: of the mapping holding USERNAME, PASSWORD and ALTERNATE).
    pub path: String,
    /// Shell command that sets the new value at the source (stdin: new value, then old value).
    #[arg(long, value_name = "CMD", required_unless_present_any = ["resume", "abort"])]
    pub apply: Option<String>,
    /// Shell command that checks the new value works (stdin: new value).
    #[arg(long = "test", value_name = "CMD")]
    pub test_cmd: Option<String>,
    /// With --abort: shell command that puts the old value back at the source (stdin: old value, then new value).
    #[arg(long, value_name = "CMD")]
    pub revert: Option<String>,
    /// Generate the new value: a random password of LEN characters (the default, 32).
    #[arg(long, group = "source", value_name = "LEN", num_args = 0..=1, default_missing_value = "32")]
    pub generate: Option<usize>,
    /// Read the new value from standard input (one trailing newline is dropped).
    #[arg(long, group = "source")]
    pub stdin: bool,
    /// How long each hook may run before it is killed.
    #[arg(long, value_name = "DUR", default_value = "60s")]
    pub timeout: String,
    /// Alternating users: rotate the password of PATH.ALTERNATE, then swap it with the current account.
    #[arg(long)]
    pub alternate: bool,
    /// Finish a pending rotation: run --test (if given) and promote.
    #[arg(long, conflicts_with_all = ["abort", "apply", "source"])]
    pub resume: bool,
    /// Drop a pending rotation, after running --revert (if given).
    #[arg(long, conflicts_with_all = ["apply", "source"])]
    pub abort: bool,
    /// Rotation policy: the value is due once older than this (e.g. 90d); see `list --due`.
    #[arg(long, value_name = "DUR")]
    pub max_age: Option<String>,
}
