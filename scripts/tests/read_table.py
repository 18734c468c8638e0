"""Reads a logyard stream table with engines logyard does not control, and prints what each
one sees as JSON: row count, sorted ids, the sum of `status`, and the column names.

Usage: read_table.py TABLE_DIR
"""
import json
import sys

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable


def summary(table):
    ids = sorted(table.column("id").to_pylist())
    status = pc.sum(table.column("status")).as_py()
    return {"rows": table.num_rows, "ids": ids, "status_sum": status, "columns": sorted(table.column_names)}


def main(path):
    dt = DeltaTable(path)
    out = {"deltalake": summary(dt.to_pyarrow_table())}
    files = dt.file_uris()
    # pyarrow over the Parquet files the Delta log lists (the partition column lives in the
    # paths, as the Delta protocol says, so it is absent here). Files written before a
    # column was added lack it: DuckDB unions them by name.
    out["pyarrow"] = summary(pq.ParquetDataset(files).read())
    con = duckdb.connect()
    rel = con.sql("SELECT * FROM read_parquet($files, union_by_name = true)", params={"files": files})
    out["duckdb"] = summary(rel.to_arrow_table())
    meta = pq.ParquetFile(files[0]).metadata
    out["parquet"] = {
        "compression": meta.row_group(0).column(0).compression,
        "has_statistics": meta.row_group(0).column(0).is_stats_set,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
