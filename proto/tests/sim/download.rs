//! The download manager in a class: the teacher's PC runs `serve` (a `Catalog` that starts a
//! session per URL, as serve.rs wires it), the students run `get URL`.

use crate::class::{Class, Command, GROUP_PORT, Peer, REQUEST_PORT, Serve, TEACHER, busy};
use crate::file_bytes;
use crate::net::{Link, Outage};
use edm_cast_proto::wire::ReceiverState;
use edm_cast_proto::{Answer, SenderConfig};
use std::net::SocketAddr;
use std::time::Duration;

const URL: &str = "http://mirror.example/class.iso";
/// From a URL's first request to its session running.
const FETCH_TIME: Duration = Duration::from_millis(50);
/// Between a student's PC and the teacher's and back, on quiet cables (see `Link::default`).
const ROUND_TRIP: Duration = Duration::from_millis(1);

fn lab(file: &[u8], max_sessions: u16) -> Class {
    let mut class = Class::new(Link::default());
    class.serve(Serve {
        web: vec![(URL.into(), file.to_vec())],
        fetch_time: FETCH_TIME,
        max_sessions,
        // As serve.rs starts its sessions, with the small blocks of the other scenarios so that a
        // few blocks take milliseconds to decode.
        session: SenderConfig {
            session: 0x5E55_0000,
            symbol_size: 256,
            block_symbols: 512,
            interleave: 8,
            min_receivers: 1,
            wait: Some(Duration::from_secs(10)),
            ..SenderConfig::default()
        },
    });
    class
}

fn server() -> SocketAddr {
    SocketAddr::new(TEACHER.into(), REQUEST_PORT)
}

fn get(url: &str, server: Option<SocketAddr>) -> Command {
    Command::Get {
        url: url.into(),
        server,
    }
}

fn starting_at(ms: u64) -> Peer {
    Peer {
        joins_at: Duration::from_millis(ms),
        ..Peer::default()
    }
}

fn assert_has_the_file(class: &Class, i: usize, file: &[u8]) {
    let l = class.listener(i);
    assert!(
        l.finished && l.error.is_none(),
        "student {i}: {:?} {:?}",
        l.error,
        l.rx.progress()
    );
    assert!(l.file == file, "student {i} has different bytes");
}

/// Quiet cables: what is asserted is who is answered when, and lost answers would move that.
#[test]
fn students_asking_together_start_one_session_and_all_get_the_file() {
    let file = file_bytes(6 * 512 * 256 + 99, 21);
    let mut class = lab(&file, 4);
    // The first request starts the fetch; the others come while it runs, and wait for it.
    for i in 0..6 {
        class.add_student(starting_at(8 * i), get(URL, Some(server())));
    }
    class.drive(Duration::from_secs(30));
    assert_eq!(class.sessions().len(), 1);
    let session = &class.sessions()[0];
    let offer = Answer::Offer {
        session: session.id,
        port: GROUP_PORT + 1,
    };
    let answered = class.student(0).answered_at().unwrap();
    assert!(answered < FETCH_TIME + 2 * ROUND_TRIP, "{answered:?}");
    for (i, s) in class.students().iter().enumerate() {
        assert_eq!(s.answer(), Some(&offer), "student {i}");
        // All answered when the session started.
        assert_eq!(s.answered_at(), Some(answered), "student {i}");
        assert_has_the_file(&class, i, &file);
    }
    // Each asked once: the answer came before a repeat was due.
    assert_eq!(class.catalog().requests(), 6);
    assert!(session.sender.is_finished());
    let states: Vec<_> = session.sender.receivers().map(|r| r.state).collect();
    assert_eq!(states, [ReceiverState::Done; 6]);
}

/// The first 8 blocks are sent by half a second in, the whole first pass takes about two:
/// a student who asks at one second has missed block 0 and gets it from repair alone.
#[test]
fn a_student_asking_while_the_session_runs_is_offered_it_at_once_and_catches_up_through_repair() {
    let file = file_bytes(16 * 512 * 256, 22);
    let mut class = lab(&file, 4);
    class.add_student(Peer::lossy(0.05), get(URL, Some(server())));
    let late = Peer {
        joins_at: Duration::from_secs(1),
        ..Peer::lossy(0.05)
    };
    class.add_student(late, get(URL, Some(server())));
    class.drive(Duration::from_secs(60));
    assert_eq!(class.sessions().len(), 1);
    let waited = class.student(1).answered_at().unwrap() - Duration::from_secs(1);
    assert!(waited < 2 * ROUND_TRIP, "{waited:?}");
    assert_eq!(class.student(1).answer(), class.student(0).answer());
    for i in 0..2 {
        assert_has_the_file(&class, i, &file);
    }
    let session = &class.sessions()[0];
    let k = session.sender.layout().symbols(0) as u32;
    let first_pass = k + (k as f64 * SenderConfig::default().proactive).ceil() as u32;
    let got = class.listener(1).received(0);
    assert!(
        got.len() >= k as usize && got.iter().all(|&esi| esi >= first_pass),
        "block 0: {got:?}"
    );
}

