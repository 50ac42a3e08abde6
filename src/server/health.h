/*
 * Whether the store is usable, for GET /health (issue 16.3): the store's
 * probe (store.h: reads and writes through to disk, corruption) run at most
 * once per interval, its answer cached meanwhile, so a load balancer that
 * polls /health often costs one small write a second at most. Changes of
 * state are logged.
 */
#ifndef PS_SERVER_HEALTH_H
#define PS_SERVER_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ps_store;
typedef struct ps_health ps_health;

/* Runs the first probe now, checking the store page by page when it is up
 * to deep_max_bytes (0: never); logs a problem. NULL when out of memory.
 * The store is borrowed and must outlive the result. */
ps_health *ps_health_new(struct ps_store *store, unsigned interval_ms, size_t deep_max_bytes);
void ps_health_free(ps_health *h);

/* Whether the store is usable; when not, why (a reason fit for clients)
 * in `reason`. Thread-safe; probes again when the last answer is older
 * than the interval. */
bool ps_health_ok(ps_health *h, char *reason, size_t reason_size);

#endif
