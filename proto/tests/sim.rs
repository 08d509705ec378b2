//! Deterministic simulation: one sender, many receivers, an in-memory network with seeded loss and
//! a fake clock. Seconds of protocol run in milliseconds, the same way every time.

use edm_cast_proto::rng::Rng;
use edm_cast_proto::wire::{Datagram, FeedbackAddr, FileDigests, Packet};
use edm_cast_proto::{
    Destination, FileInfo, ReceiveError, Receiver, ReceiverConfig, ReceiverEvent, Sender,
    SenderConfig, SenderEvent,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a receiver loses packets.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Each packet independently, with this probability.
    Random(f64),
    /// Gilbert model: from "good" a burst starts with probability `enter`, and ends with `leave`;
    /// every packet in a burst is lost.
    Burst { enter: f64, leave: f64 },
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    loss: Loss,
    /// Packets before this time are not seen (a late joiner).
    joins_at: Duration,
    /// After this time the receiver is switched off (a dead PC).
    dies_at: Option<Duration>,
    buffered_blocks: usize,
    /// Its MD5 check fails (a bad disk, say).
    corrupt: bool,
}

impl Peer {
    fn lossy(p: f64) -> Self {
        Peer {
            loss: Loss::Random(p),
            joins_at: Duration::ZERO,
            dies_at: None,
            buffered_blocks: 32,
            corrupt: false,
        }
    }
}

struct Node {
    peer: Peer,
    rx: Receiver,
    rng: Rng,
    in_burst: bool,
    file: Vec<u8>,
    finished: bool,
    error: Option<ReceiveError>,
    /// Per block: symbols received from the first pass (ESI below the first-pass count).
    first_pass: Vec<u32>,
}

struct Outcome {
    nodes: Vec<Node>,
    sender: Sender,
    /// Symbols sent per block.
    sent: Vec<u32>,
    elapsed: Duration,
}

/// The whole-file digests the simulated sender announces (the receivers' check is byte equality).
const DIGESTS: FileDigests = FileDigests {
    md5: [0; 16],
    sha256: [0; 32],
};

const SENDER: &str = "10.0.0.1:5000";
/// One data packet on the simulated link every this long (about 100 Mbit/s for 1 KiB packets).
const PACKET_TIME: Duration = Duration::from_micros(121);
/// One-way delay of feedback.
const FEEDBACK_DELAY: Duration = Duration::from_millis(1);

fn file_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn sender_config(min_receivers: usize) -> SenderConfig {
    SenderConfig {
        session: 0xC0FFEE,
        symbol_size: 256,
        block_symbols: 512,
        interleave: 8,
        min_receivers,
        wait: Some(Duration::from_secs(1)),
        feedback: FeedbackAddr::Source { port: 5000 },
        ..SenderConfig::default()
    }
}

/// Where the sender's bytes come from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// All there from the start.
    File,
    /// Arriving at this many bytes per second (a download), its size known from the start or not.
    Growing {
        bytes_per_sec: u64,
        size_known: bool,
    },
}

fn run(file: &[u8], peers: &[Peer], cfg: SenderConfig, limit: Duration) -> Outcome {
    run_from(file, peers, cfg, limit, Source::File)
}

