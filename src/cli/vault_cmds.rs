//! Handlers of the vault commands: validate arguments, gather secrets, call
//! the vault, print. Status goes to stderr; stdout carries only data.
//!
//! A handler file: it uses the definitions, `input`, `output`, `table` and
//! `context` below it, and no other handler (see `context` for the order).

use std::path::Path;

use crate::cli::args::{
    ExportArgs, ExportFormat, GetArgs, GlobalArgs, ImportArgs, InitArgs, KeyAddKind, KeyArgs,
    KeyCommand, KeygenArgs, ListArgs, RmArgs, SetArgs, ValueType, VerifyArgs,
};
use crate::cli::context::{
    self, layout_update, parse_path, parse_prefix, refuse_plaintext_in_vault_dir, remember,
    vault_dir,
};
use crate::cli::input::{self, ValueSource, parse_duration};
use crate::cli::output::{note as status, write_stdout};
use crate::cli::suggest;
use crate::cli::table::Table;
use crate::core::exit::{self, CommandError};
use crate::core::fs;
use crate::vault::{
    Credential, InitOutcome, KdfParams, KeyPath, PolicyAge, RenderFormat, ScalarKind, SlotKind,
    UnlockedVault, VaultDir, VaultError, canonical_recipient, create_key_file, read_key_file,
    typed_from_input,
};

/// `runvault init`.
pub fn init(global: &GlobalArgs, args: &InitArgs) -> Result<(), CommandError> {
    let vault = vault_dir(global);
    input::kdf_params(&args.kdf, KdfParams::DEFAULT)?;
    let outcome = vault.init(args.keep, args.force, || {
        input::init_credentials(global, &args.kdf, args.short.allow_short_passphrase)
    })?;
    let path = vault.vault_path();
    match outcome {
        InitOutcome::AlreadyEncrypted => {
            status(format_args!(
                "`{}` is already an encrypted runvault vault; nothing changed",
                path.display()
            ));
        }
        InitOutcome::Created { new_salt } => {
            status(format_args!(
                "created `{}`{}",
                path.display(),
                salt_note(new_salt)
            ));
        }
        InitOutcome::Adopted {
            values,
            new_salt,
            plaintext_linked_elsewhere,
            forced_over,
        } => {
            if let Some(evidence) = forced_over {
                crate::cli::output::warn(format_args!(
                    "adopted with --force although `{}` held an encrypted vault \
                     ({evidence}); the plaintext may have been planted: check its values",
                    vault.dir().display()
                ));
            }
            status(format_args!(
                "adopted `{}`: encrypted {values} value(s) in place{}",
                path.display(),
                salt_note(new_salt)
            ));
            if plaintext_linked_elsewhere {
                crate::cli::output::warn(format_args!(
                    "another hard link to the old plaintext `{}` still exists; find and delete it",
                    path.display()
                ));
            }
        }
    }
    warn_if_open_dir(vault.dir());
    // A copy of the plaintext kept beside it (`vault.yml.bak`) would hand
    // every job the credentials the vault now encrypts.
    for copy in crate::doctor::host::plaintext_copies(vault.dir()).unwrap_or_default() {
        crate::cli::output::warn(format_args!(
            "`{0}` is a plaintext vault in `{1}`, which every job gets \
             mounted; delete it (`shred -u {0}`) and rotate the credentials it holds",
            copy.display(),
            vault.dir().display()
        ));
    }
    remember(global, &layout_update(global, false));
    Ok(())
}

fn salt_note(new_salt: bool) -> &'static str {
    if new_salt {
        " with a new 32-byte salt in vault.salt"
    } else {
        ""
    }
}

/// Warns, after `init`, about a vault directory mode that `runvault doctor`
/// fails (its `secrets.dir.mode` check), saying what the mode allows.
fn warn_if_open_dir(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.mode() & 0o7777;
        if crate::doctor::host::secrets_dir_mode_ok(mode) {
            return;
        }
        let why = if mode & 0o007 != 0 {
            "open to other users"
        } else if mode & 0o020 != 0 {
            "writable by its group, which can replace the vault files"
        } else {
            "not 0700 or 0750 as `runvault doctor` requires"
        };
        crate::cli::output::warn(format_args!(
            "`{}` is mode {mode:04o}, {why}; run `chmod 700 {}`",
            dir.display(),
            dir.display()
        ));
    }
}

