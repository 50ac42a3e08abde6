/*
 * libmicrohttpd glue; see server.h. The access handler is called several
 * times per request: first with the headers (where limits, content type and
 * routing are decided, so a request that is refused is refused before its
 * body is read), then per chunk of body, then once more to answer.
 */
#include "server/server.h"
#include "core/json_parse.h"
#include "core/read_file.h"
#include "core/timestamp.h"
#include "server/access.h"
#include "server/auth.h"
#include "server/conn_guard.h"
#include "server/events.h"
#include "server/framing.h"
#include "server/gzip.h"
#include "server/health.h"
#include "server/http_response.h"
#include "server/lane.h"
#include "server/legacy_body.h"
#include "server/limits.h"
#include "server/linger.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/raw_reply.h"
#include "server/router.h"
#include "server/static_files.h"
#include "server/tls.h"
#include "server/tls_pair.h"
#include "server/ws.h"
#include "server/ws_upgrade.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ERROR_BODY_LIMIT (64 * 1024)
#define IMPLICIT_USER "local"
#define EVENT_STREAMS_MAX 1000
#define EVENT_KEEPALIVE_S 15
#define PS_REQUEST_ID_MAX 64
#define PS_CLIENT_ADDR_MAX INET6_ADDRSTRLEN
#define METRICS_BODY_LIMIT (1024 * 1024)
#define HEALTH_PROBE_INTERVAL_MS 1000
#define WS_CLOSE_WAIT_MS 2000 /* at shutdown, for live sockets' closes to go out */

struct ps_server {
    struct MHD_Daemon *daemon;
    ps_config cfg;
    ps_handler_env env;
    ps_events *events;
    ps_ws *ws;     /* the live socket on / */
    ps_live live;  /* where handlers announce changes */
    ps_auth *auth; /* NULL: one implicit user */
    ps_access *access; /* revoked tokens, disabled users; with auth */
    ps_limiter *limiter;
    ps_lane *lane;            /* large bodies: admission and worker threads */
    ps_conn_guard *guard;     /* per-address cap, head deadline */
    ps_health *health;        /* the store probe behind /health */
    char *tls_cert, *tls_key; /* PEM, kept for libmicrohttpd */
    atomic_uint connections;  /* open, for --max-connections */
    atomic_uint inflight;
    atomic_uint turned_away_done; /* lane waiters answered 503 at shutdown */
    atomic_bool draining;
    _Atomic int64_t next_purge_ms;
    unsigned port;
    struct MHD_Daemon *metrics_daemon; /* --metrics-bind, or NULL */
    unsigned metrics_port;
    atomic_uint_fast64_t next_request_id;
    char *web_root; /* real path served under /web/, NULL if none */
    char *spool_dir; /* where large legacy bodies' chats wait (legacy_body.h) */
};

typedef struct request {
    ps_server *srv;
    const ps_route *route;
    ps_dynbuf body;        /* decompressed when the body came gzipped */
    ps_legacy_body *legacy; /* instead, for PS_BODY_RAW routes: taken chat by chat */
    long long body_length; /* Content-Length, or -1 */
    bool gzip;             /* Content-Encoding: gzip */
    ps_lane_ticket lane;   /* a large request's place in the lane */
    uint64_t body_bytes;   /* of the body so far, as sent (--min-upload-rate) */
    bool upload_watched;   /* its connection's idle timeout is the upload grace */
    bool lane_wait_over;   /* admitted at once, or past the call after its wait */
    ps_reply reply;        /* prepared by a lane worker... */
    bool reply_ready;      /* ...and sent when the connection resumes */
    ps_inflater inflater;
    ps_code body_error; /* the first problem while receiving the body */
    bool accepts_gzip;  /* Accept-Encoding allows gzip answers */
    bool admitted;      /* counted by the limiter: release when done */
    int64_t started_ms;
    const char *allow_origin; /* CORS answer for this request's Origin */
    char user[PS_ID_MAX_BYTES + 1];
    /* for the access log and metrics (log.h, metrics.h) */
    char request_id[PS_REQUEST_ID_MAX + 1];
    char method[16];
    const char *route_path; /* the matched route's, static */
    char device[PS_ID_MAX_BYTES + 1];
    unsigned status; /* of the answer queued; 0 = none yet */
    uint64_t bytes_in, bytes_out;
    int64_t t0_us; /* monotonic */
    char user_agent[128]; /* for the device registry; cut to fit */
    ps_ws_pending ws; /* a live socket being opened */
    bool not_inflight; /* a live socket: ps_ws_close_all ends it, not the drain */
    int linger_fd;     /* answered before its body: a dup() of the socket, or -1 */
} request;

/* ---- observing requests: ids, the access log, metrics (log.h, metrics.h) ---- */

static int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A client's X-Request-Id is kept (so a proxy's id follows the request)
 * when it is 1 to 64 of [A-Za-z0-9._:-]; anything else could forge or break
 * log lines, so the server makes its own instead. */
static bool request_id_acceptable(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok || n >= PS_REQUEST_ID_MAX)
            return false;
    }
    return n > 0;
}

static void client_address(struct MHD_Connection *conn, char *out, size_t size)
{
    snprintf(out, size, "-");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)size);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)size);
}

static void request_start(ps_server *srv, struct MHD_Connection *conn, const char *method,
                          request *req)
{
    req->t0_us = monotonic_us();
    snprintf(req->method, sizeof req->method, "%s", method);
    const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given && request_id_acceptable(given))
        snprintf(req->request_id, sizeof req->request_id, "%s", given);
    else
        snprintf(req->request_id, sizeof req->request_id, "%016llx",
                 (unsigned long long)atomic_fetch_add_explicit(&srv->next_request_id, 1,
                                                               memory_order_relaxed));
    /* the live channel names its device in the query (v2 syncs in the body) */
    const char *device = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "deviceId");
    if (device)
        snprintf(req->device, sizeof req->device, "%s", device);
}

