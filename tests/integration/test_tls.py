"""
HTTPS (issue 7): with --tls-cert/--tls-key (a test CA and a server
certificate for 127.0.0.1/localhost, made with openssl at test time) the
server speaks TLS, every answer carries Strict-Transport-Security, plain
HTTP to the TLS port gets no normal answer, and the flags come in pairs.
"""
import re
import socket
import ssl
import time
import unittest

from harness import chat, msg
from sectools import SecurityTestCase, expect_refused, stream_head


class TlsTest(SecurityTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ca, cls.cert, cls.key = cls.keys.tls()

    def tls_args(self, *more):
        return ["--tls-cert", self.cert, "--tls-key", self.key] + list(more)

    def assertHsts(self, headers, what):
        value = headers.get("Strict-Transport-Security") if hasattr(headers, "get") else None
        if value is None and isinstance(headers, dict):
            value = headers.get("strict-transport-security")
        self.assertIsNotNone(value, "%s: no Strict-Transport-Security" % what)
        m = re.search(r"max-age=(\d+)", value)
        self.assertTrue(m and int(m.group(1)) > 0, "%s: HSTS %r" % (what, value))

    def test_https_without_auth(self):
        s = self.new_server(self.tls_args(), tls_ca=self.ca)
        status, headers, doc = s.request("GET", "/health")
        self.assertEqual(status, 200, doc)
        self.assertHsts(headers, "GET /health")
        s.push_ok([chat("c1", "over tls", [msg("m1")])])
        status, headers, doc = s.request("GET", "/fetchChats")
        self.assertEqual([c["title"] for c in doc], ["over tls"])
        self.assertHsts(headers, "GET /fetchChats")
        status, headers, doc = s.request("GET", "/no/such/path")
        self.assertEqual(status, 404)
        self.assertHsts(headers, "a 404")
        status, headers, doc = s.request("POST", "/sync", raw=b"{not json")
        self.assertEqual(status, 400)
        self.assertHsts(headers, "a 400")

    def test_https_with_auth(self):
        s = self.new_server(self.tls_args(*self.hs_args()), tls_ca=self.ca, token=self.tok("alice"))
        self.assert_accepted(s, "Bearer " + s.token)
        status, headers, doc = s.request("GET", "/fetchChats", headers={"Authorization": None})
        self.assert401(status, headers, doc, "unauthorized", "no token over TLS")
        self.assertHsts(headers, "a 401")
        status, headers, _ = stream_head(s, token=s.token)
        self.assertEqual(status, 200)
        self.assertIn("text/event-stream", headers.get("content-type", ""))

    def test_certificate_is_the_configured_one(self):
        s = self.new_server(self.tls_args(), tls_ca=self.ca)
        ctx = ssl.create_default_context()          # system CAs only: ours is unknown there
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
            with self.assertRaises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        with s.connect() as tls:                    # our CA: verified for 127.0.0.1
            self.assertIsNotNone(tls.getpeercert())

    def test_plain_http_to_the_tls_port(self):
        s = self.new_server(self.tls_args(), tls_ca=self.ca)
        got = b""
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    sock.settimeout(max(0.1, deadline - time.monotonic()))
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            except (socket.timeout, ConnectionError):
                pass
        self.assertFalse(re.match(rb"HTTP/1\.[01] 200", got), got[:200])
        self.assertNotIn(b"healthy", got)
        # The TLS port still serves TLS clients.
        self.assertEqual(s.request("GET", "/health")[0], 200)

    def test_cert_and_key_come_in_pairs(self):
        db = ["--port", "0", "--db", "sqlite:" + self.keys.path("pair.db")]
        for args in (["--tls-cert", self.cert], ["--tls-key", self.key],
                     ["--tls-cert", self.keys.path("absent.crt"), "--tls-key", self.key],
                     ["--tls-cert", self.cert, "--tls-key", self.keys.path("absent.key")]):
            with self.subTest(args=args):
                code, err = expect_refused(db + args)
                self.assertEqual(code, 1, err)
                self.assertTrue(err.strip())


if __name__ == "__main__":
    unittest.main()
