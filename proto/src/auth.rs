//! Who sent a packet: Ed25519 keys (RFC 8032, `ed25519-dalek`) and the signature trailer that ends
//! every packet that changes what a receiver does (PROTOCOL.md, "Signatures").
//!
//! A teacher's key pair is one Ed25519 key. Its public half is copied to the lab PCs as one line,
//! `edm1-…`; its first 8 bytes of SHA-256 name it on the wire (`KeyId`) and, as 16 hex digits,
//! for people (`fingerprint`). The same key also receives session keys for `--encrypt`, as the
//! X25519 key of the same curve (the conversion libsodium and age use).
//!
//! A signature covers the whole datagram before it: header (so the packet type and the session),
//! body, the key id and the sender's wall-clock time in milliseconds. A receiver checks the time
//! against its own clock, so a packet recorded in an earlier lesson does not work today.

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A key's name on the wire: the first 8 bytes of SHA-256 of its 32-byte public key.
pub type KeyId = [u8; 8];

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes a signature trailer adds to a packet: kind, key id, time, signature.
pub const SIGNED_TRAILER_LEN: usize = 1 + 8 + 8 + SIGNATURE_LEN;

/// Trailer kinds.
pub(crate) const UNSIGNED: u8 = 0;
pub(crate) const ED25519: u8 = 1;

const PUBLIC_PREFIX: &str = "edm1-";
const SECRET_PREFIX: &str = "edm1-secret-";

/// A key that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not `edm1-` followed by the key.
    #[error("not an edm-cast key (they start with \"edm1-\")")]
    Prefix,
    /// The characters after the prefix are not the key.
    #[error("the key is damaged (a character is wrong or missing)")]
    Damaged,
    /// The bytes are not a point on the curve.
    #[error("not a valid Ed25519 public key")]
    Invalid,
}

/// The check bytes that end a key's text: a typo is caught, not taken for another key.
fn check(prefix: &str, key: &[u8; 32]) -> [u8; 2] {
    let d = Sha256::new()
        .chain_update(prefix)
        .chain_update(key)
        .finalize();
    [d[0], d[1]]
}

fn encode(prefix: &str, key: &[u8; 32]) -> String {
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(&check(prefix, key));
    format!("{prefix}{}", BASE32_NOPAD.encode(&bytes).to_lowercase())
}

fn decode(prefix: &str, text: &str) -> Result<[u8; 32], KeyError> {
    let rest = text.trim().strip_prefix(prefix).ok_or(KeyError::Prefix)?;
    let bytes = BASE32_NOPAD
        .decode(rest.to_uppercase().as_bytes())
        .map_err(|_| KeyError::Damaged)?;
    let (key, sum) = bytes.split_at_checked(32).ok_or(KeyError::Damaged)?;
    let key: [u8; 32] = key.try_into().map_err(|_| KeyError::Damaged)?;
    if sum != check(prefix, &key) {
        return Err(KeyError::Damaged);
    }
    Ok(key)
}

/// A public key: what a lab PC trusts, and what `--encrypt` sends session keys to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The 32 bytes of the Ed25519 key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Its name on the wire.
    pub fn id(&self) -> KeyId {
        let d = Sha256::digest(self.0.as_bytes());
        d[..8].try_into().expect("8 of 32 bytes")
    }

    /// 16 hex digits in four groups, to read aloud: `3f2a-9c01-77e4-b5d0`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.id())
    }

    /// The same key as an X25519 public key (RFC 7748), for key agreement.
    pub fn x25519(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0.to_montgomery().to_bytes())
    }

    /// Whether `signature` is this key's over `message` (strict: no malleable encodings).
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &sig).is_ok()
    }
}

/// A key id as people read it.
pub fn fingerprint(id: &KeyId) -> String {
    id.chunks(2)
        .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
        .collect::<Vec<_>>()
        .join("-")
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        if s.trim().starts_with(SECRET_PREFIX) {
            return Err(KeyError::Prefix);
        }
        let key = decode(PUBLIC_PREFIX, s)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| KeyError::Invalid)?;
        if key.is_weak() {
            return Err(KeyError::Invalid);
        }
        Ok(PublicKey(key))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(PUBLIC_PREFIX, self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// A private key: signs what a teacher sends, and opens session keys sent to a lab PC.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// The key made from 32 random bytes (the shell draws them from the operating system).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(message).to_bytes()
    }

    /// The same key as an X25519 secret, for key agreement.
    pub fn x25519(&self) -> x25519_dalek::StaticSecret {
        x25519_dalek::StaticSecret::from(self.0.to_scalar_bytes())
    }

    /// The key file's one line: `edm1-secret-…`.
    pub fn to_text(&self) -> String {
        encode(SECRET_PREFIX, self.0.as_bytes())
    }

    /// Reads a key file's text: the first line that is not a comment.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or(KeyError::Prefix)?;
        Ok(SecretKey::from_seed(decode(SECRET_PREFIX, line)?))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public().fingerprint())
    }
}

