/*
 * Helpers of the browser suite: a polysyncd process on a free port, Debian's
 * chromium through puppeteer-core, and "devices" (one browser context each,
 * so each has its own IndexedDB) with the web client loaded from the server.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

export const POLYSYNCD = process.env.POLYSYNCD || new URL('../../build/bin/polysyncd', import.meta.url).pathname;
export const POLYSYNC = process.env.POLYSYNC || new URL('../../build/bin/polysync', import.meta.url).pathname;
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BANNER = /^polysyncd (\S+) listening on https?:\/\/([^:/\s]+):(\d+) \(store (.*)\)$/m;

export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'polysync-web-'));
}

/** A running polysyncd; stop() ends it, start() again reuses the store and port. */
export class Server {
  constructor({ args = [], dir = tempDir() } = {}) {
    this.args = args;
    this.dir = dir;
    this.port = 0;
    this.stderr = '';
  }

  get url() { return `http://127.0.0.1:${this.port}`; }

  async start() {
    const proc = spawn(POLYSYNCD, ['--port', String(this.port), '--db', `sqlite:${join(this.dir, 'store.db')}`, ...this.args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stderr.on('data', (d) => { this.stderr += d; });
    let out = '';
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`polysyncd did not start\n${this.stderr}`)), 10000);
      proc.stdout.on('data', (d) => {
        out += d;
        const m = BANNER.exec(out);
        if (m) { clearTimeout(timer); this.port = Number(m[3]); resolve(); }
      });
      proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`polysyncd exited ${code}\n${this.stderr}`)); });
    });
    proc.removeAllListeners('exit');
    return this;
  }

  async stop() {
    if (!this.proc) return;
    const proc = this.proc;
    this.proc = null;
    const exited = new Promise((r) => proc.on('exit', (code) => r(code)));
    proc.kill('SIGTERM');
    const code = await exited;
    // a clean stop exits 0; under ASan a leak or error makes it fail
    if (code !== 0) throw new Error(`polysyncd exited ${code}\n${this.stderr}`);
  }

  /** Rows of `sql` on the server's SQLite store (sqlite3 CLI, JSON mode). */
  query(sql) {
    const out = execFileSync('sqlite3', ['-json', join(this.dir, 'store.db'), sql], { encoding: 'utf8' }).trim();
    return out ? JSON.parse(out) : [];
  }

  /** Makes `device` silent for `days` more days: its last-seen time is
   * rewritten in the stopped server's store, then the server restarts
   * (as tests/client/test_client_devices.py does). */
  async age(device, days) {
    await this.stop();
    execFileSync('sqlite3', [join(this.dir, 'store.db'),
      `UPDATE devices SET last_seen_ms = last_seen_ms - ${days * 86400000} WHERE device_id = '${device.replace(/'/g, "''")}'`]);
    await this.start();
  }

  /** A token for `user`, minted by `polysyncd token issue` with the server's secret. */
  token(user) {
    return execFileSync(POLYSYNCD, ['token', 'issue', '--user', user, '--jwt-secret-file', this.secretFile], { encoding: 'utf8' }).trim();
  }
}

/** A server with JWT auth on (HS256 secret file). */
export function authServer() {
  const dir = tempDir();
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, 'a web-suite secret of at least thirty-two bytes!!');
  chmodSync(secretFile, 0o600);
  const s = new Server({ dir, args: ['--jwt-secret-file', secretFile] });
  s.secretFile = secretFile;
  return s;
}

export async function launch() {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run'],
  });
}

/**
 * A device: its own browser context (own IndexedDB), one page on the
 * server's origin with the client module loaded as window.ps and a store
 * opened as window.db. `requests` counts the page's requests by path.
 */
export async function device(browser, server, { context, store = 'test', options = {} } = {}) {
  const ctx = context || (await browser.createBrowserContext());
  const page = await ctx.newPage();
  const requests = [];
  const sent = []; // {path, headers} of every request
  page.on('request', (r) => {
    requests.push(new URL(r.url()).pathname);
    sent.push({ path: new URL(r.url()).pathname, url: r.url(), headers: r.headers() });
  });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(`${server.url}/health`);
  const d = Object.assign({ ctx, page, requests, sent, store, options }, deviceMethods);
  await d.open();
  return d;
}

/* the methods of a device, added to the object device() returns */
const deviceMethods = {
  async open() {
    await this.page.evaluate(async (store, options) => {
      window.ps = await import('/web/polysync.js');
      window.db = await window.ps.openStore({ name: store, retryBaseMs: 50, maxRetries: 1, ...options });
      window.changes = [];
      window.db.addEventListener('change', (e) => window.changes.push(e.detail));
    }, this.store, this.options);
  },
  /** Runs fn(db, ...args) in the page. */
  run(fn, ...args) {
    return this.page.evaluate(`(${fn})(window.db, ...${JSON.stringify(args)})`);
  },
  sync() { return this.run((db) => db.sync()); },
  chat(id) { return this.run((db, id) => db.getChat(id), id); },
  list() { return this.run((db) => db.listChats()); },
  /** Rejection of db.sync() as {name, status, code}, or null when it resolved. */
  syncError() {
    return this.run((db) => db.sync().then(() => null, (e) => ({ name: e.name, status: e.status, code: e.code })));
  },
  async reload() {
    await this.page.reload();
    await this.open();
  },
};
/** Polls fn() until it returns a truthy value or `ms` pass. */
export async function until(fn, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const newDevice = device;

/** The polysync CLI with its own store, against `server`. */
export function cli(dir, server, ...args) {
  return execFileSync(POLYSYNC, ['--store', join(dir, 'cli.db'), '--server', server.url, ...args], { encoding: 'utf8' }).trim();
}

/** Puts chats × messages on the server as device "seeder" through /v2/sync, in batches. */
export async function seed(server, chats, messages, { token, batch = 100, contentBytes = 200 } = {}) {
  const filler = 'lorem ipsum dolor sit amet '.repeat(Math.ceil(contentBytes / 27)).slice(0, contentBytes);
  const base = Date.parse('2026-01-01T00:00:00.000Z');
  let clock = 0;
  for (let c0 = 0; c0 < chats; c0 += batch) {
    const changes = [];
    for (let c = c0; c < Math.min(chats, c0 + batch); c++) {
      const msgs = [];
      for (let m = 0; m < messages; m++) {
        msgs.push({ id: `c${c}-m${m}`, role: m % 2 ? 'assistant' : 'user', content: `${m}: ${filler}`,
          timestamp: new Date(base + c * 1000000 + m * 1000).toISOString() });
      }
      changes.push({ chatId: `chat-${c}`, clock: ++clock, fields: { title: `Chat ${c}`, model: 'gpt-4o' }, messages: msgs });
    }
    const res = await fetch(`${server.url}/v2/sync`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ deviceId: 'seeder', cursor: null, limit: 1, changes }),
    });
    if (!res.ok) throw new Error(`seed: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  }
}

/** First sync of a fresh device, timed, with the longest main-thread task (PerformanceObserver longtask). */
export async function timedFirstSync(d) {
  return d.page.evaluate(async () => {
    let longest = 0, count = 0;
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) { longest = Math.max(longest, e.duration); count++; }
    });
    obs.observe({ type: 'longtask', buffered: false });
    let progress = 0;
    window.db.addEventListener('progress', () => progress++);
    const t0 = performance.now();
    const result = await window.db.sync();
    const ms = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 100)); // let the last entries arrive
    obs.disconnect();
    const chats = (await window.db.listChats()).length;
    return { ms, longest, longTasks: count, result, chats, progress };
  });
}
