"""Bad input in a re-sync that the server mostly skips (docs/performance.md,
"skip: ..."): the chats a device re-sends as it last synced them are never
pre-checked, the same data in other bytes is skipped by its content hash,
and every other chat is pre-checked only when it is used.

Oracle: the guarantee of docs/protocol.md ("bad input gets a clear JSON
error and changes nothing") and RFC 8259, as for a first sync: one bad chat
among chats the server would skip still refuses the whole body with the
error a check of the whole body gives (the pre-check's message names the
body's byte, worked out here from the bytes sent), and the store is left
as it was. A body with two problems gets the first one in the body.
"""
import json
import unittest

from harness import ServerTestCase, chat, msg

T0 = "2025-03-01T10:00:00.000Z"
DEVICE = "dev-skip"


def history(n=6):
    return [chat("c%d" % i, "title %d" % i,
                 [msg("c%d-m%d" % (i, j), content="caf\u00e9 %d \"q\" %d" % (i, j), timestamp=T0)
                  for j in range(3)], last_modified=T0)
            for i in range(n)]


def body_bytes(chats, device=DEVICE, sort_keys=False, separators=(",", ":")):
    return json.dumps({"deviceId": device, "chats": chats}, sort_keys=sort_keys,
                      separators=separators, ensure_ascii=False).encode("utf-8")


class SkippedResyncBadInputTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.chats = history()
        status, _, doc = self.server.request("POST", "/sync", raw=body_bytes(self.chats))
        self.assertEqual(status, 200, doc)
        # the same bytes again: every chat is now one the device sent as it is
        status, _, doc = self.server.request("POST", "/sync", raw=body_bytes(self.chats))
        self.assertEqual(status, 200, doc)

    def refused(self, raw, code):
        before = self.server.fetch()
        state = self.server.store_state()
        status, _, doc = self.server.request("POST", "/sync", raw=raw)
        self.assertEqual(status, 400, doc)
        self.assertErrorBody(doc, code)
        self.assertStoreUnchanged(state)
        self.assertEqual(self.server.fetch(), before)
        return doc

    def with_bad_chat(self, raw, index, good, bad):
        """raw with `good` bytes in chat `index` (from its first message on)
        replaced by `bad`, once; and where they were."""
        start = raw.index(('"c%d-m0"' % index).encode())
        at = raw.index(good, start)
        return raw[:at] + bad + raw[at + len(good):], at

    def test_one_bad_chat_among_byte_identical_ones(self):
        raw = body_bytes(self.chats)
        key = b'"timestamp":'
        # (the bad value, its code, where in it the pre-check stops)
        for bad, code, stop in ((b'01', "malformed_json", 0),
                                (b'"\xc0\xaf"', "invalid_utf8", 1),
                                (b'"a\x01b"', "malformed_json", 2)):
            with self.subTest(bad=bad):
                body, at = self.with_bad_chat(raw, 4, key + ('"%s"' % T0).encode(), key + bad)
                doc = self.refused(body, code)
                self.assertIn("at byte %d" % (at + len(key) + stop), doc["error"], doc)

    def test_one_bad_chat_among_the_same_data_in_other_bytes(self):
        raw = body_bytes(self.chats, sort_keys=True, separators=(", ", ": "))
        for good, bad in ((b'"role": "user"', b'"role": nul'),  # a word that is not one
                          (b'"role": "user"', b'"role": "user",'),  # a trailing comma
                          (b'{"content"', b'"content"')):  # a '{' missing
            with self.subTest(bad=bad):
                body, _ = self.with_bad_chat(raw, 2, good, bad)
                self.refused(body, "malformed_json")

    def test_a_bad_chat_comes_before_a_bad_envelope(self):
        key = b'"timestamp":'
        raw = body_bytes(self.chats).replace(('"deviceId":"%s"' % DEVICE).encode(),
                                             b'"deviceId":5', 1)
        body, at = self.with_bad_chat(raw, 1, key + ('"%s"' % T0).encode(), key + b'01')
        doc = self.refused(body, "malformed_json")
        self.assertIn("at byte %d" % (at + len(key)), doc["error"], doc)

    def test_the_skipped_resync_still_answers_200(self):
        """The same bytes, and the same data in other bytes, are accepted."""
        for raw in (body_bytes(self.chats),
                    body_bytes(self.chats, sort_keys=True, separators=(", ", ": ")),
                    body_bytes(self.chats)):
            status, _, doc = self.server.request("POST", "/sync", raw=raw)
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc["missing"], [], doc)


if __name__ == "__main__":
    unittest.main()
