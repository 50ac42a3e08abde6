/*
 * The web client in a real browser (Debian's chromium via puppeteer-core),
 * against a real polysyncd. Each browser context is one device; the oracle
 * is the product's rules (DESIGN.md "Merge", docs/protocol.md), e.g. a
 * concurrent rename and message both survive on every device.
 * Run: node --test tests/browser/ (POLYSYNCD, POLYSYNC, CHROMIUM, PS_WEB_SHOT from the environment)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Server, authServer, launch, newDevice, until, cli, seed, timedFirstSync, tempDir } from './harness.mjs';

let browser, server;
const servers = [];
before(async () => { browser = await launch(); });
after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
});

/* Every test gets its own server (one implicit user each), so tests do not see each other's chats. */
async function fresh(make = () => new Server()) {
  const s = await make().start();
  servers.push(s);
  return s;
}

test('a chat made on one device arrives on another', { timeout: 90000 }, async () => {
  server = await fresh();
  const a = await newDevice(browser, server, { store: 's1' });
  const b = await newDevice(browser, server, { store: 's1' });
  const id = await a.run(async (db) => {
    const id = await db.createChat({ title: 'Trip' });
    await db.addMessage(id, { role: 'user', content: 'Hi' });
    await db.addMessage(id, { role: 'assistant', content: 'Hello!' });
    return id;
  });
  const sent = await a.sync();
  assert.equal(sent.sent, 3);
  assert.equal(await a.run((db) => db.pendingCount()), 0);
  const got = await b.sync();
  assert.equal(got.received, 1);
  const chat = await b.chat(id);
  assert.equal(chat.title, 'Trip');
  assert.deepEqual(chat.messages.map((m) => [m.role, m.content]), [['user', 'Hi'], ['assistant', 'Hello!']]);
  assert.deepEqual(await b.chat(id), await a.chat(id));
  const list = await b.list();
  assert.deepEqual(list.map((c) => [c.id, c.title, c.messageCount]), [[id, 'Trip', 2]]);
  await a.ctx.close(); await b.ctx.close();
});

test('messages with one timestamp keep the order they were written, on every device', { timeout: 90000 }, async () => {
  server = await fresh();
  const a = await newDevice(browser, server, { store: 'order' });
  const b = await newDevice(browser, server, { store: 'order' });
  const ids = ['m10', 'm2', 'm1', 'b', 'a'];
  const id = await a.run(async (db, ids) => {
    const id = await db.createChat({ title: 'ties' });
    for (const mid of ids) await db.addMessage(id, { id: mid, content: mid, timestamp: '2026-01-01T10:00:00.000Z' });
    return id;
  }, ids);
  assert.deepEqual((await a.chat(id)).messages.map((m) => m.id), ids);
  await a.sync(); await b.sync();
  assert.deepEqual((await b.chat(id)).messages.map((m) => m.id), ids);
  const c = await newDevice(browser, server, { store: 'order' }); // a first sync: whole chats
  await c.sync();
  assert.deepEqual((await c.chat(id)).messages.map((m) => m.id), ids);
  await a.ctx.close(); await b.ctx.close(); await c.ctx.close();
});

test('a concurrent rename and message on two devices both survive, on both', { timeout: 90000 }, async () => {
  server = await fresh();
  const a = await newDevice(browser, server, { store: 's2' });
  const b = await newDevice(browser, server, { store: 's2' });
  const id = await a.run(async (db) => { const id = await db.createChat({ title: 'Old Title' }); await db.addMessage(id, { content: 'first' }); return id; });
  await a.sync(); await b.sync();
  await a.run((db, id) => db.renameChat(id, 'New Title'), id);
  await b.run((db, id) => db.addMessage(id, { role: 'assistant', content: 'from B' }), id);
  await a.sync(); await b.sync(); await a.sync();
  const ca = await a.chat(id), cb = await b.chat(id);
  assert.deepEqual(ca, cb);
  assert.equal(ca.title, 'New Title');
  assert.deepEqual(ca.messages.map((m) => m.content), ['first', 'from B']);
  await a.ctx.close(); await b.ctx.close();
});

