//! The long-running runner container: create, start, stop, restart,
//! remove, logs and inspection, as the manual `docker run -d --restart
//! always ...` step does, but idempotent and refusing to touch a container
//! runvault did not create.
//!
//! runvault marks its containers with the label `io.runvault.managed=true`;
//! a same-named container without it, or with other binds or another image,
//! is reported and left alone unless `--recreate` is given.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, LogsOptions, RemoveContainerOptions,
    RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;

use crate::runner::engine::{Engine, is_not_found, is_not_modified};
use crate::runner::error::Error;

/// The label marking containers runvault created.
pub const MANAGED_LABEL: &str = "io.runvault.managed";
/// The label saying what a runvault container is for (`runner`, `register`).
pub const ROLE_LABEL: &str = "io.runvault.role";
/// Where the runner reads its configuration inside the container.
pub const CONFIG_TARGET: &str = "/etc/gitlab-runner";
/// The host's Docker socket, bound into the runner so it can start job containers.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// How long `start`/`restart` wait for the container to be running.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it must keep running to count as started.
const SETTLE: Duration = Duration::from_millis(500);
/// How often they look.
const POLL: Duration = Duration::from_millis(100);
/// Log lines shown when a container does not stay up.
pub const TAIL_LINES: usize = 20;

/// The container `runner start` creates.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Container name (the agent name).
    pub name: String,
    /// The runner image.
    pub image: String,
    /// The host's config directory (absolute), bound at `/etc/gitlab-runner`.
    pub config_dir: PathBuf,
    /// Start with `DEBUG=true`.
    pub debug: bool,
}

impl Spec {
    /// The binds, in `docker run -v` syntax.
    pub fn binds(&self) -> Vec<String> {
        vec![
            format!("{}:{CONFIG_TARGET}", self.config_dir.display()),
            format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}"),
        ]
    }

    fn body(&self) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(self.image.clone()),
            env: self.debug.then(|| vec!["DEBUG=true".to_string()]),
            labels: Some(labels("runner")),
            host_config: Some(HostConfig {
                binds: Some(self.binds()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ALWAYS),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// What differs between this spec and an existing container.
    fn differences(&self, existing: &ContainerInspectResponse) -> Vec<String> {
        let mut differences = Vec::new();
        let image = existing
            .config
            .as_ref()
            .and_then(|c| c.image.as_deref())
            .unwrap_or_default();
        if image != self.image {
            differences.push(format!("image `{image}`, not `{}`", self.image));
        }
        let mut have: Vec<String> = existing
            .host_config
            .as_ref()
            .and_then(|h| h.binds.clone())
            .unwrap_or_default();
        let mut want = self.binds();
        have.sort();
        want.sort();
        if have != want {
            differences.push(format!(
                "binds `{}`, not `{}`",
                have.join(" "),
                want.join(" ")
            ));
        }
        differences
    }
}

/// The labels of a runvault container with the given role.
pub fn labels(role: &str) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (ROLE_LABEL.to_string(), role.to_string()),
    ])
}

/// What `start` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The container was created and started.
    Created,
    /// An existing (stopped) container was started.
    Started,
    /// It was already running; nothing changed.
    AlreadyRunning,
    /// The old container was removed and a new one created (`--recreate`).
    Recreated,
}

/// Fails with [`Error::ImageMissing`] unless the image is on this host.
pub async fn ensure_image(engine: &Engine, image: &str) -> Result<(), Error> {
    match engine
        .call("GET /images/{name}/json", image)
        .inspect_image(image)
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if is_not_found(&err) => Err(Error::ImageMissing {
            image: image.to_string(),
        }),
        Err(err) => Err(engine.error(format!("inspect image `{image}`"), err)),
    }
}

/// The container's details, or `None` if there is none of that name.
pub async fn inspect(
    engine: &Engine,
    name: &str,
) -> Result<Option<ContainerInspectResponse>, Error> {
    match engine
        .call("GET /containers/{id}/json", name)
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(details) => Ok(Some(details)),
        Err(err) if is_not_found(&err) => Ok(None),
        Err(err) => Err(engine.error(format!("inspect container `{name}`"), err)),
    }
}

/// Whether runvault created this container.
pub fn is_managed(details: &ContainerInspectResponse) -> bool {
    details
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|labels| labels.get(MANAGED_LABEL))
        .is_some_and(|v| v == "true")
}

