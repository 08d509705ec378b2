//! What `serve` and `video` publish with `--http` (`/api/v1/status`), read as a dashboard would
//! while they run on loopback: a student's request, its download and session, the cache; a
//! channel, its viewers and the FEC figures they report; and the teacher's actions through the API (`src/download/serve.rs`
//! tests them on the board itself, with the policy's refusals).

mod common;

use common::{Http, Proc, TempDir, bin, md5_of, text, www_with};
use serde_json::Value;
use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

/// A TCP port free on loopback just now, for `--http`.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `/api/v1/status` of the command serving on `port`, once it answers.
fn status(port: u16) -> Option<Value> {
    let body = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/status"))
        .timeout(Duration::from_secs(2))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    Some(serde_json::from_str(&body).expect("the status is JSON"))
}

/// Polls the status until `ok` holds (at most `limit`); the last status read is in the panic.
fn until(port: u16, limit: Duration, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < end {
        if let Some(s) = status(port) {
            if ok(&s) {
                return s;
            }
            last = Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not seen within {limit:?}; last status:\n{last:#?}");
}

fn get(group: &str, url: &str, out: &std::path::Path) -> Proc {
    Proc::spawn(
        "get",
        Command::new(bin())
            .args(["get", url, "--group", group, "--iface", "lo", "--out"])
            .arg(out),
    )
}

#[test]
fn serve_shows_the_request_the_download_the_session_and_the_cache() {
    let dir = TempDir::new("board-serve");
    let www = www_with(dir.path(), "lesson.iso", 3_000_000, 31);
    let file = www.join("lesson.iso");
    let http = Http::start(&mut Command::new("env"), &www, "127.0.0.1", &[]);
    let group = "239.77.12.1:47301";
    let web = free_port();
    let cache = dir.path().join("cache");
    let server = common::serve(
        group,
        "47302",
        &[
            "--allow",
            "127.0.0.0/8",
            "--cache",
            cache.to_str().unwrap(),
            "--http",
            &web.to_string(),
        ],
    );
    let idle = until(web, Duration::from_secs(10), "serve's board", |_| true);
    assert_eq!(idle["command"], "serve");
    assert_eq!(idle["actions"], true);
    assert_eq!(idle["sessions"].as_array().unwrap().len(), 0);
    let url = format!("http://127.0.0.1:{}/lesson.iso", http.port);
    let out = dir.path().join("pc1");
    let o = get(group, &url, &out).wait(Duration::from_secs(60));
    if !o.status.success() {
        panic!("{:?}\nserver: {:?}", text(&o), text(&server.stop()));
    }
    assert_eq!(md5_of(&out.join("lesson.iso")), md5_of(&file));
    // The session's last word comes as it ends: wait for it.
    let s = until(web, Duration::from_secs(10), "the session's end", |s| {
        s["sessions"][0]["outcome"] == "sent"
    });
    let session = &s["sessions"][0];
    let id = session["id"].as_str().unwrap().to_owned();
    assert_eq!(session["name"], "lesson.iso");
    assert_eq!(session["size"], 3_000_000);
    assert_eq!(session["origin"], "download");
    assert_eq!(session["totals"]["done"], 1);
    let receivers = session["receivers"].as_array().unwrap();
    assert_eq!(receivers.len(), 1, "{session:#}");
    assert_eq!(receivers[0]["state"], "done");
    assert_eq!(receivers[0]["progress"], 1.0);
    let serve = &s["serve"];
    let requests = serve["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{serve:#}");
    assert_eq!(requests[0]["url"], url.as_str());
    assert_eq!(requests[0]["from"], "127.0.0.1");
    assert_eq!(requests[0]["answer"], "started");
    assert_eq!(requests[0]["session"], id.as_str());
    let download = &serve["downloads"][0];
    assert_eq!(download["url"], url.as_str());
    assert_eq!(download["session"], id.as_str());
    assert_eq!(download["state"], "done");
    assert_eq!(
        (&download["bytes"], &download["size"]),
        (&3_000_000.into(), &3_000_000.into())
    );
    assert_eq!(serve["answered"]["started"], 1);
    assert_eq!(
        serve["answered"]["offered"], 1,
        "the OFFER to the student who started it"
    );
    assert_eq!(serve["cache"]["misses"], 1);
    assert_eq!(serve["cache"]["hits"], 0);
    assert_eq!(serve["cache"]["entries"], 1);
    assert_eq!(serve["cache"]["bytes"], 3_000_000);
    // Once that session is over (3 s after its last offer), the next student is sent the cached
    // copy: a hit, and a second session.
    std::thread::sleep(Duration::from_millis(3500));
    let out2 = dir.path().join("pc2");
    let o = get(group, &url, &out2).wait(Duration::from_secs(60));
    let s = until(
        web,
        Duration::from_secs(10),
        "the cached copy's session",
        |s| {
            s["sessions"].as_array().unwrap().len() == 2
                && s["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|x| x["outcome"] == "sent")
        },
    );
    let log = text(&server.stop()).1;
    assert!(o.status.success(), "{:?}\nserver: {log}", text(&o));
    let serve = &s["serve"];
    assert_eq!(serve["cache"]["hits"], 1, "{serve:#}");
    assert_eq!(serve["downloads"][0]["state"], "cache");
    assert_eq!(serve["answered"]["started"], 2);
    // Newest first; the same student asking for the same URL is one entry, brought forward.
    assert_eq!(serve["requests"].as_array().unwrap().len(), 1, "{serve:#}");
    assert_ne!(serve["requests"][0]["session"], id.as_str());
    // The log: a line per request and per session start and end.
    assert!(
        log.contains(&format!("request from 127.0.0.1: {url}: starting")),
        "{log}"
    );
    assert!(
        log.contains(&format!("session {id}: {url} (2.9 MiB, from download)")),
        "{log}"
    );
    assert!(
        log.contains(&format!("session {id}: ended; 1 receiver(s) done of 1")),
        "{log}"
    );
    assert!(log.contains("dashboard on http://127.0.0.1:"), "{log}");
}

/// Raw H.264 (Annex B) as a camera would push it: an IDR with its parameter sets, then slices.
/// The bytes between start codes are filler; the relay only cuts and packetizes them.
fn camera(to: std::net::SocketAddr, secs: f64) {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let nal = |kind: u8, len: usize| {
        let mut v = vec![0, 0, 0, 1, kind];
        v.resize(len, 0x55);
        v
    };
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut frame = 0u32;
    while Instant::now() < end {
        let mut d = Vec::new();
        if frame % 30 == 0 {
            d.extend(nal(0x67, 20));
            d.extend(nal(0x68, 8));
            d.extend(nal(0x65, 1000));
        } else {
            d.extend(nal(0x41, 600));
        }
        let _ = tx.send_to(&d, to);
        frame += 1;
        std::thread::sleep(Duration::from_millis(33));
    }
}

#[test]
fn video_shows_its_channel_and_viewers() {
    let source = UdpSocket::bind("127.0.0.1:0").unwrap();
    let source_addr = source.local_addr().unwrap();
    drop(source);
    let group = "239.255.47.1:5470";
    let web = free_port();
    let relay = Proc::spawn(
        "relay",
        Command::new("timeout")
            .args(["-s", "INT", "30"])
            .args([
                bin(),
                "video",
                "--iface",
                "lo",
                "--group",
                group,
                "--grace",
                "1",
            ])
            .args(["--from", "pi", "--source"])
            .arg(format!("pi=udp://{source_addr}"))
            .args(["--http", &web.to_string()]),
    );
    let idle = until(web, Duration::from_secs(10), "the idle channel", |s| {
        s["video"]["channels"][0]["name"] == "pi"
    });
    let pi = &idle["video"]["channels"][0];
    assert_eq!(idle["command"], "video");
    assert_eq!(idle["actions"], false);
    assert_eq!(pi["state"], "idle");
    assert_eq!(pi["viewers"], 0);
    assert_eq!(pi["group"], "239.255.47.2:5004");
    // The camera stops before the viewer leaves: the channel then shows its source silent.
    let cam = std::thread::spawn(move || camera(source_addr, 5.0));
    let dir = TempDir::new("board-video");
    // What `watch` forwards: the stream's SSRC and sequence numbers, for the forged packet below.
    let player = UdpSocket::bind("127.0.0.1:47471").unwrap();
    player
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let watch = Proc::spawn(
        "watch",
        Command::new("timeout")
            .args(["-s", "TERM", "10", bin(), "watch", "pi", "--iface", "lo"])
            .args(["--group", group, "--port", "47471", "--sdp"])
            .arg(dir.path().join("pi.sdp")),
    );
    let live = until(
        web,
        Duration::from_secs(10),
        "a viewer, and video relayed",
        |s| {
            let c = &s["video"]["channels"][0];
            c["viewers"] == 1 && c["state"] == "relaying" && c["bitrate_bps"].as_f64() > Some(0.0)
        },
    );
    let pi = &live["video"]["channels"][0];
    assert!(pi["packets"].as_u64() > Some(0), "{pi:#}");
    assert!(pi["repair_packets"].as_u64() > Some(0), "FEC is on: {pi:#}");
    // Loopback loses nothing, so the test makes the viewer lose packets: an RTP packet of the
    // stream 20 sequence numbers ahead, as anyone on the LAN can send (VIDEO.md, "Security
    // notes"). The viewer gives up on the gap behind it after its 150 ms hold.
    let mut rtp = [0u8; 1500];
    let n = player.recv(&mut rtp).expect("watch forwards the stream");
    let mut last = rtp[..n].to_vec();
    player.set_nonblocking(true).unwrap();
    while let Ok(n) = player.recv(&mut rtp) {
        last = rtp[..n].to_vec();
    }
    let seq = u16::from_be_bytes([last[2], last[3]]).wrapping_add(20);
    let mut forged = last[..12].to_vec();
    forged[1] = 96;
    forged[2..4].copy_from_slice(&seq.to_be_bytes());
    forged.extend([0x41, 0x9A, 0x00, 0x01]);
    let to = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    to.set_multicast_if_v4(&std::net::Ipv4Addr::LOCALHOST)
        .unwrap();
    to.send_to(
        &forged,
        &"239.255.47.2:5004"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    // Its next renewal (every 2 s) tells the relay.
    let lost = until(
        web,
        Duration::from_secs(5),
        "the viewer's loss reported",
        |s| s["video"]["channels"][0]["fec_lost"].as_u64() > Some(0),
    );
    assert_eq!(lost["video"]["channels"][0]["viewers"], 1);
    let silent = until(web, Duration::from_secs(8), "the source silent", |s| {
        s["video"]["channels"][0]["state"] == "source silent"
    });
    assert_eq!(silent["video"]["channels"][0]["viewers"], 1);
    assert_eq!(silent["video"]["channels"][0]["bitrate_bps"], 0.0);
    // The viewer leaves (SIGTERM: it sends LEAVE); the channel stops after its 1 s grace.
    let w = watch.wait(Duration::from_secs(15));
    let left = until(web, Duration::from_secs(10), "the viewer gone", |s| {
        let c = &s["video"]["channels"][0];
        c["viewers"] == 0 && c["state"] == "idle"
    });
    assert!(left["video"]["channels"][0]["packets"].as_u64() >= pi["packets"].as_u64());
    let log = text(&relay.stop()).1;
    cam.join().unwrap();
    // The relay's figures are the viewer's own, as `watch` prints them at exit: ".. N repaired,
    // M lost, ..". Its last renewal came after its loss, and before it left.
    let watched = text(&w).1;
    let count = |what: &str| -> u64 {
        let line = watched.lines().find(|l| l.contains(" repaired, "));
        let line = line.unwrap_or_else(|| panic!("no counts in {watched}"));
        let word = line.split(", ").find_map(|p| p.strip_suffix(what));
        let n = word.and_then(|p| p.split_whitespace().last());
        n.and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no '{what}' in {line}"))
    };
    let pi = &left["video"]["channels"][0];
    assert!(count(" lost") >= 10, "{watched}");
    assert_eq!(pi["fec_lost"], count(" lost"), "{pi:#}\n{watched}");
    assert_eq!(pi["fec_repaired"], count(" repaired"), "{pi:#}\n{watched}");
    for line in [
        "dashboard on http://127.0.0.1:",
        "video: pi: started",
        "video: pi: 1 viewer\n",
        "video: pi: relaying",
        "video: pi: no video from the source for 2 s",
        "video: pi: 0 viewers",
        "video: pi: stopped",
    ] {
        assert!(log.contains(line), "{line:?} not in:\n{log}");
    }
}

/// POSTs JSON `body` to `serve`'s API with the token: the HTTP status.
fn post(port: u16, path: &str, token: &str, body: &str) -> u16 {
    let res = ureq::post(&format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/json")
        .send_string(body);
    match res {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("POST {path}: {e}"),
    }
}

/// "Send to class" and "stop" through the HTTP API: the teacher's URL becomes a session the
/// class joins with `get`; stopping it ends the student's `get` with one clear line.
#[test]
fn serve_sends_a_url_to_the_class_and_stops_it_from_the_api() {
    let dir = TempDir::new("board-act");
    let www = www_with(dir.path(), "slow.iso", 6_000_000, 33);
    // 1 MB/s: the session is still under way when it is stopped.
    let http = Http::start(
        &mut Command::new("env"),
        &www,
        "127.0.0.1",
        &["--rate", "1000000"],
    );
    let group = "239.77.12.2:47311";
    let web = free_port();
    let token = "class-token-0123";
    let server = common::serve(
        group,
        "47312",
        &[
            "--allow",
            "127.0.0.1",
            "--http",
            &web.to_string(),
            "--http-token",
            token,
        ],
    );
    until(web, Duration::from_secs(10), "serve's board", |_| true);
    let url = format!("http://127.0.0.1:{}/slow.iso", http.port);
    let body = serde_json::json!({ "url": url }).to_string();
    assert_eq!(post(web, "/api/v1/sessions", token, &body), 202);
    let s = until(web, Duration::from_secs(10), "the teacher's session", |s| {
        s["sessions"].as_array().unwrap().len() == 1
    });
    let id = s["sessions"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s["sessions"][0]["phase"], "waiting",
        "it waits for the class"
    );
    let r = &s["serve"]["requests"][0];
    assert_eq!(
        (&r["from"], &r["answer"]),
        (&"teacher".into(), &"started".into())
    );
    let student = get(group, &url, &dir.path().join("pc1"));
    until(web, Duration::from_secs(10), "the student receiving", |s| {
        s["sessions"][0]["receivers"][0]["state"] == "receiving"
    });
    assert_eq!(
        post(web, &format!("/api/v1/sessions/{id}/stop"), token, "{}"),
        202
    );
    let o = student.wait(Duration::from_secs(10));
    let log = text(&server.stop()).1;
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}\nserver: {log}");
    assert!(
        stderr.contains("the sender aborted the session"),
        "{stderr}"
    );
    assert!(
        log.contains(&format!("session {id}: stopped by the operator")),
        "{log}"
    );
}
