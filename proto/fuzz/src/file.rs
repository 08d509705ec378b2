//! The file protocol's state machines under fuzzing: a `Receiver` that joins a real session and
//! then takes that session's datagrams (replayed, reordered, damaged, or made up field by field
//! with the proto API, signed and sealed like the real ones), and a `Sender` of a real session fed
//! STATUS and NEED. The shell's part (decode jobs, the output file, the whole-file check, reading
//! blocks) is played in memory the way `edm-cast recv` and `send` play it.

use super::script::{addr, steps};
use arbitrary::Arbitrary;
use edm_cast_proto::auth::{DEFAULT_MAX_SKEW, Seal};
use edm_cast_proto::file::codec::{BlockEncoder, Plans};
use edm_cast_proto::file::crypt::{self, SessionKey};
use edm_cast_proto::rng::Rng;
use edm_cast_proto::wire::{
    Ack, Announce, DATA_OVERHEAD, Data, Digests, End, EndReason, FailReason, FeedbackAddr,
    FileDigests, FileHasher, Hashes, KeyWrap, Keys, MAX_DATAGRAM, MAX_ESI, Need, NeedEntry,
    NeedFlags, Packet, ReceiverState, Status, block_digest, symbol_hash,
};
use edm_cast_proto::{
    DecodeJob, Destination, Encryption, FileInfo, Layout, Limits, Receiver, ReceiverConfig,
    ReceiverEvent, SecretKey, Sender, SenderConfig, SenderEvent, SessionInfo, Signer, Trust,
    WallClock,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The session every script is about.
pub const SESSION: u32 = 0x5E55_1011;
const SYMBOL_SIZE: u16 = 64;
const BLOCK_SYMBOLS: u16 = 8;
const INTERLEAVE: u16 = 4;
/// Five full blocks and a short one of four symbols.
const FILE_LEN: usize = 5 * 512 + 200;
/// The wall-clock time the fake clock starts at, for signatures.
pub const UNIX_MS: u64 = 1_800_000_000_000;
const RECEIVER_ID: u32 = 7;
const SESSION_KEY: [u8; 32] = [9; 32];
/// The output file is kept in memory up to this size; writes past it are dropped (a hostile
/// announce may place blocks gigabytes in).
const FILE_CAP: u64 = 1 << 20;
/// Datagrams taken from a `poll_transmit` loop per step, and decode rounds per step: an honest
/// state machine needs far fewer, so hitting the bound is a loop, not progress.
const MAX_POLLS: usize = 64;

/// The teacher's key, which signs; a lab PC's, which opens encrypted sessions; a stranger's.
/// Made once: deriving a key costs more than most steps of a script.
pub fn teacher() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_seed([1; 32]))
}
fn pc() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_seed([2; 32]))
}
pub fn stranger() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_seed([3; 32]))
}

/// Where the sender is, and where the receiver is.
pub fn sender_addr() -> SocketAddr {
    addr(0)
}
pub fn receiver_addr() -> SocketAddr {
    addr(1)
}

/// The kinds of session a script runs against: its first byte picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A whole file, unsigned.
    Plain,
    /// A download of unknown size (padded layout; the size comes with a later ANNOUNCE).
    Growing,
    /// Signed, and a receiver that trusts the teacher's key only.
    Signed,
    /// Signed and encrypted for the lab PC's key.
    Encrypted,
}

impl Flavor {
    pub const ALL: [Flavor; 4] = [
        Flavor::Plain,
        Flavor::Growing,
        Flavor::Signed,
        Flavor::Encrypted,
    ];

    fn of(b: u8) -> Flavor {
        Flavor::ALL[b as usize % 4]
    }

    fn signed(self) -> bool {
        matches!(self, Flavor::Signed | Flavor::Encrypted)
    }
}

/// The file sent: fixed pseudo-random bytes.
pub fn content() -> &'static [u8] {
    static CONTENT: OnceLock<Vec<u8>> = OnceLock::new();
    CONTENT.get_or_init(|| {
        let mut rng = Rng::new(0xF11E);
        (0..FILE_LEN).map(|_| rng.next_u64() as u8).collect()
    })
}

