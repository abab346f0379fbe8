//! Every command shown in `README.md` and `docs/*.md` is run, so the docs
//! cannot rot.
//!
//! # What runs
//!
//! Fenced blocks tagged `sh`, `bash` or `console`; other blocks (output,
//! YAML, TOML, untagged) are text. Each page runs in its own fresh temp host
//! as **one shell session** (bash), its blocks in page order, so a page reads
//! as a walkthrough: files and exported variables carry from one block to the
//! next. A block is split into commands the way the shell parses it (a
//! multi-line `if`/`case` or a `\`-continued line is one command); a block
//! whose first line is `#!` is a script and runs as one command with `sh`.
//! Every command runs with stdin from `/dev/null`, in a new session without a
//! terminal (a prompt fails at once instead of waiting).
//!
//! - A command must exit 0, unless its last line ends with a comment
//!   `# exit N` (e.g. `runvault get NOPE   # exit 3: not in the vault`).
//! - In a `console` block, `$ ` starts a command and the lines up to the next
//!   `$ ` are its expected output (stdout and stderr together, in order). A
//!   line `...` stands for any number of lines, `...` inside a line for any
//!   text (times, random values).
//! - The first command that ends otherwise fails the page; later commands do
//!   not run.
//!
//! # Annotations (HTML comments, invisible on the rendered page)
//!
//! - `<!-- docs-test: skip (reason) -->` on the line directly before a block:
//!   the block is not run. The reason is required; the test prints every
//!   skip with its reason. Use it only for what cannot run in a test (package
//!   installs, a real registration, systemd, a half-hour benchmark).
//! - `<!-- docs-test: needs-root -->` directly before a block: it runs only
//!   when the tests run as root (ownership checks of `doctor`); otherwise it
//!   is skipped with that reason, except under `CI=true`, where it fails.
//! - `<!-- docs-test: engine -->` directly before a block: it talks to
//!   Docker (`runner` commands, `doctor --name`) and runs only when an engine
//!   answers (`tests/support/runner.rs`, which also builds the fixture runner
//!   image offline); without one it is skipped, except under `CI=true`,
//!   where it fails. The page's containers are removed when it ends.
//! - Several annotations may precede one block, one per line.
//! - `<!-- docs-test: setup`, then shell lines, then `-->` on its own line:
//!   hidden commands run at that point of the session (e.g. a second admin's
//!   passphrase file that a reader would type). Any other `docs-test:`
//!   comment is an error.
//!
//! # The temp host
//!
//! Absolute host paths are rewritten into the temp layout wherever they start
//! a word (after a space, `=`, `:`, a quote, `(`, `<`, `>`, `|`, `;`):
//! `/secrets`, `/etc/`, `/opt/`, `/srv/`, `/usr/local/` and `/root/` move
//! under a disk root (`/secrets` becomes `ROOT/secrets`), `/run/` and
//! `/dev/shm/` under a root on `/dev/shm` (views need RAM). Output is
//! compared with the roots taken out again, so it reads as on a real host.
//! The README's quick start is the one other rewrite: `cargo build --release
//! &&` becomes `true &&` and `./target/release/runvault` becomes `runvault`,
//! the binary under test (no second, release build).
//!
//! The session's environment: `PATH` starts with a `runvault` that runs this
//! build's binary, adding `CHEAP_KDF` to the commands that create or change a
//! passphrase slot (`init`, `key add passphrase`, `key passwd`, `rekey`,
//! `runner install`) unless the page gives `--kdf-*` itself, since the
//! default Argon2id costs seconds per slot in a debug build; and for `runner`
//! commands and `doctor` it appends a suffix unique to the run to the runner
//! name (output shows it without), and gives explicitly, inside the layout,
//! the defaults that would name real host paths or the vendor's private
//! image: `--config-dir ROOT/srv/dataops-runner-NAME/config`, `--bin-dir
//! ROOT/opt/runvault/bin`, `RUNVAULT_KEY_FILE=ROOT/etc/runvault/vault.key`
//! and `--image runvault-fixture-runner:test` (each unless the page gives
//! it);
//! `RUNVAULT_DIR=ROOT/secrets`, `RUNVAULT_VIEWS_FILE=ROOT/etc/runvault/views`,
//! `RUNVAULT_CONFIG=ROOT/etc/runvault/runvault.toml`,
//! `RUNVAULT_PASSPHRASE_FILE` a 0600 file standing in for the admin typing
//! the passphrase at the prompt; no `RUNVAULT_KEY_FILE` or
//! `RUNVAULT_AUDIT_LOG` (pages name the key file; the audit log is
//! `DIR/audit.log`); `HOME=ROOT/root`; the working directory `ROOT/work`.

