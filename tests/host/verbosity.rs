//! `-v`/`-q`: every command that touches a secret runs at the most verbose
//! level with distinctive secrets (values, passphrases, the key file in
//! hex, base64 and raw bytes, a registration token), and none of them may
//! appear in its diagnostics, nor on stdout unless printing values is the
//! command's job (`get`, `export`, `render`). `-q` leaves only errors.
//!
//! Data on stdout: a reader that closes the pipe early ends the command
//! with exit 0 and nothing on stderr; a stdout that cannot be written
//! (`/dev/full`) is an error, exit 1.

use std::io::BufRead;
use std::process::{Command, Stdio};

use crate::support::{CHEAP_KDF, Host, PASSPHRASE, Runs, write_private};
use base64::Engine as _;

const VALUE_STDIN: &str = "val-stdin-Q7xK2mR9";
const VALUE_FILE: &str = "val-file-W3nB8vT1";
const VALUE_NEXT: &str = "val-next-H5cJ4pL6";
const VALUE_IMPORT: &str = "val-import-Z2dF9sG0";
const PASSPHRASE_ADDED: &str = "pass-added-N8yU3eR5";
const PASSPHRASE_CHANGED: &str = "pass-changed-K1oI6wE4";
const TOKEN: &str = "GR1348941Verbosity-Token-U9tY2qA7";

/// What one command left, and whether its stdout may carry values.
struct Transcript {
    what: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    prints_values: bool,
}