static void request_done(ps_server *srv, struct MHD_Connection *conn, request *req)
{
    int64_t us = monotonic_us() - req->t0_us;
    ps_metrics_request(req->route_path, req->status, req->bytes_in, req->bytes_out, us);
    if (req->lane.conn && req->lane.admitted_ms)
        ps_metrics_lane_wait((req->lane.admitted_ms - req->started_ms) * 1000);
    if (!ps_log_enabled(PS_LOG_INFO))
        return;
    char client[PS_CLIENT_ADDR_MAX];
    client_address(conn, client, sizeof client);
    ps_access_entry e = {
        .request_id = req->request_id,
        .method = req->method,
        .route = req->route_path,
        .status = req->status,
        .bytes_in = req->bytes_in,
        .bytes_out = req->bytes_out,
        .duration_us = us,
        .user = req->user[0] ? req->user : NULL,
        .device = req->device[0] ? req->device : NULL,
        .client = client,
    };
    ps_log_access(&e);
}

/* /metrics on the main port only in the open local mode; with auth it is
 * served on --metrics-bind alone (docs/operations.md: who may read it). */
static bool serves_metrics(const ps_server *srv)
{
    return !srv->auth && !srv->cfg.metrics_bind[0];
}

/* The store's size on disk: a SQLite file and its WAL; -1 for others. */
static int64_t store_size(const char *db_url)
{
    if (strncmp(db_url, "sqlite:", 7) != 0)
        return -1;
    int64_t total = 0;
    char path[sizeof ((ps_config *)0)->db_url + 8];
    const char *suffixes[] = {"", "-wal"};
    for (unsigned i = 0; i < 2; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s%s", db_url + 7, suffixes[i]);
        if (stat(path, &st) == 0)
            total += (int64_t)st.st_size;
    }
    return total;
}

static int count_user(void *ctx, const char *name, int64_t chats)
{
    (void)name;
    (void)chats;
    (*(int64_t *)ctx)++;
    return 0;
}

static void metrics_reply(ps_server *srv, ps_reply *reply)
{
    ps_metrics_gauges g = {
        .live_streams = ps_events_open_count(srv->events),
        .websockets = srv->ws ? ps_ws_count(srv->ws) : 0,
        .connections = atomic_load(&srv->connections),
        .inflight = atomic_load(&srv->inflight),
        .users = -1,
        .live_chats = -1,
        .store_bytes = store_size(srv->cfg.db_url),
        .uptime_s = (double)(ps_time_now_ms() - srv->env.started_ms) / 1000.0,
    };
    ps_store *store = srv->env.store;
    ps_error err;
    ps_error_clear(&err);
    if (ps_store_begin(store, false, &err) == PS_OK) {
        int64_t users = 0;
        ps_store_stats stats;
        if (store->ops->user_list(store, count_user, &users, &err) == PS_OK)
            g.users = users;
        if (store->ops->stats(store, &stats, &err) == PS_OK)
            g.live_chats = stats.live_chats;
        ps_store_rollback(store);
    }
    ps_dynbuf_free(&reply->body);
    ps_dynbuf_init(&reply->body, METRICS_BODY_LIMIT);
    reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (ps_metrics_render(&g, &reply->body) != PS_OK) {
        reply->content_type = NULL;
        ps_reply_error(reply, 500, "internal_error", "cannot render the metrics");
    }
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    ps_server *srv = cls;
    char message[512];
    vsnprintf(message, sizeof message, fmt, ap);
    /* While draining, libmicrohttpd reports the sockets it finds closed
     * under it (the listener swapped out, clients gone): expected, so only
     * at debug level. */
    bool quiet = srv && atomic_load(&srv->draining);
    ps_log_event(quiet ? PS_LOG_DEBUG : PS_LOG_WARN, "http", "%s", message);
}

/* The Access-Control-Allow-Origin for a request from `origin`: "*" in the
 * open local mode (ps_config_cors_any_origin), the origin itself when it is
 * configured, else none. */
static const char *cors_origin(const ps_server *srv, const char *origin)
{
    if (srv->cfg.n_cors_origins == 0)
        return ps_config_cors_any_origin(&srv->cfg) ? "*" : NULL;
    for (unsigned i = 0; i < srv->cfg.n_cors_origins; i++) {
        const char *allowed = srv->cfg.cors_origins[i];
        if (strcmp(allowed, "*") == 0)
            return "*";
        if (origin && strcmp(allowed, origin) == 0)
            return allowed;
    }
    return NULL;
}

/* Authenticates and admits the request (rate and concurrency per user). */
static bool refuse_user(ps_server *srv, struct MHD_Connection *conn, request *req, ps_reply *reply)
{
    if (!srv->auth) {
        snprintf(req->user, sizeof req->user, "%s", IMPLICIT_USER);
    } else {
        ps_error err;
        ps_error_clear(&err);
        const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        ps_auth_claims claims;
        if (ps_auth_check_claims(srv->auth, authz, ps_time_now_ms() / 1000, req->user,
                                 sizeof req->user, &claims, &err) != PS_OK) {
            char client[PS_CLIENT_ADDR_MAX];
            client_address(conn, client, sizeof client);
            ps_log_auth_failure(req->request_id, client, err.message);
            ps_metrics_auth_failure();
            req->user[0] = '\0';
            ps_reply_from_error(reply, &err);
            return true;
        }
        ps_access_verdict verdict = ps_access_check(srv->access, req->user, &claims);
        if (verdict != PS_ACCESS_OK) {
            /* logged like any refused token: fail2ban reads these lines */
            char client[PS_CLIENT_ADDR_MAX];
            client_address(conn, client, sizeof client);
            ps_log_auth_failure(req->request_id, client,
                                verdict == PS_ACCESS_REVOKED ? "token revoked" : "user disabled");
            ps_metrics_auth_failure();
            ps_access_reply(reply, verdict);
            return true;
        }
    }
    unsigned retry = 0;
    bool too_many = false;
    ps_code rc = ps_limiter_acquire(srv->limiter, req->user, ps_time_now_ms(), &retry, &too_many);
    if (rc == PS_OK) {
        req->admitted = true;
        return false;
    }
    reply->retry_after_s = retry ? retry : 1;
    if (rc == PS_ERR_NOMEM)
        ps_reply_error(reply, 503, "overloaded", "the server is out of memory; retry later");
    else if (too_many)
        ps_reply_error(reply, 429, "too_many_requests",
                       "too many requests of this user at once; retry after Retry-After seconds");
    else
        ps_reply_error(reply, 429, "rate_limited",
                       "too many requests; retry after Retry-After seconds");
    return true;
}

