//! The sender's state machine (PROTOCOL.md, "Sender rules").
//!
//! It announces the file, waits for receivers, sends every block's source symbols once (interleaved
//! over W blocks at a time, plus a small proactive margin of repair symbols), then answers NEED
//! reports with fresh repair symbols: per block, as many as the neediest receiver still lacks plus a
//! margin, so its cost does not grow with the number of receivers. Each block's digest goes out
//! before the block; a block that failed its digest somewhere is repaired with its symbols' hashes
//! first. With a key, everything that changes what a receiver does is signed; with `--encrypt`,
//! every symbol is sealed.

use super::cc::{self, CcConfig, RateControl, Report};
use super::codec::{BlockEncoder, Plans};
use super::crypt::{self, SessionKey};
use super::fec::{self, Fec};
use super::layout::{Layout, LayoutError};
use super::peers::{Hello, Limits, Peers, Unheard};
use crate::auth::{PublicKey, Seal, Signer};
use crate::counters::Counters;
use crate::wire::{
    Ack, Announce, BlockDigest, DATA_OVERHEAD, Data, Digests, End, EndReason, FeedbackAddr,
    FileDigests, Hashes, Keys, MAX_DIGESTS, MAX_ESI, MAX_HASHES, MAX_KEY_WRAPS, Need, NeedEntry,
    Pace, Packet, ReceiverState, Status, block_digest, symbol_hash,
};
use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use super::peers::ReceiverInfo;

/// Highest loss rate a repair burst is sized for: a receiver losing more asks again.
const MAX_LOSS: f64 = 0.5;

/// Bytes a session may send, in files, while the only receivers still expected lose more than the
/// sender follows and none has the file (one PC on bad Wi-Fi, or a class that all loses that
/// much): they are repaired as any other until then, and left behind past it (PROTOCOL.md 5.8).
/// Fountain codes make 85% loss decodable at about 6.7 files; 90% needs 10.
pub const LAGGING_BUDGET: f64 = 12.0;
/// ... and a receiver that reports more loss than this would need over 14 files: once the first
/// pass is over and the linger has passed, it is left behind, not sent the budget for nothing.
const HOPELESS_LOSS: f64 = 0.93;

/// How many END packets the sender repeats when it leaves (they may be lost).
const END_REPEATS: u8 = 3;
const END_SPACING: Duration = Duration::from_millis(20);
/// ... and at most, when it leaves behind a receiver that loses much of what is sent: as many as
/// reach it but for 1% of the time (`end_repeats`; 95% loss: 90), so it is told it was left
/// behind rather than finding the sender gone 10 s later; 1.8 s more for the teacher, only then.
const LAGGING_END_REPEATS: u8 = 90;

/// A receiver silent this long (honest ones report every half second) does not keep a class that
/// is otherwise done waiting for `receiver_timeout`: it is dropped then. (A PC that said hello and
/// fell silent, or a fake hello, costs the class this much, not the whole timeout.)
const QUIET: Duration = Duration::from_secs(1);

/// Blocks read at once only for their digest (`skip_first_pass`): the shell reads each before it
/// sends on.
const MAX_UNREAD: usize = 16;

/// How long before the hashes of a block's symbols are sent again although none were sent since:
/// some may have been lost.
const HASHES_AGAIN: Duration = Duration::from_secs(1);

/// How long before a sync session's manifest symbols go out again for a receiver that still lacks
/// some (they may be on their way).
const RESEND_AGAIN: Duration = Duration::from_secs(1);

/// How long a sync session's repair symbols that a receiver has not seen yet count as on their
/// way to it (at least the holdoff). Almost all of a sync session is repair, so a report that
/// lags behind the bursts (a busy PC, a queue) would otherwise ask for each burst again; a
/// symbol truly lost at a burst's tail waits this long to be asked for.
const SYNC_IN_FLIGHT: Duration = Duration::from_millis(500);

/// A sync session's report that lacks more than `STALE_TAIL` of the last symbols sent of a block
/// whose burst was made less than this ago was most likely made before they arrived (a PC busy
/// for longer than `SYNC_IN_FLIGHT`): they still count as on their way. Random loss takes a
/// burst's last `STALE_TAIL` + 1 symbols together too rarely (2% loss: 3 in 10^9) to say
/// otherwise; a whole burst truly lost (a port closed for a while) is asked for this much later.
const SYNC_STALE: Duration = Duration::from_secs(2);

/// See `SYNC_STALE`.
const STALE_TAIL: u32 = 4;

/// ACKs waiting to go out at most (each is the answer to a rate-limited STATUS).
const MAX_ACKS: usize = 1024;

/// Why a sender cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The block layout is impossible.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// W is 0.
    #[error("interleave must be at least 1 block")]
    Interleave,
    /// The proactive repair fraction is outside 0..=1.
    #[error("proactive repair {0} is outside 0..=1")]
    Proactive(f64),
    /// The adaptive first pass's loss cap is outside 0..=0.5.
    #[error("the first pass's loss cap {0} is outside 0..=0.5")]
    FecLoss(f64),
    /// The feedback port is 0.
    #[error("the feedback port must not be 0")]
    FeedbackPort,
    /// `--encrypt` without a receiver to encrypt for.
    #[error("an encrypted session needs at least one receiver's key (--to)")]
    NoRecipients,
    /// More receivers' keys than KEYS packets can carry.
    #[error("an encrypted session is sent to at most {MAX_RECIPIENTS} receivers' keys, not {0}")]
    TooManyRecipients(usize),
}

/// Receivers' keys one encrypted session can carry: 255 KEYS packets of `MAX_KEY_WRAPS`.
pub const MAX_RECIPIENTS: usize = u8::MAX as usize * MAX_KEY_WRAPS;

/// How a sender sends.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The session id, random.
    pub session: u32,
    /// T.
    pub symbol_size: u16,
    /// K.
    pub block_symbols: u16,
    /// W: blocks interleaved in the first pass, so a loss burst is spread over W blocks.
    pub interleave: u16,
    /// Repair symbols sent with every block in the first pass, as a fraction of its K: all of
    /// them with `Fec::Fixed`, the fewest with `Fec::Adaptive`.
    pub proactive: f64,
    /// How the first pass's repair is sized: fixed, or from the class's loss (PROTOCOL.md 5.10).
    pub fec: Fec,
    /// Start sending once this many receivers have said hello, and every receiver named in
    /// `wait_for` (a re-run for the PCs a session missed, `send --resume-from`) ...
    pub min_receivers: usize,
    /// ... (by the name in its STATUS) ...
    pub wait_for: Vec<String>,
    /// No first pass: from the start every block counts as sent, and each goes out only as the
    /// repair that receivers ask for. For a re-run to receivers that kept most of the file from
    /// an earlier session (`Receiver::resume`): they ask only for what they lack.
    pub skip_first_pass: bool,
    /// A sync session (`send --sync`, PROTOCOL.md 5.9), if set: the first pass carries only the
    /// source symbols of the stream's first this many bytes (a tree's manifest: receivers need
    /// it to find what they already have); every other symbol is repair, sent as receivers ask.
    pub sync: Option<u64>,
    /// ... or once this much time has passed, if set.
    pub wait: Option<Duration>,
    /// How often ANNOUNCE (and KEYS) are repeated.
    pub announce_interval: Duration,
    /// A receiver not heard from for this long is dropped and counted as not done.
    pub receiver_timeout: Duration,
    /// A NEED that arrives within this long of the block's last repair symbol is taken to have been
    /// written before those symbols arrived: they are subtracted from it.
    pub repair_holdoff: Duration,
    /// With no receiver known, how long after the first pass the sender stays for late hellos.
    pub linger: Duration,
    /// Where receivers send feedback.
    pub feedback: FeedbackAddr,
    /// Blocks whose bytes (and encoder) are kept in memory at once, beyond the W in the first pass.
    pub cached_blocks: usize,
    /// Signs what changes a receiver's course, if set (`send --key`).
    pub signer: Option<Signer>,
    /// Seals every symbol for the listed receivers, if set (`send --encrypt --to`).
    pub encryption: Option<Encryption>,
    /// How much the sender takes from receivers.
    pub limits: Limits,
    /// Congestion control: PACE goes out and the rate (`Sender::rate`) follows the class; `None`
    /// sends at whatever the shell paces (`--cc off`).
    pub cc: Option<CcConfig>,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            session: 1,
            symbol_size: 1408,
            block_symbols: 1024,
            interleave: 8,
            proactive: 0.01,
            fec: Fec::default(),
            min_receivers: 1,
            wait_for: Vec::new(),
            skip_first_pass: false,
            sync: None,
            wait: None,
            announce_interval: Duration::from_millis(200),
            receiver_timeout: Duration::from_secs(5),
            repair_holdoff: Duration::from_millis(100),
            linger: Duration::from_secs(2),
            feedback: FeedbackAddr::Source { port: 1 },
            cached_blocks: 4,
            signer: None,
            encryption: None,
            limits: Limits::default(),
            cc: None,
        }
    }
}

