//! Rotation that never loses a credential: versions, rollback, check-and-set,
//! rekey (with the two-file salt protocol), the audit log, and proof under
//! concurrency, SIGKILL, a full disk and a read-only directory.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Host, Runs, Tmpfs, require_root};

fn key_host() -> Host {
    let host = Host::new();
    host.init_with_key_and_passphrase();
    host
}

fn set_key(host: &Host, path: &str, value: &str) -> crate::support::Run {
    host.run_key(&["set", path, "--stdin"], value.as_bytes())
}

fn get_key(host: &Host, path: &str) -> Vec<u8> {
    host.run_key(&["get", path], b"").ok().stdout
}

#[test]
fn history_keeps_ten_versions_and_rollback_restores_one_as_new() {
    let host = key_host();
    for i in 1..=12 {
        set_key(&host, "SNOWFLAKE.TRANSFORM.PASSWORD", &format!("pw-{i}")).ok();
    }
    let history: serde_json::Value = serde_json::from_slice(
        &host
            .run_key(&["history", "SNOWFLAKE.TRANSFORM.PASSWORD", "--json"], b"")
            .ok()
            .stdout,
    )
    .unwrap();
    let versions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        versions,
        (3..=12).collect::<Vec<u64>>(),
        "the last 10 versions, the current one included"
    );
    assert_eq!(history[9]["current"], true);
    let text = host
        .run_key(&["history", "SNOWFLAKE.TRANSFORM.PASSWORD"], b"")
        .ok()
        .out();
    assert!(text.starts_with("VERSION  TIME"), "{text}");
    assert!(!text.contains("pw-"), "history never shows values");

    let run = host
        .run_key(
            &["rollback", "SNOWFLAKE.TRANSFORM.PASSWORD", "--version", "5"],
            b"",
        )
        .ok();
    assert_eq!(
        run.stderr,
        "restored version 5 of `SNOWFLAKE.TRANSFORM.PASSWORD` as version 13\n"
    );
    assert_eq!(get_key(&host, "SNOWFLAKE.TRANSFORM.PASSWORD"), b"pw-5");
    let run = host
        .run_key(&["rollback", "SNOWFLAKE.TRANSFORM.PASSWORD"], b"")
        .ok();
    assert_eq!(
        run.stderr,
        "restored version 12 of `SNOWFLAKE.TRANSFORM.PASSWORD` as version 14\n"
    );
    assert_eq!(get_key(&host, "SNOWFLAKE.TRANSFORM.PASSWORD"), b"pw-12");
    let run = host.run_key(
        &["rollback", "SNOWFLAKE.TRANSFORM.PASSWORD", "--version", "2"],
        b"",
    );
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `SNOWFLAKE.TRANSFORM.PASSWORD` has no stored version 2; see \
             `runvault history SNOWFLAKE.TRANSFORM.PASSWORD --dir {}`\n",
            host.dir().display()
        )
    );
    host.run_key(&["verify"], b"").ok();
}

