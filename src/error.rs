//! Errors that reach the user: one line each, saying what failed and what to do.

use crate::file::view::bytes;
use crate::http::fetch::Told;
use crate::rt::Stop;
use data_encoding::HEXLOWER;
use edm_cast_proto::wire::{FailReason, FileDigests};
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use interface {iface}: {why}")]
    Interface { iface: String, why: String },
    #[error("{what}: {source}")]
    Socket { what: String, source: io::Error },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}{}", path.display(), disk_full_hint(source))]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot write into {}: {source} (choose another --out)", path.display())]
    OutFolder { path: PathBuf, source: io::Error },
    #[error(
        "{name}{}: larger than --max-size {}; not received",
        size.map(|s| format!(" ({})", bytes(s))).unwrap_or_default(),
        bytes(*max)
    )]
    TooLarge {
        name: String,
        size: Option<u64>,
        max: u64,
    },
    #[error(
        "{name} ({}) does not fit in {}: the disk is full ({} free, {} kept spare); free space or choose another --out",
        bytes(*size),
        path.display(),
        bytes(*free),
        bytes(*spare)
    )]
    NoRoom {
        name: String,
        size: u64,
        path: PathBuf,
        free: u64,
        spare: u64,
    },
    #[error("no file received: {0} session(s) heard, each failed or refused (see above)")]
    NothingReceived(usize),
    /// A mistake on the command line (a value that is not valid, options that do not go
    /// together): exit 64.
    #[error("{0}")]
    Usage(String),
    /// Any other failure, said in one line: exit 1.
    #[error("{0}")]
    Other(String),
    #[error("{}", match .0 { Stop::Interrupt => "interrupted", Stop::Terminate => "terminated" })]
    Interrupted(Stop),
    #[error("{0}")]
    Protocol(String),
    #[error(
        "no session heard on {group} within {secs} s: is the sender running, on this LAN, with the same --group? (check --iface)"
    )]
    NoSession { group: String, secs: f64 },
    #[error(transparent)]
    Receive(#[from] edm_cast_proto::ReceiveError),
    #[error("the server refused {url}: {why}")]
    Refused { url: String, why: String },
    #[error(
        "no edm-cast server answered on {group} within {secs} s: is `edm-cast serve` running on this LAN with the same --group? (or give --server HOST)"
    )]
    NoServer { group: String, secs: f64 },
    /// `told` is what a student may be told instead (`serve`).
    #[error("cannot download {url}: {why}")]
    Fetch {
        url: String,
        why: String,
        told: Told,
    },
    #[error("{name}: {what} mismatch (expected {expected}, got {got}); the file was not kept")]
    DigestMismatch {
        name: String,
        what: &'static str,
        expected: String,
        got: String,
    },
}

impl Error {
    /// The first of the file's digests that is not what was announced, as an error.
    pub fn mismatch(name: &str, want: &FileDigests, got: &FileDigests) -> Option<Error> {
        let differs = |what, want: &[u8], got: &[u8]| {
            (want != got).then(|| Error::DigestMismatch {
                name: name.to_owned(),
                what,
                expected: HEXLOWER.encode(want),
                got: HEXLOWER.encode(got),
            })
        };
        differs("MD5", &want.md5, &got.md5)
            .or_else(|| differs("SHA-256", &want.sha256, &got.sha256))
    }

    /// What the final STATUS tells the sender about this error.
    pub fn fail_reason(&self) -> FailReason {
        match self {
            Error::Interrupted(_) => FailReason::Interrupted,
            Error::Write { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                FailReason::DiskFull
            }
            Error::Write { .. } => FailReason::CannotWrite,
            Error::DigestMismatch { .. } => FailReason::DigestMismatch,
            Error::TooLarge { .. } => FailReason::TooLarge,
            Error::NoRoom { .. } => FailReason::DiskFull,
            Error::OutFolder { .. } => FailReason::CannotWrite,
            Error::Receive(edm_cast_proto::ReceiveError::SenderGone(_)) => FailReason::SenderGone,
            _ => FailReason::Other,
        }
    }

    /// 130 or 143 for a signal, 64 for a usage mistake, else 1.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// The exit code as a number (the status lines give it).
    pub fn code(&self) -> u8 {
        match self {
            Error::Interrupted(stop) => stop.exit_code(),
            Error::Usage(_) => Exit::Usage.code(),
            _ => Exit::Error.code(),
        }
    }
}

/// Every exit code of the binary, in one place (listed in `edm-cast --help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    /// Any error; the last line on stderr says what.
    Error = 1,
    /// `send`: some receivers did not get the file (dropped, failed, left behind).
    SomeMissed = 2,
    /// `send --wait`: nobody said hello, so nothing was sent (`--send-anyway` sends all the same).
    NobodyJoined = 3,
    /// The command line is wrong (sysexits' EX_USAGE), so that a script can tell a typo from a
    /// transfer that failed.
    Usage = 64,
    /// Ctrl-C (128 + SIGINT).
    Interrupted = 130,
    /// SIGTERM (128 + SIGTERM).
    Terminated = 143,
}

impl Exit {
    pub const ALL: [Exit; 7] = [
        Exit::Success,
        Exit::Error,
        Exit::SomeMissed,
        Exit::NobodyJoined,
        Exit::Usage,
        Exit::Interrupted,
        Exit::Terminated,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

fn disk_full_hint(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        " (the disk is full: free space or choose another --out)"
    } else {
        ""
    }
}
