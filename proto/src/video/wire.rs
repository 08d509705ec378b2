//! The video wire format (`proto/VIDEO.md`): the 4-byte header of every control and repair
//! datagram, the control packets (ANNOUNCE, REQUEST, REPLY, LEAVE) and REPAIR. RTP media packets
//! are plain RFC 3550/6184 (`super::rtp`) and carry no edm-cast header at all.
//!
//! Video datagrams have their own magic and version, independent of the file protocol's
//! (`crate::wire::VERSION`), so either can change without the other. ANNOUNCE and REPLY, which
//! change what a viewer does, end with the file protocol's signature trailer (`crate::auth`).

use crate::auth::{Auth, Seal};
use crate::wire::{ParseError, Reader, parse_trailer};
use bytes::BufMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// First two bytes of every video control or repair datagram ("V" for video).
pub const MAGIC: [u8; 2] = [0xED, 0x56];
/// The video wire version this crate speaks: 2 added the signature trailer to ANNOUNCE and REPLY.
pub const VERSION: u8 = 2;
/// Bytes of the video header: magic, version, type.
pub const HEADER_LEN: usize = 4;
/// Largest video datagram sent or accepted: the same as the file protocol's.
pub use crate::wire::MAX_DATAGRAM;

/// Video packet types. Their own magic (`ED 56`) keeps them apart from the file protocol's, whose
/// types they may share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VideoType {
    /// RaptorQ repair for a window of RTP packets (section 4).
    Repair = 0x20,
    /// The relay's channels, to the announce group.
    Announce = 0x21,
    /// A viewer asks for, or renews, a lease.
    Request = 0x22,
    /// The relay's answer to a REQUEST.
    Reply = 0x23,
    /// A viewer ends its lease.
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

    /// Whether datagrams of this type end with a signature trailer: those that change what a
    /// viewer does (which relay it follows, whether it watches). What viewers send is never
    /// signed, and REPAIR is not either (VIDEO.md, "Security notes").
    pub fn authenticated(self) -> bool {
        matches!(self, Self::Announce | Self::Reply)
    }
}

/// Checks the header and returns the type and a reader over the body.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<(VideoType, Reader<'_>), ParseError> {
    let (kind, r) = crate::wire::open(bytes, MAGIC, VERSION)?;
    Ok((VideoType::from_u8(kind)?, r))
}

/// Writes the header of a `kind` datagram.
pub(crate) fn write_header(kind: VideoType, out: &mut impl BufMut) {
    out.put_slice(&MAGIC);
    out.put_u8(VERSION);
    out.put_u8(kind as u8);
}

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_NAME: usize = 32;
/// Most channels one ANNOUNCE lists.
pub const MAX_CHANNELS: usize = 32;
/// Most channels one ANNOUNCE lists when their groups are IPv6 (12 bytes more each): 25 with
/// 32-byte names still fit a signed datagram.
pub const MAX_CHANNELS_V6: usize = 25;
/// Largest window (source packets); keeps a decode well under a millisecond.
pub const MAX_WINDOW: u16 = 64;
/// Bytes before the symbol in a REPAIR datagram.
pub const REPAIR_OVERHEAD: usize = HEADER_LEN + 12;

/// Longest codec configuration in an `AudioInfo` (an AAC AudioSpecificConfig is 2 to 5 bytes).
pub const MAX_AUDIO_CONFIG: usize = 64;

/// The audio codecs a channel may carry (VIDEO.md section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AudioCodec {
    /// AAC in RTP as RFC 3640 `mpeg4-generic`, mode AAC-hbr; `AudioInfo::config` is its
    /// AudioSpecificConfig (ISO/IEC 14496-3 section 1.6.2.1).
    Aac = 1,
    /// Opus (RFC 7587): always `opus/48000/2` in the SDP, no configuration.
    Opus = 2,
}

/// A channel's audio track: where its RTP goes on the channel's group, and what a player needs
/// to decode it. Only a granted REPLY carries it (ANNOUNCE has no room for 32 of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// The audio RTP port on the channel's group, not 0 (its RTCP on the next port).
    pub port: u16,
    /// How the payload is coded.
    pub codec: AudioCodec,
    /// RTP clock rate in Hz (AAC: the sampling rate; Opus: 48000).
    pub clock_rate: u32,
    /// Audio channels, 1 to 8.
    pub channels: u8,
    /// AAC: the AudioSpecificConfig, 2 to `MAX_AUDIO_CONFIG` bytes; Opus: empty.
    pub config: Vec<u8>,
}

