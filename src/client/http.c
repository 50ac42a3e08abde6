/*
 * HTTP requests with bounded retries; see http.h.
 *
 * The trap: a retried POST /v2/sync may have been applied by the server
 * before the connection broke. That is safe only because every change
 * carries its own stamp (a second merge of the same write changes nothing)
 * and a cursor may be reused; nothing here may alter a body between tries.
 */
#include "client/http.h"
#include "core/json_parse.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libdeflate.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void ps__http_global_init(void)
{
    pthread_once(&global_once, global_init);
}

void ps__http_cleanup(ps_client *c);
void ps__http_cleanup(ps_client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

void ps__http_answer_init(ps_http_answer *a)
{
    memset(a, 0, sizeof *a);
    ps__dynbuf_init(&a->body, PS_HTTP_MAX_ANSWER);
}

void ps__http_answer_free(ps_http_answer *a)
{
    if (a->tok)
        json_tokener_free(a->tok);
    a->tok = NULL;
    json_object_put(a->streamed);
    a->streamed = NULL;
    ps__dynbuf_free(&a->body);
}

static bool host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0)
        return true;
    char buf[64];
    size_t n = strlen(host);
    if (n >= sizeof buf)
        return false;
    memcpy(buf, host, n + 1);
    if (buf[0] == '[' && n > 2 && buf[n - 1] == ']') { /* [::1] */
        memmove(buf, buf + 1, n - 2);
        buf[n - 2] = '\0';
    }
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, buf, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, buf, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return false;
}

bool ps__url_is_safe_for_token(const char *url)
{
    if (strncmp(url, "https://", 8) == 0)
        return true;
    CURLU *u = curl_url();
    char *host = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host_is_loopback(host);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

bool ps__sleep(ps_client *c, unsigned ms)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (ps__stopped(c))
            return false;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long gone =
            (now.tv_sec - start.tv_sec) * 1000LL + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (gone >= ms)
            return true;
        struct pollfd p = {.fd = c->stop_pipe[0], .events = POLLIN};
        poll(&p, 1, (int)(ms - gone));
    }
}

unsigned ps__backoff_ms(ps_client *c, unsigned attempt)
{
    uint64_t d = c->retry.base_delay_ms;
    for (unsigned i = 1; i < attempt && d < c->retry.max_delay_ms; i++)
        d *= 2;
    if (d > c->retry.max_delay_ms)
        d = c->retry.max_delay_ms;
    /* "equal jitter": half fixed, half random, so clients that failed
     * together do not come back together */
    uint64_t half = d / 2;
    return (unsigned)(half + (half ? ps__random(c) % (half + 1) : 0));
}

long ps__parse_retry_after(const char *value, long now_s)
{
    while (*value == ' ' || *value == '\t')
        value++;
    if (isdigit((unsigned char)*value)) {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (errno || *end)
            return -1;
        return v;
    }
    time_t when = curl_getdate(value, NULL);
    if (when < 0)
        return -1;
    return when > now_s ? (long)(when - now_s) : 0;
}

/* ---- one transfer ---- */

typedef struct transfer {
    ps_client *c;
    /* quiet: a transfer on another thread than the client's (pull_ahead.c):
     * no progress calls, and it also stops when *cancel is set */
    bool quiet;
    const atomic_bool *cancel;
    ps_transfer_live *live; /* a quiet transfer's bytes, for the client's thread */
    ps_dynbuf *body;
    ps_http_answer *answer;
    bool too_large;
    long retry_after; /* -1 when absent */
    ps_sync_stats *st;
    struct timespec last_progress, started;
} transfer;

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    transfer *t = ud;
    if (ps__dynbuf_add(t->body, data, size * n) != PS_OK) {
        t->too_large = true;
        return 0;
    }
    if (t->answer->stream_depth > 0)
        ps__answer_stream_feed(t->answer, data, size * n);
    return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    transfer *t = ud;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof name - 1 && len < 256 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char value[256];
        memcpy(value, data + sizeof name - 1, len - (sizeof name - 1));
        value[len - (sizeof name - 1)] = '\0';
        t->retry_after = ps__parse_retry_after(value, (long)time(NULL));
    }
    return len;
}

