"""Merge through the legacy endpoints: LWW per field, message union, deletions."""
import os
import threading
import unittest

from harness import (ServerTestCase, by_id, chat, iso, message_ids, msg, now_ms, parse_iso_ms)

T = {h: "2024-01-15T%s:00.000Z" % h for h in
     ("08:00", "09:00", "09:30", "10:00", "10:01", "10:05", "11:00")}
HOUR = 3600 * 1000


class SeedScenarioTest(ServerTestCase):

    def test_seed_scenario_1_lww_title_and_both_messages(self):
        first = msg("m1", "hello", timestamp="2024-01-15T09:59:00.000Z")
        added = msg("m2", "added on B", role="assistant", timestamp="2024-01-15T10:01:00.000Z")
        a = chat("123", "New Title", [first], last_modified="2024-01-15T10:00:00Z")
        b = chat("123", "Old Title", [first, added], last_modified="2024-01-15T10:01:00Z")
        self.server.sync_ok({"deviceId": "devA", "chats": [a]})
        self.server.sync_ok({"deviceId": "devB", "chats": [b]})
        got = by_id(self.server.fetch())["123"]
        self.assertEqual(got["title"], "Old Title")
        self.assertEqual(message_ids(got), ["m1", "m2"])
        # Device A, syncing again with its stale copy, is given the result.
        doc = self.server.sync_ok({"deviceId": "devA", "chats": [a]})
        back = by_id(doc["missing"])["123"]
        self.assertEqual(back["title"], "Old Title")
        self.assertEqual(message_ids(back), ["m1", "m2"])

    def test_seed_scenario_1_other_order_same_result(self):
        first = msg("m1", "hello", timestamp="2024-01-15T09:59:00.000Z")
        added = msg("m2", "added on B", role="assistant", timestamp="2024-01-15T10:01:00.000Z")
        a = chat("123", "New Title", [first], last_modified="2024-01-15T10:00:00Z")
        b = chat("123", "Old Title", [first, added], last_modified="2024-01-15T10:01:00Z")
        self.server.sync_ok({"deviceId": "devB", "chats": [b]})
        self.server.sync_ok({"deviceId": "devA", "chats": [a]})
        got = by_id(self.server.fetch())["123"]
        self.assertEqual(got["title"], "Old Title")
        self.assertEqual(message_ids(got), ["m1", "m2"])


