//! Editing the runner's `config.toml`: the three `sed` lines of the manual
//! procedure, done with `toml_edit` so that comments, order and every key
//! runvault does not own survive byte for byte.
//!
//! This module owns the document (global keys, `[[runners]]`, missing
//! tables, `environment` and `volumes`, writing); what a volume string
//! means, which mounts are right and the array edits are [`volumes`]'s,
//! the module below this one (it uses nothing of this one).
//!
//! [`plan`] is pure: text in, edited text and the list of [`Change`]s out.
//! [`apply`] reads the file, plans, and writes with
//! [`write_atomic_unless_changed`], re-reading the file right before the
//! rename: the runner rewrites `config.toml` itself (register, token
//! renewal), and its change must never be overwritten with a stale copy.
//! The file holds the runners' tokens: [`apply`] also narrows a mode that
//! lets group or others read it (a [`Change`] like any other).

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Array, DocumentMut, Item, Key, Table, TableLike, Value};

use crate::core::fs::{self, FsError, Limit, WriteMode, write_atomic_unless_changed};
use crate::core::layout::{BINARY_NAME, DIR_ENV, IDENTITY_ENV, KEY_FILE_ENV, SECRETS_TARGET};
use crate::runner::error::Error;
use crate::runner::volumes::{self, DirMount};

/// How many times [`apply`] starts over when the file changes under it.
const ATTEMPTS: u32 = 5;
/// Pause between those attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The key file's directory, in messages and [`DirMount::what`].
const KEY_DIR: &str = "the key directory";
/// The binary's directory, in messages and [`DirMount::what`].
const BIN_DIR: &str = "the binary directory";

/// Where jobs find runvault on this host: what `configure` wires into
/// every runner and `doctor` checks.
#[derive(Debug, Clone)]
pub struct JobWiring {
    /// The host's secrets directory (absolute), mounted read-only at `/secrets`.
    pub secrets_dir: PathBuf,
    /// The machine key file (absolute); its directory is mounted read-only
    /// at the same path, and jobs get `RUNVAULT_KEY_FILE` pointing at it.
    pub key_file: PathBuf,
    /// The host's identity (absolute), used instead of the key file when
    /// set (`--identity`): its directory is mounted read-only at the same
    /// path and jobs get `RUNVAULT_IDENTITY` (docs/fleet.md).
    pub identity: Option<PathBuf>,
    /// The directory of the static runvault binary (absolute), mounted
    /// read-only at the same path.
    pub bin_dir: PathBuf,
    /// What jobs read: the encrypted vault, or a plaintext view in RAM.
    pub mode: JobsMode,
}

/// How jobs get their credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobsMode {
    /// The encrypted secrets directory plus the key and the binary: jobs
    /// run `runvault exec` (the default).
    Encrypted,
    /// A plaintext view in RAM (absolute path) mounted at `/secrets`, for
    /// job images that read `vault.yml` as plaintext; no key, no binary.
    PlaintextView(PathBuf),
}

impl JobWiring {
    /// The directories every job gets whole and read-only: the secrets
    /// directory, the key file's directory, the binary directory.
    pub fn dir_mounts(&self) -> Vec<DirMount> {
        match &self.mode {
            JobsMode::Encrypted => {
                let mut mounts = vec![DirMount::secrets(&self.secrets_dir)];
                mounts.extend(self.key_and_binary_mounts());
                mounts
            }
            JobsMode::PlaintextView(view) => vec![DirMount::view(view)],
        }
    }

    /// Mounts jobs must not have: with a plaintext view, the key and the
    /// binary directories (left over from the encrypted wiring).
    pub fn absent_mounts(&self) -> Vec<DirMount> {
        match &self.mode {
            JobsMode::Encrypted => Vec::new(),
            JobsMode::PlaintextView(_) => self.key_and_binary_mounts(),
        }
    }

    fn key_and_binary_mounts(&self) -> Vec<DirMount> {
        vec![
            DirMount::same_path(KEY_DIR, fs::parent_dir(self.secret_file())),
            DirMount::same_path(BIN_DIR, &self.bin_dir),
        ]
    }

    /// The file jobs open the vault with: the identity, else the key file.
    pub fn secret_file(&self) -> &Path {
        self.identity.as_deref().unwrap_or(&self.key_file)
    }

    /// The variable naming [`JobWiring::secret_file`] to jobs.
    fn secret_env(&self) -> &'static str {
        match self.identity {
            Some(_) => IDENTITY_ENV,
            None => KEY_FILE_ENV,
        }
    }

    /// The `environment` entries every runner gets, as (name, value).
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        match &self.mode {
            JobsMode::Encrypted => vec![
                (DIR_ENV, SECRETS_TARGET.to_string()),
                (self.secret_env(), self.secret_file().display().to_string()),
            ],
            JobsMode::PlaintextView(_) => Vec::new(),
        }
    }

    /// `environment` variables jobs must not get (ours, from the other mode).
    pub fn absent_environment(&self) -> Vec<&'static str> {
        match (&self.mode, &self.identity) {
            // The other kind of secret file, from an earlier wiring.
            (JobsMode::Encrypted, Some(_)) => vec![KEY_FILE_ENV],
            (JobsMode::Encrypted, None) => vec![IDENTITY_ENV],
            (JobsMode::PlaintextView(_), _) => vec![DIR_ENV, KEY_FILE_ENV, IDENTITY_ENV],
        }
    }

    /// Refuses directories that overlap, so each volume belongs to one mount.
    pub fn validate(&self) -> Result<(), Error> {
        volumes::check_disjoint(&self.dir_mounts()).map_err(Error::Usage)
    }
}

