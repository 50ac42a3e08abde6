"""The data-driven protocol cases, through a real polysyncd:
tests/cases/protocol/*.json, request(s) and the expected answers (format in
tests/cases/protocol/README.md), one fresh server per case. The
expectations are the case files', written by hand from the docs. (The
shared merge cases go through /v2/sync in test_merge_cases.py.)
"""
import json
import os
import unittest

from harness import ServerTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.environ.get("PS_CASES_DIR") or os.path.normpath(os.path.join(HERE, "..", "cases"))
ANY, ABSENT = "<any>", "<absent>"


def case_files(kind):
    folder = os.path.join(CASES, kind)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".json"))


def mismatch(pattern, value, where="answer"):
    """None if `value` matches `pattern` (README.md), else where it does not."""
    if pattern == ANY:
        return None
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return "%s: want an object, got %r" % (where, value)
        for k, p in pattern.items():
            if k == ABSENT:
                present = [a for a in p if a in value]
                if present:
                    return "%s: must not have %s" % (where, present)
                continue
            if k not in value:
                return "%s: no key %r" % (where, k)
            m = mismatch(p, value[k], "%s.%s" % (where, k))
            if m:
                return m
        return None
    if isinstance(pattern, list):
        if not isinstance(value, list) or len(value) != len(pattern):
            return "%s: want %d elements, got %r" % (where, len(pattern), value)
        for i, (p, v) in enumerate(zip(pattern, value)):
            m = mismatch(p, v, "%s[%d]" % (where, i))
            if m:
                return m
        return None
    if pattern != value or type(pattern) is not type(value):
        return "%s: want %r, got %r" % (where, pattern, value)
    return None


def substitute(value, captured):
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return captured[value[2:-1]]
    if isinstance(value, dict):
        return {k: substitute(v, captured) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, captured) for v in value]
    return value


class ProtocolCasesTest(ServerTestCase):

    def setUp(self):
        self._servers = []   # one server per case, started in the test

    def test_protocol_cases(self):
        files = case_files("protocol")
        self.assertTrue(files, "no protocol cases")
        for path in files:
            with self.subTest(case=os.path.basename(path)):
                with open(path) as f:
                    case = json.load(f)
                server = self.new_server(case.get("server_args", ()))
                captured = {}
                for n, step in enumerate(case["steps"]):
                    req = substitute(step["request"], captured)
                    raw = req.get("raw")
                    status, _, doc = server.request(
                        req["method"], req["path"], body=req.get("body"),
                        raw=raw.encode() if raw is not None else None, headers=req.get("headers"))
                    what = "%s step %d (%s %s)" % (os.path.basename(path), n, req["method"], req["path"])
                    self.assertEqual(status, step["expect"]["status"],
                                     "%s: %r" % (what, server.last_body[:300]))
                    if "body" in step["expect"]:
                        m = mismatch(step["expect"]["body"], doc)
                        self.assertIsNone(m, "%s: %s" % (what, m))
                    for name, key in step.get("capture", {}).items():
                        captured[name] = doc[key]
                server.stop()


if __name__ == "__main__":
    unittest.main()
