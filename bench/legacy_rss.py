#!/usr/bin/env python3
"""Peak server RSS with 16 concurrent fresh pulls (/sync, the bench's fresh
device body: 20 chats sent, 1,980 received) and 16 concurrent /fetchChats on
the 63 MB reference store; plus server CPU of one fresh pull.
  rss.py POLYSYNCD WORKDIR REF.json FRESH.json"""
import gzip, http.client, json, os, re, subprocess, sys, threading, time

def status_kib(pid, key):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(key):
            return int(line.split()[1])

def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def req(port, method, path, body=None, hdr=None, out=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    h = {"Content-Type": "application/json"}
    h.update(hdr or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse(); n = 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        n += len(b)
    c.close()
    if out is not None:
        out.append((r.status, n))
    return r.status, n

def burst(port, pid, n, method, path, body=None, hdr=None):
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")
    out = []
    c0 = cpu_s(pid); t0 = time.monotonic()
    ts = [threading.Thread(target=req, args=(port, method, path, body, hdr, out)) for _ in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    return {"peak_rss_mib": round(status_kib(pid, "VmHWM") / 1024, 1), "answers": sorted(set(out)),
            "wall_s": round(time.monotonic() - t0, 2), "server_cpu_s": round(cpu_s(pid) - c0, 2)}

def main():
    exe, work, ref, fresh = sys.argv[1:5]
    db = os.path.join(work, "rss.db")
    for s in ("", "-wal", "-shm"):
        if os.path.exists(db + s): os.remove(db + s)
    srv = subprocess.Popen([exe, "--port", "0", "--db", "sqlite:" + db, "--max-body", "1G",
                            "--threads", "2", "--connection-timeout", "600"],
                           stdout=subprocess.PIPE, stderr=open(os.path.join(work, "rss.log"), "w"), text=True)
    port = int(re.search(r":(\d+)", srv.stdout.readline()).group(1)); pid = srv.pid
    try:
        refb, freshb = open(ref, "rb").read(), open(fresh, "rb").read()
        assert req(port, "POST", "/sync", refb)[0] == 200
        res = {"after_upload_rss_mib": round(status_kib(pid, "VmRSS") / 1024, 1)}
        for i in range(3):   # one fresh pull at a time: server CPU
            r = burst(port, pid, 1, "POST", "/sync", freshb)
            res.setdefault("one_fresh_pull", []).append([r["server_cpu_s"], r["wall_s"]])
        res["16_fresh_pulls"] = burst(port, pid, 16, "POST", "/sync", freshb)
        res["16_fresh_pulls_gzip"] = burst(port, pid, 16, "POST", "/sync", freshb, {"Accept-Encoding": "gzip"})
        res["16_fetchChats"] = burst(port, pid, 16, "GET", "/fetchChats")
        print(json.dumps(res))
    finally:
        srv.terminate(); srv.wait()

main()
