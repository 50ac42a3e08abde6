/*
 * zstd for the local store (see lstore_pack.h). A row packed with a
 * dictionary names it (messages.dict); dictionaries are never changed or
 * removed, so every row stays readable by any process sharing the store.
 * The store trains one dictionary in its life, from its first
 * PS_PACK_TRAIN_AT rows (a dictionary from 2,000 rows packs the reference
 * history within 1% of one from 20,000), and repacks those rows with it.
 */
#include "client/lstore_pack.h"

#include <stdlib.h>
#include <string.h>
/* ZDICT_trainFromBuffer_fastCover with fixed parameters: exported by
 * libzstd.so, declared only under this macro. */
#define ZDICT_STATIC_LINKING_ONLY
#include <zdict.h>
#include <zstd.h>

/* zstd level: 3 packs rows with the dictionary as fast as level 1 (0.4 s
 * for 100,000 rows) and 15% smaller. */
#define ROW_LEVEL 3
/* The dictionary's size (zstd's own default) and the samples it is trained
 * from. 256 KiB packed the reference history's rows 0.5 MB smaller (of
 * 17.9) and cost a fresh pull 0.07 s more of client CPU (docs/performance.md,
 * "disk"): not taken. */
#define DICT_BYTES ((size_t)112640)
#define SAMPLE_ROWS 4000
#define SAMPLE_BYTES ((size_t)8 << 20)
/* fastCover's segment (k) and d-mer (d) sizes, fixed: ZDICT_trainFromBuffer
 * searches several k for the best one, which took 0.23 s of the fresh pull
 * of the reference history (4,000 rows); k = 1024 trains in 0.06 s and
 * packs the 100,000 rows 0.45% larger (docs/performance.md, "client3"). */
#define DICT_K 1024
#define DICT_D 8
/* Rows repacked per step after training (bounded memory). */
#define REPACK_STEP 1000

struct ps_pack {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    int64_t cdict_id; /* the dictionary cdict holds; 0 none */
    ZSTD_CDict *cdict;
    int64_t ddict_id;
    ZSTD_DDict *ddict;
    int64_t current;   /* the store's dictionary, once seen (never changes) */
    bool train_failed; /* tried once in this handle: not again */
};

static ps_code nomem(ps_error *err)
{
    return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
}

static ps_code db_fail(sqlite3 *db, ps_error *err, const char *what)
{
    int code = sqlite3_errcode(db);
    ps_code rc = (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? PS_ERR_BUSY : PS_ERR_STORE;
    return ps_error_set(err, rc, -1, "", "local store: %s: %s", what, sqlite3_errmsg(db));
}

ps_pack *ps__pack_new(void)
{
    ps_pack *p = calloc(1, sizeof *p);
    if (p && (!(p->cctx = ZSTD_createCCtx()) || !(p->dctx = ZSTD_createDCtx()))) {
        ps__pack_free(p);
        return NULL;
    }
    return p;
}

void ps__pack_free(ps_pack *p)
{
    if (!p)
        return;
    ZSTD_freeCCtx(p->cctx);
    ZSTD_freeDCtx(p->dctx);
    ZSTD_freeCDict(p->cdict);
    ZSTD_freeDDict(p->ddict);
    free(p);
}

/* The dictionary `id`'s bytes from zdicts: *out the caller's. */
static ps_code read_dict(sqlite3 *db, int64_t id, void **out, size_t *len, ps_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT dict FROM zdicts WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "read a dictionary");
    sqlite3_bind_int64(st, 1, id);
    ps_code rc = PS_OK;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = ps_error_set(err, PS_ERR_STORE, -1, "", "local store: dictionary %lld is missing",
                          (long long)id);
    } else {
        *len = (size_t)sqlite3_column_bytes(st, 0);
        if (!(*out = malloc(*len ? *len : 1)))
            rc = nomem(err);
        else
            memcpy(*out, sqlite3_column_blob(st, 0), *len);
    }
    sqlite3_finalize(st);
    return rc;
}

