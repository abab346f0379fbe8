//! The streaming reader against the tree reader: on every canonical file
//! both give the same values and the same verdict (property test), the
//! streaming reader takes every canonical file itself, and on damaged or
//! reformatted files (differential fuzz) `read_selected` (streaming, then
//! fallback) decides exactly as the tree reader alone, while the streaming
//! reader never vouches for a file the tree reader refuses.
//!
//! The streaming writer (`vault::splice`) against the tree writer: for
//! random vaults and random edits it writes the same file (byte for byte
//! but for the new value's nonce and the MAC, which covers it), the same
//! version and audit entry, or hands the edit to the tree writer; and it
//! never splices a damaged file.
//!
//! The streaming `export` and `rekey` (two passes over the file, no tree)
//! against the tree: the same rendered bytes or the same error for every
//! format and prefix, the tree reader's verdict on damaged files, and the
//! same rekeyed file but for its random parts.

use std::path::Path;

use super::selection::{all_paths, fingerprint, verdict};
use proptest::prelude::*;
use runvault::core::exit::ExitStatus;
use runvault::core::progress::NoProgress;
use runvault::core::secret::{Key32, SecretBytes};
use runvault::vault::testing::crypto::KdfOverride;
use runvault::vault::testing::format::{DEFAULT_KEEP, EncryptedVault, Reader};
use runvault::vault::testing::read::{self, Wanted};
use runvault::vault::testing::salt::Salt;
use runvault::vault::testing::splice::{self, SetEdit};
use runvault::vault::testing::stream::{self, Outcome};
use runvault::vault::testing::tree::Tree;
use runvault::vault::testing::value::Plain;
use runvault::vault::testing::{export, rekey};
use runvault::vault::{Credential, KeyPath, UnlockedVault, VaultDir};
use runvault::vault::{RekeyPlan, VaultError};

/// A vault directory holding one generated vault, and its machine key.
struct Fixture {
    dir: tempfile::TempDir,
    key: [u8; 32],
    bytes: Vec<u8>,
}

impl Fixture {
    /// A vault of `texts`, then `updates` set on top (which fills `history:`).
    fn new(texts: &Tree<String>, updates: &[(KeyPath, String)]) -> Fixture {
        Fixture::with(texts, updates, &[], DEFAULT_KEEP, false)
    }

    /// [`Fixture::new`] with, when `rotating`, a pending version and a
    /// `--max-age` policy on its first value (the header's `pending` and
    /// `max_age`, issue 24).
    fn rotating(texts: &Tree<String>, updates: &[(KeyPath, String)], rotating: bool) -> Fixture {
        Fixture::with(texts, updates, &[], DEFAULT_KEEP, rotating)
    }

    /// [`Fixture::new`], then `removals` removed (removal markers in
    /// `history:`), keeping `keep` versions.
    fn with(
        texts: &Tree<String>,
        updates: &[(KeyPath, String)],
        removals: &[KeyPath],
        keep: u32,
        rotating: bool,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = Key32::random();
        let credential = Credential::KeyFile(Key32::from_bytes(*key.expose()));
        let salt = Salt::generate();
        let vault_path = dir.path().join("vault.yml");
        let mut vault = UnlockedVault::create(&[credential], &salt, keep, &vault_path);
        let plain = texts
            .try_map(&mut |_, text| Ok::<_, ()>(Plain::text(text.clone().into_bytes())))
            .unwrap();
        vault.merge(plain, "import", &NoProgress).unwrap();
        for (path, text) in updates {
            vault
                .set(path, &Plain::text(text.clone().into_bytes()))
                .unwrap();
        }
        for path in removals {
            // A path may be gone already (under an earlier removal).
            let _ = vault.remove(path, false);
        }
        if let Some(path) = rotating
            .then(|| vault.secrets().leaf_paths().into_iter().next())
            .flatten()
        {
            vault
                .stage(&path, &Plain::text(b"pending value".to_vec()))
                .unwrap();
            vault.set_max_age(&path, 86_400);
        }
        let bytes = vault.seal().to_canonical();
        std::fs::write(&vault_path, &bytes).unwrap();
        std::fs::write(dir.path().join("vault.salt"), salt.as_bytes()).unwrap();
        Fixture {
            dir,
            key: *key.expose(),
            bytes,
        }
    }

