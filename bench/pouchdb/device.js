#!/usr/bin/env node
// A PouchDB device of the benchmark's PouchDB column (bench/pouch_column.py): a PouchDB 9
// database on LevelDB in a directory, each chat one document (its id the chat's id), synced
// with the express-pouchdb server by PouchDB.sync (both ways, one shot: what an app's
// "sync now" does). Each command prints one JSON line; times are of the operation only,
// measured inside the process (Node's start, require(), opening the local database and
// the first request to the remote one are not counted).
//
//   node device.js load DIR BODY             the chats of a legacy /sync body into the device
//   node device.js sync DIR URL [--bytes]    one sync with URL/chats (--bytes: count the bodies)
//   node device.js add DIR CHAT MESSAGE_JSON append a message to a chat (local only)
//   node device.js has DIR CHAT MESSAGE_ID   is the message in the device's copy of the chat
//   node device.js poll URL SECONDS DIR...   each device syncs again and again (one process)
'use strict';
const fs = require('fs');
const PouchDB = require('pouchdb');
const { Response } = require('node-fetch'); // the fetch PouchDB uses in Node

const [cmd, ...rest] = process.argv.slice(2);
const now = () => Number(process.hrtime.bigint()) / 1e6;

function open(dir) {
  return new PouchDB(dir);
}

// The remote database, already reached once (the server's database created if new), so
// a timed sync counts the sync only, not the connection's set-up.
// bytes: with `sync DIR URL --bytes`, the HTTP bodies each way are counted: PouchDB's own
// fetch, each answer read whole and handed on as a new Response (only for the small
// steady-state syncs)
const bytes = { out: 0, in: 0 };
async function countingFetch(url, opts = {}) {
  if (opts.body) {
    bytes.out += typeof opts.body === 'string' ? Buffer.byteLength(opts.body) : opts.body.length || 0;
  }
  const res = await PouchDB.fetch(url, opts);
  const body = Buffer.from(await res.arrayBuffer());
  bytes.in += body.length;
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}

async function remote(url, count = false) {
  const db = new PouchDB(`${url}/chats`, count ? { fetch: countingFetch } : {});
  await db.info();
  return db;
}

async function syncOnce(local, rdb) {
  const r = await PouchDB.sync(local, rdb);
  return { pushed: r.push.docs_written, pulled: r.pull.docs_written };
}

async function main() {
  if (cmd === 'load') {
    const [dir, body] = rest;
    const chats = JSON.parse(fs.readFileSync(body, 'utf8')).chats;
    const db = open(dir);
    const t = now();
    for (let i = 0; i < chats.length; i += 100) {
      const docs = chats.slice(i, i + 100).map((c) => ({ ...c, _id: c.id }));
      const res = await db.bulkDocs(docs);
      const bad = res.find((x) => x.error);
      if (bad) throw new Error(`bulkDocs: ${JSON.stringify(bad)}`);
    }
    const ms = now() - t;
    const info = await db.info();
    await db.close();
    return { ms, docs: info.doc_count };
  }
  if (cmd === 'sync') {
    const [dir, url, flag] = rest;
    const db = open(dir);
    await db.info();
    const rdb = await remote(url, flag === '--bytes');
    bytes.out = bytes.in = 0;
    const t = now();
    const r = await syncOnce(db, rdb);
    const ms = now() - t;
    const info = await db.info();
    await db.close();
    return { ms, ...r, docs: info.doc_count, ...(flag === '--bytes' ? { bytesOut: bytes.out, bytesIn: bytes.in } : {}) };
  }
  if (cmd === 'add') {
    const [dir, chat, msg] = rest;
    const db = open(dir);
    const doc = await db.get(chat);
    doc.messages.push(JSON.parse(msg));
    doc.lastModified = new Date().toISOString();
    await db.put(doc);
    await db.close();
    return { ok: true };
  }
  if (cmd === 'has') {
    const [dir, chat, id] = rest;
    const db = open(dir);
    const doc = await db.get(chat);
    await db.close();
    return { has: doc.messages.some((m) => m.id === id), messages: doc.messages.length };
  }
  if (cmd === 'poll') {
    const [url, seconds, ...dirs] = rest;
    const dbs = dirs.map(open);
    const rdbs = await Promise.all(dbs.map(async (db) => { await db.info(); return remote(url); }));
    const end = now() + Number(seconds) * 1000;
    const lat = [];
    let pulled = 0;
    const t0 = now();
    await Promise.all(dbs.map(async (db, i) => {
      while (now() < end) {
        const t = now();
        const r = await syncOnce(db, rdbs[i]);
        lat.push(now() - t);
        pulled += r.pulled + r.pushed;
      }
    }));
    const elapsed = now() - t0;
    await Promise.all(dbs.map((db) => db.close()));
    lat.sort((a, b) => a - b);
    const pct = (p) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))];
    return { syncs: lat.length, elapsed_ms: elapsed, syncs_per_s: lat.length / (elapsed / 1000),
      p50_ms: pct(50), p99_ms: pct(99), moved: pulled };
  }
  throw new Error(`device.js: unknown command ${cmd}`);
}

main().then((r) => { console.log(JSON.stringify(r)); }, (e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
