#!/usr/bin/env python3
"""Where the time after a download's last byte goes, in one `send-url` run of bench/wan.sh with
TRACE=1: reads the lab server's two captures (wan.pcap: its WAN side, lan.pcap: its LAN side, both
tcpdump with headers only), the students' exit times (exits.txt: "rI UNIX_TIME" lines) and the
run's start (t0), all in DIR, and prints:

  - when the web server's last byte reached the lab server, after the start;
  - how far the first pass ran behind the download: bytes in (as whole symbols) less the highest
    source symbol sent, sampled every 10 ms (median, 95th percentile, largest);
  - after the last byte: the last DATA and how many DATA followed it, NEEDs, each student's Done
    STATUS, its ACK, its exit, and the sender's first END.

Stdlib only. usage: [K=1024] wantrace.py DIR [T]  (K, T: the session's block and symbol size,
edm-cast's defaults 1024 and 1408 unless given)
"""
import bisect
import os
import struct
import sys

WEB_SERVER = bytes([10, 78, 0, 2])
DATA, END, ACK, STATUS, NEED = 0x02, 0x03, 0x04, 0x10, 0x11
DONE = 2


def packets(path):
    """(time, IP packet) of a pcap file (Ethernet or Linux cooked captures)."""
    with open(path, "rb") as f:
        head = f.read(24)
        nano = struct.unpack("<I", head[:4])[0] == 0xA1B23C4D
        skip = 14 if struct.unpack("<I", head[20:24])[0] == 1 else 16
        while len(rec := f.read(16)) == 16:
            sec, frac, incl, _ = struct.unpack("<IIII", rec)
            data = f.read(incl)
            yield sec + frac / (1e9 if nano else 1e6), data[skip:]


def wan_bytes(path):
    """(time, bytes of the body so far) for every TCP segment from the web server."""
    out, total = [], 0
    for t, ip in packets(path):
        if len(ip) < 40 or ip[9] != 6 or ip[12:16] != WEB_SERVER:
            continue
        ihl = (ip[0] & 15) * 4
        payload = struct.unpack(">H", ip[2:4])[0] - ihl - (ip[ihl + 12] >> 4) * 4
        if payload > 0:
            total += payload
            out.append((t, total))
    return out


def edm(path):
    """(time, type, source address, destination address, edm-cast datagram) on the LAN side."""
    for t, ip in packets(path):
        if len(ip) < 28 or ip[9] != 17:
            continue
        u = ip[(ip[0] & 15) * 4 + 8:]
        if len(u) >= 8 and u[:2] == b"\xed\xc5":
            yield t, u[3], ip[12:16], ip[16:20], u


def main(d, t_bytes):
    t0 = float(open(os.path.join(d, "t0")).read())
    wan = wan_bytes(os.path.join(d, "wan.pcap"))
    last = wan[-1][0]
    host = lambda a: f".{a[3]}"
    after = lambda t: f"{(t - last) * 1000:+.0f} ms" if t else "-"
    sent, data_after, needs_after, last_data = [], 0, 0, None
    done, acks, end = {}, {}, None
    for t, kind, src, dst, u in edm(os.path.join(d, "lan.pcap")):
        if kind == DATA and len(u) >= 16:
            block, esi = struct.unpack(">II", u[8:16])
            last_data = t
            data_after += t > last
            sent.append((t, block, esi))
        elif kind == NEED:
            needs_after += t > last
        elif kind == STATUS and len(u) > 12 and u[12] == DONE:
            done.setdefault(host(src), t)
        elif kind == ACK:
            acks.setdefault(host(dst), t)
        elif kind == END and end is None:
            end = t
    # K, symbols per block, is not on the wire: edm-cast's default unless K= says otherwise.
    k = int(os.environ.get("K", 1024))
    highest, best = 0, []
    for t, block, esi in sent:
        if esi < k:
            highest = max(highest, block * k + esi + 1)
        best.append((t, highest))
    times = [t for t, _ in best]
    wt = [t for t, _ in wan]
    lags, t = [], wan[0][0] + 0.3
    while t < last:
        arrived = wan[bisect.bisect_right(wt, t) - 1][1] // t_bytes
        i = bisect.bisect_right(times, t) - 1
        lags.append(arrived - (best[i][1] if i >= 0 else 0))
        t += 0.01
    lags.sort()
    exits = {}
    for line in open(os.path.join(d, "exits.txt")):
        name, when = line.split()
        exits[name] = float(when)
    print(f"  last WAN byte {last - t0:.3f} s after the start; first pass behind the bytes in "
          f"(symbols): median {lags[len(lags) // 2]}, 95% {lags[int(len(lags) * 0.95)]}, "
          f"largest {lags[-1]}")
    print(f"  after it: last DATA {after(last_data)} ({data_after} DATA), {needs_after} NEED, "
          f"first END {after(end)}")
    print("  Done:  " + "  ".join(f"{h} {after(v)}" for h, v in sorted(done.items())))
    print("  ACK:   " + "  ".join(f"{h} {after(v)}" for h, v in sorted(acks.items())))
    print("  exit:  " + "  ".join(f"{n} {after(v)}" for n, v in sorted(exits.items())))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1408)
