"""polysyncd_faults for the suites that make it fail on demand (test_faults,
test_legacy_stream): the test-only build (tests/CMakeLists.txt) whose store
fails its Nth call (src/store/store_fault.c, PS_FAULT_STORE_FILE) or whose
Nth allocation fails (tests/shim/alloc_fault.c, PS_FAULT_ALLOC_FILE).

A switch file arms it: "GEN N [KIND]"; each new GEN restarts the count, and
the file is replaced in one rename so the server never reads half of it.
Each store fault fired is logged on stderr ("ps-fault: call N (op) failed:
KIND", FIRED).
"""
import os
import re

from harness import Server, ServerTestCase

POLYSYNCD_FAULTS = os.environ.get("POLYSYNCD_FAULTS")
FIRED = re.compile(r"^ps-fault: call (\d+) \((\w+)\) failed: (\w+)$", re.M)
STORE_SWITCH = "PS_FAULT_STORE_FILE"
ALLOC_SWITCH = "PS_FAULT_ALLOC_FILE"


class FaultServer(Server):
    def start(self):
        import harness
        saved = harness.POLYSYNCD
        harness.POLYSYNCD = POLYSYNCD_FAULTS
        try:
            return super().start()
        finally:
            harness.POLYSYNCD = saved


class FaultTestCase(ServerTestCase):
    """self.server: a started polysyncd_faults whose switch SWITCH names."""

    SWITCH = STORE_SWITCH

    def setUp(self):
        self._servers = []
        self.assertTrue(POLYSYNCD_FAULTS and os.path.exists(POLYSYNCD_FAULTS),
                        "POLYSYNCD_FAULTS must name the polysyncd_faults binary")
        srv = FaultServer(())
        self._servers.append(srv)
        self.addCleanup(self._finish, srv)
        self.switch = os.path.join(srv.tmpdir, "alloc" if self.SWITCH == ALLOC_SWITCH else "fault")
        srv.env = {self.SWITCH: self.switch}
        self.server = srv.start()
        self.gen = 0

    def arm(self, n, kind=None):
        """The Nth call from now fails (with KIND, for the store)."""
        self.gen += 1
        with open(self.switch + ".tmp", "w") as f:
            f.write("%d %d%s\n" % (self.gen, n, " " + kind if kind else ""))
        os.replace(self.switch + ".tmp", self.switch)

    def disarm(self):
        if os.path.exists(self.switch):
            os.remove(self.switch)

    def faults_logged(self):
        return FIRED.findall(self.server.stderr_text())
