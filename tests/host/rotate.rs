//! `runvault rotate` without a database (issue 24): the hook protocol as a
//! recording hook script sees it (values on stdin only, a clean
//! environment, masked output, timeouts), the pending version's life
//! (apply fails, test fails, `--resume`, `--abort`, a second rotation
//! refused), alternating users and the `--max-age` policy. The proof
//! against a real PostgreSQL is `rotate_pg`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{Host, Run, Runs};

/// A host with `DB.PASSWORD` = `old-secret-4f1c` (version 1).
fn rotate_host() -> Host {
    let host = Host::new();
    host.init();
    host.set("DB.PASSWORD", b"old-secret-4f1c");
    host
}

/// A hook that records its standard input, environment and the argv of
/// itself and its parent (runvault's `sh -c`) under `dir`, and prints
/// both values to stdout and stderr (which runvault must mask).
fn recording_hook(host: &Host, name: &str) -> String {
    let dir = host.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("hook.sh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
d={dir}
cat > "$d/stdin"
env > "$d/env"
tr '\0' ' ' < /proc/$$/cmdline > "$d/argv"
tr '\0' ' ' < /proc/$PPID/cmdline > "$d/parent-argv"
ps -eo args > "$d/ps" 2>/dev/null || true
echo "hook says: $(cat "$d/stdin" | tr '\n' ' ')"
echo "hook warns: $(head -n 1 "$d/stdin")" >&2
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    format!("sh {}", script.display())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn history(host: &Host, path: &str) -> serde_json::Value {
    serde_json::from_slice(&host.run(&["history", path, "--json"]).ok().stdout).unwrap()
}

/// No value in the output, the audit log or the vault file's text.
#[track_caller]
fn assert_no_value(host: &Host, run: &Run, values: &[&str]) {
    let audit = read(&host.dir().join("audit.log"));
    for value in values {
        assert!(
            !run.out().contains(value),
            "stdout shows a value: {}",
            run.describe()
        );
        assert!(
            !run.stderr.contains(value),
            "stderr shows a value: {}",
            run.describe()
        );
        assert!(!audit.contains(value), "the audit log shows a value");
        assert!(!String::from_utf8_lossy(&host.vault_bytes()).contains(value));
    }
}

#[test]
fn the_hooks_get_the_values_on_stdin_only_in_a_clean_environment() {
    let host = rotate_host();
    let apply = recording_hook(&host, "apply");
    let test = recording_hook(&host, "test");
    let run = host
        .command()
        .env("RUNVAULT_TEST_CANARY", "must-not-reach-the-hook")
        .env("SOME_TOKEN", "must-not-reach-the-hook")
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .args([
            "rotate",
            "DB.PASSWORD",
            "--stdin",
            "--apply",
            &apply,
            "--test",
            &test,
        ])
        .run_in(b"new-secret-9b2e\n")
        .ok();
    assert_eq!(
        read(&host.path("apply/stdin")),
        "new-secret-9b2e\nold-secret-4f1c\n"
    );
    assert_eq!(read(&host.path("test/stdin")), "new-secret-9b2e\n");
    let env = read(&host.path("apply/env"));
    let mut names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    names.sort_unstable();
    names.retain(|name| !["PWD", "SHLVL", "_", "OLDPWD"].contains(name)); // set by sh itself
    names.retain(|name| !["HOME", "LANG"].contains(name)); // kept when runvault has them
    assert_eq!(names, ["PATH", "RUNVAULT_ROTATE_PATH"], "{env}");
    assert!(env.contains("RUNVAULT_ROTATE_PATH=DB.PASSWORD\n"));
    for file in [
        "apply/argv",
        "apply/parent-argv",
        "apply/ps",
        "test/argv",
        "test/ps",
    ] {
        let text = read(&host.path(file));
        assert!(!text.is_empty() || file.ends_with("ps"), "{file} empty");
        assert!(!text.contains("secret-"), "{file} shows a value: {text}");
    }
    assert!(read(&host.path("apply/parent-argv")).starts_with("/bin/sh -c sh "));
    // The hooks printed both values; runvault passed their lines through masked.
    assert!(
        run.stderr
            .contains("hook says: [value hidden] [value hidden]"),
        "{}",
        run.describe()
    );
    assert!(run.stderr.contains("hook warns: [value hidden]\n"));
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| !l.starts_with("hook "))
            .collect::<Vec<_>>(),
        [
            "stored the new value of `DB.PASSWORD` as pending; applying it at the source",
            "rotated `DB.PASSWORD` (version 2)"
        ]
    );
    assert_no_value(&host, &run, &["new-secret-9b2e", "old-secret-4f1c"]);
    assert_eq!(host.get("DB.PASSWORD"), b"new-secret-9b2e");
    let audit = read(&host.dir().join("audit.log"));
    let actions: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"command\":\"rotate\""))
        .map(|l| {
            if l.contains("\"action\":\"stage\"") {
                "stage"
            } else {
                "rotate"
            }
        })
        .collect();
    assert_eq!(actions, ["stage", "rotate"], "{audit}");
}

