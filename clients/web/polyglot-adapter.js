/*
 * The Polyglot app's sync entry points, backed by polysync.js and /v2.
 *
 * Polyglot's src/services/backgroundSync.ts exports initializeSync(),
 * syncWithServer() and flushOutboundMutations(); this module exports the
 * same names with the same result shapes, so the app can switch with one
 * import (docs/web.md, "The Polyglot adapter"). What changes underneath:
 * - only what changed since the last sync goes over the wire (message-level
 *   v2 changes), not every conversation on every sync;
 * - deletions are v2 changes with a clock, kept in a durable log until the
 *   server accepts them, so a deletion is never lost to a failed request;
 * - tokens travel in the Authorization header.
 *
 * The app keeps its own IndexedDB: configureSync() is given three functions
 * (`source`) to read its conversations and deletions and to write back what
 * the server sent; the adapter turns the differences into changes in the
 * polysync store (polysync:<name>) and syncs that.
 */
import { openStore } from './polysync.js';

let config = { server: 'http://localhost:4001', name: 'polyglot', token: undefined, source: null };
let storePromise = null;

/**
 * Sets the server, token and the app's data source before the first sync.
 * source: { listConversations(): Promise<Chat[]>, listDeletions(): Promise<{id}[]>,
 *           apply(changed: Chat[], deletedIds: string[]): Promise<void> }
 */
export function configureSync(options) {
  config = { ...config, ...options };
  if (storePromise) {
    storePromise.then((s) => s.close(), () => {});
    storePromise = null;
  }
}

/** The polysync store behind the adapter (for live(), events, direct writes). */
export function getStore() {
  if (!storePromise) {
    const { source, ...opts } = config;
    storePromise = openStore(opts);
    storePromise.catch(() => { storePromise = null; });
  }
  return storePromise;
}

/** Like Polyglot's: prepares the device identity and local state once; rejects on failure. */
export async function initializeSync() {
  await getStore();
}

function toMs(v) {
  if (v instanceof Date) return v.getTime();
  const t = typeof v === 'number' ? v : Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

const SCALARS = ['title', 'provider', 'currentModel', 'model', 'isArchived'];

/* The app's conversations and deletions, written into the store as changes:
 * only fields and messages that differ from the store's copy. */
async function importFromApp(db) {
  const src = config.source;
  if (!src) return;
  const [chats, deletions] = await Promise.all([src.listConversations(), src.listDeletions ? src.listDeletions() : []]);
  for (const c of chats || []) {
    if (!c || typeof c.id !== 'string') continue;
    const have = await db.getChat(c.id);
    const fields = {};
    for (const k of SCALARS) if (c[k] !== undefined && (!have || have[k] !== c[k])) fields[k] = c[k];
    if (!have) {
      await db.createChat({ ...fields, id: c.id, title: c.title ?? '' });
    } else if (Object.keys(fields).length) {
      await db.updateChat(c.id, fields);
    }
    const known = new Map(((have && have.messages) || []).map((m) => [m.id, m]));
    for (const m of c.messages || []) {
      if (!m || typeof m.id !== 'string' || m.isPrivate) continue;
      const old = known.get(m.id);
      if (old && old.content === m.content && old.role === m.role) continue;
      const ts = toMs(m.timestamp);
      await db.addMessage(c.id, { ...m, timestamp: ts === undefined ? undefined : new Date(ts).toISOString() });
    }
  }
  for (const d of deletions || []) {
    const id = d && (d.resourceId || d.id);
    if (id && (await db.getChat(id))) await db.deleteChat(id);
  }
}

/**
 * Like Polyglot's: one sync pass. Resolves to
 * { success, syncedCount, deletedCount, changed, error? } and never rejects.
 */
export async function syncWithServer() {
  try {
    const db = await getStore();
    await importFromApp(db);
    const touched = new Set();
    const onChange = (e) => { if (e.detail.source === 'sync') e.detail.chatIds.forEach((id) => touched.add(id)); };
    db.addEventListener('change', onChange);
    let result;
    try {
      result = await db.sync();
    } finally {
      db.removeEventListener('change', onChange);
    }
    if (config.source && touched.size) {
      const changed = [], deleted = [];
      for (const id of touched) {
        const chat = await db.getChat(id);
        if (chat) changed.push(chat); else deleted.push(id);
      }
      await config.source.apply(changed, deleted);
    }
    return {
      success: true,
      syncedCount: result.received,
      deletedCount: result.deleted,
      changed: result.received > 0 || result.deleted > 0,
    };
  } catch (error) {
    return {
      success: false, syncedCount: 0, deletedCount: 0, changed: false,
      error: error instanceof Error ? error.message : 'Unknown exception',
    };
  }
}

/** Like Polyglot's: pushes local changes now (e.g. on pagehide); never rejects. */
export async function flushOutboundMutations() {
  try {
    const db = await getStore();
    await importFromApp(db);
    if ((await db.pendingCount()) > 0) await db.sync();
  } catch (err) {
    console.warn('[sync] outbound flush delayed:', err);
  }
}
