"""The client's serial parts of a first upload (docs/client.md, "A push of several
batches" and "The local store on disk"), judged from outside the client:

- the pages the acknowledged log freed go back to the file system while the server
  prepares the last request's pull, not after it: the proxy holds that request until
  SQLite itself (another connection's freelist_count) says they are back, and the
  client must not need the answer for that; after the sync the file is smaller and
  intact."""
import base64
import gzip
import json
import os
import random
import sqlite3
import unittest

from clientkit import ClientTestCase, assert_converged, v2_bodies

# no retry: a request held until its timeout must fail the test, not be sent again
NO_RETRY = ["--retries", "1", "--timeout", "120"]
CHATS = 300


def body_json(req):
    body = req["body"]
    if req["headers"].get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


def free_pages(path):
    """(page_count, freelist_count) as SQLite reads the file now (a new connection:
    the newest committed state)."""
    db = sqlite3.connect(path)  # read only: two pragmas
    try:
        return (db.execute("PRAGMA page_count").fetchone()[0],
                db.execute("PRAGMA freelist_count").fetchone()[0])
    finally:
        db.close()


class FirstUpload(ClientTestCase):
    def setUp(self):
        super().setUp()
        self.srv = self.server()
        self.proxy_a = self.proxy(self.srv)
        self.a, self.b = self.device("A", self.proxy_a), self.device("B", self.srv)
        # incompressible messages: the log (one change a chat) is several 4 MiB
        # batches, and the pages it frees after the upload are many
        rnd = random.Random(15)
        data = [{"id": "big-%04d" % i, "title": "Big %d" % i,
                 "createdAt": "2024-01-15T10:00:00.000Z",
                 "messages": [{"id": "big-%04d-m%d" % (i, j), "role": "user",
                               "content": base64.b64encode(rnd.randbytes(7000)).decode(),
                               "timestamp": "2024-01-15T10:0%d:00.000Z" % j}
                              for j in range(3)]}
                for i in range(CHATS)]
        path = os.path.join(self.dir, "big.json")
        with open(path, "w") as f:
            json.dump(data, f)
        self.a.run("import", path)
        self.assertEqual(self.a.pending(), CHATS)

    def test_pages_given_back_while_the_pull_is_prepared(self):
        pages_before, _ = free_pages(self.a.store)

        def back():
            pages, free = free_pages(self.a.store)
            return pages < pages_before and free < 256

        # the last request (it pulls: limit > 1) is answered only once the
        # log's pages are back: a client that gives them back after the
        # answer never sees it answered, and fails after its timeout
        rule = self.proxy_a.add("/v2/sync", when=lambda req: body_json(req)["limit"] > 1,
                                hold=back)
        st = self.a.sync(*NO_RETRY).json()
        self.assertTrue(rule.held, "the freed pages were not given back during the pull")
        self.assertEqual(st["sent"]["changes"], CHATS)
        bodies = v2_bodies(self.proxy_a)
        self.assertGreater(len(bodies), 3)  # several batches: the log freed many pages
        self.assertGreater(bodies[-1]["limit"], 1)
        self.assertEqual(self.a.pending(), 0)
        self.assertEqual(self.a.integrity(), "ok")
        pages_after, free_after = free_pages(self.a.store)
        self.assertLess(pages_after, pages_before * 3 // 4)
        self.assertLess(free_after, 256)
        self.b.sync()
        self.assertEqual(len(assert_converged(self, self.a, self.b)), CHATS)


if __name__ == "__main__":
    unittest.main()
