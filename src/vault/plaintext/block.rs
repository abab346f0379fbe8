//! The linear reader of plaintext YAML in block style: the shape of
//! `runvault export` and of the hand-made vaults (nested block mappings
//! and lists indented by two spaces, one key or item per line), read with
//! the canonical reader's grammar ([`canonical::block`]) and no general
//! YAML parser, so a large import costs neither serde_yaml's time nor its
//! memory (its list of every event of the file, 128 MiB for 200 000
//! values).
//!
//! It takes a file only if it is sure to read it as serde_yaml does, and
//! answers `None` otherwise, for the general reader (`vault::plaintext`)
//! to read and judge it; it never reports an error itself. A scalar is
//! taken when it is one of:
//!
//! - a double-quoted string with the JSON-style escapes the canonical
//!   reader knows;
//! - a plain string of a class serde_yaml can only read as that string: an
//!   ASCII letter, then letters, digits and `_ . @ / + -`, and not a word
//!   YAML gives another meaning (`true`, `null`, `yes`, `inf`...);
//! - an unsigned integer written as `export` writes it (no sign, no
//!   leading zero, within 64 bits);
//! - `!binary` and base64 (what `export` writes for bytes);
//! - any other text after `KEY: ` that serde_yaml, reading that text
//!   alone, reads as a plain scalar (numbers, booleans, null, other
//!   strings): the scalar is then what serde_yaml made of it. Text that
//!   does not read alone, or reads as anything but a scalar (an alias, a
//!   flow collection, a mapping, a tag), is left to the general reader.
//!
//! Anything else — another indentation, a comment after the top, a
//! repeated key, a key a path cannot hold, a sealed `rv1:` value, nesting
//! deeper than a path — is left to the general reader too, which gives the
//! exact error. The property test below and the `vault_reader_general`
//! fuzz target check that both readers agree on every file this one takes.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::core::secret::SecretBytes;
use crate::vault::canonical::{self, Lines, TreeBuilder, Visitor};
use crate::vault::path::{MAX_SEGMENTS, validate_key};
use crate::vault::tree::Tree;
use crate::vault::value::{Plain, ScalarKind, leaf_from_yaml};

/// Reads `bytes` as block-style plaintext YAML; `None` if this reader is
/// not sure to read it as serde_yaml does (see the module doc).
pub fn read(bytes: &[u8]) -> Option<Tree<Plain>> {
    let mut lines = Lines::new(bytes).ok()?;
    lines.peek().ok()??;
    let mut reader = BlockValues {
        depth: 0,
        tree: TreeBuilder(|_| Err("unused: every scalar is read by `inline`")),
    };
    let tree = canonical::block(&mut lines, 0, &mut reader).ok()?;
    if !matches!(lines.peek(), Ok(None)) || !matches!(tree, Tree::Map(_)) {
        return None;
    }
    Some(tree)
}

/// Words a plain scalar may not be taken for a string as: YAML's null and
/// booleans (1.2 and 1.1) and the names of the float specials. Compared
/// without case; any of them goes to serde_yaml's own reading.
const SPECIAL_WORDS: &[&str] = &[
    "true", "false", "null", "yes", "no", "on", "off", "y", "n", "inf", "nan", "infinity",
];

/// Whether serde_yaml can only read the plain scalar `text` as the string
/// `text` (see the module doc).
pub(super) fn is_plain_string(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes[1..].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'/' | b'+' | b'-')
        })
        && !SPECIAL_WORDS
            .iter()
            .any(|word| word.eq_ignore_ascii_case(text))
}

/// The canonical tree builder, for the containers of a tree of values.
type Builder = TreeBuilder<fn(Cow<'_, str>) -> Result<Plain, &'static str>>;

/// Builds the tree of values while the grammar walks the file: the
/// containers as the canonical tree builder builds them (a repeated key
/// is refused there), the scalars here.
struct BlockValues {
    /// Segments of the current path.
    depth: usize,
    tree: Builder,
}

impl BlockValues {
    /// A text value, unless it looks like a sealed value (the general
    /// reader refuses the whole file then).
    fn text(value: Cow<'_, str>) -> Result<Tree<Plain>, &'static str> {
        if value.starts_with("rv1:") {
            return Err("a sealed value");
        }
        Ok(Tree::Leaf(Plain {
            kind: ScalarKind::Str,
            bytes: SecretBytes::new(value.into_owned().into_bytes()),
        }))
    }

    /// `!binary` and base64 only.
    fn binary(encoded: &str) -> Result<Tree<Plain>, &'static str> {
        let is_base64 = !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if !is_base64 {
            return Err("not plain base64");
        }
        let bytes = BASE64.decode(encoded).map_err(|_| "not valid base64")?;
        Ok(Tree::Leaf(Plain {
            kind: ScalarKind::Bytes,
            bytes: SecretBytes::new(bytes),
        }))
    }

    /// Any other plain text: what serde_yaml reads it as, alone, if that
    /// is a plain scalar.
    fn resolved(text: &str) -> Result<Tree<Plain>, &'static str> {
        use serde_yaml::Value;
        let value: Value = serde_yaml::from_str(text).map_err(|_| "not a scalar alone")?;
        match value {
            Value::String(ref string) if string.starts_with("rv1:") => Err("a sealed value"),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                leaf_from_yaml(value, &crate::vault::path::KeyPath::root())
                    .map_err(|_| "not a value")
            }
            _ => Err("not a plain scalar"),
        }
    }
}

