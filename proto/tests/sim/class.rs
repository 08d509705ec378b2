//! A class on the simulated network, run on a fake clock the way quinn-proto's test pair runs two
//! endpoints: `step` moves the clock to the next thing scheduled (a datagram's arrival, a state
//! machine's timeout, a paced send) and runs everything due then; `drive` steps until the class is
//! done. Seconds of protocol take milliseconds, the same way every time.
//!
//! The teacher's PC (host 0) runs `send` (one session) or `serve` (the download manager, which
//! starts a session per URL asked for); each student's PC runs `recv` or `get URL`. The class plays
//! the shell's part for each of them, in memory: blocks are read from the bytes being sent, files
//! are written to a `Vec`, and the MD5 check is a comparison with the original.

use crate::attack::{Attack, Attacker};
use crate::net::{Datagram, Link, Loss, Network, To};
use crate::tcp::{Growth, TCP_PORT, TcpFlow};
use edm_cast_proto::wire::{self, FeedbackAddr, FileDigests, Packet};
use edm_cast_proto::{
    Answer, Catalog, CatalogConfig, CatalogEvent, Destination, FileInfo, Layout, ReceiveError,
    Receiver, ReceiverConfig, ReceiverEvent, Reply, Requester, Sender, SenderConfig, SenderEvent,
    SymbolSet, Trust, WallClock,
};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The whole-file digests the simulated sender announces (the receivers' check is byte equality).
pub const DIGESTS: FileDigests = FileDigests {
    md5: [0; 16],
    sha256: [0; 32],
};

/// One data datagram every this long from each session: the shell's pacing (about 100 Mbit/s for
/// 1 KiB datagrams). Control datagrams are not held back.
pub const PACKET_TIME: Duration = Duration::from_micros(121);
pub const TEACHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// `send`'s group port; its session takes feedback on the same port of the teacher's PC.
pub const SEND_PORT: u16 = 5000;
/// `serve`: SERVER goes to the group's port, session N sends on `GROUP_PORT + 1 + N` (and takes
/// feedback there), requests come to `REQUEST_PORT`.
pub const GROUP_PORT: u16 = 5007;
pub const REQUEST_PORT: u16 = 5006;
/// A student's sockets: the receiver's (feedback goes out of it, ACKs come back to it), and the
/// requester's (SERVER announces come to it on the group's port).
pub const RECEIVER_PORT: u16 = 6000;
/// The wall clock at the start, Unix milliseconds: what signatures carry.
pub const UNIX_AT_T0: u64 = 1_800_000_000_000;
const REQUESTER_PORT: u16 = 40000;
/// How long `serve` holds a session open for a student it has just told to join (serve.rs).
const JOIN_GRACE: Duration = Duration::from_secs(3);
/// A download arrives in reads of this size.
const CHUNK: u64 = 16 << 10;
/// Steps at one instant before the class is taken to be stuck (a state machine asking to be woken
/// at a time already past would otherwise spin the test for ever).
const MAX_STEPS_AT_ONE_INSTANT: u32 = 10_000;
/// How late a timer wakes a host that asks again for an instant it was already polled at. On a
/// real clock a wake-up always comes a little later than asked, so a deadline a state machine
/// chose not to act on at that very instant is found passed next time; a fake clock must move on
/// too, or the host would be woken at the same instant for ever.
const TIMER_SLACK: Duration = Duration::from_micros(1);

/// A student's PC and its cable.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// From the switch to the PC: what it loses of the sessions' datagrams.
    pub down: Link,
    /// From the PC to the switch: its feedback and requests.
    pub up: Link,
    /// The PC starts `recv` or `get` at this time; what reaches it before is lost.
    pub joins_at: Duration,
    /// After this time the PC is switched off (a dead PC).
    pub dies_at: Option<Duration>,
    /// At this time the student stops `recv` (Ctrl-C: its final STATUS says so) and starts it
    /// again: a new receiver id, the same name.
    pub restarts_at: Option<Duration>,
    /// The restarted `recv` finds the file and the record of its verified blocks the first one
    /// left (`Receiver::resume`).
    pub resumes: bool,
    /// Its `recv` finds this share of the file's first blocks kept by an earlier session (a re-run,
    /// `send --resume-from`).
    pub kept_share: f64,
    /// In a sync session (`send --sync`): which bytes of the stream this PC already has (files
    /// it kept from an earlier session), as `recv` finds them once it has the stream's first
    /// `sync_prefix` bytes (the manifest).
    pub has: Option<fn(u64) -> bool>,
    pub sync_prefix: u64,
    pub buffered_blocks: usize,
    /// Its MD5 check fails (a bad disk, say).
    pub corrupt: bool,
}

impl Default for Peer {
    /// On from the start, on a quiet cable.
    fn default() -> Self {
        Peer {
            down: Link::default(),
            up: Link::default(),
            joins_at: Duration::ZERO,
            dies_at: None,
            restarts_at: None,
            resumes: false,
            kept_share: 0.0,
            has: None,
            sync_prefix: 0,
            buffered_blocks: 32,
            corrupt: false,
        }
    }
}

