//! Channels and leases: the relay announces its channels on the group, a viewer asks for one by
//! name (REQUEST, repeated as its lease renewal), the relay answers (REPLY) and starts relaying on the
//! first lease, and stops a grace period after the last one lapsed or left (LEAVE).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a lease lasts unless renewed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(6);
/// How long a channel keeps relaying after its last lease ended.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// What the relay must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// First lease on an idle channel: start the source command, start sending.
    Start(String),
    /// The grace period after the last lease ran out: stop sending, stop the source command.
    Stop(String),
}

#[derive(Debug, Default)]
struct ChannelLeases {
    /// Viewer id → lease expiry.
    viewers: HashMap<u64, Instant>,
    live: bool,
    /// When the last lease ended, while the channel is live without viewers.
    idle_since: Option<Instant>,
}

/// The relay's lease table, one entry per offered channel.
#[derive(Debug)]
pub struct Leases {
    lease: Duration,
    grace: Duration,
    channels: BTreeMap<String, ChannelLeases>,
    events: VecDeque<LeaseEvent>,
}

impl Leases {
    pub fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        lease: Duration,
        grace: Duration,
    ) -> Self {
        Leases {
            lease,
            grace,
            channels: names
                .into_iter()
                .map(|n| (n.to_owned(), ChannelLeases::default()))
                .collect(),
            events: VecDeque::new(),
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Grants or renews `viewer`'s lease on `channel`; false if there is no such channel.
    pub fn request(&mut self, now: Instant, viewer: u64, channel: &str) -> bool {
        let Some(c) = self.channels.get_mut(channel) else {
            return false;
        };
        c.viewers.insert(viewer, now + self.lease);
        c.idle_since = None;
        if !c.live {
            c.live = true;
            self.events.push_back(LeaseEvent::Start(channel.to_owned()));
        }
        true
    }

    pub fn leave(&mut self, now: Instant, viewer: u64, channel: &str) {
        if let Some(c) = self.channels.get_mut(channel)
            && c.viewers.remove(&viewer).is_some()
            && c.viewers.is_empty()
        {
            c.idle_since = Some(now);
        }
    }

    pub fn is_live(&self, channel: &str) -> bool {
        self.channels.get(channel).is_some_and(|c| c.live)
    }

    pub fn viewers(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |c| c.viewers.len())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for (name, c) in &mut self.channels {
            let before = c.viewers.len();
            let mut last_end = None;
            c.viewers.retain(|_, end| {
                let keep = *end > now;
                if !keep {
                    last_end = last_end.max(Some(*end));
                }
                keep
            });
            if before > 0 && c.viewers.is_empty() {
                c.idle_since = last_end;
            }
            if c.live && c.idle_since.is_some_and(|t| now >= t + self.grace) {
                c.live = false;
                c.idle_since = None;
                self.events.push_back(LeaseEvent::Stop(name.clone()));
            }
        }
    }

    /// The next lease expiry or end of a grace period.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .values()
            .flat_map(|c| {
                c.viewers
                    .values()
                    .copied()
                    .chain(c.idle_since.filter(|_| c.live).map(|t| t + self.grace))
            })
            .min()
    }

    pub fn poll_event(&mut self) -> Option<LeaseEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_start_once_share_and_stop_after_grace() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Leases::new(["pi", "cam"], s(6), s(10));
        assert!(!l.request(t0, 1, "nope"));
        assert!(l.request(t0, 1, "pi"));
        assert_eq!(l.poll_event(), Some(LeaseEvent::Start("pi".into())));
        assert!(l.request(t0 + s(1), 2, "pi"));
        assert_eq!(l.poll_event(), None, "the second viewer shares the stream");
        assert_eq!(l.viewers("pi"), 2);
        // Viewer 1 renews, viewer 2 leaves; viewer 1's lease then lapses at 2 + 6 s.
        l.request(t0 + s(2), 1, "pi");
        l.leave(t0 + s(3), 2, "pi");
        l.handle_timeout(t0 + s(7));
        assert!(l.is_live("pi"));
        l.handle_timeout(t0 + s(8));
        assert_eq!(l.viewers("pi"), 0);
        assert_eq!(l.poll_timeout(), Some(t0 + s(18)));
        l.handle_timeout(t0 + s(17));
        assert_eq!(l.poll_event(), None);
        l.handle_timeout(t0 + s(18));
        assert_eq!(l.poll_event(), Some(LeaseEvent::Stop("pi".into())));
        assert!(!l.is_live("pi"));
        assert_eq!(l.poll_timeout(), None);
        // A request inside the grace period keeps it going without a restart.
        l.request(t0 + s(20), 3, "pi");
        l.leave(t0 + s(21), 3, "pi");
        l.request(t0 + s(25), 4, "pi");
        l.handle_timeout(t0 + s(40));
        l.handle_timeout(t0 + s(41));
        let events: Vec<_> = std::iter::from_fn(|| l.poll_event()).collect();
        assert_eq!(
            events,
            [
                LeaseEvent::Start("pi".into()),
                LeaseEvent::Stop("pi".into())
            ]
        );
    }
}
