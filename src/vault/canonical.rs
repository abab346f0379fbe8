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

use std::borrow::Cow;

use indexmap::IndexMap;

use crate::vault::tree::Tree;

/// Deepest nesting either reader accepts.
pub(super) const MAX_DEPTH: usize = 64;

/// Longest line either reader accepts, and the longest line of YAML that
/// serde_yaml is given ([`prescan_yaml`]): 16 MiB. The longest line
/// runvault writes is a value of the largest size ([`MAX_VALUE_BYTES`],
/// 4 MiB) sealed (base64: 5.6 MiB) after its key.
///
/// [`prescan_yaml`]: crate::vault::value::prescan_yaml
/// [`MAX_VALUE_BYTES`]: crate::vault::value::MAX_VALUE_BYTES
pub(super) const MAX_LINE_BYTES: usize = 16 << 20;

/// Whether a plain sealed scalar may hold `b`: `[A-Za-z0-9:+/=-]`. Written
/// with comparisons and `|`, not a table or `||`, so that
/// [`all_sealed_bytes`] compiles to vector compares: every value of a large
/// vault goes through this check.
#[inline]
const fn is_sealed_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b':') | (b == b'+') | (b == b'/') | (b == b'=') | (b == b'-')
}

/// Whether every byte of `bytes` passes [`is_sealed_byte`]: 32 bytes at a
/// time without an early exit inside a block (which would stop the
/// compiler from vectorizing it); the tail is the last 32 bytes, which
/// overlap the blocks already checked.
fn all_sealed_bytes(bytes: &[u8]) -> bool {
    const BLOCK: usize = 32;
    let block_ok = |block: &[u8; BLOCK]| block.iter().fold(true, |ok, &b| ok & is_sealed_byte(b));
    let (blocks, _) = bytes.as_chunks::<BLOCK>();
    match bytes.last_chunk::<BLOCK>() {
        None => bytes.iter().all(|&b| is_sealed_byte(b)),
        Some(last) => blocks.iter().all(block_ok) && block_ok(last),
    }
}

/// Writes `text` as a double-quoted JSON string (also a valid YAML scalar).
pub(super) fn quote_json_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for ch in text.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\u{feff}' => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Keys that YAML 1.1 tools would read as something other than a string.
const YAML_KEYWORDS: &[&str] = &["y", "n", "yes", "no", "true", "false", "on", "off", "null"];

/// Writes `key` plain when that is unambiguous, else double-quoted.
pub(super) fn emit_key(key: &str, out: &mut Vec<u8>) {
    if is_plain_key(key) {
        out.extend_from_slice(key.as_bytes());
    } else {
        quote_json_string(key, out);
    }
}

/// Whether [`emit_key`] writes `key` plain (unquoted).
pub(super) fn is_plain_key(key: &str) -> bool {
    // Bytes, not chars: every byte of a non-ASCII char fails the test.
    key.bytes().all(is_plain_key_byte) && is_plain_key_of_key_bytes(key)
}

/// A byte of a plain key: `[A-Za-z0-9_]`. A table: every key of a vault
/// is scanned with it, byte by byte.
fn is_plain_key_byte(b: u8) -> bool {
    const TABLE: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let byte = b as u8;
            table[b] = byte.is_ascii_alphanumeric() || byte == b'_';
            b += 1;
        }
        table
    };
    TABLE[usize::from(b)]
}

/// [`is_plain_key`] for a key already known to hold only
/// [`is_plain_key_byte`]s: it must not start with a digit (nor be empty)
/// nor be a YAML 1.1 keyword.
fn is_plain_key_of_key_bytes(key: &str) -> bool {
    matches!(key.as_bytes().first(), Some(b) if !b.is_ascii_digit())
        && (key.len() > 5
            || !YAML_KEYWORDS
                .iter()
                .any(|word| word.eq_ignore_ascii_case(key)))
}

/// Writes a tree as block YAML at `indent` spaces, each leaf rendered by
/// `leaf` (which writes one scalar, no newline). The caller has written the
/// key (or `-`) that owns the tree, without a trailing newline.
pub(super) fn emit_tree<L>(
    tree: &Tree<L>,
    indent: usize,
    out: &mut Vec<u8>,
    leaf: &mut dyn FnMut(&L, &mut Vec<u8>),
) {
    emit_node(tree, indent / 2, out, leaf);
}

