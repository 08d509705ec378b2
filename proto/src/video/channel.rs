//! The relay's side of the channels (VIDEO.md sections 5 and 6): it announces its channels on the
//! group, answers each viewer's REQUEST (repeated as its lease renewal) with a REPLY, starts
//! relaying a channel on its first lease, and stops it a grace period after the last one lapsed
//! or left (LEAVE). The viewer's side is `super::viewer`.

use crate::counters::Counters;
use crate::file::sender::Destination;
use crate::video::wire::{ChannelInfo, Control, Refusal};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a lease lasts unless renewed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(6);
/// How long a channel keeps relaying after its last lease ended.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// How often the relay announces its channels: a viewer finds the relay within this long.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// What the relay must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// First lease on an idle channel: start the source command, start sending.
    Start(String),
    /// The grace period after the last lease ran out: stop sending, stop the source command.
    Stop(String),
}

/// One offered channel and who holds a lease on it.
#[derive(Debug)]
struct Channel {
    /// As announced; `live` is this table's to set.
    info: ChannelInfo,
    /// Viewer id → lease expiry.
    viewers: HashMap<u64, Instant>,
    /// When the last lease ended, while the channel is live without viewers.
    idle_since: Option<Instant>,
}

/// The relay's control state machine: its channels, their leases and the datagrams that go with
/// them. One per relay; several channels run at once, each with its own leases.
///
/// - Getters: `channels` (as announced, `live` included), `is_live`, `viewers`, `lease`,
///   `dropped` (datagrams that were not a valid REQUEST or LEAVE).
/// - Inputs: `handle_datagram(now, from, bytes)` for every datagram on the relay's control
///   socket; `handle_timeout(now)` once `poll_timeout` has passed.
/// - Commands: none; the viewers' datagrams and the clock drive it all.
/// - Outputs: `poll_transmit(now, buf)` gives each REPLY (to the REQUEST's source) and, every
///   `ANNOUNCE_EVERY`, an ANNOUNCE to the group; `poll_timeout()` the next announcement, lease
///   expiry or end of a grace period; `poll_event()` a `LeaseEvent` to start or stop a channel.
#[derive(Debug)]
pub struct Leases {
    lease: Duration,
    grace: Duration,
    /// In the order they are announced (and numbered: channel i is on the group address + 1 + i).
    channels: Vec<Channel>,
    next_announce: Instant,
    replies: VecDeque<(SocketAddr, Control)>,
    events: VecDeque<LeaseEvent>,
    dropped: Counters,
}

impl Leases {
    /// A relay offering `channels` (all idle); its first ANNOUNCE is due at `now`.
    pub fn new(
        channels: impl IntoIterator<Item = ChannelInfo>,
        lease: Duration,
        grace: Duration,
        now: Instant,
    ) -> Self {
        Leases {
            lease,
            grace,
            channels: channels
                .into_iter()
                .map(|info| Channel {
                    info: ChannelInfo {
                        live: false,
                        ..info
                    },
                    viewers: HashMap::new(),
                    idle_since: None,
                })
                .collect(),
            next_announce: now,
            replies: VecDeque::new(),
            events: VecDeque::new(),
            dropped: Counters::default(),
        }
    }

    /// How long a granted lease lasts (REPLY's `lease_ms`).
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The channels as the next ANNOUNCE lists them, in the order given to `new`.
    pub fn channels(&self) -> impl Iterator<Item = &ChannelInfo> {
        self.channels.iter().map(|c| &c.info)
    }

    /// Whether `channel` is being relayed (a lease is held, or its grace period runs).
    pub fn is_live(&self, channel: &str) -> bool {
        self.find(channel).is_some_and(|c| c.info.live)
    }

    /// How many viewers hold a lease on `channel`.
    pub fn viewers(&self, channel: &str) -> usize {
        self.find(channel).map_or(0, |c| c.viewers.len())
    }

    /// Datagrams dropped: not video control at all, malformed, or a type the relay does not take.
    pub fn dropped(&self) -> &Counters {
        &self.dropped
    }

