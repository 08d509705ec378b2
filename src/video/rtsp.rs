//! RTSP sources (MediaMTX's `rpiCamera`, IP cameras), pulled with retina only while a channel is
//! live: their RTP packets take the same path as `rtp://` ingest. An AAC (`mpeg4-generic`) or
//! Opus audio track, if the server has one, is set up too and its RTP packets forwarded as they
//! are, like a pushed source's `?audio=` port.

use super::relay::AUDIO_PORT;
use super::sources::{Feed, FeedTx};
use edm_cast_proto::video::audio::aac_config;
use edm_cast_proto::video::h264::avcc_parameter_sets;
use edm_cast_proto::video::wire::{AudioCodec, AudioInfo, MAX_AUDIO_CONFIG};
use std::time::{Duration, Instant};

/// A session that brings no RTP for this long is torn down and set up again: a server at the end
/// of its clip, or a camera that hung, keeps the connection open and sends nothing. The relay
/// reports the silence first (`channel::SILENT_AFTER`, 2 s).
const SILENT_RECONNECT: Duration = Duration::from_secs(4);

/// DESCRIBE, SETUP and PLAY together get this long: a server that takes the connection and never
/// answers is tried again.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before the next attempt: 1 s after a session that brought video, then twice as
/// long after each attempt that brought none, at most 8 s, so a server that is down for minutes
/// costs a connection attempt every 8 s and one that comes back is pulled within 8 s.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(8);

    /// The wait after an attempt; `delivered`: it brought video.
    fn next(&mut self, delivered: bool) -> Duration {
        if delivered {
            self.0 = Self::FIRST;
        }
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        wait
    }
}

/// Pulls `url` (RTSP over TCP, via retina) while the channel is live, reconnecting with
/// `Backoff` when the session ends, fails or goes silent: its RTP packets go through the same
/// path as `rtp://` ingest.
pub(super) async fn pull(i: usize, url: url::Url, name: String, tx: FeedTx) {
    let mut backoff = Backoff(Backoff::FIRST);
    loop {
        let mut delivered = false;
        let ended = pull_once(i, &url, &tx, &mut delivered).await;
        if tx.is_closed() {
            return;
        }
        let wait = backoff.next(delivered).as_secs();
        match ended {
            Ok(()) => eprintln!("video: {name}: {url} ended; reconnecting in {wait} s"),
            Err(e) => eprintln!("video: {name}: {url}: {e}; reconnecting in {wait} s"),
        }
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

/// One RTSP session: set up within `SETUP_TIMEOUT`, then relayed until it ends, fails, or brings
/// no RTP for `SILENT_RECONNECT`; `delivered` is set at its first RTP packet.
async fn pull_once(
    i: usize,
    url: &url::Url,
    tx: &FeedTx,
    delivered: &mut bool,
) -> Result<(), String> {
    use futures_util::StreamExt;
    use retina::client::PacketItem;
    let (mut playing, stream, audio_stream) = tokio::time::timeout(SETUP_TIMEOUT, play(i, url, tx))
        .await
        .map_err(|_| format!("no answer in {} s", SETUP_TIMEOUT.as_secs()))??;
    let mut silent_at = Instant::now() + SILENT_RECONNECT;
    loop {
        let Ok(item) = tokio::time::timeout_at(silent_at.into(), playing.next()).await else {
            return Err(format!("no video for {} s", SILENT_RECONNECT.as_secs()));
        };
        let Some(item) = item else { return Ok(()) };
        if let PacketItem::Rtp(p) = item.map_err(|e| e.to_string())? {
            // Only video counts as the source being alive: audio alone is no picture.
            let feed = match p.stream_id() {
                s if s == stream => {
                    *delivered = true;
                    silent_at = Instant::now() + SILENT_RECONNECT;
                    Feed::Datagram(p.raw().to_vec())
                }
                s if Some(s) == audio_stream => Feed::Audio(p.raw().to_vec()),
                _ => continue,
            };
            tx.send((i, Instant::now(), feed))
                .await
                .map_err(|_| "the relay stopped")?;
        }
    }
}

/// The session playing, its H.264 stream's index and its audio stream's, if it has one.
type Playing = (
    retina::client::Session<retina::client::Playing>,
    usize,
    Option<usize>,
);

/// DESCRIBE, SETUP of the H.264 stream (its parameter sets go to the relay) and of an AAC or Opus
/// track if there is one (its description goes to the relay), and PLAY.
async fn play(i: usize, url: &url::Url, tx: &FeedTx) -> Result<Playing, String> {
    use retina::client::{
        InitialTimestampPolicy, PlayOptions, Session, SessionOptions, SetupOptions,
    };
    let options = SessionOptions::default().user_agent("edm-cast".into());
    let mut session = Session::describe(url.clone(), options)
        .await
        .map_err(|e| e.to_string())?;
    let stream = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && s.encoding_name() == "h264")
        .ok_or("no H.264 video stream")?;
    session
        .setup(stream, SetupOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(retina::codec::ParametersRef::Video(v)) = session.streams()[stream].parameters() {
        for nal in avcc_parameter_sets(v.extra_data()) {
            let _ = tx.send((i, Instant::now(), Feed::ParameterSet(nal))).await;
        }
    }
    let audio = session.streams().iter().enumerate().find_map(|(j, s)| {
        let info = audio_info(s)?;
        Some((j, info))
    });
    if let Some((j, _)) = &audio {
        session
            .setup(*j, SetupOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    }
    let (audio_stream, info) = audio.unzip();
    let _ = tx.send((i, Instant::now(), Feed::AudioTrack(info))).await;
    // Servers that send no rtptime in PLAY's RTP-Info are taken: the relay stamps the video by
    // arrival and maps the audio's timestamps itself (VIDEO.md 3.1), so retina's start does not
    // matter. With two streams retina otherwise refuses them.
    let options = PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive);
    let playing = session.play(options).await.map_err(|e| e.to_string())?;
    Ok((playing, stream, audio_stream))
}

/// What the relay can say of an RTSP stream as its audio track: AAC with an AudioSpecificConfig
/// whose rate and channels it can read, or Opus; None for anything else.
fn audio_info(s: &retina::client::Stream) -> Option<AudioInfo> {
    if s.media() != "audio" {
        return None;
    }
    let (codec, clock_rate, channels, config) = match s.encoding_name() {
        "mpeg4-generic" => {
            let Some(retina::codec::ParametersRef::Audio(a)) = s.parameters() else {
                return None;
            };
            let config = a.extra_data();
            let (rate, channels) = aac_config(config)?;
            (config.len() <= MAX_AUDIO_CONFIG).then_some(())?;
            (AudioCodec::Aac, rate, channels, config.to_vec())
        }
        "opus" => (AudioCodec::Opus, 48_000, 2, vec![]),
        _ => return None,
    };
    Some(AudioInfo {
        port: AUDIO_PORT,
        codec,
        clock_rate,
        channels,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_bound_and_restarts_after_video() {
        let mut b = Backoff(Backoff::FIRST);
        let secs: Vec<u64> = (0..6).map(|_| b.next(false).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 8, 8]);
        assert_eq!(b.next(true).as_secs(), 1);
        assert_eq!(b.next(false).as_secs(), 2);
    }
}