fn digests() -> FileDigests {
    let mut h = FileHasher::default();
    h.update(content());
    h.finish()
}

fn layout(flavor: Flavor) -> Layout {
    match flavor {
        Flavor::Growing => {
            Layout::open(SYMBOL_SIZE, BLOCK_SYMBOLS).and_then(|l| l.finish(FILE_LEN as u64))
        }
        _ => Layout::new(FILE_LEN as u64, SYMBOL_SIZE, BLOCK_SYMBOLS),
    }
    .expect("a valid layout")
}

pub fn sender_config(flavor: Flavor, t0: Instant) -> SenderConfig {
    SenderConfig {
        session: SESSION,
        symbol_size: SYMBOL_SIZE,
        block_symbols: BLOCK_SYMBOLS,
        interleave: INTERLEAVE,
        proactive: 0.1,
        min_receivers: 1,
        wait: Some(Duration::from_secs(1)),
        feedback: FeedbackAddr::Source { port: 5000 },
        cached_blocks: 2,
        signer: flavor.signed().then(|| Signer {
            key: teacher().clone(),
            clock: WallClock::new(t0, UNIX_MS),
        }),
        encryption: (flavor == Flavor::Encrypted).then(|| Encryption {
            key: SESSION_KEY,
            ephemeral: [8; 32],
            recipients: vec![pc().public(), stranger().public()],
        }),
        ..SenderConfig::default()
    }
}

pub fn receiver_config(flavor: Flavor, t0: Instant) -> ReceiverConfig {
    ReceiverConfig {
        id: RECEIVER_ID,
        name: "pc-07".into(),
        // Two blocks in memory: interleaving over four makes the receiver spill.
        buffered_blocks: 2,
        trust: flavor.signed().then(|| {
            Trust::new(
                [teacher().public()],
                WallClock::new(t0, UNIX_MS),
                DEFAULT_MAX_SKEW,
            )
        }),
        key: (flavor == Flavor::Encrypted).then(|| pc().clone()),
        ..ReceiverConfig::default()
    }
}

fn file_info(flavor: Flavor) -> FileInfo {
    let whole = flavor != Flavor::Growing;
    FileInfo {
        name: "lesson.bin".into(),
        size: whole.then_some(FILE_LEN as u64),
        digests: whole.then(digests),
    }
}

/// `edm-cast recv`'s file side, in memory.
pub struct RxShell {
    file: Vec<u8>,
    jobs: VecDeque<DecodeJob>,
    /// Run decode jobs as they come (the shell's usual way); off, they wait for a `Decode` step.
    auto: bool,
    /// The session joined: the shell looks for a finished copy only when its size and digests
    /// were announced.
    joined: Option<SessionInfo>,
    /// The whole-file check fails (a bad disk) even when the bytes are right.
    bad_disk: bool,
}

impl RxShell {
    pub fn new() -> Self {
        RxShell {
            file: Vec::new(),
            jobs: VecDeque::new(),
            auto: true,
            joined: None,
            bad_disk: false,
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        if end > FILE_CAP {
            return;
        }
        if self.file.len() < end as usize {
            self.file.resize(end as usize, 0);
        }
        self.file[offset as usize..end as usize].copy_from_slice(data);
    }

    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        if let Some(have) = self.file.get(offset.min(FILE_CAP) as usize..) {
            let n = have.len().min(len);
            v[..n].copy_from_slice(&have[..n]);
        }
        v
    }

    fn events(&mut self, rx: &mut Receiver, now: Instant) {
        while let Some(ev) = rx.poll_event() {
            match ev {
                ReceiverEvent::Joined(info) => {
                    self.file.clear();
                    self.joined = Some(info);
                }
                ReceiverEvent::Store { offset, data } => self.write(offset, &data),
                ReceiverEvent::Decode(job) => self.jobs.push_back(job),
                ReceiverEvent::Check(job) => {
                    let at = (job.offset as usize).min(self.file.len());
                    let end = (at + job.len).min(self.file.len());
                    let ok = job.run(self.file[at..end].to_vec());
                    rx.handle_checked(now, job.block, ok);
                }
                ReceiverEvent::Complete { size, .. } => {
                    let ok = self.file.get(..size.min(FILE_CAP) as usize) == Some(content());
                    rx.verified(now, ok && !self.bad_disk);
                }
                ReceiverEvent::Finished | ReceiverEvent::Failed(_) => {}
            }
        }
    }

