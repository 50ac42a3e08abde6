/* Revocation and disabled users, cached; see access.h. */
#include "server/access.h"
#include "core/timestamp.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct revoked_token {
    char *jti, *user;
} revoked_token;

typedef struct account {
    char *name;
    bool disabled;
    int64_t tokens_before_ms;
} account;

/* One immutable picture of the store's lists, sorted for bsearch. */
typedef struct snapshot {
    revoked_token *tokens;
    size_t ntokens, tokens_cap;
    account *accounts;
    size_t naccounts, accounts_cap;
    bool oom; /* a listing stopped early for want of memory */
} snapshot;

struct ps_access {
    ps_store *store;
    ps_access_cut_fn cut;
    void *cut_ctx;
    unsigned poll_ms;
    pthread_rwlock_t rw; /* guards `snap` */
    snapshot *snap;
    int64_t generation; /* of snap; the poller's */
    bool loaded;
    pthread_mutex_t lock; /* guards stop, and serialises refreshes */
    pthread_cond_t wake;
    bool stop;
    pthread_t poller;
};

static void snapshot_free(snapshot *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ntokens; i++) {
        free(s->tokens[i].jti);
        free(s->tokens[i].user);
    }
    for (size_t i = 0; i < s->naccounts; i++)
        free(s->accounts[i].name);
    free(s->tokens);
    free(s->accounts);
    free(s);
}

static int add_token(void *ctx, const ps_token_row *row)
{
    snapshot *s = ctx;
    if (s->ntokens == s->tokens_cap) {
        size_t cap = s->tokens_cap ? 2 * s->tokens_cap : 16;
        revoked_token *t = realloc(s->tokens, cap * sizeof *t);
        if (!t)
            return s->oom = true;
        s->tokens = t;
        s->tokens_cap = cap;
    }
    revoked_token *t = &s->tokens[s->ntokens];
    t->jti = strdup(row->jti);
    t->user = strdup(row->user);
    if (!t->jti || !t->user) {
        free(t->jti);
        free(t->user);
        return s->oom = true;
    }
    s->ntokens++;
    return 0;
}

static int add_account(void *ctx, const ps_account_row *row)
{
    snapshot *s = ctx;
    if (s->naccounts == s->accounts_cap) {
        size_t cap = s->accounts_cap ? 2 * s->accounts_cap : 16;
        account *a = realloc(s->accounts, cap * sizeof *a);
        if (!a)
            return s->oom = true;
        s->accounts = a;
        s->accounts_cap = cap;
    }
    account *a = &s->accounts[s->naccounts];
    if (!(a->name = strdup(row->name)))
        return s->oom = true;
    a->disabled = row->disabled;
    a->tokens_before_ms = row->tokens_before_ms;
    s->naccounts++;
    return 0;
}

static int token_cmp(const void *a, const void *b)
{
    return strcmp(((const revoked_token *)a)->jti, ((const revoked_token *)b)->jti);
}

static int account_cmp(const void *a, const void *b)
{
    return strcmp(((const account *)a)->name, ((const account *)b)->name);
}

/* For bsearch. Empty lists have no array at all (qsort must not see NULL). */
static void sort_snapshot(snapshot *s)
{
    if (s->ntokens)
        qsort(s->tokens, s->ntokens, sizeof *s->tokens, token_cmp);
    if (s->naccounts)
        qsort(s->accounts, s->naccounts, sizeof *s->accounts, account_cmp);
}

static const revoked_token *find_token(const snapshot *s, const char *jti)
{
    revoked_token key = {.jti = (char *)jti};
    return s && s->ntokens ? bsearch(&key, s->tokens, s->ntokens, sizeof key, token_cmp) : NULL;
}

static const account *find_account(const snapshot *s, const char *name)
{
    account key = {.name = (char *)name};
    return s && s->naccounts ? bsearch(&key, s->accounts, s->naccounts, sizeof key, account_cmp)
                             : NULL;
}

/* Reads the generation and, when it moved (or force), the lists, in one
 * read transaction. *fresh NULL: nothing new. */
static ps_code load(ps_access *acc, bool force, snapshot **fresh, int64_t *generation,
                    ps_error *err)
{
    *fresh = NULL;
    ps_store *st = acc->store;
    ps_code rc = ps_store_begin(st, false, err);
    if (rc != PS_OK)
        return rc;
    rc = st->ops->access_generation(st, generation, err);
    if (rc == PS_OK && (force || *generation != acc->generation)) {
        snapshot *s = calloc(1, sizeof *s);
        if (!s)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        if (rc == PS_OK)
            rc = st->ops->token_revoked_each(st, ps__time_now_ms(), add_token, s, err);
        if (rc == PS_OK)
            rc = st->ops->account_each(st, add_account, s, err);
        if (rc == PS_OK && s->oom)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        if (rc == PS_OK)
            *fresh = s;
        else
            snapshot_free(s);
    }
    if (rc == PS_OK)
        rc = ps_store_commit(st, err);
    else
        ps_store_rollback(st);
    if (rc != PS_OK) {
        snapshot_free(*fresh);
        *fresh = NULL;
    }
    return rc;
}

/* Cuts the live connections of every user the new picture refuses more
 * than the old one did. */
