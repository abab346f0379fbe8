//! Many hosts (issue 21, docs/fleet.md): host identities, recipient slots
//! (`key add recipient`, `--identity`, `RUNVAULT_IDENTITY`, an OpenSSH
//! ed25519 key), their removal with `rekey`, and the interoperability of a
//! slot with Debian's `age`.

use std::path::{Path, PathBuf};
use std::process::Command;

use runvault::core::secret::Key32;
use runvault::vault::testing::crypto::Subkeys;
use runvault::vault::testing::format::{EncryptedVault, compute_mac};

use crate::support::{Host, Runs, mode};

/// Whether `program` answers `program ARG`; under `CI=true` a missing one
/// fails the test (.ci/run installs it), elsewhere the test is skipped.
fn have(program: &str, arg: &str, test: &str) -> bool {
    // Found if it runs at all (`ssh-keygen` has no option that exits 0).
    let found = Command::new(program).arg(arg).output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs `{program}`, and CI=true requires it to run (.ci/run installs it)"
        );
        eprintln!("skipping {test}: `{program} {arg}` does not run here");
    }
    found
}

/// A host with a vault (passphrase slot 1) holding two values.
fn admin_host() -> Host {
    let host = Host::new();
    host.init();
    host.set("SNOWFLAKE.PASSWORD", b"snow-secret-1");
    host.set("GITLAB.TOKEN", b"glpat-secret-2");
    host
}

/// `keygen --identity FILE` under the host's root: the file and the
/// recipient it printed.
fn new_identity(host: &Host, name: &str) -> (PathBuf, String) {
    let file = host.path(&format!("identities/{name}.key"));
    let run = host
        .bare_command()
        .arg("keygen")
        .arg("--identity")
        .arg(&file)
        .ok();
    let recipient = run.out().trim_end().to_owned();
    assert_eq!(
        run.out(),
        format!("{recipient}\n"),
        "stdout: the recipient only"
    );
    (file, recipient)
}

/// Runs runvault on `host`'s vault opened with the identity `file`.
fn with_identity(host: &Host, file: &Path, args: &[&str]) -> crate::support::Run {
    host.command().arg("--identity").arg(file).args(args).run()
}