    fn run_job(&mut self, rx: &mut Receiver, now: Instant, which: usize) {
        let Some(job) = self.jobs.remove(which % self.jobs.len().max(1)) else {
            return;
        };
        let (block, offset) = (job.block, job.offset);
        let spilled = job.needs_spilled().then(|| self.read(job.offset, job.len));
        match job.run(spilled) {
            Ok(bytes) => {
                self.write(offset, &bytes);
                rx.handle_decoded(now, Ok(block));
            }
            Err(e) => rx.handle_decoded(now, Err(e)),
        }
    }

    /// Events, decode jobs (when `auto`), and the feedback the receiver has to send.
    pub fn drive(
        &mut self,
        rx: &mut Receiver,
        now: Instant,
        mut feedback: impl FnMut(SocketAddr, &[u8]),
    ) {
        for _ in 0..MAX_POLLS {
            self.events(rx, now);
            if !self.auto || self.jobs.is_empty() {
                break;
            }
            self.run_job(rx, now, 0);
        }
        let mut buf = Vec::new();
        for _ in 0..MAX_POLLS {
            let Some(to) = rx.poll_transmit(now, &mut buf) else {
                break;
            };
            assert!(Packet::parse(&buf).is_ok(), "the receiver sent {buf:?}");
            feedback(to, &buf);
        }
    }
}

impl Default for RxShell {
    fn default() -> Self {
        Self::new()
    }
}

/// `edm-cast send`'s file side: the blocks it asks for, read from `content()`.
struct TxShell {
    wanted: Vec<(u32, u64, usize)>,
    /// Supply blocks as they are asked for; off, they wait for a `Supply` step.
    auto: bool,
}

impl TxShell {
    fn events(&mut self, tx: &mut Sender) {
        while let Some(ev) = tx.poll_event() {
            if let SenderEvent::NeedBlock { block, offset, len } = ev {
                self.wanted.push((block, offset, len));
            }
        }
        while self.auto && !self.wanted.is_empty() {
            self.supply(tx, 0, false);
        }
    }

    fn supply(&mut self, tx: &mut Sender, which: usize, short: bool) {
        if self.wanted.is_empty() {
            return;
        }
        let (block, offset, len) = self.wanted.remove(which % self.wanted.len());
        let start = (offset as usize).min(FILE_LEN);
        let mut data = content()[start..(start + len).min(FILE_LEN)].to_vec();
        if short {
            data.pop();
        }
        tx.supply_block(block, data);
    }
}

/// A real session between a sender and one receiver, as the receiver heard it (with every 11th
/// DATA lost, and in unencrypted sessions one symbol damaged, so that the recording has repair,
/// a failed digest and HASHES), and the receiver's feedback, each with when it was sent.
pub struct Recording {
    pub to_receiver: Vec<(Duration, Vec<u8>)>,
    pub to_sender: Vec<(Duration, Vec<u8>)>,
}

/// The recording of `flavor`'s session, made once.
pub fn recording(flavor: Flavor) -> &'static Recording {
    static RECORDINGS: [OnceLock<Recording>; 4] = [const { OnceLock::new() }; 4];
    RECORDINGS[flavor as usize].get_or_init(|| record(flavor))
}

