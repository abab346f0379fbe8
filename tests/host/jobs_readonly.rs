//! The read-only path: `get`, `exec`, `render`, `list`, `verify` and
//! `export` work on a read-only vault directory, and as an unprivileged user
//! who can only read the files, writing nothing at all (no lock file, no
//! temp file, no changed mtime). Needs root (mount, setpriv): runs under
//! `CI=true`, skipped with a message elsewhere when not root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Host, Runs, job_host, require_root};

/// Name, size, inode, mode and mtime of every entry, plus the directory's own.
fn snapshot(dir: &Path) -> Vec<(String, u64, u64, u32, i64, i64)> {
    let describe = |name: String, meta: std::fs::Metadata| {
        (
            name,
            meta.len(),
            meta.ino(),
            meta.mode(),
            meta.mtime(),
            meta.mtime_nsec(),
        )
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            describe(
                entry.file_name().into_string().unwrap(),
                std::fs::symlink_metadata(entry.path()).unwrap(),
            )
        })
        .collect();
    entries.sort();
    entries.push(describe(".".into(), std::fs::metadata(dir).unwrap()));
    entries
}

fn sh(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

/// A read-only bind mount of a directory over itself, unmounted on drop.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(dir: &Path) -> ReadOnlyMount {
        let path = dir.to_str().unwrap();
        sh("mount", &["--bind", path, path]);
        let guard = ReadOnlyMount(dir.to_path_buf());
        sh("mount", &["-o", "remount,ro,bind", path]);
        guard
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs every read-only command through `wrap` (a command prefix, e.g.
/// setpriv) with `secret_args`, and checks each one's output.
fn run_read_commands(host: &Host, wrap: &[&str], secret_args: &[&str], template: &Path) {
    let command = |args: &[&str], vars: &[(&str, &str)]| {
        let (program, prefix) = match wrap.split_first() {
            Some((program, prefix)) => (*program, prefix),
            None => (env!("CARGO_BIN_EXE_runvault"), &[][..]),
        };
        let mut cmd = Command::new(program);
        cmd.args(prefix);
        if !wrap.is_empty() {
            cmd.arg(env!("CARGO_BIN_EXE_runvault"));
        }
        cmd.env_remove("RUNVAULT_DIR")
            .env_remove("RUNVAULT_KEY_FILE")
            .env_remove("RUNVAULT_PASSPHRASE_FILE")
            .arg("--dir")
            .arg(host.dir())
            .args(secret_args)
            .args(args);
        for (name, value) in vars {
            cmd.env(name, value);
        }
        let result = cmd.run_in(b"");
        assert_eq!(result.code, 0, "{args:?} failed: {}", result.stderr);
        result.out()
    };
    assert_eq!(command(&["get", "DB.PASS"], &[]), "p@ss w0rd)");
    assert_eq!(
        command(
            &[
                "exec",
                "--export",
                "SNOWFLAKE",
                "--",
                "sh",
                "-c",
                "printf %s-%s \"$U\" \"$SNOWFLAKE_TRANSFORM_PASSWORD\""
            ],
            &[("U", "DATAOPS_VAULT(DB.USER)")]
        ),
        "alice-tr-secret"
    );
    assert_eq!(
        command(&["render", template.to_str().unwrap()], &[]),
        "user=alice\n"
    );
    assert_eq!(
        command(&["list"], &[]),
        "DB.USER\nDB.PASS\nSNOWFLAKE.TRANSFORM.USERNAME\nSNOWFLAKE.TRANSFORM.PASSWORD\n"
    );
    assert!(command(&["verify"], &[]).starts_with("ok: "));
    assert!(command(&["export", "--format", "env"], &[]).contains("DB_USER='alice'\n"));
}

#[test]
fn read_commands_work_on_a_read_only_mount_and_write_nothing() {
    if !require_root("read_commands_work_on_a_read_only_mount_and_write_nothing") {
        return;
    }
    let host = job_host();
    let template = host.root.path().join("t.tpl");
    std::fs::write(&template, "user=DATAOPS_VAULT(DB.USER)\n").unwrap();
    let before = snapshot(&host.dir());
    {
        let _mount = ReadOnlyMount::new(&host.dir());
        let probe = std::fs::File::create(host.dir().join("probe"));
        assert_eq!(
            probe.unwrap_err().raw_os_error(),
            Some(libc_erofs()),
            "the mount must really be read-only"
        );
        let key = format!("--key-file={}", host.key_file().display());
        let pass = format!("--passphrase-file={}", host.pass_file().display());
        run_read_commands(&host, &[], &[&key], &template);
        run_read_commands(&host, &[], &[&pass], &template);
        // A writer fails here: proof that a write would have been caught.
        let set = host.run_key(&["set", "DB.USER", "--stdin"], b"x");
        assert_ne!(set.code, 0);
    }
    assert_eq!(
        snapshot(&host.dir()),
        before,
        "nothing may change in the vault dir"
    );
}

/// `EROFS`, without a libc dependency in tests.
fn libc_erofs() -> i32 {
    30
}

#[test]
fn read_commands_work_as_an_unprivileged_user_and_write_nothing() {
    if !require_root("read_commands_work_as_an_unprivileged_user_and_write_nothing") {
        return;
    }
    let host = job_host();
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // The job user may traverse and read; only root may write.
    chmod(host.root.path(), 0o755);
    for (path, mode) in [
        (host.dir(), 0o750),
        (host.vault_file(), 0o640),
        (host.salt_file(), 0o640),
    ] {
        sh("chgrp", &["nogroup", path.to_str().unwrap()]);
        chmod(&path, mode);
    }
    let keys = host.root.path().join("job-keys");
    std::fs::create_dir(&keys).unwrap();
    chmod(&keys, 0o755);
    let (key, pass) = (keys.join("vault.key"), keys.join("passphrase"));
    std::fs::copy(host.key_file(), &key).unwrap();
    std::fs::copy(host.pass_file(), &pass).unwrap();
    for file in [&key, &pass] {
        sh("chown", &["nobody:nogroup", file.to_str().unwrap()]);
        chmod(file, 0o400);
    }
    let template = keys.join("t.tpl");
    std::fs::write(&template, "user=DATAOPS_VAULT(DB.USER)\n").unwrap();
    chmod(&template, 0o644);
    let wrap = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
    ];
    let probe = Command::new(wrap[0])
        .args(&wrap[1..])
        .args(["touch", host.dir().join("probe").to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        !probe.success(),
        "the job user must not be able to write the vault dir"
    );
    let before = snapshot(&host.dir());
    let key_arg = format!("--key-file={}", key.display());
    let pass_arg = format!("--passphrase-file={}", pass.display());
    run_read_commands(&host, &wrap, &[&key_arg], &template);
    run_read_commands(&host, &wrap, &[&pass_arg], &template);
    assert_eq!(
        snapshot(&host.dir()),
        before,
        "nothing may change in the vault dir"
    );
}
