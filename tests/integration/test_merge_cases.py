"""The shared merge case files (tests/cases/merge/*.json, format in the
project's case notes): each case's v2 changes are applied through /v2/sync in
every order (above 6 changes, 200 seeded shuffles), each order on its own
chat id of one server, and an observer device that synced before them all
pulls the result. Every order must end as the case's `expect` says; the
expectations were worked out by hand from docs/merge.md.
"""
import copy
import glob
import itertools
import json
import os
import random
import unittest

from harness import ServerTestCase

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cases", "merge")


def orders(n, seed):
    if n <= 6:
        return list(itertools.permutations(range(n)))
    rng = random.Random(seed)
    out = []
    for _ in range(200):
        p = list(range(n))
        rng.shuffle(p)
        out.append(tuple(p))
    return out


class MergeCaseFiles(ServerTestCase):

    def pull_all(self, device, cursor):
        chats = {}
        while True:
            doc = self.server.v2_ok({"deviceId": device, "cursor": cursor})
            for c in doc["chats"]:
                chats[c["id"]] = c   # a later page holds the newer state
            cursor = doc["cursor"]
            if not doc["more"]:
                return chats

    def run_case(self, path):
        with open(path, encoding="utf-8") as f:
            case = json.load(f)
        expect = case["expect"]
        s = self.server
        start = s.v2_ok({"deviceId": "observer", "cursor": None})["cursor"]
        ids = {}
        for k, order in enumerate(orders(len(case["changes"]), len(case["changes"]))):
            cid = "%s~%s~%d" % (case["chatId"], os.path.basename(path), k)
            ids[cid] = order
            for i in order:
                ch = copy.deepcopy(case["changes"][i])
                device = ch.pop("device")
                ch["chatId"] = cid
                s.v2_ok({"deviceId": device, "changes": [ch]})
        got = self.pull_all("observer", start)
        for cid, order in ids.items():
            where = "%s, order %s" % (os.path.basename(path), order)
            c = got.get(cid)
            self.assertIsNotNone(c, where)
            if not expect["live"]:
                self.assertTrue(c.get("deleted"), where)
                continue
            self.assertFalse(c.get("deleted", False), where)
            self.assertEqual(c.get("fields", {}), expect["fields"], where)
            self.assertEqual([m["id"] for m in c.get("messages", [])], expect["messages"], where)
            for mid in expect.get("deletedMessages", []):
                self.assertIn(mid, c.get("deletedMessages", []), where)

    def test_every_case_in_every_order(self):
        paths = sorted(glob.glob(os.path.join(CASES, "*.json")))
        self.assertTrue(paths, "no case files in " + CASES)
        for path in paths:
            with self.subTest(case=os.path.basename(path)):
                self.run_case(path)


if __name__ == "__main__":
    unittest.main()