#[test]
fn a_failing_apply_drops_the_pending_value_and_changes_nothing() {
    let host = rotate_host();
    let before = history(&host, "DB.PASSWORD");
    let run = host
        .run_in(
            &[
                "rotate",
                "DB.PASSWORD",
                "--generate",
                "--apply",
                "echo refused >&2; exit 4",
            ],
            b"",
        )
        .fails(10);
    assert_eq!(
        run.stderr,
        "stored the new value of `DB.PASSWORD` as pending; applying it at the source\n\
         refused\n\
         runvault: error: the apply hook failed (exit code 4); the pending value of \
         `DB.PASSWORD` was dropped; nothing changed in the vault\n"
    );
    assert_eq!(host.get("DB.PASSWORD"), b"old-secret-4f1c");
    assert_eq!(history(&host, "DB.PASSWORD"), before);
    assert!(!String::from_utf8_lossy(&host.vault_bytes()).contains("pending"));
}

#[test]
fn a_failing_test_leaves_the_value_pending_until_resume_or_abort() {
    let host = rotate_host();
    let source = host.path("source");
    let apply = format!("head -n 1 > {}", source.display());
    let check = format!("read v; test \"$v\" = \"$(cat {})\"", source.display());
    let run = host
        .run_in(
            &[
                "rotate",
                "DB.PASSWORD",
                "--stdin",
                "--apply",
                &apply,
                "--test",
                "exit 3",
            ],
            b"new-secret-9b2e",
        )
        .fails(10);
    assert!(
        run.stderr.ends_with(
            "runvault: error: the test hook failed (exit code 3); the new value of `DB.PASSWORD` \
         stays pending and may already be set at the source: retry with `runvault rotate \
         DB.PASSWORD --resume --test CMD`, or undo with `runvault rotate DB.PASSWORD --abort \
         --revert CMD`\n"
        ),
        "{}",
        run.describe()
    );
    // Readers see the current value; the pending one is there for who asks.
    assert_eq!(host.get("DB.PASSWORD"), b"old-secret-4f1c");
    assert_eq!(
        host.run(&["get", "DB.PASSWORD", "--pending"]).ok().stdout,
        b"new-secret-9b2e"
    );
    let rows = history(&host, "DB.PASSWORD");
    assert_eq!(rows[1]["version"], 2);
    assert_eq!(rows[1]["pending"], true);
    assert_eq!(rows[0]["current"], true);
    let table = host.run(&["history", "DB.PASSWORD"]).ok().out();
    assert!(
        table.lines().nth(2).unwrap().ends_with("pending"),
        "{table}"
    );
    // No second rotation, no `set` or `rm` the promotion would undo.
    let refused = "runvault: error: `DB.PASSWORD` has a pending rotation (version 2); finish it \
                   with `runvault rotate DB.PASSWORD --resume` or drop it with `runvault rotate \
                   DB.PASSWORD --abort`\n";
    for args in [
        &["rotate", "DB.PASSWORD", "--generate", "--apply", "true"][..],
        &["set", "DB.PASSWORD", "--stdin"],
        &["rm", "DB"],
    ] {
        let run = host.run_in(args, b"x").fails(8);
        assert_eq!(run.stderr, refused, "{args:?}");
    }
    // --resume retries the test, then promotes.
    host.run(&["rotate", "DB.PASSWORD", "--resume", "--test", "exit 1"])
        .fails(10);
    let run = host
        .run(&["rotate", "DB.PASSWORD", "--resume", "--test", &check])
        .ok();
    assert_eq!(run.stderr, "rotated `DB.PASSWORD` (version 2)\n");
    assert_eq!(host.get("DB.PASSWORD"), b"new-secret-9b2e");
    host.run(&["get", "DB.PASSWORD", "--pending"]).fails(3);

    // --abort runs --revert with the old value first, then drops the pending one.
    host.run(&[
        "rotate",
        "DB.PASSWORD",
        "--generate",
        "--apply",
        &apply,
        "--test",
        "false",
    ])
    .fails(10);
    let reverted = host.path("reverted");
    let revert = format!("cat > {}", reverted.display());
    host.run(&["rotate", "DB.PASSWORD", "--abort", "--revert", "exit 2"])
        .fails(10);
    assert_eq!(
        history(&host, "DB.PASSWORD")[2]["pending"],
        true,
        "a failed revert keeps it"
    );
    let run = host
        .run(&["rotate", "DB.PASSWORD", "--abort", "--revert", &revert])
        .ok();
    assert_eq!(
        run.stderr,
        "dropped the pending value of `DB.PASSWORD`; the current value is unchanged\n"
    );
    let lines = read(&reverted);
    assert!(
        lines.starts_with("new-secret-9b2e\n"),
        "the current value comes first"
    );
    assert_eq!(lines.lines().count(), 2);
    assert_eq!(host.get("DB.PASSWORD"), b"new-secret-9b2e");
    let run = host.run(&["rotate", "DB.PASSWORD", "--abort"]).fails(3);
    assert_eq!(
        run.stderr,
        "runvault: error: `DB.PASSWORD` has no pending rotation; see `runvault history DB.PASSWORD`\n"
    );
}

