"""
Test harness for the polysyncd integration suites (Python 3, stdlib only).

Server starts polysyncd on a free port (--port 0) with a database in its own
temporary folder, learns the port from the first stdout line, and talks HTTP
to it. stop() sends SIGTERM and asserts exit code 0: under AddressSanitizer a
leak or any memory error turns the exit code non-zero, so every test that
stops its server also checks the server ended clean.

ServerTestCase starts one server per test (isolation over speed: a start
costs milliseconds), stops it in a cleanup, and prints the server's stderr
when the test failed.

Nothing here sleeps to synchronise: waits are polls against a deadline.
"""
import datetime
import gzip
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
POLYSYNCD = os.environ.get("POLYSYNCD") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build", "bin", "polysyncd"))

# Generous: the suite also runs under ASan+UBSan, about 3x slower.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
HTTP_TIMEOUT = 30.0

# ---- the store under test -------------------------------------------------
#
# PS_TEST_DB picks the backend every suite runs against: unset or "sqlite"
# for SQLite files, a postgres://... URL (or "@FILE" holding one, as the
# make check fixture writes it) for PostgreSQL, where each store the suites
# would have put in a file becomes a fresh database of its own.

def _pg_base_url():
    v = os.environ.get("PS_TEST_DB", "")
    if v.startswith("@"):
        with open(v[1:]) as f:
            v = f.read().strip()
    return v if v.startswith(("postgres://", "postgresql://")) else None


PG_BASE = _pg_base_url()
BACKEND = "postgres" if PG_BASE else "sqlite"
_pg_stores = {}
_pg_tables = {}  # a store's tables, by URL (store_state)


# One connection per database for the whole suite: a psql process per
# query cost 35-95 ms (Debian's psql is a Perl wrapper that then connects),
# 1,264 of them made pg.test_tombstone_sim take 108 s instead of 2 s.
_pg_connections = {}


def _pg_text(value, _cursor):
    return value  # the value as PostgreSQL writes it, as psql -At showed it


def _pg_connect(url):
    try:
        import psycopg2
    except ImportError:
        raise AssertionError("the PostgreSQL suites need Debian's python3-psycopg2: run them"
                             " with /usr/bin/python3 (scripts/install-deps.sh postgres)") from None
    import psycopg2.extensions as ext
    con = psycopg2.connect(url)
    con.autocommit = True  # CREATE/DROP DATABASE; each statement on its own
    # every column as its text (what the oracles compare), not Python values:
    # booleans as t/f, bytea as \x..., numbers as digits, json unparsed
    oids = [r[0] for r in _pg_execute(con, "SELECT oid FROM pg_type WHERE typtype IN ('b', 'r', 'm')"
                                      " AND typname <> 'text'")]
    ext.register_type(ext.new_type(tuple(int(o) for o in oids), "PS_TEXT", _pg_text), con)
    return con


def _pg_execute(con, sql):
    with con.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall() if cur.description is not None else []


def pg_query(url, sql):
    """Runs sql on the database at url; its rows as lists of text (NULL as
    an empty string, as psql -At writes it)."""
    for attempt in (1, 2):
        con = _pg_connections.get(url)
        if con is None or con.closed:
            con = _pg_connections[url] = _pg_connect(url)
        import psycopg2  # _pg_connect said what to install if it is missing
        try:
            rows = _pg_execute(con, sql)
            break
        except psycopg2.Error as e:
            # a cluster restarted under the suite (pg-throwaway.sh restart):
            # the statement never reached it; connect again once
            if con.closed and attempt == 1:
                continue
            raise AssertionError("postgres %r: %s" % (sql, e)) from None
    return [["" if v is None else str(v) for v in row] for row in rows]


def _pg_disconnect(url):
    con = _pg_connections.pop(url, None)
    if con is not None:
        con.close()


def new_pg_database():
    """A fresh, empty database on the test cluster; its URL."""
    name = "ps_%d_%s" % (os.getpid(), os.urandom(6).hex())
    pg_query(PG_BASE, "CREATE DATABASE " + name)
    return PG_BASE.rsplit("/", 1)[0] + "/" + name


def store_url(path):
    """The --db URL of the store that lives at `path` (the same one every
    time for the same path, so restarts find their data)."""
    if not PG_BASE:
        return "sqlite:" + path
    if path not in _pg_stores:
        _pg_stores[path] = new_pg_database()
    return _pg_stores[path]


