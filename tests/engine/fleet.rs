//! LONG: the Ansible role of `docs/fleet/` run for real against three
//! hosts, as docs/fleet.md tells an admin to run it (issue 21).
//!
//! Each host is a container of its own (its own filesystem, its own age
//! identity, made by the role) from a Debian image with Python that
//! `mmdebstrap` builds offline ([`fleet_host_image`]); the controller is
//! this test's temp [`Host`]: the group's source vault, the admin's
//! passphrase file and the inventory. `ansible-playbook` is the pinned
//! ansible-core of `docs/fleet/requirements.txt` from the virtual
//! environment `.ci/run` makes (`target/ansible`, or `RUNVAULT_ANSIBLE`
//! naming its bin directory); it reaches the hosts with `docker exec`
//! (`tests/engine/fleet/docker_exec.py`; docs/fleet.md says why not the
//! community.docker collection). Every run is at `-vvv --diff`, and at the
//! end no value (nor the admin's passphrase) may appear in any of that
//! output, in any file on the controller but the admin's own, or in a
//! host's staging directory.
//!
//! Needs a Docker engine, `mmdebstrap` (once per machine, for the image)
//! and the Ansible environment: under `CI=true` a missing one fails the
//! test, elsewhere it is skipped with a message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::e2e_rotation::{reads, start_job, wait_for};
use super::fleet_engine::listed_wiring;
use crate::support::images::{busybox_image, fleet_host_image, have, output, static_binary};
use crate::support::runner::{IMAGE, uptime};
use crate::support::{Host, PASSPHRASE, Run, Runs};

/// The credential the tests rotate (the one the e2e job loop reads).
const ROTATED: &str = "SNOWFLAKE.TRANSFORM.PASSWORD";
/// The group's values before any rotation.
const VALUES: [(&str, &str); 3] = [
    ("DB.USER", "fleet-user-Q7kz"),
    ("DB.PASS", "fleet-db-pass-V3mx"),
    (ROTATED, "fleet-initial-Pw-R8ty"),
];
/// The registration token the role copies to each host for `runner
/// install` (the fixture runner image accepts any).
const REGISTRATION_TOKEN: &str = "GR1348941Fixture-Fleet-Role-Token-9e2b";
/// Where the hosts keep their identity and staging directory (the role's
/// defaults).
const IDENTITY: &str = "/etc/runvault/host.key";
const STAGING: &str = "/var/lib/runvault/incoming";
/// How soon a running job must see a value the playbook pushed.
const WITHIN: f64 = 1.0;

/// The bin directory of the pinned Ansible, or `None` (test skipped)
/// where it is missing and `CI` is not `true`.
fn ansible(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("RUNVAULT_ANSIBLE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ansible/bin"),
        PathBuf::from,
    );
    let playbook = dir.join("ansible-playbook");
    have(playbook.to_str().unwrap(), "--version", test).then_some(dir)
}

/// A controller and its hosts.
struct Fleet {
    /// The controller: `dir()` is the group's source vault, `pass_file()`
    /// the admin's passphrase; the inventory and Ansible's own files are
    /// under its root too. Its drop removes the host containers.
    controller: Host,
    /// Inventory name and container of each host.
    hosts: Vec<(String, String)>,
    ansible: PathBuf,
    /// Files of the admin's that hold a value on purpose (the new value of
    /// a rotation), outside the controller's tree.
    admin: tempfile::TempDir,
    /// Everything `ansible-playbook` printed, for the final scan.
    printed: Mutex<Vec<String>>,
    /// Every value the group ever held.
    values: Mutex<Vec<String>>,
    /// Each host's runner container, when the role installs runners
    /// (`runvault_runner_install`); empty otherwise.
    runners: Vec<String>,
}

