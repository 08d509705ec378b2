//! The file protocol's wire format, version 2 (`proto/PROTOCOL.md` is the spec; this module follows it field by field).
//!
//! Every datagram starts with the same 8-byte header; the type byte selects the body. All integers are
//! big-endian. Parsing checks every length before it slices, so no input can make it panic.

mod announce;
mod data;
mod feedback;
mod request;

pub use announce::{Announce, FeedbackAddr, MAX_BLOCK_SYMBOLS, MAX_NAME_LEN, MIN_SYMBOL_SIZE};
pub use data::{DATA_OVERHEAD, Data, MAX_ESI};
pub use feedback::{
    Ack, End, EndReason, MAX_NEED_ENTRIES, MAX_RECEIVER_NAME, Need, NeedEntry, ReceiverState,
    Status,
};

pub use request::{MAX_REASON_LEN, MAX_URL_LEN, Offer, Refuse, Request, Server};

use bytes::BufMut;

/// First two bytes of every edm-cast datagram.
pub const MAGIC: [u8; 2] = [0xED, 0xC5];
/// The protocol version this crate speaks.
pub const VERSION: u8 = 2;
/// Bytes of the common header: magic, version, type, session id.
pub const HEADER_LEN: usize = 8;
/// Largest datagram edm-cast ever sends or accepts (fits a 1500-byte MTU under IPv4 and IPv6).
pub const MAX_DATAGRAM: usize = 1452;
/// Largest symbol that fits in a DATA datagram.
pub const MAX_SYMBOL_SIZE: u16 = (MAX_DATAGRAM - DATA_OVERHEAD) as u16;

/// Why a datagram was refused. Each kind is counted separately by the state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an edm-cast packet (bad magic)")]
    Foreign,
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    #[error("packet truncated")]
    Truncated,
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// The packet types of the file protocol and the download manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    Announce = 0x01,
    Data = 0x02,
    End = 0x03,
    Ack = 0x04,
    Status = 0x10,
    Need = 0x11,
    Server = 0x20,
    Request = 0x21,
    Offer = 0x22,
    Refuse = 0x23,
}

impl PacketType {
    fn from_u8(v: u8) -> Result<Self, ParseError> {
        Ok(match v {
            0x01 => Self::Announce,
            0x02 => Self::Data,
            0x03 => Self::End,
            0x04 => Self::Ack,
            0x10 => Self::Status,
            0x11 => Self::Need,
            0x20 => Self::Server,
            0x21 => Self::Request,
            0x22 => Self::Offer,
            0x23 => Self::Refuse,
            other => return Err(ParseError::UnknownType(other)),
        })
    }
}

/// The common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: PacketType,
    pub session: u32,
}

impl Header {
    pub fn parse(bytes: &[u8]) -> Result<(Self, &[u8]), ParseError> {
        let (kind, mut r) = open(bytes, MAGIC, VERSION)?;
        let kind = PacketType::from_u8(kind)?;
        let session = r.u32()?;
        Ok((Header { kind, session }, r.rest()))
    }

    pub fn write(&self, out: &mut impl BufMut) {
        out.put_slice(&MAGIC);
        out.put_u8(VERSION);
        out.put_u8(self.kind as u8);
        out.put_u32(self.session);
    }
}

/// The start both protocols share (the file protocol here, video in `crate::video::wire`): the
/// datagram's size, then magic (2 bytes), version and type. Returns the type byte and the rest.
pub(crate) fn open(
    bytes: &[u8],
    magic: [u8; 2],
    version: u8,
) -> Result<(u8, Reader<'_>), ParseError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(ParseError::Invalid(
            "datagram larger than the protocol allows",
        ));
    }
    let mut r = Reader::new(bytes);
    if r.bytes(2).ok() != Some(&magic[..]) {
        return Err(ParseError::Foreign);
    }
    let v = r.u8()?;
    let kind = r.u8()?;
    if v != version {
        return Err(ParseError::Version(v));
    }
    Ok((kind, r))
}

/// Any edm-cast datagram, parsed. Data borrows its symbol from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Announce(Announce),
    Data(Data<'a>),
    End(End),
    Ack(Ack),
    Status(Status),
    Need(Need),
    Server(Server),
    Request(Request),
    Offer(Offer),
    Refuse(Refuse),
}