def drop_store(path):
    """Drops the database that stood for `path` (each is a copy of the
    template, ~8 MB: a run makes hundreds)."""
    url = _pg_stores.pop(path, None)
    if url:
        _pg_disconnect(url)
        pg_query(PG_BASE, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % url.rsplit("/", 1)[1])


def store_sql(path, sql, params=()):
    """Runs one statement (`?` placeholders, SQL both backends take) on the
    store that stands for `path`, as a test's oracle reads or ages rows
    behind the server's back; its rows as tuples (integers as ints)."""
    if not PG_BASE:
        import sqlite3
        con = sqlite3.connect(path, timeout=10)
        try:
            with con:
                return [tuple(r) for r in con.execute(sql, params).fetchall()]
        finally:
            con.close()
    parts = sql.split("?")
    assert len(parts) == len(params) + 1, sql
    text = parts[0]
    for p, rest in zip(params, parts[1:]):
        text += (str(int(p)) if isinstance(p, int) else "'" + str(p).replace("'", "''") + "'")
        text += rest
    rows = pg_query(store_url(path), text)
    return [tuple(int(v) if v.lstrip("-").isdigit() else v for v in r) for r in rows]


# An IPv6 address comes bracketed: http://[::1]:4001
BANNER = re.compile(r"^polysyncd (\S+) listening on https?://(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d+)"
                    r" \(store (.*)\)$")


# ---- small helpers -------------------------------------------------------

def now_ms():
    return int(time.time() * 1000)


def iso(ms):
    """Epoch milliseconds -> ISO 8601 UTC with milliseconds, like the JS clients."""
    dt = datetime.datetime.fromtimestamp(ms / 1000.0, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def parse_iso_ms(text):
    """ISO 8601 (as the server writes it or as a test sent it) -> epoch ms."""
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(round(dt.timestamp() * 1000))


def msg(mid, content=None, role="user", timestamp=None, **extra):
    m = {"id": mid, "role": role, "content": content if content is not None else "text of " + mid}
    if timestamp is not None:
        m["timestamp"] = timestamp
    m.update(extra)
    return m


def chat(cid, title="A chat", messages=(), last_modified=None, **extra):
    """A chat in the seed shape; timestamps only when given."""
    c = {"id": cid, "title": title, "messages": list(messages)}
    if last_modified is not None:
        c["lastModified"] = last_modified
    c.update(extra)
    return c


def by_id(chats):
    return {c["id"]: c for c in chats}


def message_ids(c):
    return [m["id"] for m in c.get("messages", [])]


def is_lamport(v):
    return (isinstance(v, list) and len(v) == 2 and isinstance(v[0], int)
            and not isinstance(v[0], bool) and v[0] >= 0 and isinstance(v[1], str))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_line(fd, deadline):
    """One line from a pipe fd, without blocking past the deadline."""
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete line before the deadline; got %r" % buf)
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            raise EOFError("stream closed; got %r" % buf)
        buf += chunk
    return buf.decode("utf-8", "replace").rstrip("\r\n")


# ---- raw HTTP over a socket ---------------------------------------------

def read_http_response(sock, timeout=HTTP_TIMEOUT, skip_informational=True):
    """Reads one HTTP/1.1 response from a raw socket.

    Returns (status, headers with lower-case names, body bytes). Handles a
    Content-Length body, a chunked body, or a body that ends at close.
    """
    deadline = time.monotonic() + timeout
    buf = b""

    def fill():
        nonlocal buf
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete HTTP answer in %.0f s; got %r" % (timeout, buf[:200]))
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf += chunk
        return True

    while True:
        while b"\r\n\r\n" not in buf:
            if not fill():
                raise EOFError("connection closed before the headers; got %r" % buf[:200])
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if 100 <= status < 200:
            if skip_informational:
                continue
            return status, headers, b""   # informational answers have no body
        break

    if status in (204, 304):
        return status, headers, b""

    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            if not fill():
                raise EOFError("connection closed inside the body")
        return status, headers, buf[:n]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                if not fill():
                    raise EOFError("connection closed inside a chunk")
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                if not fill():
                    raise EOFError("connection closed inside a chunk")
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                return status, headers, body
    while fill():
        pass
    return status, headers, buf


def json_or_none(body):
    try:
        return json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        return None


# ---- answers for the OpenAPI check ---------------------------------------

def zstd_decompress(data):
    """The `zstd` tool's decoding (Python 3.11 has no zstd module): an
    independent decoder, which also checks the frame's checksum."""
    r = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True)
    return r.stdout if r.returncode == 0 else None