    /// Takes one datagram from the control socket: a REQUEST is granted or refused (its REPLY
    /// waits in `poll_transmit`), a LEAVE ends a lease; anything else is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match Control::parse(bytes) {
            Ok(Control::Request { viewer, channel }) => {
                let result = if self.request(now, viewer, &channel) {
                    Ok(self.find(&channel).expect("granted").info.clone())
                } else {
                    Err(Refusal::UnknownChannel)
                };
                let reply = Control::Reply {
                    viewer,
                    lease_ms: self.lease.as_millis() as u32,
                    result,
                };
                self.replies.push_back((from, reply));
            }
            Ok(Control::Leave { viewer, channel }) => self.leave(now, viewer, &channel),
            Ok(Control::Announce { .. } | Control::Reply { .. }) => self.dropped.unexpected += 1,
            Err(e) => self.dropped.parse_error(e),
        }
    }

    /// Grants or renews `viewer`'s lease on `channel`; false if there is no such channel.
    fn request(&mut self, now: Instant, viewer: u64, channel: &str) -> bool {
        let lease = self.lease;
        let Some(c) = self.find_mut(channel) else {
            return false;
        };
        c.viewers.insert(viewer, now + lease);
        c.idle_since = None;
        if !c.info.live {
            c.info.live = true;
            self.events.push_back(LeaseEvent::Start(channel.to_owned()));
        }
        true
    }

    fn leave(&mut self, now: Instant, viewer: u64, channel: &str) {
        if let Some(c) = self.find_mut(channel)
            && c.viewers.remove(&viewer).is_some()
            && c.viewers.is_empty()
        {
            c.idle_since = Some(now);
        }
    }

    /// Ends the leases that expired, and stops the channels whose grace period is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        for c in &mut self.channels {
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
            if c.info.live && c.idle_since.is_some_and(|t| now >= t + self.grace) {
                c.info.live = false;
                c.idle_since = None;
                self.events.push_back(LeaseEvent::Stop(c.info.name.clone()));
            }
        }
    }

    /// The next ANNOUNCE, lease expiry or end of a grace period.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(
            self.lease_timeout()
                .map_or(self.next_announce, |t| t.min(self.next_announce)),
        )
    }

    /// The next lease expiry or end of a grace period.
    fn lease_timeout(&self) -> Option<Instant> {
        self.channels
            .iter()
            .flat_map(|c| {
                c.viewers
                    .values()
                    .copied()
                    .chain(c.idle_since.filter(|_| c.info.live).map(|t| t + self.grace))
            })
            .min()
    }

    /// Writes the next datagram into `buf` and says where it goes: the REPLYs first (a viewer
    /// waits for them), then the ANNOUNCE when one is due.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Destination> {
        buf.clear();
        if let Some((to, reply)) = self.replies.pop_front() {
            reply.write(buf);
            return Some(Destination::Unicast(to));
        }
        if now >= self.next_announce {
            self.next_announce = now + ANNOUNCE_EVERY;
            let channels = self.channels().cloned().collect();
            Control::Announce { channels }.write(buf);
            return Some(Destination::Group);
        }
        None
    }

    /// The next channel to start or stop.
    pub fn poll_event(&mut self) -> Option<LeaseEvent> {
        self.events.pop_front()
    }

    fn find(&self, channel: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.info.name == channel)
    }

    fn find_mut(&mut self, channel: &str) -> Option<&mut Channel> {
        self.channels.iter_mut().find(|c| c.info.name == channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn channel(name: &str) -> ChannelInfo {
        ChannelInfo {
            name: name.into(),
            live: false,
            group: Ipv4Addr::new(239, 255, 1, 2),
            media_port: 5004,
            repair_port: 5006,
        }
    }

    #[test]
    fn leases_start_once_share_and_stop_after_grace() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Leases::new([channel("pi"), channel("cam")], s(6), s(10), t0);
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
        // The lease clock alone: `poll_timeout` also carries the announcements' (asserted below).
        assert_eq!(l.lease_timeout(), Some(t0 + s(18)));
        l.handle_timeout(t0 + s(17));
        assert_eq!(l.poll_event(), None);
        l.handle_timeout(t0 + s(18));
        assert_eq!(l.poll_event(), Some(LeaseEvent::Stop("pi".into())));
        assert!(!l.is_live("pi"));
        assert_eq!(l.lease_timeout(), None);
        assert_eq!(
            l.poll_timeout(),
            Some(t0),
            "the first ANNOUNCE is still due"
        );
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

    #[test]
    fn announces_every_second_and_replies_first() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Leases::new([channel("pi")], DEFAULT_LEASE, DEFAULT_GRACE, t0);
        let mut buf = Vec::new();
        assert_eq!(l.poll_transmit(t0, &mut buf), Some(Destination::Group));
        let announced = |buf: &[u8]| match Control::parse(buf) {
            Ok(Control::Announce { channels }) => channels,
            other => panic!("{other:?}"),
        };
        assert_eq!(announced(&buf), [channel("pi")]);
        assert_eq!(l.poll_transmit(t0, &mut buf), None);
        assert_eq!(l.poll_timeout(), Some(t0 + ANNOUNCE_EVERY));
        let viewer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let request = Control::Request {
            viewer: 9,
            channel: "pi".into(),
        };
        l.handle_datagram(t0 + ms(1500), viewer, &request.to_vec());
        assert_eq!(
            l.poll_transmit(t0 + ms(1500), &mut buf),
            Some(Destination::Unicast(viewer))
        );
        let live = ChannelInfo {
            live: true,
            ..channel("pi")
        };
        assert_eq!(
            Control::parse(&buf),
            Ok(Control::Reply {
                viewer: 9,
                lease_ms: 6000,
                result: Ok(live.clone()),
            })
        );
        assert_eq!(
            l.poll_transmit(t0 + ms(1500), &mut buf),
            Some(Destination::Group)
        );
        assert_eq!(announced(&buf), [live], "the ANNOUNCE says it is live");
        assert_eq!(l.poll_timeout(), Some(t0 + ms(2500)));
    }
}
