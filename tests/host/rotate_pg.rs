//! `runvault rotate` against a real PostgreSQL (issue 24), with the hook
//! scripts of docs/rotation/ used verbatim: a throwaway cluster on
//! loopback (initdb as `postgres`, its own port and socket directory in a
//! temp dir, stopped when the test ends, even on a panic); jobs running
//! `runvault exec -- psql` on a read-only view of the vault directory, one
//! started every 20 ms (overlapping, at most 8 in flight; the pace reached
//! is printed), while the credential is rotated with alternating users (no
//! failed connection, every rotation seen) and as a single user (the
//! failure window, measured);
//! `kill -9` at every step of a rotation; and no value in any command
//! line while the hooks run.
//!
//! Needs root (initdb runs as `postgres` through `runuser`, the jobs' view
//! is a bind mount) and PostgreSQL's server binaries; `.ci/run` installs
//! them. Under `CI=true` a missing PostgreSQL fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Host, Run, require_root, wait_stopped};

/// The admin role initdb creates (trusted on the socket only).
const ADMIN: &str = "rotator";

/// PostgreSQL's server binaries (`initdb`, `pg_ctl`): Debian keeps them in
/// /usr/lib/postgresql/VERSION/bin. `None` (and the test is skipped) when
/// they are missing, unless `CI=true`, where that fails the test.
fn pg_bin(test: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    let have_psql = Command::new("psql").arg("--version").output().is_ok();
    match found.pop() {
        Some(bin) if have_psql => Some(bin),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test} needs PostgreSQL (apt-get install postgresql), and CI=true requires it"
            );
            eprintln!("skipping {test}: PostgreSQL is not installed (apt-get install postgresql)");
            None
        }
    }
}