/// `runvault set`.
pub fn set(global: &GlobalArgs, args: &SetArgs) -> Result<(), CommandError> {
    let path = parse_path(&args.path)?;
    let shown = path.to_string();
    let source = match (&args.from_file, args.generate) {
        _ if args.stdin => ValueSource::Stdin,
        (Some(file), _) => ValueSource::File(file),
        (None, Some(len)) => ValueSource::Generate(len),
        (None, None) => ValueSource::Prompt(&shown),
    };
    let kind = match args.value_type {
        ValueType::String => ScalarKind::Str,
        ValueType::Int => ScalarKind::Int,
        ValueType::Float => ScalarKind::Float,
        ValueType::Bool => ScalarKind::Bool,
    };
    // The passphrase is asked before the value, as an admin expects at a terminal.
    let credential = input::unlock_credential(global)?;
    let raw = input::read_value(source)?;
    let value = typed_from_input(kind, raw.expose().to_vec()).map_err(|reason| {
        VaultError::Usage(format!(
            "cannot store the value at `{path}` as {:?}: {reason}",
            args.value_type
        ))
    })?;
    let max_age = args
        .max_age
        .as_deref()
        .map(|text| parse_duration("--max-age", text))
        .transpose()?;
    let (version, changed) = match max_age {
        None => {
            let outcome = vault_dir(global).set(&credential, &path, &value, args.if_version)?;
            (outcome.version, outcome.changed)
        }
        // The value and its policy in one commit, through the tree writer.
        Some(seconds) => {
            let version = vault_dir(global).modify(&credential, "set", |vault, _, record| {
                vault.refuse_pending_under(&path)?;
                let version = match args.if_version {
                    Some(expected) => vault.set_if_version(&path, &value, expected)?,
                    None => vault.set(&path, &value)?,
                };
                vault.set_max_age(&path, seconds);
                record.changes.push(vault.audit_change(&path, "set")?);
                record.detail = Some(format!("max age {seconds}s"));
                Ok(version)
            })?;
            (version, true)
        }
    };
    if !changed {
        status(format_args!(
            "`{path}` already holds this value (version {version}); unchanged"
        ));
        return Ok(());
    }
    let generated = if args.generate.is_some() && !args.stdin && args.from_file.is_none() {
        " (generated; read it with `runvault get`)"
    } else {
        ""
    };
    status(format_args!("set `{path}` (version {version}){generated}"));
    Ok(())
}

/// `runvault get`.
pub fn get(global: &GlobalArgs, args: &GetArgs) -> Result<(), CommandError> {
    let path = parse_path(&args.path)?;
    let credential = input::unlock_credential(global)?;
    let vault = vault_dir(global);
    let value = if args.pending {
        // Rare, and the pending value sits in the header: the tree reader.
        vault.open(&credential)?.0.get_pending(&path)?
    } else {
        match crate::vault::read_one(&vault, &credential, &path) {
            Err(err @ VaultError::NotFound { .. }) => return Err(not_found(err, &vault)),
            value => value?,
        }
    };
    let mut out = value.bytes.expose().to_vec();
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) && value.kind != ScalarKind::Bytes {
        out.push(b'\n');
    }
    let out = crate::core::secret::SecretBytes::new(out);
    write_stdout(out.expose())
}

/// `get`'s "not found", with the closest existing paths when some are
/// near (their names are readable without a secret; no value is read).
/// Only on this error path is the file read a second time.
fn not_found(err: VaultError, vault: &VaultDir) -> CommandError {
    let (VaultError::NotFound { key }, Ok((encrypted, _))) = (&err, vault.load()) else {
        return err.into();
    };
    let mut paths = Vec::new();
    encrypted
        .secrets
        .for_each_leaf(&mut |path, _| paths.push(path.to_string()));
    let near = suggest::closest_paths(key, &paths);
    if near.is_empty() {
        return err.into();
    }
    let near: Vec<String> = near.iter().map(|path| format!("`{path}`")).collect();
    CommandError::with_code(
        exit::NOT_FOUND,
        format!(
            "{err}; did you mean {}? (every path: `runvault list`)",
            near.join(" or ")
        ),
    )
}

