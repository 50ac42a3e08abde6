"""
Shared pieces of the security suites (test_auth, test_isolation, test_tls,
test_cors, test_limits): a test case with per-class keys and no automatic
server, a check that polysyncd refuses to start, raw requests that read only
the answer's head (for streams), and the 401 checks.
"""
import os
import secrets
import subprocess
import time

from harness import POLYSYNCD, START_TIMEOUT, STOP_TIMEOUT, ServerTestCase, read_line
from jwtkit import KeyDir, claims, hs_token

# Every route that needs a token when auth is configured, with a body that
# is valid for it (GET /v2/events is a stream: see stream_head).
PROTECTED = [
    ("POST", "/sync", {"chats": []}),
    ("POST", "/pushChats", {"chats": []}),
    ("GET", "/fetchChats", None),
    ("POST", "/deleteChat", {"chatId": "c1"}),
    ("POST", "/deleteChats", {"chatIds": ["c1"]}),
    ("POST", "/v2/sync", {"deviceId": "d1", "cursor": None}),
]


def expect_refused(args, timeout=START_TIMEOUT):
    """Runs polysyncd with args; returns (exit code, stderr) when it exits
    without listening. Fails fast (kills it) if it prints its banner."""
    env = dict(os.environ)
    env.pop("CHAT_SYNC_PORT", None)
    proc = subprocess.Popen([POLYSYNCD] + list(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        try:
            line = read_line(proc.stdout.fileno(), time.monotonic() + timeout)
        except EOFError:
            line = None
        except TimeoutError:
            line = "(nothing printed for %.0f s, still running)" % timeout
        if line is not None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError("polysyncd %r started (or hung) instead of refusing: %r"
                                 % (args, line))
        code = proc.wait(timeout=timeout)
        return code, proc.stderr.read().decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()


def stream_head(server, path="/v2/events", token=None, extra=b"", timeout=20.0):
    """GET path on a raw socket; returns (status, headers lower-cased, first
    body bytes read with the head) and closes the socket."""
    sock = server.connect()
    try:
        auth = b"" if token is None else ("Authorization: Bearer %s\r\n" % token).encode()
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth + extra +
                     b"\r\n")
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer head; got %r" % buf[:200])
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("closed before the head; got %r" % buf[:200])
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers, rest
    finally:
        sock.close()


class SecurityTestCase(ServerTestCase):
    """Keys made once per class in a temporary folder; setUp starts nothing
    (each test calls new_server with the flags it needs)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.keys = KeyDir()
        cls.secret = secrets.token_hex(24)               # 48 bytes
        cls.secret_file = cls.keys.write("jwt.secret", cls.secret + "\n")

    @classmethod
    def tearDownClass(cls):
        cls.keys.close()
        super().tearDownClass()

    def setUp(self):
        self._servers = []

    def hs_args(self, *more):
        return ["--jwt-secret-file", self.secret_file] + list(more)

    def tok(self, sub="alice", **kw):
        """A valid HS256 token for the class secret."""
        return hs_token(self.secret, claims(sub=sub, **kw))

    def auth_server(self, *more, token=None, **kw):
        """A server with HS256 auth (class secret); its default token is alice's."""
        return self.new_server(self.hs_args(*more), token=token or self.tok("alice"), **kw)

    # -- 401 checks --

    def assert401(self, status, headers, doc, code, what=""):
        self.assertEqual(status, 401, "%s: expected 401, got %d %r" % (what, status, doc))
        self.assertErrorBody(doc, code)
        www = headers.get("WWW-Authenticate") if hasattr(headers, "get") else None
        if www is None and isinstance(headers, dict):
            www = headers.get("www-authenticate")
        self.assertIsNotNone(www, "%s: a 401 must carry WWW-Authenticate" % what)
        self.assertTrue(www.startswith('Bearer realm="polysync"'),
                        "%s: WWW-Authenticate is %r" % (what, www))
        if code == "invalid_token":
            self.assertIn('error="invalid_token"', www, what)

    def assert_rejected(self, server, authorization, code="invalid_token", what=None,
                        method="GET", path="/fetchChats", body=None):
        status, headers, doc = server.request(method, path, body=body,
                                              headers={"Authorization": authorization})
        self.assert401(status, headers, doc, code, what or authorization[:80])

    def assert_accepted(self, server, authorization, what=None):
        status, _, doc = server.request("GET", "/fetchChats",
                                        headers={"Authorization": authorization})
        self.assertEqual(status, 200, "%s: %r" % (what or authorization[:80], doc))
        self.assertIsInstance(doc, list)