mod session;

use std::path::{Path, PathBuf};

use crate::support::{Runs, runvault};

use session::{
    Annotation, Block, Cmd, Kind, commands, expected_exit, extract, lines_match, run_page,
};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_runvault"))
}

/// README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages.insert(0, repo().join("README.md"));
    pages
}

#[test]
fn every_command_in_the_docs_runs() {
    let results: Vec<(String, Result<session::Tally, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = pages()
            .into_iter()
            .map(|page| {
                s.spawn(move || {
                    let name = page.strip_prefix(repo()).unwrap().display().to_string();
                    let text = std::fs::read_to_string(&page).unwrap();
                    (name, run_page(&text, &binary()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    use std::fmt::Write as _;
    let (mut blocks, mut cmds, mut skipped_blocks, mut skipped_cmds) = (0, 0, 0, 0);
    let mut report = String::new();
    let mut failures = Vec::new();
    for (name, result) in &results {
        match result {
            Ok(tally) => {
                blocks += tally.blocks;
                cmds += tally.commands;
                let _ = writeln!(
                    report,
                    "{name}: {} block(s), {} command(s) run",
                    tally.blocks, tally.commands
                );
                for (line, reason, n) in &tally.skipped {
                    skipped_blocks += 1;
                    skipped_cmds += n;
                    let _ = writeln!(report, "  skipped {name}:{line} ({n} command(s)): {reason}");
                }
            }
            Err(err) => failures.push(format!("{name}: {err}")),
        }
    }
    let _ = writeln!(
        report,
        "docs: {blocks} block(s) and {cmds} command(s) run; \
         {skipped_blocks} block(s) with {skipped_cmds} command(s) skipped"
    );
    // Straight to stderr: the harness would swallow `eprintln!` of a pass.
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(report.as_bytes());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn troubleshooting_lists_every_exit_code_and_doctor_check() {
    let page = std::fs::read_to_string(repo().join("docs/troubleshooting.md")).unwrap();
    let sections: Vec<u8> = page
        .lines()
        .filter_map(|line| line.strip_prefix("## Exit "))
        .map(|rest| rest.split(':').next().unwrap().parse().unwrap())
        .collect();
    let codes: Vec<u8> = runvault::core::exit::TABLE
        .iter()
        .map(|row| row.0)
        .collect();
    assert_eq!(
        sections, codes,
        "docs/troubleshooting.md's `## Exit N` sections"
    );
    for id in runvault::doctor::CHECK_IDS {
        assert!(
            page.contains(&format!("### `{id}`")),
            "docs/troubleshooting.md has no `### `{id}`` section for the doctor check"
        );
    }
}

#[test]
fn readme_and_help_list_the_exit_codes_of_the_one_table() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme.split("\n## Exit codes\n").nth(1).unwrap();
    let rows: Vec<(u8, &str)> = section
        .lines()
        .skip_while(|line| !line.starts_with("| code |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            (cells[0].trim().parse().unwrap(), cells[1].trim())
        })
        .collect();
    assert_eq!(
        rows,
        runvault::core::exit::TABLE,
        "README's exit-code table"
    );
    let help = runvault().arg("--help").ok().out();
    let listed = help.split("\nExit codes:\n").nth(1).unwrap();
    let expected: String = runvault::core::exit::TABLE
        .iter()
        .map(|(code, meaning)| format!("  {code:>3}  {meaning}\n"))
        .collect();
    assert_eq!(listed, expected);
    assert!(listed.contains("  126  `exec`: the command could not be run\n"));
}

#[test]
fn doctor_reports_only_listed_checks_on_a_broken_host() {
    // A host with nearly everything wrong: a plaintext vault with a weak
    // salt, a stray temp file, a key file inside the directory, a stale view.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("secrets");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("vault.yml"), "A: b\n").unwrap();
    std::fs::write(dir.join("vault.salt"), "0123456789abcdef0123").unwrap();
    std::fs::write(dir.join("vault.yml.x.rvtmp"), "").unwrap();
    std::fs::write(dir.join("vault.key"), "").unwrap();
    let views = root.path().join("views");
    std::fs::write(&views, format!("{}\n", root.path().join("view").display())).unwrap();
    let run = runvault()
        .arg("--dir")
        .arg(&dir)
        .arg("--views-file")
        .arg(&views)
        .args(["doctor", "--json"])
        .fails(1);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let ids: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert!(ids.len() > 10, "{ids:?}");
    for id in ids {
        assert!(runvault::doctor::CHECK_IDS.contains(&id), "{id}");
    }
}

// --- The extractor and runner themselves --------------------------------

fn block(markdown: &str) -> Block {
    let blocks = extract(markdown).unwrap();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    blocks.into_iter().next().unwrap()
}

#[test]
fn only_shell_and_console_blocks_run() {
    let page = "# t\n\n```\nrunvault nope\n```\n\n```yaml\na: b\n```\n\n```sh\ntrue\n```\n\n\
                ```console\n$ true\n```\n";
    let blocks = extract(page).unwrap();
    let kinds: Vec<Kind> = blocks.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [Kind::Shell, Kind::Console]);
    assert_eq!(blocks[0].line, 11);
}

#[test]
fn a_skip_needs_a_reason_and_a_block() {
    let skipped = block("<!-- docs-test: skip (needs root) -->\n```sh\nreboot\n```\n");
    assert_eq!(skipped.annotations, [Annotation::Skip("needs root".into())]);
    let both = block(
        "<!-- docs-test: needs-root -->\n<!-- docs-test: engine -->\n```sh\nchown root: x\n```\n",
    );
    assert_eq!(
        both.annotations,
        [Annotation::NeedsRoot, Annotation::Engine]
    );
    for bad in [
        "<!-- docs-test: skip -->\n```sh\nx\n```\n",
        "<!-- docs-test: skip () -->\n```sh\nx\n```\n",
        "<!-- docs-test: skip (r) -->\ntext\n```sh\nx\n```\n",
        "<!-- docs-test: skip (r) -->\n```\nx\n```\n",
        "<!-- docs-test: skip (r) -->\n",
        "<!-- docs-test: needs-root -->\n```yaml\nx\n```\n",
        "<!-- docs-test: run (r) -->\n```sh\nx\n```\n",
        "<!-- docs-test: setup\ntrue\n",
    ] {
        assert!(extract(bad).is_err(), "{bad}");
    }
}

#[test]
fn commands_follow_the_shell_grammar() {
    let b = block(
        "```sh\n# a comment\nrunvault list\n\nrunvault set A \\\n  --generate   # exit 8\n\
         case $? in\n  0) ;;\nesac\nx=$(echo \"a\n b\")\n```\n",
    );
    let cmds = commands(&b).unwrap();
    let shown: Vec<(usize, &str, i32)> = cmds
        .iter()
        .map(|c| (c.line, c.text.as_str(), c.exit))
        .collect();
    assert_eq!(
        shown,
        [
            (3, "runvault list", 0),
            (5, "runvault set A \\\n  --generate   # exit 8", 8),
            (7, "case $? in\n  0) ;;\nesac", 0),
            (10, "x=$(echo \"a\n b\")", 0),
        ]
    );
    let script = block("```sh\n#!/bin/sh\nexit 0\n```\n");
    assert!(commands(&script).unwrap()[0].script);
}

#[test]
fn console_blocks_carry_their_output() {
    let b = block("```console\n$ runvault get A   # exit 3\nrunvault: error: ...\n$ true\n```\n");
    let cmds = commands(&b).unwrap();
    assert_eq!(
        cmds[0],
        Cmd {
            line: 2,
            text: "runvault get A   # exit 3".into(),
            script: false,
            exit: 3,
            output: Some(vec!["runvault: error: ...".into()]),
        }
    );
    assert_eq!(cmds[1].output, Some(vec![]));
    assert_eq!(expected_exit("echo '# exit 3'"), 0);
    let lines = |v: &[&str]| {
        v.iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert!(lines_match(
        &lines(&["a ... c", "..."]),
        &["a b c", "d", "e"]
    ));
    assert!(lines_match(&lines(&["...", "e"]), &["a", "e"]));
    assert!(!lines_match(&lines(&["a", "c"]), &["a", "b", "c"]));
    assert!(!lines_match(&lines(&["a...z"]), &["ab"]));
}

#[test]
fn host_paths_move_into_the_temp_layout() {
    let layout = session::Layout::new(&binary());
    let root = layout.root.path().display().to_string();
    let ram = layout.ram.path().display().to_string();
    assert_eq!(
        layout.rewrite("runvault --key-file /etc/runvault/vault.key view add /run/v"),
        format!("runvault --key-file {root}/etc/runvault/vault.key view add {ram}/run/v")
    );
    assert_eq!(
        layout.rewrite("RUNVAULT_DIR=/secrets ls /secrets/a /secretsx x/secrets"),
        format!("RUNVAULT_DIR={root}/secrets ls {root}/secrets/a /secretsx x/secrets")
    );
    assert_eq!(
        layout.rewrite("cargo build --release && ./target/release/runvault list"),
        "true && runvault list"
    );
    assert_eq!(
        layout.unrewrite(&format!("`{root}/secrets/vault.yml`")),
        "`/secrets/vault.yml`"
    );
}

#[test]
fn a_broken_page_fails() {
    let ok = "```sh\nrunvault --key-file /etc/runvault/vault.key keygen /etc/runvault/vault.key\n\
              runvault --key-file /etc/runvault/vault.key init\n```\n\
              ```console\n$ runvault --key-file /etc/runvault/vault.key get NOPE   # exit 3\n\
              runvault: error: path `NOPE` not found in the vault\n```\n";
    let tally = run_page(ok, &binary()).unwrap();
    assert_eq!((tally.blocks, tally.commands), (2, 3));
    // An unannotated command that fails.
    let err = run_page("```sh\ntrue\nrunvault get NOPE\ntrue\n```\n", &binary()).unwrap_err();
    assert!(
        err.starts_with("line 3: `runvault get NOPE` exited "),
        "{err}"
    );
    // A command that succeeds where the page says it fails.
    let err = run_page("```sh\ntrue   # exit 3\n```\n", &binary()).unwrap_err();
    assert!(err.contains("exited 0, the page expects 3"), "{err}");
    // Output that differs from the page.
    let err = run_page("```console\n$ echo hello\nhallo\n```\n", &binary()).unwrap_err();
    assert!(err.contains("but the page shows\nhallo"), "{err}");
    // A skipped block is counted, not run.
    let tally = run_page(
        "<!-- docs-test: skip (test) -->\n```sh\nfalse\nfalse\n```\n",
        &binary(),
    )
    .unwrap();
    assert_eq!(tally.skipped, [(2, "test".to_string(), 2)]);
}
