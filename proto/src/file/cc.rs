//! The sender's congestion control (PROTOCOL.md 5.8): the rate the class is sent at, following the
//! class's limiting receiver, never above the ceiling (`--rate`) nor below `--min-rate`.
//!
//! Every receiver answers the sender's PACE (a timestamp and a count of DATA sent) with a STATUS
//! that echoes it, with how many DATA it had received when the PACE arrived. From two such
//! reports the sender knows, per receiver, the round-trip time, the loss over the interval and the
//! rate its path delivered (the largest of its last few reports). A classroom's loss is mostly not
//! congestion (a Wi-Fi bridge, a bad cable, a busy PC, a switch port closed for a few ms now and
//! then): a receiver's usual loss is its *baseline* (the mean over its last few seconds' reports),
//! and congestion is a queue (two round trips in a row 5 ms above the receiver's lowest: a
//! short queue, so that a TCP flow through it keeps its share), or loss above
//! the baseline by more than chance with a queue seen once or at most of the receivers at once (a
//! bottleneck they all are behind, whose buffer is too small to show a queue). Excess loss at one
//! receiver alone with no queue is its own port's or cable's, which FEC repairs and a lower rate
//! would not help: it only holds the rate to what its path took, if that was less than was sent.
//! On congestion the rate drops to 90% of what the congested receiver's path delivered,
//! as TFMCC's slow start ends at the receive rate (after slow start, by at most a quarter at
//! once); without it the rate doubles per interval from a safe start (slow start) until the first
//! congestion, then grows by a few percent per interval (probing, so a freed link is used again).
//! Slow start steps, and the sender sends PACE, four times per interval, and the first queue seen
//! (one round trip, HyStart's signal) holds the rate at what the path delivers: doubled at once
//! and seen an interval later, a rate that crossed the link had already overflowed its queue.
//! One reduction per round: reports made before a cut, and the queue's draining, do not cut again.
//!
//! A receiver congested below the floor — `--min-rate`, or half of what the best of the others
//! took (at most half the rate), whichever is more — or losing most of the stream, is not followed
//! (`is_slow`): it keeps collecting what reaches it, and the session does not wait for it once the
//! others are done. `min_rate` is the trust model: a receiver's reports are not authenticated, and
//! one PC lying about loss or round-trip time can slow the class at most to it.
//!
//! The contract (sans-IO, time passed in): getters `rate`, `is_slow`, `slow_start`, `loss`,
//! `pace_interval` (how often the sender sends PACE); inputs
//! `handle_report(now, receiver, report)`, `handle_timeout(now)` and `forget(receiver)`;
//! `poll_timeout` says when the next increase step is due.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often the rate may grow, and how often the sender sends PACE, after slow start.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// In slow start, both four times as often: the rate doubles per `INTERVAL` in four steps, each
/// answered within a round trip. Doubled at once and seen only 100 ms later, a rate that crossed
/// the link had already overflowed a 50 ms queue with half of what it sent.
pub const SLOW_START_INTERVAL: Duration = Duration::from_millis(25);