/// `runvault list`.
pub fn list(global: &GlobalArgs, args: &ListArgs) -> Result<(), CommandError> {
    let prefix = parse_prefix(args.prefix.as_deref())?;
    let credential = input::unlock_credential(global)?;
    let (vault, _) = vault_dir(global).open(&credential)?;
    if args.due {
        return list_due(&vault, &prefix, args.json);
    }
    let subtree = vault
        .secrets()
        .get(&prefix)
        .ok_or_else(|| VaultError::NotFound {
            key: prefix.to_string(),
        })?;
    let mut paths = Vec::new();
    subtree.for_each_leaf(&mut |relative, _| {
        paths.push(prefix.join(relative).to_string());
    });
    let text = if args.json {
        let mut json = serde_json::to_string(&paths).expect("strings serialize");
        json.push('\n');
        json
    } else {
        paths.iter().map(|p| format!("{p}\n")).collect()
    };
    write_stdout(text.as_bytes())
}

/// `runvault list --due`: the paths under `prefix` older than their
/// `--max-age` policy; with `--json`, every path with a policy and its age.
fn list_due(vault: &UnlockedVault, prefix: &KeyPath, json: bool) -> Result<(), CommandError> {
    let ages: Vec<PolicyAge> = vault
        .policy_ages()
        .into_iter()
        .filter(|age| KeyPath::parse(&age.path).is_ok_and(|path| path.starts_with(prefix)))
        .collect();
    let text = if json {
        let rows: Vec<serde_json::Value> = ages
            .iter()
            .map(|age| {
                serde_json::json!({
                    "path": age.path,
                    "max_age_seconds": age.max_age,
                    "age_seconds": age.age,
                    "due": age.due(),
                })
            })
            .collect();
        format!("{}\n", serde_json::Value::Array(rows))
    } else {
        ages.iter()
            .filter(|age| age.due())
            .map(|age| format!("{}\n", age.path))
            .collect()
    };
    write_stdout(text.as_bytes())
}

/// `runvault rm`.
pub fn rm(global: &GlobalArgs, args: &RmArgs) -> Result<(), CommandError> {
    let path = parse_path(&args.path)?;
    let credential = input::unlock_credential(global)?;
    let removed = vault_dir(global).modify(&credential, "rm", |vault, _, record| {
        vault.refuse_pending_under(&path)?;
        let removed = vault.remove(&path, args.purge)?;
        let action = if args.purge { "purge" } else { "remove" };
        record.changes.push(vault.audit_change(&path, action)?);
        Ok(removed)
    })?;
    status(format_args!("removed `{path}` ({removed} value(s))"));
    Ok(())
}

/// `runvault verify [--accept-rollback]`.
pub fn verify(global: &GlobalArgs, args: &VerifyArgs) -> Result<(), CommandError> {
    let credential = input::unlock_credential(global)?;
    let dir = vault_dir(global);
    let (vault, count, mark) = if args.accept_rollback {
        let (vault, count, previous) = dir.accept_rollback(&credential)?;
        let generation = vault.header().generation;
        match previous {
            Some(previous) if previous > generation => status(format_args!(
                "accepted the rollback: the high-water mark of `{}` went from generation {previous} down to {generation}",
                dir.vault_path().display()
            )),
            _ => status(format_args!(
                "recorded generation {generation} as the high-water mark of `{}`",
                dir.vault_path().display()
            )),
        }
        (vault, count, Some(generation))
    } else {
        let (vault, _) = dir.open(&credential)?;
        let count = vault.verify_all()?;
        let mark = dir.check_rollback(vault.header())?;
        (vault, count, mark)
    };
    let header = vault.header();
    let mark = match mark {
        Some(mark) => format!("high-water mark {mark}"),
        None => "no high-water mark on this host".to_owned(),
    };
    let text = format!(
        "ok: `{}` authenticated; {count} value(s) decrypt; generation {}; {mark}; {} key slot(s); opened with slot {}\n",
        dir.vault_path().display(),
        header.generation,
        header.slots.len(),
        vault.unlocked_with().unwrap_or_default(),
    );
    write_stdout(text.as_bytes())
}

