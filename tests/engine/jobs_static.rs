//! LONG (about a minute, once per test run): builds the static runvault
//! (`RUSTFLAGS='-C target-feature=+crt-static'`, glibc) as docs/jobs.md
//! says, checks it has no program interpreter, and runs `exec` and `get`
//! with it inside a busybox image that has no libc, with the binary, the
//! vault and the key mounted read-only as directories. Needs a Docker
//! engine: runs under `CI=true` (`.ci/run` starts one), skipped with a
//! message elsewhere when none answers. The image is made offline from
//! Debian's `busybox-static` (no registry is reachable).

use std::path::Path;
use std::process::Command;

use crate::support::images::{BUSYBOX_IMAGE as IMAGE, busybox_image, output, static_binary};
use crate::support::job_host;

#[test]
fn long_static_binary_runs_exec_and_get_in_busybox() {
    if !crate::support::runner::engine("the static-binary test") {
        return;
    }
    // Checked not to need a dynamic loader.
    let binary = static_binary();
    busybox_image();

    let host = job_host();
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&binary, bin_dir.path().join("runvault")).unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    std::fs::copy(host.key_file(), key_dir.path().join("vault.key")).unwrap();
    let mount = |host_dir: &Path, inside: &str| format!("{}:{inside}:ro", host_dir.display());
    let docker_run = |env: &[&str], args: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.args(["run", "--rm", "--network", "none"])
            .args(["-v", &mount(bin_dir.path(), "/opt/runvault")])
            .args(["-v", &mount(&host.dir(), "/secrets")])
            .args(["-v", &mount(key_dir.path(), "/etc/runvault")])
            .args(["-e", "RUNVAULT_KEY_FILE=/etc/runvault/vault.key"]);
        for var in env {
            cmd.args(["-e", var]);
        }
        cmd.arg(IMAGE).arg("/opt/runvault/runvault").args(args);
        String::from_utf8(output(&mut cmd).stdout).unwrap()
    };
    assert_eq!(
        docker_run(
            &["URL=pg://DATAOPS_VAULT(DB.USER):DATAOPS_VAULT(DB.PASS)@db"],
            &[
                "exec",
                "--export",
                "SNOWFLAKE.TRANSFORM",
                "--",
                "sh",
                "-c",
                "printf '%s|%s' \"$URL\" \"$SNOWFLAKE_TRANSFORM_PASSWORD\""
            ]
        ),
        "pg://alice:p@ss w0rd)@db|tr-secret"
    );
    assert_eq!(docker_run(&[], &["get", "DB.PASS"]), "p@ss w0rd)");
    // The image really has no libc: no lib directory at all.
    let listing = docker_run(&[], &["exec", "--", "ls", "/"]);
    assert!(
        listing.contains("bin") && !listing.contains("lib"),
        "{listing}"
    );
}
