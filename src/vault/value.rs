//! Plaintext values: a scalar's YAML type plus its bytes, kept in wiped
//! memory. Converts plaintext YAML (imports, adopted hand-made vaults) into a
//! tree of values, and renders values back as YAML, JSON or env scalars.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use zeroize::Zeroize;

use crate::core::secret::SecretBytes;
use crate::vault::canonical::quote_json_string;
use crate::vault::path::{KeyPath, Segment, validate_key};
use crate::vault::tree::Tree;

/// The YAML type of a scalar; stored encrypted with the value as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    /// Text.
    Str,
    /// An integer, stored as its decimal text.
    Int,
    /// A float, stored as its YAML text.
    Float,
    /// `true` / `false`.
    Bool,
    /// `null` (no bytes).
    Null,
    /// Bytes that are not UTF-8 (`!binary BASE64` in YAML).
    Bytes,
}

impl ScalarKind {
    /// The tag byte stored in front of the plaintext.
    pub fn tag(self) -> u8 {
        self.tag_bytes()[0]
    }

    /// [`ScalarKind::tag`] as a one-byte slice.
    pub fn tag_bytes(self) -> &'static [u8] {
        match self {
            ScalarKind::Str => b"s",
            ScalarKind::Int => b"i",
            ScalarKind::Float => b"f",
            ScalarKind::Bool => b"b",
            ScalarKind::Null => b"n",
            ScalarKind::Bytes => b"x",
        }
    }

    /// The kind for a tag byte.
    pub fn from_tag(tag: u8) -> Option<ScalarKind> {
        Some(match tag {
            b's' => ScalarKind::Str,
            b'i' => ScalarKind::Int,
            b'f' => ScalarKind::Float,
            b'b' => ScalarKind::Bool,
            b'n' => ScalarKind::Null,
            b'x' => ScalarKind::Bytes,
            _ => return None,
        })
    }
}

/// A decrypted scalar.
///
/// No `Debug` and no `Display`: the bytes are secret. The first example
/// compiles; the next two are the same code with `{:?}`, then `{}`, and
/// must not compile, for want of the trait (E0277).
///
/// ```
/// use runvault::vault::Plain;
/// let value = Plain::text(b"hunter2".to_vec());
/// let _ = format!("{:p}", &value); // its address, not its bytes
/// ```
///
/// ```compile_fail,E0277
/// use runvault::vault::Plain;
/// let value = Plain::text(b"hunter2".to_vec());
/// let _ = format!("{:?}", &value);
/// ```
///
/// ```compile_fail,E0277
/// use runvault::vault::Plain;
/// let value = Plain::text(b"hunter2".to_vec());
/// let _ = format!("{}", &value);
/// ```
#[derive(Clone, PartialEq)]
pub struct Plain {
    /// Its YAML type.
    pub kind: ScalarKind,
    /// Its bytes (text for every kind but `Bytes`).
    pub bytes: SecretBytes,
}

