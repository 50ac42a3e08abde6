/*
 * ps_client_watch: sync at start, every interval, on the live channel's
 * "changed" events, and soon after local changes.
 *
 * One thread, one poll: the live channel (GET /v2/events) runs in a curl
 * multi handle whose poll also waits on the handle's stop pipe, so SIGINT
 * or SIGTERM (through ps_client_stop) ends the wait at once. Syncs run in
 * between, blocking; events that arrive meanwhile wait in the socket. Local
 * changes from any process are noticed by polling the change log's sequence
 * twice a second, which costs one indexed read.
 *
 * Whenever the channel (re)connects the watcher syncs, because events sent
 * while it was down are lost.
 */
#include "client/http.h"
#include "client/sse.h"

#include <curl/curl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOCAL_CHECK_MS 500
#define LIVE_STALL_S                                                                               \
    60 /* no byte, not even a keep-alive (every 15 s), for this long: reconnect                    \
        */

typedef enum live_state { LIVE_OFF, LIVE_CONNECTING, LIVE_ON, LIVE_NONE } live_state;

typedef struct watcher {
    ps_client *c;
    ps_watch_fn fn;
    void *ud;
    CURLM *multi;
    CURL *sse_curl;
    struct curl_slist *sse_headers;
    char *sse_url;
    ps_sse sse;
    live_state live;
    unsigned live_failures;
    int64_t reconnect_at;
    const char *want; /* why the next sync runs, or NULL */
} watcher;

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static void emit(watcher *w, ps_watch_kind kind, const char *reason, ps_code rc,
                 const ps_sync_stats *st, const ps_error *err)
{
    if (!w->fn)
        return;
    ps_watch_event ev = {.kind = kind, .reason = reason, .rc = rc, .stats = st, .err = err};
    w->fn(&ev, w->ud);
}

static void on_event(const char *event, void *ud)
{
    watcher *w = ud;
    if (strcmp(event, "changed") == 0 && !w->want)
        w->want = "live";
}

static size_t on_sse_bytes(char *data, size_t size, size_t n, void *ud)
{
    watcher *w = ud;
    long status = 0;
    curl_easy_getinfo(w->sse_curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return size * n; /* an error body: read and dropped */
    if (w->live != LIVE_ON) {
        w->live = LIVE_ON;
        w->live_failures = 0;
        emit(w, PS_WATCH_LIVE_ON, NULL, PS_OK, NULL, NULL);
        w->want = "live"; /* what happened while it was down */
    }
    ps__sse_feed(&w->sse, data, size * n, on_event, w);
    return size * n;
}

static int on_sse_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c2, curl_off_t d)
{
    watcher *w = ud;
    (void)a;
    (void)b;
    (void)c2;
    (void)d;
    return ps__stopped(w->c) ? 1 : 0;
}

static void live_stop(watcher *w)
{
    if (w->sse_curl) {
        curl_multi_remove_handle(w->multi, w->sse_curl);
        curl_easy_cleanup(w->sse_curl);
        w->sse_curl = NULL;
    }
    curl_slist_free_all(w->sse_headers);
    w->sse_headers = NULL;
}

static void live_start(watcher *w)
{
    ps_error err;
    live_stop(w);
    ps__sse_init(&w->sse);
    if (!(w->sse_curl = curl_easy_init()) ||
        ps__http_setup(w->c, w->sse_curl, w->sse_url, "text/event-stream", &w->sse_headers, &err) !=
            PS_OK) {
        live_stop(w);
        w->live = LIVE_OFF;
        w->reconnect_at = mono_ms() + ps__backoff_ms(w->c, ++w->live_failures);
        return;
    }
    CURL *h = w->sse_curl;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, w->sse_headers);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_sse_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_sse_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, w);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)LIVE_STALL_S);
    curl_multi_add_handle(w->multi, h);
    w->live = LIVE_CONNECTING;
}

/* The stream ended: why, and what next. */
static void live_ended(watcher *w, CURLcode cc)
{
    long status = 0;
    curl_easy_getinfo(w->sse_curl, CURLINFO_RESPONSE_CODE, &status);
    bool was_on = w->live == LIVE_ON;
    live_stop(w);
    if (cc == CURLE_OK && (status == 404 || status == 405)) {
        w->live = LIVE_NONE;
        emit(w, PS_WATCH_LIVE_NONE, NULL, PS_OK, NULL, NULL);
        return;
    }
    w->live = LIVE_OFF;
    if (was_on)
        emit(w, PS_WATCH_LIVE_OFF, NULL, PS_OK, NULL, NULL);
    unsigned delay = ps__backoff_ms(w->c, ++w->live_failures);
    if (w->sse.retry_ms > (long)delay && w->sse.retry_ms < 600000)
        delay = (unsigned)w->sse.retry_ms;
    w->reconnect_at = mono_ms() + delay;
}

