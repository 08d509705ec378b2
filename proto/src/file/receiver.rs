//! The receiver's state machine (PROTOCOL.md, "Receiver rules").
//!
//! It joins the first session it hears announced, collects symbols per block, hands a block to the
//! shell for decoding as soon as it holds enough, reports what it lacks at a bounded, jittered rate,
//! and says when it is done. Memory is bounded: at most `buffered_blocks` blocks are held in full;
//! beyond that the least recently touched block's source symbols are spilled to the output file
//! (where they belong anyway) and read back when the block is decoded.

use crate::counters::Counters;
use crate::file::codec::{DecodeJob, SymbolSet};
use crate::file::layout::{Layout, MAX_BLOCKS};
use crate::rng::Rng;
use crate::wire::{
    Announce, Data, EndReason, MAX_NEED_ENTRIES, Need, NeedEntry, Packet, ReceiverState, Status,
};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    /// Never join these (sessions already received, when staying for more).
    pub skip_sessions: Vec<u32>,
    /// Mean time between NEED reports; each is jittered by +-50%.
    pub report_interval: Duration,
    pub status_interval: Duration,
    /// The sender is taken to be gone after this long without a packet of the session.
    pub sender_timeout: Duration,
    /// Blocks held in memory at once.
    pub buffered_blocks: usize,
    /// After the file is verified, how long to repeat "done" while waiting for the sender's ACK.
    pub finish_linger: Duration,
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
            finish_linger: Duration::from_secs(3),
        }
    }
}

/// What the receiver learned from the announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub session: u32,
    /// As announced: the shell must reduce it to a plain file name.
    pub name: String,
    /// `None` while the sender's source is still growing.
    pub size: Option<u64>,
    /// `None` until the sender has the whole source.
    pub md5: Option<[u8; 16]>,
    /// Bytes in a full block (T·K).
    pub block_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("the sender went silent: nothing heard from it for {0} s")]
    SenderGone(u64),
    #[error("the sender aborted the session")]
    Aborted,
    #[error(
        "the sender finished without this receiver (it was dropped as unresponsive, or joined too late)"
    )]
    LeftBehind,
}

#[derive(Debug)]
pub enum ReceiverEvent {
    /// A session was joined: the shell prepares the output file.
    Joined(SessionInfo),
    /// Write `data` at `offset` of the output file (spilled source symbols).
    Store {
        offset: u64,
        data: Vec<u8>,
    },
    /// Run the job (off the network path), write its result at `job.offset`, then call
    /// `handle_decoded`.
    Decode(DecodeJob),
    /// Every block is decoded: the shell cuts the file to `size`, checks that its MD5 is `md5`,
    /// and calls `verified`.
    Complete {
        size: u64,
        md5: [u8; 16],
    },
    /// The sender acknowledged (or the linger ran out): the receiver is done.
    Finished,
    Failed(ReceiveError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub symbols: u64,
    pub decode_failures: u64,
    pub spilled_blocks: u64,
    /// Symbols dropped to keep memory bounded (asked for again later).
    pub forgotten_symbols: u64,
    pub need_reports: u64,
    pub dropped: Counters,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Listening,
    Receiving,
    /// All blocks decoded; the shell is checking the MD5.
    Verifying,
    Finishing {
        until: Instant,
    },
    Finished,
    Failed,
}

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
}

#[derive(Debug)]
enum BlockRx {
    Empty,
    Pending(Box<Pending>),
    Decoding(Box<Pending>),
    Done,
}

struct Session {
    id: u32,
    announce: Announce,
    layout: Layout,
    feedback: SocketAddr,
    blocks: Vec<BlockRx>,
    done: u32,
    /// Every block below this one is done.
    low: u32,
    max_block_seen: Option<u32>,
    sent_blocks: u32,
    last_heard: Instant,
    next_report: Instant,
    next_status: Instant,
    hello_due: bool,
    /// Blocks whose `buf` is in memory.
    in_memory: Vec<u32>,
    /// Symbols held in `extra` lists, across blocks (not counting those lent to decode jobs).
    extra_held: usize,
    tick: u64,
    sender_ended: bool,
}

impl Session {
    /// Whether the sender has finished the block's first pass, so a shortfall is real loss.
    fn passed(&self, block: u32) -> bool {
        let w = self.announce.interleave as u32;
        block < self.sent_blocks || self.max_block_seen.is_some_and(|m| block / w < m / w)
    }
}

