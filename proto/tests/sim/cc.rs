//! Congestion control in the simulated class: the teacher's uplink, or one student's port, is a
//! bottleneck with a drop-tail buffer (`net::Bottleneck`), and the sender's rate (`Sender::rate`,
//! which the class's pacer follows as the shell's does) must find it from the receivers' PACE
//! echoes alone, starting far below it and with a ceiling far above it.

use crate::class::{Class, Command, Peer, Source};
use crate::net::{Bottleneck, Link, Loss};
use crate::tcp::Growth;
use crate::{assert_all_received, file_bytes, lab_config, sender_config};
use edm_cast_proto::wire::{DATA_OVERHEAD, ReceiverState};
use edm_cast_proto::{CcConfig, SenderConfig};
use std::time::Duration;

/// The simulated links run at 20 Mbit/s: the lab's 100 Mbit/s scaled down with the sim's smaller
/// symbols (256 bytes), so a run stays short.
const LINK: u64 = 20_000_000;

fn cc(ceiling: f64) -> SenderConfig {
    SenderConfig {
        cc: Some(CcConfig {
            ceiling,
            // As the shell's default (at most 25 Mbit/s against a 100 Mbit/s link).
            min_rate: LINK as f64 / 4.0,
            // As the shell's 25 Mbit/s against a 100 Mbit/s link: two doublings below it.
            initial: LINK as f64 / 4.0,
            packet_bits: ((256 + DATA_OVERHEAD + 42) * 8) as f64,
        }),
        ..sender_config(8)
    }
}

/// The teacher's cable: `LINK`, behind a buffer of 50 ms (as the lab's tbf).
fn uplink() -> Link {
    Link {
        bottleneck: Some(Bottleneck {
            bits_per_sec: LINK,
            buffer: (LINK / 8 / 20 / 340) as usize,
        }),
        ..Link::default()
    }
}

/// Seconds the file's source symbols take on the link, as datagrams (the sim's small symbols
/// carry a sixth of their size again in headers; the lab's a thirty-fourth).
fn link_secs(file: &[u8]) -> f64 {
    let datagrams = file.len().div_ceil(256);
    (datagrams * (256 + DATA_OVERHEAD + 42) * 8) as f64 / LINK as f64
}

/// A PC at 1% loss behind its own switch port of `bits_per_sec` with a drop-tail buffer of
/// `buffer` datagrams (tools/lanlab.sh's PORT_RATES: tbf with a 50 ms buffer, at least 64 KiB).
fn behind_slow_port(bits_per_sec: u64, buffer: usize) -> Peer {
    Peer {
        down: Link {
            loss: Loss::Random(0.01),
            bottleneck: Some(Bottleneck {
                bits_per_sec,
                buffer,
            }),
            ..Link::default()
        },
        ..Peer::default()
    }
}

/// 8 receivers with 5% random loss each, the sender's ceiling 50 times the link: the class gets
/// the file near the link's rate, with little lost in the queue and little repair.
#[test]
fn eight_lossy_receivers_behind_a_bottleneck_get_the_file_near_the_link_rate() {
    let file = file_bytes(48 * 512 * 256, 31);
    let mut class = Class::new(uplink());
    class.send(&file, Source::File, cc(1e9));
    for _ in 0..8 {
        class.add_student(Peer::lossy(0.05), Command::Recv);
    }
    class.drive(Duration::from_secs(120));
    assert_all_received(&class, &file);
    let link = class.net.up(0);
    let s = class.sender().stats();
    // All done before the first pass's last repair symbols went out: that is its end.
    let secs = (class.sender().first_pass_done_at().unwrap_or(class.now())
        - class.sender().started_at().unwrap())
    .as_secs_f64();
    let total = (class.now() - class.sender().started_at().unwrap()).as_secs_f64();
    let bytes = s.bytes as f64 / file.len() as f64;
    println!(
        "cc, 8 x 5%: first pass {secs:.2} s, all done {total:.2} s = {:.2} x link, sender bytes \
         {bytes:.3} x file, uplink {link:?}",
        total / link_secs(&file)
    );
    // The receivers' own loss is not taken for congestion: the rate is not cut to a fraction.
    assert!(total < 1.35 * link_secs(&file), "{total}");
    assert!(bytes < 1.2, "{bytes}");
    // The queue overflows a little while slow start finds the link, never for long.
    assert!(link.overflowed * 25 < link.datagrams, "{link:?}");
}