/// What `configure` makes `config.toml` say.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Global `concurrent` (jobs run at once over all runners).
    pub concurrent: i64,
    /// Global `check_interval` in seconds.
    pub check_interval: i64,
    /// The mounts and environment jobs get.
    pub wiring: JobWiring,
    /// Ensure `/app:/local_config:rw`.
    pub local_config: bool,
    /// Ensure `/agent_cache:/agent_cache:rw`.
    pub agent_cache: bool,
    /// Only this runner (by `name`); all runners when `None`.
    pub runner: Option<String>,
    /// Binary directories of an earlier wiring: a whole mount at one of
    /// these container paths is replaced by the binary directory's mount.
    /// [`apply`] adds every same-path read-only mount whose host directory
    /// holds a `runvault` file.
    pub earlier_bin_dirs: Vec<PathBuf>,
}

/// One change [`plan`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A global key was set (`old` is its previous text, if any).
    Global {
        /// The key.
        key: &'static str,
        /// The previous value as written, or `None` if it was missing.
        old: Option<String>,
        /// The new value.
        new: i64,
    },
    /// A missing table was created.
    CreatedTable {
        /// The runner's name.
        runner: String,
        /// The table (`runners.docker`).
        table: &'static str,
    },
    /// A volume was added to a runner.
    AddedVolume {
        /// The runner's name.
        runner: String,
        /// The volume string.
        volume: String,
    },
    /// A wrong mount of a job directory was replaced.
    ReplacedVolume {
        /// The runner's name.
        runner: String,
        /// Which directory ("the secrets directory").
        what: &'static str,
        /// The volume string that was there.
        old: String,
        /// The volume string now there.
        new: String,
        /// The host directory now mounted, when the old volume mounted
        /// another one whole and read-only there (the directory moved);
        /// `None` when the old one was mounted wrongly.
        moved_to: Option<String>,
    },
    /// A second mount of a job directory (or a file in it) was removed.
    RemovedVolume {
        /// The runner's name.
        runner: String,
        /// Which directory ("the secrets directory").
        what: &'static str,
        /// The volume string removed.
        volume: String,
    },
    /// An `environment` entry was added to a runner.
    AddedEnvironment {
        /// The runner's name.
        runner: String,
        /// The `NAME=value` entry.
        entry: String,
    },
    /// An `environment` entry of ours had another value.
    ReplacedEnvironment {
        /// The runner's name.
        runner: String,
        /// The entry that was there.
        old: String,
        /// The entry now there.
        new: String,
    },
    /// An environment entry of another wiring removed (the key file's
    /// variable when jobs get the identity, and so on).
    UnwiredEnvironment {
        /// The runner's name.
        runner: String,
        /// The entry removed.
        entry: String,
    },
    /// A second entry for one of our variables was removed.
    RemovedEnvironment {
        /// The runner's name.
        runner: String,
        /// The entry removed.
        entry: String,
    },
    /// The file was readable by group or others (it holds the runners'
    /// tokens): its mode was narrowed to the owner's bits.
    TightenedMode {
        /// The mode it had.
        old: u32,
        /// The mode it has now.
        new: u32,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Global {
                key,
                old: Some(old),
                new,
            } => write!(f, "set `{key}` to {new} (was {old})"),
            Change::Global {
                key,
                old: None,
                new,
            } => write!(f, "set `{key}` to {new} (was missing)"),
            Change::CreatedTable { runner, table } => {
                write!(f, "runner `{runner}`: created [{table}]")
            }
            Change::AddedVolume { runner, volume } => {
                write!(f, "runner `{runner}`: added volume `{volume}`")
            }
            Change::ReplacedVolume {
                runner,
                what,
                old,
                new,
                moved_to: Some(dir),
            } => write!(
                f,
                "runner `{runner}`: replaced volume `{old}` with `{new}` ({what} is now `{dir}`)"
            ),
            Change::ReplacedVolume {
                runner,
                what,
                old,
                new,
                moved_to: None,
            } => write!(
                f,
                "runner `{runner}`: replaced volume `{old}` with `{new}` \
                 ({what} must be mounted whole and read-only)"
            ),
            Change::RemovedVolume {
                runner,
                what,
                volume,
            } => write!(
                f,
                "runner `{runner}`: removed volume `{volume}` ({what} is mounted whole)"
            ),
            Change::AddedEnvironment { runner, entry } => {
                write!(f, "runner `{runner}`: added environment `{entry}`")
            }
            Change::ReplacedEnvironment { runner, old, new } => write!(
                f,
                "runner `{runner}`: replaced environment `{old}` with `{new}`"
            ),
            Change::RemovedEnvironment { runner, entry } => write!(
                f,
                "runner `{runner}`: removed duplicate environment `{entry}`"
            ),
            Change::UnwiredEnvironment { runner, entry } => write!(
                f,
                "runner `{runner}`: removed environment `{entry}` (not part of this wiring)"
            ),
            Change::TightenedMode { old, new } => write!(
                f,
                "tightened the file's mode from {old:04o} to {new:04o}: it holds the runners' \
                 tokens, which group and others must not read"
            ),
        }
    }
}

/// The result of [`plan`]: the edited text and what changed.
#[derive(Debug, Clone)]
pub struct Edit {
    /// The whole new file.
    pub text: String,
    /// What changed, in file order; empty when `text` is the input.
    pub changes: Vec<Change>,
}

/// What [`apply`] did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The changes made (or, with `check`, needed).
    pub changes: Vec<Change>,
    /// A unified diff of the file before and after; empty when unchanged.
    pub diff: String,
}

