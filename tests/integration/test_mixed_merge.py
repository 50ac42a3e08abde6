"""Mixed clients on the same chats: v2, legacy Lamport (Polyglot-style) and
time-only (seed-style) devices. Named regressions of issue #11 (1, 2, 3) and
the base rule of #10.2, judged by the rules of docs/merge.md worked by hand.
"""
import unittest

from harness import ServerTestCase, by_id, chat, iso, message_ids, msg, now_ms

MIN = 60 * 1000


def fields_of(v2_answer, cid):
    """The chat entry for `cid` in a v2 answer, or None."""
    for c in v2_answer["chats"]:
        if c["id"] == cid:
            return c
    return None


class Issue11Regressions(ServerTestCase):

    def test_issue11_1_acknowledged_v2_write_is_not_undone(self):
        """#11.1: a legacy client's echo of a chat returned to it re-stamped the
        content, so the phone's later rename (clock 3) lost, and the phone was
        never told. With the base rule the echo is no write: the rename stands."""
        s = self.server
        s.v2_ok({"deviceId": "phone", "changes": [
            {"chatId": "c", "clock": 1, "fields": {"title": "A"},
             "messages": [{"id": "m1", "role": "user", "content": "hi"}]}]})
        first = s.sync_ok({"deviceId": "laptop", "clientClock": 1,
                           "chats": [{"id": "c", "title": "A", "updatedAtLamport": [1, "laptop"]}]})
        # the laptop takes what it is given, and echoes it unchanged
        back = by_id(first["missing"])["c"]
        s.sync_ok({"deviceId": "laptop", "clientClock": back["updatedAtLamport"][0],
                   "chats": [back]})
        ans = s.v2_ok({"deviceId": "phone", "cursor": "c1.1.1", "changes": [
            {"chatId": "c", "clock": 3, "fields": {"title": "B"}}]})
        self.assertEqual(ans["accepted"], 1)
        self.assertEqual(by_id(s.fetch())["c"]["title"], "B")
        # the laptop echoes its copy (title A) again: still carried, not written
        s.sync_ok({"deviceId": "laptop", "clientClock": back["updatedAtLamport"][0],
                   "chats": [back]})
        self.assertEqual(by_id(s.fetch())["c"]["title"], "B")
        got = by_id(s.sync_ok({"deviceId": "laptop", "chats": [back]})["missing"])["c"]
        self.assertEqual(got["title"], "B", "the laptop must be sent the phone's rename")

    def test_issue11_1_lost_write_reaches_its_own_device(self):
        """A re-announce never hides the winner from the device whose write
        lost, even when the winner came from that same device earlier."""
        s = self.server
        first = s.v2_ok({"deviceId": "phone", "cursor": None, "changes": [
            {"chatId": "c", "clock": 5, "fields": {"title": "new"}}]})
        cursor = first["cursor"]
        # a stale write from the same device (older clock) loses to its own
        ans = s.v2_ok({"deviceId": "phone", "cursor": cursor, "changes": [
            {"chatId": "c", "clock": 3, "fields": {"title": "old"}}]})
        entry = fields_of(ans, "c")
        self.assertIsNotNone(entry, "the phone holds 'old' now: it must be sent the winner")
        self.assertEqual(entry["fields"]["title"], "new")
        # and a write that loses to another device's is answered the same way
        s.sync_ok({"deviceId": "laptop", "clientClock": 9, "chats": [
            {"id": "c", "title": "laptop's", "updatedAtLamport": [9, "laptop"]}]})
        ans = s.v2_ok({"deviceId": "phone", "cursor": ans["cursor"], "changes": [
            {"chatId": "c", "clock": 6, "fields": {"title": "phone's"}}]})
        self.assertEqual(fields_of(ans, "c")["fields"]["title"], "laptop's")

    def test_issue11_2_deleted_message_stays_deleted_through_a_revival(self):
        """#11.2: deleted message, then chat deleted and brought back between two
        pulls: the pull sends the chat whole, and must say that "a" is gone."""
        s = self.server
        s.v2_ok({"deviceId": "W", "changes": [{"chatId": "p", "clock": 1, "messages": [
            {"id": "a", "role": "user", "content": "A"},
            {"id": "b", "role": "user", "content": "B"}]}]})
        r = s.v2_ok({"deviceId": "R", "cursor": None})
        self.assertEqual([m["id"] for m in fields_of(r, "p")["messages"]], ["a", "b"])
        s.v2_ok({"deviceId": "W", "changes": [{"chatId": "p", "clock": 2, "deleteMessages": ["a"]}]})
        s.v2_ok({"deviceId": "W", "changes": [{"chatId": "p", "clock": 3, "deleteChat": True}]})
        s.v2_ok({"deviceId": "W", "changes": [{"chatId": "p", "clock": 4, "messages": [
            {"id": "c", "role": "user", "content": "C"}]}]})
        pull = s.v2_ok({"deviceId": "R", "cursor": r["cursor"]})
        entry = fields_of(pull, "p")
        self.assertIsNotNone(entry)
        self.assertEqual([m["id"] for m in entry.get("messages", [])], ["b", "c"])
        self.assertIn("a", entry.get("deletedMessages", []))
        # a device that never saw "a" (cursor null) is not told about it
        fresh = fields_of(s.v2_ok({"deviceId": "F", "cursor": None}), "p")
        self.assertNotIn("deletedMessages", fresh)

    def test_issue11_3_time_only_client_can_win_after_a_lamport_client(self):
        """#11.3: once a Lamport client synced a chat, a time-only write made
        later still wins; a Lamport write made after seeing it wins again; a
        stale time-only copy (older than the Lamport write) does not."""
        s = self.server
        t0 = now_ms() - 10 * MIN
        s.sync_ok({"deviceId": "poly", "clientClock": 4, "chats": [
            chat("c", "lamport title", [msg("m1", timestamp=iso(t0))], last_modified=iso(t0),
                 updatedAtLamport=[4, "poly"])]})
        s.push_ok([{"id": "c", "title": "seed title", "lastModified": iso(t0 + 5 * MIN)}])
        self.assertEqual(by_id(s.fetch())["c"]["title"], "seed title")
        # the Lamport client is sent the chat (a fresh tick), then renames after it
        got = by_id(s.sync_ok({"deviceId": "poly", "clientClock": 4, "chats": []})["missing"])["c"]
        n = got["updatedAtLamport"][0] + 1
        got.update(title="lamport again", updatedAtLamport=[n, "poly"],
                   lastModified=iso(t0 + 6 * MIN))
        s.sync_ok({"deviceId": "poly", "clientClock": n, "chats": [got]})
        self.assertEqual(by_id(s.fetch())["c"]["title"], "lamport again")
        # a time-only copy stamped before the Lamport rename loses
        s.push_ok([{"id": "c", "title": "stale seed", "lastModified": iso(t0 + 1 * MIN)}])
        self.assertEqual(by_id(s.fetch())["c"]["title"], "lamport again")
        # and one made later wins again
        s.push_ok([{"id": "c", "title": "seed later", "lastModified": iso(t0 + 8 * MIN)}])
        self.assertEqual(by_id(s.fetch())["c"]["title"], "seed later")

    def test_issue11_3_time_only_client_revives_a_lamport_deleted_chat_with_a_later_edit(self):
        s = self.server
        t0 = now_ms() - 10 * MIN
        s.sync_ok({"deviceId": "poly", "clientClock": 3, "chats": [
            chat("c", "t", [msg("m1", timestamp=iso(t0))], last_modified=iso(t0),
                 updatedAtLamport=[3, "poly"])]})
        s.sync_ok({"deviceId": "poly", "clientClock": 4, "chats": [],
                   "deletions": [{"id": "c", "lamport": [4, "poly"]}]})
        self.assertNotIn("c", by_id(s.fetch()))
        s.push_ok([chat("c", "old copy", [msg("m1", timestamp=iso(t0))], last_modified=iso(t0))])
        self.assertNotIn("c", by_id(s.fetch()), "a copy from before the deletion stays deleted")
        s.push_ok([chat("c", "edited later", [msg("m1", timestamp=iso(t0))],
                        last_modified=iso(now_ms() + 1000))])
        self.assertEqual(by_id(s.fetch())["c"]["title"], "edited later")


