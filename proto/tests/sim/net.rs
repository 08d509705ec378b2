//! The simulated network: a classroom switch with a port per PC. Every host has a link up to the
//! switch and one down from it. A datagram crosses its sender's up link, then the switch copies it
//! onto the down link of the host it is addressed to, or of every host listening on its group port
//! (as IGMP snooping does). Each link loses, delays and queues on its own, with its own seeded RNG,
//! so what happens on one PC's cable does not shift the dice of another.
//!
//! The network carries bytes between addresses and knows no protocol: the file protocol's class
//! (`class.rs`) is one user of it, and other products' hosts can sit on the same switch.

use edm_cast_proto::rng::Rng;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bytes a datagram takes on an Ethernet link besides its UDP payload (IPv4, UDP and Ethernet
/// headers), counted as the shell's pacer counts them.
const WIRE_OVERHEAD: usize = 42;

/// How a link loses datagrams.
#[derive(Clone, Copy, Debug)]
pub enum Loss {
    None,
    /// Each datagram independently, with this probability.
    Random(f64),
    /// Gilbert model: from "good" a burst starts with probability `enter`, and ends with `leave`;
    /// every datagram in a burst is lost.
    Burst {
        enter: f64,
        leave: f64,
    },
}

/// A link that carries no faster than `bits_per_sec`, behind a drop-tail buffer: a datagram that
/// finds `buffer` datagrams queued (the one being sent included) is dropped.
#[derive(Clone, Copy, Debug)]
pub struct Bottleneck {
    pub bits_per_sec: u64,
    pub buffer: usize,
}

impl Bottleneck {
    fn time_to_send(&self, payload: usize) -> Duration {
        let bits = (payload + WIRE_OVERHEAD) as u64 * 8;
        Duration::from_nanos(bits * 1_000_000_000 / self.bits_per_sec)
    }
}

/// The cable is out from `from` until `until` (times since the start): whatever enters the link
/// then is lost.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    pub from: Duration,
    pub until: Duration,
}

/// One direction of a host's cable to the switch.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub loss: Loss,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Unlimited if `None`: the pacing of the senders is then the only limit.
    pub bottleneck: Option<Bottleneck>,
    pub outage: Option<Outage>,
}

impl Default for Link {
    /// A quiet LAN cable: two links each way between two PCs make a 1 ms round trip.
    fn default() -> Self {
        Link {
            loss: Loss::None,
            delay: Duration::from_micros(250),
            bottleneck: None,
            outage: None,
        }
    }
}

impl Link {
    /// The teacher's 100 Mbit/s cable behind 50 ms of drop-tail buffer (420 datagrams of 1492
    /// bytes), as the lab's tbf.
    pub fn lab_uplink() -> Self {
        Link {
            bottleneck: Some(Bottleneck {
                bits_per_sec: 100_000_000,
                buffer: 420,
            }),
            ..Link::default()
        }
    }
}

/// What happened on one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams that entered the link.
    pub datagrams: u64,
    /// Lost on the wire: random loss, or the cable out.
    pub lost: u64,
    /// Dropped at the tail of a full bottleneck buffer.
    pub overflowed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    Host(SocketAddr),
    /// Every host listening on this port of the group.
    Group(u16),
}

#[derive(Clone, Debug)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: To,
    /// Shared by all the copies the switch makes of a group datagram.
    pub bytes: Rc<[u8]>,
}

struct InFlight {
    /// When its last bit left the sending end (after queueing, at the link's rate).
    sent: Instant,
    arrives: Instant,
    datagram: Datagram,
}

struct Wire {
    link: Link,
    rng: Rng,
    in_burst: bool,
    /// When the last datagram queued will have been sent.
    busy_until: Instant,
    /// In order of arrival: every datagram has the same delay and waits behind those before it.
    flight: VecDeque<InFlight>,
    stats: LinkStats,
}

impl Wire {
    fn new(link: Link, seed: u64, t0: Instant) -> Self {
        Wire {
            link,
            rng: Rng::new(seed),
            in_burst: false,
            busy_until: t0,
            flight: VecDeque::new(),
            stats: LinkStats::default(),
        }
    }

