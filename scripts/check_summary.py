#!/usr/bin/env python3
"""The table at the end of `make check` (scripts/check.sh).

Reads LOGS/release.xml and LOGS/asan.xml (ctest --output-junit) and
LOGS/steps.tsv (the other steps), prints one row per suite and build: the
cases passed and failed inside it (cmocka's and unittest's own counts; a
suite that does not report cases counts as one) and its time. Exit status 1
when anything failed.
usage: check_summary.py LOGS
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

CMOCKA_RUN = re.compile(r"^\[=+\] (\d+) test\(s\) run\.", re.M)
CMOCKA_FAILED = re.compile(r"^\[  FAILED  \] (\d+) test\(s\)", re.M)
UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in", re.M)
UNITTEST_BAD = re.compile(r"^FAILED \(([^)]*)\)", re.M)


def cases(out, ok):
    """(passed, failed) cases from a suite's output; (1, 0) / (0, 1) if unknown."""
    m = CMOCKA_RUN.search(out)
    if m:
        run = int(m.group(1))
        f = CMOCKA_FAILED.search(out)
        bad = int(f.group(1)) if f else 0
        return run - bad, bad if ok or bad else max(bad, 1)
    m = UNITTEST_RAN.search(out)
    if m:
        run = int(m.group(1))
        bad = 0
        f = UNITTEST_BAD.search(out)
        if f:
            # "failures=2, errors=1" (subtest failures count once per test)
            bad = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", f.group(1)))
        bad = min(bad, run)
        if not ok and bad == 0:
            bad = 1   # crashed, timed out or failed outside the cases
        return run - bad, bad
    return (1, 0) if ok else (0, 1)


def suites(path, build):
    rows = []
    if not os.path.exists(path):
        return rows
    for tc in ET.parse(path).getroot().iter("testcase"):
        ok = tc.get("status") == "run" and tc.find("failure") is None
        out = "".join((e.text or "") for e in tc.iter("system-out"))
        passed, failed = cases(out, ok)
        rows.append(("%s %s" % (build, tc.get("name")), passed, failed,
                     float(tc.get("time") or 0), ok))
    return rows


def main():
    logs = sys.argv[1]
    rows = suites(os.path.join(logs, "release.xml"), "release")
    rows += suites(os.path.join(logs, "asan.xml"), "asan")
    try:
        with open(os.path.join(logs, "steps.tsv")) as f:
            for line in f:
                name, verdict, secs = line.rstrip("\n").split("\t")
                if name.startswith("ctest "):
                    continue   # its suites are the rows above
                ok = verdict == "ok"
                rows.append(("step " + name, 1 if ok else 0, 0 if ok else 1, float(secs), ok))
    except FileNotFoundError:
        pass
    width = max([len(r[0]) for r in rows] + [5])
    print("\n%-*s  %6s  %6s  %8s" % (width, "suite", "passed", "failed", "time"))
    print("-" * (width + 26))
    for name, passed, failed, secs, ok in rows:
        print("%-*s  %6d  %6d  %7.1fs%s" % (width, name, passed, failed, secs, "" if ok else "  <-- FAILED"))
    print("-" * (width + 26))
    total_p = sum(r[1] for r in rows)
    total_f = sum(r[2] for r in rows)
    bad = [r for r in rows if not r[4]]
    print("%-*s  %6d  %6d  %7.1fs" % (width, "total", total_p, total_f, sum(r[3] for r in rows)))
    if not any(r[0].startswith("release ") for r in rows) or not any(r[0].startswith("asan ") for r in rows):
        print("check: a build's suites did not run")
        bad.append(None)
    print("check: %s" % ("FAILED: " + ", ".join(r[0] for r in bad if r) if bad else "all passed"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