test('renames in turn: the newest wins everywhere, also over a device\'s own older write', { timeout: 90000 }, async () => {
  server = await fresh();
  const a = await newDevice(browser, server, { store: 's2b' });
  const b = await newDevice(browser, server, { store: 's2b' });
  const id = await a.run((db) => db.createChat({ title: 'first' }));
  await a.sync(); await b.sync();
  await b.run((db, id) => db.renameChat(id, 'by B'), id);
  await b.sync(); await a.sync();
  assert.equal((await a.chat(id)).title, 'by B');
  await a.run((db, id) => db.renameChat(id, 'by A after seeing B'), id);
  await a.sync(); await b.sync();
  assert.equal((await b.chat(id)).title, 'by A after seeing B');
  assert.deepEqual(await a.chat(id), await b.chat(id));
  await a.ctx.close(); await b.ctx.close();
});

test('a write made while a sync is in flight survives that sync\'s answer and wins', { timeout: 90000 }, async () => {
  server = await fresh();
  const a = await newDevice(browser, server, { store: 's2c' });
  // B's fetch runs a hook after the server answered and before the answer is applied
  const b = await newDevice(browser, server, { store: 's2c', options: {} });
  await b.page.evaluate(async () => {
    window.db.close();
    window.db = await window.ps.openStore({
      name: 's2c', maxRetries: 1, retryBaseMs: 50,
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        const hook = window.hook;
        if (hook && String(url).endsWith('/v2/sync')) { window.hook = null; await hook(); }
        return res;
      },
    });
  });
  const id = await a.run((db) => db.createChat({ title: 'start' }));
  await a.sync(); await b.sync();
  await a.run((db, id) => db.renameChat(id, 'from A'), id);
  await a.sync();
  await b.page.evaluate((id) => { window.hook = () => window.db.renameChat(id, 'from B, during the sync'); }, id);
  await b.sync();
  assert.equal((await b.chat(id)).title, 'from B, during the sync'); // not replaced by the answer
  await b.sync(); await a.sync();
  assert.equal((await a.chat(id)).title, 'from B, during the sync');
  assert.deepEqual(await a.chat(id), await b.chat(id));
  await a.ctx.close(); await b.ctx.close();
});

test('a deletion propagates and stays deleted', { timeout: 90000 }, async () => {
  server = await fresh();
  const a = await newDevice(browser, server, { store: 's3' });
  const b = await newDevice(browser, server, { store: 's3' });
  const [gone, kept] = await a.run(async (db) => [await db.createChat({ title: 'gone' }), await db.createChat({ title: 'kept' })]);
  await a.sync(); await b.sync();
  assert.ok(await b.chat(gone));
  await a.run((db, id) => db.deleteChat(id), gone);
  await a.sync(); await b.sync();
  assert.equal(await b.chat(gone), null);
  // B's stale idea of it, a second sync round and a message deletion change nothing
  await b.sync(); await a.sync(); await b.sync();
  assert.equal(await a.chat(gone), null);
  assert.equal(await b.chat(gone), null);
  assert.deepEqual((await b.list()).map((c) => c.id), [kept]);
  // a deleted message too
  const mid = await a.run((db, id) => db.addMessage(id, { content: 'oops' }), kept);
  await a.sync(); await b.sync();
  await b.run((db, id, mid) => db.deleteMessage(id, mid), kept, mid);
  await b.sync(); await a.sync();
  assert.deepEqual((await a.chat(kept)).messages, []);
  await a.ctx.close(); await b.ctx.close();
});

test('a write while the server is down is kept and arrives later', { timeout: 90000 }, async () => {
  server = await fresh();
  const s = await new Server().start();
  const a = await newDevice(browser, s, { store: 's4' });
  const b = await newDevice(browser, s, { store: 's4' });
  const id = await a.run((db) => db.createChat({ title: 'offline test' }));
  await a.sync(); await b.sync();
  await s.stop();
  await a.run((db, id) => db.addMessage(id, { content: 'written offline' }), id);
  const err = await a.syncError();
  assert.equal(err.name, 'NetworkError');
  assert.equal(await a.run((db) => db.pendingCount()), 1);
  await s.start(); // same port, same store
  assert.equal((await a.sync()).sent, 1);
  await b.sync();
  assert.deepEqual((await b.chat(id)).messages.map((m) => m.content), ['written offline']);
  await a.ctx.close(); await b.ctx.close();
  await s.stop();
});