/// An encrypted session's secrets, drawn by the shell from the operating system's randomness.
#[derive(Clone)]
pub struct Encryption {
    /// The session key.
    pub key: [u8; 32],
    /// The ephemeral X25519 secret that wraps it.
    pub ephemeral: [u8; 32],
    /// Who may open it.
    pub recipients: Vec<PublicKey>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encryption({} recipients)", self.recipients.len())
    }
}

/// What is sent: one file.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Its name, as announced.
    pub name: String,
    /// `None` for a growing source of unknown size (a download without Content-Length).
    pub size: Option<u64>,
    /// `None` until the source has ended.
    pub digests: Option<FileDigests>,
}

/// A growing source ended in a way that contradicts what was announced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// It has another size than announced.
    #[error("the source ended at {got} bytes, but its size was announced as {announced}")]
    SizeMismatch {
        /// As announced.
        announced: u64,
        /// As it ended.
        got: u64,
    },
    /// It ended before bytes already sent.
    #[error("the source ended at {got} bytes, after {had} bytes had already been sent")]
    Shrunk {
        /// Bytes already sent.
        had: u64,
        /// As it ended.
        got: u64,
    },
    /// Its size needs more blocks than the protocol allows.
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

/// What the sender tells the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    /// The shell must read `len` bytes at `offset` and pass them to `supply_block`: a whole
    /// block, or (a growing source) the next piece of the block being filled, which its reports
    /// (`source_grew`) say is in.
    NeedBlock {
        /// Which block.
        block: u32,
        /// Where it starts in the file.
        offset: u64,
        /// Its bytes.
        len: usize,
    },
    /// A receiver said hello.
    ReceiverJoined {
        /// Its id.
        id: u32,
    },
    /// A receiver said hello that is another's restart on the same PC (same name, same IP
    /// address, the other not done and stopped): it took the other's place, which is forgotten.
    ReceiverRestarted {
        /// Its id.
        id: u32,
        /// The id it replaces (no longer among `receivers()`).
        old: u32,
    },
    /// A receiver has the whole file.
    ReceiverDone {
        /// Its id.
        id: u32,
    },
    /// A receiver gave up (its `ReceiverInfo::reason` says why).
    ReceiverFailed {
        /// Its id.
        id: u32,
    },
    /// A receiver went silent and was dropped.
    ReceiverDropped {
        /// Its id.
        id: u32,
    },
    /// The session ended while a receiver that lost too much to be followed was still collecting.
    ReceiverLeftBehind {
        /// Its id.
        id: u32,
    },
    /// The first pass began.
    Started,
    /// END has been sent; the session is over.
    Finished,
}

/// Counts for the summary and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// DATA with a source symbol.
    pub source_symbols: u64,
    /// DATA with a repair symbol.
    pub repair_symbols: u64,
    /// Every other datagram.
    pub control_packets: u64,
    /// Bytes of every datagram the sender produced (UDP payload) ...
    pub bytes: u64,
    /// ... of which DATA with a source symbol ...
    pub source_bytes: u64,
    /// ... and DATA with a repair symbol (the rest is control).
    pub repair_bytes: u64,
    /// NEED reports taken.
    pub need_reports: u64,
    /// Hash-checked repair rounds (a block failed its digest at some receiver).
    pub verify_rounds: u64,
    /// Receivers that said hello and went silent, forgotten to make room in a full table.
    pub forgotten_receivers: u64,
    /// Receivers replaced by their restart on the same PC (counted once).
    pub restarted_receivers: u64,
    /// Datagrams dropped, by why.
    pub dropped: Counters,
}

/// Where a session is, as the teacher's screen says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPhase {
    /// Announcing, waiting for receivers (`min_receivers`, `wait`).
    Waiting,
    /// Sending every block once.
    FirstPass,
    /// Every block sent once; answering what receivers lack.
    Repairing,
    /// END is going out.
    Ending,
    /// END has gone out.
    Finished,
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
    /// F_b: the symbols its first pass sends (ESI 0 .. F_b − 1).
    first_pass: u32,
    /// Its first pass's repair is sized (5.10): done as the pass reaches ESI K_b.
    sized: bool,
    /// When its first and its last symbol were sent.
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    /// The largest need reported since its last repair burst (after in-flight symbols, scaled by
    /// the reporting receiver's loss), and from which address ...
    top: Option<(IpAddr, u32)>,
    /// ... and the largest from any other address: what two addresses ask for is sent in full.
    second: u32,
    queued: bool,
    /// Where its last repair burst began, and when it was made.
    burst: Option<(u32, Instant)>,
    /// When the hashes of its symbols last went out, and up to which ESI.
    hashes_sent: Option<(Instant, u32)>,
    digest: Option<BlockDigest>,
    /// Its digest went out before its first complete-block symbol of the pass (9.1).
    digest_passed: bool,
    digest_sent: Option<Instant>,
    /// A sync session: when its manifest symbols last went out again.
    resent: Option<Instant>,
}

impl BlockTx {
    fn ask(&mut self, ip: IpAddr, need: u32) {
        match self.top {
            Some((top_ip, top)) if top_ip == ip => self.top = Some((ip, top.max(need))),
            Some((_, top)) if need > top => {
                self.second = top;
                self.top = Some((ip, need));
            }
            Some(_) => self.second = self.second.max(need),
            None => self.top = Some((ip, need)),
        }
    }
}

/// A run of repair symbols for one block, being sent.
#[derive(Debug, Clone, Copy)]
struct Burst {
    block: u32,
    next: u32,
    end: u32,
}

/// The first pass (5.3): at most W blocks at a time, each sending its next first-pass ESI when its
/// turn is due, so consecutive packets hit different blocks and a loss burst is spread over them.
/// Blocks join in order as others leave; their turns are staggered, so they also leave one at a
/// time and receivers decode one block at a time, not W at once. A block of a growing source joins
/// as soon as its first symbol's bytes are in and sends its source symbols as their bytes arrive
/// (5.7).
#[derive(Debug, Clone, Default)]
struct Pass {
    /// The pass's first block (0, or N when there is no first pass).
    start: u32,
    /// N: recomputed when a growing source's N becomes known.
    end: u32,
    /// Blocks start..joined have joined (and maybe left) the pass.
    joined: u32,
    /// Blocks in the pass with first-pass symbols left (at most W, with `stalled`).
    turn: Vec<Slot>,
    /// Blocks below this have had their whole first pass: `sent_blocks`.
    passed: u32,
    /// The block a growing source is filling, out of the turn because the bytes of its next ESI
    /// are not in yet; it goes back in when they are.
    stalled: Option<Slot>,
    /// First-pass symbols sent so far: the pass's clock for `Slot::due`.
    sent: u64,
}

/// A block in the first pass: its next ESI, and when that is due.
#[derive(Debug, Clone, Copy)]
struct Slot {
    block: u32,
    esi: u32,
    /// `Pass::sent` when the block joined.
    since: u64,
    /// Pass symbols between two of its own: W in the steady state, fewer for the first blocks.
    step: u32,
}

impl Slot {
    /// The pass clock at which this block's next symbol is due.
    fn due(&self) -> u64 {
        self.since + (self.esi as u64 + 1) * self.step as u64
    }
}

impl Pass {
    /// Whether every block has had its whole first pass.
    fn finished(&self) -> bool {
        self.joined >= self.end && self.turn.is_empty() && self.stalled.is_none()
    }

    /// The slot whose symbol goes next: the one due first (the lower block on a tie).
    fn next(&self) -> Option<usize> {
        (self.turn.iter().enumerate())
            .min_by_key(|(_, s)| (s.due(), s.block))
            .map(|(i, _)| i)
    }

    /// The step of the block joining as the `i`th of the pass. In the steady state W blocks
    /// share the pass, each getting every W-th symbol; their ends are staggered by about one
    /// block's symbols because the first W ramp up: the i-th of them gets every (i + 1 + W/2)-th
    /// (as far as the others let it), so block 0 ends after about W/2 blocks' worth of symbols,
    /// block 1 about one block later, and so on, and each block after them joins as one leaves.
    fn step(i: u32, w: u32) -> u32 {
        if i < w { i + 1 + w / 2 } else { w }
    }
}

