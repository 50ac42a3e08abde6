"""
Operations (issue 17): the log (text and JSON lines, access lines, auth
failures without the token, X-Request-Id), GET /metrics read by a real
Prometheus parser (Debian's python3-prometheus-client, run with
/usr/bin/python3), --metrics-bind, --config files, SIGHUP (TLS certificate
reload, never a stop) and the banner's URL.

Oracles: docs/operations.md and DESIGN.md "Operations" for names and
rules; the prometheus_client text parser for the exposition format; the
requests each test makes for the counts it expects.
"""
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import unittest

from harness import START_TIMEOUT, read_http_response, read_line
from jwtkit import KeyDir
from sectools import SecurityTestCase, expect_refused

SYSTEM_PYTHON = "/usr/bin/python3"

# Reads an exposition on stdin with prometheus_client's own parser and
# prints every sample as JSON: [name, labels, value].
PARSE_SCRIPT = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value, fam.name, fam.type])
print(json.dumps(out))
"""


def parse_metrics(text):
    """The samples of an exposition, as {(name, frozenset(labels)): value};
    the parser raising (bad format) fails the test."""
    r = subprocess.run([SYSTEM_PYTHON, "-c", PARSE_SCRIPT], input=text.encode("utf-8"),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise AssertionError("prometheus_client cannot parse /metrics: %s\n%s"
                             % (r.stderr.decode(errors="replace"), text))
    samples = {}
    types = {}
    for name, labels, value, family, typ in json.loads(r.stdout):
        samples[(name, frozenset(labels.items()))] = value
        types[family] = typ
    return samples, types


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def log_lines(server):
    return [l for l in server.stderr_text().splitlines() if l.strip()]


def wait_for_log(server, pattern, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        for line in log_lines(server):
            m = rx.search(line)
            if m:
                return m
        time.sleep(0.02)
    raise AssertionError("no log line matching %r in:\n%s" % (pattern, server.stderr_text()))


def text_fields(line):
    """key=value pairs of a text log line (values bare or quoted)."""
    return {m.group(1): (m.group(3) if m.group(3) is not None else m.group(2))
            for m in re.finditer(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|(\S+))', line)}


def access_lines(server):
    return [text_fields(l) for l in log_lines(server) if " info access " in l]


class LogTest(SecurityTestCase):
    def test_text_access_line_per_request_with_request_id(self):
        s = self.new_server()
        status, headers, _ = s.request("GET", "/health", headers={"X-Request-Id": "lb-42.a:b_c"})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Request-Id"), "lb-42.a:b_c", "the client's id comes back")
        status, headers, _ = s.request("POST", "/v2/sync", body={"deviceId": "dev-7",
                                                                 "cursor": None})
        self.assertEqual(status, 200)
        made = headers.get("X-Request-Id")
        self.assertRegex(made or "", r"^[0-9a-f]{16}$", "a fresh id when the client sends none")
        # ids that could forge log lines are replaced, not echoed
        for bad in ("has space", "x" * 65, "quote\"d", ""):
            _, headers, _ = s.request("GET", "/health", headers={"X-Request-Id": bad})
            self.assertRegex(headers.get("X-Request-Id") or "", r"^[0-9a-f]{16}$", repr(bad))
        s.request("GET", "/nowhere")
        s.stop()
        lines = access_lines(s)
        self.assertEqual(len(lines), 7, "one access line per request:\n" + s.logs[-1])
        # (lines come as requests complete: not always in the order sent)
        by_id = {l["request_id"]: l for l in lines}
        self.assertEqual(len(by_id), 7, "ids are unique")
        health = by_id["lb-42.a:b_c"]
        self.assertEqual((health["method"], health["route"], health["status"]),
                         ("GET", "/health", "200"))
        self.assertEqual(health["client"], "127.0.0.1")
        sync = by_id[made]
        self.assertEqual((sync["route"], sync["status"], sync["user"], sync["device"]),
                         ("/v2/sync", "200", "local", "dev-7"))
        body_len = len(json.dumps({"deviceId": "dev-7", "cursor": None}).encode())
        self.assertEqual(int(sync["bytes_in"]), body_len)
        self.assertGreater(int(sync["bytes_out"]), 0)
        self.assertGreaterEqual(float(sync["duration_ms"]), 0.0)
        self.assertEqual(sorted((l["route"], l["status"]) for l in lines),
                         [("-", "404")] + [("/health", "200")] * 5 + [("/v2/sync", "200")])
        for l in log_lines(s):
            self.assertRegex(l, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) ",
                             "every line starts with the time and level")

    def test_bytes_out_counts_the_body_sent(self):
        s = self.new_server()
        s.push_ok([{"id": "c1", "title": "t", "messages": []}])
        conn = s.http_connection()
        conn.request("GET", "/fetchChats")            # no Accept-Encoding: plain body
        body = conn.getresponse().read()
        conn.close()
        s.stop()
        fetch = [l for l in access_lines(s) if l["route"] == "/fetchChats"][0]
        self.assertEqual(int(fetch["bytes_out"]), len(body))

    def test_web_files_and_socket_upgrades_logged_with_their_status(self):
        s = self.new_server()
        s.request("GET", "/web/no-such-file.js")               # 404 from the web root
        s.request("GET", "/web")                               # 301 to /web/
        s.request("GET", "/", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                       "Sec-WebSocket-Version": "8"})        # 426
        s.request("GET", "/", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                       "Sec-WebSocket-Version": "13"})       # 400: no key
        s.stop()
        self.assertEqual(sorted((l["route"], l["status"]) for l in access_lines(s)),
                         [("/", "400"), ("/", "426"), ("/web/", "301"), ("/web/", "404")])

    def test_json_lines(self):
        s = self.new_server(["--log-format", "json"])
        s.request("GET", "/health", headers={"X-Request-Id": "j1"})
        s.stop()
        docs = [json.loads(l) for l in log_lines(s)]     # every line is one JSON object
        events = [d["event"] for d in docs]
        self.assertEqual(events[0], "start")
        self.assertIn("shutdown", events)
        self.assertEqual(events[-1], "stopped")
        access = [d for d in docs if d["event"] == "access"]
        self.assertEqual(len(access), 1)
        a = access[0]
        for key in ("time", "level", "request_id", "method", "route", "status", "bytes_in",
                    "bytes_out", "duration_ms", "user", "device", "client"):
            self.assertIn(key, a)
        self.assertEqual((a["level"], a["request_id"], a["status"]), ("info", "j1", 200))
        self.assertIsInstance(a["duration_ms"], float)

    def test_access_lines_come_while_the_server_runs(self):
        # Access lines are written in batches (log.c): a quiet server's come
        # out without a stop or another line pushing them (the flusher).
        s = self.new_server()
        status, headers, _ = s.request("POST", "/v2/sync", body={"deviceId": "d1", "cursor": None})
        self.assertEqual(status, 200)
        rid = headers.get("X-Request-Id")
        wait_for_log(s, r"info access request_id=%s .*route=/v2/sync status=200" % rid)
        s.stop()

    def test_log_level_warn_drops_access_lines(self):
        s = self.new_server(["--log-level", "warn"])
        s.health()
        s.stop()
        self.assertEqual(access_lines(s), [])
        self.assertEqual(log_lines(s), [], "start/stop events are info")

    def test_bad_log_flags_are_refused(self):
        for args in (["--log-format", "xml"], ["--log-level", "loud"]):
            code, err = expect_refused(args + ["--port", "0"])
            self.assertEqual(code, 1)
            self.assertIn(args[0], err)

    def test_auth_failure_logged_with_reason_and_address_never_the_token(self):
        s = self.auth_server()
        forged = self.tok("mallory")[:-4] + "AAAA"
        status, _, _ = s.request("GET", "/fetchChats", headers={
            "Authorization": "Bearer " + forged, "X-Request-Id": "fail-1"})
        self.assertEqual(status, 401)
        status, _, _ = s.request("GET", "/fetchChats", headers={"Authorization": None})
        self.assertEqual(status, 401)
        s.fetch()                                       # alice, accepted
        s.stop()
        text = s.logs[-1]
        fails = [text_fields(l) for l in text.splitlines() if " warn auth_failed " in l]
        self.assertEqual(len(fails), 2, text)
        self.assertEqual(fails[0]["request_id"], "fail-1")
        self.assertEqual(fails[0]["client"], "127.0.0.1")
        self.assertTrue(fails[0]["reason"], "a reason is given")
        self.assertNotIn(forged, text)
        self.assertNotIn(forged.split(".")[2], text, "not even the signature")
        self.assertNotIn(self.tok("alice").split(".")[2], text)
        users = sorted(l["user"] for l in access_lines(s))
        self.assertEqual(users, ["-", "-", "alice"])


def requests_counted(m, skip_route="/metrics"):
    return sum(v for (name, labels), v in m.items()
               if name == "polysync_http_requests_total" and ("route", skip_route) not in labels)


class MetricsTest(SecurityTestCase):
    def metrics_after(self, s, n_requests, port=None):
        """Scrapes until `n_requests` requests (other than scrapes) are
        counted: a request is counted when libmicrohttpd reports it
        complete, which may come just after the client has its answer."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            status, headers, text = self.scrape(s, port)
            self.assertEqual(status, 200)
            m, types = parse_metrics(text)
            if requests_counted(m) >= n_requests or time.monotonic() > deadline:
                self.assertEqual(requests_counted(m), n_requests, text)
                return m, types, headers
            time.sleep(0.01)

    def scrape(self, s, port=None):
        sock = socket.create_connection(("127.0.0.1", port or s.port), timeout=30)
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, headers, body = read_http_response(sock)
        finally:
            sock.close()
        return status, headers, body.decode("utf-8")

    def test_counts_match_the_requests_made(self):
        s = self.new_server()
        for _ in range(3):
            s.health()
        s.request("GET", "/nowhere")
        s.request("POST", "/v2/sync", body={"deviceId": "d1", "cursor": None})
        two = [{"id": "c1", "title": "t", "messages": [
            {"id": "m1", "role": "user", "content": "a"},
            {"id": "m2", "role": "assistant", "content": "b"}]}]
        s.push_ok(two)
        s.push_ok(two)                                  # the same again: nothing changes
        s.request("POST", "/v2/sync", raw=b"{not json")
        m, types, headers = self.metrics_after(s, 8)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        req = "polysync_http_requests_total"
        self.assertEqual(types["polysync_http_requests"], "counter")
        self.assertEqual(sample(m, req, route="/health", status="200"), 3)
        self.assertEqual(sample(m, req, route="other", status="404"), 1)
        self.assertEqual(sample(m, req, route="/v2/sync", status="200"), 1)
        self.assertEqual(sample(m, req, route="/v2/sync", status="400"), 1)
        self.assertEqual(sample(m, req, route="/pushChats", status="200"), 2)
        self.assertEqual(sample(m, "polysync_chats_merged_total"), 1)
        self.assertEqual(sample(m, "polysync_messages_merged_total"), 2)
        self.assertEqual(types["polysync_sync_duration_seconds"], "histogram")
        self.assertEqual(sample(m, "polysync_sync_duration_seconds_count", protocol="v2"), 2)
        self.assertEqual(sample(m, "polysync_sync_duration_seconds_count", protocol="legacy"), 2)
        self.assertEqual(sample(m, "polysync_sync_duration_seconds_bucket", protocol="v2",
                                le="+Inf"), 2)
        self.assertEqual(sample(m, "polysync_users"), 1)
        self.assertEqual(sample(m, "polysync_chats"), 1)
        self.assertGreater(sample(m, "polysync_store_size_bytes"), 0)
        self.assertEqual(sample(m, "polysync_live_streams"), 0)
        self.assertGreater(sample(m, "polysync_http_received_bytes_total"), 0)
        self.assertGreater(sample(m, "polysync_store_transactions_total"), 0)
        # scrapes are counted too
        self.assertGreaterEqual(sample(m, req, route="/metrics", status="200") or 0, 0)

    def test_live_streams_gauge(self):
        s = self.new_server()
        sock = s.connect()
        try:
            sock.sendall(b"GET /v2/events?deviceId=d1 HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(20)
            self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 200"))
            status, _, text = self.scrape(s)
            m, _ = parse_metrics(text)
            self.assertEqual(sample(m, "polysync_live_streams"), 1)
        finally:
            sock.close()
        # (a parked stream notices its client left at its next keepalive,
        # up to 15 s later: the gauge counts it until then)

    def test_with_auth_only_on_the_metrics_listener(self):
        s = self.auth_server("--metrics-bind", "127.0.0.1:0")
        status, _, _ = self.scrape(s)
        self.assertEqual(status, 404, "never on the main port when users authenticate")
        port = int(wait_for_log(s, r"metrics_listening .*port (\d+)").group(1))
        s.fetch()
        m, _, _ = self.metrics_after(s, 2, port)
        self.assertEqual(sample(m, "polysync_http_requests_total", route="/fetchChats",
                                status="200"), 1)
        self.assertEqual(sample(m, "polysync_http_requests_total", route="other",
                                status="404"), 1)
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            sock.sendall(b"GET /fetchChats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, _ = read_http_response(sock)
        finally:
            sock.close()
        self.assertEqual(status, 404, "the metrics listener serves nothing else")

    def test_auth_failures_counted(self):
        s = self.auth_server("--metrics-bind", "127.0.0.1:0")
        port = int(wait_for_log(s, r"metrics_listening .*port (\d+)").group(1))
        s.request("GET", "/fetchChats", headers={"Authorization": "Bearer nope"})
        m, _, _ = self.metrics_after(s, 1, port)
        self.assertEqual(sample(m, "polysync_auth_failures_total"), 1)
        self.assertEqual(sample(m, "polysync_http_requests_total", route="/fetchChats",
                                status="401"), 1)


class ConfigFileTest(SecurityTestCase):
    def test_file_values_apply_and_flags_win(self):
        conf = self.keys.write("a.conf", "# a comment\n\n  log-format = json  \n"
                                         "log-level = warn\nmax-chats = 1\n")
        s = self.new_server(["--config", conf, "--log-level", "info"])
        status, _, doc = s.request("POST", "/pushChats", body={"chats": [
            {"id": "c1", "title": "a", "messages": []}, {"id": "c2", "title": "b",
                                                         "messages": []}]})
        self.assertEqual(status, 413, "max-chats = 1 from the file: %r" % doc)
        s.stop()
        docs = [json.loads(l) for l in log_lines(s)]   # log-format from the file
        self.assertIn("access", [d["event"] for d in docs], "--log-level info won over the file")

    def test_boolean_keys(self):
        conf = self.keys.write("b.conf", "insecure-no-auth = true\n")
        s = self.new_server(["--config", conf, "--bind", "0.0.0.0"])
        self.assertTrue(s.running())
        bad = self.keys.write("c.conf", "insecure-no-auth = maybe\n")
        code, err = expect_refused(["--config", bad, "--port", "0"])
        self.assertEqual(code, 1)
        self.assertIn("c.conf:1", err)

    def test_unknown_key_names_the_line(self):
        conf = self.keys.write("d.conf", "# ok\nport = 0\nmax-chatz = 5\n")
        code, err = expect_refused(["--config", conf])
        self.assertEqual(code, 1)
        self.assertIn(conf + ":3", err)
        self.assertIn("max-chatz", err)

    def test_bad_value_and_missing_file(self):
        conf = self.keys.write("e.conf", "port = 0\nthreads = lots\n")
        code, err = expect_refused(["--config", conf])
        self.assertEqual(code, 1)
        self.assertIn(conf + ":2", err)
        code, err = expect_refused(["--config", self.keys.path("absent.conf")])
        self.assertEqual(code, 1)
        self.assertIn("absent.conf", err)
        code, err = expect_refused(["--config", self.keys.write("f.conf", "no equals\n")])
        self.assertEqual(code, 1)
        self.assertIn("f.conf:1", err)


class SignalsTest(SecurityTestCase):
    def test_sighup_never_stops_the_server(self):
        s = self.new_server()
        s.proc.send_signal(signal.SIGHUP)
        wait_for_log(s, r"info reload ")
        s.health()
        self.assertTrue(s.running())

    def handshake_ok(self, port, ca):
        ctx = ssl.create_default_context(cafile=ca)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                    return True
        except ssl.SSLError:
            return False

    def test_sighup_reloads_the_certificate(self):
        other = KeyDir()
        self.addCleanup(other.close)
        ca_a, crt_a, key_a = self.keys.tls()
        ca_b, crt_b, key_b = other.tls()
        crt = self.keys.write("live.crt", read_bytes(crt_a))
        key = self.keys.write("live.key", read_bytes(key_a))
        s = self.new_server(["--tls-cert", crt, "--tls-key", key], tls_ca=ca_a)
        self.assertIn("https://", s.banner)
        keep = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        kept = ssl.create_default_context(cafile=ca_a).wrap_socket(keep,
                                                                   server_hostname="127.0.0.1")
        self.addCleanup(kept.close)
        self.assertTrue(self.handshake_ok(s.port, ca_a))
        self.assertFalse(self.handshake_ok(s.port, ca_b))
        # rotate: new files, SIGHUP, new connections get the new certificate
        self.keys.write("live.crt", read_bytes(crt_b))
        self.keys.write("live.key", read_bytes(key_b))
        s.proc.send_signal(signal.SIGHUP)
        wait_for_log(s, r"info tls_reloaded ")
        self.assertTrue(self.handshake_ok(s.port, ca_b))
        self.assertFalse(self.handshake_ok(s.port, ca_a))
        # the connection opened before keeps working
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_http_response(kept)
        self.assertEqual(status, 200)
        # a broken pair (key of A, certificate of B) keeps B and says why
        self.keys.write("live.key", read_bytes(key_a))
        s.proc.send_signal(signal.SIGHUP)
        wait_for_log(s, r"error tls_reload_failed ")
        self.assertTrue(self.handshake_ok(s.port, ca_b))
        self.keys.write("live.crt", b"not a certificate\n")
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + START_TIMEOUT
        while s.stderr_text().count("tls_reload_failed") < 2:
            self.assertLess(time.monotonic(), deadline, s.stderr_text())
            time.sleep(0.02)
        self.assertTrue(self.handshake_ok(s.port, ca_b))
        self.assertTrue(s.running())

    def test_banner_brackets_ipv6(self):
        if not socket.has_ipv6:
            self.fail("this machine has no IPv6; the test needs ::1")
        s = self.new_server(["--bind", "::1"])
        self.assertRegex(s.banner, r"listening on http://\[::1\]:%d " % s.port)
        with socket.create_connection(("::1", s.port), timeout=30) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, _ = read_http_response(sock)
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
