"""
JWT bearer auth (issue 7): which requests need a token, which tokens are
refused and how (401, {error, code}, WWW-Authenticate), HS256 / RS256 /
ES256 keys and the attacks on them (alg none, algorithm swaps, the HS256
key-confusion attack with the RSA public key as secret, the all-zero ECDSA
signature), exp / nbf with 60 s leeway, iss / aud, sub, the secret file
rules, `polysyncd token issue`, /health without user data, and a
non-loopback bind once auth is on.
"""
import hashlib
import hmac
import json
import time
import unittest

from harness import run_polysyncd
from jwtkit import b64url, b64url_decode, claims, decode_unverified, hs_token, segment, \
    unsigned_token
from sectools import PROTECTED, SecurityTestCase, expect_refused, stream_head

HEALTH_KEYS = {"status", "uptime", "version", "store", "capabilities", "maxChanges"}


class HS256Test(SecurityTestCase):

    def test_token_opens_every_endpoint(self):
        s = self.auth_server()
        for method, path, body in PROTECTED:
            with self.subTest(path=path):
                status, _, doc = s.request(method, path, body=body)
                self.assertEqual(status, 200, "%s %s: %r" % (method, path, doc))
        status, headers, _ = stream_head(s, token=s.token)
        self.assertEqual(status, 200)
        self.assertIn("text/event-stream", headers.get("content-type", ""))

    def test_no_token_is_401_unauthorized_everywhere(self):
        s = self.auth_server()
        for method, path, body in PROTECTED:
            with self.subTest(path=path):
                status, headers, doc = s.request(method, path, body=body,
                                                 headers={"Authorization": None})
                self.assert401(status, headers, doc, "unauthorized", path)
        status, headers, rest = stream_head(s, token=None)
        self.assertEqual(status, 401, "GET /v2/events without a token")
        self.assertTrue(headers.get("www-authenticate", "").startswith('Bearer realm="polysync"'),
                        headers)

    def test_token_in_query_string_is_not_a_credential(self):
        s = self.auth_server()
        status, headers, doc = s.request("GET", "/fetchChats?access_token=" + s.token,
                                         headers={"Authorization": None})
        self.assert401(status, headers, doc, "unauthorized", "access_token query parameter")

    def test_a_rejected_write_changes_nothing(self):
        s = self.auth_server()
        s.push_ok([{"id": "c1", "title": "mine", "messages": []}])
        status, _, _ = s.request("POST", "/pushChats",
                                 body={"chats": [{"id": "c2", "title": "x", "messages": []}]},
                                 headers={"Authorization": "Bearer " + self.tok("alice", ttl=-3600)})
        self.assertEqual(status, 401)
        status, _, _ = s.request("POST", "/deleteChat", body={"chatId": "c1"},
                                 headers={"Authorization": None})
        self.assertEqual(status, 401)
        self.assertEqual([c["id"] for c in s.fetch()], ["c1"])

    def test_health_and_options_need_no_token_and_health_shows_no_user_data(self):
        s = self.auth_server()
        s.push_ok([{"id": "c1", "title": "t", "messages": []}])
        for token in (None, s.token):
            with self.subTest(token=bool(token)):
                hdrs = {"Authorization": None if token is None else "Bearer " + token}
                status, _, doc = s.request("GET", "/health", headers=hdrs)
                self.assertEqual(status, 200, doc)
                self.assertEqual(set(doc), HEALTH_KEYS, doc)
                self.assertEqual(doc["status"], "healthy")
        status, _, _ = s.request("OPTIONS", "/sync", headers={
            "Authorization": None, "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST"})
        self.assertEqual(status, 204)

    def test_health_without_auth_keeps_its_user_fields(self):
        s = self.new_server()
        doc = s.health()
        self.assertIn("chatsCount", doc)
        self.assertIn("lastSync", doc)

    def test_bad_tokens_are_401_invalid_token(self):
        s = self.auth_server()
        good = self.tok("alice")
        h, p, sig = good.split(".")
        other_secret = hs_token("another secret that is long enough!!", claims("alice"))
        now = int(time.time())

        def signed(header, payload):
            """HS256 over arbitrary segments with the right secret."""
            si = header + "." + payload
            return si + "." + b64url(hmac.new(self.secret.encode(), si.encode(),
                                              hashlib.sha256).digest())

        hs256 = {"alg": "HS256", "typ": "JWT"}
        cases = {
            "not a JWT": "garbage",
            "two segments": h + "." + p,
            "four segments": good + "." + sig,
            "empty segments": "..",
            "bad base64 in the signature": h + "." + p + "." + sig[:-2] + "!!",
            "bad base64 in the payload": signed(segment(hs256), "%%%%"),
            "header not JSON": signed(b64url(b"{not json"), segment(claims("alice"))),
            "payload not JSON": signed(segment(hs256), b64url(b"not json")),
            "payload an array": signed(segment(hs256), segment(["alice"])),
            "payload a string": signed(segment(hs256), b64url(b'"alice"')),
            "header without alg": signed(segment({"typ": "JWT"}), segment(claims("alice"))),
            "alg not a string": signed(segment({"alg": ["HS256"]}), segment(claims("alice"))),
            "tampered payload": h + "." + segment(claims("bob")) + "." + sig,
            "truncated signature": h + "." + p + "." + sig[:20],
            "empty signature": h + "." + p + ".",
            "signed with another secret": other_secret,
            "signed with the secret plus its newline": hs_token(self.secret + "\n", claims("alice")),
            "alg none": unsigned_token(claims("alice")),
            "alg None": unsigned_token(claims("alice"), "None"),
            "alg NONE": unsigned_token(claims("alice"), "NONE"),
            "alg nOnE": unsigned_token(claims("alice"), "nOnE"),
            "alg none with a valid HS256 signature kept":
                segment({"alg": "none", "typ": "JWT"}) + "." + p + "." + sig,
            "HS384 with the right secret": hs_token(self.secret, claims("alice"), alg="HS384"),
            "HS512 with the right secret": hs_token(self.secret, claims("alice"), alg="HS512"),
            "RS256 token": self.keys_rs256_token(claims("alice")),
            "expired beyond the leeway": self.tok("alice", ttl=-120),
            "expired long ago": self.tok("alice", ttl=-86400 * 365),
            "nbf beyond the leeway": self.tok("alice", nbf=now + 120),
            "missing sub": self.tok(None),
            "sub a number": self.tok(42),
            "sub null": hs_token(self.secret, {"sub": None, "exp": now + 3600}),
            "sub an array": self.tok(["alice"]),
            "sub an object": self.tok({"name": "alice"}),
            "sub of 257 bytes": self.tok("a" * 257),
            "sub of 257 UTF-8 bytes": self.tok("\u00e9" * 128 + "a"),
            "empty sub": self.tok(""),
            "missing exp": self.tok("alice", ttl=None),
            "exp a string": self.tok("alice", exp=str(now + 3600)),
            "nbf in the future, as a string": self.tok("alice", nbf=str(now + 3600)),
            "nbf in the future, with a fraction": self.tok("alice", nbf=now + 3600.5),
            "a 20 KB token": "a" * 20000,
            "a 20 KB signature": h + "." + p + "." + "A" * 20000,
        }
        for label, token in cases.items():
            with self.subTest(label):
                self.assert_rejected(s, "Bearer " + token, what=label)
        # The server still serves the good token afterwards.
        self.assert_accepted(s, "Bearer " + good)

    def keys_rs256_token(self, payload):
        if not hasattr(type(self), "_rsa"):
            type(self)._rsa = self.keys.rsa("hs-test-rsa")
        return self.keys.token(type(self)._rsa[0], payload, "RS256")

    def test_authorization_that_is_not_a_bearer_token(self):
        s = self.auth_server()
        for value in ("", "Bearer", "Bearer ", "Basic YWxpY2U6cGFzcw==",
                      "Token " + self.tok("alice"), self.tok("alice")):
            with self.subTest(value=value[:40]):
                status, headers, doc = s.request("GET", "/fetchChats",
                                                 headers={"Authorization": value})
                self.assertEqual(status, 401, doc)
                self.assertIn(doc and doc.get("code"), ("unauthorized", "invalid_token"), doc)
                self.assertTrue(headers.get("WWW-Authenticate", "")
                                .startswith('Bearer realm="polysync"'), dict(headers))

    def test_sub_with_a_nul_is_not_another_user(self):
        s = self.auth_server()
        s.push_ok([{"id": "c1", "title": "alice's", "messages": []}])
        for sub in ("alice\u0000", "alice\u0000x", "\u0000alice"):
            with self.subTest(sub=sub):
                status, _, doc = s.request("GET", "/fetchChats",
                                           headers={"Authorization": "Bearer " + self.tok(sub)})
                if status == 200:
                    self.assertEqual(doc, [], "a sub with a NUL reads alice's chats")
                else:
                    self.assertEqual(status, 401, doc)
                    self.assertErrorBody(doc, "invalid_token")

    def test_hostile_payloads_do_not_break_the_server(self):
        s = self.auth_server()
        base = {"sub": "alice", "exp": int(time.time()) + 3600}
        cases = {
            "deeply nested claim": json.dumps(base)[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}",
            "a 100,000-key payload": dict(base, **{"k%d" % i: i for i in range(100000)}),
        }
        for label, payload in cases.items():
            with self.subTest(label):
                tok = hs_token(self.secret, payload)
                # A header this large is refused before it is all sent: read
                # the answer the server gave, not the broken pipe.
                status, _, doc = s.request_early_answer("GET", "/fetchChats",
                                                        {"Authorization": "Bearer " + tok})
                self.assertIn(status, (200, 401, 431), "%s: %r" % (label, doc))
        self.assert_accepted(s, "Bearer " + s.token)

    def test_extreme_time_claims(self):
        # Signed tokens with exp/nbf at the ends of int64 (no overflow in the
        # leeway arithmetic: the ASan+UBSan build aborts on one).
        s = self.auth_server()
        now = int(time.time())
        cases = {
            # refused since issue 16: further ahead than --max-token-lifetime
            "exp at the largest int64": ({"exp": 2**63 - 1}, 401),
            "exp at the smallest int64": ({"exp": -2**63}, 401),
            "nbf at the smallest int64": ({"exp": now + 3600, "nbf": -2**63}, 200),
            "nbf at the largest int64": ({"exp": now + 3600, "nbf": 2**63 - 1}, 401),
            "exp beyond int64": ({"exp": 2**64}, None),
        }
        for label, (times, want) in cases.items():
            with self.subTest(label):
                tok = hs_token(self.secret, dict({"sub": "alice"}, **times))
                status, _, doc = s.request("GET", "/fetchChats",
                                           headers={"Authorization": "Bearer " + tok})
                if want is None:
                    self.assertIn(status, (200, 401), "%s: %r" % (label, doc))
                else:
                    self.assertEqual(status, want, "%s: %r" % (label, doc))
        self.assert_accepted(s, "Bearer " + s.token)

    def test_leeway_of_60_seconds(self):
        s = self.auth_server()
        now = int(time.time())
        self.assert_accepted(s, "Bearer " + self.tok("alice", ttl=-20), "exp 20 s ago")
        self.assert_accepted(s, "Bearer " + self.tok("alice", nbf=now + 20), "nbf in 20 s")
        self.assert_accepted(s, "Bearer " + self.tok("alice", nbf=now - 3600), "nbf in the past")
        self.assert_rejected(s, "Bearer " + self.tok("alice", ttl=-120), what="exp 120 s ago")
        self.assert_rejected(s, "Bearer " + self.tok("alice", nbf=now + 120), what="nbf in 120 s")

    def test_sub_limits(self):
        s = self.auth_server()
        self.assert_accepted(s, "Bearer " + self.tok("a" * 256), "sub of 256 bytes")
        self.assert_accepted(s, "Bearer " + self.tok("\u00e9" * 128), "sub of 256 UTF-8 bytes")
        self.assert_rejected(s, "Bearer " + self.tok("a" * 257), what="sub of 257 bytes")

    def test_issuer_and_audience_unchecked_when_not_configured(self):
        s = self.auth_server()
        self.assert_accepted(s, "Bearer " + self.tok("alice", iss="anyone", aud="anything"))
        self.assert_accepted(s, "Bearer " + self.tok("alice", aud=["x", "y"]))


