//! `runner install`: the whole manual procedure as one idempotent command.
//! Create (or adopt) the vault if needed, register if not registered,
//! configure, start; each step reports whether it changed anything, so a
//! second run says that nothing changed.

use std::fmt;

use crate::runner::config::{self, Settings};
use crate::runner::container::{self, Spec, StartOutcome};
use crate::runner::engine::Engine;
use crate::runner::error::Error;
use crate::runner::register::{self, Request, Token};
use crate::vault::{Credential, InitOutcome, VaultDir, VaultError};

/// One finished step, reported as it completes.
pub enum Step {
    /// The vault step.
    Vault(InitOutcome),
    /// The register step: the register log when it ran, `None` when the
    /// runner was already registered.
    Register(Option<String>),
    /// The configure step.
    Configure(config::Report),
    /// The start step.
    Start(StartOutcome),
}

impl Step {
    /// Whether this step changed anything.
    pub fn changed(&self) -> bool {
        match self {
            Step::Vault(outcome) => *outcome != InitOutcome::AlreadyEncrypted,
            Step::Register(log) => log.is_some(),
            Step::Configure(report) => !report.changes.is_empty(),
            Step::Start(outcome) => *outcome != StartOutcome::AlreadyRunning,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Vault(InitOutcome::AlreadyEncrypted) => {
                write!(f, "vault: already encrypted; unchanged")
            }
            Step::Vault(InitOutcome::Created { .. }) => write!(f, "vault: created"),
            Step::Vault(InitOutcome::Adopted { values, .. }) => {
                write!(
                    f,
                    "vault: adopted the plaintext vault ({values} value(s) encrypted)"
                )
            }
            Step::Register(None) => write!(f, "register: already registered; unchanged"),
            Step::Register(Some(_)) => write!(f, "register: registered"),
            Step::Configure(report) if report.changes.is_empty() => {
                write!(f, "configure: unchanged")
            }
            Step::Configure(report) => {
                write!(f, "configure: {} change(s)", report.changes.len())?;
                for change in &report.changes {
                    write!(f, "\n  {change}")?;
                }
                Ok(())
            }
            Step::Start(outcome) => write!(f, "start: container {}", start_message(*outcome)),
        }
    }
}

/// How `start` reports its outcome.
pub fn start_message(outcome: StartOutcome) -> &'static str {
    match outcome {
        StartOutcome::Created => "created and started",
        StartOutcome::Started => "started",
        StartOutcome::AlreadyRunning => "already running; unchanged",
        StartOutcome::Recreated => "replaced and started",
    }
}

/// Everything `install` needs besides the engine.
pub struct Install<'a> {
    /// The vault directory.
    pub vault: &'a VaultDir,
    /// Versions kept per path when the vault is created.
    pub keep: u32,
    /// The registration.
    pub register: &'a Request,
    /// The config.toml settings.
    pub settings: &'a Settings,
    /// The container.
    pub spec: &'a Spec,
}

/// Runs the steps in order, handing each to `report` as it finishes.
/// Credentials and the token are asked for only if they are needed.
/// Returns whether anything changed.
pub async fn install(
    engine: &Engine,
    plan: Install<'_>,
    credentials: impl FnOnce() -> Result<Vec<Credential>, VaultError>,
    token: impl FnOnce() -> Result<Token, Error>,
    report: &mut dyn FnMut(&Step),
) -> Result<bool, Error> {
    let mut changed = false;
    let mut done = |step: Step| {
        changed |= step.changed();
        report(&step);
    };
    done(Step::Vault(plan.vault.init(plan.keep, credentials)?));
    let config_path = plan.register.config_path();
    if register::is_registered(&config_path, &plan.register.name)? {
        done(Step::Register(None));
    } else {
        let registered = register::register(engine, plan.register, &token()?).await?;
        done(Step::Register(Some(registered.log)));
    }
    done(Step::Configure(config::apply(
        &config_path,
        plan.settings,
        false,
    )?));
    done(Step::Start(
        container::start(engine, plan.spec, false).await?,
    ));
    Ok(changed)
}
