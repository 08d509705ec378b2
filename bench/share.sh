#!/usr/bin/env bash
# TCP sharing a 100 Mbit/s bottleneck with edm-cast: a lab of 4 receivers (no loss), iperf3 from the
# sender to r1 for 24 s, and a 96 MiB `send` to the 4 receivers started 4 s in. Prints the send's
# time, iperf3's per-second rates (before, during, after the send), the median of the seconds
# during the send and what share of the 100 Mbit/s that is, and the receivers' MD5s. Needs root and
# iperf3 (Debian: iperf3); uses the release binary (EDM_CAST overrides it).
#
# Where the bottleneck is (BOTTLENECK=):
#   sender  the sender's own link (tbf on its eth0, the lab's default): its queue pushes back on
#           both sockets alike, so the send's rate control hardly matters;
#   port    the switch: every receiver's bridge port limited to 100 Mbit/s (tbf, a 50 ms queue,
#           tools/lanlab.sh PORT_RATES), the sender's link unshaped (a 10 Gbit/s veth): iperf3
#           and the multicast meet in r1's port queue, which nothing pushes back from, so only the
#           send's own rate control leaves TCP room.
#
#   bench/share.sh                                      # congestion control on (default flags)
#   bench/share.sh --cc off --rate 97M                  # the fixed rate, for comparison
#   BOTTLENECK=port bench/share.sh                      # the bottleneck a switch port
#   BOTTLENECK=port bench/share.sh --cc off --rate 97M
#   RUNS=10 EDM_CAST_REF=/tmp/edm-cast-main BOTTLENECK=port bench/share.sh
#           # 10 runs, alternated with a reference binary: each run's median, and the median of them
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n ${RUNS:-} ]]; then
    [[ -n ${EDM_CAST:-} ]] || cargo build --release --quiet
    bins=("${EDM_CAST:-$PWD/target/release/edm-cast}" ${EDM_CAST_REF:+"$EDM_CAST_REF"})
    declare -A shares
    for run in $(seq 1 "$RUNS"); do
        for b in "${bins[@]}"; do
            echo "== run $run: $b"
            out=$(RUNS= EDM_CAST=$b "$0" "$@") || true
            echo "$out"
            m=$(sed -nE 's/^iperf3 during the send: .* median ([0-9]+) Mbit.*/\1/p' <<<"$out")
            shares[$b]+="${m:-0} "
        done
    done
    for b in "${bins[@]}"; do
        # shellcheck disable=SC2086
        printf '%s\n' ${shares[$b]} | sort -n | awk -v b="$b" '{ v[++n] = $1 }
            END { printf "%s: iperf3 medians %s Mbit/s over %d runs, median of the runs %s Mbit/s\n", b,
                  "'"${shares[$b]% }"'", n, (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'
    done
    exit 0
fi
[[ -n ${EDM_CAST:-} ]] || cargo build --release --quiet
B=${EDM_CAST:-$PWD/target/release/edm-cast}
L=$PWD/tools/lanlab.sh
export LAB=${LAB:-share}
where=${BOTTLENECK:-sender}
D=$(mktemp -d /tmp/edm-cast-share.XXXX)
trap 'bash "$L" down >/dev/null 2>&1; [[ -n ${KEEP:-} ]] || rm -rf "$D"' EXIT
case $where in
sender) bash "$L" up 4 100mbit 0 >/dev/null 2>&1 ;;
port) PORT_RATES="1=100mbit 2=100mbit 3=100mbit 4=100mbit" bash "$L" up 4 none 0 >/dev/null 2>&1 ;;
*)
    echo "BOTTLENECK must be sender or port" >&2
    exit 2
    ;;
esac
echo "bottleneck: $where; send $*; logs in $D${KEEP:+ (kept)}; $(uptime | sed 's/.*load/load/')"
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
end=$(date +%s.%N)
took=$(echo "$end - $start" | bc)
echo "send: $took s (started 4 s into iperf3's 24 s); $(grep -E 'bytes ' "$D/send.log" | sed 's/^ *//')"
wait
grep -E "sec .*Mbits/sec" "$D/iperf.log" | grep -v -E "sender|receiver"
# The one-second intervals wholly inside the send (it began 4 s into iperf3's run), less one at
# each end (the send's announce and its last receivers' tail).
awk -v from=5 -v to="$(echo "4 + $took - 1" | bc)" '
    / sec / && !/sender|receiver/ { split($3, t, "-"); if (t[1] + 0 >= from && t[2] + 0 <= to) print $7 }
' "$D/iperf.log" | sort -n | awk '
    { v[++n] = $1 }
    END {
        if (n == 0) { print "iperf3 during the send: no whole second"; exit }
        m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        printf "iperf3 during the send: %d s, %.0f-%.0f Mbit/s, median %.0f Mbit/s = %.0f%% of 100 Mbit/s\n",
            n, v[1], v[n], m, m
    }'
echo "MD5s (the file and 4 receivers):"
md5sum "$D/f.bin" "$D"/r*/f.bin | awk '{print $1}' | sort | uniq -c
