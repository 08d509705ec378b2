//! The receiver's state machine (PROTOCOL.md, "Receiver rules").
//!
//! It joins the first session it hears announced (with a trust set: the first one signed by a
//! trusted key), collects symbols per block, hands a block to the shell for decoding as soon as it
//! holds enough and knows the block's digest, reports what it lacks at a bounded, jittered rate,
//! and says when it is done. A block that decodes to the wrong digest is collected again from
//! symbols whose hashes the sender published. Memory is bounded: at most `buffered_blocks` blocks
//! (and at most `memory` bytes of them) are held in full; beyond that the least recently touched
//! block's source symbols are spilled to the output file (where they belong anyway) and read back
//! when the block is decoded.

use super::codec::{CheckJob, DecodeError, DecodeJob, SymbolSet, cheap_decode_at};
use super::crypt::{self, SessionKey};
use super::layout::{Layout, MAX_BLOCKS};
use crate::auth::{KeyId, SecretKey, Trust};
use crate::counters::Counters;
use crate::rng::Rng;
use crate::wire::{
    Announce, BlockDigest, DATA_OVERHEAD, Data, Digests, EndReason, FailReason, FileDigests,
    Hashes, Keys, MAX_NEED_ENTRIES, Need, NeedEntry, NeedFlags, Pace, PaceEcho, Packet,
    ReceiverState, Status, SymbolHash, symbol_hash,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a receiver receives.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Random id, unique among the session's receivers.
    pub id: u32,
    /// Shown on the sender's display.
    pub name: String,
    /// Seeds the report jitter.
    pub seed: u64,
    /// Join only this session, if set.
    pub session: Option<u32>,
    /// Never join these (sessions already received, or refused, when staying for more).
    pub skip_sessions: Vec<u32>,
    /// Mean time between NEED reports; each is jittered by +-50%.
    pub report_interval: Duration,
    /// Time between STATUS reports.
    pub status_interval: Duration,
    /// The sender is taken to be gone after this long without a packet of the session.
    pub sender_timeout: Duration,
    /// Blocks held in memory at once ...
    pub buffered_blocks: usize,
    /// ... and bytes of them at most (a session of huge blocks holds fewer).
    pub memory: usize,
    /// After the file is verified, how long to repeat "done" while waiting for the sender's ACK.
    pub finish_linger: Duration,
    /// Take only sessions signed by one of these keys, if set; otherwise any (and say so).
    pub trust: Option<Trust>,
    /// This PC's own key: opens the session key of an encrypted session sent to it.
    pub key: Option<SecretKey>,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            id: 1,
            name: String::new(),
            seed: 1,
            session: None,
            skip_sessions: Vec::new(),
            report_interval: Duration::from_millis(150),
            status_interval: Duration::from_millis(500),
            sender_timeout: Duration::from_secs(10),
            buffered_blocks: 16,
            memory: 64 << 20,
            finish_linger: Duration::from_secs(3),
            trust: None,
            key: None,
        }
    }
}

/// What the receiver learned from the announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session id.
    pub session: u32,
    /// As announced: the shell must reduce it to a plain file name.
    pub name: String,
    /// `None` while the sender's source is still growing.
    pub size: Option<u64>,
    /// `None` until the sender has the whole source.
    pub digests: Option<FileDigests>,
    /// Bytes in a full block (T·K).
    pub block_bytes: u64,
    /// Where the session comes from.
    pub sender: SocketAddr,
    /// The trusted key that signed its announce, if the receiver has a trust set.
    pub signed_by: Option<KeyId>,
    /// Its symbols are sealed.
    pub encrypted: bool,
    /// A sync session (5.9): say what is already here (`hold`, `known`) before asking for data.
    pub sync: bool,
    /// How the file is cut into blocks (what a kept block number means, `resume`).
    pub layout: Layout,
}

/// Why the sender finished without this receiver, from what reached it.
fn left_behind(received: Option<u8>) -> String {
    match received {
        // Under half of the stream: no class waits for that (PROTOCOL.md 5.6).
        Some(p) if p < 50 => format!(
            "only {p}% of what it sent reached this PC: its link or switch port is too slow \
             or too lossy for the class to wait for; what it got is kept for a re-run \
             (`edm-cast send --resume-from` on the teacher's PC)"
        ),
        _ => "it was dropped as unresponsive, lost too much or was too slow to be followed, or \
              joined too late"
            .into(),
    }
}

/// Why a session failed for this receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// Nothing heard for the sender timeout.
    #[error("the sender went silent: nothing heard from it for {0} s")]
    SenderGone(u64),
    /// END (aborted).
    #[error("the sender aborted the session")]
    Aborted,
    /// END (complete) before this receiver had the file.
    #[error("the sender finished without this receiver ({})", left_behind(*.received))]
    LeftBehind {
        /// Percent of the DATA sent that reached it, at the last PACE (congestion control on).
        received: Option<u8>,
    },
    /// An encrypted session, and no key of its own to open it with.
    #[error("the session is encrypted: give this PC's key with --key (made by `edm-cast keygen`)")]
    NoKey,
    /// An encrypted session not sent to this PC's key.
    #[error(
        "the session is encrypted for other PCs: this PC's key is not among those it was sent to"
    )]
    NotListed,
    /// A block decoded from symbols that all matched their hashes, and still not its digest.
    #[error(
        "block {0} does not match its digest though every symbol matched its hash: the digests or hashes are not the sender's (trust its key with --trust) or the file changed at the sender"
    )]
    Unverifiable(u32),
}

/// What the receiver tells the shell.
#[derive(Debug)]
pub enum ReceiverEvent {
    /// A session was joined: the shell prepares the output file.
    Joined(SessionInfo),
    /// Write `data` at `offset` of the output file (spilled source symbols).
    Store {
        /// Where.
        offset: u64,
        /// What.
        data: Vec<u8>,
    },
    /// Run the job (off the network path), write its result at `job.offset`, then call
    /// `handle_decoded`.
    Decode(DecodeJob),
    /// Read the kept block at `job.offset` (`job.len` bytes), run the job on it (off the network
    /// path), then call `handle_checked` (after `resume`).
    Check(CheckJob),
    /// Every block is decoded: the shell cuts the file to `size`, checks its digests, and calls
    /// `verified`.
    Complete {
        /// The file's size.
        size: u64,
        /// What the whole file must hash to.
        digests: FileDigests,
    },
    /// The sender acknowledged (or the linger ran out): the receiver is done.
    Finished,
    /// The session failed for this receiver.
    Failed(ReceiveError),
}

/// Counts for the shell and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Symbols taken.
    pub symbols: u64,
    /// Decodes that needed more symbols.
    pub decode_failures: u64,
    /// Blocks that decoded to the wrong digest and were collected again.
    pub forged_blocks: u64,
    /// Blocks whose source symbols went to the file before decoding.
    pub spilled_blocks: u64,
    /// Symbols dropped to keep memory bounded (asked for again later).
    pub forgotten_symbols: u64,
    /// NEED reports sent.
    pub need_reports: u64,
    /// Blocks kept from an earlier run (`resume`) that matched their digests ...
    pub resumed_blocks: u64,
    /// ... and those that did not, collected again.
    pub resume_rejected: u64,
    /// Datagrams dropped, by why.
    pub dropped: Counters,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Listening,
    Receiving,
    /// All blocks decoded; the shell is checking the whole file.
    Verifying,
    Finishing {
        until: Instant,
    },
    Finished,
    Failed,
}

/// Hashes kept for a block collected symbol by symbol, besides those of the symbols it holds: of
/// the last symbols sent before the list was made, which it may yet get.
fn max_hashes(k: u32) -> usize {
    5 * (k as usize + 64)
}

/// Separate stretches of ESIs a block's hash lists may have covered, lost packets between them.
const MAX_HASH_RANGES: usize = 64;

/// The symbols of a block not yet decoded.
#[derive(Debug, Default)]
struct Pending {
    /// K*T bytes holding the source symbols in `have`; `None` before the first source symbol, after
    /// a spill, or while a decode job holds it.
    buf: Option<Vec<u8>>,
    spilled: bool,
    have: Option<SymbolSet>,
    /// Repair symbols, and source symbols that came while `buf` was away.
    extra: Vec<(u32, Vec<u8>)>,
    extra_esis: HashSet<u32>,
    extra_source: u32,
    /// One past the highest ESI seen.
    seen: u32,
    /// Symbols to hold before the next decode attempt.
    decode_at: u32,
    touched: u64,
    /// The block failed its digest: the published hashes of the sender's symbols (of those it
    /// holds, and of those it may yet get), which the symbols it held then are checked against
    /// in the next decode job, and any new one before it is taken ...
    verify: Option<HashMap<u32, SymbolHash>>,
    /// ... the end of the list they are part of (`Hashes::sent`: they come for ESIs 0.. on, and
    /// a symbol above it was not the sender's when they were made), the ESIs the HASHES heard
    /// covered (sorted, merged, half-open), ...
    hashes_upto: u32,
    covered: Vec<(u32, u32)>,
    /// ... and the symbols that came before their hash.
    waiting: Vec<(u32, Vec<u8>)>,
}

impl Pending {
    fn have_len(&self) -> u32 {
        self.have.as_ref().map_or(0, SymbolSet::len)
    }

    fn count(&self) -> u32 {
        self.have_len() + self.extra.len() as u32
    }

    fn all_source(&self, k: u32) -> bool {
        self.have_len() + self.extra_source == k
    }

    /// Whether a decode may succeed now: enough symbols, and for a block being checked symbol by
    /// symbol, the hashes of every symbol the sender had sent when it published them.
    fn ready(&self, k: u32) -> bool {
        (self.all_source(k) || self.count() >= self.decode_at) && !self.lacks_hashes()
    }

    /// A block being checked symbol by symbol, short of some hashes of the list it was sent (or
    /// of any list yet).
    fn lacks_hashes(&self) -> bool {
        self.verify.is_some()
            && (self.hashes_upto == 0 || self.covered.first() != Some(&(0, self.hashes_upto)))
    }

