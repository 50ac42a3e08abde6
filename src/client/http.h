/*
 * The client's HTTP: libcurl with certificates verified, only http and
 * https, no redirects (a redirect could turn https into http), the bearer
 * token, gzip bodies both ways, and bounded retries with exponential
 * backoff, jitter and Retry-After. Answers are capped in size.
 */
#ifndef PS_CLIENT_HTTP_H
#define PS_CLIENT_HTTP_H

#include "client/client_internal.h"
#include "core/dynbuf.h"

#include <curl/curl.h>
#include <stdatomic.h>

/* Largest answer accepted (decompressed). */
#define PS_HTTP_MAX_ANSWER ((size_t)512 * 1024 * 1024)
/* Bodies at least this large go gzipped. */
#define PS_HTTP_GZIP_FROM 8192
/* Their gzip level to a server that is not on loopback, unless
 * POLYSYNC_GZIP_LEVEL says (http.c, compression()). */
#define PS_HTTP_GZIP_LEVEL 1

typedef struct ps_http_answer {
    long status;
    ps_dynbuf body;
    char code[64];     /* the server's error code ("cursor_expired"), "" if none */
    char message[320]; /* the server's error message, "" if none */
    /* > 0 (set by the caller before the request): the body is also parsed
     * as it arrives, nested at most this deep (answer_stream.c), so a big
     * answer is parsed while the server is still sending it. */
    int stream_depth;
    struct json_tokener *tok;
    struct json_object *streamed; /* the parsed body once complete */
    bool stream_failed;           /* the tokener refused it: parse again for the error */
    char carry[4];                /* a character cut short at a piece's end (answer_stream.c) */
    size_t carry_len;
} ps_http_answer;

void ps__http_answer_init(ps_http_answer *a);
void ps__http_answer_free(ps_http_answer *a);

/* ---- answer_stream.c ---- */

/* Starts (again, for each attempt) the parse of the body as it arrives. */
void ps__answer_stream_reset(ps_http_answer *a);
/* Feeds `len` bytes of the body that just arrived. */
void ps__answer_stream_feed(ps_http_answer *a, const char *data, size_t len);
/*
 * The body as JSON, exactly as ps__json_parse(body, max_depth) would give
 * it (the same checks, the same errors): the tree parsed while it arrived
 * when there is one, else parsed now. *out the caller's.
 */
ps_code ps__answer_json(ps_http_answer *a, int max_depth, struct json_object **out, ps_error *err);

/*
 * POSTs `len` bytes of JSON to the server's `path`. Transport failures and
 * 429/500/502/503/504 are retried per the handle's policy. PS_OK means an
 * answer that is not retried (any 2xx or 4xx, or a 5xx other than those) in
 * *a, and c->last_status holds its status. PS_ERR_IO: no usable answer after
 * the retries, or interrupted by ps_client_stop(). `st` counts requests,
 * retries and bytes; may be NULL.
 */
ps_code ps__http_post(ps_client *c, const char *path, const char *body, size_t len, bool may_gzip,
                      ps_sync_stats *st, ps_http_answer *a, ps_error *err);

/*
 * What a transfer on another thread has moved so far (ps__http_post_once_on
 * writes it as the bytes move; the client's thread reads it while it waits
 * for that transfer, to show it: ps__http_report_live).
 */
typedef struct ps_transfer_live {
    atomic_uint_least64_t sent, send_total, received, receive_total;
} ps_transfer_live;

/* Calls the transfer callback, if installed, with `live`'s bytes, a
 * transfer `elapsed_ms` old, and the sync's counts `st`: on the client's
 * own thread, never the transfer's. (The progress callback has no figures
 * for an answer coming in: it is called after the request.) */
void ps__http_report_live(ps_client *c, const ps_transfer_live *live, int64_t elapsed_ms,
                          const ps_sync_stats *st);

/*
 * POSTs `len` bytes of JSON to `path` once, on the caller's `curl` handle:
 * no retries, no progress calls, c's own handle and fields untouched, so it
 * may run on another thread while the client works (pull_ahead.c,
 * push_ahead.c); `may_gzip`: the body gzipped as ps__http_post would. Stops early on ps_client_stop() or when *cancel (may be
 * NULL) is set. PS_OK: an answer of any status in *a (error code and
 * message read); PS_ERR_IO: none. `st` (may be NULL) counts the request
 * and its bytes; `live` (may be NULL) gets the bytes as they move.
 */
ps_code ps__http_post_once_on(ps_client *c, CURL *curl, const char *path, const char *body,
                              size_t len, bool may_gzip, const atomic_bool *cancel,
                              ps_transfer_live *live, ps_sync_stats *st, ps_http_answer *a,
                              ps_error *err);

/*
 * GETs the server's `path` once, without retries (for what the client may
 * do without: /health's capabilities). PS_OK: an answer of any status in
 * *a; PS_ERR_IO: none.
 */
ps_code ps__http_get_once(ps_client *c, const char *path, ps_sync_stats *st, ps_http_answer *a,
                          ps_error *err);

/*
 * The options every request shares (TLS, protocols, timeouts, token,
 * user agent) on `curl`, for `url`. *headers gets the header list the
 * caller frees (curl_slist_free_all) after the transfer. PS_ERR_CONFIG if
 * the token would go in clear to a non-loopback host.
 */
ps_code ps__http_setup(ps_client *c, CURL *curl, const char *url, const char *accept,
                       struct curl_slist **headers, ps_error *err);

/* "https://..." or loopback "http://": where a token may go. */
bool ps__url_is_safe_for_token(const char *url);

/* Sleeps `ms` unless ps_client_stop() comes first (then false). */
bool ps__sleep(ps_client *c, unsigned ms);

/* The delay before retry number `attempt` (1-based), with jitter. */
unsigned ps__backoff_ms(ps_client *c, unsigned attempt);

/* Parses a Retry-After value: seconds, or an HTTP date. -1 if neither. */
long ps__parse_retry_after(const char *value, long now_s);

/* curl_global_init, once per process. */
void ps__http_global_init(void);

#endif
