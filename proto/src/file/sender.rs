//! The sender's state machine (PROTOCOL.md, "Sender rules").
//!
//! It announces the file, waits for receivers, sends every block's source symbols once (interleaved
//! over a window of blocks, plus a small proactive margin of repair symbols), then answers NEED
//! reports with fresh repair symbols: per block, as many as the neediest receiver still lacks plus a
//! margin, so its cost does not grow with the number of receivers.

use crate::counters::Counters;
use crate::file::codec::{BlockEncoder, Plans};
use crate::file::layout::{Layout, LayoutError};
use crate::wire::{
    Ack, Announce, Data, End, EndReason, FeedbackAddr, MAX_ESI, Need, Packet, ReceiverState, Status,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Highest loss rate a repair burst is sized for: a receiver losing more asks again.
const MAX_LOSS: f64 = 0.5;

/// How many END packets the sender repeats when it leaves (they may be lost).
const END_REPEATS: u8 = 3;
const END_SPACING: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("interleave must be at least 1 block")]
    Interleave,
    #[error("proactive repair {0} is outside 0..=1")]
    Proactive(f64),
    #[error("the feedback port must not be 0")]
    FeedbackPort,
}

#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub session: u32,
    /// T.
    pub symbol_size: u16,
    /// K.
    pub block_symbols: u16,
    /// W: blocks interleaved in the first pass, so a loss burst is spread over W blocks.
    pub interleave: u16,
    /// Repair symbols sent with every block in the first pass, as a fraction of its K.
    pub proactive: f64,
    /// Start sending once this many receivers have said hello ...
    pub min_receivers: usize,
    /// ... or once this much time has passed, if set.
    pub wait: Option<Duration>,
    pub announce_interval: Duration,
    /// A receiver not heard from for this long is dropped and counted as not done.
    pub receiver_timeout: Duration,
    /// A NEED that arrives within this long of the block's last repair symbol is taken to have been
    /// written before those symbols arrived: they are subtracted from it.
    pub repair_holdoff: Duration,
    /// With no receiver known, how long after the first pass the sender stays for late hellos.
    pub linger: Duration,
    pub feedback: FeedbackAddr,
    /// Blocks whose bytes (and encoder) are kept in memory at once, beyond the interleave window.
    pub cached_blocks: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            session: 1,
            symbol_size: 1408,
            block_symbols: 1024,
            interleave: 8,
            proactive: 0.01,
            min_receivers: 1,
            wait: None,
            announce_interval: Duration::from_millis(200),
            receiver_timeout: Duration::from_secs(5),
            repair_holdoff: Duration::from_millis(100),
            linger: Duration::from_secs(2),
            feedback: FeedbackAddr::Source { port: 1 },
            cached_blocks: 4,
        }
    }
}

/// What is sent: one file.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub name: String,
    /// `None` for a growing source of unknown size (a download without Content-Length).
    pub size: Option<u64>,
    /// `None` until the source has ended.
    pub md5: Option<[u8; 16]>,
}

/// A growing source ended in a way that contradicts what was announced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("the source ended at {got} bytes, but its size was announced as {announced}")]
    SizeMismatch { announced: u64, got: u64 },
    #[error("the source ended at {got} bytes, after {had} bytes had already been sent")]
    Shrunk { had: u64, got: u64 },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The session's multicast group.
    Group,
    /// One receiver.
    Unicast(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    /// The shell must read `len` bytes at `offset` and pass them to `supply_block`.
    NeedBlock {
        block: u32,
        offset: u64,
        len: usize,
    },
    ReceiverJoined {
        id: u32,
    },
    ReceiverDone {
        id: u32,
    },
    ReceiverFailed {
        id: u32,
    },
    ReceiverDropped {
        id: u32,
    },
    /// The first pass began.
    Started,
    /// END has been sent; the session is over.
    Finished,
}

/// What the sender knows of one receiver.
#[derive(Debug, Clone)]
pub struct ReceiverInfo {
    pub id: u32,
    pub addr: SocketAddr,
    pub name: String,
    pub state: ReceiverState,
    pub blocks_done: u32,
    /// Silent past the timeout: given up on.
    pub dropped: bool,
    last_heard: Instant,
}

impl ReceiverInfo {
    /// Still expected to finish.
    fn pending(&self) -> bool {
        !self.dropped && matches!(self.state, ReceiverState::Hello | ReceiverState::Receiving)
    }
}

