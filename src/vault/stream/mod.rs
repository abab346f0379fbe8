//! The streaming passes over a canonical `vault.yml`, which never build
//! the tree: the reader of a few values ([`select`], behind `get`, `exec`,
//! `render`), the writer of a one-path change ([`splice`], behind `set`)
//! and the rotation writer ([`rekey`]). Each hands back the slot it opened
//! when it cannot do the work, and its caller (the read dispatcher or the
//! store) falls back to the tree reader or writer without a second KDF
//! run.
//!
//! What every pass shares is here, once: the start ([`open_then`]: load
//! the file through the read-only directory, read the header, open a key
//! slot), the file MAC of a large file on a second core ([`file_mac`]),
//! and the walk of the `secrets:` section ([`walk_secrets`]). The path
//! encoding and MAC items are [`EncodedPath`] and [`TreeMac`] of the
//! format, and the history section is read by [`format::read_history`],
//! as the tree reader reads them.
//!
//! [`EncodedPath`]: crate::vault::format::EncodedPath
//! [`TreeMac`]: crate::vault::format::TreeMac

use crate::core::secret::Key32;
use crate::vault::canonical::{self, Lines, Visitor};
use crate::vault::crypto::MacWriter;
use crate::vault::dir::ReadOnlyDir;
use crate::vault::error::VaultError;
use crate::vault::format::{self, EncryptedVault, Header, SECRETS_KEY, read_header};
use crate::vault::keys::slots::{self, Credential, Opened};
use crate::vault::salt::Salt;

pub(crate) mod rekey;
pub(crate) mod select;
pub(crate) mod splice;

/// The start every streaming pass shares (this reader, `export`, and the
/// writers in `vault::splice` and `vault::rekey`): reads `vault.yml` and
/// its matching salt, reads the header of a canonical file and opens a key
/// slot (the one KDF run), then hands the lines after the header to
/// `body`. `Err` when the file is not canonical or `body` answers `None`:
/// then the tree reader decides, with the header and slot opened here if
/// it got that far. A secret that opens no slot is reported only if the
/// tree reader would take the file, so both give the same verdict.
pub(crate) fn open_then<R>(
    dir: &ReadOnlyDir,
    credential: &Credential,
    body: impl FnOnce(Lines<'_>, &Header, &Opened) -> Result<Option<R>, VaultError>,
) -> Result<Result<R, Option<(Header, Opened)>>, VaultError> {
    let opened = open_then_any(
        dir,
        std::slice::from_ref(credential),
        |lines, header, opened, _| body(lines, header, &opened.slot),
    )?;
    Ok(opened.map_err(|fallback| fallback.map(|(header, opened)| (header, opened.slot))))
}

/// A key slot opened by one of several credentials. No `Debug`: it holds
/// keys.
pub struct OpenedBy {
    /// The slot.
    pub slot: Opened,
    /// Which credential opened it.
    pub credential: usize,
}

/// [`open_then`] with several credentials: the first that opens a slot is
/// used, as the tree writer of `rekey` does, and `body` also gets the salt
/// that matches the file; if none opens one, the first error is reported.
pub(crate) fn open_then_any<R>(
    dir: &ReadOnlyDir,
    credentials: &[Credential],
    body: impl FnOnce(Lines<'_>, &Header, &OpenedBy, &Salt) -> Result<Option<R>, VaultError>,
) -> Result<Result<R, Option<(Header, OpenedBy)>>, VaultError> {
    let vault_path = dir.vault_path();
    let loaded = dir.load_with(|bytes| {
        Ok(leading_header(&bytes).map(|header| {
            let salt_id = header.salt_id;
            (bytes, salt_id)
        }))
    });
    let (bytes, salt) = match loaded {
        Ok(Some(loaded)) => loaded,
        // The tree reader parses the whole file before it looks for the
        // salt: if it would refuse the file, its verdict comes first.
        Ok(None) | Err(VaultError::SaltMissing { .. } | VaultError::SaltMismatch { .. }) => {
            return Ok(Err(None));
        }
        Err(err) => return Err(err),
    };
    // The header was read from the lines before `secrets:`; the whole file
    // must also pass the line checks, and give the same header.
    let Ok(mut lines) = Lines::new(&bytes) else {
        return Ok(Err(None));
    };
    let Some(header) = read_header(&mut lines) else {
        return Ok(Err(None));
    };
    let opened = match slots::unlock_any(&header, credentials, &salt, &vault_path) {
        Ok((slot, credential)) => OpenedBy { slot, credential },
        // The tree reader parses the whole file before it tries a key; if
        // it would refuse the file, its verdict comes first.
        Err(err) => {
            return match EncryptedVault::parse(&bytes) {
                Ok(_) => Err(err),
                Err(_) => Ok(Err(None)),
            };
        }
    };
    Ok(match body(lines, &header, &opened, &salt)? {
        Some(result) => Ok(result),
        None => Err(Some((header, opened))),
    })
}

/// The header as this reader first reads it, to find the salt: from the
/// lines before `secrets:` only; `None` if they are not a canonical header.
pub fn leading_header(bytes: &[u8]) -> Option<Header> {
    let header_end = memchr::memmem::find(bytes, b"\nsecrets:").map_or(0, |at| at + 1);
    let mut lines = Lines::new(&bytes[..header_end]).ok()?;
    read_header(&mut lines)
}

/// Above this file size the MAC is computed on a second thread.
const PARALLEL_MAC_BYTES: usize = 256 * 1024;

/// A file MAC under `key` for a file of `len` bytes: a large file is hashed
/// on the second core while it is parsed.
pub(crate) fn file_mac(key: &Key32, len: usize) -> MacWriter {
    if len > PARALLEL_MAC_BYTES {
        MacWriter::new_parallel(key)
    } else {
        MacWriter::new(key)
    }
}

/// Walks the `secrets:` section that `lines` is at with `visitor` (a
/// streaming pass after the first: export, rekey), whose walk stops at an
/// error it keeps and `failure` takes back: that error, or `Ok(false)` if
/// the lines are not the canonical section (the tree reader decides then),
/// or `Ok(true)` once walked.
pub(crate) fn walk_secrets<'t, V: Visitor<'t>>(
    lines: &mut Lines<'t>,
    visitor: &mut V,
    failure: impl FnOnce(&mut V) -> Option<VaultError>,
) -> Result<bool, VaultError> {
    let Some(number) = lines.peek().ok().flatten().map(|line| line.number) else {
        return Ok(false);
    };
    let Ok(inline) = format::section(lines, SECRETS_KEY) else {
        return Ok(false);
    };
    let walked = canonical::node(lines, 0, number, inline, visitor);
    match failure(visitor) {
        Some(err) => Err(err),
        None => Ok(walked.is_ok()),
    }
}
