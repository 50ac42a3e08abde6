/*
 * The web client's first sync in headless Chromium, for bench/run.py:
 *   node bench/browser_first_sync.mjs URL [RUNS]
 * URL is a polysyncd that already holds the history. Each run is a fresh
 * device (new browser context, empty IndexedDB) timing db.sync() in the page
 * (tests/browser/harness.mjs); one JSON line per run.
 */
import { launch, newDevice, timedFirstSync } from '../tests/browser/harness.mjs';

const [url, runs = '1'] = process.argv.slice(2);
const server = { url };
const browser = await launch();
try {
  for (let i = 0; i < Number(runs); i++) {
    const d = await newDevice(browser, server, { store: `bench-${i}` });
    const r = await timedFirstSync(d);
    const bytes = await d.page.evaluate(async () => (await navigator.storage.estimate()).usage);
    console.log(JSON.stringify({ run: i + 1, ms: r.ms, longestTaskMs: r.longest, longTasks: r.longTasks,
      progressEvents: r.progress, chats: r.chats, storageBytes: bytes }));
    await d.ctx.close();
  }
} finally {
  await browser.close();
}
