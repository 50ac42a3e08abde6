"""Bad input: the right status and JSON error, nothing changed, still serving."""
import gzip
import http.client
import json
import os
import subprocess
import tempfile
import unittest

from harness import (ServerTestCase, by_id, chat, msg, read_http_response, json_or_none)

T0 = "2024-01-15T10:00:00.000Z"
MIB = 1024 * 1024


class RejectTestCase(ServerTestCase):
    """Every server starts with one chat, so "nothing changed" is visible."""

    def setUp(self):
        super().setUp()
        self.server.push_ok([chat("seed-chat", "kept", [msg("m1", timestamp=T0)], last_modified=T0)])

    def assertRejected(self, status, code, method="POST", path="/sync", body=None, raw=None,
                       headers=None, chat_index=None, field=None):
        before = self.server.fetch()
        state = self.server.store_state()
        got_status, got_headers, doc = self.server.request(method, path, body=body, raw=raw,
                                                           headers=headers)
        self.assertStoreUnchanged(state)
        self.assertEqual(got_status, status, "answer: %r" % self.server.last_body[:300])
        self.assertErrorBody(doc, code)
        if chat_index is not None:
            self.assertIs(type(doc.get("chatIndex")), int, doc)
            self.assertEqual(doc["chatIndex"], chat_index, doc)
        if field is not None:
            self.assertEqual(doc.get("field"), field, doc)
        self.assertEqual(got_headers.get("Access-Control-Allow-Origin"), "*")
        self.assertEqual(self.server.fetch(), before, "a rejected request changed the chats")
        self.assertEqual(self.server.request("GET", "/health")[0], 200)
        return got_headers, doc


class MalformedTest(RejectTestCase):

    def test_malformed_json(self):
        for raw in (b'{"chats":[', b"{chats:[]}", b"", b"   ", b'{"chats":[],}', b"nul",
                    b'{"chats":[01]}', b'{"chats":[]}\x00'):
            with self.subTest(raw=raw):
                self.assertRejected(400, "malformed_json", raw=raw)

    def test_single_quoted_strings(self):
        for raw in (b"{'chats':[]}", b"""{"chats":[{'id':'sq','title':'x'}]}"""):
            with self.subTest(raw=raw):
                self.assertRejected(400, "malformed_json", path="/pushChats", raw=raw)

    def test_raw_control_character_in_string(self):
        # RFC 8259: U+0000..U+001F must be escaped inside strings.
        for raw in (b'{"chats":[{"id":"c","title":"a\x01b"}]}',
                    b'{"chats":[{"id":"c","title":"line\nbreak"}]}',
                    b'{"chats":[{"id":"c","title":"tab\there"}]}'):
            with self.subTest(raw=raw):
                self.assertRejected(400, "malformed_json", path="/pushChats", raw=raw)

    def test_trailing_garbage(self):
        for raw in (b'{"chats":[]} x', b'{"chats":[]}{}', b'{"chats":[]}]'):
            with self.subTest(raw=raw):
                self.assertRejected(400, "malformed_json", raw=raw)

    def test_trailing_whitespace_is_fine(self):
        self.assertEqual(self.server.request("POST", "/sync", raw=b'{"chats":[]}\r\n \n')[0], 200)

    def test_malformed_on_every_json_endpoint(self):
        for path in ("/pushChats", "/deleteChat", "/deleteChats"):
            with self.subTest(path=path):
                self.assertRejected(400, "malformed_json", path=path, raw=b"{")

    def test_invalid_utf8_in_string(self):
        for raw in (b'{"chats":[{"id":"a\xff","title":"x"}]}',
                    b'{"chats":[{"id":"a","title":"bad \xc3\x28 here"}]}',
                    b'{"chats":[{"id":"a","title":"lone \x80 continuation"}]}',
                    b'{"chats":[{"id":"a","title":"cut \xe4\xb8"}]}'):
            with self.subTest(raw=raw):
                self.assertRejected(400, "invalid_utf8", raw=raw)

    def test_overlong_surrogate_and_out_of_range_utf8(self):
        # Not UTF-8 either (RFC 3629): overlong forms, encoded UTF-16
        # surrogates, code points above U+10FFFF. Stored, they would make
        # every later answer undecodable for strict clients.
        for bad in (b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
                    b"\xf4\x90\x80\x80"):
            with self.subTest(bytes=bad):
                raw = b'{"chats":[{"id":"u8","title":"x' + bad + b'y"}]}'
                self.assertRejected(400, "invalid_utf8", path="/pushChats", raw=raw)

    def test_valid_utf8_accepted(self):
        raw = '{"chats":[{"id":"u","title":"h\u00e9 \u4e16 \U0001F600"}]}'.encode("utf-8")
        self.assertEqual(self.server.request("POST", "/pushChats", raw=raw)[0], 200)
        self.assertEqual(by_id(self.server.fetch())["u"]["title"], "h\u00e9 \u4e16 \U0001F600")

    def test_too_deep(self):
        deep = "[" * 100 + "]" * 100
        raw = ('{"chats":[{"id":"deep","title":"x","extra":%s}]}' % deep).encode()
        self.assertRejected(400, "too_deep", raw=raw)
        self.assertRejected(400, "too_deep", raw=("[" * 5000 + "]" * 5000).encode())

    def test_shallow_nesting_accepted(self):
        nested = "[" * 10 + "1" + "]" * 10
        raw = ('{"chats":[{"id":"shallow","title":"x","extra":%s}]}' % nested).encode()
        self.assertEqual(self.server.request("POST", "/pushChats", raw=raw)[0], 200)
        self.assertEqual(by_id(self.server.fetch())["shallow"]["extra"], json.loads(nested))


