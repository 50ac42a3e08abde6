/* backup and restore of the store; see polysyncd_backup.h. */
#include "cli/polysyncd_backup.h"
#include "cli/polysyncd_opts.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DB "sqlite:./data/polysync.db"
/* Pages per backup step: 1,024 pages of 16 KiB = 16 MiB, so a step holds
 * the source's read lock for a few milliseconds. In WAL mode no step ever
 * blocks the server's writers; between steps the server's commits make the
 * backup start over, so after a few restarts the rest is copied in one step
 * (still a reader only: writers go on, the copy is the snapshot it began). */
#define STEP_PAGES 1024
#define RESTARTS_BEFORE_ONE_STEP 3

static void usage(FILE *f)
{
    fprintf(f,
            "Usage:\n"
            "  polysyncd backup DEST [--db URL]    consistent copy of the live store\n"
            "  polysyncd restore SRC [--db URL]    replace the store (server stopped)\n"
            "The default store is %s. docs/operations.md: the runbook.\n",
            DEFAULT_DB);
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *sqlite_path(const char *url)
{
    return strncmp(url, "sqlite:", 7) == 0 ? url + 7 : NULL;
}

static bool is_postgres(const char *url)
{
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0 ||
           strncmp(url, "postgres:", 9) == 0;
}

/* fsync of a file, then of its folder (so a rename is durable too). */
static bool sync_path(const char *path, bool folder_too)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    if (ok && folder_too) {
        char copy[PATH_MAX];
        snprintf(copy, sizeof copy, "%s", path);
        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return false;
        ok = fsync(fd) == 0;
        close(fd);
    }
    return ok;
}

/* Copies the database `from` into `to` (created), step by step. */
static int copy_database(sqlite3 *from, sqlite3 *to, bool steps, int64_t *longest_step_us)
{
    sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
    if (!b)
        return sqlite3_errcode(to);
    int rc, restarts = 0, last_remaining = -1;
    *longest_step_us = 0;
    do {
        int pages = steps && restarts < RESTARTS_BEFORE_ONE_STEP ? STEP_PAGES : -1;
        int64_t t0 = now_us();
        rc = sqlite3_backup_step(b, pages);
        int64_t took = now_us() - t0;
        if (took > *longest_step_us)
            *longest_step_us = took;
        int remaining = sqlite3_backup_remaining(b);
        if (last_remaining >= 0 && remaining > last_remaining)
            restarts++; /* the source changed under us: SQLite started over */
        last_remaining = remaining;
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
            sqlite3_sleep(10);
            rc = SQLITE_OK;
        }
    } while (rc == SQLITE_OK);
    int fin = sqlite3_backup_finish(b);
    return rc == SQLITE_DONE ? fin : rc;
}

/* PRAGMA integrity_check on `db`: true when it answers "ok". */
static bool check_integrity(sqlite3 *db, const char *what)
{
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *answer = (const char *)sqlite3_column_text(st, 0);
        ok = answer && strcmp(answer, "ok") == 0;
        if (!ok)
            fprintf(stderr, "polysyncd: %s fails its integrity check: %s\n", what,
                    answer ? answer : "(no answer)");
    } else {
        fprintf(stderr, "polysyncd: %s cannot be checked: %s\n", what, sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    if (!ok)
        return false;
    /* and it is a polysync store, not any SQLite file */
    ok = sqlite3_prepare_v2(db, "SELECT count(*) FROM users", -1, &st, NULL) == SQLITE_OK &&
         sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!ok)
        fprintf(stderr, "polysyncd: %s is not a polysync store (no users table)\n", what);
    return ok;
}

static sqlite3 *open_db(const char *path, int flags, const char *what)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        fprintf(stderr, "polysyncd: cannot open %s %s: %s\n", what, path,
                db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* Makes `to` from `from`: into TO.partial, checked, 0600, synced, renamed. */
static int copy_store(const char *from, const char *to, bool steps)
{
    char partial[PATH_MAX];
    if (snprintf(partial, sizeof partial, "%s.partial", to) >= (int)sizeof partial) {
        fprintf(stderr, "polysyncd: path too long: %s\n", to);
        return 1;
    }
    unlink(partial);
    int fd = open(partial, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "polysyncd: cannot create %s: %s\n", partial, strerror(errno));
        return 1;
    }
    close(fd);
    int status = 1;
    sqlite3 *src = open_db(from, SQLITE_OPEN_READWRITE, "store");
    sqlite3 *dst = open_db(partial, SQLITE_OPEN_READWRITE, "copy");
    if (!src || !dst)
        goto done;
    int64_t t0 = now_us(), longest = 0;
    int rc = copy_database(src, dst, steps, &longest);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "polysyncd: copy failed: %s\n", sqlite3_errstr(rc));
        goto done;
    }
    /* the copy keeps the WAL mode of its source: fold it into one file */
    sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    if (!check_integrity(dst, "the copy"))
        goto done;
    sqlite3_close(dst);
    dst = NULL;
    if (!sync_path(partial, false) || rename(partial, to) != 0 || !sync_path(to, true)) {
        fprintf(stderr, "polysyncd: cannot put the copy at %s: %s\n", to, strerror(errno));
        goto done;
    }
    fprintf(stderr, "polysyncd: copied %s to %s in %.1f s (longest step %.1f ms)\n", from, to,
            (double)(now_us() - t0) / 1e6, (double)longest / 1000.0);
    status = 0;
