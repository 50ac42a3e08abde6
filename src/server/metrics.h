/*
 * Prometheus metrics (text format 0.0.4). Counters are process-wide
 * relaxed atomics bumped on the request path without a lock; gauges that
 * cost a query (users, store size, open streams) are read only when
 * /metrics is scraped. docs/operations.md lists every metric.
 */
#ifndef PS_METRICS_H
#define PS_METRICS_H

#include "core/dynbuf.h"

#include <stdbool.h>
#include <stdint.h>

/* A finished request: `route` is the matched path (NULL when none). */
void ps_metrics_request(const char *route, unsigned status, uint64_t bytes_in, uint64_t bytes_out,
                        int64_t duration_us);
/* How long a large request waited for its lane slot (server/lane.h). */
void ps_metrics_lane_wait(int64_t wait_us);
/* A sync saved `chats` changed chats holding `messages` changed messages. */
void ps_metrics_merged(uint64_t chats, uint64_t messages);
/* A refused credential. */
void ps_metrics_auth_failure(void);
/* Tombstones forgot by a purge. */
void ps_metrics_purged(int64_t tombstones);

/* Gauges read at scrape time by the caller (-1: unknown, left out). */
typedef struct ps_metrics_gauges {
    int64_t live_streams;
    int64_t websockets;
    int64_t connections;
    int64_t inflight;
    int64_t users;
    int64_t live_chats;
    int64_t store_bytes;
    double uptime_s;
} ps_metrics_gauges;

/* Appends the whole exposition to `out`. */
ps_code ps_metrics_render(const ps_metrics_gauges *g, ps_dynbuf *out);

#endif
