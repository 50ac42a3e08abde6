/*
 * The web client's merge (clients/web/merge.js) against the shared,
 * hand-worked cases of tests/cases/merge/: every order of a case's changes
 * (above 6 changes, 200 seeded shuffles) must give the chat the case expects.
 * Run: node --test tests/web/
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  applyChange, emptyChat, isLive, fieldValues, messageOrder, deletedMessages,
} from '../../clients/web/merge.js';

const here = dirname(fileURLToPath(import.meta.url));
const casesDir = join(here, '..', 'cases', 'merge');
const NOW = Date.parse('2026-01-01T00:00:00.000Z');

function* permutations(items) {
  if (items.length <= 1) { yield items; return; }
  for (let i = 0; i < items.length; i++) {
    const rest = items.slice(0, i).concat(items.slice(i + 1));
    for (const p of permutations(rest)) yield [items[i], ...p];
  }
}

/* A small seeded generator (mulberry32), so shuffles are the same every run. */
function shuffles(items, count, seed) {
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [];
  for (let k = 0; k < count; k++) {
    const a = items.slice();
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    out.push(a);
  }
  return out;
}

function orders(changes) {
  return changes.length <= 6 ? permutations(changes) : shuffles(changes, 200, 1234);
}

function run(chatId, order) {
  const state = emptyChat(chatId);
  for (const ch of order) {
    const { device, ...change } = ch;
    applyChange(state, structuredClone(change), device, NOW);
  }
  return state;
}

const files = readdirSync(casesDir).filter((f) => f.endsWith('.json')).sort();

test('there are shared merge cases', () => {
  assert.ok(files.length >= 10, `only ${files.length} cases in ${casesDir}`);
});

for (const file of files) {
  const kase = JSON.parse(readFileSync(join(casesDir, file), 'utf8'));
  test(`${file}: ${kase.description}`, () => {
    let n = 0;
    for (const order of orders(kase.changes)) {
      n++;
      const where = `order ${order.map((c) => kase.changes.indexOf(c)).join(',')}`;
      const state = run(kase.chatId, order);
      assert.equal(isLive(state), kase.expect.live, `${where}: live`);
      if (!kase.expect.live) continue;
      if (kase.expect.fields) assert.deepEqual(fieldValues(state), kase.expect.fields, `${where}: fields`);
      if (kase.expect.messages) assert.deepEqual(messageOrder(state), kase.expect.messages, `${where}: messages`);
      for (const id of kase.expect.deletedMessages || [])
        assert.ok(deletedMessages(state).includes(id), `${where}: ${id} is a tombstone`);
      // idempotent: every change applied a second time changes nothing
      const again = run(kase.chatId, order.concat(order));
      assert.deepEqual(again, state, `${where}: applying everything twice`);
    }
    assert.ok(n >= 1);
  });
}
