"""The scenarios of issue #15, polysyncd and the seed server side by side (bench/run.py).

Every scenario here runs on both servers in one run, in turns (reference, then
polysyncd, for each repeat) so that a passing disturbance of a shared machine falls
on both alike. Each target is one row with its figure and met yes / no
(docs/performance.md, "Targets of issue #15"):

  first upload        the reference set into an empty server (a new server each repeat);
                      after each, a clean shutdown and the server's files on disk
  other bytes         the same history re-serialized (another key order, other
                      whitespace, same data) from the device that uploaded it: server CPU
                      per sync (two re-serializations in turn, so no sync repeats the
                      bytes of the one before)
  fresh pull          a new device: the seed shape ({"chats":[20 chats]}, receives the
                      rest) and the Polyglot shape (the app's first sync: no chats, no
                      deletions, a new deviceId each time: receives everything)
  16 pulls, 16 fetch  peak RSS with 16 concurrent fresh pulls / 16 GET /fetchChats
  two devices         devices X and Y alternate full syncs of the same content, each with
                      its own bytes, against X alone re-sending its own bytes
  readers             polysyncd only (the seed server has no v2): a v2 device's no-op sync
                      latency while two other users upload full histories (new chats each
                      time), and without them
  big body            a 256 MiB-class legacy body (full run; the quick run: 72 MiB, over
                      the old 64 MiB default) to a server with its DEFAULT limits
                      (polysyncd without --max-body): accepted? and the peak RSS

Everything is on loopback and bounded: counts for single syncs, --duration with a
drain for time windows, timeouts on every process.
"""
import json
import os
import statistics
import subprocess
import time
import uuid

R = None  # bench/run.py, set by run()


# ---- datasets ---------------------------------------------------------------

def _reorder(v, reverse):
    """The same JSON value with every object's keys in another order."""
    if isinstance(v, dict):
        keys = sorted(v, reverse=reverse)
        return {k: _reorder(v[k], reverse) for k in keys}
    if isinstance(v, list):
        return [_reorder(x, reverse) for x in v]
    return v


def reserialize(src, dst, variant, device=None):
    """src re-serialized: variant 1 = keys sorted, ", " / ": " separators; variant 2 =
    keys in reverse order, indented. Same data (strings and numbers unchanged, non-ASCII
    kept as UTF-8), other bytes. device: another envelope deviceId."""
    with open(src, encoding="utf-8") as f:
        doc = json.load(f)
    if device:
        doc["deviceId"] = device
    with open(dst, "w", encoding="utf-8") as f:
        if variant == 1:
            json.dump(_reorder(doc, False), f, ensure_ascii=False, separators=(", ", ": "))
        else:
            json.dump(_reorder(doc, True), f, ensure_ascii=False, indent=1)
    return os.path.getsize(dst)


def polyglot_first_sync(path):
    """The Polyglot app's first sync of a new device (fixture 01-new-device-first-sync):
    its own random UUID, clock 0, no chats, no deletions."""
    dev = str(uuid.uuid4())
    with open(path, "w") as f:
        json.dump({"deviceId": dev, "clientClock": {"deviceId": dev, "localCounter": 0,
                                                    "observedCounter": 0},
                   "chats": [], "deletions": []}, f)
    return path


# ---- servers ----------------------------------------------------------------

def start_polysyncd(build, work, name, args=(), default_limits=False):
    """A polysyncd on a new store in its own directory (so its disk use is that
    directory). default_limits: no --max-body, as a user would start it."""
    d = os.path.join(work, name)
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    argv = [os.path.join(build, "bin/polysyncd"), "--port", "0", "--db",
            f"sqlite:{os.path.join(d, 'store.db')}", "--threads", "2",
            "--connection-timeout", "600"]
    if not default_limits:
        argv += ["--max-body", "1G"]
    srv = R.Server(name, argv + list(args), os.path.join(work, f"{name}.log")).start()
    srv.dir = d
    return srv


def start_reference(work, name, mode="memory"):
    d = os.path.join(work, name)
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    srv = R.Server(name, ["node", os.path.join(R.ROOT, "bench/reference/server.js"), "--port",
                          "0", "--mode", mode, "--file", os.path.join(d, "chatStore.json")],
                   os.path.join(work, f"{name}.log")).start()
    srv.dir = d
    return srv


