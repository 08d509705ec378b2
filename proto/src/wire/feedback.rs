//! Control packets: END and ACK from the sender, STATUS and NEED from receivers.

use super::{ParseError, Reader};
use bytes::BufMut;

/// Longest receiver name carried in STATUS (bytes of UTF-8).
pub const MAX_RECEIVER_NAME: usize = 64;
/// Most entries one NEED may carry; keeps it inside one datagram.
pub const MAX_NEED_ENTRIES: usize = 128;

/// END (0x03): the sender is leaving the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub reason: EndReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EndReason {
    /// Every receiver the sender knew of has the file (or was dropped).
    Complete = 0,
    /// The operator stopped the sender.
    Aborted = 1,
}

impl End {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let reason = match r.u8()? {
            0 => EndReason::Complete,
            1 => EndReason::Aborted,
            _ => return Err(ParseError::Invalid("end reason")),
        };
        Ok(End { reason })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        out.put_u8(self.reason as u8);
    }
}

/// ACK (0x04): unicast to a receiver whose STATUS said done or failed, so it may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub receiver: u32,
}

impl Ack {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        Ok(Ack { receiver: r.u32()? })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        out.put_u32(self.receiver);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReceiverState {
    /// Just joined: the hello.
    Hello = 0,
    Receiving = 1,
    /// Has the whole file, MD5 verified.
    Done = 2,
    /// Gave up (MD5 mismatch, disk full, ...).
    Failed = 3,
}

/// STATUS (0x10): a receiver's hello, progress and final word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Random id the receiver picked for itself; the sender keys receivers by it.
    pub receiver: u32,
    pub state: ReceiverState,
    pub blocks_done: u32,
    /// Host name, for the sender's display.
    pub name: String,
}

impl Status {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let receiver = r.u32()?;
        let state = match r.u8()? {
            0 => ReceiverState::Hello,
            1 => ReceiverState::Receiving,
            2 => ReceiverState::Done,
            3 => ReceiverState::Failed,
            _ => return Err(ParseError::Invalid("receiver state")),
        };
        let blocks_done = r.u32()?;
        let len = r.u8()? as usize;
        let name = r.text(len, MAX_RECEIVER_NAME, "receiver name")?;
        Ok(Status {
            receiver,
            state,
            blocks_done,
            name,
        })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        out.put_u32(self.receiver);
        out.put_u8(self.state as u8);
        out.put_u32(self.blocks_done);
        let name = truncate_utf8(&self.name, MAX_RECEIVER_NAME);
        out.put_u8(name.len() as u8);
        out.put_slice(name.as_bytes());
    }
}

/// One block a receiver still lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedEntry {
    pub block: u32,
    /// Symbols it still needs before it can decode.
    pub need: u16,
    /// One past the highest ESI it has seen of this block: tells the sender which of its symbols
    /// were still in flight when the report was made.
    pub seen: u32,
}

/// NEED (0x11): blocks a receiver lacks, lowest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub receiver: u32,
    pub entries: Vec<NeedEntry>,
}

impl Need {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let receiver = r.u32()?;
        let count = r.u16()? as usize;
        if count == 0 || count > MAX_NEED_ENTRIES {
            return Err(ParseError::Invalid("need entry count"));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(NeedEntry {
                block: r.u32()?,
                need: r.u16()?,
                seen: r.u32()?,
            });
        }
        Ok(Need { receiver, entries })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        let entries = &self.entries[..self.entries.len().min(MAX_NEED_ENTRIES)];
        out.put_u32(self.receiver);
        out.put_u16(entries.len() as u16);
        for e in entries {
            out.put_u32(e.block);
            out.put_u16(e.need);
            out.put_u32(e.seen);
        }
    }
}

/// The longest prefix of `s` within `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
