/*
 * Housekeeping: the server's work that belongs to no request. Today the
 * tombstone purge: tombstones older than --tombstone-retention are
 * forgotten once when the server starts (before it serves) and then every
 * --purge-interval on a timer thread of its own, so no request ever waits
 * for a purge and a server nobody calls still forgets on time.
 */
#ifndef PS_SERVER_HOUSEKEEPING_H
#define PS_SERVER_HOUSEKEEPING_H

#include "polysync/error.h"

#include <stdint.h>

struct ps_store;
typedef struct ps_housekeeping ps_housekeeping;

/*
 * Purges once now, then starts the timer thread. The store is borrowed and
 * must outlive ps__housekeeping_stop(). *out is the caller's; NULL with err
 * set when the thread cannot start.
 */
ps_code ps__housekeeping_start(struct ps_store *store, int64_t retention_ms,
                               unsigned interval_s, ps_housekeeping **out, ps_error *err);

/* Wakes the thread, waits for it (a purge under way finishes first) and
 * frees hk. NULL is a no-op. */
void ps__housekeeping_stop(ps_housekeeping *hk);

#endif
