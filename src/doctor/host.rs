//! Host checks: the secrets directory and its files, the salt, whether the
//! vault is encrypted and verifies, and the machine key file.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::core::fs::{self, Limit};
use crate::core::lock::LOCK_FILE_NAME;
use crate::doctor::{Finding, RotationAge, not_checked};
use crate::vault::{
    AUDIT_FILE, Credential, EncryptedVault, Header, ReadOnlyDir, SALT_FILE, SALT_NEXT_FILE, Salt,
    VAULT_FILE, VaultFile, classify, policy_ages,
};

/// Checks the secrets directory `dir`; `credential` (when the admin gave
/// one) lets it verify the MAC and every value.
pub fn check_secrets(vault: &ReadOnlyDir, credential: Option<&Credential>) -> Vec<Finding> {
    let dir = vault.dir();
    let mut findings = Vec::new();
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            findings.push(not_checked("secrets.dir", dir));
            return findings;
        }
        Err(err) => {
            findings.push(Finding::fail(
                "secrets.dir",
                format!("`{}` cannot be read: {err}", dir.display()),
                format!(
                    "create the vault with `runvault init --dir {}`",
                    dir.display()
                ),
            ));
            return findings;
        }
    };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        findings.push(Finding::fail(
            "secrets.dir",
            format!("`{}` is not a directory (or is a symlink)", dir.display()),
            "make it a real directory owned by root, mode 0700",
        ));
        return findings;
    }
    // Every check has its line, ok ones too: scripts match on the ids.
    findings.push(Finding::ok(
        "secrets.dir",
        format!("`{}` is a directory", dir.display()),
    ));
    findings.push(owner_check("secrets.dir.owner", dir, meta.uid()));
    let mode = meta.mode() & 0o7777;
    findings.push(if secrets_dir_mode_ok(mode) {
        Finding::ok(
            "secrets.dir.mode",
            format!("`{}` is mode {mode:04o}", dir.display()),
        )
    } else {
        Finding::fail(
            "secrets.dir.mode",
            format!("`{}` is mode {mode:04o}", dir.display()),
            format!("run `chmod 700 {}`", dir.display()),
        )
    });
    for name in [VAULT_FILE, SALT_FILE] {
        findings.extend(file_checks(dir, name));
    }
    findings.push(stray_files(dir));
    findings.push(plaintext_copies_check(dir));
    findings.push(salt_strength(&dir.join(SALT_FILE)));
    findings.extend(encryption_and_integrity(vault, credential));
    findings
}

/// The modes the `secrets.dir.mode` check passes (`init` warns about any
/// other): the owner's alone, or readable by a group of job runners.
pub fn secrets_dir_mode_ok(mode: u32) -> bool {
    mode == 0o700 || mode == 0o750
}

/// `check` passes when `path` (owned by `uid`) is owned by root.
pub(crate) fn owner_check(check: &'static str, path: &Path, uid: u32) -> Finding {
    if uid == 0 {
        Finding::ok(check, format!("`{}` is owned by root", path.display()))
    } else {
        Finding::fail(
            check,
            format!("`{}` is owned by uid {uid}, not root", path.display()),
            format!("run `chown root: {}`", path.display()),
        )
    }
}

fn file_checks(dir: &Path, name: &str) -> Vec<Finding> {
    let path = dir.join(name);
    let (owner_id, mode_id): (&'static str, &'static str) = match name {
        VAULT_FILE => ("vault.file.owner", "vault.file.mode"),
        _ => ("salt.file.owner", "salt.file.mode"),
    };
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return vec![not_checked(owner_id, &path), not_checked(mode_id, &path)];
        }
        Err(_) => {
            return vec![Finding::fail(
                mode_id,
                format!("`{}` is missing", path.display()),
                format!(
                    "create the vault with `runvault init --dir {}`",
                    dir.display()
                ),
            )];
        }
    };
    if meta.file_type().is_symlink() {
        return vec![Finding::fail(
            mode_id,
            format!("`{}` is a symlink", path.display()),
            "replace it with the real file; runvault refuses symlinks",
        )];
    }
    let mode = meta.mode() & 0o7777;
    vec![
        owner_check(owner_id, &path, meta.uid()),
        if mode == 0o600 || mode == 0o640 {
            Finding::ok(mode_id, format!("`{}` is mode {mode:04o}", path.display()))
        } else {
            Finding::fail(
                mode_id,
                format!("`{}` is mode {mode:04o}", path.display()),
                format!("run `chmod 600 {}`", path.display()),
            )
        },
    ]
}

