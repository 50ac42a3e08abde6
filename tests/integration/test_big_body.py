"""
Big legacy bodies (#15): a legacy /sync or /pushChats body is a user's whole
history, taken chat by chat as it arrives (src/server/legacy_body.h) and
held in a spool (memory, then a nameless file in the store's folder) until
the merge. Oracle: docs/protocol.md (the default --max-body of 256 MiB, 413
body_too_large with a JSON body for a refused body, a sync that is all or
nothing) and the chats the test sent, fetched back.

Bodies are made from a template with bytes.join, so 70 MB costs the test a
fraction of a second; their text carries JSON escapes and non-ASCII.
"""
import http.client
import json
import os
import socket
import time

from harness import ServerTestCase, chat, json_or_none, read_http_response

MIB = 1024 * 1024

T0 = "2026-01-02T03:04:05.000Z"
# ASCII escapes and non-ASCII in every message, as real histories have
CONTENT_UNIT = 'line "quoted" \\ back\tslash\n caf\u00e9 \u4e2d\u6587 \U0001F600 '


def chat_doc(cid, n_messages, content_len, role="user"):
    content = (CONTENT_UNIT * (content_len // len(CONTENT_UNIT) + 1))[:content_len]
    return {"id": cid, "title": "t " + cid, "lastModified": T0,
            "messages": [{"id": "%s-m%d" % (cid, k), "role": role if k == 0 else "assistant",
                          "content": "%d %s" % (k, content), "timestamp": T0}
                         for k in range(n_messages)]}


def body_of(chats_json, device="big-device"):
    """A /sync body from already-serialized chats (bytes each)."""
    return (b'{"deviceId":"' + device.encode() + b'","chats":[' + b",".join(chats_json) + b"]}")


def big_chats(n_chats, n_messages, content_len, prefix="c"):
    """n_chats chats (serialized) from one template: only the ids differ."""
    template = json.dumps(chat_doc("@ID@", n_messages, content_len)).encode()
    return [template.replace(b"@ID@", b"%s%05d" % (prefix.encode(), i)) for i in range(n_chats)]


def post(server, path, body, headers=None, timeout=120):
    """http.client, which writes the whole body before it reads an answer."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request("POST", path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def spool_files(pid, folder):
    """The open files of the server in `folder` that are not the store's:
    a spool file has no name ('/folder/#123 (deleted)' for O_TMPFILE)."""
    found = []
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith(folder + "/") and not os.path.basename(target).startswith(("p.db", "stderr.")):
            found.append(target)
    return found


class BigBodyTest(ServerTestCase):
    """Default limits: a history past the old 64 MiB default is accepted."""

    def test_history_over_64_mib_is_merged_whole(self):
        # 1,400 chats x 10 messages x ~2.8 KB: ~70 MB with escapes, over the
        # old default 64 MiB; the spool goes to its file (past 4 MiB in memory)
        chats = big_chats(1400, 10, 2850)
        body = body_of(chats)
        self.assertGreater(len(body), 64 * MIB)
        status, answer = post(self.server, "/pushChats", body)
        self.assertEqual(status, 200, answer[:300])
        fetched = {c["id"]: c for c in self.server.fetch()}
        self.assertEqual(len(fetched), 1400)
        for raw in (chats[0], chats[699], chats[-1]):
            sent = json.loads(raw)
            got = fetched[sent["id"]]
            self.assertEqual(got["title"], sent["title"])
            self.assertEqual([(m["id"], m["role"], m["content"]) for m in got["messages"]],
                             [(m["id"], m["role"], m["content"]) for m in sent["messages"]])
        # every chat's every message, by id and content
        for raw in chats:
            sent = json.loads(raw)
            self.assertEqual([m["content"] for m in fetched[sent["id"]]["messages"]],
                             [m["content"] for m in sent["messages"]], sent["id"])
        self.assertEqual(spool_files(self.server.proc.pid, self.server.tmpdir), [])

    def test_body_over_the_default_limit_gets_its_413(self):
        # 256 MiB + 1 MiB, sent whole by http.client before it reads
        unit = b'{"id":"x","title":"' + b"y" * (MIB - 32) + b'"},'
        total = 257 * MIB

        def pieces():
            yield b'{"chats":['
            sent = 10
            while sent + len(unit) < total:
                yield unit
                sent += len(unit)
            yield b'{"id":"z"}]}' + b" " * (total - sent - 12)

        before = self.server.store_state()
        status, answer = post(self.server, "/pushChats", pieces(),
                              headers={"Content-Length": str(total)})
        self.assertEqual(status, 413)
        doc = json_or_none(answer)
        self.assertEqual(doc.get("code"), "body_too_large", answer)
        self.assertIn(str(256 * MIB), doc.get("error", ""))
        self.assertStoreUnchanged(before)
        self.assertEqual(self.server.request("GET", "/health")[0], 200)

    def test_client_gone_mid_body_leaves_nothing(self):
        # (the default limits: the spool keeps 64 MiB in memory before its file)
        body = body_of(big_chats(2000, 10, 3000))  # ~100 MB declared, 75 MB sent
        before = self.server.store_state()
        sock = self.server.connect()
        sock.sendall(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body[:len(body) * 3 // 4])
        # the spool has its file now (past 64 MiB): the check below can fail
        deadline = time.monotonic() + 30
        while not spool_files(self.server.proc.pid, self.server.tmpdir):
            self.assertLess(time.monotonic(), deadline, "no spool file while the body arrives")
            time.sleep(0.05)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        deadline = time.monotonic() + 30
        while spool_files(self.server.proc.pid, self.server.tmpdir):
            self.assertLess(time.monotonic(), deadline, "the spool file outlived its client")
            time.sleep(0.05)
        self.assertEqual(sorted(f for f in os.listdir(self.server.tmpdir)
                                if not f.startswith(("p.db", "stderr."))), [])
        self.assertStoreUnchanged(before)
        self.assertEqual(self.server.request("GET", "/health")[0], 200)

    def test_bodies_parsed_whole_keep_a_64_mib_limit(self):
        # Only legacy full-state bodies are taken chat by chat; a v2 or a
        # deletion body over 64 MiB is refused from its headers, while a
        # legacy one of that size is taken (100 Continue: send it)
        over = 64 * MIB + 1
        raised = self.new_server(("--max-body", "1G"))  # not for bodies parsed whole
        for server, path, status in ((self.server, "/v2/sync", 413),
                                     (self.server, "/deleteChats", 413),
                                     (self.server, "/sync", 100),
                                     (raised, "/v2/sync", 413),
                                     (raised, "/pushChats", 100)):
            with self.subTest(path=path), server.connect() as sock:
                sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                             % (path.encode(), over))
                got, _, answer = read_http_response(sock, timeout=20, skip_informational=False)
                self.assertEqual(got, status, answer)
                if status == 413:
                    self.assertErrorBody(json_or_none(answer), "body_too_large")


class BigBodyLimitsTest(ServerTestCase):
    """Smaller limits, the same code: refusals and all-or-nothing."""

    SERVER_ARGS = ("--max-body", "24M")

    def setUp(self):
        super().setUp()
        # something to keep: any rejected request must leave it as it is
        self.server.push_ok([chat_doc("kept", 2, 100), chat("kept-2", last_modified=T0)])
        self.before = self.server.store_state()
        self.fetched = self.server.fetch()

    def assertNothingChanged(self):
        self.assertStoreUnchanged(self.before)
        self.assertEqual(self.server.fetch(), self.fetched)
        self.assertEqual(spool_files(self.server.proc.pid, self.server.tmpdir), [])

    def test_over_limit_by_http_client_gets_413_json(self):
        body = body_of(big_chats(150, 10, 10000))  # ~26 MB
        self.assertGreater(len(body), 24 * MIB)
        status, answer = post(self.server, "/sync", body)
        self.assertEqual(status, 413)
        self.assertErrorBody(json_or_none(answer), "body_too_large")
        self.assertNothingChanged()

    def test_over_limit_chunked_gets_413_after_its_body(self):
        body = body_of(big_chats(150, 10, 10000))
        status, answer = post(self.server, "/pushChats", iter([body[i:i + MIB]
                                                               for i in range(0, len(body), MIB)]))
        self.assertEqual(status, 413)  # no Content-Length: refused as the bytes pass the limit
        self.assertErrorBody(json_or_none(answer), "body_too_large")
        self.assertNothingChanged()

    def test_invalid_chat_at_the_end_rejects_the_whole_sync(self):
        chats = big_chats(150, 10, 3000)  # ~8 MB: most of it in the spool's file
        last = chat_doc("bad-last", 2, 100)
        last["messages"][1]["role"] = 7  # not a role
        for path in ("/sync", "/pushChats"):
            with self.subTest(path=path):
                status, answer = post(self.server, path,
                                      body_of(chats + [json.dumps(last).encode()]))
                self.assertEqual(status, 400, answer[:300])
                self.assertEqual(json_or_none(answer).get("code"), "invalid_payload")
                self.assertNothingChanged()

    def test_of_two_bad_chats_the_first_is_named(self):
        # ~8 MB, prepared on two threads (sync_legacy.c, prep_run): the
        # error is still the first bad chat's in the body's order, whichever
        # thread met its chat first (tests/unit/test_legacy_prepare.c forces
        # the other order)
        chats = big_chats(150, 10, 3000)
        early = json.loads(chats[3])
        early["messages"][1]["role"] = 7  # not a role
        late = json.loads(chats[140])
        del late["messages"][0]["id"]
        chats[3] = json.dumps(early).encode()
        chats[140] = json.dumps(late).encode()
        for path in ("/sync", "/pushChats"):
            with self.subTest(path=path):
                status, answer = post(self.server, path, body_of(chats))
                self.assertEqual(status, 400, answer[:300])
                doc = json_or_none(answer)
                self.assertEqual(doc.get("code"), "invalid_payload", doc)
                self.assertEqual(doc.get("chatIndex"), 3, doc)
                self.assertEqual(doc.get("field"), "messages[1].role", doc)
                self.assertNothingChanged()

    def test_malformed_json_at_the_end_rejects_the_whole_sync(self):
        chats = big_chats(150, 10, 3000)
        cases = {
            "bad UTF-8": (b'{"id":"u","title":"\xc3\x28","messages":[]}', "invalid_utf8"),
            "missing colon": (b'{"id":"u","title" "x","messages":[]}', "malformed_json"),
            "two values": (b'{"id":"u","messages":[]} {"id":"v"}', "malformed_json"),
            "trailing comma": (b'{"id":"u","messages":[]},', "malformed_json"),
        }
        for name, (tail, code) in cases.items():
            with self.subTest(name):
                status, answer = post(self.server, "/sync", body_of(chats + [tail]))
                self.assertEqual(status, 400, answer[:300])
                self.assertEqual(json_or_none(answer).get("code"), code, answer)
                self.assertNothingChanged()


if __name__ == "__main__":
    import unittest
    unittest.main()
