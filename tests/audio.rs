//! A channel's audio track, through the real binaries on loopback: ffmpeg streams a clip's H.264
//! and AAC as two RTP streams (as `ffmpeg -f rtp` sends them) to `video --source
//! pi=rtp://...?audio=PORT&aac=CONFIG`, a `watch` forwards both tracks, and ffmpeg records them
//! from `watch`'s SDP. Every audio packet recorded must be the source's, in order, none missing
//! (framemd5 of the packets, `-c copy`), every video frame from the first keyframe on the clip's,
//! and the two tracks in sync: the recording's audio-to-video offset the clip's, audio at most
//! 45 ms early or 125 ms late.
//! Needs ffmpeg; skips with a message without it, and fails instead under EDM_CAST_REQUIRE_LAB.

mod common;

use common::lab::tool_available;
use common::{Proc, TempDir, bin, text};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs ffmpeg (at most 60 s) with `args`, quietly.
fn ffmpeg(args: &[&str]) -> Output {
    Command::new("timeout")
        .args([
            "60",
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// `(pts in seconds, md5)` of each frame (video, decoded) or packet (audio, `-c copy`) of the
/// first stream `map` selects in `file`, from ffmpeg's framemd5; `how` (what made the file) is
/// shown if it holds no such stream.
fn framemd5(file: &Path, map: &str, copy: bool, how: &str) -> Vec<(f64, String)> {
    let file = file.to_str().unwrap();
    // Every frame as it comes: not made constant-rate, which drops or repeats frames whose
    // timestamps (the relay's arrival times) jitter.
    let mut args = vec!["-i", file, "-map", map, "-fps_mode", "passthrough"];
    if copy {
        args.extend(["-c", "copy"]);
    }
    args.extend(["-f", "framemd5", "-"]);
    let out = ffmpeg(&args);
    let listing = String::from_utf8_lossy(&out.stdout);
    let tb = listing
        .lines()
        .find_map(|l| l.strip_prefix("#tb 0: "))
        .and_then(|tb| tb.split_once('/'))
        .map(|(n, d)| n.trim().parse::<f64>().unwrap() / d.trim().parse::<f64>().unwrap())
        .unwrap_or_else(|| {
            let made = std::fs::metadata(file).map(|m| m.len());
            panic!("no time base for {file} {map} ({made:?} bytes): {listing}\n{how}")
        });
    listing
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            (f[2].parse::<f64>().unwrap() * tb, f[5].to_owned())
        })
        .collect()
}

/// Where `got` starts in `source` (by its first item found there), checking that from there on
/// it is `source`'s run, none missing or different: (index in `got`, index in `source`).
fn contiguous(what: &str, source: &[(f64, String)], got: &[(f64, String)]) -> (usize, usize) {
    let (start, first) = got
        .iter()
        .enumerate()
        .find_map(|(i, (_, h))| source.iter().position(|(_, s)| s == h).map(|s| (i, s)))
        .unwrap_or_else(|| panic!("{what}: nothing recorded is the source's"));
    for (k, (_, h)) in got[start..].iter().enumerate() {
        assert_eq!(
            source.get(first + k).map(|(_, s)| s),
            Some(h),
            "{what}: recorded {} (source {}) differs",
            start + k,
            first + k
        );
    }
    (start, first)
}

/// A free UDP port on loopback (bound, then let go).
fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// The source: the fake Pi's clip (tools/fakepi.sh encode), 10 s of a 440 Hz tone at 48 kHz
/// stereo coded by `encoder` (aac, libopus), both in one file (so that ffmpeg's -re sends them on one clock: from two
/// inputs, each starts its own, hundreds of milliseconds apart), and the AAC's
/// AudioSpecificConfig as the source's SDP gives it (what a user copies into the URL).
struct Clip {
    clip: String,
    audio: String,
    av: String,
    config: String,
}

fn make_clip(dir: &Path, encoder: &str) -> Clip {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (clip, audio) = (p("clip.h264"), p("audio.mka"));
    // The fake Pi's clip (tools/fakepi.sh encode) and 10 s of a 440 Hz tone, 48 kHz stereo.
    let made = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-t",
        "10",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-threads",
        "1",
        "-g",
        "30",
        "-keyint_min",
        "30",
        "-sc_threshold",
        "0",
        "-bf",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "h264",
        &clip,
    ]);
    assert!(made.status.success(), "{:?}", text(&made));
    let made = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=10",
        "-ac",
        "2",
        "-c:a",
        encoder,
        "-b:a",
        "96k",
        &audio,
    ]);
    assert!(made.status.success(), "{:?}", text(&made));
    // One file holding both, so that ffmpeg's -re sends them on one clock (two inputs each
    // start their own: hundreds of milliseconds apart).
    let av = p("av.mkv");
    let made = ffmpeg(&[
        "-framerate",
        "30",
        "-i",
        &clip,
        "-i",
        &audio,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c",
        "copy",
        &av,
    ]);
    assert!(made.status.success(), "{:?}", text(&made));
    // The AudioSpecificConfig, as the source's SDP gives it (what a user copies into the URL).
    let sdp = p("source.sdp");
    ffmpeg(&[
        "-i",
        &audio,
        "-c",
        "copy",
        "-t",
        "0.05",
        "-f",
        "rtp",
        "-sdp_file",
        &sdp,
        "rtp://127.0.0.1:9",
    ]);
    let source_sdp = std::fs::read_to_string(&sdp).unwrap();
    // Opus has none.
    let config = source_sdp
        .split(['\n', ';', ' '])
        .find_map(|f| f.trim().strip_prefix("config="))
        .unwrap_or_default()
        .to_owned();

    Clip {
        clip,
        audio,
        av,
        config,
    }
}

