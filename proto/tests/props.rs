//! Properties over generated values (proptest): every wire type, file and video, round-trips for
//! any field values within their ranges and fits a datagram; the block layout covers a file
//! exactly; and no parser panics on any bytes.

use edm_cast_proto::auth::{Auth, Seal};
use edm_cast_proto::file::layout::MAX_BLOCKS;
use edm_cast_proto::video::rtp::RtpHeader;
use edm_cast_proto::video::wire::{
    AudioCodec, AudioInfo, ChannelInfo, Control, FecReport, MAX_AUDIO_CONFIG, MAX_CHANNELS,
    MAX_WINDOW, Refusal, Repair,
};
use edm_cast_proto::wire::{
    Ack, Announce, Data, Digests, End, EndReason, FailReason, FeedbackAddr, FileDigests, Hashes,
    KeyWrap, Keys, MAX_BLOCK_SYMBOLS, MAX_DATAGRAM, MAX_DIGESTS, MAX_ESI, MAX_HASHES,
    MAX_KEY_WRAPS, MAX_NAME_LEN, MAX_NEED_ENTRIES, MAX_REASON_LEN, MAX_RECEIVER_NAME,
    MAX_SYMBOL_SIZE, MAX_URL_LEN, MIN_SYMBOL_SIZE, Need, NeedEntry, NeedFlags, Offer, Packet,
    ReceiverState, Refuse, Request, Server, Status,
};
use edm_cast_proto::{Layout, PublicKey, SecretKey};
use proptest::collection::vec;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Text of at most `max` bytes of UTF-8, any characters.
fn text(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=max).prop_map(move |chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        s
    })
}

fn nonempty_text(max: usize) -> impl Strategy<Value = String> {
    text(max).prop_map(|s| if s.is_empty() { "x".into() } else { s })
}

fn port() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn feedback() -> impl Strategy<Value = FeedbackAddr> {
    prop_oneof![
        port().prop_map(|port| FeedbackAddr::Source { port }),
        (any::<[u8; 4]>(), port()).prop_map(|(a, p)| FeedbackAddr::V4(Ipv4Addr::from(a), p)),
        (any::<[u8; 16]>(), port()).prop_map(|(a, p)| FeedbackAddr::V6(Ipv6Addr::from(a), p)),
    ]
}

fn announce() -> impl Strategy<Value = Announce> {
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of((any::<[u8; 16]>(), any::<[u8; 32]>())),
        any::<(bool, bool, bool, bool)>(),
        (
            MIN_SYMBOL_SIZE..=MAX_SYMBOL_SIZE,
            1..=MAX_BLOCK_SYMBOLS,
            1..=u16::MAX,
        ),
        any::<u32>(),
        feedback(),
        text(MAX_NAME_LEN),
    )
        .prop_map(
            |(
                file_size,
                digests,
                (padded, encrypted, sync, staggered),
                (t, k, w),
                sent,
                fb,
                name,
            )| {
                Announce {
                    file_size,
                    // Digests come only with the size (one encoding per meaning).
                    digests: digests
                        .filter(|_| file_size.is_some())
                        .map(|(md5, sha256)| FileDigests { md5, sha256 }),
                    padded,
                    encrypted,
                    sync,
                    staggered,
                    symbol_size: t,
                    block_symbols: k,
                    interleave: w,
                    sent_blocks: sent,
                    feedback: fb,
                    name,
                }
            },
        )
}

fn status() -> impl Strategy<Value = Status> {
    (
        any::<u32>(),
        0..4u8,
        1..8u8,
        any::<u32>(),
        text(MAX_RECEIVER_NAME),
    )
        .prop_map(|(receiver, state, reason, blocks_done, name)| {
            let (state, reason) = match state {
                0 => (ReceiverState::Hello, FailReason::None),
                1 => (ReceiverState::Receiving, FailReason::None),
                2 => (ReceiverState::Done, FailReason::None),
                _ => (
                    ReceiverState::Failed,
                    [
                        FailReason::Interrupted,
                        FailReason::DiskFull,
                        FailReason::CannotWrite,
                        FailReason::DigestMismatch,
                        FailReason::TooLarge,
                        FailReason::SenderGone,
                        FailReason::Other,
                    ][reason as usize - 1],
                ),
            };
            Status {
                receiver,
                state,
                reason,
                blocks_done,
                name,
                echo: None,
            }
        })
}

