//! `runvault doctor`: checks whether a runner host is set up safely and
//! prints one line per check (ok / warn / fail, with a hint), then a summary.
//!
//! - [`host`]: the secrets directory, the vault files and the key file.
//! - [`runner`]: the runner's `config.toml` and its container.
//! - [`views`]: the plaintext views in RAM.
//!
//! Checks never change anything and never print a secret.

pub mod host;
pub mod runner;
pub mod views;

use std::path::Path;

/// Every check id a [`Finding`] can carry, in report order. The ids are
/// stable: docs/troubleshooting.md explains each one (a test checks that it
/// lists all of these), and a finding with an id missing here panics in
/// debug builds, so the tests catch a new check that is not documented.
pub const CHECK_IDS: &[&str] = &[
    "doctor.user",
    "layout.file",
    "secrets.dir",
    "secrets.dir.owner",
    "secrets.dir.mode",
    "vault.file.owner",
    "vault.file.mode",
    "salt.file.owner",
    "salt.file.mode",
    "secrets.stray",
    "secrets.plaintext",
    "salt.strength",
    "vault.encrypted",
    "vault.replaced",
    "vault.verify",
    "vault.rollback",
    "vault.rotation",
    "keyfile.exists",
    "keyfile.owner",
    "keyfile.mode",
    "keyfile.location",
    "identity.exists",
    "identity.owner",
    "identity.mode",
    "identity.location",
    "fleet.managed",
    "views",
    "view.current",
    "view.ram",
    "view.mode",
    "view.owner",
    "runner.skipped",
    "config.owner",
    "config.mode",
    "config.parse",
    "config.concurrent",
    "config.check_interval",
    "config.secrets_mount",
    "config.key_mount",
    "config.bin_mount",
    "config.environment",
    "bin.dir.owner",
    "engine.reachable",
    "runner.container",
    "runner.running",
    "runner.restart_policy",
    "runner.binds",
    "runner.image",
];

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Not wrong, but worth a look.
    Warn,
    /// Unsafe or broken.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Stable id, e.g. `secrets.dir.mode` (documented in docs/troubleshooting).
    pub check: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found (names paths, never values).
    pub message: String,
    /// What to do about it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// `vault.rotation` only: the path, its age and its `--max-age` (in
    /// `--json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationAge>,
    /// The check could not be made: this user may not read what it looks
    /// at (see [`not_checked`]).
    #[serde(skip)]
    pub not_checked: bool,
}

impl Finding {
    /// A passing check.
    pub fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding::new(check, Status::Ok, message.into(), None)
    }

    /// A warning with a hint.
    pub fn warn(
        check: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Finding {
        Finding::new(check, Status::Warn, message.into(), Some(hint.into()))
    }

    /// A failure with a hint.
    pub fn fail(
        check: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Finding {
        Finding::new(check, Status::Fail, message.into(), Some(hint.into()))
    }

    fn new(check: &'static str, status: Status, message: String, hint: Option<String>) -> Finding {
        debug_assert!(
            CHECK_IDS.contains(&check),
            "doctor check id `{check}` is not in CHECK_IDS (add it, and document it in docs/troubleshooting.md)"
        );
        Finding {
            check,
            status,
            message,
            hint,
            rotation: None,
            not_checked: false,
        }
    }
}

/// The age of a credential with a rotation policy, as `doctor --json`
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotationAge {
    /// The path.
    pub path: String,
    /// Seconds since its current value was set (absent: it has none).
    pub age_seconds: Option<u64>,
    /// Its `--max-age`, in seconds.
    pub max_age_seconds: u64,
}

/// The finding of a check this user could not make: the path exists, or
/// may, but this user may not read or search it (doctor run by a user other
/// than root on a host laid out for root). A warning, never "missing", and
/// never a hint to create what may exist.
pub fn not_checked(check: &'static str, path: &Path) -> Finding {
    let uid = crate::core::harden::current_uid();
    let mut finding = Finding::warn(
        check,
        format!(
            "`{}` cannot be read by uid {uid} (permission denied): not checked",
            path.display()
        ),
        if uid == 0 {
            "see why root may not read it (a network filesystem that squashes root?)".to_owned()
        } else {
            "run `runvault doctor` as root to check it".to_owned()
        },
    );
    finding.not_checked = true;
    finding
}

/// `doctor.user`, the report's first line when doctor does not run as
/// root: that it does not, and which checks it could therefore not make.
/// None when running as root.
pub fn user_finding(findings: &[Finding]) -> Option<Finding> {
    let uid = crate::core::harden::current_uid();
    if uid == 0 {
        return None;
    }
    let mut skipped: Vec<&str> = Vec::new();
    for finding in findings.iter().filter(|f| f.not_checked) {
        if !skipped.contains(&finding.check) {
            skipped.push(finding.check);
        }
    }
    Some(if skipped.is_empty() {
        Finding::ok(
            "doctor.user",
            format!("not running as root (uid {uid}); every file checked could be read"),
        )
    } else {
        Finding::warn(
            "doctor.user",
            format!(
                "not running as root (uid {uid}): {} check(s) could not be made: {}",
                skipped.len(),
                skipped.join(", ")
            ),
            "run `runvault doctor` as root (with the same options) to make them",
        )
    })
}

/// Whether any finding failed.
pub fn any_failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.status == Status::Fail)
}

/// How many findings have `status`.
pub fn count(findings: &[Finding], status: Status) -> usize {
    findings.iter().filter(|f| f.status == status).count()
}

/// The summary line of the human report: `N ok, N warn, N fail`.
pub fn summary(findings: &[Finding]) -> String {
    format!(
        "{} ok, {} warn, {} fail",
        count(findings, Status::Ok),
        count(findings, Status::Warn),
        count(findings, Status::Fail)
    )
}

/// The JSON report: `{"findings": [...], "ok": N, "warn": N, "fail": N}`.
pub fn render_json(findings: &[Finding]) -> String {
    let report = serde_json::json!({
        "findings": findings,
        "ok": count(findings, Status::Ok),
        "warn": count(findings, Status::Warn),
        "fail": count(findings, Status::Fail),
    });
    format!("{report}\n")
}
