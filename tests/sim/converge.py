#!/usr/bin/env python3
"""
Convergence simulator for polysyncd's legacy /sync endpoint (stdlib only).

One polysyncd on a free port with a temporary SQLite database; five devices,
each with its own local copy of the chats, modelled on today's Polyglot
client (full-state /sync, Lamport tuples, `deletions: [{id, lamport}]`) but
written to converge:

- every local change ticks the device's Lamport clock and sets the chat's
  `updatedAtLamport: [clock, deviceId]` and `lastModified` (the device's
  skewed clock, within +-10 minutes of a simulated base time that starts at
  the real time and advances per step);
- a deleted message is sent as `{"id", "deleted": true}` inside the chat's
  messages (the device keeps that tombstone, and drops it only when it
  accepts a server copy in which the message is live);
- a deleted chat is sent in `deletions` until a sync carrying it is answered
  200 (and the answer not dropped), and kept as a local tombstone;
- an answer is applied as the client does: a returned chat replaces the local
  copy when its tuple strictly dominates (counter, then device id), a chat
  the device deleted comes back only if its tuple dominates the tombstone,
  and a returned deletion removes the local chat when its tuple dominates or
  equals the local one. Private messages (`isPrivate: true`) are sent (the
  server must drop them) and stay local: they are merged back into a
  replaced chat.

Faults: duplicated requests, dropped answers (processed by the server, ignored
by the device), SIGKILL + restart on the same database, SIGTERM (exit code
must be 0: under ASan that also means no leak) + restart, requests refused
while the server is down (retried by the next sync).

The run is split into episodes (a fresh server and database each, its own
seed and its own mix of sync rate, chat count and deletion rates). Each
episode ends with quiet passes (every device syncs, no changes, no faults)
until two consecutive passes change nothing, on the devices nor on the
server, and then checks:

 1. every device's live chats equal GET /fetchChats: same ids, titles,
    isArchived, and (message id, content) lists in order (private messages
    left out);
 2. no message carried by a sync the server answered 200 (answer dropped or
    not: it was processed) is missing from a chat no device ever deleted,
    unless some device deleted that message; nor is such a chat missing;
 3. no chat is live whose deletion (answered 200) is newer, by Lamport
    (counter, device id), than every tuple the server may have received for
    that chat (any request answered 200, or lost in a way that it may have
    been processed);
 4. no private message (by flag, or by id) appears in any server answer;
 5. the same as 3 for single messages: no message is live whose tombstone
    (answered 200) is newer than every tuple that carried it live;
 Q. the quiet passes settle within 10 passes and leave no pending deletion;
 P. protocol: every returned chat carries updatedAtLamport, every returned
    deletion a lamport equal to its deletedAtLamport, /sync answers only
    200 (or 503, retried), the server never dies or drops a connection.

Decisions depend only on the seed (random.Random); the wall clock is used
only to wait for the server, and as the base of the simulated time (skews
are kept 100 s away from the server's 300 s clamp, so whether a time is
clamped does not depend on the speed of the run).

Environment (or the flags of the same name, see --help):
  PS_SIM_SEED     seed of the first episode, episode k uses seed + k
                  (default 1; "random" picks one)
  PS_SIM_ROUNDS   random steps in all (default 6000: 12 episodes, about 12 s,
                  about 30 s against an ASan build)
  PS_SIM_EPISODE  random steps per episode (default 500)
  PS_SIM_DEBUG_CHAT  a chat id prefix: trace that chat's JSON as sent and got
A failure prints the seed, the command that replays that one episode, the
violations with their diffs, the trace of the chats involved, the server's
stderr, and keeps the episode's folder (database, server logs, trace.log).
"""
import argparse
import copy
import datetime
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

DEFAULT_SEED = 1
DEFAULT_ROUNDS = 6000       # random steps in all
EPISODE_ROUNDS = 500        # random steps per episode (fresh server and database)
NDEVICES = 5
MAX_SKEW_MS = 10 * 60 * 1000
STEP_MS = 10                # simulated base time advance per step (about real speed)
# The server clamps times later than its clock + 300 s. A skew near that bound
# would be clamped or not depending on how fast the run goes; keep skews this
# far from it so the clamp, too, depends only on the seed.
SERVER_MAX_SKEW_MS = 300 * 1000
CLAMP_MARGIN_MS = 100 * 1000
QUIET_MAX_PASSES = 10
DEBUG_CHAT = os.environ.get("PS_SIM_DEBUG_CHAT")  # trace this chat's JSON (id prefix)

# Each episode draws its own mix (Sim.__init__) around these, for variety:
P_SYNC = (0.2, 0.5)         # a step is a sync (else 1-3 local changes)
P_DUP = 0.08                # a sync's request is sent twice
P_DROP = 0.08               # a sync's answer is dropped
P_KILL = 0.02               # per step: SIGKILL the server
P_TERM = 0.008              # per step: SIGTERM the server
MAX_DOWN_STEPS = 3          # the server stays down 0..this many steps
P_PRIVATE = 0.1
TARGET_CHATS = (6, 12, 20)  # creation gets rarer above this many local chats
W_DELCHAT = (0.3, 0.6, 1.5) # weight of "delete chat" among the local changes
W_DELMSG = (0.6, 1.2, 2.5)  # weight of "delete message"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
HTTP_TIMEOUT = 30.0