    fn store(&self) -> VaultDir {
        VaultDir::new(self.dir.path(), std::time::Duration::from_secs(1))
    }

    fn credential(&self) -> Credential {
        Credential::KeyFile(Key32::from_bytes(self.key))
    }

    fn write(&self, bytes: &[u8]) {
        std::fs::write(self.dir.path().join("vault.yml"), bytes).unwrap();
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Z][A-Z0-9_]{0,6}",
        1 => "[a-z \"\\\\é:#-]{1,5}",
        1 => Just("on".to_string()),
        1 => Just("01".to_string()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,12}", any::<String>()]
}

/// Trees with mappings, lists, empty containers and odd keys.
fn tree() -> impl Strategy<Value = Tree<String>> {
    let node = value()
        .prop_map(Tree::Leaf)
        .prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                proptest::collection::vec((key(), inner.clone()), 0..5)
                    .prop_map(|entries| Tree::Map(entries.into_iter().collect())),
                proptest::collection::vec(inner, 0..4).prop_map(Tree::List),
            ]
        });
    proptest::collection::vec((key(), node), 0..7)
        .prop_map(|entries| Tree::Map(entries.into_iter().collect()))
}

/// What to ask for: picks among the tree's paths (values and containers),
/// plus paths that are not there, some under a value or through a list.
fn wanted_from(tree: &Tree<String>, picks: &[usize]) -> Wanted {
    let paths = all_paths(tree);
    let mut wanted = Wanted::default();
    for (turn, &pick) in picks.iter().enumerate() {
        let path = match paths.get(pick % (paths.len() + 3)) {
            Some(path) => path.clone(),
            None => match pick % 3 {
                0 => KeyPath::parse("NOT_THERE.AT_ALL").unwrap(),
                1 => KeyPath::parse("L[7]").unwrap(),
                _ => paths.first().map_or_else(
                    || KeyPath::parse("X").unwrap(),
                    |p| KeyPath::parse(&format!("{p}.UNDER")).unwrap(),
                ),
            },
        };
        if turn % 3 == 2 {
            wanted.subtrees.push(path);
        } else {
            wanted.values.push(path);
        }
    }
    if picks.len().is_multiple_of(4) {
        wanted.subtrees.push(KeyPath::root());
    }
    wanted
}

/// Leaf paths to set again (each old value moves to `history:`).
fn updates_from(tree: &Tree<String>, picks: &[usize]) -> Vec<(KeyPath, String)> {
    let leaves = tree.leaf_paths();
    if leaves.is_empty() {
        return Vec::new();
    }
    picks
        .iter()
        .map(|pick| (leaves[pick % leaves.len()].clone(), format!("new-{pick}")))
        .collect()
}

/// One edit of a file's bytes, as a person, a tool or bit rot might make.
#[derive(Debug, Clone)]
enum Mutation {
    SetByte(usize, u8),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize),
    Truncate(usize),
    IndentLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        Just(b' '),
        Just(b'\n'),
        Just(b':'),
        Just(b'-'),
        Just(b'"'),
        Just(b'{'),
        Just(b'#'),
        Just(b'A'),
        Just(b'0'),
        any::<u8>()
    ];
    prop_oneof![
        (any::<usize>(), byte).prop_map(|(at, b)| Mutation::SetByte(at, b)),
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::SwapLines),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::IndentLine),
    ]
}