done:
    sqlite3_close(src);
    sqlite3_close(dst);
    if (status != 0)
        unlink(partial);
    return status;
}

static int backup(const char *db_url, const char *dest)
{
    if (is_postgres(db_url)) {
        printf("The store is PostgreSQL: back it up with its own tools, e.g.\n"
               "  pg_dump --format=custom --file '%s' '%s'\n"
               "and restore with\n"
               "  pg_restore --clean --if-exists --dbname '<URL>' '%s'\n"
               "(docs/operations.md).\n",
               dest, db_url, dest);
        return 2;
    }
    const char *path = sqlite_path(db_url);
    if (!path) {
        fprintf(stderr, "polysyncd: unknown store URL %s\n", db_url);
        return 1;
    }
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "polysyncd: no store at %s\n", path);
        return 1;
    }
    return copy_store(path, dest, true);
}

/* An exclusive flock(2) on `path`: fails while a server holds its shared one. */
static int lock_exclusive(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -2 : -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int restore(const char *db_url, const char *src)
{
    if (is_postgres(db_url)) {
        printf("The store is PostgreSQL: restore a pg_dump copy with\n"
               "  pg_restore --clean --if-exists --dbname '%s' '%s'\n",
               db_url, src);
        return 2;
    }
    const char *path = sqlite_path(db_url);
    if (!path) {
        fprintf(stderr, "polysyncd: unknown store URL %s\n", db_url);
        return 1;
    }
    /* the copy first: nothing is touched if it is bad */
    sqlite3 *check = open_db(src, SQLITE_OPEN_READONLY, "backup");
    bool good = check && check_integrity(check, src);
    sqlite3_close(check);
    if (!good)
        return 1;
    int lock = lock_exclusive(path);
    if (lock == -1) {
        fprintf(stderr,
                "polysyncd: the store %s is in use (is polysyncd running?); stop the "
                "server, then restore\n",
                path);
        return 1;
    }
    char aside[PATH_MAX], incoming[PATH_MAX];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(aside, sizeof aside, "%s.before-restore-%s", path, stamp);
    snprintf(incoming, sizeof incoming, "%s.restoring", path);
    int status = copy_store(src, incoming, false);
    if (status == 0 && lock >= 0) {
        /* the old store (and its WAL, which belongs to it) goes aside whole */
        const char *suffixes[] = {"-wal", ""};
        for (unsigned i = 0; i < 2 && status == 0; i++) {
            char from[PATH_MAX + 8], to[PATH_MAX + 8];
            snprintf(from, sizeof from, "%s%s", path, suffixes[i]);
            snprintf(to, sizeof to, "%s%s", aside, suffixes[i]);
            if (rename(from, to) != 0 && errno != ENOENT) {
                fprintf(stderr, "polysyncd: cannot move %s aside: %s\n", from, strerror(errno));
                status = 1;
            }
        }
        char shm[PATH_MAX + 8];
        snprintf(shm, sizeof shm, "%s-shm", path);
        unlink(shm); /* an index of the old WAL: stale for the new file */
    }
    if (status == 0 && (rename(incoming, path) != 0 || !sync_path(path, true))) {
        fprintf(stderr, "polysyncd: cannot put the restored store at %s: %s\n", path,
                strerror(errno));
        status = 1;
    }
    if (status != 0)
        unlink(incoming);
    else if (lock >= 0)
        printf("restored %s from %s; the old store is kept at %s\n", path, src, aside);
    else
        printf("restored %s from %s\n", path, src);
    if (lock >= 0)
        close(lock);
    return status;
}

int ps_backup_main(int argc, char **argv)
{
    const char *db_url = DEFAULT_DB;
    const ps_subopt opts[] = {{"db", &db_url, NULL}, {NULL, NULL, NULL}};
    int first;
    switch (ps_subopt_parse(argc, argv, opts, &first)) {
    case PS_SUBOPT_OK:
        break;
    case PS_SUBOPT_HELP:
        usage(stdout);
        return 0;
    case PS_SUBOPT_BAD:
        usage(stderr);
        return 1;
    }
    if (first != argc - 1) {
        usage(stderr);
        return 1;
    }
    const char *target = argv[first];
    return strcmp(argv[0], "backup") == 0 ? backup(db_url, target) : restore(db_url, target);
}

bool ps_store_claim(const char *db_url)
{
    const char *path = sqlite_path(db_url);
    if (!path)
        return true;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true; /* the store opened it just now: nothing to claim against */
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        fprintf(stderr,
                "polysyncd: the store %s is being restored; start again when the "
                "restore is done\n",
                path);
        close(fd);
        return false;
    }
    return true; /* fd stays open, and the lock held, until the process ends */
}
