"""The polysync CLI on its own: commands, --json, --help, exit codes, import
and export, token files. No server except where a test says so."""
import json
import os
import stat
import unittest

import subprocess

from clientkit import (FAST_RETRIES, POLYSYNC, POLYSYNCD, ROOT, ClientTestCase, check_sanitizers,
                       free_port, run_cli)

COMMANDS = [
    [], ["chat"], ["msg"], ["chat", "new"], ["chat", "rename"], ["chat", "archive"],
    ["chat", "unarchive"], ["chat", "delete"], ["chat", "list"], ["chat", "show"],
    ["msg", "add"], ["msg", "edit"], ["msg", "delete"], ["sync"], ["watch"], ["import"],
    ["export"], ["status"], ["login"], ["logout"], ["help"],
]


class HelpAndUsage(ClientTestCase):
    def test_help_on_every_command(self):
        for cmd in COMMANDS:
            for flag in ("--help", "-h"):
                r = run_cli(cmd + [flag])
                self.assertEqual(r.rc, 0, r)
                self.assertIn("Usage: polysync", r.out, r)
                self.assertEqual(r.err, "", r)

    def test_usage_errors_exit_1(self):
        store = os.path.join(self.dir, "s.db")
        cases = [
            [],
            ["frobnicate"],
            ["chat"],
            ["chat", "frob"],
            ["chat", "new"],                       # no --title
            ["chat", "rename", "only-id"],         # missing title
            ["chat", "show"],
            ["msg", "add", "c1", "--role", "user"],  # no --content
            ["msg", "add", "c1", "--role", "robot", "--content", "x"],
            ["chat", "list", "--title", "x"],      # misplaced option
            ["sync", "--interval", "5"],
            ["--bogus"],
            ["watch", "--interval", "0"],
            ["sync", "--retries", "x"],
        ]
        for args in cases:
            r = run_cli(["--store", store] + args)
            self.assertEqual(r.rc, 1, r)
            self.assertTrue(r.err, r)

    def test_help_command(self):
        r = run_cli(["help"])
        self.assertEqual((r.rc, r.err), (0, ""))
        self.assertEqual(r.out, run_cli(["--help"]).out)
        for cmd in (["sync"], ["chat", "new"], ["login"], ["msg", "add"]):
            r = run_cli(["help"] + cmd)
            self.assertEqual((r.rc, r.err), (0, ""), r)
            self.assertEqual(r.out, run_cli(cmd + ["--help"]).out)
        self.assertIn("chat rename ID TITLE", run_cli(["help", "chat"]).out)
        for bad in (["nope"], ["chat", "nope"], ["sync", "extra"]):
            r = run_cli(["help"] + bad)
            self.assertEqual(r.rc, 1, r)
            self.assertEqual(r.out, "")

    def test_polysyncd_help_exits_0(self):
        for args in (["help"], ["--help"], ["token", "--help"], ["token", "issue", "--help"],
                     ["user", "--help"], ["help", "token"], ["user", "list", "-h"]):
            r = subprocess.run([POLYSYNCD] + args, capture_output=True, text=True, timeout=30)
            self.assertEqual((r.returncode, r.stderr), (0, ""), args)
            self.assertIn("Usage", r.stdout, args)
            self.assertIn("polysyncd token issue", r.stdout, args)
        r = subprocess.run([POLYSYNCD, "token"], capture_output=True, text=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout), (1, ""))

    def test_store_help_names_the_xdg_default(self):
        self.assertIn("$XDG_DATA_HOME/polysync/chats.db", run_cli(["--help"]).out)

    def test_unopenable_store_is_a_local_error(self):
        folder = os.path.join(self.dir, "a-folder")
        os.mkdir(folder)
        for store in (folder, os.path.join(self.dir, "missing", "dir", "x.db")):
            for args in (["chat", "list"], ["sync", "--server", "http://127.0.0.1:1"]):
                r = run_cli(["--store", store] + args)
                self.assertEqual(r.rc, 1, r)
                self.assertTrue(r.err, r)

    def test_version(self):
        r = run_cli(["--version"])
        self.assertEqual(r.rc, 0)
        self.assertRegex(r.out, r"^polysync \d+\.\d+\.\d+")


