//! What every command's shell shares: the runtime, random ids, the host's name, and one way to
//! hear Ctrl-C and SIGTERM.

use crate::error::{Error, Exit};
use edm_cast_proto::WallClock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Every command's runtime: one thread for the network; a few more, started on demand, for the
/// blocking work of a receiver (decoding, the disk).
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
        .map_err(|e| Error::Other(format!("cannot start the runtime: {e}")))
}

/// A random number for session, receiver and viewer ids, from the operating system.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // The kernel's generator does not fail once the system is up; if it did, an id drawn from
    // the clock is still unique enough for a session.
    if getrandom::getrandom(&mut b).is_err() {
        return SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            ^ u64::from(std::process::id()) << 32;
    }
    u64::from_le_bytes(b)
}

/// Random bytes from the operating system, for keys.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| Error::Other(format!("cannot draw random bytes: {e}")))?;
    Ok(b)
}

/// The wall clock, tied to the monotonic clock the protocol runs on (signatures carry it).
pub fn wall_clock() -> WallClock {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    WallClock::new(Instant::now(), unix_ms)
}

/// This host's name (what a receiver calls itself on the sender's screen), or "" if unknown.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Which signal asked the command to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C (SIGINT): exit code 130.
    Interrupt,
    /// SIGTERM (`kill`, systemd): exit code 143.
    Terminate,
}

impl Stop {
    /// The conventional exit code: 128 + the signal's number.
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Interrupt => Exit::Interrupted,
            Stop::Terminate => Exit::Terminated,
        }
        .code()
    }
}

/// Ctrl-C and SIGTERM as one future, so every command honours both the same way. Made inside the
/// runtime, once per command; from then on the signals no longer kill the process.
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    pub fn new() -> Result<Self, Error> {
        let listen =
            |kind| signal(kind).map_err(|e| Error::Other(format!("cannot watch for signals: {e}")));
        Ok(Shutdown {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    /// Resolves at the next Ctrl-C or SIGTERM.
    pub async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
        }
    }
}
