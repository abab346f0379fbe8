//! The vault file as data: header, key slots, sealed values, and the MAC
//! that authenticates them. Reads a file through the fast canonical reader
//! (falling back to serde_yaml for files a person or tool reformatted), and
//! writes the canonical layout. See docs/format.md.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::core::secret::Key32;
use std::borrow::Cow;

use crate::vault::canonical::{self, Lines, NotCanonical, TreeBuilder};
use crate::vault::crypto::{KdfParams, MacWriter};
use crate::vault::path::{KeyPath, Segment, encode_index, encode_key};
use crate::vault::tree::Tree;
use crate::vault::value::quote_json_string;

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;
/// The top-level key of the header block.
pub const HEADER_KEY: &str = "runvault";
/// The top-level key of the secrets tree.
pub const SECRETS_KEY: &str = "secrets";
/// The top-level key of the stored old versions.
pub const HISTORY_KEY: &str = "history";
/// Versions kept per path unless `--keep` says otherwise.
pub const DEFAULT_KEEP: u32 = 10;

const PREAMBLE: &str = "\
# runvault vault: keys are readable, every value is encrypted (AES-256-GCM),
# and the whole file is authenticated. Change it only with `runvault`.
";

/// What is wrong with a vault file's structure (before any key is used).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not YAML at all.
    #[error("vault file is not valid YAML: {0}")]
    Yaml(String),
    /// Over a limit checked before parsing (a line's length, the nesting).
    #[error("vault file is refused before parsing: {0}")]
    Limit(#[from] crate::vault::value::Prescan),
    /// YAML, but not a runvault vault (for example the hand-made plaintext file).
    #[error("vault file is not an encrypted runvault vault")]
    NotAVault,
    /// A vault written by a newer runvault.
    #[error(
        "vault format {found} is not supported by this runvault (it reads format {FORMAT_VERSION}); upgrade runvault"
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: u64,
    },
    /// A header field is missing or malformed.
    #[error("vault header field `{field}` is {problem}")]
    Header {
        /// The field (e.g. `slots[1].wrapped`).
        field: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A value in the secrets tree is not a sealed value.
    #[error("value at `{path}` is not an encrypted runvault value")]
    NotSealed {
        /// Its path.
        path: String,
    },
}

/// The kind of a key slot and what it needs to derive its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    /// A passphrase through Argon2id with these parameters and `vault.salt`.
    Passphrase(KdfParams),
    /// A 256-bit machine key file through HKDF-SHA256 with `vault.salt`.
    KeyFile,
}

impl SlotKind {
    /// The name in the file.
    pub fn name(&self) -> &'static str {
        match self {
            SlotKind::Passphrase(_) => "passphrase",
            SlotKind::KeyFile => "keyfile",
        }
    }
}

/// One key slot: the data key wrapped under a key derived from one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Stable id, unique within the vault.
    pub id: u32,
    /// How its key is derived.
    pub kind: SlotKind,
    /// Creation time, RFC 3339 UTC (kept when the passphrase changes).
    pub created: String,
    /// `nonce || AES-256-GCM(data key) || tag`.
    pub wrapped: Vec<u8>,
}

/// The header block (everything but the secrets tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Random id of this vault, bound into every value and slot.
    pub vault_id: [u8; 16],
    /// Id of the `vault.salt` the slots were derived with.
    pub salt_id: [u8; 16],
    /// Write counter: every committed change adds one.
    pub generation: u64,
    /// How many versions of a path are kept (the current one included).
    pub keep: u32,
    /// The audit-log HMAC key, sealed under the value key (stable across
    /// rekeys, so old audit lines stay verifiable).
    pub audit_key: Sealed,
    /// The key slots.
    pub slots: Vec<Slot>,
    /// HMAC-SHA256 over the header and the tree (see [`compute_mac`]).
    pub mac: [u8; 32],
}

/// A sealed value as it stands in the file: `rv1:VERSION:TIME:BASE64`,
/// where BASE64 is `nonce || ciphertext || tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed(pub String);

/// The parts of a sealed value.
pub struct SealedParts {
    /// Version number of this path's value (1 for the first).
    pub version: u32,
    /// Unix time the value was set.
    pub time: u64,
    /// `nonce || ciphertext || tag`.
    pub blob: Vec<u8>,
}

