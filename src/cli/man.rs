//! `runvault man`: the man pages, generated from the clap definitions.
//!
//! The top page `runvault(1)` goes to standard output; with `--dir DIR`
//! one page per command is written there (created 0755 if missing;
//! `runvault.1`,
//! `runvault-key-add-passphrase.1`, ...), each with every option the
//! command takes, its subcommands' pages, the exit codes
//! ([`exit::TABLE`](crate::core::exit::TABLE)) and SEE ALSO naming the
//! parent and child pages, all of which exist.
//!
//! Uses `output` (the one stdout writer) only.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::args::Cli;
use crate::cli::output;
use crate::core::exit::{self, CommandError};
use crate::core::fs::{self, WriteMode};

/// Man pages are public: 0644 when new, as `man` installs them.
const PAGE_MODE: WriteMode = WriteMode {
    new_file_mode: 0o644,
    keep_mode_mask: 0o7777,
};

/// Prints the top page, or writes every command's page into `dir`.
pub fn man(dir: Option<&Path>) -> Result<(), CommandError> {
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    let Some(dir) = dir else {
        return output::with_stdout(|out| render(&top, None, out));
    };
    // Never beside a vault (`--dir` names one everywhere else).
    if dir.join(crate::vault::VAULT_FILE).exists() {
        return Err(CommandError::usage(format!(
            "`{}` holds a vault; write the man pages into another directory",
            dir.display()
        )));
    }
    fs::create_dir_with_mode(dir, 0o755)?;
    let mut written = 0;
    write_pages(&top, None, dir, &mut written)?;
    output::note(format_args!(
        "wrote {written} man pages into `{}`",
        dir.display()
    ));
    Ok(())
}

/// Writes the page of `cmd` and of each of its subcommands, depth first.
fn write_pages(
    cmd: &clap::Command,
    parent: Option<&str>,
    dir: &Path,
    written: &mut usize,
) -> Result<(), CommandError> {
    let mut page = Vec::new();
    render(cmd, parent, &mut page).map_err(|err| {
        CommandError::with_code(exit::OTHER, format!("cannot render a man page: {err}"))
    })?;
    fs::write_atomic(&dir.join(format!("{}.1", page_name(cmd))), &page, PAGE_MODE)?;
    *written += 1;
    for sub in visible_subcommands(cmd) {
        write_pages(sub, Some(&page_name(cmd)), dir, written)?;
    }
    Ok(())
}

/// `runvault`, `runvault-key`, `runvault-key-add`: the page's name, as
/// clap names the subcommands' pages in the SUBCOMMANDS section.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or(cmd.get_name()).to_string()
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|sub| !sub.is_hide_set())
}

/// One page: clap_mangen's sections, then EXIT STATUS and SEE ALSO.
fn render(cmd: &clap::Command, parent: Option<&str>, out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if cmd.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if visible_subcommands(cmd).next().is_some() {
        man.render_subcommands_section(out)?;
    }
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for (code, meaning) in exit::TABLE {
        writeln!(out, ".TP\n{code}\n{}", escape(meaning))?;
    }
    let mut see_also: Vec<String> = parent.map(str::to_string).into_iter().collect();
    see_also.extend(visible_subcommands(cmd).map(page_name));
    if !see_also.is_empty() {
        let refs: Vec<String> = see_also
            .iter()
            .map(|name| format!("\\fB{}\\fR(1)", escape(name)))
            .collect();
        writeln!(out, ".SH \"SEE ALSO\"\n{}", refs.join(",\n"))?;
    }
    if cmd.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// Text as a roff text line: backslashes and hyphens escaped, and no
/// leading `.` or `'` that roff would read as a request.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