#[test]
fn a_value_with_a_line_break_is_refused_before_anything_happens() {
    let host = rotate_host();
    let marker = host.path("ran");
    let apply = format!("touch {}", marker.display());
    let before = host.vault_bytes();
    let run = host
        .run_in(
            &["rotate", "DB.PASSWORD", "--stdin", "--apply", &apply],
            b"two\nlines\n",
        )
        .fails(2);
    assert_eq!(
        run.stderr,
        "runvault: error: a value of `DB.PASSWORD` contains a line break, so it cannot be passed \
         to a hook as one line; nothing was changed (rotate it with `runvault set` and by hand)\n"
    );
    // The current value is checked too, under the lock, before staging.
    host.set("DB.PASSWORD", b"old\r\nvalue");
    let before_old = host.vault_bytes();
    host.run(&["rotate", "DB.PASSWORD", "--apply", &apply])
        .fails(2);
    assert_eq!(host.vault_bytes(), before_old);
    assert_ne!(before, before_old);
    assert!(!marker.exists(), "no hook ran");
}

#[test]
fn a_hook_that_outlives_the_timeout_is_killed_with_what_it_started() {
    let host = rotate_host();
    let started = Instant::now();
    let run = host
        .run(&[
            "rotate",
            "DB.PASSWORD",
            "--apply",
            "sleep 60 & sleep 60",
            "--timeout",
            "1s",
        ])
        .fails(10);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        run.stderr.ends_with(
            "runvault: error: the apply hook did not finish within 1s and was killed; the pending \
         value of `DB.PASSWORD` was dropped; nothing changed in the vault\n"
        ),
        "{}",
        run.describe()
    );
    assert_eq!(host.get("DB.PASSWORD"), b"old-secret-4f1c");
    host.run(&[
        "rotate",
        "DB.PASSWORD",
        "--apply",
        "true",
        "--timeout",
        "0s",
    ])
    .fails(2);
    // What a successful hook leaves running is killed with it: runvault
    // does not wait for it (it would hold the output pipe open).
    let started = Instant::now();
    host.run(&[
        "rotate",
        "DB.PASSWORD",
        "--apply",
        "sleep 60 & echo started",
    ])
    .ok();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn alternating_users_swap_the_two_accounts_in_one_commit() {
    let host = Host::new();
    host.init();
    for (path, value) in [
        ("PG.USERNAME", "app_blue"),
        ("PG.PASSWORD", "blue-pw-1"),
        ("PG.ALTERNATE.USERNAME", "app_green"),
        ("PG.ALTERNATE.PASSWORD", "green-pw-1"),
    ] {
        host.set(path, value.as_bytes());
    }
    let apply = recording_hook(&host, "apply");
    let generation = |host: &Host| {
        String::from_utf8_lossy(&host.vault_bytes())
            .lines()
            .find_map(|l| {
                l.strip_prefix("  generation: ")
                    .map(|g| g.parse::<u64>().unwrap())
            })
            .unwrap()
    };
    let before = generation(&host);
    let run = host
        .run_in(
            &["rotate", "PG", "--alternate", "--stdin", "--apply", &apply],
            b"green-pw-2",
        )
        .ok();
    assert_eq!(
        generation(&host),
        before + 2,
        "one commit to stage, one to promote"
    );
    assert_eq!(read(&host.path("apply/stdin")), "green-pw-2\ngreen-pw-1\n");
    let env = read(&host.path("apply/env"));
    assert!(env.contains("RUNVAULT_ROTATE_USER=app_green\n"), "{env}");
    assert!(env.contains("RUNVAULT_ROTATE_PATH=PG\n"), "{env}");
    assert!(run.stderr.ends_with(
        "rotated `PG`: account `app_green` is current (password version 2); the previous account is now the alternate\n"
    ), "{}", run.describe());
    let values: Vec<Vec<u8>> = [
        "PG.USERNAME",
        "PG.PASSWORD",
        "PG.ALTERNATE.USERNAME",
        "PG.ALTERNATE.PASSWORD",
    ]
    .iter()
    .map(|p| host.get(p))
    .collect();
    assert_eq!(
        values,
        [&b"app_green"[..], b"green-pw-2", b"app_blue", b"blue-pw-1"]
    );
    // A rotation left pending is found again without --alternate.
    host.run(&[
        "rotate",
        "PG",
        "--alternate",
        "--generate",
        "--apply",
        "true",
        "--test",
        "false",
    ])
    .fails(10);
    assert_eq!(
        history(&host, "PG.ALTERNATE.PASSWORD")
            .as_array()
            .unwrap()
            .last()
            .unwrap()["pending"],
        true
    );
    let run = host.run(&["rotate", "PG", "--resume"]).ok();
    assert!(
        run.stderr.contains("account `app_blue` is current"),
        "{}",
        run.describe()
    );
    // A mapping without the four fields is refused before anything is staged.
    host.set("SOLO.PASSWORD", b"x");
    let run = host
        .run(&["rotate", "SOLO", "--alternate", "--apply", "true"])
        .fails(3);
    assert_eq!(
        run.stderr,
        "runvault: error: path `SOLO.USERNAME` not found in the vault\n"
    );
}

