//! `runvault runner configure` on fixture config.toml files, and the errors
//! that need no engine (usage, engine unreachable), run as a user would.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{Host, Runs, runvault};

const WANTED: &str = "\"/app:/local_config:rw\", \"/agent_cache:/agent_cache:rw\"";

#[test]
fn configure_applies_the_manual_steps_once_then_reports_unchanged() {
    let host = Host::new();
    host.with_config("config.toml");
    let done = host.runner("configure", "my-runner", &[]).ok();
    let path = host.config_toml().display().to_string();
    assert_eq!(
        done.stderr,
        format!(
            "set `concurrent` to 8 (was 1)\n\
             set `check_interval` to 1 (was 0)\n\
             runner `my-runner`: added environment `RUNVAULT_DIR=/secrets`\n\
             runner `my-runner`: added environment `RUNVAULT_KEY_FILE={key}`\n\
             runner `my-runner`: added volume `/app:/local_config:rw`\n\
             runner `my-runner`: added volume `/agent_cache:/agent_cache:rw`\n\
             runner `my-runner`: added volume `{secrets}:/secrets:ro`\n\
             runner `my-runner`: added volume `{keys}:{keys}:ro`\n\
             runner `my-runner`: added volume `{bin}:{bin}:ro`\n\
             updated `{path}`\n",
            key = host.key_file().display(),
            secrets = host.dir().display(),
            keys = host.path("keys").display(),
            bin = host.bin_dir().display(),
        )
    );
    let once = std::fs::read(host.config_toml()).unwrap();
    let text = String::from_utf8_lossy(&once);
    assert!(text.contains(&format!(
        "    volumes = [\"/cache\", {WANTED}, {}]\n",
        host.job_mounts()
    )));
    assert!(text.contains(&format!(
        "  executor = \"docker\"\n  environment = {}\n",
        host.job_environment()
    )));
    assert!(text.starts_with("concurrent = 8\ncheck_interval = 1\n"));
    let mode = std::fs::metadata(host.config_toml())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let done = host.runner("configure", "my-runner", &[]).ok();
    assert_eq!(done.stderr, format!("`{path}`: unchanged\n"));
    assert_eq!(
        std::fs::read(host.config_toml()).unwrap(),
        once,
        "second run changed bytes"
    );
}

#[test]
fn two_runners_with_comments_are_both_configured_and_comments_survive() {
    let host = Host::new();
    host.with_config("two-runners.toml");
    host.runner("configure", "first", &[]).ok();
    let text = std::fs::read_to_string(host.config_toml()).unwrap();
    let mounts = host.job_mounts();
    assert!(text.contains(&format!("volumes = [\"/cache\", {WANTED}, {mounts}]\n")));
    assert!(text.contains(&format!(
        "volumes = [\"/cache\", \"/data:/data:ro\", {WANTED}, {mounts}] # site data\n"
    )));
    for comment in [
        "# Managed by hand on host sg-1; runvault keeps these comments.",
        "concurrent = 8 # jobs at once",
        "# The first runner picks up Singapore jobs.",
        "    # the cache volume stays",
        "# London.",
    ] {
        assert!(text.contains(comment), "lost {comment:?} in\n{text}");
    }
    let once = text.clone();
    host.runner("configure", "first", &[]).ok();
    assert_eq!(std::fs::read_to_string(host.config_toml()).unwrap(), once);
}

#[test]
fn missing_docker_table_is_created() {
    let host = Host::new();
    host.with_config("no-docker-table.toml");
    let done = host.runner("configure", "no-docker", &[]).ok();
    assert!(
        done.stderr
            .contains("\nrunner `no-docker`: created [runners.docker]\n"),
        "{}",
        done.stderr
    );
    let text = std::fs::read_to_string(host.config_toml()).unwrap();
    assert!(text.ends_with(&format!(
        "    [runners.cache.gcs]\n  [runners.docker]\n    volumes = [{WANTED}, {}]\n",
        host.job_mounts()
    )));
}

