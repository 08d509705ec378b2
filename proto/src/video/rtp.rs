//! RTP fixed header (RFC 3550 section 5.1): what the relay writes and what the viewer and the RTP
//! ingest read. CSRCs, header extensions and padding are accepted on input and skipped.

use crate::wire::{ParseError, Reader};
use bytes::BufMut;

/// Bytes of the fixed header the relay writes (no CSRC, no extension).
pub const HEADER_LEN: usize = 12;
/// The dynamic payload type the relay uses for H.264 (announced in the SDP).
pub const PAYLOAD_TYPE_H264: u8 = 96;
/// H.264's RTP clock rate (RFC 6184 section 8.2.1).
pub const CLOCK_RATE: u32 = 90_000;

/// The fields of an RTP header that edm-cast reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// For H.264, set on the last packet of an access unit (RFC 6184 section 5.1).
    pub marker: bool,
    /// 7 bits; `PAYLOAD_TYPE_H264` on what the relay sends.
    pub payload_type: u8,
    /// Sequence number, one more per packet (mod 2^16).
    pub seq: u16,
    /// Sampling time, in `CLOCK_RATE` units.
    pub timestamp: u32,
    /// The stream's source id.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Parses a whole RTP packet: the header and a borrowed payload (padding removed).
    pub fn parse(bytes: &[u8]) -> Result<(RtpHeader, &[u8]), ParseError> {
        let mut r = Reader::new(bytes);
        let b0 = r.u8()?;
        if b0 >> 6 != 2 {
            return Err(ParseError::Version(b0 >> 6));
        }
        let b1 = r.u8()?;
        let header = RtpHeader {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7F,
            seq: r.u16()?,
            timestamp: r.u32()?,
            ssrc: r.u32()?,
        };
        r.bytes(4 * (b0 & 0x0F) as usize)?;
        if b0 & 0x10 != 0 {
            let _profile = r.u16()?;
            let words = r.u16()? as usize;
            r.bytes(4 * words)?;
        }
        let mut payload = r.rest();
        if b0 & 0x20 != 0 {
            let pad = *payload.last().ok_or(ParseError::Truncated)? as usize;
            if pad == 0 || pad > payload.len() {
                return Err(ParseError::Invalid("RTP padding"));
            }
            payload = &payload[..payload.len() - pad];
        }
        Ok((header, payload))
    }

    /// Writes the 12-byte fixed header: version 2, no padding, extension or CSRC.
    pub fn write(&self, out: &mut impl BufMut) {
        out.put_u8(0x80);
        out.put_u8((self.marker as u8) << 7 | (self.payload_type & 0x7F));
        out.put_u16(self.seq);
        out.put_u32(self.timestamp);
        out.put_u32(self.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_skips_csrc_extension_padding() {
        let h = RtpHeader {
            marker: true,
            payload_type: 96,
            seq: 65535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 7,
        };
        let mut v = Vec::new();
        h.write(&mut v);
        v.extend_from_slice(b"nal");
        assert_eq!(RtpHeader::parse(&v).unwrap(), (h, &b"nal"[..]));

        // One CSRC, a one-word extension, two bytes of padding.
        let mut v = vec![0x80 | 0x20 | 0x10 | 1, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        v.extend_from_slice(&[9, 9, 9, 9]); // CSRC
        v.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension
        v.extend_from_slice(b"xy");
        v.extend_from_slice(&[0, 2]); // padding
        let (h, p) = RtpHeader::parse(&v).unwrap();
        assert_eq!((h.seq, h.timestamp, h.ssrc, p), (1, 2, 3, &b"xy"[..]));
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert!(RtpHeader::parse(&[]).is_err());
        assert!(RtpHeader::parse(&[0x40; 12]).is_err()); // version 1
        assert!(RtpHeader::parse(&[0x80, 96, 0, 1, 0, 0]).is_err());
        assert!(RtpHeader::parse(&[0x8F, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]).is_err()); // 15 CSRCs
        let pad_too_big = [0xA0, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 9];
        assert!(RtpHeader::parse(&pad_too_big).is_err());
    }
}
