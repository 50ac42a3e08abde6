"""
`polysyncd migrate --from URL --to URL` (docs/storage.md, "Moving a store"):
a SQLite store written by a real server (two users, legacy and v2 devices,
deleted chats and messages) goes to PostgreSQL and back to a new SQLite
file. Oracle: what the servers answer, not the tool's own report — every
user sees the same chats and tombstones on each copy, and a v2 device's
cursor from before the move goes on where it was (the change sequence moved
with the data); a user disabled on the source is refused on each copy and the
device registry came along (the admin commands' view). Also: a non-empty
target is refused unless --force.
Needs PS_TEST_DB=postgres://... (the make check fixture).
"""
import json
import os
import unittest

import harness
from harness import chat, msg, run_polysyncd
from sectools import SecurityTestCase

T0 = "2024-01-15T10:00:00.000Z"


class MigrateTest(SecurityTestCase):

    def setUp(self):
        if harness.BACKEND != "postgres":
            self.fail("the migrate suite needs PS_TEST_DB=postgres://...")
        super().setUp()

    def server_on(self, url):
        s = self.new_server(self.hs_args(), token=self.tok("alice"), start=False)
        s.db_url = url
        return s.start()

    def views(self, s):
        """What each user sees: legacy listing and a full v2 pull."""
        out = {}
        for name in ("alice", "bob"):
            u = s.as_user(self.tok(name))
            legacy = sorted(u.fetch(), key=lambda c: c["id"])
            pulled = u.v2_ok({"deviceId": "inspector", "cursor": None})
            out[name] = (legacy, sorted(pulled["chats"], key=lambda c: c["id"]))
        return out

    def test_sqlite_to_postgres_and_back(self):
        src = self.new_server(self.hs_args(), token=self.tok("alice"), start=False)
        src.db_url = "sqlite:" + os.path.join(src.tmpdir, "source.db")
        src.start()
        alice, bob = src.as_user(self.tok("alice")), src.as_user(self.tok("bob"))
        alice.push_ok([chat("c%02d" % i, "chat %d" % i,
                            [msg("c%02d-m%d" % (i, j), "text %d.%d \"q\" \\" % (i, j),
                                 timestamp=T0) for j in range(5)], last_modified=T0)
                       for i in range(20)])
        alice.delete_chats(["c03", "c07"])
        bob.push_ok([chat("b1", "bob's", [msg("bm1", "hi", timestamp=T0)])])
        phone = alice.v2_ok({"deviceId": "phone", "cursor": None})
        alice.v2_ok({"deviceId": "laptop", "cursor": None, "changes": [
            {"chatId": "c01", "clock": 50, "fields": {"title": "renamed"},
             "deleteMessages": ["c01-m0"]}]})
        before = self.views(src)
        src.stop()
        r = run_polysyncd(["user", "disable", "carol", "--db", src.db_url])
        self.assertEqual(r.returncode, 0, r.stderr)

        pg_url = harness.new_pg_database()
        r = run_polysyncd(["migrate", "--from", src.db_url, "--to", pg_url])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("migrated and verified", r.stdout)
        self.assertIn("2 users, 21 chats, 101 messages", r.stdout)

        back_url = "sqlite:" + os.path.join(src.tmpdir, "back.db")
        r = run_polysyncd(["migrate", "--from", pg_url, "--to", back_url])
        self.assertEqual(r.returncode, 0, r.stderr)

        # refused on a non-empty target, changing nothing; --force replaces
        r = run_polysyncd(["migrate", "--from", back_url, "--to", pg_url])
        self.assertEqual(r.returncode, 1)
        self.assertIn("not empty", r.stderr)
        r = run_polysyncd(["migrate", "--from", back_url, "--to", pg_url, "--force"])
        self.assertEqual(r.returncode, 0, r.stderr)

        for url in (pg_url, back_url):
            s = self.server_on(url)
            self.assertEqual(self.views(s), before, url)
            # the phone's cursor from before the move: exactly the laptop's change
            a = s.as_user(self.tok("alice"))
            doc = a.v2_ok({"deviceId": "phone", "cursor": phone["cursor"]})
            self.assertEqual([c["id"] for c in doc["chats"]], ["c01"], url)
            self.assertEqual(doc["chats"][0]["fields"], {"title": "renamed"})
            status = s.as_user(self.tok("carol")).request("GET", "/fetchChats")[0]
            self.assertEqual(status, 403, "%s: carol's refusal did not move" % url)
            s.stop()
            r = run_polysyncd(["devices", "list", "--user", "alice", "--db", url, "--json"])
            self.assertEqual(r.returncode, 0, r.stderr)
            ids = sorted(d["id"] for d in json.loads(r.stdout))
            # "": the legacy requests without a deviceId (docs/protocol.md, "Devices")
            self.assertEqual(ids, ["", "inspector", "laptop", "phone"], url)


if __name__ == "__main__":
    unittest.main()
