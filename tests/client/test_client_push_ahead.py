"""A push of several batches keeps two requests in flight (src/client/push_ahead.c,
docs/client.md "A push of several batches"). Judged by what the server sees through
a proxy (the third request goes out while the second is still unanswered; every
request after the first names the run; requests in flight together carry no chat in
common; the last batch, which pulls, goes out alone) and by the data: another device
pulls exactly what A imported, and a request that fails, or a client killed with two
requests in flight, loses nothing (A's log keeps every entry whose answer was not
saved, and the next sync completes)."""
import json
import os
import signal
import threading
import unittest

from clientkit import TIMEOUT, ClientTestCase, assert_converged, v2_bodies, wait_for

RETRY = ["--retries", "30", "--retry-max-delay", "1", "--timeout", "10"]
# 1,000 changes a request (BATCH_CHANGES): 4 requests, the 2nd and 3rd push-only
# ones sent together, the 4th (it pulls) alone
CHATS = 3500


class PushAhead(ClientTestCase):
    def setUp(self):
        super().setUp()
        self.srv = self.server()
        self.proxy_a = self.proxy(self.srv)
        self.a, self.b = self.device("A", self.proxy_a), self.device("B", self.srv)
        data = [{"id": "bulk-%05d" % i, "title": "Bulk %d" % i,
                 "createdAt": "2024-01-15T10:00:00.000Z",
                 "messages": [{"id": "bulk-%05d-m%d" % (i, j), "role": "user",
                               "content": "message %d of chat %d" % (j, i),
                               "timestamp": "2024-01-15T10:0%d:00.000Z" % j}
                              for j in range(2)]}
                for i in range(CHATS)]
        path = os.path.join(self.dir, "bulk.json")
        with open(path, "w") as f:
            json.dump(data, f)
        self.a.run("import", path)
        self.assertEqual(self.a.pending(), CHATS)

    def nth(self, n):
        """A `when` matching the proxy's n-th /v2/sync request (1-based)."""
        return lambda req: len(self.proxy_a.seen("/v2/sync")) == n

    def seen_at_least(self, n):
        return lambda: len(self.proxy_a.seen("/v2/sync")) >= n

    def assert_all_there(self):
        self.assertEqual(self.a.pending(), 0)
        self.b.sync()
        state = assert_converged(self, self.a, self.b)
        self.assertEqual(len(state), CHATS)

    def test_two_pushes_in_flight(self):
        # the 2nd request is answered only once the 3rd has arrived: a client
        # that waits for each answer before the next request never sends it
        rule = self.proxy_a.add("/v2/sync", when=self.nth(2), hold=self.seen_at_least(3))
        st = self.a.sync(*RETRY).json()
        self.assertTrue(rule.held, "the 3rd request did not go out while the 2nd was in flight")
        self.assertEqual(st["sent"]["changes"], CHATS)
        self.assertEqual(st["requests"], 4 + 1)  # and GET /health
        bodies = v2_bodies(self.proxy_a)
        self.assertEqual(len(bodies), 4)
        self.assertNotIn("run", bodies[0])
        run = bodies[1]["run"]
        self.assertTrue(run)
        for b in bodies[1:]:
            self.assertEqual(b["run"], run)
            self.assertIsNone(b["cursor"])
        self.assertEqual([b["limit"] for b in bodies[:3]], [1, 1, 1])
        self.assertGreater(bodies[3]["limit"], 1)
        # each change once, in log order (the import's); the last request's
        # probes (a chat id alone, docs/protocol.md) left aside
        ids = [c["chatId"] for b in bodies for c in b["changes"] if "messages" in c]
        self.assertEqual(ids, ["bulk-%05d" % i for i in range(CHATS)])
        in_flight = [{c["chatId"] for c in b["changes"]} for b in bodies[1:3]]
        self.assertFalse(in_flight[0] & in_flight[1])
        self.assert_all_there()

    def test_first_of_two_in_flight_fails(self):
        # the 2nd request is merged by the server but its answer is lost, while
        # the 3rd is in flight: the 3rd's answer must not be saved before the
        # 2nd's (saving it drops the log up to its last entry), so both batches
        # are sent again and nothing is lost
        self.proxy_a.add("/v2/sync", when=self.nth(2), hold=self.seen_at_least(3),
                         after_forward=True, drop=True)
        st = self.a.sync(*RETRY).json()
        self.assertGreaterEqual(st["sent"]["changes"], CHATS)
        bodies = v2_bodies(self.proxy_a)
        self.assertGreaterEqual(len(bodies), 5)
        later = [[c for c in b["changes"] if "messages" in c] for b in bodies[3:]]
        self.assertIn(bodies[1]["changes"], later)  # sent again
        sent_after = {c["chatId"] for ch in later for c in ch}
        self.assertLessEqual({c["chatId"] for c in bodies[2]["changes"]}, sent_after)
        self.assert_all_there()

    def test_client_killed_with_two_in_flight(self):
        killed = threading.Event()
        self.proxy_a.add("/v2/sync", when=self.nth(2), hold=killed.is_set)
        self.proxy_a.add("/v2/sync", when=self.nth(3), hold=killed.is_set)
        p = self.a.popen("sync", *RETRY, stdout=open(os.devnull, "w"),
                         stderr=open(os.devnull, "w"))
        wait_for(self.seen_at_least(3), what="two requests in flight")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=TIMEOUT)
        killed.set()
        self.assertEqual(self.a.integrity(), "ok")
        # the first batch's answer was saved, neither answer in flight was
        self.assertEqual(self.a.pending(), CHATS - 1000)
        self.a.sync(*RETRY)
        self.assert_all_there()


if __name__ == "__main__":
    unittest.main()
