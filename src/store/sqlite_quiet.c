/* Users' rows noted with the WAL-index header they were read under; see
 * sqlite_quiet.h. */
#include "store/sqlite_quiet.h"
#include "core/hash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Users noted at once (direct-mapped by name: a user whose slot another
 * took is read in a transaction, as before this memo). */
#define SLOTS 256
/* The first region of the index, where the header is (walformat.html). */
#define INDEX_REGION_BYTES 32768
/* In the header: the byte set once the header was written (isInit). */
#define HEADER_IS_INIT_BYTE 12

typedef struct slot {
    char *name; /* NULL: empty */
    ps_quiet_stamp at;
    ps_user user;
} slot;

struct ps_quiet {
    /* The index's first region, as SQLite mapped it for the connection;
     * NULL: cannot tell. */
    const volatile uint32_t *index;
    pthread_mutex_t lock; /* guards slots */
    slot slots[SLOTS];
};

static bool in_wal_mode(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    bool wal = false;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        wal = mode && strcmp(mode, "wal") == 0;
    }
    sqlite3_finalize(st);
    return wal;
}

/* The header's region through the VFS's own shared-memory method (the
 * region the connection's transactions read the header from), without
 * extending it: a store never opened in WAL mode gets none. */
static const volatile uint32_t *map_index(sqlite3 *db)
{
    sqlite3_file *file = NULL;
    if (!in_wal_mode(db) ||
        sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK || !file ||
        !file->pMethods || file->pMethods->iVersion < 2 || !file->pMethods->xShmMap)
        return NULL;
    void volatile *region = NULL;
    if (file->pMethods->xShmMap(file, 0, INDEX_REGION_BYTES, 0, &region) != SQLITE_OK)
        return NULL;
    return (const volatile uint32_t *)region;
}

ps_quiet *ps__quiet_new(sqlite3 *db)
{
    ps_quiet *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    q->index = map_index(db);
    return q;
}

void ps__quiet_free(ps_quiet *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < SLOTS; i++)
        free(q->slots[i].name);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

bool ps__quiet_stamp(const ps_quiet *q, ps_quiet_stamp *out)
{
    enum { WORDS = sizeof out->words / sizeof out->words[0] };
    if (!q || !q->index)
        return false;
    /* As SQLite's readers do (walIndexTryHdr): the first copy, a barrier,
     * then the second; a writer writes them in the other order, so equal
     * copies are one whole header. */
    uint32_t second[WORDS];
    for (size_t i = 0; i < WORDS; i++)
        out->words[i] = q->index[i];
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (size_t i = 0; i < WORDS; i++)
        second[i] = q->index[WORDS + i];
    return memcmp(out->words, second, sizeof second) == 0 &&
           ((const unsigned char *)out->words)[HEADER_IS_INIT_BYTE] == 1;
}

static slot *slot_of(ps_quiet *q, const char *name)
{
    return &q->slots[ps__hash_bytes(name, strlen(name)) % SLOTS];
}

void ps__quiet_note(ps_quiet *q, const char *name, const ps_quiet_stamp *at, const ps_user *user)
{
    if (!q || !q->index)
        return;
    slot *s = slot_of(q, name);
    pthread_mutex_lock(&q->lock);
    if (!s->name || strcmp(s->name, name) != 0) {
        char *copy = strdup(name);
        if (!copy) { /* out of memory: not noted, read next time */
            pthread_mutex_unlock(&q->lock);
            return;
        }
        free(s->name);
        s->name = copy;
    }
    s->at = *at;
    s->user = *user;
    pthread_mutex_unlock(&q->lock);
}

bool ps__quiet_get(ps_quiet *q, const char *name, ps_user *out)
{
    ps_quiet_stamp now;
    if (!ps__quiet_stamp(q, &now))
        return false;
    slot *s = slot_of(q, name);
    pthread_mutex_lock(&q->lock);
    bool hit = s->name && strcmp(s->name, name) == 0 && memcmp(&s->at, &now, sizeof now) == 0;
    if (hit)
        *out = s->user;
    pthread_mutex_unlock(&q->lock);
    return hit;
}
