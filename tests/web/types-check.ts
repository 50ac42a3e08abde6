// Compiled by `tsc --noEmit` (tests/web/tsconfig.json) in make check: uses
// every export of polysync.d.ts the way docs/web.md shows, so a type that
// drifts from the documented API fails the build of this file.
import {
  openStore, PolysyncError, NetworkError, AuthError, InvalidError, ServerError,
  type Store, type Chat, type ChatSummary, type SyncResult,
} from '../../clients/web/polysync.js';
import {
  configureSync, getStore, initializeSync, syncWithServer, flushOutboundMutations,
} from '../../clients/web/polyglot-adapter.js';

export async function example(): Promise<void> {
  const db: Store = await openStore({ server: 'https://sync.example', token: () => 'jwt', name: 'laptop' });
  const id: string = await db.createChat({ title: 'Trip' });
  const mid: string = await db.addMessage(id, { role: 'user', content: 'Hi' });
  await db.renameChat(id, 'Rome');
  await db.archiveChat(id, true);
  await db.editMessage(id, mid, 'Hello');
  await db.deleteMessage(id, mid);
  await db.updateChat(id, { model: 'gpt-4o' });
  await db.deleteChat(id);
  const list: ChatSummary[] = await db.listChats();
  const chat: Chat | null = await db.getChat(list[0]?.id ?? id);
  if (chat) chat.messages.forEach((m) => m.content.toUpperCase());
  const pending: number = await db.pendingCount();
  try {
    const r: SyncResult = await db.sync();
    console.log(r.sent + r.received + r.deleted + pending, r.shared === true);
  } catch (e) {
    if (e instanceof AuthError) console.log('sign in again', e.status);
    else if (e instanceof NetworkError || e instanceof ServerError) console.log('later', e.retryAfter);
    else if (e instanceof InvalidError) console.log(e.code);
    else if (e instanceof PolysyncError) console.log(e.message);
  }
  db.live(true);
  db.addEventListener('change', (e) => console.log(e.detail.chatIds.length, e.detail.source));
  db.addEventListener('progress', (e) => console.log(e.detail.pages, e.detail.more));
  db.addEventListener('status', (e) => console.log(e.detail.state));
  const live: boolean = db.isLive;
  console.log(live, db.deviceId);
  db.close();

  const appChats: Chat[] = [{ id: 'c', title: 't', messages: [] }];
  configureSync({
    server: 'http://localhost:4001', token: 'jwt',
    source: {
      listConversations: async () => appChats,
      listDeletions: async () => [{ resourceId: 'gone' }],
      apply: async (changed: Chat[], deletedIds: string[]) => { console.log(changed.length, deletedIds.length); },
    },
  });
  await initializeSync();
  const s = await syncWithServer();
  console.log(s.success, s.syncedCount, s.deletedCount, s.changed, s.error);
  await flushOutboundMutations();
  (await getStore()).live(true);
}
