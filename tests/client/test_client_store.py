"""The local store on disk (docs/client.md, "The local store on disk"): a
store of schema 1 (rows as JSON text, as polysync 0.1 wrote them) migrates
forward without losing a chat, a message, a tombstone or a pending change;
packed rows and gzip bodies at every level give back exactly what was put
in. The oracle is the data each test writes, never the code's output."""
import json
import os
import random
import sqlite3
import unittest
import uuid

from clientkit import ClientTestCase

# Schema 1, as src/client/lstore.c created it before schema 2 (the format
# being migrated from; copied, not imported, so a change there cannot
# change what this test builds).
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE chats (
  id TEXT PRIMARY KEY, header TEXT NOT NULL, live INTEGER NOT NULL, title TEXT,
  archived INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL DEFAULT 0,
  updated_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE messages (
  chat_id TEXT NOT NULL, id TEXT NOT NULL, row TEXT NOT NULL, live INTEGER NOT NULL,
  PRIMARY KEY (chat_id, id)) WITHOUT ROWID;
CREATE TABLE changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, chat_id TEXT NOT NULL, kind INTEGER NOT NULL,
  clock INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX changes_by_chat ON changes(chat_id);
PRAGMA user_version = 1;
"""

DEVICE = "5b0e6a4c-1d2e-4f3a-9b8c-7d6e5f4a3b2c"
WORDS = ["model", "token", "café", "smörgåsbord", "Привет", "мир", "👍", "line", "\"quoted\"",
         "back\\slash", "tab\there", "new\nline", "request", "answer", "😀", "array"]
BASE_MS = 1705320000000  # 2024-01-15T12:00:00Z


def iso(ms):
    import datetime
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def make_history(rng, chats, messages):
    """Chats as the Polyglot app writes them: {id, title, ..., messages}."""
    out = []
    for c in range(chats):
        cid = "chat-%04d" % c
        msgs = []
        for m in range(messages):
            ms = BASE_MS + c * 100000 + m * 1000
            msgs.append({"id": "%s-msg-%03d" % (cid, m),
                         "role": "user" if m % 2 == 0 else "assistant",
                         "content": " ".join(rng.choice(WORDS)
                                             for _ in range(rng.randint(5, 120))),
                         "timestamp": iso(ms)})
        last = BASE_MS + c * 100000 + messages * 1000
        out.append({"id": cid, "title": "chat %d %s" % (c, rng.choice(WORDS)),
                    "createdAt": iso(BASE_MS + c * 100000), "updatedAt": iso(last),
                    "lastModified": iso(last), "model": "llama-3.1-70b",
                    "isArchived": False, "messages": msgs})
    return out


def give_uuid_ids(rng, chats):
    """Message ids as the apps make them (lowercase UUIDs), which schema 3
    keys by their 16 bytes; returns those ids."""
    ids = []
    for chat in chats:
        for m in chat["messages"]:
            m["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            ids.append(m["id"])
    return ids


def key_types(path):
    """message id -> how its key is stored: ('blob', bytes) or ('text', str)."""
    db = sqlite3.connect(path)
    try:
        return {(k.hex() if isinstance(k, bytes) else k):
                ("blob", k) if isinstance(k, bytes) else ("text", k)
                for (k,) in db.execute("SELECT id FROM messages")}
    finally:
        db.close()


def essence(chats):
    """What must survive: per chat its title and its messages in order."""
    return {c["id"]: {"title": c["title"],
                      "messages": [(m["id"], m["role"], m["content"], m["timestamp"])
                                   for m in c["messages"]]}
            for c in chats}


def write_schema_1(path, history, tombstones, pending):
    """A schema-1 store holding `history` as synced state (stamps at counter
    0 of DEVICE), `tombstones` (chat id -> message ids deleted) and the log
    entries `pending` (v2 changes, as that version logged them)."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    db.execute("INSERT INTO meta VALUES ('device_id', ?)", (DEVICE,))
    db.execute("INSERT INTO meta VALUES ('clock', '9')")
    for chat in history:
        last_ms = BASE_MS + int(chat["id"][5:]) * 100000 + len(chat["messages"]) * 1000
        stamp = [last_ms, 0, DEVICE]
        fields = {k: [v, stamp] for k, v in chat.items()
                  if k not in ("id", "messages", "createdAt", "updatedAt", "lastModified")}
        created_ms = BASE_MS + int(chat["id"][5:]) * 100000
        header = {"id": chat["id"], "f": fields, "c": [chat["createdAt"], created_ms],
                  "u": [chat["updatedAt"], last_ms], "l": [chat["lastModified"], last_ms],
                  "t": stamp}
        db.execute("INSERT INTO chats VALUES (?, ?, 1, ?, 0, ?, ?)",
                   (chat["id"], json.dumps(header), chat["title"], created_ms, last_ms))
        for i, m in enumerate(chat["messages"]):
            order = BASE_MS + int(chat["id"][5:]) * 100000 + i * 1000
            row = [m["id"], m, stamp, order]
            db.execute("INSERT INTO messages VALUES (?, ?, ?, 1)",
                       (chat["id"], m["id"], json.dumps(row, ensure_ascii=False)))
        for mid in tombstones.get(chat["id"], ()):
            row = [mid, None, [last_ms + 5, 3, DEVICE], 0]
            db.execute("INSERT INTO messages VALUES (?, ?, ?, 0)",
                       (chat["id"], mid, json.dumps(row)))
    for seq, change in pending:
        db.execute("INSERT INTO changes(seq, chat_id, kind, clock, body) VALUES (?, ?, 0, ?, ?)",
                   (seq, change["chatId"], change["clock"], json.dumps(change)))
    db.commit()
    db.close()


def chat_change(chat, clock):
    """A chat whole as one v2 change, as an import logs it."""
    return {"chatId": chat["id"], "clock": clock, "at": BASE_MS,
            "fields": {k: v for k, v in chat.items() if k not in ("id", "messages")},
            "messages": chat["messages"]}


def exported(device):
    return essence(json.loads(device.run("export").out))


def store_facts(path):
    db = sqlite3.connect(path)
    try:
        return {
            "version": db.execute("PRAGMA user_version").fetchone()[0],
            "integrity": db.execute("PRAGMA integrity_check").fetchone()[0],
            "dicts": db.execute("SELECT count(*) FROM zdicts").fetchone()[0],
            "rows": db.execute("SELECT count(*) FROM messages").fetchone()[0],
            "rows_without_dict": db.execute(
                "SELECT count(*) FROM messages WHERE dict = 0").fetchone()[0],
            "row_bytes": db.execute("SELECT sum(length(row)) FROM messages").fetchone()[0],
        }
    finally:
        db.close()


class StoreCase(ClientTestCase):
    def write_json(self, name, obj):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)
        return path