impl Peer {
    /// Losing each datagram sent to it with probability `p`.
    pub fn lossy(p: f64) -> Self {
        let down = Link {
            loss: Loss::Random(p),
            ..Link::default()
        };
        Peer {
            down,
            ..Peer::default()
        }
    }
}

/// What a student's PC runs.
#[derive(Clone, Debug)]
pub enum Command {
    /// `edm-cast recv`: the session that `send` sends.
    Recv,
    /// `edm-cast get URL`, with `--server`, or finding the server by its SERVER announce.
    Get {
        url: String,
        server: Option<SocketAddr>,
    },
}

/// Where a session's bytes come from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// All there from the start.
    File,
    /// Arriving at this many bytes per second (a download), its size known from the start or not.
    Growing {
        bytes_per_sec: u64,
        size_known: bool,
    },
}

/// How the teacher's PC runs `serve`.
#[derive(Clone, Debug)]
pub struct Serve {
    /// What the web holds; any other URL is "404 Not Found".
    pub web: Vec<(String, Vec<u8>)>,
    /// From a URL's first request to its session running: the fetch's connect and headers.
    pub fetch_time: Duration,
    /// `--max-sessions`.
    pub max_sessions: u16,
    /// For every session; its id (counted up from this one's) and feedback port are set per session.
    pub session: SenderConfig,
}

pub struct Class {
    pub net: Network,
    t0: Instant,
    now: Instant,
    teacher: Teacher,
    students: Vec<Student>,
    attackers: Vec<Attacker>,
    /// TCP flows sharing the switch (`tcp.rs`), each from a host of its own.
    tcp: Vec<TcpFlow>,
    /// Who each host is, by index on the network.
    roles: Vec<Role>,
    /// What students added from now on trust.
    trust: Option<Trust>,
    steps_at_now: u32,
}

#[derive(Clone, Copy)]
enum Role {
    Teacher,
    Student(usize),
    Attacker(usize),
    /// A TCP flow's sender: all it gets goes to `TCP_PORT`.
    Tcp,
}

impl Class {
    /// The teacher's PC alone on the switch; `uplink` is its cable to the switch, where a
    /// bottleneck would be.
    pub fn new(uplink: Link) -> Self {
        let t0 = Instant::now();
        let mut net = Network::new(t0);
        net.add_host(TEACHER.into(), uplink, Link::default(), 1);
        Class {
            net,
            t0,
            now: t0,
            teacher: Teacher {
                starts: t0,
                sessions: Vec::new(),
                serving: None,
                woken: false,
                polled_at: None,
            },
            students: Vec::new(),
            attackers: Vec::new(),
            tcp: Vec::new(),
            roles: vec![Role::Teacher],
            trust: None,
            steps_at_now: 0,
        }
    }

    /// The teacher's PC starts its command this long after the class begins (so that an attacker
    /// can announce first).
    pub fn teacher_starts_at(&mut self, at: Duration) {
        self.teacher.starts = self.t0 + at;
    }

    /// The wall clock the class's signatures and trust run on.
    pub fn wall_clock(&self) -> WallClock {
        WallClock::new(self.t0, UNIX_AT_T0)
    }

    /// Students added from now on take only sessions signed by these keys.
    pub fn trust(&mut self, trust: Trust) {
        self.trust = Some(trust);
    }

    /// A hostile PC on the switch, at `ip`, listening to `send`'s group.
    pub fn add_attacker(&mut self, ip: Ipv4Addr, attack: Attack) {
        let host = self.net.add_host(
            ip.into(),
            Link::default(),
            Link::default(),
            9000 + ip.octets()[3] as u64,
        );
        self.net.listen(host, SEND_PORT);
        self.roles.push(Role::Attacker(self.attackers.len()));
        let students = (self.students.iter())
            .map(|s| (SocketAddr::new(s.ip.into(), RECEIVER_PORT), s.receiver.id))
            .collect();
        self.attackers
            .push(Attacker::new(host, ip, attack, students, self.now));
    }

    /// A TCP flow (iperf3) from a PC of its own on a quiet cable to student `i`, sending from
    /// `starts` to `stops` after the class begins.
    pub fn add_tcp(&mut self, i: usize, tcp: (Growth, f64), starts: Duration, stops: Duration) {
        let ip = Ipv4Addr::new(10, 0, 2, self.tcp.len() as u8 + 1);
        let s = &self.students[i];
        let flow = TcpFlow::new(
            &mut self.net,
            ip,
            (s.host, s.ip),
            (self.t0 + starts, self.t0 + stops),
            tcp,
        );
        assert_eq!(flow.host(), self.roles.len());
        self.roles.push(Role::Tcp);
        self.tcp.push(flow);
    }

