//! Many hosts (issue 21, docs/fleet.md): host identities, recipient slots
//! (`key add recipient`, `--identity`, `RUNVAULT_IDENTITY`, an OpenSSH
//! ed25519 key), their removal with `rekey`, and the interoperability of a
//! slot with Debian's `age`.

use std::path::{Path, PathBuf};
use std::process::Command;

use runvault::core::secret::Key32;
use runvault::vault::testing::crypto::Subkeys;
use runvault::vault::testing::format::{EncryptedVault, compute_mac};

use crate::support::images::have;
use crate::support::{Host, Runs, mode};

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
        )) && run
            .stderr
            .contains(" rekey` now (the new key is sealed to the other recipients only)")
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
    assert!(
        run.stderr
            .starts_with("removed slot 1; its secret still opens copies")
            && !run.stderr.contains("recipient")
            && !run.stderr.contains("rotate"),
        "{}",
        run.stderr
    );
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

/// An admin's source vault (`admin_host`) with a recipient slot for a
/// second host, which has its own identity, secrets and state directory.
struct Fleet {
    admin: Host,
    host: Host,
    identity: PathBuf,
}

impl Fleet {
    fn new() -> Fleet {
        let admin = admin_host();
        let host = Host::new();
        let (identity, recipient) = new_identity(&host, "host");
        admin
            .run(&["key", "add", "recipient", &recipient, "--label", "runner-1"])
            .ok();
        Fleet {
            admin,
            host,
            identity,
        }
    }

    /// Copies the admin's vault.yml and vault.salt to the host's staging
    /// directory, as Ansible ships them; returns that directory.
    fn ship(&self) -> PathBuf {
        let staging = self.host.path("staging");
        std::fs::create_dir_all(&staging).unwrap();
        for name in ["vault.yml", "vault.salt"] {
            std::fs::copy(self.admin.dir().join(name), staging.join(name)).unwrap();
        }
        staging
    }

    /// `receive` of the staging directory on the host, with its identity.
    fn receive(&self, extra: &[&str]) -> crate::support::Run {
        let mut cmd = self.host.command();
        cmd.arg("--identity")
            .arg(&self.identity)
            .arg("receive")
            .arg(self.host.path("staging"))
            .args(extra);
        cmd.run()
    }

    fn host_get(&self, path: &str) -> Vec<u8> {
        with_identity(&self.host, &self.identity, &["get", path])
            .ok()
            .stdout
    }

    fn generation(host: &Host) -> u64 {
        let text = String::from_utf8(host.vault_bytes()).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("  generation: "))
            .unwrap();
        line["  generation: ".len()..].parse().unwrap()
    }
}

/// Every file of the host's secrets and state directories with its bytes,
/// mode and modification time (a refused receive changes none of them).
fn files_with_times(host: &Host) -> Vec<(PathBuf, Vec<u8>, u32, std::time::SystemTime)> {
    let mut files = Vec::new();
    for dir in [host.dir(), host.state_dir()] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            files.push((
                path.clone(),
                std::fs::read(&path).unwrap(),
                mode(&path),
                modified,
            ));
        }
    }
    files.sort();
    files
}

