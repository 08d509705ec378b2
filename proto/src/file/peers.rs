//! The sender's table of receivers, and how much it listens to each (PROTOCOL.md, "Bounds").
//!
//! Anyone on the LAN can send STATUS and NEED, so the table is bounded in all and per address, a
//! receiver is known only once it said hello (STATUS) and only from the address it said it from,
//! and its feedback passes a token bucket. How much repair one address's reports alone may ask for
//! is its *allowance*: it starts small, doubles with every report whose figures are plausible
//! (it lost at most `max_followed_loss` of what it saw) and drops to zero with every report that
//! is not (it claims to hold nothing of what it saw, or saw nothing of a burst sent to it). What
//! two addresses both ask for is sent in full: a lone liar costs a few percent of the file, never
//! a copy of it, and an honest class is never held back. (Unless no receiver in the session loses
//! 80% or less: then what they ask for is sent in full, up to a budget, `Sender::lagging_alone`.)

use crate::limit::TokenBucket;
use crate::wire::{FailReason, ReceiverState, printable};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How much the sender takes from receivers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Receivers known at once ...
    pub max_receivers: usize,
    /// ... and per source address (several `recv` on one PC, or a lab on loopback).
    pub max_per_address: usize,
    /// Feedback datagrams a receiver may send per second (honest ones send under 15) ...
    pub feedback_rate: f64,
    /// ... and at once.
    pub feedback_burst: f64,
    /// Repair symbols per block and round that one address's reports alone may ask for at first.
    pub initial_allowance: u32,
    /// A report of more loss than this is not followed (the receiver gets what is sent for
    /// others), and a receiver whose loss stays above it is left behind when the others are done.
    pub max_followed_loss: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_receivers: 1000,
            max_per_address: 8,
            feedback_rate: 40.0,
            feedback_burst: 40.0,
            initial_allowance: 32,
            max_followed_loss: 0.8,
        }
    }
}

/// What the sender knows of one receiver.
#[derive(Debug, Clone)]
pub struct ReceiverInfo {
    /// The id it chose.
    pub id: u32,
    /// Where its feedback comes from (and its ACK goes).
    pub addr: SocketAddr,
    /// Its name, without control characters.
    pub name: String,
    /// Where it says it is.
    pub state: ReceiverState,
    /// Why it failed, if it did.
    pub reason: FailReason,
    /// Blocks it says it has decoded.
    pub blocks_done: u32,
    /// Silent past the timeout: given up on.
    pub dropped: bool,
    /// When it first said hello.
    pub(crate) joined: Instant,
    pub(crate) last_heard: Instant,
    bucket: TokenBucket,
}

impl ReceiverInfo {
    /// Still expected to finish.
    pub(crate) fn pending(&self) -> bool {
        !self.dropped && matches!(self.state, ReceiverState::Hello | ReceiverState::Receiving)
    }
}

/// What the sender knows of one source address.
#[derive(Debug, Clone)]
struct Address {
    receivers: usize,
    allowance: u32,
    /// Smoothed loss from its reports; `None` before any report had figures to judge.
    loss: Option<f64>,
}

/// Why a datagram from a receiver is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unheard {
    /// The table is full, in all or for this address; or the id is another address's.
    Refused,
    /// No hello from this id at this address, or the id of a receiver since restarted.
    Unknown,
    /// Over its rate.
    RateLimited,
}

/// What a taken STATUS was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hello {
    /// From a receiver already known.
    Known,
    /// From a new receiver.
    New,
    /// From a new receiver that replaces `old`: the same PC's receiver, restarted.
    Restarted { old: u32 },
}

/// The receivers and their addresses.
#[derive(Debug)]
pub(crate) struct Peers {
    limits: Limits,
    receivers: BTreeMap<u32, ReceiverInfo>,
    addresses: HashMap<IpAddr, Address>,
    /// Receivers forgotten to make room.
    forgotten: u64,
    /// Ids of receivers replaced by a restart, newest last (at most `max_receivers`): what they
    /// still send is not a new hello.
    replaced: VecDeque<u32>,
    /// Receivers replaced by their restart.
    restarts: u64,
}

