//! A channel's audio track on the relay (VIDEO.md section 3.1): the source's RTP packets (AAC
//! as RFC 3640 `mpeg4-generic`, or Opus) go out with the relay's own SSRC, sequence numbers and
//! payload type, their payload untouched, and their timestamps moved onto the relay's clock so that
//! audio and video share one timeline (`clock::SourceClock`: from the least-delayed packet on).
//! A packet can leave the source only once its last sample was captured: its duration after its
//! timestamp (an AAC packet of n access units, n × 1024 samples; ffmpeg sends 5 in one, 107 ms),
//! while a video frame leaves about when it is captured. That duration is taken off the
//! packet's arrival time, or the audio would play that much late.

use super::clock::SourceClock;
use super::h264::MAX_RTP_PACKET;
use super::rtcp::SenderReport;
use super::rtp::{HEADER_LEN, RtpHeader};
use super::wire::AudioCodec;
use std::time::Instant;

/// The dynamic payload type the relay uses for audio (announced in the SDP).
pub const PAYLOAD_TYPE_AUDIO: u8 = 97;
/// The sampling rate and channel count an AAC AudioSpecificConfig (ISO/IEC 14496-3 section
/// 1.6.2.1) says, or None if it is too short, names a reserved rate or has no channel
/// configuration (channels given in a program config element, which the SDP cannot say).
pub fn aac_config(config: &[u8]) -> Option<(u32, u8)> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    // The first 8 bytes, zero-padded: more than any field read below spans.
    let bits = (0..8).fold(0u64, |acc, i| {
        acc << 8 | u64::from(*config.get(i).unwrap_or(&0))
    });
    let take = |at: &mut u32, n: u32| {
        let v = (bits >> (64 - *at - n)) & ((1 << n) - 1);
        *at += n;
        v
    };
    let mut at = 0;
    if take(&mut at, 5) == 31 {
        take(&mut at, 6); // escaped audio object type
    }
    let rate = match take(&mut at, 4) as usize {
        15 => take(&mut at, 24) as u32,
        i => *RATES.get(i)?,
    };
    let channels = match take(&mut at, 4) {
        0 | 8.. => return None,
        7 => 8,
        c => c as u8,
    };
    // Every field read lies within the config's bytes.
    (at as usize <= 8 * config.len() && rate > 0).then_some((rate, channels))
}

/// How many samples (at the RTP clock rate) a packet's payload holds, as far as its headers say:
/// AAC, 1024 per access unit (RFC 3640 section 3.2.1: AU-headers-length in bits, 16 per AU
/// header in AAC-hbr); Opus, from the TOC byte's frame size and count (RFC 6716 section 3.1),
/// at 48 kHz. 0 when the payload is too short to say.
pub fn duration(codec: AudioCodec, payload: &[u8]) -> u32 {
    match (codec, payload) {
        (AudioCodec::Aac, [hi, lo, ..]) => u32::from(u16::from_be_bytes([*hi, *lo]) / 16) * 1024,
        (AudioCodec::Opus, [toc, rest @ ..]) => {
            let config = toc >> 3;
            // Frame sizes in 1/8 ms: SILK 10, 20, 40, 60 ms; hybrid 10, 20; CELT 2.5, 5, 10, 20.
            let eighths: u32 = match config {
                0..=11 => [80, 160, 320, 480][usize::from(config % 4)],
                12..=15 => [80, 160][usize::from(config % 2)],
                _ => [20, 40, 80, 160][usize::from(config % 4)],
            };
            let frames = match toc & 3 {
                0 => 1,
                1 | 2 => 2,
                _ => rest.first().map_or(0, |c| u32::from(c & 0x3F)),
            };
            // 48 samples a millisecond, 6 an eighth.
            frames * eighths * 6
        }
        _ => 0,
    }
}

/// What an `AudioStream` counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioStats {
    /// Packets relayed.
    pub relayed: u64,
    /// Not RTP, RTCP on the RTP port (RFC 5761 section 4), or longer than the relay sends.
    pub dropped: u64,
    /// Times the timestamps were mapped again (after the first): a new source SSRC or drift.
    pub remapped: u64,
}

