//! `edm-cast video`: relays named H.264 sources as RTP on multicast, with RaptorQ repair, while
//! someone watches. The protocol pieces are in `edm_cast_proto::video`; this is sockets, child
//! processes and the clock.

use super::rtsp;
use super::sources::{Feed, FeedTx, Ingest, load_config, split_named};
use crate::cli::seconds;
use crate::error::Error;
use crate::net::{self, Group};
use crate::rt::{self, Shutdown};
use clap::Parser;
use edm_cast_proto::video::channel::{DEFAULT_LEASE, LeaseEvent, Leases};
use edm_cast_proto::video::fec::{FecConfig, FecEncoder};
use edm_cast_proto::video::h264::{AnnexB, Depacketizer, Packetizer};
use edm_cast_proto::video::rtp::{CLOCK_RATE, RtpHeader};
use edm_cast_proto::video::wire::{ChannelInfo, Control, MAX_CHANNEL_NAME, Refusal};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Where channels are announced when `--group` names no port.
pub const ANNOUNCE_PORT: u16 = 5010;
/// Every channel sends RTP here and repair to `REPAIR_PORT`, each on its own group address.
pub const MEDIA_PORT: u16 = 5004;
pub const REPAIR_PORT: u16 = 5006;
/// What a name given to `--from` without a `--source` resolves to (rpicam-vid's `-o udp://`).
pub const DEFAULT_SOURCE: &str = "udp://:5000";
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// A video group: `239.255.1.1` or `239.255.1.1:PORT` (the announce port, 5010 by default).
pub fn parse_group(s: &str) -> Result<Group, String> {
    if s.contains(':') {
        s.parse()
    } else {
        format!("{s}:{ANNOUNCE_PORT}").parse()
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
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Where NAME comes from: udp://[ADDR]:PORT (raw H.264 Annex B), rtp://[ADDR]:PORT (RTP H.264),
    /// or rtsp://HOST[:PORT]/PATH (pulled while someone watches, e.g. MediaMTX's rpiCamera).
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
    #[arg(long, default_value_t = 1)]
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
    /// Repair packets per window, in percent of its source packets.
    #[arg(long, default_value_t = FecConfig::default().repair_percent)]
    fec_repair: u16,
    /// On exit, print relay latency (ingest datagram in -> RTP packet out) and FEC overhead.
    #[arg(long)]
    stats: bool,
}

/// One relayed source.
struct Channel {
    info: ChannelInfo,
    ingest: Ingest,
    on_demand: Option<String>,
    child: Option<Child>,
    puller: Option<tokio::task::JoinHandle<()>>,
    annexb: AnnexB,
    depacketizer: Depacketizer,
    packetizer: Packetizer,
    fec: Option<FecEncoder>,
    stats: ChannelStats,
}

#[derive(Default)]
struct ChannelStats {
    datagrams: u64,
    malformed: u64,
    rtp_packets: u64,
    rtp_bytes: u64,
    repair_packets: u64,
    repair_bytes: u64,
    /// Microseconds from an ingest datagram's arrival to each RTP packet made from it.
    latency_us: Vec<u32>,
    starts: u64,
}

impl Channel {
    fn start_source(&mut self) {
        let Some(cmd) = &self.on_demand else { return };
        use std::os::unix::process::CommandExt;
        match std::process::Command::new("sh")
            .args(["-c", cmd])
            .process_group(0)
            .stdin(std::process::Stdio::null())
            // Our stdout carries only the --stats figures.
            .stdout(std::io::stderr())
            .spawn()
        {
            Ok(c) => self.child = Some(c),
            Err(e) => eprintln!("video: {}: cannot start '{cmd}': {e}", self.info.name),
        }
    }

    fn stop_source(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the process group we created for this child.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGTERM) };
            // Reaped off the event loop: a source may take a moment to exit.
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(5);
                while Instant::now() < end {
                    if matches!(c.try_wait(), Ok(Some(_))) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                // SAFETY: as above; the group ignored SIGTERM.
                unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
                let _ = c.wait();
            });
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let iface = net::interface_addr(args.iface.as_deref())?;
    let grace = args.grace;
    let fec_config = FecConfig {
        window_packets: args.fec_window,
        repair_percent: args.fec_repair,
        ..FecConfig::default()
    };
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
    let mut defined = std::collections::HashMap::new();
    for s in &args.sources {
        let (name, url) = split_named(s, "--source")?;
        let ingest = url.parse::<Ingest>().map_err(Error::Usage)?;
        defined.insert(name, ingest);
    }
    let mut commands = std::collections::HashMap::new();
    for s in &args.on_demand {
        let (name, cmd) = split_named(s, "--run-on-demand")?;
        commands.insert(name, cmd);
    }
    let base = u32::from(*args.group.0.ip());
    let mut channels = Vec::new();
    for (i, name) in from.iter().enumerate() {
        if name.is_empty() || name.len() > MAX_CHANNEL_NAME || from[..i].contains(name) {
            return Err(Error::Usage(format!(
                "--from '{name}': names must be 1 to {MAX_CHANNEL_NAME} bytes and distinct"
            )));
        }
        let group = Ipv4Addr::from(base.wrapping_add(1 + i as u32));
        if !group.is_multicast() {
            return Err(Error::Usage(format!(
                "--group leaves no room for channel {name}"
            )));
        }
        let configured = config.get(name);
        let url = configured.and_then(|c| c.url.as_deref());
        let ingest = match defined.remove(name) {
            Some(i) => i,
            None => url
                .unwrap_or(DEFAULT_SOURCE)
                .parse()
                .map_err(|e| Error::Usage(format!("source '{name}': {e}")))?,
        };
        let on_demand = commands
            .remove(name)
            .or_else(|| configured.and_then(|c| c.run_on_demand.clone()));
        channels.push(Channel {
            info: ChannelInfo {
                name: name.clone(),
                live: false,
                group,
                media_port: MEDIA_PORT,
                repair_port: if args.no_fec { 0 } else { REPAIR_PORT },
            },
            ingest,
            on_demand,
            child: None,
            puller: None,
            annexb: AnnexB::default(),
            depacketizer: Depacketizer::default(),
            packetizer: Packetizer::new(rt::random_u64() as u32, rt::random_u64() as u16),
            fec: (!args.no_fec).then(|| FecEncoder::new(fec_config)),
            stats: ChannelStats::default(),
        });
    }
    if let Some(name) = defined.keys().chain(commands.keys()).next() {
        return Err(Error::Usage(format!(
            "'{name}' has a --source or --run-on-demand but is not offered with --from"
        )));
    }
    let out = net::sender_socket(args.group, iface, args.ttl, 0)?;
    let runtime = rt::runtime()?;
    let mut control_dropped = 0;
    let result = runtime.block_on(relay(
        out,
        args.group,
        grace,
        &mut channels,
        &mut control_dropped,
    ));
    for c in &mut channels {
        c.stop_source();
    }
    if args.stats {
        for c in &mut channels {
            print_stats(c);
        }
        println!("control: {control_dropped} malformed or foreign datagrams dropped");
    }
    result.map(|_| ExitCode::SUCCESS)
}