    /// `datagram` enters the link at `now`, `since_start` into the simulation.
    fn enter(&mut self, now: Instant, since_start: Duration, datagram: Datagram) {
        self.stats.datagrams += 1;
        if let Some(o) = self.link.outage
            && (o.from..o.until).contains(&since_start)
        {
            self.stats.lost += 1;
            return;
        }
        let sent = match self.link.bottleneck {
            None => now,
            Some(b) => {
                let queued = self
                    .flight
                    .iter()
                    .rev()
                    .take_while(|f| f.sent > now)
                    .count();
                if queued >= b.buffer {
                    self.stats.overflowed += 1;
                    return;
                }
                self.busy_until = self.busy_until.max(now) + b.time_to_send(datagram.bytes.len());
                self.busy_until
            }
        };
        self.flight.push_back(InFlight {
            sent,
            arrives: sent + self.link.delay,
            datagram,
        });
    }

    /// The next datagram that has reached the far end by `now` and was not lost on the way. Loss
    /// is drawn here rather than on entry so that a datagram lost on the wire still took its time
    /// in the queue.
    fn take(&mut self, now: Instant) -> Option<Datagram> {
        while self.flight.front().is_some_and(|f| f.arrives <= now) {
            let f = self.flight.pop_front().expect("checked");
            if self.lose() {
                self.stats.lost += 1;
            } else {
                return Some(f.datagram);
            }
        }
        None
    }

    fn lose(&mut self) -> bool {
        match self.link.loss {
            Loss::None => false,
            Loss::Random(p) => self.rng.unit() < p,
            Loss::Burst { enter, leave } => {
                let r = self.rng.unit();
                self.in_burst = if self.in_burst { r >= leave } else { r < enter };
                self.in_burst
            }
        }
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.flight.front().map(|f| f.arrives)
    }
}

struct Port {
    ip: IpAddr,
    up: Wire,
    down: Wire,
    /// Group ports the host listens on.
    listening: Vec<u16>,
}

pub struct Network {
    t0: Instant,
    ports: Vec<Port>,
}

impl Network {
    pub fn new(t0: Instant) -> Self {
        Network {
            t0,
            ports: Vec::new(),
        }
    }

    /// Plugs a host into the switch; `seed` seeds its links' losses. Returns the host's number.
    pub fn add_host(&mut self, ip: IpAddr, up: Link, down: Link, seed: u64) -> usize {
        self.ports.push(Port {
            ip,
            up: Wire::new(up, !seed, self.t0),
            down: Wire::new(down, seed, self.t0),
            listening: Vec::new(),
        });
        self.ports.len() - 1
    }

    pub fn listen(&mut self, host: usize, port: u16) {
        self.ports[host].listening.push(port);
    }

    /// `host` sends `bytes` from its address `from`.
    pub fn send(&mut self, now: Instant, host: usize, from: SocketAddr, to: To, bytes: &[u8]) {
        let datagram = Datagram {
            from,
            to,
            bytes: bytes.into(),
        };
        self.ports[host].up.enter(now, now - self.t0, datagram);
    }