/// The bytes so far of the block a growing source is filling (the first one not complete), read
/// in pieces as they arrive: its source symbols go out before the block is complete (5.7).
#[derive(Debug, Clone)]
struct Partial {
    block: u32,
    data: Vec<u8>,
    /// The length of the piece asked for with `NeedBlock` and not supplied yet.
    asked: Option<usize>,
}

/// The sending side of a file session.
///
/// The contract, as in quinn-proto (time is passed in; nothing here blocks, reads a clock or
/// touches a socket):
/// - **Getters**: `layout`, `stats`, `receivers`, `sent_blocks`, `started_at`,
///   `first_pass_done_at`, `source_done`, `is_finished`, `fec_loss`, `first_pass_size`,
///   `repaired_blocks`.
/// - **Inputs**: `handle_datagram(now, from, bytes)` for feedback (STATUS, NEED) from the
///   sender's socket; `handle_timeout(now)` once `poll_timeout` has passed; `supply_block(block,
///   bytes)` after a `NeedBlock` event; `source_grew(now, bytes)` and `source_ended(now, size,
///   digests)` while a download arrives.
/// - **Commands**: `abort(now)`, `hold_until(t)`.
/// - **Outputs**: `poll_transmit(now, buf)` until `None` (the shell paces it), `poll_timeout()`,
///   `poll_event()`.
pub struct Sender {
    cfg: SenderConfig,
    name: String,
    digests: Option<FileDigests>,
    layout: Layout,
    /// Blocks whose bytes are all readable.
    available: u32,
    /// A growing source's bytes readable from its start.
    grown: u64,
    /// The block after the available ones, while its bytes arrive.
    partial: Option<Partial>,
    /// The source has ended: `available` covers the file, and its size and digests are known.
    source_done: bool,
    phase: Phase,
    end_reason: EndReason,
    created: Instant,
    /// The `now` of the latest `handle_timeout`: a deadline it has passed has been acted on, and
    /// `poll_timeout` no longer offers it (else the shell would be woken at once, again and again).
    timed_out: Instant,
    started_at: Option<Instant>,
    pass: Pass,
    pass_done_at: Option<Instant>,
    blocks: Vec<BlockTx>,
    repair: VecDeque<u32>,
    /// A sync session: blocks whose manifest symbols go out again.
    resend: VecDeque<u32>,
    burst: Option<Burst>,
    last_was_repair: bool,
    /// Blocks in memory, least recently used first.
    cache: VecDeque<(u32, BlockEncoder)>,
    loading: Vec<u32>,
    /// Of those, blocks read only for their digest (`skip_first_pass`): not cached, so they do
    /// not push out the blocks being repaired.
    digest_only: BTreeSet<u32>,
    plans: Plans,
    peers: Peers,
    next_announce: Instant,
    acks: VecDeque<(SocketAddr, u32)>,
    /// Blocks whose digest a receiver asked for.
    digests_due: BTreeSet<u32>,
    /// Blocks whose symbols' hashes a receiver asked for, and the HASHES made, to go out.
    hashes_due: BTreeSet<u32>,
    hashes: VecDeque<Hashes>,
    session_key: Option<SessionKey>,
    /// KEYS packets, sent in turn after each ANNOUNCE.
    keys: Vec<Keys>,
    next_keys: Option<usize>,
    /// The session does not end before this (see `hold_until`).
    hold: Option<Instant>,
    events: VecDeque<SenderEvent>,
    stats: SenderStats,
    cc: Option<RateControl>,
    next_pace: Instant,
    /// The loss, and the receivers, the latest block's first pass was sized for (`Fec::Adaptive`).
    fec_loss: Option<(f64, u32)>,
}

impl Sender {
    /// A sender of a whole file, all of it readable now (`file.size` and `file.digests` are set).
    pub fn new(cfg: SenderConfig, file: FileInfo, now: Instant) -> Result<Self, ConfigError> {
        let mut s = Sender::growing(cfg, file, now)?;
        if s.digests.is_some() {
            s.source_done = true;
            s.set_available(now, s.layout.num_blocks());
        }
        Ok(s)
    }