#[test]
fn read_write_and_single_file_secrets_mounts_are_replaced() {
    let host = Host::new();
    host.with_config("secrets-rw.toml");
    let done = host.runner("configure", "rw-secrets", &[]).ok();
    let dir = host.dir().display().to_string();
    assert!(done.stderr.contains(&format!(
        "runner `rw-secrets`: replaced volume `/secrets:/secrets:rw` with `{dir}:/secrets:ro` \
         (the secrets directory must be mounted whole and read-only)\n"
    )));
    assert!(done.stderr.contains(
        "runner `rw-secrets`: removed volume `/secrets/vault.yml:/secrets/vault.yml:ro` \
         (the secrets directory is mounted whole)\n"
    ));
    let text = std::fs::read_to_string(host.config_toml()).unwrap();
    let (keys, bin) = (host.path("keys"), host.bin_dir());
    assert!(text.contains(&format!(
        "volumes = [\"/cache\", \"{dir}:/secrets:ro\", {WANTED}, \"{0}:{0}:ro\", \"{1}:{1}:ro\"]\n",
        keys.display(),
        bin.display()
    )));
}

#[test]
fn check_prints_the_diff_exits_1_and_writes_nothing() {
    let host = Host::new();
    host.with_config("config.toml");
    let before = std::fs::read(host.config_toml()).unwrap();
    let path = host.config_toml().display().to_string();
    let done = host.runner("configure", "my-runner", &["--check"]).fails(1);
    assert!(done.out().starts_with(&format!(
        "--- {path}\n+++ {path} (configured)\n@@ -1,5 +1,5 @@\n-concurrent = 1\n-check_interval = 0\n+concurrent = 8\n+check_interval = 1\n"
    )), "{}", done.out());
    assert!(
        done.out()
            .contains("-    volumes = [\"/cache\"]\n+    volumes = [\"/cache\", ")
    );
    assert!(done.stderr.ends_with(&format!(
        "runvault: error: `{path}` needs the changes shown above; run `runvault runner configure \
         --name my-runner --config-dir {} --dir {} --key-file {} --bin-dir {}` to apply them\n",
        host.config_dir().display(),
        host.dir().display(),
        host.key_file().display(),
        host.bin_dir().display(),
    )), "{}", done.stderr);
    assert_eq!(std::fs::read(host.config_toml()).unwrap(), before);
    // The hint, pasted with no layout file to fill in, applies the same
    // change `--check` showed.
    assert!(!host.layout_file().exists());
    let hint = done.stderr.clone();
    host.paste_hint(&hint).ok();
    host.runner("configure", "my-runner", &["--check"]).ok();
    // Options that change what is set are carried too.
    std::fs::write(host.config_toml(), &before).unwrap();
    let done = host
        .runner(
            "configure",
            "my-runner",
            &["--check", "--concurrent", "3", "--no-agent-cache"],
        )
        .fails(1);
    assert!(
        done.stderr
            .contains(" --concurrent 3 --no-agent-cache` to apply them\n"),
        "{}",
        done.stderr
    );
    host.paste_hint(&done.stderr).ok();
    host.runner(
        "configure",
        "my-runner",
        &["--check", "--concurrent", "3", "--no-agent-cache"],
    )
    .ok();
    std::fs::write(host.config_toml(), &before).unwrap();

    host.runner("configure", "my-runner", &[]).ok();
    let done = host.runner("configure", "my-runner", &["--check"]).ok();
    assert_eq!(done.out(), "");
    assert_eq!(done.stderr, format!("`{path}`: unchanged\n"));
}

#[test]
fn opt_outs_and_a_single_runner() {
    let host = Host::new();
    host.with_config("two-runners.toml");
    host.runner(
        "configure",
        "x",
        &[
            "--runner",
            "second",
            "--no-local-config",
            "--no-agent-cache",
            "--concurrent",
            "3",
        ],
    )
    .ok();
    let text = std::fs::read_to_string(host.config_toml()).unwrap();
    assert!(text.contains("concurrent = 3 # jobs at once"));
    assert!(
        text.contains("    volumes = [\"/cache\"]\n"),
        "first runner untouched"
    );
    assert!(text.contains(&format!(
        "volumes = [\"/cache\", \"/data:/data:ro\", {}] # site data\n",
        host.job_mounts()
    )));
    let done = host
        .runner("configure", "x", &["--runner", "nope"])
        .fails(1);
    assert_eq!(
        done.stderr,
        format!(
            "runvault: error: `{}` has no runner named `nope` (runners: first, second)\n",
            host.config_toml().display()
        )
    );
}

