"""polysyncd's command line: flags, environment, exit codes."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BANNER, POLYSYNCD, store_url, START_TIMEOUT, STOP_TIMEOUT, free_port, read_line


class CliTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="polysync-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.env = dict(os.environ)
        self.env.pop("CHAT_SYNC_PORT", None)

    def run_cli(self, *args, env=None):
        return subprocess.run([POLYSYNCD] + list(args), capture_output=True, text=True,
                              timeout=START_TIMEOUT, env=env or self.env, cwd=self.tmp)

    def test_help(self):
        r = self.run_cli("--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Usage", r.stdout)
        self.assertIn("--port", r.stdout)

    def test_version(self):
        r = self.run_cli("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.strip(), r"^polysyncd \d+\.\d+\.\d+")

    def test_unknown_flag(self):
        r = self.run_cli("--no-such-flag", "--db", "sqlite:" + os.path.join(self.tmp, "p.db"))
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.strip(), "an unknown flag must be explained on stderr")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "p.db")))

    def test_bad_flag_values(self):
        for args in (("--port", "70000"), ("--port", "x"), ("--max-body", "lots"),
                     ("--max-chats", "0")):
            with self.subTest(args=args):
                r = self.run_cli(*args, "--db", "sqlite:" + os.path.join(self.tmp, "p.db"))
                self.assertEqual(r.returncode, 1, r.stdout)

    def test_bind_all_without_auth_refused(self):
        r = self.run_cli("--bind", "0.0.0.0", "--port", "0",
                         "--db", "sqlite:" + os.path.join(self.tmp, "p.db"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("authentication", r.stderr.lower())
        self.assertNotIn("listening", r.stdout)

    # -- CHAT_SYNC_PORT --

    def start(self, args, env):
        proc = subprocess.Popen([POLYSYNCD] + args, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=self.tmp)
        try:
            line = read_line(proc.stdout.fileno(), time.monotonic() + START_TIMEOUT)
        except (TimeoutError, EOFError):
            line = None
        return proc, line

    def stop(self, proc):
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            err = proc.stderr.read().decode("utf-8", "replace")
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(code, 0, err)

    def start_on_env_port(self, extra_args=()):
        """Starts with CHAT_SYNC_PORT set to a free port; retries if the port was taken meanwhile."""
        db = store_url(os.path.join(self.tmp, "p.db"))
        for _ in range(5):
            port = free_port()
            env = dict(self.env, CHAT_SYNC_PORT=str(port))
            proc, line = self.start(["--db", db] + list(extra_args), env)
            if line is not None:
                return proc, line, port
            proc.wait(timeout=STOP_TIMEOUT)
            err = proc.stderr.read().decode("utf-8", "replace")
            proc.stdout.close()
            proc.stderr.close()
            if "cannot listen" not in err:
                self.fail("polysyncd did not start: %s" % err)
        self.fail("no free port found for CHAT_SYNC_PORT")

    def test_chat_sync_port_env(self):
        proc, line, port = self.start_on_env_port()
        try:
            m = BANNER.match(line)
            self.assertIsNotNone(m, line)
            self.assertEqual(int(m.group(3)), port)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/health")
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(json.loads(resp.read())["status"], "healthy")
            conn.close()
        finally:
            self.stop(proc)

    def test_port_flag_beats_env(self):
        # CHAT_SYNC_PORT names a port that is taken: only --port lets it start.
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        env = dict(self.env, CHAT_SYNC_PORT=str(taken.getsockname()[1]))
        proc, line = self.start(["--port", "0", "--db", store_url(os.path.join(self.tmp, "p.db"))],
                                env)
        try:
            self.assertIsNotNone(line, "did not start: --port must override CHAT_SYNC_PORT")
            m = BANNER.match(line)
            self.assertIsNotNone(m, line)
            self.assertNotEqual(int(m.group(3)), 0)
            self.assertNotEqual(m.group(3), env["CHAT_SYNC_PORT"])
        finally:
            self.stop(proc)

    def test_bad_chat_sync_port_env(self):
        r = self.run_cli("--db", "sqlite:" + os.path.join(self.tmp, "p.db"),
                         env=dict(self.env, CHAT_SYNC_PORT="not-a-port"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("CHAT_SYNC_PORT", r.stderr)


    # -- one polysyncd per port --
    # Each of --threads N listens on the port with a socket of its own
    # (SO_REUSEPORT, server.c); a second polysyncd on the port must still
    # fail with "in use" instead of joining and taking part of the traffic.

    def listening_sockets(self, pid, port):
        """How many listening TCP sockets process pid holds on port (/proc/net/tcp*)."""
        inodes = set()
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                m = re.match(r"socket:\[(\d+)\]$", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                continue
            if m:
                inodes.add(m.group(1))
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                next(f)
                for row in f:
                    cols = row.split()
                    listening = cols[3] == "0A"
                    if listening and int(cols[1].rsplit(":", 1)[1], 16) == port and \
                            cols[9] in inodes:
                        count += 1
        return count

    def start_on(self, port, threads, name):
        return self.start(["--port", str(port), "--threads", str(threads),
                           "--db", store_url(os.path.join(self.tmp, name))], self.env)

    def assert_refused(self, proc, line):
        if line is not None:
            self.stop(proc)
            self.fail("a second polysyncd started on a port in use: %s" % line)
        code = proc.wait(timeout=STOP_TIMEOUT)
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stdout.close()
        proc.stderr.close()
        self.assertEqual(code, 1, err)
        self.assertIn("in use", err)

    def assert_serves(self, port, connections):
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                 for _ in range(connections)]
        try:
            for conn in conns:
                conn.connect()
            for conn in conns:
                conn.request("GET", "/health")
            for conn in conns:
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(resp.read())["status"], "healthy")
        finally:
            for conn in conns:
                conn.close()

    def test_one_polysyncd_per_port(self):
        for first, second in ((2, 2), (3, 2), (2, 1), (1, 2)):
            with self.subTest(first_threads=first, second_threads=second):
                a, line = self.start_on(0, first, "a-%d-%d.db" % (first, second))
                try:
                    self.assertIsNotNone(line, "did not start")
                    port = int(BANNER.match(line).group(3))
                    self.assertEqual(self.listening_sockets(a.pid, port), first)
                    b, b_line = self.start_on(port, second, "b-%d-%d.db" % (first, second))
                    self.assert_refused(b, b_line)
                    # the first still answers every connection, on all its sockets
                    self.assert_serves(port, 16)
                    self.assertEqual(self.listening_sockets(a.pid, port), first)
                finally:
                    self.stop(a)

    def test_port_free_again_after_stop(self):
        a, line = self.start_on(0, 2, "a.db")
        self.assertIsNotNone(line, "did not start")
        port = int(BANNER.match(line).group(3))
        self.stop(a)
        b, line = self.start_on(port, 2, "b.db")
        try:
            self.assertIsNotNone(line, "a successor could not take the port")
            self.assert_serves(port, 4)
        finally:
            self.stop(b)


if __name__ == "__main__":
    unittest.main()