static void pump_live(watcher *w)
{
    int running = 0;
    curl_multi_perform(w->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg == CURLMSG_DONE && m->easy_handle == w->sse_curl)
            live_ended(w, m->data.result);
    }
}

/* A fatal sync failure ends the watch: credentials refused, bad settings. */
static bool fatal(ps_client *c, ps_code rc)
{
    return rc == PS_ERR_CONFIG || rc == PS_ERR_SCHEMA || rc == PS_ERR_UNAUTHORIZED ||
           rc == PS_ERR_INVALID_TOKEN || c->last_status == 401 || c->last_status == 403;
}

static ps_code run_sync(watcher *w, const char *reason, ps_error *err)
{
    ps_sync_stats st;
    ps_error e;
    ps_error_clear(&e);
    ps_code rc = ps_client_sync(w->c, &st, &e);
    if (ps__stopped(w->c))
        return PS_OK;
    if (rc == PS_OK) {
        emit(w, PS_WATCH_SYNCED, reason, rc, &st, &e);
        return PS_OK;
    }
    emit(w, PS_WATCH_SYNC_FAILED, reason, rc, &st, &e);
    if (fatal(w->c, rc)) {
        if (err)
            *err = e;
        return rc;
    }
    return PS_OK;
}

ps_code ps_client_watch(ps_client *c, unsigned interval_s, ps_watch_fn on_event_fn, void *userdata,
                        ps_error *err)
{
    if (!c->server)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "server",
                            "no server: set one with --server URL or POLYSYNC_SERVER");
    ps__http_global_init();
    watcher w = {.c = c, .fn = on_event_fn, .ud = userdata, .live = LIVE_OFF};
    int64_t interval_ms = (int64_t)(interval_s ? interval_s : 60) * 1000;
    ps_code rc = PS_OK;
    /* ?deviceId=: the server does not ring this device for its own pushes */
    char *device = curl_easy_escape(NULL, c->device, 0);
    if (!device || asprintf(&w.sse_url, "%s/v2/events?deviceId=%s", c->server, device) < 0 ||
        !(w.multi = curl_multi_init())) {
        curl_free(device);
        free(w.sse_url);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    curl_free(device);
    int64_t high = 0, seen_high = 0;
    ps_error e;
    ps__lstore_change_high(c->store, &seen_high, &e);
    rc = run_sync(&w, "start", err);
    int64_t next_sync = mono_ms() + interval_ms;
    int64_t next_check = mono_ms() + LOCAL_CHECK_MS;
    if (rc == PS_OK && !ps__stopped(c))
        live_start(&w);
    while (rc == PS_OK && !ps__stopped(c)) {
        int64_t now = mono_ms();
        int64_t until = next_sync < next_check ? next_sync : next_check;
        if (w.live == LIVE_OFF && w.reconnect_at < until)
            until = w.reconnect_at;
        int timeout = until > now ? (int)(until - now) : 0;
        struct curl_waitfd stopfd = {.fd = c->stop_pipe[0], .events = CURL_WAIT_POLLIN};
        curl_multi_poll(w.multi, &stopfd, 1, timeout, NULL);
        if (ps__stopped(c))
            break;
        pump_live(&w);
        now = mono_ms();
        if (now >= next_check) {
            next_check = now + LOCAL_CHECK_MS;
            if (ps__lstore_change_high(c->store, &high, &e) == PS_OK && high != seen_high &&
                !w.want)
                w.want = "local";
        }
        if (!w.want && now >= next_sync)
            w.want = "interval";
        if (w.want) {
            const char *reason = w.want;
            w.want = NULL;
            /* what is logged from here on is the next sync's business */
            ps__lstore_change_high(c->store, &seen_high, &e);
            rc = run_sync(&w, reason, err);
            next_sync = mono_ms() + interval_ms;
        }
        if (w.live == LIVE_OFF && mono_ms() >= w.reconnect_at)
            live_start(&w);
    }
    live_stop(&w);
    curl_multi_cleanup(w.multi);
    free(w.sse_url);
    return rc;
}
