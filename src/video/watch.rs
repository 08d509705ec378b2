//! `edm-cast watch NAME`: finds the relay by its announcements, leases channel NAME, repairs and
//! reorders its RTP (`edm_cast_proto::video::fec::Playout`) and forwards it to a local port that a
//! player opens through an SDP file.

use super::relay::parse_group;
use crate::cli::seconds;
use crate::error::Error;
use crate::keys;
use crate::net::{self, Group, Iface};
use crate::rt::{self, Shutdown};
use clap::Parser;
use edm_cast_proto::auth;
use edm_cast_proto::video::fec::Playout;
use edm_cast_proto::video::h264::{NAL_SPS, nal_type, rtp_parameter_sets, rtp_starts_keyframe};
use edm_cast_proto::video::sdp;
use edm_cast_proto::video::viewer::{Viewer, ViewerConfig, ViewerEvent};
use edm_cast_proto::video::wire::{ChannelInfo, FecReport};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

#[derive(Parser, Debug)]
pub struct Args {
    /// Channel to watch, as the relay names it (`edm-cast video --from NAME`).
    name: String,
    /// Write the SDP file here and start no player (open it in VLC, ffplay or GStreamer).
    #[arg(long, value_name = "PATH")]
    sdp: Option<PathBuf>,
    /// Local UDP port the clean RTP stream is forwarded to (RTCP would be PORT+1).
    #[arg(long, default_value_t = 6004)]
    port: u16,
    /// Announce group of the relay.
    #[arg(long, default_value = "239.255.1.1:5010", value_parser = parse_group)]
    group: Group,
    /// Interface (name or address) to join on.
    #[arg(long)]
    iface: Option<String>,
    /// Ignore the repair packets (to see what FEC buys).
    #[arg(long)]
    no_fec: bool,
    /// Milliseconds a gap may hold packets back while repair can still come.
    #[arg(long, default_value_t = 150)]
    hold_ms: u64,
    /// Seconds to wait for the relay's announcement and reply.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    timeout: Duration,
    #[command(flatten)]
    trusting: keys::Trusting,
}

fn socket_error(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Socket { what, source }
}

/// How long `watch` waits for the stream's SPS and PPS (sent before each keyframe) before it
/// writes the SDP without them: longer than a usual keyframe interval, short enough to start.
const PARAMETER_SETS_WAIT: Duration = Duration::from_secs(3);

/// No video from the relay for this long, and `watch` says the source is silent: longer than the
/// relay's own `source silent` (2 s), so a viewer hears of it after the teacher's terminal does.
const SILENT_AFTER: Duration = Duration::from_secs(3);