    /// A sender of a source that is still arriving (a download): blocks are sent as
    /// `source_grew` makes them available, and the size (if unknown) and digests are announced
    /// once `source_ended` is called.
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
        if let Fec::Adaptive { max_loss } = cfg.fec
            && !(0.0..=fec::MAX_LOSS_CAP).contains(&max_loss)
        {
            return Err(ConfigError::FecLoss(max_loss));
        }
        if matches!(
            cfg.feedback,
            FeedbackAddr::Source { port: 0 } | FeedbackAddr::V4(_, 0) | FeedbackAddr::V6(_, 0)
        ) {
            return Err(ConfigError::FeedbackPort);
        }
        let (session_key, keys) = match &cfg.encryption {
            Some(e) => {
                if e.recipients.is_empty() {
                    return Err(ConfigError::NoRecipients);
                }
                if e.recipients.len() > MAX_RECIPIENTS {
                    return Err(ConfigError::TooManyRecipients(e.recipients.len()));
                }
                let (ephemeral, wraps) =
                    crypt::wrap(&e.key, e.ephemeral, &e.recipients, cfg.session);
                let parts = wraps.len().div_ceil(MAX_KEY_WRAPS);
                let keys = wraps
                    .chunks(MAX_KEY_WRAPS)
                    .enumerate()
                    .map(|(i, w)| Keys {
                        ephemeral,
                        part: i as u8,
                        parts: parts as u8,
                        wraps: w.to_vec(),
                    })
                    .collect();
                (Some(SessionKey::new(e.key)), keys)
            }
            None => (None, Vec::new()),
        };
        let cfg_cc = cfg.cc;
        let mut s = Sender {
            peers: Peers::new(cfg.limits.clone()),
            cfg,
            digests: file.digests.filter(|_| file.size.is_some()),
            name: file.name,
            layout,
            available: 0,
            grown: 0,
            partial: None,
            source_done: false,
            phase: Phase::Waiting,
            end_reason: EndReason::Complete,
            created: now,
            timed_out: now,
            started_at: None,
            pass: Pass::default(),
            pass_done_at: None,
            blocks: Vec::new(),
            repair: VecDeque::new(),
            resend: VecDeque::new(),
            burst: None,
            last_was_repair: false,
            cache: VecDeque::new(),
            loading: Vec::new(),
            digest_only: BTreeSet::new(),
            plans: Plans::default(),
            next_announce: now,
            acks: VecDeque::new(),
            digests_due: BTreeSet::new(),
            hashes_due: BTreeSet::new(),
            hashes: VecDeque::new(),
            session_key,
            keys,
            next_keys: None,
            hold: None,
            events: VecDeque::new(),
            stats: SenderStats::default(),
            cc: cfg_cc.map(|c| RateControl::new(c, now)),
            next_pace: now,
            fec_loss: None,
        };
        s.maybe_start(now);
        Ok(s)
    }

    /// The source now has `bytes` bytes readable from its start.
    pub fn source_grew(&mut self, now: Instant, bytes: u64) {
        if self.source_done {
            return;
        }
        self.grown = self.grown.max(bytes);
        let full = (self.grown / self.layout.block_bytes()).min(self.layout.num_blocks() as u64);
        self.set_available(now, full as u32);
    }

    /// The source is complete: `size` bytes with these digests. The final ANNOUNCE goes out at
    /// once.
    pub fn source_ended(
        &mut self,
        now: Instant,
        size: u64,
        digests: FileDigests,
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
                // Bytes already sent: in full blocks, or as source symbols of the partial one.
                let partial = (self.partial.as_ref())
                    .map_or(0, |p| self.layout.offset(p.block) + p.data.len() as u64);
                let had = (self.available as u64 * self.layout.block_bytes()).max(partial);
                if size < had {
                    return Err(SourceError::Shrunk { had, got: size });
                }
                self.layout = self.layout.finish(size)?;
            }
        }
        self.digests = Some(digests);
        self.source_done = true;
        // The block that was being filled may have ended with the last full one.
        self.blocks.truncate(self.layout.num_blocks() as usize);
        self.next_announce = now;
        self.set_available(now, self.layout.num_blocks());
        Ok(())
    }

    fn set_available(&mut self, now: Instant, blocks: u32) {
        self.available = self.available.max(blocks);
        // A growing source's block being filled has its state too: its source symbols go out as
        // they arrive.
        let filling = u32::from(!self.source_done && self.available < self.layout.num_blocks());
        while (self.blocks.len() as u32) < self.available + filling {
            let b = self.blocks.len() as u32;
            // Without a first pass, a block's first symbols are its source symbols, sent as asked.
            let first_pass = first_pass_symbols(&self.layout, &self.cfg, b);
            // In a sync session receivers hold scattered source symbols already: only repair
            // symbols (any of which fills any gap) are sent beyond the manifest.
            let next_esi = if self.cfg.sync.is_some() {
                self.layout.symbols(b) as u32
            } else if self.cfg.skip_first_pass {
                0
            } else {
                first_pass
            };
            self.blocks.push(BlockTx {
                next_esi,
                first_pass,
                ..BlockTx::default()
            });
        }
        // The first pass may be waiting for these bytes.
        if self.phase == Phase::Sending && self.pass_done_at.is_none() {
            self.join_available(now);
        }
        self.maybe_start(now);
    }

    /// Keeps the session open until `t` even if every receiver it knows is done: a receiver was
    /// just told to join (the download manager's OFFER) and has not said hello yet.
    pub fn hold_until(&mut self, t: Instant) {
        self.hold = self.hold.max(Some(t));
    }

    /// Whether the whole source is readable, and its size and digests known.
    pub fn source_done(&self) -> bool {
        self.source_done
    }

    /// How the file is cut into blocks.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Counts so far.
    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    /// The receivers known, by id.
    pub fn receivers(&self) -> impl Iterator<Item = &ReceiverInfo> {
        self.peers.iter()
    }

    /// Blocks whose first pass is complete (every block below the number).
    pub fn sent_blocks(&self) -> u32 {
        self.pass.passed
    }

    /// Where the session is.
    pub fn phase(&self) -> SessionPhase {
        match self.phase {
            Phase::Waiting => SessionPhase::Waiting,
            Phase::Sending if self.pass_done_at.is_none() => SessionPhase::FirstPass,
            Phase::Sending => SessionPhase::Repairing,
            Phase::Ending { .. } => SessionPhase::Ending,
            Phase::Finished => SessionPhase::Finished,
        }
    }

    /// The loss `r`'s address reports (smoothed, 0 to 1), once a report had figures to judge.
    pub fn loss_of(&self, r: &ReceiverInfo) -> Option<f64> {
        self.peers.reported_loss(r.addr.ip())
    }

    /// The worst loss (capped), and the number of receivers, the latest block's first pass was
    /// sized for (`Fec::Adaptive`, 5.10); `None` before the first was sized, or with `Fec::Fixed`.
    pub fn fec_loss(&self) -> Option<(f64, u32)> {
        self.fec_loss
    }

    /// F_b: the symbols the first pass sends of `block` (sized once the pass reaches its repair).
    pub fn first_pass_size(&self, block: u32) -> Option<u32> {
        self.blocks.get(block as usize).map(|tx| tx.first_pass)
    }

    /// Blocks that needed a repair round: fresh symbols past their first pass (a re-run's first
    /// send of a block, `skip_first_pass`, is not one).
    pub fn repaired_blocks(&self) -> u32 {
        (self.blocks.iter())
            .filter(|tx| tx.burst.is_some_and(|(start, _)| start >= tx.first_pass))
            .count() as u32
    }

    /// The rate congestion control sends at now (bit/s); `None` with it off.
    pub fn rate(&self) -> Option<f64> {
        self.cc.as_ref().map(RateControl::rate)
    }

    /// Whether congestion control does not follow `r`: its path is too slow (below the floor).
    pub fn is_slow(&self, r: &ReceiverInfo) -> bool {
        self.cc.as_ref().is_some_and(|c| c.is_slow(r.id))
    }

    /// Whether `r` is too slow to be followed against the others (under half of what the best
    /// took, not only under `min_rate`): no repair is sent for it, and it is left behind as soon
    /// as others are done (PROTOCOL.md 5.6, 5.8).
    pub fn is_outpaced(&self, r: &ReceiverInfo) -> bool {
        self.cc.as_ref().is_some_and(|c| c.is_outpaced(r.id))
    }

    /// What `r`'s path took and the least it had to take to be followed (bit/s), if congestion
    /// control does not follow it (`is_slow`): what the teacher's screen says of it.
    pub fn slow_path(&self, r: &ReceiverInfo) -> Option<(f64, f64)> {
        self.cc.as_ref().and_then(|c| c.slow_path(r.id))
    }

    /// Whether END has gone out.
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

    /// Feedback from a receiver. Anything malformed, foreign, not ours, from a receiver that did
    /// not say hello, or over a bound is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let d = match Packet::parse(bytes) {
            Ok(d) => d,
            Err(e) => return self.stats.dropped.parse_error(e),
        };
        if d.session != self.cfg.session {
            self.stats.dropped.other_session += 1;
            return;
        }
        match d.packet {
            Packet::Status(s) => self.on_status(now, from, s),
            Packet::Need(n) => self.on_need(now, from, n),
            _ => self.stats.dropped.unexpected += 1,
        }
    }

    fn unheard(&mut self, why: Unheard) {
        let d = &mut self.stats.dropped;
        match why {
            Unheard::Refused => d.refused += 1,
            Unheard::Unknown => d.unknown_receiver += 1,
            Unheard::RateLimited => d.rate_limited += 1,
        }
    }

    fn on_status(&mut self, now: Instant, from: SocketAddr, s: Status) {
        let num_blocks = self.layout.num_blocks();
        let hello = (self.peers.hello(now, from, s.receiver, &s.name)).map(|(_, heard)| heard);
        self.stats.forgotten_receivers = self.peers.forgotten();
        self.stats.restarted_receivers = self.peers.restarted();
        let heard = match hello {
            Ok(heard) => heard,
            Err(why) => return self.unheard(why),
        };
        if let (Some(e), Some(cc)) = (s.echo, &mut self.cc) {
            // The echo's time is the sender's own clock: one from the future is made up.
            let paced = self.created + Duration::from_micros(e.time_us);
            if paced <= now {
                let rtt = now
                    .duration_since(paced)
                    .saturating_sub(Duration::from_micros(e.held_us as u64));
                let sent = self.stats.source_symbols + self.stats.repair_symbols;
                let report = Report {
                    rtt,
                    pace_us: e.time_us,
                    sent: e.sent.min(sent),
                    received: e.received,
                };
                cc.handle_report(now, s.receiver, report);
            }
        }
        let r = self.peers.get_mut(s.receiver).expect("just heard");
        r.blocks_done = s.blocks_done.min(num_blocks);
        let was = r.state;
        // Done and Failed are final: a late, reordered Receiving must not undo them.
        if !matches!(was, ReceiverState::Done | ReceiverState::Failed) {
            r.state = s.state;
            r.reason = s.reason;
        }
        let state = r.state;
        match heard {
            Hello::Known => {}
            Hello::New => self
                .events
                .push_back(SenderEvent::ReceiverJoined { id: s.receiver }),
            Hello::Restarted { old } => self.events.push_back(SenderEvent::ReceiverRestarted {
                id: s.receiver,
                old,
            }),
        }
        if matches!(s.state, ReceiverState::Done | ReceiverState::Failed)
            && self.acks.len() < MAX_ACKS
        {
            self.acks.push_back((from, s.receiver));
        }
        if was != state
            && let Some(cc) = &mut self.cc
            && matches!(state, ReceiverState::Done | ReceiverState::Failed)
        {
            cc.forget(s.receiver);
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
        let (joined, slow) = match self.peers.known(now, from, need.receiver) {
            Ok(r) => (
                r.joined,
                self.cc.as_ref().is_some_and(|c| c.is_outpaced(r.id)),
            ),
            Err(why) => return self.unheard(why),
        };
        // An outpaced receiver's NEEDs ask for no repair (below) while there is a class to
        // protect: with no followed receiver left (the others failed or were dropped), it is
        // repaired as any other.
        let slow = slow
            && self.peers.iter().any(|o| {
                o.id != need.receiver
                    && o.pending()
                    && !self.peers.lagging(o)
                    && !self.is_outpaced(o)
            });
        self.stats.need_reports += 1;
        if matches!(self.phase, Phase::Waiting) {
            self.maybe_start(now);
        }
        let ip = from.ip();
        let holdoff = self.cfg.repair_holdoff;
        // What this report says of the receiver's loss: symbols it holds of those it has seen.
        let (mut held_sum, mut seen_sum) = (0u64, 0u64);
        let mut unread = Vec::new();
        for e in need.entries {
            // Only blocks whose first pass is over can be repaired.
            if e.block >= self.pass.passed {
                self.stats.dropped.out_of_range += 1;
                continue;
            }
            let k = self.layout.symbols(e.block) as u32;
            let tx = &mut self.blocks[e.block as usize];
            if e.need as u32 > k + 1 {
                self.stats.dropped.out_of_range += 1;
                continue;
            }
            // No receiver can have seen a symbol not sent yet: forged ones, sent ahead, make it
            // think so. What it saw of the real ones is all that counts.
            let e = NeedEntry {
                seen: e.seen.min(tx.next_esi),
                ..e
            };
            // Of the ESIs below `seen`, those sent: in a sync session only the manifest's source
            // symbols and the repair symbols from K on (the receiver's other source symbols are
            // its own files, which say nothing of its loss).
            let sent_below = match self.cfg.sync {
                Some(_) => {
                    let pass = first_pass_symbols(&self.layout, &self.cfg, e.block);
                    e.seen.min(pass) + e.seen.saturating_sub(k)
                }
                None => e.seen,
            };
            if e.flags.no_digest && tx.digest_sent.is_none_or(|t| now >= t + holdoff) {
                self.digests_due.insert(e.block);
                // Never read (no first pass): read it (a few at a time), and the digest goes out
                // on the next ask.
                if tx.digest.is_none() && e.block < self.available {
                    unread.push(e.block);
                }
            }
            // A block that failed its digest: the hashes of every symbol sent go out, again when
            // more have been sent or they may have been lost. Only for a receiver whose reports
            // are plausible: the hashes are not free.
            let hashes_due = match tx.hashes_sent {
                None => true,
                Some((at, upto)) => {
                    (upto < tx.next_esi && now >= at + 2 * holdoff) || now >= at + HASHES_AGAIN
                }
            };
            if e.flags.verify && hashes_due && self.peers.allowance(ip) > 0 {
                self.hashes_due.insert(e.block);
            }
            // A receiver too slow to be followed against the others (`is_outpaced`) collects what
            // is sent for them: repair sized for it would go out at the class's rate and mostly
            // be lost at its port, slowing the others by half (first pass and repair take turns)
            // for nothing. (A class all behind one slow link, all under `min_rate` and none
            // outpaced, is repaired as before.)
            if e.need == 0 || slow {
                continue;
            }
            // A sync session: a receiver that lacks some of the manifest's source symbols (lost,
            // or it joined after they went out) needs more than K + 1 less them. They go out
            // again, at most once a second: repair would cost it the whole block.
            let pass = first_pass_symbols(&self.layout, &self.cfg, e.block);
            if self.cfg.sync.is_some()
                && pass > 0
                && e.need as u32 > k + 1 - pass
                && self.peers.allowance(ip) > 0
            {
                if tx.resent.is_none_or(|t| now >= t + RESEND_AGAIN) {
                    tx.resent = Some(now);
                    self.resend.push_back(e.block);
                }
                continue;
            }
            let in_flight_for = match self.cfg.sync {
                Some(_) => holdoff.max(SYNC_IN_FLIGHT),
                None => holdoff,
            };
            let stale = self.cfg.sync.is_some()
                && tx.next_esi.saturating_sub(e.seen) > STALE_TAIL
                && tx
                    .burst
                    .is_some_and(|(_, made)| now.saturating_duration_since(made) < SYNC_STALE);
            let recent = stale
                || tx
                    .last_sent
                    .is_some_and(|t| now.saturating_duration_since(t) < in_flight_for);
            let need = if e.flags.verify {
                // A block that failed its digest: its need is sized by the receiver's usual loss.
                let loss = self.peers.loss(ip, MAX_LOSS);
                (e.need as f64 / (1.0 - loss)).ceil() as u32
            } else {
                let in_flight = if recent { tx.next_esi - e.seen } else { 0 };
                let need = (e.need as u32).saturating_sub(in_flight);
                // The repair reaches this receiver through the same loss it reported: of the
                // `seen` symbols sent, it holds about K + 1 - need. Ask enough that what survives
                // is enough.
                let held = (k + 1).saturating_sub(e.need as u32).min(sent_below);
                let loss = if sent_below > 0 {
                    (1.0 - held as f64 / sent_below as f64).clamp(0.0, MAX_LOSS)
                } else {
                    0.0
                };
                // What it saw of a block sent before it joined says nothing of its loss.
                if tx.first_sent.is_some_and(|t| t >= joined) {
                    held_sum += held as u64;
                    seen_sum += sent_below as u64;
                }
                // A burst made after the receiver joined, long enough ago to have arrived, of
                // which it saw nothing: it lost all of it, or says so.
                if let Some((start, made)) = tx.burst
                    && !recent
                    && made > joined + holdoff
                    && e.seen <= start
                {
                    seen_sum += (tx.next_esi - start) as u64;
                }
                (need as f64 / (1.0 - loss)).ceil() as u32
            };
            tx.ask(ip, need);
            if !tx.queued {
                tx.queued = true;
                self.repair.push_back(e.block);
            }
        }
        for block in unread {
            if self.digest_only.len() < MAX_UNREAD && !self.loading.contains(&block) {
                self.digest_only.insert(block);
                self.load(block);
            }
        }
        let ceiling = self.layout.block_symbols() as u32 + 1;
        self.peers
            .judge(ip, held_sum, seen_sum, ceiling + repair_margin(ceiling));
    }

    /// The block's bytes, asked for with `SenderEvent::NeedBlock`.
    pub fn supply_block(&mut self, block: u32, data: Vec<u8>) {
        let len = self.layout.len(block);
        // A piece of the block being filled (always shorter than the block): its next bytes.
        if let Some(p) = &mut self.partial
            && p.block == block
            && p.asked == Some(data.len())
            && data.len() != len
        {
            p.asked = None;
            p.data.extend_from_slice(&data);
            return;
        }
        self.loading.retain(|&b| b != block);
        if block >= self.available || data.len() != len {
            return;
        }
        if self.partial.as_ref().is_some_and(|p| p.block == block) {
            self.partial = None;
        }
        let enc = BlockEncoder::new(&self.layout, block, data);
        self.blocks[block as usize].digest = Some(block_digest(enc.coded()));
        if self.digest_only.remove(&block) {
            return;
        }
        let limit = self.cfg.cached_blocks + self.cfg.interleave as usize;
        while self.cache.len() >= limit {
            self.cache.pop_front();
        }
        self.cache.push_back((block, enc));
    }

    /// Time has passed: receivers silent too long are dropped; the session may start or end.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.timed_out = self.timed_out.max(now);
        if self.hold.is_some_and(|h| now >= h) {
            self.hold = None;
        }
        for id in self.peers.drop_silent(now, self.cfg.receiver_timeout) {
            self.events.push_back(SenderEvent::ReceiverDropped { id });
        }
        self.stats.restarted_receivers = self.peers.restarted();
        if let Some(cc) = &mut self.cc {
            cc.handle_timeout(now);
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
            Phase::Sending => match &self.cc {
                Some(cc) => self
                    .next_announce
                    .min(self.next_pace)
                    .min(cc.poll_timeout()),
                None => self.next_announce,
            },
        };
        // These two are checked on a timeout (when a receiver counts as quiet, when the linger
        // time is over) and stay true after: once passed, they are not wake-ups any more.
        let ahead = |d: Instant| (d > self.timed_out).then_some(d);
        for r in self.peers.iter().filter(|r| r.pending()) {
            if let Some(d) = ahead(r.last_heard + QUIET.min(self.cfg.receiver_timeout)) {
                t = t.min(d);
            }
        }
        if let Some(d) = self
            .pass_done_at
            .and_then(|done| ahead(done + self.cfg.linger))
        {
            t = t.min(d);
        }
        if let Some(hold) = self.hold {
            t = t.min(hold);
        }
        Some(t)
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    /// Stops the session now: END (aborted) is sent and nothing else.
    pub fn abort(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Ending { .. } | Phase::Finished) {
            self.end(now, EndReason::Aborted, END_REPEATS);
        }
    }

    /// The next datagram to send, written into `buf`, and where it goes. `None` means nothing is due
    /// now: wait for `poll_timeout`, a datagram, or (after a `NeedBlock` event) `supply_block`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Destination> {
        buf.clear();
        if let Some((to, id)) = self.acks.pop_front() {
            let ack = Packet::Ack(Ack { receiver: id });
            return Some(self.control(now, &ack, buf, Destination::Unicast(to)));
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
                return Some(self.control(now, &end, buf, Destination::Group));
            }
            Phase::Waiting | Phase::Sending => {}
        }
        if now >= self.next_announce {
            self.next_announce = now + self.cfg.announce_interval;
            if !self.keys.is_empty() {
                self.next_keys = Some(self.next_keys.map_or(0, |k| (k + 1) % self.keys.len()));
            }
            let announce = Packet::Announce(self.announce());
            return Some(self.control(now, &announce, buf, Destination::Group));
        }
        if let Some(k) = self.next_keys.take() {
            let keys = Packet::Keys(self.keys[k].clone());
            return Some(self.control(now, &keys, buf, Destination::Group));
        }
        if self.phase != Phase::Sending {
            return None;
        }
        if self.cc.is_some() && now >= self.next_pace {
            self.next_pace = now + self.cc.as_ref().map_or(cc::INTERVAL, |c| c.pace_interval());
            let pace = Packet::Pace(Pace {
                time_us: now.duration_since(self.created).as_micros() as u64,
                sent: self.stats.source_symbols + self.stats.repair_symbols,
            });
            return Some(self.control(now, &pace, buf, Destination::Group));
        }
        if let Some(h) = self.hashes.pop_front().or_else(|| self.next_hashes(now)) {
            return Some(self.control(now, &Packet::Hashes(h), buf, Destination::Group));
        }
        if let Some(digests) = self.requested_digests(now) {
            return Some(self.control(now, &digests, buf, Destination::Group));
        }
        let (block, esi, repair) = self.next_symbol(now)?;
        if block >= self.available {
            return self.partial_symbol(now, block, esi, buf);
        }
        let Some(at) = self.cache.iter().position(|(b, _)| *b == block) else {
            self.load(block);
            return None;
        };
        // The block's digest goes out before its first symbol.
        if !repair && !self.blocks[block as usize].digest_passed {
            let digests = self.pass_digests(block);
            return Some(self.control(now, &digests, buf, Destination::Group));
        }
        // Most recently used last.
        let entry = self.cache.remove(at).expect("position is in range");
        self.cache.push_back(entry);
        let enc = &mut self.cache.back_mut().expect("just pushed").1;
        // A block's proactive repair symbols come after its source symbols; its encoder is built
        // halfway through them, not at its first repair symbol, so that the build (a few ms) is
        // a short pause in the middle of the stream. The blocks reach that point one at a time
        // (their turns are staggered, 5.3).
        if !repair
            && (self.cfg.proactive > 0.0 || matches!(self.cfg.fec, Fec::Adaptive { .. }))
            && esi >= enc.symbols() as u32 / 2
        {
            enc.prepare(&self.layout, &mut self.plans);
        }
        Packet::Data(Data {
            block,
            esi,
            symbol: &[],
        })
        .write(self.cfg.session, buf);
        enc.write_symbol(&self.layout, &mut self.plans, esi, buf);
        if let Some(key) = &self.session_key {
            key.seal(self.cfg.session, block, esi, buf, DATA_OVERHEAD);
        }
        let source = esi < enc.symbols() as u32;
        Some(self.sent_data(now, block, source, repair, buf))
    }

    /// A source symbol of the block a growing source is filling, from the bytes read of it so
    /// far; `None` while the piece that holds it is being read (`NeedBlock`).
    fn partial_symbol(
        &mut self,
        now: Instant,
        block: u32,
        esi: u32,
        buf: &mut Vec<u8>,
    ) -> Option<Destination> {
        let t = self.layout.symbol_size() as usize;
        // Everything that has arrived of it, in whole symbols (a symbol's bytes are read once).
        let ready = self.ready_symbols(block) as usize * t;
        if self.partial.as_ref().is_none_or(|p| p.block != block) {
            self.partial = Some(Partial {
                block,
                data: Vec::with_capacity(self.layout.len(block)),
                asked: None,
            });
        }
        let p = self.partial.as_mut().expect("just set");
        let end = (esi as usize + 1) * t;
        if p.data.len() < end {
            if p.asked.is_none() && ready > p.data.len() {
                let len = ready - p.data.len();
                p.asked = Some(len);
                self.events.push_back(SenderEvent::NeedBlock {
                    block,
                    offset: self.layout.offset(block) + p.data.len() as u64,
                    len,
                });
            }
            return None;
        }
        Packet::Data(Data {
            block,
            esi,
            symbol: &[],
        })
        .write(self.cfg.session, buf);
        buf.extend_from_slice(&p.data[end - t..end]);
        if let Some(key) = &self.session_key {
            key.seal(self.cfg.session, block, esi, buf, DATA_OVERHEAD);
        }
        Some(self.sent_data(now, block, true, false, buf))
    }

    /// Counts the DATA in `buf` and moves past it.
    fn sent_data(
        &mut self,
        now: Instant,
        block: u32,
        source: bool,
        repair: bool,
        buf: &[u8],
    ) -> Destination {
        if source {
            self.stats.source_symbols += 1;
            self.stats.source_bytes += buf.len() as u64;
        } else {
            self.stats.repair_symbols += 1;
            self.stats.repair_bytes += buf.len() as u64;
        }
        self.stats.bytes += buf.len() as u64;
        let tx = &mut self.blocks[block as usize];
        tx.first_sent.get_or_insert(now);
        tx.last_sent = Some(now);
        self.advance(now, repair);
        Destination::Group
    }

    /// Writes a control packet, signed if the sender has a key.
    fn control(
        &mut self,
        now: Instant,
        packet: &Packet<'_>,
        buf: &mut Vec<u8>,
        to: Destination,
    ) -> Destination {
        let seal = match &self.cfg.signer {
            Some(s) => Seal::Signed(&s.key, s.clock.unix_ms(now)),
            None => Seal::Unsigned,
        };
        packet.write_sealed(self.cfg.session, seal, buf);
        self.stats.control_packets += 1;
        self.stats.bytes += buf.len() as u64;
        to
    }

    fn announce(&self) -> Announce {
        Announce {
            file_size: self.layout.file_size(),
            digests: self.digests,
            padded: self.layout.padded(),
            encrypted: self.session_key.is_some(),
            sync: self.cfg.sync.is_some(),
            staggered: true,
            symbol_size: self.layout.symbol_size(),
            block_symbols: self.layout.block_symbols(),
            interleave: self.cfg.interleave,
            sent_blocks: self.pass.passed,
            feedback: self.cfg.feedback,
            name: self.name.clone(),
        }
    }

    /// The hashes of every symbol sent of the next block asked for, as HASHES packets (the first
    /// returned, the others queued); `None` if none is due, or the block must be read first.
    fn next_hashes(&mut self, now: Instant) -> Option<Hashes> {
        let block = *self.hashes_due.first()?;
        let Some(at) = self.cache.iter().position(|(b, _)| *b == block) else {
            self.load(block);
            return None;
        };
        self.hashes_due.remove(&block);
        let enc = &mut self.cache[at].1;
        let upto = self.blocks[block as usize].next_esi;
        let mut hashes = Vec::with_capacity(upto as usize);
        let mut symbol = Vec::with_capacity(self.layout.symbol_size() as usize);
        for esi in 0..upto {
            symbol.clear();
            enc.write_symbol(&self.layout, &mut self.plans, esi, &mut symbol);
            hashes.push(symbol_hash(block, esi, &symbol));
        }
        self.blocks[block as usize].hashes_sent = Some((now, upto));
        self.stats.verify_rounds += 1;
        for (i, chunk) in hashes.chunks(MAX_HASHES).enumerate() {
            self.hashes.push_back(Hashes {
                block,
                sent: upto,
                first_esi: (i * MAX_HASHES) as u32,
                hashes: chunk.to_vec(),
            });
        }
        self.hashes.pop_front()
    }

    /// DIGESTS for `block` (in memory, so its digest is known) and the blocks after it whose
    /// digests are known and have not gone out with the pass yet.
    fn pass_digests(&mut self, block: u32) -> Packet<'static> {
        let mut digests = Vec::new();
        while digests.len() < MAX_DIGESTS
            && let Some(tx) = self.blocks.get_mut(block as usize + digests.len())
            && let Some(d) = tx.digest
            && !tx.digest_passed
        {
            tx.digest_passed = true;
            digests.push(d);
        }
        Packet::Digests(Digests {
            first_block: block,
            digests,
        })
    }

    /// DIGESTS a receiver asked for, the lowest first, if any is due and known.
    fn requested_digests(&mut self, now: Instant) -> Option<Packet<'static>> {
        while let Some(&first) = self.digests_due.first() {
            let mut digests = Vec::new();
            let mut b = first;
            while let Some(d) = self.blocks.get(b as usize).and_then(|tx| tx.digest)
                && digests.len() < MAX_DIGESTS
                && self.digests_due.remove(&b)
            {
                digests.push(d);
                self.blocks[b as usize].digest_sent = Some(now);
                b += 1;
            }
            if digests.is_empty() {
                // Not known here any more (never supplied): nothing to answer with.
                self.digests_due.remove(&first);
                continue;
            }
            return Some(Packet::Digests(Digests {
                first_block: first,
                digests,
            }));
        }
        None
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
    fn next_symbol(&mut self, now: Instant) -> Option<(u32, u32, bool)> {
        let pass = (self.pass.next()).map(|i| (self.pass.turn[i].block, self.pass.turn[i].esi));
        if let (Some((block, esi)), true) = (pass, self.last_was_repair) {
            return Some((block, esi, false));
        }
        if self.burst.is_none()
            && let Some(block) = self.resend.pop_front()
        {
            // The same source symbols as the first pass (sealed, the same ciphertext).
            let end = first_pass_symbols(&self.layout, &self.cfg, block);
            self.burst = Some(Burst {
                block,
                next: 0,
                end,
            });
        }
        let lagging_alone = self.burst.is_none() && self.lagging_alone();
        while self.burst.is_none()
            && let Some(block) = self.repair.pop_front()
        {
            let tx = &mut self.blocks[block as usize];
            tx.queued = false;
            // What one address alone asks for is capped by its allowance; what two ask for is not.
            let (need, second) = (tx.top.take(), std::mem::take(&mut tx.second));
            // With only lagging receivers left and none done, theirs is asked in full: the session
            // is theirs alone, bounded by `LAGGING_BUDGET`.
            let count = need
                .map_or(0, |(ip, n)| {
                    if lagging_alone {
                        n
                    } else {
                        n.min(self.peers.allowance(ip))
                    }
                })
                .max(second);
            if count == 0 {
                continue;
            }
            // A block not sent at all yet (no first pass: a re-run) goes out whole at its first
            // ask, as the pass would have sent it: once per block, whoever asks. Later asks are
            // repair as usual.
            let count = if self.cfg.skip_first_pass && tx.first_sent.is_none() {
                first_pass_symbols(&self.layout, &self.cfg, block)
            } else if self.cfg.sync.is_some() {
                // A sync session is mostly repair: the first pass's margin, not repair_margin's
                // 6%; what falls short is asked for again.
                count + (count as f64 * self.cfg.proactive).ceil() as u32
            } else {
                count + repair_margin(count)
            };
            let end = tx.next_esi.saturating_add(count).min(MAX_ESI + 1);
            self.burst = Some(Burst {
                block,
                next: tx.next_esi,
                end,
            });
            tx.burst = Some((tx.next_esi, now));
            tx.next_esi = end;
        }
        if let Some(b) = &self.burst {
            if b.next < b.end {
                return Some((b.block, b.next, true));
            }
            self.burst = None;
            return self.next_symbol(now);
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
        // The same slot `next_symbol` chose: nothing changed the pass in between.
        let i = self.pass.next().expect("a first-pass symbol was sent");
        let mut slot = self.pass.turn.swap_remove(i);
        self.pass.sent += 1;
        slot.esi += 1;
        let (block, next) = (slot.block, slot.esi);
        if next >= self.layout.symbols(block) as u32 && !self.blocks[block as usize].sized {
            self.size_block(block);
        }
        if next >= self.blocks[block as usize].first_pass {
            self.block_passed(now);
        } else if next < self.ready_symbols(block) {
            self.pass.turn.push(slot);
        } else {
            self.pass.stalled = Some(slot);
        }
    }

    /// Of `block`'s first-pass symbols, how many can go out now: all of a complete block; of the
    /// block a growing source is filling, the source symbols whose bytes are in, but never its
    /// last one (its digest, known only once the block is, goes out before that, 9.1); of a block
    /// after it, none.
    fn ready_symbols(&self, block: u32) -> u32 {
        if block < self.available {
            return u32::MAX;
        }
        if block > self.available || self.source_done {
            return 0;
        }
        let k = self.layout.symbols(block) as u32;
        let t = self.layout.symbol_size() as u64;
        let arrived = self.grown.saturating_sub(self.layout.offset(block)) / t;
        arrived.min(k as u64 - 1) as u32
    }

    /// A block's first pass is over: the next block joins in its place, and `sent_blocks` moves
    /// up to the lowest block still in the pass.
    fn block_passed(&mut self, now: Instant) {
        self.join_available(now);
        if self.pass.turn.is_empty() || !self.source_done {
            // The pass caught up with a growing source (or is over), or a block of a source still
            // arriving is done with it: receivers learn at once which blocks they may ask repair
            // for, rather than at the next ANNOUNCE, while the rest arrives.
            self.next_announce = now;
        }
    }

    fn open_pass(&mut self, start: u32, now: Instant) {
        self.pass = Pass {
            start,
            end: start,
            joined: start,
            passed: start,
            ..Pass::default()
        };
        self.join_available(now);
    }

    /// Lets blocks join the pass while they are fewer than W blocks past the lowest one still in
    /// it: for a file, in order as others leave; for a growing source, those whose bytes are in
    /// and then the one being filled once its first symbol is. Puts back a stalled block whose
    /// next bytes came. Once every block has left, the pass is over.
    fn join_available(&mut self, now: Instant) {
        if let Some(slot) = self.pass.stalled
            && slot.esi < self.ready_symbols(slot.block)
        {
            self.pass.stalled = None;
            self.pass.turn.push(slot);
        }
        let w = self.cfg.interleave as u32;
        self.pass.end = self.layout.num_blocks();
        loop {
            let p = &self.pass;
            let b = p.joined;
            // Block b joins once every block up to b − W has left, so a receiver that sees a
            // symbol of b knows they have (6.3), even where a block left before an earlier one
            // (a short last block, or one sized smaller). So at most W are in the pass.
            let lowest = (p.turn.iter().chain(&p.stalled)).fold(b, |m, s| m.min(s.block));
            if b >= p.end || b >= lowest.saturating_add(w) {
                break;
            }
            // A sync session's pass ends with the manifest's blocks.
            if (self.cfg.sync).is_some_and(|prefix| b as u64 * self.layout.block_bytes() >= prefix)
            {
                self.pass.joined = p.end;
                break;
            }
            // The block being filled joins once every block before it has and its first
            // symbol's bytes are in; blocks after it wait.
            if b >= self.available && (b > self.available || self.ready_symbols(b) == 0) {
                break;
            }
            self.pass.joined += 1;
            // A block without first-pass symbols (a sync session's past the manifest) has passed.
            if self.blocks[b as usize].first_pass == 0 {
                continue;
            }
            let slot = Slot {
                block: b,
                esi: 0,
                since: self.pass.sent,
                step: Pass::step(b - self.pass.start, w),
            };
            self.pass.turn.push(slot);
            // Its bytes, and the next block's, so that the next one to join is usually in memory.
            for next in [b, b + 1] {
                if next < self.available && !self.cache.iter().any(|(c, _)| *c == next) {
                    self.load(next);
                }
            }
        }
        let p = &mut self.pass;
        let in_pass = p.turn.iter().chain(&p.stalled).map(|s| s.block);
        p.passed = in_pass.fold(p.joined, u32::min);
        if p.finished() && self.pass_done_at.is_none() {
            // Receivers learn at once that every block has had its first pass.
            self.pass_done_at = Some(now);
            self.next_announce = now;
        }
    }

    /// Sizes the repair of `block`'s first pass (5.10) as the pass reaches it, from the latest
    /// reports: with `Fec::Adaptive`, enough that at the class's loss the chance that it lacks
    /// symbols at some followed receiver is at most `WINDOW_MISS` (`LAST_WINDOW_MISS` in the last
    /// W blocks, whose repair is the session's tail); never fewer than `Fec::Fixed` sends.
    fn size_block(&mut self, block: u32) {
        self.blocks[block as usize].sized = true;
        let Fec::Adaptive { max_loss } = self.cfg.fec else {
            return;
        };
        // A sync session's first pass is the manifest alone: receivers ask for the rest (5.9).
        if self.cfg.sync.is_some() {
            return;
        }
        let losses = self.class_losses(max_loss);
        // The size known (a file, or a download with a Content-Length), N is too.
        let w = self.cfg.interleave as u32;
        let last = self.layout.file_size().is_some()
            && block.saturating_add(w) >= self.layout.num_blocks();
        let miss = if last {
            fec::LAST_WINDOW_MISS
        } else {
            fec::WINDOW_MISS
        };
        let k = self.layout.symbols(block) as u32;
        let f = fec::first_pass_symbols(k, &losses, miss)
            .max(first_pass_symbols(&self.layout, &self.cfg, block))
            .min(MAX_ESI + 1);
        // No repair of it was made yet (NEEDs for a block still in the pass are refused): its
        // fresh ESIs begin past its first pass.
        let tx = &mut self.blocks[block as usize];
        tx.first_pass = f;
        tx.next_esi = f;
        let worst = losses.iter().copied().fold(0.0, f64::max);
        self.fec_loss = Some((worst, losses.len() as u32));
    }

    /// The losses the first pass is sized for: the usual loss of each receiver still expected and
    /// followed — not lagging, not too slow for congestion control, its address's reports
    /// plausible (an allowance) — that has one yet (from its PACE echoes with congestion control,
    /// else from its NEEDs), each at most `cap`. One receiver claiming to lose everything is not
    /// followed, and one claiming less costs the class at most `cap`.
    fn class_losses(&self, cap: f64) -> Vec<f64> {
        let mut losses = Vec::new();
        for r in self.peers.iter() {
            let ip = r.addr.ip();
            if !r.pending()
                || self.peers.lagging(r)
                || self.is_slow(r)
                || self.peers.allowance(ip) == 0
            {
                continue;
            }
            let echoed = self.cc.as_ref().and_then(|c| c.loss(r.id));
            if let Some(loss) = echoed.or_else(|| self.peers.reported_loss(ip)) {
                losses.push(loss.clamp(0.0, cap));
            }
        }
        losses
    }

    fn maybe_start(&mut self, now: Instant) {
        if self.phase != Phase::Waiting {
            return;
        }
        let hello = self.peers.iter().filter(|r| !r.dropped).count();
        let named = (self.cfg.wait_for.iter())
            .all(|name| self.peers.iter().any(|r| !r.dropped && r.name == *name));
        let waited = self.cfg.wait.is_some_and(|w| now >= self.created + w);
        if (hello >= self.cfg.min_receivers && named) || waited {
            self.phase = Phase::Sending;
            self.started_at = Some(now);
            self.events.push_back(SenderEvent::Started);
            // Skipping it, the pass opens past the last block: it is over at once.
            let first = if self.cfg.skip_first_pass {
                self.layout.num_blocks()
            } else {
                0
            };
            self.open_pass(first, now);
        }
    }

    /// Ends the session once no known receiver is still expected (all done, failed or dropped); with
    /// none known at all, the linger time after the first pass. Once some have the file, receivers
    /// silent for `QUIET` are dropped at once, and those that lose more than the sender follows are
    /// left behind after the linger time. (A class that is all that lossy, behind one slow link,
    /// is followed.)
    fn maybe_finish(&mut self, now: Instant) {
        if self.phase != Phase::Sending || self.hold.is_some() {
            return;
        }
        let lingered = self
            .pass_done_at
            .is_some_and(|done| now >= done + self.cfg.linger);
        // Receivers known and none still expected: over, even mid-pass (they all had the file).
        let finished = if self.peers.is_empty() {
            lingered
        } else {
            let (mut followed, mut lagging, mut slow, mut quiet, mut done) =
                (false, false, false, false, false);
            for r in self.peers.iter() {
                match (r.state, r.pending()) {
                    (ReceiverState::Done, _) => done = true,
                    (_, false) => {}
                    _ if now.saturating_duration_since(r.last_heard) >= QUIET => quiet = true,
                    _ if self.is_outpaced(r) => slow = true,
                    _ if self.peers.lagging(r) => lagging = true,
                    // Slow only against `min_rate` (a class all behind one slow link): waited for.
                    _ => followed = true,
                }
            }
            // One too slow to be followed against the others is not waited for at all: no repair
            // is sent for it (`on_need`), so the linger would only keep the teacher waiting.
            // Lagging ones alone (`lagging_alone`) are repaired up to the budget.
            if self.lagging_alone() {
                let hopeless = (self.peers.iter().filter(|r| r.pending())).all(|r| {
                    (self.peers.reported_loss(r.addr.ip())).is_some_and(|l| l > HOPELESS_LOSS)
                });
                (lingered && hopeless)
                    || self.layout.file_size().is_some_and(|size| {
                        self.stats.bytes as f64 >= LAGGING_BUDGET * size.max(1) as f64
                    })
            } else {
                !followed && ((!lagging && !slow && !quiet) || (done && (!lagging || lingered)))
            }
        };
        if finished {
            for id in self.peers.drop_silent(now, QUIET) {
                self.events.push_back(SenderEvent::ReceiverDropped { id });
            }
            self.stats.restarted_receivers = self.peers.restarted();
            // Those left behind, each with its loss: by its NEEDs, or else by what its path took
            // of the rate sent (a PC outpaced before it sent a NEED: 7 + 1 at 90% random loss;
            // congestion control keeps no usual loss for one that lossy).
            let behind: Vec<(u32, f64)> = (self.peers.iter())
                .filter(|r| r.pending() && (self.peers.lagging(r) || self.is_slow(r)))
                .map(|r| {
                    let reported = self.peers.reported_loss(r.addr.ip()).unwrap_or(0.0);
                    let took = (self.cc.as_ref())
                        .and_then(|c| Some(c.slow_path(r.id)?.0 / c.rate()))
                        .map_or(0.0, |share| 1.0 - share.min(1.0));
                    (r.id, reported.max(took))
                })
                .collect();
            let worst = behind.iter().map(|&(_, loss)| loss).fold(0.0, f64::max);
            for (id, _) in behind {
                self.events
                    .push_back(SenderEvent::ReceiverLeftBehind { id });
            }
            self.end(now, EndReason::Complete, end_repeats(worst));
        }
    }

    /// Whether every receiver still expected loses more than the sender follows, and so did every
    /// one that has the file: a lone PC on bad Wi-Fi, or a class that all loses that much (a PC
    /// left when a class that lost less is done is left behind after the linger, as before).
    /// Their NEEDs are then repaired in full, not capped by their allowance (which a report of
    /// that much loss zeroes), until the session has sent `LAGGING_BUDGET` files.
    fn lagging_alone(&self) -> bool {
        let mut lagging = false;
        for r in self.peers.iter() {
            if r.state == ReceiverState::Done && !self.peers.lagging(r) {
                return false;
            }
            if r.pending() {
                if !self.peers.lagging(r) {
                    return false;
                }
                lagging = true;
            }
        }
        lagging
    }

    /// END goes out `repeats` times (`end_repeats`).
    fn end(&mut self, now: Instant, reason: EndReason, repeats: u8) {
        self.end_reason = reason;
        self.phase = Phase::Ending {
            left: repeats,
            next: now,
        };
    }
}

