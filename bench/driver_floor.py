"""What the load driver and the machine cost a big request before any server
work: psbench sends a body to a sink that only reads it (and, with
--durable, writes it to a file and fdatasyncs it) and answers at once.

- The driver's own time: each run is a new psbench process with one request,
  as the bench's rows are; a figure well above the raw transfer (a Python
  client's, also printed) is the driver's, and weighs on every server alike
  (docs/performance.md, "the load driver's own 75 ms").
- --durable: the least a server that keeps "a sync answered 200 is on disk"
  can do with a first upload (no parsing, no index): the floor under the
  first-upload target.

  python3 bench/driver_floor.py build/bin/psbench BODY.json [--runs 5] [--durable DIR]
"""
import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def sink(listener, durable_dir):
    """Serves one request per connection, in a process of its own (no GIL shared with the
    Python client), until killed."""
    while True:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            head, rest = head.split(b"\r\n\r\n", 1)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            fd = None
            if durable_dir:
                fd = os.open(os.path.join(durable_dir, "body"),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.write(fd, rest)
            got, buf = len(rest), bytearray(1 << 20)
            view = memoryview(buf)
            while got < length:
                n = conn.recv_into(buf)
                if not n:
                    break
                if fd is not None:
                    os.write(fd, view[:n])
                got += n
            if fd is not None:
                os.fdatasync(fd)
                os.close(fd)
            body = b'{"missing":[]}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


def python_client(port, data):
    """One request by a plain blocking client: the raw transfer's time (ms)."""
    head = (f"POST /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = time.perf_counter()
        s.sendall(head)
        s.sendall(data)  # not head + data: a new 63 MB object would be written from user space
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536)
        return (time.perf_counter() - t) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("psbench")
    ap.add_argument("body")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--durable", metavar="DIR", help="write each body to DIR and fdatasync it")
    a = ap.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    durable = tempfile.mkdtemp(dir=a.durable) if a.durable else None
    server = multiprocessing.Process(target=sink, args=(listener, durable), daemon=True)
    server.start()
    data = open(a.body, "rb").read()
    drv, raw = [], []
    for _ in range(a.runs):
        r = subprocess.run([a.psbench, "load", "--url", f"http://127.0.0.1:{port}", "--path",
                            "/sync", "--conns", "1", "--pid", str(server.pid), "--body", a.body,
                            "--count", "1"], capture_output=True, text=True, check=True)
        drv.append(json.loads(r.stdout)["sync"]["lat_ms"]["p50"])
        raw.append(python_client(port, data))
    server.kill()
    server.join()
    listener.close()
    if durable:
        for name in os.listdir(durable):
            os.remove(os.path.join(durable, name))
        os.rmdir(durable)
    what = "durable sink (write + fdatasync)" if a.durable else "sink (read and discard)"
    print(json.dumps({"sink": what, "body_bytes": len(data),
                      "psbench_ms": {"median": round(statistics.median(drv), 1),
                                     "runs": [round(x, 1) for x in drv]},
                      "python_client_ms": {"median": round(statistics.median(raw), 1),
                                           "runs": [round(x, 1) for x in raw]},
                      "load": open("/proc/loadavg").read().split()[:3]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
