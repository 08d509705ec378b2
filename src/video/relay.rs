//! `edm-cast video`: relays named H.264 sources as RTP on multicast, with RaptorQ repair, while
//! someone watches. The protocol pieces are in `edm_cast_proto::video`; this is sockets, child
//! processes and the clock. Each channel's state, viewers and bit rate go on a [`Board`] every
//! second (`--http`), and on the terminal when they change.

use super::channel::{Channel, SILENT_AFTER};
use super::sap::{SAP_EVERY, Sap};
use super::sources::{AudioIn, Feed, FeedTx, Ingest, Listen, load_config, split_named};
use crate::cli::seconds;
use crate::error::Error;
use crate::keys;
use crate::net::{self, Group};
use crate::rt::{self, Shutdown};
use crate::status::{Board, VideoStatus};
use crate::web::{self, Web};
use clap::Parser;
use edm_cast_proto::Destination;
use edm_cast_proto::video::channel::{
    ANNOUNCE_EVERY, LeaseConfig, LeaseEvent, Leases, MAX_DESIGN_LOSS, RepairSizing,
};
use edm_cast_proto::video::fec::{FecConfig, FecEncoder};
use edm_cast_proto::video::ingest::{Admission, SenderFilter};
use edm_cast_proto::video::rtcp::{SenderReport, ntp_time};
use edm_cast_proto::video::rtp::CLOCK_RATE;
use edm_cast_proto::video::wire::MAX_CHANNEL_NAME;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Where channels are announced when `--group` names no port.
pub const ANNOUNCE_PORT: u16 = 5010;
/// Every channel sends RTP here, each on its own group address.
pub const MEDIA_PORT: u16 = 5004;
/// Every channel sends REPAIR here, on the same group address as its RTP.
pub const REPAIR_PORT: u16 = 5006;
/// A channel with audio sends its audio RTP here (and the RTCP of both tracks to the next ports:
/// 5005 and 5009).
pub const AUDIO_PORT: u16 = 5008;
/// What a name given to `--from` without a `--source` resolves to (rpicam-vid's `-o udp://`).
pub const DEFAULT_SOURCE: &str = "udp://:5000";

/// A video group: `239.255.1.1` or `239.255.1.1:PORT`, `ff15::1` or `[ff15::1]:PORT` (the
/// announce port, 5010 by default).
pub fn parse_group(s: &str) -> Result<Group, String> {
    match s.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, ANNOUNCE_PORT).to_string().parse(),
        Err(_) => s.parse(),
    }
}

