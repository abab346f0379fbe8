//! LONG: the Debian package (issue 22; docs/packaging.md), checked by
//! Debian's own tools on a real Debian userland.
//!
//! - Where the `.deb` comes from: the path in `RUNVAULT_DEB` when set
//!   (`.ci/run` builds it with `docs/packaging/build-deb.sh` before
//!   `cargo test` and sets it); otherwise this test runs that script itself
//!   (a static release build the first time, shared with
//!   tests/engine/jobs_static.rs, then seconds).
//! - `lintian` must report no error, and every warning it reports must be
//!   one that docs/packaging.md explains.
//! - The package's files, modes and version are exactly the ones listed
//!   here, and its version is `runvault --version`'s and the changelog's.
//! - In a Debian bookworm container (a minbase root filesystem made by
//!   `mmdebstrap` from Debian's packages, `docker import`ed once as
//!   `runvault-fixture-debian:bookworm`, no network): `dpkg -i`, the
//!   version, the man page, the bash completion, the README's quick start as
//!   a non-root user, then `dpkg -r` and `dpkg -P` leaving the admin's key,
//!   vault and view byte for byte as they were.
//!
//! Needs `lintian`, `mmdebstrap`, a Docker engine and (without
//! `RUNVAULT_DEB`) `cargo deb`. Under `CI=true` a missing one fails the
//! test; elsewhere it is skipped with the reason printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::Runs;
use crate::support::images::{debian_image, have, output};

/// The package's version: the crate's, with no Debian revision.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `.deb` under test: `RUNVAULT_DEB`, or built once by the script.
fn deb(test: &str) -> Option<PathBuf> {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = std::env::var_os("RUNVAULT_DEB") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "RUNVAULT_DEB=`{}` is not a file",
            path.display()
        );
        return Some(path);
    }
    if DEB.get().is_none() && !have("cargo-deb", "--version", test) {
        return None;
    }
    Some(
        DEB.get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target_dir = Path::new(env!("CARGO_BIN_EXE_runvault"))
                .parent()
                .and_then(Path::parent)
                .expect("target dir");
            let out = output(
                Command::new(root.join("docs/packaging/build-deb.sh"))
                    .env("CARGO_TARGET_DIR", target_dir)
                    .env_remove("RUSTFLAGS"),
            );
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim_end())
        })
        .clone(),
    )
}

fn text(cmd: &mut Command) -> String {
    String::from_utf8(output(cmd).stdout).unwrap()
}

#[test]
fn long_package_carries_the_binarys_version_and_exactly_its_files() {
    let test = "the package contents test";
    let Some(deb) = deb(test) else { return };
    let field = |name: &str| text(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package"), "runvault\n");
    assert_eq!(field("Version"), format!("{VERSION}\n"));
    assert_eq!(field("Architecture"), "amd64\n");
    // Static: nothing to depend on.
    assert_eq!(field("Depends"), "\n");
    // The changelog's newest entry names the same version.
    let changelog = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/packaging/changelog"),
    )
    .unwrap();
    assert!(
        changelog.starts_with(&format!("runvault ({VERSION}) ")),
        "docs/packaging/changelog must start with an entry for {VERSION}"
    );

    // `dpkg-deb -c`: mode, owner, size, time, path; keep mode, owner, path.
    let listing = text(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let mut files: Vec<String> = listing
        .lines()
        .filter(|line| !line.starts_with('d'))
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            format!("{} {} {}", cols[0], cols[1], cols[5])
        })
        .collect();
    // One man page per command: the pages `runvault man --dir` writes.
    let pages = tempfile::tempdir().unwrap();
    crate::support::runvault()
        .arg("man")
        .arg("--dir")
        .arg(pages.path())
        .ok();
    let mut man: Vec<String> = std::fs::read_dir(pages.path())
        .unwrap()
        .map(|page| page.unwrap().file_name().into_string().unwrap())
        .collect();
    man.sort();
    assert!(man.len() > 20 && man.contains(&"runvault-key-add.1".to_string()));
    let man_prefix = "-rw-r--r-- 0/0 ./usr/share/man/man1/";
    let mut shipped: Vec<String> = (files.iter())
        .filter_map(|file| file.strip_prefix(man_prefix))
        .map(|page| page.strip_suffix(".gz").expect("compressed").to_string())
        .collect();
    shipped.sort();
    assert_eq!(shipped, man);
    files.retain(|file| !file.starts_with(man_prefix));
    files.sort();
    assert_eq!(
        files,
        [
            "-rw-r--r-- 0/0 ./usr/lib/systemd/system/runvault-views.service",
            "-rw-r--r-- 0/0 ./usr/share/bash-completion/completions/runvault",
            "-rw-r--r-- 0/0 ./usr/share/doc/runvault/README.md",
            "-rw-r--r-- 0/0 ./usr/share/doc/runvault/changelog.gz",
            "-rw-r--r-- 0/0 ./usr/share/doc/runvault/copyright",
            "-rw-r--r-- 0/0 ./usr/share/fish/vendor_completions.d/runvault.fish",
            "-rw-r--r-- 0/0 ./usr/share/lintian/overrides/runvault",
            "-rw-r--r-- 0/0 ./usr/share/zsh/vendor-completions/_runvault",
            "-rwxr-xr-x 0/0 ./usr/bin/runvault",
        ]
    );
    // No key and no vault in the package: nothing under /etc or /secrets.
    assert!(!listing.contains(" ./etc/") && !listing.contains(" ./secrets"));

    // The binary is the static one jobs mount: no program interpreter.
    let binary = output(
        Command::new("sh")
            .args([
                "-c",
                "dpkg-deb --fsys-tarfile \"$1\" | tar -xO ./usr/bin/runvault",
                "sh",
            ])
            .arg(&deb),
    )
    .stdout;
    assert!(
        !runvault::runner::install::needs_interpreter(&binary),
        "the packaged /usr/bin/runvault must be the static build"
    );
}

