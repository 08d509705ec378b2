//! The real binary over loopback multicast: one sender, three receiver processes.

mod common;

use common::{Proc, TempDir, bin, is_root, md5_of, random_file, recv, send, text};
use std::ops::Not;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn three_receivers_get_identical_files() {
    let dir = TempDir::new("three");
    let src = dir.path().join("lesson.bin");
    random_file(&src, 12 * 1024 * 1024 + 4321, 1);
    let group = "239.77.1.1:47001";
    let outs: Vec<_> = (0..3).map(|i| dir.path().join(format!("pc{i}"))).collect();
    let receivers: Vec<Proc> = outs
        .iter()
        .enumerate()
        .map(|(i, o)| recv(group, o, &format!("pc{i}")))
        .collect();
    let sender = send(
        group,
        &src,
        &["--rate", "400M", "--min-receivers", "3", "--wait", "20"],
    )
    .wait(LIMIT);
    let (so, se) = text(&sender);
    assert!(sender.status.success(), "sender: {so}\n{se}");
    assert!(so.contains("receivers  3 done / 3 known"), "{so}");
    let want = md5_of(&src);
    for (r, out) in receivers.into_iter().zip(&outs) {
        let o = r.wait(LIMIT);
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "receiver: {stderr}");
        let path = out.join("lesson.bin");
        assert_eq!(stdout.trim(), path.display().to_string());
        assert_eq!(md5_of(&path), want);
        // Only the file: the temporary is gone.
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 1);
    }
}

#[test]
fn a_hostile_name_cannot_escape_the_output_folder_and_a_second_run_finds_the_file_present() {
    let dir = TempDir::new("name");
    let src = dir.path().join("x.bin");
    random_file(&src, 300_000, 2);
    let out = dir.path().join("out");
    let group = "239.77.1.2:47002";
    let r = recv(group, &out, "pc");
    let s = send(
        group,
        &src,
        &["--name", "../../escaped.bin", "--wait", "20"],
    )
    .wait(LIMIT);
    assert!(s.status.success(), "{:?}", text(&s));
    let o = r.wait(LIMIT);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(md5_of(&out.join("escaped.bin")), md5_of(&src));
    assert!(!dir.path().join("escaped.bin").exists());
    assert!(!dir.path().parent().unwrap().join("escaped.bin").exists());

    // The same file again: the receiver says it is already there and the sender counts it done.
    let r = recv(group, &out, "pc");
    let s = send(
        group,
        &src,
        &["--name", "../../escaped.bin", "--wait", "20"],
    )
    .wait(LIMIT);
    let o = r.wait(LIMIT);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("already present"), "{stderr}");
    assert!(s.status.success(), "{:?}", text(&s));
}

#[test]
fn an_empty_file_is_sent() {
    let dir = TempDir::new("empty");
    let src = dir.path().join("empty.txt");
    std::fs::write(&src, b"").unwrap();
    let out = dir.path().join("out");
    let group = "239.77.1.3:47003";
    let r = recv(group, &out, "pc");
    let s = send(group, &src, &["--rate", "400M", "--wait", "20"]).wait(LIMIT);
    assert!(s.status.success(), "{:?}", text(&s));
    let o = r.wait(LIMIT);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(std::fs::metadata(out.join("empty.txt")).unwrap().len(), 0);
}

