/** Types of polyglot-adapter.js: Polyglot's backgroundSync.ts entry points on polysync. */
import type { Chat, Store, StoreOptions } from './polysync.js';

/** Polyglot's SyncResult (src/types/sync.ts). */
export interface SyncResult {
  success: boolean;
  syncedCount: number;
  deletedCount: number;
  changed: boolean;
  error?: string;
}

/** The app's own conversation store, read before and written after each sync. */
export interface ConversationSource {
  listConversations(): Promise<Array<Partial<Chat> & { id: string; messages?: Chat['messages'] }>>;
  listDeletions?(): Promise<Array<{ id?: string; resourceId?: string }>>;
  apply(changed: Chat[], deletedIds: string[]): Promise<void>;
}

export function configureSync(options: StoreOptions & { source?: ConversationSource | null }): void;
export function getStore(): Promise<Store>;
export function initializeSync(): Promise<void>;
export function syncWithServer(): Promise<SyncResult>;
export function flushOutboundMutations(): Promise<void>;
