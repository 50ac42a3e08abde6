#!/usr/bin/env python3
"""
Mixed-population convergence simulator (issue #11): v2 devices, legacy
Lamport devices following the Polyglot app's client rules, and time-only
(seed-document) devices on the same chats, with clock skew, duplicated
requests, dropped answers, server restarts (SIGKILL and SIGTERM), chat and
message deletions and revivals. Stdlib only; the server process handling is
converge.py's.

Devices (per episode, 2 of each kind):
- v2: POST /v2/sync with `changes` (every change carries `clock` and `at`:
  its device's skewed time) and its cursor; a change is pending until an
  answer to a request that carried it arrives; an answer's chats are merged
  as docs/protocol.md says (fields and messages replace, deletedMessages and
  `deleted` remove), pages followed while `more`.
- Polyglot (legacy Lamport): full-state POST /sync of every chat it holds,
  `clientClock` (an integer until the app's object shape lands on main),
  `updatedAtLamport: [counter, deviceId]` and `lastModified` on each local
  change, deletions as `{id, lamport}` until acknowledged; a returned chat
  replaces its copy only if its tuple strictly dominates (or the device has
  neither the chat nor a deletion of it), a returned deletion removes its
  copy when its tuple dominates or equals the copy's.
- time-only (seed): full-state POST /sync with its deviceId and
  `lastModified` only; takes every chat it is sent whole; drops the chats
  listed in `deletions`. It edits (title, archive, messages), never deletes.

The oracle replays every request the server processed (answered 200, even
when the device then ignores the answer; a duplicate twice) through a model
of docs/merge.md written here, not the server's code: which values are writes
(v2 changes; legacy values not in the device's base, where the base of a
(device, chat) is what it last sent plus what it was last sent, both taken
from the model and the answer), each write's stamp (v2: at, clock, device;
Polyglot: lastModified, tuple; time-only: lastModified placed at the highest
counter of the chat's stamps older in time, deletions: the server's time),
the order of "Which write is newer", liveness. After the run, quiet passes
(every device syncs, no faults) until nothing changes twice in a row; then:

 O. the server's chats (GET /fetchChats) are the model's: the same live
    chats, and in each the same title, isArchived and live messages (id,
    content), messages in timestamp order. So every acknowledged write is
    the final value or lost to a write the rules call newer.
 W. per acknowledged write (every write the model replayed): the server
    holds its value, or the model's winner for that register is newer by
    the rules (or the chat is deleted by a deletion newer than the write).
 D. every device holds exactly the server's chats (per device).
 Q. the quiet passes settle within 10 passes.

Environment (or flags):
  PS_SIM_SEED    first seed (default 1); seed k of the run is SEED + k
  PS_SIM_SEEDS   number of seeds (episodes) to run (default 4); not
                 PS_SIM_ROUNDS, which converge.py reads as steps in all
  PS_SIM_STEPS   random steps per episode (default 300)
A failure prints the seed, the violations and the episode's trace tail.
"""
import argparse
import datetime
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import converge  # noqa: E402  (the server process handling)

NKIND = 2
P_SYNC = 0.4
P_DUP = 0.08
P_DROP = 0.08
P_KILL = 0.015
P_TERM = 0.006
MAX_SKEW_MS = 200 * 1000     # far inside the server's 300 s clamp
MIN_SKEW_MS = 30 * 1000      # time-only devices: never near the server's own clock
STEP_MS = 10
QUIET_MAX = 10
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def iso(ms):
    dt = EPOCH + datetime.timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def ms_of(text):
    return converge.parse_iso_ms(text)


