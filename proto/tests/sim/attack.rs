//! A student's PC turned against the class: it listens to the group, and sends what a curious,
//! capable student would — forged DATA ahead of the real symbols, mutated copies of real DATA,
//! forged END, ANNOUNCE, ACK and DIGESTS, replays of signed packets from an earlier lesson, a
//! session of its own announced before the teacher's, and a flood of fake receivers with maximal
//! needs. With `spoof`, its datagrams carry the teacher's address as their source, as a student
//! with root on a PC can send them.

use crate::class::{SEND_PORT, Session, Source, TEACHER, UNIX_AT_T0};
use crate::net::{Datagram, Network, To};
use edm_cast_proto::auth::Seal;
use edm_cast_proto::rng::Rng;
use edm_cast_proto::wire::{
    Ack, Announce, Digests, End, EndReason, FailReason, FileDigests, Need, NeedEntry, NeedFlags,
    Packet, ReceiverState, Status,
};
use edm_cast_proto::{SecretKey, SenderConfig};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How far ahead of the symbol just seen a forged one is sent: it arrives before the real one.
const LEAD: u32 = 24;
/// Forged control, replays and floods go out this often.
const ROUND: Duration = Duration::from_millis(20);

/// What the attacker does.
#[derive(Clone, Default)]
pub struct Attack {
    /// Sends with the teacher's address as the source.
    pub spoof: bool,
    /// Forges DATA for this share of all (block, ESI) pairs of the teacher's session, each ahead
    /// of the real symbol.
    pub forge_data: f64,
    /// Sends a copy of this share of the real DATA it sees, mutated: a byte of the symbol, the
    /// ESI or the block number changed.
    pub mutate_data: f64,
    /// Forges END (aborted), ANNOUNCE (another size and digests), ACK (to every student) and
    /// DIGESTS of the teacher's session, each unsigned and signed with its own key.
    pub forge_control: bool,
    /// Replays these datagrams (recorded in an earlier lesson) every round.
    pub replay: Vec<Vec<u8>>,
    /// Runs a session of its own, signed with its own key, from the start.
    pub rogue: Option<(SenderConfig, Vec<u8>)>,
    /// Says hello as this many fake receivers a round (STATUS), and asks, as each, for every block
    /// the teacher has sent in full (NEED, maximal needs), plus this many random datagrams.
    pub flood: Option<(u32, u32)>,
}

/// What it has sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    pub forged_data: u64,
    pub mutated_data: u64,
    pub control: u64,
    pub replays: u64,
    pub flood: u64,
}

pub struct Attacker {
    host: usize,
    ip: Ipv4Addr,
    attack: Attack,
    key: SecretKey,
    /// The students' receiver sockets and ids (sniffed, say).
    students: Vec<(SocketAddr, u32)>,
    rng: Rng,
    /// The teacher's session, once heard: id, symbol size, K, where its feedback goes, and the
    /// highest block sent so far.
    teacher: Option<(u32, u16, u16, SocketAddr, u32)>,
    rogue: Option<Session>,
    /// Datagrams to send at the next poll, due since this time.
    queue: Vec<(To, Vec<u8>)>,
    due: Option<Instant>,
    created: Instant,
    next_round: Instant,
    pub sent: Sent,
}

impl Attacker {
    pub fn new(
        host: usize,
        ip: Ipv4Addr,
        attack: Attack,
        students: Vec<(SocketAddr, u32)>,
        now: Instant,
    ) -> Self {
        let rogue = attack.rogue.clone().map(|(cfg, file)| {
            let content: Rc<[u8]> = file.into();
            Session::new(cfg, content, Source::File, SEND_PORT, ip, now)
        });
        Attacker {
            host,
            ip,
            key: SecretKey::from_seed([0xBA; 32]),
            students,
            rng: Rng::new(0xBAD + ip.octets()[3] as u64),
            teacher: None,
            rogue,
            queue: Vec::new(),
            due: None,
            created: now,
            next_round: now,
            sent: Sent::default(),
            attack,
        }
    }

    /// Where its datagrams say they come from.
    fn source(&self) -> SocketAddr {
        let ip = if self.attack.spoof { TEACHER } else { self.ip };
        SocketAddr::new(ip.into(), SEND_PORT)
    }

    /// Whether (block, esi) is among the pairs it forges.
    fn forges(&self, block: u32, esi: u32) -> bool {
        let mut r = Rng::new(((block as u64) << 32 | esi as u64) ^ 0x5EED);
        r.unit() < self.attack.forge_data
    }

    pub fn deliver(&mut self, now: Instant, d: Datagram) {
        self.react(&d);
        if !self.queue.is_empty() {
            self.due = Some(now);
        }
    }

