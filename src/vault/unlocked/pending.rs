//! Pending versions and the rotation policy of an opened vault (`rotate`,
//! docs/rotation.md): a new value staged at a path without becoming its
//! value, then promoted (one `set`) or dropped; alternating users swapped
//! in one change; the maximum age of a path's value.
//!
//! A pending value is sealed at its own path as the version that path
//! would take next, so it is bound to the path and the vault as any
//! value is; it lives in the header (`pending`), which the MAC covers.

use crate::vault::audit::AuditChange;
use crate::vault::crypto::KeyedMac;
use crate::vault::error::VaultError;
use crate::vault::format::{EncryptedVault, Sealed};
use crate::vault::keys::seal::value_hmac_bytes;
use crate::vault::keys::versions::next_version;
use crate::vault::path::KeyPath;
use crate::vault::tree::Tree;
use crate::vault::unlocked::{UnlockedVault, now};
use crate::vault::value::Plain;

/// The two accounts of an alternating-users credential, relative to its path.
pub const ALTERNATE_FIELDS: [&str; 4] = [
    "USERNAME",
    "PASSWORD",
    "ALTERNATE.USERNAME",
    "ALTERNATE.PASSWORD",
];

impl UnlockedVault {
    /// The version and time of the pending value of `path`, if any.
    pub fn pending(&self, path: &KeyPath) -> Option<(u32, u64)> {
        self.vault
            .header
            .rotation
            .pending
            .get(&path.to_string())
            .and_then(Sealed::version_and_time)
    }

    /// Every path with a pending value, in the order they were staged.
    pub fn pending_paths(&self) -> Vec<String> {
        self.vault.header.rotation.pending.keys().cloned().collect()
    }

    /// Stages `value` as the pending version of `path` (which must hold a
    /// value, and no pending one yet); returns the version it will take.
    pub fn stage(&mut self, path: &KeyPath, value: &Plain) -> Result<u32, VaultError> {
        let previous = match self.vault.secrets.get(path) {
            Some(Tree::Leaf(sealed)) => sealed.clone(),
            Some(node) => {
                return Err(VaultError::NotAValue {
                    key: path.to_string(),
                    kind: node.kind_name(),
                    dir: self.dir(),
                });
            }
            None => {
                return Err(VaultError::NotFound {
                    key: path.to_string(),
                });
            }
        };
        if let Some((version, _)) = self.pending(path) {
            return Err(VaultError::Pending {
                key: path.to_string(),
                version,
            });
        }
        let (version, _) = next_version(&self.vault.history, path, Some(&previous));
        let sealed = self.seal_value(path, value, version, now());
        self.vault
            .header
            .rotation
            .pending
            .insert(path.to_string(), sealed);
        Ok(version)
    }

    /// Refuses a change to `path` or anything under it while a value there
    /// is pending: its promotion would silently replace the change.
    pub fn refuse_pending_under(&self, path: &KeyPath) -> Result<(), VaultError> {
        for (key, sealed) in &self.vault.header.rotation.pending {
            if KeyPath::parse(key).is_ok_and(|pending| pending.starts_with(path)) {
                return Err(VaultError::Pending {
                    key: key.clone(),
                    version: sealed.version_and_time().map_or(0, |(v, _)| v),
                });
            }
        }
        Ok(())
    }

    /// Decrypts the pending value of `path`.
    pub fn get_pending(&self, path: &KeyPath) -> Result<Plain, VaultError> {
        let sealed = self
            .vault
            .header
            .rotation
            .pending
            .get(&path.to_string())
            .ok_or_else(|| VaultError::NoPending {
                key: path.to_string(),
            })?;
        self.open_value(path, sealed)
    }

    /// The audit entry of the pending value of `path`: its version and
    /// value HMAC, so the audit log proves which value was staged.
    pub fn pending_audit_change(
        &self,
        path: &KeyPath,
        action: &'static str,
    ) -> Result<AuditChange, VaultError> {
        let value = self.get_pending(path)?;
        Ok(AuditChange {
            path: path.to_string(),
            version: self.pending(path).map(|(version, _)| version),
            hmac: Some(value_hmac_bytes(
                &KeyedMac::new(&self.audit_key()?),
                path,
                &value,
            )),
            action,
        })
    }

    /// Drops the pending value of `path`; an error if it has none.
    pub fn drop_pending(&mut self, path: &KeyPath) -> Result<(), VaultError> {
        self.vault
            .header
            .rotation
            .pending
            .shift_remove(&path.to_string())
            .map(|_| ())
            .ok_or_else(|| VaultError::NoPending {
                key: path.to_string(),
            })
    }

