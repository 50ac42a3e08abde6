"""
The device registry (issue 18, docs/protocol.md "Devices"): every device
that syncs is recorded per user with first/last seen, its client (the v2
request's `client`, else User-Agent), protocol and the change sequence it
acknowledged: a v2 device's `ack` (else the BASE of the `cursor` it sends),
a legacy device's /sync (the answer holds everything up to the user's
sequence). `polysyncd devices list --user U [--json]`, `devices forget`.
Oracle: the cursors the server itself returned ("c1.BASE.POS").
"""
import json
import time
import unittest

from harness import ServerTestCase, run_polysyncd, store_sql
from sectools import SecurityTestCase


def base_of(cursor):
    return int(cursor.split(".")[1])


class DevicesTest(ServerTestCase):

    def admin(self, *args, expect=0):
        r = run_polysyncd(list(args) + ["--db", self.server.db_url])
        self.assertEqual(r.returncode, expect, "polysyncd %r: %s%s" % (args, r.stdout, r.stderr))
        return r

    def devices(self, user="local", *more):
        rows = json.loads(self.admin("devices", "list", "--user", user, "--json", *more).stdout)
        return {r["id"]: r for r in rows}

    def test_v2_device_is_recorded_with_its_acknowledgement(self):
        s = self.server
        t0 = int(time.time() * 1000)
        # a tombstone the watch (which never syncs again) holds: acks then
        # matter, and each one is written at once (docs/protocol.md)
        s.v2_ok({"deviceId": "watch", "cursor": None,
                 "changes": [{"chatId": "gone", "fields": {"title": "g"}},
                             {"chatId": "gone", "clock": 3, "deleteChat": True}]})
        first = s.v2_ok({"deviceId": "laptop", "cursor": None, "client": "polysync/0.1",
                         "changes": [{"chatId": "c1", "fields": {"title": "a"}}]})
        d = self.devices()["laptop"]
        self.assertEqual((d["protocol"], d["client"], d["ackedSeq"]), ("v2", "polysync/0.1", 0),
                         "a first sync (no cursor) has applied nothing yet: %r" % d)
        self.assertFalse(d["expired"])
        # another device changes something; the laptop pulls it, then acks
        s.v2_ok({"deviceId": "phone", "cursor": None,
                 "changes": [{"chatId": "c2", "fields": {"title": "b"}}]})
        pulled = s.v2_ok({"deviceId": "laptop", "cursor": first["cursor"]})
        self.assertEqual(self.devices()["laptop"]["ackedSeq"], base_of(first["cursor"]),
                         "the cursor sent is what the device has applied")
        s.v2_ok({"deviceId": "laptop", "cursor": pulled["cursor"], "ack": pulled["cursor"]})
        d = self.devices()["laptop"]
        self.assertEqual(d["ackedSeq"], base_of(pulled["cursor"]))
        self.assertGreater(d["ackedSeq"], base_of(first["cursor"]))
        self.assertGreaterEqual(d["lastSeen"], d["firstSeen"])
        self.assertEqual(set(self.devices()), {"watch", "laptop", "phone"})
        # an explicit ack may lag the cursor (a client that pipelines)
        s.v2_ok({"deviceId": "laptop", "cursor": pulled["cursor"], "ack": first["cursor"]})
        self.assertEqual(self.devices()["laptop"]["ackedSeq"], base_of(first["cursor"]))
        self.assertGreaterEqual(int(time.time() * 1000) + 1000, t0)

    def test_bad_ack_is_400_and_changes_nothing(self):
        s = self.server
        for bad in ("nonsense", 7, "c1.5.2", {"x": 1}):
            with self.subTest(ack=bad):
                status, _, doc = s.v2({"deviceId": "d", "cursor": None, "ack": bad,
                                       "changes": [{"chatId": "c9", "fields": {"title": "no"}}]})
                self.assertEqual(status, 400, doc)
                self.assertEqual((doc["code"], doc.get("field")), ("invalid_payload", "ack"), doc)
        self.assertEqual(s.fetch(), [], "a refused request changes nothing")
        self.assertEqual(self.devices(), {})

    def test_legacy_device_with_an_id_is_a_device_and_its_sync_the_ack(self):
        s = self.server
        s.v2_ok({"deviceId": "laptop", "cursor": None,
                 "changes": [{"chatId": "c1", "fields": {"title": "a"}},
                             {"chatId": "c2", "fields": {"title": "b"}}]})
        status, _, _ = s.request("POST", "/sync", body={"deviceId": "polyglot-tab", "chats": []},
                                 headers={"User-Agent": "Mozilla/5.0 test"})
        self.assertEqual(status, 200)
        devices = self.devices()
        self.assertEqual(set(devices), {"laptop", "polyglot-tab"})
        d = devices["polyglot-tab"]
        self.assertEqual((d["protocol"], d["client"]), ("legacy", "Mozilla/5.0 test"))
        # its answer held both chats: the user's sequence after the two changes
        later = s.v2_ok({"deviceId": "probe", "cursor": None})
        self.assertEqual(d["ackedSeq"], base_of(later["cursor"]))
        # /pushChats answers nothing: seen, but no acknowledgement
        s.request("POST", "/pushChats", body={"deviceId": "polyglot-tab", "chats": []})
        self.assertEqual(self.devices()["polyglot-tab"]["ackedSeq"], d["ackedSeq"])
        # no deviceId: the device "" that acknowledges nothing (time rule)
        s.sync_ok({"chats": []})
        anon = self.devices()[""]
        self.assertEqual((anon["protocol"], anon["ackedSeq"]), ("legacy", -1))
        text = self.admin("devices", "list", "--user", "local").stdout
        self.assertIn("(no deviceId)\tlegacy", text)

    def test_forget_and_expired_and_text_listing(self):
        s = self.server
        s.v2_ok({"deviceId": "old-phone", "cursor": None})
        s.v2_ok({"deviceId": "laptop", "cursor": None})
        # old-phone last synced 91 days ago (past the default retention, 90)
        store_sql(s.db_path, "UPDATE devices SET last_seen_ms = last_seen_ms - ?"
                  " WHERE device_id = 'old-phone'", (91 * 86400000,))
        devices = self.devices()
        self.assertTrue(devices["old-phone"]["expired"])
        self.assertFalse(devices["laptop"]["expired"])
        self.assertFalse(self.devices("local", "--tombstone-retention", "100")["old-phone"]
                         ["expired"], "within a 100-day retention it is not")
        text = self.admin("devices", "list", "--user", "local").stdout.splitlines()
        self.assertEqual(sorted(line.split("\t")[0] for line in text), ["laptop", "old-phone"])
        self.assertIn("expired", [line for line in text if line.startswith("old-phone")][0])
        r = self.admin("devices", "forget", "--user", "local", "old-phone")
        self.assertIn("forgot device old-phone", r.stdout)
        self.assertEqual(set(self.devices()), {"laptop"})
        r = self.admin("devices", "forget", "--user", "local", "old-phone", expect=1)
        self.assertIn("no device old-phone", r.stderr)
        self.admin("devices", "list", expect=1)  # --user is required
        self.admin("devices", "forget", "--user", "local", expect=1)  # which device?


