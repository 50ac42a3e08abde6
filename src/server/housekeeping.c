/*
 * Housekeeping; see housekeeping.h. One thread, asleep on a condition
 * variable between purges (CLOCK_MONOTONIC, so a wall-clock jump neither
 * skips nor repeats one); stop wakes it at once.
 */
#include "server/housekeeping.h"
#include "core/timestamp.h"
#include "server/log.h"
#include "server/metrics.h"
#include "store/store.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct ps_housekeeping {
    ps_store *store;
    int64_t retention_ms;
    unsigned interval_s;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* signalled by stop */
    bool stopping;       /* under lock */
};

/* Forgets tombstones past the retention, logging and counting what went. */
static void purge(ps_housekeeping *hk)
{
    int64_t now = ps__time_now_ms();
    ps_error err;
    ps_error_clear(&err);
    int64_t purged = 0;
    ps_store *store = hk->store;
    ps_code rc = ps_store_begin(store, true, &err);
    if (rc == PS_OK) {
        rc = store->ops->purge_tombstones(store, now - hk->retention_ms, &purged, &err);
        if (rc == PS_OK)
            rc = ps_store_commit(store, &err);
        else
            ps_store_rollback(store);
    }
    if (rc != PS_OK) {
        ps_log_event(PS_LOG_ERROR, "purge_failed", "tombstone purge failed: %s", err.message);
    } else if (purged) {
        ps_metrics_purged(purged);
        ps_log_event(PS_LOG_INFO, "purge", "forgot %lld tombstones older than the retention",
                     (long long)purged);
    }
}

static void *timer_main(void *arg)
{
    ps_housekeeping *hk = arg;
    pthread_mutex_lock(&hk->lock);
    while (!hk->stopping) {
        struct timespec due;
        clock_gettime(CLOCK_MONOTONIC, &due);
        due.tv_sec += hk->interval_s;
        while (!hk->stopping && pthread_cond_timedwait(&hk->wake, &hk->lock, &due) == 0)
            ; /* woken without a stop: sleep on to the same deadline */
        if (hk->stopping)
            break;
        pthread_mutex_unlock(&hk->lock); /* stop must not wait for the lock a purge holds */
        purge(hk);
        pthread_mutex_lock(&hk->lock);
    }
    pthread_mutex_unlock(&hk->lock);
    return NULL;
}

ps_code ps__housekeeping_start(ps_store *store, int64_t retention_ms, unsigned interval_s,
                               ps_housekeeping **out, ps_error *err)
{
    *out = NULL;
    ps_housekeeping *hk = calloc(1, sizeof *hk);
    if (!hk)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    hk->store = store;
    hk->retention_ms = retention_ms;
    hk->interval_s = interval_s;
    pthread_mutex_init(&hk->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&hk->wake, &attr);
    pthread_condattr_destroy(&attr);
    /* before serving, as the first request used to: a restart after a long
     * stop forgets what expired meanwhile before anyone syncs */
    purge(hk);
    if (pthread_create(&hk->thread, NULL, timer_main, hk) != 0) {
        pthread_cond_destroy(&hk->wake);
        pthread_mutex_destroy(&hk->lock);
        free(hk);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "cannot start the housekeeping thread");
    }
    *out = hk;
    return PS_OK;
}

void ps__housekeeping_stop(ps_housekeeping *hk)
{
    if (!hk)
        return;
    pthread_mutex_lock(&hk->lock);
    hk->stopping = true;
    pthread_cond_signal(&hk->wake);
    pthread_mutex_unlock(&hk->lock);
    pthread_join(hk->thread, NULL);
    pthread_cond_destroy(&hk->wake);
    pthread_mutex_destroy(&hk->lock);
    free(hk);
}
