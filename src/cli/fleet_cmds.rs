//! Handlers of the fleet commands (issue 21, docs/fleet.md): a host's
//! identity (`keygen --identity`, `keygen --recipient`).
//!
//! A handler file: it uses the definitions, `input`, `output` and
//! `context` below it, and no other handler (see `context` for the order).

use std::path::PathBuf;

use crate::cli::args::{GlobalArgs, KeygenArgs};
use crate::cli::context::remember;
use crate::cli::defaults::IDENTITY_FLAG;
use crate::cli::output::{note as status, write_stdout};
use crate::core::exit::CommandError;
use crate::core::layout::DEFAULT_IDENTITY_FILE;
use crate::vault::{create_identity_file, read_identity_file};

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
