"""Would a text index per row group pay for its size? For one day's file of the needles table
and a phrase, how many of the file's row groups a filter of the message column's lowercased
tokens, or of its n-grams, would let a `message ILIKE '%phrase%'` read, against the row groups
that hold the phrase, and how large the filters would be (a bloom filter at 1 % false
positives: 9.6 bits per distinct entry).

A token filter can only use the phrase's tokens that are delimited on both sides inside the
phrase (`ILIKE '%/products/4523%'` also matches `/products/45231`, so `4523` is not a whole
token of every match); an n-gram filter can use every n-gram of the phrase.

Usage: python scripts/bench/textindex.py [--workdir DIR] [--day YYYY-MM-DD] [--phrase TEXT]
(the table is the one scripts/bench/needles.py loaded into DIR)
"""

import argparse
import glob
import json
import math
import os
import re

import pyarrow.parquet as pq


def bloom_bytes(entries, fpp=0.01):
    return -entries * math.log(fpp) / (math.log(2) ** 2) / 8


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/var/tmp/needles")
    ap.add_argument("--day", default="2026-11-22")
    ap.add_argument("--phrase", default="/products/4523")
    args = ap.parse_args()
    table = os.path.join(args.workdir, "needles-data", "tables", "storefront")
    files = glob.glob(os.path.join(table, f"date={args.day}", "*.parquet"))
    # The day's compacted file (the largest).
    path = max(files, key=os.path.getsize)
    parquet = pq.ParquetFile(path)
    groups = [
        [m.lower() for m in parquet.read_row_group(i, columns=["message"])["message"].to_pylist() if m]
        for i in range(parquet.metadata.num_row_groups)
    ]
    phrase = args.phrase.lower()
    out = {
        "file_bytes": os.path.getsize(path),
        "row_groups": len(groups),
        "row_groups_holding_the_phrase": sum(any(phrase in m for m in g) for g in groups),
        "filters": {},
    }

    word = re.compile(r"[0-9a-z]+")
    # Tokens of the phrase with a delimiter on both sides inside it.
    inner = [m.group() for m in word.finditer(phrase) if m.start() > 0 and m.end() < len(phrase)]
    distinct = admitted = 0
    for g in groups:
        tokens = set()
        for m in g:
            tokens.update(word.findall(m))
        distinct += len(tokens)
        admitted += set(inner) <= tokens
    out["filters"]["tokens"] = {"usable": inner, "distinct_per_row_group": round(distinct / len(groups)),
                                "bytes": round(bloom_bytes(distinct)), "row_groups_admitted": admitted}
    for n in (3, 4, 5):
        wanted = {phrase[i:i + n] for i in range(len(phrase) - n + 1)}
        distinct = admitted = 0
        for g in groups:
            grams = set()
            for m in g:
                grams.update(m[i:i + n] for i in range(len(m) - n + 1))
            distinct += len(grams)
            admitted += bool(wanted) and wanted <= grams
        out["filters"][f"{n}-grams"] = {"distinct_per_row_group": round(distinct / len(groups)),
                                        "bytes": round(bloom_bytes(distinct)), "row_groups_admitted": admitted}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
