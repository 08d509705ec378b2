#!/usr/bin/env bash
# mixed.sh - the mixed class of issue 14: 7 receivers on 100 Mbit/s switch ports and one (r8)
# behind a 10 Mbit/s port, 1% loss toward each, 64 MiB, `send` with default flags (congestion
# control on, no --rate). Each run is followed by a same-minute reference on the same lab with r8's
# receiver not started (the 7 alone), so what the slow PC costs the 7 shows as a ratio. Needs root.
#
#   bench/mixed.sh                  # 3 runs of each
#   RUNS=5 MIB=32 bench/mixed.sh    # runs, file size in MiB
#
# Environment (default): RUNS (3)  MIB (64)  LOSS percent toward each receiver (1)  MBIT the link
#   and the 7's ports (100)  SLOW the slow port's tc rate (10mbit)  NICE receivers' nice (0)
#   REF=0 skips the reference runs  SEND_ARGS more options for `send`  EDM_CAST binary
#   (target/release/edm-cast, built if missing)  LAB (mixed)  LOCK (/tmp/edm-bench.lock, held
#   during each run so runs of the benches that take it never overlap)
#   OUT (bench/results/mixed.tsv)  KEEP_WORK=1 keeps the logs
#
# Per run it prints: each receiver's finish time ÷ its link time (file / its port's rate), the
# slow one's outcome (finished in X s, or its own last line and the sender's line about it), when
# the sender ended, and the sender's interface bytes ÷ file (lanlab.sh txbytes). The issue's
# targets: the 7 within 1.25 × link; the slow one within 1.5 × its link time or dropped with a
# line on both sides; bytes ≤ 1.5 × file.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LANLAB="$ROOT/tools/lanlab.sh"
PY=/usr/bin/python3
: "${RUNS:=3}" "${MIB:=64}" "${LOSS:=1}" "${MBIT:=100}" "${SLOW:=10mbit}" "${NICE:=0}" "${REF:=1}"
: "${SEND_ARGS:=}" "${LAB:=mixed}" "${LOCK:=/tmp/edm-bench.lock}" "${OUT:=bench/results/mixed.tsv}"
: "${KEEP_WORK:=0}"
export LAB
log() { echo "mixed: $*" >&2; }
die() { echo "mixed: error: $*" >&2; exit 1; }
((EUID == 0)) || die "must run as root (network namespaces)"
EDM="${EDM_CAST:-$ROOT/target/release/edm-cast}"
[[ -x "$EDM" ]] || timeout 1800 cargo build --release --quiet || die "cargo build --release failed"
timeout 60 "$LANLAB" check >/dev/null || die "the lab cannot run here"

N=8 SLOW_IDX=8
WORK=$(mktemp -d "/tmp/edm-mixed.XXXXXX")
LOCK_WAIT=3600
source bench/lib.sh
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    set +e
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    timeout 180 "$LANLAB" down >/dev/null 2>&1
    if [[ "$KEEP_WORK" == 1 ]]; then rm -rf "$WORK/src"; log "logs kept in $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A copy: a rebuild during the bench cannot change what is measured.
cp "$EDM" "$WORK/edm-cast"
BUILD="$(git describe --always --dirty 2>/dev/null || echo '?')/$(date -u -r "$EDM" +%FT%TZ)"
EDM="$WORK/edm-cast"
SRC="$WORK/src/image.bin"
mkdir -p "$WORK/src"
head -c "$((MIB << 20))" /dev/urandom >"$SRC"
SIZE=$(stat -c %s "$SRC")
MD5=$(md5sum <"$SRC" | cut -d' ' -f1)
slow_mbit=$(awk -v r="$SLOW" 'BEGIN { v = r + 0; if (r ~ /gbit/) v *= 1000; else if (r ~ /kbit/) v /= 1000; print v }')
link=$(awk -v s="$SIZE" -v r="$MBIT" 'BEGIN { printf "%.3f", s * 8 / (r * 1e6) }')
slow_link=$(awk -v s="$SIZE" -v r="$slow_mbit" 'BEGIN { printf "%.3f", s * 8 / (r * 1e6) }')
log "edm-cast $BUILD; $MIB MiB; link time ${link} s at $MBIT Mbit/s, ${slow_link} s at $SLOW"

timeout 300 env PORT_RATES="$SLOW_IDX=$SLOW" "$LANLAB" up "$N" "${MBIT}mbit" "$LOSS" 2>"$WORK/lanlab.log" ||
    { cat "$WORK/lanlab.log" >&2; die "lanlab up failed"; }
mkdir -p "$(dirname "$OUT")"
[[ -s "$OUT" ]] || printf 'date\tcase\trun\tmib\tloss\tseven_max_ratio\tseven_ratios\tslow_outcome\tslow_secs\tslow_ratio\tsender_secs\tbytes_ratio\tmd5_ok\tload1\tbuild\n' >"$OUT"