/// One channel's audio on the relay. Input: `relay(arrived, packet, out)` for each RTP packet
/// from the source; output: the packet to send, written to `out`; `sender_report(now, ntp)` for
/// the stream's RTCP. Time is passed in.
#[derive(Debug)]
pub struct AudioStream {
    ssrc: u32,
    seq: u16,
    codec: AudioCodec,
    /// The source's timestamps on the relay's clock (RTP time 0 the same instant as the video's).
    clock: SourceClock,
    /// RTP payload bytes sent.
    octets: u64,
    /// Counted so far.
    pub stats: AudioStats,
}

impl AudioStream {
    /// An audio stream of `codec` sent as `ssrc` from `first_seq` (both random), at `clock_rate`
    /// Hz, whose RTP time is 0 at `epoch`.
    pub fn new(
        ssrc: u32,
        first_seq: u16,
        codec: AudioCodec,
        clock_rate: u32,
        epoch: Instant,
    ) -> Self {
        AudioStream {
            ssrc,
            seq: first_seq,
            codec,
            clock: SourceClock::new(clock_rate, epoch),
            octets: 0,
            stats: AudioStats::default(),
        }
    }

    /// Forgets the source's timestamps: the next packet is stamped with its arrival (after a
    /// stop, when the source may have moved on).
    pub fn reset(&mut self) {
        self.clock.reset();
    }

    /// Takes one datagram from the source that arrived at `arrived`; writes the packet to send
    /// into `out` (cleared first) and returns true, or counts it dropped and returns false.
    pub fn relay(&mut self, arrived: Instant, packet: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok((h, payload)) = RtpHeader::parse(packet) else {
            self.stats.dropped += 1;
            return false;
        };
        if (72..=76).contains(&h.payload_type) || HEADER_LEN + payload.len() > MAX_RTP_PACKET {
            self.stats.dropped += 1;
            return false;
        }
        let timestamp =
            self.clock
                .stamp(arrived, h.ssrc, h.timestamp, duration(self.codec, payload));
        self.stats.remapped = self.clock.remapped;
        out.clear();
        RtpHeader {
            marker: h.marker,
            payload_type: PAYLOAD_TYPE_AUDIO,
            seq: self.seq,
            timestamp,
            ssrc: self.ssrc,
        }
        .write(out);
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.stats.relayed += 1;
        self.octets += payload.len() as u64;
        true
    }

