//! Seed corpora from real sessions: the datagrams of an in-memory send (one per flavor: plain,
//! growing, signed, encrypted), a download manager's exchange, a relay's and a viewer's, and a
//! real H.264 stream with its FEC. The parser targets get the datagrams themselves; the state
//! machine targets get scripts that replay the sessions, from which the fuzzer wanders off.
//!
//! `cargo test -p edm-cast-proto --test fuzz_corpus -- --ignored write_seed_corpora` writes them
//! to `proto/fuzz/corpus/TARGET/seed-*`.

use super::download::URLS;
use super::file::{Flavor, SESSION, UNIX_MS, recording, teacher};
use super::script::{advance_of, code_of, push};
use super::video::{CHANNELS, channel, nal_units, stream};
use edm_cast_proto::auth::Seal;
use edm_cast_proto::file::tree::{Entry, Kind as EntryKind, Manifest};
use edm_cast_proto::video::rtcp::SenderReport;
use edm_cast_proto::video::rtp::RtpHeader;
use edm_cast_proto::video::sap::{self, Kind};
use edm_cast_proto::video::wire::{AudioCodec, AudioInfo, Control, FecReport, Refusal};
use edm_cast_proto::wire::{FeedbackAddr, Offer, Packet, Refuse, Request, Server};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// One seed: its target, its name (the file is `seed-NAME`), its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// A script being written, its clock following the times given.
struct Script {
    bytes: Vec<u8>,
    at: Duration,
}

impl Script {
    fn new(first: &[u8]) -> Self {
        Script {
            bytes: first.to_vec(),
            at: Duration::ZERO,
        }
    }

    /// A step at `at` (or as soon after the previous one as the codes allow).
    fn step(&mut self, at: Duration, op: u8, body: &[u8]) {
        let code = code_of(at.saturating_sub(self.at));
        self.at += advance_of(code);
        push(&mut self.bytes, op, code, body);
    }
}

fn from(i: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![i];
    v.extend_from_slice(body);
    v
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    file_seeds(&mut seeds);
    download_seeds(&mut seeds);
    video_seeds(&mut seeds);
    seeds
}

fn file_seeds(seeds: &mut Vec<Seed>) {
    // Two datagrams of each type from each recording are enough for the parser.
    let mut kept: BTreeMap<(u8, u8, bool), usize> = BTreeMap::new();
    for flavor in Flavor::ALL {
        let rec = recording(flavor);
        let name = format!("{flavor:?}").to_lowercase();
        let all = rec.to_receiver.iter().map(|d| (true, d));
        for (i, (down, (_, d))) in all
            .chain(rec.to_sender.iter().map(|d| (false, d)))
            .enumerate()
        {
            let n = kept.entry((flavor as u8, d[3], down)).or_default();
            if *n < 2 {
                *n += 1;
                seeds.push(("packet", format!("{name}-{i}"), d.clone()));
            }
        }
        let mut rx = Script::new(&[flavor as u8]);
        for i in 0..rec.to_receiver.len() {
            rx.step(rec.to_receiver[i].0, 0, &(i as u16).to_be_bytes());
        }
        rx.step(rx.at + Duration::from_secs(4), 10, &[]);
        seeds.push(("receiver", name.clone(), rx.bytes));
        // The sender sends what it has between the receiver's reports.
        let mut tx = Script::new(&[flavor as u8]);
        for (at, d) in &rec.to_sender {
            tx.step(*at, 0, d);
            tx.step(*at + Duration::from_millis(5), 4, &[255]);
        }
        tx.step(tx.at + Duration::from_secs(4), 7, &[2]);
        seeds.push(("sender", name, tx.bytes));
    }
}

