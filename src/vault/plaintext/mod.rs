//! Plaintext YAML (an `import` file) read straight into a tree of values.
//!
//! A file in block style (what `export` writes, and what admins write by
//! hand) is read by the linear reader of [`block`], which takes only
//! what it is sure to read as serde_yaml does; every other file, or one it
//! is not sure of, by serde_yaml as follows.
//!
//! serde_yaml parses the file, and a serde visitor builds the tree of
//! values as the parse goes, instead of a `serde_yaml::Value` document that
//! is then converted ([`value::parse_plain_yaml`] and
//! [`value::tree_from_yaml`], which adopting a hand-made vault uses): an
//! import of 200 000 values does not hold a second copy of them in
//! serde_yaml's document. The result is the same: every scalar is first
//! made into the `Value` serde_yaml's own visitor would make, and converted
//! by the same function; keys, nesting and tags are checked by the same
//! code, in the same order; a file holding sealed `rv1:` values is refused
//! before any other problem is reported. The one difference is where a file
//! has two problems: a key that is not a string (or not a valid key) is
//! reported where the conversion would find it, also when a repeated key
//! comes later, which serde_yaml's document would have reported first.
//! The unit tests below and the `vault_reader_general` fuzz target check
//! that both ways agree.
//!
//! [`value::parse_plain_yaml`]: crate::vault::value::parse_plain_yaml
//! [`value::tree_from_yaml`]: crate::vault::value::tree_from_yaml

use std::fmt;
use std::path::Path;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde_yaml::Value;
use serde_yaml::value::{Tag, TaggedValue};

use crate::vault::error::VaultError;
use crate::vault::format::contains_sealed_value;
use crate::vault::path::{KeyPath, Segment};
use crate::vault::tree::Tree;
use crate::vault::value::{
    self, Plain, PlainError, check_depth, leaf_from_yaml, string_key, yaml_kind,
};

pub(super) mod block;

/// Reads plaintext YAML into values, with the errors of an import: not
/// YAML, sealed values in it, or values runvault cannot store. A file in
/// block style is read by the linear reader (`block`); anything it
/// is not sure of, by serde_yaml ([`read_general`]). A value over
/// `value::MAX_VALUE_BYTES` (4 MiB) is refused.
pub fn read_plain_yaml(bytes: &[u8], file: &Path) -> Result<Tree<Plain>, VaultError> {
    let tree = if value::refuse_standard_binary_tag(bytes).is_ok()
        && let Some(tree) = block::read(bytes)
    {
        tracing::debug!(file = %file.display(), "read the plaintext with the block reader");
        tree
    } else {
        tracing::debug!(file = %file.display(), "read the plaintext with serde_yaml");
        read_general(bytes, file)?
    };
    value::check_value_sizes(&tree).map_err(|source| VaultError::Plain {
        file: file.to_path_buf(),
        source,
    })?;
    Ok(tree)
}

/// [`read_plain_yaml`] with serde_yaml only (the reference the block
/// reader is tested against).
pub fn read_general(bytes: &[u8], file: &Path) -> Result<Tree<Plain>, VaultError> {
    let bad_yaml = |message| VaultError::BadYaml {
        file: file.to_path_buf(),
        message,
    };
    value::refuse_standard_binary_tag(bytes).map_err(bad_yaml)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Tree::empty_map());
    }
    value::prescan_yaml(bytes).map_err(|err| bad_yaml(err.to_string()))?;
    let mut reading = Reading {
        at: KeyPath::root(),
        sealed: false,
        problem: None,
    };
    let tree = Root(&mut reading)
        .deserialize(serde_yaml::Deserializer::from_slice(bytes))
        .map_err(|err| bad_yaml(crate::vault::yaml_error::describe(&err)))?;
    if reading.sealed {
        return Err(sealed_values(file));
    }
    match reading.problem {
        Some(source) => Err(VaultError::Plain {
            file: file.to_path_buf(),
            source,
        }),
        None => Ok(tree),
    }
}

/// The error for a plaintext file that holds sealed values: ciphertext
/// that lost its vault, which must never be stored as a value.
pub(super) fn sealed_values(file: &Path) -> VaultError {
    VaultError::Usage(format!(
        "`{}` holds encrypted runvault values; import plaintext YAML \
         (`runvault export` of the other vault), not a vault file",
        file.display()
    ))
}

