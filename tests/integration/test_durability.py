"""Durability: restarts, kill -9 under load, graceful SIGTERM with a request in flight."""
import http.client
import json
import signal
import socket
import sqlite3
import threading
import time
import unittest

import harness

from harness import (ServerTestCase, by_id, chat, message_ids, msg, read_http_response,
                     json_or_none, HTTP_TIMEOUT)

T0 = "2024-01-15T10:00:00.000Z"
T1 = "2024-01-15T10:30:00.000Z"


def integrity_check(db_path, db_url=None):
    if harness.BACKEND == "postgres":
        # The database's files are PostgreSQL's to keep whole; what a crash
        # of polysyncd could break is the rows: every message has its chat,
        # every chat its user.
        orphans = harness.pg_query(db_url, (
            "SELECT (SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM chats c"
            " WHERE c.user_id = m.user_id AND c.id = m.chat_id)) + (SELECT count(*) FROM chats c"
            " WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = c.user_id))"))[0][0]
        return ["ok"] if orphans == "0" else ["%s orphan rows" % orphans]
    # Read-only: must not checkpoint or otherwise repair what the server left.
    con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
    finally:
        con.close()


class Writer(threading.Thread):
    """Sends one request per chat, each adding a distinct chat; records the ids answered 200."""

    def __init__(self, port, endpoint, limit=100000):
        super().__init__(daemon=True)
        self.port = port
        self.endpoint = endpoint
        self.limit = limit
        self.acked = []
        self.error = None
        self.lock = threading.Lock()

    def count(self):
        with self.lock:
            return len(self.acked)

    def run(self):
        for i in range(self.limit):
            cid = "stream-%05d" % i
            body = {"deviceId": "writer", "clientClock": i,
                    "chats": [chat(cid, "chat %d" % i, [msg("m-%d" % i, timestamp=T0)],
                                   last_modified=T0, updatedAtLamport=[i + 1, "writer"])]}
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
                conn.request("POST", self.endpoint, body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                self.error = e   # the server was killed: the stream ends here
                return
            if resp.status == 200:
                with self.lock:
                    self.acked.append(cid)


class RestartTest(ServerTestCase):

    def test_restart_keeps_everything(self):
        s = self.server
        s.push_ok([chat("c%d" % i, "title %d" % i, [msg("m%d" % i, timestamp=T0)],
                        last_modified=T0, model="gpt-4", custom={"k": i}) for i in range(5)])
        s.sync_ok({"deviceId": "devA", "clientClock": 40, "chats": [
            chat("c0", "renamed", [msg("m0", timestamp=T0), msg("extra", timestamp=T1)],
                 last_modified=T1, updatedAtLamport=[41, "devA"])],
            "deleted": ["c1"], "deletions": [{"id": "c2", "lamport": [42, "devA"]}]})
        s.delete_chat("c3")
        chats_before = sorted(s.fetch(), key=lambda c: c["id"])
        sync_before = s.sync_ok({"deviceId": "devB", "chats": []})
        health_before = s.health()

        s.restart()   # asserts the SIGTERM exit code is 0

        self.assertEqual(sorted(s.fetch(), key=lambda c: c["id"]), chats_before)
        sync_after = s.sync_ok({"deviceId": "devB", "chats": []})
        self.assertEqual(sorted(sync_after["missing"], key=lambda c: c["id"]),
                         sorted(sync_before["missing"], key=lambda c: c["id"]))
        self.assertEqual(sorted(sync_after["deletions"], key=lambda d: d["id"]),
                         sorted(sync_before["deletions"], key=lambda d: d["id"]))
        self.assertEqual(set(by_id(sync_after["deletions"])), {"c1", "c2", "c3"})
        self.assertGreaterEqual(sync_after["serverClock"], sync_before["serverClock"])
        health = s.health()
        self.assertEqual(health["chatsCount"], health_before["chatsCount"])
        self.assertIsNotNone(health["lastSync"])
        # The Lamport clock survived: a changed chat gets a tick above the old clock.
        doc = s.sync_ok({"deviceId": "devC", "chats": [chat("c4", "title 4", [], last_modified=T0)]})
        self.assertGreater(by_id(doc["missing"])["c4"]["updatedAtLamport"][0],
                           sync_before["serverClock"])
        # Still deleted after the restart, even when a stale copy comes back.
        s.push_ok([chat("c1", "stale", last_modified=T0)])
        self.assertNotIn("c1", by_id(s.fetch()))

    def test_many_restarts(self):
        s = self.server
        for i in range(3):
            s.push_ok([chat("r%d" % i, last_modified=T0)])
            s.restart()
        self.assertEqual(set(by_id(s.fetch())), {"r0", "r1", "r2"})
        self.assertEqual(integrity_check(s.db_path, s.db_url), ["ok"])


class CrashTest(ServerTestCase):

    def crash_mid_stream(self, endpoint):
        s = self.server
        s.push_ok([chat("before-crash", last_modified=T0)])
        w = Writer(s.port, endpoint)
        w.start()
        deadline = time.monotonic() + 60
        while w.count() < 40 and w.error is None and time.monotonic() < deadline:
            time.sleep(0.005)   # polling the writer's progress, bounded by the deadline
        self.assertIsNone(w.error, "the stream failed before the kill")
        self.assertGreaterEqual(w.count(), 40, "the stream made no progress")
        s.kill9()
        w.join(timeout=60)
        self.assertFalse(w.is_alive(), "writer still running after the kill")
        acked = list(w.acked)

        s.start()
        present = set(by_id(s.fetch()))
        lost = [cid for cid in acked + ["before-crash"] if cid not in present]
        self.assertEqual(lost, [], "chats acknowledged with 200 but lost by kill -9")
        self.assertEqual(integrity_check(s.db_path, s.db_url), ["ok"])
        # It keeps working on the recovered store.
        s.push_ok([chat("after-crash", last_modified=T0)])
        self.assertIn("after-crash", by_id(s.fetch()))

    def test_kill9_during_push_stream(self):
        self.crash_mid_stream("/pushChats")

    def test_kill9_during_sync_stream(self):
        self.crash_mid_stream("/sync")


class GracefulStopTest(ServerTestCase):
    SERVER_ARGS = ("--drain-timeout", "20")

    def test_sigterm_with_request_in_flight(self):
        s = self.server
        body = json.dumps({"deviceId": "devA", "chats": [
            chat("inflight", "sent across SIGTERM", [msg("m1", timestamp=T0)], last_modified=T0)]}).encode()
        half = len(body) // 2
        sock = s.connect()
        try:
            sock.sendall(b"POST /sync HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Expect: 100-continue\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body))
            # 100 Continue: the server has taken the request's headers.
            status, _, _ = read_http_response(sock, timeout=20, skip_informational=False)
            self.assertEqual(status, 100)
            sock.sendall(body[:half])

            s.proc.send_signal(signal.SIGTERM)

            # New connections are refused while the old request is still open.
            refused = False
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    probe = socket.create_connection(("127.0.0.1", s.port), timeout=5)
                except ConnectionRefusedError:
                    refused = True
                    break
                except ConnectionResetError:
                    continue   # queued on the listener as it closed: poll again
                probe.close()
                time.sleep(0.01)   # polling, bounded by the deadline
            self.assertTrue(refused, "new connections still accepted after SIGTERM")
            self.assertIsNone(s.proc.poll(), "exited without finishing the request in flight")
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", s.port), timeout=5).close()

            sock.sendall(body[half:])
            status, _, answer = read_http_response(sock, timeout=30)
        finally:
            sock.close()
        self.assertEqual(status, 200, answer)
        doc = json_or_none(answer)
        self.assertIsInstance(doc, dict)
        self.assertEqual(doc["missing"], [])
        s.wait_exit(timeout=30, expect=0)

        s.start()
        got = by_id(s.fetch())
        self.assertIn("inflight", got, "the request answered 200 during the drain was lost")
        self.assertEqual(message_ids(got["inflight"]), ["m1"])

    def test_sigterm_idle_exits_zero_quickly(self):
        s = self.server
        s.push_ok([chat("x", last_modified=T0)])
        # An idle keep-alive connection must not hold the stop for the drain timeout.
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=HTTP_TIMEOUT)
        conn.request("GET", "/health")
        conn.getresponse().read()
        started = time.monotonic()
        try:
            s.stop(timeout=15)
        finally:
            conn.close()
        self.assertLess(time.monotonic() - started, 15)


if __name__ == "__main__":
    unittest.main()
