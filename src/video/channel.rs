//! One channel on the relay's side: where its video (and audio) comes in, the source command run
//! while it is live, the packetizer and FEC encoders its RTP goes through, and its counts. Whether it is live
//! is the lease table's to say (`edm_cast_proto::video::channel::Leases`).

use super::relay::{AUDIO_PORT, MEDIA_PORT, REPAIR_PORT};
use super::rtsp;
use super::sources::{AudioIn, FeedTx, Ingest};
use crate::rt;
use crate::status::ChannelStatus;
use edm_cast_proto::video::audio::AudioStream;
use edm_cast_proto::video::clock::SourceClock;
use edm_cast_proto::video::fec::{FecConfig, FecEncoder};
use edm_cast_proto::video::h264::{AnnexB, Depacketizer, Packetizer};
use edm_cast_proto::video::ingest::SenderFilter;
use edm_cast_proto::video::rtp::{CLOCK_RATE, RtpHeader};
use edm_cast_proto::video::wire::{AudioInfo, ChannelInfo, FecReport};
use std::net::{IpAddr, SocketAddr};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A live channel with no video out for this long is shown as `source silent`.
pub(super) const SILENT_AFTER: Duration = Duration::from_secs(2);

/// One relayed source.
pub(super) struct Channel {
    pub(super) name: String,
    /// What the SAP announcement's SDP says of it (`i=`; `--description`).
    pub(super) description: Option<String>,
    /// The channel's own multicast group: RTP to `MEDIA_PORT`, REPAIR to `REPAIR_PORT`.
    group: IpAddr,
    pub(super) ingest: Ingest,
    /// Who may feed a pushed source: its ingest task admits datagrams, `--stats` reads the count.
    pub(super) senders: Arc<Mutex<SenderFilter>>,
    on_demand: Option<String>,
    child: Option<Child>,
    puller: Option<tokio::task::JoinHandle<()>>,
    annexb: AnnexB,
    depacketizer: Depacketizer,
    /// An RTP source's video timestamps on the relay's clock (as its audio's: lip sync).
    video_clock: SourceClock,
    pub(super) packetizer: Packetizer,
    /// The video's SSRC (the packetizer's), for its RTCP sender reports.
    pub(super) video_ssrc: u32,
    pub(super) fec: Option<FecEncoder>,
    /// What the audio's FEC encoder is made with, when the track appears.
    fec_config: Option<FecConfig>,
    /// A pushed source's audio port (`?audio=PORT`).
    pub(super) audio_in: Option<AudioIn>,
    /// The audio track: configured for a pushed source, described by an RTSP source.
    pub(super) audio: Option<Audio>,
    /// RTP time 0 of both tracks.
    epoch: Instant,
    pub(super) stats: ChannelStats,
}

/// One NAL unit of a channel's source, as the relay packetizes it.
pub(super) struct Nal {
    pub(super) data: Vec<u8>,
    /// It ends its access unit.
    pub(super) end_of_au: bool,
    /// When its first byte arrived (for the latency figures).
    pub(super) arrived: Instant,
    /// Its access unit's RTP timestamp on the relay's 90 kHz clock.
    pub(super) timestamp: u32,
}

/// A channel's audio track on the relay: restamped onto the relay's clock, with its own FEC
/// windows (its REPAIRs share the repair port; their SSRC says which track they repair).
pub(super) struct Audio {
    pub(super) info: AudioInfo,
    pub(super) stream: AudioStream,
    pub(super) fec: Option<FecEncoder>,
    /// The packet being sent.
    pub(super) packet: Vec<u8>,
    pub(super) bytes: u64,
    pub(super) repair_packets: u64,
    pub(super) repair_bytes: u64,
}

/// What `--stats` prints for a channel.
#[derive(Default)]
pub(super) struct ChannelStats {
    datagrams: u64,
    malformed: u64,
    rtp_packets: u64,
    rtp_bytes: u64,
    repair_packets: u64,
    repair_bytes: u64,
    /// Microseconds from an ingest datagram's arrival to each RTP packet made from it.
    latency_us: Vec<u32>,
    starts: u64,
    /// Times the source went silent (`SILENT_AFTER`) while the channel was live.
    silences: u64,
    /// When the last RTP packet went out since the channel started (None: none yet).
    last_rtp: Option<Instant>,
}

