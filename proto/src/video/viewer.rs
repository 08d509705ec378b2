//! The viewer's side of a channel (VIDEO.md section 5): find the relay by its ANNOUNCEs, ask for
//! a lease (REQUEST, repeated until the REPLY comes), renew it, follow a relay that restarted
//! elsewhere, and LEAVE at the end. The relay's side is `super::channel`; the media itself goes
//! through `super::fec::Playout`.

use crate::counters::Counters;
use crate::video::wire::{ChannelInfo, Control, Refusal};
use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// How often a viewer asks again until the first REPLY: REQUEST and REPLY may be lost like any
/// datagram.
pub const REQUEST_EVERY: Duration = Duration::from_millis(500);
/// Shortest lease a viewer takes from a REPLY, so that a bogus 0 cannot make it renew in a loop.
const MIN_LEASE: Duration = Duration::from_secs(1);
/// LEAVEs sent at the end: a lost LEAVE only costs a lease period, but costs it.
const LEAVE_COPIES: u8 = 2;

/// What a viewer needs to know before it starts.
#[derive(Debug, Clone)]
pub struct ViewerConfig {
    /// Random id, unique among the relay's viewers.
    pub id: u64,
    /// The channel to watch.
    pub channel: String,
    /// The announce group listened on (named in the error when nothing is heard).
    pub group: SocketAddrV4,
    /// How long to wait for an ANNOUNCE listing the channel, and then again for the first REPLY.
    pub timeout: Duration,
}

/// What the viewer tells the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerEvent {
    /// The relay granted the lease: the channel's media is on these addresses.
    Joined(ChannelInfo),
    /// An ANNOUNCE listing the channel came from another address (a restarted relay): REQUESTs
    /// now go there, the first one at once.
    RelayMoved(SocketAddr),
    /// The viewer gave up; it sends nothing more.
    Failed(ViewerError),
}

/// Why a viewer gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewerError {
    /// No ANNOUNCE at all within the timeout.
    #[error(
        "no relay heard on {group} within {:.0} s: is `edm-cast video` running on this LAN with the same --group? (check --iface)",
        .waited.as_secs_f64()
    )]
    NoRelay {
        /// The announce group.
        group: SocketAddrV4,
        /// The timeout.
        waited: Duration,
    },
    /// ANNOUNCEs came, but none listed the channel.
    #[error("no channel '{channel}' on the relay; it offers: {}", .offered.join(", "))]
    NotOffered {
        /// The channel asked for.
        channel: String,
        /// The channels in the last ANNOUNCE heard.
        offered: Vec<String>,
    },
    /// REQUESTs went out for the whole timeout without a REPLY.
    #[error("the relay at {relay} did not answer")]
    NoAnswer {
        /// Where the REQUESTs went.
        relay: SocketAddr,
    },
    /// The relay's REPLY refused the channel.
    #[error("the relay has no channel '{channel}'")]
    Refused {
        /// The channel asked for.
        channel: String,
    },
}

#[derive(Debug)]
enum Phase {
    /// Listening for an ANNOUNCE that lists the channel.
    Finding {
        give_up: Instant,
        /// The channels of the last ANNOUNCE heard, for the error.
        heard: Vec<String>,
    },
    /// Sending REQUEST every `REQUEST_EVERY` until the REPLY.
    Requesting {
        relay: SocketAddr,
        give_up: Instant,
        next: Instant,
    },
    /// Granted: renewing every `renew` (a third of the lease).
    Watching {
        relay: SocketAddr,
        renew: Duration,
        next: Instant,
    },
    /// `leave` was called: `copies` LEAVEs still to send.
    Leaving { relay: SocketAddr, copies: u8 },
    /// Failed or left: nothing more to do.
    Done,
}

/// The viewer's control state machine: one channel, one relay at a time.
///
/// - Getters: `id`, `channel`, `relay` (once an ANNOUNCE listed the channel), `dropped`
///   (datagrams that were not an ANNOUNCE or a REPLY for this viewer).
/// - Inputs: `handle_datagram(now, from, bytes)` for every datagram on the announce group and on
///   the viewer's unicast socket (ANNOUNCE and REPLY are told apart by type);
///   `handle_timeout(now)` once `poll_timeout` has passed (it fails the viewer at the timeout).
/// - Commands: `leave()`, when the viewer is done watching.
/// - Outputs: `poll_transmit(now, buf)` gives each REQUEST or LEAVE, always to the relay;
///   `poll_timeout()` the next REQUEST or the timeout; `poll_event()` a `ViewerEvent`.
#[derive(Debug)]
pub struct Viewer {
    config: ViewerConfig,
    phase: Phase,
    events: VecDeque<ViewerEvent>,
    dropped: Counters,
}