/* application/json, any parameters (charset) allowed. */
static bool is_json_type(const char *type)
{
    if (!type)
        return false;
    while (*type == ' ')
        type++;
    size_t n = strlen("application/json");
    return strncasecmp(type, "application/json", n) == 0 &&
           (type[n] == '\0' || type[n] == ';' || type[n] == ' ');
}

static void shutting_down(ps_reply *reply)
{
    reply->retry_after_s = 1;
    reply->close_connection = true;
    ps_reply_error(reply, 503, "shutting_down", "the server is shutting down; retry shortly");
}

/* A body parsed whole in memory (v2, deletions) stays under this even when
 * --max-body is larger: --max-body is for legacy full-state bodies, which
 * are taken chat by chat and never held whole (legacy_body.h). */
#define WHOLE_BODY_MAX ((size_t)64 * 1024 * 1024)

static size_t body_limit(const ps_server *srv, const ps_route *route)
{
    if (route && route->body == PS_BODY_RAW)
        return srv->cfg.max_body_bytes;
    return srv->cfg.max_body_bytes < WHOLE_BODY_MAX ? srv->cfg.max_body_bytes : WHOLE_BODY_MAX;
}

/* Decides, from the headers alone, whether the request is refused. */
static bool refuse_early(ps_server *srv, struct MHD_Connection *conn, const char *method,
                         const char *url, request *req, ps_reply *reply)
{
    if (atomic_load(&srv->draining)) {
        shutting_down(reply);
        return true;
    }
    char allow[PS_ALLOW_MAX];
    switch (ps_route_find(method, url, &req->route, allow)) {
    case PS_ROUTE_NO_PATH:
        ps_reply_error(reply, 404, "not_found", "no such endpoint");
        return true;
    case PS_ROUTE_BAD_METHOD:
        snprintf(reply->allow, sizeof reply->allow, "%s", allow);
        ps_reply_error(reply, 405, "method_not_allowed", "this endpoint does not take that method");
        return true;
    case PS_ROUTE_FOUND:
        break;
    }
    /* /health stays open: load balancers probe it without credentials */
    if (strcmp(url, "/health") != 0 && refuse_user(srv, conn, req, reply))
        return true;
    if (req->route->body == PS_BODY_NONE)
        return false;
    const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (!is_json_type(type)) {
        ps_reply_error(reply, 415, "unsupported_media_type",
                       "send the body as Content-Type: application/json");
        return true;
    }
    const char *enc = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
    if (enc && strcasecmp(enc, "gzip") == 0) {
        if (ps_inflater_init(&req->inflater) != PS_OK) {
            reply->retry_after_s = 1;
            ps_reply_error(reply, 503, "overloaded", "the server is out of memory; retry later");
            return true;
        }
        req->gzip = true;
    } else if (enc && strcasecmp(enc, "identity") != 0) {
        ps_reply_error(reply, 415, "unsupported_encoding",
                       "bodies may be sent as they are or with Content-Encoding: gzip");
        return true;
    }
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    req->body_length = -1;
    if (clen) {
        char *end;
        unsigned long long n = strtoull(clen, &end, 10);
        size_t limit = body_limit(srv, req->route);
        if (*end == '\0' && n <= limit)
            req->body_length = (long long)n;
        if (*end == '\0' && n > limit) {
            reply->close_connection = true;
            char msg[96];
            snprintf(msg, sizeof msg, "the body is larger than the limit of %zu bytes", limit);
            ps_reply_error(reply, 413, "body_too_large", msg);
            return true;
        }
    }
    return false;
}

#define PURGE_INTERVAL_MS (3600 * 1000)
#define TURN_AWAY_WAIT_MS 2000
#define LANE_KEEP_IDLE_MS 10000 /* kept body buffers outlive the last large sync by this */
/* A refused body is read and dropped for a lingering close up to twice the
 * limit (at least 16 MiB), within the request deadline, 2 s without a byte. */
#define LINGER_MAX_BYTES(srv)                                                                      \
    ((srv)->cfg.max_body_bytes > 8u * 1024 * 1024 ? 2 * (srv)->cfg.max_body_bytes                  \
                                                  : (size_t)16 * 1024 * 1024)
#define LINGER_MAX_MS(srv) ((int)(srv)->cfg.request_timeout_s * 1000)
#define LINGER_IDLE_MS 2000

/*
 * Forgets tombstones past the retention, at most once an hour, on the thread
 * of whichever request comes first after the hour: no timer thread to stop.
 */
static void purge_if_due(ps_server *srv)
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

/* Makes room for a body of known length at once: a large one in a buffer
 * the lane kept from an earlier one, if it has one that fits. */
static ps_code size_body(ps_server *srv, request *req)
{
    size_t need = (size_t)req->body_length + 1; /* and the NUL */
    size_t cap = 0;
    char *kept = req->lane.conn ? ps_lane_buffer_take(srv->lane, need, &cap) : NULL;
    if (kept) {
        ps_dynbuf_adopt(&req->body, kept, cap);
        return PS_OK;
    }
    return ps_dynbuf_reserve(&req->body, (size_t)req->body_length);
}

/* Done with the body: a large one's buffer goes back to the lane. */
static void release_body(ps_server *srv, request *req)
{
    if (req->lane.conn && req->body.cap > PS_LARGE_BODY_BYTES) {
        size_t cap = req->body.cap;
        ps_lane_buffer_give(srv->lane, ps_dynbuf_take(&req->body, NULL), cap);
    }
    ps_dynbuf_free(&req->body);
}

/* The legacy body of the request, made on its first byte (NULL when out of
 * memory). */
static ps_legacy_body *legacy_body_of(ps_server *srv, request *req)
{
    if (!req->legacy) {
        ps_legacy_body_config lc = {
            .max_bytes = srv->cfg.max_body_bytes,
            .max_chats = srv->cfg.limits.max_chats,
            .max_depth = PS_JSON_MAX_DEPTH,
            .envelope_max = PS_ENVELOPE_MAX_BYTES,
            .spool_dir = srv->spool_dir,
            .memory_max = PS_SPOOL_MEMORY_BYTES,
        };
        req->legacy = ps_legacy_body_new(&lc);
    }
    return req->legacy;
}

