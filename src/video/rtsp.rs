//! RTSP sources (MediaMTX's `rpiCamera`, IP cameras), pulled with retina only while a channel is
//! live: their RTP packets take the same path as `rtp://` ingest.

use super::sources::{Feed, FeedTx};
use edm_cast_proto::video::h264::avcc_parameter_sets;
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
    use retina::client::{PacketItem, PlayOptions, Session, SessionOptions, SetupOptions};
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
    let mut playing = session
        .play(PlayOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    while let Some(item) = playing.next().await {
        if let PacketItem::Rtp(p) = item.map_err(|e| e.to_string())?
            && p.stream_id() == stream
        {
            let feed = Feed::Datagram(p.raw().to_vec());
            tx.send((i, Instant::now(), feed))
                .await
                .map_err(|_| "the relay stopped")?;
        }
    }
    Ok(())
}