#[test]
fn invalid_toml_is_reported_with_line_and_column_and_left_untouched() {
    let host = Host::new();
    host.with_config("invalid.toml");
    let before = std::fs::read(host.config_toml()).unwrap();
    let done = host.runner("configure", "broken", &[]).fails(1);
    assert_eq!(
        done.stderr,
        format!(
            "runvault: error: `{}` is not valid TOML at line 5, column 17: invalid basic string, \
             expected `\"`; the file was not changed\n",
            host.config_toml().display()
        )
    );
    assert_eq!(std::fs::read(host.config_toml()).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(host.config_dir()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temp file is left behind");
}

#[test]
fn missing_config_says_register_first() {
    let host = Host::new();
    let done = host.runner("configure", "x", &[]).fails(1);
    assert_eq!(done.stderr, host.no_config_error("x", ""));
}

#[test]
fn relative_secrets_dir_is_made_absolute() {
    let host = Host::new();
    host.with_config("config.toml");
    std::fs::create_dir(host.dir()).unwrap();
    let args = [
        "runner",
        "configure",
        "--name",
        "x",
        "--config-dir",
        "config",
        "--dir",
        "secrets",
    ];
    let args: Vec<String> = args.iter().map(std::string::ToString::to_string).collect();
    runvault().args(&args).current_dir(host.root.path()).ok();
    let canonical = host.dir().canonicalize().unwrap();
    let text = std::fs::read_to_string(host.config_toml()).unwrap();
    assert!(
        text.contains(&format!("\"{}:/secrets:ro\"", canonical.display())),
        "{text}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let done = runvault().args(["runner", "status"]).fails(2);
    assert_eq!(
        done.stderr,
        "runvault: error: no runner name: pass --name NAME or set AGENT_NAME\n"
    );
    let done = runvault()
        .args(["runner", "start", "--name", "bad/name"])
        .fails(2);
    assert!(
        done.stderr
            .contains("`bad/name` is not a valid runner name")
    );
    runvault()
        .args(["runner", "configure", "--name", "x", "--concurrent", "0"])
        .fails(2);
}

#[test]
fn engine_unreachable_exits_7_with_the_documented_message() {
    let host = Host::new();
    for command in ["status", "start", "stop", "logs"] {
        let done = host
            .runner(command, "x", &["--docker-host", "unix:///nonexistent.sock"])
            .fails(7);
        assert_eq!(
            done.stderr,
            "runvault: error: cannot reach the Docker engine at `unix:///nonexistent.sock`: \
             socket not found: /nonexistent.sock; start it (`sudo systemctl start docker`, or \
             `sudo dockerd &`) or point --docker-host / DOCKER_HOST at a running engine\n"
        );
    }
    // DOCKER_HOST is honoured the same way.
    let done = host
        .runner("status", "x", &[])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .fails(7);
    assert!(done.stderr.contains("`unix:///nonexistent.sock`"));
    // A TCP address where nothing listens.
    let done = host
        .runner("status", "x", &["--docker-host", "tcp://127.0.0.1:1"])
        .fails(7);
    assert!(
        done.stderr.starts_with(
            "runvault: error: cannot reach the Docker engine at `tcp://127.0.0.1:1`: "
        ),
        "{}",
        done.stderr
    );
}

#[test]
fn register_without_token_or_terminal_is_a_usage_error() {
    if std::fs::File::open("/dev/tty").is_ok() {
        eprintln!("skipped: a terminal is attached, runvault would ask on it");
        return;
    }
    let host = Host::new();
    let done = host
        .runner(
            "register",
            "x",
            &["--docker-host", "unix:///nonexistent.sock"],
        )
        .fails(2);
    assert_eq!(
        done.stderr,
        "runvault: error: no registration token: pass --token-file FILE (mode 0600), set \
         REGISTRATION_TOKEN, or run on a terminal to be asked\n"
    );
}

#[test]
fn job_directories_inside_one_another_are_a_usage_error() {
    let host = Host::new();
    host.with_config("config.toml");
    let before = std::fs::read(host.config_toml()).unwrap();
    let inside = host.dir().join("bin");
    let (config, secrets) = (host.config_dir(), host.dir());
    let done = runvault()
        .args([
            "runner",
            "configure",
            "--name",
            "my-runner",
            "--config-dir",
            config.to_str().unwrap(),
            "--dir",
            secrets.to_str().unwrap(),
            "--bin-dir",
            inside.to_str().unwrap(),
        ])
        .fails(2);
    assert_eq!(
        done.stderr,
        format!(
            "runvault: error: the secrets directory `{}` and the binary directory `{}` overlap; \
             each is mounted into jobs on its own, so keep them apart (e.g. /secrets, \
             /etc/runvault, /opt/runvault/bin)\n",
            host.dir().display(),
            inside.display()
        )
    );
    assert_eq!(std::fs::read(host.config_toml()).unwrap(), before);
}

#[test]
fn install_with_an_unreadable_binary_changes_nothing() {
    let host = Host::new();
    let missing = host.path("no-such-runvault");
    let done = host
        .runner(
            "install",
            "x",
            &[
                "--binary",
                missing.to_str().unwrap(),
                "--docker-host",
                "unix:///nonexistent.sock",
            ],
        )
        .fails(2);
    assert_eq!(
        done.stderr,
        format!(
            "runvault: error: --binary `{}` cannot be read: No such file or directory (os error 2)\n",
            missing.display()
        )
    );
    assert!(!host.key_file().exists(), "no key was created");
    assert!(!host.dir().exists(), "no vault was created");
}

#[test]
fn configure_tightens_a_config_toml_others_can_read_and_says_so() {
    let host = Host::new();
    host.with_config("config.toml");
    let config = host.config_toml();
    let path = config.display().to_string();
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let mode = || std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777;
    let tightened = |old: &str| {
        format!(
            "tightened the file's mode from {old} to 0600: it holds the runners' tokens, which \
             group and others must not read\n"
        )
    };

    // With the wiring to add: written 0600, and the note among the changes.
    set_mode(0o644);
    let done = host.runner("configure", "my-runner", &[]).ok();
    assert!(
        done.stderr
            .ends_with(&format!("{}updated `{path}`\n", tightened("0644"))),
        "{}",
        done.stderr
    );
    assert_eq!(mode(), 0o600);

    // Only the mode wrong: --check reports it and changes nothing; then it
    // is narrowed in place, the bytes untouched.
    set_mode(0o664);
    let bytes = std::fs::read(&config).unwrap();
    let done = host.runner("configure", "my-runner", &["--check"]).fails(1);
    assert!(
        done.stderr.starts_with(&tightened("0664")),
        "{}",
        done.stderr
    );
    assert_eq!(mode(), 0o664);
    let done = host.runner("configure", "my-runner", &[]).ok();
    assert_eq!(
        done.stderr,
        format!("{}updated `{path}`\n", tightened("0664"))
    );
    assert_eq!(mode(), 0o600);
    assert_eq!(std::fs::read(&config).unwrap(), bytes);
    let done = host.runner("configure", "my-runner", &[]).ok();
    assert_eq!(done.stderr, format!("`{path}`: unchanged\n"));
}

/// `runner configure` on `host`'s config with this secrets directory, key
/// file and binary directory.
fn configure_with(host: &Host, dir: &Path, key_file: &Path, bin_dir: &Path) -> crate::support::Run {
    host.bare_command()
        .args(["runner", "configure", "--name", "my-runner", "--config-dir"])
        .arg(host.config_dir())
        .arg("--dir")
        .arg(dir)
        .arg("--key-file")
        .arg(key_file)
        .arg("--bin-dir")
        .arg(bin_dir)
        .ok()
}

#[test]
fn moved_directories_replace_their_mounts_and_never_pile_up() {
    let host = Host::new();
    host.with_config("config.toml");
    // The binary directory holds the binary, as `runner install` leaves it.
    std::fs::create_dir_all(host.bin_dir()).unwrap();
    std::fs::write(host.bin_dir().join("runvault"), b"#!/bin/sh\n").unwrap();
    host.runner("configure", "my-runner", &[]).ok();

    let (dir, keys, bin) = (host.path("srv"), host.path("etc-rv"), host.path("lib-rv"));
    let key_file = keys.join("machine.key");
    let done = configure_with(&host, &dir, &key_file, &bin);
    let (old_keys, old_bin) = (host.path("keys"), host.bin_dir());
    assert_eq!(
        done.stderr,
        format!(
            "runner `my-runner`: replaced environment `RUNVAULT_KEY_FILE={old_key}` with \
             `RUNVAULT_KEY_FILE={key}`\n\
             runner `my-runner`: replaced volume `{old_dir}:/secrets:ro` with `{dir}:/secrets:ro` \
             (the secrets directory is now `{dir}`)\n\
             runner `my-runner`: replaced volume `{old_keys}:{old_keys}:ro` with \
             `{keys}:{keys}:ro` (the key directory is now `{keys}`)\n\
             runner `my-runner`: replaced volume `{old_bin}:{old_bin}:ro` with \
             `{bin}:{bin}:ro` (the binary directory is now `{bin}`)\n\
             updated `{path}`\n",
            old_key = host.key_file().display(),
            key = key_file.display(),
            old_dir = host.dir().display(),
            dir = dir.display(),
            old_keys = old_keys.display(),
            keys = keys.display(),
            old_bin = old_bin.display(),
            bin = bin.display(),
            path = host.config_toml().display(),
        )
    );
    let text = std::fs::read_to_string(host.config_toml()).unwrap();
    assert!(
        text.contains(&format!(
            "    volumes = [\"/cache\", {WANTED}, \"{dir}:/secrets:ro\", \"{keys}:{keys}:ro\", \
             \"{bin}:{bin}:ro\"]\n",
            dir = dir.display(),
            keys = keys.display(),
            bin = bin.display(),
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "  environment = [\"RUNVAULT_DIR=/secrets\", \"RUNVAULT_KEY_FILE={}\"]\n",
        key_file.display()
    )));

    let again = configure_with(&host, &dir, &key_file, &bin);
    assert_eq!(
        again.stderr,
        format!("`{}`: unchanged\n", host.config_toml().display())
    );
    assert_eq!(std::fs::read_to_string(host.config_toml()).unwrap(), text);
}

#[test]
fn configure_records_the_layout_and_later_commands_need_no_path_flags() {
    let host = Host::new();
    host.with_config("config.toml");
    let (dir, key_file, bin) = (
        host.path("srv"),
        host.path("etc-rv/machine.key"),
        host.path("lib-rv"),
    );
    configure_with(&host, &dir, &key_file, &bin);
    let layout = std::fs::read_to_string(host.layout_file()).unwrap();
    for line in [
        format!("secrets_dir = \"{}\"\n", dir.display()),
        format!("key_file = \"{}\"\n", key_file.display()),
        format!("bin_dir = \"{}\"\n", bin.display()),
        format!(
            "[runners.my-runner]\nconfig_dir = \"{}\"\n",
            host.config_dir().display()
        ),
    ] {
        assert!(layout.contains(&line), "{line} not in:\n{layout}");
    }
    assert_eq!(crate::support::mode(&host.layout_file()), 0o644);

    // No path flags: the layout file gives them, the host is as configured.
    let check = |extra: &[&str], env: &[(&str, &Path)]| {
        let mut cmd = host.bare_command();
        cmd.args(["runner", "configure", "--check", "--name", "my-runner"])
            .args(extra);
        for (name, value) in env {
            cmd.env(name, value);
        }
        cmd.run()
    };
    let unchanged = check(&[], &[]).ok();
    assert_eq!(
        unchanged.stderr,
        format!("`{}`: unchanged\n", host.config_toml().display())
    );
    // A flag beats the file, and so does the environment.
    let other = host.path("other");
    let flag = check(&["--dir", other.to_str().unwrap()], &[]).fails(1);
    assert!(
        flag.stderr
            .contains(&format!("with `{}:/secrets:ro`", other.display()))
    );
    let env = check(&[], &[("RUNVAULT_DIR", &other)]).fails(1);
    assert!(
        env.stderr
            .contains(&format!("with `{}:/secrets:ro`", other.display()))
    );
    // --check records nothing.
    assert_eq!(std::fs::read_to_string(host.layout_file()).unwrap(), layout);
}

#[test]
fn a_layout_file_that_is_not_valid_is_an_error_naming_it() {
    let host = Host::new();
    std::fs::write(host.layout_file(), "bin_dir = \"relative\"\n").unwrap();
    let run = host.bare_command().args(["list"]).fails(1);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: layout file `{}`: `bin_dir` must be an absolute path (a string \
             starting with `/`); fix or remove that line\n",
            host.layout_file().display()
        )
    );
}

#[test]
fn a_config_without_runners_names_the_register_command_with_its_options() {
    let host = Host::new();
    std::fs::create_dir_all(host.config_dir()).unwrap();
    std::fs::write(host.config_toml(), "concurrent = 1\n").unwrap();
    let done = host
        .runner("configure", "x", &["--image", "registry.example/runner:1"])
        .fails(1);
    assert_eq!(
        done.stderr,
        format!(
            "runvault: error: `{}`: there is no [[runners]] section; register a runner first \
             with `runvault runner register --name x --config-dir {} --image \
             registry.example/runner:1`; the file was not changed\n",
            host.config_toml().display(),
            host.config_dir().display()
        )
    );
}
