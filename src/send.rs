//! `edm-cast send`: wires a file, a multicast socket and a pacer to proto's `Sender`.

use crate::datapath::{RecvBatch, SendBatch};
use crate::digest::{hex, md5_file};
use crate::error::Error;
use crate::net::{self, Group};
use crate::pace::{Pacer, Rate};
use crate::ui::{self, SenderView};
use edm_cast_proto::sender::ReceiverInfo;
use edm_cast_proto::wire::{FeedbackAddr, ReceiverState};
use edm_cast_proto::{Destination, FileInfo, Sender, SenderConfig, SenderEvent};
use std::fs::File;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file to send.
    pub file: PathBuf,
    /// Multicast group, ADDR or ADDR:PORT.
    #[arg(long, default_value = "239.1.1.1")]
    pub group: Group,
    /// Interface to send on: a name (eth0) or one of its IPv4 addresses. Default: the route's.
    #[arg(long)]
    pub iface: Option<String>,
    /// Link rate to send at, in bit/s with k/M/G units. Keep it below the slowest link on the
    /// way (a 100 Mbit/s switch port: 95M; a dedicated gigabit LAN: 900M).
    #[arg(long, default_value = "100M")]
    pub rate: Rate,
    /// Multicast TTL: 1 keeps the packets on the local network.
    #[arg(long, default_value_t = 1)]
    pub ttl: u32,
    /// Start once this many receivers have said hello.
    #[arg(long, default_value_t = 1)]
    pub min_receivers: usize,
    /// Start after this many seconds even if fewer receivers said hello. Default: wait for them.
    #[arg(long, value_name = "SECS")]
    pub wait: Option<f64>,
    /// Drop a receiver that has been silent this many seconds (it is reported as not done).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub drop_after: f64,
    /// Name announced to receivers. Default: the file's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Source symbols per block (K): larger blocks cost receivers more CPU per decode.
    #[arg(long, default_value_t = 1024, hide = true)]
    pub block_symbols: u16,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let read_err = |source| Error::Read {
        path: args.file.clone(),
        source,
    };
    let file = File::open(&args.file).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(Error::Usage(format!(
            "{} is not a regular file",
            args.file.display()
        )));
    }
    let size = meta.len();
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into()),
    };
    let secs = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| Error::Usage(format!("{what}: {s} is not a number of seconds")))
    };
    let wait = args.wait.map(|w| secs(w, "--wait")).transpose()?;
    let drop_after = secs(args.drop_after, "--drop-after")?;

    let bar = ui::byte_bar(size, "md5");
    let md5 = md5_file(&args.file, |n| bar.set_position(n)).map_err(read_err)?;
    bar.finish_and_clear();

    let iface = net::interface_addr(args.iface.as_deref())?;
    let socket = net::sender_socket(args.group, iface, args.ttl)?;
    let port = socket
        .local_addr()
        .map_err(|e| Error::Socket {
            what: "cannot read the socket's port".into(),
            source: e,
        })?
        .port();
    let session = crate::random_u64() as u32;
    let cfg = SenderConfig {
        session,
        block_symbols: args.block_symbols,
        min_receivers: args.min_receivers,
        wait,
        receiver_timeout: drop_after,
        feedback: FeedbackAddr::Source { port },
        ..SenderConfig::default()
    };
    let info = FileInfo {
        name: name.clone(),
        size,
        md5,
    };
    let sender = Sender::new(cfg, info, Instant::now()).map_err(|e| Error::Usage(e.to_string()))?;
    eprintln!(
        "edm-cast: sending {name} ({}, md5 {}) to {} at {}, session {session:08x}; waiting for {} receiver(s){}",
        ui::bytes(size),
        hex(&md5),
        args.group,
        args.rate,
        args.min_receivers,
        wait.map(|w| format!(" for up to {} s", w.as_secs_f64()))
            .unwrap_or_default(),
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the runtime: {e}")))?;
    let mut session = Session {
        sender,
        file,
        path: args.file.clone(),
        group: args.group,
        pacer: Pacer::new(args.rate),
        min_sleep: Duration::from_secs_f64((8.0 * 1500.0 * 8.0 / args.rate.0).min(0.001)),
        view: SenderView::new(),
        aborted: false,
    };
    let socket = runtime.block_on(async { tokio::net::UdpSocket::from_std(socket) });
    let socket = socket.map_err(|e| Error::Socket {
        what: "cannot register the socket".into(),
        source: e,
    })?;
    runtime.block_on(session.run(socket))?;
    session.view.finish(&session.sender);
    Ok(session.summary(&name, size, args.min_receivers))
}