impl AudioInfo {
    fn parse(r: &mut Reader) -> Result<Self, ParseError> {
        let port = r.u16()?;
        let codec = match r.u8()? {
            1 => AudioCodec::Aac,
            2 => AudioCodec::Opus,
            _ => return Err(ParseError::Invalid("audio codec")),
        };
        let (clock_rate, channels) = (r.u32()?, r.u8()?);
        let len = r.u8()? as usize;
        if len > MAX_AUDIO_CONFIG {
            return Err(ParseError::Invalid("audio config length"));
        }
        let config = r.bytes(len)?.to_vec();
        let config_ok = match codec {
            AudioCodec::Aac => len >= 2,
            AudioCodec::Opus => len == 0 && clock_rate == 48_000,
        };
        if port == 0
            || !(8_000..=192_000).contains(&clock_rate)
            || !(1..=8).contains(&channels)
            || !config_ok
        {
            return Err(ParseError::Invalid("audio description"));
        }
        Ok(AudioInfo {
            port,
            codec,
            clock_rate,
            channels,
            config,
        })
    }

    fn write(&self, out: &mut impl BufMut) {
        let config = &self.config[..self.config.len().min(MAX_AUDIO_CONFIG)];
        out.put_u16(self.port);
        out.put_u8(self.codec as u8);
        out.put_u32(self.clock_rate);
        out.put_u8(self.channels);
        out.put_u8(config.len() as u8);
        out.put_slice(config);
    }
}

/// A REPLY's status: granted (channel only), refused (`Refusal`), or granted with audio.
const GRANTED: u8 = 0;
const GRANTED_WITH_AUDIO: u8 = 2;

/// One channel in an ANNOUNCE or REPLY: where its RTP and repair packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The name viewers ask for, 1 to `MAX_CHANNEL_NAME` bytes.
    pub name: String,
    /// Relaying now (some viewer holds a lease, or the grace period runs).
    pub live: bool,
    /// The channel's own multicast group, for its RTP and REPAIR datagrams.
    pub group: IpAddr,
    /// Where the RTP packets go on `group`.
    pub media_port: u16,
    /// Where the REPAIR datagrams go on `group`; 0: no FEC. Audio and video repair share it,
    /// told apart by the REPAIR's SSRC.
    pub repair_port: u16,
    /// The audio track, if the channel has one. Written only in a REPLY: None in an ANNOUNCE.
    pub audio: Option<AudioInfo>,
}

/// ChannelInfo's state byte: relaying now.
const LIVE: u8 = 1;
/// ChannelInfo's state byte: a 16-byte IPv6 group follows instead of a 4-byte IPv4 one.
const IPV6_GROUP: u8 = 2;

impl ChannelInfo {
    fn parse(r: &mut Reader) -> Result<Self, ParseError> {
        let len = r.u8()? as usize;
        let name = r.text(len, MAX_CHANNEL_NAME, "channel name")?;
        // Bit 0: live; bit 1: the group is IPv6 (16 bytes, not 4). Older viewers refuse the
        // IPv6 form, which they could not join anyway.
        let state = r.u8()?;
        if state & !(LIVE | IPV6_GROUP) != 0 {
            return Err(ParseError::Invalid("channel state"));
        }
        let live = state & LIVE != 0;
        let group = match state & IPV6_GROUP {
            0 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            _ => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
        };
        let (media_port, repair_port) = (r.u16()?, r.u16()?);
        if !group.is_multicast() || media_port == 0 {
            return Err(ParseError::Invalid("channel address"));
        }
        Ok(ChannelInfo {
            name,
            live,
            group,
            media_port,
            repair_port,
            audio: None,
        })
    }

    fn write(&self, out: &mut impl BufMut) {
        write_name(&self.name, out);
        match self.group {
            IpAddr::V4(g) => {
                out.put_u8(self.live as u8);
                out.put_slice(&g.octets());
            }
            IpAddr::V6(g) => {
                out.put_u8(self.live as u8 | IPV6_GROUP);
                out.put_slice(&g.octets());
            }
        }
        out.put_u16(self.media_port);
        out.put_u16(self.repair_port);
    }
}

