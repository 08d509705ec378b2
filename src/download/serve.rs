//! `edm-cast serve`: the lab's download manager. It announces itself on the group; a student's
//! `edm-cast get URL` asks it for a URL, and it answers with the session that carries it: the one
//! already running, or a new one sent from the cache or downloaded with cut-through. Each session
//! runs on a thread of its own, on its own data port (group port + 1 + slot), sharing `--rate`.
//!
//! Students may be hostile, so everything a request makes the server do is bounded: the size of a
//! download, the room downloads take at once, how slow and how long a web server may be, sessions
//! started per address, slots held per address, and how long requests can hold an idle session.
//! Refusals tell a student the HTTP status or the limit, never how the network behind the server
//! answered (that would make the server a port scanner); the server's log has the details.
//!
//! With `--http` it publishes its sessions, requests, downloads and cache on a [`Board`], and
//! takes the teacher's actions from it: "send to class" (a URL, asked for as a student would, but
//! not held to a student's quotas) and "stop" (a running session: END goes out).

use super::ledger::{self, Ledger};
use crate::cli::{Caching, Network, Sending, seconds};
use crate::error::Error;
use crate::file::session::{Session, Setup, feedback_addr};
use crate::file::source;
use crate::file::view::{self, SenderView};
use crate::http::cache::{Cache, Size};
use crate::http::fetch::{self, Limits, MinRate, Told};
use crate::http::policy::{self, Domain, Net, Policy};
use crate::http::spool::Spool;
use crate::keys::{self, Signing};
use crate::net::pace::Rate;
use crate::net::{self, Group};
use crate::rt::{self, Shutdown};
use crate::status::{Action, Board};
use crate::web::{self, Web};
use edm_cast_proto::{Catalog, CatalogConfig, CatalogEvent, Fec, Reply, SenderConfig};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How long a session stays open for a student who was just told to join it.
const JOIN_GRACE: Duration = Duration::from_secs(3);
/// How long a session the teacher asked for ("send to class") waits for the first student, and
/// stays open for the others: the class needs a moment to type `edm-cast get URL`.
const TEACHER_WAIT: Duration = Duration::from_secs(60);
/// How long the server waits for its sessions' END when it stops.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// Actions waiting for the serve loop at most; past that the dashboard is told it is busy.
const ACTIONS: usize = 16;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server announces itself on the group's port; session N sends on PORT + 1 + N.
    #[command(flatten)]
    pub net: Network,
    #[command(flatten)]
    pub sending: Sending,
    /// UDP port that takes students' requests.
    #[arg(long, default_value_t = 5006)]
    pub port: u16,
    /// Sessions (different URLs) at once; more requests are refused as busy.
    #[arg(long, default_value_t = 4)]
    pub max_sessions: u16,
    #[command(flatten)]
    pub caching: Caching,
    /// Allow downloads from this address range, even a private one (repeatable). Private,
    /// loopback and link-local ranges are refused by default.
    #[arg(long, value_name = "NET")]
    pub allow: Vec<Net>,
    /// Refuse downloads from this address range too (repeatable); `--deny 0.0.0.0/0 --allow NET`
    /// allows only NET.
    #[arg(long, value_name = "NET")]
    pub deny: Vec<Net>,
    /// Download only from this host, or from hosts under DOMAIN with `*.DOMAIN` (repeatable);
    /// checked on the URL and on every redirect.
    #[arg(long, value_name = "HOST|*.DOMAIN")]
    pub allow_domain: Vec<Domain>,
    /// Never download from this host, or from hosts under DOMAIN with `*.DOMAIN` (repeatable); wins
    /// over --allow-domain.
    #[arg(long, value_name = "HOST|*.DOMAIN")]
    pub deny_domain: Vec<Domain>,
    /// Refuse a download larger than this; one of unknown size is cut off when it passes it.
    #[arg(long, value_name = "SIZE", default_value = "20G")]
    pub max_size: Size,
    /// Room for the downloads under way together, in the spool folder (--cache, else $TMPDIR); a
    /// download that would not fit, or not fit the folder's free space, is refused.
    #[arg(long, value_name = "SIZE", default_value = "40G")]
    pub spool_size: Size,
    /// Give up on a web server slower than this many bytes per second (0: never) ...
    #[arg(long, value_name = "BYTES", default_value = "64K")]
    pub min_rate: Size,
    /// ... on average over each window of this many seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds)]
    pub min_rate_window: Duration,
    /// Give up on a download not done after this many seconds (0: never).
    #[arg(long, value_name = "SECS", default_value = "14400", value_parser = seconds)]
    pub fetch_timeout: Duration,
    /// Slots one student address may hold at once (the sessions it started).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub max_sessions_per_ip: usize,
    /// New sessions one student address may start per --starts-window ...
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_starts_per_ip: usize,
    /// ... of this many seconds.
    #[arg(long, value_name = "SECS", default_value = "600", value_parser = seconds)]
    pub starts_window: Duration,
    /// Stop after this many seconds (tests, scheduled lab hours). Default: run until Ctrl-C.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub exit_after: Option<Duration>,
    /// Signs the server's announce and answers, and every session it sends.
    #[command(flatten)]
    pub signing: Signing,
    #[command(flatten)]
    pub web: Web,
}