#[test]
fn a_receiver_that_hears_no_session_says_so() {
    let dir = TempDir::new("nosession");
    let o = Proc::spawn(
        "recv",
        Command::new(bin())
            .args([
                "recv",
                "--group",
                "239.77.1.4:47004",
                "--iface",
                "127.0.0.1",
            ])
            .args(["--timeout", "0.5", "--out"])
            .arg(dir.path()),
    )
    .wait(LIMIT);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr.contains("no session heard on 239.77.1.4:47004"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn a_sender_that_dies_is_reported_gone() {
    let dir = TempDir::new("gone");
    let src = dir.path().join("big.bin");
    random_file(&src, 8 * 1024 * 1024, 3);
    let group = "239.77.1.5:47005";
    let r = recv(group, &dir.path().join("out"), "pc");
    // 1 Mbit/s: the transfer would take a minute; kill the sender after three seconds.
    let s = send(group, &src, &["--rate", "1M"]);
    std::thread::sleep(Duration::from_secs(3));
    drop(s);
    let o = r.wait(LIMIT);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the sender went silent"), "{stderr}");
    assert!(!dir.path().join("out").join("big.bin").exists());
}

#[test]
fn cli_errors_are_one_clear_line() {
    let run = |args: &[&str]| {
        let o = Command::new(bin()).args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["recv", "--iface", "eth-nope", "--timeout", "1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot use interface eth-nope: no such interface"),
        "{err}"
    );
    let (code, err) = run(&["send", "/no/such/file"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read /no/such/file"), "{err}");
    // A mistake on the command line has its own code (64), not send's "some did not get it" (2).
    let (code, err) = run(&["recv", "--group", "10.1.1.1"]);
    assert_eq!(code, Some(64));
    assert!(err.contains("not a multicast address"), "{err}");
    let (code, err) = run(&["send", "x", "--rate", "fast"]);
    assert_eq!(code, Some(64));
    assert!(err.contains("is not a rate"), "{err}");
    for (_, e) in [
        run(&["send", "/no/such/file"]),
        run(&["recv", "--iface", "eth-nope"]),
    ] {
        assert!(!e.contains("panicked") && e.lines().count() == 1, "{e}");
    }
}

#[test]
fn keep_receives_file_after_file_and_ends_on_a_quiet_spell() {
    let dir = TempDir::new("keep");
    let out = dir.path().join("out");
    let group = "239.77.1.6:47006";
    let r = Proc::spawn(
        "keep",
        Command::new(bin())
            .args(["recv", "--group", group, "--iface", "127.0.0.1", "--keep"])
            .args(["--timeout", "4", "--out"])
            .arg(&out),
    );
    let mut sources = Vec::new();
    for (i, len) in [1_000_000, 2_500_000].into_iter().enumerate() {
        let src = dir.path().join(format!("part{i}.bin"));
        random_file(&src, len, 10 + i as u64);
        let s = send(group, &src, &["--rate", "400M", "--wait", "20"]).wait(LIMIT);
        assert!(s.status.success(), "{:?}", text(&s));
        sources.push(src);
    }
    let o = r.wait(LIMIT);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for src in &sources {
        assert_eq!(md5_of(&out.join(src.file_name().unwrap())), md5_of(src));
    }
}

/// A receiver whose disk is full says so, and the sender reports it as failed (exit 2) instead of
/// waiting for it. Root only: the full disk is a 1 MiB tmpfs.
#[test]
fn a_full_disk_is_reported_on_both_sides() {
    if is_root().not() {
        eprintln!("skipping the full-disk test: needs root to mount a small tmpfs");
        return;
    }
    let dir = TempDir::new("full");
    let out = dir.path().join("tiny");
    std::fs::create_dir_all(&out).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "edm-cast-test"])
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping the full-disk test: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(out.clone());
    let src = dir.path().join("big.bin");
    random_file(&src, 4 << 20, 5);
    let group = "239.77.1.7:47007";
    let r = recv(group, &out, "pc");
    let s = send(group, &src, &["--rate", "400M", "--wait", "20"]).wait(LIMIT);
    let o = r.wait(LIMIT);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the disk is full"), "{stderr}");
    let (summary, log) = text(&s);
    assert_eq!(s.status.code(), Some(2), "{summary}\n{log}");
    assert!(
        summary.contains("0 done / 1 known") && summary.contains("failed"),
        "{summary}"
    );
}

/// A file sent again unchanged takes its MD5 and SHA-256 from the sender's digest cache (said on
/// stderr) instead of reading it all first; a file rewritten since, same size and its
/// modification time set back (`cp -p`, `touch -d`), is read again, and the PC is told the new
/// digests. Fails on the old code at the second send (no cache).
#[test]
fn a_file_sent_again_unchanged_takes_its_digests_from_the_cache() {
    let dir = TempDir::new("dcache");
    let src = dir.path().join("image.bin");
    random_file(&src, 2_000_000, 36);
    // A file changed in the last 2 s is not recorded (its times could hide a write in the same
    // clock tick).
    std::thread::sleep(Duration::from_millis(2100));
    let group = "239.77.36.1:47371";
    let cache = dir.path().join("cache");
    let round = |n: u32| {
        let out = dir.path().join(format!("pc{n}"));
        let status = dir.path().join(format!("status{n}.jsonl"));
        let r = Proc::spawn(
            "recv",
            Command::new(bin())
                .args(["recv", "--group", group, "--iface", "lo", "--timeout", "30"])
                .arg("--out")
                .arg(&out)
                .arg("--status")
                .arg(&status),
        );
        let s = Proc::spawn(
            "send",
            Command::new(bin())
                .env("XDG_CACHE_HOME", &cache)
                .args(["send", "--group", group, "--iface", "lo", "--rate", "400M"])
                .args(["--min-receivers", "1", "--wait", "20"])
                .arg(&src),
        )
        .wait(LIMIT);
        let (_, stderr) = text(&s);
        assert!(s.status.success(), "{stderr}");
        let o = r.wait(LIMIT);
        assert!(o.status.success(), "{}", text(&o).1);
        assert_eq!(md5_of(&out.join("image.bin")), md5_of(&src));
        let lines = std::fs::read_to_string(&status).unwrap();
        let told = format!("\"md5\":\"{}\"", md5_of(&src));
        assert!(lines.contains(&told), "{told} not in {lines}");
        stderr.contains("from the digest cache")
    };
    assert!(!round(1), "the first send reads the file");
    assert!(round(2), "the second finds its digests");
    // Rewritten in place, same size, its modification time put back.
    let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
    random_file(&src, 2_000_000, 37);
    let f = std::fs::File::options().write(true).open(&src).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    assert!(!round(3), "a rewritten file is read again");
}