class PayloadShapeTest(RejectTestCase):

    def test_body_not_an_object(self):
        for body in ([], "chats", 42, None, True, [{"chats": []}]):
            with self.subTest(body=body):
                self.assertRejected(400, "invalid_payload", raw=json.dumps(body).encode())
                self.assertRejected(400, "invalid_payload", path="/pushChats",
                                    raw=json.dumps(body).encode())

    def test_chats_not_an_array(self):
        for body in ({"chats": {}}, {"chats": "x"}, {"chats": None}, {"chats": 1}, {}):
            with self.subTest(body=body):
                self.assertRejected(400, "invalid_payload", body=body, field="chats")
                self.assertRejected(400, "invalid_payload", path="/pushChats", body=body,
                                    field="chats")

    def test_chat_without_string_id(self):
        for bad in ({"title": "no id"}, {"id": 5}, {"id": None}, {"id": ""}, {"id": ["x"]}):
            with self.subTest(chat=bad):
                self.assertRejected(400, "invalid_payload",
                                    body={"chats": [chat("ok-1", last_modified=T0), bad]},
                                    chat_index=1, field="id")

    def test_chat_not_an_object(self):
        self.assertRejected(400, "invalid_payload", body={"chats": [chat("ok", last_modified=T0), "x"]},
                            chat_index=1)

    def test_id_length_limit_in_bytes(self):
        self.assertRejected(400, "invalid_payload", body={"chats": [chat("a" * 257)]},
                            chat_index=0, field="id")
        # 128 two-byte characters + 1 = 257 bytes, only 129 characters.
        self.assertRejected(400, "invalid_payload", body={"chats": [chat("\u00e9" * 128 + "a")]},
                            chat_index=0, field="id")
        self.server.push_ok([chat("b" * 256, last_modified=T0), chat("\u00e9" * 128, last_modified=T0)])
        self.assertIn("b" * 256, by_id(self.server.fetch()))
        self.assertIn("\u00e9" * 128, by_id(self.server.fetch()))

    def test_messages_not_an_array(self):
        for bad in ({}, "m", 3, None):
            with self.subTest(messages=bad):
                self.assertRejected(400, "invalid_payload",
                                    body={"chats": [{"id": "c", "title": "t", "messages": bad}]},
                                    chat_index=0, field="messages")

    def test_message_missing_required_fields(self):
        good = [msg("m0"), msg("m1")]
        for key in ("id", "role", "content"):
            with self.subTest(missing=key):
                bad = msg("m2")
                del bad[key]
                body = {"chats": [chat("ok", last_modified=T0),
                                  chat("c", "t", good + [bad], last_modified=T0)]}
                self.assertRejected(400, "invalid_payload", body=body, chat_index=1,
                                    field="messages[2].%s" % key)

    def test_message_not_an_object(self):
        body = {"chats": [chat("c", "t", [msg("m0"), "not a message"], last_modified=T0)]}
        self.assertRejected(400, "invalid_payload", body=body, chat_index=0, field="messages[1]")

    def test_bad_lamport_and_time_fields(self):
        for key, value in (("updatedAtLamport", [1]), ("updatedAtLamport", ["1", "d"]),
                           ("updatedAtLamport", [-1, "d"]), ("updatedAtLamport", 5),
                           ("lastModified", "yesterday"), ("createdAt", "2024-13-45T99:00:00Z")):
            with self.subTest(key=key, value=value):
                c = chat("c", "t", last_modified=T0)
                c[key] = value
                self.assertRejected(400, "invalid_payload",
                                    body={"chats": [chat("ok", last_modified=T0), c]},
                                    chat_index=1, field=key)

    def test_later_invalid_chat_rejects_whole_batch(self):
        body = {"chats": [chat("v1", last_modified=T0), chat("v2", last_modified=T0),
                          chat("seed-chat", "changed", last_modified="2030-01-01T00:00:00Z"),
                          {"id": "bad", "messages": [{"id": "x"}]}]}
        for path in ("/sync", "/pushChats"):
            with self.subTest(path=path):
                self.assertRejected(400, "invalid_payload", path=path, body=body, chat_index=3,
                                    field="messages[0].role")
        ids = set(by_id(self.server.fetch()))
        self.assertEqual(ids, {"seed-chat"})

    def test_invalid_deletions_reject_whole_request(self):
        for extra in ({"deleted": "seed-chat"}, {"deleted": [5]},
                      {"deletions": [{"lamport": [1, "d"]}]},
                      {"deletions": [{"id": "seed-chat", "lamport": "x"}]},
                      {"deletionRecords": [{"id": "seed-chat", "deletedAtLamport": [1]}]}):
            with self.subTest(extra=extra):
                body = {"chats": [chat("v1", last_modified=T0)]}
                body.update(extra)
                self.assertRejected(400, "invalid_payload", body=body)

    def test_bad_delete_requests(self):
        for path, body in (("/deleteChat", {}), ("/deleteChat", {"chatId": 3}),
                           ("/deleteChat", []), ("/deleteChats", {"chatIds": "seed-chat"}),
                           ("/deleteChats", {"chatIds": ["seed-chat", 4]}), ("/deleteChats", {})):
            with self.subTest(path=path, body=body):
                self.assertRejected(400, "invalid_payload", path=path, body=body)