/// Why plaintext YAML cannot become vault values.
#[derive(Debug, thiserror::Error)]
pub enum PlainError {
    /// A key that is not a string, or one that paths cannot hold.
    #[error("unsupported key at `{at}`: {reason}")]
    BadKey {
        /// Where (a path; never a value).
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A YAML feature runvault does not store (tagged values).
    #[error("unsupported value at `{at}`: {reason}")]
    BadValue {
        /// Where.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// The document is not a mapping at the top.
    #[error("the top level must be a mapping of keys (found {found})")]
    NotAMapping {
        /// What was found.
        found: &'static str,
    },
}

impl Plain {
    /// A text value.
    pub fn text(bytes: Vec<u8>) -> Plain {
        match String::from_utf8(bytes) {
            Ok(text) => Plain {
                kind: ScalarKind::Str,
                bytes: SecretBytes::from(text),
            },
            Err(err) => Plain {
                kind: ScalarKind::Bytes,
                bytes: SecretBytes::new(err.into_bytes()),
            },
        }
    }

    /// The tagged plaintext that is encrypted (and that the audit HMAC
    /// covers): the kind's tag byte, then the bytes, as two parts so that
    /// the value is never copied to join them.
    pub fn tagged_parts(&self) -> [&[u8]; 2] {
        [self.kind.tag_bytes(), self.bytes.expose()]
    }

    /// Parses tagged plaintext; `None` for an unknown tag or invalid text.
    /// The tag byte is removed in place, so the value is not copied.
    pub fn from_tagged(mut tagged: SecretBytes) -> Option<Plain> {
        let kind = ScalarKind::from_tag(*tagged.expose().first()?)?;
        if kind != ScalarKind::Bytes && std::str::from_utf8(&tagged.expose()[1..]).is_err() {
            return None;
        }
        tagged.expose_mut().remove(0);
        Some(Plain {
            kind,
            bytes: tagged,
        })
    }

    /// The value as YAML scalar text (strings double-quoted, so that a string
    /// `"123"` stays a string).
    pub fn render_yaml(&self, out: &mut Vec<u8>) {
        match self.kind {
            ScalarKind::Str => quote_json_string(self.text_unchecked(), out),
            ScalarKind::Int | ScalarKind::Float | ScalarKind::Bool => {
                out.extend_from_slice(self.bytes.expose());
            }
            ScalarKind::Null => out.extend_from_slice(b"null"),
            ScalarKind::Bytes => {
                out.extend_from_slice(b"!binary ");
                out.extend_from_slice(BASE64.encode(self.bytes.expose()).as_bytes());
            }
        }
    }

    /// The value as a JSON scalar; `None` for bytes that JSON cannot hold.
    pub fn render_json(&self, out: &mut Vec<u8>) -> Option<()> {
        match self.kind {
            ScalarKind::Str => quote_json_string(self.text_unchecked(), out),
            ScalarKind::Int | ScalarKind::Bool => out.extend_from_slice(self.bytes.expose()),
            ScalarKind::Float => {
                let text = self.text_unchecked();
                if text.contains("inf") || text.contains("nan") {
                    quote_json_string(text, out);
                } else {
                    out.extend_from_slice(text.as_bytes());
                }
            }
            ScalarKind::Null => out.extend_from_slice(b"null"),
            ScalarKind::Bytes => return None,
        }
        Some(())
    }

    fn text_unchecked(&self) -> &str {
        std::str::from_utf8(self.bytes.expose()).unwrap_or_default()
    }
}

/// Parses plaintext YAML (an import file or a hand-made vault).
///
/// Binary values are written `!binary BASE64` (a local tag). The standard
/// `!!binary` tag is refused: serde_yaml resolves it to the plain base64
/// text, which would silently store the wrong bytes.
pub fn parse_plain_yaml(bytes: &[u8]) -> Result<serde_yaml::Value, String> {
    refuse_standard_binary_tag(bytes)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_yaml::Value::Null);
    }
    prescan_yaml(bytes).map_err(|err| err.to_string())?;
    serde_yaml::from_slice(bytes).map_err(|err| crate::vault::yaml_error::describe(&err))
}

/// The largest value runvault stores (`set`, `import`, adopting a
/// hand-made vault): 4 MiB, the limit of a `set --from-file` file.
pub(super) const MAX_VALUE_BYTES: usize = crate::core::fs::Limit::VALUE.max_bytes as usize;

/// Refuses a value larger than [`MAX_VALUE_BYTES`], so that every line
/// runvault writes stays under [`canonical::MAX_LINE_BYTES`].
///
/// [`canonical::MAX_LINE_BYTES`]: crate::vault::canonical::MAX_LINE_BYTES
pub(super) fn check_value_size(bytes: &[u8], at: &KeyPath) -> Result<(), PlainError> {
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(PlainError::BadValue {
            at: at.to_string(),
            reason: format!(
                "{} bytes, over the limit of {MAX_VALUE_BYTES} bytes (4 MiB) for one value",
                bytes.len()
            ),
        });
    }
    Ok(())
}

