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

/// Pulls `url` (RTSP over TCP, via retina) while the channel is live, reconnecting after a second
/// when the server goes away: its RTP packets go through the same path as `rtp://` ingest.
pub(super) async fn pull(i: usize, url: url::Url, name: String, tx: FeedTx) {
    loop {
        match pull_once(i, &url, &tx).await {
            Ok(()) => eprintln!("video: {name}: {url} ended; reconnecting in 1 s"),
            Err(e) => eprintln!("video: {name}: {url}: {e}; retrying in 1 s"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn pull_once(i: usize, url: &url::Url, tx: &FeedTx) -> Result<(), String> {
    use futures_util::StreamExt;
    use retina::client::{
        InitialTimestampPolicy, PacketItem, PlayOptions, Session, SessionOptions, SetupOptions,
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
    let mut playing = session.play(options).await.map_err(|e| e.to_string())?;
    while let Some(item) = playing.next().await {
        if let PacketItem::Rtp(p) = item.map_err(|e| e.to_string())? {
            let feed = match p.stream_id() {
                s if s == stream => Feed::Datagram(p.raw().to_vec()),
                s if Some(s) == audio_stream => Feed::Audio(p.raw().to_vec()),
                _ => continue,
            };
            tx.send((i, Instant::now(), feed))
                .await
                .map_err(|_| "the relay stopped")?;
        }
    }
    Ok(())
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
