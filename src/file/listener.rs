//! The receiving side of one file session: joins the group, feeds proto's `Receiver`, runs
//! decodes on the blocking pool, writes blocks (each verified against its digest) into a temporary
//! file in the output folder, with `--verify-file` checks the whole file's digests too, and
//! renames the file into place. `recv` runs one file after another; `get` one.
//! A file cut short is kept for the next run, which checks and keeps what it verified (`resume`).

use super::digest::{RunningDigests, WrittenBlocks};
use super::output::{FileHandle, Folder, OutputFile};
use super::resume;
use super::status_lines::{Event, StatusLines};
use super::sync;
use super::tree;
use super::tree_progress::TreeProgress;
use super::view;
use crate::cli;
use crate::error::Error;
use crate::keys;
use crate::net::datapath::RecvBatch;
use crate::net::{self, Group, Iface};
use crate::rt::{self, Shutdown};
use data_encoding::HEXLOWER;
use edm_cast_proto::auth::fingerprint;
use edm_cast_proto::file::tree::{HEADER_LEN, Manifest, parse_header};
use edm_cast_proto::wire::{FailReason, FileDigests};
use edm_cast_proto::{
    CheckJob, DecodeError, DecodeJob, Receiver, ReceiverConfig, ReceiverEvent, SecretKey,
    SessionInfo, Trust,
};
use indicatif::ProgressBar;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Decode jobs (each holding a block) at most in flight before the receiver stops reading.
const MAX_JOBS: usize = 8;

/// Checks of kept blocks (each reading a block) at most in flight; the others wait their turn, so
/// a restart on a slow disk does not hold hundreds of blocks in memory at once.
const MAX_CHECKS: usize = 4;

/// How long Ctrl-C waits for a tree being unpacked to stop and its staging folder to go.
const UNPACK_STOP: Duration = Duration::from_secs(30);

/// How long a receiver lets packets gather between reads.
const COALESCE: Duration = Duration::from_millis(1);

/// How a listener receives: into where, as whom, from whom.
#[derive(Clone)]
pub struct Listening {
    /// The output folder.
    pub out: Folder,
    /// The name the sender shows.
    pub name: String,
    /// Take only sessions signed by these keys, if set.
    pub trust: Option<Trust>,
    /// This PC's own key, for encrypted sessions.
    pub key: Option<SecretKey>,
    /// Give up if no session is heard within this long.
    pub timeout: Option<Duration>,
    /// Join only this session (`get`: the one the server offered).
    pub session: Option<u32>,
    /// `recv --status`: a line when a session is joined.
    pub lines: StatusLines,
    /// `--verify-file`: compute the whole file's MD5 and SHA-256 too, and fail on a mismatch.
    pub verify_file: bool,
}

impl Listening {
    /// From `recv`'s and `get`'s options.
    pub fn new(args: &cli::Receiving, timeout: Option<Duration>) -> Result<Self, Error> {
        let trust = keys::trust(&args.trusting)?;
        Ok(Listening {
            out: args.folder()?,
            name: args.name.clone().unwrap_or_else(rt::hostname),
            trust,
            key: args.key.as_deref().map(keys::secret).transpose()?,
            timeout,
            session: None,
            lines: StatusLines::default(),
            verify_file: args.verify_file,
        })
    }
}

/// What stays the same from one received file to the next.
pub struct Listener {
    group_addr: Group,
    group: UdpSocket,
    feedback: UdpSocket,
    /// Pause between reads (see `COALESCE`).
    coalesce: bool,
    how: Listening,
}

impl Listener {
    /// Joins `group` on `iface`; must be called inside the runtime.
    pub fn new(group: Group, iface: Iface, how: Listening) -> Result<Self, Error> {
        let group_std = net::group_socket(group, iface)?;
        let feedback_std = net::feedback_socket(iface)?;
        // 8 MiB is 60 ms at 1 Gbit/s: ample for a 1 ms pause.
        let coalesce = socket2::SockRef::from(&group_std)
            .recv_buffer_size()
            .is_ok_and(|b| b >= 8 << 20);
        keep_freed_memory();
        Ok(Listener {
            group_addr: group,
            group: net::register(group_std)?,
            feedback: net::register(feedback_std)?,
            coalesce,
            how,
        })
    }

    /// Receives one file: where it is, and the session joined (also when it failed, so that it
    /// can be skipped). On any failure the sender is told, so it does not wait for this receiver.
    pub async fn receive(&self, skip_sessions: &[u32], shutdown: &mut Shutdown) -> Received {
        let seed = rt::random_u64();
        let mut rx = Receiver::new(ReceiverConfig {
            id: seed as u32,
            name: self.how.name.clone(),
            seed,
            skip_sessions: skip_sessions.to_vec(),
            session: self.how.session,
            trust: self.how.trust.clone(),
            key: self.how.key.clone(),
            ..ReceiverConfig::default()
        });
        let (mut session, mut delivered) = (None, None);
        let file = self
            .session(&mut rx, &mut session, &mut delivered, shutdown)
            .await;
        if let Some(line) = hostile(rx.stats()) {
            eprintln!("{line}");
        }
        if let Err(e) = &file {
            rx.fail(e.fail_reason());
            flush(&mut rx, &self.feedback, &mut Vec::new()).await;
        }
        Received {
            session,
            file,
            delivered,
        }
    }

