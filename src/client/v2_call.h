/*
 * A /v2/sync request sent, and its answer read and parsed, on a thread of
 * its own (internal). The pages a pull asks ahead (pull_ahead.c) and the
 * pushes sent two at a time (push_ahead.c) are both such calls: the main
 * thread builds the body, starts the call, goes on applying the answer
 * before, and joins the call when it needs its answer. Only the main
 * thread touches the store; the call's thread touches only what is here.
 */
#ifndef PS_CLIENT_V2_CALL_H
#define PS_CLIENT_V2_CALL_H

#include "client/sync_run.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct ps_v2_call {
    ps_client *c;
    CURL *curl;     /* one of the run's extra handles, borrowed */
    bool gzip;      /* the request body sent gzip-compressed */
    ps_dynbuf body; /* the request, built by the caller before the start */
    pthread_t thread;
    atomic_bool cancel; /* set: the transfer stops (its answer is dropped) */
    /* the thread's outcome, read after the join */
    ps_code rc;
    ps_http_answer a;
    v2_answer ans;
    ps_sync_stats st; /* its request and bytes, added to the run's at the join */
    /* show_wait: while the join waits for the call, its bytes so far are
     * shown as the request's progress (a pull's page asked ahead: the
     * request the person is waiting for) */
    bool show_wait;
    ps_transfer_live live;
    struct timespec started;
} ps_v2_call;

/* Ready to have its body built (at most body_max bytes) and be started. */
void ps__v2_call_init(ps_v2_call *k, ps_client *c, CURL *curl, bool gzip, size_t body_max);

/* Sends the body on a new thread. False: no thread could be made. */
bool ps__v2_call_start(ps_v2_call *k);

/* Waits for the call (with show_wait, reporting its bytes so far every
 * 100 ms meanwhile) and adds its bytes to the run's; true when the answer
 * is a 200 sync answer (k->ans holds it, parsed and checked). */
bool ps__v2_call_join(sync_run *r, ps_v2_call *k);

/* Frees the body, the answer and its parsed tree (NULL k->ans.root first
 * to keep the tree). */
void ps__v2_call_free(ps_v2_call *k);

#endif
