//! Runner checks: the runner's `config.toml` (parses, global keys, the
//! read-only directory mounts and environment jobs need) and the Docker
//! engine (reachable, the runner container as `runner start` creates it).
//!
//! A single-file mount of the vault is the failure this module exists to
//! catch: it pins the inode, so a job never sees a rotated vault.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::core::fs::{self, Limit};
use crate::doctor::Finding;
use crate::doctor::host::owner_check;
use crate::runner::Target;
use crate::runner::config::{self, JobWiring, JobsMode, Overview};
use crate::runner::container::{self, Spec};
use crate::runner::engine::Engine;
use crate::runner::error::Error;
use crate::runner::volumes::{DirMount, MountProblem, mount_problems};

/// The check id of each job directory's mount, in [`JobWiring::dir_mounts`] order.
const MOUNT_CHECKS: [&str; 3] = [
    "config.secrets_mount",
    "config.key_mount",
    "config.bin_mount",
];

/// The `runvault runner` command lines doctor's hints name, with the
/// options doctor was given that they need (the command line builds them,
/// so that a hint can be pasted as it is).
#[derive(Debug, Clone)]
pub struct Commands {
    /// `runvault runner configure ...`: fixes anything `configure` owns.
    pub configure: String,
    /// `runvault runner start ...`.
    pub start: String,
    /// `runvault runner install ...`: registers the runner and puts the
    /// binary in place, with the job wiring's options too.
    pub install: String,
}

/// The hint that fixes anything `configure` owns.
fn configure_hint(commands: &Commands) -> String {
    format!("run `{}`", commands.configure)
}

/// Checks `config.toml` of `target` against the wiring jobs need.
pub fn check_config(target: &Target, wiring: &JobWiring, commands: &Commands) -> Vec<Finding> {
    let path = target.config_path();
    let mut findings = access_findings(&path, commands);
    let overview = match read_overview(&path, commands) {
        Ok(overview) => overview,
        Err(finding) => {
            findings.push(finding);
            return findings;
        }
    };
    if overview.runners.is_empty() {
        findings.push(Finding::fail(
            "config.parse",
            format!("`{}` has no [[runners]]", path.display()),
            format!("register the runner: `{}`", commands.install),
        ));
        return findings;
    }
    findings.push(Finding::ok(
        "config.parse",
        format!(
            "`{}` parses; runners: {}",
            path.display(),
            overview
                .runners
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));
    for (check, value) in [
        ("config.concurrent", overview.concurrent),
        ("config.check_interval", overview.check_interval),
    ] {
        let key = check.trim_start_matches("config.");
        findings.push(match value {
            Some(n) if n >= 1 => Finding::ok(check, format!("`{key}` is {n}")),
            Some(n) => Finding::fail(check, format!("`{key}` is {n}"), configure_hint(commands)),
            None => Finding::fail(
                check,
                format!("`{key}` is not set"),
                configure_hint(commands),
            ),
        });
    }
    for runner in &overview.runners {
        for (check, mount) in MOUNT_CHECKS.into_iter().zip(wiring.dir_mounts()) {
            findings.push(mount_finding(
                check,
                &runner.name,
                &mount,
                &runner.volumes,
                commands,
            ));
        }
        findings.push(environment_finding(
            &runner.name,
            &runner.environment,
            wiring,
            commands,
        ));
    }
    findings
}

/// `config.owner` and `config.mode`: the file holds the runners' tokens, so
/// it must be root's and unreadable by group and others. Nothing when it
/// does not exist (`config.parse` says so).
fn access_findings(path: &Path, commands: &Commands) -> Vec<Finding> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Vec::new();
    };
    let mode = meta.mode() & 0o7777;
    let mode_finding = if mode & 0o077 == 0 {
        Finding::ok(
            "config.mode",
            format!("`{}` is mode {mode:04o}", path.display()),
        )
    } else {
        Finding::fail(
            "config.mode",
            format!(
                "`{}` is mode {mode:04o}: group or others can read the runners' tokens",
                path.display()
            ),
            format!(
                "run `chmod 600 {}` (or {}, which tightens it)",
                path.display(),
                configure_hint(commands).trim_start_matches("run ")
            ),
        )
    };
    vec![owner_check("config.owner", path, meta.uid()), mode_finding]
}

