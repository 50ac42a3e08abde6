"""
The Polyglot app's live socket: a WebSocket on `/` of the sync port
(docs/protocol.md, "WebSocket"). The oracles are the app's own rules as the
fixtures record them (../shared/fixtures/polyglot/README.md, "WebSocket",
and ws-frame-chat.json): a frame is one whole chat with `id` and
`updatedAtLamport: [n, deviceId]` (plus title, provider, currentModel,
isArchived, messages, lastModified), and the app stores it only if it does
not hold the chat or the frame's clock strictly dominates its copy. Each
frame is also compared with what /fetchChats says of the chat (the legacy
shape), and with RFC 6455 for the handshake and the closes.
"""
import json
import os
import socket
import time
import unittest

from harness import ServerTestCase, chat, iso, msg, now_ms
from sectools import SecurityTestCase
from wsclient import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Closed, WsClient

FIXTURES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "..", "..", "shared", "fixtures", "polyglot"))
if not os.path.isdir(FIXTURES):  # from a worktree beside ../shared, or the lead's checkout
    FIXTURES = "/work/shared/fixtures/polyglot"

# The frame the app stores, as captured (ws-frame-chat.json): its keys and
# value types are the shape every frame must have.
with open(os.path.join(FIXTURES, "ws-frame-chat.json")) as f:
    FRAME_FIXTURE = json.load(f)["frame"]["data"]


def app_chat(cid, title, messages=(), lamport=None, at=None, **extra):
    """A chat as the app sends it: every field of the captured frame."""
    c = chat(cid, title, messages, last_modified=iso(at or now_ms()), provider="ollama",
             currentModel="llama3.2", isArchived=False, **extra)
    if lamport:
        c["updatedAtLamport"] = lamport
    return c


def dominates(a, b):
    """The app's order on [lamport, deviceId] (fixtures README, point 3)."""
    return a[0] > b[0] or (a[0] == b[0] and a[1] > b[1])


class AppCopy:
    """What one Polyglot device holds of its chats, by the app's rules:
    a returned/pushed chat replaces its copy when it is new to it or its
    clock strictly dominates; else it is ignored."""

    def __init__(self):
        self.chats = {}

    def offer(self, c):
        held = self.chats.get(c["id"])
        if held is None or dominates(c["updatedAtLamport"], held["updatedAtLamport"]):
            self.chats[c["id"]] = c
            return True
        return False


class SocketCase(ServerTestCase):

    def ws(self, query="", server=None, **kw):
        c = WsClient(server or self.server, "/" + query, **kw)
        self.addCleanup(c.close)
        return c

    def open(self, query="", server=None, **kw):
        c = self.ws(query, server, **kw)
        self.assertEqual(c.status, 101, c.body)
        return c

    def fetched(self, cid, server=None):
        for c in (server or self.server).fetch():
            if c["id"] == cid:
                return c
        return None

    def assertFrameShape(self, frame):
        """The keys and types of the captured frame the app stores."""
        for key, value in FRAME_FIXTURE.items():
            self.assertIn(key, frame, "a frame must carry %r like the app's" % key)
            self.assertIsInstance(frame[key], type(value), key)
        self.assertLamport(frame["updatedAtLamport"])
        for m in frame["messages"]:
            for key in ("id", "role", "content"):
                self.assertIn(key, m)

    def assertFrameIsStored(self, frame, server=None):
        """Shape, equal to the /fetchChats entry (the legacy answer's)."""
        self.assertFrameShape(frame)
        self.assertEqual(frame, self.fetched(frame["id"], server),
                         "a frame holds exactly what a legacy answer holds for the chat")


