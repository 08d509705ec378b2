//! The relay's side of the channels (VIDEO.md sections 5 and 6): it announces its channels on the
//! group, answers each viewer's REQUEST (repeated as its lease renewal) with a REPLY, starts
//! relaying a channel on its first lease, and stops it a grace period after the last one lapsed
//! or left (LEAVE). With a key it signs ANNOUNCE and REPLY. Anyone on the LAN can send REQUESTs,
//! so the lease table is bounded per channel and per address, and REQUESTs pass a token bucket
//! per address (VIDEO.md, "Bounds"). Viewers report their FEC figures in their REQUESTs: the
//! table takes what fits what the channel carried, sums them per channel, and from each viewer's
//! recent share of packets missed sizes the channel's repair (`design_loss`). The viewer's side
//! is `super::viewer`.

use crate::auth::{Seal, Signer};
use crate::counters::Counters;
use crate::file::sender::Destination;
use crate::limit::TokenBucket;
use crate::video::wire::{AudioInfo, ChannelInfo, Control, FecReport, Refusal};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long a lease lasts unless renewed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(6);
/// How long a channel keeps relaying after its last lease ended.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// How often the relay announces its channels: a viewer finds the relay within this long.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// Source addresses the relay keeps a token bucket for. An address holding a lease is always
/// kept; one whose bucket has refilled and holds none is forgotten within `PRUNE_EVERY`.
pub const MAX_ADDRESSES: usize = 4096;
/// How often addresses that can be forgotten are.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// How the relay runs its channels, and how much it takes from the network.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// How long a granted lease lasts (REPLY's `lease_ms`).
    pub lease: Duration,
    /// How long a channel keeps relaying after its last lease ended.
    pub grace: Duration,
    /// Signs ANNOUNCE and REPLY, if given: viewers that trust its key follow this relay only.
    pub signer: Option<Signer>,
    /// Leases held on one channel at once: a classroom is tens of viewers.
    pub max_viewers: usize,
    /// Leases one source address holds, all channels together (several `watch` on one PC).
    pub max_per_address: usize,
    /// REQUESTs an address may send per second (a viewer sends 2 until granted, then one every
    /// 2 s) ...
    pub request_rate: f64,
    /// ... and at once.
    pub request_burst: f64,
    /// How each channel's repair follows its viewers' reports (`design_loss`).
    pub repair: RepairSizing,
}

/// How the relay sizes a channel's repair from what its viewers report (VIDEO.md section 4,
/// "Repair that follows the viewers"): for the worst loss among the channel's leases, each
/// viewer's loss taken as an upper estimate over its last `LOSS_INTERVALS` reports, and a viewer
/// that has not reported yet as `unreported`; never below `floor` nor above `cap`. Losses are
/// fractions (0.05 is 5 %).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepairSizing {
    /// Loss assumed for a viewer until it reported one interval, and while no viewer holds a
    /// lease (`video --fec-loss`).
    pub unreported: f64,
    /// The least loss repair is sized for, whatever viewers report: loss that starts between two
    /// reports (2 s) is still repaired (`MIN_DESIGN_LOSS`, or `--fec-loss` if that is lower).
    pub floor: f64,
    /// The most: a viewer that reports more, or claims it, gets no more repair
    /// (`video --fec-loss-max`).
    pub cap: f64,
}

/// `RepairSizing::floor` by default: at the usual 12-packet window, 1 % costs the 3 repair
/// packets that 1.5 % would.
pub const MIN_DESIGN_LOSS: f64 = 0.01;
/// `RepairSizing::cap` by default. At 15 % a 12-packet window gets 11 repair packets: a hostile
/// viewer claiming all is lost can at most about double the channel's bytes.
pub const MAX_DESIGN_LOSS: f64 = 0.15;
/// Packets a viewer's reports must cover before its estimate replaces `RepairSizing::unreported`
/// (under 1 s at ~1.2 Mbit/s: usually its first renewal). The first interval of a lease may hold
/// only the stream's first packets, or the moments before the viewer's join took effect: 2
/// missed of 60 would size the channel for 6 %.
pub const MIN_ESTIMATE_PACKETS: u64 = 100;
/// Report intervals a viewer's loss is estimated over: with renewals every 2 s, the last ~16 s,
/// about 2,000 packets at 1.2 Mbit/s, so that one standard deviation of margin is a small one.
/// Loss a viewer no longer sees leaves its estimate within as many reports.
pub const LOSS_INTERVALS: usize = 8;

impl Default for RepairSizing {
    fn default() -> Self {
        RepairSizing {
            unreported: 0.05,
            floor: MIN_DESIGN_LOSS,
            cap: MAX_DESIGN_LOSS,
        }
    }
}

impl RepairSizing {
    /// Sized for `loss` whatever is reported (`video --fec-fixed`).
    pub fn fixed(loss: f64) -> Self {
        RepairSizing {
            unreported: loss,
            floor: loss,
            cap: loss,
        }
    }

    /// Follows the viewers (`--fec-loss PERCENT --fec-loss-max PERCENT`): `unreported` until they
    /// report; the floor `MIN_DESIGN_LOSS`, or `unreported` if lower; the cap at least
    /// `unreported`.
    pub fn adaptive(unreported: f64, cap: f64) -> Self {
        RepairSizing {
            unreported,
            floor: MIN_DESIGN_LOSS.min(unreported),
            cap: cap.max(unreported),
        }
    }
}