impl Sealed {
    /// Builds the text form.
    pub fn new(version: u32, time: u64, blob: &[u8]) -> Sealed {
        use std::fmt::Write;
        // Sized up front: every value of an import or a rekey is built here.
        let mut text = String::with_capacity(4 + 10 + 1 + 20 + 1 + blob.len().div_ceil(3) * 4);
        write!(text, "rv1:{version}:{time}:").expect("writing to a String cannot fail");
        BASE64.encode_string(blob, &mut text);
        Sealed(text)
    }

    /// A deletion marker: the path was removed at `time`, as version
    /// `version`. Written `rv1:V:T:-` (`-` is not base64, and unlike a
    /// trailing `:` it keeps the scalar a plain string for every YAML tool).
    pub fn tombstone(version: u32, time: u64) -> Sealed {
        Sealed(format!("rv1:{version}:{time}:-"))
    }

    /// Whether this is a deletion marker.
    pub fn is_tombstone(&self) -> bool {
        self.0.ends_with(":-")
    }

    /// Version and time without decoding the payload.
    pub fn version_and_time(&self) -> Option<(u32, u64)> {
        let mut fields = self.0.strip_prefix("rv1:")?.splitn(3, ':');
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    }

    /// Splits the text form; `None` if malformed.
    pub fn parts(&self) -> Option<SealedParts> {
        SealedParts::parse(&self.0)
    }
}

impl SealedParts {
    /// Splits the text form of a sealed value; `None` if malformed.
    pub fn parse(text: &str) -> Option<SealedParts> {
        let mut fields = text.strip_prefix("rv1:")?.splitn(3, ':');
        let version = fields.next()?.parse().ok()?;
        let time = fields.next()?.parse().ok()?;
        let blob = BASE64.decode(fields.next()?).ok()?;
        Some(SealedParts {
            version,
            time,
            blob,
        })
    }
}

/// A vault as read from or written to disk: only ciphertext, never plaintext.
/// This is the only type that can be turned into file bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct EncryptedVault {
    /// The header.
    pub header: Header,
    /// The secrets tree of sealed values.
    pub secrets: Tree<Sealed>,
    /// Old versions per path (display form, e.g. `A.B[0]`), oldest first.
    pub history: History,
}

/// Old versions of each path, oldest first. An entry is a sealed value or a
/// deletion marker (a sealed text with an empty payload).
pub type History = indexmap::IndexMap<String, Vec<Sealed>>;

/// What a `vault.yml` turned out to hold.
pub enum VaultFile {
    /// A runvault vault.
    Encrypted(EncryptedVault),
    /// Plaintext YAML (the hand-made DataOps vault), to be adopted.
    Plaintext(serde_yaml::Value),
}

/// Which reader accepted a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The linear canonical reader.
    Fast,
    /// serde_yaml.
    General,
}

impl EncryptedVault {
    /// Parses an encrypted vault file (fast path, then serde_yaml).
    pub fn parse(bytes: &[u8]) -> Result<(EncryptedVault, Reader), FormatError> {
        if let Some(vault) = read_canonical(bytes) {
            return Ok((vault, Reader::Fast));
        }
        match classify_general(bytes)? {
            VaultFile::Encrypted(vault) => Ok((vault, Reader::General)),
            VaultFile::Plaintext(_) => Err(FormatError::NotAVault),
        }
    }

    /// The canonical file bytes.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096 + self.secrets.leaf_count() * 128);
        emit_header(&self.header, &mut out);
        out.extend_from_slice(SECRETS_KEY.as_bytes());
        out.push(b':');
        canonical::emit_tree(&self.secrets, 2, &mut out, &mut sealed_text);
        emit_history(&self.history, &mut out);
        out
    }
}

fn sealed_text(sealed: &Sealed, out: &mut Vec<u8>) {
    out.extend_from_slice(sealed.0.as_bytes());
}

