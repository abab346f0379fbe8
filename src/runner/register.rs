//! Registering the runner: the runner image run once with `register
//! --non-interactive --executor docker ...`, the config directory bound at
//! `/etc/gitlab-runner`, exactly as the manual step does, except that the
//! token travels in the container's environment, never on its command line.
//!
//! The one-shot container is always removed afterwards (it holds the token
//! in its environment), and its log is shown with the token masked.

use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::core::fs::{self, Limit};
use crate::core::secret::SecretBytes;
use crate::runner::config;
use crate::runner::container::{self, CONFIG_TARGET, TAIL_LINES};
use crate::runner::engine::Engine;
use crate::runner::error::Error;

/// Prefix of runner authentication tokens (GitLab 15.10 and later).
const RUNNER_TOKEN_PREFIX: &str = "glrt-";

/// A registration or runner authentication token; never printed.
///
/// No `Debug` and no `Display`. The first example compiles; the next two
/// are the same code with `{:?}`, then `{}`, and must not compile, for want
/// of the trait (E0277).
///
/// ```
/// use runvault::core::secret::SecretBytes;
/// use runvault::runner::register::Token;
/// let token = Token::new(SecretBytes::new(b"glrt-example".to_vec())).unwrap();
/// let _ = format!("{:p}", &token); // its address, not its bytes
/// ```
///
/// ```compile_fail,E0277
/// use runvault::core::secret::SecretBytes;
/// use runvault::runner::register::Token;
/// let token = Token::new(SecretBytes::new(b"glrt-example".to_vec())).unwrap();
/// let _ = format!("{:?}", &token);
/// ```
///
/// ```compile_fail,E0277
/// use runvault::core::secret::SecretBytes;
/// use runvault::runner::register::Token;
/// let token = Token::new(SecretBytes::new(b"glrt-example".to_vec())).unwrap();
/// let _ = format!("{}", &token);
/// ```
pub struct Token(SecretBytes);

impl Token {
    /// Checks and wraps a token: non-empty UTF-8 without whitespace.
    pub fn new(bytes: SecretBytes) -> Result<Token, Error> {
        let text = std::str::from_utf8(bytes.expose())
            .map_err(|_| Error::Usage("the registration token is not UTF-8 text".into()))?;
        if text.is_empty() {
            return Err(Error::Usage("the registration token is empty".into()));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(Error::Usage(
                "the registration token contains whitespace; give only the token".into(),
            ));
        }
        Ok(Token(bytes))
    }

    fn as_str(&self) -> &str {
        // Checked in `new`.
        std::str::from_utf8(self.0.expose()).unwrap_or_default()
    }

    /// Whether it is a runner authentication token (`glrt-...`).
    pub fn is_runner_token(&self) -> bool {
        self.as_str().starts_with(RUNNER_TOKEN_PREFIX)
    }

    /// The environment variable the runner reads it from.
    pub fn env_name(&self) -> &'static str {
        if self.is_runner_token() {
            "CI_SERVER_TOKEN"
        } else {
            "REGISTRATION_TOKEN"
        }
    }
}

/// What `register` is asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// The runner's name: description, default tag, container name prefix.
    pub name: String,
    /// The runner image.
    pub image: String,
    /// The host's config directory (absolute).
    pub config_dir: PathBuf,
    /// The DataOps URL.
    pub url: String,
    /// Tags (default: the name).
    pub tags: Vec<String>,
    /// The image jobs run in.
    pub job_image: String,
}

impl Request {
    /// `config.toml` in the config directory.
    pub fn config_path(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The one-shot container's name.
    fn container_name(&self) -> String {
        format!("{}-runvault-register", self.name)
    }

    /// The `register` command line; holds no secret.
    pub fn command(&self, runner_token: bool) -> Vec<String> {
        let mut cmd: Vec<String> = [
            "register",
            "--non-interactive",
            "--executor",
            "docker",
            "--docker-image",
            &self.job_image,
            "--url",
            &self.url,
            "--description",
            &self.name,
        ]
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
        // A runner authentication token carries these settings itself; the
        // runner refuses them on the command line.
        if !runner_token {
            cmd.extend(
                [
                    "--tag-list",
                    &self.tags.join(","),
                    "--run-untagged=false",
                    "--locked=false",
                    "--access-level=not_protected",
                ]
                .iter()
                .map(std::string::ToString::to_string),
            );
        }
        cmd
    }
}

/// Whether `config.toml` in `config_dir` already has a runner named `name`.
pub fn is_registered(config_path: &Path, name: &str) -> Result<bool, Error> {
    match fs::read_optional(config_path, Limit::any("config file"))? {
        None => Ok(false),
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            Ok(config::runner_names(&text, config_path)?
                .iter()
                .any(|n| n == name))
        }
    }
}

