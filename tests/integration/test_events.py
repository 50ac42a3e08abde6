"""
The live channel, GET /v2/events (docs/protocol.md): a stream per device
that says "event: changed" after any sync of the user that changed data
(legacy or v2), nothing after a sync that changed nothing, keeps open while
idle, and ends cleanly when the server stops (exit 0 with streams open).
"""
import select
import time
import unittest

from harness import ServerTestCase, chat, msg

READ_TIMEOUT = 10.0


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
        """True if `needle` did not arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while needle not in self.buf:
            try:
                if not self._fill(deadline):
                    return True
            except EOFError:
                return True
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


if __name__ == "__main__":
    unittest.main()
