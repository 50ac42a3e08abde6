#!/usr/bin/env node
// The PouchDB column's server: express-pouchdb over PouchDB's LevelDB adapter, every
// database a directory under --dir. Used by bench/pouch_column.py only.
//
//   node server.js --dir DIR [--log FILE] [--port N]
//
// The first stdout line is "pouchdb-server listening on http://127.0.0.1:PORT".
'use strict';
const path = require('path');
const PouchDB = require('pouchdb');
const expressPouchDB = require('express-pouchdb');

const args = process.argv.slice(2);
function flag(name, dflt) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}
const dir = path.resolve(flag('--dir', '.'));
const port = Number(flag('--port', 0));
const logPath = path.resolve(flag('--log', path.join(dir, 'log.txt')));
const DB = PouchDB.defaults({ prefix: dir + path.sep });
// the routes PouchDB's replication needs, config in memory (no config.json); the
// request log goes to --log (the benchmark puts it outside --dir: --dir is the data)
const app = expressPouchDB(DB, {
  mode: 'minimumForPouchDB',
  inMemoryConfig: true,
  logPath,
});
const server = app.listen(port, '127.0.0.1', () => {
  console.log(`pouchdb-server listening on http://127.0.0.1:${server.address().port}`);
});
server.keepAliveTimeout = 65000;
server.requestTimeout = 0;

// a clean shutdown: stop taking requests, close the database (LevelDB closes its files)
async function stop() {
  server.close();
  try {
    await new DB('chats').close();
  } catch (e) {
    // the database was never created
  }
  process.exit(0);
}
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, stop);
