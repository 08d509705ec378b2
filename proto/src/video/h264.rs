//! H.264 in and out: Annex B byte streams cut into NAL units (ITU-T H.264 annex B), RTP payloads
//! made from NAL units (RFC 6184 packetization mode 1: single NAL unit packets and FU-A), RTP payloads
//! turned back into NAL units (single, STAP-A, FU-A), and SPS/PPS re-inserted before every IDR.

use super::rtp::{HEADER_LEN, PAYLOAD_TYPE_H264, RtpHeader};
use std::collections::VecDeque;
use std::time::Instant;

// NAL unit types used here (H.264 table 7-1, RFC 6184 table 1).
/// NAL unit type of an IDR slice (a keyframe).
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// RTP packets the relay sends are at most this long: with IPv4 + UDP headers (28 bytes) a
/// 1428-byte datagram, and a RaptorQ repair datagram (16 + 2 + 1400) fits the 1500-byte MTU too.
pub const MAX_RTP_PACKET: usize = 1400;
/// A NAL unit longer than this in an Annex B stream is dropped (a 1080p IDR is a few hundred KB).
pub const MAX_NAL: usize = 4 << 20;
/// Most NAL units taken from one ingest datagram: a camera's frame is a handful (SPS, PPS, SEI, a
/// few slices; one slice per macroblock row of a 1080p frame, sent as one datagram, is 70), while
/// a 64 kB datagram of start codes would otherwise be 16,000 units, each an RTP packet. The rest
/// of the datagram's units are dropped.
pub const MAX_NALS_PER_DATAGRAM: usize = 128;
/// Most NAL units in one access unit (a frame): one slice per macroblock row of a 1080p frame is
/// 68. The rest of the frame's units are dropped.
pub const MAX_NALS_PER_FRAME: usize = 256;
/// Largest access unit (a frame), bytes: a 4K intra frame at a high bit rate is a few MB. Units
/// that would make it larger are dropped.
pub const MAX_FRAME: usize = 8 << 20;

/// The type in a NAL unit's header byte (0, unspecified, for an empty unit).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1F)
}

fn is_vcl(t: u8) -> bool {
    (1..=5).contains(&t)
}

/// True if `next` begins a new access unit after a VCL NAL unit (H.264 section 7.4.1.2.3): an AUD,
/// SEI, SPS or PPS, or a slice whose first_mb_in_slice is 0 (its ue(v) code is the single bit 1).
fn starts_access_unit(next: &[u8]) -> bool {
    let t = nal_type(next);
    matches!(t, 6..=9 | 14..=18) || (is_vcl(t) && next.get(1).is_some_and(|b| b & 0x80 != 0))
}

/// What the ingest may make of one datagram and of one frame (`MAX_NALS_PER_DATAGRAM`,
/// `MAX_NALS_PER_FRAME`, `MAX_FRAME`): what goes past them is dropped and counted, so that
/// no datagram turns into more RTP packets than a frame of its size would.
#[derive(Debug, Default)]
struct Bounds {
    in_datagram: usize,
    in_frame: usize,
    frame_bytes: usize,
}

impl Bounds {
    fn next_datagram(&mut self) {
        self.in_datagram = 0;
    }

    /// Whether a unit of `len` bytes may go out. The frame's counts start over after the unit
    /// that ends it, taken or not.
    fn admit(&mut self, len: usize, end_of_au: bool) -> bool {
        let ok = self.in_datagram < MAX_NALS_PER_DATAGRAM
            && self.in_frame < MAX_NALS_PER_FRAME
            && self.frame_bytes + len <= MAX_FRAME;
        if ok {
            self.in_datagram += 1;
            self.in_frame += 1;
            self.frame_bytes += len;
        }
        if end_of_au {
            self.in_frame = 0;
            self.frame_bytes = 0;
        }
        ok
    }
}

/// One NAL unit out of the ingest, with when its first byte arrived (for latency figures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nal {
    /// The unit, header byte first, without its start code.
    pub data: Vec<u8>,
    /// The last NAL unit of its access unit (sets the RTP marker bit).
    pub end_of_au: bool,
    /// When the datagram holding its first byte arrived.
    pub arrived: Instant,
}