class IssuerAudienceTest(SecurityTestCase):

    ISS = "https://issuer.example"
    AUD = "polysync-api"

    def server(self):
        return self.auth_server("--jwt-issuer", self.ISS, "--jwt-audience", self.AUD,
                                token=self.tok("alice", iss=self.ISS, aud=self.AUD))

    def test_matching_issuer_and_audience(self):
        s = self.server()
        self.assert_accepted(s, "Bearer " + s.token, "iss and aud string")
        self.assert_accepted(s, "Bearer " + self.tok("alice", iss=self.ISS,
                                                     aud=["other", self.AUD]), "aud array")
        self.assert_accepted(s, "Bearer " + self.tok("alice", iss=self.ISS, aud=[self.AUD]),
                             "aud array of one")

    def test_wrong_or_missing_issuer_or_audience(self):
        s = self.server()
        cases = {
            "wrong iss": self.tok("alice", iss="https://evil.example", aud=self.AUD),
            "iss with a suffix": self.tok("alice", iss=self.ISS + ".evil", aud=self.AUD),
            "iss prefix only": self.tok("alice", iss=self.ISS[:-1], aud=self.AUD),
            "missing iss": self.tok("alice", aud=self.AUD),
            "iss not a string": self.tok("alice", iss=[self.ISS], aud=self.AUD),
            "wrong aud": self.tok("alice", iss=self.ISS, aud="other"),
            "aud array without it": self.tok("alice", iss=self.ISS, aud=["other", "more"]),
            "empty aud array": self.tok("alice", iss=self.ISS, aud=[]),
            "aud a substring": self.tok("alice", iss=self.ISS, aud=self.AUD[:-1]),
            "missing aud": self.tok("alice", iss=self.ISS),
            "aud nested in an array": self.tok("alice", iss=self.ISS, aud=[[self.AUD]]),
            "aud as a key in an array": self.tok("alice", iss=self.ISS, aud=[{self.AUD: 1}]),
            "aud an object": self.tok("alice", iss=self.ISS, aud={self.AUD: True}),
        }
        for label, token in cases.items():
            with self.subTest(label):
                self.assert_rejected(s, "Bearer " + token, what=label)


