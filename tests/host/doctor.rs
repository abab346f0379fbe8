//! `runvault doctor` on healthy and deliberately broken host layouts.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Host, Runs, findings, fixtures, status_of};

fn healthy() -> Host {
    let host = Host::new();
    host.keygen();
    host.run_key(&["init"], b"").ok();
    host.run_key(&["set", "SNOWFLAKE.TRANSFORM.PASSWORD", "--stdin"], b"pw")
        .ok();
    host
}

fn doctor(host: &Host) -> (i32, serde_json::Value) {
    let run = host.run_key(&["doctor", "--json"], b"");
    (
        run.code,
        serde_json::from_slice(&run.stdout).expect("doctor --json prints JSON"),
    )
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_healthy_host_passes_every_check() {
    let host = healthy();
    let run = host.run_key(&["doctor"], b"").ok();
    assert!(
        run.out().ends_with("20 ok, 1 warn, 0 fail\n"),
        "{}",
        run.out()
    );
    // `keygen FILE` and `init --dir DIR` recorded the layout.
    assert!(
        run.out().starts_with(&format!(
            "ok   layout.file                  defaults from the layout file `{}`\n",
            host.layout_file().display()
        )),
        "{}",
        run.out()
    );
    assert!(!run.out().contains("pw\n"), "no value printed");
    let (code, report) = doctor(&host);
    assert_eq!(code, 0);
    assert_eq!(report["fail"], 0);
}

/// Every host check the docs name has its line on a healthy host, ok
/// ones included, in the documented order, so scripts can match on ids.
#[test]
fn a_healthy_host_reports_every_host_check_by_id() {
    let host = healthy();
    let (_, report) = doctor(&host);
    let ids: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
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
            "vault.verify",
            "vault.rollback",
            "vault.rotation",
            "keyfile.exists",
            "keyfile.owner",
            "keyfile.mode",
            "keyfile.location",
            "views",
            "runner.skipped",
        ]
    );
    assert_eq!(
        findings(&report, "vault.encrypted"),
        vec![(
            "ok".into(),
            format!(
                "`{}` is an encrypted runvault vault",
                host.vault_file().display()
            ),
            String::new()
        )]
    );
}

#[test]
fn open_modes_symlinks_and_stray_files_are_reported() {
    let host = healthy();
    chmod(&host.dir(), 0o755);
    chmod(&host.vault_file(), 0o644);
    std::fs::write(host.dir().join(".vault.yml.abc123.rvtmp"), b"x").unwrap();
    let (code, report) = doctor(&host);
    assert_eq!(code, 1);
    assert_eq!(status_of(&report, "secrets.dir.mode"), "fail");
    assert_eq!(status_of(&report, "vault.file.mode"), "fail");
    assert_eq!(status_of(&report, "secrets.stray"), "warn");
    let text = host.run_key(&["doctor"], b"");
    assert_eq!(text.code, 1);
    assert!(
        text.out()
            .contains(&format!("(hint: run `chmod 700 {}`)", host.dir().display())),
        "{}",
        text.out()
    );
    assert_eq!(
        text.stderr,
        "runvault: error: doctor found problems (see the FAIL lines above)\n"
    );
    assert_eq!(
        host.run_key(&["doctor", "--json"], b"").stderr,
        "runvault: error: doctor found problems (see the findings with \"status\": \"fail\")\n"
    );

    chmod(&host.dir(), 0o700);
    let real = host.root.path().join("real.yml");
    std::fs::rename(host.vault_file(), &real).unwrap();
    std::os::unix::fs::symlink(&real, host.vault_file()).unwrap();
    let (_, report) = doctor(&host);
    assert_eq!(status_of(&report, "vault.file.mode"), "fail");
}