fn record(flavor: Flavor) -> Recording {
    let t0 = Instant::now();
    let mut now = t0;
    let cfg = sender_config(flavor, t0);
    let mut tx = match flavor {
        Flavor::Growing => Sender::growing(cfg, file_info(flavor), t0),
        _ => Sender::new(cfg, file_info(flavor), t0),
    }
    .expect("a valid sender");
    let mut tx_shell = TxShell {
        wanted: Vec::new(),
        auto: true,
    };
    let mut rx = Receiver::new(receiver_config(flavor, t0));
    let mut rx_shell = RxShell::new();
    let mut rec = Recording {
        to_receiver: Vec::new(),
        to_sender: Vec::new(),
    };
    let (mut data_sent, mut damaged) = (0, flavor == Flavor::Encrypted);
    let mut buf = Vec::new();
    for tick in 0..40_000u64 {
        if flavor == Flavor::Growing && !tx.source_done() {
            // 128 bytes a tick: the download ends after about 10 ms.
            let have = (tick * 128).min(FILE_LEN as u64);
            if have == FILE_LEN as u64 {
                tx.source_ended(now, have, digests()).expect("as announced");
            } else {
                tx.source_grew(now, have);
            }
        }
        for _ in 0..4 {
            tx_shell.events(&mut tx);
            let Some(dest) = tx.poll_transmit(now, &mut buf) else {
                break;
            };
            if matches!(dest, Destination::Unicast(a) if a != receiver_addr()) {
                continue;
            }
            if let Ok(Packet::Data(d)) = Packet::parse(&buf).map(|d| d.packet) {
                data_sent += 1;
                if data_sent % 11 == 0 {
                    continue;
                }
                if !damaged && d.block == 1 && d.esi == 2 {
                    damaged = true;
                    *buf.last_mut().expect("a symbol") ^= 0x55;
                }
            }
            rec.to_receiver.push((now - t0, buf.clone()));
            rx.handle_datagram(now, sender_addr(), &buf);
        }
        rx_shell.drive(&mut rx, now, |_, fb| {
            rec.to_sender.push((now - t0, fb.to_vec()));
            tx.handle_datagram(now, receiver_addr(), fb);
        });
        if tx.poll_timeout().is_some_and(|t| now >= t) {
            tx.handle_timeout(now);
        }
        if rx.poll_timeout().is_some_and(|t| now >= t) {
            rx.handle_timeout(now);
        }
        if tx.is_finished() && rx.is_finished() {
            break;
        }
        now += Duration::from_micros(500);
    }
    assert!(
        rx.is_finished() && tx.is_finished(),
        "the recorded {flavor:?} session did not finish: {:?}",
        rx.stats()
    );
    rec
}

/// How a made-up control packet is sealed: by which key, at which time.
fn seal_of(flavor: Flavor, choice: u8, now_ms: u64) -> (Option<&'static SecretKey>, u64) {
    match choice % 8 {
        // Mostly as the real sender seals it.
        0..=4 => (flavor.signed().then(teacher), now_ms),
        5 => (None, now_ms),
        6 => (Some(stranger()), now_ms),
        // The teacher's key, an hour away from the receiver's clock: a replay.
        _ => (Some(teacher()), now_ms.saturating_sub(3_600_000)),
    }
}

fn write_sealed(packet: &Packet<'_>, seal: (Option<&SecretKey>, u64)) -> Vec<u8> {
    let mut out = Vec::new();
    match seal.0 {
        Some(k) => packet.write_sealed(SESSION, Seal::Signed(k, seal.1), &mut out),
        None => packet.write(SESSION, &mut out),
    }
    out
}

/// Symbols of the real session, made with the proto's own encoder.
struct Symbols {
    layout: Layout,
    plans: Plans,
    encoders: Vec<Option<BlockEncoder>>,
}

impl Symbols {
    fn new(flavor: Flavor) -> Self {
        let layout = layout(flavor);
        Symbols {
            layout,
            plans: Plans::default(),
            encoders: (0..layout.num_blocks()).map(|_| None).collect(),
        }
    }

    fn encoder(&mut self, block: u32) -> Option<&mut BlockEncoder> {
        let layout = self.layout;
        let slot = self.encoders.get_mut(block as usize)?;
        Some(slot.get_or_insert_with(|| {
            let at = layout.offset(block) as usize;
            BlockEncoder::new(
                &layout,
                block,
                content()[at..at + layout.len(block)].to_vec(),
            )
        }))
    }