/// `main.rs`'s sender faster than its bottleneck (10 Mbit/s, a 32-datagram buffer), where a third
/// of what the fixed rate sends is dropped in the queue: with congestion control and a ceiling
/// a hundred times the link, little is.
#[test]
fn congestion_control_keeps_a_small_queue_from_overflowing() {
    let file = file_bytes(8 * 512 * 256, 15);
    let uplink = Link {
        bottleneck: Some(Bottleneck {
            bits_per_sec: 10_000_000,
            buffer: 32,
        }),
        ..Link::default()
    };
    let mut class = Class::new(uplink);
    let mut cfg = cc(1e9);
    if let Some(c) = &mut cfg.cc {
        (c.initial, c.min_rate) = (2.5e6, 1e6);
    }
    class.send(&file, Source::File, SenderConfig { ..cfg });
    for _ in 0..4 {
        class.add_student(Peer::lossy(0.0), Command::Recv);
    }
    class.drive(Duration::from_secs(60));
    let link = class.net.up(0);
    println!(
        "teacher's uplink with cc: {link:?}, simulated {:?}",
        class.elapsed()
    );
    for (i, l) in class.listeners().enumerate() {
        assert!(l.error.is_none() && l.file == file, "receiver {i}");
    }
    // Without it, 4344 of 8509 (main.rs).
    assert!(link.overflowed * 10 < link.datagrams, "{link:?}");
}

/// 7 receivers on the class's link and one behind a port a tenth of it: the sender does not
/// follow the slow one down (it is shown as too slow), the others finish near the link's rate,
/// and the slow one is left behind, not waited for with repair for ever.
#[test]
fn a_receiver_behind_a_slow_port_does_not_hold_the_class() {
    let file = file_bytes(32 * 512 * 256, 33);
    let mut class = Class::new(uplink());
    class.send(&file, Source::File, cc(1e9));
    for _ in 0..7 {
        class.add_student(Peer::lossy(0.01), Command::Recv);
    }
    class.add_student(behind_slow_port(LINK / 10, 64), Command::Recv);
    let mut seen_slow = false;
    while !(0..7).all(|i| class.listener(i).finished) && class.elapsed() < Duration::from_secs(60) {
        assert!(class.step());
        seen_slow |= class
            .sender()
            .receivers()
            .any(|r| r.id == 107 && class.sender().is_slow(r));
    }
    let fast = (class.now() - class.sender().started_at().unwrap()).as_secs_f64();
    assert!(seen_slow, "the slow receiver was never taken for slow");
    for i in 0..7 {
        let l = class.listener(i);
        assert!(l.error.is_none() && l.file == file, "receiver {i}");
    }
    println!(
        "7 fast done at {fast:.2} s = {:.2} x link, rate {:?}",
        fast / link_secs(&file),
        class.sender().rate()
    );
    assert!(fast < 1.4 * link_secs(&file), "{fast}");
    class.drive(Duration::from_secs(120));
    assert!(class.sender().is_finished());
    let slow = class.listener(7);
    let state = class
        .sender()
        .receivers()
        .find(|r| r.id == 107)
        .unwrap()
        .state;
    // Either it got there from what was sent anyway, or it was left behind and told so.
    match state {
        ReceiverState::Done => assert!(slow.file == file),
        _ => assert!(
            matches!(
                slow.error,
                Some(edm_cast_proto::ReceiveError::LeftBehind { .. })
            ),
            "{:?} {state:?}",
            slow.error
        ),
    }
    let bytes = class.sender().stats().bytes as f64 / file.len() as f64;
    println!("slow one {state:?}; sender bytes {bytes:.3} x file");
    assert!(bytes < 1.5, "{bytes}");
}