/// The longest key a stored value may have, in bytes of its segments
/// (256 KiB): with the value, its line (and its path's line in
/// `history:`, quoted) stays under the line limit.
pub(super) const MAX_KEY_PATH_BYTES: usize = 256 * 1024;

/// Refuses a tree holding a value larger than [`MAX_VALUE_BYTES`] or a
/// value under a path longer than [`MAX_KEY_PATH_BYTES`].
pub(super) fn check_value_sizes(tree: &Tree<Plain>) -> Result<(), PlainError> {
    let mut result = Ok(());
    tree.for_each_leaf(&mut |at, leaf| {
        if result.is_ok() {
            result = check_value_size(leaf.bytes.expose(), at);
        }
        let path_bytes: usize = (at.segments().iter())
            .map(|segment| match segment {
                Segment::Key(key) => key.len() + 1,
                Segment::Index(_) => 8,
            })
            .sum();
        if result.is_ok() && path_bytes > MAX_KEY_PATH_BYTES {
            let shown: String = at.to_string().chars().take(40).collect();
            result = Err(PlainError::BadKey {
                at: format!("{shown}..."),
                reason: format!(
                    "a path of {path_bytes} bytes, over the limit of {MAX_KEY_PATH_BYTES} bytes (256 KiB)"
                ),
            });
        }
    });
    result
}

/// Nesting deeper than this, found by [`prescan_yaml`], is refused before
/// serde_yaml sees the text: serde_yaml's own limit (it refuses deeper
/// documents anyway, but only after its parser has spent time quadratic in
/// the depth: 52 s for 100 000 `[`). The vault readers and paths allow
/// far less ([`canonical::MAX_DEPTH`], [`MAX_SEGMENTS`]).
///
/// [`canonical::MAX_DEPTH`]: crate::vault::canonical::MAX_DEPTH
/// [`MAX_SEGMENTS`]: crate::vault::path::MAX_SEGMENTS
pub(super) const PRESCAN_MAX_DEPTH: usize = 128;

/// Why [`prescan_yaml`] refused a text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Prescan {
    /// A line longer than [`canonical::MAX_LINE_BYTES`].
    ///
    /// [`canonical::MAX_LINE_BYTES`]: crate::vault::canonical::MAX_LINE_BYTES
    #[error(
        "line {line} is longer than the limit of {} bytes (16 MiB)",
        crate::vault::canonical::MAX_LINE_BYTES
    )]
    LongLine {
        /// 1-based line number.
        line: usize,
    },
    /// Collections nested deeper than [`PRESCAN_MAX_DEPTH`].
    #[error("line {line}: collections nested deeper than {PRESCAN_MAX_DEPTH} levels")]
    TooDeep {
        /// 1-based line number.
        line: usize,
    },
}

