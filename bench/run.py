#!/usr/bin/env python3
"""polysync benchmark: polysyncd against the server it replaces, side by side.

    python3 bench/run.py            # the full run (`make bench`, ~20 min)
    python3 bench/run.py --quick    # smaller sets, shorter runs (`make bench-quick`, ~3 min)
    python3 bench/run.py --only t15,pouch   # some parts: legacy, v2, t15, pouch, browser, pg
    python3 bench/run.py --profile  # perf profile of polysyncd in scenarios (a) and (b)

Writes bench/results/{full,quick}/results.md (+ results.json, *.png) and, for
the full run, the results block of docs/performance.md. The load driver and
the dataset generator are bench/src (psbench); the reference server is
bench/reference/server.js; issue #15's targets are bench/targets.py, the PouchDB
column and the browser figure bench/pouch_column.py. Everything runs on loopback,
bounded in time.
"""
import argparse
import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

import pg_column
import pouch_column
import targets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---- profiles --------------------------------------------------------------

FULL = dict(
    name="full",
    ref_chats=2000, ref_msgs=50, fresh_chats=20,
    single_repeats=5,                 # (a), (c): syncs timed, after one warm-up
    b_conns=16, b_duration=15, b_repeats=2, b_file_repeats=1, b_drain=90,
    b_sweep=[1, 2, 4, 8], b_sweep_duration=5,
    v2_sizes=[10, 1000, 10000], v2_msgs=50, big_msgs=5000,
    noop_runs=5, noop_count=300, noop_max_s=10, msg_runs=3, msg_count=30,
    e_conns=16, e_duration=15, e_repeats=2,
    e_sweep=[1, 2, 4, 8, 32, 64], e_sweep_duration=3,
    budget_s=9 * 60,                  # optional steps of (a)-(e) are skipped past this
    # issue #15 (bench/targets.py)
    t_upload_repeats=3, t_repeats=3, t_conc=16, t_conc_repeats=1, t_writer_uploads=2,
    t_reader_chats=1000, t_reader_alone_s=5, t_reader_max_s=120, t_reader_repeats=1,
    t_big_mib=256,
    # the PouchDB column (bench/pouch_column.py)
    e2e_runs=2, e2e_msg_runs=3, e2e_noop_runs=3, e2e_poll_devices=16, e2e_poll_s=10,
    # the web client in Chromium
    browser_runs=2,
)
QUICK = dict(
    name="quick",
    ref_chats=200, ref_msgs=50, fresh_chats=20,
    single_repeats=3,
    b_conns=16, b_duration=3, b_repeats=2, b_file_repeats=1, b_drain=20,
    b_sweep=[1, 4], b_sweep_duration=2,
    v2_sizes=[10, 100, 1000], v2_msgs=50, big_msgs=5000,
    noop_runs=3, noop_count=100, noop_max_s=3, msg_runs=3, msg_count=10,
    e_conns=16, e_duration=3, e_repeats=2,
    e_sweep=[1, 4, 32], e_sweep_duration=2,
    budget_s=100,
    t_upload_repeats=3, t_repeats=3, t_conc=16, t_conc_repeats=1, t_writer_uploads=2,
    t_reader_chats=100, t_reader_alone_s=2, t_reader_max_s=30, t_reader_repeats=1,
    t_big_mib=72,
    e2e_runs=1, e2e_msg_runs=2, e2e_noop_runs=2, e2e_poll_devices=16, e2e_poll_s=3,
    browser_runs=1,
)

T0 = time.monotonic()
BUDGET = [0.0]  # seconds after start past which optional repeats and sweeps are skipped
OTHER_CPU = []  # % of one core other processes used during each run longer than 0.5 s
OTHER_TOP = {}  # process -> highest % of one core it used during a run


def log(msg):
    print(f"[bench {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def elapsed():
    return time.monotonic() - T0


# ---- tools -----------------------------------------------------------------

def ensure_tools(build):
    if not shutil.which("node"):
        log("node is missing: scripts/install-deps.sh nodejs")
        subprocess.run([os.path.join(ROOT, "scripts/install-deps.sh"), "nodejs"], check=True)
    if not shutil.which("gnuplot"):
        log("gnuplot is missing: installing the Debian package gnuplot-nox")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                   "gnuplot-nox"], env=env)
        if r.returncode != 0:
            subprocess.run(sudo + ["apt-get", "update", "-q"], env=env)
            subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                   "gnuplot-nox"], env=env)
    for exe in ("polysyncd", "psbench", "polysync", "psbench_poll"):
        if not os.access(os.path.join(build, "bin", exe), os.X_OK):
            sys.exit(f"bench: {build}/bin/{exe} is missing: run `make build` first")


# ---- servers ---------------------------------------------------------------

class Server:
    """A server process we started; stopped by its pid only."""

    def __init__(self, name, argv, log_path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.proc = None
        self.url = None

    def start(self, timeout=30):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and b"\n" not in line:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
            elif self.proc.poll() is not None:
                break
        m = re.search(rb"http://(127\.0\.0\.1):(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {line[:200]!r} (log {self.log_path})")
        self.url = f"http://127.0.0.1:{int(m.group(2))}"
        self.proc.stdout.close()
        log(f"{self.name}: pid {self.proc.pid} on {self.url}")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "log", None):
            self.log.close()


def polysyncd(build, work, name, db):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    return Server(name, [os.path.join(build, "bin/polysyncd"), "--port", "0",
                         "--db", f"sqlite:{db}", "--max-body", "1G", "--threads", "2",
                         "--connection-timeout", "600"],
                  os.path.join(work, f"{name}.log")).start()


def reference(work, mode):
    store = os.path.join(work, "reference-chatStore.json")
    if os.path.exists(store):
        os.remove(store)
    return Server(f"reference-{mode}",
                  ["node", os.path.join(ROOT, "bench/reference/server.js"), "--port", "0",
                   "--mode", mode, "--file", store],
                  os.path.join(work, f"reference-{mode}.log")).start()


# ---- the driver ------------------------------------------------------------

def proc_times():
    """pid -> (name, CPU seconds) of every process now (utime + stime, all threads)."""
    out = {}
    tck = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                line = f.read()
        except OSError:
            continue
        name = line[line.index("(") + 1:line.rindex(")")]
        fields = line[line.rindex(")") + 2:].split()
        out[int(pid)] = (name, (int(fields[11]) + int(fields[12])) / tck)
    return out


def other_cpu(before, after, seconds, args):
    """CPU other processes took during a run, % of one core, and the top three: everything
    but the server under test, the driver and this script (kernel threads included:
    e.g. the writeback of the reference's file mode). Processes born and gone within the
    run are missed."""
    if seconds < 0.5:
        return None
    mine = {os.getpid()}
    if "--pid" in args:
        mine.add(int(args[args.index("--pid") + 1]))
    per = {}
    for pid, (name, t) in after.items():
        if pid in mine or name == "psbench":
            continue
        d = t - before.get(pid, (name, 0.0))[1]
        if d > 0:
            per[f"{name}[{pid}]"] = d
    total = sum(per.values()) / seconds * 100
    OTHER_CPU.append(total)
    for k, v in per.items():
        OTHER_TOP[k] = max(OTHER_TOP.get(k, 0), v / seconds * 100)
    top = sorted(per.items(), key=lambda kv: -kv[1])[:3]
    return total, [(k, round(v / seconds * 100)) for k, v in top]


