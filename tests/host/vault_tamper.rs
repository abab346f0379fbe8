//! Tampered and mismatched vault files: every edit is detected (exit 5) and
//! told apart from a wrong secret (exit 4); no message carries a value.

use std::time::Duration;

use crate::support::{Host, Runs, fixtures, plant_fifo, write_private};

/// Every plaintext value of the fixture vault (none may reach stderr).
const FIXTURE_SECRETS: [&str; 4] = [
    "Tr@nsf0rm-s3cret!",
    "1ngest#pa55",
    "wJalrXUtnFEMI",
    "AKIAIOSFODNN7EXAMPLE",
];

/// A host holding the committed fixture vault (`fixtures/vault-v1`), with
/// `vault_yml` as its vault file, unlocked by the fixture key or passphrase.
fn fixture_host(vault_yml: &[u8]) -> Host {
    let host = Host::new();
    std::fs::create_dir_all(host.dir()).unwrap();
    std::fs::write(host.vault_file(), vault_yml).unwrap();
    std::fs::copy(fixtures().join("vault-v1/vault.salt"), host.salt_file()).unwrap();
    let key = std::fs::read(fixtures().join("vault-v1/test-only.key")).unwrap();
    write_private(&host.key_file(), &key);
    host
}

fn fixture_vault() -> Vec<u8> {
    std::fs::read(fixtures().join("vault-v1/vault.yml")).unwrap()
}

#[test]
fn the_committed_fixture_vault_still_opens_with_key_and_passphrase() {
    let host = fixture_host(&fixture_vault());
    let run = host.run_key(&["verify"], b"").ok();
    assert!(run.out().starts_with("ok: "), "{}", run.out());
    assert!(run.out().contains("20 value(s) decrypt"), "{}", run.out());
    assert_eq!(
        host.run_key(&["get", "SNOWFLAKE.TRANSFORM.PASSWORD"], b"")
            .ok()
            .stdout,
        b"Tr@nsf0rm-s3cret!"
    );
    // The fixture's passphrase slot (see fixtures/vault-v1/passphrase.txt).
    assert_eq!(
        host.run(&["get", "AWS.DEFAULT.S3_KEY"]).ok().stdout,
        b"AKIAIOSFODNN7EXAMPLE"
    );
}

#[test]
fn every_tampered_fixture_is_rejected_with_exit_5() {
    let vault_path = |host: &Host| host.vault_file().display().to_string();
    let mac_message = |host: &Host| {
        format!(
            "runvault: error: `{}` failed authentication: the file was modified outside runvault \
             (entries added, removed, moved or edited) or is corrupt; restore it from a backup\n",
            vault_path(host)
        )
    };
    for name in [
        "swapped-values.yml",
        "removed-entry.yml",
        "added-entry.yml",
        "reordered-entries.yml",
        "edited-generation.yml",
        "flipped-ciphertext.yml",
        "flipped-history.yml",
    ] {
        let bytes = std::fs::read(fixtures().join("tampered").join(name)).unwrap();
        assert_ne!(bytes, fixture_vault(), "{name} differs from the original");
        let host = fixture_host(&bytes);
        for args in [&["get", "SNOWFLAKE.ACCOUNT"][..], &["verify"], &["list"]] {
            let run = host.run_key(args, b"");
            assert_eq!(run.code, 5, "{name} {args:?}: {}", run.stderr);
            assert_eq!(run.stderr, mac_message(&host), "{name}");
            assert!(run.stdout.is_empty(), "{name}: nothing printed on failure");
            for secret in FIXTURE_SECRETS {
                assert!(!run.stderr.contains(secret));
            }
        }
        // A new path and a replaced value (the streaming writer's two
        // cases), with the passphrase and the key file.
        for run in [
            host.run_in(&["set", "NEW", "--stdin"], b"v"),
            host.run_key(&["set", "SNOWFLAKE.ACCOUNT", "--stdin"], b"v"),
        ] {
            assert_eq!(run.code, 5, "{name}: a writer verifies first");
            assert_eq!(run.stderr, mac_message(&host), "{name}");
            assert_eq!(
                std::fs::read(host.vault_file()).unwrap(),
                bytes,
                "{name}: nothing written"
            );
            assert!(
                !host.dir().join("audit.log").exists(),
                "{name}: no audit line"
            );
        }
    }
}