    /// Whether a HASHES heard covered `esi`: a symbol with no hash kept for it is then not one
    /// the sender had sent (or one this block no longer wants).
    fn hash_covers(&self, esi: u32) -> bool {
        self.covered.iter().any(|&(a, b)| a <= esi && esi < b)
    }

    /// Adds `a..b` to the covered ESIs; false if that would make too many separate stretches.
    fn cover(&mut self, a: u32, b: u32) -> bool {
        let mut ranges = std::mem::take(&mut self.covered);
        ranges.push((a, b));
        ranges.sort_unstable();
        for (a, b) in ranges {
            match self.covered.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => self.covered.push((a, b)),
            }
        }
        self.covered.len() <= MAX_HASH_RANGES
    }

    /// Whether the block holds (or keeps waiting) a symbol with this ESI.
    fn holds(&self, esi: u32, k: u32) -> bool {
        (esi < k && self.have.as_ref().is_some_and(|h| h.contains(esi)))
            || self.extra_esis.contains(&esi)
            || self.waiting.iter().any(|(e, _)| *e == esi)
    }

    /// Takes back what a decode job held: its symbols (fewer, if it dropped some it could not
    /// verify) beside those that came meanwhile.
    fn restore(&mut self, job: &mut DecodeJob, k: u32) {
        let late = std::mem::take(&mut self.extra);
        self.extra = std::mem::take(&mut job.extra);
        self.extra.extend(late);
        self.extra_esis = self.extra.iter().map(|(esi, _)| *esi).collect();
        self.extra_source = self.extra.iter().filter(|(esi, _)| *esi < k).count() as u32;
        self.have = Some(job.have.clone());
        self.buf = job.source.take();
        self.spilled = false;
    }
}

#[derive(Debug)]
enum BlockRx {
    Empty,
    /// In the file from an earlier run (`resume`), not checked yet: waits for its digest.
    Kept,
    /// Kept, and being checked against its digest (a `Check` job is out).
    Checking,
    Pending(Box<Pending>),
    Decoding(Box<Pending>),
    Done,
}

struct Session {
    id: u32,
    announce: Announce,
    layout: Layout,
    sender: IpAddr,
    key_id: Option<KeyId>,
    feedback: SocketAddr,
    blocks: Vec<BlockRx>,
    digests: Vec<Option<BlockDigest>>,
    done: u32,
    /// Every block below this one is done.
    low: u32,
    max_block_seen: Option<u32>,
    sent_blocks: u32,
    last_heard: Instant,
    next_report: Instant,
    next_status: Instant,
    hello_due: bool,
    /// Blocks whose `buf` is in memory, and how many may be.
    in_memory: Vec<u32>,
    buffered: usize,
    /// Symbols held in `extra` lists, across blocks (not counting those lent to decode jobs).
    extra_held: usize,
    tick: u64,
    sender_ended: bool,
    session_key: Option<SessionKey>,
    /// KEYS parts seen without this PC's key.
    key_parts: Vec<bool>,
    /// DATA datagrams of this session received (congestion control counts them against PACE).
    data_received: u64,
    /// The last PACE, the count above when it came, and when: echoed in the next STATUS.
    pace: Option<(Pace, u64, Instant)>,
    /// DATA sent and received at the last PACE: what share of the stream reached it.
    paced: Option<(u64, u64)>,
    /// While set (`hold`): only the stream's first this many bytes are asked for, and their
    /// source symbols go to the file as they come, until the shell says what it has (`known`).
    hold: Option<u64>,
    /// Blocks with enough symbols to decode whose first pass is still bringing more: decoded
    /// once it has brought `codec::cheap_decode_at` of them, or is over (6.4).
    deferred: Vec<u32>,
}

impl Session {
    /// Whether the sender has finished the block's first pass, so a shortfall is real loss: it
    /// said so, or a block the pass takes only after this one's end has been seen (6.3).
    fn passed(&self, block: u32) -> bool {
        let w = self.announce.interleave as u32;
        let later = |m: u32| match self.announce.staggered {
            // At most W blocks are in the pass, and they join in order.
            true => m >= block.saturating_add(w),
            // Aligned windows that never overlap.
            false => block / w < m / w,
        };
        block < self.sent_blocks || self.max_block_seen.is_some_and(later)
    }

    /// Whether the bytes of `block` within the first `prefix` are in the output file: the block
    /// is done, or every source symbol of them is held (and was stored, `hold`).
    fn prefix_held(&self, block: u32, prefix: u64) -> bool {
        match self.blocks.get(block as usize) {
            Some(BlockRx::Done) => true,
            Some(BlockRx::Pending(p)) => (0..prefix_symbols(&self.layout, block, prefix))
                .all(|esi| p.have.as_ref().is_some_and(|h| h.contains(esi))),
            _ => false,
        }
    }

    fn digest(&self, block: u32) -> Option<BlockDigest> {
        self.digests.get(block as usize).copied().flatten()
    }

    /// Blocks a datagram may name: all of them once the size is known; while it is not, a few
    /// windows past what was announced or seen, no further, so a hostile packet cannot make the
    /// receiver allocate millions of slots.
    fn limit(&self) -> u32 {
        match self.layout.file_size() {
            Some(_) => self.layout.num_blocks(),
            None => {
                let ahead = self
                    .max_block_seen
                    .map_or(0, |m| m + 1)
                    .max(self.sent_blocks);
                ahead
                    .saturating_add(4 * self.announce.interleave as u32)
                    .min(MAX_BLOCKS)
            }
        }
    }
}

/// The receiving side of a file session.
///
/// The contract, as in quinn-proto (time is passed in; nothing here blocks or touches a socket):
/// - **Getters**: `stats`, `progress`, `is_finished`, `prefix_ready`.
/// - **Inputs**: `handle_datagram(now, from, bytes)` for everything from the group socket and the
///   feedback socket; `handle_timeout(now)` once `poll_timeout` has passed; `handle_decoded(now,
///   outcome)` after each `Decode` job.
/// - **Commands**: `verified(now, ok)` after `Complete`; `already_complete(now)` when the file
///   was found in the output folder; `resume(now, blocks)` when the output file already holds
///   blocks from an earlier run (each is checked, `Check` then `handle_checked(now, block, ok)`,
///   before it counts); in a sync session, `hold(now, prefix)` until the shell has found what is
///   already here and says so with `known(now, blocks)`; `fail(reason)` when the shell gives up;
///   `recycle(buf)` hands back a block's bytes once written, to hold the next block's symbols.
/// - **Outputs**: `poll_transmit(now, buf)` until `None` (feedback to the sender),
///   `poll_timeout()`, `poll_event()`.
pub struct Receiver {
    cfg: ReceiverConfig,
    rng: Rng,
    phase: Phase,
    session: Option<Session>,
    failed: Option<FailReason>,
    events: VecDeque<ReceiverEvent>,
    stats: ReceiverStats,
    /// Buffers handed back (`recycle`), at most `SPARE_BUFFERS`: a block's buffer is taken from
    /// here rather than allocated (and its pages faulted in) afresh, 1.4 MB a block.
    spare: Vec<Vec<u8>>,
}

/// Buffers `recycle` keeps (6.5).
const SPARE_BUFFERS: usize = 2;

/// A zeroed buffer of `len` bytes: a spare one if there is one large enough.
fn buffer(spare: &mut Vec<Vec<u8>>, len: usize) -> Vec<u8> {
    match spare.iter().position(|b| b.capacity() >= len) {
        Some(i) => {
            let mut b = spare.swap_remove(i);
            b.clear();
            b.resize(len, 0);
            b
        }
        None => vec![0; len],
    }
}

impl Receiver {
    /// A receiver listening for a session.
    pub fn new(cfg: ReceiverConfig) -> Self {
        Receiver {
            rng: Rng::new(cfg.seed),
            cfg,
            phase: Phase::Listening,
            session: None,
            failed: None,
            events: VecDeque::new(),
            stats: ReceiverStats::default(),
            spare: Vec::new(),
        }
    }

    /// A block's bytes, once the shell is done with them (a decode job's output, written): kept
    /// to hold the symbols of a block to come (at most `SPARE_BUFFERS`; others are dropped).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(buf);
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// (blocks decoded, blocks in the file), once a session is joined. While the sender's source
    /// is still growing, the second is the blocks known so far.
    pub fn progress(&self) -> Option<(u32, u32)> {
        self.session.as_ref().map(|s| {
            let total = match s.layout.file_size() {
                Some(_) => s.layout.num_blocks(),
                None => s.sent_blocks.max(s.blocks.len() as u32).max(s.done),
            };
            (s.done, total)
        })
    }

