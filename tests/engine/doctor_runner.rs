//! `runvault doctor --name NAME`: the config.toml checks on deliberately
//! broken files (`fixtures/doctor/`), and the engine checks against a real
//! Docker engine: a host built by `runner install` passes every check, and
//! a stopped, foreign or different runner container fails the right ones.
//! Engine tests are skipped without an engine, except under `CI=true`.

use crate::support::runner::{IMAGE, run_foreign};
use crate::support::{Host, Run, Runs, findings, require_root, status_of};

const TOKEN: &str = "GR1348941Fixture-Doctor-Token-51c2";

macro_rules! need_engine {
    ($name:expr) => {
        if !crate::support::runner::engine($name) {
            return;
        }
    };
}

/// `runvault doctor ARGS` for runner `name` of `host`, with its secrets,
/// key and binary directories.
fn doctor(host: &Host, name: &str, args: &[&str]) -> Run {
    let (bin, config) = (host.bin_dir(), host.config_dir());
    let mut all = vec![
        "doctor",
        "--bin-dir",
        bin.to_str().unwrap(),
        "--name",
        name,
        "--config-dir",
        config.to_str().unwrap(),
    ];
    if !args.contains(&"--image") {
        all.extend(["--image", IMAGE]);
    }
    all.extend(args);
    host.vault(&all).run()
}

/// The `runvault runner SUB` command doctor's hints name for [`doctor`]'s
/// options (`configure` also gets the job wiring's directories).
fn hinted(host: &Host, sub: &str, name: &str, image: &str) -> String {
    let command = format!(
        "runvault runner {sub} --name {name} --config-dir {} --image {image}",
        host.config_dir().display()
    );
    if sub != "configure" {
        return command;
    }
    format!(
        "{command} --dir {} --key-file {} --bin-dir {}",
        host.dir().display(),
        host.key_file().display(),
        host.bin_dir().display()
    )
}

/// The `runvault runner install` doctor's hints name for [`doctor`]'s
/// options with `--docker-host unix:///nonexistent.sock`: every option
/// `install` needs, so that it can be pasted.
fn hinted_install(host: &Host, name: &str) -> String {
    format!(
        "runvault runner install --name {name} --config-dir {} --image {IMAGE} \
         --docker-host unix:///nonexistent.sock --dir {} --key-file {} --bin-dir {}",
        host.config_dir().display(),
        host.dir().display(),
        host.key_file().display(),
        host.bin_dir().display()
    )
}

fn json(done: &Run) -> serde_json::Value {
    serde_json::from_str(&done.out()).unwrap_or_else(|_| panic!("{}", done.describe()))
}

/// Copies a `fixtures/doctor/` file to the host's config.toml, with the
/// host's directories substituted.
fn broken_config(host: &Host, fixture: &str) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/doctor")
            .join(fixture),
    )
    .unwrap()
    .replace("@SECRETS@", host.dir().to_str().unwrap())
    .replace("@KEYS@", host.path("keys").to_str().unwrap())
    .replace("@BIN@", host.bin_dir().to_str().unwrap());
    std::fs::create_dir_all(host.config_dir()).unwrap();
    std::fs::write(host.config_toml(), text).unwrap();
}

/// A host installed by `runvault runner install` (vault, key, binary,
/// config.toml, running container).
fn installed(host: &mut Host, test: &str) -> String {
    let name = host.container(test);
    host.runner("install", &name, &["--image", IMAGE])
        .env("REGISTRATION_TOKEN", TOKEN)
        .ok();
    name
}

