"""
Abuse limits (issue 7): per-user request rate (429 rate_limited with
Retry-After) and concurrency (429 too_many_requests), the per-user storage
quota (507 quota_exceeded, the write changes nothing, reads still work), a
body dripped one byte a second (cut off after --request-timeout), huge
headers (431 or closed, the server keeps serving), and --max-connections.
"""
import base64
import http.client
import json
import math
import os
import socket
import time
import unittest

from harness import chat, msg, read_http_response
from sectools import SecurityTestCase


def junk(n):
    """n characters that do not compress much."""
    return base64.b64encode(os.urandom(n))[:n].decode()


def served(server):
    """True when a fresh connection gets a 200 for GET /health."""
    return server.request("GET", "/health", headers={"Authorization": None})[0] == 200


class RateLimitTest(SecurityTestCase):

    def burst(self, view, n):
        """n quick GET /fetchChats; returns (statuses, first 429's headers and body, seconds)."""
        statuses, first = [], None
        t0 = time.monotonic()
        for _ in range(n):
            status, headers, doc = view.request("GET", "/fetchChats")
            statuses.append(status)
            if status == 429 and first is None:
                first = (headers, doc)
        return statuses, first, time.monotonic() - t0

    def check_limited(self, view, burst, rate=1):
        statuses, first, elapsed = self.burst(view, 25)
        self.assertEqual(statuses[:burst], [200] * burst, "the burst must pass: %r" % statuses)
        self.assertIn(429, statuses, "no 429 in %d requests over %.2f s" % (len(statuses), elapsed))
        self.assertTrue(set(statuses) <= {200, 429}, statuses)
        allowed = burst + math.ceil(elapsed * rate) + 1
        self.assertLessEqual(statuses.count(200), allowed,
                             "%r in %.2f s at %d/s, burst %d" % (statuses, elapsed, rate, burst))
        headers, doc = first
        self.assertErrorBody(doc, "rate_limited")
        retry = headers.get("Retry-After")
        self.assertIsNotNone(retry, "a 429 must say Retry-After")
        self.assertRegex(retry.strip(), r"^\d+$")
        self.assertGreaterEqual(int(retry), 1)
        self.assertLessEqual(int(retry), 5, "Retry-After %s at %d request/s" % (retry, rate))
        return int(retry)

    def test_rate_limit_per_user(self):
        s = self.auth_server("--rate-limit", "1", "--rate-burst", "5")
        alice, bob = s.as_user(self.tok("alice")), s.as_user(self.tok("bob"))
        retry = self.check_limited(alice, 5)
        # Bob has his own bucket.
        self.assertEqual(bob.request("GET", "/fetchChats")[0], 200)
        # Alice is served again once Retry-After has passed.
        time.sleep(retry + 0.2)
        status, _, doc = alice.request("GET", "/fetchChats")
        self.assertEqual(status, 200, doc)

    def test_no_rate_limit_by_default(self):
        # Documented default (docs/security.md): no rate limit, so a user's
        # devices syncing at once are never throttled; operators opt in.
        s = self.auth_server()
        statuses, first, elapsed = self.burst(s, 100)
        self.assertEqual(statuses, [200] * 100, statuses)

    def test_rate_limit_without_auth(self):
        s = self.new_server(["--rate-limit", "1", "--rate-burst", "3"])
        self.check_limited(s, 3)

    def test_rate_limited_write_changes_nothing(self):
        s = self.auth_server("--rate-limit", "1", "--rate-burst", "2")
        s.push_ok([chat("c1", "t")])
        statuses = []
        for i in range(10):
            status, _, doc = s.request("POST", "/pushChats",
                                       body={"chats": [chat("x%d" % i, "t")]})
            statuses.append(status)
            if status == 429:
                self.assertErrorBody(doc, "rate_limited")
                refused = "x%d" % i
                break
        self.assertIn(429, statuses)
        time.sleep(2.2)
        ids = {c["id"] for c in s.fetch()}
        self.assertNotIn(refused, ids)


