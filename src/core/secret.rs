//! Types for secret material: keys, passphrases and decrypted values.
//!
//! None of them implements `Debug` or `Display`, and all of them are wiped
//! from memory when dropped, so a secret cannot reach a log line, an error
//! message or a panic message by accident. Each type's doc proves the
//! first half with doctests that must not compile (the same proof stands on
//! `vault::Credential`, `vault::Plain` and `runner::register::Token`).

use zeroize::{Zeroize, Zeroizing};

/// A 256-bit symmetric key (data key, key-encryption key, subkey, machine key).
///
/// No `Debug` and no `Display`, as the module promises. The first example
/// compiles; the next two are the same code with `{:?}`, then `{}`, and
/// must not compile, for want of the trait (E0277).
///
/// ```
/// use runvault::core::secret::Key32;
/// let key = Key32::from_bytes([7; 32]);
/// let _ = format!("{:p}", &key); // its address, not its bytes
/// ```
///
/// ```compile_fail,E0277
/// use runvault::core::secret::Key32;
/// let key = Key32::from_bytes([7; 32]);
/// let _ = format!("{:?}", &key);
/// ```
///
/// ```compile_fail,E0277
/// use runvault::core::secret::Key32;
/// let key = Key32::from_bytes([7; 32]);
/// let _ = format!("{}", &key);
/// ```
pub struct Key32(Zeroizing<[u8; 32]>);

impl Key32 {
    /// Wraps key bytes; the caller's copy should be wiped by the caller.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Key32(Zeroizing::new(bytes))
    }

    /// A fresh key from the operating system's random number generator.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Key32(key)
    }

    /// The key bytes, for handing to a cipher or KDF.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Secret bytes of any length: a passphrase or a decrypted value.
///
/// No `Debug` and no `Display`, as the module promises. The first example
/// compiles; the next two are the same code with `{:?}`, then `{}`, and
/// must not compile, for want of the trait (E0277).
///
/// ```
/// use runvault::core::secret::SecretBytes;
/// let secret = SecretBytes::new(b"hunter2".to_vec());
/// let _ = format!("{:p}", &secret); // its address, not its bytes
/// ```
///
/// ```compile_fail,E0277
/// use runvault::core::secret::SecretBytes;
/// let secret = SecretBytes::new(b"hunter2".to_vec());
/// let _ = format!("{:?}", &secret);
/// ```
///
/// ```compile_fail,E0277
/// use runvault::core::secret::SecretBytes;
/// let secret = SecretBytes::new(b"hunter2".to_vec());
/// let _ = format!("{}", &secret);
/// ```
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of the bytes; they are wiped on drop.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret bytes, to change in place (decryption, a tag byte
    /// removed) without a second copy.
    pub fn expose_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> Self {
        SecretBytes::new(self.0.to_vec())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl From<String> for SecretBytes {
    fn from(mut text: String) -> Self {
        let bytes = text.as_bytes().to_vec();
        text.zeroize();
        SecretBytes::new(bytes)
    }
}

/// Compares two byte strings without stopping at the first difference
/// (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
