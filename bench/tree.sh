#!/usr/bin/env bash
# tree.sh - folders in the namespace LAN lab (tools/lanlab.sh): edm-cast sending a folder of many
# small files and one of a few large ones, against the same bytes as one file through edm-cast (the
# reference) and against UFTP sending the same folders (its directory mode). One TSV row per run.
# Needs root.
#
#   bench/tree.sh                          # the issue's figures: 2 GiB, N=8, 1% loss, 100 Mbit/s
#   SIZE=64M N=2 bench/tree.sh             # a quick check (the same 10,000 and 20 files, smaller)
#   CASES="one small" RUNS=3 bench/tree.sh
#
# Environment (default):
#   SIZE     bytes in each case (2G; K, M, G are powers of 1024)
#   N LOSS MBIT   receivers (8), random loss % toward each receiver (1), sender link Mbit/s (100)
#   CASES    in order (one small large uftp-small uftp-large):
#            one         edm-cast, the SIZE bytes as one file (the reference)
#            small       edm-cast, a folder of SMALL_FILES files (10000) of varied sizes, 10 folders
#                        of 10 sub-folders, summing to SIZE
#            large       edm-cast, a folder of LARGE_FILES files (20) summing to SIZE
#            uftp-small, uftp-large, uftp-one   UFTP sending the same folder (or file)
#            All three layouts cut one random stream (bench/treegen.py, seeded by SEED, 13): the
#            same bytes in every case.
#   RUNS     rounds of CASES (1);  RATE_FACTOR  each sender is paced at this fraction of the link
#            (0.97: edm-cast --rate, uftp -R)
#   DEADLINE seconds a run may take (automatic: edm-cast 3 x link time + 120, UFTP 6 x + 300)
#   DATA     where the sources, the receivers' copies and an older sender's spool go
#            (/work/treebench-data; a sender from before trees were read in place copied the tree
#            into $TMPDIR first); KEEP_DATA=1 keeps the sources at the end (else removed)
#   LAB (tbench), LOCK (/tmp/edm-bench.lock, shared with bench/compare.sh), LOCK_WAIT (7200)
#   QUIET_IDLE / QUIET_WAIT  before each run wait up to QUIET_WAIT s (60) for QUIET_IDLE % (50) idle
#   OUT      TSV (bench/results/tree.tsv);  EDM_CAST  binary (target/release/edm-cast, built if
#            missing)
#
# Each run: the receivers start (under nice -n 10, every tool alike), then the clock starts with the
# sender. Time = until the last receiver has every file in place (bench/treewait.py: edm-cast
# renames the unpacked tree into place at once, uftpd -T moves the files from its temp folder at the
# end of the session), so it includes edm-cast's walk and digests on the sender and the
# unpacking on the receivers. Then every receiver's copy is compared with the source by `diff -r`
# (`cmp` for one file); its copies are deleted right after. Before each run the disk must have room
# for N + 1 copies and 2 GiB spare, else the script stops and says so.
#
# Commands (RATE = RATE_FACTOR x link; receivers under nice -n 10):
#   edm-cast  r: edm-cast recv --group 239.1.1.1 --iface eth0 --out DIR --timeout 600 --name rI
#             s: TMPDIR=DATA/spool edm-cast send SRC --group 239.1.1.1 --iface eth0 --rate RATEM
#                --min-receivers N --wait 30
#   uftp      r: uftpd -d -I eth0 -D DIR -T TMPDIR -q   (a daemon: stopped once the run is over)
#             s: uftp -I eth0 -R RATE*1000 -H 0x0a4d000b,... SRC   (client ids = IPv4 in hex)
#
# TSV columns: date case tool files n loss_pct mbit payload run status secs link_secs time_ratio
#   wire_bytes bytes_ratio exact first_secs tx_start tx_end verified unpack_max sender_cpu_s
#   recv_cpu_s sender_rc
#   load1 load1_after idle_pct build
#   secs: until the last receiver had everything in place (NA unless all did); link_secs: payload
#   at MBIT; wire_bytes: the sender's eth0 tx_bytes (frames as sent, before the loss) during the
#   run; bytes_ratio: wire_bytes / payload; exact: receivers whose copy `diff -r` found equal;
#   tx_start / tx_end: when the sender's interface first and last carried more than 1 MB/s (the
#   sender's preparation before, the receivers' unpacking or moving after); verified: when the last
#   edm-cast receiver had the whole tree stream verified (its staging folder appeared), unpack_max:
#   the longest time a receiver then took to unpack it (NA for a file or UFTP); CPU: user + sys from
#   /usr/bin/time (receivers summed); load1 / load1_after: the machine's 1-minute load average
#   before and after the run; idle_pct: % of CPU idle in the second before the run; build: `git
#   describe --dirty` / the binary's time.
set -Eeuo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LANLAB="$ROOT/tools/lanlab.sh"
BENCH="$ROOT/bench"
PY=/usr/bin/python3

