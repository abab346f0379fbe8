//! A runvault process cannot be core-dumped or read by other processes of
//! its user while it waits with secrets in memory.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts `program args` as user `nobody` with a stdin pipe kept open.
fn as_nobody(program: &str, args: &[&str]) -> std::process::Child {
    Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            program,
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("setpriv")
}

/// The owner of `/proc/PID/status`: the process's user when it is
/// dumpable, root when it is not.
fn proc_owner(pid: u32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid()
}

#[test]
fn a_waiting_runvault_is_not_dumpable_and_has_no_core_limit() {
    if !common::is_root() {
        assert!(
            std::env::var("CI").is_err(),
            "must run under CI, which runs as root"
        );
        eprintln!("skipped: needs root to run a process as nobody");
        return;
    }
    let nobody_uid = String::from_utf8(
        Command::new("id")
            .args(["-u", "nobody"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let nobody_uid: u32 = nobody_uid.trim().parse().unwrap();

    // Control: an ordinary process of the same user is dumpable.
    let mut control = as_nobody("sleep", &["5"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        proc_owner(control.id()),
        nobody_uid,
        "the check can tell a dumpable process"
    );
    let _ = control.kill();
    let _ = control.wait();

    // runvault waiting for a plaintext import on its standard input.
    let mut waiting = as_nobody(
        env!("CARGO_BIN_EXE_runvault"),
        &["--dir", "/nonexistent", "import", "-"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let pid = waiting.id();
    assert_eq!(
        proc_owner(pid),
        0,
        "not dumpable: its /proc files belong to root"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().nth(4),
        Some("0"),
        "soft core limit is 0: {core}"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("secret"));
    drop(waiting.stdin.take());
    let _ = waiting.kill();
    let _ = waiting.wait();
}
