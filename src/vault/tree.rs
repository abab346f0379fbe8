//! The ordered tree shape shared by every view of a vault: the raw scalars
//! a reader found, the sealed (encrypted) values, and plaintext for import
//! and export. Mappings keep their order; lists are addressed by index.

use indexmap::IndexMap;

use crate::vault::path::{KeyPath, Segment};

/// A YAML-like tree whose leaves are `L`.
#[derive(Debug, Clone, PartialEq)]
pub enum Tree<L> {
    /// A mapping, in file order.
    Map(IndexMap<String, Tree<L>>),
    /// A list.
    List(Vec<Tree<L>>),
    /// A value.
    Leaf(L),
}

/// Why a node cannot be placed at a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// A value sits where the path needs a mapping or list.
    #[error("`{at}` holds a value, so `{path}` cannot be created under it")]
    LeafInTheWay {
        /// Where the value is.
        at: String,
        /// The path asked for.
        path: String,
    },
    /// The path expects a mapping where a list is, or the reverse.
    #[error("`{at}` is a {found}, but `{path}` addresses it as a {expected}")]
    KindMismatch {
        /// The container.
        at: String,
        /// The path asked for.
        path: String,
        /// What the path expects.
        expected: &'static str,
        /// What is there.
        found: &'static str,
    },
    /// A list index past the end (only appending at the end is allowed).
    #[error("list `{at}` has {len} items; `{path}` may only add item [{len}]")]
    IndexOutOfRange {
        /// The list.
        at: String,
        /// The path asked for.
        path: String,
        /// The list's length.
        len: usize,
    },
    /// The path names a container where a value is to be set, or the root.
    #[error("`{path}` is a mapping or list; set a value under it instead")]
    NotALeafPath {
        /// The path asked for.
        path: String,
    },
}

impl<L> Tree<L> {
    /// An empty mapping.
    pub fn empty_map() -> Tree<L> {
        Tree::Map(IndexMap::new())
    }

