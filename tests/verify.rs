//! How a received file is verified (README, Security): by default once every block matched its
//! published digest, reporting the announced MD5 and SHA-256; with `recv --verify-file` the whole
//! file's digests are computed too. And the sender's side of that bargain: a file that changes
//! while it is sent aborts the session. Loopback only.

mod common;

use common::{TempDir, edited_while_sent, random_file, recv_with, text};
use edm_cast_proto::wire::{FeedbackAddr, FileDigests};
use edm_cast_proto::{Destination, FileInfo, Sender, SenderConfig, SenderEvent};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_file_changed_at_the_sender_while_it_is_sent_aborts_the_session() {
    let dir = TempDir::new("changed");
    let src = dir.path().join("notes.bin");
    random_file(&src, 4 << 20, 61);
    let out = dir.path().join("out");
    let (se, re) = edited_while_sent("239.77.215.1:48151", &src, &src, &out);
    assert!(
        se.contains(&format!(
            "edm-cast: {} changed while it was sent (its size or modification time is not what it \
             was when its MD5 was computed): the session is aborted",
            src.display()
        )),
        "{se}"
    );
    assert!(re.contains("aborted"), "{re}");
    assert!(!out.join("notes.bin").exists(), "{re}");
}

/// A sender that announces `digests` for `data` (whatever they are), on loopback, until its
/// session ends (at most `LIMIT`).
fn lying_sender(group: SocketAddr, data: &[u8], digests: FileDigests) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.set_multicast_loop_v4(true).unwrap();
    socket.set_nonblocking(true).unwrap();
    let cfg = SenderConfig {
        session: 0x5eed_f11e,
        feedback: FeedbackAddr::Source {
            port: socket.local_addr().unwrap().port(),
        },
        min_receivers: 2,
        wait: Some(Duration::from_secs(20)),
        linger: Duration::from_millis(500),
        ..SenderConfig::default()
    };
    let info = FileInfo {
        name: "lies.bin".into(),
        size: Some(data.len() as u64),
        digests: Some(digests),
    };
    let mut sender = Sender::new(cfg, info, Instant::now()).unwrap();
    let (until, mut buf, mut inbox) = (Instant::now() + LIMIT, Vec::new(), [0u8; 2048]);
    while !sender.is_finished() {
        assert!(Instant::now() < until, "the lying sender did not finish");
        let now = Instant::now();
        while let Ok((n, from)) = socket.recv_from(&mut inbox) {
            sender.handle_datagram(now, from, &inbox[..n]);
        }
        if sender.poll_timeout().is_some_and(|t| t <= now) {
            sender.handle_timeout(now);
        }
        // About 20 MB/s: what loopback receivers take without loss.
        for _ in 0..16 {
            while let Some(ev) = sender.poll_event() {
                if let SenderEvent::NeedBlock { block, offset, len } = ev {
                    let at = offset as usize;
                    sender.supply_block(block, data[at..at + len].to_vec());
                }
            }
            match sender.poll_transmit(now, &mut buf) {
                Some(Destination::Group) => drop(socket.send_to(&buf, group)),
                Some(Destination::Unicast(to)) => drop(socket.send_to(&buf, to)),
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn verify_file_catches_digests_that_the_verified_blocks_do_not_reproduce() {
    let dir = TempDir::new("verify-file");
    let src = dir.path().join("lies.bin");
    random_file(&src, 2 << 20, 62);
    let data = std::fs::read(&src).unwrap();
    // Digests of other bytes: only a sender that lies (or a file changed where the sender
    // cannot see it) announces such; every block still matches the digest it publishes.
    let wrong = FileDigests {
        md5: [0x11; 16],
        sha256: [0x22; 32],
    };
    let group = "239.77.215.2:48152";
    let (plain_out, full_out) = (dir.path().join("plain"), dir.path().join("full"));
    let status = dir.path().join("plain.jsonl");
    let plain = recv_with(
        group,
        &plain_out,
        "pc-plain",
        &["--status", status.to_str().unwrap()],
    );
    let full = recv_with(group, &full_out, "pc-full", &["--verify-file"]);
    lying_sender(group.parse().unwrap(), &data, wrong);

    // --verify-file computes the file's MD5, finds it is not the announced one, keeps nothing.
    let full = full.wait(LIMIT);
    let (fo, fe) = text(&full);
    assert_eq!(full.status.code(), Some(1), "{fo}\n{fe}");
    assert!(
        fe.contains(&format!(
            "lies.bin: MD5 mismatch (expected {}",
            "11".repeat(16)
        )),
        "{fe}"
    );
    assert!(!full_out.join("lies.bin").exists());

    // The default takes the verified blocks, which are the sender's bytes, and reports the
    // announced digests, saying how it verified.
    let plain = plain.wait(LIMIT);
    let (po, pe) = text(&plain);
    assert!(plain.status.success(), "{po}\n{pe}");
    assert_eq!(std::fs::read(plain_out.join("lies.bin")).unwrap(), data);
    assert!(
        pe.contains(&format!(
            "verified: md5 {}, sha256 {} (as announced: every block matched its digest)",
            "11".repeat(16),
            "22".repeat(32)
        )),
        "{pe}"
    );
    let done = std::fs::read_to_string(&status).unwrap();
    let done = done
        .lines()
        .find(|l| l.contains("\"event\":\"file_done\""))
        .unwrap_or_else(|| panic!("no file_done: {done}"));
    assert!(done.contains("\"verified\":\"blocks\""), "{done}");
    assert!(
        done.contains(&format!("\"md5\":\"{}\"", "11".repeat(16))),
        "{done}"
    );
}
