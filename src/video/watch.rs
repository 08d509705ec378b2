//! `edm-cast watch NAME`: finds the relay by its announcements, leases channel NAME, repairs and
//! reorders its RTP (`edm_cast_proto::video::fec::Playout`) and forwards it to a local port that a
//! player opens through an SDP file. A channel's audio track goes the same way to the next port
//! but one, and the relay's RTCP sender reports of both tracks to their RTCP ports (lip sync).

use super::relay::parse_group;
use crate::cli::seconds;
use crate::error::Error;
use crate::keys;
use crate::net::{self, Group, Iface};
use crate::rt::{self, Shutdown};
use clap::Parser;
use edm_cast_proto::auth;
use edm_cast_proto::video::fec::{Playout, audio_hold};
use edm_cast_proto::video::h264::{NAL_SPS, nal_type, rtp_parameter_sets, rtp_starts_keyframe};
use edm_cast_proto::video::rtcp::SenderReport;
use edm_cast_proto::video::sdp;
use edm_cast_proto::video::viewer::{Viewer, ViewerConfig, ViewerEvent};
use edm_cast_proto::video::wire::{AudioInfo, ChannelInfo, FecReport, Repair};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
    /// Local UDP port the clean RTP stream is forwarded to; a channel's audio goes to PORT+2
    /// (and the RTCP sender reports of both to PORT+1 and PORT+3).
    #[arg(long, default_value_t = 6004, value_parser = clap::value_parser!(u16).range(1..=65531))]
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
    /// The channel's audio as a REPLY after the grant described it, until the media side takes it.
    audio_changed: Option<Option<AudioInfo>>,
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
            audio_changed: None,
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
                ViewerEvent::AudioChanged(audio) => self.audio_changed = Some(audio),
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
    /// The channel's audio track, if it has one.
    audio: Option<AudioTrack>,
    /// What joining an audio track described after the grant takes.
    group: IpAddr,
    media_port: u16,
    iface: Iface,
    hold: Duration,
    /// Sender reports of the video: RTCP from the relay, forwarded to `--port` + 1.
    video_rtcp: Option<UdpSocket>,
    video_rtcp_buf: Vec<u8>,
    audio_buf: Vec<u8>,
    audio_rtcp_buf: Vec<u8>,
}

