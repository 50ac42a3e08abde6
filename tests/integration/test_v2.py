"""The v2 sync protocol (POST /v2/sync), end to end, against docs/protocol.md
("v2", "Errors", "Limits") and docs/merge.md.

A Dev is one v2 device: it keeps its cursor and Lamport clock (set to at
least every serverClock it is answered), stamps each change it sends with
the next clock value, and keeps a local copy of the chats built only from
what it pushed and what it pulled (Local). The convergence tests compare
that copy with a fresh full pull (cursor null, a device id never used).

Shapes taken from the contract: a pulled chat is {id, fields?, createdAt?,
updatedAt?, lastModified?, messages?, deletedMessages?, deleted?}; the time
fields sit beside `fields` (as in the documented answer); a first sync
(cursor null) sends every live chat whole, with no deletions, leaving out
only parts equal to what that request itself sent; any other pull
sends only what another device changed since the cursor. A device merges
every entry into its copy (it never replaces a chat with an entry): later
pages of a first sync leave out what the device itself wrote meanwhile.
"""
import json
import os
import random
import sqlite3
import threading
import time
import unittest

import harness

from harness import ServerTestCase, by_id, chat, msg, now_ms, parse_iso_ms, iso

V2 = "/v2/sync"
TIME_FIELDS = ("createdAt", "updatedAt", "lastModified")
MAX_SAFE = 2 ** 53 - 1
MIB = 1024 * 1024
T0 = "2025-06-01T10:00:00.000Z"
T0_MS = parse_iso_ms(T0)


# ---- normalised views -----------------------------------------------------

def norm_time(v):
    if isinstance(v, str):
        return parse_iso_ms(v)
    return int(v)


def norm_msg(m):
    out = dict(m)
    if "timestamp" in out and out["timestamp"] is not None:
        out["timestamp"] = norm_time(out["timestamp"])
    return out


def norm_entry(e):
    """A pulled chat with times as epoch ms and empty parts left out."""
    out = {"id": e["id"]}
    if e.get("deleted"):
        out["deleted"] = True
    if e.get("fields"):
        out["fields"] = dict(e["fields"])
    for t in TIME_FIELDS:
        if e.get(t) is not None:
            out[t] = norm_time(e[t])
    if e.get("messages"):
        out["messages"] = {m["id"]: norm_msg(m) for m in e["messages"]}
    if e.get("deletedMessages"):
        out["deletedMessages"] = sorted(e["deletedMessages"])
    return out


def norm_entries(entries):
    return {e["id"]: norm_entry(e) for e in entries}


def legacy_view(c):
    """A /fetchChats or /sync chat, for comparing with what v2 sent."""
    return {"title": c.get("title"),
            "messages": {m["id"]: (m.get("role"), m.get("content")) for m in c.get("messages", [])}}


class Local:
    """A device's chats, built from its own changes and its pulls."""

    def __init__(self):
        self.chats = {}

    def _chat(self, cid):
        return self.chats.setdefault(cid, {"fields": {}, "times": {}, "messages": {},
                                           "deleted": False})

    def _time(self, c, key, value):
        value = norm_time(value)
        old = c["times"].get(key)
        if old is None:
            c["times"][key] = value
        elif key == "createdAt":
            c["times"][key] = min(old, value)
        else:
            c["times"][key] = max(old, value)

    def apply_change(self, ch):
        c = self._chat(ch["chatId"])
        if ch.get("deleteChat"):
            c["deleted"] = True
            return
        c["deleted"] = False
        for k, v in (ch.get("fields") or {}).items():
            if k in TIME_FIELDS:
                self._time(c, k, v)
            else:
                c["fields"][k] = v
        for m in ch.get("messages") or ():
            if not m.get("isPrivate"):
                c["messages"][m["id"]] = norm_msg(m)
        for mid in ch.get("deleteMessages") or ():
            c["messages"].pop(mid, None)

    def apply_delta(self, e):
        c = self._chat(e["id"])
        if e.get("deleted"):
            c["deleted"] = True
            return
        c["deleted"] = False
        c["fields"].update(e.get("fields") or {})
        for t in TIME_FIELDS:
            if e.get(t) is not None:
                c["times"][t] = norm_time(e[t])
        for m in e.get("messages") or ():
            c["messages"][m["id"]] = norm_msg(m)
        for mid in e.get("deletedMessages") or ():
            c["messages"].pop(mid, None)

    def live(self, times=True):
        out = {}
        for cid, c in self.chats.items():
            if c["deleted"]:
                continue
            out[cid] = {"fields": c["fields"], "messages": c["messages"]}
            if times:
                out[cid]["times"] = c["times"]
        return out


class Registry:
    """Unique values written by the random devices: who wrote each, at which clock."""

    def __init__(self):
        self.who = {}
        self.clock = {}

    def note_clocks(self, device, changes):
        for ch in changes:
            values = [v for v in (ch.get("fields") or {}).values() if isinstance(v, str)]
            values += [m.get("content") for m in ch.get("messages") or ()]
            for v in values:
                if self.who.get(v) == device:
                    self.clock[v] = ch["clock"]


FRESH = [0]
FRESH_LOCK = threading.Lock()


def fresh_device_id():
    with FRESH_LOCK:
        FRESH[0] += 1
        return "fresh-reader-%d" % FRESH[0]


# ---- a v2 device ------------------------------------------------------------

class Dev:
    def __init__(self, tc, server, name, origin=None):
        self.tc = tc            # the TestCase, for assertions
        self.server = server
        self.name = name
        self.cursor = None
        self.clock = 0
        self.local = Local()
        self.more = False
        self.whole_chain = True  # the current pull started from cursor null
        self.origin = origin     # a Registry of unique values (echo and clock checks)
        self.last_size = None
        self.echoes = []         # contract violations seen in pulls
        self.log = []            # (request cursor, limit, pushed, answer) for failure reports

    def stamp(self, ch):
        if "clock" not in ch:
            self.clock += 1
            ch["clock"] = self.clock
        return ch

    def sync(self, changes=(), limit=None, cursor="own", extra_headers=None, apply=True):
        changes = [self.stamp(dict(ch)) for ch in changes]
        payload = {"deviceId": self.name, "cursor": self.cursor if cursor == "own" else cursor}
        if limit is not None:
            payload["limit"] = limit
        if changes:
            payload["changes"] = changes
        if self.origin is not None:
            self.origin.note_clocks(self.name, changes)
        status, _, doc = self.server.v2(payload, headers=extra_headers)
        self.last_size = len(self.server.last_body)
        self.tc.assertEqual(status, 200, "%s: /v2/sync answered %d: %r"
                            % (self.name, status, self.server.last_body[:500]))
        if self.origin is not None:
            self.log.append((payload["cursor"], limit, changes, doc))
        check_answer(self.tc, doc, changes, limit,
                     problems=self.echoes if self.origin is not None else None)
        if not apply:
            return doc
        starting_whole = payload["cursor"] is None or (self.more and self.whole_chain
                                                       and cursor == "own")
        for ch in changes:
            self.local.apply_change(ch)
        for e in doc["chats"]:
            if self.origin is not None:
                self.check_clock(e, doc["serverClock"])
            # Entries are merged into the local copy, never replace it: the
            # later pages of a first sync leave out what this device wrote.
            if starting_whole:
                # A first sync sends deletions only of chats this request sent
                # (a resyncing device must learn its copy lost); later pages of
                # the same pull tell of chats and messages deleted since it started.
                if payload["cursor"] is None and e.get("deleted"):
                    sent_ids = {ch["chatId"] for ch in changes}
                    self.tc.assertIn(e["id"], sent_ids,
                                     "a first sync sent a deletion of a chat it did not send: %r" % e)
                    self.tc.assertFalse(e.get("deletedMessages"),
                                        "a first sync sent deletedMessages: %r" % e)
            elif self.origin is not None:
                self.check_no_echo(e)
            self.local.apply_delta(e)
        self.clock = max(self.clock, doc["serverClock"])
        if cursor == "own":
            self.cursor = doc["cursor"]
            self.more = doc["more"]
            self.whole_chain = starting_whole
        return doc

    def history(self, chats):
        """One line per sync that pushed to or pulled one of these chats."""
        lines = []
        for cursor, limit, changes, doc in self.log:
            pushed = [json.dumps({k: (v if k != "messages" else [m["id"] for m in v])
                                  for k, v in ch.items() if k not in ("at",)})
                      for ch in changes if ch["chatId"] in chats]
            pulled = [json.dumps({k: (v if k != "messages" else [m["id"] for m in v])
                                  for k, v in e.items() if k not in TIME_FIELDS})
                      for e in doc["chats"] if e["id"] in chats]
            if pushed or pulled:
                lines.append("    cursor %s limit %s -> %s more=%s clock=%d push %s pull %s"
                             % (cursor, limit, doc["cursor"], doc["more"], doc["serverClock"],
                                pushed, pulled))
        return lines

    def check_no_echo(self, e):
        for k, v in (e.get("fields") or {}).items():
            if isinstance(v, str) and self.origin.who.get(v) == self.name:
                self.echoes.append("%s got back its own %s=%r in chat %s" % (self.name, k, v, e["id"]))
        for m in e.get("messages") or ():
            if self.origin.who.get(m.get("content")) == self.name:
                self.echoes.append("%s got back its own message %s (%r) in chat %s"
                                   % (self.name, m["id"], m["content"], e["id"]))

    def check_clock(self, e, server_clock):
        """serverClock "keeps the device ahead of everything it has seen": an
        answer showing a write made at clock n must carry serverClock >= n, or
        the device's next edit of it can lose to the write it replaces."""
        values = [v for v in (e.get("fields") or {}).values() if isinstance(v, str)]
        values += [m.get("content") for m in e.get("messages") or ()]
        for v in values:
            n = self.origin.clock.get(v)
            if n is not None and server_clock < n:
                self.echoes.append("%s pulled %r (written at clock %d in chat %s) in an answer "
                                   "with serverClock %d" % (self.name, v, n, e["id"], server_clock))

    def sync_all(self, changes=(), limit=None):
        """Syncs, then follows `more` to the end; returns every page."""
        pages = [self.sync(changes, limit)]
        guard = 0
        while pages[-1]["more"]:
            guard += 1
            self.tc.assertLess(guard, 100000, "more never ends")
            pages.append(self.sync((), limit))
        return pages


def check_answer(tc, doc, changes=(), limit=None, problems=None):
    tc.assertIsInstance(doc, dict)
    tc.assertIsInstance(doc.get("cursor"), str, doc)
    tc.assertTrue(doc["cursor"], "empty cursor")
    tc.assertIs(type(doc.get("more")), bool, doc)
    tc.assertIs(type(doc.get("serverClock")), int, doc)
    tc.assertIs(type(doc.get("accepted")), int, doc)
    tc.assertEqual(doc["accepted"], len(changes), "accepted counts the changes merged")
    tc.assertIsInstance(doc.get("chats"), list, doc)
    clocks = [ch["clock"] for ch in changes if "clock" in ch]
    if clocks:
        tc.assertGreaterEqual(doc["serverClock"], max(clocks),
                              "serverClock must keep ahead of every clock the device sent")
    tc.assertLessEqual(len(doc["chats"]), limit if limit is not None else 500)
    for e in doc["chats"]:
        tc.assertIsInstance(e, dict)
        tc.assertIsInstance(e.get("id"), str, e)
        if "fields" in e:
            tc.assertIsInstance(e["fields"], dict, e)
            for t in TIME_FIELDS:
                tc.assertNotIn(t, e["fields"], "time fields go beside `fields`: %r" % e)
        for m in e.get("messages") or ():
            tc.assertIsInstance(m.get("id"), str, m)
            tc.assertIsInstance(m.get("role"), str, m)
            tc.assertIsInstance(m.get("content"), str, m)
            tc.assertFalse(m.get("isPrivate"), "a private message was sent: %r" % m)
    ids = [e["id"] for e in doc["chats"]]
    if len(ids) != len(set(ids)):
        if problems is None:
            tc.fail("a chat appears twice in one answer: %r" % ids)
        problems.append("a chat appears twice in one answer: %r" % ids)


