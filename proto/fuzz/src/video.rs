//! Live video under fuzzing: the relay's `Leases` and a `Viewer` fed control datagrams, the FEC
//! `Playout` fed a real stream's RTP and REPAIR datagrams (replayed, reordered, damaged or made
//! up), and the relay's media path (Annex B or RTP in, `AnnexB`/`Depacketizer`, `Packetizer`,
//! `FecEncoder`) with a `Playout` behind it.

use super::script::{addr, steps};
use arbitrary::Arbitrary;
use edm_cast_proto::video::channel::{DEFAULT_GRACE, DEFAULT_LEASE, LeaseConfig, Leases};
use edm_cast_proto::video::fec::{FecConfig, FecEncoder, Playout};
use edm_cast_proto::video::h264::{
    AnnexB, Depacketizer, MAX_RTP_PACKET, Packetizer, rtp_starts_keyframe,
};
use edm_cast_proto::video::rtp::RtpHeader;
use edm_cast_proto::video::viewer::{Viewer, ViewerConfig};
use edm_cast_proto::video::wire::{
    AudioCodec, AudioInfo, ChannelInfo, Control, FecReport, Refusal, Repair,
};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The channels a relay offers: the viewer watches the first.
pub const CHANNELS: [&str; 3] = ["pi", "cam2", "données"];

pub fn channel(i: usize) -> ChannelInfo {
    ChannelInfo {
        name: CHANNELS[i % CHANNELS.len()].into(),
        live: false,
        group: Ipv4Addr::new(239, 255, 1, 2 + i as u8).into(),
        media_port: 5004,
        repair_port: 5006,
        audio: None,
    }
}

/// A channel name: one offered, or one that is not.
fn name(v: u8) -> String {
    match CHANNELS.get(v as usize % 4) {
        Some(n) => (*n).into(),
        None => "nope".into(),
    }
}

/// A viewer id: a few, so that renewals and LEAVEs meet their leases.
fn viewer_id(v: u8) -> u64 {
    if v & 0x80 == 0 {
        (v % 8) as u64
    } else {
        u64::MAX - v as u64
    }
}

#[derive(Arbitrary, Default)]
struct LeaseOp {
    from: u8,
    viewer: u8,
    channel: u8,
    /// A REQUEST's FEC figures (none when both are 0, as from an older viewer).
    repaired: u16,
    lost: u16,
}

/// Runs a script of viewer datagrams against a relay's lease table.
pub fn leases(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let config = LeaseConfig {
        lease: DEFAULT_LEASE,
        grace: DEFAULT_GRACE,
        ..LeaseConfig::default()
    };
    let mut l = Leases::new((0..3).map(channel), config, t0);
    let mut buf = Vec::new();
    // RTP packets "sent" on every channel: a report's bound.
    let mut sent = 0u64;
    for step in steps(data) {
        now += step.advance;
        sent += step.advance.as_millis() as u64 / 4;
        for c in CHANNELS {
            l.set_sent(c, sent);
        }
        if l.poll_timeout().is_some_and(|t| now >= t) {
            l.handle_timeout(now);
        }
        match step.op % 4 {
            0 => {
                let (&from, body) = step.body.split_first().unwrap_or((&0, &[]));
                l.handle_datagram(now, addr(from), body);
            }
            1 | 2 => {
                let o: LeaseOp = step.fields();
                let (viewer, channel) = (viewer_id(o.viewer), name(o.channel));
                let c = if step.op % 4 == 1 {
                    let fec = (o.repaired, o.lost) != (0, 0);
                    let fec = fec.then_some(FecReport {
                        repaired: o.repaired.into(),
                        lost: o.lost.into(),
                    });
                    Control::Request {
                        viewer,
                        channel,
                        fec,
                    }
                } else {
                    Control::Leave { viewer, channel }
                };
                l.handle_datagram(now, addr(o.from), &c.to_vec());
            }
            _ => l.handle_timeout(now),
        }
        while l.poll_event().is_some() {}
        // A viewer id's leases follow one another, each taking at most what was sent while it
        // lasted: the sums stay within `sent` per viewer id (8 low ones, 128 high ones).
        for c in CHANNELS {
            let f = l.fec(c);
            assert!(f.repaired + f.lost <= sent * 136, "{c}: {f:?} of {sent}");
        }
        for _ in 0..64 {
            if l.poll_transmit(now, &mut buf).is_none() {
                break;
            }
            assert!(Control::parse(&buf).is_ok(), "the relay sent {buf:?}");
        }
    }
}

#[derive(Arbitrary, Default)]
struct AnnounceOp {
    from: u8,
    /// Bit i: channel i is listed (bit 3: one of another name).
    listed: u8,
    live: u8,
}

#[derive(Arbitrary, Default)]
struct ReplyOp {
    from: u8,
    /// Even: an answer to this viewer.
    other: u8,
    lease_ms: u32,
    refused: bool,
    /// The channel's audio track: none, AAC or Opus (by the value mod 3), so that a change of
    /// track after the grant is met.
    audio: u8,
}

