//! What a person sees: progress bars on a terminal, plain lines otherwise (logs, scripts, tests).

use edm_cast_proto::wire::ReceiverState;
use edm_cast_proto::{ReceiverInfo, Sender, SenderEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

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
    let bar = ProgressBar::with_draw_target(
        total,
        if interactive() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

fn who(r: &ReceiverInfo) -> String {
    if r.name.is_empty() {
        r.addr.to_string()
    } else {
        format!("{} ({})", r.name, r.addr.ip())
    }
}

fn state(r: &ReceiverInfo) -> &'static str {
    match (r.dropped, r.state) {
        (true, _) => "dropped: went silent",
        (_, ReceiverState::Done) => "done",
        (_, ReceiverState::Failed) => "failed",
        (_, ReceiverState::Hello) => "joined",
        (_, ReceiverState::Receiving) => "receiving",
    }
}

/// The sender's live view: one line per receiver with its percentage.
pub struct SenderView {
    multi: Option<MultiProgress>,
    /// Put before every plain line (a server's sessions share one log).
    prefix: String,
    bars: HashMap<u32, ProgressBar>,
    last_draw: Instant,
}

impl SenderView {
    pub fn new() -> Self {
        SenderView {
            multi: interactive().then(MultiProgress::new),
            prefix: String::new(),
            bars: HashMap::new(),
            last_draw: Instant::now(),
        }
    }

    /// Plain lines only, each starting with `prefix`.
    pub fn lines(prefix: String) -> Self {
        SenderView {
            multi: None,
            prefix,
            bars: HashMap::new(),
            last_draw: Instant::now(),
        }
    }

    pub fn println(&self, line: String) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{}{line}", self.prefix),
        }
    }

    pub fn event(&mut self, ev: &SenderEvent, sender: &Sender) {
        let find = |id: &u32| sender.receivers().find(|r| r.id == *id);
        let line = match ev {
            SenderEvent::Started => format!(
                "sending: {} receiver(s) said hello",
                sender.receivers().count()
            ),
            SenderEvent::ReceiverJoined { id } => match find(id) {
                Some(r) => format!("joined: {}", who(r)),
                None => return,
            },
            SenderEvent::ReceiverDone { id }
            | SenderEvent::ReceiverFailed { id }
            | SenderEvent::ReceiverDropped { id }
            | SenderEvent::ReceiverLeftBehind { id } => match find(id) {
                Some(r) => format!("{}: {}", who(r), state(r)),
                None => return,
            },
            SenderEvent::NeedBlock { .. } | SenderEvent::Finished => return,
        };
        if self.multi.is_none() {
            self.println(line);
        }
    }

    /// Redraws the receiver lines, at most ten times a second.
    pub fn tick(&mut self, sender: &Sender) {
        if self.last_draw.elapsed() >= Duration::from_millis(100) {
            self.draw(sender);
        }
    }

    fn draw(&mut self, sender: &Sender) {
        let Some(multi) = &self.multi else {
            return;
        };
        self.last_draw = Instant::now();
        let total = sender.layout().num_blocks().max(1) as u64;
        for r in sender.receivers() {
            let bar = self.bars.entry(r.id).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(total));
                b.set_style(
                    ProgressStyle::with_template("{prefix:>28} [{bar:30}] {percent:>3}% {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                b
            });
            bar.set_prefix(who(r));
            let done = if r.state == ReceiverState::Done {
                total
            } else {
                r.blocks_done as u64
            };
            bar.set_position(done);
            bar.set_message(state(r));
        }
    }

    /// Leaves the final state of every line on the screen.
    pub fn finish(&mut self, sender: &Sender) {
        self.draw(sender);
        for bar in self.bars.values() {
            bar.abandon();
        }
    }
}
