/*
 * sync and watch, and what a person sees of them: retry lines, the progress
 * line (bytes, rate, time left; merging; receiving), the summary, the
 * watch log (timestamped, one line per sync that moved something) and its
 * JSON events.
 */
#include "cli/cli.h"
#include "cli/cli_term.h"
#include "core/heap.h"
#include "core/json_build.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- sync: retries, progress, summary ---- */

typedef struct sync_view {
    term_line line;
    const char *prefix;      /* "sync" */
    bool timestamps;         /* watch: retry lines carry the time */
    int64_t waiting_from_ms; /* the request's time when all was sent, or -1 */
} sync_view;

static void on_retry(const ps_retry_info *info, void *ud)
{
    sync_view *v = ud;
    char wait[32], when[32] = "";
    if (v->timestamps) {
        cli_local_time(when);
        strcat(when, " ");
    }
    term_say(&v->line, "%s%s: retrying in %s (attempt %u/%u): %s", when, v->prefix,
             term_duration(wait, info->delay_ms / 1000.0), info->attempt + 1, info->max_attempts,
             info->reason);
}

/* "sent 1,000/2,400 changes, received 3 chats, 40 messages" */
static void counts_text(char *out, size_t size, const ps_sync_stats *s)
{
    char a[48], b[48], d[48];
    int n = 0;
    if (s->changes_total)
        n = snprintf(out, size, "sent %zu/%s", s->changes_sent,
                     term_count(a, s->changes_total, "change"));
    if (s->chats_received || s->messages_received || s->deletions_received)
        n += snprintf(out + n, size - (size_t)n, "%sreceived %s, %s", n ? ", " : "",
                      term_count(b, s->chats_received, "chat"),
                      term_count(d, s->messages_received, "message"));
    if (s->deletions_received)
        snprintf(out + n, size - (size_t)n, ", %s",
                 term_count(a, s->deletions_received, "deletion"));
}

/* After each request (the transfer callback covers the requests
 * themselves): the counts so far, while the answer is applied here. */
static void on_sync_progress(const ps_sync_stats *s, void *ud)
{
    sync_view *v = ud;
    char counts[256] = "";
    counts_text(counts, sizeof counts, s);
    term_draw(&v->line, true, "%s: %s", v->prefix, counts[0] ? counts : "working…");
}

/* One request moving: bytes, rate and time left while sending; the
 * server's work; bytes while receiving. Drawn unthrottled: the library
 * calls it at most 10 times a second. */
static void on_transfer(const ps_transfer_info *t, void *ud)
{
    sync_view *v = ud;
    char counts[256] = "", a[32], b[32], r[32], left[32], took[32];
    counts_text(counts, sizeof counts, t->stats);
    const char *sep = counts[0] ? " · " : "";
    double secs = t->elapsed_ms > 0 ? (double)t->elapsed_ms / 1000.0 : 0.001;
    if (t->phase != PS_TRANSFER_WAITING)
        v->waiting_from_ms = -1;
    else if (v->waiting_from_ms < 0)
        v->waiting_from_ms = t->elapsed_ms;
    switch (t->phase) {
    case PS_TRANSFER_SENDING: {
        double rate = (double)t->sent / secs;
        int pct = t->send_total ? (int)(100.0 * (double)t->sent / (double)t->send_total) : 0;
        if (rate >= 1 && t->send_total > t->sent)
            term_duration(left, (double)(t->send_total - t->sent) / rate);
        else
            snprintf(left, sizeof left, "?");
        term_draw(&v->line, true, "%s: sending %s of %s (%d%%), %s/s, %s left%s%s", v->prefix,
                  term_bytes(a, t->sent), term_bytes(b, t->send_total), pct,
                  term_bytes(r, (uint64_t)rate), left, sep, counts);
        break;
    }
    case PS_TRANSFER_WAITING:
        term_draw(&v->line, true, "%s: merging… (sent %s, server working for %s)%s%s", v->prefix,
                  term_bytes(a, t->sent),
                  term_duration(took, (double)((t->elapsed_ms - v->waiting_from_ms) / 1000)), sep,
                  counts);
        break;
    case PS_TRANSFER_RECEIVING:
        if (t->receive_total)
            term_draw(&v->line, true, "%s: receiving %s of %s (%d%%)%s%s", v->prefix,
                      term_bytes(a, t->received), term_bytes(b, t->receive_total),
                      (int)(100.0 * (double)t->received / (double)t->receive_total), sep, counts);
        else
            term_draw(&v->line, true, "%s: receiving %s%s%s", v->prefix, term_bytes(a, t->received),
                      sep, counts);
        break;
    }
}

