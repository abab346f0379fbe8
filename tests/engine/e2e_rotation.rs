//! End to end, against a real Docker engine: rotate a credential while a
//! pipeline job keeps reading it, with no restart of anything.
//!
//! On a temp host layout, `runvault runner install` (fixture runner image,
//! the static runvault as `--binary`) wires the runner; a long-running
//! busybox "job" container is started with exactly the volumes and
//! environment config.toml lists, and loops `runvault exec -- sh -c 'echo
//! "$PW"'` with `PW=DATAOPS_VAULT(SNOWFLAKE.TRANSFORM.PASSWORD)`, logging
//! each value with a timestamp (`/proc/uptime`, the same clock as the
//! host's). The host rotates the password with `set` and once with `rekey
//! --new-salt`. The job must see each new value within a second, never
//! fail, never print a value that was not set, and neither the job nor the
//! runner container may restart; config.toml is not touched. The same job
//! with a single-file mount of the vault keeps seeing the old value, and
//! `doctor` flags a config.toml with such a mount.
//!
//! Runs under `CI=true` (`.ci/run` starts dockerd); elsewhere it is skipped
//! with a message when no engine answers. The static binary is built once
//! per target directory (shared with `tests/engine/jobs_static.rs`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::images::{BUSYBOX_IMAGE, busybox_image, output, static_binary};
use crate::support::runner::{IMAGE, inspect, uptime};
use crate::support::{CHEAP_KDF, Host, Runs};

const TOKEN: &str = "GR1348941Fixture-E2E-Token-90ab";
const SECRET_PATH: &str = "SNOWFLAKE.TRANSFORM.PASSWORD";
/// How soon a job must see a rotated value.
const WITHIN: f64 = 1.0;

/// The job's loop: resolve `PW` through the mounted runvault, then log
/// `UPTIME ok VALUE` or `UPTIME err MESSAGE`.
pub(super) fn job_script(bin_dir: &str) -> String {
    format!(
        "while :; do\n\
         if v=$({bin_dir}/runvault exec -- sh -c 'echo \"$PW\"' 2>&1); then s=ok; else s=err; fi\n\
         read up rest < /proc/uptime\n\
         echo \"$up $s $v\"\n\
         done"
    )
}

/// The `volumes` and `environment` config.toml lists for runner `name`,
/// read with a TOML parser of its own (not runvault's).
fn listed_wiring(config: &Path, name: &str) -> (Vec<String>, Vec<String>) {
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(config).unwrap().parse().unwrap();
    let runner = doc["runners"]
        .as_array_of_tables()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str() == Some(name))
        .expect("the installed runner");
    let strings = |item: &toml_edit::Item| -> Vec<String> {
        item.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    (
        strings(&runner["docker"]["volumes"]),
        strings(&runner["environment"]),
    )
}

/// Starts a job container the way the runner would: the job image with
/// the given volumes and environment, plus the job's own variable `PW`.
pub(super) fn start_job(name: &str, volumes: &[String], environment: &[String], bin_dir: &str) {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "-d", "--rm", "--network", "none", "--name", name]);
    for volume in volumes {
        cmd.args(["-v", volume]);
    }
    for entry in environment {
        cmd.args(["-e", entry]);
    }
    cmd.args(["-e", &format!("PW=DATAOPS_VAULT({SECRET_PATH})")])
        .args([BUSYBOX_IMAGE, "sh", "-c", &job_script(bin_dir)]);
    output(&mut cmd);
}

/// One line of a job's log.
#[derive(Debug)]
pub(super) struct Read {
    pub(super) at: f64,
    pub(super) ok: bool,
    pub(super) value: String,
}

pub(super) fn reads(container: &str) -> Vec<Read> {
    let logs = output(Command::new("docker").args(["logs", container]));
    assert!(
        logs.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    String::from_utf8(logs.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let at = parts.next().and_then(|t| t.parse().ok());
            let status = parts.next();
            let value = parts.next().unwrap_or_default().to_string();
            match (at, status) {
                (Some(at), Some("ok" | "err")) => Read {
                    at,
                    ok: status == Some("ok"),
                    value,
                },
                // A continuation line of a multi-line error message.
                _ => Read {
                    at: f64::NAN,
                    ok: false,
                    value: line.to_string(),
                },
            }
        })
        .collect()
}

