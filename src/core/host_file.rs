//! The host's layout file (`/etc/runvault/runvault.toml`, or the file
//! `--config`/`RUNVAULT_CONFIG` names): where this host keeps the secrets
//! directory, the machine key file, the binary directory jobs run, the
//! views list and the state directory, how jobs read their credentials,
//! and per runner name its config directory and image.
//!
//! `runner install` writes it (and `init`, `keygen`, `view add`, `runner
//! configure` record the values they were given); every command takes its
//! defaults from it, below a flag and the environment (the command line
//! resolves that order, once, after parsing).
//!
//! It holds paths and names only, never a secret: it is written 0644 so
//! that every user and tool on the host sees the same layout. Since it
//! decides where commands look for the vault and the key, a file owned by
//! a user other than root or the one running runvault is refused, as is a
//! symlink. Keys runvault does not know are ignored (a newer runvault may
//! have written them) and kept when the file is rewritten.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, TableLike};

use crate::core::exit::{self, ExitStatus};
use crate::core::fs::{self, FsError, Limit, WriteMode};
use crate::core::harden::current_uid;

/// The layout file when neither `--config` nor [`CONFIG_ENV`] names one.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/runvault/runvault.toml";

/// The variable naming the layout file (the global `--config`).
pub const CONFIG_ENV: &str = "RUNVAULT_CONFIG";

/// The largest layout file read.
const LIMIT: Limit = Limit::of("layout file", 64 * 1024);

/// How a new layout file is written: it holds no secret (see the module doc).
const MODE: WriteMode = WriteMode {
    new_file_mode: 0o644,
    keep_mode_mask: 0o7777,
};

/// The first lines of a layout file runvault creates.
const HEADER: &str = "\
# This host's runvault layout: where the secrets directory, the key file and
# the binary jobs run live, and each runner's config directory and image.
# Written by runvault (runner install, init, keygen, view add, runner
# configure); every runvault command takes its defaults from it, below
# command-line options and RUNVAULT_* variables. No secret is kept here.
";

/// What went wrong with the layout file.
#[derive(Debug, thiserror::Error)]
pub enum HostFileError {
    /// Reading or writing it failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Not valid TOML.
    #[error("layout file `{path}` is not valid TOML (line {line}, column {column}): {message}")]
    InvalidToml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A key holds something other than what it must.
    #[error("layout file `{path}`: `{key}` {problem}; fix or remove that line")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key (`bin_dir`, `runners.NAME.image`).
        key: String,
        /// What is wrong ("must be an absolute path").
        problem: &'static str,
    },
}

impl ExitStatus for HostFileError {
    fn exit_code(&self) -> u8 {
        match self {
            HostFileError::Fs(err) => err.exit_code(),
            HostFileError::InvalidToml { .. } | HostFileError::BadValue { .. } => exit::OTHER,
        }
    }
}

/// One runner's entry (`[runners.NAME]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerEntry {
    /// Its config directory (`--config-dir`).
    pub config_dir: Option<PathBuf>,
    /// Its image (`--image`).
    pub image: Option<String>,
}

/// What a layout file says; `None` where it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFile {
    /// `secrets_dir` (`--dir`).
    pub secrets_dir: Option<PathBuf>,
    /// `key_file`: where the machine key file is (`--key-file`'s default).
    pub key_file: Option<PathBuf>,
    /// `identity_file`: the host's age identity (`keygen --identity`).
    pub identity_file: Option<PathBuf>,
    /// `bin_dir` (`--bin-dir`).
    pub bin_dir: Option<PathBuf>,
    /// `views_file` (`--views-file`).
    pub views_file: Option<PathBuf>,
    /// `state_dir` (`--state-dir`).
    pub state_dir: Option<PathBuf>,
    /// `jobs`: `encrypted` or `plaintext-view` (`--jobs`).
    pub jobs: Option<String>,
    /// `view`: the plaintext view jobs read (`--view`).
    pub view: Option<PathBuf>,
    /// `[runners.NAME]`, by name.
    pub runners: BTreeMap<String, RunnerEntry>,
}

/// The path keys of the top level, in the order they are written.
const PATH_KEYS: [&str; 7] = [
    "secrets_dir",
    "key_file",
    "identity_file",
    "bin_dir",
    "views_file",
    "state_dir",
    "view",
];