impl Fleet {
    /// `count` new hosts (nothing on them but Debian and Python) and a
    /// controller with the group's source vault holding [`VALUES`], or
    /// `None` when a tool is missing outside CI. `alone`: the test times
    /// what a job sees ([`Host::alone`]). `runners`: the role installs a
    /// runner on each host ([`Fleet::start_host`] says how).
    fn new(test: &str, count: usize, alone: bool, runners: bool) -> Option<Fleet> {
        if !crate::support::runner::engine(test) {
            return None;
        }
        let ansible = ansible(test)?;
        let image = fleet_host_image_if(test)?;
        let binary = static_binary();
        let mut controller = if alone { Host::alone() } else { Host::new() };
        controller.init();
        for (path, value) in VALUES {
            controller.set(path, value.as_bytes());
        }
        let mut hosts = Vec::new();
        let mut runner_names = Vec::new();
        for n in 1..=count {
            let name = format!("host{n}");
            let container = controller.container(&format!("{test}-{name}"));
            hosts.push((name, container));
            if runners {
                runner_names.push(controller.container(&format!("{test}-runner{n}")));
            }
        }
        let fleet = Fleet {
            controller,
            hosts,
            ansible,
            admin: tempfile::tempdir().unwrap(),
            printed: Mutex::new(Vec::new()),
            values: Mutex::new(VALUES.iter().map(|(_, v)| v.to_string()).collect()),
            runners: runner_names,
        };
        for n in 1..=count {
            fleet.start_host(n, image);
        }
        fleet.write_inventory(&binary);
        Some(fleet)
    }

    /// Starts host `n`'s container from nothing: its `/secrets` and
    /// `/etc/runvault` are directories of the controller's temp tree (new
    /// and empty), so that a job container can mount them as a runner
    /// would; everything else is the container's own. With runners, the
    /// host also gets the machine's Docker socket, and the directories
    /// `runner install` hands to the engine (the vault, the identity's,
    /// the binary's and the runner's config directory) at the same path
    /// inside as outside: the engine resolves a bind mount on the machine,
    /// so the path the host names must be the machine's.
    fn start_host(&self, n: usize, image: &str) {
        let container = &self.hosts[n - 1].1;
        let mounts = self.mounts(n);
        for (dir, mode) in [
            ("secrets", 0o700),
            ("etc", 0o700),
            ("bin", 0o755),
            ("config", 0o700),
        ] {
            let _ = std::fs::remove_dir_all(mounts.join(dir));
            std::fs::create_dir_all(mounts.join(dir)).unwrap();
            // As runvault makes them (doctor checks).
            std::fs::set_permissions(
                mounts.join(dir),
                std::os::unix::fs::PermissionsExt::from_mode(mode),
            )
            .unwrap();
        }
        let mut run = Command::new("docker");
        run.args([
            "run",
            "-d",
            "--init",
            "--network",
            "none",
            "--name",
            container,
        ])
        .arg("-v")
        .arg(format!("{}:/secrets", mounts.join("secrets").display()))
        .arg("-v")
        .arg(format!("{}:/etc/runvault", mounts.join("etc").display()));
        if !self.runners.is_empty() {
            for dir in ["secrets", "etc", "bin", "config"] {
                let path = mounts.join(dir).display().to_string();
                run.arg("-v").arg(format!("{path}:{path}"));
            }
            run.args(["-v", "/var/run/docker.sock:/var/run/docker.sock"]);
        }
        output(run.args([image, "sleep", "infinity"]));
    }

    /// Where host `n`'s bind-mounted directories live.
    fn mounts(&self, n: usize) -> PathBuf {
        self.controller.path(&format!("hosts/host{n}"))
    }

    fn inventory(&self) -> PathBuf {
        self.controller.path("inventory.ini")
    }

    fn write_inventory(&self, binary: &Path) {
        let mut text = String::from("[runvault_hosts]\n");
        for (name, container) in &self.hosts {
            writeln!(text, "{name} ansible_host={container}").unwrap();
        }
        write!(
            text,
            "\n[runvault_hosts:vars]\n\
             ansible_connection=docker_exec\n\
             ansible_python_interpreter=/usr/bin/python3\n\
             runvault_source_dir={}\n\
             runvault_admin_passphrase_file={}\n\
             runvault_binary_src={}\n\
             runvault_controller_runvault={}\n\
             runvault_source_label=ansible:runvault_hosts@test-controller\n\
             runvault_runner_install={}\n",
            self.controller.dir().display(),
            self.controller.pass_file().display(),
            binary.display(),
            env!("CARGO_BIN_EXE_runvault"),
            !self.runners.is_empty(),
        )
        .unwrap();
        std::fs::write(self.inventory(), text).unwrap();
        if !self.runners.is_empty() {
            self.write_runner_vars();
        }
        std::fs::write(self.controller.path("ansible.cfg"), "[defaults]\n").unwrap();
    }

