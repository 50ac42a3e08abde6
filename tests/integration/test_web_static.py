"""
GET /web/... (issue 13): polysyncd serves the web client's files from
--web-root with their content types, ETag/304, no directory listing
(/web/ is index.html), nothing outside the root (.., %2e%2e, hidden names,
symlinks that leave the root), no token needed with auth on, CORS as for
every answer (docs/security.md), and the built copy by default.
"""
import os
import shutil
import tempfile
import unittest

from sectools import SecurityTestCase

APP = "https://app.example"


class WebStaticTest(SecurityTestCase):

    def setUp(self):
        super().setUp()
        self.root = tempfile.mkdtemp(prefix="polysync-webroot-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        outside = tempfile.mkdtemp(prefix="polysync-outside-")
        self.addCleanup(shutil.rmtree, outside, ignore_errors=True)
        files = {
            "index.html": "<!doctype html><title>demo</title>",
            "polysync.js": "export const x = 1;\n",
            "demo.css": "body{}",
            "types.d.ts": "export {};",
            "sub/index.html": "<p>sub</p>",
            "sub/deep.json": "{}",
            "sub/blob.bin": "\x00\x01",
            ".hidden": "secret",
        }
        for name, text in files.items():
            path = os.path.join(self.root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        os.makedirs(os.path.join(self.root, "nolisting"))
        with open(os.path.join(outside, "secret.txt"), "w") as f:
            f.write("outside the root")
        os.symlink(os.path.join(outside, "secret.txt"), os.path.join(self.root, "leak.txt"))
        os.symlink(outside, os.path.join(self.root, "leakdir"))
        os.symlink("polysync.js", os.path.join(self.root, "alias.js"))  # stays inside
        self.outside = outside

    def get(self, s, path, headers=None, method="GET"):
        hdrs = {"Authorization": None}
        hdrs.update(headers or {})
        return s.request(method, path, headers=hdrs)

    def test_files_types_and_index(self):
        s = self.new_server(["--web-root", self.root])
        cases = [("/web/", "text/html; charset=utf-8", b"<!doctype html><title>demo</title>"),
                 ("/web/index.html", "text/html; charset=utf-8", None),
                 ("/web/polysync.js", "text/javascript; charset=utf-8", b"export const x = 1;\n"),
                 ("/web/demo.css", "text/css; charset=utf-8", None),
                 ("/web/types.d.ts", "text/plain; charset=utf-8", None),
                 ("/web/sub/", "text/html; charset=utf-8", b"<p>sub</p>"),
                 ("/web/sub/deep.json", "application/json; charset=utf-8", None),
                 ("/web/sub/blob.bin", "application/octet-stream", b"\x00\x01"),
                 ("/web/alias.js", "text/javascript; charset=utf-8", b"export const x = 1;\n")]
        for path, ctype, body in cases:
            with self.subTest(path=path):
                st, h, _ = self.get(s, path)
                self.assertEqual(st, 200)
                self.assertEqual(h.get("Content-Type"), ctype)
                self.assertEqual(h.get("X-Content-Type-Options"), "nosniff")
                if body is not None:
                    self.assertEqual(s.last_body, body)
        st, h, _ = self.get(s, "/web")
        self.assertEqual((st, h.get("Location")), (301, "/web/"))
        st, h, _ = self.get(s, "/web/polysync.js", method="HEAD")
        self.assertEqual(st, 200)
        self.assertEqual(s.last_body, b"")

    def test_nothing_outside_the_root(self):
        s = self.new_server(["--web-root", self.root])
        for path in ["/web/../CMakeLists.txt", "/web/%2e%2e/%2e%2e/etc/passwd", "/web/sub/../../x",
                     "/web/%2E%2E/secret.txt", "/web/..%2fsecret.txt", "/web/sub/%2e%2e/index.html",
                     "/web/./index.html", "/web//index.html", "/web/.hidden", "/web/leak.txt",
                     "/web/leakdir/secret.txt", "/web/nolisting", "/web/nolisting/", "/web/sub",
                     "/web/missing.js", "/web/sub\\..\\index.html"]:
            with self.subTest(path=path):
                st, h, body = self.get(s, path)
                self.assertEqual(st, 404)
                self.assertEqual(body["code"], "not_found")
                self.assertNotIn(b"outside the root", s.last_body)
                self.assertNotIn(b"secret", s.last_body)

    def test_etag_and_304(self):
        s = self.new_server(["--web-root", self.root])
        st, h, _ = self.get(s, "/web/polysync.js")
        etag = h.get("ETag")
        self.assertTrue(etag and etag.startswith('"'))
        self.assertEqual(h.get("Cache-Control"), "no-cache")
        st, h, _ = self.get(s, "/web/polysync.js", {"If-None-Match": etag})
        self.assertEqual((st, s.last_body, h.get("ETag")), (304, b"", etag))
        st, _, _ = self.get(s, "/web/polysync.js", {"If-None-Match": '"other", ' + etag})
        self.assertEqual(st, 304)
        st, _, _ = self.get(s, "/web/polysync.js", {"If-None-Match": '"stale"'})
        self.assertEqual(st, 200)
        # a changed file gets a new tag
        with open(os.path.join(self.root, "polysync.js"), "a") as f:
            f.write("// more\n")
        st, h, _ = self.get(s, "/web/polysync.js", {"If-None-Match": etag})
        self.assertEqual(st, 200)
        self.assertNotEqual(h.get("ETag"), etag)

    def test_methods(self):
        s = self.new_server(["--web-root", self.root])
        st, h, body = s.request("POST", "/web/polysync.js", body={}, headers={"Authorization": None})
        self.assertEqual((st, body["code"]), (405, "method_not_allowed"))
        self.assertIn("GET", h.get("Allow"))

    def test_auth_on_static_needs_no_token_but_sync_does(self):
        s = self.auth_server("--web-root", self.root, "--cors-origin", APP)
        st, h, _ = self.get(s, "/web/polysync.js", {"Origin": APP})
        self.assertEqual(st, 200)
        self.assertEqual(h.get("Access-Control-Allow-Origin"), APP)
        st, h, _ = self.get(s, "/web/polysync.js", {"Origin": "https://evil.example"})
        self.assertEqual(st, 200)
        self.assertIsNone(h.get("Access-Control-Allow-Origin"))
        st, _, body = s.request("POST", "/v2/sync", body={"deviceId": "d"}, headers={"Authorization": None})
        self.assertEqual((st, body["code"]), (401, "unauthorized"))

    def test_missing_web_root_is_refused_at_start(self):
        s = self.new_server(["--web-root", os.path.join(self.root, "nope")], start=False)
        with self.assertRaises(Exception):
            s.start()

    def test_default_is_the_built_copy(self):
        s = self.new_server()
        st, h, _ = self.get(s, "/web/polysync.js")
        self.assertEqual(st, 200)
        self.assertIn(b"export async function openStore", s.last_body)
        st, _, _ = self.get(s, "/web/")
        self.assertEqual(st, 200)
        self.assertIn(b"polysync", s.last_body)


if __name__ == "__main__":
    unittest.main()
