#!/usr/bin/env bash
# fakepi.sh - a stand-in for a Raspberry Pi camera, made of Debian's ffmpeg.
#
#   tools/fakepi.sh encode CLIP.h264 [SECONDS] [SIZE]
#       encodes a test clip once (testsrc2, 30 fps, an IDR every 30 frames, no B-frames, one slice
#       per frame, SPS/PPS only at the start, so the relay's re-insertion before each IDR is needed)
#   tools/fakepi.sh raw CLIP.h264 HOST:PORT
#       streams it in real time as raw H.264 Annex B over UDP, like `rpicam-vid --inline -o udp://`
#   tools/fakepi.sh rtp CLIP.h264 HOST:PORT
#       streams it in real time as RTP H.264 (RFC 6184)
#   tools/fakepi.sh framemd5 FILE.h264
#       prints one MD5 per decoded frame (ffmpeg -f framemd5), to compare streams bit-exactly
#
# Streaming uses `-c copy`, so what a viewer decodes can be compared frame by frame with the clip.
set -euo pipefail

usage() { sed -n '2,16p' "$0" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
cmd=$1 clip=$2
ff=(ffmpeg -hide_banner -loglevel error -nostdin)

case "$cmd" in
    encode)
        secs=${3:-10} size=${4:-640x360}
        "${ff[@]}" -y -f lavfi -i "testsrc2=size=${size}:rate=30" -t "$secs" \
            -c:v libx264 -preset veryfast -tune zerolatency -threads 1 -g 30 -keyint_min 30 \
            -sc_threshold 0 -bf 0 -pix_fmt yuv420p -f h264 "$clip"
        ;;
    raw)
        [[ $# -eq 3 ]] || usage
        exec "${ff[@]}" -re -framerate 30 -i "$clip" -c copy -f h264 "udp://$3?pkt_size=1316"
        ;;
    rtp)
        [[ $# -eq 3 ]] || usage
        # ffmpeg prints the SDP on stdout: keep stdout for whoever runs us.
        exec "${ff[@]}" -re -framerate 30 -i "$clip" -c copy -f rtp "rtp://$3?pkt_size=1316" >&2
        ;;
    framemd5)
        exec "${ff[@]}" -i "$clip" -f framemd5 -
        ;;
    *) usage ;;
esac
