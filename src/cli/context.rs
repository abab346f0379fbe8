//! What every command handler takes from the global options: the vault
//! directory (with its warnings and the hook that refreshes the plaintext
//! views), parsed vault paths, the output-file guard, the runner wiring
//! and the async runtime of the runner commands.
//!
//! The order inside `cli/`, each file using only those before it:
//! `kdf_args` ← `runner_args` ← `args` (clap definitions); `output`,
//! `table` and `input`; this module; the handlers (`vault_cmds`,
//! `view_cmds`, `jobs_cmds`, `rotation_cmds`, `doctor_cmds`,
//! `runner_cmds`), which never use one another; `mod.rs`, which
//! dispatches to them.

use std::cell::OnceCell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use crate::cli::args::GlobalArgs;
use crate::cli::runner_args::{JobsArgs, JobsChoice};
use crate::core::exit::{self, CommandError};
use crate::core::fs;
use crate::core::host_file::{self, HostFile, RunnerEntry};
use crate::core::shell;
use crate::runner::config::{JobWiring, JobsMode};
use crate::runner::{Error, mount_source};
use crate::vault::AfterCommit;
use crate::vault::{KeyPath, VaultDir, VaultError};
use crate::view::{self, ViewEntry};

/// The vault directory the global options name. When the host has
/// plaintext views, every committed change refreshes them.
pub fn vault_dir(global: &GlobalArgs) -> VaultDir {
    tracing::debug!(dir = %global.dir.display(), views_file = %global.views_file.display(), "vault directory");
    let vault = VaultDir::new(&global.dir, Duration::from_secs(global.wait))
        .with_after_commit(refresh_hook(global))
        .with_state_dir(&global.state_dir_or_default())
        .with_warnings(warnings());
    match &global.audit_log {
        Some(log) => vault.with_audit_log(log),
        None => vault,
    }
}

/// How a writer's warnings reach the admin: always printed (also with
/// `-q`), since they say a protection did not hold for this change.
pub fn warnings() -> Rc<crate::vault::Warn> {
    Rc::new(|message: &str| {
        crate::cli::output::warn(format_args!("{message}"));
    })
}

/// The hook that refreshes each view listed in the views file after a
/// commit. It does no I/O until a writer asks whether it has work, so
/// readers (every job's `get` and `exec`) never touch the views file. A
/// failed refresh is reported loudly on stderr and leaves the committed
/// vault as it is.
fn refresh_hook(global: &GlobalArgs) -> AfterCommit {
    let views_file = global.views_file.clone();
    let views: Rc<OnceCell<Vec<ViewEntry>>> = Rc::new(OnceCell::new());
    let (given, dir) = (global.layout.views_file_named(), global.dir.clone());
    let load = move || -> Vec<ViewEntry> {
        view::read_views(&views_file).unwrap_or_else(|err| {
            if views_not_ours(&err, given, &dir) {
                tracing::debug!(views_file = %views_file.display(), "the host's views file is not readable by this user, whose own vault it cannot list: {err}");
            } else {
                crate::cli::output::warn(format_args!(
                    "views will not be refreshed: {err}"
                ));
            }
            Vec::new()
        })
    };
    let (wanted_views, run_views) = (Rc::clone(&views), views);
    let vault_dir = global.dir.clone();
    AfterCommit {
        wanted: Rc::new(move || !wanted_views.get_or_init(&load).is_empty()),
        run: Rc::new(move |vault, salt, generation| {
            for entry in run_views.get().into_iter().flatten() {
                if let Err(err) = view::refresh(
                    vault,
                    salt,
                    &vault_dir,
                    generation,
                    &entry.dir,
                    entry.allow_disk,
                ) {
                    crate::cli::output::warn(format_args!(
                        "the change is committed, but view `{}` was not refreshed: {err}; \
                         jobs reading it see an old vault until `runvault view refresh --all` succeeds",
                        entry.dir.display()
                    ));
                }
            }
        }),
    }
}

/// Whether a views file that could not be read is, quietly, none of this
/// vault's business: a user other than root (the quick start) changing a
/// vault directory of their own, while the host's views file, the built-in
/// default `/etc/runvault/views` (not named by `--views-file` or
/// `RUNVAULT_VIEWS_FILE`), is root's and closed to them. Root's views
/// list views of root's vault, which this user cannot change. Any other
/// failure (a views file that was named, root running, a vault this user
/// does not own, a bad line) still warns: a view would go stale.
fn views_not_ours(err: &view::ViewError, given: bool, dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let uid = crate::core::harden::current_uid();
    matches!(err, view::ViewError::Fs(err) if err.is_permission_denied())
        && !given
        && uid != 0
        && std::fs::metadata(dir).is_ok_and(|meta| meta.uid() == uid)
}

/// Parses a path argument.
pub fn parse_path(text: &str) -> Result<KeyPath, VaultError> {
    Ok(KeyPath::parse(text)?)
}

