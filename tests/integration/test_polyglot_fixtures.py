"""Replays the real Polyglot client's captured requests (#10.1).

The fixtures (../shared/fixtures/polyglot/ beside the repository, read-only,
see its README) are the requests the app's unmodified sync client sent, each
with `expect`: the status and `notes` on what a correct server must do. This
one runner replays them in capture order on one fresh server (09, 01, 02,
03, 04, 05, 11, 10, 06, 12, 08; 07 alone on another) and turns every note
into a concrete check of the answer or of the stored state. The oracle is
the notes and the README's client rules (what the app applies), never the
server's own output.

`CHECKS` maps each fixture to its checks; a fixture file without an entry
fails the run, so a new capture cannot be replayed unchecked.
"""
import json
import os
import unittest

from harness import ServerTestCase, by_id, is_lamport, message_ids

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "polyglot")

CAPTURE_ORDER = ["09", "01", "02", "03", "04", "05", "11", "10", "06", "12", "08"]
ALONE = ["07"]

# The README's names: devices A and B, A's chats X and T.
A = "0f7283f1-b561-4285-ac50-2fefcf906e0b"
B = "7bc4a632-0d30-4f21-911e-03b895d6e138"
X = "conv_1796213697349_448po6n8j"
T = "conv_1796213698774_mhcicj8l9"
X_MESSAGES = ["msg_1796213697410", "msg_1796213697418", "msg_1796213697478"]
# What the client needs in every `missing` entry (README, "What a server
# test should check" 2): it replaces the whole chat with it.
CHAT_KEYS = {"id", "title", "provider", "currentModel", "isArchived", "messages",
             "lastModified", "updatedAtLamport"}


def load_fixtures():
    if not os.path.isdir(FIXTURES):
        raise AssertionError("fixtures folder not found: %s" % FIXTURES)
    found = {}
    for name in sorted(os.listdir(FIXTURES)):
        if name.endswith(".json") and name[:2].isdigit():
            with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
                found[name[:2]] = (name, json.load(f))
    return found


def clock_key(tup):
    """[lamport, deviceId] as the app orders it: counter, then id as string."""
    return (tup[0], tup[1])


def dominates(a, b):
    return clock_key(a) > clock_key(b)


class Replay:
    """One fixture's request as the client sent it, and what came back."""

    def __init__(self, case, server, name, fixture):
        self.case, self.server, self.name, self.fixture = case, server, name, fixture
        req = fixture["request"]
        self.body = req["body"]
        # JSON.stringify's bytes: compact, non-ASCII kept
        raw = json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()
        status, _, doc = server.request(req["method"], req["path"], raw=raw,
                                        headers=dict(req["headers"]))
        self.status, self.doc = status, doc
        case.assertEqual(status, fixture["expect"]["status"],
                         "%s: %s" % (name, server.last_body[:300]))
        case.assertIsInstance(doc, dict, "%s: a 200 answer is a JSON object" % name)
        self.missing = by_id(doc.get("missing", []))
        self.deletions = {d.get("id") or d.get("chatId"): d for d in doc.get("deletions", [])}
        for entry in doc.get("missing", []):
            self.readable_chat(entry)
        for d in doc.get("deletions", []):
            case.assertTrue(is_lamport(d.get("lamport") or d.get("updatedAtLamport")),
                            "%s: the client drops a deletion without lamport: %r" % (name, d))

    def readable_chat(self, entry):
        self.case.assertTrue(CHAT_KEYS <= set(entry),
                             "%s: missing entries must be whole chats, %s lacks %s"
                             % (self.name, entry.get("id"), CHAT_KEYS - set(entry)))
        self.case.assertTrue(is_lamport(entry["updatedAtLamport"]),
                             "%s: the client drops %s: no readable updatedAtLamport"
                             % (self.name, entry.get("id")))

    def stored(self):
        return by_id(self.server.fetch())


class PolyglotFixturesTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.fixtures = load_fixtures()

    def test_every_fixture_has_checks(self):
        self.assertEqual(sorted(self.fixtures), sorted(CAPTURE_ORDER + ALONE))

    def replay(self, server, key):
        name, fixture = self.fixtures[key]
        return Replay(self, server, name, fixture)

    # -- the checks, one per fixture, in the words of its notes --

    def x_archived_by_b(self, stored, r):
        """05's rule, checked after every later upload of A's older X."""
        x = stored[X]
        self.assertIs(x["isArchived"], True, "%s: A's older X un-archived B's" % r.name)
        self.assertFalse(dominates([6, B], x["updatedAtLamport"]),
                         "%s: X's clock went below B's archive [6, B]" % r.name)
        self.assertEqual(message_ids(x), X_MESSAGES)

    def x_returned_to_a(self, r):
        """A sent X at [5, A] without B's archive: it must get the merged X
        back, complete, with a clock that strictly dominates its copy (or the
        app keeps its stale copy)."""
        self.assertIn(X, r.missing, "%s: A's X is older than the server's" % r.name)
        x = r.missing[X]
        self.assertIs(x["isArchived"], True)
        self.assertTrue(dominates(x["updatedAtLamport"], [5, A]), x["updatedAtLamport"])
        self.assertEqual(message_ids(x), X_MESSAGES)

    def check_09(self, r, before):
        # {"chats": []} with no envelope: 200, a JSON object, nothing changed
        self.assertEqual(r.server.fetch(), before)
        self.assertEqual(r.server.fetch(), [])

    def check_01(self, r, before):
        # first sync of an unknown device: everything the server has, here nothing
        self.assertEqual(r.doc.get("missing", []), [])
        self.assertEqual(r.doc.get("deletions", []), [])

    def check_02(self, r, before):
        x = r.stored()[X]
        self.assertEqual(message_ids(x), X_MESSAGES, "the 3 messages in this order")
        self.assertEqual([m["role"] for m in x["messages"]], ["user", "assistant", "user"])
        self.assertEqual(x["title"], "Can you help me plan a weekend trip to the mountai...")
        self.assertFalse(dominates([4, A], x["updatedAtLamport"]))
        self.assertEqual(r.missing, {}, "A holds the only version of X")

    def check_03(self, r, before):
        x = r.stored()[X]
        self.assertEqual(x["title"], "Mountain weekend trip")
        self.assertEqual(message_ids(x), X_MESSAGES)
        self.assertFalse(dominates([5, A], x["updatedAtLamport"]))
        self.assertEqual(r.missing, {}, "A's rename is the newest X")

    def check_04(self, r, before):
        self.assertIn(X, r.missing, "B's first sync must get X")
        x = r.missing[X]
        self.assertEqual(x["title"], "Mountain weekend trip")
        self.assertEqual(message_ids(x), X_MESSAGES)
        self.assertFalse(dominates([5, A], x["updatedAtLamport"]))
        self.assertEqual(set(r.missing), {X})

    def check_05(self, r, before):
        self.x_archived_by_b(r.stored(), r)
        self.assertNotIn(X, r.missing, "B holds the newest X")

    def check_11(self, r, before):
        stored = r.stored()
        t = stored[T]
        self.assertEqual(t["messages"], [])
        self.assertEqual(t["title"], "New Chat 12/2/2026")
        self.assertFalse(dominates([6, A], t["updatedAtLamport"]))
        self.assertNotIn(T, r.missing, "A holds the only version of T")
        self.x_archived_by_b(stored, r)
        self.x_returned_to_a(r)

    def check_10(self, r, before):
        # absence is not a deletion: T stays live and goes back to A
        stored = r.stored()
        self.assertIn(T, stored, "T is absent from A's body, which is not a deletion")
        self.assertEqual(r.deletions, {})
        self.assertIn(T, r.missing, "A lacks T: it must get it again")
        self.assertEqual(r.missing[T]["title"], stored[T]["title"])
        self.x_archived_by_b(stored, r)
        self.x_returned_to_a(r)

    def check_06(self, r, before):
        stored = r.stored()
        self.assertNotIn(T, stored, "T is deleted at [10, A]")
        self.assertNotIn(T, r.missing)
        self.x_archived_by_b(stored, r)
        self.x_returned_to_a(r)

    def check_12(self, r, before):
        stored = r.stored()
        self.assertNotIn(T, stored, "B's T at [8, A] does not dominate the deletion [10, A]")
        self.assertNotIn(T, r.missing)
        self.assertIn(T, r.deletions, "B still holds T: it must be told")
        self.assertEqual(r.deletions[T].get("lamport"), [10, A])
        # B's copy of T ([8, A]) is below it, so B's app accepts the deletion
        self.assertFalse(dominates([8, A], r.deletions[T]["lamport"]))
        self.x_archived_by_b(stored, r)
        self.assertNotIn(X, r.missing, "B holds the newest X")

    def check_08(self, r, before):
        stored = r.stored()
        self.x_archived_by_b(stored, r)
        self.assertNotIn(T, stored, "a deleted chat stays deleted")
        # the app throws on the first missing entry it is given here
        self.assertEqual(r.doc.get("missing"), [])
        self.assertEqual(r.doc.get("deletions"), [])

    # -- the runs --

    def test_capture_order_on_one_server(self):
        server = self.server
        for key in CAPTURE_ORDER:
            with self.subTest(fixture=self.fixtures[key][0]):
                before = server.fetch()
                r = self.replay(server, key)
                getattr(self, "check_" + key)(r, before)
        # what a new device of this history gets: X (archived), T's deletion
        doc = server.sync_ok({"deviceId": "fresh", "chats": [], "deletions": [],
                              "clientClock": {"deviceId": "fresh", "localCounter": 0,
                                              "observedCounter": 0}})
        self.assertEqual(set(by_id(doc["missing"])), {X})
        self.assertEqual(set(d["id"] for d in doc["deletions"]), {T})

    def test_07_alone_then_a_fresh_device_gets_everything(self):
        server = self.new_server()
        name, fixture = self.fixtures["07"]
        sent = fixture["request"]["body"]["chats"]
        self.assertEqual((len(sent), sum(len(c["messages"]) for c in sent)), (20, 200))
        r = Replay(self, server, name, fixture)
        stored = r.stored()
        self.assertEqual(set(stored), {c["id"] for c in sent})
        doc = server.sync_ok({"deviceId": "fresh-e2", "chats": [], "deletions": [],
                              "clientClock": {"deviceId": "fresh-e2", "localCounter": 0,
                                              "observedCounter": 0}})
        got = by_id(doc["missing"])
        self.assertEqual(set(got), {c["id"] for c in sent}, "all 20 chats")
        for c in sent:
            g = got[c["id"]]
            r.readable_chat(g)
            self.assertEqual(g["title"], c["title"])
            self.assertEqual(message_ids(g), message_ids(c), "10 messages, in order")
            self.assertEqual([m["content"] for m in g["messages"]],
                             [m["content"] for m in c["messages"]])
            self.assertFalse(dominates(c["updatedAtLamport"], g["updatedAtLamport"]),
                             "the fresh device's copy must carry the clock as sent or later")
        self.assertEqual(sum(len(g["messages"]) for g in got.values()), 200)


if __name__ == "__main__":
    unittest.main()
