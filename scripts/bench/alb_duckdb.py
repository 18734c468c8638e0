"""DuckDB peer of the ALB import benchmark: ALB log files (gzip) read with read_csv into zstd Parquet, one thread.

Usage: python alb_duckdb.py GLOB OUT.parquet  (prints the rows written)
"""

import duckdb, sys
con = duckdb.connect()
con.execute("SET threads=1")
src, out = sys.argv[1], sys.argv[2]
con.execute(
    "COPY (SELECT * FROM read_csv(?, delim=' ', quote='\"', escape='\\', header=false, null_padding=true, strict_mode=false)) "
    "TO ? (FORMAT parquet, COMPRESSION zstd)",
    [src, out],
)
print(con.execute("SELECT count(*) FROM read_parquet(?)", [out]).fetchone()[0])
