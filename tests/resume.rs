//! A receiver killed mid-session and started again with the same `--out` resumes: it keeps the
//! blocks it had verified (checked again against the session's digests, so a damaged partial
//! file costs blocks, never the file) and receives only what it lacks. On loopback (a damaged
//! block in the kept file), and in the namespace lab (root; the sender's wire bytes measured).

mod common;

use common::lab::{Lab, lab_available};
use common::{Proc, TempDir, bin, md5_of, random_file, recv, send, text};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The receiver's record beside its partial file (`.edm-cast-<key>.resume`, documented in
/// src/file/resume.rs): the partial file and the share of blocks recorded as verified.
fn kept(out: &Path) -> Option<(PathBuf, f64)> {
    let state = std::fs::read_dir(out).ok()?.find_map(|e| {
        let p = e.ok()?.path();
        p.to_str()?.ends_with(".resume").then_some(p)
    })?;
    let text = std::fs::read_to_string(&state).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_owned)
    };
    let blocks: u32 = field("blocks ")?.parse().ok()?;
    let have = field("have ")?;
    let set: u32 = (0..have.len() / 2)
        .map(|i| u8::from_str_radix(&have[2 * i..2 * i + 2], 16).map_or(0, u8::count_ones))
        .sum();
    Some((
        state.with_extension("part"),
        set as f64 / blocks.max(1) as f64,
    ))
}

