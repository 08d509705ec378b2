//! What scripts get from `send` and `recv`: `--status` JSON lines, parsed here line by line, and
//! `recv --exec`, run once per file with the file in its environment. Loopback only.

mod common;

use common::{Proc, TempDir, bin, md5_of, random_file, recv, recv_with, send, text, www_with};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// Every line of `text` as JSON (a line that is not JSON fails the test), each checked for the
/// version-1 envelope.
fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert_eq!(v["v"], 1, "{l}");
            let time = v["time"].as_str().unwrap_or_else(|| panic!("no time: {l}"));
            assert!(time.ends_with('Z') && time.len() == 24, "{time}");
            v
        })
        .collect()
}

fn events(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["event"].as_str().unwrap()).collect()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[test]
fn status_lines_tell_a_script_the_whole_session() {
    let dir = TempDir::new("status");
    let src = dir.path().join("worksheet.pdf");
    random_file(&src, 3 * 1024 * 1024 + 77, 13);
    let group = "239.77.213.1:48131";
    let a_lines = dir.path().join("a.jsonl");
    // pc-a writes its lines to a file, pc-b to stdout; the sender to stdout. pc-a computes the
    // whole file's digests too, pc-b takes them as announced once every block matched.
    let a = recv_with(
        group,
        &dir.path().join("a"),
        "pc-a",
        &["--status", a_lines.to_str().unwrap(), "--verify-file"],
    );
    let b = recv_with(group, &dir.path().join("b"), "pc-b", &["--status", "-"]);
    let sender = send(
        group,
        &src,
        &[
            "--rate",
            "400M",
            "--min-receivers",
            "2",
            "--wait",
            "20",
            "--status",
            "-",
        ],
    )
    .wait(LIMIT);
    let (so, se) = text(&sender);
    assert!(sender.status.success(), "sender: {so}\n{se}");
    // The summary went to stderr: stdout has nothing but status lines.
    assert!(se.contains("receivers  2 done / 2 known"), "{se}");
    let sent = lines(&so);
    assert_eq!(
        events(&sent),
        [
            "session_started",
            "receiver_joined",
            "receiver_joined",
            "sending",
            "receiver_done",
            "receiver_done",
            "summary"
        ],
        "{so}"
    );
    let (md5, sha256) = (md5_of(&src), sha256_of(&src));
    let id = sent[0]["session"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 8);
    assert!(sent.iter().all(|l| l["session"] == id.as_str()), "{so}");
    assert_eq!(sent[0]["name"], "worksheet.pdf");
    assert_eq!(sent[0]["size"], 3 * 1024 * 1024 + 77);
    assert_eq!(sent[0]["md5"], md5.as_str());
    assert_eq!(sent[0]["sha256"], sha256.as_str());
    assert_eq!(sent[0]["group"], group);
    let mut joined: Vec<&str> = sent[1..3]
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    joined.sort();
    assert_eq!(joined, ["pc-a", "pc-b"]);
    let mut done: Vec<&str> = sent[4..6]
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    done.sort();
    assert_eq!(done, ["pc-a", "pc-b"]);
    for l in &sent[1..6] {
        if l["event"] != "sending" {
            assert!(l["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{l}");
            assert_eq!(l["id"].as_str().unwrap().len(), 8, "{l}");
        }
    }
    assert_eq!(sent[3]["receivers"], 2);
    let summary = &sent[6];
    assert_eq!(summary["command"], "send");
    assert_eq!(summary["outcome"], "sent");
    assert_eq!(summary["exit"], 0);
    assert_eq!(summary["error"], Value::Null);
    assert_eq!(summary["receivers"]["known"], 2);
    assert_eq!(summary["receivers"]["done"], 2);
    assert_eq!(summary["receivers"]["failed"], 0);
    assert_eq!(summary["list"].as_array().unwrap().len(), 2);
    assert!(summary["bytes"].as_u64().unwrap() > 3 * 1024 * 1024);

    let a = a.wait(LIMIT);
    let b = b.wait(LIMIT);
    let (ao, ae) = text(&a);
    let (bo, be) = text(&b);
    assert!(a.status.success() && b.status.success(), "{ae}\n{be}");
    // pc-a: the path on stdout as always, the lines in its file; pc-b: the path moves to stderr.
    assert_eq!(
        ao.trim(),
        dir.path().join("a/worksheet.pdf").display().to_string()
    );
    let b_path = dir.path().join("b/worksheet.pdf").display().to_string();
    assert!(be.lines().any(|l| l == b_path), "{be}");
    for (err, how) in [
        (&ae, "computed from the file"),
        (&be, "as announced: every block matched its digest"),
    ] {
        let line = format!("verified: md5 {md5}, sha256 {sha256} ({how})");
        assert!(err.lines().any(|l| l == line), "{line}\n{err}");
    }
    let a_text = std::fs::read_to_string(&a_lines).unwrap();
    for (pc, text) in [("a", a_text.as_str()), ("b", bo.as_str())] {
        let got = lines(text);
        assert_eq!(
            events(&got),
            ["listening", "session_joined", "file_done", "summary"],
            "{text}"
        );
        assert_eq!(got[0]["group"], group);
        assert_eq!(got[1]["session"], id.as_str());
        assert_eq!(got[1]["name"], "worksheet.pdf");
        assert_eq!(got[1]["sender"], "127.0.0.1");
        let path = dir.path().join(pc).join("worksheet.pdf");
        let file = &got[2];
        assert_eq!(file["path"], path.display().to_string().as_str());
        assert_eq!(file["md5"], md5.as_str());
        assert_eq!(file["sha256"], sha256.as_str());
        assert_eq!(md5_of(&path), md5);
        assert_eq!(file["size"], 3 * 1024 * 1024 + 77);
        assert_eq!(file["already_present"], false);
        assert_eq!(file["verified"], if pc == "a" { "file" } else { "blocks" });
        assert_eq!(got[3]["command"], "recv");
        assert_eq!(got[3]["exit"], 0);
        assert_eq!(got[3]["files"], 1);
        assert_eq!(got[3]["failed"], 0);
    }
}

#[test]
fn a_status_file_that_cannot_be_written_is_said_once_and_the_file_still_comes() {
    let dir = TempDir::new("status-full");
    let src = dir.path().join("notes.txt");
    random_file(&src, 200_000, 14);
    let group = "239.77.213.2:48132";
    let out = dir.path().join("out");
    // /dev/full takes the open and fails every write (ENOSPC).
    let r = recv_with(group, &out, "pc", &["--status", "/dev/full"]);
    let sender = send(group, &src, &["--wait", "20"]).wait(LIMIT);
    assert!(sender.status.success(), "{}", text(&sender).1);
    let r = r.wait(LIMIT);
    let (ro, re) = text(&r);
    assert!(r.status.success(), "{re}");
    assert_eq!(ro.trim(), out.join("notes.txt").display().to_string());
    assert_eq!(md5_of(&out.join("notes.txt")), md5_of(&src));
    assert_eq!(
        re.matches("edm-cast: cannot write status lines to /dev/full: No space left on device (os error 28); no more are written, the transfer goes on")
            .count(),
        1,
        "{re}"
    );
    // One that cannot even be opened is said at start, in one line (exit 1), for both commands.
    let missing = dir.path().join("no-such-folder/status.jsonl");
    for command in [&["recv"][..], &["send", src.to_str().unwrap()]] {
        let o = Proc::spawn(
            command[0],
            Command::new(bin())
                .args(command)
                .args(["--iface", "lo", "--status"])
                .arg(&missing),
        )
        .wait(LIMIT);
        assert_eq!(o.status.code(), Some(1), "{command:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            format!(
                "edm-cast: --status: cannot open {}: No such file or directory (os error 2)\n",
                missing.display()
            )
        );
    }
}

