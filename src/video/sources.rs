//! What `edm-cast video` relays: sources named on the command line or in a TOML file, and the
//! three ways their video comes in (raw H.264 over UDP, RTP, RTSP).

use crate::error::Error;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ingest {
    AnnexB(SocketAddr),
    Rtp(SocketAddr),
    /// Pulled (RTP over the RTSP connection) only while the channel is live.
    Rtsp(url::Url),
}

/// What an ingest task hands the relay loop.
pub(super) enum Feed {
    Datagram(Vec<u8>),
    /// An SPS or PPS from the RTSP server's SDP, to insert before the next IDR.
    ParameterSet(Vec<u8>),
}

pub(super) type FeedTx = mpsc::Sender<(usize, Instant, Feed)>;

impl FromStr for Ingest {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("'{url}': expected udp://[ADDR]:PORT, rtp://[ADDR]:PORT or rtsp://...")
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
        let rest = rest.trim_end_matches('/');
        let addr = match rest.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => rest.to_owned(),
        };
        addr.parse()
            .map(make)
            .map_err(|_| format!("'{url}': '{rest}' is not ADDR:PORT or :PORT"))
    }
}

impl std::fmt::Display for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ingest::AnnexB(a) => write!(f, "raw H.264 on udp://{a}"),
            Ingest::Rtp(a) => write!(f, "RTP on rtp://{a}"),
            Ingest::Rtsp(u) => write!(f, "RTSP from {u}"),
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

fn parse_config(text: &str) -> Result<std::collections::BTreeMap<String, SourceConfig>, String> {
    toml::from_str(text).map_err(|e| e.to_string())
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
        assert!(parse_config("[pi]\nadress = \"udp://:1\"").is_err());
    }

    #[test]
    fn source_urls_parse() {
        assert_eq!(
            "udp://:5000".parse::<Ingest>(),
            Ok(Ingest::AnnexB("0.0.0.0:5000".parse().unwrap()))
        );
        assert_eq!(
            "rtp://127.0.0.1:5002/".parse::<Ingest>(),
            Ok(Ingest::Rtp("127.0.0.1:5002".parse().unwrap()))
        );
        assert_eq!(
            "rtsp://pi:8554/cam".parse::<Ingest>(),
            Ok(Ingest::Rtsp("rtsp://pi:8554/cam".parse().unwrap()))
        );
        assert!("http://x:1".parse::<Ingest>().is_err());
        assert!("udp://nope".parse::<Ingest>().is_err());
    }
}
