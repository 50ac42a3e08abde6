/*
 * The shared merge cases (tests/cases/merge/) through a real polysyncd:
 * every order of a case's changes, each change sent by its device as one
 * /v2/sync, must leave the chat the case expects (read back with
 * /fetchChats). With merge.test.mjs this checks the web client's merge and
 * the server's against the same hand-worked answers.
 * Needs POLYSYNCD (default build/bin/polysyncd).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const casesDir = join(here, '..', 'cases', 'merge');
const POLYSYNCD = process.env.POLYSYNCD || join(here, '..', '..', 'build', 'bin', 'polysyncd');
const NOT_FIELDS = new Set(['id', 'messages', 'createdAt', 'updatedAt', 'lastModified', 'updatedAtLamport']);

function* permutations(items) {
  if (items.length <= 1) { yield items; return; }
  for (let i = 0; i < items.length; i++) {
    const rest = items.slice(0, i).concat(items.slice(i + 1));
    for (const p of permutations(rest)) yield [items[i], ...p];
  }
}

function* orders(changes) {
  if (changes.length <= 6) { yield* permutations(changes); return; }
  let s = 1234;
  for (let k = 0; k < 50; k++) {
    const a = changes.slice();
    for (let i = a.length - 1; i > 0; i--) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const j = s % (i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    yield a;
  }
}

let proc, base, dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'polysync-cases-'));
  proc = spawn(POLYSYNCD, ['--port', '0', '--db', `sqlite:${join(dir, 's.db')}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  base = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[^\s]+) /.exec(out);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (c) => reject(new Error(`polysyncd exited ${c}`)));
  });
});
after(async () => {
  if (proc) {
    const code = await new Promise((r) => { proc.removeAllListeners('exit'); proc.on('exit', r); proc.kill('SIGTERM'); });
    assert.equal(code, 0);
  }
  rmSync(dir, { recursive: true, force: true });
});

async function post(path, body) {
  const res = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  return json;
}

const files = readdirSync(casesDir).filter((f) => f.endsWith('.json')).sort();
let run = 0;
for (const file of files) {
  const kase = JSON.parse(readFileSync(join(casesDir, file), 'utf8'));
  test(`server: ${file}`, async () => {
    for (const order of orders(kase.changes)) {
      const chatId = `${kase.chatId}-${++run}`;
      for (const { device, ...change } of order)
        await post('/v2/sync', { deviceId: device, cursor: null, limit: 1, changes: [{ ...change, chatId }] });
      const where = `order ${order.map((c) => kase.changes.indexOf(c)).join(',')}`;
      const all = await (await fetch(`${base}/fetchChats`)).json();
      const chat = all.find((c) => c.id === chatId);
      assert.equal(!!chat, kase.expect.live, `${where}: live`);
      if (!chat) continue;
      const fields = Object.fromEntries(Object.entries(chat).filter(([k]) => !NOT_FIELDS.has(k)));
      if (kase.expect.fields) assert.deepEqual(fields, kase.expect.fields, `${where}: fields`);
      if (kase.expect.messages) assert.deepEqual(chat.messages.map((m) => m.id), kase.expect.messages, `${where}: messages`);
    }
  });
}