test('a 410 (the server lost track of the cursor) resyncs by itself and keeps everything', { timeout: 90000 }, async () => {
  const s = await fresh();
  const a = await newDevice(browser, s, { store: 's410' });
  const ids = await a.run(async (db) => {
    const ids = [];
    for (let i = 0; i < 5; i++) { const id = await db.createChat({ title: `chat ${i}` }); ids.push(id); await db.addMessage(id, { content: 'x'.repeat(600) }); }
    return ids;
  });
  await a.sync();
  // a big push goes gzipped (CompressionStream), with the token-free JSON type
  const gz = a.sent.filter((r) => r.path === '/v2/sync' && r.headers['content-encoding'] === 'gzip');
  assert.ok(gz.length >= 1, 'a body over 1 KiB is sent with Content-Encoding: gzip');
  // the server's store is replaced by an empty one (a restore): A's cursor is from beyond it
  await s.stop();
  const { rmSync } = await import('node:fs');
  rmSync(join(s.dir, 'store.db'), { force: true }); rmSync(join(s.dir, 'store.db-wal'), { force: true }); rmSync(join(s.dir, 'store.db-shm'), { force: true });
  await s.start();
  const mid = await a.run((db, id) => db.addMessage(id, { content: 'after the restore' }), ids[0]);
  const r = await a.sync();
  assert.ok(a.sent.length > 0);
  assert.equal(await a.run((db) => db.pendingCount()), 0);
  const b = await newDevice(browser, s, { store: 's410' });
  await b.sync();
  assert.deepEqual((await b.list()).map((c) => c.title).sort(), ['chat 0', 'chat 1', 'chat 2', 'chat 3', 'chat 4']);
  assert.ok((await b.chat(ids[0])).messages.some((m) => m.id === mid));
  assert.deepEqual(await b.chat(ids[0]), await a.chat(ids[0]));
  assert.ok(r.sent >= 6);
  await a.ctx.close(); await b.ctx.close();
});

test('retries: Retry-After is honoured, 5xx and network errors retried, 401 and 400 not', { timeout: 90000 }, async () => {
  server = await fresh();
  const d = await newDevice(browser, server, { store: 'retry' });
  const out = await d.page.evaluate(async () => {
    // a fetch that answers from a script, then passes through to the server
    const script = [];
    const calls = [];
    const fakeFetch = async (url, init) => {
      calls.push(performance.now());
      const next = script.shift();
      if (next === 'network') throw new TypeError('Failed to fetch');
      if (next) return new Response(JSON.stringify({ error: 'x', code: next.code }), { status: next.status, headers: next.headers || {} });
      return fetch(url, init);
    };
    const db = await window.ps.openStore({ name: 'retry2', fetch: fakeFetch, maxRetries: 3, retryBaseMs: 10, maxBackoffMs: 20 });
    const run = async (steps) => {
      await db.createChat({ title: 'r' }); // one more pending change each run
      script.length = 0; script.push(...steps); calls.length = 0;
      const t0 = performance.now();
      let error = null;
      try { await db.sync(); } catch (e) { error = { name: e.name, status: e.status, code: e.code, retryAfter: e.retryAfter }; }
      return { error, calls: calls.length, ms: performance.now() - t0, pending: await db.pendingCount() };
    };
    return {
      retryAfter: await run([{ status: 503, code: 'overloaded', headers: { 'Retry-After': '1' } }]),
      flaky: await run(['network', { status: 500, code: 'storage_error' }, { status: 429, code: 'rate_limited' }]),
      auth: await run([{ status: 401, code: 'invalid_token' }]),
      invalid: await run([{ status: 400, code: 'invalid_payload' }]),
      exhausted: await run(['network', 'network', 'network', 'network']),
    };
  });
  assert.deepEqual([out.retryAfter.error, out.retryAfter.pending], [null, 0]);
  assert.equal(out.retryAfter.calls, 2);
  assert.ok(out.retryAfter.ms >= 1000, `waited ${out.retryAfter.ms} ms for Retry-After: 1`);
  assert.deepEqual([out.flaky.error, out.flaky.calls], [null, 4]);
  assert.deepEqual([out.auth.error.name, out.auth.calls, out.auth.pending], ['AuthError', 1, 1]);
  // a failed sync keeps every pending change: they add up
  assert.deepEqual([out.invalid.error.name, out.invalid.error.code, out.invalid.calls, out.invalid.pending], ['InvalidError', 'invalid_payload', 1, 2]);
  assert.deepEqual([out.exhausted.error.name, out.exhausted.calls, out.exhausted.pending], ['NetworkError', 4, 3]);
  await d.ctx.close();
});