class HandshakeTest(SocketCase):

    def test_upgrade_on_root_without_subprotocol(self):
        c = self.open()
        self.assertEqual(c.headers.get("upgrade", "").lower(), "websocket")
        self.assertIn("upgrade", c.headers.get("connection", "").lower())
        self.assertNotIn("sec-websocket-protocol", c.headers)
        # the socket is live: a change reaches it
        self.server.push_ok([app_chat("c1", "hello", [msg("m1")])])
        frame = c.next_chat()
        self.assertFrameIsStored(frame)
        self.assertEqual(frame["title"], "hello")

    def test_bad_handshakes_are_refused_in_json(self):
        old = self.ws(version="8")
        self.assertEqual(old.status, 426)
        self.assertEqual(old.headers.get("sec-websocket-version"), "13")
        self.assertErrorBody(old.body, "upgrade_required")
        bad_key = self.ws(key="not-a-key")
        self.assertEqual(bad_key.status, 400)
        self.assertErrorBody(bad_key.body, "bad_handshake")
        # without Upgrade it is no socket request at all
        plain = self.ws(upgrade=None)
        self.assertNotEqual(plain.status, 101)
        # other paths do not upgrade
        self.assertNotEqual(self.ws("v2/events").status, 101)

    def test_client_text_is_ignored_and_pings_answered(self):
        c = self.open()
        c.send_frame(OP_TEXT, b'{"id": "x", "updatedAtLamport": [99, "evil"]}')
        c.send_frame(OP_PING, b"are you there")
        fin, op, payload = c.read_frame()
        self.assertEqual((op, payload), (OP_PONG, b"are you there"))
        self.assertEqual(self.server.fetch(), [], "a client frame changes nothing")
        self.server.push_ok([chat("c1", "still open")])
        self.assertEqual(c.next_chat()["title"], "still open")

    def test_protocol_errors_close_the_socket(self):
        unmasked = self.open()
        unmasked.send_frame(OP_TEXT, b"hi", mask=False)  # RFC 6455 5.1: clients mask
        self.assertEqual(unmasked.next_event(), ("close", 1002))
        self.assertTrue(unmasked.closed_within(10))
        huge = self.open()
        huge.send_frame(OP_TEXT, b"x" * 100000)
        self.assertEqual(huge.next_event(), ("close", 1009))
        self.assertTrue(huge.closed_within(10))
        # a clean close by the client is answered with a close
        polite = self.open()
        polite.send_frame(OP_CLOSE, b"\x03\xe8")
        self.assertEqual(polite.next_event(), ("close", 1000))
        self.assertTrue(polite.closed_within(10))