/// What the walk knows besides the tree it builds.
struct Reading {
    /// The path of the node being read.
    at: KeyPath,
    /// Whether a string looking like a sealed value was seen.
    sealed: bool,
    /// The first thing found that cannot be stored (the walk goes on, so
    /// that a sealed value anywhere is still reported first).
    problem: Option<PlainError>,
}

impl Reading {
    fn refuse(&mut self, problem: PlainError) {
        self.problem.get_or_insert(problem);
    }

    /// The tree for a scalar or tagged node: converted as the document's
    /// would be.
    fn leaf(&mut self, value: Value) -> Tree<Plain> {
        self.sealed |= contains_sealed_value(&value);
        if self.problem.is_some() {
            return Tree::empty_map();
        }
        leaf_from_yaml(value, &self.at).unwrap_or_else(|problem| {
            self.refuse(problem);
            Tree::empty_map()
        })
    }
}

/// The top of the document: a mapping, or nothing (`{}`).
struct Root<'r>(&'r mut Reading);

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = Tree<Plain>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree<Plain>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Root<'_> {
    /// Any other top: what the conversion says of it, once read whole.
    fn not_a_mapping(self, value: &Value) -> Tree<Plain> {
        self.0.sealed |= contains_sealed_value(value);
        self.0.refuse(PlainError::NotAMapping {
            found: yaml_kind(value),
        });
        Tree::empty_map()
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = Tree<Plain>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Tree<Plain>, A::Error> {
        Node(self.0).visit_map(map)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Tree<Plain>, E> {
        Ok(Tree::empty_map())
    }

    fn visit_none<E: de::Error>(self) -> Result<Tree<Plain>, E> {
        Ok(Tree::empty_map())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree<Plain>, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree<Plain>, E> {
        Ok(self.not_a_mapping(&Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree<Plain>, E> {
        Ok(self.not_a_mapping(&Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree<Plain>, E> {
        Ok(self.not_a_mapping(&Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree<Plain>, E> {
        Ok(self.not_a_mapping(&Value::Number(v.into())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree<Plain>, E> {
        Ok(self.not_a_mapping(&Value::String(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Tree<Plain>, A::Error> {
        let items: serde_yaml::Sequence =
            serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(self.not_a_mapping(&Value::Sequence(items)))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Tree<Plain>, A::Error> {
        let tagged = tagged_value(data)?;
        Ok(self.not_a_mapping(&tagged))
    }
}

/// A tagged node as serde_yaml's own visitor makes it.
fn tagged_value<'de, A: EnumAccess<'de>>(data: A) -> Result<Value, A::Error> {
    let (tag, contents): (String, _) = data.variant()?;
    if tag.is_empty() {
        return Err(de::Error::custom("empty YAML tag is not allowed"));
    }
    let value: Value = contents.newtype_variant()?;
    Ok(Value::Tagged(Box::new(TaggedValue {
        tag: Tag::new(tag),
        value,
    })))
}

/// Any node below the top.
struct Node<'r>(&'r mut Reading);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Tree<Plain>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree<Plain>, D::Error> {
        if let Err(problem) = check_depth(&self.0.at) {
            self.0.refuse(problem);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Tree<Plain>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree<Plain>, E> {
        Ok(self.0.leaf(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree<Plain>, E> {
        Ok(self.0.leaf(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree<Plain>, E> {
        Ok(self.0.leaf(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree<Plain>, E> {
        Ok(self.0.leaf(Value::Number(v.into())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree<Plain>, E> {
        Ok(self.0.leaf(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Tree<Plain>, E> {
        Ok(self.0.leaf(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Tree<Plain>, E> {
        Ok(self.0.leaf(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Tree<Plain>, E> {
        Ok(self.0.leaf(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree<Plain>, D::Error> {
        Node(self.0).deserialize(deserializer)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Tree<Plain>, A::Error> {
        let tagged = tagged_value(data)?;
        Ok(self.0.leaf(tagged))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree<Plain>, A::Error> {
        let reading = self.0;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            reading.at.push(Segment::Index(items.len()));
            let item = seq.next_element_seed(Node(reading))?;
            reading.at.pop();
            match item {
                Some(item) => items.push(item),
                None => return Ok(Tree::List(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree<Plain>, A::Error> {
        let reading = self.0;
        let mut entries = indexmap::IndexMap::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<Value>()? {
            let key = match string_key(key, &reading.at) {
                Ok(key) => key,
                Err(problem) => {
                    reading.refuse(problem);
                    let value: Value = map.next_value()?;
                    reading.sealed |= contains_sealed_value(&value);
                    continue;
                }
            };
            if entries.contains_key(&key) {
                // The message serde_yaml's document gives (with the place).
                return Err(de::Error::custom(format_args!(
                    "duplicate entry with key {key:?}"
                )));
            }
            reading.at.push(Segment::Key(key));
            let node = map.next_value_seed(Node(reading))?;
            let Some(Segment::Key(key)) = reading.at.pop() else {
                unreachable!("the key pushed above")
            };
            entries.insert(key, node);
        }
        Ok(Tree::Map(entries))
    }
}

/// Converts plaintext YAML to values, refusing what looks like encrypted
/// runvault values (storing ciphertext as a value would hide the mistake).
pub(super) fn plain_tree(doc: serde_yaml::Value, file: &Path) -> Result<Tree<Plain>, VaultError> {
    if contains_sealed_value(&doc) {
        return Err(sealed_values(file));
    }
    let plain = |source| VaultError::Plain {
        file: file.to_path_buf(),
        source,
    };
    let tree = value::tree_from_yaml(doc).map_err(plain)?;
    value::check_value_sizes(&tree).map_err(plain)?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of reading plaintext: the document then the conversion
    /// (adoption), and this module (import).
    fn both(text: &str) -> (Result<Tree<Plain>, String>, Result<Tree<Plain>, String>) {
        let file = Path::new("in.yml");
        let through_document = value::parse_plain_yaml(text.as_bytes())
            .map_err(|message| VaultError::BadYaml {
                file: file.to_path_buf(),
                message,
            })
            .and_then(|doc| plain_tree(doc, file))
            .map_err(|err| err.to_string());
        let direct = read_plain_yaml(text.as_bytes(), file).map_err(|err| err.to_string());
        (through_document, direct)
    }

    fn same(a: &Result<Tree<Plain>, String>, b: &Result<Tree<Plain>, String>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
    }

    #[test]
    fn both_readers_agree_on_values_and_errors() {
        for text in [
            "",
            "  \n",
            "~\n",
            "A: 1\nB: \"1\"\nC: 1.5\nD: true\nE: ~\nF: !binary aGk=\nG: -3\nH: 0x1F\nI: .inf\n",
            "A:\n  B:\n    - x\n    - [1, 2]\n    - {C: d}\n  E: []\n  F: {}\n",
            "A: &a {B: 1}\nC: *a\n",
            "A: |\n  two\n  lines\n",
            "A: 99999999999999999999\n",
            "A: 123456789012345678901234567890123456789\n",
            "- a\n- b\n",
            "just text\n",
            "42\n",
            "!foo x\n",
            "A: !foo x\n",
            "A: !binary '***'\n",
            "A: !binary [1]\n",
            "1: x\n",
            "A:\n  1: x\n",
            "\"A.B\": x\n",
            "A: x\nA: y\n",
            "A: {B: 1, B: 2}\n",
            "A: rv1:1:2:abc\n",
            "A: [rv1:1:2:abc]\n",
            "1: x\nB: rv1:1:2:abc\n",
            "rv1:1:2:abc\n",
            "A: [unclosed\n",
            "A: 1\n---\nB: 2\n",
            "A: !!binary aGk=\n",
            "A: !!str 12\nB: !!int '7'\n",
            "? [a, b]\n: c\n",
            "<<: {A: 1}\n",
        ] {
            let (document, direct) = both(text);
            assert!(
                same(&document, &direct),
                "{text:?}: {:?} vs {:?}",
                document.as_ref().err(),
                direct.as_ref().err()
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_the_same_way() {
        let deep: String = (0..40)
            .map(|i| format!("{}K{i}:\n", "  ".repeat(i)))
            .collect();
        let deep = deep + &"  ".repeat(40) + "V: x\n";
        let (document, direct) = both(&deep);
        assert!(document.is_err());
        assert!(
            same(&document, &direct),
            "{:?} vs {:?}",
            document.as_ref().err(),
            direct.as_ref().err()
        );
    }
}
