"""
Helpers for the client suites (Python 3, stdlib only).

Server    a real polysyncd on a free port with its own SQLite file; restart()
          keeps port and data, kill() is SIGKILL.
Device    one local store driven through the `polysync` CLI.
Proxy     a programmable HTTP proxy in front of a Server: it records every
          request and can answer 404 on /v2 (a legacy server), demand a token,
          inject 4xx/5xx answers with Retry-After, delay answers, drop
          connections, or restart the server behind it mid-request.

Binaries come from $POLYSYNC and $POLYSYNCD (ctest sets them), else build/.
Waits are polls against deadlines; nothing sleeps to synchronise.
"""
import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
POLYSYNC = os.environ.get("POLYSYNC") or os.path.join(ROOT, "build", "bin", "polysync")
POLYSYNCD = os.environ.get("POLYSYNCD") or os.path.join(ROOT, "build", "bin", "polysyncd")

# Generous: the suites also run under ASan+UBSan.
TIMEOUT = 60.0
BANNER = re.compile(r"^polysyncd \S+ listening on https?://[^:/\s]+:(\d+)")
# What AddressSanitizer, LeakSanitizer and UBSan print when they find something.
SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                              r"SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer")

# Fast retries for tests that expect failures.
FAST_RETRIES = ["--retries", "3", "--retry-max-delay", "1", "--timeout", "5"]


def wait_for(pred, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """polysyncd with a database in `folder`."""

    def __init__(self, folder, extra=(), name="server"):
        self.folder = folder
        self.db = os.path.join(folder, name + ".db")
        self.extra = list(extra)
        self.port = 0
        self.proc = None
        self.log = os.path.join(folder, name + ".log")
        self.problems = []   # unclean exits; ClientTestCase.cleanup fails on them

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        errf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [POLYSYNCD, "--port", str(self.port), "--db", "sqlite:" + self.db] + self.extra,
            stdout=subprocess.PIPE, stderr=errf)
        errf.close()
        line = self.proc.stdout.readline().decode()
        m = BANNER.match(line)
        if not m:
            self.proc.kill()
            raise AssertionError("polysyncd did not start: %r\n%s" % (line, self.stderr()))
        self.port = int(m.group(1))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(timeout=TIMEOUT)
            self.proc.stdout.close()
            self.proc = None
            if rc != 0:   # under ASan a leak or memory error makes it non-zero
                self.problems.append("polysyncd exited %s after SIGTERM" % rc)
            return rc
        return None

    def sanitizer_reports(self):
        """Sanitizer and leak reports in every run's stderr (kill -9 runs too)."""
        text = self.stderr()
        return [line for line in text.splitlines() if SANITIZER_REPORT.search(line)]

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
            self.proc.stdout.close()
        self.proc = None

    def restart(self, hard=False):
        if hard:
            self.kill()
        else:
            self.stop()
        # the port may linger a moment after the process is gone
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                return self.start()
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stderr(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Result:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "polysync %s -> %d\nstdout: %s\nstderr: %s" % (
            " ".join(self.args), self.rc, self.out[-2000:], self.err[-2000:])


def run_cli(args, env=None, timeout=TIMEOUT, stdin=None):
    full_env = dict(os.environ)
    full_env.pop("POLYSYNC_SERVER", None)
    full_env.pop("POLYSYNC_TOKEN", None)
    if env:
        full_env.update(env)
    p = subprocess.run([POLYSYNC] + list(args), capture_output=True, env=full_env,
                       timeout=timeout, input=stdin)
    r = Result(list(args), p.returncode, p.stdout.decode("utf-8", "replace"),
               p.stderr.decode("utf-8", "replace"))
    check_sanitizers(r.err, r)
    return r


SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                   "runtime error:")


def check_sanitizers(stderr, what=""):
    """Under ASan+UBSan a report may come with an exit code a test expects
    anyway (LeakSanitizer exits 1): the report itself fails the test."""
    for mark in SANITIZER_MARKS:
        if mark in stderr:
            raise AssertionError("sanitizer report (%s): %r\n%s" % (mark, what, stderr[-4000:]))