/// Wall-clock time (for signatures), read from the monotonic `now` the state machines are given:
/// the shell fixes, once, which Unix time an `Instant` was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    at: Instant,
    unix_ms: u64,
}

impl WallClock {
    /// `at` was `unix_ms` milliseconds after the Unix epoch.
    pub fn new(at: Instant, unix_ms: u64) -> Self {
        WallClock { at, unix_ms }
    }

    /// Milliseconds since the Unix epoch at `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        if now >= self.at {
            self.unix_ms
                .saturating_add(now.duration_since(self.at).as_millis() as u64)
        } else {
            self.unix_ms
                .saturating_sub(self.at.duration_since(now).as_millis() as u64)
        }
    }
}

/// What a sender signs with: its key and its clock.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The private key.
    pub key: SecretKey,
    /// The sender's wall clock.
    pub clock: WallClock,
}

/// How a packet being written is ended: unsigned, or signed at a given time.
#[derive(Clone, Copy)]
pub enum Seal<'a> {
    /// A one-byte trailer saying "unsigned".
    Unsigned,
    /// Signed with this key; the time is the sender's wall clock in Unix milliseconds.
    Signed(&'a SecretKey, u64),
}

impl Seal<'_> {
    /// Appends the trailer to `out`, which holds the whole datagram so far.
    pub(crate) fn finish(self, out: &mut Vec<u8>) {
        match self {
            Seal::Unsigned => out.push(UNSIGNED),
            Seal::Signed(key, time_ms) => {
                out.push(ED25519);
                out.extend_from_slice(&key.public().id());
                out.extend_from_slice(&time_ms.to_be_bytes());
                let signature = key.sign(out);
                out.extend_from_slice(&signature);
            }
        }
    }
}

/// A parsed trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No signature.
    Unsigned,
    /// Signed by the key `key` at `time_ms`; `signed_len` bytes of the datagram are covered.
    Signed {
        /// Who signed, by key id.
        key: KeyId,
        /// The sender's wall clock, Unix milliseconds.
        time_ms: u64,
        /// The signature.
        signature: [u8; SIGNATURE_LEN],
        /// How many bytes from the datagram's start the signature covers.
        signed_len: usize,
    },
}

/// Why a packet's signature is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// No signature where one is required.
    Unsigned,
    /// Signed by a key that is not trusted (or not the session's).
    UnknownKey,
    /// The signature does not verify: forged or damaged.
    BadSignature,
    /// Signed too long ago or too far ahead of this PC's clock: a replay, or a wrong clock.
    Stale,
}

/// The keys a receiver trusts, and how far a signed packet's time may be from its own clock.
#[derive(Debug, Clone)]
pub struct Trust {
    keys: HashMap<KeyId, PublicKey>,
    clock: WallClock,
    max_skew: Duration,
}

/// How far apart a signed packet's time and the receiver's clock may be by default: lab PCs
/// keep time by NTP; a recording from another lesson is hours old.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(300);

impl Trust {
    /// Trusts `keys`, checking times against `clock` within `max_skew`.
    pub fn new(
        keys: impl IntoIterator<Item = PublicKey>,
        clock: WallClock,
        max_skew: Duration,
    ) -> Self {
        Trust {
            keys: keys.into_iter().map(|k| (k.id(), k)).collect(),
            clock,
            max_skew,
        }
    }

