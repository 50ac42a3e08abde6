"""The tombstone purge runs on the server's own timer, never on a request
(docs/operations.md, --purge-interval; issue #12).

The oracle is the store itself, read behind the server's back: a tombstone
aged past --tombstone-retention must disappear from the chats table while no
request reaches the server at all, within a few purge intervals; then
/metrics counts it in polysync_tombstones_purged_total. A purge that only
ran on a request's thread (as it once did) would leave the row there.
"""
import re
import time
import unittest

import harness

from harness import ServerTestCase, chat, msg

PURGE_INTERVAL_S = 1
WAIT_S = 15          # bounded: many intervals, even under ASan on a busy machine
T0 = "2025-02-01T10:00:00.000Z"
DAY_MS = 86400 * 1000


class PurgeTimerTest(ServerTestCase):

    SERVER_ARGS = ("--purge-interval", str(PURGE_INTERVAL_S), "--tombstone-retention", "1")

    def tombstones(self, cid):
        return harness.store_sql(self.server.db_path,
                                 "SELECT count(*) FROM chats WHERE id = ? AND NOT live", (cid,))[0][0]

    def test_an_expired_tombstone_is_forgotten_with_no_request_arriving(self):
        s = self.server
        s.push_ok([chat("gone", "gone", [msg("g1", timestamp=T0)], last_modified=T0),
                   chat("kept", "kept", [msg("k1", timestamp=T0)], last_modified=T0)])
        s.delete_chat("gone")
        self.assertEqual(self.tombstones("gone"), 1, "the deletion left a tombstone")
        # fresh: several purges go by and keep it (it is within the retention)
        time.sleep(2.5 * PURGE_INTERVAL_S)
        self.assertEqual(self.tombstones("gone"), 1, "a tombstone within the retention was purged")

        # age it past the retention; from here on nothing is sent to the server
        harness.store_sql(s.db_path, "UPDATE chats SET deleted_at_ms = ? WHERE id = ?",
                          (harness.now_ms() - 2 * DAY_MS, "gone"))
        deadline = time.monotonic() + WAIT_S
        while self.tombstones("gone") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.tombstones("gone"), 0,
                         "no purge within %d s while no request arrived" % WAIT_S)

        # the live chat is untouched, and the purge was counted
        self.assertEqual([c["id"] for c in s.fetch()], ["kept"])
        text = self.metrics_text()
        m = re.search(r"^polysync_tombstones_purged_total (\d+)$", text, re.M)
        self.assertTrue(m, text)
        self.assertEqual(int(m.group(1)), 1)

    def metrics_text(self):
        conn = self.server.http_connection()
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
