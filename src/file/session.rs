//! One sending session: proto's `Sender` wired to a socket, a pacer and a source (a file, or a
//! download still arriving), with the operator's view. `send` runs one; `serve` runs one per URL.

use super::neighbours::Neighbours;
use super::source::Source;
use super::status_lines::{self, Event, StatusLines};
use super::view::{self, SenderView};
use crate::error::{Error, Exit};
use crate::http::fetch::Progress;
use crate::net::datapath::{RecvBatch, SendBatch};
use crate::net::pace::{Pacer, Rate};
use crate::net::{self, Group, Iface};
use crate::rt::{self, Shutdown};
use crate::status::{self, Board, SessionStatus};
use data_encoding::HEXLOWER;
use edm_cast_proto::wire::{FailReason, FeedbackAddr, ReceiverState};
use edm_cast_proto::{
    CcConfig, Destination, Encryption, Fec, ReceiverInfo, Sender, SenderConfig, SenderEvent,
    SessionPhase, Signer,
};
use futures_util::FutureExt;
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What a session is set up with besides its source: when it starts sending, when it gives up
/// on a receiver, and its keys.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Start once this many receivers have said hello (and those named in `wait_for`) ...
    pub min_receivers: usize,
    /// A re-run (`send --resume-from`) for these PCs: no first pass, each gets what it asks for.
    pub wait_for: Vec<String>,
    /// ... or after this long, if set.
    pub wait: Option<Duration>,
    /// Drop a receiver silent this long.
    pub drop_after: Duration,
    /// K, source symbols per block.
    pub block_symbols: u16,
    /// Signs the session (`--key`).
    pub signer: Option<Signer>,
    /// Seals it for the listed receivers (`--encrypt --to`).
    pub encryption: Option<Encryption>,
    /// Congestion control (`send`, unless `--cc off`): the pacer follows the sender's rate.
    pub cc: Option<CcConfig>,
    /// `send --sync`: the stream's first bytes sent in the first pass (a tree's manifest).
    pub sync: Option<u64>,
    /// How the first pass's repair is sized, and its share of K (all of it with `Fec::Fixed`,
    /// the least with `Fec::Adaptive`): `send --fec-repair`, `--fec-loss-max`.
    pub fec: (Fec, f64),
}

pub struct Session {
    pub sender: Sender,
    /// The session id, as in every datagram.
    pub id: u32,
    socket: Option<std::net::UdpSocket>,
    source: Source,
    group: Group,
    pacer: Pacer,
    pub view: SenderView,
    /// The signal that ended the session early.
    aborted: Option<rt::Stop>,
    /// Why the source failed (a download that broke off for good), and when.
    failure: Option<String>,
    failed_at: Option<Instant>,
    /// `serve`: this session's share of the link (bit/s), and "someone was told to join: wait".
    shared_rate: Option<Arc<AtomicU64>>,
    hold: Option<watch::Receiver<Instant>>,
    /// A session nobody joined by the time it starts ends there (`serve`; `send --wait`).
    nobody_ends: bool,
    min_receivers: usize,
    /// Set to true by the operator's "stop" (the dashboard, `serve`'s control): END goes out.
    stop: Option<watch::Receiver<bool>>,
    /// Other senders heard on the group: warnings shown in the view.
    neighbours: Option<Neighbours>,
    /// Where its status goes (`--http`), how often, and the send rate it reports.
    board: Option<Board>,
    published: Option<Instant>,
    meter: RateMeter,
    /// `--status`: a line per event.
    lines: StatusLines,
}

/// Why a session the operator stopped ended (its outcome: "aborted").
const STOPPED: &str = "stopped by the operator";

/// Why a session nobody joined ended.
const NOBODY: &str = "nobody joined the session: no receiver said hello";

/// How long a failed download's session waits for the student `serve` just told to join it to
/// say hello, so that it hears the session was aborted (`end_failed`).
const FAILED_WAIT: Duration = Duration::from_secs(3);

/// How often a session publishes its status on the board.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// The send rate over the last second or so, from (time, bytes sent) points.
#[derive(Debug, Default)]
struct RateMeter {
    points: std::collections::VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Bit/s between the oldest point kept (at most ~2 s old) and now.
    fn update(&mut self, now: Instant, bytes: u64) -> f64 {
        self.points.push_back((now, bytes));
        while self.points.len() > 2
            && now.duration_since(self.points[1].0) >= Duration::from_secs(1)
        {
            self.points.pop_front();
        }
        let (t0, b0) = self.points[0];
        let dt = now.duration_since(t0).as_secs_f64();
        if dt < 0.05 {
            0.0
        } else {
            (bytes - b0) as f64 * 8.0 / dt
        }
    }
}