fn run_from(
    file: &[u8],
    peers: &[Peer],
    cfg: SenderConfig,
    limit: Duration,
    source: Source,
) -> Outcome {
    let t0 = Instant::now();
    let sender_addr: SocketAddr = SENDER.parse().unwrap();
    let first_pass_k = |k: u32| k + (k as f64 * cfg.proactive).ceil() as u32;
    let mut sender = match source {
        Source::File => {
            let info = FileInfo {
                name: "class.iso".into(),
                size: Some(file.len() as u64),
                digests: Some(DIGESTS),
            };
            Sender::new(cfg.clone(), info, t0).unwrap()
        }
        Source::Growing { size_known, .. } => {
            let info = FileInfo {
                name: "class.iso".into(),
                size: size_known.then_some(file.len() as u64),
                digests: None,
            };
            Sender::growing(cfg.clone(), info, t0).unwrap()
        }
    };
    let layout = *sender.layout();
    let num_blocks = file
        .len()
        .div_ceil(cfg.symbol_size as usize * cfg.block_symbols as usize);
    let mut nodes: Vec<Node> = peers
        .iter()
        .enumerate()
        .map(|(i, &peer)| Node {
            peer,
            rx: Receiver::new(ReceiverConfig {
                id: 100 + i as u32,
                name: format!("pc-{i:02}"),
                seed: 7 + i as u64,
                buffered_blocks: peer.buffered_blocks,
                ..ReceiverConfig::default()
            }),
            rng: Rng::new(1000 + i as u64),
            in_burst: false,
            file: Vec::new(),
            finished: false,
            error: None,
            first_pass: vec![0; num_blocks],
        })
        .collect();
    let mut sent = vec![0u32; num_blocks];
    // Feedback in flight: (arrival, from receiver, bytes); and unicast ACKs to receivers.
    let mut to_sender: VecDeque<(Instant, usize, Vec<u8>)> = VecDeque::new();
    let mut buf = Vec::new();
    let mut now = t0;
    let addr_of = |i: usize| -> SocketAddr { format!("10.0.1.{}:6000", i + 1).parse().unwrap() };

    while now - t0 < limit {
        if let Source::Growing { bytes_per_sec, .. } = source
            && !sender.source_done()
        {
            let arrived = (bytes_per_sec as u128 * (now - t0).as_micros() / 1_000_000) as u64;
            if arrived >= file.len() as u64 {
                sender
                    .source_ended(now, file.len() as u64, DIGESTS)
                    .unwrap();
            } else {
                sender.source_grew(now, arrived);
            }
        }
        while to_sender.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, i, bytes) = to_sender.pop_front().unwrap();
            sender.handle_datagram(now, addr_of(i), &bytes);
        }
        if sender.poll_timeout().is_some_and(|t| t <= now) {
            sender.handle_timeout(now);
        }
        // The sender may send one data packet per packet time; control packets go at once.
        let mut data_sent = false;
        loop {
            while let Some(ev) = sender.poll_event() {
                if let SenderEvent::NeedBlock { block, offset, len } = ev {
                    let data = file[offset as usize..offset as usize + len].to_vec();
                    sender.supply_block(block, data);
                }
            }
            if data_sent {
                break;
            }
            let Some(dest) = sender.poll_transmit(now, &mut buf) else {
                // A repair for a block no longer in memory: supply it (above) and go on.
                if let Some(SenderEvent::NeedBlock { block, offset, len }) = sender.poll_event() {
                    sender.supply_block(block, file[offset as usize..][..len].to_vec());
                    continue;
                }
                break;
            };
            let is_data = matches!(
                Packet::parse(&buf),
                Ok(Datagram {
                    packet: Packet::Data(_),
                    ..
                })
            );
            if let Ok(Datagram {
                packet: Packet::Data(d),
                ..
            }) = Packet::parse(&buf)
            {
                sent[d.block as usize] += 1;
            }
            for (i, node) in nodes.iter_mut().enumerate() {
                if let Destination::Unicast(a) = dest
                    && a != addr_of(i)
                {
                    continue;
                }
                if now - t0 < node.peer.joins_at
                    || node.peer.dies_at.is_some_and(|d| now - t0 >= d)
                    || node.finished
                {
                    continue;
                }
                let lost = match node.peer.loss {
                    Loss::Random(p) => node.rng.unit() < p,
                    Loss::Burst { enter, leave } => {
                        let r = node.rng.unit();
                        node.in_burst = if node.in_burst { r >= leave } else { r < enter };
                        node.in_burst
                    }
                };
                if lost {
                    continue;
                }
                if let Ok(Datagram {
                    packet: Packet::Data(d),
                    ..
                }) = Packet::parse(&buf)
                {
                    let k = layout.symbols(d.block) as u32;
                    if d.esi < first_pass_k(k) {
                        node.first_pass[d.block as usize] += 1;
                    }
                }
                node.rx.handle_datagram(now, sender_addr, &buf);
            }
            data_sent = is_data;
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            if node.finished || node.peer.dies_at.is_some_and(|d| now - t0 >= d) {
                continue;
            }
            if now - t0 < node.peer.joins_at {
                continue;
            }
            if node.rx.poll_timeout().is_some_and(|t| t <= now) {
                node.rx.handle_timeout(now);
            }
            drive_receiver(node, now, file);
            while let Some(_to) = node.rx.poll_transmit(now, &mut buf) {
                to_sender.push_back((now + FEEDBACK_DELAY, i, buf.clone()));
            }
        }
        let all_done = nodes.iter().all(|n| n.finished || n.peer.dies_at.is_some());
        if sender.is_finished() && all_done {
            break;
        }
        now += if data_sent {
            PACKET_TIME
        } else {
            Duration::from_micros(500)
        };
    }
    Outcome {
        nodes,
        sender,
        sent,
        elapsed: now - t0,
    }
}

