//! The `volumes` of one `[runners.docker]`: Docker `-v` strings, which of
//! them mount the directories jobs need, and the array edits (replace in
//! place, append like the last item) that `configure` makes with them.
//!
//! Below [`config`](crate::runner::config), which owns the document, the
//! settings and the list of changes, and decides each runner's edit from
//! these pieces; this module uses nothing of it.
//!
//! Jobs need three directories, each mounted **whole and read-only** (a
//! [`DirMount`]): the secrets directory at `/secrets`, the machine key's
//! directory and the directory of the static runvault binary, both at their
//! host paths. A single-file bind mount pins the file's inode, so a file
//! replaced by rename (every vault write) would never be seen in the job;
//! runvault therefore never writes one and replaces any it finds. Any other
//! mount of those directories (writable, duplicated, elsewhere) is replaced
//! or removed too. The manual procedure's `/app:/local_config:rw` and
//! `/agent_cache:/agent_cache:rw` are added; every other volume is kept.

use toml_edit::{Array, Value};

use crate::core::layout::SECRETS_TARGET;

/// The manual procedure's local configuration mount.
pub const LOCAL_CONFIG_VOLUME: &str = "/app:/local_config:rw";
/// The manual procedure's pipeline cache mount.
pub const AGENT_CACHE_VOLUME: &str = "/agent_cache:/agent_cache:rw";

/// A host directory jobs get whole and read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMount {
    /// What it is, for messages ("the secrets directory").
    pub what: &'static str,
    /// The host directory (absolute, without a trailing `/`).
    pub source: String,
    /// Where jobs see it.
    pub target: String,
    /// Where an earlier wiring had jobs see it (the key and binary
    /// directories are seen at their host paths, which move with them): a
    /// whole mount at exactly one of these container paths is this
    /// directory's too, so `configure` replaces it instead of adding a
    /// second mount.
    pub earlier: Vec<String>,
}

impl DirMount {
    /// The secrets directory, seen by jobs at `/secrets`.
    pub fn secrets(dir: &std::path::Path) -> DirMount {
        DirMount::new("the secrets directory", dir, SECRETS_TARGET)
    }

    /// A plaintext view, seen by jobs at `/secrets` in place of the vault.
    pub fn view(dir: &std::path::Path) -> DirMount {
        DirMount::new("the plaintext view", dir, SECRETS_TARGET)
    }

    /// A directory seen by jobs at its host path.
    pub fn same_path(what: &'static str, dir: &std::path::Path) -> DirMount {
        let text = dir.to_string_lossy();
        DirMount::new(what, dir, &text)
    }

    fn new(what: &'static str, source: &std::path::Path, target: &str) -> DirMount {
        DirMount {
            what,
            source: normal_path(&source.to_string_lossy()),
            target: normal_path(target),
            earlier: Vec::new(),
        }
    }

    /// This mount, also recognising a whole mount at the container path
    /// `target` (where an earlier wiring put it) as its own.
    #[must_use]
    pub fn also_at(mut self, target: &str) -> DirMount {
        let target = normal_path(target);
        if target != self.target && !self.earlier.contains(&target) {
            self.earlier.push(target);
        }
        self
    }

    /// The volume string: `SOURCE:TARGET:ro`.
    pub fn volume(&self) -> String {
        format!("{}:{}:ro", self.source, self.target)
    }

    /// Whether the volume string mounts this directory, a part of it, or
    /// something at or under its target: what `configure` replaces.
    pub fn is_touched_by(&self, volume: &str) -> bool {
        self.touches(&Volume::parse(volume))
    }

    /// Whether a volume mounts this directory, a part of it, or something
    /// at or under its target.
    fn touches(&self, volume: &Volume<'_>) -> bool {
        within(volume.target, &self.target)
            || volume.source.is_some_and(|s| within(s, &self.source))
            || self.earlier.contains(&normal_path(volume.target))
    }

    /// Whether `volume`, which `configure` replaces with this mount, is a
    /// whole read-only mount of another directory at this mount's
    /// container path (or an earlier one): the directory moved, rather
    /// than being mounted wrongly.
    pub fn moved_from(&self, volume: &str) -> bool {
        let volume = Volume::parse(volume);
        let target = normal_path(volume.target);
        volume.is_read_only()
            && volume.source.is_some_and(|s| normal_path(s) != self.source)
            && (target == self.target || self.earlier.contains(&target))
            && !self.is_part(&volume)
    }