struct Session {
    sender: Sender,
    file: File,
    path: PathBuf,
    group: Group,
    pacer: Pacer,
    /// The shortest pause between batches: 8 datagrams' time at the configured rate, at most 1 ms.
    min_sleep: Duration,
    view: SenderView,
    aborted: bool,
}

/// Datagrams sent between two looks at the feedback socket.
const BATCH: usize = 256;

impl Session {
    async fn run(&mut self, socket: tokio::net::UdpSocket) -> Result<(), Error> {
        let io_err = |source| Error::Socket {
            what: "cannot set up batched I/O".into(),
            source,
        };
        let mut batch = SendBatch::new(&socket).map_err(io_err)?;
        let mut inbox = RecvBatch::new(&socket, 8).map_err(io_err)?;
        let mut out = Vec::with_capacity(1500);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            let now = Instant::now();
            loop {
                let sender = &mut self.sender;
                match inbox.try_recv(&socket, |from, d| sender.handle_datagram(now, from, d)) {
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
            let idle = self.transmit(&socket, &mut batch, &mut out).await?;
            if self.sender.sent_blocks() != before {
                tracing::debug!(blocks = self.sender.sent_blocks(), "first pass progress");
            }
            self.events()?;
            if self.sender.is_finished() {
                return Ok(());
            }
            self.view.tick(&self.sender);
            if !idle {
                // Paced: a short precise sleep (nanosleep) rather than the runtime's
                // millisecond timer, so the stream stays smooth and the rate is kept.
                let delay = self.pacer.delay();
                if delay < Duration::from_millis(2) {
                    // Sleeping for at least a few datagrams' time (at most 1 ms) saves wake-ups at
                    // low rates; the pacer's credit lets the batch out after it.
                    std::thread::sleep(delay.max(self.min_sleep));
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
            tokio::select! {
                _ = socket.readable() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = &mut ctrl_c, if !self.aborted => {
                    self.aborted = true;
                    self.view.println("interrupted: ending the session".into());
                    self.sender.abort(Instant::now());
                }
            }
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
                Destination::Group => SocketAddr::V4(self.group.0),
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
        if to == SocketAddr::V4(self.group.0) {
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
                self.file
                    .read_exact_at(&mut data, offset)
                    .map_err(|source| Error::Read {
                        path: self.path.clone(),
                        source,
                    })?;
                self.sender.supply_block(block, data);
                supplied = true;
            } else {
                tracing::debug!(sent_blocks = self.sender.sent_blocks(), "{ev:?}");
                self.view.event(&ev, &self.sender);
            }
        }
        Ok(supplied)
    }

    /// Prints the summary; the exit code says whether every receiver got the file.
    fn summary(&self, name: &str, size: u64, min_receivers: usize) -> ExitCode {
        let stats = self.sender.stats();
        let secs = self
            .sender
            .started_at()
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        let receivers: Vec<&ReceiverInfo> = self.sender.receivers().collect();
        let done = receivers
            .iter()
            .filter(|r| r.state == ReceiverState::Done && !r.dropped)
            .count();
        let datagrams = stats.source_symbols + stats.repair_symbols + stats.control_packets;
        println!(
            "{}: {name} ({}) in {secs:.2} s",
            if self.aborted { "aborted" } else { "sent" },
            ui::bytes(size)
        );
        println!(
            "  datagrams  {datagrams} ({} source, {} repair, {} control)",
            stats.source_symbols, stats.repair_symbols, stats.control_packets
        );
        println!(
            "  bytes      {} UDP payload = {:.3} x file size",
            stats.bytes,
            stats.bytes as f64 / size.max(1) as f64
        );
        if secs > 0.0 {
            println!("  goodput    {:.1} Mbit/s", size as f64 * 8.0 / secs / 1e6);
        }
        if let (Some(start), Some(done)) =
            (self.sender.started_at(), self.sender.first_pass_done_at())
        {
            let pass = done.duration_since(start).as_secs_f64();
            println!(
                "  first pass {pass:.2} s ({:.1} Mbit/s of file)",
                size as f64 * 8.0 / pass.max(1e-6) / 1e6
            );
        }
        println!("  receivers  {done} done / {} known", receivers.len());
        for r in receivers
            .iter()
            .filter(|r| r.state != ReceiverState::Done || r.dropped)
        {
            let what = if r.dropped {
                "dropped: went silent"
            } else if r.state == ReceiverState::Failed {
                "failed (see its own message)"
            } else {
                "not done"
            };
            println!("    {} {}: {what}", r.name, r.addr);
        }
        if self.aborted {
            ExitCode::from(130)
        } else if done == receivers.len() && done >= min_receivers {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        }
    }
}