    /// What it does when it sees the teacher's datagram `d`.
    fn react(&mut self, d: &Datagram) {
        if d.from.ip() != std::net::IpAddr::from(TEACHER) {
            return;
        }
        let Ok(dg) = Packet::parse(&d.bytes) else {
            return;
        };
        match dg.packet {
            Packet::Announce(a) => {
                let feedback = a.feedback.resolve(d.from);
                let high = self.teacher.map_or(0, |t| t.4);
                self.teacher = Some((dg.session, a.symbol_size, a.block_symbols, feedback, high));
            }
            Packet::Data(data) => {
                let Some(t) = self.teacher.as_mut() else {
                    return;
                };
                t.4 = t.4.max(data.block);
                let (session, size) = (t.0, t.1 as usize);
                let esi = data.esi + LEAD;
                if self.forges(data.block, esi) {
                    let symbol: Vec<u8> = (0..size).map(|_| self.rng.next_u64() as u8).collect();
                    let v = Packet::Data(edm_cast_proto::wire::Data {
                        block: data.block,
                        esi,
                        symbol: &symbol,
                    })
                    .to_vec(session);
                    self.queue.push((To::Group(SEND_PORT), v));
                    self.sent.forged_data += 1;
                }
                if self.rng.unit() < self.attack.mutate_data {
                    let mut v = d.bytes.to_vec();
                    let at = match self.rng.next_u64() % 3 {
                        // A byte of the symbol, of the ESI, of the block number.
                        0 => 16 + (self.rng.next_u64() as usize % (v.len() - 16)),
                        1 => 15,
                        _ => 11,
                    };
                    v[at] ^= 1 + (self.rng.next_u64() % 255) as u8;
                    self.queue.push((To::Group(SEND_PORT), v));
                    self.sent.mutated_data += 1;
                }
            }
            _ => {}
        }
    }

    pub fn wake(&self) -> Option<Instant> {
        let rogue = self.rogue.as_ref().and_then(Session::wake);
        let round = self.periodic().then_some(self.next_round);
        [rogue, round, self.due].into_iter().flatten().min()
    }

    fn periodic(&self) -> bool {
        let a = &self.attack;
        a.forge_control || !a.replay.is_empty() || a.flood.is_some()
    }

    pub fn poll(&mut self, now: Instant, net: &mut Network) {
        if let Some(r) = &mut self.rogue {
            r.poll(now, net, self.host, Duration::from_micros(121));
        }
        if self.periodic() && now >= self.next_round {
            self.next_round = now + ROUND;
            self.round(now);
        }
        self.due = None;
        let from = self.source();
        for (to, bytes) in std::mem::take(&mut self.queue) {
            net.send(now, self.host, from, to, &bytes);
        }
    }

    /// Forged control, replays and a flood round.
    fn round(&mut self, now: Instant) {
        // Signed at the class's time, with a key nobody trusts.
        let time_ms = UNIX_AT_T0 + (now - self.created).as_millis() as u64;
        if self.attack.forge_control
            && let Some((session, _, k, _, _)) = self.teacher
        {
            let fake = FileDigests {
                md5: [0xEE; 16],
                sha256: [0xEE; 32],
            };
            let mut control = vec![
                (
                    To::Group(SEND_PORT),
                    Packet::End(End {
                        reason: EndReason::Aborted,
                    }),
                ),
                (
                    To::Group(SEND_PORT),
                    Packet::Announce(Announce {
                        file_size: Some(12345),
                        digests: Some(fake),
                        padded: false,
                        encrypted: false,
                        sync: false,
                        staggered: true,
                        symbol_size: 256,
                        block_symbols: k,
                        interleave: 8,
                        sent_blocks: 0,
                        feedback: edm_cast_proto::wire::FeedbackAddr::Source { port: SEND_PORT },
                        name: "payload.bin".into(),
                    }),
                ),
                (
                    To::Group(SEND_PORT),
                    Packet::Digests(Digests {
                        first_block: 0,
                        digests: vec![[0xEE; 16]; 8],
                    }),
                ),
            ];
            for &(addr, id) in &self.students {
                control.push((To::Host(addr), Packet::Ack(Ack { receiver: id })));
            }
            for (to, p) in control {
                for seal in [Seal::Unsigned, Seal::Signed(&self.key, time_ms)] {
                    let mut v = Vec::new();
                    p.write_sealed(session, seal, &mut v);
                    self.queue.push((to, v));
                    self.sent.control += 1;
                }
            }
        }
        for r in &self.attack.replay {
            self.queue.push((To::Group(SEND_PORT), r.clone()));
            self.sent.replays += 1;
        }
        if let (Some((ids, spray)), Some((session, _, k, feedback, high))) =
            (self.attack.flood, self.teacher)
        {
            for _ in 0..ids {
                let id = self.rng.next_u64() as u32;
                let hello = Packet::Status(Status {
                    receiver: id,
                    state: ReceiverState::Hello,
                    reason: FailReason::None,
                    blocks_done: 0,
                    name: "\u{1b}[2Jfake".into(),
                    echo: None,
                });
                let need = Packet::Need(Need {
                    receiver: id,
                    entries: (0..high.min(128))
                        .map(|block| NeedEntry {
                            block,
                            need: k + 1,
                            seen: 0,
                            flags: NeedFlags::default(),
                        })
                        .collect(),
                });
                for p in [hello, need] {
                    self.queue.push((To::Host(feedback), p.to_vec(session)));
                    self.sent.flood += 1;
                }
            }
            for _ in 0..spray {
                let len = self.rng.next_u64() as usize % 1500;
                let junk: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
                let to = if self.rng.unit() < 0.5 {
                    To::Host(feedback)
                } else {
                    To::Group(SEND_PORT)
                };
                self.queue.push((to, junk));
                self.sent.flood += 1;
            }
        }
    }
}