static ps_code feed_legacy(void *cls, const char *p, size_t n)
{
    return ps_legacy_body_feed(cls, p, n);
}

/* A piece of a legacy body, inflated if gzipped: the chats go to the spool
 * as they complete (legacy_body.h); past --max-body the rest is dropped. */
static void receive_legacy_body(ps_server *srv, request *req, const char *data, size_t len)
{
    ps_legacy_body *lb = legacy_body_of(srv, req);
    ps_code rc = !lb         ? PS_ERR_NOMEM
                 : req->gzip ? ps_inflater_feed_to(&req->inflater, data, len, feed_legacy, lb)
                             : ps_legacy_body_feed(lb, data, len);
    if (rc != PS_OK) {
        req->body_error = rc;
        ps_legacy_body_free(req->legacy); /* the answer is an error: nothing to keep */
        req->legacy = NULL;
    }
}

static void run_handler(ps_server *srv, request *req, ps_reply *reply)
{
    purge_if_due(srv);
    if (req->body_error == PS_OK && req->gzip)
        req->body_error = ps_inflater_finish(&req->inflater);
    switch (req->body_error) {
    case PS_OK:
        break;
    case PS_ERR_TOO_LARGE: {
        char msg[96];
        snprintf(msg, sizeof msg, "the body is larger than the limit of %zu bytes",
                 body_limit(srv, req->route));
        ps_reply_error(reply, 413, "body_too_large", msg);
        return;
    }
    case PS_ERR_BAD_GZIP:
        ps_reply_error(reply, 400, "bad_gzip", "the gzip body does not decompress");
        return;
    default:
        reply->retry_after_s = 1;
        ps_reply_error(reply, 503, "overloaded", "the server is out of memory; retry later");
        return;
    }
    json_object *body = NULL;
    if (req->route->body == PS_BODY_JSON) {
        ps_error err;
        ps_error_clear(&err);
        if (ps_json_parse(req->body.data ? req->body.data : "", req->body.len, PS_JSON_MAX_DEPTH,
                          &body, &err) != PS_OK) {
            ps_reply_from_error(reply, &err);
            return;
        }
        release_body(srv, req); /* the parsed tree is all we need now */
    }
    ps_dynbuf_init(&reply->body, srv->cfg.max_response_bytes);
    json_object *device = body ? json_object_object_get(body, "deviceId") : NULL;
    if (device && json_object_is_type(device, json_type_string))
        snprintf(req->device, sizeof req->device, "%s", json_object_get_string(device));
    ps_handler_env env = srv->env;
    env.user = req->user;
    if (req->route->body == PS_BODY_RAW && !legacy_body_of(srv, req)) {
        reply->retry_after_s = 1;
        ps_reply_error(reply, 503, "overloaded", "the server is out of memory; retry later");
        return;
    }
    env.legacy_body = req->legacy;
    env.user_agent = req->user_agent;
    req->route->handler(&env, body, reply);
    json_object_put(body);
}

/* Takes one piece of the body: inflated if gzipped, capped either way.
 * Past the cap the rest is read and dropped, never kept: the answer (413)
 * can only be sent once the client has finished sending. */
static void receive_body(ps_server *srv, request *req, const char *data, size_t len)
{
    if (!req->route || req->route->body == PS_BODY_NONE || req->body_error != PS_OK)
        return;
    if (req->route->body == PS_BODY_RAW) {
        receive_legacy_body(srv, req, data, len);
        return;
    }
    ps_code rc = PS_OK;
    if (req->body.cap == 0 && !req->gzip && req->body_length > 0)
        rc = size_body(srv, req);
    if (rc == PS_OK)
        rc = req->gzip ? ps_inflater_feed(&req->inflater, data, len, &req->body)
                       : ps_dynbuf_add(&req->body, data, len);
    if (rc != PS_OK) {
        req->body_error = rc;
        release_body(srv, req);
    }
}

/* Whether the request's body goes through the lane (lane.h). */
static bool is_large(const request *req)
{
    if (req->body_length < 0)
        return true;
    size_t large = req->gzip ? PS_LARGE_BODY_BYTES / 16 : PS_LARGE_BODY_BYTES;
    return (size_t)req->body_length > large;
}

/*
 * A large body holds a lane slot while it arrives, so from when it takes
 * the slot it must keep coming (lane.h): its connection's idle timeout
 * becomes the grace, so a silent one is closed then, and a trickling one
 * is cut once its average rate falls under --min-upload-rate
 * (watch_upload). Not while it waits: a suspended connection has no timeout.
 */
static void start_upload_watch(ps_server *srv, struct MHD_Connection *conn, request *req)
{
    if (!srv->cfg.min_upload_rate || req->upload_watched)
        return;
    req->upload_watched = true;
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned)(PS_LANE_UPLOAD_GRACE_MS / 1000));
}

/* A WebSocket upgrade on / (ws_upgrade.h): answered 101 or refused there. */
static enum MHD_Result answer_upgrade(ps_server *srv, struct MHD_Connection *conn, request *req)
{
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    ps_ws_gate gate = {
        .auth = srv->auth,
        .access = srv->access,
        .implicit_user = IMPLICIT_USER,
        .draining = atomic_load(&srv->draining),
        /* the same origins as CORS: pages that may not read the API may
         * not read it through the socket either */
        .origin_refused = origin && !cors_origin(srv, origin),
        .hsts = srv->tls_cert != NULL,
    };
    req->route = NULL; /* nothing more to answer */
    enum MHD_Result r = ps_ws_answer(srv->ws, conn, &gate, &req->ws);
    req->route_path = "/";
    if (req->ws.conn) {
        req->status = 101; /* for the access log and metrics */
        /* A socket is not a request in flight: over TLS its connection
         * outlives our close until the client closes too, and the drain
         * at shutdown must not wait for that. */
        req->not_inflight = true;
        atomic_fetch_sub(&srv->inflight, 1);
    }
    return r;
}