class FieldMergeTest(ServerTestCase):

    def test_older_write_loses_per_field(self):
        self.server.push_ok([chat("c", "New", last_modified=T["10:05"], provider="openai")])
        doc = self.server.sync_ok({"deviceId": "devB",
                                   "chats": [chat("c", "Old", last_modified=T["10:00"],
                                                  provider="anthropic")]})
        got = by_id(self.server.fetch())["c"]
        self.assertEqual(got["title"], "New")
        self.assertEqual(got["provider"], "openai")
        back = by_id(doc["missing"]).get("c")
        self.assertIsNotNone(back, "the client sent an older state; it must get the merge back")
        self.assertEqual(back["title"], "New")

    def test_newer_write_wins(self):
        self.server.push_ok([chat("c", "Old", last_modified=T["10:00"])])
        self.server.push_ok([chat("c", "New", last_modified=T["10:05"])])
        self.assertEqual(by_id(self.server.fetch())["c"]["title"], "New")

    def test_falls_back_to_updated_at_then_created_at(self):
        self.server.push_ok([chat("u", "U-new", updatedAt=T["10:05"])])
        self.server.push_ok([chat("u", "U-old", updatedAt=T["10:00"])])
        self.server.push_ok([chat("k", "K-new", createdAt=T["10:05"])])
        self.server.push_ok([chat("k", "K-old", createdAt=T["10:00"])])
        got = by_id(self.server.fetch())
        self.assertEqual(got["u"]["title"], "U-new")
        self.assertEqual(got["k"]["title"], "K-new")

    def test_last_modified_preferred_over_updated_at(self):
        # lastModified says this write is newer although updatedAt says older.
        self.server.push_ok([chat("c", "first", last_modified=T["10:00"], updatedAt=T["10:00"])])
        self.server.push_ok([chat("c", "second", last_modified=T["10:05"], updatedAt=T["09:00"])])
        self.assertEqual(by_id(self.server.fetch())["c"]["title"], "second")

    def test_absent_field_left_as_stored(self):
        self.server.push_ok([chat("c", "t", last_modified=T["10:00"], model="gpt-4",
                                  provider="openai", currentModel="gpt-4o", isArchived=True)])
        self.server.push_ok([{"id": "c", "title": "t2", "lastModified": T["10:05"]}])
        got = by_id(self.server.fetch())["c"]
        self.assertEqual(got["title"], "t2")
        self.assertEqual(got["model"], "gpt-4")
        self.assertEqual(got["provider"], "openai")
        self.assertEqual(got["currentModel"], "gpt-4o")
        self.assertIs(got["isArchived"], True)

    def test_unknown_fields_kept_verbatim(self):
        extra = {"folderId": "f-1", "tags": ["a", {"b": 1}], "pinned": True,
                 "meta": {"nested": [1, 2.5, None, True, "x"], "empty": {}},
                 "score": -17, "unicode": "h\u00e9llo \u4e16\u754c \U0001F600"}
        m = msg("m1", timestamp=T["10:00"], attachments=[{"name": "a.png", "size": 3}],
                reasoning={"steps": ["x"]})
        self.server.push_ok([chat("c", "t", [m], last_modified=T["10:00"], **extra)])
        got = by_id(self.server.fetch())["c"]
        for k, v in extra.items():
            self.assertEqual(got.get(k), v, k)
        self.assertEqual(got["messages"], [m])

    def test_created_at_earliest_updated_latest(self):
        self.server.push_ok([chat("c", "t", createdAt=T["09:00"], updatedAt=T["10:00"],
                                  last_modified=T["10:00"])])
        self.server.push_ok([chat("c", "t", createdAt=T["08:00"], updatedAt=T["09:30"],
                                  last_modified=T["09:30"])])
        got = by_id(self.server.fetch())["c"]
        self.assertEqual(parse_iso_ms(got["createdAt"]), parse_iso_ms(T["08:00"]))
        self.assertEqual(parse_iso_ms(got["updatedAt"]), parse_iso_ms(T["10:00"]))
        self.assertEqual(parse_iso_ms(got["lastModified"]), parse_iso_ms(T["10:00"]))
        self.server.push_ok([chat("c", "t", createdAt=T["09:30"], updatedAt=T["11:00"],
                                  last_modified=T["11:00"])])
        got = by_id(self.server.fetch())["c"]
        self.assertEqual(parse_iso_ms(got["createdAt"]), parse_iso_ms(T["08:00"]))
        self.assertEqual(parse_iso_ms(got["updatedAt"]), parse_iso_ms(T["11:00"]))
        self.assertEqual(parse_iso_ms(got["lastModified"]), parse_iso_ms(T["11:00"]))

    def test_same_sync_twice_is_idempotent(self):
        payload = {"deviceId": "devA", "chats": [
            chat("c", "t", [msg("m1", timestamp=T["10:00"])], last_modified=T["10:00"]),
            chat("d", "u", [msg("m2", timestamp=T["10:01"])], last_modified=T["10:01"])]}
        self.server.sync_ok(payload)
        state = self.server.fetch()
        again = self.server.sync_ok(payload)
        self.assertEqual(again["missing"], [])
        self.assertEqual(self.server.fetch(), state)