    async fn session(
        &self,
        rx: &mut Receiver,
        joined: &mut Option<u32>,
        delivered: &mut Option<Delivered>,
        shutdown: &mut Shutdown,
    ) -> Result<PathBuf, Error> {
        let (tx_done, mut done) = mpsc::unbounded_channel::<Done>();
        let mut file = Receiving::new(&self.how, joined, delivered, tx_done);
        let r = self.run(rx, &mut file, &mut done, shutdown).await;
        if r.is_err() {
            // A tree unpacked as it arrived: stopped, and its staging folder gone, before the
            // error is told.
            file.feeder = None;
            file.stop_unpacking(&mut done).await;
        }
        if let Err(e) = &r
            && let Some((_, output)) = &mut file.file
            && matches!(
                e.fail_reason(),
                FailReason::DiskFull
                    | FailReason::CannotWrite
                    | FailReason::DigestMismatch
                    | FailReason::TooLarge
            )
        {
            // Kept for a later run only if it can help one: not a full disk, nor a wrong file.
            output.discard();
        }
        r
    }

    async fn run(
        &self,
        rx: &mut Receiver,
        file: &mut Receiving<'_>,
        done: &mut mpsc::UnboundedReceiver<Done>,
        shutdown: &mut Shutdown,
    ) -> Result<PathBuf, Error> {
        let (group, feedback) = (&self.group, &self.feedback);
        let mut inbox = RecvBatch::new(group, 32).map_err(|source| Error::Socket {
            what: "cannot set up batched receive".into(),
            source,
        })?;
        let mut fb_inbox = vec![0u8; 2048];
        let mut out = Vec::with_capacity(1500);
        let give_up = self.how.timeout.map(|t| Instant::now() + t);
        loop {
            let wake = rx
                .poll_timeout()
                .or(if file.joined() { None } else { give_up })
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                // Past MAX_JOBS blocks waiting for the disk or a decoder, stop reading: the kernel
                // drops what does not fit and repair brings it back, so memory stays bounded.
                _ = group.readable(), if file.jobs < MAX_JOBS => {
                    // Drain what is queued (a batch per system call) before anything slower.
                    drain(&mut inbox, group, rx);
                    // Let packets gather for a moment: one wake-up per millisecond instead of one
                    // per packet leaves the CPU to the decoder (and, in a lab on one machine, to
                    // the sender). Only where the socket buffer holds far more than a millisecond.
                    if self.coalesce {
                        std::thread::sleep(COALESCE);
                    }
                }
                r = feedback.recv_from(&mut fb_inbox) => {
                    if let Ok((n, from)) = r {
                        rx.handle_datagram(Instant::now(), from, &fb_inbox[..n]);
                    }
                }
                Some(d) = done.recv() => file.on_done(rx, d)?,
                _ = tokio::time::sleep_until(wake.into()) => {
                    // What waits in the socket counts before any "the sender went silent": reads
                    // pause while decode jobs are many, and a slow disk can hold them for a while.
                    drain(&mut inbox, group, rx);
                    let now = Instant::now();
                    if rx.progress().is_none() && give_up.is_some_and(|t| now >= t) {
                        return Err(Error::NoSession {
                            group: self.group_addr.to_string(),
                            secs: self.how.timeout.unwrap_or_default().as_secs_f64(),
                        });
                    }
                    rx.handle_timeout(now);
                }
                stop = shutdown.recv() => {
                    file.stop_unpacking(done).await;
                    return Err(Error::Interrupted(stop));
                }
            }
            flush(rx, feedback, &mut out).await;
            loop {
                while let Some(ev) = rx.poll_event() {
                    if let Some(path) = file.on_event(rx, ev)? {
                        flush(rx, feedback, &mut out).await;
                        return Ok(path);
                    }
                }
                // A sync session: the bytes the receiver held its needs for may be here now.
                if !file.sync_step(rx) {
                    break;
                }
            }
        }
    }
}

/// Keeps what a decode frees for the next one. A solve allocates a few MB and frees them all
/// (raptorq's symbols and matrices); glibc's defaults hand such memory back to the kernel (its
/// mmap and trim thresholds adapt to about twice the largest block freed), so the next solve
/// faults every page in again, zeroed. Fixed thresholds above a block's size keep it: half the
/// page faults and 2–8% less of a receiver's CPU at 5% loss (`perf stat`, 3 alternated pairs,
/// 256 MiB at 500 Mbit/s; within bench/recvcpu.sh's noise). What stays is
/// bounded by the blocks a receiver holds at once (ReceiverConfig::memory, MAX_JOBS).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before the decoders run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// What was dropped as hostile or damaged, in one line, if anything was: a teacher (or an admin
/// reading a log) learns that someone on the LAN sent forged packets.
fn hostile(s: &edm_cast_proto::file::receiver::ReceiverStats) -> Option<String> {
    let d = &s.dropped;
    let kinds = [
        ("forged", d.forged),
        ("from another address", d.wrong_source),
        ("unsigned", d.unsigned),
        ("signed by an untrusted key", d.unknown_key),
        ("replayed or badly timed", d.stale),
        ("without a published hash", d.unverified),
        ("malformed", d.malformed + d.foreign + d.version),
    ];
    let listed: Vec<String> = kinds
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    if listed.is_empty() && s.forged_blocks == 0 {
        return None;
    }
    let mut line = format!(
        "dropped datagrams: {}",
        if listed.is_empty() {
            "none".into()
        } else {
            listed.join(", ")
        }
    );
    if s.forged_blocks > 0 {
        line += &format!(
            "; {} block(s) failed their digest and were collected again",
            s.forged_blocks
        );
    }
    Some(line)
}

