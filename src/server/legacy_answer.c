/* Streamed legacy answers; see legacy_answer.h. */
#include "server/legacy_answer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The next piece is made ahead, on a thread of the answer's own, while the
 * server's thread sends the one before: a fresh device's pull then costs
 * about the longer of making and sending, not their sum (on two cores, the
 * rendering's decompression and the socket's copies overlap). One piece
 * ahead at most, so an answer holds about two pieces. At most MAKERS of
 * these threads make a piece at once, whatever the number of answers being
 * sent: each holds a read connection (and its page cache) while it makes
 * one, and two cores gain nothing from more.
 */
#define MAKERS 2

static pthread_mutex_t makers_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t makers_free = PTHREAD_COND_INITIALIZER;
static unsigned makers_busy;

static void maker_enter(void)
{
    pthread_mutex_lock(&makers_lock);
    while (makers_busy >= MAKERS)
        pthread_cond_wait(&makers_free, &makers_lock);
    makers_busy++;
    pthread_mutex_unlock(&makers_lock);
}

static void maker_leave(void)
{
    pthread_mutex_lock(&makers_lock);
    makers_busy--;
    pthread_cond_signal(&makers_free);
    pthread_mutex_unlock(&makers_lock);
}
typedef struct ahead {
    pthread_t thread;
    bool started;
    bool failed; /* could not be started: pieces are made by the caller */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool want;  /* the thread is to make the next piece */
    bool ready; /* it did: piece, rc, err, done */
    bool stop;  /* the answer is going away */
    ps_dynbuf piece;
    ps_code rc;
    ps_error err;
    bool done;
} ahead;

struct ps_legacy_answer {
    ps_sync_ctx ctx; /* a copy: the answer outlives the handler (store only) */
    char *user;      /* each piece checks the name still has user_id */
    int64_t user_id; /* 0: not looked up yet (fetch) */
    bool sync;       /* {"missing":...} (else /fetchChats' array) */
    /* sync: the chats to send, in listing order; next_id: the next one */
    char **ids;
    size_t nids, ids_cap, next_id;
    ps_dynbuf deletions;
    int64_t server_clock;
    char *after; /* the last chat listed by the previous piece; NULL: none */
    size_t written;
    enum { START, CHATS, DONE } state;
    bool has_head;
    ps_dynbuf head;
    ahead ahead;
};

static ps_code answer_new(const ps_sync_ctx *ctx, bool sync, ps_legacy_answer **out,
                          ps_error *err)
{
    ps_legacy_answer *a = calloc(1, sizeof *a);
    if (a && !(a->user = strdup(ctx->user))) {
        free(a);
        a = NULL;
    }
    *out = a;
    if (!a)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    a->ctx = *ctx;
    a->ctx.user = a->user;
    a->ctx.device = NULL;
    a->ctx.client = NULL;
    a->sync = sync;
    ps__dynbuf_init(&a->deletions, SIZE_MAX);
    ps__dynbuf_init(&a->head, SIZE_MAX);
    ps__dynbuf_init(&a->ahead.piece, SIZE_MAX);
    return PS_OK;
}

ps_code ps_legacy_answer_sync_new(const ps_sync_ctx *ctx, int64_t user_id,
                                  ps_legacy_answer **out, ps_error *err)
{
    ps_code rc = answer_new(ctx, true, out, err);
    if (rc == PS_OK)
        (*out)->user_id = user_id;
    return rc;
}

ps_code ps_legacy_answer_fetch_new(const ps_sync_ctx *ctx, ps_legacy_answer **out,
                                   ps_error *err)
{
    return answer_new(ctx, false, out, err);
}

ps_code ps_legacy_answer_add_missing(ps_legacy_answer *a, const char *id)
{
    if (a->nids == a->ids_cap) {
        size_t cap = a->ids_cap ? 2 * a->ids_cap : 64;
        char **grown = realloc(a->ids, cap * sizeof *grown);
        if (!grown)
            return PS_ERR_NOMEM;
        a->ids = grown;
        a->ids_cap = cap;
    }
    if (!(a->ids[a->nids] = strdup(id)))
        return PS_ERR_NOMEM;
    a->nids++;
    return PS_OK;
}