impl HostFile {
    fn path_field(&mut self, key: &str) -> &mut Option<PathBuf> {
        match key {
            "secrets_dir" => &mut self.secrets_dir,
            "key_file" => &mut self.key_file,
            "identity_file" => &mut self.identity_file,
            "bin_dir" => &mut self.bin_dir,
            "views_file" => &mut self.views_file,
            "state_dir" => &mut self.state_dir,
            _ => &mut self.view,
        }
    }
}

/// The layout file to use: `--config`/[`CONFIG_ENV`] when given, else
/// [`DEFAULT_CONFIG_FILE`].
pub fn config_path(given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), Path::to_path_buf)
}

/// Reads the layout file; `Ok(None)` when it does not exist.
pub fn load(path: &Path) -> Result<Option<HostFile>, HostFileError> {
    let mut file = match fs::open_nofollow(path) {
        Ok(file) => file,
        Err(err) if err.is_not_found() => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let meta = file.metadata().map_err(FsError::io("inspect", path))?;
    if !meta.is_file() {
        return Err(FsError::NotRegular {
            what: LIMIT.what,
            path: path.to_path_buf(),
            kind: fs::kind_name(meta.file_type()),
        }
        .into());
    }
    refuse_foreign(path, meta.uid())?;
    if meta.len() > LIMIT.max_bytes {
        return Err(LIMIT.exceeded(path).into());
    }
    let mut text = String::new();
    (&mut file)
        .take(LIMIT.max_bytes + 1)
        .read_to_string(&mut text)
        .map_err(FsError::io("read", path))?;
    parse(&text, path).map(Some)
}

/// Refuses a file owned by a user other than root or the one running.
fn refuse_foreign(path: &Path, uid: u32) -> Result<(), HostFileError> {
    if uid != 0 && uid != current_uid() {
        return Err(FsError::ForeignOwner {
            what: LIMIT.what,
            path: path.to_path_buf(),
            uid,
        }
        .into());
    }
    Ok(())
}

fn document(text: &str, path: &Path) -> Result<DocumentMut, HostFileError> {
    text.parse::<DocumentMut>().map_err(|err| {
        let offset = err.span().map_or(0, |span| span.start).min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        HostFileError::InvalidToml {
            path: path.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().unwrap_or("").chars().count() + 1,
            message: err.message().trim().to_string(),
        }
    })
}

/// Parses layout file text.
pub fn parse(text: &str, path: &Path) -> Result<HostFile, HostFileError> {
    let doc = document(text, path)?;
    let bad = |key: String, problem: &'static str| HostFileError::BadValue {
        path: path.to_path_buf(),
        key,
        problem,
    };
    let absolute = |item: &Item, key: String| -> Result<PathBuf, HostFileError> {
        match item.as_str() {
            Some(text) if text.starts_with('/') => Ok(PathBuf::from(text)),
            _ => Err(bad(
                key,
                "must be an absolute path (a string starting with `/`)",
            )),
        }
    };
    let mut host = HostFile::default();
    for key in PATH_KEYS {
        if let Some(item) = doc.get(key) {
            *host.path_field(key) = Some(absolute(item, key.to_string())?);
        }
    }
    if let Some(item) = doc.get("jobs") {
        match item.as_str() {
            Some(mode @ ("encrypted" | "plaintext-view")) => host.jobs = Some(mode.to_string()),
            _ => {
                return Err(bad(
                    "jobs".into(),
                    "must be \"encrypted\" or \"plaintext-view\"",
                ));
            }
        }
    }
    if let Some(item) = doc.get("runners") {
        let table = item
            .as_table_like()
            .ok_or_else(|| bad("runners".into(), "must be a table ([runners.NAME])"))?;
        for (name, item) in table.iter() {
            let runner = item.as_table_like().ok_or_else(|| {
                bad(
                    format!("runners.{name}"),
                    "must be a table ([runners.NAME])",
                )
            })?;
            let mut entry = RunnerEntry::default();
            if let Some(dir) = runner.get("config_dir") {
                entry.config_dir = Some(absolute(dir, format!("runners.{name}.config_dir"))?);
            }
            if let Some(image) = runner.get("image") {
                entry.image = Some(
                    image
                        .as_str()
                        .filter(|image| !image.is_empty())
                        .ok_or_else(|| {
                            bad(
                                format!("runners.{name}.image"),
                                "must be a non-empty string",
                            )
                        })?
                        .to_string(),
                );
            }
            host.runners.insert(name.to_string(), entry);
        }
    }
    Ok(host)
}

