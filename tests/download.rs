//! Downloads on loopback, with tools/httpd.py as the web server: `send URL` (cut-through, unknown
//! size, a dropped connection, a lying server) and `serve` / `get` (one download for the class, a
//! late joiner, the cache, refusals), and `serve` among hostile students (its limits on size,
//! spool, slow web servers, idle sessions, per-address quotas, refusal texts, domain lists).

mod common;

use common::{Http, Proc, TempDir, bin, md5_of, random_file, recv, serve, text, www_with};
use edm_cast_proto::wire::{Packet, Request};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn get(group: &str, url: &str, out: &Path) -> Proc {
    Proc::spawn(
        "get",
        Command::new(bin())
            .args(["get", url, "--group", group, "--iface", "lo", "--out"])
            .arg(out),
    )
}

/// A student's REQUEST for `url` as a hostile script sends it: no `get`, so no hello ever follows.
fn raw_request(port: &str, id: u32, url: &str) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let request = Packet::Request(Request {
        request: id,
        url: url.into(),
    });
    socket
        .send_to(&request.to_vec(0), format!("127.0.0.1:{port}"))
        .unwrap();
}

/// A `get` that must fail, and its one line.
fn refused(group: &str, url: &str, out: &Path) -> String {
    let o = get(group, url, out).wait(Duration::from_secs(20));
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    stderr
}

fn succeeded(o: &Output, log: &str) {
    assert!(o.status.success(), "{:?}\nserver: {log}", text(o));
}

#[test]
fn send_url_of_unknown_size_survives_a_dropped_connection() {
    let dir = TempDir::new("dl-chunked");
    // Not a whole number of blocks: the last, padded block is cut at the end.
    let www = www_with(dir.path(), "odd.bin", 7_777_777, 21);
    let http = Http::start(
        &mut Command::new("env"),
        &www,
        "127.0.0.1",
        &["--chunked", "--drop-at", "3000000"],
    );
    let group = "239.77.2.1:47101";
    let out = dir.path().join("out");
    let r = recv(group, &out, "recv");
    let url = format!("http://127.0.0.1:{}/odd.bin", http.port);
    let s = Proc::spawn(
        "send",
        Command::new(bin()).args([
            "send", &url, "--group", group, "--iface", "lo", "--rate", "300M",
        ]),
    )
    .wait(Duration::from_secs(60));
    let (stdout, stderr) = text(&s);
    assert!(s.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("size not known yet"), "{stderr}");
    assert!(r.wait(Duration::from_secs(30)).status.success());
    assert_eq!(md5_of(&out.join("odd.bin")), md5_of(&www.join("odd.bin")));
    let log = http.requests();
    assert_eq!(
        log,
        ["GET /odd.bin - 200", "GET /odd.bin bytes=3000000- 206"],
        "one download, resumed where it broke off"
    );
}

#[test]
fn a_server_that_lies_about_its_length_is_a_clear_error() {
    let dir = TempDir::new("dl-lie");
    let www = www_with(dir.path(), "short.bin", 2_000_000, 22);
    let http = Http::start(&mut Command::new("env"), &www, "127.0.0.1", &["--lie"]);
    let group = "239.77.2.2:47102";
    let out = dir.path().join("out");
    let r = recv(group, &out, "recv");
    let url = format!("http://127.0.0.1:{}/short.bin", http.port);
    let s = Proc::spawn(
        "send",
        Command::new(bin()).args(["send", &url, "--group", group, "--iface", "lo"]),
    )
    .wait(Duration::from_secs(60));
    let (stdout, stderr) = text(&s);
    assert_eq!(s.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("Content-Length"), "{stderr}");
    let r = r.wait(Duration::from_secs(30));
    assert!(!r.status.success(), "the receiver must not report success");
    assert!(text(&r).1.contains("aborted"), "{:?}", text(&r));
    assert!(!out.join("short.bin").exists());
}