class MessageMergeTest(ServerTestCase):

    def test_messages_union_by_id(self):
        m1 = msg("m1", timestamp=T["09:00"])
        self.server.sync_ok({"deviceId": "devA", "chats": [
            chat("c", "t", [m1, msg("mA", "from A", timestamp=T["10:00"])], last_modified=T["10:00"])]})
        doc = self.server.sync_ok({"deviceId": "devB", "chats": [
            chat("c", "t", [m1, msg("mB", "from B", timestamp=T["10:01"])], last_modified=T["10:01"])]})
        self.assertEqual(message_ids(self.server.fetch()[0]), ["m1", "mA", "mB"])
        self.assertEqual(message_ids(by_id(doc["missing"])["c"]), ["m1", "mA", "mB"])

    def test_message_from_older_write_is_not_lost(self):
        m1 = msg("m1", timestamp=T["09:00"])
        self.server.push_ok([chat("c", "new title", [m1], last_modified=T["10:05"])])
        self.server.push_ok([chat("c", "stale title", [m1, msg("late", timestamp=T["10:00"])],
                                  last_modified=T["10:00"])])
        got = self.server.fetch()[0]
        self.assertEqual(got["title"], "new title")
        self.assertEqual(message_ids(got), ["m1", "late"])

    def test_chat_without_messages_key_keeps_messages(self):
        self.server.push_ok([chat("c", "t", [msg("m1", timestamp=T["09:00"])], last_modified=T["10:00"])])
        self.server.push_ok([{"id": "c", "title": "renamed", "lastModified": T["10:05"]}])
        got = self.server.fetch()[0]
        self.assertEqual(got["title"], "renamed")
        self.assertEqual(message_ids(got), ["m1"])

    def test_messages_ordered_by_timestamp_then_first_received(self):
        msgs = [msg("z", timestamp="2024-01-15T10:00:03.000Z"),
                msg("b", timestamp="2024-01-15T10:00:01.000Z"),
                msg("a", timestamp="2024-01-15T10:00:01.000Z"),
                msg("y", timestamp="2024-01-15T10:00:00.000Z")]
        self.server.push_ok([chat("c", "t", msgs, last_modified=T["10:01"])])
        # b and a share a timestamp: they keep the order they came in (#10.3)
        self.assertEqual(message_ids(self.server.fetch()[0]), ["y", "b", "a", "z"])
        # A message merged in later lands in its place, not at the end.
        self.server.push_ok([chat("c", "t", [msg("x", timestamp="2024-01-15T10:00:02.000Z")],
                                  last_modified=T["10:01"])])
        self.assertEqual(message_ids(self.server.fetch()[0]), ["y", "b", "a", "x", "z"])
        # one received later with the same timestamp goes after those before it
        self.server.push_ok([chat("c", "t", [msg("0", timestamp="2024-01-15T10:00:01.000Z")],
                                  last_modified=T["10:01"])])
        self.assertEqual(message_ids(self.server.fetch()[0]), ["y", "b", "a", "0", "x", "z"])

    def test_twelve_messages_with_one_timestamp_keep_their_order(self):
        """#10.3: never m0, m1, m10, m11, m2 ... (ids compared as strings)."""
        ids = ["m%d" % i for i in range(12)]
        same = "2024-01-15T10:00:00.000Z"
        self.server.push_ok([chat("c", "t", [msg(i, timestamp=same) for i in ids],
                                  last_modified=T["10:01"])])
        self.assertEqual(message_ids(self.server.fetch()[0]), ids)
        doc = self.server.sync_ok({"deviceId": "fresh", "chats": []})
        self.assertEqual(message_ids(by_id(doc["missing"])["c"]), ids)
        v2 = self.server.v2_ok({"deviceId": "v2dev", "cursor": None})
        self.assertEqual([m["id"] for m in v2["chats"][0]["messages"]], ids)

    def test_mixed_timestamp_formats_ordered_by_instant(self):
        msgs = [msg("e", timestamp=1705312800000),                  # 10:00Z as epoch ms
                msg("o", timestamp="2024-01-15T11:30:00+02:00"),    # 09:30Z
                msg("i", timestamp="2024-01-15T09:45:00.500Z")]
        self.server.push_ok([chat("c", "t", msgs, last_modified=T["10:01"])])
        self.assertEqual(message_ids(self.server.fetch()[0]), ["o", "i", "e"])

    def test_edited_message_last_writer_wins(self):
        self.server.push_ok([chat("c", "t", [msg("m1", "v1", timestamp=T["09:00"])],
                                  last_modified=T["10:00"])])
        self.server.push_ok([chat("c", "t", [msg("m1", "v2", timestamp=T["09:00"])],
                                  last_modified=T["10:05"])])
        self.server.push_ok([chat("c", "t", [msg("m1", "v0", timestamp=T["09:00"])],
                                  last_modified=T["09:30"])])
        got = self.server.fetch()[0]
        self.assertEqual([m["content"] for m in got["messages"]], ["v2"])

    def test_private_messages_never_stored_or_returned(self):
        secret = "SECRET-private-%d" % now_ms()
        c = chat("c", "t", [msg("m1", timestamp=T["09:00"]),
                            msg("p1", secret, timestamp=T["09:30"], isPrivate=True),
                            msg("m2", timestamp=T["10:00"], isPrivate=False)],
                 last_modified=T["10:00"])
        doc = self.server.sync_ok({"deviceId": "devA", "chats": [c]})
        self.assertNotIn(secret, str(doc))
        self.assertEqual(message_ids(self.server.fetch()[0]), ["m1", "m2"])
        self.server.push_ok([c])
        other = self.server.sync_ok({"deviceId": "devB", "chats": []})
        self.assertEqual(message_ids(by_id(other["missing"])["c"]), ["m1", "m2"])
        self.assertNotIn(secret, str(other))
        self.server.stop()
        for name in os.listdir(self.server.tmpdir):
            if name.startswith("p.db"):
                with open(os.path.join(self.server.tmpdir, name), "rb") as f:
                    self.assertNotIn(secret.encode(), f.read(), "private text stored in " + name)