def state_diff(local, server_local, what, times=True):
    """Lines describing how a device's live chats differ from the server's."""
    mine, theirs = local.live(times), server_local.live(times)
    if mine == theirs:
        return []
    lines = ["%s differs from the server:" % what]
    for cid in sorted(set(mine) | set(theirs)):
        a, b = mine.get(cid), theirs.get(cid)
        if a == b:
            continue
        if a is None or b is None:
            lines.append("  chat %s only on the %s" % (cid, "server" if a is None else "device"))
            continue
        for k in ("fields", "times"):
            if a.get(k) != b.get(k):
                lines.append("  chat %s %s: device %s, server %s" % (cid, k, a.get(k), b.get(k)))
        for mid in sorted(set(a["messages"]) | set(b["messages"])):
            if a["messages"].get(mid) != b["messages"].get(mid):
                lines.append("  chat %s message %s: device %s, server %s"
                             % (cid, mid, a["messages"].get(mid), b["messages"].get(mid)))
    return lines


def full_pull(tc, server, limit=5000):
    """The server's state: a new device, cursor null, every page."""
    d = Dev(tc, server, fresh_device_id())
    d.sync_all(limit=limit)
    return d.local


class V2TestCase(ServerTestCase):

    def dev(self, name, origin=None, server=None):
        return Dev(self, server or self.server, name, origin)

    def full(self, server=None):
        return full_pull(self, server or self.server)

    def assertSameState(self, local, server_local, what, times=True):
        lines = state_diff(local, server_local, what, times)
        if lines:
            self.fail("\n".join(lines[:40]))

    def assertDevicesConverged(self, devs, full):
        """Every device equals the server; no protocol violation seen on the way."""
        report = []
        for d in devs:
            report += ["%s: %s" % (d.name, p) for p in d.echoes[:10]]
        for d in devs:
            diff = state_diff(d.local, full, "%s, fields and messages" % d.name, False)
            report += diff[:12]
            chats = sorted({line.split()[1] for line in diff[1:]})
            if chats:
                report.append("  %s's syncs touching %s:" % (d.name, ", ".join(chats)))
                h = d.history(chats)
                report += h if len(h) <= 30 else h[:15] + ["    ..."] + h[-15:]
        if not report:
            for d in devs:
                report += state_diff(d.local, full, "%s, time fields" % d.name, True)[:12]
        if report:
            self.fail("\n".join(report))


def full_change(cid, title, n_messages=3, t_ms=T0_MS, **fields):
    """A change creating a whole chat: every field, the time fields, messages."""
    f = {"title": title, "model": "gpt-4", "provider": "openai", "currentModel": "gpt-4o",
         "isArchived": False, "createdAt": iso(t_ms), "updatedAt": iso(t_ms + 1000),
         "lastModified": iso(t_ms + 2000)}
    f.update(fields)
    return {"chatId": cid, "at": iso(t_ms + 2000), "fields": f,
            "messages": [msg("%s-m%d" % (cid, i), role="user" if i % 2 == 0 else "assistant",
                             timestamp=iso(t_ms + i)) for i in range(n_messages)]}


# ---- 1. first sync, legacy interplay ---------------------------------------

class FirstSyncTest(V2TestCase):

    def test_empty_server(self):
        d = self.dev("laptop")
        doc = d.sync()
        self.assertEqual(doc["chats"], [])
        self.assertFalse(doc["more"])
        self.assertEqual(doc["accepted"], 0)
        # "absent or null on a first sync"
        status, _, doc2 = self.server.v2({"deviceId": "laptop"})
        self.assertEqual(status, 200, self.server.last_body[:300])
        self.assertEqual(doc2["chats"], [])

    def test_first_sync_returns_every_live_chat_whole(self):
        w = self.dev("writer")
        changes = [full_change("c%d" % i, "Chat %d" % i, n_messages=i + 1, t_ms=T0_MS + i * 60000,
                               folder="f%d" % i, stars=i) for i in range(5)]
        changes.append(full_change("gone", "to delete"))
        w.sync(changes)
        w.sync([{"chatId": "gone", "deleteChat": True},
                {"chatId": "c2", "deleteMessages": ["c2-m1"]},
                {"chatId": "c3", "messages": [msg("c3-secret", "private", isPrivate=True)]}])

        for cursor_key in (None, "absent"):
            with self.subTest(cursor=cursor_key):
                payload = {"deviceId": "phone-%s" % cursor_key, "limit": 5000}
                if cursor_key is None:
                    payload["cursor"] = None
                status, _, doc = self.server.v2(payload)
                self.assertEqual(status, 200, self.server.last_body[:300])
                check_answer(self, doc, (), 5000)
                self.assertFalse(doc["more"])
                got = norm_entries(doc["chats"])
                self.assertEqual(set(got), {"c0", "c1", "c2", "c3", "c4"},
                                 "every live chat, no deleted one")
                for i in range(5):
                    cid = "c%d" % i
                    e = got[cid]
                    sent = changes[i]
                    self.assertNotIn("deleted", e)
                    self.assertNotIn("deletedMessages", e, "no deletions on a first sync")
                    want_fields = {k: v for k, v in sent["fields"].items() if k not in TIME_FIELDS}
                    self.assertEqual(e.get("fields"), want_fields, cid)
                    for t in TIME_FIELDS:
                        self.assertIn(t, e, "%s: time field %s missing" % (cid, t))
                        self.assertEqual(e[t], norm_time(sent["fields"][t]), "%s.%s" % (cid, t))
                    want_msgs = {m["id"]: norm_msg(m) for m in sent["messages"]}
                    if cid == "c2":
                        del want_msgs["c2-m1"]
                    self.assertEqual(e.get("messages", {}), want_msgs, cid)

    def test_first_sync_includes_own_chats(self):
        # The device's own earlier writes are part of "every live chat".
        d = self.dev("laptop")
        d.sync([full_change("mine", "Mine")])
        again = self.dev("laptop")     # same device id, lost its cursor
        doc = again.sync()
        self.assertEqual([e["id"] for e in doc["chats"]], ["mine"])
        self.assertEqual(len(doc["chats"][0]["messages"]), 3)

    def test_first_sync_pushing_chats_gets_none_back(self):
        # docs/protocol.md: "Changes are not echoed back to the device that
        # made them" -- a first sync included (#15): a device moving in with
        # N chats must not download the N chats it just uploaded.
        n = 200
        d = self.dev("laptop")
        changes = [full_change("c%03d" % i, "Chat %d" % i, n_messages=4,
                               t_ms=T0_MS + i * 60000) for i in range(n)]
        doc = d.sync(changes, limit=5000)
        size = len(self.server.last_body)
        self.assertEqual(doc["accepted"], n)
        self.assertEqual(doc["chats"], [], "a first sync echoed the chats it pushed")
        self.assertFalse(doc["more"])
        # bytes: the answer is its envelope only, whatever N is
        self.assertLess(size, 200, "first sync pushing %d chats answered %d bytes" % (n, size))
        # the chats are stored, and another device's first sync gets them all
        self.assertEqual(len(self.full().chats), n)
        # a device re-sending them byte for byte after losing its cursor
        # (it holds them: it sent them) gets nothing back either
        again = self.dev("laptop")
        doc = again.sync(changes, limit=5000)
        self.assertEqual(doc["chats"], [])
        # one chat sent as several changes: the device holds their sum
        split = self.dev("tablet")
        doc = split.sync([{"chatId": "s", "fields": {"title": "Split"},
                           "messages": [msg("s1", timestamp=T0), msg("s2", timestamp=T0)]},
                          {"chatId": "s", "fields": {"folder": "f"},
                           "messages": [msg("s3", timestamp=T0)]},
                          {"chatId": "s", "deleteMessages": ["s2"]}], limit=5000)
        self.assertEqual(len(doc["chats"]), n, "the laptop's chats, whole")
        self.assertNotIn("s", [e["id"] for e in doc["chats"]])

    def test_first_sync_pushing_a_shared_chat_gets_what_it_lacks(self):
        # A first sync leaves out only what the request sent: parts another
        # device wrote, a winner over the device's losing write, and the
        # device's own earlier parts it did not send now are all sent.
        a = self.dev("desk")
        a.clock = 100
        a.sync([{"chatId": "x", "fields": {"title": "Desk title", "folder": "work"},
                 "messages": [msg("shared", "same text", timestamp=T0),
                              msg("from-desk", "desk wrote this", timestamp=T0)]}])
        b = self.dev("phone")  # clock 0: its title write loses to the desk's
        doc = b.sync([{"chatId": "x", "fields": {"title": "Phone title", "stars": 3},
                       "messages": [msg("shared", "same text", timestamp=T0),
                                    msg("from-phone", "phone wrote this", timestamp=T0)]},
                      {"chatId": "y", "fields": {"title": "Only phone"}}])
        got = norm_entries(doc["chats"])
        self.assertEqual(set(got), {"x"}, "y holds only what the phone sent")
        self.assertEqual(got["x"].get("fields"), {"title": "Desk title", "folder": "work"},
                         "the winning title and the desk's field; not the phone's own stars")
        self.assertEqual(set(got["x"].get("messages", {})), {"from-desk"},
                         "the desk's message; not the one both sent, not the phone's")
        self.assertSameState(b.local, self.full(), "the phone after its first sync", times=False)
        # The same device id after losing its data, sending part of x again:
        # what it wrote before and did not send now comes back.
        b2 = self.dev("phone")
        doc = b2.sync([{"chatId": "x", "messages": [msg("from-phone", "phone wrote this",
                                                         timestamp=T0)]}])
        got = norm_entries(doc["chats"])
        self.assertEqual(got["x"].get("fields"),
                         {"title": "Desk title", "folder": "work", "stars": 3})
        self.assertEqual(set(got["x"].get("messages", {})), {"shared", "from-desk"})
        self.assertSameState(b2.local, self.full(), "the phone after losing its data",
                             times=False)

    def test_private_messages_never_stored_or_sent(self):
        w = self.dev("writer")
        reader = self.dev("reader")
        reader.sync()
        w.sync([{"chatId": "p", "fields": {"title": "t"},
                 "messages": [msg("pub"), msg("priv", "secret", isPrivate=True)]}])
        doc = reader.sync()
        e = by_id(doc["chats"])["p"]
        self.assertEqual([m["id"] for m in e.get("messages", [])], ["pub"])
        self.assertNotIn("secret", self.server.last_body.decode())
        self.assertEqual([m["id"] for m in by_id(self.server.fetch())["p"]["messages"]], ["pub"])
        self.assertEqual(set(self.full().chats["p"]["messages"]), {"pub"})

    def test_legacy_writes_appear_in_v2(self):
        lc1 = chat("leg-push", "Pushed", [msg("a", timestamp=T0), msg("b", role="assistant", timestamp=T0)],
                   last_modified=T0, createdAt=T0, updatedAt=T0, model="m1", provider="p1",
                   isArchived=True)
        self.server.push_ok([lc1])
        lc2 = chat("leg-sync", "Synced", [msg("s1", timestamp=T0)], last_modified=T0)
        self.server.sync_ok({"deviceId": "old-phone", "chats": [lc2]})
        d = self.dev("v2-laptop")
        doc = d.sync()
        got = norm_entries(doc["chats"])
        self.assertEqual(set(got), {"leg-push", "leg-sync"})
        e = got["leg-push"]
        self.assertEqual(e["fields"].get("title"), "Pushed")
        self.assertEqual(e["fields"].get("model"), "m1")
        self.assertEqual(e["fields"].get("provider"), "p1")
        self.assertIs(e["fields"].get("isArchived"), True)
        for t in TIME_FIELDS:
            self.assertEqual(e.get(t), T0_MS, t)
        self.assertEqual(e["messages"], {"a": norm_msg(lc1["messages"][0]),
                                         "b": norm_msg(lc1["messages"][1])})
        self.assertEqual(got["leg-sync"]["fields"].get("title"), "Synced")
        self.assertEqual(set(got["leg-sync"]["messages"]), {"s1"})

        # A legacy change after the v2 device's cursor is pulled as a change.
        lc1b = chat("leg-push", "Pushed", lc1["messages"] + [msg("c", "new from legacy", timestamp=T0)],
                    last_modified="2025-06-01T11:00:00.000Z")
        self.server.push_ok([lc1b])
        doc = d.sync()
        self.assertEqual([x["id"] for x in doc["chats"]], ["leg-push"],
                         "only the chat the legacy client changed")
        e = norm_entry(doc["chats"][0])
        self.assertIn("c", e.get("messages", {}))
        self.assertEqual(e["messages"]["c"]["content"], "new from legacy")
        self.assertSameState(d.local, self.full(), "the v2 device after a legacy push")

    def test_v2_writes_appear_in_legacy(self):
        d = self.dev("v2-laptop")
        d.sync([full_change("v2chat", "From v2", n_messages=2),
                {"chatId": "v2chat", "messages": [msg("late", "later message", timestamp=T0)]}])
        fetched = by_id(self.server.fetch())
        self.assertIn("v2chat", fetched)
        c = fetched["v2chat"]
        self.assertEqual(c["title"], "From v2")
        self.assertEqual(c.get("model"), "gpt-4")
        self.assertEqual(c.get("currentModel"), "gpt-4o")
        self.assertEqual(parse_iso_ms(c["lastModified"]), T0_MS + 2000)
        self.assertEqual(sorted(m["id"] for m in c["messages"]), ["late", "v2chat-m0", "v2chat-m1"])
        # A legacy client that has nothing gets it in `missing`...
        doc = self.server.sync_ok({"deviceId": "old-phone", "chats": []})
        self.assertEqual(legacy_view(by_id(doc["missing"])["v2chat"]), legacy_view(c))
        # ...and a legacy client holding an old copy gets the merged one.
        old = chat("v2chat", "From v2", [msg("v2chat-m0", timestamp=T0)], last_modified=T0,
                   updatedAtLamport=[1, "old-phone"])
        d.sync([{"chatId": "v2chat", "fields": {"title": "Renamed in v2"}}])
        doc = self.server.sync_ok({"deviceId": "old-phone", "chats": [old]})
        back = by_id(doc["missing"]).get("v2chat")
        self.assertIsNotNone(back, "the legacy copy is stale: the merge must come back")
        self.assertEqual(back["title"], "Renamed in v2")
        self.assertIn("late", [m["id"] for m in back["messages"]])