class FrameTest(SocketCase):
    """A: the device that syncs; B: another device of the same user, which
    holds what its own syncs and its socket gave it."""

    def setUp(self):
        super().setUp()
        self.b_copy = AppCopy()
        # B has chat X from a sync of its own
        ans = self.server.sync_ok({"deviceId": "B", "chats": [], "deletions": []})
        self.assertEqual(ans["missing"], [])
        self.a_x = app_chat("X", "Trip", [msg("m1", timestamp="2026-12-02T12:00:00.000Z")],
                            lamport=[3, "A"], at=now_ms() - 60000)
        self.server.sync_ok({"deviceId": "A", "chats": [self.a_x], "deletions": []})
        ans = self.server.sync_ok({"deviceId": "B", "chats": [], "deletions": []})
        for c in ans["missing"]:
            self.assertTrue(self.b_copy.offer(c))
        self.assertIn("X", self.b_copy.chats)

    def b_receives(self, sock):
        frame = sock.next_chat()
        self.assertFrameIsStored(frame)
        self.assertTrue(self.b_copy.offer(frame),
                        "B must store the frame: %r does not dominate its copy %r"
                        % (frame["updatedAtLamport"],
                           self.b_copy.chats.get(frame["id"], {}).get("updatedAtLamport")))
        return frame

    def test_legacy_sync_sends_the_merged_chat(self):
        b = self.open("?deviceId=B")
        x = dict(self.a_x, messages=self.a_x["messages"] + [
            msg("m2", "and back?", timestamp="2026-12-02T12:01:00.000Z")],
            lastModified="2026-12-02T12:01:00.000Z", updatedAtLamport=[4, "A"])
        self.server.sync_ok({"deviceId": "A", "chats": [x], "deletions": []})
        frame = self.b_receives(b)
        self.assertEqual([m["id"] for m in frame["messages"]], ["m1", "m2"])
        self.assertTrue(b.quiet_for(0.5), "one change, one frame")

    def test_v2_change_sends_the_merged_chat(self):
        b = self.open("?deviceId=B")
        self.server.v2_ok({"deviceId": "V", "changes": [
            {"chatId": "X", "clock": 10, "fields": {"title": "Renamed in v2"}}]})
        frame = self.b_receives(b)
        self.assertEqual(frame["title"], "Renamed in v2")
        self.assertEqual([m["id"] for m in frame["messages"]], ["m1"], "the whole chat")
        # and again: each change dominates the copy the last frame left
        self.server.v2_ok({"deviceId": "V", "changes": [
            {"chatId": "X", "clock": 11, "messages": [
                {"id": "m3", "role": "user", "content": "v2 message",
                 "timestamp": "2026-12-02T12:05:00.000Z"}]}]})
        frame = self.b_receives(b)
        self.assertEqual([m["id"] for m in frame["messages"]], ["m1", "m3"])

    def test_clockless_client_change_still_dominates(self):
        # the seed's clients send no clock and no device: their new message
        # still moves the chat's clock above every copy
        b = self.open("?deviceId=B")
        seed_x = {"id": "X", "title": "Trip", "lastModified": iso(now_ms()),
                  "messages": self.a_x["messages"] + [
                      msg("s1", "from the seed client", timestamp=iso(now_ms()))]}
        self.server.push_ok([seed_x])
        frame = self.b_receives(b)
        self.assertEqual([m["id"] for m in frame["messages"]], ["m1", "s1"])

    def test_delete_endpoints_send_no_frame_and_a_revival_does(self):
        b = self.open("?deviceId=B")
        self.server.push_ok([app_chat("Y", "other")])
        self.assertEqual(self.b_receives(b)["id"], "Y")
        self.server.delete_chat("X")
        self.server.delete_chats(["Y"])
        self.server.sync_ok({"deviceId": "A", "chats": [],
                             "deletions": [{"id": "nothing", "lamport": [50, "A"]}]})
        self.assertTrue(b.quiet_for(1.0), "deletions do not travel on the socket")
        # a change newer than the deletion brings X back: that is a chat again
        later = dict(self.a_x, title="Back", updatedAtLamport=[90, "A"],
                     lastModified=iso(now_ms()))
        self.server.sync_ok({"deviceId": "A", "chats": [later], "deletions": []})
        frame = self.b_receives(b)
        self.assertEqual(frame["title"], "Back")

    def test_not_sent_to_the_device_that_made_the_change(self):
        a = self.open("?deviceId=A")
        b = self.open("?deviceId=B")
        anyone = self.open()
        x = dict(self.a_x, title="From A", updatedAtLamport=[5, "A"])
        self.server.sync_ok({"deviceId": "A", "chats": [x], "deletions": []})
        self.assertEqual(self.b_receives(b)["title"], "From A")
        self.assertEqual(anyone.next_chat()["title"], "From A")
        self.assertTrue(a.quiet_for(0.5), "A made the change: it has it")
        # B's change reaches A, not B
        self.server.v2_ok({"deviceId": "B", "changes": [
            {"chatId": "X", "clock": 9, "fields": {"title": "From B"}}]})
        self.assertEqual(a.next_chat()["title"], "From B")
        self.assertEqual(anyone.next_chat()["title"], "From B")
        self.assertTrue(b.quiet_for(0.5))

    def test_sync_that_changes_nothing_sends_nothing(self):
        b = self.open("?deviceId=B")
        self.server.sync_ok({"deviceId": "A", "chats": [], "deletions": []})
        self.server.v2_ok({"deviceId": "A", "cursor": None})
        self.assertTrue(b.quiet_for(1.0))


def fixture_body(name):
    """A captured request body; the app's clock object is given as its
    counter, so this runs on servers before and after they take the object
    (issue #10.1: not this suite's subject)."""
    with open(os.path.join(FIXTURES, name)) as f:
        body = json.load(f)["request"]["body"]
    clock = body.get("clientClock")
    if isinstance(clock, dict):
        body["clientClock"] = clock.get("observedCounter", 0)
    return body


class CapturedAppTest(SocketCase):

    def test_the_captured_rename_arrives_as_the_captured_frame(self):
        # A's syncs in capture order (01, 02); E has a socket; A renames (03):
        # E's frame is the one the app was seen to store (ws-frame-chat.json)
        self.server.sync_ok(fixture_body("01-new-device-first-sync.json"))
        self.server.sync_ok(fixture_body("02-chat-with-3-messages.json"))
        e = self.open("?deviceId=E")
        self.server.sync_ok(fixture_body("03-after-rename.json"))
        frame = e.next_chat()
        self.assertEqual(frame, FRAME_FIXTURE)
        self.assertFrameIsStored(frame)