/// One viewer's recent loss, from its reports: per interval between two reports taken, the RTP
/// packets the channel sent and how many of them the viewer missed (repaired or lost), the
/// newest last.
#[derive(Debug, Clone, Copy, Default)]
struct LossHistory {
    intervals: [(u64, u64); LOSS_INTERVALS],
    len: usize,
}

impl LossHistory {
    fn push(&mut self, sent: u64, missed: u64) {
        if self.len == LOSS_INTERVALS {
            self.intervals.rotate_left(1);
            self.len -= 1;
        }
        self.intervals[self.len] = (sent, missed);
        self.len += 1;
    }

    /// An upper estimate of the loss, `None` until the intervals cover `MIN_ESTIMATE_PACKETS`:
    /// `upper_loss` over all of them, unless the newest alone shows more with one standard
    /// deviation to spare ((x − √x)/n above it): then the newest's share. The long sums keep
    /// the margin small while loss is steady; the newest interval covers loss that just rose at
    /// the next report, not over 16 s.
    fn upper(&self) -> Option<f64> {
        let (sent, missed) = self.intervals[..self.len]
            .iter()
            .fold((0, 0), |(s, m), &(a, b)| (s + a, m + b));
        let long = upper_loss(sent, missed).filter(|_| sent >= MIN_ESTIMATE_PACKETS)?;
        let (n, x) = self.intervals[self.len - 1];
        let x = x.min(n) as f64;
        let risen = (x - x.sqrt()) / n as f64 > long;
        Some(if risen { x / n as f64 } else { long })
    }
}

/// An upper estimate of a loss rate from `missed` of `sent` packets: (x + √x) / n, a Poisson
/// count's one standard deviation above what was seen. Repair sized for the bare share falls
/// short in about half the histories; with this margin the estimate of a viewer at 5 % over
/// 2,000 packets is above 5 % in ~80 % of them (and below by a few tenths of a percent, which
/// costs little: 5 repair packets instead of 6 at K = 12 fail a window at 5 % with probability
/// 1.2e-4 instead of 1.5e-5), and at 1 % it is ~1.2 %, which the 12-packet window's 3 repair
/// packets cover up to ~1.7 %. `None` if nothing was sent.
pub fn upper_loss(sent: u64, missed: u64) -> Option<f64> {
    if sent == 0 {
        return None;
    }
    let x = missed.min(sent) as f64;
    Some(((x + x.sqrt()) / sent as f64).min(1.0))
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            lease: DEFAULT_LEASE,
            grace: DEFAULT_GRACE,
            signer: None,
            max_viewers: 512,
            max_per_address: 8,
            request_rate: 10.0,
            request_burst: 20.0,
            repair: RepairSizing::default(),
        }
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

/// One viewer's lease.
#[derive(Debug, Clone, Copy)]
struct Lease {
    expires: Instant,
    /// Where its REQUESTs come from: renewals and LEAVE are taken from there only.
    from: IpAddr,
    /// The address (and port) of its latest REQUEST: where an unasked REPLY goes.
    reply_to: SocketAddr,
    /// The channel's `sent` when the lease was granted: the viewer can have repaired or lost
    /// only packets sent since.
    sent_at_grant: u64,
    /// The viewer's first report in this lease (its figures from before: another relay, an
    /// earlier lease) and its latest report taken; what the channel's sums hold of this viewer
    /// is their difference.
    first: Option<FecReport>,
    last: FecReport,
    /// The channel's `sent` when the last report was taken (or the first came).
    sent_at_report: u64,
    /// Its loss over its last reports, for `Leases::design_loss`.
    loss: LossHistory,
}

/// One offered channel and who holds a lease on it.
#[derive(Debug)]
struct Channel {
    /// As announced; `live` is this table's to set.
    info: ChannelInfo,
    /// Viewer id → lease.
    viewers: HashMap<u64, Lease>,
    /// When the last lease ended, while the channel is live without viewers.
    idle_since: Option<Instant>,
    /// Relayed whether or not anyone holds a lease (`always_on`).
    always_on: bool,
    /// RTP packets the relay sent on the channel so far, as the shell last said (`set_sent`).
    sent: u64,
    /// What the viewers' reports taken add up to, leases that ended included.
    fec: FecReport,
}

/// One source address: its REQUEST bucket and how many leases it holds.
#[derive(Debug)]
struct Address {
    bucket: TokenBucket,
    leases: usize,
}

/// Why a REQUEST is not granted.
enum Denied {
    /// No such channel: the REPLY says so.
    Unknown,
    /// Over a bound of the table (or the viewer id is held from another address): no REPLY.
    Refused,
}