class ConcurrentSyncTest(ServerTestCase):
    SERVER_ARGS = ("--threads", "4")

    def test_concurrent_devices_lose_no_message(self):
        devices, rounds = 4, 10
        failures = []

        def device(d):
            held = []
            for r in range(rounds):
                held.append(msg("d%d-r%02d" % (d, r), timestamp=iso(1705312800000 + r * 1000 + d)))
                payload = {"deviceId": "dev%d" % d, "chats": [
                    chat("shared", "from dev%d" % d, held, last_modified=iso(1705312800000 + r * 1000 + d))]}
                try:
                    status, _, _ = self.server.sync(payload)
                except OSError as e:
                    failures.append(repr(e))
                    return
                if status != 200:
                    failures.append(status)

        threads = [threading.Thread(target=device, args=(d,), daemon=True) for d in range(devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
            self.assertFalse(t.is_alive(), "a device thread did not finish")
        self.assertEqual(failures, [])
        got = self.server.fetch()[0]
        self.assertEqual(len(got["messages"]), devices * rounds)
        self.assertEqual(sorted(message_ids(got)),
                         sorted("d%d-r%02d" % (d, r) for d in range(devices) for r in range(rounds)))
        # Last writer (latest lastModified: round 9, device 3) has the title.
        self.assertEqual(got["title"], "from dev3")


class DeletionMergeTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.old = iso(now_ms() - HOUR)
        self.server.push_ok([chat("c", "before", [msg("m1", timestamp=self.old)],
                                  last_modified=self.old)])

    def assertDeleted(self, cid="c"):
        self.assertNotIn(cid, by_id(self.server.fetch()))
        doc = self.server.sync_ok({"deviceId": "devZ", "chats": []})
        self.assertNotIn(cid, by_id(doc["missing"]))
        self.assertIn(cid, by_id(doc["deletions"]))

    def resend_old(self):
        """A device that missed the deletion re-sends its older copy, with an edit."""
        stale = chat("c", "stale edit", [msg("m1", timestamp=self.old),
                                         msg("m-stale", timestamp=self.old)],
                     last_modified=self.old)
        doc = self.server.sync_ok({"deviceId": "devB", "chats": [stale]})
        self.assertNotIn("c", by_id(doc["missing"]))
        self.assertIn("c", by_id(doc["deletions"]))
        self.server.push_ok([stale])

    def test_delete_chat_endpoint_stays_deleted(self):
        self.server.delete_chat("c")
        self.resend_old()
        self.assertDeleted()

    def test_delete_chats_endpoint_stays_deleted(self):
        self.server.delete_chats(["c"])
        self.resend_old()
        self.assertDeleted()

    def test_deleted_ids_stay_deleted(self):
        self.server.sync_ok({"deviceId": "devA", "chats": [], "deleted": ["c"]})
        self.resend_old()
        self.assertDeleted()

    def test_deletions_with_lamport_stay_deleted(self):
        self.server.sync_ok({"deviceId": "devA", "clientClock": 5, "chats": [],
                             "deletions": [{"id": "c", "lamport": [5, "devA"]}]})
        self.resend_old()
        self.assertDeleted()

    def test_deletion_records_stay_deleted(self):
        self.server.sync_ok({"deviceId": "devA", "chats": [],
                             "deletionRecords": [{"id": "c", "deletedAtLamport": [5, "devA"]}]})
        self.resend_old()
        self.assertDeleted()

    def test_delete_chat_then_stale_polyglot_copy_stays_deleted(self):
        # A chat a Polyglot device wrote, deleted through /deleteChat: the
        # deletion is stamped with a tick above every counter the server has
        # seen, so a stale Polyglot copy (lower counter) stays deleted.
        self.server.sync_ok({"deviceId": "devA", "clientClock": 2, "chats": [
            chat("c", "polyglot", [msg("m1", timestamp=self.old)], last_modified=self.old,
                 updatedAtLamport=[2, "devA"])]})
        self.server.delete_chat("c")
        stale = chat("c", "stale edit", [msg("m1", timestamp=self.old)], last_modified=self.old,
                     updatedAtLamport=[3, "devB"])
        doc = self.server.sync_ok({"deviceId": "devB", "clientClock": 3, "chats": [stale],
                                   "deletions": []})
        self.assertNotIn("c", by_id(doc["missing"]))
        self.assertIn("c", by_id(doc["deletions"]))
        self.assertDeleted()

    def test_lamport_write_outranks_time_only_deletion(self):
        # The documented price of one total order (docs/merge.md, "Which write
        # is newer"): a write carrying a Lamport counter is newer than any
        # write without one, so it brings back a chat that only time-only
        # writers had touched and /deleteChat deleted.
        self.server.delete_chat("c")
        copy = chat("c", "lamport copy", [msg("m1", timestamp=self.old)],
                    last_modified=self.old, updatedAtLamport=[3, "devB"])
        doc = self.server.sync_ok({"deviceId": "devB", "clientClock": 3, "chats": [copy]})
        self.assertNotIn("c", by_id(doc["deletions"]))
        self.assertIn("c", by_id(self.server.fetch()))

    def test_newer_write_brings_chat_back(self):
        self.server.delete_chat("c")
        self.assertDeleted()
        soon = iso(now_ms() + 60 * 1000)
        self.server.push_ok([chat("c", "revived", [msg("m-new", timestamp=soon)], last_modified=soon)])
        got = by_id(self.server.fetch())
        self.assertIn("c", got)
        self.assertEqual(got["c"]["title"], "revived")
        self.assertIn("m-new", message_ids(got["c"]))
        doc = self.server.sync_ok({"deviceId": "devZ", "chats": []})
        self.assertIn("c", by_id(doc["missing"]))
        self.assertNotIn("c", by_id(doc["deletions"]))

    def test_newer_write_brings_back_chat_deleted_by_lamport(self):
        self.server.sync_ok({"deviceId": "devA", "chats": [],
                             "deletions": [{"id": "c", "lamport": [5, "devA"]}]})
        soon = iso(now_ms() + 60 * 1000)
        self.server.sync_ok({"deviceId": "devB", "chats": [
            chat("c", "revived", [msg("m-new", timestamp=soon)], last_modified=soon,
                 updatedAtLamport=[6, "devB"])]})
        self.assertEqual(by_id(self.server.fetch())["c"]["title"], "revived")


class OmittedFieldTest(ServerTestCase):

    def test_newer_field_the_client_did_not_send_is_returned(self):
        # Another device set the model after the client's last edit: the
        # client's chat (which omits model) differs from the merge.
        self.server.push_ok([chat("c", "t", last_modified=T["10:00"])])
        self.server.push_ok([{"id": "c", "model": "gpt-4o", "lastModified": T["11:00"]}])
        doc = self.server.sync_ok({"deviceId": "polyglot-1", "clientClock": 3, "chats": [
            {"id": "c", "title": "t", "messages": [], "lastModified": T["10:05"],
             "updatedAtLamport": [3, "polyglot-1"]}]})
        back = by_id(doc["missing"]).get("c")
        self.assertIsNotNone(back, "the merged chat has a newer model the client lacks")
        self.assertEqual(back["model"], "gpt-4o")
        self.assertEqual(back["title"], "t")
        self.assertGreater(back["updatedAtLamport"][0], 3)


class DeleteEndpointOutcomeTest(ServerTestCase):
    """/deleteChat(s) and `deleted` ids: the chat is gone, and the answer says what happened."""

    def polyglot_chat(self, cid):
        # Written by today's Polyglot client: a Lamport tuple, a time an hour ago.
        hour_ago = iso(now_ms() - HOUR)
        self.server.sync_ok({"deviceId": "devP", "clientClock": 5, "chats": [
            {"id": cid, "title": "from Polyglot", "messages": [msg("m1", timestamp=hour_ago)],
             "lastModified": hour_ago, "updatedAtLamport": [5, "devP"]}], "deletions": []})
        self.assertIn(cid, by_id(self.server.fetch()))

    def assertGone(self, cid):
        self.assertNotIn(cid, by_id(self.server.fetch()))
        doc = self.server.sync_ok({"deviceId": "devQ", "chats": []})
        self.assertNotIn(cid, by_id(doc["missing"]))
        self.assertIn(cid, by_id(doc["deletions"]))

    def test_delete_chat_removes_a_chat_written_with_lamport(self):
        self.polyglot_chat("p1")
        self.assertEqual(self.server.delete_chat("p1"), {"ok": True, "deleted": True})
        self.assertGone("p1")

    def test_delete_chats_removes_a_chat_written_with_lamport(self):
        self.polyglot_chat("p2")
        self.assertEqual(self.server.delete_chats(["p2"]), {"ok": True, "deletedCount": 1})
        self.assertGone("p2")

    def test_deleted_ids_remove_a_chat_written_with_lamport(self):
        self.polyglot_chat("p3")
        self.server.sync_ok({"chats": [], "deleted": ["p3"]})   # a seed-style client
        self.assertGone("p3")

    # A write stamped a little in the future (inside the skew) may win over a
    # deletion stamped now; whichever way it goes, the answer must say what
    # happened.

    def test_delete_chat_answer_matches_outcome(self):
        self.server.push_ok([chat("f1", "t", last_modified=iso(now_ms() + 120 * 1000))])
        r = self.server.delete_chat("f1")
        self.assertEqual(r["deleted"], "f1" not in by_id(self.server.fetch()),
                         "deleteChat answered %r" % r)

    def test_delete_chats_answer_matches_outcome(self):
        self.server.push_ok([chat("f2", "t", last_modified=iso(now_ms() + 120 * 1000))])
        r = self.server.delete_chats(["f2"])
        self.assertEqual(r["deletedCount"], 0 if "f2" in by_id(self.server.fetch()) else 1,
                         "deleteChats answered %r" % r)


class ClockSkewTest(ServerTestCase):

    def test_future_times_clamped_to_now_plus_300s(self):
        before = now_ms()
        self.server.push_ok([chat("c", "from the future", last_modified=iso(before + 10 * HOUR),
                                  updatedAt=iso(before + 10 * HOUR))])
        after = now_ms()
        got = self.server.fetch()[0]
        for k in ("lastModified", "updatedAt"):
            ms = parse_iso_ms(got[k])
            self.assertGreaterEqual(ms, before + 300 * 1000 - 1000, k)
            self.assertLessEqual(ms, after + 300 * 1000 + 1000, k)

    def test_near_future_time_not_clamped(self):
        t = iso(now_ms() + 120 * 1000)
        self.server.push_ok([chat("c", "t", last_modified=t)])
        self.assertEqual(parse_iso_ms(self.server.fetch()[0]["lastModified"]), parse_iso_ms(t))


class CustomSkewTest(ServerTestCase):
    SERVER_ARGS = ("--max-clock-skew", "1")

    def test_bad_clock_cannot_win_forever(self):
        self.server.push_ok([chat("c", "bad clock", last_modified=iso(now_ms() + 10 * HOUR))])
        stored = parse_iso_ms(self.server.fetch()[0]["lastModified"])
        # Any honest write made after that one, inside the skew, must now win:
        # wait (polling) until the wall clock is past the first answer.
        first_done = now_ms()
        while now_ms() <= first_done + 5:
            pass
        honest = now_ms() + 1000
        self.assertGreater(honest, stored)
        self.server.push_ok([chat("c", "honest", last_modified=iso(honest))])
        self.assertEqual(self.server.fetch()[0]["title"], "honest")


class PolyglotClientTest(ServerTestCase):
    """Today's Polyglot client: no createdAt/updatedAt/model, Lamport tuples."""

    def test_polyglot_shaped_sync_keeps_stored_model(self):
        self.server.push_ok([chat("c", "t", [msg("m1", timestamp=T["09:00"])], last_modified=T["10:00"],
                                  createdAt=T["09:00"], updatedAt=T["10:00"], model="gpt-4")])
        payload = {
            "deviceId": "polyglot-1",
            "clientClock": 12,
            "chats": [{"id": "c", "title": "t renamed",
                       "messages": [msg("m1", timestamp=T["09:00"]),
                                    msg("m2", "new", timestamp=T["10:05"])],
                       "lastModified": T["10:05"],
                       "updatedAtLamport": [12, "polyglot-1"]},
                      {"id": "n", "title": "brand new", "messages": [],
                       "lastModified": T["10:05"], "updatedAtLamport": [11, "polyglot-1"]}],
            "deletions": [],
        }
        doc = self.server.sync_ok(payload)
        for c in doc["missing"]:
            self.assertLamport(c.get("updatedAtLamport"))
        got = by_id(self.server.fetch())
        self.assertEqual(got["c"]["model"], "gpt-4")
        self.assertEqual(got["c"]["title"], "t renamed")
        self.assertEqual(message_ids(got["c"]), ["m1", "m2"])
        self.assertEqual(parse_iso_ms(got["c"]["createdAt"]), parse_iso_ms(T["09:00"]))
        self.assertIn("n", got)
        self.assertNotIn("n", by_id(doc["missing"]))
        # Whether "c" comes back is the server's choice here (the client omits
        # model by habit); if it does, it must be whole and newer than the client's.
        back = by_id(doc["missing"]).get("c")
        if back is not None:
            self.assertEqual(back["model"], "gpt-4")
            self.assertEqual(message_ids(back), ["m1", "m2"])
            self.assertGreater(back["updatedAtLamport"][0], 12)
        # Syncing what it now holds gives nothing back.
        again = self.server.sync_ok({"deviceId": "polyglot-1", "clientClock": doc["serverClock"],
                                     "chats": list(got.values()), "deletions": []})
        self.assertEqual(again["missing"], [])


if __name__ == "__main__":
    unittest.main()