fn emit_node<L>(
    tree: &Tree<L>,
    level: usize,
    out: &mut Vec<u8>,
    leaf: &mut dyn FnMut(&L, &mut Vec<u8>),
) {
    match tree {
        Tree::Leaf(value) => {
            out.push(b' ');
            leaf(value, out);
            out.push(b'\n');
        }
        Tree::Map(map) if map.is_empty() => emit_empty(level, b"{}", out),
        Tree::List(list) if list.is_empty() => emit_empty(level, b"[]", out),
        Tree::Map(map) => {
            emit_open(level, out);
            for (key, child) in map {
                emit_entry_key(level, key, out);
                emit_node(child, level + 1, out, leaf);
            }
        }
        Tree::List(list) => {
            emit_open(level, out);
            for child in list {
                emit_entry_item(level, out);
                emit_node(child, level + 1, out, leaf);
            }
        }
    }
}

// The layout one node at a time, for the writers that walk a tree or a
// file in order (`emit_tree`, `export`, the streaming `rekey`). A node's
// `level` is its depth from the document's root (0); the entries of a
// container at `level` are indented by `2 * level` spaces.

/// A non-empty block mapping or list starts at `level`.
pub(super) fn emit_open(level: usize, out: &mut Vec<u8>) {
    if level > 0 {
        out.push(b'\n');
    }
}

/// The next entry, `key`, of the mapping at `level` (its value follows).
pub(super) fn emit_entry_key(level: usize, key: &str, out: &mut Vec<u8>) {
    out.resize(out.len() + 2 * level, b' ');
    emit_key(key, out);
    out.push(b':');
}

/// The next item of the list at `level` (its value follows).
pub(super) fn emit_entry_item(level: usize, out: &mut Vec<u8>) {
    out.resize(out.len() + 2 * level, b' ');
    out.push(b'-');
}

/// An empty mapping or list (`flow`: `{}` or `[]`) at `level`.
pub(super) fn emit_empty(level: usize, flow: &[u8], out: &mut Vec<u8>) {
    if level > 0 {
        out.push(b' ');
    }
    out.extend_from_slice(flow);
    out.push(b'\n');
}

/// Why the linear reader refused a file (the caller falls back to serde_yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCanonical {
    /// 1-based line number.
    pub line: usize,
    /// What was not understood.
    pub reason: &'static str,
}

/// One content line: its number, its indentation and the text after it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line<'t> {
    /// 1-based line number.
    pub number: usize,
    /// Number of leading spaces.
    pub indent: usize,
    /// The text after the indentation.
    pub body: &'t str,
}

/// The content lines of a canonical file, read one at a time with one line
/// of lookahead, so a reader can walk a large file without collecting it.
/// Each line is checked (indentation, no tab, no trailing space) when it is
/// first read.
#[derive(Clone)]
pub(super) struct Lines<'t> {
    text: &'t str,
    /// Byte offset of the next line not yet peeked.
    offset: usize,
    /// Number of the last line read or peeked.
    number: usize,
    peeked: Option<(Line<'t>, usize)>,
    /// Whether the text has a tab or a carriage return somewhere: if not
    /// (every file runvault writes), no line needs its own search for one.
    has_tab_or_cr: bool,
}

