/* A legacy sync's merge loop with the next chats made on the helper
 * thread; see legacy_pipe.h. */
#include "server/legacy_pipe.h"
#include "server/chat_tree.h"
#include "server/content_hash.h"
#include "core/json_parse.h"
#include "core/share.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Below this many bytes of chats the merge thread makes them all itself:
 * waking the helper (~12 µs, docs/performance.md "upload4") and handing
 * chats over cost more than they save on a delta of a few chats. */
#define SHARE_MIN_BYTES ((size_t)256 << 10)

enum item_state { UNTAKEN, HELPER_MAKING, MADE };

typedef struct item {
    json_object *tree;
    ps_chat *chat;
    ps_pack_form *form; /* its pack made ahead, pointed at by chat */
    /* set by the merge thread before `published` passes the item */
    bool wanted, is_new;
    bool failed;         /* the helper failed making it (merge_pipe.helper_rc) */
    unsigned char state; /* guarded by `mu` */
} item;

typedef struct merge_pipe {
    const ps_legacy_pipe_config *cfg;
    ps_legacy_pipe_fn each;
    void *each_cls;
    /* NULL: no packs ahead (yet: a first upload's dictionary is trained
     * during its merge, and asked for again until there is one). Set by
     * the merge thread under `mu`, then never changed. */
    ps_pack_ahead *pa;
    item *items;
    size_t *until; /* until[i]: text bytes of chats [0, i); 0s when unknown */
    size_t count;
    size_t published_here; /* the merge thread's copy of `published` */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by `mu` */
    size_t freed;     /* the trees of chats [0, freed) are put */
    size_t published; /* items [0, published) are set for the helper */
    size_t consumed;  /* chats [0, consumed) handed to `each` */
    bool stop;        /* the helper takes no more chats */
    bool helper_here; /* the helper is in its lane (it puts the trees) */
    ps_code helper_rc;
    ps_error helper_err;
    /* the merge thread's result */
    ps_code rc;
    ps_error *err;
} merge_pipe;

/* Makes chat i into its item, reading as `reader`, its pack with `pa`
 * (NULL: none). */
static ps_code make_one(merge_pipe *p, unsigned reader, size_t i, const ps_pack_ahead *pa,
                        ps_error *err)
{
    const ps_legacy_pipe_config *cfg = p->cfg;
    item *it = &p->items[i];
    const char *text;
    size_t len;
    ps_code rc = ps_chat_source_bytes_as(cfg->src, reader, i, &text, &len, err);
    /* from stage 1 where the bytes have simdjson's padding (the body
     * spool's do), json-c's tokener for what that leaves to it */
    if (rc == PS_OK &&
        !(cfg->src->padding >= PS_CONTENT_HASH_PADDING && ps_chat_tree_build(text, len, &it->tree)))
        rc = ps__json_parse_trusted(text, len, &it->tree, err);
    if (rc == PS_OK && ps__chat_from_legacy(it->tree, cfg->in, &it->chat) != PS_OK)
        return ps_error_set(err, PS_ERR_NOMEM, (long)i, "", "out of memory");
    if (rc != PS_OK)
        return rc;
    /* each message's text, worked out once and kept with it (json_parse.h):
     * the merge hashes it, the store measures and packs it (5 % of a first
     * upload's merge thread); out of memory it is worked out there */
    for (size_t m = 0; m < it->chat->nmessages; m++)
        if (it->chat->messages[m].value)
            (void)ps__json_text_kept(it->chat->messages[m].value, NULL);
    if (!it->is_new || !pa)
        return PS_OK;
    rc = cfg->store->ops->pack_ahead_make(cfg->store, pa, it->chat, cfg->in->device, &it->form);
    if (rc != PS_OK)
        return ps_error_set(err, rc, (long)i, "",
                            rc == PS_ERR_NOMEM ? "out of memory" : "compressing a pack failed");
    it->chat->pack_form = it->form;
    return PS_OK;
}

