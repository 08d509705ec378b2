//! Downloads a URL into a spool file on a thread of its own, publishing how many bytes are on disk
//! as they arrive, so the sender can multicast each block as soon as it is complete. The MD5 is
//! computed from the bytes as they stream in. A dropped connection is resumed with a Range request
//! (If-Range guards against the resource changing meanwhile). `serve` bounds each download
//! (`Limits`: its size, its room in the spool, how slow and how long it may be), and a download
//! nobody receives any more stops.

use super::policy::Policy;
use super::spool::Claim;
use crate::error::Error;
use crate::file::view::bytes;
use edm_cast_proto::wire::{FileDigests, FileHasher};
use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Attempts to resume after a dropped connection, with no progress between them, before giving up.
const RESUMES: u32 = 5;
/// How often a download's rate and age are looked at.
const WATCH_TICK: Duration = Duration::from_millis(250);

/// What identifies a version of a resource (RFC 9110 section 8.8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Bounds on one download, for `serve`: a student asked for it. The operator's own `send URL` has
/// none (the default).
#[derive(Clone, Default)]
pub struct Limits {
    /// Refuse a larger Content-Length; cut a body off when it passes this.
    pub max_size: Option<u64>,
    /// Give up on a web server slower than this.
    pub min_rate: Option<MinRate>,
    /// Give up on a download not done this long after it was asked for.
    pub timeout: Option<Duration>,
    /// Its room in the spool.
    pub room: Option<Arc<Claim>>,
}

/// At least `bytes_per_sec` on average over each `window` (`--min-rate`, `--min-rate-window`).
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

impl Limits {
    /// How long the answer's head may take: a web server silent for a whole window is below any
    /// rate.
    fn head_wait(&self) -> Option<Duration> {
        match (self.min_rate.map(|r| r.window), self.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What a student is told about a download the server would not or could not start. An HTTP
/// status or a limit of the server's says nothing about the network behind the server; which
/// addresses refuse connections, do not resolve or do not speak TLS does (a student could scan
/// ports with the answers), so those are told in general terms. The operator's log has the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// The web server's answer: "404 Not Found".
    Status(String),
    /// A line meant for the student as it is: a limit of the server's.
    Plain(String),
    /// A connection, DNS or TLS failure, or no answer in time.
    Unreachable,
    /// A refused address or host name.
    Policy,
    /// The server's own trouble.
    Failed,
}

impl Told {
    pub fn text(&self) -> String {
        match self {
            Told::Status(s) => format!("the server could not fetch this URL ({s})"),
            Told::Plain(s) => s.clone(),
            Told::Unreachable => "the server cannot reach this address".into(),
            Told::Policy => "not allowed by the server's policy".into(),
            Told::Failed => "the server could not start this download (its log says why)".into(),
        }
    }
}

/// The download's progress, as the sender sees it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Bytes from the start of the resource that are in the spool file.
    pub bytes: u64,
    /// Set once: the final size and digests, or why the download failed.
    pub end: Option<End>,
}

/// How a download ended: its size and digests, or why it failed.
pub type End = Result<(u64, FileDigests), String>;

/// A download under way.
pub struct Download {
    /// The resource's name for the receivers: the last segment of the final URL's path.
    pub name: String,
    /// From Content-Length, if the server sent one.
    pub size: Option<u64>,
    pub progress: watch::Receiver<Progress>,
}

/// A download that has all its bytes in the spool file.
pub struct Finished<'a> {
    pub name: &'a str,
    pub validators: &'a Validators,
    pub size: u64,
    pub digests: FileDigests,
}

/// What a conditional GET found.
pub enum Fetched {
    Started(Download),
    /// The cached copy (whose validators were sent) is still current.
    NotModified,
}

/// An HTTP(S) client that only connects to hosts and addresses `policy` allows (checked per
/// connection, so redirects and DNS tricks are covered too).
pub fn agent(policy: Arc<Policy>) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(30))
        .redirects(8)
        .user_agent(concat!("edm-cast/", env!("CARGO_PKG_VERSION")))
        .resolver(move |netloc: &str| -> io::Result<Vec<SocketAddr>> {
            // ureq asks with "host:port", the host as the URL (or a redirect's Location) names it.
            let host = netloc.rsplit_once(':').map_or(netloc, |(h, _)| h);
            policy
                .check_host(host)
                .map_err(|why| io::Error::new(io::ErrorKind::PermissionDenied, why))?;
            let addrs: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
            let mut refused = None;
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused = Some(why);
                        false
                    }
                })
                .collect();
            match (ok.is_empty(), refused) {
                (true, Some(why)) => Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
                _ => Ok(ok),
            }
        })
        .build()
}