impl<'t> Lines<'t> {
    /// Checks the whole text (UTF-8, final newline) and skips the comment
    /// lines at the top.
    pub(super) fn new(text: &'t [u8]) -> Result<Lines<'t>, NotCanonical> {
        let text = std::str::from_utf8(text).map_err(|_| NotCanonical {
            line: 0,
            reason: "not UTF-8",
        })?;
        if !text.ends_with('\n') {
            return Err(NotCanonical {
                line: 0,
                reason: "no final newline",
            });
        }
        let mut lines = Lines {
            text,
            offset: 0,
            number: 0,
            peeked: None,
            has_tab_or_cr: memchr::memchr2(b'\t', b'\r', text.as_bytes()).is_some(),
        };
        while lines.text[lines.offset..].starts_with('#') {
            let (comment, next) = lines.raw_line();
            if comment.chars().any(breaks_yaml) {
                return Err(NotCanonical {
                    line: lines.number,
                    reason: "a control character or line break in a comment",
                });
            }
            lines.offset = next;
        }
        Ok(lines)
    }

    /// The next raw line and the offset after its newline.
    fn raw_line(&mut self) -> (&'t str, usize) {
        let start = self.offset;
        let end = start
            + memchr::memchr(b'\n', &self.text.as_bytes()[start..])
                .expect("the text ends with a newline");
        self.number += 1;
        (&self.text[start..end], end + 1)
    }

    /// The next line without consuming it; `None` at the end.
    pub(super) fn peek(&mut self) -> Result<Option<Line<'t>>, NotCanonical> {
        if let Some((line, _)) = self.peeked {
            return Ok(Some(line));
        }
        if self.offset == self.text.len() {
            return Ok(None);
        }
        let (raw, next) = self.raw_line();
        let indent = raw.bytes().take_while(|&b| b == b' ').count();
        let body = &raw[indent..];
        if body.is_empty()
            || raw.len() > MAX_LINE_BYTES
            || body.ends_with(' ')
            || indent % 2 != 0
            || (self.has_tab_or_cr && memchr::memchr2(b'\t', b'\r', body.as_bytes()).is_some())
        {
            return Err(NotCanonical {
                line: self.number,
                reason: "blank line, odd indent, tab, trailing space or a line over the limit",
            });
        }
        let line = Line {
            number: self.number,
            indent,
            body,
        };
        self.peeked = Some((line, next));
        Ok(Some(line))
    }

    /// The whole text (every line's body is a slice of it).
    pub(super) fn text(&self) -> &'t str {
        self.text
    }

    /// The size of the text in bytes.
    pub(super) fn len(&self) -> usize {
        self.text.len()
    }

    /// Consumes the line [`Lines::peek`] returned.
    pub(super) fn advance(&mut self) {
        let (_, next) = self.peeked.take().expect("advance after peek");
        self.offset = next;
    }
}

