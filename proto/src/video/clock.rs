//! A source's RTP clock moved onto the relay's (VIDEO.md section 3.1), so that a channel's tracks
//! share one timeline: a packet is stamped with the source's timestamp plus an offset, which the
//! stream's least-delayed packet sets. A packet can only come late (a busy CPU, a TCP burst, a
//! queue on the way), never before it was sent: one that comes sooner than the mapping says shows
//! that the packets the mapping came from were held up, and the whole track with them, so it moves
//! the mapping earlier (never to or before the newest packet's stamp, so that packets held up
//! together keep increasing timestamps). The mapping is set again when the source restarts (another SSRC), its clock
//! jumps, or it drifts more than `MAX_DRIFT` later for `MAX_HELD`.

use std::time::{Duration, Instant};

/// How far the source's clock may run from the relay's (its arrival times) before the
/// timestamps are mapped again: a lip-sync error players hardly notice (ITU-R BT.1359 puts the
/// threshold of detection at 45 ms audio early, 125 ms late), yet above a LAN's jitter.
pub const MAX_DRIFT: Duration = Duration::from_millis(100);
/// How long packets may all come later than `MAX_DRIFT` by the mapping before it moves to them:
/// a drifting source clock does so for good, while a busy CPU or a TCP burst holds packets up for
/// a moment (under a load average of 17 on 2 cores, packets held up past `MAX_DRIFT` made an
/// audio track that was mapped again at each be so 15 times in 63 packets, and end 122 ms late).
pub const MAX_HELD: Duration = Duration::from_secs(1);

/// One source stream's clock on the relay's. Input: `stamp(arrived, ssrc, timestamp, lag)` for
/// each packet; output: its timestamp on the relay's clock (at `clock_rate`, 0 at `epoch`).
/// `reset` forgets the source (after a stop). Time is passed in.
#[derive(Debug)]
pub struct SourceClock {
    clock_rate: u32,
    /// RTP time 0 on the relay's clock.
    epoch: Instant,
    /// The source's SSRC and what is added to its timestamps.
    mapping: Option<(u32, u32)>,
    /// Since when packets have come later than `MAX_DRIFT` by the mapping, without one between.
    late_since: Option<Instant>,
    /// The source timestamp of the newest packet stamped under the mapping, and its stamp.
    newest: Option<(u32, u32)>,
    /// Times the timestamps were mapped again (after the first): a new source SSRC, a jump or
    /// drift.
    pub remapped: u64,
}

impl SourceClock {
    /// A clock of `clock_rate` Hz whose RTP time is 0 at `epoch`.
    pub fn new(clock_rate: u32, epoch: Instant) -> Self {
        SourceClock {
            clock_rate,
            epoch,
            mapping: None,
            late_since: None,
            newest: None,
            remapped: 0,
        }
    }

    /// The relay's RTP time of `t` at this clock's rate.
    pub fn rtp_time(&self, t: Instant) -> u32 {
        let us = t.saturating_duration_since(self.epoch).as_micros();
        (us * u128::from(self.clock_rate) / 1_000_000) as u32
    }

    /// Forgets the source's timestamps: the next packet is stamped with its arrival (after a
    /// stop, when the source may have moved on).
    pub fn reset(&mut self) {
        self.mapping = None;
        self.late_since = None;
        self.newest = None;
    }

    /// The relay's timestamp for a packet of SSRC `ssrc` with source timestamp `timestamp` that
    /// arrived at `arrived` and could leave the source only `lag` (at the clock's rate) after the
    /// instant its timestamp names (an audio packet, once its last sample was captured). Sooner
    /// than the mapping says by at most `MAX_DRIFT`, the packet moves the mapping to it; later by
    /// more, it is only late, unless packets keep coming that late for `MAX_HELD` or it is later
    /// than `MAX_HELD`: then, as for the first packet, a new SSRC or a packet more than
    /// `MAX_DRIFT` sooner (a jump), the mapping is set from this packet.
    pub fn stamp(&mut self, arrived: Instant, ssrc: u32, timestamp: u32, lag: u32) -> u32 {
        let stamp = self.map(arrived, ssrc, timestamp, lag);
        if self
            .newest
            .is_none_or(|(ts, _)| timestamp.wrapping_sub(ts) as i32 > 0)
        {
            self.newest = Some((timestamp, stamp));
        }
        stamp
    }

