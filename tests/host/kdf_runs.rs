//! The KDF runs once per command however many paths are resolved: a
//! debug-build counter of credential KDF runs (Argon2id, or HKDF for a key
//! file), printed with `RUNVAULT_DEBUG_KDF_RUNS`, must read exactly 1 after
//! every command that opens the vault, on the streaming paths and on the
//! tree fallbacks they hand an opened slot to.

use crate::support::{Host, Runs};

/// Runs `args` with the passphrase and the counter on; returns the count.
fn kdf_runs(host: &Host, args: &[&str], stdin: &[u8], vars: &[(String, String)]) -> String {
    let mut cmd = host.command();
    cmd.env("RUNVAULT_DEBUG_KDF_RUNS", "1")
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .args(args);
    let run = cmd.run_in(stdin);
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|line| line.starts_with("runvault: debug: kdf runs: "))
        .unwrap_or_else(|| panic!("{args:?}: no count in {}", run.stderr));
    line.trim_start_matches("runvault: debug: kdf runs: ")
        .to_string()
}

/// A command: its arguments, its stdin and extra environment variables.
type Command<'a> = (&'a [&'a str], &'a [u8], &'a [(String, String)]);

fn every_command_runs_the_kdf_once(host: &Host) {
    let refs: Vec<(String, String)> = (0..20)
        .map(|i| (format!("REF_{i}"), format!("DATAOPS_VAULT(S{i}.PASSWORD)")))
        .collect();
    let template = host.dir().join("../template.txt");
    let text: String = (0..20)
        .map(|i| format!("DATAOPS_VAULT(S{i}.USER)\n"))
        .collect();
    std::fs::write(&template, text).unwrap();
    let template = template.to_str().unwrap();
    let commands: [Command<'_>; 9] = [
        (&["get", "S3.PASSWORD"], b"", &[]),
        (&["exec", "--", "true"], b"", &refs),
        (
            &["exec", "--export", "S1", "--export", "S2", "--", "true"],
            b"",
            &refs,
        ),
        (&["render", template], b"", &[]),
        (&["set", "S4.PASSWORD", "--stdin"], b"new", &[]),
        (
            &["set", "S20.PASSWORD", "--stdin", "--if-version", "0"],
            b"new",
            &[],
        ),
        (&["export"], b"", &[]),
        (&["list"], b"", &[]),
        (&["rollback", "S4.PASSWORD"], b"", &[]),
    ];
    for (args, stdin, vars) in commands {
        assert_eq!(kdf_runs(host, args, stdin, vars), "1", "{args:?}");
    }
}

fn host_with_twenty_services() -> Host {
    let host = Host::new();
    host.init();
    let yaml: String = (0..20)
        .map(|i| format!("S{i}:\n  USER: user{i}\n  PASSWORD: pw{i}\n"))
        .collect();
    let file = host.dir().join("../import.yml");
    std::fs::write(&file, yaml).unwrap();
    host.run(&["import", file.to_str().unwrap()]).ok();
    host
}

#[test]
fn the_kdf_runs_once_per_command_on_a_canonical_vault() {
    every_command_runs_the_kdf_once(&host_with_twenty_services());
}

/// A vault a YAML tool reformatted: the streaming reader and writer hand
/// the slot they opened to the tree reader and writer, which must not run
/// the KDF again.
#[test]
fn the_kdf_runs_once_per_command_when_the_streaming_paths_fall_back() {
    let host = host_with_twenty_services();
    let doc: serde_yaml::Value = serde_yaml::from_slice(&host.vault_bytes()).unwrap();
    std::fs::write(host.vault_file(), serde_yaml::to_string(&doc).unwrap()).unwrap();
    every_command_runs_the_kdf_once(&host);
}

/// The counter counts: opening two slots' secrets in one command (`rekey`
/// with a second credential whose slot it must re-wrap) reads 2.
#[test]
fn the_counter_sees_a_second_run() {
    let host = Host::new();
    host.init_with_key_and_passphrase();
    let mut cmd = host.command();
    cmd.env("RUNVAULT_DEBUG_KDF_RUNS", "1")
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .args(["rekey", "--also-key-file"])
        .arg(host.key_file());
    let run = cmd.run_in(b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("runvault: debug: kdf runs: 2\n"),
        "{}",
        run.stderr
    );
}

/// A secret's file runvault refuses (open to others) is refused before
/// any KDF run: `rekey --also-passphrase-file` reads 0, whether the first
/// secret is a passphrase file (its KDF would run first) or a key file.
#[test]
fn a_refused_passphrase_file_costs_no_kdf_run() {
    let host = Host::new();
    host.init_with_key_and_passphrase();
    let open = host.path("open-passphrase");
    std::fs::write(&open, "another passphrase\n").unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let before = host.vault_bytes();
    for first in [
        ["--passphrase-file", host.pass_file().to_str().unwrap()],
        ["--key-file", host.key_file().to_str().unwrap()],
    ] {
        let run = host
            .command()
            .env("RUNVAULT_DEBUG_KDF_RUNS", "1")
            .args(first)
            .args(["rekey", "--also-passphrase-file"])
            .arg(&open)
            .fails(1);
        assert_eq!(
            run.stderr,
            format!(
                "runvault: error: passphrase file `{0}` is accessible by group or others (mode 0644); \
                 run `chmod 600 {0}` first\n\
                 runvault: debug: kdf runs: 0\n",
                open.display()
            )
        );
    }
    assert_eq!(host.vault_bytes(), before);
}