/// One session's outcome.
pub struct Received {
    /// The session joined, if one was.
    pub session: Option<u32>,
    /// Where the file is.
    pub file: Result<PathBuf, Error>,
    /// What the file is, once it is in place.
    pub delivered: Option<Delivered>,
}

/// A file in place, as its status line and `--exec` describe it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub session: u32,
    pub size: u64,
    /// As announced, and found in the file.
    pub digests: FileDigests,
    pub sender: SocketAddr,
    /// The fingerprint of the trusted key that signed the session, if any.
    pub signed_by: Option<String>,
    /// A copy with these digests was there already: nothing was written.
    pub already_present: bool,
    /// A tree: its folder and files (the size and digests above are the whole stream's).
    pub tree: Option<tree::Unpacked>,
    /// How the file was found to be the one announced.
    pub verified: Verified,
}

/// How a received file was verified (`file_done`'s `verified`, `EDM_CAST_VERIFIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every block matched its published digest (PROTOCOL.md 9): the MD5 and SHA-256 are the
    /// announced ones, which those blocks reproduce.
    Blocks,
    /// The MD5 and SHA-256 were computed from the file and matched too (`--verify-file`, or a
    /// copy already present, which was read whole).
    File,
}

impl Verified {
    pub fn as_str(self) -> &'static str {
        match self {
            Verified::Blocks => "blocks",
            Verified::File => "file",
        }
    }
}

/// What the blocking pool reports back.
enum Done {
    /// A decode job's outcome, and the block's bytes once written (when the digests do not take
    /// them), for the receiver to hold another block's symbols in.
    Decoded(Result<u32, DecodeError>, Option<Vec<u8>>),
    /// The digests of the received file (with `--verify-file`), and the ones announced.
    Verified {
        got: Option<FileDigests>,
        want: FileDigests,
    },
    /// The name of a copy already there with the announced size and digests, if any.
    AlreadyHave(Option<String>),
    /// A verified tree stream, unpacked into its folder (or refused).
    Unpacked(Result<tree::Unpacked, Error>),
    /// What a sync session found already here (`sync::scan`).
    Known(Result<sync::Found, Error>),
    /// Whether a block kept from an earlier run (of `len` bytes of file) matches its digest.
    Checked {
        block: u32,
        len: usize,
        ok: bool,
    },
    /// A tree's manifest, read from its first blocks for the count of files done (None: it does
    /// not parse).
    Manifest(Option<Manifest>),
    Failed(Error),
}

impl Delivered {
    fn of(info: &SessionInfo, size: u64, digests: FileDigests, verified: Verified) -> Self {
        Delivered {
            session: info.session,
            size,
            digests,
            sender: info.sender,
            signed_by: info.signed_by.as_ref().map(fingerprint),
            already_present: false,
            tree: None,
            verified,
        }
    }
}

/// The file of one session: what the receiver's events and the blocking pool's reports act on.
struct Receiving<'a> {
    folder: &'a Folder,
    lines: &'a StatusLines,
    /// Set once the file is in place.
    delivered: &'a mut Option<Delivered>,
    /// The announced size and digests, once the receiver has every block.
    complete: Option<(u64, FileDigests)>,
    /// A verified tree being unpacked on the blocking pool (which can take a while: the
    /// receiver keeps answering meanwhile), and what stops it (Ctrl-C).
    unpacking: Option<SessionInfo>,
    cancel: Arc<AtomicBool>,
    /// A tree's unpacking runs while its stream arrives (`tree::unpack`) ...
    unpacker: bool,
    /// ... told how much of the stream is in and verified; dropped unverified, it stops.
    feeder: Option<tree::Feeder>,
    /// A tree being received: its files done, for the bar.
    tree: Option<TreeProgress>,
    /// What was placed, once a tree is unpacked.
    unpacked: Option<tree::Unpacked>,
    /// Where decodes, checks and the MD5 report back.
    reports: mpsc::UnboundedSender<Done>,
    /// The session, once joined.
    joined: &'a mut Option<u32>,
    file: Option<(SessionInfo, OutputFile)>,
    digests: Option<RunningDigests>,
    bar: Option<ProgressBar>,
    /// Where the verified file is.
    result: Option<PathBuf>,
    /// Files of the same name are being checked: one may be this very file.
    checking: bool,
    /// The received file is verified (every block, and with `--verify-file` its MD5 too) ...
    verified: bool,
    /// ... and how.
    verified_by: Verified,
    /// `--verify-file`.
    verify_file: bool,
    /// Decode jobs in flight.
    jobs: usize,
    /// Blocks kept from an earlier run: how many, and how many are still being checked ...
    kept: u32,
    checking_kept: u32,
    /// Bytes of the kept blocks that matched.
    kept_bytes: u64,
    /// ... of which these wait for a turn (`MAX_CHECKS` run at once).
    checks: std::collections::VecDeque<CheckJob>,
    checks_running: usize,
    /// A sync session (`send --sync`): what is already here is being found.
    sync: Option<Syncing>,
}

/// Where a sync session is in finding what is already here (PROTOCOL.md 5.9).
enum Syncing {
    /// One file: the receiver holds its needs while the copy here is checked.
    File,
    /// A tree, synced from the folder `old` here: waiting for the stream's header, then for its
    /// manifest, then the scan of `old`; once received, the tree replaces `old`.
    Header {
        old: String,
    },
    Manifest {
        old: String,
        count: u32,
        prefix: u64,
    },
    Scanning {
        old: String,
    },
    Replace {
        old: String,
    },
}

