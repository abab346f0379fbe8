//! `runvault exec [--only NAME]... [--export PREFIX]... [--pristine] -- CMD
//! [ARGS...]`: runs CMD with its environment resolved, by replacing the
//! runvault process (`execve`), so that no parent process keeps the
//! plaintext.
//!
//! - Every variable whose value holds a `DATAOPS_VAULT(PATH)` reference gets
//!   the resolved text in its place (see [`crate::jobs::reference`]), except
//!   the variables the CI system sets ([`crate::jobs::ci::CI_SET`]): their
//!   values come from commit messages, branch names and merge requests, so
//!   they pass through unchanged and never fail the command (a note on
//!   stderr names one that mentions `DATAOPS_VAULT(`).
//! - `--only NAME` (repeatable) resolves the named variables and no other;
//!   each must be set, and none may be one the CI system sets.
//! - `--export PREFIX` adds every value under PREFIX as a variable named by
//!   [`KeyPath::env_name`] of its full path (`SNOWFLAKE.TRANSFORM.PASSWORD`
//!   becomes `SNOWFLAKE_TRANSFORM_PASSWORD`). Collisions: a variable the
//!   command would receive anyway (inherited, or resolved under
//!   `--pristine`) wins over an exported one of the same name, with a note
//!   on stderr naming it; two exported paths with the same name are an
//!   error (exit 2), as nothing says which one the job meant.
//! - `--pristine` starts from an empty environment: the command gets only
//!   the resolved variables and the exported ones.
//! - Every reference is checked before the command starts: a missing path
//!   exits 3 naming the variable and the path, and the command never runs.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;

use crate::core::secret::SecretBytes;
use crate::jobs::ci;
use crate::jobs::error::JobsError;
use crate::jobs::reference;
use crate::jobs::resolve::{self, Place, Source, Target};
use crate::vault::{Credential, KeyPath, ReadOnlyDir, VaultError};

/// What `exec` was asked to do (validated arguments).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The variables to resolve (`--only`); empty: every variable outside
    /// [`crate::jobs::ci::CI_SET`].
    pub only: Vec<OsString>,
    /// Prefixes to export as variables.
    pub exports: Vec<KeyPath>,
    /// Start from an empty environment.
    pub pristine: bool,
    /// The command and its arguments (at least the command).
    pub command: Vec<OsString>,
}

/// The environment the command gets. No `Debug`: it holds plaintext.
pub struct PreparedEnv {
    /// Whether the inherited environment is dropped first.
    pub clear: bool,
    /// Variables to set (resolved ones, then exported ones), in order.
    pub vars: Vec<(OsString, SecretBytes)>,
    /// Warnings for stderr (names and paths only), printed with the
    /// command line's one warning prefix.
    pub notes: Vec<String>,
}

/// Resolves `environment` (the variables runvault was started with) and
/// the exports, reading the vault at most once.
pub fn prepare(
    dir: &ReadOnlyDir,
    credential: impl FnOnce() -> Result<Credential, VaultError>,
    environment: Vec<(OsString, OsString)>,
    request: &ExecRequest,
) -> Result<PreparedEnv, JobsError> {
    check_only(&request.only, &environment)?;
    let mut sources = Vec::new();
    let mut kept_names: HashSet<OsString> = HashSet::new();
    let mut notes = Vec::new();
    for (name, value) in environment {
        let resolvable = if request.only.is_empty() {
            match ci::ci_set_rule(&name) {
                Some(rule) => {
                    if reference::mentions_reference(value.as_bytes()) {
                        notes.push(format!(
                            "`{}` is set by the CI system (`{}`); its `DATAOPS_VAULT(` is \
                             passed on unresolved",
                            name.to_string_lossy(),
                            rule.shown()
                        ));
                    }
                    false
                }
                None => true,
            }
        } else {
            request.only.contains(&name)
        };
        if !resolvable {
            if !request.pristine {
                kept_names.insert(name);
            }
            continue;
        }
        match Source::scan(Place::Variable(name.clone()), value.into_vec())? {
            Some(source) => sources.push(source),
            None if !request.pristine => {
                kept_names.insert(name);
            }
            None => {}
        }
    }
    let resolved = resolve::resolve(
        dir,
        credential,
        &sources,
        &request.exports,
        Target::Environment,
    )?;
    let mut vars = Vec::with_capacity(sources.len() + resolved.exported.len());
    for (source, text) in sources.iter().zip(resolved.texts) {
        let Place::Variable(name) = source.place() else {
            unreachable!("exec resolves variables only")
        };
        kept_names.insert(name.clone());
        vars.push((name.clone(), text));
    }
    let mut exported_names: HashMap<String, KeyPath> = HashMap::new();
    for (path, plain) in resolved.exported {
        let name = path.env_name();
        if let Some(first) = exported_names.get(&name) {
            return Err(JobsError::ExportCollision {
                name,
                first: first.to_string(),
                second: path.to_string(),
            });
        }
        if plain.bytes.expose().contains(&0) {
            return Err(JobsError::NulInValue {
                place: format!("--export variable `{name}`"),
                key: path.to_string(),
            });
        }
        exported_names.insert(name.clone(), path.clone());
        if kept_names.contains(OsStr::new(&name)) {
            notes.push(format!(
                "`{name}` is set in the environment; it wins over the value exported from `{path}`"
            ));
            continue;
        }
        vars.push((OsString::from(name), plain.bytes));
    }
    Ok(PreparedEnv {
        clear: request.pristine,
        vars,
        notes,
    })
}

/// Refuses `--only` names the CI system sets or the environment lacks.
fn check_only(only: &[OsString], environment: &[(OsString, OsString)]) -> Result<(), JobsError> {
    for name in only {
        if let Some(rule) = ci::ci_set_rule(name) {
            return Err(JobsError::OnlyCiSet {
                name: name.to_string_lossy().into_owned(),
                rule: rule.shown(),
            });
        }
        if !environment.iter().any(|(set, _)| set == name) {
            return Err(JobsError::OnlyUnset {
                name: name.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(())
}

/// Replaces this process with the command. Returns only if that failed.
pub fn exec(prepared: &PreparedEnv, command: &[OsString]) -> JobsError {
    let (program, args) = command.split_first().expect("clap requires a command");
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if prepared.clear {
        cmd.env_clear();
    }
    for (name, value) in &prepared.vars {
        cmd.env(name, OsStr::from_bytes(value.expose()));
    }
    // The command gets the core-size limit runvault started with back; the
    // kernel makes it dumpable again by itself at exec.
    let _ = crate::core::harden::restore_core_limit_for_child();
    let source = cmd.exec();
    JobsError::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}