    pub fn tcp(&self, i: usize) -> &TcpFlow {
        &self.tcp[i]
    }

    /// The teacher runs `send`: one session of `file`, starting now.
    pub fn send(&mut self, file: &[u8], source: Source, cfg: SenderConfig) {
        let session = Session::new(cfg, file.into(), source, SEND_PORT, TEACHER, self.now);
        self.teacher.sessions.push(session);
    }

    /// The teacher runs `serve`.
    pub fn serve(&mut self, serve: Serve) {
        let catalog = Catalog::new(
            CatalogConfig {
                requests: FeedbackAddr::Source { port: REQUEST_PORT },
                ..CatalogConfig::default()
            },
            self.now,
        );
        self.teacher.serving = Some(Serving {
            catalog,
            web: serve
                .web
                .into_iter()
                .map(|(url, bytes)| (url, bytes.into()))
                .collect(),
            fetch_time: serve.fetch_time,
            max_sessions: serve.max_sessions,
            template: serve.session,
            running: BTreeMap::new(),
        });
    }

    /// A student's PC on the switch, running `command` from `peer.joins_at` on.
    pub fn add_student(&mut self, peer: Peer, command: Command) {
        let i = self.students.len();
        let ip = Ipv4Addr::new(10, 0, 1, i as u8 + 1);
        let host = self
            .net
            .add_host(ip.into(), peer.up, peer.down, 1000 + i as u64);
        self.roles.push(Role::Student(i));
        let receiver = ReceiverConfig {
            id: 100 + i as u32,
            name: format!("pc-{i:02}"),
            seed: 7 + i as u64,
            buffered_blocks: peer.buffered_blocks,
            trust: self.trust.clone(),
            ..ReceiverConfig::default()
        };
        let mut student = Student {
            host,
            ip,
            peer,
            receiver: receiver.clone(),
            expect: Rc::from(&[][..]),
            requester: None,
            answered_at: None,
            listener: None,
            stopped: None,
            woken: false,
            polled_at: None,
        };
        match command {
            Command::Recv => {
                let session = self.teacher.sessions.first();
                student.expect = session.expect("`recv` needs `send`").content.clone();
                self.net.listen(host, SEND_PORT);
                student.listener = Some(student.new_listener(receiver, SEND_PORT));
            }
            Command::Get { url, server } => {
                // `get` listens for the server's announce only if not told where it is.
                if server.is_none() {
                    self.net.listen(host, GROUP_PORT);
                }
                let serving = self.teacher.serving.as_ref().expect("`get` needs `serve`");
                if let Some(bytes) = serving.web.get(&url) {
                    student.expect = bytes.clone();
                }
                let id = 0x5100 + i as u32;
                student.requester = Some(Requester::new(id, url, server, None, self.t0));
            }
        }
        self.students.push(student);
    }

    /// Moves the clock to the next thing scheduled and runs everything due then. False when
    /// nothing is scheduled any more: the class has settled.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_wakeup() else {
            return false;
        };
        if next > self.now {
            self.now = next;
            self.steps_at_now = 0;
        } else {
            self.steps_at_now += 1;
            assert!(
                self.steps_at_now < MAX_STEPS_AT_ONE_INSTANT,
                "stuck at {:?}",
                self.elapsed()
            );
        }
        let (now, t0) = (self.now, self.t0);
        for (host, d) in self.net.deliveries(now) {
            if let To::Host(a) = d.to
                && a.port() == TCP_PORT
            {
                for f in &mut self.tcp {
                    f.deliver(now, host, &d, &mut self.net);
                }
                continue;
            }
            match self.roles[host] {
                Role::Teacher => self.teacher.deliver(now, d),
                Role::Student(i) => self.students[i].deliver(now, t0, d),
                Role::Attacker(i) => self.attackers[i].deliver(now, d),
                Role::Tcp => {}
            }
        }
        for f in &mut self.tcp {
            if f.timer().is_some_and(|t| t <= now) {
                f.poll(now, &mut self.net);
            }
        }
        for a in &mut self.attackers {
            if a.wake().is_some_and(|t| t <= now) {
                a.poll(now, &mut self.net);
            }
        }
        if self.teacher.woken || self.teacher.timer().is_some_and(|t| t <= now) {
            self.teacher.poll(now, &mut self.net);
        }
        for s in &mut self.students {
            if s.woken || s.timer(t0).is_some_and(|t| t <= now) {
                s.poll(now, t0, &mut self.net);
            }
        }
        true
    }

    /// Steps until the class is done, has settled, or `until` has passed since the start.
    pub fn drive(&mut self, until: Duration) {
        while !self.is_done() && self.elapsed() < until && self.step() {}
    }

    /// Every session is over, and every student has its file, has failed, was refused, or is off.
    pub fn is_done(&self) -> bool {
        let now = self.elapsed();
        self.teacher.is_done() && self.students.iter().all(|s| s.is_done(now))
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let hosts = self.students.iter().map(|s| s.timer(self.t0));
        let attackers = self.attackers.iter().map(Attacker::wake);
        let tcp = self.tcp.iter().map(TcpFlow::timer);
        let others = [self.teacher.timer(), self.net.poll_timeout()];
        (hosts.chain(attackers).chain(tcp).chain(others))
            .flatten()
            .min()
    }

    /// The fake clock's time.
    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// How long after the start `t` was.
    pub fn since_start(&self, t: Instant) -> Duration {
        t - self.t0
    }

    /// The sessions the teacher has run, in the order they started.
    pub fn sessions(&self) -> &[Session] {
        &self.teacher.sessions
    }

    /// `send`'s session.
    pub fn sender(&self) -> &Sender {
        &self.teacher.sessions[0].sender
    }

    pub fn catalog(&self) -> &Catalog {
        let serving = self.teacher.serving.as_ref();
        &serving.expect("the teacher runs `serve`").catalog
    }

    pub fn student(&self, i: usize) -> &Student {
        &self.students[i]
    }

    pub fn students(&self) -> &[Student] {
        &self.students
    }

    pub fn listener(&self, i: usize) -> &Listener {
        self.students[i].listener()
    }

    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.students.iter().map(Student::listener)
    }

    pub fn attacker(&self, i: usize) -> &Attacker {
        &self.attackers[i]
    }
}

