//! The file protocol's wire format, version 3 (`proto/PROTOCOL.md` is the spec; this module follows
//! it field by field), and the download manager's packets, which share its header.
//!
//! Every datagram starts with the same 8-byte header; the type byte selects the body. All integers
//! are big-endian. The packets that change what a receiver does end with a signature trailer
//! (`crate::auth`). Parsing checks every length before it slices, so no input can make it panic.

mod announce;
mod data;
mod feedback;
mod integrity;
mod keys;
mod request;

pub use announce::{
    Announce, FeedbackAddr, FileDigests, FileHasher, MAX_BLOCK_SYMBOLS, MAX_NAME_LEN,
    MIN_SYMBOL_SIZE,
};
pub use data::{DATA_OVERHEAD, Data, MAX_ESI, TAG_LEN};
pub use feedback::{
    Ack, End, EndReason, FailReason, MAX_NEED_ENTRIES, MAX_RECEIVER_NAME, Need, NeedEntry,
    NeedFlags, Pace, PaceEcho, ReceiverState, Status,
};
pub use integrity::{
    BlockDigest, Digests, Hashes, MAX_DIGESTS, MAX_HASHES, SymbolHash, block_digest, symbol_hash,
};
pub use keys::{KeyWrap, Keys, MAX_KEY_WRAPS, WRAPPED_KEY_LEN};
pub use request::{MAX_REASON_LEN, MAX_URL_LEN, Offer, Refuse, Request, Server};

use crate::auth::{self, Auth, Seal};
use bytes::BufMut;

/// First two bytes of every edm-cast datagram.
pub const MAGIC: [u8; 2] = [0xED, 0xC5];
/// The protocol version this crate speaks.
pub const VERSION: u8 = 3;
/// Bytes of the common header: magic, version, type, session id.
pub const HEADER_LEN: usize = 8;
/// Largest datagram edm-cast ever sends or accepts (fits a 1500-byte MTU under IPv4 and IPv6).
pub const MAX_DATAGRAM: usize = 1452;
/// Largest symbol that fits in a DATA datagram, with room for an AEAD tag when encrypted.
pub const MAX_SYMBOL_SIZE: u16 = (MAX_DATAGRAM - DATA_OVERHEAD - data::TAG_LEN) as u16;

/// Why a datagram was refused. Each kind is counted separately by the state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not edm-cast at all.
    #[error("not an edm-cast packet (bad magic)")]
    Foreign,
    /// Another version of the protocol.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// A type this version does not have.
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    /// Shorter than its fields.
    #[error("packet truncated")]
    Truncated,
    /// A field out of its range, or a meaning given two encodings.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// The packet types of the file protocol and the download manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// What the session carries (sender → group).
    Announce = 0x01,
    /// One symbol (sender → group).
    Data = 0x02,
    /// The sender leaves (sender → group).
    End = 0x03,
    /// A receiver's final word was heard (sender → receiver).
    Ack = 0x04,
    /// Block digests (sender → group).
    Digests = 0x05,
    /// Symbol hashes of a block being collected again (sender → group).
    Hashes = 0x06,
    /// The session key, wrapped for each listed receiver (sender → group).
    Keys = 0x07,
    /// Sender's clock and DATA count, for congestion control.
    Pace = 0x08,
    /// A receiver's hello, progress and final word (receiver → sender).
    Status = 0x10,
    /// What a receiver lacks (receiver → sender).
    Need = 0x11,
    /// A download manager is here (server → group).
    Server = 0x20,
    /// Please send this URL (student → server).
    Request = 0x21,
    /// The session that carries it (server → student).
    Offer = 0x22,
    /// It will not be sent (server → student).
    Refuse = 0x23,
}

impl PacketType {
    fn from_u8(v: u8) -> Result<Self, ParseError> {
        Ok(match v {
            0x01 => Self::Announce,
            0x02 => Self::Data,
            0x03 => Self::End,
            0x04 => Self::Ack,
            0x05 => Self::Digests,
            0x06 => Self::Hashes,
            0x07 => Self::Keys,
            0x08 => Self::Pace,
            0x10 => Self::Status,
            0x11 => Self::Need,
            0x20 => Self::Server,
            0x21 => Self::Request,
            0x22 => Self::Offer,
            0x23 => Self::Refuse,
            other => return Err(ParseError::UnknownType(other)),
        })
    }