/// `runvault import`.
pub fn import(global: &GlobalArgs, args: &ImportArgs) -> Result<(), CommandError> {
    let bytes = if args.file.as_os_str() == "-" {
        input::read_stdin(fs::Limit::IMPORT)?
    } else {
        crate::core::secret::SecretBytes::new(fs::read_nofollow(&args.file, fs::Limit::IMPORT)?)
    };
    let tree = crate::vault::read_plain_yaml(bytes.expose(), &args.file)?;
    drop(bytes);
    let credential = input::unlock_credential(global)?;
    let progress = crate::cli::output::Bar::new("importing");
    let progress_ref = &progress;
    let written = vault_dir(global).modify(&credential, "import", move |vault, _, record| {
        // The plaintext is consumed: each value is freed once sealed.
        record.changes = vault.merge(tree, "import", progress_ref)?;
        // A path with a pending rotation is not imported over: nothing is written.
        for change in &record.changes {
            vault.refuse_pending_under(&KeyPath::parse(&change.path)?)?;
        }
        Ok(record.changes.len())
    })?;
    drop(progress);
    status(format_args!(
        "imported {written} value(s) from `{}`",
        args.file.display()
    ));
    Ok(())
}

/// `runvault export`.
pub fn export(global: &GlobalArgs, args: &ExportArgs) -> Result<(), CommandError> {
    let prefix = parse_prefix(args.prefix.as_deref())?;
    if let Some(output) = &args.output {
        refuse_plaintext_in_vault_dir(output, &global.dir)?;
    }
    let credential = input::unlock_credential(global)?;
    let format = match args.format {
        ExportFormat::Yaml => RenderFormat::Yaml,
        ExportFormat::Json => RenderFormat::Json,
        ExportFormat::Env => RenderFormat::Env,
    };
    let rendered = crate::vault::export(&vault_dir(global), &credential, &prefix, format)?;
    match &args.output {
        Some(output) => {
            fs::create_private_parents(output)?;
            fs::write_owned(output, rendered.expose(), fs::Owned::PLAINTEXT)?;
            status(format_args!(
                "wrote plaintext to `{}` (mode 0600)",
                output.display()
            ));
            Ok(())
        }
        None => write_stdout(rendered.expose()),
    }
}

/// `runvault keygen`.
pub fn keygen(global: &GlobalArgs, args: &KeygenArgs) -> Result<(), CommandError> {
    create_key_file(&args.file, &global.dir)?;
    status(format_args!(
        "wrote a new 256-bit key to `{}` (mode 0400)",
        args.file.display()
    ));
    if global.layout.given("file") {
        let update = crate::core::host_file::HostFile {
            key_file: Some(std::path::absolute(&args.file).unwrap_or_else(|_| args.file.clone())),
            ..Default::default()
        };
        remember(global, &update);
    }
    Ok(())
}

