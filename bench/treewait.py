#!/usr/bin/env python3
"""Wait until every receiver has all the files of a list in place; say when, and when the sender sent.

Used by bench/tree.sh, run inside the sender's namespace (so /sys/class/net/eth0 is the sender's).

    treewait.py --t0 T --deadline SECS --list LIST [--sender-pid PID] [--grace SECS] OUTDIR:PID ...

LIST has one "SIZE<TAB>PATH" line per file, PATH relative to each OUTDIR. A receiver is complete
once every PATH exists under its OUTDIR with its SIZE (edm-cast renames a whole tree into place at
once; uftpd with -T moves files from its temp folder when the session is complete; the contents
are checked afterwards, by diff -r). Each poll looks at a receiver's files in order from the first
one still missing and stops at the next one missing, so a poll costs a few stats however many files
there are. PID is the receiver's process (0 = not watched): one that has ended without its files is
given up after 2 s. Once the sender process has ended, incomplete receivers get --grace seconds
more. Times are seconds since --t0 (a Unix time taken just before the sender started).

While it waits it samples the sender's eth0 tx_bytes: "sending" is a poll interval in which more
than --busy bytes per second went out. It also notes when edm-cast's staging folder for a tree
(`.edm-cast-*.tree`, made once the whole stream is verified, before the unpacking) first shows in
each OUTDIR. Output: one line per receiver, "INDEX SECS STAGED" (NA for what did not happen), then
"first_tx SECS" (the start of the first sending interval), "last_tx SECS" (the end of the last
one), "elapsed SECS". Exit 0 when all are complete, 3 at the deadline, 4 when it gave up.
"""

import argparse
import os
import sys
import time

from waitdone import Watch

TX = "/sys/class/net/eth0/statistics/tx_bytes"


def tx_bytes() -> int:
    try:
        with open(TX) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--t0", type=float, required=True)
    ap.add_argument("--deadline", type=float, required=True)
    ap.add_argument("--list", required=True)
    ap.add_argument("--sender-pid", type=int, default=0)
    ap.add_argument("--grace", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--busy", type=float, default=1e6, help="bytes/s that count as sending")
    ap.add_argument("targets", nargs="+")
    a = ap.parse_args()

    files = []
    with open(a.list) as f:
        for line in f:
            size, _, path = line.rstrip("\n").partition("\t")
            files.append((path, int(size)))
    outs, pids = [], []
    for t in a.targets:
        p, _, pid = t.rpartition(":")
        outs.append(p)
        pids.append(int(pid or 0))
    n = len(outs)
    next_file = [0] * n
    done = [None] * n
    staged = [None] * n
    watch = Watch(a, pids)
    first_tx = last_tx = None
    tx_prev, t_prev = tx_bytes(), time.time()
    rc = 0
    while True:
        now = time.time()
        tx = tx_bytes()
        if now > t_prev and (tx - tx_prev) / (now - t_prev) > a.busy:
            if first_tx is None:
                first_tx = t_prev - a.t0
            last_tx = now - a.t0
        tx_prev, t_prev = tx, now
        for i in range(n):
            if done[i] is not None:
                continue
            if staged[i] is None:
                try:
                    if any(e.startswith(".edm-cast-") and e.endswith(".tree") for e in os.listdir(outs[i])):
                        staged[i] = now - a.t0
                except OSError:
                    pass
            while next_file[i] < len(files):
                path, size = files[next_file[i]]
                try:
                    if os.stat(os.path.join(outs[i], path)).st_size != size:
                        break
                except OSError:
                    break
                next_file[i] += 1
            if next_file[i] == len(files):
                done[i] = time.time() - a.t0
                continue
            watch.check_receiver(i, now)
        pending = [i for i in range(n) if done[i] is None]
        if not pending:
            break
        rc = watch.verdict(now, pending)
        if rc:
            break
        time.sleep(a.interval)
    for i in range(n):
        print(
            i + 1,
            "NA" if done[i] is None else f"{done[i]:.3f}",
            "NA" if staged[i] is None else f"{staged[i]:.3f}",
        )
    print("first_tx", "NA" if first_tx is None else f"{first_tx:.3f}")
    print("last_tx", "NA" if last_tx is None else f"{last_tx:.3f}")
    print("elapsed", f"{time.time() - a.t0:.3f}")
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