static json_object *cli_stats_json(const ps_sync_stats *s)
{
    json_object *o = json_object_new_object();
    json_object *sent = json_object_new_object(), *recv = json_object_new_object();
    ps_code rc = PS_OK;
    ps__json_set(&rc, o, "protocol", json_object_new_string(s->protocol ? s->protocol : ""));
    ps__json_set(&rc, sent, "changes", json_object_new_int64((int64_t)s->changes_sent));
    ps__json_set(&rc, sent, "chats", json_object_new_int64((int64_t)s->chats_sent));
    ps__json_set(&rc, sent, "messages", json_object_new_int64((int64_t)s->messages_sent));
    ps__json_set(&rc, recv, "chats", json_object_new_int64((int64_t)s->chats_received));
    ps__json_set(&rc, recv, "messages", json_object_new_int64((int64_t)s->messages_received));
    ps__json_set(&rc, recv, "deletions", json_object_new_int64((int64_t)s->deletions_received));
    ps__json_set(&rc, o, "sent", sent);
    ps__json_set(&rc, o, "received", recv);
    ps__json_set(&rc, o, "requests", json_object_new_int64((int64_t)s->requests));
    ps__json_set(&rc, o, "retries", json_object_new_int64((int64_t)s->retries));
    ps__json_set(&rc, o, "pages", json_object_new_int64((int64_t)s->pages));
    ps__json_set(&rc, o, "fullResync", json_object_new_boolean(s->full_resync));
    ps__json_set(&rc, o, "bytesSent", json_object_new_int64((int64_t)s->bytes_sent));
    ps__json_set(&rc, o, "bytesReceived", json_object_new_int64((int64_t)s->bytes_received));
    ps__json_set(&rc, o, "elapsedMs", json_object_new_int64(s->elapsed_ms));
    if (rc != PS_OK) { /* an allocation failed: NULL, as json_object_new_* says it */
        json_object_put(o);
        return NULL;
    }
    return o;
}

static bool moved(const ps_sync_stats *s)
{
    return s->changes_sent || s->chats_received || s->messages_received || s->deletions_received ||
           s->full_resync;
}

/* "sent 3 changes (2 chats, 1 message); received 1 chat, 2 messages, 1
 * deletion [v2, 0.4 s]", or "nothing new [v2, 0.1 s]". */
static void summary_text(char *out, size_t size, const ps_sync_stats *s)
{
    char a[48], b[48], c[48], d[48], e[48], g[48], t[32];
    int n = 0;
    if (s->changes_sent)
        n += snprintf(
            out + n, size - (size_t)n, "sent %s (%s, %s)", term_count(a, s->changes_sent, "change"),
            term_count(b, s->chats_sent, "chat"), term_count(c, s->messages_sent, "message"));
    if (s->chats_received || s->messages_received || s->deletions_received) {
        n += snprintf(out + n, size - (size_t)n, "%sreceived %s, %s", n ? "; " : "",
                      term_count(d, s->chats_received, "chat"),
                      term_count(e, s->messages_received, "message"));
        if (s->deletions_received)
            n += snprintf(out + n, size - (size_t)n, ", %s",
                          term_count(g, s->deletions_received, "deletion"));
    }
    if (!n)
        n += snprintf(out + n, size - (size_t)n, "nothing new");
    if (s->full_resync)
        n += snprintf(out + n, size - (size_t)n, "; full resync");
    snprintf(out + n, size - (size_t)n, " [%s, %s]", s->protocol ? s->protocol : "",
             term_duration(t, (double)s->elapsed_ms / 1000.0));
}

static void watch_view(ps_client *c, sync_view *v, const options *o, const char *prefix)
{
    memset(v, 0, sizeof *v);
    v->prefix = prefix;
    v->waiting_from_ms = -1;
    term_init(&v->line, cli_on_terminal(o), PROGRESS_DELAY_MS);
    if (v->line.enabled) {
        ps_client_set_retry_notify(c, on_retry, v);
        ps_client_set_progress(c, on_sync_progress, v);
        ps_client_set_transfer_progress(c, on_transfer, v);
    }
}

