#!/usr/bin/env bash
# The LAN lab as a benchmark: runs tests/lan.rs (release build) RUNS times per scenario and prints
# the median transfer time and sender-interface bytes, as ratios to the ideal (file size / link rate)
# and to the file size. Needs root (network namespaces); tools/lanlab.sh builds and removes the lab.
#
#   bench/lan.sh                      # 8 receivers, 5% loss, 100 Mbit/s, 64 MiB, 5 runs
#   RUNS=3 bench/lan.sh 16 1 100 64   # receivers, loss %, Mbit/s, MiB
#   ATTACK=flood bench/lan.sh         # one more host floods the sender (tools/attack.py flood);
#                                     # ATTACK=mutate: spoofed, mutated copies of DATA
#   SEND_ARGS="--http 8080" bench/lan.sh   # more options for the sender (here: the dashboard on)
#   RATE=default NICE=0 bench/lan.sh  # the sender's --rate (default: 97% of the link; `default`: none,
#                                     # congestion control finds it); receivers' nice (default 10)
#   PORT_RATES="8=10mbit" bench/lan.sh # r8 behind a 10 Mbit/s switch port (tools/lanlab.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

receivers=${1:-8} loss=${2:-5} mbit=${3:-100} mib=${4:-64} runs=${RUNS:-5}
out=bench/results/lan.tsv
cargo build --release --quiet --tests
[[ -f $out ]] || printf 'date\treceivers\tloss_pct\tmbit\tmib\trun\tmd5_ok\tbytes_ratio\tsecs\ttime_ratio\tattack\n' >"$out"

ratios=() bytes=()
for run in $(seq 1 "$runs"); do
    line=$(EDM_LAN_RECEIVERS=$receivers EDM_LAN_LOSS=$loss EDM_LAN_MBIT=$mbit EDM_LAN_MIB=$mib \
        EDM_LAN_ATTACK=${ATTACK:-} EDM_LAN_SEND_ARGS=${SEND_ARGS:-} \
        EDM_LAN_RATE=${RATE:-} EDM_LAN_NICE=${NICE:-} \
        EDM_CAST_REQUIRE_LAB=1 timeout 600 cargo test --release --quiet --test lan \
        lan_lab_every_receiver_gets_the_exact_file -- --nocapture 2>&1 |
        grep -o 'LAN lab.*') || { echo "run $run failed" >&2; exit 1; }
    echo "$line"
    # "... 8/8 MD5 equal; sender interface N bytes = 1.110 x file; transfer 6.65 s = 1.24 x ideal ..."
    ok=$(sed -E 's/.*: ([0-9]+\/[0-9]+) MD5 equal.*/\1/' <<<"$line")
    b=$(sed -E 's/.* bytes = ([0-9.]+) x file.*/\1/' <<<"$line")
    s=$(sed -E 's/.*transfer ([0-9.]+) s.*/\1/' <<<"$line")
    r=$(sed -E 's/.* s = ([0-9.]+) x ideal.*/\1/' <<<"$line")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$receivers" "$loss" \
        "$mbit" "$mib" "$run" "$ok" "$b" "$s" "$r" \
        "${ATTACK:-none}${SEND_ARGS:+ $SEND_ARGS}${RATE:+ rate=$RATE}${NICE:+ nice=$NICE}" >>"$out"
    ratios+=("$r") bytes+=("$b")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "median of $runs: time $(median "${ratios[@]}") x ideal, sender bytes $(median "${bytes[@]}") x file" \
    "($receivers receivers, $loss% loss, $mbit Mbit/s, $mib MiB, attack ${ATTACK:-none}${SEND_ARGS:+, sender $SEND_ARGS}; rows appended to $out)"
