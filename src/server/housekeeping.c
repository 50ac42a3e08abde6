/*
 * Housekeeping: the server's work that belongs to no request — today the
 * tombstone purge (forgetting deletions older than --tombstone-retention).
 */
#include "server/server_internal.h"
#include "core/timestamp.h"
#include "server/log.h"
#include "server/metrics.h"

#define PURGE_INTERVAL_MS (3600 * 1000)

/*
 * Forgets tombstones past the retention, at most once an hour, on the thread
 * of whichever request comes first after the hour: no timer thread to stop.
 */
void ps__purge_if_due(ps_server *srv)
{
    int64_t now = ps_time_now_ms();
    int64_t due = atomic_load(&srv->next_purge_ms);
    if (now < due ||
        !atomic_compare_exchange_strong(&srv->next_purge_ms, &due, now + PURGE_INTERVAL_MS))
        return;
    ps_error err;
    ps_error_clear(&err);
    int64_t purged = 0;
    ps_store *store = srv->env.store;
    ps_code rc = ps_store_begin(store, true, &err);
    if (rc == PS_OK) {
        rc = store->ops->purge_tombstones(store, now - srv->cfg.tombstone_retention_ms, &purged,
                                          &err);
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