/// What a walk of a canonical block reports, in file order. The reader owns
/// the grammar; a visitor only decides what the nodes become, so the tree
/// reader ([`parse`]) and the streaming reader (`vault::stream`) cannot
/// disagree on what a file says. An `Err` (a reason) stops the walk.
pub(super) trait Visitor<'t> {
    /// What a node becomes.
    type Node;
    /// A mapping being read.
    type Map;
    /// A list being read.
    type List;
    /// A non-empty block mapping starts at the current path.
    fn begin_map(&mut self) -> Result<Self::Map, &'static str>;
    /// A non-empty block list starts at the current path.
    fn begin_list(&mut self) -> Result<Self::List, &'static str>;
    /// The value of `key` follows: the path goes one step down. (A `&Cow`,
    /// not a `&str`: a visitor may keep the key borrowed from the file.)
    #[allow(clippy::ptr_arg)]
    fn enter_key(&mut self, key: &Cow<'t, str>) -> Result<(), &'static str>;
    /// List item `index` follows: the path goes one step down.
    fn enter_item(&mut self, index: usize) -> Result<(), &'static str>;
    /// The entry or item entered last is complete: the path goes back up.
    fn leave(&mut self);
    /// A scalar at the current path (quotes and escapes resolved).
    fn scalar(&mut self, text: Cow<'t, str>) -> Result<Self::Node, &'static str>;
    /// The text after `KEY: ` or `- ` on a line, when it is not `{}` or
    /// `[]`: by default a canonical scalar (a plain unsigned integer, a
    /// sealed value or a double-quoted string) handed to
    /// [`Visitor::scalar`]. A reader of another scalar syntax (plaintext
    /// imports) takes the text itself.
    fn inline(&mut self, text: &'t str) -> Result<Self::Node, &'static str> {
        let text = if Self::SEALED_ONLY {
            sealed_scalar(text)?
        } else {
            scalar(text).ok_or("bad scalar")?
        };
        self.scalar(text)
    }
    /// Whether every scalar must be a sealed value (a walk of `secrets:`):
    /// then the default [`Visitor::inline`] checks that, once per value,
    /// and [`Visitor::scalar`] gets only sealed texts.
    const SEALED_ONLY: bool = false;
    /// `{}` at the current path.
    fn empty_map(&mut self) -> Result<Self::Node, &'static str>;
    /// `[]` at the current path.
    fn empty_list(&mut self) -> Result<Self::Node, &'static str>;
    /// Adds a finished entry; `Err` for a key already in the mapping.
    fn map_entry(
        &mut self,
        map: &mut Self::Map,
        key: Cow<'t, str>,
        node: Self::Node,
    ) -> Result<(), &'static str>;
    /// The mapping is complete.
    fn end_map(&mut self, map: Self::Map) -> Self::Node;
    /// Adds a finished item.
    fn list_item(&mut self, list: &mut Self::List, node: Self::Node);
    /// The list is complete.
    fn end_list(&mut self, list: Self::List) -> Self::Node;
}

/// A [`Visitor`] that builds nothing, for the streaming passes (as
/// ripgrep's `Sink`): the steps of the path, the scalars and the empty
/// collections are required; the rest do nothing unless a pass needs them.
/// Every such type is a `Visitor` with unit nodes.
pub(crate) trait StreamVisitor<'t> {
    /// As [`Visitor::SEALED_ONLY`].
    const SEALED_ONLY: bool = false;
    /// As [`Visitor::begin_map`].
    fn begin_map(&mut self) -> Result<(), &'static str> {
        Ok(())
    }
    /// As [`Visitor::begin_list`].
    fn begin_list(&mut self) -> Result<(), &'static str> {
        Ok(())
    }
    /// As [`Visitor::enter_key`].
    #[allow(clippy::ptr_arg)]
    fn enter_key(&mut self, key: &Cow<'t, str>) -> Result<(), &'static str>;
    /// As [`Visitor::enter_item`].
    fn enter_item(&mut self, index: usize) -> Result<(), &'static str>;
    /// As [`Visitor::leave`].
    fn leave(&mut self);
    /// As [`Visitor::scalar`].
    fn scalar(&mut self, text: Cow<'t, str>) -> Result<(), &'static str>;
    /// As [`Visitor::empty_map`].
    fn empty_map(&mut self) -> Result<(), &'static str>;
    /// As [`Visitor::empty_list`].
    fn empty_list(&mut self) -> Result<(), &'static str>;
    /// As [`Visitor::end_map`].
    fn end_map(&mut self) {}
    /// As [`Visitor::end_list`].
    fn end_list(&mut self) {}
}

impl<'t, V: StreamVisitor<'t>> Visitor<'t> for V {
    type Node = ();
    type Map = ();
    type List = ();
    const SEALED_ONLY: bool = V::SEALED_ONLY;

    #[inline(always)]
    fn begin_map(&mut self) -> Result<(), &'static str> {
        StreamVisitor::begin_map(self)
    }

    #[inline(always)]
    fn begin_list(&mut self) -> Result<(), &'static str> {
        StreamVisitor::begin_list(self)
    }

    #[inline(always)]
    fn enter_key(&mut self, key: &Cow<'t, str>) -> Result<(), &'static str> {
        StreamVisitor::enter_key(self, key)
    }

    #[inline(always)]
    fn enter_item(&mut self, index: usize) -> Result<(), &'static str> {
        StreamVisitor::enter_item(self, index)
    }

    #[inline(always)]
    fn leave(&mut self) {
        StreamVisitor::leave(self);
    }

    #[inline(always)]
    fn scalar(&mut self, text: Cow<'t, str>) -> Result<(), &'static str> {
        StreamVisitor::scalar(self, text)
    }

    #[inline(always)]
    fn empty_map(&mut self) -> Result<(), &'static str> {
        StreamVisitor::empty_map(self)
    }

    #[inline(always)]
    fn empty_list(&mut self) -> Result<(), &'static str> {
        StreamVisitor::empty_list(self)
    }

    #[inline(always)]
    fn map_entry(&mut self, (): &mut (), _: Cow<'t, str>, (): ()) -> Result<(), &'static str> {
        Ok(())
    }

    #[inline(always)]
    fn end_map(&mut self, (): ()) {
        StreamVisitor::end_map(self);
    }

    #[inline(always)]
    fn list_item(&mut self, (): &mut (), (): ()) {}

    #[inline(always)]
    fn end_list(&mut self, (): ()) {
        StreamVisitor::end_list(self);
    }
}

/// Builds a tree whose leaves are made by `F` from each scalar (`Err`
/// refuses the scalar). [`TreeBuilder::raw`] keeps the scalar strings.
pub(super) struct TreeBuilder<F>(pub F);

