//! The version policy (as in HashiCorp Vault's KV v2): every change of a
//! path adds one to its version; a replaced or removed value moves to the
//! history, oldest first, at most `keep` versions per path counting the
//! current one. The tree writer ([`UnlockedVault`]) and the streaming
//! writer of `set` (`stream::splice`) both apply it through these
//! functions.
//!
//! [`UnlockedVault`]: crate::vault::UnlockedVault

use crate::vault::format::{History, Sealed};
use crate::vault::path::KeyPath;

/// The highest version the path `key` ever had: the larger of its current
/// version `current` (0 without a value) and its newest stored one.
pub(crate) fn last_version(history: &History, key: &str, current: u32) -> u32 {
    let stored = history
        .get(key)
        .and_then(|versions| versions.last())
        .and_then(Sealed::version_and_time)
        .map_or(0, |(version, _)| version);
    stored.max(current)
}

/// Drops the oldest stored versions of the path `key` beyond `keep`, the
/// current value counting towards it when `has_current`; a path left with
/// no stored version leaves the history.
pub(crate) fn prune(history: &mut History, key: &str, keep: u32, has_current: bool) {
    let room = keep.max(1) as usize - usize::from(has_current);
    if let Some(versions) = history.get_mut(key) {
        let excess = versions.len().saturating_sub(room);
        versions.drain(..excess);
        if versions.is_empty() {
            history.shift_remove(key);
        }
    }
}

/// The version a new value at `path` gets, whose current value is
/// `previous`, and the path's text when the history is involved: a path
/// with no value before, in a vault with no history (an import into a new
/// vault), needs neither the text nor a look-up.
pub(crate) fn next_version(
    history: &History,
    path: &KeyPath,
    previous: Option<&Sealed>,
) -> (u32, Option<String>) {
    let current = previous
        .and_then(Sealed::version_and_time)
        .map_or(0, |(version, _)| version);
    let key = (previous.is_some() || !history.is_empty()).then(|| path.to_string());
    let version = key
        .as_deref()
        .map_or(current, |key| last_version(history, key, current))
        .saturating_add(1);
    (version, key)
}

/// Once a new value is in place at the path `key`: the value it replaced
/// becomes a stored version, and the path keeps at most `keep` versions,
/// the new one counting (a path set again after `rm` may already hold
/// `keep`).
pub(crate) fn keep_replaced(
    history: &mut History,
    keep: u32,
    key: Option<&str>,
    previous: Option<Sealed>,
) {
    let Some(key) = key else { return };
    if let Some(previous) = previous {
        history.entry(key.to_string()).or_default().push(previous);
    }
    prune(history, key, keep, true);
}

/// The value `sealed` at the path `key` is removed: it becomes a stored
/// version followed by a removal marker, one version after the newest the
/// path had (`current` is its version now: a list item may have shifted
/// into the index), and the path keeps at most `keep` versions.
pub(crate) fn retire_value(
    history: &mut History,
    keep: u32,
    key: &str,
    sealed: &Sealed,
    current: u32,
    time: u64,
) {
    let has_current = current > 0;
    history
        .entry(key.to_string())
        .or_default()
        .push(sealed.clone());
    prune(history, key, keep, has_current);
    let version = last_version(history, key, current).saturating_add(1);
    history
        .entry(key.to_string())
        .or_default()
        .push(Sealed::tombstone(version, time));
    prune(history, key, keep, has_current);
}
