/*
 * The server's life cycle: building its parts (auth, limits, lane, live
 * channel, health, housekeeping), starting libmicrohttpd on the main port
 * and the --metrics-bind one, the /metrics answer, and the graceful stop.
 * Requests themselves are request.c's, their admission admission.c's, the
 * background work (tombstone purge) housekeeping.c's.
 */
#include "server/server_internal.h"
#include "core/read_file.h"
#include "core/timestamp.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/port_claim.h"
#include "server/static_files.h"
#include "server/tls.h"
#include "server/tls_pair.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The store's size on disk: a SQLite file and its WAL; -1 for others. */
static int64_t store_size(const char *db_url)
{
    if (strncmp(db_url, "sqlite:", 7) != 0)
        return -1;
    int64_t total = 0;
    char path[sizeof((ps_config *)0)->db_url + 8];
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

void ps__metrics_reply(ps_server *srv, ps_reply *reply)
{
    ps_metrics_gauges g = {
        .live_streams = ps_events_open_count(srv->events),
        .websockets = srv->ws ? ps_ws_count(srv->ws) : 0,
        .connections = atomic_load(&srv->connections),
        .inflight = atomic_load(&srv->inflight),
        .users = -1,
        .live_chats = -1,
        .store_bytes = store_size(srv->cfg.db_url),
        .uptime_s = (double)(ps__time_now_ms() - srv->env.started_ms) / 1000.0,
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
    ps__dynbuf_free(&reply->body);
    ps__dynbuf_init(&reply->body, METRICS_BODY_LIMIT);
    reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (ps_metrics_render(&g, &reply->body) != PS_OK) {
        reply->content_type = NULL;
        ps_reply_from_code(reply, PS_ERR_INTERNAL, "cannot render the metrics");
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

/* Reads a PEM file whole (NUL-terminated, as libmicrohttpd wants it). */
static ps_code read_pem(const char *path, char **out, ps_error *err)
{
    size_t len = 0;
    ps_code rc = ps__read_file(path, 1024 * 1024, NULL, NULL, out, &len, err);
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
    ps__housekeeping_stop(srv->housekeeping); /* it uses the store: first */
    if (srv->env.store && srv->env.store->ops->listen) {
        ps_code stopped = srv->env.store->ops->listen(srv->env.store, NULL, NULL, NULL);
        (void)stopped; /* stopping the calls has nothing to report */
    }
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
    free(srv->daemons);
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
    return ps__housekeeping_start(srv->env.store, cfg->tombstone_retention_ms,
                                  cfg->purge_interval_s, &srv->housekeeping, err);
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
        ps__metrics_reply(srv, &reply);
    else
        ps_reply_from_code(&reply, PS_ERR_NOT_FOUND, "this listener serves GET /metrics only");
    enum MHD_Result r = ps__send_reply(conn, &reply, PS_CODING_IDENTITY);
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

/* ---- the main port's listeners ---- */

/*
 * One libmicrohttpd daemon per --threads, each with its own listening
 * socket on the port (SO_REUSEPORT), not libmicrohttpd's thread pool.
 * The pool shares one listening socket among its threads, and the thread
 * that wakes first accepts up to 10 connections at once: a burst of
 * connections (a benchmark's 16, a fleet reconnecting after a restart)
 * often all went to one thread and stayed there while the other cores
 * idled (docs/performance.md, "a burst of connections on one thread").
 * With a socket per thread the kernel spreads connections over them by a
 * hash of their addresses. The port is claimed before the sockets join it
 * (port_claim.h), so a second polysyncd on it still fails with "in use".
 */
static struct MHD_Daemon *start_listener(ps_server *srv, const ps_config *cfg,
                                         const struct sockaddr *addr, bool shared)
{
    /* suspend/resume: idle live-channel streams are parked, not polled */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
    if (addr->sa_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (srv->tls_cert)
        flags |= MHD_USE_TLS;
    return MHD_start_daemon(
        flags, (uint16_t)cfg->port, ps__on_accept, srv, ps__on_request, srv,
        /* the logger must come first to catch errors about the options */
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd, srv, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
        ps__on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, ps__on_connection, srv,
        /* above ours: on_accept refuses first, libmicrohttpd never queues */
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections + 16,
        /* SO_REUSEPORT when shared; the option given as false would also
         * drop libmicrohttpd's default SO_REUSEADDR, so it is then not
         * given (the timeout again in its place) */
        shared ? MHD_OPTION_LISTENING_ADDRESS_REUSE : MHD_OPTION_CONNECTION_TIMEOUT,
        shared ? 1u : cfg->connection_timeout_s,
        /* asked at each handshake, so SIGHUP can swap them (tls.h) */
        srv->tls_cert ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END, ps_tls_retrieve,
        MHD_OPTION_END);
}

static void stop_listeners(ps_server *srv)
{
    for (unsigned i = 0; i < srv->ndaemons; i++)
        MHD_stop_daemon(srv->daemons[i]);
    srv->ndaemons = 0;
    ps_port_release(srv->port_claim);
    srv->port_claim = -1;
}

static ps_code start_listeners(ps_server *srv, const ps_config *cfg, const struct addrinfo *ai,
                               ps_error *err)
{
    bool shared = cfg->threads > 1;
    srv->daemons = calloc(cfg->threads, sizeof *srv->daemons);
    if (!srv->daemons)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    /* a port of 0 is the kernel's pick, claimed once known: a port picked
     * for a SO_REUSEPORT socket is one no other socket listens on */
    if (shared && cfg->port != 0 && (srv->port_claim = ps_port_claim(cfg->port)) < 0)
        goto in_use;
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    if (!(srv->daemons[0] = start_listener(srv, cfg, (struct sockaddr *)&addr, shared)))
        goto in_use;
    srv->ndaemons = 1;
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(srv->daemons[0], MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : cfg->port;
    if (shared && cfg->port == 0 && (srv->port_claim = ps_port_claim(srv->port)) < 0)
        goto in_use;
    /* the others on the same port (the first's, when the kernel chose) */
    if (addr.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)srv->port);
    else
        ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)srv->port);
    for (; srv->ndaemons < cfg->threads; srv->ndaemons++)
        if (!(srv->daemons[srv->ndaemons] =
                  start_listener(srv, cfg, (struct sockaddr *)&addr, shared)))
            goto in_use;
    return PS_OK;
in_use:
    stop_listeners(srv);
    /* the port the kernel chose, when it did */
    return ps_error_set(err, PS_ERR_IO, -1, "",
                        "cannot listen on %s port %u (in use, or not allowed)", cfg->bind,
                        srv->port ? srv->port : cfg->port);
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
        .started_ms = ps__time_now_ms(),
        .user = IMPLICIT_USER,
        .quota_bytes = (int64_t)cfg->quota_bytes,
        .tombstone_retention_ms = cfg->tombstone_retention_ms,
    };
    atomic_init(&srv->inflight, 0);
    atomic_init(&srv->turned_away_done, 0);
    atomic_init(&srv->connections, 0);
    atomic_init(&srv->draining, false);
    srv->port_claim = -1;
    /* ids unique across restarts: the start time in the high bits */
    atomic_init(&srv->next_request_id, (uint_fast64_t)ps__time_now_ms() << 20);

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
    rc = start_listeners(srv, cfg, ai, err);
    freeaddrinfo(ai);
    if (rc != PS_OK) {
        server_free(srv);
        return rc;
    }
    if (cfg->metrics_bind[0] && (rc = start_metrics_listener(srv, err)) != PS_OK) {
        stop_listeners(srv);
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
    for (unsigned i = 0; i < srv->ndaemons; i++)
        stop_listening(srv->daemons[i]);
    /* the port is free for a successor from here, as its sockets are */
    ps_port_release(srv->port_claim);
    srv->port_claim = -1;
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
    stop_listeners(srv);
    server_free(srv);
    return left;
}