/// ffmpeg sending `av` in real time as RTP: video to `video_port`, audio to `audio_port`; with
/// `sdp`, the SDP of both written there.
fn stream(av: &str, video_port: u16, audio_port: u16, sdp: Option<&Path>) -> Proc {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "30",
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
    ])
    .args(["-re", "-i", av, "-map", "0:v", "-c", "copy"])
    .args(["-bsf:v", "h264_mp4toannexb", "-f", "rtp"])
    .arg(format!("rtp://127.0.0.1:{video_port}?pkt_size=1316"))
    .args(["-map", "0:a", "-c", "copy", "-f", "rtp"])
    .arg(format!("rtp://127.0.0.1:{audio_port}"));
    if let Some(sdp) = sdp {
        cmd.arg("-sdp_file").arg(sdp);
    }
    Proc::spawn("source", cmd.stdout(std::process::Stdio::null()))
}

/// Waits (at most 10 s) for `watch` to write its SDP; its text.
fn watch_sdp_of(path: &Path) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < end, "watch wrote no SDP");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(path).unwrap()
}

/// ffmpeg recording both tracks from `watch`'s SDP, 5 s, ended while the source still sends
/// (ffmpeg reading RTP that stopped does not stop on SIGINT).
fn record(sdp: &Path, recording: &Path) -> Proc {
    Proc::spawn(
        "capture",
        Command::new("timeout")
            .args([
                "-s",
                "INT",
                "15",
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
            ])
            .args(["-nostdin", "-protocol_whitelist", "file,udp,rtp"])
            .args(["-buffer_size", "8388608", "-i"])
            .arg(sdp)
            .args(["-map", "0", "-c", "copy", "-t", "5", "-f", "matroska"])
            .arg(recording),
    )
}