#[test]
fn receive_installs_a_verified_vault_and_a_rerun_is_unchanged() {
    let fleet = Fleet::new();
    fleet.ship();
    let generation = Fleet::generation(&fleet.admin);
    let run = fleet.receive(&["--source", "ansible:prod@controller"]).ok();
    assert_eq!(run.out(), format!("installed generation {generation}\n"));
    assert_eq!(fleet.host.vault_bytes(), fleet.admin.vault_bytes());
    assert_eq!(
        std::fs::read(fleet.host.salt_file()).unwrap(),
        std::fs::read(fleet.admin.salt_file()).unwrap()
    );
    assert_eq!(mode(&fleet.host.vault_file()), 0o600);
    assert_eq!(fleet.host_get("SNOWFLAKE.PASSWORD"), b"snow-secret-1");
    // The audit line: the generation, the vault id, the file's SHA-256.
    let audit = std::fs::read_to_string(fleet.host.dir().join("audit.log")).unwrap();
    let line: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(line["command"], "receive");
    assert_eq!(line["generation_after"], generation);
    use sha2::Digest;
    let sha = sha2::Sha256::digest(fleet.admin.vault_bytes());
    let sha: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    let detail = line["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("received generation {generation} of vault ")));
    assert!(detail.contains(&format!("sha256 {sha}")), "{detail}");
    assert!(
        detail.ends_with("; source ansible:prod@controller"),
        "{detail}"
    );
    assert!(!audit.contains("snow-secret") && !audit.contains("glpat"));
    // Run again: nothing changes.
    let before = files_with_times(&fleet.host);
    let run = fleet.receive(&[]).ok();
    assert_eq!(run.out(), format!("unchanged: generation {generation}\n"));
    assert_eq!(files_with_times(&fleet.host), before);
    // A rotation at the source reaches the host with the next push.
    fleet
        .admin
        .set("SNOWFLAKE.PASSWORD", b"snow-secret-rotated");
    fleet.ship();
    let run = fleet.receive(&[]).ok();
    assert_eq!(
        run.out(),
        format!("installed generation {}\n", generation + 1)
    );
    assert_eq!(fleet.host_get("SNOWFLAKE.PASSWORD"), b"snow-secret-rotated");
    // So does a rekey with a new salt (the two-file install).
    fleet.admin.run(&["rekey", "--new-salt"]).ok();
    fleet.ship();
    fleet.receive(&[]).ok();
    assert_eq!(fleet.host_get("GITLAB.TOKEN"), b"glpat-secret-2");
    assert!(!fleet.host.dir().join("vault.salt.next").exists());
}

#[test]
fn receive_refuses_what_does_not_open_verify_or_move_forward_and_changes_nothing() {
    let fleet = Fleet::new();
    fleet.ship();
    let old_vault = fleet.admin.vault_bytes();
    let old_salt = std::fs::read(fleet.admin.salt_file()).unwrap();
    fleet.receive(&[]).ok();
    fleet.admin.set("GITLAB.TOKEN", b"glpat-rotated");
    let staging = fleet.ship();
    fleet.receive(&[]).ok();
    let installed = Fleet::generation(&fleet.host);
    let before = files_with_times(&fleet.host);
    let unchanged = |run: crate::support::Run| {
        assert!(run.stdout.is_empty(), "{}", run.describe());
        assert_eq!(files_with_times(&fleet.host), before, "{}", run.describe());
        run
    };

    // Exit 9: an older generation (a replay of a revoked credential).
    std::fs::write(staging.join("vault.yml"), &old_vault).unwrap();
    std::fs::write(staging.join("vault.salt"), &old_salt).unwrap();
    let run = unchanged(fleet.receive(&[]).fails(9));
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: refusing to install generation {} from `{}`: the installed vault \
             `{}` is at generation {installed}; an older or equal generation is a replay (ship \
             the current source vault)\n",
            installed - 1,
            staging.join("vault.yml").display(),
            fleet.host.vault_file().display()
        )
    );

    // Exit 5: one changed byte in a value (the MAC no longer matches).
    fleet.ship();
    let shipped = String::from_utf8(fleet.admin.vault_bytes()).unwrap();
    let at = shipped.find("GITLAB:").unwrap();
    let value_at = at + shipped[at..].find("rv1:").unwrap() + 20;
    let mut tampered = shipped.clone().into_bytes();
    tampered[value_at] = if tampered[value_at] == b'A' {
        b'B'
    } else {
        b'A'
    };
    std::fs::write(staging.join("vault.yml"), &tampered).unwrap();
    let run = unchanged(fleet.receive(&[]).fails(5));
    assert!(
        run.stderr.starts_with(&format!(
            "runvault: error: `{}` failed authentication: the file was modified outside runvault",
            staging.join("vault.yml").display()
        )),
        "{}",
        run.stderr
    );

    // Exit 5: the same generation with other bytes.
    let mut other = shipped.clone();
    other.push_str("# a comment\n");
    std::fs::write(staging.join("vault.yml"), other).unwrap();
    let run = unchanged(fleet.receive(&[]).fails(5));
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: refusing to install `{}`: it is generation {installed}, as `{}` is, \
             but the files differ; two vaults with one generation mean one was not made by the \
             source\n",
            staging.join("vault.yml").display(),
            fleet.host.vault_file().display()
        )
    );

    // Exit 4: a vault with no slot for this host.
    let stranger = admin_host();
    for name in ["vault.yml", "vault.salt"] {
        std::fs::copy(stranger.dir().join(name), staging.join(name)).unwrap();
    }
    let run = unchanged(fleet.receive(&[]).fails(4));
    let recipient = runvault_recipient(&fleet);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: the vault in `{}` has no slot for this host's identity; on the \
             admin's vault, add it with `runvault key add recipient {recipient}` and ship the \
             vault again\n",
            staging.display()
        )
    );

    // Exit 5: another vault (another vault_id), even one this host opens.
    // The hint above, pasted on that vault, gives this host its slot.
    let hint = run.stderr.split('`').nth(3).unwrap();
    let words: Vec<&str> = hint.split(' ').skip(1).collect();
    assert_eq!(stranger.run(&words).ok().out(), "added slot 2\n");
    for name in ["vault.yml", "vault.salt"] {
        std::fs::copy(stranger.dir().join(name), staging.join(name)).unwrap();
    }
    let run = unchanged(fleet.receive(&[]).fails(5));
    assert!(
        run.stderr.starts_with(&format!(
            "runvault: error: refusing to install `{}`: it is vault ",
            staging.join("vault.yml").display()
        )) && run
            .stderr
            .contains("pass --replace-vault if this host moves to the other vault"),
        "{}",
        run.stderr
    );
    // With --replace-vault it is installed.
    let run = fleet.receive(&["--replace-vault"]).ok();
    assert_eq!(
        run.out(),
        format!("installed generation {}\n", Fleet::generation(&stranger))
    );
    assert_eq!(fleet.host_get("GITLAB.TOKEN"), b"glpat-secret-2");
    // Moving back to the first vault: its mark on this host still
    // remembers generation {installed}: not above it is a replay.
    fleet.ship();
    let run = fleet.receive(&["--replace-vault"]).fails(9);
    assert!(
        run.stderr
            .contains(&format!("refusing to install generation {installed} from"))
            && run.stderr.contains("this host's high-water mark `"),
        "{}",
        run.stderr
    );
}