/// The relay's control state machine: its channels, their leases and the datagrams that go with
/// them. One per relay; several channels run at once, each with its own leases.
///
/// - Getters: `channels` (as announced, `live` included), `is_live`, `viewers`, `lease`, `fec`
///   (the viewers' FEC figures summed per channel), `design_loss` (the loss a channel's repair is
///   sized for, from its viewers' reports), `dropped` (datagrams that were not a valid
///   REQUEST or LEAVE, REQUESTs refused by the bounds: `refused`, `rate_limited`,
///   `wrong_source`, and FEC reports not taken: `out_of_range`).
/// - Inputs: `handle_datagram(now, from, bytes)` for every datagram on the relay's control
///   socket; `handle_timeout(now)` once `poll_timeout` has passed; `set_sent(channel, packets)`
///   with the RTP packets sent on a channel so far (the bound of the viewers' reports).
/// - Commands: `always_on(channel)` relays a channel from now on without leases (for players
///   that found it by SAP and know no REQUEST); `set_audio(channel, audio)` says what granted
///   REPLYs tell of its audio track; otherwise the viewers' datagrams and the clock
///   drive it all.
/// - Outputs: `poll_transmit(now, buf)` gives each REPLY (to the REQUEST's source) and, every
///   `ANNOUNCE_EVERY`, an ANNOUNCE to the group, signed when the config has a signer;
///   `poll_timeout()` the next announcement, lease expiry or end of a grace period;
///   `poll_event()` a `LeaseEvent` to start or stop a channel.
#[derive(Debug)]
pub struct Leases {
    config: LeaseConfig,
    /// In the order they are announced (and numbered: channel i is on the group address + 1 + i).
    channels: Vec<Channel>,
    /// Every address a REQUEST came from lately, or that holds a lease.
    addresses: HashMap<IpAddr, Address>,
    next_prune: Instant,
    next_announce: Instant,
    replies: VecDeque<(SocketAddr, Control)>,
    events: VecDeque<LeaseEvent>,
    dropped: Counters,
}

impl Leases {
    /// A relay offering `channels` (all idle); its first ANNOUNCE is due at `now`.
    pub fn new(
        channels: impl IntoIterator<Item = ChannelInfo>,
        config: LeaseConfig,
        now: Instant,
    ) -> Self {
        Leases {
            config,
            channels: channels
                .into_iter()
                .map(|info| Channel {
                    info: ChannelInfo {
                        live: false,
                        ..info
                    },
                    viewers: HashMap::new(),
                    idle_since: None,
                    always_on: false,
                    sent: 0,
                    fec: FecReport::default(),
                })
                .collect(),
            addresses: HashMap::new(),
            next_prune: now + PRUNE_EVERY,
            next_announce: now,
            replies: VecDeque::new(),
            events: VecDeque::new(),
            dropped: Counters::default(),
        }
    }