fn stray_files(dir: &Path) -> Finding {
    let entries = match std::fs::read_dir(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return not_checked("secrets.stray", dir);
        }
        entries => entries,
    };
    let mut stray: Vec<String> = entries
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| fs::is_temp_file_name(name) || name == SALT_NEXT_FILE)
        .collect();
    stray.sort();
    if stray.is_empty() {
        Finding::ok("secrets.stray", "no stray temp files")
    } else {
        Finding::warn(
            "secrets.stray",
            format!("left by an interrupted write: {}", stray.join(", ")),
            "run any writing command (e.g. `runvault set`): it finishes or removes them under the lock",
        )
    }
}

/// The files of `dir` besides runvault's own that hold a plaintext vault:
/// YAML with at least one key and no runvault header (`vault.yml.bak`, a
/// copy taken before adoption). The directory is mounted into every job,
/// so each one hands every job the credentials it holds. Files larger
/// than a vault may be, links and anything not a regular file are passed
/// over. `Err` when the directory cannot be listed.
pub fn plaintext_copies(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut copies = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = [
            VAULT_FILE,
            SALT_FILE,
            SALT_NEXT_FILE,
            AUDIT_FILE,
            LOCK_FILE_NAME,
        ];
        if ours.contains(&name.as_str()) || fs::is_temp_file_name(&name) {
            continue;
        }
        let path = entry.path();
        let Ok(Some(bytes)) = fs::read_optional(&path, Limit::VAULT_FILE) else {
            continue;
        };
        if let Ok(VaultFile::Plaintext(serde_yaml::Value::Mapping(map))) = classify(&bytes)
            && !map.is_empty()
        {
            copies.push(path);
        }
    }
    copies.sort();
    Ok(copies)
}

/// `secrets.plaintext`: no plaintext vault lies beside the vault.
fn plaintext_copies_check(dir: &Path) -> Finding {
    match plaintext_copies(dir) {
        Ok(copies) if copies.is_empty() => Finding::ok(
            "secrets.plaintext",
            format!("no plaintext vault copy in `{}`", dir.display()),
        ),
        Ok(copies) => {
            let names: Vec<String> = copies
                .iter()
                .map(|path| format!("`{}`", path.display()))
                .collect();
            Finding::fail(
                "secrets.plaintext",
                format!(
                    "{} in `{}` is a plaintext vault: every job gets this directory mounted",
                    names.join(", "),
                    dir.display()
                ),
                format!(
                    "delete it (`shred -u {}`) and rotate the credentials it holds",
                    copies
                        .iter()
                        .map(|path| path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            )
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            not_checked("secrets.plaintext", dir)
        }
        Err(err) => Finding::fail(
            "secrets.plaintext",
            format!("`{}` cannot be listed: {err}", dir.display()),
            "fix the directory's permissions",
        ),
    }
}

fn salt_strength(path: &Path) -> Finding {
    match fs::read_optional(path, Limit::any("file")) {
        Ok(Some(bytes)) => {
            let salt = Salt::from_file_bytes(bytes);
            if salt.is_weak() {
                Finding::fail(
                    "salt.strength",
                    weak_salt_message(path, &salt),
                    "run `runvault rekey --new-salt` (or `runvault init` on a plaintext vault) to replace it",
                )
            } else {
                Finding::ok(
                    "salt.strength",
                    format!(
                        "`{}` holds {} bytes of entropy",
                        path.display(),
                        salt.strength_bytes()
                    ),
                )
            }
        }
        Ok(None) => Finding::fail(
            "salt.strength",
            format!("`{}` is missing", path.display()),
            "restore it from a backup",
        ),
        Err(err) if err.is_permission_denied() => not_checked("salt.strength", path),
        Err(err) => Finding::fail(
            "salt.strength",
            err.to_string(),
            "fix the file's permissions",
        ),
    }
}

/// What a weak salt is: the manual procedure's 20 hex characters (`echo
/// $RANDOM | md5sum | head -c 20`) look random but take at most 32 768
/// values, about 15 bits; counting its characters would claim 10 bytes.
fn weak_salt_message(path: &Path, salt: &Salt) -> String {
    let text = salt.as_bytes().trim_ascii();
    if text.len() == 20 && text.iter().all(u8::is_ascii_hexdigit) {
        format!(
            "`{}` looks hand-made (20 hex characters, as `echo $RANDOM | md5sum | head -c 20` \
             makes): about 15 bits of entropy",
            path.display()
        )
    } else {
        format!(
            "`{}` holds at most {} bytes of entropy, too few for a salt",
            path.display(),
            salt.strength_bytes()
        )
    }
}

fn encryption_and_integrity(vault: &ReadOnlyDir, credential: Option<&Credential>) -> Vec<Finding> {
    let path = vault.vault_path();
    let bytes = match fs::read_optional(&path, Limit::any("file")) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return vec![Finding::fail(
                "vault.encrypted",
                format!("`{}` is missing", path.display()),
                format!("run `runvault init --dir {}`", vault.dir().display()),
            )];
        }
        Err(err) if err.is_permission_denied() => {
            return vec![not_checked("vault.encrypted", &path)];
        }
        Err(err) => {
            return vec![Finding::fail(
                "vault.encrypted",
                err.to_string(),
                "fix the file's permissions",
            )];
        }
    };
    let encrypted = match classify(&bytes) {
        Ok(VaultFile::Plaintext(_)) => return plaintext(vault),
        Err(err) => {
            return vec![Finding::fail(
                "vault.encrypted",
                format!("`{}`: {err}", path.display()),
                "restore it from a backup",
            )];
        }
        Ok(VaultFile::Encrypted(encrypted)) => encrypted,
    };
    let mut findings = vec![
        Finding::ok(
            "vault.encrypted",
            format!("`{}` is an encrypted runvault vault", path.display()),
        ),
        integrity(vault, credential),
        rollback(vault, &encrypted.header),
    ];
    findings.extend(rotation(&encrypted));
    findings
}

