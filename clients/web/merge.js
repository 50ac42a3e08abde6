/*
 * The chat merge of the polysync web client: the rules of docs/merge.md,
 * the same the server applies, as a pure join over JSON-friendly states.
 *
 * A chat state is a set of registers, each holding a value and the stamp of
 * the write that set it:
 *   f   {name: [value, stamp]}           scalar and unknown fields
 *   m   {id: [message|null, stamp, ts, n]}  messages; null = tombstone; ts = display
 *                                      time; n = the order this store first saw the id
 *   n   how many message ids this state has seen (the next n)
 *   t   stamp | null                     newest write of any kind but a deletion
 *   d   stamp | null                     newest deletion of the chat
 *   tm  {createdAt|updatedAt|lastModified: [text, ms]}  earliest / latest seen
 * A stamp is [lamport, device, ts]. Every part keeps the larger of two
 * writes under one total order, so applying the same changes in any order,
 * any number of times, gives the same state (commutative, associative,
 * idempotent). tests/web/merge.test.mjs checks that on tests/cases/merge/.
 */

const TIME_FIELDS = ['createdAt', 'updatedAt', 'lastModified'];

/** Milliseconds since the epoch of an ISO 8601 string or epoch-ms number; NaN if neither. */
export function timeMs(v) {
  if (typeof v === 'number') return Number.isFinite(v) ? v : NaN;
  if (typeof v === 'string') return Date.parse(v);
  return NaN;
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/*
 * Which write is newer (docs/merge.md): by Lamport counter, then as the
 * Polyglot client orders writes with one, by (device, time). Every write
 * this client makes or receives carries a counter: its own changes carry
 * its clock, and what the server sends is stamped with the answer's
 * serverClock. Writes without one (seed clients) are placed by the server
 * on arrival (docs/merge.md, "Placing a time-only write"), which needs the
 * server's history; here they only order below counted ones, by (time,
 * device), and the shared cases carry clocks throughout.
 */
export function stampCmp(a, b) {
  const c = cmp(a[0], b[0]);
  if (c) return c;
  const byDevice = cmp(a[1], b[1]);
  const byTime = cmp(a[2], b[2]);
  if (a[0] > 0) return byDevice || byTime;
  return byTime || byDevice;
}

/* Equal stamps: a tombstone is oldest, then the compact JSON text decides,
 * so there is always exactly one winner. */
function valueCmp(a, b) {
  if (a === null || b === null) return (a !== null) - (b !== null);
  return cmp(JSON.stringify(a), JSON.stringify(b));
}

function writeCmp(sa, va, sb, vb) {
  return stampCmp(sa, sb) || valueCmp(va, vb);
}

/** A new, empty chat state. */
export function emptyChat(id) {
  return { id, f: {}, m: {}, t: null, d: null, tm: {}, n: 0 };
}

function joinStamp(cur, s) {
  return cur === null || stampCmp(s, cur) > 0 ? s : cur;
}

function joinTime(state, name, value) {
  const ms = timeMs(value);
  if (Number.isNaN(ms)) return;
  const cur = state.tm[name];
  const wantMin = name === 'createdAt';
  if (!cur || (wantMin ? ms < cur[1] : ms > cur[1]) ||
      (ms === cur[1] && valueCmp(value, cur[0]) > 0)) {
    state.tm[name] = [value, ms];
  }
}

function putField(state, name, value, stamp) {
  const cur = state.f[name];
  if (!cur || writeCmp(stamp, value, cur[1], cur[0]) > 0) state.f[name] = [value, stamp];
}

function putMessage(state, id, value, stamp) {
  const cur = state.m[id];
  if (cur && writeCmp(stamp, value, cur[1], cur[0]) <= 0) return;
  let ts = value ? timeMs(value.timestamp) : NaN;
  if (Number.isNaN(ts)) ts = cur ? cur[2] : stamp[2];
  state.m[id] = [value, stamp, ts, cur ? cur[3] : (state.n = (state.n || 0) + 1)];
}

/**
 * Joins one v2 change (docs/protocol.md) made by `device` into `state`, in
 * place. `now` stands for the time of a change that carries no `at`.
 */
export function applyChange(state, change, device, now = Date.now()) {
  let ts = change.at === undefined ? now : timeMs(change.at);
  if (Number.isNaN(ts)) ts = now;
  const stamp = [change.clock > 0 ? change.clock : 0, device || '', ts];
  if (change.deleteChat === true) state.d = joinStamp(state.d, stamp);
  else state.t = joinStamp(state.t, stamp);
  for (const [name, value] of Object.entries(change.fields || {})) {
    if (TIME_FIELDS.includes(name)) joinTime(state, name, value);
    else putField(state, name, value, stamp);
  }
  for (const msg of change.messages || []) {
    if (!msg || typeof msg.id !== 'string' || msg.isPrivate === true) continue;
    if (msg.deleted === true) putMessage(state, msg.id, null, stamp);
    else putMessage(state, msg.id, msg, stamp);
  }
  for (const id of change.deleteMessages || []) putMessage(state, id, null, stamp);
  return state;
}

/* The newest write to the chat other than a deletion of it. */
function newestWrite(state) {
  let best = state.t;
  for (const k in state.f) if (!best || stampCmp(state.f[k][1], best) > 0) best = state.f[k][1];
  for (const k in state.m) if (!best || stampCmp(state.m[k][1], best) > 0) best = state.m[k][1];
  return best;
}

/** Live unless a deletion is newer than every write to the chat. */
export function isLive(state) {
  const newest = newestWrite(state);
  if (!state.d) return newest !== null;
  return newest !== null && stampCmp(newest, state.d) > 0;
}

/*
 * Live message ids in display order: by the message's own time, then in the
 * order this store first saw them — as the server orders them (docs/merge.md,
 * "Message order"), never by id. Messages arrive in the server's order on a
 * pull and in the order they were written here, so ties come out the same.
 */
export function messageOrder(state) {
  const ids = Object.keys(state.m).filter((id) => state.m[id][0] !== null);
  ids.sort((a, b) => cmp(state.m[a][2], state.m[b][2]) || cmp(state.m[a][3] || 0, state.m[b][3] || 0) || cmp(a, b));
  return ids;
}

/** Ids of deleted messages (tombstones). */
export function deletedMessages(state) {
  return Object.keys(state.m).filter((id) => state.m[id][0] === null);
}

/** The scalar fields as plain values. */
export function fieldValues(state) {
  const out = {};
  for (const k of Object.keys(state.f)) out[k] = state.f[k][0];
  return out;
}

/** The chat in the seed's JSON shape ({id, title, messages, ...}), or null when deleted. */
export function toChat(state) {
  if (!isLive(state)) return null;
  const chat = { id: state.id, ...fieldValues(state) };
  for (const name of TIME_FIELDS) if (state.tm[name]) chat[name] = state.tm[name][0];
  chat.messages = messageOrder(state).map((id) => state.m[id][0]);
  return chat;
}

/** The state written back as one change (all live fields and messages), for a full resync. */
export function toChange(state, clock) {
  const fields = fieldValues(state);
  for (const name of TIME_FIELDS) if (state.tm[name]) fields[name] = state.tm[name][0];
  const change = { chatId: state.id, clock, fields };
  const messages = messageOrder(state).map((id) => state.m[id][0]);
  if (messages.length) change.messages = messages;
  return change;
}
