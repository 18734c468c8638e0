"""Reads a logyard stream table with engines logyard does not control, and prints what each
one sees as JSON: row count, sorted ids, the sum of `status`, and the column names; and, per
Parquet file, the columns DuckDB finds bloom filters on and what its probe of the `id` filter
says for the file's smallest id and for an id no file holds.

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
    out["bloom"] = [bloom(con, f) for f in files]
    print(json.dumps(out))


def bloom(con, file):
    columns = con.execute(
        "SELECT DISTINCT path_in_schema FROM parquet_metadata($f) WHERE bloom_filter_offset IS NOT NULL",
        {"f": file},
    ).fetchall()
    rows = con.execute("SELECT count(*), min(id) FROM read_parquet($f)", {"f": file}).fetchone()

    def excluded(value):
        probe = "SELECT bool_and(bloom_filter_excludes) FROM parquet_bloom_probe($f, 'id', $v)"
        return con.execute(probe, {"f": file, "v": value}).fetchone()[0]

    return {
        "rows": rows[0],
        "columns": sorted(c[0] for c in columns),
        "smallest_id_excluded": excluded(rows[1]),
        "absent_id_excluded": excluded("no-such-id"),
    }


if __name__ == "__main__":
    main(sys.argv[1])
