/*
 * Admission: what is let in before any body is read — connections past
 * --max-connections or the per-address cap, then per request the route,
 * the token and the user's access, the rate and concurrency limits, CORS
 * and the body's content type, encoding and declared length. A request
 * refused here is answered from its headers alone (request.c sends it).
 */
#include "server/server_internal.h"
#include "core/timestamp.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/plain_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Refuses a connection past --max-connections at once (closed), instead of
 * leaving it queued in the kernel as libmicrohttpd's own limit would. */
enum MHD_Result ps__on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    ps_server *srv = cls;
    return atomic_load(&srv->connections) < srv->cfg.max_connections &&
                   ps_conn_guard_admit(srv->guard, addr, addrlen)
               ? MHD_YES
               : MHD_NO;
}

void ps__on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
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

void ps__client_address(struct MHD_Connection *conn, char *out, size_t size)
{
    snprintf(out, size, "-");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET && size >= INET_ADDRSTRLEN) /* the access log's: no sprintf */
        ps__ipv4_text(&((const struct sockaddr_in *)(const void *)sa)->sin_addr, out);
    else if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)size);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)size);
}

/* /metrics on the main port only in the open local mode; with auth it is
 * served on --metrics-bind alone (docs/operations.md: who may read it). */
bool ps__serves_metrics(const ps_server *srv)
{
    return !srv->auth && !srv->cfg.metrics_bind[0];
}

/* The Access-Control-Allow-Origin for a request from `origin`: "*" in the
 * open local mode (ps_config_cors_any_origin), the origin itself when it is
 * configured, else none. */
const char *ps__cors_origin(const ps_server *srv, const char *origin)
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
        if (ps_auth_check_claims(srv->auth, authz, ps__time_now_ms() / 1000, req->user,
                                 sizeof req->user, &claims, &err) != PS_OK) {
            char client[PS_CLIENT_ADDR_MAX];
            ps__client_address(conn, client, sizeof client);
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
            ps__client_address(conn, client, sizeof client);
            ps_log_auth_failure(req->request_id, client,
                                verdict == PS_ACCESS_REVOKED ? "token revoked" : "user disabled");
            ps_metrics_auth_failure();
            ps_access_reply(reply, verdict);
            return true;
        }
    }
    unsigned retry = 0;
    bool too_many = false;
    ps_code rc = ps_limiter_acquire(srv->limiter, req->user, ps__time_now_ms(), &retry, &too_many);
    if (rc == PS_OK) {
        req->admitted = true;
        return false;
    }
    reply->retry_after_s = retry ? retry : 1;
    if (rc == PS_ERR_NOMEM)
        ps_reply_from_code(reply, PS_ERR_NOMEM, "admitting a request");
    else if (too_many)
        ps_reply_from_code(
            reply, PS_ERR_TOO_MANY_REQUESTS,
            "too many requests of this user at once; retry after Retry-After seconds");
    else
        ps_reply_from_code(reply, PS_ERR_RATE_LIMITED,
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

void ps__shutting_down(ps_reply *reply)
{
    reply->retry_after_s = 1;
    reply->close_connection = true;
    ps_reply_from_code(reply, PS_ERR_SHUTTING_DOWN, "the server is shutting down; retry shortly");
}

/* A body parsed whole in memory (v2, deletions) stays under this even when
 * --max-body is larger: --max-body is for legacy full-state bodies, which
 * are taken chat by chat and never held whole (legacy_body.h). */
#define WHOLE_BODY_MAX ((size_t)64 * 1024 * 1024)

size_t ps__body_limit(const ps_server *srv, const ps_route *route)
{
    if (route && route->body == PS_BODY_RAW)
        return srv->cfg.max_body_bytes;
    return srv->cfg.max_body_bytes < WHOLE_BODY_MAX ? srv->cfg.max_body_bytes : WHOLE_BODY_MAX;
}
/* Decides, from the headers alone, whether the request is refused. */
bool ps__refuse_early(ps_server *srv, struct MHD_Connection *conn, const char *method,
                      const char *url, request *req, ps_reply *reply)
{
    if (atomic_load(&srv->draining)) {
        ps__shutting_down(reply);
        return true;
    }
    char allow[PS_ALLOW_MAX];
    switch (ps_route_find(method, url, &req->route, allow)) {
    case PS_ROUTE_NO_PATH:
        ps_reply_from_code(reply, PS_ERR_NOT_FOUND, "no such endpoint");
        return true;
    case PS_ROUTE_BAD_METHOD:
        snprintf(reply->allow, sizeof reply->allow, "%s", allow);
        ps_reply_from_code(reply, PS_ERR_METHOD_NOT_ALLOWED,
                           "this endpoint does not take that method");
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
        ps_reply_from_code(reply, PS_ERR_MEDIA_TYPE,
                           "send the body as Content-Type: application/json");
        return true;
    }
    const char *enc = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
    if (enc && strcasecmp(enc, "gzip") == 0) {
        if (ps_inflater_init(&req->inflater) != PS_OK) {
            ps_reply_from_code(reply, PS_ERR_NOMEM, "starting a gzip inflater");
            return true;
        }
        req->gzip = true;
    } else if (enc && strcasecmp(enc, "identity") != 0) {
        ps_reply_from_code(reply, PS_ERR_ENCODING,
                           "bodies may be sent as they are or with Content-Encoding: gzip");
        return true;
    }
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    req->body_length = -1;
    if (clen) {
        char *end;
        unsigned long long n = strtoull(clen, &end, 10);
        size_t limit = ps__body_limit(srv, req->route);
        if (*end == '\0' && n <= limit)
            req->body_length = (long long)n;
        if (*end == '\0' && n > limit) {
            reply->close_connection = true;
            char msg[96];
            snprintf(msg, sizeof msg, "the body is larger than the limit of %zu bytes", limit);
            ps_reply_from_code(reply, PS_ERR_BODY_TOO_LARGE, msg);
            return true;
        }
    }
    return false;
}
