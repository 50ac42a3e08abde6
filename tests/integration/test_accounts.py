"""
Accounts (issue 18): tokens carry an id and are recorded, `polysyncd token
list / revoke ID / revoke --user`, `user disable / enable / delete /
rename`, run as separate processes against a running server's store.
Oracle: docs/security.md ("Revoking access"): within a few seconds a
revoked token gets 401 token_revoked on every endpoint, the live socket
upgrade included, and its open /v2/events streams and WebSocket sockets
are closed; a disabled user gets 403 user_disabled and keeps their data;
a deleted user's old tokens cannot bring the account back; a server
started later still refuses (the lists are in the store).
"""
import json
import socket
import time
import unittest

from harness import run_polysyncd
from jwtkit import decode_unverified
from sectools import PROTECTED, SecurityTestCase
from wsclient import WsClient

# The server polls the store once a second; a generous bound for a loaded
# machine (this is when the test gives up, not a speed target).
TAKES_EFFECT_S = 10.0


class SseStream:
    """GET /v2/events on a raw socket, read until the server ends it."""

    def __init__(self, server, token):
        self.sock = server.connect()
        self.sock.sendall(("GET /v2/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Authorization: Bearer %s\r\n\r\n" % token).encode())
        self.buf = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in self.buf and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            self.buf += self.sock.recv(4096)
        self.status = int(self.buf.split(b" ", 2)[1])

    def ended_within(self, timeout):
        """True when the server closes the stream (EOF) within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                return False
            if not chunk:
                return True
            self.buf += chunk
        return False

    def close(self):
        self.sock.close()


class AccountsTest(SecurityTestCase):

    def admin(self, server, *args, expect=0):
        r = run_polysyncd(list(args) + ["--db", server.db_url])
        self.assertEqual(r.returncode, expect, "polysyncd %r: %s%s" % (args, r.stdout, r.stderr))
        return r

    def issue(self, server, user):
        r = self.admin(server, "token", "issue", "--user", user, "--jwt-secret-file",
                       self.secret_file)
        return r.stdout.strip()

    def status_of(self, server, token, method="GET", path="/fetchChats", body=None):
        status, headers, doc = server.request(method, path, body=body,
                                              headers={"Authorization": "Bearer " + token})
        return status, headers, doc

    def wait_status(self, server, token, want):
        """Polls until the token's /fetchChats answers `want`; the answer."""
        deadline = time.monotonic() + TAKES_EFFECT_S
        while True:
            status, headers, doc = self.status_of(server, token)
            if status == want or time.monotonic() > deadline:
                return status, headers, doc
            time.sleep(0.1)

    def assert_refused_everywhere(self, server, token, status, code):
        for method, path, body in PROTECTED:
            with self.subTest(path=path, code=code):
                got, headers, doc = self.status_of(server, token, method, path, body)
                self.assertEqual(got, status, "%s %s: %r" % (method, path, doc))
                self.assertEqual(doc.get("code"), code, doc)
                if status == 401:
                    self.assertIn('error="invalid_token"', headers.get("WWW-Authenticate", ""))
        sse = SseStream(server, token)
        self.addCleanup(sse.close)
        self.assertEqual(sse.status, status, "GET /v2/events: %r" % sse.buf[:300])
        ws = WsClient(server, "/?access_token=" + token)
        self.assertEqual(ws.status, status, "live socket upgrade: %r" % ws.body)
        self.assertEqual(ws.body.get("code"), code, ws.body)

    def open_live(self, server, token):
        """An open /v2/events stream and an open live socket with `token`."""
        sse = SseStream(server, token)
        self.addCleanup(sse.close)
        self.assertEqual(sse.status, 200)
        ws = WsClient(server, "/?access_token=" + token)
        self.addCleanup(ws.close)
        self.assertEqual(ws.status, 101)
        return sse, ws

    def assert_live_cut(self, sse, ws):
        self.assertTrue(sse.ended_within(TAKES_EFFECT_S), "the /v2/events stream stays open")
        ev = ws.next_event(TAKES_EFFECT_S)
        self.assertEqual(ev, ("close", 1008), "the live socket must be closed with 1008")

    # -- tokens --

    def test_issued_tokens_are_recorded_with_their_id(self):
        s = self.auth_server()
        token = self.issue(s, "carol")
        _, payload = decode_unverified(token)
        self.assertRegex(payload.get("jti", ""), "^[0-9a-f]{32}$", payload)
        self.assertIsInstance(payload.get("iat"), (int, float))
        other = self.issue(s, "dave")
        self.assertNotEqual(decode_unverified(other)[1]["jti"], payload["jti"])
        rows = json.loads(self.admin(s, "token", "list", "--user", "carol", "--json").stdout)
        self.assertEqual([(r["id"], r["user"], r["status"]) for r in rows],
                         [(payload["jti"], "carol", "active")])
        text = self.admin(s, "token", "list").stdout.splitlines()
        self.assertEqual(len(text), 2, text)
        self.assertEqual(self.status_of(s, token)[0], 200)

    def test_revoked_token_is_refused_everywhere_and_its_streams_close(self):
        s = self.auth_server()
        revoked, kept = self.issue(s, "alice"), self.issue(s, "alice")
        sse, ws = self.open_live(s, revoked)
        jti = decode_unverified(revoked)[1]["jti"]
        self.admin(s, "token", "revoke", jti)
        status, _, doc = self.wait_status(s, revoked, 401)
        self.assertEqual((status, doc.get("code")), (401, "token_revoked"), doc)
        self.assert_live_cut(sse, ws)
        self.assert_refused_everywhere(s, revoked, 401, "token_revoked")
        self.assertEqual(self.status_of(s, kept)[0], 200, "another token of alice still works")
        rows = json.loads(self.admin(s, "token", "list", "--json").stdout)
        self.assertEqual({r["id"]: r["status"] for r in rows}[jti], "revoked")
        # revoking it again, or an id that was never issued: exit 1, said why
        r = self.admin(s, "token", "revoke", jti, expect=1)
        self.assertIn("no token", r.stderr)
        self.admin(s, "token", "revoke", "0" * 32, expect=1)

    def test_revoke_user_refuses_every_token_issued_until_then(self):
        s = self.auth_server()
        recorded = self.issue(s, "alice")
        minted_elsewhere = self.tok("alice")  # same secret, never recorded
        bob = self.issue(s, "bob")
        s.as_user(recorded).push_ok([{"id": "c1", "title": "kept", "messages": []}])
        self.admin(s, "token", "revoke", "--user", "alice")
        self.wait_status(s, recorded, 401)
        for token in (recorded, minted_elsewhere):
            status, _, doc = self.status_of(s, token)
            self.assertEqual((status, doc.get("code")), (401, "token_revoked"))
        self.assertEqual(self.status_of(s, bob)[0], 200, "bob is not alice")
        fresh = self.issue(s, "alice")
        status, _, doc = self.status_of(s, fresh)
        self.assertEqual(status, 200, "a token issued after the revocation works: %r" % doc)
        self.assertEqual([c["title"] for c in doc], ["kept"], "revocation keeps the data")

    def test_revocation_is_kept_across_a_restart(self):
        s = self.auth_server()
        token = self.issue(s, "alice")
        s.stop()
        self.admin(s, "token", "revoke", decode_unverified(token)[1]["jti"])
        s.start()
        status, _, doc = self.status_of(s, token)  # no wait: loaded at start
        self.assertEqual((status, doc.get("code")), (401, "token_revoked"))

    # -- users --

    def test_disabled_user_gets_403_keeps_data_and_comes_back_when_enabled(self):
        s = self.auth_server()
        token = self.issue(s, "alice")
        alice = s.as_user(token)
        alice.push_ok([{"id": "c1", "title": "mine", "messages": []}])
        sse, ws = self.open_live(s, token)
        self.admin(s, "user", "disable", "alice")
        status, _, doc = self.wait_status(s, token, 403)
        self.assertEqual((status, doc.get("code")), (403, "user_disabled"), doc)
        self.assert_live_cut(sse, ws)
        self.assert_refused_everywhere(s, token, 403, "user_disabled")
        self.assertEqual(self.status_of(s, self.issue(s, "bob"))[0], 200)
        self.admin(s, "user", "enable", "alice")
        status, _, doc = self.wait_status(s, token, 200)
        self.assertEqual(status, 200, doc)
        self.assertEqual([c["title"] for c in doc], ["mine"])

    def test_deleted_user_cannot_be_resurrected_by_a_device(self):
        s = self.auth_server()
        token = self.issue(s, "alice")
        alice = s.as_user(token)
        alice.push_ok([{"id": "c1", "title": "old", "messages": []}])
        self.admin(s, "user", "delete", "alice", "--yes")
        status, _, doc = self.wait_status(s, token, 401)
        self.assertEqual((status, doc.get("code")), (401, "token_revoked"))
        # the device syncs its whole local copy: refused, nothing stored
        status, _, doc = self.status_of(s, token, "POST", "/sync",
                                        {"chats": [{"id": "c1", "title": "old",
                                                    "messages": []}]})
        self.assertEqual(status, 401, doc)
        status, _, doc = self.status_of(s, token, "POST", "/v2/sync",
                                        {"deviceId": "d1", "cursor": None,
                                         "changes": [{"chatId": "c1",
                                                      "fields": {"title": "old"}}]})
        self.assertEqual(status, 401, doc)
        listing = self.admin(s, "user", "list").stdout
        self.assertNotIn("alice", listing)
        # the operator may let the person start again, with a new token
        fresh = self.issue(s, "alice")
        status, _, doc = self.status_of(s, fresh)
        self.assertEqual((status, doc), (200, []), "a new account, empty")

    def test_turning_auth_on_adopts_the_local_chats(self):
        # docs/security.md, "Turning auth on": the recipe, as written
        s = self.new_server()  # no auth: the implicit user `local`
        s.push_ok([{"id": "c1", "title": "from before", "messages": []}])
        s.stop()
        r = self.admin(s, "user", "rename", "local", "alice")
        self.assertIn("renamed user local to alice", r.stdout)
        s.extra_args += self.hs_args()
        s.start()
        token = self.issue(s, "alice")
        status, _, doc = self.status_of(s, token)
        self.assertEqual(status, 200, doc)
        self.assertEqual([c["title"] for c in doc], ["from before"])

    def test_rename_refuses_a_taken_or_missing_name(self):
        s = self.auth_server()
        s.as_user(self.issue(s, "alice")).push_ok([{"id": "a", "title": "A", "messages": []}])
        s.as_user(self.issue(s, "bob")).push_ok([{"id": "b", "title": "B", "messages": []}])
        r = self.admin(s, "user", "rename", "alice", "bob", expect=1)
        self.assertIn("exists already", r.stderr)
        r = self.admin(s, "user", "rename", "nobody", "zed", expect=1)
        self.assertIn("no user nobody", r.stderr)
        listing = self.admin(s, "user", "list").stdout
        self.assertEqual(listing, "alice\t1 chat\nbob\t1 chat\n", "nothing changed")

    def test_usage_mistakes_exit_1(self):
        s = self.auth_server()
        for args in (["token", "revoke"], ["token", "revoke", "x", "--user", "u"],
                     ["user", "disable"], ["user", "rename", "only-one"], ["user", "frobnicate"]):
            with self.subTest(args=args):
                self.admin(s, *args, expect=1)
        r = run_polysyncd(["token", "--help"])
        for verb in ("token list", "token revoke", "user disable", "user enable", "user rename"):
            self.assertIn(verb, r.stdout)


if __name__ == "__main__":
    unittest.main()
