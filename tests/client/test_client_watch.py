"""polysync watch: syncs at start, on the live channel's events, soon after
local changes, every interval when the server has no live channel; survives
a server outage; exits 0 on SIGINT and SIGTERM."""
import json
import re
import queue
import signal
import subprocess
import threading
import time
import unittest

from clientkit import TIMEOUT, ClientTestCase, check_sanitizers, wait_for


class Watcher:
    """A running `polysync watch --json`, its events read by a thread."""

    def __init__(self, device, *args):
        self.proc = device.popen("watch", "--json", "--retries", "2", "--retry-max-delay", "1",
                                 *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events = queue.Queue()
        self.all = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def expect(self, pred, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s; saw %r" % (what, self.all[-10:]))
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.all.append(ev)
            if pred(ev):
                return ev

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=TIMEOUT)
        err = self.proc.stderr.read().decode()
        self.proc.stdout.close()
        self.proc.stderr.close()
        check_sanitizers(err, "polysync watch")
        return rc, err


def synced(reason=None):
    return lambda ev: ev["event"] == "synced" and (reason is None or ev["reason"] == reason)


class TextLog:
    """A running `polysync watch` (text log on stderr), its lines read by a
    thread."""

    def __init__(self, device, *args):
        self.proc = device.popen("watch", "--retries", "2", "--retry-max-delay", "1", *args,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.all = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line.decode().rstrip("\n"))

    def expect(self, regex, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line like %r; saw %r" % (regex, self.all[-10:]))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.all.append(line)
            check_sanitizers(line, "polysync watch")
            if re.search(regex, line):
                return line


STAMP = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


class Watch(ClientTestCase):
    def setUp(self):
        super().setUp()
        self.srv = self.server()
        self.a, self.b = self.device("A", self.srv), self.device("B", self.srv)
        self.watchers = []
        self.addCleanup(self.stop_watchers)  # runs before the server stops

    def stop_watchers(self):
        for w in self.watchers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()

    def watch(self, device, *args):
        w = Watcher(device, *args)
        self.watchers.append(w)
        return w

    def test_text_log_has_times_and_one_line_per_sync_that_moved(self):
        log = TextLog(self.b, "--interval", "3600")
        self.watchers.append(log)
        log.expect(STAMP + "live channel connected$")
        cid = self.a.new_chat("from A")
        self.a.add_msg(cid, "hello")
        self.a.sync()
        log.expect(STAMP + r"synced \(live\): received 1 chat, 1 message \[v2, [\d.]+ s\]$")
        self.b.add_msg(cid, "first local")
        log.expect(STAMP + r"synced \(local\): sent 1 change \(1 chat, 1 message\) \[v2, ")
        self.b.add_msg(cid, "second local")
        log.expect(STAMP + r"synced \(local\): sent 1 change \(1 chat, 1 message\) \[v2, ")
        log.proc.send_signal(signal.SIGTERM)
        self.assertEqual(log.proc.wait(timeout=TIMEOUT), 0)
        log.expect(STAMP + "stopped$")
        # every line timestamped; the start sync moved nothing, so it is not
        # logged; each local change is one line
        self.assertTrue(all(re.match(STAMP, l) for l in log.all), log.all)
        synced_lines = [l for l in log.all if " synced " in l]
        self.assertEqual(len(synced_lines), 3, log.all)
        self.assertFalse([l for l in log.all if "nothing new" in l], log.all)

    def test_verbose_logs_every_sync(self):
        log = TextLog(self.b, "--interval", "3600", "-v")
        self.watchers.append(log)
        log.expect(STAMP + r"synced \(start\): nothing new \[v2, ")

    def test_json_events_carry_a_timestamp(self):
        w = self.watch(self.b, "--interval", "3600")
        ev = w.expect(synced("start"), "the first sync")
        self.assertRegex(ev["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        ev = w.expect(lambda ev: ev["event"] == "live_on", "the live channel")
        self.assertIn("at", ev)

    def test_live_channel_and_local_changes(self):
        w = self.watch(self.b, "--interval", "3600")
        w.expect(synced("start"), "the first sync")
        w.expect(lambda ev: ev["event"] == "live_on", "the live channel")
        cid = self.a.new_chat("from A")
        self.a.sync()
        ev = w.expect(lambda ev: synced("live")(ev) and ev["stats"]["received"]["chats"] == 1,
                      "a sync on the live event", timeout=15)
        self.assertIn(cid, self.b.chats())
        # a change made on B by another process is sent within a second or so
        t0 = time.monotonic()
        mid = self.b.add_msg(cid, "from B while watching")
        w.expect(lambda ev: synced("local")(ev) and ev["stats"]["sent"]["changes"] == 1,
                 "a sync of the local change", timeout=15)
        self.assertLess(time.monotonic() - t0, 10)
        self.a.sync()
        self.assertIn(mid, [m["id"] for m in self.a.chats()[cid]["messages"]])
        rc, err = w.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, err)

    def test_interval_when_the_server_has_no_live_channel(self):
        px = self.proxy(self.srv)
        px.add("/v2/events", times=1000, status=404,
               body=b'{"error":"no such endpoint","code":"not_found"}')
        self.b.server = px
        w = self.watch(self.b, "--interval", "1")
        w.expect(lambda ev: ev["event"] == "live_none", "the fallback to the interval")
        cid = self.a.new_chat("arrives by interval")
        self.a.sync()
        w.expect(lambda ev: synced("interval")(ev) and ev["stats"]["received"]["chats"] == 1,
                 "an interval sync bringing the chat", timeout=15)
        self.assertIn(cid, self.b.chats())
        rc, err = w.stop(signal.SIGINT)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(px.seen("/v2/events")), 1)  # asked once, then left alone

    def test_survives_an_outage(self):
        w = self.watch(self.b, "--interval", "2")
        w.expect(lambda ev: ev["event"] == "live_on", "the live channel")
        self.srv.stop()
        w.expect(lambda ev: ev["event"] == "live_off", "the channel dropping")
        mid_chat = self.b.new_chat("made during the outage")
        w.expect(lambda ev: ev["event"] == "sync_failed", "a failed sync")
        self.srv.start()
        w.expect(lambda ev: ev["event"] == "live_on", "the channel back", timeout=40)
        w.expect(lambda ev: ev["event"] == "synced" and self.b.pending() == 0,
                 "the waiting change sent", timeout=40)
        self.a.sync()
        self.assertIn(mid_chat, self.a.chats())
        rc, err = w.stop()
        self.assertEqual(rc, 0, err)

    def test_stops_promptly_during_a_slow_sync(self):
        px = self.proxy(self.srv)
        px.add("/v2/sync", delay=20)
        self.b.server = px
        w = self.watch(self.b)
        wait_for(lambda: px.seen("/v2/sync") or px.rules[0].times == 0, what="the sync to start")
        time.sleep(0.3)
        t0 = time.monotonic()
        rc, err = w.stop(signal.SIGINT)
        self.assertEqual(rc, 0, err)
        self.assertLess(time.monotonic() - t0, 10)


if __name__ == "__main__":
    unittest.main()