static ps_code load_cdict(ps_pack *p, sqlite3 *db, int64_t id, ps_error *err)
{
    if (p->cdict_id == id)
        return PS_OK;
    void *bytes = NULL;
    size_t len = 0; /* (set by read_dict; gcc -O3 cannot tell) */
    ps_code rc = read_dict(db, id, &bytes, &len, err);
    if (rc != PS_OK)
        return rc;
    ZSTD_freeCDict(p->cdict);
    p->cdict = ZSTD_createCDict(bytes, len, ROW_LEVEL);
    p->cdict_id = p->cdict ? id : 0;
    free(bytes);
    return p->cdict ? PS_OK : nomem(err);
}

static ps_code load_ddict(ps_pack *p, sqlite3 *db, int64_t id, ps_error *err)
{
    if (p->ddict_id == id)
        return PS_OK;
    void *bytes = NULL;
    size_t len = 0; /* (set by read_dict; gcc -O3 cannot tell) */
    ps_code rc = read_dict(db, id, &bytes, &len, err);
    if (rc != PS_OK)
        return rc;
    ZSTD_freeDDict(p->ddict);
    p->ddict = ZSTD_createDDict(bytes, len);
    p->ddict_id = p->ddict ? id : 0;
    free(bytes);
    return p->ddict ? PS_OK : nomem(err);
}

ps_code ps__pack(ps_pack *p, int64_t dict, const char *in, size_t len, void **out, size_t *out_len,
                 ps_error *err)
{
    *out = NULL;
    if (dict && p->cdict_id != dict)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "local store: dictionary not loaded");
    size_t cap = ZSTD_compressBound(len);
    void *buf = malloc(cap);
    if (!buf)
        return nomem(err);
    /* Frames made with the dictionary leave its id out (4 bytes a row):
     * the row's `dict` column names it, and zstd decodes a frame without
     * one with whatever dictionary it is given. */
    size_t n;
    ZSTD_CCtx_reset(p->cctx, ZSTD_reset_session_and_parameters);
    if (dict) {
        n = ZSTD_CCtx_refCDict(p->cctx, p->cdict);
        if (!ZSTD_isError(n))
            n = ZSTD_CCtx_setParameter(p->cctx, ZSTD_c_dictIDFlag, 0);
        if (!ZSTD_isError(n))
            n = ZSTD_compress2(p->cctx, buf, cap, in, len);
    } else {
        n = ZSTD_compressCCtx(p->cctx, buf, cap, in, len, ROW_LEVEL);
    }
    if (ZSTD_isError(n)) {
        free(buf);
        return ps_error_set(err, PS_ERR_STORE, -1, "", "local store: zstd: %s",
                            ZSTD_getErrorName(n));
    }
    *out = buf;
    *out_len = n;
    return PS_OK;
}

ps_code ps__unpacked_size(const void *blob, size_t len, size_t *size, ps_error *err)
{
    unsigned long long n = blob ? ZSTD_getFrameContentSize(blob, len) : ZSTD_CONTENTSIZE_ERROR;
    if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > ((size_t)1 << 31))
        return ps_error_set(err, PS_ERR_STORE, -1, "", "local store: a packed value is corrupt");
    *size = (size_t)n;
    return PS_OK;
}

ps_code ps__unpack(ps_pack *p, sqlite3 *db, int64_t dict, const void *blob, size_t len, char **out,
                   size_t *out_len, ps_error *err)
{
    *out = NULL;
    ps_code rc = dict ? load_ddict(p, db, dict, err) : PS_OK;
    if (rc != PS_OK)
        return rc;
    unsigned long long size = blob ? ZSTD_getFrameContentSize(blob, len) : ZSTD_CONTENTSIZE_ERROR;
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
        size > ((size_t)1 << 31))
        return ps_error_set(err, PS_ERR_STORE, -1, "", "local store: a packed value is corrupt");
    char *buf = malloc((size_t)size + 1);
    if (!buf)
        return nomem(err);
    size_t n = dict ? ZSTD_decompress_usingDDict(p->dctx, buf, (size_t)size, blob, len, p->ddict)
                    : ZSTD_decompressDCtx(p->dctx, buf, (size_t)size, blob, len);
    if (ZSTD_isError(n) || n != size) {
        free(buf);
        return ps_error_set(err, PS_ERR_STORE, -1, "", "local store: a packed value is corrupt");
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return PS_OK;
}

