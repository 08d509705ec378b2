#!/usr/bin/env bash
# Download once: a class of N students needs the same URL from a web server behind a slow WAN
# link. Three ways, one after another, in the namespace lab (tools/lanlab.sh with its wan host):
#   get        edm-cast serve on the lab server; every student runs `edm-cast get URL` at once
#              (one download, multicast with cut-through while it arrives)
#   http       every student downloads the URL itself with curl, over the same WAN link
#   then-send  the server downloads it with curl, then `edm-cast send FILE` to the class
#   send-url   the students run `edm-cast recv`; the server runs `edm-cast send URL` (cut-through)
# Each row: mode, seconds until every student has the file (from the first command), bytes on the
# wan host's interface / file size, students with the right MD5. Needs root.
#
#   bench/wan.sh                        # 8 students, 64 MiB, 20 Mbit/s WAN, 100 Mbit/s LAN, 1% loss
#   RUNS=3 N=8 MIB=64 WAN_MBIT=20 LOSS=1 MODES="get http then-send" bench/wan.sh
#   RUNS=3 N=4 MIB=32 WAN_MBIT=50 LOSS=1 MODES=send-url bench/wan.sh   # issue 14's cut-through case
#   BIN=/tmp/other/edm-cast bench/wan.sh                                # another build (not rebuilt)
#   TRACE=1 RUNS=3 N=4 MIB=32 WAN_MBIT=50 LOSS=1 MODES=send-url bench/wan.sh
#                     # and where the time after the last WAN byte goes (tcpdump on the lab server,
#                     # bench/wantrace.py): the last DATA, each student's Done, ACK and exit
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-8} MIB=${MIB:-64} WAN_MBIT=${WAN_MBIT:-20} LAN_MBIT=${LAN_MBIT:-100} LOSS=${LOSS:-1}
RUNS=${RUNS:-1} MODES=${MODES:-"get http then-send"}
export LAB=${LAB:-wanb}
OUT=${OUT:-bench/results/wan.tsv}
BIN=${BIN:-}
TRACE=${TRACE:-}
LANLAB=$PWD/tools/lanlab.sh
(( EUID == 0 )) || { echo "wan.sh: needs root (network namespaces)" >&2; exit 1; }
[[ -n $BIN ]] || { cargo build --release --quiet; BIN=$PWD/target/release/edm-cast; }
[[ -z $TRACE ]] || command -v tcpdump >/dev/null ||
    { echo "wan.sh: TRACE=1 needs tcpdump (apt-get install tcpdump)" >&2; exit 1; }

