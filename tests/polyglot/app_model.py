"""A model of the Polyglot app's sync client, rule for rule (stdlib only).

The app's own code is not ours to vendor, so this is its behaviour written
down from its source at the fixtures' commit (c04c9b3; file names below are
the app's) and the captured wire traffic (../shared/fixtures/polyglot):

- CoherenceClock: tick() = max(local, observed) + 1, both set to it;
  observe(t) raises `observed` only. The clock goes out as clientClock
  {deviceId, localCounter, observedCounter}.
- conversationSync.saveConversation: tick, stamp the record's
  lastMutationLamport, lastModified = now; db.saveResource drops the write
  when the device holds a deletion record for the chat.
- ConversationStateManager: createConversation, addMessage, toggleArchive
  save then sync; updateConversationMetadata (rename) saves and then throws
  (flushOutboundMutations is not imported), so the rename goes out with the
  next sync; deleteConversation as the app means it (the record carries its
  id; at HEAD it fails with DataError, see docs/polyglot.md).
- backgroundSync.syncWithServer: POST /sync with the device's full state
  (every chat, archived too, sorted by lastMutationLamport descending;
  every deletion record), any non-2xx fails the sync and changes nothing;
  then ReconciliationEngine.reconcileBoundary: deletions first (observed;
  a local chat newer than the deletion is kept, else deleted and the record
  kept; an existing record keeps the earlier tuple), then chats (observed;
  dropped without a readable clock or when a deletion record exists;
  stored, replacing the whole chat, when new or strictly dominating).
- main.tsx runClientMigrations at page load: POST {chats: raw records of
  the non-archived chats}; a non-empty `missing` throws before storing any.
- The socket: ws://HOST:PORT/ (no query, no subprotocol), sends nothing,
  stores a text frame {id, updatedAtLamport | clock, ...} through the same
  reconcileBoundary; reconnects 3 s after every close or failed attempt.

Clock tuples are compared as the app's utils/ordering.ts does: counter,
then device id as strings.
"""
import base64
import datetime
import hashlib
import http.client
import json
import os
import random
import socket
import string
import struct
import threading
import time