def canon(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


# ---- the model of docs/merge.md -------------------------------------------

class Stamp:
    __slots__ = ("ts", "lamport", "device", "placed")

    def __init__(self, ts, lamport, device, placed=False):
        self.ts, self.lamport, self.device, self.placed = ts, lamport, device, placed

    def key(self):
        """'Which write is newer' as one sort key."""
        client = self.lamport > 0 and not self.placed
        # rule 2: at one counter, a placed time-only write is newer
        rank = 0 if client else 1
        if client:   # rule 3: Lamport writes by device, then time
            tail = (self.device.encode(), self.ts)
        else:        # time-only writes by time, then device
            tail = (self.ts, self.device.encode())
        return (self.lamport, rank, tail)

    def __repr__(self):
        return "[%d,%d,%s%s]" % (self.ts, self.lamport, self.device, ",placed" if self.placed else "")


def write_key(stamp, text):
    """rule 4: equal stamps by value, a tombstone (None) lowest."""
    return (stamp.key(), (0, "") if text is None else (1, text.encode()))


class ModelChat:
    def __init__(self):
        self.regs = {}         # ('f', name) / ('m', id) -> (stamp, text or None, value)
        self.touched = None
        self.deletion = None

    def write(self, reg, stamp, value, text):
        cur = self.regs.get(reg)
        if cur is None or write_key(stamp, text) > write_key(cur[0], cur[1]):
            self.regs[reg] = (stamp, text, value)

    def touch(self, stamp):
        if self.touched is None or stamp.key() > self.touched.key():
            self.touched = stamp

    def delete(self, stamp):
        if self.deletion is None or stamp.key() > self.deletion.key():
            self.deletion = stamp

    def live(self):
        newest = self.touched
        for st, _, _ in self.regs.values():
            if newest is None or st.key() > newest.key():
                newest = st
        if newest is None:
            return False
        return self.deletion is None or newest.key() > self.deletion.key()

    def place(self, ts):
        """Where a time-only write made at ts goes: the highest counter of the
        chat's stamps older in time."""
        best = 0
        stamps = [st for st, _, _ in self.regs.values()]
        stamps += [s for s in (self.touched, self.deletion) if s is not None]
        for s in stamps:
            if s.ts < ts and s.lamport > best:
                best = s.lamport
        return best

    def values(self):
        """Every register as (kind, key, text): a base's content."""
        return {(r[0], r[1], v[1]) for r, v in self.regs.items()}

    def view(self):
        fields = {r[1]: v[2] for r, v in self.regs.items() if r[0] == "f"}
        msgs = {r[1]: v[2] for r, v in self.regs.items() if r[0] == "m" and v[2] is not None}
        return {"title": fields.get("title"), "isArchived": fields.get("isArchived"),
                "messages": sorted((mid, m.get("content")) for mid, m in msgs.items())}


class Model:
    def __init__(self):
        self.chats = {}
        self.bases = {}        # (device, chat) -> set of (kind, key, text)
        self.writes = []       # every write replayed: (chat, reg, stamp, text)

    def chat(self, cid):
        return self.chats.setdefault(cid, ModelChat())

    def record(self, cid, c, reg, st, value, text):
        c.write(reg, st, value, text)
        self.writes.append((cid, reg, st, text))

    def v2_change(self, dev, ch):
        c = self.chat(ch["chatId"])
        st = Stamp(ms_of(ch["at"]), ch["clock"], dev)
        cid = ch["chatId"]
        for k, v in ch.get("fields", {}).items():
            self.record(cid, c, ("f", k), st, v, canon(v))
        for m in ch.get("messages", []):
            self.record(cid, c, ("m", m["id"]), st, m, canon(m))
        for mid in ch.get("deleteMessages", []):
            self.record(cid, c, ("m", mid), st, None, None)
        if ch.get("deleteChat"):
            c.delete(st)
        else:
            c.touch(st)

    def legacy_chat(self, dev, sent):
        cid = sent["id"]
        c = self.chat(cid)
        ts = 0
        for k in ("lastModified", "updatedAt", "createdAt"):
            if k in sent:
                ts = ms_of(sent[k])
                break
        if "updatedAtLamport" not in sent:
            p = c.place(ts)
            st = Stamp(ts, p, dev, placed=p > 0)
        else:
            n, who = sent["updatedAtLamport"]
            st = Stamp(ts, n, who)
        writes = {}
        for k, v in sent.items():
            if k in ("id", "messages", "updatedAtLamport", "createdAt", "updatedAt",
                     "lastModified"):
                continue
            writes[("f", k)] = (v, canon(v))
        for m in sent.get("messages", []):
            writes[("m", m["id"])] = (m, canon(m))
        sent_values = {(r[0], r[1], t) for r, (_, t) in writes.items()}
        base = self.bases.get((dev, cid))
        left = 0
        for reg, (v, t) in writes.items():
            if base is not None and (reg[0], reg[1], t) in base:
                continue   # carried along
            self.record(cid, c, reg, st, v, t)
            left += 1
        if base is None or left:
            c.touch(st)
        return sent_values

    def lamport_deletion(self, cid, n, who, now_ms):
        self.chat(cid).delete(Stamp(now_ms, n, who))


# ---- devices ---------------------------------------------------------------

class Device:
    def __init__(self, kind, dev_id, skew):
        self.kind, self.id, self.skew = kind, dev_id, skew
        self.clock = 0
        self.chats = {}          # id -> chat (wire shape for legacy; v2: same shape)
        self.tombs = {}          # polyglot: chat id -> deletion tuple
        self.pending_del = {}    # polyglot: chat id -> tuple, until acknowledged
        self.pending = []        # v2: changes not acknowledged
        self.cursor = None       # v2

    def snapshot(self):
        return json.dumps([self.chats, self.tombs, self.pending_del, self.pending, self.cursor],
                          sort_keys=True)


def tup(t):
    return (t[0], t[1].encode())


class Sim:
    def __init__(self, binary, seed, steps, tmpdir):
        self.rng = random.Random(seed)
        self.seed, self.steps, self.tmpdir = seed, steps, tmpdir
        self.lines = []
        self.server = converge.Server(binary, tmpdir, self.trace)
        self.model = Model()
        self.base_ms = int(time.time() * 1000)
        self.step = 0
        self.devices = []
        for kind in ("v2", "poly", "time"):
            for i in range(NKIND):
                skew = self.rng.randint(-MAX_SKEW_MS, MAX_SKEW_MS)
                if kind == "time" and abs(skew) < MIN_SKEW_MS:
                    skew = MIN_SKEW_MS if skew >= 0 else -MIN_SKEW_MS
                self.devices.append(Device(kind, "%s-%d" % (kind, i), skew))
        self.down_steps = 0
        self.stats = {"requests": 0, "dup": 0, "drop": 0, "kill": 0, "term": 0, "refused": 0,
                      "ops": 0, "revived": 0}
        self.violations = []

    def trace(self, text):
        self.lines.append("%5d %s" % (self.step, text))

    def now(self, dev):
        return self.base_ms + self.step * STEP_MS + dev.skew

    def new_id(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))[:13]

    def text(self):
        return "".join(self.rng.choice("abcdefgh \"\\\u00e9\U0001F600") for _ in
                       range(self.rng.randint(1, 12)))

    # -- local changes --

    def local_op(self, dev):
        self.stats["ops"] += 1
        rng = self.rng
        live = sorted(dev.chats)
        ops = [("create", 3.0 if len(live) < 6 else 0.3)]
        if live:
            ops += [("retitle", 2), ("archive", 1), ("add", 4), ("edit", 1.5)]
            if dev.kind != "time":
                ops += [("delchat", 0.6)]
            if dev.kind == "v2":
                ops += [("delmsg", 1.0)]
        op = rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
        now = self.now(dev)
        if op == "create":
            cid = self.new_id()
            c = {"id": cid, "title": self.text(), "isArchived": False, "messages": []}
            dev.chats[cid] = c
            changed = {"fields": {"title": c["title"], "isArchived": False}, "messages": []}
        else:
            cid = rng.choice(live)
            c = dev.chats[cid]
            changed = {}
            if op in ("edit", "delmsg") and not c["messages"]:
                op = "add"
            if op == "delchat":
                dev.clock += 1
                del dev.chats[cid]
                if dev.kind == "poly":
                    dev.tombs[cid] = [dev.clock, dev.id]
                    dev.pending_del[cid] = [dev.clock, dev.id]
                else:
                    dev.pending.append({"chatId": cid, "clock": dev.clock, "at": iso(now),
                                        "deleteChat": True})
                self.trace("%s delete chat %s" % (dev.id, cid))
                return
            if op == "retitle":
                c["title"] = self.text()
                changed = {"fields": {"title": c["title"]}}
            elif op == "archive":
                c["isArchived"] = not c.get("isArchived", False)
                changed = {"fields": {"isArchived": c["isArchived"]}}
            elif op == "delmsg":
                m = rng.choice(c["messages"])
                c["messages"].remove(m)
                changed = {"deleteMessages": [m["id"]]}
        if op in ("create", "add", "edit"):
            if op == "edit":
                m = rng.choice(c["messages"])
                m = dict(m, content=self.text())
                c["messages"] = [m if x["id"] == m["id"] else x for x in c["messages"]]
            else:
                m = {"id": self.new_id(), "role": rng.choice(["user", "assistant"]),
                     "content": self.text(), "timestamp": iso(now)}
                c["messages"].append(m)
            changed.setdefault("messages", []).append(m)
        dev.clock += 1
        if dev.kind == "v2":
            ch = dict(changed, chatId=cid, clock=dev.clock, at=iso(now))
            dev.pending.append(ch)
        else:
            c["lastModified"] = iso(now)
            if dev.kind == "poly":
                c["updatedAtLamport"] = [dev.clock, dev.id]
        self.trace("%s %s %s" % (dev.id, op, cid))

    # -- requests --

    def post(self, path, body):
        """(status, doc) or None when refused (server down)."""
        self.stats["requests"] += 1
        try:
            status, doc, raw = self.server.request("POST", path, json.dumps(body).encode())
        except OSError:
            self.stats["refused"] += 1
            return None
        if status != 200:
            raise converge.SimFailure("%s answered %d: %r" % (path, status, raw[:300]))
        return doc

    def sync(self, dev, faults=True):
        dup = faults and self.rng.random() < P_DUP
        drop = faults and self.rng.random() < P_DROP
        self.stats["dup"] += dup
        self.stats["drop"] += drop
        answer = None
        for _ in range(2 if dup else 1):
            if dev.kind == "v2":
                a = self.v2_sync(dev)
            else:
                a = self.legacy_sync(dev)
            answer = a if a is not None else answer
        if answer is None or drop:
            self.trace("%s sync: %s" % (dev.id, "refused" if answer is None else "answer dropped"))
            return
        if dev.kind == "v2":
            self.v2_apply(dev, answer)
        else:
            self.legacy_apply(dev, answer)

    def v2_sync(self, dev):
        body = {"deviceId": dev.id, "cursor": dev.cursor, "changes": list(dev.pending)}
        doc = self.post("/v2/sync", body)
        if doc is None:
            return None
        for ch in dev.pending:
            self.model.v2_change(dev.id, ch)
        pages = [doc]
        while doc.get("more"):   # the rest of the pull (no changes: nothing to replay)
            doc = self.post("/v2/sync", {"deviceId": dev.id, "cursor": doc["cursor"]})
            if doc is None:
                return None
            pages.append(doc)
        return pages

    def v2_apply(self, dev, pages):
        dev.pending = []
        for doc in pages:
            dev.clock = max(dev.clock, doc.get("serverClock", 0))
            for c in doc.get("chats", []):
                cid = c["id"]
                if c.get("deleted"):
                    dev.chats.pop(cid, None)
                    continue
                mine = dev.chats.setdefault(cid, {"id": cid, "messages": []})
                for k, v in c.get("fields", {}).items():
                    mine[k] = v
                gone = set(c.get("deletedMessages", []))
                byid = {m["id"]: m for m in mine["messages"] if m["id"] not in gone}
                for m in c.get("messages", []):
                    byid[m["id"]] = m
                mine["messages"] = sorted(byid.values(), key=lambda m: ms_of(m["timestamp"]))
            dev.cursor = doc["cursor"]

    def legacy_body(self, dev):
        chats = [dict(c, messages=list(c["messages"])) for c in dev.chats.values()]
        body = {"deviceId": dev.id, "chats": chats}
        if dev.kind == "poly":
            body["clientClock"] = dev.clock
            body["deletions"] = [{"id": cid, "lamport": t} for cid, t in dev.pending_del.items()]
        return body

    def legacy_sync(self, dev):
        body = self.legacy_body(dev)
        t_req = int(time.time() * 1000)
        doc = self.post("/sync", body)
        if doc is None:
            return None
        # replay it through the model, in the server's order: chats, deletions
        sent = {}
        for c in body["chats"]:
            sent[c["id"]] = self.model.legacy_chat(dev.id, c)
        for d in body.get("deletions", []):
            self.model.lamport_deletion(d["id"], d["lamport"][0], d["lamport"][1], t_req)
        missing = {c["id"]: c for c in doc.get("missing", [])}
        for cid, values in sent.items():   # the base: what it sent, and what it was sent
            if cid in missing:
                values = values | self.model.chat(cid).values()
            self.model.bases[(dev.id, cid)] = values
        for cid in missing:
            if cid not in sent:
                self.model.bases[(dev.id, cid)] = self.model.chat(cid).values()
        return doc

    def legacy_apply(self, dev, doc):
        for c in doc.get("missing", []):
            cid = c["id"]
            t = c.get("updatedAtLamport")
            if t:
                dev.clock = max(dev.clock, t[0])
            if dev.kind == "time":   # keeps the seed document's fields only
                c.pop("updatedAtLamport", None)
                dev.chats[cid] = c
                continue
            mine = dev.chats.get(cid)
            tomb = dev.tombs.get(cid)
            if (mine is None and tomb is None) or \
                    (mine is not None and tup(t) > tup(mine["updatedAtLamport"])) or \
                    (mine is None and tomb is not None and tup(t) > tup(tomb)):
                if mine is None and tomb is not None:
                    self.stats["revived"] += 1
                dev.chats[cid] = c
                dev.tombs.pop(cid, None)
        for d in doc.get("deletions", []):
            cid = d["id"]
            t = d.get("lamport")
            if t:
                dev.clock = max(dev.clock, t[0])
            mine = dev.chats.get(cid)
            if dev.kind == "time":
                dev.chats.pop(cid, None)
            elif mine is not None and tup(t) >= tup(mine["updatedAtLamport"]):
                del dev.chats[cid]
                dev.tombs[cid] = t
        if dev.kind == "poly":
            dev.clock = max(dev.clock, doc.get("serverClock", 0))
            dev.pending_del = {}

    # -- the run --

    def faults(self):
        converge.server_fault_step(self, P_KILL, P_TERM, 2)

    def fetch(self):
        status, doc, raw = self.server.request("GET", "/fetchChats")
        if status != 200:
            raise converge.SimFailure("/fetchChats answered %d" % status)
        return {c["id"]: c for c in doc}

    def run(self):
        self.server.start()
        for self.step in range(1, self.steps + 1):
            self.faults()
            dev = self.rng.choice(self.devices)
            if self.rng.random() < P_SYNC:
                self.sync(dev)
            else:
                for _ in range(self.rng.randint(1, 2)):
                    self.local_op(dev)
        if not self.server.up:
            self.server.start()
        before, same, passes = None, 0, 0
        while same < 2 and passes < QUIET_MAX:
            self.step += 1
            for dev in self.devices:
                self.sync(dev, faults=False)
            passes += 1
            now = [d.snapshot() for d in self.devices] + [json.dumps(self.fetch(), sort_keys=True)]
            same = same + 1 if now == before else 0
            before = now
        if same < 2:
            self.violations.append("Q: no quiescence after %d quiet passes" % passes)
        self.check()
        self.server.terminate()
        self.passes = passes

    def check(self):
        server = self.fetch()
        # O: the server is the model
        model_live = {cid for cid, c in self.model.chats.items() if c.live()}
        for cid in sorted(model_live ^ set(server)):
            self.violations.append("O: chat %s live on the %s only (model deletion %s, newest "
                                   "write %s)" % (cid, "server" if cid in server else "model",
                                                  self.model.chat(cid).deletion,
                                                  self.model.chat(cid).touched))
        for cid in sorted(model_live & set(server)):
            s = server[cid]
            want = self.model.chats[cid].view()
            got = {"title": s.get("title"), "isArchived": s.get("isArchived"),
                   "messages": sorted((m["id"], m.get("content")) for m in s["messages"])}
            if got != want:
                self.violations.append("O: chat %s differs from the model:\n  server %s\n  model  %s"
                                       % (cid, json.dumps(got, ensure_ascii=True),
                                          json.dumps(want, ensure_ascii=True)))
            times = [ms_of(m["timestamp"]) for m in s["messages"]]
            if times != sorted(times):
                self.violations.append("O: chat %s messages not in timestamp order" % cid)
        # W: per acknowledged write: the server holds its value, or the write
        # lost to one the rules call newer (or its chat to a newer deletion)
        for cid, reg, st, text in self.model.writes:
            mc = self.model.chats[cid]
            if cid not in server:
                if mc.deletion is None or mc.deletion.key() <= st.key():
                    self.violations.append("W: chat %s is gone though its write %s %s is newer "
                                           "than every deletion" % (cid, reg, st))
                continue
            s = server[cid]
            if reg[0] == "f":
                have = canon(s[reg[1]]) if reg[1] in s else "(none)"
            else:
                live = {m["id"]: canon(m) for m in s["messages"]}
                have = live.get(reg[1])
            if have == text:
                continue
            win = mc.regs.get(reg)
            if win is None or write_key(win[0], win[1]) <= write_key(st, text):
                self.violations.append("W: %s of chat %s: the acknowledged write %s (%s) is not "
                                       "the server's value (%s) and nothing newer replaced it"
                                       % (reg, cid, st, text, have))
        # D: every device is the server
        for dev in self.devices:
            for cid in sorted(set(dev.chats) ^ set(server)):
                self.violations.append("D: %s %s chat %s" % (
                    dev.id, "lacks" if cid in server else "still has", cid))
            for cid in sorted(set(dev.chats) & set(server)):
                a, b = dev.chats[cid], server[cid]
                va = (a.get("title"), a.get("isArchived"),
                      sorted((m["id"], m.get("content")) for m in a["messages"]))
                vb = (b.get("title"), b.get("isArchived"),
                      sorted((m["id"], m.get("content")) for m in b["messages"]))
                if va != vb:
                    self.violations.append("D: %s's copy of %s differs from the server's:\n"
                                           "  device %s\n  server %s" % (
                                               dev.id, cid, json.dumps(va, ensure_ascii=True),
                                               json.dumps(vb, ensure_ascii=True)))
        if self.violations:
            raise converge.SimFailure("%d violation(s)" % len(self.violations))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--polysyncd", default=os.environ.get("POLYSYNCD") or os.path.normpath(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin",
                     "polysyncd")))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("PS_SIM_SEED") or 1))
    ap.add_argument("--seeds", type=int, default=int(os.environ.get("PS_SIM_SEEDS") or 4),
                    help="number of seeds (episodes) (env PS_SIM_SEEDS)")
    ap.add_argument("--steps", type=int, default=int(os.environ.get("PS_SIM_STEPS") or 300))
    args = ap.parse_args()
    t0 = time.monotonic()
    failed = 0
    totals = {}
    for k in range(args.seeds):
        seed = args.seed + k
        tmp = tempfile.mkdtemp(prefix="ps-mixed-")
        sim = Sim(args.polysyncd, seed, args.steps, tmp)
        try:
            sim.run()
            shutil.rmtree(tmp, ignore_errors=True)
            for key, v in sim.stats.items():
                totals[key] = totals.get(key, 0) + v
            print("  seed %d: %s, %d quiet passes, %d chats" % (
                seed, " ".join("%s %d" % kv for kv in sorted(sim.stats.items())), sim.passes,
                len(sim.model.chats)))
        except BaseException as e:   # never leave a server behind
            sim.server.abort()
            if not isinstance(e, converge.SimFailure):
                raise
            failed += 1
            print("FAILED seed %d: %s (replay: PS_SIM_SEED=%d PS_SIM_SEEDS=1 %s)" % (
                seed, e, seed, " ".join(sys.argv)))
            for v in sim.violations[:20]:
                print("  " + v)
            print("  trace tail:\n    " + "\n    ".join(sim.lines[-40:]))
            print("  episode folder kept: %s" % tmp)
    print("sim.mixed: %d seed(s) from %d, %d failed, %s, %.1f s" % (
        args.seeds, args.seed, failed, " ".join("%s %d" % kv for kv in sorted(totals.items())),
        time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