impl<'a> Receiving<'a> {
    fn new(
        how: &'a Listening,
        joined: &'a mut Option<u32>,
        delivered: &'a mut Option<Delivered>,
        reports: mpsc::UnboundedSender<Done>,
    ) -> Self {
        Receiving {
            folder: &how.out,
            lines: &how.lines,
            delivered,
            complete: None,
            unpacking: None,
            cancel: Arc::default(),
            unpacker: false,
            feeder: None,
            tree: None,
            unpacked: None,
            reports,
            joined,
            file: None,
            digests: None,
            bar: None,
            result: None,
            checking: false,
            verified: false,
            verified_by: Verified::Blocks,
            verify_file: how.verify_file,
            jobs: 0,
            kept: 0,
            checking_kept: 0,
            kept_bytes: 0,
            checks: Default::default(),
            checks_running: 0,
            sync: None,
        }
    }

    fn joined(&self) -> bool {
        self.file.is_some()
    }

    /// Acts on one of the receiver's events; the path of the file once the session is over.
    fn on_event(&mut self, rx: &mut Receiver, ev: ReceiverEvent) -> Result<Option<PathBuf>, Error> {
        if !matches!(ev, ReceiverEvent::Decode(_) | ReceiverEvent::Store { .. }) {
            tracing::debug!("{ev:?}");
        }
        match ev {
            ReceiverEvent::Joined(info) => {
                let sync = info.sync;
                let kept = self.on_joined(info)?;
                if sync {
                    self.start_sync(rx);
                }
                if !kept.is_empty() {
                    self.kept = kept.len() as u32;
                    self.checking_kept = rx.resume(Instant::now(), &kept);
                    if self.checking_kept == 0 {
                        self.say_resumed(rx);
                    }
                }
            }
            ReceiverEvent::Check(job) => {
                self.checks.push_back(job);
                self.next_checks(rx);
            }
            ReceiverEvent::Store { offset, data } => {
                if let Some((info, f)) = &self.file {
                    within_max_size(self.folder, info, offset + data.len() as u64)?;
                    f.handle().write_at(offset, &data)?;
                }
            }
            ReceiverEvent::Decode(job) => match (&self.file, &self.digests) {
                (Some((info, f)), Some(m)) => {
                    within_max_size(self.folder, info, job.offset + job.len as u64)?;
                    self.jobs += 1;
                    spawn_decode(job, f.handle(), m.written(), self.reports.clone())
                }
                // The file was found already present: nothing to write.
                _ => rx.handle_decoded(Instant::now(), Ok(job.block)),
            },
            ReceiverEvent::Complete {
                size,
                digests: want,
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(size);
                }
                self.complete = Some((size, want));
                match (self.digests.take(), &self.file) {
                    (Some(m), Some((_, f))) => {
                        if let Some(max) = self.folder.rules().max_size
                            && size > max
                        {
                            return Err(Error::TooLarge {
                                name: f.name().to_owned(),
                                size: Some(size),
                                max,
                            });
                        }
                        // A padded last block may have been written whole: cut it.
                        f.set_len(size)?;
                        spawn_verify(m, size, want, self.reports.clone());
                    }
                    _ => rx.verified(Instant::now(), true),
                }
            }
            ReceiverEvent::Finished => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                }
                return self
                    .result
                    .take()
                    .map(Some)
                    .ok_or_else(|| Error::Protocol("finished without a file".into()));
            }
            ReceiverEvent::Failed(e) => {
                if let Some(bar) = &self.bar {
                    bar.abandon();
                }
                return Err(Error::Receive(e));
            }
        }
        Ok(None)
    }

    /// Prepares the output file; the blocks an earlier run kept in it, to be checked.
    fn on_joined(&mut self, info: SessionInfo) -> Result<Vec<u32>, Error> {
        *self.joined = Some(info.session);
        let folder = self.folder;
        // A tree lands as a folder named after the sent one (`tree`).
        let name = folder.name_for(tree::root(&info.name).unwrap_or(&info.name), info.session);
        // Before anything is written: an announce can claim any size.
        if let Some(size) = info.size {
            folder.admit(&name, size)?;
        }
        let (output, kept) = match resume::open(folder, &name, &info)? {
            Some(resumed) => resumed,
            None => (folder.create(&name, info.size)?, Vec::new()),
        };
        // A complete copy already there? Check on the side while receiving goes on.
        if let (Some(size), Some(want)) = (info.size, info.digests) {
            self.checking = true;
            let (tx, folder, name) = (self.reports.clone(), folder.clone(), name.clone());
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(Done::AlreadyHave(folder.copy_of(&name, size, want)));
            });
        }
        // A sync session lands where the folder it is synced from is (`start_sync`).
        let synced = info.sync
            && tree::root(&info.name).is_some()
            && folder.has_folder(&name)
            && replaces(folder, &info);
        let (landing, taken) = if synced {
            (folder.path().join(&name), false)
        } else {
            folder.planned(&name)
        };
        let note = match (taken, folder.rules().overwrite) {
            (false, _) => String::new(),
            (true, true) if landing.ends_with(&name) => {
                format!(" (--overwrite: replacing the {name} there)")
            }
            (true, _) => format!(" ({name} is already there and is kept)"),
        };
        eprintln!(
            "receiving {} ({}) from {} (session {:08x}), {}{} into {}{note}",
            printable(&info.name),
            info.size.map_or("size not known yet".into(), view::bytes),
            info.sender.ip(),
            info.session,
            // Without a trust set, the one line that says so, and how to do better.
            match info.signed_by {
                Some(key) => format!("signed by the trusted key {}", fingerprint(&key)),
                None => "unsigned, taken from anyone on the LAN (to take only the teacher's, \
                         give --trust edm1-... or list the key in /etc/edm-cast/trusted)"
                    .into(),
            },
            if info.encrypted { ", encrypted" } else { "" },
            landing.display()
        );
        if !kept.is_empty() {
            let total = info.layout.num_blocks().max(1);
            eprintln!(
                "resuming: {} of {total} blocks ({:.0}%) kept here by an earlier run; each is checked against its digest",
                kept.len(),
                (kept.len() as f64 * 100.0 / total as f64).floor()
            );
        }
        self.lines.emit(Event::SessionJoined {
            session: format!("{:08x}", info.session),
            name: info.name.clone(),
            size: info.size,
            sender: info.sender.ip().to_string(),
            signed_by: info.signed_by.as_ref().map(fingerprint),
            encrypted: info.encrypted,
            path: std::path::absolute(&landing).unwrap_or(landing),
        });
        if tree::root(&info.name).is_some() {
            self.tree = Some(TreeProgress::new(
                info.layout.num_blocks(),
                info.block_bytes,
            ));
            // Left by a receiver killed while unpacking (the one before this, it may be).
            let folder = folder.clone();
            tokio::task::spawn_blocking(move || tree::tidy_stages(&folder));
        }
        self.bar = Some(view::receive_bar(info.size));
        let digests = RunningDigests::start(output.handle(), info.size.is_some(), self.verify_file);
        // A tree of known size is unpacked as its stream arrives: only the tail is left to write
        // once the last block is in.
        if let (Some(_), Some(size)) = (tree::root(&info.name), info.size) {
            let (feeder, feed) = tree::Feeder::new(digests.hashed());
            self.feeder = Some(feeder);
            self.unpack(output.name().to_owned(), output.handle(), size, feed);
        }
        self.digests = Some(digests);
        self.file = Some((info, output));
        Ok(kept)
    }

    /// Acts on what the blocking pool reports.
    fn on_done(&mut self, rx: &mut Receiver, d: Done) -> Result<(), Error> {
        let now = Instant::now();
        match d {
            Done::Decoded(outcome, spare) => {
                self.jobs -= 1;
                if let Some(buf) = spare {
                    rx.recycle(buf);
                }
                if let (Ok(block), Some((_, output))) = (&outcome, &mut self.file) {
                    output.reserve()?;
                    if let Some(p) = output.partial() {
                        p.set(*block, true);
                        p.save(false);
                    }
                }
                if let Ok(block) = &outcome {
                    self.tree_block(*block);
                }
                rx.handle_decoded(now, outcome);
                if let (Some(bar), Some((info, _)), Some((done, _))) =
                    (&self.bar, &self.file, rx.progress())
                {
                    let at = done as u64 * info.block_bytes;
                    bar.set_position(info.size.map_or(at, |size| at.min(size)));
                }
            }
            Done::Verified { got, want } => {
                let Some((_, output)) = &self.file else {
                    // The copy already there was found to be this file first.
                    return Ok(());
                };
                let how = match got {
                    Some(got) => {
                        if let Some(e) = Error::mismatch(output.name(), &want, &got) {
                            return Err(e);
                        }
                        self.verified_by = Verified::File;
                        "computed from the file"
                    }
                    None => "as announced: every block matched its digest",
                };
                eprintln!(
                    "verified: md5 {}, sha256 {} ({how})",
                    HEXLOWER.encode(&want.md5),
                    HEXLOWER.encode(&want.sha256)
                );
                self.verified = true;
                self.keep(rx, now)?;
            }
            Done::AlreadyHave(copy) => {
                self.checking = false;
                if matches!(self.sync, Some(Syncing::File)) {
                    self.sync = None;
                    if copy.is_none() {
                        rx.known(now, &[]);
                    }
                }
                match (self.file.take(), copy) {
                    (Some((info, mut output)), Some(copy)) => {
                        output.discard();
                        // A tree being unpacked meanwhile stops, and its staging folder goes.
                        self.feeder = None;
                        self.unpacker = false;
                        // Nothing more is received: no bar left standing at "0 B/…".
                        if let Some(bar) = self.bar.take() {
                            bar.finish_and_clear();
                        }
                        let path = self.folder.path().join(copy);
                        eprintln!("{}: already present, same MD5 and SHA-256", path.display());
                        // Checked only for a session announced with its size and digests.
                        if let (Some(size), Some(digests)) = (info.size, info.digests) {
                            *self.delivered = Some(Delivered {
                                already_present: true,
                                ..Delivered::of(&info, size, digests, Verified::File)
                            });
                        }
                        self.result = Some(path);
                        rx.already_complete(now);
                    }
                    (file, _) => {
                        self.file = file;
                        self.keep(rx, now)?;
                    }
                }
            }
            Done::Checked { block, len, ok } => {
                self.checks_running -= 1;
                if ok {
                    self.kept_bytes += len as u64;
                    self.tree_block(block);
                }
                self.next_checks(rx);
                rx.handle_checked(now, block, ok);
                if let (Some(bar), Some((info, _)), Some((done, _))) =
                    (&self.bar, &self.file, rx.progress())
                {
                    bar.set_position((done as u64 * info.block_bytes).min(info.size.unwrap_or(0)));
                }
                if let Some((_, output)) = &mut self.file {
                    if let Some(p) = output.partial() {
                        p.set(block, ok);
                    }
                    self.checking_kept -= 1;
                    if self.checking_kept == 0 {
                        self.say_resumed(rx);
                    }
                }
            }
            Done::Known(found) => {
                let Some(Syncing::Scanning { old }) = self.sync.take() else {
                    return Ok(());
                };
                match found {
                    Ok(found) => {
                        eprintln!(
                            "sync: {} of the {} files ({}) are here already; receiving the rest",
                            found.files,
                            found.of,
                            view::bytes(found.bytes)
                        );
                        rx.known(now, &found.known);
                    }
                    Err(e) => {
                        eprintln!("sync: {e}; receiving the whole folder");
                        rx.known(now, &[]);
                    }
                }
                self.sync = Some(Syncing::Replace { old });
            }
            // One stopped on purpose (a copy was here already) has nothing to say.
            Done::Unpacked(_) if !self.unpacker => {}
            Done::Unpacked(done) => {
                self.unpacker = false;
                let mut done = match done {
                    Ok(done) => done,
                    // Refused or failed while the stream still arrives: not kept for a resume.
                    Err(e) => {
                        if let Some((_, output)) = &mut self.file {
                            output.discard();
                        }
                        return Err(e);
                    }
                };
                if let Some(
                    Syncing::Replace { old }
                    | Syncing::Header { old }
                    | Syncing::Manifest { old, .. }
                    | Syncing::Scanning { old },
                ) = self.sync.take()
                    && (self.unpacking.as_ref()).is_some_and(|info| replaces(self.folder, info))
                {
                    done.path = self.replace(&old, done.path)?;
                }
                eprintln!(
                    "unpacked {} files and {} folders ({}) into {}",
                    done.files,
                    done.folders,
                    view::bytes(done.bytes),
                    done.path.display()
                );
                self.result = Some(done.path.clone());
                self.unpacked = Some(done);
                if let Some(info) = self.unpacking.take() {
                    self.in_place(rx, &info, now);
                }
            }
            Done::Manifest(manifest) => {
                if let Some(t) = &mut self.tree {
                    t.manifest(manifest);
                }
                self.show_files();
            }
            Done::Failed(e) => return Err(e),
        }
        Ok(())
    }

    /// A block of a tree is in: the count of files done, and the manifest read once its blocks
    /// are all in.
    fn tree_block(&mut self, block: u32) {
        let (Some(t), Some((info, output))) = (&mut self.tree, &self.file) else {
            return;
        };
        let file = output.handle();
        let header = || file.read_at(0, HEADER_LEN).ok()?.try_into().ok();
        let manifest = t.block_done(block, header);
        if let (Some(feeder), Some(size)) = (&self.feeder, info.size) {
            feeder.prefix(t.prefix_bytes().min(size));
        }
        if let Some((count, len)) = manifest {
            let (size, tx) = (info.size.unwrap_or(0), self.reports.clone());
            let file = output.handle();
            tokio::task::spawn_blocking(move || {
                let manifest = file
                    .read_at(HEADER_LEN as u64, len as usize)
                    .ok()
                    .and_then(|body| Manifest::parse(count, &body, size).ok());
                let _ = tx.send(Done::Manifest(manifest));
            });
        }
        self.show_files();
    }

    /// `12/201 files` beside the bar, once the manifest is known.
    fn show_files(&self) {
        if let (Some(bar), Some((done, total))) =
            (&self.bar, self.tree.as_ref().and_then(TreeProgress::files))
        {
            bar.set_message(format!(" · {done}/{total} files"));
        }
    }

    /// Ctrl-C while a tree is unpacked: the build stops, its staging folder is removed, and only
    /// then does `recv` exit (within `UNPACK_STOP`).
    async fn stop_unpacking(&mut self, done: &mut mpsc::UnboundedReceiver<Done>) {
        if !self.unpacker {
            return;
        }
        self.cancel.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(UNPACK_STOP, async {
            while let Some(d) = done.recv().await {
                if matches!(d, Done::Unpacked(_)) {
                    return;
                }
            }
        })
        .await;
        self.unpacker = false;
    }

    /// A sync session: the receiver holds its needs until what is here is found. A tree with a
    /// folder of its name here is synced from it (its header and manifest come first); one file,
    /// while the copy here (if any) is checked. A tree with nothing here asks for everything.
    fn start_sync(&mut self, rx: &mut Receiver) {
        let Some((info, _)) = &self.file else {
            return;
        };
        let now = Instant::now();
        match tree::root(&info.name) {
            Some(root) => {
                let old = self.folder.name_for(root, info.session);
                if self.folder.has_folder(&old) {
                    eprintln!(
                        "sync: reusing the files of {} that the sender's folder has unchanged; {}",
                        self.folder.path().join(&old).display(),
                        if replaces(self.folder, info) {
                            "the folder received replaces it"
                        } else {
                            "it is kept, the folder received goes beside it (to have it replaced, \
                             trust the sender's key with --trust, or give --overwrite)"
                        }
                    );
                    rx.hold(now, HEADER_LEN as u64);
                    self.sync = Some(Syncing::Header { old });
                }
            }
            None if self.checking => {
                rx.hold(now, 0);
                self.sync = Some(Syncing::File);
            }
            None => {}
        }
    }

    /// Moves a sync session on once the receiver has the bytes it waits for: the header says how
    /// long the manifest is; the manifest, which files to look for. True if the receiver was told
    /// something (it may have events).
    fn sync_step(&mut self, rx: &mut Receiver) -> bool {
        let (Some((info, output)), Some(stage)) = (&self.file, &self.sync) else {
            return false;
        };
        if !rx.prefix_ready() {
            return false;
        }
        let now = Instant::now();
        let stream = output.handle();
        let size = info.size.unwrap_or(0);
        let give_up = |rx: &mut Receiver, why: String| {
            eprintln!("sync: {why}; receiving the whole folder");
            rx.known(Instant::now(), &[]);
        };
        match stage {
            Syncing::Header { old } => {
                let old = old.clone();
                let header = (stream.read_at(0, HEADER_LEN).ok())
                    .and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok());
                match header.map(|h| parse_header(&h)) {
                    Some(Ok((count, len))) => {
                        let prefix = HEADER_LEN as u64 + len as u64;
                        rx.hold(now, prefix);
                        self.sync = Some(Syncing::Manifest { old, count, prefix });
                    }
                    Some(Err(e)) => {
                        give_up(rx, e.to_string());
                        self.sync = Some(Syncing::Replace { old });
                    }
                    None => {
                        give_up(rx, "cannot read the tree's header".into());
                        self.sync = Some(Syncing::Replace { old });
                    }
                }
            }
            Syncing::Manifest { old, count, prefix } => {
                let (old, count, prefix) = (old.clone(), *count, *prefix);
                let body = stream.read_at(HEADER_LEN as u64, (prefix - HEADER_LEN as u64) as usize);
                let manifest = body
                    .map_err(|e| e.to_string())
                    .and_then(|b| Manifest::parse(count, &b, size).map_err(|e| e.to_string()));
                match manifest {
                    Ok(manifest) => {
                        let (folder, tx, layout) =
                            (self.folder.clone(), self.reports.clone(), info.layout);
                        let name = old.clone();
                        tokio::task::spawn_blocking(move || {
                            let found =
                                sync::scan(&folder, &name, &manifest, prefix, &layout, &stream);
                            let _ = tx.send(Done::Known(found));
                        });
                        self.sync = Some(Syncing::Scanning { old });
                        return false;
                    }
                    Err(why) => {
                        give_up(rx, why);
                        self.sync = Some(Syncing::Replace { old });
                    }
                }
            }
            Syncing::File | Syncing::Scanning { .. } | Syncing::Replace { .. } => return false,
        }
        true
    }

    /// A tree received in a sync session takes the place of the folder `old` it was synced from,
    /// at once (the two are swapped), and `old` is removed. Where the tree landed if that fails.
    fn replace(&self, old: &str, landed: PathBuf) -> Result<PathBuf, Error> {
        let Some(new) = landed
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
        else {
            return Ok(landed);
        };
        if new == old || !self.folder.has_folder(old) {
            return Ok(landed);
        }
        let write = |source| Error::Write {
            path: self.folder.path().join(old),
            source,
        };
        self.folder.exchange(&new, old).map_err(write)?;
        self.folder.remove_folder(&new).map_err(write)?;
        Ok(self.folder.path().join(old))
    }

    /// Said once, when every kept block was checked: how much of the file the restart saved.
    fn say_resumed(&self, rx: &Receiver) {
        let Some((info, _)) = &self.file else {
            return;
        };
        let good = rx.stats().resumed_blocks;
        let total = info.layout.num_blocks().max(1);
        eprintln!(
            "resumed at {:.0}%: {good} of the {} kept blocks match their digests{}",
            (good as f64 * 100.0 / total as f64).floor(),
            self.kept,
            match self.kept as u64 - good {
                0 => String::new(),
                bad => format!(", {bad} did not and are received again"),
            }
        );
        self.lines.emit(Event::Resumed {
            session: format!("{:08x}", info.session),
            blocks: total,
            kept: self.kept,
            matched: good,
            rejected: self.kept as u64 - good,
            bytes: self.kept_bytes,
        });
    }

    /// Starts the checks of kept blocks that wait, up to `MAX_CHECKS` at once.
    fn next_checks(&mut self, rx: &mut Receiver) {
        while self.checks_running < MAX_CHECKS
            && let Some(job) = self.checks.pop_front()
        {
            match (&self.file, &self.digests) {
                (Some((_, f)), Some(m)) => {
                    self.checks_running += 1;
                    spawn_check(job, f.handle(), m.written(), self.reports.clone());
                }
                // The file was found already present: nothing to check.
                _ => rx.handle_checked(Instant::now(), job.block, false),
            }
        }
    }

    /// The file (or tree) is in place: said to the sender, and described for `--exec`.
    fn in_place(&mut self, rx: &mut Receiver, info: &SessionInfo, now: Instant) {
        if let Some((size, digests)) = self.complete {
            *self.delivered = Some(Delivered {
                tree: self.unpacked.take(),
                ..Delivered::of(info, size, digests, self.verified_by)
            });
        }
        rx.verified(now, true);
    }

    /// Unpacks the tree stream `stream` (of `size` bytes) on the blocking pool, as `feed` says
    /// its bytes are in; `Done::Unpacked` once the tree is placed (or refused, or stopped).
    fn unpack(&mut self, name: String, stream: FileHandle, size: u64, feed: Arc<tree::Feed>) {
        let (folder, tx) = (self.folder.clone(), self.reports.clone());
        let cancel = self.cancel.clone();
        self.unpacker = true;
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Done::Unpacked(tree::unpack(
                &folder,
                &name,
                stream.file(),
                size,
                &feed,
                &cancel,
            )));
        });
    }

    /// Moves the verified file to its name, once the check of a copy already there (if any) has
    /// answered: an identical copy is kept instead, rather than a second one beside it.
    fn keep(&mut self, rx: &mut Receiver, now: Instant) -> Result<(), Error> {
        if !self.verified || self.checking {
            return Ok(());
        }
        if let Some((info, mut output)) = self.file.take() {
            if tree::root(&info.name).is_some() {
                // The unpacking reads the stream through its own handle; the stream file goes
                // once it is done (it is not kept for a resume either way).
                output.discard();
                match self.feeder.take() {
                    Some(feeder) => feeder.verified(),
                    None => {
                        // Verified at once: its digests are done.
                        let (feeder, feed) = tree::Feeder::new(Arc::default());
                        let size = self.complete.map_or(0, |(size, _)| size);
                        self.unpack(output.name().to_owned(), output.handle(), size, feed);
                        feeder.verified();
                    }
                }
                self.unpacking = Some(info);
                return Ok(());
            }
            self.result = Some(output.commit()?);
            self.in_place(rx, &info, now);
        }
        Ok(())
    }
}