    /// What kind of node this is, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Tree::Map(_) => "mapping",
            Tree::List(_) => "list",
            Tree::Leaf(_) => "value",
        }
    }

    /// The node at `path`, if any.
    pub fn get(&self, path: &KeyPath) -> Option<&Tree<L>> {
        path.segments()
            .iter()
            .try_fold(self, |node, segment| match (node, segment) {
                (Tree::Map(map), Segment::Key(key)) => map.get(key),
                (Tree::List(list), Segment::Index(index)) => list.get(*index),
                _ => None,
            })
    }

    /// Calls `visit` for every leaf in order, with its path.
    pub fn for_each_leaf<'a>(&'a self, visit: &mut dyn FnMut(&KeyPath, &'a L)) {
        fn walk<'a, L>(
            node: &'a Tree<L>,
            path: &mut KeyPath,
            visit: &mut dyn FnMut(&KeyPath, &'a L),
        ) {
            match node {
                Tree::Leaf(leaf) => visit(path, leaf),
                Tree::Map(map) => {
                    let mut spare = String::new();
                    for (key, child) in map {
                        path.push(Segment::Key(reuse(&mut spare, key)));
                        walk(child, path, visit);
                        spare = pop_key(path);
                    }
                }
                Tree::List(list) => {
                    for (index, child) in list.iter().enumerate() {
                        path.push(Segment::Index(index));
                        walk(child, path, visit);
                        path.pop();
                    }
                }
            }
        }
        walk(self, &mut KeyPath::root(), visit);
    }

    /// The paths of every leaf, in order.
    pub fn leaf_paths(&self) -> Vec<KeyPath> {
        let mut paths = Vec::new();
        self.for_each_leaf(&mut |path, _| paths.push(path.clone()));
        paths
    }

    /// Number of leaves.
    pub fn leaf_count(&self) -> usize {
        match self {
            Tree::Leaf(_) => 1,
            Tree::Map(map) => map.values().map(Tree::leaf_count).sum(),
            Tree::List(list) => list.iter().map(Tree::leaf_count).sum(),
        }
    }

    /// Builds a tree of the same shape with every leaf converted by `convert`,
    /// stopping at the first error.
    pub fn try_map<M, E>(
        &self,
        convert: &mut dyn FnMut(&KeyPath, &L) -> Result<M, E>,
    ) -> Result<Tree<M>, E> {
        fn walk<L, M, E>(
            node: &Tree<L>,
            path: &mut KeyPath,
            convert: &mut dyn FnMut(&KeyPath, &L) -> Result<M, E>,
        ) -> Result<Tree<M>, E> {
            Ok(match node {
                Tree::Leaf(leaf) => Tree::Leaf(convert(path, leaf)?),
                Tree::Map(map) => {
                    let mut out = IndexMap::with_capacity(map.len());
                    let mut spare = String::new();
                    for (key, child) in map {
                        path.push(Segment::Key(reuse(&mut spare, key)));
                        out.insert(key.clone(), walk(child, path, convert)?);
                        spare = pop_key(path);
                    }
                    Tree::Map(out)
                }
                Tree::List(list) => {
                    let mut out = Vec::with_capacity(list.len());
                    for (index, child) in list.iter().enumerate() {
                        path.push(Segment::Index(index));
                        out.push(walk(child, path, convert)?);
                        path.pop();
                    }
                    Tree::List(out)
                }
            })
        }
        walk(self, &mut KeyPath::root(), convert)
    }

    /// Places `node` at `path`, creating missing mappings on the way (a list
    /// may grow by one item at its end). Returns the node it replaced.
    pub fn place(&mut self, path: &KeyPath, node: Tree<L>) -> Result<Option<Tree<L>>, PlaceError> {
        let Some((last, parents)) = path.segments().split_last() else {
            return Err(PlaceError::NotALeafPath {
                path: path.to_string(),
            });
        };
        let mut current = self;
        let mut walked = KeyPath::root();
        for (depth, segment) in parents.iter().enumerate() {
            let next_is_index = matches!(path.segments()[depth + 1], Segment::Index(_));
            current = step_or_create(current, segment, next_is_index, &walked, path)?;
            walked.push(segment.clone());
        }
        insert_child(current, last, node, &walked, path)
    }

    /// Removes and returns the node at `path`.
    pub fn remove(&mut self, path: &KeyPath) -> Option<Tree<L>> {
        let (last, parents) = path.segments().split_last()?;
        let mut current = self;
        for segment in parents {
            current = match (current, segment) {
                (Tree::Map(map), Segment::Key(key)) => map.get_mut(key)?,
                (Tree::List(list), Segment::Index(index)) => list.get_mut(*index)?,
                _ => return None,
            };
        }
        match (current, last) {
            (Tree::Map(map), Segment::Key(key)) => map.shift_remove(key),
            (Tree::List(list), Segment::Index(index)) if *index < list.len() => {
                Some(list.remove(*index))
            }
            _ => None,
        }
    }
}

fn step_or_create<'t, L>(
    node: &'t mut Tree<L>,
    segment: &Segment,
    next_is_index: bool,
    walked: &KeyPath,
    path: &KeyPath,
) -> Result<&'t mut Tree<L>, PlaceError> {
    let fresh = || {
        if next_is_index {
            Tree::List(Vec::new())
        } else {
            Tree::empty_map()
        }
    };
    let (at, path_text) = (walked.to_string(), path.to_string());
    match (node, segment) {
        (Tree::Map(map), Segment::Key(key)) => Ok(map.entry(key.clone()).or_insert_with(fresh)),
        (Tree::List(list), Segment::Index(index)) => {
            let len = list.len();
            if *index == len {
                list.push(fresh());
            }
            list.get_mut(*index).ok_or(PlaceError::IndexOutOfRange {
                at,
                path: path_text,
                len,
            })
        }
        (Tree::Leaf(_), _) => Err(PlaceError::LeafInTheWay {
            at,
            path: path_text,
        }),
        (other, segment) => Err(mismatch(other, segment, at, path_text)),
    }
}