#[test]
fn a_hostile_kdf_cost_is_refused_before_running_it() {
    let bytes = std::fs::read(fixtures().join("tampered/hostile-kdf.yml")).unwrap();
    let host = fixture_host(&bytes);
    let run = host.run(&["get", "SNOWFLAKE.ACCOUNT"]);
    assert_eq!(run.code, 5);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: key slot 2 of `{}` asks for unsafe Argon2id parameters (memory 4194304 KiB is outside \
             8..=2097152 KiB); refusing to run them\n",
            host.vault_file().display()
        )
    );
    // With the key file the slot is never run, and the edited header fails the MAC.
    assert_eq!(host.run_key(&["verify"], b"").code, 5);
}

#[test]
fn a_newer_format_and_a_missing_header_are_reported_as_such() {
    let host = fixture_host(&std::fs::read(fixtures().join("tampered/future-format.yml")).unwrap());
    let run = host.run_key(&["list"], b"");
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}`: vault format 2 is not supported by this runvault (it reads format 1); upgrade runvault\n",
            host.vault_file().display()
        )
    );
    let host =
        fixture_host(&std::fs::read(fixtures().join("tampered/missing-header.yml")).unwrap());
    let run = host.run_key(&["list"], b"");
    assert_eq!(run.code, 5);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}` is corrupt: vault header field `runvault` is missing, yet the file holds encrypted values\n",
            host.vault_file().display()
        )
    );
    let run = host.run_in(&["init"], b"");
    assert_eq!(
        run.code, 5,
        "init never adopts ciphertext as plaintext: {}",
        run.stderr
    );
}

#[test]
fn a_salt_from_elsewhere_is_detected_not_misread() {
    let host = fixture_host(&fixture_vault());
    std::fs::write(
        host.salt_file(),
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    )
    .unwrap();
    let run = host.run_key(&["get", "SNOWFLAKE.ACCOUNT"], b"");
    assert_eq!(run.code, 5);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}` does not belong to this vault (salt id mismatch): restore the vault.salt that was \
             created with this vault.yml\n",
            host.salt_file().display()
        )
    );
    std::fs::remove_file(host.salt_file()).unwrap();
    let run = host.run_key(&["get", "SNOWFLAKE.ACCOUNT"], b"");
    assert_eq!(run.code, 5);
    assert!(
        run.stderr.contains("vault.salt` is missing"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_value_copied_from_another_vault_does_not_decrypt() {
    // Two vaults; a ciphertext line from one pasted into the other, under the
    // same path: the MAC fails, and even a forged MAC could not help, since
    // the value's associated data names the vault id.
    let first = Host::new();
    first.init();
    first.set("A.B", b"first");
    let second = Host::new();
    second.init();
    second.set("A.B", b"second");
    let line_of = |bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .find(|l| l.contains("B: rv1:"))
            .unwrap()
            .to_string()
    };
    let foreign = line_of(first.vault_bytes());
    let own = line_of(second.vault_bytes());
    let edited = String::from_utf8(second.vault_bytes())
        .unwrap()
        .replace(&own, &foreign);
    std::fs::write(second.vault_file(), edited).unwrap();
    let run = second.run(&["get", "A.B"]);
    assert_eq!(run.code, 5);
    assert!(!run.stderr.contains("first") && !run.stderr.contains("second"));
}

#[test]
fn a_hand_reformatted_vault_is_read_through_the_general_parser() {
    // A YAML tool may re-indent the file or quote differently; the content is
    // the same, so the MAC still holds and the vault opens.
    let original = String::from_utf8(fixture_vault()).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&original).unwrap();
    let reformatted = serde_yaml::to_string(&doc).unwrap();
    assert_ne!(reformatted, original);
    let host = fixture_host(reformatted.as_bytes());
    assert_eq!(
        host.run_key(&["get", "EXTRAS.HOSTS[0]"], b"").ok().stdout,
        b"db1.internal"
    );
    host.run_key(&["verify"], b"").ok();
    // The next write puts the canonical layout back.
    host.run_key(&["set", "EXTRAS.PORT", "--stdin"], b"6543")
        .ok();
    let rewritten = String::from_utf8(host.vault_bytes()).unwrap();
    assert!(rewritten.starts_with("# runvault vault"), "{rewritten}");
}

