#!/usr/bin/env bash
# Live video figures from the LAN lab (tests/video.rs): for each loss rate, one clip (10 s unless
# SECS says) relayed to a viewer with FEC, a viewer 3 s late with FEC, and a viewer without FEC;
# prints the share of frames decoded bit-exactly after each viewer's first IDR, the late joiner's
# time from `watch` to its first keyframe, the relay's added latency (ingest datagram in -> RTP
# packet out, p50/p99, from `video --stats`), the FEC overhead (repair bytes / RTP bytes) and the
# range of loss the relay sized its repair for (from the viewers' reports). Needs root and ffmpeg.
#
#   bench/video.sh            # loss 0 1 5 10 %
#   bench/video.sh 5 20       # other loss rates
#   RUNS=3 bench/video.sh     # each rate three times
#   SECS=30 bench/video.sh 1  # a 30 s clip: the overhead once the viewers' reports came
#   REPAIR=20 bench/video.sh 10   # the relay's --fec-repair (percent of each window) instead of
#                                 # its default (repair for the viewers' reported loss)
#   FIXED=1 bench/video.sh 1      # --fec-fixed: repair for 5% whatever the viewers report
set -euo pipefail
cd "$(dirname "$0")/.."

losses=("$@")
[[ ${#losses[@]} -gt 0 ]] || losses=(0 1 5 10)
out=bench/results/video.txt
# The test profile is optimized (Cargo.toml), so no separate release build.
cargo test --quiet --test video --no-run 2>/dev/null

printf '%-6s %-22s %-22s %-22s %-10s %-22s %-8s %s\n' loss FEC FEC_late_joiner no_FEC \
    first_kf relay_latency overhead repair_sized_for
for loss in "${losses[@]}"; do
  for _ in $(seq "${RUNS:-1}"); do
    # The test's assertions may fail at high loss: the figures are printed before them.
    log=$(env EDM_VIDEO_LOSS=$loss ${REPAIR:+EDM_VIDEO_FEC_REPAIR=$REPAIR} \
        ${FIXED:+EDM_VIDEO_FEC_FIXED=1} ${SECS:+EDM_VIDEO_SECS=$SECS} EDM_CAST_REQUIRE_LAB=1 \
        timeout 600 cargo test --quiet --test video video_lab_fec -- --nocapture 2>&1 || true)
    lab=$(grep '^video lab:' <<<"$log") || { echo "loss $loss: no figures" >&2; echo "$log" >&2; exit 1; }
    relay=$(grep -E '^pi: .*relay latency' <<<"$log" | head -1)
    sized=$(grep -E '^pi: repair sized for' <<<"$log" | head -1 || true)
    { echo "# $(date -u +%FT%TZ) loss $loss% repair ${REPAIR:-default}${FIXED:+ fixed} clip ${SECS:-10} s"
      echo "$lab"; echo "$relay"; echo "$sized"; } >>"$out"
    # "... r1 (FEC) exact 300/300 = 100.0%; r2 (FEC, 3 s late) exact 179/180 = 99.4%, first keyframe
    # 1.039 s after ...; r3 (no FEC) exact 43/300 = 14.3%"
    r1=$(sed -E 's/.*r1 \(FEC\) exact ([^;]+);.*/\1/' <<<"$lab")
    r2=$(sed -E 's/.*late\) exact ([^,]+),.*/\1/' <<<"$lab")
    r3=$(sed -E 's/.*r3 \(no FEC\) exact (.+)$/\1/' <<<"$lab")
    kf=$(sed -E 's/.*first keyframe ([0-9.NaN]+) s.*/\1/' <<<"$lab")
    lat=$(sed -E 's/.*relay latency (p50 [0-9.]+ ms p99 [0-9.]+ ms).*/\1/' <<<"$relay")
    ovh=$(sed -E 's/.*FEC overhead ([0-9.]+%).*/\1/' <<<"$relay")
    range=$(sed -E 's/.*repair sized for ([0-9.]+% to [0-9.]+%).*/\1/' <<<"$sized")
    printf '%-6s %-22s %-22s %-22s %-10s %-22s %-8s %s\n' "$loss%" "$r1" "$r2" "$r3" "${kf} s" \
        "$lat" "$ovh" "${range:--}"
  done
done
