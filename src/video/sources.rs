//! What `edm-cast video` relays: sources named on the command line or in a TOML file, the
//! three ways their video comes in (raw H.264 over UDP, RTP, RTSP), and a pushed source's audio
//! (RTP on a second port, named in the URL's query: `?audio=PORT&aac=CONFIG` or `&opus`).

use crate::error::Error;
use edm_cast_proto::video::audio::aac_config;
use edm_cast_proto::video::wire::{AudioCodec, AudioInfo, MAX_AUDIO_CONFIG};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ingest {
    AnnexB(Listen),
    Rtp(Listen),
    /// Pulled (RTP over the RTSP connection) only while the channel is live.
    Rtsp(url::Url),
}

/// Where a pushed source arrives, and from whom it is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Listen {
    pub(super) addr: SocketAddr,
    /// The camera's address (`udp://CAMERA@:5000`); without it the first sender is taken and
    /// kept while it sends (`edm_cast_proto::video::ingest::SenderFilter`).
    pub(super) camera: Option<IpAddr>,
}

impl Ingest {
    /// The socket a pushed source arrives on; None for RTSP, which is pulled.
    pub(super) fn listen(&self) -> Option<Listen> {
        match self {
            Ingest::AnnexB(l) | Ingest::Rtp(l) => Some(*l),
            Ingest::Rtsp(_) => None,
        }
    }

    fn scheme(&self) -> &'static str {
        match self {
            Ingest::AnnexB(_) => "udp",
            Ingest::Rtp(_) => "rtp",
            Ingest::Rtsp(_) => "rtsp",
        }
    }

    /// The warning for a pushed source that any host may feed, if it is one: one that names no
    /// camera and listens beyond this host.
    pub(super) fn warning(&self, name: &str) -> Option<String> {
        let l = self.listen().filter(|l| l.camera.is_none())?;
        if l.addr.ip().is_loopback() {
            return None;
        }
        Some(format!(
            "video: {name}: ANY host on the network can send video to {}: the first sender is taken and kept while it sends; name the camera so that only it is: --source {name}={}://CAMERA@{}",
            l.addr,
            self.scheme(),
            l.addr
        ))
    }
}

/// A pushed source's audio track: RTP arriving on `addr`, described by `info` (whose port is
/// where the relay sends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AudioIn {
    pub(super) addr: SocketAddr,
    pub(super) info: AudioInfo,
}

impl AudioIn {
    /// The audio a pushed source's URL names in its query (`rtp://:5002?audio=5012&aac=1190`,
    /// `udp://:5000?audio=5012&opus`), sent on to the channel's `port`; None without a query.
    /// The URL is checked by `Ingest`'s parser too, which ignores the query.
    pub(super) fn from_url(url: &str, port: u16) -> Result<Option<AudioIn>, String> {
        if url.starts_with("rtsp://") {
            return Ok(None);
        }
        let Some((base, query)) = url.split_once('?') else {
            return Ok(None);
        };
        let usage = "?audio=PORT&aac=CONFIG (the hex AudioSpecificConfig of the source's SDP, \
                     config=...) or ?audio=PORT&opus";
        let (mut audio_port, mut codec) = (None, None);
        for param in query.split('&') {
            match param.split_once('=') {
                Some(("audio", p)) => {
                    audio_port =
                        Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                            format!("'{url}': audio port '{p}' is not a port number")
                        })?)
                }
                Some(("aac", hex)) => {
                    let config = data_encoding::HEXLOWER_PERMISSIVE
                        .decode(hex.as_bytes())
                        .ok()
                        .filter(|c| c.len() <= MAX_AUDIO_CONFIG);
                    let parsed = config.as_deref().and_then(aac_config);
                    let (Some(config), Some((rate, channels))) = (config.clone(), parsed) else {
                        return Err(format!(
                            "'{url}': aac={hex} is not an AAC AudioSpecificConfig in hex (e.g. 1190: 48 kHz stereo)"
                        ));
                    };
                    codec = Some((AudioCodec::Aac, rate, channels, config));
                }
                None if param == "opus" => codec = Some((AudioCodec::Opus, 48_000, 2, vec![])),
                _ => return Err(format!("'{url}': unknown '{param}'; expected {usage}")),
            }
        }
        let (Some(audio_port), Some((codec, clock_rate, channels, config))) = (audio_port, codec)
        else {
            return Err(format!("'{url}': audio needs a port and a codec: {usage}"));
        };
        let video: Ingest = base.parse()?;
        let listen = video.listen().expect("a pushed source");
        Ok(Some(AudioIn {
            addr: SocketAddr::new(listen.addr.ip(), audio_port),
            info: AudioInfo {
                port,
                codec,
                clock_rate,
                channels,
                config,
            },
        }))
    }
}