fn need() -> impl Strategy<Value = Need> {
    let entry = (
        any::<u32>(),
        any::<u16>(),
        any::<u32>(),
        any::<(bool, bool)>(),
    )
        .prop_map(|(block, need, seen, (no_digest, verify))| NeedEntry {
            block,
            need,
            seen,
            flags: NeedFlags { no_digest, verify },
        });
    (any::<u32>(), vec(entry, 1..=MAX_NEED_ENTRIES))
        .prop_map(|(receiver, entries)| Need { receiver, entries })
}

/// Any control packet of the file protocol and the download manager (DATA borrows its symbol,
/// so it has its own property).
fn control() -> impl Strategy<Value = Packet<'static>> {
    prop_oneof![
        announce().prop_map(Packet::Announce),
        any::<bool>().prop_map(|aborted| Packet::End(End {
            reason: if aborted {
                EndReason::Aborted
            } else {
                EndReason::Complete
            }
        })),
        any::<u32>().prop_map(|receiver| Packet::Ack(Ack { receiver })),
        (any::<u32>(), vec(any::<[u8; 16]>(), 1..=MAX_DIGESTS)).prop_map(|(first, digests)| {
            Packet::Digests(Digests {
                first_block: first.min(u32::MAX - digests.len() as u32),
                digests,
            })
        }),
        (
            any::<u32>(),
            0..=MAX_ESI,
            vec(any::<[u8; 8]>(), 1..=MAX_HASHES),
            any::<u32>()
        )
            .prop_map(|(block, esi, hashes, beyond)| {
                let first_esi = esi.min(MAX_ESI + 1 - hashes.len() as u32);
                let end = first_esi + hashes.len() as u32;
                Packet::Hashes(Hashes {
                    block,
                    sent: end + beyond % (MAX_ESI + 2 - end),
                    first_esi,
                    hashes,
                })
            }),
        (
            any::<[u8; 32]>(),
            1..=u8::MAX,
            any::<u8>(),
            1..=MAX_KEY_WRAPS
        )
            .prop_flat_map(|(ephemeral, parts, part, n)| {
                let wrap = (any::<[u8; 8]>(), vec(any::<u8>(), 48)).prop_map(|(r, w)| KeyWrap {
                    recipient: r,
                    wrapped: w.try_into().expect("48 bytes"),
                });
                vec(wrap, n).prop_map(move |wraps| {
                    Packet::Keys(Keys {
                        ephemeral,
                        part: part % parts,
                        parts,
                        wraps,
                    })
                })
            }),
        status().prop_map(Packet::Status),
        need().prop_map(Packet::Need),
        feedback().prop_map(|requests| Packet::Server(Server { requests })),
        (any::<u32>(), nonempty_text(MAX_URL_LEN))
            .prop_map(|(request, url)| Packet::Request(Request { request, url })),
        (any::<u32>(), any::<u32>(), port()).prop_map(|(request, session, port)| {
            Packet::Offer(Offer {
                request,
                session,
                port,
            })
        }),
        (any::<u32>(), text(MAX_REASON_LEN))
            .prop_map(|(request, reason)| Packet::Refuse(Refuse { request, reason })),
    ]
}

fn channel() -> impl Strategy<Value = ChannelInfo> {
    (
        text(32),
        any::<bool>(),
        any::<[u8; 3]>(),
        0..16u8,
        port(),
        any::<u16>(),
    )
        .prop_map(
            |(name, live, [a, b, c], top, media_port, repair_port)| ChannelInfo {
                name,
                live,
                group: Ipv4Addr::new(224 + top, a, b, c).into(),
                media_port,
                repair_port,
                audio: None,
            },
        )
}

