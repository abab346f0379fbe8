//! The audit log: one JSON line per change of the vault (never a value),
//! appended and fsynced before the change is committed, so a change whose
//! line cannot be written does not happen.
//!
//! A line names the command, the changed paths with their new versions and
//! an HMAC of each new value under the vault's audit key (which an admin can
//! recompute with `runvault audit-hmac` to prove which value was set), the
//! acting user, and the vault generation before and after.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::core::fs::{self, FsError};

/// One changed path in an audit line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditChange {
    /// The path.
    pub path: String,
    /// Its new version (absent for removals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// HMAC of the new value under the audit key (absent for removals),
    /// written in hex. Kept as bytes: an import holds one per value.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hmac_hex")]
    pub hmac: Option<[u8; 32]>,
    /// What happened to the path.
    pub action: &'static str,
}

fn hmac_hex<S: serde::Serializer>(hmac: &Option<[u8; 32]>, out: S) -> Result<S::Ok, S::Error> {
    match hmac {
        Some(bytes) => out.serialize_str(&crate::core::hex::hex(bytes)),
        None => out.serialize_none(),
    }
}

/// What a command reports about its change, filled in by the command.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AuditRecord {
    /// The changed paths.
    pub changes: Vec<AuditChange>,
    /// Free-form details (slot ids, counts); never a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(serde::Serialize)]
struct AuditLine<'a> {
    time: String,
    event: &'a str,
    command: &'a str,
    uid: Option<u32>,
    sudo_user: Option<String>,
    generation_before: u64,
    generation_after: u64,
    #[serde(flatten)]
    record: &'a AuditRecord,
}

/// Appends one line for a change about to be committed.
pub(super) fn append(
    log: &Path,
    command: &str,
    event: &str,
    generations: (u64, u64),
    record: &AuditRecord,
) -> Result<(), FsError> {
    let line = AuditLine {
        time: crate::vault::keys::slots::now_rfc3339(),
        event,
        command,
        uid: Some(crate::core::harden::current_uid()),
        sudo_user: std::env::var("SUDO_USER").ok(),
        generation_before: generations.0,
        generation_after: generations.1,
        record,
    };
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        // Without blocking: a FIFO planted as the log would otherwise hold
        // this writer (and the lock) until someone reads it.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(log)
        .map_err(|err| match err.raw_os_error() {
            // A FIFO without a reader: refused as the FIFO it is.
            Some(libc::ENXIO) => FsError::NotRegular {
                what: "audit log",
                path: log.to_path_buf(),
                kind: "FIFO (named pipe)",
            },
            _ => FsError::io("open the audit log", log)(err),
        })?;
    let meta = file
        .metadata()
        .map_err(FsError::io("inspect the audit log", log))?;
    if !meta.file_type().is_file() {
        return Err(FsError::NotRegular {
            what: "audit log",
            path: log.to_path_buf(),
            kind: crate::core::fs::kind_name(meta.file_type()),
        });
    }
    // An empty log may have just been created (by this open or by someone
    // else): its directory entry must be made durable too. A log that
    // already holds lines had its entry synced when it was created, and an
    // append changes only the file, which `sync_data` covers.
    let new_file = meta.len() == 0;
    // Streamed, not built in memory first: the line of a large import is
    // tens of megabytes. Appends happen only under the writers' lock, so
    // no other line can interleave with its writes.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
    serde_json::to_writer(&mut out, &line)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| {
            out.into_inner()
                .map_err(std::io::IntoInnerError::into_error)
        })
        .and_then(|file| file.sync_data())
        .map_err(FsError::io("append to the audit log", log))?;
    if new_file && let Some(dir) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::sync_dir(dir)?;
    }
    tracing::debug!(log = %log.display(), command, event, "appended the audit line");
    Ok(())
}

/// How many changes the log at `log` records as committed and not aborted
/// (0 for a missing or unreadable log): evidence that a vault was here. Read
/// only on rare paths (a plaintext `vault.yml`), never by a reader that
/// opens a vault.
pub(super) fn committed_changes(log: &Path) -> usize {
    use std::io::BufRead;
    let Ok(file) = crate::core::fs::open_nofollow(log) else {
        return 0;
    };
    let (mut committed, mut aborted) = (0usize, 0usize);
    for line in std::io::BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
    {
        // The event is the second field, as `append` writes it.
        if line
            .windows(16)
            .take(64)
            .any(|w| w == b"\"event\":\"commit\"")
        {
            committed += 1;
        } else if line
            .windows(17)
            .take(64)
            .any(|w| w == b"\"event\":\"aborted\"")
        {
            aborted += 1;
        }
    }
    committed.saturating_sub(aborted)
}