/// Writes the values `update` holds into the layout file, keeping every
/// other line; the file is created (0644, its directory 0755) if missing,
/// and written only if something changed. Returns whether it was.
pub fn record(path: &Path, update: &HostFile) -> Result<bool, HostFileError> {
    let existing = match fs::refuse_not_mine(path, LIMIT.what) {
        // Root may update a file a (non-root) admin made with --config.
        Err(FsError::NotYours { uid, .. }) if current_uid() == 0 => {
            refuse_foreign(path, uid)?;
            fs::read_optional(path, LIMIT)?
        }
        Err(err) => return Err(err.into()),
        Ok(_) => fs::read_optional(path, LIMIT)?,
    };
    let text = match &existing {
        Some(bytes) => String::from_utf8(bytes.clone()).map_err(|_| HostFileError::BadValue {
            path: path.to_path_buf(),
            key: "(the file)".into(),
            problem: "is not UTF-8 text",
        })?,
        None => String::new(),
    };
    // Refuse to build on a file commands could not read.
    parse(&text, path)?;
    let mut doc = document(&text, path)?;
    let mut update = update.clone();
    for key in PATH_KEYS {
        if let Some(value) = update.path_field(key).take() {
            set(doc.as_table_mut(), key, &value.to_string_lossy());
        }
    }
    if let Some(jobs) = &update.jobs {
        set(doc.as_table_mut(), "jobs", jobs);
    }
    if !update.runners.is_empty() {
        if doc.get("runners").is_none() {
            let mut table = Table::new();
            table.set_implicit(true);
            doc.insert("runners", Item::Table(table));
        }
        let runners = doc
            .get_mut("runners")
            .and_then(Item::as_table_mut)
            .expect("checked by parse");
        for (name, entry) in &update.runners {
            if runners.get(name).is_none() {
                runners.insert(name, Item::Table(Table::new()));
            }
            let table = runners
                .get_mut(name)
                .and_then(Item::as_table_like_mut)
                .expect("checked by parse");
            if let Some(dir) = &entry.config_dir {
                set(table, "config_dir", &dir.to_string_lossy());
            }
            if let Some(image) = &entry.image {
                set(table, "image", image);
            }
        }
    }
    let new = match existing {
        Some(_) => doc.to_string(),
        None => format!("{HEADER}{doc}"),
    };
    if existing.as_deref() == Some(new.as_bytes()) {
        return Ok(false);
    }
    fs::create_dir_with_mode(fs::parent_dir(path), 0o755)?;
    fs::write_atomic(path, new.as_bytes(), MODE)?;
    Ok(true)
}

/// Sets a string key, keeping its comments and place when it exists.
fn set(table: &mut dyn TableLike, key: &str, new: &str) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(value) if value.as_str() == Some(new) => {}
        Some(value) => {
            let decor = value.decor().clone();
            *value = toml_edit::Value::from(new);
            *value.decor_mut() = decor;
        }
        None => {
            table.insert(key, toml_edit::value(new));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_layout_reads_back_and_a_second_record_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/runvault.toml");
        let mut update = HostFile {
            secrets_dir: Some("/srv/secrets".into()),
            key_file: Some("/etc/rv/k".into()),
            jobs: Some("encrypted".into()),
            ..HostFile::default()
        };
        update.runners.insert(
            "r1".into(),
            RunnerEntry {
                config_dir: Some("/srv/r1".into()),
                image: Some("img:1".into()),
            },
        );
        assert!(record(&path, &update).unwrap());
        assert_eq!(load(&path).unwrap().unwrap(), update);
        assert!(!record(&path, &update).unwrap());
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
        assert!(text.contains("[runners.r1]\nconfig_dir = \"/srv/r1\"\nimage = \"img:1\"\n"));
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let path = Path::new("/etc/runvault/runvault.toml");
        let err = parse("bin_dir = \"relative\"\n", path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "layout file `/etc/runvault/runvault.toml`: `bin_dir` must be an absolute path \
             (a string starting with `/`); fix or remove that line"
        );
        assert!(parse("jobs = \"plain\"\n", path).is_err());
        assert!(parse("[runners.a]\nimage = 3\n", path).is_err());
        assert!(matches!(
            parse("x = [\n", path).unwrap_err(),
            HostFileError::InvalidToml { .. }
        ));
        // Unknown keys are a newer runvault's: ignored.
        assert_eq!(parse("future = 1\n", path).unwrap(), HostFile::default());
    }
}
