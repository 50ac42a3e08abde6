"""The legacy /sync envelope (#10.1): every clientClock shape, unused members.

Oracle: DESIGN.md "Seed-compatible endpoints" and docs/protocol.md. The app
sends its clock as {deviceId, localCounter, observedCounter}; the seed
document and older clients as an integer, [n, deviceId] or {lamport,
deviceId}. Every counter in it is observed by the user's Lamport clock, so
the answer's serverClock is at least the highest. A clientClock whose
counters are not counters is refused with a 400 naming it (the server uses
them); a top-level member the server does not use is ignored, whatever it
holds.
"""
import unittest

from harness import ServerTestCase, chat, msg, by_id

T0 = "2026-01-01T10:00:00.000Z"


class ClientClockShapesTest(ServerTestCase):

    def observed(self, clock):
        doc = self.server.sync_ok({"deviceId": "dev-a", "clientClock": clock, "chats": []})
        return doc["serverClock"]

    def test_integer(self):
        self.assertGreaterEqual(self.observed(41), 41)

    def test_tuple(self):
        self.assertGreaterEqual(self.observed([42, "dev-a"]), 42)

    def test_lamport_object(self):
        self.assertGreaterEqual(self.observed({"lamport": 43, "deviceId": "dev-a"}), 43)

    def test_polyglot_snapshot_observes_every_counter(self):
        # observedCounter is the larger one here: it must be the one observed
        clock = {"deviceId": "dev-a", "localCounter": 6, "observedCounter": 44}
        self.assertGreaterEqual(self.observed(clock), 44)
        clock = {"deviceId": "dev-a", "localCounter": 45, "observedCounter": 3}
        self.assertGreaterEqual(self.observed(clock), 45)

    def test_changed_chat_returned_above_the_object_clock(self):
        """The trap of sync_legacy.c with the app's clock: a chat the merge
        changed comes back with a tick above every counter of the request,
        observedCounter included, or the app keeps its stale copy."""
        self.server.push_ok([chat("c", "t", [msg("m1", timestamp=T0), msg("m2", timestamp=T0)],
                                  last_modified=T0, updatedAtLamport=[2, "dev-b"])])
        doc = self.server.sync_ok({
            "deviceId": "dev-a",
            "clientClock": {"deviceId": "dev-a", "localCounter": 3, "observedCounter": 77},
            "chats": [chat("c", "t", [msg("m1", timestamp=T0)], last_modified=T0,
                           updatedAtLamport=[3, "dev-a"])],
            "deletions": []})
        back = by_id(doc["missing"])["c"]
        self.assertEqual([m["id"] for m in back["messages"]], ["m1", "m2"])
        self.assertGreater(back["updatedAtLamport"][0], 77)

    def test_legacy_record_clock_observed(self):
        """Polyglot's page-load body: {chats} whose records carry
        lastMutationLamport {lamport, deviceId} (fixtures 08/09)."""
        c = chat("p", "t", [msg("m1", timestamp=T0)], last_modified=T0,
                 lastMutationLamport={"lamport": 58, "deviceId": "dev-a"},
                 createdAt=T0, modelHistory=[])
        self.server.push_ok([chat("other", "the app cannot store this", last_modified=T0)])
        doc = self.server.sync_ok({"chats": [c]})
        # the page-load caller throws on any missing entry (docs/polyglot.md)
        self.assertEqual(doc, {"missing": [], "deletions": []})
        self.assertIn("p", by_id(self.server.fetch()), "merged all the same")
        doc = self.server.sync_ok({"deviceId": "dev-b", "chats": []})
        self.assertGreaterEqual(doc["serverClock"], 58)
        self.assertEqual(set(by_id(doc["missing"])), {"p", "other"})

    def test_seed_body_without_record_clocks_is_answered_as_before(self):
        self.server.push_ok([chat("other", "kept", last_modified=T0)])
        doc = self.server.sync_ok({"chats": [chat("s", "seed", last_modified=T0)]})
        self.assertEqual(set(by_id(doc["missing"])), {"other"})
        self.assertIn("serverClock", doc)
        doc = self.server.sync_ok({"chats": []})
        self.assertEqual(set(by_id(doc["missing"])), {"other", "s"})


class UnusedMembersIgnoredTest(ServerTestCase):

    def test_unknown_top_level_members_of_any_type(self):
        c = chat("u", "kept", last_modified=T0)
        doc = self.server.sync_ok({"deviceId": "dev-a", "chats": [c], "since": None,
                                   "version": {"x": [1, 2.5, "y"]}, "lastSyncAt": -3,
                                   "deletionHorizon": "whatever"})
        self.assertEqual(doc["missing"], [])
        self.assertEqual(by_id(self.server.fetch())["u"]["title"], "kept")


class BadClockRefusedTest(ServerTestCase):
    """The counters are used (observed), so they must be counters: 400
    invalid_payload naming clientClock, and nothing stored."""

    BAD = [
        "12",                                             # a string
        -1,                                               # negative
        2 ** 53,                                          # beyond JavaScript's safe integers
        1.5,
        [3],
        ["dev-a", 3],
        [-2, "dev-a"],
        {},
        {"deviceId": "dev-a"},                            # says no counter at all
        {"deviceId": "dev-a", "localCounter": "1", "observedCounter": 1},
        {"deviceId": "dev-a", "localCounter": 1, "observedCounter": -1},
        {"deviceId": "dev-a", "localCounter": 1, "observedCounter": 2 ** 53},
        {"lamport": 4.5, "deviceId": "dev-a"},
        {"lamport": 4, "deviceId": ""},
        True,
    ]

    def test_each_bad_clock(self):
        for clock in self.BAD:
            with self.subTest(clock=clock):
                status, _, doc = self.server.sync({
                    "deviceId": "dev-a", "clientClock": clock,
                    "chats": [chat("x", "must not land", last_modified=T0)]})
                self.assertEqual(status, 400, doc)
                self.assertErrorBody(doc, "invalid_payload")
                self.assertEqual(doc.get("field"), "clientClock")
                self.assertEqual(self.server.fetch(), [])

    def test_null_clock_is_absent(self):
        self.server.sync_ok({"deviceId": "dev-a", "clientClock": None, "chats": []})

    def test_chats_and_deletions_stay_strict(self):
        status, _, doc = self.server.sync({"deviceId": "dev-a", "clientClock": 3,
                                           "chats": [{"title": "no id"}], "junk": 1})
        self.assertEqual(status, 400)
        status, _, doc = self.server.sync({"deviceId": "dev-a", "chats": [],
                                           "deletions": [{"id": "x", "lamport": ["1", "d"]}]})
        self.assertEqual(status, 400)
        self.assertEqual(doc.get("field"), "deletions")


if __name__ == "__main__":
    unittest.main()