fn mutate(bytes: &[u8], mutation: &Mutation) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let n = lines.len();
    match *mutation {
        Mutation::SetByte(at, byte) => {
            let mut out = bytes.to_vec();
            let at = at % out.len();
            out[at] = byte;
            return out;
        }
        Mutation::Truncate(at) => return bytes[..at % bytes.len()].to_vec(),
        Mutation::DeleteLine(at) => {
            lines.remove(at % n);
        }
        Mutation::DuplicateLine(at) => {
            let line = lines[at % n].clone();
            lines.insert(at % n, line);
        }
        Mutation::SwapLines(at) => lines.swap(at % n, (at + 1) % n),
        Mutation::IndentLine(at) => {
            lines[at % n].splice(0..0, *b"  ");
        }
    }
    lines.concat()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// On every canonical file the streaming reader vouches for the file
    /// itself and finds what the tree reader finds.
    #[test]
    fn both_readers_agree_on_canonical_files(
        texts in tree(),
        picks in proptest::collection::vec(any::<usize>(), 0..8),
        update_picks in proptest::collection::vec(any::<usize>(), 0..3),
        rotating in any::<bool>(),
    ) {
        let fixture = Fixture::rotating(&texts, &updates_from(&texts, &update_picks), rotating);
        let wanted = wanted_from(&texts, &picks);
        let tree = read::read_selected_tree(&fixture.store(), &fixture.credential(), &wanted, None);
        let streamed = match stream::read(&fixture.store(), &fixture.credential(), &wanted) {
            Ok(Outcome::Read(selected)) => selected,
            Ok(Outcome::Fallback(_)) => panic!("the streaming reader must take a canonical file"),
            Err(err) => panic!("streaming reader failed: {err}"),
        };
        prop_assert_eq!(Ok(fingerprint(&streamed, &wanted)), verdict(tree, &wanted));
    }

    /// Differential fuzz: damaged files get the same verdict (values, or the
    /// same error and exit code) through `read_selected` as through the tree
    /// reader alone; the streaming reader never vouches for a file the tree
    /// reader refuses, nor returns other values.
    #[test]
    fn damaged_files_get_the_tree_readers_verdict(
        texts in tree(),
        picks in proptest::collection::vec(any::<usize>(), 1..6),
        mutations in proptest::collection::vec(mutation(), 1..3),
    ) {
        let fixture = Fixture::new(&texts, &[]);
        let wanted = wanted_from(&texts, &picks);
        let damaged = mutations.iter().fold(fixture.bytes.clone(), |bytes, m| {
            if bytes.is_empty() { bytes } else { mutate(&bytes, m) }
        });
        fixture.write(&damaged);
        let tree = verdict(
            read::read_selected_tree(&fixture.store(), &fixture.credential(), &wanted, None),
            &wanted,
        );
        let full = verdict(read::read_selected(&fixture.store(), &fixture.credential(), &wanted), &wanted);
        prop_assert_eq!(&full, &tree);
        if let Ok(Outcome::Read(selected)) = stream::read(&fixture.store(), &fixture.credential(), &wanted) {
            prop_assert_eq!(Ok(fingerprint(&selected, &wanted)), tree);
        }
    }
}

/// A path to set: one of the tree's (values and containers), or a new one
/// (under a mapping, at the top, under a value, at a list's end).
fn edit_path(tree: &Tree<String>, pick: usize) -> KeyPath {
    let paths = all_paths(tree);
    let parse = |text: String| KeyPath::parse(&text).unwrap();
    match (paths.get(pick % (paths.len() + 4)), paths.first(), pick % 4) {
        (Some(path), _, _) => path.clone(),
        (None, Some(first), 0) => parse(format!("{first}.NEW")),
        (None, Some(first), 1) => parse(format!("{first}[9]")),
        (None, _, 2) => parse("FRESH.INNER.LEAF".into()),
        (None, _, _) => parse("TOP".into()),
    }
}