class TombstoneCollectionTest(ServerTestCase):
    """docs/merge.md, "Tombstone collection by acknowledgement". Oracle:
    the rule — a tombstone goes once every device seen within the
    retention has acknowledged a cursor past it — and the store's rows."""

    def tombstones(self):
        chats = store_sql(self.server.db_path, "SELECT count(*) FROM chats WHERE NOT live")[0][0]
        msgs = store_sql(self.server.db_path,
                         "SELECT count(*) FROM messages WHERE value IS NULL")[0][0]
        return chats, msgs

    def age(self, device, days):
        store_sql(self.server.db_path, "UPDATE devices SET last_seen_ms = last_seen_ms - ?"
                  " WHERE device_id = ?", (days * 86400000, device))

    def test_one_device_collects_at_once_after_its_ack(self):
        s = self.server
        a = s.v2_ok({"deviceId": "A", "cursor": None, "changes": [
            {"chatId": "c1", "fields": {"title": "x"},
             "messages": [{"id": "m1", "role": "user", "content": "hi"},
                          {"id": "m2", "role": "user", "content": "yo"}]},
            {"chatId": "c2", "fields": {"title": "y"}}]})
        a = s.v2_ok({"deviceId": "A", "cursor": a["cursor"], "changes": [
            {"chatId": "c2", "clock": 5, "deleteChat": True},
            {"chatId": "c1", "clock": 5, "deleteMessages": ["m2"]}]})
        self.assertEqual(self.tombstones(), (1, 1), "kept until A acknowledges")
        a = s.v2_ok({"deviceId": "A", "cursor": a["cursor"]})
        self.assertEqual(self.tombstones(), (0, 0), "A applied them: nobody needs them")
        a = s.v2_ok({"deviceId": "A", "cursor": a["cursor"]})
        self.assertEqual([c["id"] for c in s.fetch()], ["c1"])

    def test_every_active_device_must_acknowledge_and_a_silent_one_expires(self):
        s = self.server
        cur = {}
        for d in ("A", "B", "C"):
            cur[d] = s.v2_ok({"deviceId": d, "cursor": None, "changes": [
                {"chatId": "c-" + d, "fields": {"title": d}}]})["cursor"]
        for d in ("A", "B", "C"):
            cur[d] = s.v2_ok({"deviceId": d, "cursor": cur[d]})["cursor"]
        cur["A"] = s.v2_ok({"deviceId": "A", "cursor": cur["A"], "changes": [
            {"chatId": "c-B", "clock": 9, "deleteChat": True}]})["cursor"]
        cur["A"] = s.v2_ok({"deviceId": "A", "cursor": cur["A"]})["cursor"]
        self.assertEqual(self.tombstones()[0], 1, "B and C have not acknowledged")
        b = s.v2_ok({"deviceId": "B", "cursor": cur["B"]})
        self.assertIn({"id": "c-B", "deleted": True}, b["chats"])
        cur["B"] = s.v2_ok({"deviceId": "B", "cursor": b["cursor"]})["cursor"]
        self.assertEqual(self.tombstones()[0], 1, "C has not acknowledged")
        # C goes silent past the retention: it no longer holds the tombstone
        self.age("C", 91)
        s.v2_ok({"deviceId": "A", "cursor": cur["A"], "ack": cur["A"],
                 "changes": [{"chatId": "c-A", "clock": 10, "fields": {"title": "A2"}}]})
        cur["A"] = s.v2_ok({"deviceId": "A", "cursor": cur["A"]})["cursor"]
        s.v2_ok({"deviceId": "A", "cursor": cur["A"]})
        self.assertEqual(self.tombstones()[0], 0)
        listed = json.loads(run_polysyncd(["devices", "list", "--user", "local", "--json",
                                           "--db", s.db_url]).stdout)
        self.assertTrue([d for d in listed if d["id"] == "C"][0]["expired"])
        # C comes back with its old cursor: 410, it resyncs
        status, _, doc = s.v2({"deviceId": "C", "cursor": cur["C"]})
        self.assertEqual((status, doc.get("code")), (410, "cursor_expired"), doc)
        # active devices never get 410 from a collection
        for d in ("A", "B"):
            self.assertEqual(s.v2({"deviceId": d, "cursor": cur[d]})[0], 200)

    def test_a_legacy_client_without_device_id_keeps_the_time_rule(self):
        s = self.server
        s.sync_ok({"chats": [{"id": "c1", "title": "t", "messages": []}]})  # no deviceId
        a = s.v2_ok({"deviceId": "A", "cursor": None})
        a = s.v2_ok({"deviceId": "A", "cursor": a["cursor"], "changes": [
            {"chatId": "c1", "clock": 50, "deleteChat": True}]})
        s.v2_ok({"deviceId": "A", "cursor": a["cursor"]})
        self.assertEqual(self.tombstones()[0], 1, "the anonymous client may hold c1")
        self.age("", 91)  # gone for longer than the retention
        a = s.v2_ok({"deviceId": "A", "cursor": a["cursor"], "changes": [
            {"chatId": "c2", "clock": 51, "fields": {"title": "n"}}]})
        s.v2_ok({"deviceId": "A", "cursor": a["cursor"]})
        self.assertEqual(self.tombstones()[0], 0)

    def test_a_legacy_device_keeps_the_time_rule_until_it_expires(self):
        # A legacy device has no cursor: no 410 can make it resync, so while
        # one is around its user's tombstones follow the time rule (another
        # legacy device holding an old copy, unknown here, would bring a
        # collected chat back: test_transfer's imported-store case)
        s = self.server
        s.sync_ok({"deviceId": "P", "chats": [{"id": "c1", "title": "t", "messages": []}]})
        a = s.v2_ok({"deviceId": "A", "cursor": None, "changes": [
            {"chatId": "c1", "clock": 40, "deleteChat": True}]})
        doc = s.sync_ok({"deviceId": "P", "chats": []})
        self.assertEqual([d["id"] for d in doc["deletions"]], ["c1"], "P hears of it")
        a = s.v2_ok({"deviceId": "A", "cursor": a["cursor"]})
        s.v2_ok({"deviceId": "A", "cursor": a["cursor"]})
        self.assertEqual(self.tombstones()[0], 1, "P, a legacy device, is around")
        self.age("P", 91)
        a = s.v2_ok({"deviceId": "A", "cursor": a["cursor"], "changes": [
            {"chatId": "c2", "clock": 41, "fields": {"title": "n"}}]})
        s.v2_ok({"deviceId": "A", "cursor": a["cursor"]})
        self.assertEqual(self.tombstones()[0], 0, "P expired: A's acknowledgement suffices")


