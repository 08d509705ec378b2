//! A student's side of the download manager: find the server (its SERVER announce on the group, or
//! an address given), ask for a URL until answered, and report the session to join or the refusal.
//! With a trust set, only a server whose SERVER is signed by a trusted key is asked, and only its
//! signed answers, from its address, are taken: a rogue `serve` never hears the student's URL.

use crate::auth::{KeyId, Trust};
use crate::counters::Counters;
use crate::wire::{Packet, Request, printable};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often an unanswered request is repeated.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Join `session` on the group at `port`.
    Offer {
        /// The session id.
        session: u32,
        /// The group port it is sent on.
        port: u16,
    },
    /// It will not be sent, for this reason (without control characters).
    Refused(String),
}

/// A student's request for one URL.
///
/// The contract, as in quinn-proto (time is passed in):
/// - **Getters**: `answer`, `dropped`.
/// - **Inputs**: `handle_datagram(now, from, bytes)` for SERVER from the group and OFFER/REFUSE
///   from the server.
/// - **Outputs**: `poll_transmit(now, buf)` (REQUEST, repeated until answered), `poll_timeout()`.
pub struct Requester {
    id: u32,
    url: String,
    server: Option<SocketAddr>,
    trust: Option<Trust>,
    /// The trusted key the server signs with, once known.
    server_key: Option<KeyId>,
    next_request: Instant,
    answer: Option<Answer>,
    dropped: Counters,
}

impl Requester {
    /// `server`: where to send requests, if known; otherwise the first (trusted, with `trust`)
    /// SERVER announce says.
    pub fn new(
        id: u32,
        url: String,
        server: Option<SocketAddr>,
        trust: Option<Trust>,
        now: Instant,
    ) -> Self {
        Requester {
            id,
            url,
            server,
            trust,
            server_key: None,
            next_request: now,
            answer: None,
            dropped: Counters::default(),
        }
    }

    /// The server's answer, once it came.
    pub fn answer(&self) -> Option<&Answer> {
        self.answer.as_ref()
    }

    /// Datagrams dropped, by why.
    pub fn dropped(&self) -> &Counters {
        &self.dropped
    }

    /// A datagram from the group (SERVER) or the server (OFFER, REFUSE).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let d = match Packet::parse(bytes) {
            Ok(d) => d,
            Err(e) => return self.dropped.parse_error(e),
        };
        let answer = matches!(&d.packet, Packet::Offer(o) if o.request == self.id)
            || matches!(&d.packet, Packet::Refuse(r) if r.request == self.id);
        let is_server = matches!(d.packet, Packet::Server(_));
        if !answer && !is_server {
            self.dropped.unexpected += 1;
            return;
        }
        if answer && self.server.is_none_or(|s| s.ip() != from.ip()) {
            self.dropped.wrong_source += 1;
            return;
        }
        if is_server && self.server.is_some() {
            // The server is known (given, or found): later announces change nothing.
            self.dropped.duplicate += 1;
            return;
        }
        if let Some(t) = &self.trust {
            let key = match t.check(now, bytes, &d.auth, self.server_key.as_ref()) {
                Ok(key) => key,
                Err(r) => return self.dropped.rejected(r),
            };
            // A signed SERVER that names the server's address, replayed by another host to be
            // asked instead.
            if let Packet::Server(s) = &d.packet
                && !s.requests.names_source(from.ip())
            {
                self.dropped.wrong_source += 1;
                return;
            }
            self.server_key = Some(key);
        }
        match d.packet {
            Packet::Server(s) => self.server = Some(s.requests.resolve(from)),
            Packet::Offer(o) => {
                self.answer.get_or_insert(Answer::Offer {
                    session: o.session,
                    port: o.port,
                });
            }
            Packet::Refuse(r) => {
                self.answer
                    .get_or_insert(Answer::Refused(printable(&r.reason)));
            }
            _ => unreachable!("only SERVER, OFFER and REFUSE get here"),
        }
    }

    /// When the next request is due (if a server is known and no answer has come).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.server.is_some() && self.answer.is_none()).then_some(self.next_request)
    }

    /// The next REQUEST, written into `buf`, and where it goes.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let to = self
            .server
            .filter(|_| self.answer.is_none() && now >= self.next_request)?;
        self.next_request = now + REQUEST_INTERVAL;
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
        let mut r = Requester::new(5, "http://x/y".into(), None, None, t);
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