fn insert_child<L>(
    parent: &mut Tree<L>,
    segment: &Segment,
    node: Tree<L>,
    walked: &KeyPath,
    path: &KeyPath,
) -> Result<Option<Tree<L>>, PlaceError> {
    let (at, path_text) = (walked.to_string(), path.to_string());
    match (parent, segment) {
        (Tree::Map(map), Segment::Key(key)) => Ok(map.insert(key.clone(), node)),
        (Tree::List(list), Segment::Index(index)) => {
            let len = list.len();
            match (*index).cmp(&len) {
                std::cmp::Ordering::Less => Ok(Some(std::mem::replace(&mut list[*index], node))),
                std::cmp::Ordering::Equal => {
                    list.push(node);
                    Ok(None)
                }
                std::cmp::Ordering::Greater => Err(PlaceError::IndexOutOfRange {
                    at,
                    path: path_text,
                    len,
                }),
            }
        }
        (Tree::Leaf(_), _) => Err(PlaceError::LeafInTheWay {
            at,
            path: path_text,
        }),
        (other, segment) => Err(mismatch(other, segment, at, path_text)),
    }
}

fn mismatch<L>(node: &Tree<L>, segment: &Segment, at: String, path: String) -> PlaceError {
    let expected = if matches!(segment, Segment::Key(_)) {
        "mapping"
    } else {
        "list"
    };
    PlaceError::KindMismatch {
        at,
        path,
        expected,
        found: node.kind_name(),
    }
}

/// `key` in the buffer of `spare` (the key a walk popped last), so that a
/// walk over a large tree does not allocate and free a string per key.
fn reuse(spare: &mut String, key: &str) -> String {
    let mut buffer = std::mem::take(spare);
    buffer.clear();
    buffer.push_str(key);
    buffer
}

/// Pops the key segment a walk pushed, keeping its buffer for [`reuse`].
fn pop_key(path: &mut KeyPath) -> String {
    match path.pop() {
        Some(Segment::Key(key)) => key,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> KeyPath {
        KeyPath::parse(text).unwrap()
    }

    #[test]
    fn place_creates_mappings_and_lists_and_reports_conflicts() {
        let mut tree: Tree<u32> = Tree::empty_map();
        assert_eq!(tree.place(&path("A.B.C"), Tree::Leaf(1)).unwrap(), None);
        assert_eq!(tree.place(&path("A.L[0]"), Tree::Leaf(2)).unwrap(), None);
        assert_eq!(tree.place(&path("A.L[1].X"), Tree::Leaf(3)).unwrap(), None);
        assert_eq!(
            tree.place(&path("A.B.C"), Tree::Leaf(4)).unwrap(),
            Some(Tree::Leaf(1))
        );
        assert_eq!(tree.get(&path("A.L[1].X")), Some(&Tree::Leaf(3)));
        let err = tree.place(&path("A.B.C.D"), Tree::Leaf(5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`A.B.C` holds a value, so `A.B.C.D` cannot be created under it"
        );
        let err = tree.place(&path("A.L[5]"), Tree::Leaf(5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "list `A.L` has 2 items; `A.L[5]` may only add item [2]"
        );
        let err = tree.place(&path("A.L.X"), Tree::Leaf(5)).unwrap_err();
        assert!(matches!(err, PlaceError::KindMismatch { .. }), "{err}");
        assert_eq!(
            tree.leaf_paths()
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>(),
            ["A.B.C", "A.L[0]", "A.L[1].X"]
        );
        assert_eq!(
            tree.remove(&path("A.B")),
            Some(Tree::Map(
                [("C".to_string(), Tree::Leaf(4))].into_iter().collect()
            ))
        );
        assert_eq!(tree.leaf_count(), 2);
    }
}
