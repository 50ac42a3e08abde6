"""A failing store, through every endpoint (docs/protocol.md, "Errors").

polysyncd_faults is polysyncd built with the fault-injecting store
(src/store/store_fault.c): the file named by PS_FAULT_STORE_FILE says
"GEN N KIND", and the Nth store call after a new GEN fails with KIND
(busy, io, full). For each endpoint the test fails its 1st call, then its
2nd, ... until a request makes fewer calls than N and succeeds; every
failed one must answer the documented status (busy: 503 store_busy with
Retry-After; io, full: 500 storage_error; /health: 503 store_unavailable)
with a JSON error, and leave every table of the store as it was. The next
request of the sweep then shows the server still serves (a transaction
left open by a failed commit would fail it).

One exception, by design of /v2/sync (docs/architecture.md): the push is
committed before the pull is read, so a store failure in the pull answers
the error with the push already durable (resending it is harmless: the
merge is idempotent). The test checks exactly that for those calls.
"""
import http.client
import os
import re
import time
import unittest

from faultkit import ALLOC_SWITCH, FaultTestCase
from harness import chat, msg

T0 = "2025-02-01T10:00:00.000Z"
KINDS = ("io", "busy", "full")
MAX_CALLS = 60
HEALTH_PROBE_S = 1.0   # docs/operations.md: "It probes at most once a second"   # a request making more store calls than this is a finding in itself


