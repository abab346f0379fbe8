//! Reaching the Docker engine: the address (`--docker-host`, else
//! `DOCKER_HOST`, else the local socket), version negotiation, and the
//! translation of the engine's failures into [`Error`]s a person can act on.

use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};

use crate::runner::error::Error;

/// The engine's address when neither `--docker-host` nor `DOCKER_HOST` is set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Seconds the engine has to start answering a request.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How long the first contact may take before the engine counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a Docker engine whose API version has been negotiated.
pub struct Engine {
    docker: Docker,
    host: String,
}

impl Engine {
    /// Connects to `host` (a `unix://`, `tcp://` or `http://` address, or a
    /// socket path), or [`DEFAULT_HOST`], and negotiates the API version.
    pub async fn connect(host: Option<&str>) -> Result<Engine, Error> {
        let host = normalize_host(host.unwrap_or(DEFAULT_HOST));
        let docker = if host.starts_with("unix://") {
            Docker::connect_with_unix(&host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(&host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else {
            return Err(Error::Usage(format!(
                "unsupported Docker address `{host}`: use unix:///path/to/docker.sock \
                 or tcp://HOST:PORT"
            )));
        }
        .map_err(|err| unreachable(&host, &err))?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| Error::EngineUnreachable {
                host: host.clone(),
                reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            })?
            .map_err(|err| unreachable(&host, &err))?;
        tracing::info!(endpoint = %host, api_version = %docker.client_version(), "connected to the Docker engine");
        Ok(Engine { docker, host })
    }

    /// The bollard client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The bollard client, for one API call on `object` (a container or
    /// image name), logged at debug level. Only names go to the log, never
    /// a request body (it may hold an environment with a token).
    pub fn call(&self, endpoint: &'static str, object: &str) -> &Docker {
        tracing::debug!(engine = %self.host, endpoint, object, "Docker API call");
        &self.docker
    }

    /// The address connected to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Maps an engine error met while doing `action`: a lost connection is
    /// [`Error::EngineUnreachable`], anything else [`Error::Engine`].
    pub fn error(&self, action: impl Into<String>, err: bollard::errors::Error) -> Error {
        if is_connection_error(&err) {
            unreachable(&self.host, &err)
        } else {
            Error::Engine {
                action: action.into(),
                source: err,
            }
        }
    }
}

/// Whether the engine said 404 (no such container or image).
pub fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether the engine said 304 (already started / already stopped).
pub fn is_not_modified(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

/// A bare socket path becomes a `unix://` address.
fn normalize_host(host: &str) -> String {
    if host.starts_with('/') {
        format!("unix://{host}")
    } else {
        host.to_string()
    }
}

/// The first I/O error in an error's chain of causes.
fn io_cause<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e std::io::Error> {
    let mut current = Some(err);
    while let Some(cause) = current {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = cause.source();
    }
    None
}

fn is_connection_error(err: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as B;
    matches!(
        err,
        B::HyperLegacyError { .. }
            | B::IOError { .. }
            | B::RequestTimeoutError
            | B::SocketNotFoundError(_)
    )
}

/// The error for an engine that cannot be used at `host`.
fn unreachable(host: &str, err: &bollard::errors::Error) -> Error {
    let io = io_cause(err);
    if io.is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied) {
        return Error::SocketPermission {
            host: host.to_string(),
        };
    }
    let reason = match io {
        Some(io) => io.to_string(),
        None => err.to_string(),
    };
    Error::EngineUnreachable {
        host: host.to_string(),
        reason: reason.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_become_unix_addresses() {
        assert_eq!(
            normalize_host("/run/docker.sock"),
            "unix:///run/docker.sock"
        );
        assert_eq!(
            normalize_host("tcp://127.0.0.1:2375"),
            "tcp://127.0.0.1:2375"
        );
    }

    #[test]
    fn missing_socket_is_unreachable_with_exit_7() {
        use crate::core::exit::ExitStatus;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime
            .block_on(Engine::connect(Some("unix:///nonexistent/docker.sock")))
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), crate::core::exit::ENGINE_UNREACHABLE);
        assert!(
            err.to_string().starts_with(
                "cannot reach the Docker engine at `unix:///nonexistent/docker.sock`: "
            ),
            "{err}"
        );
        let err = runtime
            .block_on(Engine::connect(Some("ftp://x")))
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), crate::core::exit::USAGE);
    }
}
