"""
CORS (issue 7): `*` only in the no-auth local mode; with --cors-origin
(repeatable) an allowed Origin is echoed (with Vary: Origin), any other gets
no Access-Control-Allow-Origin; `*` with auth is refused at start;
Access-Control-Allow-Credentials never comes with `*`; preflights are 204.
"""
import unittest

from sectools import SecurityTestCase, expect_refused

APP = "https://app.example"
OTHER = "https://other.example"
NOT_ALLOWED = ["https://evil.example", "https://app.example.evil.com", "https://app.examplex",
               "http://app.example", "https://app.example:8443", "https://app.example/",
               "null", "*"]


def tokens(value):
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


class CorsTest(SecurityTestCase):

    def get(self, s, origin, path="/health", token=True, method="GET"):
        hdrs = {"Origin": origin}
        if not token:
            hdrs["Authorization"] = None
        return s.request(method, path, headers=hdrs)

    def preflight(self, s, origin, method="POST", req_headers="authorization, content-type"):
        return s.request("OPTIONS", "/v2/sync", headers={
            "Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": req_headers, "Authorization": None})

    def assertNoStarWithCredentials(self, headers, what):
        if headers.get("Access-Control-Allow-Origin") == "*":
            self.assertIsNone(headers.get("Access-Control-Allow-Credentials"),
                              "%s: Allow-Credentials sent with *" % what)

    def assertEchoed(self, headers, origin, what):
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), origin, what)
        self.assertIn("origin", tokens(", ".join(headers.get_all("Vary") or [])), what)

    def assertNotAllowed(self, headers, what):
        self.assertIsNone(headers.get("Access-Control-Allow-Origin"), what)
        self.assertIsNone(headers.get("Access-Control-Allow-Credentials"), what)

    def test_no_auth_default_is_star(self):
        s = self.new_server()
        for path, method in (("/health", "GET"), ("/fetchChats", "GET"), ("/nowhere", "GET")):
            with self.subTest(path=path):
                status, headers, _ = self.get(s, "https://anything.example", path, method=method)
                self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
                self.assertNoStarWithCredentials(headers, path)
        status, headers, _ = self.preflight(s, "https://anything.example", req_headers="content-type")
        self.assertEqual(status, 204)
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
        self.assertNoStarWithCredentials(headers, "preflight")
        self.assertIn("post", tokens(headers.get("Access-Control-Allow-Methods")))
        self.assertIn("content-type", tokens(headers.get("Access-Control-Allow-Headers")))

    def test_allow_list_with_auth(self):
        s = self.auth_server("--cors-origin", APP, "--cors-origin", OTHER)
        for origin in (APP, OTHER):
            with self.subTest(origin=origin):
                status, headers, _ = self.get(s, origin, "/fetchChats")
                self.assertEqual(status, 200)
                self.assertEchoed(headers, origin, "200 for " + origin)
                status, headers, _ = self.get(s, origin, "/fetchChats", token=False)
                self.assertEqual(status, 401)
                self.assertEchoed(headers, origin, "401 for " + origin)
                status, headers, _ = self.get(s, origin, "/health", token=False)
                self.assertEchoed(headers, origin, "/health for " + origin)
                status, headers, _ = self.preflight(s, origin)
                self.assertEqual(status, 204)
                self.assertEchoed(headers, origin, "preflight for " + origin)
                self.assertTrue({"get", "post"} <= tokens(headers.get("Access-Control-Allow-Methods")),
                                headers.get("Access-Control-Allow-Methods"))
                self.assertTrue({"authorization", "content-type"}
                                <= tokens(headers.get("Access-Control-Allow-Headers")),
                                headers.get("Access-Control-Allow-Headers"))
        for origin in NOT_ALLOWED:
            with self.subTest(origin=origin):
                status, headers, _ = self.get(s, origin, "/fetchChats")
                self.assertEqual(status, 200)
                self.assertNotAllowed(headers, "request from " + origin)
                status, headers, _ = self.preflight(s, origin)
                self.assertEqual(status, 204)
                self.assertNotAllowed(headers, "preflight from " + origin)

    def test_allow_list_without_auth(self):
        s = self.new_server(["--cors-origin", APP])
        status, headers, _ = self.get(s, APP, "/fetchChats")
        self.assertEchoed(headers, APP, APP)
        for origin in NOT_ALLOWED:
            with self.subTest(origin=origin):
                status, headers, _ = self.get(s, origin, "/fetchChats")
                self.assertEqual(status, 200)
                self.assertNotAllowed(headers, origin)

    def test_auth_without_allow_list_never_star(self):
        s = self.auth_server()
        for origin in (APP, "https://anything.example", "null"):
            with self.subTest(origin=origin):
                for status, headers, _ in (self.get(s, origin, "/fetchChats"),
                                           self.get(s, origin, "/health", token=False),
                                           self.get(s, origin, "/fetchChats", token=False),
                                           self.preflight(s, origin)):
                    self.assertNotEqual(headers.get("Access-Control-Allow-Origin"), "*")
                    self.assertNoStarWithCredentials(headers, origin)

    def test_star_with_auth_refused(self):
        db = ["--port", "0", "--db", "sqlite:" + self.keys.path("star.db")]
        for args in (self.hs_args("--cors-origin", "*"),
                     self.hs_args("--cors-origin", APP, "--cors-origin", "*")):
            with self.subTest(args=args):
                code, err = expect_refused(db + args)
                self.assertEqual(code, 1, err)
                self.assertTrue(err.strip())

    def test_star_without_auth_allowed(self):
        s = self.new_server(["--cors-origin", "*"])
        status, headers, _ = self.get(s, APP, "/fetchChats")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
        self.assertNoStarWithCredentials(headers, "--cors-origin *")


if __name__ == "__main__":
    unittest.main()