    /// The stream's sender report at `now`, whose wall-clock time is `ntp` (`rtcp::ntp_time`).
    pub fn sender_report(&self, now: Instant, ntp: u64) -> SenderReport {
        SenderReport {
            ssrc: self.ssrc,
            ntp,
            rtp_time: self.clock.rtp_time(now),
            packets: self.stats.relayed as u32,
            octets: self.octets as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn source(ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        RtpHeader {
            marker: true,
            payload_type: 97,
            seq,
            timestamp: ts,
            ssrc,
        }
        .write(&mut v);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn aac_configs_give_rate_and_channels() {
        assert_eq!(aac_config(&[0x11, 0x90]), Some((48_000, 2))); // ffmpeg's AAC-LC 48k stereo
        assert_eq!(aac_config(&[0x12, 0x10]), Some((44_100, 2)));
        assert_eq!(aac_config(&[0x14, 0x08]), Some((16_000, 1)));
        assert_eq!(aac_config(&[0x11, 0xB8]), Some((48_000, 8))); // channel configuration 7
        assert_eq!(aac_config(&[0x11]), None, "too short for the channels");
        assert_eq!(aac_config(&[0x11, 0x80]), None, "channels in a PCE");
        assert_eq!(aac_config(&[0x16, 0x90]), None, "reserved rate index 13");
        assert_eq!(aac_config(&[]), None);
        // Explicit rate (index 15): 24 bits of 22050, then 2 channels.
        assert_eq!(
            aac_config(&[0x17, 0x80, 0x2B, 0x11, 0x10]),
            Some((22_050, 2))
        );
    }

    #[test]
    fn packets_get_the_relays_header_and_keep_the_source_spacing() {
        let t0 = Instant::now();
        let mut a = AudioStream::new(0xA0D1, 65535, AudioCodec::Aac, 48_000, t0);
        let mut out = Vec::new();
        let at = |ms| t0 + Duration::from_millis(ms);
        // The source's clock starts anywhere; the first packet arrives 1 s after the epoch.
        let start = u32::MAX - 500;
        assert!(a.relay(at(1000), &source(5, 100, start, b"\0\0a0"), &mut out));
        let (h, p) = RtpHeader::parse(&out).unwrap();
        assert_eq!(
            (h.ssrc, h.seq, h.payload_type, h.timestamp, h.marker, p),
            (
                0xA0D1,
                65535,
                PAYLOAD_TYPE_AUDIO,
                48_000,
                true,
                &b"\0\0a0"[..]
            )
        );
        // 1024 samples later by the source's clock (21.3 ms), across its timestamp wrap, arriving
        // 30 ms late: the source's spacing is kept.
        assert!(a.relay(
            at(1051),
            &source(5, 101, start.wrapping_add(1024), b"\0\0a1"),
            &mut out
        ));
        let (h, _) = RtpHeader::parse(&out).unwrap();
        assert_eq!((h.seq, h.timestamp), (0, 48_000 + 1024));
        assert_eq!(a.stats.remapped, 0);
    }

    #[test]
    fn a_packet_is_stamped_back_from_when_its_last_sample_was_captured() {
        let t0 = Instant::now();
        let mut a = AudioStream::new(1, 0, AudioCodec::Aac, 48_000, t0);
        let mut out = Vec::new();
        // AU-headers-length 80 bits: 5 units; arriving 1 s after the epoch.
        let five = [0x00, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xAA];
        a.relay(
            t0 + Duration::from_secs(1),
            &source(5, 1, 7, &five),
            &mut out,
        );
        let ts = RtpHeader::parse(&out).unwrap().0.timestamp;
        assert_eq!(ts, 48_000 - 5 * 1024);
        // The next one arrives when its spacing says: no new mapping.
        a.relay(
            t0 + Duration::from_millis(1107),
            &source(5, 2, 7 + 5 * 1024, &five),
            &mut out,
        );
        assert_eq!(a.stats.remapped, 0);
    }

    #[test]
    fn durations_come_from_the_payload_headers() {
        assert_eq!(duration(AudioCodec::Aac, &[0x00, 0x10, 0, 0]), 1024);
        assert_eq!(duration(AudioCodec::Aac, &[0x00, 0x50]), 5 * 1024);
        assert_eq!(duration(AudioCodec::Aac, &[0x00]), 0);
        // ffmpeg's libopus: CELT fullband 20 ms (config 31), one frame.
        assert_eq!(duration(AudioCodec::Opus, &[31 << 3, 0xAA]), 960);
        // SILK 60 ms (config 3), two frames; CELT 2.5 ms (config 16), code 3 with 4 frames.
        assert_eq!(duration(AudioCodec::Opus, &[3 << 3 | 1]), 2 * 2880);
        assert_eq!(duration(AudioCodec::Opus, &[16 << 3 | 3, 4]), 4 * 120);
        assert_eq!(duration(AudioCodec::Opus, &[16 << 3 | 3]), 0);
        assert_eq!(duration(AudioCodec::Opus, &[]), 0);
    }

    #[test]
    fn rtcp_garbage_and_oversized_packets_are_dropped() {
        let t0 = Instant::now();
        let mut a = AudioStream::new(1, 0, AudioCodec::Opus, 48_000, t0);
        let mut out = Vec::new();
        let mut rtcp = vec![0x80, 200, 0, 6];
        rtcp.extend_from_slice(&[0; 24]);
        assert!(!a.relay(t0, &rtcp, &mut out));
        assert!(!a.relay(t0, &[0x80, 97, 0], &mut out));
        assert!(!a.relay(
            t0,
            &source(5, 1, 0, &[0; MAX_RTP_PACKET - HEADER_LEN + 1]),
            &mut out
        ));
        assert!(a.relay(
            t0,
            &source(5, 1, 0, &[0; MAX_RTP_PACKET - HEADER_LEN]),
            &mut out
        ));
        assert_eq!(out.len(), MAX_RTP_PACKET);
        assert_eq!(
            a.stats,
            AudioStats {
                relayed: 1,
                dropped: 3,
                remapped: 0
            }
        );
    }

    #[test]
    fn sender_reports_map_the_relays_clock() {
        let t0 = Instant::now();
        let mut a = AudioStream::new(9, 0, AudioCodec::Opus, 44_100, t0);
        let mut out = Vec::new();
        a.relay(t0, &source(5, 1, 0, b"abc"), &mut out);
        let sr = a.sender_report(t0 + Duration::from_secs(2), 42);
        assert_eq!(
            sr,
            SenderReport {
                ssrc: 9,
                ntp: 42,
                rtp_time: 88_200,
                packets: 1,
                octets: 3
            }
        );
    }
}