/// What an ingest task hands the relay loop.
pub(super) enum Feed {
    Datagram(Vec<u8>),
    /// An RTP packet of the channel's audio track.
    Audio(Vec<u8>),
    /// An RTSP source's audio track, once described (None: it has none the relay can send).
    AudioTrack(Option<AudioInfo>),
    /// An SPS or PPS from the RTSP server's SDP, to insert before the next IDR.
    ParameterSet(Vec<u8>),
}

pub(super) type FeedTx = mpsc::Sender<(usize, Instant, Feed)>;

impl FromStr for Ingest {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!(
                "'{url}': expected udp://[CAMERA@][ADDR]:PORT, rtp://[CAMERA@][ADDR]:PORT or rtsp://..."
            )
        })?;
        let make = match scheme {
            "udp" => Ingest::AnnexB,
            "rtp" => Ingest::Rtp,
            "rtsp" => {
                return url::Url::parse(url)
                    .map(Ingest::Rtsp)
                    .map_err(|e| format!("'{url}': {e}"));
            }
            other => {
                return Err(format!(
                    "'{url}': unknown scheme '{other}' (udp, rtp or rtsp)"
                ));
            }
        };
        // The query names the audio (`AudioIn::from_url`).
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        let rest = rest.trim_end_matches('/');
        let (camera, rest) = match rest.split_once('@') {
            Some((camera, rest)) => {
                let camera = camera.trim_matches(['[', ']']).parse().map_err(|_| {
                    format!(
                        "'{url}': '{camera}' is not the camera's IP address (CAMERA@[ADDR]:PORT)"
                    )
                })?;
                (Some(camera), rest)
            }
            None => (None, rest),
        };
        let addr = match rest.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => rest.to_owned(),
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("'{url}': '{rest}' is not ADDR:PORT or :PORT"))?;
        Ok(make(Listen { addr, camera }))
    }
}

impl std::fmt::Display for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, l) = match self {
            Ingest::AnnexB(l) => ("raw H.264", l),
            Ingest::Rtp(l) => ("RTP", l),
            Ingest::Rtsp(u) => return write!(f, "RTSP from {u}"),
        };
        write!(f, "{what} on {}://{}", self.scheme(), l.addr)?;
        match l.camera {
            Some(camera) => write!(f, " from {camera} only"),
            None => write!(f, " from its first sender"),
        }
    }
}

/// One source in the `--config` file.
#[derive(Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceConfig {
    pub(super) url: Option<String>,
    pub(super) run_on_demand: Option<String>,
}

/// The sources: the file's tables. Its other keys are `video`'s options (src/config.rs reads them).
fn parse_config(text: &str) -> Result<std::collections::BTreeMap<String, SourceConfig>, String> {
    let file: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    file.into_iter()
        .filter(|(_, v)| v.is_table())
        .map(|(name, v)| match v.try_into() {
            Ok(source) => Ok((name, source)),
            Err(e) => Err(format!("[{name}]: {e}")),
        })
        .collect()
}