impl<'a> Packet<'a> {
    /// Parses a whole datagram: header and body. Trailing bytes after a fixed-size body are refused.
    pub fn parse(bytes: &'a [u8]) -> Result<(u32, Packet<'a>), ParseError> {
        let (header, body) = Header::parse(bytes)?;
        let mut r = Reader::new(body);
        let packet = match header.kind {
            PacketType::Announce => Packet::Announce(Announce::parse(&mut r)?),
            PacketType::Data => Packet::Data(Data::parse(&mut r)?),
            PacketType::End => Packet::End(End::parse(&mut r)?),
            PacketType::Ack => Packet::Ack(Ack::parse(&mut r)?),
            PacketType::Status => Packet::Status(Status::parse(&mut r)?),
            PacketType::Need => Packet::Need(Need::parse(&mut r)?),
            PacketType::Server => Packet::Server(Server::parse(&mut r)?),
            PacketType::Request => Packet::Request(Request::parse(&mut r)?),
            PacketType::Offer => Packet::Offer(Offer::parse(&mut r)?),
            PacketType::Refuse => Packet::Refuse(Refuse::parse(&mut r)?),
        };
        r.finish()?;
        Ok((header.session, packet))
    }

    pub fn kind(&self) -> PacketType {
        match self {
            Packet::Announce(_) => PacketType::Announce,
            Packet::Data(_) => PacketType::Data,
            Packet::End(_) => PacketType::End,
            Packet::Ack(_) => PacketType::Ack,
            Packet::Status(_) => PacketType::Status,
            Packet::Need(_) => PacketType::Need,
            Packet::Server(_) => PacketType::Server,
            Packet::Request(_) => PacketType::Request,
            Packet::Offer(_) => PacketType::Offer,
            Packet::Refuse(_) => PacketType::Refuse,
        }
    }

    /// Writes header and body.
    pub fn write(&self, session: u32, out: &mut impl BufMut) {
        Header {
            kind: self.kind(),
            session,
        }
        .write(out);
        match self {
            Packet::Announce(p) => p.write(out),
            Packet::Data(p) => p.write(out),
            Packet::End(p) => p.write(out),
            Packet::Ack(p) => p.write(out),
            Packet::Status(p) => p.write(out),
            Packet::Need(p) => p.write(out),
            Packet::Server(p) => p.write(out),
            Packet::Request(p) => p.write(out),
            Packet::Offer(p) => p.write(out),
            Packet::Refuse(p) => p.write(out),
        }
    }

    /// The datagram as a fresh buffer (tests and rare control packets; the data path writes in place).
    pub fn to_vec(&self, session: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.write(session, &mut v);
        v
    }
}