/*
 * Bytes handed to the kernel but not yet acknowledged by the other end.
 * libcurl counts a body as sent when the socket took it, and a send buffer
 * can swallow megabytes at once: without this, "sending" would jump to
 * 100 % and the rest of the upload would look like the server working.
 */
static curl_off_t queued_bytes(const ps_client *c, curl_off_t handed)
{
#ifdef SIOCOUTQ
    int queued = 0;
    if (c->sock >= 0 && ioctl(c->sock, SIOCOUTQ, &queued) == 0 && queued > 0)
        return queued < handed ? queued : handed;
#else
    (void)c;
    (void)handed;
#endif
    return 0;
}

/* Notes the socket of each new connection, for queued_bytes(); a reused
 * connection keeps its socket. */
static int on_socket(void *ud, curl_socket_t fd, curlsocktype purpose)
{
    int *sock = ud;
    if (purpose == CURLSOCKTYPE_IPCXN)
        *sock = (int)fd;
    return CURL_SOCKOPT_OK;
}

/* Which way a request's bytes are moving: the answer has begun, or the
 * body is still going out (or none yet), or all of it is out and the
 * server works. */
static ps_transfer_phase phase_of(uint64_t delivered, uint64_t send_total, uint64_t received)
{
    return received > 0                           ? PS_TRANSFER_RECEIVING
           : delivered < send_total || !delivered ? PS_TRANSFER_SENDING
                                                  : PS_TRANSFER_WAITING;
}

void ps__http_report_live(ps_client *c, const ps_transfer_live *live, int64_t elapsed_ms,
                          const ps_sync_stats *st)
{
    if (!c->on_transfer)
        return;
    ps_transfer_info info = {
        .sent = atomic_load(&live->sent),
        .send_total = atomic_load(&live->send_total),
        .received = atomic_load(&live->received),
        .receive_total = atomic_load(&live->receive_total),
        .elapsed_ms = elapsed_ms,
        .stats = st,
    };
    info.phase = phase_of(info.sent, info.send_total, info.received);
    c->on_transfer(&info, c->on_transfer_ud);
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    transfer *t = ud;
    if (ps__stopped(t->c) || (t->cancel && atomic_load(t->cancel)))
        return 1; /* aborts the transfer: CURLE_ABORTED_BY_CALLBACK */
    if (t->live) {
        atomic_store(&t->live->sent, (uint64_t)ulnow);
        atomic_store(&t->live->send_total, (uint64_t)ultotal);
        atomic_store(&t->live->received, (uint64_t)dlnow);
        atomic_store(&t->live->receive_total, (uint64_t)dltotal);
    }
    if (!t->quiet && t->st && (t->c->progress || t->c->on_transfer)) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long ms = (now.tv_sec - t->last_progress.tv_sec) * 1000LL +
                       (now.tv_nsec - t->last_progress.tv_nsec) / 1000000;
        if (ms >= 100) {
            t->last_progress = now;
            t->st->upload_now = (uint64_t)ulnow;
            t->st->upload_total = (uint64_t)ultotal;
            /* the transfer callback, when installed, tells more */
            if (t->c->progress && !t->c->on_transfer)
                t->c->progress(t->st, t->c->progress_ud);
            if (t->c->on_transfer) {
                curl_off_t delivered = ulnow - queued_bytes(t->c, ulnow);
                ps_transfer_info info = {
                    .phase = phase_of((uint64_t)delivered, (uint64_t)ultotal, (uint64_t)dlnow),
                    .sent = (uint64_t)delivered,
                    .send_total = (uint64_t)ultotal,
                    .received = (uint64_t)dlnow,
                    .receive_total = (uint64_t)dltotal,
                    .elapsed_ms = (now.tv_sec - t->started.tv_sec) * 1000LL +
                                  (now.tv_nsec - t->started.tv_nsec) / 1000000,
                    .stats = t->st,
                };
                t->c->on_transfer(&info, t->c->on_transfer_ud);
            }
        }
    }
    return 0;
}

