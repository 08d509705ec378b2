//! A student's side of the download manager: find the server (its SERVER announce on the group, or
//! an address given), ask for a URL until answered, and report the session to join or the refusal.

use crate::counters::Counters;
use crate::wire::{Packet, Request};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often an unanswered request is repeated.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Join `session` on the group at `port`.
    Offer {
        session: u32,
        port: u16,
    },
    Refused(String),
}

pub struct Requester {
    id: u32,
    url: String,
    server: Option<SocketAddr>,
    next_request: Instant,
    answer: Option<Answer>,
    pub dropped: Counters,
}

impl Requester {
    /// `server`: where to send requests, if known; otherwise the first SERVER announce says.
    pub fn new(id: u32, url: String, server: Option<SocketAddr>, now: Instant) -> Self {
        Requester {
            id,
            url,
            server,
            next_request: now,
            answer: None,
            dropped: Counters::default(),
        }
    }

    pub fn answer(&self) -> Option<&Answer> {
        self.answer.as_ref()
    }

    /// A datagram from the group (SERVER) or the server (OFFER, REFUSE).
    pub fn handle_datagram(&mut self, _now: Instant, from: SocketAddr, bytes: &[u8]) {
        match Packet::parse(bytes) {
            Ok((_, Packet::Server(s))) => {
                self.server.get_or_insert(s.requests.resolve(from));
            }
            Ok((_, Packet::Offer(o))) if o.request == self.id => {
                self.answer.get_or_insert(Answer::Offer {
                    session: o.session,
                    port: o.port,
                });
            }
            Ok((_, Packet::Refuse(r))) if r.request == self.id => {
                self.answer.get_or_insert(Answer::Refused(r.reason));
            }
            Ok(_) => self.dropped.unexpected += 1,
            Err(e) => self.dropped.parse_error(e),
        }
    }

    /// When the next request is due (if a server is known and no answer has come).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.server.is_some() && self.answer.is_none()).then_some(self.next_request)
    }

    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let to = self
            .server
            .filter(|_| self.answer.is_none() && now >= self.next_request)?;
        self.next_request = now + REQUEST_INTERVAL;
        buf.clear();
        Packet::Request(Request {
            request: self.id,
            url: self.url.clone(),
        })
        .write(0, buf);
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FeedbackAddr, Offer, Server};

    #[test]
    fn finds_the_server_asks_until_answered() {
        let t = Instant::now();
        let mut r = Requester::new(5, "http://x/y".into(), None, t);
        let mut buf = Vec::new();
        assert_eq!(r.poll_transmit(t, &mut buf), None);
        let server: SocketAddr = "10.0.0.1:5007".parse().unwrap();
        let announce = Packet::Server(Server {
            requests: FeedbackAddr::Source { port: 5006 },
        })
        .to_vec(0);
        r.handle_datagram(t, server, &announce);
        let to = r.poll_transmit(t, &mut buf).unwrap();
        assert_eq!(to, "10.0.0.1:5006".parse().unwrap());
        assert_eq!(r.poll_transmit(t, &mut buf), None);
        assert!(r.poll_transmit(t + REQUEST_INTERVAL, &mut buf).is_some());
        let other = Packet::Offer(Offer {
            request: 6,
            session: 1,
            port: 9,
        });
        r.handle_datagram(t, to, &other.to_vec(0));
        assert_eq!(r.answer(), None);
        let mine = Packet::Offer(Offer {
            request: 5,
            session: 1,
            port: 9,
        });
        r.handle_datagram(t, to, &mine.to_vec(0));
        assert_eq!(
            r.answer(),
            Some(&Answer::Offer {
                session: 1,
                port: 9
            })
        );
        assert_eq!(r.poll_timeout(), None);
    }
}