#[test]
fn rm_is_recoverable_until_purged() {
    let host = key_host();
    set_key(&host, "AWS.DEFAULT.S3_SECRET", "one").ok();
    set_key(&host, "AWS.DEFAULT.S3_SECRET", "two").ok();
    host.run_key(&["rm", "AWS.DEFAULT.S3_SECRET"], b"").ok();
    assert_eq!(host.run_key(&["get", "AWS.DEFAULT.S3_SECRET"], b"").code, 3);
    let history: serde_json::Value = serde_json::from_slice(
        &host
            .run_key(&["history", "AWS.DEFAULT.S3_SECRET", "--json"], b"")
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(history[2]["version"], 3);
    assert_eq!(history[2]["deleted"], true);
    let run = host
        .run_key(&["rollback", "AWS.DEFAULT.S3_SECRET"], b"")
        .ok();
    assert_eq!(
        run.stderr,
        "restored version 2 of `AWS.DEFAULT.S3_SECRET` as version 4\n"
    );
    assert_eq!(get_key(&host, "AWS.DEFAULT.S3_SECRET"), b"two");

    host.run_key(&["rm", "AWS.DEFAULT.S3_SECRET", "--purge"], b"")
        .ok();
    let run = host.run_key(&["history", "AWS.DEFAULT.S3_SECRET"], b"");
    assert_eq!(run.code, 3, "purged versions are gone: {}", run.stderr);
    let file = String::from_utf8(host.vault_bytes()).unwrap();
    assert!(
        !file.contains("S3_SECRET"),
        "no trace of the purged path:\n{file}"
    );
}

/// Found by `tests/properties/stream_reader.rs`: removing the last key of a
/// mapping that is a list item removed the item but left the later items
/// sealed under their old indices, so they no longer decrypted.
#[test]
fn rm_of_the_last_key_in_a_list_item_shifts_the_list_and_keeps_it_readable() {
    let host = key_host();
    let file = host.root.path().join("hosts.yml");
    std::fs::write(
        &file,
        "HOSTS:\n  - NAME: \"db1\"\n  - \"db2\"\n  - \"db3\"\nM:\n  N:\n    O: \"deep\"\n  P: \"kept\"\n",
    )
    .unwrap();
    host.run_key(&["import", file.to_str().unwrap()], b"").ok();
    let run = host.run_key(&["rm", "HOSTS[0].NAME"], b"").ok();
    assert_eq!(run.stderr, "removed `HOSTS[0].NAME` (1 value(s))\n");
    host.run_key(&["rm", "M.N.O"], b"").ok();
    host.run_key(&["verify"], b"").ok();
    assert_eq!(get_key(&host, "HOSTS[0]"), b"db2");
    assert_eq!(get_key(&host, "HOSTS[1]"), b"db3");
    assert_eq!(host.run_key(&["get", "HOSTS[2]"], b"").code, 3);
    assert_eq!(
        host.run_key(&["get", "M.N"], b"").code,
        3,
        "the emptied mapping went too"
    );
    assert_eq!(get_key(&host, "M.P"), b"kept");
    let history: serde_json::Value = serde_json::from_slice(
        &host
            .run_key(&["history", "HOSTS[0].NAME", "--json"], b"")
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        history[1]["deleted"], true,
        "the removed value is a stored version"
    );
}

#[test]
fn check_and_set_refuses_a_path_that_moved_on() {
    let host = key_host();
    host.run_key(&["set", "A.B", "--stdin", "--if-version", "0"], b"first")
        .ok();
    let before = host.vault_bytes();
    let run = host.run_key(&["set", "A.B", "--stdin", "--if-version", "0"], b"second");
    assert_eq!(run.code, 8);
    assert_eq!(
        run.stderr,
        "runvault: error: `A.B` is at version 1, not 0; nothing was changed (re-read it and retry)\n"
    );
    assert_eq!(host.vault_bytes(), before);
    let run = host
        .run_key(&["set", "A.B", "--stdin", "--if-version", "1"], b"second")
        .ok();
    assert_eq!(run.stderr, "set `A.B` (version 2)\n");
}

#[test]
fn every_change_appends_an_audit_line_without_values() {
    let host = key_host();
    let mut cmd = host.command();
    cmd.env("SUDO_USER", "alice")
        .arg("--key-file")
        .arg(host.key_file())
        .args(["set", "DB.PASSWORD", "--stdin"]);
    cmd.run_in(b"Very-Secret-1").ok();
    set_key(&host, "DB.PASSWORD", "Very-Secret-2").ok();
    host.run_key(&["rollback", "DB.PASSWORD"], b"").ok();
    host.run_key(&["rm", "DB.PASSWORD"], b"").ok();
    host.run_key(
        &[
            "rekey",
            "--also-passphrase-file",
            host.pass_file().to_str().unwrap(),
        ],
        b"",
    )
    .ok();
    let log = std::fs::read_to_string(host.dir().join("audit.log")).unwrap();
    assert!(!log.contains("Very-Secret"), "no value in the audit log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let commands: Vec<&str> = lines
        .iter()
        .map(|l| l["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["init", "set", "set", "rollback", "rm", "rekey"]);
    assert_eq!(lines[1]["sudo_user"], "alice");
    assert_eq!(
        lines[1]["uid"].as_u64(),
        Some(u64::from(std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").unwrap()
        )))
    );
    for pair in lines.windows(2) {
        assert_eq!(
            pair[0]["generation_after"], pair[1]["generation_before"],
            "generations chain"
        );
    }
    assert_eq!(lines[1]["changes"][0]["path"], "DB.PASSWORD");
    assert_eq!(lines[1]["changes"][0]["version"], 1);

    // The HMAC proves which value was set, without revealing it.
    let first_hmac = lines[1]["changes"][0]["hmac"].as_str().unwrap();
    let rolled_back = lines[3]["changes"][0]["hmac"].as_str().unwrap();
    assert_eq!(rolled_back, first_hmac, "rollback restored the first value");
    let candidate = host
        .run_key(&["audit-hmac", "DB.PASSWORD", "--stdin"], b"Very-Secret-1")
        .ok()
        .out();
    assert_eq!(candidate.trim(), first_hmac, "the audit key survives rekey");
    let wrong = host
        .run_key(&["audit-hmac", "DB.PASSWORD", "--stdin"], b"guess")
        .ok()
        .out();
    assert_ne!(wrong.trim(), first_hmac);
}

#[test]
fn a_change_whose_audit_line_cannot_be_written_does_not_happen() {
    let host = key_host();
    set_key(&host, "A", "v").ok();
    let before = host.vault_bytes();
    let log = host.root.path().join("no-such-dir").join("audit.log");
    // `rekey` that keeps the salt syncs its line beside the new file, as
    // `set` does: the same refusal, and the old data key still opens the vault.
    let changes: [(&[&str], &[u8]); 2] = [
        (&["set", "A", "--stdin"], b"w"),
        (&["rekey", "--drop-others"], b""),
    ];
    for (change, stdin) in changes {
        let mut args = vec!["--audit-log", log.to_str().unwrap()];
        args.extend_from_slice(change);
        let run = host.run_key(&args, stdin);
        assert_eq!(run.code, 1, "{change:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with(&format!(
                "runvault: error: cannot open the audit log `{}`",
                log.display()
            )),
            "{change:?}: {}",
            run.stderr
        );
        assert_eq!(host.vault_bytes(), before, "{change:?}");
        assert_eq!(get_key(&host, "A"), b"v", "{change:?}");
    }
}

#[test]
fn rekey_rotates_the_data_key_and_needs_every_slots_secret() {
    let host = key_host();
    set_key(&host, "A.B", "value-ab").ok();
    set_key(&host, "A.B", "value-ab-2").ok();
    let before = String::from_utf8(host.vault_bytes()).unwrap();
    let ciphertexts = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("rv1:"))
            .map(|l| l.trim().to_string())
            .collect()
    };

    // Only the key file given: the passphrase slot (2) cannot be re-wrapped.
    let run = host.run_key(&["rekey"], b"");
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "runvault: error: rekey needs the secret of every key slot it keeps; no given secret opens slot(s) 2: pass them \
         with --also-passphrase-file / --also-key-file, or remove those slots with --drop-others\n"
    );
    assert_eq!(host.vault_bytes(), before.as_bytes());

    let pass = host.pass_file();
    let run = host
        .run_key(
            &["rekey", "--also-passphrase-file", pass.to_str().unwrap()],
            b"",
        )
        .ok();
    assert_eq!(
        run.stderr,
        "rekeyed: new data key, 2 value(s) and stored version(s) re-encrypted, slot(s) 1, 2 re-wrapped\n"
    );
    let after = String::from_utf8(host.vault_bytes()).unwrap();
    for line in ciphertexts(&before) {
        assert!(
            !after.contains(&line),
            "every ciphertext and wrapped key changes: {line}"
        );
    }
    assert_eq!(get_key(&host, "A.B"), b"value-ab-2");
    assert_eq!(
        host.run(&["get", "A.B"]).ok().stdout,
        b"value-ab-2",
        "the passphrase still opens it"
    );
    host.run_key(&["rollback", "A.B"], b"").ok();
    assert_eq!(
        get_key(&host, "A.B"),
        b"value-ab",
        "stored versions were re-encrypted too"
    );

    let run = host.run_key(&["rekey", "--drop-others"], b"").ok();
    assert!(
        run.stderr
            .contains("removed slot(s) 2 that no given secret opened"),
        "{}",
        run.stderr
    );
    assert_eq!(
        host.run(&["get", "A.B"]).code,
        4,
        "the dropped passphrase slot is gone"
    );
}