class LocalCommands(ClientTestCase):
    def test_chat_and_message_lifecycle(self):
        a = self.device("a")
        cid = a.new_chat("Trip plans")
        self.assertRegex(cid, r"^[0-9a-f-]{36}$")
        m1 = a.add_msg(cid, "hello")
        m2 = a.add_msg(cid, "hi there", role="assistant")
        listing = a.run("chat", "list", "--json").json()
        self.assertEqual(len(listing), 1)
        self.assertEqual(listing[0]["id"], cid)
        self.assertEqual(listing[0]["title"], "Trip plans")
        self.assertEqual(listing[0]["messageCount"], 2)
        self.assertFalse(listing[0]["isArchived"])
        self.assertTrue(listing[0]["createdAt"].endswith("Z"))

        shown = a.run("chat", "show", cid, "--json").json()
        self.assertEqual([m["id"] for m in shown["messages"]], [m1, m2])
        self.assertEqual(shown["messages"][1]["role"], "assistant")
        self.assertEqual(shown["updatedAtLamport"][1], a.run("status", "--json").json()["deviceId"])

        a.run("chat", "rename", cid, "Trip to Rome")
        a.run("msg", "edit", cid, m1, "hello, edited")
        a.run("chat", "archive", cid)
        shown = a.run("chat", "show", cid, "--json").json()
        self.assertEqual(shown["title"], "Trip to Rome")
        self.assertEqual(shown["messages"][0]["content"], "hello, edited")
        self.assertTrue(shown["isArchived"])
        a.run("chat", "unarchive", cid)
        self.assertFalse(a.run("chat", "show", cid, "--json").json()["isArchived"])

        human = a.run("chat", "show", cid).out
        self.assertIn("Trip to Rome", human)
        self.assertIn("hello, edited", human)
        self.assertIn(m2, human)

        a.run("msg", "delete", cid, m2)
        self.assertEqual([m["id"] for m in a.run("chat", "show", cid, "--json").json()["messages"]],
                         [m1])
        a.run("chat", "delete", cid)
        self.assertEqual(a.run("chat", "list", "--json").json(), [])
        # every change waits in the log for the next sync
        self.assertEqual(a.pending(), 9)

    def test_json_outputs(self):
        a = self.device("a")
        r = a.run("chat", "new", "--title", "T", "--json").json()
        cid = r["id"]
        m = a.run("msg", "add", cid, "--role", "user", "--content", "x", "--json").json()["id"]
        self.assertEqual(a.run("msg", "edit", cid, m, "y", "--json").json(), {"ok": True})
        st = a.run("status", "--json").json()
        self.assertEqual(st["chats"], 1)
        self.assertEqual(st["pendingChanges"], 3)

    def test_not_found_is_exit_1(self):
        a = self.device("a")
        cid = a.new_chat("x")
        for args in (["chat", "rename", "nope", "t"], ["chat", "show", "nope"],
                     ["chat", "delete", "nope"], ["msg", "add", "nope", "--role", "user",
                                                  "--content", "x"],
                     ["msg", "edit", cid, "nope", "x"], ["msg", "delete", cid, "nope"]):
            r = a.run(*args, ok=False)
            self.assertEqual(r.rc, 1, r)
            self.assertIn("no ", r.err)
        a.run("chat", "delete", cid)
        self.assertEqual(a.run("chat", "rename", cid, "back", ok=False).rc, 1)

    def test_text_that_starts_with_a_dash_and_unicode(self):
        a = self.device("a")
        cid = a.new_chat("Ünïcödé ✓")
        m = a.run("msg", "add", cid, "--role", "user", "--content", "-5 degrees").out.strip()
        a.run("msg", "edit", cid, m, "--", "--still text")
        shown = a.run("chat", "show", cid, "--json").json()
        self.assertEqual(shown["title"], "Ünïcödé ✓")
        self.assertEqual(shown["messages"][0]["content"], "--still text")

    def test_invalid_utf8_is_refused_before_it_is_logged(self):
        a = self.device("a")
        cid = a.new_chat("x")
        before = a.pending()
        r = run_cli(["--store", a.store, "msg", "add", cid, "--role", "user", "--content",
                     b"\xff\xfe".decode("utf-8", "surrogateescape")])
        self.assertEqual(r.rc, 4, r)
        self.assertEqual(a.pending(), before)

    def test_store_is_private(self):
        a = self.device("a")
        a.new_chat("x")
        self.assertEqual(stat.S_IMODE(os.stat(a.store).st_mode), 0o600)

    def test_default_store_under_home(self):
        home = os.path.join(self.dir, "home")
        os.mkdir(home)
        r = run_cli(["chat", "new", "--title", "x"], env={"HOME": home, "XDG_DATA_HOME": ""})
        self.assertEqual(r.rc, 0, r)
        path = os.path.join(home, ".local", "share", "polysync", "chats.db")
        self.assertTrue(os.path.exists(path))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)