pub struct Receiver {
    cfg: ReceiverConfig,
    rng: Rng,
    phase: Phase,
    session: Option<Session>,
    failed_status_due: bool,
    events: VecDeque<ReceiverEvent>,
    stats: ReceiverStats,
}

impl Receiver {
    pub fn new(cfg: ReceiverConfig) -> Self {
        Receiver {
            rng: Rng::new(cfg.seed),
            cfg,
            phase: Phase::Listening,
            session: None,
            failed_status_due: false,
            events: VecDeque::new(),
            stats: ReceiverStats::default(),
        }
    }

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

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished | Phase::Failed)
    }

    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.events.pop_front()
    }

    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let (session, packet) = match Packet::parse(bytes) {
            Ok(p) => p,
            Err(e) => return self.stats.dropped.parse_error(e),
        };
        if let Packet::Announce(a) = &packet
            && self.session.is_none()
            && self.phase == Phase::Listening
            && self.cfg.session.is_none_or(|s| s == session)
            && !self.cfg.skip_sessions.contains(&session)
        {
            return self.join(now, from, session, a.clone());
        }
        let Some(s) = self.session.as_mut().filter(|s| s.id == session) else {
            self.stats.dropped.other_session += 1;
            return;
        };
        if matches!(self.phase, Phase::Finished | Phase::Failed) {
            self.stats.dropped.unexpected += 1;
            return;
        }
        s.last_heard = now;
        match packet {
            Packet::Announce(a) => self.on_announce(a),
            Packet::Data(d) => self.on_data(d),
            Packet::End(e) => self.on_end(e.reason),
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

    fn join(&mut self, now: Instant, from: SocketAddr, id: u32, announce: Announce) {
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
        let jitter = self.jitter();
        let session = Session {
            id,
            feedback: announce.feedback.resolve(from),
            blocks: (0..slots).map(|_| BlockRx::Empty).collect(),
            done: 0,
            low: 0,
            max_block_seen: None,
            sent_blocks: announce.sent_blocks,
            last_heard: now,
            next_report: now + jitter,
            next_status: now + self.cfg.status_interval,
            hello_due: true,
            in_memory: Vec::new(),
            extra_held: 0,
            tick: 0,
            sender_ended: false,
            layout,
            announce,
        };
        self.events.push_back(ReceiverEvent::Joined(SessionInfo {
            session: id,
            name: session.announce.name.clone(),
            size: session.announce.file_size,
            md5: session.announce.md5,
            block_bytes: layout.block_bytes(),
        }));
        self.phase = Phase::Receiving;
        self.session = Some(session);
        self.check_complete();
    }

    /// A repeated ANNOUNCE: progress, and for a growing source perhaps the size and MD5 at last.
    fn on_announce(&mut self, a: Announce) {
        let s = self.session.as_mut().expect("caller checked");
        let known = &s.announce;
        // Everything as first announced, except progress and what was unknown and is now known.
        let consistent = (known.file_size.is_none() || known.file_size == a.file_size)
            && (known.md5.is_none() || known.md5 == a.md5)
            && Announce {
                file_size: known.file_size,
                md5: known.md5,
                sent_blocks: known.sent_blocks,
                ..a.clone()
            } == *known;
        if !consistent {
            self.stats.dropped.out_of_range += 1;
            return;
        }
        s.sent_blocks = s.sent_blocks.max(a.sent_blocks);
        if let (None, Some(size)) = (s.layout.file_size(), a.file_size) {
            let Ok(layout) = s.layout.finish(size) else {
                self.stats.dropped.out_of_range += 1;
                return;
            };
            let n = layout.num_blocks();
            // Slots past the end exist only if a confused or hostile peer sent such blocks.
            for slot in s.blocks.iter().skip(n as usize) {
                match slot {
                    BlockRx::Done => s.done -= 1,
                    BlockRx::Pending(p) => s.extra_held -= p.extra.len(),
                    _ => {}
                }
            }
            s.in_memory.retain(|&b| b < n);
            s.blocks.resize_with(n as usize, || BlockRx::Empty);
            s.low = s.low.min(n);
            s.layout = layout;
            s.announce.file_size = Some(size);
        }
        if s.announce.md5.is_none() {
            s.announce.md5 = a.md5;
        }
        self.check_complete();
    }

    /// Every block decoded, and the size and MD5 known: over to the shell's check.
    fn check_complete(&mut self) {
        let Some(s) = self.session.as_ref() else {
            return;
        };
        if let (Phase::Receiving, Some(size), Some(md5)) =
            (self.phase, s.layout.file_size(), s.announce.md5)
            && s.done == s.layout.num_blocks()
        {
            self.phase = Phase::Verifying;
            self.events.push_back(ReceiverEvent::Complete { size, md5 });
        }
    }

    fn jitter(&mut self) -> Duration {
        self.cfg.report_interval.mul_f64(0.5 + self.rng.unit())
    }

    fn on_data(&mut self, d: Data<'_>) {
        let s = self.session.as_mut().expect("caller checked");
        let layout = s.layout;
        // While the size is unknown, blocks may come a few windows ahead of what was announced,
        // no further: a hostile packet must not make the receiver allocate millions of slots.
        let limit = match layout.file_size() {
            Some(_) => layout.num_blocks(),
            None => {
                let ahead = s.max_block_seen.map_or(0, |m| m + 1).max(s.sent_blocks);
                ahead
                    .saturating_add(4 * s.announce.interleave as u32)
                    .min(MAX_BLOCKS)
            }
        };
        if d.block >= limit || d.symbol.len() != layout.symbol_size() as usize {
            self.stats.dropped.out_of_range += 1;
            return;
        }
        if s.blocks.len() <= d.block as usize {
            s.blocks
                .resize_with(d.block as usize + 1, || BlockRx::Empty);
        }
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
        let (BlockRx::Pending(p) | BlockRx::Decoding(p)) = &mut s.blocks[d.block as usize] else {
            unreachable!("the block was pending a moment ago");
        };
        if needs_buffer {
            p.buf = Some(vec![0; k as usize * layout.symbol_size() as usize]);
            s.in_memory.push(d.block);
        }
        match (&mut p.buf, is_source) {
            (Some(buf), true) => {
                let t = d.symbol.len();
                buf[d.esi as usize * t..][..t].copy_from_slice(d.symbol);
                p.have
                    .get_or_insert_with(|| SymbolSet::new(k as u16))
                    .insert(d.esi);
            }
            (None, true) if p.spilled && !decoding => {
                // A spilled block's source symbol goes where it belongs: into the file.
                let at = d.esi as usize * d.symbol.len();
                let end = (at + d.symbol.len()).min(layout.len(d.block));
                self.events.push_back(ReceiverEvent::Store {
                    offset: layout.offset(d.block) + at as u64,
                    data: d.symbol[..end - at].to_vec(),
                });
                p.have
                    .get_or_insert_with(|| SymbolSet::new(k as u16))
                    .insert(d.esi);
            }
            _ => {
                p.extra.push((d.esi, d.symbol.to_vec()));
                p.extra_esis.insert(d.esi);
                p.extra_source += is_source as u32;
                s.extra_held += 1;
            }
        }
        if !decoding && (p.all_source(k) || p.count() >= p.decode_at) {
            self.start_decode(d.block);
        }
        self.limit_extras(d.block);
    }

    /// Keeps the symbols held apart (repair, late source) within the same budget as the block
    /// buffers: past it, the least recently touched blocks forget theirs and will ask again.
    fn limit_extras(&mut self, current: u32) {
        let s = self.session.as_mut().expect("caller checked");
        // At least a few blocks' worth, so a block short of a few symbols survives the next
        // block's repair burst.
        let budget = self.cfg.buffered_blocks.max(4) * s.layout.block_symbols() as usize;
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
                s.extra_held -= p.extra.len();
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
        if s.in_memory.len() < self.cfg.buffered_blocks {
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
        let slot = &mut s.blocks[block as usize];
        let BlockRx::Pending(mut p) = std::mem::replace(slot, BlockRx::Empty) else {
            unreachable!("only pending blocks are decoded");
        };
        s.in_memory.retain(|&b| b != block);
        let k = s.layout.symbols(block);
        s.extra_held -= p.extra.len();
        let have = p.have.clone().unwrap_or_else(|| SymbolSet::new(k));
        let job = DecodeJob::new(
            &s.layout,
            block,
            p.buf.take(),
            have,
            std::mem::take(&mut p.extra),
        );
        p.decode_at = job.symbols() + 1;
        *slot = BlockRx::Decoding(p);
        self.events.push_back(ReceiverEvent::Decode(job));
    }

    /// The outcome of a `Decode` job: `Ok(block)` once its bytes are written to the file, or the
    /// job back if the symbols were not enough.
    pub fn handle_decoded(&mut self, _now: Instant, outcome: Result<u32, Box<DecodeJob>>) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let block = match &outcome {
            Ok(b) => *b,
            Err(job) => job.block,
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
        match outcome {
            Ok(_) => {
                s.extra_held -= p.extra.len();
                *slot = BlockRx::Done;
                s.done += 1;
                while matches!(s.blocks.get(s.low as usize), Some(BlockRx::Done)) {
                    s.low += 1;
                }
                self.check_complete();
            }
            Err(job) => {
                self.stats.decode_failures += 1;
                let mut job = *job;
                let late = std::mem::take(&mut p.extra);
                s.extra_held += job.extra.len();
                p.extra = std::mem::take(&mut job.extra);
                p.extra.extend(late);
                p.buf = job.source.take();
                p.spilled = false;
                if p.buf.is_some() {
                    s.in_memory.push(block);
                }
                let k = s.layout.symbols(block) as u32;
                let ready = p.count() >= p.decode_at || p.all_source(k);
                *slot = BlockRx::Pending(p);
                if ready {
                    self.start_decode(block);
                }
            }
        }
    }

    /// The shell's MD5 check of the whole file.
    pub fn verified(&mut self, now: Instant, ok: bool) {
        if ok {
            self.finishing(now);
        } else {
            self.fail();
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
            s.done = s.layout.num_blocks();
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

    /// Gives up (the shell hit an error it cannot recover from); tells the sender so it does not wait.
    pub fn fail(&mut self) {
        if self.session.is_some() {
            self.failed_status_due = true;
        }
        self.phase = Phase::Failed;
    }

    fn on_end(&mut self, reason: EndReason) {
        if let Some(s) = self.session.as_mut() {
            s.sender_ended = true;
        }
        match self.phase {
            Phase::Receiving => {
                self.phase = Phase::Failed;
                self.events.push_back(ReceiverEvent::Failed(match reason {
                    EndReason::Aborted => ReceiveError::Aborted,
                    EndReason::Complete => ReceiveError::LeftBehind,
                }));
            }
            Phase::Finishing { .. } => self.finish(),
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Receiving => {
                let s = self.session.as_ref().expect("receiving has a session");
                if now.saturating_duration_since(s.last_heard) > self.cfg.sender_timeout {
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

    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self.session.as_ref()?;
        match self.phase {
            Phase::Receiving => Some(
                s.next_report
                    .min(s.next_status)
                    .min(s.last_heard + self.cfg.sender_timeout),
            ),
            // The MD5 check may take a while: keep telling the sender we are alive.
            Phase::Verifying => Some(s.next_status),
            Phase::Finishing { until } => Some(until.min(s.next_status)),
            _ => None,
        }
    }

    /// The next feedback datagram, written into `buf`, and the sender's address to send it to.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        buf.clear();
        let status_interval = self.cfg.status_interval;
        let state = match self.phase {
            Phase::Failed if self.failed_status_due => {
                self.failed_status_due = false;
                ReceiverState::Failed
            }
            Phase::Finishing { .. } => ReceiverState::Done,
            Phase::Receiving | Phase::Verifying => ReceiverState::Receiving,
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
                blocks_done: s.done,
                name: self.cfg.name.clone(),
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
        let budget =
            (self.cfg.buffered_blocks.max(4) * s.layout.block_symbols() as usize / 2) as u32;
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

/// The blocks a receiver lacks among those whose first pass is over, lowest first, until their
/// needs add up to `budget` symbols (at least one block).
fn needs(s: &Session, budget: u32) -> Vec<NeedEntry> {
    let mut entries = Vec::new();
    let mut asked = 0;
    for block in s.low..s.layout.num_blocks() {
        if !s.passed(block) || entries.len() == MAX_NEED_ENTRIES || asked >= budget {
            break;
        }
        let k = s.layout.symbols(block) as u32;
        let (need, seen) = match s.blocks.get(block as usize) {
            None | Some(BlockRx::Empty) => (k + 1, 0),
            Some(BlockRx::Pending(p)) if !p.all_source(k) => {
                (p.decode_at.saturating_sub(p.count()), p.seen)
            }
            _ => continue,
        };
        if need > 0 {
            asked += need;
            entries.push(NeedEntry {
                block,
                need: need.min(u16::MAX as u32) as u16,
                seen,
            });
        }
    }
    entries
}