test('a reload keeps chats, pending changes, the device id and the cursor', { timeout: 90000 }, async () => {
  server = await fresh();
  const a = await newDevice(browser, server, { store: 's5' });
  const id = await a.run((db) => db.createChat({ title: 'persisted' }));
  await a.sync();
  const mid = await a.run((db, id) => db.addMessage(id, { content: 'not yet synced' }), id);
  const before = await a.run((db) => db.deviceId);
  await a.reload();
  assert.equal(await a.run((db) => db.deviceId), before);
  const chat = await a.chat(id);
  assert.equal(chat.title, 'persisted');
  assert.deepEqual(chat.messages.map((m) => m.id), [mid]);
  assert.equal(await a.run((db) => db.pendingCount()), 1);
  const r = await a.sync();
  assert.deepEqual([r.sent, r.received], [1, 0]); // the cursor survived: nothing pulled again
  await a.ctx.close();
});

test('live: a change on one device arrives on the other without calling sync', { timeout: 90000 }, async () => {
  server = await fresh();
  const a = await newDevice(browser, server, { store: 's6', options: { debounceMs: 20 } });
  const b = await newDevice(browser, server, { store: 's6', options: { debounceMs: 20 } });
  const id = await a.run((db) => db.createChat({ title: 'live' }));
  await a.sync(); await b.sync();
  await a.run((db) => db.live(true));
  await b.run((db) => db.live(true));
  await until(() => a.requests.includes('/v2/events') && b.requests.includes('/v2/events'), 10000, 'event streams');
  await new Promise((r) => setTimeout(r, 300));
  await b.run((db, id) => db.addMessage(id, { content: 'live message' }), id);
  await until(async () => (await a.chat(id)).messages.length === 1, 10000, 'the live message on A');
  assert.equal((await a.chat(id)).messages[0].content, 'live message');
  assert.ok((await a.run(() => window.changes)).some((c) => c.chatIds.includes(id) && c.source === 'sync'));
  // the token would travel in a header: no token, no query string but the device id
  assert.ok(a.requests.filter((p) => p.startsWith('/v2/events')).length >= 1);
  await a.run((db) => db.live(false)); await b.run((db) => db.live(false));
  await a.ctx.close(); await b.ctx.close();
});

test('live: after the server restarts, the stream reconnects and syncs what it missed', { timeout: 90000 }, async () => {
  const s = await fresh();
  // reconnect backoff of at least 2 s: B's change lands while A is not connected
  const a = await newDevice(browser, s, { store: 'recon', options: { retryBaseMs: 2000, maxBackoffMs: 2500 } });
  const b = await newDevice(browser, s, { store: 'recon' });
  const id = await a.run((db) => db.createChat({ title: 'reconnect' }));
  await a.sync(); await b.sync();
  await a.run((db) => { window.conn = []; db.addEventListener('connection', (e) => window.conn.push(e.detail.state)); db.live(true); });
  await until(async () => (await a.run(() => window.conn)).includes('open'), 10000, 'stream open');
  await a.sync(); // waits for the syncs live(true) and the connection started: none is in flight
  await s.stop();
  await until(async () => (await a.run(() => window.conn)).includes('reconnecting'), 10000, 'stream lost');
  await s.start();
  await b.run((db, id) => db.addMessage(id, { content: 'while A was away' }), id);
  await b.sync();
  await until(async () => (await a.chat(id)).messages.length === 1, 15000, 'the missed message on A');
  const states = await a.run(() => window.conn);
  assert.ok(states.filter((x) => x === 'open').length >= 2, `reconnected: ${states}`);
  await a.run((db) => db.live(false));
  await a.ctx.close(); await b.ctx.close();
});

