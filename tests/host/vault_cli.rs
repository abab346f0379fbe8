//! The vault commands as an admin uses them: the real binary in temp dirs.

use std::fmt::Write as _;

use crate::support::{
    CHEAP_KDF, Host, PASSPHRASE, Runs, fixtures, give_to_other_user, mode,
    owned_by_other_user_error, ownership, write_private,
};

#[test]
fn init_creates_private_dir_vault_and_strong_salt() {
    let host = Host::new();
    host.init();
    assert_eq!(mode(&host.dir()), 0o700);
    assert_eq!(mode(&host.vault_file()), 0o600);
    assert_eq!(mode(&host.salt_file()), 0o600);
    let salt = std::fs::read(host.salt_file()).unwrap();
    assert_eq!(salt.len(), 64, "32 random bytes as hex");
    assert!(salt.iter().all(u8::is_ascii_hexdigit));
    let yaml: serde_yaml::Value =
        serde_yaml::from_slice(&host.vault_bytes()).expect("any YAML tool reads it");
    assert_eq!(yaml["runvault"]["format"].as_u64(), Some(1));
    assert_eq!(
        host.dir_listing(),
        [".runvault.lock", "audit.log", "vault.salt", "vault.yml"]
    );
}

#[test]
fn init_on_an_encrypted_vault_changes_nothing() {
    let host = Host::new();
    host.init();
    let before = host.vault_bytes();
    let run = host.run(&["init"]).ok();
    assert_eq!(
        run.stderr,
        format!(
            "`{}` is already an encrypted runvault vault; nothing changed\n",
            host.vault_file().display()
        )
    );
    assert_eq!(host.vault_bytes(), before);
}

#[test]
fn set_get_round_trip_from_stdin_file_and_generator() {
    let host = Host::new();
    host.init();
    host.set("SNOWFLAKE.TRANSFORM.PASSWORD", b"s3cr3t\n");
    assert_eq!(
        host.get("SNOWFLAKE.TRANSFORM.PASSWORD"),
        b"s3cr3t",
        "one trailing newline dropped from stdin"
    );

    let binary: Vec<u8> = vec![0xff, 0x00, 0xfe, b'\n', 0x80, b'\n'];
    let file = host.root.path().join("blob");
    std::fs::write(&file, &binary).unwrap();
    host.run(&["set", "CERTS.BLOB", "--from-file", file.to_str().unwrap()])
        .ok();
    assert_eq!(
        host.get("CERTS.BLOB"),
        binary,
        "non-UTF-8 bytes come back exactly"
    );

    let big: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&file, &big).unwrap();
    host.run(&["set", "BIG.VALUE", "--from-file", file.to_str().unwrap()])
        .ok();
    assert_eq!(host.get("BIG.VALUE"), big);

    let run = host
        .run(&["set", "AWS.DEFAULT.S3_SECRET", "--generate", "40"])
        .ok();
    assert_eq!(
        run.stderr,
        "set `AWS.DEFAULT.S3_SECRET` (version 1) (generated; read it with `runvault get`)\n"
    );
    let generated = host.get("AWS.DEFAULT.S3_SECRET");
    assert_eq!(generated.len(), 40);
    assert!(generated.iter().all(u8::is_ascii_alphanumeric));
    assert_ne!(
        generated,
        host.run(&["set", "X", "--generate"]).ok().stdout,
        "nothing printed"
    );
    assert_eq!(host.get("X").len(), 32, "default length");

    let run = host.run_in(
        &["set", "SNOWFLAKE.TRANSFORM.PASSWORD", "--stdin"],
        b"rotated",
    );
    assert_eq!(
        run.ok().stderr,
        "set `SNOWFLAKE.TRANSFORM.PASSWORD` (version 2)\n"
    );
    assert_eq!(host.get("SNOWFLAKE.TRANSFORM.PASSWORD"), b"rotated");
}

#[test]
fn values_never_appear_in_the_vault_file_or_listings() {
    let host = Host::new();
    host.init();
    host.set("SNOWFLAKE.TRANSFORM.PASSWORD", b"UniqueSecretValue123");
    let file = String::from_utf8(host.vault_bytes()).unwrap();
    assert!(
        file.contains("PASSWORD: rv1:"),
        "keys stay readable:\n{file}"
    );
    assert!(!file.contains("UniqueSecretValue123"));
    let list = host.run(&["list"]).ok();
    assert_eq!(list.out(), "SNOWFLAKE.TRANSFORM.PASSWORD\n");
    let json = host.run(&["list", "--json"]).ok();
    assert_eq!(json.out(), "[\"SNOWFLAKE.TRANSFORM.PASSWORD\"]\n");
}

#[test]
fn global_options_work_after_the_subcommand() {
    let host = Host::new();
    host.init();
    host.set("A.B", b"v");
    let mut cmd = host.bare_command();
    cmd.args(["get", "A.B", "--dir"])
        .arg(host.dir())
        .arg("--passphrase-file")
        .arg(host.pass_file());
    assert_eq!(cmd.run_in(b"").ok().stdout, b"v");
    let mut cmd = host.bare_command();
    cmd.env("RUNVAULT_DIR", host.dir())
        .env("RUNVAULT_PASSPHRASE_FILE", host.pass_file())
        .args(["get", "A.B"]);
    assert_eq!(
        cmd.run_in(b"").ok().stdout,
        b"v",
        "options from the environment"
    );
}

/// Issue 19 item 14: `init` warns about every directory mode `doctor`
/// fails (a group-writable one too), and not about the two it passes.
#[test]
fn init_warns_about_a_dir_mode_doctor_fails() {
    use std::os::unix::fs::PermissionsExt;
    for (mode, warning) in [
        (
            0o770,
            Some("writable by its group, which can replace the vault files"),
        ),
        (
            0o730,
            Some("writable by its group, which can replace the vault files"),
        ),
        (0o701, Some("open to other users")),
        (
            0o710,
            Some("not 0700 or 0750 as `runvault doctor` requires"),
        ),
        (0o750, None),
        (0o700, None),
    ] {
        let host = Host::new();
        std::fs::create_dir(host.dir()).unwrap();
        std::fs::set_permissions(host.dir(), std::fs::Permissions::from_mode(mode)).unwrap();
        let mut args = vec!["init"];
        args.extend(CHEAP_KDF);
        let run = host.run(&args).ok();
        let last = run.stderr.lines().last().unwrap_or("").to_string();
        match warning {
            Some(why) => assert_eq!(
                last,
                format!(
                    "runvault: warning: `{0}` is mode {mode:04o}, {why}; run `chmod 700 {0}`",
                    host.dir().display()
                )
            ),
            None => assert!(!run.stderr.contains("warning"), "{mode:o}: {}", run.stderr),
        }
        assert_eq!(
            mode & 0o777,
            crate::support::mode(&host.dir()) & 0o777,
            "init leaves the mode"
        );
    }
}

