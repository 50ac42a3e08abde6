"""gzip both ways, and zstd answers (docs/protocol.md, "Compression" and
"Errors").

Requests: any POST body may come with Content-Encoding: gzip (v2 and the
legacy endpoints); --max-body applies to the decompressed size; a body that
does not decompress is 400 bad_gzip. Answers: with Accept-Encoding: gzip,
answers over 1 KiB come gzipped; small ones and answers to requests without
Accept-Encoding: gzip are not. With Accept-Encoding accepting zstd
(browsers' "gzip, deflate, br, zstd"), answers over 1 KiB come as zstd
instead, read back by the `zstd` tool (an independent decoder that checks
the frame's checksum) and compared with the plain answer.
"""
import gzip
import json
import struct
import time
import unittest
import zlib

from harness import (ServerTestCase, by_id, chat, msg, read_http_response, json_or_none,
                     zstd_decompress)

T0 = "2025-06-01T10:00:00.000Z"
MIB = 1024 * 1024
JSON_POSTS = ("/v2/sync", "/sync", "/pushChats")


def gz(data):
    return gzip.compress(data if isinstance(data, bytes) else json.dumps(data).encode())


def bodies_for(path, cid):
    if path == "/v2/sync":
        return {"deviceId": "gz-dev", "cursor": None,
                "changes": [{"chatId": cid, "clock": 1, "fields": {"title": "via gzip"},
                             "messages": [msg("gm1", "compressed hello")]}]}
    return {"deviceId": "gz-dev", "chats": [chat(cid, "via gzip", [msg("gm1", "compressed hello")],
                                                 last_modified=T0)]}