    /// Each host's variables for `runner install`: its runner's name, the
    /// same-path directories of [`Fleet::start_host`], the fixture runner
    /// image, and the registration token's file on the controller.
    fn write_runner_vars(&self) {
        let token = self.admin.path().join("registration-token");
        std::fs::write(&token, REGISTRATION_TOKEN).unwrap();
        // A secret too: never in Ansible's output or a file it writes.
        self.values.lock().unwrap().push(REGISTRATION_TOKEN.into());
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let dir = self.controller.path("host_vars");
        std::fs::create_dir_all(&dir).unwrap();
        for (n, runner) in (1..).zip(&self.runners) {
            let mounts = self.mounts(n);
            let vars = serde_json::json!({
                "runvault_dir": mounts.join("secrets"),
                "runvault_identity": mounts.join("etc/host.key"),
                "runvault_runner_name": runner,
                "runvault_runner_token_file": token,
                "runvault_runner_args": [
                    "--config-dir", mounts.join("config"),
                    "--bin-dir", mounts.join("bin"),
                    "--image", IMAGE,
                    "--no-local-config", "--no-agent-cache",
                ],
            });
            // JSON is YAML: host_vars/NAME.yml beside the inventory.
            std::fs::write(dir.join(format!("host{n}.yml")), vars.to_string()).unwrap();
        }
    }

    /// Runs `docs/fleet/PLAYBOOK` at `-vvv --diff` with `extra` variables
    /// (`-e` each); its output is kept for the final scan.
    fn playbook(&self, playbook: &str, extra: &[&str]) -> Run {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/fleet");
        let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/engine/fleet");
        // runvault on the controller gets the controller's isolated
        // environment (its layout file, views list and state directory).
        let isolated = self.controller.bare_command();
        let mut cmd = Command::new(self.ansible.join("ansible-playbook"));
        for (var, value) in isolated.get_envs() {
            match value {
                Some(value) => cmd.env(var, value),
                None => cmd.env_remove(var),
            };
        }
        cmd.current_dir(&docs)
            .env("ANSIBLE_CONNECTION_PLUGINS", plugins)
            .env("ANSIBLE_HOME", self.controller.path("ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", self.controller.path("ansible-tmp"))
            .env("ANSIBLE_RETRY_FILES_ENABLED", "false")
            .env("ANSIBLE_NOCOLOR", "1")
            // Not the user's ~/.ansible.cfg.
            .env("ANSIBLE_CONFIG", self.controller.path("ansible.cfg"))
            .args(["-vvv", "--diff", "-i"])
            .arg(self.inventory())
            .arg(docs.join(playbook));
        for var in extra {
            cmd.args(["-e", var]);
        }
        let run = cmd.run();
        self.printed
            .lock()
            .unwrap()
            .push(format!("{}{}", run.out(), run.stderr));
        run
    }

    /// [`Fleet::playbook`], which must succeed.
    #[track_caller]
    fn playbook_ok(&self, playbook: &str, extra: &[&str]) -> Run {
        let run = self.playbook(playbook, extra);
        assert_eq!(run.code, 0, "{playbook} failed:\n{}", tail(&run));
        run
    }

    /// The host runs `runvault ARGS` (its installed binary, its defaults:
    /// `/secrets`, `/var/lib/runvault`, its layout file).
    fn on(&self, n: usize, args: &[&str]) -> Run {
        Command::new("docker")
            .args(["exec", &self.hosts[n - 1].1, "/usr/local/bin/runvault"])
            .args(args)
            .run()
    }

    /// The host runs a shell script (as root).
    fn sh(&self, n: usize, script: &str) -> Run {
        Command::new("docker")
            .args(["exec", &self.hosts[n - 1].1, "sh", "-c", script])
            .run()
    }

    /// `get PATH` on host `n` through its identity.
    fn get(&self, n: usize, path: &str) -> Run {
        self.on(n, &["--identity", IDENTITY, "get", path])
    }

    /// Puts `files` (name, bytes) into a new staging directory `dir` on
    /// host `n`, as Ansible would ship them.
    fn stage(&self, n: usize, dir: &str, files: &[(&str, &[u8])]) {
        self.sh(n, &format!("rm -rf {dir} && mkdir -m 0700 -p {dir}"))
            .ok();
        for (name, bytes) in files {
            Command::new("docker")
                .args(["exec", "-i", &self.hosts[n - 1].1, "sh", "-c"])
                .arg(format!("cat > {dir}/{name}"))
                .run_in(bytes)
                .ok();
        }
    }

    /// SHA-256 of every file of host `n`'s vault and state directories:
    /// what a refused `receive` must not change.
    fn installed(&self, n: usize) -> String {
        self.sh(
            n,
            "find /secrets /var/lib/runvault -path /var/lib/runvault/incoming -prune -o -type f \
             -print | sort | xargs sha256sum",
        )
        .ok()
        .out()
    }

    /// The source vault's files as they are now.
    fn source(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.controller.vault_bytes(),
            std::fs::read(self.controller.salt_file()).unwrap(),
        )
    }

