//! Shared helpers of the runner tests: running the real binary in a clean
//! environment, a temp host root, the Docker engine check, the fixture
//! runner image and container cleanup.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[path = "../common/mod.rs"]
pub mod common;
#[allow(unused_imports)]
pub use common::{CHEAP_KDF, PASSPHRASE, Tmpfs, is_root, require_root, write_private};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The fixture image's tag (built by `fixtures/runner-image/build.sh`).
pub const IMAGE: &str = "runvault-fixture-runner:test";

/// A fresh host root: `secrets/`, `config/` and files live under it.
pub struct Host {
    pub root: tempfile::TempDir,
    containers: Vec<String>,
}

impl Host {
    pub fn new() -> Host {
        Host {
            root: tempfile::tempdir().expect("temp dir"),
            containers: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub fn config_dir(&self) -> PathBuf {
        self.path("config")
    }

    pub fn config_toml(&self) -> PathBuf {
        self.config_dir().join("config.toml")
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.path("secrets")
    }

    /// The machine key file every runner command is given (`--key-file`).
    pub fn key_file(&self) -> PathBuf {
        self.path("keys/vault.key")
    }

    /// The binary directory `configure` and `install` are given (`--bin-dir`).
    pub fn bin_dir(&self) -> PathBuf {
        self.path("bin")
    }

    /// The volumes `configure` gives every runner for jobs, as TOML strings:
    /// the secrets, key and binary directories, read-only.
    pub fn job_mounts(&self) -> String {
        let keys = self.path("keys").display().to_string();
        let bin = self.bin_dir().display().to_string();
        format!(
            "\"{}:/secrets:ro\", \"{keys}:{keys}:ro\", \"{bin}:{bin}:ro\"",
            self.secrets_dir().display()
        )
    }

    /// The `environment` `configure` gives every runner, as a TOML array.
    pub fn job_environment(&self) -> String {
        format!(
            "[\"RUNVAULT_DIR=/secrets\", \"RUNVAULT_KEY_FILE={}\"]",
            self.key_file().display()
        )
    }

    /// runvault's stderr when `config.toml` does not exist.
    pub fn no_config_error(&self) -> String {
        format!(
            "runvault: error: `{}` does not exist; register the runner first with \
             `runvault runner register`\n",
            self.config_toml().display()
        )
    }

    /// Copies a fixture to `config/config.toml` (mode 0600).
    pub fn with_config(&self, fixture: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(self.config_dir()).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/runner")
            .join(fixture);
        std::fs::copy(source, self.config_toml()).unwrap();
        std::fs::set_permissions(self.config_toml(), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }

    /// Writes a private file (mode 0600) and returns its path.
    pub fn private_file(&self, rel: &str, contents: &str) -> PathBuf {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(rel);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        path
    }

    /// A container name unique to this test and process, removed on drop.
    pub fn container(&mut self, test: &str) -> String {
        let name = format!("rvt-{test}-{}", std::process::id());
        remove_container(&name);
        self.containers.push(name.clone());
        name
    }

    /// `runvault ARGS... --dir SECRETS --key-file KEY`: a vault command (or
    /// `doctor`) on this host, unlocked by its machine key.
    pub fn vault(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        let (dir, key) = (self.secrets_dir(), self.key_file());
        all.extend([
            "--dir",
            dir.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ]);
        Run::of(&all)
    }

    /// `runvault runner SUBCOMMAND --name NAME --config-dir DIR --dir SECRETS
    /// --key-file KEY [--bin-dir BIN] ARGS...` (`--bin-dir` for `configure`
    /// and `install`), so nothing lands in the real /etc or /opt.
    pub fn runner(&self, subcommand: &str, name: &str, args: &[&str]) -> Run {
        self.runner_in(&self.config_dir(), subcommand, name, args)
    }

    /// [`Host::runner`] with another config directory.
    pub fn runner_in(&self, config_dir: &Path, subcommand: &str, name: &str, args: &[&str]) -> Run {
        let mut all = vec![
            "runner".to_string(),
            subcommand.to_string(),
            "--name".into(),
            name.into(),
            "--config-dir".into(),
            config_dir.display().to_string(),
            "--dir".into(),
            self.secrets_dir().display().to_string(),
            "--key-file".into(),
            self.key_file().display().to_string(),
        ];
        if matches!(subcommand, "configure" | "install") {
            all.extend(["--bin-dir".into(), self.bin_dir().display().to_string()]);
        }
        all.extend(args.iter().map(std::string::ToString::to_string));
        Run::new(&all)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for name in &self.containers {
            remove_container(name);
            remove_container(&format!("{name}-runvault-register"));
        }
    }
}

/// A runvault invocation with a clean environment.
pub struct Run {
    command: Command,
}

impl Run {
    pub fn new(args: &[String]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_runvault"));
        command.args(args);
        for var in [
            "REGISTRATION_TOKEN",
            "AGENT_NAME",
            "DOCKER_HOST",
            "DATAOPS_URL",
            "RUNVAULT_DIR",
            "RUNVAULT_KEY_FILE",
            "RUNVAULT_PASSPHRASE_FILE",
        ] {
            command.env_remove(var);
        }
        // Never the host's real list of plaintext views.
        command.env("RUNVAULT_VIEWS_FILE", "/nonexistent/runvault-test-views");
        // Never the host's real high-water marks either.
        command.env(
            "RUNVAULT_STATE_DIR",
            std::env::temp_dir().join("runvault-test-state"),
        );
        command.stdin(std::process::Stdio::null());
        Run { command }
    }

    /// [`Run::new`] from string slices.
    pub fn of(args: &[&str]) -> Run {
        Run::new(
            &args
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>(),
        )
    }

    pub fn env(mut self, key: &str, value: &str) -> Run {
        self.command.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Run {
        self.command.current_dir(dir);
        self
    }

    /// Starts it in the background with captured output.
    pub fn spawn(mut self) -> std::process::Child {
        self.command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn runvault")
    }

    pub fn output(mut self) -> Done {
        let output = self.command.output().expect("run runvault");
        Done(output)
    }

    /// Runs and asserts exit 0.
    pub fn ok(self) -> Done {
        let done = self.output();
        assert_eq!(done.code(), 0, "runvault failed:\n{}", done.describe());
        done
    }

    /// Runs and asserts the exit code.
    pub fn fails(self, code: i32) -> Done {
        let done = self.output();
        assert_eq!(
            done.code(),
            code,
            "unexpected exit code:\n{}",
            done.describe()
        );
        done
    }
}

/// A finished invocation.
pub struct Done(pub Output);

impl Done {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }
}

/// Waits for a spawned runvault, killing it (and failing) after `limit`.
pub fn wait_with_timeout(mut child: std::process::Child, limit: std::time::Duration) -> Done {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("runvault did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Done(child.wait_with_output().expect("collect output"))
}

/// Whether a Docker engine answers. Under `CI=true` there must be one; elsewhere
/// a missing engine makes the calling test print that it is skipped.
/// Seconds since boot: the clock both the host and job containers read.
pub fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

pub fn engine(test: &str) -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let available = *AVAILABLE.get_or_init(|| {
        let up = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .is_ok_and(|o| o.status.success());
        if up {
            build_image();
        }
        up
    });
    if !available {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Docker engine answers `docker info`; .ci/run must start dockerd"
        );
        // Straight to the process's stderr: the harness captures `eprintln!`
        // of passing tests, and a skip must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: no Docker engine (start dockerd to run it)"
        );
    }
    available
}

/// Builds the fixture image once (the script skips an up-to-date image).
fn build_image() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/runner-image/build.sh");
    let lock = std::fs::File::create(std::env::temp_dir().join("runvault-fixture-image.lock"))
        .expect("lock file");
    lock.lock().expect("lock");
    let output = Command::new("sh")
        .arg(&script)
        .arg(IMAGE)
        .output()
        .expect("run build.sh");
    assert!(
        output.status.success(),
        "building the fixture image failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `docker inspect NAME` as JSON (the first element).
pub fn inspect(name: &str) -> serde_json::Value {
    let output = Command::new("docker")
        .args(["inspect", name])
        .output()
        .expect("docker inspect");
    assert!(output.status.success(), "no container {name}");
    let mut all: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    all[0].take()
}

/// Whether a container of that name exists.
pub fn exists(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "--type", "container", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `docker rm -f NAME`, ignoring a missing container.
pub fn remove_container(name: &str) {
    let _ = Command::new("docker").args(["rm", "-f", name]).output();
}

/// `docker run -d --name NAME IMAGE` without runvault's label.
pub fn run_foreign(name: &str) {
    let output = Command::new("docker")
        .args(["run", "-d", "--name", name, IMAGE])
        .output()
        .unwrap();
    assert!(output.status.success());
}

/// The permission bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}