ps_dynbuf *ps_legacy_answer_deletions(ps_legacy_answer *a)
{
    return &a->deletions;
}

void ps_legacy_answer_set_clock(ps_legacy_answer *a, int64_t server_clock)
{
    a->server_clock = server_clock;
}

void ps_legacy_answer_free(ps_legacy_answer *a)
{
    if (!a)
        return;
    if (a->ahead.started) { /* it ends once the piece it makes (if any) is made */
        pthread_mutex_lock(&a->ahead.lock);
        a->ahead.stop = true;
        pthread_cond_signal(&a->ahead.cond);
        pthread_mutex_unlock(&a->ahead.lock);
        pthread_join(a->ahead.thread, NULL);
        pthread_mutex_destroy(&a->ahead.lock);
        pthread_cond_destroy(&a->ahead.cond);
    }
    ps__dynbuf_free(&a->ahead.piece);
    for (size_t i = 0; i < a->nids; i++)
        free(a->ids[i]);
    free(a->ids);
    ps__dynbuf_free(&a->deletions);
    ps__dynbuf_free(&a->head);
    free(a->after);
    free(a->user);
    free(a);
}

/* The piece size. Test builds (PS_FAULT_INJECTION, polysyncd_faults) take
 * it from PS_FAULT_PIECE_BYTES, so the legacy suites can run every answer
 * through many pieces (tests/CMakeLists.txt, integration.streamed.*). */
/* Test builds only: PS_FAULT_AHEAD_DELAY_MS holds the server's thread that
 * long right after it asks for a piece ahead, so the piece is surely made
 * meanwhile (a read of the answer's state after asking raced that thread:
 * test_legacy_stream's AheadRaceTest). */
static void hold_after_asking(void)
{
#ifdef PS_FAULT_INJECTION
    const char *v = getenv("PS_FAULT_AHEAD_DELAY_MS");
    if (v && atol(v) > 0)
        usleep((useconds_t)atol(v) * 1000);
#endif
}

static size_t piece_bytes(void)
{
#ifdef PS_FAULT_INJECTION
    const char *v = getenv("PS_FAULT_PIECE_BYTES");
    if (v && atol(v) > 0)
        return (size_t)atol(v);
#endif
    return PS_LEGACY_PIECE_BYTES;
}

/* One piece being made: chats from the listing until the piece is full. */
typedef struct piece {
    ps_legacy_answer *a;
    ps_dynbuf *out;
    size_t start;
    bool end;  /* the plan is exhausted */
    bool full; /* stopped with a full piece */
    ps_code rc;
    ps_error *err;
} piece;

static int piece_row(void *vctx, const ps_chat_row *row)
{
    piece *p = vctx;
    ps_legacy_answer *a = p->a;
    if (a->after && strcmp(row->id, a->after) <= 0)
        return 0; /* sent by an earlier piece */
    if (a->sync) {
        /* a planned chat purged since is passed over */
        while (a->next_id < a->nids && strcmp(a->ids[a->next_id], row->id) < 0)
            a->next_id++;
        if (a->next_id == a->nids) {
            p->end = true;
            return 1;
        }
        if (strcmp(a->ids[a->next_id], row->id) != 0)
            return 0;
        a->next_id++;
    }
    if (!row->live) /* deleted since it was planned: not sent */
        return 0;
    p->rc = ps__dynbuf_adds(p->out, a->written++ ? "," : "");
    if (p->rc == PS_OK)
        p->rc = ps__append_doc(&a->ctx, a->user_id, row, p->out, p->err);
    if (p->rc != PS_OK)
        return 1;
    if (p->out->len - p->start < piece_bytes())
        return 0;
    p->full = true;
    free(a->after);
    if (!(a->after = strdup(row->id)))
        p->rc = PS_ERR_NOMEM;
    return 1;
}

