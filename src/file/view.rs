//! What a person sees. On a terminal, the teacher's screen: a header that says where the session
//! is, a total line, and the receivers that fit, redrawn in place from the session's status
//! ([`screen`], a pure function of the status and the terminal's size). Elsewhere (logs, scripts,
//! tests, `serve`'s shared log), plain lines, one per event.

use super::session::reason;
use crate::net::pace::Rate;
use crate::status::{ReceiverStatus, SessionStatus};
use console::{measure_text_width, truncate_str};
use edm_cast_proto::file::sender::LAGGING_BUDGET;
use edm_cast_proto::wire::ReceiverState;
use edm_cast_proto::{ReceiverInfo, Sender, SenderEvent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often the teacher's screen is redrawn.
const REDRAW: Duration = Duration::from_millis(200);

pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// `1.5 GiB`, `64.0 MiB`, `812 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A byte progress bar, drawn only on a terminal; without a total (a download of unknown size)
/// it shows bytes and speed until `set_length`.
pub fn byte_bar(total: Option<u64>, prefix: &str) -> ProgressBar {
    bar(
        total,
        prefix,
        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
}

/// A receiver's bar. Its position is the bytes of the blocks it has decoded (the last one cut to
/// the file's size), the same measure as the percent the sender shows for it (`fraction_done`):
/// the two agree, the sender's being at most one STATUS (half a second) behind. Its message, for a
/// tree, is the files done (` · 12/201 files`).
pub fn receive_bar(total: Option<u64>) -> ProgressBar {
    bar(
        total,
        "receiving",
        "{prefix:>12} [{bar:30}] {percent:>3}% {bytes}/{total_bytes}{msg} {binary_bytes_per_sec} eta {eta}",
    )
}

fn bar(total: Option<u64>, prefix: &str, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        total,
        if interactive() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

/// How much of the file a receiver has, 0 to 1: the bytes of the blocks it decoded, the last
/// one cut to the file's size (blocks, while the size is not known). What `recv`'s bar shows.
pub fn fraction_done(
    blocks_done: u32,
    blocks_total: u32,
    block_bytes: u64,
    size: Option<u64>,
) -> f64 {
    match size {
        Some(0) => f64::from(u8::from(blocks_done >= blocks_total)),
        Some(size) => (u64::from(blocks_done) * block_bytes).min(size) as f64 / size as f64,
        None => f64::from(blocks_done) / f64::from(blocks_total.max(1)),
    }
}

fn who(r: &ReceiverInfo) -> String {
    if r.name.is_empty() {
        r.addr.to_string()
    } else {
        format!("{} ({})", r.name, r.addr.ip())
    }
}

/// The sender's view: the teacher's screen on a terminal, plain lines otherwise.
pub struct SenderView {
    /// The screen: one indicatif bar whose message is every line of it. indicatif redraws it in
    /// place, keeps printed lines above it, and never draws more rows than the terminal has.
    live: Option<ProgressBar>,
    /// Put before every plain line (a server's sessions share one log).
    prefix: String,
    drawn: Option<Instant>,
}

impl SenderView {
    pub fn new() -> Self {
        let live = interactive().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
            bar
        });
        SenderView {
            live,
            prefix: String::new(),
            drawn: None,
        }
    }

    /// Plain lines only, each starting with `prefix`.
    pub fn lines(prefix: String) -> Self {
        SenderView {
            live: None,
            prefix,
            drawn: None,
        }
    }

    pub fn println(&self, line: String) {
        match &self.live {
            Some(bar) => bar.println(line),
            None => eprintln!("{}{line}", self.prefix),
        }
    }

    /// Without a screen, one line per event (the screen shows the same on a terminal).
    pub fn event(&mut self, ev: &SenderEvent, sender: &Sender) {
        if self.live.is_some() {
            return;
        }
        let find = |id: &u32| sender.receivers().find(|r| r.id == *id);
        let (id, what) = match ev {
            SenderEvent::Started => {
                return self.println(format!(
                    "sending: {} receiver(s) said hello",
                    sender.receivers().count()
                ));
            }
            SenderEvent::ReceiverJoined { id } => match find(id) {
                Some(r) => return self.println(format!("joined: {}", who(r))),
                None => return,
            },
            SenderEvent::ReceiverRestarted { id, .. } => (
                id,
                "restarted on its PC: counted once, in place of its earlier receiver".into(),
            ),
            SenderEvent::ReceiverDone { id } => (id, "done".into()),
            SenderEvent::ReceiverFailed { id } => match find(id) {
                Some(r) => (id, format!("failed: {}", reason(r.reason))),
                None => return,
            },
            SenderEvent::ReceiverDropped { id } => (id, "dropped: went silent".into()),
            SenderEvent::ReceiverLeftBehind { id } => match find(id) {
                Some(r) => (id, left_behind(sender, r)),
                None => return,
            },
            SenderEvent::NeedBlock { .. } | SenderEvent::Finished => return,
        };
        if let Some(r) = find(id) {
            self.println(format!("{}: {what}", who(r)));
        }
    }

    /// Whether the screen is due for a redraw (never without one).
    pub fn due(&self, now: Instant) -> bool {
        self.live.is_some() && self.drawn.is_none_or(|t| now.duration_since(t) >= REDRAW)
    }

    /// Redraws the screen from `status`, fitted to the terminal's size now.
    pub fn show(&mut self, now: Instant, status: &SessionStatus) {
        let Some(bar) = &self.live else {
            return;
        };
        self.drawn = Some(now);
        let (rows, cols) = console::Term::stderr().size();
        // A column spare (a line as wide as the terminal wraps on some) and a row for the cursor.
        let lines = screen(status, cols.saturating_sub(1), rows.saturating_sub(1));
        bar.set_message(lines.join("\n"));
    }

    /// The session is over: the summary (on stdout) lists every receiver. On a terminal the
    /// screen makes way for it; if the summary goes elsewhere, the last screen stays.
    pub fn finish(&mut self, status: &SessionStatus) {
        self.show(Instant::now(), status);
        if let Some(bar) = self.live.take() {
            if std::io::stdout().is_terminal() {
                bar.finish_and_clear();
            } else {
                bar.abandon();
            }
        }
    }
}

/// The teacher's screen for a session, at most `height` lines of at most `width` columns: a
/// header that says where the session is, a total line, then the receivers, those needing
/// attention (failed, dropped, left behind) first, then the others by name, as many as fit; the
/// rest in one line of counts.
pub fn screen(s: &SessionStatus, width: u16, height: u16) -> Vec<String> {
    let (width, height) = (usize::from(width.max(20)), usize::from(height.max(3)));
    let mut lines = vec![header(s), totals(s)];
    let mut listed: Vec<&ReceiverStatus> = s.receivers.iter().collect();
    listed.sort_by_key(|r| (rank(r), &r.name, &r.addr));
    let rows = height - lines.len();
    let shown = if listed.len() <= rows {
        listed.len()
    } else {
        rows - 1
    };
    let name_width = listed[..shown]
        .iter()
        .map(|r| measure_text_width(&name(r)))
        .max()
        .unwrap_or(0)
        .min(width / 3);
    // What a row needs besides its bar: the name, "  [", "] 100%  " and some 30 columns of state.
    let bar_width = width.saturating_sub(name_width + 40).min(30);
    lines.extend(
        listed[..shown]
            .iter()
            .map(|r| row(r, name_width, bar_width)),
    );
    if shown < listed.len() {
        let rest = counts(&listed[shown..]);
        lines.push(match shown {
            0 => format!("{} receivers: {rest}", listed.len()),
            _ => format!("… and {} more: {rest}", listed.len() - shown),
        });
    }
    lines
        .into_iter()
        .map(|l| truncate_str(&l, width, "…").into_owned())
        .collect()
}

/// Attention first, hello-only (not counted) last.
fn rank(r: &ReceiverStatus) -> u8 {
    match (r.attention, r.state) {
        (true, _) => 0,
        (_, "hello") => 2,
        _ => 1,
    }
}

/// `pc07 (10.0.0.7)`, or its address if it gave no name.
fn name(r: &ReceiverStatus) -> String {
    match (r.name.is_empty(), r.addr.rsplit_once(':')) {
        (false, Some((ip, _))) => format!("{} ({ip})", r.name),
        (false, None) => r.name.clone(),
        (true, _) => r.addr.clone(),
    }
}

fn header(s: &SessionStatus) -> String {
    // A tree: its files too (how many each PC has is not in its reports: its bytes are).
    let what = format!(
        "{} ({}{})",
        s.name,
        s.files.map(|n| format!("{n} files, ")).unwrap_or_default(),
        s.size.map_or("size not known yet".into(), bytes)
    );
    let why = s
        .failure
        .as_deref()
        .map(|f| format!(": {f}"))
        .unwrap_or_default();
    let phase = match s.phase {
        "waiting" => format!(
            "waiting for {} receiver(s) ({} joined)",
            s.min_receivers, s.totals.joined
        ),
        "first_pass" => format!("sending first pass {}%", percent(first_pass(s))),
        "repairing" => "repairing: sending what receivers lack".into(),
        "ending" => format!("ending{why}"),
        _ => format!("{}{why}", s.outcome.unwrap_or("finished")),
    };
    let mut line = format!("{what} · {phase}");
    if s.elapsed_secs > 0.0 {
        line += &format!(" · {}", clock(s.elapsed_secs));
    }
    line
}

/// How far the first pass is, 0 to 1. Blocks are sent interleaved, so whole blocks sent lag far
/// behind (none of a small file's until its end): while the ETA is known, the share of source
/// symbols sent that it comes from (`eta = elapsed × (1 − sent) / sent`).
fn first_pass(s: &SessionStatus) -> f64 {
    match s.eta_secs {
        Some(eta) if s.elapsed_secs + eta > 0.0 => s.elapsed_secs / (s.elapsed_secs + eta),
        _ => f64::from(s.blocks_sent) / f64::from(s.blocks_total.max(1)),
    }
}

/// `27/30 done · 2 receiving · 1 failed · 41 MB/s · ETA 0:12`
fn totals(s: &SessionStatus) -> String {
    let t = &s.totals;
    let mut parts = vec![format!("{}/{} done", t.done, t.known)];
    for (n, what) in [
        (t.receiving, "receiving"),
        (t.joined, "joined"),
        (t.failed, "failed"),
        (t.dropped, "dropped"),
        (t.left_behind, "left behind"),
        (t.slow, "too slow"),
        (t.hello_only, "said hello only"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if matches!(s.phase, "first_pass" | "repairing") {
        parts.push(rate(s.send_rate_bps));
    }
    if let Some(eta) = s.eta_secs {
        parts.push(format!("ETA {}", clock(eta)));
    }
    parts.join(" · ")
}

/// Why the session ended without `r`: its path too slow to follow (what it took against the
/// floor), or its loss too high.
pub fn left_behind(sender: &Sender, r: &ReceiverInfo) -> String {
    // With none done (a PC alone, or a class that all lost that much) there were no others to
    // be too slow against: what it lost is why (PROTOCOL.md 5.6, lagging alone).
    let alone = !(sender.receivers()).any(|o| o.state == ReceiverState::Done);
    if let (true, Some(loss)) = (alone, sender.loss_of(r)) {
        return format!(
            "left behind: it lost {:.0}% of what was sent, more than the session repairs \
             (at most {LAGGING_BUDGET} x the file)",
            loss * 100.0
        );
    }
    match sender.slow_path(r) {
        Some((took, floor)) if took < floor => format!(
            "left behind: its link took {}, too slow to follow (under {}: --min-rate, or \
             half what the others took)",
            Rate(took),
            Rate(floor)
        ),
        Some(_) => "left behind: it lost most of the stream, too slow to follow".into(),
        // Over 80% (the line the sender follows up to), beside PCs that lost less: not waited
        // for once they were done.
        None => match sender.loss_of(r) {
            Some(loss) => format!(
                "left behind: it lost {:.0}% of what was sent, too much to be followed",
                loss * 100.0
            ),
            None => "left behind: it lost too much to be followed".into(),
        },
    }
}

/// `pc07 (10.0.0.7)   [=========>          ]  45%  receiving`
fn row(r: &ReceiverStatus, name_width: usize, bar_width: usize) -> String {
    let who = truncate_str(&name(r), name_width, "…").into_owned();
    let pad = " ".repeat(name_width.saturating_sub(measure_text_width(&who)));
    let state = match r.state {
        "joined" => return format!("{who}{pad}  joined"),
        "hello" => return format!("{who}{pad}  said hello, never reported progress (not counted)"),
        "receiving" => match r.loss {
            Some(loss) if loss >= 0.005 => format!("receiving, {:.0}% loss", loss * 100.0),
            _ => "receiving".into(),
        },
        "failed" => format!("failed: {}", r.reason.unwrap_or("see its own message")),
        "dropped" => "dropped: went silent".into(),
        "left_behind" => format!(
            "left behind: {}",
            r.reason.unwrap_or("lost too much to be followed")
        ),
        "slow" => "too slow to follow: gets what reaches it".into(),
        other => other.into(),
    };
    let pct = percent(r.progress);
    if bar_width < 8 {
        return format!("{who}{pad}  {pct:>3}%  {state}");
    }
    let filled = ((r.progress.clamp(0.0, 1.0) * bar_width as f64) as usize).min(bar_width);
    let mut bar = "=".repeat(filled);
    if filled < bar_width {
        bar.push('>');
        bar.push_str(&" ".repeat(bar_width - filled - 1));
    }
    format!("{who}{pad}  [{bar}] {pct:>3}%  {state}")
}

/// `20 done, 2 receiving`: receivers by state, in a fixed order.
fn counts(rs: &[&ReceiverStatus]) -> String {
    const ORDER: [(&str, &str); 8] = [
        ("failed", "failed"),
        ("dropped", "dropped"),
        ("left_behind", "left behind"),
        ("slow", "too slow"),
        ("done", "done"),
        ("receiving", "receiving"),
        ("joined", "joined"),
        ("hello", "said hello only"),
    ];
    ORDER
        .iter()
        .filter_map(|(state, what)| {
            let n = rs.iter().filter(|r| r.state == *state).count();
            (n > 0).then(|| format!("{n} {what}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whole percent, rounded down: 100% only when it is all there (as indicatif's `{percent}`).
fn percent(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * 100.0).floor() as u32
}

/// `41 MB/s` (bytes, as a file manager shows them).
fn rate(bits_per_sec: f64) -> String {
    let mb = bits_per_sec / 8e6;
    if mb >= 10.0 {
        format!("{mb:.0} MB/s")
    } else {
        format!("{mb:.1} MB/s")
    }
}

/// `0:12`, `12:05`, `1:02:03`.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Bytes, Datagrams, Totals};

    fn receiver(i: usize, state: &'static str, reason: Option<&'static str>) -> ReceiverStatus {
        let progress = match state {
            "done" => 1.0,
            "joined" => 0.0,
            _ => (i % 10) as f64 / 10.0 + 0.05,
        };
        ReceiverStatus {
            id: format!("{i:08x}"),
            name: format!("pc{i:02}"),
            addr: format!("10.0.0.{}:40000", i + 10),
            state,
            reason,
            progress,
            blocks_done: (progress * 200.0) as u32,
            loss: Some(0.03),
            attention: matches!(state, "failed" | "dropped" | "left_behind" | "slow"),
        }
    }

    fn session(phase: &'static str, receivers: Vec<ReceiverStatus>) -> SessionStatus {
        let mut totals = Totals::default();
        for r in &receivers {
            match r.state {
                "done" => totals.done += 1,
                "receiving" => totals.receiving += 1,
                "joined" => totals.joined += 1,
                "failed" => totals.failed += 1,
                "dropped" => totals.dropped += 1,
                "left_behind" => totals.left_behind += 1,
                "slow" => totals.slow += 1,
                _ => totals.hello_only += 1,
            }
        }
        totals.known = receivers.len() - totals.hello_only;
        SessionStatus {
            id: "1b16cff6".into(),
            name: "lesson-07-with-a-rather-long-name.iso".into(),
            size: Some(286 << 20),
            files: None,
            origin: "file",
            group: "239.1.1.1:5007".into(),
            phase,
            outcome: None,
            failure: None,
            min_receivers: 40,
            rate_limit_bps: 400e6,
            send_rate_bps: 328e6,
            elapsed_secs: 41.0,
            eta_secs: (phase == "first_pass").then_some(12.0),
            blocks_total: 208,
            blocks_sent: 150,
            bytes: Bytes::default(),
            datagrams: Datagrams::default(),
            wire_ratio: 1.02,
            totals,
            receivers,
            dropped: Default::default(),
            need_reports: 0,
            verify_rounds: 0,
            forgotten_receivers: 0,
        }
    }

    /// A class of 40 on a 100×24 terminal: the total line, every PC needing attention, within
    /// the terminal's rows and columns, and the rest counted.
    #[test]
    fn forty_receivers_fit_a_100_by_24_terminal_with_every_one_needing_attention_listed() {
        let mut rs: Vec<ReceiverStatus> = (0..40)
            .map(|i| match i {
                3 => receiver(i, "failed", Some("its disk is full")),
                17 => receiver(i, "failed", Some("stopped on the PC")),
                29 => receiver(i, "dropped", None),
                35 => receiver(i, "left_behind", None),
                38 => receiver(i, "slow", None),
                _ if i % 3 == 0 => receiver(i, "receiving", None),
                _ => receiver(i, "done", None),
            })
            .collect();
        // As the session gives them: any order will do, the screen sorts.
        rs.reverse();
        let s = session("first_pass", rs);
        let lines = screen(&s, 100, 24);
        let text = lines.join("\n");
        assert!(lines.len() <= 24, "{} lines:\n{text}", lines.len());
        for l in &lines {
            assert!(measure_text_width(l) <= 100, "too wide: {l:?}");
        }
        assert!(
            lines[0].contains("sending first pass 77%"),
            "the header says where it is: {text}"
        );
        assert_eq!(
            lines[1],
            "22/40 done · 13 receiving · 2 failed · 1 dropped · 1 left behind · 1 too slow · 41 MB/s · \
             ETA 0:12",
            "{text}"
        );
        // Attention first, by name, with the reason.
        assert!(
            lines[2].starts_with("pc03 (10.0.0.13)")
                && lines[2].ends_with("failed: its disk is full"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("pc17 (10.0.0.27)")
                && lines[3].ends_with("failed: stopped on the PC"),
            "{text}"
        );
        assert!(
            lines[4].starts_with("pc29") && lines[4].ends_with("dropped: went silent"),
            "{text}"
        );
        assert!(
            lines[5].starts_with("pc35") && lines[5].contains("left behind"),
            "{text}"
        );
        // A PC congestion control does not follow, and why.
        assert!(
            lines[6].starts_with("pc38")
                && lines[6].ends_with("too slow to follow: gets what reaches it"),
            "{text}"
        );
        // Then the others by name, as many as fit; the rest in one line.
        assert!(
            lines[7].starts_with("pc00 ") && lines[7].ends_with("receiving, 3% loss"),
            "{text}"
        );
        assert!(
            lines[8].starts_with("pc01 ")
                && lines[8].contains("[==============================] 100%  done"),
            "{text}"
        );
        assert_eq!(lines.len(), 24);
        assert_eq!(lines[23], "… and 19 more: 11 done, 8 receiving", "{text}");
    }

    #[test]
    fn a_small_class_is_listed_whole_and_joined_pcs_say_joined() {
        let s = session(
            "waiting",
            vec![receiver(2, "joined", None), receiver(1, "joined", None)],
        );
        let lines = screen(&s, 80, 24);
        assert_eq!(
            lines,
            [
                "lesson-07-with-a-rather-long-name.iso (286.0 MiB) · waiting for 40 receiver(s) (2 joined) · 0:41",
                "0/2 done · 2 joined",
                "pc01 (10.0.0.11)  joined",
                "pc02 (10.0.0.12)  joined",
            ]
            .map(|l| truncate_str(l, 80, "…").into_owned())
        );
    }

    #[test]
    fn a_tiny_terminal_gets_the_header_the_totals_and_the_counts() {
        let s = session(
            "repairing",
            (0..5).map(|i| receiver(i, "done", None)).collect(),
        );
        let lines = screen(&s, 30, 3);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[2], "5 receivers: 5 done");
        assert!(
            lines.iter().all(|l| measure_text_width(l) <= 30),
            "{lines:?}"
        );
        let ended = SessionStatus {
            outcome: Some("aborted"),
            failure: Some("interrupted (Ctrl-C)".into()),
            ..session("finished", vec![])
        };
        assert!(screen(&ended, 100, 24)[0].ends_with("· aborted: interrupted (Ctrl-C) · 0:41"));
    }

    #[test]
    fn a_tree_shows_how_many_files_it_holds() {
        let s = SessionStatus {
            name: "course-week3/".into(),
            files: Some(201),
            ..session("repairing", vec![])
        };
        assert_eq!(
            screen(&s, 100, 24)[0],
            "course-week3/ (201 files, 286.0 MiB) · repairing: sending what receivers lack · 0:41"
        );
    }

    #[test]
    fn sender_and_receiver_count_the_same_bytes() {
        // 5 of 6 blocks of 1 MiB in a 5.5 MiB file: what `recv`'s bar shows (5 MiB of 5.5).
        let size = 11 << 19;
        assert_eq!(fraction_done(5, 6, 1 << 20, Some(size)), 5.0 / 5.5);
        assert_eq!(fraction_done(6, 6, 1 << 20, Some(size)), 1.0);
        assert_eq!(fraction_done(1, 4, 1 << 20, None), 0.25);
        assert_eq!(fraction_done(1, 1, 1 << 20, Some(0)), 1.0);
    }
}
