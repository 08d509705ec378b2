//! Cut-through (PROTOCOL.md 5.3, 5.7): a growing source's source symbols go out as soon as their
//! bytes are in, its blocks interleaved over what is available, so the class is done soon after
//! the download; a file on disk is sent over W blocks at a time, their turns staggered.

use crate::class::{Class, Command, DIGESTS, PACKET_TIME, Peer, Source};
use crate::net::Link;
use crate::{assert_all_received, file_bytes, sender_config};
use edm_cast_proto::wire::{Packet, ReceiverState};
use edm_cast_proto::{FileInfo, Sender, SenderConfig, SenderEvent, SourceError};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the sender sent, in order, as far as these tests look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// An ANNOUNCE with this `sent_blocks`.
    Announce(u32),
    /// DIGESTS from this block on.
    Digests(u32),
    Data(u32, u32),
    Other,
}

/// Every datagram the sender has to send now, in order, its block reads served from `file`
/// (at most 10,000: a sender that never runs out fails the test).
fn datagrams(s: &mut Sender, now: Instant, file: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..10_000 {
        let sent = s.poll_transmit(now, &mut buf);
        let mut supplied = false;
        while let Some(ev) = s.poll_event() {
            if let SenderEvent::NeedBlock { block, offset, len } = ev {
                s.supply_block(block, file[offset as usize..][..len].to_vec());
                supplied = true;
            }
        }
        match sent {
            None if !supplied => return out,
            None => {}
            Some(_) => out.push(buf.clone()),
        }
    }
    panic!("the sender never ran out of datagrams");
}

/// Everything the sender has to send now, as these tests look at it.
fn drain(s: &mut Sender, now: Instant, file: &[u8]) -> Vec<Sent> {
    (datagrams(s, now, file).iter())
        .map(|d| match Packet::parse(d).unwrap().packet {
            Packet::Announce(a) => Sent::Announce(a.sent_blocks),
            Packet::Digests(d) => Sent::Digests(d.first_block),
            Packet::Data(d) => Sent::Data(d.block, d.esi),
            _ => Sent::Other,
        })
        .collect()
}

fn data(sent: &[Sent]) -> Vec<(u32, u32)> {
    (sent.iter())
        .filter_map(|s| match *s {
            Sent::Data(b, e) => Some((b, e)),
            _ => None,
        })
        .collect()
}

/// 16-byte symbols, 10 a block (11 in the first pass, with the 1% margin), W = 8; starts at once.
fn small() -> SenderConfig {
    SenderConfig {
        symbol_size: 16,
        block_symbols: 10,
        min_receivers: 0,
        ..sender_config(0)
    }
}

const BLOCK: usize = 16 * 10;

/// A `small` sender of a download whose size is not known, and its start.
fn unknown_size() -> (Sender, Instant) {
    let info = FileInfo {
        name: "f".into(),
        size: None,
        digests: None,
    };
    let now = Instant::now();
    (Sender::growing(small(), info, now).unwrap(), now)
}
/// First-pass symbols of a full block of `small`.
const F: u32 = 11;

/// A file on disk: every block sends its first-pass ESIs once, in order; at most W blocks are in
/// the pass at once, joining in order as others leave; and their ends are staggered, about one
/// block's symbols apart, so receivers decode one block at a time rather than W at once.
#[test]
fn a_file_on_disk_is_sent_over_w_blocks_at_a_time_their_ends_staggered() {
    // 19 blocks, the last one 4 symbols (5 in the first pass).
    let file = file_bytes(18 * BLOCK + 60, 41);
    let info = FileInfo {
        name: "f".into(),
        size: Some(file.len() as u64),
        digests: Some(DIGESTS),
    };
    let now = Instant::now();
    let mut s = Sender::new(small(), info, now).unwrap();
    let got = data(&drain(&mut s, now, &file));
    let first_pass = |b: u32| if b < 18 { F } else { 5 };
    let mut esis: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let (mut begun, mut ended) = (Vec::new(), Vec::new());
    for (i, &(b, esi)) in got.iter().enumerate() {
        let e = esis.entry(b).or_default();
        if e.is_empty() {
            begun.push(b);
        }
        e.push(esi);
        if esi + 1 == first_pass(b) {
            ended.push((b, i));
        }
        assert!(begun.len() - ended.len() <= 8, "more than W blocks at {i}");
    }
    for (b, e) in &esis {
        assert_eq!(*e, (0..first_pass(*b)).collect::<Vec<_>>(), "block {b}");
    }
    assert_eq!(begun, (0..19).collect::<Vec<_>>());
    // Receivers rely on this (6.3): block b's first symbol comes after every block up to b − W
    // has ended.
    let first_at = |b: u32| got.iter().position(|&(x, _)| x == b).unwrap();
    let end_at = |b: u32| ended.iter().find(|e| e.0 == b).unwrap().1;
    for b in 8..19 {
        assert!((0..=b - 8).all(|a| end_at(a) < first_at(b)), "block {b}");
    }
    // Full blocks end in the order they began (the short last one, with few symbols to spread,
    // ends sooner).
    let full: Vec<_> = (ended.iter().map(|e| e.0)).filter(|&b| b < 18).collect();
    assert_eq!(full, (0..18).collect::<Vec<_>>());
    // Until the last W (whose turns close up as fewer blocks are left), one block ends about
    // every F datagrams.
    for pair in ended[..18 - 8].windows(2) {
        assert!(pair[1].1 - pair[0].1 >= F as usize / 2, "{ended:?}");
    }
    assert_eq!(s.sent_blocks(), 19);
}

