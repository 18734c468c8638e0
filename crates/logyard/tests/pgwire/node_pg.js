// node-postgres (npm `pg`) against logyard's pgwire listener (crates/logyard/tests/pgwire.rs).
//
//     node node_pg.js PORT PASSWORD
//
// Prints one JSON object: a query with parameters (the extended protocol), types as pg
// decodes them, and a simple query.
const { Client } = require('pg');

async function main() {
  const [port, password] = process.argv.slice(2);
  const client = new Client({ host: '127.0.0.1', port: Number(port), user: 'node', password, database: 'logyard', ssl: false });
  await client.connect();
  try {
    const out = {};
    const counted = await client.query('SELECT count(*) AS n FROM storefront WHERE status >= $1 AND route = $2', [500, '/checkout']);
    out.count = counted.rows[0].n; // int8 arrives as a string, as pg decodes bigint
    const row = await client.query('SELECT id, status, latency_ms, timestamp, "http.method" AS method FROM storefront WHERE id = $1', ['e042']);
    const r = row.rows[0];
    out.row = {
      id: r.id,
      status: r.status,
      latency_ms: r.latency_ms,
      timestamp: r.timestamp instanceof Date ? r.timestamp.toISOString() : String(r.timestamp),
      method: r.method,
    };
    out.types = Object.fromEntries(row.fields.map((f) => [f.name, f.dataTypeID]));
    const routes = await client.query('SELECT route, count(*) AS n FROM storefront GROUP BY route ORDER BY route');
    out.routes = routes.rows.map((x) => [x.route, Number(x.n)]);
    console.log(JSON.stringify(out));
  } finally {
    await client.end();
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