/// Long enough for any of these commands on a loaded machine; a command
/// that blocks on a FIFO or parses for minutes fails the test instead.
const DEADLINE: Duration = Duration::from_secs(30);

/// `runvault --passphrase-file P ARGS` on `host`, killed after [`DEADLINE`].
fn run_guarded(host: &Host, args: &[&str]) -> crate::support::Run {
    let mut cmd = host.command();
    cmd.arg("--passphrase-file")
        .arg(host.pass_file())
        .args(args);
    cmd.run_within(DEADLINE)
}

fn not_regular(what: &str, path: &std::path::Path) -> String {
    format!(
        "runvault: error: {what} `{}` is a FIFO (named pipe), not a regular file; refusing to use it \
         (replace it with a regular file)\n",
        path.display()
    )
}

#[test]
fn a_fifo_planted_as_a_vault_file_is_refused_at_once_by_readers_and_writers() {
    for (name, what) in [
        ("vault.yml", "vault file"),
        ("vault.salt", "salt file"),
        ("vault.salt.next", "salt file"),
    ] {
        let host = Host::new();
        host.init();
        host.set("A", b"1");
        let path = host.dir().join(name);
        plant_fifo(&path);
        let expected = not_regular(what, &path);
        if name != "vault.salt.next" {
            // (Readers look at the staged salt only when vault.salt does not match.)
            let run = run_guarded(&host, &["get", "A"]);
            assert_eq!(
                (run.code, run.stderr.as_str()),
                (1, expected.as_str()),
                "{name}"
            );
        }
        // A writer reads under the lock: it fails at once, and exiting
        // releases the lock for the next writer.
        let run = run_guarded(&host, &["set", "B", "--generate", "16"]);
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (1, expected.as_str()),
            "{name}"
        );
        if name == "vault.salt.next" {
            std::fs::remove_file(&path).unwrap();
            let run = run_guarded(&host, &["--wait", "0", "set", "B", "--generate", "16"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
        }
    }
}

#[test]
fn a_fifo_planted_as_the_audit_log_fails_the_writer_at_once_and_nothing_is_committed() {
    let host = Host::new();
    host.init();
    host.set("A", b"1");
    let before = host.vault_bytes();
    let log = host.dir().join("audit.log");
    plant_fifo(&log);
    let run = run_guarded(&host, &["set", "A", "--generate", "16"]);
    assert_eq!((run.code, run.stderr), (1, not_regular("audit log", &log)));
    assert_eq!(host.vault_bytes(), before);
}

#[test]
fn a_fifo_given_as_a_secret_template_or_input_file_is_refused_at_once() {
    let host = Host::new();
    host.keygen();
    host.init();
    host.set("A", b"1");
    let fifo = host.root.path().join("fifo");
    plant_fifo(&fifo);
    let fifo_arg = fifo.to_str().unwrap();
    let cases: [(&str, Vec<&str>, bool); 5] = [
        (
            "passphrase file",
            vec!["--passphrase-file", fifo_arg, "get", "A"],
            false,
        ),
        ("key file", vec!["--key-file", fifo_arg, "get", "A"], false),
        ("template", vec!["render", fifo_arg], true),
        ("import file", vec!["import", fifo_arg], true),
        (
            "value file",
            vec!["set", "B", "--from-file", fifo_arg],
            true,
        ),
    ];
    for (what, args, with_passphrase) in cases {
        let run = if with_passphrase {
            run_guarded(&host, &args)
        } else {
            host.command().args(&args).run_within(DEADLINE)
        };
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (1, not_regular(what, &fifo).as_str()),
            "{what}"
        );
    }
    assert_eq!(host.get("A"), b"1");
}

