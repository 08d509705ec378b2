//! Channels and leases: the relay announces its channels on the group, a viewer asks for one by
//! name (REQUEST, repeated as its lease renewal), the relay answers (REPLY) and starts relaying on the
//! first lease, and stops a grace period after the last one lapsed or left (LEAVE).

use super::{VideoType, parse_header, write_header};
use crate::wire::{ParseError, Reader};
use bytes::BufMut;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_NAME: usize = 32;
/// Most channels one ANNOUNCE lists.
pub const MAX_CHANNELS: usize = 32;
/// How long a lease lasts unless renewed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(6);
/// How long a channel keeps relaying after its last lease ended.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// One channel in an ANNOUNCE or REPLY: where its RTP and repair packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: String,
    /// Relaying now (some viewer holds a lease, or the grace period runs).
    pub live: bool,
    pub group: Ipv4Addr,
    pub media_port: u16,
    /// 0: no FEC.
    pub repair_port: u16,
}

impl ChannelInfo {
    fn parse(r: &mut Reader) -> Result<Self, ParseError> {
        let len = r.u8()? as usize;
        let name = r.text(len, MAX_CHANNEL_NAME, "channel name")?;
        let live = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(ParseError::Invalid("channel state")),
        };
        let group = Ipv4Addr::from(r.array::<4>()?);
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
        })
    }

    fn write(&self, out: &mut impl BufMut) {
        write_name(&self.name, out);
        out.put_u8(self.live as u8);
        out.put_slice(&self.group.octets());
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
    UnknownChannel = 1,
}

/// Video control datagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Relay → group, every second: the channels offered. The relay's control address is the
    /// datagram's source address.
    Announce { channels: Vec<ChannelInfo> },
    /// Viewer → relay: start or renew a lease on `channel`.
    Request { viewer: u64, channel: String },
    /// Relay → viewer: the lease, or why not.
    Reply {
        viewer: u64,
        lease_ms: u32,
        result: Result<ChannelInfo, Refusal>,
    },
    /// Viewer → relay: the viewer is gone; its lease ends now.
    Leave { viewer: u64, channel: String },
}

impl Control {
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
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
            },
            VideoType::Reply => {
                let viewer = r.u64()?;
                let lease_ms = r.u32()?;
                let result = match r.u8()? {
                    0 => Ok(ChannelInfo::parse(&mut r)?),
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
        r.finish()?;
        Ok(c)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Control::Announce { channels } => {
                write_header(VideoType::Announce, &mut out);
                let channels = &channels[..channels.len().min(MAX_CHANNELS)];
                out.put_u8(channels.len() as u8);
                for c in channels {
                    c.write(&mut out);
                }
            }
            Control::Request { viewer, channel } | Control::Leave { viewer, channel } => {
                let kind = match self {
                    Control::Request { .. } => VideoType::Request,
                    _ => VideoType::Leave,
                };
                write_header(kind, &mut out);
                out.put_u64(*viewer);
                write_name(channel, &mut out);
            }
            Control::Reply {
                viewer,
                lease_ms,
                result,
            } => {
                write_header(VideoType::Reply, &mut out);
                out.put_u64(*viewer);
                out.put_u32(*lease_ms);
                match result {
                    Ok(c) => {
                        out.put_u8(0);
                        c.write(&mut out);
                    }
                    Err(why) => out.put_u8(*why as u8),
                }
            }
        }
        out
    }
}

/// What the relay must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// First lease on an idle channel: start the source command, start sending.
    Start(String),
    /// The grace period after the last lease ran out: stop sending, stop the source command.
    Stop(String),
}

#[derive(Debug, Default)]
struct ChannelLeases {
    /// Viewer id → lease expiry.
    viewers: HashMap<u64, Instant>,
    live: bool,
    /// When the last lease ended, while the channel is live without viewers.
    idle_since: Option<Instant>,
}

/// The relay's lease table, one entry per offered channel.
#[derive(Debug)]
pub struct Leases {
    lease: Duration,
    grace: Duration,
    channels: BTreeMap<String, ChannelLeases>,
    events: VecDeque<LeaseEvent>,
}