/// Starts downloading `url` into `spool` (from byte 0), within `limits`. Errors that show at once
/// (a refused address, 404, TLS, no such host, too large, no room) come back here; later ones
/// arrive in `Progress::end`. With `cached`, the request is conditional and may come back
/// `NotModified`. `finished` is called on the download's thread once the whole resource is in the
/// spool file, before `Progress::end` says so: a cache takes the file there.
pub fn start(
    agent: &ureq::Agent,
    url: &str,
    spool: File,
    spool_path: PathBuf,
    cached: Option<&Validators>,
    limits: &Limits,
    finished: impl FnOnce(Finished<'_>) + Send + 'static,
) -> Result<Fetched, Error> {
    let job = Job {
        agent: agent.clone(),
        url: url.to_owned(),
        limits: limits.clone(),
        began: Instant::now(),
        size: None,
        validators: Validators::default(),
        spool,
        spool_path,
    };
    let cached = cached.cloned();
    // The request is made on the download's thread: a web server that never finishes the head of
    // its answer holds that thread, not the caller (nor `serve`'s slot) past the limits.
    let (head_tx, head_rx) = mpsc::sync_channel(1);
    std::thread::spawn(move || job.run(cached.as_ref(), &head_tx, finished));
    let lost = || {
        failed(
            url,
            "the download's thread failed (a bug: see above)",
            Told::Failed,
        )
    };
    match limits.head_wait() {
        Some(wait) => head_rx.recv_timeout(wait).map_err(|e| match e {
            RecvTimeoutError::Timeout => failed(
                url,
                format!("no answer from the web server within {} s", wait.as_secs()),
                Told::Unreachable,
            ),
            RecvTimeoutError::Disconnected => lost(),
        })?,
        None => head_rx.recv().map_err(|_| lost())?,
    }
}

struct Job {
    agent: ureq::Agent,
    url: String,
    limits: Limits,
    began: Instant,
    size: Option<u64>,
    validators: Validators,
    spool: File,
    spool_path: PathBuf,
}

impl Job {
    /// The whole download: the request, the answer's head (sent to `start`), then the body.
    fn run(
        mut self,
        cached: Option<&Validators>,
        head: &SyncSender<Result<Fetched, Error>>,
        finished: impl FnOnce(Finished<'_>),
    ) {
        let resp = match self.head(cached) {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                let _ = head.send(Ok(Fetched::NotModified));
                return;
            }
            Err(e) => {
                let _ = head.send(Err(e));
                return;
            }
        };
        let name = name_of(resp.get_url());
        let (tx, rx) = watch::channel(Progress::default());
        let download = Download {
            name: name.clone(),
            size: self.size,
            progress: rx,
        };
        if head.send(Ok(Fetched::Started(download))).is_err() {
            // `start` gave up waiting: nobody will read this body.
            return;
        }
        let tx = Arc::new(tx);
        if self.limits.min_rate.is_some() || self.limits.timeout.is_some() {
            let (tx, url, limits, began) = (
                tx.clone(),
                self.url.clone(),
                self.limits.clone(),
                self.began,
            );
            std::thread::spawn(move || watch_over(&tx, &url, &limits, began));
        }
        let end = self.body(resp.into_reader(), &tx);
        if let Ok((size, digests)) = end {
            finished(Finished {
                name: &name,
                validators: &self.validators,
                size,
                digests,
            });
        }
        // A verdict of the watchdog's came first and stands.
        tx.send_if_modified(|p| {
            let first = p.end.is_none();
            if first {
                p.end = Some(end);
            }
            first
        });
    }

    /// The answer's head: `None` for 304 Not Modified. A body that would not fit the limits is
    /// refused before it is fetched.
    fn head(&mut self, cached: Option<&Validators>) -> Result<Option<ureq::Response>, Error> {
        let url = &self.url;
        let mut req = self.agent.get(url);
        if let Some(v) = cached {
            if let Some(etag) = &v.etag {
                req = req.set("If-None-Match", etag);
            }
            if let Some(lm) = &v.last_modified {
                req = req.set("If-Modified-Since", lm);
            }
        }
        let resp = req.call().map_err(|e| fetch_error(url, e))?;
        if resp.status() == 304 {
            return Ok(None);
        }
        if resp.status() != 200 {
            let status = format!("{} {}", resp.status(), resp.status_text());
            return Err(failed(
                url,
                format!("unexpected answer {status}"),
                Told::Status(status),
            ));
        }
        self.size = resp
            .header("Content-Length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        self.validators = validators(&resp);
        if let (Some(size), Some(max)) = (self.size, self.limits.max_size)
            && size > max
        {
            return Err(failed(
                url,
                format!(
                    "its Content-Length ({}) is over --max-size {}",
                    bytes(size),
                    bytes(max)
                ),
                Told::Plain(format!(
                    "the file is larger than this server allows ({}; at most {})",
                    bytes(size),
                    bytes(max)
                )),
            ));
        }
        if let (Some(size), Some(room)) = (self.size, &self.limits.room) {
            room.reserve(size).map_err(|why| {
                failed(
                    url,
                    why,
                    Told::Plain(format!(
                        "the server has no room for this download ({}) now; try again later",
                        bytes(size)
                    )),
                )
            })?;
        }
        Ok(Some(resp))
    }

    /// Reads the body into the spool file, resuming after dropped connections, until its end, a
    /// limit, or nobody wants it any more.
    fn body(
        &self,
        mut body: Box<dyn Read + Send + Sync>,
        tx: &watch::Sender<Progress>,
    ) -> Result<(u64, FileDigests), String> {
        let mut hasher = FileHasher::default();
        let mut at = 0u64;
        let mut buf = vec![0u8; 256 << 10];
        let mut failures = 0;
        loop {
            // The session ended (aborted, or nobody joined it), or the watchdog gave up on it.
            if tx.is_closed() {
                return Err(format!("{}: nobody is receiving it any more", self.url));
            }
            if tx.borrow().end.is_some() {
                return Err(format!("{}: given up", self.url));
            }
            let dropped = match body.read(&mut buf) {
                Ok(0) => match self.size {
                    Some(size) if at < size => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the connection closed at byte {at} of {size} (Content-Length)"),
                    ),
                    _ => break,
                },
                Ok(n) => {
                    let total = at + n as u64;
                    if let Some(max) = self.limits.max_size
                        && total > max
                    {
                        return Err(format!(
                            "{}: cut off: more than --max-size {}",
                            self.url,
                            bytes(max)
                        ));
                    }
                    if let Some(room) = &self.limits.room {
                        room.take(total)
                            .map_err(|why| format!("{}: cut off: {why}", self.url))?;
                    }
                    self.spool
                        .write_all_at(&buf[..n], at)
                        .map_err(|e| format!("cannot write {}: {e}", self.spool_path.display()))?;
                    hasher.update(&buf[..n]);
                    at = total;
                    failures = 0;
                    tx.send_modify(|p| p.bytes = at);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            failures += 1;
            if failures > RESUMES {
                return Err(format!(
                    "{}: gave up after {RESUMES} attempts to resume at byte {at}: {dropped}",
                    self.url
                ));
            }
            tracing::warn!("{}: {dropped}; resuming at byte {at}", self.url);
            std::thread::sleep(Duration::from_millis(100 << failures.min(4)));
            match self.resume(at) {
                Ok(b) => body = b,
                Err(Resume::Retry(e)) => tracing::warn!("{}: resume failed: {e}", self.url),
                Err(Resume::Fatal(e)) => return Err(format!("{}: {e}", self.url)),
            }
        }
        if let Some(size) = self.size
            && at != size
        {
            return Err(format!(
                "{}: the server sent {at} bytes but said Content-Length {size}",
                self.url
            ));
        }
        Ok((at, hasher.finish()))
    }

    /// The rest of the resource from byte `at`: a 206 for exactly that range, or (a server that
    /// ignores Range) the whole resource again with the first `at` bytes skipped, provided it has
    /// not changed.
    fn resume(&self, at: u64) -> Result<Box<dyn Read + Send + Sync>, Resume> {
        let mut req = self
            .agent
            .get(&self.url)
            .set("Range", &format!("bytes={at}-"));
        // If-Range needs a strong validator: an ETag, else the date.
        if let Some(v) = self
            .validators
            .etag
            .as_ref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.validators.last_modified.as_ref())
        {
            req = req.set("If-Range", v);
        }
        let resp = match req.call() {
            Ok(r) => r,
            // Nothing there from `at` on: the resource is shorter than the server first said.
            Err(ureq::Error::Status(416, _)) => {
                return Err(Resume::Fatal(match self.size {
                    Some(size) => {
                        format!("the server said Content-Length {size} but has only {at} bytes")
                    }
                    None => format!("the server has no bytes past {at} (416)"),
                }));
            }
            Err(e) => return Err(Resume::Retry(fetch_error(&self.url, e).to_string())),
        };
        let changed = validators(&resp) != self.validators;
        match resp.status() {
            206 => {
                let start = resp
                    .header("Content-Range")
                    .and_then(|r| r.strip_prefix("bytes "))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(at) {
                    return Err(Resume::Fatal(format!(
                        "the server resumed at the wrong place ({start:?}, not {at})"
                    )));
                }
                Ok(resp.into_reader())
            }
            200 if changed => Err(Resume::Fatal(
                "the resource changed during the download; start again".into(),
            )),
            200 => {
                let mut body = resp.into_reader();
                io::copy(&mut (&mut body).take(at), &mut io::sink())
                    .map_err(|e| Resume::Retry(e.to_string()))?;
                Ok(body)
            }
            s => Err(Resume::Retry(format!("answer {s} to a Range request"))),
        }
    }
}

/// Gives up on a download too slow or too long (`Limits::min_rate`, `Limits::timeout`): its end
/// becomes that error, which aborts its session at once, whatever its thread is blocked on (a
/// read, a resume's request); that thread stops at its next look.
fn watch_over(tx: &watch::Sender<Progress>, url: &str, limits: &Limits, began: Instant) {
    // Each window is judged on its own: a server that keeps the average up is not cut off for one
    // slow moment, and one that drips is within a window or two.
    let mut mark = (Instant::now(), 0u64);
    loop {
        std::thread::sleep(WATCH_TICK);
        let (bytes_now, ended) = {
            let p = tx.borrow();
            (p.bytes, p.end.is_some())
        };
        if ended || tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let why = if let Some(t) = limits.timeout
            && now >= began + t
        {
            Some(format!(
                "not done after {} s (--fetch-timeout)",
                t.as_secs()
            ))
        } else if let Some(r) = limits.min_rate
            && now >= mark.0 + r.window
        {
            let secs = (now - mark.0).as_secs_f64();
            let got = bytes_now - mark.1;
            mark = (now, bytes_now);
            ((got as f64) < r.bytes_per_sec as f64 * secs).then(|| {
                format!(
                    "too slow: {} in the last {secs:.0} s, under --min-rate {}/s",
                    bytes(got),
                    bytes(r.bytes_per_sec)
                )
            })
        } else {
            None
        };
        if let Some(why) = why {
            tx.send_if_modified(|p| {
                let first = p.end.is_none();
                if first {
                    p.end = Some(Err(format!("{url}: {why}")));
                }
                first
            });
            return;
        }
    }
}

/// Why a resume failed: worth another try, or not.
enum Resume {
    Retry(String),
    Fatal(String),
}

fn validators(resp: &ureq::Response) -> Validators {
    Validators {
        etag: resp.header("ETag").map(str::to_owned),
        last_modified: resp.header("Last-Modified").map(str::to_owned),
    }
}

fn failed(url: &str, why: impl Into<String>, told: Told) -> Error {
    Error::Fetch {
        url: url.into(),
        why: why.into(),
        told,
    }
}

/// One line a person can act on: the status, the refused address, the TLS or DNS failure.
fn fetch_error(url: &str, e: ureq::Error) -> Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let status = format!("{code} {}", resp.status_text());
            failed(url, status.clone(), Told::Status(status))
        }
        ureq::Error::Transport(t) => {
            // The policy's refusal, an io error deep in the chain, is the whole story.
            let mut source = std::error::Error::source(&t);
            while let Some(e) = source {
                if let Some(io) = e.downcast_ref::<io::Error>()
                    && io.kind() == io::ErrorKind::PermissionDenied
                {
                    return failed(url, io.to_string(), Told::Policy);
                }
                source = e.source();
            }
            let mut why = t.kind().to_string();
            if let Some(m) = t.message() {
                why = format!("{why}: {m}");
            }
            if let Some(src) = std::error::Error::source(&t) {
                why = format!("{why}: {src}");
            }
            failed(url, why, Told::Unreachable)
        }
    }
}

/// The file name a URL's path ends with, or "download".
pub fn name_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once("://").map_or(path, |(_, rest)| rest);
    match path.split_once('/') {
        Some((_, p)) => p.rsplit('/').next().filter(|s| !s.is_empty()),
        None => None,
    }
    .map(percent_decode)
    .unwrap_or_else(|| "download".into())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a `send` argument is a URL rather than a file.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_path() {
        assert_eq!(name_of("https://example.org/a/ubuntu.iso"), "ubuntu.iso");
        assert_eq!(name_of("http://h:8000/x%20y.bin?token=1#f"), "x y.bin");
        assert_eq!(name_of("http://h/"), "download");
        assert_eq!(name_of("http://h"), "download");
    }
}
