"""
Backup and restore (issue 17.4, docs/operations.md "Backup and restore"):
`polysyncd backup DEST` copies a live store (the copy opens as the same
chats), `polysyncd restore SRC` is refused while a server holds the store,
checks the copy, keeps the old store aside; devices whose cursor is from
after the backup get 410 cursor_expired and resync. Store files are 0600.
"""
import glob
import os
import stat
import subprocess
import unittest

from harness import POLYSYNCD, Server, ServerTestCase, chat, msg


def run(*args):
    r = subprocess.run([POLYSYNCD] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


class BackupTest(ServerTestCase):
    def titles(self, s):
        return sorted(c["title"] for c in s.fetch())

    def copy_server(self, path):
        """A server on a backup file (its own folder, the file copied in)."""
        s = Server(tmpdir=None)
        with open(path, "rb") as src, open(s.db_path, "wb") as dst:
            dst.write(src.read())
        self._servers.append(s)
        self.addCleanup(self._finish, s)
        return s.start()

    def test_backup_of_a_live_store_opens_as_the_same_chats(self):
        s = self.server
        s.push_ok([chat("c%d" % i, "title %d" % i, [msg("m%d" % i)]) for i in range(20)])
        dest = os.path.join(s.tmpdir, "copy.db")
        code, out, err = run("backup", dest, "--db", "sqlite:" + s.db_path)
        self.assertEqual(code, 0, err)
        self.assertEqual(stat.S_IMODE(os.stat(dest).st_mode), 0o600)
        self.assertEqual([p for p in glob.glob(dest + "*") if p != dest], [],
                         "one self-contained file: no -wal, no .partial left")
        s.push_ok([chat("late", "after the backup")])   # the server goes on
        copy = self.copy_server(dest)
        self.assertEqual(self.titles(copy), sorted("title %d" % i for i in range(20)))

    def test_restore_is_refused_while_the_server_runs(self):
        s = self.server
        s.push_ok([chat("c1", "live")])
        dest = os.path.join(s.tmpdir, "copy.db")
        self.assertEqual(run("backup", dest, "--db", "sqlite:" + s.db_path)[0], 0)
        code, _, err = run("restore", dest, "--db", "sqlite:" + s.db_path)
        self.assertEqual(code, 1)
        self.assertIn("in use", err)
        self.assertEqual(glob.glob(s.db_path + ".before-restore-*"), [])
        self.assertEqual(self.titles(s), ["live"])

    def test_restore_offline_keeps_the_old_store_and_future_cursors_get_410(self):
        s = self.server
        s.push_ok([chat("c1", "in the backup")])
        dest = os.path.join(s.tmpdir, "copy.db")
        self.assertEqual(run("backup", dest, "--db", "sqlite:" + s.db_path)[0], 0)
        s.push_ok([chat("c2", "after the backup")])
        later = s.v2_ok({"deviceId": "phone", "cursor": None})["cursor"]
        s.stop()
        code, out, err = run("restore", dest, "--db", "sqlite:" + s.db_path)
        self.assertEqual(code, 0, err)
        aside = glob.glob(s.db_path + ".before-restore-*")
        self.assertEqual(len([p for p in aside if not p.endswith("-wal")]), 1, aside)
        self.assertIn(aside[0].replace("-wal", ""), out)
        self.assertEqual(stat.S_IMODE(os.stat(s.db_path).st_mode), 0o600)
        s.start()
        self.assertEqual(self.titles(s), ["in the backup"])
        # the phone's cursor is from beyond the restored store: 410, then a resync
        status, _, doc = s.request("POST", "/v2/sync", body={"deviceId": "phone",
                                                             "cursor": later})
        self.assertEqual(status, 410, doc)
        self.assertEqual(doc["code"], "cursor_expired")
        doc = s.v2_ok({"deviceId": "phone", "cursor": None, "changes": [
            {"chatId": "c2", "clock": 1, "fields": {"title": "after the backup"}}]})
        self.assertEqual(self.titles(s), ["after the backup", "in the backup"])
        # the store set aside is whole: both chats are in it
        s.stop()
        old = self.copy_server([p for p in aside if not p.endswith("-wal")][0])
        self.assertEqual(self.titles(old), ["after the backup", "in the backup"])

    def test_restore_refuses_a_bad_copy_and_changes_nothing(self):
        s = self.server
        s.push_ok([chat("c1", "kept")])
        s.stop()
        junk = os.path.join(s.tmpdir, "junk.db")
        with open(junk, "wb") as f:
            f.write(b"SQLite format 3\x00" + b"\x00" * 5000)
        not_ours = os.path.join(s.tmpdir, "other.db")
        subprocess.run(["sqlite3", not_ours, "CREATE TABLE t(x)"], check=True)
        for bad in (junk, not_ours, os.path.join(s.tmpdir, "absent.db")):
            code, _, err = run("restore", bad, "--db", "sqlite:" + s.db_path)
            self.assertEqual(code, 1, bad)
            self.assertTrue(err.strip(), "says why")
        self.assertEqual(glob.glob(s.db_path + ".before-restore-*"), [])
        s.start()
        self.assertEqual(self.titles(s), ["kept"])

    def test_postgres_store_gets_the_pg_dump_recipe(self):
        code, out, _ = run("backup", "/tmp/x.dump", "--db", "postgres://u@db.example/polysync")
        self.assertEqual(code, 2, "nothing was copied: not a success")
        self.assertIn("pg_dump", out)
        self.assertIn("postgres://u@db.example/polysync", out)

    def test_new_store_files_are_private(self):
        old = os.umask(0o022)                 # a umask that would make them 0644
        try:
            s = self.new_server()
        finally:
            os.umask(old)
        s.push_ok([chat("c1", "x")])
        for path in [s.db_path] + glob.glob(s.db_path + "-*"):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)


if __name__ == "__main__":
    unittest.main()
