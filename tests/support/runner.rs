//! The runner side of the harness: [`Host`]'s config.toml and `runner`
//! commands, the Docker engine check, the fixture runner image and
//! containers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::Host;

/// The fixture image's tag (built by `fixtures/runner-image/build.sh`).
pub const IMAGE: &str = "runvault-fixture-runner:test";

impl Host {
    /// The runner's config directory (`--config-dir`).
    pub fn config_dir(&self) -> PathBuf {
        self.path("config")
    }

    /// `config_dir/config.toml`.
    pub fn config_toml(&self) -> PathBuf {
        self.config_dir().join("config.toml")
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
            self.dir().display()
        )
    }

    /// The `environment` `configure` gives every runner, as a TOML array.
    pub fn job_environment(&self) -> String {
        format!(
            "[\"RUNVAULT_DIR=/secrets\", \"RUNVAULT_KEY_FILE={}\"]",
            self.key_file().display()
        )
    }

    /// runvault's stderr when `config.toml` does not exist (the runner
    /// commands of [`Host::runner`] give `--config-dir`, so its hint does).
    /// `more`: the further options the hint carries (` --image I`).
    pub fn no_config_error(&self, name: &str, more: &str) -> String {
        format!(
            "runvault: error: `{}` does not exist; register the runner first with \
             `runvault runner register --name {name} --config-dir {}{more}`\n",
            self.config_toml().display(),
            self.config_dir().display()
        )
    }

    /// The last `` `runvault ...` `` command a message names, as the
    /// admin would paste it: run with this host's environment only (no
    /// option added).
    pub fn paste_hint(&self, message: &str) -> Command {
        let start = message
            .rfind("`runvault ")
            .expect("a hint naming a command")
            + 1;
        let hint = &message[start..];
        let hint = &hint[..hint.find('`').expect("the hint's closing backquote")];
        let mut cmd = self.bare_command();
        cmd.args(hint.split_whitespace().skip(1));
        cmd
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

    /// `runvault ARGS... --dir SECRETS --key-file KEY`: a vault command (or
    /// `doctor`) on this host, unlocked by its machine key.
    pub fn vault(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare_command();
        cmd.args(args)
            .arg("--dir")
            .arg(self.dir())
            .arg("--key-file")
            .arg(self.key_file());
        cmd
    }

    /// `runvault runner SUBCOMMAND --name NAME --config-dir DIR --dir SECRETS
    /// --key-file KEY [--bin-dir BIN] ARGS...` (`--bin-dir` for `configure`
    /// and `install`), so nothing lands in the real /etc or /opt.
    pub fn runner(&self, subcommand: &str, name: &str, args: &[&str]) -> Command {
        self.runner_in(&self.config_dir(), subcommand, name, args)
    }

    /// [`Host::runner`] with another config directory.
    pub fn runner_in(
        &self,
        config_dir: &Path,
        subcommand: &str,
        name: &str,
        args: &[&str],
    ) -> Command {
        let mut cmd = self.bare_command();
        cmd.args(["runner", subcommand, "--name", name, "--config-dir"])
            .arg(config_dir)
            .arg("--dir")
            .arg(self.dir())
            .arg("--key-file")
            .arg(self.key_file());
        if matches!(subcommand, "configure" | "install") {
            cmd.arg("--bin-dir").arg(self.bin_dir());
        }
        cmd.args(args);
        cmd
    }
}

/// Seconds since boot: the clock both the host and job containers read.
pub fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// Whether a Docker engine answers (and, if so, the fixture runner image is
/// built). Under `CI=true` there must be one; elsewhere a missing engine
/// makes the calling test print that it is skipped.
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
