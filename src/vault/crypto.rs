//! The cryptographic primitives, each used for one purpose:
//! AES-256-GCM for values and wrapped data keys, Argon2id for passphrases,
//! HKDF-SHA256 for machine keys and subkeys, HMAC-SHA256 for the file MAC.
//!
//! Every function takes and returns secret material in [`Key32`] /
//! [`SecretBytes`]; intermediate buffers are wiped.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::core::secret::{Key32, SecretBytes};

/// Length of an AES-GCM nonce.
pub(super) const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag.
pub(super) const TAG_LEN: usize = 16;

/// Encrypts `plaintext` under `key` with a fresh random nonce, binding `aad`.
/// Returns `nonce || ciphertext || tag`.
pub(super) fn seal(key: &Key32, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    ValueCipher::new(key).seal(aad, plaintext)
}

/// Decrypts `nonce || ciphertext || tag`; `None` if the key, `aad` or the
/// bytes do not match.
pub(super) fn open(key: &Key32, aad: &[u8], sealed: &[u8]) -> Option<SecretBytes> {
    ValueCipher::new(key).open(aad, sealed)
}

/// AES-256-GCM under one key, its key schedule computed once for all the
/// values a command seals or opens (an import or a rekey seals hundreds of
/// thousands). No `Debug`; the round keys and the GHASH key are wiped on
/// drop (the `zeroize` features of `aes` and `polyval`).
pub struct ValueCipher(Aes256Gcm);

impl ValueCipher {
    /// The cipher for `key`.
    pub fn new(key: &Key32) -> ValueCipher {
        ValueCipher(Aes256Gcm::new(key.expose().into()))
    }

    /// [`seal`] under this cipher's key.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.seal_parts(aad, &[plaintext])
    }

    /// [`ValueCipher::seal`] of the concatenation of `parts` (a tag byte
    /// and a value), without building it first.
    pub fn seal_parts(&self, aad: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let nonce = fresh_nonce();
        let len: usize = parts.iter().map(|part| part.len()).sum();
        // Encrypted in place in the output buffer: no second copy of the
        // plaintext is made, and no ciphertext buffer is copied.
        let mut out = Vec::with_capacity(NONCE_LEN + len + TAG_LEN);
        out.extend_from_slice(&nonce);
        parts.iter().for_each(|part| out.extend_from_slice(part));
        let tag = self
            .0
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[NONCE_LEN..])
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        out.extend_from_slice(&tag);
        out
    }

    /// [`open`] under this cipher's key.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<SecretBytes> {
        self.open_owned(aad, sealed.to_vec())
    }

    /// [`ValueCipher::open`] taking the sealed bytes: the plaintext is
    /// decrypted in their buffer, which is wiped when dropped.
    pub fn open_owned(&self, aad: &[u8], sealed: Vec<u8>) -> Option<SecretBytes> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("checked length");
        let tag: [u8; TAG_LEN] = sealed[sealed.len() - TAG_LEN..]
            .try_into()
            .expect("checked length");
        let mut buffer = SecretBytes::new(sealed);
        let bytes = buffer.expose_mut();
        bytes.truncate(bytes.len() - TAG_LEN);
        bytes.drain(..NONCE_LEN);
        self.0
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, bytes, (&tag).into())
            .ok()
            .map(|()| buffer)
    }
}

/// Bytes of operating-system randomness fetched at a time for nonces.
const NONCE_POOL: usize = 4096;

/// Operating-system randomness for nonces, fetched [`NONCE_POOL`] bytes at
/// a time: an import of 200 000 values needs 200 000 nonces, and one
/// `getrandom` call each cost more than the encryption. Every byte is
/// handed out once, then the pool is refilled. Nonces are public, so the
/// pool needs no wiping.
static NONCES: std::sync::Mutex<NoncePool> = std::sync::Mutex::new(NoncePool {
    bytes: [0; NONCE_POOL],
    used: NONCE_POOL,
});

struct NoncePool {
    bytes: [u8; NONCE_POOL],
    /// How many bytes of `bytes` were handed out (all of them at start).
    used: usize,
}

