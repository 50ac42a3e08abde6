/*
 * What the SQLite backend writes for a big write transaction (a first
 * upload of many chats), seen from below: a VFS shim registered as the
 * default counts the statement journals SQLite spills to files and which
 * thread syncs the database file.
 *
 * - No statement journal per row: an INSERT OR REPLACE into a table with foreign
 *   keys is a multi-write statement, and SQLite saved every page it
 *   touched (already dirty in the transaction) to a sub-journal file
 *   first: 5.4 GB written for a 63 MB upload. The store's writes are
 *   upserts; this counts the bytes written to sub-journal files.
 * - The checkpoint is not the committing request's: the database file
 *   (not the log, which every commit syncs) is synced only by a
 *   checkpoint, and that must happen on another thread
 *   (store/sqlite_checkpointer.h), soon after a commit that left the log
 *   long, while the commit itself returned without it.
 * Both fail with the store as it was (REPLACE statements; SQLite's own
 * automatic checkpoint inside COMMIT).
 */
#include "test_util.h"

#include "core/json_compact.h"
#include "store/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <unistd.h>

static sqlite3_vfs *real_vfs;
static atomic_llong subjournal_bytes, wal_bytes;
static atomic_int main_db_syncs_here, main_db_syncs_elsewhere;
static pthread_t test_thread;

typedef struct shim_file {
    sqlite3_file base;
    int flags;
    sqlite3_file *real; /* follows this struct in the same allocation */
} shim_file;

static int shim_close(sqlite3_file *f)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods ? s->real->pMethods->xClose(s->real) : SQLITE_OK;
}
#define REAL(f) (((shim_file *)(f))->real)
static int shim_read(sqlite3_file *f, void *p, int n, sqlite3_int64 o)
{
    return REAL(f)->pMethods->xRead(REAL(f), p, n, o);
}
static int shim_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 o)
{
    int flags = ((shim_file *)f)->flags;
    if (flags & SQLITE_OPEN_SUBJOURNAL)
        atomic_fetch_add(&subjournal_bytes, n);
    else if (flags & SQLITE_OPEN_WAL)
        atomic_fetch_add(&wal_bytes, n);
    return REAL(f)->pMethods->xWrite(REAL(f), p, n, o);
}
static int shim_truncate(sqlite3_file *f, sqlite3_int64 n)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), n);
}
static int shim_sync(sqlite3_file *f, int flags)
{
    if (((shim_file *)f)->flags & SQLITE_OPEN_MAIN_DB) {
        if (pthread_equal(pthread_self(), test_thread))
            atomic_fetch_add(&main_db_syncs_here, 1);
        else
            atomic_fetch_add(&main_db_syncs_elsewhere, 1);
    }
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int shim_size(sqlite3_file *f, sqlite3_int64 *n)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), n);
}
static int shim_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int shim_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int shim_reserved(sqlite3_file *f, int *r)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), r);
}
static int shim_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int shim_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int shim_chars(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int shim_shm_map(sqlite3_file *f, int i, int sz, int ext, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), i, sz, ext, pp);
}
static int shim_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void shim_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int shim_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

/* Version 2 methods (no memory mapping: the store sets mmap_size=0). */
static const sqlite3_io_methods SHIM_IO = {
    .iVersion = 2,
    .xClose = shim_close,
    .xRead = shim_read,
    .xWrite = shim_write,
    .xTruncate = shim_truncate,
    .xSync = shim_sync,
    .xFileSize = shim_size,
    .xLock = shim_lock,
    .xUnlock = shim_unlock,
    .xCheckReservedLock = shim_reserved,
    .xFileControl = shim_control,
    .xSectorSize = shim_sector,
    .xDeviceCharacteristics = shim_chars,
    .xShmMap = shim_shm_map,
    .xShmLock = shim_shm_lock,
    .xShmBarrier = shim_shm_barrier,
    .xShmUnmap = shim_shm_unmap,
};

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
    (void)vfs;
    shim_file *s = (shim_file *)f;
    s->flags = flags;
    s->real = (sqlite3_file *)(s + 1);
    int rc = real_vfs->xOpen(real_vfs, name, s->real, flags, out);
    f->pMethods = rc == SQLITE_OK && s->real->pMethods ? &SHIM_IO : NULL;
    return rc;
}