#[test]
fn rekey_with_a_new_salt_and_kdf_parameters_rederives_every_slot() {
    let host = key_host();
    set_key(&host, "A", "v").ok();
    let old_salt = std::fs::read(host.salt_file()).unwrap();
    let mut cmd = host.command();
    cmd.arg("--key-file")
        .arg(host.key_file())
        .arg("--passphrase-file")
        .arg(host.pass_file());
    cmd.args([
        "rekey",
        "--new-salt",
        "--kdf-memory",
        "16",
        "--kdf-iterations",
        "2",
        "--kdf-parallelism",
        "1",
        "--keep",
        "3",
    ]);
    let run = cmd.run_in(b"").ok();
    assert!(run.stderr.ends_with(", new vault.salt\n"), "{}", run.stderr);
    let new_salt = std::fs::read(host.salt_file()).unwrap();
    assert_ne!(new_salt, old_salt);
    assert!(!host.dir().join("vault.salt.next").exists());
    assert_eq!(get_key(&host, "A"), b"v");
    assert_eq!(host.run(&["get", "A"]).ok().stdout, b"v");
    let slots: serde_json::Value =
        serde_json::from_slice(&host.run_key(&["key", "list", "--json"], b"").ok().stdout).unwrap();
    assert_eq!(slots[1]["kdf"]["memory_kib"], 16);
    assert_eq!(slots[1]["kdf"]["iterations"], 2);
    for i in 0..5 {
        set_key(&host, "A", &format!("v{i}")).ok();
    }
    let history: serde_json::Value =
        serde_json::from_slice(&host.run_key(&["history", "A", "--json"], b"").ok().stdout)
            .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 3, "--keep 3 took effect");
}

