"""PostgreSQL drivers against logyard's pgwire listener (crates/logyard/tests/pgwire.rs).

    clients.py basics PORT PASSWORD
        Prints one JSON object: what psycopg (libpq; server-side parameters, text and binary)
        and asyncpg (its own protocol implementation: binary, prepared statements, a cursor)
        answered over the seeded storefront stream.

    clients.py refusals PORT INGEST_ONLY_TOKEN ONE_STREAM_TOKEN
        Prints the SQLSTATE and message asyncpg got for an empty password, a wrong token, a
        token without the query scope, and a one-stream token reading another stream.

    clients.py rows PORT PASSWORD STATEMENTS_JSON
        Runs each statement of the JSON list through asyncpg (the extended protocol, binary
        results, as Grafana's Go driver does) and prints {"results": [...]}: per statement
        its rows (lists; timestamps in RFC 3339, numerics as floats) or its error's SQLSTATE.

    clients.py same-answers PORT PASSWORD HTTP_URL QUERIES_JSON
        Runs each named query of QUERIES_JSON through asyncpg (binary) and psycopg (text) and
        through POST /api/v1/query, and compares them value for value (timestamps, numbers,
        nested values). Reads `SELECT id, status FROM storefront` (100,000 rows) through an
        asyncpg cursor in batches. Prints one JSON object with the verdicts and counts.
"""

import asyncio
import datetime
import decimal
import json
import math
import sys
import urllib.request

import asyncpg
import psycopg

mode, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def refusals(ingest_only, one_stream):
    async def attempt(secret, sql="SELECT 1"):
        try:
            conn = await asyncpg.connect(host="127.0.0.1", port=port, user="someone", password=secret,
                                         database="logyard", ssl=False)
        except asyncpg.PostgresError as e:
            return {"sqlstate": e.sqlstate, "message": str(e), "at": "login"}
        try:
            await conn.fetch(sql)
            return {"sqlstate": None, "message": "answered", "at": "query"}
        except asyncpg.PostgresError as e:
            return {"sqlstate": e.sqlstate, "message": str(e), "at": "query"}
        finally:
            await conn.close()

    async def run():
        return {
            "empty password": await attempt(""),
            "wrong token": await attempt("lyt_not-a-token"),
            "token without query": await attempt(ingest_only),
            "other stream": await attempt(one_stream, "SELECT * FROM payments"),
        }

    return asyncio.run(run())


def psycopg_connect():
    return psycopg.connect(host="127.0.0.1", port=port, user="psycopg", password=password, dbname="logyard",
                           sslmode="disable")


async def asyncpg_connect():
    return await asyncpg.connect(host="127.0.0.1", port=port, user="asyncpg", password=password,
                                 database="logyard", ssl=False)


def basics():
    out = {}
    with psycopg_connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM storefront WHERE status >= %s AND route = %s", (500, "/checkout"))
            out["psycopg_text"] = cur.fetchone()[0]
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT id, status, latency_ms, timestamp FROM storefront WHERE id = %s", ("e042",))
            row = cur.fetchone()
            out["psycopg_binary"] = [row[0], row[1], row[2], row[3].isoformat()]
        with conn.cursor() as cur:
            cur.execute("SELECT route, count(*) AS n FROM storefront GROUP BY route ORDER BY route")
            out["psycopg_routes"] = [[r, n] for r, n in cur.fetchall()]

    async def with_asyncpg():
        conn = await asyncpg_connect()
        try:
            statement = await conn.prepare("SELECT count(*) AS n FROM storefront WHERE status = $1")
            out["asyncpg_prepared"] = [await statement.fetchval(code) for code in (200, 404, 500, 503)]
            row = await conn.fetchrow("SELECT id, status, latency_ms, timestamp FROM storefront WHERE id = $1", "e042")
            out["asyncpg_row"] = [row["id"], row["status"], row["latency_ms"], row["timestamp"].isoformat()]
            out["asyncpg_flattened"] = await conn.fetchval('SELECT "http.method" FROM storefront WHERE id = $1', "e042")
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())
    return out


