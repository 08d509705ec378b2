//! The real binary over loopback multicast: one sender, three receiver processes.

mod common;

use common::{Proc, TempDir, bin, md5_of, random_file, text};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn recv(group: &str, out: &std::path::Path, name: &str) -> Proc {
    Proc::spawn(
        name,
        Command::new(bin())
            .args([
                "recv",
                "--group",
                group,
                "--iface",
                "127.0.0.1",
                "--timeout",
                "30",
                "--name",
                name,
                "--out",
            ])
            .arg(out),
    )
}

fn send(group: &str, file: &std::path::Path, extra: &[&str]) -> Proc {
    Proc::spawn(
        "sender",
        Command::new(bin())
            .args(["send", "--group", group, "--iface", "lo"])
            .args(extra)
            .arg(file),
    )
}

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
    let (code, err) = run(&["recv", "--group", "10.1.1.1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not a multicast address"), "{err}");
    let (code, err) = run(&["send", "x", "--rate", "fast"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a rate"), "{err}");
    for (_, e) in [
        run(&["send", "/no/such/file"]),
        run(&["recv", "--iface", "eth-nope"]),
    ] {
        assert!(!e.contains("panicked") && e.lines().count() == 1, "{e}");
    }
}
