//! `--status FILE|-` on `send`, `recv` and `get`: one JSON object per line for every event a script
//! cares about (README, "Status lines for scripts"). Each line is written whole and flushed at
//! once, so a script reading a pipe sees each event as it happens. The transfer matters more than
//! its report: a status file that cannot be written (a closed pipe, a full disk) is said once on
//! stderr and then left alone.
//!
//! The format is versioned: every line has `"v":1`, `"time"` (RFC 3339, UTC) and `"event"`;
//! within version 1 fields and events are added, never renamed or removed.

use super::session::reason;
use crate::error::Error;
use data_encoding::HEXLOWER;
use edm_cast_proto::wire::FileDigests;
use edm_cast_proto::{ReceiverInfo, Sender, SenderEvent};
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// The line format's version, in every line.
pub const VERSION: u32 = 1;

/// `--status`, as `send`, `recv` and `get` take it.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArg {
    /// Write one JSON object per line for each event (receivers joining, done, failing; files
    /// done, with their digests; the summary) to FILE (appended to), or to stdout with `-` (the
    /// other output then goes to stderr).
    #[arg(long, value_name = "FILE|-")]
    pub status: Option<PathBuf>,
}

/// Where status lines go; cheap to clone (the `--exec` runs write theirs too). Does nothing
/// without `--status`.
#[derive(Clone, Default)]
pub struct StatusLines {
    out: Option<Arc<Mutex<Out>>>,
}

struct Out {
    sink: Sink,
    /// What the user gave, for the one line that says writing failed.
    what: String,
    /// Writing failed once: no more tries.
    broken: bool,
}

enum Sink {
    Stdout,
    File(File),
}

/// One event. The names are the `event` field's values.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// `send`: the session is announced and waits for receivers.
    SessionStarted {
        session: String,
        name: String,
        /// None while a download's size is not known.
        size: Option<u64>,
        /// None until a download has ended.
        md5: Option<String>,
        sha256: Option<String>,
        /// `file`, `download` or `cache`.
        origin: &'static str,
        group: String,
        min_receivers: usize,
        /// A tree (`send FOLDER`): its files; None for one file.
        files: Option<usize>,
    },
    /// `send`: the first pass began, with this many receivers.
    Sending { session: String, receivers: usize },
    /// `send`: a receiver said hello.
    ReceiverJoined {
        session: String,
        #[serde(flatten)]
        receiver: Who,
    },
    /// `send`: a receiver restarted on its PC took the place of an earlier one (`replaces`).
    ReceiverRestarted {
        session: String,
        #[serde(flatten)]
        receiver: Who,
        replaces: String,
    },
    /// `send`: a receiver has the whole file.
    ReceiverDone {
        session: String,
        #[serde(flatten)]
        receiver: Who,
    },
    /// `send`: a receiver gave up, for `reason` (as the PC reported it).
    ReceiverFailed {
        session: String,
        #[serde(flatten)]
        receiver: Who,
        reason: &'static str,
    },
    /// `send`: a receiver went silent and was dropped.
    ReceiverDropped {
        session: String,
        #[serde(flatten)]
        receiver: Who,
    },
    /// `send`: the session ended while a receiver that lost too much, or whose link was too
    /// slow, to be followed was still collecting.
    ReceiverLeftBehind {
        session: String,
        #[serde(flatten)]
        receiver: Who,
        /// As the sender's line says it (`left behind: its link took 10.2 Mbit/s, ...`).
        reason: String,
    },
    /// `recv`: listening on the group.
    Listening { group: String, iface: String },
    /// `get`: asking the lab's server for `url` (found by its announce on `group`, or `server`).
    Requesting {
        url: String,
        group: String,
        server: Option<String>,
    },
    /// `recv`: a session was joined; the file goes to `path`.
    SessionJoined {
        session: String,
        /// As announced (the sender's words, JSON-escaped), before the safe-name rules.
        name: String,
        size: Option<u64>,
        /// The sender's IP address.
        sender: String,
        /// The fingerprint of the trusted key that signed it; None if unsigned.
        signed_by: Option<String>,
        encrypted: bool,
        path: PathBuf,
    },
    /// `recv`: a file is verified and in place (or a copy with the same digests was there); for a
    /// tree, one per file of it.
    FileDone {
        session: String,
        path: PathBuf,
        size: u64,
        md5: String,
        sha256: String,
        sender: String,
        signed_by: Option<String>,
        already_present: bool,
        /// The folder of the tree the file is in; None for a file sent alone.
        tree: Option<PathBuf>,
        /// How it was found to be the file sent: `blocks` (every block matched its digest; the
        /// MD5 and SHA-256 are the announced ones) or `file` (computed from the file and matched:
        /// `--verify-file`, a copy already present, a tree's file).
        verified: &'static str,
    },
    /// `recv`: a tree is in place, after its files' `file_done` lines.
    TreeDone {
        session: String,
        /// Its folder.
        path: PathBuf,
        files: usize,
        folders: usize,
        /// Bytes of its files.
        bytes: u64,
        /// The tree stream's size and digests (what the sender announced and `recv` checked).
        size: u64,
        md5: String,
        sha256: String,
        sender: String,
        signed_by: Option<String>,
        /// As `file_done`'s, for the stream.
        verified: &'static str,
    },
    /// `recv`: a session resumed from what an earlier run kept, once every kept block is checked.
    Resumed {
        session: String,
        /// Blocks in the file ...
        blocks: u32,
        /// ... the earlier run had recorded as verified ...
        kept: u32,
        /// ... of which these matched this session's digests (received no more) ...
        matched: u64,
        /// ... and these did not (received again).
        rejected: u64,
        /// Bytes of file in the matched blocks.
        bytes: u64,
    },
    /// `recv`: a joined session failed (with `--keep`, the next one is awaited).
    SessionFailed {
        session: Option<String>,
        error: String,
    },
    /// `recv --exec`: the command ran for `path` and exited 0.
    ExecDone {
        session: String,
        path: PathBuf,
        secs: f64,
    },
    /// `recv --exec`: the command failed for `path`: a non-zero exit (`exit`), a signal, a timeout
    /// or a spawn error, said in `error`.
    ExecFailed {
        session: String,
        path: PathBuf,
        exit: Option<i32>,
        error: String,
    },
    /// The last line: how the command ends (`exit` is its exit code).
    Summary(Summary),
}

