//! Control packets: END and ACK from the sender (signed when it has a key), STATUS and NEED from
//! receivers (never signed: a receiver has nothing to prove, and the sender bounds what it takes).

use super::{ParseError, Reader};
use bytes::BufMut;

/// Longest receiver name carried in STATUS (bytes of UTF-8).
pub const MAX_RECEIVER_NAME: usize = 64;
/// Most entries one NEED may carry; keeps it inside one datagram.
pub const MAX_NEED_ENTRIES: usize = 128;

/// END (0x03): the sender is leaving the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// Why.
    pub reason: EndReason,
}

/// Why a session ended.
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
    /// The receiver's id.
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

/// Where a receiver is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReceiverState {
    /// Just joined: the hello.
    Hello = 0,
    /// Collecting blocks.
    Receiving = 1,
    /// Has the whole file, verified.
    Done = 2,
    /// Gave up; the reason says why.
    Failed = 3,
}

/// Why a receiver gave up, as its final STATUS tells the sender (shown on the teacher's screen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FailReason {
    /// Not failed, or no reason given.
    None = 0,
    /// Its user pressed Ctrl-C or stopped it.
    Interrupted = 1,
    /// Its disk is full.
    DiskFull = 2,
    /// It cannot write its output folder.
    CannotWrite = 3,
    /// The whole file did not match the announced digests.
    DigestMismatch = 4,
    /// The file is larger than the receiver takes (`--max-size`, free space).
    TooLarge = 5,
    /// The sender went silent.
    SenderGone = 6,
    /// Any other error.
    Other = 7,
}

impl FailReason {
    fn from_u8(v: u8) -> Result<Self, ParseError> {
        Ok(match v {
            0 => Self::None,
            1 => Self::Interrupted,
            2 => Self::DiskFull,
            3 => Self::CannotWrite,
            4 => Self::DigestMismatch,
            5 => Self::TooLarge,
            6 => Self::SenderGone,
            7 => Self::Other,
            _ => return Err(ParseError::Invalid("fail reason")),
        })
    }
}

/// STATUS (0x10): a receiver's hello, progress and final word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Random id the receiver picked for itself; the sender keys receivers by it.
    pub receiver: u32,
    /// Where it is.
    pub state: ReceiverState,
    /// Why it failed (`FailReason::None` unless `state` is `Failed`).
    pub reason: FailReason,
    /// Blocks it has decoded.
    pub blocks_done: u32,
    /// Host name, for the sender's display.
    pub name: String,
    /// The echo of the sender's last PACE, once one came (an optional last field: a receiver
    /// sends it only to a sender that sends PACE, so older senders never see it).
    pub echo: Option<PaceEcho>,
}

/// PACE (0x08): the sender's clock and count of DATA sent, multicast every 100 ms while
/// congestion control is on. Receivers echo it in STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Microseconds on the sender's clock (from its own start; only differences count).
    pub time_us: u64,
    /// DATA datagrams sent in this session so far.
    pub sent: u64,
}

impl Pace {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        Ok(Pace {
            time_us: r.u64()?,
            sent: r.u64()?,
        })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        out.put_u64(self.time_us);
        out.put_u64(self.sent);
    }
}

/// What a STATUS echoes of the last PACE: its two fields, how long the receiver held it, and how
/// many DATA the receiver had received when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceEcho {
    /// The PACE's `time_us`.
    pub time_us: u64,
    /// The PACE's `sent`.
    pub sent: u64,
    /// DATA of this session received up to the PACE's arrival.
    pub received: u64,
    /// Microseconds from the PACE's arrival to this STATUS.
    pub held_us: u32,
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
        let reason = FailReason::from_u8(r.u8()?)?;
        if (reason != FailReason::None) != (state == ReceiverState::Failed) {
            return Err(ParseError::Invalid("fail reason"));
        }
        let blocks_done = r.u32()?;
        let len = r.u8()? as usize;
        let name = r.text(len, MAX_RECEIVER_NAME, "receiver name")?;
        let echo = if r.remaining() > 0 {
            Some(PaceEcho {
                time_us: r.u64()?,
                sent: r.u64()?,
                received: r.u64()?,
                held_us: r.u32()?,
            })
        } else {
            None
        };
        Ok(Status {
            receiver,
            state,
            reason,
            blocks_done,
            name,
            echo,
        })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        out.put_u32(self.receiver);
        out.put_u8(self.state as u8);
        out.put_u8(self.reason as u8);
        out.put_u32(self.blocks_done);
        let name = truncate_utf8(&self.name, MAX_RECEIVER_NAME);
        out.put_u8(name.len() as u8);
        out.put_slice(name.as_bytes());
        if let Some(e) = &self.echo {
            out.put_u64(e.time_us);
            out.put_u64(e.sent);
            out.put_u64(e.received);
            out.put_u32(e.held_us);
        }
    }
}

/// What else a NEED entry says about its block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeedFlags {
    /// The receiver lacks the block's digest: send DIGESTS for it.
    pub no_digest: bool,
    /// The block failed its digest and its symbols were thrown away: send repair for it with
    /// HASHES first, and count none of it as in flight.
    pub verify: bool,
}

const NO_DIGEST: u8 = 0x01;
const VERIFY: u8 = 0x02;

/// One block a receiver still lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedEntry {
    /// The block.
    pub block: u32,
    /// Symbols it still needs before it can decode.
    pub need: u16,
    /// One past the highest ESI it has seen of this block: tells the sender which of its symbols
    /// were still in flight when the report was made.
    pub seen: u32,
    /// Digest and verification requests.
    pub flags: NeedFlags,
}

/// NEED (0x11): blocks a receiver lacks, lowest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The receiver's id.
    pub receiver: u32,
    /// At least one, at most `MAX_NEED_ENTRIES`.
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
            let (block, need, seen, flags) = (r.u32()?, r.u16()?, r.u32()?, r.u8()?);
            if flags & !(NO_DIGEST | VERIFY) != 0 {
                return Err(ParseError::Invalid("need flags"));
            }
            entries.push(NeedEntry {
                block,
                need,
                seen,
                flags: NeedFlags {
                    no_digest: flags & NO_DIGEST != 0,
                    verify: flags & VERIFY != 0,
                },
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
            let bit = |b: bool, f: u8| if b { f } else { 0 };
            out.put_u8(bit(e.flags.no_digest, NO_DIGEST) | bit(e.flags.verify, VERIFY));
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
