//! Tampered and mismatched vault files: every edit is detected (exit 5) and
//! told apart from a wrong secret (exit 4); no message carries a value.

mod common;

use common::{Host, fixtures, write_private};

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
