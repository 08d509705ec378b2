//! The download manager's table (PROTOCOL.md, "Download manager"): which URL is carried by which
//! session, so that every request for a URL that is already being sent joins that session, and
//! requests that arrive together while it is being set up start it once.
//!
//! The shell decides whether a URL may be fetched and starts the session (`CatalogEvent::Start`,
//! then `started` or `refused`); it reports the session's end with `ended`. The operator may ask
//! for a URL too (`ask`: the dashboard's "send to class"), and every answer that goes to a student
//! is told to the shell (`Answered`), for its log and its dashboard. Every student address
//! has a token bucket, and what waits for a starting session is bounded, so a flood of requests
//! is counted and ignored. How often one address may hold a running session open (`Offered`) is
//! bounded too, so a REQUEST every few seconds cannot keep a finished session (and its slot) for
//! ever. With a key, SERVER, OFFER and REFUSE are signed.

use super::requester::Answer;
use crate::auth::{Seal, Signer};
use crate::counters::Counters;
use crate::limit::TokenBucket;
use crate::wire::{FeedbackAddr, Offer, Packet, Refuse, Server};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Student addresses whose request rate is tracked at once; idle ones make room.
const MAX_ADDRESSES: usize = 4096;
/// Requesters waiting for one session to start, at most.
const MAX_WAITING: usize = 1024;
/// Answers queued at most.
const MAX_OUT: usize = 4096;

/// How the server announces itself and what it takes from students.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// Where students send requests (announced in SERVER).
    pub requests: FeedbackAddr,
    /// How often SERVER goes out.
    pub announce_interval: Duration,
    /// Requests a student address may send per second (a `get` repeats every 500 ms) ...
    pub request_rate: f64,
    /// ... and at once.
    pub request_burst: f64,
    /// `Offered` events (each holds the session open a moment longer) per student address per
    /// session; later requests from that address are still answered, without holding it.
    pub holds_per_address: u32,
    /// Signs SERVER, OFFER and REFUSE, if set (`serve --key`).
    pub signer: Option<Signer>,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            requests: FeedbackAddr::Source { port: 1 },
            announce_interval: Duration::from_secs(1),
            request_rate: 4.0,
            request_burst: 8.0,
            // An honest `get` is offered a running session once, twice if an OFFER was lost.
            holds_per_address: 3,
            signer: None,
        }
    }
}

/// What the catalog tells the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    /// A URL nobody is receiving yet was asked for: check it, start a session, and call `started`
    /// (or `refused`).
    Start {
        /// The URL.
        url: String,
        /// Who asked first: a student, or `None` for the operator (`ask`).
        from: Option<IpAddr>,
    },
    /// Someone was told to join the session of `url`: it should wait for their hello. At most
    /// `holds_per_address` times per address and session.
    Offered {
        /// The URL.
        url: String,
    },
    /// An OFFER or REFUSE went out to a student: nothing to do, it is for the operator to see.
    Answered {
        /// The URL asked for.
        url: String,
        /// The student.
        to: SocketAddr,
        /// What they were told.
        answer: Answer,
    },
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The announce group.
    Group,
    /// A student.
    To(SocketAddr),
}

#[derive(Debug)]
enum Entry {
    /// The shell is setting the session up; these requesters wait for the answer.
    Starting { waiting: Vec<(SocketAddr, u32)> },
    Running {
        session: u32,
        port: u16,
        /// `Offered` events so far, per address (at most `MAX_WAITING` addresses).
        holds: HashMap<IpAddr, u32>,
    },
}

/// The download manager's table: URL → the session that carries it.
///
/// The contract, as in quinn-proto (time is passed in):
/// - **Getters**: `dropped`, `requests`.
/// - **Inputs**: `handle_datagram(now, from, bytes)` for REQUESTs on the server's port.
/// - **Commands**: `started(url, session, port)`, `refused(url, reason)`, `ended(url)`, the
///   shell's answers to `Start`; `ask(url)`, the operator's own request.
/// - **Outputs**: `poll_transmit(now, buf)` (SERVER to the group, OFFER and REFUSE to students),
///   `poll_timeout()`, `poll_event()`.
pub struct Catalog {
    cfg: CatalogConfig,
    entries: HashMap<String, Entry>,
    next_announce: Instant,
    out: VecDeque<(SocketAddr, Packet<'static>)>,
    events: VecDeque<CatalogEvent>,
    buckets: HashMap<IpAddr, TokenBucket>,
    dropped: Counters,
    requests: u64,
}

impl Catalog {
    /// A catalog with no session, announcing itself from `now`.
    pub fn new(cfg: CatalogConfig, now: Instant) -> Self {
        Catalog {
            cfg,
            entries: HashMap::new(),
            next_announce: now,
            out: VecDeque::new(),
            events: VecDeque::new(),
            buckets: HashMap::new(),
            dropped: Counters::default(),
            requests: 0,
        }
    }

