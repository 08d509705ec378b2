//! What `serve` has done, as its board shows it (`--http`) and its log tells it: the URLs
//! students (and the teacher) asked for and what they were answered, the downloads with their
//! progress, the cache, and the answers counted by outcome. The serve loop feeds it; it publishes
//! a `ServeStatus` on the board and prints one line per request answered.

use crate::http::cache::Cache;
use crate::http::fetch::Progress;
use crate::status::{Board, CacheStatus, DownloadStatus, RequestStatus, ServeStatus};
use edm_cast_proto::Answer;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Requests kept (newest first): a class's worth, and a flood cannot grow it.
pub const REQUESTS: usize = 50;
/// Ended downloads kept, newest first.
const ENDED_DOWNLOADS: usize = 20;
/// Ended sessions kept on the board (`serve` runs for weeks).
const ENDED_SESSIONS: usize = 20;
/// How often the status goes out when nothing but download progress changed.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// How often the cache folder is looked at (it is listed and every entry's size read).
const CACHE_EVERY: Duration = Duration::from_secs(5);
/// Who a request from the dashboard (`Action::Send`) is from.
pub const TEACHER: &str = "teacher";

/// A session's source, as it started: what its download entry shows.
pub struct Started {
    pub session: u32,
    pub size: Option<u64>,
    /// A download's progress; None: sent from the cache.
    pub feed: Option<watch::Receiver<Progress>>,
}

struct Download {
    url: String,
    started: Started,
    /// Its session has ended (the download may still run: it fills the cache).
    ended: bool,
}

impl Download {
    fn status(&self) -> DownloadStatus {
        let s = &self.started;
        let (bytes, size, state) = match &s.feed {
            None => (s.size.unwrap_or(0), s.size, "cache".to_owned()),
            Some(feed) => {
                let p = feed.borrow();
                match &p.end {
                    None => (p.bytes, s.size, "downloading".to_owned()),
                    Some(Ok((size, _))) => (*size, Some(*size), "done".to_owned()),
                    Some(Err(why)) => (p.bytes, s.size, format!("failed: {why}")),
                }
            }
        };
        DownloadStatus {
            url: self.url.clone(),
            session: format!("{:08x}", s.session),
            bytes,
            size,
            state,
        }
    }

    /// Whether nothing more will change: the session is over and so is the download.
    fn over(&self) -> bool {
        self.ended
            && self
                .started
                .feed
                .as_ref()
                .is_none_or(|f| f.borrow().end.is_some())
    }
}

pub struct Ledger {
    board: Board,
    cache: Option<Arc<Cache>>,
    requests: VecDeque<RequestStatus>,
    downloads: Vec<Download>,
    answered: BTreeMap<&'static str, u64>,
    cache_status: Option<CacheStatus>,
    cache_read: Option<Instant>,
    /// Something besides download progress changed since the last publish.
    dirty: bool,
    published: Option<Instant>,
}

impl Ledger {
    pub fn new(board: Board, cache: Option<Arc<Cache>>) -> Self {
        Ledger {
            board,
            cache,
            requests: VecDeque::new(),
            downloads: Vec::new(),
            answered: BTreeMap::new(),
            cache_status: None,
            cache_read: None,
            dirty: true,
            published: None,
        }
    }

    /// Records what `from` was answered about `url`: a new entry, or the same request again (a
    /// `get` that repeats itself) moved to the front. The log has a line when the answer changes.
    fn note(&mut self, url: &str, from: String, answer: String, session: Option<u32>) {
        let at_secs = self.board.uptime_secs();
        let old = self
            .requests
            .iter()
            .position(|r| r.url == url && r.from == from)
            .and_then(|i| self.requests.remove(i));
        // A repeated answer keeps its session; a new one (a new session starting) does not.
        let session = session.map(|s| format!("{s:08x}")).or_else(|| {
            old.as_ref()
                .filter(|o| o.answer == answer)
                .and_then(|o| o.session.clone())
        });
        if old.as_ref().is_none_or(|o| o.answer != answer) {
            eprintln!("request from {from}: {url}: {answer}");
        }
        self.requests.push_front(RequestStatus {
            url: url.to_owned(),
            from,
            at_secs,
            answer,
            session,
        });
        self.requests.truncate(REQUESTS);
        self.dirty = true;
    }

    /// A request that starts a session: from a student, or the teacher (`None`).
    pub fn asked(&mut self, url: &str, from: Option<IpAddr>) {
        let from = from.map_or(TEACHER.to_owned(), |ip| ip.to_string());
        self.note(url, from, "starting".into(), None);
    }

    /// The teacher asked for a URL whose session is already running (or starting).
    pub fn joined(&mut self, url: &str, session: Option<u32>) {
        self.note(url, TEACHER.into(), "offered".into(), session);
    }