/// What a session's thread reports.
enum Report {
    Started {
        url: String,
        port: u16,
        /// The session and its source.
        source: ledger::Started,
    },
    Refused {
        url: String,
        /// For the log.
        why: String,
        /// For the students who asked.
        told: String,
    },
    Ended {
        url: String,
    },
}

/// What the server keeps per running session.
struct Running {
    slot: u16,
    hold: watch::Sender<Instant>,
    /// The address whose request started it (None: the teacher's).
    owner: Option<IpAddr>,
    /// The teacher's "stop".
    stop: watch::Sender<bool>,
    /// Its id, once it is open.
    session: Option<u32>,
}

/// What one student address may start: sessions per window, and slots held at once.
struct Quotas {
    max_held: usize,
    max_starts: usize,
    window: Duration,
    /// When each address started sessions, within the last window.
    starts: HashMap<IpAddr, VecDeque<Instant>>,
}

impl Quotas {
    /// Whether `ip`, which holds `held` slots, may start a session now (counted if so); if not,
    /// why, for the student.
    fn admit(&mut self, now: Instant, ip: IpAddr, held: usize) -> Result<(), String> {
        if held >= self.max_held {
            return Err(format!(
                "this PC already has {held} download(s) under way on the server \
                 (--max-sessions-per-ip {}); ask again when done",
                self.max_held
            ));
        }
        let window = self.window;
        self.starts.retain(|_, t| {
            while t.front().is_some_and(|&s| now >= s + window) {
                t.pop_front();
            }
            !t.is_empty()
        });
        let recent = self.starts.entry(ip).or_default();
        if recent.len() >= self.max_starts {
            let free_in = recent.front().map_or(window, |&first| {
                (first + window).saturating_duration_since(now)
            });
            return Err(format!(
                "this PC started {} download(s) in the last {} s (--max-starts-per-ip {}); \
                 try again in {} s",
                recent.len(),
                window.as_secs(),
                self.max_starts,
                free_in.as_secs() + 1
            ));
        }
        recent.push_back(now);
        Ok(())
    }
}

/// What every session's thread needs.
#[derive(Clone)]
struct Shared {
    agent: ureq::Agent,
    cache: Option<Arc<Cache>>,
    iface: net::Iface,
    group: Group,
    ttl: u32,
    setup: Setup,
    /// Each session's share of the link, in bit/s.
    rate: Arc<AtomicU64>,
    /// What a student's download may take (each session adds its claim on `spool`).
    limits: Limits,
    spool: Arc<Spool>,
    /// Where sessions publish their status.
    board: Board,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let (actions, acted) = mpsc::channel(ACTIONS);
    let board = Board::new("serve", rt::hostname(), Some(actions));
    run_on(args, board, acted)
}