    /// Symbol `esi` of `block`, if the block is in the file.
    fn symbol(&mut self, block: u32, esi: u32) -> Option<Vec<u8>> {
        let layout = self.layout;
        let mut plans = std::mem::take(&mut self.plans);
        let mut out = Vec::new();
        if let Some(enc) = self.encoder(block) {
            enc.write_symbol(&layout, &mut plans, esi, &mut out);
        }
        self.plans = plans;
        (!out.is_empty()).then_some(out)
    }

    fn digest(&mut self, block: u32) -> Option<[u8; 16]> {
        self.encoder(block).map(|e| block_digest(e.coded()))
    }
}

/// An ESI: mostly a small one (source, or the first repair symbols), sometimes anywhere in 24 bits.
fn esi_of(v: u16) -> u32 {
    if v & 0x8000 == 0 {
        (v % 40) as u32
    } else {
        ((v as u32) << 9).min(MAX_ESI)
    }
}

fn fail_reason(v: u8) -> FailReason {
    match v % 8 {
        0 => FailReason::None,
        1 => FailReason::Interrupted,
        2 => FailReason::DiskFull,
        3 => FailReason::CannotWrite,
        4 => FailReason::DigestMismatch,
        5 => FailReason::TooLarge,
        6 => FailReason::SenderGone,
        _ => FailReason::Other,
    }
}

#[derive(Arbitrary, Default)]
struct FlipOp {
    index: u16,
    at: u16,
    xor: u8,
}

#[derive(Arbitrary, Default)]
struct DataOp {
    block: u8,
    esi: u16,
    /// Mod 16: 0-11, the real symbol; 12, one bit off; 13, too short; else filled with `fill`.
    kind: u8,
    fill: u8,
}

#[derive(Arbitrary, Default)]
struct DigestsOp {
    first_block: u8,
    count: u8,
    /// Bit i: digest i is wrong.
    wrong: u64,
    seal: u8,
}

#[derive(Arbitrary, Default)]
struct HashesOp {
    block: u8,
    first_esi: u16,
    count: u8,
    wrong: u16,
    seal: u8,
}

#[derive(Arbitrary, Default)]
struct AnnounceOp {
    sent_blocks: u32,
    /// 0-3: the real size (or, growing, none yet); 4: none; 5: another; 6: huge.
    size: u8,
    /// 0-3: the real ones once the size is known; 4: none; 5: others.
    digests: u8,
    /// 0-5: the real parameters; 6: another T; 7: another K, W and name.
    change: u8,
    seal: u8,
}

#[derive(Arbitrary, Default)]
struct ControlOp {
    kind: u8,
    value: u8,
    seal: u8,
}

#[derive(Arbitrary, Default)]
struct KeysOp {
    part: u8,
    parts: u8,
    /// 0-3: the real wraps; 4: only the stranger's; 5: the PC's, damaged; else: a bad ephemeral.
    wraps: u8,
    seal: u8,
}

#[derive(Arbitrary, Default)]
struct ShellOp {
    kind: u8,
    which: u8,
}

