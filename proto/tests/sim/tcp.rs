//! A bulk TCP flow on the simulated switch (what `bench/share.sh` runs iperf3 for): the traffic a
//! classroom's multicast must leave room for. Reno's (RFC 5681) or CUBIC's (RFC 9438) congestion
//! control with SACK-like loss detection (RFC 8985's, counted in datagrams): slow start from 10
//! segments, the window cut once per round trip with loss, back to one segment after a
//! retransmission timeout, and never above the receiver's window. The receiver acknowledges
//! every segment at once, with the next one it expects in order and the transmission it got.
//!
//! Both ends use `TCP_PORT`; the class hands this flow every datagram addressed to it.

use crate::net::{Datagram, Network, To};
use std::collections::{BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub const TCP_PORT: u16 = 7000;
/// A segment's payload, with TCP's 20 bytes of header more than UDP's, as Ethernet's MSS.
const SEGMENT: usize = 1448 + 12;
/// A segment is lost once this many sent after it have arrived (RFC 5681's three duplicate ACKs).
const REORDER: u64 = 3;
const INITIAL_WINDOW: f64 = 10.0;
/// Linux's least retransmission timeout.
const MIN_RTO: Duration = Duration::from_millis(200);

/// How the window grows and is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// RFC 5681: one segment per round trip, halved on loss.
    Reno,
    /// RFC 9438, Linux's default (what iperf3 runs with): cut to 70% on loss, then back to the
    /// window it was cut from along a cubic of the time since, flat near it, at least as fast as
    /// Reno would (its TCP-friendly region).
    Cubic,
}

/// CUBIC's constants (RFC 9438 section 4): the cut, and the cubic's scale (segments per s³).
const BETA: f64 = 0.7;
const CUBIC_C: f64 = 0.4;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Seg {
    /// In flight: its transmission's number and time.
    Sent { tx: u64, at: Instant },
    /// Arrived (selectively acknowledged), the ones before it not all yet.
    Sacked,
    /// Taken for lost: sent again before any new one.
    Lost,
}

pub struct TcpFlow {
    /// The sending host, and the receiving one (a student's PC).
    host: usize,
    to_host: usize,
    from: SocketAddr,
    to: SocketAddr,
    starts: Instant,
    /// No new data after this (iperf3's `-t`).
    stops: Instant,
    started: bool,
    /// Sender: every segment from `una` (the first not acknowledged in order) to `next`.
    una: u64,
    next: u64,
    segs: VecDeque<Seg>,
    in_flight: usize,
    lost: usize,
    growth: Growth,
    /// The receiver's window, in segments: never more in flight.
    max_window: f64,
    cwnd: f64,
    ssthresh: f64,
    /// CUBIC: the window at the last cut, where the cubic flattens.
    w_max: f64,
    /// CUBIC: when growth after the last cut began, and the seconds it takes back to `w_max`.
    epoch: Option<(Instant, f64)>,
    /// CUBIC: the window Reno would have reached since the last cut (its TCP-friendly region).
    w_est: f64,
    /// In loss recovery until `una` passes this: one cut per round trip.
    recover: u64,
    tx: u64,
    /// The latest transmission known to have arrived.
    delivered_tx: u64,
    srtt: Option<Duration>,
    rttvar: Duration,
    backoff: u32,
    rto_at: Option<Instant>,
    /// Receiver: the next segment expected in order, those past it that arrived, and when each
    /// segment came in order (what iperf3 counts).
    expected: u64,
    ahead: BTreeSet<u64>,
    in_order_at: Vec<Instant>,
}