log() { echo "tree: $*" >&2; }
die() { echo "tree: error: $*" >&2; exit 1; }
case "${1:-}" in
    -h|--help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    "") ;;
    *) die "no arguments (settings are environment variables: bench/tree.sh --help)" ;;
esac

: "${SIZE:=2G}" "${N:=8}" "${LOSS:=1}" "${MBIT:=100}" "${RUNS:=1}" "${RATE_FACTOR:=0.97}"
: "${CASES:=one small large uftp-small uftp-large}" "${SMALL_FILES:=10000}" "${LARGE_FILES:=20}"
: "${SEED:=13}" "${DEADLINE:=}" "${DATA:=/work/treebench-data}" "${KEEP_DATA:=0}"
: "${LAB:=tbench}" "${LOCK:=/tmp/edm-bench.lock}" "${LOCK_WAIT:=7200}"
: "${QUIET_IDLE:=50}" "${QUIET_WAIT:=60}" "${OUT:=bench/results/tree.tsv}"
export LAB

BYTES=$(numfmt --from=iec "$SIZE" 2>/dev/null) || die "bad SIZE '$SIZE' (e.g. 2G, 64M)"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "bad N '$N'"
[[ "$LOSS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad LOSS '$LOSS'"
[[ "$MBIT" =~ ^[1-9][0-9]*$ ]] || die "bad MBIT '$MBIT'"
for c in $CASES; do
    case "$c" in one|small|large|uftp-one|uftp-small|uftp-large) ;; *) die "unknown case '$c'" ;; esac
done
((EUID == 0)) || die "must run as root (network namespaces)"
for pc in uftp:uftp uftpd:uftp /usr/bin/time:time ip:iproute2 tc:iproute2 nft:nftables \
          flock:util-linux diff:diffutils numfmt:coreutils "$PY":python3; do
    command -v "${pc%%:*}" >/dev/null 2>&1 || die "${pc%%:*} missing (apt-get install ${pc#*:})"
done
EDM="${EDM_CAST:-$ROOT/target/release/edm-cast}"
if [[ ! -x "$EDM" ]]; then
    [[ -n "${EDM_CAST:-}" ]] && die "EDM_CAST=$EDM_CAST is not executable"
    log "building edm-cast (cargo build --release)"
    timeout 3600 cargo build --release --quiet || die "cargo build --release failed"
fi
timeout 60 "$LANLAB" check >/dev/null || die "the lab cannot run here: $(timeout 60 "$LANLAB" check 2>&1 | tail -n1)"

HEADER=$'date\tcase\ttool\tfiles\tn\tloss_pct\tmbit\tpayload\trun\tstatus\tsecs\tlink_secs\ttime_ratio\twire_bytes\tbytes_ratio\texact\tfirst_secs\ttx_start\ttx_end\tverified\tunpack_max\tsender_cpu_s\trecv_cpu_s\tsender_rc\tload1\tload1_after\tidle_pct\tbuild'
mkdir -p "$(dirname "$OUT")"
if [[ ! -s "$OUT" ]]; then printf '%s\n' "$HEADER" >"$OUT"
elif [[ "$(head -n1 "$OUT")" != "$HEADER" ]]; then die "$OUT has another header; move it away or set OUT"; fi

