//! `send --http` during real loopback transfers: the JSON API, its event stream, `/metrics`
//! against the summary, the token on actions, and the dashboard in a real (headless) browser (also
//! `video --http`: a channel whose source went silent).

mod common;

use common::lab::tool_available;
use common::{Proc, TempDir, md5_of, random_file, recv, send, text};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "class-token-0123456789abcdef";

/// A port free a moment ago on loopback: the sender binds it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `send FILE --http 127.0.0.1:PORT --http-token TOKEN` with `extra`, and its base URL once its
/// session is on the board.
fn sender(group: &str, file: &Path, extra: &[&str]) -> (Proc, String) {
    let port = free_port().to_string();
    let mut args = vec!["--http", &port, "--http-token", TOKEN];
    args.extend_from_slice(extra);
    let p = send(group, file, &args);
    let base = format!("http://127.0.0.1:{port}");
    // The server answers at once; the session is on the board from its first turn.
    wait_for(&format!("the session on {base}/api/v1/status"), || {
        let st = get_json(&base, "/api/v1/status").ok()?;
        (!st["sessions"].as_array()?.is_empty()).then_some(())
    });
    (p, base)
}

/// Calls `f` until it returns something, for at most a minute.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "no {what} within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get_json(base: &str, path: &str) -> Result<Value, String> {
    let body = ureq::get(&format!("{base}{path}"))
        .timeout(Duration::from_secs(5))
        .call()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

/// POSTs `body` to `path` with `auth` as the Authorization header: (status, JSON answer).
fn post(base: &str, path: &str, auth: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = ureq::post(&format!("{base}{path}")).timeout(Duration::from_secs(5));
    if let Some(a) = auth {
        req = req.set("Authorization", a);
    }
    let res = match req
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {path}: {e}"),
    };
    let code = res.status();
    let answer = res.into_string().unwrap();
    (
        code,
        serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{code}: not JSON: {answer}")),
    )
}

/// The one session on the board.
fn session(base: &str) -> Value {
    let st = get_json(base, "/api/v1/status").unwrap();
    assert_eq!(st["sessions"].as_array().unwrap().len(), 1, "{st}");
    st["sessions"][0].clone()
}

/// The first `n` `status` events of `/api/v1/events`, read on a thread (within 30 s).
fn events(base: &str, n: usize) -> std::thread::JoinHandle<Vec<Value>> {
    let url = format!("{base}/api/v1/events");
    std::thread::spawn(move || {
        let res = ureq::get(&url)
            .timeout(Duration::from_secs(30))
            .call()
            .unwrap();
        assert_eq!(res.content_type(), "text/event-stream");
        let mut lines = BufReader::new(res.into_reader()).lines();
        let mut got = Vec::new();
        while got.len() < n {
            let line = lines.next().expect("the stream ended").unwrap();
            if line == "event: status" {
                let data = lines.next().unwrap().unwrap();
                let json = data.strip_prefix("data: ").expect("data after the event");
                got.push(serde_json::from_str(json).unwrap());
            }
        }
        got
    })
}

/// A number after `label` in the send summary (`  bytes      30669345 UDP payload ...`).
fn summary_figure(summary: &str, label: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label} line in {summary}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches('(')
        .parse()
        .unwrap()
}

/// `/metrics`, parsed: a real parser, and every line it skipped checked to be a comment (it
/// ignores what it does not understand).
fn scrape(base: &str) -> prometheus_parse::Scrape {
    let res = ureq::get(&format!("{base}/metrics")).call().unwrap();
    assert!(
        res.content_type()
            .starts_with("application/openmetrics-text"),
        "{}",
        res.content_type()
    );
    let body = res.into_string().unwrap();
    assert_eq!(body.lines().last(), Some("# EOF"), "{body}");
    let samples = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    for l in body.lines().filter(|l| l.starts_with('#')) {
        assert!(
            ["# HELP ", "# TYPE ", "# UNIT ", "# EOF"]
                .iter()
                .any(|p| l.starts_with(p)),
            "{l}"
        );
    }
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(
        scrape.samples.len(),
        samples,
        "lines not parsed in:\n{body}"
    );
    scrape
}

/// The sum of `metric`'s samples whose labels include `labels`.
fn metric(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name}: not a number"),
        })
        .collect();
    assert!(!found.is_empty(), "no {name}{labels:?}");
    found.iter().sum()
}