fn is_running(details: &ContainerInspectResponse) -> bool {
    details
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false)
}

/// Our container of that name, or an error if it is absent or not ours.
async fn ours(engine: &Engine, name: &str) -> Result<ContainerInspectResponse, Error> {
    match inspect(engine, name).await? {
        None => Err(Error::no_container(name)),
        Some(details) if !is_managed(&details) => Err(Error::ForeignContainer {
            name: name.to_string(),
        }),
        Some(details) => Ok(details),
    }
}

/// Creates (if absent) and starts the runner container, then waits until it
/// runs. See the module doc for existing containers.
pub async fn start(engine: &Engine, spec: &Spec, recreate: bool) -> Result<StartOutcome, Error> {
    let mut outcome = StartOutcome::Created;
    if let Some(existing) = inspect(engine, &spec.name).await? {
        let problem = if is_managed(&existing) {
            let differences = spec.differences(&existing);
            (!differences.is_empty()).then(|| Error::ContainerDiffers {
                name: spec.name.clone(),
                differences: differences.join("; "),
            })
        } else {
            Some(Error::ForeignContainer {
                name: spec.name.clone(),
            })
        };
        match (problem, recreate) {
            (Some(problem), false) => return Err(problem),
            (None, false) => {
                if is_running(&existing) {
                    return Ok(StartOutcome::AlreadyRunning);
                }
                start_existing(engine, &spec.name).await?;
                wait_running(engine, &spec.name).await?;
                return Ok(StartOutcome::Started);
            }
            (_, true) => {
                force_remove(engine, &spec.name).await?;
                outcome = StartOutcome::Recreated;
            }
        }
    }
    let config_path = spec.config_dir.join("config.toml");
    if !config_path.exists() {
        return Err(Error::no_config(config_path));
    }
    ensure_image(engine, &spec.image).await?;
    let options = CreateContainerOptions {
        name: Some(spec.name.clone()),
        ..Default::default()
    };
    tracing::info!(container = %spec.name, image = %spec.image, "creating the runner container");
    engine
        .call("POST /containers/create", &spec.name)
        .create_container(Some(options), spec.body())
        .await
        .map_err(|err| engine.error(format!("create container `{}`", spec.name), err))?;
    start_existing(engine, &spec.name).await?;
    wait_running(engine, &spec.name).await?;
    Ok(outcome)
}

async fn start_existing(engine: &Engine, name: &str) -> Result<(), Error> {
    match engine
        .call("POST /containers/{id}/start", name)
        .start_container(name, None::<StartContainerOptions>)
        .await
    {
        Ok(()) => Ok(()),
        Err(err) if is_not_modified(&err) => Ok(()),
        Err(err) => Err(engine.error(format!("start container `{name}`"), err)),
    }
}