static sqlite3_vfs shim_vfs;

static void register_shim(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    shim_vfs = *real_vfs;
    shim_vfs.zName = "ps-journal-shim";
    shim_vfs.szOsFile = (int)sizeof(shim_file) + real_vfs->szOsFile;
    shim_vfs.xOpen = shim_open;
    shim_vfs.pNext = NULL;
    assert_int_equal(sqlite3_vfs_register(&shim_vfs, 1), SQLITE_OK);
}

/* One chat of `n` messages of ~600 bytes, as a first upload brings it. */
static ps_chat *new_chat(int i, int n)
{
    char id[32], text[700];
    snprintf(id, sizeof id, "chat-%05d", i);
    ps_chat *c = ps__chat_new(id);
    ps_stamp st = {.ts = 1000 + i, .lamport = 0, .device = (char *)"dev"};
    bool changed;
    assert_int_equal(ps__chat_put_field(c, "title", json_object_new_string(id), &st, &changed),
                     PS_OK);
    for (int m = 0; m < n; m++) {
        char mid[16];
        snprintf(mid, sizeof mid, "m%03d", m);
        /* letters in no pattern, so the stored renderings (LZ4) and
         * values (zstd) stay as large as real text's */
        uint32_t x = (uint32_t)(i * 7919 + m * 104729 + 1);
        for (size_t k = 0; k + 1 < sizeof text; k++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            text[k] = (char)('a' + x % 26);
        }
        text[sizeof text - 1] = '\0';
        json_object *msg = json_object_new_object();
        json_object_object_add(msg, "id", json_object_new_string(mid));
        json_object_object_add(msg, "content", json_object_new_string(text));
        assert_int_equal(ps__chat_append_message(c, mid, msg, &st, 0), PS_OK);
        c->messages[m].received = m;
    }
    assert_int_equal(ps__lamport_set(&c->lamport, 1, "server"), PS_OK);
    assert_int_equal(ps__chat_mark_dirty(c, 1, "dev"), PS_OK);
    return c;
}