class RS256Test(SecurityTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rsa_priv, cls.rsa_pub = cls.keys.rsa("server")
        cls.other_priv, _ = cls.keys.rsa("other")
        cls.ec_priv, _ = cls.keys.ec("ec")

    def server(self):
        tok = self.keys.token(self.rsa_priv, claims("alice"), "RS256")
        return self.new_server(["--jwt-public-key", self.rsa_pub], token=tok)

    def test_valid_rs256_token(self):
        s = self.server()
        self.assert_accepted(s, "Bearer " + s.token)
        s.push_ok([{"id": "c1", "title": "t", "messages": []}])
        self.assertEqual([c["id"] for c in s.fetch()], ["c1"])

    def test_other_keys_and_algorithms_refused(self):
        s = self.server()
        with open(self.rsa_pub, "rb") as f:
            pem = f.read()
        h, p, sig = s.token.split(".")
        now = int(time.time())
        cases = {
            "RS256 signed with another RSA key": self.keys.token(self.other_priv, claims("alice"), "RS256"),
            "tampered payload": h + "." + segment(claims("bob")) + "." + sig,
            "key confusion: HS256 with the public key PEM as secret": hs_token(pem, claims("alice")),
            "key confusion, PEM without its final newline": hs_token(pem.rstrip(b"\n"), claims("alice")),
            "HS256 with the server's secret file": self.tok("alice"),
            "ES256 token": self.keys.token(self.ec_priv, claims("alice"), "ES256"),
            "alg none": unsigned_token(claims("alice")),
            "alg none with the RS256 signature kept": segment({"alg": "none"}) + "." + p + "." + sig,
            "expired": self.keys.token(self.rsa_priv, claims("alice", ttl=-300), "RS256"),
            "nbf in the future": self.keys.token(self.rsa_priv, claims("alice", nbf=now + 300), "RS256"),
            "missing sub": self.keys.token(self.rsa_priv, claims(None), "RS256"),
            "RS256 header, empty signature": h + "." + p + ".",
        }
        for label, token in cases.items():
            with self.subTest(label):
                self.assert_rejected(s, "Bearer " + token, what=label)
        self.assert_accepted(s, "Bearer " + s.token)


class ES256Test(SecurityTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ec_priv, cls.ec_pub = cls.keys.ec("server")
        cls.other_priv, _ = cls.keys.ec("other")
        cls.rsa_priv, _ = cls.keys.rsa("rsa")

    def server(self):
        tok = self.keys.token(self.ec_priv, claims("alice"), "ES256")
        return self.new_server(["--jwt-public-key", self.ec_pub], token=tok)

    def test_valid_es256_token(self):
        s = self.server()
        self.assert_accepted(s, "Bearer " + s.token)

    def test_other_keys_and_algorithms_refused(self):
        s = self.server()
        with open(self.ec_pub, "rb") as f:
            pem = f.read()
        h, p, sig = s.token.split(".")
        zero = segment({"alg": "ES256", "typ": "JWT"}) + "." + p + "." + b64url(b"\0" * 64)
        cases = {
            "ES256 signed with another EC key": self.keys.token(self.other_priv, claims("alice"), "ES256"),
            "tampered payload": h + "." + segment(claims("bob")) + "." + sig,
            "all-zero signature (r = s = 0)": zero,
            "signature of the wrong length": h + "." + p + "." + b64url(b64url_decode(sig)[:63]),
            "key confusion: HS256 with the public key PEM as secret": hs_token(pem, claims("alice")),
            "RS256 token": self.keys.token(self.rsa_priv, claims("alice"), "RS256"),
            "HS256 with the secret file": self.tok("alice"),
            "alg none": unsigned_token(claims("alice")),
            "expired": self.keys.token(self.ec_priv, claims("alice", ttl=-300), "ES256"),
        }
        for label, token in cases.items():
            with self.subTest(label):
                self.assert_rejected(s, "Bearer " + token, what=label)
        self.assert_accepted(s, "Bearer " + s.token)


class StartupTest(SecurityTestCase):
    """Key and flag checks at start: refused with exit 1, nothing listening."""

    def db(self):
        return ["--port", "0", "--db", "sqlite:" + self.keys.path("start-%s.db" % self.id().split(".")[-1])]

    def test_short_secret_refused(self):
        for name, text in (("31 bytes", "x" * 31), ("31 bytes and a newline", "x" * 31 + "\n"),
                           ("31 bytes and blanks", "x" * 31 + " \t\r\n\n"), ("empty", "")):
            with self.subTest(name):
                path = self.keys.write("short.secret", text)
                code, err = expect_refused(self.db() + ["--jwt-secret-file", path])
                self.assertEqual(code, 1, err)
                self.assertTrue(err.strip(), "a refusal must be explained on stderr")

    def test_missing_key_files_refused(self):
        for flag in ("--jwt-secret-file", "--jwt-public-key"):
            with self.subTest(flag):
                code, err = expect_refused(self.db() + [flag, self.keys.path("no-such-file")])
                self.assertEqual(code, 1, err)

    def test_garbage_public_key_refused(self):
        path = self.keys.write("garbage.pub", "-----BEGIN PUBLIC KEY-----\nnot a key\n"
                                              "-----END PUBLIC KEY-----\n")
        code, err = expect_refused(self.db() + ["--jwt-public-key", path])
        self.assertEqual(code, 1, err)

    def test_secret_trailing_whitespace_trimmed(self):
        secret = "k" * 32
        path = self.keys.write("exact.secret", secret + "  \r\n\n")
        s = self.new_server(["--jwt-secret-file", path])
        self.assert_accepted(s, "Bearer " + hs_token(secret, claims("alice")), "32-byte secret")
        self.assert_rejected(s, "Bearer " + hs_token(secret + "  \r\n\n", claims("alice")),
                             what="signed with the untrimmed file")

    def test_non_loopback_bind_allowed_with_auth(self):
        s = self.new_server(self.hs_args("--bind", "0.0.0.0"), token=self.tok("alice"))
        self.assertIn("0.0.0.0", s.banner)
        self.assert_accepted(s, "Bearer " + s.token)
        status, headers, doc = s.request("GET", "/fetchChats", headers={"Authorization": None})
        self.assert401(status, headers, doc, "unauthorized", "no token on 0.0.0.0")


class TokenIssueTest(SecurityTestCase):

    def issue(self, *args):
        r = run_polysyncd(["token", "issue"] + list(args))
        return r

    def issued(self, *args):
        before = int(time.time())
        r = self.issue(*args)
        after = int(time.time()) + 1
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 1, "one line on stdout: %r" % r.stdout)
        token = lines[0].strip()
        self.assertEqual(token.count("."), 2, token)
        header, payload = decode_unverified(token)
        self.assertEqual(header.get("alg"), "HS256", header)
        return token, payload, before, after

    def test_issued_token_is_accepted(self):
        s = self.auth_server()
        token, payload, _, _ = self.issued("--user", "carol", "--jwt-secret-file", self.secret_file)
        self.assertEqual(payload.get("sub"), "carol")
        self.assertIsInstance(payload.get("exp"), int)
        carol = s.as_user(token)
        carol.push_ok([{"id": "c1", "title": "carol's", "messages": []}])
        self.assertEqual([c["title"] for c in carol.fetch()], ["carol's"])
        self.assertEqual(s.fetch(), [], "alice must not see carol's chat")

    def test_ttl_units(self):
        for ttl, seconds in (("45s", 45), ("10m", 600), ("2h", 7200), ("3d", 259200),
                             ("30d", 30 * 86400)):
            with self.subTest(ttl=ttl):
                _, payload, before, after = self.issued(
                    "--user", "u", "--ttl", ttl, "--jwt-secret-file", self.secret_file)
                self.assertGreaterEqual(payload["exp"], before + seconds, payload)
                self.assertLessEqual(payload["exp"], after + seconds, payload)

    def test_issuer_and_audience(self):
        iss, aud = "https://issuer.example", "polysync-api"
        s = self.auth_server("--jwt-issuer", iss, "--jwt-audience", aud,
                             token=self.tok("alice", iss=iss, aud=aud))
        token, payload, _, _ = self.issued("--user", "dave", "--jwt-secret-file", self.secret_file,
                                           "--jwt-issuer", iss, "--jwt-audience", aud)
        self.assertEqual(payload.get("iss"), iss)
        self.assertIn(payload.get("aud"), (aud, [aud]))
        self.assert_accepted(s, "Bearer " + token)
        bare, _, _, _ = self.issued("--user", "dave", "--jwt-secret-file", self.secret_file)
        self.assert_rejected(s, "Bearer " + bare, what="issued without --jwt-issuer/--jwt-audience")

    def test_token_from_another_secret_refused(self):
        s = self.auth_server()
        other = self.keys.write("other.secret", "z" * 40 + "\n")
        token, _, _, _ = self.issued("--user", "eve", "--jwt-secret-file", other)
        self.assert_rejected(s, "Bearer " + token, what="token minted with another secret")

    def test_usage_mistakes(self):
        for args in ((["--jwt-secret-file", self.secret_file]),
                     (["--user", "u"]),
                     (["--user", "u", "--ttl", "10x", "--jwt-secret-file", self.secret_file]),
                     (["--user", "u", "--ttl", "-5d", "--jwt-secret-file", self.secret_file]),
                     (["--user", "u", "--jwt-secret-file", self.keys.path("absent")])):
            with self.subTest(args=args):
                r = self.issue(*args)
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertEqual(r.stdout.strip(), "", "no token on a mistake")
                self.assertTrue(r.stderr.strip())


if __name__ == "__main__":
    unittest.main()
