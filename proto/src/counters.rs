//! Counts of datagrams dropped, by reason: nothing from the network is dropped silently.

use crate::auth::Rejected;
use crate::wire::ParseError;

/// Datagrams (or, for symbols, DATA packets) a state machine dropped, by why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Not edm-cast at all (bad magic).
    pub foreign: u64,
    /// Another protocol version.
    pub version: u64,
    /// Truncated, unknown type, or a field out of its range.
    pub malformed: u64,
    /// A session other than ours.
    pub other_session: u64,
    /// A valid packet of a type this side does not take.
    pub unexpected: u64,
    /// Names a block, ESI or size that does not fit the session; or, in a viewer's REQUEST, FEC
    /// figures that went backwards or grew past what its channel sent.
    pub out_of_range: u64,
    /// A symbol we already had, or for a block already decoded.
    pub duplicate: u64,
    /// From an address other than the session's sender (or a receiver's own).
    pub wrong_source: u64,
    /// Unsigned where a signature is required.
    pub unsigned: u64,
    /// Signed by a key not trusted, or not the session's.
    pub unknown_key: u64,
    /// A signature that does not verify, a sealed symbol whose tag does not, or a symbol whose
    /// hash is not the one the sender published: forged or damaged.
    pub forged: u64,
    /// Signed too far from this PC's clock: replayed, or a clock that is wrong.
    pub stale: u64,
    /// A symbol of a block being collected symbol by symbol whose hash has not come.
    pub unverified: u64,
    /// From a receiver the sender does not know (it never said hello), or one it refused.
    pub unknown_receiver: u64,
    /// Over a table's or a queue's bounds (receivers in all or per address; answers queued).
    pub refused: u64,
    /// Over its sender's rate bound.
    pub rate_limited: u64,
}

impl Counters {
    /// Counts a datagram that did not parse.
    pub fn parse_error(&mut self, e: ParseError) {
        match e {
            ParseError::Foreign => self.foreign += 1,
            ParseError::Version(_) => self.version += 1,
            ParseError::UnknownType(_) | ParseError::Truncated | ParseError::Invalid(_) => {
                self.malformed += 1
            }
        }
    }

    /// Counts a datagram whose signature was not accepted.
    pub fn rejected(&mut self, r: Rejected) {
        match r {
            Rejected::Unsigned => self.unsigned += 1,
            Rejected::UnknownKey => self.unknown_key += 1,
            Rejected::BadSignature => self.forged += 1,
            Rejected::Stale => self.stale += 1,
        }
    }

    /// Every count with its name (as in the spec and the metrics' `reason` label).
    pub fn by_reason(&self) -> [(&'static str, u64); 16] {
        [
            ("foreign", self.foreign),
            ("version", self.version),
            ("malformed", self.malformed),
            ("other_session", self.other_session),
            ("unexpected", self.unexpected),
            ("out_of_range", self.out_of_range),
            ("duplicate", self.duplicate),
            ("wrong_source", self.wrong_source),
            ("unsigned", self.unsigned),
            ("unknown_key", self.unknown_key),
            ("forged", self.forged),
            ("stale", self.stale),
            ("unverified", self.unverified),
            ("unknown_receiver", self.unknown_receiver),
            ("refused", self.refused),
            ("rate_limited", self.rate_limited),
        ]
    }

    /// Everything dropped.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|(_, n)| n).sum()
    }
}
