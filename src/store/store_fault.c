/*
 * Fault injection for tests (built only with -DPS_FAULT_INJECTION=ON, never
 * in a release): a store backend that wraps the real one and makes one
 * chosen call fail, so the tests can see every endpoint answer a failing
 * store with its documented status and change nothing
 * (tests/integration/test_faults.py).
 *
 * The switch is a file named by PS_FAULT_STORE_FILE, read before every
 * call: "GEN N KIND". Each new GEN restarts the count; the Nth store call
 * after it fails with KIND: `busy` (PS_ERR_BUSY, as SQLITE_BUSY gives),
 * `io` (PS_ERR_STORE, "disk I/O error") or `full` (PS_ERR_STORE, "database
 * or disk is full"). Every call is counted but rollback and close, which
 * cannot fail. The file absent or unreadable: no fault. Each fault is
 * logged to stderr as "ps-fault: call N (op) failed: KIND".
 */
#include "store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fault_store {
    ps_store base;
    ps_store *inner;
    char *path;
    pthread_mutex_t lock;
    long gen;
    long count;
} fault_store;

static fault_store *F(ps_store *s)
{
    return (fault_store *)s;
}

/* PS_OK, or the injected failure when this call is the chosen one. */
static ps_code due(ps_store *s, const char *op, ps_error *err)
{
    fault_store *f = F(s);
    FILE *in = fopen(f->path, "r");
    if (!in)
        return PS_OK;
    long gen = 0, n = 0;
    char kind[16] = "";
    int got = fscanf(in, "%ld %ld %15s", &gen, &n, kind);
    fclose(in);
    if (got != 3)
        return PS_OK;
    pthread_mutex_lock(&f->lock);
    if (gen != f->gen) {
        f->gen = gen;
        f->count = 0;
    }
    bool fire = ++f->count == n;
    long count = f->count;
    pthread_mutex_unlock(&f->lock);
    if (!fire)
        return PS_OK;
    fprintf(stderr, "ps-fault: call %ld (%s) failed: %s\n", count, op, kind);
    if (strcmp(kind, "busy") == 0)
        return ps_error_set(err, PS_ERR_BUSY, -1, "", "injected: database is locked");
    if (strcmp(kind, "full") == 0)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "injected: database or disk is full");
    return ps_error_set(err, PS_ERR_STORE, -1, "", "injected: disk I/O error");
}

#define INNER(s) (F(s)->inner)
#define CHECK(op)                                                                                  \
    do {                                                                                           \
        ps_code fault_rc = due(s, op, err);                                                        \
        if (fault_rc != PS_OK)                                                                     \
            return fault_rc;                                                                       \
    } while (0)

