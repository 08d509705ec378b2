#!/usr/bin/env bash
# The cost of `--http`: a loopback transfer to 3 receivers, RUNS times each without the web server
# (off), with it and nobody watching (http), and with a page's event stream open and a Prometheus
# scrape every second (watched), interleaved; prints each run's seconds (the summary's "in X s")
# and UDP payload bytes, then the medians. No root needed (loopback multicast); needs curl.
#
#   bench/webcost.sh                       # 64 MiB at 400 Mbit/s, 5 runs each
#   RUNS=3 MIB=32 RATE=200M bench/webcost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
mib=${MIB:-64}
rate=${RATE:-400M}
bin=${EDM_CAST:-target/release/edm-cast}
[[ -n ${EDM_CAST:-} ]] || cargo build --release --quiet
dir=$(mktemp -d /tmp/edm-webcost.XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM
head -c $((mib << 20)) /dev/urandom >"$dir/f.bin"
group=239.77.121.1:47701

# run MODE: one transfer; prints "MODE SECONDS BYTES".
run() {
    local mode=$1 web=() pids=() watcher=
    [[ $mode != off ]] && web=(--http 127.0.0.1:18099)
    if [[ $mode == watched ]]; then
        (sleep 0.3; curl -sN -m 120 localhost:18099/api/v1/events >/dev/null &
            while curl -s -m 2 localhost:18099/metrics >/dev/null; do sleep 1; done) 2>/dev/null &
        watcher=$!
    fi
    for i in 1 2 3; do
        rm -rf "$dir/pc$i"
        "$bin" recv --group $group --iface lo --name "pc$i" --out "$dir/pc$i" --timeout 60 \
            >/dev/null 2>&1 &
        pids+=($!)
    done
    "$bin" send --group $group --iface lo --rate "$rate" --min-receivers 3 "${web[@]}" \
        "$dir/f.bin" >"$dir/summary" 2>/dev/null
    wait "${pids[@]}"
    [[ -z $watcher ]] || wait "$watcher" || true
    awk -v m="$mode" '/ in [0-9.]+ s$/ { s = $(NF - 1) } /^  bytes / { b = $2 }
        END { print m, s, b }' "$dir/summary"
}

for ((r = 0; r < runs; r++)); do run off; run http; run watched; done | tee "$dir/runs"
# median MODE COLUMN
median() { awk -v m="$1" -v c="$2" '$1 == m { print $c }' "$dir/runs" | sort -n |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for mode in off http watched; do
    echo "median $mode: $(median $mode 2) s, $(median $mode 3) bytes"
done
