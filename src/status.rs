//! What a running command says about itself, in one model: the snapshot behind the JSON API
//! (`/api/v1/status`), its event stream, the dashboard and the Prometheus metrics. `send` and
//! `serve` publish their sessions here, `serve` its downloads, `video` its channels; readers take
//! snapshots. Nothing here touches the network: the web server (`web/`) reads a [`Board`].
//!
//! The JSON shape is the API: fields are added, never renamed or removed, within `api_version` 1
//! (README, "Watching a class").

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// The API's version, in every snapshot and in the URL (`/api/v1/...`).
pub const API_VERSION: u32 = 1;

/// Points of the rate / receivers-done history kept for the dashboard's chart (one a second:
/// the last ten minutes).
pub const HISTORY: usize = 600;

/// Everything a command reports, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub api_version: u32,
    /// `send`, `serve` or `video`.
    pub command: &'static str,
    /// This host's name.
    pub host: String,
    /// Seconds since the command started.
    pub uptime_secs: f64,
    /// Whether actions (`serve`'s "send to class", "stop") are open to a client with the token.
    pub actions: bool,
    /// Which actions: `send` ("send to class", `POST /api/v1/sessions`) and `stop`
    /// (`POST /api/v1/sessions/{id}/stop`). Empty when `actions` is false.
    pub takes: Vec<&'static str>,
    /// File sessions, running and ended (`send`: one; `serve`: one per URL, the ended ones kept
    /// for a while).
    pub sessions: Vec<SessionStatus>,
    /// `serve` only: what students asked for, downloads and the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeStatus>,
    /// `video` only: channels and viewers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoStatus>,
    /// Send rate and receivers done over time, oldest first, one point a second.
    pub history: Vec<Sample>,
}

/// One file session.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionStatus {
    /// The session id, 8 hex digits, as the terminal and the receivers print it.
    pub id: String,
    pub name: String,
    /// None while a download's size is not known.
    pub size: Option<u64>,
    /// A tree (`send FOLDER`): how many files it holds; None for one file.
    pub files: Option<usize>,
    /// `file`, `download` or `cache`.
    pub origin: &'static str,
    /// `GROUP:PORT` it sends to.
    pub group: String,
    /// `waiting`, `first_pass`, `repairing`, `ending`, `finished`.
    pub phase: &'static str,
    /// How it ended: `sent`, `aborted`, `failed`; None while it runs.
    pub outcome: Option<&'static str>,
    /// Why it failed or was aborted, one line.
    pub failure: Option<String>,
    /// Receivers it waits for before sending (`--min-receivers`).
    pub min_receivers: usize,
    /// The configured rate (bit/s): a ceiling.
    pub rate_limit_bps: f64,
    /// What it sends now (bit/s of UDP payload, over the last second or so).
    pub send_rate_bps: f64,
    /// Seconds since the first pass began (0 while waiting).
    pub elapsed_secs: f64,
    /// Seconds left, while it can be estimated (the first pass).
    pub eta_secs: Option<f64>,
    pub blocks_total: u32,
    /// Blocks whose first pass is complete.
    pub blocks_sent: u32,
    /// UDP payload bytes sent, by kind.
    pub bytes: Bytes,
    pub datagrams: Datagrams,
    /// Wire bytes over the file's size (1.0 + the cost of FEC, repair and control).
    pub wire_ratio: f64,
    /// Receivers, counted by state.
    pub totals: Totals,
    /// Every receiver known, sorted by name, those needing attention first.
    pub receivers: Vec<ReceiverStatus>,
    /// Datagrams dropped, by reason (the protocol's counters).
    pub dropped: BTreeMap<&'static str, u64>,
    /// NEED reports taken.
    pub need_reports: u64,
    /// Hash-checked repair rounds (a block failed its digest somewhere).
    pub verify_rounds: u64,
    /// Hello-only receivers forgotten to make room in a full table.
    pub forgotten_receivers: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Bytes {
    /// DATA with source symbols.
    pub data: u64,
    /// DATA with repair symbols.
    pub repair: u64,
    /// Everything else (ANNOUNCE, DIGESTS, ACK, END, ...).
    pub control: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Datagrams {
    pub source: u64,
    pub repair: u64,
    pub control: u64,
}

/// Receivers by state; `hello_only` ones (said hello, never reported progress) are not counted in
/// `known`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub known: usize,
    pub done: usize,
    pub receiving: usize,
    pub joined: usize,
    pub failed: usize,
    pub dropped: usize,
    pub left_behind: usize,
    /// Receiving, but too slow for congestion control to follow (below `--min-rate`).
    pub slow: usize,
    pub hello_only: usize,
}