test('two tabs share one store, hear each other, and sync once', { timeout: 90000 }, async () => {
  server = await fresh();
  const ctx = await browser.createBrowserContext();
  const t1 = await newDevice(browser, server, { context: ctx, store: 's7' });
  const t2 = await newDevice(browser, server, { context: ctx, store: 's7' });
  assert.equal(await t1.run((db) => db.deviceId), await t2.run((db) => db.deviceId));
  const id = await t1.run((db) => db.createChat({ title: 'shared' }));
  await until(async () => (await t2.run(() => window.changes)).some((c) => c.source === 'tab' && c.chatIds.includes(id)), 15000, 'the change event in tab 2');
  assert.equal((await t2.chat(id)).title, 'shared'); // same IndexedDB store
  // both tabs ask for a sync while the sync lock is held: one request goes out
  // held, not only asked for, before the tabs ask: requests from two tabs
  // reach the browser's lock manager in no set order, so a sync asked for
  // right after could be granted first, run, and leave one queued
  await t1.page.evaluate(() => new Promise((held) => {
    window.hold = new Promise((r) => { window.release = r; });
    navigator.locks.request('polysync:s7:sync', () => { held(); return window.hold; });
  }));
  const syncCount = () => t1.requests.concat(t2.requests).filter((p) => p === '/v2/sync').length;
  const before = syncCount();
  const p1 = t1.page.evaluate(() => window.db.sync());
  const p2 = t2.page.evaluate(() => window.db.sync());
  // both sync() calls are queued behind the held lock before it is released
  await until(() => t1.page.evaluate(async () =>
    (await navigator.locks.query()).pending.filter((l) => l.name === 'polysync:s7:sync').length === 2), 20000, 'two queued syncs');
  await t1.page.evaluate(() => window.release());
  const [r1, r2] = await Promise.all([p1, p2]);
  assert.equal(syncCount() - before, 1, 'one /v2/sync for two tabs');
  assert.equal([r1, r2].filter((r) => r.shared).length, 1);
  // live in both tabs: one event stream for the store
  await t1.run((db) => db.live(true)); await t2.run((db) => db.live(true));
  await new Promise((r) => setTimeout(r, 1000));
  const streams = t1.requests.concat(t2.requests).filter((p) => p === '/v2/events');
  assert.equal(streams.length, 1);
  await t1.run((db) => db.live(false)); await t2.run((db) => db.live(false));
  await ctx.close();
});

test('without Web Locks, a lease in IndexedDB still lets one tab sync for both', { timeout: 90000 }, async () => {
  server = await fresh();
  const ctx = await browser.createBrowserContext();
  const tabs = [];
  for (let i = 0; i < 2; i++) {
    const page = await ctx.newPage();
    await page.evaluateOnNewDocument(() => { Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined }); });
    const requests = [];
    page.on('request', (r) => requests.push(new URL(r.url()).pathname));
    await page.goto(`${server.url}/health`);
    await page.evaluate(async () => {
      window.ps = await import('/web/polysync.js');
      window.db = await window.ps.openStore({ name: 'nolocks', maxRetries: 1, retryBaseMs: 50 });
    });
    tabs.push({ page, requests });
  }
  assert.equal(await tabs[0].page.evaluate(() => navigator.locks), undefined);
  await tabs[0].page.evaluate(() => window.db.createChat({ title: 'x' }));
  await tabs[0].page.evaluate(() => window.db.sync());
  // another holder has the lease for 3 s: both tabs ask meanwhile, one request follows
  await tabs[0].page.evaluate(() => new Promise((resolve, reject) => {
    const r = indexedDB.open('polysync:nolocks');
    r.onsuccess = () => {
      const tx = r.result.transaction('meta', 'readwrite');
      tx.objectStore('meta').put({ owner: 'someone', until: Date.now() + 3000 }, 'syncLease');
      tx.oncomplete = () => { r.result.close(); resolve(); };
      tx.onerror = () => reject(tx.error);
    };
  }));
  const count = () => tabs[0].requests.concat(tabs[1].requests).filter((p) => p === '/v2/sync').length;
  const before = count();
  const results = await Promise.all(tabs.map((t) => t.page.evaluate(() => window.db.sync())));
  assert.equal(count() - before, 1);
  assert.equal(results.filter((r) => r.shared).length, 1);
  await ctx.close();
});

