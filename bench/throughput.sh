#!/usr/bin/env bash
# The fast data path, measured on the lab's bridge with no rate limit (tools/lanlab.sh up 1 none
# LOSS). Both sides share this machine's two cores, and the kernel charges delivery into the
# receiver's socket to the sender. Cases:
#   - the sender alone (no receiver, unpaced): what one core can encode, pace and send;
#   - one receiver at --rate 2G, 0% and 5% loss: end-to-end goodput with decoding;
#   - a 4 GiB sparse file at --rate 1G: peak RSS of both sides (the memory bound).
# With CASES=two (issue 14's case): 2 receivers, no rate limit, 0% loss (no loss rule at all:
# nothing is dropped but what a receiver's socket cannot hold), default flags (congestion control,
# ceiling = the veth's reported 10 Gbit/s), the bridge without netfilter (as a switch), alternated
# RUNS times (default 2) with the fixed-rate reference `--cc off --rate 1G` in the same minutes, so
# the two are compared under the same load; the load average is printed with each run.
# Prints goodput, first-pass rate, CPU seconds per GB (the sender's includes its MD5 of the file
# before sending; the receivers' is their sum) and peak RSS, and appends rows to
# bench/results/throughput.tsv. Needs root.
#
#   bench/throughput.sh                  # 1 GiB random file
#   MIB=256 bench/throughput.sh          # smaller file
#   CASES=two RUNS=3 bench/throughput.sh # 2 receivers: default flags against --cc off --rate 1G
set -euo pipefail
cd "$(dirname "$0")/.."
export LAB=${LAB:-thr}
mib=${MIB:-1024}
bin=${EDM_CAST:-target/release/edm-cast}
cases=${CASES:-all}
lab=tools/lanlab.sh
dir=$(mktemp -d /tmp/edm-throughput.XXXXXX)
out=bench/results/throughput.tsv
cleanup() { bash $lab down >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
[[ -n ${EDM_CAST:-} ]] || cargo build --release --quiet
header='date\tcase\tmib\tloss_pct\trate\tgoodput_mbit\tfirst_pass_mbit\tsender_cpu_s_per_gb'
header+='\treceiver_cpu_s_per_gb\tsender_rss_kib\treceiver_rss_kib\tmd5_ok\n'
[[ -f $out ]] || printf "$header" >"$out"

head -c $((mib << 20)) /dev/urandom >"$dir/random.bin"
[[ $cases == two ]] || truncate -s 4G "$dir/sparse.bin"

# run CASE RECEIVERS FILE LOSS RATE [SEND ARGS...]: one transfer, one row. RATE `default` gives
# no --rate (congestion control up to the interface's link speed).
run() {
    local case=$1 receivers=$2 file=$3 loss=$4 rate=$5
    shift 5
    local gb i ok=- goodput pass s_cpu r_cpu su ss s_rss ru rs r_rss rflag=() load
    gb=$(awk -v b="$(stat -c %s "$file")" 'BEGIN { print b / 1e9 }')
    [[ $rate == default ]] || rflag=(--rate "$rate")
    bash $lab up "$((receivers > 0 ? receivers : 1))" none "$loss" >/dev/null 2>&1
    if [[ $cases == two ]]; then
        # A switch runs no netfilter: the lab's bridge would pass every frame through iptables'
        # hooks (br_netfilter) and, at 0% loss, through a loss rule dropping nothing, about 5% of
        # the sender's CPU here (the kernel charges forwarding to it).
        ip netns exec "$LAB-br" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
        [[ $loss != 0 ]] || ip netns exec "$LAB-br" nft delete table netdev lanlab 2>/dev/null || true
    fi
    rm -rf "$dir"/out*
    echo "0 0 0" >"$dir/recv.time"
    for ((i = 1; i <= receivers; i++)); do
        bash $lab exec "r$i" /usr/bin/time -f '%U %S %M' -o "$dir/recv$i.time" \
            timeout 600 "$bin" recv --iface eth0 --out "$dir/out$i" --timeout 60 >/dev/null 2>"$dir/recv$i.err" &
    done
    if ((receivers)); then sleep 0.3; fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    bash $lab exec s /usr/bin/time -f '%U %S %M' -o "$dir/send.time" \
        timeout 600 "$bin" send "$file" --iface eth0 "${rflag[@]}" --min-receivers "$receivers" "$@" \
        >"$dir/send.out" 2>"$dir/send.err"
    wait
    if ((receivers)); then
        ok=0
        for ((i = 1; i <= receivers; i++)); do
            [[ $(md5sum <"$file") == $(md5sum <"$dir/out$i/$(basename "$file")" 2>/dev/null) ]] && ok=$((ok + 1))
        done
        # The receivers' CPU summed, the largest RSS.
        cat "$dir"/recv*.time | awk '{ u += $1; s += $2; if ($3 > m) m = $3 } END { print u, s, m }' >"$dir/recv.time"
        rm -f "$dir"/recv?*.time
    fi
    goodput=$(sed -nE 's/ *goodput +([0-9.]+) Mbit\/s/\1/p' "$dir/send.out")
    pass=$(sed -nE 's/ *first pass .*\(([0-9.]+) Mbit\/s.*/\1/p' "$dir/send.out")
    ((receivers)) || goodput=-
    read -r su ss s_rss <"$dir/send.time"
    read -r ru rs r_rss <"$dir/recv.time"
    s_cpu=$(awk -v u="$su" -v s="$ss" -v g="$gb" 'BEGIN { printf "%.2f", (u + s) / g }')
    r_cpu=$(awk -v u="$ru" -v s="$rs" -v g="$gb" 'BEGIN { printf "%.2f", (u + s) / g }')
    printf '%-30s goodput %7s Mbit/s  first pass %7s Mbit/s  CPU s/GB sender %5s receiver(s) %5s  RSS KiB sender %6s receiver %6s  md5 %s/%s  load %s\n' \
        "$case" "$goodput" "$pass" "$s_cpu" "$r_cpu" "$s_rss" "$r_rss" "$ok" "$receivers" "$load"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$case" \
        "$(($(stat -c %s "$file") >> 20))" "$loss" "$rate${*:+ $*}" "$goodput" "$pass" "$s_cpu" "$r_cpu" \
        "$s_rss" "$r_rss" "$ok" >>"$out"
    bash $lab down >/dev/null 2>&1
}

if [[ $cases == two ]]; then
    for ((n = 0; n < ${RUNS:-2}; n++)); do
        run "2 receivers, default flags" 2 "$dir/random.bin" 0 default
        run "2 receivers, --cc off 1G" 2 "$dir/random.bin" 0 1G --cc off
    done
    exit 0
fi
run "sender alone, unpaced" 0 "$dir/random.bin" 0 10G
run "1 receiver, 2G, 0% loss" 1 "$dir/random.bin" 0 2G
run "1 receiver, 2G, 5% loss" 1 "$dir/random.bin" 5 2G
run "4 GiB sparse, 1G, 0% loss" 1 "$dir/sparse.bin" 0 1G