/// A block's source symbols go out as their bytes arrive, before the block is complete; its last
/// source symbol waits for the whole block, so the block's digest (known only then) goes out
/// before it, then the proactive repair, and an ANNOUNCE tells receivers at once that they may ask
/// for the block's repair.
#[test]
fn a_growing_source_sends_each_symbol_as_soon_as_its_bytes_are_in() {
    for size_known in [true, false] {
        // 20 blocks, the last one 40 bytes (3 symbols): windows 0..8, 8..16 and 16..20.
        let file = file_bytes(19 * BLOCK + 40, 42);
        let info = FileInfo {
            name: "f".into(),
            size: size_known.then_some(file.len() as u64),
            digests: None,
        };
        let mut now = Instant::now();
        let mut s = Sender::growing(small(), info, now).unwrap();
        assert_eq!(drain(&mut s, now, &file), [Sent::Announce(0)]);
        for b in 0..19u32 {
            let at = b as u64 * BLOCK as u64;
            now += Duration::from_millis(10);
            // 5 symbols and 3 bytes of the sixth: the 5 go out, without a digest (none yet).
            s.source_grew(now, at + 5 * 16 + 3);
            let want: Vec<_> = (0..5).map(|esi| Sent::Data(b, esi)).collect();
            assert_eq!(drain(&mut s, now, &file), want, "block {b}");
            // All but its last byte: every source symbol but the last.
            s.source_grew(now, at + BLOCK as u64 - 1);
            let want: Vec<_> = (5..9).map(|esi| Sent::Data(b, esi)).collect();
            assert_eq!(drain(&mut s, now, &file), want, "block {b}");
            // Complete: its digest, its last source symbol, its proactive repair symbol, and the
            // ANNOUNCE that says its first pass is over.
            s.source_grew(now, at + BLOCK as u64);
            let want = [
                Sent::Digests(b),
                Sent::Data(b, 9),
                Sent::Data(b, 10),
                Sent::Announce(b + 1),
            ];
            assert_eq!(drain(&mut s, now, &file), want, "block {b}");
            assert_eq!(s.sent_blocks(), b + 1);
        }
        // The last block: its first symbol goes out while the rest arrives; at the end the
        // size and MD5 are announced, then its digest and the rest of its pass.
        now += Duration::from_millis(10);
        s.source_grew(now, 19 * BLOCK as u64 + 20);
        assert_eq!(drain(&mut s, now, &file), [Sent::Data(19, 0)]);
        now += Duration::from_millis(10);
        s.source_ended(now, file.len() as u64, DIGESTS).unwrap();
        let sent = drain(&mut s, now, &file);
        let last = if size_known { 3 } else { 10 };
        let mut want = vec![Sent::Announce(19), Sent::Digests(19)];
        want.extend((1..last + 1).map(|esi| Sent::Data(19, esi)));
        want.push(Sent::Announce(20));
        assert_eq!(sent, want, "size known: {size_known}");
        assert_eq!(s.first_pass_done_at(), Some(now));
    }
}