/// Slow start finds the teacher's 100 Mbit/s cable without overflowing its queue, at no loss and
/// at 1%, for 2 receivers and 8: almost nothing but the file and its first pass goes out, near
/// the link's time. Fails on the old controller (doubling once per 100 ms, a queue believed only
/// from two reports 100 ms apart): at 0% it sent 1.61-1.66 x the file (5152 of 19056 datagrams
/// dropped in the queue, 8 of 12 blocks repaired) in 1.42-1.50 x the link's time.
#[test]
fn slow_start_leaves_before_the_teachers_queue_overflows() {
    for (receivers, loss) in [(8, 0.0), (2, 0.0), (8, 0.01), (2, 0.01)] {
        let file = file_bytes(16 << 20, 45);
        let mut class = Class::new(Link::lab_uplink());
        class.send(&file, Source::File, lab_config(receivers));
        for _ in 0..receivers {
            class.add_student(Peer::lossy(loss), Command::Recv);
        }
        class.drive(Duration::from_secs(60));
        assert_all_received(&class, &file);
        let sender = class.sender();
        let s = sender.stats();
        let datagrams = s.source_symbols + s.repair_symbols + s.control_packets;
        let bytes = s.bytes as f64 / file.len() as f64;
        let wire = (s.bytes + 42 * datagrams) as f64 / file.len() as f64;
        let link_secs =
            (file.len().div_ceil(1408) * (1408 + DATA_OVERHEAD + 42) * 8) as f64 / 100e6;
        let total = (class.now() - sender.started_at().unwrap()).as_secs_f64();
        let uplink = class.net.up(0);
        println!(
            "{receivers} x {:.0}%: sender bytes {bytes:.3} x file, wire {wire:.3}, {} of {} \
             blocks repaired, all done {total:.2} s = {:.2} x link, uplink {uplink:?}",
            loss * 100.0,
            sender.repaired_blocks(),
            sender.layout().num_blocks(),
            total / link_secs
        );
        assert_eq!(uplink.overflowed, 0, "{receivers} x {loss}");
        // The first pass (K + 1%) and the headers; at 1% a few blocks' repair besides.
        assert!(bytes < 1.03 + loss, "{receivers} x {loss}: {bytes}");
        assert!(total < 1.2 * link_secs, "{receivers} x {loss}: {total}");
    }
}

/// The mixed class at the lab's scale: 7 PCs at 1% on the teacher's 100 Mbit/s cable and
/// one behind a slower switch port (a tenth, a fifth and two fifths of it, each below the floor:
/// half what the others take), `send`'s defaults. The 7 finish near the link's time, the sender
/// ends as soon as they are done, and the slow PC is left behind, told so on both sides, the
/// sender having sent little more than the file. Fails on the old code: its NEEDs were answered
/// (it loses under 80% at 20 and 40 Mbit/s), repair at the class's rate that its port dropped
/// and that took turns with the first pass: the 7 done at 1.81 x and 1.72 x the link, 2.34 x
/// and 2.36 x the file sent; and behind a 10 Mbit/s port the sender lingered 2 s for it.
#[test]
fn a_pc_behind_a_slow_port_gets_no_repair_and_is_not_waited_for() {
    let file = file_bytes(32 << 20, 47);
    let link_secs = (file.len().div_ceil(1408) * (1408 + DATA_OVERHEAD + 42) * 8) as f64 / 100e6;
    for mbit in [10, 20, 40] {
        let mut class = Class::new(Link::lab_uplink());
        class.send(&file, Source::File, lab_config(8));
        for _ in 0..7 {
            class.add_student(Peer::lossy(0.01), Command::Recv);
        }
        class.add_student(behind_slow_port(mbit * 1_000_000, 66), Command::Recv);
        while !(0..7).all(|i| class.listener(i).finished)
            && class.elapsed() < Duration::from_secs(60)
        {
            assert!(class.step());
        }
        let start = class.sender().started_at().unwrap();
        let fast = (class.now() - start).as_secs_f64();
        let slow_id = class.listener(7).rx_id;
        let took = class
            .sender()
            .receivers()
            .find(|r| r.id == slow_id)
            .and_then(|r| class.sender().slow_path(r));
        class.drive(Duration::from_secs(120));
        let sender = class.sender();
        let end = (sender.receivers()).map(|r| r.state).collect::<Vec<_>>();
        let finished = (class.now() - start).as_secs_f64();
        let bytes = sender.stats().bytes as f64 / file.len() as f64;
        println!(
            "7 at 1% + 1 behind {mbit} Mbit/s: the 7 done {fast:.2} s = {:.2} x link, sender \
             done {finished:.2} s, {bytes:.3} x file sent; slow path {took:?}",
            fast / link_secs
        );
        for i in 0..7 {
            let l = class.listener(i);
            assert!(l.error.is_none() && l.file == file, "{mbit}: receiver {i}");
        }
        assert!(fast < 1.25 * link_secs, "{mbit}: {fast}");
        assert!(sender.is_finished(), "{mbit}");
        // END goes out at once, not after the linger (2 s); its repeats, as many as the loss of
        // the slow PC's path asks (PROTOCOL 5.6), take 0.66 s at 10 Mbit/s, never over 1.8 s.
        assert!(
            finished < fast + 1.9,
            "{mbit}: sender done {finished}, the 7 {fast}"
        );
        assert!(bytes < 1.1, "{mbit}: {bytes}");
        // The teacher is told what its path took, under the floor.
        let (path, floor) = took.expect("the slow PC is shown too slow");
        assert!(
            path < floor && path < 1.5 * mbit as f64 * 1e6,
            "{mbit}: {took:?}"
        );
        assert_eq!(
            end.iter().filter(|s| **s == ReceiverState::Done).count(),
            7,
            "{mbit}: {end:?}"
        );
        assert!(
            matches!(
                class.listener(7).error,
                Some(edm_cast_proto::ReceiveError::LeftBehind { .. })
            ),
            "{mbit}: {:?}",
            class.listener(7).error
        );
    }
}

