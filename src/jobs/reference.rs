//! The `DATAOPS_VAULT(PATH)` reference syntax and its scanner.
//!
//! A reference is the literal text `DATAOPS_VAULT(`, a vault path in the
//! syntax of [`KeyPath::parse`] (`SNOWFLAKE.TRANSFORM.PASSWORD`,
//! `HOSTS[0]`), and the first `)` after it. A value may be one reference,
//! or hold any number of them inside longer text
//! (`postgres://DATAOPS_VAULT(DB.USER):DATAOPS_VAULT(DB.PASS)@db/x`).
//! Everything outside references is kept byte for byte.
//!
//! Decisions (see docs/jobs.md):
//! - `DATAOPS_VAULT(` always opens a reference; there is no escape. Text
//!   that has it without a `)` after it, or with a path that does not
//!   parse (empty, `A..B`, `A[x]`), is malformed and fails the command
//!   before anything runs, rather than passing the text on silently.
//! - The path ends at the first `)`, so a key containing `)` cannot be
//!   referenced (read it with `runvault get` instead).
//! - `DATAOPS_VAULT` not followed by `(` is ordinary text.

use crate::vault::KeyPath;

/// The text that opens a reference.
pub const OPEN: &[u8] = b"DATAOPS_VAULT(";

/// One piece of scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text kept as it is (a byte range of the scanned text).
    Literal(std::ops::Range<usize>),
    /// A reference to the value at `path`, starting at byte `at`.
    Reference {
        /// The referenced path.
        path: KeyPath,
        /// Byte offset of `DATAOPS_VAULT(` in the scanned text.
        at: usize,
    },
}

/// Text split into literal pieces and references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
}

/// A malformed reference and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset of `DATAOPS_VAULT(` in the scanned text.
    pub at: usize,
    /// What is wrong.
    pub error: ReferenceError,
}

/// Why a reference is malformed (the caller adds where it was found).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// `DATAOPS_VAULT(` with no `)` after it.
    #[error("`DATAOPS_VAULT(` has no closing `)`")]
    Unclosed,
    /// The text between the parentheses is not a vault path.
    #[error("`DATAOPS_VAULT({text})` does not name a vault path: {reason}")]
    BadPath {
        /// The text between the parentheses (a path, not a value).
        text: String,
        /// Why it is not a path.
        reason: String,
    },
}

impl Scanned {
    /// Whether the text holds at least one reference.
    pub fn has_references(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| matches!(piece, Piece::Reference { .. }))
    }

    /// The referenced paths, in order of appearance (repeats included).
    pub fn references(&self) -> impl Iterator<Item = &KeyPath> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Reference { path, .. } => Some(path),
            Piece::Literal(_) => None,
        })
    }

    /// Builds the resolved text: literals from `text`, each reference
    /// replaced by what `value` returns for its path.
    pub fn substitute<'v, E>(
        &self,
        text: &[u8],
        mut value: impl FnMut(&KeyPath) -> Result<&'v [u8], E>,
    ) -> Result<Vec<u8>, E> {
        let mut out = Vec::with_capacity(text.len());
        for piece in &self.pieces {
            match piece {
                Piece::Literal(range) => out.extend_from_slice(&text[range.clone()]),
                Piece::Reference { path, .. } => out.extend_from_slice(value(path)?),
            }
        }
        Ok(out)
    }
}

/// Splits `text` into literals and references; see the module doc for
/// what counts as a reference.
pub fn scan(text: &[u8]) -> Result<Scanned, ScanError> {
    let mut pieces = Vec::new();
    let mut position = 0;
    while let Some(offset) = find(&text[position..], OPEN) {
        let start = position + offset;
        if start > position {
            pieces.push(Piece::Literal(position..start));
        }
        let inner_start = start + OPEN.len();
        let close = text[inner_start..]
            .iter()
            .position(|&b| b == b')')
            .ok_or(ScanError {
                at: start,
                error: ReferenceError::Unclosed,
            })?;
        let inner = &text[inner_start..inner_start + close];
        let path = std::str::from_utf8(inner)
            .map_err(|_| ReferenceError::BadPath {
                text: excerpt(inner),
                reason: "it is not UTF-8".into(),
            })
            .and_then(|path| {
                KeyPath::parse(path).map_err(|err| ReferenceError::BadPath {
                    text: excerpt(inner),
                    // The parser's reason quotes the key, which past the
                    // excerpt may be anything that followed the opener.
                    reason: if excerpt_is_whole(inner) {
                        err.reason
                    } else {
                        format!("no `)` closes it within {EXCERPT_CHARS} characters on its line")
                    },
                })
            })
            .map_err(|error| ScanError { at: start, error })?;
        pieces.push(Piece::Reference { path, at: start });
        position = inner_start + close + 1;
    }
    if position < text.len() {
        pieces.push(Piece::Literal(position..text.len()));
    }
    Ok(Scanned { pieces })
}

