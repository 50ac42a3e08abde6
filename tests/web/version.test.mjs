/*
 * The web client's VERSION (sent as `client: "polysync-web/<VERSION>"` in
 * v2 requests) is the project's version, the one CMakeLists.txt gives the
 * C programs: a release cannot bump one and forget the other.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { VERSION } from '../../clients/web/polysync.js';

test('the web client VERSION is the project version', () => {
  const cmake = readFileSync(new URL('../../CMakeLists.txt', import.meta.url), 'utf8');
  const m = /project\(polysync VERSION ([0-9.]+)/.exec(cmake);
  assert.ok(m, 'CMakeLists.txt names the project version');
  assert.equal(VERSION, m[1]);
});