/// `serve`, publishing on `board` and taking the actions that come to `acted`.
fn run_on(args: Args, board: Board, acted: mpsc::Receiver<Action>) -> Result<ExitCode, Error> {
    let iface = net::interface_addr(args.net.iface.as_deref(), args.net.group)?;
    let control = net::sender_socket(args.net.group, iface, args.sending.ttl, args.port)?;
    let cache = args.caching.open()?;
    let own = policy::interface_networks().map_err(|e| Error::Interface {
        iface: "(all)".into(),
        why: format!("cannot list the interfaces' networks: {e}"),
    })?;
    let policy = Arc::new(
        Policy::new(args.allow.clone(), args.deny.clone())
            .deny_networks(own)
            .domains(args.allow_domain.clone(), args.deny_domain.clone()),
    );
    let spool_dir = args
        .caching
        .cache
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    let signer = keys::signer(&args.signing)?;
    // It says where it is, and the token.
    web::start(&args.web, &board)?;
    let shared = Shared {
        agent: fetch::agent(policy),
        cache,
        iface,
        group: args.net.group,
        ttl: args.sending.ttl,
        setup: Setup {
            min_receivers: 1,
            wait_for: Vec::new(),
            // A requester that vanished before its hello does not keep the session (and its
            // slot): nobody has joined by then, it ends (`Session::share`).
            wait: Some(Duration::from_secs(10)),
            drop_after: args.sending.drop_after,
            block_symbols: SenderConfig::default().block_symbols,
            signer,
            encryption: None,
            cc: None,
            sync: None,
            fec: (Fec::default(), SenderConfig::default().proactive),
        },
        rate: Arc::new(AtomicU64::new(serve_rate(&args).0 as u64)),
        limits: Limits {
            max_size: Some(args.max_size.0),
            min_rate: (args.min_rate.0 > 0).then_some(MinRate {
                bytes_per_sec: args.min_rate.0,
                // Shorter, and a web server's ordinary pauses would count as dripping.
                window: args.min_rate_window.max(Duration::from_secs(1)),
            }),
            timeout: nonzero(args.fetch_timeout),
            room: None,
        },
        spool: Spool::new(spool_dir, args.spool_size.0),
        board,
    };
    eprintln!(
        "edm-cast: serving on {} (requests to port {}), {} for all sessions{}",
        args.net.group,
        args.port,
        serve_rate(&args),
        args.caching
            .cache
            .as_ref()
            .map(|d| format!(", cache {}", d.display()))
            .unwrap_or_default()
    );
    rt::runtime()?.block_on(serve(args, control, shared, acted))
}