/// Plays the shell's part for a receiver: file writes, decode jobs, the MD5 check (here: equality).
fn drive_receiver(node: &mut Node, now: Instant, original: &[u8]) {
    while let Some(ev) = node.rx.poll_event() {
        match ev {
            ReceiverEvent::Joined(info) => node.file = vec![0; info.size.unwrap_or(0) as usize],
            ReceiverEvent::Store { offset, data } => write_at(&mut node.file, offset, &data),
            ReceiverEvent::Decode(job) => {
                let spilled = job.needs_spilled().then(|| {
                    let end = (job.offset as usize + job.len).min(node.file.len());
                    node.file[(job.offset as usize).min(end)..end].to_vec()
                });
                let (offset, block) = (job.offset, job.block);
                match job.run(spilled) {
                    Ok(bytes) => {
                        write_at(&mut node.file, offset, &bytes);
                        node.rx.handle_decoded(now, Ok(block));
                    }
                    Err(job) => node.rx.handle_decoded(now, Err(job)),
                }
            }
            ReceiverEvent::Complete { size, .. } => {
                node.file.resize(size as usize, 0);
                let ok = node.file == original && !node.peer.corrupt;
                node.rx.verified(now, ok);
                node.finished |= !ok;
            }
            ReceiverEvent::Finished => node.finished = true,
            ReceiverEvent::Failed(e) => {
                node.error = Some(e);
                node.finished = true;
            }
        }
    }
}

/// Like a file: writing past the end makes it longer.
fn write_at(file: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if file.len() < end {
        file.resize(end, 0);
    }
    file[offset as usize..end].copy_from_slice(data);
}

fn assert_all_received(out: &Outcome, file: &[u8]) {
    for (i, n) in out.nodes.iter().enumerate() {
        assert!(n.error.is_none(), "receiver {i}: {:?}", n.error);
        assert!(
            n.finished,
            "receiver {i} did not finish: {:?} {:?}",
            n.rx.progress(),
            n.rx.stats()
        );
        assert!(n.file == file, "receiver {i} has different bytes");
    }
    assert!(out.sender.is_finished(), "sender did not finish");
    let states: BTreeMap<u32, _> = out.sender.receivers().map(|r| (r.id, r.state)).collect();
    assert_eq!(states.len(), out.nodes.len());
    assert!(
        states
            .values()
            .all(|s| *s == edm_cast_proto::wire::ReceiverState::Done),
        "{states:?}"
    );
}

#[test]
fn twenty_receivers_with_independent_loss_get_exact_bytes_and_repair_is_max_not_sum() {
    let file = file_bytes(20 * 512 * 256 - 1000, 1);
    let peers: Vec<Peer> = (0..20)
        .map(|i| Peer::lossy([0.0, 0.05, 0.20][i % 3]))
        .collect();
    let cfg = sender_config(20);
    let out = run(&file, &peers, cfg.clone(), Duration::from_secs(60));
    assert_all_received(&out, &file);

    let layout = *out.sender.layout();
    let (mut repair, mut max_lack, mut sum_lack) = (0u64, 0u64, 0u64);
    for b in 0..layout.num_blocks() {
        let k = layout.symbols(b) as u32;
        let first = k + (k as f64 * cfg.proactive).ceil() as u32;
        let lack: Vec<u32> = out
            .nodes
            .iter()
            .map(|n| (k + 1).saturating_sub(n.first_pass[b as usize]))
            .collect();
        let max = *lack.iter().max().unwrap() as u64;
        repair += (out.sent[b as usize] - first) as u64;
        max_lack += max;
        sum_lack += lack.iter().map(|&l| l as u64).sum::<u64>();
    }
    // The neediest receiver loses 20% of the repair too, so a little over max/(1-0.2) is expected.
    let ratio = repair as f64 / max_lack as f64;
    println!(
        "blocks {}, repair symbols {repair}, max lack {max_lack}, sum of lacks {sum_lack}, \
         repair/max {ratio:.3}, simulated {:?}",
        layout.num_blocks(),
        out.elapsed
    );
    assert!((1.0..1.6).contains(&ratio), "repair/max = {ratio}");
    assert!(
        repair * 5 < sum_lack,
        "repair {repair} is not far below the sum {sum_lack}"
    );
}

