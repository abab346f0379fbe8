//! Handlers of the job commands, `exec` and `render`: validate arguments,
//! then hand over to [`crate::jobs`]. The credential is read only if a
//! reference or export needs the vault.
//!
//! A handler file: it uses the definitions, `input`, `output` and
//! `context` below it, and no other handler (see `context` for the order).

use crate::cli::args::{ExecArgs, GlobalArgs, RenderArgs};
use crate::cli::context::{self, parse_path, refuse_plaintext_in_vault_dir, vault_dir};
use crate::cli::input;
use crate::cli::output::{note as status, write_stdout};
use crate::core::exit::CommandError;
use crate::jobs::exec::{self, ExecRequest};
use crate::jobs::render;

/// `runvault exec`: on success this never returns (the process is replaced).
pub fn exec(global: &GlobalArgs, args: ExecArgs) -> Result<(), CommandError> {
    let request = ExecRequest {
        only: args.only,
        exports: args
            .exports
            .iter()
            .map(|prefix| parse_path(prefix))
            .collect::<Result<_, _>>()?,
        pristine: args.pristine,
        command: args.command,
    };
    let prepared = exec::prepare(
        &vault_dir(global),
        || input::unlock_credential(global),
        std::env::vars_os().collect(),
        &request,
    )?;
    for warning in &prepared.notes {
        crate::cli::output::warn(format_args!("{warning}"));
    }
    context::report_kdf_runs();
    Err(exec::exec(&prepared, &request.command).into())
}

/// `runvault render`.
pub fn render(global: &GlobalArgs, args: &RenderArgs) -> Result<(), CommandError> {
    if let Some(output) = &args.output {
        refuse_plaintext_in_vault_dir(output, &global.dir)?;
    }
    let rendered = render::render(
        &vault_dir(global),
        || input::unlock_credential(global),
        &args.template,
        args.output.as_deref(),
    )?;
    match (rendered, &args.output) {
        (Some(text), _) => write_stdout(text.expose()),
        (None, Some(output)) => {
            status(format_args!("wrote `{}` (mode 0600)", output.display()));
            Ok(())
        }
        (None, None) => unreachable!("render returns the text when there is no output file"),
    }
}
