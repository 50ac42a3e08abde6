/* A /v2/sync request on a thread of its own; see v2_call.h. */
#include "client/v2_call.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void ps__v2_call_init(ps_v2_call *k, ps_client *c, CURL *curl, bool gzip, size_t body_max)
{
    memset(k, 0, sizeof *k);
    k->c = c;
    k->curl = curl;
    k->gzip = gzip;
    atomic_init(&k->cancel, false);
    ps__dynbuf_init(&k->body, body_max);
    ps__http_answer_init(&k->a);
    k->a.stream_depth = PS_V2_ANSWER_DEPTH;
}

static void *send_call(void *arg)
{
    ps_v2_call *k = arg;
    ps_error err;
    k->rc = ps__http_post_once_on(k->c, k->curl, "/v2/sync", k->body.data, k->body.len, k->gzip,
                                  &k->cancel, &k->live, &k->st, &k->a, &err);
    /* the whole answer's parse and checks too, off the main thread */
    if (k->rc == PS_OK && k->a.status == 200)
        k->rc = ps__parse_v2_answer(k->c, &k->a, &k->ans, &err);
    return NULL;
}

bool ps__v2_call_start(ps_v2_call *k)
{
    clock_gettime(CLOCK_MONOTONIC, &k->started);
    return pthread_create(&k->thread, NULL, send_call, k) == 0;
}

static int64_t ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000LL + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Joins the call's thread; with show_wait, wakes every 100 ms (or as soon
 * as the thread ends: a timed join, not a sleep) to report its bytes, on
 * this thread, as the transfer callback expects. */
static void join_call(sync_run *r, ps_v2_call *k)
{
    bool show = k->show_wait && r->c->on_transfer;
    while (show) {
        struct timespec due;
        clock_gettime(CLOCK_REALTIME, &due); /* what pthread_timedjoin_np measures */
        due.tv_nsec += 100 * 1000000L;
        if (due.tv_nsec >= 1000000000L) {
            due.tv_sec++;
            due.tv_nsec -= 1000000000L;
        }
        int e = pthread_timedjoin_np(k->thread, NULL, &due);
        if (e == 0)
            return;
        if (e != ETIMEDOUT)
            break; /* cannot happen with a valid time; joined below all the same */
        ps__http_report_live(r->c, &k->live, ms_since(&k->started), r->st);
    }
    pthread_join(k->thread, NULL);
}

bool ps__v2_call_join(sync_run *r, ps_v2_call *k)
{
    join_call(r, k);
    r->st->requests += k->st.requests;
    r->st->bytes_sent += k->st.bytes_sent;
    r->st->bytes_received += k->st.bytes_received;
    return k->rc == PS_OK && k->a.status == 200 && k->ans.root;
}

void ps__v2_call_free(ps_v2_call *k)
{
    json_object_put(k->ans.root);
    k->ans.root = NULL;
    ps__http_answer_free(&k->a);
    ps__dynbuf_free(&k->body);
}
