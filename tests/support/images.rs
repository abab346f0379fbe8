//! What tests that run jobs in containers share: the static runvault
//! binary (built as docs/jobs.md says) and a busybox image with no libc,
//! made offline from Debian's `busybox-static`. Tests on parallel threads
//! may ask for the same image: each is made once per process.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use runvault::runner::install::needs_interpreter;

/// The busybox job image's tag.
pub const BUSYBOX_IMAGE: &str = "runvault-fixture-busybox:test";
/// The target the static binary is built for.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Runs a command and panics (with its stderr) unless it succeeds.
pub fn output(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the static binary into `<target dir>/static` (once: cargo skips
/// an up-to-date build, and a lock file keeps concurrent test binaries from
/// building it twice at the same time) and checks it needs no loader.
pub fn static_binary() -> PathBuf {
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
    let binary = target_dir.join(TARGET).join("release").join("runvault");
    assert!(
        !needs_interpreter(&std::fs::read(&binary).unwrap()),
        "the static build must not need a dynamic loader"
    );
    binary
}

/// Imports a busybox-only image (no libc) unless it is there already.
pub fn busybox_image() {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(import_busybox);
}

fn import_busybox() {
    let present = Command::new("docker")
        .args(["image", "inspect", BUSYBOX_IMAGE])
        .output()
        .is_ok_and(|out| out.status.success());
    if present {
        return;
    }
    let busybox = std::fs::read("/bin/busybox").expect("Debian's busybox-static at /bin/busybox");
    assert!(!needs_interpreter(&busybox), "/bin/busybox must be static");
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
            .arg(BUSYBOX_IMAGE),
    );
}

/// The Debian image's tag: a full Debian userland (dpkg, apt, bash).
pub const DEBIAN_IMAGE: &str = "runvault-fixture-debian:bookworm";

/// Imports a Debian bookworm image unless it is there already: a `minbase`
/// root filesystem that `mmdebstrap` builds from Debian's packages (plus
/// bash-completion and man-db for the package test), no registry needed.
pub fn debian_image() {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(import_debian);
}

fn import_debian() {
    let present = Command::new("docker")
        .args(["image", "inspect", DEBIAN_IMAGE])
        .output()
        .is_ok_and(|out| out.status.success());
    if present {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("rootfs.tar");
    output(
        Command::new("mmdebstrap")
            .args([
                "--quiet",
                "--variant=minbase",
                "--include=bash-completion,man-db",
                "bookworm",
            ])
            .arg(&archive),
    );
    output(
        Command::new("docker")
            .arg("import")
            .arg(&archive)
            .arg(DEBIAN_IMAGE),
    );
}