/// What a finished registration printed, token masked.
pub struct Registered {
    /// The container's whole log, token masked.
    pub log: String,
}

/// Runs the one-shot register container and checks that it added the runner.
pub async fn register(
    engine: &Engine,
    request: &Request,
    token: &Token,
) -> Result<Registered, Error> {
    container::ensure_image(engine, &request.image).await?;
    fs::create_dir_with_mode(&request.config_dir, 0o700)?;
    let name = request.container_name();
    // A leftover from an interrupted run would hold the token: remove it.
    container::force_remove(engine, &name).await?;
    let body = ContainerCreateBody {
        image: Some(request.image.clone()),
        cmd: Some(request.command(token.is_runner_token())),
        env: Some(vec![format!("{}={}", token.env_name(), token.as_str())]),
        labels: Some(container::labels("register")),
        host_config: Some(HostConfig {
            binds: Some(vec![format!(
                "{}:{CONFIG_TARGET}",
                request.config_dir.display()
            )]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    tracing::info!(container = %name, image = %request.image, "running the registration container (its environment is not logged)");
    engine
        .call("POST /containers/create", &name)
        .create_container(Some(options), body)
        .await
        .map_err(|err| engine.error(format!("create container `{name}`"), err))?;
    let result = run_to_end(engine, &name, token).await;
    let removed = container::force_remove(engine, &name).await;
    let log = result?;
    removed?;
    if !is_registered(&request.config_path(), &request.name)? {
        return Err(Error::NotRegistered {
            path: request.config_path(),
            name: request.name.clone(),
        });
    }
    Ok(Registered { log })
}

/// Starts the one-shot container, waits for it, returns its masked log or
/// the error for a non-zero exit.
async fn run_to_end(engine: &Engine, name: &str, token: &Token) -> Result<String, Error> {
    engine
        .call("POST /containers/{id}/start", name)
        .start_container(name, None::<StartContainerOptions>)
        .await
        .map_err(|err| engine.error(format!("start container `{name}`"), err))?;
    let mut waits = engine
        .call("POST /containers/{id}/wait", name)
        .wait_container(name, None::<WaitContainerOptions>);
    let mut code = 0;
    while let Some(result) = waits.next().await {
        match result {
            Ok(response) => code = response.status_code,
            Err(bollard::errors::Error::DockerContainerWaitError { code: failed, .. }) => {
                code = failed;
            }
            Err(err) => return Err(engine.error(format!("wait for container `{name}`"), err)),
        }
    }
    let secrets = [token.as_str()];
    if code != 0 {
        return Err(Error::RegisterFailed {
            code,
            tail: container::log_tail(engine, name, TAIL_LINES, &secrets).await?,
        });
    }
    let mut log = Vec::new();
    container::logs(engine, name, false, None, |chunk| {
        log.extend_from_slice(&chunk.into_bytes());
        std::ops::ControlFlow::Continue(())
    })
    .await?;
    Ok(container::mask(&String::from_utf8_lossy(&log), &secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            name: "sg-1".into(),
            image: "img".into(),
            config_dir: PathBuf::from("/srv/c"),
            url: "https://app.dataops.live".into(),
            tags: vec!["sg-1".into(), "snowflake".into()],
            job_image: "dataopslive/dataops-utils-runner".into(),
        }
    }

    #[test]
    fn registration_token_flags_as_the_manual_step() {
        let cmd = request().command(false).join(" ");
        assert_eq!(
            cmd,
            "register --non-interactive --executor docker --docker-image \
             dataopslive/dataops-utils-runner --url https://app.dataops.live \
             --description sg-1 --tag-list sg-1,snowflake --run-untagged=false \
             --locked=false --access-level=not_protected"
        );
        assert!(!request().command(true).join(" ").contains("--tag-list"));
    }

    #[test]
    fn token_kinds_and_checks() {
        let t = Token::new(SecretBytes::new(b"glrt-abc".to_vec())).unwrap();
        assert_eq!(t.env_name(), "CI_SERVER_TOKEN");
        let t = Token::new(SecretBytes::new(b"GR1348941abc".to_vec())).unwrap();
        assert_eq!(t.env_name(), "REGISTRATION_TOKEN");
        assert!(Token::new(SecretBytes::new(Vec::new())).is_err());
        let err = Token::new(SecretBytes::new(b"a b".to_vec())).err().unwrap();
        assert!(!err.to_string().contains("a b"));
    }
}