/// A symbol sent before its block is complete is the very datagram the whole block gives (the
/// same bytes; in an encrypted session the same ciphertext, 10), and so is everything else the
/// first pass sends of a download: what differs from a file on disk is only the order.
#[test]
fn a_download_sends_the_datagrams_a_file_would() {
    use edm_cast_proto::SecretKey;
    use edm_cast_proto::file::sender::Encryption;
    use std::collections::BTreeMap;
    for encrypted in [false, true] {
        let file = file_bytes(11 * BLOCK + 70, 46);
        let cfg = SenderConfig {
            encryption: encrypted.then(|| Encryption {
                key: [3; 32],
                ephemeral: [4; 32],
                recipients: vec![SecretKey::from_seed([5; 32]).public()],
            }),
            ..small()
        };
        // Each DATA datagram by (block, ESI), once.
        let data_of = |s: &mut Sender, now: Instant, out: &mut BTreeMap<(u32, u32), Vec<u8>>| {
            for d in datagrams(s, now, &file) {
                if let Packet::Data(p) = Packet::parse(&d).unwrap().packet {
                    assert!(out.insert((p.block, p.esi), d.clone()).is_none());
                }
            }
        };
        let info = |digests| FileInfo {
            name: "f".into(),
            size: Some(file.len() as u64),
            digests,
        };
        let now = Instant::now();
        let mut whole = BTreeMap::new();
        let mut s = Sender::new(cfg.clone(), info(Some(DIGESTS)), now).unwrap();
        data_of(&mut s, now, &mut whole);
        let mut arriving = BTreeMap::new();
        let mut s = Sender::growing(cfg, info(None), now).unwrap();
        // In uneven pieces: a symbol and a half at a time.
        let mut at = 0;
        while at < file.len() as u64 {
            at += 24;
            if at >= file.len() as u64 {
                s.source_ended(now, file.len() as u64, DIGESTS).unwrap();
            } else {
                s.source_grew(now, at);
            }
            data_of(&mut s, now, &mut arriving);
        }
        assert_eq!(arriving.len(), whole.len(), "encrypted: {encrypted}");
        assert!(arriving == whole, "encrypted: {encrypted}");
    }
}

/// A download of unknown size that ends before bytes it already sent as source symbols (a shell
/// bug or a lying source) is refused, not announced.
#[test]
fn a_download_cannot_end_before_the_symbols_it_sent() {
    let file = file_bytes(3 * BLOCK, 47);
    let (mut s, now) = unknown_size();
    s.source_grew(now, BLOCK as u64 + 5 * 16);
    let sent = data(&drain(&mut s, now, &file));
    assert!(sent.contains(&(1, 4)), "{sent:?}");
    assert_eq!(
        s.source_ended(now, BLOCK as u64 + 4 * 16, DIGESTS),
        Err(SourceError::Shrunk {
            had: BLOCK as u64 + 5 * 16,
            got: BLOCK as u64 + 4 * 16
        })
    );
}

/// A source faster than the LAN: the blocks that are in share the turn, a block arriving later
/// joins it at its ESI 0, and no more than W blocks are in the pass at once: block 8 joins when
/// block 0 leaves, not before.
#[test]
fn blocks_that_arrive_while_others_are_sent_join_the_turn() {
    let file = file_bytes(16 * BLOCK, 43);
    let info = FileInfo {
        name: "f".into(),
        size: Some(file.len() as u64),
        digests: None,
    };
    let now = Instant::now();
    let mut s = Sender::growing(small(), info, now).unwrap();
    s.source_grew(now, 2 * BLOCK as u64);
    let mut buf = Vec::new();
    let mut sent = Vec::new();
    // Blocks 0 and 1 take turns for 3 symbols each, then blocks 2..10 are in.
    while sent.len() < 6 {
        sent.extend(data(&drain_one(&mut s, now, &file, &mut buf)));
    }
    assert_eq!(sent, [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]);
    s.source_grew(now, 10 * BLOCK as u64);
    sent.extend(data(&drain(&mut s, now, &file)));
    let at = |b: u32, esi: u32| sent.iter().position(|&x| x == (b, esi)).unwrap();
    // Blocks 2..8 join at once, at their ESI 0, right after the first six.
    let joined: Vec<_> = (2..8).map(|b| at(b, 0)).collect();
    assert!(joined.iter().all(|&i| i < 6 + 12), "{sent:?}");
    // 8 and 9 each wait for a block to leave.
    assert!(at(8, 0) > at(0, F - 1), "{sent:?}");
    assert!(at(9, 0) > at(1, F - 1), "{sent:?}");
    // Every first-pass symbol once.
    assert_eq!(sent.len(), 10 * F as usize);
    assert_eq!(s.sent_blocks(), 10);
}

