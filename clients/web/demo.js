// The demo page at /web/: a chat list and a chat view on polysync.js.
import { openStore } from './polysync.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let db;
let current = null;

function el(tag, props = {}, ...kids) {
  const n = Object.assign(document.createElement(tag), props);
  n.append(...kids);
  return n;
}

function showStatus(text, kind) {
  $('status').textContent = text;
  $('status').className = `status ${kind}`;
}

async function open() {
  db?.close();
  db = await openStore({
    name: params.get('store') || 'demo',
    server: params.get('server') || location.origin,
    token: () => sessionStorage.getItem('polysync-token') || undefined,
  });
  $('device').textContent = db.deviceId;
  db.addEventListener('change', () => render());
  db.addEventListener('status', (e) => {
    const s = e.detail;
    if (s.state === 'syncing') showStatus('syncing…', 'syncing');
    else if (s.state === 'idle') showStatus(`synced ${new Date(s.at).toLocaleTimeString()}`, 'ok');
    else showStatus(`${s.error.name}: ${s.error.message}`, 'error');
  });
  db.addEventListener('progress', (e) => showStatus(`syncing… ${e.detail.received} chats`, 'syncing'));
  db.addEventListener('error', (e) => showStatus(String(e.detail.error.message || e.detail.error), 'error'));
  if ($('live').checked) db.live(true);
  await render();
}

async function render() {
  const chats = await db.listChats();
  $('chats').replaceChildren(...chats.map((c) => {
    const li = el('li', { className: c.id === current ? 'active' : '' },
      el('span', { textContent: c.title || 'Untitled' }), el('span', { className: 'count', textContent: c.messageCount }));
    li.dataset.id = c.id;
    li.onclick = () => { current = c.id; render(); };
    return li;
  }));
  $('empty-list').hidden = chats.length > 0;
  $('pending').textContent = await db.pendingCount();
  const chat = current && (await db.getChat(current));
  $('chat').hidden = !chat;
  $('placeholder').hidden = !!chat;
  if (!chat) { current = null; return; }
  if (document.activeElement !== $('title')) $('title').value = chat.title || '';
  $('messages').replaceChildren(...chat.messages.map((m) => {
    const del = el('button', { className: 'del', type: 'button', title: 'Delete message', textContent: '×' });
    del.onclick = () => db.deleteMessage(chat.id, m.id);
    return el('li', { className: m.role }, el('span', { className: 'role', textContent: m.role }), String(m.content), del);
  }));
  $('messages').scrollTop = $('messages').scrollHeight;
}

$('new-chat').onsubmit = async (e) => {
  e.preventDefault();
  current = await db.createChat({ title: $('new-title').value.trim() || 'New chat' });
  $('new-title').value = '';
};
$('rename').onclick = () => current && db.renameChat(current, $('title').value.trim());
$('title').onkeydown = (e) => { if (e.key === 'Enter') $('rename').click(); };
$('delete').onclick = async () => { if (current) { const id = current; current = null; await db.deleteChat(id); } };
$('compose').onsubmit = async (e) => {
  e.preventDefault();
  const content = $('content').value.trim();
  if (!current || !content) return;
  $('content').value = '';
  await db.addMessage(current, { role: $('role').value, content });
};
$('sync').onclick = () => db.sync().catch(() => {}); // the status event shows the error
$('live').onchange = () => db.live($('live').checked);
$('settings').onsubmit = (e) => {
  e.preventDefault();
  sessionStorage.setItem('polysync-token', $('token').value.trim());
  $('token').value = '';
  showStatus('token set', 'idle');
};

await open();
