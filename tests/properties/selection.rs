//! A comparable rendering of what the readers selected (test data only,
//! never real secrets), shared by `tests/properties/stream_reader.rs` and
//! the fuzz target `vault_reader_differential` (tests/fuzz), so both
//! compare the streaming and tree readers the same way.

use runvault::core::exit::ExitStatus;
use runvault::vault::testing::path::Segment;
use runvault::vault::testing::read::{Lookup, Selected, Wanted};
use runvault::vault::testing::tree::Tree;
use runvault::vault::testing::value::Plain;
use runvault::vault::{KeyPath, VaultError};

/// A comparable rendering of a selection (test data only, never secrets).
pub fn fingerprint(selected: &Selected, wanted: &Wanted) -> Vec<String> {
    let plain = |plain: &Plain| format!("{:?}:{:?}", plain.kind, plain.bytes.expose());
    let mut out = Vec::new();
    for path in &wanted.values {
        out.push(match selected.value(path) {
            Lookup::Value(value) => format!("{path}={}", plain(value)),
            Lookup::Container(kind) => format!("{path} is a {kind}"),
            Lookup::Missing => format!("{path} missing"),
        });
    }
    for prefix in &wanted.subtrees {
        out.push(match selected.subtrees.get(prefix) {
            Some(Some(leaves)) => format!(
                "{prefix}/ {}",
                leaves
                    .iter()
                    .map(|(path, value)| format!("{path}={}", plain(value)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Some(None) => format!("{prefix}/ missing"),
            None => format!("{prefix}/ not asked"),
        });
    }
    out
}

/// The selection's fingerprint, or the error with its exit code.
pub fn verdict(
    result: Result<Selected, VaultError>,
    wanted: &Wanted,
) -> Result<Vec<String>, String> {
    result
        .map(|selected| fingerprint(&selected, wanted))
        .map_err(|err| format!("exit {}: {err}", err.exit_code()))
}

/// Every path in the tree (values and containers), in file order.
pub fn all_paths<L>(tree: &Tree<L>) -> Vec<KeyPath> {
    fn walk<L>(node: &Tree<L>, path: &mut KeyPath, out: &mut Vec<KeyPath>) {
        if !path.is_root() {
            out.push(path.clone());
        }
        match node {
            Tree::Leaf(_) => {}
            Tree::Map(map) => {
                for (key, child) in map {
                    path.push(Segment::Key(key.clone()));
                    walk(child, path, out);
                    path.pop();
                }
            }
            Tree::List(list) => {
                for (index, child) in list.iter().enumerate() {
                    path.push(Segment::Index(index));
                    walk(child, path, out);
                    path.pop();
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut KeyPath::root(), &mut out);
    out
}
