//! A fuzz input for a state machine is a script: a run of steps, each `op | advance | len (u16, big
//! endian) | body`. `op` picks what happens (reduced modulo the target's number of ops), `advance`
//! moves the fake clock first, `body` is a datagram or the fields of a structured op (read with
//! `arbitrary`). A truncated last step takes what is left. The format is this simple so that the
//! seed generator can write real sessions as scripts, and the fuzzer can splice and reorder them.

use arbitrary::{Arbitrary, Unstructured};
use std::net::SocketAddr;
use std::time::Duration;

/// One step of a script.
pub struct Step<'a> {
    /// The op byte, not yet reduced.
    pub op: u8,
    /// How far the clock moves before the step.
    pub advance: Duration,
    /// The step's datagram or fields.
    pub body: &'a [u8],
}

impl<'a> Step<'a> {
    /// The body's first two bytes, big-endian: which datagram of a recording to replay. (Read
    /// by hand, not with `arbitrary`, so that the seed generator writes it without knowing how
    /// `arbitrary` reads integers.)
    pub fn index(&self) -> usize {
        match self.body {
            [] => 0,
            [a] => *a as usize,
            [a, b, ..] => u16::from_be_bytes([*a, *b]) as usize,
        }
    }

    /// The body read as a structured op's fields; missing bytes read as zeros.
    pub fn fields<T: Arbitrary<'a> + Default>(&self) -> T {
        T::arbitrary_take_rest(Unstructured::new(self.body)).unwrap_or_default()
    }
}

/// The steps of `data`.
pub fn steps(mut data: &[u8]) -> impl Iterator<Item = Step<'_>> {
    std::iter::from_fn(move || {
        let (&[op, advance], rest) = data.split_first_chunk::<2>()?;
        let (len, rest) = match rest.split_first_chunk::<2>() {
            Some((len, rest)) => (u16::from_be_bytes(*len) as usize, rest),
            None => (0, &[][..]),
        };
        let (body, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some(Step {
            op,
            advance: advance_of(advance),
            body,
        })
    })
}

/// `code`² half-milliseconds: fine steps near 0 (a burst of datagrams), up to 32.5 s (past every
/// timeout the state machines have) at 255.
pub fn advance_of(code: u8) -> Duration {
    Duration::from_micros(code as u64 * code as u64 * 500)
}

/// The code whose advance is nearest `dt` (for the seed generator).
pub fn code_of(dt: Duration) -> u8 {
    let half_ms = dt.as_micros() as f64 / 500.0;
    half_ms.sqrt().round().min(255.0) as u8
}

/// Appends one step.
pub fn push(out: &mut Vec<u8>, op: u8, advance: u8, body: &[u8]) {
    let len = body.len().min(u16::MAX as usize);
    out.extend_from_slice(&[op, advance]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&body[..len]);
}

/// The addresses a script's datagrams come from: a few, so that "the same peer again" is likely.
pub fn addr(i: u8) -> SocketAddr {
    match i % 6 {
        0 => "10.0.0.1:5000",
        1 => "10.0.1.1:6000",
        2 => "10.0.1.2:6000",
        3 => "10.0.1.1:6001",
        4 => "192.168.7.9:40000",
        _ => "[fd00::7]:5000",
    }
    .parse()
    .expect("a literal address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_and_truncation_is_taken() {
        let mut s = Vec::new();
        push(&mut s, 3, 10, b"abc");
        push(&mut s, 250, 0, b"");
        s.extend_from_slice(&[7, 1, 0, 9, b'x']);
        let got: Vec<(u8, Duration, &[u8])> =
            steps(&s).map(|s| (s.op, s.advance, s.body)).collect();
        assert_eq!(
            got,
            [
                (3, advance_of(10), &b"abc"[..]),
                (250, Duration::ZERO, &b""[..]),
                (7, advance_of(1), &b"x"[..]),
            ]
        );
        assert_eq!(code_of(advance_of(37)), 37);
    }
}