static void a_first_upload_spills_no_statement_journal_and_commits_without_checkpoint(void **state)
{
    (void)state;
    test_thread = pthread_self();
    register_shim();
    char dir[] = "/tmp/ps-journal-XXXXXX", url[96];
    assert_non_null(mkdtemp(dir));
    snprintf(url, sizeof url, "sqlite:%s/j.db", dir);
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(url, &s, &err), PS_OK);
    atomic_store(&main_db_syncs_here, 0); /* making the store synced it */
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "local", &u, &err), PS_OK);
    /* 600 chats x 50 messages: ~20 MB, past the 1,000-page (16 MB) mark of
     * a checkpoint and the cache, as a first upload does */
    for (int i = 0; i < 600; i++) {
        ps_chat *c = new_chat(i, 50);
        json_object *doc = ps__chat_to_legacy(c);
        ps_dynbuf text;
        ps__dynbuf_init(&text, SIZE_MAX - 1);
        assert_int_equal(ps__json_compact_append(&text, doc), PS_OK);
        assert_int_equal(s->ops->chat_save(s, u.id, c, text.data, text.len, i + 1, &err), PS_OK);
        ps__dynbuf_free(&text);
        json_object_put(doc);
        ps__chat_free(c);
    }
    /* a legacy first upload's chats are LZ4 packs (schema 14), whose text
     * trains no dictionary: no statement journal at all */
    long long journal_after_upload = atomic_load(&subjournal_bytes);
    /* the same chats again in the same transaction: every row replaced */
    for (int i = 0; i < 30; i++) {
        ps_chat *c = new_chat(i, 50);
        assert_int_equal(s->ops->chat_save(s, u.id, c, NULL, 0, 400 + i, &err), PS_OK);
        ps__chat_free(c);
    }
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    /* One statement does use a journal: the re-packing of the user's
     * plain values when their dictionary is trained (once, ~1 MiB of
     * values; store_sqlite.c's train_user), here by the rows the chats
     * saved again wrote. Else none: the REPLACE statements wrote several
     * times the log's bytes, chat after chat. */
    long long journal = atomic_load(&subjournal_bytes), log = atomic_load(&wal_bytes);
    if (journal_after_upload != 0 || journal > 4 * 1024 * 1024)
        print_error("statement journals: %lld bytes (%lld after the first upload)"
                    " for %lld to the log\n",
                    journal, journal_after_upload, log);
    assert_true(journal_after_upload == 0);
    assert_true(journal <= 4 * 1024 * 1024);
    assert_int_equal(atomic_load(&main_db_syncs_here), 0);
    /* A fresh device's legacy pull copies each chat's hashes as its base
     * (base_copy), then again on its next pull: single-row writes, so no
     * statement journal; each base is the chat's hashes as stored. The
     * first 30 chats were saved again without a rendering: their hashes
     * are not worked out (NULL), and nothing is copied. */
    long long before_copies = atomic_load(&subjournal_bytes);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 600; i++) {
            char id[32];
            snprintf(id, sizeof id, "chat-%05d", i);
            bool copied = false;
            assert_int_equal(s->ops->base_copy(s, u.id, "fresh", id, 900 + round, &copied, &err),
                             PS_OK);
            assert_int_equal(copied, i >= 30);
        }
    /* A legacy upload records each chat the device sent (chat_set_sent):
     * a new row each, then the same rows updated; a chat the store does
     * not have gets none. Single-row writes: no statement journal. */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i <= 600; i++) {
            char id[32];
            snprintf(id, sizeof id, "chat-%05d", i); /* chat-00600: none */
            assert_int_equal(
                s->ops->chat_set_sent(s, u.id, "fresh", id, 7000 + i + round, 8000 + i, &err),
                PS_OK);
        }
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_true(atomic_load(&subjournal_bytes) == before_copies);
    sqlite3 *db = NULL;
    snprintf(url, sizeof url, "%s/j.db", dir);
    assert_int_equal(sqlite3_open_v2(url, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*), sum(b.hashes = c.hashes), min(b.seq),"
                                        " max(b.seq) FROM bases b JOIN chat_bodies c"
                                        " ON c.user_id = b.user_id AND c.chat_id = b.chat_id"
                                        " WHERE b.device = 'fresh'",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 570);
    assert_int_equal(sqlite3_column_int(q, 1), 570);
    assert_int_equal(sqlite3_column_int(q, 2), 901);
    assert_int_equal(sqlite3_column_int(q, 3), 901);
    sqlite3_finalize(q);
    /* each sent row: the last hash given, its content, the chat's seq */
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*), sum(s.hash = 7001 + substr(s.chat_id, 6)"
                                        " AND s.content = 8000 + substr(s.chat_id, 6)"
                                        " AND s.seq = c.seq) FROM sent s LEFT JOIN chats c"
                                        " ON c.user_id = s.user_id AND c.id = s.chat_id"
                                        " WHERE s.device = 'fresh'",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 600);
    assert_int_equal(sqlite3_column_int(q, 1), 600);
    sqlite3_finalize(q);
    sqlite3_close(db);
    for (int waited = 0; waited < 500 && atomic_load(&main_db_syncs_elsewhere) == 0; waited++)
        usleep(10 * 1000);
    assert_true(atomic_load(&main_db_syncs_elsewhere) > 0);
    ps_store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    sqlite3_vfs_unregister(&shim_vfs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_first_upload_spills_no_statement_journal_and_commits_without_checkpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
