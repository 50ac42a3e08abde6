"""The two slow end-to-end paths against PouchDB, alone and quickly: a first upload of a
history into an empty server and a fresh device's pull of it, for the polysync CLI +
polysyncd and for a PouchDB 9 device + express-pouchdb (bench/pouchdb, as
bench/pouch_column.py runs them), turn about.

For each: wall time of the client process, the client's CPU (user + system of the
process and its children, from wait4), the server's CPU over the same span (from
/proc/PID/stat), and the machine's load average before the run. Meant for profiling
the client (`--perf DIR` records `perf record -g` of the CLI's upload and pull) while
`make bench` keeps the full table.

  python3 bench/e2e_first_sync.py BUILD REF.json [--runs N] [--only polysync|pouchdb]
                                  [--perf DIR] [--work DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402  (bench/run.py: Server, log)
import targets  # noqa: E402
import pouch_column as PC  # noqa: E402

targets.R = R
PC.R = R


def child_run(argv, perf=None, timeout=900):
    """(wall s, client CPU s, stdout) of argv, under `perf record` when perf names a file."""
    if perf:
        argv = ["perf", "record", "-g", "-o", perf, "--", *argv]
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t = time.monotonic()
        p = subprocess.Popen(argv, stdout=fo, stderr=fe)
        # wait4: this child's own rusage (its children included once they were waited for)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:5])}… exit {p.returncode}: {err.decode()[-400:]}")
    return wall, ru.ru_utime + ru.ru_stime, out.decode()


def measured(srv_pid, argv, perf=None):
    c0 = PC.proc_cpu(srv_pid)
    wall, cpu, out = child_run(argv, perf)
    return {"wall": wall, "client_cpu": cpu, "server_cpu": PC.proc_cpu(srv_pid) - c0}, out


def polysync(build, work, ref, perf_dir, i):
    d = os.path.join(work, f"first-polysync-{i}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    srv = targets.start_polysyncd(build, d, "polysyncd", default_limits=True)
    cli = os.path.join(build, "bin/polysync")
    res = {}
    try:
        for dev in ("A", "B"):
            os.makedirs(os.path.join(d, dev))

        def ps(dev, *args):
            return [cli, "--store", os.path.join(d, dev, "chats.db"), "--server", srv.url,
                    "--quiet", *args]
        child_run(ps("A", "import", ref))
        for phase, dev in (("upload", "A"), ("pull", "B")):
            perf = os.path.join(perf_dir, f"polysync-{phase}-{i}.data") if perf_dir else None
            res[phase], out = measured(srv.pid, ps(dev, "--json", "sync"), perf)
            j = json.loads(out)
            res[phase]["sync_s"] = j.get("elapsedMs", 0) / 1e3
            res[phase]["bytes"] = (j.get("bytesSent"), j.get("bytesReceived"))
        res["pulled"] = len(json.loads(child_run(ps("B", "chat", "list", "--json"))[2]))
        res["client_disk"] = targets.dir_bytes(os.path.join(d, "B"))
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)
    return res


def pouchdb(build, work, ref, i):
    d = os.path.join(work, f"first-pouchdb-{i}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "server"))
    srv = R.Server("pouchdb-server", ["node", os.path.join(PC.PDIR, "server.js"), "--dir",
                                      os.path.join(d, "server"), "--log",
                                      os.path.join(d, "requests.log")],
                   os.path.join(d, "server.log")).start()
    dev = os.path.join(PC.PDIR, "device.js")
    res = {}
    try:
        child_run(["node", dev, "load", os.path.join(d, "A"), ref])
        for phase, name in (("upload", "A"), ("pull", "B")):
            res[phase], out = measured(srv.pid, ["node", dev, "sync", os.path.join(d, name),
                                                 srv.url])
            res[phase]["sync_s"] = json.loads(out.strip().splitlines()[-1])["ms"] / 1e3
            if phase == "pull":
                res["pulled"] = json.loads(out.strip().splitlines()[-1])["docs"]
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("ref")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--only", choices=("polysync", "pouchdb"))
    ap.add_argument("--perf")
    ap.add_argument("--work")
    a = ap.parse_args()
    PC.npm_ci(PC.PDIR)
    work = a.work or tempfile.mkdtemp(prefix="ps-e2e-first-")
    names = [a.only] if a.only else ["polysync", "pouchdb"]
    for i in range(a.runs):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            load = os.getloadavg()
            r = (polysync(a.build, work, a.ref, a.perf, i) if name == "polysync"
                 else pouchdb(a.build, work, a.ref, i))
            for phase in ("upload", "pull"):
                m = r[phase]
                print(f"{name:8} run {i + 1} {phase:6}: sync {m['sync_s']:6.2f} s  wall "
                      f"{m['wall']:6.2f} s  client CPU {m['client_cpu']:6.2f} s  server CPU "
                      f"{m['server_cpu']:6.2f} s  (load {load[0]:.2f})", flush=True)
            print(f"{name:8} run {i + 1} pulled {r.get('pulled')} chats"
                  + (f", B's store {r['client_disk'] / 1e6:.1f} MB" if "client_disk" in r
                     else ""), flush=True)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