/// Whether a tree received in a sync session replaces the folder it was synced from: only from a
/// sender whose key this PC trusts, or with `--overwrite`, so that nobody else on the LAN can
/// remove a folder by sending one of its name.
fn replaces(folder: &Folder, info: &SessionInfo) -> bool {
    info.signed_by.is_some() || folder.rules().overwrite
}

/// The announced name as sent, its control and formatting characters shown as escapes
/// (`\u{1b}`): a hostile name must not drive the terminal.
fn printable(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '\'' | '"' | '\\' => c.to_string(),
            _ => c.escape_debug().to_string(),
        })
        .collect()
}

/// While the size is not known yet (a download still arriving), `--max-size` is checked as the
/// blocks come: a write may end past it by the padding of the last block at most.
fn within_max_size(folder: &Folder, info: &SessionInfo, end: u64) -> Result<(), Error> {
    match folder.rules().max_size {
        Some(max) if info.size.is_none() && end > max.saturating_add(info.block_bytes) => {
            Err(Error::TooLarge {
                name: folder.name_for(&info.name, info.session),
                size: None,
                max,
            })
        }
        _ => Ok(()),
    }
}

/// Hands the receiver what is queued on the group socket, a batch per system call.
fn drain(inbox: &mut RecvBatch, group: &UdpSocket, rx: &mut Receiver) {
    let now = Instant::now();
    for _ in 0..64 {
        match inbox.try_recv(group, |from, d| rx.handle_datagram(now, from, d)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                tracing::debug!("group socket: {e}");
                break;
            }
        }
    }
}

