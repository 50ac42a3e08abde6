/*
 * SSE hub; see events.h. One mutex guards the list of streams and each
 * stream's flags. The trap: a change that lands between a stream's "nothing
 * to send" check and its suspension would be lost, so the check and the
 * suspension happen under the same lock that notify() takes to resume.
 */
#include "server/events.h"
#include "core/chat.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct stream {
    struct stream *next;
    ps_events *ev;
    struct MHD_Connection *conn;
    char *user;
    char *device;   /* NULL: woken by every change of the user */
    bool changed;   /* a change to announce */
    bool keepalive; /* a keep-alive is due */
    bool suspended;
    bool greeted;
    bool cut; /* ps_events_close_user: end it */
} stream;

struct ps_events {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t ticker;
    stream *streams;
    unsigned count, max;
    unsigned keepalive_s;
    bool closing;
};

static void resume(stream *s)
{
    if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    }
}

static void *ticker_main(void *arg)
{
    ps_events *ev = arg;
    pthread_mutex_lock(&ev->lock);
    while (!ev->closing) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += ev->keepalive_s;
        pthread_cond_timedwait(&ev->wake, &ev->lock, &until);
        for (stream *s = ev->streams; s; s = s->next) {
            s->keepalive = true;
            resume(s);
        }
    }
    pthread_mutex_unlock(&ev->lock);
    return NULL;
}

ps_events *ps_events_new(unsigned max_streams, unsigned keepalive_s)
{
    ps_events *ev = calloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    pthread_mutex_init(&ev->lock, NULL);
    pthread_cond_init(&ev->wake, NULL);
    ev->max = max_streams;
    ev->keepalive_s = keepalive_s ? keepalive_s : 15;
    if (pthread_create(&ev->ticker, NULL, ticker_main, ev) != 0) {
        pthread_cond_destroy(&ev->wake);
        pthread_mutex_destroy(&ev->lock);
        free(ev);
        return NULL;
    }
    return ev;
}

void ps_events_close_all(ps_events *ev)
{
    pthread_mutex_lock(&ev->lock);
    if (!ev->closing) {
        ev->closing = true;
        for (stream *s = ev->streams; s; s = s->next)
            resume(s);
        pthread_cond_signal(&ev->wake);
    }
    pthread_mutex_unlock(&ev->lock);
}

void ps_events_free(ps_events *ev)
{
    if (!ev)
        return;
    ps_events_close_all(ev);
    pthread_join(ev->ticker, NULL);
    pthread_cond_destroy(&ev->wake);
    pthread_mutex_destroy(&ev->lock);
    free(ev);
}

void ps_events_notify(ps_events *ev, const char *user, const char *device)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->lock);
    for (stream *s = ev->streams; s; s = s->next) {
        bool own = device && s->device && strcmp(s->device, device) == 0;
        if (!own && strcmp(s->user, user) == 0) {
            s->changed = true;
            resume(s);
        }
    }
    pthread_mutex_unlock(&ev->lock);
}

void ps_events_notify_all(ps_events *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->lock);
    for (stream *s = ev->streams; s; s = s->next) {
        s->changed = true;
        resume(s);
    }
    pthread_mutex_unlock(&ev->lock);
}

void ps_events_close_user(ps_events *ev, const char *user)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->lock);
    for (stream *s = ev->streams; s; s = s->next) {
        if (strcmp(s->user, user) == 0) {
            s->cut = true;
            resume(s);
        }
    }
    pthread_mutex_unlock(&ev->lock);
}

static ssize_t copy_out(char *buf, size_t max, const char *text)
{
    size_t n = strlen(text);
    if (n > max) /* MHD gives at least a block; our lines are short */
        n = max;
    memcpy(buf, text, n);
    return (ssize_t)n;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream *s = cls;
    ps_events *ev = s->ev;
    ssize_t r = 0;
    pthread_mutex_lock(&ev->lock);
    if (ev->closing || s->cut) {
        r = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (!s->greeted) {
        /* retry: how long EventSource waits before reconnecting */
        s->greeted = true;
        r = copy_out(buf, max, "retry: 3000\n: connected\n\n");
    } else if (s->changed) {
        s->changed = false;
        s->keepalive = false;
        r = copy_out(buf, max, "event: changed\ndata: {}\n\n");
    } else if (s->keepalive) {
        s->keepalive = false;
        r = copy_out(buf, max, ": keepalive\n\n");
    } else {
        /* Nothing to say: park the connection until notify, tick or close. */
        s->suspended = true;
        MHD_suspend_connection(s->conn);
        r = 0;
    }
    pthread_mutex_unlock(&ev->lock);
    return r;
}

static void stream_free(void *cls)
{
    stream *s = cls;
    ps_events *ev = s->ev;
    pthread_mutex_lock(&ev->lock);
    for (stream **p = &ev->streams; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    ev->count--;
    pthread_mutex_unlock(&ev->lock);
    free(s->user);
    free(s->device);
    free(s);
}

/* The stream's device, from ?deviceId=; NULL when absent or not an id. */
static char *stream_device(struct MHD_Connection *conn)
{
    const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "deviceId");
    size_t n = id ? strlen(id) : 0;
    return n >= 1 && n <= PS_ID_MAX_BYTES ? strdup(id) : NULL;
}

struct MHD_Response *ps_events_response(ps_events *ev, struct MHD_Connection *conn,
                                        const char *user)
{
    stream *s = calloc(1, sizeof *s);
    if (!s || !(s->user = strdup(user))) {
        free(s);
        return NULL;
    }
    s->ev = ev;
    s->conn = conn;
    s->device = stream_device(conn);
    pthread_mutex_lock(&ev->lock);
    bool full = ev->count >= ev->max || ev->closing;
    if (!full) {
        s->next = ev->streams;
        ev->streams = s;
        ev->count++;
    }
    pthread_mutex_unlock(&ev->lock);
    if (full) {
        free(s->user);
        free(s->device);
        free(s);
        return NULL;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, stream_read, s, stream_free);
    if (!resp) {
        stream_free(s);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* nginx: do not buffer */
    return resp;
}

unsigned ps_events_open_count(ps_events *ev)
{
    pthread_mutex_lock(&ev->lock);
    unsigned n = ev->count;
    pthread_mutex_unlock(&ev->lock);
    return n;
}