impl<'t> Visitor<'t> for BlockValues {
    type Node = <Builder as Visitor<'t>>::Node;
    type Map = <Builder as Visitor<'t>>::Map;
    type List = <Builder as Visitor<'t>>::List;

    fn begin_map(&mut self) -> Result<Self::Map, &'static str> {
        self.tree.begin_map()
    }

    fn begin_list(&mut self) -> Result<Self::List, &'static str> {
        self.tree.begin_list()
    }

    fn enter_key(&mut self, key: &Cow<'t, str>) -> Result<(), &'static str> {
        validate_key(key).map_err(|_| "a key a path cannot hold")?;
        self.enter_item(0)
    }

    fn enter_item(&mut self, _: usize) -> Result<(), &'static str> {
        self.depth += 1;
        if self.depth > MAX_SEGMENTS {
            return Err("nested deeper than a path");
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn scalar(&mut self, text: Cow<'t, str>) -> Result<Self::Node, &'static str> {
        BlockValues::text(text)
    }

    fn inline(&mut self, text: &'t str) -> Result<Self::Node, &'static str> {
        if text.starts_with('"') {
            let value = canonical::quoted_scalar(text).ok_or("not a canonical quoted string")?;
            return BlockValues::text(value);
        }
        if is_plain_string(text) {
            return BlockValues::text(Cow::Borrowed(text));
        }
        let is_canonical_int = text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'))
            && text.parse::<u64>().is_ok();
        if is_canonical_int {
            // What serde_yaml makes of it: a u64, written back as these digits.
            return Ok(Tree::Leaf(Plain {
                kind: ScalarKind::Int,
                bytes: SecretBytes::new(text.as_bytes().to_vec()),
            }));
        }
        if let Some(encoded) = text.strip_prefix("!binary ") {
            return BlockValues::binary(encoded);
        }
        BlockValues::resolved(text)
    }

    fn empty_map(&mut self) -> Result<Self::Node, &'static str> {
        self.tree.empty_map()
    }

    fn empty_list(&mut self) -> Result<Self::Node, &'static str> {
        self.tree.empty_list()
    }

    fn map_entry(
        &mut self,
        map: &mut Self::Map,
        key: Cow<'t, str>,
        node: Self::Node,
    ) -> Result<(), &'static str> {
        self.tree.map_entry(map, key, node)
    }

    fn end_map(&mut self, map: Self::Map) -> Self::Node {
        self.tree.end_map(map)
    }

    fn list_item(&mut self, list: &mut Self::List, node: Self::Node) {
        self.tree.list_item(list, node);
    }

    fn end_list(&mut self, list: Self::List) -> Self::Node {
        self.tree.end_list(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::plaintext::read_general;
    use proptest::prelude::*;
    use std::path::Path;

    /// The general reader's verdict, for comparison (`Plain` has no `Debug`).
    fn general(text: &str) -> Option<Tree<Plain>> {
        read_general(text.as_bytes(), Path::new("in.yml")).ok()
    }

    #[test]
    fn takes_what_export_and_admins_write_and_reads_it_as_serde_yaml() {
        let legacy = include_str!("../../../fixtures/legacy/vault.yml");
        let fast = read(legacy.as_bytes()).expect("the hand-made vault reads");
        assert!(general(legacy).is_some_and(|tree| tree == fast));
        let exported = "A:\n  B: \"x\\ny\"\n  C: 8\n  D: 0.75\n  E: true\n  F: null\n  G: !binary AJ+S\n  H:\n    - \"a\"\n    -\n      I: {}\n  J: []\n";
        let fast = read(exported.as_bytes()).expect("export's output reads");
        assert!(general(exported).is_some_and(|tree| tree == fast));
    }

    #[test]
    fn leaves_to_the_general_reader_what_it_is_not_sure_of() {
        for text in [
            "A: x\nA: y\n",
            "A: rv1:1:2:abc\n",
            "A: \"rv1:1:2:abc\"\n",
            "\"A.B\": x\n",
            "A: &a x\nB: *a\n",
            "A: [1, 2]\n",
            "A: x: y\n",
            "A: !foo x\n",
            "A: |\n  text\n",
            "- a\n",
            "A: x\n# comment\nB: y\n",
            "---\nA: x\n",
            "A:\n    B: x\n",
            "A: 'it''s'\n  B: x\n",
        ] {
            assert!(read(text.as_bytes()).is_none(), "{text:?}");
        }
    }

    /// Scalars of every kind, and the plain texts YAML gives another meaning.
    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Za-z][A-Za-z0-9_.@/+-]{0,12}",
            1 => "[-+]?[0-9]{1,25}",
            1 => "[-+]?[0-9]{0,4}\\.[0-9]{0,4}([eE][-+]?[0-9]{1,3})?",
            1 => "0[xob][0-9a-fA-F]{1,6}",
            1 => "[a-zA-Z ~.+-]{1,7}",
            1 => "\"[ -~&&[^\"\\\\]]{0,8}\"",
            1 => "'[ -~&&[^']]{0,8}'",
            1 => prop::sample::select(vec![
                "~", "null", "Null", "NULL", "true", "True", "FALSE", "yes", "no", "on", "off",
                "y", "N", ".inf", "-.Inf", ".nan", "inf", "NaN", "infinity", "1_000", "0o17",
                "0x1F", "-0", "+1", "1e3", "!binary aGk=", "!binary ***", "!!str 12",
                "!!int '7'", "&a x", "*a", "x #c", "x: y", "[a]", "{a: 1}", "rv1:1:2:abc",
                "@x", "`x", "%x", "-x", "? x", "a b", "\"a\\u00e9\"", "\"\\t\"", "|", ">-",
                "2001-12-14", "12:30", "1:2", "=", "<<",
            ])
            .prop_map(str::to_string),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Za-z_][A-Za-z0-9_]{0,6}",
            1 => "\"[ -~&&[^\"\\\\]]{1,6}\"",
            1 => prop::sample::select(vec!["on", "Yes", "null", "\"A.B\"", "a-b", "1"])
                .prop_map(str::to_string),
        ]
    }

    /// A block-style document: nested mappings and lists of scalars.
    fn document() -> impl Strategy<Value = String> {
        #[derive(Debug, Clone)]
        enum Node {
            Scalar(String),
            Map(Vec<(String, Node)>),
            List(Vec<Node>),
        }
        fn write(node: &Node, level: usize, out: &mut String) {
            match node {
                Node::Scalar(text) => {
                    out.push(' ');
                    out.push_str(text);
                    out.push('\n');
                }
                Node::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
                Node::List(items) if items.is_empty() => out.push_str(" []\n"),
                Node::Map(entries) => {
                    out.push('\n');
                    for (key, child) in entries {
                        out.push_str(&"  ".repeat(level));
                        out.push_str(key);
                        out.push(':');
                        write(child, level + 1, out);
                    }
                }
                Node::List(items) => {
                    out.push('\n');
                    for child in items {
                        out.push_str(&"  ".repeat(level));
                        out.push('-');
                        write(child, level + 1, out);
                    }
                }
            }
        }
        let node = scalar()
            .prop_map(Node::Scalar)
            .prop_recursive(4, 40, 5, |inner| {
                prop_oneof![
                    proptest::collection::vec((key(), inner.clone()), 0..5).prop_map(Node::Map),
                    proptest::collection::vec(inner, 0..4).prop_map(Node::List),
                ]
            });
        proptest::collection::vec((key(), node), 1..6).prop_map(|entries| {
            let mut out = String::new();
            for (key, child) in &entries {
                out.push_str(key);
                out.push(':');
                write(child, 1, &mut out);
            }
            out
        })
    }

    proptest! {
        #![proptest_config(crate::core::proptest_seeds::with_cases(2000))]

        /// The class of plain strings: serde_yaml reads each as itself.
        #[test]
        fn plain_strings_read_as_themselves(text in "[A-Za-z][A-Za-z0-9_.@/+-]{0,16}") {
            if is_plain_string(&text) {
                let value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
                prop_assert_eq!(value, serde_yaml::Value::String(text.clone()));
            }
        }

        /// Differential: every document this reader takes, the general
        /// reader reads as the same values.
        #[test]
        fn both_readers_agree_on_what_this_one_takes(text in document()) {
            if let Some(fast) = read(text.as_bytes()) {
                let general = general(&text);
                prop_assert!(general.is_some(), "the general reader refuses {:?}", text);
                prop_assert!(general.is_some_and(|tree| tree == fast), "they differ on {:?}", text);
            }
        }
    }
}