/// Writes the preamble and the `runvault:` header block of the canonical
/// layout (everything before `secrets:`).
pub fn emit_header(h: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(PREAMBLE.as_bytes());
    let line = |out: &mut Vec<u8>, text: String| {
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    };
    line(out, format!("{HEADER_KEY}:"));
    line(out, format!("  format: {FORMAT_VERSION}"));
    line(out, format!("  vault_id: \"{}\"", hex(&h.vault_id)));
    line(out, format!("  salt_id: \"{}\"", hex(&h.salt_id)));
    line(out, format!("  generation: {}", h.generation));
    line(out, format!("  keep: {}", h.keep));
    line(out, format!("  audit_key: {}", h.audit_key.0));
    line(out, "  slots:".to_string());
    for slot in &h.slots {
        line(out, "    -".to_string());
        line(out, format!("      id: {}", slot.id));
        line(out, format!("      kind: \"{}\"", slot.kind.name()));
        out.extend_from_slice(b"      created: ");
        quote_json_string(&slot.created, out);
        out.push(b'\n');
        if let SlotKind::Passphrase(params) = &slot.kind {
            line(out, format!("      memory_kib: {}", params.memory_kib));
            line(out, format!("      iterations: {}", params.iterations));
            line(out, format!("      parallelism: {}", params.parallelism));
        }
        line(
            out,
            format!("      wrapped: \"{}\"", BASE64.encode(&slot.wrapped)),
        );
    }
    line(out, format!("  mac: \"{}\"", BASE64.encode(h.mac)));
}

/// Writes the `history:` section of the canonical layout (the end of the file).
pub fn emit_history(history: &History, out: &mut Vec<u8>) {
    out.extend_from_slice(HISTORY_KEY.as_bytes());
    out.push(b':');
    if history.is_empty() {
        out.extend_from_slice(b" {}\n");
        return;
    }
    out.push(b'\n');
    for (path, versions) in history {
        out.extend_from_slice(b"  ");
        canonical::emit_key(path, out);
        out.push(b':');
        let versions: Tree<&Sealed> = Tree::List(versions.iter().map(Tree::Leaf).collect());
        canonical::emit_tree(
            &versions,
            4,
            out,
            &mut |sealed: &&Sealed, out: &mut Vec<u8>| sealed_text(sealed, out),
        );
    }
}

/// Reads any `vault.yml`: encrypted (fast path first) or plaintext.
pub fn classify(bytes: &[u8]) -> Result<VaultFile, FormatError> {
    if let Some(vault) = read_canonical(bytes) {
        return Ok(VaultFile::Encrypted(vault));
    }
    classify_general(bytes)
}

/// Reads a vault in the canonical layout, section by section (`runvault:`,
/// `secrets:`, `history:`), building the sealed tree directly. `None` for
/// anything else, which the general reader then parses and judges: on a
/// canonical file both produce the same raw tree, so `interpret` gives the
/// same vault or the same error.
pub(crate) fn read_canonical(bytes: &[u8]) -> Option<EncryptedVault> {
    let mut lines = Lines::new(bytes).ok()?;
    let header = read_header(&mut lines)?;
    let number = lines.peek().ok()??.number;
    let inline = section(&mut lines, SECRETS_KEY).ok()?;
    let mut sealed = TreeBuilder(|text: Cow<'_, str>| {
        canonical::is_sealed_text(&text)
            .then(|| Sealed(text.into_owned()))
            .ok_or("a value that is not sealed")
    });
    let secrets = canonical::node(&mut lines, 0, number, inline, &mut sealed).ok()?;
    if !matches!(secrets, Tree::Map(_)) {
        return None;
    }
    let number = lines.peek().ok()??.number;
    let inline = section(&mut lines, HISTORY_KEY).ok()?;
    let raw = canonical::node(&mut lines, 0, number, inline, &mut TreeBuilder::raw()).ok()?;
    let history = interpret_history(raw).ok()?;
    matches!(lines.peek(), Ok(None)).then_some(EncryptedVault {
        header,
        secrets,
        history,
    })
}

/// Reads the top-level line `NAME:` (`None`) or `NAME: TEXT` (`Some(TEXT)`)
/// of a canonical file.
pub fn section<'t>(lines: &mut Lines<'t>, name: &str) -> Result<Option<&'t str>, NotCanonical> {
    let not_it = |line: usize| NotCanonical {
        line,
        reason: "not the expected section",
    };
    let line = lines.peek()?.ok_or(not_it(0))?;
    let (key, rest) = canonical::split_key(line.body).ok_or(not_it(line.number))?;
    if line.indent != 0 || key != name {
        return Err(not_it(line.number));
    }
    lines.advance();
    match rest {
        "" => Ok(None),
        rest => rest.strip_prefix(' ').map(Some).ok_or(not_it(line.number)),
    }
}

