//! Shell completions, the man page and `--version`, as packagers and
//! admins install and read them.

use std::path::Path;

use crate::support::{Host, Runs, runvault};

#[test]
fn completions_cover_the_commands_for_each_shell() {
    let host = Host::new();
    for (shell, marker) in [
        ("bash", "_runvault()"),
        ("zsh", "#compdef runvault"),
        ("fish", "complete -c runvault"),
    ] {
        let run = host.run_raw(&["completions", shell], b"").ok();
        let script = run.out();
        assert!(
            script.contains(marker),
            "{shell}: {}",
            &script[..script.len().min(200)]
        );
        for command in ["rekey", "rollback", "exec", "doctor", "runner"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks `{command}`"
            );
        }
    }
    assert_eq!(
        host.run_raw(&["completions", "tcsh"], b"").code,
        2,
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_man_page_is_roff_with_every_command_and_the_exit_codes() {
    let host = Host::new();
    let page = host.run_raw(&["man"], b"").ok().out();
    assert!(
        page.starts_with(".ie") || page.contains(".TH runvault"),
        "{}",
        &page[..page.len().min(200)]
    );
    for word in [
        "init",
        "rekey",
        "doctor",
        "runner",
        "integrity failure",
        ".SH \"EXIT STATUS\"\n",
        ".TP\n127\n",
    ] {
        assert!(page.contains(word), "the man page lacks `{word}`");
    }
}

/// The commands and one-line descriptions a `Commands:` section of help lists.
fn listed_commands(help: &str) -> Vec<(String, String)> {
    let section = help.split("\nCommands:\n").nth(1).unwrap_or_default();
    section
        .lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| {
            let entry = line.strip_prefix("  ")?;
            if entry.starts_with(' ') {
                return None; // a wrapped description's continuation
            }
            let (name, about) = entry.split_once(' ')?;
            Some((name.to_string(), about.trim().to_string()))
        })
        .filter(|(name, _)| name != "help")
        .collect()
}

#[test]
fn every_commands_help_opens_with_the_line_its_parent_lists() {
    let host = Host::new();
    let help_of = |path: &[String]| {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        host.run_raw(&args, b"").ok().out()
    };
    // Each command's help is fetched once: to check its first line, then
    // to list its own subcommands.
    let mut pending = vec![(Vec::<String>::new(), help_of(&[]))];
    let mut checked = 0;
    while let Some((path, help)) = pending.pop() {
        for (name, about) in listed_commands(&help) {
            let mut child = path.clone();
            child.push(name);
            let child_help = help_of(&child);
            let first_line = child_help.lines().next().unwrap_or_default();
            assert!(
                !about.is_empty() && first_line.starts_with(&about),
                "`runvault {}` is listed as {about:?} but its help opens with {first_line:?}",
                child.join(" ")
            );
            checked += 1;
            pending.push((child, child_help));
        }
    }
    assert!(
        checked >= 40,
        "only {checked} commands were found in the help"
    );
}

/// Every command's path below `runvault` (`["key", "add", "passphrase"]`),
/// found through the `Commands:` sections of the help, with its help.
fn every_command(host: &Host) -> Vec<(Vec<String>, String)> {
    let help_of = |path: &[String]| {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        host.run_raw(&args, b"").ok().out()
    };
    let mut found = Vec::new();
    let mut pending = vec![(Vec::<String>::new(), help_of(&[]))];
    while let Some((path, help)) = pending.pop() {
        for (name, _) in listed_commands(&help) {
            let mut child = path.clone();
            child.push(name);
            pending.push((child.clone(), help_of(&child)));
        }
        found.push((path, help));
    }
    found
}

/// The long options (`--dir`) listed in the `Options:` section of a help.
fn listed_options(help: &str) -> Vec<String> {
    let section = help.split("\nOptions:\n").nth(1).unwrap_or_default();
    section
        .lines()
        .filter_map(|line| {
            let start = line.find("--")?;
            // The option column only: `  -v, --verbose...  More ...`.
            (start < 12).then_some(())?;
            let name = line[start..].split([' ', '.', '<']).next()?;
            Some(name.to_string())
        })
        .collect()
}