ps_code ps__pack_current_dict(ps_pack *p, sqlite3 *db, int64_t *dict, ps_error *err)
{
    *dict = p->current;
    if (p->current)
        return load_cdict(p, db, p->current, err);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM zdicts", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(db, err, "look for a dictionary");
    ps_code rc = PS_OK;
    if (sqlite3_step(st) == SQLITE_ROW)
        p->current = sqlite3_column_int64(st, 0);
    else
        rc = db_fail(db, err, "look for a dictionary");
    sqlite3_finalize(st);
    *dict = p->current;
    return rc == PS_OK && p->current ? load_cdict(p, db, p->current, err) : rc;
}

void ps__pack_forget(ps_pack *p)
{
    ZSTD_freeCDict(p->cdict);
    ZSTD_freeDDict(p->ddict);
    p->cdict = NULL;
    p->ddict = NULL;
    p->cdict_id = p->ddict_id = p->current = 0;
}

/* ---- training ---- */

/* Up to SAMPLE_ROWS rows packed without a dictionary, unpacked end to end
 * in *buf with their sizes. */
static ps_code gather_samples(ps_pack *p, sqlite3 *db, char **buf, size_t **sizes, unsigned *n,
                              ps_error *err)
{
    *buf = malloc(SAMPLE_BYTES);
    *sizes = calloc(SAMPLE_ROWS, sizeof **sizes);
    *n = 0;
    if (!*buf || !*sizes)
        return nomem(err);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT row FROM messages WHERE dict = 0 LIMIT ?", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(db, err, "read rows to train on");
    sqlite3_bind_int(st, 1, SAMPLE_ROWS);
    size_t used = 0;
    ps_code rc = PS_OK;
    while (rc == PS_OK && sqlite3_step(st) == SQLITE_ROW) {
        char *text;
        size_t len;
        rc = ps__unpack(p, db, 0, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                        &text, &len, err);
        if (rc != PS_OK)
            break;
        if (used + len <= SAMPLE_BYTES) {
            memcpy(*buf + used, text, len);
            used += len;
            (*sizes)[(*n)++] = len;
        }
        free(text);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Repacks the rows packed without a dictionary with `dict`, a step at a
 * time in key order (each step starts after the last key: a scan from the
 * start each time would pass every repacked row again). */
static ps_code repack(ps_pack *p, sqlite3 *db, int64_t dict, ps_error *err)
{
    sqlite3_stmt *sel = NULL, *upd = NULL;
    ps_code rc = PS_OK;
    int64_t last_chat = -1;
    sqlite3_value *last_id = NULL; /* a key is TEXT or BLOB (lstore.c, message keys) */
    if (sqlite3_prepare_v2(db,
                           "SELECT chat, id, row FROM messages WHERE (chat, id) > (?, ?) AND "
                           "dict = 0 ORDER BY chat, id LIMIT ?",
                           -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE messages SET row = ?, dict = ? WHERE chat = ? AND id = ?",
                           -1, &upd, NULL) != SQLITE_OK)
        rc = db_fail(db, err, "repack rows");
    for (bool more = true; rc == PS_OK && more;) {
        /* read a step first: updating rows under an open SELECT on them is
         * what SQLite does not promise to handle */
        typedef struct {
            int64_t chat;
            sqlite3_value *id;
            void *packed;
            size_t len;
        } item;
        item *items = calloc(REPACK_STEP, sizeof *items);
        size_t n = 0;
        if (!items)
            rc = nomem(err);
        sqlite3_reset(sel);
        sqlite3_bind_int64(sel, 1, last_chat);
        if (last_id)
            sqlite3_bind_value(sel, 2, last_id);
        else
            sqlite3_bind_text(sel, 2, "", 0, SQLITE_STATIC);
        sqlite3_bind_int(sel, 3, REPACK_STEP);
        while (rc == PS_OK && sqlite3_step(sel) == SQLITE_ROW) {
            char *text;
            size_t len;
            item *it = &items[n++];
            it->chat = sqlite3_column_int64(sel, 0);
            if (!(it->id = sqlite3_value_dup(sqlite3_column_value(sel, 1))))
                rc = nomem(err);
            if (rc == PS_OK)
                rc = ps__unpack(p, db, 0, sqlite3_column_blob(sel, 2),
                                (size_t)sqlite3_column_bytes(sel, 2), &text, &len, err);
            if (rc == PS_OK) {
                rc = ps__pack(p, dict, text, len, &it->packed, &it->len, err);
                free(text);
            }
        }
        sqlite3_reset(sel);
        for (size_t i = 0; i < n && rc == PS_OK; i++) {
            sqlite3_reset(upd);
            sqlite3_bind_blob(upd, 1, items[i].packed, (int)items[i].len, SQLITE_STATIC);
            sqlite3_bind_int64(upd, 2, dict);
            sqlite3_bind_int64(upd, 3, items[i].chat);
            sqlite3_bind_value(upd, 4, items[i].id);
            if (sqlite3_step(upd) != SQLITE_DONE)
                rc = db_fail(db, err, "repack a row");
        }
        if (rc == PS_OK && n) {
            sqlite3_value_free(last_id);
            last_chat = items[n - 1].chat;
            last_id = items[n - 1].id;
            items[n - 1].id = NULL;
        }
        for (size_t i = 0; items && i < n; i++) {
            sqlite3_value_free(items[i].id);
            free(items[i].packed);
        }
        free(items);
        more = n == REPACK_STEP;
    }
    sqlite3_value_free(last_id);
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc;
}

ps_code ps__pack_train(ps_pack *p, sqlite3 *db, ps_error *err)
{
    int64_t dict;
    ps_code rc = ps__pack_current_dict(p, db, &dict, err);
    if (rc != PS_OK || dict || p->train_failed)
        return rc;
    /* Enough rows to train on? Counts at most PS_PACK_TRAIN_AT of them. */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM (SELECT 1 FROM messages WHERE dict = 0 LIMIT ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "count rows");
    sqlite3_bind_int(st, 1, PS_PACK_TRAIN_AT);
    int64_t count = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (count < PS_PACK_TRAIN_AT)
        return PS_OK;
    char *samples = NULL;
    size_t *sizes = NULL;
    unsigned n = 0;
    void *bytes = malloc(DICT_BYTES);
    rc = bytes ? gather_samples(p, db, &samples, &sizes, &n, err) : nomem(err);
    ZDICT_fastCover_params_t params = {.k = DICT_K, .d = DICT_D, .f = 20, .accel = 1};
    params.zParams.compressionLevel = ROW_LEVEL;
    size_t len = rc == PS_OK
                     ? ZDICT_trainFromBuffer_fastCover(bytes, DICT_BYTES, samples, sizes, n, params)
                     : 0;
    free(samples);
    free(sizes);
    if (rc == PS_OK && ZDICT_isError(len)) {
        p->train_failed = true; /* rows stay packed without one */
        free(bytes);
        return PS_OK;
    }
    if (rc == PS_OK) {
        if (sqlite3_prepare_v2(db, "INSERT INTO zdicts(dict) VALUES (?)", -1, &st, NULL) !=
            SQLITE_OK)
            rc = db_fail(db, err, "keep a dictionary");
        else {
            sqlite3_bind_blob(st, 1, bytes, (int)len, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = db_fail(db, err, "keep a dictionary");
            sqlite3_finalize(st);
        }
    }
    free(bytes);
    if (rc == PS_OK) {
        p->current = sqlite3_last_insert_rowid(db);
        rc = load_cdict(p, db, p->current, err);
    }
    if (rc == PS_OK)
        rc = repack(p, db, p->current, err);
    if (rc != PS_OK)
        p->current = 0; /* the transaction rolls back: the dictionary with it */
    return rc;
}
