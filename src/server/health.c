/* The cached store probe; see health.h. */
#include "server/health.h"
#include "core/timestamp.h"
#include "store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ps_health {
    ps_store *store;
    unsigned interval_ms;
    pthread_mutex_t lock; /* one probe at a time; others wait for its answer */
    int64_t probed_ms;    /* monotonic; 0 = never */
    bool ok;
    char reason[256];
};

/* Under the lock. */
static void probe(ps_health *h, size_t deep_max_bytes)
{
    ps_error err;
    ps_error_clear(&err);
    /* a backend without a probe is taken at its word, as before */
    bool ok =
        !h->store->ops->probe || h->store->ops->probe(h->store, deep_max_bytes, &err) == PS_OK;
    if (ok != h->ok || (!ok && strcmp(err.message, h->reason) != 0)) {
        if (ok)
            fprintf(stderr, "polysyncd: the store is usable again\n");
        else
            fprintf(stderr, "polysyncd: the store is not usable: %s\n", err.message);
    }
    h->ok = ok;
    snprintf(h->reason, sizeof h->reason, "%s", ok ? "" : err.message);
    h->probed_ms = ps__time_monotonic_ms();
}

ps_health *ps_health_new(ps_store *store, unsigned interval_ms, size_t deep_max_bytes)
{
    ps_health *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->store = store;
    h->interval_ms = interval_ms;
    h->ok = true; /* so a problem found now is logged */
    pthread_mutex_init(&h->lock, NULL);
    probe(h, deep_max_bytes);
    return h;
}

void ps_health_free(ps_health *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    free(h);
}

bool ps_health_ok(ps_health *h, char *reason, size_t reason_size)
{
    pthread_mutex_lock(&h->lock);
    if (ps__time_monotonic_ms() - h->probed_ms >= h->interval_ms)
        probe(h, 0);
    bool ok = h->ok;
    snprintf(reason, reason_size, "%s", h->reason);
    pthread_mutex_unlock(&h->lock);
    return ok;
}
