//! How many symbols of each block the first pass sends (PROTOCOL.md 5.10): enough that, at the
//! class's loss, every followed receiver most likely decodes the block without a repair round.
//!
//! A receiver decodes a block from K + 1 of its symbols (6.4). Of F symbols sent, a receiver that
//! loses each one independently with probability p gets Binomial(F, 1 − p) of them, so it lacks
//! some with probability P(Binomial(F, p) ≥ F − K), and at least one of the class does with
//! 1 − Π(1 − that), over its receivers, each at its own loss (1 − (1 − that)^N for N receivers at
//! the same loss). `first_pass_symbols` is the least F that keeps this at or below a target.
//! The fountain minimum, what a sender told at once of every loss would send, is the expected
//! largest of the N receivers' needs: it lies a few symbols below (the table in 5.10).

/// How the first pass is sized (`SenderConfig::fec`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fec {
    /// F_b = K_b + ⌈K_b · proactive⌉ whatever receivers report (`send --fec-repair PERCENT`).
    Fixed,
    /// From the loss the followed receivers report, taken at most as `max_loss` (`send
    /// --fec-loss-max`), and never fewer symbols than `Fixed` sends.
    Adaptive {
        /// The most loss a first pass is sized for: one receiver's word costs the class at most
        /// this (0 to 0.5).
        max_loss: f64,
    },
}

impl Default for Fec {
    fn default() -> Self {
        Fec::Adaptive {
            max_loss: MAX_DESIGN_LOSS,
        }
    }
}

/// `Fec::Adaptive`'s default cap, as live video's (`video --fec-loss-max`): a receiver claiming to
/// lose everything it is sent makes the first pass at most about 23% repair (K = 1024).
pub const MAX_DESIGN_LOSS: f64 = 0.15;

/// The highest cap accepted: beyond it a first pass is more repair than source.
pub const MAX_LOSS_CAP: f64 = 0.5;

/// The share of blocks (before the last W) that may need a repair round: that repair goes out
/// while later blocks are sent, so it costs a NEED and a few bytes, no time,
/// and at this share the bytes are as few as with any other (5.10's table).
pub const WINDOW_MISS: f64 = 0.25;

/// The same for the last W blocks: their repair is the session's tail, a NEED round
/// trip and a burst after the first pass.
pub const LAST_WINDOW_MISS: f64 = 0.001;

