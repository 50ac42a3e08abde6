"""
Several polysyncd instances on one PostgreSQL database (docs/storage.md,
"Several instances"). Run with PS_TEST_DB=postgres://... (make check's
fixture sets it).

Oracles: what each client was told (every write answered 200 is there
afterwards, on every instance, and reaches a device pulling through another
instance), the merge rules (a field only one writer sets ends with that
writer's last acknowledged value; another writer's concurrent save must not
overwrite it), and the live channel's promise (a change on one instance
rings streams on the others within a couple of seconds).
"""
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import HTTP_TIMEOUT, Server, ServerTestCase, chat, iso, msg
from test_events import EventStream

T0_MS = 1705312800000  # 2024-01-15T10:00:00Z: in the past, never clamped
T0_ISO = iso(T0_MS)
SCRIPT = os.environ.get("PS_TEST_PG_SCRIPT") or os.path.join(
    harness.HERE, "..", "..", "scripts", "pg-throwaway.sh")


def post(port, path, body, timeout=HTTP_TIMEOUT):
    """One request; (status, headers dict, parsed body or None). Raises OSError if the
    server is gone."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), harness.json_or_none(data)
    finally:
        conn.close()


class Writer(threading.Thread):
    """Adds one message per request to the shared chats, and sets a field of
    its own (key = its name) to the request number; remembers what was
    answered 200. kind: "legacy" (/pushChats) or "v2" (/v2/sync)."""

    def __init__(self, name, kind, ports, chat_ids, count, stop_on_error=False):
        super().__init__(daemon=True)
        self.name_, self.kind, self.ports = name, kind, ports
        self.chat_ids, self.count, self.stop_on_error = chat_ids, count, stop_on_error
        self.acked_msgs = []     # (chat id, message id)
        self.last_field = {}     # chat id -> last value acknowledged
        self.statuses = {}
        self.errors = 0
        self.stop = threading.Event()

    def body(self, i, cid, mid):
        at = iso(T0_MS + i * 1000)
        if self.kind == "legacy":
            c = chat(cid, "shared", [msg(mid, "from %s" % self.name_, timestamp=at)],
                     last_modified=at, updatedAtLamport=[i + 1, self.name_])
            c[self.name_] = i
            del c["title"]  # only its own key: the title is nobody's here
            return "/pushChats", {"deviceId": self.name_, "chats": [c]}
        change = {"chatId": cid, "clock": i + 1, "at": at, "fields": {self.name_: i},
                  "messages": [msg(mid, "from %s" % self.name_, timestamp=at)]}
        return "/v2/sync", {"deviceId": self.name_, "cursor": None, "changes": [change],
                            "limit": 1}

    def run(self):
        for i in range(self.count):
            if self.stop.is_set():
                return
            cid = self.chat_ids[i % len(self.chat_ids)]
            mid = "%s-%04d" % (self.name_, i)
            path, body = self.body(i, cid, mid)
            port = self.ports[i % len(self.ports)]
            try:
                status, _, _ = post(port, path, body)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                if self.stop_on_error:
                    return
                continue
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                self.acked_msgs.append((cid, mid))
                self.last_field[cid] = i


def legacy_state(port):
    """Every chat as /fetchChats shows it: id -> chat."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request("GET", "/fetchChats")
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        return {c["id"]: c for c in json.loads(resp.read())}
    finally:
        conn.close()


class Puller:
    """A v2 device that only pulls, following its cursor, through `port`."""

    def __init__(self, name, port):
        self.name, self.port, self.cursor = name, port, None
        self.seen = set()  # (chat id, message id)

    def pull(self):
        while True:
            status, _, doc = post(self.port, "/v2/sync",
                                  {"deviceId": self.name, "cursor": self.cursor})
            assert status == 200, (status, doc)
            for c in doc["chats"]:
                for m in c.get("messages", []):
                    self.seen.add((c["id"], m["id"]))
            self.cursor = doc["cursor"]
            if not doc.get("more"):
                return