/// Cuts an Annex B byte stream, delivered in arbitrary chunks (UDP datagrams), into NAL units.
/// A unit is complete when the next start code and the next unit's first two bytes have arrived,
/// which also tells whether it ends its access unit; or, sooner, when a datagram shorter than the
/// largest one seen so far ends: writers (rpicam-vid, ffmpeg) send each frame as full-size chunks
/// and one short last chunk, so that datagram ends the frame.
#[derive(Debug, Default)]
pub struct AnnexB {
    /// Bytes from the current unit's first byte on (or, before any start code, anything).
    buf: Vec<u8>,
    /// When the current unit's start code arrived, once one was seen.
    current: Option<Instant>,
    /// Bytes of `buf` already searched for a start code.
    scanned: usize,
    largest_datagram: usize,
    bounds: Bounds,
    out: VecDeque<Nal>,
    /// NAL units dropped for being longer than `MAX_NAL`.
    pub oversized: u64,
    /// NAL units dropped past `MAX_NALS_PER_DATAGRAM`, `MAX_NALS_PER_FRAME` or `MAX_FRAME`.
    pub over_bounds: u64,
}

impl AnnexB {
    /// Takes one ingest datagram, arrived at `now`; complete units come out of `poll_nal`. The
    /// work is linear in the datagram's length, whatever it holds.
    pub fn push(&mut self, now: Instant, bytes: &[u8]) {
        self.bounds.next_datagram();
        self.buf.extend_from_slice(bytes);
        let flush = bytes.len() < self.largest_datagram;
        self.largest_datagram = self.largest_datagram.max(bytes.len());
        // A start code is 00 00 01; deciding the end of an access unit wants two bytes after it.
        let lookahead = if flush { 0 } else { 2 };
        // Where the current unit (or, before any start code, anything) begins in `buf`: the
        // bytes before it go in one drain at the end, not one per unit.
        let mut begin = 0;
        while self.scanned + 3 + lookahead <= self.buf.len() {
            let i = self.scanned;
            if self.buf[i..i + 3] != [0, 0, 1] {
                self.scanned += 1;
                continue;
            }
            let next = i + 3;
            if let Some(arrived) = self.current {
                let end_of_au = starts_access_unit(&self.buf[next..]);
                self.emit(begin, i, arrived, end_of_au);
            }
            begin = next;
            self.current = Some(now);
            self.scanned = next;
        }
        self.buf.drain(..begin);
        self.scanned -= begin;
        if flush && let Some(arrived) = self.current {
            let len = self.buf.len();
            // Zeros at the end stay: they may begin the next datagram's start code.
            if self.emit(0, len, arrived, true) {
                let end = self.buf.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
                self.buf.drain(..end);
                self.current = None;
                self.scanned = 0;
            }
        }
        if self.buf.len() > MAX_NAL {
            self.oversized += 1;
            self.buf.clear();
            self.current = None;
            self.scanned = 0;
        }
    }

    /// Emits `buf[begin..end]` without trailing zeros as a unit, if anything is left of it and
    /// the bounds let it. A unit ends its access unit only if it is a slice and `next_starts_au`.
    fn emit(&mut self, begin: usize, end: usize, arrived: Instant, next_starts_au: bool) -> bool {
        // Zeros before a start code are trailing_zero_8bits or a 4-byte start code.
        let Some(last) = self.buf[begin..end].iter().rposition(|b| *b != 0) else {
            return false;
        };
        let unit = &self.buf[begin..begin + last + 1];
        let end_of_au = is_vcl(nal_type(unit)) && next_starts_au;
        if self.bounds.admit(unit.len(), end_of_au) {
            self.out.push_back(Nal {
                data: unit.to_vec(),
                end_of_au,
                arrived,
            });
        } else {
            self.over_bounds += 1;
        }
        true
    }

    /// The next complete NAL unit.
    pub fn poll_nal(&mut self) -> Option<Nal> {
        self.out.pop_front()
    }
}

