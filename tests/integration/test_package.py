"""
Packaging (issue 17.6, docs/operations.md "Install"): `cmake --install`
into a scratch prefix (what `make install PREFIX=...` runs) gives the
binaries, library, headers, a pkg-config file whose --static flags link a
program against libpolysync.a, the systemd unit (which `systemd-analyze
verify` accepts) and the docs; the .deb CPack builds (`make deb`) holds the
same, unpacked with `dpkg -x` into a scratch root its polysyncd serves.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import POLYSYNCD, Server

BUILD = os.path.dirname(os.path.dirname(os.path.abspath(POLYSYNCD)))

PROGRAM = r"""
#include <polysync/polysync.h>
#include <stdio.h>
int main(void) { printf("%s\n", ps_strerror(PS_OK)); return 0; }
"""


def sh(args, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, **kw)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(args), r.returncode,
                                                       r.stdout.decode(), r.stderr.decode()))
    return r.stdout.decode()


class PackageTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="polysync-pkg-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def libdir(self, root):
        for d in ("lib", "lib64", "lib/x86_64-linux-gnu"):
            if os.path.exists(os.path.join(root, d, "libpolysync.so.0")):
                return os.path.join(root, d)
        self.fail("no libpolysync.so.0 under %s" % root)

    def check_tree(self, root):
        for path in ("bin/polysyncd", "bin/polysync", "include/polysync/polysync.h",
                     "include/polysync/client.h", "lib/systemd/system/polysyncd.service",
                     "share/doc/polysync/LICENSE", "share/doc/polysync/operations.md",
                     "share/doc/polysync/examples/polysyncd.conf"):
            self.assertTrue(os.path.exists(os.path.join(root, path)), path)
        lib = self.libdir(root)
        self.assertTrue(os.path.exists(os.path.join(lib, "pkgconfig", "polysync.pc")))
        with open(os.path.join(root, "share/doc/polysync/LICENSE")) as f:
            self.assertIn("MIT License", f.read())
        return lib

    def verify_unit(self, unit, bindir):
        """systemd-analyze verify, with ExecStart pointed at the scratch copy."""
        if not shutil.which("systemd-analyze"):
            return
        with open(unit) as f:
            text = f.read()
        self.assertIn("ExecStart=%s/polysyncd --config /etc/polysync/polysyncd.conf"
                      % ("/usr/bin" if "/usr/bin/" in text else bindir), text)
        for setting in ("DynamicUser=yes", "StateDirectory=polysync", "ProtectSystem=strict",
                        "NoNewPrivileges=yes", "ExecReload=/bin/kill -HUP $MAINPID"):
            self.assertIn(setting, text)
        local = os.path.join(self.tmp, "polysyncd.service")
        with open(local, "w") as f:
            f.write(text.replace("/usr/bin/polysyncd", os.path.join(bindir, "polysyncd")))
        r = subprocess.run(["systemd-analyze", "verify", local], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        self.assertEqual((r.returncode, r.stderr.decode().strip()), (0, ""),
                         "systemd-analyze verify: %s" % r.stdout.decode())

    def test_install_into_a_prefix(self):
        prefix = os.path.join(self.tmp, "prefix")
        sh(["cmake", "--install", BUILD, "--prefix", prefix])
        lib = self.check_tree(prefix)
        self.verify_unit(os.path.join(prefix, "lib/systemd/system/polysyncd.service"),
                         os.path.join(prefix, "bin"))
        env = dict(os.environ, LD_LIBRARY_PATH=lib)
        self.assertIn("polysync", sh([os.path.join(prefix, "bin/polysync"), "--version"],
                                     env=env))
        # pkg-config --static: the flags link a program against the archive alone
        src = os.path.join(self.tmp, "prog.c")
        with open(src, "w") as f:
            f.write(PROGRAM)
        pc_env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(lib, "pkgconfig"))
        flags = sh(["pkg-config", "--static", "--cflags", "--libs", "polysync"],
                   env=pc_env).split()
        self.assertIn("-lpolysync", flags)
        flags = [os.path.join(lib, "libpolysync.a") if f == "-lpolysync" else f for f in flags]
        exe = os.path.join(self.tmp, "prog")
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            sanitized = "PS_SANITIZE:BOOL=ON" in f.read()
        # an ASan build's archive is instrumented: its users link the runtime
        extra = ["-fsanitize=address,undefined"] if sanitized else []
        sh(["cc", "-o", exe, src] + flags + extra)
        self.assertEqual(sh([exe]).strip(), "no error")  # ps_strerror(PS_OK)
        out = sh(["ldd", exe])
        self.assertNotIn("libpolysync", out, "linked statically")

    def test_deb_unpacked_serves(self):
        out_dir = os.path.join(self.tmp, "packages")
        sh(["cpack", "-G", "DEB", "-B", out_dir, "--config",
            os.path.join(BUILD, "CPackConfig.cmake")], cwd=BUILD)
        debs = [f for f in os.listdir(out_dir) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, os.listdir(out_dir))
        deb = os.path.join(out_dir, debs[0])
        info = sh(["dpkg-deb", "-I", deb])
        self.assertIn("Package: polysync", info)
        self.assertIn("libmicrohttpd", info, "Depends from the binaries' libraries")
        root = os.path.join(self.tmp, "root")
        sh(["dpkg", "-x", deb, root])
        usr = os.path.join(root, "usr")
        lib = self.check_tree(usr)
        self.verify_unit(os.path.join(usr, "lib/systemd/system/polysyncd.service"),
                         os.path.join(usr, "bin"))
        s = Server(env={"LD_LIBRARY_PATH": lib})
        s_bin = os.path.join(usr, "bin/polysyncd")
        import harness
        saved, harness.POLYSYNCD = harness.POLYSYNCD, s_bin
        try:
            s.start()
            try:
                self.assertEqual(s.health()["status"], "healthy")
                s.push_ok([{"id": "c1", "title": "from the package", "messages": []}])
                self.assertEqual([c["title"] for c in s.fetch()], ["from the package"])
            finally:
                s.stop()
        finally:
            harness.POLYSYNCD = saved
            s.close()
        env = dict(os.environ, LD_LIBRARY_PATH=lib)
        self.assertIn("polysync", sh([os.path.join(usr, "bin/polysync"), "--version"], env=env))


if __name__ == "__main__":
    unittest.main()