ps_code ps__http_setup(ps_client *c, CURL *curl, const char *url, const char *accept,
                       struct curl_slist **headers, ps_error *err)
{
    *headers = NULL;
    if (c->token && !c->allow_plain_http && !ps__url_is_safe_for_token(url))
        return ps_error_set(err, PS_ERR_CONFIG, -1, "server",
                            "refusing to send the token over plain http to a host that is not "
                            "this machine; use https:// (or allow plain http explicitly)");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->cacert)
        curl_easy_setopt(curl, CURLOPT_CAINFO, c->cacert);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)c->retry.timeout_s);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "polysync/" PS_VERSION);
    struct curl_slist *h = NULL, *next;
    char line[64 + 8192];
    snprintf(line, sizeof line, "Accept: %s", accept);
    if ((next = curl_slist_append(h, line)))
        h = next;
    if (c->token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", c->token);
        if ((next = curl_slist_append(h, line)))
            h = next;
        memset(line, 0, sizeof line);
    }
    *headers = h;
    return PS_OK;
}

static void read_error_body(ps_http_answer *a)
{
    json_object *root = NULL, *v;
    ps_error perr;
    if (!a->body.len ||
        ps__json_parse(a->body.data, a->body.len, PS_JSON_MAX_DEPTH, &root, &perr) != PS_OK)
        return;
    if (json_object_object_get_ex(root, "code", &v) && json_object_is_type(v, json_type_string))
        snprintf(a->code, sizeof a->code, "%s", json_object_get_string(v));
    if (json_object_object_get_ex(root, "error", &v) && json_object_is_type(v, json_type_string))
        snprintf(a->message, sizeof a->message, "%s", json_object_get_string(v));
    json_object_put(root);
}

static bool url_is_loopback(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL;
    bool yes = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
               curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host_is_loopback(host);
    curl_free(host);
    curl_url_cleanup(u);
    return yes;
}

/*
 * What a request compresses (docs/client.md, "Compression"): *level, the
 * gzip level of its body (0 = plain); *accept_gzip, whether it asks for a
 * gzip answer. POLYSYNC_GZIP_LEVEL=N decides both (0 = neither; 1..12,
 * libdeflate's levels). Unset: nothing to a loopback server, whose bytes
 * never cross a wire (compressing them is CPU on both ends for nothing);
 * else level 1 and gzip answers. Measured on the 63 MB reference history
 * in 4 MiB batches: libdeflate level 1 packs it to 18.4 MB in 0.35 s of
 * CPU where zlib's default level 6 took 3.3 s for 17.3 MB, so the 1.1 MB
 * level 6 saves costs more time than it saves above ~3 Mbit/s.
 */
static void compression(const char *url, int *level, bool *accept_gzip)
{
    const char *v = getenv("POLYSYNC_GZIP_LEVEL");
    char *end = NULL;
    long l = v && *v ? strtol(v, &end, 10) : -1;
    if (end && !*end && l >= 0 && l <= 12) {
        *level = (int)l;
        *accept_gzip = l > 0;
        return;
    }
    bool local = url_is_loopback(url);
    *level = local ? 0 : PS_HTTP_GZIP_LEVEL;
    *accept_gzip = !local;
}

/*
 * The codings a compressed answer may come in: zstd first when this libcurl
 * decodes it (Debian 12's does), as polysyncd then prefers it: a fresh
 * pull's answer is a tenth smaller than gzip's and decodes ~4x faster
 * (docs/performance.md, "zstd answers").
 */
static const char *answer_codings(void)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    return v && (v->features & CURL_VERSION_ZSTD) ? "zstd, gzip" : "gzip";
}

