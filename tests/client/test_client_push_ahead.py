"""A push of several batches keeps two requests in flight (src/client/push_ahead.c,
docs/client.md "A push of several batches"). Judged by what the server sees through
a proxy (the first request carries one change, so that its answer names the run at
once; the third request goes out while the second is still unanswered; every
request after the first names the run; requests in flight together carry no chat in
common; the last batch, which pulls, goes out alone) and by the data: another device
pulls exactly what A imported, and a request that fails, or a client killed with two
requests in flight, loses nothing (A's log keeps every entry whose answer was not
saved, and the next sync completes)."""
import json
import os
import signal
import subprocess
import threading
import unittest

from clientkit import TIMEOUT, ClientTestCase, assert_converged, v2_bodies, wait_for

RETRY = ["--retries", "30", "--retry-max-delay", "1", "--timeout", "10"]
# 1,000 changes a request (BATCH_CHANGES) after a first request of one change:
# 5 requests, the 2nd and 3rd push-only ones sent together, the 5th (it pulls)
# alone
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

    @staticmethod
    def first_chat(body):
        """The chat of the first change a request body carries (None: none)."""
        changes = json.loads(body).get("changes") or [None]
        return changes[0] and changes[0]["chatId"]

    def carrying(self, chat_id):
        """A `when` matching the request whose first change is to chat_id:
        the 2nd and 3rd requests leave together, in no set order."""
        return lambda req: self.first_chat(req["body"]) == chat_id

    def seen_carrying(self, chat_id):
        return lambda: any(self.first_chat(r[3]) == chat_id
                           for r in self.proxy_a.seen("/v2/sync"))

    def batches(self):
        """How many requests carried each batch, by its first chat."""
        out = {}
        for b in v2_bodies(self.proxy_a):
            key = b["changes"][0]["chatId"] if b["changes"] else None
            out[key] = out.get(key, 0) + 1
        return out

    def assert_all_there(self):
        self.assertEqual(self.a.pending(), 0)
        self.b.sync()
        state = assert_converged(self, self.a, self.b)
        self.assertEqual(len(state), CHATS)

    def test_two_pushes_in_flight(self):
        # batch 2 is answered only once batch 3 has arrived: a client that
        # waits for each answer before the next request never sends it
        rule = self.proxy_a.add("/v2/sync", when=self.carrying("bulk-00001"),
                                hold=self.seen_carrying("bulk-01001"))
        st = self.a.sync(*RETRY).json()
        self.assertTrue(rule.held, "batch 3 did not go out while batch 2 was in flight")
        self.assertEqual(st["sent"]["changes"], CHATS)
        self.assertEqual(st["requests"], 5 + 1)  # and GET /health
        bodies = v2_bodies(self.proxy_a)
        self.assertEqual(len(bodies), 5)
        self.assertNotIn("run", bodies[0])
        # the first request only names the run: one change, the log's first
        self.assertEqual([c["chatId"] for c in bodies[0]["changes"]], ["bulk-00000"])
        run = bodies[1]["run"]
        self.assertTrue(run)
        for b in bodies[1:]:
            self.assertEqual(b["run"], run)
            self.assertIsNone(b["cursor"])
        self.assertEqual([b["limit"] for b in bodies[:4]], [1, 1, 1, 1])
        self.assertEqual([len(b["changes"]) for b in bodies[1:4]], [1000, 1000, 1000])
        self.assertGreater(bodies[4]["limit"], 1)  # the last: it pulls, after the others
        # each change once, each batch in log order (the import's); the last
        # request's probes (a chat id alone, docs/protocol.md) left aside
        batches = sorted([[c["chatId"] for c in b["changes"] if "messages" in c] for b in bodies])
        self.assertEqual([i for b in batches for i in b], ["bulk-%05d" % i for i in range(CHATS)])
        in_flight = [{c["chatId"] for c in b["changes"]} for b in bodies[1:3]]
        self.assertFalse(in_flight[0] & in_flight[1])
        self.assert_all_there()

    def test_first_of_two_in_flight_fails(self):
        # batch 2 is merged by the server but its answer is lost, while batch 3
        # is in flight: batch 3's answer must not be saved before batch 2's
        # (saving it drops the log up to its last entry), so both are sent
        # again and nothing is lost
        self.proxy_a.add("/v2/sync", when=self.carrying("bulk-00001"),
                         hold=self.seen_carrying("bulk-01001"), after_forward=True, drop=True)
        self.a.sync(*RETRY)
        self.assertEqual(self.batches(),
                         {"bulk-00000": 1, "bulk-00001": 2, "bulk-01001": 2, "bulk-02001": 1,
                          "bulk-03001": 1})
        self.assert_all_there()

    def test_client_killed_with_two_in_flight(self):
        killed = threading.Event()
        for first in ("bulk-00001", "bulk-01001"):
            self.proxy_a.add("/v2/sync", when=self.carrying(first), hold=killed.is_set)
        p = self.a.popen("sync", *RETRY, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.seen_carrying("bulk-00001")() and self.seen_carrying("bulk-01001")(),
                 what="two requests in flight")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=TIMEOUT)
        killed.set()
        self.assertEqual(self.a.integrity(), "ok")
        # the first request's answer was saved, neither answer in flight was
        self.assertEqual(self.a.pending(), CHATS - 1)
        self.a.sync(*RETRY)
        self.assert_all_there()


if __name__ == "__main__":
    unittest.main()
