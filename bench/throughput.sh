#!/usr/bin/env bash
# The fast data path, measured on the lab's bridge with no rate limit (tools/lanlab.sh up 1 none
# LOSS). Both sides share this machine's two cores, and the kernel charges delivery into the
# receiver's socket to the sender. Cases:
#   - the sender alone (no receiver, unpaced): what one core can encode, pace and send;
#   - one receiver at --rate 2G, 0% and 5% loss: end-to-end goodput with decoding;
#   - a 4 GiB sparse file at --rate 1G: peak RSS of both sides (the memory bound).
# Prints goodput, first-pass rate, CPU seconds per GB and peak RSS, and appends rows to
# bench/results/throughput.tsv. Needs root.
#
#   bench/throughput.sh            # 1 GiB random file
#   MIB=256 bench/throughput.sh    # smaller file
set -euo pipefail
cd "$(dirname "$0")/.."
export LAB=${LAB:-thr}
mib=${MIB:-1024}
bin=${EDM_CAST:-target/release/edm-cast}
lab=tools/lanlab.sh
dir=$(mktemp -d /tmp/edm-throughput.XXXXXX)
out=bench/results/throughput.tsv
cleanup() { bash $lab down >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --quiet
header='date\tcase\tmib\tloss_pct\trate\tgoodput_mbit\tfirst_pass_mbit\tsender_cpu_s_per_gb'
header+='\treceiver_cpu_s_per_gb\tsender_rss_kib\treceiver_rss_kib\tmd5_ok\n'
[[ -f $out ]] || printf "$header" >"$out"

head -c $((mib << 20)) /dev/urandom >"$dir/random.bin"
truncate -s 4G "$dir/sparse.bin"

# run CASE RECEIVERS FILE LOSS RATE: one transfer (RECEIVERS 0 or 1), one row.
run() {
    local case=$1 receivers=$2 file=$3 loss=$4 rate=$5
    local gb rpid= ok=- goodput pass s_cpu r_cpu su ss s_rss ru rs r_rss
    gb=$(awk -v b="$(stat -c %s "$file")" 'BEGIN { print b / 1e9 }')
    bash $lab up 1 none "$loss" >/dev/null 2>&1
    rm -rf "$dir/out"
    echo "0 0 0" >"$dir/recv.time"
    if ((receivers)); then
        bash $lab exec r1 /usr/bin/time -f '%U %S %M' -o "$dir/recv.time" \
            timeout 600 "$bin" recv --iface eth0 --out "$dir/out" --timeout 60 >/dev/null 2>"$dir/recv.err" &
        rpid=$!
        sleep 0.3
    fi
    bash $lab exec s /usr/bin/time -f '%U %S %M' -o "$dir/send.time" \
        timeout 600 "$bin" send "$file" --iface eth0 --rate "$rate" --min-receivers "$receivers" \
        >"$dir/send.out" 2>"$dir/send.err"
    if [[ -n $rpid ]]; then
        wait "$rpid" || true
        ok=0
        [[ $(md5sum <"$file") == $(md5sum <"$dir/out/$(basename "$file")" 2>/dev/null) ]] && ok=1
    fi
    goodput=$(sed -nE 's/ *goodput +([0-9.]+) Mbit\/s/\1/p' "$dir/send.out")
    pass=$(sed -nE 's/ *first pass .*\(([0-9.]+) Mbit\/s.*/\1/p' "$dir/send.out")
    ((receivers)) || goodput=-
    read -r su ss s_rss <"$dir/send.time"
    read -r ru rs r_rss <"$dir/recv.time"
    s_cpu=$(awk -v u="$su" -v s="$ss" -v g="$gb" 'BEGIN { printf "%.2f", (u + s) / g }')
    r_cpu=$(awk -v u="$ru" -v s="$rs" -v g="$gb" 'BEGIN { printf "%.2f", (u + s) / g }')
    printf '%-28s goodput %7s Mbit/s  first pass %7s Mbit/s  CPU s/GB sender %5s receiver %5s  RSS KiB sender %6s receiver %6s  md5 %s\n' \
        "$case" "$goodput" "$pass" "$s_cpu" "$r_cpu" "$s_rss" "$r_rss" "$ok"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$case" \
        "$(($(stat -c %s "$file") >> 20))" "$loss" "$rate" "$goodput" "$pass" "$s_cpu" "$r_cpu" \
        "$s_rss" "$r_rss" "$ok" >>"$out"
    bash $lab down >/dev/null 2>&1
}

run "sender alone, unpaced" 0 "$dir/random.bin" 0 10G
run "1 receiver, 2G, 0% loss" 1 "$dir/random.bin" 0 2G
run "1 receiver, 2G, 5% loss" 1 "$dir/random.bin" 5 2G
run "4 GiB sparse, 1G, 0% loss" 1 "$dir/sparse.bin" 0 1G