work=$(mktemp -d /tmp/edm-wan.XXXXXX)
cleanup() {
    set +e
    bash "$LANLAB" down >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/www"
head -c $((MIB << 20)) /dev/urandom >"$work/www/course.iso"
want=$(md5sum <"$work/www/course.iso" | cut -d' ' -f1)
size=$((MIB << 20))
rate=$(awk -v m="$LAN_MBIT" 'BEGIN { printf "%gM", m * 0.97 }')
[[ -f $OUT ]] || printf 'date\tmode\tn\tmib\twan_mbit\tlan_mbit\tloss\trun\tsecs\twan_ratio\tmd5_ok\n' >"$OUT"

lab() { bash "$LANLAB" "$@"; }
now() { date +%s.%N; }

one_run() {  # mode run
    local mode=$1 run=$2 i pids=() t0 t1 before after ok=0 port sender=
    WAN_RATE=${WAN_MBIT}mbit lab up "$N" "${LAN_MBIT}mbit" "$LOSS" >/dev/null 2>&1
    rm -rf "$work/out" "$work/s" && mkdir -p "$work/out" "$work/s"
    lab exec w timeout 900 python3 tools/httpd.py --dir "$work/www" --bind 10.78.0.2 --port 8080 \
        --max-secs 900 >/dev/null 2>&1 &
    sleep 0.5
    local url=http://10.78.0.2:8080/course.iso
    before=$(lab txbytes w)
    case $mode in
        get)
            lab exec s timeout 900 "$BIN" serve --group 239.1.1.1 --iface eth0 --rate "$rate" \
                --allow 10.78.0.0/24 --exit-after 900 >/dev/null 2>"$work/serve.log" &
            sleep 0.3
            t0=$(now)
            for i in $(seq 1 "$N"); do
                lab exec "r$i" timeout 900 nice -n 10 "$BIN" get "$url" --group 239.1.1.1 \
                    --iface eth0 --out "$work/out/r$i" >/dev/null 2>&1 & pids+=($!)
            done
            ;;
        http)
            t0=$(now)
            for i in $(seq 1 "$N"); do
                mkdir -p "$work/out/r$i"
                lab exec "r$i" timeout 900 nice -n 10 curl -sS --fail -o "$work/out/r$i/course.iso" \
                    "$url" & pids+=($!)
            done
            ;;
        then-send)
            for i in $(seq 1 "$N"); do
                lab exec "r$i" timeout 900 nice -n 10 "$BIN" recv --group 239.1.1.1 --iface eth0 \
                    --out "$work/out/r$i" >/dev/null 2>&1 & pids+=($!)
            done
            t0=$(now)
            lab exec s timeout 900 curl -sS --fail -o "$work/s/course.iso" "$url"
            lab exec s timeout 900 "$BIN" send "$work/s/course.iso" --group 239.1.1.1 \
                --iface eth0 --rate "$rate" --min-receivers "$N" --wait 30 >/dev/null 2>&1
            ;;
        send-url)
            if [[ -n $TRACE ]]; then
                rm -rf "$work/trace" && mkdir -p "$work/trace" && : >"$work/trace/exits.txt"
                # Headers only; each tcpdump's pid (exec keeps it) to stop it with SIGINT.
                for side in wan:wan0 lan:eth0; do
                    lab exec s sh -c "echo \$\$ >$work/trace/${side%%:*}.pid; exec timeout 900 \
                        tcpdump -i ${side#*:} -s 80 -U -w $work/trace/${side%%:*}.pcap" \
                        >/dev/null 2>"$work/trace/${side%%:*}.err" &
                done
                sleep 1
            fi
            for i in $(seq 1 "$N"); do
                ( lab exec "r$i" timeout 900 nice -n 10 "$BIN" recv --group 239.1.1.1 --iface eth0 \
                    --out "$work/out/r$i" >/dev/null 2>&1
                  [[ -z $TRACE ]] || echo "r$i $(now)" >>"$work/trace/exits.txt" ) & pids+=($!)
            done
            sleep 0.3
            t0=$(now)
            # Not waited for below: the students having the file is what is timed, not the
            # sender's END repeats and exit after their last ACK.
            lab exec s timeout 900 "$BIN" send "$url" --group 239.1.1.1 --iface eth0 \
                --rate "$rate" --min-receivers "$N" --wait 30 >/dev/null 2>&1 & sender=$!
            ;;
    esac
    for p in "${pids[@]}"; do wait "$p" || true; done
    t1=$(now)
    [[ -z ${sender:-} ]] || wait "$sender" || true
    sleep 0.3
    after=$(lab txbytes w)
    if [[ $mode == send-url && -n $TRACE ]]; then
        # tcpdump may lag behind on a loaded machine: what it has not read when stopped is lost.
        sleep 2
        kill -INT "$(cat "$work/trace/wan.pid")" "$(cat "$work/trace/lan.pid")" 2>/dev/null || true
        sleep 0.5
        echo "$t0" >"$work/trace/t0"
    fi
    for i in $(seq 1 "$N"); do
        [[ -f $work/out/r$i/course.iso ]] &&
            [[ $(md5sum <"$work/out/r$i/course.iso" | cut -d' ' -f1) == "$want" ]] && ok=$((ok + 1))
    done
    lab down >/dev/null 2>&1
    local secs ratio
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    ratio=$(awk -v b=$((after - before)) -v s="$size" 'BEGIN { printf "%.3f", b / s }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$mode" "$N" "$MIB" \
        "$WAN_MBIT" "$LAN_MBIT" "$LOSS" "$run" "$secs" "$ratio" "$ok/$N" | tee -a "$OUT"
    if [[ $mode == send-url && -n $TRACE ]]; then
        echo "  load average $(cut -d' ' -f1-3 /proc/loadavg)"
        grep -h "dropped by kernel" "$work/trace/wan.err" "$work/trace/lan.err" | grep -v "^0 " |
            sed 's/^/  tcpdump: /' || true
        python3 bench/wantrace.py "$work/trace"
    fi
}

ideal=$(awk -v m="$MIB" -v w="$WAN_MBIT" 'BEGIN { printf "%.2f", m * 8 * 1.048576 / w }')
echo "wan.sh: $N students, $MIB MiB, WAN $WAN_MBIT Mbit/s (file / WAN rate = $ideal s), LAN $LAN_MBIT Mbit/s, $LOSS% loss"
exec 9>/tmp/edm-bench.lock
flock -w 7200 9
for run in $(seq 1 "$RUNS"); do
    for mode in $MODES; do
        one_run "$mode" "$run"
    done
done
