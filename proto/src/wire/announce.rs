//! ANNOUNCE (0x01): what the session carries and where to send feedback. Repeated for late joiners;
//! signed when the sender has a key.

use super::{ParseError, Reader};
use bytes::BufMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
        /// The sender's feedback port.
        port: u16,
    },
    /// An IPv4 address and port.
    V4(Ipv4Addr, u16),
    /// An IPv6 address and port.
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

    /// Whether a packet naming this address may have come from `from`: one that names an address
    /// comes from it (a signed one replayed from elsewhere is refused by that).
    pub fn names_source(&self, from: IpAddr) -> bool {
        match *self {
            FeedbackAddr::Source { .. } => true,
            FeedbackAddr::V4(ip, _) => from == IpAddr::V4(ip),
            FeedbackAddr::V6(ip, _) => from == IpAddr::V6(ip),
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
/// Both whole-file digests, MD5 and SHA-256.
const DIGESTS_KNOWN: u8 = 0x02;
const PADDED: u8 = 0x04;
const ENCRYPTED: u8 = 0x08;
/// A sync session (PROTOCOL.md 5.9): receivers report what they already have.
const SYNC: u8 = 0x10;
/// The first pass staggers its blocks (PROTOCOL.md 5.3): up to W of them at a time, not aligned
/// windows.
const STAGGERED: u8 = 0x20;

/// The whole file's digests: MD5 for people's `md5sum`, SHA-256 for `sha256sum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigests {
    /// MD5 (RFC 1321).
    pub md5: [u8; 16],
    /// SHA-256 (FIPS 180-4).
    pub sha256: [u8; 32],
}

/// Computes both digests of a stream of bytes (the sender's file, a download, the receiver's
/// copy).
#[derive(Clone, Default)]
pub struct FileHasher {
    md5: md5::Md5,
    sha256: sha2::Sha256,
}

impl FileHasher {
    /// More of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.md5.update(bytes);
        self.sha256.update(bytes);
    }

    /// The digests of everything given.
    pub fn finish(self) -> FileDigests {
        use sha2::Digest;
        FileDigests {
            md5: self.md5.finalize().into(),
            sha256: self.sha256.finalize().into(),
        }
    }
}

/// What a session carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// Bytes in the file; `None` while a growing source has not ended.
    pub file_size: Option<u64>,
    /// The whole file's digests; `None` until the sender has read all of it.
    pub digests: Option<FileDigests>,
    /// Every block, the last included, has K symbols (the session began without a known size).
    pub padded: bool,
    /// DATA symbols are sealed with the session key (KEYS carries it to the listed receivers).
    pub encrypted: bool,
    /// A sync session: no first pass beyond the stream's first bytes (a tree's manifest); each
    /// receiver reports what it already has, and only what someone lacks is sent (5.9).
    pub sync: bool,
    /// The first pass staggers its blocks, W at a time, one joining as one leaves (5.3); without
    /// it (an older sender), it goes in aligned windows of W blocks that never overlap.
    pub staggered: bool,
    /// T: bytes per symbol; every DATA symbol is exactly this long.
    pub symbol_size: u16,
    /// K: source symbols per block (the last block may have fewer).
    pub block_symbols: u16,
    /// W: how many consecutive blocks the first pass interleaves.
    pub interleave: u16,
    /// Blocks whose first pass is complete: receivers may report what they lack of these.
    pub sent_blocks: u32,
    /// Where receivers send STATUS and NEED.
    pub feedback: FeedbackAddr,
    /// The file's name as the sender has it; receivers reduce it to a plain file name.
    pub name: String,
}

impl Announce {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let file_size = r.u64()?;
        let md5: [u8; 16] = r.array()?;
        let sha256: [u8; 32] = r.array()?;
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
        // One encoding per meaning: unknown fields are zero, and digests need the size.
        let size_known = flags & SIZE_KNOWN != 0;
        let digests_known = flags & DIGESTS_KNOWN != 0;
        if flags & !(SIZE_KNOWN | DIGESTS_KNOWN | PADDED | ENCRYPTED | SYNC | STAGGERED) != 0
            || (digests_known && !size_known)
            || (!size_known && file_size != 0)
            || (!digests_known && (md5 != [0; 16] || sha256 != [0; 32]))
        {
            return Err(ParseError::Invalid("flags"));
        }
        Ok(Announce {
            file_size: size_known.then_some(file_size),
            digests: digests_known.then_some(FileDigests { md5, sha256 }),
            padded: flags & PADDED != 0,
            encrypted: flags & ENCRYPTED != 0,
            sync: flags & SYNC != 0,
            staggered: flags & STAGGERED != 0,
            symbol_size,
            block_symbols,
            interleave,
            sent_blocks,
            feedback,
            name,
        })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        // Digests without a size are not sent: the size comes first.
        let digests = self.digests.filter(|_| self.file_size.is_some());
        out.put_u64(self.file_size.unwrap_or(0));
        out.put_slice(&digests.map_or([0; 16], |d| d.md5));
        out.put_slice(&digests.map_or([0; 32], |d| d.sha256));
        let known = |b: bool, flag: u8| if b { flag } else { 0 };
        out.put_u8(
            known(self.file_size.is_some(), SIZE_KNOWN)
                | known(digests.is_some(), DIGESTS_KNOWN)
                | known(self.padded, PADDED)
                | known(self.encrypted, ENCRYPTED)
                | known(self.sync, SYNC)
                | known(self.staggered, STAGGERED),
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