def http_rows(url, sql):
    request = urllib.request.Request(f"{url}/api/v1/query", data=json.dumps({"sql": sql}).encode(),
                                     headers={"content-type": "application/json",
                                              "authorization": f"Bearer {password}"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)["rows"]


def same(pg, http):
    """Whether a driver's value equals the HTTP API's JSON value."""
    if pg is None or http is None:
        return pg is None and http is None
    if isinstance(pg, datetime.datetime):
        other = datetime.datetime.fromisoformat(http.replace("Z", "+00:00"))
        if pg.tzinfo is None:
            pg = pg.replace(tzinfo=datetime.timezone.utc)
        if other.tzinfo is None:
            other = other.replace(tzinfo=datetime.timezone.utc)
        return pg == other
    if isinstance(pg, datetime.date):
        return pg.isoformat() == http
    if isinstance(pg, bool) or isinstance(http, bool):
        return pg == http
    if isinstance(pg, (int, float, decimal.Decimal)):
        return math.isclose(float(pg), float(http), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(pg, str) and isinstance(http, (dict, list)):
        return json.loads(pg) == http
    if isinstance(pg, (dict, list)):
        return pg == http
    return pg == http


def compare(columns, pg_rows, http):
    problems = []
    if len(pg_rows) != len(http):
        problems.append(f"{len(pg_rows)} rows over pgwire, {len(http)} over HTTP")
    for i, (row, expected) in enumerate(zip(pg_rows, http)):
        for column, value in zip(columns, row):
            if not same(value, expected.get(column)):
                problems.append(f"row {i} {column}: {value!r} over pgwire, {expected.get(column)!r} over HTTP")
    return {"rows": len(pg_rows), "problems": problems[:5]}


def same_answers(url, queries):
    out = {"asyncpg": {}, "psycopg": {}}
    expected = {name: http_rows(url, sql) for name, sql in queries.items()}

    async def with_asyncpg():
        conn = await asyncpg_connect()
        try:
            for name, sql in queries.items():
                records = await conn.fetch(sql)
                columns = list(records[0].keys()) if records else []
                rows = [list(r.values()) for r in records]
                out["asyncpg"][name] = compare(columns, rows, expected[name])
            # 100,000 rows through a cursor, fetched 10,000 at a time (portals with a row limit).
            seen, ids, status_sum = 0, set(), 0
            async with conn.transaction():
                cursor = await conn.cursor("SELECT trace_id, status FROM storefront")
                while batch := await cursor.fetch(10_000):
                    seen += len(batch)
                    ids.update(r["trace_id"] for r in batch)
                    status_sum += sum(r["status"] for r in batch)
            out["cursor"] = {"rows": seen, "distinct_ids": len(ids), "status_sum": status_sum}
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())
    with psycopg_connect() as conn:
        for name, sql in queries.items():
            with conn.cursor() as cur:
                cur.execute(sql)
                columns = [d.name for d in cur.description]
                out["psycopg"][name] = compare(columns, cur.fetchall(), expected[name])
    return out


def plain(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def rows(statements):
    async def run():
        conn = await asyncpg_connect()
        results = []
        try:
            for sql in statements:
                try:
                    records = await conn.fetch(sql)
                    results.append({"columns": list(records[0].keys()) if records else [],
                                    "rows": [[plain(v) for v in r.values()] for r in records]})
                except asyncpg.PostgresError as e:
                    results.append({"error": e.sqlstate, "message": str(e)})
        finally:
            await conn.close()
        return results

    return {"results": asyncio.run(run())}


if mode == "basics":
    print(json.dumps(basics()))
elif mode == "rows":
    print(json.dumps(rows(json.loads(sys.argv[4]))))
elif mode == "refusals":
    print(json.dumps(refusals(sys.argv[3], sys.argv[4])))
elif mode == "same-answers":
    print(json.dumps(same_answers(sys.argv[4], json.loads(sys.argv[5]))))
else:
    sys.exit(f"unknown mode {mode}")