static void item_free(item *it)
{
    json_object_put(it->tree);
    ps__chat_free(it->chat);
    ps_pack_form_free(it->form);
    it->tree = NULL;
    it->chat = NULL;
    it->form = NULL;
}

/* Whether the helper may make chat c now: within the distance allowed
 * ahead of the merge. Under `mu`. */
static bool room_for(const merge_pipe *p, size_t c)
{
    return c < p->published && c - p->consumed < PIPE_AHEAD_CHATS &&
           (c == p->consumed || p->until[c] - p->until[p->consumed] < PIPE_AHEAD_BYTES);
}

/* Puts the trees of the chats merged since the last call, on the helper:
 * most were made on it, and freeing them here keeps the merge thread off
 * the helper's malloc arena while the helper allocates from it (on the
 * merge thread that was 9 % of its time, much of it waiting on the
 * arena's lock). Under `mu`, released while putting. */
static void put_merged_trees(merge_pipe *p)
{
    size_t from = p->freed, to = p->consumed;
    if (from == to)
        return;
    p->freed = to;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = from; i < to; i++) {
        json_object_put(p->items[i].tree);
        p->items[i].tree = NULL;
    }
    pthread_mutex_lock(&p->mu);
}

/* The helper's lane: the next chat nobody took, ahead of the merge. */
static void helper_lane(merge_pipe *p)
{
    size_t c = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        put_merged_trees(p);
        if (c < p->consumed)
            c = p->consumed; /* the merge thread went past: its own */
        while (!p->stop && c < p->count && !room_for(p, c) && p->freed == p->consumed) {
            pthread_cond_wait(&p->cv, &p->mu);
            if (c < p->consumed)
                c = p->consumed;
        }
        if (p->freed != p->consumed)
            continue;
        if (p->stop || c >= p->count)
            break;
        item *it = &p->items[c];
        if (it->state != UNTAKEN || !it->wanted) {
            c++;
            continue;
        }
        it->state = HELPER_MAKING;
        const ps_pack_ahead *pa = p->pa;
        pthread_mutex_unlock(&p->mu);
        ps_error err;
        ps_error_clear(&err);
        ps_code rc = make_one(p, 1, c, pa, &err);
        pthread_mutex_lock(&p->mu);
        if (rc != PS_OK) {
            it->failed = true;
            p->helper_rc = rc;
            p->helper_err = err;
            p->stop = true;
        }
        it->state = MADE;
        pthread_cond_broadcast(&p->cv);
        c++;
    }
    pthread_mutex_unlock(&p->mu);
}

/* Sets the items up to PIPE_AHEAD_CHATS past chat i for the helper (what
 * it may make, and which chats are new to the store), half a distance at
 * a time. On the merge thread: the store's connection is its own. */
static ps_code publish(merge_pipe *p, size_t i)
{
    const ps_legacy_pipe_config *cfg = p->cfg;
    if (p->published_here > i + PIPE_AHEAD_CHATS / 2 || p->published_here == p->count)
        return PS_OK;
    size_t to = i + PIPE_AHEAD_CHATS + 1 < p->count ? i + PIPE_AHEAD_CHATS + 1 : p->count;
    bool packs = cfg->store && cfg->store->ops->pack_ahead_begin;
    ps_pack_ahead *pa = NULL;
    ps_code rc = packs && !p->pa
                     ? cfg->store->ops->pack_ahead_begin(cfg->store, cfg->user, &pa, p->err)
                     : PS_OK;
    for (size_t j = p->published_here; j < to && rc == PS_OK; j++) {
        item *it = &p->items[j];
        it->wanted = cfg->wanted(cfg->cls, j);
        const char *id = it->wanted && packs ? cfg->known_id(cfg->cls, j) : NULL;
        if (id)
            rc = cfg->store->ops->chat_is_new(cfg->store, cfg->user, id, &it->is_new, p->err);
    }
    if (rc != PS_OK) {
        if (pa)
            cfg->store->ops->pack_ahead_end(cfg->store, pa);
        return rc;
    }
    p->published_here = to;
    pthread_mutex_lock(&p->mu);
    if (pa)
        p->pa = pa;
    p->published = to;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return PS_OK;
}