/// Counts for the summary and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderStats {
    pub source_symbols: u64,
    pub repair_symbols: u64,
    pub control_packets: u64,
    /// Bytes of every datagram the sender produced (UDP payload).
    pub bytes: u64,
    pub need_reports: u64,
    pub dropped: Counters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Sending,
    Ending { left: u8, next: Instant },
    Finished,
}

/// Repair bookkeeping of one block.
#[derive(Debug, Clone, Default)]
struct BlockTx {
    /// Next fresh ESI.
    next_esi: u32,
    /// When its last symbol was sent.
    last_sent: Option<Instant>,
    /// Largest need reported since its last repair burst, after in-flight symbols, scaled up by
    /// the reporting receiver's loss rate.
    pending: u32,
    queued: bool,
}

/// A run of repair symbols for one block, being sent.
#[derive(Debug, Clone, Copy)]
struct Burst {
    block: u32,
    next: u32,
    end: u32,
}

/// The first pass: window [start, end) sent symbol-major, so consecutive packets hit different blocks.
#[derive(Debug, Clone, Copy)]
struct Pass {
    start: u32,
    end: u32,
    esi: u32,
    block: u32,
    /// Most symbols any block of the window sends in this pass.
    width: u32,
}

pub struct Sender {
    cfg: SenderConfig,
    name: String,
    md5: Option<[u8; 16]>,
    layout: Layout,
    /// Blocks whose bytes are all readable.
    available: u32,
    /// The source has ended: `available` covers the file, and its size and MD5 are known.
    source_done: bool,
    phase: Phase,
    end_reason: EndReason,
    created: Instant,
    started_at: Option<Instant>,
    pass: Pass,
    pass_done_at: Option<Instant>,
    blocks: Vec<BlockTx>,
    repair: VecDeque<u32>,
    burst: Option<Burst>,
    last_was_repair: bool,
    /// Blocks in memory, least recently used first.
    cache: VecDeque<(u32, BlockEncoder)>,
    loading: Vec<u32>,
    plans: Plans,
    receivers: BTreeMap<u32, ReceiverInfo>,
    next_announce: Instant,
    acks: VecDeque<(SocketAddr, u32)>,
    /// The session does not end before this (see `hold_until`).
    hold: Option<Instant>,
    events: VecDeque<SenderEvent>,
    stats: SenderStats,
}

impl Sender {
    /// A sender of a whole file, all of it readable now (`file.size` and `file.md5` are set).
    pub fn new(cfg: SenderConfig, file: FileInfo, now: Instant) -> Result<Self, ConfigError> {
        let mut s = Sender::growing(cfg, file, now)?;
        if s.md5.is_some() {
            s.source_done = true;
            s.set_available(now, s.layout.num_blocks());
        }
        Ok(s)
    }

    /// A sender of a source that is still arriving (a download): blocks are sent as
    /// `source_grew` makes them available, and the size (if unknown) and MD5 are announced once
    /// `source_ended` is called.
    pub fn growing(cfg: SenderConfig, file: FileInfo, now: Instant) -> Result<Self, ConfigError> {
        let layout = match file.size {
            Some(size) => Layout::new(size, cfg.symbol_size, cfg.block_symbols)?,
            None => Layout::open(cfg.symbol_size, cfg.block_symbols)?,
        };
        if cfg.interleave == 0 {
            return Err(ConfigError::Interleave);
        }
        if !(0.0..=1.0).contains(&cfg.proactive) {
            return Err(ConfigError::Proactive(cfg.proactive));
        }
        if matches!(
            cfg.feedback,
            FeedbackAddr::Source { port: 0 } | FeedbackAddr::V4(_, 0) | FeedbackAddr::V6(_, 0)
        ) {
            return Err(ConfigError::FeedbackPort);
        }
        let mut s = Sender {
            cfg,
            md5: file.md5.filter(|_| file.size.is_some()),
            name: file.name,
            layout,
            available: 0,
            source_done: false,
            phase: Phase::Waiting,
            end_reason: EndReason::Complete,
            created: now,
            started_at: None,
            pass: Pass {
                start: 0,
                end: 0,
                esi: 0,
                block: 0,
                width: 0,
            },
            pass_done_at: None,
            blocks: Vec::new(),
            repair: VecDeque::new(),
            burst: None,
            last_was_repair: false,
            cache: VecDeque::new(),
            loading: Vec::new(),
            plans: Plans::default(),
            receivers: BTreeMap::new(),
            next_announce: now,
            acks: VecDeque::new(),
            hold: None,
            events: VecDeque::new(),
            stats: SenderStats::default(),
        };
        s.maybe_start(now);
        Ok(s)
    }

