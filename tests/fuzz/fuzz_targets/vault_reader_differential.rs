//! The vault readers against each other, on arbitrary bytes:
//!
//! - grammar: whatever the canonical grammar (`canonical::parse`) takes,
//!   serde_yaml reads as the same tree of strings;
//! - file: whatever the fast reader takes, the general (serde_yaml) reader
//!   takes as the same vault (so the fast reader refuses what it does not
//!   understand, and the fallback decides);
//! - streaming: for a file whose header (as either reader reads it) names
//!   the fixture vault's salt (`fixtures/vault-v1`), with its MAC
//!   recomputed under the fixture key so the input gets past
//!   authentication, `read_selected` (streaming, then fallback) gives the
//!   tree reader's verdict, the streaming reader never returns values the
//!   tree reader does not, and it takes every file the fast reader takes.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use runvault::vault::testing::canonical;
use runvault::vault::testing::crypto::Subkeys;
use runvault::vault::testing::format::{self, EncryptedVault, VaultFile, raw_from_general};
use runvault::vault::testing::fuzzing::{read_fast, read_general};
use runvault::vault::testing::read::{self, Wanted};
use runvault::vault::testing::salt::Salt;
use runvault::vault::testing::slots;
use runvault::vault::testing::stream::{self, Outcome};
use runvault::vault::testing::tree::Tree;
use runvault::vault::{KeyPath, VaultDir};
use runvault_fuzz::selection::{all_paths, fingerprint, verdict};
use runvault_fuzz::{FIXTURE_SALT, fixture_credential};

fuzz_target!(|data: &[u8]| {
    grammar_agrees(data);
    let fast = read_fast(data);
    if let Some(vault) = &fast {
        match read_general(data) {
            Ok(VaultFile::Encrypted(general)) => {
                assert_eq!(&general, vault, "the two readers read different vaults")
            }
            Ok(VaultFile::Plaintext(_)) => panic!("the general reader sees plaintext"),
            Err(err) => panic!("the general reader refuses what the fast one took: {err}"),
        }
    }
    streaming_agrees(data);
});

/// A tree the canonical grammar takes is the tree serde_yaml reads.
fn grammar_agrees(data: &[u8]) {
    let Ok(tree) = canonical::parse(data) else {
        return;
    };
    let doc: serde_yaml::Value = match serde_yaml::from_slice(data) {
        Ok(doc) => doc,
        Err(err) => panic!("serde_yaml refuses a canonical file: {err}"),
    };
    assert_eq!(
        raw_from_general(&doc, 0).as_ref(),
        Some(&tree),
        "serde_yaml reads a canonical file differently"
    );
}

fn streaming_agrees(data: &[u8]) {
    let salt = Salt::from_file_bytes(FIXTURE_SALT.to_vec());
    // With another salt id, both readers would wait for a matching salt
    // file (a writer may be between renames); only the fixture's is there.
    let parsed = EncryptedVault::parse(data).ok();
    let header = stream::leading_header(data);
    let salt_ids = [
        parsed.as_ref().map(|(vault, _)| vault.header.salt_id),
        header.map(|header| header.salt_id),
    ];
    if salt_ids
        .iter()
        .any(|id| id.is_some_and(|id| id != salt.id()))
        || salt_ids == [None; 2]
    {
        return;
    }
    let credential = fixture_credential();
    let bytes = match &parsed {
        Some((vault, _)) => with_valid_mac(data, vault, &salt),
        None => data.to_vec(),
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("vault.salt"), FIXTURE_SALT).expect("write the salt");
    std::fs::write(dir.path().join("vault.yml"), &bytes).expect("write the vault");
    let store = VaultDir::new(dir.path(), std::time::Duration::from_secs(1));
    let wanted = wanted_from(parsed.as_ref().map(|(vault, _)| &vault.secrets));

    let tree = verdict(
        read::read_selected_tree(&store, &credential, &wanted, None),
        &wanted,
    );
    let full = verdict(read::read_selected(&store, &credential, &wanted), &wanted);
    assert_eq!(full, tree, "read_selected differs from the tree reader");
    match stream::read(&store, &credential, &wanted) {
        Ok(Outcome::Read(selected)) => assert_eq!(
            Ok(fingerprint(&selected, &wanted)),
            tree,
            "the streaming reader differs from the tree reader"
        ),
        _ => assert!(
            !(tree.is_ok() && read_fast(&bytes).is_some()),
            "the streaming reader did not take a canonical vault"
        ),
    }
}

/// `data` with the MAC the fixture key gives to what it parses as, written
/// over the canonical `mac:` line (unchanged if the slot does not open or
/// the line is not there).
fn with_valid_mac(data: &[u8], vault: &EncryptedVault, salt: &Salt) -> Vec<u8> {
    let mut bytes = data.to_vec();
    let Ok(opened) = slots::unlock(
        &vault.header,
        &fixture_credential(),
        salt,
        std::path::Path::new("vault.yml"),
    ) else {
        return bytes;
    };
    let subkeys = Subkeys::derive(&opened.data_key);
    let mac = format::compute_mac(&subkeys.mac, &vault.header, &vault.secrets, &vault.history);
    let encoded = BASE64.encode(mac);
    let marker = b"\n  mac: \"";
    if let Some(at) = memchr::memmem::find(&bytes, marker) {
        let start = at + marker.len();
        let end = start + encoded.len();
        if bytes.get(end) == Some(&b'"') {
            bytes[start..end].copy_from_slice(encoded.as_bytes());
        }
    }
    bytes
}

/// Every path of the parsed secrets (values and containers, at most 24),
/// each top-level subtree, the root, and paths that are not there.
fn wanted_from(secrets: Option<&Tree<format::Sealed>>) -> Wanted {
    let mut wanted = Wanted::default();
    let fixed = ["SNOWFLAKE.TRANSFORM.PASSWORD", "NOT.THERE", "L[3]"];
    wanted.values.extend(
        fixed
            .iter()
            .map(|p| KeyPath::parse(p).expect("a valid path")),
    );
    wanted.subtrees.push(KeyPath::root());
    if let Some(tree @ Tree::Map(map)) = secrets {
        wanted.values.extend(all_paths(tree).into_iter().take(24));
        for key in map.keys().take(4) {
            if let Ok(path) = KeyPath::parse(key) {
                wanted.subtrees.push(path);
            }
        }
    }
    wanted
}