/// A receiver still heard from within this long is running: a new one of the same name on the
/// same PC is a second receiver there, not its restart. (Honest ones report every half second.)
const RESTART_SILENCE: Duration = Duration::from_secs(2);

/// Weight of a new report in the smoothed loss.
const LOSS_GAIN: f64 = 0.25;

impl Peers {
    pub(crate) fn new(limits: Limits) -> Self {
        Peers {
            limits,
            receivers: BTreeMap::new(),
            addresses: HashMap::new(),
            forgotten: 0,
            replaced: VecDeque::new(),
            restarts: 0,
        }
    }

    /// Receivers replaced by their restart.
    pub(crate) fn restarted(&self) -> u64 {
        self.restarts
    }

    /// The entry a new receiver `name` at `ip` replaces, if it is that PC's receiver restarted:
    /// one of the same (non-empty) name at the same IP address that took part but is not done
    /// (Receiving or Failed) and has stopped (failed, dropped, or silent for `RESTART_SILENCE`).
    /// Only the PC itself can do this: a student cannot evict another PC's entry, whose address
    /// is not theirs. Hello-only entries are left to `make_room`, as before: fake hellos from one
    /// address do not cycle through the table faster by sharing a name.
    fn restart_of(&self, now: Instant, ip: IpAddr, name: &str) -> Option<u32> {
        if name.is_empty() {
            return None;
        }
        self.receivers
            .values()
            .filter(|r| r.addr.ip() == ip && r.name == name)
            .filter(|r| match r.state {
                ReceiverState::Failed => true,
                ReceiverState::Receiving => {
                    r.dropped || now.saturating_duration_since(r.last_heard) >= RESTART_SILENCE
                }
                ReceiverState::Hello | ReceiverState::Done => false,
            })
            .max_by_key(|r| r.joined)
            .map(|r| r.id)
    }

    /// Forgets `old`, replaced by its restart.
    fn replace(&mut self, old: u32) {
        let Some(gone) = self.receivers.remove(&old) else {
            return;
        };
        if let Some(a) = self.addresses.get_mut(&gone.addr.ip()) {
            a.receivers -= 1;
        }
        if self.replaced.len() >= self.limits.max_receivers.max(1) {
            self.replaced.pop_front();
        }
        self.replaced.push_back(old);
        self.restarts += 1;
    }