static ps_code gzip_body(const char *in, size_t len, int level, char **out, size_t *out_len)
{
    *out = NULL;
    struct libdeflate_compressor *z = libdeflate_alloc_compressor(level);
    if (!z)
        return PS_ERR_NOMEM;
    size_t cap = libdeflate_gzip_compress_bound(z, len);
    char *buf = malloc(cap);
    size_t n = buf ? libdeflate_gzip_compress(z, in, len, buf, cap) : 0;
    libdeflate_free_compressor(z);
    if (!n) {
        free(buf);
        return PS_ERR_NOMEM;
    }
    *out = buf;
    *out_len = n;
    return PS_OK;
}

static bool transient_curl_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
        return true;
    default:
        return false;
    }
}

static bool transient_status(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

/* Why a transfer failed, in a person's words: "connection refused",
 * "timed out after 30 s", "unknown host", else libcurl's message. */
static void describe_failure(ps_client *c, CURL *curl, CURLcode cc, const char *errbuf, char *out,
                             size_t size)
{
    long os_errno = 0;
    curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
    if (cc == CURLE_COULDNT_CONNECT && os_errno) {
        snprintf(out, size, "%s", strerror((int)os_errno));
        out[0] = (char)tolower((unsigned char)out[0]);
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(out, size, "timed out (nothing for %u s)", c->retry.timeout_s);
    } else if (cc == CURLE_COULDNT_RESOLVE_HOST) {
        snprintf(out, size, "unknown host (%s)", errbuf[0] ? errbuf : "cannot resolve");
    } else if (cc == CURLE_GOT_NOTHING || cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR ||
               cc == CURLE_PARTIAL_FILE) {
        snprintf(out, size, "connection dropped (%s)", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    } else {
        snprintf(out, size, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    }
}

/* How one attempt runs: on the client's own handle (curl NULL: c->curl,
 * its socket noted in c->sock, progress called), or on another thread's
 * (see transfer's `quiet`). */
typedef struct attempt_on {
    CURL *curl;
    int *sock;
    bool quiet;
    const atomic_bool *cancel;
    ps_transfer_live *live;
} attempt_on;

/* One attempt. *cc the curl result; the answer in *a. */
static ps_code attempt(ps_client *c, const attempt_on *on, const char *url, const char *body,
                       size_t len, bool gzipped, bool accept_gzip, ps_sync_stats *st,
                       ps_http_answer *a, CURLcode *cc, long *retry_after, char *errbuf,
                       ps_error *err)
{
    CURL *curl = on && on->curl ? on->curl : c->curl;
    struct curl_slist *headers = NULL;
    curl_easy_reset(curl);
    ps__dynbuf_reset(&a->body);
    ps__answer_stream_reset(a);
    a->status = 0;
    a->code[0] = a->message[0] = '\0';
    ps_code rc = ps__http_setup(c, curl, url, "application/json", &headers, err);
    if (rc != PS_OK)
        return rc;
    struct curl_slist *next;
    if (body && (next = curl_slist_append(headers, "Content-Type: application/json")))
        headers = next;
    if ((next = curl_slist_append(headers, "Expect:"))) /* no 100-continue round trip */
        headers = next;
    if (gzipped && (next = curl_slist_append(headers, "Content-Encoding: gzip")))
        headers = next;
    transfer t = {.c = c,
                  .quiet = on && on->quiet,
                  .cancel = on ? on->cancel : NULL,
                  .live = on ? on->live : NULL,
                  .body = &a->body,
                  .answer = a,
                  .retry_after = -1,
                  .st = st};
    clock_gettime(CLOCK_MONOTONIC, &t.last_progress);
    t.started = t.last_progress;
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    }
    /* NULL: no Accept-Encoding, an answer as it is */
    curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, accept_gzip ? answer_codings() : NULL);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(curl, CURLOPT_SOCKOPTFUNCTION, on_socket);
    curl_easy_setopt(curl, CURLOPT_SOCKOPTDATA, on && on->sock ? on->sock : &c->sock);
    /* A stalled transfer (less than 1 byte/s for timeout_s) is abandoned. */
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)c->retry.timeout_s);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    errbuf[0] = '\0';
    *cc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    *retry_after = t.retry_after;
    if (st) {
        curl_off_t up = 0, down = 0;
        curl_easy_getinfo(curl, CURLINFO_SIZE_UPLOAD_T, &up);
        curl_easy_getinfo(curl, CURLINFO_SIZE_DOWNLOAD_T, &down);
        st->bytes_sent += (uint64_t)up;
        st->bytes_received += (uint64_t)down;
        st->requests++;
        st->upload_now = st->upload_total = 0;
    }
    if (*cc == CURLE_WRITE_ERROR && t.too_large)
        return ps_error_set(err, PS_ERR_TOO_LARGE, -1, "",
                            "the server's answer is larger than %zu MiB", PS_HTTP_MAX_ANSWER >> 20);
    if (*cc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a->status);
    return PS_OK;
}