/// Parses `config.toml` text, mapping a syntax error to its line and column.
fn parse(text: &str, path: &Path) -> Result<DocumentMut, Error> {
    text.parse::<DocumentMut>().map_err(|err| {
        let offset = err.span().map_or(0, |span| span.start).min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        Error::InvalidToml {
            path: path.to_path_buf(),
            line,
            column,
            message: err.message().trim().to_string(),
        }
    })
}

/// A runner's display name: its `name`, else its position.
fn runner_label(runner: &Table, index: usize) -> String {
    runner
        .get("name")
        .and_then(Item::as_str)
        .map_or_else(|| format!("#{}", index + 1), str::to_string)
}

/// The `[[runners]]` of a document, or a shape error.
fn runners<'d>(doc: &'d mut DocumentMut, path: &Path) -> Result<Vec<&'d mut Table>, Error> {
    match doc.get_mut("runners") {
        None => Err(Error::NoRunners {
            path: path.to_path_buf(),
            hint: "register a runner first with `runvault runner register`".into(),
        }),
        Some(item) => match item.as_array_of_tables_mut() {
            Some(array) => Ok(array.iter_mut().collect()),
            None => Err(Error::BadShape {
                path: path.to_path_buf(),
                what: "`runners` is not an array of tables ([[runners]])".into(),
            }),
        },
    }
}

/// One `[[runners]]` as `status` and `doctor` read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerView {
    /// Its `name`, else its position (`#2`).
    pub name: String,
    /// `[runners.docker].volumes` (the string items).
    pub volumes: Vec<String>,
    /// `environment` (the string items).
    pub environment: Vec<String>,
}

/// The parts of `config.toml` that `status` and `doctor` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// Global `concurrent`, if set to an integer.
    pub concurrent: Option<i64>,
    /// Global `check_interval`, if set to an integer.
    pub check_interval: Option<i64>,
    /// The runners, in file order (empty when there is no `[[runners]]`).
    pub runners: Vec<RunnerView>,
}

/// The string items of an array value (missing or not an array: none).
fn strings(item: Option<&Item>) -> Vec<String> {
    item.and_then(Item::as_array)
        .map(|array| {
            array
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the [`Overview`] of `config.toml` text.
pub fn overview(text: &str, path: &Path) -> Result<Overview, Error> {
    let mut doc = parse(text, path)?;
    let global = |key: &str| doc.get(key).and_then(Item::as_integer);
    let (concurrent, check_interval) = (global("concurrent"), global("check_interval"));
    let runners = if doc.get("runners").is_none() {
        Vec::new()
    } else {
        runners(&mut doc, path)?
            .into_iter()
            .enumerate()
            .map(|(index, runner)| RunnerView {
                name: runner_label(runner, index),
                volumes: strings(
                    runner
                        .get("docker")
                        .and_then(Item::as_table_like)
                        .and_then(|docker| docker.get("volumes")),
                ),
                environment: strings(runner.get("environment")),
            })
            .collect()
    };
    Ok(Overview {
        concurrent,
        check_interval,
        runners,
    })
}

/// The names of the runners registered in `config.toml` text.
pub fn runner_names(text: &str, path: &Path) -> Result<Vec<String>, Error> {
    Ok(overview(text, path)?
        .runners
        .into_iter()
        .map(|runner| runner.name)
        .collect())
}

/// The runners of `config.toml` text that lack the read-only secrets
/// directory mount (or also mount it, or a file in it, some other way).
pub fn runners_without_secrets_mount(
    text: &str,
    path: &Path,
    secrets_dir: &Path,
) -> Result<Vec<String>, Error> {
    let mount = DirMount::secrets(secrets_dir);
    Ok(overview(text, path)?
        .runners
        .into_iter()
        .filter(|runner| !volumes::mount_problems(&runner.volumes, &mount).is_empty())
        .map(|runner| runner.name)
        .collect())
}

/// Computes the edited `config.toml` (see the module doc). Pure.
pub fn plan(text: &str, path: &Path, settings: &Settings) -> Result<Edit, Error> {
    let mut doc = parse(text, path)?;
    let mut changes = Vec::new();
    set_global(&mut doc, "concurrent", settings.concurrent, &mut changes);
    set_global(
        &mut doc,
        "check_interval",
        settings.check_interval,
        &mut changes,
    );

    let mut all = runners(&mut doc, path)?;
    let labels: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(i, r)| runner_label(r, i))
        .collect();
    if let Some(wanted) = &settings.runner
        && !labels.iter().any(|l| l == wanted)
    {
        return Err(Error::NoSuchRunner {
            path: path.to_path_buf(),
            name: wanted.clone(),
            known: labels.join(", "),
        });
    }
    for (runner, label) in all.iter_mut().zip(&labels) {
        if settings
            .runner
            .as_ref()
            .is_some_and(|wanted| wanted != label)
        {
            continue;
        }
        edit_runner(runner, label, path, settings, &mut changes)?;
    }
    Ok(Edit {
        text: doc.to_string(),
        changes,
    })
}

/// Sets a global integer key, keeping its comment and position.
fn set_global(doc: &mut DocumentMut, key: &'static str, new: i64, changes: &mut Vec<Change>) {
    match doc.get_mut(key).and_then(Item::as_value_mut) {
        Some(value) if value.as_integer() == Some(new) => {}
        Some(value) => {
            let old = value.clone().decorated("", "").to_string();
            let decor = value.decor().clone();
            *value = Value::from(new);
            *value.decor_mut() = decor;
            changes.push(Change::Global {
                key,
                old: Some(old),
                new,
            });
        }
        None => {
            doc.insert(key, toml_edit::value(new));
            changes.push(Change::Global {
                key,
                old: None,
                new,
            });
        }
    }
}

/// The indentation (whitespace after the last newline) before the first key
/// of a table, to give new keys the same look.
fn key_indent(table: &dyn TableLike) -> Option<String> {
    table.iter().find_map(|(name, _)| {
        let prefix = table.key(name)?.leaf_decor().prefix()?.as_str()?;
        Some(prefix.rsplit('\n').next().unwrap_or("").to_string())
    })
}

/// The array at `key` in `table`, created empty (its key indented by
/// `indent`) if missing; `None` if the key holds something else.
fn array_entry<'t>(
    table: &'t mut dyn TableLike,
    key: &str,
    indent: String,
) -> Option<&'t mut Array> {
    if table.get(key).is_none() {
        let formatted = Key::new(key).with_leaf_decor(toml_edit::Decor::new(indent, " "));
        table
            .entry_format(&formatted)
            .or_insert(Item::Value(Value::Array(Array::new())));
    }
    table.get_mut(key).and_then(Item::as_array_mut)
}