    /// When the next datagram reaches the switch or a host.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ports
            .iter()
            .flat_map(|p| [p.up.next_arrival(), p.down.next_arrival()])
            .flatten()
            .min()
    }

    /// The datagrams delivered by `now`, with the host each reached. The caller moves the clock
    /// from one `poll_timeout` to the next, so all of them arrived at `now` itself.
    pub fn deliveries(&mut self, now: Instant) -> Vec<(usize, Datagram)> {
        for from in 0..self.ports.len() {
            while let Some(d) = self.ports[from].up.take(now) {
                self.switch(now, from, d);
            }
        }
        let mut delivered = Vec::new();
        for (host, p) in self.ports.iter_mut().enumerate() {
            while let Some(d) = p.down.take(now) {
                delivered.push((host, d));
            }
        }
        delivered
    }

    fn switch(&mut self, now: Instant, from: usize, d: Datagram) {
        let since_start = now - self.t0;
        for (host, p) in self.ports.iter_mut().enumerate() {
            let for_it = match d.to {
                To::Host(a) => a.ip() == p.ip,
                To::Group(port) => host != from && p.listening.contains(&port),
            };
            if for_it {
                p.down.enter(now, since_start, d.clone());
            }
        }
    }

    pub fn up(&self, host: usize) -> LinkStats {
        self.ports[host].up.stats
    }

    pub fn down(&self, host: usize) -> LinkStats {
        self.ports[host].down.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network of `n` hosts (10.0.0.1 ...) with `up` links from host 0 and `down` links to the
    /// others, all of them listening on port 1.
    fn star(t0: Instant, n: usize, up: Link, down: Link) -> Network {
        let mut net = Network::new(t0);
        for i in 0..n {
            let ip = IpAddr::from([10, 0, 0, i as u8 + 1]);
            let host = net.add_host(ip, up, down, 1000 + i as u64);
            net.listen(host, 1);
        }
        net
    }

    /// Host 0 sends `len` bytes to the group.
    fn send(net: &mut Network, t: Instant, len: usize) {
        let from = "10.0.0.1:1".parse().unwrap();
        net.send(t, 0, from, To::Group(1), &vec![0; len]);
    }

    /// Every delivery until nothing is in flight, with its time since `t0`.
    fn run(net: &mut Network, t0: Instant) -> Vec<(Duration, usize)> {
        let mut got = Vec::new();
        while let Some(t) = net.poll_timeout() {
            got.extend(
                net.deliveries(t)
                    .into_iter()
                    .map(|(host, _)| (t - t0, host)),
            );
        }
        got
    }

    #[test]
    fn a_bottleneck_sends_at_its_rate_and_drops_the_tail() {
        let t0 = Instant::now();
        // 1000 bytes on the wire take 1 ms at 8 Mbit/s.
        let up = Link {
            bottleneck: Some(Bottleneck {
                bits_per_sec: 8_000_000,
                buffer: 4,
            }),
            ..Link::default()
        };
        let mut net = star(t0, 2, up, Link::default());
        for _ in 0..10 {
            send(&mut net, t0, 1000 - WIRE_OVERHEAD);
        }
        // Room again once the first is out.
        send(
            &mut net,
            t0 + Duration::from_millis(1),
            1000 - WIRE_OVERHEAD,
        );
        let ms = |m: u64| Duration::from_millis(m) + Duration::from_micros(500);
        assert_eq!(
            run(&mut net, t0),
            [(ms(1), 1), (ms(2), 1), (ms(3), 1), (ms(4), 1), (ms(5), 1)]
        );
        assert_eq!(
            net.up(0),
            LinkStats {
                datagrams: 11,
                lost: 0,
                overflowed: 6
            }
        );
    }

    #[test]
    fn losses_are_independent_from_link_to_link() {
        let t0 = Instant::now();
        let down = Link {
            loss: Loss::Random(0.3),
            ..Link::default()
        };
        let mut net = star(t0, 3, Link::default(), down);
        let mut both = 0;
        for i in 0..10_000 {
            let t = t0 + Duration::from_millis(i);
            send(&mut net, t, 100);
            let got: Vec<usize> = run(&mut net, t0).into_iter().map(|(_, h)| h).collect();
            both += got.is_empty() as u32;
        }
        for host in [1, 2] {
            let lost = net.down(host).lost as f64 / 10_000.0;
            assert!((0.28..0.32).contains(&lost), "host {host}: {lost}");
        }
        // Lost by both about 0.3 * 0.3 of the time, not 0.3.
        let both = both as f64 / 10_000.0;
        assert!((0.08..0.10).contains(&both), "{both}");
    }

    #[test]
    fn burst_loss_comes_in_bursts_of_the_expected_length() {
        let t0 = Instant::now();
        let down = Link {
            loss: Loss::Burst {
                enter: 0.01,
                leave: 0.25,
            },
            ..Link::default()
        };
        let mut net = star(t0, 2, Link::default(), down);
        let (mut lost, mut bursts, mut in_burst) = (0, 0, false);
        for i in 0..100_000 {
            let t = t0 + Duration::from_micros(10 * i);
            send(&mut net, t, 100);
            let got = !run(&mut net, t0).is_empty();
            lost += !got as u32;
            bursts += (!got && !in_burst) as u32;
            in_burst = !got;
        }
        // Stationary loss enter / (enter + leave) = 3.8%, mean burst 1 / leave = 4 datagrams.
        let rate = lost as f64 / 100_000.0;
        let mean = lost as f64 / bursts as f64;
        assert!((0.034..0.043).contains(&rate), "{rate}");
        assert!((3.6..4.4).contains(&mean), "{mean}");
    }
}