#[derive(Parser, Debug)]
pub struct Args {
    /// Source names to offer as channels (repeat for several). A name that neither --source nor
    /// --config defines is raw H.264 on udp://:5000 (what `rpicam-vid --inline -o udp://SERVER:5000`
    /// sends).
    #[arg(long = "from", value_name = "NAME")]
    from: Vec<String>,
    /// A TOML file of sources, one table per name: `[pi]` with `url = "udp://:5000"` and optionally
    /// `run_on_demand = "COMMAND"`. Without --from, every source in it is offered; flags override it.
    /// Keys before the tables are options, as every command's --config (`group = "..."`).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Where NAME comes from: udp://[ADDR]:PORT (raw H.264 Annex B), rtp://[ADDR]:PORT (RTP H.264),
    /// or rtsp://HOST[:PORT]/PATH (pulled while someone watches, e.g. MediaMTX's rpiCamera, with
    /// its AAC or Opus track). A pushed source's audio: ?audio=PORT&aac=CONFIG (the hex
    /// AudioSpecificConfig of its SDP) or ?audio=PORT&opus.
    #[arg(long = "source", value_name = "NAME=URL")]
    sources: Vec<String>,
    /// A shell command started when NAME's first viewer comes and stopped (SIGTERM to its process
    /// group) when relaying stops, like MediaMTX's runOnDemand.
    #[arg(long = "run-on-demand", value_name = "NAME=COMMAND")]
    on_demand: Vec<String>,
    /// Announce group (channel i is sent to the next address + i, ports 5004 RTP and 5006 repair).
    #[arg(long, default_value = "239.255.1.1:5010", value_parser = parse_group)]
    group: Group,
    /// Interface (name or address) to send on.
    #[arg(long)]
    iface: Option<String>,
    /// Multicast TTL (1: this LAN only).
    #[arg(long, default_value = "1", value_parser = crate::cli::ttl)]
    ttl: u32,
    /// Seconds a channel keeps relaying after its last viewer left or its lease lapsed.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    grace: Duration,
    /// Send no RaptorQ repair packets.
    #[arg(long)]
    no_fec: bool,
    /// Source RTP packets per FEC window (at most 64; a window also closes after 100 ms).
    #[arg(long, default_value_t = FecConfig::default().window_packets)]
    fec_window: u16,
    /// Repair each window for this much random loss per viewer until the viewers report theirs
    /// (then for the worst reported, at least 1%): enough repair packets that a window fails at
    /// most once in 10,000 (proto/VIDEO.md has the table).
    #[arg(long, value_name = "PERCENT", default_value_t = FecConfig::default().design_loss_percent,
          value_parser = clap::value_parser!(u16).range(0..=30))]
    fec_loss: u16,
    /// The most loss repair is sized for, whatever viewers report (a viewer claiming more gets no
    /// more repair).
    #[arg(long, value_name = "PERCENT", default_value_t = (MAX_DESIGN_LOSS * 100.0) as u16,
          value_parser = clap::value_parser!(u16).range(0..=30))]
    fec_loss_max: u16,
    /// Size repair for --fec-loss always, not for what the viewers report.
    #[arg(long)]
    fec_fixed: bool,
    /// Instead of --fec-loss: repair packets per window in percent of its source packets.
    #[arg(long, value_name = "PERCENT", conflicts_with_all = ["fec_loss", "fec_loss_max", "fec_fixed"])]
    fec_repair: Option<u16>,
    /// On exit, print relay latency (ingest datagram in -> RTP packet out), FEC overhead and the
    /// loss the repair was sized for from the viewers' reports.
    #[arg(long)]
    stats: bool,
    /// Announce every channel with SAP (RFC 2974) on 224.2.127.254:9875 every 5 s (TTL as
    /// --ttl), with its full SDP, so SAP listeners (VLC's discovery) list it; deleted on exit.
    /// A player found this way takes no lease: pair with --always-on.
    #[arg(long)]
    sap: bool,
    /// Relay NAME from the start and for good, without a viewer's lease (for players that know no
    /// edm-cast, e.g. found by --sap). Repeat for several.
    #[arg(long = "always-on", value_name = "NAME")]
    always_on: Vec<String>,
    /// A line describing NAME, in its SAP announcement (the SDP's i=).
    #[arg(long = "description", value_name = "NAME=TEXT")]
    descriptions: Vec<String>,
    #[command(flatten)]
    signing: keys::Signing,
    #[command(flatten)]
    web: Web,
}