#[test]
fn adopt_encrypts_a_legacy_plaintext_vault_in_place() {
    let host = Host::new();
    std::fs::create_dir_all(host.dir()).unwrap();
    let legacy = std::fs::read(fixtures().join("legacy/vault.yml")).unwrap();
    std::fs::write(host.vault_file(), &legacy).unwrap();
    std::fs::copy(fixtures().join("legacy/vault.salt"), host.salt_file()).unwrap();
    let weak_salt = std::fs::read(host.salt_file()).unwrap();

    let mut args = vec!["init"];
    args.extend(CHEAP_KDF);
    let run = host.run(&args).ok();
    assert_eq!(
        run.stderr,
        format!(
            "adopted `{}`: encrypted 19 value(s) in place with a new 32-byte salt in vault.salt\n\
             runvault: warning: `{1}` is mode 0755, open to other users; run `chmod 700 {1}`\n",
            host.vault_file().display(),
            host.dir().display()
        )
    );
    let salt = std::fs::read(host.salt_file()).unwrap();
    assert_ne!(
        salt, weak_salt,
        "the hand-made 20-hex-character salt is replaced"
    );
    assert_eq!(salt.len(), 64);

    let file = String::from_utf8(host.vault_bytes()).unwrap();
    for secret in [
        "Tr@nsf0rm-s3cret!",
        "1ngest#pa55",
        "wJalrXUtnFEMI",
        "AKIAIOSFODNN7EXAMPLE",
        "xy12345",
    ] {
        assert!(!file.contains(secret), "{secret} left in plaintext");
    }
    assert_eq!(
        host.dir_listing(),
        [".runvault.lock", "audit.log", "vault.salt", "vault.yml"],
        "no plaintext copy or temp file"
    );

    assert_eq!(
        host.get("SNOWFLAKE.TRANSFORM.PASSWORD"),
        b"Tr@nsf0rm-s3cret!"
    );
    assert_eq!(host.get("EXTRAS.HOSTS[1]"), b"db2.internal");
    let exported = host.run(&["export"]).ok().stdout;
    let original: serde_yaml::Value = serde_yaml::from_slice(&legacy).unwrap();
    let round_trip: serde_yaml::Value = serde_yaml::from_slice(&exported).unwrap();
    assert_eq!(
        round_trip, original,
        "types and nesting survive: string \"5432\", int 8, float, bool, null, list"
    );
}

/// A hand-made `vault.yml` others could read (0644) is 0600 once adopted;
/// one closed to others keeps the group read the admin gave it (0640).
#[test]
fn the_plaintext_vault_hint_names_its_directory_and_can_be_pasted() {
    let host = Host::new();
    std::fs::create_dir_all(host.dir()).unwrap();
    std::fs::copy(fixtures().join("legacy/vault.yml"), host.vault_file()).unwrap();
    std::fs::copy(fixtures().join("legacy/vault.salt"), host.salt_file()).unwrap();

    // Run from elsewhere, as an admin would: the hint must name the
    // directory, or pasting it adopts `/secrets` instead.
    let failed = host.run(&["get", "SNOWFLAKE.ACCOUNT"]).fails(1);
    let hint = failed
        .stderr
        .split("adopt it with `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no hint: {}", failed.stderr))
        .to_string();
    assert_eq!(
        hint,
        format!("runvault init --dir {}", host.dir().display())
    );

    // The hint, pasted (with the admin's passphrase), adopts this vault.
    let mut args: Vec<&str> = hint.split(' ').skip(1).collect();
    args.extend(CHEAP_KDF);
    host.bare_command()
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .args(&args)
        .ok();
    let got = host.run(&["get", "SNOWFLAKE.ACCOUNT"]).ok();
    assert_eq!(got.out(), "xy12345.eu-west-1");
}

#[test]
fn adoption_of_a_world_readable_vault_leaves_it_0600() {
    for (before, after) in [
        (0o644, 0o600),
        (0o604, 0o600),
        (0o640, 0o640),
        (0o600, 0o600),
    ] {
        let host = Host::new();
        std::fs::create_dir_all(host.dir()).unwrap();
        std::fs::write(host.vault_file(), "A: b\n").unwrap();
        std::fs::set_permissions(
            host.vault_file(),
            std::os::unix::fs::PermissionsExt::from_mode(before),
        )
        .unwrap();
        let mut args = vec!["init"];
        args.extend(CHEAP_KDF);
        host.run(&args).ok();
        assert_eq!(
            crate::support::mode(&host.vault_file()),
            after,
            "{before:o}"
        );
        assert_eq!(host.get("A"), b"b");
    }
}

/// `init` adopting a hand-made vault warns about the plaintext copy the
/// admin kept beside it: every job gets that directory.
#[test]
fn init_warns_about_a_plaintext_copy_in_the_secrets_directory() {
    let host = Host::new();
    std::fs::create_dir_all(host.dir()).unwrap();
    std::fs::set_permissions(
        host.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let legacy = fixtures().join("legacy/vault.yml");
    std::fs::copy(&legacy, host.vault_file()).unwrap();
    let copy = host.dir().join("vault.yml.bak");
    std::fs::copy(&legacy, &copy).unwrap();
    let mut args = vec!["init"];
    args.extend(CHEAP_KDF);
    let run = host.run(&args).ok();
    assert_eq!(
        run.stderr,
        format!(
            "adopted `{vault}`: encrypted 19 value(s) in place with a new 32-byte salt in vault.salt\n\
             runvault: warning: `{copy}` is a plaintext vault in `{dir}`, which every job gets \
             mounted; delete it (`shred -u {copy}`) and rotate the credentials it holds\n",
            vault = host.vault_file().display(),
            copy = copy.display(),
            dir = host.dir().display()
        )
    );
}

#[test]
fn adopt_the_hand_made_empty_vault() {
    let host = Host::new();
    std::fs::create_dir_all(host.dir()).unwrap();
    std::fs::copy(fixtures().join("legacy/empty-vault.yml"), host.vault_file()).unwrap();
    let mut args = vec!["init"];
    args.extend(CHEAP_KDF);
    let run = host.run(&args).ok();
    assert!(run.stderr.starts_with("adopted"), "{}", run.stderr);
    assert_eq!(host.run(&["list"]).ok().out(), "");
    host.set("A", b"1");
    assert_eq!(host.run(&["export"]).ok().out(), "A: \"1\"\n");
}

#[test]
fn import_merges_and_export_formats_render_types() {
    let host = Host::new();
    host.init();
    host.set("SNOWFLAKE.TRANSFORM.PASSWORD", b"old");
    host.run(&[
        "import",
        fixtures().join("legacy/vault.yml").to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        host.get("SNOWFLAKE.TRANSFORM.PASSWORD"),
        b"Tr@nsf0rm-s3cret!",
        "import replaces"
    );
    let json = host
        .run(&["export", "EXTRAS", "--format", "json"])
        .ok()
        .out();
    assert_eq!(
        json,
        "{\"EXTRAS\":{\"PORT\":\"5432\",\"RATIO\":0.75,\"ENABLED\":true,\"NOTHING\":null,\"HOSTS\":[\"db1.internal\",\"db2.internal\"]}}\n"
    );
    let env = host
        .run(&["export", "SNOWFLAKE.TRANSFORM", "--format", "env"])
        .ok()
        .out();
    assert_eq!(
        env,
        "SNOWFLAKE_TRANSFORM_PASSWORD='Tr@nsf0rm-s3cret!'\nSNOWFLAKE_TRANSFORM_USERNAME='TRANSFORM_USER'\n\
         SNOWFLAKE_TRANSFORM_ROLE='TRANSFORMER'\nSNOWFLAKE_TRANSFORM_WAREHOUSE='TRANSFORM_WH'\nSNOWFLAKE_TRANSFORM_THREADS='8'\n"
    );
    let yaml = host.run(&["export", "EXTRAS"]).ok().out();
    assert_eq!(
        yaml,
        "EXTRAS:\n  PORT: \"5432\"\n  RATIO: 0.75\n  ENABLED: true\n  NOTHING: null\n  HOSTS:\n    - \"db1.internal\"\n    - \"db2.internal\"\n"
    );
}

#[test]
fn binary_values_round_trip_through_yaml_export_and_import() {
    let host = Host::new();
    host.init();
    let file = host.root.path().join("blob");
    std::fs::write(&file, [0u8, 159, 146, 150]).unwrap();
    host.run(&["set", "B.BLOB", "--from-file", file.to_str().unwrap()])
        .ok();
    let exported = host.run(&["export"]).ok().stdout;
    assert_eq!(
        String::from_utf8_lossy(&exported),
        "B:\n  BLOB: !binary AJ+Slg==\n"
    );
    let json = host.run(&["export", "--format", "json"]);
    assert_eq!(json.code, 1);
    assert!(
        json.stderr.contains("value at `B.BLOB` is not UTF-8 text"),
        "{}",
        json.stderr
    );

    let other = Host::new();
    other.init();
    let plain = other.root.path().join("plain.yml");
    std::fs::write(&plain, &exported).unwrap();
    other.run(&["import", plain.to_str().unwrap()]).ok();
    assert_eq!(other.get("B.BLOB"), [0u8, 159, 146, 150]);
}

#[test]
fn typed_set_validates_and_keeps_the_type() {
    let host = Host::new();
    host.init();
    host.run_in(&["set", "S.THREADS", "--stdin", "--type", "int"], b"8\n")
        .ok();
    host.run_in(&["set", "S.ON", "--stdin", "--type", "bool"], b"true")
        .ok();
    // `ON` is a YAML 1.1 boolean, so the key is quoted to stay a string for every YAML tool.
    assert_eq!(
        host.run(&["export"]).ok().out(),
        "S:\n  THREADS: 8\n  \"ON\": true\n"
    );
    let run = host.run_in(&["set", "S.THREADS", "--stdin", "--type", "int"], b"eight");
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            2,
            "runvault: error: cannot store the value at `S.THREADS` as Int: the value is not an integer\n"
        )
    );
}