/// A fresh random AES-GCM nonce.
fn fresh_nonce() -> [u8; NONCE_LEN] {
    // A panic elsewhere cannot leave the pool half-updated: `used` only
    // grows after the bytes were copied out, and a refill is complete or
    // not done, so a poisoned lock is still a valid pool.
    let mut pool = NONCES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if pool.used + NONCE_LEN > NONCE_POOL {
        rand::rngs::OsRng.fill_bytes(&mut pool.bytes);
        pool.used = 0;
    }
    let start = pool.used;
    let nonce: [u8; NONCE_LEN] = pool.bytes[start..start + NONCE_LEN]
        .try_into()
        .expect("a nonce-sized slice");
    pool.used += NONCE_LEN;
    nonce
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Number of lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 65_536,
        iterations: 3,
        parallelism: 4,
    };
    /// Most memory a slot may ask for: 2 GiB.
    pub const MAX_MEMORY_KIB: u32 = 2 * 1024 * 1024;
    /// Most passes a slot may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// Most lanes a slot may ask for.
    pub const MAX_PARALLELISM: u32 = 64;
    /// Ceiling on memory x passes (KiB-passes): 8 GiB-passes, about 40 x the default.
    pub const MAX_WORK: u64 = 8 * 1024 * 1024;
    /// Ceiling on the memory x passes of all the distinct parameter sets of
    /// one file's passphrase slots together (a wrong passphrase runs each
    /// once): the same 8 GiB-passes, so that a file can cost at most what
    /// one slot at the ceiling costs (docs/format.md, section 8.2).
    pub const MAX_FILE_WORK: u64 = Self::MAX_WORK;

    /// Memory x passes in KiB-passes: what [`KdfParams::MAX_WORK`] bounds.
    pub fn work(&self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }

    /// Checks the parameters against the bounds, so that a hostile file cannot
    /// make runvault allocate gigabytes or run for hours.
    pub fn check(&self) -> Result<(), String> {
        let KdfParams {
            memory_kib: m,
            iterations: t,
            parallelism: p,
        } = *self;
        if !(1..=Self::MAX_PARALLELISM).contains(&p) {
            return Err(format!(
                "parallelism {p} is outside 1..={}",
                Self::MAX_PARALLELISM
            ));
        }
        if !(1..=Self::MAX_ITERATIONS).contains(&t) {
            return Err(format!(
                "iterations {t} is outside 1..={}",
                Self::MAX_ITERATIONS
            ));
        }
        if m < 8 * p || m > Self::MAX_MEMORY_KIB {
            return Err(format!(
                "memory {m} KiB is outside {}..={} KiB",
                8 * p,
                Self::MAX_MEMORY_KIB
            ));
        }
        if u64::from(m) * u64::from(t) > Self::MAX_WORK {
            return Err(format!(
                "memory x iterations = {} KiB-passes exceeds the ceiling of {}",
                u64::from(m) * u64::from(t),
                Self::MAX_WORK
            ));
        }
        Ok(())
    }
}

/// Argon2id parameters given on the command line; unset ones come from a
/// base (the defaults, or a slot's current parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KdfOverride {
    /// `--kdf-memory`.
    pub memory_kib: Option<u32>,
    /// `--kdf-iterations`.
    pub iterations: Option<u32>,
    /// `--kdf-parallelism`.
    pub parallelism: Option<u32>,
}

impl KdfOverride {
    /// Whether no parameter was given.
    pub fn is_empty(&self) -> bool {
        *self == KdfOverride::default()
    }

    /// The parameters over `base`, checked against the bounds.
    pub fn apply(&self, base: KdfParams) -> Result<KdfParams, String> {
        let params = KdfParams {
            memory_kib: self.memory_kib.unwrap_or(base.memory_kib),
            iterations: self.iterations.unwrap_or(base.iterations),
            parallelism: self.parallelism.unwrap_or(base.parallelism),
        };
        params.check().map(|()| params)
    }
}

/// Derives a key-encryption key from a passphrase with Argon2id.
/// The parameters must have passed [`KdfParams::check`].
pub fn argon2id(passphrase: &SecretBytes, salt: &[u8], params: KdfParams) -> Key32 {
    let argon_params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .expect("checked parameters are valid for argon2");
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    // Our own working memory, so that it is wiped afterwards (argon2's
    // `hash_password_into` frees its blocks without wiping them).
    let mut blocks = Zeroizing::new(vec![argon2::Block::default(); argon.params().block_count()]);
    argon
        .hash_password_into_with_memory(
            passphrase.expose(),
            salt,
            out.as_mut(),
            blocks.as_mut_slice(),
        )
        .expect("argon2 accepts any passphrase and a salt of 8 bytes or more");
    Key32::from_bytes(*out)
}

