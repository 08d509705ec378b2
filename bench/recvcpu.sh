#!/usr/bin/env bash
# recvcpu.sh - a receiver's CPU per GB at 5% loss: edm-cast builds against udpcast, alternating in
# the same minutes, one receiver in the namespace lab (tools/lanlab.sh). Needs root.
#
#   bench/recvcpu.sh                                         # target/release/edm-cast and udpcast
#   BINS="main=/tmp/edm-cast-main new=target/release/edm-cast" RUNS=4 bench/recvcpu.sh
#   RECV_ARGS="--verify-file" bench/recvcpu.sh               # extra arguments for edm-cast recv
#
# Environment (default): BINS  name=binary pairs, edm-cast builds in turn (new=target/release/edm-cast)
#   TOOLS  udpcast, or empty to leave it out (udpcast);  RUNS  rounds (3);  MIB  file size (256)
#   LINK   the sender's link, tc rate (500mbit);  RATE  what the senders are paced at, Mbit/s (485):
#          edm-cast send --rate RATEM, udp-sender --max-bitrate RATEm;  LOSS  % toward the receiver (5)
#   LAB    lab name (lean1);  RECV_ARGS  extra edm-cast recv arguments;  PERF=DIR  record each
#          receiver with `perf record -g` into DIR/NAME-RUN.data (its CPU then counts perf's too)
# Each run: the receiver starts (not niced), then the sender; the receiver's CPU (user + sys, from
# /usr/bin/time) is divided by the file's size in GB (10^9 bytes). One line per run:
#   run tool cpu_s cpu_s_per_gb secs md5_ok load1
# (secs: the receiver's wall time, from its start half a second before the sender's.)
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BINS=${BINS:-new=target/release/edm-cast}
TOOLS=${TOOLS-udpcast}
RUNS=${RUNS:-3} MIB=${MIB:-256} LINK=${LINK:-500mbit} RATE=${RATE:-485} LOSS=${LOSS:-5}
export LAB=${LAB:-lean1}
RECV_ARGS=${RECV_ARGS:-}
L() { "$ROOT/tools/lanlab.sh" "$@"; }

WORK=$(mktemp -d /tmp/recvcpu.XXXXXX)
cleanup() { L down >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
L up 1 "$LINK" "$LOSS" >/dev/null
head -c $((MIB << 20)) /dev/urandom >"$WORK/in.bin"
want=$(md5sum <"$WORK/in.bin" | cut -c1-32)
gb=$(awk -v m="$MIB" 'BEGIN { print m * 1048576 / 1e9 }')

# One run of `tool` (an edm-cast binary, or udpcast): prints "cpu_s secs md5_ok".
run() {
    local name=$1 bin=$2 out="$WORK/out" t="$WORK/time.txt" rx
    rm -rf "$out" "$t"
    mkdir -p "$out"
    local perf=()
    [[ -n ${PERF:-} ]] && perf=(perf record -g -q -o "$PERF/$name-$3.data" --)
    if [[ $name == udpcast ]]; then
        L exec r1 /usr/bin/time -f '%U %S %e' -o "$t" timeout 120 "${perf[@]}" \
            udp-receiver --nokbd --interface eth0 --file "$out/in.bin" >/dev/null 2>&1 &
        rx=$!
        sleep 0.5
        L exec s timeout 120 udp-sender --nokbd --interface eth0 --file "$WORK/in.bin" \
            --min-receivers 1 --nopointopoint --rexmit-hello-interval 500 \
            --max-bitrate "${RATE}m" >/dev/null 2>&1 || true
    else
        # shellcheck disable=SC2086
        L exec r1 /usr/bin/time -f '%U %S %e' -o "$t" timeout 120 "${perf[@]}" "$bin" recv \
            --group 239.1.1.1 --iface eth0 --out "$out" --timeout 60 --name r1 $RECV_ARGS \
            >/dev/null 2>&1 &
        rx=$!
        sleep 0.5
        L exec s timeout 120 "$bin" send "$WORK/in.bin" --group 239.1.1.1 --iface eth0 \
            --rate "${RATE}M" --min-receivers 1 --wait 30 >/dev/null 2>&1 || true
    fi
    wait "$rx" || true
    local got
    got=$(md5sum <"$out/in.bin" 2>/dev/null | cut -c1-32 || true)
    tail -n 1 "$t" | awk -v ok="$([[ $got == "$want" ]] && echo 1 || echo 0)" '{ print $1 + $2, $3, ok }'
}

[[ -n ${PERF:-} ]] && mkdir -p "$PERF"
printf 'run\ttool\tcpu_s\tcpu_s_per_gb\tsecs\tmd5_ok\tload1\n'
for ((i = 1; i <= RUNS; i++)); do
    for pair in $BINS ${TOOLS:+udpcast=}; do
        name=${pair%%=*} bin=${pair#*=}
        load=$(cut -d' ' -f1 /proc/loadavg)
        read -r cpu secs ok < <(run "$name" "$bin" "$i")
        printf '%s\t%s\t%s\t%.2f\t%s\t%s\t%s\n' "$i" "$name" "$cpu" \
            "$(awk -v c="$cpu" -v g="$gb" 'BEGIN { print c / g }')" "$secs" "$ok" "$load"
    done
done