/// The most of a malformed reference's inside an error shows: its first
/// line, cut to [`EXCERPT_CHARS`] characters. An opener with no `)` of its
/// own takes the text up to the next `)` anywhere, which may be the rest of
/// a template or a value that follows it.
pub fn excerpt(inner: &[u8]) -> String {
    let line = inner.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let mut shown: String = text.chars().take(EXCERPT_CHARS).collect();
    if !excerpt_is_whole(inner) {
        shown.push_str("...");
    }
    shown
}

/// Whether [`excerpt`] shows all of `inner`.
fn excerpt_is_whole(inner: &[u8]) -> bool {
    !inner.contains(&b'\n') && String::from_utf8_lossy(inner).chars().count() <= EXCERPT_CHARS
}

/// How many characters of a malformed reference an error shows (a path
/// is rarely longer).
pub const EXCERPT_CHARS: usize = 48;

/// Whether `text` holds the opener `DATAOPS_VAULT(` at all (well-formed or
/// not), without scanning it.
pub fn mentions_reference(text: &[u8]) -> bool {
    find(text, OPEN).is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resolve(text: &str) -> Result<String, ReferenceError> {
        let scanned = scan(text.as_bytes()).map_err(|err| err.error)?;
        let out = scanned
            .substitute(text.as_bytes(), |path| {
                Ok::<_, ReferenceError>(match path.to_string().as_str() {
                    "DB.USER" => b"alice".as_slice(),
                    "DB.PASS" => b"s3cr)t".as_slice(),
                    _ => b"?".as_slice(),
                })
            })
            .unwrap();
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn whole_embedded_and_several_references() {
        assert_eq!(resolve("DATAOPS_VAULT(DB.USER)").unwrap(), "alice");
        assert_eq!(
            resolve("pg://DATAOPS_VAULT(DB.USER):DATAOPS_VAULT(DB.PASS)@h/DATAOPS_VAULT(DB.USER)")
                .unwrap(),
            "pg://alice:s3cr)t@h/alice"
        );
        assert_eq!(
            resolve("plain DATAOPS_VAULT text").unwrap(),
            "plain DATAOPS_VAULT text"
        );
        assert_eq!(resolve("").unwrap(), "");
        let scanned = scan(b"x DATAOPS_VAULT(L[1].K) y").unwrap();
        assert_eq!(
            scanned
                .references()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>(),
            ["L[1].K"]
        );
    }

    #[test]
    fn malformed_references_are_errors_not_text() {
        assert_eq!(
            scan(b"a DATAOPS_VAULT(DB.USER"),
            Err(ScanError {
                at: 2,
                error: ReferenceError::Unclosed
            })
        );
        let err = scan(b"DATAOPS_VAULT(A..B)").unwrap_err().error;
        assert_eq!(
            err.to_string(),
            "`DATAOPS_VAULT(A..B)` does not name a vault path: segment 2 is empty"
        );
        for bad in [
            &b"DATAOPS_VAULT()"[..],
            b"DATAOPS_VAULT(A[x])",
            b"DATAOPS_VAULT(\xff)",
        ] {
            assert!(matches!(
                scan(bad).map_err(|e| e.error),
                Err(ReferenceError::BadPath { .. })
            ));
        }
    }

    #[test]
    fn a_malformed_reference_shows_at_most_a_short_excerpt() {
        let message = |text: &[u8]| scan(text).unwrap_err().error.to_string();
        assert_eq!(
            message(b"DATAOPS_VAULT(DB..USER and then a long tail of text that follows it)"),
            "`DATAOPS_VAULT(DB..USER and then a long tail of text that follo...)` does not name a \
             vault path: no `)` closes it within 48 characters on its line"
        );
        assert_eq!(
            message(b"DATAOPS_VAULT(SNOWFLAKE.TRANSFORM..PASSWORD)"),
            "`DATAOPS_VAULT(SNOWFLAKE.TRANSFORM..PASSWORD)` does not name a vault path: segment 3 \
             is empty"
        );
        let template = b"user: DATAOPS_VAULT(DB.USER\npassword: hunter2-secret\nother: (x)\n";
        let shown = message(template);
        assert!(
            shown.starts_with("`DATAOPS_VAULT(DB.USER...)` does not name"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!message(b"DATAOPS_VAULT(A..B)").contains("...)"));
    }

    proptest! {
        #![proptest_config(crate::core::proptest_seeds::config())]

        /// Text without the opener is one literal, kept byte for byte.
        #[test]
        fn text_without_references_is_kept(text in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assume!(find(&text, OPEN).is_none());
            let scanned = scan(&text).unwrap();
            prop_assert!(!scanned.has_references());
            let out = scanned.substitute(&text, |_| Ok::<&[u8], ()>(b"")).unwrap();
            prop_assert_eq!(out, text);
        }

        /// Literals around references survive substitution unchanged.
        #[test]
        fn literals_around_references_survive(before in "[a-z :/@]{0,20}", after in "[a-z :/@]{0,20}") {
            let text = format!("{before}DATAOPS_VAULT(DB.USER){after}");
            prop_assert_eq!(resolve(&text).unwrap(), format!("{before}alice{after}"));
        }
    }
}
