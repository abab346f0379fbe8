//! `vault.salt` and `vault.yml` from the same input, as an attacker who can
//! write both would plant them: the first byte is the salt's length, the
//! next bytes the salt, the rest the vault file, whose header's `salt_id`
//! is rewritten to name that salt (a fuzzer cannot find SHA-256 matches on
//! its own). Opening it with a passphrase and with a key file, through the
//! tree reader and the streaming reader, never panics: a short salt, a
//! salt of any bytes, any header and slot parameters give an error with an
//! exit code. Inputs whose slots ask for costly Argon2id runs are skipped
//! (that cost is bounded, not fuzzed: format §8.2).

#![no_main]

use libfuzzer_sys::fuzz_target;
use runvault::core::exit::ExitStatus;
use runvault::core::secret::SecretBytes;
use runvault::vault::testing::crypto::KdfParams;
use runvault::core::hex::hex;
use runvault::vault::testing::format::{EncryptedVault, SlotKind};
use runvault::vault::testing::salt::Salt;
use runvault::vault::testing::{read, stream};
use runvault::vault::{Credential, KeyPath, VaultDir};
use runvault_fuzz::fixture_credential;

/// Most Argon2id work (KiB-passes, all slots) an input may ask for.
const CHEAP_WORK: u64 = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let (salt, vault) = rest.split_at(usize::from(len).min(rest.len()));
    let salt_id = hex(&Salt::from_file_bytes(salt.to_vec()).id());
    let Ok(text) = std::str::from_utf8(vault) else {
        return;
    };
    // Name the planted salt in whatever the header says its salt id is.
    let text = match text.find("salt_id: \"") {
        Some(at) if text.len() >= at + 10 + 32 && text.is_char_boundary(at + 10 + 32) => {
            format!("{}{salt_id}{}", &text[..at + 10], &text[at + 10 + 32..])
        }
        _ => text.to_string(),
    };
    // A header naming another salt makes the readers wait for a matching
    // one (a writer may be between renames): nothing to learn, and slow.
    let named = Salt::from_file_bytes(salt.to_vec()).id();
    let parsed = EncryptedVault::parse(text.as_bytes()).ok();
    let leading = stream::leading_header(text.as_bytes());
    let ids = [
        parsed.as_ref().map(|(vault, _)| vault.header.salt_id),
        leading.map(|header| header.salt_id),
    ];
    if ids.iter().any(|id| id.is_some_and(|id| id != named)) || ids == [None; 2] {
        return;
    }
    if let Some((parsed, _)) = parsed {
        let work: u64 = (parsed.header.slots.iter())
            .map(|slot| match &slot.kind {
                SlotKind::Passphrase(params) => params.work(),
                SlotKind::KeyFile | SlotKind::Recipient(_) => 0,
            })
            .sum();
        if work > CHEAP_WORK {
            return;
        }
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("vault.salt"), salt).expect("write the salt");
    std::fs::write(dir.path().join("vault.yml"), &text).expect("write the vault");
    let store = VaultDir::new(dir.path(), std::time::Duration::from_secs(1));
    let passphrase = Credential::Passphrase(
        SecretBytes::new(b"fuzz".to_vec()),
        KdfParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        },
    );
    let wanted = read::Wanted {
        values: vec![KeyPath::parse("A").expect("a path")],
        subtrees: Vec::new(),
    };
    for credential in [passphrase, fixture_credential()] {
        if let Err(err) = store.open(&credential) {
            assert_ne!(err.exit_code(), 0);
        }
        if let Err(err) = read::read_selected(&store, &credential, &wanted) {
            assert_ne!(err.exit_code(), 0);
        }
    }
});