/// `runvault key ...`.
pub fn key(global: &GlobalArgs, args: KeyArgs) -> Result<(), CommandError> {
    // A new secret that comes from a file is read first: a refused file
    // is reported before the current passphrase is asked for.
    let new_from_file = match &args.command {
        KeyCommand::Add {
            kind: KeyAddKind::Keyfile { file },
        } => Some(NewSecret::KeyFile(read_key_file(file)?)),
        KeyCommand::Add {
            kind:
                KeyAddKind::Passphrase {
                    new_passphrase_file: Some(file),
                    short,
                    ..
                },
        }
        | KeyCommand::Passwd {
            new_passphrase_file: Some(file),
            short,
            ..
        } => Some(NewSecret::Passphrase(input::new_passphrase_file(
            file,
            short.allow_short_passphrase,
        )?)),
        _ => None,
    };
    // A recipient is checked before any secret is asked for.
    let recipient = match &args.command {
        KeyCommand::Add {
            kind: KeyAddKind::Recipient { recipient, .. },
        } => Some(canonical_recipient(recipient)?),
        _ => None,
    };
    let credential = input::unlock_credential(global)?;
    let vault = vault_dir(global);
    match args.command {
        KeyCommand::List { json } => {
            let (unlocked, _) = vault.open(&credential)?;
            write_stdout(render_slots(unlocked.header(), json).as_bytes())
        }
        KeyCommand::Add {
            kind: KeyAddKind::Recipient { label, .. },
        } => {
            let recipient = recipient.expect("parsed above");
            add_recipient(&vault, &credential, &recipient, label.as_deref())
        }
        KeyCommand::Add { kind } => {
            let new_credential = match (new_from_file, &kind) {
                (Some(NewSecret::KeyFile(key)), _) => Credential::KeyFile(key),
                (passphrase, KeyAddKind::Passphrase { kdf, short, .. }) => input::new_passphrase(
                    passphrase.and_then(NewSecret::passphrase),
                    kdf,
                    KdfParams::DEFAULT,
                    short.allow_short_passphrase,
                )?,
                (_, KeyAddKind::Keyfile { file }) => Credential::KeyFile(read_key_file(file)?),
                (_, KeyAddKind::Recipient { .. }) => unreachable!("handled above"),
            };
            let id = vault.modify(&credential, "key add", |unlocked, salt, record| {
                let id = unlocked.add_slot(&new_credential, salt)?;
                record.detail = Some(format!("added {} slot {id}", new_credential.kind_name()));
                Ok(id)
            })?;
            status(format_args!(
                "added {} slot {id}",
                new_credential.kind_name()
            ));
            Ok(())
        }
        KeyCommand::Passwd {
            slot, kdf, short, ..
        } => {
            // The slot's current parameters are only defaults for the new
            // passphrase (bounded by `check`), so the unauthenticated header
            // will do; the KDF then runs once, in `modify`.
            let (encrypted, _) = vault.load()?;
            let base = match encrypted
                .header
                .slots
                .iter()
                .find(|s| s.id == slot)
                .map(|s| &s.kind)
            {
                Some(SlotKind::Passphrase(params)) => *params,
                Some(other) => {
                    return Err(VaultError::NotPassphraseSlot {
                        id: slot,
                        kind: other.name(),
                    }
                    .into());
                }
                None => {
                    return Err(VaultError::NoSuchSlot {
                        id: slot,
                        dir: vault.dir().to_path_buf(),
                    }
                    .into());
                }
            };
            let new_credential = input::new_passphrase(
                new_from_file.and_then(NewSecret::passphrase),
                &kdf,
                base,
                short.allow_short_passphrase,
            )?;
            // Any secret that opens the vault may change any passphrase
            // slot (it could add and remove slots anyway; the machine key
            // recovers a forgotten passphrase this way): say which opened.
            let opened_by = vault.modify(&credential, "key passwd", |unlocked, salt, record| {
                let opened_by = unlocked.unlocked_with();
                record.detail = Some(format!("changed the passphrase of slot {slot}"));
                unlocked.change_passphrase(slot, &new_credential, salt)?;
                Ok(opened_by)
            })?;
            let by = match opened_by {
                Some(other) if other != slot => format!(", opened with slot {other}'s secret"),
                _ => String::new(),
            };
            status(format_args!(
                "changed the passphrase of slot {slot}{by}; no value was re-encrypted"
            ));
            Ok(())
        }
        KeyCommand::Remove { slot, json } => {
            let (removed, paths) =
                vault.modify(&credential, "key remove", |unlocked, _, record| {
                    record.detail = Some(format!("removed slot {slot}"));
                    let removed = unlocked
                        .header()
                        .slots
                        .iter()
                        .find(|s| s.id == slot)
                        .cloned();
                    let mut paths = Vec::new();
                    unlocked
                        .secrets()
                        .for_each_leaf(&mut |path, _| paths.push(path.to_string()));
                    unlocked.remove_slot(slot)?;
                    Ok((removed.expect("remove_slot found it"), paths))
                })?;
            let rekey = context::vault_command(global, "rekey");
            status(format_args!(
                "removed slot {slot}; its secret still opens copies and backups of the vault \
                 made before, and the data key stays the same until you run `{rekey}`"
            ));
            let recipient = match &removed.kind {
                SlotKind::Recipient(recipient) => Some(recipient),
                _ => None,
            };
            if let Some(recipient) = recipient {
                status(format_args!(
                    "slot {slot} was the recipient `{}`: that host still holds the data key it \
                     could open, so run `{rekey}` now (the new key is sealed to the other \
                     recipients only), then rotate at its source each of the {} value(s) it \
                     could read (with --json, `key remove` lists them)",
                    recipient.recipient,
                    paths.len()
                ));
            }
            if !json {
                return Ok(());
            }
            let mut report = serde_json::json!({"removed": slot, "kind": removed.kind.name()});
            if let Some(recipient) = recipient {
                report["recipient"] = recipient.recipient.clone().into();
                if let Some(label) = &recipient.label {
                    report["label"] = label.clone().into();
                }
                report["rekey"] = true.into();
                report["rotate"] = paths.into();
            }
            write_stdout(format!("{report}\n").as_bytes())
        }
    }
}

