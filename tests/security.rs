//! The real binary against a hostile student's PC, on loopback: a teacher's signed session reaches
//! PCs that trust its key while tools/attack.py forges DATA, END, ANNOUNCE and DIGESTS, replays
//! signed packets from an earlier lesson, and a rogue sender announces its own session first; and
//! `get` that trusts the lab's server ignores a rogue `serve` that answers first.

mod common;

use common::{
    Http, Proc, TempDir, attack_count, bin, md5_of, random_file, recv_with, send, text, www_with,
};
use edm_cast_proto::SecretKey;
use edm_cast_proto::auth::Seal;
use edm_cast_proto::wire::{Announce, End, EndReason, FeedbackAddr, FileDigests, Packet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LIMIT: Duration = Duration::from_secs(90);

/// `edm-cast keygen PATH`: the public key line.
fn keygen(path: &Path) -> String {
    let o = Command::new(bin())
        .arg("keygen")
        .arg(path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("mode 0600"), "{stderr}");
    stdout.trim().to_owned()
}

fn attack(args: &[&str]) -> Proc {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/attack.py");
    Proc::spawn("attack", Command::new("python3").arg(script).args(args))
}

/// What a recording of the teacher's session an hour ago would hold: its signed ANNOUNCE and END.
fn an_hour_ago(key: &Path, out: &Path) {
    let key = SecretKey::from_text(&std::fs::read_to_string(key).unwrap()).unwrap();
    let then = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 3_600_000;
    let announce = Packet::Announce(Announce {
        file_size: Some(1000),
        digests: Some(FileDigests {
            md5: [1; 16],
            sha256: [2; 32],
        }),
        padded: false,
        encrypted: false,
        sync: false,
        staggered: true,
        symbol_size: 1408,
        block_symbols: 1024,
        interleave: 8,
        sent_blocks: 1,
        feedback: FeedbackAddr::Source { port: 9 },
        name: "last-week.pdf".into(),
    });
    let end = Packet::End(End {
        reason: EndReason::Aborted,
    });
    let mut lines = String::new();
    for p in [announce, end] {
        let mut v = Vec::new();
        p.write_sealed(0x01D5_E55E, Seal::Signed(&key, then), &mut v);
        lines.push_str(&data_encoding::HEXLOWER.encode(&v));
        lines.push('\n');
    }
    std::fs::write(out, lines).unwrap();
}

#[test]
fn a_signed_session_reaches_trusting_pcs_through_forgeries_replays_and_a_rogue_sender() {
    let dir = TempDir::new("sec-send");
    let (teacher_key, rogue_key) = (dir.path().join("teacher.key"), dir.path().join("rogue.key"));
    let teacher = keygen(&teacher_key);
    keygen(&rogue_key);
    // Keygen never overwrites a key.
    let again = Command::new(bin())
        .arg("keygen")
        .arg(&teacher_key)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).1.contains("never overwrites"),
        "{:?}",
        text(&again)
    );
    let shown = Command::new(bin())
        .args(["keygen", "--show"])
        .arg(&teacher_key)
        .output()
        .unwrap();
    assert_eq!(text(&shown).0.trim(), teacher);

    let src = dir.path().join("lesson.bin");
    random_file(&src, 12 * 1024 * 1024 + 99, 41);
    let payload = dir.path().join("payload.bin");
    random_file(&payload, 200_000, 42);
    let old = dir.path().join("old.hex");
    an_hour_ago(&teacher_key, &old);
    let group = "239.77.4.1:47401";

    // The rogue session is announced first, and waits for the class as the teacher's does.
    let rogue = send(
        group,
        &payload,
        &[
            "--key",
            rogue_key.to_str().unwrap(),
            "--min-receivers",
            "1",
            "--wait",
            "8",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let outs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("pc{i}"))).collect();
    let receivers: Vec<Proc> = outs
        .iter()
        .enumerate()
        .map(|(i, o)| recv_with(group, o, &format!("pc{i}"), &["--trust", &teacher]))
        .collect();
    let attacker = attack(&[
        "forge",
        "--group",
        group,
        "--iface",
        "127.0.0.1",
        "--share",
        "0.05",
        "--replay",
        old.to_str().unwrap(),
        "--secs",
        "20",
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let sender = send(
        group,
        &src,
        &[
            "--key",
            teacher_key.to_str().unwrap(),
            "--rate",
            "200M",
            "--min-receivers",
            "3",
            "--wait",
            "30",
        ],
    )
    .wait(LIMIT);
    let (summary, log) = text(&sender);
    assert!(sender.status.success(), "{summary}\n{log}");
    assert!(summary.contains("receivers  3 done / 3 known"), "{summary}");
    let fingerprint = text(&shown)
        .1
        .trim()
        .trim_start_matches("fingerprint ")
        .to_owned();
    assert!(log.contains(&format!("signed by {fingerprint}")), "{log}");
    let want = md5_of(&src);
    for (r, out) in receivers.into_iter().zip(&outs) {
        let o = r.wait(LIMIT);
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{stderr}");
        assert_eq!(stdout.trim(), out.join("lesson.bin").display().to_string());
        assert_eq!(md5_of(&out.join("lesson.bin")), want);
        assert!(
            stderr.contains(&format!("signed by the trusted key {fingerprint}")),
            "{stderr}"
        );
        // The forgeries and replays reached it and were dropped for what they are.
        assert!(stderr.contains("dropped datagrams:"), "{stderr}");
        assert!(
            stderr.contains("unsigned") && stderr.contains("untrusted key"),
            "{stderr}"
        );
        assert!(stderr.contains("replayed or badly timed"), "{stderr}");
        assert!(!out.join("payload.bin").exists() && !out.join("last-week.pdf").exists());
        println!("{stderr}");
    }
    let sent = attacker.wait(LIMIT);
    let (report, _) = text(&sent);
    println!("the attacker sent {report}");
    for kind in ["forged_data", "control", "replays"] {
        assert!(attack_count(&report, kind) > 10, "{kind}: {report}");
    }
    // No PC took the rogue's session: it ends at --wait, having sent nothing.
    let rogue = rogue.wait(LIMIT);
    let (rogue_summary, rogue_log) = text(&rogue);
    assert_eq!(rogue.status.code(), Some(3), "{rogue_summary}\n{rogue_log}");
    assert!(
        rogue_log.contains("nobody joined within --wait 8 s, so nothing was sent"),
        "{rogue_log}"
    );
    // And the teacher was told another sender was on the group.
    assert!(log.contains("warning: another sender, 127.0.0.1:"), "{log}");
}

#[test]
fn get_that_trusts_the_labs_server_ignores_a_rogue_server_that_answers_first() {
    let dir = TempDir::new("sec-get");
    let www = www_with(dir.path(), "notes.pdf", 3_000_000, 43);
    let http = Http::start(&mut Command::new("env"), &www, "127.0.0.1", &[]);
    let url = format!("http://127.0.0.1:{}/notes.pdf", http.port);
    let key = dir.path().join("server.key");
    let public = keygen(&key);
    let group = "239.77.4.2:47410";
    let serve = |port: &str, extra: &[&str]| {
        Proc::spawn(
            "serve",
            Command::new(bin())
                .args(["serve", "--group", group, "--port", port, "--iface", "lo"])
                .args(["--rate", "400M", "--exit-after", "40"])
                .args(extra),
        )
    };
    let get = |out: &Path, extra: &[&str]| {
        Proc::spawn(
            "get",
            Command::new(bin())
                .args(["get", &url, "--group", group, "--iface", "lo", "--out"])
                .arg(out)
                .args(extra),
        )
    };
    // The rogue answers first: it announces alone for a while. It may not fetch from loopback, so a
    // student who asks it is refused, which is how we see who was asked.
    let rogue = serve("47408", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let lab = serve(
        "47409",
        &["--key", key.to_str().unwrap(), "--allow", "127.0.0.0/8"],
    );
    std::thread::sleep(Duration::from_millis(300));

    // Without a trusted key, the first server heard is asked: the rogue.
    let naive = get(&dir.path().join("naive"), &[]).wait(LIMIT);
    assert_eq!(naive.status.code(), Some(1), "{:?}", text(&naive));
    assert!(
        text(&naive)
            .1
            .contains("not allowed by the server's policy"),
        "{:?}",
        text(&naive)
    );

    let out = dir.path().join("pc");
    let trusting = get(&out, &["--trust", &public]).wait(LIMIT);
    let (stdout, stderr) = text(&trusting);
    assert!(trusting.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), out.join("notes.pdf").display().to_string());
    assert_eq!(
        md5_of(&out.join("notes.pdf")),
        md5_of(&www.join("notes.pdf"))
    );
    assert!(stderr.contains("signed by the trusted key"), "{stderr}");
    let (_, lab_log) = text(&lab.stop());
    let (_, rogue_log) = text(&rogue.stop());
    assert!(lab_log.contains("notes.pdf"), "{lab_log}");
    // The rogue heard only the naive student.
    assert_eq!(rogue_log.matches("refused").count(), 1, "{rogue_log}");
}

#[test]
fn an_encrypted_session_is_read_only_by_the_pcs_it_was_sent_to() {
    let dir = TempDir::new("sec-enc");
    let key = |name: &str| {
        let path = dir.path().join(format!("{name}.key"));
        (keygen(&path), path)
    };
    let (teacher, teacher_key) = key("teacher");
    let (pc1, pc1_key) = key("pc1");
    let (pc2, pc2_key) = key("pc2");
    let (_, outsider_key) = key("outsider");
    let src = dir.path().join("exam.pdf");
    random_file(&src, 3 * 1024 * 1024 + 5, 44);
    let group = "239.77.4.3:47420";
    // A student who sniffs the group: the symbols it sees are not the file's bytes.
    let sniffer = {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        s.set_reuse_address(true).unwrap();
        let addr: std::net::SocketAddrV4 = group.parse().unwrap();
        s.bind(&std::net::SocketAddr::V4(addr).into()).unwrap();
        s.join_multicast_v4(addr.ip(), &std::net::Ipv4Addr::LOCALHOST)
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::net::UdpSocket::from(s)
    };
    let recv_as = |name: &str, extra: &[&str]| {
        let mut args = vec!["--trust", teacher.as_str()];
        args.extend_from_slice(extra);
        recv_with(group, &dir.path().join(name), name, &args)
    };
    let pcs = [
        recv_as("pc1", &["--key", pc1_key.to_str().unwrap()]),
        recv_as("pc2", &["--key", pc2_key.to_str().unwrap()]),
    ];
    let outsider = recv_as("outsider", &["--key", outsider_key.to_str().unwrap()]);
    let keyless = recv_as("keyless", &[]);
    let sender = send(
        group,
        &src,
        &[
            "--key",
            teacher_key.to_str().unwrap(),
            "--encrypt",
            "--to",
            &pc1,
            "--to",
            &pc2,
            "--min-receivers",
            "4",
            "--wait",
            "20",
        ],
    );
    let file = std::fs::read(&src).unwrap();
    let mut seen_data = 0;
    let mut buf = vec![0u8; 2048];
    let until = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < until && seen_data < 500 {
        let Ok(n) = sniffer.recv(&mut buf) else {
            continue;
        };
        if let Ok(d) = Packet::parse(&buf[..n])
            && let Packet::Data(data) = d.packet
            && data.esi < 1024
        {
            seen_data += 1;
            let at = (data.block as usize * 1024 + data.esi as usize) * 1408;
            let plain = &file[at.min(file.len())..(at + 1408).min(file.len())];
            assert!(
                plain.is_empty() || !data.symbol.starts_with(plain),
                "a symbol in clear"
            );
            assert_eq!(
                data.symbol.len(),
                1408 + 16,
                "sealed: the symbol and its tag"
            );
        }
    }
    assert!(seen_data > 100, "the sniffer saw {seen_data} symbols");
    let s = sender.wait(LIMIT);
    let (summary, log) = text(&s);
    assert_eq!(s.status.code(), Some(2), "{summary}\n{log}");
    assert!(summary.contains("2 done / 4 known"), "{summary}");
    assert!(log.contains("encrypted for 2 PC(s)"), "{log}");
    let want = md5_of(&src);
    for (pc, name) in pcs.into_iter().zip(["pc1", "pc2"]) {
        let o = pc.wait(LIMIT);
        let (_, stderr) = text(&o);
        assert!(o.status.success(), "{name}: {stderr}");
        assert!(stderr.contains(", encrypted into"), "{stderr}");
        assert_eq!(md5_of(&dir.path().join(name).join("exam.pdf")), want);
    }
    let o = outsider.wait(LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("encrypted for other PCs"),
        "{:?}",
        text(&o)
    );
    assert!(!dir.path().join("outsider/exam.pdf").exists());
    let o = keyless.wait(LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("give this PC's key with --key"),
        "{:?}",
        text(&o)
    );
}
