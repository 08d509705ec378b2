//! The viewer's side of a channel (VIDEO.md section 5): find the relay by its ANNOUNCEs, ask for
//! a lease (REQUEST, repeated until the REPLY comes), renew it, follow a relay that restarted
//! elsewhere, and LEAVE at the end. Each REQUEST carries the FEC figures the shell last gave it
//! (`set_fec`), so that the relay can show what its viewers repaired and lost. With a trust set, only a relay whose ANNOUNCEs are signed by
//! a trusted key is followed, and then only that key's. The relay's side is `super::channel`; the
//! media itself goes through `super::fec::Playout`.

use crate::auth::{Auth, KeyId, Trust};
use crate::counters::Counters;
use crate::video::wire::{AudioInfo, ChannelInfo, Control, FecReport, Refusal};
use std::collections::VecDeque;
use std::net::SocketAddr;
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
    pub group: SocketAddr,
    /// How long to wait for an ANNOUNCE listing the channel, and then again for the first REPLY.
    pub timeout: Duration,
    /// The keys a relay may sign with. With a trust set, only signed ANNOUNCEs and REPLYs are
    /// taken; without, any relay that announces the channel is followed.
    pub trust: Option<Trust>,
}

/// What the viewer tells the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerEvent {
    /// The relay granted the lease: the channel's media is on these addresses.
    Joined(ChannelInfo),
    /// An ANNOUNCE listing the channel came from another address (a restarted relay): REQUESTs
    /// now go there, the first one at once.
    RelayMoved(SocketAddr),
    /// A REPLY once joined described the channel's audio otherwise than the REPLY that granted
    /// the lease (the relay learned an RTSP source's audio track once connected): this is it now.
    AudioChanged(Option<AudioInfo>),
    /// The viewer gave up; it sends nothing more.
    Failed(ViewerError),
}

