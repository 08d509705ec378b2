# lib.sh - what the lab benches share: the bench lock, waiting for a quiet machine, launching a
# tool in a lab host under /usr/bin/time and `timeout`, and stopping everything launched. Sourced
# by bench/compare.sh and bench/tree.sh after they define log, die, LANLAB, LOCK, LOCK_WAIT,
# QUIET_IDLE and QUIET_WAIT; RUN (the run's log folder) is set before `launch` is called.

PIDS=()
LOCKED=0
exec 9>>"$LOCK"

# Every run holds LOCK, so two benchmarks on this machine never overlap.
lock() {
    local t=$SECONDS
    flock -w "$LOCK_WAIT" 9 || die "waited $LOCK_WAIT s for $LOCK"
    LOCKED=1
    if ((SECONDS - t > 1)); then log "waited $((SECONDS - t)) s for $LOCK"; fi
}
unlock() { if ((LOCKED)); then flock -u 9 || true; LOCKED=0; fi; }

alive() { kill -0 "$1" 2>/dev/null; }

# Percent of CPU time idle over the next second (whole machine).
idle_pct() {
    local a b
    a=$(awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2];
        printf "%.0f\n", (d > 0 ? 100 * (y[1] - x[1]) / d : 100) }'
}

# Other work on this machine (builds, tests) slows every tool and makes figures noisy: before a run,
# wait (at most QUIET_WAIT s) until the machine is at least QUIET_IDLE % idle. Sets IDLE.
wait_quiet() {
    local t=$SECONDS
    IDLE=$(idle_pct)
    while ((IDLE < QUIET_IDLE && SECONDS - t < QUIET_WAIT)); do
        sleep 4
        IDLE=$(idle_pct)
    done
    if ((IDLE < QUIET_IDLE)); then log "warning: machine only $IDLE% idle after $QUIET_WAIT s; running anyway"
    elif ((SECONDS - t > 2)); then log "waited $((SECONDS - t)) s for the machine to be quiet ($IDLE% idle)"; fi
}

# Wait (at most $2 seconds) for process $1 to end.
wait_gone() {
    local pid="$1" deadline=$((SECONDS + $2))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
    ! alive "$pid"
}

# launch HOST NICE(0|1) TIMEOUT_S NAME CMD...: CMD in HOST's namespace under /usr/bin/time -v and
# `timeout` (log $RUN/NAME.log, time report $RUN/NAME.time). Sets LAUNCHED.
launch() {
    local host="$1" nic="$2" tmo="$3" name="$4"; shift 4
    local pre=()
    if ((nic)); then pre=(nice -n 10); fi
    "$LANLAB" exec "$host" "${pre[@]}" /usr/bin/time -v -o "$RUN/$name.time" \
        timeout -k 5 "$tmo" "$@" </dev/null >"$RUN/$name.log" 2>&1 9>&- &
    LAUNCHED=$!
    PIDS+=("$LAUNCHED")
}

# /usr/bin/time -v report -> "cpu_seconds rss_kib exit_status" (NA when missing)
time_report() {
    local f="$1"
    [[ -s "$f" ]] || { echo "NA NA NA"; return; }
    awk -F': ' '/User time \(seconds\)/ { u = $2 } /System time \(seconds\)/ { s = $2 }
        /Maximum resident set size/ { r = $2 } /Exit status/ { e = $2 }
        /Command terminated by signal/ { split($0, a, "signal "); e = "sig" a[2] }
        END { printf "%.2f %s %s\n", u + s, (r == "" ? "NA" : r), (e == "" ? "NA" : e) }' "$f"
}

# Stop the processes we launched: each pid is /usr/bin/time, its child is `timeout`, which passes
# TERM on to the tool, so time still writes its report. All get TERM at once; KILL after 5 s.
stop_all() {
    local p k kids=() left=() deadline
    for p in "${PIDS[@]}"; do
        alive "$p" || continue
        left+=("$p")
        k=$(ps -o pid= --ppid "$p" 2>/dev/null || true)
        # shellcheck disable=SC2206,SC2086   # pids: split on purpose
        if [[ -n "$k" ]]; then kids+=($k); kill -TERM $k 2>/dev/null || true
        else kill -TERM "$p" 2>/dev/null || true; fi
    done
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        k=0
        for p in "${left[@]}"; do if alive "$p"; then k=1; break; fi; done
        ((k)) || break
        sleep 0.05
    done
    for p in "${left[@]}"; do
        alive "$p" || continue
        log "warning: process $p ($(ps -o args= -p "$p" 2>/dev/null | cut -c1-80)) ignored TERM; killing it"
        # shellcheck disable=SC2046
        for k in "${kids[@]}"; do kill -KILL $(ps -o pid= --ppid "$k" 2>/dev/null) "$k" 2>/dev/null || true; done
        kill -KILL "$p" 2>/dev/null || true
    done
    PIDS=()
}