/// Where receivers (or students) answer: a signed session names its address, so that a replay
/// of its ANNOUNCE from another host is refused; an unsigned one says "where this comes from".
pub fn feedback_addr(
    group: Group,
    iface: Iface,
    port: u16,
    setup: &Setup,
) -> Result<FeedbackAddr, Error> {
    Ok(match setup.signer {
        Some(_) => match net::source_addr(group, iface)? {
            IpAddr::V4(ip) => FeedbackAddr::V4(ip, port),
            IpAddr::V6(ip) => FeedbackAddr::V6(ip, port),
        },
        None => FeedbackAddr::Source { port },
    })
}

/// Datagrams sent between two looks at the feedback socket.
const BATCH: usize = 256;

/// Reads of the feedback socket (of up to 8 datagrams each) a turn at most. An honest class of a
/// few hundred PCs sends some thousands of datagrams a second; a turn lasts a millisecond or so.
const FEEDBACK_READS: usize = 16;

impl Session {
    /// A session for `source` on `group`, sending from `iface`: its socket is open (feedback comes
    /// back to its port) and its id chosen.
    pub fn open(
        source: Source,
        group: Group,
        iface: Iface,
        ttl: u32,
        setup: &Setup,
        rate: Rate,
        view: SenderView,
    ) -> Result<Self, Error> {
        let socket = net::sender_socket(group, iface, ttl, 0)?;
        let id = rt::random_u64() as u32;
        let cfg = SenderConfig {
            session: id,
            block_symbols: setup.block_symbols,
            min_receivers: setup.min_receivers,
            wait_for: setup.wait_for.clone(),
            // A re-run: its PCs kept most of the file, and ask for the rest.
            skip_first_pass: !setup.wait_for.is_empty(),
            wait: setup.wait,
            receiver_timeout: setup.drop_after,
            signer: setup.signer.clone(),
            encryption: setup.encryption.clone(),
            feedback: feedback_addr(group, iface, net::local_port(&socket)?, setup)?,
            cc: setup.cc,
            sync: setup.sync,
            fec: setup.fec.0,
            proactive: setup.fec.1,
            ..SenderConfig::default()
        };
        // With congestion control the pacer starts where slow start does.
        let start = setup.cc.map_or(rate, |c| Rate(c.initial.min(c.ceiling)));
        Ok(Session {
            sender: source.sender(cfg)?,
            id,
            socket: Some(socket),
            source,
            group,
            pacer: Pacer::new(start),
            view,
            aborted: None,
            failure: None,
            failed_at: None,
            shared_rate: None,
            hold: None,
            nobody_ends: false,
            min_receivers: setup.min_receivers,
            stop: None,
            neighbours: None,
            board: None,
            published: None,
            meter: RateMeter::default(),
            lines: StatusLines::default(),
        })
    }

    /// What is sent, as the operator reads it: name, size, MD5 (or "downloading").
    pub fn describe(&self) -> String {
        let s = &self.source;
        format!(
            "{} ({}, {})",
            s.name,
            s.size.map_or("size not known yet".into(), view::bytes),
            match s.digests {
                Some(d) => format!("md5 {}", HEXLOWER.encode(&d.md5)),
                None => "downloading".into(),
            }
        )
    }

