//! The download manager under fuzzing: the server's `Catalog` taking REQUESTs (and the shell's
//! answers to its `Start` events), and a student's `Requester` taking SERVER, OFFER and REFUSE,
//! signed by the trusted key, by a stranger's, or not at all.

use super::file::{UNIX_MS, stranger, teacher};
use super::script::{addr, steps};
use arbitrary::Arbitrary;
use edm_cast_proto::auth::{DEFAULT_MAX_SKEW, Seal};
use edm_cast_proto::wire::{FeedbackAddr, Offer, Packet, Refuse, Request, Server};
use edm_cast_proto::{Catalog, CatalogConfig, CatalogEvent, Requester, Signer, Trust, WallClock};
use std::net::Ipv4Addr;
use std::time::Instant;

/// The URLs a script asks for: a few, so that requests meet.
pub const URLS: [&str; 4] = [
    "http://mirror.lan/ubuntu.iso",
    "https://example.org/lesson-3.zip",
    "http://10.0.0.5/private",
    "http://mirror.lan/\u{202e}gpj.exe",
];

#[derive(Arbitrary, Default)]
struct RequestOp {
    from: u8,
    request: u8,
    url: u8,
}

#[derive(Arbitrary, Default)]
struct AnswerOp {
    kind: u8,
    url: u8,
    session: u32,
    port: u16,
}

/// Runs a script of REQUESTs and the shell's answers against a catalog; its first byte says
/// whether the catalog signs.
pub fn catalog(data: &[u8]) {
    let Some((&flavor, script)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let mut now = t0;
    let cfg = CatalogConfig {
        requests: FeedbackAddr::Source { port: 5006 },
        signer: (flavor % 2 == 1).then(|| Signer {
            key: teacher().clone(),
            clock: WallClock::new(t0, UNIX_MS),
        }),
        ..CatalogConfig::default()
    };
    let mut c = Catalog::new(cfg, t0);
    let mut buf = Vec::new();
    for step in steps(script) {
        now += step.advance;
        match step.op % 4 {
            0 => c.handle_datagram(now, addr(1), step.body),
            1 => {
                let (&from, body) = step.body.split_first().unwrap_or((&0, &[]));
                c.handle_datagram(now, addr(from), body);
            }
            2 => {
                let r: RequestOp = step.fields();
                let p = Packet::Request(Request {
                    request: r.request as u32,
                    url: URLS[r.url as usize % URLS.len()].into(),
                });
                c.handle_datagram(now, addr(r.from), &p.to_vec(0));
            }
            _ => {
                let a: AnswerOp = step.fields();
                let url = URLS[a.url as usize % URLS.len()];
                match a.kind % 3 {
                    0 => c.started(url, a.session, a.port.max(1)),
                    1 => c.refused(url, "404 Not Found"),
                    _ => c.ended(url),
                }
            }
        }
        while let Some(ev) = c.poll_event() {
            if let CatalogEvent::Start { url, .. } = ev {
                assert!(!url.is_empty());
            }
        }
        for _ in 0..64 {
            if c.poll_transmit(now, &mut buf).is_none() {
                break;
            }
            assert!(Packet::parse(&buf).is_ok(), "the catalog sent {buf:?}");
        }
    }
}

#[derive(Arbitrary, Default)]
struct ServerOp {
    from: u8,
    family: u8,
    port: u16,
    seal: u8,
}

#[derive(Arbitrary, Default)]
struct ReplyOp {
    from: u8,
    /// Even: an answer to this student's request; odd: to another.
    mine: u8,
    refuse: bool,
    session: u32,
    port: u16,
    seal: u8,
}

/// The requester's own request id.
const REQUEST: u32 = 0x5EED;

/// Runs a script of server datagrams against a student's request; its first byte says whether
/// the server is known (given with `--server`) and whether the student trusts a key.
pub fn requester(data: &[u8]) {
    let Some((&flavor, script)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let mut now = t0;
    let clock = WallClock::new(t0, UNIX_MS);
    let trust =
        (flavor % 2 == 1).then(|| Trust::new([teacher().public()], clock, DEFAULT_MAX_SKEW));
    let server = (flavor & 2 != 0).then(|| addr(0));
    let mut r = Requester::new(REQUEST, URLS[0].into(), server, trust, t0);
    let mut buf = Vec::new();
    for step in steps(script) {
        now += step.advance;
        let sealed = |p: Packet<'_>, choice: u8| {
            let mut v = Vec::new();
            match choice % 4 {
                0 | 1 => p.write_sealed(0, Seal::Signed(teacher(), clock.unix_ms(now)), &mut v),
                2 => p.write_sealed(0, Seal::Signed(stranger(), clock.unix_ms(now)), &mut v),
                _ => p.write(0, &mut v),
            }
            v
        };
        match step.op % 4 {
            0 => r.handle_datagram(now, addr(0), step.body),
            1 => {
                let (&from, body) = step.body.split_first().unwrap_or((&0, &[]));
                r.handle_datagram(now, addr(from), body);
            }
            2 => {
                let s: ServerOp = step.fields();
                let port = s.port.max(1);
                let requests = match s.family % 3 {
                    0 => FeedbackAddr::Source { port },
                    1 => FeedbackAddr::V4(Ipv4Addr::new(10, 0, 0, s.family), port),
                    _ => FeedbackAddr::V6(std::net::Ipv6Addr::LOCALHOST, port),
                };
                let p = Packet::Server(Server { requests });
                r.handle_datagram(now, addr(s.from), &sealed(p, s.seal));
            }
            _ => {
                let a: ReplyOp = step.fields();
                let request = REQUEST + (a.mine % 2) as u32;
                let p = if a.refuse {
                    Packet::Refuse(Refuse {
                        request,
                        reason: "no\u{1b}[2J".into(),
                    })
                } else {
                    Packet::Offer(Offer {
                        request,
                        session: a.session,
                        port: a.port.max(1),
                    })
                };
                r.handle_datagram(now, addr(a.from), &sealed(p, a.seal));
            }
        }
        for _ in 0..64 {
            if r.poll_transmit(now, &mut buf).is_none() {
                break;
            }
            assert!(Packet::parse(&buf).is_ok(), "the requester sent {buf:?}");
        }
    }
}