/// A receiver, as `send`'s lines name it.
#[derive(Debug, Serialize)]
pub struct Who {
    /// Its id, 8 hex digits.
    pub id: String,
    /// The name it gave (may be empty).
    pub name: String,
    /// `IP:PORT` its feedback comes from.
    pub addr: String,
}

impl Who {
    fn of(r: &ReceiverInfo) -> Self {
        Who {
            id: format!("{:08x}", r.id),
            name: r.name.clone(),
            addr: r.addr.to_string(),
        }
    }
}

/// The `summary` line, one shape per command (`command` says which).
#[derive(Debug, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Summary {
    Send {
        session: String,
        /// `sent`, `aborted`, `failed`.
        outcome: &'static str,
        exit: u8,
        /// The one line on stderr that says why `exit` is not 0.
        error: Option<String>,
        secs: f64,
        /// UDP payload bytes sent, and over the file's size.
        bytes: u64,
        wire_ratio: f64,
        /// Receivers by state (`hello_only` ones not counted in `known`).
        receivers: crate::status::Totals,
        /// Every receiver with its final state (`done`, `failed`, `dropped`, `left_behind`,
        /// `hello`) and, for a failed one, why.
        list: Vec<Final>,
    },
    Recv {
        exit: u8,
        error: Option<String>,
        /// Files received (or found already present) ...
        files: usize,
        /// ... sessions joined that failed ...
        failed: usize,
        /// ... and `--exec` runs that failed.
        exec_failed: usize,
    },
    Get {
        exit: u8,
        error: Option<String>,
        url: String,
        /// The file's path once received; None otherwise.
        path: Option<PathBuf>,
        /// Sessions joined that ended before the file was in (one that ended just as it came is
        /// asked for again).
        failed: usize,
    },
}