/// One linear pass over YAML text before serde_yaml parses it: refuses a
/// line over the line limit and nesting deeper than [`PRESCAN_MAX_DEPTH`]
/// (flow collections `[`/`{`, block indentation levels and compact
/// `- - x` items), so that a hostile file fails in milliseconds.
///
/// It is a bound, not a parser: it may count a little more nesting than
/// YAML sees (never less than the flow depth), which is why its limit is
/// twice what any reader accepts. Quoted scalars, comments and block
/// scalars (`|`, `>`) are skipped.
pub(super) fn prescan_yaml(bytes: &[u8]) -> Result<(), Prescan> {
    let max_line = crate::vault::canonical::MAX_LINE_BYTES;
    // Indentation of the open block levels, innermost last.
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // Inside a quoted scalar (which may span lines): its quote byte.
    let mut quote: Option<u8> = None;
    // Inside a block scalar: the indentation of the line that opened it.
    let mut block_scalar: Option<usize> = None;
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        if line.len() > max_line {
            return Err(Prescan::LongLine { line: number });
        }
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let body = &line[indent..];
        if let Some(opener) = block_scalar {
            if body.is_empty() || body == b"\r" || indent > opener {
                continue;
            }
            block_scalar = None;
        }
        let mut at = 0;
        if quote.is_none() && flow == 0 {
            if body.is_empty() || body[0] == b'#' {
                continue;
            }
            while indents.last().is_some_and(|&open| open > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
            // Compact nested items on one line: `- - - x`, `? - x`.
            while at + 1 < body.len() && matches!(body[at], b'-' | b'?') && body[at + 1] == b' ' {
                indents.push(indent + at + 2);
                at += 2;
                while body.get(at) == Some(&b' ') {
                    at += 1;
                }
            }
            if indents.len() > PRESCAN_MAX_DEPTH {
                return Err(Prescan::TooDeep { line: number });
            }
        }
        // Where a scalar or a collection may start: after these bytes (or
        // at the start of the line), a quote or a bracket is syntax, not
        // part of a plain scalar.
        let mut value_start = true;
        while at < body.len() {
            let b = body[at];
            at += 1;
            if let Some(q) = quote {
                match b {
                    b'\\' if q == b'"' => at += 1,
                    b'\'' if q == b'\'' && body.get(at) == Some(&b'\'') => at += 1,
                    _ if b == q => quote = None,
                    _ => {}
                }
                value_start = false;
                continue;
            }
            match b {
                b' ' | b'\t' | b'\r' => continue,
                b'#' if at == 1 || matches!(body[at - 2], b' ' | b'\t') => break,
                b'"' | b'\'' if value_start => quote = Some(b),
                b'[' | b'{' if value_start || flow > 0 => {
                    flow += 1;
                    if indents.len() + flow > PRESCAN_MAX_DEPTH {
                        return Err(Prescan::TooDeep { line: number });
                    }
                }
                b']' | b'}' if flow > 0 => flow -= 1,
                // A tag or an anchor before a node: the node starts after it.
                b'!' | b'&' if value_start => {
                    while at < body.len() && !matches!(body[at], b' ' | b'\t') {
                        at += 1;
                    }
                    continue;
                }
                b'|' | b'>' if value_start && flow == 0 => {
                    block_scalar = Some(indent);
                    break;
                }
                _ => {}
            }
            // An indicator only where YAML reads it as one: `:`, `-`, `?`
            // before a space (or anywhere in a flow collection for `:`),
            // `,`, `[` and `{` inside a flow collection; elsewhere they are
            // part of a plain scalar.
            let spaced = matches!(body.get(at), None | Some(b' ' | b'\t' | b'\r'));
            value_start = match b {
                b':' => spaced || flow > 0,
                b'-' | b'?' => spaced,
                b',' | b'[' | b'{' => flow > 0,
                _ => false,
            };
        }
    }
    Ok(())
}

/// Refuses the standard `!!binary` tag (see [`parse_plain_yaml`]).
pub(super) fn refuse_standard_binary_tag(bytes: &[u8]) -> Result<(), String> {
    if memchr::memmem::find(bytes, b"!!binary").is_some() {
        return Err(
            "the `!!binary` tag is not supported; write binary values as `!binary BASE64`".into(),
        );
    }
    Ok(())
}

/// Converts a parsed plaintext YAML document into a tree of values. The top
/// level must be a mapping (an empty document counts as `{}`). The document
/// is consumed as it is converted (each part freed once converted, its
/// text wiped), so a large import does not hold both at their full size.
pub fn tree_from_yaml(doc: serde_yaml::Value) -> Result<Tree<Plain>, PlainError> {
    match doc {
        serde_yaml::Value::Null => Ok(Tree::empty_map()),
        doc @ serde_yaml::Value::Mapping(_) => node_from_yaml(doc, &mut KeyPath::root()),
        other => Err(PlainError::NotAMapping {
            found: yaml_kind(&other),
        }),
    }
}

fn node_from_yaml(value: serde_yaml::Value, at: &mut KeyPath) -> Result<Tree<Plain>, PlainError> {
    use serde_yaml::Value;
    check_depth(at)?;
    match value {
        Value::Mapping(map) => {
            let mut out = indexmap::IndexMap::with_capacity(map.len());
            for (key, child) in map {
                let key = string_key(key, at)?;
                at.push(Segment::Key(key.clone()));
                let node = node_from_yaml(child, at)?;
                at.pop();
                out.insert(key, node);
            }
            Ok(Tree::Map(out))
        }
        Value::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                at.push(Segment::Index(index));
                out.push(node_from_yaml(item, at)?);
                at.pop();
            }
            Ok(Tree::List(out))
        }
        scalar => leaf_from_yaml(scalar, at),
    }
}