/// True if the RTP packet starts a keyframe: an SPS or IDR, alone or as the first FU-A piece.
pub fn rtp_starts_keyframe(packet: &[u8]) -> bool {
    let Ok((_, payload)) = RtpHeader::parse(packet) else {
        return false;
    };
    let kind = match payload {
        [b0, b1, ..] if b0 & 0x1F == 28 => (b1 & 0x80 != 0).then_some(b1 & 0x1F),
        [b0, ..] => Some(b0 & 0x1F),
        [] => None,
    };
    matches!(kind, Some(NAL_IDR | NAL_SPS))
}

/// The SPS and PPS in an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 section 5.2.4.1), which is
/// how an RTSP client hands over an SDP's sprop-parameter-sets. Malformed records give what parsed.
pub fn avcc_parameter_sets(record: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut r = crate::wire::Reader::new(record.get(5..).unwrap_or_default());
    let mut sets = |r: &mut crate::wire::Reader, count: u8| -> Option<()> {
        for _ in 0..count {
            let len = r.u16().ok()? as usize;
            out.push(r.bytes(len).ok()?.to_vec());
        }
        Some(())
    };
    let _ = r
        .u8()
        .ok()
        .and_then(|n| sets(&mut r, n & 0x1F))
        .and_then(|_| r.u8().ok())
        .and_then(|n| sets(&mut r, n));
    out.retain(|n| matches!(nal_type(n), NAL_SPS | NAL_PPS));
    out
}

/// Makes RTP packets from NAL units: the relay's own SSRC and sequence numbers, whatever the
/// source does, and the last SPS and PPS sent again before an IDR that comes without them.
#[derive(Debug)]
pub struct Packetizer {
    ssrc: u32,
    seq: u16,
    /// Timestamp of the access unit being sent, once its first NAL unit came.
    au_timestamp: Option<u32>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    au_has_sps: bool,
    au_has_pps: bool,
    out: VecDeque<Vec<u8>>,
    /// SPS/PPS units inserted before IDRs.
    pub inserted: u64,
}

impl Packetizer {
    /// A packetizer sending as `ssrc`, its first packet numbered `first_seq` (both random, RFC
    /// 3550 section 5.1).
    pub fn new(ssrc: u32, first_seq: u16) -> Self {
        Packetizer {
            ssrc,
            seq: first_seq,
            au_timestamp: None,
            sps: None,
            pps: None,
            au_has_sps: false,
            au_has_pps: false,
            out: VecDeque::new(),
            inserted: 0,
        }
    }

    /// Remembers the parameter sets without sending anything (while nobody watches), so the first
    /// IDR after a start can be preceded by them.
    pub fn observe(&mut self, nal: &[u8]) {
        match nal_type(nal) {
            NAL_SPS => self.sps = Some(nal.to_vec()),
            NAL_PPS => self.pps = Some(nal.to_vec()),
            _ => {}
        }
    }

    /// The last SPS and PPS seen (for the channel's SDP).
    pub fn parameter_sets(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        (self.sps.as_deref(), self.pps.as_deref())
    }

    /// Starts the next output at an access unit boundary (after a pause in relaying).
    pub fn reset_access_unit(&mut self) {
        self.au_timestamp = None;
        self.au_has_sps = false;
        self.au_has_pps = false;
    }

    /// Packetizes one NAL unit. `timestamp` (90 kHz) is used if this unit opens an access unit.
    pub fn push(&mut self, nal: &[u8], timestamp: u32, end_of_au: bool) {
        if nal.is_empty() {
            return;
        }
        let ts = *self.au_timestamp.get_or_insert(timestamp);
        self.observe(nal);
        match nal_type(nal) {
            NAL_SPS => self.au_has_sps = true,
            NAL_PPS => self.au_has_pps = true,
            NAL_IDR => {
                if !self.au_has_sps
                    && let Some(sps) = self.sps.clone()
                {
                    self.send_nal(&sps, ts, false);
                    self.inserted += 1;
                }
                if !self.au_has_pps
                    && let Some(pps) = self.pps.clone()
                {
                    self.send_nal(&pps, ts, false);
                    self.inserted += 1;
                }
                self.au_has_sps = true;
                self.au_has_pps = true;
            }
            _ => {}
        }
        self.send_nal(nal, ts, end_of_au);
        if end_of_au {
            self.reset_access_unit();
        }
    }

