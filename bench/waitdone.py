#!/usr/bin/env python3
"""Wait until every receiver's copy is complete at its final path; print when each one was.

Used by bench/compare.sh. A copy is complete once the file exists at PATH with the expected size
(edm-cast renames it into place after its MD5 check, uftpd moves it from -T to -D, udp-receiver and
curl write it in order to its final path). Times are seconds since --t0 (a Unix time taken just
before the sender, or the downloads, started).

    waitdone.py --t0 T --deadline SECS --size BYTES [--sender-pid PID] [--grace SECS] PATH:PID ...

PID is the receiver's process (0 = not watched). A receiver whose process has ended without a
complete copy is given up after 2 s. Once the sender process has ended, incomplete receivers get
--grace seconds more. Output: one line per receiver, "INDEX SECS" or "INDEX NA", then
"elapsed SECS"; exit 0 when all are complete, 3 at the deadline, 4 when it gave up earlier.
"""

import argparse
import os
import sys
import time


def alive(pid: int) -> bool:
    if pid <= 0:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


class Watch:
    """When to stop waiting for receivers that are not complete (shared with treewait.py): at the
    deadline (3); or (4) once the sender has been gone for --grace seconds, or every pending
    receiver's process for 2 s."""

    def __init__(self, a, pids):
        self.a = a
        self.pids = pids
        self.gone_since = [None] * len(pids)
        self.sender_gone = None

    def check_receiver(self, i: int, now: float) -> None:
        if self.gone_since[i] is None and not alive(self.pids[i]):
            self.gone_since[i] = now

    def verdict(self, now: float, pending) -> int:
        a = self.a
        if now - a.t0 > a.deadline:
            return 3
        if a.sender_pid > 0 and self.sender_gone is None and not alive(a.sender_pid):
            self.sender_gone = now
        if self.sender_gone is not None and now - self.sender_gone > a.grace:
            return 4
        if all(self.gone_since[i] is not None and now - self.gone_since[i] > 2.0 for i in pending):
            return 4
        return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--t0", type=float, required=True)
    ap.add_argument("--deadline", type=float, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--sender-pid", type=int, default=0)
    ap.add_argument("--grace", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("targets", nargs="+")
    a = ap.parse_args()

    paths, pids = [], []
    for t in a.targets:
        p, _, pid = t.rpartition(":")
        paths.append(p)
        pids.append(int(pid or 0))
    n = len(paths)
    done = [None] * n
    watch = Watch(a, pids)
    rc = 0
    while True:
        now = time.time()
        for i in range(n):
            if done[i] is not None:
                continue
            try:
                if os.stat(paths[i]).st_size == a.size:
                    done[i] = now - a.t0
                    continue
            except OSError:
                pass
            watch.check_receiver(i, now)
        pending = [i for i in range(n) if done[i] is None]
        if not pending:
            break
        rc = watch.verdict(now, pending)
        if rc:
            break
        time.sleep(a.interval)
    for i in range(n):
        print(i + 1, "NA" if done[i] is None else f"{done[i]:.3f}")
    print("elapsed", f"{time.time() - a.t0:.3f}")
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