BANNER = re.compile(r"^polysyncd (\S+) listening on http://([^:/\s]+):(\d+) \(store (.*)\)$")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

# Characters for titles and contents: quotes, backslashes, newlines, controls,
# non-ASCII, astral plane, combining marks, RTL, JS line separators.
ALPHABET = (list("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789.,;:!?-_/")
            + ['"', "'", "\\", "\n", "\r\n", "\t", "{", "}", "[", "]", "</script>", "%s",
               "\u00e9", "e\u0301", "\u00df", "\u6c49\u5b57", "\u0639\u0631\u0628\u064a",
               "\U0001F600", "\U0001F44D\U0001F3FD", "\u200d", "\u2028", "\u2029", "\ufeff",
               "\u0007", "\u001f", "\U00010348", "\u00a0"])


def server_fault_step(sim, p_kill, p_term, max_down):
    """One step of the server's faults, for a simulator with `server`, `rng`,
    `stats` and `down_steps`: a server that is down comes back after its
    steps down; one that is up is SIGKILLed (p_kill) or SIGTERMed (p_term)
    and stays down 0 to max_down steps."""
    if not sim.server.up:
        if sim.down_steps <= 0:
            sim.server.start()
        else:
            sim.down_steps -= 1
        return
    r = sim.rng.random()
    if r < p_kill:
        sim.stats["kill"] += 1
        sim.server.kill()
    elif r < p_kill + p_term:
        sim.stats["term"] += 1
        sim.server.terminate()
    else:
        return
    sim.down_steps = sim.rng.randint(0, max_down)
    if sim.down_steps == 0:
        sim.server.start()


class SimFailure(Exception):
    pass


class ProtocolError(SimFailure):
    pass


def iso(ms):
    dt = EPOCH + datetime.timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def parse_iso_ms(text):
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    dt = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return (dt - EPOCH) // datetime.timedelta(milliseconds=1)


def msg_key(m):
    """The server's message order: timestamp, then id (byte order)."""
    ts = m.get("timestamp")
    return (parse_iso_ms(ts) if ts is not None else 0, m["id"].encode("utf-8"))


def is_tuple(v):
    return (isinstance(v, list) and len(v) == 2 and isinstance(v[0], int)
            and not isinstance(v[0], bool) and isinstance(v[1], str))


def tup(v):
    """A Lamport tuple as a comparable Python value: (counter, id bytes)."""
    return (v[0], v[1].encode("utf-8"))


def show(t):
    return "[%d,%s]" % (t[0], t[1].decode("utf-8", "replace")) if t is not None else "-"


def short(i):
    return i[:8]


# ---- the server ----------------------------------------------------------

