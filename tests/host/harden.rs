//! A runvault process cannot be core-dumped or read by other processes of
//! its user while it waits with secrets in memory: on its standard input,
//! on the writers' lock and at a passphrase prompt.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `setpriv` arguments that run what follows as user `nobody`.
const AS_NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// Starts `program args` as user `nobody` with a stdin pipe kept open.
fn as_nobody(program: &str, args: &[&str]) -> std::process::Child {
    Command::new("setpriv")
        .args(AS_NOBODY)
        .arg(program)
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
    if !crate::support::require_root("a_waiting_runvault_is_not_dumpable_and_has_no_core_limit") {
        return;
    }
    let nobody_uid = nobody_uid();

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
    assert_guarded(waiting.id(), &[], "waiting on its standard input");
    drop(waiting.stdin.take());
    let _ = waiting.kill();
    let _ = waiting.wait();
}

/// The uid of user `nobody`.
fn nobody_uid() -> u32 {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The runvault processes whose command line mentions `marker`.
fn runvault_pids_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if cmdline.contains(marker) && exe.ends_with("runvault") {
            pids.push(pid);
        }
    }
    pids
}

/// Asserts that process `pid` (running as nobody) is not dumpable, has a
/// zero core limit and shows none of `secrets` in its command line.
fn assert_guarded(pid: u32, secrets: &[&[u8]], what: &str) {
    assert_eq!(proc_owner(pid), 0, "{what}: not dumpable");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits.lines().any(
            |l| l.starts_with("Max core file size") && l.split_whitespace().nth(4) == Some("0")
        ),
        "{what}: soft core limit 0"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    for secret in secrets {
        assert!(
            !cmdline.windows(secret.len()).any(|w| w == *secret),
            "{what}: a secret in /proc/{pid}/cmdline"
        );
    }
}

/// A host whose files all belong to `nobody`, so runvault can run as it.
fn host_owned_by_nobody() -> crate::support::Host {
    let host = crate::support::job_host();
    chown_recursive(host.root.path(), "nobody:nogroup");
    host
}

fn chown_recursive(path: &std::path::Path, owner: &str) {
    let chown = Command::new("chown")
        .args(["-R", owner])
        .arg(path)
        .status()
        .unwrap();
    assert!(chown.success());
}

#[test]
fn runvault_waiting_on_the_lock_or_at_a_prompt_is_not_dumpable() {
    if !crate::support::require_root("runvault_waiting_on_the_lock_or_at_a_prompt_is_not_dumpable")
    {
        return;
    }
    let host = host_owned_by_nobody();
    let runvault = env!("CARGO_BIN_EXE_runvault");
    let value = b"lock-wait-value-6f1d2c";

    // Another writer holds the lock; a `set` of a new value waits for it.
    let lock_file = host.dir().join(".runvault.lock");
    assert!(
        lock_file.exists(),
        "the writers' lock file exists after sets"
    );
    // In its own process group: `flock` hands the lock to its `sleep`
    // child, so releasing it means stopping both.
    let mut holder = Command::new("flock")
        .arg(&lock_file)
        .args(["sleep", "30"])
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = Command::new("setpriv")
        .args(AS_NOBODY)
        .arg(runvault)
        .arg("--dir")
        .arg(host.dir())
        .arg("--key-file")
        .arg(host.key_file())
        .args(["--wait", "30", "set", "LOCK.WAIT", "--stdin"])
        .env("RUNVAULT_VIEWS_FILE", host.views_file())
        .env("RUNVAULT_STATE_DIR", host.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = waiting.stdin.take().unwrap();
        stdin.write_all(value).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "set waits while another writer holds the lock"
    );
    assert_guarded(waiting.id(), &[value], "waiting on the lock");
    let released = Command::new("kill")
        .args(["--", &format!("-{}", holder.id())])
        .status()
        .unwrap();
    assert!(released.success());
    let _ = holder.wait();
    let done = waiting.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "set finished once the lock was free: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    // The files back to root: the test's own commands refuse a passphrase
    // file that belongs to another user.
    chown_recursive(host.root.path(), "root:root");
    assert_eq!(host.get("LOCK.WAIT"), value, "it was the lock it waited on");

    // A `get` asking for the passphrase on a terminal (script gives it one).
    chown_recursive(host.root.path(), "nobody:nogroup");
    let marker = host.dir().display().to_string();
    let shell_line = format!(
        "setpriv {} {runvault} --dir {marker} get DB.PASS",
        AS_NOBODY.join(" ")
    );
    let mut terminal = Command::new("script")
        .args(["-qefc", &shell_line, "/dev/null"])
        .env("RUNVAULT_VIEWS_FILE", host.views_file())
        .env_remove("RUNVAULT_PASSPHRASE_FILE")
        .env_remove("RUNVAULT_KEY_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut prompting = Vec::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        prompting = runvault_pids_with(&marker);
        if !prompting.is_empty() {
            break;
        }
    }
    assert_eq!(prompting.len(), 1, "one runvault at the prompt");
    std::thread::sleep(Duration::from_millis(300));
    let pid = prompting[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some(nobody_uid().to_string().as_str()),
        "the prompting process runs as nobody"
    );
    assert_guarded(
        pid,
        &[crate::support::PASSPHRASE.as_bytes()],
        "at the passphrase prompt",
    );
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = terminal.kill();
    let _ = terminal.wait();
}
