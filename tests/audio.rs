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
use std::path::Path;
use std::process::{Command, Output};
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
/// first stream `map` selects in `file`, from ffmpeg's framemd5.
fn framemd5(file: &Path, map: &str, copy: bool) -> Vec<(f64, String)> {
    let file = file.to_str().unwrap();
    let mut args = vec!["-i", file, "-map", map];
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
        .unwrap_or_else(|| panic!("no time base for {file} {map}: {listing}"));
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

#[test]
fn audio_track_is_relayed_packet_exact_and_in_sync() {
    if !tool_available("audio relay", "ffmpeg") {
        return;
    }
    let dir = TempDir::new("audio");
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (clip, audio) = (p("clip.h264"), p("audio.mka"));
    // The fake Pi's clip (tools/fakepi.sh encode) and 10 s of a 440 Hz tone in AAC, 48 kHz stereo.
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
        "aac",
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
    let config = source_sdp
        .split(['\n', ';', ' '])
        .find_map(|f| f.trim().strip_prefix("config="))
        .unwrap_or_else(|| panic!("no config in {source_sdp}"))
        .to_owned();

    let (video_port, audio_port) = (free_port(), free_port());
    let group = "239.255.53.1:5530";
    let source = format!("pi=rtp://127.0.0.1:{video_port}?audio={audio_port}&aac={config}");
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
            .args(["--group", group, "--port", "47620", "--sdp"])
            .arg(&watch_sdp),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let camera = Proc::spawn(
        "source",
        Command::new("timeout")
            .args([
                "30",
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
            ])
            .args(["-re", "-i", &av, "-map", "0:v", "-c", "copy"])
            .args(["-bsf:v", "h264_mp4toannexb", "-f", "rtp"])
            .arg(format!("rtp://127.0.0.1:{video_port}?pkt_size=1316"))
            .args(["-map", "0:a", "-c", "copy", "-f", "rtp"])
            .arg(format!("rtp://127.0.0.1:{audio_port}"))
            .stdout(std::process::Stdio::null()),
    );
    let end = Instant::now() + Duration::from_secs(10);
    while !watch_sdp.exists() {
        assert!(Instant::now() < end, "watch wrote no SDP");
        std::thread::sleep(Duration::from_millis(50));
    }
    let written = std::fs::read_to_string(&watch_sdp).unwrap();
    let want = format!(
        "m=audio 47622 RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/48000/2\r\na=fmtp:97 \
         streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
         indexdeltalength=3;config={}\r\n",
        config.to_lowercase()
    );
    assert!(
        written.contains("m=video 47620 RTP/AVP 96\r\n"),
        "{written}"
    );
    assert!(written.ends_with(&want), "{written}");
    let recording = dir.path().join("recorded.mkv");
    let capture = Proc::spawn(
        "capture",
        Command::new("timeout")
            .args([
                "-s",
                "INT",
                "9",
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
            ])
            .args(["-nostdin", "-protocol_whitelist", "file,udp,rtp"])
            .args(["-buffer_size", "8388608", "-i"])
            .arg(&watch_sdp)
            // 5 s, ended while the source still sends: ffmpeg reading RTP that stopped does not
            // stop on SIGINT.
            .args(["-map", "0", "-c", "copy", "-t", "5", "-f", "matroska"])
            .arg(&recording),
    );
    capture.wait(Duration::from_secs(20));
    camera.wait(Duration::from_secs(20));
    watch.terminate();
    let watch_log = text(&watch.wait(Duration::from_secs(10))).1;
    relay.interrupt();
    let stats = text(&relay.wait(Duration::from_secs(10))).0;
    println!("{stats}{watch_log}");

    let (source_video, source_audio) = (
        framemd5(Path::new(&clip), "0:v", false),
        framemd5(Path::new(&audio), "0:a", true),
    );
    let (got_video, got_audio) = (
        framemd5(&recording, "0:v", false),
        framemd5(&recording, "0:a", true),
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
    assert!(
        stats.contains("pi audio: ") && stats.contains(" 0 dropped (not RTP"),
        "{stats}"
    );
}