class LamportOverflowTest(RejectTestCase):
    """Counters a signed 64-bit clock cannot go above.

    A chat the merge changed must come back with a counter above every counter
    of the request, or the client keeps its stale copy. When that is
    impossible the request must be refused (400, nothing changed); either
    way the server must not crash or answer a counter that does not dominate.
    """

    def assertCounterHandled(self, payload, highest):
        before = self.server.fetch()
        state = self.server.store_state()
        try:
            status, _, doc = self.server.sync(payload)
        except (ConnectionError, OSError) as e:
            self.fail("the server dropped the connection (crashed?): %r" % e)
        if status == 400:
            self.assertErrorBody(doc, "invalid_payload")
            self.assertStoreUnchanged(state)
            self.assertEqual(self.server.fetch(), before)
        else:
            self.assertEqual(status, 200, self.server.last_body[:300])
            back = by_id(doc["missing"]).get("c")
            self.assertIsNotNone(back, "the client's copy is stale; it must get the merge")
            self.assertGreater(back["updatedAtLamport"][0], highest, back["updatedAtLamport"])
            self.assertGreaterEqual(doc["serverClock"], highest)
        self.assertEqual(self.server.request("GET", "/health")[0], 200)

    def stale(self, **extra):
        c = chat("c", "stale", last_modified="2024-01-01T00:00:00.000Z")
        c.update(extra)
        return c

    def setUp(self):
        super().setUp()
        self.server.push_ok([chat("c", "current", last_modified=T0)])

    def test_client_clock_at_int64_max(self):
        self.assertCounterHandled({"deviceId": "d", "clientClock": 2 ** 63 - 1,
                                   "chats": [self.stale()]}, 2 ** 63 - 1)

    def test_chat_counter_at_int64_max(self):
        self.assertCounterHandled({"deviceId": "d", "chats": [
            self.stale(updatedAtLamport=[2 ** 63 - 1, "d"])]}, 2 ** 63 - 1)

    def test_deletion_counter_at_int64_max(self):
        self.assertCounterHandled({"deviceId": "d", "chats": [self.stale()],
                                   "deletions": [{"id": "other", "lamport": [2 ** 63 - 1, "d"]}]},
                                  2 ** 63 - 1)

    def test_client_clock_beyond_int64(self):
        self.assertCounterHandled({"deviceId": "d", "clientClock": 2 ** 64,
                                   "chats": [self.stale()]}, 2 ** 64)