    /// Whether the session is over for this receiver (done or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished | Phase::Failed)
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.events.pop_front()
    }

    /// A datagram from the group or from the sender. Anything malformed, foreign, from another
    /// address than the session's, unsigned or forged where a signature is needed, or out of the
    /// session's range is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let d = match Packet::parse(bytes) {
            Ok(d) => d,
            Err(e) => return self.stats.dropped.parse_error(e),
        };
        if let Packet::Announce(a) = &d.packet
            && self.session.is_none()
            && self.phase == Phase::Listening
            && self.cfg.session.is_none_or(|s| s == d.session)
            && !self.cfg.skip_sessions.contains(&d.session)
        {
            let signed_by = match &self.cfg.trust {
                Some(t) => match t.check(now, bytes, &d.auth, None) {
                    Ok(key) => Some(key),
                    Err(r) => return self.stats.dropped.rejected(r),
                },
                None => None,
            };
            // A signed ANNOUNCE that names its sender's address, replayed by another host to be
            // taken for the sender.
            if signed_by.is_some() && !a.feedback.names_source(from.ip()) {
                self.stats.dropped.wrong_source += 1;
                return;
            }
            return self.join(now, from, d.session, a.clone(), signed_by);
        }
        let Some(s) = self.session.as_mut().filter(|s| s.id == d.session) else {
            self.stats.dropped.other_session += 1;
            return;
        };
        if matches!(self.phase, Phase::Finished | Phase::Failed) {
            self.stats.dropped.unexpected += 1;
            return;
        }
        // A cheap first filter: the session's packets come from its sender's address. (An address
        // can be spoofed; signatures, digests and hashes are what that is caught by.)
        if from.ip() != s.sender {
            self.stats.dropped.wrong_source += 1;
            return;
        }
        if d.packet.kind().authenticated()
            && let Some(t) = &self.cfg.trust
            && let Err(r) = t.check(now, bytes, &d.auth, s.key_id.as_ref())
        {
            return self.stats.dropped.rejected(r);
        }
        s.last_heard = now;
        match d.packet {
            Packet::Announce(a) => self.on_announce(a),
            Packet::Data(data) => self.on_data(data, bytes),
            Packet::End(e) => self.on_end(e.reason),
            Packet::Digests(digests) => self.on_digests(digests),
            Packet::Hashes(h) => self.on_hashes(h),
            Packet::Keys(k) => self.on_keys(k),
            Packet::Pace(p) => {
                // Answered at once: the sender's round-trip estimate is only as good as this.
                s.pace = Some((p, s.data_received, now));
                s.paced = Some((p.sent, s.data_received));
                s.next_status = s.next_status.min(now);
            }
            Packet::Ack(a) if a.receiver == self.cfg.id => {
                if matches!(self.phase, Phase::Finishing { .. }) {
                    self.finish();
                } else {
                    self.stats.dropped.duplicate += 1;
                }
            }
            _ => self.stats.dropped.unexpected += 1,
        }
    }

    fn join(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: u32,
        announce: Announce,
        signed_by: Option<KeyId>,
    ) {
        let (t, k) = (announce.symbol_size, announce.block_symbols);
        let layout = match (announce.file_size, announce.padded) {
            (Some(size), false) => Layout::new(size, t, k),
            (Some(size), true) => Layout::open(t, k).and_then(|l| l.finish(size)),
            (None, true) => Layout::open(t, k),
            // A size that is not known yet needs the padded layout.
            (None, false) => {
                self.stats.dropped.malformed += 1;
                return;
            }
        };
        let Ok(layout) = layout else {
            self.stats.dropped.malformed += 1;
            return;
        };
        let slots = if layout.file_size().is_some() {
            layout.num_blocks()
        } else {
            0
        };
        let buffered = (self.cfg.memory / layout.block_bytes().max(1) as usize)
            .clamp(2, self.cfg.buffered_blocks.max(2));
        let jitter = self.jitter();
        let session = Session {
            id,
            sender: from.ip(),
            key_id: signed_by,
            feedback: announce.feedback.resolve(from),
            blocks: (0..slots).map(|_| BlockRx::Empty).collect(),
            digests: vec![None; slots as usize],
            done: 0,
            low: 0,
            max_block_seen: None,
            sent_blocks: announce.sent_blocks,
            last_heard: now,
            next_report: now + jitter,
            next_status: now + self.cfg.status_interval,
            hello_due: true,
            in_memory: Vec::new(),
            buffered,
            extra_held: 0,
            tick: 0,
            sender_ended: false,
            data_received: 0,
            pace: None,
            paced: None,
            hold: None,
            deferred: Vec::new(),
            session_key: None,
            key_parts: Vec::new(),
            layout,
            announce,
        };
        self.events.push_back(ReceiverEvent::Joined(SessionInfo {
            session: id,
            name: session.announce.name.clone(),
            size: session.announce.file_size,
            digests: session.announce.digests,
            block_bytes: layout.block_bytes(),
            sender: from,
            signed_by,
            encrypted: session.announce.encrypted,
            sync: session.announce.sync,
            layout,
        }));
        self.phase = Phase::Receiving;
        let encrypted = session.announce.encrypted;
        self.session = Some(session);
        if encrypted && self.cfg.key.is_none() {
            return self.give_up(ReceiveError::NoKey, FailReason::Other);
        }
        self.check_complete();
    }

    /// A repeated ANNOUNCE: progress, and for a growing source perhaps the size and digests at last.
    fn on_announce(&mut self, a: Announce) {
        let s = self.session.as_mut().expect("caller checked");
        let known = &s.announce;
        // Everything as first announced, except progress and what was unknown and is now known.
        let consistent = (known.file_size.is_none() || known.file_size == a.file_size)
            && (known.digests.is_none() || known.digests == a.digests)
            && Announce {
                file_size: known.file_size,
                digests: known.digests,
                sent_blocks: known.sent_blocks,
                ..a.clone()
            } == *known;
        if !consistent {
            self.stats.dropped.out_of_range += 1;
            return;
        }
        s.sent_blocks = s.sent_blocks.max(a.sent_blocks);
        self.start_deferred(false);
        let s = self.session.as_mut().expect("caller checked");
        if let (None, Some(size)) = (s.layout.file_size(), a.file_size) {
            let Ok(layout) = s.layout.finish(size) else {
                self.stats.dropped.out_of_range += 1;
                return;
            };
            let n = layout.num_blocks();
            // Slots past the end exist only if a confused or hostile peer sent such blocks.
            for slot in s.blocks.iter().skip(n as usize) {
                match slot {
                    BlockRx::Done => s.done = s.done.saturating_sub(1),
                    BlockRx::Pending(p) => {
                        s.extra_held = s.extra_held.saturating_sub(p.extra.len())
                    }
                    _ => {}
                }
            }
            s.in_memory.retain(|&b| b < n);
            s.blocks.resize_with(n as usize, || BlockRx::Empty);
            s.digests.resize(n as usize, None);
            s.low = s.low.min(n);
            s.layout = layout;
            s.announce.file_size = Some(size);
        }
        if s.announce.digests.is_none() {
            s.announce.digests = a.digests;
        }
        self.check_complete();
    }

    /// Every block decoded, and the size and digests known: over to the shell's check.
    fn check_complete(&mut self) {
        let Some(s) = self.session.as_ref() else {
            return;
        };
        if let (Phase::Receiving, Some(size), Some(digests)) =
            (self.phase, s.layout.file_size(), s.announce.digests)
            && s.done == s.layout.num_blocks()
        {
            self.phase = Phase::Verifying;
            self.events
                .push_back(ReceiverEvent::Complete { size, digests });
        }
    }

    fn jitter(&mut self) -> Duration {
        self.cfg.report_interval.mul_f64(0.5 + self.rng.unit())
    }

    /// Makes room for `block` in the slot tables.
    fn grow(s: &mut Session, block: u32) {
        if s.blocks.len() <= block as usize {
            s.blocks.resize_with(block as usize + 1, || BlockRx::Empty);
            s.digests.resize(block as usize + 1, None);
        }
    }

    fn on_data(&mut self, d: Data<'_>, datagram: &[u8]) {
        let s = self.session.as_mut().expect("caller checked");
        s.data_received += 1;
        let layout = s.layout;
        let opened;
        let symbol = match (&s.session_key, s.announce.encrypted) {
            (_, false) => d.symbol,
            (None, true) => {
                // The key has not come yet (KEYS is repeated): the symbol comes again as repair.
                self.stats.dropped.unexpected += 1;
                return;
            }
            (Some(key), true) => match key.open(s.id, d.block, d.esi, datagram, DATA_OVERHEAD) {
                Some(plain) => {
                    opened = plain;
                    &opened
                }
                None => {
                    self.stats.dropped.forged += 1;
                    return;
                }
            },
        };
        if d.block >= s.limit() || symbol.len() != layout.symbol_size() as usize {
            self.stats.dropped.out_of_range += 1;
            return;
        }
        self.take_symbol(d.block, d.esi, symbol);
        self.start_deferred(false);
    }

    /// Starts the deferred blocks whose first pass is over (`all`: every one: the fallback on
    /// each timeout, should the news of the pass's end be lost).
    fn start_deferred(&mut self, all: bool) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.deferred.is_empty() {
            return;
        }
        let mut start = Vec::new();
        for block in std::mem::take(&mut s.deferred) {
            let k = s.layout.symbols(block) as u32;
            match &s.blocks[block as usize] {
                BlockRx::Pending(p) if p.ready(k) && (all || s.passed(block)) => start.push(block),
                BlockRx::Pending(p) if p.ready(k) => s.deferred.push(block),
                // Decoded or decoding since, or short of symbols again (forgotten): as usual.
                _ => {}
            }
        }
        for block in start {
            self.start_decode(block);
        }
    }

    /// A symbol of `block` that fits the session: kept, or dropped as a duplicate or forgery.
    fn take_symbol(&mut self, block: u32, esi: u32, symbol: &[u8]) {
        let s = self.session.as_mut().expect("caller checked");
        let layout = s.layout;
        let d = Data { block, esi, symbol };
        Self::grow(s, d.block);
        s.max_block_seen = Some(s.max_block_seen.map_or(d.block, |m| m.max(d.block)));
        s.tick += 1;
        let tick = s.tick;
        let k = layout.symbols(d.block) as u32;
        let slot = &mut s.blocks[d.block as usize];
        if matches!(slot, BlockRx::Empty) {
            *slot = BlockRx::Pending(Box::new(Pending {
                decode_at: k + 1,
                ..Pending::default()
            }));
        }
        let decoding = matches!(slot, BlockRx::Decoding(_));
        let p = match slot {
            BlockRx::Pending(p) | BlockRx::Decoding(p) => p,
            _ => {
                self.stats.dropped.duplicate += 1;
                return;
            }
        };
        // A block being checked symbol by symbol takes a symbol once its hash has come.
        if let Some(hashes) = &p.verify {
            match hashes.get(&d.esi) {
                Some(h) if *h == symbol_hash(d.block, d.esi, symbol) => {}
                Some(_) => {
                    self.stats.dropped.forged += 1;
                    return;
                }
                None if p.hash_covers(d.esi) => {
                    self.stats.dropped.unverified += 1;
                    return;
                }
                None if p.waiting.len() < k as usize => {
                    p.waiting.push((d.esi, symbol.to_vec()));
                    return;
                }
                None => {
                    self.stats.dropped.unverified += 1;
                    return;
                }
            }
        }
        p.seen = p.seen.max(d.esi + 1);
        p.touched = tick;
        let is_source = d.esi < k;
        if (is_source && p.have.as_ref().is_some_and(|h| h.contains(d.esi)))
            || p.extra_esis.contains(&d.esi)
        {
            self.stats.dropped.duplicate += 1;
            return;
        }
        self.stats.symbols += 1;
        let needs_buffer = is_source && p.buf.is_none() && !p.spilled && !decoding;
        if needs_buffer {
            self.make_room(d.block);
        }
        let s = self.session.as_mut().expect("caller checked");
        let store_below = s
            .hold
            .map_or(0, |prefix| prefix_symbols(&layout, d.block, prefix));
        let (BlockRx::Pending(p) | BlockRx::Decoding(p)) = &mut s.blocks[d.block as usize] else {
            unreachable!("the block was pending a moment ago");
        };
        if needs_buffer {
            p.buf = Some(buffer(
                &mut self.spare,
                k as usize * layout.symbol_size() as usize,
            ));
            s.in_memory.push(d.block);
        }
        match (&mut p.buf, is_source) {
            (Some(buf), true) => {
                let t = symbol.len();
                buf[d.esi as usize * t..][..t].copy_from_slice(symbol);
                p.have
                    .get_or_insert_with(|| SymbolSet::new(k as u16))
                    .insert(d.esi);
                // Held: the manifest's bytes go to the file at once, where the shell reads them.
                if d.esi < store_below {
                    self.events.push_back(store(&layout, d.block, d.esi, buf));
                }
            }
            (None, true) if p.spilled && !decoding => {
                // A spilled block's source symbol goes where it belongs: into the file (the part
                // of it that is file: in a padded last block it may be none).
                let at = d.esi as usize * symbol.len();
                let end = (at + symbol.len()).min(layout.len(d.block));
                if at < end {
                    self.events.push_back(ReceiverEvent::Store {
                        offset: layout.offset(d.block) + at as u64,
                        data: symbol[..end - at].to_vec(),
                    });
                }
                p.have
                    .get_or_insert_with(|| SymbolSet::new(k as u16))
                    .insert(d.esi);
            }
            _ => {
                p.extra.push((d.esi, symbol.to_vec()));
                p.extra_esis.insert(d.esi);
                p.extra_source += is_source as u32;
                s.extra_held += 1;
            }
        }
        // A block with all its source symbols needs no solve at all: never deferred.
        let early = p.count() < cheap_decode_at(k) && p.verify.is_none() && !p.all_source(k);
        if !decoding && p.ready(k) && s.digest(d.block).is_some() {
            // From K + 1 symbols a decode needs raptorq's slower solve (with the HDPC rows); from
            // `cheap_decode_at` it usually succeeds without them, at about 60% of the cost. The
            // first pass usually brings that many: wait for them while it goes on.
            if early && !s.passed(d.block) {
                if !s.deferred.contains(&d.block) {
                    s.deferred.push(d.block);
                }
            } else {
                self.start_decode(d.block);
            }
        }
        self.limit_extras(d.block);
    }

    /// Block digests: a block that was waiting for its digest may now be decoded.
    fn on_digests(&mut self, digests: Digests) {
        let s = self.session.as_mut().expect("caller checked");
        let limit = s.limit();
        let mut ready = Vec::new();
        let mut kept = Vec::new();
        let mut conflict = false;
        for (i, d) in digests.digests.into_iter().enumerate() {
            let block = digests.first_block + i as u32;
            if block >= limit {
                self.stats.dropped.out_of_range += 1;
                break;
            }
            Self::grow(s, block);
            match &mut s.digests[block as usize] {
                // The first digest heard stays; one datagram that contradicts it counts once.
                Some(known) if *known != d => conflict = true,
                Some(_) => {}
                slot @ None => {
                    *slot = Some(d);
                    let k = s.layout.symbols(block) as u32;
                    match &s.blocks[block as usize] {
                        BlockRx::Pending(p) if p.ready(k) => ready.push(block),
                        BlockRx::Kept => kept.push(block),
                        _ => {}
                    }
                }
            }
        }
        self.stats.dropped.forged += conflict as u64;
        for block in ready {
            self.start_decode(block);
        }
        for block in kept {
            self.start_check(block);
        }
    }

    /// Symbol hashes for a block being checked symbol by symbol.
    /// (While the block's decode job runs they are kept too: the job may fail.)
    fn on_hashes(&mut self, h: Hashes) {
        let s = self.session.as_mut().expect("caller checked");
        let k = s.layout.symbols(h.block) as u32;
        let Some(BlockRx::Pending(p) | BlockRx::Decoding(p)) = s.blocks.get_mut(h.block as usize)
        else {
            self.stats.dropped.unexpected += 1;
            return;
        };
        if p.verify.is_none() {
            self.stats.dropped.unexpected += 1;
            return;
        }
        let end = h.first_esi + h.hashes.len() as u32;
        if !p.cover(h.first_esi, end) {
            self.stats.dropped.out_of_range += 1;
            return;
        }
        // Kept: the hashes of what it holds, and of the last symbols sent that it has not seen
        // (still on their way). A list covers every symbol the sender sent of the block, however
        // many repair rounds that was; what is kept of it is bounded.
        p.hashes_upto = p.hashes_upto.max(h.sent);
        let recent = p
            .seen
            .max(p.hashes_upto.saturating_sub(max_hashes(k) as u32));
        let wanted: Vec<(u32, SymbolHash)> = (h.first_esi..end)
            .zip(h.hashes)
            .filter(|&(esi, _)| esi >= recent || p.holds(esi, k))
            .collect();
        let mut hashes = p.verify.take().expect("checked above");
        hashes.extend(wanted);
        if hashes.len() > max_hashes(k) + p.count() as usize + p.waiting.len() {
            hashes.retain(|&esi, _| esi >= recent || p.holds(esi, k));
        }
        p.verify = Some(hashes);
        // The symbols that waited for their hash: taken, dropped, or waiting on.
        for (esi, symbol) in std::mem::take(&mut p.waiting) {
            self.take_symbol(h.block, esi, &symbol);
        }
        let s = self.session.as_mut().expect("caller checked");
        if let Some(BlockRx::Pending(p)) = s.blocks.get(h.block as usize)
            && p.ready(k)
            && s.digest(h.block).is_some()
        {
            self.start_decode(h.block);
        }
    }

    /// The session key, if this PC's key is among those it was sent to.
    fn on_keys(&mut self, keys: Keys) {
        let s = self.session.as_mut().expect("caller checked");
        if s.session_key.is_some() {
            self.stats.dropped.duplicate += 1;
            return;
        }
        // KEYS in a session announced unencrypted (anyone may send one where no signature is
        // required), or without a key of our own (then the session already failed).
        let (true, Some(own)) = (s.announce.encrypted, self.cfg.key.as_ref()) else {
            self.stats.dropped.unexpected += 1;
            return;
        };
        let id = own.public().id();
        if let Some(w) = keys.wraps.iter().find(|w| w.recipient == id) {
            match crypt::unwrap(own, &keys.ephemeral, &w.wrapped, s.id) {
                Some(key) => s.session_key = Some(key),
                None => self.stats.dropped.forged += 1,
            }
            return;
        }
        s.key_parts.resize(keys.parts as usize, false);
        if let Some(seen) = s.key_parts.get_mut(keys.part as usize) {
            *seen = true;
        }
        if s.key_parts.iter().all(|&seen| seen) {
            self.give_up(ReceiveError::NotListed, FailReason::Other);
        }
    }

    /// Keeps the symbols held apart (repair, late source) within the same budget as the block
    /// buffers: past it, the least recently touched blocks forget theirs and will ask again.
    fn limit_extras(&mut self, current: u32) {
        let s = self.session.as_mut().expect("caller checked");
        // At least a few blocks' worth, so a block short of a few symbols survives the next
        // block's repair burst.
        let budget = s.buffered.max(4) * s.layout.block_symbols() as usize;
        if s.extra_held <= budget {
            return;
        }
        let mut holders: Vec<(u64, u32)> = s
            .blocks
            .iter()
            .enumerate()
            .filter_map(|(b, slot)| match slot {
                BlockRx::Pending(p) if !p.extra.is_empty() && b as u32 != current => {
                    Some((p.touched, b as u32))
                }
                _ => None,
            })
            .collect();
        holders.sort_unstable();
        for (_, b) in holders {
            if s.extra_held <= budget * 3 / 4 {
                break;
            }
            if let BlockRx::Pending(p) = &mut s.blocks[b as usize] {
                s.extra_held = s.extra_held.saturating_sub(p.extra.len());
                self.stats.forgotten_symbols += p.extra.len() as u64;
                p.extra = Vec::new();
                p.extra_esis = HashSet::new();
                p.extra_source = 0;
            }
        }
    }

    /// Spills the least recently touched in-memory block if the memory budget is full.
    fn make_room(&mut self, for_block: u32) {
        let s = self.session.as_mut().expect("caller checked");
        if s.in_memory.len() < s.buffered {
            return;
        }
        let Some((at, &victim)) = s
            .in_memory
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b != for_block)
            .min_by_key(|&(_, &b)| match &s.blocks[b as usize] {
                BlockRx::Pending(p) => p.touched,
                _ => u64::MAX,
            })
        else {
            return;
        };
        s.in_memory.swap_remove(at);
        if let BlockRx::Pending(p) = &mut s.blocks[victim as usize]
            && let Some(mut buf) = p.buf.take()
        {
            buf.truncate(s.layout.len(victim));
            p.spilled = true;
            self.stats.spilled_blocks += 1;
            self.events.push_back(ReceiverEvent::Store {
                offset: s.layout.offset(victim),
                data: buf,
            });
        }
    }

    fn start_decode(&mut self, block: u32) {
        let s = self.session.as_mut().expect("caller checked");
        let Some(digest) = s.digest(block) else {
            return;
        };
        let slot = &mut s.blocks[block as usize];
        let BlockRx::Pending(mut p) = std::mem::replace(slot, BlockRx::Empty) else {
            unreachable!("only pending blocks are decoded");
        };
        s.in_memory.retain(|&b| b != block);
        let k = s.layout.symbols(block);
        s.extra_held = s.extra_held.saturating_sub(p.extra.len());
        let have = p.have.clone().unwrap_or_else(|| SymbolSet::new(k));
        let mut job = DecodeJob::new(
            &s.layout,
            block,
            p.buf.take(),
            have,
            std::mem::take(&mut p.extra),
            digest,
        );
        job.verify = p.verify.clone().map(Arc::new);
        p.decode_at = job.symbols() + 1;
        *slot = BlockRx::Decoding(p);
        self.events.push_back(ReceiverEvent::Decode(job));
    }

    /// The outcome of a `Decode` job: `Ok(block)` once its bytes are written to the file; or the
    /// job back: its symbols were not enough, or the block did not match its digest, and then each
    /// symbol is checked against the hashes the sender publishes before the next try.
    pub fn handle_decoded(&mut self, _now: Instant, outcome: Result<u32, DecodeError>) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let block = match &outcome {
            Ok(b) => *b,
            Err(e) => e.job().block,
        };
        let Some(slot) = s.blocks.get_mut(block as usize) else {
            return;
        };
        if !matches!(slot, BlockRx::Decoding(_)) {
            return;
        }
        let BlockRx::Decoding(mut p) = std::mem::replace(slot, BlockRx::Empty) else {
            unreachable!("checked above");
        };
        let k = s.layout.symbols(block) as u32;
        match outcome {
            Ok(_) => {
                s.extra_held = s.extra_held.saturating_sub(p.extra.len());
                *slot = BlockRx::Done;
                s.done += 1;
                while matches!(s.blocks.get(s.low as usize), Some(BlockRx::Done)) {
                    s.low += 1;
                }
                self.check_complete();
            }
            Err(e) => {
                let (mut job, forged) = match e {
                    DecodeError::Forged(job) => (job, true),
                    DecodeError::TooFew(job) => (job, false),
                };
                if forged && job.verify.is_some() && job.rejected == (0, 0) {
                    // Trying again would decode the same block: the digest (or the hash list)
                    // itself is wrong.
                    *slot = BlockRx::Decoding(p);
                    return self.give_up(
                        ReceiveError::Unverifiable(block),
                        FailReason::DigestMismatch,
                    );
                }
                self.stats.dropped.forged += job.rejected.0 as u64;
                self.stats.dropped.unverified += job.rejected.1 as u64;
                s.extra_held += job.extra.len();
                p.restore(&mut job, k);
                if p.buf.is_some() {
                    s.in_memory.push(block);
                }
                if forged {
                    // Somebody sent a symbol that is not the sender's: ask for the hashes of what
                    // the sender sent, and keep only the symbols that match them.
                    self.stats.forged_blocks += 1;
                    p.verify.get_or_insert_with(HashMap::new);
                    p.decode_at = k + 1;
                } else {
                    self.stats.decode_failures += 1;
                }
                let ready = p.ready(k);
                *slot = BlockRx::Pending(p);
                if ready {
                    self.start_decode(block);
                }
            }
        }
    }

    /// The output file already holds `blocks` from an earlier run of this receiver, for the same
    /// content (the shell's state file says so). Each one not yet received is marked kept and
    /// checked against this session's digest for it (a `Check` event, now if the digest is known,
    /// else once it comes: NEED asks for it) before it counts as done; one that does not match is
    /// collected again. Only while receiving a session of known size; block numbers past the file
    /// are ignored. Returns how many were marked: each gets one `Check`, and `handle_checked`.
    pub fn resume(&mut self, _now: Instant, blocks: &[u32]) -> u32 {
        let Some(s) = self.session.as_mut() else {
            return 0;
        };
        if self.phase != Phase::Receiving || s.layout.file_size().is_none() {
            return 0;
        }
        let (mut kept, mut known) = (0, Vec::new());
        for &block in blocks {
            let Some(slot) = s.blocks.get_mut(block as usize) else {
                continue;
            };
            match slot {
                BlockRx::Empty => {}
                // Symbols of it came before the shell said what it kept (with the ANNOUNCE,
                // in the same read: the first pass still sends a block the earlier run had
                // decoded already). The copy kept is checked instead; they are dropped, and the
                // block no longer counts among those held in memory (as in `start_decode`).
                BlockRx::Pending(p) => {
                    s.extra_held = s.extra_held.saturating_sub(p.extra.len());
                    s.in_memory.retain(|&b| b != block);
                }
                // Being decoded, or done: received again already.
                _ => continue,
            }
            *slot = BlockRx::Kept;
            kept += 1;
            if s.digests[block as usize].is_some() {
                known.push(block);
            }
        }
        for block in known {
            self.start_check(block);
        }
        kept
    }

    fn start_check(&mut self, block: u32) {
        let s = self.session.as_mut().expect("caller checked");
        let (Some(digest), Some(slot)) = (s.digest(block), s.blocks.get_mut(block as usize)) else {
            return;
        };
        if matches!(slot, BlockRx::Kept) {
            *slot = BlockRx::Checking;
            self.events.push_back(ReceiverEvent::Check(CheckJob::new(
                &s.layout, block, digest,
            )));
        }
    }

    /// The outcome of a `Check` job: the kept block matches its digest (it is done), or not (it
    /// is collected again, like a block never received).
    pub fn handle_checked(&mut self, _now: Instant, block: u32, ok: bool) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(slot @ BlockRx::Checking) = s.blocks.get_mut(block as usize) else {
            return;
        };
        if ok {
            *slot = BlockRx::Done;
            s.done += 1;
            self.stats.resumed_blocks += 1;
            while matches!(s.blocks.get(s.low as usize), Some(BlockRx::Done)) {
                s.low += 1;
            }
            self.check_complete();
        } else {
            *slot = BlockRx::Empty;
            self.stats.resume_rejected += 1;
        }
    }

    /// A sync session (5.9): until `known`, NEED asks only for blocks that lack bytes of the
    /// stream's first `prefix` bytes (a tree's manifest; 0: none), and the source symbols of those
    /// bytes go to the file as they come (`Store`), where the shell reads them once
    /// `prefix_ready`. Called again with a longer prefix once the first bytes say how long the
    /// manifest is. Only while receiving a session of known size.
    pub fn hold(&mut self, _now: Instant, prefix: u64) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(size) = s.layout.file_size() else {
            return;
        };
        if self.phase != Phase::Receiving {
            return;
        }
        let prefix = prefix.min(size);
        s.hold = Some(prefix);
        let layout = s.layout;
        // What came before the hold was this long is stored now (a spilled block's already is).
        for block in (0..layout.num_blocks()).take_while(|&b| layout.offset(b) < prefix) {
            if let Some(BlockRx::Pending(p)) = s.blocks.get(block as usize)
                && let (Some(buf), Some(have)) = (&p.buf, &p.have)
            {
                let below = prefix_symbols(&layout, block, prefix);
                for esi in (0..below).filter(|&e| have.contains(e)) {
                    self.events.push_back(store(&layout, block, esi, buf));
                }
            }
        }
    }

    /// Whether the bytes `hold` asked for are all in the output file (once the `Store` events
    /// given so far are written).
    pub fn prefix_ready(&self) -> bool {
        let Some(s) = &self.session else {
            return false;
        };
        let Some(prefix) = s.hold else {
            return false;
        };
        (0..s.layout.num_blocks())
            .take_while(|&b| s.layout.offset(b) < prefix)
            .all(|b| s.prefix_held(b, prefix))
    }

    /// What the shell found already here (5.9): per block, source symbols whose bytes it wrote
    /// into the output file (from files that have the manifest's digests). Each counts as
    /// received, so a block needs only what is missing and is read back from the file when it is
    /// decoded. The hold ends: NEED asks for the rest. A set not of the block's K is ignored.
    pub fn known(&mut self, _now: Instant, blocks: &[(u32, SymbolSet)]) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.hold = None;
        let layout = s.layout;
        let mut ready = Vec::new();
        for (block, set) in blocks {
            let (block, k) = (*block, layout.symbols(*block));
            let Some(slot) = s.blocks.get_mut(block as usize) else {
                continue;
            };
            if !set.fits(k) {
                continue;
            }
            if matches!(slot, BlockRx::Empty) {
                *slot = BlockRx::Pending(Box::new(Pending {
                    decode_at: k as u32 + 1,
                    ..Pending::default()
                }));
            }
            // Decoding, done, kept, or collected symbol by symbol: nothing to add.
            let BlockRx::Pending(p) = slot else {
                continue;
            };
            if p.verify.is_some() {
                continue;
            }
            // From now on the block is read back from the file: what is in memory goes there.
            if let Some(buf) = p.buf.take() {
                for esi in (0..k as u32).filter(|&e| p.have.as_ref().is_some_and(|h| h.contains(e)))
                {
                    self.events.push_back(store(&layout, block, esi, &buf));
                }
                s.in_memory.retain(|&b| b != block);
            }
            p.spilled = true;
            let have = p.have.get_or_insert_with(|| SymbolSet::new(k));
            for esi in (0..k as u32).filter(|&e| set.contains(e) && !p.extra_esis.contains(&e)) {
                have.insert(esi);
            }
            if p.ready(k as u32) && s.digests[block as usize].is_some() {
                ready.push(block);
            }
        }
        for block in ready {
            self.start_decode(block);
        }
    }

    /// The shell's check of the whole file against the announced digests.
    pub fn verified(&mut self, now: Instant, ok: bool) {
        if ok {
            self.finishing(now);
        } else {
            self.fail(FailReason::DigestMismatch);
        }
    }

    /// The file is already in the output folder, whole: report done without receiving.
    pub fn already_complete(&mut self, now: Instant) {
        if self.session.is_some() {
            self.finishing(now);
        }
    }

    fn finishing(&mut self, now: Instant) {
        let ended = self.session.as_ref().is_some_and(|s| s.sender_ended);
        if let Some(s) = self.session.as_mut() {
            // The whole file is there (`already_complete` comes while receiving goes on): every
            // block is done, and what was being collected or decoded is dropped, so a decode
            // still running counts for nothing and later symbols are duplicates.
            s.blocks.iter_mut().for_each(|b| *b = BlockRx::Done);
            s.in_memory.clear();
            s.extra_held = 0;
            s.done = s.layout.num_blocks();
            s.low = s.done;
            s.next_status = now;
        }
        if ended {
            self.finish();
        } else {
            self.phase = Phase::Finishing {
                until: now + self.cfg.finish_linger,
            };
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Finished;
        self.events.push_back(ReceiverEvent::Finished);
    }

    /// Gives up (the shell hit an error it cannot recover from); tells the sender why, so it does
    /// not wait and the teacher sees the reason.
    pub fn fail(&mut self, reason: FailReason) {
        if self.session.is_some() && !matches!(self.phase, Phase::Finished | Phase::Failed) {
            self.failed = Some(if reason == FailReason::None {
                FailReason::Other
            } else {
                reason
            });
        }
        self.phase = Phase::Failed;
    }

    fn give_up(&mut self, e: ReceiveError, reason: FailReason) {
        self.fail(reason);
        self.events.push_back(ReceiverEvent::Failed(e));
    }

    fn on_end(&mut self, reason: EndReason) {
        let mut received = None;
        if let Some(s) = self.session.as_mut() {
            s.sender_ended = true;
            received = (s.paced)
                .filter(|&(sent, _)| sent > 0)
                .map(|(sent, got)| (got.min(sent) * 100 / sent) as u8);
        }
        match self.phase {
            Phase::Receiving => {
                self.phase = Phase::Failed;
                self.events.push_back(ReceiverEvent::Failed(match reason {
                    EndReason::Aborted => ReceiveError::Aborted,
                    EndReason::Complete => ReceiveError::LeftBehind { received },
                }));
            }
            Phase::Finishing { .. } => self.finish(),
            _ => {}
        }
    }

    /// Time has passed: the sender may have gone silent, or the linger after "done" run out.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Receiving => {
                self.start_deferred(true);
                let s = self.session.as_ref().expect("receiving has a session");
                if now.saturating_duration_since(s.last_heard) >= self.cfg.sender_timeout {
                    self.phase = Phase::Failed;
                    self.events
                        .push_back(ReceiverEvent::Failed(ReceiveError::SenderGone(
                            self.cfg.sender_timeout.as_secs(),
                        )));
                }
            }
            Phase::Finishing { until } if now >= until => self.finish(),
            _ => {}
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self.session.as_ref()?;
        match self.phase {
            Phase::Receiving => Some(
                s.next_report
                    .min(s.next_status)
                    .min(s.last_heard + self.cfg.sender_timeout),
            ),
            // The whole-file check may take a while: keep telling the sender we are alive.
            Phase::Verifying => Some(s.next_status),
            Phase::Finishing { until } => Some(until.min(s.next_status)),
            _ => None,
        }
    }

    /// The next feedback datagram, written into `buf`, and the sender's address to send it to.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        buf.clear();
        let status_interval = self.cfg.status_interval;
        let (state, reason) = match self.phase {
            Phase::Failed => (ReceiverState::Failed, self.failed.take()?),
            Phase::Finishing { .. } => (ReceiverState::Done, FailReason::None),
            Phase::Receiving | Phase::Verifying => (ReceiverState::Receiving, FailReason::None),
            _ => return None,
        };
        let jitter = self.jitter();
        let s = self.session.as_mut()?;
        let status_due = s.hello_due || now >= s.next_status || state == ReceiverState::Failed;
        if status_due {
            // A final word (done, failed) replaces a hello not yet sent.
            let state = if s.hello_due && state == ReceiverState::Receiving {
                ReceiverState::Hello
            } else {
                state
            };
            s.hello_due = false;
            // "Done" is repeated faster: it is what the sender waits for to finish.
            s.next_status = now
                + if state == ReceiverState::Done {
                    status_interval / 2
                } else {
                    status_interval
                };
            Packet::Status(Status {
                receiver: self.cfg.id,
                state,
                reason,
                blocks_done: s.done,
                name: self.cfg.name.clone(),
                echo: s.pace.take().map(|(p, received, at)| PaceEcho {
                    time_us: p.time_us,
                    sent: p.sent,
                    received,
                    held_us: now
                        .saturating_duration_since(at)
                        .as_micros()
                        .min(u32::MAX as u128) as u32,
                }),
            })
            .write(s.id, buf);
            return Some(s.feedback);
        }
        if self.phase != Phase::Receiving || now < s.next_report {
            return None;
        }
        s.next_report = now + jitter;
        // Ask for no more than half the memory budget at once: symbols that cannot be held would
        // be forgotten and asked for again.
        let budget = (s.buffered.max(4) * s.layout.block_symbols() as usize / 2) as u32;
        let entries = needs(s, budget);
        if entries.is_empty() {
            return None;
        }
        self.stats.need_reports += 1;
        Packet::Need(Need {
            receiver: self.cfg.id,
            entries,
        })
        .write(s.id, buf);
        Some(s.feedback)
    }
}