#[test]
fn a_single_file_vault_mount_fails_and_says_why() {
    let host = Host::new();
    broken_config(&host, "single-file-vault.toml");
    let unreachable = ["--docker-host", "unix:///nonexistent.sock"];
    let done = doctor(&host, "pinned", &unreachable);
    assert_eq!(done.code, 1);
    let report = json(&doctor(
        &host,
        "pinned",
        &["--json", unreachable[0], unreachable[1]],
    ));
    let dir = host.dir().display().to_string();
    assert_eq!(
        findings(&report, "config.secrets_mount"),
        [(
            "fail".to_string(),
            format!(
                "runner `pinned` does not mount the secrets directory `{dir}`; mounts a single \
                 file of the secrets directory: `{dir}/vault.yml:/secrets/vault.yml:ro` (a \
                 single-file mount pins the inode, so a replaced file, such as a rotated vault, \
                 is never seen)"
            ),
            format!(
                "run `{}`: it mounts `{dir}:/secrets:ro` and replaces the others",
                hinted(
                    &host,
                    "configure",
                    "pinned",
                    &format!("{IMAGE} --docker-host unix:///nonexistent.sock")
                )
            )
        )]
    );
    // Everything else in that file is right.
    for check in [
        "config.parse",
        "config.concurrent",
        "config.check_interval",
        "config.key_mount",
        "config.bin_mount",
        "config.environment",
    ] {
        assert_eq!(status_of(&report, check), "ok", "{check}: {report}");
    }
    // The text report has the line and the exact error on stderr.
    assert!(
        done.out()
            .contains("FAIL config.secrets_mount         runner `pinned` does not mount"),
        "{}",
        done.out()
    );
    assert_eq!(
        done.stderr,
        "runvault: error: doctor found problems (see the FAIL lines above)\n"
    );
    // The hint, pasted, repairs it, and doctor agrees.
    let hint = findings(&report, "config.secrets_mount")[0].2.clone();
    host.paste_hint(&hint).ok();
    let report = json(&doctor(
        &host,
        "pinned",
        &["--json", unreachable[0], unreachable[1]],
    ));
    assert_eq!(status_of(&report, "config.secrets_mount"), "ok");
}

#[test]
fn writable_and_partial_mounts_and_missing_globals_fail() {
    let host = Host::new();
    broken_config(&host, "writable.toml");
    let report = json(&doctor(
        &host,
        "writable",
        &["--json", "--docker-host", "unix:///nonexistent.sock"],
    ));
    let (keys, bin) = (host.path("keys"), host.bin_dir());
    let expect = |check: &str, message: String| {
        let found = &findings(&report, check)[0];
        assert_eq!((found.0.as_str(), &found.1), ("fail", &message), "{check}");
    };
    expect(
        "config.secrets_mount",
        format!(
            "runner `writable` mounts the secrets directory writable: `{}:/secrets:rw`",
            host.dir().display()
        ),
    );
    expect(
        "config.key_mount",
        format!(
            "runner `writable` does not mount the key directory `{0}`; mounts a single file of \
             the key directory: `{0}/vault.key:{0}/vault.key:ro` (a single-file mount pins the \
             inode, so a replaced file, such as a rotated vault, is never seen)",
            keys.display()
        ),
    );
    expect(
        "config.bin_mount",
        format!(
            "runner `writable` does not mount the binary directory `{}`",
            bin.display()
        ),
    );
    expect("config.concurrent", "`concurrent` is not set".into());
    expect(
        "config.check_interval",
        "`check_interval` is not set".into(),
    );
    assert_eq!(status_of(&report, "config.environment"), "warn");
    assert_eq!(
        findings(&report, "config.environment")[0].1,
        format!(
            "runner `writable` does not set RUNVAULT_DIR=/secrets RUNVAULT_KEY_FILE={}: jobs \
             must set it themselves",
            host.key_file().display()
        )
    );
    // No engine: one failed check says so, with the runner's own message.
    assert_eq!(
        findings(&report, "engine.reachable")[0].1,
        "cannot reach the Docker engine at `unix:///nonexistent.sock`: socket not found: \
         /nonexistent.sock; start it (`sudo systemctl start docker`, or `sudo dockerd &`) or \
         point --docker-host / DOCKER_HOST at a running engine"
    );
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f["check"].as_str().unwrap().starts_with("runner."))
    );
}

#[test]
fn a_missing_or_invalid_config_fails_the_parse_check() {
    let host = Host::new();
    let args = ["--json", "--docker-host", "unix:///nonexistent.sock"];
    let report = json(&doctor(&host, "x", &args));
    assert_eq!(
        findings(&report, "config.parse")[0].1,
        format!("`{}` does not exist", host.config_toml().display())
    );
    broken_config(&host, "invalid.toml");
    let report = json(&doctor(&host, "x", &args));
    let (status, message, _) = &findings(&report, "config.parse")[0];
    assert_eq!(status, "fail");
    assert_eq!(
        message,
        &format!(
            "`{}` is not valid TOML at line 3, column 17: invalid basic string, expected `\"`",
            host.config_toml().display()
        )
    );
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["check"] != "config.secrets_mount"),
        "nothing more is read from a file that does not parse"
    );
    std::fs::write(host.config_toml(), "concurrent = 8\ncheck_interval = 1\n").unwrap();
    let report = json(&doctor(&host, "x", &args));
    assert_eq!(
        findings(&report, "config.parse")[0],
        (
            "fail".to_string(),
            format!("`{}` has no [[runners]]", host.config_toml().display()),
            format!("register the runner: `{}`", hinted_install(&host, "x"))
        )
    );
}