def decode_answer(content_encoding, payload):
    """An answer's bytes as its Content-Encoding says (gzip, zstd or none);
    None if they do not decode."""
    coding = (content_encoding or "").strip().lower()
    if coding == "gzip":
        try:
            return gzip.decompress(payload)
        except (OSError, EOFError, ValueError):
            return None
    if coding == "zstd":
        return zstd_decompress(payload)
    return payload


def record_answer(method, path, resp, decoded, doc):
    """With PS_OPENAPI_LOG set, appends the answer as one JSON line for
    tools/openapi/check-answers.mjs (scripts/check-openapi-answers.sh)."""
    log = os.environ.get("PS_OPENAPI_LOG")
    ctype = resp.headers.get("Content-Type") or ""
    if not log or ctype.startswith("text/event-stream"):
        return
    if decoded and doc is None and ctype.startswith("application/json"):
        doc = "<not JSON>"   # fails any object schema
    line = json.dumps({"method": method, "path": path.split("?", 1)[0], "status": resp.status,
                       "contentType": ctype, "body": doc})
    with open(log, "a") as f:
        f.write(line + "\n")


# ---- the server ----------------------------------------------------------

class ServerError(AssertionError):
    pass


class Server:
    """One polysyncd process on a temporary database.

    token: sent as `Authorization: Bearer <token>` with every request() unless
    the call names an Authorization header (None there sends none).
    tls_ca: a CA certificate file; requests then go over HTTPS, verified
    against it (hostname 127.0.0.1).
    """

    def __init__(self, extra_args=(), env=None, tmpdir=None, token=None, tls_ca=None,
                 command_prefix=()):
        self.extra_args = list(extra_args)
        self.command_prefix = list(command_prefix)   # e.g. setpriv: run as another user
        self.env = env
        self.token = token
        self.tls_ca = tls_ca
        self.own_tmpdir = tmpdir is None
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="polysync-it-")
        self.db_path = os.path.join(self.tmpdir, "p.db")
        self.db_url = store_url(self.db_path)  # see PS_TEST_DB
        self.proc = None
        self.port = None
        self.banner = None
        self.logs = []          # stderr of every run, for failure reports
        self._stderr_path = None
        self._run = 0

    # -- life cycle --

    def start(self):
        assert self.proc is None, "already running"
        self._run += 1
        self._stderr_path = os.path.join(self.tmpdir, "stderr.%d.log" % self._run)
        err = open(self._stderr_path, "wb")
        env = dict(os.environ)
        env.pop("CHAT_SYNC_PORT", None)
        if self.env:
            env.update(self.env)
        try:
            self.proc = subprocess.Popen(
                self.command_prefix + [POLYSYNCD, "--port", "0", "--db", self.db_url] + self.extra_args,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env)
        finally:
            err.close()
        try:
            line = read_line(self.proc.stdout.fileno(), time.monotonic() + START_TIMEOUT)
        except (TimeoutError, EOFError) as e:
            self._abort()
            raise ServerError("polysyncd did not start: %s\n%s" % (e, self.stderr_text()))
        m = BANNER.match(line)
        if not m:
            self._abort()
            raise ServerError("unexpected first line %r\n%s" % (line, self.stderr_text()))
        self.banner = line
        self.port = int(m.group(3))
        return self

    def _abort(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait(timeout=STOP_TIMEOUT)
            self._collect()

    def _collect(self):
        self.logs.append(self.stderr_text())
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM; asserts a clean exit (code 0) within the timeout."""
        assert self.proc is not None, "not running"
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout, expect=0)

    def wait_exit(self, timeout=STOP_TIMEOUT, expect=0):
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            self._collect()
            raise ServerError("polysyncd did not exit within %.0f s of SIGTERM\n%s"
                              % (timeout, self.logs[-1]))
        self._collect()
        if expect is not None and code != expect:
            raise ServerError("polysyncd exited with %r, expected %r\n%s"
                              % (code, expect, self.logs[-1]))
        return code

    def kill9(self):
        assert self.proc is not None, "not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        self._collect()

    def restart(self):
        """Clean stop (asserted) if running, then start on the same database."""
        if self.proc is not None:
            self.stop()
        return self.start()

    def close(self):
        """Kills a server still running (no assertion) and removes the folder."""
        if self.proc is not None:
            self._abort()
        if self.own_tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        drop_store(self.db_path)

    def store_state(self):
        """Every row of every table of the server's SQLite store (tombstones,
        clocks, sequences, sent hashes, message rows), read through a
        read-only connection: what a rejected request must leave as it was.
        {table: sorted list of row tuples}."""
        if PG_BASE:  # every table of the server's database, in one query
            if self.db_url not in _pg_tables:
                _pg_tables[self.db_url] = [r[0] for r in pg_query(
                    self.db_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " ORDER BY tablename")]
            tables = _pg_tables[self.db_url]
            # one line per row (a row's text may hold newlines and tabs),
            # still exact through its md5
            rows = pg_query(self.db_url, " UNION ALL ".join(
                "SELECT '%s', translate(x::text, E'\\n\\t\\r', '   ') || ' ' || md5(x::text)"
                " FROM \"%s\" x" % (t, t) for t in tables))
            return {t: sorted((tuple(r[1:]) for r in rows if r[0] == t), key=repr)
                    for t in tables}
        import sqlite3
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)
        try:
            tables = [r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            return {t: sorted(con.execute('SELECT * FROM "%s"' % t.replace('"', '""')).fetchall(),
                              key=repr)
                    for t in tables}
        finally:
            con.close()

    def stderr_text(self):
        try:
            with open(self._stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    # -- HTTP --

    def as_user(self, token):
        """A view of this server that sends `token` (same process, port
        followed across restarts); a view cannot start or stop the server."""
        return _UserView(self, token)

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.tls_ca)

    def http_connection(self, timeout=HTTP_TIMEOUT):
        if self.tls_ca:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.ssl_context())
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, raw=None, timeout=HTTP_TIMEOUT,
                gzip_body=False):
        """One request on a fresh connection.

        body: a Python value sent as JSON; raw: bytes sent as they are. Either
        gets Content-Type: application/json unless headers name one (a header
        whose value is None is not sent). gzip_body: the body is gzipped and
        sent with Content-Encoding: gzip. Returns (status, headers,
        parsed JSON or None); the headers are an http.client.HTTPMessage
        (case-insensitive get). An answer with Content-Encoding: gzip is
        decompressed before parsing; self.last_body keeps the bytes as they
        came over the wire, self.last_decoded the decompressed ones.
        """
        hdrs = {}
        if self.token is not None:
            hdrs["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
        if raw is not None:
            data = raw
        if data is not None:
            hdrs["Content-Type"] = "application/json"
            if gzip_body:
                data = gzip.compress(data)
                hdrs["Content-Encoding"] = "gzip"
        for k, v in (headers or {}).items():
            for old in [h for h in hdrs if h.lower() == k.lower()]:
                del hdrs[old]
            if v is not None:
                hdrs[k] = v
        conn = self.http_connection(timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            decoded = decode_answer(resp.headers.get("Content-Encoding"), payload)
            self.last_body = payload
            self.last_decoded = decoded
            doc = json_or_none(decoded) if decoded is not None else None
            record_answer(method, path, resp, decoded, doc)
            return resp.status, resp.headers, doc
        finally:
            conn.close()

    def request_early_answer(self, method, path, headers, timeout=HTTP_TIMEOUT):
        """One request whose head may be refused before it is all sent (431,
        413): the server answers and closes while we are still writing, so
        writing stops at the first EPIPE/ECONNRESET and the answer is read
        from what arrived. Returns (status, headers, parsed JSON or None)."""
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method, path)
        if self.token is not None and not any(k.lower() == "authorization" for k in headers):
            head += "Authorization: Bearer %s\r\n" % self.token
        for k, v in headers.items():
            head += "%s: %s\r\n" % (k, v)
        data = (head + "\r\n").encode("latin-1")
        sock = self.connect(timeout)
        try:
            try:
                view = memoryview(data)
                while view:
                    n = sock.send(view[:65536])
                    view = view[n:]
            except (BrokenPipeError, ConnectionResetError):
                pass   # refused mid-head; its answer is already on the way
            status, hdrs, body = read_http_response(sock, timeout)
        finally:
            sock.close()
        return status, hdrs, json_or_none(body)

    def ok(self, method, path, body=None, **kw):
        status, _, doc = self.request(method, path, body=body, **kw)
        if status != 200:
            raise AssertionError("%s %s answered %d: %r" % (method, path, status, self.last_body[:500]))
        return doc

    def sync(self, payload):
        return self.request("POST", "/sync", body=payload)

    def sync_ok(self, payload):
        return self.ok("POST", "/sync", payload)

    def push_ok(self, chats):
        return self.ok("POST", "/pushChats", {"chats": list(chats)})

    def fetch(self):
        return self.ok("GET", "/fetchChats")

    def health(self):
        return self.ok("GET", "/health")

    def delete_chat(self, cid):
        return self.ok("POST", "/deleteChat", {"chatId": cid})

    def delete_chats(self, ids):
        return self.ok("POST", "/deleteChats", {"chatIds": list(ids)})

    def v2(self, payload, **kw):
        """POST /v2/sync; same answer as request()."""
        return self.request("POST", "/v2/sync", body=payload, **kw)

    def v2_ok(self, payload, **kw):
        return self.ok("POST", "/v2/sync", payload, **kw)

    def vm_hwm_kib(self):
        """Peak resident set of the server process (Linux /proc), in KiB, or None."""
        return self.proc_status_kib("VmHWM")

    def vm_rss_kib(self):
        """Resident set of the server process now, in KiB, or None."""
        return self.proc_status_kib("VmRSS")

    def proc_status_kib(self, field):
        """A KiB field of the server process's /proc status, or None."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError, AttributeError):
            pass
        return None

    def maps(self):
        """The server process's memory map (/proc/PID/maps) as text."""
        with open("/proc/%d/maps" % self.proc.pid) as f:
            return f.read()

    def connect(self, timeout=HTTP_TIMEOUT):
        """A raw socket to the server (TLS-wrapped when tls_ca is set)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.tls_ca:
            sock = self.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1")
        return sock


class _UserView(Server):
    """Server.as_user(): requests with another token to the same server."""

    def __init__(self, base, token):   # pylint: disable=super-init-not-called
        self._base = base
        self.token = token
        self.last_body = self.last_decoded = None

    def __getattr__(self, name):       # port, tls_ca, proc, db_path, ... of the base
        if name == "_base":
            raise AttributeError(name)
        return getattr(self._base, name)

    def _not_for_views(self, *_args, **_kw):
        raise AssertionError("start or stop the server itself, not a user view of it")

    start = stop = restart = kill9 = close = wait_exit = _not_for_views


def run_polysyncd(args, timeout=START_TIMEOUT, cwd=None, stdin=subprocess.DEVNULL):
    """polysyncd run to completion (a subcommand, or a start that must fail):
    CompletedProcess with text stdout/stderr."""
    env = dict(os.environ)
    env.pop("CHAT_SYNC_PORT", None)
    return subprocess.run([POLYSYNCD] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd, stdin=stdin)


class ServerTestCase(unittest.TestCase):
    """Starts a server for each test (with SERVER_ARGS); prints its stderr on failure."""

    SERVER_ARGS = ()

    def setUp(self):
        self._servers = []
        self.server = self.new_server(self.SERVER_ARGS)

    def new_server(self, args=(), env=None, start=True, token=None, tls_ca=None):
        s = Server(args, env=env, token=token, tls_ca=tls_ca)
        self._servers.append(s)
        self.addCleanup(self._finish, s)
        return s.start() if start else s

    def _finish(self, s):
        try:
            if s.proc is not None:
                s.stop()   # asserts exit code 0 (ASan: no leaks)
        finally:
            s.close()

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for i, s in enumerate(getattr(self, "_servers", [])):
                for j, log in enumerate(s.logs):
                    sys.stderr.write("\n---- polysyncd stderr (%s, server %d, run %d) ----\n%s"
                                     "---- end ----\n" % (self.id(), i, j + 1, log))
        return out

    # -- assertions shared by the suites --

    def assertLamport(self, v, what="updatedAtLamport"):
        self.assertTrue(is_lamport(v), "%s must be [counter, deviceId], got %r" % (what, v))

    def assertStoreUnchanged(self, before, what="a rejected request"):
        """`before` is server.store_state(); compares table by table."""
        after = self.server.store_state()
        for table in sorted(set(before) | set(after)):
            self.assertEqual(after.get(table), before.get(table),
                             "%s changed the store's table %s" % (what, table))

    def assertErrorBody(self, doc, code):
        self.assertIsInstance(doc, dict, "error answers are JSON objects")
        self.assertIsInstance(doc.get("error"), str)
        self.assertTrue(doc["error"], "error message is empty")
        self.assertEqual(doc.get("code"), code, doc)
