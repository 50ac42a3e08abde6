/*
 * `polysyncd backup DEST` (a consistent copy of a live SQLite store, made
 * with SQLite's online backup API; for PostgreSQL it prints the pg_dump
 * recipe) and `polysyncd restore SRC` (offline: refused while a server holds
 * the store; the copy is checked first and the old store kept aside).
 * docs/operations.md has the runbook.
 */
#ifndef PS_POLYSYNCD_BACKUP_H
#define PS_POLYSYNCD_BACKUP_H

#include <stdbool.h>

/* argv[0] is "backup" or "restore". Returns the exit code. */
int ps_backup_main(int argc, char **argv);

/*
 * The server's claim on a SQLite store (`sqlite:PATH` URLs; others need
 * none): a shared flock(2) on the database file, held until exit, so that
 * restore (which needs it exclusively) can tell a running server is there.
 * Returns false (and says why on stderr) when a restore holds the store.
 */
bool ps_store_claim(const char *db_url);

#endif
