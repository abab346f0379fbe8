//! Host identities and recipient slots (issue 21): a slot that wraps the
//! data key to a public key, as an age file, so a host is added by its
//! public key and its private key never leaves it.
//!
//! The cryptography is the `age` crate's (X25519 and ssh-ed25519
//! stanzas); this module only reads identity files (an age identity file
//! as `age-keygen` writes it, or an unencrypted OpenSSH ed25519 private
//! key), parses recipients into their canonical text, and wraps and
//! unwraps the 32-byte data key. A slot's `wrapped` is a plain binary age
//! file, so `age -d -i host.key` opens one taken out of `vault.yml`.

use std::path::Path;

use age::secrecy::ExposeSecret;

use crate::core::fs::{Limit, read_private};
use crate::core::secret::{Key32, SecretBytes};
use crate::vault::error::VaultError;
use crate::vault::keys::secret_file::write_new_secret_file;

/// An identity file is a few lines (an OpenSSH key about 400 bytes).
const IDENTITY_FILE: Limit = Limit::of("identity file", 16 * 1024);

/// The first line of an OpenSSH private key file.
const OPENSSH_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";

/// A host's private key, read from its identity file.
///
/// No `Debug` and no `Display`: it holds a private key (the `age` types
/// inside wipe it on drop). The first example compiles; the next two are
/// the same code with `{:?}`, then `{}`, and must not compile (E0277).
///
/// ```
/// use runvault::vault::Identity;
/// let (identity, _file) = Identity::generate();
/// let _ = format!("{:p}", &identity); // its address, not its key
/// ```
///
/// ```compile_fail,E0277
/// use runvault::vault::Identity;
/// let (identity, _file) = Identity::generate();
/// let _ = format!("{:?}", &identity);
/// ```
///
/// ```compile_fail,E0277
/// use runvault::vault::Identity;
/// let (identity, _file) = Identity::generate();
/// let _ = format!("{}", &identity);
/// ```
pub struct Identity {
    key: IdentityKey,
    recipient: String,
}

enum IdentityKey {
    X25519(age::x25519::Identity),
    SshEd25519(age::ssh::Identity),
}

/// A recipient parsed by `age`.
enum Recipient {
    X25519(age::x25519::Recipient),
    SshEd25519(age::ssh::Recipient),
}

impl Identity {
    /// The recipient (public key) of this identity, in canonical text.
    pub fn recipient(&self) -> &str {
        &self.recipient
    }

    /// A new X25519 identity and its file's contents, exactly as
    /// `age-keygen` writes them (two comment lines, then the key).
    pub fn generate() -> (Identity, SecretBytes) {
        let key = age::x25519::Identity::generate();
        let recipient = key.to_public().to_string();
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let text = format!(
            "# created: {created}\n# public key: {recipient}\n{}\n",
            key.to_string().expose_secret()
        );
        let identity = Identity {
            key: IdentityKey::X25519(key),
            recipient,
        };
        (identity, SecretBytes::from(text))
    }

    /// The data key in a recipient slot's `wrapped` (an age file), or
    /// `None` if this identity does not open it or it is not 32 bytes.
    pub(crate) fn unwrap_key(&self, wrapped: &[u8]) -> Option<Key32> {
        let plain = match &self.key {
            IdentityKey::X25519(key) => age::decrypt(key, wrapped),
            IdentityKey::SshEd25519(key) => age::decrypt(key, wrapped),
        };
        let plain = SecretBytes::new(plain.ok()?);
        let bytes: [u8; 32] = plain.expose().try_into().ok()?;
        Some(Key32::from_bytes(bytes))
    }
}

/// Reads an identity file: refused when others can read it (as a key
/// file is), then parsed as an age identity file or an unencrypted
/// OpenSSH ed25519 private key. Errors never quote the file.
pub fn read_identity_file(path: &Path) -> Result<Identity, VaultError> {
    let bytes = SecretBytes::new(read_private(path, IDENTITY_FILE)?);
    let bad = |reason: &'static str| VaultError::BadIdentity {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(bytes.expose()).map_err(|_| bad("it is not text"))?;
    if text.trim_start().starts_with(OPENSSH_BEGIN) {
        return read_ssh_identity(text, path);
    }
    let mut keys = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let (Some(line), None) = (keys.next(), keys.next()) else {
        return Err(bad(
            "expected one `AGE-SECRET-KEY-1...` line (as `runvault keygen --identity` or \
             `age-keygen` writes)",
        ));
    };
    let key: age::x25519::Identity = line
        .parse()
        .map_err(|_| bad("its key line is not an age X25519 identity (`AGE-SECRET-KEY-1...`)"))?;
    Ok(Identity {
        recipient: key.to_public().to_string(),
        key: IdentityKey::X25519(key),
    })
}