class MultiInstanceCase(ServerTestCase):

    def setUp(self):
        if harness.BACKEND != "postgres":
            self.fail("the multi-instance suite needs PS_TEST_DB=postgres://...")
        super().setUp()

    def instance(self, like, args=()):
        """Another instance on the same database as `like`."""
        s = self.new_server(args, start=False)
        s.db_url = like.db_url
        return s.start()

    def assertNothingLost(self, writers, state):
        for w in writers:
            for cid, mid in w.acked_msgs:
                ids = {m["id"] for m in state[cid].get("messages", [])}
                self.assertIn(mid, ids, "%s's message acknowledged with 200 is lost" % w.name_)


class ConcurrentWritersTest(MultiInstanceCase):

    def test_three_instances_same_chats_legacy_and_v2(self):
        a = self.server
        b, c = self.instance(a), self.instance(a)
        ports = [a.port, b.port, c.port]
        chats = ["shared-1", "shared-2"]
        writers = [Writer("legacyA", "legacy", ports, chats, 40),
                   Writer("legacyB", "legacy", ports[::-1], chats, 40),
                   Writer("v2A", "v2", ports, chats, 40),
                   Writer("v2B", "v2", ports[1:] + ports[:1], chats, 40),
                   # only v2 writers on these: each sets a field of its own
                   Writer("v2C", "v2", ports, ["fields-1", "fields-2"], 40),
                   Writer("v2D", "v2", ports[::-1], ["fields-1", "fields-2"], 40)]
        puller = Puller("reader", c.port)
        for w in writers:
            w.start()
        while any(w.is_alive() for w in writers):
            puller.pull()  # pulls during the burst: cursors must not skip a change
        for w in writers:
            w.join()
        puller.pull()
        for w in writers:
            self.assertEqual(w.statuses, {200: 40}, "%s: %r" % (w.name_, w.statuses))
        acked = {m for w in writers for m in w.acked_msgs}
        self.assertEqual(acked - puller.seen, set(), "a device pulling through another "
                         "instance never received these acknowledged messages")
        states = [legacy_state(p) for p in ports]
        self.assertEqual(states[0], states[1])
        self.assertEqual(states[0], states[2])
        self.assertNothingLost(writers, states[0])
        # A concurrent save of the same chat kept each writer's field at its last
        # value (a device's own writes are ordered by its clock). Only where no
        # legacy client writes: a legacy save restamps the chat with the
        # server's tick (docs/merge.md), which may then outrank a v2 write.
        for w in writers[4:]:
            for cid, value in w.last_field.items():
                self.assertEqual(states[0][cid].get(w.name_), value, (w.name_, cid))

    def test_instances_starting_at_once_migrate_once(self):
        url = harness.new_pg_database()
        servers = []
        for _ in range(3):
            s = self.new_server(start=False)
            s.db_url = url
            servers.append(s)
        threads = [threading.Thread(target=s.start) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in servers:
            self.assertTrue(s.running(), s.stderr_text())
        # every step once, in order (a second run of a step would have failed
        # on the primary key and kept its instance from starting)
        versions = [int(r[0]) for r in harness.pg_query(
            url, "SELECT version FROM schema_version ORDER BY version")]
        self.assertEqual(versions, list(range(1, len(versions) + 1)))
        self.assertGreaterEqual(len(versions), 1)
        servers[0].push_ok([chat("c1", "t")])
        self.assertEqual(set(legacy_state(servers[2].port)), {"c1"})

    def test_message_tombstones_have_sqlite_index(self):
        """docs/storage.md: PostgreSQL's indexes are SQLite's. The one a
        v2 device's first sync on each instance needs (the device registry
        counts and collects the user's deleted messages, devices.c) was
        missing until schema 5: every message row of the user was read,
        0.5 s and more at 55,000 messages, on the request's thread."""
        defs = [r[0] for r in harness.pg_query(
            self.server.db_url,
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'messages'")]
        self.assertTrue(any("(user_id, seq) WHERE (value IS NULL)" in d for d in defs), defs)


class EventsAcrossInstancesTest(MultiInstanceCase):

    def test_change_on_one_instance_rings_streams_on_another(self):
        a = self.server
        b = self.instance(a)
        other = EventStream(b, "?deviceId=phone")
        self.addCleanup(other.sock.close)
        own = EventStream(b, "?deviceId=laptop")
        self.addCleanup(own.sock.close)
        self.assertTrue(other.wait_for(b"connected"))
        self.assertTrue(own.wait_for(b"connected"))
        other.consume()
        own.consume()
        start = time.monotonic()
        a.v2_ok({"deviceId": "laptop", "cursor": None,
                 "changes": [{"chatId": "c", "clock": 1, "fields": {"title": "x"}}]})
        self.assertTrue(other.wait_for(b"event: changed", timeout=5), other.text())
        # promised: within a second; 2 s leaves room for a loaded test machine
        self.assertLess(time.monotonic() - start, 2.0, "rung too late")
        # the device that made the change is not rung, whichever instance it listens on
        self.assertTrue(own.quiet_for(b"event: changed", 1.0), own.text())
        # a sync that changes nothing rings no one
        other.consume()
        a.v2_ok({"deviceId": "laptop", "cursor": None})
        self.assertTrue(other.quiet_for(b"event: changed", 1.0), other.text())
        # legacy writes ring too
        a.push_ok([chat("d", "legacy")])
        self.assertTrue(other.wait_for(b"event: changed", timeout=5), other.text())


class LiveSocketAcrossInstancesTest(MultiInstanceCase):
    """The Polyglot live socket (docs/protocol.md, "WebSocket") on instance
    B gets the chat a sync on instance A changed, as /fetchChats shows it,
    and not the changing device's own socket."""

    def test_sync_on_one_instance_sends_the_chat_to_sockets_on_another(self):
        from wsclient import WsClient
        a = self.server
        b = self.instance(a)
        other = WsClient(b, "/?deviceId=B")
        self.addCleanup(other.close)
        own = WsClient(b, "/?deviceId=A")
        self.addCleanup(own.close)
        self.assertEqual((other.status, own.status), (101, 101))
        a.sync_ok({"deviceId": "A", "chats": [chat("X", "Trip", [msg("m1", timestamp=T0_ISO)],
                                                    last_modified=T0_ISO,
                                                    updatedAtLamport=[3, "A"])],
                   "deletions": []})
        frame = other.next_chat()
        self.assertEqual(frame["id"], "X")
        self.assertEqual(frame, {c["id"]: c for c in b.fetch()}["X"])
        self.assertTrue(own.quiet_for(1.0), "the device that made the change gets no frame")


class KillOneInstanceTest(MultiInstanceCase):

    def test_kill9_one_instance_mid_burst(self):
        a = self.server
        b = self.instance(a)
        victim = Writer("victimW", "v2", [a.port], ["k1", "k2"], 100000, stop_on_error=True)
        survivor = Writer("survivorW", "legacy", [b.port], ["k1", "k2"], 60)
        victim.start()
        survivor.start()
        deadline = time.monotonic() + 30
        while len(victim.acked_msgs) < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        a.kill9()  # mid-request, likely holding the user's row lock
        victim.join(timeout=30)
        survivor.join(timeout=120)
        self.assertFalse(survivor.is_alive())
        self.assertEqual(survivor.statuses, {200: 60}, "the other instance kept serving")
        state = legacy_state(b.port)
        self.assertNothingLost([victim, survivor], state)
        a.start()  # and the killed one comes back to the same data
        self.assertEqual(legacy_state(a.port), state)


class DatabaseFaultsTest(MultiInstanceCase):
    """On a private cluster, so that stopping it disturbs no other suite."""

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="polysync-pg-own-", dir="/tmp")
        os.rmdir(self.dir)  # the script creates it, owned by the server's user
        self.url = self.script("start").strip()
        self.addCleanup(self.script, "stop")

    def script(self, cmd):
        r = subprocess.run([SCRIPT, cmd, self.dir], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return r.stdout.decode()

    def on_own_db(self, args=()):
        s = self.new_server(args, start=False)
        s.db_url = self.url
        return s.start()

    def test_database_restart_mid_load(self):
        a = self.on_own_db(["--request-timeout", "10"])
        b = self.on_own_db()
        stream = EventStream(b, "?deviceId=watcher")
        self.addCleanup(stream.sock.close)
        self.assertTrue(stream.wait_for(b"connected"))
        w = Writer("w", "v2", [a.port, b.port], ["r1", "r2"], 100000)
        w.start()
        deadline = time.monotonic() + 30
        while len(w.acked_msgs) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = len(w.acked_msgs)
        self.script("restart")
        stream.consume()
        # back by itself: new writes are acknowledged again soon after
        deadline = time.monotonic() + 30
        while len(w.acked_msgs) < before + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        w.stop.set()
        w.join(timeout=60)
        self.assertGreaterEqual(len(w.acked_msgs), before + 10, w.statuses)
        self.assertEqual(set(w.statuses) - {200, 503}, set(), w.statuses)
        self.assertEqual(w.errors, 0, "no request failed without an answer")
        # every stream on the reconnected listener was rung at least once
        self.assertTrue(stream.wait_for(b"event: changed", timeout=10), stream.text())
        self.assertNothingLost([w], legacy_state(b.port))

    def test_database_down_while_serving(self):
        s = self.on_own_db()
        s.push_ok([chat("c1", "before")])
        self.script("restart")  # restart = every pooled connection is lost once
        self.assertEqual(set(legacy_state(s.port)), {"c1"})
        # now down for a while
        subprocess.run(["runuser", "-u", "nobody", "--", self.pg_ctl(), "-D",
                        os.path.join(self.dir, "data"), "-m", "fast", "-w", "stop"]
                       if os.getuid() == 0 else
                       [self.pg_ctl(), "-D", os.path.join(self.dir, "data"), "-m", "fast", "-w",
                        "stop"], check=True, stdout=subprocess.DEVNULL, timeout=60)
        start = time.monotonic()
        status, headers, doc = s.request("POST", "/pushChats", body={"chats": [chat("c2", "x")]})
        self.assertEqual((status, doc and doc.get("code")), (503, "store_unavailable"), doc)
        self.assertIn("Retry-After", headers)
        status, _, doc = s.request("GET", "/health")
        probed = time.monotonic()
        self.assertEqual((status, doc.get("code")), (503, "store_unavailable"))
        self.assertLess(time.monotonic() - start, 15, "answers while the database is down "
                        "must not hang")
        self.script("restart")  # (stop is a no-op, then start on the same port)
        s.push_ok([chat("c2", "after")])
        # /health probes at most once a second (docs/operations.md): within
        # that second it may still answer the 503 it found; after it, it
        # must find the database again
        time.sleep(max(0.0, probed + 1.1 - time.monotonic()))
        self.assertEqual(s.health()["status"], "healthy")
        self.assertEqual(set(legacy_state(s.port)), {"c1", "c2"})

    def pg_ctl(self):
        bins = sorted(d for d in os.listdir("/usr/lib/postgresql"))
        return "/usr/lib/postgresql/%s/bin/pg_ctl" % bins[-1]

    def test_database_down_at_start(self):
        self.script("restart")
        url = self.url
        subprocess.run((["runuser", "-u", "nobody", "--"] if os.getuid() == 0 else []) +
                       [self.pg_ctl(), "-D", os.path.join(self.dir, "data"), "-m", "fast", "-w",
                        "stop"], check=True, stdout=subprocess.DEVNULL, timeout=60)
        r = harness.run_polysyncd(["--port", "0", "--db", url])
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot connect to PostgreSQL", r.stderr)
        # with --db-wait it waits, and starts once the database is up
        s = self.new_server(["--db-wait", "60"], start=False)
        s.db_url = url
        starter = threading.Thread(target=s.start)
        starter.start()
        time.sleep(1.5)
        self.assertFalse(s.banner, "started without its database")
        self.script("restart")
        starter.join(timeout=60)
        self.assertTrue(s.running(), s.stderr_text())
        with open(s._stderr_path) as f:
            self.assertIn("waiting for PostgreSQL", f.read())
        s.push_ok([chat("c", "t")])


if __name__ == "__main__":
    unittest.main()