class ImportExport(ClientTestCase):
    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(data if isinstance(data, str) else json.dumps(data))
        return path

    def test_import_polyglot_export_array(self):
        a = self.device("a")
        chats = [
            {"id": "c1", "title": "One", "createdAt": "2024-01-15T10:00:00.000Z",
             "updatedAt": "2024-01-15T10:30:00.000Z", "model": "gpt-4", "isArchived": False,
             "messages": [{"id": "m1", "role": "user", "content": "hi",
                           "timestamp": "2024-01-15T10:30:00.000Z"},
                          {"id": "m2", "role": "assistant", "content": "secret",
                           "isPrivate": True}],
             "updatedAtLamport": [7, "phone"], "customField": {"kept": [1, 2]}},
            {"id": "c2", "title": "Two", "messages": [{"id": "m3", "role": "user"}]},  # no content
            {"title": "no id", "messages": []},
            "not an object",
            {"id": "c3", "title": 42},
        ]
        r = a.run("import", self.write("export.json", chats), "--json").json()
        self.assertEqual(r["imported"], 1)
        self.assertEqual(r["messages"], 1)
        self.assertEqual(r["privateDropped"], 1)
        self.assertEqual(r["skippedCount"], 4)
        self.assertIn("chats[1] (id c2)", r["skipped"][0])
        self.assertIn("content", r["skipped"][0])
        self.assertIn("chats[2]", r["skipped"][1])
        self.assertIn("id", r["skipped"][1])
        self.assertIn("chats[3]", r["skipped"][2])
        self.assertIn("title", r["skipped"][3])
        c1 = a.chats()["c1"]
        self.assertEqual(c1["title"], "One")
        self.assertEqual(c1["model"], "gpt-4")
        self.assertEqual(c1["customField"], {"kept": [1, 2]})
        self.assertEqual([m["id"] for m in c1["messages"]], ["m1"])
        human = a.run("import", self.write("again.json", chats[:2])).out
        self.assertIn("imported 1 chat (1 message)", human)
        self.assertIn("skipped 1", human)

    def test_import_chatstore_map_and_object_array(self):
        a = self.device("a")
        store = {"chats": {"k1": {"id": "k1", "title": "Map one", "messages": []},
                           "k2": {"title": "Key is the id", "messages": [
                               {"id": "x", "role": "user", "content": "x"}]}}}
        r = a.run("import", self.write("chatStore.json", store), "--json").json()
        self.assertEqual(r["imported"], 2)
        self.assertEqual(set(a.chats()), {"k1", "k2"})
        r = a.run("import", self.write("obj.json", {"chats": [{"id": "k3", "title": "t"}]}),
                  "--json").json()
        self.assertEqual(r["imported"], 1)

    def test_import_rejects_what_is_not_chats(self):
        a = self.device("a")
        # a file that is not chats is a local input error (docs/client.md:
        # 4 is for the server's refusals and the checks of what it would get)
        for content in ("{not json", '{"foo": 1}', "42"):
            r = a.run("import", self.write("bad.json", content), ok=False)
            self.assertEqual(r.rc, 1, r)
            self.assertIn("is not a chat export", r.err)
            self.assertEqual(a.pending(), 0)
        r = a.run("import", os.path.join(self.dir, "missing.json"), ok=False)
        self.assertEqual(r.rc, 1)

    def test_import_from_stdin(self):
        a = self.device("a")
        r = a.run("import", "-", "--json", stdin=b'[{"id":"s1","title":"stdin"}]').json()
        self.assertEqual(r["imported"], 1)

    def test_export_roundtrip(self):
        a, b = self.device("a"), self.device("b")
        cid = a.new_chat("Round trip")
        a.add_msg(cid, "one")
        a.add_msg(cid, "two", role="assistant")
        a.new_chat("Second")
        out = os.path.join(self.dir, "out.json")
        a.run("export", "--output", out)
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o600)
        with open(out) as f:
            exported = json.load(f)
        self.assertIsInstance(exported, list)
        for c in exported:  # what the Polyglot client needs
            self.assertIsInstance(c["updatedAtLamport"][0], int)
            self.assertTrue(c["updatedAtLamport"][1])
            self.assertIsInstance(c["messages"], list)
        b.run("import", out)
        self.assertEqual(a.chats(), b.chats())
        # imported and not yet synced: exported again, and imported again
        out2 = os.path.join(self.dir, "out2.json")
        b.run("export", "--output", out2)
        c = self.device("c")
        r = c.run("import", out2, "--json").json()
        self.assertEqual((r["imported"], r["skippedCount"]), (2, 0))
        self.assertEqual(b.chats(), c.chats())

    def test_export_empty(self):
        self.assertEqual(json.loads(self.device("a").run("export").out), [])


