#!/usr/bin/env python3
"""Medians of bench/compare.sh's TSV, and the data files of its chart.

    summarize.py TSV                       # medians per (tool, N, loss, Mbit/s, MiB), as TSV
    summarize.py TSV --plot DIR --n 8 --mbit 100 --mib 64 --tools "edm-cast udpcast uftp http"
                                           # also DIR/TOOL.dat for bench/plot.gp

Time and bytes medians are over the runs whose status is ok (every receiver complete with the right
MD5); `ok` says how many of the runs those were.
"""

import argparse
import csv
import statistics
import sys
from collections import OrderedDict

LOSS_ORDER = ["0", "1", "5", "10", "mixed", "burst"]


def med(vals):
    v = []
    for x in vals:
        try:
            v.append(float(x))
        except (TypeError, ValueError):
            pass
    return statistics.median(v) if v else None


def fmt(x, nd):
    return "NA" if x is None else f"{x:.{nd}f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("tsv")
    ap.add_argument("--plot")
    ap.add_argument("--n", default="8")
    ap.add_argument("--mbit", default="100")
    ap.add_argument("--mib", default="64")
    ap.add_argument("--tools", default="edm-cast udpcast uftp http")
    a = ap.parse_args()

    with open(a.tsv, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    groups = OrderedDict()
    for r in rows:
        groups.setdefault((r["tool"], r["n"], r["loss"], r["mbit"], r["mib"]), []).append(r)

    def loss_key(loss):
        return (LOSS_ORDER.index(loss), "") if loss in LOSS_ORDER else (len(LOSS_ORDER), loss)

    keys = sorted(groups, key=lambda k: (int(k[3]), int(k[4]), int(k[1]), loss_key(k[2]), k[0]))
    out = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    out.writerow(["tool", "n", "loss", "mbit", "mib", "runs", "ok", "secs", "bytes_ratio",
                  "sender_cpu_s", "recv_cpu_s", "sender_rss_kib", "recv_rss_kib", "loss_meas_pct"])
    stats = {}
    for k in keys:
        rs = groups[k]
        ok = [r for r in rs if r["status"] == "ok"]
        m = {
            "secs": med(r["secs"] for r in ok),
            "bytes": med(r["bytes_ratio"] for r in ok),
            "scpu": med(r["sender_cpu_s"] for r in ok),
            "rcpu": med(r["recv_cpu_s"] for r in ok),
            "srss": med(r["sender_rss_kib"] for r in ok),
            "rrss": med(r["recv_rss_kib"] for r in ok),
            "loss": med(r["loss_meas_pct"] for r in rs),
        }
        stats[k] = (len(rs), len(ok), m)
        out.writerow(list(k) + [len(rs), len(ok), fmt(m["secs"], 2), fmt(m["bytes"], 3),
                                fmt(m["scpu"], 2), fmt(m["rcpu"], 2), fmt(m["srss"], 0),
                                fmt(m["rrss"], 0), fmt(m["loss"], 2)])

    if a.plot:
        losses = sorted({k[2] for k in keys if k[1] == a.n and k[3] == a.mbit and k[4] == a.mib},
                        key=loss_key)
        points, with_data = 0, []
        for tool in a.tools.split():
            lines = []
            for x, loss in enumerate(losses):
                s = stats.get((tool, a.n, loss, a.mbit, a.mib))
                if s and s[2]["secs"] is not None:
                    label = loss if loss in ("mixed", "burst") else loss + "%"
                    lines.append(f"{x}\t{label}\t{s[2]['secs']:.3f}\t{s[2]['bytes']:.4f}\t{s[1]}\n")
            if lines:
                with open(f"{a.plot}/{tool}.dat", "w") as f:
                    f.writelines(lines)
                with_data.append(tool)
                points += len(lines)
        with open(f"{a.plot}/tools", "w") as f:
            f.write(" ".join(with_data) + "\n")
        print(f"plot points: {points}", file=sys.stderr)
        if points == 0:
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
