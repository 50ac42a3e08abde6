"""#10's "Done means", as a test of our own: three devices running a model of
the Polyglot app's client rules (app_model.py) against a real polysyncd.

The oracle is what a user of the app must see on every device, stated in
the issue: a long chat reaches the others; a concurrent rename and a new
message both survive everywhere; writes made while the server was down
arrive after; what the server acknowledged before a kill -9 is there for a
fresh device; a big history reaches a fresh device in order; a change on
one device reaches another over the socket without it syncing.
"""
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

from harness import ServerTestCase  # noqa: E402
from app_model import Device, SyncFailed, iso  # noqa: E402

SOCKET_WAIT_S = 5.0


class AppModelTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        endpoint = lambda: ("127.0.0.1", self.server.port)  # noqa: E731 (followed across restarts)
        # fixed ids (the app's PG_DEVICE_ID) so ties between equal counters
        # go the way the scenario needs: "device-c" > "device-b" > "device-a"
        self.a, self.b, self.c = (Device("device-" + n, endpoint) for n in "abc")
        self.devices = [self.a, self.b, self.c]

    def new_device(self, name):
        return Device(name, lambda: ("127.0.0.1", self.server.port))

    def start_app(self, d):
        """A page load: main.tsx's migration call, then CSM.initialize's sync."""
        status, answer = d.page_load_migration()
        self.assertEqual(status, 200)
        if any(not r["isArchived"] for r in d.chats.values()):
            # its records are recognised: nothing the app would throw on
            self.assertEqual(answer.get("missing"), [])
        d.sync()

    def assertSameChat(self, want, got, what):
        self.assertEqual(got["title"], want["title"], what)
        self.assertEqual(got["isArchived"], want["isArchived"], what)
        self.assertEqual([m["id"] for m in got["messages"]], [m["id"] for m in want["messages"]],
                         what)
        self.assertEqual([m["content"] for m in got["messages"]],
                         [m["content"] for m in want["messages"]], what)

    def test_a_200_message_chat_reaches_the_others(self):
        for d in self.devices:
            self.start_app(d)
        cid = self.a.create_chat()
        for i in range(100):
            self.a.add_message(cid, "question %d" % i)
            self.a.add_message(cid, "answer %d" % i, role="assistant")
        for d in (self.b, self.c):
            self.start_app(d)
            self.assertSameChat(self.a.chats[cid], d.chats[cid], d.device_id)
        self.assertEqual(len(self.c.chats[cid]["messages"]), 200)

    def test_concurrent_rename_and_new_message_both_survive(self):
        """B renames X; C, which has not seen the rename, adds a message with
        a clock that ties B's and wins the tie (issue #10.2)."""
        for d in self.devices:
            self.start_app(d)
        x = self.a.create_chat()
        self.a.add_message(x, "hello")
        self.b.sync()
        self.c.sync()
        self.b.rename(x, "Renamed on B")   # goes out with B's next sync
        self.b.sync()
        self.c.add_message(x, "from C")    # C's stale title, same counter as B's rename
        for _ in range(2):
            for d in self.devices:
                d.sync()
        for d in self.devices:
            chat = d.chats[x]
            self.assertEqual(chat["title"], "Renamed on B", d.device_id)
            self.assertEqual([m["content"] for m in chat["messages"]], ["hello", "from C"],
                             d.device_id)

    def test_writes_made_while_the_server_was_down_arrive_after(self):
        for d in self.devices:
            self.start_app(d)
        x = self.a.create_chat()
        self.b.sync()
        self.server.stop()
        self.a.add_message(x, "written offline 1")        # their syncs fail
        self.a.add_message(x, "written offline 2")
        self.a.rename(x, "Offline title")
        with self.assertRaises(SyncFailed):
            self.a.sync()
        self.server.start()
        self.start_app(self.a)                            # next app start
        self.b.sync()
        self.assertSameChat(self.a.chats[x], self.b.chats[x], "B after the outage")
        self.assertEqual(self.b.chats[x]["title"], "Offline title")

    def test_acknowledged_before_kill_9_is_there_for_a_fresh_device(self):
        self.start_app(self.a)
        x = self.a.create_chat()
        for i in range(20):
            self.a.add_message(x, "m%d" % i)              # each one a 200 sync
        y = self.a.create_chat()
        self.a.add_message(y, "last acknowledged")
        self.a.toggle_archive(y)
        acknowledged = {cid: dict(c) for cid, c in self.a.chats.items()}
        self.server.kill9()
        self.server.start()
        fresh = self.new_device("device-fresh")
        self.start_app(fresh)
        self.assertEqual(set(fresh.chats), set(acknowledged))
        for cid, want in acknowledged.items():
            self.assertSameChat(want, fresh.chats[cid], cid)

    def test_300_chats_of_30_messages_reach_a_fresh_device_in_order(self):
        # A's history from before (an app that kept it locally): records
        # as saveConversation leaves them, one tick each
        base = int(time.time() * 1000) - 10_000_000
        for i in range(300):
            msgs = [{"id": "msg_%d" % (base + i * 30 + k), "role": "user" if k % 2 == 0
                     else "assistant", "content": "chat %d message %d" % (i, k),
                     "timestamp": iso(base + i * 30 + k), "provider": "ollama",
                     "isPrivate": False} for k in range(30)]
            cid = "conv_%d_%09d" % (base + i * 30, i)
            self.a.chats[cid] = {"id": cid, "title": "History %d" % i, "messages": msgs,
                                 "provider": "ollama", "currentModel": "llama3.2",
                                 "isArchived": i % 10 == 0, "createdAt": iso(base + i * 30),
                                 "lastModified": iso(base + i * 30 + 29), "modelHistory": [],
                                 "lastMutationLamport": self.a.tick()}
        self.start_app(self.a)
        fresh = self.new_device("device-fresh")
        self.start_app(fresh)
        self.assertEqual(set(fresh.chats), set(self.a.chats))
        for cid, want in self.a.chats.items():
            self.assertSameChat(want, fresh.chats[cid], cid)

    def test_a_deletion_reaches_the_others_and_stays(self):
        """The delete path as the app means it (its record with `id`)."""
        for d in self.devices:
            self.start_app(d)
        x = self.a.create_chat()
        self.a.add_message(x, "soon gone")
        keep = self.a.create_chat()
        for d in (self.b, self.c):
            d.sync()
        stale = dict(self.c.chats[x])
        self.a.delete_chat(x)
        for _ in range(2):
            for d in self.devices:
                d.sync()
        for d in self.devices:
            self.assertNotIn(x, d.chats, d.device_id)
            self.assertIn(x, d.deletions, d.device_id)
            self.assertIn(keep, d.chats, d.device_id)
        # an older copy uploaded again (a device restored from a backup)
        ghost = self.new_device("device-ghost")
        ghost.chats[x] = stale
        ghost.sync()
        self.assertNotIn(x, ghost.chats, "its copy is older than the deletion")
        fresh = self.new_device("device-fresh")
        self.start_app(fresh)
        self.assertEqual(set(fresh.chats), {keep})

    def wait_socket(self, d, connects, within=SOCKET_WAIT_S):
        deadline = time.monotonic() + within
        while d.ws_connects < connects and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(d.ws_connects, connects, "%s's socket did not connect" % d.device_id)

    def wait_messages(self, d, cid, contents):
        deadline = time.monotonic() + SOCKET_WAIT_S
        while time.monotonic() < deadline:
            with d.lock:
                if [m["content"] for m in d.chats[cid]["messages"]] == contents:
                    return
            time.sleep(0.05)
        with d.lock:
            self.assertEqual([m["content"] for m in d.chats[cid]["messages"]], contents)

    def test_the_socket_comes_back_after_a_restart(self):
        """Needs the server's WebSocket on / (#10.4): the app reconnects 3 s
        after the close, and frames flow again without a sync."""
        for d in (self.a, self.b):
            self.start_app(d)
        x = self.a.create_chat()
        self.b.sync()
        self.b.start_socket()
        self.addCleanup(self.b.stop_socket)
        self.wait_socket(self.b, 1)
        self.server.restart()
        self.wait_socket(self.b, 2, within=3 + 2 * SOCKET_WAIT_S)
        self.a.add_message(x, "after the restart")
        self.wait_messages(self.b, x, ["after the restart"])

    def test_a_change_reaches_another_device_over_the_socket(self):
        """Needs the server's WebSocket on / (#10.4)."""
        for d in (self.a, self.b):
            self.start_app(d)
        x = self.a.create_chat()
        self.b.sync()
        self.b.start_socket()
        self.addCleanup(self.b.stop_socket)
        self.wait_socket(self.b, 1)
        self.a.add_message(x, "pushed, not pulled")
        self.wait_messages(self.b, x, ["pushed, not pulled"])
        with self.b.lock:
            self.assertSameChat(self.a.chats[x], self.b.chats[x], "B over the socket")
            self.assertGreaterEqual(self.b.frames_applied, 1)