def dir_bytes(d):
    """Bytes of the files under d (their sizes, as `du --apparent-size -b`)."""
    total = 0
    for root, _, files in os.walk(d):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def status_counts(out):
    return (out.get("sync") or {}).get("status", {})


# ---- scenarios --------------------------------------------------------------

SERVERS = ("reference-memory", "polysyncd")


def start(kind, build, work, name, **kw):
    return start_polysyncd(build, work, name, **kw) if kind == "polysyncd" else \
        start_reference(work, name)


def first_uploads(drv, build, work, P, ref_body, T):
    """Repeated first uploads into a new server each time, in turns; each polysyncd is
    then stopped cleanly and its directory measured (reference: its file mode, once)."""
    for i in range(P["t_upload_repeats"]):
        for kind in SERVERS:
            srv = start(kind, build, work, f"t15-{kind}-upload-{i}")
            try:
                settle({kind: srv})  # not behind the last run's writeback
                R.log(f"#15 {kind}: first upload into an empty server, run {i + 1}")
                out = R.check(drv.load(srv, "/sync", body=ref_body, count=1, timeout=900),
                              "first upload")
                T[kind].setdefault("upload", []).append(out)
            finally:
                srv.stop()
            if kind == "polysyncd":
                T[kind].setdefault("disk", []).append(dir_bytes(srv.dir))
            subprocess.run(["rm", "-rf", srv.dir])
    srv = start_reference(work, "t15-reference-file", mode="file")
    try:
        R.check(drv.load(srv, "/sync", body=ref_body, count=1, timeout=900), "file upload")
    finally:
        srv.stop()
    T["reference-memory"]["disk"] = [dir_bytes(srv.dir)]  # the seed's chatStore.json
    subprocess.run(["rm", "-rf", srv.dir])


