#!/usr/bin/env bash
# TCP sharing the sender's link with edm-cast: a lab of 4 receivers behind a 100 Mbit/s sender link
# (no loss), iperf3 from the sender to r1 for 24 s, and a 96 MiB `send` to the 4 receivers started
# 4 s in. Prints the send's time, iperf3's per-second rates (before, during, after the send) and the
# receivers' MD5s. Needs root and iperf3 (Debian: iperf3); uses the release binary.
#
#   bench/share.sh                         # congestion control on (default flags)
#   bench/share.sh --cc off --rate 97M     # the fixed rate, for comparison
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
B=$PWD/target/release/edm-cast
L=$PWD/tools/lanlab.sh
export LAB=share
D=$(mktemp -d /tmp/edm-cast-share.XXXX)
trap 'bash "$L" down >/dev/null 2>&1; rm -rf "$D"' EXIT
bash "$L" up 4 100mbit 0 >/dev/null
head -c $((96 * 1024 * 1024)) /dev/urandom >"$D/f.bin"
for i in 1 2 3 4; do
    mkdir -p "$D/r$i"
    timeout 60 bash "$L" exec "r$i" "$B" recv --group 239.1.1.9 --iface eth0 --out "$D/r$i" \
        --timeout 50 --name "r$i" >"$D/r$i.log" 2>&1 &
done
timeout 40 bash "$L" exec r1 iperf3 -s -1 >/dev/null 2>&1 &
sleep 1
timeout 40 bash "$L" exec s iperf3 -c 10.77.0.11 -t 24 -i 1 -f m >"$D/iperf.log" 2>&1 &
sleep 4
start=$(date +%s.%N)
timeout 40 bash "$L" exec s "$B" send "$D/f.bin" --group 239.1.1.9 --iface eth0 \
    --min-receivers 4 --wait 10 "$@" >"$D/send.log" 2>&1 || echo "send failed: $(tail -1 "$D/send.log")"
echo "send: $(echo "$(date +%s.%N) - $start" | bc) s (started 4 s into iperf3's 24 s)"
wait
grep -E "sec .*Mbits/sec" "$D/iperf.log"
echo "MD5s (the file and 4 receivers):"
md5sum "$D/f.bin" "$D"/r*/f.bin | awk '{print $1}' | sort | uniq -c