/// Ensures the `environment` and `[runners.docker].volumes` of one runner.
fn edit_runner(
    runner: &mut Table,
    label: &str,
    path: &Path,
    settings: &Settings,
    changes: &mut Vec<Change>,
) -> Result<(), Error> {
    // Where the earlier wiring had the key directory: the directory of the
    // `RUNVAULT_KEY_FILE` (or `RUNVAULT_IDENTITY`) jobs were given, read
    // before it is replaced.
    let prefixes = [format!("{KEY_FILE_ENV}="), format!("{IDENTITY_ENV}=")];
    let earlier_key_dirs: Vec<PathBuf> = strings(runner.get("environment"))
        .iter()
        .filter_map(|entry| prefixes.iter().find_map(|p| entry.strip_prefix(p.as_str())))
        .filter(|file| file.starts_with('/'))
        .map(|file| fs::parent_dir(Path::new(file)).to_path_buf())
        .collect();
    edit_environment(runner, label, path, settings, changes)?;
    // A sibling sub-table ([runners.cache]) shows how this file indents.
    let sibling = runner
        .iter()
        .find_map(|(_, item)| item.as_table().filter(|t| !t.is_implicit()));
    let header_prefix = sibling.and_then(|t| t.decor().prefix()?.as_str().map(str::to_string));
    let sibling_indent = sibling.and_then(|t| key_indent(t));

    if runner.get("docker").is_none() {
        let mut table = Table::new();
        if let Some(prefix) = header_prefix {
            table.decor_mut().set_prefix(prefix);
        }
        runner.insert("docker", Item::Table(table));
        changes.push(Change::CreatedTable {
            runner: label.to_string(),
            table: "runners.docker",
        });
    }
    let shape = |what: &str| Error::BadShape {
        path: path.to_path_buf(),
        what: format!("runner `{label}`: {what}"),
    };
    let docker = runner
        .get_mut("docker")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| shape("`docker` is not a table"))?;
    let indent = key_indent(docker).or(sibling_indent).unwrap_or_default();
    let volumes = array_entry(docker, "volumes", indent)
        .ok_or_else(|| shape("`docker.volumes` is not an array"))?;
    let recognise = |mount: DirMount| {
        let earlier = match mount.what {
            KEY_DIR => earlier_key_dirs.as_slice(),
            BIN_DIR => settings.earlier_bin_dirs.as_slice(),
            _ => &[],
        };
        earlier
            .iter()
            .fold(mount, |mount, dir| mount.also_at(&dir.to_string_lossy()))
    };
    let wanted: Vec<DirMount> = settings
        .wiring
        .dir_mounts()
        .into_iter()
        .map(recognise)
        .collect();
    let absent: Vec<DirMount> = settings
        .wiring
        .absent_mounts()
        .into_iter()
        .map(recognise)
        .collect();
    edit_volumes(volumes, label, settings, &wanted, &absent, changes);
    Ok(())
}

/// Ensures the wanted volumes in one `volumes` array (see
/// [`volumes`]'s module doc): each of `wanted` once, none of `absent`,
/// recording each change for runner `label`.
fn edit_volumes(
    volumes: &mut Array,
    label: &str,
    settings: &Settings,
    wanted_mounts: &[DirMount],
    absent: &[DirMount],
    changes: &mut Vec<Change>,
) {
    let has_target = |volumes: &Array, target: &str| {
        volumes
            .iter()
            .filter_map(Value::as_str)
            .any(|v| volumes::target_of(v) == target)
    };
    let mut additions = Vec::new();
    if settings.local_config && !has_target(volumes, "/local_config") {
        additions.push(volumes::LOCAL_CONFIG_VOLUME.to_string());
    }
    if settings.agent_cache && !has_target(volumes, "/agent_cache") {
        additions.push(volumes::AGENT_CACHE_VOLUME.to_string());
    }
    for mount in wanted_mounts {
        let wanted = mount.volume();
        let added = volumes::ensure_once(volumes, &wanted, |v| mount.is_touched_by(v)).report(
            |old| Change::ReplacedVolume {
                runner: label.to_string(),
                what: mount.what,
                moved_to: mount.moved_from(&old).then(|| mount.source.clone()),
                old,
                new: wanted.clone(),
            },
            |volume| Change::RemovedVolume {
                runner: label.to_string(),
                what: mount.what,
                volume,
            },
            changes,
        );
        if added {
            // After the manual procedure's volumes, below.
            additions.push(wanted);
        }
    }
    for mount in absent {
        let before: Vec<String> = volumes
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        volumes.retain(|item| item.as_str().is_none_or(|v| !mount.is_touched_by(v)));
        for volume in before.into_iter().filter(|v| mount.is_touched_by(v)) {
            changes.push(Change::RemovedVolume {
                runner: label.to_string(),
                what: mount.what,
                volume,
            });
        }
    }
    for volume in additions {
        volumes::push_like_last(volumes, &volume);
        changes.push(Change::AddedVolume {
            runner: label.to_string(),
            volume,
        });
    }
}

