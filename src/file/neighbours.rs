//! Other senders on a sender's group. Two `send`s on one group take each other's receivers (a
//! receiver joins the first session it hears), so a sender that hears another session's ANNOUNCE
//! says so, once per session, naming its address and a group nearby that nobody announces on.
//!
//! A thread of its own, off the send loop: it listens on the group through a socket filter that
//! lets only other sessions' ANNOUNCEs in, so the sender's own data, looped back, costs the kernel
//! a filter run and nothing more. Once it hears another sender it listens on the next few groups
//! for a moment too, for a free one to suggest.

use crate::net::{self, Group, Iface};
use edm_cast_proto::wire::{HEADER_LEN, MAGIC, Packet, PacketType, VERSION, printable};
use socket2::SockFilter;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Groups after ours that are listened to, for one to suggest.
const NEARBY: u32 = 4;
/// How long a group must have been listened to before it is called free: ANNOUNCEs come every
/// 200 ms, so a running session is heard a few times within it.
const JUDGED_AFTER: Duration = Duration::from_millis(700);
/// How often the sockets are read: a warning is a person's business, not a packet's.
const TICK: Duration = Duration::from_millis(100);
/// Sessions warned about at most (a hostile LAN could announce thousands).
const MAX_WARNINGS: usize = 4;

/// The watching thread, and the lines it has for the operator; it stops when dropped.
pub struct Neighbours {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    lines: mpsc::Receiver<String>,
}

