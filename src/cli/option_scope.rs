//! Which global options a command's help, man page and completions show.
//!
//! The global options (`--dir`, `--passphrase-file`, `--key-file`, ...,
//! `--config`) are copied into every command by clap; a command that uses
//! neither the vault nor the layout file (`man`, `completions`) or only
//! the layout file (`runner register`) hides those that do not apply to
//! it. They are hidden, not removed: still accepted, as before or after
//! any command. Any option added to the global group is hidden from them
//! too, with no change here.
//!
//! Uses nothing else of the command line.

use clap::Arg;

/// The global options that apply to every command: how much is printed.
const EVERYWHERE: [&str; 2] = ["verbose", "quiet"];

/// Hides `arg` if it is a global option (copied in from a parent) that
/// neither applies [`EVERYWHERE`] nor is in `keep`. For clap's
/// `mut_args`, which sees the global options already copied in.
pub fn hide_globals_unless(arg: Arg, keep: &[&str]) -> Arg {
    let id = arg.get_id().as_str();
    if arg.is_global_set() && !EVERYWHERE.contains(&id) && !keep.contains(&id) {
        arg.hide(true)
    } else {
        arg
    }
}