#[test]
fn a_plaintext_vault_and_weak_salt_fail_with_the_adopt_hint() {
    let host = Host::new();
    std::fs::create_dir_all(host.dir()).unwrap();
    chmod(&host.dir(), 0o700);
    std::fs::copy(fixtures().join("legacy/vault.yml"), host.vault_file()).unwrap();
    std::fs::copy(fixtures().join("legacy/vault.salt"), host.salt_file()).unwrap();
    chmod(&host.vault_file(), 0o600);
    chmod(&host.salt_file(), 0o600);
    let run = host.run_raw(&["doctor"], b"");
    assert_eq!(run.code, 1);
    assert!(run.out().contains("FAIL vault.encrypted"), "{}", run.out());
    assert!(run.out().contains(&format!(
        "adopt it in place with `runvault init --dir {}`",
        host.dir().display()
    )));
    assert!(
        run.out().contains(&format!(
            "FAIL salt.strength                `{}` looks hand-made (20 hex characters, as \
             `echo $RANDOM | md5sum | head -c 20` makes): about 15 bits of entropy",
            host.salt_file().display()
        )),
        "{}",
        run.out()
    );
    assert!(!run.out().contains("Tr@nsf0rm"), "no value printed");
}

#[test]
fn a_tampered_vault_fails_verification() {
    let host = Host::new();
    std::fs::create_dir_all(host.dir()).unwrap();
    chmod(&host.dir(), 0o700);
    std::fs::copy(
        fixtures().join("tampered/swapped-values.yml"),
        host.vault_file(),
    )
    .unwrap();
    std::fs::copy(fixtures().join("vault-v1/vault.salt"), host.salt_file()).unwrap();
    chmod(&host.vault_file(), 0o600);
    chmod(&host.salt_file(), 0o600);
    crate::support::write_private(
        &host.key_file(),
        &std::fs::read(fixtures().join("vault-v1/test-only.key")).unwrap(),
    );
    let (code, report) = doctor(&host);
    assert_eq!(code, 1);
    assert_eq!(status_of(&report, "vault.verify"), "fail");
    assert_eq!(
        status_of(&report, "vault.file.mode"),
        "ok",
        "only the content is wrong"
    );
}

#[test]
fn key_file_problems_are_reported() {
    let host = healthy();
    chmod(&host.key_file(), 0o644);
    let run = host.run_raw(
        &[
            "doctor",
            "--json",
            "--key-file",
            host.key_file().to_str().unwrap(),
        ],
        b"",
    );
    // An open key file is refused for unlocking too (exit 1 before any check).
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("is accessible by group or others"),
        "{}",
        run.stderr
    );
    chmod(&host.key_file(), 0o400);

    let inside = host.dir().join("vault.key");
    std::fs::copy(host.key_file(), &inside).unwrap();
    chmod(&inside, 0o400);
    let mut cmd = host.command();
    cmd.arg("--key-file")
        .arg(&inside)
        .args(["doctor", "--json"]);
    let run = cmd.run_in(b"");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(status_of(&report, "keyfile.location"), "fail");

    // With no secret given, doctor says it could not verify rather than passing.
    let run = host.run_raw(&["doctor", "--json"], b"");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(status_of(&report, "vault.verify"), "warn");
}

#[test]
fn files_not_owned_by_root_fail() {
    if std::env::var("CI").is_err() && !crate::support::is_root() {
        eprintln!("skipped files_not_owned_by_root_fail: needs root to chown");
        return;
    }
    let host = healthy();
    let status = std::process::Command::new("chown")
        .arg("nobody")
        .arg(host.salt_file())
        .status()
        .unwrap();
    assert!(status.success());
    let (code, report) = doctor(&host);
    assert_eq!(code, 1);
    assert_eq!(status_of(&report, "salt.file.owner"), "fail");
}

#[test]
fn a_plaintext_vault_where_an_encrypted_one_was_fails_vault_replaced() {
    let host = healthy();
    std::fs::write(host.vault_file(), "A: planted\n").unwrap();
    let run = host.run_raw(&["doctor", "--json"], b"");
    assert_eq!(run.code, 1);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(status_of(&report, "vault.encrypted"), "fail");
    assert_eq!(status_of(&report, "vault.replaced"), "fail");
    let text = host.run_raw(&["doctor"], b"");
    assert!(
        text.out().contains(&format!(
            "FAIL vault.replaced               `{dir}` held an encrypted vault (a strong salt in \
             `{dir}/vault.salt`, 2 committed change(s) in `{dir}/audit.log`, the high-water mark `",
            dir = host.dir().display()
        )),
        "{}",
        text.out()
    );
    assert!(
        text.out().contains(&format!(
            "(hint: find out who wrote `{}` and restore the encrypted vault.yml from a backup; \
             `runvault init --force --dir {}` adopts the plaintext anyway)",
            host.vault_file().display(),
            host.dir().display()
        )),
        "{}",
        text.out()
    );
    assert!(!text.out().contains("adopt it in place"), "{}", text.out());
}

