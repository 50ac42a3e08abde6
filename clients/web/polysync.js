/*
 * polysync web client: chats kept in IndexedDB and synced with polysyncd
 * over /v2 (docs/protocol.md). A plain ES module with no dependency and no
 * build step; types in polysync.d.ts; guide in docs/web.md.
 *
 *   const db = await openStore({ server, token, name });
 *   const id = await db.createChat({ title: 'Trip' });
 *   await db.sync();  db.live(true);
 *
 * How it stays correct:
 * - every local write is one v2 change, joined into the local chat with the
 *   server's merge rules (merge.js) and appended to a pending log in the same
 *   IndexedDB transaction (durability 'strict') before its promise resolves;
 * - a sync pushes pending changes in batches and pulls pages until `more` is
 *   false; a change leaves the log only once the server accepted it, so no
 *   error loses one;
 * - what the server sends wins over what this device had synced (it is the
 *   merged state), but never over a change still pending here: pending
 *   changes are re-stamped above the server's clock, as they will be when
 *   pushed, so they win locally exactly as they will on the server;
 * - one IndexedDB database per origin and store name, shared by all tabs;
 *   one tab syncs at a time (Web Locks, else a lease in IndexedDB), a sync
 *   asked while another tab's was starting reuses its result, and the
 *   others hear of changes over a BroadcastChannel.
 */
import { applyChange, emptyChat, isLive, toChat, toChange, timeMs } from './merge.js';

const DB_VERSION = 1;
/** This client's version, sent as `client: "polysync-web/<VERSION>"` in v2 requests. */
export const VERSION = '0.1.0';
const CLIENT_NAME = `polysync-web/${VERSION}`;
const SERVER_DEVICE = '\uffffserver'; /* sorts after every real device id */

/* ---- typed errors ---- */

/** Base class of every error a sync rejects with; `code` is the server's or the client's. */
export class PolysyncError extends Error {
  constructor(message, { code = 'error', status = 0, retryAfter = 0, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = this.constructor.name;
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}
/** The server could not be reached (offline, DNS, refused, CORS). Pending changes are kept. */
export class NetworkError extends PolysyncError {}
/** 401/403: no token, or one the server refuses. */
export class AuthError extends PolysyncError {}
/** 400/413/415: the server refused the request as invalid. */
export class InvalidError extends PolysyncError {}
/** 5xx or 429 after every retry. */
export class ServerError extends PolysyncError {}

/* ---- small IndexedDB helpers ---- */

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new DOMException('transaction aborted', 'AbortError'));
  });
}

function openDatabase(name) {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(`polysync:${name}`, DB_VERSION);
    r.onupgradeneeded = () => {
      const db = r.result;
      db.createObjectStore('chats', { keyPath: 'id' });     // merge.js states
      db.createObjectStore('summaries', { keyPath: 'id' }); // what listChats shows
      db.createObjectStore('pending', { autoIncrement: true }); // {chatId, change}
      db.createObjectStore('meta');                          // deviceId, clock, cursor, ...
    };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.onblocked = () => reject(new Error('polysync: the store is being upgraded in another tab'));
  });
}