#[test]
fn long_lintian_reports_no_error_and_only_explained_warnings() {
    let test = "the lintian test";
    let Some(deb) = deb(test) else { return };
    if !have("lintian", "--version", test) {
        return;
    }
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(&deb)
        .output()
        .expect("spawn lintian");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lintian failed on `{}`:\n{report}{}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/packaging.md"))
            .unwrap();
    // An override hides a tag from the report: each needs its row too.
    let overrides = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/packaging/lintian-overrides"),
    )
    .unwrap();
    for line in overrides.lines().filter(|line| !line.starts_with('#')) {
        let tag = line
            .strip_prefix("runvault: ")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert!(
            doc.contains(&format!("| `{tag}` |")),
            "lintian override `{tag}` is not explained in docs/packaging.md's table"
        );
    }
    for line in report.lines() {
        assert!(!line.starts_with("E: "), "lintian error: {line}");
        if let Some(rest) = line.strip_prefix("W: runvault: ") {
            let tag = rest.split_whitespace().next().unwrap();
            assert!(
                doc.contains(&format!("| `{tag}` |")),
                "lintian warning `{tag}` is not explained in docs/packaging.md's table: {line}"
            );
        }
    }
}

/// A container of the Debian image, removed when dropped.
struct Debian(String);

impl Debian {
    fn start(deb: &Path, image: &str) -> Debian {
        let name = format!("runvault-package-test-{}", std::process::id());
        let dir = deb.parent().unwrap();
        output(
            Command::new("docker")
                .args(["run", "-d", "--network", "none", "--name", &name])
                .arg("-v")
                .arg(format!("{}:/pkg:ro", dir.display()))
                .args([image, "sleep", "infinity"]),
        );
        Debian(name)
    }

    /// Runs a bash script as root in the container: exit code and stdout and
    /// stderr together.
    fn sh(&self, script: &str) -> (i32, String) {
        let out = Command::new("docker")
            .args([
                "exec",
                &self.0,
                "bash",
                "-c",
                &format!("exec 2>&1; {script}"),
            ])
            .output()
            .expect("spawn docker exec");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Runs a script that must succeed; its output.
    #[track_caller]
    fn ok(&self, script: &str) -> String {
        let (code, out) = self.sh(script);
        assert_eq!(code, 0, "`{script}` failed in the Debian container:\n{out}");
        out
    }
}

impl Drop for Debian {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// The README's quick start, as tests/host/docs.rs runs it: the installed
/// `runvault` instead of a fresh `cargo build`.
fn quick_start() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|line| line.starts_with("cargo build --release && export RUNVAULT_DIR"))
        .expect("README's quick start");
    line.replace("cargo build --release && ", "")
        .replace("./target/release/runvault", "runvault")
}