impl TcpFlow {
    /// A flow from a new host plugged into `net` at `ip` to `to` (a host's number and
    /// address), sending during `time` (from, until), with `growth` and a receiver's window of
    /// `max_window` segments.
    pub fn new(
        net: &mut Network,
        ip: Ipv4Addr,
        (to_host, to_ip): (usize, Ipv4Addr),
        (starts, stops): (Instant, Instant),
        (growth, max_window): (Growth, f64),
    ) -> Self {
        let link = crate::net::Link::default();
        let host = net.add_host(ip.into(), link, link, 7000 + ip.octets()[3] as u64);
        TcpFlow {
            host,
            to_host,
            from: SocketAddr::new(ip.into(), TCP_PORT),
            to: SocketAddr::new(to_ip.into(), TCP_PORT),
            starts,
            stops,
            started: false,
            una: 0,
            next: 0,
            segs: VecDeque::new(),
            in_flight: 0,
            lost: 0,
            growth,
            max_window,
            cwnd: INITIAL_WINDOW,
            ssthresh: f64::INFINITY,
            w_max: 0.0,
            epoch: None,
            w_est: 0.0,
            recover: 0,
            tx: 0,
            delivered_tx: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            rto_at: None,
            expected: 0,
            ahead: BTreeSet::new(),
            in_order_at: Vec::new(),
        }
    }

    /// The sending host's number on the network.
    pub fn host(&self) -> usize {
        self.host
    }

    /// Payload bytes received in order between `from` and `until`.
    pub fn bytes_between(&self, from: Instant, until: Instant) -> u64 {
        let a = self.in_order_at.partition_point(|t| *t < from);
        let b = self.in_order_at.partition_point(|t| *t < until);
        ((b - a) * (SEGMENT - 12)) as u64
    }

    pub fn timer(&self) -> Option<Instant> {
        if !self.started {
            return Some(self.starts);
        }
        self.rto_at
    }

    fn rto(&self) -> Duration {
        let base = self
            .srtt
            .map_or(Duration::from_secs(1), |s| s + 4 * self.rttvar);
        base.max(MIN_RTO) * 2u32.pow(self.backoff.min(6))
    }

    /// The start, or a retransmission timeout: everything in flight is taken for lost, and the
    /// window goes back to one segment.
    pub fn poll(&mut self, now: Instant, net: &mut Network) {
        if !self.started {
            if now < self.starts {
                return;
            }
            self.started = true;
        } else if self.rto_at.is_some_and(|t| t <= now) {
            for s in &mut self.segs {
                if matches!(s, Seg::Sent { .. }) {
                    *s = Seg::Lost;
                    self.lost += 1;
                }
            }
            self.in_flight = 0;
            self.cut();
            self.cwnd = 1.0;
            // Slow start again from here, not loss recovery.
            self.recover = self.una;
            self.backoff += 1;
            self.rto_at = None;
        }
        self.transmit(now, net);
    }

    /// Sends while the window has room: what was lost first, then new data.
    fn transmit(&mut self, now: Instant, net: &mut Network) {
        while (self.in_flight as f64) < self.cwnd.floor().max(1.0) {
            let seq = if self.lost > 0 {
                let i = self.segs.iter().position(|s| *s == Seg::Lost).unwrap();
                self.lost -= 1;
                self.una + i as u64
            } else if now < self.stops {
                self.segs.push_back(Seg::Lost);
                self.next += 1;
                self.next - 1
            } else {
                break;
            };
            self.tx += 1;
            self.segs[(seq - self.una) as usize] = Seg::Sent {
                tx: self.tx,
                at: now,
            };
            self.in_flight += 1;
            let mut bytes = vec![0; SEGMENT];
            bytes[..8].copy_from_slice(&seq.to_be_bytes());
            bytes[8..16].copy_from_slice(&self.tx.to_be_bytes());
            net.send(now, self.host, self.from, To::Host(self.to), &bytes);
            self.rto_at.get_or_insert(now + self.rto());
        }
    }

    /// A datagram to `TCP_PORT` that reached `host`: a segment at the receiver, an ACK at the
    /// sender.
    pub fn deliver(&mut self, now: Instant, host: usize, d: &Datagram, net: &mut Network) {
        let word = |i: usize| u64::from_be_bytes(d.bytes[i * 8..][..8].try_into().unwrap());
        if host == self.to_host && d.from == self.from {
            let (seq, tx) = (word(0), word(1));
            if seq >= self.expected {
                self.ahead.insert(seq);
            }
            while self.ahead.remove(&self.expected) {
                self.expected += 1;
                self.in_order_at.push(now);
            }
            let mut ack = [0; 24];
            ack[..8].copy_from_slice(&self.expected.to_be_bytes());
            ack[8..16].copy_from_slice(&seq.to_be_bytes());
            ack[16..].copy_from_slice(&tx.to_be_bytes());
            net.send(now, host, self.to, To::Host(self.from), &ack);
        } else if host == self.host {
            self.ack(now, word(0), word(1), word(2), net);
        }
    }

