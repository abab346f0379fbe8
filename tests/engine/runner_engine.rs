//! The runner commands against a real Docker engine and the fixture runner
//! image (`fixtures/runner-image/`): register, start/stop/restart/status/
//! logs/remove, install, and the engine's errors. Without an engine these
//! tests say they are skipped, except under `CI=true`, where they fail.

use std::process::Command;

use crate::support::runner::{IMAGE, exists, inspect, run_foreign};
use crate::support::{
    CHEAP_KDF, Host, Runs, give_to_other_user, mode, owned_by_other_user_error, ownership,
    require_root, runvault, wait_within,
};

const TOKEN: &str = "GR1348941Fixture-Registration-Token-7f3a";

/// Skips the test (returns) when no engine answers.
macro_rules! need_engine {
    ($name:expr) => {
        if !crate::support::runner::engine($name) {
            return;
        }
    };
}

fn register(host: &Host, name: &str, token: &str, extra: &[&str]) -> Command {
    let mut args = vec!["--image", IMAGE];
    args.extend_from_slice(extra);
    let mut cmd = host.runner("register", name, &args);
    cmd.env("REGISTRATION_TOKEN", token);
    cmd
}

fn assert_no_token(text: &str, token: &str) {
    assert!(!text.contains(token), "the token leaked into:\n{text}");
}

#[test]
fn register_writes_config_and_the_token_travels_only_in_the_environment() {
    need_engine!("register_writes_config");
    let mut host = Host::new();
    let name = host.container("register");
    let done = register(
        &host,
        &name,
        TOKEN,
        &["--url", "https://dataops.example", "--tags", "a,b"],
    )
    .ok();
    assert_no_token(&done.out(), TOKEN);
    assert_no_token(&done.stderr, TOKEN);
    assert!(
        done.stderr.ends_with(&format!(
            "  | Runner registered successfully. tags=a,b\nregistered runner `{name}` in `{}`\n",
            host.config_toml().display()
        )),
        "{}",
        done.stderr
    );

    let config = std::fs::read_to_string(host.config_toml()).unwrap();
    assert!(config.contains(&format!(
        "  name = \"{name}\"\n  url = \"https://dataops.example\"\n"
    )));
    assert!(config.contains("executor = \"docker\""));
    assert!(config.contains("image = \"dataopslive/dataops-utils-runner\""));
    // The token arrived, through the environment variable the runner reads...
    let received =
        std::fs::read_to_string(host.config_dir().join(".fixture-received-token")).unwrap();
    assert_eq!(received, format!("REGISTRATION_TOKEN={TOKEN}\n"));
    // ...and never on the container's command line (its PID 1 argv).
    let cmdline = std::fs::read_to_string(host.config_dir().join(".fixture-cmdline")).unwrap();
    assert!(
        cmdline.contains("register --non-interactive --executor docker"),
        "{cmdline}"
    );
    assert!(cmdline.contains(
        "--tag-list a,b --run-untagged=false --locked=false --access-level=not_protected"
    ));
    assert_no_token(&cmdline, TOKEN);
    // The one-shot container (which holds the token in its environment) is gone.
    assert!(!exists(&format!("{name}-runvault-register")));

    // Registered: a second run changes nothing and asks for no token.
    let done = host.runner("register", &name, &["--image", IMAGE]).ok();
    assert_eq!(
        done.stderr,
        format!(
            "runner `{name}` is already registered in `{}`; unchanged (--force registers again)\n",
            host.config_toml().display()
        )
    );
    // --force registers again: the runner appends a second [[runners]].
    register(&host, &name, TOKEN, &["--force"]).ok();
    let config = std::fs::read_to_string(host.config_toml()).unwrap();
    assert_eq!(config.matches("[[runners]]").count(), 2);
}

#[test]
fn runner_token_goes_in_ci_server_token_without_the_reserved_flags() {
    need_engine!("runner_token");
    let mut host = Host::new();
    let name = host.container("glrt");
    let token = "glrt-Fixture-Runner-Token-0c1d";
    let file = host.private_file("token", &format!("{token}\n"));
    let done = host
        .runner(
            "register",
            &name,
            &["--image", IMAGE, "--token-file", file.to_str().unwrap()],
        )
        .ok();
    assert_no_token(&done.stderr, token);
    let received =
        std::fs::read_to_string(host.config_dir().join(".fixture-received-token")).unwrap();
    assert_eq!(received, format!("CI_SERVER_TOKEN={token}\n"));
    let cmdline = std::fs::read_to_string(host.config_dir().join(".fixture-cmdline")).unwrap();
    assert!(!cmdline.contains("--tag-list"), "{cmdline}");
    assert_no_token(&cmdline, token);
}

