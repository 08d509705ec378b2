#!/usr/bin/env bash
# compare.sh - edm-cast against udpcast, UFTP and N plain HTTP downloads, in the namespace LAN lab
# (tools/lanlab.sh), on the same random file, one tool after another. One TSV row per run; medians
# and a chart (time and bytes against loss, one line per tool). Needs root.
#
#   bench/compare.sh                 # the whole matrix (long: hours)
#   bench/compare.sh --smoke         # quick check: N=2, loss 0 and 5%, 8 MiB, 100 Mbit/s, one run
#   TOOLS="edm-cast udpcast" NS="8" LOSSES="5" RATES="100" RUNS=3 bench/compare.sh
#   bench/compare.sh --plot-only     # redraw the chart and medians from the TSV
#
# Options: --smoke, --plot-only, --runs R, -h/--help. Environment (default):
#   TOOLS    tools, in order (edm-cast udpcast uftp http); also edm-cast-fixed (a fixed rate,
#            congestion control off) and uftp-tfmcc (UFTP with its congestion control, RFC 4654)
#   NS       receiver counts (1 4 8 16)
#   LOSSES   loss cases: a percentage per receiver, "mixed" (one receiver MIXED_HIGH %, the others
#            MIXED_LOW %) or "burst" (bench/burstloss.sh) (0 1 5 10 mixed burst)
#   RATES    sender link rates in Mbit/s, tc tbf (100 1000)
#   MIB      file size in MiB (64);  RUNS  runs per tool and case (1)
#   RATE_FACTOR   the fixed-rate tools are paced at this fraction of the link (0.97):
#            edm-cast-fixed --rate, udp-sender --max-bitrate, uftp -R; edm-cast and uftp-tfmcc
#            find their rate by congestion control, with their default flags
#   MIXED_HIGH / MIXED_LOW (20 / 1);  BURST_PPM / BURST_MS (2500 / 4; see bench/burstloss.sh): bursts
#            of BURST_MS start with BURST_PPM per million packets at 100 Mbit/s (scaled by 100/rate),
#            about 4-5% loss in bursts of about 20 packets at 100 Mbit/s
#   DEADLINE seconds a run may take before it is stopped and recorded as "timeout" (automatic:
#            multicast max(60, 20 x ideal); http max(120, 8 x N x ideal); ideal = file / link rate)
#   LAB      lab name (cmp);  LOCK  lock file (/tmp/edm-bench.lock);  LOCK_WAIT  seconds (7200)
#   OUT      TSV (bench/results/compare.tsv; --smoke: bench/results/compare-smoke.tsv)
#   PNG      chart (bench/results/compare.png; --smoke: compare-smoke.png), drawn for
#            PLOT_N (8) receivers, PLOT_MBIT (100), PLOT_MIB (64); --smoke: 2, 100, 8
#   EDM_CAST edm-cast binary (target/release/edm-cast, built if missing)
#   QUIET_IDLE / QUIET_WAIT  before each run, wait up to QUIET_WAIT s (600) for the machine to be
#            QUIET_IDLE % idle (80): other work (builds, tests) makes every tool slower
#   KEEP_WORK=1 keeps the work directory, with every run's logs and time reports in runs/
#
# Each run: the receivers start (under `nice -n 10`, every tool alike: nine machines share two
# cores here, see README), then the clock starts with the sender (for http: with the N downloads,
# from a server started before). Time = until the last receiver has the complete file at its final
# path (polled every 20 ms by bench/waitdone.py). Bytes = the sender's eth0 tx_bytes (lanlab.sh
# txbytes s) after the sender ended and the shaper drained, minus before, / file size. CPU (user+sys)
# and peak RSS from /usr/bin/time -v; receivers' CPU is the sum over all, their RSS the largest.
# Every run holds LOCK (flock), so it never overlaps with another benchmark on this machine. Every
# process is bounded by `timeout`; on exit, failure or Ctrl-C all are stopped and the lab removed.
#
# The commands (RATE = RATE_FACTOR x link, e.g. 97 for 100 Mbit/s; receivers under nice -n 10):
#   edm-cast  r: edm-cast recv --group 239.1.1.1 --iface eth0 --out DIR --timeout 60 --name rI
#             s: edm-cast send FILE --group 239.1.1.1 --iface eth0 --min-receivers N --wait 30
#                (default flags: congestion control, the ceiling the interface's link speed)
#   edm-cast-fixed  the same receivers; s: ... --rate RATEM --cc off (a fixed rate)
#   udpcast   r: udp-receiver --nokbd --interface eth0 --file DIR/FILE
#             s: udp-sender --nokbd --interface eth0 --file FILE --min-receivers N --nopointopoint
#                --rexmit-hello-interval 500 --max-bitrate RATEm
#   uftp      r: uftpd -d -I eth0 -D DIR -T TMPDIR -q   (a daemon: stopped once the run is over)
#             s: uftp -I eth0 -R RATE*1000 -H 0x0a4d000b,... FILE   (client ids = IPv4 in hex)
#                (uftp's -R counts its data, not the headers: it fills the link, tbf holds it back)
#   uftp-tfmcc  the same daemons; s: uftp -I eth0 -C tfmcc -H ... FILE (TFMCC: loss sets the rate)
#   http      s: python3 -m http.server 8000 --bind 10.77.0.1   r: curl -sS --fail -o DIR/FILE URL
# Results: OUT (one row per run), OUT with -medians.tsv (medians of the ok runs), PNG.
#
# TSV columns: date tool n loss mbit mib run status secs done md5_ok bytes_ratio sender_cpu_s
#   recv_cpu_s sender_rss_kib recv_rss_kib loss_meas_pct qdisc_drops sender_rc first_secs load1
#   idle_pct edm_build
#   status: ok (all N complete, right MD5), timeout (DEADLINE reached), fail (anything else);
#   secs: NA unless all N completed; done: receivers complete; loss_meas_pct: packets dropped toward
#   the receivers / packets toward them (nft counters); qdisc_drops: packets the sender's own
#   shaper dropped (a UDP tool sent faster than the link; normal for TCP); first_secs: the first
#   receiver's time; load1: the machine's 1-minute load average just before the run; idle_pct: %
#   of CPU idle in the second just before the run (other work on the machine disturbs the figures);
#   edm_build: `git describe --dirty` of the tree / the edm-cast binary's time (on every row).
set -Eeuo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LANLAB="$ROOT/tools/lanlab.sh"
BENCH="$ROOT/bench"
PY=/usr/bin/python3