/// No audio, an AAC track or an Opus one.
fn audio_track(v: u8) -> Option<AudioInfo> {
    let (codec, config) = match v % 3 {
        0 => return None,
        1 => (AudioCodec::Aac, vec![0x11, 0x90]),
        _ => (AudioCodec::Opus, Vec::new()),
    };
    Some(AudioInfo {
        port: 5008,
        codec,
        clock_rate: 48_000,
        channels: 2,
        config,
    })
}

/// Runs a script of relay datagrams (and the shell's `leave`) against a viewer of "pi".
pub fn viewer(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let config = ViewerConfig {
        id: 3,
        channel: CHANNELS[0].into(),
        group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 1, 1), 5010).into(),
        timeout: Duration::from_secs(10),
        trust: None,
    };
    let mut v = Viewer::new(config, t0);
    let mut buf = Vec::new();
    for step in steps(data) {
        now += step.advance;
        if v.poll_timeout().is_some_and(|t| now >= t) {
            v.handle_timeout(now);
        }
        match step.op % 5 {
            0 => {
                let (&from, body) = step.body.split_first().unwrap_or((&0, &[]));
                v.handle_datagram(now, addr(from), body);
            }
            1 => {
                let a: AnnounceOp = step.fields();
                let channels = (0..4)
                    .filter(|i| a.listed & (1 << i) != 0)
                    .map(|i| ChannelInfo {
                        name: name(i),
                        live: a.live & (1 << i) != 0,
                        ..channel(i as usize)
                    })
                    .collect();
                let c = Control::Announce { channels };
                v.handle_datagram(now, addr(a.from), &c.to_vec());
            }
            2 => {
                let r: ReplyOp = step.fields();
                let c = Control::Reply {
                    viewer: 3 + (r.other % 2) as u64,
                    lease_ms: r.lease_ms,
                    result: if r.refused {
                        Err(Refusal::UnknownChannel)
                    } else {
                        Ok(ChannelInfo {
                            audio: audio_track(r.audio),
                            ..channel(0)
                        })
                    },
                };
                v.handle_datagram(now, addr(r.from), &c.to_vec());
            }
            3 => v.leave(),
            _ => v.handle_timeout(now),
        }
        while v.poll_event().is_some() {}
        for _ in 0..64 {
            if v.poll_transmit(now, &mut buf).is_none() {
                break;
            }
            assert!(Control::parse(&buf).is_ok(), "the viewer sent {buf:?}");
        }
    }
}

/// The SSRC and first sequence number of the real stream (it wraps at 65535 early on).
const SSRC: u32 = 77;
const FIRST_SEQ: u16 = 65_500;

/// Synthetic NAL units of a short H.264 stream: SPS, PPS, a large IDR, then P slices.
pub fn nal_units() -> Vec<(Vec<u8>, bool)> {
    let mut out = vec![
        (vec![0x67, 0x64, 0x00, 0x1F, 0xAC], false),
        (vec![0x68, 0xEE, 0x3C, 0x80], false),
    ];
    let mut idr = vec![0x65, 0x88];
    idr.extend((0..4000u32).map(|i| (i * 7 + i / 13) as u8));
    out.push((idr, true));
    for f in 0..30u32 {
        let mut p = vec![0x41, 0x9A];
        p.extend((0..(50 + f * 37) % 1900).map(|i| (i ^ f) as u8));
        out.push((p, true));
    }
    out
}

/// The real stream as the relay sends it: RTP packets (true) and REPAIR datagrams (false), in
/// the order sent, made once.
pub fn stream() -> &'static [(bool, Vec<u8>)] {
    static STREAM: OnceLock<Vec<(bool, Vec<u8>)>> = OnceLock::new();
    STREAM.get_or_init(|| {
        let t0 = Instant::now();
        let mut pz = Packetizer::new(SSRC, FIRST_SEQ);
        let mut fec = FecEncoder::new(FecConfig {
            window_packets: 10,
            ..FecConfig::default()
        });
        let mut out = Vec::new();
        for (i, (nal, end)) in nal_units().into_iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64 * 33);
            pz.push(&nal, i as u32 * 3000, end);
            while let Some(p) = pz.poll_packet() {
                fec.push(now, &p);
                out.push((true, p));
                while let Some(r) = fec.poll_repair() {
                    out.push((false, r));
                }
            }
        }
        fec.handle_timeout(t0 + Duration::from_secs(10));
        out.extend(std::iter::from_fn(|| fec.poll_repair()).map(|r| (false, r)));
        out
    })
}

#[derive(Arbitrary, Default)]
struct FlipOp {
    index: u16,
    at: u16,
    xor: u8,
}