#[test]
fn no_loss_means_no_repair() {
    let file = file_bytes(10 * 512 * 256, 2);
    let peers = vec![Peer::lossy(0.0); 16];
    let out = run(&file, &peers, sender_config(16), Duration::from_secs(30));
    assert_all_received(&out, &file);
    // At most the 1% proactive margin (the session ends once all are done, maybe before the last
    // window's margin went out).
    let repair = out.sender.stats().repair_symbols;
    assert!(repair <= 10 * 6, "{repair} repair symbols");
    assert_eq!(out.sender.stats().source_symbols, 10 * 512);
}

#[test]
fn burst_loss_is_repaired() {
    let file = file_bytes(12 * 512 * 256 + 77, 3);
    let burst = Peer {
        loss: Loss::Burst {
            enter: 0.005,
            leave: 0.1,
        },
        ..Peer::lossy(0.0)
    };
    let peers = vec![burst, burst, Peer::lossy(0.01), Peer::lossy(0.2)];
    let out = run(&file, &peers, sender_config(4), Duration::from_secs(60));
    assert_all_received(&out, &file);
}

#[test]
fn a_late_joiner_catches_up() {
    let file = file_bytes(16 * 512 * 256, 4);
    let late = Peer {
        joins_at: Duration::from_millis(400),
        ..Peer::lossy(0.05)
    };
    let peers = vec![Peer::lossy(0.05), Peer::lossy(0.0), late];
    let out = run(&file, &peers, sender_config(2), Duration::from_secs(60));
    assert_all_received(&out, &file);
}

#[test]
fn a_dead_receiver_is_dropped_and_does_not_hold_the_class() {
    let file = file_bytes(16 * 512 * 256, 5);
    let dead = Peer {
        dies_at: Some(Duration::from_millis(300)),
        ..Peer::lossy(0.05)
    };
    let peers = vec![Peer::lossy(0.05), dead, Peer::lossy(0.01)];
    let out = run(&file, &peers, sender_config(3), Duration::from_secs(60));
    assert!(out.sender.is_finished());
    for i in [0, 2] {
        assert!(out.nodes[i].finished && out.nodes[i].file == file);
    }
    let dead = out.sender.receivers().find(|r| r.id == 101).unwrap();
    assert!(dead.dropped, "{dead:?}");
    // Dropped after the receiver timeout, not held for ever.
    assert!(out.elapsed < Duration::from_secs(15), "{:?}", out.elapsed);
}

#[test]
fn tiny_memory_budget_spills_to_the_file_and_still_decodes() {
    let file = file_bytes(24 * 512 * 256 + 5, 6);
    let peer = Peer {
        buffered_blocks: 2,
        ..Peer::lossy(0.1)
    };
    let out = run(
        &file,
        &[peer, peer],
        sender_config(2),
        Duration::from_secs(60),
    );
    assert_all_received(&out, &file);
    assert!(out.nodes[0].rx.stats().spilled_blocks > 0);
}

#[test]
fn held_repair_symbols_stay_within_the_memory_budget() {
    // A late joiner lives on repair symbols; with room for one block it must forget some and
    // ask again, and still end with the exact file.
    let file = file_bytes(24 * 512 * 256, 13);
    let late = Peer {
        buffered_blocks: 1,
        joins_at: Duration::from_millis(800),
        ..Peer::lossy(0.2)
    };
    let out = run(
        &file,
        &[Peer::lossy(0.2), late],
        sender_config(1),
        Duration::from_secs(120),
    );
    assert_all_received(&out, &file);
    let stats = out.nodes[1].rx.stats();
    println!("late joiner: {stats:?}");
    assert!(stats.forgotten_symbols > 0, "{stats:?}");
}

#[test]
fn empty_and_one_byte_files() {
    for len in [0usize, 1, 255, 257] {
        let file = file_bytes(len, 7);
        let out = run(
            &file,
            &[Peer::lossy(0.1)],
            sender_config(1),
            Duration::from_secs(30),
        );
        assert_all_received(&out, &file);
    }
}

#[test]
fn with_no_receiver_the_sender_sends_once_and_ends() {
    let file = file_bytes(4 * 512 * 256, 8);
    let mut cfg = sender_config(0);
    cfg.wait = None;
    let out = run(&file, &[], cfg, Duration::from_secs(30));
    assert!(out.sender.is_finished());
    assert_eq!(out.sender.stats().repair_symbols, 4 * 6);
}

