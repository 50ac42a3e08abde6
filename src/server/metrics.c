/* Counters and their exposition; see metrics.h. */
#include "server/metrics.h"
#include "store/store.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* The label values are fixed lists, so a client's made-up path or status
 * can never grow the exposition (one "other" bucket catches the rest). */
static const char *const ROUTES[] = {"/sync",        "/pushChats", "/fetchChats", "/deleteChat",
                                     "/deleteChats", "/health",    "/v2/sync",    "/v2/events",
                                     "/metrics",     "/",          "other"};
#define N_ROUTES (sizeof ROUTES / sizeof *ROUTES)
static const unsigned STATUSES[] = {0,   101, 200, 204, 400, 401, 403, 404, 405,
                                    409, 410, 413, 415, 429, 500, 503, 507, 999};
#define N_STATUSES (sizeof STATUSES / sizeof *STATUSES) /* 999: any other */

/* Sync duration buckets, seconds; one histogram per protocol. */
static const double BUCKETS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1,     2.5,  5,     10};
#define N_BUCKETS (sizeof BUCKETS / sizeof *BUCKETS)
enum { PROTO_LEGACY, PROTO_V2, N_PROTOS };
static const char *const PROTOS[] = {"legacy", "v2"};

typedef struct histogram {
    atomic_uint_fast64_t bucket[N_BUCKETS + 1]; /* not cumulative; last: +Inf */
    atomic_uint_fast64_t sum_us;
} histogram;

static atomic_uint_fast64_t g_requests[N_ROUTES][N_STATUSES];
static atomic_uint_fast64_t g_bytes_in, g_bytes_out;
static histogram g_sync[N_PROTOS];
static histogram g_lane_wait;
static atomic_uint_fast64_t g_auth_failures, g_purged;
static atomic_uint_fast64_t g_chats_merged, g_messages_merged;

#define ADD(var, n) atomic_fetch_add_explicit(&(var), (n), memory_order_relaxed)
#define GET(var) atomic_load_explicit(&(var), memory_order_relaxed)

static unsigned route_index(const char *route)
{
    for (unsigned i = 0; route && i < N_ROUTES - 1; i++)
        if (strcmp(ROUTES[i], route) == 0)
            return i;
    return N_ROUTES - 1;
}

static unsigned status_index(unsigned status)
{
    for (unsigned i = 0; i < N_STATUSES - 1; i++)
        if (STATUSES[i] == status)
            return i;
    return N_STATUSES - 1;
}

static void observe(histogram *h, int64_t us)
{
    if (us < 0)
        us = 0;
    double s = (double)us / 1e6;
    unsigned i = 0;
    while (i < N_BUCKETS && s > BUCKETS[i])
        i++;
    ADD(h->bucket[i], 1);
    ADD(h->sum_us, (uint64_t)us);
}

void ps_metrics_request(const char *route, unsigned status, uint64_t bytes_in, uint64_t bytes_out,
                        int64_t duration_us)
{
    ADD(g_requests[route_index(route)][status_index(status)], 1);
    ADD(g_bytes_in, bytes_in);
    ADD(g_bytes_out, bytes_out);
    if (route && strcmp(route, "/v2/sync") == 0)
        observe(&g_sync[PROTO_V2], duration_us);
    else if (route && (strcmp(route, "/sync") == 0 || strcmp(route, "/pushChats") == 0))
        observe(&g_sync[PROTO_LEGACY], duration_us);
}

void ps_metrics_lane_wait(int64_t wait_us)
{
    observe(&g_lane_wait, wait_us);
}

void ps_metrics_merged(uint64_t chats, uint64_t messages)
{
    ADD(g_chats_merged, chats);
    ADD(g_messages_merged, messages);
}

void ps_metrics_auth_failure(void)
{
    ADD(g_auth_failures, 1);
}

void ps_metrics_purged(int64_t tombstones)
{
    if (tombstones > 0)
        ADD(g_purged, (uint64_t)tombstones);
}

/* ---- exposition ---- */