class Driver:
    def __init__(self, build):
        self.exe = os.path.join(build, "bin/psbench")

    def run(self, args, timeout):
        before, t0 = proc_times(), time.monotonic()
        r = subprocess.run([self.exe] + [str(a) for a in args], capture_output=True, text=True,
                           timeout=timeout)
        others = other_cpu(before, proc_times(), time.monotonic() - t0, args)
        try:
            out = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"psbench {args[0]} failed ({r.returncode}): "
                               f"{r.stderr.strip()[:300]} {r.stdout[:300]}")
        out["exit_code"] = r.returncode
        if others:
            out["other_cpu_pct"], out["other_top"] = others
        return out

    def gen(self, path, chats, msgs, first=0, envelope=None, shape=None):
        args = ["gen", "--chats", chats, "--messages", msgs, "--first", first, "--out", path]
        if envelope:
            args += ["--envelope-device", envelope]
        if shape:
            args += ["--shape", shape]
        subprocess.run([self.exe] + [str(a) for a in args], check=True, timeout=300,
                       capture_output=True)
        return os.path.getsize(path)

    def load(self, srv, path, body=None, body_json=None, conns=1, duration=0, count=0,
             drain=120, timeout=None):
        args = ["load", "--url", srv.url, "--path", path, "--conns", conns, "--pid", srv.pid,
                "--drain", drain]
        args += ["--body", body] if body else ["--body-json", body_json]
        if duration:
            args += ["--duration", duration]
        if count:
            args += ["--count", count]
        if timeout is None:
            timeout = (duration + drain + 60) if duration else 900
        out = self.run(args, timeout)
        if not srv.alive():
            raise RuntimeError(f"{srv.name} died (exit {srv.proc.returncode}); "
                               f"see {srv.log_path}")
        return out


def check(out, what, allow_cut=False):
    """Raises on failed requests; syncs cut at the drain deadline are kept (and shown)
    when allow_cut, as they are a result too (latency > window + drain)."""
    s = out.get("sync") or out.get("requests") or {}
    if s.get("failed") or (out.get("aborted") and not allow_cut) or out.get("exit_code"):
        raise RuntimeError(f"{what}: {s.get('failed')} failed, {out.get('aborted')} cut: "
                           f"{out.get('first_error')}")
    return out


# ---- scenarios -------------------------------------------------------------

def repeated(what, n, fn, skipped):
    """fn() n times; after the first, only while the time budget lasts."""
    out = []
    for i in range(n):
        t = time.monotonic()
        out.append(fn())
        if i + 1 < n and elapsed() + (time.monotonic() - t) > BUDGET[0]:
            log(f"{what}: {n - i - 1} repeats skipped (time budget)")
            skipped.append(f"{what}: {n - i - 1} of {n} repeats")
            break
    return out


def legacy_server_runs(drv, srv, P, ref_body, fresh_body, b_repeats, res):
    """Seed, (a), (c), (b) for one server; results into res[name]."""
    r = res.setdefault(srv.name, {})
    skipped = r.setdefault("skipped", [])
    log(f"{srv.name}: first sync of the reference set into an empty server")
    r["seed"] = check(drv.load(srv, "/sync", body=ref_body, count=1), "seed")
    log(f"{srv.name}: (a) full-state sync x{P['single_repeats']} (+1 warm-up)")
    check(drv.load(srv, "/sync", body=ref_body, count=1), "warm-up")
    r["a"] = repeated(f"{srv.name} (a)", P["single_repeats"],
                      lambda: check(drv.load(srv, "/sync", body=ref_body, count=1), "(a)"),
                      skipped)
    log(f"{srv.name}: (c) fresh device x{P['single_repeats']}")
    r["c"] = repeated(f"{srv.name} (c)", P["single_repeats"],
                      lambda: check(drv.load(srv, "/sync", body=fresh_body, count=1), "(c)"),
                      skipped)
    r["b"] = []
    per_sync = statistics.median(x["sync"]["lat_ms"]["p50"] for x in r["a"]) / 1e3
    for i in range(b_repeats):
        cost = P["b_duration"] + min(P["b_drain"], P["b_conns"] * per_sync) + 5
        if i and elapsed() + cost > BUDGET[0]:
            log(f"{srv.name}: (b) run {i + 1} skipped (time budget)")
            skipped.append(f"{srv.name}: (b) run {i + 1}")
            continue
        log(f"{srv.name}: (b) {P['b_conns']} clients x {P['b_duration']} s, run {i + 1}")
        r["b"].append(check(drv.load(srv, "/sync", body=ref_body, conns=P["b_conns"],
                                     duration=P["b_duration"], drain=P["b_drain"]), "(b)",
                            allow_cut=True))


def legacy_sweep(drv, srv, P, ref_body, res):
    r = res[srv.name]
    r["b_sweep"] = {}
    for c in P["b_sweep"]:
        # a point costs its duration plus draining up to c syncs in flight
        per_sync = statistics.median(x["sync"]["lat_ms"]["p50"] for x in r["a"]) / 1e3
        cost = P["b_sweep_duration"] + c * per_sync * 1.5 + 5
        if elapsed() + cost > BUDGET[0]:
            log(f"{srv.name}: sweep point {c} skipped (time budget)")
            r.setdefault("skipped", []).append(f"{srv.name}: (b) sweep at {c} clients")
            continue
        log(f"{srv.name}: (b) sweep, {c} clients x {P['b_sweep_duration']} s")
        r["b_sweep"][c] = check(drv.load(srv, "/sync", body=ref_body, conns=c,
                                         duration=P["b_sweep_duration"], drain=P["b_drain"]),
                                "(b) sweep", allow_cut=True)


def v2_seed(drv, srv, n, P, d):
    """Fills a fresh server with n chats (+ the long chat) from device A; its cursor."""
    log(f"v2 store {n} chats x {P['v2_msgs']} + 1 x {P['big_msgs']}: seeding")
    seed = drv.run(["seed-v2", "--url", srv.url, "--device", "bench-a", "--chats", n,
                    "--messages", P["v2_msgs"], "--big-messages", P["big_msgs"],
                    "--batch", 200, "--pid", srv.pid], timeout=600)
    check(seed, "v2 seed")
    d["seed"] = seed
    return seed["cursor"]


def v2_messages(drv, srv, n, P, d, cursor):
    """(d) one new message pushed by A, pulled by B; returns A's cursor after."""
    log(f"v2 store {n}: (d) one new message, {P['msg_runs']} x {P['msg_count']}")
    d["msg"] = []
    first = 100000
    for _ in range(P["msg_runs"]):
        m = drv.run(["v2msg", "--url", srv.url, "--cursor", cursor, "--count",
                     P["msg_count"], "--first-msg", first, "--pid", srv.pid], timeout=300)
        if m.get("exit_code"):
            raise RuntimeError(f"(d) one message: accepted {m.get('accepted')}, "
                               f"delivered {m.get('delivered')} of {m.get('messages')}: "
                               f"{m.get('first_error')}")
        d["msg"].append(m)
        cursor = m["cursor"]
        first += P["msg_count"]
    return cursor


