//! The SDP (RFC 8866) that describes one relayed channel to a player: H.264 over RTP with dynamic
//! payload type 96 (RFC 6184 section 8.2.1), with the stream's parameter sets when they are known so
//! a decoder can start at the first keyframe without logging missing-PPS errors. Pure: the caller
//! says where the RTP arrives and hands over the SPS/PPS it has seen.

use super::audio::PAYLOAD_TYPE_AUDIO;
use super::rtp::PAYLOAD_TYPE_H264 as PAYLOAD_TYPE;
use super::wire::{AudioCodec, AudioInfo};
use data_encoding::BASE64;
use std::fmt::Write;
use std::net::IpAddr;

/// What an SDP for one channel says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session<'a> {
    /// The channel's name (`s=`).
    pub name: &'a str,
    /// The channel's description (`i=`), if it has one.
    pub description: Option<&'a str>,
    /// Who offers the session (`o=`): the relay for SAP, loopback for `watch`.
    pub origin: IpAddr,
    /// With `origin`, names the session (`o=`'s sess-id): distinct per channel of a relay, since
    /// SAP listeners tell sessions apart by the `o=` line.
    pub session_id: u64,
    /// Where the RTP goes (`c=`): a multicast group, or 127.0.0.1 for `watch`'s forwarded stream.
    pub address: IpAddr,
    /// TTL for a multicast `c=` line (RFC 8866 section 5.7 requires it for IPv4 multicast and
    /// forbids it for IPv6).
    pub ttl: u8,
    /// The RTP port (`m=`).
    pub port: u16,
    /// The latest sequence parameter set (NAL unit, no start code), if seen.
    pub sps: Option<&'a [u8]>,
    /// The latest picture parameter set, if seen.
    pub pps: Option<&'a [u8]>,
    /// The audio track, if the channel has one, and its RTP port (an `m=audio` section).
    pub audio: Option<(u16, &'a AudioInfo)>,
}

