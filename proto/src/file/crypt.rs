//! `send --encrypt`: a session key seals every DATA symbol (AES-256-GCM), and KEYS carries it to
//! each listed receiver, wrapped with a key that X25519 (RFC 7748) and HKDF-SHA256 (RFC 5869) derive
//! from the sender's ephemeral key and the receiver's own key. A student without a listed key
//! learns nothing from the group; a forged DATA packet fails its tag before it reaches a decoder.

use crate::auth::{PublicKey, SecretKey};
use crate::wire::{KeyWrap, TAG_LEN, WRAPPED_KEY_LEN};
use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

const WRAP_INFO: &[u8] = b"edm-cast v3 session key";

/// The key that seals a session's symbols.
#[derive(Clone)]
pub struct SessionKey(Aes256Gcm);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// A symbol's nonce: session, block and ESI. The sender never sends the same symbol of a session
/// twice (every repair burst takes fresh ESIs), so no nonce repeats under one key.
fn nonce(session: u32, block: u32, esi: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&session.to_be_bytes());
    n[4..8].copy_from_slice(&block.to_be_bytes());
    n[8..].copy_from_slice(&esi.to_be_bytes());
    n
}

impl SessionKey {
    /// The session key from 32 random bytes (drawn by the shell).
    pub fn new(key: [u8; 32]) -> Self {
        SessionKey(Aes256Gcm::new(&key.into()))
    }

    /// Seals the symbol at the end of `datagram` in place (appending the tag); `header` is how many
    /// bytes before it are DATA's header, authenticated but not encrypted.
    pub fn seal(&self, session: u32, block: u32, esi: u32, datagram: &mut Vec<u8>, header: usize) {
        let (aad, symbol) = datagram.split_at_mut(header);
        let tag = self
            .0
            .encrypt_in_place_detached(&nonce(session, block, esi).into(), aad, symbol)
            .expect("a symbol is far below AES-GCM's length limit");
        datagram.extend_from_slice(&tag);
    }

    /// The symbol of a sealed DATA datagram (`header` bytes of header, then symbol and tag), or
    /// `None` if the tag does not verify: forged, damaged, or sealed with another key.
    pub fn open(
        &self,
        session: u32,
        block: u32,
        esi: u32,
        datagram: &[u8],
        header: usize,
    ) -> Option<Vec<u8>> {
        let (aad, sealed) = datagram.split_at_checked(header)?;
        if sealed.len() <= TAG_LEN {
            return None;
        }
        let (symbol, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut out = symbol.to_vec();
        self.0
            .decrypt_in_place_detached(
                &nonce(session, block, esi).into(),
                aad,
                &mut out,
                tag.into(),
            )
            .ok()?;
        Some(out)
    }
}

/// The key that wraps the session key for one receiver.
fn wrap_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &PublicKey,
    session: u32,
) -> Aes256Gcm {
    let mut salt = ephemeral.to_vec();
    salt.extend_from_slice(&recipient.to_bytes());
    let mut info = WRAP_INFO.to_vec();
    info.extend_from_slice(&session.to_be_bytes());
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(&info, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Aes256Gcm::new(&key.into())
}

/// The session key `key`, wrapped for each of `recipients`, with the sender's ephemeral secret
/// (32 random bytes drawn by the shell). Returns the ephemeral public key KEYS carries.
pub fn wrap(
    key: &[u8; 32],
    ephemeral_secret: [u8; 32],
    recipients: &[PublicKey],
    session: u32,
) -> ([u8; 32], Vec<KeyWrap>) {
    let secret = x25519_dalek::StaticSecret::from(ephemeral_secret);
    let ephemeral = x25519_dalek::PublicKey::from(&secret).to_bytes();
    let wraps = recipients
        .iter()
        .map(|r| {
            let shared = secret.diffie_hellman(&r.x25519());
            let aead = wrap_key(shared.as_bytes(), &ephemeral, r, session);
            let sealed = aead
                .encrypt(
                    &Nonce::default(),
                    Payload {
                        msg: key,
                        aad: &r.id(),
                    },
                )
                .expect("32 bytes is far below AES-GCM's length limit");
            KeyWrap {
                recipient: r.id(),
                wrapped: sealed.try_into().expect("32 bytes of key and 16 of tag"),
            }
        })
        .collect();
    (ephemeral, wraps)
}

/// The session key from the wrap made for `own`, or `None` if it does not open (not for this key,
/// or forged).
pub fn unwrap(
    own: &SecretKey,
    ephemeral: &[u8; 32],
    wrapped: &[u8; WRAPPED_KEY_LEN],
    session: u32,
) -> Option<SessionKey> {
    let public = own.public();
    let shared = own
        .x25519()
        .diffie_hellman(&x25519_dalek::PublicKey::from(*ephemeral));
    // A low-order ephemeral key gives an all-zero secret: refuse it rather than derive from it.
    if !shared.was_contributory() {
        return None;
    }
    let aead = wrap_key(shared.as_bytes(), ephemeral, &public, session);
    let key = aead
        .decrypt(
            &Nonce::default(),
            Payload {
                msg: wrapped,
                aad: &public.id(),
            },
        )
        .ok()?;
    let key: [u8; 32] = key.try_into().ok()?;
    Some(SessionKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_receiver_opens_what_the_sender_sealed_and_no_one_else_does() {
        let (pc1, pc2, student) = (
            SecretKey::from_seed([1; 32]),
            SecretKey::from_seed([2; 32]),
            SecretKey::from_seed([3; 32]),
        );
        let (ephemeral, wraps) = wrap(&[9; 32], [7; 32], &[pc1.public(), pc2.public()], 42);
        assert_eq!(wraps.len(), 2);
        let key = unwrap(&pc2, &ephemeral, &wraps[1].wrapped, 42).expect("pc2 is listed");
        assert!(unwrap(&student, &ephemeral, &wraps[0].wrapped, 42).is_none());
        assert!(
            unwrap(&pc1, &ephemeral, &wraps[0].wrapped, 43).is_none(),
            "bound to the session"
        );

        let sender = SessionKey::new([9; 32]);
        let mut datagram = b"HEADER..".to_vec();
        datagram.extend_from_slice(b"a symbol of the file");
        sender.seal(42, 5, 1025, &mut datagram, 8);
        assert_eq!(datagram.len(), 8 + 20 + TAG_LEN);
        assert_ne!(&datagram[8..28], b"a symbol of the file");
        assert_eq!(
            key.open(42, 5, 1025, &datagram, 8).unwrap(),
            b"a symbol of the file"
        );
        // Another place in the file, a changed header, a flipped bit, a short packet: refused.
        assert!(key.open(42, 5, 1026, &datagram, 8).is_none());
        let mut bad = datagram.clone();
        bad[0] ^= 1;
        assert!(key.open(42, 5, 1025, &bad, 8).is_none());
        let mut bad = datagram.clone();
        bad[12] ^= 1;
        assert!(key.open(42, 5, 1025, &bad, 8).is_none());
        assert!(key.open(42, 5, 1025, &datagram[..20], 8).is_none());
        assert!(
            SessionKey::new([8; 32])
                .open(42, 5, 1025, &datagram, 8)
                .is_none()
        );
    }
}