    /// Datagrams dropped, by why.
    pub fn dropped(&self) -> &Counters {
        &self.dropped
    }

    /// Requests taken.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Whether a request from `ip` is within its rate; a full table forgets idle addresses first.
    fn within_rate(&mut self, now: Instant, ip: IpAddr) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_ADDRESSES {
            // A bucket that has refilled is as good as a new one: forgetting it costs nothing.
            self.buckets.retain(|_, b| !b.is_full(now));
            if self.buckets.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let (rate, burst) = (self.cfg.request_rate, self.cfg.request_burst);
        self.buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(now, rate, burst))
            .take(now)
    }

    /// A REQUEST from a student.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let request = match Packet::parse(bytes) {
            Ok(d) => match d.packet {
                Packet::Request(r) => r,
                _ => return self.dropped.unexpected += 1,
            },
            Err(e) => return self.dropped.parse_error(e),
        };
        if !self.within_rate(now, from.ip()) {
            self.dropped.rate_limited += 1;
            return;
        }
        self.requests += 1;
        match self.entries.get_mut(&request.url) {
            Some(Entry::Running {
                session,
                port,
                holds,
            }) => {
                let offer = Offer {
                    request: request.request,
                    session: *session,
                    port: *port,
                };
                if self.out.len() < MAX_OUT {
                    self.out.push_back((from, Packet::Offer(offer)));
                    self.events.push_back(CatalogEvent::Answered {
                        url: request.url.clone(),
                        to: from,
                        answer: Answer::Offer {
                            session: offer.session,
                            port: offer.port,
                        },
                    });
                } else {
                    // The student asks again; the answers before it go out first.
                    self.dropped.refused += 1;
                }
                // Answered either way; past its allowance, an address no longer holds it open.
                let ip = from.ip();
                if holds.contains_key(&ip) || holds.len() < MAX_WAITING {
                    let held = holds.entry(ip).or_default();
                    if *held < self.cfg.holds_per_address {
                        *held += 1;
                        self.events
                            .push_back(CatalogEvent::Offered { url: request.url });
                    }
                }
            }
            Some(Entry::Starting { waiting }) => {
                // A repeated request (its answer is not out yet) is not a second requester.
                if waiting.len() >= MAX_WAITING {
                    self.dropped.refused += 1;
                } else if !waiting.contains(&(from, request.request)) {
                    waiting.push((from, request.request));
                }
            }
            None => {
                self.entries.insert(
                    request.url.clone(),
                    Entry::Starting {
                        waiting: vec![(from, request.request)],
                    },
                );
                self.events.push_back(CatalogEvent::Start {
                    url: request.url,
                    from: Some(from.ip()),
                });
            }
        }
    }

    /// The session for `url` is running: everyone waiting for it gets the offer.
    pub fn started(&mut self, url: &str, session: u32, port: u16) {
        let running = Entry::Running {
            session,
            port,
            holds: HashMap::new(),
        };
        if let Some(Entry::Starting { waiting }) = self.entries.insert(url.to_owned(), running) {
            for (to, request) in waiting {
                let offer = Offer {
                    request,
                    session,
                    port,
                };
                self.out.push_back((to, Packet::Offer(offer)));
                self.events.push_back(CatalogEvent::Answered {
                    url: url.to_owned(),
                    to,
                    answer: Answer::Offer { session, port },
                });
            }
        }
    }

    /// `url` will not be sent; everyone waiting for it is told why.
    pub fn refused(&mut self, url: &str, reason: &str) {
        if let Some(Entry::Starting { waiting }) = self.entries.remove(url) {
            for (to, request) in waiting {
                let refuse = Refuse {
                    request,
                    reason: reason.to_owned(),
                };
                self.out.push_back((to, Packet::Refuse(refuse)));
                self.events.push_back(CatalogEvent::Answered {
                    url: url.to_owned(),
                    to,
                    answer: Answer::Refused(reason.to_owned()),
                });
            }
        }
    }

    /// The operator asks for `url`, as a student would but with nobody to answer: a `Start`
    /// (from `None`) if no session carries it yet. False if one is running or starting already.
    pub fn ask(&mut self, url: &str) -> bool {
        if self.entries.contains_key(url) {
            return false;
        }
        self.entries
            .insert(url.to_owned(), Entry::Starting { waiting: vec![] });
        self.events.push_back(CatalogEvent::Start {
            url: url.to_owned(),
            from: None,
        });
        true
    }

    /// The session for `url` is over: the next request starts a new one.
    pub fn ended(&mut self, url: &str) {
        self.entries.remove(url);
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<CatalogEvent> {
        self.events.pop_front()
    }

    /// When `poll_transmit` has the next SERVER announce.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_announce)
    }

    /// The next datagram to send, written into `buf`, and where it goes.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Reply> {
        let seal = match &self.cfg.signer {
            Some(s) => Seal::Signed(&s.key, s.clock.unix_ms(now)),
            None => Seal::Unsigned,
        };
        if let Some((to, packet)) = self.out.pop_front() {
            packet.write_sealed(0, seal, buf);
            return Some(Reply::To(to));
        }
        if now >= self.next_announce {
            self.next_announce = now + self.cfg.announce_interval;
            Packet::Server(Server {
                requests: self.cfg.requests,
            })
            .write_sealed(0, seal, buf);
            return Some(Reply::Group);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Request;

    fn request(id: u32, url: &str) -> Vec<u8> {
        Packet::Request(Request {
            request: id,
            url: url.into(),
        })
        .to_vec(0)
    }

    /// The next event that asks the shell to act (answers are told in between).
    fn action(c: &mut Catalog) -> Option<CatalogEvent> {
        std::iter::from_fn(|| c.poll_event()).find(|e| !matches!(e, CatalogEvent::Answered { .. }))
    }

    fn replies(c: &mut Catalog, now: Instant) -> Vec<(Reply, Packet<'static>)> {
        let mut buf = Vec::new();
        let mut v = Vec::new();
        while let Some(to) = c.poll_transmit(now, &mut buf) {
            let p = Packet::parse(&buf).unwrap().packet;
            let p = match p {
                Packet::Server(s) => Packet::Server(s),
                Packet::Offer(o) => Packet::Offer(o),
                Packet::Refuse(r) => Packet::Refuse(r),
                other => panic!("{other:?}"),
            };
            v.push((to, p));
        }
        v
    }

    #[test]
    fn requests_that_arrive_together_start_one_session_and_all_get_it() {
        let t = Instant::now();
        let mut c = Catalog::new(CatalogConfig::default(), t);
        assert!(matches!(
            replies(&mut c, t)[..],
            [(Reply::Group, Packet::Server(_))]
        ));
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.2:40000".parse().unwrap(),
            "10.0.0.3:40000".parse().unwrap(),
        );
        let url = "http://mirror/x.iso";
        c.handle_datagram(t, a, &request(1, url));
        c.handle_datagram(t, b, &request(9, url));
        c.handle_datagram(t, a, &request(1, url)); // a retry
        assert_eq!(
            action(&mut c),
            Some(CatalogEvent::Start {
                url: url.into(),
                from: Some(a.ip())
            })
        );
        assert_eq!(action(&mut c), None);
        assert!(replies(&mut c, t).is_empty());
        c.started(url, 77, 5008);
        let r = replies(&mut c, t);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(
            r[1],
            (
                Reply::To(b),
                Packet::Offer(Offer {
                    request: 9,
                    session: 77,
                    port: 5008
                })
            )
        );
        // A late request joins the running session at once.
        c.handle_datagram(t, b, &request(10, url));
        assert_eq!(
            action(&mut c),
            Some(CatalogEvent::Offered { url: url.into() })
        );
        assert_eq!(replies(&mut c, t).len(), 1);
        // After the session, the next request starts a new one.
        c.ended(url);
        c.handle_datagram(t, b, &request(11, url));
        assert_eq!(
            action(&mut c),
            Some(CatalogEvent::Start {
                url: url.into(),
                from: Some(b.ip())
            })
        );
        c.refused(url, "404 Not Found");
        assert!(matches!(
            &replies(&mut c, t)[..],
            [(Reply::To(_), Packet::Refuse(r))] if r.reason == "404 Not Found" && r.request == 11
        ));
        c.handle_datagram(t, b, b"junk");
        assert_eq!(c.dropped().total(), 1);
    }

    #[test]
    fn every_answer_is_told_and_the_operator_may_ask_too() {
        let t = Instant::now();
        let mut c = Catalog::new(CatalogConfig::default(), t);
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.2:40000".parse().unwrap(),
            "10.0.0.3:40000".parse().unwrap(),
        );
        let answered = |c: &mut Catalog| -> Vec<(SocketAddr, Answer)> {
            std::iter::from_fn(|| c.poll_event())
                .filter_map(|e| match e {
                    CatalogEvent::Answered { to, answer, .. } => Some((to, answer)),
                    _ => None,
                })
                .collect()
        };
        // The operator's request starts a session like a student's, with nobody to answer.
        let url = "http://mirror/x.iso";
        assert!(c.ask(url));
        assert_eq!(
            c.poll_event(),
            Some(CatalogEvent::Start {
                url: url.into(),
                from: None
            })
        );
        assert!(!c.ask(url), "starting already");
        c.handle_datagram(t, a, &request(1, url));
        c.started(url, 77, 5008);
        let offer = Answer::Offer {
            session: 77,
            port: 5008,
        };
        assert_eq!(answered(&mut c), [(a, offer.clone())]);
        assert!(!c.ask(url), "running already");
        assert_eq!(c.poll_event(), None);
        c.handle_datagram(t, b, &request(2, url));
        assert_eq!(answered(&mut c), [(b, offer)]);
        // Refusals are told too, one per student waiting.
        let other = "http://mirror/y.iso";
        c.handle_datagram(t, a, &request(3, other));
        c.handle_datagram(t, b, &request(4, other));
        assert!(matches!(action(&mut c), Some(CatalogEvent::Start { .. })));
        c.refused(other, "404 Not Found");
        let refused = Answer::Refused("404 Not Found".into());
        assert_eq!(answered(&mut c), [(a, refused.clone()), (b, refused)]);
        assert_eq!(
            replies(&mut c, t).len(),
            5,
            "SERVER, two OFFERs, two REFUSEs"
        );
    }

    #[test]
    fn repeated_requests_hold_a_running_session_only_a_few_times() {
        let t = Instant::now();
        let mut c = Catalog::new(CatalogConfig::default(), t);
        let url = "http://mirror/x.iso";
        let (pest, other): (SocketAddr, SocketAddr) = (
            "10.0.0.66:40000".parse().unwrap(),
            "10.0.0.7:40000".parse().unwrap(),
        );
        c.handle_datagram(t, other, &request(1, url));
        assert!(matches!(action(&mut c), Some(CatalogEvent::Start { .. })));
        c.started(url, 77, 5008);
        replies(&mut c, t);
        // A REQUEST every 3 s for an hour: every one is answered, three hold the session open.
        let mut offers = 0;
        for i in 0..1200u32 {
            let now = t + Duration::from_secs(3 * i as u64);
            c.handle_datagram(now, pest, &request(100 + i, url));
            offers += replies(&mut c, now)
                .iter()
                .filter(|(to, p)| *to == Reply::To(pest) && matches!(p, Packet::Offer(_)))
                .count();
        }
        assert_eq!(offers, 1200);
        let holds = std::iter::from_fn(|| action(&mut c)).count();
        assert_eq!(holds, 3, "the allowance of one address");
        // Another student still holds it for their own join.
        c.handle_datagram(t, other, &request(2, url));
        assert_eq!(
            action(&mut c),
            Some(CatalogEvent::Offered { url: url.into() })
        );
        // A new session of the URL is a new allowance.
        c.ended(url);
        c.handle_datagram(t, pest, &request(5000, url));
        assert!(matches!(action(&mut c), Some(CatalogEvent::Start { .. })));
        c.started(url, 78, 5008);
        c.handle_datagram(t, pest, &request(5001, url));
        assert_eq!(
            action(&mut c),
            Some(CatalogEvent::Offered { url: url.into() })
        );
    }

    #[test]
    fn a_flood_of_requests_is_rate_limited_per_address() {
        let t = Instant::now();
        let mut c = Catalog::new(CatalogConfig::default(), t);
        let student: SocketAddr = "10.0.0.66:40000".parse().unwrap();
        for i in 0..10_000 {
            c.handle_datagram(t, student, &request(i, &format!("http://mirror/{i}")));
        }
        let starts = std::iter::from_fn(|| action(&mut c)).count();
        assert_eq!(starts, 8, "the burst, then nothing");
        assert_eq!(c.dropped().rate_limited, 10_000 - 8);
        // Another student is not held back by the first, and the first gets its rate back.
        let other: SocketAddr = "10.0.0.7:40000".parse().unwrap();
        c.handle_datagram(t, other, &request(1, "http://mirror/x"));
        assert_eq!(c.requests(), 9);
        c.handle_datagram(
            t + Duration::from_secs(1),
            student,
            &request(1, "http://mirror/y"),
        );
        assert_eq!(c.requests(), 10);
    }
}
