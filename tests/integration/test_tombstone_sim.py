"""
Tombstone collection by acknowledgement, simulated (issue 18): v2 devices
create and delete chats, sync at random, go offline, stay away longer than
the retention (their registry row is aged in the store: the server's
clock cannot be moved) and come back. Devices follow the client contract
of docs/protocol.md ("Devices"): on 410 they drop what they had synced,
keep their pending changes and resync.

Oracle, independent of the server's code: a chat whose deletion the server
accepted never appears again, on the server or on any device that synced
since (chats are never edited after creation, so no later write can
legitimately bring one back); every pending creation survives a 410; and
tombstone storage stays bounded — once every active device has synced
three times (push, pull, acknowledge), none is left. PS_SIM_SEED / PS_SIM_STEPS explore further; the run
prints the figures quoted in docs/merge.md.
"""
import os
import random
import unittest

from harness import ServerTestCase, store_sql

SEED = int(os.environ.get("PS_SIM_SEED", "18"))
STEPS = int(os.environ.get("PS_SIM_STEPS", "500"))


class Device:
    def __init__(self, name):
        self.name = name
        self.cursor = None
        self.clock = 0
        self.chats = set()      # synced, live chat ids
        self.pending = []       # changes not yet accepted by the server
        self.online = True
        self.resyncs = 0
        self.expired = False    # aged past the retention since its last sync

    def tick(self):
        self.clock += 1
        return self.clock


class TombstoneSimulation(ServerTestCase):

    def tombstones(self):
        return (store_sql(self.server.db_path, "SELECT count(*) FROM chats WHERE NOT live")[0][0] +
                store_sql(self.server.db_path,
                          "SELECT count(*) FROM messages WHERE value IS NULL")[0][0])

    def age(self, device, days):
        """The device was last seen `days` earlier. The server is restarted
        around the change, as time passing would find it: a running server
        skips rewriting an unchanged acknowledgement for a minute
        (server/devices.c), which days of absence always outlast."""
        self.server.stop()
        store_sql(self.server.db_path, "UPDATE devices SET last_seen_ms = last_seen_ms - ?"
                  " WHERE device_id = ?", (days * 86400000, device))
        self.server.start()

    def sync(self, d):
        """One sync of d, all pages; returns after its answer is applied."""
        s = self.server
        changes = list(d.pending)
        while True:
            status, _, doc = s.v2({"deviceId": d.name, "cursor": d.cursor, "changes": changes})
            if status == 410:
                # the contract: drop what was synced, keep what is pending, resync
                self.assertEqual(doc["code"], "cursor_expired")
                self.assertTrue(d.expired, "%s got 410 without being away past the "
                                "retention: a tombstone it needed was collected" % d.name)
                d.chats = set()
                d.cursor = None
                d.resyncs += 1
                continue
            self.assertEqual(status, 200, doc)
            d.expired = False
            for c in changes:
                if c.get("deleteChat"):
                    self.deleted.add(c["chatId"])
            # the chats it sent are still on the device (kept as pending
            # through a 410); a pull does not echo them back (protocol.md)
            for c in changes:
                if c.get("deleteChat"):
                    d.chats.discard(c["chatId"])
                else:
                    d.chats.add(c["chatId"])
            d.pending = [c for c in d.pending if c not in changes]
            changes = []
            d.clock = max(d.clock, doc["serverClock"])
            for c in doc["chats"]:
                if c.get("deleted"):
                    d.chats.discard(c["id"])
                else:
                    d.chats.add(c["id"])
            d.cursor = doc["cursor"]
            if not doc["more"]:
                break
        # the oracle: nothing deleted is live on this device
        back = d.chats & self.deleted
        self.assertEqual(back, set(), "deleted chats came back on %s" % d.name)

    def run_sim(self, seed, long_offline):
        rng = random.Random(seed)
        self.deleted = set()
        devices = [Device("d%d" % i) for i in range(4)]
        made = 0
        peak = 0
        for step in range(STEPS):
            d = rng.choice(devices)
            r = rng.random()
            if not d.online:
                if r < 0.15:
                    d.online = True
                continue
            if r < 0.30:
                made += 1
                cid = "c%d" % made
                d.pending.append({"chatId": cid, "clock": d.tick(), "fields": {"title": cid}})
                d.chats.add(cid)
            elif r < 0.45 and d.chats:
                cid = rng.choice(sorted(d.chats))
                d.chats.discard(cid)
                d.pending.append({"chatId": cid, "clock": d.tick(), "deleteChat": True})
            elif r < 0.90:
                self.sync(d)
            else:
                d.online = False
                if long_offline and rng.random() < 0.5:
                    self.age(d.name, 91)   # away longer than the retention
                    d.expired = True
            peak = max(peak, self.tombstones())
        # everyone comes back: round 1 pushes what is pending, round 2
        # pulls it everywhere, round 3 acknowledges round 2's cursors
        for _ in range(3):
            for d in devices:
                d.online = True
                self.sync(d)
        live = {c["id"] for c in self.server.fetch()}
        self.assertEqual(live & self.deleted, set(), "deleted chats came back on the server")
        pending_made = {c for d in devices for c in d.chats}
        for d in devices:
            self.assertEqual(d.chats, live, "%s converged" % d.name)
        self.assertEqual(pending_made - live, set())
        left = self.tombstones()
        self.assertEqual(left, 0, "every active device acknowledged: no tombstone kept")
        print("\nseed %d, %d steps, long offline %s: %d chats made, %d deleted, peak %d "
              "tombstones, %d resyncs after 410" %
              (seed, STEPS, long_offline, made, len(self.deleted), peak,
               sum(d.resyncs for d in devices)))
        return peak, len(self.deleted)

    def test_devices_coming_and_going(self):
        peak, deleted = self.run_sim(SEED, long_offline=False)
        self.assertLess(peak, max(deleted, 1) + 1)

    def test_with_long_offline_devices(self):
        peak, deleted = self.run_sim(SEED + 1, long_offline=True)
        self.assertLess(peak, max(deleted, 1) + 1)


if __name__ == "__main__":
    unittest.main()