fn write_name(name: &str, out: &mut impl BufMut) {
    let name = &name.as_bytes()[..name.len().min(MAX_CHANNEL_NAME)];
    out.put_u8(name.len() as u8);
    out.put_slice(name);
}

fn read_name(r: &mut Reader) -> Result<String, ParseError> {
    let len = r.u8()? as usize;
    let name = r.text(len, MAX_CHANNEL_NAME, "channel name")?;
    if name.is_empty() {
        return Err(ParseError::Invalid("channel name"));
    }
    Ok(name)
}

/// Why a REPLY grants nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    /// The relay offers no channel of that name.
    UnknownChannel = 1,
}

/// A viewer's FEC figures so far, in its REQUESTs (VIDEO.md section 5): RTP packets its playout
/// rebuilt from REPAIR, and sequence numbers it gave up on. Counters: they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FecReport {
    /// RTP packets rebuilt from REPAIR datagrams (`PlayoutStats::recovered`).
    pub repaired: u64,
    /// RTP packets lost for good, after FEC (`PlayoutStats::lost`).
    pub lost: u64,
}

/// Bytes of a `FecReport` on the wire.
pub const FEC_REPORT_LEN: usize = 16;

/// Video control datagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Relay → group, every second: the channels offered. The relay's control address is the
    /// datagram's source address.
    Announce {
        /// At most `MAX_CHANNELS`; more are not sent.
        channels: Vec<ChannelInfo>,
    },
    /// Viewer → relay: start or renew a lease on `channel`.
    Request {
        /// The viewer's random id.
        viewer: u64,
        /// The channel's name.
        channel: String,
        /// The viewer's FEC figures so far; `None` from a viewer older than the field (its
        /// REQUEST ends after the channel name).
        fec: Option<FecReport>,
    },
    /// Relay → viewer: the lease, or why not.
    Reply {
        /// The REQUEST's viewer id.
        viewer: u64,
        /// How long the lease lasts; the viewer renews every third of it.
        lease_ms: u32,
        /// Where the channel is sent, or why not.
        result: Result<ChannelInfo, Refusal>,
    },
    /// Viewer → relay: the viewer is gone; its lease ends now.
    Leave {
        /// The viewer's random id.
        viewer: u64,
        /// The channel's name.
        channel: String,
    },
}