#[test]
fn the_api_events_and_metrics_follow_a_transfer_and_actions_without_the_token_change_nothing() {
    let dir = TempDir::new("web-api");
    let src = dir.path().join("lesson.bin");
    random_file(&src, 16 * 1024 * 1024, 12);
    let group = "239.77.120.1:47601";
    let (sender, base) = sender(
        group,
        &src,
        &[
            "--rate",
            "60M",
            "--min-receivers",
            "3",
            "--http-linger",
            "30",
        ],
    );
    let st = get_json(&base, "/api/v1/status").unwrap();
    assert_eq!(st["api_version"], 1);
    assert_eq!(st["command"], "send");
    assert_eq!(st["actions"], true);
    assert_eq!(st["takes"], json!(["stop"]));
    let s = session(&base);
    assert_eq!(s["name"], "lesson.bin");
    assert_eq!(s["size"], 16 * 1024 * 1024);
    assert_eq!(s["phase"], "waiting");
    assert_eq!(s["group"], group);
    let id = s["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 8);

    let stream = events(&base, 3);
    let outs: Vec<_> = (0..3).map(|i| dir.path().join(format!("pc{i}"))).collect();
    let receivers: Vec<Proc> = outs
        .iter()
        .enumerate()
        .map(|(i, o)| recv(group, o, &format!("pc{i}")))
        .collect();
    wait_for("first pass", || {
        (session(&base)["phase"] == "first_pass").then_some(())
    });

    // Actions: none without the token, none with a wrong one, no "send to class" on `send`,
    // only running sessions stopped.
    let stop = format!("/api/v1/sessions/{id}/stop");
    let (code, answer) = post(&base, &stop, None, json!({}));
    assert_eq!(
        (code, answer["error"].as_str().unwrap()),
        (401, "actions need the token: Authorization: Bearer TOKEN")
    );
    let (code, answer) = post(&base, &stop, Some("Bearer not-the-token"), json!({}));
    assert_eq!((code, answer), (403, json!({"error": "wrong token"})));
    let (code, _) = post(&base, &stop, Some(TOKEN), json!({}));
    assert_eq!(code, 403, "the token without 'Bearer ' is not it");
    let bearer = format!("Bearer {TOKEN}");
    let (code, answer) = post(
        &base,
        "/api/v1/sessions",
        Some(&bearer),
        json!({"url": "http://example.org/x"}),
    );
    assert_eq!(
        (code, answer),
        (405, json!({"error": "this command takes no 'send' action"}))
    );
    let (code, _) = post(
        &base,
        "/api/v1/sessions/0badc0de/stop",
        Some(&bearer),
        json!({}),
    );
    assert_eq!(code, 404);

    let got = stream.join().unwrap();
    assert_eq!(got.len(), 3);
    for ev in &got {
        assert_eq!(ev["api_version"], 1);
        assert_eq!(ev["sessions"][0]["id"], id.as_str());
    }

    // The transfer goes on to its end, every receiver done.
    let s = wait_for("the session's end", || {
        let s = session(&base);
        s["outcome"].is_string().then_some(s)
    });
    assert_eq!(s["outcome"], "sent", "{s}");
    assert_eq!(s["phase"], "finished");
    assert_eq!(s["totals"]["done"], 3, "{s}");
    assert_eq!(s["totals"]["known"], 3);
    let names: Vec<&str> = s["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "done", "{r}");
            assert_eq!(r["progress"], 1.0);
            r["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["pc0", "pc1", "pc2"]);

    let m = scrape(&base);
    // The summary is printed before the linger: end the linger, read it.
    sender.interrupt();
    let out = sender.wait(LIMIT);
    let (so, se) = text(&out);
    assert!(out.status.success(), "{so}\n{se}");
    assert!(
        se.contains(&format!(
            "dashboard on {base}/ (actions need the token given with --http-token)"
        )),
        "{se}"
    );
    assert!(so.contains("receivers  3 done / 3 known"), "{so}");
    let bytes = summary_figure(&so, "bytes");
    assert_eq!(
        metric(&m, "edm_cast_session_bytes_total", &[("session", &id)]) as u64,
        bytes
    );
    assert_eq!(s["bytes"]["total"], bytes);
    let datagrams = summary_figure(&so, "datagrams");
    assert_eq!(
        metric(&m, "edm_cast_session_datagrams_total", &[("session", &id)]) as u64,
        datagrams
    );
    let repair_line = so.lines().find(|l| l.contains(" repair, ")).unwrap();
    let repair: u64 = repair_line
        .split(" source, ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        metric(
            &m,
            "edm_cast_session_datagrams_total",
            &[("session", &id), ("kind", "repair")]
        ) as u64,
        repair
    );
    assert_eq!(
        metric(
            &m,
            "edm_cast_receivers",
            &[("session", &id), ("state", "done")]
        ),
        3.0
    );
    assert_eq!(
        metric(&m, "edm_cast_receivers", &[("state", "failed")]),
        0.0
    );
    assert_eq!(
        metric(&m, "edm_cast_sessions", &[("phase", "finished")]),
        1.0
    );
    assert_eq!(metric(&m, "edm_cast_sessions", &[]), 1.0);
    let ratio = metric(&m, "edm_cast_session_wire_ratio", &[("session", &id)]);
    assert!(
        (ratio - bytes as f64 / (16.0 * 1024.0 * 1024.0)).abs() < 1e-9,
        "{ratio}"
    );
    assert_eq!(metric(&m, "edm_cast_info", &[("command", "send")]), 1.0);

    let want = md5_of(&src);
    for (r, o) in receivers.into_iter().zip(&outs) {
        let out = r.wait(LIMIT);
        assert!(out.status.success(), "{:?}", text(&out));
        assert_eq!(md5_of(&o.join("lesson.bin")), want);
    }
}

#[test]
fn a_stop_with_the_token_ends_the_send_early() {
    let dir = TempDir::new("web-stop");
    let src = dir.path().join("big.bin");
    random_file(&src, 24 * 1024 * 1024, 13);
    let group = "239.77.120.2:47602";
    // 24 MiB at 8 Mbit/s: some 25 s, unless stopped.
    let (sender, base) = sender(group, &src, &["--rate", "8M", "--min-receivers", "2"]);
    let id = session(&base)["id"].as_str().unwrap().to_owned();
    let outs: Vec<_> = (0..2).map(|i| dir.path().join(format!("pc{i}"))).collect();
    let receivers: Vec<Proc> = outs
        .iter()
        .enumerate()
        .map(|(i, o)| recv(group, o, &format!("pc{i}")))
        .collect();
    wait_for("the first pass under way", || {
        let s = session(&base);
        (s["blocks_sent"].as_u64().unwrap() >= 1).then_some(())
    });
    let (code, answer) = post(
        &base,
        &format!("/api/v1/sessions/{id}/stop"),
        Some(&format!("Bearer {TOKEN}")),
        json!({}),
    );
    assert_eq!((code, answer), (202, json!({"accepted": true})));
    let stopped = Instant::now();
    let out = sender.wait(LIMIT);
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "the stop took {:?}",
        stopped.elapsed()
    );
    let (so, se) = text(&out);
    assert!(!out.status.success(), "{so}\n{se}");
    assert!(so.starts_with("aborted: big.bin"), "{so}");
    assert!(se.contains("stopped by the operator"), "{se}");
    // The receivers are told: END (aborted), not a timeout.
    for r in receivers {
        let out = r.wait(Duration::from_secs(15));
        assert!(!out.status.success(), "{:?}", text(&out));
    }
}

/// A headless Chromium, killed (with its helpers, in its process group) on drop, its profile
/// in a temporary directory; its DevTools endpoint on a port it chose.
struct Browser {
    child: Child,
    devtools: u16,
    _profile: TempDir,
}

impl Browser {
    /// Chromium showing `url`, or None (after saying why) when it is not installed and not
    /// required.
    fn open(url: &str) -> Option<Browser> {
        use std::os::unix::process::CommandExt;
        if !tool_available("dashboard browser", "chromium") {
            return None;
        }
        let profile = TempDir::new("chromium");
        let child = Command::new("chromium")
            // As root (CI) Chromium runs only without its sandbox.
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let active = profile.path().join("DevToolsActivePort");
        let devtools = wait_for("DevToolsActivePort", || {
            std::fs::read_to_string(&active)
                .ok()?
                .lines()
                .next()?
                .parse()
                .ok()
        });
        Some(Browser {
            child,
            devtools,
            _profile: profile,
        })
    }

    /// The DevTools connection to the page showing `url`.
    fn page(&self, url: &str) -> Cdp {
        let list = format!("http://127.0.0.1:{}", self.devtools);
        let ws = wait_for("the page's DevTools target", || {
            let targets = get_json(&list, "/json/list").ok()?;
            targets.as_array()?.iter().find_map(|t| {
                (t["type"] == "page" && t["url"].as_str()?.starts_with(url))
                    .then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))?
            })
        });
        let stream = TcpStream::connect(("127.0.0.1", self.devtools)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (ws, _) = tungstenite::client(ws.as_str(), stream).expect("DevTools handshake");
        Cdp { ws, next: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this Chromium leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The Chrome DevTools Protocol over a WebSocket: one call at a time.
struct Cdp {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let msg = self.ws.read().expect("DevTools answers");
            let Ok(text) = msg.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expr}: {r}");
        r["result"]["value"].clone()
    }
}

const DONE_ROWS: &str =
    r#"document.querySelectorAll('tr[data-receiver][data-state="done"]').length"#;

#[test]
fn a_browser_sees_three_receivers_finish_live() {
    let dir = TempDir::new("web-browser");
    let src = dir.path().join("lesson.bin");
    random_file(&src, 12 * 1024 * 1024, 14);
    let group = "239.77.120.3:47603";
    let (sender, base) = sender(
        group,
        &src,
        &[
            "--rate",
            "40M",
            "--min-receivers",
            "3",
            "--http-linger",
            "30",
        ],
    );
    let url = format!("{base}/");
    let Some(browser) = Browser::open(&url) else {
        return;
    };
    let mut page = browser.page(&url);
    // The page, loaded while the sender waits: a session, no receiver yet.
    wait_for("the session on the page", || {
        let phase = page.eval("document.querySelector('[data-session]')?.dataset.phase ?? null");
        (phase == "waiting").then_some(())
    });
    assert_eq!(
        page.eval("document.getElementById('live').textContent"),
        "live"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('tr[data-receiver]').length"),
        0
    );
    // Marks this page: still there at the end means the rows came by the event stream, not by
    // a reload.
    page.eval("window.loadedOnce = true");

    // Students name their PCs: a name that is markup stays text.
    let names = ["pc0", "pc1", "pc2<img src=x onerror=pwned=1>"];
    let outs: Vec<_> = (0..3).map(|i| dir.path().join(format!("pc{i}"))).collect();
    let receivers: Vec<Proc> = outs
        .iter()
        .zip(names)
        .map(|(o, name)| recv(group, o, name))
        .collect();
    wait_for("three receiver rows done", || {
        (page.eval(DONE_ROWS) == 3).then_some(())
    });
    assert_eq!(page.eval("window.loadedOnce"), true);
    let shown = page.eval(
        "[...document.querySelectorAll('tr[data-receiver]')].map(r => r.cells[0].textContent)",
    );
    assert_eq!(
        shown,
        json!(["pc0", "pc1", "pc2<img src=x onerror=pwned=1>"])
    );
    assert_eq!(page.eval("document.querySelectorAll('img').length"), 0);
    assert_eq!(page.eval("typeof window.pwned"), "undefined");
    assert_eq!(
        page.eval("document.querySelector('.totals').textContent"),
        "3/3 done"
    );
    // Read-only without a token: the stop button is greyed out.
    assert_eq!(
        page.eval("document.querySelector('button.stop').disabled"),
        true
    );
    sender.interrupt();
    let out: Output = sender.wait(LIMIT);
    assert!(out.status.success(), "{:?}", text(&out));
    for r in receivers {
        assert!(r.wait(LIMIT).status.success());
    }
}

#[test]
fn the_page_stops_a_session_with_the_token() {
    let dir = TempDir::new("web-page-stop");
    let src = dir.path().join("big.bin");
    random_file(&src, 24 * 1024 * 1024, 16);
    let group = "239.77.120.5:47605";
    let (sender, base) = sender(group, &src, &["--rate", "8M", "--min-receivers", "1"]);
    // The token comes in the link's fragment, as a teacher may bookmark it.
    let url = format!("{base}/");
    let Some(browser) = Browser::open(&format!("{url}#token={TOKEN}")) else {
        return;
    };
    let mut page = browser.page(&url);
    let receiver = recv(group, &dir.path().join("pc0"), "pc0");
    wait_for("the first pass on the page", || {
        let phase = page.eval("document.querySelector('[data-session]')?.dataset.phase ?? null");
        (phase == "first_pass").then_some(())
    });
    // The fragment is read and dropped from the address bar.
    assert_eq!(page.eval("location.hash"), "");
    assert_eq!(
        page.eval("document.querySelector('button.stop').disabled"),
        false
    );
    page.eval("window.confirm = () => true; document.querySelector('button.stop').click()");
    let out = sender.wait(Duration::from_secs(10));
    let (so, se) = text(&out);
    assert!(so.starts_with("aborted: big.bin"), "{so}");
    assert!(se.contains("stopped by the operator"), "{se}");
    assert!(!receiver.wait(Duration::from_secs(15)).status.success());
}

/// Not a check: the README's screenshot of a real run, eight receivers, the first four done
/// and the late ones still receiving. `cargo test --test web -- --ignored screenshot`; writes
/// bench/results/dashboard.png.
#[test]
#[ignore]
fn screenshot() {
    let dir = TempDir::new("web-shot");
    let src = dir.path().join("ubuntu-24.04-desktop.iso");
    random_file(&src, 48 * 1024 * 1024, 15);
    let group = "239.77.120.4:47604";
    let (sender, base) = sender(
        group,
        &src,
        &[
            "--rate",
            "40M",
            "--min-receivers",
            "4",
            "--http-linger",
            "30",
        ],
    );
    let url = format!("{base}/");
    let browser = Browser::open(&url).expect("chromium");
    let mut page = browser.page(&url);
    let names = [
        "lab-pc01", "lab-pc02", "lab-pc03", "lab-pc04", "lab-pc05", "lab-pc06", "lab-pc07",
        "lab-pc08",
    ];
    let mut receivers: Vec<Proc> = names[..4]
        .iter()
        .map(|n| recv(group, &dir.path().join(n), n))
        .collect();
    wait_for("half the first pass", || {
        let s = session(&base);
        (s["blocks_sent"].as_u64()? * 2 >= s["blocks_total"].as_u64()?).then_some(())
    });
    receivers.extend(
        names[4..]
            .iter()
            .map(|n| recv(group, &dir.path().join(n), n)),
    );
    wait_for("four done", || (page.eval(DONE_ROWS) == 4).then_some(()));
    // The chart's next point (one a second) shows them done too.
    std::thread::sleep(Duration::from_millis(1500));
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    );
    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = data_encoding::BASE64
        .decode(shot["data"].as_str().unwrap().as_bytes())
        .unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/dashboard.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("wrote {}", path.display());
    drop(sender);
    drop(receivers);
}