struct Teacher {
    /// The teacher's PC starts its commands at this time.
    starts: Instant,
    sessions: Vec<Session>,
    serving: Option<Serving>,
    /// A datagram came in: poll even if no timer is due.
    woken: bool,
    polled_at: Option<Instant>,
}

impl Teacher {
    fn deliver(&mut self, now: Instant, d: Datagram) {
        let To::Host(to) = d.to else {
            unreachable!("the teacher's PC listens on no group")
        };
        self.woken = true;
        if to.port() == REQUEST_PORT
            && let Some(serving) = &mut self.serving
        {
            return serving.catalog.handle_datagram(now, d.from, &d.bytes);
        }
        // A port freed by a session that ended may have been given to a new one.
        let session = self.sessions.iter_mut().rev().find(|s| s.port == to.port());
        if let Some(s) = session {
            s.sender.handle_datagram(now, d.from, &d.bytes);
        }
    }

    fn timer(&self) -> Option<Instant> {
        let sessions = self.sessions.iter().map(Session::wake);
        let serving = self.serving.as_ref().and_then(Serving::wake);
        timer(sessions.chain([serving]).flatten().min(), self.polled_at).map(|t| t.max(self.starts))
    }

    fn poll(&mut self, now: Instant, net: &mut Network) {
        self.woken = false;
        if now < self.starts {
            return;
        }
        self.polled_at = Some(now);
        // The link is shared evenly by the sessions running, as `serve` shares its `--rate`.
        let sharing = self.serving.as_ref().map_or(1, |s| s.running.len().max(1));
        for s in &mut self.sessions {
            s.poll(now, net, 0, PACKET_TIME * sharing as u32);
        }
        if let Some(serving) = &mut self.serving {
            serving.poll(now, net, &mut self.sessions);
        }
    }

    fn is_done(&self) -> bool {
        self.sessions.iter().all(|s| s.sender.is_finished())
            && self.serving.as_ref().is_none_or(|s| s.running.is_empty())
    }
}

/// `serve`'s state besides the catalog, as serve.rs keeps it.
struct Serving {
    catalog: Catalog,
    web: BTreeMap<String, Rc<[u8]>>,
    fetch_time: Duration,
    max_sessions: u16,
    template: SenderConfig,
    running: BTreeMap<String, Running>,
}

/// A URL being served, on one of `max_sessions` slots.
#[derive(Clone, Copy, Debug)]
struct Running {
    slot: u16,
    stage: Stage,
}

#[derive(Clone, Copy, Debug)]
enum Stage {
    Fetching {
        until: Instant,
    },
    /// `session` is its index among the teacher's sessions.
    Sending {
        session: usize,
    },
}

impl Serving {
    fn wake(&self) -> Option<Instant> {
        let fetches = self.running.values().filter_map(|r| match r.stage {
            Stage::Fetching { until } => Some(until),
            Stage::Sending { .. } => None,
        });
        fetches.chain(self.catalog.poll_timeout()).min()
    }

