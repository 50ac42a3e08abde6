"""How the client speaks to servers: the legacy /sync when there is no /v2,
credentials, TLS, retries and Retry-After, refusals, 410 resync, gzip, and
progress on a terminal. A Proxy in front of a real polysyncd injects faults."""
import json
import os
import pty
import select
import stat
import subprocess
import time
import unittest

from clientkit import (FAST_RETRIES, POLYSYNCD, TIMEOUT, ClientTestCase, Server, assert_converged,
                       run_cli, v2_bodies)


class LegacyServer(ClientTestCase):
    """A server without /v2 (404): the client falls back to POST /sync."""

    def setUp(self):
        super().setUp()
        self.srv = self.server()
        self.proxy_ = self.proxy(self.srv)
        self.proxy_.v2_missing = True
        self.a, self.b, self.c = (self.device(n, self.proxy_) for n in ("A", "B", "C"))

    def test_sync_through_legacy(self):
        cid = self.a.new_chat("Legacy chat")
        m1 = self.a.add_msg(cid, "hello")
        st = self.a.sync().json()
        self.assertEqual(st["protocol"], "legacy")
        self.assertEqual(st["sent"]["chats"], 1)
        self.assertEqual(self.a.pending(), 0)
        sent = [json.loads(r[3]) for r in self.proxy_.seen("/sync")]
        self.assertEqual(sent[0]["chats"][0]["id"], cid)
        self.assertEqual(sent[0]["chats"][0]["updatedAtLamport"][1],
                         self.a.run("status", "--json").json()["deviceId"])
        self.b.sync()
        self.assertEqual([m["id"] for m in self.b.chats()[cid]["messages"]], [m1])
        # edits, a message deletion and a chat deletion travel too
        self.b.run("chat", "rename", cid, "Renamed on B")
        m2 = self.b.add_msg(cid, "from B")
        self.b.sync()
        # a legacy chat is one write: a deletion must come after B's copy
        # (which re-sent m1) to win, so A syncs first
        self.a.sync()
        self.a.run("msg", "delete", cid, m1)
        self.a.sync()
        other = self.c.new_chat("C's chat")
        self.c.sync()
        for d in (self.a, self.b, self.c, self.a, self.b, self.c):
            d.sync()
        state = assert_converged(self, self.a, self.b, self.c)
        self.assertEqual(state[cid]["title"], "Renamed on B")
        self.assertEqual([m["id"] for m in state[cid]["messages"]], [m2])
        self.c.run("chat", "delete", other)
        for d in (self.c, self.a, self.b):
            d.sync()
        state = assert_converged(self, self.a, self.b, self.c)
        self.assertNotIn(other, state)
        # v2 was tried each time, answered 404, and nothing was lost to it
        self.assertTrue(all(r[4] == 404 for r in self.proxy_.seen("/v2/sync")))

    def test_legacy_then_v2(self):
        cid = self.a.new_chat("made under legacy")
        self.a.sync()
        self.proxy_.v2_missing = False  # the server is upgraded
        self.a.add_msg(cid, "after the upgrade")
        self.assertEqual(self.a.sync().json()["protocol"], "v2")
        self.b.sync()
        assert_converged(self, self.a, self.b)


class Credentials(ClientTestCase):
    def test_bearer_token_and_401(self):
        srv = self.server()
        proxy = self.proxy(srv)
        proxy.token = "s3cret-token"
        a = self.device("a", proxy)
        a.new_chat("x")
        r = a.run("sync", ok=False)
        self.assertEqual(r.rc, 3, r)
        self.assertIn("refused the credentials", r.err)
        self.assertIn("401", r.err)
        r = a.run("sync", "--token", "wrong", ok=False)
        self.assertEqual(r.rc, 3, r)
        a.run("sync", "--token", "s3cret-token")
        self.assertEqual(proxy.seen("/v2/sync")[-1][2]["authorization"], "Bearer s3cret-token")
        a.new_chat("y")
        a.run("sync", env={"POLYSYNC_TOKEN": "s3cret-token"})
        path = os.path.join(self.dir, "token")
        with open(path, "w") as f:
            f.write("s3cret-token\n")
        os.chmod(path, 0o600)
        a.run("sync", "--token-file", path)
        self.assertEqual(a.pending(), 0)

    def test_403_is_exit_3(self):
        srv = self.server()
        proxy = self.proxy(srv)
        proxy.add("/v2/sync", status=403, body=b'{"error":"forbidden","code":"forbidden"}')
        r = self.device("a", proxy).run("sync", ok=False)
        self.assertEqual(r.rc, 3, r)

    def test_real_jwt_server(self):
        secret = os.path.join(self.dir, "jwt.secret")
        with open(secret, "w") as f:
            f.write("k" * 40)
        os.chmod(secret, 0o600)
        srv = self.server(["--jwt-secret-file", secret])
        tok = subprocess.run([POLYSYNCD, "token", "issue", "--user", "alice", "--jwt-secret-file",
                              secret], capture_output=True, check=True).stdout.decode().strip()
        a, b = self.device("a", srv), self.device("b", srv)
        cid = a.new_chat("alice's")
        self.assertEqual(a.run("sync", ok=False).rc, 3)
        self.assertEqual(a.run("sync", "--token", tok + "x", ok=False).rc, 3)
        a.run("sync", "--token", tok)
        b.run("sync", env={"POLYSYNC_TOKEN": tok})
        self.assertIn(cid, b.chats())

    def test_watch_stops_on_refused_credentials(self):
        srv = self.server()
        proxy = self.proxy(srv)
        proxy.token = "t"
        r = self.device("a", proxy).run("watch", "--token", "nope", ok=False, timeout=30)
        self.assertEqual(r.rc, 3, r)