/* The next chats, in the caller's open transaction; *end when none is left.
 * `check_user`: the name must still be the user the answer is about (a
 * user deleted meanwhile and its id given to another is never listed). */
static ps_code chats_piece(ps_legacy_answer *a, ps_dynbuf *out, bool check_user, bool *end,
                           ps_error *err)
{
    ps_store *store = a->ctx.store;
    *end = false;
    if (a->sync && a->next_id == a->nids) {
        *end = true;
        return PS_OK;
    }
    if (check_user) {
        ps_user user;
        bool found = false;
        ps_code rc = store->ops->user_find(store, a->user, &user, &found, err);
        if (rc != PS_OK)
            return rc;
        if (!found && !a->user_id) { /* /fetchChats of a user with nothing */
            *end = true;
            return PS_OK;
        }
        if (!found || (a->user_id && user.id != a->user_id))
            return ps_error_set(err, PS_ERR_STORE, -1, "",
                                "the user was deleted while its answer was sent");
        a->user_id = user.id;
    }
    piece p = {.a = a, .out = out, .start = out->len, .err = err};
    /* on from the last chat the previous piece sent, not from the first */
    ps_code rc = store->ops->chat_each_after(store, a->user_id, a->after, piece_row, &p, err);
    if (rc == PS_OK)
        rc = p.rc;
    /* not stopped by a full piece: the listing (or the plan) ended */
    *end = rc == PS_OK && (p.end || !p.full);
    return rc;
}

static ps_code opening(ps_legacy_answer *a, ps_dynbuf *out)
{
    a->state = CHATS;
    return ps__dynbuf_adds(out, a->sync ? "{\"missing\":[" : "[");
}

static ps_code closing(ps_legacy_answer *a, ps_dynbuf *out)
{
    a->state = DONE;
    if (!a->sync)
        return ps__dynbuf_adds(out, "]");
    ps_code rc = ps__dynbuf_adds(out, "],\"deletions\":[");
    if (rc == PS_OK && a->deletions.len)
        rc = ps__dynbuf_add(out, a->deletions.data, a->deletions.len);
    if (rc == PS_OK)
        rc = ps__dynbuf_addf(out, "],\"serverClock\":%lld}", (long long)a->server_clock);
    return rc;
}

static ps_code memory_error(ps_code rc, ps_error *err)
{
    if (rc == PS_ERR_TOO_LARGE || rc == PS_ERR_NOMEM)
        return ps_error_set(err, rc, -1, "", "out of memory building the answer");
    return rc;
}

ps_code ps_legacy_answer_head(ps_legacy_answer *a, ps_error *err)
{
    bool end = false;
    ps_code rc = opening(a, &a->head);
    if (rc == PS_OK)
        rc = chats_piece(a, &a->head, false, &end, err);
    if (rc == PS_OK && end)
        rc = closing(a, &a->head);
    a->has_head = rc == PS_OK;
    return memory_error(rc, err);
}

bool ps_legacy_answer_take_whole(ps_legacy_answer *a, ps_dynbuf *body)
{
    if (!a->has_head || a->state != DONE)
        return false;
    size_t limit = body->limit; /* the reply's (gzip sizes its output by it) */
    ps__dynbuf_free(body);
    *body = a->head; /* moved, not copied: nothing left to fail */
    body->limit = limit > body->len ? limit : body->len;
    ps__dynbuf_init(&a->head, SIZE_MAX);
    a->has_head = false;
    return true;
}

/* The next piece after the head, made in a read transaction of the calling
 * thread's: appended to out, *done after the last. */
