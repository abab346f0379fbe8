//! Shell completions, the man page and `--version`, as packagers and
//! admins install and read them.

mod common;

use common::Host;

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
