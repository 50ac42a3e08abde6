/*
 * The lane for large requests; see lane.h. One mutex guards the slot count,
 * the queue of waiting tickets and the queue of work. A connection is
 * suspended under that mutex before its ticket is visible to other threads,
 * so no thread can resume it before it is suspended.
 */
#include "server/lane.h"
#include "core/timestamp.h"
#include "core/heap.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Buffers of finished large bodies, kept for the next ones: a fresh 64 MB
 * buffer costs the kernel zeroing and mapping every page of it (~10 % of a
 * full-state sync's CPU); a kept one is filled in place. At most one per
 * slot, so while bodies fit the kept buffers they add nothing to the
 * lane's peak (one kept too small for the next body stays beside that
 * body's own); freed after an idle spell (keep_idle_ms). */

typedef struct kept_buffer {
    char *data;
    size_t cap;
} kept_buffer;

typedef struct ticket_queue {
    ps_lane_ticket *head, *tail;
} ticket_queue;

struct ps_lane {
    pthread_mutex_t lock;
    pthread_cond_t work_ready;
    unsigned free_slots;
    ticket_queue waiting; /* for a slot, oldest first */
    ticket_queue work;    /* for a worker, oldest first */
    bool stopping;
    bool closed; /* turned the waiting away: no one waits from now on */
    unsigned slots;
    kept_buffer *kept; /* `slots` entries; data NULL when empty */
    int64_t last_kept_ms;
    unsigned keep_idle_ms;
    unsigned n_workers;
    pthread_t *workers;
    ps_lane_ticket **holders; /* `slots` entries: the admitted tickets, NULL = free */
};

static void push(ticket_queue *q, ps_lane_ticket *t)
{
    t->next = NULL;
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
}

static ps_lane_ticket *pop(ticket_queue *q)
{
    ps_lane_ticket *t = q->head;
    if (t) {
        q->head = t->next;
        if (!q->head)
            q->tail = NULL;
        t->next = NULL;
    }
    return t;
}

static void free_kept(ps_lane *lane)
{
    for (unsigned i = 0; i < lane->slots; i++) {
        free(lane->kept[i].data);
        lane->kept[i] = (kept_buffer){0};
    }
}

static bool has_kept(const ps_lane *lane)
{
    for (unsigned i = 0; i < lane->slots; i++)
        if (lane->kept[i].data)
            return true;
    return false;
}

static void *worker_main(void *arg)
{
    ps_lane *lane = arg;
    pthread_mutex_lock(&lane->lock);
    for (;;) {
        ps_lane_ticket *t = pop(&lane->work);
        if (!t) {
            if (lane->stopping)
                break;
            if (!has_kept(lane)) {
                pthread_cond_wait(&lane->work_ready, &lane->lock);
            } else if (ps__time_monotonic_ms() - lane->last_kept_ms >= lane->keep_idle_ms) {
                /* no large request for a while: give the memory back, the
                 * buffers and what the requests freed (heap.h), the latter
                 * outside the lock (a few ms that nobody needs to wait for) */
                free_kept(lane);
                pthread_mutex_unlock(&lane->lock);
                ps__heap_give_back();
                pthread_mutex_lock(&lane->lock);
            } else {
                int64_t due_ms = lane->last_kept_ms + lane->keep_idle_ms;
                struct timespec until = {.tv_sec = due_ms / 1000,
                                         .tv_nsec = (due_ms % 1000) * 1000000};
                pthread_cond_timedwait(&lane->work_ready, &lane->lock, &until);
            }
            continue;
        }
        pthread_mutex_unlock(&lane->lock);
        t->work(t->work_arg);
        /* the access handler runs again on the connection's own thread */
        MHD_resume_connection(t->conn);
        pthread_mutex_lock(&lane->lock);
    }
    pthread_mutex_unlock(&lane->lock);
    return NULL;
}

char *ps_lane_buffer_take(ps_lane *lane, size_t need, size_t *cap)
{
    char *data = NULL;
    pthread_mutex_lock(&lane->lock);
    for (unsigned i = 0; i < lane->slots && !data; i++) {
        if (lane->kept[i].data && lane->kept[i].cap >= need) {
            data = lane->kept[i].data;
            *cap = lane->kept[i].cap;
            lane->kept[i] = (kept_buffer){0};
        }
    }
    pthread_mutex_unlock(&lane->lock);
    return data;
}

size_t ps_lane_kept_bytes(ps_lane *lane)
{
    size_t n = 0;
    pthread_mutex_lock(&lane->lock);
    for (unsigned i = 0; i < lane->slots; i++)
        n += lane->kept[i].cap;
    pthread_mutex_unlock(&lane->lock);
    return n;
}

void ps_lane_buffer_give(ps_lane *lane, char *data, size_t cap)
{
    pthread_mutex_lock(&lane->lock);
    for (unsigned i = 0; i < lane->slots && data; i++) {
        if (!lane->kept[i].data) {
            lane->kept[i] = (kept_buffer){.data = data, .cap = cap};
            data = NULL;
        }
    }
    lane->last_kept_ms = ps__time_monotonic_ms();
    pthread_cond_signal(&lane->work_ready); /* an idle worker starts the idle clock */
    pthread_mutex_unlock(&lane->lock);
    free(data); /* every place taken */
}

ps_lane *ps_lane_new(unsigned slots, unsigned workers, unsigned keep_idle_ms)
{
    ps_lane *lane = calloc(1, sizeof *lane);
    if (!lane)
        return NULL;
    lane->keep_idle_ms = keep_idle_ms;
    lane->slots = lane->free_slots = slots ? slots : 1;
    lane->workers = calloc(workers ? workers : 1, sizeof *lane->workers);
    lane->kept = calloc(lane->slots, sizeof *lane->kept);
    lane->holders = calloc(lane->slots, sizeof *lane->holders);
    if (!lane->workers || !lane->kept || !lane->holders ||
        pthread_mutex_init(&lane->lock, NULL) != 0) {
        free(lane->workers);
        free(lane->kept);
        free(lane->holders);
        free(lane);
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* idle spells, not wall time */
    pthread_cond_init(&lane->work_ready, &attr);
    pthread_condattr_destroy(&attr);
    for (unsigned i = 0; i < (workers ? workers : 1); i++) {
        if (pthread_create(&lane->workers[i], NULL, worker_main, lane) != 0)
            break;
        lane->n_workers++;
    }
    if (lane->n_workers == 0) {
        ps_lane_free(lane);
        return NULL;
    }
    return lane;
}

void ps_lane_stop(ps_lane *lane)
{
    pthread_mutex_lock(&lane->lock);
    bool joined = lane->stopping;
    lane->stopping = true;
    pthread_cond_broadcast(&lane->work_ready);
    pthread_mutex_unlock(&lane->lock);
    for (unsigned i = 0; !joined && i < lane->n_workers; i++)
        pthread_join(lane->workers[i], NULL);
}

void ps_lane_free(ps_lane *lane)
{
    if (!lane)
        return;
    ps_lane_stop(lane);
    pthread_cond_destroy(&lane->work_ready);
    pthread_mutex_destroy(&lane->lock);
    free_kept(lane);
    free(lane->kept);
    free(lane->holders);
    free(lane->workers);
    free(lane);
}

/* Under the lock: records t as holding a slot. */
static void hold(ps_lane *lane, ps_lane_ticket *t)
{
    for (unsigned i = 0; i < lane->slots; i++) {
        if (!lane->holders[i]) {
            lane->holders[i] = t;
            return;
        }
    }
}

static void unhold(ps_lane *lane, const ps_lane_ticket *t)
{
    for (unsigned i = 0; i < lane->slots; i++)
        if (lane->holders[i] == t)
            lane->holders[i] = NULL;
}

static bool user_holds_slot(const ps_lane *lane, const char *user)
{
    for (unsigned i = 0; user && i < lane->slots; i++)
        if (lane->holders[i] && lane->holders[i]->user && strcmp(lane->holders[i]->user, user) == 0)
            return true;
    return false;
}

/* Under the lock: takes the waiter that gets a freed slot out of the
 * queue: the oldest whose user holds none, else the oldest. */
static ps_lane_ticket *next_waiter(ps_lane *lane)
{
    ps_lane_ticket *prev = NULL;
    for (ps_lane_ticket *t = lane->waiting.head; t; prev = t, t = t->next) {
        if (user_holds_slot(lane, t->user))
            continue;
        if (prev)
            prev->next = t->next;
        else
            lane->waiting.head = t->next;
        if (lane->waiting.tail == t)
            lane->waiting.tail = prev;
        t->next = NULL;
        return t;
    }
    return pop(&lane->waiting);
}

bool ps_lane_upload_too_slow(uint64_t received, int64_t elapsed_ms, size_t min_rate)
{
    if (!min_rate || elapsed_ms <= PS_LANE_UPLOAD_GRACE_MS)
        return false;
    return (double)received < (double)min_rate * (double)elapsed_ms / 1000.0;
}

ps_lane_state ps_lane_enter(ps_lane *lane, ps_lane_ticket *t, struct MHD_Connection *conn)
{
    t->conn = conn;
    t->entered = true;
    pthread_mutex_lock(&lane->lock);
    if (lane->free_slots > 0) {
        lane->free_slots--;
        t->state = PS_LANE_ADMITTED;
        t->admitted_ms = ps__time_now_ms();
        hold(lane, t);
    } else if (lane->closed) {
        t->state = PS_LANE_TURNED_AWAY; /* nothing would ever resume it */
    } else {
        t->state = PS_LANE_WAITING;
        MHD_suspend_connection(conn);
        push(&lane->waiting, t);
    }
    ps_lane_state state = t->state;
    pthread_mutex_unlock(&lane->lock);
    return state;
}

void ps_lane_leave(ps_lane *lane, ps_lane_ticket *t)
{
    if (!t->entered) /* every small request: no lock to take */
        return;
    pthread_mutex_lock(&lane->lock);
    if (t->state == PS_LANE_ADMITTED) {
        t->state = PS_LANE_OUTSIDE;
        unhold(lane, t);
        ps_lane_ticket *next = next_waiter(lane);
        if (next) { /* the slot passes straight on: no one can jump the queue */
            next->state = PS_LANE_ADMITTED;
            next->admitted_ms = ps__time_now_ms();
            hold(lane, next);
            MHD_resume_connection(next->conn);
        } else {
            lane->free_slots++;
        }
    }
    pthread_mutex_unlock(&lane->lock);
}

ps_lane_state ps_lane_state_of(ps_lane *lane, const ps_lane_ticket *t)
{
    pthread_mutex_lock(&lane->lock);
    ps_lane_state s = t->state;
    pthread_mutex_unlock(&lane->lock);
    return s;
}

bool ps_lane_run(ps_lane *lane, ps_lane_ticket *t, void (*work)(void *), void *arg)
{
    t->work = work;
    t->work_arg = arg;
    pthread_mutex_lock(&lane->lock);
    bool queued = !lane->stopping; /* no worker would ever take it */
    if (queued) {
        MHD_suspend_connection(t->conn);
        push(&lane->work, t);
        pthread_cond_signal(&lane->work_ready);
    }
    pthread_mutex_unlock(&lane->lock);
    return queued;
}

unsigned ps_lane_turn_away_waiting(ps_lane *lane)
{
    unsigned n = 0;
    pthread_mutex_lock(&lane->lock);
    lane->closed = true;
    ps_lane_ticket *t;
    while ((t = pop(&lane->waiting)) != NULL) {
        t->state = PS_LANE_TURNED_AWAY;
        t->resumed_away = true;
        MHD_resume_connection(t->conn);
        n++;
    }
    pthread_mutex_unlock(&lane->lock);
    return n;
}
