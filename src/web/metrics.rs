//! `/metrics`: the board's snapshot as Prometheus (OpenMetrics) text, made by `prometheus-client`
//! at scrape time. A fresh registry per scrape: the snapshot is the truth, so nothing is kept
//! between scrapes and an ended session's series go when the board forgets it.

use crate::status::Status;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The content type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter<u64>>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Every phase a session can be in: each is reported, also at 0, so a dashboard can sum them.
const PHASES: [&str; 5] = ["waiting", "first_pass", "repairing", "ending", "finished"];

/// The metrics of `status`, as text.
pub fn render(status: &Status) -> String {
    let mut r = Registry::with_prefix("edm_cast");
    let info = Gauges::default();
    r.register(
        "info",
        "The command and host serving these metrics (always 1)",
        info.clone(),
    );
    info.get_or_create(&vec![
        ("command", status.command.to_owned()),
        ("host", status.host.clone()),
    ])
    .set(1.0);
    let uptime = gauge(
        &mut r,
        "uptime_seconds",
        "Seconds since the command started",
    );
    uptime.get_or_create(&vec![]).set(status.uptime_secs);

    let sessions = gauge(&mut r, "sessions", "File sessions on the board, by phase");
    for phase in PHASES {
        let n = status.sessions.iter().filter(|s| s.phase == phase).count();
        sessions
            .get_or_create(&vec![("phase", phase.to_owned())])
            .set(n as f64);
    }
    let bytes = counters(
        &mut r,
        "session_bytes",
        "UDP payload bytes sent, by kind (data: source symbols, repair, control)",
    );
    let datagrams = counters(&mut r, "session_datagrams", "Datagrams sent, by kind");
    let file = gauge(&mut r, "session_file_bytes", "The file's size (once known)");
    let ratio = gauge(
        &mut r,
        "session_wire_ratio",
        "Wire bytes over the file's size: 1 plus the cost of FEC, repair and control",
    );
    let rate = gauge(
        &mut r,
        "session_send_rate_bits_per_second",
        "What the session sends now (UDP payload)",
    );
    let receivers = gauge(&mut r, "receivers", "Receivers, by state");
    let dropped = counters(
        &mut r,
        "session_dropped_datagrams",
        "Datagrams the sender dropped, by reason",
    );
    let needs = counters(&mut r, "session_need_reports", "NEED reports taken");
    let verify = counters(
        &mut r,
        "session_verify_rounds",
        "Hash-checked repair rounds (a block failed its digest somewhere)",
    );
    for s in &status.sessions {
        let session = || ("session", s.id.clone());
        for (kind, n) in [
            ("data", s.bytes.data),
            ("repair", s.bytes.repair),
            ("control", s.bytes.control),
        ] {
            bytes
                .get_or_create(&vec![session(), ("kind", kind.to_owned())])
                .inc_by(n);
        }
        for (kind, n) in [
            ("source", s.datagrams.source),
            ("repair", s.datagrams.repair),
            ("control", s.datagrams.control),
        ] {
            datagrams
                .get_or_create(&vec![session(), ("kind", kind.to_owned())])
                .inc_by(n);
        }
        if let Some(size) = s.size {
            file.get_or_create(&vec![session(), ("name", s.name.clone())])
                .set(size as f64);
            ratio.get_or_create(&vec![session()]).set(s.wire_ratio);
        }
        rate.get_or_create(&vec![session()]).set(s.send_rate_bps);
        let t = &s.totals;
        for (state, n) in [
            ("done", t.done),
            ("receiving", t.receiving),
            ("joined", t.joined),
            ("failed", t.failed),
            ("dropped", t.dropped),
            ("left_behind", t.left_behind),
            ("slow", t.slow),
            ("hello", t.hello_only),
        ] {
            receivers
                .get_or_create(&vec![session(), ("state", state.to_owned())])
                .set(n as f64);
        }
        for (reason, n) in &s.dropped {
            dropped
                .get_or_create(&vec![session(), ("reason", (*reason).to_owned())])
                .inc_by(*n);
        }
        needs.get_or_create(&vec![session()]).inc_by(s.need_reports);
        verify
            .get_or_create(&vec![session()])
            .inc_by(s.verify_rounds);
    }

    if let Some(serve) = &status.serve {
        let answered = counters(
            &mut r,
            "serve_requests",
            "Students' requests answered, by outcome",
        );
        for (outcome, n) in &serve.answered {
            answered
                .get_or_create(&vec![("outcome", (*outcome).to_owned())])
                .inc_by(*n);
        }
        let downloads = gauge(&mut r, "serve_downloads", "Downloads on the board");
        downloads
            .get_or_create(&vec![])
            .set(serve.downloads.len() as f64);
        if let Some(c) = &serve.cache {
            let hits = counters(&mut r, "cache_hits", "Requests sent from the cache");
            hits.get_or_create(&vec![]).inc_by(c.hits);
            let misses = counters(&mut r, "cache_misses", "Requests the cache could not serve");
            misses.get_or_create(&vec![]).inc_by(c.misses);
            let used = gauge(&mut r, "cache_bytes", "Bytes kept in the cache");
            used.get_or_create(&vec![]).set(c.bytes as f64);
            let entries = gauge(&mut r, "cache_entries", "Files kept in the cache");
            entries.get_or_create(&vec![]).set(c.entries as f64);
            if let Some(cap) = c.capacity {
                let capacity = gauge(&mut r, "cache_capacity_bytes", "The cache's largest size");
                capacity.get_or_create(&vec![]).set(cap as f64);
            }
        }
    }

    if let Some(video) = &status.video {
        let viewers = gauge(&mut r, "video_viewers", "Viewers holding a lease");
        let bitrate = gauge(
            &mut r,
            "video_bitrate_bits_per_second",
            "Bit rate relayed (recent)",
        );
        let packets = counters(&mut r, "video_packets", "RTP packets relayed, by kind");
        let fec = counters(
            &mut r,
            "video_fec_packets",
            "Packets the viewers reported repaired by FEC or lost for good",
        );
        for c in &video.channels {
            let channel = || ("channel", c.name.clone());
            viewers
                .get_or_create(&vec![channel()])
                .set(c.viewers as f64);
            bitrate.get_or_create(&vec![channel()]).set(c.bitrate_bps);
            for (kind, n) in [("source", c.packets), ("repair", c.repair_packets)] {
                packets
                    .get_or_create(&vec![channel(), ("kind", kind.to_owned())])
                    .inc_by(n);
            }
            for (outcome, n) in [("repaired", c.fec_repaired), ("lost", c.fec_lost)] {
                fec.get_or_create(&vec![channel(), ("outcome", outcome.to_owned())])
                    .inc_by(n);
            }
        }
    }

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

fn counters(r: &mut Registry, name: &str, help: &str) -> Counters {
    let f = Counters::default();
    r.register(name, help, f.clone());
    f
}

fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauges {
    let f = Gauges::default();
    r.register(name, help, f.clone());
    f
}

#[cfg(test)]
mod tests {
    use super::render;
    use crate::status::{Board, CacheStatus, ChannelStatus, ServeStatus, VideoStatus};

    /// The value of the sample written exactly as `series` (`name{labels}`).
    fn value(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.rsplit_once(' ').is_some_and(|(s, _)| s == series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    }

    #[test]
    fn serve_and_video_parts_are_there_when_the_board_has_them() {
        let board = Board::new("serve", "lab".into(), None);
        let plain = render(&board.snapshot());
        assert!(!plain.contains("edm_cast_cache") && !plain.contains("edm_cast_video"));
        assert_eq!(value(&plain, r#"edm_cast_sessions{phase="waiting"}"#), 0.0);

        board.set_serve(ServeStatus {
            cache: Some(CacheStatus {
                entries: 2,
                bytes: 3000,
                capacity: Some(10_000),
                hits: 5,
                misses: 7,
            }),
            answered: [("offered", 4), ("refused", 1)].into_iter().collect(),
            ..Default::default()
        });
        board.set_video(VideoStatus {
            channels: vec![ChannelStatus {
                name: "cam \"front\"".into(),
                viewers: 3,
                bitrate_bps: 4e6,
                packets: 1000,
                repair_packets: 200,
                fec_repaired: 9,
                fec_lost: 1,
                ..Default::default()
            }],
        });
        let text = render(&board.snapshot());
        assert_eq!(value(&text, "edm_cast_cache_hits_total"), 5.0);
        assert_eq!(value(&text, "edm_cast_cache_misses_total"), 7.0);
        assert_eq!(value(&text, "edm_cast_cache_capacity_bytes"), 10_000.0);
        assert_eq!(
            value(&text, r#"edm_cast_serve_requests_total{outcome="refused"}"#),
            1.0
        );
        // A label value is escaped by the encoder, not by us.
        let cam = r#"channel="cam \"front\"""#;
        assert_eq!(
            value(&text, &format!("edm_cast_video_viewers{{{cam}}}")),
            3.0
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"edm_cast_video_fec_packets_total{{{cam},outcome="repaired"}}"#)
            ),
            9.0
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"edm_cast_video_packets_total{{{cam},kind="repair"}}"#)
            ),
            200.0
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
