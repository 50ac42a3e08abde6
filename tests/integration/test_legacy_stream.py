"""Streamed legacy answers (src/server/legacy_answer.c): /sync's `missing`
and /fetchChats, made piece by piece from the store as the socket drains.

Oracle: the seed protocol (sync-protocol.md) — /fetchChats lists every live
chat as pushed; /sync {"chats": [...]} answers the chats the client lacks
(not the ones it sent unchanged) and the deletions — checked on a history
several pieces long (1 MiB each), plain and gzip'd. And what a failure once
the answer has begun going out does: the connection is cut, so the client
sees a broken answer (an incomplete chunked body), never a shorter valid
JSON and never a 200 that parses (polysyncd_faults fails the Nth store
call, for every N until the request needs fewer calls).
"""
import gzip
import http.client
import json
import unittest

from faultkit import FaultTestCase
from harness import ServerTestCase, by_id, chat, msg

T0 = "2025-03-01T10:00:00.000Z"


def history(n_chats=36):
    """About 3.5 MB over chats of uneven sizes, so pieces end anywhere."""
    chats = []
    for i in range(n_chats):
        body = ("chat %d " % i) * (1400 + 1000 * (i % 7))
        msgs = [msg("c%d-m%d" % (i, j), content="%d:%s" % (j, body), timestamp=T0)
                for j in range(1 + i % 5)]
        chats.append(chat("c%03d" % i, "title %d" % i, msgs, last_modified=T0))
    return chats


def same_content(test, got, sent):
    """The seed fields of a chat as sent (the server adds its own)."""
    test.assertEqual(got["title"], sent["title"], sent["id"])
    test.assertEqual([(m["id"], m["content"]) for m in got["messages"]],
                     [(m["id"], m["content"]) for m in sent["messages"]], sent["id"])


def raw_request(server, method, path, body=None, headers=None):
    """(status, body bytes or None when the body was cut, headers)."""
    conn = server.http_connection()
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        try:
            payload = resp.read()
        except (http.client.IncompleteRead, ConnectionError):
            payload = None
        return resp.status, payload, resp.headers
    finally:
        conn.close()


class StreamedAnswerTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.sent = history()
        for k in range(0, len(self.sent), 12):
            self.server.push_ok(self.sent[k:k + 12])
        self.server.delete_chat("c005")
        self.live = [c for c in self.sent if c["id"] != "c005"]

    def test_fetch_chats_lists_every_live_chat(self):
        status, payload, headers = raw_request(self.server, "GET", "/fetchChats")
        self.assertEqual(status, 200)
        self.assertGreater(len(payload), 3 * 1024 * 1024, "not several pieces long")
        got = json.loads(payload)
        self.assertEqual(sorted(c["id"] for c in got), sorted(c["id"] for c in self.live))
        for c in self.live:
            same_content(self, by_id(got)[c["id"]], c)

    def test_fresh_pull_gets_everything_and_the_deletion(self):
        doc = self.server.sync_ok({"chats": []})
        self.assertEqual(sorted(c["id"] for c in doc["missing"]),
                         sorted(c["id"] for c in self.live))
        for c in self.live:
            same_content(self, by_id(doc["missing"])[c["id"]], c)
        self.assertEqual([d["id"] for d in doc["deletions"]], ["c005"])
        self.assertIsInstance(doc["serverClock"], int)

    def test_chats_sent_unchanged_are_not_returned(self):
        sent = [c for c in self.live if int(c["id"][1:]) % 3 == 0]
        doc = self.server.sync_ok({"chats": sent})
        want = sorted(c["id"] for c in self.live if c not in sent)
        self.assertEqual(sorted(c["id"] for c in doc["missing"]), want)

    def test_gzip_answers_are_the_same_json(self):
        for method, path, body in (("GET", "/fetchChats", None),
                                   ("POST", "/sync", {"chats": []})):
            status, plain, _ = raw_request(self.server, method, path, body)
            self.assertEqual(status, 200)
            status, packed, headers = raw_request(self.server, method, path, body,
                                                  {"Accept-Encoding": "gzip"})
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("Content-Encoding"), "gzip")
            a, b = json.loads(plain), json.loads(gzip.decompress(packed))
            if isinstance(a, dict):   # serverClock may move between two syncs
                a.pop("serverClock"), b.pop("serverClock")
            self.assertEqual(a, b, path)


class StreamFailureTest(FaultTestCase):
    """A store call failing at any point of a long answer."""

    def setUp(self):
        super().setUp()
        sent = history()
        for k in range(0, len(sent), 12):
            self.server.push_ok(sent[k:k + 12])
        self.ids = sorted(c["id"] for c in sent)

    def sweep(self, what, method, path, body, listed):
        cut = 0
        for n in range(1, 200):
            logged = len(self.faults_logged())
            self.arm(n, "io")
            status, payload, _ = raw_request(self.server, method, path, body)
            self.disarm()
            fired = self.faults_logged()[logged:]
            where = "%s, call %d failed" % (what, n)
            if not fired:
                self.assertEqual(status, 200, where)
                self.assertEqual(sorted(c["id"] for c in listed(json.loads(payload))), self.ids)
                self.assertGreater(cut, 0, "%s: no failure hit a streamed piece" % what)
                return
            if status != 200:   # before the answer began: an error answer
                self.assertEqual(status, 500, where)
                self.assertEqual(json.loads(payload)["code"], "storage_error", where)
                continue
            # after: the body is cut short, never a valid (shorter) JSON
            cut += 1
            if payload is not None:
                with self.assertRaises(ValueError, msg=where):
                    json.loads(payload)
            self.server.fetch()   # and the server still serves
        self.fail("%s: still failing after 200 calls" % what)

    def test_fetch_chats(self):
        self.sweep("GET /fetchChats", "GET", "/fetchChats", None, lambda doc: doc)

    def test_fresh_pull(self):
        self.sweep("POST /sync", "POST", "/sync", {"chats": []}, lambda doc: doc["missing"])


if __name__ == "__main__":
    unittest.main()


class AheadRaceTest(ServerTestCase):
    """A /sync whose `missing` is one chat bigger than a piece: its head
    (the piece made in the sync's transaction) holds that chat, and the
    closing (`]`, deletions, serverClock) is made ahead on the answer's own
    thread. The server's thread must not read the answer's state once it
    has asked that thread: polysyncd_faults holds it 50 ms after asking
    (PS_FAULT_AHEAD_DELAY_MS), so the closing is surely made by then — a
    server that then took the answer as finished sent the head alone with
    its Content-Length, a 200 that does not parse (seen 1 run in 10 under
    ASan before)."""

    def test_the_closing_made_ahead_is_sent(self):
        import faultkit
        self.assertTrue(faultkit.POLYSYNCD_FAULTS, "POLYSYNCD_FAULTS must name polysyncd_faults")
        srv = faultkit.FaultServer((), env={"PS_FAULT_AHEAD_DELAY_MS": "50"})
        self._servers.append(srv)
        self.addCleanup(self._finish, srv)
        srv.start()
        big = chat("big", "big", [msg("m1", content="x" * (2 * 1024 * 1024), timestamp=T0)],
                   last_modified=T0)
        srv.push_ok([big])
        for _ in range(3):
            status, payload, _ = raw_request(srv, "POST", "/sync", {"chats": []})
            self.assertEqual(status, 200)
            doc = json.loads(payload)
            self.assertEqual([c["id"] for c in doc["missing"]], ["big"])
            self.assertEqual(len(doc["missing"][0]["messages"][0]["content"]), 2 * 1024 * 1024)
            self.assertIsInstance(doc["serverClock"], int)