def cpu_ticks(pid):
    """utime + stime of a process, all its threads (clock ticks); 0 when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def settle(servers, quiet=0.1, limit=5.0):
    """Flushes the disk's dirty pages, then waits until no server uses CPU for `quiet`
    seconds (at most `limit`): a turn
    then does not share the machine with the other server still finishing its own
    (Node's garbage collection of a 63 MB answer took 0.36 s of CPU during the next
    polysyncd pull in one run, doubling that pull's time)."""
    # The disk too: a Polyglot-shape pull commits its new device's bases
    # (one fsync), which waited behind the writeback of the earlier
    # scenarios' hundreds of MB (0.17 s pulls of 0.09 s CPU; 0.09 s once
    # flushed). The seed server never syncs, so that wait was polysyncd's alone.
    os.sync()
    deadline = time.monotonic() + limit
    before = [cpu_ticks(s.pid) for s in servers.values()]
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = [cpu_ticks(s.pid) for s in servers.values()]
        if now == before:
            return
        before = now


def paired(what, n, servers, fn):
    """fn(kind, srv, i) for i < n, the servers in turns, each turn once both are
    idle (settle); results per kind."""
    out = {k: [] for k in servers}
    for i in range(n):
        for kind, srv in servers.items():
            settle(servers)
            out[kind].append(fn(kind, srv, i))
    R.log(f"#15 {what}: {n} x {len(servers)} done")
    return out


def steady(drv, build, work, P, bodies, T):
    """The scenarios on a server that already holds the reference set."""
    servers = {k: start(k, build, work, f"t15-{k}") for k in SERVERS}
    try:
        for kind, srv in servers.items():
            R.log(f"#15 {kind}: loading the reference set")
            R.check(drv.load(srv, "/sync", body=bodies["ref"], count=1, timeout=900), "seed")
        n = P["t_repeats"]

        # same history, other bytes: R1, R2, R1, ... (each differs from the sync before)
        def other(kind, srv, i):
            return R.check(drv.load(srv, "/sync", body=bodies["reser"][i % 2], count=1,
                                    timeout=900), "other bytes")
        for kind, runs in paired("same history, other bytes", n + 1, servers, other).items():
            T[kind]["other_bytes"] = runs[1:]  # the first sync after the seed is a warm-up

        def fresh_seed(kind, srv, i):
            return R.check(drv.load(srv, "/sync", body=bodies["fresh_seed"], count=1,
                                    timeout=900), "fresh pull (seed shape)")
        for kind, runs in paired("fresh pull, seed shape", n, servers, fresh_seed).items():
            T[kind]["fresh_seed"] = runs

        def fresh_pg(kind, srv, i):
            body = polyglot_first_sync(os.path.join(work, f"polyglot-first-{kind}-{i}.json"))
            return R.check(drv.load(srv, "/sync", body=body, count=1, timeout=900),
                           "fresh pull (Polyglot shape)")
        for kind, runs in paired("fresh pull, Polyglot shape", n, servers, fresh_pg).items():
            T[kind]["fresh_polyglot"] = runs

        c = P["t_conc"]

        # not checked: a request refused under this load is a result (shown in the row)
        def pulls(kind, srv, i):
            return drv.load(srv, "/sync", body=bodies["fresh_seed"], conns=c, count=c,
                            timeout=1200)

        def fetches(kind, srv, i):
            return drv.run(["load", "--url", srv.url, "--path", "/fetchChats", "--method",
                            "GET", "--conns", c, "--count", c, "--pid", srv.pid], timeout=1200)
        for kind, runs in paired(f"{c} concurrent fresh pulls", P["t_conc_repeats"], servers,
                                 pulls).items():
            T[kind]["conc_pull"] = runs
        for kind, runs in paired(f"{c} concurrent /fetchChats", P["t_conc_repeats"], servers,
                                 fetches).items():
            T[kind]["conc_fetch"] = runs

        # two devices: X's bytes are the generator's, Y's a re-serialization; warm both
        for kind, srv in servers.items():
            for b in (bodies["dev_x"], bodies["dev_y"]):
                R.check(drv.load(srv, "/sync", body=b, count=1, timeout=900), "warm-up")

        def alternating(kind, srv, i):
            # Y first: X's last sync was X's own bytes
            return R.check(drv.load(srv, "/sync", body=bodies["dev_y" if i % 2 == 0 else "dev_x"],
                                    count=1, timeout=900), "two devices")

        def single(kind, srv, i):
            return R.check(drv.load(srv, "/sync", body=bodies["dev_x"], count=1, timeout=900),
                           "one device")
        for srv in servers.values():  # X last: its next sync repeats its own bytes
            R.check(drv.load(srv, "/sync", body=bodies["dev_x"], count=1, timeout=900),
                    "warm-up")
        for kind, runs in paired("one device re-sending its bytes", n, servers, single).items():
            T[kind]["single_device"] = runs
        for kind, runs in paired("two devices alternating", 2 * n, servers,
                                 alternating).items():
            T[kind]["two_devices"] = runs
    finally:
        for srv in servers.values():
            srv.stop()
            subprocess.run(["rm", "-rf", srv.dir])


# The reader is one connection in a closed loop: a request stalled for 20 s is one slow
# sample among thousands of fast ones, though a device polling meanwhile would have had
# every poll of those 20 s wait. Its latencies are therefore also taken as a device
# polling every POLL_MS sees them (psbench --poll-interval-ms); the target is judged on
# those.
POLL_MS = 10


def readers(drv, build, work, P, T):
    """polysyncd: no-op syncs of user `reader` (one connection) while users w1 and w2
    each upload K full histories of new chats (the window ends when both are done),
    and the same no-ops alone."""
    secret = os.path.join(work, "t15-secret")
    with open(secret, "w") as f:
        f.write("the benchmark's secret, at least thirty-two bytes long")
    os.chmod(secret, 0o600)
    exe = os.path.join(build, "bin/polysyncd")

    def bearer(user):
        tok = subprocess.run([exe, "token", "issue", "--user", user, "--jwt-secret-file", secret],
                             capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        return f"Authorization: Bearer {tok}"
    hdr = {u: bearer(u) for u in ("reader", "w1", "w2")}
    K = P["t_writer_uploads"]
    bodies = []
    for k in range(K):
        path = os.path.join(work, f"t15-writer-{k}.json")
        drv.gen(path, P["ref_chats"], P["ref_msgs"], first=2000000 + k * P["ref_chats"])
        bodies.append(path)
    srv = start_polysyncd(build, work, "t15-readers", args=["--jwt-secret-file", secret])
    out = T["polysyncd"]
    try:
        seed = drv.run(["seed-v2", "--url", srv.url, "--device", "reader-a", "--chats",
                        P["t_reader_chats"], "--messages", P["v2_msgs"], "--big-messages", 0,
                        "--batch", 200, "--pid", srv.pid, "--header", hdr["reader"]],
                       timeout=600)
        R.check(seed, "reader seed")
        noop = json.dumps({"deviceId": "reader-a", "cursor": seed["cursor"]})
        R.check(drv.run(["load", "--url", srv.url, "--path", "/v2/sync", "--body-json", noop,
                         "--count", 200, "--header", hdr["reader"]], timeout=120), "warm-up")
        out["noop_alone"] = [R.check(drv.run(
            ["load", "--url", srv.url, "--path", "/v2/sync", "--body-json", noop, "--conns", 1,
             "--duration", P["t_reader_alone_s"], "--drain", 10, "--pid", srv.pid,
             "--header", hdr["reader"], "--poll-interval-ms", POLL_MS],
            timeout=P["t_reader_alone_s"] + 60), "no-op alone")]
        out["noop_writers"], out["writers"] = [], []
        for rep in range(P["t_reader_repeats"]):
            R.log(f"#15 polysyncd: v2 no-op p99 while two users upload {K} full histories "
                  f"each, run {rep + 1}")
            # each repeat into fresh namespaces: the uploads are first uploads again
            hw = {u: bearer(f"{u}-{rep}") for u in ("w1", "w2")}
            writers = [subprocess.Popen(
                [drv.exe, "load", "--url", srv.url, "--path", "/sync", "--body", ",".join(bodies),
                 "--count", str(K), "--drain", "600", "--header", hw[u]],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for u in ("w1", "w2")]
            try:
                r = drv.run(["load", "--url", srv.url, "--path", "/v2/sync", "--body-json", noop,
                             "--conns", 1, "--duration", P["t_reader_max_s"], "--drain", 30,
                             "--pid", srv.pid, "--header", hdr["reader"], "--while-pids",
                             ",".join(str(w.pid) for w in writers), "--poll-interval-ms",
                             POLL_MS],
                            timeout=P["t_reader_max_s"] + 90)
                out["noop_writers"].append(r)  # failed no-ops are counted in the row
                for w in writers:
                    so, se = w.communicate(timeout=900)
                    try:
                        wo = json.loads(so)
                    except ValueError:
                        raise RuntimeError(f"a writer failed ({w.returncode}): {se[-300:]}")
                    out["writers"].append(wo)
                    R.check(wo, "writer's upload")  # a refused upload: the window is not one
            finally:
                for w in writers:
                    if w.poll() is None:
                        w.kill()
                        w.wait()
    finally:
        srv.stop()
        subprocess.run(["rm", "-rf", srv.dir])
        for b in bodies:
            os.remove(b)


def big_body(drv, build, work, P, T):
    """A 256 MiB-class legacy body to servers started with their default limits."""
    per_chat = P["ref_body_bytes"] / P["ref_chats"]
    chats = int(P["t_big_mib"] * 2 ** 20 * 0.995 / per_chat)
    path = os.path.join(work, "t15-big.json")
    size = drv.gen(path, chats, P["ref_msgs"], first=5000000)
    if size > P["t_big_mib"] * 2 ** 20:  # keep it inside the class: never over the size named
        chats = int(chats * P["t_big_mib"] * 2 ** 20 / size * 0.995)
        size = drv.gen(path, chats, P["ref_msgs"], first=5000000)
    T["big_body_bytes"], T["big_body_chats"] = size, chats
    try:
        for kind in SERVERS:
            srv = start(kind, build, work, f"t15-{kind}-big", default_limits=True)
            try:
                R.log(f"#15 {kind}: a {size / 2 ** 20:.0f} MiB body at the default limits")
                out = drv.load(srv, "/sync", body=path, count=1, timeout=1200, drain=900)
                T[kind]["big_body"] = [out]
            except Exception as e:  # e.g. the server died taking it: that is the answer
                T[kind]["big_body"] = [{"error": str(e)[:200]}]
            finally:
                srv.stop()
                subprocess.run(["rm", "-rf", srv.dir])
    finally:
        os.remove(path)


def run(run_module, drv, build, work, P, ref_body, fresh_seed_body):
    global R
    R = run_module
    T = {k: {} for k in SERVERS}
    P = dict(P, ref_body_bytes=os.path.getsize(ref_body))
    bodies = {"ref": ref_body, "fresh_seed": fresh_seed_body}
    R.log("#15: re-serializing the reference set (two key orders / whitespaces)")
    bodies["reser"] = [os.path.join(work, f"t15-reser-{v}.json") for v in (1, 2)]
    for v, p in enumerate(bodies["reser"], 1):
        reserialize(ref_body, p, v)
    bodies["dev_x"] = os.path.join(work, "t15-dev-x.json")
    drv.gen(bodies["dev_x"], P["ref_chats"], P["ref_msgs"], envelope="bench-dev-x")
    bodies["dev_y"] = os.path.join(work, "t15-dev-y.json")
    reserialize(ref_body, bodies["dev_y"], 1, device="bench-dev-y")
    steps = [("first upload", lambda: first_uploads(drv, build, work, P, ref_body, T)),
             ("steady state", lambda: steady(drv, build, work, P, bodies, T)),
             ("readers", lambda: readers(drv, build, work, P, T)),
             ("big body", lambda: big_body(drv, build, work, P, T))]
    T["errors"] = []
    for name, fn in steps:
        t = time.monotonic()
        try:
            fn()
        except Exception as e:  # keep going: the other scenarios still say something
            T["errors"].append(f"#15 {name}: {e}")
            R.log(f"#15 {name} failed: {e}")
        T.setdefault("took_s", {})[name] = time.monotonic() - t
    for p in bodies["reser"] + [bodies["dev_x"], bodies["dev_y"]]:
        os.remove(p)
    return T


# ---- the table --------------------------------------------------------------

def tri(vals):
    return R.tri(list(vals))


def med(t):
    return t[1] if t else None


def lat(runs, key="p50"):
    return tri(r["sync"]["lat_ms"][key] / 1e3 for r in runs) if runs else None


def cpu(runs):
    return tri(r["server"]["cpu_s"] for r in runs) if runs else None


def rss(runs):
    runs = [r for r in runs or [] if "server" in r]
    return tri(r["server"]["peak_rss_kib"] / 1024 for r in runs) if runs else None


def all_ok(runs):
    """Every request of these runs answered 2xx, none cut."""
    return bool(runs) and all(r.get("sync", {}).get("failed", 1) == 0 and not r.get("aborted")
                              for r in runs)


def statuses(runs):
    tot = {}
    for r in runs or []:
        for k, v in status_counts(r).items():
            tot[k] = tot.get(k, 0) + v
    return ", ".join(f"{v} × {k}" for k, v in tot.items() if v) or "no answer"


def summarize(T, legacy_S):
    """Every #15 target: (label, figure, polysyncd tri, other tri, ratio, target, met)."""
    ps, rf = T.get("polysyncd", {}), T.get("reference-memory", {})
    rows = []

    def add(label, figure, a, b, ratio, target, ok, note=""):
        rows.append(dict(label=label, figure=figure, ps=a, other=b, ratio=ratio, target=target,
                         met=ok, note=note))

    def faster(label, figure, a, b, k, target):
        r = R.ratio(med(b), med(a))
        add(label, figure, a, b, r, target, None if r is None else r >= k)

    faster("first upload into an empty server", "time (s)", lat(ps.get("upload")),
           lat(rf.get("upload")), 2, "≥ 2× faster")
    add("", "server CPU (s)", cpu(ps.get("upload")), cpu(rf.get("upload")), None, "", None)
    add("", "peak server RSS (MiB)", rss(ps.get("upload")), rss(rf.get("upload")), None, "", None)
    r = R.ratio(med(cpu(rf.get("other_bytes"))), med(cpu(ps.get("other_bytes"))))
    add("same history, other bytes (re-serialized: key order, whitespace)",
        "server CPU per sync (s)", cpu(ps.get("other_bytes")), cpu(rf.get("other_bytes")), r,
        "≥ 5× less", None if r is None else r >= 5)
    add("", "time (s)", lat(ps.get("other_bytes")), lat(rf.get("other_bytes")), None, "", None)
    faster("fresh pull, seed shape ({\"chats\":[20 chats]})", "time (s)",
           lat(ps.get("fresh_seed")), lat(rf.get("fresh_seed")), 10, "≥ 10× faster")
    faster("fresh pull, Polyglot shape (new device, no chats)", "time (s)",
           lat(ps.get("fresh_polyglot")), lat(rf.get("fresh_polyglot")), 10, "≥ 10× faster")
    for key, label in (("conc_pull", "concurrent fresh pulls (seed shape)"),
                       ("conc_fetch", "concurrent GET /fetchChats")):
        runs = ps.get(key)
        n = runs[0]["conns"] if runs else "16"
        a = rss(runs)
        add(f"{n} {label}", "peak server RSS (MiB)", a, rss(rf.get(key)), None, "≤ 256 MiB",
            None if not a else a[2] <= 256 and all_ok(runs),
            f"answers: polysyncd {statuses(runs)}; the seed server {statuses(rf.get(key))}")
        add("", "time for all (s)", tri(r["elapsed_s"] for r in runs) if runs else None,
            tri(r["elapsed_s"] for r in rf.get(key, [])) if rf.get(key) else None, None, "", None)
    nw = ps.get("noop_writers")
    if nw:
        def cp99(r):  # as a device polling every POLL_MS sees it; else the raw p99
            return (r.get("corrected") or r["sync"])["lat_ms"]["p99"]
        p99 = tri(cp99(r) for r in nw)
        raw = tri(r["sync"]["lat_ms"]["p99"] for r in nw)
        ups = [w for w in ps.get("writers", []) if "sync" in w]
        failed = sum(r["sync"]["failed"] + r.get("aborted", 0) for r in nw)
        add("v2 no-op sync (one device) while two users upload full histories",
            f"no-op p99 (ms), as a device polling every {POLL_MS} ms sees it", p99, None, None,
            "< 10 ms", p99[1] < 10 and not failed,
            f"closed-loop p99 {R.fmt_tri(raw, 1)} ms; {failed} no-ops failed or cut; p50 {R.fmt_tri(tri(r['sync']['lat_ms']['p50'] for r in nw), 2)} ms, max "
            f"{R.fmt_tri(tri(r['sync']['lat_ms']['max'] for r in nw), 0)} ms, "
            f"{sum(r['sync']['requests'] for r in nw):,} no-ops over "
            f"{R.fmt_tri(tri(r['duration_s'] for r in nw), 1)} s; each upload "
            f"{R.fmt_tri(tri(w['sync']['lat_ms']['p50'] / 1e3 for w in ups), 1)} s (p50 of "
            f"each writer)" if ups else "")
        al = ps.get("noop_alone")
        if al:
            add("", f"no-op p99 without the writers (ms), polling every {POLL_MS} ms",
                tri(cp99(r) for r in al), None, None, "", None,
                f"{al[0]['sync']['throughput_rps']:,.0f} syncs/s on one connection")
    for kind, s in (("polysyncd", ps), ("reference-memory", rf)):
        one, two = cpu(s.get("single_device")), cpu(s.get("two_devices"))
        s["_alt_ratio"] = R.ratio(med(two), med(one))
    one, two = cpu(ps.get("single_device")), cpu(ps.get("two_devices"))
    add("two devices alternating full syncs of the same content, each its own bytes",
        "server CPU per sync (s)", two, cpu(rf.get("two_devices")), None,
        "within 2× of one device", None if ps["_alt_ratio"] is None else ps["_alt_ratio"] <= 2,
        f"polysyncd {R.fmt_ratio(ps['_alt_ratio'])} of one device; the seed server "
        f"{R.fmt_ratio(rf['_alt_ratio'])}")
    add("", "one device re-sending its own bytes: server CPU per sync (s)", one,
        cpu(rf.get("single_device")), R.ratio(med(cpu(rf.get("single_device"))), med(one)),
        "", None)
    big = ps.get("big_body")
    if big:
        size = T.get("big_body_bytes", 0) / 2 ** 20

        def accepted(runs):
            return runs and status_counts(runs[0]).get("2xx") == 1 and not runs[0].get("aborted")

        def answer(runs):
            if not runs:
                return "–"
            if "error" in runs[0]:
                return f"failed: {runs[0]['error'][:100]}"
            st = status_counts(runs[0])
            if accepted(runs):
                return f"200 in {runs[0]['sync']['lat_ms']['p50'] / 1e3:.1f} s"
            return (R.fmt_num(None, 0) if not st else
                    ", ".join(f"{v} × {k}" for k, v in st.items() if v) or "no answer") + \
                (f" ({runs[0].get('first_error', '')[:80]})" if runs[0].get("first_error") else "")
        rows.append(dict(label=f"a {size:.0f} MiB legacy body ({T.get('big_body_chats', 0):,} "
                               f"chats), both servers at their default limits",
                         figure="answer", ps=answer(big), other=answer(rf.get("big_body")),
                         ratio=None, target="accepted", met=bool(accepted(big)), note="", text=True))
        add("", "peak server RSS while taking it (MiB)", rss(big), rss(rf.get("big_body")), None,
            "", None)
    d = ps.get("disk")
    if d:
        add("server disk after a clean shutdown, reference history (MB)", "bytes on disk",
            tri(x / 1e6 for x in d), tri(x / 1e6 for x in rf.get("disk", [])),
            None, "≤ PouchDB's (see the PouchDB table)", None,
            "the seed server: its chatStore.json (file mode)")
    # kept from before (figures of the tables below)
    lps, lrm = legacy_S.get("polysyncd", {}), legacy_S.get("reference-memory", {})
    ra = R.ratio(med(lrm.get("a_time")), med(lps.get("a_time")))
    add("keep: byte-identical re-sync ((a) below)", "time (s)", lps.get("a_time"),
        lrm.get("a_time"), ra, "≥ 10× faster", None if ra is None else ra >= 10)
    v2 = legacy_S.get("v2", {})
    if v2.get("e_rps"):
        add("keep: v2 no-op, 16 connections ((e) below)", "syncs/s", v2["e_rps"], None, None,
            "≥ 50,000/s", v2["e_rps"][1] >= 50000,
            "; ".join(legacy_S["v2"].get("e_failures", [])))
        add("", "p99 (ms)", v2["e_p99"], None, None, "< 5 ms", v2["e_p99"][1] < 5)
    return rows


def markdown(rows, P, T):
    L = ["| target (issue #15) | figure | polysyncd | seed server (memory); PouchDB rows: "
         "PouchDB | polysyncd's lead (medians) | target | met | notes |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("text"):
            a, b = r["ps"], r["other"]
        else:
            digits = r.get("digits")
            if digits is None:
                digits = 0 if "MiB" in r["figure"] or "syncs/s" in r["figure"] else \
                    (1 if "MB" in r["label"] else 3)
            a, b = R.fmt_tri(r["ps"], digits), R.fmt_tri(r["other"], digits)
        L.append(f"| {r['label']} | {r['figure']} | {a} | {b} | {R.fmt_ratio(r['ratio'])} | "
                 f"{r['target']} | {R.verdict(r['met'])} | {r.get('note', '')} |")
    took = T.get("took_s", {})
    L.append("")
    L.append(f"Repeats: first upload {P['t_upload_repeats']} (a new server each), other bytes, "
             f"fresh pulls and one device {P['t_repeats']}, two devices {2 * P['t_repeats']}, "
             f"{P['t_conc']} concurrent requests {P['t_conc_repeats']}; the servers take turns, each turn once both are idle. "
             f"Took " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()) + ".")
    for e in T.get("errors", []):
        L.append(f"\n- failed: {e}")
    return "\n".join(L)