/// One datagram (and the block reads it needs).
fn drain_one(s: &mut Sender, now: Instant, file: &[u8], buf: &mut Vec<u8>) -> Vec<Sent> {
    for _ in 0..10 {
        let sent = s.poll_transmit(now, buf);
        while let Some(ev) = s.poll_event() {
            if let SenderEvent::NeedBlock { block, offset, len } = ev {
                s.supply_block(block, file[offset as usize..][..len].to_vec());
            }
        }
        if sent.is_some() {
            return vec![match Packet::parse(buf).unwrap().packet {
                Packet::Data(d) => Sent::Data(d.block, d.esi),
                _ => Sent::Other,
            }];
        }
    }
    panic!("nothing to send");
}

/// Issue 14's case in the simulated LAN: real blocks (K = 1024, T = 1408, the link's 121 us a
/// datagram is 93 Mbit/s), a download at about half that (the 50 Mbit/s WAN), 4 receivers with 1%
/// loss, 32 MiB. Every receiver has the file almost as soon as the download is over: all that
/// follows its last byte is the last block's last symbol and its proactive repair (the symbols
/// before went out as they arrived), not the last block's whole first pass (0.12 s with blocks
/// sent once complete).
#[test]
fn a_download_at_half_the_lan_rate_leaves_a_short_tail() {
    let file = file_bytes(32 << 20, 44);
    let cfg = SenderConfig {
        symbol_size: 1408,
        block_symbols: 1024,
        ..sender_config(4)
    };
    let bytes_per_sec = 6_000_000;
    let source_time = Duration::from_secs_f64(file.len() as f64 / bytes_per_sec as f64);
    let mut class = Class::new(Link::default());
    let source = Source::Growing {
        bytes_per_sec,
        size_known: true,
    };
    class.send(&file, source, cfg);
    for _ in 0..4 {
        class.add_student(Peer::lossy(0.01), Command::Recv);
    }
    // When the sender has heard each receiver's Done.
    let mut done = BTreeMap::new();
    while !class.is_done() && class.elapsed() < Duration::from_secs(60) && class.step() {
        for r in class.sender().receivers() {
            if r.state == ReceiverState::Done {
                done.entry(r.id).or_insert(class.elapsed());
            }
        }
    }
    assert_all_received(&class, &file);
    assert_eq!(done.len(), 4);
    let last = *done.values().max().unwrap();
    let tail = last.saturating_sub(source_time);
    println!(
        "32 MiB at {bytes_per_sec} B/s: source {source_time:?}, every receiver done {tail:?} \
         after it ({:.3} x), the sender finished {:?} after it; a block's first pass takes {:?}",
        last.as_secs_f64() / source_time.as_secs_f64(),
        class.elapsed() - source_time,
        PACKET_TIME * 1035
    );
    assert!(tail < Duration::from_millis(20), "{tail:?}");
}

/// A download of unknown size arriving in uneven pieces: a block completed while the next one
/// is already in the pass has its digest sent before its remaining symbols (the next block's
/// DIGESTS does not wait for it), every DIGESTS carries some, and the pass ends once the
/// download has.
#[test]
fn a_block_completed_mid_pass_gets_its_digest_before_its_last_symbols() {
    let file = file_bytes(5 * BLOCK + 77, 44);
    let (mut s, now) = unknown_size();
    let mut sent = Vec::new();
    for cut in [
        3 * BLOCK as u64 / 2,
        3 * BLOCK as u64 + 20,
        file.len() as u64,
    ] {
        s.source_grew(now, cut);
        sent.extend(datagrams(&mut s, now, &file));
    }
    s.source_ended(now, file.len() as u64, DIGESTS).unwrap();
    sent.extend(datagrams(&mut s, now, &file));
    assert_eq!(s.sent_blocks(), 6);
    // When each block's digest first went out, and its last source symbol.
    let mut digest_at = BTreeMap::new();
    let mut last_at = BTreeMap::new();
    for (i, d) in sent.iter().enumerate() {
        match Packet::parse(d).unwrap().packet {
            Packet::Digests(d) => {
                assert!(!d.digests.is_empty(), "an empty DIGESTS at {i}");
                for b in d.first_block..d.first_block + d.digests.len() as u32 {
                    digest_at.entry(b).or_insert(i);
                }
            }
            Packet::Data(d) if d.esi == if d.block < 5 { 9 } else { 4 } => {
                last_at.insert(d.block, i);
            }
            _ => {}
        }
    }
    for b in 0..6u32 {
        assert!(digest_at[&b] < last_at[&b], "block {b}");
    }
}
