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
//! failure goes to the tree reader anyway. `tests/stream_reader.rs` and the
//! property test below check that both readers agree.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::core::secret::Key32;
use crate::vault::canonical::{self, Lines, TreeBuilder, Visitor};
use crate::vault::crypto::{MacWriter, Subkeys};
use crate::vault::error::VaultError;
use crate::vault::format::{
    self, EncryptedVault, HISTORY_KEY, Header, History, SECRETS_KEY, Sealed, TreeMac, read_header,
};
use crate::vault::path::{KeyPath, Segment, encode_index, encode_key};
use crate::vault::read::{Lookup, Selected, Wanted};
use crate::vault::salt::Salt;
use crate::vault::slots::{self, Credential, Opened};
use crate::vault::store::VaultDir;
use crate::vault::unlocked::open_sealed;

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
    dir: &VaultDir,
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

/// The start every streaming pass shares (this reader, `export`, and the
/// writers in `vault::splice` and `vault::rekey`): reads `vault.yml` and
/// its matching salt, reads the header of a canonical file and opens a key
/// slot (the one KDF run), then hands the lines after the header to
/// `body`. `Err` when the file is not canonical or `body` answers `None`:
/// then the tree reader decides, with the header and slot opened here if
/// it got that far. A secret that opens no slot is reported only if the
/// tree reader would take the file, so both give the same verdict.
pub(crate) fn open_then<R>(
    dir: &VaultDir,
    credential: &Credential,
    body: impl FnOnce(Lines<'_>, &Header, &Opened) -> Result<Option<R>, VaultError>,
) -> Result<Result<R, Option<(Header, Opened)>>, VaultError> {
    let opened = open_then_any(
        dir,
        std::slice::from_ref(credential),
        |lines, header, opened, _| body(lines, header, &opened.slot),
    )?;
    Ok(opened.map_err(|fallback| fallback.map(|(header, opened)| (header, opened.slot))))
}

/// A key slot opened by one of several credentials. No `Debug`: it holds
/// keys.
pub struct OpenedBy {
    /// The slot.
    pub slot: Opened,
    /// Which credential opened it.
    pub credential: usize,
}

/// [`open_then`] with several credentials: the first that opens a slot is
/// used, as the tree writer of `rekey` does, and `body` also gets the salt
/// that matches the file; if none opens one, the first error is reported.
pub(crate) fn open_then_any<R>(
    dir: &VaultDir,
    credentials: &[Credential],
    body: impl FnOnce(Lines<'_>, &Header, &OpenedBy, &Salt) -> Result<Option<R>, VaultError>,
) -> Result<Result<R, Option<(Header, OpenedBy)>>, VaultError> {
    let vault_path = dir.vault_path();
    let loaded = dir.load_with(|bytes| {
        Ok(leading_header(&bytes).map(|header| {
            let salt_id = header.salt_id;
            (bytes, salt_id)
        }))
    });
    let (bytes, salt) = match loaded {
        Ok(Some(loaded)) => loaded,
        // The tree reader parses the whole file before it looks for the
        // salt: if it would refuse the file, its verdict comes first.
        Ok(None) | Err(VaultError::SaltMissing { .. } | VaultError::SaltMismatch { .. }) => {
            return Ok(Err(None));
        }
        Err(err) => return Err(err),
    };
    // The header was read from the lines before `secrets:`; the whole file
    // must also pass the line checks, and give the same header.
    let Ok(mut lines) = Lines::new(&bytes) else {
        return Ok(Err(None));
    };
    let Some(header) = read_header(&mut lines) else {
        return Ok(Err(None));
    };
    let opened = match slots::unlock_any(&header, credentials, &salt, &vault_path) {
        Ok((slot, credential)) => OpenedBy { slot, credential },
        // The tree reader parses the whole file before it tries a key; if
        // it would refuse the file, its verdict comes first.
        Err(err) => {
            return match EncryptedVault::parse(&bytes) {
                Ok(_) => Err(err),
                Err(_) => Ok(Err(None)),
            };
        }
    };
    Ok(match body(lines, &header, &opened, &salt)? {
        Some(result) => Ok(result),
        None => Err(Some((header, opened))),
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

/// The header as this reader first reads it, to find the salt: from the
/// lines before `secrets:` only; `None` if they are not a canonical header.
pub fn leading_header(bytes: &[u8]) -> Option<Header> {
    let header_end = memchr::memmem::find(bytes, b"\nsecrets:").map_or(0, |at| at + 1);
    let mut lines = Lines::new(&bytes[..header_end]).ok()?;
    read_header(&mut lines)
}

/// Above this file size the MAC is computed on a second thread.
const PARALLEL_MAC_BYTES: usize = 256 * 1024;

/// A file MAC under `key` for a file of `len` bytes: a large file is hashed
/// on the second core while it is parsed.
pub(crate) fn file_mac(key: &Key32, len: usize) -> MacWriter {
    if len > PARALLEL_MAC_BYTES {
        MacWriter::new_parallel(key)
    } else {
        MacWriter::new(key)
    }
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
    let number = lines.peek().ok()??.number;
    let inline = format::section(&mut lines, SECRETS_KEY).ok()?;
    canonical::node(&mut lines, 0, number, inline, &mut visitor).ok()?;
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
    let number = lines.peek().ok()??.number;
    let inline = format::section(&mut lines, HISTORY_KEY).ok()?;
    let raw = canonical::node(&mut lines, 0, number, inline, &mut TreeBuilder::raw()).ok()?;
    let history = format::interpret_history(raw).ok()?;
    format::mac_history(&mut mac, &history);
    if !matches!(lines.peek(), Ok(None)) {
        return None;
    }
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

/// Walks the `secrets:` section that `lines` is at with `visitor` (a
/// streaming pass after the first: export, rekey), whose walk stops at an
/// error it keeps and `failure` takes back: that error, or `Ok(false)` if
/// the lines are not the canonical section (the tree reader decides then),
/// or `Ok(true)` once walked.
pub(crate) fn walk_secrets<'t, V: Visitor<'t>>(
    lines: &mut Lines<'t>,
    visitor: &mut V,
    failure: impl FnOnce(&mut V) -> Option<VaultError>,
) -> Result<bool, VaultError> {
    let Some(number) = lines.peek().ok().flatten().map(|line| line.number) else {
        return Ok(false);
    };
    let Ok(inline) = format::section(lines, SECRETS_KEY) else {
        return Ok(false);
    };
    let walked = canonical::node(lines, 0, number, inline, visitor);
    match failure(visitor) {
        Some(err) => Err(err),
        None => Ok(walked.is_ok()),
    }
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
    /// The current path's encoded segments, and where each segment starts.
    encoded: Vec<u8>,
    marks: Vec<usize>,
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
            encoded: Vec::with_capacity(256),
            marks: Vec::new(),
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
        self.marks.len()
    }

    /// Goes one step down to `segment` and narrows the candidates.
    fn descend(&mut self, segment: Step<'_>) {
        let depth = self.depth();
        self.marks.push(self.encoded.len());
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
            Step::Key(key) => encode_key(&key, &mut self.encoded),
            Step::Index(index) => encode_index(index, &mut self.encoded),
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
        let depth = self.depth();
        self.items
            .item(&mut self.mac, marker, depth, &self.encoded, None);
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

impl<'t> Visitor<'t> for SecretsVisitor<'t, '_> {
    type Node = ();
    type Map = ();
    type List = ();
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
        let mark = self.marks.pop().expect("leave after enter");
        self.encoded.truncate(mark);
        self.steps.pop();
    }

    fn scalar(&mut self, text: Cow<'t, str>) -> Result<(), &'static str> {
        self.node_here("value");
        self.values += 1;
        let depth = self.depth();
        self.items
            .item(&mut self.mac, b'V', depth, &self.encoded, Some(&text));
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

    fn map_entry(&mut self, (): &mut (), _: Cow<'t, str>, (): ()) -> Result<(), &'static str> {
        Ok(())
    }

    fn end_map(&mut self, (): ()) {}

    fn list_item(&mut self, (): &mut (), (): ()) {}

    fn end_list(&mut self, (): ()) {}
}