#[test]
fn rm_removes_values_and_prunes_empty_parents() {
    let host = Host::new();
    host.init();
    host.set("A.B.C", b"1");
    host.set("A.D", b"2");
    let run = host.run(&["rm", "A.B.C"]).ok();
    assert_eq!(run.stderr, "removed `A.B.C` (1 value(s))\n");
    assert_eq!(host.run(&["export"]).ok().out(), "A:\n  D: \"2\"\n");
    let missing = host.run(&["get", "A.B.C"]);
    assert_eq!(
        (missing.code, missing.stderr.as_str()),
        (3, "runvault: error: path `A.B.C` not found in the vault\n")
    );
    let missing = host.run(&["rm", "NOPE"]);
    assert_eq!(missing.code, 3);
}

#[test]
fn get_of_a_missing_path_suggests_the_closest_paths_and_no_value() {
    let host = Host::new();
    host.init();
    for (path, value) in [
        ("SNOWFLAKE.TRANSFORM.USERNAME", "transformer-9d1e"),
        ("SNOWFLAKE.TRANSFORM.PASSWORD", "pw-5c2a77"),
        ("SNOWFLAKE.LOAD.PASSWORD", "pw-0b3f41"),
    ] {
        host.set(path, value.as_bytes());
    }
    for (wanted, near) in [
        (
            "SNOWFLAKE.TRANSFORM.PASWORD",
            "`SNOWFLAKE.TRANSFORM.PASSWORD`",
        ),
        ("snowflake.load.password", "`SNOWFLAKE.LOAD.PASSWORD`"),
        (
            "SNOWFLAKE.TRANSFORM.USER_NAME",
            "`SNOWFLAKE.TRANSFORM.USERNAME`",
        ),
    ] {
        let run = host.run(&["get", wanted]).fails(3);
        assert_eq!(run.stdout, b"");
        assert_eq!(
            run.stderr,
            format!(
                "runvault: error: path `{wanted}` not found in the vault; did you mean {near}? \
                 (every path: `runvault list`)\n"
            )
        );
    }
    // Nothing near: the plain message.
    let run = host.run(&["get", "AWS.KEY"]).fails(3);
    assert_eq!(
        run.stderr,
        "runvault: error: path `AWS.KEY` not found in the vault\n"
    );
}

#[test]
fn bad_paths_are_usage_errors_and_change_nothing() {
    let host = Host::new();
    host.init();
    host.set("A.B", b"1");
    let before = host.vault_bytes();
    for (path, message) in [
        ("A..B", "invalid path `A..B`: segment 2 is empty"),
        (".A", "invalid path `.A`: segment 1 is empty"),
        ("A.", "invalid path `A.`: segment 2 is empty"),
        ("A[x]", "invalid path `A[x]`: `[x]` is not a list index"),
    ] {
        let run = host.run_in(&["set", path, "--stdin"], b"v");
        assert_eq!(
            (run.code, run.stderr.clone()),
            (2, format!("runvault: error: {message}\n"))
        );
    }
    let run = host.run_in(&["set", "A.B.C", "--stdin"], b"v");
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "runvault: error: `A.B` holds a value, so `A.B.C` cannot be created under it\n"
    );
    let run = host.run(&["get", "A"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `A` is a mapping, not a value; use `runvault list A --dir {0}` or \
             `runvault export A --dir {0}`\n",
            host.dir().display()
        )
    );
    // The hint, pasted from anywhere (with the passphrase), lists this vault.
    let listed = host
        .paste_hint(&run.stderr.replace("` or `runvault export", "` or `"))
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .ok();
    assert_eq!(listed.out(), "A.B\n");
    assert_eq!(
        host.vault_bytes(),
        before,
        "failed commands leave the file byte-for-byte unchanged"
    );
}