usage() { sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
log() { echo "compare: $*" >&2; }
die() { echo "compare: error: $*" >&2; exit 1; }

SMOKE=0 PLOT_ONLY=0
while (($#)); do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --plot-only) PLOT_ONLY=1 ;;
        --runs) shift; RUNS="${1:-}" ;;
        --runs=*) RUNS="${1#--runs=}" ;;
        -h|--help) usage ;;
        *) log "unknown argument '$1'"; usage ;;
    esac
    shift
done

if ((SMOKE)); then
    : "${NS:=2}" "${LOSSES:=0 5}" "${RATES:=100}" "${MIB:=8}" "${RUNS:=1}"
    : "${OUT:=bench/results/compare-smoke.tsv}" "${PNG:=bench/results/compare-smoke.png}"
    : "${PLOT_N:=2}" "${PLOT_MIB:=8}"
fi
: "${TOOLS:=edm-cast udpcast uftp http}" "${NS:=1 4 8 16}" "${LOSSES:=0 1 5 10 mixed burst}"
: "${RATES:=100 1000}" "${MIB:=64}" "${RUNS:=1}" "${RATE_FACTOR:=0.97}"
: "${MIXED_HIGH:=20}" "${MIXED_LOW:=1}" "${BURST_PPM:=2500}" "${BURST_MS:=4}" "${DEADLINE:=}"
: "${LAB:=cmp}" "${LOCK:=/tmp/edm-bench.lock}" "${LOCK_WAIT:=7200}"
: "${OUT:=bench/results/compare.tsv}" "${PNG:=bench/results/compare.png}"
: "${PLOT_N:=8}" "${PLOT_MBIT:=100}" "${PLOT_MIB:=64}" "${KEEP_WORK:=0}" "${QUIET_IDLE:=80}" "${QUIET_WAIT:=600}"
export LAB