/// Intervals per receiver its baseline loss is the mean of: a few seconds, so that bursts (a
/// port closed for a few ms now and then) average out, and loss that creeps up with the rate (a
/// bottleneck with a tiny buffer) is not taken in before it is found.
const HISTORY: usize = 32;
/// Fewer DATA than this between two reports say too little about loss: the next report is compared
/// with the same earlier one.
const MIN_SAMPLE: u64 = 48;
/// Loss this far above the baseline is excess (5% random loss over 100 ms at 100 Mbit/s varies
/// by under 1%): congestion if a queue or most receivers show it too.
const LOSS_EXCESS: f64 = 0.03;
/// Loss above this in a receiver's first interval (no baseline yet) is excess.
const FIRST_LOSS: f64 = 0.2;
/// A round-trip time this far above a receiver's lowest is a queue building up: in slow start
/// (one holds the rate, two in a row end it), and with excess loss at any time.
const QUEUE_DELAY: Duration = Duration::from_millis(10);
/// After slow start, two in a row this far above it are. Lower than in slow start because the rate
/// settles where the queue it keeps is at this threshold, and a TCP flow through the same queue
/// that its window holds back (iperf3 in the lab: 20-85 KB) gets a window per round trip: beside
/// a 10 ms queue it kept about a quarter of a shared 100 Mbit/s port, beside 5 ms over a third
/// (PROTOCOL.md 5.8). Two reports in a row still tell a queue from a busy PC's hiccup.
const CA_QUEUE_DELAY: Duration = Duration::from_millis(5);
/// A round-trip time above this is not believed (a fake echo).
const MAX_RTT: Duration = Duration::from_secs(5);
/// On congestion: this share of what the congested path delivered.
const BACKOFF: f64 = 0.9;
/// The most one cut keeps of the rate.
const MAX_CUT: f64 = 0.75;
/// Growth per interval after slow start.
const PROBE: f64 = 1.03;
/// A receiver is followed down to this share of what the best other receiver took, no further.
const FLOOR_SHARE: f64 = 0.5;
/// Reports whose largest delivery rate is a receiver's bandwidth (BBR's max filter, shorter).
const BW_WINDOW: usize = 4;
/// A receiver whose usual loss is above this is not followed either: it loses most of the stream
/// whatever the rate (a 10 Mbit/s port in a 100 Mbit/s class), and its repair is sent anyway.
const SLOW_LOSS: f64 = 0.5;
/// A report older than this no longer counts for the floor or for growing.
const STALE: Duration = Duration::from_secs(2);

/// The controller's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CcConfig {
    /// Never above this, in bit/s (`--rate`).
    pub ceiling: f64,
    /// Never below this (bit/s), and a receiver slower than this is not followed (`--min-rate`).
    pub min_rate: f64,
    /// Where slow start begins, in bit/s (capped at the ceiling).
    pub initial: f64,
    /// Bits one DATA datagram costs on the wire (payload and headers).
    pub packet_bits: f64,
}

/// What one STATUS echoes of the sender's last PACE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The round-trip time: from the PACE's send to this STATUS's arrival, less the time the
    /// receiver held it.
    pub rtt: Duration,
    /// The PACE's timestamp, in microseconds of the sender's clock.
    pub pace_us: u64,
    /// DATA sent when that PACE went out ...
    pub sent: u64,
    /// ... and DATA this receiver had received when it arrived.
    pub received: u64,
}

#[derive(Debug, Clone)]
struct Peer {
    /// The report intervals are measured from: PACE time, its arrival (estimated), sent, received.
    base: Option<(u64, u64, u64, u64)>,
    min_rtt: Option<Duration>,
    /// Its previous round-trip time: a queue shows in two in a row, a busy PC's hiccup in one.
    last_rtt: Option<Duration>,
    losses: Vec<f64>,
    /// DATA sent, received and microseconds since its loss was last judged: loss is judged over
    /// at least an `INTERVAL` (slow start's reports, four times as many, would each see too few
    /// datagrams to tell chance from congestion).
    pending: (u64, u64, u64),
    /// What its path delivered, scaled up by its baseline loss (bit/s), and when measured.
    bw: Option<(f64, Instant)>,
    /// The last few of those: their largest is what the path can take (a late report only ever
    /// makes one look smaller).
    recent_bw: Vec<f64>,
    slow: bool,
    /// When last found too slow: what its path took and the least a followed path had to take
    /// then (the floor over `BACKOFF`), in bit/s, for the teacher's screen.
    slow_path: (f64, f64),
    /// Slow, and under half of what the best other receiver took (`is_outpaced`).
    outpaced: bool,
    /// When its last interval judged showed loss above its baseline (none if it did not), and
    /// whether that loss went into its baseline (`losses`' last): it comes out again if it turns
    /// out to have been shared (`shared_loss`), which is found only once most PCs reported it.
    excess_at: Option<(Instant, bool)>,
}

/// The congestion controller of one sending session.
#[derive(Debug, Clone)]
pub struct RateControl {
    cfg: CcConfig,
    rate: f64,
    slow_start: bool,
    /// No cut before this: reports made before the last cut say nothing of the new rate.
    hold: Option<Instant>,
    next_step: Instant,
    /// When the rate last stepped: slow start grows by the time since (a late step, no more than
    /// doubling).
    last_step: Instant,
    /// An uncongested report from a followed receiver since the last step, and none congested.
    clear: bool,
    congested: bool,
    peers: HashMap<u32, Peer>,
}