#[test]
fn max_age_policies_are_stored_listed_when_due_and_kept_by_rotate() {
    let host = rotate_host();
    host.run_in(&["set", "API.TOKEN", "--stdin", "--max-age", "1s"], b"t")
        .ok();
    host.run_in(&["set", "DB.PASSWORD", "--stdin", "--max-age", "90d"], b"p")
        .ok();
    assert!(
        String::from_utf8_lossy(&host.vault_bytes())
            .contains("  max_age:\n    \"API.TOKEN\": 1\n    \"DB.PASSWORD\": 7776000\n")
    );
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(host.run(&["list", "--due"]).ok().out(), "API.TOKEN\n");
    let json: serde_json::Value =
        serde_json::from_slice(&host.run(&["list", "--due", "--json"]).ok().stdout).unwrap();
    assert_eq!(json[0]["path"], "API.TOKEN");
    assert_eq!(json[0]["due"], true);
    assert!(json[0]["age_seconds"].as_u64().unwrap() >= 2);
    assert_eq!(json[1]["max_age_seconds"], 7_776_000);
    assert_eq!(json[1]["due"], false);
    // Rotating resets the age.
    host.run(&["rotate", "API.TOKEN", "--apply", "true", "--max-age", "1h"])
        .ok();
    assert_eq!(host.run(&["list", "--due"]).ok().out(), "");
    host.run_in(&["set", "X", "--stdin", "--max-age", "soon"], b"x")
        .fails(2);
}

