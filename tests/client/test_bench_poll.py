"""psbench_poll (bench/src/poll_devices.c): the in-process polling devices
of `make bench`'s PouchDB column (bench/pouch_column.py reads its JSON line).

Oracles independent of the program: its devices really sync through the
server (a chat another device created after they last synced is in each
device's store afterwards, read back with the CLI's export), and a store
that does not exist is refused rather than polled as a new empty device.
"""
import json
import os
import subprocess
import unittest

from clientkit import ClientTestCase

PSBENCH_POLL = os.environ.get("PSBENCH_POLL", "")


class InProcessPolling(ClientTestCase):
    def poll(self, url, seconds, *stores):
        return subprocess.run([PSBENCH_POLL, "--url", url, "--seconds", str(seconds)] + list(stores),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)

    def test_every_device_pulls_through_its_own_store(self):
        srv = self.server()
        a = self.device("a", srv)
        devices = [self.device("poll%d" % i, srv) for i in range(3)]
        a.new_chat("before")
        a.sync()
        for d in devices:
            d.sync()
        cid = a.new_chat("made while they were away")
        a.sync()
        r = self.poll(srv.url, 0.5, *(d.store for d in devices))
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout.decode().strip().splitlines()[-1])
        self.assertEqual(doc["devices"], 3)
        self.assertGreaterEqual(doc["syncs"], 3, doc)
        self.assertEqual(doc["failed"], 0, doc)
        self.assertLessEqual(doc["p50"], doc["p99"], doc)
        for d in devices:
            self.assertIn(cid, d.chats(), d.name)

    def test_a_missing_store_is_refused(self):
        srv = self.server()
        missing = os.path.join(self.dir, "never-made.db")
        r = self.poll(srv.url, 0.2, missing)
        self.assertEqual(r.returncode, 2, r)
        self.assertFalse(os.path.exists(missing))
        self.assertIn(b"never-made.db", r.stderr)


if __name__ == "__main__":
    unittest.main()
