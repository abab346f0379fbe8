//! What `runner status` reports: the container's state, image, uptime,
//! restart count and policy, mounts, and whether `config.toml` gives every
//! runner the read-only secrets directory mount.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::core::fs::{self, Limit};
use crate::runner::config;
use crate::runner::container;
use crate::runner::engine::Engine;
use crate::runner::error::Error;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The container name.
    pub name: String,
    /// The container, or `None` if there is none of that name.
    pub container: Option<ContainerStatus>,
    /// The runner's `config.toml`.
    pub config_path: PathBuf,
    /// What `config.toml` says about the secrets mount.
    pub secrets_mount: SecretsMount,
}

/// The container part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStatus {
    /// `running`, `exited`, `restarting`, ...
    pub state: String,
    /// Whether runvault created it.
    pub managed: bool,
    /// The image it was created from.
    pub image: String,
    /// When it last started (RFC 3339), if it runs.
    pub started_at: Option<String>,
    /// Seconds since then, if it runs.
    pub uptime_secs: Option<u64>,
    /// How often the engine restarted it.
    pub restart_count: i64,
    /// `always`, `no`, ...
    pub restart_policy: String,
    /// Its last exit code (0 while it runs).
    pub exit_code: i64,
    /// Its mounts.
    pub mounts: Vec<Mount>,
}

/// One mount of the container.
#[derive(Debug, Clone, Serialize)]
pub struct Mount {
    /// Host path (or volume).
    pub source: String,
    /// Path in the container.
    pub destination: String,
    /// Whether it is read-only.
    pub read_only: bool,
}

/// Whether `config.toml` mounts the secrets directory read-only everywhere.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SecretsMount {
    /// Every runner mounts it read-only, as a directory.
    ReadOnly,
    /// These runners lack it (or mount it some other way too).
    Missing {
        /// Runner names.
        runners: Vec<String>,
    },
    /// `config.toml` has no `[[runners]]`.
    NoRunners,
    /// There is no `config.toml` yet.
    NoConfig,
}

/// Gathers the report for container `name`, config in `config_path`.
pub async fn status(
    engine: &Engine,
    name: &str,
    config_path: &Path,
    secrets_dir: &Path,
) -> Result<Status, Error> {
    let container = container::inspect(engine, name)
        .await?
        .map(|details| container_status(&details));
    let secrets_mount = match fs::read_optional(config_path, Limit::any("config file"))? {
        None => SecretsMount::NoConfig,
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if config::runner_names(&text, config_path)?.is_empty() {
                SecretsMount::NoRunners
            } else {
                let missing =
                    config::runners_without_secrets_mount(&text, config_path, secrets_dir)?;
                if missing.is_empty() {
                    SecretsMount::ReadOnly
                } else {
                    SecretsMount::Missing { runners: missing }
                }
            }
        }
    };
    Ok(Status {
        name: name.to_string(),
        container,
        config_path: config_path.to_path_buf(),
        secrets_mount,
    })
}

fn container_status(details: &bollard::models::ContainerInspectResponse) -> ContainerStatus {
    let state = details.state.clone().unwrap_or_default();
    let running = state.running == Some(true);
    let started_at = state.started_at.filter(|_| running);
    let uptime_secs = started_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| d.as_secs());
    ContainerStatus {
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        managed: container::is_managed(details),
        image: details
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        started_at,
        uptime_secs,
        restart_count: details.restart_count.unwrap_or_default(),
        restart_policy: details
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "no".into()),
        exit_code: state.exit_code.unwrap_or_default(),
        mounts: details
            .mounts
            .iter()
            .flatten()
            .map(|m| Mount {
                source: m
                    .source
                    .clone()
                    .or_else(|| m.name.clone())
                    .unwrap_or_default(),
                destination: m.destination.clone().unwrap_or_default(),
                read_only: m.rw == Some(false),
            })
            .collect(),
    }
}

/// One line of the human report: a label and its value, and whether the
/// value is as it should be (`None`: neither good nor bad).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `container:`, `state:`, ... (empty for a continued list).
    pub label: &'static str,
    /// The value.
    pub value: String,
    /// `Some(true)`: as it should be; `Some(false)`: needs action.
    pub healthy: Option<bool>,
}

impl Status {
    /// The human report, one labelled line per fact (the command line
    /// aligns and colours them). `configure` and `register` are the
    /// command lines its hints name (the command line builds them with
    /// the options it was given).
    pub fn lines(&self, configure: &str, register: &str) -> Vec<Line> {
        let line = |label, value: String, healthy| Line {
            label,
            value,
            healthy,
        };
        let mut lines = Vec::new();
        match &self.container {
            None => lines.push(line(
                "container:",
                format!("{} (absent)", self.name),
                Some(false),
            )),
            Some(c) => {
                let owner = if c.managed {
                    "managed by runvault"
                } else {
                    "not created by runvault"
                };
                lines.push(line("container:", format!("{} ({owner})", self.name), None));
                lines.push(match c.uptime_secs {
                    Some(secs) => line(
                        "state:",
                        format!(
                            "{}, up {}",
                            c.state,
                            humantime::format_duration(std::time::Duration::from_secs(secs))
                        ),
                        Some(true),
                    ),
                    None => line(
                        "state:",
                        format!("{} (exit code {})", c.state, c.exit_code),
                        Some(false),
                    ),
                });
                lines.push(line("image:", c.image.clone(), None));
                lines.push(line(
                    "restart policy:",
                    format!("{} (restarted {} times)", c.restart_policy, c.restart_count),
                    None,
                ));
                for (i, m) in c.mounts.iter().enumerate() {
                    let label = if i == 0 { "mounts:" } else { "" };
                    let mode = if m.read_only { "ro" } else { "rw" };
                    lines.push(line(
                        label,
                        format!("{}:{} ({mode})", m.source, m.destination),
                        None,
                    ));
                }
            }
        }
        let config = self.config_path.display();
        lines.push(match &self.secrets_mount {
            SecretsMount::ReadOnly => line(
                "config:",
                format!("`{config}`: every runner mounts the secrets directory read-only"),
                Some(true),
            ),
            SecretsMount::Missing { runners } => line(
                "config:",
                format!(
                    "`{config}`: no read-only secrets mount in runner(s) {}; \
                     run `{configure}`",
                    runners.join(", ")
                ),
                Some(false),
            ),
            SecretsMount::NoRunners => line(
                "config:",
                format!("`{config}` has no [[runners]]; run `{register}`"),
                Some(false),
            ),
            SecretsMount::NoConfig => line(
                "config:",
                format!("`{config}` does not exist; run `{register}`"),
                Some(false),
            ),
        });
        lines
    }
}