def gzip_stream(prefix, filler_byte, filler_len, suffix):
    """gzip of prefix + filler * filler_len + suffix, without building it whole."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(prefix)]
    block = filler_byte * MIB
    left = filler_len
    while left > 0:
        n = min(left, MIB)
        out.append(c.compress(block[:n]))
        left -= n
    out.append(c.compress(suffix))
    out.append(c.flush())
    return b"".join(out)


class GzipTestCase(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.server.push_ok([chat("seed-chat", "kept", [msg("m1", timestamp=T0)], last_modified=T0)])

    def state(self):
        return self.server.fetch()

    def assertRefused(self, status, code, path, raw, headers):
        before = self.state()
        got, _, doc = self.server.request("POST", path, raw=raw, headers=headers)
        self.assertEqual(got, status, "%s: %r" % (path, self.server.last_body[:300]))
        self.assertErrorBody(doc, code)
        self.assertEqual(self.state(), before, "a refused request changed something")
        self.assertEqual(self.server.request("GET", "/health")[0], 200)


class GzipRequestTest(GzipTestCase):

    def test_gzip_bodies_accepted_everywhere(self):
        for path in JSON_POSTS:
            with self.subTest(path=path):
                cid = "gz" + path.replace("/", "-")
                status, _, doc = self.server.request("POST", path, body=bodies_for(path, cid),
                                                     gzip_body=True)
                self.assertEqual(status, 200, self.server.last_body[:300])
                got = by_id(self.server.fetch()).get(cid)
                self.assertIsNotNone(got, "the gzipped push did not land")
                self.assertEqual(got["title"], "via gzip")
                self.assertEqual([m["content"] for m in got["messages"]], ["compressed hello"])
                if path == "/v2/sync":
                    self.assertEqual(doc["accepted"], 1)
                    self.assertIn("seed-chat", [e["id"] for e in doc["chats"]])
                if path == "/sync":
                    self.assertIn("seed-chat", by_id(doc["missing"]))

    def test_gzip_on_delete_endpoints(self):
        self.server.push_ok([chat("d1", last_modified=T0), chat("d2", last_modified=T0)])
        status, _, doc = self.server.request("POST", "/deleteChat", body={"chatId": "d1"}, gzip_body=True)
        self.assertEqual((status, doc), (200, {"ok": True, "deleted": True}))
        status, _, doc = self.server.request("POST", "/deleteChats", body={"chatIds": ["d2"]},
                                             gzip_body=True)
        self.assertEqual((status, doc), (200, {"ok": True, "deletedCount": 1}))
        self.assertEqual(set(by_id(self.server.fetch())), {"seed-chat"})

    def test_identity_encoding_accepted(self):
        for path in JSON_POSTS:
            with self.subTest(path=path):
                status, _, _ = self.server.request("POST", path, body=bodies_for(path, "id" + path[1:3]),
                                                   headers={"Content-Encoding": "identity"})
                self.assertEqual(status, 200, self.server.last_body[:300])

    def test_unsupported_encoding_on_v2(self):
        raw = gz(bodies_for("/v2/sync", "br-chat"))
        for enc in ("br", "deflate", "compress"):
            with self.subTest(encoding=enc):
                self.assertRefused(415, "unsupported_encoding", "/v2/sync", raw,
                                   {"Content-Encoding": enc})

    def test_corrupt_gzip_is_bad_gzip(self):
        good = gz(bodies_for("/pushChats", "never"))
        bad_crc = bytearray(good)
        crc = struct.unpack("<I", bytes(bad_crc[-8:-4]))[0]
        bad_crc[-8:-4] = struct.pack("<I", crc ^ 0xFFFFFFFF)
        corrupt = {
            "not gzip at all": b'{"chats": []}',
            "random bytes": bytes(range(256)) * 4,
            "gzip magic, garbage after": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64,
            "truncated stream": good[:len(good) // 2],
            "no trailer": good[:-8],
            "bad crc": bytes(bad_crc),
        }
        for path in JSON_POSTS:
            for what, raw in corrupt.items():
                with self.subTest(path=path, corrupt=what):
                    self.assertRefused(400, "bad_gzip", path, raw, {"Content-Encoding": "gzip"})

    def test_gzip_of_bad_json_is_a_json_error(self):
        for path in JSON_POSTS:
            with self.subTest(path=path):
                self.assertRefused(400, "malformed_json", path, gz(b'{"chats": ['),
                                   {"Content-Encoding": "gzip"})

    def test_chunked_gzip_body(self):
        raw = gz(bodies_for("/v2/sync", "chunked-gz"))
        with self.server.connect() as sock:
            sock.sendall(b"POST /v2/sync HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(raw), 16):
                part = raw[i:i + 16]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            sock.sendall(b"0\r\n\r\n")
            status, _, body = read_http_response(sock, timeout=30)
        self.assertEqual(status, 200, body[:300])
        self.assertIn("chunked-gz", by_id(self.server.fetch()))


class GzipCapTest(GzipTestCase):
    SERVER_ARGS = ("--max-body", "1M")

    def test_gzip_bomb_is_413_and_the_server_keeps_serving(self):
        for path, prefix in (("/v2/sync", b'{"deviceId":"bomb","changes":[{"chatId":"bomb","clock":1,'
                                          b'"fields":{"title":"boom"}}]'),
                             ("/pushChats", b'{"chats":[{"id":"bomb","title":"boom"}]'),
                             ("/sync", b'{"chats":[{"id":"bomb","title":"boom"}]')):
            with self.subTest(path=path):
                # Valid JSON once decompressed (whitespace padding): 128 MiB from ~130 KB.
                raw = gzip_stream(prefix, b" ", 128 * MIB, b"}")
                self.assertLess(len(raw), MIB // 2)
                hwm_before = self.server.vm_hwm_kib()
                t = time.monotonic()
                self.assertRefused(413, "body_too_large", path, raw, {"Content-Encoding": "gzip"})
                self.assertLess(time.monotonic() - t, 20)
                hwm_after = self.server.vm_hwm_kib()
                if hwm_before is not None and hwm_after is not None:
                    self.assertLess(hwm_after - hwm_before, 48 * 1024,
                                    "the server's peak memory rose by %d KiB on a bomb: it "
                                    "decompressed past the limit" % (hwm_after - hwm_before))
                self.assertNotIn("bomb", by_id(self.server.fetch()))
        # Still serving normal requests, compressed or not.
        self.server.push_ok([chat("after", last_modified=T0)])
        status, _, _ = self.server.request("POST", "/v2/sync", body={"deviceId": "d"}, gzip_body=True)
        self.assertEqual(status, 200)

    def test_limit_is_on_the_decompressed_size(self):
        def body_of(size):
            head = json.dumps({"chats": [chat("padded", "x" * 10, last_modified=T0)]}).encode()
            return head[:-1] + b" " * (size - len(head)) + b"}"
        under = body_of(MIB - 1024)
        over = body_of(MIB + 1024)
        self.assertEqual(len(over), MIB + 1024)
        self.assertRefused(413, "body_too_large", "/pushChats", gz(over), {"Content-Encoding": "gzip"})
        self.assertRefused(413, "body_too_large", "/v2/sync",
                           gz(b'{"deviceId":"d"' + b" " * (MIB + 1024) + b"}"), {"Content-Encoding": "gzip"})
        status, _, _ = self.server.request("POST", "/pushChats", raw=gz(under),
                                           headers={"Content-Encoding": "gzip"})
        self.assertEqual(status, 200, self.server.last_body[:300])
        self.assertIn("padded", by_id(self.server.fetch()))


class BigAnswersTestCase(GzipTestCase):
    """A store whose answers are over 1 KiB; raw requests with the Accept-Encoding given."""

    def setUp(self):
        super().setUp()
        self.server.push_ok([chat("big-%d" % i, "Big %d" % i,
                                  [msg("m%d" % j, "content %d/%d " % (i, j) + "w" * 200, timestamp=T0)
                                   for j in range(10)], last_modified=T0) for i in range(5)])

    def raw_request(self, method, path, body=None, accept=None):
        """Over a socket, so no Accept-Encoding is sent unless given."""
        data = json.dumps(body).encode() if body is not None else b""
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method, path)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
        if accept is not None:
            head += "Accept-Encoding: %s\r\n" % accept
        with self.server.connect() as sock:
            sock.sendall(head.encode() + b"\r\n" + data)
            return read_http_response(sock, timeout=30)


class GzipAnswerTest(BigAnswersTestCase):

    def test_big_answers_are_gzipped_when_accepted(self):
        plain_fetch = self.server.fetch()
        cases = (("GET", "/fetchChats", None),
                 ("POST", "/sync", {"deviceId": "legacy", "chats": []}),
                 ("POST", "/v2/sync", {"deviceId": "v2dev", "cursor": None}))
        for method, path, body in cases:
            for accept in ("gzip", "gzip, deflate, br", "deflate, gzip;q=1.0"):
                with self.subTest(path=path, accept=accept):
                    status, headers, doc = self.server.request(method, path, body=body,
                                                               headers={"Accept-Encoding": accept})
                    self.assertEqual(status, 200)
                    self.assertEqual((headers.get("Content-Encoding") or "").lower(), "gzip",
                                     "a %d-byte answer was not gzipped" % len(self.server.last_body))
                    self.assertIsNotNone(doc, "the gzipped answer does not decompress to JSON")
                    self.assertLess(len(self.server.last_body), len(self.server.last_decoded))
                    if path == "/fetchChats":
                        self.assertEqual(doc, plain_fetch)
                    elif path == "/sync":
                        self.assertEqual(set(by_id(doc["missing"])), set(by_id(plain_fetch)))
                    else:
                        self.assertEqual(set(e["id"] for e in doc["chats"]), set(by_id(plain_fetch)))
                        self.assertIsInstance(doc["cursor"], str)

    def test_gzip_both_ways(self):
        status, headers, doc = self.server.request(
            "POST", "/v2/sync", body={"deviceId": "both", "cursor": None,
                                      "changes": [{"chatId": "both", "clock": 1, "fields": {"title": "b"}}]},
            gzip_body=True, headers={"Accept-Encoding": "gzip"})
        self.assertEqual(status, 200, self.server.last_body[:200])
        self.assertEqual(headers.get("Content-Encoding"), "gzip")
        self.assertEqual(doc["accepted"], 1)
        self.assertIn("big-0", [e["id"] for e in doc["chats"]])
        self.assertIn("both", by_id(self.server.fetch()))

    def test_small_answers_are_not_gzipped(self):
        status, _, doc = self.server.request("POST", "/v2/sync", body={"deviceId": "small"})
        cursor = doc["cursor"]
        for method, path, body in (("GET", "/health", None),
                                   ("POST", "/v2/sync", {"deviceId": "small", "cursor": cursor}),
                                   ("POST", "/pushChats", {"chats": [chat("tiny", last_modified=T0)]}),
                                   ("POST", "/deleteChat", {"chatId": "nope"})):
            with self.subTest(path=path):
                status, headers, doc = self.server.request(method, path, body=body,
                                                           headers={"Accept-Encoding": "gzip"})
                self.assertEqual(status, 200)
                self.assertLess(len(self.server.last_body), 1024)
                self.assertIsNone(headers.get("Content-Encoding"), "a small answer was gzipped")
                self.assertIsNotNone(json_or_none(self.server.last_body))
        # A small error answer either.
        status, headers, _ = self.server.request("POST", "/v2/sync", body={"cursor": None},
                                                 headers={"Accept-Encoding": "gzip"})
        self.assertEqual(status, 400)
        self.assertIsNone(headers.get("Content-Encoding"))

    def test_nothing_gzipped_without_accept_encoding(self):
        for accept in (None, "identity", "br", "deflate"):
            for method, path, body in (("GET", "/fetchChats", None),
                                       ("POST", "/v2/sync", {"deviceId": "raw", "cursor": None})):
                with self.subTest(path=path, accept=accept):
                    status, headers, body_bytes = self.raw_request(method, path, body, accept)
                    self.assertEqual(status, 200)
                    self.assertGreater(len(body_bytes), 1024)
                    self.assertNotIn("content-encoding", headers, "gzipped without Accept-Encoding: gzip")
                    self.assertIsNotNone(json_or_none(body_bytes))

    def test_large_streamed_pull_gzipped(self):
        self.server.push_ok([chat("s-%03d" % i, "S", [msg("m%d" % j, "%d-%d " % (i, j) + "q" * 1500)
                                                      for j in range(20)], last_modified=T0)
                             for i in range(150)])
        status, headers, doc = self.server.request("POST", "/v2/sync",
                                                   body={"deviceId": "stream", "cursor": None, "limit": 5000},
                                                   headers={"Accept-Encoding": "gzip"})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("Content-Encoding"), "gzip")
        self.assertIsNotNone(doc, "a large gzipped pull does not decompress to JSON")
        self.assertEqual(len([e for e in doc["chats"] if e["id"].startswith("s-")]), 150)
        self.assertGreater(len(self.server.last_decoded), 4 * MIB)


class ZstdAnswerTest(BigAnswersTestCase):
    """zstd answers: chosen over gzip when accepted, the same JSON as plain."""

    BROWSER = "gzip, deflate, br, zstd"  # what Chromium sends

    def test_zstd_preferred_when_accepted(self):
        cases = (("GET", "/fetchChats", None),
                 ("POST", "/sync", {"deviceId": "legacy-z", "chats": []}),
                 ("POST", "/v2/sync", {"deviceId": "v2dev-z", "cursor": None}))
        for method, path, body in cases:
            _, _, plain = self.raw_request(method, path, body, None)
            for accept in (self.BROWSER, "zstd", "zstd, gzip", "*", "gzip;q=1, zstd;q=0.1"):
                with self.subTest(path=path, accept=accept):
                    status, headers, coded = self.raw_request(method, path, body, accept)
                    self.assertEqual(status, 200)
                    self.assertEqual(headers.get("content-encoding"), "zstd")
                    self.assertLess(len(coded), len(plain))
                    got = zstd_decompress(coded)
                    self.assertIsNotNone(got, "the zstd answer does not decode")
                    if path == "/v2/sync":  # a new cursor each time: compare the chats
                        self.assertEqual(json.loads(got)["chats"], json.loads(plain)["chats"])
                    else:
                        self.assertEqual(got, plain)

    def test_zstd_refused_gets_gzip_or_nothing(self):
        for accept, coding in (("zstd;q=0, gzip", "gzip"), ("*, zstd;q=0", "gzip"),
                               ("zstd;q=0", None), ("*;q=0", None), ("x-zstd, gzip", "gzip")):
            with self.subTest(accept=accept):
                status, headers, data = self.raw_request("GET", "/fetchChats", None, accept)
                self.assertEqual(status, 200)
                self.assertEqual(headers.get("content-encoding"), coding)
                if coding is None:
                    self.assertIsNotNone(json_or_none(data))

    def test_small_answers_are_not_coded(self):
        status, headers, data = self.raw_request("GET", "/health", None, self.BROWSER)
        self.assertEqual(status, 200)
        self.assertLess(len(data), 1024)
        self.assertNotIn("content-encoding", headers)

    def test_large_streamed_pulls_in_zstd(self):
        """A pull of several MiB streamed in pieces (legacy and v2) as one zstd
        frame of at most an 8 MiB window (RFC 9659), the same JSON as plain."""
        self.server.push_ok([chat("z-%03d" % i, "Z", [msg("m%d" % j, "%d-%d " % (i, j) + "q" * 1500)
                                                      for j in range(20)], last_modified=T0)
                             for i in range(150)])
        for path, body in (("/sync", {"deviceId": "fresh-z", "chats": []}),
                           ("/v2/sync", {"deviceId": "stream-z", "cursor": None, "limit": 5000})):
            with self.subTest(path=path):
                _, _, plain = self.raw_request("POST", path, body, None)
                status, headers, coded = self.raw_request("POST", path, body, self.BROWSER)
                self.assertEqual(status, 200)
                self.assertEqual(headers.get("content-encoding"), "zstd")
                self.assertGreater(len(plain), 4 * MIB)
                got = zstd_decompress(coded)
                self.assertIsNotNone(got, "a large zstd pull does not decode")
                if path == "/v2/sync":
                    self.assertEqual(json.loads(got)["chats"], json.loads(plain)["chats"])
                else:
                    self.assertEqual(got, plain)
                # the frame header: window descriptor (RFC 8878 3.1.1.1.2) at most 8 MiB
                self.assertEqual(coded[:4], b"\x28\xb5\x2f\xfd")
                fhd = coded[4]
                self.assertTrue(fhd & 0x04, "no checksum asked for")
                if not fhd & 0x20:  # not single-segment: a window descriptor follows
                    wd = coded[5]
                    exponent, mantissa = wd >> 3, wd & 7
                    base = 1 << (10 + exponent)
                    self.assertLessEqual(base + base // 8 * mantissa, 8 * MIB)


if __name__ == "__main__":
    unittest.main()