class AuthSocketTest(SecurityTestCase):

    def ws(self, server, query="", **kw):
        c = WsClient(server, "/" + query, **kw)
        self.addCleanup(c.close)
        return c

    def test_token_in_query_or_subprotocol_and_user_isolation(self):
        s = self.auth_server()
        alice, bob = self.tok("alice"), self.tok("bob")
        a1 = self.ws(s, "?access_token=" + alice)
        self.assertEqual(a1.status, 101, a1.body)
        self.assertNotIn("sec-websocket-protocol", a1.headers)
        a2 = self.ws(s, protocols=["bearer", alice])
        self.assertEqual(a2.status, 101, a2.body)
        # RFC 6455 4.2.2: the answer names the subprotocol chosen, never the token
        self.assertEqual(a2.headers.get("sec-websocket-protocol"), "bearer")
        b1 = self.ws(s, "?access_token=" + bob)
        self.assertEqual(b1.status, 101, b1.body)
        s.as_user(alice).push_ok([chat("same-id", "alice's")])
        self.assertEqual(a1.next_chat()["title"], "alice's")
        self.assertEqual(a2.next_chat()["title"], "alice's")
        self.assertTrue(b1.quiet_for(0.5), "bob never sees alice's chats")
        s.as_user(bob).push_ok([chat("same-id", "bob's")])
        self.assertEqual(b1.next_chat()["title"], "bob's")
        self.assertTrue(a1.quiet_for(0.5))
        self.assertNotIn(alice, s.stderr_text())
        self.assertNotIn(bob, s.stderr_text())

    def test_refused_tokens_get_401_before_upgrading(self):
        s = self.auth_server()
        forged = self.tok("alice")[:-4] + "AAAA"
        for kw in ({}, {"query": "?access_token=" + forged},
                   {"protocols": ["bearer", forged]}, {"protocols": ["bearer"]}):
            query = kw.pop("query", "")
            c = self.ws(s, query, **kw)
            self.assertEqual(c.status, 401, (kw, c.body))
            self.assertIn(c.body.get("code"), ("unauthorized", "invalid_token"), c.body)
            self.assertTrue(c.headers.get("www-authenticate", "").startswith("Bearer"))
        self.assertNotIn(forged, s.stderr_text(), "tokens never reach the logs")

    def test_over_tls(self):
        ca, cert, key = self.keys.tls()
        s = self.auth_server("--tls-cert", cert, "--tls-key", key, tls_ca=ca)
        alice = self.tok("alice")
        c = self.ws(s, "?deviceId=B", protocols=["bearer", alice])
        self.assertEqual(c.status, 101, c.body)
        self.assertEqual(c.headers.get("sec-websocket-protocol"), "bearer")
        s.as_user(alice).sync_ok({"deviceId": "A", "chats": [
            app_chat("X", "over wss", lamport=[2, "A"])], "deletions": []})
        frame = c.next_chat()
        self.assertEqual(frame["title"], "over wss")
        self.assertEqual(frame, s.as_user(alice).fetch()[0])
        s.stop()
        self.assertEqual(c.next_event(5), ("close", 1001))

    def test_origin_must_be_an_allowed_one(self):
        s = self.auth_server("--cors-origin", "http://app.example")
        ok = self.ws(s, "?access_token=" + self.tok(), headers=["Origin: http://app.example"])
        self.assertEqual(ok.status, 101, ok.body)
        evil = self.ws(s, "?access_token=" + self.tok(), headers=["Origin: http://evil.example"])
        self.assertEqual(evil.status, 403)
        self.assertErrorBody(evil.body, "origin_not_allowed")


class CapsTest(SocketCase):
    SERVER_ARGS = ("--ws-max-user-sockets", "2", "--ws-max-sockets", "3")

    def test_user_cap_then_global_cap(self):
        s1, s2 = self.open(), self.open()
        third = self.ws()
        self.assertEqual(third.status, 429)
        self.assertErrorBody(third.body, "too_many_sockets")
        self.assertIn("retry-after", third.headers)
        # a closed socket frees its place
        s1.send_frame(OP_CLOSE, b"\x03\xe8")
        self.assertEqual(s1.next_event(), ("close", 1000))
        deadline = time.monotonic() + 10
        while True:
            again = self.ws()
            if again.status == 101 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(again.status, 101, again.body)

    def test_global_cap(self):
        server = self.new_server(("--ws-max-user-sockets", "10", "--ws-max-sockets", "2"))
        self.open(server=server), self.open(server=server)
        third = self.ws(server=server)
        self.assertEqual(third.status, 503)
        self.assertErrorBody(third.body, "overloaded")
        # HTTP is unaffected
        self.assertEqual(server.fetch(), [])