    /// Where the bytes come from: "file", "download" or "cache".
    pub fn origin(&self) -> &'static str {
        self.source.origin
    }

    /// For `serve`: the rate follows `rate` (bit/s), and the session stays open until the time
    /// `hold` says (a student was just offered it). A session nobody has joined by the time it
    /// would start (`Setup::wait`) ends instead: no one is listening, and its slot is wanted.
    pub fn share(&mut self, rate: Arc<AtomicU64>, hold: watch::Receiver<Instant>) {
        self.shared_rate = Some(rate);
        self.hold = Some(hold);
        self.nobody_ends = true;
    }

    /// `send --wait` without `--send-anyway`: if nobody has said hello when the wait runs out,
    /// the session ends there (END aborted) rather than send the whole file to nobody.
    pub fn end_if_nobody(&mut self) {
        self.nobody_ends = true;
    }

    /// The session ended because nobody joined it (see `end_if_nobody`).
    pub fn nobody_joined(&self) -> bool {
        self.failure.as_deref() == Some(NOBODY)
    }

    /// Ends the session (END, aborted; outcome "aborted", failure "stopped by the operator") once
    /// `stop` turns true. For actions from outside the process's signals: the dashboard's "stop".
    pub fn stop_on(&mut self, stop: watch::Receiver<bool>) {
        self.stop = Some(stop);
    }

    /// Shows what `neighbours` finds (other senders on the group) while the session runs, and
    /// stops it at the end.
    pub fn watch(&mut self, neighbours: Neighbours) {
        self.neighbours = Some(neighbours);
    }

    /// Publishes the session's status on `board` while it runs, and once more at its end.
    pub fn publish(&mut self, board: Board) {
        self.board = Some(board);
    }

    /// Writes a status line for each event from now on (`--status`), the first one now: the
    /// session is announced.
    pub fn report_to(&mut self, lines: StatusLines) {
        let s = &self.source;
        let (md5, sha256) = s.digests.as_ref().map(status_lines::hex).unzip();
        lines.emit(Event::SessionStarted {
            session: format!("{:08x}", self.id),
            name: s.name.clone(),
            size: s.size,
            md5,
            sha256,
            origin: s.origin,
            group: self.group.to_string(),
            min_receivers: self.min_receivers,
            files: s.files,
        });
        self.lines = lines;
    }

    fn publish_now(&mut self, now: Instant, force: bool) {
        if self.board.is_none()
            || !force
                && self
                    .published
                    .is_some_and(|t| now.duration_since(t) < PUBLISH_EVERY)
        {
            return;
        }
        self.published = Some(now);
        let status = self.status(now);
        if let Some(board) = &self.board {
            board.session(self.id, status);
        }
    }

    /// The session as the API, the dashboard and the metrics show it.
    pub fn status(&mut self, now: Instant) -> SessionStatus {
        let sender = &self.sender;
        let stats = sender.stats();
        let send_rate_bps = if sender.is_finished() {
            0.0
        } else {
            self.meter.update(now, stats.bytes)
        };
        let layout = sender.layout();
        let blocks_total = layout.num_blocks();
        let phase = sender.phase();
        let ended = phase == SessionPhase::Finished;
        let cut_short = self.aborted.is_some() || self.failure.is_some();
        let waiting = phase == SessionPhase::Waiting;
        let mut totals = status::Totals::default();
        let mut receivers: Vec<status::ReceiverStatus> = sender
            .receivers()
            .map(|r| {
                let (state, reason) = match receiver_state(r, waiting, ended, cut_short) {
                    ("receiving", _) if sender.is_slow(r) => ("slow", None),
                    ("left_behind", _) if sender.is_slow(r) => {
                        ("left_behind", Some("its link too slow to follow"))
                    }
                    other => other,
                };
                match state {
                    "done" => totals.done += 1,
                    "receiving" => totals.receiving += 1,
                    "joined" => totals.joined += 1,
                    "failed" => totals.failed += 1,
                    "dropped" => totals.dropped += 1,
                    "left_behind" => totals.left_behind += 1,
                    "slow" => totals.slow += 1,
                    _ => totals.hello_only += 1,
                }
                let blocks_done = if r.state == ReceiverState::Done {
                    blocks_total
                } else {
                    r.blocks_done.min(blocks_total)
                };
                status::ReceiverStatus {
                    id: format!("{:08x}", r.id),
                    name: r.name.clone(),
                    addr: r.addr.to_string(),
                    state,
                    reason,
                    progress: view::fraction_done(
                        blocks_done,
                        blocks_total,
                        layout.block_bytes(),
                        layout.file_size(),
                    ),
                    blocks_done,
                    loss: sender.loss_of(r),
                    attention: matches!(state, "failed" | "dropped" | "left_behind" | "slow"),
                }
            })
            .collect();
        totals.known = receivers.len() - totals.hello_only;
        receivers.sort_by(|a, b| {
            (!a.attention, &a.name, &a.addr).cmp(&(!b.attention, &b.name, &b.addr))
        });
        let elapsed_secs = sender
            .started_at()
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let size = layout.file_size();
        // While the first pass runs its end can be foreseen: what is left of the file's source
        // symbols at the rate they went out so far (a session that waited counts from its start).
        let eta_secs = match (phase, size) {
            (SessionPhase::FirstPass, Some(size)) if elapsed_secs > 0.5 => {
                let symbols = size.div_ceil(u64::from(layout.symbol_size().max(1)));
                let sent = stats.source_symbols.min(symbols) as f64 / symbols.max(1) as f64;
                (sent > 0.0).then(|| elapsed_secs * (1.0 - sent) / sent)
            }
            _ => None,
        };
        SessionStatus {
            id: format!("{:08x}", self.id),
            name: self.source.name.clone(),
            size,
            files: self.source.files,
            origin: self.source.origin,
            group: self.group.to_string(),
            phase: match phase {
                SessionPhase::Waiting => "waiting",
                SessionPhase::FirstPass => "first_pass",
                SessionPhase::Repairing => "repairing",
                SessionPhase::Ending => "ending",
                SessionPhase::Finished => "finished",
            },
            outcome: ended.then(|| self.outcome()),
            failure: self.failure.clone().or_else(|| {
                self.aborted.map(|s| match s {
                    rt::Stop::Interrupt => "interrupted (Ctrl-C)".to_owned(),
                    rt::Stop::Terminate => "terminated (SIGTERM)".to_owned(),
                })
            }),
            min_receivers: self.min_receivers,
            rate_limit_bps: self.pacer.rate().0,
            send_rate_bps,
            elapsed_secs,
            eta_secs,
            blocks_total,
            blocks_sent: sender.sent_blocks(),
            bytes: status::Bytes {
                data: stats.source_bytes,
                repair: stats.repair_bytes,
                control: stats.bytes - stats.source_bytes - stats.repair_bytes,
                total: stats.bytes,
            },
            datagrams: status::Datagrams {
                source: stats.source_symbols,
                repair: stats.repair_symbols,
                control: stats.control_packets,
            },
            wire_ratio: size.map_or(0.0, |s| stats.bytes as f64 / s.max(1) as f64),
            totals,
            receivers,
            dropped: stats.dropped.by_reason().into_iter().collect(),
            need_reports: stats.need_reports,
            verify_rounds: stats.verify_rounds,
            forgotten_receivers: stats.forgotten_receivers,
        }
    }

    /// `sent`, `aborted` or `failed`.
    fn outcome(&self) -> &'static str {
        if self.failure.as_deref() == Some(STOPPED) {
            "aborted"
        } else if self.failure.is_some() {
            "failed"
        } else if self.aborted.is_some() {
            "aborted"
        } else {
            "sent"
        }
    }

    /// Runs the session to its end, inside the runtime. With `shutdown`, Ctrl-C or SIGTERM
    /// aborts it (`serve` handles those itself).
    pub async fn run(&mut self, shutdown: Option<&mut Shutdown>) -> Result<(), Error> {
        let socket = self
            .socket
            .take()
            .ok_or_else(|| Error::Protocol("the session ran twice".into()))?;
        let socket = net::register(socket)?;
        let result = self.pump(&socket, shutdown).await;
        for line in self
            .neighbours
            .take()
            .map(Neighbours::finish)
            .unwrap_or_default()
        {
            self.view.println(line);
        }
        if let Err(e) = &result {
            self.failure.get_or_insert_with(|| e.to_string());
        }
        if result.is_err() {
            // Tell the receivers at once rather than leave them to time out: END (aborted).
            self.sender.abort(Instant::now());
            let mut out = Vec::with_capacity(64);
            while !self.sender.is_finished() {
                while let Some(dest) = self.sender.poll_transmit(Instant::now(), &mut out) {
                    if dest == Destination::Group {
                        let _ = socket.send_to(&out, self.group.0).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.publish_now(Instant::now(), true);
        result
    }

    async fn pump(
        &mut self,
        socket: &tokio::net::UdpSocket,
        mut shutdown: Option<&mut Shutdown>,
    ) -> Result<(), Error> {
        let io_err = |source| Error::Socket {
            what: "cannot set up batched I/O".into(),
            source,
        };
        let mut batch = SendBatch::new(socket).map_err(io_err)?;
        let mut inbox = RecvBatch::new(socket, 8).map_err(io_err)?;
        let mut out = Vec::with_capacity(1500);
        loop {
            let now = Instant::now();
            // Looked at every turn, the paced one included: a signal is honoured at once.
            if let Some(s) = shutdown.as_deref_mut()
                && let Some(stop) = s.recv().now_or_never()
            {
                self.interrupted(stop);
            }
            self.feed(now);
            self.end_failed(now);
            if let Some(rate) = &self.shared_rate {
                self.pacer
                    .set_rate(Rate(rate.load(Ordering::Relaxed) as f64));
            }
            if let Some(rate) = self.sender.rate() {
                if (rate - self.pacer.rate().0).abs() > 0.02 * rate {
                    tracing::debug!("congestion control: {}", Rate(rate));
                }
                self.pacer.set_rate(Rate(rate));
            }
            // The value, not `has_changed`: waiting on `stopped` below marks a change as seen.
            if let Some(stop) = &self.stop
                && *stop.borrow()
                && self.failure.is_none()
            {
                self.stop = None;
                self.view
                    .println("stopped by the operator: ending the session".into());
                self.failure = Some(STOPPED.into());
                self.sender.abort(now);
            }
            if let Some(hold) = &mut self.hold
                && hold.has_changed().unwrap_or(false)
            {
                self.sender.hold_until(*hold.borrow_and_update());
            }
            // A bounded number of reads a turn: a flood of feedback is left to the socket's
            // buffer (where the kernel drops what does not fit) rather than starve the sending.
            for _ in 0..FEEDBACK_READS {
                let sender = &mut self.sender;
                match inbox.try_recv(socket, |from, d| sender.handle_datagram(now, from, d)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // ICMP errors from an earlier unicast ACK: nothing to do about them.
                    Err(e) => tracing::debug!("feedback socket: {e}"),
                }
            }
            if self.sender.poll_timeout().is_some_and(|t| t <= now) {
                self.sender.handle_timeout(now);
            }
            let before = self.sender.sent_blocks();
            let idle = self.transmit(socket, &mut batch, &mut out).await?;
            if self.sender.sent_blocks() != before {
                tracing::debug!(blocks = self.sender.sent_blocks(), "first pass progress");
            }
            self.events()?;
            if self.sender.is_finished() {
                return Ok(());
            }
            if let Some(n) = &self.neighbours {
                for line in n.lines() {
                    self.view.println(line);
                }
            }
            if self.view.due(now) {
                let status = self.status(now);
                self.view.show(now, &status);
            }
            self.publish_now(now, false);
            if !idle {
                // Paced: a short precise sleep (nanosleep) rather than the runtime's
                // millisecond timer, so the stream stays smooth and the rate is kept.
                let delay = self.pacer.delay();
                if delay < Duration::from_millis(2) {
                    // Sleeping for at least a batch's time at the current rate (at most 100 µs)
                    // saves wake-ups and system calls; the pacer's credit lets the batch out.
                    std::thread::sleep(delay.max(self.pacer.min_sleep()));
                    // Lets the runtime poll its reactor, so the socket's readiness stays current.
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            let wake = if idle {
                self.sender
                    .poll_timeout()
                    .unwrap_or(now + Duration::from_millis(100))
            } else {
                Instant::now() + self.pacer.delay()
            };
            let listening = shutdown.is_some() && self.aborted.is_none();
            tokio::select! {
                _ = socket.readable() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = changed(&mut self.source.feed) => {}
                _ = stopped(&mut self.stop) => {}
                stop = signal(shutdown.as_deref_mut()), if listening => self.interrupted(stop),
            }
        }
    }

    /// Ctrl-C or SIGTERM: END (aborted) goes out, once.
    fn interrupted(&mut self, stop: rt::Stop) {
        if self.aborted.is_none() {
            self.aborted = Some(stop);
            self.view.println("interrupted: ending the session".into());
            self.sender.abort(Instant::now());
        }
    }

    /// Sends what is due, as the pacer allows, gathering data datagrams into GSO batches. True when
    /// the sender has nothing to send now.
    async fn transmit(
        &mut self,
        socket: &tokio::net::UdpSocket,
        batch: &mut SendBatch,
        out: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        let mut idle = false;
        for _ in 0..BATCH {
            self.events()?;
            if !self.pacer.delay().is_zero() {
                break;
            }
            let Some(dest) = self.sender.poll_transmit(Instant::now(), out) else {
                // A block was asked for: supply it and go on.
                if self.events()? {
                    continue;
                }
                idle = true;
                break;
            };
            let to = match dest {
                Destination::Group => self.group.0,
                Destination::Unicast(a) => a,
            };
            self.pacer.spend(out.len());
            if let Err((to, e)) = batch.push(socket, to, out).await {
                self.send_failed(to, e)?;
            }
        }
        if let Err((to, e)) = batch.flush(socket).await {
            self.send_failed(to, e)?;
        }
        Ok(idle)
    }

    /// A failed send to the group ends the session; one to a receiver (an ACK) is its loss.
    fn send_failed(&self, to: SocketAddr, e: std::io::Error) -> Result<(), Error> {
        if to == self.group.0 {
            return Err(Error::Socket {
                what: format!(
                    "cannot send to {} (is there a route? try --iface)",
                    self.group
                ),
                source: e,
            });
        }
        tracing::debug!("ack to {to}: {e}");
        Ok(())
    }

    /// Handles the sender's events; true if a block was supplied.
    fn events(&mut self) -> Result<bool, Error> {
        let mut supplied = false;
        while let Some(ev) = self.sender.poll_event() {
            if let SenderEvent::NeedBlock { block, offset, len } = ev {
                let mut data = vec![0; len];
                self.source.read_block(&mut data, offset)?;
                self.sender.supply_block(block, data);
                supplied = true;
            } else {
                tracing::debug!(sent_blocks = self.sender.sent_blocks(), "{ev:?}");
                self.view.event(&ev, &self.sender);
                self.lines.sender_event(self.id, &ev, &self.sender);
                if ev == SenderEvent::Started {
                    self.started();
                }
            }
        }
        Ok(supplied)
    }

    /// The wait is over: with nobody, the end (if so set up); with fewer than `min_receivers`
    /// (`--wait` ran out), a line that says so.
    fn started(&mut self) {
        let came = self.sender.receivers().filter(|r| !r.dropped).count();
        if came == 0 && self.nobody_ends {
            self.failure = Some(NOBODY.into());
            self.sender.abort(Instant::now());
        } else if came < self.min_receivers {
            self.view.println(format!(
                "the wait is over with {came} of {} receivers: sending to {}",
                self.min_receivers,
                if came == 0 {
                    "nobody (--send-anyway)"
                } else {
                    "those"
                }
            ));
        }
    }

    /// Passes a download's progress to the sender: more blocks to send, and at the end the size
    /// and MD5. A download that failed for good aborts the session.
    fn feed(&mut self, now: Instant) {
        let Some(rx) = &mut self.source.feed else {
            return;
        };
        // The value, not `has_changed`: the loop's wait on `changed` marks each change as seen
        // when it wakes the loop, so `has_changed` here missed every change that came while the
        // sender was idle (waiting for bytes), and the pass learned of new bytes only when
        // something else woke it: up to 0.4 s late, seen in the WAN lab (issue 14).
        let p = rx.borrow_and_update().clone();
        self.sender.source_grew(now, p.bytes);
        let Some(end) = p.end else {
            return;
        };
        self.source.feed = None;
        let result = end.and_then(|(size, digests)| {
            self.sender
                .source_ended(now, size, digests)
                .map_err(|e| e.to_string())?;
            Ok((size, digests))
        });
        match result {
            Ok((size, digests)) => self.view.println(format!(
                "downloaded {} ({}, md5 {}, sha256 {})",
                self.source.name,
                view::bytes(size),
                HEXLOWER.encode(&digests.md5),
                HEXLOWER.encode(&digests.sha256)
            )),
            Err(why) => {
                self.view.println(format!("download failed: {why}"));
                self.failure = Some(why);
                self.failed_at = Some(now);
            }
        }
    }

    /// A failed download ends the session (END, aborted), but one that `serve` holds for a
    /// student it just told to join (`share`) not before a receiver has said hello, the hold is
    /// over, or `FAILED_WAIT` has passed: that student hears that the session was aborted, not
    /// nothing at all. (Since the session reads the progress every turn, a download cut off at
    /// once is seen at once, before the student can have joined.)
    fn end_failed(&mut self, now: Instant) {
        let ending = matches!(
            self.sender.phase(),
            SessionPhase::Ending | SessionPhase::Finished
        );
        let Some(failed_at) = self.failed_at.filter(|_| !ending) else {
            return;
        };
        let held = self.hold.as_ref().is_some_and(|h| *h.borrow() > now);
        if !held || now >= failed_at + FAILED_WAIT || self.sender.receivers().next().is_some() {
            self.sender.abort(now);
        }
    }

    /// Why the session failed, if its source did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Leaves the operator's view in its final state (before the summary).
    pub fn finish_view(&mut self) {
        let status = self.status(Instant::now());
        self.view.finish(&status);
    }

    /// Receivers that have the whole file.
    pub fn receivers_done(&self) -> usize {
        self.sender
            .receivers()
            .filter(|r| r.state == ReceiverState::Done && !r.dropped)
            .count()
    }

    /// Prints the summary to `out` (stdout, or stderr when status lines take stdout); the exit
    /// code says whether every receiver got the file, and the line on stderr why not.
    pub fn summary(&self, min_receivers: usize, out: &mut dyn Write) -> (u8, Option<String>) {
        let name = &self.source.name;
        let size = self.sender.layout().file_size().unwrap_or(0);
        let stats = self.sender.stats();
        let secs = self
            .sender
            .started_at()
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        // A receiver that said hello and never reported progress was not a PC taking part: one
        // that left at once, or a fake hello from someone on the LAN (the sender waits for a real
        // one that is slow to start; it ends without one that went silent or made absurd
        // reports). It is listed, not counted. (In a session cut short, one still there has failed
        // with it.)
        let cut_short = self.aborted.is_some() || self.failure.is_some();
        let waiting = self.sender.started_at().is_none();
        let (hello_only, receivers): (Vec<&ReceiverInfo>, Vec<&ReceiverInfo>) = (self.sender)
            .receivers()
            .partition(|r| receiver_state(r, waiting, true, cut_short).0 == "hello");
        let done = self.receivers_done();
        let datagrams = stats.source_symbols + stats.repair_symbols + stats.control_packets;
        let _ = writeln!(
            out,
            "{}: {name} ({}, from {}) in {secs:.2} s",
            self.outcome(),
            view::bytes(size),
            self.source.origin
        );
        let _ = writeln!(
            out,
            "  datagrams  {datagrams} ({} source, {} repair, {} control)",
            stats.source_symbols, stats.repair_symbols, stats.control_packets
        );
        let _ = writeln!(
            out,
            "  bytes      {} UDP payload = {:.3} x file size",
            stats.bytes,
            stats.bytes as f64 / size.max(1) as f64
        );
        // A session cut short delivered no file: no goodput to speak of.
        if secs > 0.0 && self.outcome() == "sent" {
            let _ = writeln!(
                out,
                "  goodput    {:.1} Mbit/s",
                size as f64 * 8.0 / secs / 1e6
            );
        }
        let _ = writeln!(
            out,
            "  repair     {} of {} blocks needed a repair round{}",
            self.sender.repaired_blocks(),
            self.sender.layout().num_blocks(),
            match self.sender.fec_loss() {
                Some((loss, n)) => format!(
                    "; the last first pass was sized for {:.1}% loss ({n} receivers)",
                    loss * 100.0
                ),
                None => String::new(),
            }
        );
        if let (Some(start), Some(done)) =
            (self.sender.started_at(), self.sender.first_pass_done_at())
        {
            let pass = done.duration_since(start).as_secs_f64();
            let _ = writeln!(
                out,
                "  first pass {pass:.2} s ({:.1} Mbit/s of file)",
                size as f64 * 8.0 / pass.max(1e-6) / 1e6
            );
        }
        let _ = writeln!(out, "  receivers  {done} done / {} known", receivers.len());
        // Every receiver, those needing attention first, then by name: the teacher learns here
        // who has the file and why the others do not, without walking to each PC.
        let blocks_total = self.sender.layout().num_blocks();
        let mut lines: Vec<(bool, &ReceiverInfo, String)> = receivers
            .iter()
            .map(|r| {
                let (state, why) = receiver_state(r, waiting, true, cut_short);
                let mut what = match state {
                    "dropped" => "dropped: went silent".to_owned(),
                    "left_behind" => view::left_behind(&self.sender, r),
                    _ => state.to_owned(),
                };
                if let Some(why) = why {
                    what += &format!(": {why}");
                }
                if state != "done" {
                    let at = view::fraction_done(
                        r.blocks_done.min(blocks_total),
                        blocks_total,
                        self.sender.layout().block_bytes(),
                        self.sender.layout().file_size(),
                    );
                    what += &format!(" (had {:.0}%)", (at * 100.0).floor());
                }
                (state != "done", *r, what)
            })
            .collect();
        lines.sort_by(|a, b| (!a.0, &a.1.name, a.1.addr).cmp(&(!b.0, &b.1.name, b.1.addr)));
        for (_, r, what) in &lines {
            let _ = writeln!(out, "    {} {}: {what}", r.name, r.addr);
        }
        if stats.restarted_receivers > 0 {
            let _ = writeln!(
                out,
                "  and {} restarted on their PC, each counted once (in place of its earlier receiver)",
                stats.restarted_receivers
            );
        }
        if !hello_only.is_empty() {
            let addrs: std::collections::BTreeSet<_> =
                hello_only.iter().map(|r| r.addr.ip()).collect();
            let _ = writeln!(
                out,
                "  and {} that said hello and never reported progress (not counted), from {}",
                hello_only.len(),
                addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if stats.forgotten_receivers > 0 {
            let _ = writeln!(
                out,
                "  and {} more like them, forgotten to make room in the receiver table",
                stats.forgotten_receivers
            );
        }
        let (code, why) = if let Some(why) = &self.failure {
            (Exit::Error.code(), Some(why.clone()))
        } else if let Some(stop) = self.aborted {
            (stop.exit_code(), Some(Error::Interrupted(stop).to_string()))
        } else if done == receivers.len() && done >= min_receivers {
            (Exit::Success.code(), None)
        } else {
            (
                Exit::SomeMissed.code(),
                Some(missed(&receivers, min_receivers, |r| {
                    view::left_behind(&self.sender, r)
                })),
            )
        };
        if let Some(why) = &why {
            eprintln!("edm-cast: {why}");
        }
        (code, why)
    }
}

/// Why `send` exits 2, in one line: who did not get the file and why, or that fewer receivers
/// than `--min-receivers` took part.
fn missed(
    receivers: &[&ReceiverInfo],
    min_receivers: usize,
    left_behind: impl Fn(&ReceiverInfo) -> String,
) -> String {
    let without: Vec<String> = receivers
        .iter()
        .filter(|r| r.state != ReceiverState::Done || r.dropped)
        .map(|r| {
            // The session ended in full (exit 2 is never a cut-short session's): the states are
            // the summary list's, in fewer words.
            let why = match receiver_state(r, false, true, false) {
                ("dropped", _) => "it went silent".to_owned(),
                ("failed", Some(why)) => why.to_owned(),
                _ => left_behind(r),
            };
            format!(
                "{}: {why}",
                if r.name.is_empty() {
                    r.addr.to_string()
                } else {
                    r.name.clone()
                }
            )
        })
        .collect();
    if receivers.is_empty() {
        return "no receiver took part, so none is known to have the file".into();
    }
    if without.is_empty() {
        return format!(
            "only {} of the --min-receivers {min_receivers} took part (and got the file)",
            receivers.len()
        );
    }
    const SHOWN: usize = 3;
    let more = match without.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!("; and {n} more, listed above"),
    };
    format!(
        "{} of {} receivers did not get the file ({}{more})",
        without.len(),
        receivers.len(),
        without[..without.len().min(SHOWN)].join("; ")
    )
}

/// Why a receiver failed, as its final STATUS said.
pub(super) fn reason(reason: FailReason) -> &'static str {
    match reason {
        FailReason::Interrupted => "stopped on the PC",
        FailReason::DiskFull => "its disk is full",
        FailReason::CannotWrite => "it cannot write its folder",
        FailReason::DigestMismatch => "its copy did not match the digests",
        FailReason::TooLarge => "the file is larger than it takes (--max-size, free space)",
        FailReason::SenderGone => "it lost the sender",
        FailReason::None | FailReason::Other => "see its own message",
    }
}

/// A receiver's state in the API's words, and why it failed. Before sending starts (`waiting`) a
/// receiver there is joined, whatever it reports. A receiver still receiving when the session
/// ended was left behind, or, if the session was cut short (Ctrl-C, the operator's stop, a broken
/// download), failed with it, as did one that had only said hello and was still there.
fn receiver_state(
    r: &ReceiverInfo,
    waiting: bool,
    ended: bool,
    cut_short: bool,
) -> (&'static str, Option<&'static str>) {
    match (r.dropped, r.state) {
        (false, ReceiverState::Hello) if ended && cut_short => {
            ("failed", Some("the sender aborted the session"))
        }
        (dropped, ReceiverState::Hello) if dropped || ended => ("hello", None),
        (_, ReceiverState::Hello) => ("joined", None),
        (false, ReceiverState::Receiving) if waiting && !ended => ("joined", None),
        (true, _) => ("dropped", None),
        (_, ReceiverState::Done) => ("done", None),
        (_, ReceiverState::Failed) => ("failed", Some(reason(r.reason))),
        (_, ReceiverState::Receiving) if ended && cut_short => {
            ("failed", Some("the sender aborted the session"))
        }
        (_, ReceiverState::Receiving) if ended => ("left_behind", None),
        (_, ReceiverState::Receiving) => ("receiving", None),
    }
}

/// The next signal, or never without a `Shutdown`.
async fn signal(shutdown: Option<&mut Shutdown>) -> rt::Stop {
    match shutdown {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the operator's stop changes; never without one.
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    let Some(rx) = stop else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        // The operator's side is gone: nothing more will come.
        std::future::pending::<()>().await;
    }
}

/// Resolves when a download has news; never, for a complete file.
async fn changed(feed: &mut Option<watch::Receiver<Progress>>) {
    match feed {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The download thread is gone without a last word: look once more, then stop.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