impl Viewer {
    /// Starts listening at `now`: the timeout runs from here.
    pub fn new(config: ViewerConfig, now: Instant) -> Self {
        let give_up = now + config.timeout;
        Viewer {
            config,
            phase: Phase::Finding {
                give_up,
                heard: Vec::new(),
            },
            events: VecDeque::new(),
            dropped: Counters::default(),
        }
    }

    /// This viewer's id, in its REQUESTs and LEAVEs.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// The channel watched.
    pub fn channel(&self) -> &str {
        &self.config.channel
    }

    /// The relay's control address, once an ANNOUNCE listed the channel.
    pub fn relay(&self) -> Option<SocketAddr> {
        match self.phase {
            Phase::Requesting { relay, .. }
            | Phase::Watching { relay, .. }
            | Phase::Leaving { relay, .. } => Some(relay),
            Phase::Finding { .. } | Phase::Done => None,
        }
    }

    /// Datagrams dropped: not video control at all, malformed, of a type a viewer does not take,
    /// or a REPLY for another viewer.
    pub fn dropped(&self) -> &Counters {
        &self.dropped
    }

    /// Takes one datagram from the announce group or the viewer's own socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match Control::parse(bytes) {
            Ok(Control::Announce { channels }) => self.on_announce(now, from, channels),
            Ok(Control::Reply { viewer, .. }) if viewer != self.config.id => {
                self.dropped.other_session += 1
            }
            Ok(Control::Reply {
                lease_ms, result, ..
            }) => self.on_reply(now, lease_ms, result),
            Ok(Control::Request { .. } | Control::Leave { .. }) => self.dropped.unexpected += 1,
            Err(e) => self.dropped.parse_error(e),
        }
    }

    fn on_announce(&mut self, now: Instant, from: SocketAddr, channels: Vec<ChannelInfo>) {
        let listed = channels.iter().any(|c| c.name == self.config.channel);
        match &mut self.phase {
            Phase::Finding { heard, .. } if !listed => {
                *heard = channels.into_iter().map(|c| c.name).collect();
            }
            Phase::Finding { .. } => {
                self.phase = Phase::Requesting {
                    relay: from,
                    give_up: now + self.config.timeout,
                    next: now,
                };
            }
            Phase::Requesting { relay, next, .. } | Phase::Watching { relay, next, .. }
                if listed && *relay != from =>
            {
                *relay = from;
                *next = now;
                self.events.push_back(ViewerEvent::RelayMoved(from));
            }
            _ => {}
        }
    }

    fn on_reply(&mut self, now: Instant, lease_ms: u32, result: Result<ChannelInfo, Refusal>) {
        // Renewals are answered too; the lease is the relay's to keep, so those need nothing.
        let Phase::Requesting { relay, .. } = self.phase else {
            return;
        };
        match result {
            Ok(info) => {
                let renew = Duration::from_millis(lease_ms as u64).max(MIN_LEASE) / 3;
                self.phase = Phase::Watching {
                    relay,
                    renew,
                    next: now + renew,
                };
                self.events.push_back(ViewerEvent::Joined(info));
            }
            Err(Refusal::UnknownChannel) => self.fail(ViewerError::Refused {
                channel: self.config.channel.clone(),
            }),
        }
    }

    /// Gives up once the timeout passed without the relay, or without its REPLY.
    pub fn handle_timeout(&mut self, now: Instant) {
        let error = match &mut self.phase {
            Phase::Finding { give_up, heard } if now >= *give_up => {
                if heard.is_empty() {
                    ViewerError::NoRelay {
                        group: self.config.group,
                        waited: self.config.timeout,
                    }
                } else {
                    ViewerError::NotOffered {
                        channel: self.config.channel.clone(),
                        offered: std::mem::take(heard),
                    }
                }
            }
            Phase::Requesting { relay, give_up, .. } if now >= *give_up => {
                ViewerError::NoAnswer { relay: *relay }
            }
            _ => return,
        };
        self.fail(error);
    }

    fn fail(&mut self, error: ViewerError) {
        self.phase = Phase::Done;
        self.events.push_back(ViewerEvent::Failed(error));
    }

    /// Ends the lease: the next `poll_transmit`s give the LEAVEs, then nothing more.
    pub fn leave(&mut self) {
        self.phase = match self.relay() {
            Some(relay) => Phase::Leaving {
                relay,
                copies: LEAVE_COPIES,
            },
            None => Phase::Done,
        };
    }

    /// Writes the next datagram into `buf` and says where it goes (the relay).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        buf.clear();
        let (relay, leave) = match &mut self.phase {
            Phase::Requesting { relay, next, .. } if now >= *next => {
                *next = now + REQUEST_EVERY;
                (*relay, false)
            }
            Phase::Watching {
                relay, renew, next, ..
            } if now >= *next => {
                *next = now + *renew;
                (*relay, false)
            }
            Phase::Leaving { relay, copies } => {
                let relay = *relay;
                *copies -= 1;
                if *copies == 0 {
                    self.phase = Phase::Done;
                }
                (relay, true)
            }
            _ => return None,
        };
        let (viewer, channel) = (self.config.id, self.config.channel.clone());
        let message = if leave {
            Control::Leave { viewer, channel }
        } else {
            Control::Request { viewer, channel }
        };
        message.write(buf);
        Some(relay)
    }

    /// The next REQUEST due, or the timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Finding { give_up, .. } => Some(give_up),
            Phase::Requesting { give_up, next, .. } => Some(give_up.min(next)),
            Phase::Watching { next, .. } => Some(next),
            Phase::Leaving { .. } | Phase::Done => None,
        }
    }

    /// The next thing the shell should know.
    pub fn poll_event(&mut self) -> Option<ViewerEvent> {
        self.events.pop_front()
    }
}