fn download_seeds(seeds: &mut Vec<Seed>) {
    let signed = |p: Packet<'_>| {
        let mut v = Vec::new();
        p.write_sealed(0, Seal::Signed(teacher(), UNIX_MS), &mut v);
        v
    };
    let request = |id, url: &str| {
        Packet::Request(Request {
            request: id,
            url: url.into(),
        })
        .to_vec(0)
    };
    let server = Packet::Server(Server {
        requests: FeedbackAddr::Source { port: 5006 },
    });
    // The requester's id is 0x5EED.
    let offer = Packet::Offer(Offer {
        request: 0x5EED,
        session: SESSION,
        port: 5008,
    });
    let refuse = Packet::Refuse(Refuse {
        request: 0x5EED,
        reason: "404 Not Found".into(),
    });
    for (name, p) in [
        ("server", server.clone()),
        ("offer", offer.clone()),
        ("refuse", refuse.clone()),
    ] {
        seeds.push(("packet", format!("{name}-signed"), signed(p.clone())));
        seeds.push(("packet", name.into(), p.to_vec(0)));
    }
    seeds.push(("packet", "request".into(), request(7, URLS[0])));

    // Two students ask together, the session starts, a third asks late, it ends; a refusal.
    // The answer op's fields are symmetric bytes, so their byte order does not matter.
    let started = [0, 0, 0x11, 0x11, 0x11, 0x11, 0x13, 0x13];
    let ended = [2, 0, 0x11, 0x11, 0x11, 0x11, 0x13, 0x13];
    let refused = [1, 1, 0, 0, 0, 0, 0, 0];
    for signs in [0u8, 1] {
        let mut s = Script::new(&[signs]);
        s.step(Duration::ZERO, 0, &request(1, URLS[0]));
        s.step(Duration::ZERO, 1, &from(2, &request(2, URLS[0])));
        s.step(Duration::from_millis(300), 3, &started);
        s.step(
            Duration::from_millis(800),
            1,
            &from(4, &request(3, URLS[0])),
        );
        s.step(Duration::from_millis(900), 0, &request(4, URLS[1]));
        s.step(Duration::from_millis(1200), 3, &refused);
        s.step(Duration::from_secs(5), 3, &ended);
        s.step(Duration::from_secs(6), 0, &request(5, URLS[0]));
        seeds.push(("catalog", format!("class-{signs}"), s.bytes));
    }

    // Unknown or given server, with or without trust: announce, then the answer.
    for flavor in 0u8..4 {
        for (name, answer) in [("offer", &offer), ("refuse", &refuse)] {
            let mut s = Script::new(&[flavor]);
            s.step(Duration::ZERO, 0, &signed(server.clone()));
            s.step(Duration::from_millis(600), 0, &signed(answer.clone()));
            s.step(Duration::from_millis(700), 0, &answer.to_vec(0));
            seeds.push(("requester", format!("{name}-{flavor}"), s.bytes));
        }
    }
}

/// An SDP as the relay announces it by SAP (section 9 of VIDEO.md), video and audio.
const SAP_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=pi\r\ni=Room 12 board\r\n\
c=IN IP4 239.255.49.2/1\r\nt=0 0\r\na=recvonly\r\nm=video 5004 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42c01e\r\n\
m=audio 5008 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\n";

/// A granted REPLY whose channel has an audio track (status 2).
fn reply_audio(codec: AudioCodec, config: Vec<u8>) -> Vec<u8> {
    let mut c = channel(0);
    c.audio = Some(AudioInfo {
        port: 5008,
        codec,
        clock_rate: 48_000,
        channels: 2,
        config,
    });
    Control::Reply {
        viewer: 3,
        lease_ms: 6000,
        result: Ok(c),
    }
    .to_vec()
}

/// An RTCP sender report as the relay sends each second per track.
fn sender_report() -> Vec<u8> {
    let mut out = Vec::new();
    SenderReport {
        ssrc: 0x1234_5678,
        ntp: 0xe9a0_0000_8000_0000,
        rtp_time: 90_000,
        packets: 300,
        octets: 360_000,
    }
    .write(&mut out);
    out
}