#[test]
fn an_abort_reaches_the_receivers() {
    let t0 = Instant::now();
    let file = file_bytes(4 * 512 * 256, 9);
    let info = FileInfo {
        name: "x".into(),
        size: Some(file.len() as u64),
        digests: Some(DIGESTS),
    };
    let mut sender = Sender::new(sender_config(0), info, t0).unwrap();
    let mut rx = Receiver::new(ReceiverConfig::default());
    let from: SocketAddr = SENDER.parse().unwrap();
    let mut buf = Vec::new();
    let announce = sender.poll_transmit(t0, &mut buf);
    assert_eq!(announce, Some(Destination::Group));
    rx.handle_datagram(t0, from, &buf);
    sender.abort(t0);
    while sender.poll_transmit(t0, &mut buf).is_some() {
        rx.handle_datagram(t0, from, &buf);
    }
    let events: Vec<_> = std::iter::from_fn(|| rx.poll_event()).collect();
    assert!(
        matches!(
            events.last(),
            Some(ReceiverEvent::Failed(ReceiveError::Aborted))
        ),
        "{events:?}"
    );
}

#[test]
fn hostile_input_is_counted_never_fatal() {
    let t0 = Instant::now();
    let from: SocketAddr = SENDER.parse().unwrap();
    let file = file_bytes(3 * 512 * 256, 10);
    let info = FileInfo {
        name: "../../etc/passwd".into(),
        size: Some(file.len() as u64),
        digests: Some(DIGESTS),
    };
    let mut sender = Sender::new(sender_config(0), info, t0).unwrap();
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut rng = Rng::new(99);
    let mut buf = Vec::new();
    let mut real = Vec::new();
    for _ in 0..200 {
        while let Some(ev) = sender.poll_event() {
            if let SenderEvent::NeedBlock { block, offset, len } = ev {
                sender.supply_block(block, file[offset as usize..][..len].to_vec());
            }
        }
        if sender.poll_transmit(t0, &mut buf).is_some() {
            real.push(buf.clone());
        }
    }
    assert!(real.len() > 100);
    let mut garbage = 0;
    for i in 0..50_000 {
        let mut p = real[i % real.len()].clone();
        match rng.next_u64() % 4 {
            0 => {
                let at = rng.next_u64() as usize % p.len();
                p[at] ^= 1 << (rng.next_u64() % 8);
            }
            1 => p.truncate(rng.next_u64() as usize % p.len()),
            2 => {
                p = (0..rng.next_u64() % 1600)
                    .map(|_| rng.next_u64() as u8)
                    .collect()
            }
            _ => {
                // A valid header of the right session, random body.
                p.truncate(8);
                p.extend((0..rng.next_u64() % 40).map(|_| rng.next_u64() as u8));
            }
        }
        rx.handle_datagram(t0, from, &p);
        sender.handle_datagram(t0, from, &p);
        garbage += 1;
        while let Some(ev) = rx.poll_event() {
            if let ReceiverEvent::Decode(job) = ev {
                let spilled = job.needs_spilled().then(|| vec![0; job.len]);
                let _ = job.run(spilled);
            }
        }
    }
    let counted = rx.stats().dropped.total() + rx.stats().symbols;
    assert!(counted > 0 && counted <= garbage);
    assert!(sender.stats().dropped.total() > 40_000);
}

/// Simulated time is deterministic, so the protocol's own overhead can be asserted: with real block
/// sizes and 5% loss the whole transfer, repair rounds and all, ends soon after the last datagram
/// that the link had to carry anyway.
#[test]
fn the_repair_tail_is_short() {
    let file = file_bytes(16 << 20, 11);
    let peers = vec![Peer::lossy(0.05); 8];
    let cfg = SenderConfig {
        symbol_size: 1408,
        block_symbols: 1024,
        ..sender_config(8)
    };
    let out = run(&file, &peers, cfg, Duration::from_secs(60));
    assert_all_received(&out, &file);
    let s = out.sender.stats();
    let link_time = PACKET_TIME * (s.source_symbols + s.repair_symbols) as u32;
    let bytes = s.repair_symbols as f64 / s.source_symbols as f64;
    println!(
        "16 MiB, 8 receivers, 5% loss: {:?} simulated, {link_time:?} of data on the link, \
         repair {:.3} of source",
        out.elapsed, bytes
    );
    assert!(
        out.elapsed < link_time + Duration::from_millis(600),
        "{:?}",
        out.elapsed
    );
    assert!(bytes < 0.1, "{bytes}");
}

