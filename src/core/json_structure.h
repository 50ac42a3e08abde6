/*
 * Whether JSON text is well formed in its structure: exactly one value, its
 * brackets matched, one ',' between two elements or members and none
 * trailing, a ':' after each key and keys that are strings, nesting at
 * most max_depth containers deep. Strings are only crossed (an escape
 * never ends one), and scalars only delimited: their text is another
 * reader's to check.
 *
 * Why: a legacy chat re-sent as the same data in other bytes is skipped by
 * its content hash (server/content_hash.h), which was read by simdjson's
 * On-Demand parser, which does not check the structure of everything it
 * steps over: `[{"id":"m1"},{"id":"m2"}]` with its first '{' missing
 * hashed. The content hash asked this first. Since 2026-12-03 it walks
 * simdjson's stage-1 tokens through this module's grammar itself (one
 * scan of the bytes, not two; docs/performance.md, "bytes: ..."), and this
 * check stays as the structure check of the tests' On-Demand reference
 * (tests/unit/content_hash_ondemand.cpp) and of psbench_structure.
 *
 * Why hand-written: the libraries' validation costs more where it counts,
 * measured on the reference history (docs/performance.md, "tidy: the
 * structure check against the libraries"): simdjson's DOM parse 1.85x this
 * check, json-c's tokener 10x. Judged by Python's json module in
 * tests/unit/structure_oracle.py.
 */
#ifndef PS_JSON_STRUCTURE_H
#define PS_JSON_STRUCTURE_H

#include <stdbool.h>
#include <stddef.h>

bool ps__json_structure_ok(const char *text, size_t len, int max_depth);
/* The same without AVX2, whatever the processor (for the tests: both
 * paths must agree). */
bool ps__json_structure_ok_baseline(const char *text, size_t len, int max_depth);

#endif