#[test]
fn passphrase_and_key_file_slots_open_the_same_vault() {
    let host = Host::new();
    host.init_with_key_and_passphrase();
    assert_eq!(mode(&host.key_file()), 0o400);
    host.set("A.B", b"shared");
    assert_eq!(host.run_key(&["get", "A.B"], b"").ok().stdout, b"shared");
    let slots: serde_json::Value =
        serde_json::from_slice(&host.run(&["key", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(slots[0]["kind"], "keyfile");
    assert_eq!(slots[1]["kind"], "passphrase");
    assert_eq!(slots[1]["kdf"]["memory_kib"], 8);
    let text = host.run_key(&["key", "list"], b"").ok().out();
    assert!(text.starts_with("ID   KIND        CREATED"), "{text}");
    assert!(!text.contains(PASSPHRASE));
}

#[test]
fn key_slots_can_be_added_changed_and_removed_but_not_the_last() {
    let host = Host::new();
    host.init();
    host.set("A", b"v");
    let values_before: Vec<String> = value_lines(&host.vault_bytes());

    let second = host.root.path().join("second-pass");
    write_private(&second, b"second passphrase\n");
    let mut args = vec![
        "key",
        "add",
        "passphrase",
        "--new-passphrase-file",
        second.to_str().unwrap(),
    ];
    args.extend(CHEAP_KDF);
    assert_eq!(host.run(&args).ok().stderr, "added passphrase slot 2\n");
    let mut second_cmd = host.command();
    second_cmd
        .arg("--passphrase-file")
        .arg(&second)
        .args(["get", "A"]);
    assert_eq!(second_cmd.run_in(b"").ok().stdout, b"v");

    host.keygen();
    host.run(&["key", "add", "keyfile", host.key_file().to_str().unwrap()])
        .ok();
    assert_eq!(host.run_key(&["get", "A"], b"").ok().stdout, b"v");

    let third = host.root.path().join("third-pass");
    write_private(&third, b"third passphrase\n");
    let run = host
        .run(&[
            "key",
            "passwd",
            "2",
            "--new-passphrase-file",
            third.to_str().unwrap(),
        ])
        .ok();
    // Slot 1's passphrase opened the vault: any secret that opens it may
    // change a slot's passphrase (docs/admin-guide.md §5), and says which.
    assert_eq!(
        run.stderr,
        "changed the passphrase of slot 2, opened with slot 1's secret; no value was re-encrypted\n"
    );
    let mut own = host.command();
    own.arg("--passphrase-file")
        .arg(&third)
        .args(["key", "passwd", "2", "--new-passphrase-file"])
        .arg(&third)
        .args(CHEAP_KDF);
    assert_eq!(
        own.run_in(b"").ok().stderr,
        "changed the passphrase of slot 2; no value was re-encrypted\n"
    );
    assert_eq!(
        value_lines(&host.vault_bytes()),
        values_before,
        "passwd re-encrypts no value"
    );
    let mut old = host.command();
    old.arg("--passphrase-file").arg(&second).args(["get", "A"]);
    assert_eq!(
        old.run_in(b"").code,
        4,
        "the old passphrase of slot 2 no longer opens"
    );
    let mut new = host.command();
    new.arg("--passphrase-file").arg(&third).args(["get", "A"]);
    assert_eq!(new.run_in(b"").ok().stdout, b"v");

    let run = host.run(&[
        "key",
        "passwd",
        "3",
        "--new-passphrase-file",
        third.to_str().unwrap(),
    ]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            1,
            "runvault: error: slot 3 is a keyfile slot; `key passwd` changes passphrase slots only\n"
        )
    );

    let run = host.run(&["key", "remove", "1"]).ok();
    assert_eq!(
        run.stderr,
        format!(
            "removed slot 1; its secret still opens copies and backups of the vault made \
             before, and the data key stays the same until you run `runvault --dir {} \
             --state-dir {} --config {} rekey`\n",
            host.dir().display(),
            host.state_dir().display(),
            host.layout_file().display()
        )
    );
    host.run_key(&["key", "remove", "2"], b"").ok();
    let run = host.run_key(&["key", "remove", "3"], b"");
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "runvault: error: refusing to remove slot 3: it is the last key slot, and the vault could never be opened again\n"
    );
    assert_eq!(host.run(&["get", "A"]).code, 4, "slot 1 is gone");
    assert_eq!(host.run_key(&["get", "A"], b"").ok().stdout, b"v");
}

fn value_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| l.contains("rv1:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn wrong_passphrase_or_key_exits_4_without_changing_anything() {
    let host = Host::new();
    host.init_with_key_and_passphrase();
    let before = host.vault_bytes();
    let wrong = host.root.path().join("wrong");
    write_private(&wrong, b"not the passphrase\n");
    let mut cmd = host.command();
    cmd.arg("--passphrase-file")
        .arg(&wrong)
        .args(["set", "A", "--stdin"]);
    let run = cmd.run_in(b"v");
    assert_eq!(run.code, 4);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: wrong passphrase: no key slot of `{}` opens with it\n",
            host.vault_file().display()
        )
    );
    let other_key = host.root.path().join("other.key");
    host.run_raw(&["keygen", other_key.to_str().unwrap()], b"")
        .ok();
    let mut cmd = host.command();
    cmd.arg("--key-file").arg(&other_key).arg("list");
    let run = cmd.run_in(b"");
    assert_eq!(run.code, 4);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: wrong key file: no key slot of `{}` opens with it\n",
            host.vault_file().display()
        )
    );
    assert_eq!(host.vault_bytes(), before);
}

#[test]
fn secret_files_readable_by_others_are_refused() {
    let host = Host::new();
    host.init();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(host.pass_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = host.run(&["list"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: passphrase file `{0}` is accessible by group or others (mode 0644); run `chmod 600 {0}` first\n",
            host.pass_file().display()
        )
    );
    host.keygen();
    std::fs::set_permissions(host.key_file(), std::fs::Permissions::from_mode(0o440)).unwrap();
    let run = host.run_key(&["list"], b"");
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("key file `"), "{}", run.stderr);
    assert!(run.stderr.contains("(mode 0440)"), "{}", run.stderr);
}

