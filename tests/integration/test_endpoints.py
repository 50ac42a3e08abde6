"""The seed-compatible endpoints: shapes of requests and answers, CORS."""
import subprocess
import unittest

import harness

from harness import (ServerTestCase, by_id, chat, message_ids, msg, now_ms, parse_iso_ms,
                     POLYSYNCD)

T0 = "2024-01-15T10:00:00.000Z"
T1 = "2024-01-15T10:30:00.000Z"


class HealthTest(ServerTestCase):

    def test_health_fresh_server(self):
        status, headers, doc = self.server.request("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(doc["status"], "healthy")
        self.assertEqual(doc["chatsCount"], 0)
        self.assertIsNone(doc["lastSync"])
        self.assertIsInstance(doc["uptime"], (int, float))
        self.assertGreaterEqual(doc["uptime"], 0)
        version = subprocess.run([POLYSYNCD, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.split()[-1]
        self.assertEqual(doc["version"], version)
        self.assertEqual(doc["store"], harness.BACKEND)  # PS_TEST_DB
        self.assertIn("application/json", headers.get("Content-Type", ""))

    def test_health_counts_live_chats_and_reports_last_sync(self):
        before = now_ms()
        self.server.sync_ok({"chats": [chat("h1", last_modified=T0), chat("h2", last_modified=T0)]})
        after = now_ms()
        doc = self.server.health()
        self.assertEqual(doc["chatsCount"], 2)
        self.assertIsInstance(doc["lastSync"], str)
        last = parse_iso_ms(doc["lastSync"])
        self.assertGreaterEqual(last, before - 1000)
        self.assertLessEqual(last, after + 1000)
        self.server.delete_chat("h1")
        self.assertEqual(self.server.health()["chatsCount"], 1)


class PushFetchTest(ServerTestCase):

    def test_fetch_empty(self):
        self.assertEqual(self.server.fetch(), [])

    def test_push_answers_ok_only(self):
        status, _, doc = self.server.request(
            "POST", "/pushChats", body={"chats": [chat("p1", last_modified=T0)]})
        self.assertEqual(status, 200)
        self.assertEqual(doc, {"ok": True})

    def test_push_then_fetch_returns_all_live_chats(self):
        c1 = chat("p1", "First", [msg("m1", timestamp=T0), msg("m2", role="assistant", timestamp=T1)],
                  last_modified=T1, createdAt=T0, updatedAt=T1, model="gpt-4",
                  provider="openai", currentModel="gpt-4", isArchived=False)
        c2 = chat("p2", "Second", [], last_modified=T0)
        self.server.push_ok([c1, c2])
        got = self.server.fetch()
        self.assertIsInstance(got, list)
        got = by_id(got)
        self.assertEqual(set(got), {"p1", "p2"})
        for sent in (c1, c2):
            g = got[sent["id"]]
            for k, v in sent.items():
                if k in ("createdAt", "updatedAt", "lastModified"):
                    self.assertEqual(parse_iso_ms(g[k]), parse_iso_ms(v), k)
                else:
                    self.assertEqual(g[k], v, k)
            self.assertLamport(g.get("updatedAtLamport"))

    def test_push_merges_does_not_replace(self):
        self.server.push_ok([chat("p1", "T", [msg("a", timestamp=T0)], last_modified=T0)])
        self.server.push_ok([chat("p1", "T", [msg("b", timestamp=T1)], last_modified=T1)])
        self.assertEqual(message_ids(by_id(self.server.fetch())["p1"]), ["a", "b"])


class SyncTest(ServerTestCase):

    def test_sync_answer_shape(self):
        status, headers, doc = self.server.sync({"chats": []})
        self.assertEqual(status, 200)
        self.assertIn("application/json", headers.get("Content-Type", ""))
        self.assertEqual(doc["missing"], [])
        self.assertEqual(doc["deletions"], [])
        self.assertIsInstance(doc["serverClock"], int)

    def test_missing_lists_server_chats_the_client_did_not_send(self):
        self.server.push_ok([chat("s1", "one", last_modified=T0),
                             chat("s2", "two", last_modified=T0)])
        doc = self.server.sync_ok({"deviceId": "devB", "chats": [chat("s3", "three", last_modified=T0)]})
        missing = by_id(doc["missing"])
        self.assertEqual(set(missing), {"s1", "s2"})
        self.assertEqual(missing["s1"]["title"], "one")
        for c in doc["missing"]:
            self.assertLamport(c.get("updatedAtLamport"))
        self.assertEqual(set(by_id(self.server.fetch())), {"s1", "s2", "s3"})

    def test_unchanged_chat_not_returned(self):
        c = chat("s1", "same", [msg("m1", timestamp=T0)], last_modified=T0)
        self.server.sync_ok({"deviceId": "devA", "chats": [c]})
        # The same chat again, as sent and as fetched: nothing to give back.
        self.assertEqual(self.server.sync_ok({"deviceId": "devA", "chats": [c]})["missing"], [])
        fetched = self.server.fetch()
        self.assertEqual(self.server.sync_ok({"deviceId": "devA", "chats": fetched})["missing"], [])

    def test_changed_chat_returned_with_tick_above_every_client_counter(self):
        self.server.push_ok([chat("s1", "t", [msg("m1", timestamp=T0), msg("m2", timestamp=T1)],
                                  last_modified=T1, updatedAtLamport=[3, "devA"])])
        doc = self.server.sync_ok({
            "deviceId": "devB",
            "clientClock": 50,
            "chats": [chat("s1", "t", [msg("m1", timestamp=T0)], last_modified=T0,
                           updatedAtLamport=[70, "devB"]),
                      chat("s9", "other", last_modified=T0, updatedAtLamport=[60, "devB"])],
            "deletions": [{"id": "gone1", "lamport": [90, "devB"]}],
            "deletionRecords": [{"id": "gone2", "deletedAtLamport": [80, "devB"]}],
        })
        missing = by_id(doc["missing"])
        self.assertIn("s1", missing, "the merge added m2, so the client must get s1 back")
        self.assertNotIn("s9", missing)
        self.assertEqual(message_ids(missing["s1"]), ["m1", "m2"])
        lam = missing["s1"].get("updatedAtLamport")
        self.assertLamport(lam)
        self.assertGreater(lam[0], 90, "a changed chat must carry a counter above every "
                                       "counter of the request (clientClock 50, chats 70/60, "
                                       "deletions 90/80)")
        self.assertGreaterEqual(doc["serverClock"], 90)

    def test_serverclock_observes_client_clock(self):
        doc = self.server.sync_ok({"deviceId": "d", "clientClock": 1234, "chats": []})
        self.assertGreaterEqual(doc["serverClock"], 1234)
        # And it never goes back.
        doc2 = self.server.sync_ok({"deviceId": "d", "clientClock": 1, "chats": []})
        self.assertGreaterEqual(doc2["serverClock"], doc["serverClock"])


class DeleteTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.server.push_ok([chat(i, "c " + i, last_modified=T0) for i in ("d1", "d2", "d3", "d4")])

    def test_delete_chat(self):
        status, _, doc = self.server.request("POST", "/deleteChat", body={"chatId": "d1"})
        self.assertEqual(status, 200)
        self.assertEqual(doc, {"ok": True, "deleted": True})
        self.assertEqual(self.server.delete_chat("d1"), {"ok": True, "deleted": False})
        self.assertEqual(self.server.delete_chat("never-existed"), {"ok": True, "deleted": False})
        self.assertEqual(set(by_id(self.server.fetch())), {"d2", "d3", "d4"})

    def test_delete_chats(self):
        status, _, doc = self.server.request("POST", "/deleteChats",
                                             body={"chatIds": ["d1", "d2", "nope"]})
        self.assertEqual(status, 200)
        self.assertEqual(doc, {"ok": True, "deletedCount": 2})
        self.assertEqual(self.server.delete_chats(["d1", "d3"]), {"ok": True, "deletedCount": 1})
        self.assertEqual(set(by_id(self.server.fetch())), {"d4"})

    def test_every_tombstone_listed_with_both_clock_shapes(self):
        self.server.delete_chat("d1")
        self.server.delete_chats(["d2"])
        self.server.sync_ok({"deviceId": "devA", "chats": [], "deleted": ["d3"]})
        self.server.sync_ok({"deviceId": "devA", "chats": [],
                             "deletions": [{"id": "d4", "lamport": [7, "devA"]}],
                             "deletionRecords": [{"id": "x5", "deletedAtLamport": [8, "devA"]}]})
        doc = self.server.sync_ok({"deviceId": "devB", "chats": []})
        self.assertEqual(doc["missing"], [])
        dels = by_id(doc["deletions"])
        self.assertEqual(set(dels), {"d1", "d2", "d3", "d4", "x5"})
        for d in doc["deletions"]:
            self.assertLamport(d.get("lamport"), "lamport")
            self.assertLamport(d.get("deletedAtLamport"), "deletedAtLamport")
        self.assertEqual(dels["d4"]["lamport"], [7, "devA"])
        self.assertEqual(dels["x5"]["deletedAtLamport"], [8, "devA"])
        self.assertEqual(self.server.fetch(), [])


class CorsTest(ServerTestCase):

    def test_options_preflight_any_path(self):
        for path in ("/sync", "/pushChats", "/fetchChats", "/health", "/no/such/path"):
            status, headers, _ = self.server.request(
                "OPTIONS", path, headers={"Origin": "http://example.test",
                                          "Access-Control-Request-Method": "POST"})
            self.assertEqual(status, 204, path)
            self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*", path)
            methods = headers.get("Access-Control-Allow-Methods", "")
            self.assertIn("POST", methods, path)
            self.assertIn("GET", methods, path)

    def test_every_response_allows_any_origin(self):
        s = self.server
        answers = [
            s.request("GET", "/health"),
            s.request("GET", "/fetchChats"),
            s.request("POST", "/sync", body={"chats": []}),
            s.request("POST", "/pushChats", body={"chats": []}),
            s.request("POST", "/deleteChat", body={"chatId": "x"}),
            s.request("POST", "/deleteChats", body={"chatIds": []}),
            s.request("GET", "/nope"),                                   # 404
            s.request("GET", "/sync"),                                   # 405
            s.request("POST", "/sync", raw=b"{"),                        # 400
            s.request("POST", "/sync", raw=b"{}", headers={"Content-Type": "text/plain"}),  # 415
        ]
        for status, headers, _ in answers:
            self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*", status)
        self.assertEqual([a[0] for a in answers], [200] * 6 + [404, 405, 400, 415])


if __name__ == "__main__":
    unittest.main()