    /// Whether packets of this type end with a signature trailer: those that change what a
    /// receiver (or a student's `get`) does. What receivers send is never signed.
    pub fn authenticated(self) -> bool {
        !matches!(self, Self::Data | Self::Status | Self::Need | Self::Request)
    }
}

/// `s` without what a terminal or a log would act on: control characters (ANSI escape sequences
/// start with one) and the bidirectional controls that reorder the text after them. Every name,
/// reason and URL from the network goes through this before a person sees it.
pub fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
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
    /// ANNOUNCE.
    Announce(Announce),
    /// DATA.
    Data(Data<'a>),
    /// END.
    End(End),
    /// ACK.
    Ack(Ack),
    /// DIGESTS.
    Digests(Digests),
    /// HASHES.
    Hashes(Hashes),
    /// KEYS.
    Keys(Keys),
    /// PACE.
    Pace(Pace),
    /// STATUS.
    Status(Status),
    /// NEED.
    Need(Need),
    /// SERVER.
    Server(Server),
    /// REQUEST.
    Request(Request),
    /// OFFER.
    Offer(Offer),
    /// REFUSE.
    Refuse(Refuse),
}

/// A parsed datagram: its session, its packet, and how it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The header's session id (0 for the download manager's packets).
    pub session: u32,
    /// The packet.
    pub packet: Packet<'a>,
    /// The signature trailer; `Auth::Unsigned` for types that have none.
    pub auth: Auth,
}