/// Sends the receiver's pending feedback.
async fn flush(rx: &mut Receiver, socket: &UdpSocket, out: &mut Vec<u8>) {
    while let Some(to) = rx.poll_transmit(Instant::now(), out) {
        send(socket, out, to).await;
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    // Feedback is best effort: the protocol repeats what matters.
    if let Err(e) = socket.send_to(bytes, to).await {
        tracing::debug!("feedback to {to}: {e}");
    }
}

fn spawn_decode(
    job: DecodeJob,
    file: FileHandle,
    written: WrittenBlocks,
    tx: mpsc::UnboundedSender<Done>,
) {
    tokio::task::spawn_blocking(move || {
        let result = (|| {
            let spilled = if job.needs_spilled() {
                Some(file.read_at(job.offset, job.len)?)
            } else {
                None
            };
            let (block, offset) = (job.block, job.offset);
            Ok(match job.run(spilled) {
                Ok(bytes) => {
                    file.write_at(offset, &bytes)?;
                    let spare = written.written(block, offset, bytes.len(), Some(bytes));
                    Done::Decoded(Ok(block), spare)
                }
                Err(job) => Done::Decoded(Err(job), None),
            })
        })();
        let _ = tx.send(result.unwrap_or_else(Done::Failed));
    });
}

fn spawn_check(
    job: CheckJob,
    file: FileHandle,
    written: WrittenBlocks,
    tx: mpsc::UnboundedSender<Done>,
) {
    tokio::task::spawn_blocking(move || {
        // A block the file does not hold in full (cut short by a crash) is simply not kept.
        let ok = file
            .read_at(job.offset, job.len)
            .is_ok_and(|bytes| job.run(bytes));
        if ok {
            let _ = written.written(job.block, job.offset, job.len, None);
        }
        let _ = tx.send(Done::Checked {
            block: job.block,
            len: job.len,
            ok,
        });
    });
}

fn spawn_verify(
    digests: RunningDigests,
    size: u64,
    want: FileDigests,
    tx: mpsc::UnboundedSender<Done>,
) {
    tokio::task::spawn_blocking(move || {
        let _ = tx.send(match digests.finish(size) {
            Ok(got) => Done::Verified { got, want },
            Err(e) => Done::Failed(e),
        });
    });
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn a_hostile_name_is_printed_with_its_control_characters_escaped() {
        assert_eq!(printable("it's \"é\".pdf"), "it's \"é\".pdf");
        assert_eq!(
            printable("a\u{1b}[2J\u{202e}fdp.exe"),
            "a\\u{1b}[2J\\u{202e}fdp.exe"
        );
    }
}