/// Ensures our `environment` entries in one runner: each variable of
/// [`JobWiring::environment`] once, with our value, where it was (or
/// appended); every other entry kept.
fn edit_environment(
    runner: &mut Table,
    label: &str,
    path: &Path,
    settings: &Settings,
    changes: &mut Vec<Change>,
) -> Result<(), Error> {
    let indent = key_indent(runner).unwrap_or_default();
    let array = array_entry(runner, "environment", indent).ok_or_else(|| Error::BadShape {
        path: path.to_path_buf(),
        what: format!("runner `{label}`: `environment` is not an array"),
    })?;
    for name in settings.wiring.absent_environment() {
        let prefix = format!("{name}=");
        let before: Vec<String> = array
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        array.retain(|item| {
            item.as_str()
                .is_none_or(|entry| !(entry.starts_with(&prefix) || entry == name))
        });
        for entry in before
            .into_iter()
            .filter(|entry| entry.starts_with(&prefix) || entry == name)
        {
            changes.push(Change::UnwiredEnvironment {
                runner: label.to_string(),
                entry,
            });
        }
    }
    for (name, value) in settings.wiring.environment() {
        let prefix = format!("{name}=");
        let wanted = format!("{name}={value}");
        let added = volumes::ensure_once(array, &wanted, |entry| {
            entry.starts_with(&prefix) || entry == name
        })
        .report(
            |old| Change::ReplacedEnvironment {
                runner: label.to_string(),
                old,
                new: wanted.clone(),
            },
            |entry| Change::RemovedEnvironment {
                runner: label.to_string(),
                entry,
            },
            changes,
        );
        if added {
            volumes::push_like_last(array, &wanted);
            changes.push(Change::AddedEnvironment {
                runner: label.to_string(),
                entry: wanted,
            });
        }
    }
    Ok(())
}

/// The host directories that runners of `config.toml` text mount at
/// their own path, read-only, and that hold a `runvault` file: binary
/// directories of an earlier wiring (`--bin-dir` moved).
fn binary_dirs(text: &str, path: &Path) -> Vec<PathBuf> {
    let Ok(overview) = overview(text, path) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = overview
        .runners
        .iter()
        .flat_map(|runner| &runner.volumes)
        .filter_map(|volume| volumes::same_path_read_only(volume))
        .map(PathBuf::from)
        .filter(|dir| {
            std::fs::symlink_metadata(dir.join(BINARY_NAME)).is_ok_and(|meta| meta.is_file())
        })
        .collect();
    dirs.dedup();
    dirs
}

/// A unified diff of two versions of `path`.
pub fn diff(old: &str, new: &str, path: &Path) -> String {
    let name = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&name, &format!("{name} (configured)"))
        .to_string()
}

/// How `config.toml` is written: it holds the runners' tokens, so a new
/// file is 0600 and an existing one keeps only its owner's bits.
const CONFIG_MODE: WriteMode = WriteMode {
    new_file_mode: 0o600,
    keep_mode_mask: 0o600,
};

/// Reads `config.toml`, plans the edit and, unless `check`, writes it if
/// anything changed, starting over if the file changes meanwhile.
pub fn apply(path: &Path, settings: &Settings, check: bool) -> Result<Report, Error> {
    apply_with(path, settings, check, &mut |_| {})
}