static ps_code f_begin(ps_store *s, bool write, ps_error *err)
{
    CHECK("begin");
    return INNER(s)->ops->begin(INNER(s), write, err);
}
static ps_code f_commit(ps_store *s, ps_error *err)
{
    /* A failed commit still ends the transaction (rolled back), as the
     * backends' commit does: callers do not roll back after it. */
    ps_code rc = due(s, "commit", err);
    if (rc != PS_OK) {
        INNER(s)->ops->rollback(INNER(s));
        return rc;
    }
    return INNER(s)->ops->commit(INNER(s), err);
}
static void f_rollback(ps_store *s)
{
    INNER(s)->ops->rollback(INNER(s));
}
static ps_code f_user_load(ps_store *s, const char *name, ps_user *out, ps_error *err)
{
    CHECK("user_load");
    return INNER(s)->ops->user_load(INNER(s), name, out, err);
}
static ps_code f_user_find(ps_store *s, const char *name, ps_user *out, bool *found, ps_error *err)
{
    CHECK("user_find");
    return INNER(s)->ops->user_find(INNER(s), name, out, found, err);
}
static ps_code f_user_save(ps_store *s, const ps_user *user, ps_error *err)
{
    CHECK("user_save");
    return INNER(s)->ops->user_save(INNER(s), user, err);
}
static ps_code f_user_seen(ps_store *s, const char *name, int64_t ms, ps_error *err)
{
    CHECK("user_seen");
    return INNER(s)->ops->user_seen(INNER(s), name, ms, err);
}
static ps_code f_chat_load(ps_store *s, int64_t user, const char *id, bool with_messages,
                           ps_chat **out, ps_error *err)
{
    CHECK("chat_load");
    return INNER(s)->ops->chat_load(INNER(s), user, id, with_messages, out, err);
}
static ps_code f_messages_load(ps_store *s, int64_t user, ps_chat *chat, const char *const *ids,
                               size_t n, ps_error *err)
{
    CHECK("messages_load");
    return INNER(s)->ops->messages_load(INNER(s), user, chat, ids, n, err);
}
static ps_code f_chat_save(ps_store *s, int64_t user, const ps_chat *chat, const char *doc,
                           size_t doc_len, int64_t seq, ps_error *err)
{
    CHECK("chat_save");
    return INNER(s)->ops->chat_save(INNER(s), user, chat, doc, doc_len, seq, err);
}
static ps_code f_chat_next_changed(ps_store *s, int64_t user, int64_t after_seq, ps_chat **out,
                                   int64_t *seq, ps_error *err)
{
    CHECK("chat_next_changed");
    return INNER(s)->ops->chat_next_changed(INNER(s), user, after_seq, out, seq, err);
}
static ps_code f_messages_since(ps_store *s, int64_t user, const char *chat_id, int64_t after_seq,
                                const char *skip_origin, int64_t skip_after, ps_message_fn fn,
                                void *ctx, ps_error *err)
{
    CHECK("messages_since");
    return INNER(s)->ops->messages_since(INNER(s), user, chat_id, after_seq, skip_origin,
                                         skip_after, fn, ctx, err);
}
static ps_code f_chat_each(ps_store *s, int64_t user, ps_chat_row_fn fn, void *ctx, ps_error *err)
{
    CHECK("chat_each");
    return INNER(s)->ops->chat_each(INNER(s), user, fn, ctx, err);
}
static ps_code f_chat_each_after(ps_store *s, int64_t user, const char *after, ps_chat_row_fn fn,
                                 void *ctx, ps_error *err)
{
    CHECK("chat_each"); /* the same listing: a fault file naming it hits both */
    return INNER(s)->ops->chat_each_after(INNER(s), user, after, fn, ctx, err);
}
static ps_code f_stats(ps_store *s, ps_store_stats *out, ps_error *err)
{
    CHECK("stats");
    return INNER(s)->ops->stats(INNER(s), out, err);
}
static ps_code f_user_list(ps_store *s, int (*fn)(void *ctx, const char *name, int64_t chats),
                           void *ctx, ps_error *err)
{
    CHECK("user_list");
    return INNER(s)->ops->user_list(INNER(s), fn, ctx, err);
}
static ps_code f_chat_find_sent(ps_store *s, int64_t user, const char *device, uint64_t hash,
                                char *id, size_t id_size, bool *unchanged, ps_error *err)
{
    CHECK("chat_find_sent");
    return INNER(s)->ops->chat_find_sent(INNER(s), user, device, hash, id, id_size, unchanged, err);
}
static ps_code f_chat_set_sent(ps_store *s, int64_t user, const char *device, const char *id,
                               uint64_t hash, uint64_t content, ps_error *err)
{
    CHECK("chat_set_sent");
    return INNER(s)->ops->chat_set_sent(INNER(s), user, device, id, hash, content, err);
}
static ps_code f_chat_sent_content(ps_store *s, int64_t user, const char *device, const char *id,
                                   uint64_t *content, bool *unchanged, ps_error *err)
{
    CHECK("chat_sent_content");
    return INNER(s)->ops->chat_sent_content(INNER(s), user, device, id, content, unchanged, err);
}
static ps_code f_user_bytes(ps_store *s, int64_t user, int64_t *bytes, ps_error *err)
{
    CHECK("user_bytes");
    return INNER(s)->ops->user_bytes(INNER(s), user, bytes, err);
}
static ps_code f_user_delete(ps_store *s, const char *name, ps_error *err)
{
    CHECK("user_delete");
    return INNER(s)->ops->user_delete(INNER(s), name, err);
}
static ps_code f_purge_tombstones(ps_store *s, int64_t older_than_ms, int64_t *purged,
                                  ps_error *err)
{
    CHECK("purge_tombstones");
    return INNER(s)->ops->purge_tombstones(INNER(s), older_than_ms, purged, err);
}
static ps_code f_base_load(ps_store *s, int64_t user, const char *device, const char *chat_id,
                           ps_base *out, int64_t *seq, bool *found, ps_error *err)
{
    CHECK("base_load");
    return INNER(s)->ops->base_load(INNER(s), user, device, chat_id, out, seq, found, err);
}
static ps_code f_base_save(ps_store *s, int64_t user, const char *device, const char *chat_id,
                           const ps_base *b, int64_t seq, ps_error *err)
{
    CHECK("base_save");
    return INNER(s)->ops->base_save(INNER(s), user, device, chat_id, b, seq, err);
}
static ps_code f_base_copy(ps_store *s, int64_t user, const char *device, const char *chat_id,
                           int64_t seq, bool *copied, ps_error *err)
{
    CHECK("base_copy");
    return INNER(s)->ops->base_copy(INNER(s), user, device, chat_id, seq, copied, err);
}
static ps_code f_probe(ps_store *s, size_t deep_max_bytes, ps_error *err)
{
    CHECK("probe");
    /* a backend without a probe is taken as healthy (store.h) */
    return INNER(s)->ops->probe ? INNER(s)->ops->probe(INNER(s), deep_max_bytes, err) : PS_OK;
}
static ps_code f_token_add(ps_store *s, const char *jti, const char *user, int64_t issued_ms,
                           int64_t expires_ms, ps_error *err)
{
    CHECK("token_add");
    return INNER(s)->ops->token_add(INNER(s), jti, user, issued_ms, expires_ms, err);
}
static ps_code f_token_list(ps_store *s, const char *user,
                            int (*fn)(void *ctx, const ps_token_row *row), void *ctx, ps_error *err)
{
    CHECK("token_list");
    return INNER(s)->ops->token_list(INNER(s), user, fn, ctx, err);
}
static ps_code f_token_revoke(ps_store *s, const char *jti, const char *user, int64_t now_ms,
                              int64_t *count, ps_error *err)
{
    CHECK("token_revoke");
    return INNER(s)->ops->token_revoke(INNER(s), jti, user, now_ms, count, err);
}
static ps_code f_token_revoked_each(ps_store *s, int64_t now_ms,
                                    int (*fn)(void *ctx, const ps_token_row *row), void *ctx,
                                    ps_error *err)
{
    CHECK("token_revoked_each");
    return INNER(s)->ops->token_revoked_each(INNER(s), now_ms, fn, ctx, err);
}
static ps_code f_account_set(ps_store *s, const char *name, int disabled, int64_t tokens_before_ms,
                             ps_error *err)
{
    CHECK("account_set");
    return INNER(s)->ops->account_set(INNER(s), name, disabled, tokens_before_ms, err);
}
static ps_code f_account_each(ps_store *s, int (*fn)(void *ctx, const ps_account_row *row),
                              void *ctx, ps_error *err)
{
    CHECK("account_each");
    return INNER(s)->ops->account_each(INNER(s), fn, ctx, err);
}
static ps_code f_access_generation(ps_store *s, int64_t *generation, ps_error *err)
{
    CHECK("access_generation");
    return INNER(s)->ops->access_generation(INNER(s), generation, err);
}
static ps_code f_user_rename(ps_store *s, const char *from, const char *to, ps_error *err)
{
    CHECK("user_rename");
    return INNER(s)->ops->user_rename(INNER(s), from, to, err);
}
static ps_code f_device_seen(ps_store *s, const char *user, const char *device, const char *client,
                             const char *protocol, int64_t acked_seq, int64_t now_ms, ps_error *err)
{
    CHECK("device_seen");
    return INNER(s)->ops->device_seen(INNER(s), user, device, client, protocol, acked_seq, now_ms,
                                      err);
}
static ps_code f_device_list(ps_store *s, const char *user,
                             int (*fn)(void *ctx, const ps_device_row *row), void *ctx,
                             ps_error *err)
{
    CHECK("device_list");
    return INNER(s)->ops->device_list(INNER(s), user, fn, ctx, err);
}
static ps_code f_device_get(ps_store *s, const char *user, const char *device,
                            int (*fn)(void *ctx, const ps_device_row *row), void *ctx,
                            ps_error *err)
{
    CHECK("device_get");
    return INNER(s)->ops->device_get(INNER(s), user, device, fn, ctx, err);
}
static ps_code f_purge_acknowledged(ps_store *s, const char *user, int64_t active_since_ms,
                                    int64_t *purged, ps_error *err)
{
    CHECK("purge_acknowledged");
    return INNER(s)->ops->purge_acknowledged(INNER(s), user, active_since_ms, purged, err);
}
static ps_code f_user_tombstones(ps_store *s, const char *user, int64_t *count, ps_error *err)
{
    CHECK("user_tombstones");
    return INNER(s)->ops->user_tombstones(INNER(s), user, count, err);
}
static ps_code f_device_forget(ps_store *s, const char *user, const char *device, ps_error *err)
{
    CHECK("device_forget");
    return INNER(s)->ops->device_forget(INNER(s), user, device, err);
}
/* The multi-instance operations are optional: where the inner store has
 * none (SQLite), the wrapper's do nothing, as the caller would. */