test('auth: a valid token syncs, a missing or wrong one is refused, static files need none', { timeout: 90000 }, async () => {
  server = await fresh();
  const s = await authServer().start();
  const token = s.token('alice');
  const ok = await newDevice(browser, s, { store: 'auth', options: { token } });
  await ok.run((db) => db.createChat({ title: 'with token' }));
  assert.equal((await ok.sync()).sent, 1);
  const none = await newDevice(browser, s, { store: 'auth' });
  assert.deepEqual(await none.syncError(), { name: 'AuthError', status: 401, code: 'unauthorized' });
  const bad = await newDevice(browser, s, { store: 'auth', options: { token: token.slice(0, -4) + 'AAAA' } });
  assert.equal((await bad.syncError()).name, 'AuthError');
  const other = await newDevice(browser, s, { store: 'auth', options: { token: s.token('bob') } });
  assert.equal((await other.sync()).received, 0); // alice's chat is not bob's
  // live with auth: the stream carries the token in its Authorization header, never in the URL
  await ok.run((db) => db.live(true));
  const stream = await until(() => ok.sent.find((r) => r.path === '/v2/events'), 10000, 'the event stream');
  assert.equal(stream.headers.authorization, `Bearer ${token}`);
  assert.ok(!stream.url.includes(token.slice(-20)) && !/token/i.test(new URL(stream.url).search), stream.url);
  await until(() => ok.run((db) => db.status?.state === 'idle'), 10000, 'a live sync with the token');
  await ok.run((db) => db.live(false));
  const res = await fetch(`${s.url}/web/polysync.js`); // no token
  assert.equal(res.status, 200);
  assert.match(await res.text(), /export async function openStore/);
  for (const d of [ok, none, bad, other]) await d.ctx.close();
  await s.stop();
});

test('an expired device (410) keeps its pending changes and brings no collected deletion back', { timeout: 90000 }, async () => {
  const s = await fresh();
  const a = await newDevice(browser, s, { store: 'expired' });
  const b = await newDevice(browser, s, { store: 'expired' });
  const theirs = await b.run(async (db) => { const id = await db.createChat({ title: 'made by b, deleted by b' }); await db.addMessage(id, { content: "b's words" }); return id; });
  await b.sync();
  const [mine, kept] = await a.run(async (db) => {
    const mine = await db.createChat({ title: 'made by a, deleted by b' });
    await db.addMessage(mine, { content: "a's words" });
    return [mine, await db.createChat({ title: 'made by a, kept' })];
  });
  await a.sync(); await a.sync(); await b.sync();
  for (const d of [a, b]) assert.deepEqual((await d.list()).map((c) => c.id).sort(), [theirs, mine, kept].sort());
  // a is offline and writes: two pending changes
  const [newMsg, madeOffline] = await a.run(async (db, kept) => {
    const m = await db.addMessage(kept, { content: 'written offline' });
    return [m, await db.createChat({ title: 'made offline' })];
  }, kept);
  assert.equal(await a.run((db) => db.pendingCount()), 2);
  // a is silent past the retention (90 days by default): expired
  const aId = await a.run((db) => db.deviceId);
  await s.age(aId, 91);
  // meanwhile b deletes both chats; b is the only active device, so its
  // acknowledgement collects the tombstones
  await b.run(async (db, ids) => { for (const id of ids) await db.deleteChat(id); }, [theirs, mine]);
  await b.sync(); await b.sync();
  const onServer = () => Object.fromEntries(s.query('SELECT id, live FROM chats').map((r) => [r.id, r.live]));
  assert.ok(!(theirs in onServer()) && !(mine in onServer()), 'the tombstones were collected (precondition)');
  // a syncs: 410, the server lists it as expired, the expiry resync
  await a.sync();
  assert.equal(await a.run((db) => db.pendingCount()), 0);
  const after = onServer();
  assert.equal(after[madeOffline], 1, 'the pending chat reached the server');
  assert.ok(!(theirs in after), 'a chat a only received was not sent back');
  assert.ok(!(mine in after), "a's old synced writes were not sent back");
  assert.deepEqual((await a.list()).map((c) => c.id).sort(), [kept, madeOffline].sort());
  assert.ok((await a.chat(kept)).messages.some((m) => m.id === newMsg && m.content === 'written offline'));
  await b.sync();
  assert.deepEqual((await b.list()).map((c) => c.id).sort(), [kept, madeOffline].sort());
  for (const id of [kept, madeOffline]) assert.deepEqual(await b.chat(id), await a.chat(id));
  // the registry: a is known again, named by its client field
  const version = await a.page.evaluate(() => window.ps.VERSION);
  const devs = (await (await fetch(`${s.url}/v2/devices`)).json()).devices;
  const me = devs.find((d) => d.id === aId);
  assert.equal(me.expired, false);
  assert.equal(me.client, `polysync-web/${version}`);
  await a.ctx.close(); await b.ctx.close();
});