    /// An OFFER or REFUSE went to a student.
    pub fn answered(&mut self, url: &str, to: IpAddr, answer: &Answer) {
        let from = to.to_string();
        let (answer, session, outcome) = match answer {
            Answer::Offer { session, .. } => {
                // The student whose request started the session keeps "started".
                let starter = self
                    .requests
                    .iter()
                    .any(|r| r.url == url && r.from == from && r.answer == "started");
                let answer = if starter { "started" } else { "offered" };
                (answer.to_owned(), Some(*session), "offered")
            }
            Answer::Refused(why) => (format!("refused: {why}"), None, "refused"),
        };
        *self.answered.entry(outcome).or_default() += 1;
        self.note(url, from, answer, session);
    }

    /// Requests still starting for `url` get `answer`.
    fn settle(&mut self, url: &str, answer: &str, session: Option<u32>, log: bool) {
        for r in self
            .requests
            .iter_mut()
            .filter(|r| r.url == url && r.answer == "starting")
        {
            if log {
                eprintln!("request from {}: {url}: {answer}", r.from);
            }
            r.answer = answer.to_owned();
            r.session = session.map(|s| format!("{s:08x}"));
        }
        self.dirty = true;
    }

    /// The session for `url` runs: those who asked for it see "started", and its download
    /// (or cached copy) is followed.
    pub fn started(&mut self, url: &str, started: Started) {
        // The session's own line says so.
        self.settle(url, "started", Some(started.session), false);
        *self.answered.entry("started").or_default() += 1;
        self.downloads.push(Download {
            url: url.to_owned(),
            started,
            ended: false,
        });
        self.cache_read = None;
    }

    /// `url` will not be sent; `told` is what students were told. `log`: say so per request
    /// (unless the server's log already has the refusal, with its details).
    pub fn refused(&mut self, url: &str, told: &str, log: bool) {
        self.settle(url, &format!("refused: {told}"), None, log);
    }

    /// The session for `url` has ended; old downloads that are over are forgotten.
    pub fn ended(&mut self, url: &str) {
        for d in self.downloads.iter_mut().filter(|d| d.url == url) {
            d.ended = true;
        }
        let over = self.downloads.iter().filter(|d| d.over()).count();
        let mut extra = over.saturating_sub(ENDED_DOWNLOADS);
        // Oldest first: downloads are kept in the order they started.
        self.downloads.retain(|d| {
            let forget = extra > 0 && d.over();
            extra -= usize::from(forget);
            !forget
        });
        self.board.prune_sessions(ENDED_SESSIONS);
        self.cache_read = None;
        self.dirty = true;
    }

    /// Puts the status on the board if something changed, or every `PUBLISH_EVERY` while a
    /// download runs.
    pub fn publish(&mut self, now: Instant) {
        let due = self
            .published
            .is_none_or(|t| now.duration_since(t) >= PUBLISH_EVERY);
        let moving = self.downloads.iter().any(|d| !d.over());
        if !(self.dirty || due && moving) {
            return;
        }
        if let Some(cache) = &self.cache
            && self
                .cache_read
                .is_none_or(|t| now.duration_since(t) >= CACHE_EVERY)
        {
            self.cache_status = Some(cache.status());
            self.cache_read = Some(now);
        }
        self.board.set_serve(ServeStatus {
            requests: self.requests.iter().cloned().collect(),
            // Newest first, like the requests.
            downloads: self.downloads.iter().rev().map(Download::status).collect(),
            cache: self.cache_status.clone(),
            answered: self.answered.clone(),
        });
        self.dirty = false;
        self.published = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(board: &Board) -> ServeStatus {
        board.snapshot().serve.expect("published")
    }

    #[test]
    fn requests_are_one_entry_per_student_and_url_newest_first_and_bounded() {
        let board = Board::new("serve", "test".into(), None);
        let mut l = Ledger::new(board.clone(), None);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let url = "http://mirror/x.iso";
        let offer = Answer::Offer {
            session: 0xab,
            port: 5008,
        };
        l.asked(url, Some(a));
        l.started(
            url,
            Started {
                session: 0xab,
                size: Some(10),
                feed: None,
            },
        );
        // The OFFERs that follow: the student who started it keeps "started".
        l.answered(url, a, &offer);
        l.answered(url, b, &offer);
        l.answered(url, b, &offer);
        l.publish(Instant::now());
        let s = serve(&board);
        let got: Vec<(&str, &str, Option<&str>)> = s
            .requests
            .iter()
            .map(|r| (r.from.as_str(), r.answer.as_str(), r.session.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.3", "offered", Some("000000ab")),
                ("10.0.0.2", "started", Some("000000ab"))
            ]
        );
        assert_eq!(s.answered.get("offered"), Some(&3));
        assert_eq!(s.answered.get("started"), Some(&1));
        assert_eq!(s.downloads[0].state, "cache");
        // A flood of URLs keeps the newest.
        for i in 0..200 {
            let u = format!("http://mirror/{i}");
            l.asked(&u, Some(b));
            l.answered(&u, b, &Answer::Refused("busy".into()));
        }
        l.publish(Instant::now());
        let s = serve(&board);
        assert_eq!(s.requests.len(), REQUESTS);
        assert_eq!(s.requests[0].url, "http://mirror/199");
        assert_eq!(s.requests[0].answer, "refused: busy");
        assert_eq!(s.answered.get("refused"), Some(&200));
    }
}