#[derive(Arbitrary, Default)]
struct MadeRepairOp {
    other_ssrc: bool,
    base: i8,
    source: u8,
    esi: u8,
    len: u16,
    fill: u8,
}

#[derive(Arbitrary, Default)]
struct MadeRtpOp {
    other_ssrc: bool,
    seq: i16,
    len: u16,
    fill: u8,
}

fn drain(p: &mut Playout) {
    while let Some(packet) = p.poll_packet() {
        assert!(RtpHeader::parse(&packet).is_ok(), "playout gave {packet:?}");
    }
}

/// Runs a script of media and repair datagrams against a viewer's playout.
pub fn playout(data: &[u8]) {
    let tape = stream();
    let t0 = Instant::now();
    let mut now = t0;
    let mut p = Playout::new(Duration::from_millis(150));
    let deliver = |p: &mut Playout, now, item: &(bool, Vec<u8>)| match item.0 {
        true => p.handle_rtp(now, &item.1),
        false => p.handle_repair(now, &item.1),
    };
    for step in steps(data) {
        now += step.advance;
        if p.poll_timeout().is_some_and(|t| now >= t) {
            p.handle_timeout(now);
        }
        match step.op % 7 {
            // The real stream's datagrams; the seeds are made of these.
            0 => {
                let i = step.index();
                deliver(&mut p, now, &tape[i % tape.len()]);
            }
            1 => {
                let f: FlipOp = step.fields();
                let (is_rtp, mut v) = tape[f.index as usize % tape.len()].clone();
                let at = f.at as usize % v.len();
                v[at] ^= f.xor.max(1);
                deliver(&mut p, now, &(is_rtp, v));
            }
            2 => p.handle_rtp(now, step.body),
            3 => p.handle_repair(now, step.body),
            4 => {
                let r: MadeRepairOp = step.fields();
                let symbol = vec![r.fill; r.len as usize % 1500];
                let source = (r.source % 70) as u16;
                let mut v = Vec::new();
                Repair {
                    ssrc: if r.other_ssrc { SSRC + 1 } else { SSRC },
                    base_seq: FIRST_SEQ.wrapping_add_signed(r.base as i16 * 5),
                    source,
                    esi: source + r.esi as u16,
                    symbol: &symbol,
                }
                .write(&mut v);
                p.handle_repair(now, &v);
            }
            5 => {
                let r: MadeRtpOp = step.fields();
                let mut v = Vec::new();
                RtpHeader {
                    marker: r.fill % 2 == 0,
                    payload_type: 96,
                    seq: FIRST_SEQ.wrapping_add_signed(r.seq),
                    timestamp: 0,
                    ssrc: if r.other_ssrc { SSRC + 1 } else { SSRC },
                }
                .write(&mut v);
                v.resize(v.len() + r.len as usize % 1500, r.fill);
                p.handle_rtp(now, &v);
            }
            _ => p.handle_timeout(now),
        }
        drain(&mut p);
    }
}

/// Runs a script of ingest datagrams (Annex B or RTP) through the relay's media path, with a
/// viewer's playout at the end of it.
pub fn h264(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut annexb = AnnexB::default();
    let mut depacketizer = Depacketizer::default();
    let mut pz = Packetizer::new(SSRC, FIRST_SEQ);
    let mut fec = FecEncoder::new(FecConfig::default());
    let mut playout = Playout::new(Duration::from_millis(150));
    let mut nals = Vec::new();
    for step in steps(data) {
        now += step.advance;
        match step.op % 5 {
            0 => {
                annexb.push(now, step.body);
                nals.extend(
                    std::iter::from_fn(|| annexb.poll_nal()).map(|n| (n.data, n.end_of_au)),
                );
            }
            1 => {
                if let Ok((h, payload)) = RtpHeader::parse(step.body) {
                    depacketizer.push(&h, payload);
                    nals.extend(std::iter::from_fn(|| depacketizer.poll_nal()));
                }
            }
            2 => pz.observe(step.body),
            3 => pz.reset_access_unit(),
            _ => {
                fec.handle_timeout(now);
                playout.handle_timeout(now);
            }
        }
        let ts = ((now - t0).as_micros() * 9 / 100) as u32;
        for (nal, end) in nals.drain(..) {
            pz.push(&nal, ts, end);
        }
        while let Some(packet) = pz.poll_packet() {
            assert!(packet.len() <= MAX_RTP_PACKET, "{} bytes", packet.len());
            let _ = rtp_starts_keyframe(&packet);
            fec.push(now, &packet);
            playout.handle_rtp(now, &packet);
        }
        if fec.poll_timeout().is_some_and(|t| now >= t) {
            fec.handle_timeout(now);
        }
        while let Some(r) = fec.poll_repair() {
            playout.handle_repair(now, &r);
        }
        if playout.poll_timeout().is_some_and(|t| now >= t) {
            playout.handle_timeout(now);
        }
        drain(&mut playout);
    }
}