#[test]
fn long_package_installs_runs_and_removes_on_debian() {
    let test = "the Debian install test";
    let Some(deb) = deb(test) else { return };
    if !crate::support::runner::engine(test) || !have("mmdebstrap", "--version", test) {
        return;
    }
    let debian = Debian::start(&deb, debian_image());
    let pkg = format!("/pkg/{}", deb.file_name().unwrap().to_string_lossy());

    // Install: the binary, /etc/runvault 0700 root and empty, no vault.
    debian.ok(&format!("dpkg -i {pkg}"));
    assert_eq!(
        debian.ok("runvault --version"),
        format!("runvault {VERSION} (vault format 1: reads and writes format 1)\n")
    );
    assert_eq!(debian.ok("dpkg-query -W -f '${Version}' runvault"), VERSION);
    assert_eq!(
        debian.ok("stat -c '%a %U %G' /etc/runvault"),
        "700 root root\n"
    );
    assert_eq!(
        debian.ok("ls -A /etc/runvault; ls -d /secrets 2>&1 || true"),
        "ls: cannot access '/secrets': No such file or directory\n"
    );

    // The man page, through man-db.
    assert_eq!(
        debian.ok("man -w runvault"),
        "/usr/share/man/man1/runvault.1.gz\n"
    );
    let page = debian.ok("MANWIDTH=200 man -P cat runvault");
    assert!(
        page.contains("runvault - Encrypted credentials for DataOps runner hosts"),
        "{page}"
    );
    // Every page the top page names is installed, and one reads.
    let named = debian.ok(
        "MANWIDTH=200 man -P cat runvault | grep -o 'runvault-[a-z-]*(1)' | sort -u \
         | sed 's/(1)$//' | while read page; do man -w \"$page\" >/dev/null || echo \"$page\"; done",
    );
    assert_eq!(named, "", "named but not installed");
    let page = debian.ok("MANWIDTH=200 man -P cat runvault-key-add");
    assert!(page.contains("runvault-key-add"), "{page}");

    // bash-completion loads the completion on demand and completes a command.
    assert_eq!(
        debian.ok(
            "source /usr/share/bash-completion/bash_completion; _completion_loader runvault; \
             COMP_WORDS=(runvault keyg); COMP_CWORD=1; COMP_LINE='runvault keyg'; COMP_POINT=13; \
             $(complete -p runvault | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p') runvault keyg runvault; \
             echo \"${COMPREPLY[*]}\""
        ),
        "keygen\n"
    );

    // The views unit is the one `view install-unit` writes, and not enabled.
    debian.ok(
        "runvault -q --dir /secrets view install-unit --unit-dir /tmp/unit --binary /usr/bin/runvault && \
         cmp /tmp/unit/runvault-views.service /usr/lib/systemd/system/runvault-views.service && \
         ! ls /etc/systemd/system/*.wants/runvault-views.service",
    );

    // The README's quick start, as a user with no privilege (whose home is
    // /tmp/quick), in a local directory: its rollback mark goes to the
    // user's own XDG state directory, with no warning about /var/lib, nor
    // about the views file in /etc/runvault (0700 root).
    let quick = debian.ok(&format!(
        "install -d -o nobody -g nogroup /tmp/quick && cd /tmp/quick && \
         setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/tmp/quick bash -c '{}'",
        quick_start()
    ));
    let lines: Vec<&str> = quick.lines().collect();
    // keygen, init and set say what they did, then list and get; no
    // warning about root's `/etc/runvault/views`, closed to this user.
    assert_eq!(lines.len(), 5, "{quick}");
    assert_eq!(lines[3], "SNOWFLAKE.TRANSFORM.PASSWORD", "{quick}");
    assert!(lines[4].len() >= 20, "a generated password: {quick}");
    let marks = debian.ok("stat -c '%U %a %n' /tmp/quick/.local/state/runvault /tmp/quick/.local/state/runvault/*.mark");
    let marks: Vec<&str> = marks.lines().collect();
    assert_eq!(marks.len(), 2, "{marks:?}");
    assert_eq!(marks[0], "nobody 700 /tmp/quick/.local/state/runvault");
    assert!(
        marks[1].starts_with("nobody 600 /tmp/quick/.local/state/runvault/"),
        "{marks:?}"
    );

    // The admin's own key, vault and view; then remove and purge.
    debian.ok(
        "runvault keygen && export RUNVAULT_KEY_FILE=/etc/runvault/vault.key && runvault init && \
         printf s3cret | runvault set DB.PASS --stdin && runvault view add /dev/shm/view",
    );
    let snapshot = "find /etc/runvault /secrets /dev/shm/view -printf '%p %m %u %s\\n' | sort; \
                    find /etc/runvault /secrets /dev/shm/view -type f -exec sha256sum {} + | sort";
    let before = debian.ok(snapshot);
    assert!(
        before.contains("/etc/runvault/vault.key 400 root"),
        "{before}"
    );
    assert!(
        before.contains("/dev/shm/view/vault.yml 600 root"),
        "{before}"
    );

    debian.ok("dpkg -r runvault");
    assert_eq!(debian.sh("command -v runvault").0, 1);
    assert_eq!(
        debian.ok(snapshot),
        before,
        "dpkg -r changed the admin's files"
    );
    assert_eq!(
        debian.ok("dpkg -P runvault | grep '^runvault: '"),
        "runvault: left /etc/runvault in place: it holds files the package did not make (machine keys, the views file)\n\
         runvault: left /secrets in place: the vault is the admin's, not the package's\n\
         runvault: purge deletes no key, vault, view directory or runner configuration; remove them by hand once no job needs them\n"
    );
    assert_eq!(
        debian.ok(snapshot),
        before,
        "dpkg -P changed the admin's files"
    );
    assert_eq!(debian.sh("dpkg -s runvault").0, 1);

    // On a host with nothing of the admin's, purge takes back the directory
    // postinst made, and nothing else.
    debian.ok(&format!("rm -r /etc/runvault /secrets && dpkg -i {pkg}"));
    assert_eq!(
        debian.ok("dpkg -P runvault | grep '^runvault: '"),
        "runvault: purge deletes no key, vault, view directory or runner configuration; remove them by hand once no job needs them\n"
    );
    assert_eq!(debian.sh("test -e /etc/runvault").0, 1);
}