#[test]
fn the_sender_refuses_what_receivers_would_refuse() {
    let t0 = Instant::now();
    let info = |size| FileInfo {
        name: "f".into(),
        size: Some(size),
        digests: Some(DIGESTS),
    };
    let bad = [
        SenderConfig {
            interleave: 0,
            ..sender_config(1)
        },
        SenderConfig {
            proactive: 1.5,
            ..sender_config(1)
        },
        SenderConfig {
            feedback: FeedbackAddr::Source { port: 0 },
            ..sender_config(1)
        },
        SenderConfig {
            symbol_size: 1437,
            ..sender_config(1)
        },
        SenderConfig {
            block_symbols: 8193,
            ..sender_config(1)
        },
    ];
    for cfg in bad {
        let e = Sender::new(cfg.clone(), info(1000), t0).err();
        assert!(e.is_some(), "{cfg:?} was accepted");
    }
    let e = Sender::new(sender_config(1), info(1 << 50), t0)
        .err()
        .unwrap();
    assert!(e.to_string().contains("needs more than"), "{e}");
}

#[test]
fn a_receiver_whose_check_fails_is_reported_failed_not_waited_for() {
    let file = file_bytes(6 * 512 * 256, 12);
    let bad = Peer {
        corrupt: true,
        ..Peer::lossy(0.05)
    };
    let out = run(
        &file,
        &[Peer::lossy(0.05), bad],
        sender_config(2),
        Duration::from_secs(30),
    );
    assert!(out.sender.is_finished());
    assert!(out.nodes[0].finished && out.nodes[0].file == file);
    let states: Vec<_> = out
        .sender
        .receivers()
        .map(|r| (r.id, r.state, r.dropped))
        .collect();
    assert_eq!(
        states,
        [
            (100, edm_cast_proto::wire::ReceiverState::Done, false),
            (101, edm_cast_proto::wire::ReceiverState::Failed, false)
        ]
    );
    // Told, not timed out: the session ends well before the receiver timeout would drop it.
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
}

/// A download of unknown size (no Content-Length): blocks go out as they arrive, the size and MD5
/// come at the end, and every receiver, a late one too, gets exactly the bytes. The class is done
/// soon after the source is: the LAN time hides under the download's.
#[test]
fn a_growing_source_of_unknown_size_is_sent_while_it_arrives() {
    for size_known in [false, true] {
        let file = file_bytes(20 * 512 * 256 + 12_345, 13);
        let mut peers = vec![Peer::lossy(0.05); 5];
        peers[4].joins_at = Duration::from_secs(1);
        // About half the simulated link's rate, so the sender keeps waiting for the source.
        let bytes_per_sec = 1_000_000;
        let source_time = Duration::from_secs_f64(file.len() as f64 / bytes_per_sec as f64);
        let out = run_from(
            &file,
            &peers,
            sender_config(5),
            Duration::from_secs(60),
            Source::Growing {
                bytes_per_sec,
                size_known,
            },
        );
        assert_all_received(&out, &file);
        let s = out.sender.stats();
        println!(
            "growing source (size known: {size_known}): source {source_time:?}, class done after \
             {:?}, repair {:.3} of source",
            out.elapsed,
            s.repair_symbols as f64 / s.source_symbols as f64
        );
        assert_eq!(out.sender.layout().padded(), !size_known);
        assert!(
            out.elapsed < source_time + Duration::from_secs(2),
            "{:?}",
            out.elapsed
        );
    }
}

/// At 30% loss receivers often miss the ANNOUNCE that brings the size, and may decode the padded
/// last block before they know it is the last: they still end with the right length and bytes.
#[test]
fn a_growing_source_reaches_very_lossy_receivers() {
    let file = file_bytes(9 * 512 * 256 + 77, 14);
    let peers = vec![Peer::lossy(0.3); 3];
    let out = run_from(
        &file,
        &peers,
        sender_config(3),
        Duration::from_secs(60),
        Source::Growing {
            bytes_per_sec: 4_000_000,
            size_known: false,
        },
    );
    assert_all_received(&out, &file);
}
