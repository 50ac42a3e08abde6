"""End to end against PouchDB, and the web client's first sync in Chromium (bench/run.py).

The PouchDB column: the polysync CLI + polysyncd against a PouchDB 9 device (LevelDB,
each chat one document) + express-pouchdb (LevelDB), same data (the reference set),
one run, the two systems taking turns (polysync first in odd runs, PouchDB first in even
ones). Each system, on a new server:

  load       the history into device A's own store (`polysync import` / bulkDocs)
  upload     A's first sync: the whole history to the empty server
  fresh pull a new device B's first sync: the whole history from the server
  message    A adds one message to a chat and syncs (push); B syncs (pull) and has it
  no-op      A syncs with nothing new
  polling    16 devices (copies of B, each its own device id) sync again and again, all in
             one process: polysync's 16 libpolysync handles, a thread each (psbench_poll,
             bench/src/poll_devices.c), PouchDB's 16 databases in one Node process; and
             polysync's again as 16 loops of `polysync sync` processes (a row of its own:
             each sync then also pays a process start, ~14 ms of CPU on the test VM)
  RSS        the server's peak RSS in each phase (sampled every 100 ms from /proc)
  disk       the server's directory after a clean shutdown (SIGTERM); the devices' stores
  client CPU the upload's and the fresh pull's client process, user + system
             (getrusage(RUSAGE_CHILDREN) around it: the CLI, or PouchDB's Node process)

Times: the sync itself — the CLI's own elapsedMs (`polysync --json sync`), and
PouchDB.sync timed inside its Node process once both databases are open and the server
reached; each is also reported as the whole process (start, store opening, exit; Node's
start and require() included). PouchDB syncs are one-shot PouchDB.sync (both ways), as
the CLI's `sync` is. Bytes of the steady-state syncs: HTTP bodies (the CLI's bytesSent +
bytesReceived; PouchDB's counted by a fetch wrapper in bench/pouchdb/device.js).

Pinned: bench/pouchdb/package-lock.json, installed with `npm ci` when node_modules is
missing or older than the lock file. Loopback only; every process has a timeout.
"""
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
import uuid

R = None
HERE = os.path.dirname(os.path.abspath(__file__))
PDIR = os.path.join(HERE, "pouchdb")


def npm_ci(folder):
    """`npm ci` in folder unless its node_modules matches its package-lock.json."""
    lock = os.path.join(folder, "package-lock.json")
    stamp = os.path.join(folder, "node_modules", ".package-lock.json")
    if os.path.exists(stamp) and os.path.getmtime(stamp) >= os.path.getmtime(lock):
        return
    R.log(f"npm ci in {os.path.relpath(folder, R.ROOT)}")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, check=True,
                   timeout=900, stdout=subprocess.DEVNULL)


# ---- measuring the server ---------------------------------------------------

def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class Watch:
    """Samples the server's RSS every 100 ms; per phase: peak RSS (MiB), CPU (s)."""

    def __init__(self, pid):
        self.pid, self.phase, self.peak, self.cpu = pid, None, {}, {}
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop_ev.wait(0.1):
            ph = self.phase
            if ph:
                rss = proc_status(self.pid, "VmRSS") / 1024
                self.peak[ph] = max(self.peak.get(ph, 0), rss)

    def begin(self, phase):
        self.phase = phase
        self.cpu0 = proc_cpu(self.pid)
        self.peak[phase] = max(self.peak.get(phase, 0), proc_status(self.pid, "VmRSS") / 1024)

    def end(self):
        ph = self.phase
        self.cpu[ph] = self.cpu.get(ph, 0) + proc_cpu(self.pid) - self.cpu0
        self.peak[ph] = max(self.peak.get(ph, 0), proc_status(self.pid, "VmRSS") / 1024)
        self.phase = None

    def close(self):
        self.stop_ev.set()
        self.t.join()


def timed(argv, timeout=900, **kw):
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    dt = time.monotonic() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))}… exit {r.returncode}: "
                           f"{r.stderr.strip()[-400:]}")
    return dt, r.stdout


