//! `runvault exec` as a job runs it: references in the environment resolved,
//! `--export`, `--pristine`, and failures that stop the command from starting.

use crate::support::{Host, Runs, job_host};

/// `runvault --dir D --key-file K exec ARGS...` with extra variables set.
fn exec(host: &Host, vars: &[(&str, &str)], args: &[&str]) -> crate::support::Run {
    let mut cmd = host.command();
    cmd.arg("--key-file").arg(host.key_file()).arg("exec");
    cmd.args(args);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.run_in(b"")
}

#[test]
fn whole_embedded_and_repeated_references_are_resolved() {
    let host = job_host();
    let run = exec(
        &host,
        &[
            ("WHOLE", "DATAOPS_VAULT(DB.USER)"),
            (
                "URL",
                "pg://DATAOPS_VAULT(DB.USER):DATAOPS_VAULT(DB.PASS)@db/DATAOPS_VAULT(DB.USER)",
            ),
            ("PLAIN", "no DATAOPS_VAULT here"),
        ],
        &[
            "--",
            "sh",
            "-c",
            r#"printf '%s|%s|%s' "$WHOLE" "$URL" "$PLAIN""#,
        ],
    )
    .ok();
    assert_eq!(
        run.out(),
        "alice|pg://alice:p@ss w0rd)@db/alice|no DATAOPS_VAULT here"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn the_command_replaces_runvault() {
    let host = job_host();
    let mut cmd = host.command();
    cmd.arg("--key-file")
        .arg(host.key_file())
        .args(["exec", "--", "sh", "-c", "echo $$"])
        .env("A", "DATAOPS_VAULT(DB.USER)")
        .stdout(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        pid.to_string(),
        "the shell must run in runvault's process, so no parent keeps the plaintext"
    );
}

#[test]
fn export_names_leaves_and_an_explicit_variable_wins() {
    let host = job_host();
    let script = r#"printf '%s|%s|%s' "$SNOWFLAKE_TRANSFORM_USERNAME" "$SNOWFLAKE_TRANSFORM_PASSWORD" "$DB_USER""#;
    let run = exec(
        &host,
        &[("SNOWFLAKE_TRANSFORM_USERNAME", "explicit")],
        &[
            "--export",
            "SNOWFLAKE.TRANSFORM",
            "--export",
            "DB.USER",
            "--export",
            "SNOWFLAKE",
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .ok();
    assert_eq!(run.out(), "explicit|tr-secret|alice");
    assert_eq!(
        run.stderr,
        "runvault: warning: `SNOWFLAKE_TRANSFORM_USERNAME` is set in the environment; it wins over the value \
         exported from `SNOWFLAKE.TRANSFORM.USERNAME`\n"
    );
}

#[test]
fn two_exported_paths_with_one_name_are_an_error() {
    let host = job_host();
    host.run_key(&["set", "SNOWFLAKE.TRANSFORM_PASSWORD", "--stdin"], b"x")
        .ok();
    let marker = host.root.path().join("ran");
    let run = exec(
        &host,
        &[],
        &[
            "--export",
            "SNOWFLAKE",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "runvault: error: --export: `SNOWFLAKE.TRANSFORM.PASSWORD` and `SNOWFLAKE.TRANSFORM_PASSWORD` \
         both become the variable `SNOWFLAKE_TRANSFORM_PASSWORD`; export a narrower prefix or \
         rename one of the keys\n"
    );
    assert!(!marker.exists(), "the command must not run");
}

#[test]
fn pristine_passes_only_resolved_and_exported_variables() {
    let host = job_host();
    let run = exec(
        &host,
        &[("A", "DATAOPS_VAULT(DB.USER)"), ("NOT_PASSED", "x")],
        &["--pristine", "--export", "DB.PASS", "--", "/usr/bin/env"],
    )
    .ok();
    let out = run.out();
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["A=alice", "DB_PASS=p@ss w0rd)"]);
}

#[test]
fn a_missing_path_fails_before_the_command_starts() {
    let host = job_host();
    let marker = host.root.path().join("ran");
    let run = exec(
        &host,
        &[
            ("GOOD", "DATAOPS_VAULT(DB.USER)"),
            (
                "DATAOPS_SNOWSQL_USER",
                "x-DATAOPS_VAULT(SNOWFLAKE.SOLE.USERNAME)",
            ),
        ],
        &["--", "touch", marker.to_str().unwrap()],
    );
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        "runvault: error: variable `DATAOPS_SNOWSQL_USER` references `SNOWFLAKE.SOLE.USERNAME`, \
         which is not in the vault; check the path with `runvault list`\n"
    );
    assert!(!marker.exists(), "the command must not run");
    assert!(run.stdout.is_empty());

    let run = exec(
        &host,
        &[],
        &["--export", "NOPE", "--", "touch", marker.to_str().unwrap()],
    );
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        "runvault: error: --export `NOPE`: path not found in the vault; check it with `runvault list`\n"
    );
    assert!(!marker.exists());
}

#[test]
fn malformed_and_container_references_are_usage_errors() {
    let host = job_host();
    let run = exec(
        &host,
        &[("BAD", "DATAOPS_VAULT(DB..USER)")],
        &["--", "true"],
    );
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "runvault: error: malformed reference in variable `BAD`: `DATAOPS_VAULT(DB..USER)` does \
         not name a vault path: segment 2 is empty; write it as `DATAOPS_VAULT(PATH.TO.VALUE)`\n"
    );
    let run = exec(&host, &[("OPEN", "DATAOPS_VAULT(DB.USER")], &["--", "true"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "runvault: error: malformed reference in variable `OPEN`: `DATAOPS_VAULT(` has no closing \
         `)`; write it as `DATAOPS_VAULT(PATH.TO.VALUE)`\n"
    );
    let run = exec(&host, &[("MAP", "DATAOPS_VAULT(DB)")], &["--", "true"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "runvault: error: variable `MAP` references `DB`, which is a mapping, not a value; \
         reference a value under it, or use `runvault exec --export DB`\n"
    );
}

#[test]
fn without_references_no_key_is_needed_and_exit_codes_pass_through() {
    let host = job_host();
    let mut cmd = host.command();
    cmd.args(["exec", "--", "sh", "-c", "exit 7"]);
    let run = cmd.run_in(b"");
    assert_eq!(run.code, 7, "{}", run.stderr);
    let run = exec(&host, &[], &["--", "/nonexistent/cmd"]);
    assert_eq!(run.code, 127);
    assert_eq!(
        run.stderr,
        "runvault: error: cannot run `/nonexistent/cmd`: No such file or directory (os error 2); \
         check the command name and PATH\n"
    );
}

#[test]
fn a_wrong_key_fails_without_running_the_command() {
    let host = job_host();
    let other = Host::new();
    other.keygen();
    let marker = host.root.path().join("ran");
    let mut cmd = host.command();
    cmd.arg("--key-file")
        .arg(other.key_file())
        .args(["exec", "--", "touch", marker.to_str().unwrap()])
        .env("A", "DATAOPS_VAULT(DB.USER)");
    let run = cmd.run_in(b"");
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(!marker.exists());
}

/// Issue 19 item 2: a commit message, merge request title or user name
/// reading `DATAOPS_VAULT(...)` must not pull a secret into the job, nor
/// fail it; the job's own variables (`DATAOPS_*` included) still resolve.
#[test]
fn variables_the_ci_system_sets_pass_through_unresolved() {
    let host = job_host();
    let script = r#"printf '%s|%s|%s|%s|%s' "$CI_COMMIT_MESSAGE" "$CI_MERGE_REQUEST_TITLE" "$GITLAB_USER_NAME" "$CHAT_INPUT" "$DATAOPS_SNOWSQL_USER""#;
    let run = exec(
        &host,
        &[
            ("CI_COMMIT_MESSAGE", "leak DATAOPS_VAULT(DB.PASS)"),
            ("CI_MERGE_REQUEST_TITLE", "fix the DATAOPS_VAULT( parser"),
            ("GITLAB_USER_NAME", "DATAOPS_VAULT(DB.USER)"),
            ("CHAT_INPUT", "DATAOPS_VAULT(DB..PASS)"),
            ("DATAOPS_SNOWSQL_USER", "DATAOPS_VAULT(DB.USER)"),
        ],
        &["--", "sh", "-c", script],
    )
    .ok();
    assert_eq!(
        run.out(),
        "leak DATAOPS_VAULT(DB.PASS)|fix the DATAOPS_VAULT( parser|DATAOPS_VAULT(DB.USER)|\
         DATAOPS_VAULT(DB..PASS)|alice"
    );
    let mut notes: Vec<&str> = run.stderr.lines().collect();
    notes.sort_unstable();
    assert_eq!(
        notes,
        [
            "runvault: warning: `CHAT_INPUT` is set by the CI system (`CHAT_INPUT`); its `DATAOPS_VAULT(` is \
             passed on unresolved",
            "runvault: warning: `CI_COMMIT_MESSAGE` is set by the CI system (`CI_*`); its `DATAOPS_VAULT(` is \
             passed on unresolved",
            "runvault: warning: `CI_MERGE_REQUEST_TITLE` is set by the CI system (`CI_*`); its \
             `DATAOPS_VAULT(` is passed on unresolved",
            "runvault: warning: `GITLAB_USER_NAME` is set by the CI system (`GITLAB_*`); its `DATAOPS_VAULT(` \
             is passed on unresolved",
        ]
    );

    // Nothing to resolve but CI variables: the vault is not even opened (no
    // key given), and the command runs.
    let mut cmd = host.command();
    cmd.args([
        "exec",
        "--",
        "sh",
        "-c",
        r#"printf '%s' "$CI_COMMIT_TITLE""#,
    ])
    .env("CI_COMMIT_TITLE", "DATAOPS_VAULT(DB.PASS)");
    let without_key = cmd.run_in(b"").ok();
    assert_eq!(without_key.out(), "DATAOPS_VAULT(DB.PASS)");
}

#[test]
fn only_resolves_the_named_variables() {
    let host = job_host();
    let script = r#"printf '%s|%s' "$A" "$B""#;
    let vars = [
        ("A", "DATAOPS_VAULT(DB.USER)"),
        ("B", "DATAOPS_VAULT(DB.PASS) and DATAOPS_VAULT("),
    ];
    let run = exec(&host, &vars, &["--only", "A", "--", "sh", "-c", script]).ok();
    assert_eq!(run.out(), "alice|DATAOPS_VAULT(DB.PASS) and DATAOPS_VAULT(");
    assert_eq!(run.stderr, "");

    let run = exec(
        &host,
        &vars,
        &["--only", "A", "--only", "B", "--", "sh", "-c", "true"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "runvault: error: malformed reference in variable `B`: `DATAOPS_VAULT(` has no closing \
         `)`; write it as `DATAOPS_VAULT(PATH.TO.VALUE)`\n"
    );

    let run = exec(
        &host,
        &vars,
        &["--pristine", "--only", "A", "--", "/usr/bin/env"],
    )
    .ok();
    assert_eq!(run.out(), "A=alice\n");

    let marker = host.root.path().join("ran");
    let touch = ["--", "touch", marker.to_str().unwrap()];
    let run = exec(
        &host,
        &[("CI_COMMIT_MESSAGE", "DATAOPS_VAULT(DB.PASS)")],
        &[&["--only", "CI_COMMIT_MESSAGE"][..], &touch].concat(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "runvault: error: --only `CI_COMMIT_MESSAGE`: variables matching `CI_*` are set by the CI \
         system and are never resolved; give your variable a name outside that list (see \
         docs/jobs.md)\n"
    );
    let run = exec(&host, &vars, &[&["--only", "NOPE"][..], &touch].concat());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "runvault: error: --only `NOPE`: no such variable in the environment; check its name in \
         the job\n"
    );
    assert!(!marker.exists(), "the command must not run");
}