class ModelAgainstCaptureTest(unittest.TestCase):
    """The model against what the real app was seen doing (the fixtures'
    README and ws-frame-chat.json's `verified`), so the scenarios above run
    the app's rules and not our idea of them. No server involved."""

    FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "shared",
                            "fixtures", "polyglot")

    def frame(self):
        with open(os.path.join(self.FIXTURES, "ws-frame-chat.json"), encoding="utf-8") as f:
            return json.load(f)["frame"]

    def test_socket_frame_stored_then_replaced_only_when_dominating(self):
        d = Device("device-c", lambda: ("127.0.0.1", 1))
        frame = self.frame()
        d._on_frame(frame["text"])
        x = d.chats[frame["data"]["id"]]
        self.assertEqual(x["title"], "Mountain weekend trip")
        self.assertEqual([m["id"] for m in x["messages"]],
                         [m["id"] for m in frame["data"]["messages"]])
        self.assertEqual(x["lastMutationLamport"],
                         {"lamport": 5, "deviceId": frame["data"]["updatedAtLamport"][1]})
        renamed = dict(frame["data"], title="renamed elsewhere", updatedAtLamport=[10, "other"])
        d._on_frame(json.dumps(renamed))
        self.assertEqual(d.chats[x["id"]]["title"], "renamed elsewhere")
        older = dict(frame["data"], title="older", updatedAtLamport=[9, "zzz"])
        d._on_frame(json.dumps(older))
        self.assertEqual(d.chats[x["id"]]["title"], "renamed elsewhere", "[9, zzz] < [10, other]")
        no_clock = {k: v for k, v in renamed.items() if k != "updatedAtLamport"}
        d._on_frame(json.dumps(dict(no_clock, title="no clock")))
        self.assertEqual(d.chats[x["id"]]["title"], "renamed elsewhere")
        self.assertEqual(d.observed, 10, "every applied frame's clock observed")

    def test_deleted_chat_never_taken_back_and_wire_shapes(self):
        d = Device("device-a", lambda: ("127.0.0.1", 1))
        cid = d.create_chat(sync=False)
        d.add_message(cid, "hi", sync=False)
        body = d.wire_body()
        self.assertEqual(body["clientClock"], {"deviceId": "device-a", "localCounter": 2,
                                               "observedCounter": 2})
        self.assertEqual(body["chats"][0]["updatedAtLamport"], [2, "device-a"])
        d.delete_chat(cid, sync=False)
        self.assertEqual(d.wire_body()["deletions"], [{"id": cid, "lamport": [3, "device-a"]}])
        d.reconcile([{"id": cid, "title": "back", "messages": [], "isArchived": False,
                      "lastModified": iso(0), "lastMutationLamport": {"lamport": 99,
                                                                      "deviceId": "b"}}], [])
        self.assertNotIn(cid, d.chats, "the app never takes back a chat it deleted")


if __name__ == "__main__":
    unittest.main()
