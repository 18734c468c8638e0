"""S3 requests per GB archived, counted at the S3 server.

About 1 GB of small log files (generated storefront NDJSON, ~100 KB each) is sent with
`logyard upload` to a release `logyard serve` whose storage is s3s-fs; a counting proxy in
front of s3s-fs sees every request of both (the client's presigned part uploads and the
server's reads and writes). The count runs until the upload is ingested and its original is
in the archive. Reported per GB of the original files: PUT requests (all, and those of the
archive path: the upload's parts, upload records, bundles and their indexes, as opposed to
the table's Parquet files and commits), and the PUT-class requests S3 bills alike (PUT, POST,
COPY, LIST).

Usage: python scripts/bench/puts.py [--files N] [--workdir DIR]
(run through scripts/bench/run.sh puts; needs s3s-fs from scripts/test.sh)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import free_port, release_bin, scratch_dir  # noqa: E402
from s3proxy import Proxy, aws_env, start_s3s  # noqa: E402

def files(workdir, count):
    out = workdir / f"put-files-{count}"
    if out.exists():
        return out
    ndjson = workdir / "put-files.ndjson"
    subprocess.run([release_bin("logyard-bench"), "gen", "--events", str(count * 240), "--days", "3", "--out", str(ndjson)], check=True)
    tmp = workdir / "put-files.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(ndjson, "rb") as f:
        lines = f.readlines()
    per = len(lines) // count
    for i in range(count):
        (tmp / f"app-{i:05d}.log").write_bytes(b"".join(lines[i * per:(i + 1) * per]))
    tmp.rename(out)
    ndjson.unlink()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    workdir = Path(a.workdir) if a.workdir else scratch_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    data = files(workdir, a.files)
    size = sum(p.stat().st_size for p in data.iterdir())

    s3, s3_port, _ = start_s3s(workdir)
    proxy = Proxy(s3_port)
    env = dict(os.environ, **aws_env(f"http://127.0.0.1:{proxy.port}"),
               LOGYARD_UPLOADS_SWEEP_INTERVAL="1s", LOGYARD_ARCHIVE_BUNDLE_MAX_AGE="0s", LOGYARD_LOG_FORMAT="json")
    port = free_port()
    wal = Path(tempfile.mkdtemp(prefix="wal-", dir=workdir))
    server = subprocess.Popen([release_bin("logyard"), "serve", "--listen", f"127.0.0.1:{port}", "--storage", "s3://bench/logs", "--wal-dir", str(wal)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        before = proxy.snapshot()
        out = subprocess.run([release_bin("logyard"), "upload", "--server", base, "--stream", "bench", str(data)], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"logyard upload failed: {out.stderr}")
        upload_id = out.stdout.split()[1].rstrip(":")
        while True:
            record = json.load(urllib.request.urlopen(f"{base}/api/v1/uploads/{upload_id}"))
            if record.get("archived"):
                break
            time.sleep(0.5)
        counts = proxy.since(before)
    finally:
        server.terminate()
        server.wait()
        s3.terminate()
    gb = size / 1e9
    put_class = sum(counts.get(k, 0) for k in ("PUT", "POST", "LIST"))
    archive_puts = sum(v for k, v in counts.items() if k.split(" ")[0] == "PUT" and k.split(" ")[-1] in ("incoming", "archive", "uploads"))
    print(json.dumps({
        "files": a.files,
        "bytes": size,
        "requests": counts,
        "rows": record["rows"],
        "put_per_gb": round(counts.get("PUT", 0) / gb, 1),
        "put_class_per_gb": round(put_class / gb, 1),
        "archive_path_put_per_gb": round(archive_puts / gb, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