/// Runs a command that aborts at a failpoint (debug builds only).
fn crash_at(host: &Host, failpoint: &str, args: &[&str]) {
    let mut cmd = host.command();
    cmd.env("RUNVAULT_FAILPOINT", failpoint)
        .arg("--key-file")
        .arg(host.key_file())
        .args(args);
    let run = cmd.run_in(b"");
    assert_eq!(
        run.code, -1,
        "killed by SIGABRT at {failpoint}: {}",
        run.stderr
    );
}

#[test]
fn an_interrupted_salt_change_is_readable_and_finished_or_undone_by_the_next_writer() {
    // Stopped after staging the next salt: the old pair is intact.
    let host = key_host();
    set_key(&host, "A", "before").ok();
    let old_vault = host.vault_bytes();
    let old_salt = std::fs::read(host.salt_file()).unwrap();
    crash_at(
        &host,
        "rekey-after-salt-next",
        &["rekey", "--new-salt", "--drop-others"],
    );
    assert!(host.dir().join("vault.salt.next").exists());
    assert_eq!(host.vault_bytes(), old_vault);
    assert_eq!(get_key(&host, "A"), b"before", "readers open the old pair");
    set_key(&host, "A", "after").ok();
    assert!(
        !host.dir().join("vault.salt.next").exists(),
        "the next writer rolled the staged salt back"
    );
    assert_eq!(std::fs::read(host.salt_file()).unwrap(), old_salt);
    host.run_key(&["verify"], b"").ok();

    // Stopped after the new vault: readers match it with the staged salt.
    let host = key_host();
    set_key(&host, "A", "before").ok();
    let old_salt = std::fs::read(host.salt_file()).unwrap();
    crash_at(
        &host,
        "rekey-after-vault",
        &["rekey", "--new-salt", "--drop-others"],
    );
    let staged = std::fs::read(host.dir().join("vault.salt.next")).unwrap();
    assert_eq!(std::fs::read(host.salt_file()).unwrap(), old_salt);
    assert_eq!(
        get_key(&host, "A"),
        b"before",
        "readers use the staged salt that matches"
    );
    host.run_key(&["verify"], b"").ok();
    set_key(&host, "A", "after").ok();
    assert!(!host.dir().join("vault.salt.next").exists());
    assert_eq!(
        std::fs::read(host.salt_file()).unwrap(),
        staged,
        "the next writer finished the rekey"
    );
    assert_eq!(get_key(&host, "A"), b"after");
}

