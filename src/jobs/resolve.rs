//! Resolution: scan every source text for references, read every
//! referenced value with one vault open (one KDF run, each path decrypted
//! once), and substitute. A missing path fails the whole resolution before
//! any output is produced, naming where the reference is and its path.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::core::secret::SecretBytes;
use crate::jobs::error::JobsError;
use crate::jobs::reference::{self, Piece, Scanned};
use crate::vault::{
    Credential, KeyPath, Lookup, Plain, ReadOnlyDir, Selected, VaultError, Wanted, read_selected,
};

/// Where a text to resolve came from, for messages.
#[derive(Debug, Clone)]
pub enum Place {
    /// An environment variable (its name).
    Variable(OsString),
    /// A template file.
    Template(PathBuf),
}

impl Place {
    /// "variable `NAME`" or "`FILE` line N" for the reference at byte `at`.
    fn describe(&self, text: &[u8], at: usize) -> String {
        match self {
            Place::Variable(name) => format!("variable `{}`", name.to_string_lossy()),
            Place::Template(file) => {
                let line = 1 + text[..at].iter().filter(|&&b| b == b'\n').count();
                format!("`{}` line {line}", file.display())
            }
        }
    }
}

/// A scanned text that holds references. No `Debug`: once resolved it is
/// replaced by plaintext, and the text itself may be a job's secret.
pub struct Source {
    place: Place,
    text: Vec<u8>,
    scanned: Scanned,
}

impl Source {
    /// Scans `text`; `None` if it holds no reference.
    pub fn scan(place: Place, text: Vec<u8>) -> Result<Option<Source>, JobsError> {
        let scanned = reference::scan(&text).map_err(|err| JobsError::Malformed {
            place: place.describe(&text, err.at),
            source: err.error,
        })?;
        Ok(scanned.has_references().then_some(Source {
            place,
            text,
            scanned,
        }))
    }

    /// Where the text came from.
    pub fn place(&self) -> &Place {
        &self.place
    }

    fn substitute(&self, selected: &Selected, target: Target) -> Result<SecretBytes, JobsError> {
        let mut failure = None;
        let resolved = self.scanned.substitute(&self.text, |path| {
            match selected.value(path) {
                Lookup::Value(plain)
                    if target == Target::Environment && plain.bytes.expose().contains(&0) =>
                {
                    failure = Some(JobsError::NulInValue {
                        place: self.describe_reference(path),
                        key: path.to_string(),
                    });
                }
                Lookup::Value(plain) => return Ok(plain.bytes.expose()),
                Lookup::Missing => {
                    failure = Some(JobsError::Missing {
                        place: self.describe_reference(path),
                        key: path.to_string(),
                    });
                }
                Lookup::Container(kind) => {
                    failure = Some(JobsError::NotAValue {
                        place: self.describe_reference(path),
                        key: path.to_string(),
                        kind,
                    });
                }
            }
            Err(())
        });
        match resolved {
            Ok(bytes) => Ok(SecretBytes::new(bytes)),
            Err(()) => Err(failure.expect("set before every Err")),
        }
    }

    /// Describes the first reference to `path` (line numbers in templates).
    pub fn describe_reference(&self, path: &KeyPath) -> String {
        let at = self
            .scanned
            .pieces
            .iter()
            .find_map(|piece| match piece {
                Piece::Reference { path: p, at } if p == path => Some(*at),
                _ => None,
            })
            .unwrap_or(0);
        self.place.describe(&self.text, at)
    }
}

/// What the resolved texts become: environment variables cannot hold a NUL
/// byte, files can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Environment variables (`exec`).
    Environment,
    /// A file or standard output (`render`).
    File,
}

/// The result: each source's resolved text (same order as given) and the
/// values under each exported prefix. No `Debug`: it is plaintext.
pub struct Resolved {
    /// Resolved texts, one per source.
    pub texts: Vec<SecretBytes>,
    /// `(path, value)` of every value under the exported prefixes, in file
    /// order, each path once.
    pub exported: Vec<(KeyPath, Plain)>,
}

/// Resolves `sources` and collects the values under `exports`, opening the
/// vault once, and only if there is anything to read (so a job without
/// references needs no key). `credential` is asked for only then.
pub fn resolve(
    dir: &ReadOnlyDir,
    credential: impl FnOnce() -> Result<Credential, VaultError>,
    sources: &[Source],
    exports: &[KeyPath],
    target: Target,
) -> Result<Resolved, JobsError> {
    if sources.is_empty() && exports.is_empty() {
        return Ok(Resolved {
            texts: Vec::new(),
            exported: Vec::new(),
        });
    }
    let wanted = Wanted {
        values: sources
            .iter()
            .flat_map(|source| source.scanned.references().cloned())
            .collect(),
        subtrees: exports.to_vec(),
    };
    let mut selected = read_selected(dir, &credential()?, &wanted)?;
    let texts = sources
        .iter()
        .map(|source| source.substitute(&selected, target))
        .collect::<Result<Vec<_>, _>>()?;
    let mut exported = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for prefix in exports {
        let Some(entry) = selected.subtrees.remove(prefix) else {
            continue; // the same prefix given twice: exported on its first turn
        };
        let leaves = entry.ok_or_else(|| JobsError::ExportMissing {
            prefix: prefix.to_string(),
        })?;
        for (path, plain) in leaves {
            if seen.insert(path.clone()) {
                exported.push((path, plain));
            }
        }
    }
    Ok(Resolved { texts, exported })
}