RECONNECT_S = 3.0
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def iso(ms):
    dt = datetime.datetime.fromtimestamp(ms / 1000.0, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def compare(a, b):
    """utils/ordering.ts compareLamport on {lamport, deviceId} dicts."""
    if a["lamport"] != b["lamport"]:
        return 1 if a["lamport"] > b["lamport"] else -1
    if a["deviceId"] != b["deviceId"]:
        return 1 if a["deviceId"] > b["deviceId"] else -1
    return 0


def parse_clock(raw):
    """backgroundSync.parseServerClockTuple; None where the app throws."""
    if isinstance(raw, list) and len(raw) >= 2:
        try:
            n = float(raw[0])
        except (TypeError, ValueError):
            n = 0
        n = int(n) if n == n else 0
        return {"lamport": n, "deviceId": str(raw[1])}
    if (isinstance(raw, dict) and isinstance(raw.get("lamport"), (int, float))
            and not isinstance(raw.get("lamport"), bool) and isinstance(raw.get("deviceId"), str)):
        return {"lamport": raw["lamport"], "deviceId": raw["deviceId"]}
    return None


class SyncFailed(Exception):
    pass


class Device:
    """One browser profile of the app: its IndexedDB and its clock."""

    def __init__(self, device_id, endpoint, provider="ollama", model="llama3.2"):
        self.device_id = device_id
        self.endpoint = endpoint          # () -> (host, port) of the sync server
        self.provider, self.model = provider, model
        self.chats = {}                   # the `chats` store: id -> record
        self.deletions = {}               # the `deletions` store: id -> record
        self.local = 0
        self.observed = 0
        self.lock = threading.RLock()     # the app's one event loop
        self._last_ms = 0
        self._ids = 0
        self.frames_applied = 0
        self._ws_thread = None
        self._ws_stop = threading.Event()
        self._ws_sock = None
        self.ws_connects = 0

    # -- CoherenceClock --

    def tick(self):
        n = max(self.local, self.observed) + 1
        self.local = self.observed = n
        return {"lamport": n, "deviceId": self.device_id}

    def observe(self, t):
        self.observed = max(self.observed, t["lamport"])

    def snapshot(self):
        return {"deviceId": self.device_id, "localCounter": self.local,
                "observedCounter": self.observed}

    def now_ms(self):
        """Date.now(), kept strictly increasing so the model's message ids
        (msg_<ms>) stay unique, as the capture's did."""
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms

    # -- conversationSync / CSM --

    def _save(self, record):
        """saveConversation + db.saveResource; False when a deletion record
        for the chat makes the store drop it."""
        record = dict(record, lastMutationLamport=self.tick(), lastModified=iso(self.now_ms()))
        if record["id"] in self.deletions:
            return False
        self.chats[record["id"]] = record
        return True

    def create_chat(self, sync=True):
        with self.lock:
            ms = self.now_ms()
            suffix = "".join(random.choice(string.ascii_lowercase + string.digits)
                             for _ in range(9))
            cid = "conv_%d_%s" % (ms, suffix)
            record = {"id": cid, "title": "New Chat %s" % time.strftime("%-m/%-d/%Y"),
                      "messages": [], "createdAt": iso(ms), "lastModified": iso(ms),
                      "provider": self.provider, "currentModel": self.model,
                      "modelHistory": [], "isArchived": False}
            if self._save(record) and sync:
                self.sync_quietly()
            return cid

    def add_message(self, cid, content, role="user", sync=True):
        """CSM.addMessage on the chat as this device holds it."""
        with self.lock:
            if cid not in self.chats:
                raise KeyError(cid)
            ms = self.now_ms()
            m = {"id": "msg_%d" % ms, "role": role, "content": content, "timestamp": iso(ms),
                 "provider": self.provider, "isPrivate": False}
            if role == "assistant":
                m.update(usedRAG=False, isThinking=False)
            chat = json.loads(json.dumps(self.chats[cid]))
            chat["messages"].append(m)
            if self._save(chat) and sync:
                self.sync_quietly()
            return m["id"]

    def rename(self, cid, title):
        """CSM.updateConversationMetadata: saved, then the ReferenceError;
        nothing is sent until the next sync."""
        with self.lock:
            self._save(dict(self.chats[cid], title=title))

    def toggle_archive(self, cid, sync=True):
        with self.lock:
            c = self.chats[cid]
            if self._save(dict(c, isArchived=not c["isArchived"])) and sync:
                self.sync_quietly()

    def delete_chat(self, cid, sync=True):
        """The delete path as the app means it (record with its key id)."""
        with self.lock:
            tau = self.tick()
            self.chats.pop(cid, None)
            self.deletions[cid] = {"id": cid, "resourceId": cid, "deletedAtLamport": tau}
            if sync:
                self.sync_quietly()

    # -- backgroundSync --

    def wire_body(self):
        chats = sorted(self.chats.values(),
                       key=lambda r: (r["lastMutationLamport"]["lamport"],
                                      r["lastMutationLamport"]["deviceId"]), reverse=True)
        return {
            "deviceId": self.device_id,
            "clientClock": self.snapshot(),
            "chats": [{"id": r["id"], "title": r["title"], "provider": r["provider"],
                       "currentModel": r["currentModel"], "isArchived": r["isArchived"],
                       "messages": r["messages"], "lastModified": r["lastModified"],
                       "updatedAtLamport": [r["lastMutationLamport"]["lamport"],
                                            r["lastMutationLamport"]["deviceId"]]}
                      for r in chats],
            "deletions": [{"id": d.get("resourceId") or d["id"],
                           "lamport": [d["deletedAtLamport"]["lamport"],
                                       d["deletedAtLamport"]["deviceId"]]}
                          for d in self.deletions.values()],
        }

    def _post(self, path, body):
        host, port = self.endpoint()
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError as e:
            raise SyncFailed("fetch failed: %r" % e)
        finally:
            conn.close()

    def sync(self):
        """syncWithServer(); raises SyncFailed where it returns success false."""
        with self.lock:
            status, raw = self._post("/sync", self.wire_body())
            if not 200 <= status < 300:
                raise SyncFailed("status %d: %r" % (status, raw[:200]))
            data = json.loads(raw)
            resources, deletions = [], []
            for c in data.get("missing") or []:
                clock = parse_clock(c.get("updatedAtLamport"))
                if clock is None:
                    continue
                resources.append(self._resource(c, clock))
            for d in data.get("deletions") or []:
                did = d.get("chatId") or d.get("id")
                clock = parse_clock(d.get("lamport") or d.get("updatedAtLamport"))
                if not did or clock is None:
                    continue
                deletions.append({"id": did, "resourceId": did, "deletedAtLamport": clock})
            return self.reconcile(resources, deletions)

    def sync_quietly(self):
        """The app logs a failed sync and carries on."""
        try:
            return self.sync()
        except SyncFailed:
            return None

    @staticmethod
    def _resource(c, clock):
        return {"id": c["id"], "title": c.get("title"), "provider": c.get("provider"),
                "currentModel": c.get("currentModel"), "isArchived": bool(c.get("isArchived")),
                "messages": c.get("messages") or [],
                "lastModified": c.get("lastModified") or iso(int(time.time() * 1000)),
                "lastMutationLamport": clock}

    def reconcile(self, resources, deletions):
        """ReconciliationEngine.reconcileBoundary; (resources, deletions) applied."""
        applied_r = applied_d = 0
        for rd in deletions:
            self.observe(rd["deletedAtLamport"])
            local_del = self.deletions.get(rd["id"])
            local = self.chats.get(rd["id"])
            if local_del:
                if compare(local_del["deletedAtLamport"], rd["deletedAtLamport"]) > 0:
                    self.deletions[rd["id"]] = rd
                continue
            if local:
                if compare(local["lastMutationLamport"], rd["deletedAtLamport"]) > 0:
                    continue
                self.chats.pop(rd["id"])
            self.deletions[rd["id"]] = rd
            applied_d += 1
        for rr in resources:
            self.observe(rr["lastMutationLamport"])
            if rr["id"] in self.deletions:
                continue      # never takes back a chat it deleted
            local = self.chats.get(rr["id"])
            if local is None or compare(rr["lastMutationLamport"],
                                        local["lastMutationLamport"]) > 0:
                self.chats[rr["id"]] = rr     # the whole chat replaced
                applied_r += 1
        return applied_r, applied_d

    def page_load_migration(self):
        """main.tsx runClientMigrations: the raw records of the non-archived
        chats; a non-empty `missing` throws TypeError before any is stored
        (caught and logged by the app). Returns the answer."""
        with self.lock:
            records = [r for r in self.chats.values() if not r["isArchived"]]
            status, raw = self._post("/sync", {"chats": records})
            return status, json.loads(raw) if raw else None

    # -- the live socket (ConversationStateManager.connectWebSocket) --

    def start_socket(self):
        self._ws_stop.clear()
        self._ws_thread = threading.Thread(target=self._socket_loop, daemon=True)
        self._ws_thread.start()

    def stop_socket(self):
        self._ws_stop.set()
        s = self._ws_sock
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._ws_thread:
            self._ws_thread.join(timeout=10)

    def _socket_loop(self):
        while not self._ws_stop.is_set():
            try:
                sock = self._ws_connect()
                self.ws_connects += 1
                self._ws_sock = sock
                self._ws_read(sock)
            except OSError:
                pass
            finally:
                if self._ws_sock is not None:
                    self._ws_sock.close()
                    self._ws_sock = None
            self._ws_stop.wait(RECONNECT_S)       # onclose: setTimeout(connect, 3000)

    def _ws_connect(self):
        host, port = self.endpoint()
        sock = socket.create_connection((host, port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(("GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n" % (host, port, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                raise OSError("closed during the handshake")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        if not lines[0].startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != want:
            sock.close()
            raise OSError("no WebSocket upgrade: %r" % lines[0])
        sock.settimeout(None)
        self._ws_pending = rest
        return sock

    def _ws_recv(self, sock, n):
        buf = self._ws_pending
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("closed")
            buf += chunk
        self._ws_pending = buf[n:]
        return buf[:n]

    def _ws_send(self, sock, opcode, payload):
        """A client frame: FIN, masked (RFC 6455 5.3)."""
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _ws_read(self, sock):
        message, message_op = b"", None
        while not self._ws_stop.is_set():
            b0, b1 = self._ws_recv(sock, 2)
            fin, opcode = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._ws_recv(sock, 2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._ws_recv(sock, 8))[0]
            mask = self._ws_recv(sock, 4) if b1 & 0x80 else None
            payload = self._ws_recv(sock, n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:
                self._ws_send(sock, 0xA, payload)
            elif opcode == 0x8:
                self._ws_send(sock, 0x8, payload[:2])
                return
            elif opcode in (0x1, 0x2, 0x0):
                if opcode:
                    message_op, message = opcode, b""
                message += payload
                if fin and message_op == 0x1:
                    self._on_frame(message.decode("utf-8"))

    def _on_frame(self, text):
        """backgroundSync.ensureSocketRegistered's message handler."""
        try:
            payload = json.loads(text)
        except ValueError:
            return
        if not (isinstance(payload, dict) and payload.get("id")
                and (payload.get("clock") or payload.get("updatedAtLamport"))):
            return
        clock = parse_clock(payload.get("clock") or payload.get("updatedAtLamport"))
        if clock is None:
            return
        res = {"id": payload["id"], "title": payload.get("title") or "Untitled Chat",
               "provider": payload.get("provider") or "unknown",
               "currentModel": payload.get("currentModel") or "unknown",
               "isArchived": bool(payload.get("isArchived")),
               "messages": payload.get("messages") or [],
               "lastModified": payload.get("lastModified") or iso(int(time.time() * 1000)),
               "lastMutationLamport": clock}
        with self.lock:
            applied, _ = self.reconcile([res], [])
            self.frames_applied += applied
