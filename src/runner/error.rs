//! The runner's errors, each with its documented exit code and a hint.
//!
//! Messages name files, containers and images, never the registration token:
//! anything that may carry container output (the register log tail) is
//! masked before it is put into an error.

use std::path::PathBuf;

use crate::core::exit::{self, ExitStatus};
use crate::core::fs::FsError;
use crate::core::lock::LockError;
use crate::vault::VaultError;

/// Everything a runner command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad or missing arguments.
    #[error("{0}")]
    Usage(String),
    /// File access failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Another runvault command holds a lock we need.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// `install` could not create or adopt the vault.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// `install` could not write the plaintext view.
    #[error(transparent)]
    View(#[from] crate::view::ViewError),
    /// No Docker engine answers at the address.
    #[error(
        "cannot reach the Docker engine at `{host}`: {reason}; start it \
         (`sudo systemctl start docker`, or `sudo dockerd &`) or point \
         --docker-host / DOCKER_HOST at a running engine"
    )]
    EngineUnreachable {
        /// The address tried (`unix:///var/run/docker.sock`, `tcp://...`).
        host: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The socket exists but we may not use it.
    #[error(
        "permission denied on the Docker socket `{host}`; run as root, or add \
         your user to the `docker` group (`sudo usermod -aG docker $USER`, \
         then log in again)"
    )]
    SocketPermission {
        /// The socket address.
        host: String,
    },
    /// The runner image is not on this host.
    #[error(
        "image `{image}` is not on this host; run `docker login` (the DataOps \
         runner image is private), then `docker pull {image}`"
    )]
    ImageMissing {
        /// The image reference.
        image: String,
    },
    /// The engine answered with an error.
    #[error("cannot {action}: {source}")]
    Engine {
        /// What was being done ("create container `x`").
        action: String,
        /// The engine's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// No container of that name exists.
    #[error("no container named `{name}`; {hint}")]
    NoContainer {
        /// The container name.
        name: String,
        /// What to do ([`Error::no_container`] gives the plain one; the
        /// command line puts in the options it was given).
        hint: String,
    },
    /// A container of that name exists but runvault did not create it.
    #[error(
        "container `{name}` was not created by runvault (it has no \
         `io.runvault.managed=true` label); leaving it alone: remove it with \
         `docker rm -f {name}` or pass --recreate to replace it"
    )]
    ForeignContainer {
        /// The container name.
        name: String,
    },
    /// Our container exists but differs from what was asked for.
    #[error(
        "container `{name}` differs from the requested one ({differences}); \
         pass --recreate to replace it"
    )]
    ContainerDiffers {
        /// The container name.
        name: String,
        /// What differs, human-readable.
        differences: String,
    },
    /// The container stopped instead of staying up.
    #[error(
        "container `{name}` does not stay up (state `{state}`, last exit code {code}); \
         its last log lines:\n{tail}"
    )]
    NotRunning {
        /// The container name.
        name: String,
        /// The state the engine reports.
        state: String,
        /// The exit code it reports.
        code: i64,
        /// The end of its log.
        tail: String,
    },
    /// The one-shot `register` container exited non-zero.
    #[error(
        "`register` failed with exit code {code} (the token is masked in this log); \
         its last log lines:\n{tail}"
    )]
    RegisterFailed {
        /// The container's exit code.
        code: i64,
        /// The end of its log, token masked.
        tail: String,
    },
    /// `register` exited 0 but did not add the runner to config.toml.
    #[error(
        "`register` exited 0 but `{path}` has no runner named `{name}`; check the \
         image's log above"
    )]
    NotRegistered {
        /// The config file.
        path: PathBuf,
        /// The runner name.
        name: String,
    },
    /// config.toml is not valid TOML.
    #[error(
        "`{path}` is not valid TOML at line {line}, column {column}: {message}; the file was not changed"
    )]
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
    /// config.toml is valid TOML but not shaped like a runner config.
    #[error("`{path}`: {what}; the file was not changed")]
    BadShape {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// config.toml does not exist yet.
    #[error("`{path}` does not exist; {hint}")]
    NoConfig {
        /// The file.
        path: PathBuf,
        /// What to do ([`Error::no_config`] gives the plain one; the
        /// command line puts in the options it was given).
        hint: String,
    },
    /// config.toml has no `[[runners]]` (nobody registered a runner yet).
    #[error("`{path}`: there is no [[runners]] section; {hint}; the file was not changed")]
    NoRunners {
        /// The file.
        path: PathBuf,
        /// What to do (the command line puts in the options it was given).
        hint: String,
    },
    /// `--runner NAME` names no runner.
    #[error("`{path}` has no runner named `{name}` (runners: {known})")]
    NoSuchRunner {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The names present.
        known: String,
    },
    /// Something kept rewriting config.toml while we tried to edit it.
    #[error(
        "`{path}` changed {attempts} times while it was being edited (the runner \
         rewrites it when it renews its token); nothing was written, try again"
    )]
    ConcurrentChange {
        /// The file.
        path: PathBuf,
        /// How many attempts were made.
        attempts: u32,
    },
    /// `configure --check` found that a change is needed.
    #[error("`{path}` needs the changes shown above; run `{command}` to apply them")]
    CheckFailed {
        /// The file.
        path: PathBuf,
        /// The `runvault runner configure` command line that applies them.
        command: String,
    },
}

impl Error {
    /// [`Error::NoContainer`] with the plain hint.
    pub fn no_container(name: &str) -> Error {
        Error::NoContainer {
            name: name.to_string(),
            hint: format!("create it with `runvault runner start --name {name}`"),
        }
    }

    /// [`Error::NoConfig`] with the plain hint.
    pub fn no_config(path: PathBuf) -> Error {
        Error::NoConfig {
            path,
            hint: "register the runner first with `runvault runner register`".into(),
        }
    }
}

impl ExitStatus for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Fs(err) => err.exit_code(),
            Error::Lock(err) => err.exit_code(),
            Error::Vault(err) => err.exit_code(),
            Error::View(err) => err.exit_code(),
            Error::EngineUnreachable { .. } | Error::SocketPermission { .. } => {
                exit::ENGINE_UNREACHABLE
            }
            _ => exit::OTHER,
        }
    }
}