/// The audit entry as its line would say it.
fn audit_json(change: &runvault::vault::testing::audit::AuditChange) -> String {
    serde_json::to_string(change).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The streaming writer against the tree writer on canonical files.
    #[test]
    fn the_streaming_writer_writes_what_the_tree_writer_writes(
        texts in tree(),
        update_picks in proptest::collection::vec(any::<usize>(), 0..6),
        removal_picks in proptest::collection::vec(any::<usize>(), 0..2),
        keep in 1u32..4,
        pick in any::<usize>(),
        if_version in proptest::option::of(0u32..4),
    ) {
        let removals: Vec<KeyPath> = removal_picks.iter().map(|&p| edit_path(&texts, p)).collect();
        let fixture = Fixture::with(&texts, &updates_from(&texts, &update_picks), &removals, keep, false);
        let path = edit_path(&texts, pick);
        let value = Plain::text(b"spliced".to_vec());
        let time = 1_800_000_000;
        let (mut tree_vault, _) = fixture.store().open(&fixture.credential()).unwrap();
        let was_a_value = matches!(tree_vault.secrets().get(&path), Some(Tree::Leaf(_)));
        let current = tree_vault.current_version(&path);
        let by_tree = match if_version {
            Some(expected) if expected != current => Err(format!("exit 8: `{path}` is at version {current}, not {expected}; nothing was changed (re-read it and retry)")),
            _ => tree_vault.set_at(&path, &value, time).map_err(|err| format!("exit {}: {err}", err.exit_code())),
        };
        let edit = SetEdit { path: &path, value: &value, if_version, time };
        let spliced = splice::set(&fixture.store(), &fixture.credential(), &edit);
        let spliced = match (by_tree, spliced) {
            (_, Ok(Err(_))) => {
                // Handed to the tree writer: only where the pass cannot splice
                // (it copies no key written with escapes).
                let text = String::from_utf8(fixture.bytes.clone()).unwrap();
                let secrets = &text[text.find("\nsecrets:").unwrap()..text.find("\nhistory:").unwrap()];
                let spliceable = was_a_value && !secrets.contains('\\');
                prop_assert!(!spliceable || if_version.is_some_and(|e| e != current), "a value must be spliced");
                return Ok(());
            }
            (Err(tree_err), Ok(Ok(_))) => panic!("spliced an edit the tree writer refuses: {tree_err}"),
            (Err(tree_err), Err(err)) => {
                prop_assert_eq!(tree_err, format!("exit {}: {err}", err.exit_code()));
                return Ok(());
            }
            (Ok(_), Err(err)) => panic!("the streaming writer failed: {err}"),
            (Ok(version), Ok(Ok(spliced))) => {
                prop_assert_eq!(spliced.version, version);
                spliced
            }
        };
        prop_assert_eq!(audit_json(&spliced.change), audit_json(&tree_vault.audit_change(&path, "set").unwrap()));
        let written = tree_vault.seal();
        prop_assert_eq!(spliced.generations, (written.header.generation - 1, written.header.generation));
        // The spliced file is canonical as runvault writes it, opens with a
        // valid MAC, and holds the new value.
        let (mut parsed, reader) = EncryptedVault::parse(&spliced.bytes).unwrap();
        prop_assert_eq!(reader, Reader::Fast);
        prop_assert!(parsed.to_canonical() == spliced.bytes, "not canonical");
        fixture.write(&spliced.bytes);
        let (reopened, _) = fixture.store().open(&fixture.credential()).unwrap();
        prop_assert!(reopened.get(&path).unwrap() == value);
        // The same file as the tree writer's, but for the new value's nonce
        // and the MAC.
        let theirs = written.secrets.get(&path).unwrap().clone();
        parsed.secrets.place(&path, theirs).unwrap();
        parsed.header.mac = written.header.mac;
        prop_assert!(parsed.to_canonical() == written.to_canonical(), "the files differ");
    }

    /// Differential fuzz of the writer: it never splices a file the tree
    /// reader refuses (a damaged file is never the base of a commit).
    #[test]
    fn damaged_files_are_never_spliced(
        texts in tree(),
        pick in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..3),
    ) {
        let fixture = Fixture::new(&texts, &[]);
        let damaged = mutations.iter().fold(fixture.bytes.clone(), |bytes, m| {
            if bytes.is_empty() { bytes } else { mutate(&bytes, m) }
        });
        fixture.write(&damaged);
        let path = edit_path(&texts, pick);
        let value = Plain::text(b"spliced".to_vec());
        let edit = SetEdit { path: &path, value: &value, if_version: None, time: 1_800_000_000 };
        if let Ok(Ok(_)) = splice::set(&fixture.store(), &fixture.credential(), &edit) {
            prop_assert!(fixture.store().open(&fixture.credential()).is_ok(), "spliced a file the tree reader refuses");
        }
    }
}

