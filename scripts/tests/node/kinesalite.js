// Starts kinesalite (Kinesis Data Streams in memory) on 127.0.0.1 only: its command line
// binds every interface. Usage: node start.js PORT
const kinesalite = require('kinesalite');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node start.js PORT');
  process.exit(2);
}
// Streams become ACTIVE (and reshards finish) at once instead of after half a second.
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100 });
server.listen(port, '127.0.0.1', (err) => {
  if (err) throw err;
  console.log(`kinesalite listening on 127.0.0.1:${port}`);
});