/// Waits until a job has printed `value` (the job is up and reading).
pub(super) fn wait_for(container: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reads(container).iter().any(|r| r.ok && r.value == value) {
        assert!(
            Instant::now() < deadline,
            "{container} never printed the value; its log:\n{:?}",
            reads(container)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `StartedAt` and `RestartCount` of a container.
fn started(container: &str) -> (String, i64) {
    let details = inspect(container);
    (
        details["State"]["StartedAt"].as_str().unwrap().to_string(),
        details["RestartCount"].as_i64().unwrap(),
    )
}

#[test]
fn rotation_reaches_running_jobs_without_restarts_and_single_file_mounts_do_not() {
    if !crate::support::runner::engine("e2e_rotation") {
        return;
    }
    let binary = static_binary();
    busybox_image();
    let began = Instant::now();

    // 1. A clean host layout under a temp root, installed by runvault.
    let mut host = Host::alone();
    let runner = host.container("e2e");
    let job = host.container("e2e-job");
    let pinned_job = host.container("e2e-pinned");
    let pass_file = host.private_file("passphrase", "e2e admin passphrase\n");
    let pass = pass_file.to_str().unwrap();
    let mut install = vec![
        "--image",
        IMAGE,
        "--binary",
        binary.to_str().unwrap(),
        "--passphrase-file",
        pass,
        // They would bind /app and /agent_cache of the real host.
        "--no-local-config",
        "--no-agent-cache",
    ];
    install.extend(CHEAP_KDF);
    host.runner("install", &runner, &install)
        .env("REGISTRATION_TOKEN", TOKEN)
        .ok();
    let value_file = host.path("value");
    let set = |value: &str| -> (f64, f64) {
        std::fs::write(&value_file, value).unwrap();
        let before = uptime();
        host.vault(&[
            "set",
            SECRET_PATH,
            "--from-file",
            value_file.to_str().unwrap(),
        ])
        .ok();
        (before, uptime())
    };
    let mut values = vec!["initial-Pw-0".to_string()];
    set(&values[0]);

    // 2. The pipeline job, wired exactly as config.toml lists.
    let config_before = std::fs::read(host.config_toml()).unwrap();
    let (volumes, environment) = listed_wiring(&host.config_toml(), &runner);
    assert_eq!(volumes.len(), 4, "{volumes:?}");
    let bin_dir = volumes
        .iter()
        .map(|v| v.split(':').collect::<Vec<_>>())
        .find(|parts| parts[0] == host.bin_dir().to_str().unwrap())
        .map(|parts| parts[1].to_string())
        .expect("config.toml mounts the binary directory");
    start_job(&job, &volumes, &environment, &bin_dir);
    // The same job with the vault's files mounted one by one.
    let secrets_volume = volumes
        .iter()
        .find(|v| v.split(':').nth(1) == Some("/secrets"))
        .expect("config.toml mounts the secrets directory")
        .clone();
    let secrets_source = secrets_volume.split(':').next().unwrap().to_string();
    let pinned_volumes: Vec<String> = volumes
        .iter()
        .filter(|v| **v != secrets_volume)
        .cloned()
        .chain(["vault.yml", "vault.salt"].map(|f| format!("{secrets_source}/{f}:/secrets/{f}:ro")))
        .collect();
    start_job(&pinned_job, &pinned_volumes, &environment, &bin_dir);
    wait_for(&job, &values[0]);
    wait_for(&pinned_job, &values[0]);
    let job_started = started(&job);
    let runner_started = started(&runner);
    assert_eq!(runner_started.1, 0);

    // 3. Rotate while the job loops: `set` four times, a `rekey
    // --new-salt`, then `set` again under the new salt.
    let mut rotations = Vec::new();
    for i in 1..=4 {
        values.push(format!("rotated-Pw-{i}"));
        rotations.push((values.len() - 1, set(&values[i])));
        std::thread::sleep(Duration::from_millis(1200));
    }
    let salt = || std::fs::read(host.dir().join("vault.salt")).unwrap();
    let salt_before = salt();
    let rekey_before = uptime();
    host.vault(&["rekey", "--new-salt", "--passphrase-file", pass])
        .ok();
    let rekey_after = uptime();
    assert_ne!(salt(), salt_before, "rekey --new-salt replaced vault.salt");
    std::thread::sleep(Duration::from_millis(1200));
    values.push("after-rekey-Pw-5".into());
    rotations.push((values.len() - 1, set(&values[5])));
    std::thread::sleep(Duration::from_millis(1200));

    // 4. What the job saw.
    let seen = reads(&job);
    let failures: Vec<&Read> = seen
        .iter()
        .filter(|r| !r.ok || !values.contains(&r.value))
        .collect();
    assert!(failures.is_empty(), "failed or unknown reads: {failures:?}");
    assert!(seen.len() > 50, "the job read only {} times", seen.len());
    let index_of = |value: &str| values.iter().position(|v| v == value).unwrap();
    for pair in seen.windows(2) {
        assert!(
            index_of(&pair[1].value) >= index_of(&pair[0].value),
            "an older value came back: {pair:?}"
        );
    }
    let mut latencies = Vec::new();
    for (index, (before, after)) in &rotations {
        let first = seen
            .iter()
            .find(|r| r.value == values[*index])
            .unwrap_or_else(|| panic!("the job never saw rotation {index}"));
        assert!(
            first.at >= before - 0.02,
            "rotation {index} seen at {} before it was set at {before}",
            first.at
        );
        assert!(
            first.at <= after + WITHIN,
            "rotation {index} set by {after} but first seen at {}",
            first.at
        );
        latencies.push(format!("{:.0} ms", (first.at - after).max(0.0) * 1000.0));
    }
    eprintln!(
        "the job read {} times ({} while the salt changed); each rotation was first seen \
         at most this long after `set` returned: {}",
        seen.len(),
        seen.iter()
            .filter(|r| r.at >= rekey_before && r.at <= rekey_after)
            .count(),
        latencies.join(", ")
    );
    let during_rekey = seen
        .iter()
        .filter(|r| r.at >= rekey_before && r.at <= rekey_after + WITHIN)
        .count();
    assert!(during_rekey > 0, "no read while the salt changed");
    let last = seen.last().unwrap();
    assert_eq!(last.value, values[5]);

    // No restarts, and config.toml untouched by the rotation.
    assert_eq!(started(&job), job_started, "the job container restarted");
    assert_eq!(started(&runner), runner_started, "the runner restarted");
    assert_eq!(job_started.1, 0);
    assert_eq!(std::fs::read(host.config_toml()).unwrap(), config_before);

    // 5. The single-file mount pinned the first vault: never a new value.
    let pinned = reads(&pinned_job);
    assert!(
        pinned.iter().filter(|r| r.at > rotations[4].1.1).count() > 0,
        "the pinned job stopped reading"
    );
    for read in &pinned {
        assert!(
            read.ok && read.value == values[0],
            "pinned job read {read:?}"
        );
    }

    // ...which is why doctor fails a config.toml with such a mount.
    let pinned_config = host.path("pinned-config");
    std::fs::create_dir(&pinned_config).unwrap();
    let text = String::from_utf8(config_before).unwrap().replace(
        &format!("\"{secrets_volume}\""),
        &format!("\"{secrets_source}/vault.yml:/secrets/vault.yml:ro\""),
    );
    std::fs::write(pinned_config.join("config.toml"), text).unwrap();
    // A copy as `runner configure` leaves it: 0600, so that only the mount
    // is wrong.
    std::fs::set_permissions(
        pinned_config.join("config.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let done = host
        .vault(&[
            "doctor",
            "--json",
            "--bin-dir",
            host.bin_dir().to_str().unwrap(),
            "--name",
            &runner,
            "--config-dir",
            pinned_config.to_str().unwrap(),
            "--image",
            IMAGE,
        ])
        .fails(1);
    let report: serde_json::Value = serde_json::from_str(&done.out()).unwrap();
    // (The running runner binds the real config directory, not this copy,
    // so only the config.toml checks are of interest here.)
    let failed: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "fail")
        .map(|f| f["check"].as_str().unwrap())
        .filter(|check| check.starts_with("config."))
        .collect();
    assert_eq!(failed, ["config.secrets_mount"], "{report}");

    let elapsed = began.elapsed();
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}