#[test]
fn a_token_file_others_can_read_is_refused() {
    need_engine!("token_file_mode");
    let mut host = Host::new();
    let name = host.container("tokenmode");
    let file = host.private_file("token", TOKEN);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let done = host
        .runner(
            "register",
            &name,
            &["--image", IMAGE, "--token-file", file.to_str().unwrap()],
        )
        .fails(1);
    assert_eq!(
        done.stderr,
        format!(
            "runvault: error: token file `{0}` is accessible by group or others (mode 0644); \
             run `chmod 600 {0}` first\n",
            file.display()
        )
    );
}

#[test]
fn a_failed_register_shows_its_exit_code_and_masked_log() {
    need_engine!("register_fails");
    let mut host = Host::new();
    let name = host.container("regfail");
    let token = "fail-Fixture-Rejected-Token-99";
    let done = register(&host, &name, token, &[]).fails(1);
    assert_no_token(&done.out(), token);
    assert_no_token(&done.stderr, token);
    let stderr = done.stderr;
    assert!(stderr.starts_with(
        "runvault: error: `register` failed with exit code 3 (the token is masked in this log); \
         its last log lines:\n"
    ), "{stderr}");
    // The engine interleaves the container's stdout and stderr in no fixed order.
    for line in [
        "Runtime platform arch=amd64 os=linux version=fixture\n",
        "Running in system-mode.\n",
        "ERROR: Registering runner... forbidden (check registration token) token=[MASKED]\n",
    ] {
        assert!(stderr.contains(line), "{line:?} missing in {stderr}");
    }
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
    assert!(!exists(&format!("{name}-runvault-register")));
    assert!(!host.config_toml().exists());
}

#[test]
fn a_missing_image_says_docker_login_and_pull() {
    need_engine!("image_missing");
    let mut host = Host::new();
    let name = host.container("noimage");
    let missing = "runvault-no-such-image:missing";
    let expected = format!(
        "runvault: error: image `{missing}` is not on this host; run `docker login` (the DataOps \
         runner image is private), then `docker pull {missing}`\n"
    );
    let done = host
        .runner("register", &name, &["--image", missing])
        .env("REGISTRATION_TOKEN", TOKEN)
        .fails(1);
    assert_eq!(done.stderr, expected);
    host.with_config("config.toml");
    let done = host.runner("start", &name, &["--image", missing]).fails(1);
    assert_eq!(done.stderr, expected);
}