class Server:
    def __init__(self, binary, tmpdir, trace):
        self.binary = binary
        self.tmpdir = tmpdir
        self.db = os.path.join(tmpdir, "sim.db")
        self.trace = trace
        self.proc = None
        self.port = None
        self.runs = 0

    @property
    def up(self):
        return self.proc is not None

    def start(self):
        assert self.proc is None
        ports = [self.port, 0] if self.port else [0]
        last = ""
        for port in ports:
            self.runs += 1
            out_path = os.path.join(self.tmpdir, "stdout.%d.log" % self.runs)
            err_path = os.path.join(self.tmpdir, "stderr.%d.log" % self.runs)
            env = dict(os.environ)
            env.pop("CHAT_SYNC_PORT", None)
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(
                    [self.binary, "--port", str(port), "--db", "sqlite:" + self.db],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
            deadline = time.monotonic() + START_TIMEOUT
            line = None
            while time.monotonic() < deadline:
                with open(out_path, "rb") as f:
                    data = f.read()
                if b"\n" in data:
                    line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.005)
            m = BANNER.match(line) if line else None
            if m:
                self.proc = proc
                self.port = int(m.group(3))
                self.trace("server start #%d on port %d" % (self.runs, self.port))
                return
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            last = "first line %r, exit %r, stderr:\n%s" % (line, proc.returncode,
                                                            self.read(err_path))
        raise SimFailure("polysyncd did not start: " + last)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        self.proc = None
        self.trace("server SIGKILL")

    def terminate(self):
        """SIGTERM; the exit code must be 0 (under ASan: no leak, no error)."""
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise SimFailure("polysyncd did not exit within %.0f s of SIGTERM\n%s"
                             % (STOP_TIMEOUT, self.stderr_tail()))
        self.trace("server SIGTERM, exit %d" % rc)
        if rc != 0:
            raise SimFailure("polysyncd exited %d after SIGTERM (expected 0)\n%s"
                             % (rc, self.stderr_tail()))

    def abort(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    @staticmethod
    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=40):
        text = self.read(os.path.join(self.tmpdir, "stderr.%d.log" % self.runs))
        return "--- stderr of server run #%d (last %d lines) ---\n%s" % (
            self.runs, n, "\n".join(text.splitlines()[-n:]))

    def request(self, method, path, body=None):
        """(status, parsed JSON or None, raw bytes); raises OSError-likes on
        a connection failure."""
        if self.proc is None:
            raise ConnectionRefusedError("server is down")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            headers = {"Connection": "close"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
        finally:
            conn.close()
        try:
            doc = json.loads(raw.decode("utf-8")) if raw else None
        except (ValueError, UnicodeDecodeError):
            doc = None
        return status, doc, raw


# ---- devices -------------------------------------------------------------

class Device:
    def __init__(self, dev_id, skew_ms):
        self.id = dev_id
        self.clock = 0
        self.skew_ms = skew_ms
        self.chats = {}         # id -> chat (wire shape, private messages included)
        self.msg_tombs = {}     # chat id -> set of message ids this device deleted
        self.chat_tombs = {}    # chat id -> tuple of this device's deletion
        self.pending = {}       # chat id -> tuple: deletions not yet acknowledged

    def tick(self):
        self.clock += 1
        return [self.clock, self.id]

    def snapshot(self):
        return json.dumps([self.chats, {k: sorted(v) for k, v in self.msg_tombs.items()},
                           {k: show(v) for k, v in self.chat_tombs.items()},
                           {k: show(v) for k, v in self.pending.items()}],
                          sort_keys=True)


def public_view(c):
    """What invariant 1 compares: title, isArchived, non-private messages."""
    return {"title": c.get("title"), "isArchived": c.get("isArchived"),
            "messages": [(m.get("id"), m.get("content")) for m in c.get("messages", [])
                         if not m.get("isPrivate")]}


class Sim:
    def __init__(self, binary, seed, rounds, tmpdir, verbose=False):
        self.rng = random.Random(seed)
        self.seed = seed
        self.rounds = rounds
        self.tmpdir = tmpdir
        self.verbose = verbose
        self.trace_lines = []
        self.server = Server(binary, tmpdir, self.trace)
        self.base_ms = int(time.time() * 1000)   # only data, never a decision
        self.step_no = 0
        self.devices = [Device("dev-%d" % i, self.draw_skew()) for i in range(NDEVICES)]
        self.mix = {"p_sync": round(self.rng.uniform(*P_SYNC), 2),
                    "target_chats": self.rng.choice(TARGET_CHATS),
                    "w_delchat": self.rng.choice(W_DELCHAT),
                    "w_delmsg": self.rng.choice(W_DELMSG)}
        self.down_steps = 0
        self.stats = {"syncs": 0, "requests": 0, "dup": 0, "drop": 0, "kill": 0,
                      "term": 0, "refused": 0, "busy": 0, "ops": 0}
        # Ground truth for the invariants.
        self.private_ids = set()
        self.deleted_msgs = set()           # message ids some device deleted
        self.deleted_chats = set()          # chat ids some device deleted
        self.acked_msgs = {}                # (chat, msg) -> step of the first 200
        self.acked_chats = set()
        self.sent_max = {}                  # chat id -> max tuple the server may have seen
        self.acked_deletions = {}           # chat id -> max deletion tuple answered 200
        self.live_max = {}                  # (chat, msg) -> max tuple of a request carrying it
        self.acked_msg_tombs = {}           # (chat, msg) -> max tuple of its tombstone, 200
        self.violations = []                # invariant 4 and protocol findings
        self.changed_chats = set()          # chats devices took or removed (quiet passes)
        self.quiet_passes = -1
        self.final_count = -1
        self.bad_chats = set()
        self.moving = set()                 # chats that never settled in the quiet passes

    # -- utilities --

    def trace(self, text):
        line = "%5d %s" % (self.step_no, text)
        self.trace_lines.append(line)
        if self.verbose:
            print(line)

    def draw_skew(self):
        while True:
            skew = self.rng.randint(-MAX_SKEW_MS, MAX_SKEW_MS)
            if abs(skew - SERVER_MAX_SKEW_MS) > CLAMP_MARGIN_MS:
                return skew

    def now_ms(self, dev):
        return self.base_ms + self.step_no * STEP_MS + dev.skew_ms

    def new_id(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def text(self, lo, hi):
        n = self.rng.randint(lo, hi)
        return "".join(self.rng.choice(ALPHABET) for _ in range(n))

    def touch(self, dev, c):
        c["updatedAtLamport"] = dev.tick()
        c["lastModified"] = iso(self.now_ms(dev))

    def new_message(self, dev, private=False):
        m = {"id": self.new_id(), "role": self.rng.choice(["user", "assistant"]),
             "content": self.text(0, 60), "timestamp": iso(self.now_ms(dev))}
        if private:
            m["isPrivate"] = True
            self.private_ids.add(m["id"])
        return m

    # -- local changes --

    def local_op(self, dev):
        self.stats["ops"] += 1
        rng = self.rng
        live = list(dev.chats)
        w_create = 3.0 if len(live) < self.mix["target_chats"] else 0.3
        ops = [("create", w_create)]
        if live:
            ops += [("retitle", 2), ("archive", 1), ("add", 4), ("edit", 2),
                    ("delmsg", self.mix["w_delmsg"]), ("delchat", self.mix["w_delchat"])]
        op = rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
        if op == "create":
            cid = self.new_id()
            c = {"id": cid, "title": self.text(1, 20), "isArchived": False, "messages": []}
            for _ in range(rng.randint(0, 2)):
                c["messages"].append(self.new_message(dev, rng.random() < P_PRIVATE))
            c["messages"].sort(key=msg_key)
            self.touch(dev, c)
            dev.chats[cid] = c
            self.trace("%s create %s %s msgs=%s" % (dev.id, short(cid), c["updatedAtLamport"],
                                                   [short(m["id"]) for m in c["messages"]]))
            return
        cid = rng.choice(live)
        c = dev.chats[cid]
        if op == "delchat":
            t = dev.tick()
            del dev.chats[cid]
            dev.msg_tombs.pop(cid, None)
            dev.chat_tombs[cid] = tup(t)
            dev.pending[cid] = tup(t)
            self.deleted_chats.add(cid)
            self.trace("%s delete chat %s %s" % (dev.id, short(cid), t))
            return
        msgs = c["messages"]
        if op in ("edit", "delmsg") and not msgs:
            op = "add"
        if op == "retitle":
            c["title"] = self.text(1, 20)
            self.touch(dev, c)
            self.trace("%s retitle %s %s" % (dev.id, short(cid), c["updatedAtLamport"]))
        elif op == "archive":
            c["isArchived"] = not c.get("isArchived", False)
            self.touch(dev, c)
            self.trace("%s archive=%s %s %s" % (dev.id, c["isArchived"], short(cid),
                                                c["updatedAtLamport"]))
        elif op == "add":
            m = self.new_message(dev, rng.random() < P_PRIVATE)
            msgs.append(m)
            msgs.sort(key=msg_key)
            self.touch(dev, c)
            self.trace("%s add msg %s%s to %s %s" % (dev.id, short(m["id"]),
                                                     " (private)" if m.get("isPrivate") else "",
                                                     short(cid), c["updatedAtLamport"]))
        elif op == "edit":
            m = rng.choice(msgs)
            m["content"] = self.text(0, 60)
            self.touch(dev, c)
            self.trace("%s edit msg %s in %s %s" % (dev.id, short(m["id"]), short(cid),
                                                    c["updatedAtLamport"]))
        elif op == "delmsg":
            m = rng.choice(msgs)
            msgs.remove(m)
            if not m.get("isPrivate"):   # private ones never left the device
                dev.msg_tombs.setdefault(cid, set()).add(m["id"])
                self.deleted_msgs.add(m["id"])
            self.touch(dev, c)
            self.trace("%s delete msg %s in %s %s" % (dev.id, short(m["id"]), short(cid),
                                                      c["updatedAtLamport"]))

    # -- sync --

    def sync_body(self, dev):
        chats = []
        for cid, c in dev.chats.items():
            w = dict(c)
            w["messages"] = list(c["messages"]) + [
                {"id": mid, "deleted": True} for mid in sorted(dev.msg_tombs.get(cid, ()))]
            chats.append(w)
        deletions = [{"id": cid, "lamport": [t[0], t[1].decode("utf-8")]}
                     for cid, t in dev.pending.items()]
        body = {"deviceId": dev.id, "clientClock": dev.clock, "chats": chats,
                "deletions": deletions}
        return body

    def check_answer_private(self, where, doc):
        """Invariant 4 on any answer: no private message, by flag or by id."""
        def walk(v, path):
            if isinstance(v, dict):
                if v.get("isPrivate") is True:
                    self.violate(4, "%s: a message with isPrivate: true at %s: %s"
                                 % (where, path, json.dumps(v)[:300]))
                if isinstance(v.get("id"), str) and v["id"] in self.private_ids:
                    self.violate(4, "%s: private message %s returned at %s"
                                 % (where, v["id"], path))
                for k, x in v.items():
                    walk(x, path + "." + k)
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    walk(x, "%s[%d]" % (path, i))
        walk(doc, "")

    def violate(self, inv, text):
        line = "invariant %s: %s" % (inv, text)
        if line not in self.violations:
            self.violations.append(line)
            self.trace("VIOLATION " + line)

    def sync(self, dev, faults=True):
        self.stats["syncs"] += 1
        body = self.sync_body(dev)
        raw = json.dumps(body, ensure_ascii=self.rng.random() < 0.3).encode("utf-8")
        dup = faults and self.rng.random() < P_DUP
        drop = faults and self.rng.random() < P_DROP
        sends = 2 if dup else 1
        self.trace("%s sync clock=%d chats=%s deletions=%s%s%s" % (
            dev.id, dev.clock,
            ["%s%s" % (short(c["id"]), c["updatedAtLamport"]) for c in body["chats"]],
            ["%s%s" % (short(d["id"]), d["lamport"]) for d in body["deletions"]],
            " DUP" if dup else "", " DROP" if drop else ""))
        if DEBUG_CHAT:
            for c in body["chats"]:
                if c["id"].startswith(DEBUG_CHAT):
                    self.trace("%s   sends %s" % (dev.id, json.dumps(c, ensure_ascii=True)))
        answers = []
        for _ in range(sends):
            self.stats["requests"] += 1
            try:
                status, doc, rawans = self.server.request("POST", "/sync", raw)
            except (OSError, http.client.HTTPException) as e:
                self.stats["refused"] += 1
                self.trace("%s   connection error: %s" % (dev.id, type(e).__name__))
                if self.server.up:   # not a refusal while it is down: a server fault
                    self.note_sent(body)   # it may have been processed
                    rc = self.server.proc.poll()
                    if rc is not None:
                        raise SimFailure("polysyncd died (exit %d) during a /sync from %s\n%s"
                                         % (rc, dev.id, self.server.stderr_tail()))
                    self.violate("P", "POST /sync from %s failed on a running server: %r"
                                 % (dev.id, e))
                break
            if status == 503:
                self.stats["busy"] += 1
                self.trace("%s   503 %s" % (dev.id, rawans[:200]))
                break
            if status != 200:
                raise ProtocolError("POST /sync from %s answered %d: %s\nrequest (first 2000 "
                                    "bytes): %s" % (dev.id, status, rawans[:500],
                                                    raw[:2000].decode("utf-8", "replace")))
            if not isinstance(doc, dict) or not isinstance(doc.get("missing"), list) \
                    or not isinstance(doc.get("deletions"), list):
                raise ProtocolError("POST /sync answer is not {missing, deletions}: %r"
                                    % rawans[:500])
            self.check_answer_private("/sync answer to %s" % dev.id, doc)
            if DEBUG_CHAT:
                for c in doc["missing"] + doc["deletions"]:
                    if str(c.get("id")).startswith(DEBUG_CHAT):
                        self.trace("%s   gets %s" % (dev.id, json.dumps(c, ensure_ascii=True)))
            self.note_sent(body)
            self.record_processed(body)
            answers.append(doc)
        if dup:
            self.stats["dup"] += 1
        if not answers:
            return
        if drop:
            self.stats["drop"] += 1
            self.trace("%s   answer dropped" % dev.id)
            return
        # Acknowledged: the pending deletions it carried are done.
        for d in body["deletions"]:
            if dev.pending.get(d["id"]) == tup(d["lamport"]):
                del dev.pending[d["id"]]
        for doc in answers:
            self.apply_answer(dev, doc)

    def note_sent(self, body):
        """The server processed (or may have processed) this request: every
        tuple it carried may be a write (invariants 3 and 5 compare against
        the newest such tuple, so counting a maybe is the safe side)."""
        for c in body["chats"]:
            t = tup(c["updatedAtLamport"])
            if c["id"] not in self.sent_max or t > self.sent_max[c["id"]]:
                self.sent_max[c["id"]] = t
            for m in c["messages"]:
                k = (c["id"], m["id"])
                if not m.get("deleted") and (k not in self.live_max or t > self.live_max[k]):
                    self.live_max[k] = t

    def record_processed(self, body):
        """The server answered 200: what the request carried is durable."""
        for c in body["chats"]:
            self.acked_chats.add(c["id"])
            t = tup(c["updatedAtLamport"])
            for m in c["messages"]:
                k = (c["id"], m["id"])
                if m.get("deleted"):
                    if k not in self.acked_msg_tombs or t > self.acked_msg_tombs[k]:
                        self.acked_msg_tombs[k] = t
                elif not m.get("isPrivate"):
                    self.acked_msgs.setdefault(k, self.step_no)
        for d in body["deletions"]:
            t = tup(d["lamport"])
            if d["id"] not in self.acked_deletions or t > self.acked_deletions[d["id"]]:
                self.acked_deletions[d["id"]] = t

    def apply_answer(self, dev, doc):
        clocks = [dev.clock]
        if isinstance(doc.get("serverClock"), int):
            clocks.append(doc["serverClock"])
        got, dels = [], []
        for c in doc["missing"]:
            lam = c.get("updatedAtLamport") if isinstance(c, dict) else None
            if not is_tuple(lam):
                self.violate("P", "/sync answer to %s returned chat %s without a valid "
                             "updatedAtLamport: %s" % (dev.id, c.get("id") if isinstance(c, dict)
                                                       else c, json.dumps(c)[:300]))
                continue   # the client drops such a chat
            clocks.append(lam[0])
            got.append(c)
        for d in doc["deletions"]:
            lam = d.get("lamport") if isinstance(d, dict) else None
            if not is_tuple(lam):
                self.violate("P", "/sync answer to %s returned a deletion without a valid "
                             "lamport: %s" % (dev.id, json.dumps(d)[:300]))
                continue
            if d.get("deletedAtLamport") != lam:
                self.violate("P", "/sync deletion %s: deletedAtLamport %r != lamport %r"
                             % (d.get("id"), d.get("deletedAtLamport"), lam))
            clocks.append(lam[0])
            dels.append(d)
        dev.clock = max(clocks)
        took, kept = [], []
        for c in got:
            cid, t = c["id"], tup(c["updatedAtLamport"])
            local = dev.chats.get(cid)
            if local is not None:
                if t > tup(local["updatedAtLamport"]):
                    self.replace(dev, c, local)
                    self.changed_chats.add(cid)
                    took.append("%s%s" % (short(cid), c["updatedAtLamport"]))
                else:
                    kept.append("%s%s<=%s" % (short(cid), c["updatedAtLamport"],
                                              local["updatedAtLamport"]))
            elif cid in dev.chat_tombs:
                if t > dev.chat_tombs[cid]:
                    del dev.chat_tombs[cid]
                    dev.pending.pop(cid, None)
                    self.replace(dev, c, None)
                    self.changed_chats.add(cid)
                    took.append("%s%s(over tomb)" % (short(cid), c["updatedAtLamport"]))
                else:
                    kept.append("%s%s<=tomb%s" % (short(cid), c["updatedAtLamport"],
                                                  show(dev.chat_tombs[cid])))
            else:
                self.replace(dev, c, None)
                self.changed_chats.add(cid)
                took.append("%s%s(new)" % (short(cid), c["updatedAtLamport"]))
        removed = []
        for d in dels:
            cid, t = d["id"], tup(d["lamport"])
            local = dev.chats.get(cid)
            if local is not None and t >= tup(local["updatedAtLamport"]):
                del dev.chats[cid]
                dev.msg_tombs.pop(cid, None)
                self.changed_chats.add(cid)
                removed.append("%s%s" % (short(cid), d["lamport"]))
        self.trace("%s   answer serverClock=%s took=%s ignored=%s removed=%s" % (
            dev.id, doc.get("serverClock"), took, kept, removed))

    def replace(self, dev, server_chat, local):
        c = copy.deepcopy(server_chat)
        msgs = [m for m in c.get("messages", []) if isinstance(m, dict)]
        live_ids = {m.get("id") for m in msgs}
        if local is not None:
            msgs += [m for m in local["messages"] if m.get("isPrivate")]
        msgs.sort(key=msg_key)
        c["messages"] = msgs
        dev.chats[c["id"]] = c
        tombs = dev.msg_tombs.get(c["id"])
        if tombs:
            tombs -= live_ids   # the server says a newer write brought it back
            if not tombs:
                del dev.msg_tombs[c["id"]]

    # -- the run --

    def server_faults(self):
        server_fault_step(self, P_KILL, P_TERM, MAX_DOWN_STEPS)

    def run(self):
        self.trace("mix %s, skews %s" % (json.dumps(self.mix, sort_keys=True),
                                         [d.skew_ms // 1000 for d in self.devices]))
        self.server.start()
        for self.step_no in range(1, self.rounds + 1):
            self.server_faults()
            dev = self.rng.choice(self.devices)
            if self.rng.random() < self.mix["p_sync"]:
                self.sync(dev)
            else:
                for _ in range(self.rng.randint(1, 3)):
                    self.local_op(dev)
        if not self.server.up:
            self.server.start()
        self.quiet()
        self.check()
        self.server.terminate()

    def quiet(self):
        """Every device syncs per pass until two consecutive passes change
        nothing: no device's state and not the server's (GET /fetchChats,
        tuples included). One still pass is not proof: a device holding an
        adopted server copy re-sends it stamped with that copy's tuple, so
        the server can flip a field during a pass that leaves every device
        as it was."""
        unchanged, passes = 0, 0
        before = [d.snapshot() for d in self.devices] + [self.server_snapshot()]
        history = [before]
        while unchanged < 2 and passes < QUIET_MAX_PASSES:
            self.step_no += 1
            self.trace("quiet pass %d" % (passes + 1))
            self.changed_chats = set()
            for dev in self.devices:
                self.sync(dev, faults=False)
            passes += 1
            after = [d.snapshot() for d in self.devices] + [self.server_snapshot()]
            history.append(after)
            unchanged = unchanged + 1 if after == before else 0
            before = after
        self.quiet_passes = passes
        if unchanged < 2:
            names = [d.id for d in self.devices] + ["server"]
            diffs = [n for n, a, b in zip(names, history[-2], history[-1]) if a != b]
            self.bad_chats |= self.changed_chats
            self.moving = set(self.changed_chats)
            self.violate("Q", "no quiescence: after %d quiet passes (every device syncs, no "
                         "changes, no faults) %s still change every pass; chats still moving: %s"
                         % (passes, diffs, sorted(self.changed_chats)))
        for dev in self.devices:
            if dev.pending:
                self.violate("Q", "%s still has pending deletions after the quiet passes: %s"
                             % (dev.id, list(dev.pending)))

    def fetch(self):
        status, doc, raw = self.server.request("GET", "/fetchChats")
        if status != 200 or not isinstance(doc, list):
            raise ProtocolError("GET /fetchChats answered %d: %r" % (status, raw[:500]))
        self.check_answer_private("/fetchChats", doc)
        return doc

    def server_snapshot(self):
        return json.dumps(sorted(self.fetch(), key=lambda c: str(c.get("id"))), sort_keys=True)

    def check(self):
        doc = self.fetch()
        server = {c["id"]: c for c in doc}
        if len(server) != len(doc):
            self.violate(1, "GET /fetchChats lists a chat id twice")
        self.final_count = len(server)
        bad_chats = self.bad_chats

        # 1. every device equals the server
        for dev in self.devices:
            mine = set(dev.chats)
            theirs = set(server)
            for cid in sorted(theirs - mine):
                bad_chats.add(cid)
                self.violate(1, "%s lacks chat %s that the server has (tuple %s; device "
                             "tombstone %s)" % (dev.id, cid, server[cid].get("updatedAtLamport"),
                                                show(dev.chat_tombs.get(cid))))
            for cid in sorted(mine - theirs):
                bad_chats.add(cid)
                self.violate(1, "%s has chat %s (tuple %s) that the server does not list"
                             % (dev.id, cid, dev.chats[cid]["updatedAtLamport"]))
            for cid in sorted(mine & theirs):
                a, b = public_view(dev.chats[cid]), public_view(server[cid])
                if a != b:
                    bad_chats.add(cid)
                    self.violate(1, "%s's copy of chat %s%s (tuple %s) differs from the server's "
                                 "(tuple %s):\n%s" % (dev.id, cid,
                                                      " (still moving, see Q)"
                                                      if cid in self.moving else "",
                                                      dev.chats[cid]["updatedAtLamport"],
                                                      server[cid].get("updatedAtLamport"),
                                                      diff_view(a, b)))

        # 2. no processed message lost from a never-deleted chat
        for cid in sorted(self.acked_chats - self.deleted_chats):
            if cid not in server:
                bad_chats.add(cid)
                self.violate(2, "chat %s was answered 200, never deleted by any device, and "
                             "is not live on the server" % cid)
        for (cid, mid), step in sorted(self.acked_msgs.items()):
            if cid in self.deleted_chats or mid in self.deleted_msgs or cid not in server:
                continue
            if mid not in {m.get("id") for m in server[cid].get("messages", [])}:
                bad_chats.add(cid)
                self.violate(2, "message %s of chat %s, answered 200 at step %d and never "
                             "deleted, is missing on the server" % (mid, cid, step))

        # 3. no chat comes back over a newer acknowledged deletion
        for cid, d in sorted(self.acked_deletions.items()):
            newest = self.sent_max.get(cid)
            if cid in server and (newest is None or d > newest):
                bad_chats.add(cid)
                self.violate(3, "chat %s is live, but its deletion %s (answered 200) is newer "
                             "than every tuple ever sent for it (newest %s)"
                             % (cid, show(d), show(newest)))

        # 5. no message comes back over a newer acknowledged message tombstone
        for (cid, mid), d in sorted(self.acked_msg_tombs.items()):
            newest = self.live_max.get((cid, mid))
            if cid in server and (newest is None or d > newest) and \
                    mid in {m.get("id") for m in server[cid].get("messages", [])}:
                bad_chats.add(cid)
                self.violate(5, "message %s of chat %s is live, but its tombstone %s (answered "
                             "200) is newer than every tuple that ever carried it (newest %s)"
                             % (mid, cid, show(d), show(newest)))
        if self.violations:
            raise SimFailure("%d violation(s)" % len(self.violations))

    def summary(self):
        s = self.stats
        faults = s["dup"] + s["drop"] + s["kill"] + s["term"]
        return ("  episode: seed %d, %d rounds, %d syncs (%d requests), %d local changes, "
                "%d faults (dup %d, dropped %d, SIGKILL %d, SIGTERM %d; %d refused, %d busy), "
                "%d quiet passes, %d chats at the end"
                % (self.seed, self.rounds, s["syncs"], s["requests"], s["ops"], faults,
                   s["dup"], s["drop"], s["kill"], s["term"], s["refused"], s["busy"],
                   self.quiet_passes, self.final_count))


def diff_view(a, b):
    out = []
    for k in ("title", "isArchived"):
        if a[k] != b[k]:
            out.append("    %s: device %r, server %r" % (k, a[k], b[k]))
    if a["messages"] != b["messages"]:
        ai = [m[0] for m in a["messages"]]
        bi = [m[0] for m in b["messages"]]
        if ai != bi:
            out.append("    message ids: device %s\n                 server %s" % (ai, bi))
        for (i1, c1), (i2, c2) in zip(a["messages"], b["messages"]):
            if i1 == i2 and c1 != c2:
                out.append("    message %s content: device %r, server %r" % (i1, c1, c2))
    return "\n".join(out)


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v else default


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--polysyncd", default=os.environ.get("POLYSYNCD") or os.path.normpath(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin",
                     "polysyncd")))
    ap.add_argument("--seed", default=os.environ.get("PS_SIM_SEED") or str(DEFAULT_SEED),
                    help='seed of the first episode, episode k uses seed+k; or "random" '
                         '(env PS_SIM_SEED, default %d)' % DEFAULT_SEED)
    ap.add_argument("--rounds", type=int, default=env_int("PS_SIM_ROUNDS", DEFAULT_ROUNDS),
                    help="random steps in all, split into episodes (env PS_SIM_ROUNDS, "
                         "default %d)" % DEFAULT_ROUNDS)
    ap.add_argument("--episode", type=int, default=env_int("PS_SIM_EPISODE", EPISODE_ROUNDS),
                    help="random steps per episode: each episode is a fresh server and "
                         "database, ends with the quiet passes and the invariants "
                         "(env PS_SIM_EPISODE, default %d)" % EPISODE_ROUNDS)
    ap.add_argument("--verbose", action="store_true", help="print the trace as it goes")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args()
    if not os.access(args.polysyncd, os.X_OK):
        print("sim.converge: no polysyncd at %s (build it, or pass --polysyncd)"
              % args.polysyncd)
        return 2
    seed = (random.SystemRandom().randrange(1, 2 ** 31) if args.seed == "random"
            else int(args.seed))
    episode = max(1, args.episode)
    plan, left = [], max(0, args.rounds)
    while left > 0 or not plan:
        plan.append(min(left, episode))
        left -= plan[-1]
    started = time.monotonic()
    failed = []
    totals = {}
    final_chats = 0
    for k, rounds in enumerate(plan):
        ep_seed = seed + k
        tmpdir = tempfile.mkdtemp(prefix="polysync-sim-%d-" % ep_seed)
        sim = Sim(args.polysyncd, ep_seed, rounds, tmpdir, verbose=args.verbose)
        t0 = time.monotonic()
        ok = False
        try:
            sim.run()
            ok = True
        except SimFailure as e:
            failed.append(sim)
            report_failure(sim, e, args, full=len(failed) == 1)
        except Exception as e:   # a bug in the simulator, or an answer it cannot read
            import traceback
            traceback.print_exc()
            failed.append(sim)
            report_failure(sim, e, args, full=len(failed) == 1)
        finally:
            sim.server.abort()
            if ok and not args.keep:
                shutil.rmtree(tmpdir, ignore_errors=True)
        print(sim.summary() + " in %.1f s%s" % (time.monotonic() - t0, "" if ok else " FAILED"))
        for key, v in sim.stats.items():
            totals[key] = totals.get(key, 0) + v
        final_chats += max(0, sim.final_count)
    faults = sum(totals[k] for k in ("dup", "drop", "kill", "term"))
    print("sim.converge: %d episode(s) from seed %d, %d rounds, %d syncs, %d faults injected "
          "(dup %d, dropped %d, SIGKILL %d, SIGTERM %d), %d chats at the end (all episodes), "
          "%d failed, %.1f s"
          % (len(plan), seed, sum(plan), totals["syncs"], faults, totals["dup"], totals["drop"],
             totals["kill"], totals["term"], final_chats, len(failed),
             time.monotonic() - started))
    if failed:
        print("FAILED seeds: %s (replay one: PS_SIM_SEED=<seed> PS_SIM_ROUNDS=<rounds>)"
              % ", ".join("%d (%d rounds)" % (f.seed, f.rounds) for f in failed))
        return 1
    return 0


def report_failure(sim, e, args, full=True):
    path = os.path.join(sim.tmpdir, "trace.log")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(sim.trace_lines) + "\n")
    print("FAIL: seed %d, rounds %d: %s" % (sim.seed, sim.rounds, e))
    for v in sim.violations:
        print("  " + v)
    if full and sim.bad_chats:
        keys = {short(c) for c in sim.bad_chats}
        lines = [l for l in sim.trace_lines
                 if any(k in l for k in keys) or " server " in l or "quiet pass" in l]
        print("--- trace of the chats involved (last %d of %d lines; full trace in %s) ---"
              % (min(len(lines), 150), len(lines), path))
        print("\n".join(l[:400] for l in lines[-150:]))
    if full:
        print(sim.server.stderr_tail())
    print("replay: PS_SIM_SEED=%d PS_SIM_ROUNDS=%d python3 %s --polysyncd %s --verbose"
          % (sim.seed, sim.rounds, os.path.abspath(__file__), args.polysyncd))
    print("kept: %s (database, server logs, trace.log)" % sim.tmpdir)


if __name__ == "__main__":
    sys.exit(main())