/// The recording against the source: every audio packet and every video frame from the first
/// keyframe on the source's, in order, none missing, and the tracks in sync.
fn check_recording(c: &Clip, recording: &Path, capture: &std::process::Output) {
    let how = format!("the capture: {}; {}", capture.status, text(capture).1);
    let (clip, audio) = (&c.clip, &c.audio);
    let (source_video, source_audio) = (
        framemd5(Path::new(&clip), "0:v", false, ""),
        framemd5(Path::new(&audio), "0:a", true, ""),
    );
    let (got_video, got_audio) = (
        framemd5(recording, "0:v", false, &how),
        framemd5(recording, "0:a", true, &how),
    );
    let (va, vs) = contiguous("video", &source_video, &got_video);
    let (aa, as_) = contiguous("audio", &source_audio, &got_audio);
    println!(
        "recorded {} video frames from clip frame {vs}, {} audio packets from source packet {as_} \
         (of {})",
        got_video.len() - va,
        got_audio.len() - aa,
        source_audio.len()
    );
    // 5 s recorded: at 46.9 AAC frames and 30 video frames a second, from the first keyframe.
    assert!(got_audio.len() - aa >= 200, "{}", got_audio.len() - aa);
    assert!(got_video.len() - va >= 100, "{}", got_video.len() - va);
    // Lip sync: the time from an audio packet to a video frame, in the recording and in the clip,
    // at the start and at the end of the recording (a player maps the tracks by the sender
    // reports once they came: the start may be off by itself).
    let skew = |v: usize, a: usize| {
        let recorded = got_video[va + v].0 - got_audio[aa + a].0;
        recorded - (source_video[vs + v].0 - source_audio[as_ + a].0)
    };
    let (first, last) = (
        skew(0, 0),
        skew(got_video.len() - va - 1, got_audio.len() - aa - 1),
    );
    println!(
        "audio-video skew {:.1} ms at the start, {:.1} ms at the end",
        first * 1000.0,
        last * 1000.0
    );
    // ITU-R BT.1359's threshold of detection for audio early (late: 125 ms).
    assert!(last.abs() <= 0.045, "skew {:.1} ms", last * 1000.0);
}

#[test]
fn audio_track_is_relayed_packet_exact_and_in_sync() {
    relay_rtp_audio("aac", "239.255.53.1:5530", 47620);
}

#[test]
fn opus_track_is_relayed_packet_exact_and_in_sync() {
    relay_rtp_audio("libopus", "239.255.53.9:5538", 47640);
}

/// A pushed source (RTP) with audio coded by `encoder`, relayed on `group` and forwarded by
/// `watch` to `port`.
fn relay_rtp_audio(encoder: &str, group: &str, port: u16) {
    if !tool_available("audio relay", "ffmpeg") {
        return;
    }
    let dir = TempDir::new(encoder);
    let clip = make_clip(dir.path(), encoder);
    let config = &clip.config;
    let (video_port, audio_port) = (free_port(), free_port());
    let codec = match encoder {
        "aac" => format!("aac={config}"),
        _ => "opus".to_owned(),
    };
    let source = format!("pi=rtp://127.0.0.1:{video_port}?audio={audio_port}&{codec}");
    let relay = Proc::spawn(
        "relay",
        Command::new("timeout")
            .args(["-s", "INT", "40", bin(), "video", "--iface", "lo"])
            .args([
                "--group", group, "--from", "pi", "--source", &source, "--stats",
            ]),
    );
    let watch_sdp = dir.path().join("pi.sdp");
    let watch = Proc::spawn(
        "watch",
        Command::new("timeout")
            .args(["-s", "TERM", "40", bin(), "watch", "pi", "--iface", "lo"])
            .args(["--group", group, "--port", &port.to_string(), "--sdp"])
            .arg(&watch_sdp),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let camera = stream(&clip.av, video_port, audio_port, None);
    let written = watch_sdp_of(&watch_sdp);
    let want = match encoder {
        "aac" => format!(
            "m=audio {} RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/48000/2\r\na=fmtp:97 \
             streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
             indexdeltalength=3;config={}\r\n",
            port + 2,
            config.to_lowercase()
        ),
        _ => format!(
            "m=audio {} RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\n",
            port + 2
        ),
    };
    let video_line = format!("m=video {port} RTP/AVP 96\r\n");
    assert!(written.contains(&video_line), "{written}");
    assert!(written.ends_with(&want), "{written}");
    let recording = dir.path().join("recorded.mkv");
    let capture = record(&watch_sdp, &recording);
    let captured = capture.wait(Duration::from_secs(20));
    camera.wait(Duration::from_secs(20));
    watch.terminate();
    let watch_log = text(&watch.wait(Duration::from_secs(10))).1;
    relay.interrupt();
    let stats = text(&relay.wait(Duration::from_secs(10))).0;
    println!("{stats}{watch_log}");

    check_recording(&clip, &recording, &captured);
    let overhead = audio_repair_overhead(&stats);
    println!("audio repair overhead {:.0}%", overhead * 100.0);
    // 100 ms windows cost 188% (AAC) and 48% (Opus) here; 400 ms ones 55-62% (AAC: about 5
    // packets a window need 2-4 repair packets) and about 22% (Opus). The bound sits above AAC's
    // spread and far below the old windows' cost.
    assert!(
        overhead <= 0.75,
        "audio repair {:.0}% of the audio bytes",
        overhead * 100.0
    );
    assert!(
        stats.contains("pi audio: ") && stats.contains(" 0 dropped (not RTP"),
        "{stats}"
    );
}

/// A minimal RTSP server (RFC 2326) standing in for MediaMTX with a camera that has sound:
/// DESCRIBE gives ffmpeg's SDP of its two RTP streams (with a control URL per track), SETUP
/// takes the client's TCP-interleaved channels, and once PLAY came the RTP datagrams ffmpeg sends
/// to `video` and `audio` go to the client on those channels as they arrive.
/// Repair bytes over RTP bytes of the relay's audio, from its `--stats` line
/// "pi audio: N RTP packets (B bytes), M repair packets (R bytes); ...".
fn audio_repair_overhead(stats: &str) -> f64 {
    let line = stats
        .lines()
        .find(|l| l.starts_with("pi audio: "))
        .expect("an audio line");
    let bytes: Vec<f64> = line
        .split('(')
        .skip(1)
        .take(2)
        .map(|s| s.split(' ').next().unwrap().parse().unwrap())
        .collect();
    bytes[1] / bytes[0]
}

fn fake_rtsp(sdp: String, video: UdpSocket, audio: UdpSocket) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel::<(usize, Vec<u8>)>();
    for (track, socket) in [(0, video), (1, audio)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                if tx.send((track, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        });
    }
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = serve(conn, port, &sdp, &rx);
        }
    });
    port
}