/// One receiver.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverStatus {
    /// Its id, 8 hex digits.
    pub id: String,
    /// The name it gave (printable characters only; may be empty).
    pub name: String,
    /// `IP:PORT` its feedback comes from.
    pub addr: String,
    /// `joined`, `receiving`, `slow` (receiving, but its path is too slow for congestion control
    /// to follow), `done`, `failed`, `dropped` (went silent), `left_behind` (lost too much, or was
    /// too slow, to be followed), `hello` (said hello, no progress yet: not counted).
    pub state: &'static str,
    /// Why it failed, in words (`stopped on the PC`, `its disk is full`, ...; `the sender
    /// aborted the session` for one still receiving when the session was cut short); for one
    /// left behind, `its link too slow to follow` if that is why.
    pub reason: Option<&'static str>,
    /// 0 to 1: the bytes of the blocks it decoded over the file's size (blocks over blocks while
    /// the size is not known): what its own `recv` shows.
    pub progress: f64,
    pub blocks_done: u32,
    /// The loss its reports show (0 to 1), once known.
    pub loss: Option<f64>,
    /// Whether it needs the teacher's attention (failed, dropped, left behind, too slow).
    pub attention: bool,
}

/// `serve`: the download manager.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServeStatus {
    /// URLs students asked for, newest first (bounded).
    pub requests: Vec<RequestStatus>,
    /// Downloads running or recently ended.
    pub downloads: Vec<DownloadStatus>,
    /// The cache, if `--cache`.
    pub cache: Option<CacheStatus>,
    /// Answers and sessions, counted: `offered` (OFFERs sent to students, the one to the student
    /// whose request started the session included; a `get` that lost its OFFER asks again and is
    /// counted again), `refused` (REFUSEs sent), `started` (sessions started, the teacher's too).
    pub answered: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestStatus {
    pub url: String,
    /// The student's address (IP), or `teacher` for the dashboard's "send to class". A student
    /// asking again for the same URL updates its entry rather than adding one.
    pub from: String,
    /// Seconds since the command started, at the latest request or answer.
    pub at_secs: f64,
    /// What the server did: `starting` (fetching, not answered yet), `started` (this request
    /// started the session), `offered` (told to join the session already running), `refused: WHY`
    /// (WHY as the student was told).
    pub answer: String,
    /// The session started or offered, 8 hex digits.
    pub session: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownloadStatus {
    pub url: String,
    /// The session carrying it, 8 hex digits.
    pub session: String,
    pub bytes: u64,
    pub size: Option<u64>,
    /// `downloading`, `done`, `failed: ...`, `cache`.
    pub state: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheStatus {
    /// Complete entries and the bytes they take (read every few seconds).
    pub entries: u64,
    pub bytes: u64,
    /// `--cache-size`.
    pub capacity: Option<u64>,
    /// URLs sent from the cache (current, or the web server could not be asked) ...
    pub hits: u64,
    /// ... and URLs downloaded because it had no current copy.
    pub misses: u64,
}

/// `video`: the relay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VideoStatus {
    pub channels: Vec<ChannelStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelStatus {
    pub name: String,
    /// `GROUP:PORT` of its RTP.
    pub group: String,
    /// `idle` (nobody watches), `starting` (a viewer came, no video out yet), `relaying`, or
    /// `source silent` (live, but no video from the source for 2 s).
    pub state: String,
    /// Viewers holding a lease.
    pub viewers: usize,
    /// Bit rate relayed, RTP and REPAIR together (bit/s of UDP payload over the last second).
    pub bitrate_bps: f64,
    /// RTP packets and REPAIR packets sent since the relay started.
    pub packets: u64,
    pub repair_packets: u64,
    /// RTP packets the viewers repaired by FEC, and lost for good (after FEC), as they report
    /// them in their lease renewals (proto/VIDEO.md, REQUEST): summed over the viewers, those
    /// gone included, so they never fall. A report is taken only if it grew, and by no more
    /// than the channel sent; a viewer older than the report counts as 0.
    pub fec_repaired: u64,
    pub fec_lost: u64,
}

/// One point of the history.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the command started.
    pub t: f64,
    /// Bit/s sent by all sessions together.
    pub send_rate_bps: f64,
    /// Receivers done, over all sessions.
    pub done: usize,
}

/// What a client may ask `serve` to do (with the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// "Send to class": start (or join) a session for this URL, as a student's `get` would.
    Send { url: String },
    /// Stop this session (its 8-hex-digit id): END goes out, receivers are told.
    Stop { session: u32 },
}

/// Where a command publishes its status and readers find it: cheap to clone, shared between the
/// command's threads and the web server's.
#[derive(Clone)]
pub struct Board {
    inner: Arc<Inner>,
}

struct Inner {
    command: &'static str,
    host: String,
    started: Instant,
    state: Mutex<State>,
    /// Bumped on every change; the event stream waits on it.
    changed: watch::Sender<u64>,
    actions: Option<mpsc::Sender<Action>>,
    takes: Vec<&'static str>,
}