    /// Rotates [`ROTATED`] to `value` with `rotate.yml` (the new value in
    /// a file of the admin's on the controller).
    fn rotate(&self, value: &str) -> Run {
        self.values.lock().unwrap().push(value.to_string());
        let file = self.admin.path().join("new-value");
        std::fs::write(&file, value).unwrap();
        self.playbook(
            "rotate.yml",
            &[
                &format!("runvault_rotate_path={ROTATED}"),
                &format!("runvault_rotate_value_file={}", file.display()),
            ],
        )
    }

    /// Every host in `hosts` reads `value` at `path`.
    #[track_caller]
    fn all_read(&self, hosts: &[usize], path: &str, value: &str) {
        for &n in hosts {
            let run = self.get(n, path);
            assert_eq!(
                (run.code, run.out()),
                (0, value.to_string()),
                "host{n} `get {path}`:\n{}",
                run.describe()
            );
        }
    }

    /// No value of the group and not the admin's passphrase in anything
    /// Ansible printed, in any file on the controller (but the admin's
    /// passphrase file, which holds the passphrase), or in any host's
    /// staging directory.
    fn assert_no_plaintext(&self) {
        let mut secrets = self.values.lock().unwrap().clone();
        secrets.push(PASSPHRASE.to_string());
        let check = |what: &str, text: &[u8], secrets: &[String]| {
            let text = String::from_utf8_lossy(text);
            for secret in secrets {
                assert!(!text.contains(secret.as_str()), "{what} holds `{secret}`");
            }
        };
        for (i, printed) in self.printed.lock().unwrap().iter().enumerate() {
            assert!(printed.contains("PLAY RECAP"), "run {i} printed no recap");
            check(
                &format!("ansible-playbook run {i}"),
                printed.as_bytes(),
                &secrets,
            );
        }
        let mut files = 0;
        for entry in walk(self.controller.root.path()) {
            if entry == self.controller.pass_file()
                || entry.starts_with(self.mounts(1).parent().unwrap())
            {
                continue;
            }
            check(
                &entry.display().to_string(),
                &std::fs::read(&entry).unwrap(),
                &secrets,
            );
            files += 1;
        }
        assert!(files > 3, "the controller scan saw only {files} files");
        for n in 1..=self.hosts.len() {
            let staged = self
                .sh(n, &format!("cat {STAGING}/* 2>/dev/null || true"))
                .ok();
            check(
                &format!("host{n}'s staging directory"),
                &staged.stdout,
                &secrets,
            );
        }
    }
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files.extend(walk(&entry.path()));
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    files
}

/// The fleet hosts' image, or `None` (skipped) when it is not there and
/// `mmdebstrap` to make it is missing outside CI.
fn fleet_host_image_if(test: &str) -> Option<&'static str> {
    have("mmdebstrap", "--version", test).then(fleet_host_image)
}