    fn header(&mut self, marker: bool, ts: u32) -> Vec<u8> {
        let mut p = Vec::with_capacity(MAX_RTP_PACKET);
        RtpHeader {
            marker,
            payload_type: PAYLOAD_TYPE_H264,
            seq: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
        }
        .write(&mut p);
        self.seq = self.seq.wrapping_add(1);
        p
    }

    fn send_nal(&mut self, nal: &[u8], ts: u32, marker: bool) {
        let room = MAX_RTP_PACKET - HEADER_LEN;
        if nal.len() <= room {
            let mut p = self.header(marker, ts);
            p.extend_from_slice(nal);
            self.out.push_back(p);
            return;
        }
        // FU-A (RFC 6184 section 5.8): the NAL header is split into the FU indicator (F, NRI)
        // and the FU header (S, E, type); the payload follows in pieces.
        let indicator = (nal[0] & 0xE0) | FU_A;
        let chunks: Vec<&[u8]> = nal[1..].chunks(room - 2).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let (first, last) = (i == 0, i + 1 == chunks.len());
            let mut p = self.header(marker && last, ts);
            p.push(indicator);
            p.push((first as u8) << 7 | (last as u8) << 6 | nal_type(nal));
            p.extend_from_slice(chunk);
            self.out.push_back(p);
        }
    }

    /// The next RTP packet to send, whole.
    pub fn poll_packet(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }
}

/// Turns RTP H.264 payloads back into NAL units (for RTP ingest and tests). A fragmented unit with
/// a sequence gap is dropped whole.
#[derive(Debug, Default)]
pub struct Depacketizer {
    expected_seq: Option<u16>,
    fragment: Option<Vec<u8>>,
    bounds: Bounds,
    out: VecDeque<(Vec<u8>, bool)>,
    /// Payloads that were malformed, or fragments lost to a gap.
    pub dropped: u64,
    /// NAL units dropped past `MAX_NALS_PER_DATAGRAM` (a STAP-A of many tiny units),
    /// `MAX_NALS_PER_FRAME` or `MAX_FRAME`.
    pub over_bounds: u64,
}

impl Depacketizer {
    /// Feeds one RTP packet; NAL units come out of `poll_nal` with their end-of-access-unit flag.
    pub fn push(&mut self, header: &RtpHeader, payload: &[u8]) {
        self.bounds.next_datagram();
        let gap = self.expected_seq.is_some_and(|s| s != header.seq);
        self.expected_seq = Some(header.seq.wrapping_add(1));
        if gap && self.fragment.take().is_some() {
            self.dropped += 1;
        }
        let Some(&first) = payload.first() else {
            self.dropped += 1;
            return;
        };
        match first & 0x1F {
            1..=23 => self.emit(payload.to_vec(), header.marker),
            STAP_A => {
                let mut units = Vec::new();
                let mut rest = &payload[1..];
                while rest.len() >= 2 {
                    let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    if len == 0 || rest.len() < 2 + len {
                        self.dropped += 1;
                        return;
                    }
                    units.push(rest[2..2 + len].to_vec());
                    rest = &rest[2 + len..];
                }
                if !rest.is_empty() || units.is_empty() {
                    self.dropped += 1;
                    return;
                }
                let n = units.len();
                for (i, u) in units.into_iter().enumerate() {
                    self.emit(u, header.marker && i + 1 == n);
                }
            }
            FU_A => {
                let Some(&fu) = payload.get(1) else {
                    self.dropped += 1;
                    return;
                };
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start {
                    if self.fragment.is_some() {
                        self.dropped += 1;
                    }
                    self.fragment = Some(vec![(first & 0xE0) | (fu & 0x1F)]);
                }
                let Some(frag) = self.fragment.as_mut() else {
                    // A middle or end piece without its start (joined late, or lost).
                    self.dropped += 1;
                    return;
                };
                frag.extend_from_slice(&payload[2..]);
                if frag.len() > MAX_NAL {
                    self.fragment = None;
                    self.dropped += 1;
                } else if end && let Some(nal) = self.fragment.take() {
                    self.emit(nal, header.marker);
                }
            }
            _ => self.dropped += 1,
        }
    }