/// `vault.rotation`: rotations left pending, and credentials older than
/// their `--max-age` (read from the file's public times: no key needed).
fn rotation(vault: &EncryptedVault) -> Vec<Finding> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut findings = Vec::new();
    for (path, sealed) in &vault.header.rotation.pending {
        let since = sealed
            .version_and_time()
            .map_or(0, |(_, time)| now.saturating_sub(time));
        findings.push(Finding::warn(
            "vault.rotation",
            format!(
                "`{path}` has a rotation pending for {}: its new value may already be set at the source",
                days(since)
            ),
            format!(
                "finish it with `runvault rotate {path} --resume --test CMD`, or drop it with \
                 `runvault rotate {path} --abort --revert CMD`"
            ),
        ));
    }
    let ages = policy_ages(vault, now);
    for age in ages.iter().filter(|age| age.due()) {
        let mut finding = Finding::warn(
            "vault.rotation",
            match age.age {
                Some(seconds) => format!(
                    "`{}` is {} old, past its max age of {}",
                    age.path,
                    days(seconds),
                    days(age.max_age)
                ),
                None => format!(
                    "`{}` has a max age of {} but no value",
                    age.path,
                    days(age.max_age)
                ),
            },
            format!(
                "rotate it: `runvault rotate {} --apply CMD --test CMD` (docs/rotation.md)",
                age.path
            ),
        );
        finding.rotation = Some(RotationAge {
            path: age.path.clone(),
            age_seconds: age.age,
            max_age_seconds: age.max_age,
        });
        findings.push(finding);
    }
    if findings.is_empty() {
        let message = if ages.is_empty() {
            "no credential has a rotation policy (`set --max-age`) and none is pending".to_owned()
        } else {
            format!(
                "{} credential(s) with a max age, none past it, none pending",
                ages.len()
            )
        };
        findings.push(Finding::ok("vault.rotation", message));
    }
    findings
}

/// A duration in whole days (`3 days`), or hours and seconds below a day.
fn days(seconds: u64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{} day(s)", s / 86_400),
        s if s >= 3_600 => format!("{} hour(s)", s / 3_600),
        s => format!("{s} second(s)"),
    }
}