impl Control {
    /// Parses one control datagram, header and trailer included: what it says, not who said it
    /// (for that, `parse_with_auth` and `Trust::check`).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        Self::parse_with_auth(bytes).map(|(c, _)| c)
    }

    /// Parses one control datagram, header included, and its signature trailer
    /// (`Auth::Unsigned` for REQUEST and LEAVE, which have none).
    pub fn parse_with_auth(bytes: &[u8]) -> Result<(Self, Auth), ParseError> {
        let (kind, mut r) = parse_header(bytes)?;
        let c = match kind {
            VideoType::Announce => {
                let n = r.u8()? as usize;
                if n > MAX_CHANNELS {
                    return Err(ParseError::Invalid("channel count"));
                }
                let channels = (0..n)
                    .map(|_| ChannelInfo::parse(&mut r))
                    .collect::<Result<_, _>>()?;
                Control::Announce { channels }
            }
            VideoType::Request => Control::Request {
                viewer: r.u64()?,
                channel: read_name(&mut r)?,
                // Optional and last: told apart by what is left (anything else is refused below).
                fec: match r.remaining() {
                    FEC_REPORT_LEN => Some(FecReport {
                        repaired: r.u64()?,
                        lost: r.u64()?,
                    }),
                    _ => None,
                },
            },
            VideoType::Reply => {
                let viewer = r.u64()?;
                let lease_ms = r.u32()?;
                let result = match r.u8()? {
                    GRANTED => Ok(ChannelInfo::parse(&mut r)?),
                    GRANTED_WITH_AUDIO => {
                        let mut info = ChannelInfo::parse(&mut r)?;
                        info.audio = Some(AudioInfo::parse(&mut r)?);
                        Ok(info)
                    }
                    1 => Err(Refusal::UnknownChannel),
                    _ => return Err(ParseError::Invalid("reply status")),
                };
                Control::Reply {
                    viewer,
                    lease_ms,
                    result,
                }
            }
            VideoType::Leave => Control::Leave {
                viewer: r.u64()?,
                channel: read_name(&mut r)?,
            },
            VideoType::Repair => return Err(ParseError::Invalid("REPAIR on the control port")),
        };
        let auth = if kind.authenticated() {
            parse_trailer(bytes.len(), &mut r)?
        } else {
            Auth::Unsigned
        };
        r.finish()?;
        Ok((c, auth))
    }

    /// Its type.
    pub fn kind(&self) -> VideoType {
        match self {
            Control::Announce { .. } => VideoType::Announce,
            Control::Request { .. } => VideoType::Request,
            Control::Reply { .. } => VideoType::Reply,
            Control::Leave { .. } => VideoType::Leave,
        }
    }

    /// Writes the whole datagram, unsigned (a one-byte trailer where the type has one). `out` is
    /// cleared first.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.write_sealed(Seal::Unsigned, out);
    }

    /// Writes the whole datagram and, where the type has one, the trailer `seal` makes. `out` is
    /// cleared first: a signature covers the whole datagram.
    pub fn write_sealed(&self, seal: Seal<'_>, out: &mut Vec<u8>) {
        out.clear();
        write_header(self.kind(), out);
        match self {
            Control::Announce { channels } => {
                let most = match channels.iter().any(|c| c.group.is_ipv6()) {
                    true => MAX_CHANNELS_V6,
                    false => MAX_CHANNELS,
                };
                let channels = &channels[..channels.len().min(most)];
                out.put_u8(channels.len() as u8);
                for c in channels {
                    c.write(out);
                }
            }
            Control::Request {
                viewer,
                channel,
                fec,
            } => {
                out.put_u64(*viewer);
                write_name(channel, out);
                if let Some(f) = fec {
                    out.put_u64(f.repaired);
                    out.put_u64(f.lost);
                }
            }
            Control::Leave { viewer, channel } => {
                out.put_u64(*viewer);
                write_name(channel, out);
            }
            Control::Reply {
                viewer,
                lease_ms,
                result,
            } => {
                out.put_u64(*viewer);
                out.put_u32(*lease_ms);
                match result {
                    Ok(c) => {
                        out.put_u8(match c.audio {
                            Some(_) => GRANTED_WITH_AUDIO,
                            None => GRANTED,
                        });
                        c.write(out);
                        if let Some(a) = &c.audio {
                            a.write(out);
                        }
                    }
                    Err(why) => out.put_u8(*why as u8),
                }
            }
        }
        if self.kind().authenticated() {
            seal.finish(out);
        }
    }

    /// The whole datagram, unsigned, in a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write(&mut out);
        out
    }
}

/// A repair datagram's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair<'a> {
    /// The RTP stream repaired.
    pub ssrc: u32,
    /// Sequence number of the window's first source packet.
    pub base_seq: u16,
    /// Source packets in the window (K).
    pub source: u16,
    /// RaptorQ encoding symbol id, K or more.
    pub esi: u16,
    /// The repair symbol (T bytes).
    pub symbol: &'a [u8],
}

