#!/usr/bin/env python3
"""Readers vs writers: a v2 device's no-op sync latency while two legacy
clients upload full histories (each upload a new user: every one a real
first upload, never the hash skip). Usage:
  readers_writers.py POLYSYNCD WORKDIR H1.json H2.json [uploads-per-client] [--alone S]
Prints JSON: poller latencies (ms) p50/p90/p99/max, count; upload times."""
import http.client, json, multiprocessing, os, re, subprocess, sys, time

def start(polysyncd, work, secret):
    db = os.path.join(work, "rw.db")
    for s in ("", "-wal", "-shm"):
        if os.path.exists(db + s):
            os.remove(db + s)
    return db

def issue(polysyncd, db, secret, user):
    out = subprocess.run([polysyncd, "token", "issue", "--user", user, "--ttl", "1d",
                          "--jwt-secret-file", secret, "--db", "sqlite:" + db],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split()[-1]

def post(port, token, path, body, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, body=body, headers={"Content-Type": "application/json",
                                                "Authorization": "Bearer " + token})
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, data

def uploader(port, tokens, files, q):
    times = []
    for i, tok in enumerate(tokens):
        body = open(files[i % len(files)], "rb").read()
        t0 = time.monotonic()
        st, _ = post(port, tok, "/sync", body)
        times.append((st, round(time.monotonic() - t0, 2)))
    q.put(times)

def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(len(v) * p))] if v else None

def main():
    polysyncd, work, h1, h2 = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 and not sys.argv[5].startswith("--") else 3
    alone = float(sys.argv[sys.argv.index("--alone") + 1]) if "--alone" in sys.argv else 0
    secret = os.path.join(work, "secret")
    db = start(polysyncd, work, secret)
    tokens = {u: issue(polysyncd, db, secret, u) for u in
              ["poller"] + ["w%d-%d" % (k, r) for k in range(2) for r in range(n)]}
    log = open(os.path.join(work, "server.log"), "w")
    srv = subprocess.Popen([polysyncd, "--port", "0", "--db", "sqlite:" + db, "--max-body", "1G",
                            "--threads", "2", "--jwt-secret-file", secret,
                            "--connection-timeout", "600"], stdout=subprocess.PIPE, stderr=log,
                           text=True)
    port = int(re.search(r":(\d+)", srv.stdout.readline()).group(1))
    try:
        st, data = post(port, tokens["poller"], "/v2/sync", json.dumps(
            {"deviceId": "P", "cursor": None, "changes": [
                {"chatId": "p1", "clock": 1, "fields": {"title": "poll"}}]}).encode())
        cursor = json.loads(data)["cursor"]
        noop = json.dumps({"deviceId": "P", "cursor": cursor}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        hdr = {"Content-Type": "application/json", "Authorization": "Bearer " + tokens["poller"]}
        def poll(lat):
            t0 = time.perf_counter()
            conn.request("POST", "/v2/sync", body=noop, headers=hdr)
            r = conn.getresponse(); r.read()
            lat.append((time.perf_counter() - t0) * 1000)
            assert r.status == 200, r.status
        res = {}
        if alone:
            lat = []; end = time.monotonic() + alone
            while time.monotonic() < end:
                poll(lat)
            res["alone"] = {"count": len(lat), "p50": pct(lat, .5), "p99": pct(lat, .99),
                            "max": max(lat)}
        q = multiprocessing.Queue()
        ups = [multiprocessing.Process(target=uploader, args=(
            port, [tokens["w%d-%d" % (k, r)] for r in range(n)], [h1, h2] if k == 0 else [h2, h1], q))
            for k in range(2)]
        for p in ups:
            p.start()
        lat = []
        time.sleep(0.5)
        while any(p.is_alive() for p in ups):
            poll(lat)
        uploads = [q.get() for _ in ups]
        for p in ups:
            p.join()
        res["with_writers"] = {"count": len(lat), "p50": pct(lat, .5), "p90": pct(lat, .9),
                               "p99": pct(lat, .99), "max": max(lat), "uploads": uploads}
        print(json.dumps(res, indent=1))
    finally:
        srv.terminate(); srv.wait()

if __name__ == "__main__":
    main()