/// The end of a playbook's output (its failure and recap).
fn tail(run: &Run) -> String {
    let out = run.out();
    let lines: Vec<&str> = out.lines().collect();
    format!(
        "exit {}\n{}\n--- stderr\n{}",
        run.code,
        lines[lines.len().saturating_sub(60)..].join("\n"),
        run.stderr
    )
}

/// `PLAY RECAP`: for each host, its `changed`, `unreachable` and `failed`
/// counts.
fn recap(run: &Run) -> Vec<(String, u32, u32, u32)> {
    let out = run.out();
    let at = out.rfind("PLAY RECAP").expect("a PLAY RECAP");
    out[at..]
        .lines()
        .skip(1)
        .filter(|line| line.contains(" : "))
        .map(|line| {
            let (host, counts) = line.split_once(" : ").unwrap();
            let count = |key: &str| -> u32 {
                counts
                    .split_whitespace()
                    .find_map(|c| c.strip_prefix(&format!("{key}=")))
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            (
                host.trim().to_string(),
                count("changed"),
                count("unreachable"),
                count("failed"),
            )
        })
        .collect()
}

#[test]
fn long_fleet_bootstrap_rotate_catch_up_and_remove_a_host() {
    let Some(mut fleet) = Fleet::new("fleet-a", 3, true, true) else {
        return;
    };
    busybox_image();

    // Bootstrap from nothing: each host gets the binary, an identity of
    // its own, a vault it can read; doctor (the role's last task) passes.
    let began = Instant::now();
    let first = fleet.playbook_ok("bootstrap.yml", &[]);
    let bootstrap = began.elapsed();
    for (host, changed, unreachable, failed) in recap(&first) {
        assert!(
            changed > 0 && unreachable == 0 && failed == 0,
            "{host}: {}",
            tail(&first)
        );
    }
    let mut recipients = Vec::new();
    for n in 1..=3 {
        for (path, value) in VALUES {
            fleet.all_read(&[n], path, value);
        }
        assert_eq!(
            fleet.sh(n, &format!("stat -c %a {IDENTITY}")).ok().out(),
            "400\n"
        );
        let recipient = fleet.on(n, &["keygen", "--recipient", IDENTITY]).ok().out();
        assert!(recipient.starts_with("age1"), "{recipient}");
        recipients.push(recipient.trim().to_string());
        fleet
            .on(n, &["--identity", IDENTITY, "doctor", "--json"])
            .ok();
    }
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 3, "each host has its own identity");

    // A second run changes nothing.
    let again = fleet.playbook_ok("bootstrap.yml", &[]);
    for (host, changed, _, failed) in recap(&again) {
        assert_eq!(
            (changed, failed),
            (0, 0),
            "{host} changed on a rerun:\n{}",
            tail(&again)
        );
    }

    // Each host runs its runner, installed by the role and wired to the
    // host's identity: no key file anywhere on the host.
    for (n, runner) in (1..).zip(&fleet.runners) {
        let state = crate::support::runner::inspect(runner);
        assert_eq!(state["State"]["Running"], true, "host{n}'s runner");
        let config = fleet.mounts(n).join("config/config.toml");
        let (_, environment) = listed_wiring(&config, runner);
        let identity = fleet.mounts(n).join("etc/host.key");
        assert_eq!(
            environment,
            [
                "RUNVAULT_DIR=/secrets".to_string(),
                format!("RUNVAULT_IDENTITY={}", identity.display())
            ]
        );
        let files = fleet.sh(n, "ls /etc/runvault").ok().out();
        assert!(!files.contains("vault.key"), "host{n}: {files}");
    }

    // A job on host 1 loops reading the credential, wired as its runner
    // wires jobs (the volumes and environment of its config.toml): the
    // host's /secrets, the identity's directory and the binary's,
    // read-only, and RUNVAULT_IDENTITY.
    let job = fleet.controller.container("fleet-a-job");
    let config = fleet.mounts(1).join("config/config.toml");
    let (volumes, environment) = listed_wiring(&config, &fleet.runners[0]);
    let bin_dir = fleet.mounts(1).join("bin");
    start_job(&job, &volumes, &environment, bin_dir.to_str().unwrap());
    wait_for(&job, VALUES[2].1);

    // Rotate on the controller: after one run every host reads the new
    // value, and the running job sees it within a second.
    let before = uptime();
    let began = Instant::now();
    let rotation = fleet.rotate("fleet-rotated-Pw-1-Zp4c");
    let rotate_time = began.elapsed();
    let after = uptime();
    assert_eq!(rotation.code, 0, "{}", tail(&rotation));
    fleet.all_read(&[1, 2, 3], ROTATED, "fleet-rotated-Pw-1-Zp4c");
    std::thread::sleep(Duration::from_secs_f64(WITHIN + 0.2));
    let seen = reads(&job);
    assert!(
        seen.iter().all(|r| r.ok),
        "a job read failed: {:?}",
        seen.iter().find(|r| !r.ok)
    );
    let first_new = seen
        .iter()
        .find(|r| r.value == "fleet-rotated-Pw-1-Zp4c")
        .expect("the job saw the rotated value");
    assert!(
        first_new.at >= before && first_new.at <= after + WITHIN,
        "the job first saw it at {} (rotation ran {before}..{after})",
        first_new.at
    );
    assert_eq!(crate::support::runner::inspect(&job)["RestartCount"], 0);

    // Host 2 is down during the next rotation; the run reports it
    // unreachable, the others get the value, and host 2 catches up on
    // the next run.
    output(Command::new("docker").args(["pause", &fleet.hosts[1].1]));
    let partial = fleet.rotate("fleet-rotated-Pw-2-Hq9w");
    assert_eq!(partial.code, 4, "{}", tail(&partial));
    let unreachable: Vec<String> = recap(&partial)
        .into_iter()
        .filter(|(_, _, unreachable, _)| *unreachable > 0)
        .map(|(host, ..)| host)
        .collect();
    assert_eq!(unreachable, ["host2"]);
    fleet.all_read(&[1, 3], ROTATED, "fleet-rotated-Pw-2-Hq9w");
    output(Command::new("docker").args(["unpause", &fleet.hosts[1].1]));
    fleet.all_read(&[2], ROTATED, "fleet-rotated-Pw-1-Zp4c");
    let catch_up = fleet.playbook_ok("push.yml", &[]);
    let changed: Vec<(String, u32)> = recap(&catch_up)
        .into_iter()
        .map(|(host, changed, ..)| (host, changed))
        .collect();
    assert_eq!(
        changed,
        [
            ("host1".into(), 0),
            ("host2".into(), 2),
            ("host3".into(), 0)
        ],
        "only host 2 had something to install (vault.yml and receive; the salt is the same)"
    );
    fleet.all_read(&[2], ROTATED, "fleet-rotated-Pw-2-Hq9w");

    // Where a rotation's time goes (docs/benchmarks.md): a push with
    // nothing new (Ansible's start, connections and modules; receive says
    // `unchanged` after a full verification), one receive alone, and one
    // `docker exec` alone.
    let timed = |f: &dyn Fn()| {
        let began = Instant::now();
        f();
        began.elapsed().as_secs_f64()
    };
    let push_nothing = timed(&|| {
        fleet.playbook_ok("push.yml", &[]);
    });
    let receive_alone = timed(&|| {
        fleet
            .on(1, &["--identity", IDENTITY, "receive", STAGING])
            .ok();
    });
    let exec_alone = timed(&|| {
        fleet.sh(1, "true").ok();
    });

    // Remove host 3: its slot goes, the data key is new, the others get
    // the vault and read everything; the new vault does not open with
    // host 3's identity (receive exits 4 there and installs nothing).
    let removed = fleet.playbook_ok("remove-host.yml", &["runvault_remove=host3"]);
    let names: Vec<String> = recap(&removed).into_iter().map(|(host, ..)| host).collect();
    assert_eq!(names, ["host1", "host2"]);
    assert!(
        removed.out().contains(ROTATED),
        "the report names what to rotate:\n{}",
        tail(&removed)
    );
    for (path, value) in &VALUES[..2] {
        fleet.all_read(&[1, 2], path, value);
    }
    fleet.all_read(&[1, 2], ROTATED, "fleet-rotated-Pw-2-Hq9w");
    let installed = fleet.installed(3);
    let (vault, salt) = fleet.source();
    fleet.stage(
        3,
        "/tmp/stale",
        &[("vault.yml", &vault), ("vault.salt", &salt)],
    );
    fleet
        .on(3, &["--identity", IDENTITY, "receive", "/tmp/stale"])
        .fails(4);
    assert_eq!(fleet.installed(3), installed);

    fleet.assert_no_plaintext();
    eprintln!(
        "fleet of 3: bootstrap {:.1} s; one rotation pushed to all {:.1} s; a push with \
         nothing new {push_nothing:.1} s; one receive (unchanged, verified) {receive_alone:.3} s \
         of which docker exec {exec_alone:.3} s",
        bootstrap.as_secs_f64(),
        rotate_time.as_secs_f64()
    );
}

