/* The line-per-event log; see log.h. */
#include "server/log.h"

#include "core/decimal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096

static ps_log_format g_format = PS_LOG_TEXT;
static ps_log_level g_min = PS_LOG_INFO;

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

void ps_log_setup(ps_log_format format, ps_log_level min_level)
{
    g_format = format;
    g_min = min_level;
}

bool ps_log_parse_format(const char *name, ps_log_format *out)
{
    if (strcmp(name, "text") == 0)
        *out = PS_LOG_TEXT;
    else if (strcmp(name, "json") == 0)
        *out = PS_LOG_JSON;
    else
        return false;
    return true;
}

bool ps_log_parse_level(const char *name, ps_log_level *out)
{
    for (unsigned i = 0; i < sizeof LEVEL_NAMES / sizeof *LEVEL_NAMES; i++) {
        if (strcmp(name, LEVEL_NAMES[i]) == 0) {
            *out = (ps_log_level)i;
            return true;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = PS_LOG_WARN;
        return true;
    }
    return false;
}

bool ps_log_enabled(ps_log_level level)
{
    return level >= g_min;
}

/* ---- one line, built in place; truncated (never overflowing) if huge ---- */

typedef struct line {
    char buf[LINE_MAX_BYTES];
    size_t len;
    bool json;
} line;

static void put(line *l, const char *s, size_t n)
{
    size_t room = sizeof l->buf - 2 - l->len; /* keep room for "}\n" */
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Whether a byte needs an escape in a value (see put_value). */
static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c == 0x7f;
}

/* A value: JSON-escaped in JSON; in text bare when it has no space, quote
 * or control character, else quoted with the same escapes. Bytes of
 * clients (a method, a request id) can never break a line. Runs of bytes
 * that need no escape are copied at once (an access line is written for
 * every request). */
static void put_value(line *l, const char *v)
{
    bool quote = l->json || *v == '\0';
    for (const char *p = v; *p && !quote; p++)
        quote = (unsigned char)*p <= ' ' || *p == '"' || *p == '\\' || *p == '=' ||
                (unsigned char)*p == 0x7f;
    if (quote)
        put(l, "\"", 1);
    const unsigned char *p = (const unsigned char *)v;
    while (*p) {
        const unsigned char *run = p;
        while (*p && !needs_escape(*p))
            p++;
        put(l, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            put(l, esc, 2);
        } else {
            static const char hex[] = "0123456789abcdef";
            char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            put(l, esc, 6);
        }
        p++;
    }
    if (quote)
        put(l, "\"", 1);
}

/* The separator and key of a field: `,"key":` in JSON, ` key=` in text. */
static void field_key(line *l, const char *key)
{
    if (l->json) {
        put(l, ",\"", 2);
        puts_(l, key);
        put(l, "\":", 2);
    } else {
        put(l, " ", 1);
        puts_(l, key);
        put(l, "=", 1);
    }
}

static void field_str(line *l, const char *key, const char *v)
{
    field_key(l, key);
    put_value(l, v ? v : "-");
}

/* Numbers by hand, not printf: this is on every request's path. */
static void field_uint(line *l, const char *key, uint64_t v)
{
    char num[PS_DECIMAL_MAX];
    size_t n = ps__decimal_u64(num, v, 1);
    field_key(l, key);
    put(l, num, n);
}

/* Microseconds as milliseconds with three decimals (what "%.3f" of
 * us / 1000.0 writes). */
static void field_ms(line *l, const char *key, int64_t us)
{
    char num[1 + PS_DECIMAL_MAX + 1 + 3];
    size_t n = 0;
    uint64_t u = us < 0 ? (uint64_t)0 - (uint64_t)us : (uint64_t)us;
    if (us < 0)
        num[n++] = '-';
    n += ps__decimal_u64(num + n, u / 1000, 1);
    num[n++] = '.';
    n += ps__decimal_u64(num + n, u % 1000, 3);
    field_key(l, key);
    put(l, num, n);
}

/* "YYYY-MM-DDTHH:MM:SS." of the current second, kept per thread: gmtime
 * and its formatting once a second rather than once a line. */
static __thread struct {
    time_t sec;
    char text[64];
} t_second = {.sec = -1};

static void put_time(line *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != t_second.sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(t_second.text, sizeof t_second.text, "%04d-%02d-%02dT%02d:%02d:%02d.",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        t_second.sec = ts.tv_sec;
    }
    char frac[PS_DECIMAL_MAX + 1];
    size_t n = ps__decimal_u64(frac, (uint64_t)(ts.tv_nsec / 1000000 % 1000), 3);
    frac[n++] = 'Z';
    puts_(l, t_second.text);
    put(l, frac, n);
}

static void line_begin(line *l, ps_log_level level, const char *event)
{
    l->len = 0;
    l->json = g_format == PS_LOG_JSON;
    if (l->json) {
        puts_(l, "{\"time\":\"");
        put_time(l);
        puts_(l, "\"");
        field_str(l, "level", LEVEL_NAMES[level]);
        field_str(l, "event", event);
    } else {
        put_time(l);
        put(l, " ", 1);
        puts_(l, LEVEL_NAMES[level]);
        put(l, " ", 1);
        puts_(l, event);
    }
}

/*
 * Access lines are written in batches: a write(2) of its own per request
 * was a tenth of a no-op sync's server time (the syscall, and the log
 * file's inode lock that both worker threads took). A batch holds whole
 * lines, at most PIPE_BUF bytes (so a pipe reader, journald say, never sees
 * a line cut or mixed), and is written when the next line would not fit,
 * when any other line is written (first: the order is kept), at exit, or
 * BATCH_MAX_MS after its first line by the flusher thread.
 */
#define BATCH_MAX_MS 20

static struct {
    pthread_mutex_t lock;
    pthread_cond_t filled; /* the batch got its first line */
    char buf[PIPE_BUF];
    size_t len;
    struct timespec first; /* CLOCK_MONOTONIC, of the batch's first line */
} g_batch = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t batch_once = PTHREAD_ONCE_INIT;
static bool batch_ok; /* the flusher runs: access lines may wait in the batch */

static void write_all(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to report it */
        p += w;
        n -= (size_t)w;
    }
}