ps_code ps__http_post(ps_client *c, const char *path, const char *body, size_t len, bool may_gzip,
                      ps_sync_stats *st, ps_http_answer *a, ps_error *err)
{
    ps__http_global_init();
    c->last_status = 0;
    if (!c->server)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "server", "no server configured");
    if (!c->curl && !(c->curl = curl_easy_init()))
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "cannot start libcurl");
    char *url = NULL, *packed = NULL;
    size_t packed_len = 0;
    if (asprintf(&url, "%s%s", c->server, path) < 0)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    int level;
    bool accept_gzip;
    compression(url, &level, &accept_gzip);
    bool gzipped = may_gzip && !c->no_gzip && level > 0 && len >= PS_HTTP_GZIP_FROM &&
                   gzip_body(body, len, level, &packed, &packed_len) == PS_OK;
    ps_code rc = PS_OK;
    char errbuf[CURL_ERROR_SIZE];
    /* the first failure is often the telling one (refused, then timeouts) */
    char first[CURL_ERROR_SIZE + 400] = "", last[CURL_ERROR_SIZE + 400] = "";
    for (unsigned n = 1;; n++) {
        CURLcode cc;
        long retry_after = -1;
        rc = attempt(c, NULL, url, gzipped ? packed : body, gzipped ? packed_len : len, gzipped,
                     accept_gzip, st, a, &cc, &retry_after, errbuf, err);
        if (rc != PS_OK)
            break;
        if (cc == CURLE_ABORTED_BY_CALLBACK || ps__stopped(c)) {
            rc = ps_error_set(err, PS_ERR_IO, -1, "", "interrupted");
            break;
        }
        if (cc == CURLE_OK) {
            c->last_status = (int)a->status;
            if (a->status >= 400)
                read_error_body(a);
            if (a->status == 415 && gzipped) {
                /* a server that takes no gzip: say it once, send plain */
                c->no_gzip = true;
                gzipped = false;
                n--;
                continue;
            }
            if (!transient_status(a->status))
                break;
            snprintf(last, sizeof last, "HTTP %ld%s%s", a->status, a->message[0] ? ": " : "",
                     a->message);
        } else {
            c->last_status = 0;
            describe_failure(c, c->curl, cc, errbuf, last, sizeof last);
            if (!transient_curl_error(cc)) {
                rc = ps_error_set(err, PS_ERR_IO, -1, "", "cannot reach %s: %s", c->server, last);
                break;
            }
        }
        if (!first[0])
            snprintf(first, sizeof first, "%s", last);
        if (n >= c->retry.max_attempts) {
            bool same = strcmp(first, last) == 0;
            ps_code gave_up = c->last_status != 429                       ? PS_ERR_IO
                              : strcmp(a->code, "too_many_requests") == 0 ? PS_ERR_TOO_MANY_REQUESTS
                                                                          : PS_ERR_RATE_LIMITED;
            rc = ps_error_set(err, gave_up, -1, "", "cannot reach %s after %u attempt%s: %s%s%s",
                              c->server, n, n == 1 ? "" : "s", first,
                              same ? "" : "; last attempt: ", same ? "" : last);
            break;
        }
        unsigned delay = ps__backoff_ms(c, n);
        if (retry_after >= 0 && (a->status == 429 || a->status == 503)) {
            long cap = (long)c->retry.max_retry_after_s;
            delay = (unsigned)((retry_after < cap ? retry_after : cap) * 1000);
        }
        if (st)
            st->retries++;
        if (c->on_retry) {
            ps_retry_info info = {.attempt = n,
                                  .max_attempts = c->retry.max_attempts,
                                  .delay_ms = delay,
                                  .reason = last};
            c->on_retry(&info, c->on_retry_ud);
        }
        if (!ps__sleep(c, delay)) {
            rc = ps_error_set(err, PS_ERR_IO, -1, "", "interrupted");
            break;
        }
    }
    free(packed);
    free(url);
    return rc;
}