#[test]
fn doctor_reports_pending_rotations_and_credentials_past_their_max_age() {
    let host = rotate_host();
    let doctor = |host: &Host| -> Vec<serde_json::Value> {
        let run = host.command().args(["doctor", "--json"]).run();
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "vault.rotation")
            .cloned()
            .collect()
    };
    let quiet = doctor(&host);
    assert_eq!(quiet.len(), 1);
    assert_eq!(quiet[0]["status"], "ok");
    assert_eq!(
        quiet[0]["message"],
        "no credential has a rotation policy (`set --max-age`) and none is pending"
    );
    host.run_in(&["set", "API.TOKEN", "--stdin", "--max-age", "1s"], b"t")
        .ok();
    host.run(&[
        "rotate",
        "DB.PASSWORD",
        "--apply",
        "true",
        "--test",
        "false",
    ])
    .fails(10);
    std::thread::sleep(Duration::from_millis(2100));
    let found = doctor(&host);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0]["status"], "warn");
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("`DB.PASSWORD` has a rotation pending for ")
    );
    assert_eq!(
        found[0]["hint"],
        "finish it with `runvault rotate DB.PASSWORD --resume --test CMD`, or drop it with \
         `runvault rotate DB.PASSWORD --abort --revert CMD`"
    );
    assert_eq!(found[1]["rotation"]["path"], "API.TOKEN");
    assert_eq!(found[1]["rotation"]["max_age_seconds"], 1);
    assert!(found[1]["rotation"]["age_seconds"].as_u64().unwrap() >= 2);
    assert!(
        found[1]["message"]
            .as_str()
            .unwrap()
            .ends_with("old, past its max age of 1 second(s)")
    );
}

#[test]
fn a_pending_value_survives_rekey_and_blocks_an_import_over_it() {
    let host = Host::new();
    host.init_with_key_and_passphrase();
    host.set("DB.PASSWORD", b"old-secret-4f1c");
    host.set("OTHER", b"x");
    host.run_in(
        &[
            "rotate",
            "DB.PASSWORD",
            "--stdin",
            "--apply",
            "true",
            "--test",
            "false",
        ],
        b"new-secret-9b2e",
    )
    .fails(10);
    // The streaming rekey (canonical file), then the tree rekey (--keep).
    host.run(&[
        "rekey",
        "--also-key-file",
        host.key_file().to_str().unwrap(),
    ])
    .ok();
    host.run(&[
        "rekey",
        "--keep",
        "5",
        "--also-key-file",
        host.key_file().to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        host.run(&["get", "DB.PASSWORD", "--pending"]).ok().stdout,
        b"new-secret-9b2e"
    );
    host.run(&["verify"]).ok();
    // An import that would replace it is refused whole; others go on.
    let file = host.private_file("import.yml", "OTHER: y\nDB:\n  PASSWORD: imported\n");
    let before = host.vault_bytes();
    let run = host.run(&["import", file.to_str().unwrap()]).fails(8);
    assert!(
        run.stderr
            .contains("`DB.PASSWORD` has a pending rotation (version 2)"),
        "{}",
        run.describe()
    );
    assert_eq!(host.vault_bytes(), before);
    host.run(&["rotate", "DB.PASSWORD", "--resume"]).ok();
    assert_eq!(host.get("DB.PASSWORD"), b"new-secret-9b2e");
    host.run(&["import", file.to_str().unwrap()]).ok();
}