/// The whole class behind a link slower than `--min-rate` (all of them too slow to follow, none
/// slower than the others): their NEEDs are still answered and they are waited for, sent at
/// `min_rate` as promised, and every one gets the file. Only a PC outpaced by the others is left
/// to what is sent for them. Fails on the old code: the first one done, the others were left
/// behind once the linger (2 s) had passed, with 41% of the stream.
#[test]
fn a_class_all_below_the_floor_is_still_repaired() {
    let file = file_bytes(4 << 20, 49);
    let uplink = Link {
        bottleneck: Some(Bottleneck {
            bits_per_sec: 10_000_000,
            buffer: 66,
        }),
        ..Link::default()
    };
    let mut class = Class::new(uplink);
    class.send(&file, Source::File, lab_config(4));
    for _ in 0..4 {
        class.add_student(Peer::lossy(0.01), Command::Recv);
    }
    class.drive(Duration::from_secs(120));
    assert_all_received(&class, &file);
    let sender = class.sender();
    assert!(sender.is_finished());
    println!(
        "4 behind 10 Mbit/s, min-rate 25 Mbit/s: done in {:.2} s, {:.3} x file sent",
        (class.now() - sender.started_at().unwrap()).as_secs_f64(),
        sender.stats().bytes as f64 / file.len() as f64
    );
}

/// A PC outpaced by the class is left to what is sent for the others only while there are
/// others: the fast PC switched off mid-transfer (dropped), the slow one is repaired to the end.
#[test]
fn an_outpaced_pc_left_alone_is_repaired() {
    let file = file_bytes(8 << 20, 51);
    let mut class = Class::new(Link::lab_uplink());
    class.send(&file, Source::File, lab_config(2));
    class.add_student(
        Peer {
            dies_at: Some(Duration::from_millis(300)),
            ..Peer::lossy(0.01)
        },
        Command::Recv,
    );
    class.add_student(behind_slow_port(40_000_000, 66), Command::Recv);
    let mut outpaced = false;
    while !class.listener(1).finished && class.elapsed() < Duration::from_secs(120) {
        assert!(class.step());
        outpaced |= (class.sender().receivers()).any(|r| class.sender().is_outpaced(r));
    }
    assert!(outpaced, "the slow PC was never outpaced");
    let l = class.listener(1);
    assert!(l.error.is_none() && l.file == file, "{:?}", l.error);
    println!(
        "the slow PC alone: done at {:?}, {:.2} x the file sent",
        class.elapsed(),
        class.sender().stats().bytes as f64 / file.len() as f64
    );
}

/// One PC's switch port losing bursts (bench/burstloss.sh: the port closed for a few ms, about
/// 20 datagrams at 100 Mbit/s, about 5% in all), Gilbert's model at the lab's packet rate.
fn burst_port() -> Peer {
    Peer {
        down: Link {
            loss: Loss::Burst {
                enter: 0.0025,
                leave: 0.05,
            },
            ..Link::default()
        },
        ..Peer::default()
    }
}

