//! Bounds on what the network may make a state machine do: a token bucket per source, so a flood
//! from one address is counted and ignored instead of taking the sender's (or relay's, or server's)
//! time, while honest peers, which send a few datagrams a second, never meet the bound.

use std::time::Instant;

/// A token bucket (RFC 2697's idea): `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(now: Instant, rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Whether the bucket has refilled: forgetting it would change nothing.
    pub fn is_full(&self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * self.rate >= self.burst
    }

    /// Takes one token if there is one: false means "over the bound, ignore this".
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_lets_its_rate_through_and_no_more() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0, 10.0, 5.0);
        // The burst at once, then nothing until time passes.
        assert_eq!((0..20).filter(|_| b.take(t0)).count(), 5);
        // A second later: ten more, capped at the burst.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| b.take(t1)).count(), 5);
        // Over ten seconds, at most rate × time + burst.
        let mut n = 0;
        for ms in (0..10_000).step_by(10) {
            n += b.take(t1 + Duration::from_millis(ms)) as u32;
        }
        assert!((99..=106).contains(&n), "{n}");
        // A clock that goes back does not mint tokens.
        assert!(!b.take(t0) || !b.take(t0));
    }
}