/// The recipient of the fleet host's identity.
fn runvault_recipient(fleet: &Fleet) -> String {
    fleet
        .host
        .bare_command()
        .args(["keygen", "--recipient"])
        .arg(&fleet.identity)
        .ok()
        .out()
        .trim_end()
        .to_owned()
}

#[test]
fn a_rolled_back_secrets_dir_is_reported_by_doctor_and_refused_by_receive() {
    let fleet = Fleet::new();
    fleet.ship();
    fleet.receive(&[]).ok();
    let old = fleet.host.vault_bytes();
    fleet.admin.set("GITLAB.TOKEN", b"glpat-rotated");
    fleet.ship();
    fleet.receive(&[]).ok();
    // Someone with write access to the secrets directory puts the old one back.
    std::fs::write(fleet.host.vault_file(), &old).unwrap();
    let doctor = fleet
        .host
        .command()
        .arg("--identity")
        .arg(&fleet.identity)
        .args(["doctor", "--json"])
        .fails(1);
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(crate::support::status_of(&report, "vault.rollback"), "fail");
    // The next push is refused until an admin looks (exit 5, both generations).
    fleet.admin.set("GITLAB.TOKEN", b"glpat-rotated-again");
    fleet.ship();
    let before = files_with_times(&fleet.host);
    let run = fleet.receive(&[]).fails(5);
    assert!(
        run.stderr.contains("generation") && run.stderr.contains("accept-rollback"),
        "{}",
        run.stderr
    );
    assert_eq!(files_with_times(&fleet.host), before);
}

