"""
The live channel, GET /v2/events (docs/protocol.md): a stream per device
that says "event: changed" after any sync of the user that changed data
(legacy or v2), nothing after a sync that changed nothing, keeps open while
idle, and ends cleanly when the server stops (exit 0 with streams open).
"""
import re
import select
import socket
import struct
import time
import unittest

from harness import ServerTestCase, chat, msg, json_or_none

READ_TIMEOUT = 10.0
KEEPALIVE_S = 15        # docs/protocol.md: "a `: keepalive` comment every 15 s"
MAX_STREAMS = 1000      # docs/protocol.md: "at most 1,000 streams per server"


class EventStream:
    """A raw-socket SSE reader: headers first, then event blocks."""

    def __init__(self, server, query=""):
        self.sock = server.connect()
        self.sock.sendall(("GET /v2/events%s HTTP/1.1\r\nHost: x\r\n"
                           "Accept: text/event-stream\r\n\r\n" % query).encode())
        self.buf = b""
        head = self._read_until(b"\r\n\r\n")
        self.status_line, _, headers = head.partition(b"\r\n")
        self.headers = headers.decode().lower()

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self.sock], [], [], left)
        if not ready:
            return False
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("stream closed")
        self.buf += data
        return True

    def _read_until(self, marker, timeout=READ_TIMEOUT):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if not self._fill(deadline):
                raise TimeoutError("no %r within %.0fs; have %r" % (marker, timeout, self.buf))
        head, _, self.buf = self.buf.partition(marker)
        return head

    def text(self):
        """Everything received so far (chunked framing included)."""
        return self.buf.decode(errors="replace")

    def wait_for(self, needle, timeout=READ_TIMEOUT):
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            if not self._fill(deadline):
                return False
        return True

    def quiet_for(self, needle, seconds):
        """True if `needle` did not arrive within `seconds` AND the stream
        stayed open: a stream the server closed is dead, not quiet."""
        deadline = time.monotonic() + seconds
        while needle not in self.buf:
            try:
                if not self._fill(deadline):
                    return True
            except EOFError:
                self.buf += b"\n[the server closed the stream]"
                return False
        return False

    def consume(self):
        self.buf = b""

    def closed_within(self, timeout):
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not self._fill(deadline):
                    return False
        except EOFError:
            return True

    def close(self):
        self.sock.close()