class StoreFaultTest(FaultTestCase):

    def setUp(self):
        super().setUp()
        s = self.server
        s.push_ok([chat("kept", "kept", [msg("k1", timestamp=T0)], last_modified=T0),
                   chat("doomed", "doomed", [msg("d1", timestamp=T0)], last_modified=T0)])
        s.delete_chat("doomed")
        s.v2_ok({"deviceId": "A", "changes": [{"chatId": "v", "clock": 3, "fields": {"title": "v2"}}]})

    def sweep(self, what, send, ok_status=200, failed=None, prepare=None, landed=None,
              after_fault=None):
        """Fails call 1, 2, ... of `send` until it succeeds; returns the
        number of calls that were failed. `prepare` runs before each try,
        unarmed. `landed`: for /v2/sync, whose push commits before its pull
        is read: once a fault has hit the push's commit, later calls are
        the pull's, and a fault there answers the error with the push
        already durable; landed() must then see it."""
        n = 0
        past_commit = False
        while True:
            n += 1
            self.assertLessEqual(n, MAX_CALLS, "%s: still failing after %d calls" % (what, n))
            kind = KINDS[n % len(KINDS)]
            if prepare:
                prepare()
            logged = len(self.faults_logged())
            state = self.server.store_state()
            self.arm(n, kind)
            status, headers, doc = send()
            self.disarm()
            fired = self.faults_logged()[logged:]
            if not fired:
                self.assertEqual(status, ok_status, "%s with no fault: %r" % (what, doc))
                self.assertGreater(n, 1, "%s made no store call at all" % what)
                return n - 1
            self.assertEqual(len(fired), 1, fired)
            where = "%s, call %d (%s) failed %s" % (what, n, fired[0][1], kind)
            if failed:
                want_status, want_code = failed
            elif kind == "busy":
                want_status, want_code = 503, "store_busy"
            else:
                want_status, want_code = 500, "storage_error"
            self.assertEqual(status, want_status, "%s: %r" % (where, doc))
            self.assertErrorBody(doc, want_code)
            if want_code == "store_busy":
                self.assertTrue(headers.get("Retry-After"), "%s: no Retry-After" % where)
            if past_commit:
                self.assertTrue(landed(), "%s: an error in the pull, but the push is not durable" % where)
            else:
                self.assertStoreUnchanged(state, where)
            if landed and fired[0][1] == "commit":
                past_commit = True
            if after_fault:
                after_fault()

    def test_every_endpoint_answers_a_failing_store(self):
        s = self.server
        counter = iter(range(1, 10 ** 6))

        def legacy_sync():
            i = next(counter)
            return s.sync({"deviceId": "L", "clientClock": 100 + i, "chats": [
                chat("kept", "renamed %d" % i, [msg("k1", timestamp=T0), msg("n%d" % i, timestamp=T0)],
                     last_modified=T0, updatedAtLamport=[100 + i, "L"])]})

        def push():
            i = next(counter)
            return s.request("POST", "/pushChats", body={"chats": [
                chat("p%d" % i, "pushed", [msg("pm%d" % i, timestamp=T0)], last_modified=T0)]})

        # /health probes the store at most once a second and answers the
        # last probe in between (src/server/health.c): each try waits for a
        # fresh probe, and after a failed one for the answer to recover.
        def health_due():
            time.sleep(HEALTH_PROBE_S + 0.1)

        def health_recovered():
            deadline = time.monotonic() + 5 * HEALTH_PROBE_S + 5
            while s.request("GET", "/health")[0] != 200:
                self.assertLess(time.monotonic(), deadline, "/health never recovered")
                time.sleep(0.1)

        def v2_landed():
            return any(c["id"] == "v" and c.get("title") == "t%d" % last[0] for c in s.fetch())

        last = [0]

        def v2_push():
            i = next(counter)
            last[0] = i
            return s.v2({"deviceId": "B", "changes": [
                {"chatId": "v", "clock": 1000 + i, "fields": {"title": "t%d" % i},
                 "messages": [{"id": "vm%d" % i, "role": "user", "content": "x"}]},
                {"chatId": "kept", "clock": 1000 + i, "deleteMessages": ["k1"]}]})

        def make_doomed():
            i = next(counter)
            s.push_ok([chat("del%d" % i, "to delete", last_modified=T0)])
            doomed.append("del%d" % i)

        doomed = []
        delete_one = lambda: s.request("POST", "/deleteChat", body={"chatId": doomed[-1]})
        delete_many = lambda: s.request("POST", "/deleteChats", body={"chatIds": [doomed[-1], "nope"]})

        cases = [
            ("GET /fetchChats", lambda: s.request("GET", "/fetchChats"), None, None, None),
            ("POST /sync", legacy_sync, None, None, None),
            ("POST /pushChats", push, None, None, None),
            ("POST /deleteChat", delete_one, None, make_doomed, None),
            ("POST /deleteChats", delete_many, None, make_doomed, None),
            ("POST /v2/sync push", v2_push, None, None, v2_landed),
            ("POST /v2/sync first pull", lambda: s.v2({"deviceId": "R", "cursor": None}), None, None,
             None),
            ("GET /health", lambda: s.request("GET", "/health"), (503, "store_unavailable"),
             health_due, None),
        ]
        for what, send, failed, prepare, landed in cases:
            with self.subTest(what):
                calls = self.sweep(what, send, failed=failed, prepare=prepare, landed=landed,
                                   after_fault=health_recovered if what == "GET /health" else None)
                self.assertGreaterEqual(calls, 1)


ALLOC_FIRED = re.compile(r"^ps-fault: allocation (\d+) failed$", re.M)
MAX_ALLOCS = 2000