/// `bin.dir.owner`: with the encrypted wiring, jobs run the binary in
/// `wiring.bin_dir`; whoever owns that directory could swap it.
pub fn check_bin_dir(wiring: &JobWiring, commands: &Commands) -> Vec<Finding> {
    if wiring.mode != JobsMode::Encrypted {
        return Vec::new();
    }
    let dir = &wiring.bin_dir;
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => vec![owner_check("bin.dir.owner", dir, meta.uid())],
        Err(err) => vec![Finding::fail(
            "bin.dir.owner",
            format!("`{}` cannot be read: {err}", dir.display()),
            format!(
                "put the binary there with `{}` (or pass --bin-dir)",
                commands.install
            ),
        )],
    }
}

/// Reads and parses `config.toml`, or the failed `config.parse` finding.
fn read_overview(path: &Path, commands: &Commands) -> Result<Overview, Finding> {
    let fail = |message: String, hint: &str| Finding::fail("config.parse", message, hint);
    let bytes = match fs::read_optional(path, Limit::any("config file")) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(fail(
                format!("`{}` does not exist", path.display()),
                &format!(
                    "register the runner with `{}` (or pass --config-dir)",
                    commands.install
                ),
            ));
        }
        Err(err) => return Err(fail(err.to_string(), "fix the file's permissions")),
    };
    let text = String::from_utf8_lossy(&bytes);
    config::overview(&text, path).map_err(|err| match err {
        Error::InvalidToml {
            line,
            column,
            message,
            ..
        } => fail(
            format!(
                "`{}` is not valid TOML at line {line}, column {column}: {message}",
                path.display()
            ),
            "fix the syntax; the runner keeps its last good configuration meanwhile",
        ),
        other => fail(other.to_string(), "fix the file's shape"),
    })
}

fn mount_finding(
    check: &'static str,
    runner: &str,
    mount: &DirMount,
    volumes: &[String],
    commands: &Commands,
) -> Finding {
    let problems = mount_problems(volumes, mount);
    if problems.is_empty() {
        return Finding::ok(
            check,
            format!(
                "runner `{runner}` mounts {} read-only: `{}`",
                mount.what,
                mount.volume()
            ),
        );
    }
    let described: Vec<String> = problems
        .iter()
        .map(|problem| match problem {
            MountProblem::Missing => format!("does not mount {} `{}`", mount.what, mount.source),
            MountProblem::Writable(v) => format!("mounts {} writable: `{v}`", mount.what),
            MountProblem::SingleFile(v) => format!(
                "mounts a single file of {}: `{v}` (a single-file mount pins the inode, \
                 so a replaced file, such as a rotated vault, is never seen)",
                mount.what
            ),
            MountProblem::Misplaced(v) => {
                format!("mounts {} again or elsewhere: `{v}`", mount.what)
            }
        })
        .collect();
    Finding::fail(
        check,
        format!("runner `{runner}` {}", described.join("; ")),
        format!(
            "{}: it mounts `{}` and replaces the others",
            configure_hint(commands),
            mount.volume()
        ),
    )
}

fn environment_finding(
    runner: &str,
    environment: &[String],
    wiring: &JobWiring,
    commands: &Commands,
) -> Finding {
    let wanted: Vec<String> = wiring
        .environment()
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|entry| !environment.contains(entry))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Finding::ok(
            "config.environment",
            format!("runner `{runner}` sets {}", wanted.join(" ")),
        )
    } else {
        Finding::warn(
            "config.environment",
            format!(
                "runner `{runner}` does not set {}: jobs must set it themselves",
                missing.join(" ")
            ),
            configure_hint(commands),
        )
    }
}