/// Reads `runvault:` and its block from a canonical file; `None` if it is
/// not the canonical header or not a valid one.
pub fn read_header(lines: &mut Lines<'_>) -> Option<Header> {
    let inline = section(lines, HEADER_KEY).ok()?;
    if inline.is_some() {
        return None;
    }
    let raw = canonical::block(lines, 2, &mut TreeBuilder::raw()).ok()?;
    header_from_raw(raw).ok()
}

/// Reads any `vault.yml` with serde_yaml only (the general path).
pub(crate) fn classify_general(bytes: &[u8]) -> Result<VaultFile, FormatError> {
    crate::vault::value::prescan_yaml(bytes)?;
    let doc = crate::vault::value::parse_plain_yaml(bytes).map_err(FormatError::Yaml)?;
    let is_encrypted = doc
        .get(HEADER_KEY)
        .and_then(|header| header.get("format"))
        .is_some();
    if !is_encrypted {
        if contains_sealed_value(&doc) {
            return Err(FormatError::Header {
                field: HEADER_KEY.to_string(),
                problem: "missing, yet the file holds encrypted values",
            });
        }
        return Ok(VaultFile::Plaintext(doc));
    }
    let raw = raw_from_general(&doc, 0).ok_or(FormatError::Header {
        field: HEADER_KEY.to_string(),
        problem: "not made of string keys and string or integer scalars",
    })?;
    interpret(raw).map(VaultFile::Encrypted)
}

/// Whether a plaintext document holds a string that looks like a sealed
/// value: ciphertext that lost its header, never to be taken as plaintext.
pub fn contains_sealed_value(doc: &serde_yaml::Value) -> bool {
    use serde_yaml::Value;
    match doc {
        Value::String(text) => text.starts_with("rv1:"),
        Value::Mapping(map) => map.values().any(contains_sealed_value),
        Value::Sequence(items) => items.iter().any(contains_sealed_value),
        Value::Tagged(tagged) => contains_sealed_value(&tagged.value),
        _ => false,
    }
}

/// Converts a serde_yaml document to the raw tree the fast reader produces.
pub fn raw_from_general(value: &serde_yaml::Value, depth: usize) -> Option<Tree<String>> {
    use serde_yaml::Value;
    if depth > canonical::MAX_DEPTH {
        return None;
    }
    Some(match value {
        Value::Mapping(map) => {
            let mut out = indexmap::IndexMap::with_capacity(map.len());
            for (key, child) in map {
                out.insert(
                    key.as_str()?.to_string(),
                    raw_from_general(child, depth + 1)?,
                );
            }
            Tree::Map(out)
        }
        Value::Sequence(items) => Tree::List(
            items
                .iter()
                .map(|item| raw_from_general(item, depth + 1))
                .collect::<Option<_>>()?,
        ),
        Value::String(text) => Tree::Leaf(text.clone()),
        Value::Number(number) if number.is_u64() => Tree::Leaf(number.to_string()),
        _ => return None,
    })
}

/// Turns a raw tree into a vault, checking every header field's shape.
fn interpret(raw: Tree<String>) -> Result<EncryptedVault, FormatError> {
    let Tree::Map(mut root) = raw else {
        return Err(FormatError::NotAVault);
    };
    let header_raw = root
        .shift_remove(HEADER_KEY)
        .ok_or(FormatError::NotAVault)?;
    let Tree::Map(mut fields) = header_raw else {
        return Err(missing(HEADER_KEY));
    };
    check_format(&mut fields)?;
    let secrets_raw = root
        .shift_remove(SECRETS_KEY)
        .ok_or_else(|| missing(SECRETS_KEY))?;
    let history_raw = root
        .shift_remove(HISTORY_KEY)
        .ok_or_else(|| missing(HISTORY_KEY))?;
    if let Some(extra) = root.keys().next() {
        return Err(FormatError::Header {
            field: extra.clone(),
            problem: "not part of the format",
        });
    }
    let header = interpret_header(fields)?;
    let secrets = match into_sealed(secrets_raw) {
        Ok(tree @ Tree::Map(_)) => tree,
        Ok(_) => return Err(malformed(SECRETS_KEY)),
        Err(mut reversed) => {
            let mut path = KeyPath::root();
            while let Some(segment) = reversed.pop() {
                path.push(segment);
            }
            return Err(FormatError::NotSealed {
                path: path.to_string(),
            });
        }
    };
    let history = interpret_history(history_raw)?;
    Ok(EncryptedVault {
        header,
        secrets,
        history,
    })
}