/// `profile-level-id` (RFC 6184 section 8.1): the three bytes after the SPS's NAL header
/// (profile_idc, constraint flags, level_idc) in hex; `None` for an SPS too short to hold them.
pub fn profile_level_id(sps: &[u8]) -> Option<String> {
    let b = sps.get(1..4)?;
    Some(format!("{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
}

/// `sprop-parameter-sets` (RFC 6184 section 8.1): the SPS and PPS in base64, comma-separated.
pub fn sprop_parameter_sets(sps: &[u8], pps: &[u8]) -> String {
    format!("{},{}", BASE64.encode(sps), BASE64.encode(pps))
}

/// The SDP address type (RFC 8866 section 5.7).
fn family(a: IpAddr) -> &'static str {
    match a {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// Strips CR and LF so a name or description cannot add SDP lines.
fn one_line(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect()
}

impl Session<'_> {
    /// The SDP text, CRLF line ends. `a=recvonly`: the player only receives.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let (o, o_family) = (self.origin, family(self.origin));
        let _ = write!(
            s,
            "v=0\r\no=- {} 0 IN {o_family} {o}\r\ns={}\r\n",
            self.session_id,
            one_line(self.name)
        );
        if let Some(d) = self.description.filter(|d| !d.is_empty()) {
            let _ = write!(s, "i={}\r\n", one_line(d));
        }
        let c = match self.address {
            IpAddr::V4(a) if a.is_multicast() => format!("{a}/{}", self.ttl),
            a => a.to_string(),
        };
        let c_family = family(self.address);
        let (pt, port) = (PAYLOAD_TYPE, self.port);
        let _ = write!(
            s,
            "c=IN {c_family} {c}\r\nt=0 0\r\na=recvonly\r\nm=video {port} RTP/AVP {pt}\r\n\
             a=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} packetization-mode=1"
        );
        if let Some(sps) = self.sps {
            if let Some(id) = profile_level_id(sps) {
                let _ = write!(s, ";profile-level-id={id}");
            }
            if let Some(pps) = self.pps {
                let _ = write!(
                    s,
                    ";sprop-parameter-sets={}",
                    sprop_parameter_sets(sps, pps)
                );
            }
        }
        s.push_str("\r\n");
        if let Some((port, a)) = self.audio {
            let pt = PAYLOAD_TYPE_AUDIO;
            let _ = write!(s, "m=audio {port} RTP/AVP {pt}\r\n");
            match a.codec {
                // RFC 3640 section 4.1, mode AAC-hbr, as the relay forwards the source's payload.
                AudioCodec::Aac => {
                    let _ = write!(
                        s,
                        "a=rtpmap:{pt} mpeg4-generic/{}/{}\r\na=fmtp:{pt} streamtype=5;\
                         profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
                         indexdeltalength=3;config={}\r\n",
                        a.clock_rate,
                        a.channels,
                        data_encoding::HEXLOWER.encode(&a.config)
                    );
                }
                // RFC 7587 section 7: always 48000/2, whatever the source's channels.
                AudioCodec::Opus => {
                    let _ = write!(s, "a=rtpmap:{pt} opus/48000/2\r\n");
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// x264's SPS and PPS for a 320x240 High-profile level 2.0 clip (`ffmpeg -c:v libx264`).
    const SPS: [u8; 25] = [
        0x67, 0x64, 0x00, 0x14, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn session<'a>(sps: Option<&'a [u8]>, pps: Option<&'a [u8]>) -> Session<'a> {
        Session {
            name: "pi",
            description: Some("Room 12 board"),
            origin: Ipv4Addr::new(192, 168, 1, 5).into(),
            session_id: 2,
            address: Ipv4Addr::new(239, 255, 1, 2).into(),
            ttl: 1,
            port: 5004,
            sps,
            pps,
            audio: None,
        }
    }

    #[test]
    fn profile_level_id_is_the_three_bytes_after_the_header() {
        assert_eq!(profile_level_id(&SPS).as_deref(), Some("640014"));
        assert_eq!(profile_level_id(&[0x67, 0x42, 0xc0]), None);
    }

    #[test]
    fn sprop_is_base64_of_sps_comma_pps() {
        assert_eq!(
            sprop_parameter_sets(&SPS, &PPS),
            "Z2QAFKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA"
        );
    }

    #[test]
    fn full_sdp_with_parameter_sets() {
        assert_eq!(
            session(Some(&SPS), Some(&PPS)).render(),
            "v=0\r\no=- 2 0 IN IP4 192.168.1.5\r\ns=pi\r\ni=Room 12 board\r\n\
             c=IN IP4 239.255.1.2/1\r\nt=0 0\r\na=recvonly\r\nm=video 5004 RTP/AVP 96\r\n\
             a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=640014;\
             sprop-parameter-sets=Z2QAFKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA\r\n"
        );
    }

    #[test]
    fn without_parameter_sets_or_description_and_unicast() {
        let mut s = session(None, None);
        s.description = None;
        s.address = Ipv4Addr::LOCALHOST.into();
        let text = s.render();
        assert!(!text.contains("i="), "{text}");
        assert!(text.contains("c=IN IP4 127.0.0.1\r\n"), "{text}");
        assert!(
            text.ends_with("a=fmtp:96 packetization-mode=1\r\n"),
            "{text}"
        );
    }

    #[test]
    fn audio_gets_its_own_media_section() {
        let aac = AudioInfo {
            port: 5008,
            codec: AudioCodec::Aac,
            clock_rate: 44_100,
            channels: 2,
            config: vec![0x12, 0x10],
        };
        let mut s = session(Some(&SPS), Some(&PPS));
        s.audio = Some((6006, &aac));
        let text = s.render();
        assert!(
            text.ends_with(
                "sprop-parameter-sets=Z2QAFKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA\r\n\
                 m=audio 6006 RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/44100/2\r\n\
                 a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;\
                 indexlength=3;indexdeltalength=3;config=1210\r\n"
            ),
            "{text}"
        );
        let opus = AudioInfo {
            codec: AudioCodec::Opus,
            channels: 1,
            config: vec![],
            ..aac.clone()
        };
        s.audio = Some((6006, &opus));
        assert!(
            s.render()
                .ends_with("\r\nm=audio 6006 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\n")
        );
    }

    #[test]
    fn ipv6_addresses_say_ip6_and_carry_no_ttl() {
        let mut s = session(None, None);
        s.origin = "fd77::1".parse().unwrap();
        s.address = "ff15::1:2".parse().unwrap();
        let text = s.render();
        assert!(text.contains("o=- 2 0 IN IP6 fd77::1\r\n"), "{text}");
        assert!(text.contains("c=IN IP6 ff15::1:2\r\n"), "{text}");
    }

    #[test]
    fn a_name_cannot_add_lines() {
        let mut s = session(None, None);
        s.name = "pi\r\na=sendonly";
        assert!(s.render().contains("s=pia=sendonly\r\n"));
    }
}