fn serve(
    conn: TcpStream,
    port: u16,
    sdp: &str,
    rtp: &mpsc::Receiver<(usize, Vec<u8>)>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    // The interleaved channel of each track, as the client's SETUP asked.
    let mut channels = [0u8, 2];
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let (method, url) = (
            words.next().unwrap_or("").to_owned(),
            words.next().unwrap_or(""),
        );
        let track = usize::from(url.ends_with("trackID=1"));
        let (mut cseq, mut transport) = (String::new(), String::new());
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((&h, ""));
            match k.to_ascii_lowercase().as_str() {
                "cseq" => cseq = v.trim().to_owned(),
                "transport" => transport = v.trim().to_owned(),
                _ => {}
            }
        }
        let head = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n");
        match method.as_str() {
            "DESCRIBE" => write!(
                out,
                "{head}Content-Base: rtsp://127.0.0.1:{port}/cam/\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )?,
            "SETUP" => {
                let asked = transport
                    .split(';')
                    .find_map(|p| p.strip_prefix("interleaved="))
                    .and_then(|c| c.split('-').next()?.parse().ok());
                channels[track] = asked.unwrap_or(2 * track as u8);
                write!(
                    out,
                    "{head}Transport: {transport}\r\nSession: 42;timeout=60\r\n\r\n"
                )?
            }
            "PLAY" => {
                write!(out, "{head}Session: 42\r\n\r\n")?;
                // What came before PLAY is stale.
                while rtp.try_recv().is_ok() {}
                // Until the source ends or the client goes: a write to a closed connection fails.
                while let Ok((track, p)) = rtp.recv_timeout(Duration::from_secs(5)) {
                    let mut msg = vec![b'$', channels[track]];
                    msg.extend_from_slice(&(p.len() as u16).to_be_bytes());
                    msg.extend_from_slice(&p);
                    out.write_all(&msg)?;
                }
                return Ok(());
            }
            _ => write!(
                out,
                "{head}Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n"
            )?,
        }
    }
}