/// A file of `len` bytes (sparse: nothing is written), mode 0600.
fn sparse_file(path: &std::path::Path, len: u64) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(len).unwrap();
    drop(file);
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

fn too_large(what: &str, path: &str, max: u64, human: &str) -> String {
    format!(
        "runvault: error: {what} `{path}` is larger than the limit of {max} bytes ({human}); \
         refusing to read it (see \"Limits\" in the README)\n"
    )
}

#[test]
fn every_input_one_byte_over_its_limit_is_refused_before_it_is_read() {
    let host = Host::new();
    host.keygen();
    host.init();
    host.set("A", b"1");
    let before = host.vault_bytes();
    let file = host.root.path().join("input");
    let name = file.to_str().unwrap();
    // The passphrase file and the key file: their limit is fine, one byte more is not.
    let mut pass = format!("{}\n", crate::support::PASSPHRASE).into_bytes();
    pass.resize(4096, b'#');
    write_private(&file, &pass);
    assert_eq!(
        host.command()
            .args(["--passphrase-file", name, "get", "A"])
            .run_within(DEADLINE)
            .code,
        0
    );
    pass.push(b'#');
    write_private(&file, &pass);
    let run = host
        .command()
        .args(["--passphrase-file", name, "get", "A"])
        .run_within(DEADLINE);
    assert_eq!(
        (run.code, run.stderr),
        (1, too_large("passphrase file", name, 4096, "4 KiB"))
    );
    let mut key = std::fs::read(host.key_file()).unwrap();
    key.resize(513, b' ');
    write_private(&file, &key);
    let run = host
        .command()
        .args(["--key-file", name, "get", "A"])
        .run_within(DEADLINE);
    assert_eq!(
        (run.code, run.stderr),
        (1, too_large("key file", name, 512, "512 bytes"))
    );
    // Large inputs, as sparse files.
    for (what, args, max, human) in [
        ("template", vec!["render", name], 16 << 20, "16 MiB"),
        ("import file", vec!["import", name], 256 << 20, "256 MiB"),
        (
            "value file",
            vec!["set", "B", "--from-file", name],
            4 << 20,
            "4 MiB",
        ),
    ] {
        sparse_file(&file, max + 1);
        let run = run_guarded(&host, &args);
        assert_eq!(
            (run.code, run.stderr),
            (1, too_large(what, name, max, human)),
            "{what}"
        );
    }
    // Standard input: a value of exactly 4 MiB is stored, one byte more is refused.
    let mut value = vec![b'v'; 4 << 20];
    host.run_in(&["set", "B", "--stdin"], &value).ok();
    value.push(b'v');
    let run = host.run_in(&["set", "C", "--stdin"], &value);
    assert_eq!(
        (run.code, run.stderr),
        (1, too_large("value file", "-", 4 << 20, "4 MiB"))
    );
    assert_eq!(host.run(&["get", "C"]).code, 3);
    // A value in an import: the same limit.
    let mut import = b"D: ".to_vec();
    import.resize(3 + (4 << 20) + 1, b'v');
    import.push(b'\n');
    write_private(&file, &import);
    let run = run_guarded(&host, &["import", name]);
    assert_eq!(
        (run.code, run.stderr),
        (
            1,
            format!(
                "runvault: error: `{name}`: unsupported value at `D`: 4194305 bytes, over the limit of 4194304 bytes (4 MiB) for one value\n"
            )
        )
    );
    // A key so long that its line would pass the vault's line limit.
    let mut import = b"A".repeat(256 * 1024);
    import.extend_from_slice(b": v\n");
    write_private(&file, &import);
    let run = run_guarded(&host, &["import", name]);
    assert_eq!(
        (run.code, run.stderr),
        (
            1,
            format!(
                "runvault: error: `{name}`: unsupported key at `{}...`: a path of 262145 bytes, over the limit of \
                 262144 bytes (256 KiB)\n",
                "A".repeat(40)
            )
        )
    );
    assert_ne!(host.vault_bytes(), before, "B was stored");
}