class KeepAliveTest(RejectTestCase):

    def test_errors_do_not_break_a_persistent_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        self.addCleanup(conn.close)

        def send(method, path, raw=None, ctype="application/json"):
            headers = {"Content-Type": ctype} if ctype else {}
            conn.request(method, path, body=raw, headers=headers)
            resp = conn.getresponse()
            return resp.status, json_or_none(resp.read())

        valid = json.dumps({"chats": [chat("ka", last_modified=T0)]}).encode()
        self.assertEqual(send("POST", "/sync", b"{oops")[0], 400)
        self.assertEqual(send("POST", "/sync", valid, ctype="text/plain")[0], 415)  # body unread
        self.assertEqual(send("GET", "/nope")[0], 404)
        self.assertEqual(send("POST", "/health", b"{}")[0], 405)
        status, doc = send("POST", "/pushChats", valid)
        self.assertEqual((status, doc), (200, {"ok": True}))
        status, doc = send("GET", "/fetchChats")
        self.assertEqual(status, 200)
        self.assertIn("ka", by_id(doc))


class HeadersTest(RejectTestCase):

    def test_content_type_missing_or_wrong(self):
        for path in ("/sync", "/pushChats", "/deleteChat", "/deleteChats"):
            for ctype in (None, "text/plain", "application/x-www-form-urlencoded",
                          "application/jsonx"):
                with self.subTest(path=path, ctype=ctype):
                    self.assertRejected(415, "unsupported_media_type", path=path,
                                        body={"chats": [], "chatId": "seed-chat", "chatIds": ["seed-chat"]},
                                        headers={"Content-Type": ctype})

    def test_content_type_with_charset_accepted(self):
        status, _, _ = self.server.request("POST", "/pushChats", body={"chats": [chat("cs")]},
                                           headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(status, 200)

    def test_unsupported_encoding_refused(self):
        # gzip and identity are accepted (tests/integration/test_gzip.py);
        # any other Content-Encoding is refused before the body is read.
        raw = gzip.compress(json.dumps({"chats": [chat("gz", last_modified=T0)],
                                        "chatId": "seed-chat", "chatIds": ["seed-chat"]}).encode())
        for path in ("/sync", "/pushChats", "/deleteChat", "/deleteChats"):
            for enc in ("br", "deflate", "compress", "x-gzip-but-not"):
                with self.subTest(path=path, encoding=enc):
                    self.assertRejected(415, "unsupported_encoding", path=path, raw=raw,
                                        headers={"Content-Encoding": enc})

    def test_unknown_path(self):
        for method, path in (("GET", "/nope"), ("POST", "/v1/sync"), ("GET", "/"),
                             ("POST", "/sync/extra")):
            with self.subTest(path=path):
                self.assertRejected(404, "not_found", method=method, path=path,
                                    body={"chats": []} if method == "POST" else None)

    def test_wrong_method(self):
        for method, path, allowed in (("GET", "/sync", "POST"), ("POST", "/health", "GET"),
                                      ("PUT", "/pushChats", "POST"), ("DELETE", "/deleteChat", "POST"),
                                      ("POST", "/fetchChats", "GET")):
            with self.subTest(method=method, path=path):
                headers, _ = self.assertRejected(
                    405, "method_not_allowed", method=method, path=path,
                    body={"chats": []} if method in ("POST", "PUT") else None)
                allow = [m.strip() for m in (headers.get("Allow") or "").split(",")]
                self.assertIn(allowed, allow)
                self.assertNotIn(method, allow)


class BodyCapTest(RejectTestCase):
    SERVER_ARGS = ("--max-body", "1M")

    def test_body_under_cap_accepted(self):
        big = chat("big", "x" * (900 * 1024), last_modified=T0)
        self.assertEqual(self.server.request("POST", "/pushChats", body={"chats": [big]})[0], 200)
        self.assertIn("big", by_id(self.server.fetch()))

    def test_content_length_over_cap_refused_before_the_body(self):
        before = self.server.fetch()
        state = self.server.store_state()
        with self.server.connect() as sock:
            sock.sendall(b"POST /sync HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % (MIB + 1))
            # Not a byte of body: the answer must come from the headers alone.
            status, headers, body = read_http_response(sock, timeout=20)
        self.assertEqual(status, 413)
        self.assertErrorBody(json_or_none(body), "body_too_large")
        self.assertEqual(headers.get("access-control-allow-origin"), "*")
        self.assertStoreUnchanged(state)
        self.assertEqual(self.server.fetch(), before)
        self.assertEqual(self.server.request("GET", "/health")[0], 200)

    # A client that sends its whole body before reading (Python's
    # http.client, most HTTP libraries) must get the 413 too, not a broken
    # pipe or a reset: the server answers from the headers, then reads and
    # drops the rest before closing (#15).
    def over_cap_body(self):
        return json.dumps({"chats": [chat("too-big", "q" * (6 * MIB), last_modified=T0)]}).encode()

    def test_refused_body_sent_whole_on_a_raw_socket_gets_413(self):
        before = self.server.fetch()
        body = self.over_cap_body()
        with self.server.connect() as sock:
            sock.sendall(b"POST /pushChats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status, headers, answer = read_http_response(sock, timeout=20)
        self.assertEqual(status, 413)
        self.assertErrorBody(json_or_none(answer), "body_too_large")
        self.assertEqual(self.server.fetch(), before)
        self.assertEqual(self.server.request("GET", "/health")[0], 200)

    def test_refused_body_sent_by_http_client_gets_413(self):
        body = self.over_cap_body()
        for path in ("/pushChats", "/v2/sync"):
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=20)
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                status, answer = resp.status, resp.read()
            finally:
                conn.close()
            self.assertEqual(status, 413, path)
            self.assertErrorBody(json_or_none(answer), "body_too_large")

    def test_refused_body_sent_by_curl_gets_413(self):
        body = self.over_cap_body()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "body.json")
            with open(path, "wb") as f:
                f.write(body)
            # with and without "Expect: 100-continue" (curl waits for the
            # answer before sending only with it)
            for expect in ([], ["-H", "Expect:"]):
                out = subprocess.run(
                    ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
                     "-H", "Content-Type: application/json", "--data-binary", "@" + path]
                    + expect + ["http://127.0.0.1:%d/pushChats" % self.server.port],
                    capture_output=True, text=True, timeout=30, check=False)
                self.assertEqual(out.returncode, 0, "curl %s: %s" % (expect, out.stderr))
                answer, code = out.stdout.rsplit("\n", 1)
                self.assertEqual(code, "413", expect)
                self.assertErrorBody(json_or_none(answer.encode()), "body_too_large")

    def test_huge_content_length_refused(self):
        with self.server.connect() as sock:
            sock.sendall(b"POST /pushChats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: 99999999999999\r\n\r\n")
            status, _, body = read_http_response(sock, timeout=20)
        self.assertEqual(status, 413)
        self.assertErrorBody(json_or_none(body), "body_too_large")
        self.assertEqual(self.server.request("GET", "/health")[0], 200)

    def test_chunked_body_over_cap(self):
        before = self.server.fetch()
        state = self.server.store_state()
        # A valid request of ~1.5 MiB: if the cap were not enforced it would be stored.
        payload = json.dumps({"chats": [chat("chunked-big", "y" * (3 * MIB // 2), last_modified=T0)]}).encode()
        with self.server.connect() as sock:
            sock.sendall(b"POST /pushChats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            try:
                for i in range(0, len(payload), 64 * 1024):
                    part = payload[i:i + 64 * 1024]
                    sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before the end
            status, _, body = read_http_response(sock, timeout=30)
        self.assertEqual(status, 413)
        self.assertErrorBody(json_or_none(body), "body_too_large")
        self.assertStoreUnchanged(state)
        self.assertEqual(self.server.fetch(), before)
        self.assertEqual(self.server.request("GET", "/health")[0], 200)

    def test_chunked_body_under_cap_accepted(self):
        payload = json.dumps({"chats": [chat("chunked-small", "z" * 1000, last_modified=T0)]}).encode()
        with self.server.connect() as sock:
            sock.sendall(b"POST /pushChats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(payload), 100):
                part = payload[i:i + 100]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            sock.sendall(b"0\r\n\r\n")
            status, _, body = read_http_response(sock, timeout=30)
        self.assertEqual(status, 200, body)
        self.assertIn("chunked-small", by_id(self.server.fetch()))


class MaxChatsTest(RejectTestCase):
    SERVER_ARGS = ("--max-chats", "10")

    def test_too_many_chats(self):
        chats = [chat("n%02d" % i, last_modified=T0) for i in range(11)]
        for path in ("/sync", "/pushChats"):
            with self.subTest(path=path):
                self.assertRejected(413, "too_large", path=path, body={"chats": chats})

    def test_too_many_deletions(self):
        ids = ["x%02d" % i for i in range(11)]
        self.assertRejected(413, "too_large", body={"chats": [], "deleted": ids})
        self.assertRejected(413, "too_large", body={"chats": [], "deletions": [{"id": i} for i in ids]})
        self.assertRejected(413, "too_large", path="/deleteChats", body={"chatIds": ids})

    def test_at_the_limit_accepted(self):
        chats = [chat("n%02d" % i, last_modified=T0) for i in range(10)]
        self.server.push_ok(chats)
        self.assertEqual(len(self.server.fetch()), 11)


if __name__ == "__main__":
    unittest.main()