#[test]
fn start_stop_restart_status_logs_remove() {
    need_engine!("lifecycle");
    let mut host = Host::new();
    let name = host.container("life");
    host.with_config("config.toml");
    let img = ["--image", IMAGE];

    let done = host.runner("start", &name, &img).ok();
    assert_eq!(
        done.stderr,
        format!("container `{name}`: created and started\n")
    );
    let details = inspect(&name);
    assert_eq!(details["State"]["Running"], true);
    assert_eq!(details["HostConfig"]["RestartPolicy"]["Name"], "always");
    assert_eq!(details["Config"]["Labels"]["io.runvault.managed"], "true");
    assert_eq!(details["Config"]["Image"], IMAGE);
    let binds: Vec<String> =
        serde_json::from_value(details["HostConfig"]["Binds"].clone()).unwrap();
    assert_eq!(
        binds,
        vec![
            format!("{}:/etc/gitlab-runner", host.config_dir().display()),
            "/var/run/docker.sock:/var/run/docker.sock".to_string(),
        ]
    );

    let done = host.runner("start", &name, &img).ok();
    assert_eq!(
        done.stderr,
        format!("container `{name}`: already running; unchanged\n")
    );

    let done = host.runner("status", &name, &["--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&done.out()).unwrap();
    assert_eq!(status["container"]["state"], "running");
    assert_eq!(status["container"]["restart_policy"], "always");
    assert_eq!(status["container"]["restart_count"], 0);
    assert_eq!(status["container"]["image"], IMAGE);
    assert!(status["container"]["uptime_secs"].is_u64());
    assert_eq!(status["container"]["mounts"].as_array().unwrap().len(), 2);
    // The fixture config.toml has not been configured yet.
    assert_eq!(status["secrets_mount"]["state"], "missing");
    assert_eq!(status["secrets_mount"]["runners"][0], "my-runner");
    // The status line's hint carries this command's options; pasted, it
    // configures the runner (with the default binary directory, as
    // `status` has no `--bin-dir`).
    let done = host.runner("status", &name, &[]).ok();
    let hint = format!(
        "run `runvault runner configure --name {name} --config-dir {} --dir {} --key-file {}`",
        host.config_dir().display(),
        host.dir().display(),
        host.key_file().display()
    );
    assert!(done.out().contains(&hint), "{}", done.out());
    let pasted = host.paste_hint(&done.out()).ok();
    assert!(pasted.stderr.contains(&format!(
        "added volume `{}:/secrets:ro`",
        host.dir().display()
    )));
    host.runner("configure", &name, &[]).ok();
    let done = host.runner("status", &name, &[]).ok();
    assert!(
        done.out().starts_with(&format!(
            "container:      {name} (managed by runvault)\nstate:          running, up "
        )),
        "{}",
        done.out()
    );
    assert!(
        done.out()
            .contains("restart policy: always (restarted 0 times)\n")
    );
    assert!(done.out().ends_with(&format!(
        "config:         `{}`: every runner mounts the secrets directory read-only\n",
        host.config_toml().display()
    )));

    let done = host.runner("stop", &name, &["--timeout", "5"]).ok();
    assert_eq!(done.stderr, format!("container `{name}`: stopped\n"));
    let details = inspect(&name);
    assert_eq!(details["State"]["Running"], false);
    assert_eq!(
        details["State"]["ExitCode"], 0,
        "SIGTERM ends the runner cleanly"
    );
    let done = host.runner("stop", &name, &[]).ok();
    assert_eq!(
        done.stderr,
        format!("container `{name}`: not running; unchanged\n")
    );

    let done = host.runner("start", &name, &img).ok();
    assert_eq!(done.stderr, format!("container `{name}`: started\n"));
    let done = host.runner("restart", &name, &[]).ok();
    assert_eq!(done.stderr, format!("container `{name}`: restarted\n"));
    assert_eq!(inspect(&name)["State"]["Running"], true);

    let done = host.runner("logs", &name, &["--tail", "2"]).ok();
    assert_eq!(
        done.out(),
        "Runtime platform arch=amd64 os=linux version=fixture\n\
         Starting multi-runner from /etc/gitlab-runner/config.toml... builds=0\n"
    );
    let done = host.runner("logs", &name, &[]).ok();
    assert_eq!(
        done.out().matches("Graceful shutdown").count(),
        2,
        "{}",
        done.out()
    );

    let done = host.runner("remove", &name, &[]).ok();
    assert_eq!(
        done.stderr,
        format!(
            "container `{name}`: removed (`{}` is kept)\n",
            host.config_dir().display()
        )
    );
    assert!(!exists(&name));
    assert!(host.config_toml().exists());
    let done = host.runner("status", &name, &[]).ok();
    assert!(
        done.out()
            .starts_with(&format!("container:      {name} (absent)\n"))
    );
    let done = host.runner("remove", &name, &img).fails(1);
    assert_eq!(
        done.stderr,
        format!("runvault: error: no container named `{name}`; nothing to remove\n")
    );
    let mut hint = String::new();
    for command in ["stop", "restart", "logs"] {
        let done = host.runner(command, &name, &img).fails(1);
        hint.clone_from(&done.stderr);
        assert_eq!(
            done.stderr,
            format!(
                "runvault: error: no container named `{name}`; create it with \
                 `runvault runner start --name {name} --config-dir {} --image {IMAGE}`\n",
                host.config_dir().display()
            )
        );
    }
    // The hint, pasted, does what it says.
    let done = host.paste_hint(&hint).ok();
    assert_eq!(
        done.stderr,
        format!("container `{name}`: created and started\n")
    );
    assert_eq!(inspect(&name)["State"]["Running"], true);
}

#[test]
fn debug_start_sets_debug_in_the_environment() {
    need_engine!("debug");
    let mut host = Host::new();
    let name = host.container("debug");
    host.with_config("config.toml");
    host.runner("start", &name, &["--image", IMAGE, "--debug"])
        .ok();
    let env: Vec<String> = serde_json::from_value(inspect(&name)["Config"]["Env"].clone()).unwrap();
    assert!(env.contains(&"DEBUG=true".to_string()), "{env:?}");
}

#[test]
fn a_foreign_or_different_container_is_reported_not_replaced() {
    need_engine!("foreign");
    let mut host = Host::new();
    let name = host.container("foreign");
    host.with_config("config.toml");
    run_foreign(&name);
    let before = inspect(&name)["Id"].clone();
    let expected = format!(
        "runvault: error: container `{name}` was not created by runvault (it has no \
         `io.runvault.managed=true` label); leaving it alone: remove it with `docker rm -f {name}` \
         or pass --recreate to replace it\n"
    );
    let done = host.runner("start", &name, &["--image", IMAGE]).fails(1);
    assert_eq!(done.stderr, expected);
    for command in ["stop", "restart", "remove"] {
        let done = host.runner(command, &name, &[]).fails(1);
        assert_eq!(done.stderr, expected);
    }
    assert_eq!(inspect(&name)["Id"], before, "left alone");

    let done = host
        .runner("start", &name, &["--image", IMAGE, "--recreate"])
        .ok();
    assert_eq!(
        done.stderr,
        format!("container `{name}`: replaced and started\n")
    );
    assert_eq!(
        inspect(&name)["Config"]["Labels"]["io.runvault.managed"],
        "true"
    );

    // Ours, but with other binds: reported, then replaced with --recreate.
    let other = host.path("other-config");
    std::fs::create_dir(&other).unwrap();
    std::fs::copy(host.config_toml(), other.join("config.toml")).unwrap();
    let done = host
        .runner_in(&other, "start", &name, &["--image", IMAGE])
        .fails(1);
    assert!(
        done.stderr.starts_with(&format!(
            "runvault: error: container `{name}` differs from the requested one (binds `"
        )),
        "{}",
        done.stderr
    );
    assert!(done.stderr.ends_with("; pass --recreate to replace it\n"));
    host.runner_in(&other, "start", &name, &["--image", IMAGE, "--recreate"])
        .ok();
    let binds = inspect(&name)["HostConfig"]["Binds"].clone();
    assert_eq!(binds[0], format!("{}:/etc/gitlab-runner", other.display()));
}

#[test]
fn install_twice_on_a_clean_host_changes_nothing_the_second_time() {
    need_engine!("install");
    let mut host = Host::new();
    let name = host.container("install");
    let token_file = host.private_file("token", TOKEN);
    let pass_file = host.private_file("passphrase", "install passphrase\n");
    let mut args = vec![
        "--image",
        IMAGE,
        "--token-file",
        token_file.to_str().unwrap(),
        "--passphrase-file",
        pass_file.to_str().unwrap(),
    ];
    args.extend(CHEAP_KDF);
    let key = host.key_file();
    let binary = host.bin_dir().join("runvault");

    let done = host.runner("install", &name, &args).ok();
    assert_no_token(&done.stderr, TOKEN);
    let stderr = done.stderr;
    assert!(
        stderr.starts_with(&format!(
            "key: created `{}` (mode 0400)\n\
             vault: created\n\
             key slot: the key opens the vault; unchanged\n\
             binary: installed `{}`\n",
            key.display(),
            binary.display()
        )),
        "{stderr}"
    );
    // The test binary is not static: install says jobs may not run it.
    assert!(stderr.contains("\n  warning: it is dynamically linked, so job images without a matching libc cannot run it; install a static build with --binary (see docs/jobs.md)\nregister: registered\n  | "), "{stderr}");
    assert!(stderr.contains("\nconfigure: 9 change(s)\n  set `concurrent` to 8 (was 1)\n"));
    assert!(stderr.ends_with(&format!(
        "start: container created and started\nrunner `{name}` is installed and running\n"
    )));
    assert!(host.dir().join("vault.yml").exists());
    assert_eq!(mode(&key), 0o400);
    assert_eq!(mode(&binary), 0o755);
    assert_eq!(
        std::fs::read(&binary).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_runvault")).unwrap()
    );
    let details = inspect(&name);
    assert_eq!(details["State"]["Running"], true);
    // The long-running container knows nothing of the token: not in its
    // command line (Cmd, Args), not in its environment.
    assert_no_token(&details.to_string(), TOKEN);
    assert_eq!(details["Args"], serde_json::json!([]));
    let config = std::fs::read(host.config_toml()).unwrap();
    let vault = std::fs::read(host.dir().join("vault.yml")).unwrap();
    let key_bytes = std::fs::read(&key).unwrap();

    let done = host.runner("install", &name, &args).ok();
    assert_eq!(
        done.stderr,
        format!(
            "key: `{}` exists; unchanged\n\
             vault: already encrypted; unchanged\n\
             key slot: the key opens the vault; unchanged\n\
             binary: `{}` is up to date; unchanged\n  \
             warning: it is dynamically linked, so job images without a matching libc cannot \
             run it; install a static build with --binary (see docs/jobs.md)\n\
             register: already registered; unchanged\n\
             configure: unchanged\n\
             start: container already running; unchanged\n\
             runner `{name}`: nothing changed\n",
            key.display(),
            binary.display()
        )
    );
    assert_eq!(std::fs::read(host.config_toml()).unwrap(), config);
    assert_eq!(std::fs::read(host.dir().join("vault.yml")).unwrap(), vault);
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes);

    // The runner's config mounts the vault directory read-only.
    let done = host.runner("status", &name, &["--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&done.out()).unwrap();
    assert_eq!(status["secrets_mount"]["state"], "read-only");

    // A new binary replaces the old one by rename: a job holding the old
    // file open keeps it, the next job gets the new one.
    let old = std::fs::File::open(&binary).unwrap();
    let newer = host.path("runvault-newer");
    std::fs::write(&newer, b"#!/bin/sh\necho newer\n").unwrap();
    let mut with_binary = args.clone();
    with_binary.extend(["--binary", newer.to_str().unwrap()]);
    let done = host.runner("install", &name, &with_binary).ok();
    assert!(
        done.stderr
            .contains(&format!("binary: installed `{}`\n", binary.display())),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .ends_with(&format!("runner `{name}` is installed and running\n"))
    );
    assert_eq!(std::fs::read(&binary).unwrap(), b"#!/bin/sh\necho newer\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        old.metadata().unwrap().nlink(),
        0,
        "the old file was replaced, not rewritten"
    );
}

#[test]
fn install_adds_a_slot_for_a_new_key_to_an_existing_vault() {
    need_engine!("install_key_slot");
    let mut host = Host::new();
    let name = host.container("keyslot");
    let pass_file = host.private_file("passphrase", "admin passphrase\n");
    // A vault the admin made by hand with a passphrase only.
    let dir = host.dir();
    let mut init = vec![
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--passphrase-file",
        pass_file.to_str().unwrap(),
    ];
    init.extend(CHEAP_KDF);
    runvault().args(&init).ok();
    let args = [
        "--image",
        IMAGE,
        "--passphrase-file",
        pass_file.to_str().unwrap(),
    ];
    let done = host
        .runner("install", &name, &args)
        .env("REGISTRATION_TOKEN", TOKEN)
        .ok();
    assert!(
        done.stderr.starts_with(&format!(
            "key: created `{}` (mode 0400)\n\
             vault: already encrypted; unchanged\n\
             key slot: added keyfile slot 2\n",
            host.key_file().display()
        )),
        "{}",
        done.stderr
    );
    // The key now opens the vault on its own, as jobs will use it.
    host.vault(&["verify"]).ok();

    // Without the admin's secret, a key that opens nothing cannot be added.
    std::fs::remove_file(host.key_file()).unwrap();
    let done = host.runner("install", &name, &["--image", IMAGE]).fails(2);
    assert!(
        done.stderr.ends_with(
            "runvault: error: no passphrase given and no terminal to ask on: pass \
             --passphrase-file FILE (mode 0600) or --key-file FILE, or set \
             RUNVAULT_PASSPHRASE_FILE / RUNVAULT_KEY_FILE\n"
        ),
        "{}",
        done.stderr
    );
}

#[test]
fn install_adopts_a_hand_made_vault() {
    need_engine!("install_adopt");
    let mut host = Host::new();
    let name = host.container("adopt");
    std::fs::create_dir(host.dir()).unwrap();
    std::fs::write(
        host.dir().join("vault.yml"),
        "SNOWFLAKE:\n  ACCOUNT: acme\n  TRANSFORM:\n    PASSWORD: hunter2\n",
    )
    .unwrap();
    let done = host
        .runner("install", &name, &["--image", IMAGE])
        .env("REGISTRATION_TOKEN", TOKEN)
        .ok();
    assert!(
        done.stderr.contains(
            "\nvault: adopted the plaintext vault (2 value(s) encrypted)\n\
             key slot: the key opens the vault; unchanged\n"
        ),
        "{}",
        done.stderr
    );
    let vault = std::fs::read_to_string(host.dir().join("vault.yml")).unwrap();
    assert!(!vault.contains("hunter2"));
}

#[test]
fn start_without_config_says_register_first() {
    need_engine!("start_no_config");
    let mut host = Host::new();
    let name = host.container("noconfig");
    let done = host.runner("start", &name, &["--image", IMAGE]).fails(1);
    assert_eq!(
        done.stderr,
        host.no_config_error(&name, &format!(" --image {IMAGE}"))
    );
    assert!(!exists(&name));
    // The hint, pasted (with the token it asks for), registers this runner
    // where `start` looks for it.
    let done = host
        .paste_hint(&done.stderr)
        .env("REGISTRATION_TOKEN", TOKEN)
        .ok();
    assert!(
        done.stderr.ends_with(&format!(
            "registered runner `{name}` in `{}`\n",
            host.config_toml().display()
        )),
        "{}",
        done.stderr
    );
    host.runner("start", &name, &["--image", IMAGE]).ok();
    assert_eq!(inspect(&name)["State"]["Running"], true);
}

/// Starts a fixture runner in container `short` and `runner logs -f` on it.
fn follow_logs(host: &mut Host, short: &str) -> (String, std::process::Child) {
    let name = host.container(short);
    host.with_config("config.toml");
    host.runner("start", &name, &["--image", IMAGE]).ok();
    let child = host.runner("logs", &name, &["-f"]).spawn_captured();
    (name, child)
}

#[test]
fn logs_follow_ends_when_the_container_stops() {
    need_engine!("logs_follow");
    let mut host = Host::new();
    let (name, child) = follow_logs(&mut host, "follow");
    std::thread::sleep(std::time::Duration::from_millis(500));
    host.runner("stop", &name, &[]).ok();
    let done = wait_within(child, std::time::Duration::from_secs(20));
    assert_eq!(done.code, 0, "{}", done.describe());
    assert!(
        done.out().ends_with("Graceful shutdown\n"),
        "{}",
        done.out()
    );
}

#[test]
fn logs_follow_ends_silently_when_its_reader_goes_away() {
    need_engine!("logs_reader_gone");
    let mut host = Host::new();
    let (name, mut child) = follow_logs(&mut host, "readergone");
    // The reader closes before the first line: the running container's
    // log has more, and following it must end at the first failed write
    // instead of writing into the closed pipe until the container stops.
    drop(child.stdout.take());
    let done = wait_within(child, std::time::Duration::from_secs(20));
    assert_eq!((done.code, done.stderr.as_str()), (0, ""));
    assert_eq!(inspect(&name)["State"]["Running"], true);
}

#[test]
fn a_runner_that_crashes_on_start_is_reported_with_its_log() {
    need_engine!("crash");
    let mut host = Host::new();
    let name = host.container("crash");
    host.with_config("config.toml");
    let mut config = std::fs::read_to_string(host.config_toml()).unwrap();
    config.push_str("# fixture: crash\n");
    std::fs::write(host.config_toml(), config).unwrap();
    let done = host.runner("start", &name, &["--image", IMAGE]).fails(1);
    let stderr = done.stderr;
    assert!(
        stderr.starts_with(&format!(
            "runvault: error: container `{name}` does not stay up (state `"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("last exit code 2); its last log lines:\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("FATAL: the fixture was told to crash by /etc/gitlab-runner/config.toml\n")
    );
}

#[test]
fn permission_denied_on_the_socket_mentions_the_docker_group() {
    need_engine!("socket_permission");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let socket = std::fs::metadata("/var/run/docker.sock");
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    // Needs root (to become `nobody`), setpriv, and a socket closed to others.
    if !is_root || !setpriv.exists() || !socket.is_ok_and(|m| m.mode() & 0o007 == 0) {
        eprintln!("skipped: needs root, setpriv and a docker.sock closed to others");
        return;
    }
    // A copy of the binary that user `nobody` can run.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("runvault");
    std::fs::copy(env!("CARGO_BIN_EXE_runvault"), &binary).unwrap();
    let output = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .args([
            "runner",
            "status",
            "--name",
            "x",
            "--config-dir",
            "/nonexistent",
        ])
        .current_dir(dir.path())
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "runvault: error: permission denied on the Docker socket `unix:///var/run/docker.sock`; \
         run as root, or add your user to the `docker` group (`sudo usermod -aG docker $USER`, \
         then log in again)\n"
    );
}

#[test]
fn install_refuses_a_binary_directory_or_binary_another_user_owns() {
    need_engine!("install_foreign_binary");
    if !require_root("install_refuses_a_binary_directory_or_binary_another_user_owns") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, chown};
    let mut host = Host::new();
    let name = host.container("install-foreign-bin");
    let pass_file = host.private_file("passphrase", "install passphrase\n");
    let mut args = vec![
        "--image",
        IMAGE,
        "--passphrase-file",
        pass_file.to_str().unwrap(),
    ];
    args.extend(CHEAP_KDF);
    let (bin, binary) = (host.bin_dir(), host.bin_dir().join("runvault"));

    // A binary directory made in advance by another user.
    std::fs::create_dir(&bin).unwrap();
    give_to_other_user(&bin);
    let before = ownership(&bin);
    let done = host.runner("install", &name, &args).fails(1);
    assert!(
        done.stderr
            .ends_with(&owned_by_other_user_error("binary directory", &bin)),
        "{}",
        done.stderr
    );
    assert_eq!(ownership(&bin), before);
    assert!(!binary.exists());

    // Our directory, but a binary another user put there (the very same
    // bytes: it could still swap them later).
    chown(&bin, Some(0), Some(0)).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_runvault"), &binary).unwrap();
    give_to_other_user(&binary);
    let before = ownership(&binary);
    let done = host.runner("install", &name, &args).fails(1);
    assert!(
        done.stderr
            .ends_with(&owned_by_other_user_error("binary", &binary)),
        "{}",
        done.stderr
    );
    assert_eq!(ownership(&binary), before);
    assert!(!exists(&name), "no later step ran");

    // Removed: installed as the caller's, mode 0755.
    std::fs::remove_file(&binary).unwrap();
    let token = host.private_file("token", TOKEN);
    args.extend(["--token-file", token.to_str().unwrap()]);
    host.runner("install", &name, &args).ok();
    let meta = std::fs::metadata(&binary).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o755));
}

#[test]
fn install_tightens_a_config_toml_others_can_read() {
    need_engine!("install_config_mode");
    let mut host = Host::new();
    let name = host.container("install-config-mode");
    let pass_file = host.private_file("passphrase", "install passphrase\n");
    let mut args = vec![
        "--image",
        IMAGE,
        "--passphrase-file",
        pass_file.to_str().unwrap(),
    ];
    args.extend(CHEAP_KDF);
    // Registered already (by hand, say), but left readable by everyone.
    host.with_config("config.toml");
    let text = std::fs::read_to_string(host.config_toml())
        .unwrap()
        .replace("name = \"my-runner\"", &format!("name = \"{name}\""));
    std::fs::write(host.config_toml(), text).unwrap();
    std::fs::set_permissions(
        host.config_toml(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let done = host.runner("install", &name, &args).ok();
    assert!(
        done.stderr.contains(
            "register: already registered; unchanged\nconfigure: 10 change(s)\n  set `concurrent`"
        ),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains(
            "\n  tightened the file's mode from 0644 to 0600: it holds the runners' tokens, \
             which group and others must not read\nstart: "
        ),
        "{}",
        done.stderr
    );
    assert_eq!(mode(&host.config_toml()), 0o600);
}