/// An audio description within the bounds VIDEO.md section 5 gives.
fn audio() -> impl Strategy<Value = AudioInfo> {
    prop_oneof![
        (
            port(),
            8_000..=192_000u32,
            1..=8u8,
            vec(any::<u8>(), 2..=MAX_AUDIO_CONFIG)
        )
            .prop_map(|(port, clock_rate, channels, config)| AudioInfo {
                port,
                codec: AudioCodec::Aac,
                clock_rate,
                channels,
                config,
            }),
        (port(), 1..=8u8).prop_map(|(port, channels)| AudioInfo {
            port,
            codec: AudioCodec::Opus,
            clock_rate: 48_000,
            channels,
            config: vec![],
        }),
    ]
}

fn video_control() -> impl Strategy<Value = Control> {
    prop_oneof![
        vec(channel(), 0..=MAX_CHANNELS).prop_map(|channels| Control::Announce { channels }),
        (
            any::<u64>(),
            nonempty_text(32),
            proptest::option::of((any::<u64>(), any::<u64>()))
        )
            .prop_map(|(viewer, channel, fec)| Control::Request {
                viewer,
                channel,
                fec: fec.map(|(repaired, lost)| FecReport { repaired, lost }),
            }),
        (any::<u64>(), nonempty_text(32))
            .prop_map(|(viewer, channel)| Control::Leave { viewer, channel }),
        (
            any::<u64>(),
            any::<u32>(),
            proptest::option::of((channel(), proptest::option::of(audio())))
        )
            .prop_map(|(viewer, lease_ms, c)| Control::Reply {
                viewer,
                lease_ms,
                result: c
                    .map(|(c, audio)| ChannelInfo { audio, ..c })
                    .ok_or(Refusal::UnknownChannel),
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn file_control_packets_round_trip_unsigned_and_signed(
        p in control(),
        session in any::<u32>(),
        signed in any::<bool>(),
        time_ms in any::<u64>(),
    ) {
        let key = SecretKey::from_seed([5; 32]);
        let seal = if signed { Seal::Signed(&key, time_ms) } else { Seal::Unsigned };
        let mut bytes = Vec::new();
        p.write_sealed(session, seal, &mut bytes);
        prop_assert!(bytes.len() <= MAX_DATAGRAM, "{:?}: {} bytes", p.kind(), bytes.len());
        let d = Packet::parse(&bytes).expect("what was written parses");
        prop_assert_eq!(d.session, session);
        prop_assert_eq!(&d.packet, &p);
        let was_signed = matches!(d.auth, Auth::Signed { time_ms: t, .. } if t == time_ms);
        prop_assert_eq!(was_signed, signed && p.kind().authenticated());
    }

    #[test]
    fn data_round_trips(
        block in any::<u32>(),
        esi in 0..=MAX_ESI,
        symbol in vec(any::<u8>(), 1..=MAX_SYMBOL_SIZE as usize + 16),
        session in any::<u32>(),
    ) {
        let p = Packet::Data(Data { block, esi, symbol: &symbol });
        let bytes = p.to_vec(session);
        prop_assert!(bytes.len() <= MAX_DATAGRAM);
        let d = Packet::parse(&bytes).expect("what was written parses");
        prop_assert_eq!((d.session, d.packet), (session, p));
    }

    #[test]
    fn video_packets_round_trip(
        c in video_control(),
        ssrc in any::<u32>(),
        base_seq in any::<u16>(),
        source in 1..=MAX_WINDOW,
        above in any::<u16>(),
        symbol in vec(any::<u8>(), 3..=MAX_DATAGRAM - 16),
    ) {
        let bytes = c.to_vec();
        prop_assert!(bytes.len() <= MAX_DATAGRAM);
        prop_assert_eq!(Control::parse(&bytes), Ok(c));
        let r = Repair {
            ssrc,
            base_seq,
            source,
            esi: source.saturating_add(above),
            symbol: &symbol,
        };
        let mut bytes = Vec::new();
        r.write(&mut bytes);
        prop_assert!(bytes.len() <= MAX_DATAGRAM);
        prop_assert_eq!(Repair::parse(&bytes), Ok(r));
    }

    #[test]
    fn rtp_headers_round_trip(
        marker in any::<bool>(),
        payload_type in 0..128u8,
        seq in any::<u16>(),
        timestamp in any::<u32>(),
        ssrc in any::<u32>(),
        payload in vec(any::<u8>(), 0..1500),
    ) {
        let h = RtpHeader { marker, payload_type, seq, timestamp, ssrc };
        let mut bytes = Vec::new();
        h.write(&mut bytes);
        bytes.extend_from_slice(&payload);
        prop_assert_eq!(RtpHeader::parse(&bytes), Ok((h, &payload[..])));
    }

    #[test]
    fn exact_layouts_cover_the_file_exactly(
        t in MIN_SYMBOL_SIZE..=MAX_SYMBOL_SIZE,
        k in 1..=MAX_BLOCK_SYMBOLS,
        blocks in 0..40u64,
        extra in any::<u64>(),
    ) {
        let block_bytes = t as u64 * k as u64;
        let size = blocks * block_bytes + extra % block_bytes;
        let l = Layout::new(size, t, k).expect("a few dozen blocks");
        prop_assert_eq!(l.num_blocks() as u64, size.div_ceil(block_bytes));
        let mut at = 0;
        for b in 0..l.num_blocks() {
            prop_assert_eq!(l.offset(b), at);
            let len = l.len(b);
            prop_assert!(len > 0 && len as u64 <= block_bytes);
            prop_assert_eq!(l.symbols(b) as usize, len.div_ceil(t as usize));
            prop_assert!(l.symbols(b) <= k);
            at += len as u64;
        }
        prop_assert_eq!(at, size);
        prop_assert_eq!((l.len(l.num_blocks()), l.symbols(l.num_blocks())), (0, 0));
    }

    #[test]
    fn padded_layouts_keep_k_when_the_size_arrives(
        t in MIN_SYMBOL_SIZE..=MAX_SYMBOL_SIZE,
        k in 1..=MAX_BLOCK_SYMBOLS,
        size in any::<u64>(),
        probe in any::<u32>(),
    ) {
        let open = Layout::open(t, k).expect("valid T and K");
        prop_assert_eq!(open.symbols(probe % open.num_blocks()), k);
        prop_assert_eq!(open.len(probe) as u64, open.block_bytes());
        let l = open.finish(size % (open.block_bytes() * 50)).expect("under 50 blocks");
        let exact = Layout::new(l.file_size().expect("finished"), t, k).expect("same blocks");
        prop_assert!(l.padded());
        prop_assert_eq!(l.num_blocks(), exact.num_blocks());
        let mut total = 0;
        for b in 0..l.num_blocks() {
            prop_assert_eq!(l.symbols(b), k);
            prop_assert_eq!(l.len(b), exact.len(b));
            total += l.len(b) as u64;
        }
        prop_assert_eq!(total, l.file_size().expect("finished"));
        prop_assert_eq!(l.symbols(l.num_blocks()), 0);
        // Any size: a layout, or a refusal, never a panic.
        let fits = size.div_ceil(open.block_bytes()) <= MAX_BLOCKS as u64;
        prop_assert_eq!(open.finish(size).is_ok(), fits);
    }

    #[test]
    fn no_parser_panics_on_any_bytes(bytes in vec(any::<u8>(), 0..1600)) {
        let _ = Packet::parse(&bytes);
        let _ = Control::parse(&bytes);
        let _ = Repair::parse(&bytes);
        let _ = RtpHeader::parse(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = text.parse::<PublicKey>();
        let _ = SecretKey::from_text(&text);
    }

    /// Headers right, so the bytes reach the bodies' parsers.
    #[test]
    fn no_parser_panics_on_any_body(kind in any::<u8>(), body in vec(any::<u8>(), 0..1500)) {
        let mut file = vec![0xED, 0xC5, 3, kind, 0, 0, 0, 1];
        file.extend_from_slice(&body);
        let _ = Packet::parse(&file);
        let mut video = vec![0xED, 0x56, 1, kind];
        video.extend_from_slice(&body);
        let _ = Control::parse(&video);
        let _ = Repair::parse(&video);
    }
}