/// HKDF-SHA256 expansion of `ikm` into a 256-bit key for `info`.
pub(super) fn hkdf(ikm: &[u8], salt: &[u8], info: &[u8]) -> Key32 {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(info, out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Key32::from_bytes(*out)
}

/// The subkeys derived from the data key; the data key itself encrypts nothing.
pub struct Subkeys {
    /// Encrypts values (and the audit key), its key schedule ready.
    pub enc: ValueCipher,
    /// Keys the file MAC.
    pub mac: Key32,
}

impl Subkeys {
    /// Derives both subkeys from the data key.
    pub fn derive(data_key: &Key32) -> Subkeys {
        Subkeys {
            enc: ValueCipher::new(&hkdf(
                data_key.expose(),
                b"",
                b"runvault/v1/value-encryption",
            )),
            mac: hkdf(data_key.expose(), b"", b"runvault/v1/file-mac"),
        }
    }
}

/// An HMAC-SHA256 key made ready once for many short MACs (the audit HMAC
/// of every value of an import): each MAC starts from a copy of the keyed
/// state and hashes its fields as they come, with no buffer.
pub(super) struct KeyedMac(Hmac<Sha256>);

impl KeyedMac {
    /// The keyed state for `key`.
    pub(super) fn new(key: &Key32) -> KeyedMac {
        KeyedMac(hmac_for(key))
    }

    /// A MAC under this key, to feed and finish.
    pub(super) fn start(&self) -> MacWriter {
        MacWriter {
            hasher: Hasher::Inline(self.0.clone()),
            buffer: Zeroizing::new(Vec::new()),
        }
    }
}

/// An incremental HMAC-SHA256 over length-prefixed fields.
pub(super) struct MacWriter {
    hasher: Hasher,
    /// Small fields are gathered here and hashed in large runs: a vault MAC
    /// is made of hundreds of thousands of short fields, and hashing them
    /// one by one costs more than the hashing itself. Never grows past
    /// [`MAC_BUFFER`] (no reallocation leaves copies) and is wiped on drop.
    /// Empty (no capacity) for the short MACs of [`KeyedMac::start`],
    /// which hash each field at once.
    buffer: Zeroizing<Vec<u8>>,
}

/// Where full buffers go: hashed here, or sent to a hashing thread.
enum Hasher {
    Inline(Hmac<Sha256>),
    Background {
        chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
        /// Buffers the thread has hashed, handed back for reuse: a full
        /// buffer is sent as it is, not copied.
        spare: std::sync::mpsc::Receiver<Vec<u8>>,
        worker: std::thread::JoinHandle<Hmac<Sha256>>,
    },
}

/// Capacity of a [`MacWriter`]'s buffer.
const MAC_BUFFER: usize = 64 * 1024;

/// Full buffers queued for the hashing thread before the writer waits for
/// it. Few: the thread hashes faster than a reader parses, but starts
/// late, and every buffer queued meanwhile is fresh memory (16 of them
/// were 256 page faults of a `get`, 0.8 ms on a virtual machine).
const MAC_CHUNKS_IN_FLIGHT: usize = 2;

impl MacWriter {
    /// Starts a MAC under `key`.
    pub(super) fn new(key: &Key32) -> MacWriter {
        MacWriter {
            hasher: Hasher::Inline(hmac_for(key)),
            buffer: Zeroizing::new(Vec::with_capacity(MAC_BUFFER)),
        }
    }

    /// Starts a MAC under `key` that hashes on a second thread while the
    /// caller goes on producing input (the streaming reader parses while
    /// the MAC of what it parsed is computed). For public input only (file
    /// MACs over ciphertext): the chunks handed over are not wiped.
    pub(super) fn new_parallel(key: &Key32) -> MacWriter {
        let mut hmac = hmac_for(key);
        let (chunks, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(MAC_CHUNKS_IN_FLIGHT);
        let (hashed, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        let worker = std::thread::spawn(move || {
            for mut chunk in received {
                hmac.update(&chunk);
                chunk.clear();
                // The writer may be gone (it only takes spares while it runs).
                let _ = hashed.send(chunk);
            }
            hmac
        });
        MacWriter {
            hasher: Hasher::Background {
                chunks,
                spare,
                worker,
            },
            buffer: Zeroizing::new(Vec::with_capacity(MAC_BUFFER)),
        }
    }

    /// Adds raw bytes (the caller provides the framing).
    pub(super) fn raw(&mut self, bytes: &[u8]) {
        if self.buffer.capacity() == 0 {
            // Unbuffered ([`KeyedMac::start`]): a few short fields.
            self.hash(bytes);
            return;
        }
        if self.buffer.len() + bytes.len() > MAC_BUFFER {
            self.flush();
        }
        if bytes.len() >= MAC_BUFFER {
            self.hash(bytes);
        } else {
            self.buffer.extend_from_slice(bytes);
        }
    }

    fn hash(&mut self, bytes: &[u8]) {
        match &mut self.hasher {
            Hasher::Inline(hmac) => hmac.update(bytes),
            Hasher::Background { chunks, .. } => chunks
                .send(bytes.to_vec())
                .expect("the hashing thread runs until the sender is dropped"),
        }
    }

    fn flush(&mut self) {
        if let Hasher::Background { chunks, spare, .. } = &mut self.hasher {
            let next = spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(MAC_BUFFER));
            let full = std::mem::replace(&mut *self.buffer, next);
            chunks
                .send(full)
                .expect("the hashing thread runs until the sender is dropped");
            return;
        }
        let buffer = std::mem::take(&mut *self.buffer);
        self.hash(&buffer);
        // Cleared, not wiped, between runs (wiping 64 KiB per run costs as
        // much as the hashing); `Zeroizing` wipes the whole buffer on drop.
        *self.buffer = buffer;
        self.buffer.clear();
    }

    /// Adds a length-prefixed byte string.
    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        self.raw(&(bytes.len() as u64).to_be_bytes());
        self.raw(bytes);
    }

    /// Adds a u64.
    pub(super) fn u64(&mut self, value: u64) {
        self.raw(&value.to_be_bytes());
    }

    fn into_hmac(mut self) -> Hmac<Sha256> {
        self.flush();
        let MacWriter { hasher, .. } = self;
        match hasher {
            Hasher::Inline(hmac) => hmac,
            Hasher::Background { chunks, worker, .. } => {
                drop(chunks);
                worker.join().expect("the hashing thread does not panic")
            }
        }
    }

    /// The tag.
    pub(super) fn finish(self) -> [u8; 32] {
        self.into_hmac().finalize().into_bytes().into()
    }

    /// Compares with an expected tag in constant time.
    pub(super) fn verify(self, expected: &[u8]) -> bool {
        self.into_hmac().verify_slice(expected).is_ok()
    }
}

fn hmac_for(key: &Key32) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length")
}