    /// How long a granted lease lasts (REPLY's `lease_ms`).
    pub fn lease(&self) -> Duration {
        self.config.lease
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

    /// The FEC figures `channel`'s viewers reported, summed: what each viewer's counters grew by
    /// while it held a lease, leases that ended included (so the sums never fall).
    pub fn fec(&self, channel: &str) -> FecReport {
        self.find(channel)
            .map_or_else(FecReport::default, |c| c.fec)
    }

    /// The loss `channel`'s repair should be sized for now (a fraction, for
    /// `FecEncoder::set_design_loss`): the worst of its viewers' upper loss estimates over their
    /// last `LOSS_INTERVALS` reports, a viewer that has not reported an interval yet (or sends no
    /// figures) counting as `RepairSizing::unreported`, as does a channel without leases; kept
    /// within the config's floor and cap.
    pub fn design_loss(&self, channel: &str) -> f64 {
        let sizing = self.config.repair;
        let worst = self.find(channel).and_then(|c| {
            c.viewers
                .values()
                .map(|l| l.loss.upper().unwrap_or(sizing.unreported))
                .reduce(f64::max)
        });
        worst
            .unwrap_or(sizing.unreported)
            .max(sizing.floor)
            .min(sizing.cap)
    }

    /// Tells the table how many RTP packets the relay has sent on `channel` so far (a count that
    /// only grows): a viewer's report may grow by no more than the packets sent since its lease
    /// was granted.
    pub fn set_sent(&mut self, channel: &str, packets: u64) {
        if let Some(c) = self.channels.iter_mut().find(|c| c.info.name == channel) {
            c.sent = c.sent.max(packets);
        }
    }

    /// Sets what granted REPLYs say of `channel`'s audio track (the shell learns an RTSP
    /// source's only once connected; a pushed source's is configured). If that changes it, each
    /// viewer holding a lease is sent a REPLY at once, unasked, so that it need not wait for its
    /// next renewal to hear of it.
    pub fn set_audio(&mut self, channel: &str, audio: Option<AudioInfo>) {
        let lease_ms = self.config.lease.as_millis() as u32;
        let Some(c) = self.channels.iter_mut().find(|c| c.info.name == channel) else {
            return;
        };
        if c.info.audio == audio {
            return;
        }
        c.info.audio = audio;
        for (viewer, lease) in &c.viewers {
            let reply = Control::Reply {
                viewer: *viewer,
                lease_ms,
                result: Ok(c.info.clone()),
            };
            self.replies.push_back((lease.reply_to, reply));
        }
    }

    /// Datagrams dropped: not video control at all, malformed, or a type the relay does not take
    /// (`malformed`, `foreign`, `version`, `unexpected`); REQUESTs over an address's rate
    /// (`rate_limited`) or over the table's bounds (`refused`); renewals and LEAVEs of a lease
    /// from another address than its REQUESTs' (`wrong_source`); FEC reports in a REQUEST that
    /// went backwards or grew past what the channel sent (`out_of_range`; the lease is renewed,
    /// the report not taken).
    pub fn dropped(&self) -> &Counters {
        &self.dropped
    }

    /// Takes one datagram from the control socket: a REQUEST is granted, or refused for an
    /// unknown channel (its REPLY waits in `poll_transmit`), or past the bounds counted and
    /// dropped without a REPLY; a LEAVE ends a lease; anything else is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match Control::parse(bytes) {
            Ok(Control::Request {
                viewer,
                channel,
                fec,
            }) => {
                // The bucket first: what follows costs a table update and a signature.
                if !self.take_token(now, from.ip()) {
                    return;
                }
                let result = match self.grant(now, from, viewer, &channel) {
                    Ok(()) => {
                        if let Some(report) = fec {
                            self.take_report(viewer, &channel, report);
                        }
                        Ok(self.find(&channel).expect("granted").info.clone())
                    }
                    Err(Denied::Unknown) => Err(Refusal::UnknownChannel),
                    Err(Denied::Refused) => return,
                };
                let reply = Control::Reply {
                    viewer,
                    lease_ms: self.config.lease.as_millis() as u32,
                    result,
                };
                self.replies.push_back((from, reply));
            }
            Ok(Control::Leave { viewer, channel }) => {
                self.end_lease(now, from.ip(), viewer, &channel)
            }
            Ok(Control::Announce { .. } | Control::Reply { .. }) => self.dropped.unexpected += 1,
            Err(e) => self.dropped.parse_error(e),
        }
    }

    /// Takes a token from `ip`'s bucket (made on its first REQUEST, if the table has room);
    /// counts the REQUEST as dropped if there is none.
    fn take_token(&mut self, now: Instant, ip: IpAddr) -> bool {
        let full = self.addresses.len() >= MAX_ADDRESSES;
        let config = &self.config;
        let address = match self.addresses.entry(ip) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if full => {
                self.dropped.refused += 1;
                return false;
            }
            Entry::Vacant(e) => e.insert(Address {
                bucket: TokenBucket::new(now, config.request_rate, config.request_burst),
                leases: 0,
            }),
        };
        let ok = address.bucket.take(now);
        if !ok {
            self.dropped.rate_limited += 1;
        }
        ok
    }

    /// Grants or renews `viewer`'s lease on `channel`, within the table's bounds.
    fn grant(
        &mut self,
        now: Instant,
        reply_to: SocketAddr,
        viewer: u64,
        channel: &str,
    ) -> Result<(), Denied> {
        let from = reply_to.ip();
        let (lease, max_viewers) = (self.config.lease, self.config.max_viewers);
        let max_per_address = self.config.max_per_address;
        let Some(i) = self.channels.iter().position(|c| c.info.name == channel) else {
            return Err(Denied::Unknown);
        };
        let c = &mut self.channels[i];
        match c.viewers.get_mut(&viewer) {
            Some(l) if l.from != from => {
                self.dropped.wrong_source += 1;
                return Err(Denied::Refused);
            }
            Some(l) => (l.expires, l.reply_to) = (now + lease, reply_to),
            None => {
                let held = self.addresses.get(&from).map_or(0, |a| a.leases);
                if c.viewers.len() >= max_viewers || held >= max_per_address {
                    self.dropped.refused += 1;
                    return Err(Denied::Refused);
                }
                c.viewers.insert(
                    viewer,
                    Lease {
                        expires: now + lease,
                        from,
                        reply_to,
                        sent_at_grant: c.sent,
                        first: None,
                        last: FecReport::default(),
                        sent_at_report: c.sent,
                        loss: LossHistory::default(),
                    },
                );
                if let Some(a) = self.addresses.get_mut(&from) {
                    a.leases += 1;
                }
            }
        }
        c.idle_since = None;
        if !c.info.live {
            c.info.live = true;
            self.events.push_back(LeaseEvent::Start(channel.to_owned()));
        }
        Ok(())
    }

    /// Takes `viewer`'s FEC report on `channel` (its lease just granted or renewed): the first of
    /// a lease is where its counters start; a later one is taken if neither counter went
    /// backwards and together they grew by no more than the packets sent since the grant. A
    /// report not taken is counted (`out_of_range`) and the last one taken stays.
    fn take_report(&mut self, viewer: u64, channel: &str, report: FecReport) {
        let Some(c) = self.channels.iter_mut().find(|c| c.info.name == channel) else {
            return;
        };
        let Some(l) = c.viewers.get_mut(&viewer) else {
            return;
        };
        let Some(first) = l.first else {
            l.first = Some(report);
            l.last = report;
            l.sent_at_report = c.sent;
            return;
        };
        let carried = c.sent.saturating_sub(l.sent_at_grant);
        // `last` started at `first` and only grew: a report not behind it is not behind `first`.
        let fits = report.repaired >= l.last.repaired
            && report.lost >= l.last.lost
            && (report.repaired - first.repaired).saturating_add(report.lost - first.lost)
                <= carried;
        if !fits {
            self.dropped.out_of_range += 1;
            return;
        }
        // Each lease adds at most what was sent while it lasted; saturating all the same.
        c.fec.repaired = c
            .fec
            .repaired
            .saturating_add(report.repaired - l.last.repaired);
        c.fec.lost = c.fec.lost.saturating_add(report.lost - l.last.lost);
        // Repaired or lost, the packet was missing before FEC: its share is the viewer's loss.
        let missed = (report.repaired - l.last.repaired) + (report.lost - l.last.lost);
        let sent = c.sent - l.sent_at_report;
        if sent > 0 {
            l.loss.push(sent, missed);
            l.sent_at_report = c.sent;
        }
        l.last = report;
    }

    fn end_lease(&mut self, now: Instant, from: IpAddr, viewer: u64, channel: &str) {
        let Some(c) = self.channels.iter_mut().find(|c| c.info.name == channel) else {
            return;
        };
        match c.viewers.get(&viewer) {
            Some(l) if l.from != from => self.dropped.wrong_source += 1,
            Some(_) => {
                c.viewers.remove(&viewer);
                if c.viewers.is_empty() && !c.always_on {
                    c.idle_since = Some(now);
                }
                release(&mut self.addresses, from);
            }
            None => {}
        }
    }

    /// Ends the leases that expired, and stops the channels whose grace period is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        for c in &mut self.channels {
            let before = c.viewers.len();
            let mut last_end = None;
            let addresses = &mut self.addresses;
            c.viewers.retain(|_, l| {
                let keep = l.expires > now;
                if !keep {
                    last_end = last_end.max(Some(l.expires));
                    release(addresses, l.from);
                }
                keep
            });
            if before > 0 && c.viewers.is_empty() && !c.always_on {
                c.idle_since = last_end;
            }
            if c.info.live && c.idle_since.is_some_and(|t| now >= t + self.config.grace) {
                c.info.live = false;
                c.idle_since = None;
                self.events.push_back(LeaseEvent::Stop(c.info.name.clone()));
            }
        }
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_EVERY;
            self.addresses
                .retain(|_, a| a.leases > 0 || !a.bucket.is_full(now));
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
                c.viewers.values().map(|l| l.expires).chain(
                    c.idle_since
                        .filter(|_| c.info.live)
                        .map(|t| t + self.config.grace),
                )
            })
            .min()
    }

    /// Writes the next datagram into `buf` and says where it goes: the REPLYs first (a viewer
    /// waits for them), then the ANNOUNCE when one is due. Both are signed if the config has a
    /// signer, at `now` on its clock.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Destination> {
        buf.clear();
        let seal = match &self.config.signer {
            Some(s) => Seal::Signed(&s.key, s.clock.unix_ms(now)),
            None => Seal::Unsigned,
        };
        if let Some((to, reply)) = self.replies.pop_front() {
            reply.write_sealed(seal, buf);
            return Some(Destination::Unicast(to));
        }
        if now >= self.next_announce {
            self.next_announce = now + ANNOUNCE_EVERY;
            let channels = self.channels().cloned().collect();
            Control::Announce { channels }.write_sealed(seal, buf);
            return Some(Destination::Group);
        }
        None
    }

    /// Relays `channel` from now on, leases or not: starts it if idle, and it never stops. False
    /// for an unknown channel.
    pub fn always_on(&mut self, channel: &str) -> bool {
        let Some(c) = self.channels.iter_mut().find(|c| c.info.name == channel) else {
            return false;
        };
        c.always_on = true;
        c.idle_since = None;
        if !c.info.live {
            c.info.live = true;
            self.events.push_back(LeaseEvent::Start(channel.to_owned()));
        }
        true
    }

    /// The next channel to start or stop.
    pub fn poll_event(&mut self) -> Option<LeaseEvent> {
        self.events.pop_front()
    }

    fn find(&self, channel: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.info.name == channel)
    }
}