#[test]
fn get_shares_one_download_with_a_late_joiner_then_serves_from_the_cache() {
    let dir = TempDir::new("dl-get");
    let www = www_with(dir.path(), "class.iso", 12 << 20, 23);
    let file = www.join("class.iso");
    let want = md5_of(&file);
    // A slow "WAN": 4 MB/s, so the download takes 3 s and the late joiner comes halfway.
    let http = Http::start(
        &mut Command::new("env"),
        &www,
        "127.0.0.1",
        &["--rate", "4000000"],
    );
    let group = "239.77.2.3:47103";
    let cache = dir.path().join("cache");
    let server = serve(
        group,
        "47200",
        &["--allow", "127.0.0.0/8", "--cache", cache.to_str().unwrap()],
    );
    let url = format!("http://127.0.0.1:{}/class.iso", http.port);
    let outs: Vec<_> = (0..4).map(|i| dir.path().join(format!("pc{i}"))).collect();
    // Two at the same moment, one halfway through the download.
    let first: Vec<Proc> = outs[..2].iter().map(|o| get(group, &url, o)).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let late = get(group, &url, &outs[2]);
    let failed: Vec<_> = first
        .into_iter()
        .chain([late])
        .map(|p| p.wait(Duration::from_secs(60)))
        .filter(|o| !o.status.success())
        .collect();
    if !failed.is_empty() {
        let log = text(&server.stop());
        panic!(
            "{:?}\nserver: {log:?}",
            failed.iter().map(text).collect::<Vec<_>>()
        );
    }
    for o in &outs[..3] {
        assert_eq!(md5_of(&o.join("class.iso")), want);
    }
    assert_eq!(http.requests(), ["GET /class.iso - 200"], "downloaded once");
    // Once the session is over (it stays open 3 s after the last student was offered it), the
    // next student gets the file from the cache, after a 304.
    std::thread::sleep(Duration::from_millis(3500));
    let o = get(group, &url, &outs[3]).wait(Duration::from_secs(60));
    let log = text(&server.stop());
    assert!(o.status.success(), "{:?}\nserver: {log:?}", text(&o));
    assert_eq!(md5_of(&outs[3].join("class.iso")), want);
    assert_eq!(
        http.requests(),
        ["GET /class.iso - 200", "GET /class.iso - 304"],
        "server: {log:?}"
    );
}

#[test]
fn get_refusals_say_why() {
    let dir = TempDir::new("dl-refuse");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let http = Http::start(&mut Command::new("env"), &www, "127.0.0.1", &[]);
    let out = dir.path().join("out");
    // By default the server does not fetch from the LAN (here: loopback). The student is told so
    // without the address the name resolved to; the operator's log says which range, and how to
    // open it.
    let group = "239.77.2.4:47104";
    let strict = serve(group, "47201", &[]);
    let url = format!("http://127.0.0.1:{}/x.bin", http.port);
    let o = get(group, &url, &out).wait(Duration::from_secs(30));
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains("not allowed by the server's policy"),
        "{stderr}"
    );
    assert!(!stderr.contains("127.0.0.0/8"), "{stderr}");
    let log = text(&strict.stop()).1;
    assert!(log.contains("--allow 127.0.0.0/8"), "{log}");
    assert!(http.requests().is_empty(), "nothing was fetched");
    // Allowed, but not there.
    let group = "239.77.2.5:47105";
    let _open = serve(group, "47202", &["--allow", "127.0.0.1"]);
    let o = get(group, &url, &out).wait(Duration::from_secs(30));
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("404 Not Found"), "{stderr}");
    // No server at all.
    let o = Command::new(bin())
        .args(["get", &url, "--group", "239.77.2.6:47106", "--iface", "lo"])
        .args(["--timeout", "1"])
        .output()
        .unwrap();
    assert!(
        text(&o).1.contains("no edm-cast server answered"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn send_url_errors_are_one_clear_line() {
    let dir = TempDir::new("dl-errors");
    let http = Http::start(&mut Command::new("env"), dir.path(), "127.0.0.1", &[]);
    let cases = [
        // TLS to a plain HTTP server: the handshake fails.
        (format!("https://127.0.0.1:{}/x", http.port), "tls"),
        (
            format!("http://127.0.0.1:{}/missing.iso", http.port),
            "404 Not Found",
        ),
    ];
    for (url, want) in cases {
        let o = Command::new(bin())
            .args(["send", &url, "--iface", "lo", "--group", "239.77.2.7:47107"])
            .output()
            .unwrap();
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("edm-cast: cannot download {url}: "))
                && stderr.contains(want),
            "{stderr}"
        );
    }
}

