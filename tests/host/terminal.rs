//! Output on a terminal and off it: tables stay aligned and plain when
//! piped; on a pseudo-terminal (`script(1)`) they are coloured unless
//! `NO_COLOR` is set; progress is drawn only on a terminal and never
//! with `-q`.

use std::fmt::Write as _;

use std::process::{Command, Stdio};

use crate::support::{CHEAP_KDF, Host, Runs};

/// A shell word for `s` (test paths and arguments only).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs runvault on a pseudo-terminal through `script(1)` and returns what
/// the terminal showed (stdout and stderr together, `\r\n` made `\n`),
/// whatever the exit code.
fn on_pty(args: &[String], env: &[(&str, &str)]) -> String {
    let line = std::iter::once(env!("CARGO_BIN_EXE_runvault").to_string())
        .chain(args.iter().cloned())
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("RUNVAULT_PASSPHRASE_FILE")
        .env_remove("RUNVAULT_KEY_FILE")
        .env("RUNVAULT_VIEWS_FILE", "/nonexistent/runvault-test-views")
        .stdin(Stdio::null());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().expect("run script(1)");
    String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n")
}

/// The host's global options, as strings for [`on_pty`].
fn host_args(host: &Host, rest: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--dir".to_string(),
        host.dir().display().to_string(),
        "--passphrase-file".to_string(),
        host.pass_file().display().to_string(),
        "--state-dir".to_string(),
        host.state_dir().display().to_string(),
        "--config".to_string(),
        host.layout_file().display().to_string(),
    ];
    args.extend(rest.iter().map(ToString::to_string));
    args
}

fn host_with_history() -> Host {
    let host = Host::new();
    host.init();
    host.set("A", b"one");
    host.set("A", b"two");
    let mut add = vec!["key", "add", "passphrase", "--new-passphrase-file"];
    let pass = host.pass_file();
    add.push(pass.to_str().unwrap());
    add.extend(CHEAP_KDF);
    host.run(&add).ok();
    host
}

const ESC: char = '\x1b';

#[test]
fn piped_tables_are_aligned_and_plain() {
    let host = host_with_history();
    let keys = host.run(&["key", "list"]).ok().out();
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(lines.len(), 3, "{keys}");
    // Every column starts at the same place on every line.
    for (column, title) in ["KIND", "CREATED", "KDF"].iter().enumerate() {
        let at = lines[0].find(title).unwrap();
        for line in &lines[1..] {
            let cell_start = line[..at].ends_with(' ') && !line[at..].starts_with(' ');
            assert!(cell_start, "column {column} `{title}` misaligned:\n{keys}");
        }
    }
    assert!(keys.starts_with("ID   KIND        CREATED               KDF\n"));
    let history = host.run(&["history", "A"]).ok().out();
    let rows: Vec<&str> = history.lines().collect();
    assert_eq!(rows[0], "VERSION  TIME                  STATE");
    assert!(rows[1].starts_with("1        ") && rows[1].ends_with(" stored"));
    assert!(rows[2].starts_with("2        ") && rows[2].ends_with(" current"));
    let doctor = host.run(&["doctor"]);
    for text in [&keys, &history, &doctor.out(), &doctor.stderr] {
        assert!(!text.contains(ESC), "escape codes when piped:\n{text}");
    }
    // Status, check and message columns: the message starts at one place.
    let starts: Vec<usize> = doctor
        .out()
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("warn ") || l.starts_with("FAIL "))
        .map(|l| {
            let end = 5 + l[5..].find(' ').unwrap();
            end + l[end..].find(|c| c != ' ').unwrap()
        })
        .collect();
    assert!(starts.len() > 3, "{}", doctor.out());
    assert!(
        starts.iter().all(|&at| at == starts[0]),
        "doctor's message column moves:\n{}",
        doctor.out()
    );
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let host = host_with_history();
    for command in [&["key", "list"][..], &["history", "A"], &["doctor"]] {
        let shown = on_pty(&host_args(&host, command), &[]);
        assert!(shown.contains("\x1b["), "no colour on a pty:\n{shown}");
        let plain = on_pty(&host_args(&host, command), &[("NO_COLOR", "1")]);
        assert!(!plain.contains(ESC), "colour despite NO_COLOR:\n{plain}");
        let piped = host.run(command);
        assert_eq!(
            plain,
            piped.out() + &piped.stderr,
            "NO_COLOR on a pty looks as piped"
        );
    }
    let doctor = on_pty(&host_args(&host, &["doctor"]), &[]);
    assert!(doctor.contains("\x1b[32mok\x1b[0m"), "{doctor}");
    assert!(doctor.contains("\x1b[33mwarn\x1b[0m"), "{doctor}");
    let history = on_pty(&host_args(&host, &["history", "A"]), &[]);
    assert!(history.contains("\x1b[32mcurrent\x1b[0m"), "{history}");
}

