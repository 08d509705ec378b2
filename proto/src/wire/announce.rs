//! ANNOUNCE (0x01): what the session carries and where to send feedback. Repeated for late joiners.

use super::{ParseError, Reader};
use bytes::BufMut;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Smallest symbol size accepted (bytes).
pub const MIN_SYMBOL_SIZE: u16 = 16;
/// Largest source block accepted (symbols): bounds a receiver's memory and decode time per block.
pub const MAX_BLOCK_SYMBOLS: u16 = 8192;
/// Longest file name carried (bytes of UTF-8).
pub const MAX_NAME_LEN: usize = 1024;

/// Where receivers send STATUS and NEED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackAddr {
    /// The source address of the ANNOUNCE itself, at this port (the usual case on a LAN).
    Source {
        port: u16,
    },
    V4(Ipv4Addr, u16),
    V6(Ipv6Addr, u16),
}

impl FeedbackAddr {
    /// The address to send feedback to, given the address an ANNOUNCE came from.
    pub fn resolve(&self, announce_from: SocketAddr) -> SocketAddr {
        match *self {
            FeedbackAddr::Source { port } => SocketAddr::new(announce_from.ip(), port),
            FeedbackAddr::V4(ip, port) => SocketAddr::new(ip.into(), port),
            FeedbackAddr::V6(ip, port) => SocketAddr::new(ip.into(), port),
        }
    }

    /// Port (2 bytes), family (1: 0, 4 or 6), then the address (0, 4 or 16 bytes).
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let port = r.u16()?;
        let addr = match r.u8()? {
            0 => FeedbackAddr::Source { port },
            4 => FeedbackAddr::V4(Ipv4Addr::from(r.array::<4>()?), port),
            6 => FeedbackAddr::V6(Ipv6Addr::from(r.array::<16>()?), port),
            _ => return Err(ParseError::Invalid("feedback address family")),
        };
        if port == 0 {
            return Err(ParseError::Invalid("feedback port"));
        }
        Ok(addr)
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        match *self {
            FeedbackAddr::Source { port } => {
                out.put_u16(port);
                out.put_u8(0);
            }
            FeedbackAddr::V4(ip, port) => {
                out.put_u16(port);
                out.put_u8(4);
                out.put_slice(&ip.octets());
            }
            FeedbackAddr::V6(ip, port) => {
                out.put_u16(port);
                out.put_u8(6);
                out.put_slice(&ip.octets());
            }
        }
    }
}

/// `flags` bits.
const SIZE_KNOWN: u8 = 0x01;
const MD5_KNOWN: u8 = 0x02;
const PADDED: u8 = 0x04;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// Bytes in the file; `None` while a growing source has not ended.
    pub file_size: Option<u64>,
    /// MD5 of the whole file; `None` until the sender has read all of it.
    pub md5: Option<[u8; 16]>,
    /// Every block, the last included, has K symbols (the session began without a known size).
    pub padded: bool,
    /// T: bytes per symbol; every DATA symbol is exactly this long.
    pub symbol_size: u16,
    /// K: source symbols per block (the last block may have fewer).
    pub block_symbols: u16,
    /// W: how many consecutive blocks the first pass interleaves.
    pub interleave: u16,
    /// Blocks whose first pass is complete: receivers may report what they lack of these.
    pub sent_blocks: u32,
    pub feedback: FeedbackAddr,
    /// The file's name as the sender has it; receivers reduce it to a plain file name.
    pub name: String,
}

impl Announce {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let file_size = r.u64()?;
        let md5: [u8; 16] = r.array()?;
        let flags = r.u8()?;
        let symbol_size = r.u16()?;
        let block_symbols = r.u16()?;
        let interleave = r.u16()?;
        let sent_blocks = r.u32()?;
        let feedback = FeedbackAddr::parse(r)?;
        let name_len = r.u16()? as usize;
        let name = r.text(name_len, MAX_NAME_LEN, "name")?;
        if !(MIN_SYMBOL_SIZE..=super::MAX_SYMBOL_SIZE).contains(&symbol_size) {
            return Err(ParseError::Invalid("symbol size"));
        }
        if block_symbols == 0 || block_symbols > MAX_BLOCK_SYMBOLS {
            return Err(ParseError::Invalid("block symbols"));
        }
        if interleave == 0 {
            return Err(ParseError::Invalid("interleave"));
        }
        // One encoding per meaning: unknown fields are zero, and an MD5 needs the size.
        let size_known = flags & SIZE_KNOWN != 0;
        let md5_known = flags & MD5_KNOWN != 0;
        if flags & !(SIZE_KNOWN | MD5_KNOWN | PADDED) != 0
            || (md5_known && !size_known)
            || (!size_known && file_size != 0)
            || (!md5_known && md5 != [0; 16])
        {
            return Err(ParseError::Invalid("flags"));
        }
        Ok(Announce {
            file_size: size_known.then_some(file_size),
            md5: md5_known.then_some(md5),
            padded: flags & PADDED != 0,
            symbol_size,
            block_symbols,
            interleave,
            sent_blocks,
            feedback,
            name,
        })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        out.put_u64(self.file_size.unwrap_or(0));
        out.put_slice(&self.md5.unwrap_or_default());
        let known = |b: bool, flag: u8| if b { flag } else { 0 };
        out.put_u8(
            known(self.file_size.is_some(), SIZE_KNOWN)
                | known(self.file_size.is_some() && self.md5.is_some(), MD5_KNOWN)
                | known(self.padded, PADDED),
        );
        out.put_u16(self.symbol_size);
        out.put_u16(self.block_symbols);
        out.put_u16(self.interleave);
        out.put_u32(self.sent_blocks);
        self.feedback.write(out);
        let name = super::feedback::truncate_utf8(&self.name, MAX_NAME_LEN);
        out.put_u16(name.len() as u16);
        out.put_slice(name.as_bytes());
    }
}
