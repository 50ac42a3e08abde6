"""
An honest /health (issue 16.3): 503 store_unavailable with the reason when
the store cannot be used — corrupt pages found at start (PRAGMA
quick_check) or by a request, a read-only file — and 200 otherwise. The
oracle is what the endpoints do with the same store: a store /health calls
healthy takes a write, one it calls unusable fails them.
"""
import hashlib
import os
import shutil
import time

from harness import ServerTestCase, Server, chat, msg

NOBODY = 65534


def corrupt_second_half(path, page=16384):
    """Overwrites the pages of the second half of an SQLite file (not the
    first page: the schema) with junk; returns how many."""
    size = os.path.getsize(path)
    pages = size // page
    assert pages >= 8, "a store of %d pages is too small to corrupt meaningfully" % pages
    with open(path, "r+b") as f:
        for n in range(pages // 2, pages):
            f.seek(n * page)
            f.write(b"\x55" * page)
    return pages - pages // 2


def noise(n, seed):
    """n characters that do not compress (hex of a hash chain): the store
    keeps renderings compressed (schema 10), and these must stay as large
    as their text so they fill the file's second half too, where a request
    reading them finds the corrupt pages."""
    out, h = [], hashlib.sha256(str(seed).encode()).digest()
    while sum(map(len, out)) < n:
        h = hashlib.sha256(h).digest()
        out.append(h.hex())
    return "".join(out)[:n]


class HealthTest(ServerTestCase):

    def filled(self, *args):
        """A server whose store holds a few hundred KB of chats, stopped."""
        s = self.new_server(list(args))
        s.push_ok([chat("c%d" % i, "t", [msg("m%d-%d" % (i, j), noise(4000, i * 8 + j))
                                          for j in range(8)])
                   for i in range(20)])
        s.stop()
        self.assertFalse(os.path.exists(s.db_path + "-wal") and
                         os.path.getsize(s.db_path + "-wal") > 0, "the WAL was not folded in")
        return s

    def assertUnavailable(self, s, words):
        status, _, doc = s.request("GET", "/health")
        self.assertEqual(status, 503, doc)
        self.assertErrorBody(doc, "store_unavailable")
        self.assertIn(words, doc["error"])

    def test_healthy_store_is_200_and_takes_writes(self):
        status, _, doc = self.server.request("GET", "/health")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["status"], "healthy")
        self.server.push_ok([chat("c1", "t")])

    def test_corrupt_pages_found_at_start(self):
        s = self.filled()
        corrupt_second_half(s.db_path)
        s.start()
        self.assertUnavailable(s, "corrupt")
        self.assertIn("the store is not usable: the database file is corrupt", s.stderr_text())

    def test_corrupt_pages_found_by_a_request_when_the_start_check_is_off(self):
        s = self.filled("--quick-check-max", "0")
        corrupt_second_half(s.db_path)
        s.start()
        # Not checked at start: nothing known yet...
        self.assertEqual(s.request("GET", "/health")[0], 200)
        # ...until a request reads a corrupt page.
        status, _, _ = s.request("GET", "/fetchChats")
        self.assertEqual(status, 500)
        deadline = time.monotonic() + 3   # the health answer is cached up to a second
        while s.request("GET", "/health")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertUnavailable(s, "corrupt")

    def test_a_store_over_the_check_size_is_not_checked_at_start(self):
        s = self.filled("--quick-check-max", "16K")
        corrupt_second_half(s.db_path)
        s.start()
        self.assertEqual(s.request("GET", "/health")[0], 200)

    def test_read_only_file(self):
        # Root writes whatever the mode bits say: the server then runs as
        # nobody, for whom a 0444 file is read-only.
        s = self.filled()
        prefix = []
        if os.geteuid() == 0:
            prefix = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"]
            os.chmod(s.tmpdir, 0o777)
            for name in os.listdir(s.tmpdir):
                os.chmod(os.path.join(s.tmpdir, name), 0o666)
        os.chmod(s.db_path, 0o444)
        ro = Server(["--quick-check-max", "0"], tmpdir=s.tmpdir, command_prefix=prefix)
        self._servers.append(ro)
        self.addCleanup(self._finish, ro)
        ro.start()
        # The oracle: writes fail on this store...
        status, _, _ = ro.request("POST", "/pushChats", body={"chats": [chat("new", "t")]})
        self.assertEqual(status, 500)
        # ...and /health says so, with the reason.
        self.assertUnavailable(ro, "read-only")


if __name__ == "__main__":
    import unittest
    unittest.main()