async fn serve(
    args: Args,
    control: std::net::UdpSocket,
    shared: Shared,
    mut actions: mpsc::Receiver<Action>,
) -> Result<ExitCode, Error> {
    let control = net::register(control)?;
    let mut shutdown = Shutdown::new()?;
    let mut catalog = Catalog::new(
        CatalogConfig {
            requests: feedback_addr(args.net.group, shared.iface, args.port, &shared.setup)?,
            signer: shared.setup.signer.clone(),
            ..CatalogConfig::default()
        },
        Instant::now(),
    );
    let (tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut quotas = Quotas {
        max_held: args.max_sessions_per_ip,
        max_starts: args.max_starts_per_ip,
        window: args.starts_window,
        starts: HashMap::new(),
    };
    let mut ledger = Ledger::new(shared.board.clone(), shared.cache.clone());
    // Download progress changes nothing here: it is looked at on this beat.
    let mut beat = tokio::time::interval(ledger::PUBLISH_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inbox = vec![0u8; 2048];
    let mut out = Vec::with_capacity(1500);
    let stop_at = args.exit_after.map(|d| Instant::now() + d);
    loop {
        let wake = catalog
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = control.recv_from(&mut inbox) => {
                if let Ok((n, from)) = r {
                    catalog.handle_datagram(Instant::now(), from, &inbox[..n]);
                }
            }
            Some(report) = reports.recv() => match report {
                Report::Started { url, port, source } => {
                    catalog.started(&url, source.session, port);
                    if let Some(r) = running.get_mut(&url) {
                        r.session = Some(source.session);
                    }
                    ledger.started(&url, source);
                }
                Report::Refused { url, why, told } => {
                    eprintln!("refused {url}: {why}");
                    catalog.refused(&url, &told);
                    ledger.refused(&url, &told, false);
                    running.remove(&url);
                }
                Report::Ended { url } => {
                    catalog.ended(&url);
                    running.remove(&url);
                    ledger.ended(&url);
                }
            },
            Some(action) = actions.recv() => match action {
                Action::Send { url } => match running.get(&url) {
                    // Already on its way to the class: it stays open for the rest of it.
                    Some(r) => {
                        let _ = r.hold.send(Instant::now() + TEACHER_WAIT);
                        ledger.joined(&url, r.session);
                    }
                    None => {
                        catalog.ask(&url);
                    }
                },
                Action::Stop { session } => {
                    // The session says on the log that it was stopped.
                    match running.values().find(|r| r.session == Some(session)) {
                        Some(r) => {
                            let _ = r.stop.send(true);
                        }
                        None => eprintln!(
                            "stop: no session {session:08x} is running (ignored)"
                        ),
                    }
                }
            },
            _ = beat.tick() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = sleep_until(stop_at) => {
                stop_all(&running, &mut reports, &mut ledger).await;
                web::linger(&args.web, &mut shutdown).await;
                return Ok(ExitCode::SUCCESS);
            }
            stop = shutdown.recv() => {
                stop_all(&running, &mut reports, &mut ledger).await;
                return Err(Error::Interrupted(stop));
            }
        }
        while let Some(ev) = catalog.poll_event() {
            match ev {
                CatalogEvent::Start { url, from } => {
                    ledger.asked(&url, from);
                    let free =
                        (0..args.max_sessions).find(|s| !running.values().any(|r| r.slot == *s));
                    let admitted = match (free, from) {
                        (None, _) => Err(format!(
                            "the server is busy: {} sessions are running (--max-sessions)",
                            args.max_sessions
                        )),
                        (Some(slot), Some(ip)) => {
                            let held = running.values().filter(|r| r.owner == from).count();
                            quotas.admit(Instant::now(), ip, held).map(|()| slot)
                        }
                        // The teacher's request: not a student's quotas.
                        (Some(slot), None) => Ok(slot),
                    };
                    match admitted {
                        Ok(slot) => {
                            let mut shared = shared.clone();
                            let grace = match from {
                                Some(_) => JOIN_GRACE,
                                None => {
                                    shared.setup.wait = Some(TEACHER_WAIT);
                                    TEACHER_WAIT
                                }
                            };
                            let (hold, hold_rx) = watch::channel(Instant::now() + grace);
                            let (stop, stop_rx) = watch::channel(false);
                            running.insert(
                                url.clone(),
                                Running {
                                    slot,
                                    hold,
                                    owner: from,
                                    stop,
                                    session: None,
                                },
                            );
                            spawn_session(url, slot, shared, hold_rx, stop_rx, tx.clone());
                        }
                        Err(why) => {
                            catalog.refused(&url, &why);
                            ledger.refused(&url, &why, true);
                        }
                    }
                }
                CatalogEvent::Offered { url } => {
                    if let Some(r) = running.get(&url) {
                        let _ = r.hold.send(Instant::now() + JOIN_GRACE);
                    }
                }
                CatalogEvent::Answered { url, to, answer } => {
                    ledger.answered(&url, to.ip(), &answer);
                }
            }
        }
        // The link is shared evenly by the sessions running.
        let share = serve_rate(&args).0 / running.len().max(1) as f64;
        shared.rate.store(share as u64, Ordering::Relaxed);
        while let Some(to) = catalog.poll_transmit(Instant::now(), &mut out) {
            let to = match to {
                Reply::Group => args.net.group.0,
                Reply::To(a) => a,
            };
            if let Err(e) = control.send_to(&out, to).await {
                tracing::debug!("to {to}: {e}");
            }
        }
        ledger.publish(Instant::now());
    }
}

/// Ends the sessions running when the server stops (END goes out: their students are told rather
/// than left to time out), waiting for them at most `STOP_WAIT`.
async fn stop_all(
    running: &HashMap<String, Running>,
    reports: &mut mpsc::UnboundedReceiver<Report>,
    ledger: &mut Ledger,
) {
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    let mut left = running.values().filter(|r| r.session.is_some()).count();
    let end = Instant::now() + STOP_WAIT;
    while left > 0 {
        match tokio::time::timeout_at(end.into(), reports.recv()).await {
            Ok(Some(Report::Ended { url } | Report::Refused { url, .. })) => {
                ledger.ended(&url);
                left -= 1;
            }
            Ok(Some(Report::Started { .. })) => {}
            Ok(None) | Err(_) => break,
        }
    }
    ledger.publish(Instant::now());
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Starts the session for `url` on a thread of its own: fetch (or find in the cache), report the
/// session to the catalog, send until every receiver is done, report the end.
fn spawn_session(
    url: String,
    slot: u16,
    shared: Shared,
    hold: watch::Receiver<Instant>,
    stop: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<Report>,
) {
    std::thread::spawn(move || {
        // A bug in one session must not leave its URL marked running for ever.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session(&url, slot, &shared, hold, stop, &tx)
        }))
        .unwrap_or_else(|_| {
            Err(Error::Protocol(
                "the session failed (a bug: see above)".into(),
            ))
        });
        if let Err(e) = outcome {
            let (why, told) = match e {
                Error::Fetch { why, told, .. } => (why, told.text()),
                Error::Usage(why) => (why.clone(), why),
                e => (e.to_string(), Told::Failed.text()),
            };
            let _ = tx.send(Report::Refused {
                url: url.clone(),
                why,
                told,
            });
            return;
        }
        let _ = tx.send(Report::Ended { url });
    });
}