/// The leaf maker of [`TreeBuilder::raw`].
pub(super) type RawLeaf = fn(Cow<'_, str>) -> Result<String, &'static str>;

impl TreeBuilder<RawLeaf> {
    /// A builder of raw scalar strings.
    pub(super) fn raw() -> TreeBuilder<RawLeaf> {
        TreeBuilder(|text| Ok(text.into_owned()))
    }
}

impl<'t, L, F: FnMut(Cow<'t, str>) -> Result<L, &'static str>> Visitor<'t> for TreeBuilder<F> {
    type Node = Tree<L>;
    type Map = IndexMap<String, Tree<L>>;
    type List = Vec<Tree<L>>;

    fn begin_map(&mut self) -> Result<Self::Map, &'static str> {
        Ok(IndexMap::new())
    }
    fn begin_list(&mut self) -> Result<Self::List, &'static str> {
        Ok(Vec::new())
    }
    fn enter_key(&mut self, _: &Cow<'t, str>) -> Result<(), &'static str> {
        Ok(())
    }
    fn enter_item(&mut self, _: usize) -> Result<(), &'static str> {
        Ok(())
    }
    fn leave(&mut self) {}
    fn scalar(&mut self, text: Cow<'t, str>) -> Result<Self::Node, &'static str> {
        (self.0)(text).map(Tree::Leaf)
    }
    fn empty_map(&mut self) -> Result<Self::Node, &'static str> {
        Ok(Tree::empty_map())
    }
    fn empty_list(&mut self) -> Result<Self::Node, &'static str> {
        Ok(Tree::List(Vec::new()))
    }
    fn map_entry(
        &mut self,
        map: &mut Self::Map,
        key: Cow<'t, str>,
        node: Self::Node,
    ) -> Result<(), &'static str> {
        match map.entry(key.into_owned()) {
            indexmap::map::Entry::Occupied(_) => Err("duplicate key"),
            indexmap::map::Entry::Vacant(slot) => {
                slot.insert(node);
                Ok(())
            }
        }
    }
    fn end_map(&mut self, map: Self::Map) -> Self::Node {
        Tree::Map(map)
    }
    fn list_item(&mut self, list: &mut Self::List, node: Self::Node) {
        list.push(node);
    }
    fn end_list(&mut self, list: Self::List) -> Self::Node {
        Tree::List(list)
    }
}

/// Reads a canonical file into a tree of raw scalar strings, in linear time.
pub fn parse(text: &[u8]) -> Result<Tree<String>, NotCanonical> {
    let mut lines = Lines::new(text)?;
    if lines.peek()?.is_none() {
        return Err(NotCanonical {
            line: 0,
            reason: "no content",
        });
    }
    let tree = block(&mut lines, 0, &mut TreeBuilder::raw())?;
    match lines.peek()? {
        None => Ok(tree),
        Some(line) => Err(NotCanonical {
            line: line.number,
            reason: "unexpected indentation",
        }),
    }
}