/// One lease of `ip`'s ended.
fn release(addresses: &mut HashMap<IpAddr, Address>, ip: IpAddr) {
    if let Some(a) = addresses.get_mut(&ip) {
        a.leases = a.leases.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Where the viewers of the first tests are: all on one PC.
    const PC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    /// The table's REQUEST and LEAVE, from `PC`.
    trait FromOnePc {
        fn request(&mut self, now: Instant, viewer: u64, channel: &str) -> bool;
        fn leave(&mut self, now: Instant, viewer: u64, channel: &str);
    }

    impl FromOnePc for Leases {
        fn request(&mut self, now: Instant, viewer: u64, channel: &str) -> bool {
            self.take_token(now, PC)
                && self
                    .grant(now, SocketAddr::new(PC, 4000), viewer, channel)
                    .is_ok()
        }

        fn leave(&mut self, now: Instant, viewer: u64, channel: &str) {
            self.end_lease(now, PC, viewer, channel)
        }
    }

    fn config(lease: Duration, grace: Duration) -> LeaseConfig {
        LeaseConfig {
            lease,
            grace,
            ..LeaseConfig::default()
        }
    }

    #[test]
    fn an_always_on_channel_starts_without_a_lease_and_never_stops() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Leases::new([channel("pi"), channel("cam")], config(s(6), s(10)), t0);
        assert!(!l.always_on("nope"));
        assert!(l.always_on("pi"));
        assert_eq!(l.poll_event(), Some(LeaseEvent::Start("pi".into())));
        assert!(l.is_live("pi") && !l.is_live("cam"));
        assert!(l.always_on("pi"));
        assert_eq!(l.poll_event(), None, "already live");
        // A viewer comes and goes; its lease lapses: the channel stays on past any grace.
        assert!(l.request(t0 + s(1), 1, "pi"));
        l.leave(t0 + s(2), 1, "pi");
        assert!(l.request(t0 + s(3), 2, "pi"));
        for t in [8, 20, 100] {
            l.handle_timeout(t0 + s(t));
        }
        assert_eq!(l.viewers("pi"), 0);
        assert!(l.is_live("pi"));
        assert_eq!(l.poll_event(), None);
        assert_eq!(l.lease_timeout(), None);
    }

    fn channel(name: &str) -> ChannelInfo {
        ChannelInfo {
            name: name.into(),
            live: false,
            group: Ipv4Addr::new(239, 255, 1, 2).into(),
            media_port: 5004,
            repair_port: 5006,
            audio: None,
        }
    }

    #[test]
    fn leases_start_once_share_and_stop_after_grace() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Leases::new([channel("pi"), channel("cam")], config(s(6), s(10)), t0);
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
        let mut l = Leases::new([channel("pi")], LeaseConfig::default(), t0);
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
            fec: None,
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

    #[test]
    fn announce_and_reply_are_signed_with_the_relays_key() {
        use crate::auth::{Auth, SecretKey, Trust, WallClock};
        let t0 = Instant::now();
        let key = SecretKey::from_seed([4; 32]);
        let clock = WallClock::new(t0, 1_800_000_000_000);
        let signer = Signer {
            key: key.clone(),
            clock,
        };
        let config = LeaseConfig {
            signer: Some(signer),
            ..LeaseConfig::default()
        };
        let mut l = Leases::new([channel("pi")], config, t0);
        let trust = Trust::new([key.public()], clock, Duration::from_secs(300));
        let viewer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let request = Control::Request {
            viewer: 9,
            channel: "pi".into(),
            fec: None,
        };
        let later = t0 + Duration::from_millis(1500);
        l.handle_datagram(later, viewer, &request.to_vec());
        let mut buf = Vec::new();
        for (to, kind) in [
            (Destination::Unicast(viewer), "REPLY"),
            (Destination::Group, "ANNOUNCE"),
        ] {
            assert_eq!(l.poll_transmit(later, &mut buf), Some(to), "{kind}");
            let (_, auth) = Control::parse_with_auth(&buf).unwrap();
            assert_eq!(trust.check(later, &buf, &auth, None), Ok(key.public().id()));
            // Signed at `later` on the relay's clock.
            assert!(matches!(
                auth,
                Auth::Signed {
                    time_ms: 1_800_000_001_500,
                    ..
                }
            ));
        }
    }

    /// Hostile REQUESTs with random viewer ids, from one address and from thousands (spoofed):
    /// the table stays within its bounds, what is refused is counted, and a viewer that held a
    /// lease before the flood keeps it.
    #[test]
    fn the_lease_table_is_bounded_per_channel_per_address_and_by_rate() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // The bounds VIDEO.md gives: 512 leases a channel, 8 an address, 10 REQUESTs a second
        // (20 at once) from an address, 4096 addresses.
        let (max_viewers, max_per_address, max_addresses) = (512, 8, 4096);
        let mut l = Leases::new([channel("pi")], LeaseConfig::default(), t0);
        let honest: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let request = |viewer| {
            Control::Request {
                viewer,
                channel: "pi".into(),
                fec: None,
            }
            .to_vec()
        };
        l.handle_datagram(t0, honest, &request(7));
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut id = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut buf = Vec::new();
        let mut replies = 0u64;
        // 30 s: every 10 ms, 20 REQUESTs from one PC and 60 from addresses never seen before
        // (6000 a second: more than the address table holds); the honest viewer renews every 2 s.
        let (mut one_pc, mut spoofed) = (0u64, 0u64);
        for step in 0..3000u32 {
            let now = t0 + ms(10 * step as u64);
            for i in 0..60 {
                if i % 3 == 0 {
                    l.handle_datagram(now, "10.0.0.66:4000".parse().unwrap(), &request(id()));
                    one_pc += 1;
                }
                spoofed += 1;
                let from = SocketAddr::from((Ipv4Addr::from(0x0A01_0000 + spoofed as u32), 4000));
                l.handle_datagram(now, from, &request(id()));
            }
            if step % 200 == 0 {
                l.handle_datagram(now, honest, &request(7));
            }
            l.handle_timeout(now);
            while let Some(to) = l.poll_transmit(now, &mut buf) {
                replies += (to != Destination::Group) as u64;
            }
            assert!(l.viewers("pi") <= max_viewers, "{}", l.viewers("pi"));
            assert!(l.addresses.len() <= max_addresses, "{}", l.addresses.len());
            let from_66 = l.find("pi").unwrap().viewers.values();
            let from_66 = from_66.filter(|v| v.from == IpAddr::from([10, 0, 0, 66]));
            assert!(from_66.count() <= max_per_address);
        }
        let pi = l.find("pi").unwrap();
        assert!(
            pi.viewers.contains_key(&7),
            "the honest viewer kept its lease"
        );
        assert_eq!(pi.viewers.len(), max_viewers, "the spoofed fill the rest");
        let d = l.dropped();
        // One address: its burst, then 10 a second; the rest rate-limited. Spoofed: refused once
        // the channel is full (or the address table is); a forged lease lapses after 6 s, and
        // another forged one takes its place.
        assert!(d.rate_limited >= one_pc - 20 - 10 * 30, "{d:?}");
        assert!(
            d.refused >= spoofed - max_viewers as u64 * (30 / 6 + 1),
            "{d:?}"
        );
        // A REPLY for each REQUEST granted (renewals included), none for those refused.
        let honest = 1 + 3000 / 200;
        assert_eq!(
            replies,
            one_pc + spoofed + honest - d.rate_limited - d.refused
        );
        // Once the flood stops, the forged leases lapse and the spoofed addresses are forgotten.
        let end = t0 + Duration::from_secs(40);
        l.handle_timeout(end);
        assert_eq!(l.viewers("pi"), 0);
        assert!(l.addresses.is_empty(), "{}", l.addresses.len());
    }

    /// A lease is renewed and ended only from the address that took it.
    #[test]
    fn a_lease_is_renewed_and_left_only_from_its_address() {
        let t0 = Instant::now();
        let mut l = Leases::new([channel("pi")], LeaseConfig::default(), t0);
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.2:4000".parse().unwrap(),
            "10.0.0.3:4000".parse().unwrap(),
        );
        let msg = |leave| {
            let (viewer, channel) = (7, "pi".to_owned());
            match leave {
                true => Control::Leave { viewer, channel },
                false => Control::Request {
                    viewer,
                    channel,
                    fec: None,
                },
            }
            .to_vec()
        };
        l.handle_datagram(t0, a, &msg(false));
        l.handle_datagram(t0, b, &msg(false));
        l.handle_datagram(t0, b, &msg(true));
        assert_eq!(l.viewers("pi"), 1);
        assert_eq!(l.dropped().wrong_source, 2);
        let mut buf = Vec::new();
        assert_eq!(
            l.poll_transmit(t0, &mut buf),
            Some(Destination::Unicast(a)),
            "one REPLY, to the lease's address"
        );
        assert_eq!(l.poll_transmit(t0, &mut buf), Some(Destination::Group));
        l.handle_datagram(t0, a, &msg(true));
        assert_eq!(l.viewers("pi"), 0);
    }
    /// Viewers' FEC reports: the first of a lease is its start, later ones add what they grew
    /// by; a report that goes backwards, or grows past the packets sent since the grant, is not
    /// taken and is counted; an older viewer's REQUEST (no figures) renews and reports nothing;
    /// the sums keep what viewers whose leases ended reported.
    #[test]
    fn fec_reports_are_bounded_and_summed_per_channel() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Leases::new([channel("pi"), channel("cam")], LeaseConfig::default(), t0);
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.2:4000".parse().unwrap(),
            "10.0.0.3:4000".parse().unwrap(),
        );
        let request = |viewer, repaired, lost| {
            Control::Request {
                viewer,
                channel: "pi".into(),
                fec: Some(FecReport { repaired, lost }),
            }
            .to_vec()
        };
        let sums = |l: &Leases| {
            let f = l.fec("pi");
            (f.repaired, f.lost)
        };
        l.set_sent("pi", 1000);
        // Viewer 1 joins with figures from before (another relay): its start, not counted.
        l.handle_datagram(t0, a, &request(1, 50, 5));
        l.handle_datagram(t0, b, &request(2, 0, 0));
        assert_eq!(sums(&l), (0, 0));
        l.set_sent("pi", 1100);
        l.handle_datagram(t0 + s(2), a, &request(1, 80, 6));
        l.handle_datagram(t0 + s(2), b, &request(2, 10, 0));
        assert_eq!(sums(&l), (30 + 10, 1));
        assert_eq!(l.dropped().out_of_range, 0);
        // Backwards (either counter), then past the 100 packets sent since the grant: refused.
        l.handle_datagram(t0 + s(3), a, &request(1, 79, 7));
        l.handle_datagram(t0 + s(3), a, &request(1, 90, 5));
        l.handle_datagram(t0 + s(3), b, &request(2, 60, 41));
        assert_eq!(sums(&l), (40, 1));
        assert_eq!(l.dropped().out_of_range, 3);
        // Exactly what was sent is taken; the lease was renewed by every one of them.
        l.handle_datagram(t0 + s(4), b, &request(2, 60, 40));
        assert_eq!(sums(&l), (90, 41));
        assert_eq!(l.dropped().out_of_range, 3);
        assert_eq!(l.viewers("pi"), 2);
        // An older viewer's REQUEST (no figures) renews and changes nothing.
        let old = Control::Request {
            viewer: 1,
            channel: "pi".into(),
            fec: None,
        };
        l.handle_datagram(t0 + s(5), a, &old.to_vec());
        assert_eq!(sums(&l), (90, 41));
        // Another channel's figures are its own.
        assert_eq!(l.fec("cam"), FecReport::default());
        // Viewer 2 leaves, viewer 1's lease lapses: the sums stay.
        l.handle_datagram(
            t0 + s(5),
            b,
            &Control::Leave {
                viewer: 2,
                channel: "pi".into(),
            }
            .to_vec(),
        );
        l.handle_timeout(t0 + s(12));
        assert_eq!(l.viewers("pi"), 0);
        assert_eq!(sums(&l), (90, 41));
        // Viewer 1 comes back: a new lease starts from its report; what was sent before the
        // grant is no room for it.
        l.handle_datagram(t0 + s(13), a, &request(1, 80, 6));
        l.handle_datagram(t0 + s(14), a, &request(1, 81, 6));
        assert_eq!(sums(&l), (90, 41));
        assert_eq!(l.dropped().out_of_range, 4);
        l.set_sent("pi", 1110);
        l.handle_datagram(t0 + s(15), a, &request(1, 85, 8));
        assert_eq!(sums(&l), (95, 43));
    }

    /// Repair follows the worst viewer's recent loss: a channel without reports, and a viewer
    /// that has not reported an interval, count as `unreported`; estimates are upper ones over
    /// the last 4 intervals, so past loss leaves them within 4 reports; a viewer claiming all is
    /// lost is held at the cap, and one that leaves no longer counts.
    #[test]
    fn repair_is_sized_for_the_worst_viewers_recent_loss_within_bounds() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Leases::new([channel("pi"), channel("cam")], LeaseConfig::default(), t0);
        let (a, b, c): (SocketAddr, SocketAddr, SocketAddr) = (
            "10.0.0.2:4000".parse().unwrap(),
            "10.0.0.3:4000".parse().unwrap(),
            "10.0.0.4:4000".parse().unwrap(),
        );
        let request = |viewer, repaired, lost| {
            Control::Request {
                viewer,
                channel: "pi".into(),
                fec: Some(FecReport { repaired, lost }),
            }
            .to_vec()
        };
        let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-9, "{got} != {want}");
        // Nobody watches: the unreported design (5 %), as for a viewer before its first interval.
        close(l.design_loss("pi"), 0.05);
        l.handle_datagram(t0, a, &request(1, 0, 0));
        close(l.design_loss("pi"), 0.05);
        // 1000 packets in, 10 missed (8 repaired, 2 lost): (10 + √10) / 1000.
        let mut sent = 1000;
        l.set_sent("pi", sent);
        l.handle_datagram(t0 + s(2), a, &request(1, 8, 2));
        let one = (10.0 + 10f64.sqrt()) / 1000.0;
        close(l.design_loss("pi"), one);
        assert!(one < 0.015, "3 repair packets for 12 still cover it");
        // A second viewer, no interval yet: the channel is sized for it as unreported; so it is
        // after an interval of fewer than 100 packets, whatever its share (5 of 99).
        l.handle_datagram(t0 + s(2), b, &request(2, 0, 0));
        close(l.design_loss("pi"), 0.05);
        sent += 99;
        l.set_sent("pi", sent);
        l.handle_datagram(t0 + s(3), b, &request(2, 5, 0));
        close(l.design_loss("pi"), 0.05);
        // It sees 10 %: 105 of these 1099, estimate (105 + √105) / 1099 = 10.5 %.
        sent += 1000;
        l.set_sent("pi", sent);
        l.handle_datagram(t0 + s(4), b, &request(2, 105, 0));
        l.handle_datagram(t0 + s(4), a, &request(1, 16, 4));
        close(l.design_loss("pi"), (105.0 + 105f64.sqrt()) / 1099.0);
        // Its loss stops: the estimate falls as the 10 % interval ages out of the last 8.
        let mut shown = vec![];
        for i in 0..8 {
            sent += 1000;
            l.set_sent("pi", sent);
            l.handle_datagram(t0 + s(6 + 2 * i), b, &request(2, 105, 0));
            l.handle_datagram(t0 + s(6 + 2 * i), a, &request(1, 16 + 10 * (i + 1), 4));
            shown.push(l.design_loss("pi"));
        }
        assert!(shown.windows(2).all(|w| w[1] < w[0]), "{shown:?}");
        // Viewer 1's last 8 intervals: 80 missed of 8000 (1 %) is now the worst.
        close(shown[7], (80.0 + 80f64.sqrt()) / 8000.0);
        // A hostile viewer claims it missed everything sent: held at the cap (15 %).
        l.handle_datagram(t0 + s(22), c, &request(3, 0, 0));
        sent += 1000;
        l.set_sent("pi", sent);
        l.handle_datagram(t0 + s(24), c, &request(3, 0, 1000));
        close(l.design_loss("pi"), MAX_DESIGN_LOSS);
        // ... and once it leaves, it no longer counts; nor does the other channel share any of it.
        l.handle_datagram(
            t0 + s(24),
            c,
            &Control::Leave {
                viewer: 3,
                channel: "pi".into(),
            }
            .to_vec(),
        );
        assert!(l.design_loss("pi") < 0.015);
        close(l.design_loss("cam"), 0.05);
        // No loss at all is still repaired for the floor (1 %).
        l.handle_timeout(t0 + s(40));
        l.handle_datagram(t0 + s(40), a, &request(1, 0, 0));
        sent += 1_000_000;
        l.set_sent("pi", sent);
        l.handle_datagram(t0 + s(42), a, &request(1, 0, 0));
        close(l.design_loss("pi"), MIN_DESIGN_LOSS);
        // Loss that rises shows at the next report: 100 of the next 1000 is (100 − 10) / 1000
        // above the 16 s estimate, so that interval's share (10 %) counts, not the long one.
        sent += 1000;
        l.set_sent("pi", sent);
        l.handle_datagram(t0 + s(44), a, &request(1, 60, 40));
        close(l.design_loss("pi"), 0.1);
    }

    #[test]
    fn repair_sizing_fixed_ignores_reports_and_adaptive_keeps_its_bounds_ordered() {
        let t0 = Instant::now();
        let config = LeaseConfig {
            repair: RepairSizing::fixed(0.05),
            ..LeaseConfig::default()
        };
        let mut l = Leases::new([channel("pi")], config, t0);
        let a: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let request = |lost| {
            Control::Request {
                viewer: 1,
                channel: "pi".into(),
                fec: Some(FecReport { repaired: 0, lost }),
            }
            .to_vec()
        };
        l.handle_datagram(t0, a, &request(0));
        l.set_sent("pi", 1000);
        l.handle_datagram(t0 + Duration::from_secs(2), a, &request(0));
        assert_eq!(l.design_loss("pi"), 0.05);
        // --fec-loss 0: the floor is 0 too; --fec-loss-max below --fec-loss is raised to it.
        assert_eq!(RepairSizing::adaptive(0.0, 0.15).floor, 0.0);
        assert_eq!(RepairSizing::adaptive(0.2, 0.15).cap, 0.2);
        assert_eq!(upper_loss(0, 0), None);
        assert_eq!(upper_loss(100, 500), Some(1.0));
    }
}
