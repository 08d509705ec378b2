//! Counts of datagrams dropped, by reason: nothing from the network is dropped silently.

use crate::wire::ParseError;

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
    /// Names a block, ESI or size that does not fit the session.
    pub out_of_range: u64,
    /// A symbol we already had, or for a block already decoded.
    pub duplicate: u64,
}

impl Counters {
    pub fn parse_error(&mut self, e: ParseError) {
        match e {
            ParseError::Foreign => self.foreign += 1,
            ParseError::Version(_) => self.version += 1,
            ParseError::UnknownType(_) | ParseError::Truncated | ParseError::Invalid(_) => {
                self.malformed += 1
            }
        }
    }

    /// Everything dropped.
    pub fn total(&self) -> u64 {
        self.foreign
            + self.version
            + self.malformed
            + self.other_session
            + self.unexpected
            + self.out_of_range
            + self.duplicate
    }
}
