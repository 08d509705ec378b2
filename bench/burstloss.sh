#!/usr/bin/env bash
# burstloss.sh - add burst loss toward every receiver of a running tools/lanlab.sh lab (this kernel
# has no netem). Used by bench/compare.sh for its "burst" loss case; tools/lanlab.sh is not changed.
#
# How: a table "netdev cmpburst" in the lab's bridge namespace, one chain per receiver-facing bridge
# port (hook egress, priority -10, so before lanlab's own random-loss chain), and one dynamic set of
# port names with element timeouts:
#   - while the port's name is in the set, every packet toward that receiver is dropped (the burst);
#   - otherwise, with probability START_PPM per million packets, the port's name is added to the set
#     with a timeout of MS milliseconds, and that packet is dropped too (a burst starts).
# Each receiver's bursts are independent. The timeout counts in kernel ticks (CONFIG_HZ=250 here:
# nft rounds 5ms to 4ms, and a burst lasts between about 0 and 4 ms), so a burst is a span of time:
# at 100 Mbit/s (about 8,300 full-size frames/s) START_PPM=2500 and MS=4 give bursts of 1 to about
# 50 packets, about 20 on average, and about 5% loss in all; measure with `stats`.
#
#   bench/burstloss.sh up N [START_PPM] [MS]   # add the rules for receivers r1..rN (default 2500, 4)
#   bench/burstloss.sh stats                   # per receiver: host packets drops bursts loss% mean_burst
#   bench/burstloss.sh down                    # remove the table (lanlab.sh down removes it too)
# environment: LAB (as for tools/lanlab.sh; default edm)
set -euo pipefail

LAB="${LAB:-edm}"
BR="${LAB}-br"
T="timeout 20"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

[[ -e "/run/netns/$BR" ]] || { echo "burstloss: namespace $BR does not exist (is the lab up? LAB=$LAB)" >&2; exit 1; }

case "${1:-}" in
up)
    n="${2:-}"; ppm="${3:-2500}"; ms="${4:-4}"
    [[ "$n" =~ ^[1-9][0-9]*$ && "$ppm" =~ ^[0-9]+$ && "$ms" =~ ^[1-9][0-9]*$ ]] || usage
    $T ip netns exec "$BR" nft delete table netdev cmpburst >/dev/null 2>&1 || true
    rules="table netdev cmpburst {"$'\n'
    rules+="  set bursting { type ifname; flags dynamic, timeout; }"$'\n'
    for ((i = 1; i <= n; i++)); do
        rules+="  chain r$i { type filter hook egress device \"${LAB}-r$i\" priority -10; policy accept;"$'\n'
        rules+="    counter"$'\n'
        rules+="    meta oifname @bursting counter drop"$'\n'
        rules+="    numgen random mod 1000000 < $ppm add @bursting { meta oifname timeout ${ms}ms } counter drop"$'\n'
        rules+="  }"$'\n'
    done
    rules+="}"$'\n'
    $T ip netns exec "$BR" nft -f - <<<"$rules"
    ;;
stats)
    # chain rI: line 1 = all packets, 2 = dropped inside a burst, 3 = burst starts (also dropped)
    $T ip netns exec "$BR" nft list table netdev cmpburst |
        awk '/chain r[0-9]+ /   { c = $2; k = 0 }
             /counter packets/ { for (j = 1; j <= NF; j++) if ($j == "packets") v = $(j + 1)
                                 k++; cnt[c, k] = v; if (!(c in seen)) { seen[c] = 1; order[++m] = c } }
             END { for (j = 1; j <= m; j++) { c = order[j]; p = cnt[c, 1]; d = cnt[c, 2] + cnt[c, 3]; b = cnt[c, 3]
                     printf "%s\t%d\t%d\t%d\t%.2f\t%.1f\n", c, p, d, b, (p ? 100 * d / p : 0), (b ? d / b : 0) } }'
    ;;
down)
    $T ip netns exec "$BR" nft delete table netdev cmpburst >/dev/null 2>&1 || true
    ;;
*) usage ;;
esac
