//! The parsers alone, on raw bytes: nothing may panic, and what parses must write back to a
//! datagram that parses to the same thing.

use super::file::{UNIX_MS, teacher};
use edm_cast_proto::auth::{Auth, DEFAULT_MAX_SKEW};
use edm_cast_proto::file::tree::{HEADER_LEN, Manifest, parse_header};
use edm_cast_proto::video::h264::{avcc_parameter_sets, nal_type, rtp_starts_keyframe};
use edm_cast_proto::video::rtcp::SenderReport;
use edm_cast_proto::video::rtp::RtpHeader;
use edm_cast_proto::video::sap;
use edm_cast_proto::video::wire::{Control, Repair};
use edm_cast_proto::wire::{Packet, printable};
use edm_cast_proto::{PublicKey, SecretKey, Trust, WallClock};
use std::time::Instant;

/// A file-protocol or download-manager datagram (`Packet::parse`), and its signature check.
pub fn packet(data: &[u8]) {
    let Ok(d) = Packet::parse(data) else {
        return;
    };
    let mut again = Vec::new();
    d.packet.write(d.session, &mut again);
    let back = Packet::parse(&again).expect("what parsed, written again, parses");
    assert_eq!((back.session, &back.packet), (d.session, &d.packet));
    let text = match &d.packet {
        Packet::Announce(a) => a.name.as_str(),
        Packet::Status(s) => s.name.as_str(),
        Packet::Request(r) => r.url.as_str(),
        Packet::Refuse(r) => r.reason.as_str(),
        _ => "",
    };
    assert!(!printable(text).chars().any(char::is_control));
    if let Auth::Signed { .. } = d.auth {
        // The seeds hold packets the teacher's key signed at times near UNIX_MS.
        let now = Instant::now();
        let trust = Trust::new(
            [teacher().public()],
            WallClock::new(now, UNIX_MS),
            DEFAULT_MAX_SKEW,
        );
        let _ = trust.check(now, data, &d.auth, None);
    }
}

/// A video control datagram (`Control::parse`) or a REPAIR (`Repair::parse`).
pub fn video_wire(data: &[u8]) {
    if let Ok(c) = Control::parse(data) {
        assert_eq!(Control::parse(&c.to_vec()), Ok(c));
    }
    if let Ok(r) = Repair::parse(data) {
        let mut again = Vec::new();
        r.write(&mut again);
        assert_eq!(Repair::parse(&again), Ok(r));
    }
    // What `watch` reads from the RTCP ports and what a SAP listener would: same datagrams.
    if let Ok(sr) = SenderReport::parse(data) {
        let mut again = Vec::new();
        sr.write(&mut again);
        assert_eq!(SenderReport::parse(&again), Ok(sr));
    }
    if let Some(p) = sap::parse(data) {
        let again = sap::packet(p.kind, p.origin, p.sdp);
        let back = sap::parse(&again).expect("a SAP packet written parses");
        assert_eq!(
            (back.kind, back.origin, back.sdp),
            (p.kind, p.origin, p.sdp)
        );
    }
}

/// An RTP packet (`RtpHeader::parse`), the keyframe test, and an AVC configuration record.
pub fn rtp(data: &[u8]) {
    if let Ok((h, payload)) = RtpHeader::parse(data) {
        let mut again = Vec::new();
        h.write(&mut again);
        again.extend_from_slice(payload);
        assert_eq!(RtpHeader::parse(&again), Ok((h, payload)));
        let _ = nal_type(payload);
    }
    let _ = rtp_starts_keyframe(data);
    for set in avcc_parameter_sets(data) {
        assert!(set.len() <= data.len());
    }
}

/// A key's text (`PublicKey::from_str`, `SecretKey::from_text`).
pub fn keys(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(k) = text.parse::<PublicKey>() {
        assert_eq!(k.to_string().parse::<PublicKey>(), Ok(k));
        assert_eq!(k.fingerprint().len(), 19);
    }
    if let Ok(k) = SecretKey::from_text(&text) {
        let back = SecretKey::from_text(&k.to_text()).map(|b| b.public());
        assert_eq!(back, Ok(k.public()));
    }
}

/// A tree stream (`file::tree`, PROTOCOL.md 4a): its header, then its manifest checked against the
/// stream's length; what is taken encodes back to the same bytes.
pub fn tree(data: &[u8]) {
    let Some(header) = data.get(..HEADER_LEN) else {
        return;
    };
    let Ok((count, len)) = parse_header(header.try_into().expect("16 bytes")) else {
        return;
    };
    let Some(body) = data.get(HEADER_LEN..HEADER_LEN + len as usize) else {
        return;
    };
    if let Ok(m) = Manifest::parse(count, body, data.len() as u64) {
        assert_eq!(m.encode(), data[..HEADER_LEN + len as usize]);
        assert_eq!(m.stream_len(), data.len() as u64);
    }
}
