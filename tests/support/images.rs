//! What tests that run jobs or hosts in containers share: the static
//! runvault binary (built as docs/jobs.md says), a busybox image with no
//! libc, made offline from Debian's `busybox-static`, and Debian images
//! that `mmdebstrap` builds from Debian's packages (the package test's, the
//! fleet hosts'), tagged by what goes into them. Tests on parallel threads
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

/// The Debian image for the package test: a full Debian userland (dpkg,
/// apt, bash) plus bash-completion and man-db. Returns its tag.
pub fn debian_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| mmdebstrap_image("runvault-fixture-debian", &["bash-completion", "man-db"]))
}

/// A fleet host for the Ansible tests (tests/engine/fleet.rs): Debian with
/// Python, which Ansible's modules need on every host. Returns its tag.
pub fn fleet_host_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| mmdebstrap_image("runvault-fixture-host", &["python3"]))
}

/// Imports a Debian bookworm image unless it is there already: a `minbase`
/// root filesystem that `mmdebstrap` builds from Debian's packages plus
/// `include`, no registry needed. The tag is `NAME:bookworm-HASH`, HASH
/// taken from what goes into the image, so an image made from another
/// package list is never taken for this one (and a changed list makes a
/// new image instead of reusing a stale one).
fn mmdebstrap_image(name: &str, include: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    const SUITE: &str = "bookworm";
    let include = include.join(",");
    let recipe = format!("mmdebstrap --variant=minbase --include={include} {SUITE}");
    let hash = Sha256::digest(recipe.as_bytes());
    let tag = format!(
        "{name}:{SUITE}-{}",
        hash[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let present = Command::new("docker")
        .args(["image", "inspect", &tag])
        .output()
        .is_ok_and(|out| out.status.success());
    if present {
        return tag;
    }
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("rootfs.tar");
    output(
        Command::new("mmdebstrap")
            .args(["--quiet", "--variant=minbase"])
            .arg(format!("--include={include}"))
            .arg(SUITE)
            .arg(&archive),
    );
    output(Command::new("docker").arg("import").arg(&archive).arg(&tag));
    tag
}

/// Whether `program arg` runs here (its exit status aside: `ssh-keygen`
/// has no option that exits 0). A test that needs it skips with a
/// message when it does not, except under `CI=true`, where it fails
/// (`.ci/run` installs every tool a test needs).
pub fn have(program: &str, arg: &str, test: &str) -> bool {
    let found = Command::new(program).arg(arg).output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs `{program}`, and CI=true requires it to run (.ci/run installs it)"
        );
        eprintln!("skipping {test}: `{program} {arg}` does not run here");
    }
    found
}