/// Parses an optional prefix argument; none is the whole vault.
pub fn parse_prefix(text: Option<&str>) -> Result<KeyPath, VaultError> {
    text.map_or(Ok(KeyPath::root()), parse_path)
}

/// Refuses an output file inside the vault directory, which is mounted
/// into jobs: plaintext must never land there.
pub fn refuse_plaintext_in_vault_dir(output: &Path, dir: &Path) -> Result<(), VaultError> {
    if fs::lies_within(fs::parent_dir(output), dir) {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        return Err(VaultError::Usage(format!(
            "refusing to write plaintext into the vault directory `{}` (it is mounted into jobs)",
            dir.display()
        )));
    }
    Ok(())
}

/// Runs a runner operation on a fresh current-thread runtime. tokio is
/// used only through here, so the vault commands never start one.
pub fn block_on<T>(operation: impl Future<Output = Result<T, Error>>) -> Result<T, CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            CommandError::with_code(
                exit::OTHER,
                format!("cannot start the async runtime: {err}"),
            )
        })?;
    Ok(runtime.block_on(operation)?)
}

/// The job wiring the options name: `--dir`, `--key-file` (or its
/// default), `--bin-dir` and `--jobs`/`--view`, made absolute and checked
/// not to overlap.
pub fn wiring(global: &GlobalArgs, bin_dir: &Path, jobs: &JobsArgs) -> Result<JobWiring, Error> {
    let mode = match (jobs.jobs, &jobs.view) {
        (JobsChoice::Encrypted, _) => JobsMode::Encrypted,
        (JobsChoice::PlaintextView, Some(view)) => {
            JobsMode::PlaintextView(mount_source(view, "--view")?)
        }
        (JobsChoice::PlaintextView, None) => {
            return Err(Error::Usage(
                "--jobs plaintext-view needs --view DIR".into(),
            ));
        }
    };
    let wiring = JobWiring {
        secrets_dir: mount_source(&global.dir, "--dir")?,
        key_file: mount_source(&global.key_file_or_default(), "--key-file")?,
        identity: match wired_identity(global) {
            Some(identity) => Some(mount_source(&identity, "--identity")?),
            None => None,
        },
        bin_dir: mount_source(bin_dir, "--bin-dir")?,
        mode,
    };
    wiring.validate()?;
    Ok(wiring)
}

/// The identity jobs open the vault with instead of the key file:
/// `--identity` (or `RUNVAULT_IDENTITY`); else, unless `--key-file` is
/// given, the layout's `identity_file` (`keygen --identity` records it).
pub fn wired_identity(global: &GlobalArgs) -> Option<PathBuf> {
    match &global.identity {
        Some(identity) if !identity.as_os_str().is_empty() => Some(identity.clone()),
        _ if global.layout.given("key_file") => None,
        _ => global.layout.identity_file.clone(),
    }
}

/// A path made absolute against the working directory, as the layout file
/// keeps it.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What a command records in the host's layout file from the global
/// options: with `all` (`runner install`) the vault directory and the key
/// file in effect, else only those given; the views file and the state
/// directory when given.
pub fn layout_update(global: &GlobalArgs, all: bool) -> HostFile {
    let given = |id: &str| all || global.layout.given(id);
    HostFile {
        secrets_dir: given("dir").then(|| absolute(&global.dir)),
        key_file: given("key_file").then(|| absolute(&global.key_file_or_default())),
        identity_file: (global.identity.as_deref())
            .filter(|identity| !identity.as_os_str().is_empty())
            .map(absolute),
        views_file: global
            .layout
            .given("views_file")
            .then(|| absolute(&global.views_file)),
        state_dir: global
            .layout
            .given("state_dir")
            .then(|| global.state_dir.as_deref().map(absolute))
            .flatten(),
        ..HostFile::default()
    }
}

/// [`layout_update`] plus what the runner commands were given (with
/// `all`, everything in effect): the binary directory, what jobs read,
/// and the runner's config directory and image under its name.
pub fn runner_layout_update(
    global: &GlobalArgs,
    all: bool,
    bin_dir: &Path,
    jobs: &JobsArgs,
    runner: (&str, &Path, &str),
) -> HostFile {
    let given = |id: &str| all || global.layout.given(id);
    let mut update = layout_update(global, all);
    update.bin_dir = given("bin_dir").then(|| absolute(bin_dir));
    if given("jobs") || global.layout.given("view") {
        update.jobs = Some(
            match jobs.jobs {
                JobsChoice::Encrypted => "encrypted",
                JobsChoice::PlaintextView => "plaintext-view",
            }
            .to_string(),
        );
        update.view = jobs.view.as_deref().map(absolute);
    }
    let (name, config_dir, image) = runner;
    let entry = RunnerEntry {
        config_dir: given("config_dir").then(|| absolute(config_dir)),
        image: given("image").then(|| image.to_string()),
    };
    if entry != RunnerEntry::default() {
        update.runners.insert(name.to_string(), entry);
    }
    update
}