/// Waits until the container has been running for [`SETTLE`]; if it exits
/// or the engine restarts it meanwhile (policy `always` hides a crash as a
/// restart loop), fails with its last exit code and log tail.
async fn wait_running(engine: &Engine, name: &str) -> Result<(), Error> {
    let deadline = Instant::now() + RUNNING_TIMEOUT;
    let mut first_restart_count = None;
    let mut running_since: Option<Instant> = None;
    loop {
        let details = inspect(engine, name)
            .await?
            .ok_or_else(|| Error::no_container(name))?;
        let state = details.state.clone().unwrap_or_default();
        let status = state.status.map(|s| s.to_string()).unwrap_or_default();
        let restarts = details.restart_count.unwrap_or_default();
        let restarted = restarts > *first_restart_count.get_or_insert(restarts);
        tracing::trace!(container = name, %status, restarts, "waiting for the container to run");
        let down =
            restarted || state.restarting == Some(true) || status == "exited" || status == "dead";
        if down || Instant::now() >= deadline {
            return Err(Error::NotRunning {
                name: name.to_string(),
                state: status,
                code: state.exit_code.unwrap_or_default(),
                tail: log_tail(engine, name, TAIL_LINES, &[]).await?,
            });
        }
        if state.running == Some(true) {
            if running_since.get_or_insert_with(Instant::now).elapsed() >= SETTLE {
                return Ok(());
            }
        } else {
            running_since = None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops our container; `false` if it was not running.
pub async fn stop(engine: &Engine, name: &str, timeout: Option<i32>) -> Result<bool, Error> {
    let details = ours(engine, name).await?;
    if !is_running(&details) {
        return Ok(false);
    }
    let options = StopContainerOptions {
        t: timeout,
        signal: None,
    };
    match engine
        .call("POST /containers/{id}/stop", name)
        .stop_container(name, Some(options))
        .await
    {
        Ok(()) => Ok(true),
        Err(err) if is_not_modified(&err) => Ok(false),
        Err(err) => Err(engine.error(format!("stop container `{name}`"), err)),
    }
}

/// Restarts our container and waits until it runs.
pub async fn restart(engine: &Engine, name: &str, timeout: Option<i32>) -> Result<(), Error> {
    ours(engine, name).await?;
    let options = RestartContainerOptions {
        t: timeout,
        signal: None,
    };
    engine
        .call("POST /containers/{id}/restart", name)
        .restart_container(name, Some(options))
        .await
        .map_err(|err| engine.error(format!("restart container `{name}`"), err))?;
    wait_running(engine, name).await
}

/// Removes our container (stopping it first); the config directory stays.
pub async fn remove(engine: &Engine, name: &str) -> Result<(), Error> {
    // A graceful stop first, so that the runner finishes as on `stop`.
    stop(engine, name, None).await?;
    force_remove(engine, name).await
}

/// Removes a container whatever its state.
pub async fn force_remove(engine: &Engine, name: &str) -> Result<(), Error> {
    let options = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    match engine
        .call("DELETE /containers/{id}", name)
        .remove_container(name, Some(options))
        .await
    {
        Ok(()) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(engine.error(format!("remove container `{name}`"), err)),
    }
}

/// Streams a container's log to `sink` (stdout and stderr chunks as they
/// come): the last `tail` lines (all if `None`), then new ones if `follow`.
/// A sink that breaks (its reader went away) ends the stream there.
pub async fn logs(
    engine: &Engine,
    name: &str,
    follow: bool,
    tail: Option<usize>,
    mut sink: impl FnMut(LogOutput) -> ControlFlow<()>,
) -> Result<(), Error> {
    if inspect(engine, name).await?.is_none() {
        return Err(Error::no_container(name));
    }
    let options = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
        ..Default::default()
    };
    let mut stream = engine
        .call("GET /containers/{id}/logs", name)
        .logs(name, Some(options));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| engine.error(format!("read the log of `{name}`"), err))?;
        if sink(chunk).is_break() {
            break;
        }
    }
    Ok(())
}

/// The last `lines` log lines of a container as text (without the final
/// newline), each occurrence of any of `secrets` replaced by `[MASKED]`.
/// The engine does not keep stdout and stderr lines in order between them.
pub async fn log_tail(
    engine: &Engine,
    name: &str,
    lines: usize,
    secrets: &[&str],
) -> Result<String, Error> {
    let mut text = Vec::new();
    logs(engine, name, false, Some(lines), |chunk| {
        text.extend_from_slice(&chunk.into_bytes());
        ControlFlow::Continue(())
    })
    .await?;
    Ok(mask(String::from_utf8_lossy(&text).trim_end(), secrets))
}

/// Replaces every occurrence of each non-empty secret with `[MASKED]`.
pub fn mask(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |acc, secret| {
            acc.replace(secret, "[MASKED]")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_replaces_every_occurrence() {
        assert_eq!(
            mask("token=abc abc! x", &["abc", ""]),
            "token=[MASKED] [MASKED]! x"
        );
    }

    #[test]
    fn spec_binds_and_differences() {
        let spec = Spec {
            name: "r".into(),
            image: "img".into(),
            config_dir: PathBuf::from("/srv/r/config"),
            debug: false,
        };
        assert_eq!(
            spec.binds(),
            vec![
                "/srv/r/config:/etc/gitlab-runner",
                "/var/run/docker.sock:/var/run/docker.sock"
            ]
        );
        let body = spec.body();
        let existing = ContainerInspectResponse {
            config: Some(bollard::models::ContainerConfig {
                image: Some("other".into()),
                ..Default::default()
            }),
            host_config: body.host_config.clone(),
            ..Default::default()
        };
        assert_eq!(
            spec.differences(&existing),
            vec!["image `other`, not `img`"]
        );
    }
}
