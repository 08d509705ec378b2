//! `edm-cast watch NAME`: finds the relay by its announcements, leases channel NAME, repairs and
//! reorders its RTP (`edm_cast_proto::video::fec::Playout`) and forwards it to a local port that a
//! player opens through an SDP file.

use super::relay::parse_group;
use crate::cli::seconds;
use crate::error::Error;
use crate::keys;
use crate::net::{self, Group};
use crate::rt::{self, Shutdown};
use clap::Parser;
use edm_cast_proto::auth;
use edm_cast_proto::video::fec::Playout;
use edm_cast_proto::video::h264::rtp_starts_keyframe;
use edm_cast_proto::video::viewer::{Viewer, ViewerConfig, ViewerEvent};
use edm_cast_proto::video::wire::{ChannelInfo, FecReport};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
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

/// The SDP (RFC 8866) a player needs for dynamic payload type 96 (RFC 6184 section 8.2.1).
fn sdp(name: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=edm-cast {name}\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 packetization-mode=1\r\n"
    )
}

/// Receives on `socket`, or waits forever if there is none.
async fn recv_if(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match socket {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

fn find_player(path: &Path) -> Option<(Child, String)> {
    let sdp = path.display().to_string();
    let candidates: [(&str, Vec<&str>); 2] = [
        (
            "ffplay",
            vec![
                "-protocol_whitelist",
                "file,udp,rtp",
                "-fflags",
                "nobuffer",
                "-flags",
                "low_delay",
                "-i",
                &sdp,
            ],
        ),
        ("vlc", vec![&sdp]),
    ];
    for (cmd, args) in candidates {
        if let Ok(child) = std::process::Command::new(cmd)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            return Some((child, format!("{cmd} {}", args.join(" "))));
        }
    }
    None
}

/// Watches until Ctrl-C, SIGTERM or the player's exit.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let iface = net::interface_addr(args.iface.as_deref())?;
    let runtime = rt::runtime()?;
    runtime.block_on(watch(args, iface))
}

async fn watch(args: Args, iface: Ipv4Addr) -> Result<ExitCode, Error> {
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
    fn open(args: &Args, iface: Ipv4Addr) -> Result<Self, Error> {
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
    sdp_path: PathBuf,
    /// The SDP is ours to remove (no `--sdp`).
    sdp_is_temporary: bool,
    player: Option<Child>,
    started: Instant,
    keyframe_seen: bool,
    forwarded: u64,
}

impl Watching {
    /// Joins the channel's groups, writes the SDP and starts a player unless `--sdp` was given.
    fn start(
        args: &Args,
        iface: Ipv4Addr,
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
        let sdp_path = write_sdp(args)?;
        eprintln!(
            "watch: {} from {relay}: {}:{} (repair {}), forwarding to {forward_to}; SDP {}",
            args.name,
            info.group,
            info.media_port,
            if repair.is_some() {
                info.repair_port.to_string()
            } else {
                "off".into()
            },
            sdp_path.display()
        );
        let player = if args.sdp.is_none() {
            start_player(&sdp_path)
        } else {
            None
        };
        Ok(Watching {
            playout: Playout::new(Duration::from_millis(args.hold_ms)),
            media,
            media_buf: vec![0u8; 65536],
            repair,
            repair_buf: vec![0u8; 65536],
            local,
            forward_to,
            sdp_path,
            sdp_is_temporary: args.sdp.is_none(),
            player,
            started,
            keyframe_seen: false,
            forwarded: 0,
        })
    }

    /// Watches until Ctrl-C, SIGTERM (an error: 130 or 143 with its line, as every command) or
    /// the player's exit; returns the exit code.
    async fn run(&mut self, lease: &mut Lease, shutdown: &mut Shutdown) -> Result<ExitCode, Error> {
        let mut poll_player = tokio::time::interval(Duration::from_millis(200));
        loop {
            let renew = lease.wake();
            let wake = self.playout.poll_timeout().map_or(renew, |t| t.min(renew));
            tokio::select! {
                stop = shutdown.recv() => return Err(Error::Interrupted(stop)),
                got = self.media.recv(&mut self.media_buf) => {
                    if let Ok(n) = got {
                        self.playout.handle_rtp(Instant::now(), &self.media_buf[..n]);
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
            self.forward(Instant::now()).await;
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

    fn player_exited(&mut self) -> bool {
        let player = self.player.as_mut();
        player.is_some_and(|p| !matches!(p.try_wait(), Ok(None)))
    }

    /// Forwards what the playout has ready, in order.
    async fn forward(&mut self, now: Instant) {
        self.playout.handle_timeout(now);
        while let Some(p) = self.playout.poll_packet() {
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
    }

    /// Stops the player, removes a temporary SDP and prints what the playout counted.
    fn finish(mut self) {
        if let Some(mut p) = self.player.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if self.sdp_is_temporary {
            let _ = std::fs::remove_file(&self.sdp_path);
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
    iface: Ipv4Addr,
    no_fec: bool,
) -> Result<(UdpSocket, Option<UdpSocket>), Error> {
    let join = |port| {
        let group = Group(SocketAddrV4::new(info.group, port));
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

/// Writes the SDP where `--sdp` says, or to a temporary file; returns its path.
fn write_sdp(args: &Args) -> Result<PathBuf, Error> {
    let path = args.sdp.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("edm-cast-{}-{}.sdp", args.name, std::process::id()))
    });
    std::fs::write(&path, sdp(&args.name, args.port)).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Starts ffplay or VLC on the SDP, or says how to.
fn start_player(sdp_path: &Path) -> Option<Child> {
    match find_player(sdp_path) {
        Some((child, cmd)) => {
            eprintln!("watch: playing with: {cmd}");
            Some(child)
        }
        None => {
            eprintln!(
                "watch: no ffplay or vlc found; open the SDP yourself, e.g.\n  ffplay -protocol_whitelist file,udp,rtp -fflags nobuffer -flags low_delay -i {}",
                sdp_path.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_names_the_port_and_h264() {
        let s = sdp("pi", 6004);
        assert!(s.contains("m=video 6004 RTP/AVP 96\r\n"));
        assert!(s.contains("a=rtpmap:96 H264/90000"));
        assert!(s.contains("packetization-mode=1"));
    }
}