/// Waits (at most `limit`) until the receiver writing into `out` has recorded `share` of the file.
fn wait_for_share(out: &Path, share: f64, limit: Duration) -> (PathBuf, f64) {
    let end = Instant::now() + limit;
    loop {
        if let Some((part, s)) = kept(out)
            && s >= share
        {
            return (part, s);
        }
        assert!(
            Instant::now() < end,
            "the receiver recorded no {share} of the file within {limit:?}: {:?}",
            kept(out)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// "resumed at P%: ..." from a receiver's log: P, and the line.
fn resumed_at(log: &str) -> (u32, String) {
    let line = log
        .lines()
        .find(|l| l.starts_with("resumed at "))
        .unwrap_or_else(|| panic!("no 'resumed at' line in:\n{log}"))
        .to_owned();
    let pct = line["resumed at ".len()..]
        .split('%')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a percentage");
    (pct, line)
}

/// Killed at 40% on loopback, a byte of a kept block flipped in its partial file, started again:
/// that block is not trusted (it is received again), the others are kept, and the file is exact.
#[test]
fn a_damaged_kept_block_is_received_again_and_the_file_is_exact() {
    let group = "239.77.13.1:47131";
    let dir = TempDir::new("resume-damaged");
    let src = dir.path().join("lesson.bin");
    // 120 blocks of 16 symbols: the first pass takes about 3 s at 8 Mbit/s.
    let size = 120 * 16 * 1408 - 777;
    random_file(&src, size, 131);
    let want = md5_of(&src);
    let (o1, o2) = (dir.path().join("r1"), dir.path().join("r2"));
    let r1 = recv(group, &o1, "r1");
    let r2 = recv(group, &o2, "r2");
    let sender = send(
        group,
        &src,
        &[
            "--rate",
            "8M",
            "--min-receivers",
            "2",
            "--block-symbols",
            "16",
        ],
    );
    let (part, share) = wait_for_share(&o2, 0.4, Duration::from_secs(30));
    let killed = r2.stop();
    assert!(!killed.status.success());
    // The partial file and its record stay; block 0 (recorded: blocks come in order) is damaged.
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&part, &bytes).unwrap();
    let r2 = recv(group, &o2, "r2");
    let out = sender.wait(Duration::from_secs(60));
    assert!(out.status.success(), "sender: {:?}", text(&out));
    for (p, o) in [(r1, &o1), (r2, &o2)] {
        let name = p.name.clone();
        let got = p.wait(Duration::from_secs(30));
        let (_, log) = text(&got);
        assert!(got.status.success(), "{name}: {log}");
        assert_eq!(md5_of(&o.join("lesson.bin")), want, "{name}");
        if name == "r2" {
            let (pct, line) = resumed_at(&log);
            assert!(
                line.ends_with(", 1 did not and are received again"),
                "{line}"
            );
            assert!(pct as f64 >= (share * 100.0).floor() - 2.0, "{line}");
        }
    }
    // Nothing of the partial file is left once the file is in place.
    let left: Vec<_> = std::fs::read_dir(&o2)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A teacher's re-run (`send --resume-from`): a PC killed mid-session is listed in the restart
/// file `send` writes; the re-run waits for it by name (the other PC, which has the file, is done
/// at once), it resumes from what it kept, and the restart file is removed once it has the file.
#[test]
fn a_rerun_from_the_restart_file_serves_the_pc_that_missed_the_session() {
    let group = "239.77.13.2:47132";
    let dir = TempDir::new("resume-rerun");
    let src = dir.path().join("lesson.bin");
    let size = 120 * 16 * 1408 - 555;
    random_file(&src, size, 133);
    let want = md5_of(&src);
    let (o1, o2) = (dir.path().join("r1"), dir.path().join("r2"));
    let teacher = |extra: &[&str]| {
        Proc::spawn(
            "sender",
            std::process::Command::new(bin())
                .current_dir(dir.path())
                .args(["send", "--group", group, "--iface", "lo", "--rate", "8M"])
                .args(["--block-symbols", "16"])
                .args(extra)
                .arg(&src),
        )
    };
    let r1 = recv(group, &o1, "r1");
    let r2 = recv(group, &o2, "r2");
    let sender = teacher(&["--min-receivers", "2"]);
    let (_, share) = wait_for_share(&o2, 0.3, Duration::from_secs(30));
    drop(r2.stop());
    let out = sender.wait(Duration::from_secs(60));
    let (_, log) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(r1.wait(Duration::from_secs(30)).status.success());
    let restart: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "restart"))
        .collect();
    assert_eq!(restart.len(), 1, "{log}");
    let listed = std::fs::read_to_string(&restart[0]).unwrap();
    assert!(
        listed.contains("\"name\": \"r2\"") && !listed.contains("\"r1\""),
        "{listed}"
    );
    assert!(log.contains("--resume-from"), "{log}");
    // Given with another file, it is refused in one line.
    let other = dir.path().join("other.bin");
    random_file(&other, 1000, 134);
    let wrong = std::process::Command::new(bin())
        .args(["send", "--group", group, "--iface", "lo", "--resume-from"])
        .arg(&restart[0])
        .arg(&other)
        .output()
        .unwrap();
    let (_, why) = text(&wrong);
    assert_eq!(wrong.status.code(), Some(64), "{why}");
    assert!(
        why.contains("it is for lesson.bin") && why.contains("not for this file"),
        "{why}"
    );
    // The re-run: r1 (which has the file) answers at once; the sender waits for r2 all the same.
    let r1 = recv(group, &o1, "r1");
    let sender = teacher(&["--resume-from", restart[0].to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1500));
    let r2 = recv(group, &o2, "r2");
    let out = sender.wait(Duration::from_secs(60));
    let (summary, log) = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("waiting for r2"), "{log}");
    let mut resumed = 0;
    for (p, o) in [(r1, &o1), (r2, &o2)] {
        let name = p.name.clone();
        let got = p.wait(Duration::from_secs(30));
        let (_, rlog) = text(&got);
        assert!(got.status.success(), "{name}: {rlog}");
        assert_eq!(md5_of(&o.join("lesson.bin")), want, "{name}");
        if name == "r2" {
            let (pct, line) = resumed_at(&rlog);
            assert!(pct as f64 >= (share * 100.0).floor() - 1.0, "{line}");
            resumed = pct;
        }
    }
    assert!(
        !restart[0].exists(),
        "every PC has the file: the restart file goes"
    );
    // No first pass: the re-run sent what r2 lacked (and headers, and a little repair).
    let ratio: f64 = summary
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("bytes")?
                .split(" = ")
                .nth(1)?
                .split(' ')
                .next()
        })
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no bytes line in:\n{summary}"));
    let lacked = 1.0 - resumed as f64 / 100.0;
    println!("re-run: r2 lacked {lacked:.2} of the file, the sender sent {ratio} x the file");
    assert!(
        ratio <= lacked + 0.12,
        "{ratio} x the file for {lacked} lacked:\n{summary}"
    );
}

