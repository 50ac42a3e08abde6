/* WAL checkpoints on a thread of their own; see sqlite_checkpointer.h. */
#include "store/sqlite_checkpointer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SQLite's default wal_autocheckpoint: a commit leaving this many pages in
 * the log asks for a checkpoint. */
#define CHECKPOINT_PAGES 1000

struct ps_checkpointer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool due, stopping; /* guarded by lock */
    char *path;
};

/* The writer's commit hook (runs on the committing thread, its lock held):
 * only flags the work. */
static int after_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    ps_checkpointer *c = arg;
    if (pages >= CHECKPOINT_PAGES) {
        pthread_mutex_lock(&c->lock);
        c->due = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
    }
    return SQLITE_OK;
}

static void *run(void *arg)
{
    ps_checkpointer *c = arg;
    sqlite3 *db = NULL;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->due && !c->stopping)
            pthread_cond_wait(&c->wake, &c->lock);
        if (c->stopping)
            break;
        c->due = false;
        pthread_mutex_unlock(&c->lock);
        /* opened at the first checkpoint: a store that never grows its log
         * (a CLI command, a quiet server) never pays for it */
        if (!db && sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                                   NULL) == SQLITE_OK) {
            sqlite3_busy_timeout(db, 1000);
            /* the checkpoint syncs the log before copying it and the file
             * after, as the writer's own would have */
            sqlite3_exec(db, "PRAGMA synchronous=FULL; PRAGMA mmap_size=0", NULL, NULL, NULL);
        }
        /* PASSIVE: copies what no reader still needs and never waits for
         * readers or the writer; what it leaves, the next one takes. A
         * failure is left for the next commit to retry (as SQLite's own
         * automatic checkpoint would). */
        if (db && sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) !=
                      SQLITE_OK &&
            sqlite3_errcode(db) != SQLITE_BUSY)
            fprintf(stderr, "polysyncd: WAL checkpoint failed: %s\n", sqlite3_errmsg(db));
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    sqlite3_close(db);
    return NULL;
}

ps_checkpointer *ps__checkpointer_start(const char *path, sqlite3 *writer)
{
    ps_checkpointer *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (pthread_create(&c->thread, NULL, run, c) != 0) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->wake);
        free(c->path);
        free(c);
        return NULL;
    }
    sqlite3_wal_hook(writer, after_commit, c);
    return c;
}

void ps__checkpointer_stop(ps_checkpointer *c, sqlite3 *writer)
{
    if (!c)
        return;
    if (writer)
        sqlite3_wal_autocheckpoint(writer, CHECKPOINT_PAGES); /* SQLite's hook again */
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c->path);
    free(c);
}