/// A vault with a pending rotation is never spliced: `set` goes through
/// the tree writer, which refuses to change a path whose promotion would
/// undo the change (issue 24).
#[test]
fn a_vault_with_a_pending_rotation_is_never_spliced() {
    let mut texts = indexmap::IndexMap::new();
    texts.insert("A".to_string(), Tree::Leaf("a".to_string()));
    texts.insert("B".to_string(), Tree::Leaf("b".to_string()));
    let fixture = Fixture::rotating(&Tree::Map(texts), &[], true);
    for path in ["A", "B"] {
        let path = KeyPath::parse(path).unwrap();
        let value = Plain::text(b"spliced".to_vec());
        let edit = SetEdit {
            path: &path,
            value: &value,
            if_version: None,
            time: 1_800_000_000,
        };
        assert!(matches!(
            splice::set(&fixture.store(), &fixture.credential(), &edit),
            Ok(Err(_))
        ));
    }
}

fn sample() -> (Fixture, Wanted) {
    let texts: Tree<String> =
        serde_yaml::from_str::<serde_yaml::Value>("A: {B: x, C: [y, z]}\nD: w\n")
            .map(|doc| runvault::vault::testing::format::raw_from_general(&doc, 0).unwrap())
            .unwrap();
    let fixture = Fixture::new(&texts, &[(KeyPath::parse("D").unwrap(), "w2".into())]);
    let wanted = Wanted {
        values: vec![KeyPath::parse("A.B").unwrap(), KeyPath::parse("D").unwrap()],
        subtrees: vec![KeyPath::parse("A.C").unwrap()],
    };
    (fixture, wanted)
}

const SAMPLE: [&str; 3] = [
    "A.B=Str:[120]",
    "D=Str:[119, 50]",
    "A.C/ A.C[0]=Str:[121] A.C[1]=Str:[122]",
];

#[test]
fn a_reformatted_file_falls_back_and_reads_the_same() {
    let (fixture, wanted) = sample();
    // Reformatted by a YAML tool: still a valid vault, no longer canonical.
    let doc: serde_yaml::Value = serde_yaml::from_slice(&fixture.bytes).unwrap();
    fixture.write(serde_yaml::to_string(&doc).unwrap().as_bytes());
    assert!(matches!(
        stream::read(&fixture.store(), &fixture.credential(), &wanted),
        Ok(Outcome::Fallback(_))
    ));
    let selected = read::read_selected(&fixture.store(), &fixture.credential(), &wanted).unwrap();
    assert_eq!(fingerprint(&selected, &wanted), SAMPLE);
}

#[test]
fn sections_out_of_order_fall_back_after_the_slot_is_opened() {
    let (fixture, wanted) = sample();
    let text = String::from_utf8(fixture.bytes.clone()).unwrap();
    let (head, history) = text.split_at(text.find("\nhistory:").unwrap() + 1);
    let (header, secrets) = head.split_at(head.find("\nsecrets:").unwrap() + 1);
    fixture.write(format!("{header}{history}{secrets}").as_bytes());
    match stream::read(&fixture.store(), &fixture.credential(), &wanted) {
        Ok(Outcome::Fallback(Some(_))) => {}
        _ => panic!("the streaming reader must hand over the opened slot"),
    }
    let selected = read::read_selected(&fixture.store(), &fixture.credential(), &wanted).unwrap();
    assert_eq!(fingerprint(&selected, &wanted), SAMPLE);
}

#[test]
fn a_canonical_file_is_read_by_the_streaming_reader() {
    let (fixture, wanted) = sample();
    match stream::read(&fixture.store(), &fixture.credential(), &wanted) {
        Ok(Outcome::Read(selected)) => assert_eq!(fingerprint(&selected, &wanted), SAMPLE),
        _ => panic!("a canonical file must stream"),
    }
    assert!(Path::new(&fixture.dir.path().join("vault.yml")).exists());
}