def v2_concurrency(drv, srv, n, P, v2, cursor):
    """(e): many connections of no-op syncs against the largest store."""
    noop = json.dumps({"deviceId": "bench-a", "cursor": cursor})
    v2["store"] = n
    v2["e"] = []
    for i in range(P["e_repeats"]):
        log(f"v2 store {n}: (e) {P['e_conns']} connections x {P['e_duration']} s, run {i + 1}")
        out = drv.load(srv, "/v2/sync", body_json=noop, conns=P["e_conns"],
                       duration=P["e_duration"], drain=10)
        # kept even with failed requests: they are a result (shown with the run), not an
        # abort of every later v2 figure
        v2["e"].append(out)
        if out["sync"].get("failed") or out.get("aborted"):
            v2.setdefault("e_failures", []).append(
                f"run {i + 1}: {out['sync'].get('failed')} failed, {out.get('aborted')} cut "
                f"({out.get('first_error', '')[:120]})")
    v2["e_sweep"] = {}
    for c in P["e_sweep"]:
        if elapsed() + P["e_sweep_duration"] + 5 > BUDGET[0]:
            v2.setdefault("skipped", []).append(f"(e) sweep at {c} connections")
            continue
        log(f"v2 store {n}: (e) sweep, {c} connections x {P['e_sweep_duration']} s")
        v2["e_sweep"][c] = check(drv.load(srv, "/v2/sync", body_json=noop, conns=c,
                                          duration=P["e_sweep_duration"], drain=10),
                                 "(e) sweep")


def v2_runs(drv, build, work, P, res):
    """(d) and (e). Every store gets its own server, all seeded first; the
    no-op runs then take turns across the stores (10, 1,000, 10,000, 10, ...)
    so that a passing disturbance of the machine (at 30 µs a sync, a few
    wake-ups land differently) falls on every size alike instead of on
    whichever store was measured at that moment."""
    v2 = res.setdefault("v2", {"sizes": {}})
    sizes = P["v2_sizes"]
    servers, cursors = {}, {}
    try:
        for n in sizes:
            servers[n] = polysyncd(build, work, f"polysyncd-v2-{n}", os.path.join(work, f"v2-{n}.db"))
            cursors[n] = v2_seed(drv, servers[n], n, P, v2["sizes"].setdefault(n, {}))
        noops = {n: json.dumps({"deviceId": "bench-a", "cursor": cursors[n]}) for n in sizes}
        for n in sizes:
            check(drv.load(servers[n], "/v2/sync", body_json=noops[n], count=50,
                           duration=P["noop_max_s"], drain=30), "warm-up")
            v2["sizes"][n]["noop"] = []
        log(f"v2 stores {', '.join(map(str, sizes))}: (d) no-op sync, "
            f"{P['noop_runs']} x {P['noop_count']} each (at most {P['noop_max_s']} s a run), "
            f"in turns")
        for _ in range(P["noop_runs"]):
            for n in sizes:
                v2["sizes"][n]["noop"].append(
                    check(drv.load(servers[n], "/v2/sync", body_json=noops[n],
                                   count=P["noop_count"], duration=P["noop_max_s"], drain=30),
                          "(d) no-op"))
        for n in sizes:
            cursors[n] = v2_messages(drv, servers[n], n, P, v2["sizes"][n], cursors[n])
        for n in sizes[:-1]:  # (e) runs alone on the machine
            servers.pop(n).stop()
        v2_concurrency(drv, servers[sizes[-1]], sizes[-1], P, v2, cursors[sizes[-1]])
    finally:
        for srv in servers.values():
            srv.stop()


# ---- summaries -------------------------------------------------------------