/// An RTSP source's AAC track: pulled with the video, described to the first viewer after its
/// grant (the relay learns it only once connected, and sends an unasked REPLY), and relayed
/// packet for packet, in sync.
#[test]
fn rtsp_audio_track_is_pulled_and_relayed() {
    if !tool_available("RTSP audio", "ffmpeg") {
        return;
    }
    let dir = TempDir::new("rtspaudio");
    let clip = make_clip(dir.path(), "aac");
    let (video, audio) = (
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    );
    let ports = (
        video.local_addr().unwrap().port(),
        audio.local_addr().unwrap().port(),
    );
    let source_sdp = dir.path().join("stream.sdp");
    let camera = stream(&clip.av, ports.0, ports.1, Some(&source_sdp));
    let end = Instant::now() + Duration::from_secs(10);
    let sdp = loop {
        let text = std::fs::read_to_string(&source_sdp).unwrap_or_default();
        if text.contains("m=video") && text.contains("m=audio") {
            break text;
        }
        assert!(Instant::now() < end, "ffmpeg wrote no SDP");
        std::thread::sleep(Duration::from_millis(50));
    };
    // CRLF lines, fmtp parameters without spaces, and a control URL for each track (ffmpeg
    // writes none).
    let sdp = sdp
        .lines()
        .map(|l| format!("{}\r\n", l.trim_end()))
        .collect::<String>()
        .replace("; ", ";")
        .replace("m=audio", "a=control:trackID=0\r\nm=audio")
        + "a=control:trackID=1\r\n";
    let port = fake_rtsp(sdp, video, audio);
    let group = "239.255.53.5:5534";
    let relay = Proc::spawn(
        "relay",
        Command::new("timeout")
            .args(["-s", "INT", "40", bin(), "video", "--iface", "lo"])
            .args(["--group", group, "--from", "cam", "--stats", "--source"])
            .arg(format!("cam=rtsp://127.0.0.1:{port}/cam")),
    );
    let watch_sdp = dir.path().join("cam.sdp");
    let watch = Proc::spawn(
        "watch",
        Command::new("timeout")
            .args(["-s", "TERM", "40", bin(), "watch", "cam", "--iface", "lo"])
            .args(["--group", group, "--port", "47630", "--sdp"])
            .arg(&watch_sdp),
    );
    let written = watch_sdp_of(&watch_sdp);
    let recording = dir.path().join("recorded.mkv");
    let captured = record(&watch_sdp, &recording).wait(Duration::from_secs(20));
    watch.terminate();
    let watch_log = text(&watch.wait(Duration::from_secs(10))).1;
    relay.interrupt();
    let (stats, relay_log) = text(&relay.wait(Duration::from_secs(10)));
    camera.stop();
    println!("{stats}{relay_log}{watch_log}");
    assert!(
        written.contains("m=audio 47632 RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/48000/2\r\n"),
        "{written}"
    );
    assert!(
        watch_log.contains("watch: the channel has audio now: Aac 48000 Hz, 2 channels"),
        "{watch_log}"
    );
    check_recording(&clip, &recording, &captured);
}

/// A pushed source's audio named wrong in its URL: one line saying what is expected, exit 64,
/// before anything is bound or sent.
#[test]
fn audio_url_errors_are_one_line() {
    for (url, says) in [
        (
            "pi=rtp://:5002?audio=5012",
            "audio needs a port and a codec: ?audio=PORT&aac=CONFIG",
        ),
        (
            "pi=rtp://:5002?audio=5012&aac=zz",
            "aac=zz is not an AAC AudioSpecificConfig in hex",
        ),
        (
            "pi=rtp://:5002?audio=5012&mp3",
            "unknown 'mp3'; expected ?audio=PORT&aac=CONFIG",
        ),
        (
            "pi=udp://:5000?audio=0&opus",
            "audio port '0' is not a port number",
        ),
    ] {
        let out = Command::new("timeout")
            .args([
                "10",
                bin(),
                "video",
                "--iface",
                "lo",
                "--from",
                "pi",
                "--source",
                url,
            ])
            .output()
            .unwrap();
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(64), "{url}: {err}");
        assert_eq!(err.lines().count(), 1, "{url}: {err}");
        assert!(
            err.starts_with("edm-cast: '") && err.contains(says),
            "{url}: {err}"
        );
    }
}