/// Why a viewer gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewerError {
    /// ANNOUNCEs came, but none signed by a trusted key.
    #[error(
        "no relay signed by a trusted key on {group} within {:.0} s: {refused} announcements were unsigned, signed by another key or too old (is `edm-cast video --key` using the key you trust? are both clocks right?)",
        .waited.as_secs_f64()
    )]
    Untrusted {
        /// The announce group.
        group: SocketAddr,
        /// The timeout.
        waited: Duration,
        /// ANNOUNCEs whose signature was not accepted.
        refused: u64,
    },
    /// No ANNOUNCE at all within the timeout.
    #[error(
        "no relay heard on {group} within {:.0} s: is `edm-cast video` running on this LAN with the same --group? (check --iface)",
        .waited.as_secs_f64()
    )]
    NoRelay {
        /// The announce group.
        group: SocketAddr,
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

/// What the trust set made of an ANNOUNCE.
enum Signed {
    /// Not taken: counted in `dropped`.
    Refused,
    /// No trust set: taken as it is.
    Unchecked,
    /// Signed by this trusted key at this time (Unix ms).
    By(KeyId, u64),
}

#[derive(Debug)]
enum Phase {
    /// Listening for an ANNOUNCE that lists the channel.
    Finding {
        give_up: Instant,
        /// The channels of the last ANNOUNCE heard, for the error.
        heard: Vec<String>,
        /// ANNOUNCEs whose signature the trust set did not accept, for the error.
        refused: u64,
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
/// - Getters: `id`, `channel`, `relay` (once an ANNOUNCE listed the channel), `signed_by` (with a
///   trust set, the key the relay signs with), `dropped` (datagrams that were not an ANNOUNCE or
///   a REPLY for this viewer, or whose signature was not accepted).
/// - Inputs: `handle_datagram(now, from, bytes)` for every datagram on the announce group and on
///   the viewer's unicast socket (ANNOUNCE and REPLY are told apart by type);
///   `handle_timeout(now)` once `poll_timeout` has passed (it fails the viewer at the timeout).
/// - Commands: `set_fec(report)`, the playout's figures for the next REQUESTs; `leave()`, when
///   the viewer is done watching.
/// - Outputs: `poll_transmit(now, buf)` gives each REQUEST or LEAVE, always to the relay;
///   `poll_timeout()` the next REQUEST or the timeout; `poll_event()` a `ViewerEvent`.
#[derive(Debug)]
pub struct Viewer {
    config: ViewerConfig,
    phase: Phase,
    /// With a trust set, once a relay is followed: the key its ANNOUNCEs are signed by, and the
    /// newest signing time accepted from it (a copy replayed from elsewhere is not newer).
    relay_key: Option<(KeyId, u64)>,
    events: VecDeque<ViewerEvent>,
    dropped: Counters,
    /// What the REQUESTs report (`set_fec`).
    fec: FecReport,
    /// The channel's audio as the last REPLY taken described it.
    audio: Option<AudioInfo>,
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
                refused: 0,
            },
            relay_key: None,
            events: VecDeque::new(),
            dropped: Counters::default(),
            fec: FecReport::default(),
            audio: None,
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

    /// With a trust set, the key the followed relay signs with.
    pub fn signed_by(&self) -> Option<KeyId> {
        self.relay_key.map(|(key, _)| key)
    }

    /// Datagrams dropped: not video control at all, malformed, of a type a viewer does not take,
    /// or a REPLY for another viewer (`other_session`). With a trust set also: unsigned, signed
    /// by a key not trusted or not the relay's, forged, too old, or an ANNOUNCE of the relay's
    /// from another address that is not newer than the relay's own (`stale`: a replayed copy); a
    /// REPLY from another address than the relay's (`wrong_source`).
    pub fn dropped(&self) -> &Counters {
        &self.dropped
    }

    /// Takes one datagram from the announce group or the viewer's own socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let (control, auth) = match Control::parse_with_auth(bytes) {
            Ok(parsed) => parsed,
            Err(e) => return self.dropped.parse_error(e),
        };
        match control {
            Control::Announce { channels } => match self.check_announce(now, from, bytes, &auth) {
                Signed::Refused => {}
                Signed::Unchecked => self.on_announce(now, from, channels, None),
                Signed::By(key, time) => self.on_announce(now, from, channels, Some((key, time))),
            },
            Control::Reply { viewer, .. } if viewer != self.config.id => {
                self.dropped.other_session += 1
            }
            Control::Reply {
                lease_ms, result, ..
            } => {
                if self.check_reply(now, from, bytes, &auth) {
                    self.on_reply(now, lease_ms, result);
                }
            }
            Control::Request { .. } | Control::Leave { .. } => self.dropped.unexpected += 1,
        }
    }

    /// Whether an ANNOUNCE may be acted on: always without a trust set. With one, it must be
    /// signed by a trusted key (once a relay is followed, by its key) at a time near ours; from
    /// another address than the relay's, it must also be newer than every ANNOUNCE taken from the
    /// relay, or it is a copy replayed from elsewhere. Refusals are counted.
    fn check_announce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        auth: &Auth,
    ) -> Signed {
        let Some(trust) = &self.config.trust else {
            return Signed::Unchecked;
        };
        let only = self.relay_key.map(|(key, _)| key);
        // The time of a signature the trust set accepts (an unsigned trailer is refused by it).
        let time_ms = match auth {
            Auth::Signed { time_ms, .. } => *time_ms,
            Auth::Unsigned => 0,
        };
        let key = match trust.check(now, bytes, auth, only.as_ref()) {
            Ok(key) => key,
            Err(r) => {
                self.dropped.rejected(r);
                if let Phase::Finding { refused, .. } = &mut self.phase {
                    *refused += 1;
                }
                return Signed::Refused;
            }
        };
        let from_relay = self.relay() == Some(from);
        match &mut self.relay_key {
            Some((_, newest)) if from_relay => *newest = (*newest).max(time_ms),
            Some((_, newest)) if time_ms <= *newest => {
                self.dropped.stale += 1;
                return Signed::Refused;
            }
            _ => {}
        }
        Signed::By(key, time_ms)
    }

    /// Whether a REPLY for this viewer may be acted on: always without a trust set. With one, it
    /// must come from the relay's address, signed by the relay's key at a time near ours.
    fn check_reply(&mut self, now: Instant, from: SocketAddr, bytes: &[u8], auth: &Auth) -> bool {
        let Some(trust) = &self.config.trust else {
            return true;
        };
        let (Some(relay), Some((key, _))) = (self.relay(), self.relay_key) else {
            self.dropped.unexpected += 1;
            return false;
        };
        if from != relay {
            self.dropped.wrong_source += 1;
            return false;
        }
        match trust.check(now, bytes, auth, Some(&key)) {
            Ok(_) => true,
            Err(r) => {
                self.dropped.rejected(r);
                false
            }
        }
    }

    fn on_announce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        channels: Vec<ChannelInfo>,
        signed: Option<(KeyId, u64)>,
    ) {
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
                self.relay_key = signed;
            }
            Phase::Requesting { relay, next, .. } | Phase::Watching { relay, next, .. }
                if listed && *relay != from =>
            {
                *relay = from;
                *next = now;
                self.relay_key = signed;
                self.events.push_back(ViewerEvent::RelayMoved(from));
            }
            _ => {}
        }
    }

    fn on_reply(&mut self, now: Instant, lease_ms: u32, result: Result<ChannelInfo, Refusal>) {
        // Renewals are answered too; the lease is the relay's to keep, so those need nothing but
        // a look at the channel's audio.
        let relay = match self.phase {
            Phase::Requesting { relay, .. } => relay,
            Phase::Watching { .. } => {
                if let Ok(info) = result
                    && info.audio != self.audio
                {
                    self.audio = info.audio.clone();
                    self.events.push_back(ViewerEvent::AudioChanged(info.audio));
                }
                return;
            }
            _ => return,
        };
        match result {
            Ok(info) => {
                self.audio = info.audio.clone();
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
            Phase::Finding {
                give_up,
                heard,
                refused,
            } if now >= *give_up => {
                if heard.is_empty() && *refused > 0 {
                    ViewerError::Untrusted {
                        group: self.config.group,
                        waited: self.config.timeout,
                        refused: *refused,
                    }
                } else if heard.is_empty() {
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

    /// The FEC figures the next REQUESTs carry: the playout's counts so far (`PlayoutStats`
    /// `recovered` and `lost`), which only grow.
    pub fn set_fec(&mut self, report: FecReport) {
        self.fec = report;
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
            Control::Request {
                viewer,
                channel,
                fec: Some(self.fec),
            }
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
    use crate::auth::{DEFAULT_MAX_SKEW, Seal, SecretKey, Signer, WallClock};
    use crate::video::channel::{DEFAULT_GRACE, DEFAULT_LEASE, LeaseConfig, LeaseEvent, Leases};
    use std::net::{IpAddr, Ipv4Addr};

    const GROUP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 1, 1)), 5010);
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
            group: Ipv4Addr::new(239, 255, 1, 2 + i).into(),
            media_port: 5004,
            repair_port: 5006,
            audio: None,
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
            Leases::new(channels, LeaseConfig::default(), now)
        }

        /// A relay signing with `key`, started at `now`; `clock_at(self.t0)` is its clock.
        fn relay_signing(&self, channels: &[&str], key: &SecretKey) -> Leases {
            let channels = (0..).zip(channels).map(|(i, name)| channel(name, i));
            let signer = Some(Signer {
                key: key.clone(),
                clock: clock_at(self.t0),
            });
            let config = LeaseConfig {
                signer,
                ..LeaseConfig::default()
            };
            Leases::new(channels, config, self.now)
        }

        /// A viewer of `channel` starts now; returns its index.
        fn watch(&mut self, channel: &str) -> usize {
            self.watch_trusting(channel, &[])
        }

        /// A viewer of `channel` that trusts `keys` (none: any relay) starts now.
        fn watch_trusting(&mut self, channel: &str, keys: &[&SecretKey]) -> usize {
            let i = self.viewers.len();
            let trust = (!keys.is_empty()).then(|| {
                let keys = keys.iter().map(|k| k.public());
                Trust::new(keys, clock_at(self.t0), DEFAULT_MAX_SKEW)
            });
            let config = ViewerConfig {
                id: 100 + i as u64,
                channel: channel.into(),
                group: GROUP,
                timeout: TIMEOUT,
                trust,
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

    /// Every machine's wall clock: at the test's `t0` it was this many Unix milliseconds.
    fn clock_at(t0: Instant) -> WallClock {
        WallClock::new(t0, 1_800_000_000_000)
    }

    /// An RTSP source's audio, learned by the relay once connected (after the first viewer's
    /// grant), reaches the viewers at once in an unasked REPLY, not at their next renewal; a
    /// viewer that joins later has it in its grant. Renewals saying the same are no news.
    #[test]
    fn audio_learned_after_the_grant_reaches_viewers_at_once() {
        let mut net = Net::new(&["pi", "cam"]);
        let (v, other) = (net.watch("pi"), net.watch("cam"));
        net.run_until(ms(1500));
        assert_eq!(
            net.events_of(v),
            [(s(0), ViewerEvent::Joined(live(channel("pi", 0))))]
        );
        let aac = AudioInfo {
            port: 5008,
            codec: crate::video::wire::AudioCodec::Aac,
            clock_rate: 48_000,
            channels: 2,
            config: vec![0x11, 0x90],
        };
        net.relay.set_audio("pi", Some(aac.clone()));
        net.relay.set_audio("pi", Some(aac.clone()));
        net.run_until(s(10));
        assert_eq!(
            net.events_of(v)[1..],
            [(ms(1500), ViewerEvent::AudioChanged(Some(aac.clone())))]
        );
        assert_eq!(net.events_of(other).len(), 1, "{:?}", net.events_of(other));
        let late = net.watch("pi");
        net.run_until(s(12));
        let joined = ChannelInfo {
            audio: Some(aac),
            ..live(channel("pi", 0))
        };
        assert_eq!(net.events_of(late), [(s(11), ViewerEvent::Joined(joined))]);
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

    /// The viewers' FEC figures reach the relay in their renewals and add up per channel; a
    /// viewer that left stays in the sums.
    #[test]
    fn fec_figures_reach_the_relay_in_renewals() {
        let mut net = Net::new(&["pi", "cam"]);
        let (a, b) = (net.watch("pi"), net.watch("pi"));
        let c = net.watch("cam");
        net.run_until(ms(1500));
        assert_eq!(net.relay.viewers("pi"), 2);
        net.relay.set_sent("pi", 400);
        net.relay.set_sent("cam", 400);
        let report = |repaired, lost| FecReport { repaired, lost };
        net.viewers[a].set_fec(report(12, 1));
        net.viewers[b].set_fec(report(3, 0));
        net.viewers[c].set_fec(report(7, 2));
        // Joined at 0 s: the renewals at 2 s carry them.
        assert_eq!(net.relay.fec("pi"), report(0, 0));
        net.run_until(ms(2100));
        assert_eq!(net.relay.fec("pi"), report(15, 1));
        assert_eq!(net.relay.fec("cam"), report(7, 2));
        net.viewers[a].set_fec(report(20, 4));
        net.viewers[b].leave();
        net.run_until(ms(4100));
        assert_eq!(net.relay.viewers("pi"), 1);
        assert_eq!(net.relay.fec("pi"), report(23, 4));
        net.viewers[a].leave();
        net.run_until(s(30));
        assert_eq!(
            net.relay.fec("pi"),
            report(23, 4),
            "the sums outlive the leases"
        );
        assert_eq!(net.relay.dropped().out_of_range, 0);
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
                d[..3].copy_from_slice(&[0xED, 0x56, crate::video::wire::VERSION]);
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
            fec: None,
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

    fn teacher() -> SecretKey {
        SecretKey::from_seed([1; 32])
    }

    fn student() -> SecretKey {
        SecretKey::from_seed([66; 32])
    }

    fn sealed(c: &Control, seal: Seal<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        c.write_sealed(seal, &mut v);
        v
    }

    /// A rogue relay on the same group, announcing the same channel from its own address (its
    /// channel's media on another group).
    fn rogue_announce() -> Control {
        Control::Announce {
            channels: vec![ChannelInfo {
                group: Ipv4Addr::new(239, 255, 66, 66).into(),
                ..channel("pi", 0)
            }],
        }
    }

    const ROGUE: &str = "10.0.0.66:40000";

    #[test]
    fn with_trust_a_rogue_relay_announcing_first_is_not_followed() {
        let mut net = Net::new(&["pi"]);
        let (t0, key) = (net.t0, teacher());
        net.relay = net.relay_signing(&["pi"], &key);
        let trusting = net.watch_trusting("pi", &[&key]);
        let trusting_all = net.watch("pi");
        let rogue: SocketAddr = ROGUE.parse().unwrap();
        let ms_now = clock_at(t0).unix_ms(t0);
        // Before the relay's first ANNOUNCE: unsigned; signed by a student's key; the teacher's
        // key id on a signature that is not the teacher's; a teacher-signed ANNOUNCE recorded an
        // hour ago (stale).
        let mut forged = sealed(&rogue_announce(), Seal::Signed(&student(), ms_now));
        let n = forged.len();
        forged[n - 80..n - 72].copy_from_slice(&key.public().id());
        let recorded = sealed(
            &Control::Announce {
                channels: vec![channel("pi", 0)],
            },
            Seal::Signed(&key, ms_now - 3_600_000),
        );
        for d in [
            rogue_announce().to_vec(),
            sealed(&rogue_announce(), Seal::Signed(&student(), ms_now)),
            forged,
            recorded,
        ] {
            for v in [trusting, trusting_all] {
                net.viewers[v].handle_datagram(t0, rogue, &d);
            }
        }
        // The viewer that trusts any relay took the first one it heard.
        assert_eq!(net.viewers[trusting_all].relay(), Some(rogue));
        assert_eq!(net.viewers[trusting].relay(), None);
        net.run_until(ms(2500));
        assert_eq!(
            net.events_of(trusting),
            [(s(0), ViewerEvent::Joined(live(channel("pi", 0))))]
        );
        assert_eq!(net.viewers[trusting].relay(), Some(net.relay_at));
        assert_eq!(net.viewers[trusting].signed_by(), Some(key.public().id()));
        let d = net.viewers[trusting].dropped().clone();
        assert_eq!(
            (d.unsigned, d.unknown_key, d.forged, d.stale),
            (1, 1, 1, 1),
            "{d:?}"
        );

        // While it watches: the rogue announces every second, unsigned and with the student's
        // key, and replays from its address a copy of the ANNOUNCE the relay just sent (the same
        // bytes: the relay's ANNOUNCE signed at this second).
        for second in 3..21 {
            net.run_until(s(second));
            let now = net.now;
            let ms_now = clock_at(t0).unix_ms(now);
            let relays = Control::Announce {
                channels: vec![live(channel("pi", 0))],
            };
            for d in [
                rogue_announce().to_vec(),
                sealed(&rogue_announce(), Seal::Signed(&student(), ms_now)),
                sealed(&relays, Seal::Signed(&key, ms_now)),
            ] {
                net.viewers[trusting].handle_datagram(now, rogue, &d);
            }
        }
        net.run_until(ms(20_500));
        assert_eq!(net.events_of(trusting).len(), 1, "never moved to the rogue");
        assert_eq!(net.viewers[trusting].relay(), Some(net.relay_at));
        let d = net.viewers[trusting].dropped();
        // One of each before it joined, then 18 rounds.
        assert_eq!((d.unsigned, d.unknown_key, d.stale), (19, 19, 19), "{d:?}");
    }

    /// Only the relay's key, even if another key is trusted too (a colleague's relay on the same
    /// group does not take the viewer over).
    #[test]
    fn with_trust_only_the_followed_relays_key_moves_the_viewer() {
        let mut net = Net::new(&["pi"]);
        let (t0, key, colleague) = (net.t0, teacher(), SecretKey::from_seed([2; 32]));
        net.relay = net.relay_signing(&["pi"], &key);
        let v = net.watch_trusting("pi", &[&key, &colleague]);
        net.run_until(s(3));
        let now = net.now;
        let other = sealed(
            &rogue_announce(),
            Seal::Signed(&colleague, clock_at(t0).unix_ms(now)),
        );
        net.viewers[v].handle_datagram(now, ROGUE.parse().unwrap(), &other);
        assert_eq!(net.viewers[v].relay(), Some(net.relay_at));
        assert_eq!(net.viewers[v].dropped().unknown_key, 1);
        // The teacher's relay restarts on another port: same key, newer time: followed.
        net.run_until(ms(10_300));
        net.relay = net.relay_signing(&["pi"], &key);
        net.relay_at = "10.0.0.1:40001".parse().unwrap();
        net.run_until(s(30));
        assert_eq!(
            net.events_of(v),
            [
                (s(0), ViewerEvent::Joined(live(channel("pi", 0)))),
                (ms(10_300), ViewerEvent::RelayMoved(net.relay_at)),
            ]
        );
        assert_eq!(net.relay.viewers("pi"), 1);
    }

    #[test]
    fn with_trust_forged_stale_or_misaddressed_replies_are_refused() {
        let mut net = Net::new(&["pi"]);
        let (t0, key) = (net.t0, teacher());
        net.relay = net.relay_signing(&["pi"], &key);
        // The relay's own REPLYs are lost for the first 3 s: the viewer keeps asking.
        net.lose = Box::new(|at, c| matches!(c, Control::Reply { .. }) && at < s(3));
        let v = net.watch_trusting("pi", &[&key]);
        net.run_until(s(1));
        let (now, relay_at) = (net.now, net.relay_at);
        let ms_now = clock_at(t0).unix_ms(now);
        let refusal = Control::Reply {
            viewer: 100,
            lease_ms: 6000,
            result: Err(Refusal::UnknownChannel),
        };
        let granted = |viewer| Control::Reply {
            viewer,
            lease_ms: 6000,
            result: Ok(ChannelInfo {
                group: Ipv4Addr::new(239, 255, 66, 66).into(),
                ..live(channel("pi", 0))
            }),
        };
        // The REPLY the relay granted to a student's own REQUEST (viewer 7), readdressed to this
        // viewer; and a refusal the relay signed, sent from elsewhere.
        let mut forged = sealed(&granted(7), Seal::Signed(&key, ms_now));
        forged[4..12].copy_from_slice(&100u64.to_be_bytes());
        let signed_refusal = sealed(&refusal, Seal::Signed(&key, ms_now));
        for (from, d) in [
            (relay_at, refusal.to_vec()),
            (relay_at, sealed(&refusal, Seal::Signed(&student(), ms_now))),
            (
                relay_at,
                sealed(&granted(100), Seal::Signed(&key, ms_now - 3_600_000)),
            ),
            (relay_at, forged),
            (ROGUE.parse().unwrap(), signed_refusal),
        ] {
            net.viewers[v].handle_datagram(now, from, &d);
        }
        assert!(net.events_of(v).is_empty(), "{:?}", net.events_of(v));
        let d = net.viewers[v].dropped();
        assert_eq!(
            (d.unsigned, d.unknown_key, d.stale, d.forged, d.wrong_source),
            (1, 1, 1, 1, 1),
            "{d:?}"
        );
        net.run_until(s(10));
        assert_eq!(
            net.events_of(v),
            [(s(3), ViewerEvent::Joined(live(channel("pi", 0))))]
        );
    }

    #[test]
    fn with_trust_an_unsigned_relay_is_not_followed_and_the_error_says_why() {
        let mut net = Net::new(&["pi"]);
        let v = net.watch_trusting("pi", &[&teacher()]);
        net.run_until(s(30));
        assert_eq!(
            net.error_of(v),
            "no relay signed by a trusted key on 239.255.1.1:5010 within 10 s: 10 announcements \
             were unsigned, signed by another key or too old (is `edm-cast video --key` using \
             the key you trust? are both clocks right?)"
        );
        assert_eq!(net.requests, 0);
    }
}