impl<'a> Repair<'a> {
    /// Parses one REPAIR datagram, header included; the symbol borrows from `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let (kind, mut r) = parse_header(bytes)?;
        if kind != VideoType::Repair {
            return Err(ParseError::Invalid("not a REPAIR packet"));
        }
        let ssrc = r.u32()?;
        let base_seq = r.u16()?;
        let source = r.u16()?;
        let esi = r.u16()?;
        let t = r.u16()? as usize;
        let symbol = r.bytes(t)?;
        r.finish()?;
        if source == 0 || source > MAX_WINDOW {
            return Err(ParseError::Invalid("window size"));
        }
        if esi < source || t < 3 {
            return Err(ParseError::Invalid("repair symbol id or size"));
        }
        Ok(Repair {
            ssrc,
            base_seq,
            source,
            esi,
            symbol,
        })
    }

    /// Writes the whole datagram, header included.
    pub fn write(&self, out: &mut impl BufMut) {
        write_header(VideoType::Repair, out);
        out.put_u32(self.ssrc);
        out.put_u16(self.base_seq);
        out.put_u16(self.source);
        out.put_u16(self.esi);
        out.put_u16(self.symbol.len() as u16);
        out.put_slice(self.symbol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{SIGNED_TRAILER_LEN, SecretKey, Trust, WallClock};
    use std::time::{Duration, Instant};

    fn pi() -> ChannelInfo {
        ChannelInfo {
            name: "pi".into(),
            live: true,
            group: Ipv4Addr::new(239, 255, 1, 2).into(),
            media_port: 5004,
            repair_port: 5006,
            audio: None,
        }
    }

    fn aac() -> AudioInfo {
        AudioInfo {
            port: 5008,
            codec: AudioCodec::Aac,
            clock_rate: 48_000,
            channels: 2,
            config: vec![0x11, 0x90],
        }
    }

    fn samples() -> Vec<Control> {
        vec![
            Control::Announce {
                channels: vec![
                    pi(),
                    ChannelInfo {
                        name: "cam2".into(),
                        live: false,
                        repair_port: 0,
                        ..pi()
                    },
                ],
            },
            Control::Announce { channels: vec![] },
            Control::Announce {
                channels: vec![ChannelInfo {
                    group: "ff15::1:2".parse().unwrap(),
                    ..pi()
                }],
            },
            Control::Request {
                viewer: 7,
                channel: "pi".into(),
                fec: None,
            },
            Control::Request {
                viewer: 7,
                channel: "pi".into(),
                fec: Some(FecReport {
                    repaired: 1 << 40,
                    lost: u64::MAX,
                }),
            },
            Control::Reply {
                viewer: 7,
                lease_ms: 6000,
                result: Ok(pi()),
            },
            Control::Reply {
                viewer: 8,
                lease_ms: 0,
                result: Err(Refusal::UnknownChannel),
            },
            Control::Reply {
                viewer: 9,
                lease_ms: 6000,
                result: Ok(ChannelInfo {
                    audio: Some(aac()),
                    ..pi()
                }),
            },
            Control::Reply {
                viewer: 9,
                lease_ms: 6000,
                result: Ok(ChannelInfo {
                    audio: Some(AudioInfo {
                        codec: AudioCodec::Opus,
                        config: vec![],
                        ..aac()
                    }),
                    ..pi()
                }),
            },
            Control::Leave {
                viewer: u64::MAX,
                channel: "pi".into(),
            },
        ]
    }

    #[test]
    fn every_control_round_trips_and_truncations_fail() {
        for c in samples() {
            let v = c.to_vec();
            assert_eq!(Control::parse(&v), Ok(c.clone()));
            for cut in 0..v.len() {
                match (&c, Control::parse(&v[..cut])) {
                    // Without its optional last field, a REQUEST is a REQUEST without figures.
                    (Control::Request { fec: Some(_), .. }, Ok(Control::Request { fec, .. })) => {
                        assert_eq!((fec, cut), (None, v.len() - FEC_REPORT_LEN))
                    }
                    (_, got) => assert!(got.is_err(), "{c:?} cut at {cut}"),
                }
            }
            let mut long = v.clone();
            long.push(0);
            assert!(Control::parse(&long).is_err());
            let mut seed = 3u64;
            for _ in 0..2000 {
                let mut bad = v.clone();
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = seed as usize % bad.len();
                bad[i] = (seed >> 40) as u8;
                let _ = Control::parse(&bad);
            }
        }
    }

    /// The REQUEST example in VIDEO.md, byte for byte.
    #[test]
    fn spec_request_example_parses() {
        let bytes = [
            0xED, 0x56, 0x02, 0x22, // magic, version 2, REQUEST
            0, 0, 0, 0, 0, 0, 0, 42, // viewer 42
            2, b'p', b'i', // channel "pi"
        ];
        assert_eq!(
            Control::parse(&bytes),
            Ok(Control::Request {
                viewer: 42,
                channel: "pi".into(),
                fec: None,
            })
        );
        assert_eq!(Control::parse(&bytes[..3]), Err(ParseError::Truncated));
        let mut v1 = bytes;
        v1[2] = 1;
        assert_eq!(Control::parse(&v1), Err(ParseError::Version(1)));
    }

    /// The REQUEST example with FEC figures in VIDEO.md, byte for byte; a REQUEST that ends
    /// inside the figures, or goes on past them, is refused.
    #[test]
    fn spec_request_with_fec_example_parses() {
        let bytes = [
            0xED, 0x56, 0x02, 0x22, // magic, version 2, REQUEST
            0, 0, 0, 0, 0, 0, 0, 42, // viewer 42
            2, b'p', b'i', // channel "pi"
            0, 0, 0, 0, 0, 0, 0x01, 0x2C, // 300 packets repaired
            0, 0, 0, 0, 0, 0, 0, 7, // 7 lost
        ];
        let want = Control::Request {
            viewer: 42,
            channel: "pi".into(),
            fec: Some(FecReport {
                repaired: 300,
                lost: 7,
            }),
        };
        assert_eq!(Control::parse(&bytes), Ok(want.clone()));
        assert_eq!(want.to_vec(), bytes);
        for cut in 16..bytes.len() {
            assert!(Control::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(
            Control::parse(&long),
            Err(ParseError::Invalid("trailing bytes"))
        );
        // A LEAVE has no figures.
        let mut leave = bytes;
        leave[3] = 0x24;
        assert_eq!(
            Control::parse(&leave),
            Err(ParseError::Invalid("trailing bytes"))
        );
    }

    /// The REPLY with audio example in VIDEO.md, byte for byte; an ANNOUNCE never carries audio,
    /// and audio descriptions out of range are refused.
    #[test]
    fn spec_reply_with_audio_example_parses() {
        let bytes = [
            0xED, 0x56, 0x02, 0x23, // magic, version 2, REPLY
            0, 0, 0, 0, 0, 0, 0, 42, // viewer 42
            0, 0, 0x17, 0x70, // lease 6000 ms
            2,    // granted, with audio
            2, b'p', b'i', 1, 239, 255, 1, 2, 0x13, 0x8C, 0x13, 0x8E, // channel "pi"
            0x13, 0x90, 1, // audio port 5008, AAC
            0, 0, 0xBB, 0x80, 2, // 48000 Hz, 2 channels
            2, 0x11, 0x90, // AudioSpecificConfig 11 90
            0,    // unsigned
        ];
        let want = Control::Reply {
            viewer: 42,
            lease_ms: 6000,
            result: Ok(ChannelInfo {
                audio: Some(aac()),
                ..pi()
            }),
        };
        assert_eq!(Control::parse(&bytes), Ok(want.clone()));
        assert_eq!(want.to_vec(), bytes);
        let announce = Control::Announce {
            channels: vec![ChannelInfo {
                audio: Some(aac()),
                ..pi()
            }],
        };
        assert_eq!(
            Control::parse(&announce.to_vec()),
            Ok(Control::Announce {
                channels: vec![pi()]
            })
        );
        let at = |i: usize, v: u8| {
            let mut b = bytes;
            b[i] = v;
            Control::parse(&b)
        };
        assert!(at(31, 3).is_err(), "unknown codec");
        assert!(at(36, 0).is_err(), "0 channels");
        assert!(at(36, 9).is_err(), "9 channels");
        assert!(at(37, 3).is_err(), "config shorter than its length");
        assert!(at(37, 65).is_err(), "config over 64 bytes");
        assert!(at(31, 2).is_err(), "Opus has no config");
        assert!(at(34, 0).is_err(), "clock rate 128 Hz");
        let mut port0 = bytes;
        (port0[29], port0[30]) = (0, 0);
        assert!(Control::parse(&port0).is_err(), "audio port 0");
    }

    /// The REPAIR example in VIDEO.md, byte for byte.
    #[test]
    fn spec_repair_example_parses() {
        let bytes = [
            0xED, 0x56, 0x02, 0x20, // magic, version 2, REPAIR
            0, 0, 0, 9, // ssrc
            0xFF, 0xFF, // base_seq
            0, 25, // K
            0, 27, // ESI
            0, 4, // T
            1, 2, 3, 4, // symbol
        ];
        assert_eq!(
            Repair::parse(&bytes),
            Ok(Repair {
                ssrc: 9,
                base_seq: 0xFFFF,
                source: 25,
                esi: 27,
                symbol: &[1, 2, 3, 4],
            })
        );
    }

    #[test]
    fn announce_and_reply_are_signed_request_and_leave_are_not() {
        let key = SecretKey::from_seed([3; 32]);
        let t0 = Instant::now();
        let clock = WallClock::new(t0, 1_800_000_000_000);
        let trust = Trust::new([key.public()], clock, Duration::from_secs(300));
        // The largest ANNOUNCE still fits a datagram when signed.
        let widest = Control::Announce {
            channels: (0..MAX_CHANNELS)
                .map(|i| ChannelInfo {
                    name: format!("{i:0>32}"),
                    ..pi()
                })
                .collect(),
        };
        let widest_v6 = Control::Announce {
            channels: (0..MAX_CHANNELS_V6)
                .map(|i| ChannelInfo {
                    name: format!("{i:0>32}"),
                    group: "ff15::1:2".parse().unwrap(),
                    ..pi()
                })
                .collect(),
        };
        for c in samples().into_iter().chain([widest, widest_v6]) {
            let mut v = Vec::new();
            c.write_sealed(Seal::Signed(&key, 1_800_000_000_000), &mut v);
            assert!(v.len() <= MAX_DATAGRAM, "{:?}: {}", c.kind(), v.len());
            let (back, auth) = Control::parse_with_auth(&v).unwrap();
            assert_eq!(back, c);
            let signed = c.kind().authenticated();
            assert_eq!(
                matches!(auth, Auth::Signed { .. }),
                signed,
                "{:?}",
                c.kind()
            );
            let unsigned = c.to_vec();
            let trailer = if signed { SIGNED_TRAILER_LEN } else { 0 };
            assert_eq!(v.len(), unsigned.len() - signed as usize + trailer);
            if !signed {
                continue;
            }
            assert!(trust.check(t0, &v, &auth, None).is_ok());
            // Every byte is covered: header, body, key id, time and the signature itself.
            for i in 0..v.len() {
                let mut bad = v.clone();
                bad[i] ^= 0x01;
                if let Ok((_, auth)) = Control::parse_with_auth(&bad) {
                    assert!(trust.check(t0, &bad, &auth, None).is_err(), "byte {i}");
                }
            }
            // An unsigned copy, or a signed one cut short, is no signature.
            let (_, auth) = Control::parse_with_auth(&unsigned).unwrap();
            assert_eq!(auth, Auth::Unsigned);
            for cut in unsigned.len()..v.len() {
                assert!(Control::parse_with_auth(&v[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    /// The signed ANNOUNCE example in VIDEO.md, byte for byte: key seed 01 × 32, time
    /// 1 800 000 000 000 ms. Ed25519 signatures are deterministic, so signing it again gives the
    /// same bytes.
    #[test]
    fn spec_signed_announce_example_parses_and_verifies() {
        let hex = SIGNED_ANNOUNCE_EXAMPLE
            .split_whitespace()
            .collect::<String>();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let (c, auth) = Control::parse_with_auth(&bytes).unwrap();
        assert_eq!(
            c,
            Control::Announce {
                channels: vec![pi()]
            }
        );
        let key = SecretKey::from_seed([1; 32]);
        let mut again = Vec::new();
        c.write_sealed(Seal::Signed(&key, 1_800_000_000_000), &mut again);
        assert_eq!(again, bytes);
        let t0 = Instant::now();
        let trust = Trust::new(
            [key.public()],
            WallClock::new(t0, 1_800_000_000_000),
            Duration::from_secs(300),
        );
        assert_eq!(trust.check(t0, &bytes, &auth, None), Ok(key.public().id()));
    }

    /// As printed in VIDEO.md section 5 (spaces and line breaks are ignored).
    const SIGNED_ANNOUNCE_EXAMPLE: &str = "
        ED 56 02 21  01  02 70 69 01 EF FF 01 02 13 8C 13 8E
        01  34 75 0F 98 BD 59 FC FC  00 00 01 A3 18 5C 50 00
        1E B0 EB 84 06 CE E7 90 91 E0 51 9D 4E 70 AD 3E 0F EB 7F C4 7C BF 8F 67 0F 9F 07 E9 14 13
        71 B5 39 10 E9 24 1A 5A 5E 91 99 6F 31 5E 2B E3 9B 29 CA F1 BB 9E 68 AA 83 C7 7D 47 2E F7
        CB AF 3A 00";
}
