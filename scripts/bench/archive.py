"""Archive benchmarks, each beside its peer in the same run:

bundle: 10,000 small log files (about 10 KB each, generated storefront NDJSON) packed by
  `logyard archive pack DIR -o F` (seekable tar.zst, zstd -3) against
  `tar -c DIR | zstd -3 -T2` (GNU tar and the zstd CLI on both cores). Throughput is input
  bytes over wall time; sizes are the outputs'. The file cache is warm for both.

alb: ALB access-log files (about 8 MB of text each, gzip, generated from the documented
  format) imported by `logyard import alb DIR --storage S` pinned to one core (taskset), beside
  `zcat FILES | wc -l` on the same core (the floor: decompression alone),
  against DuckDB reading the same files (`read_csv` with the space delimiter and quotes) into
  a zstd Parquet file with threads=1 on the same core. Throughput is decompressed log text
  per second.

Each measurement runs --rounds times; the report gives medians. Each timed ALB run starts
SETTLE_S seconds after the last one ended: on the (virtual) machine of BENCHMARKS.md
an import started right after another ran 8-15 % faster (BENCHMARKS.md, "Archive").

Usage: python scripts/bench/archive.py [--files N] [--alb-mb MB] [--rounds R] [--workdir DIR]
(run through scripts/bench/run.sh archive, which builds the release binaries and the venv)
"""

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import pinned, release_bin, scratch_dir  # noqa: E402


