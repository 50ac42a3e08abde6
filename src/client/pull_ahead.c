/*
 * A pull's next page asked for while this one is applied (docs/client.md,
 * "A pull of several pages"). A pull that takes several answers (`more`)
 * used to ask for page i+1 only once page i was saved, so polysyncd and
 * the client took turns; now, as soon as answer i is read, a second thread
 * sends the request for page i+1 on its own curl handle and reads and
 * parses its answer while the main thread applies page i.
 *
 * The request asked ahead is the one the sync would send next, less what
 * it cannot know yet: the cursor of answer i (not saved yet), `ack` the
 * last cursor saved (docs/protocol.md: "a request before that answer is
 * saved, send the last saved one as `ack`"), no changes. Only the main
 * thread touches the store, so the store only ever holds whole answers
 * saved in order; the answer asked ahead is used only when the cursor
 * saved by then is the one it was asked from, and only if it is a 200 sync
 * answer — anything else (a failure, a 410, a stop) is dropped and the
 * sync sends that request itself, with its retries and its error handling.
 */
#include "client/sync_run.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct ps_pull_ahead {
    ps_client *c;
    CURL *curl; /* the run's second handle, borrowed */
    char *cursor;
    ps_dynbuf body;
    pthread_t thread;
    atomic_bool cancel;
    /* the thread's outcome, read after the join */
    ps_code rc;
    ps_http_answer a;
    v2_answer ans;
    ps_sync_stats st; /* its request and bytes, added to the run's */
};

static void *fetch(void *arg)
{
    ps_pull_ahead *p = arg;
    ps_error err;
    p->rc = ps__http_post_once_on(p->c, p->curl, "/v2/sync", p->body.data, p->body.len, false,
                                  &p->cancel, &p->st, &p->a, &err);
    /* the whole answer's parse and checks too, off the main thread */
    if (p->rc == PS_OK && p->a.status == 200)
        p->rc = ps__parse_v2_answer(p->c, &p->a, &p->ans, &err);
    return NULL;
}

ps_pull_ahead *ps__pull_ahead_start(sync_run *r, const char *saved, const char *next_cursor,
                                    int limit)
{
    ps_client *c = r->c;
    if (!r->ahead_curl && !(r->ahead_curl = curl_easy_init()))
        return NULL;
    ps_pull_ahead *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->c = c;
    p->curl = r->ahead_curl;
    atomic_init(&p->cancel, false);
    ps__dynbuf_init(&p->body, (size_t)1 << 20);
    ps__http_answer_init(&p->a);
    p->a.stream_depth = PS_V2_ANSWER_DEPTH;
    ps_error err;
    if (!(p->cursor = strdup(next_cursor)) ||
        ps__build_v2_page_request(c, next_cursor, saved, r->run, limit, &p->body, &err) != PS_OK ||
        pthread_create(&p->thread, NULL, fetch, p) != 0) {
        ps__dynbuf_free(&p->body);
        ps__http_answer_free(&p->a);
        free(p->cursor);
        free(p);
        return NULL; /* the sync asks for the page itself */
    }
    return p;
}

/* Joins the thread and frees what `p` holds but its answer, which is moved
 * to *ans when it is usable (else *ans stays empty). */
static bool finish(sync_run *r, ps_pull_ahead *p, const char *saved, v2_answer *ans)
{
    pthread_join(p->thread, NULL);
    r->st->requests += p->st.requests;
    r->st->bytes_sent += p->st.bytes_sent;
    r->st->bytes_received += p->st.bytes_received;
    bool usable = p->rc == PS_OK && p->a.status == 200 && p->ans.root && saved &&
                  strcmp(saved, p->cursor) == 0;
    if (usable) {
        *ans = p->ans;
        r->c->last_status = 200;
    } else {
        json_object_put(p->ans.root);
    }
    ps__http_answer_free(&p->a);
    ps__dynbuf_free(&p->body);
    free(p->cursor);
    free(p);
    return usable;
}

bool ps__pull_ahead_take(sync_run *r, ps_pull_ahead *p, const char *saved, v2_answer *ans)
{
    memset(ans, 0, sizeof *ans);
    return finish(r, p, saved, ans);
}

void ps__pull_ahead_drop(sync_run *r, ps_pull_ahead *p)
{
    if (!p)
        return;
    atomic_store(&p->cancel, true);
    v2_answer unused;
    finish(r, p, NULL, &unused);
}
