#!/usr/bin/env python3
"""Make bench/tree.sh's source data: one stream of random bytes laid out three ways.

    treegen.py --dir DIR --size BYTES --small-files N --large-files M [--seed S]

writes, from one deterministic random stream of BYTES bytes (Python's Mersenne Twister seeded
with S: the same arguments always give the same bytes; random, so nothing compresses):
  DIR/one/payload.bin          the whole stream as one file (the reference)
  DIR/small/pA/qB/fNNNNN.bin   the same stream cut into N files of varied sizes (log-uniform, from
                               1/20 to 3 x the mean), 10 folders of 10 sub-folders each
  DIR/large/fNN.bin            the same stream cut into M files of 0.5 to 1.5 x the mean
  DIR/lists/{one,small,large}.tsv   "SIZE<TAB>PATH" per file, PATH relative to a receiver's --out
                               (small/..., large/..., payload.bin), for bench/treewait.py
and last DIR/done (the arguments), so a run cut short is not taken for a complete set.
"""

import argparse
import math
import os
import random
import sys

CHUNK = 4 << 20


def sizes(rng: random.Random, total: int, n: int, weight) -> list:
    """n sizes of at least 1 byte drawn from weight(rng), scaled to add up to total exactly."""
    w = [weight(rng) for _ in range(n)]
    s = sum(w)
    out = [max(1, int(total * x / s)) for x in w]
    out[-1] += total - sum(out)
    if out[-1] < 1:
        sys.exit("treegen: too many files for the size")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--small-files", type=int, required=True)
    ap.add_argument("--large-files", type=int, required=True)
    ap.add_argument("--seed", type=int, default=13)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    lo, hi = math.log(1 / 20), math.log(3)
    small = sizes(rng, a.size, a.small_files, lambda r: math.exp(r.uniform(lo, hi)))
    large = sizes(rng, a.size, a.large_files, lambda r: r.uniform(0.5, 1.5))
    per_leaf = -(-a.small_files // 100)
    small_paths = [
        f"small/p{i // per_leaf // 10}/q{i // per_leaf % 10}/f{i:05d}.bin" for i in range(a.small_files)
    ]
    large_paths = [f"large/f{i:02d}.bin" for i in range(a.large_files)]
    layouts = [
        (["payload.bin"], [a.size], "one"),
        (small_paths, small, ""),
        (large_paths, large, ""),
    ]
    os.makedirs(os.path.join(a.dir, "lists"), exist_ok=True)
    for name, (paths, szs, _) in zip(("one", "small", "large"), layouts):
        with open(os.path.join(a.dir, "lists", f"{name}.tsv"), "w") as f:
            for p, s in zip(paths, szs):
                f.write(f"{s}\t{p}\n")

    # One writer per layout, each cutting the stream at its own file boundaries.
    class Cutter:
        def __init__(self, paths, szs, sub):
            self.files = list(zip(paths, szs))
            self.sub = sub
            self.i = 0
            self.left = 0
            self.f = None

        def write(self, buf: memoryview):
            while len(buf):
                if self.left == 0:
                    if self.f:
                        self.f.close()
                    path, self.left = self.files[self.i]
                    self.i += 1
                    full = os.path.join(a.dir, self.sub, path)
                    os.makedirs(os.path.dirname(full), exist_ok=True)
                    self.f = open(full, "wb")
                n = min(self.left, len(buf))
                self.f.write(buf[:n])
                buf = buf[n:]
                self.left -= n

        def close(self):
            if self.f:
                self.f.close()
            assert self.i == len(self.files) and self.left == 0

    cutters = [Cutter(p, s, sub) for p, s, sub in layouts]
    data = random.Random(a.seed + 1)
    done = 0
    while done < a.size:
        buf = memoryview(data.randbytes(min(CHUNK, a.size - done)))
        for c in cutters:
            c.write(buf)
        done += len(buf)
    for c in cutters:
        c.close()
    with open(os.path.join(a.dir, "done"), "w") as f:
        f.write(f"{a.size} {a.small_files} {a.large_files} {a.seed}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
