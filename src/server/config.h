/*
 * polysyncd's settings: defaults, command-line flags and environment, in one
 * struct read by the rest of the server. docs/operations.md lists them all.
 */
#ifndef PS_CONFIG_H
#define PS_CONFIG_H

#include "core/validate.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define PS_MAX_CORS_ORIGINS 16

typedef struct ps_config {
    char bind[64];
    unsigned port; /* 0 = any free port (printed at start) */
    char db_url[1024];
    size_t max_body_bytes; /* request body, after decompression */
    size_t max_response_bytes;
    int64_t max_skew_ms;            /* future timestamps are clamped to now + this */
    int64_t tombstone_retention_ms; /* deleted chats are forgotten after this */
    unsigned purge_interval_s;      /* how often the tombstone purge runs */
    unsigned threads;
    unsigned connection_timeout_s;
    unsigned drain_timeout_s;
    bool insecure_no_auth;
    ps_limits limits;

    /* auth (docs/security.md): strings point into argv */
    const char *jwt_secret_file;
    const char *jwt_public_key;
    const char *jwt_issuer;
    const char *jwt_audience;
    const char *tls_cert;
    const char *tls_key;
    const char *cors_origins[PS_MAX_CORS_ORIGINS];
    unsigned n_cors_origins;
    const char *web_root; /* --web-root; NULL = the built or installed copy */

    /* abuse limits */
    double rate_limit; /* requests per second per user */
    double rate_burst;
    unsigned max_user_requests;  /* concurrent, per user */
    unsigned max_large_requests; /* bodies over PS_LARGE_BODY_BYTES at once (server/lane.h) */
    size_t quota_bytes;          /* stored per user; 0 = unlimited */
    unsigned max_connections;
    unsigned request_timeout_s; /* a whole request must arrive within this */
    unsigned db_pool;           /* PostgreSQL connections (0 = the worker threads + 2) */
    unsigned db_wait_s;         /* at start, retry reaching the database this long */

    /* operations (docs/operations.md) */
    int log_format;          /* ps_log_format (server/log.h) */
    int log_level;           /* ps_log_level */
    char metrics_bind[80];   /* ADDR:PORT of a separate /metrics listener, or "" */
    const char *config_file; /* --config: read before the flags */
    /* edge hardening (docs/security.md, issue 16) */
    unsigned max_connections_per_ip; /* IPv6 by /64; 0 = no cap */
    bool exempt_loopback;            /* loopback addresses are not capped */
    unsigned header_timeout_s;       /* the first request head (and TLS handshake) within this */
    size_t min_upload_rate;          /* bytes/s a large body must keep up; 0 = none */
    int64_t max_token_lifetime_s;    /* tokens expiring later than now + this are refused */
    size_t quick_check_max_bytes;    /* PRAGMA quick_check at start up to this size; 0 = never */

    /* the live socket on / (server/ws.h) */
    unsigned ws_max_sockets;
    unsigned ws_max_user_sockets;
    unsigned ws_ping_interval_s;
    size_t ws_queue_bytes;
} ps_config;

/* Whether a JWT key is configured. */
bool ps_config_has_auth(const ps_config *cfg);
/* Whether every answer says Access-Control-Allow-Origin: * without being
 * told: only in the open local mode (no auth, loopback, no --cors-origin).
 * A server opened to the network without auth (--insecure-no-auth) does
 * not invite every web page in. */
bool ps_config_cors_any_origin(const ps_config *cfg);

void ps_config_defaults(ps_config *cfg);

typedef enum { PS_CONFIG_RUN, PS_CONFIG_EXIT_OK, PS_CONFIG_EXIT_USAGE } ps_config_action;

/*
 * Applies env (CHAT_SYNC_PORT) then flags. Help and version go to `out`,
 * mistakes to `err_out`; the action says what main should do next.
 */
ps_config_action ps_config_parse(ps_config *cfg, int argc, char **argv, FILE *out, FILE *err_out);

/* The checks across flags (auth, TLS, CORS, bind); also run by parse. */
ps_config_action ps_config_check(const ps_config *cfg, FILE *err_out);

/* Whether `addr` is a loopback address (127.0.0.0/8, ::1, localhost). */
bool ps_addr_is_loopback(const char *addr);

#endif