/// Fills a buffer from the operating system's RNG.
pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::core::proptest_seeds::config())]

        #[test]
        fn seal_open_round_trip_and_bind_aad(plain in proptest::collection::vec(any::<u8>(), 0..300), aad in proptest::collection::vec(any::<u8>(), 0..40)) {
            let key = Key32::random();
            let sealed = seal(&key, &aad, &plain);
            let opened = open(&key, &aad, &sealed).unwrap();
            prop_assert_eq!(opened.expose(), &plain[..]);
            let mut other_aad = aad.clone();
            other_aad.push(0);
            prop_assert!(open(&key, &other_aad, &sealed).is_none());
            prop_assert!(open(&Key32::random(), &aad, &sealed).is_none());
            let mut flipped = sealed.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            prop_assert!(open(&key, &aad, &flipped).is_none());
        }
    }

    #[test]
    fn kdf_bounds_refuse_absurd_parameters() {
        assert!(KdfParams::DEFAULT.check().is_ok());
        assert!(
            KdfParams {
                memory_kib: u32::MAX,
                iterations: 3,
                parallelism: 4
            }
            .check()
            .is_err()
        );
        assert!(
            KdfParams {
                memory_kib: 65_536,
                iterations: 1_000_000,
                parallelism: 4
            }
            .check()
            .is_err()
        );
        assert!(
            KdfParams {
                memory_kib: 2 * 1024 * 1024,
                iterations: 64,
                parallelism: 4
            }
            .check()
            .is_err()
        );
        assert!(
            KdfParams {
                memory_kib: 8,
                iterations: 1,
                parallelism: 1
            }
            .check()
            .is_ok()
        );
    }
}