    fn poll(&mut self, now: Instant, net: &mut Network, sessions: &mut Vec<Session>) {
        // Sessions that ended: the next request for their URL starts a new one.
        self.running.retain(|url, r| match r.stage {
            Stage::Sending { session } if sessions[session].sender.is_finished() => {
                self.catalog.ended(url);
                false
            }
            _ => true,
        });
        let fetched: Vec<String> = (self.running.iter())
            .filter(|(_, r)| matches!(r.stage, Stage::Fetching { until } if until <= now))
            .map(|(url, _)| url.clone())
            .collect();
        for url in fetched {
            let Some(bytes) = self.web.get(&url) else {
                self.running.remove(&url);
                self.catalog.refused(&url, "404 Not Found");
                continue;
            };
            let running = self.running.get_mut(&url).expect("fetched");
            let port = GROUP_PORT + 1 + running.slot;
            let cfg = SenderConfig {
                session: self.template.session.wrapping_add(sessions.len() as u32),
                feedback: FeedbackAddr::Source { port },
                ..self.template.clone()
            };
            let session = Session::new(cfg, bytes.clone(), Source::File, port, TEACHER, now);
            self.catalog.started(&url, session.id, port);
            running.stage = Stage::Sending {
                session: sessions.len(),
            };
            sessions.push(session);
        }
        while let Some(ev) = self.catalog.poll_event() {
            match ev {
                CatalogEvent::Start { url, .. } => {
                    let used = |s: &u16| self.running.values().any(|r| r.slot == *s);
                    match (0..self.max_sessions).find(|s| !used(s)) {
                        Some(slot) => {
                            let until = now + self.fetch_time;
                            let stage = Stage::Fetching { until };
                            self.running.insert(url, Running { slot, stage });
                        }
                        None => self.catalog.refused(&url, &busy(self.max_sessions)),
                    }
                }
                CatalogEvent::Offered { url } => {
                    let running = self.running.get(&url).map(|r| r.stage);
                    if let Some(Stage::Sending { session }) = running {
                        sessions[session].sender.hold_until(now + JOIN_GRACE);
                    }
                }
                // What the students were told: the simulation checks what they received.
                CatalogEvent::Answered { .. } => {}
            }
        }
        let mut buf = Vec::new();
        while let Some(reply) = self.catalog.poll_transmit(now, &mut buf) {
            let to = match reply {
                Reply::Group => To::Group(GROUP_PORT),
                Reply::To(a) => To::Host(a),
            };
            let from = SocketAddr::new(TEACHER.into(), REQUEST_PORT);
            net.send(now, 0, from, to, &buf);
        }
    }
}

/// A host's timer for `deadline`, as a real one fires: not before it, and, if the host was already
/// polled at or after it, `TIMER_SLACK` after that.
fn timer(deadline: Option<Instant>, polled_at: Option<Instant>) -> Option<Instant> {
    deadline.map(|t| match polled_at {
        Some(p) if t <= p => p + TIMER_SLACK,
        _ => t,
    })
}

/// `serve`'s refusal when every session slot is taken.
pub fn busy(max_sessions: u16) -> String {
    format!("the server is busy: {max_sessions} sessions are running (--max-sessions)")
}

/// A sending session on the teacher's PC: a `Sender`, its source and its pacing.
pub struct Session {
    pub sender: Sender,
    /// The session id its datagrams carry.
    pub id: u32,
    /// The PC it runs on.
    ip: Ipv4Addr,
    /// The group port it sends on, and where it takes feedback.
    port: u16,
    content: Rc<[u8]>,
    source: Source,
    started: Instant,
    /// Bytes of a growing source reported to the sender so far.
    fed: u64,
    /// When the pacer lets the next data datagram out.
    next_slot: Instant,
    /// The sender had data when last asked: wake at the next slot.
    busy: bool,
    /// Symbols sent per block.
    sent: Vec<u32>,
    /// Times the sender, just handed a timeout at `now`, asked to be woken at `now` or before:
    /// on a real clock the shell would spin until something changed.
    pub past_wakeups: u32,
}

impl Session {
    pub fn new(
        cfg: SenderConfig,
        content: Rc<[u8]>,
        source: Source,
        port: u16,
        ip: Ipv4Addr,
        now: Instant,
    ) -> Self {
        let len = content.len() as u64;
        let id = cfg.session;
        let sender = match source {
            Source::File => {
                let info = FileInfo {
                    name: "class.iso".into(),
                    size: Some(len),
                    digests: Some(DIGESTS),
                };
                Sender::new(cfg, info, now).unwrap()
            }
            Source::Growing { size_known, .. } => {
                let info = FileInfo {
                    name: "class.iso".into(),
                    size: size_known.then_some(len),
                    digests: None,
                };
                Sender::growing(cfg, info, now).unwrap()
            }
        };
        Session {
            sender,
            id,
            ip,
            port,
            content,
            source,
            started: now,
            fed: 0,
            next_slot: now,
            busy: false,
            sent: Vec::new(),
            past_wakeups: 0,
        }
    }

    /// Symbols of `block` sent so far, first pass and repair.
    pub fn sent(&self, block: u32) -> u32 {
        self.sent.get(block as usize).copied().unwrap_or(0)
    }

    pub fn wake(&self) -> Option<Instant> {
        // While busy, the sender's own timers wait for the pacer too, at most one packet time: a
        // datagram they make due (an ANNOUNCE, say) could not go out before the slot anyway.
        let sender = if self.busy {
            Some(self.next_slot)
        } else {
            self.sender.poll_timeout()
        };
        sender.into_iter().chain(self.next_feed()).min()
    }