static ps_code make_piece(ps_legacy_answer *a, ps_dynbuf *out, bool *done, ps_error *err)
{
    ps_store *store = a->ctx.store;
    ps_code rc = PS_OK;
    bool end = false;
    *done = false;
    if (a->state == START)
        rc = opening(a, out);
    if (rc == PS_OK && a->state == CHATS) {
        if (a->sync && a->next_id == a->nids) {
            end = true;
        } else if ((rc = ps_store_begin(store, false, err)) == PS_OK) {
            if ((rc = chats_piece(a, out, true, &end, err)) == PS_OK)
                rc = ps_store_commit(store, err);
            else
                ps_store_rollback(store);
        }
        if (rc == PS_OK && end)
            rc = closing(a, out);
    }
    *done = rc == PS_OK && a->state == DONE;
    return memory_error(rc, err);
}

/* The thread that makes pieces ahead: one each time it is asked. */
static void *ahead_main(void *arg)
{
    ps_legacy_answer *a = arg;
    ahead *h = &a->ahead;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->want && !h->stop)
            pthread_cond_wait(&h->cond, &h->lock);
        if (h->stop)
            break;
        h->want = false;
        pthread_mutex_unlock(&h->lock);
        /* the answer's state is this thread's while it is asked (the
         * server's thread waits for `ready` before it reads anything) */
        ps_error err;
        ps_error_clear(&err);
        bool done = false;
        ps__dynbuf_reset(&h->piece);
        maker_enter();
        ps_code rc = make_piece(a, &h->piece, &done, &err);
        maker_leave();
        pthread_mutex_lock(&h->lock);
        h->rc = rc;
        h->err = err;
        h->done = done;
        h->ready = true;
        pthread_cond_signal(&h->cond);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* Asks the thread (started on first use) for the next piece. false when
 * no thread could be started: the caller makes pieces itself. */
static bool ask_ahead(ps_legacy_answer *a)
{
    ahead *h = &a->ahead;
    if (!h->started) {
        if (pthread_mutex_init(&h->lock, NULL) != 0)
            return false;
        if (pthread_cond_init(&h->cond, NULL) != 0) {
            pthread_mutex_destroy(&h->lock);
            return false;
        }
        if (pthread_create(&h->thread, NULL, ahead_main, a) != 0) {
            pthread_cond_destroy(&h->cond);
            pthread_mutex_destroy(&h->lock);
            return false;
        }
        h->started = true;
    }
    pthread_mutex_lock(&h->lock);
    h->want = true;
    h->ready = false;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->lock);
    return true;
}

ps_code ps_legacy_answer_next(ps_legacy_answer *a, ps_dynbuf *out, bool *done, ps_error *err)
{
    ahead *h = &a->ahead;
    ps_code rc = PS_OK;
    *done = false;
    if (a->has_head) {
        rc = ps__dynbuf_add(out, a->head.data, a->head.len);
        ps__dynbuf_free(&a->head);
        a->has_head = false;
        /* read before asking: once asked, the thread owns the answer's
         * state (and may close it while the head is still to go out) */
        bool head_is_all = a->state == DONE;
        /* the rest is made ahead while the head goes out */
        if (rc == PS_OK && !head_is_all && !ask_ahead(a))
            h->failed = true;
        hold_after_asking();
        *done = rc == PS_OK && head_is_all;
        return memory_error(rc, err);
    }
    if (!h->started) { /* a first piece (no head), or no thread could be started */
        rc = make_piece(a, out, done, err);
        if (rc == PS_OK && !*done && !h->failed && !ask_ahead(a))
            h->failed = true;
        return rc;
    }
    pthread_mutex_lock(&h->lock);
    while (!h->ready)
        pthread_cond_wait(&h->cond, &h->lock);
    rc = h->rc;
    *done = h->done;
    if (rc != PS_OK && err)
        *err = h->err;
    pthread_mutex_unlock(&h->lock);
    if (rc == PS_OK) { /* the piece goes out as it is: swapped in, not copied */
        ps_dynbuf made = h->piece;
        if (out->len == 0 && out->limit >= made.len) {
            h->piece = *out;
            made.limit = out->limit;
            *out = made;
        } else {
            rc = memory_error(ps__dynbuf_add(out, made.data, made.len), err);
        }
    }
    if (rc == PS_OK && !*done)
        ask_ahead(a); /* the next one while this one goes out */
    return rc;
}