/// A vault large enough for the MAC to be hashed on a second thread.
#[test]
fn a_large_vault_streams_with_the_parallel_mac_and_its_damage_is_caught() {
    let services: Tree<String> = Tree::Map(
        (0..3000)
            .map(|i| {
                let fields = [
                    ("USERNAME", format!("user_{i}")),
                    ("PASSWORD", format!("pw-{i}")),
                ];
                let service = fields
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), Tree::Leaf(value)))
                    .collect();
                (format!("SERVICE_{i}"), Tree::Map(service))
            })
            .collect(),
    );
    let fixture = Fixture::new(&services, &[]);
    assert!(fixture.bytes.len() > 512 * 1024, "{}", fixture.bytes.len());
    let wanted = Wanted {
        values: vec![KeyPath::parse("SERVICE_2999.PASSWORD").unwrap()],
        subtrees: vec![KeyPath::parse("SERVICE_1500").unwrap()],
    };
    let expected = [
        "SERVICE_2999.PASSWORD=Str:[112, 119, 45, 50, 57, 57, 57]",
        "SERVICE_1500/ SERVICE_1500.USERNAME=Str:[117, 115, 101, 114, 95, 49, 53, 48, 48] \
         SERVICE_1500.PASSWORD=Str:[112, 119, 45, 49, 53, 48, 48]",
    ];
    match stream::read(&fixture.store(), &fixture.credential(), &wanted) {
        Ok(Outcome::Read(selected)) => assert_eq!(fingerprint(&selected, &wanted), expected),
        _ => panic!("a canonical file must stream"),
    }
    // One character of one sealed value in the middle changes: the MAC fails.
    let mut damaged = fixture.bytes.clone();
    let middle = damaged.len() / 2;
    let at = middle
        + damaged[middle..]
            .windows(4)
            .position(|w| w == b"rv1:")
            .unwrap()
        + 20;
    damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
    fixture.write(&damaged);
    assert!(matches!(
        stream::read(&fixture.store(), &fixture.credential(), &wanted),
        Ok(Outcome::Fallback(Some(_)))
    ));
    let err = read::read_selected(&fixture.store(), &fixture.credential(), &wanted)
        .err()
        .expect("a damaged vault must not be read");
    assert_eq!(err.exit_code(), 5, "{err}");
    assert!(err.to_string().contains("failed authentication"), "{err}");
}

