//! The canonical layout of a vault file, as the tree writer writes it
//! whole ([`EncryptedVault::to_canonical`]) and the streaming writers
//! (`stream::splice`, `stream::rekey`) write its header and history.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::core::hex::hex;
use crate::vault::canonical::{self, quote_json_string};
use crate::vault::format::{
    EncryptedVault, FORMAT_VERSION, HEADER_KEY, HISTORY_KEY, Header, History, MAX_AGE_KEY,
    PENDING_KEY, SECRETS_KEY, Sealed, SlotKind,
};
use crate::vault::tree::Tree;

const PREAMBLE: &str = "\
# runvault vault: keys are readable, every value is encrypted (AES-256-GCM),
# and the whole file is authenticated. Change it only with `runvault`.
";

impl EncryptedVault {
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
pub(crate) fn emit_header(h: &Header, out: &mut Vec<u8>) {
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
        if let SlotKind::Recipient(recipient) = &slot.kind {
            out.extend_from_slice(b"      recipient: ");
            quote_json_string(&recipient.recipient, out);
            out.push(b'\n');
            if let Some(label) = &recipient.label {
                out.extend_from_slice(b"      label: ");
                quote_json_string(label, out);
                out.push(b'\n');
            }
        }
        line(
            out,
            format!("      wrapped: \"{}\"", BASE64.encode(&slot.wrapped)),
        );
    }
    // Written only when non-empty, so a vault that never used them keeps
    // the layout (and the MAC) it had before they existed.
    if !h.rotation.pending.is_empty() {
        line(out, format!("  {PENDING_KEY}:"));
        for (path, sealed) in &h.rotation.pending {
            out.extend_from_slice(b"    ");
            canonical::emit_key(path, out);
            line(out, format!(": {}", sealed.0));
        }
    }
    if !h.rotation.max_age.is_empty() {
        line(out, format!("  {MAX_AGE_KEY}:"));
        for (path, seconds) in &h.rotation.max_age {
            out.extend_from_slice(b"    ");
            canonical::emit_key(path, out);
            line(out, format!(": {seconds}"));
        }
    }
    if let Some(id) = h.last_slot_id {
        line(out, format!("  last_slot_id: {id}"));
    }
    line(out, format!("  mac: \"{}\"", BASE64.encode(h.mac)));
}

/// Writes the `history:` section of the canonical layout (the end of the file).
pub(crate) fn emit_history(history: &History, out: &mut Vec<u8>) {
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