/// ENDs enough that at least one reaches a receiver losing `loss` of what is sent at random, but
/// for 1% of the time (loss^n ≤ 0.01), from `END_REPEATS` to `LAGGING_END_REPEATS`.
/// A PC behind a slow port gets them too: its loss is the port's queue while the stream runs, and
/// the ENDs find it drained, so a few would do; it costs only the teacher's prompt a second.
fn end_repeats(loss: f64) -> u8 {
    if loss <= 0.0 {
        return END_REPEATS;
    }
    let n = (0.01f64.ln() / loss.min(0.95).ln()).ceil();
    n.clamp(END_REPEATS as f64, LAGGING_END_REPEATS as f64) as u8
}

/// Symbols of `block` in the first pass with `Fec::Fixed` (the fewest with `Fec::Adaptive`): its K
/// plus the proactive repair margin; in a sync session, its source symbols that hold bytes of the
/// manifest.
fn first_pass_symbols(layout: &Layout, cfg: &SenderConfig, block: u32) -> u32 {
    let k = layout.symbols(block) as u32;
    if let Some(prefix) = cfg.sync {
        let t = layout.symbol_size() as u64;
        return (prefix.saturating_sub(layout.offset(block)).div_ceil(t)).min(k as u64) as u32;
    }
    k + (k as f64 * cfg.proactive).ceil() as u32
}

/// Extra repair symbols on top of the largest reported need, so that the neediest receiver usually
/// completes in one round even though some of the repair is lost too.
fn repair_margin(need: u32) -> u32 {
    if need == 0 { 0 } else { 2 + need / 16 }
}