static void cut_newly_refused(ps_access *acc, const snapshot *old, const snapshot *now)
{
    if (!acc->cut)
        return;
    for (size_t i = 0; i < now->ntokens; i++)
        if (!find_token(old, now->tokens[i].jti))
            acc->cut(acc->cut_ctx, now->tokens[i].user);
    for (size_t i = 0; i < now->naccounts; i++) {
        const account *a = &now->accounts[i], *was = find_account(old, a->name);
        if ((a->disabled && !(was && was->disabled)) ||
            a->tokens_before_ms > (was ? was->tokens_before_ms : 0))
            acc->cut(acc->cut_ctx, a->name);
    }
}

static void refresh(ps_access *acc, bool force)
{
    ps_error err;
    ps_error_clear(&err);
    snapshot *fresh = NULL;
    int64_t generation = 0;
    pthread_mutex_lock(&acc->lock); /* one refresh at a time: `generation` is ours */
    if (load(acc, force, &fresh, &generation, &err) != PS_OK) {
        /* keep refusing what we knew; try again at the next poll */
        fprintf(stderr, "polysyncd: reading revoked tokens failed: %s\n", err.message);
    } else if (fresh) {
        sort_snapshot(fresh);
        pthread_rwlock_wrlock(&acc->rw);
        snapshot *old = acc->snap;
        acc->snap = fresh;
        pthread_rwlock_unlock(&acc->rw);
        acc->generation = generation;
        if (acc->loaded)
            cut_newly_refused(acc, old, fresh);
        acc->loaded = true;
        snapshot_free(old);
    }
    pthread_mutex_unlock(&acc->lock);
}

static void *poller_main(void *arg)
{
    ps_access *acc = arg;
    pthread_mutex_lock(&acc->lock);
    while (!acc->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += acc->poll_ms / 1000;
        until.tv_nsec += (long)(acc->poll_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&acc->wake, &acc->lock, &until);
        if (acc->stop)
            break;
        pthread_mutex_unlock(&acc->lock);
        refresh(acc, false);
        pthread_mutex_lock(&acc->lock);
    }
    pthread_mutex_unlock(&acc->lock);
    return NULL;
}

ps_code ps_access_new(ps_store *store, unsigned poll_ms, ps_access_cut_fn cut, void *cut_ctx,
                      ps_access **out, ps_error *err)
{
    *out = NULL;
    ps_access *acc = calloc(1, sizeof *acc);
    if (!acc)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    acc->store = store;
    acc->cut = cut;
    acc->cut_ctx = cut_ctx;
    acc->poll_ms = poll_ms ? poll_ms : 1000;
    pthread_rwlock_init(&acc->rw, NULL);
    pthread_mutex_init(&acc->lock, NULL);
    pthread_cond_init(&acc->wake, NULL);
    snapshot *first = NULL;
    int64_t generation = 0;
    ps_code rc = load(acc, true, &first, &generation, err);
    if (rc == PS_OK) {
        sort_snapshot(first);
        acc->snap = first;
        acc->generation = generation;
        acc->loaded = true;
        if (pthread_create(&acc->poller, NULL, poller_main, acc) != 0)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "cannot start the revocation poller");
    }
    if (rc != PS_OK) {
        snapshot_free(acc->snap);
        pthread_cond_destroy(&acc->wake);
        pthread_mutex_destroy(&acc->lock);
        pthread_rwlock_destroy(&acc->rw);
        free(acc);
        return rc;
    }
    *out = acc;
    return PS_OK;
}

void ps_access_free(ps_access *acc)
{
    if (!acc)
        return;
    pthread_mutex_lock(&acc->lock);
    acc->stop = true;
    pthread_cond_signal(&acc->wake);
    pthread_mutex_unlock(&acc->lock);
    pthread_join(acc->poller, NULL);
    snapshot_free(acc->snap);
    pthread_cond_destroy(&acc->wake);
    pthread_mutex_destroy(&acc->lock);
    pthread_rwlock_destroy(&acc->rw);
    free(acc);
}

void ps_access_refresh(ps_access *acc)
{
    refresh(acc, false);
}

ps_access_verdict ps_access_check(ps_access *acc, const char *user, const ps_auth_claims *claims)
{
    ps_access_verdict v = PS_ACCESS_OK;
    pthread_rwlock_rdlock(&acc->rw);
    const account *a = find_account(acc->snap, user);
    if (claims->jti[0]) {
        const revoked_token *t = find_token(acc->snap, claims->jti);
        if (t && strcmp(t->user, user) == 0)
            v = PS_ACCESS_REVOKED;
    }
    /* a token without iat counts as issued at 0: refused by any cut */
    if (a && a->tokens_before_ms && claims->iat_ms <= a->tokens_before_ms)
        v = PS_ACCESS_REVOKED;
    if (v == PS_ACCESS_OK && a && a->disabled)
        v = PS_ACCESS_DISABLED;
    pthread_rwlock_unlock(&acc->rw);
    return v;
}

void ps_access_reply(ps_reply *reply, ps_access_verdict verdict)
{
    if (verdict == PS_ACCESS_REVOKED) {
        ps_reply_from_code(reply, PS_ERR_TOKEN_REVOKED,
                           "this token has been revoked; ask the server's operator for a new one");
    } else if (verdict == PS_ACCESS_DISABLED) {
        ps_reply_from_code(reply, PS_ERR_USER_DISABLED,
                           "this account is disabled; ask the server's operator");
    }
}