    /// The trusted key with this id.
    pub fn key(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// Checks a packet's trailer: signed, by a trusted key (by `only`, if given), at a time near
    /// `now`, and the signature verifies. Cheap checks first: a flood of forgeries costs a lookup
    /// each, and a signature verification only when the key and time are right.
    pub fn check(
        &self,
        now: Instant,
        datagram: &[u8],
        auth: &Auth,
        only: Option<&KeyId>,
    ) -> Result<KeyId, Rejected> {
        let Auth::Signed {
            key,
            time_ms,
            signature,
            signed_len,
        } = auth
        else {
            return Err(Rejected::Unsigned);
        };
        if only.is_some_and(|o| o != key) {
            return Err(Rejected::UnknownKey);
        }
        let public = self.keys.get(key).ok_or(Rejected::UnknownKey)?;
        let ours = self.clock.unix_ms(now);
        if ours.abs_diff(*time_ms) > self.max_skew.as_millis() as u64 {
            return Err(Rejected::Stale);
        }
        let message = datagram.get(..*signed_len).ok_or(Rejected::BadSignature)?;
        if !public.verify(message, signature) {
            return Err(Rejected::BadSignature);
        }
        Ok(*key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    #[test]
    fn keys_print_and_parse_and_typos_are_caught() {
        let k = key(7);
        let text = k.public().to_string();
        assert!(text.starts_with("edm1-") && text.len() < 64, "{text}");
        assert_eq!(text.parse::<PublicKey>(), Ok(k.public()));
        assert_eq!(format!(" {text}\n").parse::<PublicKey>(), Ok(k.public()));
        assert_eq!(
            text.to_uppercase().replace("EDM1-", "edm1-").parse(),
            Ok(k.public())
        );
        // One character changed, one missing, the wrong kind of key, nonsense.
        let mut typo = text.clone().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(typo.parse::<PublicKey>(), Err(KeyError::Damaged));
        assert_eq!(
            text[..text.len() - 1].parse::<PublicKey>(),
            Err(KeyError::Damaged)
        );
        assert_eq!(k.to_text().parse::<PublicKey>(), Err(KeyError::Prefix));
        assert_eq!(
            "ssh-ed25519 AAAA".parse::<PublicKey>(),
            Err(KeyError::Prefix)
        );
        let back = SecretKey::from_text(&format!("# a comment\n\n{}\n", k.to_text())).unwrap();
        assert_eq!(back.public(), k.public());
        assert!(SecretKey::from_text(&text).is_err());
        assert_eq!(k.public().fingerprint().len(), 19);
    }

    #[test]
    fn the_ed25519_key_agrees_as_x25519() {
        let (a, b) = (key(1), key(2));
        let ab = a.x25519().diffie_hellman(&b.public().x25519());
        let ba = b.x25519().diffie_hellman(&a.public().x25519());
        assert_eq!(ab.as_bytes(), ba.as_bytes());
    }

    #[test]
    fn signatures_are_checked_for_key_time_and_bytes() {
        let t0 = Instant::now();
        let clock = WallClock::new(t0, 1_800_000_000_000);
        let (teacher, student) = (key(1), key(2));
        let trust = Trust::new([teacher.public()], clock, Duration::from_secs(300));
        let sign = |k: &SecretKey, time: u64| {
            let mut v = b"edm-cast packet".to_vec();
            Seal::Signed(k, time).finish(&mut v);
            let n = v.len();
            let auth = Auth::Signed {
                key: v[n - 80..n - 72].try_into().unwrap(),
                time_ms: u64::from_be_bytes(v[n - 72..n - 64].try_into().unwrap()),
                signature: v[n - 64..].try_into().unwrap(),
                signed_len: n - 64,
            };
            (v, auth)
        };
        let now = t0 + Duration::from_secs(10);
        let (v, auth) = sign(&teacher, 1_800_000_010_000);
        assert_eq!(trust.check(now, &v, &auth, None), Ok(teacher.public().id()));
        assert_eq!(
            trust.check(now, &v, &auth, Some(&student.public().id())),
            Err(Rejected::UnknownKey)
        );
        let mut flipped = v.clone();
        flipped[3] ^= 1;
        assert_eq!(
            trust.check(now, &flipped, &auth, None),
            Err(Rejected::BadSignature)
        );
        let (v, auth) = sign(&student, 1_800_000_010_000);
        assert_eq!(trust.check(now, &v, &auth, None), Err(Rejected::UnknownKey));
        // Recorded in another lesson: an hour old.
        let (v, auth) = sign(&teacher, 1_800_000_010_000 - 3_600_000);
        assert_eq!(trust.check(now, &v, &auth, None), Err(Rejected::Stale));
        assert_eq!(
            trust.check(now, &v, &Auth::Unsigned, None),
            Err(Rejected::Unsigned)
        );
    }
}