impl Leases {
    pub fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        lease: Duration,
        grace: Duration,
    ) -> Self {
        Leases {
            lease,
            grace,
            channels: names
                .into_iter()
                .map(|n| (n.to_owned(), ChannelLeases::default()))
                .collect(),
            events: VecDeque::new(),
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Grants or renews `viewer`'s lease on `channel`; false if there is no such channel.
    pub fn request(&mut self, now: Instant, viewer: u64, channel: &str) -> bool {
        let Some(c) = self.channels.get_mut(channel) else {
            return false;
        };
        c.viewers.insert(viewer, now + self.lease);
        c.idle_since = None;
        if !c.live {
            c.live = true;
            self.events.push_back(LeaseEvent::Start(channel.to_owned()));
        }
        true
    }

    pub fn leave(&mut self, now: Instant, viewer: u64, channel: &str) {
        if let Some(c) = self.channels.get_mut(channel)
            && c.viewers.remove(&viewer).is_some()
            && c.viewers.is_empty()
        {
            c.idle_since = Some(now);
        }
    }

    pub fn is_live(&self, channel: &str) -> bool {
        self.channels.get(channel).is_some_and(|c| c.live)
    }

    pub fn viewers(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |c| c.viewers.len())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for (name, c) in &mut self.channels {
            let before = c.viewers.len();
            let mut last_end = None;
            c.viewers.retain(|_, end| {
                let keep = *end > now;
                if !keep {
                    last_end = last_end.max(Some(*end));
                }
                keep
            });
            if before > 0 && c.viewers.is_empty() {
                c.idle_since = last_end;
            }
            if c.live && c.idle_since.is_some_and(|t| now >= t + self.grace) {
                c.live = false;
                c.idle_since = None;
                self.events.push_back(LeaseEvent::Stop(name.clone()));
            }
        }
    }

    /// The next lease expiry or end of a grace period.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .values()
            .flat_map(|c| {
                c.viewers
                    .values()
                    .copied()
                    .chain(c.idle_since.filter(|_| c.live).map(|t| t + self.grace))
            })
            .min()
    }

    pub fn poll_event(&mut self) -> Option<LeaseEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pi() -> ChannelInfo {
        ChannelInfo {
            name: "pi".into(),
            live: true,
            group: Ipv4Addr::new(239, 255, 1, 2),
            media_port: 5004,
            repair_port: 5006,
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
            Control::Request {
                viewer: 7,
                channel: "pi".into(),
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
                assert!(Control::parse(&v[..cut]).is_err(), "{c:?} cut at {cut}");
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
    fn spec_example_parses() {
        let bytes = [
            0xED, 0x56, 0x01, 0x22, // magic, version 1, REQUEST
            0, 0, 0, 0, 0, 0, 0, 42, // viewer 42
            2, b'p', b'i', // channel "pi"
        ];
        assert_eq!(
            Control::parse(&bytes),
            Ok(Control::Request {
                viewer: 42,
                channel: "pi".into()
            })
        );
        assert_eq!(Control::parse(&bytes[..3]), Err(ParseError::Truncated));
        let mut v2 = bytes;
        v2[2] = 2;
        assert_eq!(Control::parse(&v2), Err(ParseError::Version(2)));
    }

    #[test]
    fn leases_start_once_share_and_stop_after_grace() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Leases::new(["pi", "cam"], s(6), s(10));
        assert!(!l.request(t0, 1, "nope"));
        assert!(l.request(t0, 1, "pi"));
        assert_eq!(l.poll_event(), Some(LeaseEvent::Start("pi".into())));
        assert!(l.request(t0 + s(1), 2, "pi"));
        assert_eq!(l.poll_event(), None, "the second viewer shares the stream");
        assert_eq!(l.viewers("pi"), 2);
        // Viewer 1 renews, viewer 2 leaves; viewer 1's lease then lapses at 2 + 6 s.
        l.request(t0 + s(2), 1, "pi");
        l.leave(t0 + s(3), 2, "pi");
        l.handle_timeout(t0 + s(7));
        assert!(l.is_live("pi"));
        l.handle_timeout(t0 + s(8));
        assert_eq!(l.viewers("pi"), 0);
        assert_eq!(l.poll_timeout(), Some(t0 + s(18)));
        l.handle_timeout(t0 + s(17));
        assert_eq!(l.poll_event(), None);
        l.handle_timeout(t0 + s(18));
        assert_eq!(l.poll_event(), Some(LeaseEvent::Stop("pi".into())));
        assert!(!l.is_live("pi"));
        assert_eq!(l.poll_timeout(), None);
        // A request inside the grace period keeps it going without a restart.
        l.request(t0 + s(20), 3, "pi");
        l.leave(t0 + s(21), 3, "pi");
        l.request(t0 + s(25), 4, "pi");
        l.handle_timeout(t0 + s(40));
        l.handle_timeout(t0 + s(41));
        let events: Vec<_> = std::iter::from_fn(|| l.poll_event()).collect();
        assert_eq!(
            events,
            [
                LeaseEvent::Start("pi".into()),
                LeaseEvent::Stop("pi".into())
            ]
        );
    }
}