#[test]
fn long_fleet_receive_refuses_replay_tampering_another_group_and_a_changed_identity() {
    let Some(fleet) = Fleet::new("fleet-b", 3, false, false) else {
        return;
    };
    fleet.playbook_ok("bootstrap.yml", &[]);
    let (old_vault, old_salt) = fleet.source();
    let rotated = fleet.rotate("fleet-rotated-Pw-B-Kd2n");
    assert_eq!(rotated.code, 0, "{}", tail(&rotated));
    fleet.all_read(&[1, 2, 3], ROTATED, "fleet-rotated-Pw-B-Kd2n");
    alternate_rotation_reaches_every_host(&fleet);

    // Replay: the older vault into receive exits 9 and changes nothing.
    let installed = fleet.installed(1);
    fleet.stage(
        1,
        "/tmp/replay",
        &[("vault.yml", &old_vault), ("vault.salt", &old_salt)],
    );
    let replay = fleet
        .on(1, &["--identity", IDENTITY, "receive", "/tmp/replay"])
        .fails(9);
    assert!(
        replay.stderr.contains("generation"),
        "{}",
        replay.describe()
    );
    assert_eq!(fleet.installed(1), installed);

    // Tampered: one byte of a value's ciphertext changed exits 5 and
    // changes nothing.
    let (vault, salt) = fleet.source();
    let mut tampered = vault.clone();
    let text = String::from_utf8(vault).unwrap();
    let at = text
        .find("PASSWORD:")
        .expect("the rotated path in vault.yml")
        + 40;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    fleet.stage(
        1,
        "/tmp/tampered",
        &[("vault.yml", &tampered), ("vault.salt", &salt)],
    );
    fleet
        .on(1, &["--identity", IDENTITY, "receive", "/tmp/tampered"])
        .fails(5);
    assert_eq!(fleet.installed(1), installed);

    // Another group's vault (its own vault_id; the same hosts have slots
    // in it) pushed by the role: every host refuses it, nothing changes.
    let other = Host::new();
    other.init();
    other.set(ROTATED, b"other-group-Pw-Ld5s");
    fleet
        .values
        .lock()
        .unwrap()
        .push("other-group-Pw-Ld5s".into());
    for n in 1..=3 {
        let recipient = fleet.on(n, &["keygen", "--recipient", IDENTITY]).ok().out();
        other
            .run(&["key", "add", "recipient", recipient.trim()])
            .ok();
    }
    let before: Vec<String> = (1..=3).map(|n| fleet.installed(n)).collect();
    let refused = fleet.playbook(
        "push.yml",
        &[&format!("runvault_source_dir={}", other.dir().display())],
    );
    assert_eq!(refused.code, 2, "{}", tail(&refused));
    let vault_id = |vault: &[u8]| -> String {
        let text = String::from_utf8_lossy(vault);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("vault_id:"))
            .unwrap();
        line.split('"').nth(1).unwrap().to_string()
    };
    for id in [
        vault_id(&fleet.controller.vault_bytes()),
        vault_id(&other.vault_bytes()),
    ] {
        assert!(
            refused.out().contains(&id),
            "the refusal names vault id {id}:\n{}",
            tail(&refused)
        );
    }
    for (host, _, _, failed) in recap(&refused) {
        assert_eq!(failed, 1, "{host} did not refuse:\n{}", tail(&refused));
    }
    assert_eq!(
        (1..=3).map(|n| fleet.installed(n)).collect::<Vec<_>>(),
        before
    );
    fleet.all_read(&[1, 2, 3], ROTATED, "fleet-rotated-Pw-B-Kd2n");

    // Host 3 is reinstalled (a new container: new filesystem, new
    // identity). Bootstrap refuses the changed identity; replace-host.yml
    // swaps its slot, rekeys, and it reads again; the old identity opens
    // nothing any more.
    let old_identity = fleet.sh(3, &format!("cat {IDENTITY}")).ok().stdout;
    let old_identity_file = fleet
        .controller
        .private_file("old-host3.key", &String::from_utf8(old_identity).unwrap());
    crate::support::runner::remove_container(&fleet.hosts[2].1);
    fleet.start_host(3, fleet_host_image());
    let refused = fleet.playbook("bootstrap.yml", &[]);
    assert_ne!(refused.code, 0, "{}", tail(&refused));
    assert!(
        refused.out().contains("host host3 has a new identity"),
        "{}",
        tail(&refused)
    );
    fleet.playbook_ok("replace-host.yml", &["runvault_replace=host3"]);
    fleet.all_read(&[1, 2, 3], ROTATED, "fleet-rotated-Pw-B-Kd2n");
    fleet
        .controller
        .command()
        .arg("--identity")
        .arg(&old_identity_file)
        .args(["get", ROTATED])
        .fails(4);
    // The copy of the old identity is the test's, not the role's.
    std::fs::remove_file(&old_identity_file).unwrap();

    fleet.assert_no_plaintext();
}