/// The lab: a receiver killed at 60% of the transfer and started again 2 s later resumes from
/// there, and the sender sends the file once plus what that receiver lacked, not the file twice.
/// 64 MiB at 40 Mbit/s by default (the first pass leaves the restarted receiver some 4 s to come
/// back); EDM_RESUME_MIB and EDM_RESUME_MBIT change them (the measurement: 256 and 100).
#[test]
fn lan_lab_a_receiver_killed_at_60_percent_resumes_and_costs_only_what_it_lacked() {
    if !lab_available("LAN lab (resume)", &[]) {
        return;
    }
    let mib: usize = std::env::var("EDM_RESUME_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mbit: u32 = std::env::var("EDM_RESUME_MBIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let k = std::env::var("EDM_RESUME_K").unwrap_or_else(|_| "256".into());
    let dir = TempDir::new("resume-lab");
    let src = dir.path().join("image.bin");
    random_file(&src, mib << 20, 132);
    let want = md5_of(&src);
    let lab = Lab::up(
        &format!("rs{}", std::process::id() % 100_000),
        2,
        mbit,
        1.0,
        None,
    );
    let recv_args = ["recv", "--timeout", "60"];
    let (outs, mut procs) = lab.on_receivers(2, dir.path(), &recv_args);
    let before = lab.tx_bytes("s");
    let sender = Proc::spawn(
        "sender",
        lab.exec("s")
            .args([bin(), "send", "--group", "239.1.1.1", "--iface", "eth0"])
            .args(["--rate", &format!("{}M", mbit as f64 * 0.97)])
            .args(["--min-receivers", "2", "--wait", "30"])
            // Blocks of 256 symbols (360 KB): a window of 8 is 4.3% of 64 MiB, so the receiver's
            // record grows in steps small enough to stop it near 60% (EDM_RESUME_K changes it).
            .args(["--block-symbols", &k])
            .arg(&src),
    );
    let limit = Duration::from_secs(30 + (mib as u64 * 8 * 2) / mbit as u64);
    let (_, share) = wait_for_share(&outs[1], 0.6, limit);
    let killed = procs.remove(1).stop();
    assert!(!killed.status.success());
    std::thread::sleep(Duration::from_secs(2));
    let again = Proc::spawn(
        "r2 again",
        lab.exec("r2")
            .args(["nice", "-n", "10", bin()])
            .args(recv_args)
            .args(["--group", "239.1.1.1", "--iface", "eth0", "--name", "r2"])
            .arg("--out")
            .arg(&outs[1]),
    );
    let out = sender.wait(limit);
    let (summary, log) = text(&out);
    if !out.status.success() {
        let r2 = text(&again.stop()).1;
        panic!("sender:\n{summary}\n{log}\nr2 started again:\n{r2}");
    }
    let r1 = procs.remove(0).wait(Duration::from_secs(30));
    assert!(r1.status.success(), "r1: {:?}", text(&r1));
    let r2 = again.wait(Duration::from_secs(30));
    let (_, r2_log) = text(&r2);
    assert!(r2.status.success(), "r2: {r2_log}");
    for o in &outs {
        assert_eq!(md5_of(&o.join("image.bin")), want, "{}", o.display());
    }
    let (pct, line) = resumed_at(&r2_log);
    assert!(pct >= 55, "{line}");
    // Let the shaper's queue drain before reading the counter.
    std::thread::sleep(Duration::from_millis(300));
    let bytes = lab.tx_bytes("s") - before;
    let size = (mib << 20) as f64;
    // The file once with headers, proactive repair and 1% loss (8%), and the part r2 lacked.
    let missing = size * (1.0 - pct as f64 / 100.0);
    let bound = size * 1.08 + missing;
    println!(
        "resume lab: {mib} MiB at {mbit} Mbit/s, K = {k}, 2 receivers, 1% loss, r2 killed at {:.0}% and \
         started again 2 s later: {line}; sender interface {bytes} bytes = {:.3} x file \
         (bound {:.3} x: the file + 8% + the {:.0}% r2 lacked)\n{summary}",
        share * 100.0,
        bytes as f64 / size,
        bound / size,
        100.0 - pct as f64,
    );
    assert!(
        (bytes as f64) <= bound,
        "{bytes} bytes > {bound:.0}: {line}\n{summary}"
    );
    // The old partial file went into place: nothing hidden is left.
    let left: Vec<_> = std::fs::read_dir(&outs[1])
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