    pub fn poll(&mut self, now: Instant, net: &mut Network, host: usize, packet_time: Duration) {
        self.feed(now);
        let timed_out = self.sender.poll_timeout().is_some_and(|t| t <= now);
        if timed_out {
            self.sender.handle_timeout(now);
        }
        let mut buf = Vec::new();
        loop {
            self.supply();
            if now < self.next_slot {
                break;
            }
            let Some(dest) = self.sender.poll_transmit(now, &mut buf) else {
                // A repair for a block no longer in memory: supply it (above) and go on.
                if self.supply() {
                    continue;
                }
                self.busy = false;
                // Timed out and with nothing left to send, it should next be woken later.
                if timed_out && self.sender.poll_timeout().is_some_and(|t| t <= now) {
                    self.past_wakeups += 1;
                }
                break;
            };
            if let Ok(wire::Datagram {
                packet: Packet::Data(d),
                ..
            }) = Packet::parse(&buf)
            {
                let block = d.block as usize;
                if self.sent.len() <= block {
                    self.sent.resize(block + 1, 0);
                }
                self.sent[block] += 1;
                // With congestion control the pacer follows the sender's rate, as the shell's.
                self.next_slot = now
                    + self.sender.rate().map_or(packet_time, |bps| {
                        Duration::from_secs_f64((buf.len() + 42) as f64 * 8.0 / bps)
                    });
                self.busy = true;
            }
            let to = match dest {
                Destination::Group => To::Group(self.port),
                Destination::Unicast(a) => To::Host(a),
            };
            let from = SocketAddr::new(self.ip.into(), self.port);
            net.send(now, host, from, to, &buf);
        }
    }

    /// Reads the blocks the sender asks for; true if it asked.
    fn supply(&mut self) -> bool {
        let mut supplied = false;
        while let Some(ev) = self.sender.poll_event() {
            if let SenderEvent::NeedBlock { block, offset, len } = ev {
                let data = self.content[offset as usize..][..len].to_vec();
                self.sender.supply_block(block, data);
                supplied = true;
            }
        }
        supplied
    }

    /// Tells the sender how much of a growing source has arrived, and at the end its size.
    fn feed(&mut self, now: Instant) {
        let Source::Growing { bytes_per_sec, .. } = self.source else {
            return;
        };
        if self.sender.source_done() {
            return;
        }
        let len = self.content.len() as u64;
        let micros = (now - self.started).as_micros();
        self.fed = ((bytes_per_sec as u128 * micros / 1_000_000) as u64).min(len);
        if self.fed == len {
            self.sender.source_ended(now, len, DIGESTS).unwrap();
        } else {
            self.sender.source_grew(now, self.fed);
        }
    }

    /// When the next chunk of a growing source will have arrived.
    fn next_feed(&self) -> Option<Instant> {
        let Source::Growing { bytes_per_sec, .. } = self.source else {
            return None;
        };
        if self.sender.source_done() {
            return None;
        }
        let bytes = ((self.fed / CHUNK + 1) * CHUNK).min(self.content.len() as u64);
        let micros = (bytes as u128 * 1_000_000).div_ceil(bytes_per_sec as u128);
        Some(self.started + Duration::from_micros(micros as u64))
    }
}

/// A student's PC.
pub struct Student {
    host: usize,
    ip: Ipv4Addr,
    peer: Peer,
    receiver: ReceiverConfig,
    /// What the PC must end up with: the file sent, or the URL's content.
    expect: Rc<[u8]>,
    requester: Option<Requester>,
    answered_at: Option<Duration>,
    listener: Option<Listener>,
    /// The listener stopped by a restart (`Peer::restarts_at`).
    pub stopped: Option<Listener>,
    woken: bool,
    polled_at: Option<Instant>,
}

impl Student {
    /// The receiving side; a `get` has one once it was offered a session.
    pub fn listener(&self) -> &Listener {
        self.listener
            .as_ref()
            .expect("this student receives nothing")
    }

    /// The server's answer to `get`.
    pub fn answer(&self) -> Option<&Answer> {
        self.requester.as_ref()?.answer()
    }

    /// When the answer reached `get`, since the start.
    pub fn answered_at(&self) -> Option<Duration> {
        self.answered_at
    }

    fn is_on(&self, since_start: Duration) -> bool {
        since_start >= self.peer.joins_at && self.peer.dies_at.is_none_or(|d| since_start < d)
    }

    fn is_done(&self, now: Duration) -> bool {
        self.peer.dies_at.is_some_and(|d| now >= d)
            || self.listener.as_ref().is_some_and(|l| l.finished)
            || matches!(self.answer(), Some(Answer::Refused(_)))
    }