    /// Whether a volume mounts the whole directory at its target.
    fn is_whole(&self, volume: &Volume<'_>) -> bool {
        volume.source.map(|s| s.trim_end_matches('/')) == Some(self.source.as_str())
            && volume.target.trim_end_matches('/') == self.target
    }

    /// Whether a volume is exactly the wanted read-only directory mount.
    fn is_wanted(&self, volume: &Volume<'_>) -> bool {
        self.is_whole(volume) && volume.is_read_only()
    }

    /// Whether a volume mounts only a file or subdirectory of it.
    fn is_part(&self, volume: &Volume<'_>) -> bool {
        let strictly_within = |path: &str, dir: &str| within(path, dir) && !within(dir, path);
        strictly_within(volume.target, &self.target)
            || volume
                .source
                .is_some_and(|s| strictly_within(s, &self.source))
    }
}

/// A path without a trailing `/` (but `/` itself).
fn normal_path(path: &str) -> String {
    match path.trim_end_matches('/') {
        "" => "/".to_string(),
        trimmed => trimmed.to_string(),
    }
}

/// Refuses directory mounts that overlap (one inside another, by host path
/// or by target): a volume must belong to at most one of them.
pub fn check_disjoint(mounts: &[DirMount]) -> Result<(), String> {
    for (index, a) in mounts.iter().enumerate() {
        for b in &mounts[index + 1..] {
            let overlap = |x: &str, y: &str| within(x, y) || within(y, x);
            if overlap(&a.source, &b.source) || overlap(&a.target, &b.target) {
                return Err(format!(
                    "{} `{}` and {} `{}` overlap; each is mounted into jobs on its own, \
                     so keep them apart (e.g. /secrets, /etc/runvault, /opt/runvault/bin)",
                    a.what, a.source, b.what, b.source
                ));
            }
        }
    }
    Ok(())
}

/// What is wrong with how a runner's volumes mount one [`DirMount`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountProblem {
    /// Not mounted whole at all.
    Missing,
    /// Mounted whole, but writable (this volume).
    Writable(String),
    /// A single file (or subdirectory) of it is mounted on its own.
    SingleFile(String),
    /// Mounted again, or at another place.
    Misplaced(String),
}

/// Everything wrong with how `volumes` mount `mount`; empty when it is
/// mounted exactly once, whole and read-only.
pub fn mount_problems(volumes: &[String], mount: &DirMount) -> Vec<MountProblem> {
    let mut problems = Vec::new();
    let mut wanted_seen = false;
    let mut writable_seen = false;
    for text in volumes {
        let volume = Volume::parse(text);
        if !mount.touches(&volume) {
            continue;
        }
        if mount.is_wanted(&volume) && !wanted_seen {
            wanted_seen = true;
        } else if mount.is_part(&volume) {
            problems.push(MountProblem::SingleFile(text.clone()));
        } else if mount.is_whole(&volume) && !volume.is_read_only() {
            writable_seen = true;
            problems.push(MountProblem::Writable(text.clone()));
        } else {
            problems.push(MountProblem::Misplaced(text.clone()));
        }
    }
    if !wanted_seen && !writable_seen {
        problems.insert(0, MountProblem::Missing);
    }
    problems
}

/// A parsed Docker `-v` volume string: `[SOURCE:]TARGET[:OPTIONS]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Volume<'a> {
    source: Option<&'a str>,
    target: &'a str,
    options: Option<&'a str>,
}