# ------------------------------------------------------------------------------------ state, cleanup
RUN="$DATA/run"
source "$BENCH/lib.sh"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_all
    timeout 180 "$LANLAB" down >/dev/null 2>&1 || log "lanlab down failed"
    unlock
    rm -rf "$RUN" "$DATA/spool" "$DATA/bin"
    if [[ "$KEEP_DATA" == 1 ]]; then log "sources kept in $DATA (KEEP_DATA=1)"; else rm -rf "$DATA"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

free_bytes() { df -B1 --output=avail "$DATA" | tail -n1 | tr -d ' '; }

# ------------------------------------------------------------------------------------ the sources
mkdir -p "$DATA"
want="$BYTES $SMALL_FILES $LARGE_FILES $SEED"
if [[ "$(cat "$DATA/done" 2>/dev/null)" != "$want" ]]; then
    rm -rf "${DATA:?}/one" "$DATA/small" "$DATA/large" "$DATA/lists" "$DATA/done"
    need=$((3 * BYTES + (2 << 30)))
    (($(free_bytes) > need)) || die "$DATA's disk has $(numfmt --to=iec "$(free_bytes)") free; the sources need $(numfmt --to=iec $need)"
    log "writing the sources into $DATA ($SIZE three ways: $SMALL_FILES files, $LARGE_FILES files, one file)"
    nice -n 10 "$PY" "$BENCH/treegen.py" --dir "$DATA" --size "$BYTES" --small-files "$SMALL_FILES" \
        --large-files "$LARGE_FILES" --seed "$SEED" || die "treegen.py failed"
fi
src_of() { case "$1" in *one) echo "$DATA/one/payload.bin" ;; *small) echo "$DATA/small" ;; *large) echo "$DATA/large" ;; esac; }
list_of() { case "$1" in *one) echo "$DATA/lists/one.tsv" ;; *small) echo "$DATA/lists/small.tsv" ;; *large) echo "$DATA/lists/large.tsv" ;; esac; }

# A copy of the binary: a rebuild during the bench cannot change what is measured.
mkdir -p "$DATA/bin"
cp "$EDM" "$DATA/bin/edm-cast"
BUILD="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')/$(date -u -r "$EDM" +%FT%TZ)"
EDM="$DATA/bin/edm-cast"
LINK=$(awk -v b="$BYTES" -v r="$MBIT" 'BEGIN { printf "%.3f", b * 8 / (r * 1e6) }')
RATE_M=$(awk -v r="$MBIT" -v f="$RATE_FACTOR" 'BEGIN { printf "%g", r * f }')