class ConcurrencyTest(SecurityTestCase):

    def try_hold(self, server, token, n_body=64):
        """A POST /pushChats whose body is not sent yet. Returns (socket, body,
        status): status is 100 once the server has taken the request (its
        100 Continue, waited for up to 3 s), or the final status it answered
        before the body (429 when the user has no free slot)."""
        sock = server.connect()
        body = json.dumps({"chats": [chat("held", "t")]}).encode()
        body += b" " * max(0, n_body - len(body))
        sock.sendall(("POST /pushChats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Authorization: Bearer %s\r\nExpect: 100-continue\r\n"
                      "Content-Length: %d\r\n\r\n" % (token, len(body))).encode())
        try:
            status, _, _ = read_http_response(sock, timeout=3, skip_informational=False)
        except TimeoutError:
            status = 100
        return sock, body, status

    def hold(self, server, token, n_body=64):
        """try_hold that must be taken; returns (socket, body)."""
        sock, body, status = self.try_hold(server, token, n_body)
        if status != 100:
            sock.close()
            raise AssertionError("a held request was answered %d before its body" % status)
        return sock, body

    def served_within(self, server, seconds):
        """Polls GET /fetchChats until it is answered 200 (the server frees a
        closed connection's slot asynchronously) or `seconds` pass; returns
        the last (status, body)."""
        deadline = time.monotonic() + seconds
        while True:
            status, _, doc = server.request("GET", "/fetchChats")
            if status == 200 or time.monotonic() > deadline:
                return status, doc
            time.sleep(0.05)

    def hold_all_slots(self, server, token, slots, deadline):
        """Holds `slots` requests at once, retrying while slots of closed
        connections are still being freed (the server notices a close
        asynchronously, one connection at a time). Returns the held sockets,
        or None if that never became possible before `deadline`."""
        while time.monotonic() < deadline:
            held = []
            for _ in range(slots):
                sock, _, status = self.try_hold(server, token)
                if status != 100:
                    self.assertEqual(status, 429)
                    sock.close()
                    break
                held.append(sock)
            if len(held) == slots:
                return held
            for sock in held:
                sock.close()
            time.sleep(0.05)
        return None

    def test_concurrent_requests_per_user(self):
        s = self.auth_server("--max-user-requests", "2")
        alice, bob = self.tok("alice"), self.tok("bob")
        held = [self.hold(s, alice) for _ in range(2)]
        try:
            status, headers, doc = s.request("GET", "/fetchChats")
            self.assertEqual(status, 429, "a third concurrent request of alice: %r" % doc)
            self.assertErrorBody(doc, "too_many_requests")
            # Another user is not affected.
            self.assertEqual(s.as_user(bob).request("GET", "/fetchChats")[0], 200)
            # The held requests finish normally.
            for sock, body in held:
                sock.sendall(body)
                status, _, _ = read_http_response(sock)
                self.assertEqual(status, 200)
        finally:
            for sock, _ in held:
                sock.close()
        # With both done, alice is served again.
        status, doc = self.served_within(s, 5)
        self.assertEqual(status, 200, doc)

    def test_default_is_64_concurrent_requests(self):
        s = self.auth_server()
        held = [self.hold(s, s.token) for _ in range(64)]
        try:
            status, _, doc = s.request("GET", "/fetchChats")
            self.assertEqual(status, 429, "a 65th concurrent request: %r" % doc)
            self.assertErrorBody(doc, "too_many_requests")
        finally:
            for sock, _ in held:
                sock.close()

    def test_abandoned_requests_free_their_slots(self):
        s = self.auth_server("--max-user-requests", "2")
        alice = self.tok("alice")
        # Take both slots and drop the connections, three times over: each
        # time both slots must come back (a leak would lose them for good).
        for round_no in range(3):
            held = self.hold_all_slots(s, alice, 2, time.monotonic() + 10)
            self.assertIsNotNone(held, "round %d: slots of closed connections never freed" % round_no)
            status, _, doc = s.request("GET", "/fetchChats")
            self.assertEqual(status, 429, "a third request with two held: %r" % doc)
            for sock in held:
                sock.close()
        status, doc = self.served_within(s, 10)
        self.assertEqual(status, 200, "slots of closed connections never freed: %r" % doc)


class QuotaTest(SecurityTestCase):

    def test_over_quota_is_507_and_changes_nothing(self):
        s = self.auth_server("--quota", "64K")
        s.push_ok([chat("c1", "small", [msg("m1", "hello")])])
        before = s.fetch()
        big = junk(200 * 1024)
        attempts = [
            ("POST", "/pushChats", {"chats": [chat("big", "t", [msg("b1", big)])]}),
            ("POST", "/sync", {"deviceId": "A", "chats": [chat("c1", "small", [msg("m1", "hello")]),
                                                         chat("big", "t", [msg("b1", big)])]}),
            ("POST", "/v2/sync", {"deviceId": "A", "changes": [
                {"chatId": "c1", "clock": 5, "fields": {"title": "renamed"},
                 "messages": [{"id": "b1", "role": "user", "content": big}]}]}),
        ]
        for method, path, body in attempts:
            with self.subTest(path=path):
                status, _, doc = s.request(method, path, body=body)
                self.assertEqual(status, 507, "%s over quota: %r" % (path, doc))
                self.assertErrorBody(doc, "quota_exceeded")
                self.assertEqual(s.fetch(), before, "a refused write changed data")
        # Reads still work, and another user has a quota of their own.
        self.assertEqual(s.request("POST", "/v2/sync", body={"deviceId": "B", "cursor": None})[0], 200)
        s.as_user(self.tok("bob")).push_ok([chat("c1", "bob", [msg("m1", junk(30 * 1024))])])

    def test_quota_accumulates(self):
        s = self.auth_server("--quota", "64K")
        accepted, refused_at = 0, None
        for i in range(20):
            status, _, doc = s.request("POST", "/pushChats",
                                       body={"chats": [chat("c%d" % i, "t", [msg("m", junk(10 * 1024))])]})
            if status == 200:
                accepted += 1
                continue
            self.assertEqual(status, 507, doc)
            self.assertErrorBody(doc, "quota_exceeded")
            refused_at = i
            break
        self.assertIsNotNone(refused_at, "20 chats of 10 KB fit a 64 KB quota")
        self.assertLessEqual(accepted, 6, "more than 64 KB stored")
        self.assertGreaterEqual(accepted, 3, "the quota counts far more than is stored")
        self.assertEqual(len(s.fetch()), accepted)


