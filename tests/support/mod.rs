//! The one harness of the integration tests (`tests/host.rs` and
//! `tests/engine.rs` both include it): a temp host layout ([`Host`]), the
//! one way to run the real `runvault` binary and check its exit code,
//! stdout and stderr ([`Runs`] on a [`Command`], giving a [`Run`]), and the
//! set-ups several tests share. The runner side (config.toml, the Docker
//! engine, containers) is in [`runner`], the job images in [`images`].
//!
//! Every child gets its own environment: no `RUNVAULT_*` variable of the
//! test process reaches it, and the views list and state directory are the
//! host's (or a harmless default), never the real ones. Tests share one
//! process and run on parallel threads, so none of them may set the test
//! process's environment, umask or working directory: a child is given its
//! own instead.

pub mod images;
pub mod runner;

use std::cell::Cell;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    /// Exit code (-1 when a signal ended it).
    pub code: i32,
    /// Standard output bytes.
    pub stdout: Vec<u8>,
    /// Standard error text.
    pub stderr: String,
}

impl Run {
    fn of(output: std::process::Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Standard output as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed:\n{}", self.describe());
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn fails(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            code,
            "unexpected exit code:\n{}",
            self.describe()
        );
        self
    }

    /// Exit code, stdout and stderr, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            self.out(),
            self.stderr
        )
    }
}

/// Running a prepared command (usually from [`runvault`] or
/// [`Host::command`]) to completion.
pub trait Runs {
    /// Runs it with no input (stdin is `/dev/null`).
    fn run(&mut self) -> Run;

    /// Runs it feeding `stdin` through a pipe (closed after it).
    fn run_in(&mut self, stdin: &[u8]) -> Run;

    /// Starts it in the background: stdout and stderr captured, no input.
    fn spawn_captured(&mut self) -> Child;

    /// Runs it with no input and asserts exit 0.
    #[track_caller]
    fn ok(&mut self) -> Run {
        self.run().ok()
    }

    /// Runs it with no input and asserts the exit code.
    #[track_caller]
    fn fails(&mut self, code: i32) -> Run {
        self.run().fails(code)
    }

    /// Runs it with no input; if it is still running after `limit` it is
    /// killed and the test fails (for files that could hang it).
    fn run_within(&mut self, limit: Duration) -> Run {
        wait_within(self.spawn_captured(), limit)
    }
}

impl Runs for Command {
    fn run(&mut self) -> Run {
        Run::of(
            self.stdin(Stdio::null())
                .output()
                .unwrap_or_else(|err| panic!("spawn {self:?}: {err}")),
        )
    }

    fn run_in(&mut self, stdin: &[u8]) -> Run {
        let mut child = self
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {self:?}: {err}"));
        // A command that fails before reading its input closes the pipe early.
        match child.stdin.take().unwrap().write_all(stdin) {
            Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                panic!("write stdin: {err}")
            }
            _ => {}
        }
        Run::of(child.wait_with_output().expect("wait runvault"))
    }

    fn spawn_captured(&mut self) -> Child {
        self.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {self:?}: {err}"))
    }
}

/// Waits for a started command, killing it (and failing) after `limit`.
pub fn wait_within(mut child: Child, limit: Duration) -> Run {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait runvault").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runvault did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Run::of(child.wait_with_output().expect("collect output"))
}

/// A views list and a layout file for one bare command: in this test
/// process's own scratch directory, new for every command, so that what one
/// command records (`init` as root records the layout) is never read by
/// another test and nothing is written outside the temp directory.
fn bare_host_files() -> (PathBuf, PathBuf) {
    static SCRATCH: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = SCRATCH
        .get_or_init(|| {
            tempfile::Builder::new()
                .prefix("runvault-test-bare-")
                .tempdir()
                .unwrap()
        })
        .path();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (
        dir.join(format!("views-{n}")),
        dir.join(format!("layout-{n}.toml")),
    )
}