/// Seconds until every receiver of `peers` has the file from `send` on the teacher's 100 Mbit/s
/// cable with `send`'s defaults (`cc`), or at the sim's fixed pace (`--cc off`, 1492 bytes per
/// `PACKET_TIME`: 98.6 Mbit/s), and the
/// sender's bytes over the file's.
fn class_time(peers: &[Peer], cc: bool, file: &[u8]) -> (f64, f64) {
    let mut class = Class::new(Link::lab_uplink());
    let cfg = lab_config(peers.len());
    let cfg = if cc {
        cfg
    } else {
        SenderConfig { cc: None, ..cfg }
    };
    class.send(file, Source::File, cfg);
    for p in peers {
        class.add_student(*p, Command::Recv);
    }
    class.drive(Duration::from_secs(120));
    assert_all_received(&class, file);
    let sender = class.sender();
    let secs = (class.now() - sender.started_at().unwrap()).as_secs_f64();
    (secs, sender.stats().bytes as f64 / file.len() as f64)
}

/// Loss that no rate cut helps — bursts at every PC's own port, one PC at 20% and the rest at
/// 1%, 10% at every PC — comes with no queue: the rate stays near the link and the class is done
/// within 15% of the time at a fixed rate just under it (bench/compare.sh's burst, mixed and 10%
/// cases). Fails on the old controller, which took a burst above a PC's usual loss for
/// congestion and cut the rate to `min_rate`: with bursts at 8 ports it took 11.41 s against
/// 3.40 s (3.35 x); mixed 1.01 x, 10% 1.07 x. What is left is the controller's own sawtooth at
/// the link: with the staggered first pass and the 5 ms queue threshold after slow start (which
/// leaves a TCP flow its share) burst 1.05 x, mixed 0.93 x, 10% 1.10 x; with 10 ms it was 1.02,
/// 0.96 and 1.04 x.
#[test]
fn loss_without_a_queue_does_not_slow_the_class() {
    let file = file_bytes(32 << 20, 53);
    let mixed: Vec<Peer> = (0..8)
        .map(|i| Peer::lossy(if i == 0 { 0.2 } else { 0.01 }))
        .collect();
    let mut slow = Vec::new();
    for (name, peers) in [
        ("burst", vec![burst_port(); 8]),
        ("mixed", mixed),
        ("10%", vec![Peer::lossy(0.1); 8]),
    ] {
        let (with, with_bytes) = class_time(&peers, true, &file);
        let (fixed, fixed_bytes) = class_time(&peers, false, &file);
        println!(
            "{name}: cc {with:.2} s ({with_bytes:.3} x file), fixed rate {fixed:.2} s \
             ({fixed_bytes:.3} x file): {:.2} x",
            with / fixed
        );
        if with > 1.15 * fixed {
            slow.push(name);
        }
    }
    assert!(slow.is_empty(), "slowed by congestion control: {slow:?}");
}

/// A bottleneck whose buffer is too small for a queue to show in the round trip (2 ms: 17
/// datagrams at 100 Mbit/s, a cheap switch), at the teacher's 100 Mbit/s cable (every PC behind
/// it) or at one PC's port (70 Mbit/s, above the floor: followed; the teacher's cable the lab's).
/// At the cable its loss, at most PCs at once, is congestion, and the rate follows the link
/// rather than overrunning it (as the old controller did, which took any loss above a PC's usual
/// for congestion: 1.4% overflowed). At one PC's port the class still finishes, within bounds:
/// the port, overrun, drops most of the PACEs that PC would answer (seconds without a report), and
/// what reports come back hold the rate near what it took (the old controller: 26% overflowed,
/// 1.44 x the file sent; this one about 22% and 1.38 x).
#[test]
fn a_bottleneck_with_a_tiny_buffer_is_followed() {
    let file = file_bytes(32 << 20, 55);
    let link_secs = (file.len().div_ceil(1408) * (1408 + DATA_OVERHEAD + 42) * 8) as f64 / 100e6;
    let tiny = |bits_per_sec: u64| Bottleneck {
        bits_per_sec,
        buffer: (bits_per_sec / 8 / 500 / 1492) as usize,
    };
    for (name, uplink, port) in [
        ("uplink", tiny(100_000_000), None),
        (
            "port",
            Link::lab_uplink().bottleneck.unwrap(),
            Some(tiny(70_000_000)),
        ),
    ] {
        let mut class = Class::new(Link {
            bottleneck: Some(uplink),
            ..Link::default()
        });
        class.send(&file, Source::File, lab_config(8));
        for _ in 0..7 {
            class.add_student(Peer::lossy(0.01), Command::Recv);
        }
        let mut last = Peer::lossy(0.01);
        last.down.bottleneck = port;
        class.add_student(last, Command::Recv);
        class.drive(Duration::from_secs(120));
        assert_all_received(&class, &file);
        let sender = class.sender();
        let secs = (class.now() - sender.started_at().unwrap()).as_secs_f64();
        let bytes = sender.stats().bytes as f64 / file.len() as f64;
        // The teacher is host 0, the students 1 to 8.
        let queue = if port.is_none() {
            class.net.up(0)
        } else {
            class.net.down(8)
        };
        println!(
            "tiny buffer at the {name}: all done {secs:.2} s = {:.2} x link, {bytes:.3} x file, \
             {queue:?}",
            secs / link_secs
        );
        if port.is_none() {
            assert!(queue.overflowed * 40 < queue.datagrams, "{name}: {queue:?}");
            assert!(
                bytes < 1.08 && secs < 1.25 * link_secs,
                "{name}: {bytes} {secs}"
            );
        } else {
            assert!(
                bytes < 1.42 && secs < 1.8 * link_secs,
                "{name}: {bytes} {secs}"
            );
        }
    }
}

