//! Plaintext views in RAM: refresh, the host's list of views refreshed on
//! every change, doctor's view checks, and the boot-time systemd unit.

use std::process::Command;

use crate::support::{
    Host, Runs, Tmpfs, fixtures, give_to_other_user, mode, owned_by_other_user_error, ownership,
    require_root,
};

fn host_with_vault() -> Host {
    let host = Host::new();
    host.keygen();
    host.run_key(&["init"], b"").ok();
    host.run_key(
        &[
            "import",
            fixtures().join("legacy/vault.yml").to_str().unwrap(),
        ],
        b"",
    )
    .ok();
    host
}

#[test]
fn a_view_on_a_disk_filesystem_is_refused_and_nothing_is_created() {
    let host = host_with_vault();
    let disk = host.root.path().join("disk-view");
    let run = host.run_key(&["view", "refresh", "--out", disk.to_str().unwrap()], b"");
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}` is not on tmpfs or ramfs: a plaintext view must never reach a disk; use a RAM \
             directory (e.g. under /run) or pass --allow-disk if you accept that\n",
            disk.display()
        )
    );
    assert!(!disk.exists());
    host.run_key(
        &[
            "view",
            "refresh",
            "--out",
            disk.to_str().unwrap(),
            "--allow-disk",
        ],
        b"",
    )
    .ok();
    assert_eq!(mode(&disk), 0o700);
}

#[test]
fn views_follow_every_change_and_equal_the_export() {
    if !require_root("views_follow_every_change_and_equal_the_export") {
        return;
    }
    let host = host_with_vault();
    let _ram = Tmpfs::mount(&host.root.path().join("run"), "size=4m,mode=0755");
    let view = host.root.path().join("run/view");
    let run = host
        .run_key(&["view", "add", view.to_str().unwrap()], b"")
        .ok();
    assert!(run.stderr.starts_with("added view"), "{}", run.stderr);
    assert_eq!(mode(&view), 0o700);
    assert_eq!(mode(&view.join("vault.yml")), 0o600);
    assert_eq!(mode(&view.join("vault.salt")), 0o600);
    let export = |host: &Host| {
        host.run_key(&["export", "--format", "yaml"], b"")
            .ok()
            .stdout
    };
    assert_eq!(
        std::fs::read(view.join("vault.yml")).unwrap(),
        export(&host)
    );
    assert_eq!(
        std::fs::read(view.join("vault.salt")).unwrap(),
        std::fs::read(host.salt_file()).unwrap()
    );
    let plain: serde_yaml::Value =
        serde_yaml::from_slice(&std::fs::read(view.join("vault.yml")).unwrap()).unwrap();
    let legacy: serde_yaml::Value =
        serde_yaml::from_slice(&std::fs::read(fixtures().join("legacy/vault.yml")).unwrap())
            .unwrap();
    assert_eq!(
        plain, legacy,
        "the hand-made shape: nesting, key names and typed scalars"
    );

    host.run_key(
        &["set", "SNOWFLAKE.TRANSFORM.PASSWORD", "--stdin"],
        b"rotated",
    )
    .ok();
    assert_eq!(
        std::fs::read(view.join("vault.yml")).unwrap(),
        export(&host)
    );
    host.run_key(&["rm", "AWS.DEFAULT.S3_SECRET"], b"").ok();
    let text = std::fs::read_to_string(view.join("vault.yml")).unwrap();
    assert!(!text.contains("S3_SECRET"), "removed paths leave the view");
    host.run_key(&["rekey", "--new-salt"], b"").ok();
    assert_eq!(
        std::fs::read(view.join("vault.salt")).unwrap(),
        std::fs::read(host.salt_file()).unwrap()
    );
    assert_eq!(
        std::fs::read(view.join("vault.yml")).unwrap(),
        export(&host)
    );
    let encrypted = String::from_utf8(host.vault_bytes()).unwrap();
    assert!(
        !encrypted.contains("rotated"),
        "the encrypted directory never holds plaintext"
    );

    let listing = host.run_key(&["view", "list", "--json"], b"").ok();
    let rows: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(rows[0]["current"], true);
    assert_eq!(rows[0]["on_ram"], true);
    let doctor = host.run_key(&["doctor"], b"").ok();
    assert!(
        doctor.out().contains("ok   view.current"),
        "{}",
        doctor.out()
    );

    // A change made with another views file leaves this view stale: doctor fails.
    let mut cmd = host.command();
    cmd.env("RUNVAULT_VIEWS_FILE", host.root.path().join("other-views"))
        .arg("--key-file")
        .arg(host.key_file())
        .args(["set", "X", "--stdin"]);
    cmd.run_in(b"x").ok();
    let doctor = host.run_key(&["doctor"], b"");
    assert_eq!(doctor.code, 1);
    assert!(
        doctor.out().contains("FAIL view.current"),
        "{}",
        doctor.out()
    );
    host.run_key(&["view", "refresh", "--all"], b"").ok();
    host.run_key(&["doctor"], b"").ok();

    host.run_key(&["view", "remove", view.to_str().unwrap()], b"")
        .ok();
    assert!(
        !view.join("vault.yml").exists(),
        "remove deletes the plaintext"
    );
}

#[test]
fn a_failed_refresh_is_loud_and_leaves_the_change_committed() {
    if !require_root("a_failed_refresh_is_loud_and_leaves_the_change_committed") {
        return;
    }
    let host = host_with_vault();
    let ram_dir = host.root.path().join("run");
    let _ram = Tmpfs::mount(&ram_dir, "size=4m,mode=0755");
    let view = ram_dir.join("view");
    host.run_key(&["view", "add", view.to_str().unwrap()], b"")
        .ok();
    let status = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&ram_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let run = host.run_key(
        &["set", "SNOWFLAKE.TRANSFORM.PASSWORD", "--stdin"],
        b"while-ro",
    );
    let _ = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&ram_dir)
        .status();
    assert_eq!(run.code, 0, "the change itself succeeded");
    assert!(
        run.stderr.contains(&format!(
            "runvault: warning: the change is committed, but view `{}` was not refreshed",
            view.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        host.run_key(&["get", "SNOWFLAKE.TRANSFORM.PASSWORD"], b"")
            .ok()
            .stdout,
        b"while-ro"
    );
    host.run_key(&["view", "refresh", "--all"], b"").ok();
    assert!(
        std::fs::read_to_string(view.join("vault.yml"))
            .unwrap()
            .contains("while-ro")
    );
}

#[test]
fn the_boot_unit_refreshes_views_before_docker() {
    let host = host_with_vault();
    let units = host.root.path().join("units");
    let run = host
        .run_key(
            &[
                "view",
                "install-unit",
                "--unit-dir",
                units.to_str().unwrap(),
                "--binary",
                env!("CARGO_BIN_EXE_runvault"),
            ],
            b"",
        )
        .ok();
    assert!(
        run.stderr
            .contains("systemctl enable runvault-views.service"),
        "{}",
        run.stderr
    );
    let unit_path = units.join("runvault-views.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    // Parsed as systemd reads it: sections and key=value lines.
    let mut section = String::new();
    let mut entries = Vec::new();
    for line in unit
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else {
            let (key, value) = line.split_once('=').expect("key=value");
            entries.push((section.clone(), key.to_string(), value.to_string()));
        }
    }
    let get = |s: &str, k: &str| {
        entries
            .iter()
            .find(|(a, b, _)| a == s && b == k)
            .map(|(_, _, v)| v.clone())
    };
    assert_eq!(get("Unit", "Before").as_deref(), Some("docker.service"));
    assert_eq!(get("Service", "Type").as_deref(), Some("oneshot"));
    let exec = get("Service", "ExecStart").unwrap();
    assert!(exec.starts_with(env!("CARGO_BIN_EXE_runvault")), "{exec}");
    assert!(
        exec.contains(&format!("--key-file {}", host.key_file().display())),
        "{exec}"
    );
    assert!(
        exec.contains(&format!("--views-file {}", host.views_file().display())),
        "{exec}"
    );
    assert!(exec.ends_with("view refresh --all"), "{exec}");
    if let Ok(output) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
    {
        assert!(
            output.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    } else {
        eprintln!("systemd-analyze not installed: the unit was checked by parsing only");
    }
}

#[test]
fn readers_never_touch_the_views_file() {
    // A views file that cannot be read (here a directory): a writer says
    // so loudly, a reader (every job's get or exec) never even opens it.
    let host = host_with_vault();
    std::fs::create_dir_all(host.views_file()).unwrap();
    let get = host.run_key(&["get", "SNOWFLAKE.ACCOUNT"], b"").ok();
    assert_eq!(get.stderr, "", "a reader printed: {}", get.stderr);
    let set = host.run_key(&["set", "A", "--stdin"], b"v").ok();
    assert!(
        set.stderr
            .contains("runvault: warning: views will not be refreshed"),
        "{}",
        set.stderr
    );
}

#[test]
fn a_view_inside_the_secrets_directory_is_refused() {
    let host = host_with_vault();
    for view in [host.dir().join("view"), host.dir().join("a/b")] {
        let out = view.to_str().unwrap();
        for args in [
            &["view", "refresh", "--out", out, "--allow-disk"][..],
            &["view", "add", out, "--allow-disk"],
        ] {
            let run = host.run_key(args, b"");
            assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
            assert_eq!(
                run.stderr,
                format!(
                    "runvault: error: `{out}` is the vault directory or inside it; a view must \
                     live elsewhere\n"
                )
            );
            assert!(!view.exists(), "{args:?} created `{out}`");
        }
    }
    assert!(!host.views_file().exists(), "no view was added");
}

#[test]
fn a_view_directory_or_file_another_user_owns_is_refused_untouched() {
    if !require_root("a_view_directory_or_file_another_user_owns_is_refused_untouched") {
        return;
    }
    let host = host_with_vault();
    let view = host.root.path().join("view");
    let out = view.to_str().unwrap();
    let refresh = ["view", "refresh", "--out", out, "--allow-disk"];

    // A directory made in advance by another user.
    std::fs::create_dir(&view).unwrap();
    std::fs::set_permissions(&view, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    give_to_other_user(&view);
    let run = host.run_key(&refresh, b"");
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        owned_by_other_user_error("view directory", &view)
    );
    assert_eq!(ownership(&view), (65534, 0o700, Vec::new()));
    assert_eq!(
        std::fs::read_dir(&view).unwrap().count(),
        0,
        "nothing written"
    );

    // Our directory, but a view file made in advance by another user.
    std::os::unix::fs::chown(&view, Some(0), Some(0)).unwrap();
    let planted = view.join("vault.yml");
    crate::support::write_private(&planted, b"mine");
    give_to_other_user(&planted);
    let run = host.run_key(&refresh, b"");
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, owned_by_other_user_error("view file", &planted));
    assert_eq!(ownership(&planted), (65534, 0o600, b"mine".to_vec()));
    assert_eq!(
        std::fs::read_dir(&view).unwrap().count(),
        1,
        "no other view file written"
    );

    // Removed, the view is written, owned by the caller.
    std::fs::remove_file(&planted).unwrap();
    host.run_key(&refresh, b"").ok();
    let (uid, mode, _) = ownership(&planted);
    assert_eq!((uid, mode), (0, 0o600));
}

/// `set` on `host` (all of it owned by `nobody`) as `nobody`, on a host
/// whose `/etc/runvault/views` is root's and closed to it; `views_option`
/// names the views file explicitly when given.
fn set_as_nobody_beside_root_views(host: &Host, views_option: &[&str]) -> crate::support::Run {
    let mut cmd = host.command();
    // Nor a layout file: the host's own default (root's, closed to this user).
    cmd.env_remove("RUNVAULT_VIEWS_FILE")
        .env_remove("RUNVAULT_CONFIG")
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .args(views_option)
        .args(["set", "QUICK.START", "--generate"]);
    crate::support::as_nobody_beside_etc_runvault(&cmd, "/dev/shm/root-view\n").run()
}

#[test]
fn a_user_vault_beside_roots_unreadable_views_file_changes_without_a_warning() {
    if !require_root("a_user_vault_beside_roots_unreadable_views_file_changes_without_a_warning") {
        return;
    }
    let host = Host::new();
    host.init();
    let chown = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(host.root.path())
        .status()
        .unwrap();
    assert!(chown.success());

    // The default views file, closed to this user, is none of its vault's
    // business: not a word (a debug line with -vv).
    let note = "set `QUICK.START` (version 1) (generated; read it with `runvault get`)\n";
    let run = set_as_nobody_beside_root_views(&host, &[]).ok();
    assert_eq!(run.stderr, note);
    let run = set_as_nobody_beside_root_views(&host, &["-vv"]).ok();
    assert!(
        run.stderr.contains(
            "the host's views file is not readable by this user, whose own vault it cannot list"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);

    // Named explicitly, the same file warns: the admin asked for its views.
    let run = set_as_nobody_beside_root_views(&host, &["--views-file", "/etc/runvault/views"]).ok();
    assert_eq!(
        run.stderr,
        "runvault: warning: views will not be refreshed: cannot open `/etc/runvault/views`: \
         Permission denied (os error 13)\n\
         set `QUICK.START` (version 3) (generated; read it with `runvault get`)\n"
    );
}
