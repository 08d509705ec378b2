//! Live video pieces, sans-IO (`proto/VIDEO.md` is the spec): RTP headers (`rtp`), H.264 over RTP
//! (`h264`), RaptorQ over windows of RTP packets (`fec`), and channels with viewer leases (`channel`).
//!
//! Video control and repair datagrams have their own 4-byte header and version, independent of the
//! file protocol's (`crate::wire::VERSION`), so either can change without the other. RTP media packets
//! are plain RFC 3550/6184 and carry no edm-cast header at all, so any player can read them.

pub mod channel;
pub mod fec;
pub mod h264;
pub mod rtp;

use crate::wire::{ParseError, Reader};
use bytes::BufMut;

/// First two bytes of every video control or repair datagram ("V" for video).
pub const MAGIC: [u8; 2] = [0xED, 0x56];
/// The video wire version this crate speaks.
pub const VERSION: u8 = 1;
/// Bytes of the video header: magic, version, type.
pub const HEADER_LEN: usize = 4;
/// Largest video datagram sent or accepted: fits a 1500-byte MTU under IPv4 and IPv6.
pub const MAX_DATAGRAM: usize = 1452;

/// Video packet types. Their own magic (`ED 56`) keeps them apart from the file protocol's, whose
/// types they may share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VideoType {
    Repair = 0x20,
    Announce = 0x21,
    Request = 0x22,
    Reply = 0x23,
    Leave = 0x24,
}

impl VideoType {
    fn from_u8(v: u8) -> Result<Self, ParseError> {
        Ok(match v {
            0x20 => Self::Repair,
            0x21 => Self::Announce,
            0x22 => Self::Request,
            0x23 => Self::Reply,
            0x24 => Self::Leave,
            other => return Err(ParseError::UnknownType(other)),
        })
    }
}

/// Checks the header and returns the type and a reader over the body.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<(VideoType, Reader<'_>), ParseError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(ParseError::Invalid(
            "datagram larger than the protocol allows",
        ));
    }
    if bytes.len() < 2 || bytes[..2] != MAGIC {
        return Err(ParseError::Foreign);
    }
    if bytes.len() < HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    if bytes[2] != VERSION {
        return Err(ParseError::Version(bytes[2]));
    }
    let kind = VideoType::from_u8(bytes[3])?;
    Ok((kind, Reader::new(&bytes[HEADER_LEN..])))
}

pub(crate) fn write_header(kind: VideoType, out: &mut impl BufMut) {
    out.put_slice(&MAGIC);
    out.put_u8(VERSION);
    out.put_u8(kind as u8);
}