    /// The source now has `bytes` bytes readable from its start.
    pub fn source_grew(&mut self, now: Instant, bytes: u64) {
        if self.source_done {
            return;
        }
        let full = (bytes / self.layout.block_bytes()).min(self.layout.num_blocks() as u64);
        self.set_available(now, full as u32);
    }

    /// The source is complete: `size` bytes with this MD5. The final ANNOUNCE goes out at once.
    pub fn source_ended(
        &mut self,
        now: Instant,
        size: u64,
        md5: [u8; 16],
    ) -> Result<(), SourceError> {
        if self.source_done {
            return Ok(());
        }
        match self.layout.file_size() {
            Some(announced) if announced != size => {
                return Err(SourceError::SizeMismatch {
                    announced,
                    got: size,
                });
            }
            Some(_) => {}
            None => {
                let had = self.available as u64 * self.layout.block_bytes();
                if size < had {
                    return Err(SourceError::Shrunk { had, got: size });
                }
                self.layout = self.layout.finish(size)?;
            }
        }
        self.md5 = Some(md5);
        self.source_done = true;
        self.next_announce = now;
        self.set_available(now, self.layout.num_blocks());
        Ok(())
    }

    fn set_available(&mut self, now: Instant, blocks: u32) {
        self.available = self.available.max(blocks);
        while (self.blocks.len() as u32) < self.available {
            let b = self.blocks.len() as u32;
            self.blocks.push(BlockTx {
                next_esi: first_pass_symbols(&self.layout, &self.cfg, b),
                ..BlockTx::default()
            });
        }
        // The first pass was waiting for this window's bytes.
        let p = self.pass;
        if self.phase == Phase::Sending && p.start == p.end && self.pass_done_at.is_none() {
            self.open_window(p.start, now);
        }
        self.maybe_start(now);
    }

    /// Keeps the session open until `t` even if every receiver it knows is done: a receiver was
    /// just told to join (the download manager's OFFER) and has not said hello yet.
    pub fn hold_until(&mut self, t: Instant) {
        self.hold = self.hold.max(Some(t));
    }

    /// Whether the whole source is readable, and its size and MD5 known.
    pub fn source_done(&self) -> bool {
        self.source_done
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    pub fn receivers(&self) -> impl Iterator<Item = &ReceiverInfo> {
        self.receivers.values()
    }

    /// Blocks whose first pass is complete.
    pub fn sent_blocks(&self) -> u32 {
        self.pass.start
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// When the first pass began.
    pub fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    /// When the first pass ended (every block sent once).
    pub fn first_pass_done_at(&self) -> Option<Instant> {
        self.pass_done_at
    }

    /// Feedback from a receiver. Anything malformed, foreign or not ours is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let (session, packet) = match Packet::parse(bytes) {
            Ok(p) => p,
            Err(e) => return self.stats.dropped.parse_error(e),
        };
        if session != self.cfg.session {
            self.stats.dropped.other_session += 1;
            return;
        }
        match packet {
            Packet::Status(s) => self.on_status(now, from, s),
            Packet::Need(n) => self.on_need(now, from, n),
            _ => self.stats.dropped.unexpected += 1,
        }
    }

    fn touch_receiver(&mut self, now: Instant, from: SocketAddr, id: u32) -> &mut ReceiverInfo {
        let events = &mut self.events;
        let r = self.receivers.entry(id).or_insert_with(|| {
            events.push_back(SenderEvent::ReceiverJoined { id });
            ReceiverInfo {
                id,
                addr: from,
                name: String::new(),
                state: ReceiverState::Hello,
                blocks_done: 0,
                dropped: false,
                last_heard: now,
            }
        });
        r.last_heard = now;
        r.addr = from;
        r.dropped = false;
        r
    }