impl Neighbours {
    /// Starts watching `group` (joined on `iface`) for sessions other than `own`. `None` if the
    /// group cannot be joined: the send goes on without the warning.
    pub fn start(group: Group, iface: Iface, own: u32) -> Option<Neighbours> {
        let ours = match announces(group, iface, Some(own)) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("not watching {group} for other senders: {e}");
                return None;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, lines) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("neighbours".into())
            .spawn(move || watch(group, iface, own, ours, &flag, &tx))
            .ok()?;
        Some(Neighbours {
            stop,
            thread: Some(thread),
            lines,
        })
    }

    /// The warnings found since the last call.
    pub fn lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Stops watching; the warnings not yet taken, a session heard just now included.
    pub fn finish(mut self) -> Vec<String> {
        self.stop_thread();
        self.lines()
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Neighbours {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn watch(
    group: Group,
    iface: Iface,
    own: u32,
    ours: UdpSocket,
    stop: &AtomicBool,
    tx: &mpsc::Sender<String>,
) {
    // Heard, not yet told: (session, from, name).
    let mut heard: Vec<(u32, SocketAddr, String)> = Vec::new();
    let mut told: Vec<u32> = Vec::new();
    // The groups nearby, joined only once another sender is heard (a join draws their traffic
    // to this PC's port): since when, and each one's socket and whether it is busy.
    let mut nearby: Option<(Instant, Vec<Nearby>)> = None;
    let mut buf = vec![0u8; 2048];
    // Enough said: the rest of the session goes unwatched.
    while told.len() < MAX_WARNINGS {
        let stopping = stop.load(Ordering::Relaxed);
        for (from, session, name) in read(&ours, &mut buf) {
            if session != own
                && heard.len() + told.len() < MAX_WARNINGS
                && !told.contains(&session)
                && !heard.iter().any(|h| h.0 == session)
            {
                heard.push((session, from, name));
            }
        }
        if !heard.is_empty() {
            let (since, groups) =
                nearby.get_or_insert_with(|| (Instant::now(), join_nearby(group, iface)));
            for (_, socket, busy) in groups.iter_mut() {
                *busy |= !read(socket, &mut buf).is_empty();
            }
            // Told once the groups nearby have been heard long enough to call one free, or at
            // the end with what is known: a short session must not end without its warning.
            if stopping || since.elapsed() >= JUDGED_AFTER {
                let free = groups.iter().find(|(_, _, busy)| !busy).map(|(g, _, _)| *g);
                for (session, from, name) in heard.drain(..) {
                    told.push(session);
                    let _ = tx.send(warning(group, from, session, &name, free));
                }
                // Left: nothing more to suggest until another sender comes.
                nearby = None;
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(TICK);
    }
}

/// A group near ours, joined: whether anyone was heard announcing there.
type Nearby = (Group, UdpSocket, bool);

/// The groups after `group`, on its port, joined to hear whether anyone announces there.
fn join_nearby(group: Group, iface: Iface) -> Vec<Nearby> {
    (1..=NEARBY)
        .filter_map(|i| {
            // Parsed again: a neighbour that is no valid group (224.0.0.x) is skipped.
            let g: Group = group.offset(i, group.0.port()).to_string().parse().ok()?;
            Some((g, announces(g, iface, None).ok()?, false))
        })
        .collect()
}

/// The one line: who else is on the group, what happens, and what to do.
fn warning(
    group: Group,
    from: SocketAddr,
    session: u32,
    name: &str,
    free: Option<Group>,
) -> String {
    format!(
        "warning: another sender, {from} (session {session:08x}, \"{name}\"), is on {group} too: \
         receivers join whichever they hear first; {}",
        match free {
            Some(g) if g.0.port() == group.0.port() =>
                format!("use a free group: --group {}", g.0.ip()),
            Some(g) => format!("use a free group: --group {g}"),
            None if group.0.is_ipv6() => {
                "use another group (--group ff15::x) than the ones nearby".into()
            }
            None => "use another group (--group 239.x.y.z) than the ones nearby".into(),
        }
    )
}

/// The ANNOUNCEs waiting on `socket`: sender, session, file name. Bounded: the filter lets only
/// ANNOUNCEs in, a few a second per session.
fn read(socket: &UdpSocket, buf: &mut [u8]) -> Vec<(SocketAddr, u32, String)> {
    let mut got = Vec::new();
    for _ in 0..64 {
        let Ok((n, from)) = socket.recv_from(buf) else {
            break;
        };
        if let Ok(d) = Packet::parse(&buf[..n])
            && let Packet::Announce(a) = d.packet
        {
            got.push((from, d.session, printable(&a.name)));
        }
    }
    got
}

/// A socket joined to `group` that takes only ANNOUNCEs, and of those none of session `except`.
fn announces(group: Group, iface: Iface, except: Option<u32>) -> Result<UdpSocket, String> {
    let socket = net::group_socket(group, iface).map_err(|e| e.to_string())?;
    socket2::SockRef::from(&socket)
        .attach_filter(&announce_filter(except))
        .map_err(|e| format!("cannot filter {group}: {e}"))?;
    // What came in before the filter was attached may be anything: dropped unread.
    while socket.recv_from(&mut [0u8; 1]).is_ok() {}
    Ok(socket)
}

/// A classic BPF program (socket(7) SO_ATTACH_FILTER) over the UDP datagram (its 8-byte header
/// first): passes those whose payload starts as an edm-cast ANNOUNCE, of a session other than
/// `except`.
fn announce_filter(except: Option<u32>) -> Vec<SockFilter> {
    const UDP_HEADER: u32 = 8;
    let head = u32::from_be_bytes([MAGIC[0], MAGIC[1], VERSION, PacketType::Announce as u8]);
    let (ld_word, jeq, ret) = (
        (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        (libc::BPF_RET | libc::BPF_K) as u16,
    );
    let (pass, drop) = (
        SockFilter::new(ret, 0, 0, u32::MAX),
        SockFilter::new(ret, 0, 0, 0),
    );
    let session_at = UDP_HEADER + (HEADER_LEN as u32 - 4);
    match except {
        // 0: ld head; 1: jeq head ? 2 : 5; 2: ld session; 3: jeq own ? 5 : 4; 4: pass; 5: drop.
        Some(own) => vec![
            SockFilter::new(ld_word, 0, 0, UDP_HEADER),
            SockFilter::new(jeq, 0, 3, head),
            SockFilter::new(ld_word, 0, 0, session_at),
            SockFilter::new(jeq, 1, 0, own),
            pass,
            drop,
        ],
        // 0: ld head; 1: jeq head ? 2 : 3; 2: pass; 3: drop.
        None => vec![
            SockFilter::new(ld_word, 0, 0, UDP_HEADER),
            SockFilter::new(jeq, 0, 1, head),
            pass,
            drop,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_names_the_other_sender_and_a_free_group() {
        let group: Group = "239.1.1.1".parse().unwrap();
        let from: SocketAddr = "10.0.0.7:40000".parse().unwrap();
        let w = warning(group, from, 0x1a2b3c4d, "x.iso", "239.1.1.2".parse().ok());
        assert!(
            w.contains("10.0.0.7:40000 (session 1a2b3c4d")
                && w.contains("on 239.1.1.1:5007")
                && w.ends_with("--group 239.1.1.2"),
            "{w}"
        );
        let w = warning(group, from, 1, "x", None);
        assert!(w.contains("use another group"), "{w}");
    }
}
