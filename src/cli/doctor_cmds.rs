//! Handler of `runvault doctor`: gathers the findings and prints them.

use std::path::PathBuf;

use crate::cli::args::{DoctorArgs, GlobalArgs};
use crate::cli::input;
use crate::cli::vault_cmds::{vault_dir, write_stdout};
use crate::core::exit::{self, CommandError};
use crate::doctor::{self, host, views};

/// Where the machine key lives when `--key-file` is not given.
const DEFAULT_KEY_FILE: &str = "/etc/runvault/vault.key";

/// `runvault doctor`.
pub fn doctor(global: &GlobalArgs, args: DoctorArgs) -> Result<(), CommandError> {
    // A secret is used only when the admin named one; doctor never prompts.
    let credential = if global.key_file.is_some() || global.passphrase_file.is_some() {
        Some(input::unlock_credential(global)?)
    } else {
        None
    };
    let vault = vault_dir(global);
    let mut findings = host::check_secrets(&vault, credential.as_ref());
    let key_file = global
        .key_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE));
    findings.extend(host::check_key_file(&key_file, &global.dir));
    findings.extend(views::check_views(
        &vault,
        &crate::view::read_views(&global.views_file)?,
    ));
    let report = if args.json {
        doctor::render_json(&findings)
    } else {
        doctor::render_text(&findings)
    };
    write_stdout(report.as_bytes())?;
    if doctor::any_failed(&findings) {
        return Err(CommandError::with_code(
            exit::OTHER,
            "doctor found problems (see the FAIL lines above)",
        ));
    }
    Ok(())
}