/// A receiver in `send`'s summary line.
#[derive(Debug, Serialize)]
pub struct Final {
    pub id: String,
    pub name: String,
    pub addr: String,
    pub state: &'static str,
    pub reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Line<'a> {
    v: u32,
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

impl StatusLines {
    /// Opens `--status`: `-` is stdout; a file is created if missing and appended to (a service's
    /// runs follow one another in it).
    pub fn open(arg: &StatusArg) -> Result<Self, Error> {
        let Some(path) = &arg.status else {
            return Ok(Self::default());
        };
        let sink = if path.as_os_str() == "-" {
            Sink::Stdout
        } else {
            Sink::File(
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        Error::Other(format!("--status: cannot open {}: {e}", path.display()))
                    })?,
            )
        };
        Ok(StatusLines {
            out: Some(Arc::new(Mutex::new(Out {
                what: match sink {
                    Sink::Stdout => "stdout".into(),
                    Sink::File(_) => path.display().to_string(),
                },
                sink,
                broken: false,
            }))),
        })
    }

    /// Whether the lines go to stdout: then the command's other output must go to stderr.
    pub fn on_stdout(&self) -> bool {
        self.out.as_ref().is_some_and(|o| {
            matches!(
                o.lock().unwrap_or_else(PoisonError::into_inner).sink,
                Sink::Stdout
            )
        })
    }

    /// Writes one line for `event`, now.
    pub fn emit(&self, event: Event) {
        let Some(out) = &self.out else {
            return;
        };
        let line = Line {
            v: VERSION,
            time: format!("{:.3}", jiff::Timestamp::now()),
            event: &event,
        };
        let mut text = match serde_json::to_vec(&line) {
            Ok(text) => text,
            Err(e) => return tracing::warn!("status line not written: {e}"),
        };
        text.push(b'\n');
        let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
        if out.broken {
            return;
        }
        // One write of the whole line: lines from the --exec runs never interleave with it.
        let written = match &mut out.sink {
            Sink::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&text).and_then(|()| stdout.flush())
            }
            Sink::File(f) => f.write_all(&text),
        };
        if let Err(e) = written {
            out.broken = true;
            eprintln!(
                "edm-cast: cannot write status lines to {}: {e}; no more are written, the transfer goes on",
                out.what
            );
        }
    }

    /// `send`: a line for one of the sender's events about a receiver (or the first pass).
    pub fn sender_event(&self, session: u32, ev: &SenderEvent, sender: &Sender) {
        if self.out.is_none() {
            return;
        }
        let session = format!("{session:08x}");
        let find = |id: &u32| sender.receivers().find(|r| r.id == *id).map(Who::of);
        let event = match *ev {
            SenderEvent::Started => Some(Event::Sending {
                session,
                receivers: sender.receivers().filter(|r| !r.dropped).count(),
            }),
            SenderEvent::ReceiverJoined { id } => {
                find(&id).map(|receiver| Event::ReceiverJoined { session, receiver })
            }
            SenderEvent::ReceiverRestarted { id, old } => {
                find(&id).map(|receiver| Event::ReceiverRestarted {
                    session,
                    receiver,
                    replaces: format!("{old:08x}"),
                })
            }
            SenderEvent::ReceiverDone { id } => {
                find(&id).map(|receiver| Event::ReceiverDone { session, receiver })
            }
            SenderEvent::ReceiverFailed { id } => {
                sender
                    .receivers()
                    .find(|r| r.id == id)
                    .map(|r| Event::ReceiverFailed {
                        session,
                        receiver: Who::of(r),
                        reason: reason(r.reason),
                    })
            }
            SenderEvent::ReceiverDropped { id } => {
                find(&id).map(|receiver| Event::ReceiverDropped { session, receiver })
            }
            SenderEvent::ReceiverLeftBehind { id } => (sender.receivers())
                .find(|r| r.id == id)
                .map(|r| Event::ReceiverLeftBehind {
                    session,
                    receiver: Who::of(r),
                    reason: super::view::left_behind(sender, r),
                }),
            SenderEvent::NeedBlock { .. } | SenderEvent::Finished => None,
        };
        if let Some(event) = event {
            self.emit(event);
        }
    }
}

/// Digests as the lines (and `--exec`'s environment) give them: lowercase hex.
pub fn hex(d: &FileDigests) -> (String, String) {
    (HEXLOWER.encode(&d.md5), HEXLOWER.encode(&d.sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_versioned_timed_and_named() {
        let line = Line {
            v: VERSION,
            time: "2026-11-30T04:47:39.123Z".into(),
            event: &Event::ReceiverDone {
                session: "1a2b3c4d".into(),
                receiver: Who {
                    id: "0000002a".into(),
                    name: "pc07".into(),
                    addr: "10.0.0.17:41000".into(),
                },
            },
        };
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            r#"{"v":1,"time":"2026-11-30T04:47:39.123Z","event":"receiver_done","session":"1a2b3c4d","id":"0000002a","name":"pc07","addr":"10.0.0.17:41000"}"#
        );
        let summary = Event::Summary(Summary::Recv {
            exit: 0,
            error: None,
            files: 3,
            failed: 0,
            exec_failed: 1,
        });
        assert_eq!(
            serde_json::to_string(&summary).unwrap(),
            r#"{"event":"summary","command":"recv","exit":0,"error":null,"files":3,"failed":0,"exec_failed":1}"#
        );
    }

    #[test]
    fn a_closed_pipe_is_said_once_and_never_fatal() {
        let (read, write) = std::io::pipe().unwrap();
        drop(read);
        let lines = StatusLines {
            out: Some(Arc::new(Mutex::new(Out {
                sink: Sink::File(File::from(std::os::fd::OwnedFd::from(write))),
                what: "a pipe".into(),
                broken: false,
            }))),
        };
        for _ in 0..3 {
            lines.emit(Event::Listening {
                group: "239.1.1.1:5007".into(),
                iface: "lo".into(),
            });
        }
        let out = lines.out.as_ref().unwrap().lock().unwrap();
        assert!(out.broken);
    }
}