impl<'a> Packet<'a> {
    /// Parses a whole datagram: header, body and trailer. Trailing bytes are refused.
    pub fn parse(bytes: &'a [u8]) -> Result<Datagram<'a>, ParseError> {
        let (kind, mut r) = open(bytes, MAGIC, VERSION)?;
        let kind = PacketType::from_u8(kind)?;
        let session = r.u32()?;
        let packet = match kind {
            PacketType::Announce => Packet::Announce(Announce::parse(&mut r)?),
            PacketType::Data => Packet::Data(Data::parse(&mut r)?),
            PacketType::End => Packet::End(End::parse(&mut r)?),
            PacketType::Ack => Packet::Ack(Ack::parse(&mut r)?),
            PacketType::Digests => Packet::Digests(Digests::parse(&mut r)?),
            PacketType::Hashes => Packet::Hashes(Hashes::parse(&mut r)?),
            PacketType::Keys => Packet::Keys(Keys::parse(&mut r)?),
            PacketType::Pace => Packet::Pace(Pace::parse(&mut r)?),
            PacketType::Status => Packet::Status(Status::parse(&mut r)?),
            PacketType::Need => Packet::Need(Need::parse(&mut r)?),
            PacketType::Server => Packet::Server(Server::parse(&mut r)?),
            PacketType::Request => Packet::Request(Request::parse(&mut r)?),
            PacketType::Offer => Packet::Offer(Offer::parse(&mut r)?),
            PacketType::Refuse => Packet::Refuse(Refuse::parse(&mut r)?),
        };
        let auth = if kind.authenticated() {
            parse_trailer(bytes.len(), &mut r)?
        } else {
            Auth::Unsigned
        };
        r.finish()?;
        Ok(Datagram {
            session,
            packet,
            auth,
        })
    }

    /// Its type.
    pub fn kind(&self) -> PacketType {
        match self {
            Packet::Announce(_) => PacketType::Announce,
            Packet::Data(_) => PacketType::Data,
            Packet::End(_) => PacketType::End,
            Packet::Ack(_) => PacketType::Ack,
            Packet::Digests(_) => PacketType::Digests,
            Packet::Hashes(_) => PacketType::Hashes,
            Packet::Keys(_) => PacketType::Keys,
            Packet::Pace(_) => PacketType::Pace,
            Packet::Status(_) => PacketType::Status,
            Packet::Need(_) => PacketType::Need,
            Packet::Server(_) => PacketType::Server,
            Packet::Request(_) => PacketType::Request,
            Packet::Offer(_) => PacketType::Offer,
            Packet::Refuse(_) => PacketType::Refuse,
        }
    }

    /// Writes header and body, unsigned (a one-byte trailer where the type has one). `out` is
    /// cleared first: it holds exactly this datagram.
    pub fn write(&self, session: u32, out: &mut Vec<u8>) {
        self.write_sealed(session, Seal::Unsigned, out);
    }

    /// Writes header, body and, where the type has one, the trailer `seal` makes. `out` is cleared
    /// first: a signature covers the whole datagram.
    pub fn write_sealed(&self, session: u32, seal: Seal<'_>, out: &mut Vec<u8>) {
        out.clear();
        out.put_slice(&MAGIC);
        out.put_u8(VERSION);
        out.put_u8(self.kind() as u8);
        out.put_u32(session);
        match self {
            Packet::Announce(p) => p.write(out),
            Packet::Data(p) => p.write(out),
            Packet::End(p) => p.write(out),
            Packet::Ack(p) => p.write(out),
            Packet::Digests(p) => p.write(out),
            Packet::Hashes(p) => p.write(out),
            Packet::Keys(p) => p.write(out),
            Packet::Pace(p) => p.write(out),
            Packet::Status(p) => p.write(out),
            Packet::Need(p) => p.write(out),
            Packet::Server(p) => p.write(out),
            Packet::Request(p) => p.write(out),
            Packet::Offer(p) => p.write(out),
            Packet::Refuse(p) => p.write(out),
        }
        if self.kind().authenticated() {
            seal.finish(out);
        }
    }

    /// The datagram as a fresh buffer, unsigned (tests and rare control packets).
    pub fn to_vec(&self, session: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.write(session, &mut v);
        v
    }
}

/// The trailer: its kind, and for a signature the key, the time and the signature itself. Video
/// control datagrams end with the same trailer (`crate::video::wire`).
pub(crate) fn parse_trailer(len: usize, r: &mut Reader<'_>) -> Result<Auth, ParseError> {
    match r.u8()? {
        auth::UNSIGNED => Ok(Auth::Unsigned),
        auth::ED25519 => {
            let key = r.array()?;
            let time_ms = r.u64()?;
            let signature = r.array()?;
            // The signature is the datagram's last field.
            let signed_len = len - auth::SIGNATURE_LEN;
            Ok(Auth::Signed {
                key,
                time_ms,
                signature,
                signed_len,
            })
        }
        _ => Err(ParseError::Invalid("signature kind")),
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

    /// Bytes not read yet: an optional last field is told apart by them.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
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
    use crate::auth::{SecretKey, Trust, WallClock};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, Instant};

    fn announce() -> Announce {
        Announce {
            file_size: Some(67_108_864),
            digests: Some(FileDigests {
                md5: [7; 16],
                sha256: [8; 32],
            }),
            padded: false,
            encrypted: false,
            sync: false,
            staggered: true,
            symbol_size: 1408,
            block_symbols: 1024,
            interleave: 8,
            sent_blocks: 12,
            feedback: FeedbackAddr::Source { port: 40000 },
            name: "ubuntu.iso".into(),
        }
    }

    fn samples() -> Vec<Packet<'static>> {
        vec![
            Packet::Announce(announce()),
            Packet::Announce(Announce {
                file_size: None,
                digests: None,
                padded: true,
                encrypted: true,
                sync: true,
                staggered: true,
                symbol_size: 16,
                block_symbols: 1,
                interleave: 1,
                sent_blocks: 0,
                feedback: FeedbackAddr::V4(Ipv4Addr::new(10, 0, 0, 1), 9),
                name: String::new(),
            }),
            Packet::Announce(Announce {
                file_size: Some(u64::MAX >> 8),
                digests: None,
                padded: true,
                symbol_size: 1408,
                block_symbols: 4096,
                interleave: 4,
                sent_blocks: 3,
                feedback: FeedbackAddr::V6(Ipv6Addr::LOCALHOST, 65535),
                name: "données.bin".into(),
                ..announce()
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
            Packet::Digests(Digests {
                first_block: 16,
                digests: vec![[1; 16], [2; 16], [3; 16]],
            }),
            Packet::Digests(Digests {
                first_block: 0,
                digests: vec![[9; 16]; MAX_DIGESTS],
            }),
            Packet::Hashes(Hashes {
                block: 7,
                sent: 1030 + MAX_HASHES as u32,
                first_esi: 1030,
                hashes: vec![[5; 8]; MAX_HASHES],
            }),
            Packet::Keys(Keys {
                ephemeral: [4; 32],
                part: 1,
                parts: 2,
                wraps: vec![
                    KeyWrap {
                        recipient: [1; 8],
                        wrapped: [2; WRAPPED_KEY_LEN],
                    };
                    MAX_KEY_WRAPS
                ],
            }),
            Packet::Status(Status {
                receiver: 0xDEAD_BEEF,
                state: ReceiverState::Receiving,
                reason: FailReason::None,
                blocks_done: 17,
                name: "lab-pc-07".into(),
                echo: None,
            }),
            Packet::Status(Status {
                receiver: 2,
                state: ReceiverState::Receiving,
                reason: FailReason::None,
                blocks_done: 3,
                name: "pc".into(),
                echo: Some(PaceEcho {
                    time_us: 1_234_567,
                    sent: 40_000,
                    received: 38_000,
                    held_us: 250,
                }),
            }),
            Packet::Pace(Pace {
                time_us: u64::MAX,
                sent: 7,
            }),
            Packet::Status(Status {
                receiver: 1,
                state: ReceiverState::Failed,
                reason: FailReason::DiskFull,
                blocks_done: 0,
                name: String::new(),
                echo: None,
            }),
            Packet::Need(Need {
                receiver: 5,
                entries: vec![
                    NeedEntry {
                        block: 3,
                        need: 55,
                        seen: 1040,
                        flags: NeedFlags::default(),
                    },
                    NeedEntry {
                        block: 9,
                        need: 1025,
                        seen: 0,
                        flags: NeedFlags {
                            no_digest: true,
                            verify: true,
                        },
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
    fn every_type_round_trips_unsigned_and_signed_and_fits_a_datagram() {
        let key = SecretKey::from_seed([3; 32]);
        for p in samples() {
            for seal in [Seal::Unsigned, Seal::Signed(&key, 1_800_000_000_000)] {
                let mut bytes = Vec::new();
                p.write_sealed(0x0102_0304, seal, &mut bytes);
                assert!(
                    bytes.len() <= MAX_DATAGRAM,
                    "{:?}: {}",
                    p.kind(),
                    bytes.len()
                );
                let d = Packet::parse(&bytes).unwrap();
                assert_eq!(d.session, 0x0102_0304);
                assert_eq!(d.packet, p);
                let signed = matches!(seal, Seal::Signed(..)) && p.kind().authenticated();
                assert_eq!(
                    matches!(d.auth, Auth::Signed { .. }),
                    signed,
                    "{:?}",
                    p.kind()
                );
            }
        }
    }

    #[test]
    fn a_signature_covers_the_whole_datagram() {
        let t0 = Instant::now();
        let clock = WallClock::new(t0, 1_800_000_000_000);
        let key = SecretKey::from_seed([3; 32]);
        let trust = Trust::new([key.public()], clock, Duration::from_secs(60));
        let mut bytes = Vec::new();
        Packet::End(End {
            reason: EndReason::Aborted,
        })
        .write_sealed(9, Seal::Signed(&key, 1_800_000_000_000), &mut bytes);
        let d = Packet::parse(&bytes).unwrap();
        assert!(trust.check(t0, &bytes, &d.auth, None).is_ok());
        // Every byte matters: the session, the reason, the time.
        for i in 0..bytes.len() {
            let mut v = bytes.clone();
            v[i] ^= 0x01;
            if let Ok(d) = Packet::parse(&v) {
                assert!(trust.check(t0, &v, &d.auth, None).is_err(), "byte {i}");
            }
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
                // STATUS's PACE echo is an optional last field: without it, it is a STATUS.
                if matches!(p, Packet::Status(Status { echo: Some(_), .. }))
                    && cut == bytes.len() - 28
                {
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
        v[2] = 2;
        assert_eq!(Packet::parse(&v), Err(ParseError::Version(2)));
        v[2] = VERSION;
        v[3] = 0x7F;
        assert_eq!(Packet::parse(&v), Err(ParseError::UnknownType(0x7F)));
        let mut v = Packet::Ack(Ack { receiver: 1 }).to_vec(9);
        v.push(0);
        assert_eq!(
            Packet::parse(&v),
            Err(ParseError::Invalid("trailing bytes"))
        );
        let mut v = Packet::Ack(Ack { receiver: 1 }).to_vec(9);
        *v.last_mut().unwrap() = 9;
        assert_eq!(
            Packet::parse(&v),
            Err(ParseError::Invalid("signature kind"))
        );
    }

    #[test]
    fn announce_flags_have_one_encoding() {
        let good = Packet::Announce(Announce {
            file_size: None,
            digests: None,
            padded: true,
            ..announce()
        })
        .to_vec(1);
        assert!(Packet::parse(&good).is_ok());
        // flags at offset 64: digests without size, unknown bits; then a size that is "unknown".
        for flags in [0x02, 0x06, 0x40, 0x80] {
            let mut v = good.clone();
            v[64] = flags;
            assert_eq!(
                Packet::parse(&v),
                Err(ParseError::Invalid("flags")),
                "{flags:#x}"
            );
        }
        let mut v = good.clone();
        v[15] = 1;
        assert_eq!(Packet::parse(&v), Err(ParseError::Invalid("flags")));
        // A reason where none belongs, none where one does.
        let mut v = Packet::Status(Status {
            receiver: 1,
            state: ReceiverState::Done,
            reason: FailReason::None,
            blocks_done: 0,
            name: String::new(),
            echo: None,
        })
        .to_vec(1);
        v[13] = FailReason::DiskFull as u8;
        assert_eq!(Packet::parse(&v), Err(ParseError::Invalid("fail reason")));
        // A PACE echo cut short is refused, not read as no echo.
        let mut v = Packet::Status(Status {
            receiver: 1,
            state: ReceiverState::Receiving,
            reason: FailReason::None,
            blocks_done: 0,
            name: String::new(),
            echo: Some(PaceEcho {
                time_us: 1,
                sent: 2,
                received: 3,
                held_us: 4,
            }),
        })
        .to_vec(1);
        v.pop();
        assert_eq!(Packet::parse(&v), Err(ParseError::Truncated));
    }

    /// The example in PROTOCOL.md, byte for byte.
    #[test]
    fn spec_example_parses() {
        let bytes: [u8; 24] = [
            0xED, 0xC5, 0x03, 0x02, // magic, version 3, DATA
            0x12, 0x34, 0x56, 0x78, // session
            0x00, 0x00, 0x00, 0x05, // block 5
            0x00, 0x00, 0x04, 0x01, // ESI 1025
            1, 2, 3, 4, 5, 6, 7, 8, // symbol (8 bytes in this example)
        ];
        let d = Packet::parse(&bytes).unwrap();
        assert_eq!((d.session, d.auth), (0x1234_5678, Auth::Unsigned));
        assert_eq!(
            d.packet,
            Packet::Data(Data {
                block: 5,
                esi: 1025,
                symbol: &[1, 2, 3, 4, 5, 6, 7, 8]
            })
        );
    }

    #[test]
    fn names_from_the_network_are_made_printable() {
        assert_eq!(printable("pc-07"), "pc-07");
        assert_eq!(printable("\u{1b}[31mred\u{1b}[0m\r\n"), "[31mred[0m");
        assert_eq!(printable("abc\u{202e}gpj.exe"), "abcgpj.exe");
        assert_eq!(printable("\u{9b}2J données"), "2J données");
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