def children_cpu():
    """CPU seconds (user + system) of the child processes waited for so far: the
    difference around one client process is its CPU."""
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def poll_loops(n, seconds, one):
    """n threads each calling one(i) until `seconds` pass; (syncs, failures, latencies, s)."""
    lat, fails = [], [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds
    t0 = time.monotonic()

    def loop(i):
        while time.monotonic() < end:
            t = time.monotonic()
            ok = one(i)
            with lock:
                if ok:
                    lat.append(time.monotonic() - t)
                else:
                    fails[0] += 1
    th = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return len(lat), fails[0], sorted(lat), time.monotonic() - t0


def pct(v, p):
    return v[min(len(v) - 1, int(p / 100 * len(v)))] if v else None


# ---- the two systems --------------------------------------------------------

MESSAGE = ("A new message to measure one message's sync — with a few words of prose, "
           "«accents», 日本語 and an emoji 👍, about three hundred bytes long once it is "
           "wrapped in its JSON object with its id, role and timestamp.")


def set_device_id(db, dev):
    """Gives a copied CLI store its own device id (the `meta` row the client reads); 1 if
    it took, 0 if the store has no such row (then the copies share B's id)."""
    import sqlite3
    try:
        with sqlite3.connect(db) as c:
            return c.execute("UPDATE meta SET value = ? WHERE key = 'device_id'",
                             (dev,)).rowcount
    except sqlite3.Error:
        return 0


def poll_program(build):
    """psbench_poll (bench/src/poll_devices.c), the in-process polling devices, among
    the copies run.py makes in <build>/bin."""
    return os.path.join(build, "bin", "psbench_poll")


def run_polysync(build, work, P, ref_body, chat_id, i):
    import targets
    d = os.path.join(work, f"e2e-polysync-{i}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    srv = targets.start_polysyncd(build, d, "polysyncd", default_limits=True)
    w = Watch(srv.pid)
    cli = os.path.join(build, "bin/polysync")
    poll_bin = poll_program(build)
    out = {"times": {}, "wall": {}, "bytes": {}}
    T, W, B = out["times"], out["wall"], out["bytes"]

    def ps(dev, *args, timeout=900):
        return timed([cli, "--store", os.path.join(d, dev, "chats.db"), "--server", srv.url,
                      "--quiet", *args], timeout=timeout)

    def sync(dev):
        """(the sync's own time: the CLI's elapsedMs, else the process's; the process's;
        bytes sent, received)"""
        wall, so = ps(dev, "--json", "sync")
        try:
            j = json.loads(so)
        except ValueError:
            j = {}
        op = j["elapsedMs"] / 1e3 if isinstance(j.get("elapsedMs"), (int, float)) else wall
        return op, wall, (j.get("bytesSent"), j.get("bytesReceived"))
    try:
        os.makedirs(os.path.join(d, "A"))
        os.makedirs(os.path.join(d, "B"))
        T["load"], _ = ps("A", "import", ref_body)
        cc = out["client_cpu"] = {}
        w.begin("upload")
        c0 = children_cpu()
        T["upload"], W["upload"], B["upload"] = sync("A")
        cc["upload"] = children_cpu() - c0
        w.end()
        w.begin("fresh pull")
        c0 = children_cpu()
        T["pull"], W["pull"], B["pull"] = sync("B")
        cc["fresh pull"] = children_cpu() - c0
        w.end()
        _, listing = ps("B", "chat", "list", "--json")
        out["pulled_chats"] = len(json.loads(listing))
        for k in ("push1", "pull1", "noop"):
            T[k], W[k], B[k] = [], [], []

        def steady(key, dev):
            op, wall, b = sync(dev)
            T[key].append(op)
            W[key].append(wall)
            B[key].append(b)
        w.begin("steady")
        for k in range(P["e2e_msg_runs"]):
            _, mid = ps("A", "msg", "add", chat_id, "--role", "user", "--content", f"{MESSAGE} {k}")
            steady("push1", "A")
            steady("pull1", "B")
            _, shown = ps("B", "chat", "show", chat_id, "--json")
            if mid.strip() not in shown:
                raise RuntimeError(f"device B did not get message {mid.strip()}")
        for _ in range(P["e2e_noop_runs"]):
            steady("noop", "A")
        w.end()
        # polling devices: copies of B, each with its own device id
        n = P["e2e_poll_devices"]
        own_ids = 0
        for j in range(n):
            dj = os.path.join(d, f"poll-{j}")
            os.makedirs(dj)
            for f in os.listdir(os.path.join(d, "B")):
                shutil.copy2(os.path.join(d, "B", f), dj)
            own_ids += set_device_id(os.path.join(dj, "chats.db"), str(uuid.uuid4()))
            ps(f"poll-{j}", "sync")  # its first sync as this device
        out["poll_own_ids"] = own_ids

        stores = [os.path.join(d, f"poll-{j}", "chats.db") for j in range(n)]

        def in_process():
            """The n devices as libpolysync handles, a thread each, in one process
            (psbench_poll), as PouchDB's devices share one Node process."""
            w.begin("polling")
            try:
                _, so = timed([poll_bin, "--url", srv.url, "--seconds", str(P["e2e_poll_s"]),
                               "--retries", "1", *stores], timeout=P["e2e_poll_s"] + 300)
            finally:
                w.end()
            out["poll"] = json.loads(so.strip().splitlines()[-1])

        def processes():
            """The n devices as loops of `polysync sync` processes: each sync also pays
            a process start and the store's opening (the row "each sync a CLI process")."""
            def one(j):
                r = subprocess.run([cli, "--store", stores[j], "--server", srv.url, "--quiet",
                                    "--retries", "1", "sync"], capture_output=True, timeout=120)
                return r.returncode == 0
            w.begin("polling, CLI processes")
            syncs, fails, lat, el = poll_loops(n, P["e2e_poll_s"], one)
            w.end()
            out["poll_cli"] = dict(syncs=syncs, failed=fails, per_s=syncs / el,
                                   p50=pct(lat, 50), p99=pct(lat, 99))
        # turn about, as the two systems: neither way of polling always meets the server
        # first
        for how in ((in_process, processes) if i % 2 == 0 else (processes, in_process)):
            how()
    finally:
        w.close()
        srv.stop()
    out["rss"], out["cpu"] = w.peak, w.cpu
    out["server_disk"] = targets.dir_bytes(srv.dir)
    out["client_disk"] = targets.dir_bytes(os.path.join(d, "A"))
    out["fresh_client_disk"] = targets.dir_bytes(os.path.join(d, "B"))
    shutil.rmtree(d, ignore_errors=True)
    return out


def run_pouchdb(build, work, P, ref_body, chat_id, i):
    import targets
    d = os.path.join(work, f"e2e-pouchdb-{i}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "server"))
    srv = R.Server("pouchdb-server", ["node", os.path.join(PDIR, "server.js"), "--dir",
                                      os.path.join(d, "server"), "--log",
                                      os.path.join(d, "pouchdb-requests.log")],
                   os.path.join(d, "pouchdb-server.log")).start()
    w = Watch(srv.pid)
    dev = os.path.join(PDIR, "device.js")
    out = {"times": {}, "wall": {}, "bytes": {}}
    T, W, B = out["times"], out["wall"], out["bytes"]

    def node(*args, timeout=900):
        dt, so = timed(["node", dev, *args], timeout=timeout)
        return dt, json.loads(so.strip().splitlines()[-1])

    def sync(name, count=False):
        dt, r = node("sync", os.path.join(d, name), srv.url, *(["--bytes"] if count else []))
        return r["ms"] / 1e3, dt, r
    try:
        _, r = node("load", os.path.join(d, "A"), ref_body)
        T["load"] = r["ms"] / 1e3
        cc = out["client_cpu"] = {}
        w.begin("upload")
        c0 = children_cpu()
        T["upload"], out["wall"]["upload"], r = sync("A")
        cc["upload"] = children_cpu() - c0
        w.end()
        w.begin("fresh pull")
        c0 = children_cpu()
        T["pull"], out["wall"]["pull"], r = sync("B")
        cc["fresh pull"] = children_cpu() - c0
        w.end()
        out["pulled_chats"] = r["docs"]
        for k in ("push1", "pull1", "noop"):
            T[k], W[k], B[k] = [], [], []

        def steady(key, name):
            op, wall, r = sync(name, count=True)
            T[key].append(op)
            W[key].append(wall)
            B[key].append((r.get("bytesOut"), r.get("bytesIn")))
        w.begin("steady")
        for k in range(P["e2e_msg_runs"]):
            mid = f"bench-msg-{i}-{k}-{uuid.uuid4()}"
            msg = {"id": mid, "role": "user", "content": f"{MESSAGE} {k}",
                   "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
            node("add", os.path.join(d, "A"), chat_id, json.dumps(msg))
            steady("push1", "A")
            steady("pull1", "B")
            _, h = node("has", os.path.join(d, "B"), chat_id, mid)
            if not h["has"]:
                raise RuntimeError(f"PouchDB device B did not get message {mid}")
        for _ in range(P["e2e_noop_runs"]):
            steady("noop", "A")
        w.end()
        n = P["e2e_poll_devices"]
        dirs = []
        for j in range(n):
            dj = os.path.join(d, f"poll-{j}")
            shutil.copytree(os.path.join(d, "B"), dj)
            dirs.append(dj)
        node("poll", srv.url, "1", *dirs)  # a first round, as the CLI's devices get
        w.begin("polling")
        _, r = node("poll", srv.url, str(P["e2e_poll_s"]), *dirs, timeout=P["e2e_poll_s"] + 300)
        w.end()
        out["poll"] = dict(syncs=r["syncs"], failed=0, per_s=r["syncs_per_s"],
                           p50=r["p50_ms"] / 1e3 if r["p50_ms"] is not None else None,
                           p99=r["p99_ms"] / 1e3 if r["p99_ms"] is not None else None)
    finally:
        w.close()
        srv.stop()
    out["rss"], out["cpu"] = w.peak, w.cpu
    out["server_disk"] = targets.dir_bytes(os.path.join(d, "server"))
    out["client_disk"] = targets.dir_bytes(os.path.join(d, "A"))
    out["fresh_client_disk"] = targets.dir_bytes(os.path.join(d, "B"))
    shutil.rmtree(d, ignore_errors=True)
    return out


def run(run_module, build, work, P, ref_body):
    global R
    R = run_module
    import targets
    targets.R = run_module
    npm_ci(PDIR)
    with open(ref_body, encoding="utf-8") as f:
        chat_id = json.load(f)["chats"][0]["id"]
    res = {"polysync": [], "pouchdb": [], "errors": []}
    for i in range(P["e2e_runs"]):
        order = ("polysync", "pouchdb") if i % 2 == 0 else ("pouchdb", "polysync")
        for name in order:
            R.log(f"end to end: {name}, run {i + 1}")
            try:
                fn = run_polysync if name == "polysync" else run_pouchdb
                res[name].append(fn(build, work, P, ref_body, chat_id, i))
            except Exception as e:
                res["errors"].append(f"end to end, {name} run {i + 1}: {e}")
                R.log(f"end to end {name} failed: {e}")
    return res


# ---- tables -----------------------------------------------------------------

def _tri(runs, fn):
    vals = []
    for r in runs:
        try:
            v = fn(r)
        except (KeyError, TypeError, ValueError, statistics.StatisticsError):
            continue
        if v is not None:
            vals.append(v)
    return R.tri(vals)


def figures(res):
    """name -> {figure: tri}; steady-state times are each run's median."""
    F = {}
    for name in ("polysync", "pouchdb"):
        runs = res.get(name, [])
        F[name] = {
            "load": _tri(runs, lambda r: r["times"]["load"]),
            "upload": _tri(runs, lambda r: r["times"]["upload"]),
            "pull": _tri(runs, lambda r: r["times"]["pull"]),
            "push1": _tri(runs, lambda r: statistics.median(r["times"]["push1"])),
            "pull1": _tri(runs, lambda r: statistics.median(r["times"]["pull1"])),
            "noop": _tri(runs, lambda r: statistics.median(r["times"]["noop"])),
            "w_upload": _tri(runs, lambda r: r["wall"]["upload"]),
            "w_pull": _tri(runs, lambda r: r["wall"]["pull"]),
            "w_push1": _tri(runs, lambda r: statistics.median(r["wall"]["push1"])),
            "w_noop": _tri(runs, lambda r: statistics.median(r["wall"]["noop"])),
            "b_push1": _tri(runs, lambda r: statistics.median(sum(b) for b in r["bytes"]["push1"])),
            "b_pull1": _tri(runs, lambda r: statistics.median(sum(b) for b in r["bytes"]["pull1"])),
            "b_noop": _tri(runs, lambda r: statistics.median(sum(b) for b in r["bytes"]["noop"])),
            "poll": _tri(runs, lambda r: r["poll"]["per_s"]),
            "poll_p99": _tri(runs, lambda r: r["poll"]["p99"]),
            # PouchDB has one way of polling (one Node process): its figure stands beside
            # both of polysync's
            "poll_cli": _tri(runs, lambda r: r.get("poll_cli", r["poll"])["per_s"]),
            "poll_cli_p99": _tri(runs, lambda r: r.get("poll_cli", r["poll"])["p99"]),
            "rss_upload": _tri(runs, lambda r: r["rss"]["upload"]),
            "rss_pull": _tri(runs, lambda r: r["rss"]["fresh pull"]),
            "rss_poll": _tri(runs, lambda r: r["rss"]["polling"]),
            "cpu_upload": _tri(runs, lambda r: r["cpu"]["upload"]),
            "cpu_pull": _tri(runs, lambda r: r["cpu"]["fresh pull"]),
            "ccpu_upload": _tri(runs, lambda r: r["client_cpu"]["upload"]),
            "ccpu_pull": _tri(runs, lambda r: r["client_cpu"]["fresh pull"]),
            "cpu_poll": _tri(runs, lambda r: r["cpu"]["polling"]),
            "server_disk": _tri(runs, lambda r: r["server_disk"] / 1e6),
            "client_disk": _tri(runs, lambda r: r["client_disk"] / 1e6),
            "fresh_client_disk": _tri(runs, lambda r: r["fresh_client_disk"] / 1e6),
            "pulled": _tri(runs, lambda r: r["pulled_chats"]),
        }
    return F


# (key, label, digits, better: "faster" (time), "more" (rate), "less" (size), target k)
ROWS = [
    ("load", "the history into device A's store (s)", 2, "faster", None),
    ("upload", "first upload of the history (s)", 2, "faster", 3),
    ("pull", "fresh device pull of the history (s)", 2, "faster", 3),
    ("push1", "one new message pushed (s, median of the run)", 3, "faster", 1),
    ("pull1", "that message pulled by the other device (s)", 3, "faster", 1),
    ("noop", "no-op sync (s)", 3, "faster", 1),
    ("b_push1", "one message pushed: body bytes, both ways", 0, "less", None),
    ("b_pull1", "one message pulled: body bytes, both ways", 0, "less", None),
    ("b_noop", "no-op sync: body bytes, both ways", 0, "less", None),
    ("w_upload", "first upload, whole process (s)", 2, "faster", None),
    ("w_pull", "fresh pull, whole process (s)", 2, "faster", None),
    ("w_push1", "one message pushed, whole process (s)", 3, "faster", None),
    ("w_noop", "no-op sync, whole process (s)", 3, "faster", None),
    ("poll", "16 devices polling, in one process: syncs/s", 0, "more", 1),
    ("poll_p99", "16 devices polling, in one process: p99 (s)", 3, "faster", None),
    ("poll_cli", "16 devices polling, each sync a polysync CLI process: syncs/s", 0, "more",
     None),
    ("poll_cli_p99", "16 devices polling, each sync a polysync CLI process: p99 (s)", 3,
     "faster", None),
    ("rss_upload", "server peak RSS during the upload (MiB)", 0, "less", None),
    ("rss_pull", "server peak RSS during the fresh pull (MiB)", 0, "less", None),
    ("rss_poll", "server peak RSS while 16 devices poll, in one process (MiB)", 0, "less", 1),
    ("cpu_upload", "server CPU for the upload (s)", 2, "less", None),
    ("cpu_pull", "server CPU for the fresh pull (s)", 2, "less", None),
    ("ccpu_upload", "client CPU for the upload, whole process (s)", 2, "less", None),
    ("ccpu_pull", "client CPU for the fresh pull, whole process (s)", 2, "less", None),
    ("cpu_poll", "server CPU while 16 devices poll, in one process (s)", 1, "less", None),
    ("server_disk", "server disk after a clean shutdown (MB)", 1, "less", 1),
    ("client_disk", "client store on disk, device A (MB)", 1, "less", 1),
    ("fresh_client_disk", "client store on disk, device B after its pull (MB)", 1, "less", None),
]


def _lead(key, better, F):
    a, b = F["polysync"].get(key), F["pouchdb"].get(key)
    if not a or not b or not a[1] or not b[1]:
        return None
    return a[1] / b[1] if better == "more" else b[1] / a[1]


def target_text(better, k):
    if k is None:
        return ""
    if better == "less":
        return "≤ PouchDB's" if k == 1 else f"≤ 1/{k} of PouchDB's"
    if k == 1:
        return "lead kept (> 1×)"
    return f"≥ {k}× {'faster' if better == 'faster' else 'more'}"


def _met(lead, better, k):
    if k is None or lead is None:
        return None
    return lead >= k if better == "less" or k > 1 else lead > 1


def markdown(res, P):
    F = figures(res)
    runs = len(res.get("polysync", []))
    L = [f"### End to end against PouchDB — the polysync CLI + polysyncd vs a PouchDB 9 device "
         f"+ express-pouchdb (LevelDB), reference set, {runs} run(s) each, turn about", "",
         "Times are of the sync itself: the CLI's own `elapsedMs` (`polysync --json sync`), "
         "PouchDB's `PouchDB.sync` timed inside its Node process once both databases are open "
         "and the server reached; the rows \"whole process\" add each one's start, store "
         "opening and exit (Node's start and `require` included). Bytes: HTTP bodies (the "
         "CLI's `bytesSent` + `bytesReceived`; PouchDB's counted in its fetch). Each chat is "
         "one PouchDB document. Cells are min / median / max over the runs.", "",
         "| figure | polysync | PouchDB | polysync's lead | target | met |",
         "|---|---|---|---|---|---|"]
    for key, label, digits, better, k in ROWS:
        lead = _lead(key, better, F)
        L.append(f"| {label} | {R.fmt_tri(F['polysync'].get(key), digits)} | "
                 f"{R.fmt_tri(F['pouchdb'].get(key), digits)} | {R.fmt_ratio(lead)} | "
                 f"{target_text(better, k)} | {R.verdict(_met(lead, better, k))} |")
    pulled = [F[n]["pulled"] for n in ("polysync", "pouchdb")]
    own = [r.get("poll_own_ids") for r in res.get("polysync", [])]
    L.append("")
    L.append(f"Chats the fresh device holds after its pull: polysync "
             f"{R.fmt_tri(pulled[0], 0)}, PouchDB {R.fmt_tri(pulled[1], 0)}. Polling devices: "
             f"{P['e2e_poll_devices']} copies of device B (the CLI's given their own device "
             f"ids: {', '.join(str(x) for x in own)} of {P['e2e_poll_devices']} per run), "
             f"{P['e2e_poll_s']} s. \"In one process\": polysync's devices are "
             f"{P['e2e_poll_devices']} libpolysync handles, a thread each, in one process "
             f"(`psbench_poll`, bench/src/poll_devices.c), as PouchDB's share one Node "
             f"process; the server's RSS and CPU while polling are of these. \"Each sync a "
             f"polysync CLI process\": the same devices as loops of `polysync sync` processes, "
             f"each sync also paying a process start and the store's opening; PouchDB's "
             f"figure beside it is its one-process one.")
    for e in res.get("errors", []):
        L.append(f"\n- failed: {e}")
    return "\n".join(L)


def target_rows(res, T):
    """The PouchDB rows of the #15 targets table."""
    F = figures(res)
    rows = []
    for key, label, digits, better, k in ROWS:
        if k is None:
            continue
        lead = _lead(key, better, F)
        rows.append(dict(label="vs PouchDB, end to end (table below)", figure=label,
                         ps=F["polysync"].get(key), other=F["pouchdb"].get(key),
                         ratio=lead, target=target_text(better, k), met=_met(lead, better, k),
                         note="other column: PouchDB", digits=digits))
    return rows


# ---- the web client in Chromium ----------------------------------------------

def browser(run_module, build, work, P, ref_body):
    """The web client's first sync of the reference set in headless Chromium."""
    global R
    R = run_module
    import targets
    targets.R = run_module
    bdir = os.path.join(R.ROOT, "tests/browser")
    npm_ci(bdir)
    srv = targets.start_polysyncd(build, work, "polysyncd-browser",
                                  args=["--web-root", os.path.join(R.ROOT, "clients/web")])
    try:
        R.check(R.Driver(build).load(srv, "/sync", body=ref_body, count=1, timeout=900),
                "browser seed")
        r = subprocess.run(["node", os.path.join(HERE, "browser_first_sync.mjs"), srv.url,
                            str(P["browser_runs"])], capture_output=True, text=True,
                           timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"browser_first_sync.mjs exit {r.returncode}: "
                               f"{r.stderr.strip()[-400:]}")
        runs = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    finally:
        srv.stop()
        shutil.rmtree(srv.dir, ignore_errors=True)
    return {"runs": runs}


def browser_markdown(b, P):
    runs = b.get("runs", [])
    if not runs:
        return ""
    L = [f"### The web client's first sync in headless Chromium — reference set "
         f"({P['ref_chats']:,} chats × {P['ref_msgs']} messages)", "",
         "`clients/web/polysync.js` in a new browser context (empty IndexedDB), "
         "`db.sync()` timed in the page (tests/browser/harness.mjs); a figure, no target.", "",
         "| run | first sync (s) | chats listed | longest main-thread task (ms) | "
         "IndexedDB usage (MB) |", "|---|---|---|---|---|"]
    for i, r in enumerate(runs, 1):
        L.append(f"| {i} | {r['ms'] / 1e3:.2f} | {r['chats']:,} | {r['longestTaskMs']:.0f} | "
                 f"{r['storageBytes'] / 1e6:.1f} |")
    return "\n".join(L)
