/*
 * The request life cycle, as libmicrohttpd drives it: the access handler is
 * called several times per request: first with the headers (where limits,
 * content type and routing are decided, admission.c, so a request that is
 * refused is refused before its body is read), then per chunk of body, then
 * once more to answer; a large body waits for and runs in the lane (lane.h).
 * Completion logs and counts the request (log.h, metrics.h) and frees it.
 */
#include "server/server_internal.h"
#include "core/json_parse.h"
#include "core/timestamp.h"
#include "server/framing.h"
#include "server/linger.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/plain_text.h"
#include "server/raw_reply.h"
#include "server/static_files.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

static void request_start(ps_server *srv, struct MHD_Connection *conn, const char *method,
                          request *req)
{
    req->t0_us = monotonic_us();
    ps__copy_text(req->method, sizeof req->method, method);
    const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given && request_id_acceptable(given))
        ps__copy_text(req->request_id, sizeof req->request_id, given);
    else
        ps__hex16_text(atomic_fetch_add_explicit(&srv->next_request_id, 1, memory_order_relaxed),
                       req->request_id);
    /* the live channel names its device in the query (v2 syncs in the body) */
    const char *device = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "deviceId");
    if (device)
        ps__copy_text(req->device, sizeof req->device, device);
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
    ps__client_address(conn, client, sizeof client);
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

/*
 * Request records: one freed record is kept per thread for that thread's
 * next request. A record (~1.3 KB, ids and the user agent inline) is too
 * big for malloc's per-thread cache, and a fresh one went through malloc's
 * consolidation of small freed chunks every time: ~5 % of a no-op sync's
 * instructions (callgrind). The key frees a thread's record when it ends.
 */
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static bool spare_key_ok;

static void spare_key_make(void)
{
    spare_key_ok = pthread_key_create(&spare_key, free) == 0;
}

static request *request_new(void)
{
    pthread_once(&spare_once, spare_key_make);
    request *req = spare_key_ok ? pthread_getspecific(spare_key) : NULL;
    if (!req)
        return calloc(1, sizeof *req);
    pthread_setspecific(spare_key, NULL);
    memset(req, 0, sizeof *req);
    return req;
}

static void request_free(request *req)
{
    if (spare_key_ok && !pthread_getspecific(spare_key) && pthread_setspecific(spare_key, req) == 0)
        return;
    free(req);
}

/* Makes room for a body of known length at once: a large one in a buffer
 * the lane kept from an earlier one, if it has one that fits. */
static ps_code size_body(ps_server *srv, request *req)
{
    size_t need = (size_t)req->body_length + 1; /* and the NUL */
    size_t cap = 0;
    char *kept = req->lane.conn ? ps_lane_buffer_take(srv->lane, need, &cap) : NULL;
    if (kept) {
        ps__dynbuf_adopt(&req->body, kept, cap);
        return PS_OK;
    }
    return ps__dynbuf_reserve(&req->body, (size_t)req->body_length);
}

/* Done with the body: a large one's buffer goes back to the lane. */
static void release_body(ps_server *srv, request *req)
{
    if (req->lane.conn && req->body.cap > PS_LARGE_BODY_BYTES) {
        size_t cap = req->body.cap;
        ps_lane_buffer_give(srv->lane, ps__dynbuf_take(&req->body, NULL), cap);
    }
    ps__dynbuf_free(&req->body);
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
            .chat_max = PS_CHAT_MAX_BYTES,
            .spool_dir = srv->spool_dir,
            .memory_max = PS_SPOOL_MEMORY_BYTES,
            /* gzipped, the inflated body is longer: unknown */
            .expected_bytes = req->gzip || req->body_length < 0 ? 0 : (size_t)req->body_length,
        };
        req->legacy = ps_legacy_body_new(&lc);
        /* a large body's chats land in the buffer an earlier one filled:
         * no page faults (body_spool.h) */
        size_t cap;
        char *kept = req->legacy && req->lane.conn
                         ? ps_lane_buffer_take(srv->lane, PS_SPOOL_MEMORY_BYTES, &cap)
                         : NULL;
        if (kept)
            ps_legacy_body_adopt_buffer(req->legacy, kept, cap);
    }
    return req->legacy;
}

/* Done with the legacy body: a large one's spool buffer goes back to the
 * lane for the next (kept at most one per slot, lane.h). */
static void free_legacy_body(ps_server *srv, request *req)
{
    if (req->legacy && req->lane.conn) {
        size_t cap;
        char *buf = ps_legacy_body_take_buffer(req->legacy, &cap);
        if (buf && cap >= PS_SPOOL_MEMORY_BYTES)
            ps_lane_buffer_give(srv->lane, buf, cap);
        else
            free(buf);
    }
    ps_legacy_body_free(req->legacy);
    req->legacy = NULL;
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
        free_legacy_body(srv, req); /* the answer is an error: nothing to keep */
    }
}