fn print_stats(c: &mut Channel) {
    let s = &mut c.stats;
    s.latency_us.sort_unstable();
    let pct = |p: f64| {
        s.latency_us
            .get(((s.latency_us.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    println!(
        "{}: {} ingest datagrams ({} malformed), {} starts; {} RTP packets ({} bytes), {} repair \
         packets ({} bytes), FEC overhead {:.1}%; relay latency p50 {:.3} ms p99 {:.3} ms",
        c.info.name,
        s.datagrams,
        // Unparsable RTP, broken fragments and oversized NAL units.
        s.malformed + c.depacketizer.dropped + c.annexb.oversized,
        s.starts,
        s.rtp_packets,
        s.rtp_bytes,
        s.repair_packets,
        s.repair_bytes,
        100.0 * s.repair_bytes as f64 / s.rtp_bytes.max(1) as f64,
        pct(0.5),
        pct(0.99),
    );
}

/// 90 kHz RTP time of `t`: arrival time, so a restarted camera continues the clock.
fn rtp_time(epoch: Instant, t: Instant) -> u32 {
    (t.saturating_duration_since(epoch).as_micros() * CLOCK_RATE as u128 / 1_000_000) as u32
}

async fn relay(
    out: std::net::UdpSocket,
    group: Group,
    grace: Duration,
    channels: &mut [Channel],
    control_dropped: &mut u64,
) -> Result<(), Error> {
    let out = net::register(out)?;
    let (tx, mut rx) = mpsc::channel::<(usize, Instant, Feed)>(4096);
    for (i, c) in channels.iter().enumerate() {
        let addr = match c.ingest {
            Ingest::AnnexB(a) | Ingest::Rtp(a) => a,
            Ingest::Rtsp(_) => continue,
        };
        let socket = std::net::UdpSocket::bind(addr).map_err(|e| Error::Socket {
            what: format!("{}: cannot listen on {addr}", c.info.name),
            source: e,
        })?;
        socket.set_nonblocking(true).map_err(|e| Error::Socket {
            what: "nonblocking".into(),
            source: e,
        })?;
        let socket = net::register(socket)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf).await {
                let feed = Feed::Datagram(buf[..n].to_vec());
                if tx.send((i, Instant::now(), feed)).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut leases = Leases::new(
        channels.iter().map(|c| c.info.name.as_str()),
        DEFAULT_LEASE,
        grace,
    );
    let epoch = Instant::now();
    let mut next_announce = epoch;
    let mut buf = vec![0u8; 2048];
    let mut shutdown = Shutdown::new()?;
    let names: Vec<&str> = channels.iter().map(|c| c.info.name.as_str()).collect();
    eprintln!(
        "video: offering {} on {group} ({})",
        names.join(", "),
        channels
            .iter()
            .map(|c| format!("{}: {}", c.info.name, c.ingest))
            .collect::<Vec<_>>()
            .join(", ")
    );
    loop {
        let now = Instant::now();
        if now >= next_announce {
            let announce = Control::Announce {
                channels: channels.iter().map(|c| c.info.clone()).collect(),
            };
            let _ = out
                .send_to(&announce.to_vec(), SocketAddr::V4(group.0))
                .await;
            next_announce = now + ANNOUNCE_EVERY;
        }
        let wake = channels
            .iter()
            .filter_map(|c| c.fec.as_ref().and_then(FecEncoder::poll_timeout))
            .chain(leases.poll_timeout())
            .fold(next_announce, Instant::min);
        tokio::select! {
            _ = shutdown.recv() => return Ok(()),
            got = rx.recv() => {
                let Some((i, arrived, feed)) = got else { return Ok(()) };
                match feed {
                    Feed::Datagram(data) => ingest(&out, epoch, &mut channels[i], arrived, &data).await,
                    Feed::ParameterSet(nal) => channels[i].packetizer.observe(&nal),
                }
            }
            got = out.recv_from(&mut buf) => {
                if let Ok((n, from)) = got {
                    control(&out, &mut leases, channels, &tx, from, &buf[..n], control_dropped).await;
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        leases.handle_timeout(now);
        while let Some(e) = leases.poll_event() {
            lease_event(channels, &tx, e);
        }
        for c in channels.iter_mut() {
            if let Some(fec) = &mut c.fec {
                fec.handle_timeout(now);
            }
            send_repairs(&out, c).await;
        }
    }
}

fn lease_event(channels: &mut [Channel], tx: &FeedTx, e: LeaseEvent) {
    let (LeaseEvent::Start(name) | LeaseEvent::Stop(name)) = &e;
    let Some(i) = channels.iter().position(|c| &c.info.name == name) else {
        return;
    };
    let c = &mut channels[i];
    match e {
        LeaseEvent::Start(_) => {
            c.info.live = true;
            c.stats.starts += 1;
            c.packetizer.reset_access_unit();
            c.start_source();
            if let Ingest::Rtsp(url) = &c.ingest {
                c.puller = Some(tokio::spawn(rtsp::pull(
                    i,
                    url.clone(),
                    name.clone(),
                    tx.clone(),
                )));
            }
            eprintln!(
                "video: {name}: started, relaying to {}:{}{}",
                c.info.group,
                c.info.media_port,
                if c.child.is_some() {
                    " (source command started)"
                } else {
                    ""
                }
            );
        }
        LeaseEvent::Stop(_) => {
            c.info.live = false;
            c.stop_source();
            // Dropping the RTSP session sends TEARDOWN.
            if let Some(p) = c.puller.take() {
                p.abort();
            }
            eprintln!("video: {name}: stopped (no viewer for the grace period)");
        }
    }
}

async fn control(
    out: &UdpSocket,
    leases: &mut Leases,
    channels: &mut [Channel],
    tx: &FeedTx,
    from: SocketAddr,
    bytes: &[u8],
    dropped: &mut u64,
) {
    let now = Instant::now();
    match Control::parse(bytes) {
        Ok(Control::Request { viewer, channel }) => {
            let granted = leases.request(now, viewer, &channel);
            while let Some(e) = leases.poll_event() {
                lease_event(channels, tx, e);
            }
            let info = channels.iter().find(|c| c.info.name == channel);
            let reply = Control::Reply {
                viewer,
                lease_ms: leases.lease().as_millis() as u32,
                result: match info {
                    Some(c) if granted => Ok(c.info.clone()),
                    _ => Err(Refusal::UnknownChannel),
                },
            };
            let _ = out.send_to(&reply.to_vec(), from).await;
        }
        Ok(Control::Leave { viewer, channel }) => leases.leave(now, viewer, &channel),
        Ok(_) => {}
        Err(e) => {
            *dropped += 1;
            tracing::debug!("control datagram from {from} dropped: {e}");
        }
    }
}

async fn ingest(out: &UdpSocket, epoch: Instant, c: &mut Channel, arrived: Instant, data: &[u8]) {
    c.stats.datagrams += 1;
    let mut nals = Vec::new();
    match c.ingest {
        Ingest::AnnexB(_) => {
            c.annexb.push(arrived, data);
            while let Some(n) = c.annexb.poll_nal() {
                nals.push((n.data, n.end_of_au, n.arrived));
            }
        }
        Ingest::Rtp(_) | Ingest::Rtsp(_) => match RtpHeader::parse(data) {
            Ok((h, payload)) => {
                c.depacketizer.push(&h, payload);
                while let Some((nal, end)) = c.depacketizer.poll_nal() {
                    nals.push((nal, end, arrived));
                }
            }
            Err(_) => c.stats.malformed += 1,
        },
    }
    for (nal, end_of_au, nal_arrived) in nals {
        if !c.info.live {
            c.packetizer.observe(&nal);
            continue;
        }
        c.packetizer
            .push(&nal, rtp_time(epoch, nal_arrived), end_of_au);
        let to = SocketAddr::V4(SocketAddrV4::new(c.info.group, c.info.media_port));
        while let Some(p) = c.packetizer.poll_packet() {
            let _ = out.send_to(&p, to).await;
            c.stats.rtp_packets += 1;
            c.stats.rtp_bytes += p.len() as u64;
            if c.stats.latency_us.len() < 1 << 20 {
                let us = nal_arrived.elapsed().as_micros().min(u32::MAX as u128) as u32;
                c.stats.latency_us.push(us);
            }
            if let Some(fec) = &mut c.fec {
                fec.push(Instant::now(), &p);
            }
            send_repairs(out, c).await;
        }
    }
}

async fn send_repairs(out: &UdpSocket, c: &mut Channel) {
    let Some(fec) = &mut c.fec else { return };
    let to = SocketAddr::V4(SocketAddrV4::new(c.info.group, c.info.repair_port));
    while let Some(r) = fec.poll_repair() {
        let _ = out.send_to(&r, to).await;
        c.stats.repair_packets += 1;
        c.stats.repair_bytes += r.len() as u64;
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
    }
}