impl ChannelStats {
    /// Counts one RTP packet made from a NAL unit that arrived at `arrived`.
    pub(super) fn rtp_sent(&mut self, bytes: usize, arrived: Instant) {
        self.rtp_packets += 1;
        self.rtp_bytes += bytes as u64;
        self.last_rtp = Some(Instant::now());
        // Bounded, so a relay left running for days does not grow; the percentiles need no more.
        if self.latency_us.len() < 1 << 20 {
            let us = arrived.elapsed().as_micros().min(u32::MAX as u128) as u32;
            self.latency_us.push(us);
        }
    }

    /// Counts the source going silent.
    pub(super) fn went_silent(&mut self) {
        self.silences += 1;
    }

    /// Counts one REPAIR datagram.
    pub(super) fn repair_sent(&mut self, bytes: usize) {
        self.repair_packets += 1;
        self.repair_bytes += bytes as u64;
    }

    /// RTP packets sent since the relay started.
    pub(super) fn rtp_packets(&self) -> u64 {
        self.rtp_packets
    }

    /// Video bytes sent, RTP and REPAIR.
    pub(super) fn bytes(&self) -> u64 {
        self.rtp_bytes + self.repair_bytes
    }

    /// Video RTP bytes sent: all of it, and the payload alone (RTCP's octet count).
    pub(super) fn rtp_bytes(&self) -> (u64, u64) {
        (self.rtp_bytes, self.rtp_bytes - 12 * self.rtp_packets)
    }
}

impl Channel {
    /// Channel `name` on `group`, fed by `ingest` (and `audio_in`); `fec: None` sends no
    /// repair; `epoch` is the relay's RTP time 0.
    pub(super) fn new(
        name: String,
        group: IpAddr,
        ingest: Ingest,
        audio_in: Option<AudioIn>,
        on_demand: Option<String>,
        fec: Option<FecConfig>,
        epoch: Instant,
    ) -> Self {
        let camera = ingest.listen().and_then(|l| l.camera);
        let video_ssrc = rt::random_u64() as u32;
        let mut channel = Channel {
            name,
            description: None,
            group,
            senders: Arc::new(Mutex::new(SenderFilter::new(camera))),
            ingest,
            on_demand,
            child: None,
            puller: None,
            annexb: AnnexB::default(),
            depacketizer: Depacketizer::default(),
            video_clock: SourceClock::new(CLOCK_RATE, epoch),
            packetizer: Packetizer::new(video_ssrc, rt::random_u64() as u16),
            video_ssrc,
            fec: fec.map(FecEncoder::new),
            fec_config: fec,
            audio_in: None,
            audio: None,
            epoch,
            stats: ChannelStats::default(),
        };
        channel.set_audio(audio_in.as_ref().map(|a| a.info.clone()));
        channel.audio_in = audio_in;
        channel
    }

    /// Gives the channel an audio track described by `info` (or none); true if that changed it.
    /// A track that stays the same keeps its SSRC and sequence numbers.
    pub(super) fn set_audio(&mut self, info: Option<AudioInfo>) -> bool {
        if self.audio.as_ref().map(|a| &a.info) == info.as_ref() {
            return false;
        }
        self.audio = info.map(|info| Audio {
            stream: AudioStream::new(
                rt::random_u64() as u32,
                rt::random_u64() as u16,
                info.codec,
                info.clock_rate,
                self.epoch,
            ),
            info,
            fec: self.fec_config.map(|f| FecEncoder::new(f.for_audio())),
            packet: Vec::with_capacity(1500),
            bytes: 0,
            repair_packets: 0,
            repair_bytes: 0,
        });
        true
    }