#[test]
fn a_vault_line_over_the_limit_is_refused_as_corrupt() {
    let host = Host::new();
    host.init();
    host.set("A", b"1");
    let text = String::from_utf8(host.vault_bytes()).unwrap();
    let line = text.lines().find(|l| l.starts_with("  A: rv1:")).unwrap();
    let long = format!("{line}{}", "A".repeat((16 << 20) + 1 - line.len()));
    std::fs::write(host.vault_file(), text.replace(line, &long)).unwrap();
    let number = text.lines().position(|l| l == line).unwrap() + 1;
    let run = run_guarded(&host, &["get", "A"]);
    assert_eq!(
        (run.code, run.stderr),
        (
            5,
            format!(
                "runvault: error: `{}` is corrupt: vault file is refused before parsing: line {number} is longer \
                 than the limit of 16777216 bytes (16 MiB)\n",
                host.vault_file().display()
            )
        )
    );
}

#[test]
fn deep_nesting_fails_fast_before_the_yaml_parser_runs() {
    let host = Host::new();
    host.init();
    host.set("A", b"1");
    let file = host.root.path().join("deep.yml");
    let name = file.to_str().unwrap();
    let deep_flow = format!("A: {}\n", "[".repeat(100_000));
    let deep_block = format!("A: \n  {}x\n", "- ".repeat(100_000));
    for text in [&deep_flow, &deep_block] {
        write_private(&file, text.as_bytes());
        let run = run_guarded(&host, &["import", name]);
        assert_eq!(
            (run.code, run.stderr),
            (
                1,
                format!(
                    "runvault: error: `{name}` is not valid YAML: line {}: collections nested deeper than 128 levels\n",
                    if text == &deep_flow { 1 } else { 2 }
                )
            )
        );
    }
    std::fs::write(host.vault_file(), &deep_flow).unwrap();
    let run = run_guarded(&host, &["get", "A"]);
    assert_eq!(
        (run.code, run.stderr),
        (
            5,
            format!(
                "runvault: error: `{}` is corrupt: vault file is refused before parsing: line 1: collections nested \
                 deeper than 128 levels\n",
                host.vault_file().display()
            )
        )
    );
}

/// The fixture vault with its passphrase slot (id 2) copied as slots
/// `ids`, each with the Argon2id memory and passes `params(id)`.
fn with_extra_slots(
    ids: std::ops::RangeInclusive<u32>,
    params: impl Fn(u32) -> (u32, u32),
) -> Vec<u8> {
    let text = String::from_utf8(fixture_vault()).unwrap();
    let start = text.find("    -\n      id: 2\n").unwrap();
    let end = text.find("  mac: ").unwrap();
    let slot = &text[start..end];
    let mut extra = String::new();
    for id in ids {
        let (memory, passes) = params(id);
        extra.push_str(
            &slot
                .replace("id: 2\n", &format!("id: {id}\n"))
                .replace("memory_kib: 8\n", &format!("memory_kib: {memory}\n"))
                .replace("iterations: 1\n", &format!("iterations: {passes}\n")),
        );
    }
    text.replacen("  mac: ", &format!("{extra}  mac: "), 1)
        .into_bytes()
}

#[test]
fn a_file_with_too_many_slots_or_too_much_kdf_work_is_refused_before_any_kdf_runs() {
    // 33 slots (each as cheap as the fixture's), one over the limit.
    let host = fixture_host(&with_extra_slots(3..=33, |_| (8, 1)));
    for run in [
        host.run(&["get", "SNOWFLAKE.ACCOUNT"]),
        host.run_key(&["get", "SNOWFLAKE.ACCOUNT"], b""),
    ] {
        assert_eq!(
            (run.code, run.stderr),
            (
                5,
                format!(
                    "runvault: error: `{}` asks for too much key derivation work (33 key slots, more than 32); \
                     refusing to run it\n",
                    host.vault_file().display()
                )
            )
        );
    }
    // Two slots, each within the per-slot ceiling (one at it), together
    // over the per-file one: refused without running either (that would
    // take seconds and 2 GiB).
    let host = fixture_host(&with_extra_slots(3..=3, |_| (2_097_152, 4)));
    let run = host.run(&["get", "SNOWFLAKE.ACCOUNT"]);
    assert_eq!(
        (run.code, run.stderr),
        (
            5,
            format!(
                "runvault: error: `{}` asks for too much key derivation work (passphrase slots that ask for \
                 8388616 KiB-passes of Argon2id in all, more than the file ceiling of 8388608); refusing to run it\n",
                host.vault_file().display()
            )
        )
    );
}

