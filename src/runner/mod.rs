//! The runner: everything between the vault and a running DataOps runner
//! container on this host.
//!
//! - [`config`]: editing the runner's `config.toml` (`toml_edit`,
//!   format-preserving, idempotent, safe against the runner's own rewrites).
//! - [`volumes`]: the `volumes` of one runner and the secrets mount policy.
//! - [`engine`]: reaching the Docker engine (bollard) and its errors.
//! - [`container`]: the long-running runner container.
//! - [`register`]: the one-shot `register` container.
//! - [`status`]: what `runner status` reports.
//! - [`install`]: the whole manual procedure as one idempotent command.
//!
//! [`Target`] is the validated form of the options every `runner` command
//! takes; handlers build it before any I/O.

pub mod config;
pub mod container;
pub mod engine;
pub mod error;
pub mod install;
pub mod register;
pub mod status;
pub mod volumes;

use std::path::{Path, PathBuf};

pub use error::Error;

/// The runner image when `--image` is not given.
pub const DEFAULT_IMAGE: &str = "dataopslive/dataops-runner";

/// Which runner on this host a command is about.
#[derive(Debug, Clone)]
pub struct Target {
    /// The agent name: container name, runner description, default tag.
    pub name: String,
    /// The host's config directory (absolute), bound at `/etc/gitlab-runner`.
    pub config_dir: PathBuf,
    /// The runner image.
    pub image: String,
    /// The engine's address, if not the default.
    pub docker_host: Option<String>,
}

impl Target {
    /// Validates the common options: the name is a valid container name, the
    /// config directory defaults to `/srv/dataops-runner-NAME/config` and is
    /// made absolute.
    pub fn new(
        name: Option<&str>,
        config_dir: Option<&Path>,
        image: &str,
        docker_host: Option<&str>,
    ) -> Result<Target, Error> {
        let name = name.ok_or_else(|| {
            Error::Usage("no runner name: pass --name NAME or set AGENT_NAME".into())
        })?;
        check_name(name)?;
        let config_dir = match config_dir {
            Some(dir) => mount_source(dir, "--config-dir")?,
            None => PathBuf::from(format!("/srv/dataops-runner-{name}/config")),
        };
        if image.is_empty() {
            return Err(Error::Usage("--image is empty".into()));
        }
        Ok(Target {
            name: name.to_string(),
            config_dir,
            image: image.to_string(),
            docker_host: docker_host.filter(|h| !h.is_empty()).map(str::to_string),
        })
    }

    /// The runner's `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn check_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128;
    if valid {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "`{name}` is not a valid runner name: use letters, digits, `_`, `.` and `-`, \
             starting with a letter or digit"
        )))
    }
}

/// A host path made absolute for a bind mount or a `volumes` entry: an
/// existing path is canonicalized, a missing one made absolute against the
/// current directory. Paths Docker's `-v` syntax cannot carry are refused.
pub fn mount_source(path: &Path, option: &str) -> Result<PathBuf, Error> {
    let absolute = match std::fs::canonicalize(path) {
        Ok(path) => path,
        Err(_) => std::path::absolute(path).map_err(|err| {
            Error::Usage(format!(
                "{option} `{}` cannot be made absolute: {err}",
                path.display()
            ))
        })?,
    };
    let text = absolute
        .to_str()
        .ok_or_else(|| Error::Usage(format!("{option} `{}` is not UTF-8", absolute.display())))?;
    if text.contains([':', ',']) {
        return Err(Error::Usage(format!(
            "{option} `{text}` contains `:` or `,`, which Docker volume syntax cannot carry"
        )));
    }
    Ok(absolute)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_defaults_and_checks() {
        let t = Target::new(Some("sg-1"), None, DEFAULT_IMAGE, None).unwrap();
        assert_eq!(
            t.config_path(),
            Path::new("/srv/dataops-runner-sg-1/config/config.toml")
        );
        assert!(Target::new(None, None, DEFAULT_IMAGE, None).is_err());
        assert!(Target::new(Some("-x"), None, DEFAULT_IMAGE, None).is_err());
        assert!(Target::new(Some("a/b"), None, DEFAULT_IMAGE, None).is_err());
        let err = mount_source(Path::new("/tmp/a:b"), "--dir").unwrap_err();
        assert!(err.to_string().contains("cannot carry"));
        let rel = mount_source(Path::new("relative/dir"), "--dir").unwrap();
        assert!(rel.is_absolute());
    }
}