#[test]
fn vault_rollback_warns_without_a_readable_mark() {
    let host = healthy();
    let (_, report) = doctor(&host);
    assert_eq!(status_of(&report, "vault.rollback"), "ok");
    let empty = host.root.path().join("empty-state");
    let blocked = host.root.path().join("blocked");
    std::fs::write(&blocked, b"").unwrap();
    for state in [empty, blocked.join("state")] {
        let run = host.run_key(
            &["--state-dir", state.to_str().unwrap(), "doctor", "--json"],
            b"",
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(status_of(&report, "vault.rollback"), "warn", "{report}");
    }
}

#[test]
fn a_view_not_owned_by_root_fails() {
    if !crate::support::require_root("a_view_not_owned_by_root_fails") {
        return;
    }
    let host = healthy();
    let view = host.root.path().join("view");
    host.run_key(
        &["view", "add", view.to_str().unwrap(), "--allow-disk"],
        b"",
    )
    .ok();
    let owner = |report: &serde_json::Value| {
        let (status, message, _) = findings(report, "view.owner").swap_remove(0);
        (status, message)
    };
    let (_, report) = doctor(&host);
    assert_eq!(
        owner(&report),
        (
            "ok".into(),
            format!("view `{}` and its files are owned by root", view.display())
        )
    );
    for path in [view.join("vault.yml"), view.clone()] {
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let (code, report) = doctor(&host);
        assert_eq!(code, 1);
        assert_eq!(
            owner(&report),
            (
                "fail".into(),
                format!("`{}` is owned by uid 65534, not root", path.display())
            )
        );
        assert_eq!(
            status_of(&report, "view.mode"),
            "ok",
            "the mode alone looks fine"
        );
    }
}

/// A host laid out for root, as a user who may not read its files: the
/// vault directory 0700 root, the key file's and the views file's
/// directories 0700 root (the Debian package's `/etc/runvault`).
fn doctor_as_nobody(host: &Host, extra: &[&str]) -> crate::support::Run {
    std::fs::set_permissions(host.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let etc = host.path("etc");
    std::fs::create_dir(&etc).unwrap();
    chmod(&etc, 0o700);
    crate::support::write_private(&etc.join("views"), b"/run/runvault-test-view\n");
    let mut cmd = host.command();
    cmd.env("RUNVAULT_VIEWS_FILE", etc.join("views"))
        .arg("--key-file")
        .arg(host.key_file())
        .arg("doctor")
        .args(extra);
    crate::support::as_nobody(&cmd).run()
}

#[test]
fn doctor_as_a_user_other_than_root_says_what_it_could_not_check() {
    if !crate::support::require_root(
        "doctor_as_a_user_other_than_root_says_what_it_could_not_check",
    ) {
        return;
    }
    let host = healthy();
    chmod(&host.path("keys"), 0o700);
    let run = doctor_as_nobody(&host, &["--json"]).ok();
    assert_eq!(run.stderr, "");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let first = &report["findings"][0];
    assert_eq!(first["check"], "doctor.user", "{report}");
    assert_eq!(first["status"], "warn");
    assert_eq!(
        first["message"],
        "not running as root (uid 65534): 10 check(s) could not be made: \
         vault.file.owner, vault.file.mode, salt.file.owner, salt.file.mode, secrets.stray, \
         secrets.plaintext, salt.strength, vault.encrypted, keyfile.exists, views"
    );
    assert_eq!(
        findings(&report, "keyfile.exists"),
        vec![(
            "warn".into(),
            format!(
                "`{}` cannot be read by uid 65534 (permission denied): not checked",
                host.key_file().display()
            ),
            "run `runvault doctor` as root to check it".into()
        )]
    );
    assert_eq!(status_of(&report, "secrets.dir.mode"), "ok", "{report}");
    let text = doctor_as_nobody_again(&host);
    for wrong in [
        "missing",
        "does not exist",
        "runvault init",
        "keygen",
        "create",
    ] {
        assert!(!text.contains(wrong), "{wrong}: {text}");
    }
    assert!(
        text.contains(&format!(
            "warn vault.file.mode              `{}` cannot be read by uid 65534 (permission denied): \
             not checked (hint: run `runvault doctor` as root to check it)",
            host.vault_file().display()
        )),
        "{text}"
    );
}

/// The text report of [`doctor_as_nobody`] on a host already prepared.
fn doctor_as_nobody_again(host: &Host) -> String {
    let mut cmd = host.command();
    cmd.env("RUNVAULT_VIEWS_FILE", host.path("etc/views"))
        .arg("--key-file")
        .arg(host.key_file())
        .arg("doctor");
    crate::support::as_nobody(&cmd).run().ok().out()
}

/// A plaintext copy left in the secrets directory (which every job gets)
/// fails `secrets.plaintext`; an encrypted backup copy does not.
#[test]
fn a_plaintext_copy_in_the_secrets_directory_fails() {
    let host = healthy();
    std::fs::copy(host.vault_file(), host.dir().join("vault.yml.enc-backup")).unwrap();
    let (code, report) = doctor(&host);
    assert_eq!(code, 0);
    assert_eq!(
        findings(&report, "secrets.plaintext"),
        vec![(
            "ok".into(),
            format!("no plaintext vault copy in `{}`", host.dir().display()),
            String::new()
        )]
    );
    let copy = host.dir().join("vault.yml.bak");
    std::fs::copy(fixtures().join("legacy/vault.yml"), &copy).unwrap();
    let (code, report) = doctor(&host);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&report, "secrets.plaintext"),
        vec![(
            "fail".into(),
            format!(
                "`{}` in `{}` is a plaintext vault: every job gets this directory mounted",
                copy.display(),
                host.dir().display()
            ),
            format!(
                "delete it (`shred -u {}`) and rotate the credentials it holds",
                copy.display()
            )
        )]
    );
    assert!(
        !report.to_string().contains("Tr@nsf0rm"),
        "no value printed"
    );
}