/// Takes the `format` field; the version is checked first, since a newer
/// format may change everything after it.
fn check_format(fields: &mut indexmap::IndexMap<String, Tree<String>>) -> Result<(), FormatError> {
    let format = take_u64(fields, "format", "format")?;
    if format != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion { found: format });
    }
    Ok(())
}

/// The header block as the tree reader found it, checked as [`EncryptedVault::parse`]
/// checks it (the streaming reader reads the header with this).
pub fn header_from_raw(raw: Tree<String>) -> Result<Header, FormatError> {
    let Tree::Map(mut fields) = raw else {
        return Err(missing(HEADER_KEY));
    };
    check_format(&mut fields)?;
    interpret_header(fields)
}

/// The header fields after `format` (which the caller has checked), each
/// checked for shape; nothing else may be in the header.
fn interpret_header(
    mut fields: indexmap::IndexMap<String, Tree<String>>,
) -> Result<Header, FormatError> {
    let vault_id = take_id(&mut fields, "vault_id")?;
    let salt_id = take_id(&mut fields, "salt_id")?;
    let generation = take_u64(&mut fields, "generation", "generation")?;
    let keep = u32::try_from(take_u64(&mut fields, "keep", "keep")?)
        .ok()
        .filter(|keep| *keep >= 1)
        .ok_or_else(|| malformed("keep"))?;
    let audit_key = take_string(&mut fields, "audit_key", "audit_key")?;
    if !canonical::is_sealed_text(&audit_key) {
        return Err(malformed("audit_key"));
    }
    let audit_key = Sealed(audit_key);
    let mac_text = take_string(&mut fields, "mac", "mac")?;
    let mac = BASE64
        .decode(mac_text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| malformed("mac"))?;
    let slots = match fields.shift_remove("slots") {
        Some(Tree::List(items)) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| interpret_slot(item, index))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(missing("slots")),
    };
    if let Some(extra) = fields.keys().next() {
        return Err(FormatError::Header {
            field: format!("{HEADER_KEY}.{extra}"),
            problem: "not part of the format",
        });
    }
    Ok(Header {
        vault_id,
        salt_id,
        generation,
        keep,
        audit_key,
        slots,
        mac,
    })
}

