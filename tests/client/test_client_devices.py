"""The client side of the device registry (docs/protocol.md, "Devices";
docs/client.md): the `client` field of v2 requests, `polysync status`
saying whether the server knows the device, and the resync of a device the
server expired, which keeps its pending changes and brings no deleted chat
back although the chat's tombstone was collected. Oracles: the protocol,
the server's own registry (GET /v2/devices) and its store's rows."""
import json
import sqlite3
import unittest

from clientkit import ClientTestCase, assert_converged, run_cli, v2_bodies

DAY_MS = 86400000


def age_device(server, device, days):
    """Makes `device` silent for `days` more days: its last-seen time is
    rewritten in the stopped server's store (as test_devices does)."""
    server.stop()
    db = sqlite3.connect(server.db)
    with db:
        db.execute("UPDATE devices SET last_seen_ms = last_seen_ms - ? WHERE device_id = ?",
                   (days * DAY_MS, device))
    db.close()
    server.restart()


def server_chats(server):
    """chat id -> live (1) or tombstone (0), as the server's store holds them."""
    db = sqlite3.connect(server.db)
    try:
        return dict(db.execute("SELECT id, live FROM chats").fetchall())
    finally:
        db.close()


def device_id(dev):
    return dev.run("status", "--json").json()["deviceId"]


class ClientField(ClientTestCase):
    def test_v2_requests_name_the_client_and_the_cursor_is_the_ack(self):
        srv = self.server()
        px = self.proxy(srv)
        a = self.device("a", px)
        a.new_chat("one")
        a.sync()
        a.new_chat("two")
        a.sync()
        version = run_cli(["--version"]).out.split()[1]
        bodies = v2_bodies(px)
        self.assertGreaterEqual(len(bodies), 2)
        for b in bodies:
            self.assertEqual(b["client"], "polysync/" + version)
            self.assertNotIn("ack", b)  # the cursor sent is the saved one: the ack
        # the cursor a request sends is the one the previous sync saved
        saved = [b["cursor"] for b in bodies]
        self.assertIsNone(saved[0])
        self.assertIsNotNone(saved[-1])
        # the server's registry shows it
        listed = json.loads(run_cli(["--store", a.store, "--server", px.url, "status",
                                     "--json"]).out)
        self.assertEqual(listed["deviceOnServer"], "known")
        devs = json.loads(self.get_devices(srv))["devices"]
        me = [d for d in devs if d["id"] == device_id(a)][0]
        self.assertEqual(me["client"], "polysync/" + version)
        self.assertEqual(me["protocol"], "v2")

    def get_devices(self, srv):
        import urllib.request
        with urllib.request.urlopen(srv.url + "/v2/devices", timeout=10) as r:
            return r.read().decode()


class Status(ClientTestCase):
    def test_status_says_whether_the_server_knows_the_device(self):
        srv = self.server()
        a = self.device("a", srv)
        a.new_chat("x")
        st = a.run("status", "--json").json()
        self.assertEqual(st["deviceOnServer"], "unknown")  # never synced
        self.assertIn("not known to the server", a.run("status").out)
        a.sync()
        self.assertEqual(a.run("status", "--json").json()["deviceOnServer"], "known")
        self.assertIn("known to the server", a.run("status").out)
        age_device(srv, device_id(a), 91)  # past the default retention (90 days)
        self.assertEqual(a.run("status", "--json").json()["deviceOnServer"], "expired")
        self.assertIn("expired on the server", a.run("status").out)
        srv.stop()
        # offline: status still answers, rc 0, and says so
        r = a.run("status", "--json")
        self.assertEqual(r.rc, 0)
        self.assertEqual(r.json()["deviceOnServer"], "unreachable")
        self.assertEqual(r.json()["chats"], 1)
        r = a.run("status")
        self.assertEqual(r.rc, 0)
        self.assertIn("server unreachable", r.out)
        # no server at all
        b = self.device("b")
        self.assertEqual(b.run("status", "--json", server=False).json()["deviceOnServer"],
                         "unreachable")
        self.assertIn("no server", b.run("status", server=False).out)


class ExpiredDevice(ClientTestCase):
    def test_resync_after_expiry_keeps_pending_and_no_deleted_chat_returns(self):
        srv = self.server()
        a, b = self.device("a", srv), self.device("b", srv)
        theirs = b.new_chat("made by b, deleted by b")
        b.add_msg(theirs, "b's words")
        b.sync()
        mine = a.new_chat("made by a, deleted by b")
        a.add_msg(mine, "a's words")
        kept = a.new_chat("made by a, kept")
        a.sync()
        a.sync()
        b.sync()
        self.assertLessEqual({theirs, mine, kept}, set(a.chats()))
        self.assertLessEqual({theirs, mine, kept}, set(b.chats()))
        # a goes offline and writes: these are pending
        new_msg = a.add_msg(kept, "written offline")
        made_offline = a.new_chat("made offline")
        self.assertEqual(a.pending(), 2)
        # a is silent past the retention: expired
        age_device(srv, device_id(a), 91)
        # meanwhile b deletes two chats; b is the only device that counts,
        # so its acknowledgement collects the tombstones
        b.run("chat", "delete", theirs)
        b.run("chat", "delete", mine)
        b.sync()
        b.sync()
        on_server = server_chats(srv)
        self.assertNotIn(theirs, on_server, "the tombstone was collected (precondition)")
        self.assertNotIn(mine, on_server, "the tombstone was collected (precondition)")
        # a syncs: 410, resync
        st = a.sync().json()
        self.assertTrue(st["fullResync"])
        self.assertEqual(a.pending(), 0)
        on_server = server_chats(srv)
        self.assertEqual(on_server.get(made_offline), 1, "the pending chat reached the server")
        self.assertNotIn(theirs, on_server, "a chat a only received was not sent back")
        self.assertNotIn(mine, on_server, "a's old synced writes were not sent back")
        state = a.chats()
        self.assertNotIn(theirs, state)
        self.assertNotIn(mine, state)
        self.assertIn(new_msg, [m["id"] for m in state[kept]["messages"]])
        self.assertIn(made_offline, state)
        b.sync()
        assert_converged(self, a, b)
        bs = b.chats()
        self.assertNotIn(theirs, bs)
        self.assertNotIn(mine, bs)
        self.assertIn(new_msg, [m["id"] for m in bs[kept]["messages"]])
        self.assertEqual(a.run("status", "--json").json()["deviceOnServer"], "known")
        self.assertFalse(a.sync().json()["fullResync"])


if __name__ == "__main__":
    unittest.main()