class LiveChannelTest(ServerTestCase):

    def open(self, query=""):
        s = EventStream(self.server, query)
        self.addCleanup(s.close)
        self.assertIn(b" 200 ", s.status_line + b" ")
        self.assertIn("content-type: text/event-stream", s.headers)
        self.assertTrue(s.wait_for(b": connected"), s.text())
        s.consume()
        return s

    def test_v2_change_wakes_every_stream(self):
        a, b = self.open(), self.open()
        self.server.v2_ok({"deviceId": "A", "changes": [
            {"chatId": "c1", "clock": 1, "fields": {"title": "hello"}}]})
        for s in (a, b):
            self.assertTrue(s.wait_for(b"event: changed"), s.text())

    def test_a_device_is_not_woken_by_its_own_change(self):
        own, other = self.open("?deviceId=A"), self.open("?deviceId=B")
        anyone = self.open()
        self.server.v2_ok({"deviceId": "A", "changes": [
            {"chatId": "c1", "clock": 1, "fields": {"title": "from A"}}]})
        # One notification wakes every stream it concerns in one pass: once
        # B's and the unnamed stream have it, A's would have had it too.
        for s in (other, anyone):
            self.assertTrue(s.wait_for(b"event: changed"), s.text())
            s.consume()
        self.assertTrue(own.quiet_for(b"event: changed", 0.5), own.text())
        # A legacy sync names its device too.
        self.server.sync_ok({"deviceId": "A", "chats": [chat("c2", "legacy from A")]})
        self.assertTrue(other.wait_for(b"event: changed"), other.text())
        other.consume()
        self.assertTrue(own.quiet_for(b"event: changed", 0.5), own.text())
        # Everyone else's changes still reach A.
        self.server.v2_ok({"deviceId": "B", "changes": [
            {"chatId": "c1", "clock": 2, "fields": {"title": "from B"}}]})
        self.assertTrue(own.wait_for(b"event: changed"), own.text())
        self.assertTrue(other.quiet_for(b"event: changed", 0.5), other.text())
        self.server.push_ok([chat("c3", "no device")])  # /pushChats names none
        self.assertTrue(own.wait_for(b"event: changed"), own.text())

    def test_an_overlong_device_query_is_no_device(self):
        # Not cut to 256 bytes (which would silence it for device x*256).
        s = self.open("?deviceId=" + "x" * 300)
        self.server.v2_ok({"deviceId": "x" * 256, "changes": [
            {"chatId": "c1", "clock": 1, "fields": {"title": "t"}}]})
        self.assertTrue(s.wait_for(b"event: changed"), s.text())

    def test_legacy_sync_and_delete_wake_streams(self):
        s = self.open()
        self.server.push_ok([chat("c1", "t", [msg("m1")])])
        self.assertTrue(s.wait_for(b"event: changed"), s.text())
        s.consume()
        self.server.delete_chat("c1")
        self.assertTrue(s.wait_for(b"event: changed"), s.text())

    def test_sync_that_changes_nothing_is_silent(self):
        self.server.push_ok([chat("c1", "t", [msg("m1")], last_modified="2026-01-01T00:00:00.000Z")])
        s = self.open()
        self.server.v2_ok({"deviceId": "A", "cursor": None})
        self.server.push_ok([chat("c1", "t", [msg("m1")], last_modified="2026-01-01T00:00:00.000Z")])
        self.assertTrue(s.quiet_for(b"event: changed", 1.0), s.text())

    def test_streams_end_when_the_server_stops(self):
        streams = [self.open() for _ in range(3)]
        self.server.stop()  # asserts exit code 0 with streams open
        for s in streams:
            self.assertTrue(s.closed_within(5.0))

    def test_wrong_method_is_refused(self):
        status, _, doc = self.server.request("POST", "/v2/events", body={})
        self.assertEqual(status, 405)
        self.assertEqual(doc["code"], "method_not_allowed")

    def test_an_idle_stream_gets_keepalives_and_stays_open(self):
        s = self.open()
        # The first keep-alive comes within one period of the ticker.
        self.assertTrue(s.wait_for(b": keepalive\n\n", KEEPALIVE_S + 5), s.text())
        self.assertNotIn(b"event: changed", s.buf)
        s.consume()
        # still alive after the idle period: a change rings it
        self.server.push_ok([chat("c1", "t", [msg("m1")])])
        self.assertTrue(s.wait_for(b"event: changed"), s.text())


class StreamCapTest(ServerTestCase):
    # One user (open mode) holds every stream: lift the per-user and
    # connection limits so the stream cap is the one that bites.
    SERVER_ARGS = ("--max-user-requests", "5000", "--max-connections", "4000",
                   "--max-connections-per-ip", "0")  # every stream comes from 127.0.0.1

    def try_stream(self):
        """Opens one more stream and closes it; (status, JSON error or None).
        Reads only the headers of a 200 (a stream never ends by itself)."""
        sock = self.server.connect()
        try:
            sock.sendall(b"GET /v2/events HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(READ_TIMEOUT)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                self.assertTrue(chunk, "closed before the headers: %r" % buf)
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            if status == 200:
                return status, None
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(body) < length:
                chunk = sock.recv(4096)
                self.assertTrue(chunk, "closed inside the body")
                body += chunk
            return status, json_or_none(body)
        finally:
            sock.close()

    def test_the_stream_past_the_cap_is_refused_503_and_a_freed_slot_is_reused(self):
        streams = []
        self.addCleanup(lambda: [s.close() for s in streams])
        for i in range(MAX_STREAMS):
            s = EventStream(self.server)
            streams.append(s)
            self.assertIn(b" 200 ", s.status_line + b" ", "stream %d: %r" % (i, s.status_line))
        for s in streams:   # every one really open (greeted), not merely accepted
            self.assertTrue(s.wait_for(b": connected"), s.text())
        status, doc = self.try_stream()
        self.assertEqual(status, 503, "stream %d past the cap: %r" % (MAX_STREAMS + 1, doc))
        self.assertErrorBody(doc, "overloaded")
        # A stream that goes away frees its slot. A parked stream is not
        # polled: the server notices a reset socket when it writes the next
        # keep-alive to it (a plain FIN would take a second write).
        gone = streams.pop()
        gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()
        deadline = time.monotonic() + KEEPALIVE_S + 10
        while True:
            status, doc = self.try_stream()
            if status == 200:
                break
            self.assertEqual(status, 503, doc)
            self.assertLess(time.monotonic(), deadline, "the freed slot was never reused")
            time.sleep(0.05)

if __name__ == "__main__":
    unittest.main()