#[test]
fn eight_writers_setting_fifty_paths_each_lose_nothing() {
    let host = key_host();
    let start = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let mut script = String::from("for i in $(seq 0 49); do\n");
            let _ = writeln!(
                script,
                "  printf \"w{writer}-$i\" | {} --dir {} --key-file {} --wait 120 set W{writer}.P$i --stdin 2>/dev/null || exit 1",
                env!("CARGO_BIN_EXE_runvault"),
                host.dir().display(),
                host.key_file().display()
            );
            script.push_str("done\n");
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("RUNVAULT_STATE_DIR", host.state_dir())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut writer in writers {
        assert!(writer.wait().unwrap().success(), "a writer failed");
    }
    let elapsed = start.elapsed();
    host.run_key(&["verify"], b"").ok();
    let exported = host
        .run_key(&["export", "--format", "json"], b"")
        .ok()
        .stdout;
    let all: serde_json::Value = serde_json::from_slice(&exported).unwrap();
    let mut count = 0;
    for writer in 0..8 {
        for i in 0..50 {
            assert_eq!(
                all[format!("W{writer}")][format!("P{i}")],
                format!("w{writer}-{i}")
            );
            count += 1;
        }
    }
    assert_eq!(count, 400);
    let log = std::fs::read_to_string(host.dir().join("audit.log")).unwrap();
    assert_eq!(
        log.lines().count(),
        401,
        "one audit line per write, plus init"
    );
    eprintln!(
        "400 serialised writes by 8 processes took {elapsed:?} ({:?} per write)",
        elapsed / 400
    );
}

#[test]
fn readers_during_rotation_see_only_values_that_were_set_in_order() {
    let host = key_host();
    set_key(&host, "SNOWFLAKE.TRANSFORM.PASSWORD", "pw-0").ok();
    let reader_script = format!(
        "end=$(($(date +%s) + 60)); while [ ! -e {stop} ] && [ $(date +%s) -lt $end ]; do \
           {bin} --dir {dir} --key-file {key} get SNOWFLAKE.TRANSFORM.PASSWORD || echo FAILED; echo; done",
        stop = host.root.path().join("stop").display(),
        bin = env!("CARGO_BIN_EXE_runvault"),
        dir = host.dir().display(),
        key = host.key_file().display(),
    );
    let reader = Command::new("sh")
        .arg("-c")
        .arg(reader_script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for i in 1..=30 {
        set_key(&host, "SNOWFLAKE.TRANSFORM.PASSWORD", &format!("pw-{i}")).ok();
        if i % 5 == 0 {
            host.run_key(&["rekey", "--new-salt", "--drop-others"], b"")
                .ok();
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(host.root.path().join("stop"), b"").unwrap();
    let output = reader.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty(), "a read failed: {stderr}");
    let seen: Vec<u32> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.strip_prefix("pw-")
                .unwrap_or_else(|| panic!("unexpected read {l:?}"))
                .parse()
                .unwrap()
        })
        .collect();
    assert!(seen.len() > 10, "the reader ran: {} reads", seen.len());
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "values only move forward: {seen:?}"
    );
    assert_eq!(*seen.last().unwrap(), 30);
}