impl<'a> Volume<'a> {
    fn parse(text: &'a str) -> Volume<'a> {
        let mut parts = text.splitn(3, ':');
        let first = parts.next().unwrap_or_default();
        match (parts.next(), parts.next()) {
            (None, _) => Volume {
                source: None,
                target: first,
                options: None,
            },
            (Some(target), options) => Volume {
                source: Some(first),
                target,
                options,
            },
        }
    }

    fn is_read_only(&self) -> bool {
        self.options
            .is_some_and(|options| options.split(',').any(|o| o == "ro"))
    }
}

/// The directory a volume string mounts read-only at its own host path
/// (`D:D:ro`), if it is one.
pub fn same_path_read_only(volume: &str) -> Option<String> {
    let volume = Volume::parse(volume);
    let source = normal_path(volume.source?);
    (volume.is_read_only() && source.starts_with('/') && source == normal_path(volume.target))
        .then_some(source)
}

/// Where a volume string mounts, without a trailing `/`.
pub fn target_of(volume: &str) -> &str {
    Volume::parse(volume).target.trim_end_matches('/')
}

/// Whether `path` is `dir` or inside it (plain string comparison on
/// normalised `/`-separated paths, as Docker compares bind sources).
fn within(path: &str, dir: &str) -> bool {
    let path = path.trim_end_matches('/');
    let dir = dir.trim_end_matches('/');
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// What [`ensure_once`] did with the first matching item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum First {
    /// There was none; the caller adds the wanted string.
    Added,
    /// It was the wanted string already.
    Kept,
    /// It was this string, now replaced in place by the wanted one.
    Replaced(String),
}

/// What [`ensure_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The first matching item.
    pub first: First,
    /// Later matching items, removed.
    pub removed: Vec<String>,
}

impl Ensured {
    /// Records the replacement (if any) and the removals as changes, made
    /// by `replaced(old)` and `removed(item)`; returns whether nothing
    /// matched, so the caller must add the wanted string.
    pub fn report<C>(
        self,
        replaced: impl FnOnce(String) -> C,
        removed: impl Fn(String) -> C,
        changes: &mut Vec<C>,
    ) -> bool {
        let added = self.first == First::Added;
        if let First::Replaced(old) = self.first {
            changes.push(replaced(old));
        }
        changes.extend(self.removed.into_iter().map(removed));
        added
    }
}

/// Makes `wanted` the only string item of `array` that `matches`: the
/// first match is replaced by it in place (keeping its formatting), later
/// ones are removed. When nothing matches, nothing is changed and the
/// caller decides where `wanted` goes.
pub fn ensure_once(array: &mut Array, wanted: &str, matches: impl Fn(&str) -> bool) -> Ensured {
    let matching: Vec<(usize, String)> = array
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_str().map(|s| (i, s.to_string())))
        .filter(|(_, s)| matches(s))
        .collect();
    let Some(((first, old), rest)) = matching.split_first() else {
        return Ensured {
            first: First::Added,
            removed: Vec::new(),
        };
    };
    let first = if old == wanted {
        First::Kept
    } else {
        array.replace(*first, wanted);
        First::Replaced(old.clone())
    };
    // Last first, so earlier indices stay valid.
    for (index, _) in rest.iter().rev() {
        array.remove(*index);
    }
    Ensured {
        first,
        removed: rest.iter().map(|(_, s)| s.clone()).collect(),
    }
}