    fn deliver(&mut self, now: Instant, t0: Instant, d: Datagram) {
        if !self.is_on(now - t0) {
            return;
        }
        self.woken = true;
        let for_listener = |l: &Listener| match d.to {
            To::Group(port) => port == l.port,
            To::Host(a) => a.port() == RECEIVER_PORT,
        };
        match (&mut self.requester, &mut self.listener) {
            (_, Some(l)) if for_listener(l) => l.deliver(now, d.from, &d.bytes),
            (Some(r), _) => r.handle_datagram(now, d.from, &d.bytes),
            _ => {}
        }
    }

    fn timer(&self, t0: Instant) -> Option<Instant> {
        let requester = self.requester.as_ref().and_then(Requester::poll_timeout);
        let listener = self.listener.as_ref().and_then(|l| l.rx.poll_timeout());
        let t = timer(requester.into_iter().chain(listener).min(), self.polled_at)?;
        let t = t.max(t0 + self.peer.joins_at);
        let t = match self.peer.restarts_at {
            Some(r) if self.stopped.is_none() => t.min(t0 + r),
            _ => t,
        };
        let dead = self.peer.dies_at.is_some_and(|d| t >= t0 + d);
        (!dead).then_some(t)
    }

    fn poll(&mut self, now: Instant, t0: Instant, net: &mut Network) {
        self.woken = false;
        self.polled_at = Some(now);
        if !self.is_on(now - t0) {
            return;
        }
        let mut buf = Vec::new();
        if let Some(r) = &mut self.requester {
            let from = SocketAddr::new(self.ip.into(), REQUESTER_PORT);
            while let Some(to) = r.poll_transmit(now, &mut buf) {
                net.send(now, self.host, from, To::Host(to), &buf);
            }
        }
        if self.answered_at.is_none()
            && let Some(answer) = self.answer().cloned()
        {
            self.answered_at = Some(now - t0);
            // As `get` does: receive the offered session, and only that one.
            if let Answer::Offer { session, port } = answer {
                net.listen(self.host, port);
                let cfg = ReceiverConfig {
                    session: Some(session),
                    ..self.receiver.clone()
                };
                self.listener = Some(self.new_listener(cfg, port));
            }
        }
        let from = SocketAddr::new(self.ip.into(), RECEIVER_PORT);
        if self.stopped.is_none()
            && self.peer.restarts_at.is_some_and(|r| now - t0 >= r)
            && let Some(mut old) = self.listener.take()
        {
            // Ctrl-C: the final STATUS goes out, then `recv` runs again with a fresh id.
            old.rx.fail(wire::FailReason::Interrupted);
            old.poll(now, net, self.host, from);
            let cfg = ReceiverConfig {
                id: old.rx_id + 1000,
                seed: self.receiver.seed + 1000,
                ..self.receiver.clone()
            };
            let mut new = self.new_listener(cfg, old.port);
            if self.peer.resumes {
                new.kept = Some((old.file.clone(), old.decoded.clone()));
            }
            self.listener = Some(new);
            self.stopped = Some(old);
        }
        if let Some(l) = &mut self.listener {
            l.poll(now, net, self.host, from);
        }
    }

    /// `recv`'s or `get`'s receiving side, for this PC.
    fn new_listener(&self, cfg: ReceiverConfig, port: u16) -> Listener {
        Listener {
            rx_id: cfg.id,
            rx: Receiver::new(cfg),
            port,
            file: Vec::new(),
            expect: self.expect.clone(),
            corrupt: self.peer.corrupt,
            kept: None,
            kept_share: self.peer.kept_share,
            has: self.peer.has,
            sync_prefix: self.peer.sync_prefix,
            holding: false,
            decoded: Vec::new(),
            finished: false,
            error: None,
            joined: None,
            layout: None,
            received: Vec::new(),
        }
    }
}

/// A receiver and the file it writes: `recv`'s or `get`'s receiving side (the shell's
/// `file/listener.rs`).
pub struct Listener {
    pub rx: Receiver,
    /// Its receiver's id.
    pub rx_id: u32,
    /// The group port it listens on.
    port: u16,
    pub file: Vec<u8>,
    expect: Rc<[u8]>,
    corrupt: bool,
    /// What an earlier run left: its file, and the blocks it decoded into it.
    kept: Option<(Vec<u8>, Vec<u32>)>,
    /// `Peer::kept_share`.
    kept_share: f64,
    /// `Peer::has`, `Peer::sync_prefix`, and whether the receiver holds its needs until it is
    /// told what is here.
    has: Option<fn(u64) -> bool>,
    sync_prefix: u64,
    holding: bool,
    /// The blocks decoded into `file`.
    pub decoded: Vec<u32>,
    /// Done with the file: it has it, or failed.
    pub finished: bool,
    pub error: Option<ReceiveError>,
    /// The session it joined.
    pub joined: Option<u32>,
    layout: Option<Layout>,
    /// The ESIs received of each block, in order of arrival.
    received: Vec<Vec<u32>>,
}