#[test]
fn a_change_that_would_exceed_the_file_kdf_budget_is_refused_and_nothing_changes() {
    let host = Host::new();
    host.init();
    let before = host.vault_bytes();
    let pass_file = host.pass_file();
    let run = host.run(&[
        "key",
        "add",
        "passphrase",
        "--new-passphrase-file",
        pass_file.to_str().unwrap(),
        "--kdf-memory",
        "2097152",
        "--kdf-iterations",
        "4",
    ]);
    assert_eq!(
        (run.code, run.stderr),
        (
            2,
            "runvault: error: refusing a change that would leave the vault with passphrase slots that ask for \
             8388616 KiB-passes of Argon2id in all, more than the file ceiling of 8388608; remove a key slot \
             (`runvault key remove`) or use the default Argon2id parameters\n"
                .to_string()
        )
    );
    assert_eq!(host.vault_bytes(), before);
}

#[test]
fn a_salt_too_short_for_argon2id_with_a_matching_header_is_refused_not_a_panic() {
    let salt = b"7 bytes";
    let id = runvault::core::hex::hex(
        &runvault::vault::testing::salt::Salt::from_file_bytes(salt.to_vec()).id(),
    );
    let text = String::from_utf8(fixture_vault())
        .unwrap()
        .replace("bb3b145a69f557ed1ab2647b23ccb5b6", &id);
    let host = fixture_host(text.as_bytes());
    std::fs::write(host.salt_file(), salt).unwrap();
    let expected = format!(
        "runvault: error: `{}` is 7 bytes, shorter than the 8 bytes a salt must have; it is not a salt runvault \
         made: restore the vault.salt that was created with this vault.yml\n",
        host.salt_file().display()
    );
    for run in [
        host.run(&["get", "SNOWFLAKE.ACCOUNT"]),
        host.run(&["verify"]),
        host.run_key(&["list"], b""),
    ] {
        assert_eq!((run.code, run.stderr.as_str()), (5, expected.as_str()));
    }
}

/// The mark file's name for the host's vault (`<vault_id>-<dir hash>.mark`).
fn mark_name(host: &Host) -> String {
    let name = mark_file(host)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let yaml: serde_yaml::Value = serde_yaml::from_slice(&host.vault_bytes()).unwrap();
    let vault_id = yaml["runvault"]["vault_id"].as_str().unwrap();
    assert!(name.starts_with(&format!("{vault_id}-")), "{name}");
    assert!(
        name.ends_with(".mark") && name.len() == 32 + 1 + 16 + 5,
        "{name}"
    );
    name
}

