#!/usr/bin/env python3
"""A small web server for edm-cast's tests and benches: the "WAN" side of a download.

Serves the files of --dir over HTTP/1.1 with what a real server has (Content-Length, ETag,
Last-Modified, If-None-Match -> 304, Range -> 206, If-Range) and faults on request:

  --chunked        no Content-Length: the body is sent chunked (size unknown to the client)
  --drop-at N      the first full (non-Range) GET of each file is cut after N body bytes
  --lie            Content-Length claims 1000 bytes more than the file has
  --claim-length N Content-Length claims N bytes, whatever the file has (a huge download)
  --rate B         send each response at most B bytes per second, in pieces of at most B/10
                   bytes (a slow WAN without a lab; a low B is a server that drips)
  --redirect P=URL answer a request for path P with 302 Found to URL (repeatable)
  --log FILE       one line per request: METHOD PATH RANGE STATUS

Stdlib only. Bound to --bind (default 127.0.0.1); stops after --max-secs (default 600).
"""
import argparse
import email.utils
import hashlib
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
dropped = set()
lock = threading.Lock()


def log(line):
    if args.log:
        with lock, open(args.log, "a") as f:
            f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.serve(head=True)

    def do_GET(self):
        self.serve(head=False)

    def serve(self, head):
        rng = self.headers.get("Range", "")
        target = dict(r.split("=", 1) for r in args.redirect).get(self.path)
        if target:
            log(f"{self.command} {self.path} - 302")
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = os.path.join(args.dir, self.path.split("?")[0].lstrip("/"))
        if not os.path.isfile(path):
            log(f"{self.command} {self.path} {rng or '-'} 404")
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        st = os.stat(path)
        size = st.st_size
        etag = '"%s"' % hashlib.md5(f"{st.st_mtime_ns}-{size}".encode()).hexdigest()[:16]
        lastmod = email.utils.formatdate(st.st_mtime, usegmt=True)
        if self.headers.get("If-None-Match") == etag:
            log(f"{self.command} {self.path} - 304")
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        start = 0
        status = 200
        if rng.startswith("bytes=") and self.headers.get("If-Range", etag) in (etag, lastmod):
            start = int(rng[6:].split("-")[0])
            if start >= size:
                log(f"{self.command} {self.path} {rng} 416")
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        log(f"{self.command} {self.path} {rng or '-'} {status}")
        self.send_response(status)
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", lastmod)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        length = size - start
        if args.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif args.claim_length is not None:
            self.send_header("Content-Length", str(args.claim_length))
        else:
            self.send_header("Content-Length", str(length + (1000 if args.lie else 0)))
        self.end_headers()
        if head:
            return
        limit = length
        if args.drop_at is not None and status == 200:
            with lock:
                if path not in dropped:
                    dropped.add(path)
                    limit = min(length, args.drop_at)
        with open(path, "rb") as f:
            f.seek(start)
            sent = 0
            t0 = time.monotonic()
            piece = 64 * 1024
            if args.rate:
                piece = max(1, min(piece, int(args.rate / 10)))
            while sent < limit:
                if args.rate:
                    ahead = sent / args.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                buf = f.read(min(piece, limit - sent))
                if not buf:
                    break
                try:
                    if args.chunked:
                        self.wfile.write(b"%x\r\n" % len(buf) + buf + b"\r\n")
                    else:
                        self.wfile.write(buf)
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += len(buf)
            if limit < length or args.lie or args.claim_length is not None:
                # A dropped connection: no last chunk, fewer bytes than promised.
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            if args.chunked:
                self.wfile.write(b"0\r\n\r\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up (a download given up, a TLS hello to plain HTTP) is not news.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main():
    global args
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--chunked", action="store_true")
    p.add_argument("--drop-at", type=int)
    p.add_argument("--lie", action="store_true")
    p.add_argument("--claim-length", type=int)
    p.add_argument("--redirect", action="append", default=[])
    p.add_argument("--log")
    p.add_argument("--rate", type=float)
    p.add_argument("--max-secs", type=float, default=600)
    args = p.parse_args()
    if ":" in args.bind:  # an IPv6 address
        Server.address_family = socket.AF_INET6
    srv = Server((args.bind, args.port), Handler)
    # The port chosen goes to stdout, so a test can start it with --port 0.
    print(srv.server_address[1], flush=True)
    threading.Timer(args.max_secs, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
