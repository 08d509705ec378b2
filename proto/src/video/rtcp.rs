//! RTCP sender reports (RFC 3550 section 6.4.1): the relay sends one per stream every second, so
//! that a player maps the video's and the audio's RTP timestamps to one wall clock and plays them
//! in sync (lip sync); `watch` checks them and forwards them to the player's RTCP port.

use crate::wire::{MAX_DATAGRAM, ParseError, Reader};
use bytes::BufMut;
use std::time::Duration;

/// RTCP packet type of a sender report.
pub const SENDER_REPORT: u8 = 200;
/// Bytes of a sender report without report blocks, as the relay writes it.
pub const SENDER_REPORT_LEN: usize = 28;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A sender report's sender info: at wall-clock time `ntp`, the stream's RTP clock read
/// `rtp_time`, and so much had been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// NTP timestamp: seconds since 1900 in the high 32 bits, the fraction in the low 32.
    pub ntp: u64,
    /// The stream's RTP timestamp at `ntp`.
    pub rtp_time: u32,
    /// RTP packets sent so far (mod 2^32).
    pub packets: u32,
    /// RTP payload bytes sent so far (mod 2^32).
    pub octets: u32,
}

/// The NTP timestamp of a wall-clock time given as time since the Unix epoch.
pub fn ntp_time(since_unix: Duration) -> u64 {
    let secs = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

impl SenderReport {
    /// Parses the first packet of an RTCP datagram, which must be a sender report (RFC 3550
    /// section 6.1: a compound packet starts with SR or RR); report blocks and whatever follows
    /// it are not read. Longer than `MAX_DATAGRAM`, another version, another type or a length
    /// past the datagram: refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(ParseError::Invalid("RTCP datagram length"));
        }
        let mut r = Reader::new(bytes);
        let b0 = r.u8()?;
        if b0 >> 6 != 2 {
            return Err(ParseError::Version(b0 >> 6));
        }
        if r.u8()? != SENDER_REPORT {
            return Err(ParseError::Invalid("not a sender report"));
        }
        let words = r.u16()? as usize;
        let blocks = (b0 & 0x1F) as usize;
        if (words + 1) * 4 > bytes.len() || words < 6 + 6 * blocks {
            return Err(ParseError::Invalid("RTCP length"));
        }
        Ok(SenderReport {
            ssrc: r.u32()?,
            ntp: r.u64()?,
            rtp_time: r.u32()?,
            packets: r.u32()?,
            octets: r.u32()?,
        })
    }

    /// Writes the 28-byte report: version 2, no padding, no report blocks.
    pub fn write(&self, out: &mut impl BufMut) {
        out.put_u8(0x80);
        out.put_u8(SENDER_REPORT);
        out.put_u16((SENDER_REPORT_LEN / 4 - 1) as u16);
        out.put_u32(self.ssrc);
        out.put_u64(self.ntp);
        out.put_u32(self.rtp_time);
        out.put_u32(self.packets);
        out.put_u32(self.octets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_rfc_3550_lays_it_out() {
        let sr = SenderReport {
            ssrc: 0x0102_0304,
            ntp: 0xE000_0000_8000_0000,
            rtp_time: 90_000,
            packets: 7,
            octets: 1400,
        };
        let mut v = Vec::new();
        sr.write(&mut v);
        assert_eq!(v.len(), SENDER_REPORT_LEN);
        assert_eq!(&v[..4], [0x80, 200, 0, 6]);
        assert_eq!(&v[4..8], [1, 2, 3, 4]);
        assert_eq!(&v[16..20], 90_000u32.to_be_bytes());
        assert_eq!(SenderReport::parse(&v), Ok(sr));
        // A compound packet (an SDES after it) parses to its SR.
        v.extend_from_slice(&[0x81, 202, 0, 1, 1, 2, 3, 4]);
        assert_eq!(SenderReport::parse(&v), Ok(sr));
    }

    #[test]
    fn other_packets_and_bad_lengths_are_refused() {
        let mut v = Vec::new();
        SenderReport {
            ssrc: 1,
            ntp: 2,
            rtp_time: 3,
            packets: 4,
            octets: 5,
        }
        .write(&mut v);
        for cut in 0..v.len() {
            assert!(SenderReport::parse(&v[..cut]).is_err(), "cut at {cut}");
        }
        let with = |i: usize, b: u8| {
            let mut w = v.clone();
            w[i] = b;
            SenderReport::parse(&w)
        };
        assert!(with(1, 201).is_err(), "a receiver report");
        assert!(with(0, 0x40).is_err(), "version 1");
        assert!(with(0, 0x81).is_err(), "a report block that is not there");
        assert!(with(3, 5).is_err(), "shorter than a sender report");
        assert!(with(3, 7).is_err(), "longer than the datagram");
        assert!(SenderReport::parse(&[0x80; 2000]).is_err());
    }

    #[test]
    fn ntp_time_counts_from_1900() {
        assert_eq!(ntp_time(Duration::ZERO), NTP_UNIX_OFFSET << 32);
        assert_eq!(
            ntp_time(Duration::from_millis(1500)),
            ((NTP_UNIX_OFFSET + 1) << 32) | 0x8000_0000
        );
    }
}