/// `key add recipient`: adds the slot, or says which slot the recipient
/// already has and changes nothing (reruns by Ansible are no-ops). One
/// opening of the vault either way.
fn add_recipient(
    vault: &VaultDir,
    credential: &Credential,
    recipient: &str,
    label: Option<&str>,
) -> Result<(), CommandError> {
    let has_slot = |header: &crate::vault::Header| {
        (header.slots.iter())
            .find(|slot| matches!(&slot.kind, SlotKind::Recipient(r) if r.recipient == recipient))
            .map(|slot| slot.id)
    };
    // The file as it stands says whether there is work; a slot it claims
    // is believed only once the vault opens and authenticates.
    let (loaded, _) = vault.load()?;
    if has_slot(&loaded.header).is_some() {
        let (opened, _) = vault.open(credential)?;
        if let Some(id) = has_slot(opened.header()) {
            status(format_args!("recipient already has slot {id}"));
            return Ok(());
        }
    }
    let added = vault.modify(credential, "key add", |unlocked, _, record| {
        let id = match unlocked.add_recipient_slot(recipient, label)? {
            Ok(id) => id,
            Err(id) => {
                return Err(VaultError::Usage(format!(
                    "recipient already has slot {id} (added by another writer meanwhile)"
                )));
            }
        };
        record.detail = Some(format!("added recipient slot {id} for `{recipient}`"));
        Ok(id)
    })?;
    write_stdout(format!("added slot {added}\n").as_bytes())
}

/// A new slot's secret read before the vault is unlocked.
enum NewSecret {
    KeyFile(crate::core::secret::Key32),
    Passphrase(crate::core::secret::SecretBytes),
}

impl NewSecret {
    fn passphrase(self) -> Option<crate::core::secret::SecretBytes> {
        match self {
            NewSecret::Passphrase(passphrase) => Some(passphrase),
            NewSecret::KeyFile(_) => None,
        }
    }
}

fn render_slots(header: &crate::vault::Header, json: bool) -> String {
    let rows: Vec<serde_json::Value> = header
        .slots
        .iter()
        .map(|slot| {
            let mut row = serde_json::json!({"id": slot.id, "kind": slot.kind.name(), "created": slot.created});
            if let SlotKind::Recipient(recipient) = &slot.kind {
                row["recipient"] = recipient.recipient.clone().into();
                if let Some(label) = &recipient.label {
                    row["label"] = label.clone().into();
                }
            }
            if let SlotKind::Passphrase(p) = &slot.kind {
                row["kdf"] = serde_json::json!({
                    "algorithm": "argon2id", "memory_kib": p.memory_kib,
                    "iterations": p.iterations, "parallelism": p.parallelism
                });
            }
            row
        })
        .collect();
    if json {
        return format!("{}\n", serde_json::Value::Array(rows));
    }
    let any_recipient = (header.slots.iter()).any(|s| matches!(s.kind, SlotKind::Recipient(_)));
    let last = if any_recipient {
        "KDF / RECIPIENT"
    } else {
        "KDF"
    };
    let mut table = Table::new(&[4, 11, 21]).header(&["ID", "KIND", "CREATED", last]);
    for slot in &header.slots {
        let kdf = match &slot.kind {
            SlotKind::Passphrase(p) => format!(
                "argon2id m={}KiB t={} p={}",
                p.memory_kib, p.iterations, p.parallelism
            ),
            SlotKind::KeyFile => "hkdf-sha256".to_string(),
            SlotKind::Recipient(recipient) => match &recipient.label {
                Some(label) => format!("{} ({label})", recipient.recipient),
                None => recipient.recipient.clone(),
            },
        };
        table.row([
            slot.id.to_string().into(),
            slot.kind.name().into(),
            slot.created.clone().into(),
            kdf.into(),
        ]);
    }
    table.render(crate::cli::output::stdout_color())
}