class Device:
    """One local store, used through the CLI."""

    def __init__(self, folder, name, server=None):
        self.name = name
        self.store = os.path.join(folder, name + ".db")
        self.server = server  # an object with .url, or a URL string

    def url(self):
        return self.server if isinstance(self.server, str) else self.server.url

    def run(self, *args, env=None, ok=True, server=True, timeout=TIMEOUT, stdin=None):
        full = ["--store", self.store]
        if server and self.server is not None:
            full += ["--server", self.url()]
        r = run_cli(full + list(args), env=env, timeout=timeout, stdin=stdin)
        if ok and r.rc != 0:
            raise AssertionError("%s: %r" % (self.name, r))
        return r

    def popen(self, *args, env=None, **kw):
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        full = [POLYSYNC, "--store", self.store]
        if self.server is not None:
            full += ["--server", self.url()]
        return subprocess.Popen(full + list(args), env=full_env, **kw)

    def new_chat(self, title):
        return self.run("chat", "new", "--title", title).out.strip()

    def add_msg(self, chat, content, role="user"):
        return self.run("msg", "add", chat, "--role", role, "--content", content).out.strip()

    def sync(self, *extra, ok=True):
        return self.run("sync", "--json", *extra, ok=ok)

    def chats(self):
        """Every live chat as the export shows it, by id, without Lamport tuples."""
        out = {}
        for c in json.loads(self.run("export").out):
            c.pop("updatedAtLamport", None)
            out[c["id"]] = c
        return out

    def pending(self):
        return self.run("status", "--json").json()["pendingChanges"]

    def integrity(self):
        db = sqlite3.connect(self.store)
        try:
            return db.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            db.close()


def assert_converged(test, *devices):
    states = [d.chats() for d in devices]
    for d, s in zip(devices[1:], states[1:]):
        test.assertEqual(states[0], s, "%s and %s differ" % (devices[0].name, d.name))
    return states[0]


# ---- the proxy ----------------------------------------------------------

class Rule:
    """One injected behaviour: matches a path prefix, used `times` times."""

    def __init__(self, prefix, times=1, status=None, headers=None, body=None, delay=0.0,
                 drop=False, restart=None, after_forward=False, when=None, hold=None):
        self.prefix, self.times = prefix, times
        self.status, self.headers, self.body = status, headers or {}, body
        self.delay, self.drop, self.restart = delay, drop, restart
        self.after_forward = after_forward  # forward first, then act (answer lost)
        self.when = when  # callable(request) -> bool, extra condition
        # callable() -> bool: the request waits (its answer not forwarded or
        # sent) until it is true, or TIMEOUT; self.held is whether it was
        self.hold, self.held = hold, None