/// An OpenSSH ed25519 key pair made by `ssh-keygen` (no passphrase).
fn ssh_key(host: &Host, name: &str) -> (PathBuf, String) {
    let file = host.path(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "host@example", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
    (file, public.trim_end().to_owned())
}

#[test]
fn keygen_identity_writes_an_age_identity_once_and_prints_its_recipient() {
    let host = Host::new();
    let (file, recipient) = new_identity(&host, "host");
    assert!(recipient.starts_with("age1"), "{recipient}");
    assert_eq!(mode(&file), 0o400);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("# created: "));
    assert_eq!(lines[1], format!("# public key: {recipient}"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
    // The layout file remembers it, as `keygen FILE` does the key file.
    let layout = std::fs::read_to_string(host.layout_file()).unwrap();
    assert!(
        layout.contains(&format!("identity_file = \"{}\"", file.display())),
        "{layout}"
    );
    // Never overwritten: the same exit code as `keygen FILE` on a key.
    let run = host
        .bare_command()
        .arg("keygen")
        .arg("--identity")
        .arg(&file)
        .fails(2);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}` already exists; refusing to overwrite a key\n",
            file.display()
        )
    );
    assert!(run.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    // `keygen --identity` with no file takes the layout's.
    host.bare_command().args(["keygen", "--identity"]).fails(2);
    // `--recipient` prints it again, from the file.
    let run = host
        .bare_command()
        .args(["keygen", "--recipient"])
        .arg(&file)
        .ok();
    assert_eq!(run.out(), format!("{recipient}\n"));
    assert!(!run.stderr.contains("AGE-SECRET-KEY"), "{}", run.stderr);
}

#[test]
fn a_recipient_slot_is_added_once_listed_and_opened_by_its_identity() {
    let host = admin_host();
    let (file, recipient) = new_identity(&host, "runner-1");
    let run = host.run(&["key", "add", "recipient", &recipient, "--label", "runner-1"]);
    let run = run.ok();
    assert_eq!(run.out(), "added slot 2\n");
    // Again: nothing changes, exit 0 (Ansible reruns it).
    let before = host.vault_bytes();
    let run = host.run(&["key", "add", "recipient", &recipient]).ok();
    assert!(run.stdout.is_empty());
    assert_eq!(run.stderr, "recipient already has slot 2\n");
    assert_eq!(host.vault_bytes(), before);

    let list = host.run(&["key", "list"]).ok().out();
    let row = list.lines().find(|l| l.starts_with("2 ")).unwrap();
    assert!(
        row.contains("recipient") && row.contains(&format!("{recipient} (runner-1)")),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&host.run(&["key", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(json[1]["kind"], "recipient");
    assert_eq!(json[1]["recipient"], recipient.as_str());
    assert_eq!(json[1]["label"], "runner-1");
    assert!(json[0].get("recipient").is_none());

    let run = with_identity(&host, &file, &["get", "SNOWFLAKE.PASSWORD"]).ok();
    assert_eq!(run.stdout, b"snow-secret-1");
    let run = host
        .command()
        .env("RUNVAULT_IDENTITY", &file)
        .args(["get", "GITLAB.TOKEN"])
        .ok();
    assert_eq!(run.stdout, b"glpat-secret-2");
    let run = with_identity(&host, &file, &["verify"]).ok();
    assert!(run.out().contains("opened with slot 2"), "{}", run.out());
    // At -vvv nothing of the identity file is printed.
    let run = host
        .command()
        .arg("-vvv")
        .arg("--identity")
        .arg(&file)
        .args(["get", "SNOWFLAKE.PASSWORD"])
        .ok();
    let secret_line = std::fs::read_to_string(&file).unwrap();
    let secret_line = secret_line.lines().last().unwrap();
    assert!(!run.stderr.contains(secret_line));
    assert!(!run.stderr.contains("AGE-SECRET-KEY"), "{}", run.stderr);

    // Another host's identity opens nothing: exit 4.
    let (other, _) = new_identity(&host, "runner-2");
    let run = with_identity(&host, &other, &["get", "SNOWFLAKE.PASSWORD"]).fails(4);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: wrong identity: no key slot of `{}` opens with it\n",
            host.vault_file().display()
        )
    );
}

#[test]
fn bad_recipients_and_identities_are_refused_before_anything_changes() {
    let host = admin_host();
    let before = host.snapshot();
    let run = host
        .run(&["key", "add", "recipient", "age1notakey"])
        .fails(2);
    assert_eq!(
        run.stderr,
        "runvault: error: `age1notakey` is not a recipient: not a valid age X25519 recipient\n"
    );
    let run = host
        .run(&[
            "key",
            "add",
            "recipient",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
        ])
        .fails(2);
    assert!(
        run.stderr
            .contains("expected an age recipient (`age1...`) or an SSH ed25519"),
        "{}",
        run.stderr
    );
    assert_eq!(host.snapshot(), before);

    // An identity file others can read is refused, as a key file is.
    let (file, recipient) = new_identity(&host, "runner-1");
    host.run(&["key", "add", "recipient", &recipient]).ok();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o440)).unwrap();
    let run = with_identity(&host, &file, &["get", "SNOWFLAKE.PASSWORD"]).fails(1);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: identity file `{0}` is accessible by group or others (mode 0440); \
             run `chmod 600 {0}` first\n",
            file.display()
        )
    );
    assert!(run.stdout.is_empty());
    // Not an identity: the message never quotes the file.
    let junk = host.private_file("junk.key", "AGE-SECRET-KEY-1QQQQ-not-really\n");
    let run = with_identity(&host, &junk, &["get", "SNOWFLAKE.PASSWORD"]).fails(1);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}` is not an identity runvault can use: its key line is not an \
             age X25519 identity (`AGE-SECRET-KEY-1...`); create one with `runvault keygen \
             --identity FILE`\n",
            junk.display()
        )
    );
}

