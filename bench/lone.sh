#!/usr/bin/env bash
# lone.sh - one PC on bad Wi-Fi (issue 14, PROTOCOL.md 5.6 "lagging alone"): a lab with one
# receiver losing LOSS% of what is sent to it, an 8 MiB file, `send` and `recv` with default flags.
# Prints when `send` ended and its exit code, the sender's interface bytes ÷ file, the last lines
# of both, and whether the file arrived exact. Needs root.
#
#   bench/lone.sh 85                  # one run at 85% loss
#   EDM_CAST=/tmp/old/edm-cast bench/lone.sh 90
#
# Environment (default): EDM_CAST binary (target/debug/edm-cast)  MIB file size (8)  LAB (lone)
#   LIMIT seconds after which `send` is killed (120: a sender that never ends shows as rc 124)
set -u
LOSS=${1:?usage: bench/lone.sh LOSS_PERCENT}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${EDM_CAST:-$ROOT/target/debug/edm-cast}
MIB=${MIB:-8}
LIMIT=${LIMIT:-120}
export LAB=${LAB:-lone}
L=$ROOT/tools/lanlab.sh
D=$(mktemp -d /tmp/lone-bench.XXXX)
trap '$L down >/dev/null 2>&1; rm -rf "$D"' EXIT
head -c $((MIB << 20)) /dev/urandom >"$D/f.bin"
$L up 1 100mbit "$LOSS" >/dev/null 2>&1 || { echo "lone.sh: lab up failed (tools/lanlab.sh check)"; exit 1; }
tx0=$($L txbytes s)
$L exec r1 timeout $((LIMIT + 30)) "$BIN" recv --iface eth0 --group 239.77.9.9:5077 \
    --out "$D/out" >"$D/recv.log" 2>&1 &
sleep 0.5
t0=$(date +%s.%N)
$L exec s timeout "$LIMIT" "$BIN" send "$D/f.bin" --iface eth0 --group 239.77.9.9:5077 \
    >"$D/send.log" 2>&1
rc=$?
t1=$(date +%s.%N)
wait
tx1=$($L txbytes s)
echo "loss $LOSS%: send rc $rc after $(echo "$t1 - $t0" | bc) s, sender sent" \
    "$(echo "scale=2; ($tx1 - $tx0) / ($MIB * 1048576)" | bc) x the file; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "send:"; tail -3 "$D/send.log"
echo "recv:"; tail -2 "$D/recv.log"
cmp -s "$D/f.bin" "$D/out/f.bin" && echo "recv: exact" || echo "recv: not exact"
