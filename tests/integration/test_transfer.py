"""`polysyncd import` and `polysyncd export` (#10.5, #17.5).

Oracle: the file shapes of Polyglot's code at the fixtures' commit
(src/server/chatStore.js writes {chats: {id: chat}, lamportClock}, a deleted
chat as {..., is_deleted: true, deletedAtLamport: [n, "server"]} without
messages; the app's records carry lastMutationLamport {lamport, deviceId};
its old export is a JSON array of them), DESIGN.md's merge rules (an import's
writes carry no Lamport counter, so a device's edit always wins over them;
a deleted chat stays deleted under a tuple it does not beat) and what a
device then receives over /sync. Idempotence is checked on the whole
SQLite file: every row of every table, sequences included.
"""
import json
import os
import sqlite3
import stat
import tempfile
import shutil
import unittest

import harness
from harness import ServerTestCase, Server, by_id, chat, msg, message_ids, run_polysyncd

USER = "local"  # the user of a server without auth
T0 = "2026-01-01T10:00:00.000Z"
T1 = "2026-01-01T11:00:00.000Z"
T2 = "2026-01-01T12:00:00.000Z"
A = "0f7283f1-b561-4285-ac50-2fefcf906e0b"


def app_record(cid, title, messages, counter, device=A, **extra):
    """An IndexedDB record of the app, as its export and page-load body hold it."""
    r = {"id": cid, "title": title, "createdAt": T0, "lastModified": T1, "provider": "ollama",
         "currentModel": "llama3.2", "modelHistory": [], "messages": messages,
         "isArchived": False, "lastMutationLamport": {"lamport": counter, "deviceId": device}}
    r.update(extra)
    return r


def chat_store_json():
    """chatStore.json as chatStore.js writes it after some uploads and a deletion."""
    x = chat("x", "Trip", [msg("m1", timestamp=T0), msg("m2", role="assistant", timestamp=T1)],
             last_modified=T1, provider="ollama", currentModel="llama3.2", isArchived=False,
             updatedAtLamport=[5, A], serverMergedAtLamport=[7, "server"])
    y = chat("y", "Secret stuff", [msg("p1", timestamp=T0),
                                   msg("p2", timestamp=T1, isPrivate=True)],
             last_modified=T1, updatedAtLamport=[6, A], serverMergedAtLamport=[8, "server"])
    # deleted: content stripped (messages undefined, so absent from the JSON)
    t = {"id": "t", "title": "Gone", "lastModified": T0, "updatedAtLamport": [4, A],
         "serverMergedAtLamport": [5, "server"], "is_deleted": True,
         "deletedAtLamport": [9, "server"]}
    # deleted once, then restored by an upload that dominated the deletion
    r = chat("r", "Back", [msg("r1", timestamp=T0)], last_modified=T0,
             updatedAtLamport=[12, A], is_deleted=False, deletedAtLamport=None,
             serverMergedAtLamport=[13, "server"])
    return {"chats": {"x": x, "y": y, "t": t, "r": r}, "lamportClock": 13}


