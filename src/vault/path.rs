//! Dotted key paths as DataOps jobs write them (`SNOWFLAKE.TRANSFORM.PASSWORD`,
//! list items as `HOSTS[0]`), validated, and their unambiguous binary encoding
//! used as AES-GCM associated data and in the file MAC.

use std::fmt;

/// Most segments a path may have (the file readers accept a little more
/// nesting than this, for the `secrets:` and `history:` levels).
pub(super) const MAX_SEGMENTS: usize = 32;

/// What is wrong with a path given on the command line or found in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path `{path}`: {reason}")]
pub struct PathError {
    /// The path as given (paths are not secret).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// One step of a path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A validated path from the root of the secrets tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KeyPath {
    segments: Vec<Segment>,
}

impl KeyPath {
    /// The empty path: the root of the tree.
    pub fn root() -> KeyPath {
        KeyPath::default()
    }

    /// Parses a dotted path: keys separated by `.`, list indices as `[N]`.
    pub fn parse(text: &str) -> Result<KeyPath, PathError> {
        let fail = |reason: String| PathError {
            path: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(fail("the path is empty".into()));
        }
        let mut segments = Vec::new();
        for (position, part) in text.split('.').enumerate() {
            let (key, mut rest) = match part.find('[') {
                Some(bracket) => part.split_at(bracket),
                None => (part, ""),
            };
            if key.is_empty() && (position > 0 || rest.is_empty()) {
                return Err(fail(format!("segment {} is empty", position + 1)));
            }
            if !key.is_empty() {
                validate_key(key).map_err(&fail)?;
                segments.push(Segment::Key(key.to_string()));
            }
            while !rest.is_empty() {
                let close = rest
                    .find(']')
                    .ok_or_else(|| fail("a `[` has no matching `]`".into()))?;
                let digits = &rest[1..close];
                let index = parse_index(digits)
                    .ok_or_else(|| fail(format!("`[{digits}]` is not a list index")))?;
                segments.push(Segment::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(fail(format!("unexpected `{rest}` after a list index")));
                }
            }
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(fail(format!(
                "it has {} segments; at most {MAX_SEGMENTS} are allowed",
                segments.len()
            )));
        }
        Ok(KeyPath { segments })
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// This path extended by one segment.
    pub fn child(&self, segment: Segment) -> KeyPath {
        let mut segments = self.segments.clone();
        segments.push(segment);
        KeyPath { segments }
    }

    /// Appends a segment in place.
    pub fn push(&mut self, segment: Segment) {
        self.segments.push(segment);
    }

    /// Appends the segments of `relative`, a path inside the subtree at
    /// this one (the one way a prefix and a relative path are joined).
    pub fn append(&mut self, relative: &KeyPath) {
        self.segments.extend(relative.segments.iter().cloned());
    }

    /// This path joined with `relative`, a path inside the subtree at it.
    pub fn join(&self, relative: &KeyPath) -> KeyPath {
        let mut path = self.clone();
        path.append(relative);
        path
    }

    /// Removes the last segment.
    pub fn pop(&mut self) -> Option<Segment> {
        self.segments.pop()
    }

    /// Keeps only the first `len` segments.
    pub fn truncate(&mut self, len: usize) {
        self.segments.truncate(len);
    }

    /// Whether `self` equals `prefix` or lies under it.
    pub fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.segments.starts_with(&prefix.segments)
    }

    /// The unambiguous binary encoding: segment count (u32 BE), then each
    /// segment as `0x01 len(u32 BE) utf8` (key) or `0x02 index(u64 BE)`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.segments.len() as u32).to_be_bytes());
        for segment in &self.segments {
            match segment {
                Segment::Key(key) => encode_key(key, out),
                Segment::Index(index) => encode_index(*index, out),
            }
        }
    }
}

impl KeyPath {
    /// The length of [`KeyPath::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        4 + (self.segments.iter())
            .map(|segment| match segment {
                Segment::Key(key) => 5 + key.len(),
                Segment::Index(_) => 9,
            })
            .sum::<usize>()
    }
}

/// Appends the encoding of one key segment (see [`KeyPath::encode`]), for
/// readers that build a path's encoding step by step.
pub(super) fn encode_key(key: &str, out: &mut Vec<u8>) {
    out.push(0x01);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
}

