"""The client's server workarounds follow what the server says it does
(GET /health: `capabilities`, `maxChanges`; docs/protocol.md), and the
client asks only when a workaround is about to run.

- The verification pull (a second pull under `<deviceId>~verify` after a
  push that may have lost) is left out when the server says
  `lostWritesResent`; a server that says nothing, or lists capabilities
  without it, still gets it. (After a push that carried an import it is
  made whatever the server says: test_client_e2e's pagination test.) Either way the losing edit ends as the server
  decided (the chat stays deleted): the oracle is the merge rule of
  docs/merge.md (a deletion with a higher clock beats an edit).
- The probes of a first pull (`{chatId, clock: 0, at: 0}`) fit the
  server's `maxChanges` instead of a guess that a small `--max-chats` would
  refuse; a server that lists capabilities without
  `firstPullNamedDeletions` gets none.
"""
import json
import os
import unittest

from clientkit import ClientTestCase, v2_bodies

SAYS_NOTHING = b'{"status": "healthy"}'
SAYS_NO_RESEND = b'{"status": "healthy", "capabilities": ["firstPullNamedDeletions"]}'
SAYS_NO_NAMED_DELETIONS = b'{"status": "healthy", "capabilities": ["lostWritesResent"]}'


def verify_pulls(proxy):
    return [b for b in v2_bodies(proxy) if b["deviceId"].endswith("~verify")]


def probes(body):
    return [ch for ch in body.get("changes", [])
            if ch.get("clock") == 0 and ch.get("at") == 0 and set(ch) == {"chatId", "clock", "at"}]


class VerificationPull(ClientTestCase):
    def losing_edit(self, health=None):
        """A edits a chat that B deleted at a higher clock; returns the chat,
        the proxy, and A's store after A's sync."""
        srv = self.server()
        px = self.proxy(srv)
        if health is not None:
            px.add("/health", times=100, status=200, body=health)
        # only A goes through the proxy, so what it sees is A's
        a, b = self.device("a", px), self.device("b", srv)
        cid = a.new_chat("to be deleted on B")
        a.sync()
        b.sync()
        for i in range(5):  # B's clock runs ahead of A's
            b.new_chat("B's chat %d" % i)
        b.run("chat", "delete", cid)
        b.sync()
        a.run("chat", "rename", cid, "edited on A, too late")
        a.sync()
        return cid, px, a

    def test_not_made_when_the_server_resends_lost_writes(self):
        cid, px, a = self.losing_edit()
        self.assertEqual(len(px.seen("/health")), 1)  # asked once: a push may have lost
        self.assertEqual(verify_pulls(px), [])
        self.assertNotIn(cid, a.chats())  # the deletion stands on A too
        self.assertEqual(a.pending(), 0)
        # the next sync has nothing pending to verify and asks nothing
        a.sync()
        self.assertEqual(len(px.seen("/health")), 1)

    def test_made_after_an_import_whatever_the_server_says(self):
        # a newer import wins on the server (between imports the newer file
        # wins, docs/merge.md) but loses here to the copy the first sync
        # brought back; only the verification pull shows A the winner
        srv = self.server()
        px = self.proxy(srv)
        a = self.device("a", px)
        path = os.path.join(self.dir, "backup.json")
        chat = {"id": "imported", "title": "Old", "createdAt": "2024-01-15T10:00:00.000Z",
                "messages": []}
        for doc in (chat, dict(chat, title="New", lastModified="2025-01-01T00:00:00.000Z")):
            with open(path, "w") as f:
                json.dump([doc], f)
            a.run("import", path)
            a.sync()
        self.assertEqual(len(verify_pulls(px)), 1)
        self.assertEqual(a.chats()["imported"]["title"], "New")

    def test_made_when_the_server_says_nothing(self):
        for health in (SAYS_NOTHING, SAYS_NO_RESEND):
            with self.subTest(health=health):
                cid, px, a = self.losing_edit(health)
                self.assertEqual(len(px.seen("/health")), 1)
                self.assertEqual(len(verify_pulls(px)), 1)
                self.assertNotIn(cid, a.chats())

    def test_made_when_health_fails(self):
        srv = self.server()
        px = self.proxy(srv)
        px.add("/health", times=100, status=503, body=b'{"error":"down","code":"overloaded"}')
        a, b = self.device("a", px), self.device("b", srv)
        cid = a.new_chat("x")
        a.sync()
        b.sync()
        b.new_chat("y")
        b.new_chat("z")
        b.run("chat", "delete", cid)
        b.sync()
        a.run("chat", "rename", cid, "late")
        st = a.sync().json()  # /health failing fails nothing, and is not retried
        self.assertEqual(len(px.seen("/health")), 1)
        self.assertEqual(st["retries"], 0)
        self.assertEqual(len(verify_pulls(px)), 1)
        self.assertNotIn(cid, a.chats())

    def test_no_question_without_a_workaround(self):
        # a first sync that carries every local chat needs neither the
        # verification (no cursor) nor probes (nothing left to name)
        srv = self.server()
        px = self.proxy(srv)
        a = self.device("a", px)
        a.new_chat("alone")
        a.sync()
        a.sync()  # nothing to push: nothing may have lost
        self.assertEqual(px.seen("/health"), [])
        self.assertEqual(verify_pulls(px), [])


class Probes(ClientTestCase):
    def resync_with_five_chats(self, server_args, health=None):
        """A store with five chats syncs with a server, then its cursor is
        refused (410): the resync's last request is a first pull."""
        srv = self.server(server_args)
        px = self.proxy(srv)
        if health is not None:
            px.add("/health", times=100, status=200, body=health)
        a = self.device("a", px)
        ids = [a.new_chat("chat %d" % i) for i in range(5)]
        a.sync()
        px.add("/v2/sync", status=410,
               body=b'{"error":"cursor too old","code":"cursor_expired","field":"cursor"}',
               when=lambda req: json.loads(req["body"]).get("cursor") is not None)
        a.new_chat("one more")  # so the next sync sends its cursor
        st = a.sync().json()
        self.assertTrue(st["fullResync"])
        return px, a, ids

    def test_probes_fit_the_advertised_max_changes(self):
        # --max-chats 4: six snapshot entries are refused together (413),
        # then go 3 and 3; the last batch, a first pull, names chats it does
        # not carry, only as many as fit in 4 changes (before: all of them,
        # which the server refused with 413, and then none)
        px, a, ids = self.resync_with_five_chats(["--max-chats", "4"])
        with_probes = [(b, r[4]) for b, r in zip(v2_bodies(px), px.seen("/v2/sync")) if probes(b)]
        self.assertTrue(with_probes, "the first pull names the chats it does not carry")
        for body, status in with_probes:
            self.assertEqual(status, 200)
            self.assertEqual(len(body["changes"]), 4)

    def test_no_probes_when_the_server_does_not_answer_them(self):
        px, a, ids = self.resync_with_five_chats(["--max-chats", "3"], SAYS_NO_NAMED_DELETIONS)
        first_pulls = [b for b in v2_bodies(px) if b["cursor"] is None and b["limit"] > 1]
        self.assertTrue(first_pulls)
        self.assertEqual([probes(b) for b in first_pulls], [[]] * len(first_pulls))


if __name__ == "__main__":
    unittest.main()