/// Runs a script against a receiver that has not joined yet; its first byte picks the flavor.
pub fn receiver(data: &[u8]) {
    let Some((&flavor, script)) = data.split_first() else {
        return;
    };
    let flavor = Flavor::of(flavor);
    let rec = recording(flavor);
    let t0 = Instant::now();
    let mut now = t0;
    let clock = WallClock::new(t0, UNIX_MS);
    let mut rx = Receiver::new(receiver_config(flavor, t0));
    let mut shell = RxShell::new();
    let mut symbols = Symbols::new(flavor);
    let session_key = SessionKey::new(SESSION_KEY);
    let tape = |i: usize| &rec.to_receiver[i % rec.to_receiver.len()].1;
    let mut out = Vec::new();
    for step in steps(script) {
        now += step.advance;
        if rx.poll_timeout().is_some_and(|t| now >= t) {
            rx.handle_timeout(now);
        }
        let seal = |choice| seal_of(flavor, choice, clock.unix_ms(now));
        let deliver =
            |rx: &mut Receiver, bytes: &[u8]| rx.handle_datagram(now, sender_addr(), bytes);
        match step.op % 13 {
            // The real session's datagrams, as they were; the seeds are made of these.
            0 => deliver(&mut rx, tape(step.index())),
            1 => {
                let f: FlipOp = step.fields();
                let mut v = tape(f.index as usize).clone();
                let at = f.at as usize % v.len();
                v[at] ^= f.xor.max(1);
                deliver(&mut rx, &v);
            }
            2 => deliver(&mut rx, step.body),
            3 => {
                let (&from, body) = step.body.split_first().unwrap_or((&0, &[]));
                rx.handle_datagram(now, addr(from), body);
            }
            4 => {
                let d: DataOp = step.fields();
                let block = d.block as u32 % (symbols.layout.num_blocks() + 2);
                let esi = esi_of(d.esi);
                let kind = d.kind % 16;
                let mut symbol = match symbols.symbol(block, esi) {
                    Some(s) if kind < 14 => s,
                    _ => vec![d.fill; SYMBOL_SIZE as usize],
                };
                match kind {
                    12 => symbol[d.fill as usize % SYMBOL_SIZE as usize] ^= 1,
                    13 => symbol.truncate(d.fill as usize % SYMBOL_SIZE as usize),
                    _ => {}
                }
                // An empty symbol is written as a bare header.
                Packet::Data(Data {
                    block,
                    esi,
                    symbol: &symbol,
                })
                .write(SESSION, &mut out);
                if flavor == Flavor::Encrypted {
                    session_key.seal(SESSION, block, esi, &mut out, DATA_OVERHEAD);
                }
                deliver(&mut rx, &out);
            }
            5 => {
                let d: DigestsOp = step.fields();
                let first = d.first_block as u32 % (symbols.layout.num_blocks() + 4);
                let count = 1 + d.count as u32 % 64;
                let digests = (0..count)
                    .map(|i| match symbols.digest(first + i) {
                        Some(g) if d.wrong & (1 << (i % 64)) == 0 => g,
                        _ => [i as u8; 16],
                    })
                    .collect();
                let p = Packet::Digests(Digests {
                    first_block: first,
                    digests,
                });
                deliver(&mut rx, &write_sealed(&p, seal(d.seal)));
            }
            6 => {
                let h: HashesOp = step.fields();
                let block = h.block as u32 % (symbols.layout.num_blocks() + 1);
                let first_esi = esi_of(h.first_esi);
                let count = (1 + h.count as u32 % 16).min(MAX_ESI + 1 - first_esi);
                let hashes = (0..count)
                    .map(|i| {
                        let esi = first_esi + i;
                        match symbols.symbol(block, esi) {
                            Some(s) if h.wrong & (1 << i) == 0 => symbol_hash(block, esi, &s),
                            _ => [i as u8; 8],
                        }
                    })
                    .collect();
                // The list's end: this packet's end, or (the count's high bits) further on.
                let sent = (first_esi + count + h.count as u32 / 16 * 40).min(MAX_ESI + 1);
                let p = Packet::Hashes(Hashes {
                    block,
                    sent,
                    first_esi,
                    hashes,
                });
                deliver(&mut rx, &write_sealed(&p, seal(h.seal)));
            }
            7 => {
                let a: AnnounceOp = step.fields();
                let p = Packet::Announce(announce(flavor, &a));
                deliver(&mut rx, &write_sealed(&p, seal(a.seal)));
            }
            8 => {
                let c: ControlOp = step.fields();
                let p = match c.kind % 2 {
                    0 => Packet::End(End {
                        reason: if c.value % 2 == 0 {
                            EndReason::Complete
                        } else {
                            EndReason::Aborted
                        },
                    }),
                    _ => Packet::Ack(Ack {
                        receiver: if c.value % 4 == 0 {
                            RECEIVER_ID + 1
                        } else {
                            RECEIVER_ID
                        },
                    }),
                };
                deliver(&mut rx, &write_sealed(&p, seal(c.seal)));
            }
            9 => {
                let k: KeysOp = step.fields();
                let p = Packet::Keys(keys(&k));
                deliver(&mut rx, &write_sealed(&p, seal(k.seal)));
            }
            10 => rx.handle_timeout(now),
            11 => {
                let s: ShellOp = step.fields();
                match s.kind % 3 {
                    0 => shell.auto = !shell.auto,
                    _ => shell.run_job(&mut rx, now, s.which as usize),
                }
            }
            _ => {
                let s: ShellOp = step.fields();
                match s.kind % 3 {
                    0 => rx.fail(fail_reason(s.which)),
                    // As `recv` does: only for a session whose size and digests it knew at once.
                    1 => {
                        let known = (shell.joined.as_ref())
                            .is_some_and(|i| i.size.is_some() && i.digests.is_some());
                        if known {
                            rx.already_complete(now);
                        }
                    }
                    _ => shell.bad_disk = !shell.bad_disk,
                }
            }
        }
        shell.drive(&mut rx, now, |_, _| {});
        if let Some((done, total)) = rx.progress() {
            assert!(
                done <= total || rx.is_finished(),
                "{done} of {total} blocks"
            );
        }
    }
}