/// Rotation at the source (issue 24) on the controller's vault, then a
/// push (docs/rotation.md 7.4: promote, push, only then revoke): every
/// host reads the rotated account as current and the previous one as the
/// alternate. The "database" is a directory on the controller holding
/// each user's password; the hooks set and check it from their stdin.
fn alternate_rotation_reaches_every_host(fleet: &Fleet) {
    let source = fleet.admin.path().join("db-source");
    std::fs::create_dir(&source).unwrap();
    let accounts = [("app_a", "alt-a-Pw-Jn3w"), ("app_b", "alt-b-Pw-Tq8e")];
    for (user, password) in accounts {
        std::fs::write(source.join(user), password).unwrap();
        fleet.values.lock().unwrap().push(password.to_string());
    }
    for (path, value) in [
        ("APP_DB.USERNAME", accounts[0].0),
        ("APP_DB.PASSWORD", accounts[0].1),
        ("APP_DB.ALTERNATE.USERNAME", accounts[1].0),
        ("APP_DB.ALTERNATE.PASSWORD", accounts[1].1),
    ] {
        fleet.controller.set(path, value.as_bytes());
    }
    let user_file = format!("{}/\"$RUNVAULT_ROTATE_USER\"", source.display());
    let apply = format!("read -r new && printf %s \"$new\" > {user_file}");
    let test = format!("read -r new && [ \"$(cat {user_file})\" = \"$new\" ]");
    fleet
        .controller
        .run(&[
            "rotate",
            "APP_DB",
            "--alternate",
            "--apply",
            &apply,
            "--test",
            &test,
        ])
        .ok();
    let rotated = std::fs::read_to_string(source.join("app_b")).unwrap();
    assert!(rotated.len() >= 32 && rotated != accounts[1].1, "{rotated}");
    fleet.values.lock().unwrap().push(rotated.clone());

    fleet.playbook_ok("push.yml", &[]);
    fleet.all_read(&[1, 2, 3], "APP_DB.USERNAME", "app_b");
    fleet.all_read(&[1, 2, 3], "APP_DB.PASSWORD", &rotated);
    fleet.all_read(&[1, 2, 3], "APP_DB.ALTERNATE.USERNAME", "app_a");
    fleet.all_read(&[1, 2, 3], "APP_DB.ALTERNATE.PASSWORD", accounts[0].1);
    for n in 1..=3 {
        let pending = fleet.on(
            n,
            &[
                "--identity",
                IDENTITY,
                "get",
                "--pending",
                "APP_DB.PASSWORD",
            ],
        );
        assert_eq!(
            pending.code,
            3,
            "no pending version on host{n}: {}",
            pending.describe()
        );
    }
}
