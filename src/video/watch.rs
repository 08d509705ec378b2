//! `edm-cast watch NAME`: finds the relay by its announcements, leases channel NAME, repairs and
//! reorders its RTP (`edm_cast_proto::video::fec::Playout`) and forwards it to a local port that a
//! player opens through an SDP file.

use super::relay::parse_group;
use crate::cli::seconds;
use crate::error::Error;
use crate::net::{self, Group};
use crate::rt::{self, Shutdown, Stop};
use clap::Parser;
use edm_cast_proto::video::fec::Playout;
use edm_cast_proto::video::h264::rtp_starts_keyframe;
use edm_cast_proto::video::wire::{ChannelInfo, Control, Refusal};
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

fn announces_channel(datagram: &[u8], name: &str) -> bool {
    matches!(Control::parse(datagram), Ok(Control::Announce { channels })
        if channels.iter().any(|c| c.name == name))
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

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let iface = net::interface_addr(args.iface.as_deref())?;
    let limit = args.timeout;
    let runtime = rt::runtime()?;
    runtime.block_on(watch(args, iface, limit))
}

/// Waits for an announcement that lists `name`; returns the relay's control address, and the
/// announce socket (kept to notice a restarted relay).
async fn find_relay(
    group: Group,
    iface: Ipv4Addr,
    name: &str,
    limit: Duration,
) -> Result<(SocketAddr, UdpSocket), Error> {
    let socket = net::register(net::group_socket(group, iface)?)?;
    let mut buf = vec![0u8; 2048];
    let mut heard: Vec<String> = Vec::new();
    let give_up = tokio::time::Instant::now() + limit;
    loop {
        let got = tokio::time::timeout_at(give_up, socket.recv_from(&mut buf)).await;
        let Ok(Ok((n, from))) = got else {
            return Err(Error::Protocol(if heard.is_empty() {
                format!(
                    "no relay heard on {group} within {:.0} s: is `edm-cast video` running on this LAN with the same --group? (check --iface)",
                    limit.as_secs_f64()
                )
            } else {
                format!(
                    "no channel '{name}' on the relay; it offers: {}",
                    heard.join(", ")
                )
            }));
        };
        if let Ok(Control::Announce { channels }) = Control::parse(&buf[..n]) {
            if channels.iter().any(|c| c.name == name) {
                return Ok((from, socket));
            }
            heard = channels.into_iter().map(|c| c.name).collect();
        }
    }
}