#[test]
fn exec_runs_once_per_file_with_its_environment_and_never_stops_recv() {
    let dir = TempDir::new("exec");
    let (files, out, log) = (
        dir.path().join("files"),
        dir.path().join("inbox"),
        dir.path().join("exec.log"),
    );
    std::fs::create_dir_all(&files).unwrap();
    // Sent in this order: one whose command hangs past --exec-timeout (and leaves a background
    // job that would touch `late`), one whose name is a shell injection, one whose command fails.
    let names = ["slow.bin", "$(touch pwned);`touch pwned2`.txt", "fail.bin"];
    for (i, name) in names.iter().enumerate() {
        random_file(&files.join(name), 100_000 + i * 1000, 20 + i as u64);
    }
    let group = "239.77.213.3:48133";
    let status = dir.path().join("recv.jsonl");
    let command = format!(
        r#"printf '%s|%s|%s|%s|%s|%s|%s\n' "$EDM_CAST_PATH" "$EDM_CAST_NAME" "$EDM_CAST_SIZE" "$EDM_CAST_MD5" "$EDM_CAST_SHA256" "$EDM_CAST_SESSION" "$EDM_CAST_SENDER" >> {log}
case "$EDM_CAST_NAME" in
  slow.bin) (sleep 8; touch late) & sleep 30;;
  fail.bin) echo failing on purpose; exit 3;;
