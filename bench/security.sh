#!/usr/bin/env bash
# What signatures, digests and encryption cost: one sender and one receiver on the lab's bridge
# (tools/lanlab.sh up 1 RATE 0), a random file sent at 100 Mbit/s and at 1 Gbit/s, four ways:
#   - old:       the binary given in EDM_CAST_OLD (edm-cast before protocol v3, for "today");
#   - plain:     no key (block digests are sent and checked anyway);
#   - signed:    send --key, recv --trust;
#   - encrypted: send --key --encrypt --to PC, recv --trust --key.
# Prints, per case, the CPU seconds per GB of file on each side (user + sys) and the sender's UDP
# payload bytes per file byte (its summary), and appends rows to bench/results/security.tsv.
# Sender and receiver share this machine's two cores. Needs root.
#
#   EDM_CAST_OLD=/path/to/old/edm-cast bench/security.sh
#   MIB_100=64 MIB_1000=256 RUNS=1 bench/security.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LAB=${LAB:-sec}
bin=${EDM_CAST:-target/release/edm-cast}
old=${EDM_CAST_OLD:-}
runs=${RUNS:-3}
lab=tools/lanlab.sh
dir=$(mktemp -d /tmp/edm-security.XXXXXX)
out=bench/results/security.tsv
cleanup() { bash $lab down >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --quiet
[[ -f $out ]] || printf 'date\tcase\tmbit\tmib\trun\tsender_cpu_s_per_gb\treceiver_cpu_s_per_gb\tpayload_ratio\tsecs\tmd5_ok\n' >"$out"

"$bin" keygen "$dir/teacher.key" >"$dir/teacher.pub" 2>/dev/null
"$bin" keygen "$dir/pc.key" >"$dir/pc.pub" 2>/dev/null
teacher=$(cat "$dir/teacher.pub") pc=$(cat "$dir/pc.pub")

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# run CASE MBIT FILE: RUNS transfers, one row each, and the medians.
run() {
    local case=$1 mbit=$2 file=$3 exe=$bin sargs=() rargs=()
    case $case in
        old) exe=$old ;;
        signed) sargs=(--key "$dir/teacher.key") rargs=(--trust "$teacher") ;;
        encrypted) sargs=(--key "$dir/teacher.key" --encrypt --to "$pc")
                   rargs=(--trust "$teacher" --key "$dir/pc.key") ;;
    esac
    local gb s_all=() r_all=() p_all=() t_all=()
    gb=$(awk -v b="$(stat -c %s "$file")" 'BEGIN { print b / 1e9 }')
    for r in $(seq 1 "$runs"); do
        bash $lab up 1 "${mbit}mbit" 0 >/dev/null 2>&1
        rm -rf "$dir/out"
        bash $lab exec r1 /usr/bin/time -f '%U %S' -o "$dir/recv.time" \
            timeout 300 "$exe" recv --iface eth0 --out "$dir/out" --timeout 60 "${rargs[@]}" \
            >/dev/null 2>"$dir/recv.err" &
        local rpid=$!
        sleep 0.3
        bash $lab exec s /usr/bin/time -f '%U %S' -o "$dir/send.time" \
            timeout 300 "$exe" send "$file" --iface eth0 --rate "$((mbit * 97 / 100))M" \
            --min-receivers 1 "${sargs[@]}" >"$dir/send.out" 2>"$dir/send.err"
        wait "$rpid" || true
        local ok=0
        [[ $(md5sum <"$file") == $(md5sum <"$dir/out/$(basename "$file")" 2>/dev/null) ]] && ok=1
        local su ss ru rs s_cpu r_cpu ratio secs
        read -r su ss <"$dir/send.time"
        read -r ru rs <"$dir/recv.time"
        s_cpu=$(awk -v u="$su" -v s="$ss" -v g="$gb" 'BEGIN { printf "%.3f", (u + s) / g }')
        r_cpu=$(awk -v u="$ru" -v s="$rs" -v g="$gb" 'BEGIN { printf "%.3f", (u + s) / g }')
        ratio=$(sed -nE 's/.*= ([0-9.]+) x file size.*/\1/p' "$dir/send.out")
        secs=$(head -1 "$dir/send.out" | sed -nE 's/.* in ([0-9.]+) s$/\1/p')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$case" "$mbit" \
            "$(($(stat -c %s "$file") >> 20))" "$r" "$s_cpu" "$r_cpu" "$ratio" "$secs" "$ok" >>"$out"
        s_all+=("$s_cpu") r_all+=("$r_cpu") p_all+=("$ratio") t_all+=("$secs")
        bash $lab down >/dev/null 2>&1
    done
    printf '%-10s %5s Mbit/s  CPU s/GB sender %6s receiver %6s  payload %6s x file  %6s s  (median of %s)\n' \
        "$case" "$mbit" "$(median "${s_all[@]}")" "$(median "${r_all[@]}")" \
        "$(median "${p_all[@]}")" "$(median "${t_all[@]}")" "$runs"
}

head -c $((${MIB_100:-96} << 20)) /dev/urandom >"$dir/slow.bin"
head -c $((${MIB_1000:-384} << 20)) /dev/urandom >"$dir/fast.bin"
cases=(plain signed encrypted)
[[ -n $old ]] && cases=(old "${cases[@]}")
for c in "${cases[@]}"; do run "$c" 100 "$dir/slow.bin"; done
for c in "${cases[@]}"; do run "$c" 1000 "$dir/fast.bin"; done