# ---- 2. deltas ---------------------------------------------------------------

class DeltaTest(V2TestCase):

    def setUp(self):
        super().setUp()
        self.a = self.dev("device-a")
        self.b = self.dev("device-b")
        self.b.sync([full_change("c%d" % i, "Chat %d" % i, n_messages=5) for i in range(5)])
        self.a.sync()
        self.assertEqual(len(self.a.local.live()), 5)

    def test_one_field_change_moves_only_that_field(self):
        self.b.sync([{"chatId": "c3", "fields": {"title": "Renamed"}}])
        doc = self.a.sync()
        self.assertEqual([e["id"] for e in doc["chats"]], ["c3"])
        e = doc["chats"][0]
        self.assertEqual(e.get("fields"), {"title": "Renamed"}, "only the field that changed")
        self.assertFalse(e.get("messages"), "no messages for a field change")
        self.assertFalse(e.get("deletedMessages"))
        self.assertFalse(e.get("deleted"))
        self.assertLess(self.a.last_size, 500, "a one-field pull moves a few bytes: %r"
                        % self.server.last_body[:600])
        self.assertSameState(self.a.local, self.full(), "device A")

    def test_retried_request_is_idempotent(self):
        # The answer to a push is lost; the device sends the same request again.
        payload = {"deviceId": "device-b", "cursor": self.b.cursor, "changes": [
            {"chatId": "c1", "clock": self.b.clock + 1, "fields": {"title": "retried"},
             "messages": [msg("retry-m", "sent twice")]},
            {"chatId": "c2", "clock": self.b.clock + 2, "deleteMessages": ["c2-m0"]}]}
        first = self.server.v2_ok(payload)
        second = self.server.v2_ok(payload)
        self.assertEqual(first["accepted"], 2)
        self.assertEqual(second["accepted"], 2)
        self.assertEqual(norm_entries(first["chats"]), norm_entries(second["chats"]))
        doc = self.a.sync()
        got = norm_entries(doc["chats"])
        self.assertEqual(set(got), {"c1", "c2"})
        self.assertEqual(got["c1"]["fields"], {"title": "retried"})
        self.assertEqual(list(got["c1"]["messages"]), ["retry-m"])
        self.assertEqual(got["c2"].get("deletedMessages"), ["c2-m0"])
        self.assertSameState(self.a.local, self.full(), "device A")

    def test_noop_sync_is_tiny(self):
        for _ in range(2):
            doc = self.a.sync()
            self.assertEqual(doc["chats"], [])
            self.assertFalse(doc["more"])
            self.assertLess(self.a.last_size, 500, self.server.last_body[:600])

    def test_one_message_in_a_big_chat_moves_one_message(self):
        big = [msg("big-%04d" % i, "message number %d " % i + "y" * 100,
                   role="user" if i % 2 else "assistant", timestamp=iso(T0_MS + i))
               for i in range(2000)]
        self.b.sync([{"chatId": "big", "fields": {"title": "Big"}, "messages": big}])
        doc = self.a.sync()
        self.assertEqual(len(by_id(doc["chats"])["big"]["messages"]), 2000)

        new = msg("big-new", "z" * 1000, timestamp=iso(T0_MS + 5000))
        self.b.sync([{"chatId": "big", "messages": [new]}])
        doc = self.a.sync()
        self.assertEqual([e["id"] for e in doc["chats"]], ["big"])
        e = doc["chats"][0]
        self.assertEqual([norm_msg(m) for m in e.get("messages", [])], [norm_msg(new)])
        self.assertFalse(e.get("deletedMessages"))
        self.assertFalse(e.get("fields"), "no field changed: %r" % e.get("fields"))
        msg_size = len(json.dumps(new))
        self.assertLess(self.a.last_size, msg_size + 500, "one message moves one message")

        # An edit of one message, then the deletion of one.
        edited = dict(big[1000], content="edited text")
        self.b.sync([{"chatId": "big", "messages": [edited]}])
        doc = self.a.sync()
        self.assertEqual([m["id"] for m in doc["chats"][0].get("messages", [])], ["big-1000"])
        self.assertEqual(doc["chats"][0]["messages"][0]["content"], "edited text")
        self.assertLess(self.a.last_size, 500 + len(json.dumps(edited)))
        self.b.sync([{"chatId": "big", "deleteMessages": ["big-0007"]}])
        doc = self.a.sync()
        self.assertEqual(len(doc["chats"]), 1)
        self.assertEqual(doc["chats"][0].get("deletedMessages"), ["big-0007"])
        self.assertFalse(doc["chats"][0].get("messages"))
        self.assertLess(self.a.last_size, 500)
        self.assertSameState(self.a.local, self.full(), "device A")

    def test_chats_come_in_the_order_they_last_changed(self):
        for cid in ("c4", "c1", "c3"):
            self.b.sync([{"chatId": cid, "fields": {"title": "again " + cid}}])
        doc = self.a.sync()
        self.assertEqual([e["id"] for e in doc["chats"]], ["c4", "c1", "c3"])
        self.b.sync([{"chatId": "c4", "fields": {"title": "once more"}}])
        self.b.sync([{"chatId": "c0", "fields": {"title": "once more"}}])
        self.b.sync([{"chatId": "c1", "fields": {"title": "once more"}}])
        doc = self.a.sync()
        self.assertEqual([e["id"] for e in doc["chats"]], ["c4", "c0", "c1"])

    def test_time_fields_earliest_and_latest_win(self):
        later = iso(T0_MS + 3600000)
        earlier = iso(T0_MS - 3600000)
        self.b.sync([{"chatId": "c1", "fields": {"createdAt": earlier, "lastModified": later,
                                                 "updatedAt": later}}])
        # Older lastModified / newer createdAt lose (earliest / latest win).
        self.b.sync([{"chatId": "c1", "fields": {"createdAt": iso(T0_MS + 1),
                                                 "lastModified": iso(T0_MS + 1)}}])
        self.a.sync()
        c = self.a.local.chats["c1"]
        self.assertEqual(c["times"].get("createdAt"), norm_time(earlier))
        self.assertEqual(c["times"].get("lastModified"), norm_time(later))
        self.assertEqual(c["times"].get("updatedAt"), norm_time(later))
        self.assertSameState(self.a.local, self.full(), "device A")
        fetched = by_id(self.server.fetch())["c1"]
        self.assertEqual(parse_iso_ms(fetched["createdAt"]), norm_time(earlier))
        self.assertEqual(parse_iso_ms(fetched["lastModified"]), norm_time(later))

    def test_losing_time_field_write_still_gets_the_winner(self):
        # B moves lastModified/updatedAt later and createdAt earlier; A, not
        # having pulled that, sends values that lose (latest / earliest win).
        # A's own losing write must not hide B's winning values from A.
        late, early = iso(T0_MS + 7200000), iso(T0_MS - 7200000)
        self.a.clock += 50     # A's write is the newer by Lamport order, its values still lose
        self.b.sync([{"chatId": "c2", "fields": {"lastModified": late, "updatedAt": late,
                                                 "createdAt": early}}])
        doc = self.a.sync([{"chatId": "c2", "fields": {"lastModified": iso(T0_MS + 3600000),
                                                       "updatedAt": iso(T0_MS + 3600000),
                                                       "createdAt": iso(T0_MS - 3600000)}}])
        doc2 = self.a.sync()
        full = self.full()
        self.assertEqual(full.chats["c2"]["times"], {"createdAt": norm_time(early),
                                                     "updatedAt": norm_time(late),
                                                     "lastModified": norm_time(late)})
        got = norm_entries(doc["chats"] + doc2["chats"]).get("c2", {})
        for t, want in (("lastModified", late), ("updatedAt", late), ("createdAt", early)):
            self.assertEqual(got.get(t), norm_time(want),
                             "A never receives B's winning %s (its own losing write hid it); "
                             "answers: %r / %r" % (t, doc["chats"], doc2["chats"]))
        self.assertSameState(self.a.local, full, "device A")

    def test_batch_push_of_many_changes(self):
        changes = []
        for i in range(300):
            changes.append({"chatId": "c%d" % (i % 5), "messages": [msg("batch-%d" % i)]})
        changes.append({"chatId": "c0", "fields": {"title": "after the batch"}})
        self.b.sync(changes)     # accepted == 301 is checked in Dev.sync
        doc = self.a.sync()
        got = norm_entries(doc["chats"])
        self.assertEqual(set(got), {"c0", "c1", "c2", "c3", "c4"})
        self.assertEqual(sum(len(e.get("messages", {})) for e in got.values()), 300)
        self.assertEqual(got["c0"]["fields"], {"title": "after the batch"})
        self.assertSameState(self.a.local, self.full(), "device A")