esac"#,
        log = log.display()
    );
    let r = Proc::spawn(
        "recv",
        Command::new(bin())
            .current_dir(dir.path())
            .args(["recv", "--group", group, "--iface", "lo", "--keep"])
            .args(["--timeout", "3", "--name", "pc", "--out"])
            .arg(&out)
            .args(["--exec-timeout", "5", "--status"])
            .arg(&status)
            .args(["--exec", &command]),
    );
    // The first file again, last: found present, so its command does not run again.
    for name in names.iter().chain(&names[..1]) {
        let s = send(group, &files.join(name), &["--wait", "20"]).wait(LIMIT);
        assert!(s.status.success(), "{name}: {}", text(&s).1);
    }
    let r = r.wait(LIMIT);
    let (ro, re) = text(&r);
    assert!(r.status.success(), "{re}");
    assert_eq!(ro.lines().count(), 4, "{ro}");

    // Exactly once per file, in the order they came, each with its own values.
    let logged = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<Vec<&str>> = logged.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 3, "{logged}");
    let got = lines(&std::fs::read_to_string(&status).unwrap());
    let file_done: Vec<&Value> = got.iter().filter(|l| l["event"] == "file_done").collect();
    let present: Vec<&Value> = file_done.iter().map(|l| &l["already_present"]).collect();
    assert_eq!(present, [false, false, false, true]);
    assert_eq!(file_done[3]["path"], file_done[0]["path"]);
    let sessions: Vec<&str> = file_done[..3]
        .iter()
        .map(|l| l["session"].as_str().unwrap())
        .collect();
    for ((row, name), session) in rows.iter().zip(names).zip(&sessions) {
        let path = out.join(name);
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            row,
            &[
                path.display().to_string().as_str(),
                name,
                &size.to_string(),
                &md5_of(&path),
                &sha256_of(&path),
                session,
                "127.0.0.1"
            ],
            "{logged}"
        );
        assert_eq!(md5_of(&path), md5_of(&files.join(name)));
    }
    // The name from the network ran nothing.
    for planted in ["pwned", "pwned2"] {
        for d in [dir.path(), out.as_path()] {
            assert!(!d.join(planted).exists(), "{} in {}", planted, d.display());
        }
    }

    // The failure and the timeout: one line each, a status line each; recv went on.
    let fail = out.join("fail.bin").display().to_string();
    let slow = out.join("slow.bin").display().to_string();
    assert!(
        re.contains(&format!(
            "edm-cast: --exec for {fail}: the command failed (exit status: 3); receiving goes on"
        )),
        "{re}"
    );
    assert!(re.contains("failing on purpose"), "{re}");
    assert!(
        re.contains(&format!(
            "edm-cast: --exec for {slow}: still running after --exec-timeout 5 s: killed; receiving goes on"
        )),
        "{re}"
    );
    let of = |event: &str| -> Vec<&Value> { got.iter().filter(|l| l["event"] == event).collect() };
    let failed = of("exec_failed");
    assert_eq!(failed.len(), 2, "{got:?}");
    let by_path = |p: &str| *failed.iter().find(|l| l["path"] == p).unwrap();
    assert_eq!(by_path(&fail)["exit"], 3);
    assert_eq!(by_path(&slow)["exit"], Value::Null);
    let done = of("exec_done");
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0]["path"],
        out.join(names[1]).display().to_string().as_str()
    );
    // The hanging command did not hold the next files back: they were in before it was killed.
    let position = |pred: &dyn Fn(&Value) -> bool| got.iter().position(pred).unwrap();
    let last_file = position(&|l| l["event"] == "file_done" && l["path"] == fail.as_str());
    let killed = position(&|l| l["event"] == "exec_failed" && l["path"] == slow.as_str());
    assert!(last_file < killed, "{got:?}");
    let summary = got.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["files"], 4);
    assert_eq!(summary["exec_failed"], 2);
    assert_eq!(summary["exit"], 0);

    // Its whole process group went with it: the background job never touched `late`. It would
    // have 3 s after the kill, and recv exited after the kill.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(!dir.path().join("late").exists());
}