/// Checks the engine and the runner container.
pub async fn check_engine(target: &Target, commands: &Commands) -> Vec<Finding> {
    let engine = match Engine::connect(target.docker_host.as_deref()).await {
        Ok(engine) => engine,
        Err(err) => {
            return vec![Finding::fail(
                "engine.reachable",
                err.to_string(),
                "the message says what to do",
            )];
        }
    };
    let mut findings = vec![match engine.call("GET /version", "").version().await {
        Ok(version) => Finding::ok(
            "engine.reachable",
            format!(
                "Docker {} (API {}) at `{}`",
                version.version.unwrap_or_default(),
                version.api_version.unwrap_or_default(),
                engine.host()
            ),
        ),
        Err(err) => {
            return vec![Finding::fail(
                "engine.reachable",
                engine.error("ask the engine its version", err).to_string(),
                "check the engine's log",
            )];
        }
    }];
    let name = &target.name;
    let details = match container::inspect(&engine, name).await {
        Ok(Some(details)) => details,
        Ok(None) => {
            findings.push(Finding::fail(
                "runner.container",
                format!("no container named `{name}`"),
                format!("run `{}`", commands.start),
            ));
            return findings;
        }
        Err(err) => {
            findings.push(Finding::fail(
                "runner.container",
                err.to_string(),
                "check the engine's log",
            ));
            return findings;
        }
    };
    let recreate = format!("run `{} --recreate`", commands.start);
    findings.push(if container::is_managed(&details) {
        Finding::ok(
            "runner.container",
            format!("container `{name}` exists, created by runvault"),
        )
    } else {
        Finding::warn(
            "runner.container",
            format!("container `{name}` exists but was not created by runvault"),
            recreate.clone(),
        )
    });
    let state = details.state.clone().unwrap_or_default();
    findings.push(if state.running == Some(true) {
        Finding::ok(
            "runner.running",
            format!(
                "running since {}, restarted {} time(s)",
                state.started_at.unwrap_or_default(),
                details.restart_count.unwrap_or_default()
            ),
        )
    } else {
        Finding::fail(
            "runner.running",
            format!(
                "container `{name}` is {} (last exit code {})",
                state.status.map(|s| s.to_string()).unwrap_or_default(),
                state.exit_code.unwrap_or_default()
            ),
            format!("run `{}`", commands.start),
        )
    });
    let host_config = details.host_config.clone().unwrap_or_default();
    let policy = host_config
        .restart_policy
        .and_then(|p| p.name)
        .map(|n| n.to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "no".into());
    findings.push(if policy == "always" {
        Finding::ok("runner.restart_policy", "restart policy `always`")
    } else {
        Finding::fail(
            "runner.restart_policy",
            format!("restart policy `{policy}`: the runner stays down after a crash or reboot"),
            recreate.clone(),
        )
    });
    let spec = Spec {
        name: name.clone(),
        image: target.image.clone(),
        config_dir: target.config_dir.clone(),
        debug: false,
    };
    // A bind counts whatever its options (`:ro`, `:z`): compare source:target.
    let without_options = |bind: &str| bind.splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
    let have: Vec<String> = host_config
        .binds
        .unwrap_or_default()
        .iter()
        .map(|b| without_options(b))
        .collect();
    let missing: Vec<String> = spec
        .binds()
        .into_iter()
        .filter(|bind| !have.contains(bind))
        .collect();
    findings.push(if missing.is_empty() {
        Finding::ok("runner.binds", format!("binds {}", spec.binds().join(" ")))
    } else {
        Finding::fail(
            "runner.binds",
            format!("container `{name}` lacks the bind(s) {}", missing.join(" ")),
            recreate.clone(),
        )
    });
    let image = details
        .config
        .as_ref()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    findings.push(if image == target.image {
        Finding::ok("runner.image", format!("runs `{image}`"))
    } else {
        Finding::fail(
            "runner.image",
            format!("runs `{image}`, not `{}`", target.image),
            recreate,
        )
    });
    findings
}