#[test]
fn serve_refuses_a_file_over_max_size_before_fetching_it() {
    let dir = TempDir::new("dl-max-size");
    random_file(&dir.path().join("huge.iso"), 100_000, 24);
    // 30 GiB, says the web server: over the default --max-size of 20 GiB.
    let http = Http::start(
        &mut Command::new("env"),
        dir.path(),
        "127.0.0.1",
        &["--claim-length", &(30u64 << 30).to_string()],
    );
    let group = "239.77.2.10:47110";
    let server = serve(group, "47210", &["--allow", "127.0.0.1"]);
    let url = format!("http://127.0.0.1:{}/huge.iso", http.port);
    let stderr = refused(group, &url, &dir.path().join("out"));
    assert!(
        stderr.contains("the file is larger than this server allows (30.0 GiB; at most 20.0 GiB)"),
        "{stderr}"
    );
    let log = text(&server.stop()).1;
    assert!(log.contains("--max-size 20.0 GiB"), "{log}");
}

#[test]
fn serve_cuts_off_a_download_of_unknown_size_past_max_size() {
    let dir = TempDir::new("dl-max-chunked");
    random_file(&dir.path().join("big.bin"), 3_000_000, 25);
    let http = Http::start(
        &mut Command::new("env"),
        dir.path(),
        "127.0.0.1",
        &["--chunked"],
    );
    let group = "239.77.2.11:47120";
    let server = serve(
        group,
        "47211",
        &["--allow", "127.0.0.1", "--max-size", "1M"],
    );
    let url = format!("http://127.0.0.1:{}/big.bin", http.port);
    let out = dir.path().join("out");
    let o = get(group, &url, &out).wait(Duration::from_secs(20));
    let log = text(&server.stop()).1;
    let (_, stderr) = text(&o);
    assert!(!o.status.success(), "{stderr}\nserver: {log}");
    assert!(stderr.contains("aborted"), "{stderr}\nserver: {log}");
    assert!(
        log.contains("cut off: more than --max-size 1.0 MiB"),
        "{log}"
    );
    assert!(!out.join("big.bin").exists());
}