test('the CLI and two browsers converge on one server', { timeout: 90000 }, async () => {
  server = await fresh();
  const dir = tempDir();
  const a = await newDevice(browser, server, { store: 's8' });
  const b = await newDevice(browser, server, { store: 's8' });
  const id = cli(dir, server, 'chat', 'new', '--title', 'from the CLI');
  cli(dir, server, 'msg', 'add', id, '--role', 'user', '--content', 'cli says hi');
  cli(dir, server, 'sync');
  await a.sync();
  assert.equal((await a.chat(id)).title, 'from the CLI');
  await a.run((db, id) => db.addMessage(id, { role: 'assistant', content: 'browser answers' }), id);
  await b.run(async (db) => { await db.sync(); }); // B gets the CLI's chat
  await b.run((db, id) => db.renameChat(id, 'renamed in B'), id);
  await a.sync(); await b.sync(); cli(dir, server, 'sync'); await a.sync(); await b.sync();
  const shown = JSON.parse(cli(dir, server, 'chat', 'show', id, '--json'));
  const ca = await a.chat(id), cb = await b.chat(id);
  assert.deepEqual(ca, cb);
  assert.equal(shown.title, 'renamed in B');
  assert.equal(ca.title, 'renamed in B');
  assert.deepEqual(shown.messages.map((m) => m.content), ca.messages.map((m) => m.content));
  assert.deepEqual(ca.messages.map((m) => m.content), ['cli says hi', 'browser answers']);
  // deletions both ways: the CLI deletes a message, a browser deletes a chat
  const id2 = cli(dir, server, 'chat', 'new', '--title', 'to be deleted by a browser');
  cli(dir, server, 'msg', 'delete', id, ca.messages[1].id);
  cli(dir, server, 'sync');
  await a.sync();
  assert.deepEqual((await a.chat(id)).messages.map((m) => m.content), ['cli says hi']);
  await a.run((db, id2) => db.deleteChat(id2), id2);
  await a.sync(); await b.sync(); cli(dir, server, 'sync');
  const listed = JSON.parse(cli(dir, server, 'chat', 'list', '--json'));
  assert.deepEqual(listed.map((c) => c.id), [id]);
  assert.equal(await b.chat(id2), null);
  assert.deepEqual(await b.chat(id), await a.chat(id));
  assert.deepEqual(JSON.parse(cli(dir, server, 'chat', 'show', id, '--json')).messages.map((m) => m.content), ['cli says hi']);
  await a.ctx.close(); await b.ctx.close();
});

test('a 500-chat x 20-message first sync completes in chunks', { timeout: 90000 }, async () => {
  server = await fresh();
  const s = await new Server().start();
  await seed(s, 500, 20);
  const d = await newDevice(browser, s, { store: 'big' });
  const r = await timedFirstSync(d);
  console.log(`# first sync 500x20: ${r.ms.toFixed(0)} ms, longest task ${r.longest.toFixed(0)} ms (${r.longTasks} long tasks), ${r.progress} progress events`);
  assert.equal(r.chats, 500);
  assert.equal(r.result.received, 500);
  assert.ok(r.progress >= 3, 'progress is reported page by page');
  const one = await d.chat('chat-7');
  assert.equal(one.messages.length, 20);
  assert.ok(r.longest < 1000, `the page froze for ${r.longest} ms`);
  await d.ctx.close();
  await s.stop();
});