fn big_import(host: &Host, paths: usize) -> std::path::PathBuf {
    let mut yaml = String::from("BULK:\n");
    for i in 0..paths {
        let _ = writeln!(yaml, "  K{i}: v{i}");
    }
    let file = host.root.path().join("bulk.yml");
    crate::support::write_private(&file, yaml.as_bytes());
    file
}

#[test]
fn progress_only_on_a_terminal_and_never_with_quiet() {
    let host = Host::new();
    host.init();
    let file = big_import(&host, 20_000);
    let file = file.to_str().unwrap();
    // Piped: only the note, no progress bytes.
    let piped = host.run(&["import", file]).ok();
    assert_eq!(
        piped.stderr,
        format!("imported 20000 value(s) from `{file}`\n")
    );
    let piped = host.run(&["rekey"]).ok();
    assert!(!piped.stderr.contains('\r') && !piped.stderr.contains(ESC));
    assert!(piped.stderr.starts_with("rekeyed: "), "{}", piped.stderr);
    // On a terminal: a bar per value, then the note.
    let shown = on_pty(&host_args(&host, &["import", file]), &[]);
    assert!(shown.contains("importing ["), "{shown}");
    assert!(shown.contains("/20000 ("), "{shown}");
    assert!(
        shown.ends_with(&format!("imported 20000 value(s) from `{file}`\n")),
        "{shown}"
    );
    let shown = on_pty(&host_args(&host, &["rekey"]), &[("NO_COLOR", "1")]);
    assert!(shown.contains("re-encrypting ["), "{shown}");
    assert!(
        !shown.contains("\x1b[3"),
        "no colour with NO_COLOR:\n{shown}"
    );
    // -q on a terminal: nothing at all.
    let quiet = on_pty(&host_args(&host, &["-q", "import", file]), &[]);
    assert_eq!(quiet, "");
    let quiet = on_pty(&host_args(&host, &["-q", "rekey"]), &[]);
    assert_eq!(quiet, "");
}

#[test]
fn runner_start_spins_only_on_a_terminal() {
    if !crate::support::runner::engine("runner_start_spins") {
        return;
    }
    let mut host = crate::support::Host::new();
    let name = host.container("spinner");
    host.with_config("config.toml");
    let args: Vec<String> = [
        "runner",
        "start",
        "--name",
        &name,
        "--config-dir",
        &host.config_dir().display().to_string(),
        "--image",
        crate::support::runner::IMAGE,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let shown = on_pty(&args, &[]);
    assert!(
        shown.contains(&format!(
            "starting container `{name}`, waiting for it to run"
        )),
        "{shown}"
    );
    assert!(
        shown.ends_with(&format!("container `{name}`: created and started\n")),
        "{shown}"
    );
    host.runner("stop", &name, &["--timeout", "1"]).ok();
    let piped = host
        .runner("start", &name, &["--image", crate::support::runner::IMAGE])
        .ok();
    assert_eq!(piped.stderr, format!("container `{name}`: started\n"));
}

/// Inputs are checked before the passphrase is asked for: on a terminal, a
/// missing vault (a `--dir` typo), a refused `rekey --also-passphrase-file`
/// and a refused `key add passphrase --new-passphrase-file` (open to
/// others) are reported without a prompt ever being shown.
#[test]
fn refused_inputs_are_reported_before_the_passphrase_prompt() {
    let host = Host::new();
    host.init();
    let open = host.path("open-passphrase");
    std::fs::write(&open, "another passphrase\n").unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let typo = host.path("secret");
    let runs = [
        (
            vec![
                "--dir".to_string(),
                typo.display().to_string(),
                "get".into(),
                "A".into(),
            ],
            format!(
                "runvault: error: no vault in `{0}`: `vault.yml` does not exist; create one with `runvault init --dir {0}`\n",
                typo.display()
            ),
        ),
        (
            vec![
                "--dir".to_string(),
                host.dir().display().to_string(),
                "rekey".into(),
                "--also-passphrase-file".into(),
                open.display().to_string(),
            ],
            format!(
                "runvault: error: passphrase file `{0}` is accessible by group or others (mode 0644); \
                 run `chmod 600 {0}` first\n",
                open.display()
            ),
        ),
        (
            vec![
                "--dir".to_string(),
                host.dir().display().to_string(),
                "key".into(),
                "add".into(),
                "passphrase".into(),
                "--new-passphrase-file".into(),
                open.display().to_string(),
            ],
            format!(
                "runvault: error: passphrase file `{0}` is accessible by group or others (mode 0644); \
                 run `chmod 600 {0}` first\n",
                open.display()
            ),
        ),
    ];
    for (args, error) in runs {
        let shown = on_pty(
            &args,
            &[(
                "RUNVAULT_STATE_DIR",
                &host.state_dir().display().to_string(),
            )],
        );
        assert_eq!(shown, error, "{args:?}");
    }
}
