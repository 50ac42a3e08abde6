/*
 * WAL checkpoints of a SQLite store, off the request path: a thread with
 * a connection of its own copies the write-ahead log into the database
 * file once a commit leaves it long (SQLite's own threshold, 1,000
 * pages), instead of the committing request doing it before its answer.
 *
 * Why: SQLite's automatic checkpoint runs inside sqlite3_step(COMMIT) of
 * the transaction that crossed the threshold, so that request's answer
 * waited for the log's pages to be copied and the database file synced:
 * 8 % of a first upload of a 63 MB history (docs/performance.md,
 * "upload: ..."). Durability is unchanged: a commit syncs the log
 * (synchronous=FULL) before the answer either way; the checkpoint only
 * moves committed pages from the log into the file. The last connection
 * to close still checkpoints and removes the log, so the checkpointer is
 * stopped before the store's own connections close.
 */
#ifndef PS_SQLITE_CHECKPOINTER_H
#define PS_SQLITE_CHECKPOINTER_H

#include "polysync/error.h"

#include <sqlite3.h>

typedef struct ps_checkpointer ps_checkpointer;

/* Starts the thread for the store file `path` and makes `writer`'s commits
 * wake it (sqlite3_wal_hook, which replaces SQLite's automatic checkpoint on
 * that connection). NULL when out of memory or no thread could start: then
 * `writer` keeps SQLite's automatic checkpoints. */
ps_checkpointer *ps__checkpointer_start(const char *path, sqlite3 *writer);
/* Stops and joins the thread (a checkpoint under way finishes first) and
 * gives `writer` SQLite's automatic checkpoint back. NULL: nothing. */
void ps__checkpointer_stop(ps_checkpointer *c, sqlite3 *writer);

#endif