# ------------------------------------------------------------------------------------ one run
# run_one CASE RUNIDX -> appends one row to $OUT and prints it
run_one() {
    local cas="$1" runi="$2" tool=edm-cast i src list name deadline grace
    [[ "$cas" == uftp-* ]] && tool=uftp
    src=$(src_of "$cas"); list=$(list_of "$cas"); name=$(basename "$src")
    local files; files=$(wc -l <"$list")
    if [[ -n "$DEADLINE" ]]; then deadline=$DEADLINE
    elif [[ $tool == uftp ]]; then deadline=$(awk -v l="$LINK" 'BEGIN { printf "%d", 6 * l + 300 }')
    else deadline=$(awk -v l="$LINK" 'BEGIN { printf "%d", 3 * l + 120 }'); fi
    local ptmo=$((deadline + 60))
    # edm-cast's sender may end while receivers still unpack (their processes are watched);
    # uftpd moves the files about 1 s after the server exits if its last confirmation was lost.
    if [[ $tool == uftp ]]; then grace=10; else grace=$deadline; fi

    rm -rf "$RUN" "$DATA/spool"; mkdir -p "$RUN" "$DATA/spool"
    local need=$(((N + 1) * BYTES + (2 << 30)))
    (($(free_bytes) > need)) ||
        die "$DATA's disk has $(numfmt --to=iec "$(free_bytes)") free; $cas at N=$N needs $(numfmt --to=iec $need) (try a smaller SIZE)"
    for ((i = 1; i <= N; i++)); do mkdir -p "$RUN/r$i/out" "$RUN/r$i/tmp"; done

    local load1 idle tx0
    wait_quiet
    idle=$IDLE
    load1=$(cut -d' ' -f1 /proc/loadavg)
    tx0=$(timeout 20 "$LANLAB" txbytes s)

    local recv_pids=() targets=() sender
    for ((i = 1; i <= N; i++)); do
        local out="$RUN/r$i/out"
        case "$tool" in
            edm-cast) launch "r$i" 1 "$ptmo" "r$i" "$EDM" recv --group 239.1.1.1 --iface eth0 \
                          --out "$out" --timeout 600 --name "r$i" ;;
            uftp)     launch "r$i" 1 "$ptmo" "r$i" uftpd -d -I eth0 -D "$out" -T "$RUN/r$i/tmp" -q ;;
        esac
        recv_pids+=("$LAUNCHED"); targets+=("$out:$LAUNCHED")
    done
    sleep 0.5

    local t0=$EPOCHREALTIME
    case "$tool" in
        edm-cast) launch s 0 "$ptmo" sender env TMPDIR="$DATA/spool" "$EDM" send "$src" \
                      --group 239.1.1.1 --iface eth0 --rate "${RATE_M}M" --min-receivers "$N" --wait 30 ;;
        uftp)
            local ids=() idl
            for ((i = 1; i <= N; i++)); do ids+=("$(printf '0x%08x' $(((10 << 24) | (77 << 16) | (10 + i))))"); done
            idl=$(IFS=,; echo "${ids[*]}")
            launch s 0 "$ptmo" sender uftp -I eth0 -R "$(awk -v r="$RATE_M" 'BEGIN { printf "%d", r * 1000 }')" \
                -H "$idl" "$src" ;;
    esac
    sender=$LAUNCHED

    "$LANLAB" exec s "$PY" "$BENCH/treewait.py" --t0 "$t0" --deadline "$deadline" --list "$list" \
        --sender-pid "$sender" --grace "$grace" "${targets[@]}" >"$RUN/done.txt" 9>&- &
    local poller=$! prc=0
    PIDS+=("$poller")
    wait "$poller" || prc=$?

    wait_gone "$sender" 15 || true
    if [[ $tool == edm-cast ]]; then for i in "${recv_pids[@]}"; do wait_gone "$i" 10 || true; done; fi
    stop_all
    sleep 0.5                                   # the shaper's queue drains
    local tx1 load1_after
    tx1=$(timeout 20 "$LANLAB" txbytes s)
    load1_after=$(cut -d' ' -f1 /proc/loadavg)

    local done_n secs=NA first=NA txs txe
    done_n=$(awk '$1 ~ /^[0-9]+$/ && $2 != "NA"' "$RUN/done.txt" | wc -l)
    if ((done_n > 0)); then first=$(awk '$1 ~ /^[0-9]+$/ && $2 != "NA" { print $2 }' "$RUN/done.txt" | sort -g | head -n1); fi
    if ((done_n == N)); then secs=$(awk '$1 ~ /^[0-9]+$/ { print $2 }' "$RUN/done.txt" | sort -g | tail -n1); fi
    txs=$(awk '$1 == "first_tx" { print $2 }' "$RUN/done.txt")
    local verified unpack
    verified=$(awk '$1 ~ /^[0-9]+$/ { if ($3 == "NA") na = 1; else if ($3 > m) m = $3 }
        END { print (na || m == "" ? "NA" : m) }' "$RUN/done.txt")
    unpack=$(awk '$1 ~ /^[0-9]+$/ { if ($2 == "NA" || $3 == "NA") na = 1; else if ($2 - $3 > m) m = $2 - $3 }
        END { print (na || m == "" ? "NA" : sprintf("%.3f", m)) }' "$RUN/done.txt")
    txe=$(awk '$1 == "last_tx" { print $2 }' "$RUN/done.txt")

    # Every receiver's copy against the source, then the copy goes.
    local exact=0
    for ((i = 1; i <= N; i++)); do
        if timeout 600 nice -n 10 diff -r -q "$src" "$RUN/r$i/out/$name" >"$RUN/diff$i.txt" 2>&1; then
            exact=$((exact + 1))
        else
            log "$cas, r$i: not equal to the source: $(head -n2 "$RUN/diff$i.txt" | tr '\n' ' ' | cut -c1-200)"
        fi
        rm -rf "$RUN/r$i/out" "$RUN/r$i/tmp"
    done
    local status
    if ((done_n == N && exact == N)); then status=ok
    elif ((prc == 3)); then status=timeout
    else status=fail; fi

    local scpu src_rc rcpu=0 c
    read -r scpu _ src_rc < <(time_report "$RUN/sender.time")
    for ((i = 1; i <= N; i++)); do
        read -r c _ _ < <(time_report "$RUN/r$i.time")
        [[ "$c" == NA ]] || rcpu=$(awk -v a="$rcpu" -v b="$c" 'BEGIN { printf "%.2f", a + b }')
    done
    local tratio=NA bratio
    [[ "$secs" == NA ]] || tratio=$(awk -v s="$secs" -v l="$LINK" 'BEGIN { printf "%.3f", s / l }')
    bratio=$(awk -v a="$tx0" -v b="$tx1" -v s="$BYTES" 'BEGIN { printf "%.4f", (b - a) / s }')

    local row
    row=$(printf '%s\t' "$(date -u +%FT%TZ)" "$cas" "$tool" "$files" "$N" "$LOSS" "$MBIT" "$BYTES" \
        "$runi" "$status" "$secs" "$LINK" "$tratio" "$((tx1 - tx0))" "$bratio" "$exact/$N" "$first" \
        "$txs" "$txe" "$verified" "$unpack" "$scpu" "$rcpu" "$src_rc" "$load1" "$load1_after" "$idle")
    row+="$BUILD"
    printf '%s\n' "$row" >>"$OUT"
    printf '%s\n' "$row"
    if [[ "$status" != ok ]]; then
        log "$cas, run $runi: $status ($done_n/$N in place, $exact/$N exact); the last lines of the logs:"
        for i in sender r1; do
            tr '\r' '\n' <"$RUN/$i.log" 2>/dev/null | grep -v '^\s*$' | tail -n 3 | cut -c1-160 |
                sed "s/^/tree:   $i: /" >&2 || true
        done
    fi
    rm -rf "$RUN" "$DATA/spool"
}

# ------------------------------------------------------------------------------------ main
log "$SIZE ($BYTES bytes) per case, N=$N, $LOSS% loss, $MBIT Mbit/s (link time $LINK s); cases: $CASES; runs: $RUNS; rows: $OUT"
log "edm-cast: $BUILD"
lock
timeout 300 "$LANLAB" up "$N" "${MBIT}mbit" "$LOSS" 9>&- 2>"$DATA/lanlab.log" ||
    { cat "$DATA/lanlab.log" >&2; die "lanlab up $N ${MBIT}mbit $LOSS failed"; }
unlock
printf '%s\n' "$HEADER"
first_row=$(($(wc -l <"$OUT") + 1))
for ((run = 1; run <= RUNS; run++)); do
    for cas in $CASES; do
        lock
        run_one "$cas" "$run"
        unlock
    done
done

# Each case against the one-file reference of the same round (this invocation's rows).
tail -n +"$first_row" "$OUT" | awk -F'\t' '
    { key = $9; if ($2 == "one" && $10 == "ok") { ts[key] = $11; bs[key] = $15 } rows[NR] = $0 }
    END {
        printf "%-11s %3s %9s %8s %9s %7s %12s %12s %6s\n", "case", "run", "secs", "x link", "bytes/pl", "exact", "time/one", "bytes/one", "load1"
        for (i = 1; i <= NR; i++) {
            split(rows[i], f, "\t"); k = f[9]
            t = (f[10] == "ok" && k in ts) ? sprintf("%+.1f%%", 100 * (f[11] / ts[k] - 1)) : "-"
            b = (k in bs && bs[k] > 0) ? sprintf("%+.1f%%", 100 * (f[15] / bs[k] - 1)) : "-"
            printf "%-11s %3s %9s %8s %9s %7s %12s %12s %6s\n", f[2], k, f[11], f[13], f[15], f[16], t, b, f[25]
        }
    }' >&2
