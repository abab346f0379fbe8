//! Unmodified DataOps jobs, against a real Docker engine: a job image that
//! reads `/secrets/vault.yml` as plaintext keeps working while the admin
//! rotates credentials, through a plaintext view in RAM that `runner
//! install --jobs plaintext-view` wires in place of the encrypted vault.
//!
//! Runs under `CI=true` (`.ci/run` starts dockerd, CI runs as root for the
//! tmpfs); elsewhere it is skipped with a message.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::images::{BUSYBOX_IMAGE, busybox_image, output};
use crate::support::runner::{IMAGE, inspect, uptime};
use crate::support::{CHEAP_KDF, Host, Runs, Tmpfs, require_root};

const TOKEN: &str = "GR1348941Fixture-View-Token-77cd";
const WITHIN: f64 = 1.0;

/// One `cat /secrets/vault.yml` of the job: when, and what it printed.
#[derive(Debug)]
struct Read {
    at: f64,
    text: String,
}

fn reads(container: &str) -> Vec<Read> {
    let logs = output(Command::new("docker").args(["logs", container]));
    let text = String::from_utf8(logs.stdout).unwrap();
    text.split("@@ ")
        .filter(|chunk| !chunk.is_empty())
        .filter_map(|chunk| {
            let (at, rest) = chunk.split_once('\n')?;
            // Only reads that ran to their end marker (the last may be cut).
            let body = rest.strip_suffix("## end\n")?;
            Some(Read {
                at: at.trim().parse().ok()?,
                text: body.to_string(),
            })
        })
        .collect()
}

fn password_in(read: &Read) -> String {
    let doc: serde_yaml::Value = serde_yaml::from_str(&read.text)
        .unwrap_or_else(|err| panic!("a read did not parse as YAML ({err}): {read:?}"));
    doc["SNOWFLAKE"]["TRANSFORM"]["PASSWORD"]
        .as_str()
        .unwrap_or_else(|| panic!("no password in {read:?}"))
        .to_string()
}

#[test]
fn unmodified_jobs_read_the_plaintext_view_while_credentials_rotate() {
    if !crate::support::runner::engine("view_e2e") {
        return;
    }
    if !require_root("view_e2e") {
        return;
    }
    busybox_image();
    let mut host = Host::alone();
    let runner = host.container("view");
    let job = host.container("view-job");
    let _ram = Tmpfs::mount(&host.path("run"), "size=8m");
    let view = host.path("run/view");
    let views_file = host.path("views");
    let views = views_file.to_str().unwrap().to_string();
    let pass_file = host.private_file("passphrase", "view admin passphrase\n");
    let pass = pass_file.to_str().unwrap();
    let mut install = vec![
        "--image",
        IMAGE,
        "--binary",
        env!("CARGO_BIN_EXE_runvault"),
        "--passphrase-file",
        pass,
        "--no-local-config",
        "--no-agent-cache",
        "--jobs",
        "plaintext-view",
        "--view",
        view.to_str().unwrap(),
    ];
    install.extend(CHEAP_KDF);
    let done = host
        .runner("install", &runner, &install)
        .env("REGISTRATION_TOKEN", TOKEN)
        .env("RUNVAULT_VIEWS_FILE", &views)
        .ok();
    let said = format!("{}{}", done.out(), done.stderr);
    assert!(said.contains("view: wrote"), "{said}");
    assert!(
        !said.contains("binary:"),
        "no binary for plaintext jobs: {said}"
    );

    // config.toml mounts the view at /secrets, and nothing of the key or binary.
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(host.config_toml())
        .unwrap()
        .parse()
        .unwrap();
    let entry = doc["runners"]
        .as_array_of_tables()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str() == Some(runner.as_str()))
        .unwrap();
    let volumes: Vec<String> = entry["docker"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        volumes,
        [
            "/cache".to_string(),
            format!("{}:/secrets:ro", view.display())
        ]
    );
    assert!(
        entry
            .get("environment")
            .and_then(|e| e.as_array())
            .is_none_or(toml_edit::Array::is_empty),
        "no RUNVAULT_* for plaintext jobs"
    );

    let value_file = host.path("value");
    let set = |value: &str| -> (f64, f64) {
        std::fs::write(&value_file, value).unwrap();
        let before = uptime();
        host.vault(&[
            "set",
            "SNOWFLAKE.TRANSFORM.PASSWORD",
            "--from-file",
            value_file.to_str().unwrap(),
        ])
        .env("RUNVAULT_VIEWS_FILE", &views)
        .ok();
        (before, uptime())
    };
    let mut values = vec!["view-Pw-0".to_string()];
    set(&values[0]);
    assert!(
        !String::from_utf8_lossy(&std::fs::read(host.dir().join("vault.yml")).unwrap())
            .contains("view-Pw-0")
    );

    // The job: an image that knows nothing of runvault, reading the file.
    let mut cmd = Command::new("docker");
    cmd.args(["run", "-d", "--rm", "--network", "none", "--name", &job]);
    for volume in &volumes {
        cmd.args(["-v", volume]);
    }
    cmd.args([
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "while :; do read up rest < /proc/uptime; echo \"@@ $up\"; cat /secrets/vault.yml; echo '## end'; usleep 20000; done",
    ]);
    output(&mut cmd);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reads(&job).iter().any(|r| password_in(r) == values[0]) {
        assert!(Instant::now() < deadline, "the job never read the view");
        std::thread::sleep(Duration::from_millis(50));
    }
    let job_started = inspect(&job)["State"]["StartedAt"].clone();
    let runner_started = inspect(&runner)["State"]["StartedAt"].clone();

    let mut rotations = Vec::new();
    for i in 1..=3 {
        values.push(format!("view-rotated-{i}"));
        rotations.push((values.len() - 1, set(&values[i])));
        std::thread::sleep(Duration::from_millis(1200));
    }
    host.vault(&["rekey", "--new-salt", "--also-passphrase-file", pass])
        .env("RUNVAULT_VIEWS_FILE", &views)
        .ok();
    assert_eq!(
        std::fs::read(view.join("vault.salt")).unwrap(),
        std::fs::read(host.dir().join("vault.salt")).unwrap(),
        "the view carries the new salt"
    );
    values.push("view-after-rekey".into());
    rotations.push((values.len() - 1, set(&values[4])));
    std::thread::sleep(Duration::from_millis(1200));

    let seen = reads(&job);
    assert!(seen.len() > 50, "the job read only {} times", seen.len());
    let index_of = |value: &str| {
        values
            .iter()
            .position(|v| v == value)
            .unwrap_or_else(|| panic!("unknown value {value}"))
    };
    let order: Vec<usize> = seen.iter().map(|r| index_of(&password_in(r))).collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "an older value came back: {order:?}"
    );
    for (index, (before, after)) in &rotations {
        let first = seen
            .iter()
            .find(|r| password_in(r) == values[*index])
            .expect("every rotation is seen");
        assert!(
            first.at >= before - 0.02 && first.at <= after + WITHIN,
            "rotation {index} seen at {}",
            first.at
        );
    }
    assert_eq!(
        inspect(&job)["State"]["StartedAt"],
        job_started,
        "the job restarted"
    );
    assert_eq!(
        inspect(&runner)["State"]["StartedAt"],
        runner_started,
        "the runner restarted"
    );
    assert_eq!(inspect(&runner)["RestartCount"], 0);
    eprintln!(
        "the plaintext job read the view {} times; every read parsed as YAML",
        seen.len()
    );
}
