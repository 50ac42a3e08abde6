"""
Per-user isolation with JWT auth (issue 7): two users with the same chat ids
sync through every endpoint (/sync, /pushChats, /fetchChats, /deleteChat,
/deleteChats, /v2/sync, /v2/events) and see only their own chats, counts
and deletions, either way round; and `polysyncd user list` / `user delete`
run against a stopped server's database.
"""
import re
import select
import subprocess
import time
import unittest

from harness import chat, msg, run_polysyncd
from sectools import SecurityTestCase


def titles(chats):
    return {c["id"]: c.get("title") for c in chats}


def mids(chats, cid):
    for c in chats:
        if c["id"] == cid:
            return sorted(m["id"] for m in c.get("messages", []))
    return None


class Stream:
    """GET /v2/events for one token, read on a raw socket."""

    def __init__(self, server, token):
        self.sock = server.connect()
        self.sock.sendall(("GET /v2/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                           "Authorization: Bearer %s\r\n\r\n" % token).encode())
        self.buf = b""
        if not self.wait_for(b"\r\n\r\n"):
            raise AssertionError("no answer head: %r" % self.buf)
        self.status = int(self.buf.split(b"\r\n", 1)[0].split()[1])

    def wait_for(self, needle, timeout=10.0):
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                data = self.sock.recv(65536)
                if not data:
                    return False
                self.buf += data
        return True

    def consume(self):
        self.buf = b""

    def close(self):
        self.sock.close()


class IsolationTest(SecurityTestCase):

    def setUp(self):
        super().setUp()
        self.s = self.auth_server()
        self.alice = self.s.as_user(self.tok("alice"))
        self.bob = self.s.as_user(self.tok("bob"))

    def seed_both(self):
        self.alice.push_ok([chat("c1", "alice c1", [msg("a1", "alice secret")]),
                            chat("c2", "alice c2", [msg("a2")])])
        self.bob.push_ok([chat("c1", "bob c1", [msg("b1", "bob secret")]),
                          chat("c3", "bob c3", [msg("b3")])])

    def test_push_and_fetch(self):
        self.seed_both()
        a = self.alice.fetch()
        a_raw = self.alice.last_body
        b = self.bob.fetch()
        self.assertEqual(titles(a), {"c1": "alice c1", "c2": "alice c2"})
        self.assertEqual(titles(b), {"c1": "bob c1", "c3": "bob c3"})
        self.assertEqual(mids(a, "c1"), ["a1"])
        self.assertEqual(mids(b, "c1"), ["b1"])
        self.assertNotIn(b"bob secret", a_raw)
        self.assertNotIn(b"alice secret", self.bob.last_body)

    def test_legacy_sync(self):
        doc = self.alice.sync_ok({"deviceId": "A", "chats": [
            chat("c1", "alice c1", [msg("a1")]), chat("c2", "alice c2")]})
        self.assertEqual(doc["missing"], [])
        # Bob's first sync sees nothing of Alice's.
        doc = self.bob.sync_ok({"deviceId": "B", "chats": []})
        self.assertEqual(doc["missing"], [])
        self.assertEqual(doc["deletions"], [])
        # Bob's c1 merges with nothing of Alice's, and the other way round.
        doc = self.bob.sync_ok({"deviceId": "B", "chats": [chat("c1", "bob c1", [msg("b1")])]})
        self.assertEqual([c["id"] for c in doc["missing"]], [], doc)
        doc = self.alice.sync_ok({"deviceId": "A2", "chats": []})
        self.assertEqual(titles(doc["missing"]), {"c1": "alice c1", "c2": "alice c2"})
        self.assertEqual(mids(doc["missing"], "c1"), ["a1"])
        doc = self.bob.sync_ok({"deviceId": "B2", "chats": []})
        self.assertEqual(titles(doc["missing"]), {"c1": "bob c1"})
        self.assertEqual(mids(doc["missing"], "c1"), ["b1"])

    def test_deletions(self):
        self.seed_both()
        self.assertEqual(self.bob.delete_chat("c1"), {"ok": True, "deleted": True})
        self.assertEqual(titles(self.alice.fetch()), {"c1": "alice c1", "c2": "alice c2"})
        # Alice deleting a chat only Bob has deletes nothing of Bob's.
        self.assertEqual(self.alice.delete_chat("c3")["deleted"], False)
        self.assertEqual(titles(self.bob.fetch()), {"c3": "bob c3"})
        # Counts are per user: c1 is deleted for Bob already, c2 is Alice's.
        self.assertEqual(self.bob.delete_chats(["c1", "c2", "c3"])["deletedCount"], 1)
        self.assertEqual(self.bob.fetch(), [])
        self.assertEqual(titles(self.alice.fetch()), {"c1": "alice c1", "c2": "alice c2"})
        # Alice's syncs report none of Bob's deletions (at most her own
        # request to delete c3, which she never had); Bob's report his.
        doc = self.alice.sync_ok({"deviceId": "A", "chats": []})
        self.assertLessEqual({d["id"] for d in doc["deletions"]}, {"c3"}, doc["deletions"])
        self.assertEqual(titles(doc["missing"]), {"c1": "alice c1", "c2": "alice c2"})
        doc = self.bob.sync_ok({"deviceId": "B", "chats": []})
        ids = {d["id"] for d in doc["deletions"]}
        self.assertTrue({"c1", "c3"} <= ids <= {"c1", "c2", "c3"}, ids)
        self.assertEqual(doc["missing"], [])

    def test_deletions_through_sync(self):
        self.seed_both()
        self.alice.sync_ok({"deviceId": "A", "chats": [],
                            "deleted": ["c1"],
                            "deletions": [{"id": "c3", "lamport": [99, "A"]}],
                            "deletionRecords": [{"id": "c2", "deletedAtLamport": [99, "A"]}]})
        self.assertEqual(self.alice.fetch(), [])
        self.assertEqual(titles(self.bob.fetch()), {"c1": "bob c1", "c3": "bob c3"})
        doc = self.bob.sync_ok({"deviceId": "B", "chats": []})
        self.assertEqual(doc["deletions"], [])

    def test_v2(self):
        a = self.alice.v2_ok({"deviceId": "A", "cursor": None, "changes": [
            {"chatId": "c1", "clock": 1, "fields": {"title": "alice c1"},
             "messages": [{"id": "a1", "role": "user", "content": "alice secret"}]}]})
        b = self.bob.v2_ok({"deviceId": "B", "cursor": None})
        self.assertEqual(b["chats"], [], "Bob's first sync must not see Alice's chat")
        b = self.bob.v2_ok({"deviceId": "B", "cursor": b["cursor"], "changes": [
            {"chatId": "c1", "clock": 1, "fields": {"title": "bob c1"},
             "messages": [{"id": "b1", "role": "user", "content": "bob secret"}]},
            {"chatId": "c9", "clock": 2, "fields": {"title": "bob c9"}}]})
        self.assertEqual(b["chats"], [])
        # Alice's pull after Bob's changes: nothing new for her.
        a2 = self.alice.v2_ok({"deviceId": "A", "cursor": a["cursor"]})
        self.assertEqual(a2["chats"], [], a2)
        # A fresh device of each user sees exactly that user's chats.
        fa = self.alice.v2_ok({"deviceId": "A-new", "cursor": None})
        fb = self.bob.v2_ok({"deviceId": "B-new", "cursor": None})
        self.assertEqual(sorted(c["id"] for c in fa["chats"]), ["c1"])
        self.assertEqual(sorted(c["id"] for c in fb["chats"]), ["c1", "c9"])
        self.assertNotIn("bob", repr(fa))
        self.assertNotIn("alice", repr(fb))
        # A v2 chat deletion by Bob leaves Alice's c1 alone.
        self.bob.v2_ok({"deviceId": "B", "changes": [{"chatId": "c1", "clock": 5, "deleteChat": True}]})
        a3 = self.alice.v2_ok({"deviceId": "A", "cursor": a2["cursor"]})
        self.assertEqual(a3["chats"], [])
        self.assertEqual(titles(self.alice.fetch()), {"c1": "alice c1"})
        self.assertEqual(titles(self.bob.fetch()), {"c9": "bob c9"})

    def test_v2_cursor_of_another_user_leaks_nothing(self):
        self.alice.v2_ok({"deviceId": "A", "changes": [
            {"chatId": "c1", "clock": 1, "fields": {"title": "alice c1"}}]})
        first = self.alice.v2_ok({"deviceId": "A2", "cursor": None})
        self.alice.v2_ok({"deviceId": "A", "changes": [
            {"chatId": "c2", "clock": 2, "fields": {"title": "alice c2"}}]})
        status, _, doc = self.bob.v2({"deviceId": "B", "cursor": first["cursor"]})
        if status == 200:
            self.assertEqual(doc["chats"], [], doc)
        else:
            self.assertIn((status, doc.get("code")), ((400, "invalid_cursor"), (410, "cursor_expired")),
                          doc)

    def test_events(self):
        sa, sb = Stream(self.s, self.alice.token), Stream(self.s, self.bob.token)
        self.addCleanup(sa.close)
        self.addCleanup(sb.close)
        self.assertEqual((sa.status, sb.status), (200, 200))
        self.assertTrue(sa.wait_for(b": connected") and sb.wait_for(b": connected"))
        sa.consume()
        sb.consume()
        self.alice.push_ok([chat("c1", "alice c1", [msg("a1")])])
        self.assertTrue(sa.wait_for(b"event: changed"), sa.buf)
        self.assertFalse(sb.wait_for(b"event: changed", 1.0), "Bob woken by Alice's change")
        sa.consume()
        self.bob.v2_ok({"deviceId": "B", "changes": [
            {"chatId": "c1", "clock": 1, "fields": {"title": "bob c1"}}]})
        self.assertTrue(sb.wait_for(b"event: changed"), sb.buf)
        self.assertFalse(sa.wait_for(b"event: changed", 1.0), "Alice woken by Bob's change")
        self.assertNotIn(b"bob c1", sa.buf + sb.buf, "the stream carries no chat data")

    def test_unusual_user_names_are_distinct(self):
        names = ["alice", "Alice", "alice ", "a%", "a_", "ab", "x' OR '1'='1", "\u00e9l\u00e8ve",
                 "a" * 256]
        views = {n: self.s.as_user(self.tok(n)) for n in names}
        for i, n in enumerate(names):
            views[n].push_ok([chat("shared", "title of %d" % i), chat("own-%d" % i, "t")])
        for i, n in enumerate(names):
            with self.subTest(user=n):
                self.assertEqual(titles(views[n].fetch()),
                                 {"shared": "title of %d" % i, "own-%d" % i: "t"})


class UserCliTest(SecurityTestCase):

    def setUp(self):
        super().setUp()
        self.s = self.auth_server()
        self.alice = self.s.as_user(self.tok("alice"))
        self.bob = self.s.as_user(self.tok("bob"))
        self.alice.push_ok([chat("c1", "a1"), chat("c2", "a2")])
        self.bob.push_ok([chat("c1", "b1")])
        self.db = self.s.db_url  # PS_TEST_DB
        self.s.stop()

    def users(self):
        r = run_polysyncd(["user", "list", "--db", self.db])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = {}
        for line in r.stdout.splitlines():
            m = re.match(r"^\s*(\S+?):?\s+(\d+)\b", line)
            if m:
                out[m.group(1)] = int(m.group(2))
        return out

    def test_list(self):
        self.assertEqual(self.users(), {"alice": 2, "bob": 1})

    def test_delete_with_yes(self):
        self.s.start()
        self.bob.push_ok([chat("c9", "b9")])
        self.bob.delete_chat("c9")           # a tombstone, also Bob's data
        self.s.stop()
        r = run_polysyncd(["user", "delete", "bob", "--db", self.db, "--yes"])
        self.assertEqual(r.returncode, 0, r.stderr)
        users = self.users()
        self.assertEqual(users.get("alice"), 2)
        self.assertIn(users.get("bob"), (None, 0), users)
        self.s.start()
        # issue 18: Bob's old token is refused (his device cannot re-create
        # the account); a token issued after the deletion starts afresh
        status, _, doc = self.bob.request("GET", "/fetchChats")
        self.assertEqual((status, doc.get("code")), (401, "token_revoked"), doc)
        r = run_polysyncd(["token", "issue", "--user", "bob", "--jwt-secret-file",
                           self.secret_file, "--db", self.db])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.bob = self.s.as_user(r.stdout.strip())
        self.assertEqual(self.bob.fetch(), [])
        doc = self.bob.sync_ok({"deviceId": "B", "chats": []})
        self.assertEqual((doc["missing"], doc["deletions"]), ([], []))
        self.assertEqual(self.bob.v2_ok({"deviceId": "B", "cursor": None})["chats"], [])
        self.assertEqual(titles(self.alice.fetch()), {"c1": "a1", "c2": "a2"})

    def test_delete_without_yes_refuses_without_a_terminal(self):
        r = run_polysyncd(["user", "delete", "bob", "--db", self.db], stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(self.users(), {"alice": 2, "bob": 1})
        r = run_polysyncd(["user", "delete", "bob", "--db", self.db], stdin=subprocess.PIPE)
        self.assertEqual(r.returncode, 1, "a pipe on stdin is not a terminal either")
        self.assertEqual(self.users(), {"alice": 2, "bob": 1})


if __name__ == "__main__":
    unittest.main()
