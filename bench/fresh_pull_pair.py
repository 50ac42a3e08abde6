"""A fresh device's pull of a history, two `polysync` builds turn about against one
polysyncd (issue #15's "fresh pull" end to end, the client's side alone): the history
is uploaded once by build A's CLI, then each run pulls it into a new empty store with
build A's CLI, then build B's (order alternated each run). For each pull: the sync time
(the CLI's elapsedMs), the process's wall time, its CPU (user + system, from wait4),
the server's CPU over the same span (/proc/PID/stat) and the machine's 1-minute load
before it; at the end the medians. Also checks both pulls hold every chat.

  python3 bench/fresh_pull_pair.py SERVER_BUILD REF.json CLI_A CLI_B [--runs N]
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402
import targets  # noqa: E402
import pouch_column as PC  # noqa: E402
import e2e_first_sync as E  # noqa: E402

targets.R = R
PC.R = R


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server_build")
    ap.add_argument("ref")
    ap.add_argument("cli_a")
    ap.add_argument("cli_b")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ps-pull-pair-")
    srv = targets.start_polysyncd(a.server_build, work, "polysyncd", default_limits=True)
    want = len(json.load(open(a.ref))["chats"])
    res = {"A": [], "B": []}
    try:
        def ps(cli, dev, *args):
            return [cli, "--store", os.path.join(work, dev, "chats.db"), "--server", srv.url,
                    "--quiet", *args]
        os.makedirs(os.path.join(work, "up"))
        E.child_run(ps(a.cli_a, "up", "import", a.ref))
        E.child_run(ps(a.cli_a, "up", "sync"))
        for i in range(a.runs):
            for name in (("A", "B") if i % 2 == 0 else ("B", "A")):
                cli = a.cli_a if name == "A" else a.cli_b
                dev = f"{name}{i}"
                shutil.rmtree(os.path.join(work, dev), ignore_errors=True)
                os.makedirs(os.path.join(work, dev))
                load = os.getloadavg()[0]
                m, out = E.measured(srv.pid, ps(cli, dev, "--json", "sync"))
                j = json.loads(out)
                m["sync_s"] = j.get("elapsedMs", 0) / 1e3
                pulled = len(json.loads(E.child_run(ps(cli, dev, "chat", "list", "--json"))[2]))
                if pulled != want:
                    raise SystemExit(f"{name} run {i + 1}: pulled {pulled} of {want} chats")
                res[name].append(m)
                print(f"{name} run {i + 1}: sync {m['sync_s']:6.2f} s  wall {m['wall']:6.2f} s  "
                      f"client CPU {m['client_cpu']:5.2f} s  server CPU "
                      f"{m['server_cpu']:5.2f} s  requests {j.get('requests')}  "
                      f"(load {load:.2f})", flush=True)
                shutil.rmtree(os.path.join(work, dev), ignore_errors=True)
        for name in ("A", "B"):
            med = {k: statistics.median(m[k] for m in res[name])
                   for k in ("sync_s", "wall", "client_cpu", "server_cpu")}
            print(f"{name} medians: sync {med['sync_s']:.2f} s  wall {med['wall']:.2f} s  "
                  f"client CPU {med['client_cpu']:.2f} s  server CPU {med['server_cpu']:.2f} s")
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