#[test]
fn a_managed_host_refuses_local_changes_unless_local() {
    let fleet = Fleet::new();
    fleet.ship();
    fleet
        .receive(&["--source", "ansible:prod-group@controller"])
        .ok();
    let generation = Fleet::generation(&fleet.host);
    let expected = format!(
        "runvault: error: `{}` is managed: it receives its vault from \
         ansible:prod-group@controller (last generation {generation}), and the next `runvault \
         receive` would replace a local change; make the change there, or pass --local if you \
         mean to change this host alone\n",
        fleet.host.dir().display()
    );
    let import = fleet.host.private_file("import.yml", "NEW: value\n");
    let import = import.to_str().unwrap();
    let before = files_with_times(&fleet.host);
    // No secret is given: the refusal comes before any prompt or KDF.
    for args in [
        &["set", "GITLAB.TOKEN", "--stdin"][..],
        &["rm", "GITLAB.TOKEN"],
        &["rekey"],
        &[
            "key",
            "add",
            "recipient",
            "age1q0xmw0wfqtjwfhhrpwnfmtsmy0npvxzam25mhrxpp65saddfm40que9yyj",
        ],
        &["key", "remove", "2"],
        &["import", import],
        &["rollback", "GITLAB.TOKEN", "--version", "1"],
    ] {
        let run = fleet.host.command().args(args).fails(1);
        assert_eq!(run.stderr, expected, "{args:?}");
    }
    assert_eq!(files_with_times(&fleet.host), before);
    // Reading is not a change.
    with_identity(&fleet.host, &fleet.identity, &["key", "list"]).ok();
    // --local: the admin means it.
    fleet
        .host
        .command()
        .arg("--identity")
        .arg(&fleet.identity)
        .args(["--local", "set", "LOCAL.ONLY", "--stdin"])
        .run_in(b"here")
        .ok();
    assert_eq!(fleet.host_get("LOCAL.ONLY"), b"here");
}

