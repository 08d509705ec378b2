//! SAP (RFC 2974) packets announcing a channel's SDP, so players that know nothing of edm-cast
//! (VLC's SAP discovery) list it. Only what a relay sends: version 1, IPv4
//! originating source, no authentication, no encryption, no compression, payload type
//! `application/sdp`. The header (RFC 2974 section 3):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | V=1 |A|R|T|E|C|   auth len    |         msg id hash           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                originating source (32 bits for IPv4)          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  optional payload type ("application/sdp" NUL)                |
//! |  payload (the SDP)                                            |
//! ```
//!
//! A = 0 (IPv4), R = 0, T = 0 announcement / 1 deletion, E = 0, C = 0, auth len = 0.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The group and port of SAP's global-scope IPv4 announcements (RFC 2974 section 3), where SAP
/// listeners such as VLC's listen by default.
pub const SAP_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 2, 127, 254), 9875);

/// The payload type string (RFC 2974 section 3), NUL-terminated on the wire.
pub const PAYLOAD_TYPE: &str = "application/sdp";

/// Bytes before the payload type: the 4-byte fixed part and the IPv4 originating source.
const FIXED: usize = 8;

/// Announcement or deletion (the T bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The session exists (T = 0).
    Announce,
    /// The session is gone (T = 1).
    Delete,
}

/// A parsed SAP packet as this module writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Announcement or deletion.
    pub kind: Kind,
    /// Changes whenever the SDP does.
    pub msg_id_hash: u16,
    /// Who announces (the relay's address).
    pub origin: Ipv4Addr,
    /// The payload.
    pub sdp: &'a str,
}

/// The message id hash: must change when the SDP changes (RFC 2974 section 5), so a 16-bit
/// FNV-1a folding of the SDP text. Not a security measure, only a change marker.
pub fn msg_id_hash(sdp: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in sdp.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    ((h >> 16) ^ (h & 0xffff)) as u16
}

/// One SAP packet carrying `sdp`, announced (or deleted) by `origin`.
pub fn packet(kind: Kind, origin: Ipv4Addr, sdp: &str) -> Vec<u8> {
    let t = match kind {
        Kind::Announce => 0,
        Kind::Delete => 1,
    };
    let mut p = Vec::with_capacity(FIXED + PAYLOAD_TYPE.len() + 1 + sdp.len());
    // V=1 in the top three bits; A, R, E, C zero; T as asked.
    p.push((1 << 5) | (t << 2));
    p.push(0); // no authentication data
    p.extend_from_slice(&msg_id_hash(sdp).to_be_bytes());
    p.extend_from_slice(&origin.octets());
    p.extend_from_slice(PAYLOAD_TYPE.as_bytes());
    p.push(0);
    p.extend_from_slice(sdp.as_bytes());
    p
}

/// Parses a SAP packet of the kind [`packet`] writes (version 1, IPv4, no authentication, not
/// encrypted or compressed); `None` for anything else. A missing payload type means SDP (RFC
/// 2974 section 3: receivers must accept a payload starting `v=0`).
pub fn parse(p: &[u8]) -> Option<Packet<'_>> {
    let flags = *p.first()?;
    if flags >> 5 != 1 || flags & 0b1_0011 != 0 || *p.get(1)? != 0 {
        return None;
    }
    let kind = if flags & 0b100 != 0 {
        Kind::Delete
    } else {
        Kind::Announce
    };
    let msg_id_hash = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]);
    let origin = Ipv4Addr::from(<[u8; 4]>::try_from(p.get(4..FIXED)?).ok()?);
    let rest = &p[FIXED..];
    let body = if rest.starts_with(b"v=0") {
        rest
    } else {
        let nul = rest.iter().position(|&b| b == 0)?;
        if &rest[..nul] != PAYLOAD_TYPE.as_bytes() {
            return None;
        }
        &rest[nul + 1..]
    };
    let sdp = std::str::from_utf8(body).ok()?;
    Some(Packet {
        kind,
        msg_id_hash,
        origin,
        sdp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 10.0.0.7\r\ns=pi\r\n";
    const ORIGIN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);

    #[test]
    fn header_fields_follow_rfc_2974_layout() {
        let p = packet(Kind::Announce, ORIGIN, SDP);
        assert_eq!(p[0] >> 5, 1, "version 1");
        assert_eq!(p[0] & 0b1_0000, 0, "A = 0: IPv4");
        assert_eq!(p[0] & 0b1000, 0, "R = 0");
        assert_eq!(p[0] & 0b100, 0, "T = 0: announcement");
        assert_eq!(p[0] & 0b11, 0, "E = 0, C = 0");
        assert_eq!(p[0], 0x20);
        assert_eq!(p[1], 0, "no authentication");
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), msg_id_hash(SDP));
        assert_eq!(&p[4..8], &[10, 0, 0, 7], "originating source");
        assert_eq!(&p[8..24], b"application/sdp\0");
        assert_eq!(&p[24..], SDP.as_bytes());
        let d = packet(Kind::Delete, ORIGIN, SDP);
        assert_eq!(d[0], 0x24, "T = 1: deletion");
        assert_eq!(&d[1..], &p[1..]);
    }

    #[test]
    fn parses_its_own_packets_back() {
        for kind in [Kind::Announce, Kind::Delete] {
            let p = packet(kind, ORIGIN, SDP);
            let back = parse(&p).unwrap();
            assert_eq!(
                back,
                Packet {
                    kind,
                    msg_id_hash: msg_id_hash(SDP),
                    origin: ORIGIN,
                    sdp: SDP
                }
            );
        }
    }

    #[test]
    fn accepts_a_bare_sdp_payload_and_rejects_other_packets() {
        let mut p = packet(Kind::Announce, ORIGIN, SDP);
        p.drain(8..24);
        assert_eq!(parse(&p).unwrap().sdp, SDP);
        let good = packet(Kind::Announce, ORIGIN, SDP);
        let mut v2 = good.clone();
        v2[0] = 0x40;
        assert_eq!(parse(&v2), None, "version 2");
        let mut v6 = good.clone();
        v6[0] |= 0b1_0000;
        assert_eq!(parse(&v6), None, "IPv6 origin");
        let mut enc = good.clone();
        enc[0] |= 0b10;
        assert_eq!(parse(&enc), None, "encrypted");
        let mut auth = good.clone();
        auth[1] = 1;
        assert_eq!(parse(&auth), None, "authentication data");
        let mut other = good.clone();
        other[8..24].copy_from_slice(b"application/xyz\0");
        assert_eq!(parse(&other), None, "another payload type");
        assert_eq!(parse(&good[..7]), None, "truncated");
    }

    #[test]
    fn the_hash_changes_with_the_sdp() {
        assert_ne!(msg_id_hash(SDP), msg_id_hash("v=0\r\ns=other\r\n"));
    }
}