static ps_code emit(ps_dynbuf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ps_code emit(ps_dynbuf *out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        return PS_ERR_TOO_LARGE;
    return ps__dynbuf_add(out, line, (size_t)n);
}

static ps_code emit_histogram(ps_dynbuf *out, const char *name, const char *labels,
                              const histogram *h)
{
    uint64_t cumulative = 0;
    ps_code rc = PS_OK;
    const char *sep = *labels ? "," : "";
    for (unsigned i = 0; i <= N_BUCKETS && rc == PS_OK; i++) {
        cumulative += GET(h->bucket[i]);
        if (i < N_BUCKETS)
            rc = emit(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, BUCKETS[i],
                      (unsigned long long)cumulative);
        else
            rc = emit(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                      (unsigned long long)cumulative);
    }
    const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
    if (rc == PS_OK)
        rc = emit(out, "%s_sum%s%s%s %.6f\n", name, open, labels, close,
                  (double)GET(h->sum_us) / 1e6);
    if (rc == PS_OK)
        rc = emit(out, "%s_count%s%s%s %llu\n", name, open, labels, close,
                  (unsigned long long)cumulative);
    return rc;
}

static ps_code emit_gauge(ps_dynbuf *out, const char *name, const char *help, int64_t v)
{
    if (v < 0)
        return PS_OK; /* unknown: left out rather than a false 0 */
    ps_code rc = emit(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    return rc == PS_OK ? emit(out, "%s %lld\n", name, (long long)v) : rc;
}

ps_code ps_metrics_render(const ps_metrics_gauges *g, ps_dynbuf *out)
{
    ps_code rc = emit(out, "# HELP polysync_http_requests_total Requests answered, by route "
                           "and status (status 0: the client left before the answer).\n"
                           "# TYPE polysync_http_requests_total counter\n");
    for (unsigned r = 0; r < N_ROUTES && rc == PS_OK; r++) {
        for (unsigned s = 0; s < N_STATUSES && rc == PS_OK; s++) {
            uint64_t n = GET(g_requests[r][s]);
            if (n == 0)
                continue;
            char status[8];
            if (s == N_STATUSES - 1)
                snprintf(status, sizeof status, "other");
            else
                snprintf(status, sizeof status, "%u", STATUSES[s]);
            rc = emit(out, "polysync_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                      ROUTES[r], status, (unsigned long long)n);
        }
    }
    if (rc == PS_OK)
        rc = emit(out,
                  "# HELP polysync_http_received_bytes_total Request bytes read (as sent).\n"
                  "# TYPE polysync_http_received_bytes_total counter\n"
                  "polysync_http_received_bytes_total %llu\n"
                  "# HELP polysync_http_sent_bytes_total Answer body bytes sent.\n"
                  "# TYPE polysync_http_sent_bytes_total counter\n"
                  "polysync_http_sent_bytes_total %llu\n",
                  (unsigned long long)GET(g_bytes_in), (unsigned long long)GET(g_bytes_out));
    if (rc == PS_OK)
        rc = emit(out, "# HELP polysync_sync_duration_seconds Sync requests, from headers to "
                       "answer, by protocol.\n"
                       "# TYPE polysync_sync_duration_seconds histogram\n");
    for (unsigned p = 0; p < N_PROTOS && rc == PS_OK; p++) {
        char labels[32];
        snprintf(labels, sizeof labels, "protocol=\"%s\"", PROTOS[p]);
        rc = emit_histogram(out, "polysync_sync_duration_seconds", labels, &g_sync[p]);
    }
    if (rc == PS_OK)
        rc = emit(out, "# HELP polysync_lane_wait_seconds How long large requests waited for "
                       "a lane slot.\n"
                       "# TYPE polysync_lane_wait_seconds histogram\n");
    if (rc == PS_OK)
        rc = emit_histogram(out, "polysync_lane_wait_seconds", "", &g_lane_wait);
    if (rc == PS_OK)
        rc = emit(out,
                  "# HELP polysync_store_transactions_total Store transactions begun.\n"
                  "# TYPE polysync_store_transactions_total counter\n"
                  "polysync_store_transactions_total %llu\n"
                  "# HELP polysync_store_wait_seconds_total Time spent waiting to begin store "
                  "transactions (the store lock).\n"
                  "# TYPE polysync_store_wait_seconds_total counter\n"
                  "polysync_store_wait_seconds_total %.6f\n",
                  (unsigned long long)atomic_load(&ps__store_begin_count),
                  (double)atomic_load(&ps__store_begin_wait_us) / 1e6);
    if (rc == PS_OK)
        rc = emit(out,
                  "# HELP polysync_chats_merged_total Chats changed by syncs.\n"
                  "# TYPE polysync_chats_merged_total counter\n"
                  "polysync_chats_merged_total %llu\n"
                  "# HELP polysync_messages_merged_total Messages changed (added, edited, "
                  "deleted) by syncs.\n"
                  "# TYPE polysync_messages_merged_total counter\n"
                  "polysync_messages_merged_total %llu\n",
                  (unsigned long long)GET(g_chats_merged),
                  (unsigned long long)GET(g_messages_merged));
    if (rc == PS_OK)
        rc = emit(out,
                  "# HELP polysync_auth_failures_total Requests refused for their credentials.\n"
                  "# TYPE polysync_auth_failures_total counter\n"
                  "polysync_auth_failures_total %llu\n"
                  "# HELP polysync_tombstones_purged_total Tombstones forgot past the "
                  "retention.\n"
                  "# TYPE polysync_tombstones_purged_total counter\n"
                  "polysync_tombstones_purged_total %llu\n",
                  (unsigned long long)GET(g_auth_failures), (unsigned long long)GET(g_purged));
    if (rc == PS_OK)
        rc = emit_gauge(out, "polysync_live_streams", "Open live-channel (SSE) streams.",
                        g->live_streams);
    if (rc == PS_OK)
        rc = emit_gauge(out, "polysync_websockets", "Open WebSocket connections.", g->websockets);
    if (rc == PS_OK)
        rc = emit_gauge(out, "polysync_connections", "Open HTTP connections.", g->connections);
    if (rc == PS_OK)
        rc = emit_gauge(out, "polysync_requests_in_flight", "Requests being served.", g->inflight);
    if (rc == PS_OK)
        rc = emit_gauge(out, "polysync_users", "Users in the store.", g->users);
    if (rc == PS_OK)
        rc = emit_gauge(out, "polysync_chats", "Live (not deleted) chats over every user.",
                        g->live_chats);
    if (rc == PS_OK)
        rc = emit_gauge(out, "polysync_store_size_bytes",
                        "Size of the store on disk (SQLite: file and WAL).", g->store_bytes);
    if (rc == PS_OK)
        rc = emit(out,
                  "# HELP polysync_uptime_seconds Seconds since the server started.\n"
                  "# TYPE polysync_uptime_seconds gauge\npolysync_uptime_seconds %.3f\n",
                  g->uptime_s);
    return rc;
}