function summaryOf(state) {
  const chat = toChat(state);
  if (!chat) return { id: state.id, live: false };
  const times = [chat.updatedAt, chat.lastModified, chat.createdAt].map(timeMs).filter((t) => !Number.isNaN(t));
  const updated = times.length ? Math.max(...times) : 0;
  return {
    id: state.id, live: true,
    title: typeof chat.title === 'string' ? chat.title : '',
    isArchived: chat.isArchived === true,
    updatedAt: new Date(updated).toISOString(),
    messageCount: chat.messages.length,
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/* Lets the page paint and handle input between chunks of a large sync. */
const yieldToPage = () =>
  globalThis.scheduler?.yield ? globalThis.scheduler.yield() : new Promise((r) => setTimeout(r, 0));

function newId() {
  return globalThis.crypto?.randomUUID ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

async function gzip(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/* ---- the store ---- */

class Store extends EventTarget {
  constructor(db, opts, meta) {
    super();
    this._db = db;
    this._opts = opts;
    this._deviceId = meta.deviceId;
    this._name = opts.name;
    this._closed = false;
    this._live = false;
    this._stampSeq = 0;
    this._channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(`polysync:${opts.name}`) : null;
    if (this._channel) {
      this._channel.onmessage = (e) => {
        const msg = e.data || {};
        if (msg.type === 'change') this._emit('change', { chatIds: msg.chatIds, source: 'tab' });
        if (msg.type === 'wrote' && this._live && this._leader) this._scheduleSync(this._opts.debounceMs);
      };
    }
    this._leader = false; /* holds the live channel for every tab of this store */
    this._onOnline = () => this._live && this._leader && this._scheduleSync(0);
    this._onVisible = () =>
      this._live && this._leader && document.visibilityState === 'visible' && this._scheduleSync(0);
  }

  /** This device's id (made on first use, kept in the store). */
  get deviceId() { return this._deviceId; }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  _check() { if (this._closed) throw new PolysyncError('the store is closed', { code: 'closed' }); }

  async _token() {
    const t = this._opts.token;
    return typeof t === 'function' ? await t() : t;
  }

  /* One local write: a v2 change joined into the chat and logged, in one
   * strict transaction. Returns after it is on disk. */
  async _write(chatId, make, { mustExist = true } = {}) {
    this._check();
    const tx = this._db.transaction(['chats', 'summaries', 'pending', 'meta'], 'readwrite', { durability: 'strict' });
    const chats = tx.objectStore('chats');
    const [state0, clock] = await Promise.all([req(chats.get(chatId)), req(tx.objectStore('meta').get('clock'))]);
    let state = state0;
    if (mustExist && (!state || !isLive(state))) {
      tx.abort();
      await done(tx).catch(() => {});
      throw new InvalidError(`no chat ${chatId}`, { code: 'not_found', status: 404 });
    }
    state = state || emptyChat(chatId);
    const at = new Date().toISOString();
    const change = { chatId, clock: (clock || 0) + 1, at, ...make(at) };
    applyChange(state, change, this._deviceId);
    chats.put(state);
    tx.objectStore('summaries').put(summaryOf(state));
    tx.objectStore('pending').add({ chatId, change });
    tx.objectStore('meta').put(change.clock, 'clock');
    await done(tx);
    this._changed([chatId], 'local');
    // live: the tab holding the live channel syncs for all (no sync storm)
    if (this._live && (this._leader || !this._channel)) this._scheduleSync(this._opts.debounceMs);
    else if (this._channel) this._channel.postMessage({ type: 'wrote' });
    return state;
  }

  _changed(chatIds, source) {
    if (!chatIds.length) return;
    this._emit('change', { chatIds, source });
    if (this._channel) this._channel.postMessage({ type: 'change', chatIds });
  }

  /** Creates a chat; resolves to its id. */
  async createChat({ title = '', id = newId(), ...rest } = {}) {
    await this._write(id, (at) => ({ fields: { ...rest, title, createdAt: at, updatedAt: at } }), { mustExist: false });
    return id;
  }

  /** Adds a message; resolves to its id. */
  async addMessage(chatId, { role = 'user', content = '', id = newId(), ...rest } = {}) {
    await this._write(chatId, (at) => ({
      fields: { updatedAt: at },
      messages: [{ ...rest, id, role, content, timestamp: rest.timestamp || at }],
    }));
    return id;
  }

  async renameChat(chatId, title) {
    await this._write(chatId, (at) => ({ fields: { title, updatedAt: at } }));
  }

  async archiveChat(chatId, archived = true) {
    await this._write(chatId, (at) => ({ fields: { isArchived: !!archived, updatedAt: at } }));
  }

  /** Sets any scalar fields of a chat (model, provider, your own keys). */
  async updateChat(chatId, fields) {
    await this._write(chatId, (at) => ({ fields: { ...fields, updatedAt: at } }));
  }

  async editMessage(chatId, messageId, content) {
    const chat = await this.getChat(chatId);
    const msg = chat && chat.messages.find((m) => m.id === messageId);
    if (!msg) throw new InvalidError(`no message ${messageId} in chat ${chatId}`, { code: 'not_found', status: 404 });
    await this._write(chatId, (at) => ({ fields: { updatedAt: at }, messages: [{ ...msg, content, editedAt: at }] }));
  }

  async deleteMessage(chatId, messageId) {
    await this._write(chatId, (at) => ({ fields: { updatedAt: at }, deleteMessages: [messageId] }));
  }

  async deleteChat(chatId) {
    await this._write(chatId, () => ({ deleteChat: true }));
  }

  /** Live chats, newest first: [{id, title, isArchived, updatedAt, messageCount}]. */
  async listChats() {
    this._check();
    const tx = this._db.transaction('summaries', 'readonly');
    const all = await req(tx.objectStore('summaries').getAll());
    return all.filter((s) => s.live)
      .map(({ live, ...s }) => s)
      .sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : a.updatedAt > b.updatedAt ? -1 : 0));
  }

  /** The chat in the seed's JSON shape, or null when it does not exist or is deleted. */
  async getChat(chatId) {
    this._check();
    const tx = this._db.transaction('chats', 'readonly');
    const state = await req(tx.objectStore('chats').get(chatId));
    return state ? toChat(state) : null;
  }

  /** How many local changes are waiting to be pushed. */
  async pendingCount() {
    this._check();
    return req(this._db.transaction('pending', 'readonly').objectStore('pending').count());
  }

  /* ---- sync ---- */

  /**
   * Pushes pending changes and pulls what other devices changed. Resolves
   * to {sent, received, deleted}; rejects with a NetworkError, AuthError,
   * InvalidError or ServerError, and then every pending change is kept.
   */
  async sync() {
    this._check();
    const asked = Date.now();
    return this._withSyncLock(async () => {
      // Another tab ran a sync that started after this one was asked and
      // nothing is pending since: its result is this one's.
      const [last, pending] = await Promise.all([this._meta('lastSync'), this.pendingCount()]);
      if (last && last.started >= asked && pending === 0) return { ...last.result, shared: true };
      const started = Date.now();
      this._setStatus('syncing');
      try {
        const result = await this._syncRounds();
        await this._putMeta('lastSync', { started, result });
        this._setStatus('idle', result);
        return result;
      } catch (e) {
        this._setStatus('error', undefined, e);
        throw e;
      }
    });
  }

  _setStatus(state, result, error) {
    this.status = { state, at: new Date().toISOString(), result, error };
    this._emit('status', this.status);
  }

  async _meta(key) {
    return req(this._db.transaction('meta', 'readonly').objectStore('meta').get(key));
  }

  async _putMeta(key, value) {
    const tx = this._db.transaction('meta', 'readwrite');
    tx.objectStore('meta').put(value, key);
    await done(tx);
  }

  async _withSyncLock(fn) {
    const lockName = `polysync:${this._name}:sync`;
    if (globalThis.navigator?.locks?.request) return navigator.locks.request(lockName, fn);
    return this._withLease(fn);
  }

  /* Without Web Locks: a lease record in IndexedDB, taken in a transaction
   * (so two tabs cannot both take it) and renewed while the sync runs. */
  async _withLease(fn) {
    const me = newId();
    const LEASE_MS = 15000;
    for (;;) {
      const tx = this._db.transaction('meta', 'readwrite');
      const store = tx.objectStore('meta');
      const lease = await req(store.get('syncLease'));
      const free = !lease || lease.until < Date.now();
      if (free) store.put({ owner: me, until: Date.now() + LEASE_MS }, 'syncLease');
      await done(tx);
      if (free) break;
      await sleep(50 + Math.random() * 100);
    }
    const renew = setInterval(
      () => this._putMeta('syncLease', { owner: me, until: Date.now() + LEASE_MS }).catch(() => {}), LEASE_MS / 3);
    try {
      return await fn();
    } finally {
      clearInterval(renew);
      await this._putMeta('syncLease', null).catch(() => {});
    }
  }

  async _syncRounds() {
    const o = this._opts;
    let sent = 0, received = 0, deleted = 0, pages = 0;
    let resyncing = false;
    for (;;) {
      const tx = this._db.transaction(['pending', 'meta'], 'readonly');
      const pstore = tx.objectStore('pending');
      const [keys, values, cursor] = await Promise.all([
        req(pstore.getAllKeys(null, o.batchSize)), req(pstore.getAll(null, o.batchSize)),
        req(tx.objectStore('meta').get('cursor')),
      ]);
      let changes = values.map((v) => v.change);
      if (resyncing === 'snapshot') changes = (await this._fullResyncChanges()).concat(changes);
      // the cursor sent is the one the last answer gave: it is this device's
      // acknowledgement (docs/protocol.md, "Devices")
      const body = { deviceId: this._deviceId, client: CLIENT_NAME, cursor: cursor ?? null, limit: o.pageLimit };
      if (changes.length) body.changes = changes;
      let answer;
      try {
        answer = await this._post('/v2/sync', body);
      } catch (e) {
        if (e.status === 410 && !resyncing) {
          // Start over from no cursor. A device the server expired (silent
          // longer than the tombstone retention) may have missed deletions
          // whose tombstones are gone: it keeps only its pending changes and
          // pulls everything again, re-sending nothing it only received.
          // Any other 410 (e.g. a server restored from a backup) re-sends
          // every local chat, to fill in what the server lost.
          if (await this._deviceExpired()) {
            await this._forgetSynced();
            resyncing = 'expired';
          } else {
            await this._putMeta('cursor', null);
            resyncing = 'snapshot';
          }
          continue;
        }
        throw e;
      }
      resyncing = false;
      const r = await this._applyAnswer(answer, keys);
      sent += answer.accepted ?? changes.length;
      received += r.received;
      deleted += r.deleted;
      pages++;
      this._emit('progress', { pages, received, sent, more: !!answer.more });
      const left = await this.pendingCount();
      if (!answer.more && left === 0) break;
    }
    return { sent, received, deleted };
  }

  /* Whether the server lists this device as expired (GET /v2/devices).
   * Asked once, without retries: no answer means "not known to be
   * expired", and the resync re-sends the local chats as before. */
  async _deviceExpired() {
    const o = this._opts;
    try {
      const token = await this._token();
      const res = await o.fetch(`${o.server}/v2/devices`, token ? { headers: { Authorization: `Bearer ${token}` } } : {});
      if (!res.ok) return false;
      const doc = await res.json();
      const me = Array.isArray(doc?.devices) ? doc.devices.find((d) => d && d.id === this._deviceId) : null;
      return me?.expired === true;
    } catch {
      return false;
    }
  }

  /* The expired device's resync: in one transaction, every local chat with
   * no pending change is deleted (the pull brings back what still lives on
   * the server), pending changes stay as they are, and the cursor goes. */
  async _forgetSynced() {
    const tx = this._db.transaction(['chats', 'summaries', 'pending', 'meta'], 'readwrite', { durability: 'strict' });
    const [pending, ids] = await Promise.all([
      req(tx.objectStore('pending').getAll()), req(tx.objectStore('chats').getAllKeys()),
    ]);
    const keep = new Set(pending.map((p) => p.chatId));
    const gone = ids.filter((id) => !keep.has(id));
    for (const id of gone) {
      tx.objectStore('chats').delete(id);
      tx.objectStore('summaries').delete(id);
    }
    tx.objectStore('meta').put(null, 'cursor');
    await done(tx);
    this._changed(gone, 'sync');
  }

  /* For a resync after 410: every local live chat as one change at clock 1,
   * the lowest a change with a clock can have. It fills in what the server
   * lacks (a chat or message it never got) and loses to anything newer. */
  async _fullResyncChanges() {
    const all = await req(this._db.transaction('chats', 'readonly').objectStore('chats').getAll());
    return all.filter(isLive).map((s) => toChange(s, 1));
  }

  /*
   * Merges one answer in, in chunks (one transaction each, yielding to the
   * page between them), then drops the accepted pending changes and
   * re-stamps the rest above the server's clock.
   */
  async _applyAnswer(answer, ackedKeys) {
    const S = Math.max(1, answer.serverClock || 0);
    const entries = answer.chats || [];
    const CHUNK = this._opts.chunkSize;
    let received = 0, deleted = 0;
    const changedIds = [];
    for (let i = 0; i < entries.length; i += CHUNK) {
      const part = entries.slice(i, i + CHUNK);
      const tx = this._db.transaction(['chats', 'summaries'], 'readwrite');
      const chats = tx.objectStore('chats');
      const states = await Promise.all(part.map((e) => req(chats.get(e.id))));
      part.forEach((e, k) => {
        const state = states[k] || emptyChat(e.id);
        const change = this._serverChange(e, S);
        applyChange(state, change, SERVER_DEVICE);
        chats.put(state);
        tx.objectStore('summaries').put(summaryOf(state));
        if (e.deleted) deleted++; else received++;
        changedIds.push(e.id);
      });
      await done(tx);
      if (i + CHUNK < entries.length) await yieldToPage();
    }
    // Accepted changes leave the log; the cursor moves; the device clock
    // rises to the server's; what is still pending is re-stamped above it.
    const tx = this._db.transaction(['chats', 'summaries', 'pending', 'meta'], 'readwrite', { durability: 'strict' });
    const pstore = tx.objectStore('pending');
    for (const k of ackedKeys) pstore.delete(k);
    const meta = tx.objectStore('meta');
    let clock = Math.max((await req(meta.get('clock'))) || 0, S);
    const [keys, rest] = await Promise.all([req(pstore.getAllKeys()), req(pstore.getAll())]);
    const acked = new Set(ackedKeys);
    const chats = tx.objectStore('chats');
    for (let k = 0; k < keys.length; k++) {
      if (acked.has(keys[k])) continue;
      const item = rest[k];
      if (item.change.clock > S) continue;
      item.change.clock = ++clock;
      pstore.put(item, keys[k]);
      const state = (await req(chats.get(item.chatId))) || emptyChat(item.chatId);
      applyChange(state, item.change, this._deviceId);
      chats.put(state);
      tx.objectStore('summaries').put(summaryOf(state));
      changedIds.push(item.chatId);
    }
    meta.put(clock, 'clock');
    if (answer.cursor) meta.put(answer.cursor, 'cursor');
    await done(tx);
    this._changed([...new Set(changedIds)], 'sync');
    return { received, deleted };
  }

  /* A server answer entry as a change stamped with the server's clock: it
   * wins over everything this device had synced, and loses to changes
   * made here after it (their clocks are above the server's). */
  _serverChange(e, S) {
    const at = Math.max(Date.now(), this._stampSeq + 1);
    this._stampSeq = at;
    if (e.deleted) return { clock: S, at, deleteChat: true };
    const fields = { ...(e.fields || {}) };
    for (const name of ['createdAt', 'updatedAt', 'lastModified']) if (e[name] !== undefined) fields[name] = e[name];
    return { clock: S, at, fields, messages: e.messages || [], deleteMessages: e.deletedMessages || [] };
  }

  /* One POST with retries: network errors, 429 and 5xx are retried with
   * exponential backoff, full jitter and Retry-After; others are thrown. */
  async _post(path, body) {
    const o = this._opts;
    const text = JSON.stringify(body);
    let payload = text;
    const headers = { 'Content-Type': 'application/json' };
    if (o.gzip && typeof CompressionStream === 'function' && text.length > 1024) {
      payload = await gzip(text);
      headers['Content-Encoding'] = 'gzip';
    }
    for (let attempt = 0; ; attempt++) {
      const token = await this._token();
      if (token) headers.Authorization = `Bearer ${token}`;
      let err;
      try {
        const res = await o.fetch(o.server + path, { method: 'POST', headers, body: payload });
        if (res.ok) return await res.json();
        err = await errorFrom(res);
      } catch (e) {
        err = e instanceof PolysyncError ? e : new NetworkError(`cannot reach ${o.server}: ${e.message}`, { code: 'network', cause: e });
      }
      const retryable = err instanceof NetworkError || err.status === 429 || err.status >= 500;
      if (!retryable || attempt >= o.maxRetries || this._closed) throw err;
      const backoff = Math.random() * Math.min(o.maxBackoffMs, o.retryBaseMs * 2 ** attempt);
      await sleep(Math.max(backoff, err.retryAfter * 1000));
    }
  }

  /* ---- live ---- */

  /**
   * live(true): sync after local writes (debounced), whenever the server's
   * live channel says something changed, after reconnecting, and when the
   * page comes back online or visible. live(false) stops all of it.
   */
  live(on = true) {
    this._check();
    if (on === this._live) return;
    this._live = on;
    if (on) {
      globalThis.addEventListener?.('online', this._onOnline);
      globalThis.document?.addEventListener('visibilitychange', this._onVisible);
      this._startEvents();
      this._scheduleSync(0);
    } else {
      globalThis.removeEventListener?.('online', this._onOnline);
      globalThis.document?.removeEventListener('visibilitychange', this._onVisible);
      this._stopEvents();
      clearTimeout(this._syncTimer);
    }
  }

  get isLive() { return this._live; }

  _scheduleSync(delay) {
    clearTimeout(this._syncTimer);
    this._syncTimer = setTimeout(() => {
      if (!this._live || this._closed) return;
      this.sync().catch((e) => this._emit('error', { error: e }));
    }, delay);
  }

  /* The live channel: one tab per store holds it (the lock "…:events"), the
   * others wait for the lock and hear of changes over the BroadcastChannel.
   * /v2/events is read with fetch streaming so the token travels in the
   * Authorization header, never in the URL. */
  _startEvents() {
    const abort = new AbortController();
    this._eventsAbort = abort;
    const run = () => this._eventsLoop(abort.signal);
    if (globalThis.navigator?.locks?.request) {
      navigator.locks.request(`polysync:${this._name}:events`, { signal: abort.signal }, run).catch(() => {});
    } else {
      run();
    }
  }

  _stopEvents() {
    this._eventsAbort?.abort();
    this._eventsAbort = null;
    this._emit('connection', { state: 'closed' });
  }

  async _eventsLoop(signal) {
    this._leader = true;
    try {
      await this._readEvents(signal);
    } finally {
      this._leader = false;
    }
  }

  async _readEvents(signal) {
    const o = this._opts;
    let failures = 0;
    while (!signal.aborted && !this._closed) {
      let connectedAt = 0;
      try {
        const token = await this._token();
        const res = await o.fetch(`${o.server}/v2/events?deviceId=${encodeURIComponent(this._deviceId)}`, {
          headers: token ? { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' } : { Accept: 'text/event-stream' },
          signal, cache: 'no-store',
        });
        if (!res.ok || !res.body) throw await errorFrom(res);
        connectedAt = Date.now();
        this._emit('connection', { state: 'open' });
        this._scheduleSync(0); // what changed while not connected
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done: end } = await reader.read();
          if (end) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            if (/^event: *changed$/m.test(block)) this._scheduleSync(o.eventDebounceMs);
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof AuthError) this._emit('error', { error: e });
      }
      if (signal.aborted || this._closed) return;
      this._emit('connection', { state: 'reconnecting' });
      // a stream that stayed up a while resets the backoff
      failures = connectedAt && Date.now() - connectedAt > 30000 ? 0 : failures + 1;
      const wait = Math.random() * Math.min(o.maxBackoffMs, o.retryBaseMs * 2 ** Math.min(failures, 10));
      await sleep(Math.max(o.retryBaseMs, wait));
    }
  }

  /** Stops live sync and closes the database and the channel. */
  close() {
    if (this._closed) return;
    this.live(false);
    this._closed = true;
    this._channel?.close();
    this._db.close();
  }
}

async function errorFrom(res) {
  let body = {};
  try { body = await res.json(); } catch { /* not JSON: keep the status */ }
  const message = body.error || `HTTP ${res.status}`;
  const retryAfter = Number(res.headers.get('Retry-After')) || 0;
  const info = { code: body.code || `http_${res.status}`, status: res.status, retryAfter };
  if (res.status === 401 || res.status === 403) return new AuthError(message, info);
  if (res.status === 429 || res.status >= 500) return new ServerError(message, info);
  return new InvalidError(message, info);
}

/**
 * Opens (or creates) the store `name` of this origin. Options:
 * server (base URL, default this page's origin), token (string or
 * function returning one), name (default 'default'), and tuning knobs
 * documented in docs/web.md.
 */
export async function openStore(options = {}) {
  const opts = {
    server: globalThis.location?.origin || '',
    token: undefined,
    name: 'default',
    fetch: (...a) => globalThis.fetch(...a),
    batchSize: 500,      // changes per push
    pageLimit: 100,      // chats per pulled page (a ~1.5 MB answer parses in well under 50 ms)
    chunkSize: 25,       // chats merged per transaction before yielding to the page
    maxRetries: 5,
    retryBaseMs: 500,
    maxBackoffMs: 30000,
    debounceMs: 300,     // live: wait after a local write before syncing
    eventDebounceMs: 50, // live: wait after a server event before syncing
    gzip: true,
    ...options,
  };
  opts.server = String(opts.server).replace(/\/+$/, '');
  const db = await openDatabase(opts.name);
  // the device id and clock are made once, in one transaction, so two tabs
  // opening a new store at once agree on them
  const tx = db.transaction('meta', 'readwrite', { durability: 'strict' });
  const meta = tx.objectStore('meta');
  let deviceId = await req(meta.get('deviceId'));
  if (!deviceId) {
    deviceId = opts.deviceId || `web-${newId()}`;
    meta.put(deviceId, 'deviceId');
    meta.put(0, 'clock');
  }
  await done(tx);
  db.onversionchange = () => db.close();
  return new Store(db, opts, { deviceId });
}

export { applyChange, isLive, toChat } from './merge.js';