/* An answer queued before the body was read: libmicrohttpd will close the
 * connection with the body unread, so a dup() of the socket is kept for a
 * lingering close when the request ends (linger.h). */
static void keep_socket_to_linger(struct MHD_Connection *conn, request *req)
{
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    bool body = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding") ||
                (clen && strtoull(clen, NULL, 10) > 0);
    const union MHD_ConnectionInfo *ci =
        body ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
    if (ci)
        req->linger_fd = dup(ci->connect_fd);
}

/* The first call, with the headers: answers at once what is refused, and
 * queues a large request in the lane. */
static enum MHD_Result begin_request(ps_server *srv, struct MHD_Connection *conn, const char *url,
                                     const char *method, request *req)
{
    req->srv = srv;
    req->started_ms = ps_time_now_ms();
    req->linger_fd = -1;
    request_start(srv, conn, method, req);
    ps_conn_guard_head_seen(srv->guard, conn);
    ps_dynbuf_init(&req->body, body_limit(srv, NULL));
    const char *framing_problem = NULL;
    bool framed = ps_framing_ok(conn, &framing_problem); /* upgrades too */
    if (framed && ps_ws_is_upgrade(conn, method, url))
        return answer_upgrade(srv, conn, req);
    ps_reply reply;
    ps_reply_init(&reply, ERROR_BODY_LIMIT);
    req->accepts_gzip =
        ps_accepts_gzip(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding"));
    req->allow_origin =
        cors_origin(srv, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"));
    const char *agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent");
    snprintf(req->user_agent, sizeof req->user_agent, "%s", agent ? agent : "");
    reply.allow_origin = req->allow_origin;
    reply.hsts = srv->tls_cert != NULL;
    reply.request_id = req->request_id;
    reply.sent_bytes = &req->bytes_out;
    enum MHD_Result r = MHD_YES;
    bool answered = false;
    if (!framed) {
        /* closed after the answer: what follows the head is never read as
         * a request (framing.h) */
        reply.close_connection = true;
        ps_reply_error(&reply, 400, "bad_framing", framing_problem);
        r = ps__send_reply(conn, &reply, false);
        req->route = NULL;
        answered = true;
    } else if (strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0 &&
               serves_metrics(srv)) {
        req->route_path = "/metrics";
        metrics_reply(srv, &reply);
        r = ps__send_reply(conn, &reply, req->accepts_gzip);
        answered = true;
    } else if (strcmp(method, "OPTIONS") == 0) {
        reply.status = 204;
        reply.preflight = true;
        r = ps__send_reply(conn, &reply, false);
        answered = true;
    } else if (ps_static_is_web_path(url)) { /* public files: no token */
        req->route_path = "/web/";
        r = ps_static_answer(srv->web_root, conn, method, url, req->allow_origin);
    } else if (refuse_early(srv, conn, method, url, req, &reply)) {
        r = ps__send_reply(conn, &reply, req->accepts_gzip);
        if (r == MHD_YES)
            keep_socket_to_linger(conn, req);
        answered = true;
    } else if (req->route->body != PS_BODY_NONE && is_large(req)) {
        /* WAITING: suspended until a slot is free; the body is not read */
        req->lane.user = req->user;
        ps_lane_state state = ps_lane_enter(srv->lane, &req->lane, conn);
        req->lane_wait_over = state != PS_LANE_WAITING;
        if (state == PS_LANE_ADMITTED)
            start_upload_watch(srv, conn, req);
        if (state == PS_LANE_TURNED_AWAY) { /* came after the shutdown's turn-away */
            shutting_down(&reply);
            r = ps__send_reply(conn, &reply, req->accepts_gzip);
            answered = true;
        }
    }
    if (answered && r == MHD_YES)
        req->status = reply.status;
    if (req->route)
        req->route_path = req->route->path;
    if (r == MHD_YES && reply.status != 200)
        req->route = NULL; /* answered: the rest of the body is dropped */
    ps_reply_free(&reply);
    return r;
}

/* Runs the handler into req->reply: on a lane worker for a large request
 * (off the connection's thread), inline for the others. */
static void prepare_reply(void *arg)
{
    request *req = arg;
    run_handler(req->srv, req, &req->reply);
    /* the spool's memory and file go before the answer does */
    ps_legacy_body_free(req->legacy);
    req->legacy = NULL;
    req->reply_ready = true; /* seen after MHD_resume_connection */
}

/* The last call, with the whole body: runs the handler (a large request's
 * on a lane worker: the connection is resumed when it is done) and sends
 * the answer. */
static enum MHD_Result answer_request(ps_server *srv, struct MHD_Connection *conn, request *req)
{
    if (!req->reply_ready) {
        ps_reply_init(&req->reply, ERROR_BODY_LIMIT);
        req->reply.allow_origin = req->allow_origin;
        req->reply.hsts = srv->tls_cert != NULL;
        req->reply.request_id = req->request_id;
        req->reply.sent_bytes = &req->bytes_out;
        switch (req->lane.conn ? ps_lane_state_of(srv->lane, &req->lane) : PS_LANE_OUTSIDE) {
        case PS_LANE_ADMITTED:
            if (ps_lane_run(srv->lane, &req->lane, prepare_reply, req))
                return MHD_YES;
            prepare_reply(req); /* the lane has stopped: shutting down */
            break;
        default:
            prepare_reply(req);
        }
    }
    enum MHD_Result r = ps__send_reply(conn, &req->reply, req->accepts_gzip);
    if (r == MHD_YES)
        req->status = req->reply.status;
    ps_reply_free(&req->reply);
    req->reply_ready = false;
    req->route = NULL; /* answered */
    return r;
}

/* Counts a piece of a large body; true when the body has become too slow
 * (start_upload_watch). */
static bool watch_upload(ps_server *srv, struct MHD_Connection *conn, request *req, size_t piece)
{
    if (!srv->cfg.min_upload_rate)
        return false;
    start_upload_watch(srv, conn, req); /* already, unless the lane had stopped */
    req->body_bytes += piece;
    return ps_lane_upload_too_slow(req->body_bytes, ps_time_now_ms() - req->lane.admitted_ms,
                                   srv->cfg.min_upload_rate);
}

/* 408 and close, so the slot passes on. libmicrohttpd cannot answer in the
 * middle of a body, so the answer is written to the socket directly
 * (raw_reply.h); over TLS the connection is just closed. */
static enum MHD_Result cut_slow_upload(ps_server *srv, struct MHD_Connection *conn, request *req)
{
    fprintf(stderr, "polysyncd: a large body arrived slower than --min-upload-rate; cut\n");
    char msg[128];
    snprintf(msg, sizeof msg, "the body arrived slower than %zu bytes a second",
             srv->cfg.min_upload_rate);
    ps_raw_error(conn, srv->tls_cert != NULL, 408, "Request Timeout", "upload_too_slow", msg,
                 req->allow_origin);
    req->route = NULL;
    return MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    ps_server *srv = cls;
    request *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        atomic_fetch_add(&srv->inflight, 1);
        return begin_request(srv, conn, url, method, req);
    }
    if (req->lane.conn && !req->lane_wait_over) {
        /* The call after a wait for the lane: libmicrohttpd repeats the
         * headers' call (no body yet) when it resumes the connection. */
        req->lane_wait_over = true;
        if (ps_lane_state_of(srv->lane, &req->lane) == PS_LANE_TURNED_AWAY) {
            ps_reply reply;
            ps_reply_init(&reply, ERROR_BODY_LIMIT);
            reply.allow_origin = req->allow_origin;
            reply.request_id = req->request_id;
            reply.sent_bytes = &req->bytes_out;
            shutting_down(&reply);
            enum MHD_Result r = ps__send_reply(conn, &reply, req->accepts_gzip);
            if (r == MHD_YES)
                req->status = reply.status;
            ps_reply_free(&reply);
            req->route = NULL;
            return r;
        }
        start_upload_watch(srv, conn, req); /* its turn: the slot is taken now */
        if (!*upload_data_size)
            return MHD_YES;
    }
    if (*upload_data_size) {
        req->bytes_in += *upload_data_size;
        int64_t since = req->started_ms;
        if (req->lane.conn) { /* a large request */
            ps_lane_state state = ps_lane_state_of(srv->lane, &req->lane);
            if (state == PS_LANE_TURNED_AWAY)
                return MHD_NO;             /* never started: the client retries elsewhere */
            since = req->lane.admitted_ms; /* its turn came just now */
        }
        /* A client trickling its body (one byte a second keeps the idle
         * timeout from firing) is cut off at the request deadline. */
        if (ps_time_now_ms() - since > (int64_t)srv->cfg.request_timeout_s * 1000) {
            ps_log_event(PS_LOG_WARN, "body_too_slow",
                         "request %s: body too slow, connection closed", req->request_id);
            return MHD_NO;
        }
        if (req->lane.conn && req->route && watch_upload(srv, conn, req, *upload_data_size))
            return cut_slow_upload(srv, conn, req);
        receive_body(srv, req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!req->route) /* answered early; MHD is discarding the body */
        return MHD_YES;
    if (req->upload_watched) /* the body is in: back to the usual idle timeout */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  srv->cfg.connection_timeout_s);
    return answer_request(srv, conn, req);
}

/* Refuses a connection past --max-connections at once (closed), instead of
 * leaving it queued in the kernel as libmicrohttpd's own limit would. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    ps_server *srv = cls;
    return atomic_load(&srv->connections) < srv->cfg.max_connections &&
                   ps_conn_guard_admit(srv->guard, addr, addrlen)
               ? MHD_YES
               : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    ps_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&srv->connections, 1);
        ps_conn_guard_opened(srv->guard, conn, socket_ctx);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        atomic_fetch_sub(&srv->connections, 1);
        ps_conn_guard_closed(srv->guard, socket_ctx);
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ps_server *srv = cls;
    request *req = *con_cls;
    if (!req)
        return;
    request_done(srv, conn, req);
    ps_ws_pending_done(&req->ws);
    release_body(srv, req);
    ps_legacy_body_free(req->legacy);
    if (req->lane.resumed_away)
        atomic_fetch_add(&srv->turned_away_done, 1);
    if (req->gzip)
        ps_inflater_free(&req->inflater);
    if (req->reply_ready) /* prepared, never sent: the client went away */
        ps_reply_free(&req->reply);
    ps_lane_leave(srv->lane, &req->lane);
    if (req->admitted)
        ps_limiter_release(srv->limiter, req->user);
    bool counted = !req->not_inflight;
    if (req->linger_fd >= 0) /* the answer is out: drop the rest of the body */
        ps_linger_close(req->linger_fd, LINGER_MAX_BYTES(srv), LINGER_MAX_MS(srv), LINGER_IDLE_MS);
    free(req);
    *con_cls = NULL;
    if (counted)
        atomic_fetch_sub(&srv->inflight, 1);
}