/* A chat after i (published, within the helper's distance) nobody took,
 * or i itself when none is. Under `mu`. */
static size_t next_untaken(const merge_pipe *p, size_t i)
{
    for (size_t j = i + 1; j < p->published && j - i < PIPE_AHEAD_CHATS; j++)
        if (p->items[j].wanted && p->items[j].state == UNTAKEN)
            return j;
    return i;
}

/* Chat i made, by the helper or here. While the helper makes it, this
 * thread makes a later chat nobody took rather than wait: when the helper
 * has more to do than the merge (the packs' compression is the longest
 * part), the two share it. */
static ps_code take(merge_pipe *p, size_t i)
{
    item *it = &p->items[i];
    if (!it->wanted)
        return PS_OK;
    ps_code rc = PS_OK;
    pthread_mutex_lock(&p->mu);
    while (rc == PS_OK && it->state != MADE) {
        size_t j = it->state == UNTAKEN ? i : next_untaken(p, i);
        if (j == i && it->state == HELPER_MAKING) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        p->items[j].state = MADE; /* made here, now */
        const ps_pack_ahead *pa = p->pa;
        pthread_mutex_unlock(&p->mu);
        rc = make_one(p, 0, j, pa, p->err);
        pthread_mutex_lock(&p->mu);
    }
    if (rc == PS_OK && it->failed) {
        rc = p->helper_rc;
        *p->err = p->helper_err;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* The merge thread's lane: every chat in order. */
static void merge_lane(merge_pipe *p)
{
    for (size_t i = 0; i < p->count && p->rc == PS_OK; i++) {
        item *it = &p->items[i];
        p->rc = publish(p, i);
        if (p->rc == PS_OK)
            p->rc = take(p, i);
        if (p->rc == PS_OK) {
            p->rc = p->each(p->each_cls, i, it->tree, it->chat, p->err);
            it->chat = NULL; /* the callee's; the tree is put by put_merged_trees */
        }
        ps__chat_free(it->chat);
        ps_pack_form_free(it->form); /* after the save that took it */
        it->chat = NULL;
        it->form = NULL;
        pthread_mutex_lock(&p->mu);
        p->consumed = i + 1;
        if (!p->helper_here)
            put_merged_trees(p);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void lane_main(void *cls, unsigned lane)
{
    merge_pipe *p = cls;
    if (lane == 0) {
        merge_lane(p);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->helper_here = !p->stop; /* else: it came after the end */
    pthread_mutex_unlock(&p->mu);
    if (p->helper_here)
        helper_lane(p);
}

ps_code ps_legacy_pipe_run(const ps_legacy_pipe_config *cfg, ps_legacy_pipe_fn each, void *each_cls,
                           ps_error *err)
{
    const ps_chat_source *src = cfg->src;
    merge_pipe p = {
        .cfg = cfg, .each = each, .each_cls = each_cls, .count = src->count, .err = err};
    if (p.count == 0)
        return PS_OK;
    p.items = calloc(p.count, sizeof *p.items);
    p.until = calloc(p.count + 1, sizeof *p.until);
    if (!p.items || !p.until) {
        free(p.items);
        free(p.until);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    for (size_t i = 0; i < p.count; i++)
        p.until[i + 1] = p.until[i] + (src->length ? src->length(src->cls, i) : 0);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    if (src->readers >= 2 && p.until[p.count] >= SHARE_MIN_BYTES)
        ps__share_run(lane_main, &p);
    else
        merge_lane(&p);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
    ps_code rc = p.rc;
    for (size_t i = 0; i < p.count; i++) /* merged and not put, or made and never merged */
        item_free(&p.items[i]);
    if (p.pa)
        cfg->store->ops->pack_ahead_end(cfg->store, p.pa);
    free(p.items);
    free(p.until);
    return rc;
}