fn big_host(services: usize) -> Host {
    let host = key_host();
    let mut yaml = String::new();
    for i in 0..services {
        let _ = writeln!(
            yaml,
            "SERVICE_{i}:\n  USERNAME: user{i}\n  PASSWORD: password-{i}-abcdefghijklmnop"
        );
    }
    let file = host.root.path().join("big.yml");
    std::fs::write(&file, yaml).unwrap();
    host.run_key(&["import", file.to_str().unwrap()], b"").ok();
    host
}

#[test]
fn sigkill_at_random_moments_leaves_the_old_or_the_new_vault() {
    let host = big_host(5000);
    let timed = Instant::now();
    set_key(&host, "SERVICE_1.PASSWORD", "v0").ok();
    let write_time = timed.elapsed();
    let mut expected_current = "v0".to_string();
    let (mut killed_mid, mut finished) = (0, 0);
    let mut seed = 0x9e37_79b9_u64;
    for round in 1..=40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = write_time.mul_f64((seed % 1000) as f64 / 1000.0);
        let value = format!("v{round}");
        // Every fourth round rekeys with a new salt (the ordered commit with
        // the salt file), every fourth keeps the salt (the commit `set` makes).
        let change: &[&str] = match round % 4 {
            0 => &["rekey", "--new-salt", "--drop-others"],
            2 => &["rekey", "--drop-others"],
            _ => &["set", "SERVICE_1.PASSWORD", "--stdin"],
        };
        let rekey = change[0] == "rekey";
        let mut cmd = host.command();
        cmd.arg("--key-file")
            .arg(host.key_file())
            .args(change)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            let _ = stdin.write_all(value.as_bytes());
        }
        std::thread::sleep(delay);
        let _ = child.kill();
        if crate::support::killed_mid_command(child.wait().unwrap(), round) {
            killed_mid += 1;
        } else {
            finished += 1;
        }
        let verify = host.run_key(&["verify"], b"");
        assert_eq!(
            verify.code, 0,
            "round {round}: the vault must verify: {}",
            verify.stderr
        );
        let now = String::from_utf8(get_key(&host, "SERVICE_1.PASSWORD")).unwrap();
        if rekey {
            assert_eq!(now, expected_current, "round {round}: rekey keeps values");
        } else {
            assert!(
                now == expected_current || now == value,
                "round {round}: got {now}, expected old or new"
            );
            expected_current = now;
        }
        assert_eq!(get_key(&host, "SERVICE_4999.USERNAME"), b"user4999");
    }
    // The next writer removes whatever temp files the kills left.
    set_key(&host, "SERVICE_2.PASSWORD", "final").ok();
    let stray = host.stray_temp_files();
    assert!(stray.is_empty(), "stray files: {stray:?}");
    eprintln!(
        "40 rounds: {killed_mid} killed mid-command, {finished} finished first (one write takes {write_time:?})"
    );
    assert!(killed_mid >= 10, "most kills must land mid-command");
}

