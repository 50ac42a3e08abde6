"""The PostgreSQL column of the benchmark (bench/run.py calls run()).

Same datasets and driver as the SQLite runs: the first upload of the
reference set, (a) its full-state re-sync, (c) a fresh device, (b) many
clients at once, and (e) v2 no-op syncs on a seeded store, against one and
against two polysyncd instances sharing one PostgreSQL database (with two,
every load is split evenly between them). The database is a throwaway
cluster (scripts/pg-throwaway.sh) started durable: fsync and
synchronous_commit on, as a 200 promises, so the figures compare with
SQLite's synchronous=FULL.
"""
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "scripts", "pg-throwaway.sh")


def available():
    return any(os.path.exists("/usr/lib/postgresql/%s/bin/initdb" % v)
               for v in (os.listdir("/usr/lib/postgresql")
                         if os.path.isdir("/usr/lib/postgresql") else []))


class Cluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="polysync-bench-pg-", dir="/tmp")
        os.rmdir(self.dir)
        env = dict(os.environ, PS_PG_DURABLE="1")
        self.url = subprocess.run([SCRIPT, "start", self.dir], check=True, env=env,
                                  stdout=subprocess.PIPE, timeout=120).stdout.decode().strip()
        self.n = 0

    def new_db(self):
        self.n += 1
        name = "bench_%d" % self.n
        subprocess.run(["psql", "-X", "-q", "-d", self.url, "-c", "CREATE DATABASE " + name],
                       check=True, timeout=60)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self):
        subprocess.run([SCRIPT, "stop", self.dir], timeout=120)


