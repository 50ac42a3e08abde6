"""The last request of a first upload, alone and repeatable: after the polysync CLI
uploads a history into an empty polysyncd (as bench/e2e_first_sync.py does), the
device's first pull of its run -- cursor null, `run` r1.0, no changes, limit 5000 (one
page for up to 5,000 chats) -- asked N times. Every chat is then the device's own of
the run, so each is listed by its id alone (docs/protocol.md, `run`); the answer is
checked to be the same each time (its entries sorted: the pushes' order may differ
between runs).

For each request: the server process's CPU (user + system, /proc/PID/stat; read after
a short pause so the answer's last work is counted) and the wall time. CPU is what to
compare on a shared machine (docs/performance.md, "tail: ...").

  python3 bench/e2e_last_pull.py BUILD REF.json [--requests N] [--work DIR]
"""
import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402  (bench/run.py: Server)
import targets  # noqa: E402

targets.R = R


def server_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("ref")
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--work")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="ps-last-pull-")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "A"))
    cli = os.path.join(a.build, "bin/polysync")
    store = os.path.join(work, "A", "chats.db")
    subprocess.run([cli, "--store", store, "--server", "http://127.0.0.1:1", "--quiet",
                    "import", a.ref], check=True, stdout=subprocess.DEVNULL)
    srv = targets.start_polysyncd(a.build, work, "polysyncd", default_limits=True)
    cpus, walls, digest, answer = [], [], None, None
    try:
        subprocess.run([cli, "--store", store, "--server", srv.url, "--quiet", "sync"],
                       check=True, stdout=subprocess.DEVNULL)
        db = sqlite3.connect(f"file:{srv.dir}/store.db?mode=ro", uri=True)
        device = db.execute("SELECT device_id FROM devices").fetchone()[0]
        db.close()
        body = json.dumps({"deviceId": device, "cursor": None, "run": "r1.0",
                           "limit": 5000}).encode()
        time.sleep(0.5)
        for _ in range(a.requests):
            c0, w0 = server_cpu(srv.pid), time.monotonic()
            req = urllib.request.Request(srv.url + "/v2/sync", body,
                                         {"Content-Type": "application/json"})
            out = urllib.request.urlopen(req).read()
            walls.append(time.monotonic() - w0)
            time.sleep(0.3)
            cpus.append(server_cpu(srv.pid) - c0)
            answer = json.loads(out)
            entries = sorted(json.dumps(e, sort_keys=True) for e in answer["chats"])
            d = hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]
            if digest not in (None, d):
                sys.exit("the answer changed between requests")
            digest = d
    finally:
        srv.stop()
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    chats = answer["chats"]
    id_only = sum(1 for e in chats if list(e) == ["id"])
    walls.sort()
    print("%d chats (%d by id alone), more %s, entries sha256 %s" %
          (len(chats), id_only, answer["more"], digest))
    print("server CPU per request: mean %.3f s (%s); wall median %.3f s" %
          (sum(cpus) / len(cpus), " ".join("%.2f" % c for c in cpus), walls[len(walls) // 2]))


if __name__ == "__main__":
    main()
