//! Handlers of the rotation commands: `history`, `rollback`, `rekey` and
//! `audit-hmac`.
//!
//! A handler file: it uses the definitions, `input`, `output`, `table` and
//! `context` below it, and no other handler (see `context` for the order).

use crate::cli::args::{AuditHmacArgs, GlobalArgs, HistoryArgs, RekeyArgs, RollbackArgs};
use crate::cli::context::{parse_path, vault_dir};
use crate::cli::input;
use crate::cli::output::{Bar, note as status, stdout_color, write_stdout};
use crate::cli::table::{Cell, Table, Tone};
use crate::core::exit::CommandError;
use crate::vault::{Credential, Plain, RekeyOptions, read_key_file};

/// `runvault history`.
pub fn history(global: &GlobalArgs, args: &HistoryArgs) -> Result<(), CommandError> {
    let path = parse_path(&args.path)?;
    let credential = input::unlock_credential(global)?;
    let (vault, _) = vault_dir(global).open(&credential)?;
    let versions = vault.history(&path)?;
    let text = if args.json {
        let rows: Vec<serde_json::Value> = versions
            .iter()
            .map(|v| {
                serde_json::json!({
                    "version": v.version,
                    "time": rfc3339(v.time),
                    "deleted": v.deleted,
                    "current": v.current,
                    "pending": v.pending,
                })
            })
            .collect();
        format!("{}\n", serde_json::Value::Array(rows))
    } else {
        let mut table = Table::new(&[8, 21]).header(&["VERSION", "TIME", "STATE"]);
        for v in &versions {
            let state = if v.current {
                Cell::toned("current", Tone::Good)
            } else if v.pending {
                Cell::toned("pending", Tone::Warn)
            } else if v.deleted {
                Cell::toned("deleted", Tone::Warn)
            } else {
                "stored".into()
            };
            table.row([v.version.to_string().into(), rfc3339(v.time).into(), state]);
        }
        table.render(stdout_color())
    };
    write_stdout(text.as_bytes())
}

fn rfc3339(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `runvault rollback`.
pub fn rollback(global: &GlobalArgs, args: &RollbackArgs) -> Result<(), CommandError> {
    let path = parse_path(&args.path)?;
    let credential = input::unlock_credential(global)?;
    let (from, to) = vault_dir(global).modify(&credential, "rollback", |vault, _, record| {
        vault.refuse_pending_under(&path)?;
        let versions = vault.rollback(&path, args.version)?;
        record.changes.push(vault.audit_change(&path, "rollback")?);
        record.detail = Some(format!("restored version {}", versions.0));
        Ok(versions)
    })?;
    status(format_args!(
        "restored version {from} of `{path}` as version {to}"
    ));
    Ok(())
}

/// `runvault rekey`.
pub fn rekey(global: &GlobalArgs, args: &RekeyArgs) -> Result<(), CommandError> {
    let kdf = input::kdf_override(&args.kdf);
    // The extra secrets' files first: a file refused (its mode, its owner)
    // is reported before the passphrase is asked for or a KDF runs.
    let mut also = Vec::new();
    for file in &args.also_key_file {
        also.push(Credential::KeyFile(read_key_file(file)?));
    }
    for file in &args.also_passphrase_file {
        also.push(input::passphrase_from_file(file)?);
    }
    let mut credentials = input::all_credentials(global)?;
    credentials.extend(also);
    let options = RekeyOptions {
        new_salt: args.new_salt,
        kdf,
        drop_others: args.drop_others,
        keep: args.keep,
    };
    let progress = Bar::new("re-encrypting");
    let report = vault_dir(global).rekey(&credentials, options, &progress)?;
    drop(progress);
    status(format_args!(
        "rekeyed: new data key, {} value(s) and stored version(s) re-encrypted, slot(s) {} re-wrapped{}",
        report.reencrypted,
        join(&report.kept),
        if args.new_salt {
            ", new vault.salt"
        } else {
            ""
        }
    ));
    if !report.dropped.is_empty() {
        status(format_args!(
            "removed slot(s) {} that no given secret opened",
            join(&report.dropped)
        ));
    }
    Ok(())
}

fn join(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `runvault audit-hmac`.
pub fn audit_hmac(global: &GlobalArgs, args: &AuditHmacArgs) -> Result<(), CommandError> {
    let path = parse_path(&args.path)?;
    let candidate = if args.stdin {
        Some(input::read_value(input::ValueSource::Stdin)?)
    } else {
        None
    };
    let credential = input::unlock_credential(global)?;
    let (vault, _) = vault_dir(global).open(&credential)?;
    let value = match candidate {
        // A candidate is hashed with the stored value's type when there is one.
        Some(bytes) => {
            let kind = vault
                .get(&path)
                .map_or(crate::vault::ScalarKind::Str, |v| v.kind);
            Plain { kind, bytes }
        }
        None => vault.get(&path)?,
    };
    write_stdout(format!("{}\n", vault.audit_hmac(&path, &value)?).as_bytes())
}