/// A bounds-checked cursor: every read either succeeds or returns `Truncated`.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.buf.len() < n {
            return Err(ParseError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// `len` bytes of UTF-8, refused if `len` is above `max`.
    pub(crate) fn text(
        &mut self,
        len: usize,
        max: usize,
        what: &'static str,
    ) -> Result<String, ParseError> {
        if len > max {
            return Err(ParseError::Invalid(what));
        }
        std::str::from_utf8(self.bytes(len)?)
            .map(str::to_owned)
            .map_err(|_| ParseError::Invalid(what))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn finish(&self) -> Result<(), ParseError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ParseError::Invalid("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn samples() -> Vec<Packet<'static>> {
        vec![
            Packet::Announce(Announce {
                file_size: Some(67_108_864),
                md5: Some([7; 16]),
                padded: false,
                symbol_size: 1408,
                block_symbols: 1024,
                interleave: 8,
                sent_blocks: 12,
                feedback: FeedbackAddr::Source { port: 40000 },
                name: "ubuntu.iso".into(),
            }),
            Packet::Announce(Announce {
                file_size: None,
                md5: None,
                padded: true,
                symbol_size: 16,
                block_symbols: 1,
                interleave: 1,
                sent_blocks: 0,
                feedback: FeedbackAddr::V4(Ipv4Addr::new(10, 0, 0, 1), 9),
                name: String::new(),
            }),
            Packet::Announce(Announce {
                file_size: Some(u64::MAX >> 8),
                md5: None,
                padded: true,
                symbol_size: 1408,
                block_symbols: 4096,
                interleave: 4,
                sent_blocks: 3,
                feedback: FeedbackAddr::V6(Ipv6Addr::LOCALHOST, 65535),
                name: "données.bin".into(),
            }),
            Packet::Data(Data {
                block: 70_000,
                esi: 1030,
                symbol: &[0xAB; 1408],
            }),
            Packet::End(End {
                reason: EndReason::Complete,
            }),
            Packet::End(End {
                reason: EndReason::Aborted,
            }),
            Packet::Ack(Ack { receiver: 42 }),
            Packet::Status(Status {
                receiver: 0xDEAD_BEEF,
                state: ReceiverState::Receiving,
                blocks_done: 17,
                name: "lab-pc-07".into(),
            }),
            Packet::Need(Need {
                receiver: 5,
                entries: vec![
                    NeedEntry {
                        block: 3,
                        need: 55,
                        seen: 1040,
                    },
                    NeedEntry {
                        block: 9,
                        need: 1025,
                        seen: 0,
                    },
                ],
            }),
            Packet::Server(Server {
                requests: FeedbackAddr::Source { port: 5006 },
            }),
            Packet::Request(Request {
                request: 7,
                url: "https://example.org/ubuntu-24.04.iso".into(),
            }),
            Packet::Offer(Offer {
                request: 7,
                session: 0xABCD_0001,
                port: 5008,
            }),
            Packet::Refuse(Refuse {
                request: 7,
                reason: "10.0.0.5 is a private address".into(),
            }),
        ]
    }

    #[test]
    fn every_type_round_trips() {
        for p in samples() {
            let bytes = p.to_vec(0x0102_0304);
            let (session, back) = Packet::parse(&bytes).unwrap();
            assert_eq!(session, 0x0102_0304);
            assert_eq!(back, p);
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        for p in samples() {
            let bytes = p.to_vec(1);
            for cut in 0..bytes.len() {
                // Data's symbol is "the rest", so only cuts into its fixed part must fail.
                if matches!(p, Packet::Data(_)) && cut > HEADER_LEN + 8 {
                    continue;
                }
                assert!(Packet::parse(&bytes[..cut]).is_err(), "{p:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn header_errors_are_typed() {
        assert_eq!(Packet::parse(b"GET / HTTP/1.1"), Err(ParseError::Foreign));
        assert_eq!(Packet::parse(&[]), Err(ParseError::Foreign));
        let mut v = Packet::Ack(Ack { receiver: 1 }).to_vec(9);
        v[2] = 1;
        assert_eq!(Packet::parse(&v), Err(ParseError::Version(1)));
        v[2] = VERSION;
        v[3] = 0x7F;
        assert_eq!(Packet::parse(&v), Err(ParseError::UnknownType(0x7F)));
        let mut v = Packet::Ack(Ack { receiver: 1 }).to_vec(9);
        v.push(0);
        assert_eq!(
            Packet::parse(&v),
            Err(ParseError::Invalid("trailing bytes"))
        );
    }

    #[test]
    fn announce_flags_have_one_encoding() {
        let good = Packet::Announce(Announce {
            file_size: None,
            md5: None,
            padded: true,
            symbol_size: 1408,
            block_symbols: 1024,
            interleave: 8,
            sent_blocks: 0,
            feedback: FeedbackAddr::Source { port: 5007 },
            name: "a".into(),
        })
        .to_vec(1);
        assert!(Packet::parse(&good).is_ok());
        // flags at offset 32: MD5 without size, unknown bits; then a size that is "unknown".
        for flags in [0x02, 0x06, 0x08, 0x80] {
            let mut v = good.clone();
            v[32] = flags;
            assert_eq!(
                Packet::parse(&v),
                Err(ParseError::Invalid("flags")),
                "{flags:#x}"
            );
        }
        let mut v = good.clone();
        v[15] = 1;
        assert_eq!(Packet::parse(&v), Err(ParseError::Invalid("flags")));
    }

    /// The example in PROTOCOL.md, byte for byte.
    #[test]
    fn spec_example_parses() {
        let bytes: [u8; 24] = [
            0xED, 0xC5, 0x02, 0x02, // magic, version 2, DATA
            0x12, 0x34, 0x56, 0x78, // session
            0x00, 0x00, 0x00, 0x05, // block 5
            0x00, 0x00, 0x04, 0x01, // ESI 1025
            1, 2, 3, 4, 5, 6, 7, 8, // symbol (8 bytes in this example)
        ];
        let (session, p) = Packet::parse(&bytes).unwrap();
        assert_eq!(session, 0x1234_5678);
        assert_eq!(
            p,
            Packet::Data(Data {
                block: 5,
                esi: 1025,
                symbol: &[1, 2, 3, 4, 5, 6, 7, 8]
            })
        );
    }

    #[test]
    fn fuzz_like_inputs_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for p in samples() {
            let good = p.to_vec(3);
            for _ in 0..2000 {
                let mut v = good.clone();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = 2 + (x as usize) % (v.len() - 2);
                v[i] = (x >> 32) as u8;
                let _ = Packet::parse(&v);
            }
        }
    }
}
