//! Handlers of the fleet commands (issue 21, docs/fleet.md): a host's
//! identity (`keygen --identity`, `keygen --recipient`), `receive`, and
//! the refusal of local changes on a managed host.
//!
//! A handler file: it uses the definitions, `input`, `output` and
//! `context` below it, and no other handler (see `context` for the order).

use std::path::PathBuf;

use crate::cli::args::{GlobalArgs, KeygenArgs, ReceiveArgs};
use crate::cli::context::{remember, vault_dir};
use crate::cli::defaults::IDENTITY_FLAG;
use crate::cli::input;
use crate::cli::output::{note as status, write_stdout};
use crate::core::exit::{self, CommandError, ExitStatus};
use crate::core::layout::DEFAULT_IDENTITY_FILE;
use crate::vault::{
    Credential, ReadOnlyDir, ReceiveOptions, Received, VaultError, create_identity_file,
    read_identity_file,
};

/// Whether `keygen` is asked for an identity (`--identity`, `--recipient`)
/// rather than a machine key file.
pub fn is_identity_keygen(global: &GlobalArgs, args: &KeygenArgs) -> bool {
    args.recipient.is_some() || global.layout.given(IDENTITY_FLAG)
}

/// `runvault keygen --identity [FILE]` and `runvault keygen --recipient
/// FILE`: stdout carries only the recipient.
pub fn keygen(global: &GlobalArgs, args: &KeygenArgs) -> Result<(), CommandError> {
    if let Some(file) = &args.recipient {
        let identity = read_identity_file(file)?;
        return write_stdout(format!("{}\n", identity.recipient()).as_bytes());
    }
    if global.layout.given("file") {
        return Err(CommandError::usage(
            "give the identity's file as `keygen --identity FILE`, not as keygen's key file",
        ));
    }
    let named = global
        .identity
        .clone()
        .filter(|path| !path.as_os_str().is_empty());
    let file = named
        .clone()
        .or_else(|| global.layout.identity_file.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_IDENTITY_FILE));
    let recipient = create_identity_file(&file, &global.dir)?;
    status(format_args!(
        "wrote a new age identity to `{}` (mode 0400); its recipient is on stdout",
        file.display()
    ));
    if named.is_some() {
        let update = crate::core::host_file::HostFile {
            identity_file: Some(std::path::absolute(&file).unwrap_or(file)),
            ..Default::default()
        };
        remember(global, &update);
    }
    write_stdout(format!("{recipient}\n").as_bytes())
}

/// `runvault receive STAGING_DIR`: stdout `installed generation N` or
/// `unchanged: generation N`.
pub fn receive(global: &GlobalArgs, args: &ReceiveArgs) -> Result<(), CommandError> {
    if let Some(source) = &args.source
        && (source.is_empty() || source.len() > 200 || source.chars().any(char::is_control))
    {
        return Err(CommandError::usage(
            "--source must be 1 to 200 characters of text (e.g. ansible:prod@controller)",
        ));
    }
    let credential = receive_credential(global)?;
    let options = ReceiveOptions {
        replace_vault: args.replace_vault,
        source: args.source.as_deref(),
    };
    let received = vault_dir(global).receive(&args.staging_dir, &credential, options);
    let text = match received.map_err(|err| not_sealed_to_this_host(err, &credential, args))? {
        Received::Installed {
            generation,
            previous,
        } => {
            match previous {
                Some(previous) => status(format_args!(
                    "installed generation {generation} in `{}` (was {previous})",
                    global.dir.display()
                )),
                None => status(format_args!(
                    "installed generation {generation} in `{}`",
                    global.dir.display()
                )),
            }
            format!("installed generation {generation}\n")
        }
        Received::Unchanged { generation } => format!("unchanged: generation {generation}\n"),
    };
    write_stdout(text.as_bytes())
}

/// A shipped vault with no slot for this host's identity: the slot is
/// added on the admin's vault (the staging copy is only a copy), so the
/// hint names this host's recipient for that `key add`.
fn not_sealed_to_this_host(
    err: VaultError,
    credential: &Credential,
    args: &ReceiveArgs,
) -> CommandError {
    match (&err, credential) {
        (
            VaultError::NoSlotOfKind { .. } | VaultError::WrongSecret { .. },
            Credential::Identity(identity),
        ) => CommandError::with_code(
            err.exit_code(),
            format!(
                "the vault in `{}` has no slot for this host's identity; on the admin's vault, \
                 add it with `runvault key add recipient {}` and ship the vault again",
                args.staging_dir.display(),
                crate::core::shell::word(identity.recipient())
            ),
        ),
        _ => err.into(),
    }
}

/// The secret `receive` opens the shipped vault with: `--key-file`, else
/// `--identity`, else the layout's identity, else
/// `/etc/runvault/host.key` if it exists, else the passphrase.
fn receive_credential(global: &GlobalArgs) -> Result<Credential, CommandError> {
    if global.key_file.is_some() || input::identity_file(global)?.is_some() {
        return Ok(input::unlock_credential(global)?);
    }
    let default = global
        .layout
        .identity_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_IDENTITY_FILE));
    if global.passphrase_file.is_none() && default.exists() {
        return Ok(Credential::Identity(read_identity_file(&default)?));
    }
    Ok(input::unlock_credential(global)?)
}

/// Refuses a local change on a managed host (exit 1) unless `--local`:
/// the next `receive` would replace it. Called before any secret is read.
pub fn refuse_on_managed_host(global: &GlobalArgs) -> Result<(), CommandError> {
    if global.local {
        return Ok(());
    }
    let dir = ReadOnlyDir::new(&global.dir).with_state_dir(&global.state_dir_or_default());
    let managed = match dir.marks().managed(&global.dir) {
        Ok(Some(managed)) => managed,
        Ok(None) => return Ok(()),
        // A state directory this user cannot use has no record to read;
        // the writer warns about its high-water mark there, as before.
        Err(crate::vault::VaultError::Fs(err)) => {
            tracing::debug!("the managed-host record cannot be read: {err}");
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    let source = managed
        .source
        .as_deref()
        .unwrap_or("its source vault (no --source given)");
    Err(CommandError::with_code(
        exit::OTHER,
        format!(
            "`{}` is managed: it receives its vault from {source} (last generation {}), and the \
             next `runvault receive` would replace a local change; make the change there, or \
             pass --local if you mean to change this host alone",
            global.dir.display(),
            managed.generation
        ),
    ))
}
