//! The streaming reader for read-only commands (`get`, `exec`, `render`):
//! it walks the canonical file once, line by line, feeding the file MAC as
//! it goes and keeping only the sealed texts of the wanted paths, so it
//! never builds the tree nor copies the values it does not need.
//!
//! Order of work: the header (a few lines at the top) is read first, the
//! key slot is opened (the one KDF run), then the secrets section streams
//! through the MAC, the history section is read and MACed as the tree
//! reader does, and only after the MAC matches are the wanted values
//! decrypted.
//!
//! It shares the grammar with the tree reader ([`canonical::block`] with
//! another [`Visitor`]) and the MAC item encoding ([`TreeMac`]), so on a
//! canonical file both produce the same MAC input. Whatever it does not
//! understand (a file that is not canonical, a section out of order, a MAC
//! that does not match) it hands back as [`Outcome::Fallback`], with the
//! opened slot, so the tree reader gives the verdict without a second KDF
//! run. It does not check for repeated keys: the writer never produces
//! them, so a file that has one cannot carry a valid MAC, and a MAC
//! failure goes to the tree reader anyway. `tests/properties/stream_reader.rs` and the
//! property test below check that both readers agree.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::vault::canonical::{Lines, StreamVisitor};
use crate::vault::crypto::{MacWriter, Subkeys};
use crate::vault::dir::ReadOnlyDir;
use crate::vault::error::VaultError;
use crate::vault::format::{self, EncodedPath, Header, History, Sealed, TreeMac};
use crate::vault::keys::seal::open_sealed;
use crate::vault::keys::slots::{Credential, Opened};
use crate::vault::path::{KeyPath, Segment};
use crate::vault::stream::{file_mac, open_then, walk_secrets};
use crate::vault::value::Plain;

/// What the caller wants: single values and whole subtrees.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Paths of single values.
    pub values: Vec<KeyPath>,
    /// Prefixes whose every value is wanted (a prefix may be a value itself).
    pub subtrees: Vec<KeyPath>,
}

/// What a wanted path turned out to be. No `Debug`: it holds plaintext.
pub enum Lookup {
    /// A value, decrypted.
    Value(Plain),
    /// Nothing at this path.
    Missing,
    /// A mapping or list, not a value (its kind name).
    Container(&'static str),
}

/// The decrypted selection. No `Debug`: it holds plaintext.
#[derive(Default)]
pub struct Selected {
    /// One entry per distinct wanted value path.
    pub values: HashMap<KeyPath, Lookup>,
    /// One entry per distinct wanted prefix: its values with their full
    /// paths in file order, or `None` if nothing is at the prefix.
    pub subtrees: HashMap<KeyPath, Option<Vec<(KeyPath, Plain)>>>,
}

impl Selected {
    /// The lookup for a wanted value path (`Missing` if it was not wanted).
    pub fn value(&self, path: &KeyPath) -> &Lookup {
        self.values.get(path).unwrap_or(&Lookup::Missing)
    }
}

/// What the streaming reader made of the vault.
pub enum Outcome {
    /// The MAC matched; the wanted values, decrypted.
    Read(Selected),
    /// Not understood, or the MAC did not match: the tree reader decides.
    /// Carries the header and the slot opened for it, if it got that far.
    Fallback(Option<(Header, Opened)>),
}

/// Reads the vault in `dir` with one streaming pass; see the module doc.
pub fn read(
    dir: &ReadOnlyDir,
    credential: &Credential,
    wanted: &Wanted,
) -> Result<Outcome, VaultError> {
    let vault_path = dir.vault_path();
    let wants = Wants::new(wanted);
    let read = open_then(dir, credential, |lines, header, opened| {
        let subkeys = Subkeys::derive(&opened.data_key);
        match stream_body(lines, header, &subkeys, &wants) {
            Some((found, _, _)) => select(&found, &wants, header, &subkeys, &vault_path).map(Some),
            None => Ok(None),
        }
    })?;
    Ok(match read {
        Ok(selected) => Outcome::Read(selected),
        Err(opened) => Outcome::Fallback(opened),
    })
}

/// Decrypts what the pass found for each want (after the MAC matched).
fn select(
    found: &Found<'_>,
    wants: &Wants<'_>,
    header: &Header,
    subkeys: &Subkeys,
    vault_path: &std::path::Path,
) -> Result<Selected, VaultError> {
    let open = |path: &KeyPath, text: &str| {
        open_sealed(
            &subkeys.enc,
            &header.vault_id,
            path,
            &Sealed(text.to_string()),
            vault_path,
        )
    };
    let mut selected = Selected::default();
    for (index, want) in wants.list.iter().enumerate() {
        let path = want.path.clone();
        if want.subtree {
            let leaves = match found.kinds[index] {
                None => None,
                Some(_) => Some(
                    found.leaves[index]
                        .iter()
                        .map(|(path, text)| Ok((path.clone(), open(path, text)?)))
                        .collect::<Result<Vec<_>, VaultError>>()?,
                ),
            };
            selected.subtrees.entry(path).or_insert(leaves);
        } else if let Entry::Vacant(slot) = selected.values.entry(path) {
            let lookup = match (found.kinds[index], &found.values[index]) {
                (Some("value"), Some(text)) => Lookup::Value(open(slot.key(), text)?),
                (Some(kind), _) => Lookup::Container(kind),
                (None, _) => Lookup::Missing,
            };
            slot.insert(lookup);
        }
    }
    Ok(selected)
}

/// What the pass found for each want.
struct Found<'t> {
    /// The kind of node at each want's path, if any.
    kinds: Vec<Option<&'static str>>,
    /// Each value want's sealed text.
    values: Vec<Option<Cow<'t, str>>>,
    /// Each subtree want's leaves with their full paths, in file order.
    leaves: Vec<Vec<(KeyPath, Cow<'t, str>)>>,
}

/// Streams `secrets:` and `history:` through the MAC; `None` if the rest
/// of the file is not the canonical layout or the MAC does not match. With
/// what the wants found, the number of values and the history read.
fn stream_body<'t>(
    mut lines: Lines<'t>,
    header: &Header,
    subkeys: &Subkeys,
    wants: &Wants<'_>,
) -> Option<(Found<'t>, u64, History)> {
    let mut mac = file_mac(&subkeys.mac, lines.len());
    format::mac_header(&mut mac, header);
    let mut visitor = SecretsVisitor::new(wants, mac);
    if !walk_secrets(&mut lines, &mut visitor, |_| None).ok()? {
        return None;
    }
    if visitor.root_kind != Some("mapping") {
        return None;
    }
    let SecretsVisitor {
        mut mac,
        items,
        found,
        values,
        ..
    } = visitor;
    items.finish(&mut mac);
    let history = format::read_history(&mut lines)?;
    format::mac_history(&mut mac, &history);
    mac.verify(&header.mac).then_some((found, values, history))
}