async fn watch(args: Args, iface: Ipv4Addr, limit: Duration) -> Result<ExitCode, Error> {
    let started = Instant::now();
    let (mut relay, announces) = find_relay(args.group, iface, &args.name, limit).await?;
    let control = net::register(net::feedback_socket(iface)?)?;
    let viewer = rt::random_u64();
    let request = Control::Request {
        viewer,
        channel: args.name.clone(),
    }
    .to_vec();
    let mut buf = vec![0u8; 2048];
    let give_up = Instant::now() + limit;
    // The reply may be lost like any datagram: ask again every half second.
    let (info, lease): (ChannelInfo, Duration) = loop {
        if Instant::now() >= give_up {
            return Err(Error::Protocol(format!(
                "the relay at {relay} did not answer"
            )));
        }
        let _ = control.send_to(&request, relay).await;
        let wait = tokio::time::timeout(Duration::from_millis(500), control.recv_from(&mut buf));
        let Ok(Ok((n, _))) = wait.await else { continue };
        match Control::parse(&buf[..n]) {
            Ok(Control::Reply {
                viewer: v,
                lease_ms,
                result,
            }) if v == viewer => match result {
                Ok(info) => break (info, Duration::from_millis(lease_ms.max(1000) as u64)),
                Err(Refusal::UnknownChannel) => {
                    return Err(Error::Protocol(format!(
                        "the relay has no channel '{}'",
                        args.name
                    )));
                }
            },
            _ => continue,
        }
    };
    let media = net::register(net::group_socket(
        Group(SocketAddrV4::new(info.group, info.media_port)),
        iface,
    )?)?;
    let repair = if info.repair_port != 0 && !args.no_fec {
        Some(net::register(net::group_socket(
            Group(SocketAddrV4::new(info.group, info.repair_port)),
            iface,
        )?)?)
    } else {
        None
    };
    let local = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.set_nonblocking(true).map(|_| s))
        .map_err(socket_error("cannot open a local socket".into()))?;
    let local = net::register(local)?;
    let forward_to = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let sdp_path = args.sdp.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("edm-cast-{}-{}.sdp", args.name, std::process::id()))
    });
    std::fs::write(&sdp_path, sdp(&args.name, args.port)).map_err(|source| Error::Write {
        path: sdp_path.clone(),
        source,
    })?;
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
    let mut player = None;
    if args.sdp.is_none() {
        match find_player(&sdp_path) {
            Some((child, cmd)) => {
                eprintln!("watch: playing with: {cmd}");
                player = Some(child);
            }
            None => eprintln!(
                "watch: no ffplay or vlc found; open the SDP yourself, e.g.\n  ffplay -protocol_whitelist file,udp,rtp -fflags nobuffer -flags low_delay -i {}",
                sdp_path.display()
            ),
        }
    }

    let mut playout = Playout::new(Duration::from_millis(args.hold_ms));
    let mut media_buf = vec![0u8; 65536];
    let mut repair_buf = vec![0u8; 65536];
    let mut announce_buf = vec![0u8; 2048];
    let mut forwarded = 0u64;
    let mut keyframe_seen = false;
    let mut next_renew = Instant::now() + lease / 3;
    let mut shutdown = Shutdown::new()?;
    let mut poll_player = tokio::time::interval(Duration::from_millis(200));
    let code = loop {
        let wake = playout
            .poll_timeout()
            .map_or(next_renew, |t| t.min(next_renew));
        tokio::select! {
            stop = shutdown.recv() => break match stop {
                Stop::Interrupt => ExitCode::from(stop.exit_code()),
                // A service manager's stop is the normal end of watching.
                Stop::Terminate => ExitCode::SUCCESS,
            },
            got = media.recv(&mut media_buf) => {
                if let Ok(n) = got {
                    playout.handle_rtp(Instant::now(), &media_buf[..n]);
                }
            }
            got = recv_if(repair.as_ref(), &mut repair_buf) => {
                if let Ok(n) = got {
                    playout.handle_repair(Instant::now(), &repair_buf[..n]);
                }
            }
            got = announces.recv_from(&mut announce_buf) => {
                // A relay restarted on another port: renew there at once.
                if let Ok((n, from)) = got
                    && from != relay
                    && announces_channel(&announce_buf[..n], &args.name)
                {
                    eprintln!("watch: the relay is now at {from}");
                    relay = from;
                    next_renew = Instant::now();
                }
            }
            _ = control.recv_from(&mut buf) => {} // renewal replies: the lease is the relay's
            _ = poll_player.tick(), if player.is_some() => {
                if player.as_mut().is_some_and(|p| !matches!(p.try_wait(), Ok(None))) {
                    eprintln!("watch: the player exited");
                    break ExitCode::SUCCESS;
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        playout.handle_timeout(now);
        while let Some(p) = playout.poll_packet() {
            if !keyframe_seen && rtp_starts_keyframe(&p) {
                keyframe_seen = true;
                eprintln!(
                    "watch: first keyframe after {:.3} s",
                    started.elapsed().as_secs_f64()
                );
            }
            let _ = local.send_to(&p, forward_to).await;
            forwarded += 1;
        }
        if now >= next_renew {
            let _ = control.send_to(&request, relay).await;
            next_renew = now + lease / 3;
        }
    };
    let leave = Control::Leave {
        viewer,
        channel: args.name.clone(),
    };
    // Twice: a lost LEAVE only costs a lease period, but costs it.
    for _ in 0..2 {
        let _ = control.send_to(&leave.to_vec(), relay).await;
    }
    if let Some(mut p) = player {
        let _ = p.kill();
        let _ = p.wait();
    }
    if args.sdp.is_none() {
        let _ = std::fs::remove_file(&sdp_path);
    }
    let s = &playout.stats;
    eprintln!(
        "watch: {forwarded} packets forwarded; {} received, {} repaired, {} lost, {} dropped",
        s.received, s.recovered, s.lost, s.dropped
    );
    Ok(code)
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