#[test]
fn a_full_disk_fails_cleanly_and_changes_nothing() {
    if !require_root("a_full_disk_fails_cleanly_and_changes_nothing") {
        return;
    }
    let host = Host::new();
    let _tmpfs = Tmpfs::mount(&host.dir(), "size=512k,mode=0700");
    host.keygen();
    host.run_key(&["init"], b"").ok();
    set_key(&host, "A", "small").ok();
    // Fill the disk, leaving less room than a second copy of the vault needs.
    let filler = host.dir().join("filler");
    let vault_len = host.vault_bytes().len();
    let _ = std::fs::write(&filler, vec![0u8; 600 * 1024]);
    let free = {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(host.dir())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert!(
        free < (vault_len as u64) + 4096,
        "the disk is full enough: {free} bytes free"
    );
    let before_vault = host.vault_bytes();
    let before_salt = std::fs::read(host.salt_file()).unwrap();
    let big = host.root.path().join("big-value");
    std::fs::write(&big, vec![b'x'; 64 * 1024]).unwrap();
    let run = host.run_key(&["set", "B", "--from-file", big.to_str().unwrap()], b"");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    assert_eq!(host.vault_bytes(), before_vault, "byte-for-byte unchanged");
    let run = host.run_key(&["rekey", "--new-salt", "--drop-others"], b"");
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    assert_eq!(host.vault_bytes(), before_vault);
    assert_eq!(std::fs::read(host.salt_file()).unwrap(), before_salt);
    let stray: Vec<String> = host
        .dir_listing()
        .into_iter()
        .filter(|n| n.ends_with(".rvtmp"))
        .collect();
    assert!(stray.is_empty(), "no temp file left: {stray:?}");
    std::fs::remove_file(&filler).unwrap();
    host.run_key(&["verify"], b"").ok();
    assert_eq!(get_key(&host, "A"), b"small");
}

#[test]
fn adopting_on_a_full_disk_keeps_the_plaintext_and_the_old_salt() {
    if !require_root("adopting_on_a_full_disk_keeps_the_plaintext_and_the_old_salt") {
        return;
    }
    // init writes the new salt, the audit line and the vault side by side;
    // whichever of them the full disk stops, nothing may change.
    let host = Host::new();
    let _tmpfs = Tmpfs::mount(&host.dir(), "size=64k,mode=0700");
    // A hand-made plaintext vault with the legacy weak salt; encrypted, it
    // needs several pages, so it cannot fit in the one page left below even
    // after the new salt has replaced the old one.
    let plaintext: String = (0..100)
        .map(|i| format!("SERVICE_{i}:\n  PASSWORD: value-{i}\n"))
        .collect();
    std::fs::write(host.vault_file(), plaintext).unwrap();
    std::fs::copy(
        crate::support::fixtures().join("legacy").join("vault.salt"),
        host.salt_file(),
    )
    .unwrap();
    host.keygen();
    let before_vault = host.vault_bytes();
    let before_salt = std::fs::read(host.salt_file()).unwrap();
    // Fill the disk, then free one page: room for the new salt's temp
    // file, not for the encrypted vault's (over two pages: checked below).
    let filler = host.dir().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 128 * 1024]);
    let filled = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(filled - 4096)
        .unwrap();
    let audit_log = host.root.path().join("audit.log");
    let audit_log = audit_log.to_str().unwrap();
    // Which write the full disk stops first is a race between the threads;
    // several attempts make the path where the new salt was already in
    // place (and must be put back) all but certain to run.
    for attempt in 0..12 {
        let run = host.run_key(&["--audit-log", audit_log, "init"], b"");
        assert_eq!(run.code, 1, "attempt {attempt}: {}", run.stderr);
        assert!(
            run.stderr.contains("No space left on device"),
            "{}",
            run.stderr
        );
        assert_eq!(host.vault_bytes(), before_vault, "the plaintext is kept");
        assert_eq!(
            std::fs::read(host.salt_file()).unwrap(),
            before_salt,
            "attempt {attempt}: the old salt is back"
        );
        let stray: Vec<String> = host
            .dir_listing()
            .into_iter()
            .filter(|n| n.ends_with(".rvtmp"))
            .collect();
        assert!(stray.is_empty(), "no temp file left: {stray:?}");
    }
    // With room again, the same command adopts the vault.
    std::fs::remove_file(&filler).unwrap();
    host.run_key(&["--audit-log", audit_log, "init"], b"").ok();
    assert_ne!(std::fs::read(host.salt_file()).unwrap(), before_salt);
    assert!(
        host.vault_bytes().len() > 2 * 4096,
        "the encrypted vault needs more room than the disk had"
    );
    host.run_key(&["verify"], b"").ok();
}