/// How many sealed values a canonical file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Current values (leaves of `secrets:`).
    pub values: u64,
    /// Stored old versions (removal markers not counted).
    pub stored: u64,
}

/// Streams `secrets:` and `history:` through the MAC of a canonical file
/// whose header was read: `None` unless the rest of the file is canonical
/// and the MAC matches (nothing is decrypted).
pub(crate) fn verify_body(lines: Lines<'_>, header: &Header, subkeys: &Subkeys) -> Option<Counts> {
    let nothing = Wanted::default();
    let (_, values, history) = stream_body(lines, header, subkeys, &Wants::new(&nothing))?;
    let stored = (history.values().flatten())
        .filter(|version| !version.is_tombstone())
        .count() as u64;
    Some(Counts { values, stored })
}

/// One wanted path.
struct Want {
    path: KeyPath,
    /// Every value at or under the path, rather than one value.
    subtree: bool,
}

/// The wanted paths, with an index by first segment for a quick match at
/// the top level, where a vault has most of its keys.
struct Wants<'w> {
    list: Vec<Want>,
    by_first_key: HashMap<&'w str, Vec<usize>>,
    /// Subtree wants at the root (they match everything).
    at_root: Vec<usize>,
}

impl<'w> Wants<'w> {
    fn new(wanted: &'w Wanted) -> Wants<'w> {
        let list: Vec<Want> = wanted
            .values
            .iter()
            .map(|path| (path, false))
            .chain(wanted.subtrees.iter().map(|path| (path, true)))
            .map(|(path, subtree)| Want {
                path: path.clone(),
                subtree,
            })
            .collect();
        let mut by_first_key: HashMap<&'w str, Vec<usize>> = HashMap::new();
        let mut at_root = Vec::new();
        let all = wanted.values.iter().chain(&wanted.subtrees);
        for (index, path) in all.enumerate() {
            match path.segments().first() {
                Some(Segment::Key(key)) => by_first_key.entry(key).or_default().push(index),
                Some(Segment::Index(_)) => {} // the root is a mapping: never found
                None => at_root.push(index),
            }
        }
        Wants {
            list,
            by_first_key,
            at_root,
        }
    }
}

/// One step of the current path, borrowed from the file where possible.
enum Step<'t> {
    Key(Cow<'t, str>),
    Index(usize),
}

/// Feeds the secrets section to the MAC and picks out the wanted values.
struct SecretsVisitor<'t, 'w> {
    mac: MacWriter,
    items: TreeMac,
    wants: &'w Wants<'w>,
    /// The current path, encoded for the MAC items.
    path: EncodedPath,
    steps: Vec<Step<'t>>,
    /// For each depth, the wants whose path agrees with the current path so
    /// far (subtree wants stay once inside their subtree).
    candidates: Vec<Vec<usize>>,
    root_kind: Option<&'static str>,
    found: Found<'t>,
    /// Values seen.
    values: u64,
}

impl<'t, 'w> SecretsVisitor<'t, 'w> {
    fn new(wants: &'w Wants<'w>, mac: MacWriter) -> SecretsVisitor<'t, 'w> {
        let count = wants.list.len();
        SecretsVisitor {
            mac,
            items: TreeMac::default(),
            wants,
            path: EncodedPath::new(),
            steps: Vec::new(),
            candidates: vec![(0..count).collect()],
            root_kind: None,
            values: 0,
            found: Found {
                kinds: vec![None; count],
                values: vec![None; count],
                leaves: (0..count).map(|_| Vec::new()).collect(),
            },
        }
    }

