/**
 * Types of the polysync web client (polysync.js). Checked by `tsc --noEmit`
 * in make check (tests/web/types-check.ts uses every export).
 */

export interface StoreOptions {
  /** Base URL of polysyncd, e.g. "https://sync.example"; default: this page's origin. */
  server?: string;
  /** Bearer token (JWT), or a function returning one (called before every request). */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /** Store name: all tabs of one origin with the same name share one store. Default "default". */
  name?: string;
  /** Device id for a new store (default: a random "web-…" id, kept in the store). */
  deviceId?: string;
  /** fetch to use (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /** Changes per push (default 500). */
  batchSize?: number;
  /** Chats per pulled page (default 100). */
  pageLimit?: number;
  /** Chats merged per IndexedDB transaction before yielding to the page (default 25). */
  chunkSize?: number;
  /** Retries of a failed request (network, 429, 5xx) before sync() rejects (default 5). */
  maxRetries?: number;
  /** First backoff step in ms (default 500); doubles each retry, with full jitter. */
  retryBaseMs?: number;
  /** Longest backoff in ms (default 30000). */
  maxBackoffMs?: number;
  /** live: delay after a local write before syncing, ms (default 300). */
  debounceMs?: number;
  /** live: delay after a server event before syncing, ms (default 50). */
  eventDebounceMs?: number;
  /** gzip request bodies over 1 KiB where CompressionStream exists (default true). */
  gzip?: boolean;
}

export interface Message {
  id: string;
  role: string;
  content: string;
  timestamp?: string | number;
  [key: string]: unknown;
}

/** A chat in the seed's JSON shape. */
export interface Chat {
  id: string;
  title?: string;
  messages: Message[];
  createdAt?: string | number;
  updatedAt?: string | number;
  lastModified?: string | number;
  model?: string;
  provider?: string;
  currentModel?: string;
  isArchived?: boolean;
  [key: string]: unknown;
}

export interface ChatSummary {
  id: string;
  title: string;
  isArchived: boolean;
  /** ISO 8601 */
  updatedAt: string;
  messageCount: number;
}

export interface SyncResult {
  /** changes the server accepted */
  sent: number;
  /** chats received (added or changed) */
  received: number;
  /** chats the server said are deleted */
  deleted: number;
  /** true when another tab's sync, started after this call, is the answer */
  shared?: boolean;
}

export interface ChangeDetail {
  chatIds: string[];
  /** 'local' (a write in this tab), 'sync' (this tab's sync), 'tab' (another tab) */
  source: 'local' | 'sync' | 'tab';
}

export interface ProgressDetail {
  pages: number;
  received: number;
  sent: number;
  more: boolean;
}

export interface StatusDetail {
  state: 'syncing' | 'idle' | 'error';
  at: string;
  result?: SyncResult;
  error?: PolysyncError;
}

export interface ConnectionDetail {
  state: 'open' | 'reconnecting' | 'closed';
}

export interface StoreEventMap {
  change: CustomEvent<ChangeDetail>;
  progress: CustomEvent<ProgressDetail>;
  status: CustomEvent<StatusDetail>;
  connection: CustomEvent<ConnectionDetail>;
  error: CustomEvent<{ error: unknown }>;
}

export interface Store extends EventTarget {
  readonly deviceId: string;
  readonly isLive: boolean;
  status?: StatusDetail;
  createChat(chat?: { title?: string; id?: string; [field: string]: unknown }): Promise<string>;
  addMessage(chatId: string, message?: { role?: string; content?: string; id?: string; [key: string]: unknown }): Promise<string>;
  renameChat(chatId: string, title: string): Promise<void>;
  archiveChat(chatId: string, archived?: boolean): Promise<void>;
  updateChat(chatId: string, fields: Record<string, unknown>): Promise<void>;
  editMessage(chatId: string, messageId: string, content: string): Promise<void>;
  deleteMessage(chatId: string, messageId: string): Promise<void>;
  deleteChat(chatId: string): Promise<void>;
  listChats(): Promise<ChatSummary[]>;
  getChat(chatId: string): Promise<Chat | null>;
  pendingCount(): Promise<number>;
  sync(): Promise<SyncResult>;
  live(on?: boolean): void;
  close(): void;
  addEventListener<K extends keyof StoreEventMap>(type: K, listener: (ev: StoreEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof StoreEventMap>(type: K, listener: (ev: StoreEventMap[K]) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** This client's version; v2 requests name the client `polysync-web/<VERSION>`. */
export const VERSION: string;

export function openStore(options?: StoreOptions): Promise<Store>;

export class PolysyncError extends Error {
  /** the server's error code (docs/protocol.md) or 'network', 'not_found', 'closed' */
  code: string;
  /** HTTP status, 0 when there was no answer */
  status: number;
  /** Retry-After seconds, 0 when none */
  retryAfter: number;
}
export class NetworkError extends PolysyncError {}
export class AuthError extends PolysyncError {}
export class InvalidError extends PolysyncError {}
export class ServerError extends PolysyncError {}

/** A v2 change (docs/protocol.md). */
export interface Change {
  chatId?: string;
  clock?: number;
  at?: string | number;
  fields?: Record<string, unknown>;
  messages?: Array<Message | { id: string; deleted: true }>;
  deleteMessages?: string[];
  deleteChat?: boolean;
}

/** A chat's merge state (merge.js); opaque outside the module. */
export interface ChatState {
  id: string;
  [part: string]: unknown;
}

export function applyChange(state: ChatState, change: Change, device: string, now?: number): ChatState;
export function isLive(state: ChatState): boolean;
export function toChat(state: ChatState): Chat | null;