class Migration(StoreCase):
    def test_schema_1_store_migrates_without_loss(self):
        rng = random.Random(15)
        history = make_history(rng, 45, 50)  # 2,250 rows: enough for a dictionary
        # half the chats with UUID message ids (keyed by their bytes since
        # schema 3), one of them in capitals (kept as text: formatting the
        # bytes back would not give it)
        uuids = give_uuid_ids(rng, history[::2])
        history[2]["messages"][0]["id"] = uuids[50] = uuids[50].upper()
        # chat 0 lost two messages to deletions before the migration
        deleted = [history[0]["messages"][3]["id"], history[0]["messages"][7]["id"]]
        tombstones = {history[0]["id"]: deleted}
        history[0]["messages"] = [m for m in history[0]["messages"] if m["id"] not in deleted]
        # the log as 0.1 left it after an import and edits, before a sync:
        # each chat whole at clock 0 (deleted messages included), the two
        # deletions, a message written offline, a chat created here
        pending = []
        for chat in history:
            c = chat_change(chat, 0)
            if chat is history[0]:
                c["messages"] = c["messages"] + [{"id": d, "role": "user", "content": "gone",
                                                  "timestamp": iso(BASE_MS)} for d in deleted]
            pending.append(c)
        pending.append({"chatId": history[0]["id"], "clock": 3, "at": BASE_MS + 90000,
                        "deleteMessages": deleted})
        new_msg = {"id": "pending-msg", "role": "user", "content": "written offline ✓",
                   "timestamp": iso(BASE_MS + 100000 + 60000)}
        history[1]["messages"].append(new_msg)
        pending.append({"chatId": history[1]["id"], "clock": 8, "at": BASE_MS + 160000,
                        "messages": [new_msg]})
        fresh = make_history(random.Random(7), 47, 3)[46]
        fresh["title"] = "only in the log"
        pending.append(chat_change(fresh, 9))
        pending = [(i + 5, c) for i, c in enumerate(pending)]  # seqs need not start at 1
        put_in = history + [fresh]
        old = self.device("old")
        write_schema_1(old.store, history + [fresh], tombstones, pending)
        json_bytes = sum(len(json.dumps(m, ensure_ascii=False).encode())
                         for c in put_in for m in c["messages"])

        self.assertEqual(exported(old), essence(put_in))
        facts = store_facts(old.store)
        self.assertEqual(facts["version"], 4)
        self.assertEqual(facts["integrity"], "ok")
        keys = key_types(old.store)
        for mid in uuids:
            if mid == mid.lower():
                self.assertEqual(keys[mid.replace("-", "")], ("blob", uuid.UUID(mid).bytes))
            else:
                self.assertEqual(keys[mid], ("text", mid))
        self.assertEqual(keys[history[1]["messages"][0]["id"]],
                         ("text", history[1]["messages"][0]["id"]))
        self.assertEqual(facts["rows"], sum(len(c["messages"]) for c in put_in) + 2)
        # packed with the store's own dictionary, far below the JSON put in
        self.assertEqual(facts["dicts"], 1)
        self.assertEqual(facts["rows_without_dict"], 0)
        self.assertLess(facts["row_bytes"], json_bytes / 2)
        self.assertEqual(old.pending(), len(pending))
        # the device id is kept: the log's changes are still this device's
        self.assertEqual(old.run("status", "--json").json()["deviceId"], DEVICE)

        # the log reaches a server; a fresh device gets all of it, and the
        # tombstones stay tombstones (no deleted message comes back)
        server = self.server()
        old.server = server
        old.sync()
        self.assertEqual(old.pending(), 0)
        new = self.device("new", server)
        new.sync()
        self.assertEqual(exported(new), essence(put_in))
        self.assertEqual(exported(old), essence(put_in))
        # still usable: a local edit after the migration
        old.add_msg(history[2]["id"], "after the migration")
        old.sync()
        new.sync()
        self.assertEqual(exported(new)[history[2]["id"]]["messages"][-1][2],
                         "after the migration")

    def test_reopened_migrated_store_is_not_migrated_again(self):
        history = make_history(random.Random(3), 2, 4)
        old = self.device("old")
        write_schema_1(old.store, history, {}, [])
        self.assertEqual(exported(old), essence(history))
        before = store_facts(old.store)
        self.assertEqual(exported(old), essence(history))
        self.assertEqual(store_facts(old.store), before)
        # under PS_PACK_TRAIN_AT rows: packed, without a dictionary
        self.assertEqual((before["dicts"], before["rows_without_dict"]), (0, 8))