/// The real ANNOUNCE, with what `a` changes.
fn announce(flavor: Flavor, a: &AnnounceOp) -> Announce {
    let growing = flavor == Flavor::Growing;
    let file_size = match a.size % 8 {
        0..=3 => Some(FILE_LEN as u64).filter(|_| !growing || a.size & 0x80 != 0),
        4 => None,
        5 => Some(FILE_LEN as u64 - 1 - a.size as u64),
        _ => Some(u64::MAX >> (a.size % 64)),
    };
    let digests = match a.digests % 8 {
        0..=3 => Some(digests()),
        4 => None,
        _ => Some(FileDigests {
            md5: [a.digests; 16],
            sha256: [a.digests; 32],
        }),
    };
    let (symbol_size, block_symbols, interleave, name) = match a.change % 8 {
        0..=5 => (SYMBOL_SIZE, BLOCK_SYMBOLS, INTERLEAVE, "lesson.bin".into()),
        6 => (
            SYMBOL_SIZE + 16,
            BLOCK_SYMBOLS,
            INTERLEAVE,
            "lesson.bin".into(),
        ),
        _ => (SYMBOL_SIZE, 1 + a.change as u16, 1, "other.bin".into()),
    };
    Announce {
        file_size,
        digests: digests.filter(|_| file_size.is_some()),
        padded: growing,
        encrypted: flavor == Flavor::Encrypted,
        sync: false,
        staggered: true,
        symbol_size,
        block_symbols,
        interleave,
        sent_blocks: a.sent_blocks,
        feedback: FeedbackAddr::Source { port: 5000 },
        name,
    }
}

/// KEYS as the sender makes them, or not quite.
fn keys(k: &KeysOp) -> Keys {
    static REAL: OnceLock<([u8; 32], Vec<KeyWrap>)> = OnceLock::new();
    let (mut ephemeral, mut wraps) = REAL
        .get_or_init(|| {
            let recipients = [pc().public(), stranger().public()];
            crypt::wrap(&SESSION_KEY, [8; 32], &recipients, SESSION)
        })
        .clone();
    match k.wraps % 8 {
        0..=3 => {}
        4 => {
            wraps.remove(0);
        }
        5 => wraps[0].wrapped[k.part as usize % 48] ^= 1,
        _ => ephemeral = [k.wraps; 32],
    }
    let parts = 1 + k.parts % 3;
    Keys {
        ephemeral,
        part: k.part % parts,
        parts,
        wraps,
    }
}

#[derive(Arbitrary, Default)]
struct StatusOp {
    from: u8,
    receiver: u8,
    state: u8,
    reason: u8,
    blocks_done: u32,
    name: u8,
}

#[derive(Arbitrary, Default)]
struct NeedOp {
    from: u8,
    receiver: u8,
    entries: Vec<(u8, u16, u16, u8)>,
}

#[derive(Arbitrary, Default)]
struct SourceOp {
    kind: u8,
    bytes: u16,
    size: u8,
}

/// A receiver id: one of a dozen, so that hellos and NEEDs meet.
fn receiver_id(v: u8) -> u32 {
    RECEIVER_ID + (v % 12) as u32
}