fn video_seeds(seeds: &mut Vec<Seed>) {
    let request = |viewer, channel: &str| {
        Control::Request {
            viewer,
            channel: channel.into(),
            fec: None,
        }
        .to_vec()
    };
    let leave = |viewer, channel: &str| {
        Control::Leave {
            viewer,
            channel: channel.into(),
        }
        .to_vec()
    };
    let announce = Control::Announce {
        channels: (0..3).map(channel).collect(),
    }
    .to_vec();
    let reply = |viewer, ok: bool| {
        Control::Reply {
            viewer,
            lease_ms: 6000,
            result: if ok {
                Ok(channel(0))
            } else {
                Err(Refusal::UnknownChannel)
            },
        }
        .to_vec()
    };
    for (name, c) in [
        ("announce", announce.clone()),
        ("request", request(1, CHANNELS[0])),
        (
            "request-fec",
            Control::Request {
                viewer: 1,
                channel: CHANNELS[0].into(),
                fec: Some(FecReport {
                    repaired: 300,
                    lost: 7,
                }),
            }
            .to_vec(),
        ),
        ("leave", leave(1, CHANNELS[2])),
        ("reply", reply(3, true)),
        ("refusal", reply(3, false)),
        ("reply-aac", reply_audio(AudioCodec::Aac, vec![0x11, 0x90])),
        ("reply-opus", reply_audio(AudioCodec::Opus, Vec::new())),
        ("sender-report", sender_report()),
        (
            "sap-announce",
            sap::packet(Kind::Announce, Ipv4Addr::LOCALHOST, SAP_SDP),
        ),
        (
            "sap-delete",
            sap::packet(Kind::Delete, Ipv4Addr::new(10, 0, 0, 1), SAP_SDP),
        ),
    ] {
        seeds.push(("video_wire", name.into(), c));
    }

    // Two viewers of "pi", one of "cam2"; one renews and leaves; the leases lapse; grace ends.
    let mut s = Script::new(&[]);
    s.step(Duration::ZERO, 0, &from(1, &request(1, CHANNELS[0])));
    s.step(
        Duration::from_millis(10),
        0,
        &from(2, &request(2, CHANNELS[0])),
    );
    s.step(
        Duration::from_millis(20),
        0,
        &from(3, &request(5, CHANNELS[1])),
    );
    s.step(
        Duration::from_secs(2),
        0,
        &from(1, &request(1, CHANNELS[0])),
    );
    s.step(Duration::from_secs(3), 0, &from(2, &leave(2, CHANNELS[0])));
    s.step(Duration::from_secs(3), 0, &from(4, &request(9, "nope")));
    s.step(Duration::from_secs(9), 3, &[]);
    s.step(Duration::from_secs(25), 3, &[]);
    seeds.push(("leases", "class".into(), s.bytes));

    // The viewer finds the relay, asks, is granted, renews, follows a moved relay, leaves.
    let mut s = Script::new(&[]);
    s.step(Duration::ZERO, 0, &from(0, &announce));
    s.step(Duration::from_millis(5), 0, &from(0, &reply(3, true)));
    s.step(Duration::from_secs(3), 0, &from(0, &announce));
    s.step(Duration::from_secs(4), 0, &from(2, &announce));
    s.step(Duration::from_secs(5), 0, &from(2, &reply(3, true)));
    s.step(Duration::from_secs(6), 3, &[]);
    seeds.push(("viewer", "watch".into(), s.bytes));
    let mut s = Script::new(&[]);
    s.step(Duration::ZERO, 0, &from(0, &announce));
    s.step(Duration::from_millis(5), 0, &from(0, &reply(3, false)));
    seeds.push(("viewer", "refused".into(), s.bytes));
    // Granted without audio; the relay then learns of an AAC track (an RTSP source's), then Opus.
    let mut s = Script::new(&[]);
    s.step(Duration::ZERO, 0, &from(0, &announce));
    s.step(Duration::from_millis(5), 0, &from(0, &reply(3, true)));
    s.step(
        Duration::from_secs(1),
        0,
        &from(0, &reply_audio(AudioCodec::Aac, vec![0x11, 0x90])),
    );
    s.step(
        Duration::from_secs(2),
        0,
        &from(0, &reply_audio(AudioCodec::Opus, Vec::new())),
    );
    seeds.push(("viewer", "audio-changes".into(), s.bytes));

    // The stream with every seventh RTP packet lost, so that repair is needed.
    let tape = stream();
    let mut s = Script::new(&[]);
    let mut rtp = 0;
    for (i, (is_rtp, d)) in tape.iter().enumerate() {
        if *is_rtp {
            rtp += 1;
            if rtp % 7 == 0 {
                continue;
            }
        }
        s.step(
            Duration::from_millis(i as u64 * 3),
            0,
            &(i as u16).to_be_bytes(),
        );
        if seeds.iter().filter(|s| s.0 == "rtp").count() < 6 && *is_rtp {
            seeds.push(("rtp", format!("stream-{i}"), d.clone()));
        } else if !*is_rtp && seeds.iter().filter(|s| s.0 == "video_wire").count() < 7 {
            seeds.push(("video_wire", format!("repair-{i}"), d.clone()));
        }
    }
    s.step(s.at + Duration::from_secs(1), 6, &[]);
    seeds.push(("playout", "lossy".into(), s.bytes));

    // RTP with a CSRC, an extension and padding; a STAP-A; an AVC configuration record.
    let mut v = vec![0x80 | 0x20 | 0x10 | 1, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    v.extend_from_slice(&[9, 9, 9, 9, 0xBE, 0xDE, 0, 1, 1, 2, 3, 4, 0x41, 0x9A, 0, 2]);
    seeds.push(("rtp", "csrc-extension-padding".into(), v));
    let mut stap = Vec::new();
    RtpHeader {
        marker: true,
        payload_type: 96,
        seq: 7,
        timestamp: 9000,
        ssrc: 5,
    }
    .write(&mut stap);
    stap.extend_from_slice(&[24, 0, 3, 0x67, 0x64, 0, 0, 2, 0x68, 0xEE]);
    seeds.push(("rtp", "stap-a".into(), stap.clone()));
    let avcc = [
        1, 0x64, 0, 0x1E, 0xFF, 0xE1, 0, 3, 0x67, 0x64, 0, 1, 0, 2, 0x68, 0xEF,
    ];
    seeds.push(("rtp", "avcc".into(), avcc.to_vec()));

    // The relay's ingest: the stream as Annex B in 1316-byte datagrams (the last one short),
    // then as RTP.
    let mut annexb = Vec::new();
    for (nal, _) in nal_units() {
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(&nal);
    }
    let mut s = Script::new(&[]);
    for (i, chunk) in annexb.chunks(1316).enumerate() {
        s.step(Duration::from_millis(i as u64 * 4), 0, chunk);
    }
    let mut s_rtp = Script::new(&[]);
    s_rtp.step(Duration::ZERO, 1, &stap);
    for (i, (_, d)) in tape.iter().filter(|(is_rtp, _)| *is_rtp).enumerate() {
        s_rtp.step(Duration::from_millis(i as u64 * 4), 1, d);
    }
    s_rtp.step(s_rtp.at + Duration::from_secs(1), 4, &[]);
    seeds.push(("h264", "annexb".into(), s.bytes));
    seeds.push(("h264", "rtp".into(), s_rtp.bytes));

    let public = teacher().public().to_string();
    seeds.push(("keys", "public".into(), public.into_bytes()));
    let secret = format!("# edm-cast key\n\n{}\n", teacher().to_text());
    seeds.push(("keys", "secret".into(), secret.into_bytes()));

    // A small tree: a folder, a file in it, an empty file; then the files' bytes.
    let entry = |kind, path: &str, size| Entry {
        kind,
        path: path.into(),
        mode: 0o644,
        mtime: (1_700_000_000, 0),
        size,
        sha256: [if size > 0 { 1 } else { 0 }; 32],
    };
    let mut stream = Manifest {
        entries: vec![
            entry(EntryKind::Folder, "d é", 0),
            entry(EntryKind::File, "d é/a b.txt", 3),
            entry(EntryKind::File, "empty", 0),
        ],
    }
    .encode();
    stream.extend_from_slice(b"abc");
    seeds.push(("tree", "small".into(), stream));
}