/// Appends a string to an array, one per line if the array is written so.
pub fn push_like_last(array: &mut Array, text: &str) {
    let multi_line = array.iter().last().and_then(|last| {
        let prefix = last.decor().prefix()?.as_str()?;
        prefix.contains('\n').then(|| prefix.to_string())
    });
    match multi_line {
        Some(prefix) => {
            let suffix = array
                .iter()
                .last()
                .and_then(|last| last.decor().suffix()?.as_str().map(str::to_string))
                .unwrap_or_default();
            let mut value = Value::from(text);
            value.decor_mut().set_prefix(prefix);
            value.decor_mut().set_suffix(suffix);
            array.push_formatted(value);
        }
        None => array.push(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn volume_parsing() {
        let v = Volume::parse("/a:/b:ro,z");
        assert_eq!((v.source, v.target), (Some("/a"), "/b"));
        assert!(v.is_read_only());
        assert_eq!(Volume::parse("/cache").source, None);
        assert!(within("/secrets/vault.yml", "/secrets"));
        assert!(!within("/secretsx", "/secrets"));
    }

    fn problems(mount: &DirMount, volumes: &[&str]) -> Vec<MountProblem> {
        let volumes: Vec<String> = volumes
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        mount_problems(&volumes, mount)
    }

    #[test]
    fn only_the_exact_read_only_directory_mount_counts() {
        let secrets = DirMount::secrets(Path::new("/secrets"));
        assert_eq!(problems(&secrets, &["/cache", "/secrets:/secrets:ro"]), []);
        assert_eq!(problems(&secrets, &["/secrets/:/secrets:ro,z"]), []);
        assert_eq!(
            problems(&secrets, &["/secrets:/secrets:rw"]),
            [MountProblem::Writable("/secrets:/secrets:rw".into())]
        );
        assert_eq!(
            problems(&secrets, &["/secrets:/secrets"]),
            [MountProblem::Writable("/secrets:/secrets".into())]
        );
        assert_eq!(
            problems(
                &secrets,
                &["/secrets:/secrets:ro", "/secrets/vault.yml:/x:ro"]
            ),
            [MountProblem::SingleFile("/secrets/vault.yml:/x:ro".into())]
        );
        assert_eq!(
            problems(&secrets, &["/secrets/vault.yml:/secrets/vault.yml:ro"]),
            [
                MountProblem::Missing,
                MountProblem::SingleFile("/secrets/vault.yml:/secrets/vault.yml:ro".into())
            ]
        );
        assert_eq!(
            problems(
                &secrets,
                &["/secrets:/secrets:ro", "/secrets:/elsewhere:ro"]
            ),
            [MountProblem::Misplaced("/secrets:/elsewhere:ro".into())]
        );
        assert_eq!(problems(&secrets, &["/cache"]), [MountProblem::Missing]);
        let keys = DirMount::same_path("the key directory", Path::new("/etc/runvault/"));
        assert_eq!(keys.volume(), "/etc/runvault:/etc/runvault:ro");
        assert_eq!(problems(&keys, &["/etc/runvault:/etc/runvault:ro"]), []);
        assert_eq!(
            problems(
                &keys,
                &["/etc/runvault/vault.key:/etc/runvault/vault.key:ro"]
            )[1],
            MountProblem::SingleFile("/etc/runvault/vault.key:/etc/runvault/vault.key:ro".into())
        );
    }

    #[test]
    fn an_earlier_container_path_is_recognised_exactly() {
        let keys = DirMount::same_path("the key directory", Path::new("/etc/runvault"))
            .also_at("/etc/rv/");
        assert!(keys.is_touched_by("/etc/rv:/etc/rv:ro"));
        assert!(keys.moved_from("/etc/rv:/etc/rv:ro"));
        // Only that container path: other mounts near it are someone else's.
        assert!(!keys.is_touched_by("/etc/rv/sub:/etc/rv/sub:ro"));
        assert!(!keys.is_touched_by("/etc:/etc:ro"));
        // Writable, or a file of the directory: mounted wrongly, not moved.
        assert!(!keys.moved_from("/etc/runvault:/etc/runvault:rw"));
        assert!(!keys.moved_from("/etc/runvault/vault.key:/etc/runvault:ro"));
        assert_eq!(
            same_path_read_only("/opt/rv/:/opt/rv:ro,z"),
            Some("/opt/rv".into())
        );
        assert_eq!(same_path_read_only("/opt/rv:/opt/rv:rw"), None);
        assert_eq!(same_path_read_only("/opt/rv:/x:ro"), None);
    }

    #[test]
    fn overlapping_mounts_are_refused() {
        let secrets = DirMount::secrets(Path::new("/secrets"));
        let keys = DirMount::same_path("the key directory", Path::new("/etc/runvault"));
        let bin = DirMount::same_path("the binary directory", Path::new("/opt/runvault/bin"));
        assert!(check_disjoint(&[secrets.clone(), keys.clone(), bin]).is_ok());
        let inside = DirMount::same_path("the key directory", Path::new("/secrets/keys"));
        let err = check_disjoint(&[secrets.clone(), inside]).unwrap_err();
        assert!(err.starts_with(
            "the secrets directory `/secrets` and the key directory `/secrets/keys` overlap"
        ));
        let same = DirMount::same_path("the binary directory", Path::new("/etc/runvault"));
        assert!(check_disjoint(&[keys, same]).is_err());
    }
}
