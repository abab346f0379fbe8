//! The vault file as data: header, key slots, sealed values, and the MAC
//! that authenticates them (docs/format.md). The model is here; the rest
//! is split by direction:
//!
//! - [`read`]: the fast canonical reader, the general (serde_yaml) reader
//!   it falls back to, and the checks both share;
//! - [`write`]: the canonical layout the tree writer and the streaming
//!   writers emit;
//! - [`mac`]: the file MAC, fed by the tree walk and the streaming passes
//!   item by item, so both MAC the same bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::vault::crypto::KdfParams;
use crate::vault::tree::Tree;

mod mac;
mod read;
mod write;

pub use mac::compute_mac;
pub(crate) use mac::{EncodedPath, TreeMac, mac_header, mac_history};
#[cfg(test)]
pub(crate) use read::MAX_RECIPIENT_WRAPPED;
pub(crate) use read::{
    MAX_LABEL_LEN, classify_general, contains_sealed_value, is_label_text, read_canonical,
    read_header, read_history, section,
};
pub use read::{classify, raw_from_general};
pub(crate) use write::{emit_header, emit_history};

/// The format version this build reads and writes.
pub(super) const FORMAT_VERSION: u64 = 1;
/// The top-level key of the header block.
pub(super) const HEADER_KEY: &str = "runvault";
/// The top-level key of the secrets tree.
pub(super) const SECRETS_KEY: &str = "secrets";
/// The top-level key of the stored old versions.
pub(super) const HISTORY_KEY: &str = "history";
/// The header field of the pending versions (written only when non-empty).
pub(super) const PENDING_KEY: &str = "pending";
/// The header field of the rotation policy (written only when non-empty).
pub(super) const MAX_AGE_KEY: &str = "max_age";
/// Versions kept per path unless `--keep` says otherwise.
pub const DEFAULT_KEEP: u32 = 10;

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
    /// A public key (an age X25519 recipient `age1...` or `ssh-ed25519
    /// AAAA...`): the wrapped key is an age ciphertext of the data key to
    /// it, opened by the matching identity (docs/format.md 8.4).
    Recipient(RecipientSlot),
}

/// What a recipient slot stores beside its wrapped key (both public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientSlot {
    /// The recipient, in its canonical text form (no SSH comment).
    pub recipient: String,
    /// A free text naming the host (`--label`), if any.
    pub label: Option<String>,
}

impl SlotKind {
    /// The name in the file.
    pub fn name(&self) -> &'static str {
        match self {
            SlotKind::Passphrase(_) => "passphrase",
            SlotKind::KeyFile => "keyfile",
            SlotKind::Recipient(_) => "recipient",
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
    /// `nonce || AES-256-GCM(data key) || tag`; for a recipient slot, the
    /// binary age file of the data key.
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
    /// The pending versions and the rotation policy (`rotate`); boxed, as
    /// most vaults have neither.
    pub rotation: Box<Rotation>,
    /// The highest slot id this vault has given, kept only while it is
    /// above every slot's id (a removed slot had it), so that no id is
    /// given twice; `None` otherwise (docs/format.md §4.2, §8).
    pub last_slot_id: Option<u32>,
    /// HMAC-SHA256 over the header and the tree (see [`compute_mac`]).
    pub mac: [u8; 32],
}

impl Header {
    /// The highest slot id this vault has given: its slots' and
    /// [`Header::last_slot_id`]. A new slot takes the next one.
    pub fn highest_slot_id(&self) -> u32 {
        let present = self.slots.iter().map(|slot| slot.id).max().unwrap_or(0);
        present.max(self.last_slot_id.unwrap_or(0))
    }

    /// Puts `slots` in place of the slots, remembering `highest`, the
    /// highest id given before, if it is now above every slot's id.
    pub fn replace_slots(&mut self, slots: Vec<Slot>, highest: u32) {
        self.slots = slots;
        let present = self.slots.iter().map(|slot| slot.id).max().unwrap_or(0);
        self.last_slot_id = (highest > present).then_some(highest);
    }
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
pub(super) type History = indexmap::IndexMap<String, Vec<Sealed>>;

/// The header's rotation state, each part written only when non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rotation {
    /// Pending versions (`rotate`): per path (display form), a value sealed
    /// at that path as its next version, not yet current. Readers never
    /// see it as the path's value.
    pub pending: Pending,
    /// Rotation policy: per path (display form), the maximum age of its
    /// current value in seconds (`--max-age`).
    pub max_age: indexmap::IndexMap<String, u64>,
}

/// Pending versions per path, in the order they were staged.
pub(super) type Pending = indexmap::IndexMap<String, Sealed>;

/// What a `vault.yml` turned out to hold.
// Made once per read and matched at once: boxing the vault would cost an
// allocation on every `get` for no saving.
#[allow(clippy::large_enum_variant)]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19 item 14: docs/format.md shows removal markers as the code
    /// writes them (`rv1:V:T:-`), and never the old `rv1:V:T:` with an
    /// empty payload (`rv1:0:0:` is the audit key's prefix, not a marker).
    #[test]
    fn the_format_docs_show_removal_markers_as_written() {
        let docs = include_str!("../../../docs/format.md");
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
}