class Packing(StoreCase):
    def test_corrupt_packed_row_is_an_error_not_a_crash(self):
        history = make_history(random.Random(4), 1, 3)
        a = self.device("a")
        a.run("import", self.write_json("h.json", history))
        db = sqlite3.connect(a.store)
        db.execute("UPDATE messages SET row = x'28b52ffd0400' || row WHERE id = ?",
                   (history[0]["messages"][1]["id"],))  # a frame header, then garbage
        db.commit()
        db.close()
        r = a.run("chat", "show", history[0]["id"], ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("local store", r.err)
        self.assertIn("corrupt", r.err)


    def test_message_ids_of_every_form_round_trip(self):
        """Schema 3 keys a lowercase UUID id by its bytes and packs its row
        without the id; every other id is kept as text. Each must come back
        as written, through import, export, a sync to another device, and
        an edit and a deletion found by id."""
        rng = random.Random(21)
        history = make_history(rng, 60, 40)  # 2,400 rows: trains a dictionary
        uuids = give_uuid_ids(rng, history[:40])
        odd = ["D9B1C3F0-1E2A-4B5C-8D7E-9F0A1B2C3D4E",  # a UUID in capitals
               "d9b1c3f0-1e2a-4b5c-8d7e-9f0a1b2c3d4",   # one digit short
               "d9b1c3f0x1e2a-4b5c-8d7e-9f0a1b2c3d4e",  # not a UUID's dashes
               "a/b \"quoted\" \\ ✓", "~", "[{\"id\":\""]
        for i, mid in enumerate(odd):
            history[45]["messages"][i]["id"] = mid
        a = self.device("a")
        a.run("import", self.write_json("h.json", history))
        self.assertEqual(exported(a), essence(history))
        keys = key_types(a.store)
        for mid in uuids:
            self.assertEqual(keys[mid.replace("-", "")], ("blob", uuid.UUID(mid).bytes))
        for mid in odd:
            self.assertEqual(keys[mid], ("text", mid))
        facts = store_facts(a.store)
        self.assertEqual((facts["version"], facts["dicts"], facts["rows_without_dict"]),
                         (4, 1, 0))

        # found by id: an edit and a deletion in a UUID-keyed chat and in
        # the chat of odd ids
        chat0, chat45 = history[0]["id"], history[45]["id"]
        edited, gone = history[0]["messages"][5]["id"], history[0]["messages"][6]["id"]
        a.run("msg", "edit", chat0, edited, "edited ✓")
        a.run("msg", "delete", chat0, gone)
        a.run("msg", "edit", chat45, odd[3], "odd edited")
        history[0]["messages"][5]["content"] = "edited ✓"
        del history[0]["messages"][6]
        history[45]["messages"][3]["content"] = "odd edited"
        self.assertEqual(exported(a), essence(history))

        server = self.server()
        a.server = server
        a.sync()
        b = self.device("b", server)
        b.sync()
        self.assertEqual(exported(b), essence(history))
        # b never held the deleted message: the same keys but that one
        keys_a = key_types(a.store)
        del keys_a[gone.replace("-", "")]
        self.assertEqual(key_types(b.store), keys_a)

    def test_import_round_trip_through_packed_rows(self):
        history = make_history(random.Random(11), 50, 45)  # 2,250: trains a dictionary
        a = self.device("a")
        a.run("import", self.write_json("h.json", history))
        self.assertEqual(exported(a), essence(history))
        facts = store_facts(a.store)
        self.assertEqual((facts["dicts"], facts["rows_without_dict"]), (1, 0))
        self.assertEqual(facts["integrity"], "ok")

    def test_loopback_compresses_nothing_by_default(self):
        """Bytes to a loopback server never cross a wire: the body goes plain
        and no gzip answer is asked for, unless POLYSYNC_GZIP_LEVEL says."""
        server = self.server()
        proxy = self.proxy(server)
        history = make_history(random.Random(2), 10, 20)
        a = self.device("a", proxy)
        a.run("import", self.write_json("h.json", history))
        a.sync()
        b = self.device("b", proxy)
        b.sync()
        self.assertEqual(exported(b), essence(history))
        seen = proxy.seen("/v2/sync")
        self.assertGreater(len(seen[0][3]), 8192)  # large enough to be gzipped elsewhere
        for req in seen:
            self.assertIsNone(req[2].get("content-encoding"))
            self.assertNotIn("gzip", req[2].get("accept-encoding", ""))

    def test_gzip_levels_round_trip(self):
        """POLYSYNC_GZIP_LEVEL 0 (plain), 1 (the default off loopback) and 12:
        the server takes each body, another device gets back what was put
        in, and a higher level sends fewer bytes."""
        server = self.server()
        sent = {}
        for level in ("0", "1", "12"):
            history = make_history(random.Random(5), 12, 40)  # the same text each time
            for c in history:
                c["id"] = "L%s-%s" % (level, c["id"])
            a = self.device("a%s" % level, server)
            a.run("import", self.write_json("h%s.json" % level, history))
            r = a.run("sync", "--json", env={"POLYSYNC_GZIP_LEVEL": level}).json()
            sent[level] = (r["bytesSent"],
                           len(json.dumps(history, ensure_ascii=False).encode()))
            b = self.device("b%s" % level, server)
            b.sync()
            got = {k: v for k, v in exported(b).items() if k.startswith("L%s-" % level)}
            self.assertEqual(got, essence(history))
        plain, raw = sent["0"]
        self.assertGreater(plain, raw * 0.8)  # not gzipped
        self.assertLess(sent["1"][0], plain / 2)
        self.assertLess(sent["12"][0], sent["1"][0])

if __name__ == "__main__":
    unittest.main()