class SlowClientTest(SecurityTestCase):

    def drip(self, server, prefix, drip, limit):
        """Sends prefix, then one byte of `drip` a second; returns (seconds
        until the server closed or answered, what it answered)."""
        sock = server.connect()
        self.addCleanup(sock.close)
        t0 = time.monotonic()
        sock.sendall(prefix)
        got = b""
        for i in range(len(drip)):
            deadline = time.monotonic() + 1.0
            try:
                while time.monotonic() < deadline:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    chunk = sock.recv(65536)
                    if not chunk:
                        return time.monotonic() - t0, got
                    got += chunk
                    if b"\r\n\r\n" in got:
                        return time.monotonic() - t0, got
            except socket.timeout:
                pass
            except ConnectionError:
                return time.monotonic() - t0, got
            if time.monotonic() - t0 > limit:
                break
            try:
                sock.sendall(drip[i:i + 1])
            except (BrokenPipeError, ConnectionError):
                return time.monotonic() - t0, got
        return None, got

    def assertCutOff(self, elapsed, got, limit, what):
        self.assertIsNotNone(elapsed, "%s: still open after %.0f s" % (what, limit))
        self.assertLessEqual(elapsed, limit, what)
        if got:
            self.assertRegex(got, rb"^HTTP/1\.[01] 408 ", "%s: answered %r" % (what, got[:200]))

    def test_slow_body_cut_off(self):
        s = self.new_server(["--request-timeout", "2", "--connection-timeout", "30"])
        body = json.dumps({"chats": [chat("c1", "t")]}).encode().ljust(60)
        head = ("POST /pushChats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % len(body)).encode()
        elapsed, got = self.drip(s, head + body[:1], body[1:], limit=8)
        self.assertCutOff(elapsed, got, 8, "a body at one byte a second")
        self.assertTrue(served(s))
        self.assertEqual(s.fetch(), [], "the cut-off request must change nothing")

    def test_a_prompt_body_in_pieces_is_served(self):
        s = self.new_server(["--request-timeout", "2"])
        body = json.dumps({"chats": [chat("c1", "t")]}).encode()
        sock = s.connect()
        self.addCleanup(sock.close)
        sock.sendall(("POST /pushChats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n" % len(body)).encode() + body[:5])
        time.sleep(0.5)
        sock.sendall(body[5:])
        status, _, _ = read_http_response(sock)
        self.assertEqual(status, 200)

    def test_huge_headers(self):
        s = self.new_server()
        cases = {
            "one 100 KB header": b"X-Big: " + b"a" * 100000 + b"\r\n",
            "10,000 small headers": b"".join(b"X-H%d: v\r\n" % i for i in range(10000)),
        }
        for label, extra in cases.items():
            with self.subTest(label):
                sock = s.connect()
                try:
                    try:
                        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
                    except (BrokenPipeError, ConnectionError):
                        pass
                    try:
                        status, _, _ = read_http_response(sock, timeout=10)
                    except (EOFError, ConnectionError):
                        status = None            # closed: fine
                    self.assertIn(status, (None, 431), label)
                finally:
                    sock.close()
                self.assertTrue(served(s), "the server must keep serving after " + label)


class MaxConnectionsTest(SecurityTestCase):

    def test_extra_connections_refused_existing_keep_working(self):
        s = self.new_server(["--max-connections", "4"])
        conns = []
        self.addCleanup(lambda: [c.close() for c in conns])
        for _ in range(4):
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
            c.request("GET", "/health")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            conns.append(c)
        # A fifth is refused or closed without a normal answer.
        outcome = None
        try:
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, _ = read_http_response(sock, timeout=5)
                outcome = status
        except (ConnectionError, EOFError):
            outcome = "closed"
        except (TimeoutError, socket.timeout):
            outcome = "no answer in 5 s"
        self.assertIn(outcome, ("closed", 503), "a fifth connection got %r" % (outcome,))
        # The four existing connections still work.
        for i, c in enumerate(conns):
            c.request("GET", "/health")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200, "existing connection %d" % i)
        # A freed slot is usable again.
        conns.pop().close()
        # The server sees the close asynchronously, and each probe's own close
        # too: poll until one probe is served, never assert on a later probe.
        deadline = time.monotonic() + 10
        served = False
        while not served and time.monotonic() < deadline:
            served = self._try_health(s)
            if not served:
                time.sleep(0.05)
        self.assertTrue(served, "a new connection after one closed")

    @staticmethod
    def _try_health(s):
        try:
            return served(s)
        except (ConnectionError, http.client.HTTPException, OSError):
            return False


if __name__ == "__main__":
    unittest.main()