#[test]
fn long_sigkill_during_receive_leaves_the_old_or_the_new_vault() {
    use std::fmt::Write as _;
    use std::process::Stdio;
    use std::time::Instant;
    let fleet = Fleet::new();
    let mut yaml = String::new();
    for i in 0..2000 {
        let _ = writeln!(
            yaml,
            "SERVICE_{i}:\n  PASSWORD: password-{i}-abcdefghijklmnop"
        );
    }
    let file = fleet.admin.private_file("big.yml", &yaml);
    fleet.admin.run(&["import", file.to_str().unwrap()]).ok();
    fleet.ship();
    let timed = Instant::now();
    fleet.receive(&[]).ok();
    let receive_time = timed.elapsed();
    let mut current = b"password-1-abcdefghijklmnop".to_vec();
    let (mut killed_mid, mut finished) = (0, 0);
    let mut seed = 0x2545_f491_u64;
    for round in 1..=24 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let value = format!("v{round}").into_bytes();
        fleet.admin.set("SERVICE_1.PASSWORD", &value);
        // Every third round the source changes its salt too: the host
        // installs both files with the two-file protocol.
        if round % 3 == 0 {
            fleet.admin.run(&["rekey", "--new-salt"]).ok();
        }
        fleet.ship();
        let mut child = fleet
            .host
            .command()
            .arg("--identity")
            .arg(&fleet.identity)
            .arg("receive")
            .arg(fleet.host.path("staging"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // From the start to well past a whole receive: some kills miss.
        std::thread::sleep(receive_time.mul_f64((seed % 1000) as f64 / 600.0));
        let _ = child.kill();
        if crate::support::killed_mid_command(child.wait().unwrap(), round) {
            killed_mid += 1;
        } else {
            finished += 1;
        }
        with_identity(&fleet.host, &fleet.identity, &["verify"]).ok();
        let now = fleet.host_get("SERVICE_1.PASSWORD");
        assert!(
            now == current || now == value,
            "round {round}: old or new, got {}",
            String::from_utf8_lossy(&now)
        );
        // Whatever the kill left, the next receive installs the shipped vault.
        let run = fleet.receive(&[]).ok();
        assert!(
            run.out().starts_with("installed generation") || run.out().starts_with("unchanged"),
            "{}",
            run.out()
        );
        assert_eq!(fleet.host_get("SERVICE_1.PASSWORD"), value);
        current = value;
    }
    let stray = fleet.host.stray_temp_files();
    assert!(stray.is_empty(), "stray files: {stray:?}");
    eprintln!(
        "24 rounds: {killed_mid} killed mid-receive, {finished} finished first (one receive takes {receive_time:?})"
    );
    assert!(killed_mid >= 6, "many kills must land mid-command");
}

#[test]
fn receive_refreshes_the_hosts_views_as_set_does() {
    if !crate::support::require_root("receive_refreshes_the_hosts_views_as_set_does") {
        return;
    }
    let fleet = Fleet::new();
    fleet.ship();
    fleet.receive(&[]).ok();
    let _ram = crate::support::Tmpfs::mount(&fleet.host.path("run"), "size=4m,mode=0755");
    let view = fleet.host.path("run/view");
    with_identity(
        &fleet.host,
        &fleet.identity,
        &["view", "add", view.to_str().unwrap()],
    )
    .ok();
    let plain = || std::fs::read_to_string(view.join("vault.yml")).unwrap();
    assert!(plain().contains("snow-secret-1"), "{}", plain());
    fleet
        .admin
        .set("SNOWFLAKE.PASSWORD", b"snow-secret-rotated");
    fleet.ship();
    fleet.receive(&[]).ok();
    assert!(plain().contains("snow-secret-rotated"), "{}", plain());
    assert!(!plain().contains("snow-secret-1"));
}

#[test]
fn runner_configure_identity_replaces_the_key_file_wiring() {
    let host = Host::new();
    host.with_config("config.toml");
    host.runner("configure", "my-runner", &[]).ok();
    let (identity, _) = new_identity(&host, "host");
    let ids = host.path("identities").display().to_string();
    let keys = host.path("keys").display().to_string();
    let done = host
        .runner(
            "configure",
            "my-runner",
            &["--identity", identity.to_str().unwrap()],
        )
        .ok();
    assert_eq!(
        done.stderr,
        format!(
            "runner `my-runner`: removed environment `RUNVAULT_KEY_FILE={key}` (not part of this \
             wiring)\n\
             runner `my-runner`: added environment `RUNVAULT_IDENTITY={identity}`\n\
             runner `my-runner`: replaced volume `{keys}:{keys}:ro` with `{ids}:{ids}:ro` (the \
             key directory is now `{ids}`)\n\
             updated `{config}`\n",
            key = host.key_file().display(),
            identity = identity.display(),
            config = host.config_toml().display(),
        )
    );
    let text = std::fs::read_to_string(host.config_toml()).unwrap();
    assert!(
        text.contains(&format!(
            "environment = [\"RUNVAULT_DIR=/secrets\", \"RUNVAULT_IDENTITY={}\"]",
            identity.display()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("\"{ids}:{ids}:ro\"")) && !text.contains(&keys));
    // Again: unchanged. The layout file remembers the identity, so a plain
    // configure keeps this wiring.
    let again = host
        .bare_command()
        .args(["runner", "configure", "--name", "my-runner", "--config-dir"])
        .arg(host.config_dir())
        .arg("--dir")
        .arg(host.dir())
        .arg("--bin-dir")
        .arg(host.bin_dir())
        .ok();
    assert_eq!(
        again.stderr,
        format!("`{}`: unchanged\n", host.config_toml().display())
    );
}

#[test]
fn doctor_checks_the_identity_and_reports_a_managed_host() {
    let fleet = Fleet::new();
    fleet.ship();
    fleet.receive(&["--source", "ansible:prod@controller"]).ok();
    let doctor = || {
        let run = fleet
            .host
            .command()
            .arg("--identity")
            .arg(&fleet.identity)
            .args(["doctor", "--json"])
            .run();
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        (run, report)
    };
    let (run, report) = doctor();
    let checks: Vec<&str> = (report["findings"].as_array().unwrap().iter())
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    for check in [
        "identity.exists",
        "identity.owner",
        "identity.mode",
        "identity.location",
    ] {
        assert_eq!(
            crate::support::status_of(&report, check),
            "ok",
            "{check}: {report}"
        );
    }
    assert!(!checks.contains(&"keyfile.exists"), "{checks:?}");
    assert_eq!(
        crate::support::status_of(&report, "vault.verify"),
        "ok",
        "{}",
        run.stderr
    );
    let managed = crate::support::findings(&report, "fleet.managed");
    assert_eq!(managed.len(), 1);
    assert!(
        managed[0].1.contains("ansible:prod@controller")
            && managed[0].1.contains(&format!(
                "last received generation {}",
                Fleet::generation(&fleet.host)
            )),
        "{managed:?}"
    );
    // A mode others can read fails `identity.mode` (the layout file names
    // the identity, as `keygen --identity` recorded it).
    std::fs::set_permissions(
        &fleet.identity,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let run = fleet.host.command().args(["doctor", "--json"]).fails(1);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        crate::support::findings(&report, "identity.mode")[0],
        (
            "fail".to_owned(),
            format!("`{}` is mode 0644", fleet.identity.display()),
            format!("run `chmod 400 {}`", fleet.identity.display())
        )
    );
    std::fs::set_permissions(
        &fleet.identity,
        std::os::unix::fs::PermissionsExt::from_mode(0o400),
    )
    .unwrap();
    // An identity inside the secrets directory fails `identity.location`.
    let inside = fleet.host.dir().join("host.key");
    std::fs::copy(&fleet.identity, &inside).unwrap();
    let run = fleet
        .host
        .command()
        .arg("--identity")
        .arg(&inside)
        .args(["doctor", "--json"])
        .fails(1);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        crate::support::status_of(&report, "identity.location"),
        "fail"
    );
}

#[test]
fn an_identity_is_one_unwrap_per_command_however_many_hosts_the_vault_has() {
    let fleet = Fleet::new();
    // Nine more hosts' slots: only the identity's own slot is tried.
    for i in 0..9 {
        let (_, recipient) = new_identity(&fleet.admin, &format!("other-{i}"));
        fleet
            .admin
            .run(&["key", "add", "recipient", &recipient])
            .ok();
    }
    fleet.ship();
    fleet.receive(&[]).ok();
    let runs = |args: &[&str]| {
        let run = fleet
            .host
            .command()
            .env("RUNVAULT_DEBUG_KDF_RUNS", "1")
            .env("REF", "DATAOPS_VAULT(GITLAB.TOKEN)")
            .arg("--identity")
            .arg(&fleet.identity)
            .args(args)
            .ok();
        (run.stderr.lines())
            .find(|line| line.starts_with("runvault: debug: kdf runs: "))
            .unwrap_or_else(|| panic!("{args:?}: {}", run.stderr))
            .to_owned()
    };
    for args in [
        &["get", "GITLAB.TOKEN"][..],
        &["exec", "--", "true"],
        &["verify"],
        &["export"],
        &["list"],
    ] {
        assert_eq!(runs(args), "runvault: debug: kdf runs: 1", "{args:?}");
    }
    // And receive: one unwrap for the shipped vault, none for the installed one.
    fleet.admin.set("GITLAB.TOKEN", b"glpat-rotated");
    fleet.ship();
    let staging = fleet.host.path("staging");
    let run = fleet
        .host
        .command()
        .env("RUNVAULT_DEBUG_KDF_RUNS", "1")
        .arg("--identity")
        .arg(&fleet.identity)
        .arg("receive")
        .arg(&staging)
        .ok();
    assert!(
        run.stderr.contains("runvault: debug: kdf runs: 1"),
        "{}",
        run.stderr
    );
}