#[derive(Default)]
struct State {
    sessions: BTreeMap<u32, SessionStatus>,
    /// Ended sessions' ids in the order they ended (ids are random: the map's order is not
    /// their age), so that pruning forgets the oldest.
    ended: VecDeque<u32>,
    serve: Option<ServeStatus>,
    video: Option<VideoStatus>,
    history: VecDeque<Sample>,
}

impl Board {
    /// A board for `command`; `actions` where the command takes them (a bounded channel: a
    /// client that floods actions is told the command is busy).
    pub fn new(command: &'static str, host: String, actions: Option<mpsc::Sender<Action>>) -> Self {
        let takes = match actions {
            Some(_) => vec!["send", "stop"],
            None => Vec::new(),
        };
        Self::taking(command, host, actions, takes)
    }

    /// A board whose command takes only the actions named in `takes` (`send`, `stop`): `send`
    /// stops its session but starts none.
    pub fn taking(
        command: &'static str,
        host: String,
        actions: Option<mpsc::Sender<Action>>,
        takes: Vec<&'static str>,
    ) -> Self {
        Board {
            inner: Arc::new(Inner {
                command,
                host,
                started: Instant::now(),
                state: Mutex::new(State::default()),
                changed: watch::Sender::new(0),
                actions,
                takes,
            }),
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        // A panic elsewhere while holding the lock leaves plain data behind: still readable.
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut state);
        let t = self.inner.started.elapsed().as_secs_f64();
        if state.history.back().is_none_or(|s| t - s.t >= 1.0) {
            let sample = Sample {
                t,
                send_rate_bps: state
                    .sessions
                    .values()
                    .filter(|s| s.outcome.is_none())
                    .map(|s| s.send_rate_bps)
                    .sum(),
                done: state.sessions.values().map(|s| s.totals.done).sum(),
            };
            if state.history.len() == HISTORY {
                state.history.pop_front();
            }
            state.history.push_back(sample);
        }
        drop(state);
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// Adds or replaces a session (by id).
    pub fn session(&self, id: u32, status: SessionStatus) {
        self.update(|s| {
            if status.outcome.is_some() && !s.ended.contains(&id) {
                s.ended.push_back(id);
            }
            s.sessions.insert(id, status);
        });
    }

    /// Forgets ended sessions beyond the newest `keep` of them (`serve` runs for weeks).
    pub fn prune_sessions(&self, keep: usize) {
        self.update(|s| {
            while s.ended.len() > keep {
                if let Some(id) = s.ended.pop_front() {
                    s.sessions.remove(&id);
                }
            }
        });
    }

    pub fn set_serve(&self, serve: ServeStatus) {
        self.update(|s| s.serve = Some(serve));
    }

    pub fn set_video(&self, video: VideoStatus) {
        self.update(|s| s.video = Some(video));
    }

    /// Seconds since the board was made (the command's start): `at_secs` in what is published.
    pub fn uptime_secs(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64()
    }

    /// The status now.
    pub fn snapshot(&self) -> Status {
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Status {
            api_version: API_VERSION,
            command: self.inner.command,
            host: self.inner.host.clone(),
            uptime_secs: self.inner.started.elapsed().as_secs_f64(),
            actions: self.inner.actions.is_some(),
            takes: self.inner.takes.clone(),
            sessions: state.sessions.values().cloned().collect(),
            serve: state.serve.clone(),
            video: state.video.clone(),
            history: state.history.iter().copied().collect(),
        }
    }

    /// Changes: `changed()` resolves after each update.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Whether the command takes actions of this kind (`send`, `stop`).
    pub fn takes(&self, kind: &str) -> bool {
        self.inner.actions.is_some() && self.inner.takes.contains(&kind)
    }

    /// Passes an action to the command; false if it takes none, is busy (the channel is full)
    /// or has ended.
    pub fn act(&self, action: Action) -> bool {
        self.inner
            .actions
            .as_ref()
            .is_some_and(|tx| tx.try_send(action).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_forgets_the_sessions_that_ended_first() {
        let board = Board::new("serve", "test".into(), None);
        let status = |outcome| SessionStatus {
            outcome,
            ..SessionStatus::default()
        };
        // Ended in the order 30, 10, 20 (ids are random: not their order); 5 still runs.
        for id in [30, 10, 20] {
            board.session(id, status(None));
        }
        board.session(5, status(None));
        for id in [30, 10, 20] {
            board.session(id, status(Some("sent")));
            // Published again at its end: still one entry.
            board.session(id, status(Some("sent")));
        }
        board.prune_sessions(2);
        let mut left: Vec<u32> = board
            .inner
            .state
            .lock()
            .unwrap()
            .sessions
            .keys()
            .copied()
            .collect();
        left.sort();
        assert_eq!(left, [5, 10, 20]);
        board.prune_sessions(0);
        assert_eq!(board.snapshot().sessions.len(), 1, "the running one stays");
    }
}
