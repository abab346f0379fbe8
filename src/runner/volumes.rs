//! The `volumes` of one `[runners.docker]`: Docker `-v` strings, which of
//! them mount the secrets directory, and the edit `configure` makes: the
//! secrets directory mounted whole and read-only at `/secrets` (any other
//! mount of it, or of a file in it, replaced or removed), plus the manual
//! procedure's `/app:/local_config:rw` and `/agent_cache:/agent_cache:rw`,
//! every other volume kept.

use std::path::Path;

use toml_edit::{Array, Value};

use crate::runner::config::{Change, Settings};

/// Where jobs expect the secrets directory inside their containers
/// (`DATAOPS_SECRETS_DIR` defaults to it).
pub const SECRETS_TARGET: &str = "/secrets";
/// The manual procedure's local configuration mount.
pub const LOCAL_CONFIG_VOLUME: &str = "/app:/local_config:rw";
/// The manual procedure's pipeline cache mount.
pub const AGENT_CACHE_VOLUME: &str = "/agent_cache:/agent_cache:rw";

/// The volume string of the read-only secrets directory mount.
pub fn secrets_volume(secrets_dir: &Path) -> String {
    format!("{}:{SECRETS_TARGET}:ro", secrets_dir.display())
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

/// Whether a volume mounts the secrets directory or something in it, at
/// `/secrets` or from the host's secrets directory.
fn is_secrets_mount(volume: &Volume<'_>, secrets_dir: &str) -> bool {
    within(volume.target, SECRETS_TARGET) || volume.source.is_some_and(|s| within(s, secrets_dir))
}

/// Whether a volume is exactly the wanted read-only directory mount.
fn is_wanted_secrets_mount(volume: &Volume<'_>, secrets_dir: &str) -> bool {
    volume.source.map(|s| s.trim_end_matches('/')) == Some(secrets_dir.trim_end_matches('/'))
        && volume.target.trim_end_matches('/') == SECRETS_TARGET
        && volume.is_read_only()
}

/// Whether a runner's volumes mount the secrets directory exactly once, as
/// the wanted read-only directory mount.
pub fn has_only_wanted_secrets_mount(volumes: &[String], secrets_dir: &Path) -> bool {
    let dir = secrets_dir.to_string_lossy();
    let mounts: Vec<Volume<'_>> = volumes
        .iter()
        .map(|v| Volume::parse(v))
        .filter(|v| is_secrets_mount(v, &dir))
        .collect();
    matches!(mounts.as_slice(), [only] if is_wanted_secrets_mount(only, &dir))
}

/// Ensures the wanted volumes in one `volumes` array (see the module doc), recording
/// each change for runner `label`.
pub fn edit_volumes(
    volumes: &mut Array,
    label: &str,
    settings: &Settings,
    changes: &mut Vec<Change>,
) {
    let dir = settings.secrets_dir.to_string_lossy().into_owned();
    let wanted = settings.secrets_volume();
    let strings: Vec<Option<String>> = volumes
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect();
    let parsed: Vec<Option<Volume<'_>>> = strings
        .iter()
        .map(|s| s.as_deref().map(Volume::parse))
        .collect();
    let has_target = |target: &str| {
        parsed
            .iter()
            .flatten()
            .any(|v| v.target.trim_end_matches('/') == target)
    };
    let secrets: Vec<usize> = parsed
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_some_and(|v| is_secrets_mount(&v, &dir)))
        .map(|(i, _)| i)
        .collect();

    let mut additions = Vec::new();
    if settings.local_config && !has_target("/local_config") {
        additions.push(LOCAL_CONFIG_VOLUME.to_string());
    }
    if settings.agent_cache && !has_target("/agent_cache") {
        additions.push(AGENT_CACHE_VOLUME.to_string());
    }
    match secrets.split_first() {
        None => additions.push(wanted),
        Some((&first, rest)) => {
            let first_volume = parsed[first].filter(|v| is_wanted_secrets_mount(v, &dir));
            if first_volume.is_none() {
                let old = strings[first].clone().unwrap_or_default();
                volumes.replace(first, wanted.as_str());
                changes.push(Change::ReplacedVolume {
                    runner: label.to_string(),
                    old,
                    new: wanted.clone(),
                });
            }
            // Later duplicates go, last first so earlier indices stay valid.
            for &index in rest.iter().rev() {
                volumes.remove(index);
            }
            for &index in rest {
                changes.push(Change::RemovedVolume {
                    runner: label.to_string(),
                    volume: strings[index].clone().unwrap_or_default(),
                });
            }
        }
    }
    for volume in additions {
        push_like_last(volumes, &volume);
        changes.push(Change::AddedVolume {
            runner: label.to_string(),
            volume,
        });
    }
}

/// Appends a string to an array, one per line if the array is written so.
fn push_like_last(array: &mut Array, text: &str) {
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

    #[test]
    fn volume_parsing() {
        let v = Volume::parse("/a:/b:ro,z");
        assert_eq!((v.source, v.target), (Some("/a"), "/b"));
        assert!(v.is_read_only());
        assert_eq!(Volume::parse("/cache").source, None);
        assert!(within("/secrets/vault.yml", "/secrets"));
        assert!(!within("/secretsx", "/secrets"));
    }

    #[test]
    fn only_the_exact_read_only_directory_mount_counts() {
        let dir = Path::new("/secrets");
        let check = |v: &[&str]| {
            let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            has_only_wanted_secrets_mount(&v, dir)
        };
        assert!(check(&["/cache", "/secrets:/secrets:ro"]));
        assert!(check(&["/secrets/:/secrets:ro,z"]));
        assert!(!check(&["/secrets:/secrets:rw"]));
        assert!(!check(&["/secrets:/secrets"]));
        assert!(!check(&[
            "/secrets:/secrets:ro",
            "/secrets/vault.yml:/x:ro"
        ]));
        assert!(!check(&["/cache"]));
    }
}
