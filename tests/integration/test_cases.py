"""The data-driven cases, through a real polysyncd.

- tests/cases/protocol/*.json: request(s) and the expected answers (format
  in tests/cases/protocol/README.md), one fresh server per case.
- tests/cases/merge/*.json (format in docs/testing.md): each change sent by
  its device as a /v2/sync change, in every order of the changes (above 4
  changes, 24 seeded shuffles; each order on a chat of its own), then a
  fresh device's first sync must show the case's expected chat.
The expectations are the case files', written by hand from the docs.
"""
import copy
import itertools
import json
import os
import random
import unittest

from harness import ServerTestCase, parse_iso_ms

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.environ.get("PS_CASES_DIR") or os.path.normpath(os.path.join(HERE, "..", "cases"))
ANY, ABSENT = "<any>", "<absent>"


def case_files(kind):
    folder = os.path.join(CASES, kind)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".json"))


def mismatch(pattern, value, where="answer"):
    """None if `value` matches `pattern` (README.md), else where it does not."""
    if pattern == ANY:
        return None
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return "%s: want an object, got %r" % (where, value)
        for k, p in pattern.items():
            if k == ABSENT:
                present = [a for a in p if a in value]
                if present:
                    return "%s: must not have %s" % (where, present)
                continue
            if k not in value:
                return "%s: no key %r" % (where, k)
            m = mismatch(p, value[k], "%s.%s" % (where, k))
            if m:
                return m
        return None
    if isinstance(pattern, list):
        if not isinstance(value, list) or len(value) != len(pattern):
            return "%s: want %d elements, got %r" % (where, len(pattern), value)
        for i, (p, v) in enumerate(zip(pattern, value)):
            m = mismatch(p, v, "%s[%d]" % (where, i))
            if m:
                return m
        return None
    if pattern != value or type(pattern) is not type(value):
        return "%s: want %r, got %r" % (where, pattern, value)
    return None


def substitute(value, captured):
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return captured[value[2:-1]]
    if isinstance(value, dict):
        return {k: substitute(v, captured) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, captured) for v in value]
    return value


class ProtocolCasesTest(ServerTestCase):

    def setUp(self):
        self._servers = []   # one server per case, started in the test

    def test_protocol_cases(self):
        files = case_files("protocol")
        self.assertTrue(files, "no protocol cases")
        for path in files:
            with self.subTest(case=os.path.basename(path)):
                with open(path) as f:
                    case = json.load(f)
                server = self.new_server(case.get("server_args", ()))
                captured = {}
                for n, step in enumerate(case["steps"]):
                    req = substitute(step["request"], captured)
                    raw = req.get("raw")
                    status, _, doc = server.request(
                        req["method"], req["path"], body=req.get("body"),
                        raw=raw.encode() if raw is not None else None, headers=req.get("headers"))
                    what = "%s step %d (%s %s)" % (os.path.basename(path), n, req["method"], req["path"])
                    self.assertEqual(status, step["expect"]["status"],
                                     "%s: %r" % (what, server.last_body[:300]))
                    if "body" in step["expect"]:
                        m = mismatch(step["expect"]["body"], doc)
                        self.assertIsNone(m, "%s: %s" % (what, m))
                    for name, key in step.get("capture", {}).items():
                        captured[name] = doc[key]
                server.stop()


class MergeCasesThroughV2Test(ServerTestCase):

    MAX_ORDERS = 24

    def orders(self, n):
        if n <= 4:
            return list(itertools.permutations(range(n)))
        rng = random.Random(12)
        out = [tuple(range(n))]
        while len(out) < self.MAX_ORDERS:
            o = list(range(n))
            rng.shuffle(o)
            out.append(tuple(o))
        return out

    def test_merge_cases_in_every_order(self):
        files = case_files("merge")
        self.assertTrue(files, "no merge cases")
        s = self.server
        for path in files:
            name = os.path.basename(path)[:-5]
            with open(path) as f:
                case = json.load(f)
            for k, order in enumerate(self.orders(len(case["changes"]))):
                with self.subTest(case=name, order=order):
                    # each case and order on a chat of its own, so they do not meet
                    chat_id = "%s.%s.%d" % (case["chatId"], name, k)
                    for i in order:
                        change = copy.deepcopy(case["changes"][i])
                        device = change.pop("device")
                        change["chatId"] = chat_id
                        s.v2_ok({"deviceId": device, "changes": [change]})
                    self.check(case, chat_id, order)
        s.stop()

    def check(self, case, chat_id, order):
        # a device never seen, from scratch: every live chat, whole
        pulled = {}
        cursor = None
        while True:
            doc = self.server.v2_ok({"deviceId": "case-reader", "cursor": cursor, "limit": 5000})
            for c in doc["chats"]:
                pulled[c["id"]] = c
            cursor = doc["cursor"]
            if not doc["more"]:
                break
        want = case["expect"]
        got = pulled.get(chat_id)
        if not want["live"]:
            self.assertTrue(got is None or got.get("deleted"), "order %r: %r" % (order, got))
            return
        self.assertIsNotNone(got, "order %r: the chat is not live; pulled %s" % (order, sorted(pulled)))
        self.assertFalse(got.get("deleted"), got)
        self.assertEqual(got.get("fields", {}), want["fields"], "order %r" % (order,))
        msgs = got.get("messages", [])
        # display order: by the message's own timestamp, then id (docs/merge.md)
        shown = sorted(msgs, key=lambda m: (parse_iso_ms(m["timestamp"]) if isinstance(
            m.get("timestamp"), str) else (m.get("timestamp") or 0), m["id"]))
        self.assertEqual([m["id"] for m in shown], want["messages"], "order %r" % (order,))
        for dead in want.get("deletedMessages", []):
            self.assertNotIn(dead, [m["id"] for m in msgs], "order %r" % (order,))


if __name__ == "__main__":
    unittest.main()