class AllocFaultTest(FaultTestCase):
    """The Nth allocation of polysync's own code fails (tests/shim/
    alloc_fault.c), for N = 1, 2, ... over each endpoint's request: the
    server must not crash (the ASan build turns a NULL dereference or a
    leak into a failure at stop), must answer a JSON error, 503 overloaded
    or 500 internal_error/storage_error, or close the connection unanswered
    (when not even the request's own state could be allocated), and leave
    the store unchanged; or, when the failed allocation was one it could do
    without, answer 200 with the whole answer (judged per endpoint: the
    very answer made without a fault, or the chats it must hold), never
    one missing a chat or cut short. json-c's writers count as
    allocations (their printbuf): a NULL text must not become a short or
    `null` answer. The next request of the sweep shows it still serves."""

    SWITCH = ALLOC_SWITCH

    def setUp(self):
        super().setUp()
        self.server.push_ok([chat("kept", "kept", [msg("k1", timestamp=T0)], last_modified=T0)])

    def sweep(self, what, send, may_land=False, whole=None):
        n = 0
        while True:
            n += 1
            self.assertLessEqual(n, MAX_ALLOCS, "%s: still failing after %d allocations" % (what, n))
            logged = len(ALLOC_FIRED.findall(self.server.stderr_text()))
            state = self.server.store_state()
            self.arm(n)
            try:
                status, _, doc = send(n)
            except (ConnectionError, http.client.HTTPException):
                # no memory even for the request's own state: the connection
                # is closed unanswered, which a client treats as a failure
                status, doc = None, None
            self.disarm()
            fired = ALLOC_FIRED.findall(self.server.stderr_text())[logged:]
            if not fired:
                self.assertEqual(status, 200, "%s with no fault: %r" % (what, doc))
                return n - 1
            where = "%s, allocation %d failed" % (what, n)
            if status == 200:
                # done without it (a cache, a log line): fine, if nothing is missing
                self.assertIsInstance(doc, (dict, list), "%s: 200 but not JSON: %r" % (where, self.server.last_body[:200]))
                if whole:
                    whole(doc, where)
                continue
            if status is None:
                if not may_land:
                    self.assertStoreUnchanged(state, where)
                continue
            self.assertIn(status, (500, 503), "%s: %r" % (where, doc))
            self.assertIsInstance(doc, dict, "%s: the error is not JSON: %r" % (where, self.server.last_body[:200]))
            self.assertIn(doc.get("code"), ("overloaded", "internal_error", "storage_error"), where)
            if not may_land:
                self.assertStoreUnchanged(state, where)

    def test_every_allocation_of_a_request_may_fail(self):
        s = self.server
        fetched = s.fetch()

        def same_fetch(doc, where):
            self.assertEqual(doc, fetched, "%s: 200 with another answer" % where)

        def pulls_kept(doc, where):
            # device B's first pull: the chat pushed in setUp, with its messages
            kept = [c for c in doc.get("chats", []) if c.get("id") == "kept"]
            self.assertEqual(len(kept), 1, "%s: 200 without the chat to pull: %r" % (where, doc))
            self.assertIn("k1", [m.get("id") for m in kept[0].get("messages", [])], where)

        whole = {"GET /fetchChats": same_fetch, "POST /v2/sync": pulls_kept}
        cases = [
            ("GET /fetchChats", lambda n: s.request("GET", "/fetchChats"), False),
            ("POST /sync", lambda n: s.sync({"deviceId": "L", "clientClock": n, "chats": [
                chat("kept", "t%d" % n, [msg("k1", timestamp=T0), msg("a1", content="v%d" % n, timestamp=T0)],
                     last_modified=T0, updatedAtLamport=[n, "L"])]}), False),
            ("POST /v2/sync", lambda n: s.v2({"deviceId": "B", "changes": [
                {"chatId": "v", "clock": n, "fields": {"title": "t%d" % n},
                 "messages": [{"id": "m1", "role": "user", "content": "x%d" % n}]}]}), True),
            # may land: the answer is written after the commit (an answer
            # that cannot be written is then 503, and deleting again is harmless)
            ("POST /deleteChat", lambda n: s.request("POST", "/deleteChat", body={"chatId": "nope%d" % n}),
             True),
        ]
        for what, send, may_land in cases:
            with self.subTest(what):
                allocs = self.sweep(what, send, may_land, whole.get(what))
                self.assertGreater(allocs, 0, "%s allocated nothing" % what)
                print("%s: %d allocations failed in turn" % (what, allocs))


if __name__ == "__main__":
    unittest.main()