int run_sync(ps_client *c, options *o)
{
    cli_signals_on(c);
    sync_view v;
    watch_view(c, &v, o, "sync");
    ps_error err;
    ps_error_clear(&err);
    ps_sync_stats st;
    ps_code rc = ps_client_sync(c, &st, &err);
    term_clear(&v.line);
    cli_signals_on(NULL);
    if (rc != PS_OK)
        return cli_fail(c, rc, &err, NETWORK);
    if (o->json)
        return cli_print_json(cli_stats_json(&st));
    if (!o->quiet && isatty(STDOUT_FILENO)) {
        char line[512];
        summary_text(line, sizeof line, &st);
        printf("synced: %s\n", line);
    }
    return 0;
}

/* ---- watch ---- */

typedef struct watch_ctx {
    const options *o;
    sync_view view;
} watch_ctx;

static void iso_now_ms(char out[64])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 64, "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000) % 1000);
}

static void on_watch(const ps_watch_event *ev, void *ud)
{
    watch_ctx *w = ud;
    const options *o = w->o;
    static const char *const kinds[] = {"synced", "sync_failed", "live_on", "live_off",
                                        "live_none"};
    term_clear(&w->view.line);
    if (ev->kind == PS_WATCH_SYNCED)
        ps__heap_give_back(); /* a long watch idles between syncs (core/heap.h) */
    if (o->json) {
        char at[64];
        iso_now_ms(at);
        json_object *j = json_object_new_object();
        ps_code rc = PS_OK;
        ps__json_set(&rc, j, "event", json_object_new_string(kinds[ev->kind]));
        ps__json_set(&rc, j, "at", json_object_new_string(at));
        if (ev->reason)
            ps__json_set(&rc, j, "reason", json_object_new_string(ev->reason));
        if (ev->stats)
            ps__json_set(&rc, j, "stats", cli_stats_json(ev->stats));
        if (ev->kind == PS_WATCH_SYNC_FAILED && ev->err)
            ps__json_set(&rc, j, "error", json_object_new_string(ev->err->message));
        const char *text = rc == PS_OK
                               ? json_object_to_json_string_ext(
                                     j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                               : NULL;
        if (text) /* else out of memory: this event's line is lost, the watch goes on */
            puts(text);
        fflush(stdout);
        json_object_put(j);
        return;
    }
    if (o->quiet && ev->kind != PS_WATCH_SYNC_FAILED)
        return;
    /* a sync that moved nothing is logged only with -v: one line per sync
     * that did something, so a quiet hour is a quiet log */
    if (ev->kind == PS_WATCH_SYNCED && !o->verbose && !moved(ev->stats))
        return;
    char when[32], line[512];
    cli_local_time(when);
    switch (ev->kind) {
    case PS_WATCH_SYNCED:
        summary_text(line, sizeof line, ev->stats);
        fprintf(stderr, "%s synced (%s): %s\n", when, ev->reason, line);
        break;
    case PS_WATCH_SYNC_FAILED:
        fprintf(stderr, "%s sync (%s) failed: %s\n", when, ev->reason, ev->err->message);
        break;
    case PS_WATCH_LIVE_ON:
        fprintf(stderr, "%s live channel connected\n", when);
        break;
    case PS_WATCH_LIVE_OFF:
        fprintf(stderr, "%s live channel lost; reconnecting\n", when);
        break;
    case PS_WATCH_LIVE_NONE:
        fprintf(stderr, "%s the server has no live channel; syncing every interval\n", when);
        break;
    }
    fflush(stderr);
}

int run_watch(ps_client *c, options *o)
{
    cli_signals_on(c);
    watch_ctx w = {.o = o};
    watch_view(c, &w.view, o, "watch");
    w.view.timestamps = true;
    ps_error err;
    ps_error_clear(&err);
    ps_code rc =
        ps_client_watch(c, (unsigned)(o->interval > 0 ? o->interval : 60), on_watch, &w, &err);
    term_clear(&w.view.line);
    cli_signals_on(NULL);
    if (rc != PS_OK)
        return cli_fail(c, rc, &err, NETWORK);
    if (!o->quiet && !o->json) {
        char when[32];
        cli_local_time(when);
        fprintf(stderr, "%s stopped\n", when);
    }
    return 0;
}