class Proxy:
    def __init__(self, upstream):
        self.upstream = upstream  # a Server
        self.rules = []
        self.v2_missing = False
        self.token = None
        # bytes per second at which request bodies are read and answers
        # written (None: at once), to watch a slow upload or download
        self.read_rate = None
        self.write_rate = None
        self.requests = []  # (method, path, headers dict, body bytes, status)
        self.lock = threading.RLock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                proxy.handle(self, "GET")

            def do_POST(self):
                proxy.handle(self, "POST")

        class Server(ThreadingHTTPServer):
            def server_bind(self):
                # a small receive buffer, so a slowly read body is not
                # swallowed whole by the kernel (the client sees it move)
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
                super().server_bind()

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, *a, **kw):
        r = Rule(*a, **kw)
        with self.lock:
            self.rules.append(r)
        return r

    def seen(self, prefix):
        with self.lock:
            return [r for r in self.requests if r[1].startswith(prefix)]

    def _rule_for(self, path, req):
        with self.lock:
            for r in self.rules:
                if r.times > 0 and path.startswith(r.prefix) and (r.when is None or r.when(req)):
                    r.times -= 1
                    return r
        return None

    def _paced(self, rate, n, step):
        """Yields chunk sizes adding up to n, sleeping to keep `rate` bytes/s."""
        start, done = time.monotonic(), 0
        while done < n:
            k = min(step, n - done)
            yield k
            done += k
            ahead = done / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)

    def _send(self, h, status, headers, body, entry=None):
        if entry is not None:
            entry[4] = status
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if self.write_rate and len(body) > 16384:
            off = 0
            for k in self._paced(self.write_rate, len(body), 16384):
                h.wfile.write(body[off:off + k])
                h.wfile.flush()
                off += k
        else:
            h.wfile.write(body)

    def _read_body(self, h, length):
        if not self.read_rate:
            return h.rfile.read(length) if length else b""
        parts = []
        for k in self._paced(self.read_rate, length, 8192):
            parts.append(h.rfile.read(k))
        return b"".join(parts)

    def handle(self, h, method):
        length = int(h.headers.get("Content-Length") or 0)
        body = self._read_body(h, length)
        headers = {k.lower(): v for k, v in h.headers.items()}
        req = {"method": method, "path": h.path, "headers": headers, "body": body}
        # recorded before any answer goes out: a client that has its answer
        # (and exited) is always in the record; [4] is the status, set just
        # before the answer is sent (-1: connection dropped, None: in flight)
        entry = [method, h.path, headers, body, None]
        with self.lock:
            self.requests.append(entry)
        status = None
        try:
            if self.token is not None and headers.get("authorization") != "Bearer " + self.token:
                status = entry[4] = 401
                self._send(h, 401, {"Content-Type": "application/json",
                                    "WWW-Authenticate": "Bearer"},
                           b'{"error":"a valid bearer token is required","code":"unauthorized"}')
                return
            if self.v2_missing and h.path.startswith("/v2/"):
                status = entry[4] = 404
                self._send(h, 404, {"Content-Type": "application/json"},
                           b'{"error":"no such endpoint","code":"not_found"}')
                return
            rule = self._rule_for(h.path, req)
            if rule and rule.delay:
                time.sleep(rule.delay)
            if rule and rule.hold:
                end = time.monotonic() + TIMEOUT
                while not rule.hold() and time.monotonic() < end:
                    time.sleep(0.01)
                rule.held = bool(rule.hold())
            if rule and not rule.after_forward:
                if rule.restart:
                    self.upstream.restart(hard=rule.restart == "hard")
                if rule.drop:
                    status = entry[4] = -1
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                if rule.status:
                    status = entry[4] = rule.status
                    self._send(h, rule.status, dict({"Content-Type": "application/json"},
                                                    **rule.headers), rule.body or b"{}")
                    return
            if h.path.startswith("/v2/events"):
                status = self._stream(h, headers)
                return
            status, rheaders, rbody = self._forward(method, h.path, headers, body)
            if rule and rule.after_forward:
                if rule.restart:
                    self.upstream.restart(hard=rule.restart == "hard")
                if rule.drop or rule.restart:
                    status = entry[4] = -1
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
            self._send(h, status, rheaders, rbody, entry=entry)
        finally:
            entry[4] = status

    def _forward(self, method, path, headers, body):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=TIMEOUT)
            fwd = {k: v for k, v in headers.items()
                   if k in ("content-type", "content-encoding", "accept-encoding", "authorization",
                            "accept")}
            conn.request(method, path, body=body, headers=fwd)
            resp = conn.getresponse()
            rbody = resp.read()
            keep = {k: v for k, v in resp.getheaders()
                    if k.lower() in ("content-type", "content-encoding", "retry-after")}
            conn.close()
            return resp.status, keep, rbody
        except OSError as e:
            return 502, {"Content-Type": "application/json"}, json.dumps(
                {"error": "upstream: %s" % e, "code": "bad_gateway"}).encode()

    def _stream(self, h, headers):
        """Relays the live channel until either side closes."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=3600)
            conn.request("GET", h.path, headers={"Accept": "text/event-stream"})
            resp = conn.getresponse()
        except OSError:
            self._send(h, 502, {}, b"")
            return 502
        h.send_response(resp.status)
        h.send_header("Content-Type", resp.getheader("Content-Type") or "text/plain")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        try:
            while True:
                chunk = resp.read1(4096)
                if not chunk:
                    break
                h.wfile.write(chunk)
                h.wfile.flush()
        except OSError:
            pass
        conn.close()
        return resp.status


def v2_bodies(proxy):
    """The JSON bodies of the /v2/sync requests the proxy saw."""
    out = []
    for method, path, headers, body, status in proxy.seen("/v2/sync"):
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        out.append(json.loads(body))
    return out


class ClientTestCase(unittest.TestCase):
    """A temporary folder, a server, and cleanup that stops what was started."""

    server_args = ()

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="polysync-client-")
        self.servers = []
        self.proxies = []
        # a cleanup, not tearDown: it also runs when setUp fails half-way
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for p in self.proxies:
            p.close()
        unclean = []
        for s in self.servers:
            s.stop()
            if s.problems or s.sanitizer_reports():
                unclean.append("%s: %s\n%s" % (s.log, "; ".join(s.problems + s.sanitizer_reports()),
                                                s.stderr()))
        if os.environ.get("PS_KEEP"):  # keep the stores and logs to look at
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        # docs/testing.md: a leak or memory error in polysyncd fails the run
        if unclean:
            raise AssertionError("polysyncd did not end clean:\n" + "\n".join(unclean))

    def server(self, extra=None):
        s = Server(self.dir, extra if extra is not None else self.server_args,
                   name="server%d" % len(self.servers)).start()
        self.servers.append(s)
        return s

    def proxy(self, server):
        p = Proxy(server)
        self.proxies.append(p)
        return p

    def device(self, name, server=None):
        return Device(self.dir, name, server)
