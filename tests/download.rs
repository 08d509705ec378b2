//! Downloads on loopback, with tools/httpd.py as the web server: `send URL` (cut-through, unknown
//! size, a dropped connection, a lying server) and `serve` / `get` (one download for the class, a
//! late joiner, the cache, refusals).

mod common;

use common::{Http, Proc, TempDir, bin, md5_of, random_file, recv, text};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn get(group: &str, url: &str, out: &Path) -> Proc {
    Proc::spawn(
        "get",
        Command::new(bin())
            .args(["get", url, "--group", group, "--iface", "lo", "--out"])
            .arg(out),
    )
}

fn serve(group: &str, port: &str, extra: &[&str]) -> Proc {
    Proc::spawn(
        "serve",
        Command::new(bin())
            .args(["serve", "--group", group, "--port", port, "--iface", "lo"])
            .args(["--rate", "400M", "--exit-after", "60"])
            .args(extra),
    )
}

#[test]
fn send_url_of_unknown_size_survives_a_dropped_connection() {
    let dir = TempDir::new("dl-chunked");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    // Not a whole number of blocks: the last, padded block is cut at the end.
    random_file(&www.join("odd.bin"), 7_777_777, 21);
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
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    random_file(&www.join("short.bin"), 2_000_000, 22);
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
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let file = www.join("class.iso");
    random_file(&file, 12 << 20, 23);
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
