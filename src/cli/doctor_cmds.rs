//! Handler of `runvault doctor`: gathers the findings and prints them.
//!
//! A handler file: it uses the definitions, `input`, `output`, `table` and
//! `context` below it, and no other handler (see `context` for the order).

use crate::cli::args::{DoctorArgs, GlobalArgs};
use crate::cli::context::{block_on, runner_command, vault_dir, wired_identity, wiring};
use crate::cli::input;
use crate::cli::output::{stdout_color, write_stdout};
use crate::cli::table::{Cell, Table, Tone};
use crate::core::exit::{self, CommandError};
use crate::doctor::{self, Finding, Status, host, views};

/// `runvault doctor`.
pub fn doctor(global: &GlobalArgs, args: &DoctorArgs) -> Result<(), CommandError> {
    // A secret is used only when the admin named one; doctor never prompts.
    // A named key file that does not exist is a finding (`keyfile.exists`).
    let credential = match (&global.key_file, &global.passphrase_file) {
        (None, None) if input::identity_file(global)?.is_some() => {
            Some(input::unlock_credential(global)?)
        }
        (None, None) => None,
        (Some(key), None) if !key.exists() => None,
        _ => Some(input::unlock_credential(global)?),
    };
    let vault = vault_dir(global);
    let mut findings = vec![layout_finding(global)];
    findings.extend(host::check_secrets(&vault, credential.as_ref()));
    // A fleet host's jobs open the vault with its identity, not a key file.
    findings.extend(match wired_identity(global) {
        Some(identity) => host::check_identity(&identity, &global.dir),
        None => host::check_key_file(&global.key_file_or_default(), &global.dir),
    });
    findings.extend(host::check_managed(&vault));
    findings.extend(match crate::view::read_views(&global.views_file) {
        Ok(entries) => views::check_views(&vault, &entries),
        // A views file this user may not read (a non-root user on a host
        // laid out for root): reported, not an error before the report.
        Err(crate::view::ViewError::Fs(err)) if err.is_permission_denied() => {
            vec![doctor::not_checked("views", &global.views_file)]
        }
        Err(err) => return Err(err.into()),
    });
    if args.runner.name.is_some() {
        let target = args.runner.target()?;
        let wiring = wiring(global, &args.bin_dir, &args.jobs)?;
        let commands = doctor::runner::Commands {
            configure: runner_command(
                global,
                &target,
                "configure",
                Some((&args.bin_dir, &args.jobs)),
            ),
            start: runner_command(global, &target, "start", None),
            install: runner_command(
                global,
                &target,
                "install",
                Some((&args.bin_dir, &args.jobs)),
            ),
        };
        findings.extend(doctor::runner::check_config(&target, &wiring, &commands));
        findings.extend(doctor::runner::check_bin_dir(&wiring, &commands));
        findings.extend(block_on(async {
            Ok(doctor::runner::check_engine(&target, &commands).await)
        })?);
    } else {
        findings.push(Finding::warn(
            "runner.skipped",
            "no runner name: config.toml and the runner container were not checked",
            "pass --name NAME (and --config-dir DIR unless it is /srv/dataops-runner-NAME/config)",
        ));
    }
    if let Some(user) = doctor::user_finding(&findings) {
        findings.insert(0, user);
    }
    let report = if args.json {
        doctor::render_json(&findings)
    } else {
        render_text(&findings)
    };
    write_stdout(report.as_bytes())?;
    if doctor::any_failed(&findings) {
        let where_to_look = if args.json {
            "doctor found problems (see the findings with \"status\": \"fail\")"
        } else {
            "doctor found problems (see the FAIL lines above)"
        };
        return Err(CommandError::with_code(exit::OTHER, where_to_look));
    }
    Ok(())
}

/// `layout.file`: which layout file gave the defaults (see
/// `cli::defaults`).
fn layout_finding(global: &GlobalArgs) -> Finding {
    let file = global.layout.file.display();
    let message = if global.layout.read == Some(true) {
        format!("defaults from the layout file `{file}`")
    } else {
        format!("no layout file `{file}`: built-in defaults")
    };
    Finding::ok("layout.file", message)
}

/// The human report: one aligned line per check (status coloured on a
/// terminal), then the summary.
fn render_text(findings: &[Finding]) -> String {
    let mut table = Table::new(&[4, 28]);
    for finding in findings {
        let status = match finding.status {
            Status::Ok => Cell::toned("ok", Tone::Good),
            Status::Warn => Cell::toned("warn", Tone::Warn),
            Status::Fail => Cell::toned("FAIL", Tone::Bad),
        };
        let message = match &finding.hint {
            Some(hint) => format!("{} (hint: {hint})", finding.message),
            None => finding.message.clone(),
        };
        table.row([status, finding.check.into(), message.into()]);
    }
    let mut out = table.render(stdout_color());
    out.push_str(&doctor::summary(findings));
    out.push('\n');
    out
}