    fn ack(&mut self, now: Instant, cum: u64, seq: u64, tx: u64, net: &mut Network) {
        let mut acked = 0;
        let i = seq.checked_sub(self.una).map(|i| i as usize);
        if let Some(s) = i.and_then(|i| self.segs.get(i)).copied() {
            match s {
                Seg::Sent { tx: t, at } => {
                    if t == tx {
                        self.rtt_sample(now - at);
                    }
                    self.in_flight -= 1;
                    acked += 1;
                }
                Seg::Lost => {
                    self.lost -= 1;
                    acked += 1;
                }
                Seg::Sacked => {}
            }
            self.segs[i.expect("found")] = Seg::Sacked;
        }
        self.delivered_tx = self.delivered_tx.max(tx);
        if cum > self.una {
            while self.una < cum {
                match self.segs.pop_front() {
                    Some(Seg::Sent { .. }) => {
                        self.in_flight -= 1;
                        acked += 1;
                    }
                    Some(Seg::Lost) => {
                        self.lost -= 1;
                        acked += 1;
                    }
                    _ => {}
                }
                self.una += 1;
            }
            self.backoff = 0;
            self.rto_at = (self.in_flight > 0).then(|| now + self.rto());
        }
        let mut newly_lost = false;
        for s in &mut self.segs {
            if let Seg::Sent { tx, .. } = *s
                && tx + REORDER <= self.delivered_tx
            {
                *s = Seg::Lost;
                self.in_flight -= 1;
                self.lost += 1;
                newly_lost = true;
            }
        }
        let recovering = self.una < self.recover;
        if newly_lost && !recovering {
            self.cut();
            self.cwnd = self.ssthresh;
            self.recover = self.next;
        } else if !recovering {
            for _ in 0..acked {
                self.grow(now);
            }
            // Held to the receiver's window, the congestion window grows no further (RFC 7661):
            // a loss still cuts it below.
            self.cwnd = self.cwnd.min(self.max_window);
        }
        if self.in_flight == 0 && self.lost == 0 {
            self.rto_at = None;
        }
        self.transmit(now, net);
    }

    /// Once per round trip with loss: the window to come back from.
    fn cut(&mut self) {
        let beta = match self.growth {
            Growth::Reno => 0.5,
            Growth::Cubic => BETA,
        };
        // Fast convergence (RFC 9438 4.7): cut again below the last peak, leave room for others.
        self.w_max = if self.cwnd < self.w_max {
            self.cwnd * (1.0 + BETA) / 2.0
        } else {
            self.cwnd
        };
        self.ssthresh = (self.cwnd * beta).max(2.0);
        self.epoch = None;
    }

    /// One segment acknowledged, outside loss recovery.
    fn grow(&mut self, now: Instant) {
        if self.cwnd < self.ssthresh {
            self.cwnd += 1.0;
            return;
        }
        if self.growth == Growth::Reno {
            self.cwnd += 1.0 / self.cwnd;
            return;
        }
        if self.epoch.is_none() {
            self.w_est = self.cwnd;
            self.w_max = self.w_max.max(self.cwnd);
            let k = ((self.w_max - self.cwnd) / CUBIC_C).cbrt();
            self.epoch = Some((now, k));
        }
        let (epoch, k) = self.epoch.expect("set above");
        let t = (now - epoch + self.srtt.unwrap_or_default()).as_secs_f64();
        let target = CUBIC_C * (t - k).powi(3) + self.w_max;
        let target = target.clamp(self.cwnd, 1.5 * self.cwnd);
        self.w_est += 3.0 * (1.0 - BETA) / (1.0 + BETA) / self.cwnd;
        self.cwnd = (self.cwnd + (target - self.cwnd) / self.cwnd).max(self.w_est);
    }

    fn rtt_sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
        }
    }
}
