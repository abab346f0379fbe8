//! Handlers of `runvault view ...`. The hook that refreshes every
//! configured view after a committed change is part of the vault directory
//! every handler opens, so it lives in `context`.
//!
//! A handler file: it uses the definitions, `input`, `output`, `table` and
//! `context` below it, and no other handler (see `context` for the order).

use std::path::{Path, PathBuf};

use crate::cli::args::{GlobalArgs, ViewArgs, ViewCommand};
use crate::cli::context::{layout_update, remember, vault_dir};
use crate::cli::input;
use crate::cli::output::{note as status, write_stdout};
use crate::cli::table::{Cell, Table, Tone};
use crate::core::exit::CommandError;
use crate::core::fs::{self, WriteMode};
use crate::view::{self, ViewEntry, ViewError};

/// `runvault view ...`.
pub fn view(global: &GlobalArgs, args: ViewArgs) -> Result<(), CommandError> {
    match args.command {
        ViewCommand::Refresh {
            out,
            all,
            allow_disk,
        } => {
            let targets = match out {
                Some(dir) => vec![ViewEntry { dir, allow_disk }],
                None if all => view::read_views(&global.views_file)?,
                None => unreachable!("clap requires --out or --all"),
            };
            refresh_now(global, &targets)?;
            for entry in &targets {
                status(format_args!("refreshed view `{}`", entry.dir.display()));
            }
            Ok(())
        }
        ViewCommand::List { json } => list(global, json),
        ViewCommand::Add {
            view_dir,
            allow_disk,
        } => {
            let dir = absolute(&view_dir)?;
            let mut views = view::read_views(&global.views_file)?;
            let entry = ViewEntry {
                dir: dir.clone(),
                allow_disk,
            };
            refresh_now(global, std::slice::from_ref(&entry))?;
            views.retain(|v| v.dir != dir);
            views.push(entry);
            view::write_views(&global.views_file, &views)?;
            status(format_args!(
                "added view `{}` to `{}`; every change now refreshes it",
                dir.display(),
                global.views_file.display()
            ));
            remember(global, &layout_update(global, false));
            Ok(())
        }
        ViewCommand::Remove {
            view_dir,
            keep_files,
        } => {
            let dir = absolute(&view_dir)?;
            let mut views = view::read_views(&global.views_file)?;
            let before = views.len();
            views.retain(|v| v.dir != dir);
            if views.len() == before {
                return Err(CommandError::with_code(
                    crate::core::exit::NOT_FOUND,
                    format!(
                        "`{}` is not a configured view; see `runvault view list`",
                        dir.display()
                    ),
                ));
            }
            view::write_views(&global.views_file, &views)?;
            if !keep_files {
                for name in view::VIEW_FILES {
                    let path = dir.join(name);
                    if path.exists() {
                        std::fs::remove_file(&path).map_err(fs::FsError::io("remove", &path))?;
                    }
                }
            }
            status(format_args!("removed view `{}`", dir.display()));
            Ok(())
        }
        ViewCommand::InstallUnit { unit_dir, binary } => {
            let binary = match binary {
                Some(binary) => binary,
                None => std::env::current_exe().map_err(|err| {
                    CommandError::with_code(
                        crate::core::exit::OTHER,
                        format!("cannot find this binary: {err}"),
                    )
                })?,
            };
            let key_file = global
                .key_file
                .clone()
                .unwrap_or_else(|| PathBuf::from("/etc/runvault/vault.key"));
            let unit = view::systemd_unit(
                &binary,
                &absolute(&global.dir)?,
                &key_file,
                &global.views_file,
            );
            let path = unit_dir.join("runvault-views.service");
            fs::create_dir_with_mode(&unit_dir, 0o755)?;
            let mode = WriteMode {
                new_file_mode: 0o644,
                keep_mode_mask: 0o7777,
            };
            fs::write_atomic(&path, unit.as_bytes(), mode)?;
            status(format_args!(
                "wrote `{}`; enable it with `systemctl daemon-reload && systemctl enable runvault-views.service`",
                path.display()
            ));
            Ok(())
        }
    }
}

/// Opens the vault once and writes each view, under the writers' lock so
/// that a concurrent change cannot be overwritten by an older view.
fn refresh_now(global: &GlobalArgs, targets: &[ViewEntry]) -> Result<(), CommandError> {
    let vault = vault_dir(global);
    let credential = input::unlock_credential(global)?;
    let _lock = vault.lock_writers()?;
    let (unlocked, salt) = vault.open(&credential)?;
    let generation = unlocked.header().generation;
    for entry in targets {
        view::refresh(
            &unlocked,
            &salt,
            &global.dir,
            generation,
            &entry.dir,
            entry.allow_disk,
        )?;
    }
    Ok(())
}

fn list(global: &GlobalArgs, json: bool) -> Result<(), CommandError> {
    let views = view::read_views(&global.views_file)?;
    let current = vault_dir(global)
        .load()
        .ok()
        .map(|(vault, _)| vault.header.generation);
    let rows: Vec<serde_json::Value> = views
        .iter()
        .map(|entry| {
            let marker = view::read_marker(&entry.dir);
            let on_ram = view::is_on_ram(&entry.dir).ok();
            serde_json::json!({
                "dir": entry.dir,
                "allow_disk": entry.allow_disk,
                "generation": marker.as_ref().map(|m| m.generation),
                "vault_generation": current,
                "current": marker.as_ref().is_some_and(|m| Some(m.generation) == current),
                "on_ram": on_ram,
            })
        })
        .collect();
    let text = if json {
        format!("{}\n", serde_json::Value::Array(rows))
    } else {
        let mut table = Table::new(&[40, 10]).header(&["VIEW", "GENERATION", "STATE"]);
        for row in &rows {
            let state = match (row["current"].as_bool(), row["generation"].as_u64()) {
                (_, None) => Cell::toned("missing", Tone::Bad),
                (Some(true), _) => Cell::toned("current", Tone::Good),
                _ => Cell::toned("stale", Tone::Warn),
            };
            let generation = row["generation"]
                .as_u64()
                .map_or("-".to_string(), |g| g.to_string());
            let dir = row["dir"].as_str().unwrap_or_default();
            table.row([dir.into(), generation.into(), state]);
        }
        table.render(crate::cli::output::stdout_color())
    };
    write_stdout(text.as_bytes())
}

fn absolute(dir: &Path) -> Result<PathBuf, ViewError> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(fs::FsError::io(
        "find the current directory",
        Path::new("."),
    ))?;
    Ok(cwd.join(dir))
}