class LoginAndStatus(ClientTestCase):
    """`login` saves the server and the token in the store; flags and the
    environment win; the saved token goes only to the saved server."""

    def token_file(self, mode=0o600, token="s3cret-token"):
        path = os.path.join(self.dir, "token")
        with open(path, "w") as f:
            f.write(token + "\n")
        os.chmod(path, mode)
        return path

    def test_login_with_a_token_file_then_no_flags(self):
        srv = self.server()
        px = self.proxy(srv)
        px.token = "s3cret-token"
        a = self.device("a")  # no --server from the kit: only what login saved
        r = a.run("login", "--server", px.url, "--token-file", self.token_file())
        self.assertIn("saved: server " + px.url, r.out)
        st = a.run("status", "--json").json()
        self.assertEqual((st["server"], st["serverFrom"], st["token"]),
                         (px.url, "saved by login", "saved by login (file)"))
        self.assertIsNone(st["cursor"])
        self.assertIsNone(st["lastSync"])
        a.new_chat("remembered")
        a.run("sync")
        self.assertEqual(px.seen("/v2/sync")[-1][2]["authorization"], "Bearer s3cret-token")
        st = a.run("status", "--json").json()
        self.assertTrue(st["cursor"])
        self.assertRegex(st["lastSync"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(st["pendingChanges"], 0)
        # a reference: a new token in the file is used at the next sync
        self.token_file(token="rotated")
        px.token = "rotated"
        a.new_chat("after rotation")
        a.run("sync")
        text = a.run("status").out
        for label in ("device", "server", "token", "chats", "pending", "cursor", "last sync"):
            self.assertRegex(text, r"(?m)^%s +\S" % label)
        self.assertIn("0 changes not yet sent", text)

    def test_login_refuses_an_open_token_file(self):
        a = self.device("a")
        r = a.run("login", "--server", "http://127.0.0.1:1", "--token-file",
                  self.token_file(0o644), ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("0644", r.err)
        self.assertIsNone(a.run("status", "--json").json()["server"])

    def test_login_token_stdin_is_kept_in_the_private_store(self):
        srv = self.server()
        px = self.proxy(srv)
        px.token = "from-stdin"
        a = self.device("a")
        a.run("login", "--server", px.url, "--token-stdin", stdin=b"from-stdin\n")
        self.assertEqual(stat.S_IMODE(os.stat(a.store).st_mode), 0o600)
        self.assertEqual(a.run("status", "--json").json()["token"], "saved by login")
        a.new_chat("x")
        a.run("sync")
        self.assertEqual(px.seen("/v2/sync")[-1][2]["authorization"], "Bearer from-stdin")
        r = a.run("login", "--server", px.url, "--token-stdin", stdin=b"", ok=False)
        self.assertEqual(r.rc, 1)

    def test_flags_and_environment_win_and_the_token_stays_with_its_server(self):
        srv = self.server()
        saved, other = self.proxy(srv), self.proxy(srv)
        a = self.device("a")
        a.run("login", "--server", saved.url, "--token-stdin", stdin=b"saved-token\n")
        a.new_chat("one")
        a.run("sync", "--server", other.url)
        self.assertEqual(len(saved.seen("/v2/sync")), 0)
        self.assertNotIn("authorization", other.seen("/v2/sync")[-1][2])
        a.new_chat("two")
        a.run("sync", env={"POLYSYNC_SERVER": other.url, "POLYSYNC_TOKEN": "env-token"})
        self.assertEqual(len(saved.seen("/v2/sync")), 0)
        self.assertEqual(other.seen("/v2/sync")[-1][2]["authorization"], "Bearer env-token")
        a.new_chat("three")
        a.run("sync")
        self.assertEqual(saved.seen("/v2/sync")[-1][2]["authorization"], "Bearer saved-token")

    def test_logout_forgets(self):
        a = self.device("a")
        a.run("login", "--server", "http://127.0.0.1:1", "--token-stdin", stdin=b"t\n")
        a.new_chat("stays")
        r = a.run("logout")
        self.assertEqual(r.rc, 0)
        st = a.run("status", "--json").json()
        self.assertEqual((st["server"], st["token"], st["chats"]), (None, None, 1))
        r = a.run("sync", ok=False)
        self.assertEqual(r.rc, 1)
        self.assertIn("polysync login", r.err)

    def test_login_needs_a_valid_server(self):
        a = self.device("a")
        self.assertEqual(a.run("login", ok=False).rc, 1)
        self.assertEqual(a.run("login", "--server", "ftp://x", ok=False).rc, 1)
        self.assertEqual(a.run("login", "--server", "http://127.0.0.1:1", "--token", "a",
                               "--token-stdin", ok=False).rc, 1)

    def test_no_lock_file_left_beside_the_store(self):
        srv = self.server()
        a = self.device("a", srv)
        a.new_chat("x")
        a.sync()
        a.sync()
        left = [n for n in os.listdir(self.dir) if n.endswith(".lock")]
        self.assertEqual(left, [])


def walkthrough(doc, heading):
    """The first ```sh block after `heading` in `doc` (a path from the root)."""
    with open(os.path.join(ROOT, doc)) as f:
        text = f.read()
    after = text[text.index(heading):]
    start = after.index("```sh\n") + len("```sh\n")
    return after[start:after.index("```", start)]


class Walkthroughs(ClientTestCase):
    """The README's and docs/client.md's walkthroughs, as written, against a
    real server (its URL and the binary's path substituted): after one
    `login` per store, no command needs a flag."""

    def run_doc(self, doc, heading):
        srv = self.server()
        script = walkthrough(doc, heading)
        self.assertIn(" login --server http://127.0.0.1:4001", script)
        self.assertNotIn("POLYSYNC_SERVER", script)
        script = script.replace("http://127.0.0.1:4001", srv.url)
        script = script.replace("build/bin/polysync", os.path.abspath(POLYSYNC))
        env = dict(os.environ, HOME=self.dir)
        env.pop("POLYSYNC_SERVER", None)
        env.pop("POLYSYNC_TOKEN", None)
        r = subprocess.run(["bash", "-e", "-c", script + "\nwait\n"], cwd=self.dir, env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        check_sanitizers(r.stderr, doc)
        laptop = os.path.join(self.dir, "laptop.db")
        phone = os.path.join(self.dir, "phone.db")
        for store in (laptop, phone):  # the chat was deleted at the end, on both
            self.assertEqual(json.loads(run_cli(["--store", store, "export"]).out), [])
            self.assertEqual(run_cli(["--store", store, "status", "--json"]).json()
                             ["pendingChanges"], 0)
        self.assertEqual([n for n in os.listdir(self.dir) if n.endswith(".lock")], [])
        return r

    def test_readme(self):
        self.run_doc("README.md", "## Two devices with the polysync client")
        self.assertTrue(os.path.exists(os.path.join(self.dir, "chats.json")))

    def test_client_guide(self):
        self.run_doc("docs/client.md", "## Two devices in two minutes")


class TokenAndServerSettings(ClientTestCase):
    def test_token_file_must_be_private(self):
        a = self.device("a", server="http://127.0.0.1:%d" % free_port())
        path = os.path.join(self.dir, "token")
        with open(path, "w") as f:
            f.write("abc\n")
        os.chmod(path, 0o644)
        r = a.run("sync", "--token-file", path, ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("0644", r.err)
        self.assertIn("chmod 600", r.err)
        r = a.run("sync", "--token-file", os.path.join(self.dir, "nope"), ok=False)
        self.assertEqual(r.rc, 1, r)

    def test_sync_without_server_is_usage(self):
        r = self.device("a").run("sync", ok=False)
        self.assertEqual(r.rc, 1)
        self.assertIn("POLYSYNC_SERVER", r.err)

    def test_bad_server_url(self):
        a = self.device("a", server="ftp://example.com")
        self.assertEqual(a.run("sync", ok=False).rc, 1)

    def test_unreachable_server_is_exit_2(self):
        a = self.device("a", server="http://127.0.0.1:%d" % free_port())
        a.new_chat("waits")
        r = a.run("sync", *FAST_RETRIES, ok=False)
        self.assertEqual(r.rc, 2, r)
        self.assertIn("after 3 attempts", r.err)
        self.assertEqual(a.pending(), 1)  # still waiting, nothing lost

    def test_token_not_sent_in_clear_to_other_hosts(self):
        a = self.device("a", server="http://192.0.2.1:9")  # TEST-NET: never reached
        r = a.run("sync", "--token", "secret", ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("plain http", r.err)

    def test_https_certificate_is_verified(self):
        # a plain-HTTP server spoken to over https: the TLS handshake fails
        s = self.server()
        a = self.device("a", server="https://127.0.0.1:%d" % s.port)
        r = a.run("sync", *FAST_RETRIES, ok=False)
        self.assertEqual(r.rc, 2, r)
        self.assertNotIn("synced", r.out)

    def test_cacert_must_exist(self):
        a = self.device("a", server="https://127.0.0.1:1")
        r = a.run("sync", "--cacert", os.path.join(self.dir, "nope.pem"), ok=False)
        self.assertEqual(r.rc, 1)


if __name__ == "__main__":
    unittest.main()