/// The `runvault` binary under test with an environment of its own: none
/// of the test process's `RUNVAULT_*` variables, nor the runner's
/// registration variables or `DOCKER_HOST`; a views list, a state
/// directory and a layout file that are never the host's real ones.
pub fn runvault() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runvault"));
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("RUNVAULT_") {
            cmd.env_remove(var);
        }
    }
    for var in [
        "REGISTRATION_TOKEN",
        "AGENT_NAME",
        "DOCKER_HOST",
        "DATAOPS_URL",
    ] {
        cmd.env_remove(var);
    }
    let (views, layout) = bare_host_files();
    cmd.env("RUNVAULT_VIEWS_FILE", views)
        .env("RUNVAULT_CONFIG", layout)
        .env(
            "RUNVAULT_STATE_DIR",
            std::env::temp_dir().join("runvault-test-state"),
        );
    cmd
}

/// Who may hold a [`Host`] now: the tests of a binary share one process,
/// and a test that times what a job sees must not share the two cores
/// with the others (see [`Host::alone`]).
struct Turns {
    /// Hosts of ordinary tests alive now.
    hosts: usize,
    /// Tests waiting to run alone.
    alone_waiting: usize,
    /// Whether a test runs alone now.
    alone_running: bool,
}

static TURNS: Mutex<Turns> = Mutex::new(Turns {
    hosts: 0,
    alone_waiting: 0,
    alone_running: false,
});
static TURN_CHANGED: Condvar = Condvar::new();

thread_local! {
    /// Hosts this thread (this test) holds: a second one never waits.
    static HOSTS_HERE: Cell<usize> = const { Cell::new(0) };
}

/// Waits for this test's turn to hold a host (see [`Host::alone`]).
fn enter(alone: bool) {
    let mut turns = TURNS.lock().unwrap_or_else(PoisonError::into_inner);
    let wait = |turns| {
        TURN_CHANGED
            .wait(turns)
            .unwrap_or_else(PoisonError::into_inner)
    };
    if alone {
        assert_eq!(
            HOSTS_HERE.get(),
            0,
            "Host::alone must be the test's first host"
        );
        turns.alone_waiting += 1;
        while turns.alone_running || turns.hosts > 0 {
            turns = wait(turns);
        }
        turns.alone_waiting -= 1;
        turns.alone_running = true;
    } else {
        let nested = HOSTS_HERE.get() > 0;
        while !nested && (turns.alone_running || turns.alone_waiting > 0) {
            turns = wait(turns);
        }
        turns.hosts += 1;
    }
    HOSTS_HERE.set(HOSTS_HERE.get() + 1);
}

/// Ends what [`enter`] began.
fn leave(alone: bool) {
    let mut turns = TURNS.lock().unwrap_or_else(PoisonError::into_inner);
    if alone {
        turns.alone_running = false;
    } else {
        turns.hosts -= 1;
    }
    HOSTS_HERE.set(HOSTS_HERE.get() - 1);
    TURN_CHANGED.notify_all();
}

/// A temp host: `root/secrets` as the vault dir, a passphrase file, the
/// machine key's place, and the runner's directories (see [`runner`]).
/// Containers it names are removed when it drops.
pub struct Host {
    /// The temp directory everything of this host lives under.
    pub root: tempfile::TempDir,
    containers: Vec<String>,
    alone: bool,
}

impl Host {
    /// A new empty host layout with a 0600 passphrase file.
    pub fn new() -> Host {
        Host::enter(false)
    }

    /// [`Host::new`] for a test that must run alone because it times what a
    /// job sees (rotation within a second): it waits until no other test
    /// holds a host, and others wait while it runs. It must be the test's
    /// first host; the test's further hosts do not wait.
    pub fn alone() -> Host {
        Host::enter(true)
    }

    fn enter(alone: bool) -> Host {
        let root = tempfile::tempdir().expect("temp dir");
        enter(alone);
        let host = Host {
            root,
            containers: Vec::new(),
            alone,
        };
        write_private(&host.pass_file(), format!("{PASSPHRASE}\n").as_bytes());
        host
    }

    /// `root/REL`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// The vault directory.
    pub fn dir(&self) -> PathBuf {
        self.path("secrets")
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
        self.path("passphrase")
    }

    /// The machine key file (created by [`Host::keygen`]; the one every
    /// runner command is given).
    pub fn key_file(&self) -> PathBuf {
        self.path("keys/vault.key")
    }