impl Listener {
    /// The ESIs received of `block` before the receiver finished, in order of arrival.
    pub fn received(&self, block: u32) -> &[u32] {
        self.received.get(block as usize).map_or(&[], Vec::as_slice)
    }

    fn deliver(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if !self.finished
            && let Ok(wire::Datagram {
                packet: Packet::Data(d),
                ..
            }) = Packet::parse(bytes)
        {
            let block = d.block as usize;
            if self.received.len() <= block {
                self.received.resize(block + 1, Vec::new());
            }
            self.received[block].push(d.esi);
        }
        self.rx.handle_datagram(now, from, bytes);
    }

    fn poll(&mut self, now: Instant, net: &mut Network, host: usize, from: SocketAddr) {
        if self.rx.poll_timeout().is_some_and(|t| t <= now) {
            self.rx.handle_timeout(now);
        }
        self.events(now);
        let mut buf = Vec::new();
        while let Some(to) = self.rx.poll_transmit(now, &mut buf) {
            net.send(now, host, from, To::Host(to), &buf);
        }
    }

    /// Plays the shell's part: file writes, decode jobs, the MD5 check (here: equality); in a sync
    /// session, the bytes already here once the manifest is.
    fn events(&mut self, now: Instant) {
        loop {
            self.events_once(now);
            if !(self.holding && self.rx.prefix_ready()) {
                return;
            }
            self.holding = false;
            let (layout, has) = (self.layout.expect("joined"), self.has.expect("holding"));
            let (t, size) = (layout.symbol_size() as u64, self.expect.len() as u64);
            let mut known = Vec::new();
            for b in 0..layout.num_blocks() {
                let k = layout.symbols(b);
                let mut set = SymbolSet::new(k);
                for esi in 0..k as u64 {
                    let start = layout.offset(b) + esi * t;
                    let end = (start + t).min(size);
                    if (start..end).all(|x| x < self.sync_prefix || has(x)) {
                        set.insert(esi as u32);
                        let (a, e) = (start as usize, end as usize);
                        self.file[a..e].copy_from_slice(&self.expect[a..e]);
                    }
                }
                known.push((b, set));
            }
            self.rx.known(now, &known);
        }
    }

    fn events_once(&mut self, now: Instant) {
        while let Some(ev) = self.rx.poll_event() {
            match ev {
                ReceiverEvent::Joined(info) => {
                    self.joined = Some(info.session);
                    self.file = vec![0; info.size.unwrap_or(0) as usize];
                    self.layout = Some(info.layout);
                    if info.sync && self.has.is_some() {
                        self.rx.hold(now, self.sync_prefix);
                        self.holding = true;
                    }
                    if self.kept_share > 0.0 {
                        let n = info.layout.num_blocks();
                        let blocks: Vec<u32> =
                            (0..(n as f64 * self.kept_share).round() as u32).collect();
                        let end = blocks.last().map_or(0, |&b| {
                            (info.layout.offset(b) as usize + info.layout.len(b))
                                .min(self.expect.len())
                        });
                        let mut file = self.expect.to_vec();
                        file[end..].fill(0);
                        self.kept = Some((file, blocks));
                        self.kept_share = 0.0;
                    }
                    if let Some((file, blocks)) = self.kept.take() {
                        self.file = file;
                        self.rx.resume(now, &blocks);
                    }
                }
                ReceiverEvent::Store { offset, data } => write_at(&mut self.file, offset, &data),
                ReceiverEvent::Decode(job) => {
                    let spilled = job.needs_spilled().then(|| {
                        let end = (job.offset as usize + job.len).min(self.file.len());
                        self.file[(job.offset as usize).min(end)..end].to_vec()
                    });
                    let (offset, block) = (job.offset, job.block);
                    match job.run(spilled) {
                        Ok(bytes) => {
                            write_at(&mut self.file, offset, &bytes);
                            self.decoded.push(block);
                            self.rx.handle_decoded(now, Ok(block));
                        }
                        Err(job) => self.rx.handle_decoded(now, Err(job)),
                    }
                }
                ReceiverEvent::Check(job) => {
                    let at = (job.offset as usize).min(self.file.len());
                    let end = (at + job.len).min(self.file.len());
                    let ok = job.run(self.file[at..end].to_vec());
                    self.rx.handle_checked(now, job.block, ok);
                }
                ReceiverEvent::Complete { size, .. } => {
                    self.file.resize(size as usize, 0);
                    let ok = self.file[..] == self.expect[..] && !self.corrupt;
                    self.rx.verified(now, ok);
                    self.finished |= !ok;
                }
                ReceiverEvent::Finished => self.finished = true,
                ReceiverEvent::Failed(e) => {
                    self.error = Some(e);
                    self.finished = true;
                }
            }
        }
    }
}

/// Like a file: writing past the end makes it longer.
fn write_at(file: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if file.len() < end {
        file.resize(end, 0);
    }
    file[offset as usize..end].copy_from_slice(data);
}