static ps_code f_user_restore(ps_store *s, const ps_user *user, ps_error *err)
{
    CHECK("user_restore");
    return INNER(s)->ops->user_restore(INNER(s), user, err);
}
static ps_code f_announce(ps_store *s, const char *user, const char *device, int64_t seq_before,
                          int64_t seq_after, ps_error *err)
{
    if (!INNER(s)->ops->announce)
        return PS_OK;
    CHECK("announce");
    return INNER(s)->ops->announce(INNER(s), user, device, seq_before, seq_after, err);
}
/* Stopping (fn NULL) cannot fail and is not counted, like close. */
static ps_code f_listen(ps_store *s, ps_store_change_fn fn, void *ctx, ps_error *err)
{
    if (!INNER(s)->ops->listen)
        return PS_OK;
    if (fn)
        CHECK("listen");
    return INNER(s)->ops->listen(INNER(s), fn, ctx, err);
}
static ps_code f_values_pack_ahead(ps_store *s, int64_t user, ps_chat *const *chats, size_t n,
                                   ps_values_ahead *ahead, ps_error *err)
{
    if (!INNER(s)->ops->values_pack_ahead)
        return PS_OK;
    CHECK("values_pack_ahead");
    return INNER(s)->ops->values_pack_ahead(INNER(s), user, chats, n, ahead, err);
}
static ps_code f_pack_ahead_begin(ps_store *s, int64_t user, ps_pack_ahead **out, ps_error *err)
{
    *out = NULL;
    if (!INNER(s)->ops->pack_ahead_begin)
        return PS_OK;
    CHECK("pack_ahead_begin");
    return INNER(s)->ops->pack_ahead_begin(INNER(s), user, out, err);
}
static ps_code f_chat_is_new(ps_store *s, int64_t user, const char *id, bool *is_new, ps_error *err)
{
    CHECK("chat_is_new");
    return INNER(s)->ops->chat_is_new(INNER(s), user, id, is_new, err);
}
/* On any thread, touching no connection: not counted (a fault point is
 * an operation on the store's connection). */