/// A plaintext `vault.yml`: adopt it, unless the directory shows that an
/// encrypted vault was here, in which case it may have been planted.
fn plaintext(vault: &ReadOnlyDir) -> Vec<Finding> {
    let (path, dir) = (vault.vault_path(), vault.dir().display());
    let evidence = vault.prior_vault_evidence();
    let encrypted = Finding::fail(
        "vault.encrypted",
        format!(
            "`{}` is plaintext: every credential is readable by anyone who can read the file",
            path.display()
        ),
        if evidence.is_empty() {
            format!("adopt it in place with `runvault init --dir {dir}`")
        } else {
            "do not adopt it before reading `vault.replaced`".to_owned()
        },
    );
    let replaced = if evidence.is_empty() {
        Finding::ok(
            "vault.replaced",
            format!("nothing shows that `{dir}` held an encrypted vault before"),
        )
    } else {
        Finding::fail(
            "vault.replaced",
            format!(
                "`{dir}` held an encrypted vault ({}): the vault may have been replaced by this plaintext",
                evidence.join(", ")
            ),
            format!(
                "find out who wrote `{}` and restore the encrypted vault.yml from a backup; \
                 `runvault init --force --dir {dir}` adopts the plaintext anyway",
                path.display()
            ),
        )
    };
    vec![encrypted, replaced]
}

/// The vault's generation against this host's high-water mark (from the
/// header as the file says it; `vault.verify` authenticates it).
fn rollback(vault: &ReadOnlyDir, header: &Header) -> Finding {
    let (path, marks) = (vault.vault_path(), vault.marks());
    let mark_path = marks.path(&header.vault_id, vault.dir());
    match marks.read(&header.vault_id, vault.dir()) {
        Ok(Some(mark)) if mark.generation > header.generation => Finding::fail(
            "vault.rollback",
            format!(
                "`{}` is at generation {}, but this host committed generation {} (`{}`): \
                 an older copy was put back",
                path.display(),
                header.generation,
                mark.generation,
                mark_path.display()
            ),
            "restore the newest vault.yml; if the older copy was restored on purpose, run \
             `runvault verify --accept-rollback`",
        ),
        Ok(Some(mark)) => Finding::ok(
            "vault.rollback",
            format!(
                "`{}` is at generation {}, high-water mark {}",
                path.display(),
                header.generation,
                mark.generation
            ),
        ),
        Ok(None) => Finding::warn(
            "vault.rollback",
            format!(
                "no high-water mark for `{}` in `{}`: putting back an older copy would go unnoticed",
                path.display(),
                marks.dir().display()
            ),
            "the next change records it; or run `runvault verify --accept-rollback` now",
        ),
        // A state directory doctor may not read: nothing known either way.
        Err(err @ crate::vault::VaultError::Fs(_)) => Finding::warn(
            "vault.rollback",
            format!("the high-water mark cannot be read: {err}"),
            "run doctor as the user that writes the vault, or give the right --state-dir",
        ),
        Err(err) => Finding::fail(
            "vault.rollback",
            err.to_string(),
            "see docs/troubleshooting.md for this error",
        ),
    }
}

fn integrity(vault: &ReadOnlyDir, credential: Option<&Credential>) -> Finding {
    let path = vault.vault_path();
    let Some(credential) = credential else {
        return Finding::warn(
            "vault.verify",
            format!(
                "`{}` is encrypted; its MAC and values were not checked",
                path.display()
            ),
            "give --key-file or --passphrase-file to verify them",
        );
    };
    match vault
        .open(credential)
        .and_then(|(unlocked, _)| unlocked.verify_all())
    {
        Ok(count) => Finding::ok(
            "vault.verify",
            format!(
                "`{}` is encrypted, authenticated, and its {count} value(s) decrypt",
                path.display()
            ),
        ),
        Err(err) => Finding::fail(
            "vault.verify",
            err.to_string(),
            "see docs/troubleshooting.md for this error",
        ),
    }
}