#[test]
fn an_ssh_ed25519_host_key_opens_its_recipient_slot() {
    // `ssh-keygen` is in openssh-client (.ci/run installs it).
    let test = "an_ssh_ed25519_host_key_opens_its_recipient_slot";
    if !have("ssh-keygen", "-?", test) {
        return;
    }
    let host = admin_host();
    let (key, public) = ssh_key(&host, "ssh_host_ed25519_key");
    let run = host.run(&["key", "add", "recipient", &public]).ok();
    assert_eq!(run.out(), "added slot 2\n");
    // Stored without the comment, as `keygen --recipient` prints it.
    let canonical = public.rsplit_once(' ').unwrap().0;
    let run = host
        .bare_command()
        .args(["keygen", "--recipient"])
        .arg(&key)
        .ok();
    assert_eq!(run.out(), format!("{canonical}\n"));
    let json: serde_json::Value =
        serde_json::from_slice(&host.run(&["key", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(json[1]["recipient"], canonical);
    // The comment does not make it another recipient.
    let run = host.run(&["key", "add", "recipient", &public]).ok();
    assert_eq!(run.stderr, "recipient already has slot 2\n");
    let run = with_identity(&host, &key, &["get", "GITLAB.TOKEN"]).ok();
    assert_eq!(run.stdout, b"glpat-secret-2");
}

#[test]
fn a_removed_recipient_cannot_open_the_vault_after_rekey() {
    let host = admin_host();
    let (kept, kept_recipient) = new_identity(&host, "runner-1");
    let (removed, removed_recipient) = new_identity(&host, "runner-2");
    host.run(&["key", "add", "recipient", &kept_recipient]).ok();
    host.run(&[
        "key",
        "add",
        "recipient",
        &removed_recipient,
        "--label",
        "runner-2",
    ])
    .ok();
    let run = host.run(&["key", "remove", "3", "--json"]).ok();
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({
            "removed": 3, "kind": "recipient", "recipient": removed_recipient,
            "label": "runner-2", "rekey": true,
            "rotate": ["SNOWFLAKE.PASSWORD", "GITLAB.TOKEN"]
        })
    );
    assert!(
        run.stderr.contains(&format!(
            "slot 3 was the recipient `{removed_recipient}`: that host still holds the data key"
        )) && run.stderr.contains("run `runvault rekey` now")
            && run
                .stderr
                .contains("rotate at its source each of the 2 value(s)"),
        "{}",
        run.stderr
    );
    // The old file still opens with the removed identity (it is a copy
    // the host may have kept); the rekeyed one does not.
    let old = host.vault_bytes();
    host.run(&["rekey"]).ok();
    with_identity(&host, &removed, &["get", "GITLAB.TOKEN"]).fails(4);
    let run = with_identity(&host, &kept, &["get", "GITLAB.TOKEN"]).ok();
    assert_eq!(run.stdout, b"glpat-secret-2");
    // Rekey needed no secret of the recipient slot it kept.
    let json: serde_json::Value =
        serde_json::from_slice(&host.run(&["key", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_ne!(old, host.vault_bytes());
    // A passphrase slot removed says nothing about rotating.
    let run = host.run(&["key", "remove", "1", "--json"]).ok();
    assert_eq!(run.out(), "{\"kind\":\"passphrase\",\"removed\":1}\n");
    assert_eq!(run.stderr, "removed slot 1\n");
}

#[test]
fn a_recipient_slot_decrypts_with_debian_age_to_the_data_key() {
    let test = "a_recipient_slot_decrypts_with_debian_age_to_the_data_key";
    if !have("age", "--version", test) || !have("ssh-keygen", "-?", test) {
        return;
    }
    let host = admin_host();
    let (file, recipient) = new_identity(&host, "host");
    host.run(&["key", "add", "recipient", &recipient]).ok();
    let (ssh, public) = ssh_key(&host, "ssh_host_ed25519_key");
    host.run(&["key", "add", "recipient", &public]).ok();
    let vault: serde_yaml::Value =
        serde_yaml::from_slice(&host.vault_bytes()).expect("vault.yml is YAML");
    let slots = vault["runvault"]["slots"].as_sequence().unwrap();
    let mut keys = Vec::new();
    for (slot, identity) in [(&slots[1], &file), (&slots[2], &ssh)] {
        assert_eq!(slot["kind"], "recipient");
        use base64::Engine;
        let wrapped = base64::engine::general_purpose::STANDARD
            .decode(slot["wrapped"].as_str().unwrap())
            .unwrap();
        let age_file = host.path("slot.age");
        std::fs::write(&age_file, &wrapped).unwrap();
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(identity)
            .arg(&age_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "age -d: {out:?}");
        assert_eq!(out.stdout.len(), 32, "the data key");
        keys.push(out.stdout);
    }
    assert_eq!(keys[0], keys[1], "both slots wrap the one data key");
    // And it is the key: the vault's MAC checks under it.
    let key: [u8; 32] = keys[0].clone().try_into().unwrap();
    let (vault, _) = EncryptedVault::parse(&host.vault_bytes()).unwrap();
    let subkeys = Subkeys::derive(&Key32::from_bytes(key));
    let mac = compute_mac(&subkeys.mac, &vault.header, &vault.secrets, &vault.history);
    assert_eq!(mac, vault.header.mac);
}
