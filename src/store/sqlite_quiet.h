/*
 * Users' rows as the store's last commit left them, for the v2 syncs that
 * find nothing new (a device polling: the commonest request), answered
 * without a read transaction.
 *
 * Why: a read transaction of a WAL store takes and drops a shared lock on
 * a read mark of the log's index — a fcntl() each way, under a mutex every
 * reader thread of the process shares — which was a quarter of a no-op
 * sync's server CPU (perf of 16 connections of no-op syncs,
 * docs/performance.md, "quiet polls").
 *
 * How it stays exact: every commit to the store — of this process or of
 * another, such as `polysyncd import` on a live store — rewrites the
 * WAL-index header, the 48 bytes (kept twice) at the start of the shared
 * memory all connections map (https://www.sqlite.org/walformat.html): its
 * frame count grows, or the log restarts with new salts. A row is noted
 * with the header read *before* the transaction that read it began, and
 * given back only while the header still reads the same: nothing was
 * committed since, so the row is what a transaction begun now would read.
 * A header being rewritten (its two copies differ) or a store not in WAL
 * mode is "cannot tell": the caller reads in a transaction.
 */
#ifndef PS_SQLITE_QUIET_H
#define PS_SQLITE_QUIET_H

#include "store/store.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct ps_quiet ps_quiet;

/* A WAL-index header as read at one moment. */
typedef struct ps_quiet_stamp {
    uint32_t words[12];
} ps_quiet_stamp;

/* For the store `db` (a connection kept open as long as the memo: its
 * mapping of the log's index is read). NULL when out of memory; a memo
 * that cannot read the index (not WAL mode) never gives a row back. */
ps_quiet *ps__quiet_new(sqlite3 *db);
void ps__quiet_free(ps_quiet *q);

/* The header now; false when it cannot be told (being rewritten, or no
 * index). Thread-safe: reads shared memory only. */
bool ps__quiet_stamp(const ps_quiet *q, ps_quiet_stamp *out);

/* Notes the row `user` of `name`, read in a transaction begun after `at`
 * was stamped. */
void ps__quiet_note(ps_quiet *q, const char *name, const ps_quiet_stamp *at, const ps_user *user);

/* The row of `name` as noted, when the header still reads as it did then;
 * false otherwise (read it in a transaction). */
bool ps__quiet_get(ps_quiet *q, const char *name, ps_user *out);

#endif