pub(super) fn load_config(
    path: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, SourceConfig>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_config(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

pub(super) fn split_named(s: &str, what: &str) -> Result<(String, String), Error> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| Error::Usage(format!("{what} '{s}': expected NAME=VALUE")))?;
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_parse() {
        let c = parse_config(
            "[pi]\nurl = \"udp://:5000\"\n\n[door]\nurl = \"rtsp://door:8554/cam\"\n\
             run_on_demand = \"ffmpeg -i x\"\n[bare]\n",
        )
        .unwrap();
        assert_eq!(c.keys().collect::<Vec<_>>(), ["bare", "door", "pi"]);
        assert_eq!(c["door"].run_on_demand.as_deref(), Some("ffmpeg -i x"));
        assert_eq!(c["bare"], SourceConfig::default());
        assert!(parse_config("[pi]\nurl = 5").is_err());
        // The camera's address goes in the URL, as on the command line.
        let c = parse_config("[pi]\nurl = \"udp://10.0.0.7@:5000\"\n").unwrap();
        let ingest: Ingest = c["pi"].url.as_deref().unwrap().parse().unwrap();
        assert_eq!(ingest.listen().unwrap().camera, Some([10, 0, 0, 7].into()));
        assert!(parse_config("[pi]\nadress = \"udp://:1\"").is_err());
        // Keys outside the tables are options, not sources.
        let c = parse_config("group = \"239.255.9.1\"\n[pi]\nurl = \"udp://:5000\"\n").unwrap();
        assert_eq!(c.keys().collect::<Vec<_>>(), ["pi"]);
    }

    #[test]
    fn audio_is_named_in_the_query() {
        let aac = AudioIn::from_url("rtp://10.0.0.7@127.0.0.1:5002?audio=5012&aac=1190", 5008);
        assert_eq!(
            aac,
            Ok(Some(AudioIn {
                addr: "127.0.0.1:5012".parse().unwrap(),
                info: AudioInfo {
                    port: 5008,
                    codec: AudioCodec::Aac,
                    clock_rate: 48_000,
                    channels: 2,
                    config: vec![0x11, 0x90],
                },
            }))
        );
        let opus = AudioIn::from_url("udp://:5000?opus&audio=5012", 5008)
            .unwrap()
            .unwrap();
        assert_eq!(opus.addr, "0.0.0.0:5012".parse().unwrap());
        assert_eq!(
            (opus.info.codec, opus.info.clock_rate, opus.info.channels),
            (AudioCodec::Opus, 48_000, 2)
        );
        assert_eq!(AudioIn::from_url("rtp://:5002", 5008), Ok(None));
        assert_eq!(AudioIn::from_url("rtsp://pi/cam?x=1", 5008), Ok(None));
        for (url, says) in [
            ("rtp://:5002?audio=5012", "needs a port and a codec"),
            ("rtp://:5002?aac=1190", "needs a port and a codec"),
            ("rtp://:5002?audio=0&opus", "not a port number"),
            (
                "rtp://:5002?audio=5012&aac=11",
                "not an AAC AudioSpecificConfig",
            ),
            (
                "rtp://:5002?audio=5012&aac=zz",
                "not an AAC AudioSpecificConfig",
            ),
            ("rtp://:5002?audio=5012&mp3", "unknown 'mp3'"),
        ] {
            let e = AudioIn::from_url(url, 5008).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn source_urls_parse() {
        let listen = |addr: &str, camera: Option<&str>| Listen {
            addr: addr.parse().unwrap(),
            camera: camera.map(|c| c.parse().unwrap()),
        };
        assert_eq!(
            "udp://:5000".parse::<Ingest>(),
            Ok(Ingest::AnnexB(listen("0.0.0.0:5000", None)))
        );
        assert_eq!(
            "rtp://127.0.0.1:5002/".parse::<Ingest>(),
            Ok(Ingest::Rtp(listen("127.0.0.1:5002", None)))
        );
        assert_eq!(
            "udp://10.0.0.7@:5000".parse::<Ingest>(),
            Ok(Ingest::AnnexB(listen("0.0.0.0:5000", Some("10.0.0.7"))))
        );
        assert_eq!(
            "rtp://[fe80::1]@127.0.0.1:5002".parse::<Ingest>(),
            Ok(Ingest::Rtp(listen("127.0.0.1:5002", Some("fe80::1"))))
        );
        let e = "udp://pi.local@:5000".parse::<Ingest>().unwrap_err();
        assert!(e.contains("not the camera's IP address"), "{e}");
        assert_eq!(
            "rtsp://pi:8554/cam".parse::<Ingest>(),
            Ok(Ingest::Rtsp("rtsp://pi:8554/cam".parse().unwrap()))
        );
        assert!("http://x:1".parse::<Ingest>().is_err());
        assert_eq!(
            "rtp://10.0.0.7@:5002?audio=5012&aac=1190".parse::<Ingest>(),
            Ok(Ingest::Rtp(listen("0.0.0.0:5002", Some("10.0.0.7"))))
        );
        assert!("udp://nope".parse::<Ingest>().is_err());
    }
}