/// Receives on `socket`, or waits forever if there is none.
async fn recv_if(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match socket {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// How VLC opens an SDP on Debian and Ubuntu, built without live555: through libavformat, which
/// VLC only uses for an `.sdp` when forced.
const VLC_OPTIONS: [&str; 2] = ["--demux", "avformat"];

/// Is `program` an executable file in a directory of PATH?
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Starts ffplay, or VLC unless root (VLC refuses: "VLC is not supposed to be run as root"), on
/// the SDP; otherwise the one line that says what to do.
fn find_player(path: &Path) -> Result<(Child, String), String> {
    let sdp = path.display().to_string();
    let ffplay = [
        "-protocol_whitelist",
        "file,udp,rtp",
        "-fflags",
        "nobuffer",
        "-flags",
        "low_delay",
        "-i",
        &sdp,
    ];
    let vlc = [VLC_OPTIONS[0], VLC_OPTIONS[1], &sdp];
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let spawn = |cmd: &str, args: &[&str]| {
        let child = std::process::Command::new(cmd)
            .args(args)
            .stdin(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some((child, format!("{cmd} {}", args.join(" "))))
    };
    if let Some(started) = spawn("ffplay", &ffplay) {
        return Ok(started);
    }
    if root && on_path("vlc") {
        return Err(format!(
            "watch: VLC refuses to run as root; as a normal user run: vlc {}",
            vlc.join(" ")
        ));
    }
    spawn("vlc", &vlc).ok_or_else(|| {
        format!(
            "watch: no ffplay or vlc found; open the SDP yourself, e.g.\n  ffplay {}\n  vlc {}",
            ffplay.join(" "),
            vlc.join(" ")
        )
    })
}

/// Watches until Ctrl-C, SIGTERM or the player's exit.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let iface = net::interface_addr(args.iface.as_deref(), args.group)?;
    let runtime = rt::runtime()?;
    runtime.block_on(watch(args, iface))
}

async fn watch(args: Args, iface: Iface) -> Result<ExitCode, Error> {
    let started = Instant::now();
    // Ctrl-C and SIGTERM are heard from the start: while looking for the relay too.
    let mut shutdown = Shutdown::new()?;
    let mut lease = Lease::open(&args, iface)?;
    let info = lease.join(&mut shutdown).await?;
    if let Some(key) = lease.viewer.signed_by() {
        eprintln!(
            "watch: the relay signs with key {} (trusted)",
            auth::fingerprint(&key)
        );
    }
    let mut watching = Watching::start(&args, iface, &info, lease.relay(), started)?;
    let code = watching.run(&mut lease, &mut shutdown).await;
    lease.leave().await;
    watching.finish();
    lease.print_dropped();
    code
}

/// The control side: the `Viewer` state machine and the two sockets it hears the relay on.
struct Lease {
    viewer: Viewer,
    /// ANNOUNCEs; kept after joining, to notice a restarted relay.
    announces: UdpSocket,
    announce_buf: Vec<u8>,
    /// REQUEST and LEAVE out, REPLY in.
    control: UdpSocket,
    control_buf: Vec<u8>,
    /// The datagram being sent.
    out: Vec<u8>,
}

impl Lease {
    /// Listens for the relay's announcements; the `--timeout` runs from now.
    fn open(args: &Args, iface: Iface) -> Result<Self, Error> {
        let trust = keys::trust(&args.trusting)?;
        if trust.is_none() {
            eprintln!(
                "watch: no trusted key: taking any relay that announces '{}' (pin the teacher's with --trust edm1-... or /etc/edm-cast/trusted)",
                args.name
            );
        }
        let announces = net::register(net::group_socket(args.group, iface)?)?;
        let config = ViewerConfig {
            id: rt::random_u64(),
            channel: args.name.clone(),
            group: args.group.0,
            timeout: args.timeout,
            trust,
        };
        Ok(Lease {
            viewer: Viewer::new(config, Instant::now()),
            announces,
            announce_buf: vec![0u8; 2048],
            control: net::register(net::feedback_socket(iface)?)?,
            control_buf: vec![0u8; 2048],
            out: Vec::with_capacity(64),
        })
    }

    /// Finds the relay and gets the lease: the channel's addresses, or why not.
    async fn join(&mut self, shutdown: &mut Shutdown) -> Result<ChannelInfo, Error> {
        loop {
            self.on_timeout().await;
            if let Some(info) = self.on_events()? {
                return Ok(info);
            }
            let wake = self.wake();
            tokio::select! {
                stop = shutdown.recv() => return Err(Error::Interrupted(stop)),
                _ = self.recv() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// The relay's control address (known once joined).
    fn relay(&self) -> SocketAddr {
        self.viewer.relay().expect("a joined viewer has a relay")
    }

    /// Waits for the next ANNOUNCE or REPLY and hands it to the viewer. Only receiving awaits,
    /// so a `select!` may drop this future without losing a datagram.
    async fn recv(&mut self) {
        let (got, buf) = tokio::select! {
            got = self.announces.recv_from(&mut self.announce_buf) => (got, &self.announce_buf),
            got = self.control.recv_from(&mut self.control_buf) => (got, &self.control_buf),
        };
        if let Ok((n, from)) = got {
            self.viewer.handle_datagram(Instant::now(), from, &buf[..n]);
        }
    }

    /// When the viewer has something to do: a REQUEST, or giving up.
    fn wake(&self) -> Instant {
        // A joined viewer always has its next renewal; one that left needs no wake-up.
        let idle = Instant::now() + Duration::from_secs(3600);
        self.viewer.poll_timeout().unwrap_or(idle)
    }

    /// Lets the viewer act on the time, and sends what it has.
    async fn on_timeout(&mut self) {
        self.viewer.handle_timeout(Instant::now());
        self.send().await;
    }

    async fn send(&mut self) {
        while let Some(relay) = self.viewer.poll_transmit(Instant::now(), &mut self.out) {
            // Best effort: REQUESTs repeat, and LEAVE goes twice.
            let _ = self.control.send_to(&self.out, relay).await;
        }
    }

    /// Acts on the viewer's events: the channel once the lease is granted, the error if the
    /// viewer gave up.
    fn on_events(&mut self) -> Result<Option<ChannelInfo>, Error> {
        let mut joined = None;
        while let Some(e) = self.viewer.poll_event() {
            match e {
                ViewerEvent::Joined(info) => joined = Some(info),
                ViewerEvent::RelayMoved(to) => eprintln!("watch: the relay is now at {to}"),
                ViewerEvent::Failed(e) => return Err(Error::Protocol(e.to_string())),
            }
        }
        Ok(joined)
    }

    async fn leave(&mut self) {
        self.viewer.leave();
        self.send().await;
    }

    /// What the control side dropped, on exit.
    fn print_dropped(&self) {
        let d = self.viewer.dropped();
        eprintln!(
            "watch: control: {} datagrams dropped ({} unsigned, {} signed by another key, {} forged, {} stale or replayed, {} from another address)",
            d.total(),
            d.unsigned,
            d.unknown_key,
            d.forged,
            d.stale,
            d.wrong_source
        );
    }
}

/// The media side, once the lease is granted: the channel's RTP and REPAIR in, `Playout`
/// repairing and ordering them, the clean stream out to the player.
struct Watching {
    playout: Playout,
    media: UdpSocket,
    media_buf: Vec<u8>,
    /// None without FEC (`--no-fec`, or a relay that sends none).
    repair: Option<UdpSocket>,
    repair_buf: Vec<u8>,
    /// Forwards to `forward_to` on this host.
    local: UdpSocket,
    forward_to: SocketAddr,
    sdp: SdpFile,
    player: Option<Child>,
    started: Instant,
    keyframe_seen: bool,
    forwarded: u64,
    /// When the last RTP packet came (the start, before the first one).
    last_video: Instant,
    /// Said so, and not yet that it is back.
    silent: bool,
}

impl Watching {
    /// Joins the channel's groups, writes the SDP and starts a player unless `--sdp` was given.
    fn start(
        args: &Args,
        iface: Iface,
        info: &ChannelInfo,
        relay: SocketAddr,
        started: Instant,
    ) -> Result<Self, Error> {
        let (media, repair) = join_channel(info, iface, args.no_fec)?;
        let local = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .map_err(socket_error("cannot open a local socket".into()))?;
        let local = net::register(local)?;
        let forward_to = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
        let sdp = SdpFile::new(args);
        eprintln!(
            "watch: {} from {relay}: {}:{} (repair {}), forwarding to {forward_to}; SDP {} once the stream's SPS and PPS came (at most {} s)",
            args.name,
            info.group,
            info.media_port,
            if repair.is_some() {
                info.repair_port.to_string()
            } else {
                "off".into()
            },
            sdp.path.display(),
            PARAMETER_SETS_WAIT.as_secs()
        );
        Ok(Watching {
            playout: Playout::new(Duration::from_millis(args.hold_ms)),
            media,
            media_buf: vec![0u8; 65536],
            repair,
            repair_buf: vec![0u8; 65536],
            local,
            forward_to,
            sdp,
            player: None,
            started,
            keyframe_seen: false,
            forwarded: 0,
            last_video: Instant::now(),
            silent: false,
        })
    }

    /// Watches until Ctrl-C, SIGTERM (an error: 130 or 143 with its line, as every command) or
    /// the player's exit; returns the exit code.
    async fn run(&mut self, lease: &mut Lease, shutdown: &mut Shutdown) -> Result<ExitCode, Error> {
        let mut poll_player = tokio::time::interval(Duration::from_millis(200));
        loop {
            let renew = lease.wake();
            let wake = self.playout.poll_timeout().map_or(renew, |t| t.min(renew));
            let wake = self.sdp.deadline().map_or(wake, |t| t.min(wake));
            let wake = if self.silent {
                wake
            } else {
                wake.min(self.last_video + SILENT_AFTER)
            };
            tokio::select! {
                stop = shutdown.recv() => return Err(Error::Interrupted(stop)),
                got = self.media.recv(&mut self.media_buf) => {
                    if let Ok(n) = got {
                        self.playout.handle_rtp(Instant::now(), &self.media_buf[..n]);
                        self.video_came(Instant::now());
                    }
                }
                got = recv_if(self.repair.as_ref(), &mut self.repair_buf) => {
                    if let Ok(n) = got {
                        self.playout.handle_repair(Instant::now(), &self.repair_buf[..n]);
                    }
                }
                _ = lease.recv() => {}
                _ = poll_player.tick(), if self.player.is_some() => {
                    if self.player_exited() {
                        eprintln!("watch: the player exited");
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.check_silence(Instant::now());
            self.forward(Instant::now()).await?;
            // The next renewal tells the relay what the playout repaired and lost.
            let s = &self.playout.stats;
            lease.viewer.set_fec(FecReport {
                repaired: s.recovered,
                lost: s.lost,
            });
            lease.on_timeout().await;
            lease.on_events()?;
        }
    }

    /// An RTP packet came: says so if the source was silent.
    fn video_came(&mut self, now: Instant) {
        self.last_video = now;
        if self.silent {
            self.silent = false;
            eprintln!("watch: the source is back");
        }
    }

    /// Says once that the source is silent, when no RTP came for `SILENT_AFTER`.
    fn check_silence(&mut self, now: Instant) {
        if !self.silent && now.saturating_duration_since(self.last_video) >= SILENT_AFTER {
            self.silent = true;
            eprintln!(
                "watch: the source is silent (no video for {} s)",
                SILENT_AFTER.as_secs()
            );
        }
    }

    fn player_exited(&mut self) -> bool {
        let player = self.player.as_mut();
        player.is_some_and(|p| !matches!(p.try_wait(), Ok(None)))
    }

    /// Forwards what the playout has ready, in order; writes the SDP (and starts the player) once
    /// the parameter sets came or the wait for them is over.
    async fn forward(&mut self, now: Instant) -> Result<(), Error> {
        self.playout.handle_timeout(now);
        while let Some(p) = self.playout.poll_packet() {
            self.sdp.observe(&p);
            if !self.keyframe_seen && rtp_starts_keyframe(&p) {
                self.keyframe_seen = true;
                eprintln!(
                    "watch: first keyframe after {:.3} s",
                    self.started.elapsed().as_secs_f64()
                );
            }
            let _ = self.local.send_to(&p, self.forward_to).await;
            self.forwarded += 1;
        }
        if self.sdp.write_if_ready(now)? && self.sdp.temporary {
            self.player = start_player(&self.sdp.path);
        }
        Ok(())
    }

    /// Stops the player, removes a temporary SDP and prints what the playout counted.
    fn finish(mut self) {
        if let Some(mut p) = self.player.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if self.sdp.temporary {
            let _ = std::fs::remove_file(&self.sdp.path);
        }
        let s = &self.playout.stats;
        eprintln!(
            "watch: {} packets forwarded; {} received, {} repaired, {} lost, {} dropped, {} over the bounds",
            self.forwarded, s.received, s.recovered, s.lost, s.dropped, s.refused
        );
    }
}

/// Joins the channel's media group, and its repair group unless FEC is off.
fn join_channel(
    info: &ChannelInfo,
    iface: Iface,
    no_fec: bool,
) -> Result<(UdpSocket, Option<UdpSocket>), Error> {
    let join = |port| {
        let group = Group(SocketAddr::new(info.group, port));
        net::register(net::group_socket(group, iface)?)
    };
    let media = join(info.media_port)?;
    let repair = if info.repair_port != 0 && !no_fec {
        Some(join(info.repair_port)?)
    } else {
        None
    };
    Ok((media, repair))
}

/// The SDP for the forwarded stream: written where `--sdp` says (or to a temporary file) once
/// the stream's SPS and PPS were forwarded, so it carries them (`sprop-parameter-sets`), or
/// without them after `PARAMETER_SETS_WAIT`.
struct SdpFile {
    path: PathBuf,
    /// Ours to remove, and a player to start (no `--sdp`).
    temporary: bool,
    name: String,
    port: u16,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    /// None once written.
    deadline: Option<Instant>,
}

impl SdpFile {
    fn new(args: &Args) -> Self {
        let path = args.sdp.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("edm-cast-{}-{}.sdp", args.name, std::process::id()))
        });
        SdpFile {
            path,
            temporary: args.sdp.is_none(),
            name: args.name.clone(),
            port: args.port,
            sps: None,
            pps: None,
            deadline: Some(Instant::now() + PARAMETER_SETS_WAIT),
        }
    }

    /// When the SDP is written at the latest, unless it was.
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Keeps the parameter sets of a forwarded packet, until the SDP is written.
    fn observe(&mut self, packet: &[u8]) {
        if self.deadline.is_none() {
            return;
        }
        for nal in rtp_parameter_sets(packet) {
            let slot = if nal_type(nal) == NAL_SPS {
                &mut self.sps
            } else {
                &mut self.pps
            };
            *slot = Some(nal.to_vec());
        }
    }

    /// Writes the SDP if both parameter sets came or the wait is over; true if it did now.
    fn write_if_ready(&mut self, now: Instant) -> Result<bool, Error> {
        let Some(deadline) = self.deadline else {
            return Ok(false);
        };
        let complete = self.sps.is_some() && self.pps.is_some();
        if !complete && now < deadline {
            return Ok(false);
        }
        let text = sdp::Session {
            name: &self.name,
            description: None,
            origin: Ipv4Addr::LOCALHOST.into(),
            session_id: 0,
            address: Ipv4Addr::LOCALHOST.into(),
            ttl: 0,
            port: self.port,
            sps: self.sps.as_deref(),
            pps: self.pps.as_deref(),
        }
        .render();
        // Written whole under another name, then renamed: a player polling for the file never
        // reads half of it.
        let part = self.path.with_extension("sdp.part");
        std::fs::write(&part, text)
            .and_then(|_| std::fs::rename(&part, &self.path))
            .map_err(|source| Error::Write {
                path: self.path.clone(),
                source,
            })?;
        self.deadline = None;
        eprintln!(
            "watch: SDP written to {} ({})",
            self.path.display(),
            if complete {
                "with the stream's SPS and PPS"
            } else {
                "without parameter sets: none came in time"
            }
        );
        Ok(true)
    }
}

/// Starts ffplay or VLC on the SDP, or says how to.
fn start_player(sdp_path: &Path) -> Option<Child> {
    match find_player(sdp_path) {
        Ok((child, cmd)) => {
            eprintln!("watch: playing with: {cmd}");
            Some(child)
        }
        Err(what_to_do) => {
            eprintln!("{what_to_do}");
            None
        }
    }
}