    /// Makes the pending value of `path` its current value (a `set`: the
    /// old value becomes a stored version); returns the new version.
    pub fn promote(&mut self, path: &KeyPath) -> Result<u32, VaultError> {
        let value = self.get_pending(path)?;
        self.drop_pending(path)?;
        self.set(path, &value)
    }

    /// Alternating users: the pending password of `base.ALTERNATE.PASSWORD`
    /// becomes `base.PASSWORD`, `base.ALTERNATE.USERNAME` becomes
    /// `base.USERNAME`, and the previous current pair becomes the
    /// alternate, in this one change. Returns the paths changed.
    pub fn promote_alternate(&mut self, base: &KeyPath) -> Result<Vec<KeyPath>, VaultError> {
        let [user, password, alt_user, alt_password] = alternate_paths(base)?;
        let new_password = self.get_pending(&alt_password)?;
        let (old_user, old_password, next_user) =
            (self.get(&user)?, self.get(&password)?, self.get(&alt_user)?);
        self.drop_pending(&alt_password)?;
        self.set(&user, &next_user)?;
        self.set(&password, &new_password)?;
        self.set(&alt_user, &old_user)?;
        self.set(&alt_password, &old_password)?;
        Ok(vec![user, password, alt_user, alt_password])
    }

    /// The maximum age of `path`'s value in seconds, if a policy is set.
    pub fn max_age(&self, path: &KeyPath) -> Option<u64> {
        self.vault
            .header
            .rotation
            .max_age
            .get(&path.to_string())
            .copied()
    }

    /// Sets the maximum age of `path`'s value (`--max-age`).
    pub fn set_max_age(&mut self, path: &KeyPath, seconds: u64) {
        self.vault
            .header
            .rotation
            .max_age
            .insert(path.to_string(), seconds);
    }

    /// The age of every path with a policy, now.
    pub fn policy_ages(&self) -> Vec<PolicyAge> {
        policy_ages(&self.vault, now())
    }
}

/// A path with a `--max-age` policy and the age of its current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAge {
    /// The path.
    pub path: String,
    /// Its maximum age, in seconds.
    pub max_age: u64,
    /// Seconds since its current value was set; `None` if it has none.
    pub age: Option<u64>,
}

impl PolicyAge {
    /// Whether it is due for rotation: older than its policy, or gone.
    pub fn due(&self) -> bool {
        self.age.is_none_or(|age| age > self.max_age)
    }
}

/// The age at `now` of every path with a policy in `vault`: read from the
/// times in the sealed texts, so no key is needed (the doctor uses it).
pub fn policy_ages(vault: &EncryptedVault, now: u64) -> Vec<PolicyAge> {
    vault
        .header
        .rotation
        .max_age
        .iter()
        .map(|(path, max_age)| {
            let set =
                KeyPath::parse(path)
                    .ok()
                    .and_then(|parsed| match vault.secrets.get(&parsed) {
                        Some(Tree::Leaf(sealed)) => sealed.version_and_time().map(|(_, time)| time),
                        _ => None,
                    });
            PolicyAge {
                path: path.clone(),
                max_age: *max_age,
                age: set.map(|time| now.saturating_sub(time)),
            }
        })
        .collect()
}

