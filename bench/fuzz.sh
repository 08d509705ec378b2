#!/usr/bin/env bash
# Fuzzes edm-cast-proto: every cargo-fuzz target in proto/fuzz (or those named), one after the
# other, SECS seconds each, in one process each (one core: the machine is shared). Prints per
# target the execs run, the corpus size and the crashes, then the total; fails if any crashed.
#
#   SECS=60 bench/fuzz.sh              # every target, a minute each
#   SECS=300 bench/fuzz.sh receiver    # one target
#
# Needs the nightly toolchain and cargo-fuzz (installed here if missing). Each target starts from
# its committed seeds (proto/fuzz/corpus/TARGET) plus what earlier runs found, kept with the
# crash inputs under $WORK (default proto/fuzz/target/fuzz-work). A crash input is replayed with
# `cargo +nightly fuzz run -O -s none TARGET FILE` in proto/fuzz; once fixed, copy it to
# proto/fuzz/regressions/TARGET/, where `cargo test` replays it for good.
set -euo pipefail
cd "$(dirname "$0")/../proto/fuzz"

SECS=${SECS:-15}
WORK=${WORK:-$PWD/target/fuzz-work}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# -O: the release profile in proto/fuzz/Cargo.toml, which keeps overflow checks and debug
# assertions in our code but not raptorq's. No sanitizer: the crates are safe Rust, and
# AddressSanitizer would halve the execs for nothing it could find there.
build=(-O -s none)
cargo +nightly fuzz build "${build[@]}"

printf '%-12s %12s %10s %8s\n' target execs corpus crashes
total=0
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$WORK/corpus/$t" "$WORK/artifacts/$t"
    rm -f "$WORK/artifacts/$t"/*
    log="$WORK/$t.log"
    # -timeout: an input that takes 10 s is a finding (no datagram may cost that much work).
    if cargo +nightly fuzz run "${build[@]}" "$t" "$WORK/corpus/$t" "corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$WORK/artifacts/$t/" >"$log" 2>&1; then
        :
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
    crashes=$(find "$WORK/artifacts/$t" -type f | wc -l)
    printf '%-12s %12s %10s %8s\n' "$t" "${execs:-?}" "${corpus:-?}" "$crashes"
    total=$((total + ${execs:-0}))
    if [[ $crashes -gt 0 || -z ${execs:-} ]]; then
        failed+=("$t")
    fi
done
printf '%-12s %12s\n' total "$total"

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: crashed (or did not run): ${failed[*]}; logs and inputs in $WORK" >&2
    exit 1
fi