def split_load(drv, servers, path, conns, **kw):
    """drv.load on every server at once, the connections split between them;
    the runs' outputs."""
    outs = [None] * len(servers)
    errs = []

    def one(i):
        try:
            outs[i] = drv.load(servers[i], path, conns=max(1, conns // len(servers)), **kw)
        except Exception as e:  # reported below
            errs.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errs:
        raise errs[0]
    return outs


def p50_s(outs):
    return statistics.median(o["sync"]["lat_ms"]["p50"] for o in outs) / 1e3


def run(R, drv, build, work, P, ref_body, fresh_body, with_sqlite=False):
    """R: bench/run.py (its Server, check, log). Returns {label: figures}.
    with_sqlite: a SQLite column first, by the same procedure (standalone
    runs; make bench takes SQLite's figures from its own runs)."""
    res = {}
    cluster = Cluster()
    configs = [("postgres x1", 1), ("postgres x2", 2)]
    if with_sqlite:
        configs.insert(0, ("SQLite", 1))
    try:
        for label, n_inst in configs:
            def start(kind):
                """n_inst servers on a new store (for the legacy runs, then for v2)."""
                db = ("sqlite:" + os.path.join(work, "column-%s.db" % kind)) \
                    if label == "SQLite" else cluster.new_db()
                out = []
                for i in range(n_inst):
                    out.append(R.Server(
                        "polysyncd-%s-%s-%d" % (label.replace(" ", ""), kind, i),
                        [os.path.join(build, "bin/polysyncd"), "--port", "0", "--db", db,
                         "--max-body", "1G", "--threads", "2", "--connection-timeout", "600"],
                        os.path.join(work, "%s-%s-%d.log" % (label.replace(" ", ""), kind, i))
                    ).start())
                return out

            servers = []
            try:
                servers = start("legacy")
                f = res[label] = {}
                R.log(f"{label}: first sync of the reference set")
                seed = R.check(drv.load(servers[0], "/sync", body=ref_body, count=1), "seed")
                f["seed_s"] = seed["sync"]["lat_ms"]["p50"] / 1e3
                R.check(drv.load(servers[-1], "/sync", body=ref_body, count=1), "warm-up")
                R.log(f"{label}: (a) x{P['single_repeats']}")
                a = [R.check(drv.load(servers[i % n_inst], "/sync", body=ref_body, count=1),
                             "(a)") for i in range(P["single_repeats"])]
                f["a_s"] = p50_s(a)
                R.log(f"{label}: (c) x{P['single_repeats']}")
                c = [R.check(drv.load(servers[i % n_inst], "/sync", body=fresh_body, count=1),
                             "(c)") for i in range(P["single_repeats"])]
                f["c_s"] = p50_s(c)
                R.log(f"{label}: (b) {P['b_conns']} clients x {P['b_duration']} s")
                b = split_load(drv, servers, "/sync", P["b_conns"], body=ref_body,
                               duration=min(P["b_duration"], 15), drain=P["b_drain"])
                for o in b:
                    R.check(o, "(b)", allow_cut=True)
                f["b_rps"] = sum(o["sync"]["throughput_rps"] for o in b)
                f["b_p50_s"] = p50_s(b)
                # (e): v2 no-op syncs on a store of their own, seeded, as in run.py
                for srv in servers:
                    srv.stop()
                servers = start("v2")
                n = P["v2_sizes"][1]  # no-op syncs hardly depend on the size
                R.log(f"{label}: v2 store of {n} chats: seeding")
                seed2 = drv.run(["seed-v2", "--url", servers[0].url, "--device", "bench-a",
                                 "--chats", n, "--messages", P["v2_msgs"], "--big-messages",
                                 P["big_msgs"], "--batch", 200, "--pid", servers[0].pid],
                                timeout=1800)
                R.check(seed2, "v2 seed")
                f["v2_seed_s"] = seed2["elapsed_s"]
                noop = json.dumps({"deviceId": "bench-a", "cursor": seed2["cursor"]})
                R.log(f"{label}: (e) {P['e_conns']} connections x {P['e_duration']} s")
                e = split_load(drv, servers, "/v2/sync", P["e_conns"], body_json=noop,
                               duration=min(P["e_duration"], 10), drain=10)
                for o in e:
                    R.check(o, "(e)")
                f["e_rps"] = sum(o["sync"]["throughput_rps"] for o in e)
                f["e_p50_ms"] = statistics.median(o["sync"]["lat_ms"]["p50"] for o in e)
            finally:
                for s in servers:
                    s.stop()
    finally:
        cluster.stop()
    return res


def sqlite_figures(res):
    """The same figures from the SQLite runs of bench/run.py."""
    r = res.get("polysyncd", {})
    f = {}
    if r.get("seed"):
        f["seed_s"] = r["seed"]["sync"]["lat_ms"]["p50"] / 1e3
    if r.get("a"):
        f["a_s"] = p50_s(r["a"])
    if r.get("c"):
        f["c_s"] = p50_s(r["c"])
    if r.get("b"):
        f["b_rps"] = statistics.median(x["sync"]["throughput_rps"] for x in r["b"])
        f["b_p50_s"] = p50_s(r["b"])
    v2 = res.get("v2", {})
    if v2.get("e"):
        f["e_rps"] = statistics.median(x["sync"]["throughput_rps"] for x in v2["e"])
        f["e_p50_ms"] = statistics.median(x["sync"]["lat_ms"]["p50"] for x in v2["e"])
    return f


ROWS = [
    ("first upload of the reference set (s)", "seed_s", "%.2f"),
    ("(a) full-state sync, p50 (s)", "a_s", "%.2f"),
    ("(c) fresh device, p50 (s)", "c_s", "%.3f"),
    ("(b) concurrent clients: syncs/s", "b_rps", "%.1f"),
    ("(b) concurrent clients: p50 (s)", "b_p50_s", "%.2f"),
    ("(e) v2 no-op syncs/s", "e_rps", "%.0f"),
    ("(e) v2 no-op p50 (ms)", "e_p50_ms", "%.2f"),
    ("v2 store seeding (s)", "v2_seed_s", "%.1f"),
]


def markdown(columns):
    """columns: [(label, figures)] -> a markdown table."""
    head = "| | " + " | ".join(label for label, _ in columns) + " |\n"
    head += "|---|" + "---:|" * len(columns) + "\n"
    body = ""
    for title, key, fmt in ROWS:
        cells = [(fmt % f[key]) if key in f else "–" for _, f in columns]
        body += "| %s | %s |\n" % (title, " | ".join(cells))
    return head + body


def main():
    """Standalone: the three columns by one procedure, on the full reference
    set (the figures of docs/performance.md, "PostgreSQL")."""
    import argparse
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run as R
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(R.ROOT, "build"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    P = dict(R.QUICK if a.quick else R.FULL)
    P["single_repeats"] = 3
    build = os.path.abspath(a.build)
    work = os.path.join(build, "bench-work", "pg-" + P["name"])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    drv = R.Driver(build)
    ref_body = os.path.join(work, "reference-set.json")
    fresh_body = os.path.join(work, "fresh-device.json")
    drv.gen(ref_body, P["ref_chats"], P["ref_msgs"])
    drv.gen(fresh_body, P["fresh_chats"], P["ref_msgs"], envelope="fresh-device")
    res = run(R, drv, build, work, P, ref_body, fresh_body, with_sqlite=True)
    print(markdown(list(res.items())))
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