class PackedChatTest(V2TestCase):
    """Chats new in a v2 push are kept packed on SQLite (docs/storage.md,
    "Packs"): whatever the layout, each device gets what was written, as
    the devices' own records of their changes say (Local), and a legacy
    client sees the same messages in display order."""

    def packed_chat(self, cid, n=30):
        return {"chatId": cid, "fields": {"title": cid},
                "messages": [msg("%s-%02d" % (cid, i), "message %d of %s, long enough that the"
                                 " chat is worth a pack: %s" % (i, cid, "w" * 80),
                                 role="user" if i % 2 else "assistant",
                                 timestamp=iso(T0_MS + 1000 * (n - i)))
                             for i in range(n)]}

    def test_packed_chats_read_as_written(self):
        a, b = self.dev("pack-a"), self.dev("pack-b")
        b.sync([self.packed_chat("p%d" % i) for i in range(3)])
        if harness.BACKEND != "postgres":
            con = sqlite3.connect("file:%s?mode=ro" % self.server.db_path, uri=True, timeout=10)
            self.addCleanup(con.close)
            self.assertEqual(con.execute("SELECT count(DISTINCT chat_id) FROM packs").fetchone(),
                             (3,))
            self.assertEqual(con.execute("SELECT count(*) FROM messages").fetchone(), (0,))
        a.sync()
        self.assertSameState(a.local, b.local, "device A after its first pull", times=False)
        # B edits a packed message, deletes one, adds one; A's pull has exactly those
        edited = msg("p1-03", "edited by B", role="user", timestamp=iso(T0_MS + 27000))
        added = msg("p1-new", "added by B", timestamp=iso(T0_MS + 500))
        doc = b.sync([{"chatId": "p1", "messages": [edited, added], "deleteMessages": ["p1-07"]}])
        doc = a.sync()
        got = norm_entries(doc["chats"])
        self.assertEqual(set(got), {"p1"})
        self.assertEqual(sorted(got["p1"]["messages"]), ["p1-03", "p1-new"])
        self.assertEqual(got["p1"]["messages"]["p1-03"]["content"], "edited by B")
        self.assertEqual(got["p1"].get("deletedMessages"), ["p1-07"])
        # A edits the message B edited again, and one B never touched
        a.sync([{"chatId": "p1", "messages": [msg("p1-03", "edited by A", role="user",
                                                   timestamp=iso(T0_MS + 27000))]},
                {"chatId": "p2", "messages": [msg("p2-05", "edited by A", role="user",
                                                  timestamp=iso(T0_MS + 25000))]}])
        b.sync()
        full = self.full()
        self.assertSameState(a.local, full, "device A", times=False)
        self.assertSameState(b.local, full, "device B", times=False)
        # a legacy client: every live message once, in display order (timestamp)
        fetched = by_id(self.server.fetch())
        for cid in ("p0", "p1", "p2"):
            want = sorted(full.chats[cid]["messages"].values(),
                          key=lambda m: m["timestamp"])  # Local's: ms
            self.assertEqual([m["id"] for m in fetched[cid]["messages"]],
                             [m["id"] for m in want], cid)
            self.assertEqual([m["content"] for m in fetched[cid]["messages"]],
                             [m["content"] for m in want], cid)

    def test_a_packed_chat_edited_many_times(self):
        # enough separate writes that the store folds its rows into the pack
        # again (store_sqlite.c, repack_if_due); A pulls between some of them
        a, b = self.dev("fold-a"), self.dev("fold-b")
        b.sync([self.packed_chat("q0"), self.packed_chat("q1")])
        a.sync()
        for i in range(14):
            if i % 3 == 0:
                ch = {"chatId": "q0", "deleteMessages": ["q0-%02d" % (20 + i // 3)]}
            else:
                ch = {"chatId": "q0", "messages": [msg("q0-%02d" % i, "edit %d by B" % i,
                                                       role="user",
                                                       timestamp=iso(T0_MS + 1000 * (30 - i)))]}
            b.sync([ch])
            if i % 4 == 3:
                a.sync()
        a.sync()
        full = self.full()
        self.assertSameState(a.local, full, "device A", times=False)
        self.assertSameState(b.local, full, "device B", times=False)
        if harness.BACKEND != "postgres":
            con = sqlite3.connect("file:%s?mode=ro" % self.server.db_path, uri=True, timeout=10)
            self.addCleanup(con.close)
            live_rows = con.execute("SELECT count(*) FROM messages WHERE chat_id = 'q0'"
                                    " AND value IS NOT NULL").fetchone()[0]
            self.assertLess(live_rows, 9, "the edits were folded into the pack")
        fetched = by_id(self.server.fetch())
        want = sorted(full.chats["q0"]["messages"].values(), key=lambda m: m["timestamp"])
        self.assertEqual([(m["id"], m["content"]) for m in fetched["q0"]["messages"]],
                         [(m["id"], m["content"]) for m in want])


    def test_a_packed_chat_written_by_a_legacy_client(self):
        # review: a packed chat gets a legacy /sync (saved with a rendering,
        # rows beside the pack), then enough v2 edits to fold its rows; every
        # device, a fresh one and a legacy fetch see the same messages
        a, b = self.dev("legacy-pack-a"), self.dev("legacy-pack-b")
        b.sync([self.packed_chat("r0")])
        a.sync()
        held = self.server.fetch()
        r0 = by_id(held)["r0"]
        r0["messages"] = r0["messages"] + [
            msg("r0-legacy-%d" % i, "written by the old phone %d" % i,
                timestamp=iso(T0_MS + 60000 + i)) for i in range(2)]
        r0["lastModified"] = iso(T0_MS + 70000)
        self.server.sync_ok({"deviceId": "old-phone", "chats": [r0]})
        a.sync()
        b.sync()
        full = self.full()
        self.assertIn("r0-legacy-1", full.chats["r0"]["messages"])
        con = None
        if harness.BACKEND != "postgres":
            con = sqlite3.connect("file:%s?mode=ro" % self.server.db_path, uri=True, timeout=10)
            self.addCleanup(con.close)
            self.assertEqual(con.execute("SELECT count(*) FROM packs WHERE chat_id = 'r0'"
                                         " AND EXISTS (SELECT 1 FROM chat_docs"
                                         " WHERE chat_id = 'r0')").fetchone()[0] > 0, True,
                             "packed, and rendered by the legacy write")
        self.assertSameState(a.local, full, "device A after the legacy write", times=False)
        self.assertSameState(b.local, full, "device B after the legacy write", times=False)
        for i in range(12):
            b.sync([{"chatId": "r0", "messages": [msg("r0-%02d" % i, "edit %d by B" % i,
                                                      role="user",
                                                      timestamp=iso(T0_MS + 1000 * (30 - i)))]}])
            if i % 5 == 4:
                a.sync()
        a.sync()
        full = self.full()
        self.assertEqual(len(full.chats["r0"]["messages"]), 32)
        if con:
            self.assertLess(con.execute("SELECT count(*) FROM messages WHERE chat_id = 'r0'"
                                        " AND value IS NOT NULL").fetchone()[0], 9,
                            "the legacy rows and the edits were folded into the pack")
        self.assertSameState(a.local, full, "device A after the folds", times=False)
        self.assertSameState(b.local, full, "device B after the folds", times=False)
        # a fresh device pulling a chat a page, the packed ones among others
        b.sync([self.packed_chat("r1"), {"chatId": "r2", "fields": {"title": "rows"},
                                        "messages": [msg("r2-0", "short")]}])
        full = self.full()
        self.assertEqual(set(full.chats), {"r0", "r1", "r2"})
        self.assertSameState(full_pull(self, self.server, limit=1), full,
                             "a fresh device, one chat a page", times=False)
        fetched = by_id(self.server.fetch())
        want = sorted(full.chats["r0"]["messages"].values(), key=lambda m: m["timestamp"])
        self.assertEqual([(m["id"], m["content"]) for m in fetched["r0"]["messages"]],
                         [(m["id"], m["content"]) for m in want])


    def test_a_losing_write_to_a_packed_message(self):
        # review: a device writes a packed message with an older clock than
        # the stored one: its write loses, and every device ends up with the
        # winning version, as for a chat kept in rows (the control, "rows-")
        for cid, n in (("rows-s", 3), ("s0", 30)):
            a, b, c = self.dev(cid + "-a"), self.dev(cid + "-b"), self.dev(cid + "-c")
            ch = self.packed_chat(cid, n)
            ch["clock"] = 100
            b.sync([ch])
            a.sync()
            c.sync()
            mid = "%s-01" % cid
            a.sync([{"chatId": cid, "clock": 1,
                     "messages": [msg(mid, "older write by A", role="user",
                                      timestamp=iso(T0_MS + 1000 * (n - 1)))]}])
            c.sync()
            a.sync()
            full = self.full()
            self.assertNotEqual(full.chats[cid]["messages"][mid]["content"], "older write by A")
            for d in (a, b, c):
                self.assertSameState(d.local, full, "%s: device %s after A's losing write"
                                     % (cid, d.name), times=False)


# ---- 3. no echo, convergence -------------------------------------------------

class SyncRunTest(V2TestCase):
    """docs/protocol.md, "run": a sync whose pushes take several requests
    names its run, so its first pull leaves out what the device pushed in
    the run's earlier requests too, and tells it of deletions since."""

    def post(self, payload):
        status, _, doc = self.server.v2(payload)
        self.assertEqual(status, 200, self.server.last_body[:300])
        return doc

    def test_a_run_of_pushes_then_a_first_pull_gets_only_what_others_wrote(self):
        desk = self.dev("desk")
        desk.clock = 1000
        desk.sync([full_change("theirs", "Desk's own", n_messages=2)])
        batches = [[full_change("c%02d" % i, "Chat %d" % i, n_messages=3, t_ms=T0_MS + i * 60000)
                    for i in range(k * 10, k * 10 + 10)] for k in range(3)]
        first = self.post({"deviceId": "laptop", "cursor": None, "limit": 1,
                           "changes": batches[0]})
        run = first["run"]
        self.post({"deviceId": "laptop", "cursor": None, "limit": 1, "run": run,
                   "changes": batches[1]})
        # meanwhile the desk renames one of the laptop's chats and deletes another
        desk.sync([{"chatId": "c05", "clock": 2000, "fields": {"title": "Desk renamed it"}},
                   {"chatId": "c07", "clock": 2001, "deleteChat": True}])
        last = self.post({"deviceId": "laptop", "cursor": None, "limit": 5000, "run": run,
                          "changes": batches[2]})
        self.assertEqual(last["run"], run, "the run is kept through the sync")
        self.assertFalse(last["more"])
        got = norm_entries(last["chats"])
        # every live chat is listed (a client drops a live chat a whole first
        # pull leaves out), those of the run's earlier requests by their id
        # alone; the last request's chats, which it sent, not at all
        earlier = {"c%02d" % i for i in range(20)} - {"c05", "c07"}
        self.assertEqual(set(got), earlier | {"theirs", "c05", "c07"}, sorted(got))
        for cid in earlier:
            self.assertEqual(got[cid], {"id": cid}, "echoed what the laptop pushed")
        self.assertEqual(got["c05"], {"id": "c05", "fields": {"title": "Desk renamed it"}})
        self.assertEqual(got["c07"], {"id": "c07", "deleted": True})
        self.assertEqual(set(got["theirs"]["messages"]), {"theirs-m0", "theirs-m1"})

    def test_a_run_of_packed_chats_reads_what_others_wrote_in_them(self):
        # Chats big enough to be kept packed (SQLite: docs/storage.md,
        # "Packs"), whose packs carry a summary the first pull of the run
        # checks without decompressing: the laptop's own packs of the run
        # owe it nothing (its chats by their id alone); a message the desk
        # added to one of them is a row, told; the desk's own packed chat
        # is read whole; a device that holds nothing gets every message.
        def big(cid, title, t_ms):
            c = full_change(cid, title, n_messages=20, t_ms=t_ms)
            for m in c["messages"]:
                m["content"] = "%s: %s" % (m["id"], "the quick brown fox jumps over the lazy dog " * 4)
            return c
        desk = self.dev("desk")
        desk.clock = 1000
        first = self.post({"deviceId": "laptop", "cursor": None, "limit": 1,
                           "changes": [big("p%d" % i, "Packed %d" % i, T0_MS + i * 60000)
                                       for i in range(3)]})
        run = first["run"]
        # during the run, as the laptop's are: only its origin tells them apart
        desk.sync([big("theirs", "Desk's own", T0_MS)])
        desk.sync([{"chatId": "p1", "clock": 2000,
                    "messages": [msg("desk-m", "the desk adds one", timestamp=iso(T0_MS + 90000))]}])
        last = self.post({"deviceId": "laptop", "cursor": None, "limit": 5000, "run": run,
                          "changes": [big("p9", "Packed 9", T0_MS + 9 * 60000)]})
        if harness.BACKEND == "sqlite":
            con = sqlite3.connect("file:%s?mode=ro" % self.server.db_path, uri=True, timeout=10)
            try:
                packed = {r[0] for r in con.execute("SELECT DISTINCT chat_id FROM packs")}
            finally:
                con.close()
            self.assertEqual(packed, {"theirs", "p0", "p1", "p2", "p9"}, "the chats are packed")
        got = norm_entries(last["chats"])
        self.assertEqual(set(got), {"theirs", "p0", "p1", "p2"}, sorted(got))
        self.assertEqual(got["p0"], {"id": "p0"})
        self.assertEqual(got["p2"], {"id": "p2"})
        self.assertEqual(set(got["p1"]), {"id", "messages"}, got["p1"])
        self.assertEqual(set(got["p1"]["messages"]), {"desk-m"})
        self.assertEqual(set(got["theirs"]["messages"]), {"theirs-m%d" % i for i in range(20)})
        whole = norm_entries(self.post({"deviceId": "tablet", "cursor": None,
                                        "limit": 5000})["chats"])
        self.assertEqual(set(whole), {"theirs", "p0", "p1", "p2", "p9"})
        self.assertEqual(len(whole["p1"]["messages"]), 21)
        for cid in ("p0", "p2", "p9"):
            self.assertEqual(len(whole[cid]["messages"]), 20, cid)

    def test_a_run_leaves_out_only_the_messages_the_device_wrote_in_it(self):
        # The laptop's messages from before the run (a sync that finished,
        # then a lost cursor) may be gone from it: they come back. Those it
        # pushed in the run do not; one the desk added in the middle does.
        self.post({"deviceId": "laptop", "cursor": None, "limit": 5000,
                   "changes": [full_change("old", "Old", n_messages=2)]})
        first = self.post({"deviceId": "laptop", "cursor": None, "limit": 1,
                           "changes": [full_change("c1", "Chat 1", n_messages=3)]})
        desk = self.dev("desk")
        desk.clock = 5000
        desk.sync([{"chatId": "c1", "clock": 5000,
                    "messages": [msg("desk-m", "from the desk", timestamp=T0)]}])
        last = self.post({"deviceId": "laptop", "cursor": None, "limit": 5000,
                          "run": first["run"], "changes": [full_change("c2", "Chat 2")]})
        got = norm_entries(last["chats"])
        self.assertEqual(set(got), {"old", "c1"}, sorted(got))
        self.assertEqual(set(got["old"]["messages"]), {"old-m0", "old-m1"})
        self.assertEqual(set(got["c1"].get("messages", {})), {"desk-m"})
        self.assertNotIn("fields", got["c1"], "the laptop's own title, pushed in the run")

    def test_a_run_tells_of_a_message_deleted_since_it_began(self):
        # docs/protocol.md, `run`: "deletions since the run began are told".
        # The laptop pushed c1's three messages in the run's first request
        # and holds them; the desk then deleted one. The laptop's first pull
        # must say so: later pulls start past that tombstone, so a pull that
        # leaves it out leaves the laptop showing a message nobody else has.
        first = self.post({"deviceId": "laptop", "cursor": None, "limit": 1,
                           "changes": [full_change("c1", "Chat 1", n_messages=3)]})
        desk = self.dev("desk")
        desk.clock = 5000
        desk.sync([{"chatId": "c1", "clock": 5000, "deleteMessages": ["c1-m1"]}])
        self.assertNotIn("c1-m1", self.full().chats["c1"]["messages"], "the desk's deletion won")
        last = self.post({"deviceId": "laptop", "cursor": None, "limit": 5000,
                          "run": first["run"], "changes": []})
        got = norm_entries(last["chats"])
        self.assertIn("c1", got, sorted(got))
        self.assertEqual(set(got["c1"].get("deletedMessages", [])), {"c1-m1"}, last["chats"])
        self.assertNotIn("messages", got["c1"], "its own messages it holds")

    def test_a_chat_changed_twice_in_one_request_is_held_as_its_last_change(self):
        # the device applied its own changes in order: the renamed title,
        # the second message and no first one; the server's merge (higher
        # clock wins) agrees, so nothing of it comes back
        last = self.post({"deviceId": "laptop", "cursor": None, "limit": 5000, "changes": [
            {"chatId": "x", "clock": 1, "fields": {"title": "First"},
             "messages": [msg("m1", "one", timestamp=T0)]},
            {"chatId": "other", "clock": 2, "fields": {"title": "Other"}},
            {"chatId": "x", "clock": 3, "fields": {"title": "Second"},
             "messages": [msg("m2", "two", timestamp=T0)], "deleteMessages": ["m1"]}]})
        self.assertEqual(last["chats"], [], "echoed what the laptop holds")
        # the same chat seen by a device that holds nothing: the last title, m2 only
        other = self.post({"deviceId": "desk", "cursor": None, "limit": 5000})
        got = norm_entries(other["chats"])
        self.assertEqual(got["x"]["fields"]["title"], "Second")
        self.assertEqual(set(got["x"]["messages"]), {"m2"})

    def test_without_a_run_the_earlier_pushes_come_back(self):
        # the device may be one that lost its data: only a run says it holds them
        self.post({"deviceId": "laptop", "cursor": None, "limit": 1,
                   "changes": [full_change("early", "Early")]})
        last = self.post({"deviceId": "laptop", "cursor": None, "limit": 5000,
                          "changes": [full_change("late", "Late")]})
        self.assertEqual([e["id"] for e in last["chats"]], ["early"])
        self.assertEqual(len(last["chats"][0]["messages"]), 3)

    def test_a_run_does_not_hide_a_write_that_lost(self):
        # the desk's newer title wins over the laptop's older one, pushed in
        # the run's first request: the laptop must get the winner
        desk = self.dev("desk")
        desk.clock = 1000
        desk.sync([{"chatId": "x", "fields": {"title": "Desk wins"}}])
        first = self.post({"deviceId": "laptop", "cursor": None, "limit": 1,
                           "changes": [{"chatId": "x", "clock": 1, "fields": {"title": "Laptop"},
                                        "messages": [msg("lm", "laptop's", timestamp=T0)]}]})
        last = self.post({"deviceId": "laptop", "cursor": None, "limit": 5000,
                          "run": first["run"], "changes": []})
        got = norm_entries(last["chats"])
        self.assertEqual(set(got), {"x"})
        self.assertEqual(got["x"].get("fields"), {"title": "Desk wins"})
        self.assertNotIn("messages", got["x"], "its own message it holds")

    def test_bad_runs_are_refused_and_change_nothing(self):
        self.post({"deviceId": "w", "cursor": None, "changes": [full_change("s", "S")]})
        for run in ("x", 5, True, {}, "r1.-1", "r1.5x", "r1.99999999"):
            before = self.full().live()
            state = self.server.store_state()
            status, _, doc = self.server.v2({"deviceId": "d", "cursor": None, "run": run,
                                             "changes": [full_change("new", "New")]})
            self.assertEqual(status, 400, "run %r -> %d" % (run, status))
            self.assertErrorBody(doc, "invalid_payload")
            self.assertEqual(doc.get("field"), "run")
            self.assertStoreUnchanged(state)
            self.assertEqual(self.full().live(), before)


class NoEchoTest(V2TestCase):

    def test_own_changes_are_not_echoed(self):
        a = self.dev("device-a")
        b = self.dev("device-b")
        a.sync()
        b.sync()
        changes = [full_change("x", "X", n_messages=4),
                   {"chatId": "x", "fields": {"title": "X2", "isArchived": True}},
                   {"chatId": "x", "deleteMessages": ["x-m0"]},
                   full_change("y", "Y"),
                   {"chatId": "y", "deleteChat": True}]
        doc = a.sync(changes)
        self.assertEqual(doc["chats"], [], "the push's own answer echoes the push")
        doc = a.sync()
        self.assertEqual(doc["chats"], [], "the next pull echoes the push")
        self.assertLess(a.last_size, 500)
        # The other device gets all of it.
        doc = b.sync()
        got = norm_entries(doc["chats"])
        self.assertEqual(got["x"]["fields"]["title"], "X2")
        self.assertEqual(set(got["x"]["messages"]), {"x-m1", "x-m2", "x-m3"})
        self.assertNotIn("x-m0", got["x"].get("messages", {}))
        # y was created and deleted before b ever saw it: a deletion or nothing.
        if "y" in got:
            self.assertEqual(got["y"], {"id": "y", "deleted": True})
        self.assertSameState(a.local, self.full(), "device A")
        self.assertSameState(b.local, self.full(), "device B")

    def test_interleaved_changes_to_one_chat(self):
        a = self.dev("device-a")
        b = self.dev("device-b")
        a.sync([full_change("shared", "Original", n_messages=2)])
        b.sync()
        # Both change the same chat without seeing each other's change.
        b.sync([{"chatId": "shared", "messages": [msg("from-b", "B's message")]}])
        doc = a.sync([{"chatId": "shared", "fields": {"title": "A's title"}}])
        e = by_id(doc["chats"])["shared"]
        self.assertEqual([m["id"] for m in e.get("messages", [])], ["from-b"])
        self.assertNotIn("title", e.get("fields") or {}, "A's own title came back")
        doc = b.sync()
        e = by_id(doc["chats"])["shared"]
        self.assertEqual(e.get("fields"), {"title": "A's title"})
        self.assertFalse(e.get("messages"), "B's own message came back")
        full = self.full()
        self.assertEqual(full.chats["shared"]["fields"]["title"], "A's title")
        self.assertIn("from-b", full.chats["shared"]["messages"])
        self.assertSameState(a.local, full, "device A")
        self.assertSameState(b.local, full, "device B")

    def test_stale_concurrent_edit_loses_and_loser_is_told(self):
        a = self.dev("device-a")
        b = self.dev("device-b")
        a.sync([full_change("k", "Original")])
        b.sync()
        # a's clock races ahead; b edits with a lower clock, not having seen a's edit.
        a.clock += 100
        a.sync([{"chatId": "k", "fields": {"title": "A wins"}}])
        doc = b.sync([{"chatId": "k", "fields": {"title": "B loses"}}])
        self.assertEqual(by_id(doc["chats"])["k"].get("fields", {}).get("title"), "A wins",
                         "the losing device must get the winning value")
        self.assertEqual(a.sync()["chats"], [], "a's own winning title echoed back")
        full = self.full()
        self.assertSameState(a.local, full, "device A")
        self.assertSameState(b.local, full, "device B")

    # -- randomised --

    def run_random(self, seed, n_devices, steps):
        rng = random.Random(seed)
        origin = Registry()
        devs = [self.dev("s%d-dev-%d" % (seed, i), origin) for i in range(n_devices)]
        chats = ["s%d-r%d" % (seed, i) for i in range(10)]
        counter = [0]
        for d in devs:
            d.sync()
        for step in range(steps):
            d = rng.choice(devs)
            changes = []
            if not d.more or rng.random() < 0.5:
                for _ in range(rng.choice((0, 1, 1, 2, 3))):
                    changes.append(random_change(rng, d, chats, counter, origin, step))
            d.sync(changes, limit=rng.choice((None, None, 1, 2, 3)))
        for _ in range(2):
            for d in devs:
                d.sync_all()
        full = self.full()
        self.assertGreater(len(full.chats), 3)
        self.assertDevicesConverged(devs, full)
        # Legacy view agrees too.
        fetched = by_id(self.server.fetch())
        self.assertEqual(set(fetched), set(full.live()))
        for cid, c in fetched.items():
            self.assertEqual({m["id"]: m["content"] for m in c["messages"]},
                             {mid: m["content"] for mid, m in full.chats[cid]["messages"].items()})

    def test_random_interleavings_converge(self):
        for seed in (1, 2, 3):
            with self.subTest(seed=seed):
                self.run_random(seed, n_devices=4, steps=150)

    def test_concurrent_devices_converge(self):
        # Real concurrency: what goes wrong depends on the interleaving, so a
        # few rounds, each on a fresh server, make a race likely to show.
        for rnd in range(3):
            with self.subTest(round=rnd):
                server = self.server if rnd == 0 else self.new_server()
                self.run_threads(server, rnd)

    def run_threads(self, server, rnd, n=6, steps=60):
        origin = Registry()
        devs = [self.dev("thread-%d" % i, origin, server=server) for i in range(n)]
        chats = ["t%d" % i for i in range(8)]
        counter = [0]
        counter_lock = threading.Lock()
        errors = []

        def run(i):
            rng = random.Random(1000 * rnd + i)
            d = devs[i]
            try:
                d.sync()
                for step in range(steps):
                    changes = []
                    for _ in range(rng.choice((0, 1, 2))):
                        with counter_lock:
                            changes.append(random_change(rng, d, chats, counter, origin, step))
                    d.sync(changes, limit=rng.choice((None, 1, 3)))
            except Exception as e:   # noqa: BLE001 - reported below
                errors.append("%s: %r" % (d.name, e))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
            self.assertFalse(t.is_alive(), "a device thread hung")
        self.assertEqual(errors, [])
        for _ in range(2):
            for d in devs:
                d.sync_all()
        self.assertDevicesConverged(devs, self.full(server))


def random_change(rng, d, chats, counter, origin, step):
    """One random change from device d: fields, messages, edits, message deletions."""
    counter[0] += 1
    n = counter[0]
    tag = "%s#%d" % (d.name, n)
    cid = rng.choice(chats)
    t = iso(T0_MS + step * 1000 + rng.randint(-300000, 300000))
    ch = {"chatId": cid, "at": t}
    local = d.local.chats.get(cid)
    have = sorted(local["messages"]) if local and not local["deleted"] else []
    kind = rng.random()
    if local is None or kind < 0.25:
        title = "title " + tag
        origin.who[title] = d.name
        ch["fields"] = {"title": title, "lastModified": t, "updatedAt": t}
        if local is None:
            ch["fields"]["createdAt"] = t
        if rng.random() < 0.3:
            model = "model " + tag
            origin.who[model] = d.name
            ch["fields"]["model"] = model
            ch["fields"]["isArchived"] = rng.random() < 0.5
    if local is None or kind >= 0.25:
        sub = rng.random()
        if have and sub < 0.25:
            mid = rng.choice(have)
            content = "edit " + tag
            origin.who[content] = d.name
            ch["messages"] = [msg(mid, content, role=local["messages"][mid].get("role", "user"),
                                  timestamp=t)]
        elif have and sub < 0.45:
            ch["deleteMessages"] = rng.sample(have, min(len(have), rng.choice((1, 1, 2))))
        else:
            ch["messages"] = []
            for j in range(rng.choice((1, 1, 2, 3))):
                content = "msg %s.%d" % (tag, j)
                origin.who[content] = d.name
                ch["messages"].append(msg("%s-m%d-%d" % (d.name, n, j), content,
                                          role=rng.choice(("user", "assistant")), timestamp=t))
            if rng.random() < 0.1:
                ch["messages"].append(msg("%s-p%d" % (d.name, n), "private " + tag, isPrivate=True))
        if "fields" not in ch:
            ch["fields"] = {"lastModified": t}
    return ch


# ---- 4. pagination -------------------------------------------------------------

class PaginationTest(V2TestCase):
    N = 20

    def setUp(self):
        super().setUp()
        self.w = self.dev("writer")
        # One chat per request, so "the order they last changed" is c00..c19.
        for i in range(self.N):
            self.w.sync([full_change("c%02d" % i, "Chat %d" % i, n_messages=1 + i % 4,
                                     t_ms=T0_MS + i * 1000)])
        status, _, doc = self.server.v2({"deviceId": "big-reader", "cursor": None, "limit": 5000})
        self.assertEqual(status, 200)
        self.assertFalse(doc["more"])
        self.single = norm_entries(doc["chats"])
        self.assertEqual(len(self.single), self.N)

    def pages(self, d, limit):
        out = []
        for page in d.sync_all(limit=limit):
            out.append(page["chats"])
        return out

    def test_pages_equal_one_big_pull(self):
        for limit in (1, 2, 7):
            with self.subTest(limit=limit):
                d = self.dev("paged-%d" % limit)
                pages = self.pages(d, limit)
                self.assertEqual(len(pages), -(-self.N // limit), [len(p) for p in pages])
                for p in pages[:-1]:
                    self.assertEqual(len(p), limit, "a page with more: true stopped at the limit")
                seen = [e["id"] for p in pages for e in p]
                self.assertEqual(sorted(seen), sorted(self.single), "every chat exactly once")
                self.assertEqual(seen, ["c%02d" % i for i in range(self.N)],
                                 "in the order they last changed")
                self.assertEqual(norm_entries([e for p in pages for e in p]), self.single)
                self.assertEqual(d.sync()["chats"], [], "nothing left after the last page")

    def test_limit_boundaries(self):
        for limit, sizes in ((self.N, [self.N]), (self.N + 1, [self.N]), (self.N - 1, [self.N - 1, 1]),
                             (5000, [self.N])):
            with self.subTest(limit=limit):
                d = self.dev("bound-%d" % limit)
                pages = d.sync_all(limit=limit)
                self.assertEqual([len(p["chats"]) for p in pages], sizes,
                                 "more: %r" % [p["more"] for p in pages])
                self.assertEqual(norm_entries([e for p in pages for e in p["chats"]]), self.single)
        # The default limit (500) covers 20 chats.
        d = self.dev("default-limit")
        self.assertFalse(d.sync()["more"])

    def test_delta_pages_equal_one_pull_and_cursor_reuse(self):
        r = self.dev("reader")
        r.sync_all()
        start = r.cursor
        changed = ["c%02d" % i for i in (3, 17, 0, 9, 12, 5, 6, 19, 1, 11)]
        for i, cid in enumerate(changed):
            self.w.sync([{"chatId": cid, "fields": {"title": "v2 %d" % i},
                          "messages": [msg("new-%s" % cid, "added to " + cid)]}])
        one = r.sync(cursor=start, limit=5000)
        self.assertFalse(one["more"])
        self.assertEqual([e["id"] for e in one["chats"]], changed)
        for limit in (1, 3, 7):
            with self.subTest(limit=limit):
                got = []
                cur = start
                for _ in range(100):
                    page = r.sync(cursor=cur, limit=limit)
                    self.assertLessEqual(len(page["chats"]), limit)
                    got.extend(page["chats"])
                    cur = page["cursor"]
                    if not page["more"]:
                        break
                self.assertEqual([e["id"] for e in got], changed, "each changed chat once, in order")
                self.assertEqual(norm_entries(got), norm_entries(one["chats"]))

    def test_chat_changed_between_pages_of_a_first_sync(self):
        d = self.dev("paged")
        first = d.sync(limit=5)
        self.assertTrue(first["more"])
        delivered = [e["id"] for e in first["chats"]]
        self.assertEqual(delivered, ["c00", "c01", "c02", "c03", "c04"])
        # Another device changes a delivered chat, a pending one, and adds one.
        self.w.sync([{"chatId": "c02", "fields": {"title": "changed after page 1"}},
                     {"chatId": "c15", "messages": [msg("late", "late message")]},
                     full_change("c99", "new chat")])
        rest = []
        while d.more:
            rest.extend(d.sync(limit=5)["chats"])
        rest_ids = [e["id"] for e in rest]
        self.assertIn("c02", rest_ids, "a chat that changed between pages is sent again")
        self.assertIn("c99", rest_ids)
        self.assertEqual(set(delivered) | set(rest_ids), set(self.single) | {"c99"})
        full = self.full()
        self.assertEqual(full.chats["c02"]["fields"]["title"], "changed after page 1")
        self.assertIn("late", full.chats["c15"]["messages"])
        self.assertSameState(d.local, full, "the paged device")

    def test_chat_deleted_between_pages_of_a_first_sync(self):
        d = self.dev("paged")
        first = d.sync(limit=5)
        self.assertEqual([e["id"] for e in first["chats"]], ["c00", "c01", "c02", "c03", "c04"])
        # Deleted: one chat the device already has, one it has not been sent yet,
        # and one message of a delivered chat.
        self.w.sync([{"chatId": "c01", "deleteChat": True},
                     {"chatId": "c12", "deleteChat": True},
                     {"chatId": "c03", "deleteMessages": ["c03-m0"]}])
        while d.more:
            d.sync(limit=5)
        full = self.full()
        self.assertNotIn("c01", full.live())
        self.assertSameState(d.local, full, "a device whose first sync spanned the deletions")
        self.assertEqual(d.sync()["chats"], [])

    def test_chat_changed_between_pages_of_a_delta(self):
        r = self.dev("reader")
        r.sync_all()
        for i in range(10):
            self.w.sync([{"chatId": "c%02d" % i, "fields": {"title": "round 1 %d" % i}}])
        first = r.sync(limit=3)
        self.assertTrue(first["more"])
        self.assertEqual([e["id"] for e in first["chats"]], ["c00", "c01", "c02"])
        self.w.sync([{"chatId": "c01", "messages": [msg("between", "between pages")]},
                     {"chatId": "c08", "fields": {"title": "round 2"}},
                     {"chatId": "c15", "fields": {"title": "untouched before"}}])
        rest = []
        while r.more:
            rest.extend(r.sync(limit=3)["chats"])
        ids = [e["id"] for e in rest]
        self.assertIn("c01", ids, "a chat that changed between pages is sent again")
        self.assertIn("c15", ids)
        for cid in ["c%02d" % i for i in range(3, 10)]:
            self.assertIn(cid, ids)
        self.assertNotIn("c19", ids, "a chat nobody changed was sent")
        e = norm_entries(rest)["c01"]
        self.assertIn("between", e.get("messages", {}))
        self.assertSameState(r.local, self.full(), "the paged reader")

    def test_reusing_a_cursor_is_idempotent(self):
        r = self.dev("reader")
        r.sync_all()
        start = r.cursor
        for cid in ("c04", "c07", "c10"):
            self.w.sync([{"chatId": cid, "messages": [msg("again-" + cid)]}])
        a1 = r.sync(cursor=start, limit=2)
        a2 = r.sync(cursor=start, limit=2)
        self.assertEqual(norm_entries(a1["chats"]), norm_entries(a2["chats"]))
        self.assertEqual([e["id"] for e in a1["chats"]], [e["id"] for e in a2["chats"]])
        self.assertEqual(a1["more"], a2["more"])
        self.assertTrue(a1["more"])
        # A mid-pagination cursor, twice.
        b1 = r.sync(cursor=a1["cursor"], limit=2)
        b2 = r.sync(cursor=a1["cursor"], limit=2)
        self.assertEqual([e["id"] for e in b1["chats"]], ["c10"])
        self.assertEqual(norm_entries(b1["chats"]), norm_entries(b2["chats"]))
        self.assertEqual(b1["more"], b2["more"])
        # Modulo newer changes: the same cursor answers the same plus what is new.
        self.w.sync([{"chatId": "c13", "fields": {"title": "newer"}}])
        a3 = r.sync(cursor=start, limit=5000)
        got = norm_entries(a3["chats"])
        self.assertEqual(set(got), {"c04", "c07", "c10", "c13"})
        for cid, e in norm_entries(a1["chats"] + b1["chats"]).items():
            self.assertEqual(got[cid], e)
        # An up-to-date cursor, reused, stays empty.
        end = r.sync(cursor=a3["cursor"])
        self.assertEqual(end["chats"], [])
        self.assertEqual(r.sync(cursor=a3["cursor"])["chats"], [])


# ---- 5. deletions ----------------------------------------------------------------

class DeletionTest(V2TestCase):

    def setUp(self):
        super().setUp()
        self.a = self.dev("device-a")
        self.b = self.dev("device-b")
        self.a.sync([full_change("keep", "Keep", n_messages=4), full_change("drop", "Drop", n_messages=2),
                     full_change("legacy-drop", "L", n_messages=1)])
        self.b.sync()

    def test_deletions_propagate_to_v2_devices(self):
        self.a.sync([{"chatId": "keep", "deleteMessages": ["keep-m1", "keep-m2"]},
                     {"chatId": "drop", "deleteChat": True}])
        doc = self.b.sync()
        got = norm_entries(doc["chats"])
        self.assertEqual(set(got), {"keep", "drop"})
        self.assertEqual(got["keep"].get("deletedMessages"), ["keep-m1", "keep-m2"])
        self.assertNotIn("messages", got["keep"])
        self.assertNotIn("deleted", got["keep"])
        self.assertTrue(got["drop"].get("deleted"), got["drop"])
        self.assertNotIn("drop", self.b.local.live())
        self.assertEqual(set(self.b.local.live()["keep"]["messages"]), {"keep-m0", "keep-m3"})
        self.assertSameState(self.b.local, self.full(), "device B")
        # A first sync lists no deletions.
        full_doc = self.server.v2_ok({"deviceId": "newcomer", "cursor": None})
        self.assertNotIn("drop", [e["id"] for e in full_doc["chats"]])
        self.assertFalse(by_id(full_doc["chats"])["keep"].get("deletedMessages"))

    def test_v2_deletions_reach_legacy_clients(self):
        self.a.sync([{"chatId": "keep", "deleteMessages": ["keep-m1"]},
                     {"chatId": "drop", "deleteChat": True}])
        fetched = by_id(self.server.fetch())
        self.assertNotIn("drop", fetched)
        self.assertEqual(sorted(m["id"] for m in fetched["keep"]["messages"]),
                         ["keep-m0", "keep-m2", "keep-m3"])
        doc = self.server.sync_ok({"deviceId": "old-phone", "chats": []})
        dels = by_id(doc["deletions"])
        self.assertIn("drop", dels)
        self.assertLamport(dels["drop"].get("lamport"), "lamport")
        self.assertLamport(dels["drop"].get("deletedAtLamport"), "deletedAtLamport")
        missing = by_id(doc["missing"])
        self.assertNotIn("drop", missing)
        self.assertNotIn("keep-m1", [m["id"] for m in missing["keep"]["messages"]])

    def test_legacy_deletions_reach_v2_devices(self):
        self.assertEqual(self.server.delete_chat("legacy-drop"), {"ok": True, "deleted": True})
        # A Lamport-stamped legacy write (kind 1, docs/merge.md), newer than the v2 ones.
        self.server.push_ok([chat("keep", "Keep", [{"id": "keep-m3", "deleted": True}],
                                  last_modified="2025-06-01T12:00:00.000Z",
                                  updatedAtLamport=[1000, "old-phone"])])
        doc = self.b.sync()
        got = norm_entries(doc["chats"])
        self.assertTrue(got["legacy-drop"].get("deleted"), got)
        self.assertIn("keep-m3", got["keep"].get("deletedMessages", []))
        self.assertNotIn("keep-m3", got["keep"].get("messages", {}))
        self.assertSameState(self.b.local, self.full(), "device B")

    def test_a_later_change_brings_a_deleted_chat_back(self):
        deletion = self.a.stamp({"chatId": "drop", "deleteChat": True})
        deleted_at = deletion["clock"]
        self.a.sync([deletion])
        doc = self.b.sync()
        self.assertTrue(by_id(doc["chats"])["drop"].get("deleted"))
        self.assertGreaterEqual(self.b.clock, deleted_at)
        # An edit made without having seen the deletion (a lower clock) loses.
        c = self.dev("device-c")
        c.sync([{"chatId": "drop", "clock": deleted_at - 1, "fields": {"title": "stale edit"}}])
        self.assertNotIn("drop", by_id(self.server.fetch()))
        self.assertNotIn("drop", self.full().live())
        # B saw the deletion; its edit carries a higher clock and revives the chat.
        self.b.sync([{"chatId": "drop", "fields": {"title": "Back again"},
                      "messages": [msg("revived", "I'm back")]}])
        self.assertGreater(self.b.clock, deleted_at)
        full = self.full()
        self.assertIn("drop", full.live())
        back = full.chats["drop"]
        self.assertEqual(back["fields"]["title"], "Back again")
        # A deleted chat keeps its registers: it comes back with its messages.
        self.assertEqual(set(back["messages"]), {"drop-m0", "drop-m1", "revived"})
        self.assertIn("drop", by_id(self.server.fetch()))
        doc = self.a.sync()
        e = by_id(doc["chats"]).get("drop")
        self.assertIsNotNone(e, "the device that deleted the chat must learn it is back")
        self.assertFalse(e.get("deleted"))
        self.assertEqual(e.get("fields", {}).get("title"), "Back again")
        self.assertIn("revived", [m["id"] for m in e.get("messages", [])])
        legacy = self.server.sync_ok({"deviceId": "old-phone", "chats": []})
        self.assertIn("drop", by_id(legacy["missing"]))
        self.assertNotIn("drop", by_id(legacy["deletions"]))

    def test_revived_chat_converges_on_every_device(self):
        c = self.dev("device-c")
        c.sync()
        self.a.sync([{"chatId": "drop", "deleteChat": True}])
        self.b.sync()
        c.sync([{"chatId": "drop", "clock": 1, "messages": [msg("stale-from-c")]}])   # loses
        self.b.sync()
        self.b.sync([{"chatId": "drop", "fields": {"title": "revived by b"}}])
        for d in (self.a, self.b, c):
            d.sync()
        full = self.full()
        self.assertIn("drop", full.live())
        self.assertIn("stale-from-c", full.chats["drop"]["messages"],
                      "a deleted chat keeps its registers, the losing write's message included")
        for d in (self.a, self.b, c):
            self.assertSameState(d.local, full, d.name)

    def test_deleted_message_comes_back_with_a_later_write(self):
        self.a.sync([{"chatId": "keep", "deleteMessages": ["keep-m0"]}])
        self.b.sync()
        self.b.sync([{"chatId": "keep", "messages": [msg("keep-m0", "rewritten")]}])
        doc = self.a.sync()
        e = norm_entries(doc["chats"])["keep"]
        self.assertEqual(e["messages"]["keep-m0"]["content"], "rewritten")
        self.assertSameState(self.a.local, self.full(), "device A")


# ---- 6. cursors --------------------------------------------------------------------

class CursorTest(V2TestCase):

    def assertCursorRefused(self, cursor):
        before_fetch = self.server.fetch()
        status, _, doc = self.server.v2({"deviceId": "d", "cursor": cursor,
                                         "changes": [{"chatId": "should-not-land", "clock": 1,
                                                      "fields": {"title": "x"}}]})
        # docs/protocol.md: "Errors" says 400 invalid_cursor for a cursor the
        # server never issued; "Expired cursors" says 410 cursor_expired for
        # one "the server never issued". Either documented answer, never 200.
        self.assertIn(status, (400, 410), "cursor %r: %d %r" % (cursor, status, self.server.last_body[:300]))
        self.assertErrorBody(doc, "invalid_cursor" if status == 400 else "cursor_expired")
        self.assertEqual(self.server.fetch(), before_fetch, "a refused sync changed something")
        return status

    def test_never_issued_cursors_are_refused_and_null_recovers(self):
        w = self.dev("writer")
        w.sync([full_change("c1", "One"), full_change("c2", "Two")])
        issued = w.cursor
        bad = ["", "garbage", "c1", "c1.x.y", "c1.-1.5", "c9.1.1", "c1.1.1.1", "\u00e9\u00e9",
               "c1.999999999.999999999", "c1.9007199254740993.9007199254740993",
               "c1.99999999999999999999999.1", issued + "0", "x" * 5000]
        statuses = {}
        for cursor in bad:
            if cursor == issued:
                continue
            with self.subTest(cursor=cursor[:40]):
                statuses[cursor] = self.assertCursorRefused(cursor)
                # The client drops its cursor and syncs from null: everything.
                d = self.dev("recovering")
                doc = d.sync()
                self.assertEqual(set(by_id(doc["chats"])), {"c1", "c2"})
        self.assertEqual(self.server.request("GET", "/health")[0], 200)

    def test_resync_from_null_brings_the_device_back_in_step(self):
        # "Expired cursors": the client drops its cursor and syncs with cursor
        # null, sending all its local chats as changes, "which brings it back
        # in step". Here one of its chats was deleted meanwhile by a newer
        # deletion: its resent copy loses, and it must learn that, or it keeps
        # a chat no other device has, for good.
        a = self.dev("device-a")
        b = self.dev("device-b")
        a.sync([full_change("k1", "One", n_messages=2), full_change("k2", "Two", n_messages=2)])
        b.sync()
        a.clock += 50
        a.sync([{"chatId": "k1", "deleteChat": True},
                {"chatId": "k2", "fields": {"title": "Two, edited by a"}}])
        b.cursor = None          # as after a 410
        resend = []
        for cid, c in sorted(b.local.live().items()):
            fields = dict(c["fields"])
            fields.update({t: iso(v) for t, v in c["times"].items()})
            resend.append({"chatId": cid, "fields": fields,
                           "messages": [dict(m, timestamp=iso(m["timestamp"])) if "timestamp" in m else m
                                        for m in c["messages"].values()]})
        b.sync_all(resend)
        full = self.full()
        self.assertNotIn("k1", full.live(), "a's deletion is newer than b's resent copy")
        self.assertEqual(full.chats["k2"]["fields"]["title"], "Two, edited by a")
        self.assertSameState(b.local, full, "device b after its resync from cursor null")
        self.assertEqual(b.sync()["chats"], [])

    def test_cursor_survives_a_restart(self):
        w = self.dev("writer")
        r = self.dev("reader")
        w.sync([full_change("c1", "One")])
        r.sync()
        w.sync([{"chatId": "c1", "fields": {"title": "after"}}])
        self.server.restart()
        doc = r.sync()
        self.assertEqual([e["id"] for e in doc["chats"]], ["c1"])
        self.assertEqual(doc["chats"][0].get("fields"), {"title": "after"})
        w.sync([{"chatId": "c1", "messages": [msg("post-restart")]}])
        doc = r.sync()
        self.assertEqual([m["id"] for m in doc["chats"][0].get("messages", [])], ["post-restart"])
        self.assertEqual(w.sync()["chats"], [])

    def test_a_cursor_answers_the_same_after_a_restart(self):
        w = self.dev("writer")
        r = self.dev("reader")
        w.sync([full_change("c%d" % i, "C") for i in range(4)])
        r.sync()
        start = r.cursor
        w.sync([{"chatId": "c2", "fields": {"title": "x"}}])
        before = norm_entries(r.sync(cursor=start)["chats"])
        self.server.restart()
        after = norm_entries(r.sync(cursor=start)["chats"])
        self.assertEqual(before, after)


class NoopSyncTest(V2TestCase):
    """A sync that pushes nothing writes nothing to the database (no write
    transaction, no fsync): only its time changes, which /health shows at
    once and the server writes with its next write, with the first request
    a second or more later, or when it stops."""

    def setUp(self):
        super().setUp()
        self.a = self.dev("device-a")
        self.b = self.dev("device-b")
        self.b.sync([full_change("c%d" % i, "Chat %d" % i, n_messages=3) for i in range(3)])
        self.a.sync()

    def db(self):
        if harness.BACKEND == "postgres":
            return None  # stored_last_sync and row_version ask PostgreSQL (pg_query)
        # Read-only, and not kept in a transaction: never blocks the server.
        con = sqlite3.connect("file:%s?mode=ro" % self.server.db_path, uri=True, timeout=10,
                              isolation_level=None)
        self.addCleanup(con.close)
        return con

    def stored_last_sync(self, con):
        if harness.BACKEND == "postgres":  # no-op times have a table of their own there
            return int(harness.pg_query(self.server.db_url, (
                "SELECT greatest(u.last_sync_ms, coalesce(s.ms, 0)) FROM users u"
                " LEFT JOIN user_seen s ON s.name = u.name WHERE u.name = 'local'"))[0][0])
        return con.execute("SELECT last_sync_ms FROM users WHERE name = 'local'").fetchone()[0]

    def unwritten_marks(self, con):
        """What a write to the store would change: SQLite's data version and
        WAL size; PostgreSQL's row versions of the user and its chats (the
        time goes to user_seen there, so that writing it never waits for a
        writer holding the user's row)."""
        if harness.BACKEND == "postgres":
            return harness.pg_query(self.server.db_url,
                                    "SELECT (SELECT xmin::text FROM users WHERE name = 'local'),"
                                    " (SELECT string_agg(xmin::text, ',' ORDER BY id) FROM chats)")
        return (con.execute("PRAGMA data_version").fetchone()[0],
                os.path.getsize(self.server.db_path + "-wal"))

    def health_last_sync(self):
        return parse_iso_ms(self.server.health()["lastSync"])

    def test_noop_sync_leaves_the_database_alone_and_still_pulls(self):
        con = self.db()
        # A push first: any time left unwritten goes with it, so what follows
        # is not a time-based flush of an older no-op.
        self.b.sync([{"chatId": "c1", "fields": {"title": "renamed by b"}}])
        marks = self.unwritten_marks(con)
        stored = self.stored_last_sync(con)
        before = now_ms()
        doc = self.a.sync()          # pushes nothing, pulls b's change
        after = now_ms()
        self.assertEqual([e["id"] for e in doc["chats"]], ["c1"])
        self.assertEqual(doc["chats"][0].get("fields"), {"title": "renamed by b"})
        self.assertEqual(self.unwritten_marks(con), marks,
                         "a sync that pushed nothing committed a write")
        self.assertEqual(self.stored_last_sync(con), stored)
        # Its time is the last sync all the same, before and after a clean stop.
        shown = self.health_last_sync()
        self.assertGreaterEqual(shown, before - 1000)
        self.assertLessEqual(shown, after + 1000)
        self.server.restart()
        self.assertEqual(self.stored_last_sync(con), shown)
        self.assertEqual(self.health_last_sync(), shown)
        # Nothing was lost for anyone: the cursors go on where they were.
        self.assertEqual(self.a.sync()["chats"], [])
        self.b.sync([{"chatId": "c2", "messages": [msg("late", "after the restart")]}])
        doc = self.a.sync()
        self.assertEqual([m["id"] for m in doc["chats"][0].get("messages", [])], ["late"])
        self.assertSameState(self.a.local, self.full(), "device A")

    def test_noop_sync_time_reaches_the_disk_within_a_second(self):
        con = self.db()
        self.a.sync()
        time.sleep(1.2)
        before = now_ms()
        self.a.sync()                # the earlier time is now due: written with this one's
        after = now_ms()
        written = self.stored_last_sync(con)
        self.assertGreaterEqual(written, before - 1000)
        self.assertLessEqual(written, after + 1000)
        self.server.kill9()
        self.server.start()
        self.assertEqual(self.health_last_sync(), written)
        self.assertEqual(self.a.sync()["chats"], [])

    def test_noop_then_push_by_the_same_user(self):
        self.a.sync()
        noop_time = self.health_last_sync()
        self.b.sync([{"chatId": "c0", "fields": {"title": "pushed"}}])
        con = self.db()
        self.assertGreaterEqual(self.stored_last_sync(con), noop_time)
        self.assertEqual(self.a.sync()["chats"][0]["fields"], {"title": "pushed"})

    def test_first_noop_sync_of_a_new_user_is_kept(self):
        s = self.new_server()
        before = now_ms()
        doc = s.v2_ok({"deviceId": "fresh", "cursor": None})
        self.assertEqual(doc["chats"], [])
        self.assertGreaterEqual(parse_iso_ms(s.health()["lastSync"]), before - 1000)
        s.kill9()
        s.start()
        self.assertIsNotNone(s.health()["lastSync"], "a new user's first sync is durable")
        self.assertEqual(s.v2_ok({"deviceId": "fresh", "cursor": doc["cursor"]})["chats"], [])


# ---- 8. validation -------------------------------------------------------------------

def good_changes():
    return [{"chatId": "ok-0", "clock": 5, "fields": {"title": "fine"}},
            {"chatId": "ok-1", "clock": 6, "messages": [msg("m0"), msg("m1")]},
            {"chatId": "ok-2", "clock": 7, "messages": [msg("m0")]}]


class ValidationTest(V2TestCase):

    def setUp(self):
        super().setUp()
        self.w = self.dev("writer")
        self.w.sync([full_change("seed", "kept", n_messages=2)])

    def snapshot(self):
        return self.server.fetch(), self.full().live()

    def assertInvalid(self, payload, field, change_index=None, code="invalid_payload", raw=None):
        """field: the full path (e.g. changes[2].messages[0].role). The legacy
        form (chatIndex + a path relative to the chat) is taken as well."""
        before = self.snapshot()
        state = self.server.store_state()
        status, headers, doc = self.server.request("POST", V2, body=payload if raw is None else None,
                                                   raw=raw)
        self.assertStoreUnchanged(state)
        self.assertEqual(status, 400, "%r -> %d %r" % (payload, status, self.server.last_body[:300]))
        self.assertErrorBody(doc, code)
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
        if field is not None:
            got = doc.get("field")
            if change_index is not None and got != field:
                prefix = "changes[%d]" % change_index
                rel = field[len(prefix) + 1:] if field.startswith(prefix + ".") else None
                self.assertEqual(doc.get("chatIndex"), change_index,
                                 "field %r (want %r or chatIndex %d + %r)" % (got, field, change_index, rel))
                self.assertEqual(got, rel, "want field %r (or %r with chatIndex)" % (field, rel))
            else:
                self.assertEqual(got, field, doc)
        self.assertEqual(self.snapshot(), before, "a rejected request changed something")

    def with_bad(self, index, **change):
        changes = good_changes()
        changes.insert(index, change)
        return {"deviceId": "d", "cursor": None, "changes": changes}

    def test_top_level(self):
        for payload, field in (({"cursor": None}, "deviceId"),
                               ({"deviceId": "", "cursor": None}, "deviceId"),
                               ({"deviceId": 7, "cursor": None}, "deviceId"),
                               ({"deviceId": None}, "deviceId"),
                               ({"deviceId": "x" * 257}, "deviceId"),
                               ({"deviceId": "\u00e9" * 128 + "a"}, "deviceId"),
                               ({"deviceId": "d", "cursor": 42}, "cursor"),
                               ({"deviceId": "d", "cursor": ["c1.1.1"]}, "cursor"),
                               ({"deviceId": "d", "cursor": {}}, "cursor"),
                               ({"deviceId": "d", "cursor": True}, "cursor"),
                               ({"deviceId": "d", "limit": 0}, "limit"),
                               ({"deviceId": "d", "limit": 5001}, "limit"),
                               ({"deviceId": "d", "limit": -1}, "limit"),
                               ({"deviceId": "d", "limit": "10"}, "limit"),
                               ({"deviceId": "d", "limit": 1.5}, "limit"),
                               ({"deviceId": "d", "changes": {}}, "changes"),
                               ({"deviceId": "d", "changes": "x"}, "changes")):
            with self.subTest(payload=json.dumps(payload)[:80]):
                if "changes" not in payload:
                    payload = dict(payload, changes=good_changes())
                self.assertInvalid(payload, field)

    def test_body_not_an_object(self):
        for body in ([], "x", 42, None, [{"deviceId": "d"}]):
            with self.subTest(body=body):
                self.assertInvalid(None, None, raw=json.dumps(body).encode())

    def test_malformed_json(self):
        for raw in (b'{"deviceId":"d",', b"{deviceId:1}", b"", b'{"deviceId":"d"} x'):
            with self.subTest(raw=raw):
                self.assertInvalid(None, None, code="malformed_json", raw=raw)

    def test_change_shape(self):
        cases = [
            (dict(), 1, "changes[1].chatId"),
            (dict(chatId=5), 0, "changes[0].chatId"),
            (dict(chatId=""), 2, "changes[2].chatId"),
            (dict(chatId="a" * 257), 3, "changes[3].chatId"),
            (dict(chatId="x", messages={}), 2, "changes[2].messages"),
            (dict(chatId="x", messages="m"), 0, "changes[0].messages"),
            (dict(chatId="x", messages=[msg("a"), {"role": "user", "content": "c"}]), 2,
             "changes[2].messages[1].id"),
            (dict(chatId="x", messages=[{"id": "a", "content": "c"}]), 2, "changes[2].messages[0].role"),
            (dict(chatId="x", messages=[{"id": "a", "role": "user"}]), 1, "changes[1].messages[0].content"),
            (dict(chatId="x", messages=[{"id": "a", "role": 3, "content": "c"}]), 0,
             "changes[0].messages[0].role"),
            (dict(chatId="x", messages=[msg("a"), "not a message"]), 2, "changes[2].messages[1]"),
            (dict(chatId="x", clock=-1), 2, "changes[2].clock"),
            (dict(chatId="x", clock=2 ** 53), 2, "changes[2].clock"),
            (dict(chatId="x", clock=2 ** 64), 1, "changes[1].clock"),
            (dict(chatId="x", clock=1.5), 1, "changes[1].clock"),
            (dict(chatId="x", clock="3"), 1, "changes[1].clock"),
            (dict(chatId="x", at="yesterday"), 3, "changes[3].at"),
            (dict(chatId="x", fields=[]), 0, "changes[0].fields"),
            (dict(chatId="x", fields={"lastModified": "2024-13-45T99:00:00Z"}), 0,
             "changes[0].fields.lastModified"),
            (dict(chatId="x", deleteMessages="m0"), 2, "changes[2].deleteMessages"),
            (dict(chatId="x", deleteMessages=["m0", 4]), 2, "changes[2].deleteMessages[1]"),
            (dict(chatId="x", deleteChat="yes"), 1, "changes[1].deleteChat"),
        ]
        for change, index, field in cases:
            with self.subTest(change=json.dumps(change)[:80], index=index):
                self.assertInvalid(self.with_bad(index, **change), field, change_index=index)

    def test_change_not_an_object(self):
        payload = {"deviceId": "d", "changes": good_changes()[:2] + ["nope"]}
        before = self.snapshot()
        state = self.server.store_state()
        status, _, doc = self.server.v2(payload)
        self.assertStoreUnchanged(state)
        self.assertEqual(status, 400)
        self.assertErrorBody(doc, "invalid_payload")
        self.assertTrue(doc.get("field") == "changes[2]" or doc.get("chatIndex") == 2, doc)
        self.assertEqual(self.snapshot(), before)

    def test_rejected_request_changes_nothing(self):
        # Valid changes to new and existing chats, then one bad one: none lands,
        # and the device's cursor and the server clock do not move.
        r = self.dev("reader")
        r.sync()
        clock_before = r.sync()["serverClock"]
        payload = {"deviceId": "writer", "cursor": self.w.cursor, "changes": [
            {"chatId": "seed", "clock": 10 ** 6, "fields": {"title": "changed"}},
            {"chatId": "seed", "clock": 10 ** 6 + 1, "deleteMessages": ["seed-m0"]},
            {"chatId": "brand-new", "clock": 10 ** 6 + 2, "messages": [msg("n")]},
            {"chatId": "seed", "clock": 10 ** 6 + 3, "deleteChat": True},
            {"chatId": "bad", "clock": 10 ** 6 + 4, "messages": [{"id": "x", "content": "no role"}]}]}
        self.assertInvalid(payload, "changes[4].messages[0].role", change_index=4)
        doc = r.sync()
        self.assertEqual(doc["chats"], [], "a rejected request left a change behind")
        self.assertLess(doc["serverClock"], 10 ** 6, "a rejected request moved the clock")
        self.assertGreaterEqual(doc["serverClock"], clock_before)

    def test_limits_at_the_edges_accepted(self):
        d = self.dev("edge")
        for limit in (1, 5000):
            self.assertEqual(self.server.v2({"deviceId": "edge", "limit": limit})[0], 200)
        d.sync([{"chatId": "zero", "clock": 0, "fields": {"title": "clock zero"}}])
        d.sync([{"chatId": "max", "clock": MAX_SAFE, "fields": {"title": "clock max"}}])
        self.assertGreaterEqual(d.clock, MAX_SAFE)
        self.assertEqual(self.server.v2({"deviceId": "x" * 256})[0], 200)
        self.assertEqual(self.server.v2({"deviceId": "\u00e9" * 128})[0], 200)
        self.assertEqual(self.server.v2({"deviceId": "d", "changes": [
            {"chatId": "c" * 256, "fields": {"title": "long id"}}]})[0], 200)
        self.assertEqual(self.server.v2({"deviceId": "d", "changes": []})[0], 200)
        self.assertEqual(self.server.v2({"deviceId": "d", "changes": [
            {"chatId": "epoch", "at": T0_MS, "fields": {"title": "epoch ms", "lastModified": T0_MS}}]})[0],
            200, self.server.last_body[:300])
        self.assertEqual(self.full().chats["epoch"]["times"].get("lastModified"), T0_MS)
        live = self.full().live()
        self.assertIn("zero", live)
        self.assertIn("max", live)
        self.assertIn("c" * 256, live)

    def test_http_level_errors(self):
        status, headers, doc = self.server.request("GET", V2)
        self.assertEqual(status, 405)
        self.assertErrorBody(doc, "method_not_allowed")
        self.assertIn("POST", headers.get("Allow", ""))
        status, _, doc = self.server.request("POST", V2, body={"deviceId": "d"},
                                             headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 415)
        self.assertErrorBody(doc, "unsupported_media_type")
        status, _, doc = self.server.request("POST", "/v2/nope", body={"deviceId": "d"})
        self.assertEqual(status, 404)
        self.assertErrorBody(doc, "not_found")
        status, headers, _ = self.server.request("OPTIONS", V2)
        self.assertEqual(status, 204)
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")


class MaxChatsTest(V2TestCase):
    SERVER_ARGS = ("--max-chats", "10")

    def test_too_many_changes(self):
        w = self.dev("w")
        w.sync([{"chatId": "c%d" % i, "fields": {"title": "t"}} for i in range(10)])
        status, _, doc = self.server.v2({"deviceId": "w", "changes": [
            {"chatId": "n%d" % i, "clock": 99, "fields": {"title": "t"}} for i in range(11)]})
        self.assertEqual(status, 413, self.server.last_body[:300])
        self.assertErrorBody(doc, "too_large")
        self.assertEqual(set(self.full().live()), {"c%d" % i for i in range(10)})


# ---- 9. a large pull --------------------------------------------------------------------

class LargePullTest(V2TestCase):
    CHATS = 200
    MESSAGES = 40
    BODY = 2000

    def test_large_first_sync_pages_at_8_mib(self):
        w = self.dev("bulk-writer")
        expected = {}
        batch = []
        for i in range(self.CHATS):
            cid = "big-%03d" % i
            msgs = [msg("%s-%02d" % (cid, j), ("%s/%02d " % (cid, j)) + "x" * self.BODY,
                        timestamp=iso(T0_MS + j)) for j in range(self.MESSAGES)]
            expected[cid] = {m["id"]: m["content"] for m in msgs}
            batch.append({"chatId": cid, "fields": {"title": "Bulk %d" % i, "lastModified": T0},
                          "messages": msgs})
            if len(batch) == 25:
                w.sync(batch)
                batch = []
        if batch:
            w.sync(batch)
        chat_size = self.MESSAGES * (self.BODY + 150) + 300
        d = self.dev("big-reader")
        pages = []
        sizes = []
        more = True
        while more:
            doc = d.sync(limit=5000)
            pages.append(doc)
            sizes.append(len(self.server.last_body))
            more = doc["more"]
            self.assertLess(len(pages), 50)
        self.assertGreaterEqual(len(pages), 2, "about 16 MB of chats in one answer: %r" % sizes)
        self.assertTrue(pages[0]["more"])
        self.assertLess(len(pages[0]["chats"]), self.CHATS)
        for s in sizes[:-1]:
            self.assertLessEqual(s, 8 * MIB + chat_size, "a page went well past 8 MiB: %r" % sizes)
            self.assertGreaterEqual(s, 8 * MIB - chat_size, "a page stopped well short of 8 MiB: %r"
                                    % sizes)
        seen = [e["id"] for p in pages for e in p["chats"]]
        self.assertEqual(sorted(seen), sorted(expected), "every chat exactly once")
        for p in pages:
            for e in p["chats"]:
                self.assertEqual({m["id"]: m["content"] for m in e["messages"]}, expected[e["id"]])
        self.assertEqual(d.sync()["chats"], [])


if __name__ == "__main__":
    unittest.main()