/// A relay's `Leases` and some `Viewer`s wired through an in-memory network with a fake clock:
/// seconds of protocol in microseconds, and every loss pattern a closure.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::Destination;
    use crate::video::channel::{DEFAULT_GRACE, DEFAULT_LEASE, LeaseEvent, Leases};
    use std::net::Ipv4Addr;

    const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 1, 1), 5010);
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn channel(name: &str, i: u8) -> ChannelInfo {
        ChannelInfo {
            name: name.into(),
            live: false,
            group: Ipv4Addr::new(239, 255, 1, 2 + i),
            media_port: 5004,
            repair_port: 5006,
        }
    }

    fn viewer_at(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 10 + i as u8], 4000))
    }

    /// Whether a datagram sent at this time (since t0) is lost on the way. Garbage is never
    /// lost: it does not parse.
    type Loss = Box<dyn FnMut(Duration, &Control) -> bool>;

    struct Net {
        t0: Instant,
        now: Instant,
        relay: Leases,
        relay_at: SocketAddr,
        viewers: Vec<Viewer>,
        lose: Loss,
        /// The relay's events, with when (since t0).
        starts_stops: Vec<(Duration, LeaseEvent)>,
        /// Each viewer's events, with when.
        heard: Vec<(Duration, usize, ViewerEvent)>,
        /// REQUESTs that reached the relay.
        requests: usize,
    }

    impl Net {
        /// A relay offering `channels`, no viewer yet.
        fn new(channels: &[&str]) -> Net {
            let t0 = Instant::now();
            Net {
                t0,
                now: t0,
                relay: Self::relay_offering(channels, t0),
                relay_at: "10.0.0.1:40000".parse().unwrap(),
                viewers: Vec::new(),
                lose: Box::new(|_, _| false),
                starts_stops: Vec::new(),
                heard: Vec::new(),
                requests: 0,
            }
        }

        fn relay_offering(channels: &[&str], now: Instant) -> Leases {
            let channels = (0..).zip(channels).map(|(i, name)| channel(name, i));
            Leases::new(channels, DEFAULT_LEASE, DEFAULT_GRACE, now)
        }

        /// A viewer of `channel` starts now; returns its index.
        fn watch(&mut self, channel: &str) -> usize {
            let i = self.viewers.len();
            let config = ViewerConfig {
                id: 100 + i as u64,
                channel: channel.into(),
                group: GROUP,
                timeout: TIMEOUT,
            };
            self.viewers.push(Viewer::new(config, self.now));
            i
        }

        fn at(&self) -> Duration {
            self.now - self.t0
        }

        /// Delivers everything the machines have to send, until none has more.
        fn exchange(&mut self) {
            let mut buf = Vec::new();
            loop {
                let mut sent = false;
                for i in 0..self.viewers.len() {
                    while let Some(to) = self.viewers[i].poll_transmit(self.now, &mut buf) {
                        sent = true;
                        if to == self.relay_at && !self.lost(&buf) {
                            if matches!(Control::parse(&buf), Ok(Control::Request { .. })) {
                                self.requests += 1;
                            }
                            self.relay.handle_datagram(self.now, viewer_at(i), &buf);
                        }
                    }
                }
                while let Some(to) = self.relay.poll_transmit(self.now, &mut buf) {
                    sent = true;
                    for i in 0..self.viewers.len() {
                        let reaches = match to {
                            Destination::Group => true,
                            Destination::Unicast(a) => a == viewer_at(i),
                        };
                        if reaches && !self.lost(&buf) {
                            self.viewers[i].handle_datagram(self.now, self.relay_at, &buf);
                        }
                    }
                }
                self.collect_events();
                if !sent {
                    return;
                }
            }
        }

        fn lost(&mut self, datagram: &[u8]) -> bool {
            let at = self.at();
            Control::parse(datagram).is_ok_and(|c| (self.lose)(at, &c))
        }

        fn collect_events(&mut self) {
            let at = self.at();
            while let Some(e) = self.relay.poll_event() {
                self.starts_stops.push((at, e));
            }
            for (i, v) in self.viewers.iter_mut().enumerate() {
                while let Some(e) = v.poll_event() {
                    self.heard.push((at, i, e));
                }
            }
        }

        /// Runs the protocol, timer by timer, until `t` after t0.
        fn run_until(&mut self, t: Duration) {
            let end = self.t0 + t;
            for _ in 0..100_000 {
                self.exchange();
                let next = self
                    .viewers
                    .iter()
                    .filter_map(Viewer::poll_timeout)
                    .chain(self.relay.poll_timeout())
                    .min();
                match next {
                    Some(next) if next <= end => self.now = self.now.max(next),
                    _ => {
                        self.now = end;
                        return;
                    }
                }
                self.relay.handle_timeout(self.now);
                for v in &mut self.viewers {
                    v.handle_timeout(self.now);
                }
            }
            panic!("no progress at {:?}", self.at());
        }

        /// What viewer `i` heard.
        fn events_of(&self, i: usize) -> Vec<(Duration, ViewerEvent)> {
            let mine = self.heard.iter().filter(|(_, v, _)| *v == i);
            mine.map(|(at, _, e)| (*at, e.clone())).collect()
        }

        fn error_of(&self, i: usize) -> String {
            match self.events_of(i).as_slice() {
                [(_, ViewerEvent::Failed(e))] => e.to_string(),
                other => panic!("viewer {i}: {other:?}"),
            }
        }
    }

    fn live(info: ChannelInfo) -> ChannelInfo {
        ChannelInfo { live: true, ..info }
    }

    #[test]
    fn a_viewer_finds_the_relay_and_is_granted() {
        let mut net = Net::new(&["pi", "cam"]);
        net.run_until(ms(300));
        let v = net.watch("cam");
        net.run_until(s(3));
        // The next ANNOUNCE (1 s) brings the relay; REQUEST and REPLY follow at once.
        assert_eq!(
            net.events_of(v),
            [(s(1), ViewerEvent::Joined(live(channel("cam", 1))))]
        );
        assert_eq!(net.viewers[v].relay(), Some(net.relay_at));
        assert_eq!(net.starts_stops, [(s(1), LeaseEvent::Start("cam".into()))]);
        assert_eq!(net.relay.viewers("cam"), 1);
        assert!(net.relay.is_live("cam") && !net.relay.is_live("pi"));
        let announced: Vec<_> = net.relay.channels().map(|c| c.live).collect();
        assert_eq!(announced, [false, true]);
    }

    #[test]
    fn the_first_lease_starts_once_a_second_viewer_shares_and_renewals_keep_it_live() {
        let mut net = Net::new(&["pi"]);
        let (a, b) = (net.watch("pi"), net.watch("pi"));
        net.run_until(s(5));
        let c = net.watch("pi");
        // Everyone's renewals at 8 and 10 s lost, two in a row: the 6 s lease outlasts them.
        net.lose =
            Box::new(|at, c| matches!(c, Control::Request { .. }) && at > s(7) && at < s(11));
        net.run_until(ms(11_900));
        assert_eq!(net.relay.viewers("pi"), 3);
        net.run_until(s(120));
        for v in [a, b] {
            assert_eq!(
                net.events_of(v),
                [(s(0), ViewerEvent::Joined(live(channel("pi", 0))))]
            );
        }
        // Came after the ANNOUNCE at 5 s: the next one, at 6 s, brings the relay.
        assert_eq!(
            net.events_of(c),
            [(s(6), ViewerEvent::Joined(live(channel("pi", 0))))]
        );
        assert_eq!(net.starts_stops, [(s(0), LeaseEvent::Start("pi".into()))]);
        assert_eq!(net.relay.viewers("pi"), 3);
        // Each viewer asks once, then renews every 2 s (a third of the lease), up to 120 s.
        assert_eq!(net.requests, 2 * (1 + 60) + (1 + 57) - 3 * 2);
    }

    #[test]
    fn leave_then_grace_stops_the_channel() {
        let mut net = Net::new(&["pi"]);
        let v = net.watch("pi");
        net.run_until(s(5));
        net.viewers[v].leave();
        let mut leaves = 0;
        net.lose = Box::new(move |_, c| {
            leaves += matches!(c, Control::Leave { .. }) as u32;
            leaves == 1
        });
        net.exchange();
        assert_eq!(leaves_sent(&mut net), 0, "two LEAVEs, then nothing");
        assert_eq!(net.viewers[v].poll_timeout(), None);
        // The second LEAVE made it: the lease ended now, the grace period runs.
        assert_eq!(net.relay.viewers("pi"), 0);
        net.run_until(s(5) + DEFAULT_GRACE - ms(1));
        assert!(net.relay.is_live("pi"));
        net.run_until(s(60));
        assert_eq!(
            net.starts_stops,
            [
                (s(0), LeaseEvent::Start("pi".into())),
                (s(15), LeaseEvent::Stop("pi".into()))
            ]
        );
        assert!(!net.relay.is_live("pi"));
    }

    fn leaves_sent(net: &mut Net) -> usize {
        let mut buf = Vec::new();
        let now = net.now;
        std::iter::from_fn(|| net.viewers[0].poll_transmit(now, &mut buf)).count()
    }

    #[test]
    fn a_viewer_that_vanishes_lapses_and_the_channel_stops_after_grace() {
        let mut net = Net::new(&["pi"]);
        net.watch("pi");
        net.run_until(s(5));
        // Gone without a LEAVE (pulled cable): its last renewal was at 4 s.
        net.lose = Box::new(|_, _| true);
        net.run_until(s(60));
        assert_eq!(
            net.starts_stops,
            [
                (s(0), LeaseEvent::Start("pi".into())),
                (
                    s(4) + DEFAULT_LEASE + DEFAULT_GRACE,
                    LeaseEvent::Stop("pi".into())
                )
            ]
        );
    }

    #[test]
    fn lost_requests_and_replies_are_retried() {
        let mut net = Net::new(&["pi"]);
        let (mut requests, mut replies) = (0, 0);
        net.lose = Box::new(move |_, c| match c {
            Control::Request { .. } => {
                requests += 1;
                requests <= 3
            }
            Control::Reply { .. } => {
                replies += 1;
                replies <= 2
            }
            _ => false,
        });
        let v = net.watch("pi");
        net.run_until(s(10));
        // REQUESTs at 0, 0.5 and 1 s lost; the REPLYs to 1.5 and 2 s lost; 2.5 s gets through.
        assert_eq!(
            net.events_of(v),
            [(ms(2500), ViewerEvent::Joined(live(channel("pi", 0))))]
        );
        assert_eq!(
            net.starts_stops,
            [(ms(1500), LeaseEvent::Start("pi".into()))]
        );
    }

    #[test]
    fn an_unknown_channel_is_refused_with_the_right_error() {
        // Nothing on the group at all.
        let mut net = Net::new(&["pi"]);
        net.lose = Box::new(|_, c| matches!(c, Control::Announce { .. }));
        let v = net.watch("pi");
        net.run_until(s(30));
        assert_eq!(
            net.error_of(v),
            "no relay heard on 239.255.1.1:5010 within 10 s: is `edm-cast video` running on \
             this LAN with the same --group? (check --iface)"
        );
        assert_eq!(net.events_of(v)[0].0, s(10));
        assert_eq!(
            net.viewers[v].poll_timeout(),
            None,
            "a failed viewer is done"
        );

        // The relay is there, without the channel.
        let mut net = Net::new(&["pi", "cam"]);
        let v = net.watch("door");
        net.run_until(s(30));
        assert_eq!(
            net.error_of(v),
            "no channel 'door' on the relay; it offers: pi, cam"
        );
        assert_eq!(net.requests, 0);

        // The relay announces, but never answers.
        let mut net = Net::new(&["pi"]);
        net.lose = Box::new(|_, c| matches!(c, Control::Reply { .. }));
        let v = net.watch("pi");
        net.run_until(s(30));
        assert_eq!(
            net.error_of(v),
            "the relay at 10.0.0.1:40000 did not answer"
        );
        assert_eq!(net.events_of(v)[0].0, s(10), "10 s after it was found");
        assert_eq!(net.requests, 20, "every 500 ms meanwhile");

        // An ANNOUNCE (of another relay, say) lists the channel; the relay asked refuses it.
        let mut net = Net::new(&["pi"]);
        let v = net.watch("door");
        let announce = Control::Announce {
            channels: vec![channel("door", 0)],
        };
        let (now, at) = (net.now, net.relay_at);
        net.viewers[v].handle_datagram(now, at, &announce.to_vec());
        net.run_until(s(30));
        assert_eq!(net.error_of(v), "the relay has no channel 'door'");
        assert!(net.starts_stops.is_empty());
    }

    #[test]
    fn a_relay_that_moves_is_followed() {
        let mut net = Net::new(&["pi"]);
        let v = net.watch("pi");
        net.run_until(ms(10_300));
        // The relay restarts on another port: a new table, its first ANNOUNCE at once.
        net.relay = Net::relay_offering(&["pi"], net.now);
        net.relay_at = "10.0.0.1:40001".parse().unwrap();
        net.run_until(s(60));
        assert_eq!(
            net.events_of(v),
            [
                (s(0), ViewerEvent::Joined(live(channel("pi", 0)))),
                (ms(10_300), ViewerEvent::RelayMoved(net.relay_at)),
            ]
        );
        assert_eq!(net.viewers[v].relay(), Some(net.relay_at));
        // The new relay started at once and kept its one viewer since.
        assert_eq!(
            net.starts_stops,
            [
                (s(0), LeaseEvent::Start("pi".into())),
                (ms(10_300), LeaseEvent::Start("pi".into()))
            ]
        );
        assert_eq!(net.relay.viewers("pi"), 1);
    }

    #[test]
    fn garbage_is_counted_never_fatal() {
        let mut net = Net::new(&["pi"]);
        let v = net.watch("pi");
        let (relay_at, viewer) = (net.relay_at, viewer_at(v));
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let garbage: u64 = 3000;
        for i in 0..garbage {
            let len = (next() % 1500) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Most with the video header, so the parser goes deep.
            if i % 4 != 0 && d.len() >= 4 {
                d[..3].copy_from_slice(&[0xED, 0x56, 1]);
                d[3] = 0x20 + (next() % 5) as u8;
            }
            let now = net.now;
            net.relay.handle_datagram(now, viewer, &d);
            net.viewers[v].handle_datagram(now, relay_at, &d);
            net.run_until(net.at() + ms(3));
        }
        // Valid control, but not for whom it reached: a REPLY to the relay, a REQUEST to the
        // viewer, a REPLY for another viewer.
        let reply = |viewer| Control::Reply {
            viewer,
            lease_ms: 6000,
            result: Err(Refusal::UnknownChannel),
        };
        let request = Control::Request {
            viewer: 1,
            channel: "pi".into(),
        };
        let now = net.now;
        net.relay.handle_datagram(now, viewer, &reply(100).to_vec());
        net.viewers[v].handle_datagram(now, relay_at, &request.to_vec());
        net.viewers[v].handle_datagram(now, relay_at, &reply(7).to_vec());
        net.run_until(s(30));
        let relay = net.relay.dropped();
        assert_eq!(relay.total(), garbage + 1, "{relay:?}");
        assert_eq!(relay.unexpected, 1);
        let viewer = net.viewers[v].dropped();
        assert_eq!(viewer.total(), garbage + 2, "{viewer:?}");
        assert_eq!((viewer.unexpected, viewer.other_session), (1, 1));
        assert_eq!(
            net.events_of(v),
            [(s(0), ViewerEvent::Joined(live(channel("pi", 0))))]
        );
        assert_eq!(net.starts_stops, [(s(0), LeaseEvent::Start("pi".into()))]);
    }
}
