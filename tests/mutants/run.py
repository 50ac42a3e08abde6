#!/usr/bin/env python3
"""Mutation check: does `make test` catch these deliberate bugs?

Each mutant is one small textual edit of src/ that breaks a guarantee the
project promises (docs/testing.md, "Mutants"). The script copies the work
tree (tracked and new files, not the build folders) to a scratch folder,
configures one release build there, then for each mutant in turn: applies
the edit, rebuilds, runs every ctest suite (what `make test` runs), records
which suites failed, and restores the file. A mutant is CAUGHT when at least
one suite fails, SURVIVED when all pass; a mutant whose text is no longer
found in the source (the code moved on) or that does not build is an ERROR:
update the mutant, do not drop it.

usage: tests/mutants/run.py [--scratch DIR] [--jobs N] [--only NAME ...]
                            [--baseline]
Exit status 0 only when every mutant was caught.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# (name, file, original text, replacement, the guarantee it breaks).
# The original text must occur exactly once in the file.
MUTANTS = [
    ("stamp-order-inverted", "src/core/chat.c",
     "int ps__stamp_cmp(const ps_stamp *a, const ps_stamp *b)\n{",
     "static int mutant_stamp_cmp(const ps_stamp *a, const ps_stamp *b);\n"
     "int ps__stamp_cmp(const ps_stamp *a, const ps_stamp *b)\n"
     "{\n    return -mutant_stamp_cmp(a, b);\n}\n"
     "static int mutant_stamp_cmp(const ps_stamp *a, const ps_stamp *b)\n{",
     "last writer wins: the OLDEST write wins instead"),
    ("union-drops-message", "src/core/merge.c",
     "        if (c < 0) {\n            out[n++] = into->messages[i++];",
     "        if (c < 0) {\n            ps__message_release(&into->messages[i++]);",
     "messages are a set by id, never lost: a message only the stored side has is dropped"),
    ("private-messages-kept", "src/core/chat_codec.c",
     "static bool is_private(json_object *msg)\n{",
     "static bool is_private(json_object *msg)\n{\n    (void)msg;\n    return false;",
     "isPrivate messages are never stored or sent"),
    ("synchronous-lowered", "src/store/store_sqlite.c",
     "PRAGMA synchronous=FULL", "PRAGMA synchronous=NORMAL",
     "200 means durable: the WAL is no longer synced by each commit"),
    ("tombstone-check-skipped", "src/core/chat.c",
     "    if (!chat->has_tombstone)\n        return newest != NULL;",
     "    return newest != NULL;",
     "a deleted chat stays deleted unless a newer change: deletions ignored"),
    # libjwt itself refuses "none" when given a key, so the bug takes two
    # steps: read an unsigned token without the key, and let its alg pass.
    ("alg-none-accepted", "src/server/auth.c",
     "    if (jwt_decode(&jwt, token, a->key, (int)a->key_len) != 0 || !jwt) {\n"
     "        rc = invalid(err, \"the token is malformed or its signature is wrong\");\n"
     "        goto out;\n"
     "    }\n"
     "    /* libjwt reads \"alg\" without regard to case (\"hs256\" passes as HS256);\n"
     "     * RFC 7515 names are case-sensitive, so the header is compared here. */\n"
     "    const char *alg = jwt_get_header(jwt, \"alg\");\n"
     "    if (jwt_get_alg(jwt) != a->alg || !alg || strcmp(alg, jwt_alg_str(a->alg)) != 0) {\n",
     "    if (jwt_decode(&jwt, token, a->key, (int)a->key_len) != 0 || !jwt) {\n"
     "        jwt_free(jwt);\n"
     "        jwt = NULL;\n"
     "        if (jwt_decode(&jwt, token, NULL, 0) != 0 || !jwt ||\n"
     "            jwt_get_alg(jwt) != JWT_ALG_NONE) {\n"
     "            rc = invalid(err, \"the token is malformed or its signature is wrong\");\n"
     "            goto out;\n"
     "        }\n"
     "    }\n"
     "    const char *alg = jwt_get_header(jwt, \"alg\");\n"
     "    if (jwt_get_alg(jwt) != JWT_ALG_NONE &&\n"
     "        (jwt_get_alg(jwt) != a->alg || !alg || strcmp(alg, jwt_alg_str(a->alg)) != 0)) {\n",
     "one configured JWT algorithm: unsigned (alg none) tokens accepted"),
    ("no-op-poll-recounts", "src/server/devices.c",
     "            if (slot->key == key)\n                slot->acked_seq = acked_seq;\n",
     "",
     "a v2 device that only polls costs no store call: each poll counts the tombstones again"),
]

FAILED_LINE = re.compile(r"^\s*\d+\s+-\s+(\S+)\s+\((.+)\)\s*$")


def sh(cmd, cwd, log, timeout=None):
    with open(log, "ab") as out:
        out.write(("\n$ %s\n" % " ".join(cmd)).encode())
        out.flush()
        return subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout).returncode


def copy_tree(dest):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, stdout=subprocess.PIPE).stdout.split(b"\0")
    for f in files:
        if not f:
            continue
        rel = f.decode()
        src = os.path.join(ROOT, rel)
        if not os.path.isfile(src):
            continue   # deleted in the work tree
        dst = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)


def run_suites(build, jobs, log):
    """ctest over every suite; returns (exit code, [failed suite (reason)])."""
    with open(log, "ab") as out:
        out.write(b"\n$ ctest\n")
    p = subprocess.run(["ctest", "-j", str(jobs)], cwd=build, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    text = p.stdout.decode("utf-8", "replace")
    with open(log, "ab") as out:
        out.write(p.stdout)
    failed, in_list = [], False
    for line in text.splitlines():
        if line.startswith("The following tests FAILED"):
            in_list = True
            continue
        m = FAILED_LINE.match(line) if in_list else None
        if m:
            failed.append("%s (%s)" % (m.group(1), m.group(2)))
    return p.returncode, failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scratch", default=os.path.join(ROOT, "build-mutants"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", nargs="*", help="mutant names to run (default: all)")
    ap.add_argument("--baseline", action="store_true",
                    help="first run the suites unmutated (they must pass)")
    args = ap.parse_args()

    src = os.path.join(args.scratch, "src")
    build = os.path.join(args.scratch, "build")
    log = os.path.join(args.scratch, "mutants.log")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(args.scratch, exist_ok=True)
    open(log, "wb").close()
    copy_tree(src)
    # ../shared beside the repository (the Polyglot fixtures that
    # test_polyglot_fixtures and polyglot.app_model read): beside the copy
    # too, or those suites fail for every mutant and count as catching it
    shared, beside = os.path.join(os.path.dirname(ROOT), "shared"), \
        os.path.join(args.scratch, "shared")
    if os.path.isdir(shared) and not os.path.lexists(beside):
        os.symlink(shared, beside)
    print("mutants: scratch copy in %s, log in %s" % (src, log), flush=True)
    if sh(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], src, log) or \
            sh(["cmake", "--build", build, "-j", str(args.jobs)], src, log):
        print("mutants: the unmutated tree does not build (see the log)")
        return 2
    if args.baseline:
        rc, failed = run_suites(build, args.jobs, log)
        if rc:
            print("mutants: the unmutated suites fail: %s" % ", ".join(failed))
            return 2
        print("mutants: baseline: every suite passes", flush=True)

    chosen = [m for m in MUTANTS if not args.only or m[0] in args.only]
    results = []
    for name, rel, old, new, what in chosen:
        path = os.path.join(src, rel)
        with open(path, encoding="utf-8") as f:
            original = f.read()
        t0 = time.monotonic()
        if original.count(old) != 1:
            results.append((name, "ERROR", "its text occurs %d times in %s (update the mutant)"
                            % (original.count(old), rel), 0.0))
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original.replace(old, new))
            try:
                if sh(["cmake", "--build", build, "-j", str(args.jobs)], src, log):
                    results.append((name, "ERROR", "does not build (see the log)", 0.0))
                else:
                    rc, failed = run_suites(build, args.jobs, log)
                    if rc and failed:
                        results.append((name, "CAUGHT", ", ".join(failed), time.monotonic() - t0))
                    elif rc:
                        results.append((name, "ERROR", "ctest failed without naming a suite",
                                        time.monotonic() - t0))
                    else:
                        results.append((name, "SURVIVED", "every suite passed: " + what,
                                        time.monotonic() - t0))
            finally:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(original)
        r = results[-1]
        print("mutants: %-26s %-8s %5.0f s  %s" % (r[0], r[1], r[3], r[2]), flush=True)
    # leave the scratch build matching the source again
    sh(["cmake", "--build", build, "-j", str(args.jobs)], src, log)

    print("\n| mutant | breaks | result | failing suites |\n|---|---|---|---|")
    for (name, rel, old, new, what), (_, verdict, detail, _) in zip(chosen, results):
        print("| `%s` | %s | %s | %s |" % (name, what, verdict, detail))
    bad = [r for r in results if r[1] != "CAUGHT"]
    print("\nmutants: %d of %d caught" % (len(results) - len(bad), len(results)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
