//! The canonical YAML layout runvault writes, and the linear-time reader
//! that takes it without a general YAML parser.
//!
//! Layout: comment lines only at the top; then block mappings and lists
//! indented by two spaces per level; one key or list item per line; a key is
//! plain (`[A-Za-z_][A-Za-z0-9_]*`, not a YAML 1.1 keyword) or a JSON-style
//! double-quoted string; a scalar is a plain unsigned integer, a plain
//! `rv1:...` sealed value, or a double-quoted string; `{}` and `[]` are the
//! only flow forms; a container item of a list is `-` alone on its line,
//! followed by its content indented one level deeper. Every line ends with
//! `\n`. The reader refuses anything else (the caller then falls back to
//! serde_yaml), so both readers agree on every file the reader accepts.

use indexmap::IndexMap;

use crate::vault::tree::Tree;
use crate::vault::value::quote_json_string;

/// Deepest nesting either reader accepts.
pub const MAX_DEPTH: usize = 64;

/// Keys that YAML 1.1 tools would read as something other than a string.
const YAML_KEYWORDS: &[&str] = &["y", "n", "yes", "no", "true", "false", "on", "off", "null"];

/// Writes `key` plain when that is unambiguous, else double-quoted.
pub fn emit_key(key: &str, out: &mut Vec<u8>) {
    if is_plain_key(key) {
        out.extend_from_slice(key.as_bytes());
    } else {
        quote_json_string(key, out);
    }
}

fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !YAML_KEYWORDS
            .iter()
            .any(|word| word.eq_ignore_ascii_case(key))
}

/// Writes a tree as block YAML at `indent` spaces, each leaf rendered by
/// `leaf` (which writes one scalar, no newline). The caller has written the
/// key (or `-`) that owns the tree, without a trailing newline.
pub fn emit_tree<L>(
    tree: &Tree<L>,
    indent: usize,
    out: &mut Vec<u8>,
    leaf: &mut dyn FnMut(&L, &mut Vec<u8>),
) {
    match tree {
        Tree::Leaf(value) => {
            out.push(b' ');
            leaf(value, out);
            out.push(b'\n');
        }
        Tree::Map(map) if map.is_empty() => out.extend_from_slice(b" {}\n"),
        Tree::List(list) if list.is_empty() => out.extend_from_slice(b" []\n"),
        Tree::Map(map) => {
            out.push(b'\n');
            for (key, child) in map {
                out.resize(out.len() + indent, b' ');
                emit_key(key, out);
                out.push(b':');
                emit_tree(child, indent + 2, out, leaf);
            }
        }
        Tree::List(list) => {
            out.push(b'\n');
            for child in list {
                out.resize(out.len() + indent, b' ');
                out.push(b'-');
                emit_tree(child, indent + 2, out, leaf);
            }
        }
    }
}

/// Why the linear reader refused a file (the caller falls back to serde_yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCanonical {
    /// 1-based line number.
    pub line: usize,
    /// What was not understood.
    pub reason: &'static str,
}

struct Line<'a> {
    number: usize,
    indent: usize,
    body: &'a str,
}

/// Reads a canonical file into a tree of raw scalar strings, in linear time.
pub fn parse(text: &[u8]) -> Result<Tree<String>, NotCanonical> {
    let text = std::str::from_utf8(text).map_err(|_| NotCanonical {
        line: 0,
        reason: "not UTF-8",
    })?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err(NotCanonical {
            line: 0,
            reason: "no final newline",
        });
    };
    let mut lines = Vec::with_capacity(body.len() / 48);
    let mut in_preamble = true;
    for (index, raw) in body.split('\n').enumerate() {
        let number = index + 1;
        if in_preamble && raw.starts_with('#') {
            continue;
        }
        in_preamble = false;
        let body = raw.trim_start_matches(' ');
        let indent = raw.len() - body.len();
        if body.is_empty() || body.ends_with(' ') || indent % 2 != 0 || body.contains(['\t', '\r'])
        {
            return Err(NotCanonical {
                line: number,
                reason: "blank line, odd indent, tab or trailing space",
            });
        }
        lines.push(Line {
            number,
            indent,
            body,
        });
    }
    if lines.is_empty() {
        return Err(NotCanonical {
            line: 0,
            reason: "no content",
        });
    }
    let mut pos = 0;
    let tree = block(&lines, &mut pos, 0)?;
    match lines.get(pos) {
        None => Ok(tree),
        Some(line) => Err(NotCanonical {
            line: line.number,
            reason: "unexpected indentation",
        }),
    }
}