/// The fewest symbols F ≥ k + 1 such that, of receivers losing every symbol with the probabilities
/// in `losses` (one each), at least one gets fewer than k + 1 with probability at most `miss`.
pub fn first_pass_symbols(k: u32, losses: &[f64], miss: f64) -> u32 {
    let fails = |f: u32| class_misses(f, k, losses) > miss;
    // Exponential then binary search: the chance falls as F grows.
    let (mut lo, mut step) = (k + 1, 1u32);
    if !fails(lo) {
        return lo;
    }
    let mut hi = lo;
    while fails(hi) {
        lo = hi;
        step = step.saturating_mul(2);
        hi = hi.saturating_add(step);
        if hi >= u32::MAX / 2 {
            return hi;
        }
    }
    // fails(lo), !fails(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fails(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The chance that at least one of the receivers losing `losses` gets fewer than k + 1 of f
/// symbols.
fn class_misses(f: u32, k: u32, losses: &[f64]) -> f64 {
    if f <= k {
        return 1.0;
    }
    // ln C(f, f − k), the same for every receiver: summed once (a thousand receivers of a block
    // of 8192 would otherwise each sum thousands of logarithms).
    let m = f - k;
    let ln_choose: f64 = (1..=m).map(|i| ((k + i) as f64 / i as f64).ln()).sum();
    let all = losses
        .iter()
        .map(|&p| 1.0 - lacks(f, k, p, ln_choose))
        .product::<f64>();
    1.0 - all
}

/// P(Binomial(f, p) ≥ f − k): a receiver losing each symbol with probability p gets fewer than
/// k + 1 of f (`ln_choose` is ln C(f, f − k)). Summed over the smaller side of the distribution,
/// whose terms fall away from the mean, so a term that underflows is one that does not count.
fn lacks(f: u32, k: u32, p: f64, ln_choose: f64) -> f64 {
    if f <= k {
        return 1.0;
    }
    let m = f - k;
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (f64f, odds) = (f as f64, p / (1.0 - p));
    // ln of P(Binomial(f, p) = j), for j = m or m − 1: C(f, m − 1) = C(f, m) · m / (f − m + 1).
    let ln_pmf = |j: u32| {
        let ln_c = if j == m {
            ln_choose
        } else {
            ln_choose + (m as f64 / (f - m + 1) as f64).ln()
        };
        ln_c + j as f64 * p.ln() + (f - j) as f64 * (1.0 - p).ln()
    };
    if m as f64 > f64f * p {
        // Above the mean: the upper tail from m.
        let (mut term, mut sum) = (ln_pmf(m).exp(), 0.0);
        for j in m..=f {
            sum += term;
            if term <= sum * 1e-16 {
                break;
            }
            term *= (f - j) as f64 / (j + 1) as f64 * odds;
        }
        sum.min(1.0)
    } else {
        // At or below it: one less the lower tail up to m − 1.
        let mut below = 0.0;
        if m > 0 {
            let mut term = ln_pmf(m - 1).exp();
            for j in (0..m).rev() {
                below += term;
                if term <= below * 1e-16 {
                    break;
                }
                term *= j as f64 / (f - j + 1) as f64 / odds;
            }
        }
        (1.0 - below).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures of PROTOCOL.md 5.10's table (K = 1024), found there with an independent
    /// summation (Python's lgamma).
    #[test]
    fn the_first_pass_sizes_match_the_spec_table() {
        let cases = [
            // (loss, receivers, miss, F)
            (0.001, 1, 0.1, 1027),
            (0.001, 30, LAST_WINDOW_MISS, 1032),
            (0.01, 1, 0.1, 1040),
            (0.01, 8, WINDOW_MISS, 1042),
            (0.01, 8, LAST_WINDOW_MISS, 1049),
            (0.05, 1, 0.1, 1089),
            (0.05, 8, WINDOW_MISS, 1093),
            (0.05, 8, 0.1, 1096),
            (0.05, 8, 0.01, 1103),
            (0.05, 8, LAST_WINDOW_MISS, 1109),
            (0.05, 30, 0.1, 1100),
            (0.10, 8, 0.1, 1165),
            (0.10, 30, LAST_WINDOW_MISS, 1187),
            (0.15, 30, LAST_WINDOW_MISS, 1267),
        ];
        for (loss, n, miss, want) in cases {
            assert_eq!(
                first_pass_symbols(1024, &vec![loss; n], miss),
                want,
                "p {loss}, N {n}, miss {miss}"
            );
        }
    }

    #[test]
    fn no_loss_needs_k_plus_one_and_the_edges_hold() {
        assert_eq!(first_pass_symbols(1024, &[0.0; 30], LAST_WINDOW_MISS), 1025);
        assert_eq!(first_pass_symbols(1, &[0.0], WINDOW_MISS), 2);
        // Nobody to size for: K + 1.
        assert_eq!(first_pass_symbols(1024, &[], WINDOW_MISS), 1025);
        // One receiver at 5% among seven at 1% needs less than eight at 5%, more than one alone.
        let mixed = [0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.05];
        let f = first_pass_symbols(1024, &mixed, WINDOW_MISS);
        assert!(f >= first_pass_symbols(1024, &[0.05], WINDOW_MISS), "{f}");
        assert!(f < first_pass_symbols(1024, &[0.05; 8], WINDOW_MISS), "{f}");
        // One claiming 60%, taken at the cap, among seven at 1% (5.10's figures).
        let liar = [0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, MAX_DESIGN_LOSS];
        assert_eq!(first_pass_symbols(1024, &liar, WINDOW_MISS), 1216);
        assert_eq!(first_pass_symbols(1024, &liar, LAST_WINDOW_MISS), 1253);
        // Half lost, a big block: about twice K, found without overflow.
        let f = first_pass_symbols(8192, &[0.5; 1000], LAST_WINDOW_MISS);
        assert!((16_384..17_500).contains(&f), "{f}");
        assert_eq!(class_misses(1024, 1024, &[0.01]), 1.0);
        assert!((class_misses(2049, 1024, &[0.5]) - 0.5).abs() < 0.02);
    }
}