    /// This host's list of plaintext views (never the real /etc/runvault/views).
    pub fn views_file(&self) -> PathBuf {
        self.path("views")
    }

    /// This host's state directory (high-water marks; never the real
    /// /var/lib/runvault).
    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// Writes a private file (mode 0600, replacing one there) and returns
    /// its path.
    pub fn private_file(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.path(rel);
        write_private(&path, contents.as_bytes());
        path
    }

    /// This host's layout file (`RUNVAULT_CONFIG`).
    pub fn layout_file(&self) -> PathBuf {
        self.path("runvault.toml")
    }

    /// [`runvault`] with this host's views list, state directory and
    /// layout file.
    pub fn bare_command(&self) -> Command {
        let mut cmd = runvault();
        cmd.env("RUNVAULT_VIEWS_FILE", self.views_file())
            .env("RUNVAULT_STATE_DIR", self.state_dir())
            .env("RUNVAULT_CONFIG", self.layout_file());
        cmd
    }

    /// [`Host::bare_command`] with `--dir` set to the vault dir.
    pub fn command(&self) -> Command {
        let mut cmd = self.bare_command();
        cmd.arg("--dir").arg(self.dir());
        cmd
    }

    /// Runs runvault with `args` (no secret options added), feeding `stdin`.
    pub fn run_raw(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.command().args(args).run_in(stdin)
    }

    /// Runs runvault unlocked by the passphrase file.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_in(args, b"")
    }

    /// Runs runvault unlocked by the passphrase file, feeding `stdin`.
    pub fn run_in(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.command()
            .arg("--passphrase-file")
            .arg(self.pass_file())
            .args(args)
            .run_in(stdin)
    }

    /// Runs runvault unlocked by the key file.
    pub fn run_key(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.command()
            .arg("--key-file")
            .arg(self.key_file())
            .args(args)
            .run_in(stdin)
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
        self.command()
            .arg("--key-file")
            .arg(self.key_file())
            .arg("--passphrase-file")
            .arg(self.pass_file())
            .arg("init")
            .args(CHEAP_KDF)
            .run_in(b"")
            .ok();
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

    /// Every file of the vault directory and of the state directory, with
    /// its bytes and mode, sorted (to prove a refused command changed
    /// nothing).
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>, u32)> {
        let mut files = Vec::new();
        for dir in [self.dir(), self.state_dir()] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                files.push((path.clone(), std::fs::read(&path).unwrap(), mode(&path)));
            }
        }
        files.sort();
        files
    }

    /// A container name unique to this test and process, removed (with its
    /// registration helper) when the host drops.
    pub fn container(&mut self, test: &str) -> String {
        let name = format!("rvt-{test}-{}", std::process::id());
        runner::remove_container(&name);
        self.containers.push(name.clone());
        name
    }
}

impl Default for Host {
    fn default() -> Host {
        Host::new()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for name in &self.containers {
            runner::remove_container(name);
            runner::remove_container(&format!("{name}-runvault-register"));
        }
        leave(self.alone);
    }
}

