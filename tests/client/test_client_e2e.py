"""End to end: three client stores (A, B, C) and one polysyncd, driven through
the CLI. Creates, concurrent edits, deletions, an outage, a server restarted
mid-sync and a client killed mid-sync must all end with every device equal."""
import json
import os
import signal
import subprocess
import time
import unittest

from clientkit import (FAST_RETRIES, TIMEOUT, ClientTestCase, assert_converged, v2_bodies,
                       wait_for)

RETRY = ["--retries", "30", "--retry-max-delay", "1", "--timeout", "10"]


class ThreeDevices(ClientTestCase):
    def setUp(self):
        super().setUp()
        self.srv = self.server()
        self.a, self.b, self.c = (self.device(n, self.srv) for n in ("A", "B", "C"))

    def sync_all(self, *devices):
        for d in devices or (self.a, self.b, self.c):
            d.sync()

    def settle(self):
        """Two rounds: every change reaches the server, then every device."""
        self.sync_all()
        self.sync_all()
        return assert_converged(self, self.a, self.b, self.c)

    def test_created_on_a_appears_on_b_and_c(self):
        cid = self.a.new_chat("From A")
        m1 = self.a.add_msg(cid, "first")
        m2 = self.a.add_msg(cid, "answer", role="assistant")
        st = self.a.sync().json()
        self.assertEqual(st["protocol"], "v2")
        self.assertEqual(st["sent"]["changes"], 3)
        self.assertEqual(self.a.pending(), 0)
        for d in (self.b, self.c):
            d.sync()
            chat = d.chats()[cid]
            self.assertEqual(chat["title"], "From A")
            self.assertEqual([m["id"] for m in chat["messages"]], [m1, m2])
        # a sync with nothing new moves nothing
        st = self.b.sync().json()
        self.assertEqual(st["received"]["chats"], 0)
        self.assertEqual(st["sent"]["changes"], 0)
        self.settle()

    def test_retitle_and_new_message_both_survive(self):
        # docs/merge.md scenario 1 through v2: A's title and B's message
        cid = self.a.new_chat("Old Title")
        self.settle()
        self.a.run("chat", "rename", cid, "New Title")
        mb = self.b.add_msg(cid, "from B")
        self.a.sync()
        self.b.sync()
        state = self.settle()
        self.assertEqual(state[cid]["title"], "New Title")
        self.assertIn(mb, [m["id"] for m in state[cid]["messages"]])

    def test_concurrent_edits_converge(self):
        cid = self.a.new_chat("Shared")
        m = self.a.add_msg(cid, "original")
        self.settle()
        # all three change the same things without syncing
        self.a.run("chat", "rename", cid, "Title A")
        self.b.run("chat", "rename", cid, "Title B")
        self.c.run("chat", "rename", cid, "Title C")
        self.a.run("msg", "edit", cid, m, "edit A")
        self.b.run("msg", "edit", cid, m, "edit B")
        added = [d.add_msg(cid, "new from " + d.name) for d in (self.a, self.b, self.c)]
        self.c.run("chat", "archive", cid)
        self.sync_all(self.c, self.a, self.b)
        state = self.settle()
        chat = state[cid]
        self.assertIn(chat["title"], ("Title A", "Title B", "Title C"))
        self.assertIn([x for x in chat["messages"] if x["id"] == m][0]["content"],
                      ("edit A", "edit B"))
        ids = [x["id"] for x in chat["messages"]]
        for mid in added:  # a message another device added is never lost
            self.assertIn(mid, ids)
        self.assertTrue(chat["isArchived"])

    def test_deletes_propagate(self):
        keep = self.a.new_chat("Keep")
        gone = self.a.new_chat("Delete me")
        m1 = self.a.add_msg(keep, "stays")
        m2 = self.a.add_msg(keep, "goes")
        self.settle()
        self.b.run("chat", "delete", gone)
        self.c.run("msg", "delete", keep, m2)
        st_b = self.b.sync().json()
        self.c.sync()
        self.a.sync()
        self.assertNotIn(gone, self.a.chats())
        state = self.settle()
        self.assertEqual(set(state), {keep})
        self.assertEqual([x["id"] for x in state[keep]["messages"]], [m1])
        self.assertEqual(st_b["sent"]["changes"], 1)

    def test_edit_older_than_a_deletion_stays_deleted(self):
        # scenario 2: A deletes; B's concurrent edit has a lower Lamport counter
        cid = self.a.new_chat("Contested")
        self.settle()
        for i in range(5):  # A's clock runs ahead
            self.a.new_chat("filler %d" % i)
        self.a.run("chat", "delete", cid)
        self.b.run("chat", "rename", cid, "B's edit")
        self.a.sync()
        self.b.sync()
        state = self.settle()
        self.assertNotIn(cid, state)

    def test_edit_newer_than_a_deletion_brings_it_back(self):
        cid = self.a.new_chat("Contested")
        self.settle()
        self.a.run("chat", "delete", cid)
        for i in range(5):  # B's clock runs ahead of A's deletion
            self.b.new_chat("filler %d" % i)
        mb = self.b.add_msg(cid, "B was still writing")
        self.a.sync()
        self.b.sync()
        state = self.settle()
        self.assertIn(cid, state)
        self.assertIn(mb, [m["id"] for m in state[cid]["messages"]])

    def test_edits_while_the_server_is_down(self):
        cid = self.a.new_chat("Before the outage")
        self.settle()
        self.srv.stop()
        self.a.run("chat", "rename", cid, "Renamed offline")
        ma = self.a.add_msg(cid, "offline on A")
        new_b = self.b.new_chat("Created offline on B")
        for d in (self.a, self.b):
            r = d.run("sync", *FAST_RETRIES, ok=False)
            self.assertEqual(r.rc, 2, r)
            self.assertIn("cannot reach", r.err)
        self.assertEqual(self.a.pending(), 2)
        self.srv.start()  # same port, same data
        state = self.settle()
        self.assertEqual(state[cid]["title"], "Renamed offline")
        self.assertIn(ma, [m["id"] for m in state[cid]["messages"]])
        self.assertIn(new_b, state)
        self.assertEqual(self.a.pending(), 0)

    def big_import(self, device, chats=2500, messages=3):
        data = [{"id": "bulk-%05d" % i, "title": "Bulk %d" % i,
                 "createdAt": "2024-01-15T10:00:00.000Z",
                 "messages": [{"id": "bulk-%05d-m%d" % (i, j), "role": "user",
                               "content": "message %d of chat %d " % (j, i) + "x" * 200,
                               "timestamp": "2024-01-15T10:%02d:00.000Z" % j}
                              for j in range(messages)]}
                for i in range(chats)]
        path = os.path.join(self.dir, "bulk-%s.json" % device.name)
        with open(path, "w") as f:
            json.dump(data, f)
        device.run("import", path)
        return data

    def test_server_restarted_mid_sync(self):
        # 2,500 changes go in four requests (one change naming the run, then
        # 1,000, 1,000 sent together, and 499); the server is killed while
        # the second is in flight (after it was applied: the answer is lost)
        # and started again; the client retries and completes.
        self.big_import(self.a)
        proxy = self.proxy(self.srv)
        self.a.server = proxy

        def second(req):  # by its content: the third goes out at the same time
            changes = json.loads(req["body"]).get("changes") or [{}]
            return changes[0].get("chatId") == "bulk-00001"
        proxy.add("/v2/sync", when=second, after_forward=True, restart="hard")
        st = self.a.run("sync", "--json", *RETRY).json()
        self.assertEqual(st["sent"]["changes"], 2500)
        self.assertIn(-1, [r[4] for r in proxy.seen("/v2/sync")])  # the lost answer
        self.assertEqual(self.a.pending(), 0)
        bodies = v2_bodies(proxy)
        self.assertGreaterEqual(len(bodies), 5)  # 4 batches + the retried one
        lost = [i for i, b in enumerate(bodies) if b["changes"] and
                b["changes"][0]["chatId"] == "bulk-00001"]
        self.assertGreaterEqual(len(lost), 2)  # sent again, as it was:
        self.assertTrue(all(bodies[i]["changes"] == bodies[lost[0]]["changes"] for i in lost))
        state = self.settle()
        self.assertEqual(len(state), 2500)

    def test_server_restarted_before_answering(self):
        # the server goes away before it sees the request at all
        cid = self.a.new_chat("restart")
        proxy = self.proxy(self.srv)
        self.a.server = proxy
        proxy.add("/v2/sync", restart="hard", drop=True)
        self.a.run("sync", *RETRY)
        self.b.sync()
        self.assertIn(cid, self.b.chats())
        self.settle()

    def test_client_killed_mid_sync_then_run_again(self):
        self.big_import(self.a, chats=3000)
        self.b.new_chat("B was here")
        self.b.sync()
        proxy = self.proxy(self.srv)
        self.a.server = proxy
        # slow answers, so the sync is certainly in its middle when killed
        proxy.add("/v2/sync", times=100, delay=0.3)
        p = self.a.popen("sync", *RETRY, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: len([r for r in proxy.seen("/v2/sync") if r[4] == 200]) >= 2,
                 what="two answered requests")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=TIMEOUT)
        self.assertEqual(self.a.integrity(), "ok")
        left = self.a.pending()
        self.assertGreater(left, 0)
        self.assertLess(left, 3000)
        self.a.server = self.srv
        self.a.sync()
        self.assertEqual(self.a.pending(), 0)
        state = self.settle()
        self.assertEqual(len(state), 3001)

    def test_pagination_of_a_large_pull(self):
        data = self.big_import(self.a, chats=1200, messages=1)
        st = self.a.sync().json()
        # 1,200 chats take two pushes (1,000 changes each at most): the last
        # one's first pull leaves out what the first one pushed too
        # (docs/protocol.md, "run"): those chats come back by their id alone
        # (about 20 bytes each, where an echo is their 480 bytes), and none is
        # taken for a deletion
        self.assertEqual(st["received"], {"chats": 0, "messages": 0, "deletions": 0}, st)
        self.assertLess(st["bytesReceived"], 30 * 1000, "the first sync echoed its uploads: %r" % st)
        st = self.c.sync().json()  # a first pull: one page of up to 5,000 chats
        self.assertEqual(st["received"]["chats"], 1200)
        self.assertEqual(st["pages"], 1)
        # 1,100 chats retitled on A (a newer import): C pulls pages of 500
        for chat in data[:1100]:
            chat["title"] += " (v2)"
            chat["lastModified"] = "2025-01-01T00:00:00.000Z"
        path = os.path.join(self.dir, "retitled.json")
        with open(path, "w") as f:
            json.dump(data[:1100], f)
        self.a.run("import", path)
        self.a.sync()
        st = self.c.sync().json()
        self.assertEqual(st["pages"], 3)
        self.assertEqual(st["received"]["chats"], 1100)
        state = self.settle()
        self.assertEqual(state[data[0]["id"]]["title"], "Bulk 0 (v2)")
        self.assertEqual(state[data[1150]["id"]]["title"], "Bulk 1150")

    def test_change_made_while_a_sync_is_in_flight(self):
        # A's sync is slow; meanwhile another process retitles the chat on A,
        # and the answer carries B's newer title. A's edit, not yet sent,
        # must win here and, sent next, everywhere.
        cid = self.a.new_chat("Original")
        self.settle()
        self.b.run("chat", "rename", cid, "B's title")
        self.b.sync()
        proxy = self.proxy(self.srv)
        self.a.server = proxy
        proxy.add("/v2/sync", delay=1.5)
        p = self.a.popen("sync", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: proxy.rules[0].times == 0, what="the sync to be in flight")
        self.a.run("chat", "rename", cid, "A's title, made mid-sync", server=False)
        _, err = p.communicate(timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(self.a.chats()[cid]["title"], "A's title, made mid-sync")
        self.assertEqual(self.a.pending(), 0)  # the same run sent it after the first answer
        self.assertEqual(self.b.sync().json()["received"]["chats"], 1)
        state = self.settle()
        self.assertEqual(state[cid]["title"], "A's title, made mid-sync")

    def test_two_syncs_at_once_on_one_store(self):
        for i in range(20):
            self.a.new_chat("chat %d" % i)
        proxy = self.proxy(self.srv)
        self.a.server = proxy
        proxy.add("/v2/sync", times=2, delay=0.5)
        procs = [self.a.popen("sync", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(2)]
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT)
            self.assertEqual(p.returncode, 0, err)
        self.assertEqual(self.a.pending(), 0)
        self.assertEqual(len(self.settle()), 20)

    def test_gzip_both_ways(self):
        # gzip asked for: on loopback the client compresses nothing unless
        # told (docs/client.md, "Compression"; test_client_store.py)
        gz = {"POLYSYNC_GZIP_LEVEL": "1"}
        self.big_import(self.a, chats=200)
        proxy = self.proxy(self.srv)
        self.a.server = proxy
        self.c.server = proxy
        self.a.run("sync", "--json", env=gz)
        sent = proxy.seen("/v2/sync")[0]
        self.assertEqual(sent[2].get("content-encoding"), "gzip")
        self.c.run("sync", "--json", env=gz)
        pulled = proxy.seen("/v2/sync")[-1]
        self.assertIn("gzip", pulled[2].get("accept-encoding", ""))
        # zstd first when this libcurl decodes it (polysyncd then answers
        # zstd: test_gzip.ZstdAnswerTest), so these 200 chats came as zstd
        if "zstd" in subprocess.run(["curl", "--version"], capture_output=True,
                                    text=True).stdout.split("\n")[0]:
            self.assertEqual(pulled[2].get("accept-encoding"), "zstd, gzip")
        self.assertEqual(len(self.c.chats()), 200)


if __name__ == "__main__":
    unittest.main()