    fn depth(&self) -> usize {
        self.path.depth()
    }

    /// Goes one step down to `segment` and narrows the candidates.
    fn descend(&mut self, segment: Step<'_>) {
        let depth = self.depth();
        if self.candidates.len() <= depth + 1 {
            self.candidates.push(Vec::new());
        }
        let (parents, children) = self.candidates.split_at_mut(depth + 1);
        let (parent, next) = (&parents[depth], &mut children[0]);
        next.clear();
        let list = &self.wants.list;
        let matches = |index: usize| {
            let path = list[index].path.segments();
            match (path.get(depth), &segment) {
                (None, _) => list[index].subtree,
                (Some(Segment::Key(want)), Step::Key(key)) => want == key,
                (Some(Segment::Index(want)), Step::Index(index)) => want == index,
                _ => false,
            }
        };
        match (depth, &segment) {
            // The top level, where most keys are: with many wants, look the
            // key up instead of comparing it with every want.
            (0, Step::Key(key)) if self.wants.list.len() > 8 => {
                next.extend(&self.wants.at_root);
                if let Some(indices) = self.wants.by_first_key.get(key.as_ref()) {
                    next.extend(indices);
                }
            }
            _ if parent.is_empty() => {}
            _ => next.extend(parent.iter().copied().filter(|&index| matches(index))),
        }
        match segment {
            Step::Key(key) => self.path.push_key(&key),
            Step::Index(index) => self.path.push_index(index),
        }
    }

    /// A node of `kind` starts at the current path.
    fn node_here(&mut self, kind: &'static str) {
        let depth = self.depth();
        if depth == 0 {
            self.root_kind = Some(kind);
        }
        for &index in &self.candidates[depth] {
            if self.wants.list[index].path.segments().len() == depth {
                self.found.kinds[index] = Some(kind);
            }
        }
    }

    /// An empty mapping or list at the current path: one MAC item.
    fn empty_here(&mut self, kind: &'static str, marker: u8) {
        self.node_here(kind);
        self.items.item_at(&mut self.mac, marker, &self.path, None);
    }

    fn current_path(&self) -> KeyPath {
        let mut path = KeyPath::root();
        for step in &self.steps {
            path.push(match step {
                Step::Key(key) => Segment::Key(key.to_string()),
                Step::Index(index) => Segment::Index(*index),
            });
        }
        path
    }
}

impl<'t> StreamVisitor<'t> for SecretsVisitor<'t, '_> {
    const SEALED_ONLY: bool = true;

    fn begin_map(&mut self) -> Result<(), &'static str> {
        self.node_here("mapping");
        Ok(())
    }

    fn begin_list(&mut self) -> Result<(), &'static str> {
        self.node_here("list");
        Ok(())
    }

    fn enter_key(&mut self, key: &Cow<'t, str>) -> Result<(), &'static str> {
        self.descend(Step::Key(Cow::Borrowed(key)));
        self.steps.push(Step::Key(key.clone()));
        Ok(())
    }

    fn enter_item(&mut self, index: usize) -> Result<(), &'static str> {
        self.descend(Step::Index(index));
        self.steps.push(Step::Index(index));
        Ok(())
    }

    fn leave(&mut self) {
        self.path.pop();
        self.steps.pop();
    }

    fn scalar(&mut self, text: Cow<'t, str>) -> Result<(), &'static str> {
        self.node_here("value");
        self.values += 1;
        let depth = self.depth();
        self.items
            .item_at(&mut self.mac, b'V', &self.path, Some(&text));
        for position in 0..self.candidates[depth].len() {
            let index = self.candidates[depth][position];
            let want = &self.wants.list[index];
            let length = want.path.segments().len();
            if want.subtree && length <= depth {
                let path = self.current_path();
                self.found.leaves[index].push((path, text.clone()));
            } else if !want.subtree && length == depth {
                self.found.values[index] = Some(text.clone());
            }
        }
        Ok(())
    }

    fn empty_map(&mut self) -> Result<(), &'static str> {
        self.empty_here("mapping", b'M');
        Ok(())
    }

    fn empty_list(&mut self) -> Result<(), &'static str> {
        self.empty_here("list", b'L');
        Ok(())
    }
}