#[test]
fn without_a_name_the_runner_checks_are_skipped_with_a_warning() {
    let host = Host::new();
    let done = host.vault(&["doctor"]).run();
    assert!(
        done.out().contains(
            "warn runner.skipped               no runner name: config.toml and the runner \
             container were not checked (hint: pass --name NAME (and --config-dir DIR unless it \
             is /srv/dataops-runner-NAME/config))\n"
        ),
        "{}",
        done.out()
    );
}

#[test]
fn a_host_built_by_install_passes_every_check() {
    need_engine!("doctor_installed");
    let mut host = Host::new();
    let name = installed(&mut host, "doctor-ok");
    let done = doctor(&host, &name, &[]);
    assert_eq!(done.code, 0, "{}", done.describe());
    assert!(
        done.out().ends_with(" ok, 0 warn, 0 fail\n"),
        "{}",
        done.out()
    );
    let report = json(&doctor(&host, &name, &["--json"]));
    for check in [
        "secrets.dir.mode",
        "vault.verify",
        "keyfile.location",
        "config.parse",
        "config.concurrent",
        "config.check_interval",
        "config.secrets_mount",
        "config.key_mount",
        "config.bin_mount",
        "config.environment",
        "engine.reachable",
        "runner.container",
        "runner.running",
        "runner.restart_policy",
        "runner.binds",
        "runner.image",
    ] {
        assert_eq!(status_of(&report, check), "ok", "{check}");
    }
    assert_eq!(report["fail"], 0);
    assert_eq!(report["warn"], 0);
}

#[test]
fn a_stopped_foreign_or_different_runner_container_fails() {
    need_engine!("doctor_container");
    let mut host = Host::new();
    let name = installed(&mut host, "doctor-bad");

    // Another image expected than the one running.
    let report = json(&doctor(&host, &name, &["--json", "--image", "other:tag"]));
    assert_eq!(
        findings(&report, "runner.image")[0],
        (
            "fail".to_string(),
            format!("runs `{IMAGE}`, not `other:tag`"),
            format!(
                "run `{} --recreate`",
                hinted(&host, "start", &name, "other:tag")
            )
        )
    );

    host.runner("stop", &name, &["--timeout", "5"]).ok();
    let report = json(&doctor(&host, &name, &["--json"]));
    assert_eq!(
        findings(&report, "runner.running")[0].1,
        format!("container `{name}` is exited (last exit code 0)")
    );
    assert_eq!(status_of(&report, "runner.restart_policy"), "ok");

    // A container someone started by hand: no restart policy, no binds.
    crate::support::runner::remove_container(&name);
    run_foreign(&name);
    let report = json(&doctor(&host, &name, &["--json"]));
    assert_eq!(status_of(&report, "runner.container"), "warn");
    assert_eq!(
        findings(&report, "runner.restart_policy")[0].1,
        "restart policy `no`: the runner stays down after a crash or reboot"
    );
    assert_eq!(
        findings(&report, "runner.binds")[0].1,
        format!(
            "container `{name}` lacks the bind(s) {}:/etc/gitlab-runner \
             /var/run/docker.sock:/var/run/docker.sock",
            host.config_dir().display()
        )
    );

    crate::support::runner::remove_container(&name);
    let report = json(&doctor(&host, &name, &["--json"]));
    assert_eq!(
        findings(&report, "runner.container")[0],
        (
            "fail".to_string(),
            format!("no container named `{name}`"),
            format!("run `{}`", hinted(&host, "start", &name, IMAGE))
        )
    );
    // The hint, pasted, starts it again.
    let hint = findings(&report, "runner.container")[0].2.clone();
    host.paste_hint(&hint).ok();
    let report = json(&doctor(&host, &name, &["--json"]));
    assert_eq!(status_of(&report, "runner.running"), "ok");
}