/// `bench/share.sh`'s port bottleneck: 4 PCs, each behind its own 100 Mbit/s switch port with a
/// 50 ms drop-tail queue, the teacher's cable unshaped; a TCP flow (`tcp.rs`: `growth` and a
/// receive window in segments) to the first PC runs for a second before `send` (congestion
/// control on, or at the fixed pace) starts, and until after it ends. Returns what the TCP flow
/// received during the send (its first and last second left out, as share.sh does) over the
/// port's rate, the send's seconds and the sender's bytes over the file's.
fn tcp_share(cc: bool, tcp: (Growth, f64), file: &[u8]) -> (f64, f64, f64) {
    let port = Link {
        bottleneck: Link::lab_uplink().bottleneck,
        ..Link::default()
    };
    let mut class = Class::new(Link::default());
    class.teacher_starts_at(Duration::from_secs(1));
    let cfg = lab_config(4);
    let cfg = if cc {
        cfg
    } else {
        SenderConfig { cc: None, ..cfg }
    };
    class.send(file, Source::File, cfg);
    for _ in 0..4 {
        let peer = Peer {
            down: port,
            ..Peer::default()
        };
        class.add_student(peer, Command::Recv);
    }
    class.add_tcp(0, tcp, Duration::ZERO, Duration::from_secs(60));
    class.drive(Duration::from_secs(60));
    assert_all_received(&class, file);
    let sender = class.sender();
    let start = sender.started_at().unwrap();
    let secs = (class.now() - start).as_secs_f64();
    let second = Duration::from_secs(1);
    let got = class
        .tcp(0)
        .bytes_between(start + second, class.now() - second);
    let share = got as f64 * 8.0 / 100e6 / (secs - 2.0);
    (share, secs, sender.stats().bytes as f64 / file.len() as f64)
}

/// A TCP flow through the same switch port as the class keeps at least 30% of it while `send`
/// sends with congestion control (the sharing target), where the fixed pace leaves it
/// 3-5%: CUBIC or Reno filling the port's queue, and CUBIC held to a window of 48 or 24 segments
/// (70 or 35 KB), as iperf3 was in the lab (its cwnd 40-85 KB alone, mostly 20-40 KB beside the
/// send; bench/share.sh). A flow held to its window gets its window per round trip, and the round
/// trip is the queue the send keeps up at the port. Fails on the old code, which let the queue
/// grow 10 ms above its lowest before it cut (5 ms now): 24% with the 24-segment window (36%
/// now), 36% with 48 (52%).
#[test]
fn a_tcp_flow_through_a_shared_port_keeps_a_third() {
    let file = file_bytes(48 << 20, 57);
    let mut short = Vec::new();
    for tcp in [
        (Growth::Cubic, f64::INFINITY),
        (Growth::Reno, f64::INFINITY),
        (Growth::Cubic, 48.0),
        (Growth::Cubic, 24.0),
    ] {
        let (share, secs, bytes) = tcp_share(true, tcp, &file);
        let (fixed, fixed_secs, fixed_bytes) = tcp_share(false, tcp, &file);
        println!(
            "{tcp:?}: TCP's share of the port {:.0}% beside cc (send {secs:.2} s, {bytes:.3} x \
             file), {:.0}% beside the fixed pace (send {fixed_secs:.2} s, {fixed_bytes:.3} x file)",
            share * 100.0,
            fixed * 100.0
        );
        if share < 0.3 {
            short.push((tcp, share));
        }
    }
    assert!(short.is_empty(), "TCP kept under 30%: {short:?}");
}