/// The one high-water mark in the host's state directory.
fn mark_file(host: &Host) -> std::path::PathBuf {
    let marks: Vec<_> = std::fs::read_dir(host.state_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(marks.len(), 1, "{marks:?}");
    marks[0].clone()
}

fn rolled_back_message(host: &Host, generation: u64, mark: u64) -> String {
    format!(
        "runvault: error: `{}` was rolled back: it is at generation {generation}, but this host \
         committed generation {mark} (high-water mark `{}`); restore the newest vault.yml, or if \
         this older copy was restored on purpose, accept it with \
         `runvault verify --accept-rollback --dir {} --state-dir {}`\n",
        host.vault_file().display(),
        mark_file(host).display(),
        host.dir().display(),
        host.state_dir().display()
    )
}

fn doctor_status(run: &crate::support::Run, check: &str) -> String {
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("doctor --json");
    crate::support::status_of(&report, check)
}

#[test]
fn a_whole_older_vault_put_back_is_reported_refused_and_can_be_accepted() {
    let host = Host::new();
    host.init();
    host.set("DB.PASS", b"old-password");
    host.set("DB.USER", b"alice");
    let old = host.root.path().join("vault.yml.old");
    std::fs::copy(host.vault_file(), &old).unwrap();
    host.set("DB.PASS", b"rotated-password");
    host.set("DB.HOST", b"db1");
    assert_eq!(
        std::fs::read_to_string(mark_file(&host)).unwrap(),
        format!(
            "{{\"vault_id\":\"{}\",\"generation\":5,\"dir\":\"{}\"}}\n",
            mark_name(&host).split('-').next().unwrap(),
            host.dir().canonicalize().unwrap().display()
        )
    );
    std::fs::copy(&old, host.vault_file()).unwrap();

    let verify = host.run(&["verify"]);
    assert_eq!(verify.code, 5);
    assert_eq!(verify.stderr, rolled_back_message(&host, 3, 5));
    assert!(verify.stdout.is_empty());

    let doctor = host.run(&["doctor", "--json"]);
    assert_eq!(doctor.code, 1);
    assert_eq!(doctor_status(&doctor, "vault.rollback"), "fail");
    assert_eq!(doctor_status(&doctor, "vault.verify"), "ok");

    let before = host.snapshot();
    let pass = host.pass_file();
    let pass = pass.to_str().unwrap();
    for args in [
        &["set", "DB.PASS", "--stdin"][..],
        &["rm", "DB.USER"],
        &["rekey"],
        &["key", "passwd", "1", "--new-passphrase-file", pass],
    ] {
        let run = host.run_in(args, b"new");
        assert_eq!(run.code, 5, "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr, rolled_back_message(&host, 3, 5), "{args:?}");
    }
    assert_eq!(host.snapshot(), before, "a refused writer changes nothing");
    // Readers never consult the mark: they stay write-free and as fast.
    assert_eq!(host.get("DB.PASS"), b"old-password");

    // The restore was deliberate: accept it, then writing goes on.
    // The hint, pasted (with the admin's passphrase, and no state
    // directory in the environment: the hint names it), accepts it.
    let accept = host
        .paste_hint(&verify.stderr)
        .env_remove("RUNVAULT_STATE_DIR")
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .ok();
    assert_eq!(
        accept.stderr,
        format!(
            "accepted the rollback: the high-water mark of `{}` went from generation 5 down to 3\n",
            host.vault_file().display()
        )
    );
    assert!(
        accept.out().contains("; generation 3; high-water mark 3; "),
        "{}",
        accept.out()
    );
    let audit = std::fs::read_to_string(host.dir().join("audit.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "accept-rollback");
    assert_eq!(last["generation_before"], 5);
    assert_eq!(last["generation_after"], 3);
    host.run(&["verify"]).ok();
    host.set("DB.PASS", b"rotated-again");
    let verify = host.run(&["verify"]).ok();
    assert!(
        verify.out().contains("; generation 4; high-water mark 4; "),
        "{}",
        verify.out()
    );
}

#[test]
fn a_revoked_key_slot_brought_back_with_an_old_file_is_detected() {
    let host = Host::new();
    host.init_with_key_and_passphrase();
    host.set("DB.PASS", b"pw");
    let leaked = host.root.path().join("keys").join("leaked.key");
    host.run_raw(&["keygen", leaked.to_str().unwrap()], b"")
        .ok();
    host.run_key(&["key", "add", "keyfile", leaked.to_str().unwrap()], b"")
        .ok();
    let (old_vault, old_salt) = (
        host.root.path().join("old.yml"),
        host.root.path().join("old.salt"),
    );
    std::fs::copy(host.vault_file(), &old_vault).unwrap();
    std::fs::copy(host.salt_file(), &old_salt).unwrap();
    host.run_key(&["key", "remove", "3"], b"").ok();
    let pass = host.pass_file();
    host.run_key(
        &[
            "rekey",
            "--new-salt",
            "--also-passphrase-file",
            pass.to_str().unwrap(),
        ],
        b"",
    )
    .ok();
    std::fs::copy(&old_vault, host.vault_file()).unwrap();
    std::fs::copy(&old_salt, host.salt_file()).unwrap();

    let mut verify = host.command();
    verify.arg("--key-file").arg(&leaked).arg("verify");
    let run = verify.run_in(b"");
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert_eq!(run.stderr, rolled_back_message(&host, 3, 5));
    let doctor = host.run_key(&["doctor", "--json"], b"");
    assert_eq!(doctor_status(&doctor, "vault.rollback"), "fail");
    let set = host.run_key(&["set", "DB.PASS", "--stdin"], b"x");
    assert_eq!(
        (set.code, set.stderr),
        (5, rolled_back_message(&host, 3, 5))
    );
}

#[test]
fn a_crash_between_the_commit_and_the_mark_is_no_false_alarm() {
    let host = Host::new();
    host.init();
    host.set("A", b"1");
    let mut cmd = host.command();
    cmd.env("RUNVAULT_FAILPOINT", "commit-before-mark")
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .args(["set", "A", "--stdin"]);
    let run = cmd.run_in(b"2");
    assert_eq!(run.code, -1, "killed by SIGABRT: {}", run.stderr);
    // The commit is durable, the mark one behind: harmless.
    assert_eq!(host.get("A"), b"2");
    assert!(
        std::fs::read_to_string(mark_file(&host))
            .unwrap()
            .contains("\"generation\":2,")
    );
    let verify = host.run(&["verify"]).ok();
    assert!(
        verify.out().contains("; generation 3; high-water mark 2; "),
        "{}",
        verify.out()
    );
    host.set("A", b"3");
    assert!(
        std::fs::read_to_string(mark_file(&host))
            .unwrap()
            .contains("\"generation\":4,")
    );
}

#[test]
fn a_mark_that_cannot_be_written_is_reported_and_the_commit_stands() {
    let host = Host::new();
    host.init();
    // A file where the state directory should be: no mark can be written.
    let blocked = host.root.path().join("blocked");
    std::fs::write(&blocked, b"").unwrap();
    let state = blocked.join("state");
    let run = host.run_in(
        &[
            "-q",
            "--state-dir",
            state.to_str().unwrap(),
            "set",
            "A",
            "--stdin",
        ],
        b"v",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: warning: the rollback high-water mark cannot be read: cannot open `{0}/{1}`: \
             Not a directory (os error 20); this change is not checked against a rollback (give a \
             readable --state-dir)\n\
             runvault: warning: the change is committed, but the rollback high-water mark was not \
             recorded: cannot inspect `{0}`: Not a directory (os error 20); a rollback of \
             this vault is not detected until a change records it (give a writable --state-dir)\n",
            state.display(),
            mark_name(&host)
        )
    );
    assert_eq!(host.get("A"), b"v");
    // verify does the same: the vault is checked, the rollback is not.
    let verify = host.run(&["--state-dir", state.to_str().unwrap(), "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert!(
        verify
            .out()
            .contains("; generation 2; no high-water mark on this host; "),
        "{}",
        verify.out()
    );
    assert_eq!(
        verify.stderr,
        format!(
            "runvault: warning: the rollback high-water mark cannot be read: cannot open `{}/{}`: \
             Not a directory (os error 20); the vault was not checked against a rollback (give a \
             readable --state-dir)\n",
            state.display(),
            mark_name(&host)
        )
    );
}

/// A mapping split in two under the same key (`A:` its first entry, then
/// `A:` the rest) keeps every value's full path and order, so the file
/// MAC still matches; every reader must still refuse the repeated key, the
/// streaming one included (found by the readers' differential fuzz test).
#[test]
fn a_mapping_split_under_a_repeated_key_is_refused_by_every_reader() {
    let host = Host::new();
    host.init();
    host.set("A.A", b"one");
    host.set("A.B", b"two");
    let text = String::from_utf8(host.vault_bytes()).unwrap();
    let split = text.replacen("\n    B: ", "\n  A:\n    B: ", 1);
    assert_ne!(split, text);
    std::fs::write(host.vault_file(), &split).unwrap();
    for args in [&["get", "A.A"][..], &["get", "A.B"], &["list"], &["verify"]] {
        let run = host.run(args).fails(5);
        assert!(
            run.stderr
                .contains("the key `A` appears twice in one mapping"),
            "{args:?}: {}",
            run.stderr
        );
    }
}