def store_state(db_path):
    """Every row of every table of the store, in a stable order."""
    url = harness.store_url(db_path)
    if url.startswith("postgres"):  # PS_TEST_DB: the database standing for db_path
        tables = [r[0] for r in harness.pg_query(
            url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        return {t: sorted(repr(r) for r in harness.pg_query(url, 'SELECT * FROM "%s"' % t))
                for t in tables}
    con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(map(repr, con.execute("SELECT * FROM \"%s\"" % t))) for t in tables}
    finally:
        con.close()


class TransferTestCase(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.server.stop()      # most tests import offline, then start it
        self.tmp = tempfile.mkdtemp(prefix="polysync-transfer-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, doc):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        return path

    def cli(self, *args, server=None, ok=True):
        db = (server or self.server).db_url  # PS_TEST_DB
        r = run_polysyncd(list(args) + ["--db", db])
        if ok:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def import_file(self, path, *extra, server=None, ok=True):
        return self.cli("import", "--user", USER, path, *extra, server=server, ok=ok)

    def lamport_device_sync(self, device, chats=(), deletions=()):
        return self.server.sync_ok({
            "deviceId": device, "chats": list(chats), "deletions": list(deletions),
            "clientClock": {"deviceId": device, "localCounter": 0, "observedCounter": 0}})


class ImportChatStoreTest(TransferTestCase):

    def test_chat_store_json(self):
        r = self.import_file(self.write("chatStore.json", chat_store_json()))
        self.assertIn("chatStore.json", r.stdout)
        self.assertIn("chats: 3 read, 3 new", r.stdout)
        self.assertIn("deleted chats: 1 read", r.stdout)
        self.server.start()
        stored = by_id(self.server.fetch())
        self.assertEqual(set(stored), {"x", "y", "r"}, "t is deleted in the file")
        self.assertEqual(message_ids(stored["x"]), ["m1", "m2"])
        self.assertEqual(stored["x"]["title"], "Trip")
        self.assertEqual(message_ids(stored["y"]), ["p1"], "private messages are never stored")
        for c in stored.values():
            for key in ("serverMergedAtLamport", "is_deleted", "deletedAtLamport"):
                self.assertNotIn(key, c)
            # above every tuple of the file (lamportClock 13), so an app
            # device holding an older copy takes the store's
            self.assertGreater(c["updatedAtLamport"][0], 13, c["updatedAtLamport"])
        doc = self.lamport_device_sync("new-device")
        self.assertEqual(set(by_id(doc["missing"])), {"x", "y", "r"})
        dels = {d["id"]: d for d in doc["deletions"]}
        self.assertEqual(dels["t"]["lamport"], [9, "server"])
        # a device still holding t at a tuple below the deletion: stays deleted
        stale = chat("t", "Gone", [msg("t1", timestamp=T0)], last_modified=T2,
                     updatedAtLamport=[8, A])
        doc = self.lamport_device_sync(A, [stale])
        self.assertNotIn("t", by_id(self.server.fetch()))
        self.assertIn("t", {d["id"] for d in doc["deletions"]})

    def test_array_form_and_app_export(self):
        """chatStore.json's first form (a plain array), the app's old
        conversations.json export and one exportConversation object."""
        records = [app_record("e1", "One", [msg("a", timestamp=T0)], 3),
                   app_record("e2", "Two", [msg("b", timestamp=T0)], 4, isArchived=True)]
        self.import_file(self.write("conversations.json", records))
        self.import_file(self.write("one.json", app_record("e3", "Three", [], 5)))
        self.server.start()
        stored = by_id(self.server.fetch())
        self.assertEqual(set(stored), {"e1", "e2", "e3"})
        self.assertIs(stored["e2"]["isArchived"], True)
        self.assertNotIn("lastMutationLamport", stored["e1"], "the app's record clock is "
                                                              "bookkeeping, not content")
        self.assertEqual(stored["e1"]["createdAt"], T0)

    def test_import_into_a_live_store_reaches_a_polling_device_at_once(self):
        """A v2 device up to date polls with no transaction (the server
        keeps the user's row while nothing is committed: store/sqlite_quiet.h);
        an import by another process into the running server's store is a
        commit all the same, so the very next poll brings its chats."""
        self.server.start()
        first = self.server.v2_ok({"deviceId": "poller", "cursor": None})
        cursor = first["cursor"]
        for _ in range(3):  # up to date, polling: the row kept
            again = self.server.v2_ok({"deviceId": "poller", "cursor": cursor})
            self.assertEqual(again["chats"], [])
            self.assertEqual(again["cursor"], cursor)
        self.import_file(self.write("chatStore.json", chat_store_json()))
        after = self.server.v2_ok({"deviceId": "poller", "cursor": cursor})
        self.assertEqual({c["id"] for c in after["chats"]} - {"t"}, {"x", "y", "r"})
        self.assertNotEqual(after["cursor"], cursor)
        settled = self.server.v2_ok({"deviceId": "poller", "cursor": after["cursor"]})
        self.assertEqual(settled["chats"], [])

    def test_twice_changes_nothing(self):
        path = self.write("chatStore.json", chat_store_json())
        self.import_file(path)
        once = store_state(self.server.db_path)
        r = self.import_file(path)
        self.assertIn("chats: 3 read, 0 new, 0 updated, 3 unchanged", r.stdout)
        self.assertIn("deleted chats: 1 read, 0 deleted, 0 recorded, 1 already so", r.stdout)
        self.assertEqual(store_state(self.server.db_path), once)

    def test_dry_run_changes_nothing(self):
        self.server.start()
        self.lamport_device_sync(A, [chat("x", "Device title", [msg("m9", timestamp=T0)],
                                          last_modified=T0, updatedAtLamport=[2, A])])
        self.server.stop()
        before = store_state(self.server.db_path)
        r = self.import_file(self.write("chatStore.json", chat_store_json()), "--dry-run")
        self.assertIn("dry run, nothing changed", r.stdout)
        self.assertIn("2 would be new, 1 would be updated", r.stdout)
        self.assertIn("deleted chats: 1 read, 0 would be deleted, 1 would be recorded", r.stdout)
        self.assertEqual(store_state(self.server.db_path), before)

    def test_device_edits_win_and_missing_parts_are_filled_in(self):
        """The import's writes carry no counter: a device's title stays, the
        file's extra message is added, and the device is sent the result."""
        self.server.start()
        self.lamport_device_sync(A, [chat("x", "Device title", [msg("m1", timestamp=T0)],
                                          last_modified=T0, updatedAtLamport=[2, A])])
        self.import_file(self.write("chatStore.json", chat_store_json()))   # while it runs
        x = by_id(self.server.fetch())["x"]
        self.assertEqual(x["title"], "Device title")
        self.assertEqual(message_ids(x), ["m1", "m2"])
        doc = self.lamport_device_sync(A, [chat("x", "Device title", [msg("m1", timestamp=T0)],
                                                last_modified=T0, updatedAtLamport=[2, A])])
        back = by_id(doc["missing"])["x"]
        self.assertEqual(message_ids(back), ["m1", "m2"])
        self.assertGreater(back["updatedAtLamport"], [2, A])

    def test_bad_files_change_nothing(self):
        self.import_file(self.write("ok.json", [chat("k", "Kept", last_modified=T0)]))
        before = store_state(self.server.db_path)
        bad_chat = [chat("k2", "x", last_modified=T0),
                    chat("k3", "y", [{"id": "m", "content": "no role"}], last_modified=T0)]
        no_clock = {"chats": {"t": {"id": "t", "is_deleted": True}}, "lamportClock": 1}
        cases = [("not json", "{oops", "JSON"),
                 ("bad chat", bad_chat, "messages[0].role"),
                 ("tombstone without clock", no_clock, "deletedAtLamport"),
                 ("a number", 42, "not a chat file")]
        for name, doc, words in cases:
            with self.subTest(name):
                path = os.path.join(self.tmp, "bad.json")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(doc if isinstance(doc, str) else json.dumps(doc))
                r = self.import_file(path, ok=False)
                self.assertEqual(r.returncode, 1)
                self.assertIn(words, r.stderr)
                self.assertIn("nothing was imported", r.stderr)
                self.assertEqual(store_state(self.server.db_path), before)
        r = self.cli("import", "--user", USER, os.path.join(self.tmp, "absent.json"), ok=False)
        self.assertEqual(r.returncode, 1)
        r = self.cli("import", os.path.join(self.tmp, "ok.json"), ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--user", r.stderr)


class ExportTest(TransferTestCase):

    def populate(self):
        self.server.start()
        self.lamport_device_sync(A, [
            chat("a", "Alpha", [msg("a1", timestamp=T0), msg("a2", timestamp=T1)],
                 last_modified=T1, updatedAtLamport=[3, A]),
            chat("b", "Beta", [msg("b1", timestamp=T0)], last_modified=T0,
                 updatedAtLamport=[4, A])],
            deletions=[{"id": "b", "lamport": [6, A]}])
        self.server.push_ok([chat("c", "Gamma", [msg("c1", timestamp=T0)], last_modified=T0)])

    def test_export_while_running_equals_fetch(self):
        self.populate()
        r = self.cli("export", "--user", USER)
        exported = json.loads(r.stdout)
        self.assertEqual(by_id(exported), by_id(self.server.fetch()))
        self.assertIn("exported 2 chats", r.stderr)

    def test_tombstones_to_a_private_file_and_back_into_a_fresh_store(self):
        self.populate()
        out = os.path.join(self.tmp, "export.json")
        self.cli("export", "--user", USER, "--output", out, "--tombstones")
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o600)
        with open(out, encoding="utf-8") as f:
            exported = json.load(f)
        gone = [e for e in exported if e.get("is_deleted")]
        self.assertEqual(gone, [{"id": "b", "is_deleted": True, "deletedAtLamport": [6, A]}])
        fresh = Server()
        self.addCleanup(fresh.close)
        self.import_file(out, server=fresh)
        fresh.start()
        self.addCleanup(fresh.stop)
        got, want = by_id(fresh.fetch()), by_id(self.server.fetch())
        self.assertEqual(set(got), {"a", "c"})
        for cid in want:
            self.assertEqual(message_ids(got[cid]), message_ids(want[cid]))
            self.assertEqual(got[cid]["title"], want[cid]["title"])
        # the deletion came along: a stale copy of b stays deleted there
        fresh.sync_ok({"deviceId": A, "chats": [chat("b", "Beta", last_modified=T2,
                                                     updatedAtLamport=[5, A])]})
        self.assertNotIn("b", by_id(fresh.fetch()))

    def test_unknown_user_exports_an_empty_list(self):
        self.populate()
        r = self.cli("export", "--user", "nobody")
        self.assertEqual(json.loads(r.stdout), [])


if __name__ == "__main__":
    unittest.main()