/// `base.USERNAME`, `base.PASSWORD`, `base.ALTERNATE.USERNAME`,
/// `base.ALTERNATE.PASSWORD`.
pub fn alternate_paths(base: &KeyPath) -> Result<[KeyPath; 4], VaultError> {
    let field = |relative: &str| -> Result<KeyPath, VaultError> {
        Ok(base.join(&KeyPath::parse(relative)?))
    };
    Ok([
        field(ALTERNATE_FIELDS[0])?,
        field(ALTERNATE_FIELDS[1])?,
        field(ALTERNATE_FIELDS[2])?,
        field(ALTERNATE_FIELDS[3])?,
    ])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::vault::format::{DEFAULT_KEEP, Reader, raw_from_general};
    use crate::vault::keys::slots::test_passphrase as passphrase;
    use crate::vault::salt::Salt;

    fn text(value: &str) -> Plain {
        Plain::text(value.as_bytes().to_vec())
    }

    fn vault_with_pending() -> (UnlockedVault, Salt, KeyPath) {
        let salt = Salt::generate();
        let mut vault =
            UnlockedVault::create(&[passphrase()], &salt, DEFAULT_KEEP, Path::new("vault.yml"));
        let path = KeyPath::parse("DB.PASSWORD").unwrap();
        vault.set(&path, &text("old")).unwrap();
        assert_eq!(vault.stage(&path, &text("new")).unwrap(), 2);
        vault.set_max_age(&path, 90 * 86_400);
        (vault, salt, path)
    }

    /// Issue 24: the pending value and the policy are written in the
    /// header, read the same by both readers, and readers see the current
    /// value until the promotion.
    #[test]
    fn pending_values_round_trip_through_both_readers_and_stay_invisible() {
        let (vault, salt, path) = vault_with_pending();
        let bytes = vault.seal().to_canonical();
        let text_form = String::from_utf8(bytes.clone()).unwrap();
        assert!(text_form.contains("\n  pending:\n    \"DB.PASSWORD\": rv1:2:"));
        assert!(text_form.contains("\n  max_age:\n    \"DB.PASSWORD\": 7776000\n  mac: "));
        let fast = crate::vault::canonical::parse(&bytes).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_slice(&bytes).unwrap();
        assert_eq!(fast, raw_from_general(&doc, 0).unwrap());
        let (parsed, reader) = EncryptedVault::parse(&bytes).unwrap();
        assert_eq!(reader, Reader::Fast);
        let mut reopened =
            UnlockedVault::unlock(parsed, &salt, &passphrase(), Path::new("vault.yml")).unwrap();
        assert_eq!(reopened.get(&path).unwrap().bytes.expose(), b"old");
        assert_eq!(reopened.get_pending(&path).unwrap().bytes.expose(), b"new");
        assert_eq!(reopened.max_age(&path), Some(7_776_000));
        assert!(matches!(
            reopened.stage(&path, &text("other")),
            Err(VaultError::Pending { version: 2, .. })
        ));
        assert_eq!(reopened.promote(&path).unwrap(), 2);
        assert_eq!(reopened.get(&path).unwrap().bytes.expose(), b"new");
        assert_eq!(reopened.pending(&path), None);
        let history = reopened.history(&path).unwrap();
        assert_eq!(
            history
                .iter()
                .map(|v| (v.version, v.current))
                .collect::<Vec<_>>(),
            [(1, false), (2, true)]
        );
    }

    /// The MAC covers the pending value and the policy: editing either,
    /// or removing them, is tampering.
    #[test]
    fn the_mac_covers_pending_values_and_the_policy() {
        let (vault, salt, _) = vault_with_pending();
        let text_form = String::from_utf8(vault.seal().to_canonical()).unwrap();
        let pending_line = text_form
            .lines()
            .find(|line| line.starts_with("    \"DB.PASSWORD\": rv1:"))
            .unwrap()
            .to_owned();
        let edits = [
            text_form.replace("7776000", "77760000"),
            text_form.replace(&format!("  pending:\n{pending_line}\n"), ""),
            text_form.replace("  max_age:\n    \"DB.PASSWORD\": 7776000\n", ""),
            text_form.replace("\"DB.PASSWORD\": rv1:2:", "\"DB.OTHER\": rv1:2:"),
        ];
        for edited in edits {
            assert_ne!(edited, text_form);
            let (parsed, _) = EncryptedVault::parse(edited.as_bytes()).unwrap();
            let err = UnlockedVault::unlock(parsed, &salt, &passphrase(), Path::new("vault.yml"))
                .err()
                .expect("an edited file must not open");
            assert!(matches!(err, VaultError::MacMismatch { .. }), "{err}");
        }
    }

    /// A vault that never used them is written and MACed exactly as before.
    #[test]
    fn a_vault_without_pending_values_has_no_new_fields() {
        let (mut vault, _, path) = vault_with_pending();
        vault.drop_pending(&path).unwrap();
        vault.vault.header.rotation.max_age.clear();
        let text_form = String::from_utf8(vault.seal().to_canonical()).unwrap();
        assert!(!text_form.contains("pending") && !text_form.contains("max_age"));
    }

    /// Alternating users: the pending password and the alternate account
    /// become current, the previous pair the alternate, in one change.
    #[test]
    fn promoting_alternate_users_swaps_the_two_accounts() {
        let salt = Salt::generate();
        let mut vault =
            UnlockedVault::create(&[passphrase()], &salt, DEFAULT_KEEP, Path::new("vault.yml"));
        let base = KeyPath::parse("PG").unwrap();
        let [user, password, alt_user, alt_password] = alternate_paths(&base).unwrap();
        for (path, value) in [
            (&user, "app_a"),
            (&password, "pw_a"),
            (&alt_user, "app_b"),
            (&alt_password, "pw_b"),
        ] {
            vault.set(path, &text(value)).unwrap();
        }
        vault.stage(&alt_password, &text("pw_b2")).unwrap();
        vault.promote_alternate(&base).unwrap();
        let get = |path: &KeyPath| {
            String::from_utf8(vault.get(path).unwrap().bytes.expose().to_vec()).unwrap()
        };
        assert_eq!(
            [
                get(&user),
                get(&password),
                get(&alt_user),
                get(&alt_password)
            ],
            ["app_b", "pw_b2", "app_a", "pw_a"]
        );
        assert!(vault.pending_paths().is_empty());
    }
}