class DevicesPerUserTest(SecurityTestCase):

    def test_devices_are_per_user_and_go_with_the_user(self):
        s = self.auth_server()
        bob = s.as_user(self.tok("bob"))
        s.v2_ok({"deviceId": "alice-laptop", "cursor": None})
        bob.v2_ok({"deviceId": "bob-phone", "cursor": None})
        db = ["--db", s.db_url]

        def listed(user):
            r = run_polysyncd(["devices", "list", "--user", user, "--json"] + db)
            self.assertEqual(r.returncode, 0, r.stderr)
            return [d["id"] for d in json.loads(r.stdout)]

        self.assertEqual(listed("alice"), ["alice-laptop"])
        self.assertEqual(listed("bob"), ["bob-phone"])
        # GET /v2/devices: a user's own devices only, with a token only
        doc = s.ok("GET", "/v2/devices")
        self.assertEqual([d["id"] for d in doc["devices"]], ["alice-laptop"])
        self.assertEqual(doc["devices"][0]["protocol"], "v2")
        self.assertEqual([d["id"] for d in bob.ok("GET", "/v2/devices")["devices"]],
                         ["bob-phone"])
        status, _, _ = s.request("GET", "/v2/devices", headers={"Authorization": None})
        self.assertEqual(status, 401)
        r = run_polysyncd(["user", "delete", "bob", "--yes"] + db)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(listed("bob"), [])
        self.assertEqual(listed("alice"), ["alice-laptop"])


if __name__ == "__main__":
    unittest.main()