static void run_handler(ps_server *srv, request *req, ps_reply *reply)
{
    if (req->body_error == PS_OK && req->gzip)
        req->body_error = ps_inflater_finish(&req->inflater);
    switch (req->body_error) {
    case PS_OK:
        break;
    case PS_ERR_TOO_LARGE: {
        char msg[96];
        snprintf(msg, sizeof msg, "the body is larger than the limit of %zu bytes",
                 ps__body_limit(srv, req->route));
        ps_reply_from_code(reply, PS_ERR_BODY_TOO_LARGE, msg);
        return;
    }
    case PS_ERR_BAD_GZIP:
        ps_reply_from_code(reply, PS_ERR_BAD_GZIP, "the gzip body does not decompress");
        return;
    default:
        ps_reply_from_code(reply, PS_ERR_NOMEM, "receiving a request body");
        return;
    }
    json_object *body = NULL;
    if (req->route->body == PS_BODY_JSON) {
        ps_error err;
        ps_error_clear(&err);
        if (ps__json_parse(req->body.data ? req->body.data : "", req->body.len, PS_JSON_MAX_DEPTH,
                           &body, &err) != PS_OK) {
            ps_reply_from_error(reply, &err);
            return;
        }
        release_body(srv, req); /* the parsed tree is all we need now */
    }
    ps__dynbuf_init(&reply->body, srv->cfg.max_response_bytes);
    json_object *device = body ? json_object_object_get(body, "deviceId") : NULL;
    if (device && json_object_is_type(device, json_type_string))
        ps__copy_text(req->device, sizeof req->device, json_object_get_string(device));
    ps_handler_env env = srv->env;
    env.user = req->user;
    if (req->route->body == PS_BODY_RAW && !legacy_body_of(srv, req)) {
        ps_reply_from_code(reply, PS_ERR_NOMEM, "receiving a request body");
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
                       : ps__dynbuf_add(&req->body, data, len);
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
        .origin_refused = origin && !ps__cors_origin(srv, origin),
        .hsts = srv->tls_cert != NULL,
    };
    req->route = NULL; /* nothing more to answer */
    enum MHD_Result r = ps_ws_answer(srv->ws, conn, &gate, &req->ws);
    req->route_path = "/";
    req->status = req->ws.status; /* for the access log and metrics */
    if (req->ws.conn) {
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
    req->started_ms = ps__time_now_ms();
    req->linger_fd = -1;
    request_start(srv, conn, method, req);
    ps_conn_guard_head_seen(srv->guard, conn);
    ps__dynbuf_init(&req->body, ps__body_limit(srv, NULL));
    const char *framing_problem = NULL;
    bool framed = ps_framing_ok(conn, &framing_problem); /* upgrades too */
    if (framed && ps_ws_is_upgrade(conn, method, url))
        return answer_upgrade(srv, conn, req);
    ps_reply reply;
    ps_reply_init(&reply, ERROR_BODY_LIMIT);
    req->answer_coding =
        ps_coding_choose(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding"));
    req->allow_origin =
        ps__cors_origin(srv, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"));
    const char *agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent");
    ps__copy_text(req->user_agent, sizeof req->user_agent, agent ? agent : "");
    reply.allow_origin = req->allow_origin;
    reply.hsts = srv->tls_cert != NULL;
    reply.request_id = req->request_id;
    reply.sent_bytes = &req->bytes_out;
    enum MHD_Result r = MHD_YES;
    bool answered = false;
    if (!framed) {
        /* closed after the answer: what follows the head is never read as
         * a request (framing.h) */
        ps_reply_from_code(&reply, PS_ERR_BAD_FRAMING, framing_problem);
        r = ps__send_reply(conn, &reply, PS_CODING_IDENTITY);
        req->route = NULL;
        answered = true;
    } else if (strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0 &&
               ps__serves_metrics(srv)) {
        req->route_path = "/metrics";
        ps__metrics_reply(srv, &reply);
        r = ps__send_reply(conn, &reply, req->answer_coding);
        answered = true;
    } else if (strcmp(method, "OPTIONS") == 0) {
        reply.status = 204;
        reply.preflight = true;
        r = ps__send_reply(conn, &reply, PS_CODING_IDENTITY);
        answered = true;
    } else if (ps_static_is_web_path(url)) { /* public files: no token */
        req->route_path = "/web/";
        r = ps_static_answer(srv->web_root, conn, method, url, req->allow_origin, &req->status);
    } else if (ps__refuse_early(srv, conn, method, url, req, &reply)) {
        r = ps__send_reply(conn, &reply, req->answer_coding);
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
            ps__shutting_down(&reply);
            r = ps__send_reply(conn, &reply, req->answer_coding);
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
    free_legacy_body(req->srv, req);
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
    enum MHD_Result r = ps__send_reply(conn, &req->reply, req->answer_coding);
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
    return ps_lane_upload_too_slow(req->body_bytes, ps__time_now_ms() - req->lane.admitted_ms,
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
    ps_raw_error(conn, srv->tls_cert != NULL, PS_ERR_UPLOAD_TOO_SLOW, msg, req->allow_origin);
    req->route = NULL;
    return MHD_NO;
}

enum MHD_Result ps__on_request(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    ps_server *srv = cls;
    request *req = *con_cls;
    if (!req) {
        req = request_new();
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
            ps__shutting_down(&reply);
            enum MHD_Result r = ps__send_reply(conn, &reply, req->answer_coding);
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
        if (ps__time_now_ms() - since > (int64_t)srv->cfg.request_timeout_s * 1000) {
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

void ps__on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    ps_server *srv = cls;
    request *req = *con_cls;
    if (!req)
        return;
    request_done(srv, conn, req);
    ps_ws_pending_done(&req->ws);
    release_body(srv, req);
    free_legacy_body(srv, req);
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
    request_free(req);
    *con_cls = NULL;
    if (counted)
        atomic_fetch_sub(&srv->inflight, 1);
}