fn read_ssh_identity(text: &str, path: &Path) -> Result<Identity, VaultError> {
    let bad = |reason: &'static str| VaultError::BadIdentity {
        path: path.to_path_buf(),
        reason,
    };
    let key = age::ssh::Identity::from_buffer(text.as_bytes(), None)
        .map_err(|_| bad("it is not a valid OpenSSH private key"))?;
    match &key {
        age::ssh::Identity::Unencrypted(_) => {}
        age::ssh::Identity::Encrypted(_) => {
            return Err(bad(
                "it is protected by a passphrase; runvault needs an unencrypted key, such as \
                 /etc/ssh/ssh_host_ed25519_key",
            ));
        }
        age::ssh::Identity::Unsupported(_) => {
            return Err(bad(
                "it is an SSH key type runvault does not take (ssh-ed25519 only)",
            ));
        }
    }
    let recipient = match age::ssh::Recipient::try_from(key.clone()) {
        Ok(recipient @ age::ssh::Recipient::SshEd25519(..)) => recipient.to_string(),
        Ok(_) => {
            return Err(bad(
                "it is not an ed25519 key (runvault takes ssh-ed25519 only)",
            ));
        }
        Err(_) => return Err(bad("its public key cannot be read")),
    };
    Ok(Identity {
        key: IdentityKey::SshEd25519(key),
        recipient,
    })
}

/// Parses a recipient given by a user or stored in a slot: `age1...` or
/// `ssh-ed25519 AAAA... [comment]`; returns its canonical text (the SSH
/// comment dropped), the form slots store and compare.
pub fn canonical_recipient(text: &str) -> Result<String, VaultError> {
    Ok(match parse_recipient(text)? {
        Recipient::X25519(recipient) => recipient.to_string(),
        Recipient::SshEd25519(recipient) => recipient.to_string(),
    })
}

fn parse_recipient(text: &str) -> Result<Recipient, VaultError> {
    let text = text.trim();
    let bad = |reason: &'static str| VaultError::BadRecipient {
        recipient: text.chars().take(100).collect(),
        reason,
    };
    if text.starts_with("age1") {
        return text
            .parse()
            .map(Recipient::X25519)
            .map_err(|_| bad("not a valid age X25519 recipient"));
    }
    if text.starts_with("ssh-ed25519 ") {
        return match text.parse() {
            Ok(recipient @ age::ssh::Recipient::SshEd25519(..)) => {
                Ok(Recipient::SshEd25519(recipient))
            }
            _ => Err(bad("not a valid ssh-ed25519 public key")),
        };
    }
    Err(bad(
        "expected an age recipient (`age1...`) or an SSH ed25519 public key (`ssh-ed25519 AAAA...`)",
    ))
}

/// The data key as an age file to `recipient` (a slot's `wrapped`).
pub(crate) fn wrap_to(recipient: &str, data_key: &Key32) -> Result<Vec<u8>, VaultError> {
    let wrapped = match parse_recipient(recipient)? {
        Recipient::X25519(recipient) => age::encrypt(&recipient, data_key.expose()),
        Recipient::SshEd25519(recipient) => age::encrypt(&recipient, data_key.expose()),
    };
    wrapped.map_err(|_| VaultError::BadRecipient {
        recipient: recipient.to_owned(),
        reason: "age cannot encrypt to it",
    })
}

/// Writes a new identity file at `path` (mode 0400, `O_EXCL`; missing
/// parent directories are created 0700) and returns its recipient.
/// Refuses to overwrite a file, and a path inside the vault directory.
pub fn create_identity_file(path: &Path, vault_dir: &Path) -> Result<String, VaultError> {
    let (identity, contents) = Identity::generate();
    write_new_secret_file(
        path,
        vault_dir,
        "the identity",
        crate::core::layout::DEFAULT_IDENTITY_FILE,
        &contents,
    )?;
    Ok(identity.recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_with_its_identity_only() {
        let (identity, _) = Identity::generate();
        let (other, _) = Identity::generate();
        let key = Key32::random();
        let wrapped = wrap_to(identity.recipient(), &key).unwrap();
        assert!(wrapped.len() <= crate::vault::format::MAX_RECIPIENT_WRAPPED);
        assert_eq!(
            identity.unwrap_key(&wrapped).unwrap().expose(),
            key.expose()
        );
        assert!(other.unwrap_key(&wrapped).is_none());
    }

    #[test]
    fn a_generated_file_reads_back_as_its_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys").join("host.key");
        let recipient = create_identity_file(&path, &tmp.path().join("secrets")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("# created: "), "{text}");
        assert_eq!(lines[1], format!("# public key: {recipient}"));
        assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
        assert_eq!(read_identity_file(&path).unwrap().recipient(), recipient);
        assert!(matches!(
            create_identity_file(&path, tmp.path()),
            Err(VaultError::Usage(_))
        ));
    }

    #[test]
    fn recipients_are_kept_in_canonical_form() {
        let (identity, _) = Identity::generate();
        let spaced = format!("  {}\n", identity.recipient());
        assert_eq!(canonical_recipient(&spaced).unwrap(), identity.recipient());
        for bad in ["age1nope", "ssh-rsa AAAA", "", "ssh-ed25519 AAAA"] {
            assert!(
                matches!(
                    canonical_recipient(bad),
                    Err(VaultError::BadRecipient { .. })
                ),
                "{bad}"
            );
        }
    }
}