#[test]
fn serve_refuses_downloads_that_would_overflow_the_spool() {
    let dir = TempDir::new("dl-spool");
    let www = www_with(dir.path(), "a.bin", 800_000, 26);
    random_file(&www.join("b.bin"), 800_000, 27);
    // 2 s a file: a is still downloading when b is asked for.
    let http = Http::start(
        &mut Command::new("env"),
        &www,
        "127.0.0.1",
        &["--rate", "400000"],
    );
    let group = "239.77.2.12:47130";
    let server = serve(
        group,
        "47212",
        &[
            "--allow",
            "127.0.0.1",
            "--spool-size",
            "1M",
            "--max-sessions-per-ip",
            "2",
        ],
    );
    let url = |f: &str| format!("http://127.0.0.1:{}/{f}", http.port);
    let a = get(group, &url("a.bin"), &dir.path().join("pc1"));
    // b is asked for once a's download has begun (on a loaded machine a's `get` can take longer
    // to start than any fixed pause).
    let began = Instant::now();
    while !http.requests().iter().any(|l| l.starts_with("GET /a.bin")) {
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "a's download never began"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = refused(group, &url("b.bin"), &dir.path().join("pc2"));
    assert!(
        stderr.contains("the server has no room for this download"),
        "{stderr}"
    );
    let a = a.wait(Duration::from_secs(20));
    // Once a's session is over, its room is given back: b fits.
    std::thread::sleep(Duration::from_millis(1500));
    let b = get(group, &url("b.bin"), &dir.path().join("pc2")).wait(Duration::from_secs(20));
    let log = text(&server.stop()).1;
    succeeded(&a, &log);
    succeeded(&b, &log);
    assert!(log.contains("would pass --spool-size 1.0 MiB"), "{log}");
    assert_eq!(
        md5_of(&dir.path().join("pc2/b.bin")),
        md5_of(&www.join("b.bin"))
    );
}

#[test]
fn a_dripping_web_server_is_given_up_and_its_slot_freed() {
    let dir = TempDir::new("dl-drip");
    let (slow, fast) = (dir.path().join("slow"), dir.path().join("fast"));
    std::fs::create_dir_all(&slow).unwrap();
    std::fs::create_dir_all(&fast).unwrap();
    random_file(&slow.join("drip.iso"), 1_000_000, 28);
    random_file(&fast.join("ok.bin"), 500_000, 29);
    // 2 kB/s, in 200-byte drops: the download would take 500 s.
    let drip = Http::start(
        &mut Command::new("env"),
        &slow,
        "127.0.0.1",
        &["--rate", "2000"],
    );
    let web = Http::start(&mut Command::new("env"), &fast, "127.0.0.1", &[]);
    let group = "239.77.2.13:47140";
    let server = serve(
        group,
        "47213",
        &[
            "--allow",
            "127.0.0.1",
            "--max-sessions",
            "1",
            "--min-rate-window",
            "2",
        ],
    );
    let t = Instant::now();
    let o = get(
        group,
        &format!("http://127.0.0.1:{}/drip.iso", drip.port),
        &dir.path().join("pc1"),
    )
    .wait(Duration::from_secs(15));
    let (_, stderr) = text(&o);
    assert!(
        !o.status.success() && stderr.contains("aborted"),
        "{stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // The only slot is free again.
    let fine = get(
        group,
        &format!("http://127.0.0.1:{}/ok.bin", web.port),
        &dir.path().join("pc2"),
    )
    .wait(Duration::from_secs(20));
    let log = text(&server.stop()).1;
    succeeded(&fine, &log);
    assert!(
        log.contains("too slow") && log.contains("--min-rate 64.0 KiB/s"),
        "{log}"
    );
}

#[test]
fn a_web_server_that_never_answers_is_given_up() {
    let dir = TempDir::new("dl-mute");
    // The kernel takes the connection; nobody ever reads the request or answers it.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let group = "239.77.2.14:47150";
    let server = serve(
        group,
        "47214",
        &["--allow", "127.0.0.1", "--min-rate-window", "2"],
    );
    let url = format!(
        "http://127.0.0.1:{}/x.iso",
        mute.local_addr().unwrap().port()
    );
    let t = Instant::now();
    let stderr = refused(group, &url, &dir.path().join("out"));
    assert!(
        stderr.contains("the server cannot reach this address"),
        "{stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let log = text(&server.stop()).1;
    assert!(
        log.contains("no answer from the web server within 2 s"),
        "{log}"
    );
}

#[test]
fn a_download_past_fetch_timeout_is_given_up() {
    let dir = TempDir::new("dl-timeout");
    random_file(&dir.path().join("long.iso"), 3_000_000, 30);
    // 300 kB/s, well above --min-rate, but 10 s in all.
    let http = Http::start(
        &mut Command::new("env"),
        dir.path(),
        "127.0.0.1",
        &["--rate", "300000"],
    );
    let group = "239.77.2.15:47160";
    let server = serve(
        group,
        "47215",
        &["--allow", "127.0.0.1", "--fetch-timeout", "3"],
    );
    let t = Instant::now();
    let o = get(
        group,
        &format!("http://127.0.0.1:{}/long.iso", http.port),
        &dir.path().join("out"),
    )
    .wait(Duration::from_secs(15));
    let log = text(&server.stop()).1;
    let (_, stderr) = text(&o);
    assert!(
        !o.status.success() && stderr.contains("aborted"),
        "{stderr}\n{log}"
    );
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        log.contains("not done after 3 s (--fetch-timeout)"),
        "{log}"
    );
}

#[test]
fn a_session_nobody_joins_ends_and_frees_its_slot() {
    let dir = TempDir::new("dl-nobody");
    let (slow, fast) = (dir.path().join("slow"), dir.path().join("fast"));
    std::fs::create_dir_all(&slow).unwrap();
    std::fs::create_dir_all(&fast).unwrap();
    // 30 s to download at 100 kB/s (fast enough for --min-rate's 64 KiB/s).
    random_file(&slow.join("big.iso"), 3_000_000, 31);
    random_file(&fast.join("ok.bin"), 200_000, 32);
    let slow_http = Http::start(
        &mut Command::new("env"),
        &slow,
        "127.0.0.1",
        &["--rate", "100000"],
    );
    let web = Http::start(&mut Command::new("env"), &fast, "127.0.0.1", &[]);
    let group = "239.77.2.16:47170";
    let server = serve(
        group,
        "47216",
        &["--allow", "127.0.0.1", "--max-sessions", "1"],
    );
    std::thread::sleep(Duration::from_millis(300));
    // A request, and no hello: the session waits 10 s for a receiver, then ends.
    let big = format!("http://127.0.0.1:{}/big.iso", slow_http.port);
    raw_request("47216", 1, &big);
    std::thread::sleep(Duration::from_secs(12));
    let o = get(
        group,
        &format!("http://127.0.0.1:{}/ok.bin", web.port),
        &dir.path().join("pc"),
    )
    .wait(Duration::from_secs(15));
    let log = text(&server.stop()).1;
    succeeded(&o, &log);
    assert!(log.contains("nobody joined the session"), "{log}");
}

#[test]
fn requests_cannot_hold_a_finished_session_open() {
    let dir = TempDir::new("dl-hold");
    random_file(&dir.path().join("small.bin"), 1_000_000, 33);
    // 2 s to download: the student is done well after the script below began.
    let http = Http::start(
        &mut Command::new("env"),
        dir.path(),
        "127.0.0.1",
        &["--rate", "500000"],
    );
    let group = "239.77.2.17:47180";
    let server = serve(group, "47217", &["--allow", "127.0.0.1"]);
    let url = format!("http://127.0.0.1:{}/small.bin", http.port);
    std::thread::sleep(Duration::from_millis(300));
    // A script asks for the URL twice a second: each answer used to hold the session open 3 s
    // more, so it never ended.
    let stop = Arc::new(AtomicBool::new(false));
    let pest = {
        let (stop, url) = (stop.clone(), url.clone());
        std::thread::spawn(move || {
            for id in 100.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                raw_request("47217", id, &url);
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let o = get(group, &url, &dir.path().join("pc")).wait(Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    pest.join().unwrap();
    let log = text(&server.stop()).1;
    succeeded(&o, &log);
    let first = log
        .lines()
        .find_map(|l| l.strip_prefix("session ")?.split_once(": http"))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no session in {log}"));
    assert!(
        log.contains(&format!("session {first}: ended")),
        "session {first} was held open: {log}"
    );
}

#[test]
fn one_pc_cannot_take_every_slot() {
    let dir = TempDir::new("dl-per-ip");
    random_file(&dir.path().join("a.bin"), 1_500_000, 34);
    random_file(&dir.path().join("b.bin"), 100_000, 35);
    let http = Http::start(
        &mut Command::new("env"),
        dir.path(),
        "127.0.0.1",
        &["--rate", "300000"],
    );
    let group = "239.77.2.18:47190";
    // 4 slots (the default), 1 per address (the default).
    let server = serve(group, "47218", &["--allow", "127.0.0.1"]);
    let url = |f: &str| format!("http://127.0.0.1:{}/{f}", http.port);
    let a = get(group, &url("a.bin"), &dir.path().join("pc1"));
    std::thread::sleep(Duration::from_millis(1000));
    let stderr = refused(group, &url("b.bin"), &dir.path().join("pc1"));
    assert!(
        stderr.contains("this PC already has 1 download(s) under way on the server"),
        "{stderr}"
    );
    let a = a.wait(Duration::from_secs(20));
    let log = text(&server.stop()).1;
    succeeded(&a, &log);
}

#[test]
fn one_pc_may_start_only_so_many_sessions_per_window() {
    let dir = TempDir::new("dl-starts");
    for i in 0..3 {
        random_file(&dir.path().join(format!("f{i}.bin")), 100_000, 36 + i);
    }
    let http = Http::start(&mut Command::new("env"), dir.path(), "127.0.0.1", &[]);
    let group = "239.77.2.19:47200";
    let server = serve(
        group,
        "47219",
        &[
            "--allow",
            "127.0.0.1",
            "--max-starts-per-ip",
            "2",
            "--max-sessions-per-ip",
            "4",
        ],
    );
    let url = |i: u32| format!("http://127.0.0.1:{}/f{i}.bin", http.port);
    let out = dir.path().join("pc");
    let firsts: Vec<Output> = (0..2)
        .map(|i| get(group, &url(i), &out).wait(Duration::from_secs(15)))
        .collect();
    let stderr = refused(group, &url(2), &out);
    assert!(
        stderr.contains("this PC started 2 download(s) in the last 600 s"),
        "{stderr}"
    );
    let log = text(&server.stop()).1;
    for o in &firsts {
        succeeded(o, &log);
    }
    assert_eq!(http.requests().len(), 2, "the third was not fetched");
}

#[test]
fn refusals_do_not_tell_students_how_the_network_answered() {
    let dir = TempDir::new("dl-generic");
    let http = Http::start(&mut Command::new("env"), dir.path(), "127.0.0.1", &[]);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let group = "239.77.2.20:47230";
    // Three refusals: within the default 3 starts per address.
    let server = serve(group, "47220", &["--allow", "127.0.0.1"]);
    let cases = [
        // Connection refused: a closed port.
        format!("http://127.0.0.1:{closed}/x"),
        // TLS to a plain HTTP server: the handshake fails.
        format!("https://127.0.0.1:{}/x", http.port),
    ];
    for url in &cases {
        let stderr = refused(group, url, &dir.path().join("out"));
        assert!(
            stderr.contains(&format!(
                "the server refused {url}: the server cannot reach this address"
            )),
            "{stderr}"
        );
        for leak in ["refused (os", "Connection", "tls", "TLS", "os error"] {
            assert!(!stderr.contains(leak), "{leak} in {stderr}");
        }
    }
    // An HTTP status is the web server's answer, not the network's: it is told as it is.
    let missing = format!("http://127.0.0.1:{}/missing.iso", http.port);
    let stderr = refused(group, &missing, &dir.path().join("out"));
    assert!(
        stderr.contains("the server could not fetch this URL (404 Not Found)"),
        "{stderr}"
    );
    // The operator's log keeps the whole story.
    let log = text(&server.stop()).1;
    assert!(log.contains(&format!("refused {}: ", cases[0])), "{log}");
    assert!(log.contains("Connection refused"), "{log}");
    assert!(log.contains(&format!("refused {}: ", cases[1])), "{log}");
}

#[test]
fn domain_lists_are_checked_on_every_redirect() {
    let dir = TempDir::new("dl-domains");
    let (www, hop) = (dir.path().join("www"), dir.path().join("hop"));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(&hop).unwrap();
    random_file(&www.join("x.bin"), 100_000, 40);
    let target = Http::start(&mut Command::new("env"), &www, "127.0.0.1", &[]);
    let bounce = Http::start(
        &mut Command::new("env"),
        &hop,
        "127.0.0.1",
        &[
            "--redirect",
            &format!("/away=http://localhost:{}/x.bin", target.port),
            "--redirect",
            &format!("/here=http://127.0.0.1:{}/x.bin", target.port),
        ],
    );
    let group = "239.77.2.21:47240";
    let server = serve(
        group,
        "47221",
        &[
            "--allow",
            "127.0.0.0/8",
            "--allow",
            "::1",
            "--allow-domain",
            "127.0.0.1",
        ],
    );
    let out = dir.path().join("out");
    // The URL's host is allowed; the one it redirects to is not.
    let away = format!("http://127.0.0.1:{}/away", bounce.port);
    let stderr = refused(group, &away, &out);
    assert!(
        stderr.contains("not allowed by the server's policy"),
        "{stderr}"
    );
    assert!(
        target.requests().is_empty(),
        "the redirect was not followed"
    );
    // A redirect within the list is followed.
    let here = format!("http://127.0.0.1:{}/here", bounce.port);
    let o = get(group, &here, &out).wait(Duration::from_secs(15));
    let log = text(&server.stop()).1;
    succeeded(&o, &log);
    assert_eq!(md5_of(&out.join("x.bin")), md5_of(&www.join("x.bin")));
    assert!(
        log.contains("localhost is not in this server's --allow-domain list"),
        "{log}"
    );
}

/// Ctrl-C on `serve` ends its sessions with END: a student mid-way is told at once, rather than
/// left waiting for a sender that has gone.
#[test]
fn an_interrupted_server_tells_its_students() {
    let dir = TempDir::new("dl-interrupt");
    let www = www_with(dir.path(), "slow.iso", 8_000_000, 32);
    // 1 MB/s: the session is still sending when the server is stopped.
    let http = Http::start(
        &mut Command::new("env"),
        &www,
        "127.0.0.1",
        &["--rate", "1000000"],
    );
    let group = "239.77.2.30:47130";
    let server = serve(group, "47230", &["--allow", "127.0.0.0/8"]);
    let url = format!("http://127.0.0.1:{}/slow.iso", http.port);
    let student = get(group, &url, &dir.path().join("out"));
    // The student's first bytes are on disk: it is receiving.
    let part = Instant::now();
    while std::fs::read_dir(dir.path().join("out")).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            part.elapsed() < Duration::from_secs(15),
            "the student never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    server.interrupt();
    let stopped = Instant::now();
    let o = student.wait(Duration::from_secs(10));
    let told = stopped.elapsed();
    let log = text(&server.wait(Duration::from_secs(5))).1;
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}\nserver: {log}");
    assert!(
        stderr.contains("the sender aborted the session"),
        "{stderr}\nserver: {log}"
    );
    assert!(told < Duration::from_secs(1), "told after {told:?}");
    assert!(log.contains("interrupted"), "{log}");
}

/// A `send URL` killed while it waits for receivers leaves nothing in the temporary folder: the
/// download's spool (no cache) is unlinked as soon as it is made. Before, each killed sender left
/// its `edm-cast-*.part`.
#[test]
fn a_killed_sender_of_a_url_leaves_no_spool_behind() {
    let dir = TempDir::new("dl-killed");
    let www = www_with(dir.path(), "f.bin", 1_000_000, 35);
    let http = Http::start(&mut Command::new("env"), &www, "127.0.0.1", &[]);
    let url = format!("http://127.0.0.1:{}/f.bin", http.port);
    let tmp = dir.path().join("tmp");
    let left = common::left_by_a_killed_sender(&tmp, "edm-cast-", &url, "239.77.35.2:47362");
    assert_eq!(left, Vec::<String>::new());
}