/// Runs `cmd`, feeding `stdin`, and asserts it succeeded.
fn transcript(what: &str, cmd: &mut Command, stdin: &[u8], prints_values: bool) -> Transcript {
    let output = cmd.run_in(stdin);
    assert!(output.code == 0, "{what} failed: {}", output.stderr);
    Transcript {
        what: what.to_string(),
        stdout: output.stdout,
        stderr: output.stderr.into_bytes(),
        prints_values,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that no secret appears where it must not.
fn assert_clean(transcripts: &[Transcript], secrets: &[(&str, Vec<u8>)]) {
    for t in transcripts {
        for (name, secret) in secrets {
            assert!(
                !contains(&t.stderr, secret),
                "{name} leaked into the stderr of `{}`:\n{}",
                t.what,
                String::from_utf8_lossy(&t.stderr)
            );
            if !t.prints_values {
                assert!(
                    !contains(&t.stdout, secret),
                    "{name} leaked into the stdout of `{}`",
                    t.what
                );
            }
        }
    }
}

/// The host's command at the most verbose level, unlocked by `with`.
fn verbose(host: &Host, unlock: &[&str]) -> Command {
    let mut cmd = host.command();
    cmd.arg("-vvv").args(unlock);
    cmd
}

#[test]
fn no_secret_reaches_the_most_verbose_output() {
    let host = Host::new();
    let work = host.root.path();
    let key = host.key_file();
    let pass_file = host.pass_file();
    let (key_arg, pass_arg) = (
        ["--key-file", key.to_str().unwrap()],
        ["--passphrase-file", pass_file.to_str().unwrap()],
    );
    let both: Vec<&str> = key_arg.iter().chain(&pass_arg).copied().collect();
    let mut log = Vec::new();
    let run = |log: &mut Vec<Transcript>,
               what: &str,
               unlock: &[&str],
               args: &[&str],
               stdin: &[u8],
               prints: bool| {
        let mut cmd = verbose(&host, unlock);
        log.push(transcript(what, cmd.args(args), stdin, prints));
    };

    run(
        &mut log,
        "keygen",
        &[],
        &["keygen", key.to_str().unwrap()],
        b"",
        false,
    );
    let mut init = vec!["init"];
    init.extend(CHEAP_KDF);
    run(&mut log, "init", &both, &init, b"", false);
    run(
        &mut log,
        "set --stdin",
        &pass_arg,
        &["set", "A.STDIN", "--stdin"],
        VALUE_STDIN.as_bytes(),
        false,
    );
    let value_file = work.join("value");
    write_private(&value_file, VALUE_FILE.as_bytes());
    run(
        &mut log,
        "set --from-file",
        &key_arg,
        &["set", "A.FILE", "--from-file", value_file.to_str().unwrap()],
        b"",
        false,
    );
    run(
        &mut log,
        "set --generate",
        &key_arg,
        &["set", "A.GEN", "--generate"],
        b"",
        false,
    );
    run(
        &mut log,
        "set again",
        &key_arg,
        &["set", "A.STDIN", "--stdin"],
        VALUE_NEXT.as_bytes(),
        false,
    );
    run(&mut log, "get", &key_arg, &["get", "A.GEN"], b"", true);
    let generated = log.last().unwrap().stdout.clone();
    assert_eq!(generated.len(), 32);
    run(&mut log, "list", &key_arg, &["list"], b"", false);
    run(
        &mut log,
        "list --json",
        &key_arg,
        &["list", "--json"],
        b"",
        false,
    );
    run(
        &mut log,
        "history",
        &key_arg,
        &["history", "A.STDIN"],
        b"",
        false,
    );
    run(
        &mut log,
        "history --json",
        &key_arg,
        &["history", "A.STDIN", "--json"],
        b"",
        false,
    );
    run(
        &mut log,
        "rollback",
        &key_arg,
        &["rollback", "A.STDIN"],
        b"",
        false,
    );
    run(&mut log, "rm", &key_arg, &["rm", "A.FILE"], b"", false);
    let import = work.join("import.yml");
    write_private(
        &import,
        format!("B:\n  IMPORTED: {VALUE_IMPORT}\n").as_bytes(),
    );
    run(
        &mut log,
        "import",
        &key_arg,
        &["import", import.to_str().unwrap()],
        b"",
        false,
    );
    run(&mut log, "export", &key_arg, &["export"], b"", true);
    let exported = work.join("exported.yml");
    run(
        &mut log,
        "export -o",
        &key_arg,
        &["export", "-o", exported.to_str().unwrap()],
        b"",
        false,
    );
    let template = work.join("template");
    std::fs::write(&template, "pw=DATAOPS_VAULT(A.STDIN)\n").unwrap();
    run(
        &mut log,
        "render",
        &key_arg,
        &["render", template.to_str().unwrap()],
        b"",
        true,
    );
    let mut exec = verbose(&host, &key_arg);
    exec.env("PW", "DATAOPS_VAULT(B.IMPORTED)")
        .args(["exec", "--", "sh", "-c", "test -n \"$PW\""]);
    log.push(transcript("exec", &mut exec, b"", false));
    run(&mut log, "verify", &key_arg, &["verify"], b"", false);
    run(
        &mut log,
        "audit-hmac",
        &key_arg,
        &["audit-hmac", "A.STDIN"],
        b"",
        false,
    );
    run(
        &mut log,
        "audit-hmac --stdin",
        &key_arg,
        &["audit-hmac", "A.STDIN", "--stdin"],
        VALUE_NEXT.as_bytes(),
        false,
    );
    run(&mut log, "rekey", &both, &["rekey"], b"", false);
    run(
        &mut log,
        "rekey --new-salt",
        &both,
        &["rekey", "--new-salt"],
        b"",
        false,
    );
    // `key add passphrase` / `key passwd 3` with a new passphrase file.
    let new_passphrase = |command: &[&'static str], name: &str, secret: &str| {
        let file = work.join(name);
        write_private(&file, format!("{secret}\n").as_bytes());
        let mut args: Vec<String> = command.iter().map(ToString::to_string).collect();
        args.extend(["--new-passphrase-file".into(), file.display().to_string()]);
        args.extend(CHEAP_KDF.iter().map(ToString::to_string));
        args
    };
    let add = new_passphrase(&["key", "add", "passphrase"], "added", PASSPHRASE_ADDED);
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    run(&mut log, "key add passphrase", &key_arg, &add, b"", false);
    run(&mut log, "key list", &key_arg, &["key", "list"], b"", false);
    run(
        &mut log,
        "key list --json",
        &key_arg,
        &["key", "list", "--json"],
        b"",
        false,
    );
    let passwd = new_passphrase(&["key", "passwd", "3"], "changed", PASSPHRASE_CHANGED);
    let passwd: Vec<&str> = passwd.iter().map(String::as_str).collect();
    run(&mut log, "key passwd", &key_arg, &passwd, b"", false);
    run(
        &mut log,
        "key remove",
        &key_arg,
        &["key", "remove", "3"],
        b"",
        false,
    );
    run(&mut log, "doctor", &key_arg, &["doctor"], b"", false);
    run(
        &mut log,
        "doctor --json",
        &key_arg,
        &["doctor", "--json"],
        b"",
        false,
    );
    if crate::support::is_root() {
        let view = work.join("view");
        let _tmpfs = crate::support::Tmpfs::mount(&view, "size=1m,mode=0700");
        let out = view.join("current");
        run(
            &mut log,
            "view refresh",
            &key_arg,
            &["view", "refresh", "--out", out.to_str().unwrap()],
            b"",
            false,
        );
    }

    let key_hex = std::fs::read_to_string(&key).unwrap().trim().to_string();
    let key_raw: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let secrets = [
        ("the stdin value", VALUE_STDIN.as_bytes().to_vec()),
        ("the file value", VALUE_FILE.as_bytes().to_vec()),
        ("the second value", VALUE_NEXT.as_bytes().to_vec()),
        ("the imported value", VALUE_IMPORT.as_bytes().to_vec()),
        ("the generated value", generated),
        ("the passphrase", PASSPHRASE.as_bytes().to_vec()),
        ("the added passphrase", PASSPHRASE_ADDED.as_bytes().to_vec()),
        (
            "the changed passphrase",
            PASSPHRASE_CHANGED.as_bytes().to_vec(),
        ),
        ("the key file (hex)", key_hex.as_bytes().to_vec()),
        ("the key file (HEX)", key_hex.to_uppercase().into_bytes()),
        (
            "the key (base64)",
            base64::engine::general_purpose::STANDARD
                .encode(&key_raw)
                .into_bytes(),
        ),
        ("the key (raw)", key_raw),
    ];
    assert_clean(&log, &secrets);

    // Not vacuous: the diagnostics were there, at every level.
    let of = |what: &str| &log.iter().find(|t| t.what == what).unwrap().stderr;
    let set = String::from_utf8_lossy(of("set --stdin")).into_owned();
    for expected in [
        "TRACE",
        "DEBUG",
        "INFO",
        "argon2id key derivation memory_kib=8 iterations=1 parallelism=1",
        "a key slot opened the vault slot=2 kind=\"passphrase\"",
        "took the writers' lock",
        "appended the audit line",
        "renamed over the target; directory fsynced",
        "committed",
    ] {
        assert!(set.contains(expected), "`{expected}` missing from:\n{set}");
    }
    let get = String::from_utf8_lossy(of("get")).into_owned();
    assert!(get.contains("read with the fast streaming reader"), "{get}");
    let rekey = String::from_utf8_lossy(of("rekey --new-salt")).into_owned();
    assert!(rekey.contains("argon2id key derivation"), "{rekey}");
    // The secrets looked for are the ones the commands handled.
    let export = &log.iter().find(|t| t.what == "export").unwrap().stdout;
    assert!(contains(export, VALUE_IMPORT.as_bytes()));
    assert!(
        contains(export, VALUE_STDIN.as_bytes()),
        "rolled back to it"
    );
}

#[test]
fn registration_token_stays_out_of_the_most_verbose_output() {
    if !crate::support::runner::engine("registration_token_stays_out") {
        return;
    }
    let mut host = crate::support::Host::new();
    let name = host.container("verbosity");
    let done = host
        .runner(
            "register",
            &name,
            &["-vvv", "--image", crate::support::runner::IMAGE],
        )
        .env("REGISTRATION_TOKEN", TOKEN)
        .ok();
    for text in [done.out(), done.stderr.clone()] {
        assert!(!text.contains(TOKEN), "the token leaked:\n{text}");
    }
    let stderr = done.stderr;
    for expected in [
        "connected to the Docker engine",
        "Docker API call",
        "endpoint=\"POST /containers/create\"",
        "running the registration container (its environment is not logged)",
        "image=runvault-fixture-runner:test",
    ] {
        assert!(stderr.contains(expected), "`{expected}` missing:\n{stderr}");
    }
}

#[test]
fn quiet_prints_only_errors_and_data() {
    let host = Host::new();
    let mut init = vec!["-q", "init"];
    init.extend(CHEAP_KDF);
    let run = host.run(&init).ok();
    assert_eq!(run.stderr, "", "init -q");
    let run = host.run_in(&["set", "-q", "A", "--stdin"], b"v").ok();
    assert_eq!(run.stderr, "", "set -q");
    let run = host.run(&["--quiet", "get", "A"]).ok();
    assert_eq!((run.out().as_str(), run.stderr.as_str()), ("v", ""));
    let run = host.run(&["-q", "rekey"]).ok();
    assert_eq!(run.stderr, "", "rekey -q");
    let run = host.run(&["-q", "get", "MISSING"]);
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        "runvault: error: path `MISSING` not found in the vault\n"
    );
    // Without -q the same commands do speak; with -v, no notes are lost.
    let run = host.run_in(&["set", "A", "--stdin"], b"w").ok();
    assert_eq!(run.stderr, "set `A` (version 2)\n");
    let run = host.run_in(&["-v", "set", "A", "--stdin"], b"x").ok();
    assert!(
        run.stderr.ends_with("set `A` (version 3)\n"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(" INFO "), "{}", run.stderr);
    assert!(!run.stderr.contains("DEBUG"), "{}", run.stderr);
    let run = host.run_raw(&["-q", "-v", "list"], b"");
    assert_eq!(run.code, 2, "-q and -v conflict: {}", run.stderr);
}

/// Where a command's stdout goes in the closed-pipe tests.
#[derive(Clone, Copy)]
enum Stdout {
    /// A pipe whose reader was closed before the command started.
    Closed,
    /// A pipe whose reader reads one line, then closes it.
    OneLine,
    /// `/dev/full`: every write fails with ENOSPC.
    Full,
}

/// What [`run_into`] saw: the exit code, stderr, and the line read.
struct Ended {
    code: i32,
    stderr: String,
    line: String,
}

/// Runs `cmd` (no stdin) with its stdout connected as `to`.
fn run_into(cmd: &mut Command, to: Stdout) -> Ended {
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    let mut line = String::new();
    let child = match to {
        Stdout::Closed => {
            let (reader, writer) = std::io::pipe().expect("pipe");
            drop(reader);
            cmd.stdout(writer).spawn().expect("spawn runvault")
        }
        Stdout::OneLine => {
            let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn runvault");
            let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
            reader.read_line(&mut line).expect("read one line");
            child
        }
        Stdout::Full => {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("open /dev/full");
            cmd.stdout(full).spawn().expect("spawn runvault")
        }
    };
    let output = child.wait_with_output().expect("wait runvault");
    Ended {
        code: output.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        line,
    }
}

/// Asserts how a command ended: its exit code and its whole stderr.
#[track_caller]
fn assert_ended(ended: &Ended, code: i32, stderr: &str, what: &str) {
    assert_eq!(
        (ended.code, ended.stderr.as_str()),
        (code, stderr),
        "{what}"
    );
}

/// runvault's stderr when stdout is `/dev/full`.
const STDOUT_FULL: &str =
    "runvault: error: cannot write to standard output: No space left on device (os error 28)\n";

/// Far more output than a pipe holds (64 KiB) plus what the reader
/// buffers (8 KiB), so the writer is still writing when the reader closes.
const MANY: usize = 2000;

#[test]
fn generated_help_into_a_closed_pipe_ends_silently_with_success() {
    let host = Host::new();
    // The man page (4 KiB) fits in a pipe: its reader is closed before it
    // starts, so the first write fails. The bash completions (over 100
    // KiB) fill the pipe, then meet a reader gone after one line.
    let ended = run_into(host.command().arg("man"), Stdout::Closed);
    assert_ended(&ended, 0, "", "man");
    let completions = || {
        let mut cmd = host.command();
        cmd.args(["completions", "bash"]);
        cmd
    };
    let ended = run_into(&mut completions(), Stdout::OneLine);
    assert_ended(&ended, 0, "", "completions");
    assert!(!ended.line.is_empty(), "the reader got no line");
    // clap_complete panicked on a failed write (exit 101).
    assert_ended(
        &run_into(&mut completions(), Stdout::Full),
        1,
        STDOUT_FULL,
        "completions",
    );
    for args in [["man"].as_slice(), &["--help"], &["--version"]] {
        let ended = run_into(host.command().args(args), Stdout::Full);
        assert_ended(&ended, 1, STDOUT_FULL, &format!("{args:?}"));
    }
}

#[test]
fn long_data_into_a_closed_pipe_ends_silently_with_success() {
    let host = Host::new();
    host.init();
    let long = "k".repeat(300);
    let values: String = (0..MANY)
        .map(|i| format!("  {long}{i:05}: value-{i}\n"))
        .collect();
    let file = host.root.path().join("many.yml");
    write_private(&file, format!("BIG:\n{values}").as_bytes());
    host.run(&["-q", "import", file.to_str().unwrap()]).ok();
    let first_of_list = format!("BIG.{long}00000\n");
    for (command, first_line) in [("list", first_of_list.as_str()), ("export", "BIG:\n")] {
        let unlocked = || {
            let mut cmd = host.command();
            cmd.arg("--passphrase-file")
                .arg(host.pass_file())
                .arg(command);
            cmd
        };
        let ended = run_into(&mut unlocked(), Stdout::OneLine);
        assert_ended(&ended, 0, "", command);
        assert_eq!(ended.line, first_line, "{command}");
        assert_ended(
            &run_into(&mut unlocked(), Stdout::Full),
            1,
            STDOUT_FULL,
            command,
        );
    }
}

#[test]
fn runner_diff_into_a_closed_pipe_ends_silently_with_success() {
    let host = Host::new();
    let config_dir = host.root.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    let runners: String = (0..MANY)
        .map(|i| {
            format!(
                "[[runners]]\nname = \"runner-{i:05}\"\nexecutor = \"docker\"\n\
                 [runners.docker]\nvolumes = [\"/cache\"]\n"
            )
        })
        .collect();
    write_private(
        &config_dir.join("config.toml"),
        format!("concurrent = 8\ncheck_interval = 1\n{runners}").as_bytes(),
    );
    // `--check` prints the diff on stdout (here about 700 KiB), then the
    // changes on stderr, and fails; a closed pipe ends it before that.
    let configure_check = || {
        let mut cmd = host.command();
        cmd.args(["runner", "configure", "--check", "--name", "runner-00000"])
            .arg("--config-dir")
            .arg(&config_dir)
            .arg("--key-file")
            .arg(host.root.path().join("keys/vault.key"))
            .arg("--bin-dir")
            .arg(host.root.path().join("bin"))
            .env_remove("DOCKER_HOST");
        cmd
    };
    let ended = run_into(&mut configure_check(), Stdout::OneLine);
    assert_ended(&ended, 0, "", "configure --check");
    assert!(ended.line.starts_with("--- "), "{}", ended.line);
    let ended = run_into(&mut configure_check(), Stdout::Full);
    assert_ended(&ended, 1, STDOUT_FULL, "configure --check");
}