/// Writes `update` into the host's layout file (nothing when it is
/// empty). A user other than root records only in a file `--config` or
/// `RUNVAULT_CONFIG` names: the system's file is root's. A failure is a
/// warning: the command's own work is done.
pub fn remember(global: &GlobalArgs, update: &HostFile) {
    let file = &global.layout.file;
    if *update == HostFile::default() {
        return;
    }
    if !global.layout.named && !rustix::process::geteuid().is_root() {
        tracing::debug!(file = %file.display(), "not root: the layout is not recorded");
        return;
    }
    match host_file::record(file, update) {
        Ok(true) => tracing::info!(file = %file.display(), "recorded the host's layout"),
        Ok(false) => {}
        Err(err) => {
            crate::cli::output::warn(format_args!("the host's layout was not recorded: {err}"));
        }
    }
}

/// A hint's command line for a vault command: `runvault` with the vault
/// options this command was given (the vault directory always; the state
/// directory, the audit log and the layout file when given), then `sub`,
/// so that it acts on the same vault in the same way when pasted. The
/// secret is left to the admin (the one given may be the one that no
/// longer opens the vault, after `key remove`).
pub fn vault_command(global: &GlobalArgs, sub: &str) -> String {
    let mut words = vec!["runvault".to_string()];
    let mut option = |name: &str, value: &Path| {
        words.push(name.to_string());
        words.push(shell::word(&absolute(value).to_string_lossy()));
    };
    option("--dir", &global.dir);
    if let (true, Some(state_dir)) = (global.layout.given("state_dir"), &global.state_dir) {
        option("--state-dir", state_dir);
    }
    if let Some(audit_log) = &global.audit_log {
        option("--audit-log", audit_log);
    }
    if global.layout.named {
        option("--config", &global.layout.file);
    }
    words.push(sub.to_string());
    words.join(" ")
}

/// The one builder of a hint's command line: `runvault runner SUB` with
/// the options of this command that `SUB` needs and that differ from the
/// built-in defaults, so the hint does what it says when pasted (a
/// `--config-dir`, `--image` or `--docker-host` of this runner; with
/// `wiring`, the `--dir`, `--key-file`, `--bin-dir` and `--jobs`/`--view`
/// that `configure` and `install` wire into jobs).
pub fn runner_command(
    global: &GlobalArgs,
    target: &crate::runner::Target,
    sub: &str,
    wiring: Option<(&Path, &JobsArgs)>,
) -> String {
    use crate::core::layout::{DEFAULT_BIN_DIR, DEFAULT_KEY_FILE};
    let mut words = vec![
        "runvault".to_string(),
        "runner".into(),
        sub.into(),
        "--name".into(),
        shell::word(&target.name),
    ];
    let mut option = |name: &str, value: &str| {
        words.push(name.to_string());
        words.push(shell::word(value));
    };
    let default_config_dir = format!("/srv/dataops-runner-{}/config", target.name);
    if target.config_dir != Path::new(&default_config_dir) {
        option("--config-dir", &target.config_dir.to_string_lossy());
    }
    if target.image != crate::runner::DEFAULT_IMAGE {
        option("--image", &target.image);
    }
    if let Some(host) = &target.docker_host {
        option("--docker-host", host);
    }
    if let Some((bin_dir, jobs)) = wiring {
        let dir = absolute(&global.dir);
        if dir != Path::new(crate::core::layout::SECRETS_TARGET) {
            option("--dir", &dir.to_string_lossy());
        }
        match wired_identity(global) {
            Some(identity) => option("--identity", &absolute(&identity).to_string_lossy()),
            None => {
                let key_file = absolute(&global.key_file_or_default());
                if key_file != Path::new(DEFAULT_KEY_FILE) {
                    option("--key-file", &key_file.to_string_lossy());
                }
            }
        }
        let bin_dir = absolute(bin_dir);
        if bin_dir != Path::new(DEFAULT_BIN_DIR) {
            option("--bin-dir", &bin_dir.to_string_lossy());
        }
        if jobs.jobs == JobsChoice::PlaintextView {
            option("--jobs", "plaintext-view");
            if let Some(view) = &jobs.view {
                option("--view", &absolute(view).to_string_lossy());
            }
        }
    }
    words.join(" ")
}

/// Debug builds only, with `RUNVAULT_DEBUG_KDF_RUNS` set: prints how many
/// KDF runs the command made (tests/host/kdf_runs.rs proves it is one). Called at
/// the end of every command, and by `exec` before the process is replaced.
pub fn report_kdf_runs() {
    if cfg!(debug_assertions) && std::env::var_os("RUNVAULT_DEBUG_KDF_RUNS").is_some() {
        let runs = crate::vault::kdf_runs();
        crate::cli::output::always(format_args!("runvault: debug: kdf runs: {runs}"));
    }
}