#[test]
fn a_refusal_reaches_the_requester_with_its_reason() {
    let file = file_bytes(2 * 512 * 256, 23);
    let mut class = lab(&file, 1);
    class.add_student(
        starting_at(0),
        get("http://mirror.example/missing.iso", Some(server())),
    );
    class.add_student(starting_at(100), get(URL, Some(server())));
    // The one session is running: a second URL finds the server busy.
    class.add_student(
        starting_at(200),
        get("http://mirror.example/other.iso", Some(server())),
    );
    class.drive(Duration::from_secs(30));
    let not_found = Answer::Refused("404 Not Found".into());
    assert_eq!(class.student(0).answer(), Some(&not_found));
    // Known only once the fetch has been tried ...
    let answered = class.student(0).answered_at().unwrap();
    assert!(answered >= FETCH_TIME, "{answered:?}");
    // ... while a busy server says so at once.
    assert_eq!(class.student(2).answer(), Some(&Answer::Refused(busy(1))));
    let waited = class.student(2).answered_at().unwrap() - Duration::from_millis(200);
    assert!(waited < 2 * ROUND_TRIP, "{waited:?}");
    assert_eq!(class.sessions().len(), 1);
    assert_has_the_file(&class, 1, &file);
}

/// Requests go out at 0, 0.5, 1 and 1.5 s. One student's cable to the switch is out until 1.2 s,
/// so its first three requests are lost; the other's cable from the switch is, so the first three
/// offers to it are.
#[test]
fn lost_requests_and_offers_are_made_good_by_asking_again() {
    let file = file_bytes(2 * 512 * 256, 24);
    let mut class = lab(&file, 4);
    let cut = Link {
        outage: Some(Outage {
            from: Duration::ZERO,
            until: Duration::from_millis(1200),
        }),
        ..Link::default()
    };
    let requests_lost = Peer {
        up: cut,
        ..Peer::default()
    };
    let offers_lost = Peer {
        down: cut,
        ..Peer::default()
    };
    class.add_student(requests_lost, get(URL, Some(server())));
    class.add_student(offers_lost, get(URL, Some(server())));
    class.drive(Duration::from_secs(30));
    for i in 0..2 {
        let answered = class.student(i).answered_at().unwrap();
        let fourth = Duration::from_millis(1500);
        assert!(
            (fourth..fourth + 2 * ROUND_TRIP).contains(&answered),
            "student {i}: {answered:?}"
        );
        assert_has_the_file(&class, i, &file);
    }
    // All four of the student whose offers were lost, the last of the other's.
    assert_eq!(class.catalog().requests(), 5);
    assert_eq!(class.sessions().len(), 1);
}

/// Both start at 0.3 s, after the first SERVER (at 0) has gone out; the session they share runs
/// for about two seconds.
#[test]
fn a_student_not_told_where_the_server_is_finds_it_by_its_announce() {
    let file = file_bytes(16 * 512 * 256, 25);
    let mut class = lab(&file, 4);
    class.add_student(starting_at(300), get(URL, Some(server())));
    class.add_student(starting_at(300), get(URL, None));
    class.drive(Duration::from_secs(30));
    // Told where the server is, a student asks at once and is answered after the fetch ...
    let told = class.student(0).answered_at().unwrap() - Duration::from_millis(300);
    assert!(
        (FETCH_TIME..FETCH_TIME + 2 * ROUND_TRIP).contains(&told),
        "{told:?}"
    );
    // ... the other waits for the next SERVER, a second after the first, then joins at once.
    let found = class.student(1).answered_at().unwrap();
    let second = Duration::from_secs(1);
    assert!(
        (second..second + 2 * ROUND_TRIP).contains(&found),
        "{found:?}"
    );
    assert_eq!(class.student(1).answer(), class.student(0).answer());
    for i in 0..2 {
        assert_has_the_file(&class, i, &file);
    }
    assert_eq!(class.catalog().requests(), 2);
    assert_eq!(class.sessions().len(), 1);
}

#[test]
fn a_request_after_the_session_ended_starts_a_new_one() {
    let file = file_bytes(2 * 512 * 256, 26);
    let mut class = lab(&file, 4);
    class.add_student(Peer::default(), get(URL, Some(server())));
    class.add_student(starting_at(10_000), get(URL, Some(server())));
    class.drive(Duration::from_secs(30));
    let sessions = class.sessions();
    assert_eq!(sessions.len(), 2);
    for (i, s) in sessions.iter().enumerate() {
        let offer = Answer::Offer {
            session: s.id,
            // The first session's slot was free again.
            port: GROUP_PORT + 1,
        };
        assert_eq!(class.student(i).answer(), Some(&offer), "student {i}");
        assert_has_the_file(&class, i, &file);
    }
    assert_ne!(sessions[0].id, sessions[1].id);
}
