//! KEYS (0x07): an encrypted session's key, wrapped for each receiver the teacher listed
//! (`send --encrypt --to KEY`). The sender's ephemeral X25519 key and each receiver's key agree on
//! a key (RFC 7748) that HKDF-SHA256 (RFC 5869) turns into the key that seals the session key
//! (AES-256-GCM). Signed when the sender has a key; repeated, like ANNOUNCE, for late joiners.

use super::{ParseError, Reader};
use crate::auth::KeyId;
use bytes::BufMut;

/// Bytes of a wrapped session key: 32 bytes of key and a 16-byte tag.
pub const WRAPPED_KEY_LEN: usize = 48;
/// Most receivers one KEYS packet lists; a larger class takes several.
pub const MAX_KEY_WRAPS: usize = 20;

/// The session key for one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWrap {
    /// The receiver's key, by id.
    pub recipient: KeyId,
    /// The session key, sealed for it.
    pub wrapped: [u8; WRAPPED_KEY_LEN],
}

/// KEYS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The sender's ephemeral X25519 public key for this session.
    pub ephemeral: [u8; 32],
    /// Which of the session's KEYS packets this is (a class larger than `MAX_KEY_WRAPS` takes
    /// several), from 0 ...
    pub part: u8,
    /// ... of this many: a receiver that has seen every part without its key is not listed.
    pub parts: u8,
    /// 1 to `MAX_KEY_WRAPS` receivers.
    pub wraps: Vec<KeyWrap>,
}

impl Keys {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let ephemeral = r.array()?;
        let (part, parts) = (r.u8()?, r.u8()?);
        if part >= parts {
            return Err(ParseError::Invalid("key part"));
        }
        let count = r.u8()? as usize;
        if count == 0 || count > MAX_KEY_WRAPS {
            return Err(ParseError::Invalid("key count"));
        }
        let wraps = (0..count)
            .map(|_| {
                Ok(KeyWrap {
                    recipient: r.array()?,
                    wrapped: r.array()?,
                })
            })
            .collect::<Result<_, ParseError>>()?;
        Ok(Keys {
            ephemeral,
            part,
            parts,
            wraps,
        })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        let wraps = &self.wraps[..self.wraps.len().min(MAX_KEY_WRAPS)];
        out.put_slice(&self.ephemeral);
        out.put_u8(self.part);
        out.put_u8(self.parts);
        out.put_u8(wraps.len() as u8);
        for w in wraps {
            out.put_slice(&w.recipient);
            out.put_slice(&w.wrapped);
        }
    }
}
