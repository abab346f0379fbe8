//! A fleet host against a real Docker engine (issue 21, docs/fleet.md):
//! the host receives its vault sealed to its identity, `runner install
//! --identity` wires the identity's directory and `RUNVAULT_IDENTITY` into
//! the runner instead of a key file, a job container started with exactly
//! that wiring reads a value through the static runvault, a rotation pushed
//! by `receive` reaches the next job, and `doctor --name` checks the wiring.
//! Without an engine it says it is skipped, except under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::images::{BUSYBOX_IMAGE, busybox_image, output, static_binary};
use crate::support::runner::IMAGE;
use crate::support::{CHEAP_KDF, Host, Runs};

const TOKEN: &str = "GR1348941Fixture-Fleet-Token-4c1d";

/// The `volumes` and `environment` config.toml lists for runner `name`,
/// read with a TOML parser of its own.
pub(super) fn listed_wiring(config: &Path, name: &str) -> (Vec<String>, Vec<String>) {
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(config).unwrap().parse().unwrap();
    let runner = (doc["runners"].as_array_of_tables().unwrap().iter())
        .find(|r| r["name"].as_str() == Some(name))
        .expect("the installed runner");
    let strings = |item: &toml_edit::Item| -> Vec<String> {
        (item.as_array().unwrap().iter())
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    (
        strings(&runner["docker"]["volumes"]),
        strings(&runner["environment"]),
    )
}

/// Runs one job the way the runner would (its volumes and environment)
/// and returns what it printed: `PW` resolved by the mounted runvault.
fn run_job(volumes: &[String], environment: &[String], bin_dir: &str) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", "none"]);
    for volume in volumes {
        cmd.args(["-v", volume]);
    }
    for entry in environment {
        cmd.args(["-e", entry]);
    }
    cmd.args(["-e", "PW=DATAOPS_VAULT(SNOWFLAKE.PASSWORD)"])
        .args([
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            &format!("{bin_dir}/runvault exec -- sh -c 'echo \"$PW\"'"),
        ]);
    let out = output(&mut cmd);
    assert!(out.status.success(), "the job failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Ships the admin's `vault.yml` and `vault.salt` to the host's staging
/// directory and receives them there with the identity.
fn ship_and_receive(admin: &Host, host: &Host, identity: &Path) {
    let staging = host.path("staging");
    std::fs::create_dir_all(&staging).unwrap();
    for name in ["vault.yml", "vault.salt"] {
        std::fs::copy(admin.dir().join(name), staging.join(name)).unwrap();
    }
    host.command()
        .arg("--identity")
        .arg(identity)
        .arg("receive")
        .arg(&staging)
        .ok();
}

#[test]
fn a_fleet_hosts_runner_opens_the_vault_with_its_identity() {
    if !crate::support::runner::engine("fleet_engine") {
        return;
    }
    let binary = static_binary();
    busybox_image();

    // The admin's source vault, with a recipient slot for the host.
    let admin = Host::new();
    admin.init();
    admin.set("SNOWFLAKE.PASSWORD", b"fleet-pw-1");
    let mut host = Host::new();
    let identity: PathBuf = host.path("identity/host.key");
    let recipient = host
        .bare_command()
        .arg("keygen")
        .arg("--identity")
        .arg(&identity)
        .ok()
        .out();
    admin
        .run(&["key", "add", "recipient", recipient.trim_end()])
        .ok();
    ship_and_receive(&admin, &host, &identity);

    // `runner install --identity`: no key file, no vault made.
    let runner = host.container("fleet");
    let mut install = vec![
        "--identity",
        identity.to_str().unwrap(),
        "--image",
        IMAGE,
        "--binary",
        binary.to_str().unwrap(),
        "--no-local-config",
        "--no-agent-cache",
    ];
    install.extend(CHEAP_KDF);
    let done = host
        .runner("install", &runner, &install)
        .env("REGISTRATION_TOKEN", TOKEN)
        .ok();
    assert!(
        done.stderr.starts_with(&format!(
            "identity: `{}` opens the vault through its recipient slot; unchanged\n",
            identity.display()
        )),
        "{}",
        done.stderr
    );
    assert!(!host.key_file().exists(), "no key file on a fleet host");
    let (volumes, environment) = listed_wiring(&host.config_toml(), &runner);
    let ids = host.path("identity").display().to_string();
    assert!(volumes.contains(&format!("{ids}:{ids}:ro")), "{volumes:?}");
    assert_eq!(
        environment,
        [
            "RUNVAULT_DIR=/secrets".to_string(),
            format!("RUNVAULT_IDENTITY={}", identity.display())
        ]
    );
    let bin_dir = host.bin_dir().display().to_string();
    assert_eq!(run_job(&volumes, &environment, &bin_dir), "fleet-pw-1\n");

    // A rotation at the source, pushed and received: the next job reads it.
    admin.set("SNOWFLAKE.PASSWORD", b"fleet-pw-2");
    ship_and_receive(&admin, &host, &identity);
    assert_eq!(run_job(&volumes, &environment, &bin_dir), "fleet-pw-2\n");

    // doctor checks the identity wiring of the runner.
    let doctor = host
        .bare_command()
        .arg("--dir")
        .arg(host.dir())
        .arg("--identity")
        .arg(&identity)
        .args(["doctor", "--json", "--name", &runner, "--config-dir"])
        .arg(host.config_dir())
        .arg("--bin-dir")
        .arg(host.bin_dir())
        .run();
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    for check in [
        "identity.mode",
        "identity.location",
        "config.key_mount",
        "config.environment",
        "vault.verify",
    ] {
        assert_eq!(
            crate::support::status_of(&report, check),
            "ok",
            "{check}: {report}"
        );
    }
    assert_eq!(crate::support::status_of(&report, "fleet.managed"), "ok");
}
