"""A pull of several pages asks for page i+1 while page i is applied
(src/client/pull_ahead.c, docs/client.md "A pull of several pages"). Judged by
the protocol (docs/protocol.md: a request sent before the previous answer is
saved names the last saved cursor as `ack`) and by the data: what a device
pulls equals what the other device pushed, whole pages only are ever saved,
and a page that fails, a client killed or stopped mid-pull end with the same
state after the next sync."""
import json
import os
import signal
import subprocess
import threading
import unittest

from clientkit import TIMEOUT, ClientTestCase, v2_bodies, wait_for

RETRY = ["--retries", "30", "--retry-max-delay", "1", "--timeout", "10"]
CHATS = 1100  # retitled on A: a delta pull of pages of 500 chats (PAGE_LIMIT)


class PullAhead(ClientTestCase):
    def setUp(self):
        super().setUp()
        self.srv = self.server()
        # C always goes through the proxy (a new server URL would resync it)
        self.proxy_c = self.proxy(self.srv)
        self.a, self.c = self.device("A", self.srv), self.device("C", self.proxy_c)

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(data, f)
        return path

    def three_page_delta(self):
        """C holds CHATS chats; A retitles all of them: C's next pull is 3 pages."""
        data = [{"id": "bulk-%05d" % i, "title": "Bulk %d" % i,
                 "createdAt": "2024-01-15T10:00:00.000Z",
                 "messages": [{"id": "bulk-%05d-m0" % i, "role": "user",
                               "content": "message of chat %d" % i,
                               "timestamp": "2024-01-15T10:00:00.000Z"}]}
                for i in range(CHATS)]
        self.a.run("import", self.write("bulk.json", data))
        self.a.sync()
        self.c.sync()
        for chat in data:
            chat["title"] += " (v2)"
            chat["lastModified"] = "2025-01-01T00:00:00.000Z"
        self.a.run("import", self.write("retitled.json", data))
        self.a.sync()
        return data

    def proxied(self):
        """C's proxy, its record of requests so far cleared."""
        with self.proxy_c.lock:
            self.proxy_c.requests.clear()
        return self.proxy_c

    def assert_acks_name_saved_cursors(self, bodies):
        """Request i of a pull goes out when answer i-1 arrived, before it is
        saved: its ack is the cursor saved then, the one request i-1 went out
        from (the first request's cursor is itself the ack)."""
        self.assertNotIn("ack", bodies[0])
        for i in range(1, len(bodies)):
            self.assertIn("ack", bodies[i], "request %d" % i)
            self.assertEqual(bodies[i]["ack"], bodies[i - 1]["cursor"], "request %d" % i)
            self.assertNotEqual(bodies[i]["cursor"], bodies[i]["ack"])
            self.assertEqual(bodies[i]["changes"], [])

    def retitled(self, device):
        return sum(c["title"].endswith(" (v2)") for c in device.chats().values())

    def test_fresh_pull_of_several_pages(self):
        # 20 MB in chats of 100 KB: a first pull of 3 answers of up to 8 MiB
        data = [{"id": "big-%03d" % i, "title": "Big %d" % i,
                 "createdAt": "2024-01-15T10:00:00.000Z",
                 "messages": [{"id": "big-%03d-m0" % i, "role": "user",
                               "content": ("%d " % i) + "y" * 100000,
                               "timestamp": "2024-01-15T10:00:00.000Z"}]}
                for i in range(200)]
        self.a.run("import", self.write("big.json", data))
        self.a.sync()
        proxy = self.proxied()
        st = self.c.sync().json()
        self.assertEqual(st["pages"], 3, st)
        self.assertEqual(st["received"]["chats"], 200)
        bodies = v2_bodies(proxy)
        self.assertEqual(len(bodies), 3)
        self.assertIsNone(bodies[0]["cursor"])
        self.assertIsNone(bodies[1]["ack"])  # nothing saved yet: acknowledges nothing
        self.assert_acks_name_saved_cursors(bodies)
        got = self.c.chats()
        self.assertEqual(sorted(got), sorted(c["id"] for c in data))
        for chat in data:
            self.assertEqual(got[chat["id"]]["title"], chat["title"])
            self.assertEqual([m["content"] for m in got[chat["id"]]["messages"]],
                             [chat["messages"][0]["content"]])
        self.assertEqual(got, self.a.chats())

    def test_delta_pull_of_several_pages(self):
        data = self.three_page_delta()
        proxy = self.proxied()
        st = self.c.sync().json()
        self.assertEqual(st["pages"], 3, st)
        self.assertEqual(st["received"]["chats"], CHATS)
        bodies = v2_bodies(proxy)
        self.assertEqual(len(bodies), 3)
        self.assert_acks_name_saved_cursors(bodies)
        got = self.c.chats()
        self.assertEqual({i: c["title"] for i, c in got.items()},
                         {c["id"]: c["title"] for c in data})
        self.assertEqual(got, self.a.chats())

    def test_a_page_asked_ahead_that_fails_is_asked_again(self):
        self.three_page_delta()
        proxy = self.proxied()
        # the first page asked ahead gets a 500, the second one's connection
        # drops (twice: libcurl itself sends a request again once when a
        # reused connection closes without an answer)
        proxy.add("/v2/sync", when=lambda req: b'"ack"' in req["body"], status=500,
                  body=b'{"error":"injected","code":"internal"}')
        proxy.add("/v2/sync", times=2, when=lambda req: b'"ack"' in req["body"] and len(
            [r for r in proxy.seen("/v2/sync") if r[4] == 200]) >= 2, drop=True)
        st = self.c.sync(*RETRY).json()
        self.assertEqual(st["pages"], 3, st)
        bodies = v2_bodies(proxy)
        statuses = [r[4] for r in proxy.seen("/v2/sync")]
        self.assertIn(500, statuses)
        self.assertIn(-1, statuses)
        for i, s in enumerate(statuses):
            if s != 200 and statuses[i + 1] == 200:
                # the same page asked again by the sync itself, from the saved cursor
                self.assertEqual(bodies[i + 1]["cursor"], bodies[i]["cursor"])
                self.assertNotIn("ack", bodies[i + 1])
                self.assertEqual(statuses[i + 1], 200)
        self.assertEqual(self.c.chats(), self.a.chats())
        self.assertEqual(self.retitled(self.c), CHATS)

    def test_server_restarted_mid_pull(self):
        # polysyncd killed and started again as the first page asked ahead
        # reaches it: that request's connection drops, the sync asks for the
        # page again (with its retries) and completes from the saved cursor
        self.three_page_delta()
        proxy = self.proxied()
        proxy.add("/v2/sync", when=lambda req: b'"ack"' in req["body"], restart="hard",
                  drop=True)
        st = self.c.sync(*RETRY).json()
        self.assertEqual(st["pages"], 3, st)
        self.assertIn(-1, [r[4] for r in proxy.seen("/v2/sync")])
        self.assertEqual(self.c.chats(), self.a.chats())
        self.assertEqual(self.retitled(self.c), CHATS)

    def interrupted_mid_pull(self, sig):
        self.three_page_delta()
        proxy = self.proxied()
        # slow answers: the pull is certainly in its middle
        proxy.add("/v2/sync", times=10, delay=1.0)
        p = self.c.popen("sync", *RETRY, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: len([r for r in proxy.seen("/v2/sync") if r[4] == 200]) >= 1
                 and len(proxy.seen("/v2/sync")) >= 2, what="a page asked ahead")
        p.send_signal(sig)
        _, err = p.communicate(timeout=TIMEOUT)
        self.assertEqual(self.c.integrity(), "ok")
        # whole pages saved, never a part of one
        self.assertIn(self.retitled(self.c), (0, 500, 1000), err)
        return p.returncode

    def test_client_killed_mid_pull(self):
        self.assertEqual(self.interrupted_mid_pull(signal.SIGKILL), -signal.SIGKILL)
        self.c.sync()
        self.assertEqual(self.c.chats(), self.a.chats())
        self.assertEqual(self.retitled(self.c), CHATS)

    def test_client_stopped_mid_pull(self):
        self.assertEqual(self.interrupted_mid_pull(signal.SIGTERM), 130)
        self.c.sync()
        self.assertEqual(self.c.chats(), self.a.chats())
        self.assertEqual(self.retitled(self.c), CHATS)

    def test_local_edit_while_a_later_page_is_on_its_way(self):
        # C renames a chat of the last page while its pull runs; the page, asked
        # for before the rename, carries A's older title: C's edit wins, here
        # and, sent next in the same sync, on A
        self.three_page_delta()
        proxy = self.proxied()
        # the last page's request (the third) and all after it wait until the
        # rename is made: the page is surely asked for before it and answered
        # after it, however slow the machine (a delay was a race under ASan)
        renamed = threading.Event()
        held = proxy.add("/v2/sync", times=10, hold=renamed.is_set,
                  when=lambda req: len(proxy.seen("/v2/sync")) >= 3)
        last = "bulk-%05d" % (CHATS - 1)
        p = self.c.popen("sync", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: len(proxy.seen("/v2/sync")) >= 3, what="the last page asked for")
        self.c.run("chat", "rename", last, "C's title, made mid-pull", server=False)
        renamed.set()
        _, err = p.communicate(timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, err)
        self.assertTrue(held.held, "the last page's request was not held")
        self.assertEqual(self.c.chats()[last]["title"], "C's title, made mid-pull")
        self.assertEqual(self.c.pending(), 0)
        self.a.sync()
        self.assertEqual(self.a.chats()[last]["title"], "C's title, made mid-pull")
        self.assertEqual(self.c.chats(), self.a.chats())


if __name__ == "__main__":
    unittest.main()
