"""The seed document (sync-protocol.md): its example payload and client flow."""
import copy
import unittest

from harness import ServerTestCase, by_id, is_lamport, parse_iso_ms

# "Sync Request Payload" of sync-protocol.md, with role "user" | "assistant"
# made concrete.
SEED_PAYLOAD = {
    "chats": [
        {
            "id": "uuid-string",
            "title": "Chat Title",
            "messages": [
                {
                    "id": "msg-uuid",
                    "role": "user",
                    "content": "message text",
                    "timestamp": "2024-01-15T10:30:00.000Z"
                }
            ],
            "createdAt": "2024-01-15T10:00:00.000Z",
            "updatedAt": "2024-01-15T10:30:00.000Z",
            "lastModified": "2024-01-15T10:30:00.000Z",
            "model": "gpt-4",
            "provider": "openai",
            "currentModel": "gpt-4",
            "isArchived": False
        }
    ]
}


class SeedPayloadTest(ServerTestCase):

    def test_example_payload_answer_shape(self):
        status, headers, doc = self.server.sync(copy.deepcopy(SEED_PAYLOAD))
        self.assertEqual(status, 200)
        self.assertIn("application/json", headers.get("Content-Type", ""))
        self.assertIsInstance(doc, dict)
        self.assertIsInstance(doc.get("missing"), list)
        # The only chat was just sent and nothing changed it.
        self.assertEqual(doc["missing"], [])

    def test_second_device_receives_the_chat(self):
        self.server.sync_ok(copy.deepcopy(SEED_PAYLOAD))
        # The seed client: {chats: localChats}, nothing else.
        doc = self.server.sync_ok({"chats": []})
        self.assertEqual(len(doc["missing"]), 1)
        got = doc["missing"][0]
        sent = SEED_PAYLOAD["chats"][0]
        for k, v in sent.items():
            if k in ("createdAt", "updatedAt", "lastModified"):
                self.assertEqual(parse_iso_ms(got[k]), parse_iso_ms(v), k)
            else:
                self.assertEqual(got[k], v, k)
        self.assertTrue(is_lamport(got.get("updatedAtLamport")), got.get("updatedAtLamport"))

    def test_second_device_converges(self):
        self.server.sync_ok(copy.deepcopy(SEED_PAYLOAD))
        first = self.server.sync_ok({"chats": []})["missing"]
        # Device 2 now sends what it stored: nothing more to receive.
        self.assertEqual(self.server.sync_ok({"chats": first})["missing"], [])

    def test_seed_deletion_tracking_extension(self):
        self.server.sync_ok(copy.deepcopy(SEED_PAYLOAD))
        doc = self.server.sync_ok({"chats": [], "deleted": ["uuid-string"]})
        self.assertEqual(doc["missing"], [])
        self.assertIn("uuid-string", by_id(doc["deletions"]))
        self.assertEqual(self.server.sync_ok({"chats": []})["missing"], [])
        self.assertEqual(self.server.fetch(), [])

    def test_seed_health_fields(self):
        self.server.sync_ok(copy.deepcopy(SEED_PAYLOAD))
        doc = self.server.health()
        for k in ("status", "chatsCount", "lastSync", "uptime"):
            self.assertIn(k, doc)
        self.assertEqual(doc["status"], "healthy")
        self.assertEqual(doc["chatsCount"], 1)

    def test_seed_push_and_fetch(self):
        status, _, doc = self.server.request("POST", "/pushChats",
                                             body={"chats": copy.deepcopy(SEED_PAYLOAD["chats"])})
        self.assertEqual((status, doc), (200, {"ok": True}))
        got = self.server.fetch()
        self.assertEqual([c["id"] for c in got], ["uuid-string"])
        self.assertEqual(got[0]["messages"], SEED_PAYLOAD["chats"][0]["messages"])


if __name__ == "__main__":
    unittest.main()