    /// `stamp` without keeping the newest packet.
    fn map(&mut self, arrived: Instant, ssrc: u32, timestamp: u32, lag: u32) -> u32 {
        let captured = self.rtp_time(arrived).wrapping_sub(lag);
        let rate = u128::from(self.clock_rate);
        let ticks = |d: Duration| (rate * d.as_micros() / 1_000_000) as i64;
        let (max_drift, max_held) = (ticks(MAX_DRIFT), ticks(MAX_HELD));
        if let Some((mapped, offset)) = self.mapping
            && mapped == ssrc
        {
            let kept = timestamp.wrapping_add(offset);
            // How much sooner than the mapping says this packet came (negative: later).
            match i64::from(kept.wrapping_sub(captured) as i32) {
                // Later than packets are held up: the source's clock jumped back (an RTSP
                // session set up again). Mapped again below.
                sooner if sooner < -max_held => {}
                sooner if sooner < -max_drift => {
                    let since = *self.late_since.get_or_insert(arrived);
                    if arrived.saturating_duration_since(since) < MAX_HELD {
                        return kept;
                    }
                }
                sooner if sooner <= 0 => {
                    self.late_since = None;
                    return kept;
                }
                sooner if sooner <= max_drift => {
                    self.late_since = None;
                    // Still after the newest packet's stamp if it is newer: packets held up
                    // together (a burst) would otherwise all get one timestamp.
                    let after = |(ts, out): (u32, u32)| {
                        let next = out.wrapping_add(1);
                        (timestamp.wrapping_sub(ts) as i32 > 0
                            && next.wrapping_sub(captured) as i32 > 0)
                            .then_some(next)
                    };
                    let stamp = self.newest.and_then(after).unwrap_or(captured);
                    // Never later than the mapping said.
                    let stamp = if (stamp.wrapping_sub(kept) as i32) < 0 {
                        stamp
                    } else {
                        kept
                    };
                    self.mapping = Some((ssrc, stamp.wrapping_sub(timestamp)));
                    return stamp;
                }
                // Much sooner: the source's clock jumped ahead. Mapped again below.
                _ => {}
            }
        }
        self.remapped += self.mapping.is_some() as u64;
        self.mapping = Some((ssrc, captured.wrapping_sub(timestamp)));
        self.late_since = None;
        self.newest = None;
        captured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_up_packets_do_not_make_the_track_late() {
        let t0 = Instant::now();
        let mut c = SourceClock::new(48_000, t0);
        // 20 ms packets: packet k holds the samples captured from 980 + 20k ms after the epoch
        // and can leave at 1000 + 20k ms (lag 960).
        let stamps: Vec<u32> = [1045, 1050, 1055, 1060, 1090, 1250, 1250, 1250, 1260]
            .iter()
            .enumerate()
            .map(|(k, &ms)| {
                let ts = 7_000 + 960 * k as u32;
                c.stamp(t0 + Duration::from_millis(ms), 5, ts, 960)
            })
            .collect();
        // The first packets come held up (45, 30, 15 ms, as when the relay's CPU was busy), the
        // fourth on time, the fifth 10 ms late, then four together after a longer hold (150,
        // 130, 110 ms late: past MAX_DRIFT; 90 ms) and one 80 ms late. Each that came sooner
        // than the mapping said moves it, and from the fourth on the track is stamped when it was
        // captured (48 a millisecond): mapped by the first alone, all of it would play 45 ms
        // late, and mapped again by the sixth, 150 ms.
        let captured: Vec<u32> = (3..9).map(|k| (980 + 20 * k) * 48).collect();
        assert_eq!(stamps[..3], [49_200, 49_440, 49_680]);
        assert_eq!(stamps[3..], captured);
        assert_eq!(c.remapped, 0);
    }

    #[test]
    fn packets_held_up_together_keep_their_order() {
        let t0 = Instant::now();
        let mut c = SourceClock::new(48_000, t0);
        // 20 ms packets (lag 960), packet k able to leave at 1000 + 20k ms: the first five come
        // together at 1080 ms (the first held up 80 ms), the sixth on time at 1100 ms.
        let stamps: Vec<u32> = [1080, 1080, 1080, 1080, 1080, 1100]
            .iter()
            .enumerate()
            .map(|(k, &ms)| {
                let ts = 3_000 + 960 * k as u32;
                c.stamp(t0 + Duration::from_millis(ms), 7, ts, 960)
            })
            .collect();
        // Each of the five came sooner than the one before says, yet each is stamped after it
        // (one tick); the sixth, when it was captured.
        let first = 1080 * 48 - 960;
        assert_eq!(
            stamps,
            [first, first + 1, first + 2, first + 3, first + 4, 1080 * 48]
        );
        assert_eq!(c.remapped, 0);
    }

    #[test]
    fn the_mapping_follows_a_new_source_a_jump_or_lasting_drift() {
        let t0 = Instant::now();
        let mut c = SourceClock::new(48_000, t0);
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(c.stamp(at(0), 5, 777, 0), 0);
        // 90 ms of drift (the source's clock slower): kept.
        assert_eq!(
            (c.stamp(at(1090), 5, 777 + 48_000, 0), c.remapped),
            (48_000, 0)
        );
        // 110 ms: late, perhaps held up; still 110 ms late MAX_HELD later: mapped again to the
        // arrival.
        assert_eq!(
            (c.stamp(at(2110), 5, 777 + 96_000, 0), c.remapped),
            (96_000, 0)
        );
        assert_eq!(
            (c.stamp(at(3110), 5, 777 + 144_000, 0), c.remapped),
            (149_280, 1)
        );
        // A restarted source (another SSRC) is mapped at once.
        assert_eq!((c.stamp(at(3130), 6, 5, 0), c.remapped), (150_240, 2));
        // So is a source whose clock jumped ahead, or back by more than MAX_HELD.
        assert_eq!(
            (c.stamp(at(3150), 6, 5 + 48_000, 0), c.remapped),
            (151_200, 3)
        );
        assert_eq!((c.stamp(at(3170), 6, 5, 0), c.remapped), (152_160, 4));
        // After a reset the next packet is stamped with its arrival, not counted.
        c.reset();
        assert_eq!((c.stamp(at(4000), 6, 99_999, 0), c.remapped), (192_000, 4));
        // Timestamps wrap on both clocks.
        assert_eq!(c.stamp(at(4020), 6, 99_999 + 960, 0), 192_960);
        let mut w = SourceClock::new(90_000, t0);
        assert_eq!(w.stamp(at(1000), 1, u32::MAX - 10, 0), 90_000);
        let later = (u32::MAX - 10).wrapping_add(3_000);
        assert_eq!(w.stamp(at(1034), 1, later, 0), 93_000);
        assert_eq!(w.remapped, 0);
    }
}
