//! View checks: every configured plaintext view exists, shows the vault's
//! current generation, lives in RAM, is private, and is root's.

use std::os::unix::fs::MetadataExt;

use crate::core::hex::hex;
use crate::doctor::host::owner_check;
use crate::doctor::{Finding, not_checked};
use crate::vault::ReadOnlyDir;
use crate::view::{self, ViewEntry};

/// Checks each view in `views` against the vault.
pub fn check_views(vault: &ReadOnlyDir, views: &[ViewEntry]) -> Vec<Finding> {
    if views.is_empty() {
        return vec![Finding::ok("views", "no plaintext views are configured")];
    }
    let header = vault.load().ok().map(|(encrypted, _)| encrypted.header);
    let mut findings = Vec::new();
    for entry in views {
        let dir = entry.dir.display();
        let refresh_hint = "run `runvault view refresh --all` (with the key file)";
        let Some(marker) = view::read_marker(&entry.dir) else {
            let marker = entry.dir.join(view::MARKER_FILE);
            if crate::core::fs::read_optional(&marker, crate::core::fs::Limit::any("view marker"))
                .is_err_and(|err| err.is_permission_denied())
            {
                findings.push(not_checked("view.current", &marker));
                continue;
            }
            findings.push(Finding::fail(
                "view.current",
                format!("view `{dir}` is missing"),
                refresh_hint,
            ));
            continue;
        };
        findings.push(match &header {
            Some(h) if marker.vault_id != hex(&h.vault_id) => Finding::fail(
                "view.current",
                format!("view `{dir}` was made from another vault"),
                refresh_hint,
            ),
            Some(h) if marker.generation != h.generation => Finding::fail(
                "view.current",
                format!(
                    "view `{dir}` shows generation {}, the vault is at {}",
                    marker.generation, h.generation
                ),
                refresh_hint,
            ),
            Some(h) => Finding::ok(
                "view.current",
                format!("view `{dir}` shows generation {}", h.generation),
            ),
            None => Finding::warn(
                "view.current",
                format!("view `{dir}`: the vault cannot be read"),
                "see the vault checks",
            ),
        });
        findings.push(match view::is_on_ram(&entry.dir) {
            Ok(true) => Finding::ok("view.ram", format!("view `{dir}` is on tmpfs or ramfs")),
            Ok(false) => Finding::fail(
                "view.ram",
                format!("view `{dir}` is on a disk filesystem: plaintext credentials are on disk"),
                "move the view to a tmpfs (e.g. under /run) and remove this one with `runvault view remove`",
            ),
            Err(err) => Finding::fail("view.ram", err.to_string(), "check the view directory"),
        });
        let private = std::fs::metadata(&entry.dir).is_ok_and(|m| m.mode() & 0o7777 == 0o700)
            && ["vault.yml", "vault.salt"].iter().all(|name| {
                std::fs::metadata(entry.dir.join(name)).is_ok_and(|m| m.mode() & 0o7777 == 0o600)
            });
        findings.push(if private {
            Finding::ok("view.mode", format!("view `{dir}` is 0700 with 0600 files"))
        } else {
            Finding::fail(
                "view.mode",
                format!("view `{dir}` is readable by others"),
                refresh_hint,
            )
        });
        findings.push(view_owner(&entry.dir));
    }
    findings
}

/// `view.owner`: the directory and its files are root's; anyone else who
/// owns one could read the plaintext or replace what jobs read.
fn view_owner(dir: &std::path::Path) -> Finding {
    let paths = std::iter::once(dir.to_path_buf())
        .chain(view::VIEW_FILES.iter().map(|name| dir.join(name)));
    for path in paths {
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && meta.uid() != 0
        {
            return owner_check("view.owner", &path, meta.uid());
        }
    }
    Finding::ok(
        "view.owner",
        format!("view `{}` and its files are owned by root", dir.display()),
    )
}
