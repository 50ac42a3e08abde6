/*
 * The lane for large requests: bounded admission and worker threads.
 *
 * A request whose body may be large (a legacy full-state sync is one chat
 * history, tens of MB) differs from the small ones in two ways. Memory: a
 * v2 body is held whole while it is read and merged, so sixteen at once are
 * sixteen bodies (a legacy body costs a few MiB, its chats spooled:
 * legacy_body.h), and a merge's working set is per slot too. CPU:
 * libmicrohttpd runs the access handler on the thread
 * that owns the connection, and a burst of keep-alive connections often
 * lands on one thread of its pool, leaving the other cores idle for the
 * life of those connections.
 *
 * So a large request first takes one of a few slots, first come first
 * served: until one is free its connection is suspended with its body
 * unread (the client's bytes wait in its socket buffers). Its handler then
 * runs on one of the lane's worker threads, whichever thread owns the
 * connection. Small requests never wait here.
 *
 * Fairness (issue 16.4): a freed slot goes to the oldest waiter whose user
 * holds no slot yet, so one user's uploads cannot take every slot while
 * others wait (when every waiter's user holds one, the oldest gets it); and
 * a body that arrives slower than --min-upload-rate is cut (server.c,
 * ps_lane_upload_too_slow), so a trickling client holds its slot for
 * seconds, not for the whole --request-timeout.
 */
#ifndef PS_SERVER_LANE_H
#define PS_SERVER_LANE_H

#include "polysync/error.h"

#include <stdbool.h>
#include <stdint.h>

struct MHD_Connection;

/* Bodies over this go through the lane; a gzip body over a sixteenth of it
 * (it may inflate past it), and a body of unknown length, too. */
#define PS_LARGE_BODY_BYTES (1024 * 1024)

typedef enum ps_lane_state {
    PS_LANE_OUTSIDE, /* not a large request */
    PS_LANE_WAITING, /* queued for a slot; the connection is suspended */
    PS_LANE_ADMITTED,
    PS_LANE_TURNED_AWAY, /* the server stopped before a slot came free */
} ps_lane_state;

/* One request's place in the lane; lives inside the request, so queueing
 * never allocates. Zero-initialised means PS_LANE_OUTSIDE. */
typedef struct ps_lane_ticket {
    struct MHD_Connection *conn;
    bool entered;         /* by ps_lane_enter, on the connection's thread */
    const char *user;     /* whose request (borrowed; NULL = nobody's) */
    ps_lane_state state;  /* written under the lane's lock */
    bool resumed_away;    /* was waiting when the lane turned the waiting away */
    int64_t admitted_ms;  /* when the slot was taken */
    void (*work)(void *); /* run on a worker by ps_lane_run */
    void *work_arg;
    struct ps_lane_ticket *next;
} ps_lane_ticket;

typedef struct ps_lane ps_lane;

/* `slots` large requests at once, handlers on `workers` threads; kept body
 * buffers are freed after keep_idle_ms without large requests. NULL when
 * out of memory or threads. */
ps_lane *ps_lane_new(unsigned slots, unsigned workers, unsigned keep_idle_ms);
/* Shutdown: the workers finish the work queued and exit; ps_lane_run
 * refuses work from then on. Idempotent. */
void ps_lane_stop(ps_lane *lane);
/* Stops, then frees; every ticket must be done with. */
void ps_lane_free(ps_lane *lane);

/* Called from the access handler with the request's headers: takes a slot
 * now (ADMITTED), or suspends conn and queues the ticket (WAITING): the
 * connection is resumed once the ticket is ADMITTED, or TURNED_AWAY by
 * ps_lane_turn_away_waiting. TURNED_AWAY at once after that (shutdown):
 * answer 503. Returns the ticket's state. */
ps_lane_state ps_lane_enter(ps_lane *lane, ps_lane_ticket *t, struct MHD_Connection *conn);
/* Gives back an ADMITTED ticket's slot (the next waiter gets it); does
 * nothing for a ticket outside the lane. Safe from any thread. */
void ps_lane_leave(ps_lane *lane, ps_lane_ticket *t);
/* The ticket's state, read under the lane's lock. */
ps_lane_state ps_lane_state_of(ps_lane *lane, const ps_lane_ticket *t);
/* Suspends the ticket's connection and runs work(arg) on a worker thread,
 * then resumes the connection: libmicrohttpd calls the access handler
 * again, which sends what the work prepared. False once the lane is
 * stopped: then the caller runs the work itself. */
bool ps_lane_run(ps_lane *lane, ps_lane_ticket *t, void (*work)(void *), void *arg);
/* A kept buffer of at least `need` bytes (its size in *cap) from a large
 * body that is done with, or NULL: filling it costs no page faults. */
char *ps_lane_buffer_take(ps_lane *lane, size_t need, size_t *cap);
/* Takes a large body's buffer (malloc'ed) back for the next one; kept at
 * most one per slot and freed after keep_idle_ms without large requests. */
void ps_lane_buffer_give(ps_lane *lane, char *data, size_t cap);
/* The bytes of the buffers kept now. */
size_t ps_lane_kept_bytes(ps_lane *lane);
/* The grace a large body gets before its rate is judged: a slow start
 * (TCP slow start, a phone waking its radio) is not a slow sender. */
#define PS_LANE_UPLOAD_GRACE_MS 5000

/* Whether a body of which `received` bytes arrived in `elapsed_ms` since
 * its slot was taken is too slow: past the grace, under `min_rate` bytes
 * per second on average. Never with min_rate 0. */
bool ps_lane_upload_too_slow(uint64_t received, int64_t elapsed_ms, size_t min_rate);

/* Shutdown: resumes every waiting connection as TURNED_AWAY, and turns away
 * those that come later; returns how many were waiting. */
unsigned ps_lane_turn_away_waiting(ps_lane *lane);

#endif