/// Reads the block mapping or list whose first line is the next line, at
/// `indent` spaces, reporting it to `visitor`.
pub(super) fn block<'t, V: Visitor<'t>>(
    lines: &mut Lines<'t>,
    indent: usize,
    visitor: &mut V,
) -> Result<V::Node, NotCanonical> {
    let first = lines.peek()?.ok_or(NotCanonical {
        line: 0,
        reason: "an empty block",
    })?;
    let fail = |line: usize, reason: &'static str| NotCanonical { line, reason };
    if first.indent != indent {
        return Err(fail(first.number, "unexpected indentation"));
    }
    if indent / 2 >= MAX_DEPTH {
        return Err(fail(first.number, "nested too deeply"));
    }
    if first.body == "-" || first.body.starts_with("- ") {
        let mut list = visitor
            .begin_list()
            .map_err(|reason| fail(first.number, reason))?;
        let mut index = 0;
        while let Some(line) = lines.peek()?.filter(|l| l.indent == indent) {
            let rest = match line.body.strip_prefix('-') {
                Some("") => None,
                Some(rest) if rest.starts_with(' ') => Some(&rest[1..]),
                _ => return Err(fail(line.number, "a mapping key inside a list")),
            };
            lines.advance();
            visitor
                .enter_item(index)
                .map_err(|reason| fail(line.number, reason))?;
            let child = node(lines, indent, line.number, rest, visitor)?;
            visitor.leave();
            visitor.list_item(&mut list, child);
            index += 1;
        }
        Ok(visitor.end_list(list))
    } else {
        let mut map = visitor
            .begin_map()
            .map_err(|reason| fail(first.number, reason))?;
        // A key repeated right after its own entry (`A:` {…} `A:` {…})
        // gives the file MAC the same items, with the same full paths, as
        // one mapping would, so only this check refuses it as the tree
        // reader does; a repeat anywhere else changes the items' order,
        // which the MAC catches. The streaming visitors keep no key sets.
        let mut previous: Option<Cow<'t, str>> = None;
        while let Some(line) = lines.peek()?.filter(|l| l.indent == indent) {
            let (key, rest) = split_key(line.body).ok_or(fail(line.number, "bad key"))?;
            if previous.as_ref() == Some(&key) {
                return Err(fail(line.number, "a key repeated"));
            }
            previous = Some(key.clone());
            let rest = match rest {
                "" => None,
                rest if rest.starts_with(' ') => Some(&rest[1..]),
                _ => return Err(fail(line.number, "no space after `:`")),
            };
            lines.advance();
            visitor
                .enter_key(&key)
                .map_err(|reason| fail(line.number, reason))?;
            let child = node(lines, indent, line.number, rest, visitor)?;
            visitor.leave();
            visitor
                .map_entry(&mut map, key, child)
                .map_err(|reason| fail(line.number, reason))?;
        }
        Ok(visitor.end_map(map))
    }
}

/// The node after a key or `-` on line `number`: inline text, or a nested
/// block (`None`).
pub(super) fn node<'t, V: Visitor<'t>>(
    lines: &mut Lines<'t>,
    indent: usize,
    number: usize,
    inline: Option<&'t str>,
    visitor: &mut V,
) -> Result<V::Node, NotCanonical> {
    let fail = |reason| NotCanonical {
        line: number,
        reason,
    };
    match inline {
        None => match lines.peek()? {
            Some(next) if next.indent == indent + 2 => block(lines, indent + 2, visitor),
            _ => Err(fail("an empty value")),
        },
        Some("{}") => visitor.empty_map().map_err(fail),
        Some("[]") => visitor.empty_list().map_err(fail),
        Some(text) => visitor.inline(text).map_err(fail),
    }
}

/// Splits a mapping line's body into its key and the text after the `:`.
pub(super) fn split_key(body: &str) -> Option<(Cow<'_, str>, &str)> {
    if body.starts_with('"') {
        let (key, rest) = quoted(body)?;
        Some((key, rest.strip_prefix(':')?))
    } else {
        // A plain key runs up to the first byte outside `[A-Za-z0-9_]`,
        // which must be the `:` (the same as splitting at the first `:`
        // and checking the key, in one scan of a short line start).
        let bytes = body.as_bytes();
        let colon = bytes
            .iter()
            .position(|&b| !is_plain_key_byte(b))
            .filter(|&end| bytes[end] == b':')?;
        let key = &body[..colon];
        is_plain_key_of_key_bytes(key).then_some((Cow::Borrowed(key), &body[colon + 1..]))
    }
}

/// A scalar: a canonical unsigned integer, a sealed `rv1:` value, or a
/// double-quoted string that consumes the whole text.
fn scalar(text: &str) -> Option<Cow<'_, str>> {
    if text.starts_with('"') {
        return quoted_scalar(text);
    }
    let is_int =
        text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    (is_int || is_sealed_text(text)).then_some(Cow::Borrowed(text))
}

/// A scalar that must be a sealed value, checked once: a plain sealed text
/// is its own scalar; a double-quoted one, which the grammar also takes,
/// is unquoted first.
fn sealed_scalar(text: &str) -> Result<Cow<'_, str>, &'static str> {
    if is_sealed_text(text) {
        return Ok(Cow::Borrowed(text));
    }
    match scalar(text) {
        Some(value) if text.starts_with('"') && is_sealed_text(&value) => Ok(value),
        Some(_) => Err("a value that is not sealed"),
        None => Err("bad scalar"),
    }
}