/* Reads a PEM file whole (NUL-terminated, as libmicrohttpd wants it). */
static ps_code read_pem(const char *path, char **out, ps_error *err)
{
    size_t len = 0;
    ps_code rc = ps_read_file(path, 1024 * 1024, NULL, NULL, out, &len, err);
    if (rc == PS_ERR_IO)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "cannot read %s", path);
    if (rc == PS_OK && len == 0) {
        free(*out);
        *out = NULL;
        rc = PS_ERR_CONFIG;
    }
    if (rc != PS_OK)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "%s is empty or too large", path);
    return PS_OK;
}

/* The one entry point for "user's chats changed on another instance"
 * (the store's listener thread): as for a local change, the user's SSE
 * streams and live sockets. user NULL (notifications may have been missed
 * while the store reconnected): every SSE stream is rung; the live sockets
 * have no frame for "something changed" and get nothing. */
static void remote_change(void *ctx, const char *user, const char *device, int64_t seq_before,
                          int64_t seq_after)
{
    ps_server *srv = ctx;
    if (!user) {
        ps_events_notify_all(srv->events);
        return;
    }
    ps_events_notify(srv->events, user, device);
    ps_ws_chats_changed(srv->ws, srv->env.store, user, device, seq_before, seq_after);
}

static void server_free(ps_server *srv)
{
    if (srv->env.store && srv->env.store->ops->listen)
        srv->env.store->ops->listen(srv->env.store, NULL, NULL, NULL);
    ps_access_free(srv->access); /* its poller cuts streams: stop it first */
    ps_events_free(srv->events);
    ps_ws_free(srv->ws);
    ps_auth_free(srv->auth);
    ps_limiter_free(srv->limiter);
    ps_lane_free(srv->lane);
    if (srv->tls_cert)
        ps_tls_free();
    ps_conn_guard_free(srv->guard);
    ps_health_free(srv->health);
    free(srv->tls_cert);
    free(srv->tls_key);
    free(srv->web_root);
    free(srv->spool_dir);
    free(srv);
}