#[test]
fn a_read_only_or_missing_directory_fails_cleanly() {
    if !require_root("a_read_only_or_missing_directory_fails_cleanly") {
        return;
    }
    let host = key_host();
    set_key(&host, "A", "v").ok();
    let before = host.vault_bytes();
    let bind = |args: &[&str]| {
        let status = Command::new("mount")
            .args(args)
            .arg(host.dir())
            .arg(host.dir())
            .status()
            .unwrap();
        assert!(status.success());
    };
    bind(&["--bind"]);
    let status = Command::new("mount")
        .args(["-o", "remount,ro,bind"])
        .arg(host.dir())
        .status()
        .unwrap();
    assert!(status.success());
    let run = host.run_key(&["set", "A", "--stdin"], b"w");
    let _ = Command::new("umount").arg(host.dir()).status();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("Read-only file system"),
        "{}",
        run.stderr
    );
    assert_eq!(host.vault_bytes(), before);

    let missing = host.root.path().join("nowhere");
    let mut cmd = host.bare_command();
    cmd.arg("--dir")
        .arg(&missing)
        .arg("--key-file")
        .arg(host.key_file())
        .args(["set", "A", "--stdin"]);
    let run = cmd.run_in(b"v");
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: no vault in `{0}`: `vault.yml` does not exist; create one with `runvault init --dir {0}`\n",
            missing.display()
        )
    );
    assert!(!missing.exists());
}

#[test]
fn removed_paths_can_be_purged_later_and_reformatted_vaults_keep_their_markers() {
    let host = key_host();
    set_key(&host, "A.B", "one").ok();
    host.run_key(&["rm", "A.B"], b"").ok();
    // A YAML tool reformats the file: the removal marker stays a string.
    let doc: serde_yaml::Value = serde_yaml::from_slice(&host.vault_bytes()).unwrap();
    let marker = doc["history"]["A.B"][1]
        .as_str()
        .expect("the marker is a YAML string");
    assert!(marker.ends_with(":-"), "{marker}");
    std::fs::write(host.vault_file(), serde_yaml::to_string(&doc).unwrap()).unwrap();
    host.run_key(&["verify"], b"").ok();
    let run = host.run_key(&["rm", "A.B", "--purge"], b"").ok();
    assert_eq!(run.stderr, "removed `A.B` (0 value(s))\n");
    assert_eq!(host.run_key(&["history", "A.B"], b"").code, 3);
    assert_eq!(
        host.run_key(&["rm", "A.B", "--purge"], b"").code,
        3,
        "nothing left to purge"
    );
}

#[test]
fn a_path_set_again_after_rm_still_keeps_at_most_keep_versions() {
    let host = Host::new();
    host.keygen();
    host.run_key(&["init", "--keep", "3"], b"").ok();
    for i in 0..3 {
        set_key(&host, "A", &format!("v{i}")).ok();
    }
    host.run_key(&["rm", "A"], b"").ok();
    set_key(&host, "A", "again").ok();
    let history: serde_json::Value =
        serde_json::from_slice(&host.run_key(&["history", "A", "--json"], b"").ok().stdout)
            .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 3, "{history}");
}

#[test]
fn rekey_kdf_flags_change_only_the_parameters_given() {
    let host = key_host();
    let pass = host.pass_file();
    host.run_key(
        &[
            "rekey",
            "--also-passphrase-file",
            pass.to_str().unwrap(),
            "--kdf-iterations",
            "2",
        ],
        b"",
    )
    .ok();
    let slots: serde_json::Value =
        serde_json::from_slice(&host.run_key(&["key", "list", "--json"], b"").ok().stdout).unwrap();
    assert_eq!(
        slots[1]["kdf"],
        serde_json::json!({"algorithm": "argon2id", "memory_kib": 8, "iterations": 2, "parallelism": 1})
    );
    assert_eq!(host.run(&["list"]).code, 0);
}