# run CASE RUNI: CASE is "mixed" (r1..r8) or "ref" (r1..r7 only)
run() {
    local case="$1" runi="$2" n=$N i RUN="$WORK/run" targets=() pids=()
    [[ "$case" == ref ]] && n=7
    rm -rf "$RUN"; mkdir -p "$RUN"
    local load1 tx0 tx1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    tx0=$(timeout 20 "$LANLAB" txbytes s)
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$RUN/r$i"
        "$LANLAB" exec "r$i" nice -n "$NICE" timeout -k 5 200 "$EDM" recv --group 239.1.1.1 --iface eth0 \
            --out "$RUN/r$i" --timeout 60 --name "r$i" </dev/null >"$RUN/r$i.log" 2>&1 9>&- &
        pids+=($!) PIDS+=($!); targets+=("$RUN/r$i/image.bin:$!")
    done
    sleep 0.5
    local t0=$EPOCHREALTIME
    # shellcheck disable=SC2086  # SEND_ARGS: split on purpose
    "$LANLAB" exec s bash -c '"$@"; rc=$?; echo "$EPOCHREALTIME" >"'"$RUN"'/sender.end"; exit $rc' _ \
        timeout -k 5 200 "$EDM" send "$SRC" --group 239.1.1.1 --iface eth0 --min-receivers "$n" \
        --wait 30 $SEND_ARGS </dev/null >"$RUN/sender.log" 2>&1 9>&- &
    local sender=$!
    PIDS+=("$sender")
    # The slow one may finish only after the sender: --grace covers its own link time and more.
    "$PY" bench/waitdone.py --t0 "$t0" --deadline 180 --size "$SIZE" --sender-pid "$sender" \
        --grace 5 "${targets[@]}" >"$RUN/done.txt" 9>&- || true
    wait_gone "$sender" 30 || true
    for i in "${pids[@]}"; do
        wait_gone "$i" 10 || true
        kill -TERM "$i" 2>/dev/null || true
    done
    kill -TERM "$sender" 2>/dev/null || true
    sleep 0.5
    tx1=$(timeout 20 "$LANLAB" txbytes s)
    local bytes sender_secs ratios="" max=0 md5ok=0 secs r
    bytes=$(awk -v a="$tx0" -v b="$tx1" -v s="$SIZE" 'BEGIN { printf "%.3f", (b - a) / s }')
    sender_secs=$(awk -v t0="$t0" -v f="$(cat "$RUN/sender.end" 2>/dev/null || echo NA)" \
        'BEGIN { if (f == "NA") print "NA"; else printf "%.2f", f - t0 }')
    for ((i = 1; i <= n; i++)); do
        [[ -f "$RUN/r$i/image.bin" && "$(md5sum <"$RUN/r$i/image.bin" | cut -d' ' -f1)" == "$MD5" ]] &&
            md5ok=$((md5ok + 1))
    done
    for ((i = 1; i <= 7; i++)); do
        secs=$(awk -v i="$i" '$1 == i { print $2 }' "$RUN/done.txt")
        r=$(awk -v s="$secs" -v l="$link" 'BEGIN { if (s == "NA" || s == "") print "NA"; else printf "%.2f", s / l }')
        ratios+="${ratios:+,}$r"
        max=$(awk -v a="$max" -v b="$r" 'BEGIN { print (b == "NA" || a == "NA") ? "NA" : (b > a ? b : a) }')
    done
    local outcome=- slow_secs=NA slow_ratio=NA
    if [[ "$case" == mixed ]]; then
        slow_secs=$(awk -v i="$SLOW_IDX" '$1 == i { print $2 }' "$RUN/done.txt")
        if [[ "$slow_secs" != NA ]]; then
            outcome=finished
            slow_ratio=$(awk -v s="$slow_secs" -v l="$slow_link" 'BEGIN { printf "%.2f", s / l }')
        else
            outcome=dropped
        fi
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$case" \
        "$runi" "$MIB" "$LOSS" "$max" "$ratios" "$outcome" "$slow_secs" "$slow_ratio" "$sender_secs" \
        "$bytes" "$md5ok/$n" "$load1" "$BUILD" >>"$OUT"
    echo "$case run $runi (load $load1): the 7 finished at ${ratios//,/ } x link ($link s), max $max;" \
        "sender ended at $sender_secs s, sent $bytes x file; $md5ok/$n exact"
    if [[ "$case" == mixed ]]; then
        if [[ "$outcome" == finished ]]; then
            echo "  r$SLOW_IDX ($SLOW) finished at $slow_secs s = $slow_ratio x its link time ($slow_link s)"
        else
            echo "  r$SLOW_IDX ($SLOW) dropped. Its line:"
            tr '\r' '\n' <"$RUN/r$SLOW_IDX.log" | grep -v '^\s*$' | grep -i 'edm-cast\|sender\|behind' |
                tail -n 2 | sed 's/^/    /'
            echo "  the sender's lines about it:"
            tr '\r' '\n' <"$RUN/sender.log" | grep -v '^\s*$' | grep "r$SLOW_IDX\b" | sort -u | tail -n 3 |
                sed 's/^/    /'
        fi
    fi
    if [[ "$KEEP_WORK" == 1 ]]; then
        find "$RUN" \( -name image.bin -o -name '.edm-cast-*.part' \) -delete
        mv "$RUN" "$WORK/$case-$runi"
    fi
    rm -rf "$RUN"
}

for ((k = 1; k <= RUNS; k++)); do
    lock
    run mixed "$k"
    if [[ "$REF" == 1 ]]; then run ref "$k"; fi
    unlock
done
log "rows appended to $OUT"