impl RateControl {
    /// A controller starting at `cfg.initial`.
    pub fn new(cfg: CcConfig, now: Instant) -> Self {
        let rate = cfg
            .initial
            .min(cfg.ceiling)
            .max(cfg.min_rate.min(cfg.ceiling));
        RateControl {
            cfg,
            rate,
            slow_start: true,
            hold: None,
            next_step: now + SLOW_START_INTERVAL,
            last_step: now,
            clear: false,
            congested: false,
            peers: HashMap::new(),
        }
    }

    /// The rate to send at now, in bit/s.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether it is still in slow start.
    pub fn slow_start(&self) -> bool {
        self.slow_start
    }

    /// How often the sender sends PACE now: `SLOW_START_INTERVAL` in slow start, else `INTERVAL`.
    pub fn pace_interval(&self) -> Duration {
        if self.slow_start {
            SLOW_START_INTERVAL
        } else {
            INTERVAL
        }
    }

    /// Whether `receiver` is too slow to be followed (below the floor at its last report).
    pub fn is_slow(&self, receiver: u32) -> bool {
        self.peers.get(&receiver).is_some_and(|p| p.slow)
    }

    /// Whether `receiver` is too slow to be followed against the others (its path took under
    /// half of what the best other took), not only under `min_rate`: the sender sends no repair
    /// for it and does not wait for it once others are done.
    pub fn is_outpaced(&self, receiver: u32) -> bool {
        self.peers
            .get(&receiver)
            .is_some_and(|p| p.slow && p.outpaced)
    }

    /// What `receiver`'s path took and the least it had to take to be followed (bit/s), if it is
    /// too slow to be followed: what the teacher is told.
    pub fn slow_path(&self, receiver: u32) -> Option<(f64, f64)> {
        self.peers
            .get(&receiver)
            .filter(|p| p.slow)
            .map(|p| p.slow_path)
    }

    /// `receiver`'s usual loss (the mean over its last intervals with no congestion nor overrun),
    /// once measured: what the first pass is sized by (PROTOCOL.md 5.10).
    pub fn loss(&self, receiver: u32) -> Option<f64> {
        let p = self.peers.get(&receiver)?;
        (!p.losses.is_empty()).then(|| p.losses.iter().sum::<f64>() / p.losses.len() as f64)
    }

    /// Forgets a receiver (done, failed, dropped): it no longer limits the class.
    pub fn forget(&mut self, receiver: u32) {
        self.peers.remove(&receiver);
    }

    /// The floor below which a receiver is not followed, in bit/s: `min_rate`, or half of what the
    /// best receiver other than `except` took recently, if more; and that half alone.
    fn floor(&self, now: Instant, except: u32) -> (f64, f64) {
        let best = self
            .peers
            .iter()
            .filter(|(id, _)| **id != except)
            .filter_map(|(_, p)| p.bw)
            .filter(|(_, at)| now.saturating_duration_since(*at) < STALE)
            .map(|(bw, _)| bw)
            .fold(0.0, f64::max);
        // Not above half the rate sent at: one receiver's overestimate does not make all the
        // others look slow.
        let half = FLOOR_SHARE * best.min(self.rate);
        (half.max(self.cfg.min_rate), half)
    }