/// Refuses a node nested deeper than paths may go.
pub(crate) fn check_depth(at: &KeyPath) -> Result<(), PlainError> {
    if at.segments().len() > crate::vault::path::MAX_SEGMENTS {
        return Err(PlainError::BadValue {
            at: at.to_string(),
            reason: format!(
                "nested deeper than {} levels",
                crate::vault::path::MAX_SEGMENTS
            ),
        });
    }
    Ok(())
}

/// A mapping key of plaintext YAML at `at`, if it is a string a path can
/// hold.
pub(crate) fn string_key(key: serde_yaml::Value, at: &KeyPath) -> Result<String, PlainError> {
    let serde_yaml::Value::String(key) = key else {
        return Err(PlainError::BadKey {
            at: at.to_string(),
            reason: format!("a {} key; quote it to make it a string", yaml_kind(&key)),
        });
    };
    validate_key(&key).map_err(|reason| PlainError::BadKey {
        at: at.to_string(),
        reason,
    })?;
    Ok(key)
}

/// The value of a YAML scalar (or tagged node) at `at`.
pub(crate) fn leaf_from_yaml(
    value: serde_yaml::Value,
    at: &KeyPath,
) -> Result<Tree<Plain>, PlainError> {
    use serde_yaml::Value;
    let leaf = |kind, text: String| {
        Ok(Tree::Leaf(Plain {
            kind,
            bytes: SecretBytes::from(text),
        }))
    };
    match value {
        Value::String(text) => leaf(ScalarKind::Str, text),
        Value::Bool(flag) => leaf(ScalarKind::Bool, flag.to_string()),
        Value::Null => leaf(ScalarKind::Null, String::new()),
        Value::Number(number) if number.is_f64() => leaf(ScalarKind::Float, number.to_string()),
        Value::Number(number) => leaf(ScalarKind::Int, number.to_string()),
        Value::Tagged(tagged) if tagged.tag == "binary" => match tagged.value {
            Value::String(mut encoded) => {
                let compact = SecretBytes::from(encoded.split_whitespace().collect::<String>());
                encoded.zeroize();
                let bytes = BASE64
                    .decode(compact.expose())
                    .map_err(|_| PlainError::BadValue {
                        at: at.to_string(),
                        reason: "`!binary` value is not valid base64".into(),
                    })?;
                Ok(Tree::Leaf(Plain {
                    kind: ScalarKind::Bytes,
                    bytes: SecretBytes::new(bytes),
                }))
            }
            _ => Err(PlainError::BadValue {
                at: at.to_string(),
                reason: "`!!binary` must tag a string".into(),
            }),
        },
        Value::Tagged(tagged) => Err(PlainError::BadValue {
            at: at.to_string(),
            reason: format!("tag `{}` is not supported", tagged.tag),
        }),
        Value::Mapping(_) | Value::Sequence(_) => {
            unreachable!("containers are read by the caller")
        }
    }
}

pub(crate) fn yaml_kind(value: &serde_yaml::Value) -> &'static str {
    use serde_yaml::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "list",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged",
    }
}

