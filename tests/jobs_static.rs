//! LONG (about a minute, once per test run): builds the static runvault
//! (`RUSTFLAGS='-C target-feature=+crt-static'`, glibc) as docs/jobs.md
//! says, checks it has no program interpreter, and runs `exec` and `get`
//! with it inside a busybox image that has no libc, with the binary, the
//! vault and the key mounted read-only as directories. Needs a Docker
//! engine: runs under `CI=true` (`.ci/run` starts one), skipped with a
//! message elsewhere when none answers. The image is made offline from
//! Debian's `busybox-static` (no registry is reachable).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::job_host;

const IMAGE: &str = "runvault-fixture-busybox:test";
const TARGET: &str = "x86_64-unknown-linux-gnu";

fn output(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn engine_available() -> bool {
    let up = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|out| out.status.success());
    if !up {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Docker engine answers, and CI=true requires the static-binary test to run"
        );
        eprintln!("skipping the static-binary test: no Docker engine answers `docker info`");
    }
    up
}

/// Builds the static binary into `<target dir>/static` (once: cargo skips
/// an up-to-date build, and a lock file keeps concurrent test binaries from
/// building it twice at the same time).
fn static_binary() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_BIN_EXE_runvault"))
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("static");
    std::fs::create_dir_all(&target_dir).unwrap();
    let lock = std::fs::File::create(target_dir.join("build.lock")).unwrap();
    lock.lock().unwrap();
    output(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args([
                "build",
                "--quiet",
                "--release",
                "--bin",
                "runvault",
                "--target",
                TARGET,
            ]),
    );
    target_dir.join(TARGET).join("release").join("runvault")
}

/// Whether an ELF64 file asks for a program interpreter (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

/// Imports a busybox-only image (no libc) unless it is there already.
fn busybox_image() {
    let present = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .is_ok_and(|out| out.status.success());
    if present {
        return;
    }
    let busybox = std::fs::read("/bin/busybox").expect("Debian's busybox-static at /bin/busybox");
    assert!(!has_interpreter(&busybox), "/bin/busybox must be static");
    let rootfs = tempfile::tempdir().unwrap();
    let bin = rootfs.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("busybox"), &busybox).unwrap();
    std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for applet in ["sh", "env", "cat", "printf", "ls", "echo", "true"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let archive = rootfs.path().join("rootfs.tar");
    output(
        Command::new("tar")
            .arg("-C")
            .arg(&bin)
            .arg("-cf")
            .arg(&archive)
            .args(["--transform", "s,^\\.,bin,", "."]),
    );
    output(
        Command::new("docker")
            .arg("import")
            .arg(&archive)
            .arg(IMAGE),
    );
}

#[test]
fn long_static_binary_runs_exec_and_get_in_busybox() {
    if !engine_available() {
        return;
    }
    let binary = static_binary();
    assert!(
        !has_interpreter(&std::fs::read(&binary).unwrap()),
        "the static build must not need a dynamic loader"
    );
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