/// The audio side of `Watching`: its own playout (the video's bounds, and its hold plus what the
/// audio's longer FEC windows need: `audio_hold`; packets in order pass at once, so the tracks
/// stay in step), forwarded to `--port` + 2, its sender reports to `--port` + 3.
struct AudioTrack {
    playout: Playout,
    media: UdpSocket,
    rtcp: UdpSocket,
    forward_to: SocketAddr,
    forwarded: u64,
    /// Sender reports forwarded (video and audio), and those dropped: not a sender report, or
    /// not of the track's SSRC.
    reports: u64,
    reports_dropped: u64,
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
        let hold = Duration::from_millis(args.hold_ms);
        let (audio, video_rtcp) = match &info.audio {
            Some(a) => {
                let to = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port + 2));
                let (track, rtcp) =
                    AudioTrack::open(info.group, info.media_port, a, iface, hold, to)?;
                (Some(track), Some(rtcp))
            }
            None => (None, None),
        };
        let sdp = SdpFile::new(args, info.audio.clone());
        if let Some(a) = &info.audio {
            eprintln!(
                "watch: audio {:?} {} Hz, {} channels: {}:{}, forwarding to 127.0.0.1:{}",
                a.codec,
                a.clock_rate,
                a.channels,
                info.group,
                a.port,
                args.port + 2
            );
        }
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
            audio,
            group: info.group,
            media_port: info.media_port,
            iface,
            hold,
            video_rtcp,
            video_rtcp_buf: vec![0u8; 2048],
            audio_buf: vec![0u8; 65536],
            audio_rtcp_buf: vec![0u8; 2048],
        })
    }

    /// Watches until Ctrl-C, SIGTERM (an error: 130 or 143 with its line, as every command) or
    /// the player's exit; returns the exit code.
    async fn run(&mut self, lease: &mut Lease, shutdown: &mut Shutdown) -> Result<ExitCode, Error> {
        let mut poll_player = tokio::time::interval(Duration::from_millis(200));
        loop {
            let renew = lease.wake();
            let wake = self.playout.poll_timeout().map_or(renew, |t| t.min(renew));
            let audio_wake = self.audio.as_ref().and_then(|a| a.playout.poll_timeout());
            let wake = audio_wake.map_or(wake, |t| t.min(wake));
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
                        self.on_repair(Instant::now(), n);
                    }
                }
                got = recv_if(self.audio.as_ref().map(|a| &a.media), &mut self.audio_buf) => {
                    if let (Ok(n), Some(a)) = (got, &mut self.audio) {
                        a.playout.handle_rtp(Instant::now(), &self.audio_buf[..n]);
                    }
                }
                got = recv_if(self.audio.as_ref().map(|a| &a.rtcp), &mut self.audio_rtcp_buf) => {
                    if let Ok(n) = got {
                        self.on_sender_report(true, n).await;
                    }
                }
                got = recv_if(self.video_rtcp.as_ref(), &mut self.video_rtcp_buf) => {
                    if let Ok(n) = got {
                        self.on_sender_report(false, n).await;
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
            if let Some(audio) = lease.audio_changed.take() {
                self.audio_changed(audio)?;
            }
        }
    }

    /// The relay described the channel's audio otherwise after the grant (an RTSP source's,
    /// learned once connected): forwards it from now on, and puts it in the SDP.
    fn audio_changed(&mut self, audio: Option<AudioInfo>) -> Result<(), Error> {
        match &audio {
            Some(a) => {
                let to = SocketAddr::from((Ipv4Addr::LOCALHOST, self.forward_to.port() + 2));
                let (track, rtcp) =
                    AudioTrack::open(self.group, self.media_port, a, self.iface, self.hold, to)?;
                eprintln!(
                    "watch: the channel has audio now: {:?} {} Hz, {} channels, forwarding to {}",
                    a.codec, a.clock_rate, a.channels, track.forward_to
                );
                self.audio = Some(track);
                self.video_rtcp = Some(rtcp);
            }
            None => {
                eprintln!("watch: the channel has no audio now");
                (self.audio, self.video_rtcp) = (None, None);
            }
        }
        self.sdp.set_audio(audio)
    }

    /// A REPAIR came: the audio's if it names the audio's SSRC, else the video's (whose playout
    /// counts what is neither).
    fn on_repair(&mut self, now: Instant, n: usize) {
        let bytes = &self.repair_buf[..n];
        if let Some(a) = &mut self.audio {
            let ssrc = Repair::parse(bytes).ok().map(|r| r.ssrc);
            if ssrc.is_some() && ssrc == a.playout.ssrc() {
                a.playout.handle_repair(now, bytes);
                return;
            }
        }
        self.playout.handle_repair(now, bytes);
    }

    /// A datagram came on the video's (`audio` false) or the audio's RTCP port: forwarded to the
    /// player's RTCP port if it is a sender report of that track's SSRC.
    async fn on_sender_report(&mut self, audio: bool, n: usize) {
        let Some(a) = &mut self.audio else { return };
        let (bytes, ssrc, port) = match audio {
            true => (
                &self.audio_rtcp_buf[..n],
                a.playout.ssrc(),
                a.forward_to.port() + 1,
            ),
            false => (
                &self.video_rtcp_buf[..n],
                self.playout.ssrc(),
                self.forward_to.port() + 1,
            ),
        };
        if SenderReport::parse(bytes).is_ok_and(|sr| Some(sr.ssrc) == ssrc) {
            let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let _ = self.local.send_to(bytes, to).await;
            a.reports += 1;
        } else {
            a.reports_dropped += 1;
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
        if let Some(a) = &mut self.audio {
            a.playout.handle_timeout(now);
            while let Some(p) = a.playout.poll_packet() {
                let _ = self.local.send_to(&p, a.forward_to).await;
                a.forwarded += 1;
            }
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
        if let Some(a) = &self.audio {
            let s = &a.playout.stats;
            eprintln!(
                "watch: audio: {} packets forwarded; {} received, {} repaired, {} lost, {} dropped, {} over the bounds; {} sender reports forwarded, {} dropped",
                a.forwarded,
                s.received,
                s.recovered,
                s.lost,
                s.dropped,
                s.refused,
                a.reports,
                a.reports_dropped
            );
        }
    }
}

impl AudioTrack {
    /// Joins the audio's group port and its RTCP port, and the video's RTCP port (returned):
    /// the sender reports that line the tracks up. The audio goes on to `forward_to`.
    fn open(
        group: IpAddr,
        media_port: u16,
        a: &AudioInfo,
        iface: Iface,
        hold: Duration,
        forward_to: SocketAddr,
    ) -> Result<(AudioTrack, UdpSocket), Error> {
        let join = |port: u16| {
            let group = Group(SocketAddr::new(group, port));
            net::register(net::group_socket(group, iface)?)
        };
        let track = AudioTrack {
            playout: Playout::new(audio_hold(hold)),
            media: join(a.port)?,
            rtcp: join(a.port.wrapping_add(1))?,
            forward_to,
            forwarded: 0,
            reports: 0,
            reports_dropped: 0,
        };
        Ok((track, join(media_port.wrapping_add(1))?))
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
    /// The audio track, forwarded to `port` + 2.
    audio: Option<AudioInfo>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    /// None once written.
    deadline: Option<Instant>,
}

impl SdpFile {
    fn new(args: &Args, audio: Option<AudioInfo>) -> Self {
        let path = args.sdp.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("edm-cast-{}-{}.sdp", args.name, std::process::id()))
        });
        SdpFile {
            path,
            temporary: args.sdp.is_none(),
            name: args.name.clone(),
            port: args.port,
            audio,
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
        self.write()?;
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

    /// Writes the SDP as it stands.
    fn write(&self) -> Result<(), Error> {
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
            audio: self.audio.as_ref().map(|a| (self.port + 2, a)),
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
            })
    }

    /// The channel's audio changed after the grant: the SDP will say so, or says so now if it
    /// was written already (a player that opened it keeps what it read).
    fn set_audio(&mut self, audio: Option<AudioInfo>) -> Result<(), Error> {
        self.audio = audio;
        if self.deadline.is_none() {
            self.write()?;
            eprintln!(
                "watch: SDP {} written again with the channel's audio as it is now (a player that opened it already: restart it)",
                self.path.display()
            );
        }
        Ok(())
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