/// `vault.yml` with every random part blanked: sealed payloads (fresh
/// nonces), wrapped keys, the sealed audit key and the MAC.
fn without_random_parts(bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("wrapped:")
                || line.starts_with("audit_key:")
                || line.starts_with("mac:"))
        })
        .map(|line| match line.find("rv1:") {
            Some(at) => {
                let fields: Vec<&str> = line[at..].splitn(4, ':').collect();
                format!("{}{}:{}:{}:", &line[..at], fields[0], fields[1], fields[2])
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every value and stored version of an opened vault, decrypted, with its
/// version and time (as text: `Plain` has no `Debug`).
fn contents(vault: &UnlockedVault) -> Vec<String> {
    let mut out = Vec::new();
    for path in vault.secrets().leaf_paths() {
        let value = vault.get(&path).unwrap();
        out.push(format!("{path}={:?}", value.bytes.expose()));
        if let Ok(pending) = vault.get_pending(&path) {
            out.push(format!("{path} pending={:?}", pending.bytes.expose()));
        }
        for version in vault.history(&path).unwrap() {
            out.push(format!(
                "{path}@{}:{}:{}",
                version.version, version.time, version.deleted
            ));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// `export` (streaming on a canonical file) renders exactly what the
    /// tree renders, in every format and for every prefix, or fails the
    /// same way.
    #[test]
    fn streaming_export_renders_what_the_tree_renders(
        texts in tree(),
        update_picks in proptest::collection::vec(any::<usize>(), 0..3),
        pick in any::<usize>(),
    ) {
        let fixture = Fixture::new(&texts, &updates_from(&texts, &update_picks));
        let (opened, _) = fixture.store().open(&fixture.credential()).unwrap();
        let paths = all_paths(&texts);
        let prefix = match pick % (paths.len() + 2) {
            0 => KeyPath::root(),
            1 => KeyPath::parse("NOT.THERE").unwrap(),
            n => paths[n - 2].clone(),
        };
        for format in [export::Format::Yaml, export::Format::Json, export::Format::Env] {
            let render = |result: Result<SecretBytes, VaultError>| {
                result.map(|bytes| bytes.expose().to_vec()).map_err(|err| err.to_string())
            };
            let streamed = render(export::export(&fixture.store(), &fixture.credential(), &prefix, format));
            let by_tree = render(export::render_vault(&opened, &prefix, format));
            prop_assert_eq!(streamed, by_tree, "{:?} of {}", format, prefix);
        }
    }

    /// Damaged files: `export` gives the tree reader's verdict.
    #[test]
    fn damaged_files_are_exported_as_the_tree_reader_decides(
        texts in tree(),
        mutations in proptest::collection::vec(mutation(), 1..3),
    ) {
        let fixture = Fixture::new(&texts, &[]);
        let damaged = mutations.iter().fold(fixture.bytes.clone(), |bytes, m| {
            if bytes.is_empty() { bytes } else { mutate(&bytes, m) }
        });
        fixture.write(&damaged);
        let root = KeyPath::root();
        let by_tree = fixture
            .store()
            .open(&fixture.credential())
            .and_then(|(vault, _)| export::render_vault(&vault, &root, export::Format::Yaml))
            .map(|bytes| bytes.expose().to_vec())
            .map_err(|err| err.to_string());
        let streamed = export::export(&fixture.store(), &fixture.credential(), &root, export::Format::Yaml)
            .map(|bytes| bytes.expose().to_vec())
            .map_err(|err| err.to_string());
        prop_assert_eq!(streamed, by_tree);
    }

    /// The streaming `rekey` writes the file the tree writer writes (but
    /// for nonces, wrapped keys and the MAC), and it opens under the new
    /// key with every value and stored version as before.
    #[test]
    fn streaming_rekey_writes_what_the_tree_writer_writes(
        texts in tree(),
        update_picks in proptest::collection::vec(any::<usize>(), 0..6),
        removal_picks in proptest::collection::vec(any::<usize>(), 0..2),
        keep in 1u32..4,
        rotating in any::<bool>(),
    ) {
        let removals: Vec<KeyPath> = removal_picks.iter().map(|&p| edit_path(&texts, p)).collect();
        let fixture = Fixture::with(&texts, &updates_from(&texts, &update_picks), &removals, keep, rotating);
        let credentials = [fixture.credential()];
        let plan = RekeyPlan {
            credentials: &credentials,
            new_salt: None,
            kdf: KdfOverride::default(),
            drop_others: false,
            keep: None,
            unlocked_by: None,
            progress: &NoProgress,
        };
        let (before, salt) = fixture.store().open(&fixture.credential()).unwrap();
        let (by_tree, tree_report) = before
            .rekey(&salt, &RekeyPlan { unlocked_by: Some(0), ..plan })
            .unwrap();
        let by_tree = by_tree.seal().to_canonical();
        let Ok(Ok(streamed)) = rekey::rekey(&fixture.store(), &plan) else {
            panic!("a canonical file must be rekeyed in one streaming pass");
        };
        prop_assert_eq!(&streamed.report, &tree_report);
        prop_assert_eq!(without_random_parts(&streamed.bytes), without_random_parts(&by_tree));
        let (parsed, reader) = EncryptedVault::parse(&streamed.bytes).unwrap();
        prop_assert_eq!(reader, Reader::Fast);
        prop_assert!(parsed.to_canonical() == streamed.bytes, "not canonical");
        fixture.write(&streamed.bytes);
        let (after, _) = fixture.store().open(&fixture.credential()).unwrap();
        prop_assert_eq!(contents(&after), contents(&before));
        prop_assert_eq!(streamed.generations, (before.header().generation, after.header().generation));
    }
}