    /// A receiver's echo of a PACE. Counts that go backwards or do not add up are ignored (a
    /// restarted receiver, or a lie that would only hurt the liar).
    pub fn handle_report(&mut self, now: Instant, receiver: u32, r: Report) {
        let peer = self.peers.entry(receiver).or_insert(Peer {
            base: None,
            min_rtt: None,
            last_rtt: None,
            losses: Vec::new(),
            pending: (0, 0, 0),
            bw: None,
            recent_bw: Vec::new(),
            slow: false,
            slow_path: (0.0, 0.0),
            outpaced: false,
            excess_at: None,
        });
        let rtt = (r.rtt <= MAX_RTT).then_some(r.rtt);
        if let Some(rtt) = rtt {
            peer.min_rtt = Some(peer.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        // When the PACE reached it, on the sender's clock give or take the way back (the same
        // each time): what was received is counted up to then.
        let arrived = r.pace_us + rtt.unwrap_or(Duration::ZERO).as_micros() as u64;
        let here = (r.pace_us, arrived, r.sent, r.received);
        let Some((pace0, arrived0, sent0, recv0)) = peer.base else {
            peer.base = Some(here);
            return;
        };
        if r.sent < sent0 || r.received < recv0 || r.pace_us < pace0 {
            peer.base = Some(here);
            peer.pending = (0, 0, 0);
            return;
        }
        let (ds, dt) = (r.sent - sent0, r.pace_us - pace0);
        if ds < MIN_SAMPLE || dt == 0 {
            return;
        }
        let dr = (r.received - recv0).min(ds);
        peer.base = Some(here);
        // A queue growing between the two PACEs stretches the time the receiver took them in.
        let took = arrived.saturating_sub(arrived0).clamp(dt * 4 / 5, dt * 2);
        let pending = (
            peer.pending.0 + ds,
            peer.pending.1 + dr,
            peer.pending.2 + dt,
        );
        // Judged once the reports add up to an interval (less a tenth: a PACE sent a little early).
        let judged = pending.2 >= INTERVAL.as_micros() as u64 * 9 / 10;
        peer.pending = if judged { (0, 0, 0) } else { pending };
        let loss = 1.0 - pending.1 as f64 / pending.0 as f64;
        // Its usual loss, from the reports before this one (none yet: only a queue says more).
        let baseline = (!peer.losses.is_empty())
            .then(|| peer.losses.iter().sum::<f64>() / peer.losses.len() as f64);
        let delivered = dr as f64 * self.cfg.packet_bits / (took as f64 / 1e6);
        // Never more than what was sent in the interval (a shrinking queue lets a little more
        // through): a round trip that shrank must not make a path look faster than the sender.
        let sent_rate = ds as f64 * self.cfg.packet_bits / (dt as f64 / 1e6);
        let sample = (delivered / (1.0 - baseline.unwrap_or(0.0)).max(0.05)).min(1.25 * sent_rate);
        if peer.recent_bw.len() == BW_WINDOW {
            peer.recent_bw.remove(0);
        }
        peer.recent_bw.push(sample);
        let bw = peer.recent_bw.iter().copied().fold(sample, f64::max);
        peer.bw = Some((bw, now));
        let queued = match (rtt, peer.last_rtt, peer.min_rtt) {
            (Some(rtt), Some(last), Some(min)) => rtt.min(last).saturating_sub(min),
            _ => Duration::ZERO,
        };
        peer.last_rtt = rtt;
        let queue = queued
            > if self.slow_start {
                QUEUE_DELAY
            } else {
                CA_QUEUE_DELAY
            };
        // One round trip alone above the lowest: a queue starting (or a busy PC's hiccup).
        let queue_once = rtt
            .zip(peer.min_rtt)
            .is_some_and(|(rtt, min)| rtt.saturating_sub(min) > QUEUE_DELAY);
        // Excess: over an interval, above the baseline by more than chance explains: three
        // standard deviations of the binomial loss over this many datagrams, and at least
        // `LOSS_EXCESS`. With no baseline yet, or before an interval is summed up (a queue
        // overflowing while slow start's steps go on), only a loss no cable explains.
        let excess = match baseline {
            Some(b) if judged => {
                let sd = (b.max(0.01) * (1.0 - b) / pending.0 as f64).sqrt();
                loss - b > LOSS_EXCESS.max(3.0 * sd)
            }
            b => loss - b.unwrap_or(0.0) > FIRST_LOSS,
        };
        if judged {
            peer.excess_at = excess.then_some((now, false));
        }
        // Loss with no queue, at this PC alone: its own port or cable (a burst, a bad cable, a
        // busy PC), which a lower rate would not help and FEC repairs. At a bottleneck with a
        // buffer the queue shows first; behind a buffer too small to show (a millisecond or two),
        // every PC behind it loses together: loss above the baseline at most of the followed
        // PCs within an interval is congestion too (`shared_loss`).
        let shared = excess && self.shared_loss(now);
        if shared {
            self.unlearn_shared(now);
        }
        let congested = queue || (excess && (queue_once || shared));
        // Not congestion, but if its path took less than was sent (its bandwidth, the largest of
        // its last few intervals, so that one burst does not lower it, and a margin), the rate is
        // held to that: a port whose buffer is too small to show a queue, overrun by this PC
        // alone, is followed without being cut below it. Not in slow start nor over less than an
        // interval: a burst is too likely there.
        let path = bw * (1.0 + LOSS_EXCESS);
        let overrun = excess && !congested && judged && !self.slow_start && path < sent_rate;
        let (floor, half_best) = self.floor(now, receiver);
        let peer = self.peers.get_mut(&receiver).expect("inserted above");
        // Its bursts are part of its usual loss (what the first pass is sized by); congestion,
        // and its own port overrun, are not.
        if judged && !congested && !overrun {
            if peer.losses.len() == HISTORY {
                peer.losses.remove(0);
            }
            peer.losses.push(loss);
            if let Some((_, pushed)) = &mut peer.excess_at {
                *pushed = true;
            }
        }
        let suspect = queue || excess;
        // Its own rate means nothing while it is not congested: it took what was sent. Congested
        // below the floor, or losing most of what is sent whatever the rate, it is too slow.
        // In slow start a queue seen once counts as well: its path is not followed down.
        // Once too slow, it stays so while what its path takes is below the floor: a report in
        // which its queue happened to drain does not make it followed (nor its NEEDs answered)
        // for a moment.
        let starting = self.slow_start && queue_once;
        peer.slow = baseline.is_some_and(|b| b > SLOW_LOSS)
            || ((suspect || starting || peer.slow) && BACKOFF * bw < floor);
        // Slow against the others (or losing most of the stream), not only against `min_rate`:
        // a class all behind one slow link is all below `min_rate`, and none of it is outpaced.
        // It stays so while slow (the others, once done, are forgotten here).
        let lossy = baseline.is_some_and(|b| b > SLOW_LOSS);
        peer.outpaced = peer.slow && (peer.outpaced || lossy || BACKOFF * bw < half_best);
        if peer.slow {
            peer.slow_path = (bw, floor / BACKOFF);
            return;
        }
        if overrun {
            // It does not grow this step either, and one report cuts no deeper than congestion
            // does (a PC stalled for a moment reports a path slower than it is).
            self.congested = true;
            self.rate = self
                .rate
                .min(path)
                .max(MAX_CUT * self.rate)
                .max(self.cfg.min_rate)
                .min(self.cfg.ceiling);
            return;
        }
        if excess && !congested {
            return;
        }
        if starting && !congested {
            // HyStart's signal (RFC 9406): the first queue in slow start stops the growth and
            // brings the rate down to what the path delivers, so the queue grows no more; a
            // second report in a row confirms it (the cut below), a clear one resumes slow start.
            self.congested = true;
            self.rate = self
                .rate
                .min(bw)
                .max(self.cfg.min_rate)
                .min(self.cfg.ceiling);
            return;
        }
        if !congested {
            self.clear = true;
            return;
        }
        self.congested = true;
        if self.hold.is_some_and(|h| now < h) {
            return;
        }
        // One cut per round: the reports in flight were made at the old rate, and the queue
        // drains at a tenth of the link's rate (10% under it) for ten times its length.
        let rtt = rtt.unwrap_or(Duration::ZERO);
        self.hold = Some(now + INTERVAL + rtt + (10 * queued).min(Duration::from_secs(1)));
        // After slow start (whose last doubling may be twice too much), at most a quarter off at
        // once: one PC that stalled for a moment (its CPU busy) reports a path slower than it is;
        // a real bottleneck cuts again after the hold.
        let keep = if self.slow_start { 0.0 } else { MAX_CUT };
        self.slow_start = false;
        self.rate = (BACKOFF * bw.min(self.rate))
            .max(keep * self.rate)
            .max(self.cfg.min_rate)
            .min(self.cfg.ceiling);
    }

    /// Whether most of the followed receivers (at least two) that reported lately had their last
    /// interval's loss above their baseline within an interval of `now`: a bottleneck every one
    /// of them is behind dropping, rather than each PC's own port or cable.
    fn shared_loss(&self, now: Instant) -> bool {
        let followed = self.peers.values().filter(|p| !p.slow).filter(|p| {
            p.bw.is_some_and(|(_, at)| now.saturating_duration_since(at) < STALE)
        });
        let (mut all, mut lossy) = (0, 0);
        for p in followed {
            all += 1;
            lossy += p
                .excess_at
                .is_some_and(|(at, _)| now.saturating_duration_since(at) <= INTERVAL)
                as usize;
        }
        lossy >= 2 && 4 * lossy >= 3 * all
    }

    /// Takes a shared bottleneck's loss (`shared_loss`) out of the baselines of the PCs that
    /// reported it before it was found shared: it was congestion, not their usual loss.
    fn unlearn_shared(&mut self, now: Instant) {
        for p in self.peers.values_mut() {
            if let Some((at, pushed)) = &mut p.excess_at
                && *pushed
                && now.saturating_duration_since(*at) <= INTERVAL
            {
                p.losses.pop();
                *pushed = false;
            }
        }
    }

    /// The rate grows (doubling in slow start, by a few percent after) once per interval in which
    /// a followed receiver reported and none reported congestion.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_step {
            return;
        }
        let step = now.saturating_duration_since(self.last_step).min(INTERVAL);
        self.last_step = now;
        self.next_step = now + self.pace_interval();
        let (clear, congested) = (self.clear, self.congested);
        self.clear = false;
        self.congested = false;
        if !clear || congested {
            return;
        }
        // Never more than twice what the slowest followed receiver took: a rate nobody can show
        // they handle is not a rate (TFMCC's slow-start limit, RFC 4654 §3.3).
        let limit = self
            .peers
            .values()
            .filter(|p| !p.slow)
            .filter_map(|p| p.bw)
            .filter(|(_, at)| now.saturating_duration_since(*at) < STALE)
            .map(|(bw, _)| 2.0 * bw)
            .fold(f64::INFINITY, f64::min);
        let grown = if self.slow_start {
            self.rate * 2f64.powf(step.as_secs_f64() / INTERVAL.as_secs_f64())
        } else {
            self.rate * PROBE
        };
        self.rate = grown.min(limit.max(self.rate)).min(self.cfg.ceiling);
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.next_step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CcConfig {
        CcConfig {
            ceiling: 1e9,
            min_rate: 1e6,
            initial: 25e6,
            packet_bits: 1500.0 * 8.0,
        }
    }

    fn report(rtt_ms: u64, t_ms: u64, sent: u64, received: u64) -> Report {
        Report {
            rtt: Duration::from_millis(rtt_ms),
            pace_us: t_ms * 1000,
            sent,
            received,
        }
    }

    #[test]
    fn random_loss_is_not_congestion_and_a_queue_is() {
        let t = Instant::now();
        let mut cc = RateControl::new(cfg(), t);
        // 5% loss every interval, no queue: slow start doubles every step.
        let mut sent = 0;
        for i in 0..4u64 {
            cc.handle_report(t, 1, report(1, i * 100, sent, sent * 95 / 100));
            sent += 1000;
            cc.handle_timeout(t + INTERVAL * (i as u32 + 1));
        }
        assert!(cc.slow_start());
        assert!(cc.rate() > 100e6, "{}", cc.rate());
        // The round trip grows by 30 ms, in two reports in a row (one alone is a busy PC): the
        // second is congestion, cut to 90% of what the path delivered.
        let now = t + INTERVAL * 5;
        cc.handle_report(now, 1, report(31, 400, sent, sent * 95 / 100));
        assert!(cc.slow_start());
        sent += 1000;
        cc.handle_report(now, 1, report(31, 500, sent, sent * 95 / 100));
        assert!(!cc.slow_start());
        // 1000 packets of 12000 bits sent in 0.1 s, 95% delivered, baseline 5%: 120 Mbit/s.
        assert!((cc.rate() - 0.9 * 120e6).abs() < 1e5, "{}", cc.rate());
    }

    #[test]
    fn after_slow_start_a_queue_of_5_ms_is_congestion_and_in_it_is_not() {
        let t = Instant::now();
        let mut cc = RateControl::new(cfg(), t);
        let mut sent = 0;
        // Reports every 100 ms of 1000 datagrams, none lost, the round trip `rtt` ms.
        let mut step = |cc: &mut RateControl, i: u64, rtt: u64| {
            let now = t + Duration::from_millis(i * 100 + rtt);
            cc.handle_report(now, 1, report(rtt, i * 100, sent, sent));
            sent += 1000;
            cc.handle_timeout(t + Duration::from_millis(i * 100 + 99));
        };
        for i in 0..3 {
            step(&mut cc, i, 1);
        }
        // 6 ms above the lowest, twice: not a queue in slow start (10 ms there) ...
        step(&mut cc, 3, 7);
        step(&mut cc, 4, 7);
        assert!(cc.slow_start());
        // ... 30 ms is, and ends it.
        step(&mut cc, 5, 31);
        step(&mut cc, 6, 31);
        assert!(!cc.slow_start());
        for i in 7..20 {
            step(&mut cc, i, 1);
        }
        // After it, 6 ms twice is: cut.
        let before = cc.rate();
        step(&mut cc, 20, 7);
        assert!(cc.rate() >= before);
        step(&mut cc, 21, 7);
        assert!(cc.rate() < 0.95 * before, "{before} {}", cc.rate());
    }

    #[test]
    fn in_slow_start_one_queued_report_holds_the_rate_and_two_end_it() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut cc = RateControl::new(cfg(), t);
        assert_eq!(cc.pace_interval(), SLOW_START_INTERVAL);
        // 60 datagrams of 12000 bits per 25 ms: the path delivers 28.8 Mbit/s.
        cc.handle_report(t, 1, report(1, 0, 0, 0));
        cc.handle_timeout(ms(25));
        assert_eq!(cc.rate(), 25e6);
        for i in 1..=2u64 {
            cc.handle_report(ms(i * 25 + 1), 1, report(1, i * 25, i * 60, i * 60));
            cc.handle_timeout(ms(i * 25 + 25));
        }
        // Two steps of 25 ms: 2^(1/4) each.
        assert!(
            (cc.rate() - 25e6 * 2f64.sqrt()).abs() < 1e3,
            "{}",
            cc.rate()
        );
        // One round trip 19 ms above the lowest: held at what the path delivers, no step.
        cc.handle_report(ms(95), 1, report(20, 75, 180, 180));
        assert!(cc.slow_start());
        assert!((cc.rate() - 28.8e6).abs() < 1e3, "{}", cc.rate());
        cc.handle_timeout(ms(100));
        assert!((cc.rate() - 28.8e6).abs() < 1e3, "{}", cc.rate());
        // The next one clear (a busy PC's hiccup): slow start goes on.
        cc.handle_report(ms(101), 1, report(1, 100, 240, 240));
        cc.handle_timeout(ms(125));
        assert!(cc.slow_start());
        assert!(
            (cc.rate() - 28.8e6 * 2f64.powf(0.25)).abs() < 1e3,
            "{}",
            cc.rate()
        );
        // Two in a row: a queue; slow start over, cut to 90% of min(rate, bandwidth) — here of
        // the rate, the hiccup's draining having made one interval look faster (up to 36 Mbit/s).
        let before = cc.rate();
        cc.handle_report(ms(145), 1, report(20, 125, 300, 300));
        assert!(cc.slow_start());
        cc.handle_report(ms(170), 1, report(20, 150, 360, 360));
        assert!(!cc.slow_start());
        assert!((cc.rate() - 0.9 * before).abs() < 1e3, "{}", cc.rate());
        assert_eq!(cc.pace_interval(), INTERVAL);
    }

