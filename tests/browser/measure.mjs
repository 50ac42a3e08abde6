/*
 * First sync of a fresh browser device in Chromium, for docs/performance.md:
 *   node tests/browser/measure.mjs CHATS MESSAGES [RUNS] [PAGE_LIMIT]
 * seeds a new polysyncd with CHATS x MESSAGES (200-byte contents) through
 * /v2/sync, then times db.sync() in a fresh browser context and records the
 * longest main-thread task (PerformanceObserver 'longtask', tasks >= 50 ms).
 * Not part of make check (a benchmark, not a test).
 */
import { Server, launch, newDevice, seed, timedFirstSync } from './harness.mjs';

const [chats = 500, messages = 20, runs = 3, pageLimit = 100] = process.argv.slice(2).map(Number);
const server = await new Server().start();
const t0 = Date.now();
await seed(server, chats, messages, { batch: 100 });
console.log(`seeded ${chats} x ${messages} in ${Date.now() - t0} ms`);
const browser = await launch();
try {
  for (let i = 0; i < runs; i++) {
    const d = await newDevice(browser, server, { store: `m${i}`, options: { pageLimit } });
    const r = await timedFirstSync(d);
    const bytes = await d.page.evaluate(async () => (await navigator.storage.estimate()).usage);
    console.log(JSON.stringify({ chats, messages, pageLimit, run: i + 1, ms: Math.round(r.ms), longestTaskMs: Math.round(r.longest),
      longTasks: r.longTasks, progressEvents: r.progress, listed: r.chats, storageBytes: bytes }));
    await d.ctx.close();
  }
} finally {
  await browser.close();
  await server.stop();
}
