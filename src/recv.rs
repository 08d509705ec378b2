//! `edm-cast recv`: joins the group, feeds proto's `Receiver`, runs decodes on the blocking pool,
//! writes blocks into a temporary file in `--out`, checks the MD5 and renames the file into place.

use crate::datapath::RecvBatch;
use crate::digest::{hex, md5_file};
use crate::error::Error;
use crate::net::{self, Group};
use crate::output::{self, FileHandle, OutputFile};
use crate::ui;
use crate::verify::{Progress, RunningMd5};
use edm_cast_proto::{DecodeJob, Receiver, ReceiverConfig, ReceiverEvent, SessionInfo};
use indicatif::ProgressBar;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Multicast group, ADDR or ADDR:PORT.
    #[arg(long, default_value = "239.1.1.1")]
    pub group: Group,
    /// Interface to join on: a name (eth0) or one of its IPv4 addresses. Default: the route's.
    #[arg(long)]
    pub iface: Option<String>,
    /// Folder to write the file into (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Give up if no session is heard within this many seconds. Default: wait.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Stay for more files after the first (until interrupted, or until --timeout passes with
    /// no new session).
    #[arg(long)]
    pub keep: bool,
    /// Name shown on the sender's screen. Default: this host's name.
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    std::fs::create_dir_all(&args.out).map_err(|source| Error::Write {
        path: args.out.clone(),
        source,
    })?;
    let timeout = args
        .timeout
        .map(|s| crate::secs(s, "--timeout"))
        .transpose()?;
    let iface = net::interface_addr(args.iface.as_deref())?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let listener = Listener::new(
            args.group,
            iface,
            args.out.clone(),
            args.name.clone(),
            timeout,
            None,
        )?;
        let mut done_sessions = Vec::new();
        loop {
            let received = listener.receive(&done_sessions).await;
            let (session, path) = match received {
                // With --keep, a quiet spell after some files is the normal end.
                Err(Error::NoSession { .. }) if !done_sessions.is_empty() => {
                    return Ok(ExitCode::SUCCESS);
                }
                r => r?,
            };
            done_sessions.push(session);
            println!("{}", path.display());
            if !args.keep {
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What the blocking pool reports back.
enum Done {
    Decoded(Result<u32, Box<DecodeJob>>),
    Verified([u8; 16]),
    AlreadyHave(bool),
    Failed(Error),
}

/// Receives one file; returns where it is.
/// Decode jobs (each holding a block) at most in flight before the receiver stops reading.
const MAX_JOBS: usize = 8;

/// How long a receiver lets packets gather between reads.
const COALESCE: Duration = Duration::from_millis(1);

/// What stays the same from one received file to the next.
pub struct Listener {
    group_addr: Group,
    out: PathBuf,
    group: UdpSocket,
    feedback: UdpSocket,
    /// Pause between reads (see `COALESCE`).
    coalesce: bool,
    name: String,
    timeout: Option<Duration>,
    /// Join only this session (`get`: the one the server offered).
    session: Option<u32>,
}

impl Listener {
    /// Joins `group` on `iface`; must be called inside the runtime.
    pub fn new(
        group: Group,
        iface: std::net::Ipv4Addr,
        out: PathBuf,
        name: Option<String>,
        timeout: Option<Duration>,
        session: Option<u32>,
    ) -> Result<Self, Error> {
        let group_std = net::group_socket(group, iface)?;
        let feedback_std = net::feedback_socket(iface)?;
        // 8 MiB is 60 ms at 1 Gbit/s: ample for a 1 ms pause.
        let coalesce = socket2::SockRef::from(&group_std)
            .recv_buffer_size()
            .is_ok_and(|b| b >= 8 << 20);
        Ok(Listener {
            group_addr: group,
            out,
            group: net::register(group_std)?,
            feedback: net::register(feedback_std)?,
            coalesce,
            name: name.unwrap_or_else(hostname),
            timeout,
            session,
        })
    }

    /// Receives one file; returns its session and where it is. On any failure the sender is told,
    /// so it does not wait for this receiver.
    pub async fn receive(&self, skip_sessions: &[u32]) -> Result<(u32, PathBuf), Error> {
        let seed = crate::random_u64();
        let mut rx = Receiver::new(ReceiverConfig {
            id: seed as u32,
            name: self.name.clone(),
            seed,
            skip_sessions: skip_sessions.to_vec(),
            session: self.session,
            ..ReceiverConfig::default()
        });
        let result = self.session(&mut rx).await;
        if result.is_err() {
            rx.fail();
            flush(&mut rx, &self.feedback, &mut Vec::new()).await;
        }
        result
    }

    async fn session(&self, rx: &mut Receiver) -> Result<(u32, PathBuf), Error> {
        let (group, feedback, coalesce, timeout) =
            (&self.group, &self.feedback, self.coalesce, self.timeout);
        let mut session = 0;
        let (tx_done, mut done) = mpsc::unbounded_channel::<Done>();
        let mut file: Option<(SessionInfo, OutputFile)> = None;
        let mut md5: Option<RunningMd5> = None;
        let mut bar: Option<ProgressBar> = None;
        let mut result: Option<PathBuf> = None;
        // Size and MD5 the file must have, once every block is in.
        let mut expected: Option<(u64, [u8; 16])> = None;
        let mut jobs = 0;
        let mut inbox = RecvBatch::new(group, 32).map_err(|source| Error::Socket {
            what: "cannot set up batched receive".into(),
            source,
        })?;
        let mut fb_inbox = vec![0u8; 2048];
        let mut out = Vec::with_capacity(1500);
        let give_up = timeout.map(|t| Instant::now() + t);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            let wake = rx
                .poll_timeout()
                .or(if file.is_none() { give_up } else { None })
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                // Past MAX_JOBS blocks waiting for the disk or a decoder, stop reading: the kernel
                // drops what does not fit and repair brings it back, so memory stays bounded.
                _ = group.readable(), if jobs < MAX_JOBS => {
                    // Drain what is queued (a batch per system call) before anything slower.
                    drain(&mut inbox, group, rx);
                    // Let packets gather for a moment: one wake-up per millisecond instead of one per
                    // packet leaves the CPU to the decoder (and, in a lab on one machine, to the
                    // sender). Only where the socket buffer holds far more than a millisecond.
                    if coalesce {
                        std::thread::sleep(COALESCE);
                    }
                }
                r = feedback.recv_from(&mut fb_inbox) => {
                    if let Ok((n, from)) = r {
                        rx.handle_datagram(Instant::now(), from, &fb_inbox[..n]);
                    }
                }
                Some(d) = done.recv() => {
                    let now = Instant::now();
                    match d {
                        Done::Decoded(outcome) => {
                            jobs -= 1;
                            rx.handle_decoded(now, outcome);
                            if let (Some(bar), Some((info, _)), Some((done, _))) =
                                (&bar, &file, rx.progress())
                            {
                                let at = done as u64 * info.block_bytes;
                                bar.set_position(info.size.map_or(at, |size| at.min(size)));
                            }
                        }
                        Done::Verified(md5) => {
                            let (info, output) = file.take().expect("verified a file");
                            let want = expected.map(|e| e.1).expect("complete before verified");
                            if md5 == want {
                                result = Some(output.commit()?);
                                rx.verified(now, true);
                            } else {
                                return Err(Error::Md5Mismatch {
                                    name: info.name,
                                    expected: hex(&want),
                                    got: hex(&md5),
                                });
                            }
                        }
                        Done::AlreadyHave(true) => {
                            if let Some((info, output)) = file.take() {
                                eprintln!("{}: already present, same MD5", output.final_path.display());
                                result = Some(output.final_path.clone());
                                let _ = info;
                            }
                            rx.already_complete(now);
                        }
                        Done::AlreadyHave(false) => {}
                        Done::Failed(e) => return Err(e),
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    // What waits in the socket counts before any "the sender went silent": reads
                    // pause while decode jobs are many, and a slow disk can hold them for a while.
                    drain(&mut inbox, group, rx);
                    let now = Instant::now();
                    if rx.progress().is_none() && give_up.is_some_and(|t| now >= t) {
                        return Err(Error::NoSession {
                            group: self.group_addr.to_string(),
                            secs: timeout.unwrap_or_default().as_secs(),
                        });
                    }
                    rx.handle_timeout(now);
                }
                _ = &mut ctrl_c => return Err(Error::Interrupted),
            }
            flush(rx, feedback, &mut out).await;
            while let Some(ev) = rx.poll_event() {
                if !matches!(ev, ReceiverEvent::Decode(_) | ReceiverEvent::Store { .. }) {
                    tracing::debug!("{ev:?}");
                }
                match ev {
                    ReceiverEvent::Joined(info) => {
                        session = info.session;
                        let output = start_file(&self.out, &info, &tx_done)?;
                        eprintln!(
                            "receiving {} ({}) into {}",
                            info.name,
                            info.size.map_or("size not known yet".into(), ui::bytes),
                            output.final_path.display()
                        );
                        bar = Some(ui::byte_bar(info.size, "receiving"));
                        md5 = Some(RunningMd5::start(output.handle(), info.size.is_some()));
                        file = Some((info, output));
                    }
                    ReceiverEvent::Store { offset, data } => {
                        if let Some((_, f)) = &file {
                            f.handle().write_at(offset, &data)?;
                        }
                    }
                    ReceiverEvent::Decode(job) => match (&file, &md5) {
                        (Some((_, f)), Some(m)) => {
                            jobs += 1;
                            spawn_decode(job, f.handle(), m.progress(), tx_done.clone())
                        }
                        // The file was found already present: nothing to write.
                        _ => rx.handle_decoded(Instant::now(), Ok(job.block)),
                    },
                    ReceiverEvent::Complete { size, md5: want } => {
                        expected = Some((size, want));
                        if let Some(bar) = &bar {
                            bar.set_length(size);
                        }
                        match (md5.take(), &file) {
                            (Some(m), Some((_, f))) => {
                                // A padded last block may have been written whole: cut it.
                                f.set_len(size)?;
                                spawn_verify(m, size, tx_done.clone())
                            }
                            _ => rx.verified(Instant::now(), true),
                        }
                    }
                    ReceiverEvent::Finished => {
                        if let Some(bar) = &bar {
                            bar.finish_and_clear();
                        }
                        flush(rx, feedback, &mut out).await;
                        let path = result
                            .ok_or_else(|| Error::Protocol("finished without a file".into()))?;
                        return Ok((session, path));
                    }
                    ReceiverEvent::Failed(e) => {
                        if let Some(bar) = &bar {
                            bar.abandon();
                        }
                        return Err(Error::Receive(e));
                    }
                }
            }
        }
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

fn start_file(
    dir: &Path,
    info: &SessionInfo,
    tx: &mpsc::UnboundedSender<Done>,
) -> Result<OutputFile, Error> {
    let name = output::safe_name(&info.name, info.session);
    let output = OutputFile::create(dir, &name, info.session, info.size)?;
    // A complete copy already there? Check it on the side while receiving goes on.
    let existing = output.final_path.clone();
    if let (Some(size), Some(want)) = (info.size, info.md5)
        && std::fs::metadata(&existing).is_ok_and(|m| m.is_file() && m.len() == size)
    {
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let same = md5_file(&existing, |_| {}).is_ok_and(|m| m == want);
            let _ = tx.send(Done::AlreadyHave(same));
        });
    }
    Ok(output)
}

fn spawn_decode(job: DecodeJob, file: FileHandle, md5: Progress, tx: mpsc::UnboundedSender<Done>) {
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
                    md5.written(block, offset, bytes.len());
                    Done::Decoded(Ok(block))
                }
                Err(job) => Done::Decoded(Err(job)),
            })
        })();
        let _ = tx.send(result.unwrap_or_else(Done::Failed));
    });
}

fn spawn_verify(md5: RunningMd5, size: u64, tx: mpsc::UnboundedSender<Done>) {
    tokio::task::spawn_blocking(move || {
        let _ = tx.send(match md5.finish(size) {
            Ok(digest) => Done::Verified(digest),
            Err(e) => Done::Failed(e),
        });
    });
}