#[test]
fn status_lines_name_a_receiver_that_failed_and_one_that_went_silent() {
    let dir = TempDir::new("status-fail");
    let src = dir.path().join("image.bin");
    random_file(&src, 20 * 1024 * 1024, 15);
    let group = "239.77.213.4:48134";
    let full = recv_with(
        group,
        &dir.path().join("full"),
        "pc-full",
        &["--max-size", "1M", "--status", "-"],
    );
    let gone = recv(group, &dir.path().join("gone"), "pc-gone");
    // 20 MiB at 20 Mbit/s: 8 s, time enough to kill pc-gone on the way.
    let sender = send(
        group,
        &src,
        &[
            "--rate",
            "20M",
            "--min-receivers",
            "2",
            "--wait",
            "20",
            "--drop-after",
            "1",
            "--status",
            "-",
        ],
    );
    std::thread::sleep(Duration::from_millis(2500));
    gone.stop();
    let sender = sender.wait(LIMIT);
    let (so, se) = text(&sender);
    assert_eq!(sender.status.code(), Some(2), "{so}\n{se}");
    let sent = lines(&so);
    let kinds = events(&sent);
    assert_eq!(kinds[0], "session_started", "{so}");
    assert_eq!(*kinds.last().unwrap(), "summary", "{so}");
    let named =
        |event: &str| -> Vec<&Value> { sent.iter().filter(|l| l["event"] == event).collect() };
    assert_eq!(named("receiver_joined").len(), 2, "{so}");
    let failed = named("receiver_failed");
    assert_eq!(failed.len(), 1, "{so}");
    assert_eq!(failed[0]["name"], "pc-full");
    assert_eq!(
        failed[0]["reason"],
        "the file is larger than it takes (--max-size, free space)"
    );
    let dropped = named("receiver_dropped");
    assert_eq!(dropped.len(), 1, "{so}");
    assert_eq!(dropped[0]["name"], "pc-gone");
    assert!(named("receiver_done").is_empty(), "{so}");
    let summary = sent.last().unwrap();
    assert_eq!(summary["exit"], 2);
    assert_eq!(summary["receivers"]["failed"], 1);
    assert_eq!(summary["receivers"]["dropped"], 1);
    assert_eq!(summary["receivers"]["done"], 0);
    let why = summary["error"].as_str().unwrap();
    assert!(
        why.starts_with("2 of 2 receivers did not get the file"),
        "{why}"
    );
    assert!(se.contains(&format!("edm-cast: {why}")), "{se}");

    let full = full.wait(LIMIT);
    let (fo, fe) = text(&full);
    assert_eq!(full.status.code(), Some(1), "{fe}");
    let got = lines(&fo);
    assert_eq!(
        events(&got),
        ["listening", "session_failed", "summary"],
        "{fo}"
    );
    assert!(
        got[1]["error"].as_str().unwrap().contains("--max-size"),
        "{fo}"
    );
    assert_eq!(got[2]["exit"], 1);
    assert_eq!(got[2]["failed"], 1);
    assert_eq!(got[2]["files"], 0);
    assert_eq!(got[2]["error"], got[1]["error"]);
}

/// Blocks recorded as verified in the receiver's `.edm-cast-<key>.resume` in `out` (the format
/// is in src/file/resume.rs), and its partial file.
fn recorded(out: &Path) -> Option<(std::path::PathBuf, u32)> {
    let state = std::fs::read_dir(out).ok()?.find_map(|e| {
        let p = e.ok()?.path();
        p.to_str()?.ends_with(".resume").then_some(p)
    })?;
    let text = std::fs::read_to_string(&state).ok()?;
    let have = text.lines().find_map(|l| l.strip_prefix("have "))?;
    let set = (0..have.len() / 2)
        .map(|i| u8::from_str_radix(&have[2 * i..2 * i + 2], 16).map_or(0, u8::count_ones))
        .sum();
    Some((state.with_extension("part"), set))
}