fn block(lines: &[Line<'_>], pos: &mut usize, indent: usize) -> Result<Tree<String>, NotCanonical> {
    let first = &lines[*pos];
    if first.indent != indent {
        return Err(NotCanonical {
            line: first.number,
            reason: "unexpected indentation",
        });
    }
    if indent / 2 >= MAX_DEPTH {
        return Err(NotCanonical {
            line: first.number,
            reason: "nested too deeply",
        });
    }
    if first.body == "-" || first.body.starts_with("- ") {
        let mut items = Vec::new();
        while let Some(line) = lines.get(*pos).filter(|l| l.indent == indent) {
            let rest = match line.body.strip_prefix('-') {
                Some("") => None,
                Some(rest) if rest.starts_with(' ') => Some(&rest[1..]),
                _ => {
                    return Err(NotCanonical {
                        line: line.number,
                        reason: "a mapping key inside a list",
                    });
                }
            };
            *pos += 1;
            items.push(node(lines, pos, indent, line.number, rest)?);
        }
        Ok(Tree::List(items))
    } else {
        let mut map = IndexMap::new();
        while let Some(line) = lines.get(*pos).filter(|l| l.indent == indent) {
            let (key, rest) = split_key(line.body).ok_or(NotCanonical {
                line: line.number,
                reason: "bad key",
            })?;
            let rest = match rest {
                "" => None,
                rest if rest.starts_with(' ') => Some(&rest[1..]),
                _ => {
                    return Err(NotCanonical {
                        line: line.number,
                        reason: "no space after `:`",
                    });
                }
            };
            *pos += 1;
            let child = node(lines, pos, indent, line.number, rest)?;
            if map.insert(key, child).is_some() {
                return Err(NotCanonical {
                    line: line.number,
                    reason: "duplicate key",
                });
            }
        }
        Ok(Tree::Map(map))
    }
}

/// The node after a key or `-`: inline text, or a nested block (`None`).
fn node(
    lines: &[Line<'_>],
    pos: &mut usize,
    indent: usize,
    number: usize,
    inline: Option<&str>,
) -> Result<Tree<String>, NotCanonical> {
    match inline {
        None => match lines.get(*pos) {
            Some(next) if next.indent == indent + 2 => block(lines, pos, indent + 2),
            _ => Err(NotCanonical {
                line: number,
                reason: "an empty value",
            }),
        },
        Some("{}") => Ok(Tree::empty_map()),
        Some("[]") => Ok(Tree::List(Vec::new())),
        Some(text) => scalar(text).map(Tree::Leaf).ok_or(NotCanonical {
            line: number,
            reason: "bad scalar",
        }),
    }
}

fn split_key(body: &str) -> Option<(String, &str)> {
    if body.starts_with('"') {
        let (key, rest) = quoted(body)?;
        Some((key, rest.strip_prefix(':')?))
    } else {
        let colon = body.find(':')?;
        let key = &body[..colon];
        is_plain_key(key).then(|| (key.to_string(), &body[colon + 1..]))
    }
}

/// A scalar: a canonical unsigned integer, a sealed `rv1:` value, or a
/// double-quoted string that consumes the whole text.
fn scalar(text: &str) -> Option<String> {
    if text.starts_with('"') {
        let (value, rest) = quoted(text)?;
        return rest.is_empty().then_some(value);
    }
    let is_int =
        text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    let is_sealed = text.starts_with("rv1:")
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'+' | b'/' | b'=' | b'-'))
        && !text.ends_with(':');
    (is_int || is_sealed).then(|| text.to_string())
}

/// Reads a JSON-style double-quoted string at the start of `text`; returns it
/// and the rest. Only the escapes the writer uses are understood.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text[1..].char_indices();
    while let Some((offset, ch)) = chars.next() {
        match ch {
            '"' => return Some((out, &text[offset + 2..])),
            '\\' => match chars.next()?.1 {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let high = hex4(&mut chars)?;
                    let code = if (0xD800..0xDC00).contains(&high) {
                        let (_, '\\') = chars.next()? else {
                            return None;
                        };
                        let (_, 'u') = chars.next()? else { return None };
                        let low = hex4(&mut chars)?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return None;
                        }
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        high
                    };
                    out.push(char::from_u32(code)?);
                }
                _ => return None,
            },
            // Characters libyaml treats as line breaks or marks are refused,
            // so that both readers agree on every file this one accepts.
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}' | '\u{85}') => {
                return None;
            }
            c => out.push(c),
        }
    }
    None
}

fn hex4(chars: &mut std::str::CharIndices<'_>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.1.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit(tree: &Tree<String>) -> Vec<u8> {
        let mut out = b"root:".to_vec();
        emit_tree(
            tree,
            2,
            &mut out,
            &mut |leaf: &String, out: &mut Vec<u8>| quote_json_string(leaf, out),
        );
        out
    }

    #[test]
    fn reads_what_it_writes_including_lists_and_empties() {
        let yaml = "root:\n  A:\n    B: \"x\"\n    E: {}\n  L:\n    - \"1\"\n    -\n      K: \"v\"\n    - []\n  \"odd key\": \"q\\\"é\"\n";
        let tree = parse(yaml.as_bytes()).unwrap();
        let Tree::Map(root) = &tree else { panic!() };
        assert_eq!(emit(&root["root"]), yaml.as_bytes());
        let general: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(general["root"]["odd key"].as_str(), Some("q\"é"));
        assert_eq!(general["root"]["L"][1]["K"].as_str(), Some("v"));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            "a: b\n",
            "a: 'x'\n",
            "a: &x \"1\"\n",
            "a: \"1\"\n  b: \"2\"\n",
            "a: \"1\"\na: \"2\"\n",
            "a:\n",
            "a: \"\\x41\"\n",
            "a: 01\n",
            "a: \"1\" # c\n",
            "a: \"1\"",
            "true: \"1\"\n",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "must refuse {bad:?}");
        }
    }
}
