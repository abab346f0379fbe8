//! Test harness: a temp host layout and a way to run the real `runvault`
//! binary in it, as an admin or a job would.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Cheap Argon2id parameters so tests stay fast (one test keeps the defaults).
pub const CHEAP_KDF: [&str; 6] = [
    "--kdf-memory",
    "8",
    "--kdf-iterations",
    "1",
    "--kdf-parallelism",
    "1",
];

/// The passphrase written to every test host's passphrase file.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// What a finished command left.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output bytes.
    pub stdout: Vec<u8>,
    /// Standard error text.
    pub stderr: String,
}

impl Run {
    /// Standard output as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed: {}", self.stderr);
        self
    }
}

/// A temp host: `root/secrets` as the vault dir, a passphrase file and a key.
pub struct Host {
    pub root: tempfile::TempDir,
}

impl Host {
    /// A new empty host layout with a 0600 passphrase file.
    pub fn new() -> Host {
        let root = tempfile::tempdir().expect("temp dir");
        let host = Host { root };
        write_private(&host.pass_file(), format!("{PASSPHRASE}\n").as_bytes());
        host
    }

    /// The vault directory.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("secrets")
    }

    /// `dir/vault.yml`.
    pub fn vault_file(&self) -> PathBuf {
        self.dir().join("vault.yml")
    }

    /// `dir/vault.salt`.
    pub fn salt_file(&self) -> PathBuf {
        self.dir().join("vault.salt")
    }

    /// The passphrase file.
    pub fn pass_file(&self) -> PathBuf {
        self.root.path().join("passphrase")
    }

    /// The key file path (created by [`Host::keygen`]).
    pub fn key_file(&self) -> PathBuf {
        self.root.path().join("keys").join("vault.key")
    }

    /// This host's list of plaintext views (never the real /etc/runvault/views).
    pub fn views_file(&self) -> PathBuf {
        self.root.path().join("views")
    }

    /// This host's state directory (high-water marks; never the real
    /// /var/lib/runvault).
    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    /// A bare command with the vault dir set and no RUNVAULT_* from outside.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runvault"));
        cmd.env_remove("RUNVAULT_DIR")
            .env_remove("RUNVAULT_PASSPHRASE_FILE")
            .env_remove("RUNVAULT_KEY_FILE")
            .env("RUNVAULT_VIEWS_FILE", self.views_file())
            .env("RUNVAULT_STATE_DIR", self.state_dir())
            .arg("--dir")
            .arg(self.dir());
        cmd
    }

    /// Runs runvault with `args` (no secret options added), feeding `stdin`.
    pub fn run_raw(&self, args: &[&str], stdin: &[u8]) -> Run {
        run(self.command().args(args), stdin)
    }

    /// Runs runvault unlocked by the passphrase file.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_in(args, b"")
    }

    /// Runs runvault unlocked by the passphrase file, feeding `stdin`.
    pub fn run_in(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut cmd = self.command();
        cmd.arg("--passphrase-file")
            .arg(self.pass_file())
            .args(args);
        run(&mut cmd, stdin)
    }

    /// Runs runvault unlocked by the key file.
    pub fn run_key(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut cmd = self.command();
        cmd.arg("--key-file").arg(self.key_file()).args(args);
        run(&mut cmd, stdin)
    }

    /// Creates the key file with `runvault keygen`.
    pub fn keygen(&self) {
        self.run_raw(&["keygen", self.key_file().to_str().unwrap()], b"")
            .ok();
    }

    /// `init` with the passphrase file and cheap KDF parameters.
    pub fn init(&self) {
        let mut args = vec!["init"];
        args.extend(CHEAP_KDF);
        self.run(&args).ok();
    }

    /// Creates the key file, then `init` with both the key file and the
    /// passphrase file (slot 1: key file, slot 2: passphrase), cheap KDF.
    pub fn init_with_key_and_passphrase(&self) {
        self.keygen();
        let mut cmd = self.command();
        cmd.arg("--key-file")
            .arg(self.key_file())
            .arg("--passphrase-file")
            .arg(self.pass_file())
            .arg("init");
        run(cmd.args(CHEAP_KDF), b"").ok();
    }

    /// `set PATH --stdin` with `value`.
    pub fn set(&self, path: &str, value: &[u8]) {
        self.run_in(&["set", path, "--stdin"], value).ok();
    }

    /// `get PATH`'s exact stdout.
    pub fn get(&self, path: &str) -> Vec<u8> {
        self.run(&["get", path]).ok().stdout
    }

    /// The vault file's bytes.
    pub fn vault_bytes(&self) -> Vec<u8> {
        std::fs::read(self.vault_file()).expect("vault.yml")
    }

    /// Names in the vault dir, sorted.
    pub fn dir_listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir())
            .expect("vault dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Runs a prepared command to completion.
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Run {
    let output = run_output(cmd, stdin);
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a prepared command to completion, its output as bytes.
pub fn run_output(cmd: &mut Command, stdin: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn runvault");
    // A command that fails before reading its input closes the pipe early.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {err}"),
        _ => {}
    }
    child.wait_with_output().expect("wait runvault")
}

/// Runs a prepared command with no input; a command still running after
/// `limit` is killed and fails the test (for files that could hang it).
pub fn run_within(cmd: &mut Command, limit: std::time::Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn runvault");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait runvault").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runvault did not finish within {limit:?}: {cmd:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collect output");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Replaces `path` (if it exists) with a FIFO, mode 0600.
pub fn plant_fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let made = Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Writes a file with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The mode bits of a path.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The repository's fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Whether the tests run as root (mount and chown tests need it).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// Whether a test that needs root may run. Under `CI=true` it must (CI runs
/// as root), so not being root there is a failure; elsewhere the test is
/// skipped with the reason printed.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root, and CI=true requires it to run"
    );
    eprintln!("skipping {test}: it needs root (mount, setpriv)");
    false
}

/// A host with a key file, a passphrase slot and a few job credentials:
/// `DB.USER`=alice, `DB.PASS`=`p@ss w0rd)`, `SNOWFLAKE.TRANSFORM.{USERNAME,PASSWORD}`.
pub fn job_host() -> Host {
    let host = Host::new();
    host.keygen();
    let mut args = vec!["init"];
    args.extend(CHEAP_KDF);
    let mut cmd = host.command();
    cmd.arg("--key-file")
        .arg(host.key_file())
        .arg("--passphrase-file")
        .arg(host.pass_file())
        .args(&args);
    run(&mut cmd, b"").ok();
    for (path, value) in [
        ("DB.USER", "alice"),
        ("DB.PASS", "p@ss w0rd)"),
        ("SNOWFLAKE.TRANSFORM.USERNAME", "transformer"),
        ("SNOWFLAKE.TRANSFORM.PASSWORD", "tr-secret"),
    ] {
        host.run_key(&["set", path, "--stdin"], value.as_bytes())
            .ok();
    }
    host
}

/// A tmpfs mounted at `dir` with mount `options`, unmounted on drop
/// (root only: see [`require_root`]).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts it, creating `dir` first.
    pub fn mount(dir: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