/// Runs a script of feedback (and the shell's calls) against a sender of a real session; its
/// first byte picks the flavor (the signed one also has a small receiver table).
pub fn sender(data: &[u8]) {
    let Some((&flavor_byte, script)) = data.split_first() else {
        return;
    };
    let flavor = Flavor::of(flavor_byte);
    let t0 = Instant::now();
    let mut now = t0;
    let mut cfg = sender_config(flavor, t0);
    if flavor == Flavor::Signed {
        cfg.limits = Limits {
            max_receivers: 3,
            max_per_address: 2,
            initial_allowance: 4,
            ..Limits::default()
        };
    }
    let mut tx = match flavor {
        Flavor::Growing => Sender::growing(cfg, file_info(flavor), t0),
        _ => Sender::new(cfg, file_info(flavor), t0),
    }
    .expect("a valid sender");
    let mut shell = TxShell {
        wanted: Vec::new(),
        auto: true,
    };
    let mut buf = Vec::new();
    for step in steps(script) {
        now += step.advance;
        if tx.poll_timeout().is_some_and(|t| now >= t) {
            tx.handle_timeout(now);
        }
        let mut polls = 8;
        match step.op % 8 {
            0 => tx.handle_datagram(now, receiver_addr(), step.body),
            1 => {
                let (&from, body) = step.body.split_first().unwrap_or((&0, &[]));
                tx.handle_datagram(now, addr(from), body);
            }
            2 => {
                let s: StatusOp = step.fields();
                let state = match s.state % 4 {
                    0 => ReceiverState::Hello,
                    1 => ReceiverState::Receiving,
                    2 => ReceiverState::Done,
                    _ => ReceiverState::Failed,
                };
                let reason = match state {
                    ReceiverState::Failed => fail_reason(s.reason.max(1)),
                    _ => FailReason::None,
                };
                let p = Packet::Status(Status {
                    receiver: receiver_id(s.receiver),
                    state,
                    reason,
                    blocks_done: s.blocks_done,
                    name: "pc\u{1b}[2J".repeat(s.name as usize % 12),
                    echo: None,
                });
                tx.handle_datagram(now, addr(s.from), &p.to_vec(SESSION));
            }
            3 => {
                let n: NeedOp = step.fields();
                let entries: Vec<NeedEntry> = n
                    .entries
                    .iter()
                    .map(|&(block, need, seen, flags)| NeedEntry {
                        block: block as u32 % 8,
                        need: need % 24,
                        seen: seen as u32 % 64,
                        flags: NeedFlags {
                            no_digest: flags & 1 != 0,
                            verify: flags & 2 != 0,
                        },
                    })
                    .collect();
                if entries.is_empty() {
                    continue;
                }
                let p = Packet::Need(Need {
                    receiver: receiver_id(n.receiver),
                    entries,
                });
                tx.handle_datagram(now, addr(n.from), &p.to_vec(SESSION));
            }
            4 => polls = 1 + step.body.first().copied().unwrap_or(0) as usize,
            5 => {
                let s: ShellOp = step.fields();
                match s.kind % 3 {
                    0 => shell.auto = !shell.auto,
                    k => shell.supply(&mut tx, s.which as usize, k == 2),
                }
            }
            6 => {
                let s: SourceOp = step.fields();
                match s.kind % 2 {
                    0 => tx.source_grew(now, s.bytes as u64),
                    _ => {
                        let size = (FILE_LEN as u64).saturating_sub(s.size as u64 % 4);
                        let _ = tx.source_ended(now, size, digests());
                    }
                }
            }
            _ => match step.body.first().copied().unwrap_or(0) % 3 {
                0 => tx.abort(now),
                1 => tx.hold_until(now + Duration::from_secs(2)),
                _ => tx.handle_timeout(now),
            },
        }
        for _ in 0..polls {
            shell.events(&mut tx);
            let Some(_) = tx.poll_transmit(now, &mut buf) else {
                break;
            };
            assert!(buf.len() <= MAX_DATAGRAM, "{} bytes", buf.len());
            assert!(Packet::parse(&buf).is_ok(), "the sender sent {buf:?}");
        }
        shell.events(&mut tx);
    }
}