for t in $TOOLS; do
    case "$t" in edm-cast|edm-cast-fixed|udpcast|uftp|uftp-tfmcc|http) ;;
        *) die "unknown tool '$t' (edm-cast edm-cast-fixed udpcast uftp uftp-tfmcc http)" ;; esac
done
for l in $LOSSES; do
    [[ "$l" =~ ^([0-9]+(\.[0-9]+)?|mixed|burst)$ ]] || die "bad loss case '$l'"
done
for n in $NS; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "bad N '$n'"; done
for r in $RATES; do [[ "$r" =~ ^[1-9][0-9]*$ ]] || die "bad rate '$r' (Mbit/s)"; done
[[ "$MIB" =~ ^[1-9][0-9]*$ && "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "MIB and RUNS must be positive integers"
[[ -z "$DEADLINE" || "$DEADLINE" =~ ^[1-9][0-9]*$ ]] || die "DEADLINE must be whole seconds"

HEADER=$'date\ttool\tn\tloss\tmbit\tmib\trun\tstatus\tsecs\tdone\tmd5_ok\tbytes_ratio\tsender_cpu_s\trecv_cpu_s\tsender_rss_kib\trecv_rss_kib\tloss_meas_pct\tqdisc_drops\tsender_rc\tfirst_secs\tload1\tidle_pct\tedm_build'

# ------------------------------------------------------------------------------------ summary, chart
summarize_and_plot() {
    [[ -s "$OUT" ]] || { log "no rows in $OUT yet"; return 0; }
    local med="${OUT%.tsv}-medians.tsv" pd
    pd=$(mktemp -d /tmp/edm-compare-plot.XXXXXX)
    if ! $PY "$BENCH/summarize.py" "$OUT" --plot "$pd" --n "$PLOT_N" --mbit "$PLOT_MBIT" \
            --mib "$PLOT_MIB" --tools "edm-cast edm-cast-fixed udpcast uftp uftp-tfmcc http" >"$med"; then
        log "no rows for the chart (N=$PLOT_N, $PLOT_MBIT Mbit/s, $PLOT_MIB MiB) in $OUT; medians in $med"
        rm -rf "$pd"; return 0
    fi
    if command -v gnuplot >/dev/null; then
        timeout 60 gnuplot -e "dir='$pd'; tools='$(cat "$pd/tools")'; out='$PNG'; \
subtitle='$PLOT_N receivers, $PLOT_MBIT Mbit/s link, $PLOT_MIB MiB file (bench/compare.sh)'" "$BENCH/plot.gp" &&
            log "chart: $PNG" || log "warning: gnuplot failed"
    else
        log "warning: gnuplot missing, no chart"
    fi
    rm -rf "$pd"
    log "medians: $med"
}

if ((PLOT_ONLY)); then
    summarize_and_plot
    column -t -s $'\t' "${OUT%.tsv}-medians.tsv" 2>/dev/null || cat "${OUT%.tsv}-medians.tsv"
    exit 0
fi

# ------------------------------------------------------------------------------------ prerequisites
((EUID == 0)) || die "must run as root (network namespaces)"
need_pkgs=()
for pc in udp-sender:udpcast udp-receiver:udpcast uftp:uftp uftpd:uftp curl:curl gnuplot:gnuplot-nox \
          /usr/bin/time:time ip:iproute2 tc:iproute2 nft:nftables ethtool:ethtool flock:util-linux \
          ss:iproute2 md5sum:coreutils "$PY":python3; do
    command -v "${pc%%:*}" >/dev/null 2>&1 || need_pkgs+=("${pc#*:}")
done
if ((${#need_pkgs[@]})); then
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get install -y -q "${need_pkgs[@]}" >/dev/null 2>&1 ||
        { timeout 600 apt-get update -q >/dev/null && timeout 600 apt-get install -y -q "${need_pkgs[@]}" >/dev/null; } ||
        die "could not install ${need_pkgs[*]}"
fi
EDM="${EDM_CAST:-$ROOT/target/release/edm-cast}"
if [[ ! -x "$EDM" ]]; then
    [[ -n "${EDM_CAST:-}" ]] && die "EDM_CAST=$EDM_CAST is not executable"
    log "building edm-cast (cargo build --release)"
    timeout 1800 cargo build --release --quiet || die "cargo build --release failed"
fi
timeout 60 "$LANLAB" check >/dev/null || die "the lab cannot run here: $(timeout 60 "$LANLAB" check 2>&1 | tail -n1)"

# ------------------------------------------------------------------------------------ state, cleanup
WORK=$(mktemp -d "/tmp/edm-compare-$LAB.XXXXXX")
source "$BENCH/lib.sh"

lab_down() { timeout 180 "$LANLAB" down >/dev/null 2>&1 || log "warning: lanlab down failed"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_all
    lab_down
    unlock
    if [[ "$KEEP_WORK" == 1 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

ns_stat() { timeout 20 ip netns exec "$1" cat "/sys/class/net/eth0/statistics/$2" 2>/dev/null || echo 0; }

qdisc_drops() {
    timeout 20 ip netns exec "$LAB-s" tc -s qdisc show dev eth0 2>/dev/null |
        sed -n 's/.*(dropped \([0-9]\+\),.*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}

# Packets dropped toward receivers and packets delivered to them, summed: "drops delivered".
loss_counters() {
    local n="$1" drops=0 deliv=0 i d
    d=$(timeout 20 "$LANLAB" stats 2>/dev/null | awk -F'\t' '$1 ~ /^r/ && $5 ~ /^[0-9]+$/ { s += $5 } END { print s + 0 }')
    drops=$((drops + d))
    if [[ "$CASE_LOSS" == burst ]]; then
        d=$(timeout 20 "$BENCH/burstloss.sh" stats 2>/dev/null | awk -F'\t' '{ s += $3 } END { print s + 0 }')
        drops=$((drops + d))
    fi
    for ((i = 1; i <= n; i++)); do
        deliv=$((deliv + $(ns_stat "$LAB-r$i" rx_packets)))
    done
    echo "$drops $deliv"
}

# ------------------------------------------------------------------------------------ one run
# run_one TOOL N MBIT RUNIDX -> appends one row to $OUT and prints it
run_one() {
    local tool="$1" n="$2" mbit="$3" runi="$4"
    local i host rate_m deadline ideal
    RUN="$WORK/run"
    rm -rf "$RUN"; mkdir -p "$RUN"
    ideal=$(awk -v m="$MIB" -v r="$mbit" 'BEGIN { printf "%.3f", m * 8 * 1.048576 / r }')
    if [[ -n "$DEADLINE" ]]; then deadline="$DEADLINE"
    elif [[ "$tool" == http ]]; then deadline=$(awk -v i="$ideal" -v n="$n" 'BEGIN { d = 8 * n * i; if (d < 120) d = 120; printf "%d", d }')
    else deadline=$(awk -v i="$ideal" 'BEGIN { d = 20 * i; if (d < 60) d = 60; printf "%d", d }'); fi
    local ptmo=$((deadline + 30))                      # hard bound of every process of the run
    rate_m=$(awk -v r="$mbit" -v f="$RATE_FACTOR" 'BEGIN { printf "%g", r * f }')   # Mbit/s
    local name; name=$(basename "$SRC")
    local recv_pids=() targets=() sender=0

    for ((i = 1; i <= n; i++)); do mkdir -p "$RUN/r$i/out" "$RUN/r$i/tmp"; done

    local tx0 q0 l0 load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    tx0=$(timeout 20 "$LANLAB" txbytes s); q0=$(qdisc_drops); l0=$(loss_counters "$n")

    # receivers (http: the server first)
    if [[ "$tool" == http ]]; then
        launch s 0 "$ptmo" sender "$PY" -m http.server 8000 --bind 10.77.0.1 --directory "$(dirname "$SRC")"
        local up=0
        for ((i = 0; i < 100; i++)); do
            if timeout 5 ip netns exec "$LAB-s" ss -Hltn 'sport = :8000' 2>/dev/null | grep -q LISTEN; then up=1; break; fi
            sleep 0.05
        done
        ((up)) || log "warning: http server not listening after 5 s"
    else
        for ((i = 1; i <= n; i++)); do
            host="r$i"; local out="$RUN/r$i/out"
            case "$tool" in
                edm-cast*) launch "$host" 1 "$ptmo" "r$i" "$EDM" recv --group 239.1.1.1 --iface eth0 \
                              --out "$out" --timeout 60 --name "$host" ;;
                udpcast)  launch "$host" 1 "$ptmo" "r$i" udp-receiver --nokbd --interface eth0 \
                              --file "$out/$name" ;;
                uftp*)    launch "$host" 1 "$ptmo" "r$i" uftpd -d -I eth0 -D "$out" -T "$RUN/r$i/tmp" -q ;;
            esac
            recv_pids+=("$LAUNCHED"); targets+=("$out/$name:$LAUNCHED")
        done
        sleep 0.5
    fi

    # the clock starts with the sender (http: with the downloads)
    local t0=$EPOCHREALTIME
    case "$tool" in
        edm-cast) launch s 0 "$ptmo" sender "$EDM" send "$SRC" --group 239.1.1.1 --iface eth0 \
                      --min-receivers "$n" --wait 30; sender=$LAUNCHED ;;
        edm-cast-fixed) launch s 0 "$ptmo" sender "$EDM" send "$SRC" --group 239.1.1.1 --iface eth0 \
                      --rate "${rate_m}M" --cc off --min-receivers "$n" --wait 30; sender=$LAUNCHED ;;
        udpcast)  launch s 0 "$ptmo" sender udp-sender --nokbd --interface eth0 --file "$SRC" \
                      --min-receivers "$n" --nopointopoint --rexmit-hello-interval 500 \
                      --max-bitrate "${rate_m}m"; sender=$LAUNCHED ;;
        uftp|uftp-tfmcc)
            local ids=() pace
            for ((i = 1; i <= n; i++)); do ids+=("$(printf '0x%08x' $(((10 << 24) | (77 << 16) | (10 + i))))"); done
            local idl; idl=$(IFS=,; echo "${ids[*]}")
            if [[ "$tool" == uftp ]]; then pace=(-R "$(awk -v r="$rate_m" 'BEGIN { printf "%d", r * 1000 }')")
            else pace=(-C tfmcc); fi
            launch s 0 "$ptmo" sender uftp -I eth0 "${pace[@]}" -H "$idl" "$SRC"; sender=$LAUNCHED ;;
        http)
            for ((i = 1; i <= n; i++)); do
                launch "r$i" 1 "$ptmo" "r$i" curl -sS --fail --max-time "$deadline" \
                    -o "$RUN/r$i/out/$name" "http://10.77.0.1:8000/$name"
                recv_pids+=("$LAUNCHED"); targets+=("$RUN/r$i/out/$name:$LAUNCHED")
            done ;;
    esac

    # wait for the copies
    "$PY" "$BENCH/waitdone.py" --t0 "$t0" --deadline "$deadline" --size "$SIZE" \
        --sender-pid "$sender" --grace 5 "${targets[@]}" >"$RUN/done.txt" 9>&- &
    local poller=$!
    PIDS+=("$poller")
    local prc=0
    wait "$poller" || prc=$?

    # let the tools end by themselves (bounded), then stop what is left
    if ((sender)); then wait_gone "$sender" 15 || true; fi
    for i in "${recv_pids[@]}"; do
        [[ "$tool" == uftp* ]] && break            # uftpd is a daemon: stopped below
        wait_gone "$i" 5 || true
    done
    stop_all
    sleep 0.5                                       # the shaper's queue drains
    local tx1 q1 l1
    tx1=$(timeout 20 "$LANLAB" txbytes s); q1=$(qdisc_drops); l1=$(loss_counters "$n")

    # results
    local done_n=0 secs=NA first=NA md5ok=0 status
    done_n=$(awk '$1 != "elapsed" && $2 != "NA"' "$RUN/done.txt" | wc -l)
    if ((done_n > 0)); then
        first=$(awk '$1 != "elapsed" && $2 != "NA" { print $2 }' "$RUN/done.txt" | sort -g | head -n1)
    fi
    if ((done_n == n)); then
        secs=$(awk '$1 != "elapsed" { print $2 }' "$RUN/done.txt" | sort -g | tail -n1)
    fi
    for ((i = 1; i <= n; i++)); do
        local f="$RUN/r$i/out/$name"
        if [[ -f "$f" ]] && [[ "$(timeout 120 md5sum <"$f" | cut -d' ' -f1)" == "$SRC_MD5" ]]; then
            md5ok=$((md5ok + 1))
        fi
    done
    if ((done_n == n && md5ok == n)); then status=ok
    elif ((prc == 3)); then status=timeout
    else status=fail; fi

    local scpu srss src rcpu=0 rrss=0 c r
    read -r scpu srss src < <(time_report "$RUN/sender.time")
    if [[ "$tool" == http ]]; then src="-"; fi
    for ((i = 1; i <= n; i++)); do
        read -r c r _ < <(time_report "$RUN/r$i.time")
        [[ "$c" == NA ]] || rcpu=$(awk -v a="$rcpu" -v b="$c" 'BEGIN { printf "%.2f", a + b }')
        if [[ "$r" != NA ]] && ((r > rrss)); then rrss=$r; fi
    done
    local ratio lossm
    ratio=$(awk -v a="$tx0" -v b="$tx1" -v s="$SIZE" 'BEGIN { printf "%.3f", (b - a) / s }')
    lossm=$(awk -v a="$l0" -v b="$l1" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[1] - x[1]; p = d + y[2] - x[2];
        printf "%.2f", (p > 0 ? 100 * d / p : 0) }')

    local row
    row=$(printf '%s\t' "$(date -u +%FT%TZ)" "$tool" "$n" "$CASE_LOSS" "$mbit" "$MIB" "$runi" "$status" \
        "$secs" "$done_n" "$md5ok/$n" "$ratio" "$scpu" "$rcpu" "$srss" "$rrss" "$lossm" "$((q1 - q0))" "$src")
    row+="$first"$'\t'"$load1"$'\t'"$IDLE"$'\t'"$EDM_BUILD"
    printf '%s\n' "$row" >>"$OUT"
    printf '%s\n' "$row"
    if [[ "$status" != ok ]]; then
        log "$tool, N=$n, loss $CASE_LOSS, run $runi: $status ($done_n/$n complete); the last lines of the logs:"
        for i in sender r1; do
            tr '\r' '\n' <"$RUN/$i.log" 2>/dev/null | grep -v '^\s*$' | tail -n 3 | cut -c1-160 |
                sed "s/^/compare:   $i: /" >&2 || true
        done
    fi
    if [[ "$KEEP_WORK" == 1 ]]; then      # keep the logs and time reports, not the copies
        local keep="$WORK/runs/$tool-n$n-$CASE_LOSS-${mbit}M-run$runi"
        rm -rf "$keep"; mkdir -p "$WORK/runs"
        find "$RUN" -name "$name" -type f -delete
        mv "$RUN" "$keep"
        [[ "$status" == ok ]] || log "logs kept in $keep"
    fi
    rm -rf "$RUN"
}

# ------------------------------------------------------------------------------------ main
mkdir -p "$(dirname "$OUT")" "$(dirname "$PNG")"
if [[ ! -s "$OUT" ]]; then printf '%s\n' "$HEADER" >"$OUT"
elif [[ "$(head -n1 "$OUT")" != "$HEADER" ]]; then die "$OUT has another header; move it away or set OUT"; fi

# A copy of the binary: a rebuild during the benchmark cannot change what is measured.
cp "$EDM" "$WORK/edm-cast"
EDM_BUILD="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')/$(date -u -r "$EDM" +%FT%TZ)"
log "edm-cast: $EDM (git/binary time: $EDM_BUILD)"
EDM="$WORK/edm-cast"

SRC="$WORK/src/image.bin"
mkdir -p "$WORK/src"
head -c "$((MIB << 20))" /dev/urandom >"$SRC"
SIZE=$(stat -c %s "$SRC")
SRC_MD5=$(md5sum <"$SRC" | cut -d' ' -f1)
log "file: $MIB MiB, md5 $SRC_MD5; tools: $TOOLS; N: $NS; loss: $LOSSES; Mbit/s: $RATES; runs: $RUNS; rows: $OUT"
printf '%s\n' "$HEADER"

for mbit in $RATES; do
    for n in $NS; do
        for CASE_LOSS in $LOSSES; do
            case "$CASE_LOSS" in
                mixed) up_loss=("$MIXED_LOW" "$MIXED_HIGH") ;;     # r1 gets MIXED_HIGH, the rest MIXED_LOW
                burst) up_loss=(0) ;;
                *) up_loss=("$CASE_LOSS") ;;
            esac
            lock
            timeout 300 "$LANLAB" up "$n" "${mbit}mbit" "${up_loss[@]}" 9>&- 2>"$WORK/lanlab.log" ||
                { cat "$WORK/lanlab.log" >&2; die "lanlab up $n ${mbit}mbit ${up_loss[*]} failed"; }
            if [[ "$CASE_LOSS" == burst ]]; then
                # BURST_PPM is per packet at 100 Mbit/s: scaled so that bursts start as often per
                # second at other rates (about the same loss; a burst is a span of time, see burstloss.sh)
                burst_ppm=$(awk -v p="$BURST_PPM" -v r="$mbit" 'BEGIN { printf "%d", p * 100 / r + 0.5 }')
                "$BENCH/burstloss.sh" up "$n" "$burst_ppm" "$BURST_MS" || die "burst loss rules failed"
            fi
            unlock
            for ((run = 1; run <= RUNS; run++)); do
                for tool in $TOOLS; do
                    wait_quiet
                    lock
                    IDLE=$(idle_pct)        # the second just before the run, for the record
                    run_one "$tool" "$n" "$mbit" "$run"
                    unlock
                done
            done
            if [[ "$CASE_LOSS" == burst ]]; then
                log "burst loss (packets, drops, bursts, loss %, mean burst) per receiver, all runs of this case:"
                "$BENCH/burstloss.sh" stats 2>/dev/null | sed 's/^/compare:   /' >&2 || true
            fi
            lock; lab_down; unlock
        done
    done
done

summarize_and_plot
column -t -s $'\t' "${OUT%.tsv}-medians.tsv" 2>/dev/null || true
