"""What a person sees: `polysync` run in a pseudo-terminal (Python pty), as
in a real terminal, against a real polysyncd behind the fault-injecting
proxy. The oracle is docs/client.md's description of the output: the retry
line, the progress line's fields (bytes, rate, time left; merging; receiving),
the summary's honest counts, import progress, and the JSON error objects.
The same commands off a terminal must print none of it."""
import base64
import json
import os
import pty
import re
import select
import subprocess
import time
import unittest

from clientkit import POLYSYNC, TIMEOUT, ClientTestCase, free_port

ANSI = re.compile(r"\x1b\[K")


def run_in_pty(args, stdin_chunks=None, chunk_pause=0.0, shown=None):
    """Runs polysync with stdout and stderr on a pseudo-terminal (stdin too,
    unless `stdin_chunks` are fed through a pipe, `chunk_pause` apart).
    Returns (exit code, everything the terminal showed). `shown`, a list,
    gets each piece of output as it comes (for another thread to watch)."""
    master, slave = os.openpty()
    env = dict(os.environ)
    env.pop("POLYSYNC_SERVER", None)
    env.pop("POLYSYNC_TOKEN", None)
    p = subprocess.Popen([POLYSYNC] + args, stdout=slave, stderr=slave,
                         stdin=subprocess.PIPE if stdin_chunks is not None else slave,
                         env=env, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + TIMEOUT
    chunks = list(stdin_chunks or [])
    next_feed = time.monotonic()
    while time.monotonic() < deadline:
        if stdin_chunks is not None and p.stdin and time.monotonic() >= next_feed:
            if chunks:
                p.stdin.write(chunks.pop(0))
                p.stdin.flush()
                next_feed = time.monotonic() + chunk_pause
            else:
                p.stdin.close()
                p.stdin = None
        r, _, _ = select.select([master], [], [], 0.05)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if shown is not None:
                shown.append(chunk)
        elif p.poll() is not None and not chunks:
            # drain what is left, then stop
            while select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            break
    rc = p.wait(timeout=TIMEOUT)
    os.close(master)
    text = out.decode("utf-8", "replace").replace("\r\n", "\n")
    if "AddressSanitizer" in text or "runtime error:" in text:
        raise AssertionError("sanitizer report:\n" + text[-4000:])
    return rc, text


def screens(text):
    """Every state the status line went through: the pieces between \\r."""
    return [ANSI.sub("", s) for s in re.split(r"[\r\n]", text) if ANSI.sub("", s).strip()]


def big_export(path, chats=8, messages=4, size=120_000):
    """A Polyglot export of incompressible text, so bytes on the wire are
    close to bytes in the store (gzip cannot shrink it)."""
    seed = 0
    doc = []
    for c in range(chats):
        msgs = []
        for m in range(messages):
            seed += 1
            blob = base64.b64encode(os.urandom(size * 3 // 4)).decode()
            msgs.append({"id": "m%d-%d" % (c, m), "role": "user", "content": blob,
                         "timestamp": "2026-01-01T10:00:%02d.000Z" % m})
        doc.append({"id": "big%d" % c, "title": "Big %d" % c, "messages": msgs,
                    "createdAt": "2026-01-01T10:00:00.000Z",
                    "lastModified": "2026-01-01T10:00:00.000Z"})
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


class Retries(ClientTestCase):
    def test_retry_lines_and_the_first_reason(self):
        url = "http://127.0.0.1:%d" % free_port()  # nothing listens: refused
        store = os.path.join(self.dir, "a.db")
        args = ["--store", store, "--server", url, "--retries", "3", "--retry-max-delay", "1",
                "sync"]
        rc, out = run_in_pty(args)
        self.assertEqual(rc, 2, out)
        lines = screens(out)
        retry = [l for l in lines if "retrying" in l]
        self.assertEqual(len(retry), 2, out)  # 3 attempts: 2 waits
        self.assertRegex(retry[0], r"^sync: retrying in [\d.]+ s \(attempt 2/3\): connection refused$")
        self.assertRegex(retry[1], r"^sync: retrying in [\d.]+ s \(attempt 3/3\): connection refused$")
        self.assertRegex(lines[-1], r"^polysync: cannot reach .* after 3 attempts: connection refused$")
        # off a terminal: the final error only
        r = subprocess.run([POLYSYNC] + args, capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2)
        self.assertNotIn("retrying", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_one_attempt_is_singular(self):
        url = "http://127.0.0.1:%d" % free_port()
        rc, out = run_in_pty(["--store", os.path.join(self.dir, "a.db"), "--server", url,
                              "--retries", "1", "sync"])
        self.assertEqual(rc, 2)
        self.assertIn("after 1 attempt: connection refused", out)
        self.assertNotIn("retrying", out)

    def test_json_error_is_one_object_on_stderr(self):
        url = "http://127.0.0.1:%d" % free_port()
        store = os.path.join(self.dir, "a.db")
        cases = [
            (["--server", url, "--retries", "2", "--retry-max-delay", "1", "sync", "--json"],
             2, "unreachable"),
            (["chat", "show", "nope", "--json"], 1, "not_found"),
            (["--json", "frobnicate"], 1, "usage"),
            (["chat", "new", "--json"], 1, "usage"),
        ]
        for args, code, name in cases:
            r = subprocess.run([POLYSYNC, "--store", store] + args, capture_output=True,
                               text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, code, r)
            self.assertEqual(r.stdout, "", r)
            lines = r.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, r.stderr)
            err = json.loads(lines[0])
            self.assertEqual(set(err), {"error", "code", "exit"})
            self.assertEqual((err["code"], err["exit"]), (name, code))
            self.assertTrue(err["error"])
        # on a terminal too: no retry lines mixed into the JSON
        rc, out = run_in_pty(["--store", store] + cases[0][0])
        self.assertEqual(rc, 2)
        self.assertEqual(json.loads(out.strip())["exit"], 2)


class Progress(ClientTestCase):
    def test_upload_merging_download_and_summary(self):
        srv = self.server()
        px = self.proxy(srv)
        a = self.device("a", px)
        a.run("import", big_export(os.path.join(self.dir, "big.json")), server=False)
        px.read_rate = 1_000_000  # a 2.8 MiB body: about 3 s of sending
        px.add("/v2/sync", delay=1.5)  # then the server "works"
        rc, out = run_in_pty(["--store", a.store, "--server", px.url, "sync"])
        self.assertEqual(rc, 0, out)
        lines = screens(out)
        sending = [l for l in lines if l.startswith("sync: sending ")]
        self.assertTrue(sending, out)
        m = re.match(r"^sync: sending ([\d.]+) (B|KiB|MiB) of ([\d.]+) MiB \((\d+)%\), "
                     r"([\d.]+) (B|KiB|MiB)/s, ([\d.]+ s|\d+ min \d+ s|\?) left", sending[-1])
        self.assertTrue(m, sending[-1])
        self.assertGreater(float(m.group(3)), 2.0)  # the whole body: 3.8 MB, 2.8 MiB gzipped
        self.assertLess(int(m.group(4)), 100)
        self.assertTrue(any(l.startswith("sync: merging… (sent ") for l in lines), out)
        summary = [l for l in lines if l.startswith("synced: ")]
        self.assertEqual(summary, [summary[-1]], out)
        self.assertRegex(summary[0], r"^synced: sent 8 changes \(8 chats, 32 messages\) "
                                     r"\[v2, [\d.]+ s\]$")
        # the status line is erased before the summary: nothing follows it
        self.assertTrue(out.rstrip().endswith(summary[0]), out[-300:])

        # another device receives it, slowly
        px.read_rate = None
        px.write_rate = 1_000_000
        b = self.device("b", px)
        rc, out = run_in_pty(["--store", b.store, "--server", px.url, "sync"])
        self.assertEqual(rc, 0, out)
        lines = screens(out)
        self.assertTrue(any(re.match(r"^sync: receiving [\d.]+ (KiB|MiB) of [\d.]+ MiB \(\d+%\)", l)
                            for l in lines), out)
        self.assertIn("synced: received 8 chats, 32 messages [v2,", out)

    def test_pages_asked_ahead_show_their_bytes(self):
        """A pull of several pages asks for each page after the first while
        the one before is applied (docs/client.md, "A pull of several
        pages"); while the sync then waits for that page, the progress line
        shows it coming in as it shows the first one, after the counts of
        the pages applied so far."""
        srv = self.server()
        px = self.proxy(srv)
        a, c = self.device("a", srv), self.device("c", px)
        c.sync()  # c has a cursor: its next pull comes in pages of 500 chats
        chats = [{"id": "p%04d" % i, "title": "Chat %d" % i,
                  "createdAt": "2026-01-01T10:00:00.000Z",
                  "lastModified": "2026-01-01T10:00:00.000Z",
                  "messages": [{"id": "p%04d-m" % i, "role": "user", "content": "x" * 300,
                                "timestamp": "2026-01-01T10:00:00.000Z"}]}
                 for i in range(1100)]
        path = os.path.join(self.dir, "pages.json")
        with open(path, "w") as f:
            json.dump(chats, f)
        a.run("import", path, server=False)
        a.sync()
        px.write_rate = 200_000  # a page of ~300 KB: about 1.5 s each
        # The second page's request (asked ahead while the first is applied)
        # is held until the terminal shows the first page applied: the sync
        # then surely waits while that page comes in, however long applying
        # took (under ASan on a loaded machine it outlasted the transfer).
        shown = []
        before = len(px.seen("/v2/sync"))
        held = px.add("/v2/sync", hold=lambda: b"received 500 chats" in b"".join(shown),
                      when=lambda req: len(px.seen("/v2/sync")) == before + 2)
        rc, out = run_in_pty(["--store", c.store, "--server", px.url, "sync"], shown=shown)
        self.assertEqual(rc, 0, out)
        self.assertTrue(held.held, "the second page was never asked for, or the first never "
                        "shown applied: %s" % out)
        lines = screens(out)
        # counts on the line: a page was applied, so this one was asked ahead
        later = [l for l in lines if re.match(r"^sync: receiving [\d.]+ (B|KiB|MiB) of [\d.]+ "
                                              r"(KiB|MiB) \(\d+%\) · received [\d,]+ chats", l)]
        self.assertTrue(later, out)
        self.assertRegex(out, r"synced: received 1,?100 chats, 1,?100 messages \[v2,")

    def test_counts_exclude_what_this_device_already_has(self):
        """A device that imported the same history as another receives
        nothing new from it: the server's copy equals its own."""
        srv = self.server()
        path = big_export(os.path.join(self.dir, "small.json"), chats=3, messages=2, size=100)
        a, b = self.device("a", srv), self.device("b", srv)
        a.run("import", path, server=False)
        a.sync()
        b.run("import", path, server=False)
        rc, out = run_in_pty(["--store", b.store, "--server", srv.url, "sync"])
        self.assertEqual(rc, 0, out)
        self.assertRegex(out.strip(), r"^synced: sent 3 changes \(3 chats, 6 messages\) \[v2, ")
        self.assertNotIn("received", out)
        # and one real change from a is one chat, one message
        a.run("msg", "add", "big0", "--role", "user", "--content", "new")
        a.sync()
        rc, out = run_in_pty(["--store", b.store, "--server", srv.url, "sync"])
        self.assertRegex(out.strip(), r"^synced: received 1 chat, 1 message \[v2, ")

    def test_first_sync_does_not_count_its_own_chats(self):
        """The first sync from a null cursor may bring the device's own
        chats back; they are not received."""
        srv = self.server()
        a = self.device("a", srv)
        for i in range(3):
            a.new_chat("mine %d" % i)
        st = a.sync().json()
        self.assertEqual(st["sent"]["chats"], 3)
        self.assertEqual(st["received"], {"chats": 0, "messages": 0, "deletions": 0})

    def test_import_progress_on_a_terminal_only(self):
        path = big_export(os.path.join(self.dir, "big.json"), chats=4, messages=2, size=60_000)
        with open(path, "rb") as f:
            data = f.read()
        chunks = [data[i:i + 40_000] for i in range(0, len(data), 40_000)]
        store = os.path.join(self.dir, "a.db")
        # fed slowly through a pipe: over a second of reading
        rc, out = run_in_pty(["--store", store, "import", "-"], stdin_chunks=chunks,
                             chunk_pause=1.5 / len(chunks))
        self.assertEqual(rc, 0, out)
        lines = screens(out)
        self.assertTrue(any(re.match(r"^import: reading [\d.]+ (KiB|MiB)$", l) for l in lines),
                        out)
        self.assertIn("import: parsing…", lines)
        self.assertIn("import: importing 0/4 chats (0%)", lines)
        self.assertIn("import: saving…", lines)
        self.assertEqual(lines[-1], "imported 4 chats (8 messages)")
        # off a terminal: the report only
        r = subprocess.run([POLYSYNC, "--store", os.path.join(self.dir, "b.db"), "import", path],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout, "imported 4 chats (8 messages)\n")


if __name__ == "__main__":
    unittest.main()