    /// Queues a complete unit, if the bounds let it.
    fn emit(&mut self, nal: Vec<u8>, end_of_au: bool) {
        if self.bounds.admit(nal.len(), end_of_au) {
            self.out.push_back((nal, end_of_au));
        } else {
            self.over_bounds += 1;
        }
    }

    /// The next complete NAL unit, and whether it ends its access unit.
    pub fn poll_nal(&mut self) -> Option<(Vec<u8>, bool)> {
        self.out.pop_front()
    }
}

/// The SPS and PPS carried in an RTP packet: a single NAL unit packet or a STAP-A (RFC 6184
/// sections 5.6, 5.7.1); none for fragments or malformed packets.
pub fn rtp_parameter_sets(packet: &[u8]) -> Vec<&[u8]> {
    let Ok((_, payload)) = RtpHeader::parse(packet) else {
        return Vec::new();
    };
    let mut nals = Vec::new();
    match payload.first().map(|b| b & 0x1F) {
        Some(STAP_A) => {
            let mut rest = &payload[1..];
            while let [hi, lo, tail @ ..] = rest {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let Some(nal) = tail.get(..len) else { break };
                nals.push(nal);
                rest = &tail[len..];
            }
        }
        Some(_) => nals.push(payload),
        None => {}
    }
    nals.retain(|n| !n.is_empty() && matches!(nal_type(n), NAL_SPS | NAL_PPS));
    nals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nal(kind: u8, len: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![0x60 | kind, 0x88];
        v.resize(len, fill);
        v
    }

    fn depacketize(packets: &[Vec<u8>]) -> Vec<(Vec<u8>, bool)> {
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        for p in packets {
            let (h, payload) = RtpHeader::parse(p).unwrap();
            d.push(&h, payload);
            while let Some(n) = d.poll_nal() {
                out.push(n);
            }
        }
        out
    }

    #[test]
    fn annex_b_splits_at_start_codes_across_chunks() {
        let now = Instant::now();
        let (sps, pps, idr, p) = (nal(7, 10, 1), nal(8, 4, 2), nal(5, 3000, 3), nal(1, 500, 4));
        let mut stream = Vec::new();
        for (n, long) in [
            (&sps, true),
            (&pps, false),
            (&idr, true),
            (&p, false),
            (&p, true),
        ] {
            stream.extend_from_slice(if long { &[0, 0, 0, 1] } else { &[0, 0, 1] });
            stream.extend_from_slice(n);
        }
        stream.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xF0]); // AUD: ends the last P frame
        let mut a = AnnexB::default();
        // Equal chunks: no datagram is shorter than the largest, so only start codes cut.
        stream.resize(stream.len().next_multiple_of(7), 0);
        for chunk in stream.chunks(7) {
            a.push(now, chunk);
        }
        let got: Vec<(Vec<u8>, bool)> = std::iter::from_fn(|| a.poll_nal())
            .map(|n| (n.data, n.end_of_au))
            .collect();
        let want = vec![
            (sps, false),
            (pps, false),
            (idr, true),
            (p.clone(), true),
            (p, true),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_short_datagram_ends_the_frame_at_once() {
        let now = Instant::now();
        let (sps, pps, idr, p) = (nal(7, 10, 1), nal(8, 4, 2), nal(5, 3000, 3), nal(1, 500, 4));
        let mut frame1 = Vec::new();
        for n in [&sps, &pps, &idr] {
            frame1.extend_from_slice(&[0, 0, 0, 1]);
            frame1.extend_from_slice(n);
        }
        let mut a = AnnexB::default();
        let mut got = Vec::new();
        for chunk in frame1.chunks(1316) {
            a.push(now, chunk);
            got.extend(std::iter::from_fn(|| a.poll_nal()).map(|n| (n.data, n.end_of_au)));
        }
        assert_eq!(got, [(sps, false), (pps, false), (idr, true)]);
        // The next frame, in one datagram, split before its start code's last byte.
        a.push(now, &[0, 0]);
        assert_eq!(a.poll_nal(), None);
        let mut rest = vec![0, 1];
        rest.extend_from_slice(&p);
        a.push(now, &rest);
        assert_eq!(a.poll_nal().map(|n| (n.data, n.end_of_au)), Some((p, true)));
    }

    #[test]
    fn big_units_go_as_fu_a_and_come_back_whole() {
        let mut pz = Packetizer::new(42, 65534);
        let (sps, pps, idr, p) = (nal(7, 10, 1), nal(8, 4, 2), nal(5, 5000, 3), nal(1, 100, 4));
        for (n, end) in [(&sps, false), (&pps, false), (&idr, true), (&p, true)] {
            pz.push(n, 1000, end);
        }
        let packets: Vec<Vec<u8>> = std::iter::from_fn(|| pz.poll_packet()).collect();
        assert_eq!(packets.len(), 2 + 4 + 1);
        assert!(packets.iter().all(|p| p.len() <= MAX_RTP_PACKET));
        let headers: Vec<RtpHeader> = packets
            .iter()
            .map(|p| RtpHeader::parse(p).unwrap().0)
            .collect();
        assert_eq!(headers[0].seq, 65534);
        assert_eq!(headers[2].seq, 0); // wraps
        assert!(headers.iter().all(|h| h.ssrc == 42 && h.payload_type == 96));
        let markers: Vec<bool> = headers.iter().map(|h| h.marker).collect();
        assert_eq!(markers, [false, false, false, false, false, true, true]);
        assert_eq!(
            depacketize(&packets),
            vec![(sps, false), (pps, false), (idr, true), (p, true)]
        );
    }

    #[test]
    fn parameter_sets_are_inserted_before_an_idr_without_them() {
        let mut pz = Packetizer::new(1, 0);
        let (sps, pps, idr) = (nal(7, 10, 1), nal(8, 4, 2), nal(5, 50, 3));
        pz.observe(&sps);
        pz.observe(&pps);
        pz.push(&idr, 0, true);
        pz.push(&nal(1, 20, 5), 3000, true);
        pz.push(&sps, 6000, false);
        pz.push(&pps, 6000, false);
        pz.push(&idr, 6000, true);
        let packets: Vec<Vec<u8>> = std::iter::from_fn(|| pz.poll_packet()).collect();
        let kinds: Vec<u8> = depacketize(&packets)
            .iter()
            .map(|(n, _)| nal_type(n))
            .collect();
        assert_eq!(kinds, [7, 8, 5, 1, 7, 8, 5]);
        assert_eq!(pz.inserted, 2);
        let ts: Vec<u32> = packets
            .iter()
            .map(|p| RtpHeader::parse(p).unwrap().0.timestamp)
            .collect();
        assert_eq!(ts, [0, 0, 0, 3000, 6000, 6000, 6000]);
    }

    #[test]
    fn parameter_sets_come_out_of_an_avc_record() {
        let record = [
            1, 0x64, 0, 0x1E, 0xFF, // version, profile, compatibility, level, length size
            0xE1, 0, 3, 0x67, 0x64, 0x00, // one SPS
            1, 0, 2, 0x68, 0xEF, // one PPS
        ];
        assert_eq!(
            avcc_parameter_sets(&record),
            vec![vec![0x67, 0x64, 0x00], vec![0x68, 0xEF]]
        );
        assert_eq!(avcc_parameter_sets(&record[..9]), Vec::<Vec<u8>>::new());
        assert_eq!(avcc_parameter_sets(&record[..12]).len(), 1);
        assert!(avcc_parameter_sets(&[]).is_empty());
    }

    #[test]
    fn a_restarted_source_keeps_the_relay_stream_continuous() {
        // The camera restarts: new SSRC, new sequence numbers. The relay's own stream goes on.
        let mut d = Depacketizer::default();
        let mut pz = Packetizer::new(5, 100);
        for (ssrc, seq) in [(1, 10), (1, 11), (2, 60000), (2, 60001)] {
            let h = RtpHeader {
                marker: true,
                payload_type: 96,
                seq,
                timestamp: 0,
                ssrc,
            };
            d.push(&h, &nal(1, 30, 9));
            while let Some((n, end)) = d.poll_nal() {
                pz.push(&n, seq as u32, end);
            }
        }
        let out: Vec<RtpHeader> = std::iter::from_fn(|| pz.poll_packet())
            .map(|p| RtpHeader::parse(&p).unwrap().0)
            .collect();
        assert_eq!(
            out.iter().map(|h| h.seq).collect::<Vec<_>>(),
            [100, 101, 102, 103]
        );
        assert!(out.iter().all(|h| h.ssrc == 5));
    }

    #[test]
    fn parameter_sets_from_rtp_single_units_and_stap_a() {
        let rtp = |payload: &[u8]| {
            let mut p = Vec::new();
            let h = RtpHeader {
                marker: false,
                payload_type: 96,
                seq: 1,
                timestamp: 0,
                ssrc: 1,
            };
            h.write(&mut p);
            p.extend_from_slice(payload);
            p
        };
        let sps = nal(NAL_SPS, 6, 1);
        assert_eq!(rtp_parameter_sets(&rtp(&sps)), vec![&sps[..]]);
        assert!(rtp_parameter_sets(&rtp(&nal(NAL_IDR, 6, 1))).is_empty());
        let stap = [24, 0, 2, 0x67, 1, 0, 1, 0x68, 0, 1, 0x65];
        assert_eq!(
            rtp_parameter_sets(&rtp(&stap)),
            vec![&[0x67, 1][..], &[0x68][..]]
        );
        assert_eq!(
            rtp_parameter_sets(&rtp(&[24, 0, 9, 0x67])),
            Vec::<&[u8]>::new()
        );
        assert!(rtp_parameter_sets(&[0x80]).is_empty());
    }

    #[test]
    fn stap_a_and_broken_fragments() {
        let h = |seq| RtpHeader {
            marker: true,
            payload_type: 96,
            seq,
            timestamp: 0,
            ssrc: 1,
        };
        let mut d = Depacketizer::default();
        d.push(&h(1), &[24, 0, 2, 0x67, 1, 0, 1, 0x68]);
        assert_eq!(d.poll_nal(), Some((vec![0x67, 1], false)));
        assert_eq!(d.poll_nal(), Some((vec![0x68], true)));
        // FU-A start, then a gap: the end piece is dropped, not glued to the wrong start.
        d.push(&h(2), &[0x7C, 0x85, 1, 2]);
        d.push(&h(4), &[0x7C, 0x45, 3, 4]);
        assert_eq!(d.poll_nal(), None);
        for bad in [
            &[][..],
            &[24, 0, 9, 1],
            &[24, 0],
            &[28],
            &[0x7C, 0x05, 1],
            &[0x1E],
        ] {
            d.push(&h(9), bad);
            assert_eq!(d.poll_nal(), None, "{bad:?}");
        }
        assert!(d.dropped >= 7);
    }

    #[test]
    fn keyframes_are_recognised_whole_or_fragmented() {
        let rtp = |payload: &[u8]| {
            let mut v = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
            v.extend_from_slice(payload);
            v
        };
        assert!(rtp_starts_keyframe(&rtp(&[0x67, 1])));
        assert!(rtp_starts_keyframe(&rtp(&[0x7C, 0x85, 1])));
        assert!(!rtp_starts_keyframe(&rtp(&[0x7C, 0x05, 1])));
        assert!(!rtp_starts_keyframe(&rtp(&[0x41, 1])));
        assert!(!rtp_starts_keyframe(&[1, 2, 3]));
    }

    /// The units `a` has ready: (type, length, end of access unit).
    fn drain(a: &mut AnnexB) -> Vec<(u8, usize, bool)> {
        std::iter::from_fn(|| a.poll_nal())
            .map(|n| (nal_type(&n.data), n.data.len(), n.end_of_au))
            .collect()
    }

    /// A frame a camera sends: SPS, PPS and an IDR slice, then an AUD that ends it.
    fn camera_frame() -> Vec<u8> {
        let mut f = Vec::new();
        for n in [
            nal(7, 10, 1),
            nal(8, 4, 2),
            nal(5, 3000, 3),
            vec![0x09, 0xF0],
        ] {
            f.extend_from_slice(&[0, 0, 0, 1]);
            f.extend_from_slice(&n);
        }
        f
    }

    /// One 64 kB datagram of start codes, each unit a one-slice frame: 13,000 units, each an RTP
    /// packet, before the bound; 128 now. The camera's next frame still comes through.
    #[test]
    fn a_datagram_of_start_codes_gives_at_most_128_units() {
        let now = Instant::now();
        let flood: Vec<u8> = [0, 0, 1, 0x65, 0x88].repeat(13_000);
        let mut a = AnnexB::default();
        a.push(now, &flood);
        let got = drain(&mut a);
        assert_eq!(got.len(), MAX_NALS_PER_DATAGRAM, "{}", got.len());
        assert_eq!(
            got.len() as u64 + a.over_bounds,
            13_000 - 1,
            "the last waits"
        );
        for chunk in camera_frame().chunks(1400) {
            a.push(now, chunk);
        }
        let kinds: Vec<u8> = drain(&mut a).iter().map(|u| u.0).collect();
        // The flood's last unit, then the frame (its short last datagram ends it at once).
        assert_eq!(kinds, [5, 7, 8, 5, 9]);
    }

    /// Slices of one frame that never ends, a few per datagram: 256 units, then nothing until a
    /// frame ends; units that would make a frame larger than 8 MB are dropped too.
    #[test]
    fn a_frame_that_never_ends_gives_at_most_256_units_and_8_mb() {
        let now = Instant::now();
        let mut a = AnnexB::default();
        // first_mb_in_slice != 0 (first bit 0): every slice continues the frame.
        let datagram = [0, 0, 1, 0x41, 0x7F, 0xAA].repeat(8);
        for _ in 0..1000 {
            a.push(now, &datagram);
        }
        assert_eq!(drain(&mut a).len(), MAX_NALS_PER_FRAME);
        assert_eq!(a.over_bounds + MAX_NALS_PER_FRAME as u64, 8000 - 1);
        // A new frame (first_mb_in_slice = 0) ends it: the frame after that is whole.
        for chunk in camera_frame().chunks(1400) {
            a.push(now, chunk);
        }
        let kinds: Vec<u8> = drain(&mut a).iter().map(|u| u.0).collect();
        assert_eq!(kinds, [7, 8, 5, 9]);

        // 1 MB slices of one frame, in 64 kB datagrams.
        let mut a = AnnexB::default();
        let mut stream = Vec::new();
        for _ in 0..12 {
            stream.extend_from_slice(&[0, 0, 1, 0x41, 0x7F]);
            stream.resize(stream.len() + (1 << 20), 0xAA);
        }
        for chunk in stream.chunks(65_000) {
            a.push(now, chunk);
        }
        let bytes: usize = drain(&mut a).iter().map(|u| u.1).sum();
        assert!(bytes <= MAX_FRAME, "{bytes}");
        assert!(a.over_bounds >= 3, "{}", a.over_bounds);
    }

    /// A STAP-A of 400 one-byte units in one RTP packet: 128 come out.
    #[test]
    fn a_stap_a_of_many_units_gives_at_most_128() {
        let h = RtpHeader {
            marker: true,
            payload_type: 96,
            seq: 1,
            timestamp: 0,
            ssrc: 1,
        };
        let mut payload = vec![24];
        for _ in 0..400 {
            payload.extend_from_slice(&[0, 1, 0x06]);
        }
        let mut d = Depacketizer::default();
        d.push(&h, &payload);
        assert_eq!(
            std::iter::from_fn(|| d.poll_nal()).count(),
            MAX_NALS_PER_DATAGRAM
        );
        assert_eq!(d.over_bounds + MAX_NALS_PER_DATAGRAM as u64, 400);
        // The next packet is a packet of its own.
        d.push(&RtpHeader { seq: 2, ..h }, &nal(5, 100, 3));
        assert_eq!(
            d.poll_nal().map(|(n, end)| (n.len(), end)),
            Some((100, true))
        );
    }
}