/// Moves every raw scalar into a sealed value (no copy); on a scalar that is
/// not one, the error is its path's segments, innermost first.
fn into_sealed(raw: Tree<String>) -> Result<Tree<Sealed>, Vec<Segment>> {
    Ok(match raw {
        Tree::Leaf(text) if canonical::is_sealed_text(&text) => Tree::Leaf(Sealed(text)),
        Tree::Leaf(_) => return Err(Vec::new()),
        Tree::Map(map) => {
            let mut out = indexmap::IndexMap::with_capacity(map.len());
            for (key, child) in map {
                match into_sealed(child) {
                    Ok(child) => out.insert(key, child),
                    Err(mut path) => {
                        path.push(Segment::Key(key));
                        return Err(path);
                    }
                };
            }
            Tree::Map(out)
        }
        Tree::List(items) => Tree::List(
            items
                .into_iter()
                .enumerate()
                .map(|(index, child)| {
                    into_sealed(child).map_err(|mut path| {
                        path.push(Segment::Index(index));
                        path
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// The history section as the tree reader found it, checked for shape.
pub fn interpret_history(raw: Tree<String>) -> Result<History, FormatError> {
    let Tree::Map(paths) = raw else {
        return Err(malformed(HISTORY_KEY));
    };
    let mut history = History::with_capacity(paths.len());
    for (path, versions) in paths {
        let field = || format!("{HISTORY_KEY}.{path}");
        if KeyPath::parse(&path).is_err() {
            return Err(malformed(&field()));
        }
        let Tree::List(items) = versions else {
            return Err(malformed(&field()));
        };
        let versions = items
            .into_iter()
            .map(|item| match item {
                Tree::Leaf(text) if canonical::is_sealed_text(&text) => Ok(Sealed(text)),
                _ => Err(malformed(&field())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        history.insert(path, versions);
    }
    Ok(history)
}

fn interpret_slot(item: Tree<String>, index: usize) -> Result<Slot, FormatError> {
    let name = |field: &str| format!("slots[{index}].{field}");
    let Tree::Map(mut fields) = item else {
        return Err(malformed(&format!("slots[{index}]")));
    };
    let id = u32::try_from(take_u64(&mut fields, "id", &name("id"))?)
        .map_err(|_| malformed(&name("id")))?;
    let kind_name = take_string(&mut fields, "kind", &name("kind"))?;
    let created = take_string(&mut fields, "created", &name("created"))?;
    let wrapped = BASE64
        .decode(take_string(&mut fields, "wrapped", &name("wrapped"))?)
        .map_err(|_| malformed(&name("wrapped")))?;
    let kind = match kind_name.as_str() {
        "passphrase" => {
            let mut param = |field: &str| {
                take_u64(&mut fields, field, &name(field))
                    .and_then(|v| u32::try_from(v).map_err(|_| malformed(&name(field))))
            };
            SlotKind::Passphrase(KdfParams {
                memory_kib: param("memory_kib")?,
                iterations: param("iterations")?,
                parallelism: param("parallelism")?,
            })
        }
        "keyfile" => SlotKind::KeyFile,
        _ => {
            return Err(FormatError::Header {
                field: name("kind"),
                problem: "an unknown slot kind",
            });
        }
    };
    if let Some(extra) = fields.keys().next() {
        return Err(FormatError::Header {
            field: name(extra),
            problem: "not part of the format",
        });
    }
    Ok(Slot {
        id,
        kind,
        created,
        wrapped,
    })
}

fn take_string(
    fields: &mut indexmap::IndexMap<String, Tree<String>>,
    key: &str,
    field: &str,
) -> Result<String, FormatError> {
    match fields.shift_remove(key) {
        Some(Tree::Leaf(text)) => Ok(text),
        Some(_) => Err(malformed(field)),
        None => Err(missing(field)),
    }
}

fn take_u64(
    fields: &mut indexmap::IndexMap<String, Tree<String>>,
    key: &str,
    field: &str,
) -> Result<u64, FormatError> {
    take_string(fields, key, field)?
        .parse()
        .map_err(|_| malformed(field))
}

fn take_id(
    fields: &mut indexmap::IndexMap<String, Tree<String>>,
    key: &str,
) -> Result<[u8; 16], FormatError> {
    let text = take_string(fields, key, key)?;
    unhex(&text)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| malformed(key))
}

fn missing(field: &str) -> FormatError {
    FormatError::Header {
        field: field.to_string(),
        problem: "missing",
    }
}

fn malformed(field: &str) -> FormatError {
    FormatError::Header {
        field: field.to_string(),
        problem: "malformed",
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Parses lower- or upper-case hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The file MAC: HMAC-SHA256 under the MAC subkey over the header fields
/// (all but `mac`) and a pre-order walk of the secrets tree, every field
/// length-prefixed (see docs/format.md).
pub fn compute_mac(
    mac_key: &Key32,
    header: &Header,
    secrets: &Tree<Sealed>,
    history: &History,
) -> [u8; 32] {
    let mut mac = MacWriter::new(mac_key);
    mac_header(&mut mac, header);
    mac_tree(&mut mac, secrets);
    mac_history(&mut mac, history);
    mac.finish()
}

/// The header part of the MAC: every header field but `mac`, in a fixed
/// order, after the domain string.
pub fn mac_header(mac: &mut MacWriter, header: &Header) {
    mac.bytes(b"runvault/v1/file-mac");
    mac.u64(FORMAT_VERSION);
    mac.bytes(&header.vault_id);
    mac.bytes(&header.salt_id);
    mac.u64(header.generation);
    mac.u64(u64::from(header.keep));
    mac.bytes(header.audit_key.0.as_bytes());
    mac.u64(header.slots.len() as u64);
    for slot in &header.slots {
        mac.u64(u64::from(slot.id));
        mac.bytes(slot.kind.name().as_bytes());
        mac.bytes(slot.created.as_bytes());
        let params = match &slot.kind {
            SlotKind::Passphrase(p) => [p.memory_kib, p.iterations, p.parallelism],
            SlotKind::KeyFile => [0, 0, 0],
        };
        params.iter().for_each(|&p| mac.u64(u64::from(p)));
        mac.bytes(&slot.wrapped);
    }
}

/// The history part of the MAC, in file order: per path `H`, the encoded
/// path and the number of versions, then each version's text; then `E`.
pub fn mac_history(mac: &mut MacWriter, history: &History) {
    let mut encoded = Vec::new();
    for (path, versions) in history {
        encoded.clear();
        // Paths were validated when read or written; an unparsable one
        // cannot occur here, and would MAC as the empty path.
        KeyPath::parse(path)
            .unwrap_or_default()
            .encode(&mut encoded);
        mac.raw(b"H");
        mac.bytes(&encoded);
        mac.u64(versions.len() as u64);
        versions
            .iter()
            .for_each(|version| mac.bytes(version.0.as_bytes()));
    }
    mac.raw(b"E");
}

/// The tree part of the MAC, streamable in file order: one item per leaf
/// (`V`, its encoded path, its sealed text) and per empty mapping or list
/// (`M` / `L` and its encoded path), then `E` and the item count. The
/// sequence determines the tree, its order included, so a reader can check
/// the MAC line by line without building the tree.
fn mac_tree(mac: &mut MacWriter, root: &Tree<Sealed>) {
    fn walk(
        mac: &mut MacWriter,
        node: &Tree<Sealed>,
        depth: usize,
        encoded: &mut Vec<u8>,
        items: &mut TreeMac,
    ) {
        match node {
            Tree::Leaf(sealed) => items.item(mac, b'V', depth, encoded, Some(&sealed.0)),
            Tree::Map(map) if map.is_empty() => items.item(mac, b'M', depth, encoded, None),
            Tree::List(list) if list.is_empty() => items.item(mac, b'L', depth, encoded, None),
            Tree::Map(map) => {
                for (key, child) in map {
                    let mark = encoded.len();
                    encode_key(key, encoded);
                    walk(mac, child, depth + 1, encoded, items);
                    encoded.truncate(mark);
                }
            }
            Tree::List(list) => {
                for (index, child) in list.iter().enumerate() {
                    let mark = encoded.len();
                    encode_index(index, encoded);
                    walk(mac, child, depth + 1, encoded, items);
                    encoded.truncate(mark);
                }
            }
        }
    }
    let mut items = TreeMac::default();
    walk(mac, root, 0, &mut Vec::new(), &mut items);
    items.finish(mac);
}

/// The items of the tree part of the MAC ([`compute_mac`]), fed one at a
/// time in file order; the tree walk and the streaming reader
/// (`vault::stream`) both use it, so they MAC the same bytes.
#[derive(Debug, Default)]
pub struct TreeMac {
    items: u64,
}

impl TreeMac {
    /// One item: `marker` (`V` value, `M` empty mapping, `L` empty list),
    /// the path as its segment count and its encoded segments (as
    /// [`KeyPath::encode`] writes them), and for a value its sealed text.
    pub fn item(
        &mut self,
        mac: &mut MacWriter,
        marker: u8,
        segments: usize,
        encoded_segments: &[u8],
        text: Option<&str>,
    ) {
        mac.raw(&[marker]);
        // The same bytes as `mac.bytes(&path.encode())`, without the copy.
        mac.u64(4 + encoded_segments.len() as u64);
        mac.raw(&(segments as u32).to_be_bytes());
        mac.raw(encoded_segments);
        if let Some(text) = text {
            mac.bytes(text.as_bytes());
        }
        self.items += 1;
    }

    /// Ends the tree part: `E` and the number of items.
    pub fn finish(self, mac: &mut MacWriter) {
        mac.raw(b"E");
        mac.u64(self.items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19 item 14: docs/format.md shows removal markers as the code
    /// writes them (`rv1:V:T:-`), and never the old `rv1:V:T:` with an
    /// empty payload (`rv1:0:0:` is the audit key's prefix, not a marker).
    #[test]
    fn the_format_docs_show_removal_markers_as_written() {
        let docs = include_str!("../../docs/format.md");
        let marker = Sealed::tombstone(2, 1_795_869_950);
        assert!(marker.is_tombstone());
        assert!(docs.contains(&format!("`{}`", marker.0)), "{}", marker.0);
        assert!(docs.contains("rv1:VERSION:TIME:-") && docs.contains("`rv1:V:T:-`"));
        for (at, _) in docs.match_indices("rv1:") {
            let token: String = docs[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || ":+/=-".contains(*c))
                .collect();
            let fields: Vec<&str> = token.split(':').collect();
            if let [_, version, _, payload] = fields[..] {
                assert!(
                    version == "0" || !payload.is_empty(),
                    "docs/format.md shows `{token}`, a marker without its `-`"
                );
            }
        }
        let yaml: serde_yaml::Value = serde_yaml::from_str(&format!("- {}\n", marker.0)).unwrap();
        assert_eq!(
            yaml[0].as_str(),
            Some(marker.0.as_str()),
            "a plain string to YAML"
        );
    }

    const FIXTURE: &str = include_str!("../../fixtures/vault-v1/vault.yml");
    const ACCOUNT: &str =
        "rv1:1:1795870386:zutm7lKITyBDA1hnnAxMocPRj82KPCAIShkGfqn9KxCvTZlfbI/fcztJZw07xQ==";

    fn with_account(value: &str) -> String {
        assert!(FIXTURE.contains(ACCOUNT));
        FIXTURE.replace(ACCOUNT, value)
    }

    /// Found by the `vault_reader_general` fuzz target: the general reader
    /// took any string starting with `rv1:` as a sealed value, which the
    /// writer then wrote unquoted into a file no reader took back.
    #[test]
    fn sealed_values_the_writer_cannot_write_are_refused_by_both_readers() {
        for odd in [
            "rv1:1:2:ab\\cd",
            "\"rv1:1:2:a b\"",
            "\"rv1:1:2:a#b\"",
            "\"rv1:1:2:\"",
        ] {
            let text = with_account(odd);
            assert!(read_canonical(text.as_bytes()).is_none(), "{odd}");
            assert_eq!(
                EncryptedVault::parse(text.as_bytes()).map(|_| ()),
                Err(FormatError::NotSealed {
                    path: "SNOWFLAKE.ACCOUNT".into()
                }),
                "{odd}"
            );
        }
        let text = FIXTURE.replace(
            "audit_key: rv1:0:0:",
            "audit_key: \"not sealed\"\n  x: rv1:0:0:",
        );
        assert!(EncryptedVault::parse(text.as_bytes()).is_err());
        let text = FIXTURE.replace("audit_key: rv1:0:0:", "audit_key: \"rv1:0:0: \"\n  x: ");
        assert_eq!(
            EncryptedVault::parse(text.as_bytes()).map(|_| ()),
            Err(malformed("audit_key"))
        );
    }

    /// Found while writing the fuzz targets' round-trip property (what a
    /// reader takes, the writer writes back): a slot's `created` was
    /// written between quotes without escaping.
    #[test]
    fn slot_creation_times_are_written_escaped_and_read_back() {
        let (mut vault, reader) = EncryptedVault::parse(FIXTURE.as_bytes()).unwrap();
        assert_eq!(reader, Reader::Fast);
        vault.header.slots[0].created = "a\"b\\c\u{1}é".into();
        let written = vault.to_canonical();
        assert_eq!(read_canonical(&written), Some(vault));
    }

    #[test]
    fn the_fixture_reads_the_same_through_both_readers() {
        let fast = read_canonical(FIXTURE.as_bytes()).unwrap();
        let Ok(VaultFile::Encrypted(general)) = classify_general(FIXTURE.as_bytes()) else {
            panic!("the general reader must take the fixture");
        };
        assert_eq!(fast, general);
        assert_eq!(fast.to_canonical(), FIXTURE.as_bytes());
    }
}