/// A throwaway cluster, stopped on drop.
struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Pg {
    /// initdb as `postgres` and start on 127.0.0.1 and a socket in the
    /// temp dir; `None` when the test cannot run here (see [`pg_bin`]).
    fn start(test: &str) -> Option<Pg> {
        if !require_root(test) {
            return None;
        }
        let bin = pg_bin(test)?;
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg { dir, bin, port };
        let postgres = |name: &str| {
            let id = Command::new("id").args(["-u", name]).output().unwrap();
            String::from_utf8(id.stdout)
                .unwrap()
                .trim()
                .parse::<u32>()
                .unwrap()
        };
        std::os::unix::fs::chown(pg.dir.path(), Some(postgres("postgres")), None).unwrap();
        pg.as_postgres(
            "initdb",
            &[
                "-D",
                pg.data().to_str().unwrap(),
                "-U",
                ADMIN,
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
            ],
        );
        // The admin is trusted on the socket only; every other role, and
        // every TCP connection, proves its password.
        std::fs::write(
            pg.data().join("pg_hba.conf"),
            format!(
                "local all {ADMIN} trust\nlocal all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            pg.dir.path().display(),
            port
        );
        pg.as_postgres(
            "pg_ctl",
            &[
                "-D",
                pg.data().to_str().unwrap(),
                "-l",
                pg.dir.path().join("log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, program: &str, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The libpq variables of the admin connection, as a hook command
    /// line sets them.
    fn admin_vars(&self) -> String {
        format!(
            "PGHOST={} PGPORT={} PGUSER={ADMIN} PGDATABASE=postgres",
            self.dir.path().display(),
            self.port
        )
    }

    /// Runs SQL as the admin (test set-up only).
    fn admin(&self, sql: &str) {
        let out = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                ADMIN,
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether the server takes `password` for `role` over TCP.
    fn accepts(&self, role: &str, password: &[u8]) -> bool {
        Command::new("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", role, "-d", "postgres", "-c", "SELECT 1"])
            .env("PGPASSWORD", std::ffi::OsStr::from_bytes_compat(password))
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .status
            .success()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `OsStr` from bytes (the test's values are ASCII).
trait FromBytesCompat {
    fn from_bytes_compat(bytes: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(bytes: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(bytes)
    }
}

/// The hook scripts, verbatim from docs/rotation/.
fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/rotation")
        .join(name)
        .display()
        .to_string()
}

/// `--apply`/`--revert` and `--test` command lines for `role` (none with
/// `--alternate`, where runvault names the account).
fn hooks(pg: &Pg, role: Option<&str>) -> (String, String) {
    let role = role.map_or(String::new(), |role| format!(" PG_ROLE={role}"));
    let vars = pg.admin_vars();
    (
        format!("{vars}{role} sh {}", script("postgres-apply.sh")),
        format!("{vars}{role} sh {}", script("postgres-test.sh")),
    )
}

/// A vault with a key file (what `rotate` and the jobs use) and the
/// roles in it.
fn vault_host(pg: &Pg, alternate: bool) -> Host {
    let host = Host::alone();
    host.init_with_key_and_passphrase();
    let values: &[(&str, &str)] = if alternate {
        &[
            ("PG.USERNAME", "app_blue"),
            ("PG.PASSWORD", "blue-initial-0"),
            ("PG.ALTERNATE.USERNAME", "app_green"),
            ("PG.ALTERNATE.PASSWORD", "green-initial-0"),
        ]
    } else {
        &[
            ("PG.USERNAME", "app_single"),
            ("PG.PASSWORD", "single-initial-0"),
        ]
    };
    for (path, value) in values {
        host.run_key(&["set", path, "--stdin"], value.as_bytes())
            .ok();
    }
    for pair in values.chunks(2) {
        pg.admin(&format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}'",
            pair[0].1, pair[1].1
        ));
    }
    host
}

fn rotate(host: &Host, args: &[&str], stdin: &[u8]) -> Run {
    host.run_key(&[&["rotate"][..], args].concat(), stdin)
}

/// One job of the loop: when it started and ended, whether it connected,
/// and as whom.
#[derive(Debug, Clone)]
struct Job {
    start: Instant,
    ok: bool,
    user: String,
}

/// How often a job starts (the pace).
const JOB_EVERY: Duration = Duration::from_millis(20);
/// Jobs in flight at most: a job (a debug `runvault exec` and `psql`)
/// takes longer than [`JOB_EVERY`], so they overlap; at the cap a start is
/// skipped and counted, and the pace reported is the one reached.
const MAX_JOBS_IN_FLIGHT: usize = 8;

/// Jobs as a runner runs them: `runvault exec -- psql`, one started every
/// [`JOB_EVERY`] (overlapping, up to [`MAX_JOBS_IN_FLIGHT`]), with the key
/// file and a read-only bind mount of the vault directory, until finished
/// or dropped (which waits for the jobs in flight: none is left behind).
struct JobLoop {
    stop: Arc<AtomicBool>,
    jobs: Arc<Mutex<Vec<Job>>>,
    skipped: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
    _view: ReadOnlyView,
}

/// A read-only bind mount of the vault directory, as a job's container
/// sees it; unmounted on drop.
struct ReadOnlyView(PathBuf);

impl ReadOnlyView {
    fn new(source: &Path, target: &Path) -> ReadOnlyView {
        std::fs::create_dir_all(target).unwrap();
        let mount = |args: &[&str]| {
            assert!(
                Command::new("mount").args(args).status().unwrap().success(),
                "mount {args:?}"
            );
        };
        mount(&["--bind", source.to_str().unwrap(), target.to_str().unwrap()]);
        let view = ReadOnlyView(target.to_path_buf());
        mount(&["-o", "remount,ro,bind", target.to_str().unwrap()]);
        view
    }
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

impl JobLoop {
    fn start(host: &Host, pg: &Pg) -> JobLoop {
        let view = ReadOnlyView::new(&host.dir(), &host.path("job-view"));
        let mut job = host.bare_command();
        job.arg("--dir")
            .arg(&view.0)
            .arg("--key-file")
            .arg(host.key_file())
            .args(["exec", "--", "psql", "-X", "-At", "-h", "127.0.0.1"])
            .args([
                "-p",
                &pg.port.to_string(),
                "-d",
                "postgres",
                "-c",
                "SELECT current_user",
            ])
            .env("PGUSER", "DATAOPS_VAULT(PG.USERNAME)")
            .env("PGPASSWORD", "DATAOPS_VAULT(PG.PASSWORD)")
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let stop = Arc::new(AtomicBool::new(false));
        let jobs = Arc::new(Mutex::new(Vec::new()));
        let skipped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = {
            let (stop, jobs, skipped) = (stop.clone(), jobs.clone(), skipped.clone());
            std::thread::spawn(move || {
                let mut in_flight: Vec<(std::process::Child, Instant)> = Vec::new();
                // Records a job that has exited (its stdout is a line, well
                // within the pipe's buffer, so it is read after the exit).
                let record = |mut child: std::process::Child, start, ok| {
                    let mut user = String::new();
                    let mut stdout = child.stdout.take().unwrap();
                    std::io::Read::read_to_string(&mut stdout, &mut user).unwrap();
                    jobs.lock().unwrap().push(Job {
                        start,
                        ok,
                        user: user.trim().to_owned(),
                    });
                };
                while !stop.load(Ordering::Relaxed) {
                    let tick = Instant::now();
                    let mut i = 0;
                    while i < in_flight.len() {
                        match in_flight[i].0.try_wait().unwrap() {
                            Some(status) => {
                                let (child, start) = in_flight.swap_remove(i);
                                record(child, start, status.success());
                            }
                            None => i += 1,
                        }
                    }
                    if in_flight.len() < MAX_JOBS_IN_FLIGHT {
                        in_flight.push((job.spawn().unwrap(), Instant::now()));
                    } else {
                        skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(JOB_EVERY.saturating_sub(tick.elapsed()));
                }
                for (mut child, start) in in_flight {
                    let ok = child.wait().unwrap().success();
                    record(child, start, ok);
                }
            })
        };
        JobLoop {
            stop,
            jobs,
            skipped,
            thread: Some(thread),
            _view: view,
        }
    }

    /// Waits until `n` jobs that started after `after` have finished.
    fn wait_jobs_after(&self, after: Instant, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let started_after = (self.jobs.lock().unwrap().iter())
                .filter(|job| job.start > after)
                .count();
            if started_after >= n {
                return;
            }
            assert!(Instant::now() < deadline, "the jobs stopped running");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops starting jobs, waits for those in flight; every job in the
    /// order they started, and how many starts the cap skipped.
    fn finish(mut self) -> (Vec<Job>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let mut jobs = self.jobs.lock().unwrap().clone();
        jobs.sort_by_key(|job| job.start);
        (jobs, self.skipped.load(Ordering::Relaxed))
    }
}

impl Drop for JobLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Scans every process's command line until dropped, collecting any
/// that holds one of the watched values.
struct ArgvWatch {
    stop: Arc<AtomicBool>,
    values: Arc<Mutex<Vec<Vec<u8>>>>,
    seen: Arc<Mutex<Vec<String>>>,
    scans: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArgvWatch {
    fn start() -> ArgvWatch {
        let mut watch = ArgvWatch {
            stop: Arc::default(),
            values: Arc::default(),
            seen: Arc::default(),
            scans: Arc::default(),
            thread: None,
        };
        let (stop, values, seen, scans) = (
            watch.stop.clone(),
            watch.values.clone(),
            watch.seen.clone(),
            watch.scans.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let values = values.lock().unwrap().clone();
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(argv) = std::fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    for value in &values {
                        if argv.windows(value.len()).any(|w| w == value.as_slice()) {
                            seen.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&argv).replace('\0', " "));
                        }
                    }
                }
                scans.fetch_add(1, Ordering::Relaxed);
            }
        });
        watch.thread = Some(thread);
        watch
    }

    fn watch(&self, value: &[u8]) {
        self.values.lock().unwrap().push(value.to_vec());
    }

    /// Stops and returns (command lines holding a value, scans made).
    fn finish(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let seen = self.seen.lock().unwrap().clone();
        (seen, self.scans.load(Ordering::Relaxed))
    }
}

impl Drop for ArgvWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// No value in the audit log or the vault file's text.
#[track_caller]
fn assert_no_value_on_disk(host: &Host, values: &[Vec<u8>]) {
    let audit = std::fs::read(host.dir().join("audit.log")).unwrap();
    let vault = host.vault_bytes();
    for value in values {
        assert!(
            !audit.windows(value.len()).any(|w| w == value.as_slice()),
            "audit.log"
        );
        assert!(
            !vault.windows(value.len()).any(|w| w == value.as_slice()),
            "vault.yml"
        );
    }
}

#[test]
fn long_alternating_users_rotate_ten_times_under_jobs_with_no_failed_connection() {
    let Some(pg) = Pg::start("long_alternating_users_rotate_ten_times_under_jobs") else {
        return;
    };
    let host = vault_host(&pg, true);
    let (apply, test) = hooks(&pg, None);
    let jobs = JobLoop::start(&host, &pg);
    let argv = ArgvWatch::start();
    jobs.wait_jobs_after(Instant::now(), 5);
    let mut values = Vec::new();
    // Per round: when it began, when its promote had returned, and the
    // account it made current.
    let mut promoted = Vec::new();
    for round in 1..=10 {
        let began = Instant::now();
        let value = format!("alt-round-{round}-7c1e9a");
        argv.watch(value.as_bytes());
        let run = rotate(
            &host,
            &[
                "PG",
                "--alternate",
                "--stdin",
                "--apply",
                &apply,
                "--test",
                &test,
            ],
            value.as_bytes(),
        )
        .ok();
        let done = Instant::now();
        for shown in [run.out(), run.stderr.clone()] {
            assert!(!shown.contains(&value), "round {round}: {}", run.describe());
        }
        values.push(value.into_bytes());
        let user = if round % 2 == 1 {
            "app_green"
        } else {
            "app_blue"
        };
        promoted.push((began, done, user));
        // Let the jobs see this account before the next rotation.
        jobs.wait_jobs_after(done, 5);
    }
    let (seen, scans) = argv.finish();
    let (jobs, skipped) = jobs.finish();
    let failed: Vec<&Job> = jobs.iter().filter(|job| !job.ok).collect();
    let period = (jobs.last().unwrap().start - jobs[0].start) / u32::try_from(jobs.len()).unwrap();
    eprintln!(
        "alternating users: {} jobs during 10 rotations (one started every {period:?}, {skipped} \
         starts skipped at {MAX_JOBS_IN_FLIGHT} in flight), {} failed; {scans} scans of \
         /proc/*/cmdline",
        jobs.len(),
        failed.len(),
    );
    assert!(
        failed.is_empty(),
        "{} failed connections: {failed:?}",
        failed.len()
    );
    // Every rotation seen: the jobs started after a promote and before the
    // next rotation began connected as the account it made current.
    assert_eq!(jobs[0].user, "app_blue");
    for (round, (_, done, user)) in promoted.iter().enumerate() {
        let next = promoted.get(round + 1).map(|(began, _, _)| *began);
        let after: Vec<&str> = (jobs.iter())
            .filter(|job| job.start > *done && next.is_none_or(|next| job.start < next))
            .map(|job| job.user.as_str())
            .collect();
        assert!(
            after.len() >= 5 && after.iter().all(|seen| seen == user),
            "round {}: {after:?}",
            round + 1
        );
    }
    assert!(seen.is_empty(), "values in command lines: {seen:?}");
    assert!(scans > 20, "the /proc scan ran {scans} times");
    assert_no_value_on_disk(&host, &values);
    let current = host.run_key(&["get", "PG.PASSWORD"], b"").ok().stdout;
    let user = String::from_utf8(host.run_key(&["get", "PG.USERNAME"], b"").ok().stdout).unwrap();
    assert!(pg.accepts(&user, &current));
}

#[test]
fn long_single_user_rotation_has_a_failure_window_which_is_measured() {
    let Some(pg) = Pg::start("long_single_user_rotation_has_a_failure_window") else {
        return;
    };
    let host = vault_host(&pg, false);
    let (apply, test) = hooks(&pg, Some("app_single"));
    let jobs = JobLoop::start(&host, &pg);
    jobs.wait_jobs_after(Instant::now(), 5);
    let mut rotations = Vec::new();
    for _ in 1..=10 {
        let start = Instant::now();
        rotate(
            &host,
            &["PG.PASSWORD", "--apply", &apply, "--test", &test],
            b"",
        )
        .ok();
        let done = Instant::now();
        rotations.push((start, done));
        jobs.wait_jobs_after(done, 5);
    }
    let (jobs, skipped) = jobs.finish();
    // A window: from the first failed job to the next job that connected.
    let mut windows = Vec::new();
    let mut failing_since = None;
    for job in &jobs {
        match (job.ok, failing_since) {
            (false, None) => failing_since = Some(job.start),
            (true, Some(since)) => {
                windows.push(job.start - since);
                failing_since = None;
            }
            _ => {}
        }
    }
    let failed = jobs.iter().filter(|job| !job.ok).count();
    let longest = windows.iter().max().copied().unwrap_or_default();
    let total: Duration = windows.iter().sum();
    let rotate_time: Duration = rotations.iter().map(|(a, b)| *b - *a).sum::<Duration>() / 10;
    let period = (jobs.last().unwrap().start - jobs[0].start) / u32::try_from(jobs.len()).unwrap();
    eprintln!(
        "single user: {} jobs during 10 rotations (one started every {period:?}, {skipped} starts \
         skipped at {MAX_JOBS_IN_FLIGHT} in flight), {failed} failed in {} windows; longest \
         window {longest:?}, mean {:?}; one rotation takes {rotate_time:?}",
        jobs.len(),
        windows.len(),
        total / u32::try_from(windows.len().max(1)).unwrap()
    );
    assert!(
        jobs.iter().rev().take(3).all(|job| job.ok),
        "the last jobs connect"
    );
    // Without alternating users the old password stops working at the apply
    // and the vault hands out the new one only after the test and promote.
    assert!(failed > 0, "a single-user rotation must show its window");
}

#[test]
fn long_sigkill_at_every_step_leaves_the_accepted_password_in_the_vault() {
    let Some(pg) = Pg::start("long_sigkill_at_every_step") else {
        return;
    };
    let host = vault_host(&pg, false);
    let (apply, test) = hooks(&pg, Some("app_single"));
    let steps = [
        "rotate-after-pending",
        "rotate-during-apply",
        "rotate-after-apply",
        "rotate-during-test",
        "rotate-during-promote",
    ];
    let mut report = Vec::new();
    for step in steps {
        let mut child = host
            .command()
            .env("RUNVAULT_STOP_AT", step)
            .arg("--key-file")
            .arg(host.key_file())
            .args(["rotate", "PG.PASSWORD", "--apply", &apply, "--test", &test])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_stopped(&mut child, step);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // A hook runvault started goes on: let it finish.
        std::thread::sleep(Duration::from_millis(800));
        let current = host.run_key(&["get", "PG.PASSWORD"], b"").ok().stdout;
        let pending = host.run_key(&["get", "PG.PASSWORD", "--pending"], b"");
        let pending = (pending.code == 0).then_some(pending.stdout);
        let takes_current = pg.accepts("app_single", &current);
        let takes_pending = pending
            .as_ref()
            .is_some_and(|p| pg.accepts("app_single", p));
        assert!(
            takes_current || takes_pending,
            "{step}: the database takes neither the current nor the pending value"
        );
        assert!(pending.is_some() || step == "rotate-after-pending" && takes_current);
        // --resume finishes what the source already has; otherwise the
        // test fails, and --abort puts the current value back there.
        let resumed = rotate(&host, &["PG.PASSWORD", "--resume", "--test", &test], b"");
        let outcome = match resumed.code {
            0 => "resumed",
            10 => {
                rotate(&host, &["PG.PASSWORD", "--abort", "--revert", &apply], b"").ok();
                "aborted"
            }
            _ => panic!("{step}: {}", resumed.describe()),
        };
        assert_eq!(
            outcome == "resumed",
            takes_pending,
            "{step}: {}",
            resumed.describe()
        );
        host.run_key(&["get", "PG.PASSWORD", "--pending"], b"")
            .fails(3);
        let current = host.run_key(&["get", "PG.PASSWORD"], b"").ok().stdout;
        assert!(
            pg.accepts("app_single", &current),
            "{step}: clean, and the database agrees"
        );
        report.push(format!("{step}: {outcome}"));
    }
    eprintln!("kill -9 at every step: {}", report.join(", "));
    // And a last rotation runs normally afterwards.
    rotate(
        &host,
        &["PG.PASSWORD", "--apply", &apply, "--test", &test],
        b"",
    )
    .ok();
}

#[test]
fn a_failing_apply_or_test_against_postgres_keeps_the_vault_and_the_database_in_step() {
    let Some(pg) = Pg::start("a_failing_apply_or_test_against_postgres") else {
        return;
    };
    let host = vault_host(&pg, false);
    let (apply, test) = hooks(&pg, Some("app_single"));
    // A role the server does not have: ALTER ROLE fails, nothing changes.
    let (wrong_apply, _) = hooks(&pg, Some("no_such_role"));
    let run = rotate(
        &host,
        &["PG.PASSWORD", "--apply", &wrong_apply, "--test", &test],
        b"",
    )
    .fails(10);
    assert!(
        run.stderr.contains("role \"no_such_role\" does not exist"),
        "{}",
        run.describe()
    );
    assert!(run.stderr.ends_with(
        "runvault: error: the apply hook failed (exit code 3); the pending value of `PG.PASSWORD` \
         was dropped; nothing changed in the vault\n"
    ), "{}", run.describe());
    assert_eq!(
        host.run_key(&["get", "PG.PASSWORD"], b"").ok().stdout,
        b"single-initial-0"
    );
    assert!(pg.accepts("app_single", b"single-initial-0"));
    // A test that checks the wrong role fails after the apply: pending stays.
    let (_, wrong_test) = hooks(&pg, Some("no_such_role"));
    let run = rotate(
        &host,
        &["PG.PASSWORD", "--apply", &apply, "--test", &wrong_test],
        b"",
    )
    .fails(10);
    assert!(run.stderr.contains(
        "runvault: error: the test hook failed (exit code 2); the new value of `PG.PASSWORD` stays pending"
    ), "{}", run.describe());
    let pending = host
        .run_key(&["get", "PG.PASSWORD", "--pending"], b"")
        .ok()
        .stdout;
    assert!(pg.accepts("app_single", &pending));
    rotate(&host, &["PG.PASSWORD", "--resume", "--test", &test], b"").ok();
    assert_eq!(
        host.run_key(&["get", "PG.PASSWORD"], b"").ok().stdout,
        pending
    );
}