def small_files(workdir, count):
    """`count` files of about 10 KB of storefront NDJSON under workdir/files-<count>."""
    out = workdir / f"files-{count}"
    if out.exists():
        return out
    ndjson = workdir / f"storefront-files-{count}.ndjson"
    events = count * 28  # about 360 bytes an event
    subprocess.run([release_bin("logyard-bench"), "gen", "--events", str(events), "--days", "3", "--out", str(ndjson)], check=True)
    tmp = workdir / f"files-{count}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(ndjson, "rb") as f:
        lines = f.readlines()
    per = max(1, len(lines) // count)
    for i in range(count):
        sub = tmp / f"pod-{i % 50:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"app-{i:05d}.log").write_bytes(b"".join(lines[i * per:(i + 1) * per]))
    tmp.rename(out)
    ndjson.unlink()
    return out


def tree_bytes(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def timed(cmd, **kw):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - start


def bench_bundle(workdir, count, rounds):
    files = small_files(workdir, count)
    size = tree_bytes(files)
    out_logyard = workdir / "bundle.tar.zst"
    out_peer = workdir / "peer.tar.zst"
    logyard, peer = [], []
    for _ in range(rounds):
        logyard.append(timed([release_bin("logyard"), "archive", "pack", str(files), "-o", str(out_logyard)], stdout=subprocess.DEVNULL))
        cmd = f"tar -C {files.parent} -cf - {files.name} | zstd -3 -T2 -q -f -o {out_peer}"
        peer.append(timed(["bash", "-o", "pipefail", "-c", cmd]))
    # The bundle is a tar archive GNU tar reads.
    subprocess.run(["tar", "--zstd", "-tf", str(out_logyard)], check=True, stdout=subprocess.DEVNULL)
    lm, pm = statistics.median(logyard), statistics.median(peer)
    ls, ps = out_logyard.stat().st_size, out_peer.stat().st_size
    return {
        "files": count,
        "input_bytes": size,
        "logyard": {"seconds_median": round(lm, 3), "mb_per_s": round(size / lm / 1e6, 1), "bytes": ls},
        "tar_zstd_T2": {"seconds_median": round(pm, 3), "mb_per_s": round(size / pm / 1e6, 1), "bytes": ps},
        "speed_ratio": round(pm / lm, 2),
        "size_ratio": round(ls / ps, 3),
    }


def alb_files(workdir, mb):
    """About `mb` MB of ALB log text as gzip files under the ALB layout, kept in `workdir`
    under a name of the generated text's digest (a generator that changed makes new files)."""
    text = subprocess.run([release_bin("logyard-bench"), "alb", "--lines", "30000", "--seed", "7"], check=True, capture_output=True).stdout
    root = workdir / f"alb-{mb}-{hashlib.sha256(text).hexdigest()[:12]}"
    if root.exists():
        return root
    tmp = workdir / f"{root.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    day = tmp / "AWSLogs/123456789012/elasticloadbalancing/eu-west-1/2026/11/25"
    day.mkdir(parents=True)
    files = max(1, round(mb * 1e6 / len(text)))
    for i in range(files):
        name = f"123456789012_elasticloadbalancing_eu-west-1_app.shop.50dc6c495c0c9188_20261125T{i // 12:02d}{(i % 12) * 5:02d}Z_10.0.1.{i % 3}_{i:04x}.log.gz"
        with gzip.open(day / name, "wb", compresslevel=6) as f:
            f.write(text)
    tmp.rename(root)
    return root


SETTLE_S = 5


def bench_alb(workdir, mb, rounds):
    root = alb_files(workdir, mb)
    source = root / "AWSLogs/123456789012/elasticloadbalancing/eu-west-1"
    logyard, duck, zcat, rows, text_bytes = [], [], [], None, None
    files = sorted(str(p) for p in source.rglob("*.log.gz"))
    duckdb_script = str(ROOT / "scripts/bench/alb_duckdb.py")
    for _ in range(rounds):
        storage = Path(tempfile.mkdtemp(prefix="alb-logyard-", dir=workdir))
        time.sleep(SETTLE_S)
        start = time.perf_counter()
        out = subprocess.run(pinned(0, [release_bin("logyard"), "import", "alb", str(source), "--storage", str(storage)]), check=True, capture_output=True, text=True).stdout
        logyard.append(time.perf_counter() - start)
        words = out.split()
        rows = int(words[words.index("rows,") - 1])
        text_bytes = int(words[words.index("bytes") - 1])
        shutil.rmtree(storage)
        parquet = workdir / "alb-duckdb.parquet"
        time.sleep(SETTLE_S)
        start = time.perf_counter()
        got = subprocess.run(pinned(0, [sys.executable, duckdb_script, f"{source}/**/*.log.gz", str(parquet)]), check=True, capture_output=True, text=True).stdout
        duck.append(time.perf_counter() - start)
        duck_rows = int(got.strip())
        parquet.unlink()
        # The floor: decompressing the same files and counting their lines, on the same core.
        time.sleep(SETTLE_S)
        start = time.perf_counter()
        lines = subprocess.run(pinned(0, ["sh", "-c", 'zcat "$@" | wc -l', "zcat"] + files), check=True, capture_output=True, text=True).stdout
        zcat.append(time.perf_counter() - start)
        assert int(lines) == rows, f"zcat counted {lines} lines, logyard {rows} rows"
    lm, dm, zm = statistics.median(logyard), statistics.median(duck), statistics.median(zcat)
    return {
        "text_bytes": text_bytes,
        "rows": rows,
        "logyard": {"seconds_median": round(lm, 3), "mb_per_s_per_core": round(text_bytes / lm / 1e6, 1)},
        "duckdb_read_csv_threads1": {"seconds_median": round(dm, 3), "mb_per_s_per_core": round(text_bytes / dm / 1e6, 1), "rows": duck_rows},
        "speed_ratio": round(dm / lm, 2),
        "zcat_wc_l": {"seconds_median": round(zm, 3), "mb_per_s_per_core": round(text_bytes / zm / 1e6, 1)},
        "ratio_to_zcat": round(zm / lm, 2),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--alb-mb", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir")
    ap.add_argument("--only", choices=["bundle", "alb"])
    a = ap.parse_args()
    workdir = Path(a.workdir) if a.workdir else scratch_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    report = {}
    if a.only in (None, "bundle"):
        report["bundle"] = bench_bundle(workdir, a.files, a.rounds)
    if a.only in (None, "alb"):
        report["alb"] = bench_alb(workdir, a.alb_mb, a.rounds)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