class BaseRuleTest(ServerTestCase):
    """#10.2: B renames X; C, stale, adds a message and uploads its whole chat
    with the old title and a stamp that ties or beats B's: both survive."""

    def lamport_case(self, c_counter, c_downloaded_only):
        s = self.server
        t0 = iso(now_ms() - 10 * MIN)
        x = chat("x", "original", [msg("m1", timestamp=t0)], last_modified=t0,
                 updatedAtLamport=[1, "B"])
        s.sync_ok({"deviceId": "B", "clientClock": 1, "chats": [x]})
        c_copy = by_id(s.sync_ok({"deviceId": "C", "clientClock": 0, "chats": []})["missing"])["x"]
        if not c_downloaded_only:   # C's next sync carries its copy as it got it
            s.sync_ok({"deviceId": "C", "clientClock": c_copy["updatedAtLamport"][0],
                       "chats": [c_copy]})
        b_copy = dict(x, title="renamed by B", updatedAtLamport=[5, "B"])
        s.sync_ok({"deviceId": "B", "clientClock": 5, "chats": [b_copy]})
        stale = dict(c_copy, messages=c_copy["messages"] + [msg("m2", "from C", timestamp=t0)],
                     updatedAtLamport=[c_counter, "C"])
        s.sync_ok({"deviceId": "C", "clientClock": c_counter, "chats": [stale]})
        got = by_id(s.fetch())["x"]
        self.assertEqual(got["title"], "renamed by B")
        self.assertEqual(message_ids(got), ["m1", "m2"])
        # and C is sent the rename
        back = by_id(s.sync_ok({"deviceId": "C", "clientClock": c_counter,
                                "chats": [stale]})["missing"])["x"]
        self.assertEqual(back["title"], "renamed by B")

    def test_lamport_tying_stamp(self):
        self.lamport_case(5, False)

    def test_lamport_higher_stamp(self):
        self.lamport_case(9, False)

    def test_lamport_higher_stamp_right_after_download(self):
        self.lamport_case(9, True)

    def test_time_only_clients(self):
        s = self.server
        t0 = now_ms() - 10 * MIN
        x = chat("x", "original", [msg("m1", timestamp=iso(t0))], last_modified=iso(t0))
        s.sync_ok({"deviceId": "B", "chats": [x]})
        c_copy = by_id(s.sync_ok({"deviceId": "C", "chats": []})["missing"])["x"]
        s.sync_ok({"deviceId": "B", "chats": [dict(x, title="renamed by B",
                                                   lastModified=iso(t0 + MIN))]})
        stale = dict(c_copy, messages=c_copy["messages"] + [msg("m2", timestamp=iso(t0 + 2 * MIN))],
                     lastModified=iso(t0 + 2 * MIN))
        s.sync_ok({"deviceId": "C", "chats": [stale]})
        got = by_id(s.fetch())["x"]
        self.assertEqual(got["title"], "renamed by B")
        self.assertEqual(message_ids(got), ["m1", "m2"])

    def test_dropped_answer_and_retry_carry_along(self):
        """C's answer is lost (it keeps its old copy) and it retries: its old
        title is still carried along, whether it got the answer or not."""
        s = self.server
        t0 = iso(now_ms() - 10 * MIN)
        x = chat("x", "original", [msg("m1", timestamp=t0)], last_modified=t0,
                 updatedAtLamport=[1, "B"])
        s.sync_ok({"deviceId": "B", "clientClock": 1, "chats": [x]})
        c_copy = dict(x, updatedAtLamport=[2, "C"])
        s.sync_ok({"deviceId": "C", "clientClock": 2, "chats": [c_copy]})   # C's base: x
        s.sync_ok({"deviceId": "B", "clientClock": 5, "chats": [
            dict(x, title="renamed by B", updatedAtLamport=[5, "B"])]})
        s.sync_ok({"deviceId": "C", "clientClock": 2, "chats": [c_copy]})   # answer "lost"
        s.sync_ok({"deviceId": "C", "clientClock": 2, "chats": [c_copy]})   # retried
        c_edit = dict(c_copy, messages=[msg("m1", timestamp=t0), msg("m2", timestamp=t0)],
                      updatedAtLamport=[7, "C"])
        s.sync_ok({"deviceId": "C", "clientClock": 7, "chats": [c_edit]})
        got = by_id(s.fetch())["x"]
        self.assertEqual(got["title"], "renamed by B")
        self.assertEqual(message_ids(got), ["m1", "m2"])

    def test_real_edit_is_still_a_write(self):
        """A value the device changed is a write: C's rename after seeing B's wins."""
        s = self.server
        t0 = iso(now_ms() - 10 * MIN)
        x = chat("x", "original", [], last_modified=t0, updatedAtLamport=[1, "B"])
        s.sync_ok({"deviceId": "B", "clientClock": 1, "chats": [x]})
        c_copy = by_id(s.sync_ok({"deviceId": "C", "chats": []})["missing"])["x"]
        n = c_copy["updatedAtLamport"][0] + 1
        s.sync_ok({"deviceId": "C", "clientClock": n, "chats": [
            dict(c_copy, title="C's title", updatedAtLamport=[n, "C"])]})
        self.assertEqual(by_id(s.fetch())["x"]["title"], "C's title")

    def test_stale_echo_of_deleted_chat_is_told_to_drop_it(self):
        """A carried-along copy of a chat deleted meanwhile does not bring it
        back, and the deletion it is sent dominates the copy's tuple (the
        Polyglot client drops a chat only then)."""
        s = self.server
        t0 = iso(now_ms() - 10 * MIN)
        x = chat("x", "t", [msg("m1", timestamp=t0)], last_modified=t0, updatedAtLamport=[1, "B"])
        s.sync_ok({"deviceId": "B", "clientClock": 1, "chats": [x]})
        c_copy = by_id(s.sync_ok({"deviceId": "C", "chats": []})["missing"])["x"]
        s.sync_ok({"deviceId": "B", "clientClock": 2, "chats": [],
                   "deletions": [{"id": "x", "lamport": [2, "B"]}]})
        doc = s.sync_ok({"deviceId": "C", "chats": [c_copy]})
        self.assertNotIn("x", by_id(s.fetch()))
        dele = by_id(doc["deletions"])["x"]
        self.assertGreaterEqual((dele["lamport"][0], dele["lamport"][1]),
                                (c_copy["updatedAtLamport"][0], c_copy["updatedAtLamport"][1]))


if __name__ == "__main__":
    unittest.main()