static ps_code f_pack_ahead_make(ps_store *s, const ps_pack_ahead *pa, const ps_chat *chat,
                                 const char *device, ps_pack_form **out)
{
    return INNER(s)->ops->pack_ahead_make(INNER(s), pa, chat, device, out);
}
static void f_pack_ahead_end(ps_store *s, ps_pack_ahead *pa)
{
    if (INNER(s)->ops->pack_ahead_end)
        INNER(s)->ops->pack_ahead_end(INNER(s), pa);
}
static bool f_keeps_legacy_pack(ps_store *s, int64_t user, const ps_chat *chat)
{
    return INNER(s)->ops->keeps_legacy_pack &&
           INNER(s)->ops->keeps_legacy_pack(INNER(s), user, chat);
}
static void f_close(ps_store *s)
{
    fault_store *f = F(s);
    ps_store_close(f->inner);
    pthread_mutex_destroy(&f->lock);
    free(f->path);
    free(f);
}

static const struct ps_store_ops FAULT_OPS = {
    .name = "fault",
    .begin = f_begin,
    .commit = f_commit,
    .rollback = f_rollback,
    .user_load = f_user_load,
    .user_find = f_user_find,
    /* none: callers then begin and user_find, each with its own fault */
    .begin_user_find = NULL,
    /* none: every sync reads in a transaction, where the faults are */
    .quiet_user = NULL,
    .user_save = f_user_save,
    .user_seen = f_user_seen,
    .chat_load = f_chat_load,
    .messages_load = f_messages_load,
    .chat_save = f_chat_save,
    .chat_next_changed = f_chat_next_changed,
    .messages_since = f_messages_since,
    .chat_each = f_chat_each,
    .chat_each_after = f_chat_each_after,
    .stats = f_stats,
    .user_list = f_user_list,
    .chat_find_sent = f_chat_find_sent,
    .chat_set_sent = f_chat_set_sent,
    .chat_sent_content = f_chat_sent_content,
    .user_bytes = f_user_bytes,
    .user_delete = f_user_delete,
    .purge_tombstones = f_purge_tombstones,
    .base_load = f_base_load,
    .base_save = f_base_save,
    .base_copy = f_base_copy,
    .probe = f_probe,
    .token_add = f_token_add,
    .token_list = f_token_list,
    .token_revoke = f_token_revoke,
    .token_revoked_each = f_token_revoked_each,
    .account_set = f_account_set,
    .account_each = f_account_each,
    .access_generation = f_access_generation,
    .user_rename = f_user_rename,
    .device_seen = f_device_seen,
    .device_list = f_device_list,
    .device_get = f_device_get,
    .purge_acknowledged = f_purge_acknowledged,
    .user_tombstones = f_user_tombstones,
    .device_forget = f_device_forget,
    .user_restore = f_user_restore,
    .announce = f_announce,
    .listen = f_listen,
    .values_pack_ahead = f_values_pack_ahead,
    .pack_ahead_begin = f_pack_ahead_begin,
    .chat_is_new = f_chat_is_new,
    .pack_ahead_make = f_pack_ahead_make,
    .pack_ahead_end = f_pack_ahead_end,
    .keeps_legacy_pack = f_keeps_legacy_pack,
    .close = f_close,
};
/* Every operation must be wrapped (a missing one is a NULL call): when the
 * vtable grows, this fails until the new operation is added above. */
_Static_assert(sizeof(struct ps_store_ops) == 53 * sizeof(void *),
               "struct ps_store_ops changed: wrap its new operations in store_fault.c");

ps_code ps__store_fault_wrap(ps_store **s, ps_error *err)
{
    const char *path = getenv("PS_FAULT_STORE_FILE");
    if (!path || !*path)
        return PS_OK;
    fault_store *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    pthread_mutex_init(&f->lock, NULL);
    f->base.ops = &FAULT_OPS;
    f->inner = *s;
    f->gen = -1;
    *s = &f->base;
    return PS_OK;
}