    /// The channel as announced; idle until the lease table makes it live.
    pub(super) fn info(&self) -> ChannelInfo {
        ChannelInfo {
            name: self.name.clone(),
            live: false,
            group: self.group,
            media_port: MEDIA_PORT,
            repair_port: if self.fec.is_some() { REPAIR_PORT } else { 0 },
            audio: self.audio.as_ref().map(|a| a.info.clone()),
        }
    }

    /// Where its audio RTP packets go.
    pub(super) fn audio_media(&self) -> SocketAddr {
        SocketAddr::new(self.group, AUDIO_PORT)
    }

    /// Where the RTCP sender reports of its video (`audio: false`) or audio go: the RTP port's
    /// next one (RFC 3550 section 11).
    pub(super) fn rtcp(&self, audio: bool) -> SocketAddr {
        let port = if audio { AUDIO_PORT } else { MEDIA_PORT };
        SocketAddr::new(self.group, port + 1)
    }

    /// The channel's own multicast group.
    pub(super) fn group(&self) -> IpAddr {
        self.group
    }

    /// Where its RTP packets go.
    pub(super) fn media(&self) -> SocketAddr {
        SocketAddr::new(self.group, MEDIA_PORT)
    }

    /// Where its REPAIR datagrams go.
    pub(super) fn repair(&self) -> SocketAddr {
        SocketAddr::new(self.group, REPAIR_PORT)
    }

    /// The first lease came: start the source command (and the RTSP pull), and the RTP output at
    /// an access unit boundary. `i` is the channel's index in what `feeds` carries.
    pub(super) fn start(&mut self, i: usize, feeds: &FeedTx) {
        self.stats.starts += 1;
        self.stats.last_rtp = None;
        self.packetizer.reset_access_unit();
        self.video_clock.reset();
        if let Some(a) = &mut self.audio {
            a.stream.reset();
        }
        self.start_source();
        if let Ingest::Rtsp(url) = &self.ingest {
            let pull = rtsp::pull(i, url.clone(), self.name.clone(), feeds.clone());
            self.puller = Some(tokio::spawn(pull));
        }
        eprintln!(
            "video: {}: started, relaying to {}{}",
            self.name,
            self.media(),
            if self.child.is_some() {
                " (source command started)"
            } else {
                ""
            }
        );
    }

    /// The grace period after the last lease ran out: stop the source and the RTSP pull.
    pub(super) fn stop(&mut self) {
        self.stop_source();
        // Dropping the RTSP session sends TEARDOWN.
        if let Some(p) = self.puller.take() {
            p.abort();
        }
        eprintln!(
            "video: {}: stopped (no viewer for the grace period)",
            self.name
        );
    }

    fn start_source(&mut self) {
        let Some(cmd) = &self.on_demand else { return };
        use std::os::unix::process::CommandExt;
        match std::process::Command::new("sh")
            .args(["-c", cmd])
            .process_group(0)
            .stdin(std::process::Stdio::null())
            // Our stdout carries only the --stats figures.
            .stdout(std::io::stderr())
            .spawn()
        {
            Ok(c) => self.child = Some(c),
            Err(e) => eprintln!("video: {}: cannot start '{cmd}': {e}", self.name),
        }
    }

