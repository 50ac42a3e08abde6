#!/usr/bin/env node
// The server polysyncd replaces, rebuilt from ../../../shared/seed/sync-protocol.md
// (Polyglot's sync server) for the benchmark: Node's http module, chats in a Map,
// last uploader wins whole chats, `missing` = chats the client did not send.
//
//   node server.js [--port N] [--mode memory|file] [--file PATH]
//
// --mode memory (default): chats live in a Map only.
// --mode file: as Polyglot's server, every request that writes rewrites the
//   whole store as one JSON file (fs.writeFileSync, no fsync), loaded at start.
//
// The first stdout line is "reference (MODE) listening on http://127.0.0.1:PORT".
// Deliberately not optimised beyond what the seed document shows: it is the
// baseline the benchmark measures polysyncd against, not a strawman either
// (compact JSON, Content-Length, keep-alive on, as Express would do).
'use strict';
const http = require('http');
const fs = require('fs');

const args = process.argv.slice(2);
function flag(name, dflt) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}
const port = Number(flag('--port', process.env.CHAT_SYNC_PORT || 4001));
const mode = flag('--mode', 'memory');
const file = flag('--file', 'chatStore.json');
if (mode !== 'memory' && mode !== 'file') {
  console.error(`reference: unknown --mode ${mode}`);
  process.exit(2);
}

// ---- storage (seed: chatsById, addOrUpdateChats, getAllChats) ----
const chatsById = new Map();
let lastSync = null;
const started = Date.now();

if (mode === 'file' && fs.existsSync(file)) {
  for (const chat of JSON.parse(fs.readFileSync(file, 'utf8'))) chatsById.set(chat.id, chat);
}

function persist() {
  if (mode === 'file') fs.writeFileSync(file, JSON.stringify(getAllChats()));
}

function getAllChats() {
  return Array.from(chatsById.values());
}

function addOrUpdateChats(chats) {
  for (const incomingChat of chats) {
    // "Always use incoming chat": no timestamp comparison, no field merging
    chatsById.set(incomingChat.id, incomingChat);
  }
}

// ---- HTTP ----
function send(res, status, value) {
  const body = value === undefined ? '' : JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Access-Control-Allow-Origin': '*',
  });
  res.end(body);
}

function readJson(req, cb) {
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch (e) {
      return cb(new Error('invalid JSON'));
    }
    cb(null, body);
  });
}

const routes = {
  'POST /sync': (body, res) => {
    const { chats } = body;
    if (!Array.isArray(chats)) return send(res, 400, { error: 'chats must be array' });
    addOrUpdateChats(chats);
    const clientIds = new Set(chats.map((c) => c.id));
    const missing = getAllChats().filter((c) => !clientIds.has(c.id));
    lastSync = new Date().toISOString();
    persist();
    send(res, 200, { missing });
  },
  'POST /pushChats': (body, res) => {
    if (!Array.isArray(body.chats)) return send(res, 400, { error: 'chats must be array' });
    addOrUpdateChats(body.chats);
    persist();
    send(res, 200, { ok: true });
  },
  'GET /fetchChats': (_body, res) => send(res, 200, getAllChats()),
  'POST /deleteChat': (body, res) => {
    const deleted = chatsById.delete(body.chatId);
    persist();
    send(res, 200, { ok: true, deleted });
  },
  'POST /deleteChats': (body, res) => {
    let deletedCount = 0;
    for (const id of body.chatIds || []) deletedCount += chatsById.delete(id) ? 1 : 0;
    persist();
    send(res, 200, { ok: true, deletedCount });
  },
  'GET /health': (_body, res) =>
    send(res, 200, {
      status: 'healthy',
      chatsCount: chatsById.size,
      lastSync,
      uptime: (Date.now() - started) / 1000,
    }),
};

const server = http.createServer((req, res) => {
  if (req.method === 'OPTIONS') {
    res.writeHead(204, {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
      'Access-Control-Allow-Headers': 'Content-Type',
    });
    return res.end();
  }
  const route = routes[`${req.method} ${req.url.split('?')[0]}`];
  if (!route) return send(res, 404, { error: 'not found' });
  if (req.method === 'GET') return route(null, res);
  readJson(req, (err, body) => {
    if (err) return send(res, 400, { error: err.message });
    try {
      route(body || {}, res);
    } catch (e) {
      console.error('reference:', e);
      send(res, 500, { error: 'server storage error' });
    }
  });
});
server.keepAliveTimeout = 65000;
server.requestTimeout = 0; // a 63 MB sync under load may take longer than Node's 300 s default
server.listen(port, '127.0.0.1', () => {
  console.log(`reference (${mode}) listening on http://127.0.0.1:${server.address().port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
