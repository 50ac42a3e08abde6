"""
Token and TLS rules added by issue 16.5: a token whose exp lies further
ahead than --max-token-lifetime (default 366 days) is refused, so is one
with a "crit" header (RFC 7515 §4.1.11: we understand no extension), and
the algorithm name is matched exactly ("hs256" is not "HS256"; RFC 7515
names are case-sensitive). A TLS key that does not belong to the
certificate stops the server with that reason, not "cannot listen".
"""
import hashlib
import hmac
import time
import unittest

from jwtkit import b64url, segment
from sectools import SecurityTestCase, expect_refused

DAY = 86400


def hs256_with_header(secret, header, payload):
    """An HS256-signed token whose header is exactly `header`."""
    signing_input = (segment(header) + "." + segment(payload)).encode("ascii")
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return signing_input.decode("ascii") + "." + b64url(sig)


class TokenRulesTest(SecurityTestCase):

    def payload(self, exp_in):
        now = int(time.time())
        return {"sub": "alice", "iat": now, "exp": now + exp_in}

    def test_exp_beyond_the_max_lifetime_is_refused(self):
        s = self.auth_server()
        header = {"alg": "HS256", "typ": "JWT"}
        cases = {
            "365 days": (365 * DAY, True),
            "367 days": (367 * DAY, False),
            "a century": (36500 * DAY, False),
        }
        for label, (exp_in, accepted) in cases.items():
            with self.subTest(label):
                auth = "Bearer " + hs256_with_header(self.secret, header, self.payload(exp_in))
                if accepted:
                    self.assert_accepted(s, auth, label)
                else:
                    self.assert_rejected(s, auth, what=label)

    def test_max_token_lifetime_flag(self):
        s = self.auth_server("--max-token-lifetime", "30")
        header = {"alg": "HS256", "typ": "JWT"}
        self.assert_accepted(s, "Bearer " + hs256_with_header(
            self.secret, header, self.payload(29 * DAY)))
        self.assert_rejected(s, "Bearer " + hs256_with_header(
            self.secret, header, self.payload(31 * DAY)), what="31 days with a 30-day bound")

    def test_crit_header_is_refused(self):
        s = self.auth_server()
        for crit in (["exp"], ["x-ext"], []):
            with self.subTest(crit=crit):
                header = {"alg": "HS256", "typ": "JWT", "crit": crit, "x-ext": 1}
                self.assert_rejected(s, "Bearer " + hs256_with_header(
                    self.secret, header, self.payload(3600)), what="crit %r" % crit)
        # The same token without crit is fine: the refusal is about crit.
        self.assert_accepted(s, "Bearer " + hs256_with_header(
            self.secret, {"alg": "HS256", "typ": "JWT", "x-ext": 1}, self.payload(3600)))

    def test_algorithm_names_are_case_sensitive(self):
        s = self.auth_server()
        for alg in ("hs256", "Hs256", "HS256 ", "hS256"):
            with self.subTest(alg=alg):
                self.assert_rejected(s, "Bearer " + hs256_with_header(
                    self.secret, {"alg": alg, "typ": "JWT"}, self.payload(3600)),
                    what="alg %r" % alg)
        self.assert_accepted(s, "Bearer " + hs256_with_header(
            self.secret, {"alg": "HS256", "typ": "JWT"}, self.payload(3600)))


class TlsKeyMismatchTest(SecurityTestCase):

    def test_a_key_of_another_certificate_is_named_as_such(self):
        _, cert, _ = self.keys.tls()
        key, _ = self.keys.rsa("other")
        code, err = expect_refused(["--port", "0", "--db", "sqlite:" + self.keys.path("t.db"),
                                    "--tls-cert", cert, "--tls-key", key])
        self.assertEqual(code, 1, err)
        self.assertIn("does not belong to the certificate", err)
        self.assertNotIn("in use, or not allowed", err)

    def test_a_certificate_file_without_a_certificate(self):
        _, _, key = self.keys.tls()
        junk = self.keys.write("junk.pem", "not a certificate\n")
        code, err = expect_refused(["--port", "0", "--db", "sqlite:" + self.keys.path("t.db"),
                                    "--tls-cert", junk, "--tls-key", key])
        self.assertEqual(code, 1, err)
        self.assertIn("holds no PEM certificate", err)


if __name__ == "__main__":
    unittest.main()