fn session(
    url: &str,
    slot: u16,
    shared: &Shared,
    hold: watch::Receiver<Instant>,
    stop: watch::Receiver<bool>,
    tx: &mpsc::UnboundedSender<Report>,
) -> Result<(), Error> {
    if !fetch::is_url(url) {
        return Err(Error::Usage(
            "only http:// and https:// URLs are served".into(),
        ));
    }
    // Given back once the session is over and its download has stopped (the download's thread
    // holds it too: its open spool file takes room until then).
    let limits = Limits {
        room: Some(Arc::new(shared.spool.claim())),
        ..shared.limits.clone()
    };
    let source = source::url(&shared.agent, url, shared.cache.as_ref(), &limits)?;
    let port =
        shared.group.0.port().checked_add(1 + slot).ok_or_else(|| {
            Error::Usage("the group's port is too high for --max-sessions".into())
        })?;
    let group = shared.group.with_port(port);
    let size = source.size.map_or("size not known yet".into(), view::bytes);
    let (known_size, feed) = (source.size, source.feed.clone());
    let mut session = Session::open(
        source,
        group,
        shared.iface,
        shared.ttl,
        &shared.setup,
        Rate(1e6),
        SenderView::lines(String::new()),
    )?;
    let id = session.id;
    eprintln!(
        "session {id:08x}: {url} ({size}, from {}) on port {port}",
        session.origin()
    );
    session.view = SenderView::lines(format!("session {id:08x}: "));
    session.share(shared.rate.clone(), hold);
    session.stop_on(stop);
    session.publish(shared.board.clone());
    let runtime = rt::runtime()?;
    let _ = tx.send(Report::Started {
        url: url.to_owned(),
        port,
        source: ledger::Started {
            session: id,
            size: known_size,
            feed,
        },
    });
    runtime.block_on(session.run(None))?;
    let done = session.receivers_done();
    eprintln!(
        "session {id:08x}: ended; {done} receiver(s) done of {}{}",
        session.sender.receivers().count(),
        session
            .failure()
            .map(|f| format!("; failed: {f}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// `serve` sends at a fixed rate, shared by its sessions: `--rate`, 100M by default.
fn serve_rate(args: &Args) -> Rate {
    args.sending.rate.unwrap_or(Rate(100e6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::get;
    use crate::status::Status;
    use clap::Parser;
    use std::io::BufRead;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    #[derive(Parser)]
    struct ServeCli {
        #[command(flatten)]
        args: Args,
    }

    #[derive(Parser)]
    struct GetCli {
        #[command(flatten)]
        args: get::Args,
    }

    /// tools/httpd.py serving `dir` at `rate` bytes/s, killed on drop.
    struct Httpd(Child, u16);

    impl Httpd {
        fn start(dir: &Path, rate: &str) -> Httpd {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/httpd.py");
            let mut child = Command::new("python3")
                .arg(script)
                .arg("--dir")
                .arg(dir)
                .args(["--bind", "127.0.0.1", "--max-secs", "60", "--rate", rate])
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 runs tools/httpd.py");
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().expect("piped"))
                .read_line(&mut line)
                .expect("httpd prints its port");
            let port = line.trim().parse().expect("httpd's port");
            Httpd(child, port)
        }
    }

    impl Drop for Httpd {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `serve` in this process, on loopback, publishing on the returned board. It stops by
    /// itself after `--exit-after`.
    fn serve_here(group: &str, port: &str) -> Board {
        let cli = ServeCli::try_parse_from([
            "serve",
            "--group",
            group,
            "--port",
            port,
            "--iface",
            "lo",
            "--rate",
            "400M",
            "--allow",
            "127.0.0.1",
            "--exit-after",
            "30",
        ])
        .unwrap();
        let (actions, acted) = mpsc::channel(ACTIONS);
        let board = Board::new("serve", "test".into(), Some(actions));
        let b = board.clone();
        std::thread::spawn(move || run_on(cli.args, b, acted));
        board
    }

    /// A student's `get` in this process, on its own thread.
    fn get_here(
        group: &str,
        url: &str,
        out: &Path,
    ) -> std::thread::JoinHandle<Result<ExitCode, Error>> {
        let out = out.to_str().unwrap();
        let cli =
            GetCli::try_parse_from(["get", url, "--group", group, "--iface", "lo", "--out", out])
                .unwrap();
        std::thread::spawn(move || get::run(cli.args))
    }

    /// The board once `ok` holds (within 15 s).
    fn until(board: &Board, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let s = board.snapshot();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < end, "{what}: not seen; status: {s:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The teacher's "send to class" starts a session with nobody asking yet (it waits for the
    /// class); a student's `get` joins it; the teacher's "stop" ends it, END goes out, and the
    /// student is told. A stop for a session that is not running changes nothing.
    #[test]
    fn the_teacher_sends_a_url_to_the_class_and_stops_it() {
        let dir = std::env::temp_dir().join(format!("edm-serve-act-{:x}", rt::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("big.iso"), vec![0x5a; 6 << 20]).unwrap();
        // 1 MB/s: the download, and so the session, lasts some seconds.
        let http = Httpd::start(&dir, "1000000");
        let group = "239.77.12.9:47391";
        let board = serve_here(group, "47392");
        let url = format!("http://127.0.0.1:{}/big.iso", http.1);
        assert!(board.act(Action::Send { url: url.clone() }));
        let s = until(&board, "the teacher's session", |s| s.sessions.len() == 1);
        let session = &s.sessions[0];
        assert_eq!((session.phase, session.origin), ("waiting", "download"));
        let serve = s.serve.expect("serve's status");
        assert_eq!(serve.requests.len(), 1, "{serve:#?}");
        let r = &serve.requests[0];
        assert_eq!((r.url.as_str(), r.from.as_str()), (url.as_str(), "teacher"));
        assert_eq!(r.answer, "started");
        assert_eq!(r.session.as_deref(), Some(session.id.as_str()));
        let id = u32::from_str_radix(&session.id, 16).unwrap();
        // A student comes: offered the running session, no second one.
        let out = dir.join("pc1");
        let student = get_here(group, &url, &out);
        until(&board, "the student receiving", |s| {
            s.sessions[0]
                .receivers
                .iter()
                .any(|r| r.state == "receiving")
        });
        // Asking again joins it rather than starting another.
        assert!(board.act(Action::Send { url: url.clone() }));
        assert!(board.act(Action::Stop { session: id ^ 1 }));
        assert!(board.act(Action::Stop { session: id }));
        let e = student.join().unwrap().unwrap_err();
        assert_eq!(e.to_string(), "the sender aborted the session");
        let s = until(&board, "the session's end", |s| {
            s.sessions[0].outcome.is_some() && s.serve.as_ref().unwrap().downloads.len() == 1
        });
        assert_eq!(s.sessions.len(), 1);
        let session = &s.sessions[0];
        assert_eq!(session.outcome, Some("aborted"));
        assert_eq!(session.failure.as_deref(), Some("stopped by the operator"));
        let serve = s.serve.unwrap();
        let answers: Vec<(&str, &str)> = serve
            .requests
            .iter()
            .map(|r| (r.from.as_str(), r.answer.as_str()))
            .collect();
        assert_eq!(answers, [("teacher", "offered"), ("127.0.0.1", "offered")]);
        assert_eq!(serve.answered.get("started"), Some(&1));
        assert_eq!(serve.downloads[0].session, session.id);
        // The slot is free again: the next "send to class" is a new session.
        assert!(board.act(Action::Send { url: url.clone() }));
        until(&board, "a second session", |s| s.sessions.len() == 2);
        // The teacher's URLs are held to the server's policy like a student's.
        let lan = format!("http://127.0.0.2:{}/big.iso", http.1);
        for (bad, why) in [
            (
                "ftp://mirror/x.iso",
                "only http:// and https:// URLs are served",
            ),
            (lan.as_str(), "not allowed by the server's policy"),
        ] {
            assert!(board.act(Action::Send { url: bad.into() }));
            let s = until(&board, "a refusal", |s| {
                let r = &s.serve.as_ref().unwrap().requests[0];
                r.url == bad && r.answer != "starting"
            });
            let r = &s.serve.unwrap().requests[0];
            assert_eq!(r.from, "teacher");
            assert!(
                r.answer.starts_with("refused: ") && r.answer.contains(why),
                "{r:?}"
            );
        }
        assert_eq!(board.snapshot().sessions.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_address_starts_so_many_sessions_per_window_and_holds_so_many_slots() {
        let mut q = Quotas {
            max_held: 2,
            max_starts: 3,
            window: Duration::from_secs(600),
            starts: HashMap::new(),
        };
        let t = Instant::now();
        let (pc, other): (IpAddr, IpAddr) =
            ("10.0.0.66".parse().unwrap(), "10.0.0.7".parse().unwrap());
        for i in 0..3 {
            q.admit(t + Duration::from_secs(i * 60), pc, 0).unwrap();
        }
        let e = q.admit(t + Duration::from_secs(300), pc, 0).unwrap_err();
        assert!(e.contains("started 3 download(s) in the last 600 s"), "{e}");
        assert!(e.contains("try again in 301 s"), "{e}");
        // Others are not held back; a refusal is not a start.
        q.admit(t + Duration::from_secs(300), other, 0).unwrap();
        // Once the first start is 10 min old, there is room for one more.
        q.admit(t + Duration::from_secs(600), pc, 0).unwrap();
        assert!(q.admit(t + Duration::from_secs(601), pc, 0).is_err());
        // Slots held at once, whatever the starts.
        let e = q
            .admit(t + Duration::from_secs(3000), other, 2)
            .unwrap_err();
        assert!(e.contains("already has 2 download(s) under way"), "{e}");
        assert!(q.admit(t + Duration::from_secs(3000), other, 1).is_ok());
        // Addresses whose starts are all old are forgotten.
        assert_eq!(q.starts.len(), 1);
    }
}