/* Writes the batch; the caller holds the lock. */
static void batch_write(void)
{
    write_all(g_batch.buf, g_batch.len);
    g_batch.len = 0;
}

/* The flusher: asleep while the batch is empty (woken by its first line),
 * else at each batch's deadline. Under load it wakes at most once per
 * BATCH_MAX_MS: batches that fill up go out with the line that does not fit,
 * and a first line wakes it only from its idle sleep. */
static bool flusher_idle; /* under the lock */

static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_batch.lock);
    for (;;) {
        if (!g_batch.len) {
            flusher_idle = true;
            while (!g_batch.len)
                pthread_cond_wait(&g_batch.filled, &g_batch.lock);
            flusher_idle = false;
        }
        struct timespec due = g_batch.first;
        due.tv_sec += BATCH_MAX_MS / 1000;
        due.tv_nsec += (BATCH_MAX_MS % 1000) * 1000000L;
        if (due.tv_nsec >= 1000000000L) {
            due.tv_sec++;
            due.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&g_batch.filled, &g_batch.lock, &due) != ETIMEDOUT)
            continue;
        /* the batch now may be a younger one (the one due went out full):
         * then it waits for its own deadline */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long age_ms = (long long)(now.tv_sec - g_batch.first.tv_sec) * 1000 +
                           (now.tv_nsec - g_batch.first.tv_nsec) / 1000000;
        if (g_batch.len && age_ms >= BATCH_MAX_MS)
            batch_write();
    }
    return NULL;
}

static void batch_flush_at_exit(void)
{
    pthread_mutex_lock(&g_batch.lock);
    batch_write();
    pthread_mutex_unlock(&g_batch.lock);
}

static void batch_start(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    bool cond = pthread_cond_init(&g_batch.filled, &attr) == 0;
    pthread_condattr_destroy(&attr);
    pthread_t t;
    if (!cond || atexit(batch_flush_at_exit) != 0 ||
        pthread_create(&t, NULL, flusher_main, NULL) != 0)
        return; /* lines are then written one by one */
    pthread_detach(t);
    batch_ok = true;
}

static void line_close(line *l)
{
    if (l->json)
        l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
}

/* A closed line, written at once, after the batch. */
static void write_now(const line *l)
{
    pthread_mutex_lock(&g_batch.lock);
    batch_write();
    write_all(l->buf, l->len);
    pthread_mutex_unlock(&g_batch.lock);
}

/* Any line but an access line. */
static void line_end(line *l)
{
    line_close(l);
    write_now(l);
}

/* An access line: into the batch. */
static void line_end_batched(line *l)
{
    line_close(l);
    pthread_once(&batch_once, batch_start);
    if (!batch_ok || l->len > sizeof g_batch.buf) {
        write_now(l);
        return;
    }
    pthread_mutex_lock(&g_batch.lock);
    if (g_batch.len + l->len > sizeof g_batch.buf)
        batch_write();
    memcpy(g_batch.buf + g_batch.len, l->buf, l->len);
    if (!g_batch.len) {
        clock_gettime(CLOCK_MONOTONIC, &g_batch.first);
        if (flusher_idle)
            pthread_cond_signal(&g_batch.filled);
    }
    g_batch.len += l->len;
    pthread_mutex_unlock(&g_batch.lock);
}

void ps_log_event(ps_log_level level, const char *event, const char *fmt, ...)
{
    if (level < g_min)
        return;
    char message[LINE_MAX_BYTES / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    size_t n = strlen(message); /* libmicrohttpd ends its messages with \n */
    while (n && (message[n - 1] == '\n' || message[n - 1] == '\r'))
        message[--n] = '\0';
    line l;
    line_begin(&l, level, event);
    field_str(&l, "msg", message);
    line_end(&l);
}

void ps_log_access(const ps_access_entry *e)
{
    if (PS_LOG_INFO < g_min)
        return;
    line l;
    line_begin(&l, PS_LOG_INFO, "access");
    field_str(&l, "request_id", e->request_id);
    field_str(&l, "method", e->method);
    field_str(&l, "route", e->route);
    field_uint(&l, "status", e->status);
    field_uint(&l, "bytes_in", e->bytes_in);
    field_uint(&l, "bytes_out", e->bytes_out);
    field_ms(&l, "duration_ms", e->duration_us);
    field_str(&l, "user", e->user);
    field_str(&l, "device", e->device);
    field_str(&l, "client", e->client);
    line_end_batched(&l);
}

void ps_log_auth_failure(const char *request_id, const char *client, const char *reason)
{
    if (PS_LOG_WARN < g_min)
        return;
    line l;
    line_begin(&l, PS_LOG_WARN, "auth_failed");
    field_str(&l, "request_id", request_id);
    field_str(&l, "client", client);
    field_str(&l, "reason", reason);
    line_end(&l);
}