def tri(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    return (v[0], statistics.median(v), v[-1])


def fmt_num(x, digits):
    if x is None:
        return "–"
    if abs(x) >= 1000 and digits <= 1:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def fmt_tri(t, digits=2):
    if not t:
        return "–"
    lo, med, hi = t
    if lo == hi:
        return f"**{fmt_num(med, digits)}**"
    return f"{fmt_num(lo, digits)} / **{fmt_num(med, digits)}** / {fmt_num(hi, digits)}"


def ratio(a, b):
    if not a or not b:
        return None
    return a / b


def fmt_ratio(x):
    return "–" if x is None else (f"{x:,.1f}×" if x >= 1 else f"{x:.2f}×")


def verdict(ok):
    return "–" if ok is None else ("**yes**" if ok else "**no**")


def lat_s(runs, key="p50", kind="sync"):
    return tri(r[kind]["lat_ms"][key] / 1e3 for r in runs)


def median_run(runs):
    """The run with the median throughput."""
    k = sorted(runs, key=lambda x: x["sync"]["throughput_rps"])
    return k[len(k) // 2]


def summarize(res, P, meta):
    """Turns the raw runs into the figures of the table (also kept in results.json)."""
    S = {}
    names = [n for n in ("polysyncd", "reference-memory", "reference-file") if n in res]
    for n in names:
        r = res[n]
        s = S[n] = {}
        if "a" in r:
            s["a_time"] = lat_s(r["a"])
            s["a_body"] = (r["a"][0]["sync"]["per_request"]["body_out"],
                           r["a"][0]["sync"]["per_request"]["body_in"])
            s["a_wire"] = (r["a"][0]["sync"]["per_request"]["wire_out"],
                           r["a"][0]["sync"]["per_request"]["wire_in"])
            s["a_cpu"] = tri(x["server"]["cpu_s"] for x in r["a"])
            s["a_rss"] = tri(x["server"]["peak_rss_kib"] / 1024 for x in r["a"])
            s["seed_time"] = r["seed"]["sync"]["lat_ms"]["p50"] / 1e3
        if "c" in r:
            s["c_time"] = lat_s(r["c"])
            s["c_body"] = (r["c"][0]["sync"]["per_request"]["body_out"],
                           r["c"][0]["sync"]["per_request"]["body_in"])
            s["c_cpu"] = tri(x["server"]["cpu_s"] for x in r["c"])
        if r.get("b"):
            s["b_rps"] = tri(x["sync"]["throughput_rps"] for x in r["b"])
            s["b_p50"] = lat_s(r["b"])
            s["b_p99"] = lat_s(r["b"], "p99")
            s["b_cut"] = sum(x.get("aborted", 0) for x in r["b"])
            s["b_rss"] = tri(x["server"]["peak_rss_kib"] / 1024 for x in r["b"])
            s["b_anon"] = tri(x["server"].get("sampled_peak_anon_kib", 0) / 1024 for x in r["b"])
            s["b_file"] = tri(x["server"].get("sampled_peak_file_kib", 0) / 1024 for x in r["b"])
            s["b_other"] = tri(x.get("other_cpu_pct", 0) for x in r["b"])
            s["b_cpu_per_sync"] = tri(x["server"]["cpu_s"] / max(1, x["sync"]["requests"])
                                      for x in r["b"])
            s["b_driver_cpu"] = tri(x["driver_cpu_s"] / max(1e-9, x["elapsed_s"]) * 100
                                    for x in r["b"])
            s["b_server_cpu"] = tri(x["server"]["cpu_s"] / max(1e-9, x["elapsed_s"]) * 100
                                    for x in r["b"])
            s["b_threads"] = median_run(r["b"])["server"].get("thread_cpu_s", [])
            s["b_elapsed"] = median_run(r["b"])["elapsed_s"]
    v2 = res.get("v2")
    if v2:
        S["v2"] = {}
        for n, d in v2["sizes"].items():
            if "noop" not in d:
                continue
            m = {}
            m["seed_s"] = d["seed"]["elapsed_s"]
            m["seed_mb"] = d["seed"]["requests"]["body_out"] / 1e6
            m["noop_p50"] = tri(x["sync"]["lat_ms"]["p50"] for x in d["noop"])
            m["other"] = max([x.get("other_cpu_pct", 0) for x in d["noop"]] +
                             [x.get("other_cpu_pct", 0) for x in d.get("msg", [])])
            m["noop_p99"] = tri(x["sync"]["lat_ms"]["p99"] for x in d["noop"])
            m["noop_body"] = (d["noop"][0]["sync"]["per_request"]["body_out"],
                              max(x["sync"]["per_request"]["body_in"] for x in d["noop"]))
            m["noop_wire"] = (d["noop"][0]["sync"]["per_request"]["wire_out"],
                              max(x["sync"]["per_request"]["wire_in"] for x in d["noop"]))
            if d.get("msg"):
                m["push_p50"] = tri(x["push"]["lat_ms"]["p50"] for x in d["msg"])
                m["pull_p50"] = tri(x["pull"]["lat_ms"]["p50"] for x in d["msg"])
                m["msg_bytes"] = statistics.mean(x["message_bytes"] for x in d["msg"])
                m["push_body"] = (max(x["push"]["per_request"]["body_out"] for x in d["msg"]),
                                  max(x["push"]["per_request"]["body_in"] for x in d["msg"]))
                m["pull_body"] = (max(x["pull"]["per_request"]["body_out"] for x in d["msg"]),
                                  max(x["pull"]["per_request"]["body_in"] for x in d["msg"]))
            S["v2"][n] = m
        if v2.get("e"):
            S["v2"]["e_rps"] = tri(x["sync"]["throughput_rps"] for x in v2["e"])
            S["v2"]["e_failures"] = v2.get("e_failures", [])
            S["v2"]["e_p50"] = tri(x["sync"]["lat_ms"]["p50"] for x in v2["e"])
            S["v2"]["e_p99"] = tri(x["sync"]["lat_ms"]["p99"] for x in v2["e"])
            S["v2"]["e_rss"] = tri(x["server"]["peak_rss_kib"] / 1024 for x in v2["e"])
            S["v2"]["e_anon"] = tri(x["server"].get("sampled_peak_anon_kib", 0) / 1024
                                    for x in v2["e"])
            S["v2"]["e_other"] = tri(x.get("other_cpu_pct", 0) for x in v2["e"])
            S["v2"]["e_server_cpu"] = tri(x["server"]["cpu_s"] / x["elapsed_s"] * 100
                                          for x in v2["e"])
            S["v2"]["e_driver_cpu"] = tri(x["driver_cpu_s"] / x["elapsed_s"] * 100
                                          for x in v2["e"])
            mr = median_run(v2["e"])
            S["v2"]["e_threads"] = [t / mr["elapsed_s"] * 100
                                    for t in mr["server"].get("thread_cpu_s", [])]
    return S


PLOTS_HEAD = "### Plots"


def markdown(res, S, P, meta, plots, errors):
    L = []
    add = L.append
    ps, rm, rf = S.get("polysyncd", {}), S.get("reference-memory", {}), S.get("reference-file", {})
    add(f"Run `{meta['profile']}` of {meta['date']} on {meta['machine']}; commit "
        f"`{meta['commit']}`{' (with uncommitted changes)' if meta['dirty'] else ''}; "
        f"{meta['node']}; took {meta['took_s']:.0f} s.")
    add("")
    add(f"Load: one `psbench` driver thread (epoll, keep-alive HTTP/1.1, loopback) and the "
        f"server share the machine's {meta['cpus']} cores, unpinned: polysyncd runs "
        f"`--threads 2`, Node is single-threaded. Cells are **min / median / max** "
        f"of repeated runs; a bold number alone is a single run.")
    add("")
    oc = meta.get("other_cpu_pct")
    if oc:
        warn = (" **The machine was shared with other work during this run: the figures are "
                "lower than on a quiet machine.**" if oc[1] > 15 else "")
        top = ", ".join(f"`{k}` up to {v} %" for k, v in meta.get("other_top", []))
        add(f"Other processes used {fmt_tri(oc, 0)} % of one core during the measured runs "
            f"{'(' + top + ') ' if top else ''}"
            f"({meta['background_at_start_pct']:.0f} % at the start).{warn}")
        add("")
    ref_mb = meta["ref_body_bytes"] / 1e6
    add(f"### Legacy full-state sync — reference set: {P['ref_chats']:,} chats × "
        f"{P['ref_msgs']} messages, {ref_mb:.1f} MB as a `/sync` body")
    add("")
    add("| scenario | figure | polysyncd | reference (memory) | reference (file) | "
        "polysyncd vs reference (memory), medians | target | met |")
    add("|---|---|---|---|---|---|---|---|")

    def med(t):
        return t[1] if t else None

    def row(scn, fig, key, digits=2, rat=None, target="", met=None, scale=1):
        vals = []
        for s in (ps, rm, rf):
            t = s.get(key)
            vals.append(fmt_tri(tuple(x * scale for x in t) if t else None, digits))
        add(f"| {scn} | {fig} | {vals[0]} | {vals[1]} | {vals[2]} | {fmt_ratio(rat)} | "
            f"{target} | {verdict(met)} |")

    ra = ratio(med(rm.get("a_time")), med(ps.get("a_time")))
    row(f"(a) one sync, server already holds the set ({P['single_repeats']} syncs)",
        "time (s)", "a_time", 3, ra, "≥ 10× faster", None if ra is None else ra >= 10)
    row("", "server CPU per sync (s)", "a_cpu", 2)
    if ps.get("a_body") or rm.get("a_body"):
        cells = [f"{s['a_body'][0]:,.0f} / {s['a_body'][1]:,.0f}" if s.get("a_body") else "–"
                 for s in (ps, rm, rf)]
        add(f"|  | body bytes up / down | {cells[0]} | {cells[1]} | {cells[2]} |  |  |  |")
        cells = [f"{s['a_wire'][0]:,.0f} / {s['a_wire'][1]:,.0f}" if s.get("a_wire") else "–"
                 for s in (ps, rm, rf)]
        add(f"|  | wire bytes up / down (HTTP headers included) | {cells[0]} | {cells[1]} | "
            f"{cells[2]} |  |  |  |")
    rb = ratio(med(ps.get("b_rps")), med(rm.get("b_rps")))
    bn = f"(b) {P['b_conns']} clients repeating (a) for {P['b_duration']} s"
    row(bn + f" ({P['b_repeats']} runs; file: {P['b_file_repeats']})", "syncs/s", "b_rps", 2,
        rb, "≥ 10×", None if rb is None else rb >= 10)
    row("", "latency p50 (s)", "b_p50", 2)
    if any(s.get("b_cut") for s in (ps, rm, rf)):
        cells = [str(s.get("b_cut", "–")) for s in (ps, rm, rf)]
        add(f"|  | syncs cut after window + {P['b_drain']} s drain (not in the latencies) | "
            f"{cells[0]} | {cells[1]} | {cells[2]} |  |  |  |")
    p99 = ps.get("b_p99")
    row("", "latency p99 (s)", "b_p99", 2, None, "< 2 s", None if not p99 else p99[1] < 2)
    row("", "server CPU per sync (s)", "b_cpu_per_sync", 2)
    row("", "server CPU (% of one core)", "b_server_cpu", 0)
    row("", "driver CPU (% of one core)", "b_driver_cpu", 0)
    if any(s.get("b_threads") for s in (ps, rm, rf)):
        cells = [", ".join(f"{t / s['b_elapsed'] * 100:.0f}" for t in s["b_threads"][:4])
                 if s.get("b_threads") else "–" for s in (ps, rm, rf)]
        add(f"|  | busiest server threads (% of one core, median run) | {cells[0]} | "
            f"{cells[1]} | {cells[2]} |  |  |  |")
    rss = ps.get("b_rss")
    rr = ratio(med(rm.get("b_rss")), med(rss))
    row("(f) peak server RSS during (b)", "MiB", "b_rss", 0, rr, "≤ 256 MiB",
        None if not rss else rss[2] <= 256)
    row("", "of which anonymous memory, sampled peak (MiB)", "b_anon", 0)
    row("", "of which mapped files (e.g. an mmap'ed database), sampled peak (MiB)", "b_file", 0)
    row("", "other processes during (b) (% of one core)", "b_other", 0)
    rc = ratio(med(rm.get("c_time")), med(ps.get("c_time")))
    row(f"(c) fresh device: sends {P['fresh_chats']} chats, receives the other "
        f"{P['ref_chats'] - P['fresh_chats']:,} ({P['single_repeats']} syncs)", "time (s)",
        "c_time", 3, rc, "(#15 table: seed shape)", None)
    if ps.get("c_body") or rm.get("c_body"):
        cells = [f"{s['c_body'][0]:,.0f} / {s['c_body'][1]:,.0f}" if s.get("c_body") else "–"
                 for s in (ps, rm, rf)]
        add(f"|  | body bytes up / down | {cells[0]} | {cells[1]} | {cells[2]} |  |  |  |")
    row("", "server CPU per sync (s)", "c_cpu", 2)
    seeds = [f"{s['seed_time']:.2f}" if "seed_time" in s else "–" for s in (ps, rm, rf)]
    add(f"| first sync of the set into an empty server (1 sync) | time (s) | {seeds[0]} | "
        f"{seeds[1]} | {seeds[2]} |  |  |  |")
    add("")

    v2 = S.get("v2", {})
    sizes = [n for n in P["v2_sizes"] if n in v2]
    if sizes:
        add(f"### v2 incremental sync (polysyncd only; the reference has no v2) — store: "
            f"N chats × {P['v2_msgs']} messages + one chat of {P['big_msgs']:,} messages")
        add("")
        add(f"(d) {P['noop_runs']} runs × {P['noop_count']} no-op syncs (a run stops at "
            f"{P['noop_max_s']} s if not done) and "
            f"{P['msg_runs']} runs × {P['msg_count']} one-message syncs per store, one "
            f"connection; the stores are all seeded first and their no-op runs take turns "
            f"(smallest to largest, and again), so a passing disturbance of the machine falls on "
            f"every size alike. The new message goes into the {P['big_msgs']:,}-message chat from "
            f"device A (push); device B then pulls it. Latencies are per-run medians, in ms; "
            f"bytes are request / answer bodies.")
        add("")
        add("| chats stored | seeding (s, MB) | no-op p50 (ms) | no-op p99 (ms) | no-op bytes "
            "up / down | push p50 (ms) | push bytes up / down | pull p50 (ms) | pull bytes "
            "up / down | message (bytes) | other processes, worst run (% of one core) |")
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for n in sizes:
            m = v2[n]
            pb = m.get("push_body", (None, None))
            lb = m.get("pull_body", (None, None))
            add(f"| {n:,} | {m['seed_s']:.1f} s, {m['seed_mb']:.0f} MB | {fmt_tri(m['noop_p50'], 3)} | "
                f"{fmt_tri(m['noop_p99'], 3)} | {m['noop_body'][0]:.0f} / {m['noop_body'][1]:.0f} | "
                f"{fmt_tri(m.get('push_p50'), 3)} | {fmt_num(pb[0], 0)} / {fmt_num(pb[1], 0)} | "
                f"{fmt_tri(m.get('pull_p50'), 3)} | {fmt_num(lb[0], 0)} / {fmt_num(lb[1], 0)} | "
                f"{fmt_num(m.get('msg_bytes'), 0)} | {m.get('other', 0):.0f} |")
        add("")
        add("| target | measured | met |")
        add("|---|---|---|")
        small, big = v2[sizes[0]], v2[sizes[-1]]
        rn = ratio(med(big["noop_p50"]), med(small["noop_p50"]))
        add(f"| (d) no-op sync with {sizes[-1]:,} chats within 1.5× of {sizes[0]:,} chats "
            f"(median p50) | {fmt_ratio(rn)} | {verdict(None if rn is None else rn <= 1.5)} |")
        if "push_p50" in big and "push_p50" in small:
            rp = ratio(med(big["push_p50"]), med(small["push_p50"]))
            add(f"| (d) one-message sync with {sizes[-1]:,} chats vs {sizes[0]:,} "
                f"(median p50, no target) | {fmt_ratio(rp)} | – |")
        nb = big["noop_body"]
        add(f"| (d) no-op sync, {sizes[-1]:,} chats: < 500 body bytes each way | "
            f"{nb[0]:.0f} up / {nb[1]:.0f} down (on the wire, headers included: "
            f"{big['noop_wire'][0]:.0f} / {big['noop_wire'][1]:.0f}) | {verdict(max(nb) < 500)} |")
        if "push_body" in big:
            lim = big["msg_bytes"] + 500
            worst = max(big["push_body"] + big["pull_body"])
            add(f"| (d) one message ({big['msg_bytes']:.0f} B) into the {P['big_msgs']:,}-message "
                f"chat: < message + 500 B each way | push {big['push_body'][0]:.0f} up / "
                f"{big['push_body'][1]:.0f} down; pull {big['pull_body'][0]:.0f} up / "
                f"{big['pull_body'][1]:.0f} down | {verdict(worst < lim)} |")
        if "e_rps" in v2:
            e = v2
            add(f"| (e) {P['e_conns']} connections of no-op syncs for {P['e_duration']} s "
                f"({P['e_repeats']} runs, {res['v2']['store']:,}-chat store): ≥ 50,000 syncs/s | "
                f"{fmt_tri(e['e_rps'], 0)} syncs/s | {verdict(e['e_rps'][1] >= 50000)} |")
            add(f"| (e) p99 < 5 ms | {fmt_tri(e['e_p99'], 2)} ms (p50 {fmt_tri(e['e_p50'], 2)}) | "
                f"{verdict(e['e_p99'][1] < 5)} |")
            if res["v2"].get("e_failures"):
                add(f"| (e) every request answered | failed or cut: "
                    f"{'; '.join(res['v2']['e_failures'])} | **no** |")
            add(f"| (e) CPU, % of one core (2 cores = 200 %) | server "
                f"{fmt_tri(e['e_server_cpu'], 0)}; driver {fmt_tri(e['e_driver_cpu'], 0)} | – |")
            add(f"| (e) busiest server threads, % of one core (median run) | "
                f"{', '.join(f'{t:.0f}' for t in e.get('e_threads', [])[:4]) or '–'} | – |")
            add(f"| (e) peak server RSS (of which anonymous memory) | {fmt_tri(e['e_rss'], 0)} MiB "
                f"({fmt_tri(e.get('e_anon'), 0)} MiB) | – |")
            add(f"| (e) other processes during the runs, % of one core | "
                f"{fmt_tri(e.get('e_other'), 0)} | – |")
        add("")
    if plots:
        add(PLOTS_HEAD)
        add("")
        for title, fname in plots:
            add(f"![{title}]({fname})")
            add("")
    skipped = [s for n in res.values() if isinstance(n, dict) for s in n.get("skipped", [])]
    if skipped or errors:
        add("### Not measured in this run")
        add("")
        for s in skipped:
            add(f"- skipped for the time budget: {s}")
        for e in errors:
            add(f"- failed: {e}")
        add("")
    return "\n".join(L)


# ---- plots -----------------------------------------------------------------

def plots(res, S, P, outdir, work):
    gp = shutil.which("gnuplot")
    if not gp:
        log("gnuplot missing: no plots")
        return []
    term = "pngcairo size 900,560 font 'sans,10'"
    made = []

    def run(script, name, title):
        path = os.path.join(work, name + ".gp")
        with open(path, "w") as f:
            f.write(f"set terminal {term}\nset output '{os.path.join(outdir, name)}.png'\n")
            f.write("set grid\nset key top left\n" + script)
        r = subprocess.run([gp, path], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            made.append((title, name + ".png"))
        else:
            log(f"gnuplot {name}: {r.stderr.strip()[:300]}")

    v2 = S.get("v2", {})
    sizes = [n for n in P["v2_sizes"] if n in v2]
    if sizes:
        dat = os.path.join(work, "latency-vs-store.dat")
        with open(dat, "w") as f:
            f.write("# chats noop_min noop_med noop_max push_min push_med push_max pull_min "
                    "pull_med pull_max\n")
            for n in sizes:
                m = v2[n]
                cols = [n]
                for k in ("noop_p50", "push_p50", "pull_p50"):
                    cols += list(m.get(k) or (float("nan"),) * 3)
                f.write(" ".join(str(c) for c in cols) + "\n")
        run(f"""set title 'v2 sync latency against store size (polysyncd, one connection)'
set xlabel 'chats stored (x {P["v2_msgs"]} messages, + one {P["big_msgs"]}-message chat)'
set ylabel 'latency, median of per-run p50 (ms); bars: min-max of runs'
set logscale x
set yrange [0:*]
plot '{dat}' using 1:3:2:4 with yerrorlines lw 2 title 'no-op sync', \\
     '' using 1:6:5:7 with yerrorlines lw 2 title 'push one message into the long chat', \\
     '' using 1:9:8:10 with yerrorlines lw 2 title 'pull of that message by another device'
""", "latency-vs-store", "v2 latency against store size")

    # throughput and RSS against concurrency
    def series(name):
        r = res.get(name, {})
        pts = {}
        for c, x in r.get("b_sweep", {}).items():
            pts[int(c)] = (x["sync"]["throughput_rps"], x["server"]["peak_rss_kib"] / 1024,
                           x["sync"]["lat_ms"]["p99"] / 1e3)
        if r.get("b"):
            s = S[name]
            pts[P["b_conns"]] = (s["b_rps"][1], s["b_rss"][1], s["b_p99"][1])
        return sorted(pts.items())

    legacy = {n: series(n) for n in ("polysyncd", "reference-memory") if n in res}
    e_pts = {}
    v2r = res.get("v2", {})
    for c, x in v2r.get("e_sweep", {}).items():
        e_pts[int(c)] = (x["sync"]["throughput_rps"], x["server"]["peak_rss_kib"] / 1024,
                         x["sync"]["lat_ms"]["p99"])
    if v2.get("e_rps"):
        e_pts[P["e_conns"]] = (v2["e_rps"][1], v2["e_rss"][1], v2["e_p99"][1])
    e_pts = sorted(e_pts.items())
    files = {}
    for n, pts in list(legacy.items()) + [("v2", e_pts)]:
        files[n] = os.path.join(work, f"conc-{n}.dat")
        with open(files[n], "w") as f:
            f.write("# conns syncs_per_s peak_rss_mib p99\n")
            for c, (t, m, p) in pts:
                f.write(f"{c} {t} {m} {p}\n")
    if any(legacy.values()) or e_pts:
        plot_l = []
        for n, label in (("polysyncd", "polysyncd"), ("reference-memory", "reference (memory)")):
            if legacy.get(n):
                plot_l.append(f"'{files[n]}' using 1:2 with linespoints lw 2 title '{label}'")
        script = "set multiplot layout 1,2\nset logscale x 2\n"
        if plot_l:
            script += ("set title 'legacy full-state sync (reference set)'\n"
                       "set xlabel 'concurrent clients'\nset ylabel 'syncs/s'\nset logscale y\n"
                       "plot " + ", ".join(plot_l) + "\nunset logscale y\n")
        if e_pts:
            script += ("set title 'v2 no-op sync'\nset xlabel 'connections'\n"
                       "set ylabel 'syncs/s'\nset yrange [0:*]\n"
                       f"plot '{files['v2']}' using 1:2 with linespoints lw 2 title 'polysyncd'\n")
        script += "unset multiplot\n"
        run(script, "throughput-vs-concurrency", "throughput against concurrency")
        plot_r = []
        for n, label in (("polysyncd", "polysyncd, legacy full-state syncs"),
                         ("reference-memory", "reference (memory), legacy full-state syncs")):
            if legacy.get(n):
                plot_r.append(f"'{files[n]}' using 1:3 with linespoints lw 2 title '{label}'")
        if e_pts:
            plot_r.append(f"'{files['v2']}' using 1:3 with linespoints lw 2 "
                          "title 'polysyncd, v2 no-op syncs'")
        run("set title 'peak server RSS against concurrency'\nset logscale x 2\n"
            "set logscale y\nset xlabel 'concurrent clients'\nset ylabel 'peak RSS (MiB)'\n"
            "plot " + ", ".join(plot_r) + "\n", "rss-vs-concurrency",
            "peak RSS against concurrency")
    return made


# ---- machine ---------------------------------------------------------------

def background_pct(seconds=2.0):
    """% of one core all other processes used over the next `seconds`."""
    before = proc_times()
    time.sleep(seconds)
    after = proc_times()
    me = os.getpid()
    return sum(max(0.0, t - before.get(pid, (n, 0.0))[1])
               for pid, (n, t) in after.items() if pid != me) / seconds * 100


def wait_quiet(limit_s):
    """Waits (at most limit_s) until other processes use < 25 % of one core."""
    pct = background_pct()
    waited = 0.0
    while pct >= 25 and waited < limit_s:
        log(f"machine busy ({pct:.0f} % of one core used by others): waiting")
        time.sleep(3)
        waited += 5
        pct = background_pct()
    return pct


def source_dir(build):
    """The source tree the build was configured from (it may not be this one)."""
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_HOME_DIRECTORY:"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return ROOT


def machine_meta(build, profile):
    src = source_dir(build)

    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=src,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 1024 / 1024
    osname = ""
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            m = re.search(r'PRETTY_NAME="([^"]+)"', f.read())
            osname = m.group(1) if m else ""
    # the server's own sources: uncommitted changes there make the commit id not the whole story
    dirty = bool(sh(["git", "status", "--porcelain", "--", "src", "include"]))
    return {
        "profile": profile,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {osname}, "
                   f"Linux {platform.release()}",
        "cpus": os.cpu_count(),
        "commit": sh(["git", "rev-parse", "--short", "HEAD"]) or "unknown",
        "dirty": dirty,
        "node": "Node " + sh(["node", "--version"]),
        "polysyncd": sh([os.path.join(build, "bin/polysyncd"), "--version"]),
        "source": src,
    }


# ---- docs ------------------------------------------------------------------

BEGIN, END = "<!-- BEGIN bench results (bench/run.py writes this block) -->", \
    "<!-- END bench results -->"


def update_doc(md_block, profile_dir, begin=None, end=None):
    begin, end = begin or BEGIN, end or END
    path = os.path.join(ROOT, "docs/performance.md")
    if not os.path.exists(path):
        log("docs/performance.md missing: not updated")
        return
    with open(path) as f:
        doc = f.read()
    if begin not in doc or end not in doc:
        log(f"docs/performance.md has no {begin!r} marker: not updated")
        return
    rel = os.path.relpath(profile_dir, os.path.join(ROOT, "docs"))
    block = re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({rel}/{m.group(1)})", md_block)
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + begin + "\n" + block.rstrip() + "\n" + end + tail)
    log("docs/performance.md updated")


# ---- profile mode ----------------------------------------------------------

def profile_one(drv, srv, work, outdir, name, path, load_kw):
    """perf record (dwarf call graphs) of the server during one load; report to perf-NAME.txt."""
    data = os.path.join(work, f"perf-{name}.data")
    rec = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384",
                            "-o", data, "-p", str(srv.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    out = drv.load(srv, path, **load_kw)
    rec.send_signal(signal.SIGINT)
    rec.wait(timeout=120)

    def report(*extra):
        return subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "symbol"] +
                              list(extra), capture_output=True, text=True, timeout=600).stdout
    with open(os.path.join(outdir, f"perf-{name}.txt"), "w") as f:
        lat = out["sync"]["lat_ms"]
        unit, k = ("ms", 1) if lat["p50"] < 100 else ("s", 1e3)
        f.write(f"# scenario ({name}): {out['sync']['requests']} syncs, latency p50 "
                f"{lat['p50'] / k:.2f} {unit}, p99 {lat['p99'] / k:.2f} {unit}; server CPU "
                f"{out['server']['cpu_s']:.1f} s\n")
        f.write("# ==== self time (--no-children) ====\n")
        f.write(report("--no-children", "-g", "none", "--percent-limit", "0.5"))
        f.write("\n# ==== inclusive time (--children) ====\n")
        f.write(report("--children", "-g", "none", "--percent-limit", "2"))
        f.write("\n# ==== callers of the top self-time symbols ====\n")
        f.write(report("--no-children", "-g", "caller,2,callee,function,percent",
                       "--percent-limit", "2"))
    log(f"profile ({name}) written to bench/results/profile/perf-{name}.txt")


def profile_mode(build, work, drv, P, ref_body, meta):
    """perf record on polysyncd during (a), (b) and (e); reports to bench/results/profile/."""
    if not shutil.which("perf"):
        sys.exit("bench --profile: perf is missing (Debian: linux-perf)")
    outdir = os.path.join(ROOT, "bench/results/profile")
    os.makedirs(outdir, exist_ok=True)
    srv = polysyncd(build, work, "polysyncd-profile", os.path.join(work, "profile.db"))
    try:
        check(drv.load(srv, "/sync", body=ref_body, count=1), "seed")
        profile_one(drv, srv, work, outdir, "a", "/sync", dict(body=ref_body, count=10))
        profile_one(drv, srv, work, outdir, "b", "/sync",
                    dict(body=ref_body, conns=P["b_conns"], duration=15, drain=P["b_drain"]))
    finally:
        srv.stop()
    srv = polysyncd(build, work, "polysyncd-profile-v2", os.path.join(work, "profile-v2.db"))
    try:
        seed = check(drv.run(["seed-v2", "--url", srv.url, "--device", "bench-a", "--chats", 1000,
                              "--messages", P["v2_msgs"], "--big-messages", P["big_msgs"]],
                             timeout=600), "v2 seed")
        noop = json.dumps({"deviceId": "bench-a", "cursor": seed["cursor"]})
        profile_one(drv, srv, work, outdir, "e", "/v2/sync",
                    dict(body_json=noop, conns=P["e_conns"], duration=10, drain=10))
    finally:
        srv.stop()
    md = hotspots_md(outdir, P, meta)
    with open(os.path.join(outdir, "hotspots.md"), "w") as f:
        f.write(md + "\n")
    update_doc(md, outdir, HOT_BEGIN, HOT_END)
    print(md)


HOT_BEGIN = "<!-- BEGIN hot spots (bench/run.py --profile writes this block) -->"
HOT_END = "<!-- END hot spots -->"
BORING = re.compile(r"^(0x[0-9a-f]+|[0-9a-f]{8,}|start_thread|clone3|entry_SYSCALL.*|do_syscall_64|"
                    r"MHD_.*|on_request|run_handler|__libc_start.*|main)$")


def parse_perf(text):
    """(self, inclusive) lists of (percent, symbol, kernel?) from bench's perf report."""
    part = {"self": [], "incl": []}
    cur = None
    for line in text.splitlines():
        if "==== self time" in line:
            cur = "self"
        elif "==== inclusive time" in line:
            cur = "incl"
        elif "==== callers" in line:
            cur = None
        elif cur:
            m = (re.match(r"^\s+([\d.]+)%\s+\[(.)\]\s+(.+?)\s+-\s+-", line) if cur == "self" else
                 re.match(r"^\s+([\d.]+)%\s+[\d.]+%\s+\[(.)\]\s+(.+?)\s+-\s+-", line))
            if m:
                sym = m.group(3).replace(" (inlined)", "").strip()
                if not BORING.match(sym) and all(sym != x[1] for x in part[cur]):
                    part[cur].append((float(m.group(1)), sym, m.group(2) == "k"))
    return part["self"], part["incl"]


def hotspots_md(outdir, P, meta):
    L = [f"perf (`perf record -F 499 --call-graph dwarf`, on-CPU samples of polysyncd only) "
         f"on {meta['date']}, commit `{meta['commit']}`"
         f"{' (with uncommitted changes)' if meta['dirty'] else ''}; reference set "
         f"{P['ref_chats']:,} chats × {P['ref_msgs']} messages. Raw reports with call chains: "
         f"`bench/results/profile/perf-a.txt`, `perf-b.txt`, `perf-e.txt`.", ""]
    for name, title in (("a", "(a) one full-state sync, 10 in a row"),
                        ("b", f"(b) {P['b_conns']} clients for 15 s"),
                        ("e", f"(e) {P['e_conns']} connections of v2 no-op syncs for 10 s "
                              f"(1,000-chat store)")):
        path = os.path.join(outdir, f"perf-{name}.txt")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            text = f.read()
        head = text.splitlines()[0].lstrip("# ").split(": ", 1)[-1]
        self_, incl = parse_perf(text)
        L.append(f"**{title}** — {head}")
        L.append("")
        L.append("| # | self time | function | | inclusive | function (with what it calls) |")
        L.append("|---|---|---|---|---|---|")
        incl = [x for x in incl if not x[2]][:15]
        self_ = self_[:15]
        for i in range(max(len(self_), len(incl))):
            a = self_[i] if i < len(self_) else None
            b = incl[i] if i < len(incl) else None
            L.append(f"| {i + 1} | {f'{a[0]:.1f} %' if a else ''} | "
                     f"{('`' + a[1] + '`' + (' (kernel)' if a[2] else '')) if a else ''} | | "
                     f"{f'{b[0]:.1f} %' if b else ''} | {('`' + b[1] + '`') if b else ''} |")
        L.append("")
    return "\n".join(L)


# ---- main ------------------------------------------------------------------

SECTIONS = ("legacy", "v2", "t15", "pouch", "browser", "pg")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sets, shorter runs (~3 min)")
    ap.add_argument("--profile", action="store_true", help="perf profile of (a) and (b)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/performance.md")
    ap.add_argument("--no-pg", action="store_true", help="without the PostgreSQL column")
    ap.add_argument("--only", metavar="LIST", default=",".join(SECTIONS),
                    help=f"run only these parts, comma-separated (default: all of "
                         f"{','.join(SECTIONS)}); a part run alone never refreshes the docs")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="first wait up to S seconds for other processes to go quiet")
    a = ap.parse_args()
    only = set(x.strip() for x in a.only.split(",") if x.strip())
    if only - set(SECTIONS):
        sys.exit(f"bench: unknown part(s) {', '.join(sorted(only - set(SECTIONS)))}")
    if a.no_pg:
        only.discard("pg")
    partial = only != set(SECTIONS) - ({"pg"} if a.no_pg else set())
    P = QUICK if a.quick else FULL
    BUDGET[0] = P["budget_s"]
    build = os.path.abspath(a.build)
    work = os.path.join(build, "bench-work", P["name"])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    outdir = os.path.join(ROOT, "bench/results", P["name"])
    os.makedirs(outdir, exist_ok=True)
    ensure_tools(build)
    # run copies: other people may rebuild build/ while the bench runs (and perf
    # needs the binary that is running to resolve its symbols)
    os.makedirs(os.path.join(work, "bin"))
    for exe in ("polysyncd", "psbench", "polysync", "psbench_poll"):
        shutil.copy2(os.path.join(build, "bin", exe), os.path.join(work, "bin", exe))
    meta = machine_meta(build, P["name"])
    build = work  # from here on, <build>/bin/... are the copies
    drv = Driver(build)
    log(f"profile {P['name']}: {meta['machine']}; commit {meta['commit']}")
    meta["background_at_start_pct"] = wait_quiet(a.wait_quiet)
    log(f"other processes at start: {meta['background_at_start_pct']:.0f} % of one core")

    ref_body = os.path.join(work, "reference-set.json")
    fresh_body = os.path.join(work, "fresh-device.json")
    fresh_seed_body = os.path.join(work, "fresh-device-seed-shape.json")
    meta["fresh_seed_body_bytes"] = drv.gen(fresh_seed_body, P["fresh_chats"], P["ref_msgs"],
                                            shape="seed")
    meta["ref_body_bytes"] = drv.gen(ref_body, P["ref_chats"], P["ref_msgs"])
    meta["fresh_body_bytes"] = drv.gen(fresh_body, P["fresh_chats"], P["ref_msgs"],
                                       envelope="fresh-device")
    log(f"dataset: {P['ref_chats']} chats x {P['ref_msgs']} messages = "
        f"{meta['ref_body_bytes'] / 1e6:.1f} MB")
    if a.profile:
        profile_mode(build, work, drv, P, ref_body, meta)
        return 0

    res, errors = {}, []
    servers = []
    try:
        # the references first (their cost is known), then polysyncd: if it is slow,
        # only its own repeats and the sweeps are cut by the time budget
        for name in ("reference-memory", "reference-file", "v2", "polysyncd"):
            if ("v2" if name == "v2" else "legacy") not in only:
                continue
            try:
                if name == "v2":
                    v2_runs(drv, build, work, P, res)
                    continue
                if name == "polysyncd":
                    srv = polysyncd(build, work, name, os.path.join(work, "legacy.db"))
                else:
                    srv = reference(work, name.split("-")[1])
                servers.append(srv)
                reps = P["b_file_repeats"] if name == "reference-file" else P["b_repeats"]
                legacy_server_runs(drv, srv, P, ref_body, fresh_body, reps, res)
                if name == "reference-file":
                    srv.stop()
            except Exception as e:  # keep going: the other scenarios still say something
                errors.append(f"{name}: {e}")
                log(f"{name} failed: {e}")
        for srv in sorted(servers, key=lambda x: x.name != "polysyncd"):
            if srv.alive() and srv.name in ("polysyncd", "reference-memory"):
                try:
                    legacy_sweep(drv, srv, P, ref_body, res)
                except Exception as e:
                    errors.append(f"{srv.name} sweep: {e}")
                    log(f"{srv.name} sweep failed: {e}")
    finally:
        for srv in servers:
            srv.stop()

    # issue #15's targets, side by side with the seed server (bench/targets.py)
    if "t15" in only:
        res["t15"] = targets.run(sys.modules[__name__], drv, build, work, P, ref_body,
                                 fresh_seed_body)
        errors += res["t15"].get("errors", [])
    # end to end: the polysync CLI + polysyncd against PouchDB (bench/pouch_column.py)
    if "pouch" in only:
        try:
            res["pouch"] = pouch_column.run(sys.modules[__name__], build, work, P, ref_body)
            errors += res["pouch"].get("errors", [])
        except Exception as e:
            errors.append(f"pouchdb: {e}")
            log(f"pouchdb failed: {e}")
    if "browser" in only:
        try:
            res["browser"] = pouch_column.browser(sys.modules[__name__], build, work, P,
                                                  ref_body)
        except Exception as e:
            errors.append(f"browser: {e}")
            log(f"browser failed: {e}")
    # the PostgreSQL column: one and two instances on one database (bench/pg_column.py)
    if "pg" in only and pg_column.available():
        try:
            res["postgres"] = pg_column.run(sys.modules[__name__], drv, build, work, P,
                                            ref_body, fresh_body)
        except Exception as e:
            errors.append(f"postgres: {e}")
            log(f"postgres failed: {e}")

    meta["took_s"] = elapsed()
    meta["other_cpu_pct"] = tri(OTHER_CPU)
    meta["other_top"] = sorted(((k, round(v)) for k, v in OTHER_TOP.items() if v >= 10),
                               key=lambda kv: -kv[1])[:5]
    S = summarize(res, P, meta)
    made = plots(res, S, P, outdir, work)
    md = markdown(res, S, P, meta, made, errors)
    if res.get("pouch"):
        md = md.replace(PLOTS_HEAD, pouch_column.markdown(res["pouch"], P) + "\n\n" + PLOTS_HEAD, 1) \
            if PLOTS_HEAD in md else md + "\n\n" + pouch_column.markdown(res["pouch"], P)
    if res.get("browser"):
        md += "\n\n" + pouch_column.browser_markdown(res["browser"], P)
    if res.get("t15"):
        rows = targets.summarize(res["t15"], S)
        if res.get("pouch"):
            rows += pouch_column.target_rows(res["pouch"], res["t15"])
        S["t15_rows"] = rows
        # the targets first: every row of issue #15 with met yes / no
        head, sep, rest = md.partition("\n### ")
        md = (head + "\n### Targets of issue #15 — side by side in this run\n\n" +
              targets.markdown(rows, P, res["t15"]) + "\n" + sep + rest)
    if res.get("postgres"):
        md += ("\n\n#### SQLite and PostgreSQL (one and two instances on one database)\n\n" +
               pg_column.markdown([("SQLite", pg_column.sqlite_figures(res))] +
                                  list(res["postgres"].items())))
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(f"# polysync benchmark results ({P['name']})\n\n"
                f"Written by `bench/run.py{' --quick' if a.quick else ''}`; "
                f"see docs/performance.md for what each scenario means.\n\n" + md + "\n")
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "profile": P, "summary": S, "runs": res, "errors": errors}, f,
                  indent=1, default=str)
    log(f"results: {os.path.relpath(outdir, ROOT)}/results.md")
    if not a.quick and not a.no_docs and not partial:
        update_doc(md, outdir)
    print()
    print(md)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