test('the demo page renders and works', { timeout: 90000 }, async () => {
  server = await fresh();
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.setViewport({ width: 1100, height: 700 });
  await page.goto(`${server.url}/web/?store=demo-test`);
  await page.waitForSelector('#new-title');
  await page.type('#new-title', 'Weekend in Rome');
  await page.click('#new-chat button');
  await page.waitForSelector('#chats li.active');
  for (const [role, text] of [['user', 'Where should we eat near the Pantheon?'], ['assistant', 'Try Armando al Pantheon — book ahead.']]) {
    await page.select('#role', role);
    await page.type('#content', text);
    await page.click('#compose button');
    await page.waitForFunction((n) => document.querySelectorAll('#messages li').length === n, {}, role === 'user' ? 1 : 2);
  }
  await page.type('#new-title', 'Reading list');
  await page.click('#new-chat button');
  await page.waitForFunction(() => document.querySelectorAll('#chats li').length === 2);
  await page.click('#chats li:nth-child(2)');
  await page.click('#sync');
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('synced'));
  const titles = await page.$$eval('#chats li span:first-child', (els) => els.map((e) => e.textContent));
  assert.deepEqual(titles.sort(), ['Reading list', 'Weekend in Rome']);
  const shot = process.env.PS_WEB_SHOT || join(tempDir(), 'web-demo.png');
  await page.screenshot({ path: shot });
  console.log(`# screenshot: ${shot}`);
  await ctx.close();
});

test('the Polyglot adapter: same names and result shapes, only changes travel, deletions arrive', { timeout: 90000 }, async () => {
  server = await fresh();
  const app = await newDevice(browser, server, { store: 'unused' });
  const other = await newDevice(browser, server, { store: 'other' });
  // a stand-in for Polyglot's own IndexedDB: conversations and deletions in memory
  const first = await app.page.evaluate(async () => {
    const A = await import('/web/polyglot-adapter.js');
    window.A = A;
    window.appDb = {
      chats: [{ id: 'p1', title: 'From Polyglot', provider: 'openai', currentModel: 'gpt-4o', isArchived: false,
                messages: [{ id: 'pm1', role: 'user', content: 'hello', timestamp: new Date('2026-01-01T10:00:00Z') }],
                lastModified: new Date() }],
      deletions: [],
      applied: [],
    };
    A.configureSync({
      server: location.origin, name: 'polyglot-test', retryBaseMs: 50, maxRetries: 1,
      source: {
        listConversations: async () => window.appDb.chats,
        listDeletions: async () => window.appDb.deletions,
        apply: async (changed, deleted) => { window.appDb.applied.push({ changed, deleted }); },
      },
    });
    await A.initializeSync();
    return A.syncWithServer();
  });
  // Polyglot's SyncResult shape (a first sync pulls every live chat whole, the app's own included)
  assert.deepEqual(Object.keys(first).sort(), ['changed', 'deletedCount', 'success', 'syncedCount']);
  assert.equal(first.success, true);
  await other.sync();
  const got = await other.chat('p1');
  assert.deepEqual([got.title, got.currentModel, got.messages.map((m) => m.content)], ['From Polyglot', 'gpt-4o', ['hello']]);
  // the other device renames; the app hears it through apply()
  await other.run((db) => db.renameChat('p1', 'Renamed elsewhere'));
  await other.sync();
  const second = await app.page.evaluate(() => window.A.syncWithServer());
  assert.equal(second.success, true);
  assert.equal(second.changed, true);
  const applied = await app.page.evaluate(() => window.appDb.applied);
  assert.equal(applied.at(-1).changed[0].title, 'Renamed elsewhere');
  // a second pass with nothing new sends nothing but the pull
  const before = app.requests.length;
  await app.page.evaluate(() => { window.appDb.chats[0].title = 'Renamed elsewhere'; return window.A.syncWithServer(); });
  const bodies = app.requests.slice(before).filter((p) => p === '/v2/sync').length;
  assert.equal(bodies, 1);
  assert.equal(await app.page.evaluate(async () => (await window.A.getStore()).pendingCount()), 0);
  // a deletion in the app reaches the other device; failures resolve, never throw
  await app.page.evaluate(async () => { window.appDb.deletions.push({ id: 'p1', resourceId: 'p1' }); await window.A.flushOutboundMutations(); });
  await other.sync();
  assert.equal(await other.chat('p1'), null);
  await server.stop();
  const down = await app.page.evaluate(() => window.A.syncWithServer());
  assert.equal(down.success, false);
  assert.match(down.error, /cannot reach/);
  await app.ctx.close(); await other.ctx.close();
});