#[test]
fn a_config_toml_or_bin_dir_not_root_s_or_readable_by_others_fails() {
    if !require_root("a_config_toml_or_bin_dir_not_root_s_or_readable_by_others_fails") {
        return;
    }
    let host = Host::new();
    host.with_config("config.toml");
    let (config, bin) = (host.config_toml(), host.bin_dir());
    let args = ["--json", "--docker-host", "unix:///nonexistent.sock"];
    let report = json(&doctor(&host, "my-runner", &args));
    assert_eq!(
        findings(&report, "bin.dir.owner")[0],
        (
            "fail".to_string(),
            format!(
                "`{}` cannot be read: No such file or directory (os error 2)",
                bin.display()
            ),
            format!(
                "put the binary there with `{}` (or pass --bin-dir)",
                hinted_install(&host, "my-runner")
            )
        )
    );
    std::fs::create_dir(&bin).unwrap();
    let report = json(&doctor(&host, "my-runner", &args));
    for check in ["config.owner", "config.mode", "bin.dir.owner"] {
        assert_eq!(status_of(&report, check), "ok", "{check}");
    }
    assert_eq!(
        findings(&report, "config.mode")[0].1,
        format!("`{}` is mode 0600", config.display())
    );

    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&config, Some(65534), None).unwrap();
    std::os::unix::fs::chown(&bin, Some(65534), None).unwrap();
    let report = json(&doctor(&host, "my-runner", &args));
    let owned = |path: &std::path::Path| {
        (
            "fail".to_string(),
            format!("`{}` is owned by uid 65534, not root", path.display()),
            format!("run `chown root: {}`", path.display()),
        )
    };
    assert_eq!(findings(&report, "config.owner")[0], owned(&config));
    assert_eq!(findings(&report, "bin.dir.owner")[0], owned(&bin));
    assert_eq!(
        findings(&report, "config.mode")[0],
        (
            "fail".to_string(),
            format!(
                "`{}` is mode 0644: group or others can read the runners' tokens",
                config.display()
            ),
            format!(
                "run `chmod 600 {}` (or `{}`, which tightens it)",
                config.display(),
                hinted(
                    &host,
                    "configure",
                    "my-runner",
                    &format!("{IMAGE} --docker-host unix:///nonexistent.sock")
                )
            )
        )
    );
}

#[test]
fn after_install_on_other_paths_commands_need_only_the_runner_name() {
    need_engine!("layout_remembered");
    let mut host = Host::new();
    let name = installed(&mut host, "layout");
    // `install` recorded the host's layout: every path is the test's own,
    // none the default.
    let layout = std::fs::read_to_string(host.layout_file()).unwrap();
    for line in [
        format!("secrets_dir = \"{}\"\n", host.dir().display()),
        format!("key_file = \"{}\"\n", host.key_file().display()),
        format!("bin_dir = \"{}\"\n", host.bin_dir().display()),
        "jobs = \"encrypted\"\n".to_string(),
        format!(
            "[runners.{name}]\nconfig_dir = \"{}\"\nimage = \"{IMAGE}\"\n",
            host.config_dir().display()
        ),
    ] {
        assert!(layout.contains(&line), "{line} not in:\n{layout}");
    }
    let only_name = |args: &[&str]| {
        let mut cmd = host.bare_command();
        cmd.args(args).args(["--name", &name]);
        cmd.run()
    };

    let status = only_name(&["runner", "status"]).ok();
    assert!(
        status.out().contains(&format!(
            "config:         `{}`: every runner mounts the secrets directory read-only\n",
            host.config_toml().display()
        )),
        "{}",
        status.describe()
    );
    assert_eq!(status.stderr, "");

    let doctor = only_name(&["doctor", "--json"]);
    assert_eq!(doctor.code, 0, "{}", doctor.describe());
    let report = json(&doctor);
    assert_eq!(report["fail"], 0, "{}", doctor.describe());
    for check in [
        "layout.file",
        "secrets.dir.mode",
        "keyfile.location",
        "config.secrets_mount",
        "config.key_mount",
        "config.bin_mount",
        "config.environment",
        "runner.binds",
        "runner.image",
    ] {
        assert_eq!(status_of(&report, check), "ok", "{check}");
    }
    assert_eq!(
        findings(&report, "layout.file")[0].1,
        format!(
            "defaults from the layout file `{}`",
            host.layout_file().display()
        )
    );

    let config = std::fs::read(host.config_toml()).unwrap();
    let check = only_name(&["runner", "configure", "--check"]).ok();
    assert_eq!(
        check.stderr,
        format!("`{}`: unchanged\n", host.config_toml().display())
    );
    assert_eq!(std::fs::read(host.config_toml()).unwrap(), config);
    assert_eq!(std::fs::read_to_string(host.layout_file()).unwrap(), layout);
}