/// Appends the encoding of one list-index segment (see [`KeyPath::encode`]).
pub(super) fn encode_index(index: usize, out: &mut Vec<u8>) {
    out.push(0x02);
    out.extend_from_slice(&(index as u64).to_be_bytes());
}

impl KeyPath {
    /// The environment variable name of this path (`export --format env`,
    /// `exec --export`): segments joined by `_`, upper-cased, every
    /// character outside `[A-Za-z0-9]` replaced by `_`, list indices as
    /// their number. `SNOWFLAKE.TRANSFORM.PASSWORD` becomes
    /// `SNOWFLAKE_TRANSFORM_PASSWORD`, `HOSTS[0]` becomes `HOSTS_0`. The
    /// rule is not injective (`A.B_C` and `A_B.C` share `A_B_C`); callers
    /// report such collisions instead of picking one.
    pub fn env_name(&self) -> String {
        let mut name = String::new();
        for (position, segment) in self.segments.iter().enumerate() {
            if position > 0 {
                name.push('_');
            }
            match segment {
                Segment::Key(key) => name.extend(key.chars().map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })),
                Segment::Index(index) => name.push_str(&index.to_string()),
            }
        }
        name
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Checks one mapping key: non-empty, no `.`, `[`, `]` or control characters.
pub(super) fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a key is empty".into());
    }
    if let Some(bad) = key
        .chars()
        .find(|c| matches!(c, '.' | '[' | ']') || c.is_control())
    {
        let shown = if bad.is_control() {
            format!("U+{:04X}", bad as u32)
        } else {
            bad.to_string()
        };
        return Err(format!(
            "key `{}` contains `{shown}`, which paths cannot hold",
            key.escape_debug()
        ));
    }
    Ok(())
}

fn parse_index(digits: &str) -> Option<usize> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_dotted_paths_and_indices() {
        let path = KeyPath::parse("SNOWFLAKE.HOSTS[1][0].NAME").unwrap();
        assert_eq!(
            path.segments(),
            &[
                Segment::Key("SNOWFLAKE".into()),
                Segment::Key("HOSTS".into()),
                Segment::Index(1),
                Segment::Index(0),
                Segment::Key("NAME".into()),
            ]
        );
        assert_eq!(path.to_string(), "SNOWFLAKE.HOSTS[1][0].NAME");
        assert_eq!(path.env_name(), "SNOWFLAKE_HOSTS_1_0_NAME");
        let odd = KeyPath::parse("snowflake.my-role.pass word").unwrap();
        assert_eq!(odd.env_name(), "SNOWFLAKE_MY_ROLE_PASS_WORD");
    }

    #[test]
    fn rejects_empty_segments_and_bad_indices() {
        for bad in [
            "", "A..B", ".A", "A.", "A[x]", "A[01]", "A[1", "A[1]B", "A.[0]",
        ] {
            assert!(KeyPath::parse(bad).is_err(), "{bad} must be rejected");
        }
        let err = KeyPath::parse("A..B").unwrap_err();
        assert_eq!(err.to_string(), "invalid path `A..B`: segment 2 is empty");
    }

    fn segment() -> impl Strategy<Value = Segment> {
        prop_oneof![
            "[^.\\[\\]\\p{Cc}]{1,12}".prop_map(Segment::Key),
            (0usize..1000).prop_map(Segment::Index),
        ]
    }

    proptest! {
        #![proptest_config(crate::core::proptest_seeds::config())]

        #[test]
        fn display_then_parse_round_trips(first in "[^.\\[\\]\\p{Cc}]{1,12}", rest in proptest::collection::vec(segment(), 0..6)) {
            let mut segments = vec![Segment::Key(first)];
            segments.extend(rest);
            let path = KeyPath { segments };
            prop_assert_eq!(KeyPath::parse(&path.to_string()).unwrap(), path);
        }

        #[test]
        fn encoding_is_injective(a in proptest::collection::vec(segment(), 0..5), b in proptest::collection::vec(segment(), 0..5)) {
            let (pa, pb) = (KeyPath { segments: a }, KeyPath { segments: b });
            let (mut ea, mut eb) = (Vec::new(), Vec::new());
            pa.encode(&mut ea);
            pb.encode(&mut eb);
            prop_assert_eq!(ea == eb, pa == pb);
        }
    }
}
