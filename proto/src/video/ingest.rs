//! Who may feed a channel (VIDEO.md section 3, "Who may send"): the relay's UDP and RTP ingest
//! ports take datagrams from anyone on the LAN, so a student could replace the camera. A channel
//! either names its camera's address (`udp://CAMERA@:5000`: everything else is refused), or takes
//! the first sender it hears and keeps it while it sends; another sender is taken only after the
//! current one has been silent for `SENDER_HOLD` (a camera that restarted elsewhere).

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a channel without a named camera keeps its sender after the last datagram from it:
/// a camera sends 30 or more datagrams a second, and one that restarts is back within seconds.
pub const SENDER_HOLD: Duration = Duration::from_secs(5);

/// What to do with an ingest datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// From the channel's sender: take it.
    Taken,
    /// From a sender taken now (the first, or the first after the last one fell silent): take
    /// it, and say so.
    NewSender,
    /// From another address: drop it. `first` for the first one refused since the current sender
    /// was taken, so that the shell can say so once.
    Refused {
        /// The first refusal since the current sender was taken.
        first: bool,
    },
}

/// One channel's ingest filter.
#[derive(Debug, Clone)]
pub struct SenderFilter {
    /// The camera's address, if the source names it.
    pinned: Option<IpAddr>,
    /// The sender taken, and when it was last heard.
    current: Option<(IpAddr, Instant)>,
    refused_since_taken: bool,
    /// Datagrams refused, in all.
    pub refused: u64,
}

impl SenderFilter {
    /// A filter taking only `pinned`, or (None) the first sender until it falls silent.
    pub fn new(pinned: Option<IpAddr>) -> Self {
        SenderFilter {
            pinned,
            current: None,
            refused_since_taken: false,
            refused: 0,
        }
    }

    /// The address taken: the camera's if the source names it, else the current sender's.
    pub fn sender(&self) -> Option<IpAddr> {
        self.pinned.or(self.current.map(|(sender, _)| sender))
    }

    /// Whether a datagram from `from` arriving at `now` is taken.
    pub fn admit(&mut self, now: Instant, from: IpAddr) -> Admission {
        let taken = match (self.pinned, self.current) {
            (Some(pinned), _) => from == pinned,
            (None, Some((sender, heard))) => from == sender || now >= heard + SENDER_HOLD,
            (None, None) => true,
        };
        if !taken {
            self.refused += 1;
            let first = !self.refused_since_taken;
            self.refused_since_taken = true;
            return Admission::Refused { first };
        }
        let new = self.current.is_none_or(|(sender, _)| sender != from);
        self.current = Some((from, now));
        if new {
            self.refused_since_taken = false;
            Admission::NewSender
        } else {
            Admission::Taken
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// A student's PC floods the channel's port while the camera sends: with the camera named,
    /// all of the student's datagrams are refused, from the first.
    #[test]
    fn a_named_camera_is_the_only_sender() {
        let t0 = Instant::now();
        let mut f = SenderFilter::new(Some(ip(7)));
        assert_eq!(f.admit(t0, ip(66)), Admission::Refused { first: true });
        assert_eq!(f.admit(t0, ip(66)), Admission::Refused { first: false });
        assert_eq!(f.admit(t0, ip(7)), Admission::NewSender);
        assert_eq!(f.sender(), Some(ip(7)));
        for ms in 0..10_000 {
            let now = t0 + Duration::from_millis(ms);
            assert_eq!(f.admit(now, ip(7)), Admission::Taken);
            assert!(matches!(f.admit(now, ip(66)), Admission::Refused { .. }));
        }
        // Long after the camera fell silent, still nobody else.
        let later = t0 + Duration::from_secs(3600);
        assert!(matches!(f.admit(later, ip(66)), Admission::Refused { .. }));
        assert_eq!(f.refused, 2 + 10_000 + 1);
    }

    /// Without a named camera the first sender is kept while it sends; another is taken only
    /// after `SENDER_HOLD` of silence.
    #[test]
    fn the_first_sender_is_kept_while_it_sends() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut f = SenderFilter::new(None);
        assert_eq!(f.admit(t0, ip(7)), Admission::NewSender);
        // The student floods from another PC while the camera sends every 33 ms.
        for i in 1..300u64 {
            let now = t0 + ms(33 * i);
            assert_eq!(f.admit(now, ip(7)), Admission::Taken);
            let first = i == 1;
            assert_eq!(f.admit(now, ip(66)), Admission::Refused { first });
        }
        assert_eq!(f.refused, 299);
        // The camera stops (last heard at 9.867 s): the student is refused until 5 s later.
        let last = t0 + ms(33 * 299);
        assert!(matches!(
            f.admit(last + SENDER_HOLD - ms(1), ip(66)),
            Admission::Refused { .. }
        ));
        assert_eq!(f.admit(last + SENDER_HOLD, ip(66)), Admission::NewSender);
        assert_eq!(f.sender(), Some(ip(66)));
        // Now the camera is the other one, until the new sender is silent in its turn.
        let now = last + SENDER_HOLD + ms(10);
        assert_eq!(f.admit(now, ip(7)), Admission::Refused { first: true });
    }
}