/// Whether `text` is a sealed value as the writer writes it: `rv1:`, then
/// only `[A-Za-z0-9:+/=-]`, not ending in `:` (which would make YAML read
/// a mapping key; removal markers end in `:-`). Every reader takes only
/// these as sealed values, so whatever a reader takes, the writer writes
/// back in the canonical layout.
pub(super) fn is_sealed_text(text: &str) -> bool {
    text.starts_with("rv1:") && !text.ends_with(':') && all_sealed_bytes(text.as_bytes())
}

/// Characters libyaml refuses or reads as a line break or a byte-order
/// mark; the reader refuses them wherever they appear (quoted strings,
/// comments), so that both readers agree on every file this one accepts.
fn breaks_yaml(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{feff}' | '\u{2028}' | '\u{2029}' | '\u{fffe}' | '\u{ffff}'
        )
}

/// A JSON-style double-quoted string that is the whole of `text`, with
/// only the escapes the writer uses; `None` for anything else.
pub(super) fn quoted_scalar(text: &str) -> Option<Cow<'_, str>> {
    let (value, rest) = quoted(text)?;
    rest.is_empty().then_some(value)
}

/// Reads a JSON-style double-quoted string at the start of `text`; returns it
/// (borrowed when it has no escapes) and the rest. Only the escapes the
/// writer uses are understood.
fn quoted(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut out = String::new();
    let mut escaped = false;
    let mut chars = text[1..].char_indices();
    while let Some((offset, ch)) = chars.next() {
        match ch {
            '"' => {
                let value = if escaped {
                    Cow::Owned(out)
                } else {
                    Cow::Borrowed(&text[1..offset + 1])
                };
                return Some((value, &text[offset + 2..]));
            }
            '\\' => {
                if !escaped {
                    out.push_str(&text[1..offset + 1]);
                    escaped = true;
                }
                match chars.next()?.1 {
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
                }
            }
            c if breaks_yaml(c) => return None,
            c if escaped => out.push(c),
            _ => {}
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
    fn plain_key_bytes_are_exactly_the_documented_set() {
        for b in 0..=255u8 {
            let documented = b.is_ascii_alphanumeric() || b == b'_';
            assert_eq!(is_plain_key_byte(b), documented, "byte {b:#04x}");
        }
        assert!(is_plain_key("_A9") && is_plain_key("yes_") && is_plain_key("Ab"));
        assert!(!is_plain_key("9A") && !is_plain_key("") && !is_plain_key("Yes"));
        assert!(!is_plain_key("a-b") && !is_plain_key("é"));
    }

    #[test]
    fn sealed_bytes_are_exactly_the_documented_set() {
        for b in 0..=255u8 {
            let documented = b.is_ascii_alphanumeric() || b":+/=-".contains(&b);
            assert_eq!(is_sealed_byte(b), documented, "byte {b:#04x}");
            // Whatever block of 32 or tail the byte falls in.
            for at in [0, 5, 31, 32, 40, 70] {
                let mut text = vec![b'A'; 72];
                text[at] = b;
                assert_eq!(all_sealed_bytes(&text), documented, "byte {b:#04x} at {at}");
            }
        }
        assert!(is_sealed_text("rv1:1:2:ab+/=-"));
        assert!(!is_sealed_text("rv1:1:2:ab:"));
        assert!(!is_sealed_text("rv2:1:2:ab"));
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

    /// Found by the `vault_reader_differential` fuzz target: a control
    /// character in a top comment, which serde_yaml (libyaml) refuses, and
    /// a line break libyaml sees where this reader saw comment text. Also
    /// the noncharacters libyaml refuses inside a quoted string.
    #[test]
    fn refuses_what_libyaml_refuses_or_reads_as_a_line_break() {
        for bad in [
            "# a\u{8}b\na: \"1\"\n",
            "# a\rb: \"2\"\na: \"1\"\n",
            "# a\u{2028}b: \"2\"\na: \"1\"\n",
            "# a\u{85}b\na: \"1\"\n",
            "a: \"x\u{fffe}\"\n",
            "a: \"x\u{ffff}\"\n",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "must refuse {bad:?}");
        }
        assert!(serde_yaml::from_str::<serde_yaml::Value>("# a\u{8}b\na: 1\n").is_err());
        assert!(parse("# a\u{e9} b\na: \"1\"\n".as_bytes()).is_ok());
    }
}