/// Parses a value typed on input (`set --type`) into its stored text.
pub fn typed_from_input(kind: ScalarKind, bytes: Vec<u8>) -> Result<Plain, String> {
    if kind == ScalarKind::Str {
        return Ok(Plain::text(bytes));
    }
    let text = String::from_utf8(bytes).map_err(|_| "the value is not UTF-8 text".to_string())?;
    let text = SecretBytes::from(text);
    let trimmed = std::str::from_utf8(text.expose())
        .unwrap_or_default()
        .trim();
    let normal = match kind {
        ScalarKind::Int => trimmed
            .parse::<i64>()
            .map(|n| n.to_string())
            .or_else(|_| trimmed.parse::<u64>().map(|n| n.to_string()))
            .map_err(|_| "the value is not an integer".to_string())?,
        ScalarKind::Float => trimmed
            .parse::<f64>()
            .map(|f| serde_yaml::Number::from(f).to_string())
            .map_err(|_| "the value is not a number".to_string())?,
        ScalarKind::Bool => match trimmed {
            "true" | "false" => trimmed.to_string(),
            _ => return Err("the value is not `true` or `false`".into()),
        },
        ScalarKind::Str | ScalarKind::Null | ScalarKind::Bytes => unreachable!("handled above"),
    };
    Ok(Plain {
        kind,
        bytes: SecretBytes::from(normal),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_keep_their_type() {
        let doc: serde_yaml::Value =
            serde_yaml::from_str("A: \"123\"\nB: 123\nC: 1.5\nD: true\nE: ~\nF: !binary aGk=\n")
                .unwrap();
        let tree = tree_from_yaml(doc).unwrap();
        let kinds: Vec<ScalarKind> = ["A", "B", "C", "D", "E", "F"]
            .iter()
            .map(|k| match tree.get(&KeyPath::parse(k).unwrap()) {
                Some(Tree::Leaf(plain)) => plain.kind,
                _ => panic!("missing {k}"),
            })
            .collect();
        use ScalarKind::*;
        assert_eq!(kinds, [Str, Int, Float, Bool, Null, Bytes]);
    }

    #[test]
    fn rejects_non_string_keys_and_dotted_keys() {
        let doc: serde_yaml::Value = serde_yaml::from_str("A:\n  1: x\n").unwrap();
        let err = tree_from_yaml(doc).err().unwrap();
        assert_eq!(
            err.to_string(),
            "unsupported key at `A`: a number key; quote it to make it a string"
        );
        let doc: serde_yaml::Value = serde_yaml::from_str("\"A.B\": x\n").unwrap();
        assert!(tree_from_yaml(doc).is_err());
    }

    #[test]
    fn json_quoting_escapes_controls() {
        let mut out = Vec::new();
        quote_json_string("a\"b\\c\n\u{1}", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn prescan_passes_real_yaml_and_refuses_deep_nesting_only() {
        let depth = |n: usize| format!("A: {}1{}\n", "[".repeat(n), "]".repeat(n));
        // serde_yaml's own limit: the pre-scan refuses only beyond it.
        assert_eq!(prescan_yaml(depth(120).as_bytes()), Ok(()));
        assert_eq!(
            prescan_yaml(depth(129).as_bytes()),
            Err(Prescan::TooDeep { line: 1 })
        );
        let tagged = format!("A: !t &a {}\n", "[".repeat(129));
        assert_eq!(
            prescan_yaml(tagged.as_bytes()),
            Err(Prescan::TooDeep { line: 1 })
        );
        // Brackets in quotes, comments, plain scalars and block scalars are
        // not nesting.
        let many = "[".repeat(300);
        let text = format!(
            "A: \"{many}\"\nB: '{many}'\nC: a{many}\n# {many}\nD: |\n  {many}\n  {many}\nE: {{x: [1, 2]}}\n"
        );
        assert_eq!(prescan_yaml(text.as_bytes()), Ok(()));
        let doc = parse_plain_yaml(text.as_bytes()).unwrap();
        assert_eq!(doc["C"].as_str(), Some(format!("a{many}").as_str()));
        // Compact block items nest too.
        let compact = format!("A:\n  {}x\n", "- ".repeat(200));
        assert_eq!(
            prescan_yaml(compact.as_bytes()),
            Err(Prescan::TooDeep { line: 2 })
        );
        let long = format!(
            "A: {}\n",
            "x".repeat(crate::vault::canonical::MAX_LINE_BYTES)
        );
        assert_eq!(
            prescan_yaml(long.as_bytes()),
            Err(Prescan::LongLine { line: 1 })
        );
    }
}
