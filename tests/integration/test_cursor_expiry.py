"""
410 for an expired v2 cursor (docs/protocol.md, "Expired cursors"). The
retention is counted in days, so the test plays the purge's part: it stops
the server and raises the user's purged_seq in the store, as the hourly
purge does when it forgets tombstones, then checks that an older cursor gets
410 cursor_expired (changing nothing), a newer one still works, and a resync
with cursor null brings the device back — including the deletion it missed.
"""
import sqlite3
import unittest

import harness

from harness import ServerTestCase


class CursorExpiryTest(ServerTestCase):

    def change(self, chat_id, clock, **kw):
        return dict({"chatId": chat_id, "clock": clock}, **kw)

    def test_cursor_before_a_forgotten_tombstone_gets_410(self):
        s = self.server
        first = s.v2_ok({"deviceId": "B", "cursor": None, "changes": [
            self.change("keep", 1, fields={"title": "kept"}),
            self.change("gone", 2, fields={"title": "to delete"})]})
        old_cursor = first["cursor"]
        s.v2_ok({"deviceId": "A", "cursor": None,
                 "changes": [self.change("gone", 5, deleteChat=True)]})
        fresh = s.v2_ok({"deviceId": "C", "cursor": None})["cursor"]

        s.stop()
        if harness.BACKEND == "postgres":  # PS_TEST_DB
            harness.pg_query(s.db_url, "UPDATE users SET purged_seq ="
                             " (SELECT max(seq) FROM chats WHERE NOT live)")
        else:
            with sqlite3.connect(s.db_path) as db:  # what the purge records
                (seq,) = db.execute("SELECT max(seq) FROM chats WHERE live = 0").fetchone()
                db.execute("UPDATE users SET purged_seq = ?", (seq,))
        s.restart()

        status, _, doc = s.request("POST", "/v2/sync", body={
            "deviceId": "B", "cursor": old_cursor,
            "changes": [self.change("keep", 9, fields={"title": "must not land"})]})
        self.assertEqual(status, 410)
        self.assertEqual(doc["code"], "cursor_expired")
        titles = {c["id"]: c.get("title") for c in s.fetch()}
        self.assertEqual(titles, {"keep": "kept"}, "a refused sync changed nothing")

        # a cursor issued after the purge point still works
        self.assertEqual(s.v2_ok({"deviceId": "C", "cursor": fresh})["chats"], [])

        # B resyncs from scratch, sending what it holds: it learns "gone" is gone
        doc = s.v2_ok({"deviceId": "B", "cursor": None, "changes": [
            self.change("keep", 9, fields={"title": "kept"}),
            self.change("gone", 2, fields={"title": "to delete"})]})
        got = {c["id"]: c for c in doc["chats"]}
        self.assertTrue(got.get("gone", {}).get("deleted"), doc)
        self.assertNotIn("gone", {c["id"] for c in s.fetch()})


if __name__ == "__main__":
    unittest.main()
