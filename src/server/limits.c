/* Token buckets and in-flight counts per user; see limits.h. */
#include "server/limits.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024

typedef struct entry {
    struct entry *next;
    double tokens;
    int64_t refilled_ms;
    unsigned in_flight;
    char user[];
} entry;

struct ps_limiter {
    pthread_mutex_t lock;
    double rate, burst;
    unsigned max_in_flight;
    entry *table[BUCKETS];
};

ps_limiter *ps_limiter_new(double rate_per_s, double burst, unsigned max_in_flight)
{
    ps_limiter *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    pthread_mutex_init(&l->lock, NULL);
    l->rate = rate_per_s; /* 0: no rate limit, only the in-flight cap */
    l->burst = burst >= 1 ? burst : rate_per_s * 2 >= 1 ? rate_per_s * 2 : 1;
    l->max_in_flight = max_in_flight;
    return l;
}

void ps_limiter_free(ps_limiter *l)
{
    if (!l)
        return;
    for (int i = 0; i < BUCKETS; i++) {
        for (entry *e = l->table[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

/* The user's entry, made with a full bucket on first sight; NULL on OOM. */
static entry *find(ps_limiter *l, const char *user, int64_t now_ms)
{
    unsigned h = hash(user);
    for (entry *e = l->table[h]; e; e = e->next)
        if (strcmp(e->user, user) == 0)
            return e;
    size_t n = strlen(user);
    entry *e = calloc(1, sizeof *e + n + 1);
    if (!e)
        return NULL;
    memcpy(e->user, user, n + 1);
    e->tokens = l->burst;
    e->refilled_ms = now_ms;
    e->next = l->table[h];
    l->table[h] = e;
    return e;
}

ps_code ps_limiter_acquire(ps_limiter *l, const char *user, int64_t now_ms, unsigned *retry_s,
                           bool *too_many)
{
    ps_code rc = PS_OK;
    *retry_s = 0;
    *too_many = false;
    pthread_mutex_lock(&l->lock);
    entry *e = find(l, user, now_ms);
    if (!e) {
        rc = PS_ERR_NOMEM;
        goto out;
    }
    if (now_ms > e->refilled_ms) {
        e->tokens += (double)(now_ms - e->refilled_ms) / 1000.0 * l->rate;
        if (e->tokens > l->burst)
            e->tokens = l->burst;
        e->refilled_ms = now_ms;
    }
    if (e->in_flight >= l->max_in_flight) {
        *too_many = true;
        *retry_s = 1;
        rc = PS_ERR_RATE_LIMITED;
    } else if (l->rate > 0 && e->tokens < 1.0) {
        double wait = (1.0 - e->tokens) / l->rate;
        *retry_s = (unsigned)ceil(wait);
        if (*retry_s == 0)
            *retry_s = 1;
        rc = PS_ERR_RATE_LIMITED;
    } else {
        if (l->rate > 0)
            e->tokens -= 1.0;
        e->in_flight++;
    }
out:
    pthread_mutex_unlock(&l->lock);
    return rc;
}

void ps_limiter_release(ps_limiter *l, const char *user)
{
    pthread_mutex_lock(&l->lock);
    for (entry *e = l->table[hash(user)]; e; e = e->next) {
        if (strcmp(e->user, user) == 0) {
            if (e->in_flight)
                e->in_flight--;
            break;
        }
    }
    pthread_mutex_unlock(&l->lock);
}