    #[test]
    fn a_receiver_far_below_the_others_is_not_followed() {
        let t = Instant::now();
        let mut cc = RateControl::new(cfg(), t);
        cc.handle_report(t, 1, report(1, 0, 0, 0));
        cc.handle_report(t, 2, report(1, 0, 0, 0));
        let now = t + INTERVAL;
        // 1 takes all 1000; 2 only 100 of them (90% loss in its first interval), its queue full.
        cc.handle_report(now, 1, report(1, 100, 1000, 1000));
        cc.handle_report(now, 2, report(60, 100, 1000, 100));
        assert!(cc.is_slow(2) && !cc.is_slow(1));
        assert_eq!(cc.rate(), 25e6);
        // Alone, it is followed: down to what its path takes.
        let mut cc = RateControl::new(cfg(), t);
        cc.handle_report(t, 2, report(1, 0, 0, 0));
        cc.handle_report(now, 2, report(60, 100, 1000, 100));
        assert!(!cc.is_slow(2));
        // 100 packets of 12000 bits over 159 ms (100 sent, 59 more of queue): 7.55 Mbit/s.
        assert!((cc.rate() - 0.9 * 7.547e6).abs() < 1e4, "{}", cc.rate());
    }

    #[test]
    fn under_half_the_others_is_outpaced_and_under_min_rate_alone_is_not() {
        let t = Instant::now();
        let cfg = CcConfig {
            min_rate: 25e6,
            ..cfg()
        };
        let now = t + INTERVAL;
        // Alone behind a 7.5 Mbit/s path: too slow for `min_rate`, but not outpaced.
        let mut cc = RateControl::new(cfg, t);
        cc.handle_report(t, 2, report(1, 0, 0, 0));
        cc.handle_report(now, 2, report(60, 100, 1000, 100));
        assert!(cc.is_slow(2) && !cc.is_outpaced(2));
        let (took, least) = cc.slow_path(2).unwrap();
        assert!((took - 7.547e6).abs() < 1e4 && (least - 25e6 / 0.9).abs() < 1.0);
        // Beside one that takes all of it: outpaced ...
        let mut cc = RateControl::new(cfg, t);
        cc.handle_report(t, 1, report(1, 0, 0, 0));
        cc.handle_report(t, 2, report(1, 0, 0, 0));
        cc.handle_report(now, 1, report(1, 100, 1000, 1000));
        cc.handle_report(now, 2, report(60, 100, 1000, 100));
        assert!(cc.is_outpaced(2) && !cc.is_slow(1));
        // ... and still once the other is done and forgotten, its path as slow.
        cc.forget(1);
        cc.handle_report(t + 2 * INTERVAL, 2, report(60, 200, 2000, 200));
        assert!(cc.is_outpaced(2));
    }