class LivenessTest(SocketCase):
    SERVER_ARGS = ("--ws-ping-interval", "1")

    def test_idle_socket_is_pinged_and_kept_while_it_answers(self):
        c = self.open()
        pings = 0
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            try:
                ev = c.next_event(0.5, answer_pings=False)
            except TimeoutError:
                continue
            self.assertEqual(ev[0], "ping", ev)
            pings += 1
            c.send_frame(OP_PONG, ev[1])
        self.assertGreaterEqual(pings, 2, "an idle socket is pinged every interval")
        self.server.push_ok([chat("c1", "alive")])
        self.assertEqual(c.next_chat()["title"], "alive")

    def test_silent_socket_is_dropped(self):
        c = self.open()
        self.assertEqual(c.next_event(5, answer_pings=False)[0], "ping")
        # no pong: gone within another interval (and a tick)
        self.assertTrue(c.closed_within(5))


class SlowReaderTest(SocketCase):
    # a long ping interval: a reader that reads nothing for a whole interval
    # is dropped as dead, and this one reads only at the end
    SERVER_ARGS = ("--ws-queue", "256k", "--ws-ping-interval", "600")

    def setUp(self):
        # freed memory is reused at once (ASan would otherwise keep it in
        # quarantine and the peak would say nothing about what is held)
        opts = os.environ.get("ASAN_OPTIONS", "")
        self._servers = []
        self.server = self.new_server(self.SERVER_ARGS, env={
            "ASAN_OPTIONS": (opts + ":" if opts else "") + "quarantine_size_mb=0"})

    def push_chats(self, prefix, n, fast, size=200000):
        for i in range(n):
            cid = "%s%03d" % (prefix, i)
            self.server.push_ok([app_chat(cid, "chat %d" % i, [msg("m", "x" * size)])])
            self.assertEqual(fast.next_chat()["id"], cid, "a fast reader gets each")

    def test_a_reader_that_falls_behind_is_closed_with_1013(self):
        fast = self.open()
        # the server's own peak for this traffic, with no slow reader: as
        # many chats as below, so SQLite's page cache is as full before as
        # after (with renderings compressed, schema 10, 40 chats left it
        # filling during the measured part: 10 MB of "growth" to the same
        # final peak)
        self.push_chats("warm", 80, fast)
        hwm_before = self.server.vm_hwm_kib()
        slow = self.open(rcvbuf=4096)   # reads nothing until the end
        n = 80                           # 16 MB of frames, far over every buffer
        self.push_chats("c", n, fast)
        hwm_after = self.server.vm_hwm_kib()
        got, end = [], None
        while end is None:
            ev = slow.next_event(10)
            if isinstance(ev, dict):
                got.append(ev["id"])
            else:
                end = ev
        self.assertEqual(end, ("close", 1013), "a reader too far behind is told to come back")
        self.assertLess(len(got), n, "the rest was never queued")
        self.assertEqual(got, ["c%03d" % i for i in range(len(got))], "what came, came in order")
        self.assertTrue(slow.closed_within(10))
        # Holding the 16 MB for the slow socket (less what the kernel's
        # buffers take, ~4 MB) would raise the peak by 12 MB; measured
        # bounded: about 1 MB.
        self.assertLess(hwm_after - hwm_before, 6 * 1024,
                        "peak memory grew %d KiB" % (hwm_after - hwm_before))

    def test_a_newer_state_replaces_a_queued_frame(self):
        slow = self.open(rcvbuf=4096)
        body = "y" * 100000
        t0 = now_ms()
        for i in range(30):  # one chat, 30 versions: only the latest matter
            self.server.push_ok([chat("same", "v%d" % i, [msg("m", body + str(i))],
                                      last_modified=iso(t0 + i))])
        seen = []
        while True:
            ev = slow.next_event(5)
            self.assertIsInstance(ev, dict, "coalesced: no overflow for one chat")
            seen.append(ev["title"])
            if ev["title"] == "v29":
                break
        self.assertLess(len(seen), 30, "queued versions were replaced by newer ones")
        self.assertEqual(seen, sorted(seen, key=lambda t: int(t[1:])))


class LifecycleTest(SocketCase):

    def test_shutdown_closes_with_1001_and_a_reconnect_works(self):
        c = self.open("?deviceId=B")
        self.server.stop()   # asserts exit code 0
        self.assertEqual(c.next_event(5), ("close", 1001))
        self.assertTrue(c.closed_within(5))
        self.server.start()  # same store, new port: the app's retry finds it
        again = self.open("?deviceId=B")
        self.server.sync_ok({"deviceId": "A", "chats": [
            app_chat("X", "after restart", lamport=[1, "A"])], "deletions": []})
        frame = again.next_chat()
        self.assertFrameIsStored(frame)
        self.assertEqual(frame["title"], "after restart")


if __name__ == "__main__":
    unittest.main()
