//! Shell completions, the man page and `--version`, as packagers and
//! admins install and read them.

use crate::support::Host;

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
    for word in ["init", "rekey", "doctor", "runner", "integrity failure"] {
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