    #[test]
    fn loss_at_one_pc_without_a_queue_is_not_a_cut_and_at_most_pcs_is() {
        let t = Instant::now();
        // Four receivers at 2% for a second (slow start ended by a queue first), then one, or
        // three, of them lose 12% in an interval, with no queue.
        let run = |lossy: u32| {
            let mut cc = RateControl::new(cfg(), t);
            let (mut sent, mut received, mut ms) = (0, [0; 4], 0);
            let mut round = |cc: &mut RateControl, rtt: u64, loss: &dyn Fn(u32) -> u64| {
                // What the rate sends in an interval, in datagrams of 12000 bits.
                let n = (cc.rate() / 10.0 / 12000.0) as u64;
                for id in 1..=4u32 {
                    let now = t + Duration::from_millis(ms);
                    let got = received[id as usize - 1];
                    cc.handle_report(now, id, report(rtt, ms, sent, got));
                    received[id as usize - 1] += n * (100 - loss(id)) / 100;
                }
                sent += n;
                ms += 100;
                cc.handle_timeout(t + Duration::from_millis(ms));
            };
            for _ in 0..3 {
                round(&mut cc, 1, &|_| 2);
            }
            round(&mut cc, 31, &|_| 2);
            round(&mut cc, 31, &|_| 2);
            assert!(!cc.slow_start());
            for _ in 0..10 {
                round(&mut cc, 1, &|_| 2);
            }
            // This interval loses 12% at the first `lossy` PCs; the next reports show it.
            round(&mut cc, 1, &|id| if id <= lossy { 12 } else { 2 });
            let before = cc.rate();
            round(&mut cc, 1, &|_| 2);
            (before, cc.rate())
        };
        // One PC: its port's, not the class's; the rate is not cut (what its path took, the
        // largest of its last intervals, is not below the rate).
        let (before, after) = run(1);
        assert!(after >= before, "{before} {after}");
        // Three of four at once: a bottleneck all are behind, whose buffer shows no queue.
        let (before, after) = run(3);
        assert!(after < 0.95 * before, "{before} {after}");
    }
}