/// A host with a key file, a passphrase slot and a few job credentials:
/// `DB.USER`=alice, `DB.PASS`=`p@ss w0rd)`, `SNOWFLAKE.TRANSFORM.{USERNAME,PASSWORD}`.
pub fn job_host() -> Host {
    let host = Host::new();
    host.init_with_key_and_passphrase();
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

/// The uid (and gid) of "another local user" in the ownership tests.
pub const OTHER_UID: u32 = 65534;

/// Gives `path` to [`OTHER_UID`] (owner and group), as if another local
/// user had made it in advance (root only: see [`require_root`]).
pub fn give_to_other_user(path: &Path) {
    std::os::unix::fs::chown(path, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
}

/// A path's owner, mode and (for a file) bytes, to check that a refused
/// command changed nothing.
pub fn ownership(path: &Path) -> (u32, u32, Vec<u8>) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    let bytes = if meta.is_file() {
        std::fs::read(path).unwrap()
    } else {
        Vec::new()
    };
    (meta.uid(), meta.mode() & 0o7777, bytes)
}

/// runvault's error for a `what` (e.g. "output file") at `path` that
/// [`OTHER_UID`] owns, when root runs it.
pub fn owned_by_other_user_error(what: &str, path: &Path) -> String {
    format!(
        "runvault: error: {what} `{}` is owned by uid 65534, not by you (uid 0); \
         refusing to write into it, since its owner could read or replace what runvault \
         writes (remove it, or `chown` it to you)\n",
        path.display()
    )
}

/// The findings of `check` in a `doctor --json` report, as (status,
/// message, hint); fails the test when there is none.
pub fn findings(report: &serde_json::Value, check: &str) -> Vec<(String, String, String)> {
    let found: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .map(|f| {
            let text = |key: &str| f[key].as_str().unwrap_or_default().to_string();
            (text("status"), text("message"), text("hint"))
        })
        .collect();
    assert!(!found.is_empty(), "no check {check} in {report}");
    found
}

/// The status of the first finding of `check` in a `doctor --json` report.
pub fn status_of(report: &serde_json::Value, check: &str) -> String {
    findings(report, check).swap_remove(0).0
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

/// `setpriv` arguments that run what follows as user `nobody`.
pub const AS_NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// `cmd` (its program, arguments and environment) run as user `nobody`
/// (root only: see [`require_root`]).
pub fn as_nobody(cmd: &Command) -> Command {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(AS_NOBODY)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    copy_env(cmd, &mut wrapped);
    wrapped
}

/// [`as_nobody`] on a host laid out as the Debian package leaves it:
/// `/etc/runvault` 0700 root, holding a views file (0600, `views`) that
/// `nobody` may not read. Only `cmd` sees that `/etc`: it runs in a mount
/// namespace of its own, where `/etc` is overlaid in RAM (root only).
pub fn as_nobody_beside_etc_runvault(cmd: &Command, views: &str) -> Command {
    const SCRIPT: &str = r#"set -e
views=$1; shift
t=$(mktemp -d)
mount -t tmpfs tmpfs "$t"
mkdir "$t/upper" "$t/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$t/upper,workdir=$t/work" /etc
mkdir -p /etc/runvault
chmod 700 /etc/runvault
printf '%s' "$views" > /etc/runvault/views
chmod 600 /etc/runvault/views
set +e
setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
rc=$?
umount /etc && umount "$t" && rmdir "$t"
exit $rc
"#;
    let mut wrapped = Command::new("unshare");
    wrapped
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "sh",
            views,
        ])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    copy_env(cmd, &mut wrapped);
    wrapped
}

/// Gives `to` the environment changes made on `from`.
fn copy_env(from: &Command, to: &mut Command) {
    for (key, value) in from.get_envs() {
        match value {
            Some(value) => to.env(key, value),
            None => to.env_remove(key),
        };
    }
}

/// A tmpfs mounted at `dir` with mount `options`, unmounted on drop
/// (root only: see [`require_root`]).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts it, creating `dir` first.
    pub fn mount(dir: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
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
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Waits until `child` is stopped (`T`, field 3 of /proc/PID/stat): it
/// reached its `RUNVAULT_STOP_AT` point, named `step` in the failure.
pub fn wait_stopped(child: &mut Child, step: &str) {
    let stat = format!("/proc/{}/stat", child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&stat)
        .ok()
        .and_then(|s| s.rsplit(") ").next().map(|rest| rest.starts_with('T')))
        != Some(true)
    {
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "never stopped at {step}: {exited:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A command sent SIGKILL at a random moment: `true` if the kill landed
/// while it ran, `false` if it had finished first (successfully: one that
/// failed on its own fails the test).
pub fn killed_mid_command(status: std::process::ExitStatus, round: usize) -> bool {
    assert!(
        status.success() || status.code().is_none(),
        "round {round}: exited with {status} before the kill"
    );
    !status.success()
}

impl Host {
    /// The writers' temp files (`*.rvtmp`, `*.next`) left in the vault
    /// directory.
    pub fn stray_temp_files(&self) -> Vec<String> {
        (self.dir_listing().into_iter())
            .filter(|name| name.ends_with(".rvtmp") || name.ends_with(".next"))
            .collect()
    }
}