#[test]
fn man_dir_writes_a_page_per_command_naming_only_pages_that_exist() {
    let host = Host::new();
    let pages = host.path("man/man1");
    let run = runvault().arg("man").arg("--dir").arg(&pages).ok();
    let commands = every_command(&host);
    assert_eq!(
        run.stderr,
        format!(
            "wrote {} man pages into `{}`\n",
            commands.len(),
            pages.display()
        )
    );
    let written = std::fs::read_dir(&pages).unwrap().count();
    assert_eq!(written, commands.len(), "one page per command, no other");
    let groff = Path::new("/usr/bin/groff").exists();
    for (path, help) in &commands {
        let name = std::iter::once("runvault")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("-");
        let file = pages.join(format!("{name}.1"));
        let page = std::fs::read_to_string(&file)
            .unwrap_or_else(|err| panic!("no page for `{}`: {err}", path.join(" ")));
        assert!(page.contains(&format!(".TH {name} 1 ")), "{name}: {page}");
        for option in listed_options(help) {
            let roff = option.replace('-', "\\-");
            assert!(page.contains(&roff), "{name}.1 lacks {option}");
        }
        let status = page.split(".SH \"EXIT STATUS\"\n").nth(1).unwrap();
        for (code, _) in runvault::core::exit::TABLE {
            assert!(
                status.contains(&format!(".TP\n{code}\n")),
                "{name}.1: {code}"
            );
        }
        // Every page named anywhere exists.
        let unescaped = page
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fR", "");
        for (at, _) in unescaped.match_indices("(1)") {
            let before = &unescaped[..at];
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .map_or(0, |i| i + 1);
            let named = &before[start..];
            assert!(named.starts_with("runvault"), "{name}.1 names {named}(1)");
            assert!(
                pages.join(format!("{named}.1")).exists(),
                "{name}.1 names {named}(1), which was not written"
            );
        }
        if groff {
            let check = std::process::Command::new("groff")
                .args(["-man", "-ww", "-z"])
                .arg(&file)
                .run()
                .ok();
            assert_eq!(check.stderr, "", "{name}.1 is not clean roff");
        }
    }
    assert!(commands.len() >= 40, "{}", commands.len());
}

#[test]
fn man_writes_pages_only_where_dir_is_given_and_never_beside_a_vault() {
    let host = Host::new();
    // `RUNVAULT_DIR` and a `--dir` before `man` name a vault: the top
    // page still goes to stdout.
    let elsewhere = host.path("elsewhere");
    let run = runvault().arg("man").env("RUNVAULT_DIR", &elsewhere).ok();
    assert!(run.out().contains(".TH runvault 1 "));
    let run = runvault().arg("--dir").arg(&elsewhere).arg("man").ok();
    assert!(run.out().contains(".TH runvault 1 "));
    assert!(!elsewhere.exists());
    host.init();
    let run = runvault().arg("man").arg("--dir").arg(host.dir()).fails(2);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}` holds a vault; write the man pages into another directory\n",
            host.dir().display()
        )
    );
}

#[test]
fn help_of_commands_without_the_vault_lists_no_vault_option() {
    let host = Host::new();
    let options = |args: &[&str]| {
        let mut args = args.to_vec();
        args.push("--help");
        listed_options(&host.run_raw(&args, b"").ok().out())
    };
    assert_eq!(
        options(&["man"]),
        ["--dir", "--verbose", "--quiet", "--help"]
    );
    assert!(
        host.run_raw(&["man", "--help"], b"")
            .out()
            .contains("--dir <DIR>   Write one page per command"),
    );
    assert_eq!(
        options(&["completions"]),
        ["--verbose", "--quiet", "--help"]
    );
    assert_eq!(
        options(&["runner", "register"]),
        [
            "--name",
            "--url",
            "--config-dir",
            "--tags",
            "--image",
            "--job-image",
            "--docker-host",
            "--token-file",
            "--force",
            "--config",
            "--verbose",
            "--quiet",
            "--help"
        ]
    );
    // A command that opens the vault still lists them all.
    let get = options(&["get"]);
    for option in [
        "--dir",
        "--passphrase-file",
        "--key-file",
        "--config",
        "--wait",
    ] {
        assert!(get.contains(&option.to_string()), "{get:?}");
    }
    // Hidden, not removed: still accepted anywhere.
    host.run_raw(&["completions", "bash", "--wait", "3"], b"")
        .ok();
}

#[test]
fn version_names_the_vault_format() {
    let host = Host::new();
    let out = host.run_raw(&["--version"], b"").ok().out();
    assert_eq!(
        out,
        format!(
            "runvault {} (vault format 1: reads and writes format 1)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}
