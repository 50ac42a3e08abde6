"""Durability pinned: every acknowledged write is on disk before its 200.

"200 means durable" (DESIGN.md, docs/storage.md) needs the store's write
ahead log synced by the commit. A kill -9 cannot tell (the page cache
survives it), so this suite counts the syncs themselves: polysyncd runs
with an LD_PRELOAD shim (tests/shim/fsync_log.c) that logs every
fsync/fdatasync, with the file it synced, after the call returned. Each
write endpoint must show at least one sync of the database's WAL between
the request and its 200. With `synchronous=OFF`, or NORMAL (WAL synced only
at checkpoints), a commit syncs nothing and these tests fail.
"""
import os
import unittest

from harness import ServerTestCase, chat, msg

SHIM = os.environ.get("PS_FSYNC_SHIM")
T0 = "2025-03-01T10:00:00.000Z"


class FsyncPerWriteTest(ServerTestCase):

    def setUp(self):
        self._servers = []
        self.assertTrue(SHIM and os.path.exists(SHIM),
                        "PS_FSYNC_SHIM must name the built shim (tests/CMakeLists.txt sets it)")
        srv = self.new_server(start=False)
        self.log = os.path.join(srv.tmpdir, "fsync.log")
        asan = os.environ.get("ASAN_OPTIONS", "")
        # An ASan build wants its runtime first; the shim is not instrumented.
        srv.env = {"LD_PRELOAD": SHIM, "PS_FSYNC_LOG": self.log,
                   "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
        self.server = srv.start()
        self.wal = os.path.realpath(srv.db_path) + "-wal"

    def wal_syncs(self):
        try:
            with open(self.log) as f:
                return sum(1 for line in f if line.rstrip("\n").split(" ", 1)[-1] == self.wal)
        except FileNotFoundError:
            return 0

    def assertSyncedBeforeAnswer(self, what, send):
        before = self.wal_syncs()
        status, _, doc = send()
        self.assertEqual(status, 200, "%s answered %d: %r" % (what, status, doc))
        after = self.wal_syncs()
        self.assertGreaterEqual(after - before, 1,
                                "%s was acknowledged without a sync of %s" % (what, self.wal))

    def test_shim_sees_the_server(self):
        # The oracle itself: opening the store syncs nothing of the WAL yet
        # but the shim must be loaded; a write makes the WAL file exist.
        s = self.server
        s.push_ok([chat("warm", "t", [msg("m0", timestamp=T0)], last_modified=T0)])
        self.assertTrue(os.path.exists(self.wal), "the store runs in WAL mode")
        self.assertGreater(self.wal_syncs(), 0, "the shim logged no sync at all")

    def test_every_write_endpoint_syncs_before_its_200(self):
        s = self.server
        writes = [
            ("/pushChats", lambda: s.request("POST", "/pushChats", body={"chats": [
                chat("c1", "one", [msg("m1", timestamp=T0)], last_modified=T0)]})),
            ("/sync", lambda: s.sync({"deviceId": "devA", "clientClock": 5, "chats": [
                chat("c2", "two", [msg("m2", timestamp=T0)], last_modified=T0,
                     updatedAtLamport=[6, "devA"])]})),
            ("/sync edit", lambda: s.sync({"deviceId": "devA", "clientClock": 7, "chats": [
                chat("c2", "two renamed", [msg("m2", timestamp=T0)], last_modified=T0,
                     updatedAtLamport=[8, "devA"])]})),
            ("/deleteChat", lambda: s.request("POST", "/deleteChat", body={"chatId": "c1"})),
            ("/deleteChats", lambda: s.request("POST", "/deleteChats", body={"chatIds": ["c2"]})),
            ("/v2/sync", lambda: s.v2({"deviceId": "devB", "changes": [
                {"chatId": "c3", "clock": 1, "fields": {"title": "three"},
                 "messages": [{"id": "m3", "role": "user", "content": "x"}]}]})),
            ("/v2/sync delete", lambda: s.v2({"deviceId": "devB", "changes": [
                {"chatId": "c3", "clock": 2, "deleteMessages": ["m3"]},
                {"chatId": "c3", "clock": 3, "deleteChat": True}]})),
        ]
        for what, send in writes:
            with self.subTest(what):
                self.assertSyncedBeforeAnswer(what, send)


if __name__ == "__main__":
    unittest.main()
