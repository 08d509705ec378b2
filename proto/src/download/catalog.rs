//! The download manager's table (PROTOCOL.md, "Download manager"): which URL is carried by which
//! session, so that every request for a URL that is already being sent joins that session, and
//! requests that arrive together while it is being set up start it once.
//!
//! The shell decides whether a URL may be fetched and starts the session (`CatalogEvent::Start`,
//! then `started` or `refused`); it reports the session's end with `ended`.

use crate::counters::Counters;
use crate::wire::{FeedbackAddr, Offer, Packet, Refuse, Server};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// Where students send requests (announced in SERVER).
    pub requests: FeedbackAddr,
    pub announce_interval: Duration,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            requests: FeedbackAddr::Source { port: 1 },
            announce_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    /// A URL nobody is receiving yet was asked for: check it, start a session, and call `started`
    /// (or `refused`).
    Start { url: String },
    /// Someone was told to join the session of `url`: it should wait for their hello.
    Offered { url: String },
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Group,
    To(SocketAddr),
}

#[derive(Debug)]
enum Entry {
    /// The shell is setting the session up; these requesters wait for the answer.
    Starting {
        waiting: Vec<(SocketAddr, u32)>,
    },
    Running {
        session: u32,
        port: u16,
    },
}

pub struct Catalog {
    cfg: CatalogConfig,
    entries: HashMap<String, Entry>,
    next_announce: Instant,
    out: VecDeque<(SocketAddr, Packet<'static>)>,
    events: VecDeque<CatalogEvent>,
    pub dropped: Counters,
    pub requests: u64,
}

impl Catalog {
    pub fn new(cfg: CatalogConfig, now: Instant) -> Self {
        Catalog {
            cfg,
            entries: HashMap::new(),
            next_announce: now,
            out: VecDeque::new(),
            events: VecDeque::new(),
            dropped: Counters::default(),
            requests: 0,
        }
    }

    pub fn handle_datagram(&mut self, _now: Instant, from: SocketAddr, bytes: &[u8]) {
        let request = match Packet::parse(bytes) {
            Ok((_, Packet::Request(r))) => r,
            Ok(_) => return self.dropped.unexpected += 1,
            Err(e) => return self.dropped.parse_error(e),
        };
        self.requests += 1;
        match self.entries.get_mut(&request.url) {
            Some(Entry::Running { session, port }) => {
                let offer = Offer {
                    request: request.request,
                    session: *session,
                    port: *port,
                };
                self.out.push_back((from, Packet::Offer(offer)));
                self.events
                    .push_back(CatalogEvent::Offered { url: request.url });
            }
            Some(Entry::Starting { waiting }) => {
                // A repeated request (its answer is not out yet) is not a second requester.
                if !waiting.contains(&(from, request.request)) {
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
                self.events
                    .push_back(CatalogEvent::Start { url: request.url });
            }
        }
    }

    /// The session for `url` is running: everyone waiting for it gets the offer.
    pub fn started(&mut self, url: &str, session: u32, port: u16) {
        if let Some(Entry::Starting { waiting }) = self
            .entries
            .insert(url.to_owned(), Entry::Running { session, port })
        {
            for (to, request) in waiting {
                let offer = Offer {
                    request,
                    session,
                    port,
                };
                self.out.push_back((to, Packet::Offer(offer)));
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
            }
        }
    }

    /// The session for `url` is over: the next request starts a new one.
    pub fn ended(&mut self, url: &str) {
        self.entries.remove(url);
    }

    pub fn poll_event(&mut self) -> Option<CatalogEvent> {
        self.events.pop_front()
    }

    /// When `poll_transmit` has the next SERVER announce.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_announce)
    }

    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Reply> {
        buf.clear();
        if let Some((to, packet)) = self.out.pop_front() {
            packet.write(0, buf);
            return Some(Reply::To(to));
        }
        if now >= self.next_announce {
            self.next_announce = now + self.cfg.announce_interval;
            Packet::Server(Server {
                requests: self.cfg.requests,
            })
            .write(0, buf);
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

    fn replies(c: &mut Catalog, now: Instant) -> Vec<(Reply, Packet<'static>)> {
        let mut buf = Vec::new();
        let mut v = Vec::new();
        while let Some(to) = c.poll_transmit(now, &mut buf) {
            let (_, p) = Packet::parse(&buf).unwrap();
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
            c.poll_event(),
            Some(CatalogEvent::Start { url: url.into() })
        );
        assert_eq!(c.poll_event(), None);
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
            c.poll_event(),
            Some(CatalogEvent::Offered { url: url.into() })
        );
        assert_eq!(replies(&mut c, t).len(), 1);
        // After the session, the next request starts a new one.
        c.ended(url);
        c.handle_datagram(t, b, &request(11, url));
        assert_eq!(
            c.poll_event(),
            Some(CatalogEvent::Start { url: url.into() })
        );
        c.refused(url, "404 Not Found");
        assert!(matches!(
            &replies(&mut c, t)[..],
            [(Reply::To(_), Packet::Refuse(r))] if r.reason == "404 Not Found" && r.request == 11
        ));
        c.handle_datagram(t, b, b"junk");
        assert_eq!(c.dropped.total(), 1);
    }
}