ps_code ps__http_get_once(ps_client *c, const char *path, ps_sync_stats *st, ps_http_answer *a,
                          ps_error *err)
{
    ps__http_global_init();
    c->last_status = 0;
    if (!c->server)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "server", "no server configured");
    if (!c->curl && !(c->curl = curl_easy_init()))
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "cannot start libcurl");
    char *url = NULL;
    if (asprintf(&url, "%s%s", c->server, path) < 0)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    char errbuf[CURL_ERROR_SIZE];
    CURLcode cc;
    long retry_after = -1;
    ps_code rc = attempt(c, NULL, url, NULL, 0, false, true, st, a, &cc, &retry_after, errbuf, err);
    free(url);
    if (rc != PS_OK)
        return rc;
    if (cc != CURLE_OK)
        return ps_error_set(err, PS_ERR_IO, -1, "", "cannot reach %s: %s", c->server,
                            errbuf[0] ? errbuf : curl_easy_strerror(cc));
    c->last_status = (int)a->status;
    return PS_OK;
}

ps_code ps__http_post_once_on(ps_client *c, CURL *curl, const char *path, const char *body,
                              size_t len, bool may_gzip, const atomic_bool *cancel,
                              ps_transfer_live *live, ps_sync_stats *st, ps_http_answer *a,
                              ps_error *err)
{
    char *url = NULL, *packed = NULL;
    size_t packed_len = 0;
    if (!c->server)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "server", "no server configured");
    if (asprintf(&url, "%s%s", c->server, path) < 0)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    int level, sock = -1;
    bool accept_gzip;
    compression(url, &level, &accept_gzip);
    /* c->no_gzip is only written by ps__http_post, on the client's own
     * thread, never while a request of this kind is in flight */
    bool gzipped = may_gzip && !c->no_gzip && level > 0 && len >= PS_HTTP_GZIP_FROM &&
                   gzip_body(body, len, level, &packed, &packed_len) == PS_OK;
    attempt_on on = {.curl = curl, .sock = &sock, .quiet = true, .cancel = cancel, .live = live};
    char errbuf[CURL_ERROR_SIZE];
    CURLcode cc;
    long retry_after = -1;
    ps_code rc = attempt(c, &on, url, gzipped ? packed : body, gzipped ? packed_len : len, gzipped,
                         accept_gzip, st, a, &cc, &retry_after, errbuf, err);
    free(packed);
    free(url);
    if (rc != PS_OK)
        return rc;
    if (cc != CURLE_OK) {
        char why[CURL_ERROR_SIZE + 400];
        describe_failure(c, curl, cc, errbuf, why, sizeof why);
        return ps_error_set(err, PS_ERR_IO, -1, "", "cannot reach %s: %s", c->server, why);
    }
    if (a->status >= 400)
        read_error_body(a);
    return PS_OK;
}