#[test]
fn doctors_runner_install_hints_carry_the_options_it_was_given() {
    let host = healthy();
    // No config.toml and no binary directory yet; an engine that is not
    // there (the runner's own checks fail, the hints still name it).
    let socket = host.root.path().join("no-docker.sock");
    let docker = format!("unix://{}", socket.display());
    let run = host
        .run_key(
            &[
                "doctor",
                "--json",
                "--name",
                "london",
                "--config-dir",
                host.config_dir().to_str().unwrap(),
                "--bin-dir",
                host.bin_dir().to_str().unwrap(),
                "--docker-host",
                &docker,
            ],
            b"",
        )
        .fails(1);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let install = format!(
        "runvault runner install --name london --config-dir {} --docker-host {docker} --dir {} \
         --key-file {} --bin-dir {}",
        host.config_dir().display(),
        host.dir().display(),
        host.key_file().display(),
        host.bin_dir().display()
    );
    let (_, _, hint) = findings(&report, "config.parse").swap_remove(0);
    assert_eq!(
        hint,
        format!("register the runner with `{install}` (or pass --config-dir)")
    );
    let (_, _, hint) = findings(&report, "bin.dir.owner").swap_remove(0);
    assert_eq!(
        hint,
        format!("put the binary there with `{install}` (or pass --bin-dir)")
    );
    // Pasted, it is the install doctor meant: it parses as one (the whole
    // install, with a registration, runs in tests/engine/runner_engine.rs).
    let pasted = host.paste_hint(&hint).arg("--help").ok();
    assert!(
        pasted.out().starts_with("The whole procedure"),
        "{}",
        pasted.out()
    );
}