/// `video --always-on pi --http` fed by a camera that sends a second of frames and stops: the
/// page shows the channel relaying, then its state `source silent` marked for attention (the
/// red that marks a receiver needing attention), as the API says it.
#[test]
fn the_page_marks_a_video_channel_whose_source_went_silent() {
    let camera = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let ingest = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ingest.local_addr().unwrap();
    drop(ingest);
    let port = free_port().to_string();
    let relay = Proc::spawn(
        "relay",
        Command::new("timeout")
            .args(["-s", "INT", "60", common::bin(), "video", "--iface", "lo"])
            .args([
                "--group",
                "239.77.120.9:47609",
                "--from",
                "pi",
                "--always-on",
                "pi",
            ])
            .args(["--source", &format!("pi=udp://{to}"), "--http", &port]),
    );
    let url = format!("http://127.0.0.1:{port}/");
    wait_for("the relay's dashboard", || {
        get_json(&url, "api/v1/status").ok()
    });
    let Some(browser) = Browser::open(&url) else {
        return;
    };
    let mut page = browser.page(&url);
    let row = "document.querySelector('tr[data-channel=\"pi\"]')";
    let state = format!("[{row}?.querySelector('.state').textContent, {row}?.dataset.attention]");
    // A second of frames (SPS, PPS and an IDR, then P slices): the relay packetizes NAL units
    // whatever they hold.
    for i in 0..30u8 {
        let mut au = Vec::new();
        if i == 0 {
            au.extend([0, 0, 0, 1, 0x67, 0x64, 0, 0x1e, 0xac]);
            au.extend([0, 0, 0, 1, 0x68, 0xef, 0x0f, 0xcb]);
            au.extend([0, 0, 0, 1, 0x65, 0x88, 0x84, i]);
        } else {
            au.extend([0, 0, 0, 1, 0x41, 0x9a, 0x00, i]);
        }
        camera.send_to(&au, to).unwrap();
        std::thread::sleep(Duration::from_millis(33));
    }
    wait_for("the channel relaying on the page", || {
        (page.eval(&state) == json!(["relaying", "false"])).then_some(())
    });
    let silent = Instant::now();
    wait_for("the silent source on the page", || {
        (page.eval(&state) == json!(["source silent", "true"])).then_some(())
    });
    // The relay calls a source silent after 2 s without video; the page follows within a beat.
    assert!(
        silent.elapsed() < Duration::from_secs(5),
        "{:?}",
        silent.elapsed()
    );
    assert_eq!(
        page.eval(&format!(
            "getComputedStyle({row}.querySelector('.state')).color"
        )),
        page.eval(
            "(() => { const e = document.createElement('i'); e.style.color = 'var(--bad)'; \
             document.body.append(e); const c = getComputedStyle(e).color; e.remove(); \
             return c; })()"
        )
    );
    drop(relay);
}