/// [`apply`], calling `meanwhile(attempt)` between planning and the final
/// re-read: where a concurrent writer's change would land (tests use it).
fn apply_with(
    path: &Path,
    settings: &Settings,
    check: bool,
    meanwhile: &mut dyn FnMut(u32),
) -> Result<Report, Error> {
    tracing::info!(path = %path.display(), check, "editing the runner's config.toml");
    for attempt in 0..ATTEMPTS {
        let (file, original) = match fs::open_nofollow(path) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)
                    .map_err(FsError::io("read", path))?;
                (file, bytes)
            }
            Err(err) if err.is_not_found() => {
                return Err(Error::no_config(path.to_path_buf()));
            }
            Err(err) => return Err(err.into()),
        };
        let mode = file
            .metadata()
            .map_err(FsError::io("inspect", path))?
            .mode()
            & 0o7777;
        // The tokens are the owner's alone: group and other bits go.
        let tightened = (mode & 0o077 != 0).then_some(Change::TightenedMode {
            old: mode,
            new: mode & CONFIG_MODE.keep_mode_mask,
        });
        let text = std::str::from_utf8(&original).map_err(|_| Error::BadShape {
            path: path.to_path_buf(),
            what: "the file is not UTF-8 text".into(),
        })?;
        let mut settings = settings.clone();
        settings.earlier_bin_dirs.extend(binary_dirs(text, path));
        let edit = plan(text, path, &settings)?;
        let mut report = Report {
            diff: if edit.text == text {
                String::new()
            } else {
                diff(text, &edit.text, path)
            },
            changes: edit.changes,
        };
        report.changes.extend(tightened);
        if check || report.changes.is_empty() {
            return Ok(report);
        }
        if edit.text == text {
            // Only the mode is wrong: narrow it in place (same file, so a
            // concurrent rewrite by the runner is not lost).
            let new = mode & CONFIG_MODE.keep_mode_mask;
            file.set_permissions(std::fs::Permissions::from_mode(new))
                .map_err(FsError::io("set the mode of", path))?;
            return Ok(report);
        }
        meanwhile(attempt);
        let written = write_atomic_unless_changed(path, edit.text.as_bytes(), CONFIG_MODE, || {
            Ok(
                fs::read_optional(path, Limit::any("config file"))?.as_deref()
                    == Some(original.as_slice()),
            )
        })?;
        if written {
            return Ok(report);
        }
        std::thread::sleep(RETRY_PAUSE);
    }
    Err(Error::ConcurrentChange {
        path: path.to_path_buf(),
        attempts: ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNER_WRITES: &str = include_str!("../../fixtures/runner/config.toml");
    const TWO_RUNNERS: &str = include_str!("../../fixtures/runner/two-runners.toml");
    const NO_DOCKER: &str = include_str!("../../fixtures/runner/no-docker-table.toml");
    const RW_SECRETS: &str = include_str!("../../fixtures/runner/secrets-rw.toml");
    const HAND_WIRED: &str = include_str!("../../fixtures/runner/jobs-wiring.toml");

    fn settings() -> Settings {
        Settings {
            concurrent: 8,
            check_interval: 1,
            wiring: JobWiring {
                secrets_dir: PathBuf::from("/secrets"),
                key_file: PathBuf::from("/etc/runvault/vault.key"),
                identity: None,
                bin_dir: PathBuf::from("/opt/runvault/bin"),
                mode: JobsMode::Encrypted,
            },
            local_config: true,
            agent_cache: true,
            runner: None,
            earlier_bin_dirs: Vec::new(),
        }
    }

    fn edit(text: &str) -> Edit {
        plan(text, Path::new("config.toml"), &settings()).unwrap()
    }

    #[test]
    fn a_plaintext_view_replaces_the_encrypted_wiring_and_back() {
        let encrypted = edit(RUNNER_WRITES).text;
        let mut view_settings = settings();
        view_settings.wiring.mode = JobsMode::PlaintextView(PathBuf::from("/run/runvault/view"));
        let view = plan(&encrypted, Path::new("config.toml"), &view_settings).unwrap();
        assert_eq!(
            volumes_of(&view.text),
            [vec![
                "/cache",
                "/app:/local_config:rw",
                "/agent_cache:/agent_cache:rw",
                "/run/runvault/view:/secrets:ro"
            ]],
            "the view at /secrets, no key or binary directory"
        );
        let doc: DocumentMut = view.text.parse().unwrap();
        let environment = doc["runners"][0]
            .get("environment")
            .and_then(Item::as_array);
        assert!(
            environment.is_none_or(|env| env
                .iter()
                .all(|e| !e.as_str().unwrap_or_default().starts_with("RUNVAULT_"))),
            "no RUNVAULT_* variables: {environment:?}"
        );
        let again = plan(&view.text, Path::new("config.toml"), &view_settings).unwrap();
        assert!(again.changes.is_empty(), "idempotent: {:?}", again.changes);
        let back = plan(&view.text, Path::new("config.toml"), &settings()).unwrap();
        assert_eq!(
            volumes_of(&back.text),
            volumes_of(&encrypted),
            "and back to the encrypted wiring"
        );
    }

    fn volumes_of(text: &str) -> Vec<Vec<String>> {
        let doc: DocumentMut = text.parse().unwrap();
        doc["runners"]
            .as_array_of_tables()
            .unwrap()
            .iter()
            .map(|r| {
                r["docker"]["volumes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }

    const WANTED: [&str; 6] = [
        "/cache",
        "/app:/local_config:rw",
        "/agent_cache:/agent_cache:rw",
        "/secrets:/secrets:ro",
        "/etc/runvault:/etc/runvault:ro",
        "/opt/runvault/bin:/opt/runvault/bin:ro",
    ];

    const ENVIRONMENT: [&str; 2] = [
        "RUNVAULT_DIR=/secrets",
        "RUNVAULT_KEY_FILE=/etc/runvault/vault.key",
    ];

    fn environment_of(text: &str) -> Vec<Vec<String>> {
        overview(text, Path::new("c"))
            .unwrap()
            .runners
            .into_iter()
            .map(|r| r.environment)
            .collect()
    }

    #[test]
    fn runner_written_config_gets_the_manual_steps_settings() {
        let out = edit(RUNNER_WRITES);
        assert_eq!(volumes_of(&out.text), vec![WANTED.to_vec()]);
        let doc: DocumentMut = out.text.parse().unwrap();
        assert_eq!(doc["concurrent"].as_integer(), Some(8));
        assert_eq!(doc["check_interval"].as_integer(), Some(1));
        // Everything else is kept byte for byte.
        assert!(
            out.text
                .contains("  [runners.cache]\n    MaxUploadedArchiveSize = 0\n")
        );
        assert!(out.text.contains(
            "    volumes = [\"/cache\", \"/app:/local_config:rw\", \"/agent_cache:/agent_cache:rw\", \"/secrets:/secrets:ro\", \"/etc/runvault:/etc/runvault:ro\", \"/opt/runvault/bin:/opt/runvault/bin:ro\"]\n"
        ));
        // The environment goes with the runner's own keys, before its tables.
        assert!(out.text.contains(
            "  executor = \"docker\"\n  environment = [\"RUNVAULT_DIR=/secrets\", \"RUNVAULT_KEY_FILE=/etc/runvault/vault.key\"]\n  [runners.cache]\n"
        ), "{}", out.text);
        assert_eq!(out.changes.len(), 9);
    }

    #[test]
    fn hand_wired_environment_and_mounts_are_merged() {
        let out = edit(HAND_WIRED);
        assert_eq!(
            environment_of(&out.text),
            vec![vec![
                "TZ=Europe/London",
                "RUNVAULT_KEY_FILE=/etc/runvault/vault.key",
                "RUNVAULT_DIR=/secrets",
            ]]
        );
        assert_eq!(
            volumes_of(&out.text),
            vec![vec![
                "/cache",
                "/etc/runvault:/etc/runvault:ro",
                "/opt/runvault/bin:/opt/runvault/bin:ro",
                "/app:/local_config:rw",
                "/agent_cache:/agent_cache:rw",
                "/secrets:/secrets:ro",
            ]]
        );
        let runner = || "hand-wired".to_string();
        for change in [
            Change::ReplacedEnvironment {
                runner: runner(),
                old: "RUNVAULT_KEY_FILE=/root/old.key".into(),
                new: "RUNVAULT_KEY_FILE=/etc/runvault/vault.key".into(),
            },
            Change::RemovedEnvironment {
                runner: runner(),
                entry: "RUNVAULT_DIR=/elsewhere".into(),
            },
            Change::ReplacedVolume {
                runner: runner(),
                what: "the key directory",
                old: "/etc/runvault/vault.key:/etc/runvault/vault.key:ro".into(),
                new: "/etc/runvault:/etc/runvault:ro".into(),
                moved_to: None,
            },
            Change::ReplacedVolume {
                runner: runner(),
                what: "the binary directory",
                old: "/opt/runvault/bin:/opt/runvault/bin:rw".into(),
                new: "/opt/runvault/bin:/opt/runvault/bin:ro".into(),
                moved_to: None,
            },
        ] {
            assert!(
                out.changes.contains(&change),
                "{change} not in {:?}",
                out.changes
            );
        }
        assert_eq!(
            out.changes[1].to_string(),
            "runner `hand-wired`: replaced environment `RUNVAULT_KEY_FILE=/root/old.key` \
             with `RUNVAULT_KEY_FILE=/etc/runvault/vault.key`"
        );
        // Multi-line arrays stay multi-line, comments stay.
        assert!(out.text.contains("# A runner wired by hand"));
        assert!(
            out.text
                .contains("      \"/cache\",\n      \"/etc/runvault:/etc/runvault:ro\",\n")
        );
    }

    #[test]
    fn second_plan_is_identical_and_reports_nothing() {
        for fixture in [
            RUNNER_WRITES,
            TWO_RUNNERS,
            NO_DOCKER,
            RW_SECRETS,
            HAND_WIRED,
        ] {
            let once = edit(fixture);
            let twice = edit(&once.text);
            assert_eq!(once.text, twice.text);
            assert!(twice.changes.is_empty(), "{:?}", twice.changes);
        }
    }

    #[test]
    fn two_runners_with_comments_both_get_the_mount_and_keep_comments() {
        let out = edit(TWO_RUNNERS);
        let volumes = volumes_of(&out.text);
        assert_eq!(volumes.len(), 2);
        for runner in &volumes {
            assert!(
                runner.contains(&"/secrets:/secrets:ro".to_string()),
                "{runner:?}"
            );
        }
        // The second runner's extra volume survives.
        assert!(volumes[1].contains(&"/data:/data:ro".to_string()));
        for line in TWO_RUNNERS
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
        {
            assert!(out.text.contains(line), "lost comment {line:?}");
        }
        // The global key's trailing comment survives the value change.
        assert!(
            out.text.contains("concurrent = 8 # jobs at once"),
            "{}",
            out.text
        );
    }

    #[test]
    fn missing_docker_table_is_created_after_the_runners_other_tables() {
        let out = edit(NO_DOCKER);
        assert_eq!(volumes_of(&out.text), vec![WANTED[1..].to_vec()]);
        assert!(out.changes.contains(&Change::CreatedTable {
            runner: "no-docker".into(),
            table: "runners.docker"
        }));
        let cache = out.text.find("[runners.cache]").unwrap();
        let docker = out.text.find("[runners.docker]").unwrap();
        assert!(cache < docker, "{}", out.text);
        assert!(
            out.text.contains("  [runners.docker]\n    volumes = ["),
            "{}",
            out.text
        );
    }

    #[test]
    fn read_write_and_single_file_secrets_mounts_are_replaced_and_reported() {
        let out = edit(RW_SECRETS);
        let volumes = volumes_of(&out.text);
        assert_eq!(
            volumes[0],
            vec![
                "/cache",
                "/secrets:/secrets:ro",
                "/app:/local_config:rw",
                "/agent_cache:/agent_cache:rw",
                "/etc/runvault:/etc/runvault:ro",
                "/opt/runvault/bin:/opt/runvault/bin:ro",
            ]
        );
        assert!(out.changes.contains(&Change::ReplacedVolume {
            runner: "rw-secrets".into(),
            what: "the secrets directory",
            old: "/secrets:/secrets:rw".into(),
            new: "/secrets:/secrets:ro".into(),
            moved_to: None,
        }));
        assert!(out.changes.contains(&Change::RemovedVolume {
            runner: "rw-secrets".into(),
            what: "the secrets directory",
            volume: "/secrets/vault.yml:/secrets/vault.yml:ro".into()
        }));
    }

    #[test]
    fn another_secrets_dir_is_mounted_at_secrets() {
        let mut s = settings();
        s.wiring.secrets_dir = PathBuf::from("/srv/host secrets");
        let out = plan(RW_SECRETS, Path::new("c"), &s).unwrap();
        let volumes = volumes_of(&out.text);
        assert!(volumes[0].contains(&"/srv/host secrets:/secrets:ro".to_string()));
        assert!(!volumes[0].iter().any(|v| v.starts_with("/secrets")));
    }

    #[test]
    fn opt_outs_and_runner_filter() {
        let mut s = settings();
        s.local_config = false;
        s.agent_cache = false;
        s.runner = Some("second".into());
        let out = plan(TWO_RUNNERS, Path::new("c"), &s).unwrap();
        let volumes = volumes_of(&out.text);
        assert!(!volumes[0].contains(&"/secrets:/secrets:ro".to_string()));
        assert_eq!(
            volumes[1][..3],
            ["/cache", "/data:/data:ro", "/secrets:/secrets:ro"]
        );
        assert_eq!(environment_of(&out.text)[0], Vec::<String>::new());
        // The second runner's own entry is kept, ours follow it.
        assert_eq!(environment_of(&out.text)[1][0], "DATAOPS_REGION=london");
        assert_eq!(environment_of(&out.text)[1][1..], ENVIRONMENT);
        s.runner = Some("nope".into());
        let err = plan(TWO_RUNNERS, Path::new("c"), &s).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`c` has no runner named `nope` (runners: first, second)"
        );
    }

    #[test]
    fn multi_line_arrays_stay_multi_line() {
        let text = "concurrent = 8\ncheck_interval = 1\n[[runners]]\nname = \"x\"\n[runners.docker]\nvolumes = [\n  \"/cache\",\n]\n";
        let out = edit(text);
        assert!(
            out.text.contains("volumes = [\n  \"/cache\",\n  \"/app:/local_config:rw\",\n  \"/agent_cache:/agent_cache:rw\",\n  \"/secrets:/secrets:ro\",\n  \"/etc/runvault:/etc/runvault:ro\",\n  \"/opt/runvault/bin:/opt/runvault/bin:ro\",\n]"),
            "{}",
            out.text
        );
    }

    #[test]
    fn invalid_toml_reports_line_and_column() {
        let err = plan(
            "concurrent = 1\n[[runners]]\nname = \"x\n",
            Path::new("/c/config.toml"),
            &settings(),
        )
        .unwrap_err();
        let Error::InvalidToml { line, column, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!((*line, *column), (3, 10));
        assert!(
            err.to_string()
                .starts_with("`/c/config.toml` is not valid TOML at line 3, column 10: ")
        );
    }

    #[test]
    fn shape_errors() {
        let err = plan("concurrent = 1\n", Path::new("c"), &settings()).unwrap_err();
        assert!(err.to_string().contains("there is no [[runners]] section"));
        for (text, what) in [
            ("docker = 3", "`docker` is not a table"),
            ("environment = \"A=1\"", "`environment` is not an array"),
        ] {
            let err = plan(
                &format!("[[runners]]\nname = \"x\"\n{text}\n"),
                Path::new("c"),
                &settings(),
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("`c`: runner `x`: {what}; the file was not changed")
            );
        }
    }

    #[test]
    fn secrets_mount_detection() {
        let dir = Path::new("/secrets");
        let path = Path::new("c");
        assert_eq!(
            runners_without_secrets_mount(RUNNER_WRITES, path, dir).unwrap(),
            vec!["my-runner"]
        );
        let done = edit(TWO_RUNNERS).text;
        assert!(
            runners_without_secrets_mount(&done, path, dir)
                .unwrap()
                .is_empty()
        );
        assert_eq!(runner_names(&done, path).unwrap(), vec!["first", "second"]);
        assert!(runner_names("concurrent = 1", path).unwrap().is_empty());
    }

    #[test]
    fn a_concurrent_rewrite_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, RUNNER_WRITES).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The runner renews its token between our read and our rename.
        let renewed = RUNNER_WRITES.replace("glrt-FIXTUREfixtureFIXTURE0", "glrt-RENEWED");
        let report = apply_with(&path, &settings(), false, &mut |attempt| {
            if attempt == 0 {
                std::fs::write(&path, &renewed).unwrap();
            }
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("glrt-RENEWED"),
            "the runner's change survives"
        );
        assert!(
            text.contains("/secrets:/secrets:ro"),
            "and ours is applied on top"
        );
        assert_eq!(report.changes.len(), 9);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );

        // A file that changes on every attempt: give up, write nothing.
        std::fs::write(&path, RUNNER_WRITES).unwrap();
        let err = apply_with(&path, &settings(), false, &mut |attempt| {
            std::fs::write(&path, format!("{RUNNER_WRITES}# {attempt}\n")).unwrap();
        })
        .unwrap_err();
        assert!(matches!(
            err,
            Error::ConcurrentChange {
                attempts: ATTEMPTS,
                ..
            }
        ));
        assert!(
            !std::fs::read_to_string(&path)
                .unwrap()
                .contains("/secrets:/secrets:ro")
        );
    }

    #[test]
    fn diff_shows_the_change() {
        let out = edit(RUNNER_WRITES);
        let d = diff(RUNNER_WRITES, &out.text, Path::new("config.toml"));
        assert!(d.starts_with("--- config.toml\n+++ config.toml (configured)\n"));
        assert!(
            d.contains(
                "\n-concurrent = 1\n-check_interval = 0\n+concurrent = 8\n+check_interval = 1\n"
            ),
            "{d}"
        );
    }
}