#[test]
fn keygen_refuses_to_overwrite_a_key() {
    let host = Host::new();
    host.keygen();
    let key = std::fs::read(host.key_file()).unwrap();
    assert_eq!(key.len(), 65, "64 hex characters and a newline");
    let run = host.run_raw(&["keygen", host.key_file().to_str().unwrap()], b"");
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}` already exists; refusing to overwrite a key\n",
            host.key_file().display()
        )
    );
    assert_eq!(std::fs::read(host.key_file()).unwrap(), key);
}

#[test]
fn no_passphrase_and_no_terminal_is_a_clear_usage_error() {
    let host = Host::new();
    host.init();
    // setsid detaches from any controlling terminal, as under CI or cron.
    let mut cmd = std::process::Command::new("setsid");
    cmd.arg("-w")
        .arg(env!("CARGO_BIN_EXE_runvault"))
        .env_remove("RUNVAULT_PASSPHRASE_FILE")
        .env_remove("RUNVAULT_KEY_FILE")
        .arg("--dir")
        .arg(host.dir())
        .args(["get", "A"]);
    let run = cmd.run_in(b"");
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "runvault: error: no passphrase given and no terminal to ask on: pass --passphrase-file FILE (mode 0600) \
         or --key-file FILE, or set RUNVAULT_PASSPHRASE_FILE / RUNVAULT_KEY_FILE\n"
    );
}

#[test]
fn symlinked_vault_files_are_refused() {
    let host = Host::new();
    host.init();
    host.set("A", b"v");
    let real = host.root.path().join("real-vault.yml");
    std::fs::rename(host.vault_file(), &real).unwrap();
    std::os::unix::fs::symlink(&real, host.vault_file()).unwrap();
    let message = format!(
        "runvault: error: `{}` is a symbolic link; refusing to follow it (replace it with the real file)\n",
        host.vault_file().display()
    );
    let run = host.run(&["get", "A"]);
    assert_eq!((run.code, run.stderr.clone()), (1, message.clone()));
    let real_before = std::fs::read(&real).unwrap();
    let run = host.run_in(&["set", "A", "--stdin"], b"w");
    assert_eq!((run.code, run.stderr.clone()), (1, message));
    assert_eq!(std::fs::read(&real).unwrap(), real_before);
    assert!(
        std::fs::symlink_metadata(host.vault_file())
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn malformed_yaml_and_alias_bombs_fail_fast_with_clear_errors() {
    let host = Host::new();
    host.init();
    let bad = host.root.path().join("bad.yml");
    std::fs::write(&bad, "A:\n  B: [1, 2\n").unwrap();
    let run = host.run(&["import", bad.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(&format!(
            "runvault: error: `{}` is not valid YAML: ",
            bad.display()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("line 2"),
        "names the line: {}",
        run.stderr
    );

    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(",");
        let _ = writeln!(bomb, "{}: &{} [{refs}]", pair[1], pair[1]);
    }
    std::fs::write(&bad, &bomb).unwrap();
    let run = host.run(&["import", bad.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("too many aliases (repetition limit exceeded)"),
        "{}",
        run.stderr
    );

    // The same bomb as a hand-made vault.yml is refused by init as well.
    let other = Host::new();
    std::fs::create_dir_all(other.dir()).unwrap();
    std::fs::write(other.vault_file(), &bomb).unwrap();
    let mut args = vec!["init"];
    args.extend(CHEAP_KDF);
    let run = other.run(&args);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("repetition limit exceeded"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(other.vault_file()).unwrap(), bomb.as_bytes());
}

/// Issue 19 item 3: every kind of bad value, each carrying a canary, fed to
/// `import`, to `init` adopting a hand-made `vault.yml`, and to the readers
/// of a plaintext `vault.yml`, at `-vvv`: the canary is in no output, the
/// place is, and nothing on disk changes.
#[test]
fn yaml_errors_name_the_place_never_the_value() {
    const CANARY: &str = "Kq7Zcanary";
    const NUMBER: &str = "7319731973197319731973197319";
    let cases: &[(&str, &str)] = &[
        (
            "A:\n  B: 7319731973197319731973197319\n",
            "an integer too large to read; quote it to store it as text at `A.B` (line 2, column 6)",
        ),
        (
            "A: !!int 7319731973197319731973197319\n",
            "an integer too large to read; quote it to store it as text at `A` (line 1, column 4)",
        ),
        (
            "A: !!int \"Kq7Zcanary\"\n",
            "a value tagged `!!int` that is not an integer at `A` (line 1, column 4)",
        ),
        (
            "L:\n  - !!bool Kq7Zcanary\n",
            "a value tagged `!!bool` that is not `true` or `false` at `L[0]` (line 2, column 5)",
        ),
        (
            "A: !!float Kq7Zcanary\n",
            "a value tagged `!!float` that is not a number at `A` (line 1, column 4)",
        ),
        (
            "A: !!null Kq7Zcanary\n",
            "a value tagged `!!null` that is not empty or `null` at `A` (line 1, column 4)",
        ),
        (
            "A: !custom Kq7Zcanary\n",
            "unsupported value at `A`: tag `!custom` is not supported",
        ),
        (
            "A: Kq7Zcanary\nA: Kq7Zcanary\n",
            "the key `A` appears twice in one mapping (line 1, column 1)",
        ),
        (
            "A: *Kq7Zcanary\n",
            "an alias to an anchor that is not defined before it (line 1, column 4)",
        ),
        (
            "A: [Kq7Zcanary\n",
            "did not find expected ',' or ']' (line 2, column 1), while parsing a flow sequence \
             (line 1, column 4)",
        ),
        (
            "A: \"Kq7Zcanary\\q\"\n",
            "found unknown escape character (line 1, column 15), while parsing a quoted scalar \
             (line 1, column 4)",
        ),
        (
            "A: Kq7Zcanary\u{7}\n",
            "control characters are not allowed (byte 13)",
        ),
        (
            "? {B: Kq7Zcanary}\n: x\n",
            "unsupported key at ``: a mapping key; quote it to make it a string",
        ),
        (
            "A: !binary {B: Kq7Zcanary}\n",
            "unsupported value at `A`: `!!binary` must tag a string",
        ),
        (
            "A: !binary Kq7Zcanary!!\n",
            "unsupported value at `A`: `!binary` value is not valid base64",
        ),
        (
            "A: Kq7Zcanary\n---\nB: Kq7Zcanary\n",
            "more than one YAML document; a vault is one",
        ),
    ];
    let clean = |run: &crate::support::Run, what: &str| {
        for canary in [CANARY, NUMBER] {
            assert!(
                !run.stdout
                    .windows(canary.len())
                    .any(|w| w == canary.as_bytes())
                    && !run.stderr.contains(canary),
                "{what}: the value leaked:\n{}",
                run.stderr
            );
        }
    };
    let host = Host::new();
    host.keygen();
    let input = host.root.path().join("in.yml");
    for (yaml, problem) in cases {
        // import into an encrypted vault (created on the first turn)
        if !host.vault_file().exists() {
            let mut cmd = host.command();
            cmd.args(["--key-file", host.key_file().to_str().unwrap(), "init"]);
            cmd.run_in(b"").ok();
        }
        std::fs::write(&input, yaml).unwrap();
        let before = host.vault_bytes();
        let mut cmd = host.command();
        cmd.args(["-vvv", "--key-file", host.key_file().to_str().unwrap()])
            .args(["import", input.to_str().unwrap()]);
        let run = cmd.run_in(b"");
        clean(&run, &format!("import of {yaml:?}"));
        assert_eq!(run.code, 1, "import of {yaml:?}: {}", run.stderr);
        let expected_import = if problem.starts_with("unsupported") {
            format!("`{}`: {problem}", input.display())
        } else {
            format!("`{}` is not valid YAML: {problem}", input.display())
        };
        assert!(
            run.stderr
                .ends_with(&format!("runvault: error: {expected_import}\n")),
            "import of {yaml:?}: {}",
            run.stderr
        );
        assert_eq!(host.vault_bytes(), before);

        // init adopting it as a hand-made vault.yml, and every reader of it
        let plain = Host::new();
        plain.keygen();
        std::fs::create_dir_all(plain.dir()).unwrap();
        write_private(&plain.vault_file(), yaml.as_bytes());
        let key = plain.key_file();
        for args in [
            &["init"][..],
            &["get", "A"],
            &["list"],
            &["export"],
            &["verify"],
        ] {
            let mut cmd = plain.command();
            cmd.args(["-vvv", "--key-file", key.to_str().unwrap()])
                .args(args);
            let run = cmd.run_in(b"");
            clean(&run, &format!("{args:?} of {yaml:?}"));
            assert_ne!(run.code, 0, "{args:?} of {yaml:?}");
            if args == ["init"] {
                assert_eq!(run.code, 1, "init of {yaml:?}: {}", run.stderr);
                let file = plain.vault_file();
                let expected = if problem.starts_with("unsupported") {
                    format!("`{}`: {problem}", file.display())
                } else {
                    format!("`{}` is not valid YAML: {problem}", file.display())
                };
                assert!(
                    run.stderr
                        .ends_with(&format!("runvault: error: {expected}\n")),
                    "init of {yaml:?}: {}",
                    run.stderr
                );
            }
            assert_eq!(std::fs::read(plain.vault_file()).unwrap(), yaml.as_bytes());
        }
    }
}

#[test]
fn export_to_a_file_is_private_atomic_and_never_widens_access() {
    let host = Host::new();
    host.init();
    host.set("A", b"v");
    let out = host.root.path().join("plain.yml");
    let run = host.run(&["export", "-o", out.to_str().unwrap()]).ok();
    assert_eq!(
        run.stderr,
        format!("wrote plaintext to `{}` (mode 0600)\n", out.display())
    );
    assert_eq!(mode(&out), 0o600);
    assert_eq!(std::fs::read(&out).unwrap(), b"A: \"v\"\n");

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = host.run(&["export", "-o", out.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}` exists with mode 0644, readable by group or others; refusing to write plaintext \
             into it (remove it or `chmod 600` it first)\n",
            out.display()
        )
    );
    let inside = host.dir().join("plain.yml");
    let run = host.run(&["export", "-o", inside.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("refusing to write plaintext into the vault directory"),
        "{}",
        run.stderr
    );
    assert!(!inside.exists());
}

#[test]
fn a_writer_that_cannot_get_the_lock_exits_6_and_changes_nothing() {
    let host = Host::new();
    host.init();
    host.set("A", b"v");
    let before = host.vault_bytes();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(host.dir().join(".runvault.lock"))
        .unwrap();
    lock.lock().unwrap();
    let run = host.run_in(&["--wait", "0", "set", "A", "--stdin"], b"w");
    assert_eq!(run.code, 6);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: the vault is busy: another runvault command holds `{}` (waited 0 s); try again, or raise --wait\n",
            host.dir().join(".runvault.lock").display()
        )
    );
    assert_eq!(host.vault_bytes(), before);
    assert_eq!(host.get("A"), b"v", "readers take no lock");
    drop(lock);
    host.run_in(&["set", "A", "--stdin"], b"w").ok();
}