/// Checks the machine key file: present, 0400 or 0600, owned by root,
/// outside the secrets directory.
pub fn check_key_file(key_file: &Path, secrets_dir: &Path) -> Vec<Finding> {
    check_secret_file(
        &SecretFile {
            ids: [
                "keyfile.exists",
                "keyfile.owner",
                "keyfile.mode",
                "keyfile.location",
            ],
            what: "the key file",
            create: "runvault keygen {0}` and `runvault key add keyfile {0}",
            example: "/etc/runvault/vault.key",
        },
        key_file,
        secrets_dir,
    )
}

/// Checks the host's identity (issue 21, docs/fleet.md) as the key file
/// is checked: it exists, is root's (or the user's), 0400 or 0600, and
/// lies outside the secrets directory.
pub fn check_identity(identity: &Path, secrets_dir: &Path) -> Vec<Finding> {
    check_secret_file(
        &SecretFile {
            ids: [
                "identity.exists",
                "identity.owner",
                "identity.mode",
                "identity.location",
            ],
            what: "the identity",
            create: "runvault keygen --identity {0}` and add its recipient at the source with \
                     `runvault key add recipient",
            example: "/etc/runvault/host.key",
        },
        identity,
        secrets_dir,
    )
}

/// The check ids and words of one kind of secret file.
struct SecretFile {
    ids: [&'static str; 4],
    what: &'static str,
    /// The command(s) that create it, `{0}` standing for its path (inside
    /// backticks the hint adds).
    create: &'static str,
    example: &'static str,
}

fn check_secret_file(kind: &SecretFile, file: &Path, secrets_dir: &Path) -> Vec<Finding> {
    let [exists, owner, mode_id, location] = kind.ids;
    let meta = match std::fs::symlink_metadata(file) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return vec![not_checked(exists, file)];
        }
        Err(_) => {
            return vec![Finding::warn(
                exists,
                format!(
                    "`{}` does not exist: jobs cannot unlock the vault without a person",
                    file.display()
                ),
                format!(
                    "run `{}`",
                    kind.create.replace("{0}", &file.display().to_string())
                ),
            )];
        }
    };
    let mut findings = vec![Finding::ok(exists, format!("`{}` exists", file.display()))];
    findings.push(owner_check(owner, file, meta.uid()));
    let mode = meta.mode() & 0o7777;
    findings.push(
        if !meta.file_type().is_symlink() && (mode == 0o400 || mode == 0o600) {
            Finding::ok(mode_id, format!("`{}` is mode {mode:04o}", file.display()))
        } else {
            Finding::fail(
                mode_id,
                format!(
                    "`{}` is mode {mode:04o}{}",
                    file.display(),
                    if meta.file_type().is_symlink() {
                        " (a symlink)"
                    } else {
                        ""
                    }
                ),
                format!("run `chmod 400 {}`", file.display()),
            )
        },
    );
    let inside = match (
        fs::parent_dir(file).canonicalize(),
        secrets_dir.canonicalize(),
    ) {
        (Ok(parent), Ok(dir)) => parent.starts_with(dir),
        _ => false,
    };
    findings.push(if inside {
        Finding::fail(
            location,
            format!(
                "`{}` is inside the secrets directory, which is mounted into jobs",
                file.display()
            ),
            format!("move it outside, e.g. to {}", kind.example),
        )
    } else {
        Finding::ok(
            location,
            format!("{} lives outside the secrets directory", kind.what),
        )
    });
    findings
}

/// `fleet.managed`, on a host that receives its vault (docs/fleet.md):
/// where from, and the last generation received. `None` on other hosts.
pub fn check_managed(vault: &ReadOnlyDir) -> Option<Finding> {
    match vault.marks().managed(vault.dir()) {
        Ok(None) => None,
        Ok(Some(managed)) => Some(Finding::ok(
            "fleet.managed",
            format!(
                "`{}` is managed: it receives vault {} from {}; last received generation {} \
                 ({}); local changes need --local",
                vault.dir().display(),
                managed.vault_id,
                managed
                    .source
                    .as_deref()
                    .unwrap_or("its source (no --source given)"),
                managed.generation,
                managed.received
            ),
        )),
        // A state directory doctor cannot read: `vault.rollback` says so.
        Err(crate::vault::VaultError::Fs(_)) => None,
        Err(err) => Some(Finding::fail(
            "fleet.managed",
            err.to_string(),
            "see docs/troubleshooting.md for this error",
        )),
    }
}