/* A user's access was revoked or disabled: their live streams and sockets
 * end now (the poller's thread). */
static void cut_user(void *ctx, const char *user)
{
    ps_server *srv = ctx;
    ps_events_close_user(srv->events, user);
    ps_ws_close_user(srv->ws, user);
}

#define ACCESS_POLL_MS 1000 /* how soon a revocation by another process counts */

/* Auth, limits and TLS material, before the daemon starts. */
static ps_code prepare(ps_server *srv, const ps_config *cfg, ps_error *err)
{
    ps_code rc = PS_OK;
    if (ps_config_has_auth(cfg)) {
        ps_auth_config ac = {
            .secret_file = cfg->jwt_secret_file,
            .public_key_file = cfg->jwt_public_key,
            .issuer = cfg->jwt_issuer,
            .audience = cfg->jwt_audience,
            .leeway_s = 60,
            .max_lifetime_s = cfg->max_token_lifetime_s,
        };
        if ((rc = ps_auth_new(&ac, &srv->auth, err)) != PS_OK)
            return rc;
    }
    srv->env.auth = srv->auth != NULL;
    srv->limiter = ps_limiter_new(cfg->rate_limit, cfg->rate_burst, cfg->max_user_requests);
    if (!srv->limiter)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (cfg->tls_cert && ((rc = read_pem(cfg->tls_cert, &srv->tls_cert, err)) != PS_OK ||
                          (rc = read_pem(cfg->tls_key, &srv->tls_key, err)) != PS_OK ||
                          (rc = ps_tls_check_pair(srv->tls_cert, srv->tls_key, cfg->tls_cert,
                                                  cfg->tls_key, err)) != PS_OK ||
                          (rc = ps_tls_load(cfg->tls_cert, cfg->tls_key, err)) != PS_OK))
        return rc;
    srv->lane = ps_lane_new(cfg->max_large_requests, cfg->threads, LANE_KEEP_IDLE_MS);
    if (!srv->lane)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "cannot start the worker threads");
    ps_conn_guard_config gc = {.per_ip_max = cfg->max_connections_per_ip,
                               .exempt_loopback = cfg->exempt_loopback,
                               .head_timeout_s = cfg->header_timeout_s};
    srv->guard = ps_conn_guard_new(&gc);
    if (!srv->guard)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "cannot start the connection guard");
    ps_conn_guard_raise_fd_limit(cfg->max_connections + 64);
    srv->health =
        ps_health_new(srv->env.store, HEALTH_PROBE_INTERVAL_MS, cfg->quick_check_max_bytes);
    if (!srv->health)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    srv->env.health = srv->health;
    srv->events = ps_events_new(EVENT_STREAMS_MAX, EVENT_KEEPALIVE_S);
    if (!srv->events)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "cannot start the live channel");
    srv->env.events = srv->events;
    ps_ws_config wc = {
        .max_sockets = cfg->ws_max_sockets,
        .max_user_sockets = cfg->ws_max_user_sockets,
        .ping_interval_s = cfg->ws_ping_interval_s,
        .queue_bytes = cfg->ws_queue_bytes,
    };
    if (!(srv->ws = ps_ws_new(&wc)))
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "cannot start the live socket");
    if (srv->auth && (rc = ps_access_new(srv->env.store, ACCESS_POLL_MS, cut_user, srv,
                                         &srv->access, err)) != PS_OK)
        return rc;
    srv->live = (ps_live){.events = srv->events, .ws = srv->ws, .store = srv->env.store};
    srv->env.live = &srv->live;
    if (!(srv->spool_dir = ps_legacy_spool_dir(cfg->db_url)))
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    srv->web_root = ps_static_find_root(cfg->web_root, PS_WEB_ROOT_INSTALLED);
    if (cfg->web_root && !srv->web_root)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "--web-root: no such directory");
    if (srv->env.store->ops->listen &&
        (rc = srv->env.store->ops->listen(srv->env.store, remote_change, srv, err)) != PS_OK)
        return rc;
    return PS_OK;
}

/* ---- the --metrics-bind listener: GET /metrics and nothing else ---- */

static enum MHD_Result on_metrics_request(void *cls, struct MHD_Connection *conn, const char *url,
                                          const char *method, const char *version,
                                          const char *upload_data, size_t *upload_data_size,
                                          void **con_cls)
{
    ps_server *srv = cls;
    if (!*con_cls) { /* the headers: answer once any body has gone by */
        *con_cls = srv;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* dropped */
        return MHD_YES;
    }
    ps_reply reply;
    ps_reply_init(&reply, ERROR_BODY_LIMIT);
    if (strcmp(url, "/metrics") == 0 && strcmp(method, "GET") == 0)
        metrics_reply(srv, &reply);
    else
        ps_reply_error(&reply, 404, "not_found", "this listener serves GET /metrics only");
    enum MHD_Result r = ps__send_reply(conn, &reply, false);
    ps_reply_free(&reply);
    return r;
}

/* "ADDR:PORT" or "[IPv6]:PORT" -> host and port strings. */
static bool split_host_port(const char *text, char *host, size_t host_size, char *port,
                            size_t port_size)
{
    const char *colon = strrchr(text, ':');
    if (!colon || !colon[1])
        return false;
    const char *h = text;
    size_t n = (size_t)(colon - text);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= host_size || strlen(colon + 1) >= port_size)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, port_size, "%s", colon + 1);
    return true;
}