    fn on_status(&mut self, now: Instant, from: SocketAddr, s: Status) {
        let num_blocks = self.layout.num_blocks();
        let r = self.touch_receiver(now, from, s.receiver);
        r.name = s.name;
        r.blocks_done = s.blocks_done.min(num_blocks);
        let was = r.state;
        // Done and Failed are final: a late, reordered Receiving must not undo them.
        if !matches!(was, ReceiverState::Done | ReceiverState::Failed) {
            r.state = s.state;
        }
        let state = r.state;
        if matches!(s.state, ReceiverState::Done | ReceiverState::Failed) {
            self.acks.push_back((from, s.receiver));
        }
        if was != state {
            match state {
                ReceiverState::Done => self
                    .events
                    .push_back(SenderEvent::ReceiverDone { id: s.receiver }),
                ReceiverState::Failed => self
                    .events
                    .push_back(SenderEvent::ReceiverFailed { id: s.receiver }),
                _ => {}
            }
        }
        self.maybe_start(now);
        self.maybe_finish(now);
    }

    fn on_need(&mut self, now: Instant, from: SocketAddr, need: Need) {
        self.stats.need_reports += 1;
        self.touch_receiver(now, from, need.receiver);
        if matches!(self.phase, Phase::Waiting) {
            self.maybe_start(now);
        }
        for e in need.entries {
            // Only blocks whose first pass is over can be repaired.
            if e.block >= self.pass.start {
                self.stats.dropped.out_of_range += 1;
                continue;
            }
            let k = self.layout.symbols(e.block) as u32;
            let tx = &mut self.blocks[e.block as usize];
            if e.need as u32 > k + 1 || e.seen > tx.next_esi {
                self.stats.dropped.out_of_range += 1;
                continue;
            }
            let recent = tx
                .last_sent
                .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.repair_holdoff);
            let in_flight = if recent { tx.next_esi - e.seen } else { 0 };
            let need = (e.need as u32).saturating_sub(in_flight);
            // The repair reaches this receiver through the same loss it reported: of the `seen`
            // symbols sent, it holds about K + 1 - need. Ask enough that what survives is enough.
            let held = (k + 1).saturating_sub(e.need as u32).min(e.seen);
            let loss = if e.seen > 0 {
                (1.0 - held as f64 / e.seen as f64).clamp(0.0, MAX_LOSS)
            } else {
                0.0
            };
            let need = (need as f64 / (1.0 - loss)).ceil() as u32;
            tx.pending = tx.pending.max(need);
            if tx.pending > 0 && !tx.queued {
                tx.queued = true;
                self.repair.push_back(e.block);
            }
        }
    }

    /// The block's bytes, asked for with `SenderEvent::NeedBlock`.
    pub fn supply_block(&mut self, block: u32, data: Vec<u8>) {
        self.loading.retain(|&b| b != block);
        if block >= self.available || data.len() != self.layout.len(block) {
            return;
        }
        let limit = self.cfg.cached_blocks + self.cfg.interleave as usize;
        while self.cache.len() >= limit {
            self.cache.pop_front();
        }
        self.cache
            .push_back((block, BlockEncoder::new(&self.layout, block, data)));
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.hold.is_some_and(|h| now >= h) {
            self.hold = None;
        }
        for r in self.receivers.values_mut() {
            if r.pending()
                && now.saturating_duration_since(r.last_heard) > self.cfg.receiver_timeout
            {
                r.dropped = true;
                self.events
                    .push_back(SenderEvent::ReceiverDropped { id: r.id });
            }
        }
        self.maybe_start(now);
        self.maybe_finish(now);
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = match self.phase {
            Phase::Finished => return None,
            Phase::Ending { next, .. } => return Some(next),
            Phase::Waiting => match self.cfg.wait {
                Some(wait) => self.next_announce.min(self.created + wait),
                None => self.next_announce,
            },
            Phase::Sending => self.next_announce,
        };
        for r in self.receivers.values().filter(|r| r.pending()) {
            t = t.min(r.last_heard + self.cfg.receiver_timeout);
        }
        if let (Some(done), true) = (self.pass_done_at, self.receivers.is_empty()) {
            t = t.min(done + self.cfg.linger);
        }
        if let Some(hold) = self.hold {
            t = t.min(hold);
        }
        Some(t)
    }

    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    /// Stops the session now: END (aborted) is sent and nothing else.
    pub fn abort(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Ending { .. } | Phase::Finished) {
            self.end(now, EndReason::Aborted);
        }
    }

    /// The next datagram to send, written into `buf`, and where it goes. `None` means nothing is due
    /// now: wait for `poll_timeout`, a datagram, or (after a `NeedBlock` event) `supply_block`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Destination> {
        buf.clear();
        if let Some((to, id)) = self.acks.pop_front() {
            let ack = Packet::Ack(Ack { receiver: id });
            return Some(self.control(&ack, buf, Destination::Unicast(to)));
        }
        match self.phase {
            Phase::Finished => return None,
            Phase::Ending { left, next } => {
                if now < next {
                    return None;
                }
                self.phase = if left > 1 {
                    Phase::Ending {
                        left: left - 1,
                        next: now + END_SPACING,
                    }
                } else {
                    self.events.push_back(SenderEvent::Finished);
                    Phase::Finished
                };
                let end = Packet::End(End {
                    reason: self.end_reason,
                });
                return Some(self.control(&end, buf, Destination::Group));
            }
            Phase::Waiting | Phase::Sending => {}
        }
        if now >= self.next_announce {
            self.next_announce = now + self.cfg.announce_interval;
            let announce = Packet::Announce(self.announce());
            return Some(self.control(&announce, buf, Destination::Group));
        }
        if self.phase != Phase::Sending {
            return None;
        }
        let (block, esi, repair) = self.next_symbol()?;
        let Some(at) = self.cache.iter().position(|(b, _)| *b == block) else {
            self.load(block);
            return None;
        };
        // Most recently used last.
        let entry = self.cache.remove(at).expect("position is in range");
        self.cache.push_back(entry);
        let enc = &mut self.cache.back_mut().expect("just pushed").1;
        // The window's proactive repair symbols all come at its end; building their encoders
        // there would stall the stream for W encoder builds at once. Build block i of the window
        // when the pass reaches ESI i*K/W instead, one short pause at a time.
        if !repair && self.cfg.proactive > 0.0 {
            let spread = (self.layout.block_symbols() / self.cfg.interleave.max(1)) as u32;
            if esi >= (block - self.pass.start) * spread {
                enc.prepare(&self.layout, &mut self.plans);
            }
        }
        Packet::Data(Data {
            block,
            esi,
            symbol: &[],
        })
        .write(self.cfg.session, buf);
        enc.write_symbol(&self.layout, &mut self.plans, esi, buf);
        if esi < enc.symbols() as u32 {
            self.stats.source_symbols += 1;
        } else {
            self.stats.repair_symbols += 1;
        }
        self.stats.bytes += buf.len() as u64;
        self.blocks[block as usize].last_sent = Some(now);
        self.advance(now, repair);
        Some(Destination::Group)
    }

    fn control(&mut self, packet: &Packet<'_>, buf: &mut Vec<u8>, to: Destination) -> Destination {
        packet.write(self.cfg.session, buf);
        self.stats.control_packets += 1;
        self.stats.bytes += buf.len() as u64;
        to
    }

    fn announce(&self) -> Announce {
        Announce {
            file_size: self.layout.file_size(),
            md5: self.md5,
            padded: self.layout.padded(),
            symbol_size: self.layout.symbol_size(),
            block_symbols: self.layout.block_symbols(),
            interleave: self.cfg.interleave,
            sent_blocks: self.pass.start,
            feedback: self.cfg.feedback,
            name: self.name.clone(),
        }
    }

    fn load(&mut self, block: u32) {
        if !self.loading.contains(&block) {
            self.loading.push(block);
            self.events.push_back(SenderEvent::NeedBlock {
                block,
                offset: self.layout.offset(block),
                len: self.layout.len(block),
            });
        }
    }

    /// The symbol to send next, and whether it is repair: a repair burst in progress, else a new
    /// burst for the oldest block that needs one, else the first pass. While the first pass is
    /// still going, repair and first-pass symbols take turns, so heavy repair (a late joiner, one
    /// terrible receiver) slows the class at most by half, never stops it.
    fn next_symbol(&mut self) -> Option<(u32, u32, bool)> {
        let pass = (self.pass.start < self.pass.end).then_some((self.pass.block, self.pass.esi));
        if let (Some((block, esi)), true) = (pass, self.last_was_repair) {
            return Some((block, esi, false));
        }
        if self.burst.is_none()
            && let Some(block) = self.repair.pop_front()
        {
            let tx = &mut self.blocks[block as usize];
            tx.queued = false;
            let count = tx.pending + repair_margin(tx.pending);
            tx.pending = 0;
            let end = tx.next_esi.saturating_add(count).min(MAX_ESI + 1);
            self.burst = Some(Burst {
                block,
                next: tx.next_esi,
                end,
            });
            tx.next_esi = end;
        }
        if let Some(b) = self.burst {
            if b.next < b.end {
                return Some((b.block, b.next, true));
            }
            self.burst = None;
            return self.next_symbol();
        }
        pass.map(|(block, esi)| (block, esi, false))
    }

    /// Moves past the symbol just sent.
    fn advance(&mut self, now: Instant, repair: bool) {
        self.last_was_repair = repair;
        if repair {
            if let Some(b) = &mut self.burst {
                b.next += 1;
                if b.next >= b.end {
                    self.burst = None;
                }
            }
            return;
        }
        self.pass.block += 1;
        self.settle_pass(now);
    }

    /// Moves the pass cursor to the next symbol that exists (the last block may be short), opening
    /// the next window when one is finished.
    fn settle_pass(&mut self, now: Instant) {
        loop {
            let p = &mut self.pass;
            if p.start >= p.end {
                return;
            }
            if p.block >= p.end {
                p.block = p.start;
                p.esi += 1;
            }
            if p.esi >= p.width {
                self.open_window(self.pass.end, now);
                continue;
            }
            if p.esi < first_pass_symbols(&self.layout, &self.cfg, p.block) {
                return;
            }
            p.block += 1;
        }
    }

    fn open_window(&mut self, start: u32, now: Instant) {
        let end = start
            .saturating_add(self.cfg.interleave as u32)
            .min(self.layout.num_blocks());
        if end > self.available {
            // A growing source: wait (repairing older blocks meanwhile) until the whole window
            // has arrived, so it is still interleaved over W blocks.
            self.pass = Pass {
                start,
                end: start,
                esi: 0,
                block: start,
                width: 0,
            };
            return;
        }
        let width = (start..end)
            .map(|b| first_pass_symbols(&self.layout, &self.cfg, b))
            .max()
            .unwrap_or(0);
        self.pass = Pass {
            start,
            end,
            esi: 0,
            block: start,
            width,
        };
        if start >= end {
            // Receivers learn at once that every block has had its first pass.
            self.pass_done_at = Some(now);
            self.next_announce = now;
            return;
        }
        for b in start..end {
            if !self.cache.iter().any(|(c, _)| *c == b) {
                self.load(b);
            }
        }
    }

    fn maybe_start(&mut self, now: Instant) {
        if self.phase != Phase::Waiting {
            return;
        }
        let hello = self.receivers.values().filter(|r| !r.dropped).count();
        let waited = self.cfg.wait.is_some_and(|w| now >= self.created + w);
        if hello >= self.cfg.min_receivers || waited {
            self.phase = Phase::Sending;
            self.started_at = Some(now);
            self.events.push_back(SenderEvent::Started);
            self.open_window(0, now);
        }
    }

    /// Ends the session once no known receiver is still expected (all done, failed or dropped); with
    /// none known at all, the linger time after the first pass.
    fn maybe_finish(&mut self, now: Instant) {
        if self.phase != Phase::Sending || self.hold.is_some() {
            return;
        }
        // Receivers known and none still expected: over, even mid-pass (they all had the file).
        let finished = if self.receivers.is_empty() {
            self.pass_done_at
                .is_some_and(|done| now >= done + self.cfg.linger)
        } else {
            !self.receivers.values().any(ReceiverInfo::pending)
        };
        if finished {
            self.end(now, EndReason::Complete);
        }
    }

    fn end(&mut self, now: Instant, reason: EndReason) {
        self.end_reason = reason;
        self.phase = Phase::Ending {
            left: END_REPEATS,
            next: now,
        };
    }
}

/// Symbols of `block` in the first pass: its K plus the proactive repair margin.
fn first_pass_symbols(layout: &Layout, cfg: &SenderConfig, block: u32) -> u32 {
    let k = layout.symbols(block) as u32;
    k + (k as f64 * cfg.proactive).ceil() as u32
}

/// Extra repair symbols on top of the largest reported need, so that the neediest receiver usually
/// completes in one round even though some of the repair is lost too.
fn repair_margin(need: u32) -> u32 {
    if need == 0 { 0 } else { 2 + need / 16 }
}