/// How often the channels' status is published (and their bit rate measured).
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Relays the channels until Ctrl-C or SIGTERM; prints `--stats` at the end, even after an error.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let iface = net::interface_addr(args.iface.as_deref(), args.group)?;
    let epoch = Instant::now();
    let channels = channels(&args, epoch)?;
    let signer = keys::signer(&args.signing)?;
    match &signer {
        Some(s) => eprintln!(
            "video: signing announcements and replies with key {}",
            s.key.public().fingerprint()
        ),
        None => eprintln!(
            "video: not signing (--key): viewers cannot tell this relay from a rogue one on the same group"
        ),
    }
    let unreported = args.fec_loss as f64 / 100.0;
    let config = LeaseConfig {
        grace: args.grace,
        signer,
        repair: match args.fec_fixed {
            true => RepairSizing::fixed(unreported),
            false => RepairSizing::adaptive(unreported, args.fec_loss_max as f64 / 100.0),
        },
        ..LeaseConfig::default()
    };
    let out = net::sender_socket(args.group, iface, args.ttl, 0)?;
    let board = Board::new("video", rt::hostname(), None);
    web::start(&args.web, &board)?;
    let runtime = rt::runtime()?;
    // Sockets and tasks belong to the runtime, so the relay is made inside it.
    let _inside = runtime.enter();
    let sap = match (args.sap, iface.ip) {
        (true, IpAddr::V4(ip)) => Some(Sap::open(ip, args.ttl, channels.len())?),
        (true, IpAddr::V6(_)) => {
            return Err(Error::Usage(
                "--sap announces on SAP's IPv4 group only: leave it out with an IPv6 --group"
                    .into(),
            ));
        }
        (false, _) => None,
    };
    let mut relay = Relay::new(
        net::register(out)?,
        args.group,
        config,
        channels,
        board,
        epoch,
    );
    relay.sap = sap;
    for name in &args.always_on {
        relay.leases.always_on(name);
    }
    if let Some(sap) = &relay.sap {
        let lease_only: Vec<&str> = relay
            .channels
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| !args.always_on.iter().any(|a| a == n))
            .collect();
        eprintln!(
            "video: SAP: announcing every channel on {} every {} s from {}{}",
            edm_cast_proto::video::sap::SAP_GROUP,
            SAP_EVERY.as_secs(),
            sap.origin(),
            match lease_only.is_empty() {
                true => String::new(),
                false => format!(
                    "; {} play only while a watch holds a lease (--always-on NAME for SAP players)",
                    lease_only.join(", ")
                ),
            }
        );
    }
    let result = runtime.block_on(relay.run());
    if let Some(sap) = &mut relay.sap {
        runtime.block_on(sap.delete());
    }
    for c in &mut relay.channels {
        c.stop_source();
    }
    if args.stats {
        relay.print_stats();
    }
    // The relay ends on a signal: `--http-linger` keeps its last figures up until another one.
    if let Some(linger) = args.web.http_linger {
        eprintln!(
            "video: stopped; the dashboard stays up {} s more (Ctrl-C ends it)",
            linger.as_secs()
        );
        runtime.block_on(async {
            let mut shutdown = Shutdown::new()?;
            web::linger(&args.web, &mut shutdown).await;
            Ok::<_, Error>(())
        })?;
    }
    // Stopped by a signal: 130 or 143 with its line, as every command (README, "Exit codes").
    match result? {
        Some(stop) => Err(Error::Interrupted(stop)),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The channels to offer, in `--from` order (or the sources file's), with where each comes from.
fn channels(args: &Args, epoch: Instant) -> Result<Vec<Channel>, Error> {
    let config = match &args.config {
        Some(path) => load_config(path)?,
        None => Default::default(),
    };
    let from: Vec<String> = if args.from.is_empty() {
        config.keys().cloned().collect()
    } else {
        args.from.clone()
    };
    if from.is_empty() {
        return Err(Error::Usage(
            "name a source to offer: --from NAME (or --config FILE)".into(),
        ));
    }
    let mut defined = HashMap::new();
    for s in &args.sources {
        let (name, url) = split_named(s, "--source")?;
        let ingest = url.parse::<Ingest>().map_err(Error::Usage)?;
        let audio = AudioIn::from_url(&url, AUDIO_PORT).map_err(Error::Usage)?;
        defined.insert(name, (ingest, audio));
    }
    let mut commands = HashMap::new();
    for s in &args.on_demand {
        let (name, cmd) = split_named(s, "--run-on-demand")?;
        commands.insert(name, cmd);
    }
    let fec = (!args.no_fec).then_some(FecConfig {
        window_packets: args.fec_window,
        design_loss_percent: args.fec_loss,
        repair_percent: args.fec_repair,
        ..FecConfig::default()
    });
    let mut channels = Vec::new();
    for (i, name) in from.iter().enumerate() {
        if name.is_empty() || name.len() > MAX_CHANNEL_NAME || from[..i].contains(name) {
            return Err(Error::Usage(format!(
                "--from '{name}': names must be 1 to {MAX_CHANNEL_NAME} bytes and distinct"
            )));
        }
        let group = args.group.offset(1 + i as u32, args.group.0.port()).0.ip();
        if !group.is_multicast() {
            return Err(Error::Usage(format!(
                "--group leaves no room for channel {name}"
            )));
        }
        let configured = config.get(name);
        let url = configured.and_then(|c| c.url.as_deref());
        let (ingest, audio) = match defined.remove(name) {
            Some(i) => i,
            None => {
                let url = url.unwrap_or(DEFAULT_SOURCE);
                let source = |e| Error::Usage(format!("source '{name}': {e}"));
                (
                    url.parse().map_err(source)?,
                    AudioIn::from_url(url, AUDIO_PORT).map_err(source)?,
                )
            }
        };
        let on_demand = commands
            .remove(name)
            .or_else(|| configured.and_then(|c| c.run_on_demand.clone()));
        channels.push(Channel::new(
            name.clone(),
            group,
            ingest,
            audio,
            on_demand,
            fec,
            epoch,
        ));
    }
    for s in &args.descriptions {
        let (name, text) = split_named(s, "--description")?;
        match channels.iter_mut().find(|c| c.name == name) {
            Some(c) => c.description = Some(text),
            None => return Err(not_offered(&name, "--description")),
        }
    }
    if let Some(name) = args.always_on.iter().find(|n| !from.contains(n)) {
        return Err(not_offered(name, "--always-on"));
    }
    if let Some(name) = defined.keys().chain(commands.keys()).next() {
        return Err(Error::Usage(format!(
            "'{name}' has a --source or --run-on-demand but is not offered with --from"
        )));
    }
    Ok(channels)
}

fn not_offered(name: &str, flag: &str) -> Error {
    Error::Usage(format!(
        "'{name}' has a {flag} but is not offered with --from"
    ))
}

/// 90 kHz RTP time of `t` on the relay's clock (its sender reports' RTP time).
fn rtp_time(epoch: Instant, t: Instant) -> u32 {
    (t.saturating_duration_since(epoch).as_micros() * CLOCK_RATE as u128 / 1_000_000) as u32
}

/// The relay while it runs: the lease table (the control protocol), the channels, and the socket
/// everything goes out of.
struct Relay {
    /// Sends RTP, REPAIR and control datagrams, and receives REQUEST and LEAVE: its address is
    /// the relay's control address, the source of every ANNOUNCE.
    out: UdpSocket,
    group: Group,
    /// RTP time 0.
    epoch: Instant,
    leases: Leases,
    channels: Vec<Channel>,
    /// Ingest tasks send what arrives here, tagged with the channel's index.
    feeds: FeedTx,
    fed: mpsc::Receiver<(usize, Instant, Feed)>,
    /// The control datagram being sent.
    control: Vec<u8>,
    /// Where the channels' status goes, and what was last shown of each.
    board: Board,
    shown: Vec<Shown>,
    /// `--sap`'s announcements.
    sap: Option<Sap>,
}

/// What the terminal and the board last had of a channel.
struct Shown {
    viewers: usize,
    state: &'static str,
    /// Bytes sent by then, for the bit rate.
    bytes: u64,
    at: Instant,
    bitrate_bps: f64,
    /// The least and most loss the channel's repair was sized for so far, for `--stats`.
    design: Option<(f64, f64)>,
}

impl Relay {
    fn new(
        out: UdpSocket,
        group: Group,
        config: LeaseConfig,
        channels: Vec<Channel>,
        board: Board,
        epoch: Instant,
    ) -> Self {
        let now = Instant::now();
        let (feeds, fed) = mpsc::channel(4096);
        let shown = channels
            .iter()
            .map(|_| Shown {
                viewers: 0,
                state: "idle",
                bytes: 0,
                at: now,
                bitrate_bps: 0.0,
                design: None,
            })
            .collect();
        Relay {
            board,
            shown,
            out,
            group,
            epoch,
            leases: Leases::new(channels.iter().map(Channel::info), config, now),
            channels,
            feeds,
            fed,
            control: Vec::with_capacity(1500),
            sap: None,
        }
    }

    /// Relays until Ctrl-C or SIGTERM (which it returns), or until every source's feed has ended.
    async fn run(&mut self) -> Result<Option<rt::Stop>, Error> {
        self.listen()?;
        let mut shutdown = Shutdown::new()?;
        eprintln!(
            "video: offering {} on {} ({})",
            self.channels
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            self.group,
            self.channels
                .iter()
                .map(|c| format!("{}: {}", c.name, c.ingest))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut inbox = vec![0u8; 2048];
        let mut beat = tokio::time::interval(PUBLISH_EVERY);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sap_round = tokio::time::interval(SAP_EVERY);
        sap_round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.send_control().await;
            let wake = self.poll_timeout();
            tokio::select! {
                stop = shutdown.recv() => return Ok(Some(stop)),
                got = self.fed.recv() => {
                    let Some((i, arrived, feed)) = got else { return Ok(None) };
                    self.on_feed(i, arrived, feed).await;
                }
                got = self.out.recv_from(&mut inbox) => {
                    if let Ok((n, from)) = got {
                        // A viewer's FEC report is bounded by what its channel sent.
                        for c in &self.channels {
                            self.leases.set_sent(&c.name, c.stats.rtp_packets());
                        }
                        self.leases.handle_datagram(Instant::now(), from, &inbox[..n]);
                        self.size_repair();
                        self.show(Instant::now(), false);
                    }
                }
                _ = beat.tick() => {
                    self.show(Instant::now(), true);
                    self.send_sender_reports().await;
                }
                _ = sap_round.tick(), if self.sap.is_some() => {
                    if let Some(sap) = &mut self.sap {
                        sap.announce(&self.channels).await;
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.on_timeout(Instant::now()).await;
        }
    }

    /// Starts a task per UDP ingest socket, video and audio (RTSP sources are pulled only while
    /// live). Each task drops what its channel's `SenderFilter` refuses before it costs the relay
    /// loop anything; a source's audio and video share the filter (one camera sends both).
    fn listen(&self) -> Result<(), Error> {
        for (i, c) in self.channels.iter().enumerate() {
            let Some(listen) = c.ingest.listen() else {
                continue;
            };
            if let Some(warning) = c.ingest.warning(&c.name) {
                eprintln!("{warning}");
            }
            self.spawn_ingest(i, c, listen, listen.addr, Feed::Datagram)?;
            if let Some(audio) = &c.audio_in {
                let a = &audio.info;
                eprintln!(
                    "video: {}: audio {:?} {} Hz, {} channels, as RTP on {}, relayed to {}",
                    c.name,
                    a.codec,
                    a.clock_rate,
                    a.channels,
                    audio.addr,
                    c.audio_media()
                );
                self.spawn_ingest(i, c, listen, audio.addr, Feed::Audio)?;
            }
        }
        Ok(())
    }

    /// A task reading channel `i`'s datagrams on `addr`, each fed to the relay loop as `feed`.
    fn spawn_ingest(
        &self,
        i: usize,
        c: &Channel,
        listen: Listen,
        addr: SocketAddr,
        feed: fn(Vec<u8>) -> Feed,
    ) -> Result<(), Error> {
        let socket = std::net::UdpSocket::bind(addr).map_err(|e| Error::Socket {
            what: format!("{}: cannot listen on {addr}", c.name),
            source: e,
        })?;
        socket.set_nonblocking(true).map_err(|e| Error::Socket {
            what: "nonblocking".into(),
            source: e,
        })?;
        let socket = net::register(socket)?;
        let feeds = self.feeds.clone();
        let (name, filter) = (c.name.clone(), c.senders.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let now = Instant::now();
                let admission = filter.lock().expect("not poisoned").admit(now, from.ip());
                if !admitted(&name, &listen, from, admission, &filter) {
                    continue;
                }
                if feeds.send((i, now, feed(buf[..n].to_vec()))).await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// When something is due: a window to close, an ANNOUNCE, a lease or grace period to end.
    fn poll_timeout(&self) -> Instant {
        let windows = self.channels.iter();
        windows
            .flat_map(|c| {
                [
                    c.fec.as_ref(),
                    c.audio.as_ref().and_then(|a| a.fec.as_ref()),
                ]
            })
            .filter_map(|fec| fec.and_then(FecEncoder::poll_timeout))
            .chain(self.leases.poll_timeout())
            .min()
            .unwrap_or_else(|| Instant::now() + ANNOUNCE_EVERY)
    }

    /// Sends the REPLYs and ANNOUNCE the lease table has.
    async fn send_control(&mut self) {
        while let Some(to) = self.leases.poll_transmit(Instant::now(), &mut self.control) {
            let to = match to {
                Destination::Group => self.group.0,
                Destination::Unicast(viewer) => viewer,
            };
            // Best effort: ANNOUNCE repeats every second, and a viewer repeats its REQUEST.
            let _ = self.out.send_to(&self.control, to).await;
        }
    }

    async fn on_feed(&mut self, i: usize, arrived: Instant, feed: Feed) {
        match feed {
            Feed::Datagram(data) => self.on_ingest(i, arrived, &data).await,
            Feed::ParameterSet(nal) => self.channels[i].packetizer.observe(&nal),
            Feed::Audio(data) => self.on_audio(i, arrived, &data).await,
            Feed::AudioTrack(info) => {
                let c = &mut self.channels[i];
                if c.set_audio(info.clone()) {
                    match &info {
                        Some(a) => eprintln!(
                            "video: {}: audio {:?} {} Hz, {} channels, relayed to {}",
                            c.name,
                            a.codec,
                            a.clock_rate,
                            a.channels,
                            c.audio_media()
                        ),
                        None => eprintln!("video: {}: the source has no AAC or Opus audio", c.name),
                    }
                    self.leases.set_audio(&c.name, info);
                }
            }
        }
    }

    /// Relays one audio RTP packet of channel `i`, if the channel is live and has audio.
    async fn on_audio(&mut self, i: usize, arrived: Instant, data: &[u8]) {
        let c = &mut self.channels[i];
        let to = c.audio_media();
        let Some(a) = c.audio.as_mut().filter(|_| self.leases.is_live(&c.name)) else {
            return;
        };
        if !a.stream.relay(arrived, data, &mut a.packet) {
            return;
        }
        let _ = self.out.send_to(&a.packet, to).await;
        a.bytes += a.packet.len() as u64;
        if let Some(fec) = &mut a.fec {
            fec.push(Instant::now(), &a.packet);
        }
        send_repairs(&self.out, c).await;
    }

    /// Every second, an RTCP sender report for each track of each live channel with audio, so
    /// players line the tracks up (lip sync). A channel without audio needs none and sends none.
    async fn send_sender_reports(&mut self) {
        let now = Instant::now();
        let since_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let ntp = ntp_time(since_unix);
        let mut report = Vec::with_capacity(64);
        for c in &self.channels {
            let Some(a) = c.audio.as_ref().filter(|_| self.leases.is_live(&c.name)) else {
                continue;
            };
            let (_, octets) = c.stats.rtp_bytes();
            let video = SenderReport {
                ssrc: c.video_ssrc,
                ntp,
                rtp_time: rtp_time(self.epoch, now),
                packets: c.stats.rtp_packets() as u32,
                octets: octets as u32,
            };
            for (sr, to) in [
                (video, c.rtcp(false)),
                (a.stream.sender_report(now, ntp), c.rtcp(true)),
            ] {
                report.clear();
                sr.write(&mut report);
                let _ = self.out.send_to(&report, to).await;
            }
        }
    }

    /// Relays what one ingest datagram of channel `i` completes, if the channel is live.
    async fn on_ingest(&mut self, i: usize, arrived: Instant, data: &[u8]) {
        let c = &mut self.channels[i];
        let live = self.leases.is_live(&c.name);
        for nal in c.nal_units(arrived, data) {
            if !live {
                // Keeps the parameter sets for the first IDR after a start.
                c.packetizer.observe(&nal.data);
                continue;
            }
            c.packetizer.push(&nal.data, nal.timestamp, nal.end_of_au);
            while let Some(p) = c.packetizer.poll_packet() {
                let _ = self.out.send_to(&p, c.media()).await;
                c.stats.rtp_sent(p.len(), nal.arrived);
                if let Some(fec) = &mut c.fec {
                    fec.push(Instant::now(), &p);
                }
                send_repairs(&self.out, c).await;
            }
        }
    }

    /// Ends leases and grace periods, starts and stops channels, closes FEC windows.
    async fn on_timeout(&mut self, now: Instant) {
        self.leases.handle_timeout(now);
        while let Some(e) = self.leases.poll_event() {
            self.on_lease_event(e);
        }
        self.size_repair();
        for c in &mut self.channels {
            if let Some(fec) = &mut c.fec {
                fec.handle_timeout(now);
            }
            if let Some(fec) = c.audio.as_mut().and_then(|a| a.fec.as_mut()) {
                fec.handle_timeout(now);
            }
            send_repairs(&self.out, c).await;
        }
    }

    /// Says on the terminal what changed (viewers; a source gone silent or back) and publishes
    /// the channels: at every `beat` (which measures the bit rate), or when the viewers changed.
    fn show(&mut self, now: Instant, beat: bool) {
        let mut changed = false;
        for (c, shown) in self.channels.iter_mut().zip(&mut self.shown) {
            let viewers = self.leases.viewers(&c.name);
            if viewers != shown.viewers {
                let s = if viewers == 1 { "" } else { "s" };
                eprintln!("video: {}: {viewers} viewer{s}", c.name);
                shown.viewers = viewers;
                changed = true;
            }
            if !beat {
                continue;
            }
            let state = c.state(self.leases.is_live(&c.name), now);
            if state != shown.state {
                // Starting and stopping say so themselves.
                match state {
                    "source silent" => {
                        c.stats.went_silent();
                        eprintln!(
                            "video: {}: no video from the source for {} s",
                            c.name,
                            SILENT_AFTER.as_secs()
                        );
                    }
                    "relaying" => eprintln!("video: {}: relaying", c.name),
                    _ => {}
                }
                shown.state = state;
            }
            let bytes = c.stats.bytes() + c.audio.as_ref().map_or(0, |a| a.bytes + a.repair_bytes);
            let secs = now.saturating_duration_since(shown.at).as_secs_f64();
            if secs > 0.0 {
                shown.bitrate_bps = (bytes - shown.bytes) as f64 * 8.0 / secs;
            }
            (shown.bytes, shown.at) = (bytes, now);
        }
        if !(beat || changed) {
            return;
        }
        let channels = self
            .channels
            .iter()
            .zip(&self.shown)
            .map(|(c, shown)| {
                let state = c.state(self.leases.is_live(&c.name), now);
                let fec = self.leases.fec(&c.name);
                c.status(state, shown.viewers, shown.bitrate_bps, fec)
            })
            .collect();
        self.board.set_video(VideoStatus { channels });
    }

    fn on_lease_event(&mut self, e: LeaseEvent) {
        let (LeaseEvent::Start(name) | LeaseEvent::Stop(name)) = &e;
        let Some(i) = self.channels.iter().position(|c| &c.name == name) else {
            return;
        };
        match e {
            LeaseEvent::Start(_) => self.channels[i].start(i, &self.feeds),
            LeaseEvent::Stop(_) => self.channels[i].stop(),
        }
    }

    /// Sizes each channel's repair for the loss its viewers report (a lease taken, renewed or
    /// ended changes it), for the windows that close from now on.
    fn size_repair(&mut self) {
        for (c, shown) in self.channels.iter_mut().zip(&mut self.shown) {
            let design = self.leases.design_loss(&c.name);
            // The audio track goes to the same viewers over the same links: it loses as much.
            if let Some(fec) = c.audio.as_mut().and_then(|a| a.fec.as_mut()) {
                fec.set_design_loss(design);
            }
            let Some(fec) = &mut c.fec else { continue };
            fec.set_design_loss(design);
            if let Some(d) = fec.design_loss() {
                let (lo, hi) = shown.design.unwrap_or((d, d));
                shown.design = Some((lo.min(d), hi.max(d)));
            }
        }
    }

    /// The `--stats` lines: one per channel (and how its repair was sized), and the control
    /// socket's.
    fn print_stats(&mut self) {
        for (c, shown) in self.channels.iter_mut().zip(&self.shown) {
            c.print_stats();
            let (Some(fec), Some((lo, hi))) = (&c.fec, shown.design) else {
                continue;
            };
            println!(
                "{}: repair sized for {:.1}% to {:.1}% loss over the run, {:.1}% at the end",
                c.name,
                100.0 * lo,
                100.0 * hi,
                100.0 * fec.design_loss().unwrap_or(hi)
            );
        }
        let d = self.leases.dropped();
        println!(
            "control: {} datagrams dropped ({} malformed or foreign, {} REQUESTs over an address's \
             rate, {} over the lease table's bounds, {} renewals or LEAVEs from another address); \
             {} FEC reports not taken (backwards, or more than the channel sent)",
            d.total(),
            d.foreign + d.version + d.malformed + d.unexpected,
            d.rate_limited,
            d.refused,
            d.wrong_source,
            d.out_of_range
        );
    }
}

/// Whether an ingest datagram from `from` goes on, saying so when a sender is taken and at the
/// first datagram refused while it sends.
fn admitted(
    name: &str,
    listen: &Listen,
    from: SocketAddr,
    admission: Admission,
    filter: &Mutex<SenderFilter>,
) -> bool {
    match admission {
        Admission::Taken => true,
        Admission::NewSender => {
            match listen.camera {
                Some(_) => eprintln!("video: {name}: the camera {} is sending", from.ip()),
                None => eprintln!(
                    "video: {name}: taking video from {} (the first sender; others are refused while it sends)",
                    from.ip()
                ),
            }
            true
        }
        Admission::Refused { first } => {
            if first {
                let sender = filter.lock().expect("not poisoned").sender();
                eprintln!(
                    "video: {name}: refusing video from {}: the channel takes {} (counted in --stats)",
                    from.ip(),
                    sender.map_or_else(|| "its camera".into(), |s| s.to_string())
                );
            }
            false
        }
    }
}

/// Sends the REPAIR datagrams channel `c`'s FEC encoders (video and audio) have ready.
async fn send_repairs(out: &UdpSocket, c: &mut Channel) {
    let to = c.repair();
    if let Some(fec) = &mut c.fec {
        while let Some(r) = fec.poll_repair() {
            let _ = out.send_to(&r, to).await;
            c.stats.repair_sent(r.len());
        }
    }
    if let Some(a) = &mut c.audio
        && let Some(fec) = &mut a.fec
    {
        while let Some(r) = fec.poll_repair() {
            let _ = out.send_to(&r, to).await;
            a.repair_packets += 1;
            a.repair_bytes += r.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_default_is_the_specs() {
        let args = Args::try_parse_from(["video", "--from", "pi"]).unwrap();
        assert_eq!(args.grace, edm_cast_proto::video::channel::DEFAULT_GRACE);
    }

    #[test]
    fn groups_take_the_announce_port_by_default() {
        assert_eq!(parse_group("239.255.1.1").unwrap().0.port(), ANNOUNCE_PORT);
        assert_eq!(parse_group("239.255.1.1:6000").unwrap().0.port(), 6000);
        assert_eq!(parse_group("ff15::1:0").unwrap().0.port(), ANNOUNCE_PORT);
        assert_eq!(parse_group("[ff15::1:0]:6000").unwrap().0.port(), 6000);
        assert!(
            parse_group("ff02::1")
                .unwrap_err()
                .contains("permanently assigned")
        );
    }
}