    /// Ends the source command, if one runs: SIGTERM to its process group, SIGKILL 5 s later.
    pub(super) fn stop_source(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the process group we created for this child.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGTERM) };
            // Reaped off the event loop: a source may take a moment to exit.
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(5);
                while Instant::now() < end {
                    if matches!(c.try_wait(), Ok(Some(_))) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                // SAFETY: as above; the group ignored SIGTERM.
                unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
                let _ = c.wait();
            });
        }
    }

    /// Splits one ingest datagram (raw H.264, or RTP) into NAL units: each with whether it ends
    /// its access unit, when its first byte arrived, and its timestamp on the relay's 90 kHz clock
    /// (VIDEO.md section 3): a raw stream's, that arrival; an RTP source's, its own timestamp
    /// mapped by `SourceClock`, like its audio's, so that a busy relay delays both alike.
    pub(super) fn nal_units(&mut self, arrived: Instant, data: &[u8]) -> Vec<Nal> {
        self.stats.datagrams += 1;
        let mut nals = Vec::new();
        match self.ingest {
            Ingest::AnnexB(_) => {
                self.annexb.push(arrived, data);
                while let Some(n) = self.annexb.poll_nal() {
                    let timestamp = self.video_clock.rtp_time(n.arrived);
                    nals.push(Nal {
                        data: n.data,
                        end_of_au: n.end_of_au,
                        arrived: n.arrived,
                        timestamp,
                    });
                }
            }
            Ingest::Rtp(_) | Ingest::Rtsp(_) => match RtpHeader::parse(data) {
                Ok((h, payload)) => {
                    let timestamp = self.video_clock.stamp(arrived, h.ssrc, h.timestamp, 0);
                    self.depacketizer.push(&h, payload);
                    while let Some((data, end_of_au)) = self.depacketizer.poll_nal() {
                        nals.push(Nal {
                            data,
                            end_of_au,
                            arrived,
                            timestamp,
                        });
                    }
                }
                Err(_) => self.stats.malformed += 1,
            },
        }
        nals
    }

    /// What it is doing, for the dashboard: `idle` (nobody watches), `starting` (live, no video
    /// out yet), `relaying`, or `source silent` (live, no video for `SILENT_AFTER`).
    pub(super) fn state(&self, live: bool, now: Instant) -> &'static str {
        match self.stats.last_rtp {
            _ if !live => "idle",
            None => "starting",
            Some(t) if now.saturating_duration_since(t) >= SILENT_AFTER => "source silent",
            Some(_) => "relaying",
        }
    }

    /// The channel as the dashboard shows it; `bitrate_bps` is measured by the caller, `fec` is
    /// what the viewers reported (`Leases::fec`).
    pub(super) fn status(
        &self,
        state: &str,
        viewers: usize,
        bitrate_bps: f64,
        fec: FecReport,
    ) -> ChannelStatus {
        ChannelStatus {
            name: self.name.clone(),
            group: self.media().to_string(),
            state: state.to_owned(),
            viewers,
            bitrate_bps,
            packets: self.stats.rtp_packets,
            repair_packets: self.stats.repair_packets,
            fec_repaired: fec.repaired,
            fec_lost: fec.lost,
        }
    }

    /// The `--stats` line.
    pub(super) fn print_stats(&mut self) {
        let s = &mut self.stats;
        s.latency_us.sort_unstable();
        let pct = |p: f64| {
            s.latency_us
                .get(((s.latency_us.len() as f64 - 1.0) * p).round() as usize)
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        println!(
            "{}: {} ingest datagrams ({} malformed), {} starts ({} times the source went silent); \
             {} RTP packets ({} bytes), {} repair \
             packets ({} bytes), FEC overhead {:.1}%; relay latency p50 {:.3} ms p99 {:.3} ms; \
             refused: {} datagrams from other senders, {} NAL units over the bounds",
            self.name,
            s.datagrams,
            // Unparsable RTP, broken fragments and oversized NAL units.
            s.malformed + self.depacketizer.dropped + self.annexb.oversized,
            s.starts,
            s.silences,
            s.rtp_packets,
            s.rtp_bytes,
            s.repair_packets,
            s.repair_bytes,
            100.0 * s.repair_bytes as f64 / s.rtp_bytes.max(1) as f64,
            pct(0.5),
            pct(0.99),
            self.senders.lock().expect("not poisoned").refused,
            self.annexb.over_bounds + self.depacketizer.over_bounds,
        );
        if let Some(a) = &self.audio {
            let s = a.stream.stats;
            println!(
                "{} audio: {} RTP packets ({} bytes), {} repair packets ({} bytes); {} dropped \
                 (not RTP, RTCP or oversized), timestamps mapped again {} times",
                self.name,
                s.relayed,
                a.bytes,
                a.repair_packets,
                a.repair_bytes,
                s.dropped,
                s.remapped
            );
        }
    }
}