    /// Receivers forgotten to make room for new ones.
    pub(crate) fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Makes room for a receiver at `ip` if the table is full (in all or for `ip`), by forgetting
    /// the longest silent of those that said hello, nothing else, and went silent (a PC that left
    /// at once, or a fake hello): false if there is none.
    fn make_room(&mut self, ip: IpAddr) -> bool {
        let here = self.addresses.get(&ip).map_or(0, |a| a.receivers);
        let full = self.receivers.len() >= self.limits.max_receivers;
        if !full && here < self.limits.max_per_address {
            return true;
        }
        let Some(victim) = self
            .receivers
            .values()
            .filter(|r| r.dropped && r.state == ReceiverState::Hello)
            .filter(|r| full || r.addr.ip() == ip)
            .min_by_key(|r| r.last_heard)
            .map(|r| r.id)
        else {
            return false;
        };
        let gone = self.receivers.remove(&victim).expect("just found");
        if let Some(a) = self.addresses.get_mut(&gone.addr.ip()) {
            a.receivers -= 1;
        }
        self.forgotten += 1;
        // Forgetting one for the table may still leave this address full, or the other way round.
        self.make_room(ip)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &ReceiverInfo> {
        self.receivers.values()
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut ReceiverInfo> {
        self.receivers.get_mut(&id)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    /// A STATUS from `id`: the receiver, and whether it is new. A new one is admitted if the table
    /// has room; an id already known from another address is not taken over. A new one that is
    /// a restart of a receiver on the same PC (`restart_of`) takes that one's place.
    pub(crate) fn hello(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: u32,
        name: &str,
    ) -> Result<(&mut ReceiverInfo, Hello), Unheard> {
        let new = !self.receivers.contains_key(&id);
        let mut heard = Hello::Known;
        if new {
            if self.replaced.contains(&id) {
                return Err(Unheard::Unknown);
            }
            heard = Hello::New;
            if let Some(old) = self.restart_of(now, from.ip(), &printable(name)) {
                self.replace(old);
                heard = Hello::Restarted { old };
            }
            if !self.make_room(from.ip()) {
                return Err(Unheard::Refused);
            }
            let limits = &self.limits;
            self.addresses
                .entry(from.ip())
                .or_insert(Address {
                    receivers: 0,
                    allowance: limits.initial_allowance,
                    loss: None,
                })
                .receivers += 1;
            self.receivers.insert(
                id,
                ReceiverInfo {
                    id,
                    addr: from,
                    name: String::new(),
                    state: ReceiverState::Hello,
                    reason: FailReason::None,
                    blocks_done: 0,
                    dropped: false,
                    joined: now,
                    last_heard: now,
                    bucket: TokenBucket::new(now, limits.feedback_rate, limits.feedback_burst),
                },
            );
        }
        let r = self.receivers.get_mut(&id).expect("present or just added");
        if r.addr.ip() != from.ip() {
            return Err(Unheard::Refused);
        }
        if !new && !r.bucket.take(now) {
            return Err(Unheard::RateLimited);
        }
        r.addr = from;
        r.last_heard = now;
        r.dropped = false;
        if r.name.is_empty() || r.name != name {
            r.name = printable(name);
        }
        Ok((r, heard))
    }

    /// A NEED from `id`: taken only from a receiver that said hello from this address, within
    /// its rate.
    pub(crate) fn known(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: u32,
    ) -> Result<&mut ReceiverInfo, Unheard> {
        let r = self.receivers.get_mut(&id).ok_or(Unheard::Unknown)?;
        if r.addr.ip() != from.ip() {
            return Err(Unheard::Unknown);
        }
        if !r.bucket.take(now) {
            return Err(Unheard::RateLimited);
        }
        r.last_heard = now;
        r.dropped = false;
        Ok(r)
    }

    /// A report from `ip` said it holds `held` of the `seen` symbols it could have: its allowance
    /// doubles if that is plausible and drops to zero if not.
    pub(crate) fn judge(&mut self, ip: IpAddr, held: u64, seen: u64, ceiling: u32) {
        let (Some(a), true) = (self.addresses.get_mut(&ip), seen > 0) else {
            return;
        };
        let loss = 1.0 - held.min(seen) as f64 / seen as f64;
        a.loss = Some(a.loss.map_or(loss, |l| l + LOSS_GAIN * (loss - l)));
        a.allowance = if loss <= self.limits.max_followed_loss {
            (a.allowance.saturating_mul(2))
                .max(self.limits.initial_allowance)
                .min(ceiling)
        } else {
            0
        };
    }

    /// Repair symbols per block that `ip`'s reports alone may ask for now.
    pub(crate) fn allowance(&self, ip: IpAddr) -> u32 {
        self.addresses.get(&ip).map_or(0, |a| a.allowance)
    }

    /// The smoothed loss `ip` reports, at most `cap`: what a burst for it is scaled by when its
    /// report says nothing of its loss (a block it collects again).
    pub(crate) fn loss(&self, ip: IpAddr, cap: f64) -> f64 {
        self.addresses
            .get(&ip)
            .and_then(|a| a.loss)
            .unwrap_or(0.0)
            .clamp(0.0, cap)
    }

    /// The smoothed loss `ip` reports, if a report had figures to judge.
    pub(crate) fn reported_loss(&self, ip: IpAddr) -> Option<f64> {
        self.addresses.get(&ip).and_then(|a| a.loss)
    }

    /// Whether `r` reports more loss than the sender follows: left behind once the others are done.
    pub(crate) fn lagging(&self, r: &ReceiverInfo) -> bool {
        self.addresses
            .get(&r.addr.ip())
            .and_then(|a| a.loss)
            .is_some_and(|l| l > self.limits.max_followed_loss)
    }

    /// Marks receivers silent past `timeout` as dropped; their ids. One receiving that a receiver
    /// of the same name at the same IP address joined after was that PC's receiver, restarted
    /// before it was silent long enough to be taken for a restart: it is forgotten, not dropped.
    pub(crate) fn drop_silent(&mut self, now: Instant, timeout: Duration) -> Vec<u32> {
        let silent: Vec<u32> = self
            .receivers
            .values()
            .filter(|r| r.pending() && now.saturating_duration_since(r.last_heard) >= timeout)
            .map(|r| r.id)
            .collect();
        let mut dropped = Vec::new();
        for id in silent {
            let r = &self.receivers[&id];
            let restarted = r.state == ReceiverState::Receiving
                && !r.name.is_empty()
                && self.receivers.values().any(|n| {
                    n.id != id
                        && n.addr.ip() == r.addr.ip()
                        && n.name == r.name
                        && n.joined > r.joined
                });
            if restarted {
                self.replace(id);
            } else if let Some(r) = self.receivers.get_mut(&id) {
                r.dropped = true;
                dropped.push(id);
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_table_is_bounded_in_all_and_per_address() {
        let t = Instant::now();
        let mut p = Peers::new(Limits {
            max_receivers: 5,
            max_per_address: 2,
            ..Limits::default()
        });
        assert!(p.hello(t, addr("10.0.0.9:1"), 1, "pc").unwrap().1 == Hello::New);
        assert!(p.hello(t, addr("10.0.0.9:2"), 2, "pc").unwrap().1 == Hello::New);
        // A third id from the same address, thousands more: refused.
        for id in 3..3000 {
            assert_eq!(
                p.hello(t, addr("10.0.0.9:3"), id, "fake").err(),
                Some(Unheard::Refused)
            );
        }
        for (i, id) in (10..13).enumerate() {
            let from = addr(&format!("10.0.1.{i}:1"));
            assert!(p.hello(t, from, id, "pc").is_ok());
        }
        assert_eq!(
            p.hello(t, addr("10.0.2.1:1"), 99, "pc").err(),
            Some(Unheard::Refused)
        );
        // An id is not taken over from another address, and NEED needs a hello first.
        assert_eq!(
            p.hello(t, addr("10.0.1.0:1"), 1, "pc").err(),
            Some(Unheard::Refused)
        );
        assert_eq!(
            p.known(t, addr("10.0.2.1:1"), 7).err(),
            Some(Unheard::Unknown)
        );
        assert_eq!(
            p.known(t, addr("10.0.1.0:5"), 1).err(),
            Some(Unheard::Unknown)
        );
        assert!(p.known(t, addr("10.0.0.9:5"), 1).is_ok());
    }

    /// Fake hellos from many addresses, sent once, used to fill the table for the whole session:
    /// the PCs that came later were refused.
    #[test]
    fn hellos_that_went_silent_make_room_and_receivers_taking_part_never_do() {
        let t = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut p = Peers::new(Limits {
            max_receivers: 4,
            max_per_address: 2,
            ..Limits::default()
        });
        // Two real PCs receiving, two fake hellos.
        for (id, from) in [(1, "10.0.0.1:9"), (2, "10.0.0.2:9")] {
            let (r, _) = p.hello(t, addr(from), id, "pc").unwrap();
            r.state = ReceiverState::Receiving;
        }
        p.hello(t, addr("10.0.0.66:9"), 66, "fake").unwrap();
        p.hello(t, addr("10.0.0.67:9"), 67, "fake").unwrap();
        assert_eq!(
            p.hello(t, addr("10.0.0.3:9"), 3, "pc").err(),
            Some(Unheard::Refused),
            "no room while the fakes are within the timeout"
        );
        // Everyone went quiet a while (the real PCs too: a long decode, say).
        let later = t + timeout;
        assert_eq!(p.drop_silent(later, timeout).len(), 4);
        assert!(p.hello(later, addr("10.0.0.3:9"), 3, "pc").unwrap().1 == Hello::New);
        assert!(p.hello(later, addr("10.0.0.4:9"), 4, "pc").unwrap().1 == Hello::New);
        assert_eq!(p.forgotten(), 2);
        assert_eq!(
            p.hello(later, addr("10.0.0.5:9"), 5, "pc").err(),
            Some(Unheard::Refused),
            "receivers that took part are kept, silent or not"
        );
        let ids: Vec<u32> = p.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        // And per address: a silent hello-only id makes room for another at its address.
        let mut p = Peers::new(Limits {
            max_per_address: 1,
            ..Limits::default()
        });
        p.hello(t, addr("10.0.0.9:1"), 1, "pc").unwrap();
        p.drop_silent(later, timeout);
        assert!(p.hello(later, addr("10.0.0.9:2"), 2, "pc").is_ok());
        assert!(p.hello(later, addr("10.0.0.9:3"), 3, "pc").is_err());
    }

    #[test]
    fn a_flood_from_a_known_receiver_is_rate_limited_and_names_are_printable() {
        let t = Instant::now();
        let mut p = Peers::new(Limits::default());
        let from = addr("10.0.0.2:9");
        let (r, _) = p.hello(t, from, 1, "pc\u{1b}[2J\u{7}evil\u{202e}").unwrap();
        assert_eq!(r.name, "pc[2Jevil");
        let taken = (0..1000).filter(|_| p.known(t, from, 1).is_ok()).count();
        assert!(taken <= 40, "{taken}");
        let later = t + Duration::from_secs(1);
        assert!(p.known(later, from, 1).is_ok());
    }

    #[test]
    fn allowance_grows_with_plausible_reports_and_vanishes_with_absurd_ones() {
        let t = Instant::now();
        let mut p = Peers::new(Limits::default());
        let (honest, liar) = (addr("10.0.0.2:9"), addr("10.0.0.3:9"));
        p.hello(t, honest, 1, "pc").unwrap();
        p.hello(t, liar, 2, "fake").unwrap();
        assert_eq!(p.allowance(honest.ip()), 32);
        // 5% loss: doubles each round up to the ceiling; 60%, which a class over a slow link may
        // all see, is still followed.
        for want in [64, 128, 256, 512, 1024, 1025] {
            p.judge(honest.ip(), 950, 1000, 1025);
            assert_eq!(p.allowance(honest.ip()), want);
        }
        p.judge(honest.ip(), 400, 1000, 1025);
        assert_eq!(p.allowance(honest.ip()), 1025);
        let get = |p: &Peers, id| p.iter().find(|r| r.id == id).cloned().unwrap();
        assert!(!p.lagging(&get(&p, 1)));
        // Claims to hold nothing of what it saw: no allowance, and left behind.
        for _ in 0..3 {
            p.judge(liar.ip(), 0, 1000, 1025);
        }
        assert_eq!(p.allowance(liar.ip()), 0);
        assert!(p.lagging(&get(&p, 2)));
    }

    /// A student who restarts `recv` was counted twice (`pc2 failed`, `pc2 done`): the new
    /// receiver of the same name at the same address takes the stopped one's place, and what
    /// the old id still sends is not a hello any more.
    #[test]
    fn a_receiver_restarted_on_the_same_pc_replaces_its_old_entry() {
        let t = Instant::now();
        let mut p = Peers::new(Limits::default());
        let (pc1, pc2) = (addr("10.0.0.1:5000"), addr("10.0.0.2:5000"));
        p.hello(t, pc1, 1, "pc1").unwrap();
        let (r, _) = p.hello(t, pc2, 2, "pc2").unwrap();
        r.state = ReceiverState::Failed;
        r.reason = FailReason::Interrupted;
        // pc2's student runs `recv` again: a new id, a new port.
        let later = t + Duration::from_millis(300);
        let (r, heard) = p.hello(later, addr("10.0.0.2:5001"), 3, "pc2").unwrap();
        assert_eq!(heard, Hello::Restarted { old: 2 });
        assert_eq!((r.id, r.state), (3, ReceiverState::Hello));
        let ids: Vec<u32> = p.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(p.restarted(), 1);
        // The old id's late datagrams: unknown, not a new receiver.
        assert_eq!(p.hello(later, pc2, 2, "pc2").err(), Some(Unheard::Unknown));
        assert_eq!(p.known(later, pc2, 2).err(), Some(Unheard::Unknown));
        // The address still holds one receiver: a full address is not filled by restarts.
        assert_eq!(p.addresses[&pc2.ip()].receivers, 1);
    }

    #[test]
    fn a_restart_replaces_only_a_stopped_entry_of_its_own_name_at_its_own_address() {
        let t = Instant::now();
        let mut p = Peers::new(Limits::default());
        let victim = addr("10.0.0.5:5000");
        let (r, _) = p.hello(t, victim, 5, "pc5").unwrap();
        r.state = ReceiverState::Failed;
        let later = t + Duration::from_secs(10);
        // Another PC claims pc5's name: a new receiver, pc5's entry stays.
        let (_, heard) = p.hello(later, addr("10.0.0.66:5000"), 66, "pc5").unwrap();
        assert_eq!(heard, Hello::New);
        // No name, or another name, at pc5's address: new receivers too.
        assert_eq!(p.hello(later, victim, 7, "").unwrap().1, Hello::New);
        assert_eq!(p.hello(later, victim, 8, "pc5b").unwrap().1, Hello::New);
        // A done entry is kept: it has the file.
        let (r, _) = p.hello(t, addr("10.0.0.9:5000"), 9, "pc9").unwrap();
        r.state = ReceiverState::Done;
        assert_eq!(
            p.hello(later, addr("10.0.0.9:5001"), 10, "pc9").unwrap().1,
            Hello::New
        );
        // A receiver still heard from is running: a second one of its name there is not its restart.
        let (r, _) = p.hello(t, addr("10.0.0.4:5000"), 4, "lab").unwrap();
        r.state = ReceiverState::Receiving;
        let soon = t + Duration::from_millis(500);
        assert_eq!(
            p.hello(soon, addr("10.0.0.4:5001"), 11, "lab").unwrap().1,
            Hello::New
        );
        // Nor is a hello-only entry's (a fake hello, for one, is left to `make_room`).
        p.hello(t, addr("10.0.0.8:5000"), 12, "pc8").unwrap();
        assert_eq!(
            p.hello(later, addr("10.0.0.8:5001"), 13, "pc8").unwrap().1,
            Hello::New
        );
        assert_eq!(p.iter().count(), 10);
        assert_eq!(p.restarted(), 0);
    }

    /// Killed outright (no final STATUS) and started again at once, before the old one was silent
    /// long enough to be taken for a restart: when the old one would be dropped it is forgotten.
    #[test]
    fn a_receiver_killed_and_restarted_at_once_is_forgotten_rather_than_dropped() {
        let t = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut p = Peers::new(Limits::default());
        let (r, _) = p.hello(t, addr("10.0.0.2:5000"), 2, "pc2").unwrap();
        r.state = ReceiverState::Receiving;
        let soon = t + Duration::from_millis(800);
        let (r, heard) = p.hello(soon, addr("10.0.0.2:5001"), 3, "pc2").unwrap();
        assert_eq!(heard, Hello::New);
        r.state = ReceiverState::Receiving;
        // The new one keeps reporting; the old one never does again.
        let later = t + timeout;
        p.known(later, addr("10.0.0.2:5001"), 3).unwrap();
        assert_eq!(p.drop_silent(later, timeout), Vec::<u32>::new());
        let ids: Vec<u32> = p.iter().map(|r| r.id).collect();
        assert_eq!(ids, [3]);
        assert_eq!(p.restarted(), 1);
    }
}