/// A `Store` of source symbol `esi` of `block` from its buffer (cut to the block's length).
fn store(layout: &Layout, block: u32, esi: u32, buf: &[u8]) -> ReceiverEvent {
    let t = layout.symbol_size() as usize;
    let at = esi as usize * t;
    let end = (at + t).min(layout.len(block)).max(at);
    ReceiverEvent::Store {
        offset: layout.offset(block) + at as u64,
        data: buf[at..end].to_vec(),
    }
}

/// Source symbols of `block` that hold bytes of the stream's first `prefix` bytes.
fn prefix_symbols(layout: &Layout, block: u32, prefix: u64) -> u32 {
    let t = layout.symbol_size() as u64;
    let k = layout.symbols(block) as u64;
    (prefix.saturating_sub(layout.offset(block)).div_ceil(t)).min(k) as u32
}

/// The blocks a receiver lacks among those whose first pass is over, lowest first, until their
/// needs add up to `budget` symbols (at least one block); with them, the digests it lacks.
fn needs(s: &Session, budget: u32) -> Vec<NeedEntry> {
    let mut entries = Vec::new();
    let mut asked = 0;
    for block in s.low..s.layout.num_blocks() {
        if !s.passed(block) || entries.len() == MAX_NEED_ENTRIES || asked >= budget {
            break;
        }
        // Held (a sync session, 5.9): only a block whose manifest part is missing is asked for,
        // whole (its symbols were lost, or this receiver joined after they went out).
        if let Some(prefix) = s.hold {
            if s.layout.offset(block) >= prefix {
                break;
            }
            if s.prefix_held(block, prefix) {
                continue;
            }
        }
        let k = s.layout.symbols(block) as u32;
        let mut flags = NeedFlags {
            no_digest: s.digest(block).is_none(),
            verify: false,
        };
        let (need, seen) = match s.blocks.get(block as usize) {
            None | Some(BlockRx::Empty) => (k + 1, 0),
            // Kept from an earlier run: only its digest is wanted, to check it.
            Some(BlockRx::Kept) => (0, 0),
            Some(BlockRx::Pending(p)) => {
                // Hashes are missing for some of what it holds, or for what waits for one (which
                // may be a forgery whose hash never comes: it is not counted meanwhile).
                flags.verify = p.lacks_hashes() || !p.waiting.is_empty();
                if p.all_source(k) {
                    (0, p.seen)
                } else {
                    // Symbols dropped after a decode job failed, or forgotten, can leave it short
                    // of more than a whole block: it never needs more than K + 1.
                    (p.decode_at.saturating_sub(p.count()).min(k + 1), p.seen)
                }
            }
            _ => continue,
        };
        if need > 0 || flags.no_digest || flags.verify {
            asked += need;
            entries.push(NeedEntry {
                block,
                need: need.min(u16::MAX as u32) as u16,
                seen,
                flags,
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FeedbackAddr, KeyWrap, WRAPPED_KEY_LEN};

    /// Found by fuzzing (`fuzz/regressions/receiver/keys-in-an-unencrypted-session`): KEYS in a
    /// session announced unencrypted, to a receiver without a key of its own, panicked.
    #[test]
    fn keys_in_an_unencrypted_session_are_dropped() {
        let t0 = Instant::now();
        let sender: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut rx = Receiver::new(ReceiverConfig::default());
        let announce = Packet::Announce(Announce {
            file_size: None,
            digests: None,
            padded: true,
            encrypted: false,
            sync: false,
            staggered: true,
            symbol_size: 64,
            block_symbols: 8,
            interleave: 4,
            sent_blocks: 0,
            feedback: FeedbackAddr::Source { port: 5000 },
            name: "lesson.bin".into(),
        });
        rx.handle_datagram(t0, sender, &announce.to_vec(9));
        assert!(matches!(rx.poll_event(), Some(ReceiverEvent::Joined(_))));
        let keys = Packet::Keys(Keys {
            ephemeral: [4; 32],
            part: 0,
            parts: 1,
            wraps: vec![KeyWrap {
                recipient: [1; 8],
                wrapped: [2; WRAPPED_KEY_LEN],
            }],
        });
        rx.handle_datagram(t0, sender, &keys.to_vec(9));
        assert_eq!(rx.stats().dropped.unexpected, 1);
        assert!(!rx.is_finished());
    }

    /// A block's buffer may come from the spares the shell handed back (`recycle`): zeroed, so
    /// what a spilled block writes to the file is its symbols and zeros, never an older block's
    /// bytes; and a block decodes as before.
    #[test]
    fn a_recycled_buffer_holds_the_next_block_zeroed() {
        let t0 = Instant::now();
        let sender: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let file: Vec<u8> = (0..96).collect();
        let mut rx = Receiver::new(ReceiverConfig {
            buffered_blocks: 2,
            ..ReceiverConfig::default()
        });
        let announce = Packet::Announce(lesson(96, 16, 2));
        rx.handle_datagram(t0, sender, &announce.to_vec(9));
        assert!(matches!(rx.poll_event(), Some(ReceiverEvent::Joined(_))));
        let digests = Packet::Digests(Digests {
            first_block: 0,
            digests: file.chunks(32).map(crate::wire::block_digest).collect(),
        });
        rx.handle_datagram(t0, sender, &digests.to_vec(9));
        for _ in 0..3 {
            rx.recycle(vec![0xee; 64]);
        }
        let data = |rx: &mut Receiver, block: u32, esi: u32| {
            let at = (block * 32 + esi * 16) as usize;
            let symbol = &file[at..at + 16];
            let d = Packet::Data(Data { block, esi, symbol });
            rx.handle_datagram(t0, sender, &d.to_vec(9));
        };
        // Two blocks fit in memory: the third's first symbol spills block 0, half received.
        data(&mut rx, 0, 0);
        data(&mut rx, 1, 0);
        data(&mut rx, 2, 0);
        let stored: Vec<(u64, Vec<u8>)> = std::iter::from_fn(|| rx.poll_event())
            .filter_map(|e| match e {
                ReceiverEvent::Store { offset, data } => Some((offset, data)),
                _ => None,
            })
            .collect();
        let mut want = file[..16].to_vec();
        want.extend([0; 16]);
        assert_eq!(stored, [(0, want)]);
        data(&mut rx, 1, 1);
        let job = std::iter::from_fn(|| rx.poll_event())
            .find_map(|e| match e {
                ReceiverEvent::Decode(job) => Some(job),
                _ => None,
            })
            .expect("block 1 is whole");
        assert_eq!(job.block, 1);
        assert_eq!(job.run(None).unwrap(), file[32..64]);
    }

    /// A block that could decode from K + 1 symbols while its first pass still brings more waits
    /// for them (`cheap_decode_at`), or for the pass's end: a symbol of a block W after it, or at
    /// the latest the next timeout.
    #[test]
    fn a_decode_waits_for_the_rest_of_the_first_pass() {
        use crate::file::codec::Plans;
        let t0 = Instant::now();
        let sender: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let (k, t) = (16u32, 16usize);
        let file: Vec<u8> = (0..3 * k as usize * t)
            .map(|i| (i * 7 + i / 5) as u8)
            .collect();
        let announce = lesson(file.len() as u64, t as u16, k as u16);
        let (mut rx, layout) = joined_with_digests(t0, sender, announce, &file);
        let mut plans = Plans::default();
        let mut encoders = block_encoders(&layout, &file);
        // Every symbol but ESI 0: from K + 1 on, `count` of them.
        let mut send = |rx: &mut Receiver, block: u32, esis: std::ops::Range<u32>| {
            for esi in esis {
                let mut symbol = Vec::new();
                encoders[block as usize].write_symbol(&layout, &mut plans, esi, &mut symbol);
                let d = Packet::Data(Data {
                    block,
                    esi,
                    symbol: &symbol,
                });
                rx.handle_datagram(t0, sender, &d.to_vec(9));
            }
        };
        let decodes = |rx: &mut Receiver| -> Vec<(u32, u32)> {
            std::iter::from_fn(|| rx.poll_event())
                .filter_map(|e| match e {
                    ReceiverEvent::Decode(job) => Some((job.block, job.symbols())),
                    _ => None,
                })
                .collect()
        };
        let cheap = cheap_decode_at(k);
        assert!(cheap > k + 1);
        // Block 0: K + 1 symbols, then up to the cheap count, while its pass goes on.
        send(&mut rx, 0, 1..k + 2);
        assert_eq!(decodes(&mut rx), []);
        send(&mut rx, 0, k + 2..cheap + 1);
        assert_eq!(decodes(&mut rx), [(0, cheap)]);
        // Block 1: K + 1 symbols and its pass ends (a symbol of block 2: W = 1).
        send(&mut rx, 1, 1..k + 2);
        assert_eq!(decodes(&mut rx), []);
        send(&mut rx, 2, 1..2);
        assert_eq!(decodes(&mut rx), [(1, k + 1)]);
        // Block 2: K + 1 symbols, nothing more heard: the next timeout starts it.
        send(&mut rx, 2, 2..k + 2);
        assert_eq!(decodes(&mut rx), []);
        rx.handle_timeout(t0 + Duration::from_millis(200));
        assert_eq!(decodes(&mut rx), [(2, k + 1)]);
    }

    /// A staggered first pass (5.3) has at most W blocks in it, joining in order: a block's pass is
    /// over once a DATA of a block W after it is seen. An older sender's aligned windows end at
    /// the next window's first block.
    #[test]
    fn a_first_pass_ends_at_a_block_w_after_it_or_at_the_next_aligned_window() {
        use crate::file::codec::Plans;
        let t0 = Instant::now();
        let sender: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let (k, t) = (16u32, 16usize);
        let file: Vec<u8> = (0..4 * k as usize * t)
            .map(|i| (i * 11 + i / 3) as u8)
            .collect();
        for (staggered, ends_at) in [(true, 3), (false, 2)] {
            let announce = Announce {
                interleave: 2,
                staggered,
                ..lesson(file.len() as u64, t as u16, k as u16)
            };
            let (mut rx, layout) = joined_with_digests(t0, sender, announce, &file);
            let mut plans = Plans::default();
            let mut encoders = block_encoders(&layout, &file);
            let mut symbol = |rx: &mut Receiver, block: u32, esi: u32| {
                let mut sym = Vec::new();
                encoders[block as usize].write_symbol(&layout, &mut plans, esi, &mut sym);
                let d = Packet::Data(Data {
                    block,
                    esi,
                    symbol: &sym,
                });
                rx.handle_datagram(t0, sender, &d.to_vec(9));
                std::iter::from_fn(|| rx.poll_event())
                    .filter_map(|e| match e {
                        ReceiverEvent::Decode(job) => Some(job.block),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            };
            // Block 1 can decode from K + 1 symbols (all but ESI 0), and waits while its pass
            // may bring more.
            for esi in 1..k + 2 {
                assert_eq!(symbol(&mut rx, 1, esi), [], "staggered {staggered}");
            }
            for block in 2..ends_at {
                assert_eq!(symbol(&mut rx, block, 0), [], "staggered {staggered}");
            }
            assert_eq!(symbol(&mut rx, ends_at, 0), [1], "staggered {staggered}");
        }
    }

    /// A receiver joined to `announce`'s session of `file`, from `sender`, and told every block's
    /// digest; and the session's layout.
    fn joined_with_digests(
        t0: Instant,
        sender: SocketAddr,
        announce: Announce,
        file: &[u8],
    ) -> (Receiver, Layout) {
        let mut rx = Receiver::new(ReceiverConfig::default());
        rx.handle_datagram(t0, sender, &Packet::Announce(announce).to_vec(9));
        let Some(ReceiverEvent::Joined(info)) = rx.poll_event() else {
            panic!("joined");
        };
        let layout = info.layout;
        let digests = Packet::Digests(Digests {
            first_block: 0,
            digests: (0..layout.num_blocks())
                .map(|b| crate::wire::block_digest(block_of(&layout, file, b)))
                .collect(),
        });
        rx.handle_datagram(t0, sender, &digests.to_vec(9));
        (rx, layout)
    }

    /// Block `b`'s bytes in `file`.
    fn block_of<'a>(layout: &Layout, file: &'a [u8], b: u32) -> &'a [u8] {
        &file[layout.offset(b) as usize..][..layout.len(b)]
    }

    /// An encoder for every block of `file`.
    fn block_encoders(layout: &Layout, file: &[u8]) -> Vec<crate::file::codec::BlockEncoder> {
        (0..layout.num_blocks())
            .map(|b| {
                crate::file::codec::BlockEncoder::new(layout, b, block_of(layout, file, b).to_vec())
            })
            .collect()
    }

    /// The announce of an unencrypted single-file session `lesson.bin` of `file_size` bytes in
    /// blocks of `block_symbols` symbols of `symbol_size` bytes, digests known, nothing sent yet.
    fn lesson(file_size: u64, symbol_size: u16, block_symbols: u16) -> Announce {
        Announce {
            file_size: Some(file_size),
            digests: Some(FileDigests {
                md5: [1; 16],
                sha256: [2; 32],
            }),
            padded: false,
            encrypted: false,
            sync: false,
            staggered: true,
            symbol_size,
            block_symbols,
            interleave: 1,
            sent_blocks: 0,
            feedback: FeedbackAddr::Source { port: 5000 },
            name: "lesson.bin".into(),
        }
    }

    /// The NEED entries a receiver sends at `now` (after any STATUS due then).
    fn need_at(rx: &mut Receiver, now: Instant) -> Vec<NeedEntry> {
        let mut buf = Vec::new();
        let mut entries = Vec::new();
        while rx.poll_transmit(now, &mut buf).is_some() {
            if let Packet::Need(n) = Packet::parse(&buf).unwrap().packet {
                entries.extend(n.entries);
            }
        }
        entries
    }

    /// A receiver restarted with blocks kept from an earlier run: each is checked against this
    /// session's digest before it counts; a block changed in the file meanwhile is collected
    /// again, and only what is missing is asked for.
    #[test]
    fn kept_blocks_count_only_once_they_match_their_digests() {
        let t0 = Instant::now();
        let sender: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let file: Vec<u8> = (0..64).collect();
        let mut rx = Receiver::new(ReceiverConfig::default());
        let announce = Packet::Announce(Announce {
            // The first pass is over: missing blocks are asked for at once.
            sent_blocks: 2,
            ..lesson(64, 16, 2)
        });
        rx.handle_datagram(t0, sender, &announce.to_vec(9));
        let Some(ReceiverEvent::Joined(info)) = rx.poll_event() else {
            panic!("joined");
        };
        assert_eq!(info.layout.num_blocks(), 2);
        // Block 7 is past the file: ignored.
        rx.resume(t0, &[0, 1, 7]);
        assert!(rx.poll_event().is_none(), "no digest yet, nothing to check");
        assert_eq!(rx.progress(), Some((0, 2)));
        // Until the digests come, only they are asked for.
        let t1 = t0 + Duration::from_secs(1);
        let asked: Vec<(u32, u16, bool)> = need_at(&mut rx, t1)
            .iter()
            .map(|e| (e.block, e.need, e.flags.no_digest))
            .collect();
        assert_eq!(asked, [(0, 0, true), (1, 0, true)]);
        let digests = Packet::Digests(Digests {
            first_block: 0,
            digests: vec![
                crate::wire::block_digest(&file[..32]),
                crate::wire::block_digest(&file[32..]),
            ],
        });
        rx.handle_datagram(t1, sender, &digests.to_vec(9));
        // The file as the earlier run left it: block 1 was damaged since (or never written).
        let mut on_disk = file.clone();
        on_disk[40] ^= 1;
        let jobs: Vec<CheckJob> = std::iter::from_fn(|| rx.poll_event())
            .filter_map(|e| match e {
                ReceiverEvent::Check(job) => Some(job),
                _ => None,
            })
            .collect();
        assert_eq!(jobs.iter().map(|j| j.block).collect::<Vec<_>>(), [0, 1]);
        for job in jobs {
            let at = job.offset as usize;
            let ok = job.run(on_disk[at..at + job.len].to_vec());
            assert_eq!(ok, job.block == 0);
            rx.handle_checked(t1, job.block, ok);
        }
        assert_eq!(rx.progress(), Some((1, 2)));
        assert_eq!(
            (rx.stats().resumed_blocks, rx.stats().resume_rejected),
            (1, 1)
        );
        // Only the damaged block is asked for, in full.
        let t2 = t1 + Duration::from_secs(1);
        let asked: Vec<(u32, u16)> = need_at(&mut rx, t2)
            .iter()
            .map(|e| (e.block, e.need))
            .collect();
        assert_eq!(asked, [(1, 3)]);
        for esi in 0..2 {
            let data = Packet::Data(Data {
                block: 1,
                esi,
                symbol: &file[32 + esi as usize * 16..][..16],
            });
            rx.handle_datagram(t2, sender, &data.to_vec(9));
        }
        let job = std::iter::from_fn(|| rx.poll_event())
            .find_map(|e| match e {
                ReceiverEvent::Decode(job) => Some(job),
                _ => None,
            })
            .expect("the damaged block is received again");
        assert_eq!(job.run(None).unwrap(), file[32..]);
        rx.handle_decoded(t2, Ok(1));
        assert!(matches!(
            rx.poll_event(),
            Some(ReceiverEvent::Complete { size: 64, .. })
        ));
    }

    /// A sync session: while held, only the manifest's block is asked for (whole, while its
    /// manifest symbols are missing) and those symbols go to the file as they come; once told
    /// what is here, each block asks only for what it lacks.
    #[test]
    fn a_held_receiver_asks_only_for_the_manifest_then_for_what_it_lacks() {
        let t0 = Instant::now();
        let sender: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let file: Vec<u8> = (0..=255).collect();
        let mut rx = Receiver::new(ReceiverConfig::default());
        let announce = Packet::Announce(Announce {
            file_size: Some(256),
            digests: None,
            padded: false,
            encrypted: false,
            sync: true,
            staggered: true,
            symbol_size: 16,
            block_symbols: 4,
            interleave: 1,
            sent_blocks: 4,
            feedback: FeedbackAddr::Source { port: 5000 },
            name: "lesson/".into(),
        });
        rx.handle_datagram(t0, sender, &announce.to_vec(9));
        let Some(ReceiverEvent::Joined(info)) = rx.poll_event() else {
            panic!("joined");
        };
        assert!(info.sync);
        // The manifest: the first 20 bytes, symbols 0 and 1 of block 0.
        rx.hold(t0, 20);
        let asked = |rx: &mut Receiver, t| -> Vec<(u32, u16, bool)> {
            need_at(rx, t)
                .iter()
                .map(|e| (e.block, e.need, e.flags.no_digest))
                .collect()
        };
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(asked(&mut rx, t1), [(0, 5, true)]);
        let mut stored = Vec::new();
        for esi in 0..2u32 {
            assert!(!rx.prefix_ready());
            let data = Packet::Data(Data {
                block: 0,
                esi,
                symbol: &file[esi as usize * 16..][..16],
            });
            rx.handle_datagram(t1, sender, &data.to_vec(9));
            while let Some(ev) = rx.poll_event() {
                if let ReceiverEvent::Store { offset, data } = ev {
                    stored.push((offset, data.len()));
                }
            }
        }
        assert_eq!(stored, [(0, 16), (16, 16)]);
        assert!(rx.prefix_ready());
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(asked(&mut rx, t2), []);
        // Here already: symbol 2 of block 0, all of block 1, symbol 1 of block 2.
        let set = |esis: &[u32]| {
            let mut s = SymbolSet::new(4);
            esis.iter().for_each(|&e| {
                s.insert(e);
            });
            s
        };
        rx.known(
            t2,
            &[
                (0, set(&[2])),
                (1, set(&[0, 1, 2, 3])),
                (2, set(&[1])),
                (3, SymbolSet::new(2)),
            ],
        );
        let t3 = t2 + Duration::from_secs(1);
        // Block 0 holds 3 of its K + 1, block 1 all (it lacks only its digest), block 2 one, and
        // block 3 (a set of the wrong size was ignored) nothing.
        assert_eq!(
            asked(&mut rx, t3),
            [(0, 2, true), (1, 0, true), (2, 4, true), (3, 5, true)]
        );
    }

    /// A kept block whose digest is already known is checked at once, and a late or repeated
    /// check result changes nothing.
    #[test]
    fn a_kept_block_with_a_known_digest_is_checked_at_once() {
        let t0 = Instant::now();
        let sender: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let file = [7u8; 32];
        let mut rx = Receiver::new(ReceiverConfig::default());
        let announce = Packet::Announce(Announce {
            digests: None,
            ..lesson(32, 16, 2)
        });
        rx.handle_datagram(t0, sender, &announce.to_vec(9));
        let digests = Packet::Digests(Digests {
            first_block: 0,
            digests: vec![crate::wire::block_digest(&file)],
        });
        rx.handle_datagram(t0, sender, &digests.to_vec(9));
        while rx.poll_event().is_some() {}
        rx.resume(t0, &[0]);
        let Some(ReceiverEvent::Check(job)) = rx.poll_event() else {
            panic!("a check job");
        };
        assert!(job.run(file.to_vec()));
        assert!(
            !job.run(file[..31].to_vec()),
            "a short file is not the block"
        );
        rx.handle_checked(t0, 0, true);
        rx.handle_checked(t0, 0, true);
        rx.handle_checked(t0, 5, false);
        assert_eq!(rx.progress(), Some((1, 1)));
        assert_eq!(rx.stats().resumed_blocks, 1);
        // Symbols of a block already done are duplicates.
        let data = Packet::Data(Data {
            block: 0,
            esi: 0,
            symbol: &file[..16],
        });
        rx.handle_datagram(t0, sender, &data.to_vec(9));
        assert_eq!(rx.stats().dropped.duplicate, 1);
    }

    /// Symbols of a kept block that came before the shell said what it kept (the first pass still
    /// sends a block the earlier run had decoded, and the read that brought the ANNOUNCE brings
    /// them too): the kept copy is checked all the same, and `resume` counts every check it
    /// promises. It used to skip the block, and the shell waited for a check that never came
    /// (no `resumed` line: CI's `a_resumed_receiver_says_what_it_kept_in_a_status_line`).
    #[test]
    fn a_kept_block_whose_symbols_came_first_is_checked_all_the_same() {
        let t0 = Instant::now();
        let sender: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let file: Vec<u8> = (0..64).collect();
        let (mut rx, _) = joined_with_digests(t0, sender, lesson(64, 16, 2), &file);
        let data = Packet::Data(Data {
            block: 1,
            esi: 0,
            symbol: &file[32..48],
        });
        rx.handle_datagram(t0, sender, &data.to_vec(9));
        while rx.poll_event().is_some() {}
        assert_eq!(rx.resume(t0, &[0, 1]), 2);
        // Its buffer is gone with its symbols: no longer one of the blocks held in memory.
        assert!(!rx.session.as_ref().unwrap().in_memory.contains(&1));
        let checked: Vec<u32> = std::iter::from_fn(|| rx.poll_event())
            .filter_map(|e| match e {
                ReceiverEvent::Check(job) => Some(job.block),
                _ => None,
            })
            .collect();
        assert_eq!(checked, [0, 1]);
        rx.handle_checked(t0, 0, true);
        rx.handle_checked(t0, 1, true);
        assert_eq!(rx.progress(), Some((2, 2)));
        assert_eq!(rx.stats().resumed_blocks, 2);
    }

    /// Found by fuzzing (`fuzz/regressions/receiver/decoded-after-already-complete`): a decode
    /// that finished after the shell found the file complete counted its block a second time.
    #[test]
    fn a_decode_after_already_complete_counts_nothing() {
        let t0 = Instant::now();
        let sender: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let file: Vec<u8> = (0..32).collect();
        let mut rx = Receiver::new(ReceiverConfig::default());
        let announce = Packet::Announce(lesson(32, 16, 2));
        let digests = Packet::Digests(Digests {
            first_block: 0,
            digests: vec![crate::wire::block_digest(&file)],
        });
        rx.handle_datagram(t0, sender, &announce.to_vec(9));
        rx.handle_datagram(t0, sender, &digests.to_vec(9));
        for esi in 0..2 {
            let symbol = &file[esi as usize * 16..][..16];
            let data = Packet::Data(Data {
                block: 0,
                esi,
                symbol,
            });
            rx.handle_datagram(t0, sender, &data.to_vec(9));
        }
        let job = std::iter::from_fn(|| rx.poll_event())
            .find_map(|e| match e {
                ReceiverEvent::Decode(job) => Some(job),
                _ => None,
            })
            .expect("a block with all its symbols and its digest is decoded");
        rx.already_complete(t0);
        assert_eq!(job.run(None).unwrap(), file);
        rx.handle_decoded(t0, Ok(0));
        assert_eq!(rx.progress(), Some((1, 1)));
    }
}