static ps_code start_metrics_listener(ps_server *srv, ps_error *err)
{
    char host[80], port[8];
    if (!split_host_port(srv->cfg.metrics_bind, host, sizeof host, port, sizeof port))
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "--metrics-bind wants ADDR:PORT, not %s",
                            srv->cfg.metrics_bind);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || !ai)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "cannot use --metrics-bind %s: %s",
                            srv->cfg.metrics_bind, gai_strerror(gai));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    srv->metrics_daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_metrics_request, srv, MHD_OPTION_EXTERNAL_LOGGER, log_mhd, srv,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
        MHD_OPTION_CONNECTION_LIMIT, 32u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->metrics_daemon)
        return ps_error_set(err, PS_ERR_IO, -1, "", "cannot listen on --metrics-bind %s",
                            srv->cfg.metrics_bind);
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(srv->metrics_daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->metrics_port = info ? info->port : 0;
    return PS_OK;
}

ps_code ps_server_start(const ps_config *cfg, ps_store *store, ps_server **out, ps_error *err)
{
    *out = NULL;
    ps_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    srv->cfg = *cfg;
    srv->env = (ps_handler_env){
        .store = store,
        .limits = &srv->cfg.limits,
        .max_skew_ms = cfg->max_skew_ms,
        .max_response_bytes = cfg->max_response_bytes,
        .started_ms = ps_time_now_ms(),
        .user = IMPLICIT_USER,
        .quota_bytes = (int64_t)cfg->quota_bytes,
        .tombstone_retention_ms = cfg->tombstone_retention_ms,
    };
    atomic_init(&srv->inflight, 0);
    atomic_init(&srv->turned_away_done, 0);
    atomic_init(&srv->connections, 0);
    atomic_init(&srv->draining, false);
    atomic_init(&srv->next_purge_ms, 0); /* the first request purges */
    /* ids unique across restarts: the start time in the high bits */
    atomic_init(&srv->next_request_id, (uint_fast64_t)ps_time_now_ms() << 20);

    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", cfg->port);
    int gai = getaddrinfo(cfg->bind, port, &hints, &ai);
    if (gai != 0 || !ai) {
        free(srv);
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "cannot use address %s: %s", cfg->bind,
                            gai_strerror(gai));
    }
    ps_code rc = prepare(srv, cfg, err);
    if (rc != PS_OK) {
        freeaddrinfo(ai);
        server_free(srv);
        return rc;
    }
    /* suspend/resume: idle live-channel streams are parked, not polled */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (srv->tls_cert)
        flags |= MHD_USE_TLS;
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, on_accept, srv, on_request, srv,
        /* the logger must come first to catch errors about the options */
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd, srv, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, cfg->threads, MHD_OPTION_CONNECTION_TIMEOUT,
        cfg->connection_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        /* above ours: on_accept refuses first, libmicrohttpd never queues */
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections + 16,
        /* asked at each handshake, so SIGHUP can swap them (tls.h) */
        srv->tls_cert ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END, ps_tls_retrieve,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->daemon) {
        server_free(srv);
        return ps_error_set(err, PS_ERR_IO, -1, "",
                            "cannot listen on %s port %u (in use, or not allowed)", cfg->bind,
                            cfg->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : cfg->port;
    if (cfg->metrics_bind[0] && (rc = start_metrics_listener(srv, err)) != PS_OK) {
        MHD_stop_daemon(srv->daemon);
        server_free(srv);
        return rc;
    }
    *out = srv;
    return PS_OK;
}

unsigned ps_server_metrics_port(const ps_server *srv)
{
    return srv->metrics_port;
}

ps_code ps_server_reload_tls(ps_server *srv, ps_error *err)
{
    if (!srv->tls_cert)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "the server does not serve TLS");
    return ps_tls_load(srv->cfg.tls_cert, srv->cfg.tls_key, err);
}

unsigned ps_server_port(const ps_server *srv)
{
    return srv->port;
}

/*
 * Refuses new connections from now on, while the daemon keeps serving the
 * ones it has. Not MHD_quiesce_daemon: on an epoll thread pool it races the
 * pool's threads taking the listener out of their epoll sets and aborts the
 * process at random (an open libmicrohttpd defect, seen here at SIGTERM).
 * Instead a fresh, unbound socket is put in the listener's place with
 * dup2(): the listening socket itself is closed at once (the kernel refuses
 * connections and drops it from every epoll set), and libmicrohttpd keeps a
 * valid descriptor, which it closes when it stops.
 */
static void stop_listening(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_LISTEN_FD);
    if (!info || info->listen_fd == MHD_INVALID_SOCKET)
        return;
    int placeholder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (placeholder < 0)
        return; /* then the listener stays open until the daemon stops */
    dup2(placeholder, info->listen_fd);
    close(placeholder);
}

unsigned ps_server_stop(ps_server *srv, unsigned drain_timeout_s)
{
    atomic_store(&srv->draining, true);
    stop_listening(srv->daemon);
    /* live streams end now; libmicrohttpd must not stop with any parked */
    ps_events_close_all(srv->events);
    /* live sockets get 1001 (going away); the app reconnects in 3 s */
    ps_ws_close_all(srv->ws, WS_CLOSE_WAIT_MS);
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    for (unsigned waited_ms = 0;
         atomic_load(&srv->inflight) > 0 && waited_ms < drain_timeout_s * 1000u; waited_ms += 10)
        nanosleep(&tick, NULL);
    unsigned left = atomic_load(&srv->inflight);
    /* libmicrohttpd must not stop with a connection suspended: requests
     * still waiting for the lane are answered 503, running ones finish.
     * The daemon closes every connection when it stops, so it waits (a
     * little) for those answers to be sent. */
    unsigned turned_away = ps_lane_turn_away_waiting(srv->lane);
    for (unsigned waited_ms = 0;
         atomic_load(&srv->turned_away_done) < turned_away && waited_ms < TURN_AWAY_WAIT_MS;
         waited_ms += 10)
        nanosleep(&tick, NULL);
    ps_lane_stop(srv->lane);
    if (srv->metrics_daemon)
        MHD_stop_daemon(srv->metrics_daemon);
    MHD_stop_daemon(srv->daemon);
    server_free(srv);
    return left;
}