class Tls(ClientTestCase):
    def make_certs(self):
        d = self.dir

        def ossl(*args):
            subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=d)

        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=polysync test CA")
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=127.0.0.1")
        with open(os.path.join(d, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
        os.chmod(os.path.join(d, "server.key"), 0o600)
        return [os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key")]

    def test_private_ca(self):
        ca, cert, key = self.make_certs()
        srv = self.server(["--tls-cert", cert, "--tls-key", key])
        a = self.device("a", "https://127.0.0.1:%d" % srv.port)
        cid = a.new_chat("over TLS")
        # not trusted without the CA: refused, and never retried over http
        r = a.run("sync", *FAST_RETRIES, ok=False)
        self.assertEqual(r.rc, 2, r)
        self.assertRegex(r.err, r"(?i)certificate|SSL")
        st = a.run("sync", "--cacert", ca, "--json").json()
        self.assertEqual(st["sent"]["changes"], 1)
        b = self.device("b", "https://127.0.0.1:%d" % srv.port)
        b.run("sync", "--cacert", ca)
        self.assertIn(cid, b.chats())
        # plain http to a TLS port does not work either: no silent downgrade
        c = self.device("c", "http://127.0.0.1:%d" % srv.port)
        self.assertEqual(c.run("sync", *FAST_RETRIES, ok=False).rc, 2)


class RetriesAndRefusals(ClientTestCase):
    def setUp(self):
        super().setUp()
        self.srv = self.server()
        self.px = self.proxy(self.srv)
        self.a = self.device("a", self.px)
        self.a.new_chat("payload")

    def test_retry_after_on_429_and_503(self):
        self.px.add("/v2/sync", status=429, headers={"Retry-After": "1"},
                    body=b'{"error":"slow down","code":"rate_limited"}')
        self.px.add("/v2/sync", status=503, headers={"Retry-After": "1"},
                    body=b'{"error":"busy","code":"store_busy"}')
        t0 = time.monotonic()
        st = self.a.sync().json()
        took = time.monotonic() - t0
        self.assertEqual(st["retries"], 2)
        self.assertGreaterEqual(took, 2.0)  # it waited as told
        self.assertEqual(self.a.pending(), 0)

    def test_retry_after_is_capped(self):
        self.px.add("/v2/sync", status=503, headers={"Retry-After": "3600"})
        t0 = time.monotonic()
        self.a.sync("--retry-max-delay", "1")
        self.assertLess(time.monotonic() - t0, 20)

    def test_backoff_on_5xx_and_drops(self):
        self.px.add("/v2/sync", status=502)
        self.px.add("/v2/sync", drop=True)
        self.px.add("/v2/sync", status=500, body=b'{"error":"x","code":"storage_error"}')
        st = self.a.sync("--retry-max-delay", "1").json()
        self.assertGreaterEqual(st["retries"], 2)
        self.assertEqual(self.a.pending(), 0)

    def test_gives_up_after_the_retries(self):
        self.px.add("/v2/sync", times=100, status=503, body=b'{"error":"down","code":"overloaded"}')
        r = self.a.run("sync", *FAST_RETRIES, ok=False)
        self.assertEqual(r.rc, 2, r)
        self.assertEqual(len(self.px.seen("/v2/sync")), 3)
        self.assertEqual(self.a.pending(), 1)
        r = self.a.run("sync", "--retries", "1", ok=False)
        self.assertEqual(len(self.px.seen("/v2/sync")), 4)

    def test_rejected_is_exit_4(self):
        for status, code in ((400, "invalid_payload"), (413, "too_large"),
                             (415, "unsupported_media_type")):
            self.px.add("/v2/sync", status=status,
                        body=json.dumps({"error": "no", "code": code}).encode())
            r = self.a.run("sync", ok=False)
            self.assertEqual(r.rc, 4, r)
            self.assertIn("too large" if status == 413 else code, r.err)
        self.assertEqual(self.a.pending(), 1)
        self.a.sync()
        self.assertEqual(self.a.pending(), 0)

    def test_edge_refusals_keep_their_code(self):
        # docs/protocol.md's error table: the server's edge refusals, as the
        # library's ps_code names them (the CLI's "code" under --json) and
        # docs/client.md's exit codes (3 credentials, 4 rejected, 2 gave up)
        cases = ((401, "token_revoked", 3, 1), (403, "user_disabled", 3, 1),
                 (413, "body_too_large", 4, 1), (415, "unsupported_media_type", 4, 1),
                 (400, "bad_framing", 4, 1), (429, "too_many_requests", 2, 3))
        for status, code, exit_code, times in cases:
            self.px.add("/v2/sync", status=status, times=times, headers={"Retry-After": "1"},
                        body=json.dumps({"error": "no", "code": code}).encode())
            r = self.a.run("sync", "--json", *FAST_RETRIES, ok=False)
            self.assertEqual(r.rc, exit_code, r)
            err = json.loads(r.err.strip().splitlines()[-1])
            self.assertEqual((err["code"], err["exit"]), (code, exit_code), r)
        self.assertEqual(self.a.pending(), 1)  # nothing was taken
        self.a.sync()
        self.assertEqual(self.a.pending(), 0)

    def test_too_large_batch_is_split(self):
        for i in range(9):
            self.a.new_chat("more %d" % i)
        self.px.add("/v2/sync", status=413, body=b'{"error":"too big","code":"too_large"}')
        self.a.sync()
        bodies = v2_bodies(self.px)
        self.assertEqual(len(bodies[0]["changes"]), 10)
        self.assertEqual(len(bodies[1]["changes"]), 5)
        self.assertEqual(self.a.pending(), 0)

    def test_server_without_gzip_bodies(self):
        for i in range(60):
            self.a.new_chat("padding to make the body large %d " % i + "x" * 200)
        self.px.add("/v2/sync", status=415,
                    body=b'{"error":"no gzip","code":"unsupported_encoding"}',
                    when=lambda req: req["headers"].get("content-encoding") == "gzip")
        self.a.run("sync", "--json", env={"POLYSYNC_GZIP_LEVEL": "6"})  # gzip even on loopback
        seen = self.px.seen("/v2/sync")
        self.assertEqual(seen[0][2].get("content-encoding"), "gzip")
        self.assertIsNone(seen[1][2].get("content-encoding"))
        self.assertEqual(self.a.pending(), 0)


class CursorExpiry(ClientTestCase):
    def test_410_resync_sends_everything_and_learns_deletions(self):
        srv = self.server()
        px = self.proxy(srv)
        a, b = self.device("a", px), self.device("b", srv)
        keep = a.new_chat("keep")
        gone = a.new_chat("deleted elsewhere")
        m = a.add_msg(keep, "hello")
        a.sync()
        a.sync()
        b.sync()
        b.run("chat", "delete", gone)
        b.sync()
        local = a.new_chat("made while the cursor was old")
        px.add("/v2/sync", status=410,
               body=b'{"error":"cursor too old","code":"cursor_expired","field":"cursor"}',
               when=lambda req: json.loads(req["body"]).get("cursor") is not None)
        st = a.sync().json()
        self.assertTrue(st["fullResync"])
        bodies = v2_bodies(px)
        self.assertIsNone(bodies[-1]["cursor"])
        sent = {ch["chatId"] for ch in bodies[-1]["changes"]}
        self.assertLessEqual({keep, gone, local}, sent)
        state = a.chats()
        self.assertNotIn(gone, state)  # its copy lost to the deletion
        self.assertIn(keep, state)
        self.assertIn(m, [x["id"] for x in state[keep]["messages"]])
        b.sync()
        assert_converged(self, a, b)
        a.sync()
        self.assertFalse(a.sync().json()["fullResync"])

    def test_new_server_gets_everything(self):
        s1 = self.server()
        a = self.device("a", s1)
        cid = a.new_chat("moves servers")
        a.add_msg(cid, "one")
        a.sync()
        s2 = self.server()
        a.server = s2
        st = a.sync().json()
        self.assertTrue(st["fullResync"])
        b = self.device("b", s2)
        b.sync()
        assert_converged(self, a, b)


class Progress(ClientTestCase):
    def run_in_pty(self, args):
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(args[0], args)
        out = b""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")

    def test_progress_on_a_terminal_only(self):
        srv = self.server()
        px = self.proxy(srv)
        a = self.device("a", px)
        for i in range(3):
            a.new_chat("chat %d" % i)
        px.add("/v2/sync", delay=1.6)
        from clientkit import POLYSYNC
        rc, out = self.run_in_pty([POLYSYNC, "--store", a.store, "--server", px.url, "sync"])
        self.assertEqual(rc, 0, out)
        # the server holds the answer 1.6 s: the line says it is working
        self.assertIn("sync: merging…", out)
        self.assertIn("sent 0/3 changes", out)
        self.assertIn("synced: sent 3 changes", out)
        # not a terminal: silent
        a.new_chat("one more")
        px.add("/v2/sync", delay=1.6)
        r = a.run("sync")
        self.assertEqual(r.out, "")
        self.assertEqual(r.err, "")


if __name__ == "__main__":
    unittest.main()
