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
#include "client/v2_call.h"

#include <stdlib.h>
#include <string.h>

struct ps_pull_ahead {
    ps_v2_call call;
    char *cursor; /* the cursor it was asked from */
};

ps_pull_ahead *ps__pull_ahead_start(sync_run *r, const char *saved, const char *next_cursor,
                                    int limit)
{
    ps_client *c = r->c;
    if (!r->ahead_curl && !(r->ahead_curl = curl_easy_init()))
        return NULL;
    ps_pull_ahead *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    ps__v2_call_init(&p->call, c, r->ahead_curl, false, (size_t)1 << 20);
    p->call.show_wait = true; /* the page the person waits for, once this one is applied */
    ps_error err;
    if (!(p->cursor = strdup(next_cursor)) ||
        ps__build_v2_page_request(c, next_cursor, saved, r->run, limit, &p->call.body, &err) !=
            PS_OK ||
        !ps__v2_call_start(&p->call)) {
        ps__v2_call_free(&p->call);
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
    bool usable = ps__v2_call_join(r, &p->call) && saved && strcmp(saved, p->cursor) == 0;
    if (usable) {
        *ans = p->call.ans;
        p->call.ans.root = NULL; /* the caller's now */
        r->c->last_status = 200;
    }
    ps__v2_call_free(&p->call);
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
    atomic_store(&p->call.cancel, true);
    p->call.show_wait = false; /* an answer nobody waits for */
    v2_answer unused;
    finish(r, p, NULL, &unused);
}