#[test]
fn missing_vault_says_how_to_create_one() {
    let host = Host::new();
    let run = host.run(&["get", "A"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: no vault in `{0}`: `vault.yml` does not exist; create one with `runvault init --dir {0}`\n",
            host.dir().display()
        )
    );
    assert!(!host.dir().exists(), "a read creates nothing");
}

/// A `--dir` typo with no secret given: the missing vault is reported
/// (exit 1) before any passphrase is asked for, so also without a
/// terminal, where asking would end in exit 2.
#[test]
fn a_missing_vault_is_reported_before_the_passphrase_is_asked() {
    let host = Host::new();
    host.init();
    let typo = host.path("secret");
    for args in [
        &["get", "A"][..],
        &["set", "A", "--generate"],
        &["list"],
        &["rekey"],
    ] {
        let run = host
            .bare_command()
            .arg("--dir")
            .arg(&typo)
            .args(args)
            .fails(1);
        assert_eq!(
            run.stderr,
            format!(
                "runvault: error: no vault in `{0}`: `vault.yml` does not exist; create one with `runvault init --dir {0}`\n",
                typo.display()
            ),
            "{args:?}"
        );
    }
    assert!(!typo.exists(), "nothing created");
}

#[test]
fn default_kdf_parameters_are_rfc_9106_second_recommendation() {
    let host = Host::new();
    host.run(&["init"]).ok();
    let slots: serde_json::Value =
        serde_json::from_slice(&host.run(&["key", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(
        slots[0]["kdf"],
        serde_json::json!({"algorithm": "argon2id", "memory_kib": 65536, "iterations": 3, "parallelism": 4})
    );
    host.set("A", b"v");
    assert_eq!(host.get("A"), b"v");
}

#[test]
fn help_documents_the_exit_codes() {
    let host = Host::new();
    let run = host.run_raw(&["--help"], b"").ok();
    for line in [
        "3  path not found",
        "4  wrong passphrase or key",
        "5  integrity failure",
        "6  vault busy",
    ] {
        assert!(run.out().contains(line), "--help lacks `{line}`");
    }
    assert_eq!(host.run_raw(&["frobnicate"], b"").code, 2);
}

/// Runs runvault under a pseudo-terminal (util-linux `script`), typing `typed`.
fn on_terminal(host: &Host, args: &str, typed: &[u8]) -> crate::support::Run {
    let line = format!(
        "{} --dir {} {args}",
        env!("CARGO_BIN_EXE_runvault"),
        host.dir().display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env("RUNVAULT_STATE_DIR", host.state_dir())
        .env("RUNVAULT_CONFIG", host.layout_file())
        .env_remove("RUNVAULT_PASSPHRASE_FILE")
        .env_remove("RUNVAULT_KEY_FILE");
    cmd.run_in(typed)
}

#[test]
fn passphrases_are_asked_on_the_terminal_twice_when_new() {
    let host = Host::new();
    let run = on_terminal(
        &host,
        &format!("init {}", CHEAP_KDF.join(" ")),
        b"one\ntwo\n",
    );
    assert_eq!(run.code, 2);
    assert!(
        run.out()
            .contains("runvault: error: the two entries do not match; nothing was changed"),
        "{}",
        run.out()
    );
    assert!(!host.dir().exists(), "a failed init leaves nothing behind");

    // A new passphrase has at least 12 characters.
    let run = on_terminal(
        &host,
        &format!("init {}", CHEAP_KDF.join(" ")),
        b"typed pass\ntyped pass\n",
    );
    assert_eq!(run.code, 2, "{}", run.out());
    assert!(
        run.out().contains(
            "runvault: error: the new passphrase is shorter than 12 characters; choose a longer \
             one (a few words), or pass --allow-short-passphrase for a throwaway vault; nothing \
             was changed"
        ),
        "{}",
        run.out()
    );
    assert!(!host.dir().exists(), "a refused init leaves nothing behind");

    let run = on_terminal(
        &host,
        &format!("init {}", CHEAP_KDF.join(" ")),
        b"typed passphrase\ntyped passphrase\n",
    );
    assert_eq!(run.code, 0, "{}", run.out());
    assert!(
        run.out().contains("New vault passphrase: "),
        "{}",
        run.out()
    );
    assert!(
        run.out().contains("Repeat the passphrase: "),
        "{}",
        run.out()
    );
    let run = on_terminal(
        &host,
        "set A.B",
        b"typed passphrase\nvalue one\nvalue one\n",
    );
    assert_eq!(run.code, 0, "{}", run.out());
    // The value's prompts name the path it is for.
    assert!(run.out().contains("Value for A.B: "), "{}", run.out());
    assert!(
        run.out().contains("Repeat the value for A.B: "),
        "{}",
        run.out()
    );
    let pass = host.root.path().join("typed");
    write_private(&pass, b"typed passphrase\n");
    let mut cmd = host.command();
    cmd.arg("--passphrase-file").arg(&pass).args(["get", "A.B"]);
    assert_eq!(cmd.run_in(b"").ok().stdout, b"value one");
}

#[test]
fn adopt_overwrites_the_replaced_plaintext_and_warns_about_other_links() {
    use std::io::Read;
    let host = Host::new();
    std::fs::create_dir_all(host.dir()).unwrap();
    std::fs::copy(fixtures().join("legacy/vault.yml"), host.vault_file()).unwrap();
    // A reader that opened the plaintext before the adoption keeps its inode.
    let mut old_inode = std::fs::File::open(host.vault_file()).unwrap();
    let mut args = vec!["init"];
    args.extend(CHEAP_KDF);
    host.run(&args).ok();
    let mut left = Vec::new();
    old_inode.read_to_end(&mut left).unwrap();
    assert!(!left.is_empty());
    assert!(
        left.iter().all(|&b| b == 0),
        "the unlinked plaintext inode is overwritten with zeros"
    );

    let other = Host::new();
    std::fs::create_dir_all(other.dir()).unwrap();
    std::fs::copy(fixtures().join("legacy/vault.yml"), other.vault_file()).unwrap();
    let backup = other.root.path().join("vault.yml.bak");
    std::fs::hard_link(other.vault_file(), &backup).unwrap();
    let run = other.run(&args).ok();
    assert!(
        run.stderr.contains(&format!(
            "runvault: warning: another hard link to the old plaintext `{}` still exists; find and \
             delete it",
            other.vault_file().display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&backup).unwrap(),
        std::fs::read(fixtures().join("legacy/vault.yml")).unwrap()
    );
}

#[test]
fn concurrent_writers_are_serialised_and_lose_nothing() {
    let host = Host::new();
    host.keygen();
    host.run_key(&["init"], b"").ok();
    let writers: Vec<_> = (0..6)
        .map(|writer| {
            let mut script = String::new();
            for i in 0..10 {
                let _ = writeln!(
                    script,
                    "printf 'value-{writer}-{i}' | {} --dir {} --key-file {} --wait 60 set W{writer}.P{i} --stdin || exit 1",
                    env!("CARGO_BIN_EXE_runvault"),
                    host.dir().display(),
                    host.key_file().display()
                );
            }
            std::process::Command::new("sh").arg("-c").arg(script).env("RUNVAULT_STATE_DIR", host.state_dir()).stderr(std::process::Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut writer in writers {
        assert!(writer.wait().unwrap().success());
    }
    host.run_key(&["verify"], b"").ok();
    let list = host.run_key(&["list"], b"").ok().out();
    assert_eq!(list.lines().count(), 60, "{list}");
    for writer in 0..6 {
        for i in 0..10 {
            let got = host
                .run_key(&["get", &format!("W{writer}.P{i}")], b"")
                .ok()
                .stdout;
            assert_eq!(got, format!("value-{writer}-{i}").as_bytes());
        }
    }
    assert_eq!(
        host.dir_listing(),
        [".runvault.lock", "audit.log", "vault.salt", "vault.yml"],
        "no temp file left"
    );
}

#[test]
fn a_plaintext_vault_planted_over_an_encrypted_one_is_not_adopted() {
    let host = Host::new();
    host.init();
    host.set("SNOWFLAKE.TRANSFORM.PASSWORD", b"real-password");
    std::fs::write(
        host.vault_file(),
        "SNOWFLAKE:\n  TRANSFORM:\n    PASSWORD: planted-password\n",
    )
    .unwrap();
    let yaml_marks: Vec<_> = std::fs::read_dir(host.state_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let replaced = format!(
        "runvault: error: `{vault}` is a plaintext vault, but `{dir}` held an encrypted vault \
         (a strong salt in `{dir}/vault.salt`, 2 committed change(s) in `{dir}/audit.log`, \
         the high-water mark `{mark}`): the vault may have been replaced; find out who wrote it \
         and restore the encrypted vault.yml from a backup (`runvault init --force --dir {dir}` \
         adopts the plaintext anyway)\n",
        vault = host.vault_file().display(),
        dir = host.dir().display(),
        mark = yaml_marks[0].display()
    );

    let get = host.run(&["get", "SNOWFLAKE.TRANSFORM.PASSWORD"]);
    assert_eq!((get.code, get.stderr.as_str()), (5, replaced.as_str()));
    assert!(get.stdout.is_empty());

    let before = host.snapshot();
    let mut init = vec!["init"];
    init.extend(CHEAP_KDF);
    let refused = host.run(&init);
    assert_eq!(
        (refused.code, refused.stderr.as_str()),
        (5, replaced.as_str())
    );
    assert_eq!(host.snapshot(), before, "a refused init changes nothing");

    // The hint, pasted (with the admin's passphrase), adopts it.
    let forced = host
        .paste_hint(&refused.stderr)
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .args(CHEAP_KDF)
        .ok();
    assert_eq!(
        forced.stderr,
        format!(
            "runvault: warning: adopted with --force although `{dir}` held an encrypted vault \
             (a strong salt in `{dir}/vault.salt`, 2 committed change(s) in `{dir}/audit.log`, \
             the high-water mark `{mark}`); the plaintext may have been planted: check its values\n\
             adopted `{vault}`: encrypted 1 value(s) in place\n",
            vault = host.vault_file().display(),
            dir = host.dir().display(),
            mark = yaml_marks[0].display()
        )
    );
    assert_eq!(
        host.get("SNOWFLAKE.TRANSFORM.PASSWORD"),
        b"planted-password"
    );
}

#[test]
fn each_sign_of_an_earlier_vault_alone_stops_adoption() {
    let plaintext = "A: planted\n";
    let refused = |host: &Host| {
        std::fs::write(host.vault_file(), plaintext).unwrap();
        let mut init = vec!["init"];
        init.extend(CHEAP_KDF);
        let run = host.run(&init);
        assert_eq!(run.code, 5, "{}", run.stderr);
        assert_eq!(
            std::fs::read_to_string(host.vault_file()).unwrap(),
            plaintext
        );
        run.stderr
    };
    // A strong salt only (a hand-made salt is weak: the legacy adoption test).
    let host = Host::new();
    std::fs::create_dir_all(host.dir()).unwrap();
    std::fs::write(host.salt_file(), "ab".repeat(32)).unwrap();
    assert!(refused(&host).contains(&format!(
        "held an encrypted vault (a strong salt in `{}`)",
        host.salt_file().display()
    )));
    // Committed changes in the audit log only; an aborted one does not count.
    let host = Host::new();
    host.init();
    host.set("A", b"1");
    std::fs::write(host.salt_file(), "3f1c9a0b7d2e4c6a8b1f").unwrap();
    std::fs::remove_dir_all(host.state_dir()).unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(host.dir().join("audit.log"))
        .unwrap();
    std::io::Write::write_all(
        &mut log,
        b"{\"time\":\"2026-12-05T09:00:00Z\",\"event\":\"aborted\",\"command\":\"set\"}\n",
    )
    .unwrap();
    assert!(refused(&host).contains(&format!(
        "held an encrypted vault (1 committed change(s) in `{}/audit.log`)",
        host.dir().display()
    )));
    // A high-water mark naming the directory only.
    std::fs::remove_file(host.dir().join("audit.log")).unwrap();
    let marks = host.root.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let dir = host.dir().canonicalize().unwrap();
    std::fs::write(
        marks.join("00112233445566778899aabbccddeeff.mark"),
        format!(
            "{{\"vault_id\":\"00112233445566778899aabbccddeeff\",\"generation\":7,\"dir\":\"{}\"}}\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut init = host.command();
    init.arg("--passphrase-file")
        .arg(host.pass_file())
        .arg("--state-dir")
        .arg(&marks)
        .arg("init");
    let run = init.run_in(b"");
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "held an encrypted vault (the high-water mark `{}/00112233445566778899aabbccddeeff.mark`)",
            marks.display()
        )),
        "{}",
        run.stderr
    );
    // With none of them, the hand-made file is adopted as before.
    let run = host.run(&["init"]).ok();
    assert!(run.stderr.starts_with("adopted "), "{}", run.stderr);
}

#[test]
fn export_refuses_an_output_file_another_user_made_in_advance() {
    if !crate::support::require_root("export_refuses_an_output_file_another_user_made_in_advance") {
        return;
    }
    let host = Host::new();
    host.init();
    host.set("A", b"canary-secret");
    let out = host.root.path().join("x.yml");
    write_private(&out, b"");
    give_to_other_user(&out);
    let before = ownership(&out);
    let run = host.run(&["export", "-o", out.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, owned_by_other_user_error("output file", &out));
    assert_eq!(ownership(&out), before, "owner, mode and bytes untouched");
    assert_eq!(before, (65534, 0o600, Vec::new()));
}

#[test]
fn a_sigkill_during_export_leaves_no_plaintext_behind() {
    // `RUNVAULT_STOP_AT` (debug builds) stops the process right after the
    // whole plaintext is written and fsynced, before it gets a name: the
    // moment the old writer had a complete `.NAME.XXXXXX.rvtmp` on disk.
    let host = Host::new();
    host.init();
    host.set("A", b"canary-7f3a9c");
    let out_dir = host.root.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("plain.yml");
    for existing in [None, Some(&b"old: 1\n"[..])] {
        if let Some(bytes) = existing {
            write_private(&out, bytes);
        }
        let mut child = host
            .command()
            .env("RUNVAULT_STOP_AT", "owned-file-written")
            .arg("--passphrase-file")
            .arg(host.pass_file())
            .args(["export", "-o", out.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        crate::support::wait_stopped(&mut child, "the stop point");
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&out_dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(13).any(|w| w == b"canary-7f3a9c"),
                "`{}` holds the plaintext after the kill",
                path.display()
            );
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        match existing {
            None => assert!(names.is_empty(), "{names:?}"),
            Some(bytes) => {
                assert_eq!(names, ["plain.yml"]);
                assert_eq!(std::fs::read(&out).unwrap(), bytes, "the old file stays");
            }
        }
    }
}

#[test]
fn setting_the_value_a_path_holds_writes_nothing_and_adds_no_version() {
    let host = Host::new();
    host.init();
    host.set("A.B", b"same");
    let audit = host.dir().join("audit.log");
    for tree_writer in [false, true] {
        if tree_writer {
            // A key written with escapes: `set` goes through the tree writer.
            let yaml = host.root.path().join("escaped.yml");
            write_private(&yaml, b"\"T\\\\U\": x\n");
            host.run(&["import", yaml.to_str().unwrap()]).ok();
        }
        let (before, log_before) = (host.vault_bytes(), std::fs::read(&audit).unwrap());
        for extra in [&[][..], &["--if-version", "1"]] {
            let mut args = vec!["-vv", "set", "A.B", "--stdin"];
            args.extend(extra);
            let run = host.run_in(&args, b"same").ok();
            let said = run.stderr.lines().last().unwrap().to_string();
            assert_eq!(
                said,
                "`A.B` already holds this value (version 1); unchanged"
            );
            assert_eq!(
                run.stderr.contains("set goes through the tree writer"),
                tree_writer,
                "{}",
                run.stderr
            );
            assert!(host.vault_bytes() == before, "the file is unchanged");
            assert_eq!(std::fs::read(&audit).unwrap(), log_before, "no audit line");
        }
        // The check-and-set still comes first.
        let run = host.run_in(&["set", "A.B", "--stdin", "--if-version", "2"], b"same");
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (
                8,
                "runvault: error: `A.B` is at version 1, not 2; nothing was changed (re-read it and retry)\n"
            )
        );
        // Another type is another value.
        let run = host.run_in(&["set", "A.B", "--stdin", "--type", "int"], b"7");
        assert_eq!(run.code, 0, "{}", run.describe());
        host.run_in(&["set", "A.B", "--stdin"], b"same").ok();
        let run = host.run_in(&["set", "A.B", "--stdin"], b"same").ok();
        assert!(
            run.stderr.ends_with("(version 3); unchanged\n"),
            "{}",
            run.stderr
        );
        // Back to one version for the tree writer's round.
        host.run(&["rm", "A.B", "--purge"]).ok();
        host.set("A.B", b"same");
    }
}

#[test]
fn a_short_new_passphrase_is_refused_unless_allowed_and_before_any_prompt() {
    let host = Host::new();
    let short = host.root.path().join("short.pass");
    write_private(&short, b"eleven char\n");
    let mut args = vec!["init", "--passphrase-file"];
    let short_path = short.to_str().unwrap().to_string();
    args.push(&short_path);
    args.extend(CHEAP_KDF);
    let refused = format!(
        "runvault: error: the passphrase in `{short_path}` is shorter than 12 characters; \
         choose a longer one (a few words), or pass --allow-short-passphrase for a throwaway \
         vault; nothing was changed\n"
    );
    let run = host.bare_command().args(&args).fails(2);
    assert_eq!(run.stderr, refused);
    assert!(!host.dir().exists(), "nothing on disk");
    host.init();
    for command in [
        &[
            "key",
            "add",
            "passphrase",
            "--new-passphrase-file",
            &short_path,
        ][..],
        &["key", "passwd", "1", "--new-passphrase-file", &short_path],
    ] {
        let before = host.vault_bytes();
        let run = host.run(command).fails(2);
        assert_eq!(run.stderr, refused, "{command:?}");
        assert!(host.vault_bytes() == before, "{command:?}");
        // Refused before the current passphrase is asked for.
        let run = host.run_raw(command, b"").fails(2);
        assert_eq!(run.stderr, refused, "{command:?} asks nothing first");
    }
    // A file others can read is refused before the prompt too.
    let open = host.root.path().join("open.pass");
    std::fs::write(&open, "a long enough passphrase\n").unwrap();
    let run = host
        .run_raw(
            &[
                "key",
                "passwd",
                "1",
                "--new-passphrase-file",
                open.to_str().unwrap(),
            ],
            b"",
        )
        .fails(1);
    assert!(
        run.stderr.contains(&format!("`{}`", open.display())),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("no passphrase given"),
        "{}",
        run.stderr
    );
    // The override, for a throwaway vault.
    let mut args = vec![
        "key",
        "add",
        "passphrase",
        "--allow-short-passphrase",
        "--new-passphrase-file",
        &short_path,
    ];
    args.extend(CHEAP_KDF);
    assert_eq!(host.run(&args).ok().stderr, "added passphrase slot 2\n");
}

#[test]
fn a_removed_slots_id_is_never_given_again() {
    let host = Host::new();
    host.init_with_key_and_passphrase();
    let second = host.root.path().join("second.pass");
    write_private(&second, b"second admin passphrase\n");
    let mut add = vec![
        "key",
        "add",
        "passphrase",
        "--new-passphrase-file",
        second.to_str().unwrap(),
    ];
    add.extend(CHEAP_KDF);
    assert_eq!(host.run(&add).ok().stderr, "added passphrase slot 3\n");
    host.run(&["key", "remove", "3"]).ok();
    // The file remembers the id, under its MAC, through other writers.
    let text = String::from_utf8(host.vault_bytes()).unwrap();
    assert!(text.contains("\n  last_slot_id: 3\n  mac: "), "{text}");
    host.set("A", b"spliced");
    host.run(&[
        "rekey",
        "--also-key-file",
        host.key_file().to_str().unwrap(),
    ])
    .ok();
    host.run(&["verify"]).ok();
    assert_eq!(host.run(&add).ok().stderr, "added passphrase slot 4\n");
    let text = String::from_utf8(host.vault_bytes()).unwrap();
    assert!(!text.contains("last_slot_id"), "written only while needed");
    let list = host.run(&["key", "list", "--json"]).ok();
    let slots: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let ids: Vec<u64> = slots
        .as_array()
        .unwrap()
        .iter()
        .map(|slot| slot["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 4]);
    // An edited id is tampering: the MAC covers it.
    host.run(&["key", "remove", "4"]).ok();
    let text = String::from_utf8(host.vault_bytes()).unwrap();
    std::fs::write(
        host.vault_file(),
        text.replace("last_slot_id: 4", "last_slot_id: 9"),
    )
    .unwrap();
    assert_eq!(host.run(&["verify"]).code, 5);
}

/// A secret of a kind the vault has no slot for: the hint names the
/// `key add` that adds one and the vault's directory (quoted, as this one
/// has a space), and does that when pasted into a shell.
#[test]
fn the_no_slot_hint_adds_that_kind_of_slot_when_pasted_into_a_shell() {
    let host = Host::new();
    let dir = host.path("my secrets");
    let mut init = host.bare_command();
    init.arg("--dir").arg(&dir).arg("--passphrase-file");
    init.arg(host.pass_file()).arg("init").args(CHEAP_KDF).ok();
    host.keygen();
    let get = || {
        let mut cmd = host.bare_command();
        cmd.arg("--dir")
            .arg(&dir)
            .arg("--key-file")
            .arg(host.key_file());
        cmd.args(["get", "A"]);
        cmd
    };
    let failed = get().fails(4);
    let hint = failed.stderr.split('`').nth(3).unwrap();
    assert_eq!(
        hint,
        format!("runvault key add keyfile FILE --dir '{}'", dir.display())
    );

    // Pasted, FILE filled in, the admin's passphrase in the environment.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_runvault"));
    let line = hint.replace("FILE", host.key_file().to_str().unwrap());
    let pasted = std::process::Command::new("sh")
        .args(["-c", &line])
        .envs(
            host.bare_command()
                .get_envs()
                .filter_map(|(k, v)| Some((k, v?))),
        )
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", bin.parent().unwrap().display()),
        )
        .env("RUNVAULT_PASSPHRASE_FILE", host.pass_file())
        .current_dir(host.path(""))
        .ok();
    assert!(
        pasted.stderr.contains("added keyfile slot 2"),
        "{}",
        pasted.stderr
    );
    // The key file now opens the vault: `A` is simply not there.
    get().fails(3);
}
