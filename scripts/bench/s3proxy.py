"""s3s-fs (an S3 server that checks signatures) for the benchmarks, and a proxy in front of
it that counts requests by kind (GET, HEAD, LIST, PUT, ...) and can add a delay before each
request reaches it, as the time to first byte of S3 in the same region.

s3s-fs reads a whole object to answer a GET or HEAD of it (its ETag is the content's MD5): a
64 KiB range of a 95 MB Parquet file takes it about 230 ms. Given `root` (s3s-fs's directory),
the proxy answers GETs and HEADs of `.parquet` objects itself from that directory, ranges
included, with the same delay and without checking their signatures, so that reading data
costs what S3 charges in time: the delay and the transfer."""

import collections
import email.utils
import http.client
import http.server
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

KEYS = ("bench-key", "bench-secret-0123456789")


class Proxy:
    """Counts (and delays by `latency` seconds) every request to the S3 server on `upstream_port`."""

    def __init__(self, upstream_port, latency=0.0, root=None):
        self.counts = collections.Counter()
        # Every request as (kind, key, range header), to see which objects a query reads.
        self.requests = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle's algorithm and
            # the client's delayed ACK hold the body back 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def forward(self):
                kind = self.command
                if "?" in self.path:
                    query = self.path.split("?", 1)[1]
                    if kind == "GET" and ("list-type" in query or "delimiter" in query or query.startswith("prefix")):
                        kind = "LIST"
                with proxy.lock:
                    proxy.counts[kind] += 1
                    proxy.requests.append((kind, urllib.parse.unquote(self.path), self.headers.get("range")))
                    if kind in ("PUT", "POST"):
                        # /bucket/logs/<area>/...: tables, incoming, archive, uploads.
                        parts = self.path.split("?")[0].split("/")
                        proxy.counts[f"{kind} {parts[3] if len(parts) > 3 else '?'}"] += 1
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    length = int(self.headers.get("content-length") or 0)
                    body = self.rfile.read(length) if length else None
                if latency:
                    time.sleep(latency)
                if root is not None and self.command in ("GET", "HEAD") and kind != "LIST" and self.local(root):
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=300)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "transfer-encoding")}
                if body is not None:
                    headers["content-length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # A HEAD answer's length is the object's.
                length = r.getheader("content-length") if self.command == "HEAD" else str(len(data))
                self.send_header("content-length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def local(self, root):
                """Answers a GET or HEAD of a `.parquet` object from `root`; False for others."""
                key = urllib.parse.unquote(self.path.split("?", 1)[0]).lstrip("/")
                path = Path(root) / key
                if not key.endswith(".parquet") or not path.is_file():
                    return False
                stat = path.stat()
                size = stat.st_size
                start, end, status = 0, size - 1, 200
                ranges = self.headers.get("range")
                if ranges and ranges.startswith("bytes="):
                    first, _, last = ranges[len("bytes="):].partition("-")
                    if first:
                        start, end = int(first), min(int(last), size - 1) if last else size - 1
                    else:
                        start, end = max(size - int(last), 0), size - 1
                    status = 206
                self.send_response(status)
                self.send_header("content-length", str(end - start + 1))
                self.send_header("etag", f'"{size:x}-{stat.st_mtime_ns:x}"')
                self.send_header("last-modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
                if status == 206:
                    self.send_header("content-range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if self.command == "GET":
                    with open(path, "rb") as f:
                        f.seek(start)
                        self.wfile.write(f.read(end - start + 1))
                return True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return dict(self.counts)

    def since(self, before):
        now = self.snapshot()
        return {k: now[k] - before.get(k, 0) for k in now if now[k] - before.get(k, 0)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3s(workdir):
    """s3s-fs over a new directory of `workdir` with a bucket `bench`: (process, port, root)."""
    cache = Path(os.environ.get("LOGYARD_CACHE", "/var/cache/logyard"))
    s3s = os.environ.get("LOGYARD_S3S_FS", str(cache / "tools/bin/s3s-fs"))
    root = Path(tempfile.mkdtemp(prefix="s3s-", dir=workdir))
    (root / "bench").mkdir()
    port = free_port()
    cmd = [s3s, "--host", "127.0.0.1", "--port", str(port), "--access-key", KEYS[0], "--secret-key", KEYS[1], str(root)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port, root


def aws_env(endpoint):
    """The environment of a logyard process whose S3 is `endpoint`."""
    return dict(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=KEYS[0], AWS_SECRET_ACCESS_KEY=KEYS[1], AWS_REGION="us-east-1",
                AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