/// A receiver killed mid-session and started again says in a `resumed` line what it kept: the
/// blocks the earlier run recorded, how many matched (and their bytes), how many did not.
#[test]
fn a_resumed_receiver_says_what_it_kept_in_a_status_line() {
    let dir = TempDir::new("status-resume");
    let src = dir.path().join("lesson.bin");
    // 100 blocks of 16 symbols of 1408 bytes: about 5 s at 4 Mbit/s (time to see 30% of it
    // recorded on a busy machine).
    let block = 16 * 1408;
    let size = 100 * block - 500;
    random_file(&src, size, 41);
    let group = "239.77.214.1:48141";
    let out = dir.path().join("out");
    let r = recv(group, &out, "pc");
    let sender = send(
        group,
        &src,
        &["--rate", "4M", "--block-symbols", "16", "--wait", "20"],
    );
    let end = std::time::Instant::now() + LIMIT;
    let (part, _) = loop {
        if let Some((part, n)) = recorded(&out)
            && n >= 30
        {
            break (part, n);
        }
        assert!(
            std::time::Instant::now() < end && !out.join("lesson.bin").exists(),
            "30 blocks not seen recorded: {:?}",
            recorded(&out)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = r.stop();
    // What the killed run left; block 0 (recorded: blocks come in order) damaged.
    let (_, kept) = recorded(&out).unwrap();
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&part, &bytes).unwrap();
    let r = recv_with(group, &out, "pc", &["--status", "-"]);
    let s = sender.wait(LIMIT);
    assert!(s.status.success(), "{:?}", text(&s));
    let o = r.wait(LIMIT);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    assert_eq!(md5_of(&out.join("lesson.bin")), md5_of(&src));
    let got = lines(&so);
    let resumed: Vec<&Value> = got.iter().filter(|l| l["event"] == "resumed").collect();
    assert_eq!(resumed.len(), 1, "{so}\n{se}");
    let l = resumed[0];
    assert_eq!(l["blocks"], 100, "{l}");
    assert_eq!(l["kept"], kept, "{l}");
    assert_eq!(l["rejected"], 1, "{l}");
    assert_eq!(l["matched"], kept - 1, "{l}");
    let matched = u64::from(kept - 1);
    let bytes = l["bytes"].as_u64().unwrap();
    assert!(
        bytes <= matched * block as u64 && bytes > (matched - 1) * block as u64,
        "{l}"
    );
    assert_eq!(l["session"], got[1]["session"], "{so}");
    // Said after the join, before the file is done.
    let at = |e: &str| got.iter().position(|l| l["event"] == e).unwrap();
    assert!(at("session_joined") < at("resumed") && at("resumed") < at("file_done"));
}

/// `get --status -`: a student's script sees the request, the session joined, the file done with
/// its digests, and a `get` summary with the path; a refused URL gives the request and a summary
/// with exit 1 and the refusal's line. The path the student's shell reads goes to stderr then.
#[test]
fn get_status_lines_say_what_came_and_why_not() {
    let dir = TempDir::new("status-get");
    let www = www_with(dir.path(), "notes.bin", 2_000_000, 51);
    let want = md5_of(&www.join("notes.bin"));
    let http = common::Http::start(&mut Command::new("env"), &www, "127.0.0.1", &[]);
    let group = "239.77.215.1:48151";
    let _server = common::serve(group, "48152", &["--allow", "127.0.0.0/8"]);
    let get = |url: &str, out: &Path| {
        Proc::spawn(
            "get",
            Command::new(bin())
                .args([
                    "get", url, "--group", group, "--iface", "lo", "--status", "-",
                ])
                .arg("--out")
                .arg(out),
        )
        .wait(LIMIT)
    };
    let out = dir.path().join("pc");
    let url = format!("http://127.0.0.1:{}/notes.bin", http.port);
    let o = get(&url, &out);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let l = lines(&stdout);
    assert_eq!(
        events(&l),
        ["requesting", "session_joined", "file_done", "summary"],
        "{stdout}"
    );
    assert_eq!(l[0]["url"], url.as_str());
    assert_eq!(l[0]["group"], group);
    let path = out.join("notes.bin");
    let abs = std::path::absolute(&path).unwrap();
    assert_eq!(l[2]["path"], abs.to_str().unwrap());
    assert_eq!(l[2]["md5"], want.as_str());
    assert_eq!(l[2]["sha256"], sha256_of(&path).as_str());
    assert_eq!(l[3]["command"], "get");
    assert_eq!(l[3]["exit"], 0);
    assert_eq!(l[3]["path"], abs.to_str().unwrap());
    assert_eq!(l[3]["failed"], 0);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert_eq!(md5_of(&path), want);

    // A URL the web server does not have: refused, said in the summary as on stderr.
    let missing = format!("http://127.0.0.1:{}/missing.bin", http.port);
    let o = get(&missing, &dir.path().join("pc2"));
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let l = lines(&stdout);
    assert_eq!(events(&l), ["requesting", "summary"], "{stdout}");
    let error = l[1]["error"].as_str().unwrap();
    assert!(
        error.contains("refused") && error.contains("404"),
        "{error}"
    );
    assert!(stderr.contains(error), "{stderr}");
    assert_eq!(l[1]["exit"], 1);
    assert_eq!(l[1]["path"], Value::Null);
}
